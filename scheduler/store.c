/* store.c: a scheduler replica's LMDB environment. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lmdb.h>

#include "internal.h"
#include "store.h"

struct mesh_sched_store {
	MDB_env *env;
	MDB_dbi defs, fired, meta;
	char dir[256];
};

mesh_err
mesh_sched_store_open(const char *dir, struct mesh_sched_store **out)
{
	struct mesh_sched_store *st = calloc(1, sizeof(*st));
	MDB_txn *txn = NULL;
	int rc;

	if (st == NULL) {
		return mesh__seterr(MESH_ENOMEM, "state '%s'", dir);
	}
	snprintf(st->dir, sizeof(st->dir), "%s", dir);
	if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
		free(st);
		return mesh__err_errno(errno, "state folder '%s'", dir);
	}
	if ((rc = mdb_env_create(&st->env)) != 0 ||
	    (rc = mdb_env_set_maxdbs(st->env, 4)) != 0 ||
	    (rc = mdb_env_set_mapsize(st->env, (size_t)4 << 30)) != 0 ||
	    (rc = mdb_env_open(st->env, dir, MDB_NOTLS, 0644)) != 0 ||
	    (rc = mdb_txn_begin(st->env, NULL, 0, &txn)) != 0 ||
	    (rc = mdb_dbi_open(txn, "defs", MDB_CREATE, &st->defs)) != 0 ||
	    (rc = mdb_dbi_open(txn, "fired", MDB_CREATE, &st->fired)) != 0 ||
	    (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &st->meta)) != 0 ||
	    (rc = mdb_txn_commit(txn)) != 0) {
		mesh_err err = mesh__err_mdb(rc, "state '%s'", dir);
		if (txn != NULL && rc != 0) {
			mdb_txn_abort(txn);
		}
		mdb_env_close(st->env);
		free(st);
		return err;
	}
	*out = st;
	return MESH_OK;
}

void
mesh_sched_store_close(struct mesh_sched_store *st)
{
	if (st != NULL) {
		mdb_env_close(st->env);
		free(st);
	}
}

mesh_err
mesh_sched_store_apply(struct mesh_sched_store *st, const char *name,
                       const char *json, size_t len, uint64_t seq)
{
	MDB_txn *txn;
	MDB_val k = {strlen(name), (void *)name};
	MDB_val v = {len, (void *)json};
	MDB_val mk = {7, "applied"}, mv = {sizeof(seq), &seq};
	int rc;

	if ((rc = mdb_txn_begin(st->env, NULL, 0, &txn)) != 0) {
		return mesh__err_mdb(rc, "state '%s'", st->dir);
	}
	if (json != NULL) {
		rc = mdb_put(txn, st->defs, &k, &v, 0);
	} else {
		rc = mdb_del(txn, st->defs, &k, NULL);
		if (rc == MDB_NOTFOUND) {
			rc = 0;
		}
		if (rc == 0) {
			rc = mdb_del(txn, st->fired, &k, NULL);
			rc = rc == MDB_NOTFOUND ? 0 : rc;
		}
	}
	if (rc == 0) {
		rc = mdb_put(txn, st->meta, &mk, &mv, 0);
	}
	if (rc != 0) {
		mdb_txn_abort(txn);
		return mesh__err_mdb(rc, "schedule '%s'", name);
	}
	if ((rc = mdb_txn_commit(txn)) != 0) {
		return mesh__err_mdb(rc, "schedule '%s'", name);
	}
	return MESH_OK;
}

uint64_t
mesh_sched_store_applied(struct mesh_sched_store *st)
{
	MDB_txn *txn;
	MDB_val mk = {7, "applied"}, mv;
	uint64_t seq = 0;

	if (mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn) != 0) {
		return 0;
	}
	if (mdb_get(txn, st->meta, &mk, &mv) == 0 &&
	    mv.mv_size == sizeof(seq)) {
		memcpy(&seq, mv.mv_data, sizeof(seq));
	}
	mdb_txn_abort(txn);
	return seq;
}

mesh_err
mesh_sched_store_each(struct mesh_sched_store *st,
                      mesh_err (*fn)(const char *json, size_t len, void *arg),
                      void *arg)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	mesh_err err = MESH_OK;
	int rc;

	if ((rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn)) != 0 ||
	    (rc = mdb_cursor_open(txn, st->defs, &cur)) != 0) {
		return mesh__err_mdb(rc, "state '%s'", st->dir);
	}
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && !err;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		err = fn(v.mv_data, v.mv_size, arg);
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return err;
}

mesh_err
mesh_sched_store_fired(struct mesh_sched_store *st, const char *name,
                       int64_t *last, char *outcome, size_t size)
{
	MDB_txn *txn;
	MDB_val k = {strlen(name), (void *)name}, v;
	int rc;

	if ((rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn)) != 0) {
		return mesh__err_mdb(rc, "state '%s'", st->dir);
	}
	rc = mdb_get(txn, st->fired, &k, &v);
	if (rc == 0) {
		char buf[320];
		int n = 0;
		long long t = 0;
		size_t len = v.mv_size < sizeof(buf) - 1 ? v.mv_size
		                                         : sizeof(buf) - 1;
		memcpy(buf, v.mv_data, len);
		buf[len] = '\0';
		sscanf(buf, "%lld %n", &t, &n);
		*last = t;
		if (outcome != NULL) {
			snprintf(outcome, size, "%s", buf + n);
		}
	}
	mdb_txn_abort(txn);
	if (rc == MDB_NOTFOUND) {
		return MESH_ENOTFOUND;
	}
	return rc == 0 ? MESH_OK : mesh__err_mdb(rc, "schedule '%s'", name);
}

mesh_err
mesh_sched_store_set_fired(struct mesh_sched_store *st, const char *name,
                           int64_t last, const char *outcome)
{
	char buf[320];
	MDB_txn *txn;
	MDB_val k = {strlen(name), (void *)name}, v;
	int n = snprintf(buf, sizeof(buf), "%" PRId64 " %.256s", last,
	                 outcome);
	int rc;

	v.mv_size = (size_t)n;
	v.mv_data = buf;
	if ((rc = mdb_txn_begin(st->env, NULL, 0, &txn)) != 0) {
		return mesh__err_mdb(rc, "state '%s'", st->dir);
	}
	if ((rc = mdb_put(txn, st->fired, &k, &v, 0)) != 0) {
		mdb_txn_abort(txn);
		return mesh__err_mdb(rc, "schedule '%s'", name);
	}
	if ((rc = mdb_txn_commit(txn)) != 0) {
		return mesh__err_mdb(rc, "schedule '%s'", name);
	}
	return MESH_OK;
}
