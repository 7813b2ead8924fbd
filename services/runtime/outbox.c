/* outbox.c: the outbox (see outbox.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "be.h"
#include "outbox.h"

void
mesh__outbox_init(struct mesh__outbox *o, mesh__outbox_sink_fn sink,
                  mesh__outbox_log_fn log, void *arg)
{
	memset(o, 0, sizeof(*o));
	o->sink = sink;
	o->log = log;
	o->arg = arg;
	pthread_mutex_init(&o->done_mu, NULL);
	pthread_mutex_init(&o->flush_mu, NULL);
}

void
mesh__outbox_bind(struct mesh__outbox *o, MDB_env *env, MDB_dbi db,
                  MDB_dbi meta)
{
	o->env = env;
	o->db = db;
	o->meta = meta;
}

void
mesh__outbox_fini(struct mesh__outbox *o)
{
	free(o->done);
	o->done = NULL;
	o->n_done = o->cap_done = 0;
	pthread_mutex_destroy(&o->done_mu);
	pthread_mutex_destroy(&o->flush_mu);
}

uint64_t
mesh__outbox_last(const struct mesh__outbox *o, MDB_txn *txn)
{
	MDB_val k = {6, "outbox"}, v;

	return mdb_get(txn, o->meta, &k, &v) == 0 && v.mv_size == 8
	               ? mesh__from_be64(v.mv_data)
	               : 0;
}

int
mesh__outbox_put(struct mesh__outbox *o, MDB_txn *txn, struct mesh__undo *u,
                 const char *target, const char *group, const uint8_t *ev,
                 size_t len)
{
	size_t tl = strlen(target) + 1, gl = group ? strlen(group) + 1 : 1;
	uint8_t key[8], seqbuf[8], *rec = malloc(tl + gl + len);
	MDB_val k = {8, key}, v, mk = {6, "outbox"}, mv = {8, seqbuf};
	uint64_t seq;
	int rc;

	if (rec == NULL) {
		return ENOMEM;
	}
	memcpy(rec, target, tl);
	memcpy(rec + tl, group ? group : "", gl);
	memcpy(rec + tl + gl, ev, len);
	/* The next sequence, in the batch's transaction (writers take
	 * turns, so it is unique). */
	seq = mesh__outbox_last(o, txn) + 1;
	mesh__be64(seqbuf, seq);
	if ((rc = mesh__undo_put(u, txn, o->meta, &mk, &mv)) == 0) {
		mesh__be64(key, seq);
		v.mv_size = tl + gl + len;
		v.mv_data = rec;
		rc = mesh__undo_put(u, txn, o->db, &k, &v);
	}
	free(rec);
	return rc;
}

/* Note a record as published (done_mu held); false when out of memory
 * (it is then published again later: a duplicate JetStream drops). */
static bool
done_add(struct mesh__outbox *o, uint64_t seq)
{
	if (o->n_done == o->cap_done) {
		size_t cap = o->cap_done ? o->cap_done * 2 : 256;
		uint64_t *d = realloc(o->done, cap * sizeof(*d));
		if (d == NULL) {
			return false;
		}
		o->done = d;
		o->cap_done = cap;
	}
	o->done[o->n_done++] = seq;
	return true;
}

static bool
is_done(struct mesh__outbox *o, uint64_t seq)
{
	bool found = false;

	pthread_mutex_lock(&o->done_mu);
	for (size_t i = 0; i < o->n_done && !found; i++) {
		found = o->done[i] == seq;
	}
	pthread_mutex_unlock(&o->done_mu);
	return found;
}

/* Hand a chunk to the sink and note what it stored; frees the events. */
static void
publish(struct mesh__outbox *o, struct mesh__outbox_msg *p, size_t n)
{
	bool ok[MESH__OUTBOX_CHUNK] = {0};

	o->sink(o->arg, p, n, ok);
	pthread_mutex_lock(&o->done_mu);
	for (size_t i = 0; i < n; i++) {
		if (ok[i] && !done_add(o, p[i].seq)) {
			break;
		}
	}
	pthread_mutex_unlock(&o->done_mu);
	for (size_t i = 0; i < n; i++) {
		mesh_event_free(p[i].ev);
		p[i].ev = NULL;
	}
}

