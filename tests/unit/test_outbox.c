/* The runtime's outbox (services/runtime/outbox.h) on a real LMDB
 * environment with an in-memory sink: records written in a transaction
 * (and undone with it), published in order, target by target in chunks,
 * each once; what the sink fails stays for the next flush; forget deletes
 * only what was published; damaged records are skipped and logged. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

#include "harness.h"
#include "mesh/mesh.h"
#include "outbox.h"

struct sink {
	char calls[64][MESH__OUTBOX_TARGET];
	size_t sizes[64], n_calls;
	uint64_t seqs[512];
	size_t n_seqs;
	uint64_t fail_seq; /* 0: none */
	int logged;
};

static void
sink_fn(void *arg, const struct mesh__outbox_msg *m, size_t n, bool *ok)
{
	struct sink *s = arg;

	snprintf(s->calls[s->n_calls], sizeof(s->calls[0]), "%s", m[0].target);
	s->sizes[s->n_calls++] = n;
	for (size_t i = 0; i < n; i++) {
		ok[i] = m[i].seq != s->fail_seq;
		if (ok[i]) {
			s->seqs[s->n_seqs++] = m[i].seq;
		}
	}
}

static void
log_fn(void *arg, const char *line)
{
	struct sink *s = arg;

	(void)line;
	s->logged++;
}

static MDB_env *env;
static MDB_dbi db, meta;
static struct mesh__outbox ob;
static struct sink sk;

static int
put(MDB_txn *txn, struct mesh__undo *u, const char *target, const char *id)
{
	struct mesh_event *ev = NULL;
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc;

	mesh_event_new("test.out", "test", &ev);
	mesh_event_set_id(ev, id);
	mesh_event_pack(ev, &buf, &len);
	rc = mesh__outbox_put(&ob, txn, u, target, NULL, buf, len);
	free(buf);
	mesh_event_free(ev);
	return rc;
}

static size_t
entries(void)
{
	MDB_txn *txn = NULL;
	MDB_stat st = {0};

	mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
	mdb_stat(txn, db, &st);
	mdb_txn_abort(txn);
	return st.ms_entries;
}

static void
forget(void)
{
	MDB_txn *txn = NULL;

	mdb_txn_begin(env, NULL, 0, &txn);
	is_int(mesh__outbox_forget(&ob, txn), 0, "forget succeeds");
	mdb_txn_commit(txn);
}

