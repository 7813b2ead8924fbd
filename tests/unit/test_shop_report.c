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
#include "report.h"

/* Write key=value pairs (NULL-terminated) into root/name's "state". */
static bool
write_state(const char *root, const char *name, const char *const *kv)
{
	char path[PATH_MAX];
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	MDB_dbi db;
	int rc;

	snprintf(path, sizeof path, "%s/%s", root, name);
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
	return tap_done();
}