size_t
mesh__outbox_flush(struct mesh__outbox *o, uint64_t from)
{
	struct mesh__outbox_msg p[MESH__OUTBOX_CHUNK];
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	uint8_t start[8];
	size_t n = 0, left = 0;
	int op;

	pthread_mutex_lock(&o->flush_mu);
	if (mdb_txn_begin(o->env, NULL, MDB_RDONLY, &txn) != 0 ||
	    mdb_cursor_open(txn, o->db, &cur) != 0) {
		if (txn != NULL) {
			mdb_txn_abort(txn);
		}
		pthread_mutex_unlock(&o->flush_mu);
		return 1;
	}
	mesh__be64(start, from);
	k.mv_size = 8;
	k.mv_data = start;
	op = from > 0 ? MDB_SET_RANGE : MDB_FIRST;
	while (mdb_cursor_get(cur, &k, &v, op) == 0) {
		const char *rec = v.mv_data;
		size_t tl = strnlen(rec, v.mv_size), gl;
		uint64_t seq = mesh__from_be64(k.mv_data);
		op = MDB_NEXT;
		if (k.mv_size != 8 || tl >= v.mv_size || is_done(o, seq)) {
			continue;
		}
		gl = strnlen(rec + tl + 1, v.mv_size - tl - 1);
		if (tl + 1 + gl >= v.mv_size) {
			continue; /* no room for the event: damaged */
		}
		left++;
		/* A chunk holds one target. */
		if (n > 0 && (n == MESH__OUTBOX_CHUNK ||
		              strcmp(p[0].target, rec) != 0)) {
			publish(o, p, n);
			n = 0;
		}
		p[n].seq = seq;
		snprintf(p[n].target, sizeof(p[n].target), "%s", rec);
		snprintf(p[n].group, sizeof(p[n].group), "%.*s", (int)gl,
		         rec + tl + 1);
		if (mesh_event_parse(rec + tl + 1 + gl + 1,
		                     v.mv_size - tl - gl - 2, 0,
		                     &p[n].ev) != MESH_OK) {
			char line[512];
			snprintf(line, sizeof(line),
			         "outbox record %" PRIu64 " unreadable: %s",
			         seq, mesh_errdetail());
			o->log(o->arg, line);
			continue;
		}
		n++;
	}
	if (n > 0) {
		publish(o, p, n);
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	pthread_mutex_unlock(&o->flush_mu);
	return left;
}

int
mesh__outbox_forget(struct mesh__outbox *o, MDB_txn *txn)
{
	uint64_t *done;
	size_t n;
	int rc = 0;

	pthread_mutex_lock(&o->done_mu);
	done = o->done;
	n = o->n_done;
	o->done = NULL;
	o->n_done = o->cap_done = 0;
	pthread_mutex_unlock(&o->done_mu);
	for (size_t i = 0; i < n && (rc == 0 || rc == MDB_NOTFOUND); i++) {
		uint8_t key[8];
		MDB_val k = {8, key};
		mesh__be64(key, done[i]);
		mesh__wnote(&o->note, o->db, &k);
		rc = mdb_del(txn, o->db, &k, NULL);
	}
	if (rc != 0 && rc != MDB_NOTFOUND) {
		/* Keep them for the next transaction. */
		pthread_mutex_lock(&o->done_mu);
		for (size_t i = 0; i < n && done_add(o, done[i]); i++) {
		}
		pthread_mutex_unlock(&o->done_mu);
	}
	free(done);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

size_t
mesh__outbox_count(struct mesh__outbox *o)
{
	MDB_txn *txn = NULL;
	MDB_stat st;
	size_t n = 0, done;

	if (o->env == NULL) {
		return 0; /* its store is closed */
	}
	if (mdb_txn_begin(o->env, NULL, MDB_RDONLY, &txn) == 0) {
		if (mdb_stat(txn, o->db, &st) == 0) {
			n = st.ms_entries;
		}
		mdb_txn_abort(txn);
	}
	pthread_mutex_lock(&o->done_mu);
	done = o->n_done;
	pthread_mutex_unlock(&o->done_mu);
	return n > done ? n - done : 0;
}
