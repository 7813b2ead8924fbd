/* store.c: a scheduler replica's LMDB environment. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lmdb.h>

#include "mesh/clock.h"
#include "mesh/err.h"
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
		return mesh_err_set(MESH_ENOMEM, "state '%s'", dir);
	}
	snprintf(st->dir, sizeof(st->dir), "%s", dir);
	if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
		free(st);
		return mesh_err_errno(errno, "state folder '%s'", dir);
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
		mesh_err err = mesh_err_mdb(rc, "state '%s'", dir);
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

struct mesh_sched_txn {
	struct mesh_sched_store *st;
	MDB_txn *txn;
};

mesh_err
mesh_sched_txn_begin(struct mesh_sched_store *st, bool write,
                     struct mesh_sched_txn **out)
{
	struct mesh_sched_txn *t = malloc(sizeof(*t));
	int rc;

	if (t == NULL) {
		return mesh_err_set(MESH_ENOMEM, "state '%s'", st->dir);
	}
	t->st = st;
	rc = mdb_txn_begin(st->env, NULL, write ? 0 : MDB_RDONLY, &t->txn);
	if (rc != 0) {
		free(t);
		return mesh_err_mdb(rc, "state '%s'", st->dir);
	}
	*out = t;
	return MESH_OK;
}

mesh_err
mesh_sched_txn_commit(struct mesh_sched_txn *t)
{
	int rc = mdb_txn_commit(t->txn);
	mesh_err err =
	        rc == 0 ? MESH_OK : mesh_err_mdb(rc, "state '%s'", t->st->dir);

	free(t);
	return err;
}

void
mesh_sched_txn_abort(struct mesh_sched_txn *t)
{
	if (t != NULL) {
		mdb_txn_abort(t->txn);
		free(t);
	}
}

mesh_err
mesh_sched_txn_apply(struct mesh_sched_txn *t, const char *name,
                     const char *json, size_t len)
{
	MDB_val k = {strlen(name), (void *)name};
	MDB_val v = {len, (void *)json};
	int rc;

	if (json != NULL) {
		rc = mdb_put(t->txn, t->st->defs, &k, &v, 0);
	} else {
		rc = mdb_del(t->txn, t->st->defs, &k, NULL);
		if (rc == 0 || rc == MDB_NOTFOUND) {
			rc = mdb_del(t->txn, t->st->fired, &k, NULL);
			rc = rc == MDB_NOTFOUND ? 0 : rc;
		}
	}
	return rc == 0 ? MESH_OK : mesh_err_mdb(rc, "schedule '%s'", name);
}

mesh_err
mesh_sched_txn_set_applied(struct mesh_sched_txn *t, uint64_t seq)
{
	MDB_val mk = {7, "applied"}, mv = {sizeof(seq), &seq};
	int rc = mdb_put(t->txn, t->st->meta, &mk, &mv, 0);

	return rc == 0 ? MESH_OK : mesh_err_mdb(rc, "state '%s'", t->st->dir);
}

mesh_err
mesh_sched_txn_set_fired(struct mesh_sched_txn *t, const char *name,
                         int64_t last, const char *outcome)
{
	char buf[320];
	MDB_val k = {strlen(name), (void *)name}, v;
	int n = snprintf(buf, sizeof(buf), "%" PRId64 " %.256s", last,
	                 outcome);
	int rc;

	v.mv_size = (size_t)n;
	v.mv_data = buf;
	rc = mdb_put(t->txn, t->st->fired, &k, &v, 0);
	return rc == 0 ? MESH_OK : mesh_err_mdb(rc, "schedule '%s'", name);
}

mesh_err
mesh_sched_txn_def(struct mesh_sched_txn *t, const char *name,
                   const char **json, size_t *len)
{
	MDB_val k = {strlen(name), (void *)name}, v;
	int rc = mdb_get(t->txn, t->st->defs, &k, &v);

	if (rc == MDB_NOTFOUND) {
		return mesh_err_set(MESH_ENOTFOUND,
		                    "schedule '%s': does not exist", name);
	}
	if (rc != 0) {
		return mesh_err_mdb(rc, "schedule '%s'", name);
	}
	*json = v.mv_data;
	*len = v.mv_size;
	return MESH_OK;
}

/* "<time> <outcome>" */
static int64_t
fired_parse(const MDB_val *v, char *outcome, size_t size)
{
	char buf[320], *end;
	int n = 0;
	long long t = 0;
	size_t len =
	        v->mv_size < sizeof(buf) - 1 ? v->mv_size : sizeof(buf) - 1;

	memcpy(buf, v->mv_data, len);
	buf[len] = '\0';
	/* strtoll, not sscanf: a number out of range reads as 0 (never
	 * fired), not as undefined behaviour. */
	errno = 0;
	t = strtoll(buf, &end, 10);
	if (end == buf || errno == ERANGE) {
		t = 0;
	}
	n = (int)(end - buf);
	while (buf[n] == ' ') {
		n++;
	}
	if (outcome != NULL) {
		snprintf(outcome, size, "%s", buf + n);
	}
	return t;
}

mesh_err
mesh_sched_txn_fired(struct mesh_sched_txn *t, const char *name, int64_t *last,
                     char *outcome, size_t size)
{
	MDB_val k = {strlen(name), (void *)name}, v;
	int rc = mdb_get(t->txn, t->st->fired, &k, &v);

	if (rc == MDB_NOTFOUND) {
		return MESH_ENOTFOUND;
	}
	if (rc != 0) {
		return mesh_err_mdb(rc, "schedule '%s'", name);
	}
	*last = fired_parse(&v, outcome, size);
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
                      mesh_err (*fn)(const struct mesh_sched_rec *rec,
                                     void *arg),
                      void *arg)
{
	MDB_txn *txn;
	MDB_cursor *cur = NULL, *fcur = NULL;
	MDB_val k, v, fk, fv;
	mesh_err err = MESH_OK;
	int rc, frc = MDB_NOTFOUND;

	if ((rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn)) != 0) {
		return mesh_err_mdb(rc, "state '%s'", st->dir);
	}
	if ((rc = mdb_cursor_open(txn, st->defs, &cur)) != 0 ||
	    (rc = mdb_cursor_open(txn, st->fired, &fcur)) != 0) {
		mdb_cursor_close(cur);
		mdb_txn_abort(txn);
		return mesh_err_mdb(rc, "state '%s'", st->dir);
	}
	/* Both tables are in name order: walk them side by side. */
	frc = mdb_cursor_get(fcur, &fk, &fv, MDB_FIRST);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && !err;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct mesh_sched_rec rec = {k.mv_data, k.mv_size, v.mv_data,
		                             v.mv_size, 0};
		while (frc == 0 && mdb_cmp(txn, st->fired, &fk, &k) < 0) {
			frc = mdb_cursor_get(fcur, &fk, &fv, MDB_NEXT);
		}
		if (frc == 0 && mdb_cmp(txn, st->fired, &fk, &k) == 0) {
			rec.last_fired = fired_parse(&fv, NULL, 0);
		}
		err = fn(&rec, arg);
	}
	mdb_cursor_close(fcur);
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return err;
}

mesh_err
mesh_sched_store_fired(struct mesh_sched_store *st, const char *name,
                       int64_t *last, char *outcome, size_t size)
{
	struct mesh_sched_txn *t;
	mesh_err err;

	if ((err = mesh_sched_txn_begin(st, false, &t)) != MESH_OK) {
		return err;
	}
	err = mesh_sched_txn_fired(t, name, last, outcome, size);
	mesh_sched_txn_abort(t);
	return err;
}
