/* The runtime's undo log (services/runtime/undo.h) on a real LMDB
 * environment: every kind of write an event makes is put back, newest
 * first, and only what was noted since the last clear. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

#include "harness.h"
#include "undo.h"

static MDB_env *env;
static MDB_dbi dbi, other;

static void
put(MDB_txn *txn, MDB_dbi d, const char *k, const char *v)
{
	MDB_val kk = {strlen(k), (void *)k}, vv = {strlen(v), (void *)v};

	mdb_put(txn, d, &kk, &vv, 0);
}

/* The value of k ("-" when absent). */
static const char *
get(MDB_txn *txn, MDB_dbi d, const char *k)
{
	static char buf[128];
	MDB_val kk = {strlen(k), (void *)k}, vv;

	if (mdb_get(txn, d, &kk, &vv) != 0) {
		return "-";
	}
	snprintf(buf, sizeof(buf), "%.*s", (int)vv.mv_size,
	         (const char *)vv.mv_data);
	return buf;
}

static int
u_put(struct mesh__undo *u, MDB_txn *txn, MDB_dbi d, const char *k,
      const char *v)
{
	MDB_val kk = {strlen(k), (void *)k}, vv = {strlen(v), (void *)v};

	return mesh__undo_put(u, txn, d, &kk, &vv);
}

static int
u_del(struct mesh__undo *u, MDB_txn *txn, MDB_dbi d, const char *k)
{
	MDB_val kk = {strlen(k), (void *)k};

	return mesh__undo_del(u, txn, d, &kk);
}

int
main(void)
{
	char dir[PATH_MAX];
	struct mesh__undo u = {0};
	MDB_txn *txn = NULL;
	char big[5000];

	if (!test_tmpdir(dir, sizeof(dir))) {
		tap_skip_all("no temporary directory");
	}
	mdb_env_create(&env);
	mdb_env_set_maxdbs(env, 4);
	if (mdb_env_open(env, dir, 0, 0644) != 0) {
		tap_skip_all("LMDB cannot open a temporary directory");
	}
	mdb_txn_begin(env, NULL, 0, &txn);
	mdb_dbi_open(txn, "a", MDB_CREATE, &dbi);
	mdb_dbi_open(txn, "b", MDB_CREATE, &other);
	put(txn, dbi, "kept", "1");
	put(txn, dbi, "changed", "old");
	put(txn, dbi, "deleted", "here");
	put(txn, other, "x", "in b");

	/* One event's writes: overwrite, delete, new keys, twice the same
	 * key, two databases, and a value larger than the log's first
	 * allocation. */
	memset(big, 'z', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	is_int(u_put(&u, txn, dbi, "changed", "new"), 0, "overwrite noted");
	is_int(u_del(&u, txn, dbi, "deleted"), 0, "delete noted");
	is_int(u_put(&u, txn, dbi, "fresh", "v"), 0, "new key noted");
	u_put(&u, txn, dbi, "fresh", "v2");
	u_put(&u, txn, other, "x", big);
	u_put(&u, txn, other, "x", "again");
	u_put(&u, txn, dbi, "changed", big);
	is_str(get(txn, dbi, "fresh"), "v2", "the writes are made at once");
	ok(u.len > 4096, "the log grew past its first allocation (%zu)",
	   u.len);

	is_int(mesh__undo_apply(&u, txn), 0, "undo applies");
	is_str(get(txn, dbi, "changed"), "old", "an overwritten key is back");
	is_str(get(txn, dbi, "deleted"), "here", "a deleted key is back");
	is_str(get(txn, dbi, "fresh"), "-", "a new key is gone");
	is_str(get(txn, other, "x"), "in b",
	       "a key of another database is back");
	is_str(get(txn, dbi, "kept"), "1", "an untouched key is untouched");
	is_int(u.len, 0, "the log is empty after");

	/* Only what was noted since the last clear goes back. */
	u_put(&u, txn, dbi, "kept", "2");
	mesh__undo_clear(&u);
	u_put(&u, txn, dbi, "changed", "later");
	mesh__undo_apply(&u, txn);
	is_str(get(txn, dbi, "kept"), "2",
	       "a write before the clear (an earlier event's) stands");
	is_str(get(txn, dbi, "changed"), "old", "one after it is undone");
	is_int(u_del(&u, txn, dbi, "no-such-key"), MDB_NOTFOUND,
	       "deleting an absent key says MDB_NOTFOUND");
	mesh__undo_apply(&u, txn);
	is_str(get(txn, dbi, "no-such-key"), "-", "... and undoing it is a no-op");
	mdb_txn_commit(txn);

	ok(!mesh__mdb_fatal(0) && !mesh__mdb_fatal(MDB_NOTFOUND) &&
	           !mesh__mdb_fatal(MDB_KEYEXIST),
	   "0, MDB_NOTFOUND and MDB_KEYEXIST leave a transaction usable");
	ok(mesh__mdb_fatal(MDB_MAP_FULL) && mesh__mdb_fatal(MDB_TXN_FULL),
	   "MDB_MAP_FULL and MDB_TXN_FULL spoil it");

	mesh__undo_fini(&u);
	mdb_env_close(env);
	test_rmtree(dir);
	return tap_done();
}