int
main(void)
{
	char dir[PATH_MAX], id[32];
	struct mesh__undo u = {0};
	MDB_txn *txn = NULL;
	bool ordered = true;

	if (!test_tmpdir(dir, sizeof(dir))) {
		tap_skip_all("no temporary directory");
	}
	mdb_env_create(&env);
	mdb_env_set_maxdbs(env, 4);
	mdb_env_open(env, dir, 0, 0644);
	mdb_txn_begin(env, NULL, 0, &txn);
	mdb_dbi_open(txn, "outbox", MDB_CREATE, &db);
	mdb_dbi_open(txn, "meta", MDB_CREATE, &meta);
	mdb_txn_commit(txn);
	mesh__outbox_init(&ob, sink_fn, log_fn, &sk);
	mesh__outbox_bind(&ob, env, db, meta);

	/* 260 to a, 3 to b, 2 to a, in one transaction. */
	mdb_txn_begin(env, NULL, 0, &txn);
	for (int i = 0; i < 265; i++) {
		snprintf(id, sizeof(id), "e%d", i);
		put(txn, &u, i < 260 || i >= 263 ? "topic:a" : "queue:b", id);
	}
	is_int(mesh__outbox_last(&ob, txn), 265,
	       "265 records, sequences 1-265");
	mdb_txn_commit(txn);
	mesh__undo_clear(&u);
	is_int(mesh__outbox_count(&ob), 265, "all 265 pending");

	is_int(mesh__outbox_flush(&ob, 0), 265, "a flush publishes 265");
	is_int(sk.n_calls, 4, "in 4 calls");
	ok(sk.n_calls == 4 && strcmp(sk.calls[0], "topic:a") == 0 &&
	           sk.sizes[0] == MESH__OUTBOX_CHUNK && sk.sizes[1] == 4 &&
	           strcmp(sk.calls[2], "queue:b") == 0 && sk.sizes[2] == 3 &&
	           strcmp(sk.calls[3], "topic:a") == 0 && sk.sizes[3] == 2,
	   "one target a call, at most %d, in their order: a%d a4 b3 a2",
	   MESH__OUTBOX_CHUNK, MESH__OUTBOX_CHUNK);
	for (size_t i = 0; i < sk.n_seqs; i++) {
		ordered = ordered && sk.seqs[i] == i + 1;
	}
	ok(ordered && sk.n_seqs == 265, "each record once, by sequence");
	is_int(mesh__outbox_count(&ob), 0,
	       "published ones no longer count as pending");
	sk.n_calls = 0;
	is_int(mesh__outbox_flush(&ob, 0), 0, "a second flush has nothing");
	is_int(sk.n_calls, 0, "... and publishes nothing again");
	is_int(entries(), 265,
	       "the records stay until a transaction forgets");
	forget();
	is_int(entries(), 0, "forget deletes the published ones");

	/* What the sink fails stays, and goes out with the next flush. */
	mdb_txn_begin(env, NULL, 0, &txn);
	put(txn, &u, "topic:a", "f1");
	put(txn, &u, "topic:a", "f2");
	put(txn, &u, "topic:a", "f3");
	mdb_txn_commit(txn);
	mesh__undo_clear(&u);
	sk.fail_seq = 267;
	sk.n_seqs = 0;
	is_int(mesh__outbox_flush(&ob, 0), 3, "three to publish, one fails");
	is_int(mesh__outbox_count(&ob), 1, "... it stays pending");
	forget();
	is_int(entries(), 1, "... and forget keeps it");
	sk.fail_seq = 0;
	sk.n_seqs = 0;
	is_int(mesh__outbox_flush(&ob, 0), 1, "the next flush takes it");
	ok(sk.n_seqs == 1 && sk.seqs[0] == 267, "... the failed one alone");
	forget();

	/* A failed event's records vanish with its other writes. */
	mdb_txn_begin(env, NULL, 0, &txn);
	put(txn, &u, "topic:a", "undone");
	mesh__undo_apply(&u, txn);
	is_int(mesh__outbox_last(&ob, txn), 268,
	       "an undone record gives its sequence back (268 stays last)");
	mdb_txn_commit(txn);
	is_int(entries(), 0, "... and leaves no record");

	/* flush(from): only from that sequence on (a batch's own); 269 and
	 * 270 follow the 268 given out so far. */
	mdb_txn_begin(env, NULL, 0, &txn);
	put(txn, &u, "topic:a", "g21");
	put(txn, &u, "topic:a", "g22");
	mdb_txn_commit(txn);
	mesh__undo_clear(&u);
	sk.n_seqs = 0;
	is_int(mesh__outbox_flush(&ob, 270), 1, "flush from 270 takes one");
	ok(sk.n_seqs == 1 && sk.seqs[0] == 270, "... sequence 270");
	mesh__outbox_flush(&ob, 0);
	forget();

	/* Damaged records: skipped, logged when they hold an event. */
	{
		uint8_t key[8] = {0, 0, 0, 0, 0, 0, 0, 99};
		MDB_val k = {8, key};
		MDB_val bad = {18, "topic:a\0\0garbage!"};
		MDB_val cut = {8, "topic:a"};
		mdb_txn_begin(env, NULL, 0, &txn);
		mdb_put(txn, db, &k, &bad, 0);
		key[7] = 100;
		mdb_put(txn, db, &k, &cut, 0);
		mdb_txn_commit(txn);
		sk.n_seqs = 0;
		sk.logged = 0;
		mesh__outbox_flush(&ob, 0);
		is_int(sk.n_seqs, 0, "damaged records are not published");
		is_int(sk.logged, 1,
		       "... one with an unreadable event is logged");
	}

	mesh__undo_fini(&u);
	mesh__outbox_fini(&ob);
	mdb_env_close(env);
	test_rmtree(dir);
	mesh_shutdown();
	return tap_done();
}
