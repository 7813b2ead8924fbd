/* shop_report_read: the repeat and duplicate counts it sums saturate at
 * UINT64_MAX instead of wrapping to "none", and a saturated duplicate
 * count still breaks the account. Environments written here as the
 * services lay them out (a database "state" in ROOT/NAME). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <lmdb.h>

#include "harness.h"
#include "mesh/partition.h"
#include "report.h"

/* Write key=value pairs (NULL-terminated) into root/name's "state"; a
 * changelog position seq (> 0) into its "meta" as a partition's copy
 * holds it. */
static bool
write_env(const char *root, const char *name, const char *const *kv,
          uint64_t seq)
{
	char path[PATH_MAX];
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	MDB_dbi db;
	int rc;

	snprintf(path, sizeof path, "%s/%s", root, name);
	for (char *p = path + strlen(root) + 1; *p != '\0'; p++) {
		if (*p == '/') {
			*p = '\0';
			mkdir(path, 0755);
			*p = '/';
		}
	}
	if (mkdir(path, 0755) != 0 || mdb_env_create(&env) != MDB_SUCCESS) {
		return false;
	}
	rc = mdb_env_set_maxdbs(env, 16);
	if (rc == MDB_SUCCESS) {
		rc = mdb_env_open(env, path, 0, 0644);
	}
	if (rc == MDB_SUCCESS) {
		rc = mdb_txn_begin(env, NULL, 0, &txn);
	}
	if (rc == MDB_SUCCESS) {
		rc = mdb_dbi_open(txn, "state", MDB_CREATE, &db);
	}
	for (; rc == MDB_SUCCESS && *kv != NULL; kv += 2) {
		MDB_val k = {strlen(kv[0]), (void *)kv[0]};
		MDB_val v = {strlen(kv[1]), (void *)kv[1]};

		rc = mdb_put(txn, db, &k, &v, 0);
	}
	if (rc == MDB_SUCCESS && seq > 0) {
		uint8_t be[8];
		MDB_val k = {8, "clog.seq"}, v = {8, be};
		for (int i = 0; i < 8; i++) {
			be[i] = (uint8_t)(seq >> (56 - 8 * i));
		}
		if ((rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &db)) ==
		    MDB_SUCCESS) {
			rc = mdb_put(txn, db, &k, &v, 0);
		}
	}
	if (rc == MDB_SUCCESS) {
		rc = mdb_txn_commit(txn);
	} else if (txn != NULL) {
		mdb_txn_abort(txn);
	}
	mdb_env_close(env);
	if (rc != MDB_SUCCESS) {
		tap_diag("%s: %s", path, mdb_strerror(rc));
	}
	return rc == MDB_SUCCESS;
}

static bool
write_state(const char *root, const char *name, const char *const *kv)
{
	return write_env(root, name, kv, 0);
}

/* A partitioned orders service read from three instances' folders: each
 * holds some partitions (not p0 first), one partition in both, the copy
 * further along its changelog read. */
static void
test_partitions(void)
{
	char a[PATH_MAX], b[PATH_MAX], c[PATH_MAX], err[256] = "";
	const char *roots[3] = {a, b, c};
	char keys[4][32];
	struct shop_report r;
	int found = 0;

	/* Two ids of each of 2 partitions. */
	for (int i = 0, n0 = 0, n1 = 0; found < 4 && i < 1000; i++) {
		static char id[1000][16];
		int k;
		snprintf(id[i], sizeof id[i], "o%d", i);
		k = mesh_partition_of(id[i], strlen(id[i]), 2);
		if ((k == 0 && n0 < 2) || (k == 1 && n1 < 2)) {
			int slot = k * 2 + (k == 0 ? n0++ : n1++);
			snprintf(keys[slot], sizeof keys[slot], "order/%s",
			         id[i]);
			found++;
		}
	}
	if (!test_tmpdir(a, sizeof a) || !test_tmpdir(b, sizeof b) ||
	    !test_tmpdir(c, sizeof c)) {
		ok(false, "temporary folders");
		return;
	}
	/* p1 in a alone (no p0 there); p0 twice: ahead in b (both its
	 * orders), behind in c (one). */
	const char *p0_old[] = {keys[0], "x", NULL};
	const char *p0_new[] = {keys[0], "x", keys[1], "x", NULL};
	const char *p1[] = {keys[2], "x", keys[3], "x", NULL};
	const char *none[] = {NULL};
	ok(write_env(c, "orders/p0", p0_old, 5) &&
	           write_env(b, "orders/p0", p0_new, 9) &&
	           write_env(a, "orders/p1", p1, 7) &&
	           write_state(a, "shipping", none) &&
	           write_state(a, "notifications", none),
	   "partition copies in three instances' folders");
	ok(shop_report_read_roots(roots, 3, "", "DE", &r, err, sizeof err),
	   "read from the three");
	is_int(r.partitions[0], 2, "orders in 2 partitions");
	is_int(r.placed, 4, "4 orders placed: p0 from the copy further along");
	is_int(r.state_keys[0], 4, "4 keys in orders' state");
	is_int(r.misplaced, 0, "each in its id's partition");
	test_rmtree(a);
	test_rmtree(b);
	test_rmtree(c);
}

int
main(void)
{
	static const char *const orders[] = {
	        "repeat/a", "18446744073709551615", "repeat/b", "1", NULL};
	static const char *const shipping[] = {"dup/a", "18446744073709551614",
	                                       NULL};
	static const char *const notifications[] = {"dup/a", "2", NULL};
	char root[PATH_MAX], err[256] = "";
	struct shop_report r;

	if (!test_tmpdir(root, sizeof root)) {
		tap_skip_all("no temporary folder");
	}
	ok(write_state(root, "orders", orders) &&
	           write_state(root, "shipping", shipping) &&
	           write_state(root, "notifications", notifications),
	   "three environments written");
	ok(shop_report_read(root, "", "DE", &r, err, sizeof err), "and read");
	if (err[0] != '\0') {
		tap_diag("%s", err);
	}
	ok(r.repeats == UINT64_MAX,
	   "repeats 2^64-1 + 1 saturate at 2^64-1 (not 0)");
	ok(r.duplicates == UINT64_MAX,
	   "duplicates (2^64-2) + 2 saturate across two services");
	ok(!shop_report_agrees(&r, 0), "and the account is not whole");
	test_rmtree(root);
	test_partitions();
	return tap_done();
}
