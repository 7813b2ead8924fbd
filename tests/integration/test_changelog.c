/* A partition's changelog (services/runtime/clog.h) against a real
 * nats-server: write transactions captured and appended, restores into
 * empty folders identical to the writer's environment byte for byte,
 * snapshots bounding the replay, a local copy reused, fencing of a stale
 * owner, a record split in parts, a changelog stream deleted underneath,
 * a corrupted snapshot refused; and the restore rate against a plain
 * LMDB copy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clog.h"
#include "harness.h"
#include "mesh/mesh.h"
#include "undo.h"

#define MAP_SIZE ((size_t)1 << 30)
#define N_DBS    5

static const char *const DBS[N_DBS] = {"state", "processed", "processed_at",
                                       "outbox", "meta"};
enum { D_STATE, D_PROCESSED, D_AT, D_OUTBOX, D_META };

static struct test_broker broker;
static struct mesh_conn *c;
static char root[PATH_MAX - 64];

struct owner {
	char dir[PATH_MAX];
	MDB_env *env;
	struct mesh__clog *l;
	struct mesh__redo redo;
	MDB_txn *txn;
	uint64_t epoch;
};

static char *
path_of(const char *name)
{
	static char p[4][PATH_MAX];
	static int i;

	i = (i + 1) % 4;
	snprintf(p[i], sizeof(p[i]), "%s/%s", root, name);
	return p[i];
}

static MDB_env *
env_open(const char *dir)
{
	MDB_env *env = NULL;

	mkdir(dir, 0755);
	if (mdb_env_create(&env) != 0 || mdb_env_set_maxdbs(env, 8) != 0 ||
	    mdb_env_set_mapsize(env, MAP_SIZE) != 0 ||
	    mdb_env_open(env, dir, MDB_NOTLS, 0644) != 0) {
		tap_diag("cannot open an environment in %s", dir);
		exit(1);
	}
	return env;
}

static mesh_err
owner_open(struct owner *o, const char *service, int k, const char *name,
           const char *writer)
{
	snprintf(o->dir, sizeof(o->dir), "%s", path_of(name));
	o->env = env_open(o->dir);
	return mesh__clog_open(c, service, k, o->env, DBS, N_DBS, writer, NULL,
	                       &o->l);
}

static void
owner_close(struct owner *o)
{
	mesh__clog_close(o->l);
	mesh__redo_fini(&o->redo);
	mdb_env_close(o->env);
	memset(o, 0, sizeof(*o));
}

static void
begin(struct owner *o)
{
	mdb_txn_begin(o->env, NULL, 0, &o->txn);
}

static void
put(struct owner *o, int db, const char *key, const void *val, size_t len)
{
	MDB_val k = {strlen(key), (void *)key}, v = {len, (void *)val};

	mdb_put(o->txn, mesh__clog_dbi(o->l, db), &k, &v, 0);
	mesh__redo_note(&o->redo, db, &k);
}

static void
puts_(struct owner *o, int db, const char *key, const char *val)
{
	put(o, db, key, val, strlen(val));
}

static void
del(struct owner *o, int db, const char *key)
{
	MDB_val k = {strlen(key), (void *)key};

	mdb_del(o->txn, mesh__clog_dbi(o->l, db), &k, NULL);
	mesh__redo_note(&o->redo, db, &k);
}

/* Append, then commit (or abort on error). */
static mesh_err
commit(struct owner *o)
{
	mesh_err err = mesh__clog_append(o->l, o->txn, &o->redo, o->epoch);

	if (err == MESH_OK) {
		mdb_txn_commit(o->txn);
	} else {
		mdb_txn_abort(o->txn);
	}
	o->txn = NULL;
	mesh__redo_clear(&o->redo);
	return err;
}

static bool
has_key(MDB_env *env, const char *db, const char *key)
{
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = {strlen(key), (void *)key}, v;
	bool found;

	mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
	found = mdb_dbi_open(txn, db, 0, &dbi) == 0 &&
	        mdb_get(txn, dbi, &k, &v) == 0;
	mdb_txn_abort(txn);
	return found;
}

/* Every database of a and b, entry by entry, byte for byte. *entries gets
 * how many there were. */
static bool
same_n(MDB_env *a, MDB_env *b, int n_dbs, long *entries)
{
	MDB_txn *ta, *tb;
	bool equal = true;

	*entries = 0;
	mdb_txn_begin(a, NULL, MDB_RDONLY, &ta);
	mdb_txn_begin(b, NULL, MDB_RDONLY, &tb);
	for (int i = 0; i < n_dbs && equal; i++) {
		MDB_dbi da, db;
		MDB_cursor *ca, *cb;
		MDB_val ka, va, kb, vb;
		int ra, rb;

		if (mdb_dbi_open(ta, DBS[i], 0, &da) != 0 ||
		    mdb_dbi_open(tb, DBS[i], 0, &db) != 0) {
			tap_diag("database %s missing", DBS[i]);
			equal = false;
			break;
		}
		mdb_cursor_open(ta, da, &ca);
		mdb_cursor_open(tb, db, &cb);
		ra = mdb_cursor_get(ca, &ka, &va, MDB_FIRST);
		rb = mdb_cursor_get(cb, &kb, &vb, MDB_FIRST);
		while (ra == 0 && rb == 0) {
			if (ka.mv_size != kb.mv_size ||
			    va.mv_size != vb.mv_size ||
			    memcmp(ka.mv_data, kb.mv_data, ka.mv_size) != 0 ||
			    memcmp(va.mv_data, vb.mv_data, va.mv_size) != 0) {
				tap_diag("%s: '%.*s' differs", DBS[i],
				         (int)ka.mv_size, (char *)ka.mv_data);
				equal = false;
				break;
			}
			(*entries)++;
			ra = mdb_cursor_get(ca, &ka, &va, MDB_NEXT);
			rb = mdb_cursor_get(cb, &kb, &vb, MDB_NEXT);
		}
		if (equal && (ra == 0 || rb == 0)) {
			tap_diag("%s: one side has more entries", DBS[i]);
			equal = false;
		}
		mdb_cursor_close(ca);
		mdb_cursor_close(cb);
	}
	mdb_txn_abort(ta);
	mdb_txn_abort(tb);
	return equal;
}

static bool
same(MDB_env *a, MDB_env *b, long *entries)
{
	return same_n(a, b, N_DBS, entries);
}

static bool
same_as_dir(MDB_env *a, const char *dir, long *entries)
{
	MDB_env *b = env_open(dir);
	bool r = same(a, b, entries);

	mdb_env_close(b);
	return r;
}

static mesh_err
restore(const char *service, int k, const char *name,
        struct mesh__clog_restore_stats *st)
{
	mesh_err err = mesh__clog_restore(c, service, k, path_of(name), DBS,
	                                  N_DBS, MAP_SIZE, st);

	if (err != MESH_OK) {
		tap_diag("restore %s: %s", name, mesh_errdetail());
	}
	return err;
}

static uint64_t
last_seq(const char *service, int k)
{
	struct mesh__clog_info in;

	mesh__clog_info(c, service, k, &in);
	return in.last_seq;
}

/* ---- the cases ------------------------------------------------------------
 */

static struct owner a, d, f;

static void
capture_and_restore(void)
{
	struct mesh__clog_restore_stats st;
	struct mesh__undo u = {0};
	char key[32], val[64];
	long n = 0;

	is_int(owner_open(&a, "svc", 0, "A", "inst-a"), MESH_OK,
	       "owner A opens partition 0's log");
	a.epoch = 1;
	is_int(mesh__clog_claim(a.l, 1), MESH_OK, "A claims it (a marker)");

	begin(&a);
	for (int i = 0; i < 100; i++) {
		snprintf(key, sizeof(key), "k%03d", i);
		snprintf(val, sizeof(val), "v1-%d", i);
		puts_(&a, D_STATE, key, val);
		snprintf(key, sizeof(key), "evt-%d", i);
		puts_(&a, D_PROCESSED, key, "1");
	}
	puts_(&a, D_AT, "0000000001", "evt-0");
	puts_(&a, D_OUTBOX, "ob-0001", "queue:x");
	put(&a, D_META, "outbox", "\0\0\0\0\0\0\0\1", 8);
	is_int(commit(&a), MESH_OK, "txn 1: 200 puts in 4 databases appended");

	begin(&a);
	for (int i = 0; i < 50; i++) {
		snprintf(key, sizeof(key), "k%03d", i);
		snprintf(val, sizeof(val), "v2-%d", i);
		puts_(&a, D_STATE, key, val);
		puts_(&a, D_STATE, key, val); /* noted twice */
	}
	for (int i = 50; i < 60; i++) {
		snprintf(key, sizeof(key), "k%03d", i);
		del(&a, D_STATE, key);
	}
	del(&a, D_STATE, "never-there");
	is_int(commit(&a), MESH_OK, "txn 2: overwrites and deletes");

	/* A write undone before commit (the runtime's undo log): the record
	 * carries each key's final value, the undone one's old one. */
	begin(&a);
	{
		MDB_val k = {4, "k000"}, v = {7, "undone!"};
		MDB_val k2 = {6, "ghost!"}, v2 = {1, "x"};
		mesh__undo_put(&u, a.txn, mesh__clog_dbi(a.l, D_STATE), &k,
		               &v);
		mesh__redo_note(&a.redo, D_STATE, &k);
		mesh__undo_put(&u, a.txn, mesh__clog_dbi(a.l, D_STATE), &k2,
		               &v2);
		mesh__redo_note(&a.redo, D_STATE, &k2);
		is_int(mesh__undo_apply(&u, a.txn), 0, "txn 3: writes undone");
	}
	puts_(&a, D_STATE, "k200", "kept");
	is_int(commit(&a), MESH_OK, "txn 3 appended");
	mesh__undo_fini(&u);
	ok(has_key(a.env, "state", "k000") &&
	           !has_key(a.env, "state", "ghost!"),
	   "A: the undone writes are undone");

	is_int(restore("svc", 0, "B", &st), MESH_OK,
	       "restore into an empty folder B");
	if (st.records_applied != 3) {
		tap_diag("%s", mesh_errdetail());
	}
	is_int(st.records_applied, 3, "... 3 records applied (and a marker)");
	ok(!st.reused_local && st.snapshot_bytes == 0,
	   "... from the log alone (no snapshot yet)");
	ok(same_as_dir(a.env, path_of("B"), &n),
	   "B is A, every database byte for byte (%ld entries)", n);
}

static void
snapshots_and_reuse(void)
{
	struct mesh__clog_restore_stats st;
	struct mesh__clog_info in;
	uint64_t at;
	char key[32];
	long n = 0;

	is_int(mesh__clog_snapshot(a.l, a.env), MESH_OK, "A takes a snapshot");
	at = last_seq("svc", 0);
	is_int(mesh__clog_info(c, "svc", 0, &in), MESH_OK, "info");
	ok(in.has_snapshot && in.snap_seq == at && in.snap_size > 0,
	   "... names the snapshot at %llu (%llu bytes)",
	   (unsigned long long)in.snap_seq, (unsigned long long)in.snap_size);
	for (int i = 0; i < 5; i++) {
		begin(&a);
		snprintf(key, sizeof(key), "after-%d", i);
		puts_(&a, D_STATE, key, "s");
		del(&a, D_STATE, "k070");
		commit(&a);
	}
	is_int(restore("svc", 0, "C", &st), MESH_OK,
	       "restore into an empty folder C");
	ok(st.snapshot_bytes > 0 && st.snapshot_seq == at,
	   "... from the snapshot (%llu bytes at %llu)",
	   (unsigned long long)st.snapshot_bytes,
	   (unsigned long long)st.snapshot_seq);
	is_int(st.records_applied, 5,
	       "... then only the 5 records after it replayed");
	ok(same_as_dir(a.env, path_of("C"), &n), "C is A (%ld entries)", n);

	begin(&a);
	puts_(&a, D_STATE, "one-more", "1");
	commit(&a);
	is_int(restore("svc", 0, "B", &st), MESH_OK, "restore into B again");
	ok(st.reused_local && st.snapshot_bytes == 0,
	   "... reusing its copy (no snapshot fetched)");
	is_int(st.records_applied, 6, "... only the 6 new records applied");
	ok(same_as_dir(a.env, path_of("B"), &n), "B is A again");

	mesh__clog_info(c, "svc", 0, &in);
	ok(in.last_seq == last_seq("svc", 0) && in.records_since == 6 &&
	           in.bytes_since > 0 && strcmp(in.last_writer, "inst-a") == 0,
	   "info: 6 records, %llu bytes since the snapshot, by inst-a",
	   (unsigned long long)in.bytes_since);
	ok(!mesh__clog_snapshot_due(a.l), "no snapshot due yet");
}

static void
fencing(void)
{
	struct mesh__clog_restore_stats st;
	long n = 0;
	mesh_err err;

	/* B's instance takes the partition over while A still runs. */
	is_int(restore("svc", 0, "D", &st), MESH_OK, "D restores partition 0");
	is_int(owner_open(&d, "svc", 0, "D", "inst-d"), MESH_OK,
	       "D opens its log");
	d.epoch = 2;
	is_int(mesh__clog_claim(d.l, 2), MESH_OK, "D claims (epoch 2)");

	begin(&a);
	puts_(&a, D_STATE, "fenced", "A's write after losing the partition");
	puts_(&a, D_PROCESSED, "evt-fenced", "1");
	err = commit(&a);
	is_int(err, MESH_ESTALE, "A's next append: MESH_ESTALE (fenced)");
	has_str(mesh_errdetail(), "fenced", "... the detail says so");
	ok(!has_key(a.env, "state", "fenced"),
	   "A's transaction was aborted: its environment has none of it");

	begin(&d);
	puts_(&d, D_STATE, "after-claim", "D");
	is_int(commit(&d), MESH_OK, "D appends");
	is_int(restore("svc", 0, "E", &st), MESH_OK, "restore into E");
	{
		MDB_env *e = env_open(path_of("E"));
		ok(!has_key(e, "state", "fenced") &&
		           !has_key(e, "processed", "evt-fenced") &&
		           has_key(e, "state", "after-claim"),
		   "E has D's write and nothing of A's fenced one");
		ok(same(d.env, e, &n), "E is D (%ld entries)", n);
		mdb_env_close(e);
	}

	/* A claim whose restore the tail outran is refused. */
	is_int(restore("svc", 0, "F", &st), MESH_OK, "F restores");
	begin(&d);
	puts_(&d, D_STATE, "while-F-restored", "D");
	commit(&d);
	is_int(owner_open(&f, "svc", 0, "F", "inst-f"), MESH_OK,
	       "F opens its log");
	f.epoch = 3;
	is_int(mesh__clog_claim(f.l, 3), MESH_ESTALE,
	       "F's claim after the tail moved: MESH_ESTALE");
	owner_close(&f);
	is_int(restore("svc", 0, "F", &st), MESH_OK, "F restores again");
	ok(st.reused_local && st.records_applied == 1,
	   "... reusing its copy: 1 record");
	owner_open(&f, "svc", 0, "F", "inst-f");
	f.epoch = 3;
	is_int(mesh__clog_claim(f.l, 3), MESH_OK, "F claims (epoch 3)");
	begin(&d);
	puts_(&d, D_STATE, "fenced-2", "D");
	is_int(commit(&d), MESH_ESTALE, "D is fenced in turn");
	ok(same_n(d.env, f.env, D_META, &n),
	   "F holds D's state as D last committed (all but the position)");
}

static void
big_record(void)
{
	struct mesh__clog_restore_stats st;
	size_t big = 1536 * 1024;
	char *v = malloc(big), key[32];
	uint64_t before = last_seq("svc", 0);
	long n = 0;

	for (size_t i = 0; i < big; i++) {
		v[i] = (char)(i * 7 + i / 4096);
	}
	begin(&f);
	put(&f, D_STATE, "big", v, big);
	for (int i = 0; i < 300; i++) {
		snprintf(key, sizeof(key), "bulk-%d", i);
		put(&f, D_STATE, key, v + i, 2048);
	}
	is_int(commit(&f), MESH_OK, "a record of 2.1 MB appended");
	ok(last_seq("svc", 0) - before >= 3, "... in %llu parts",
	   (unsigned long long)(last_seq("svc", 0) - before));
	is_int(restore("svc", 0, "G", &st), MESH_OK, "restore into G");
	ok(same_as_dir(f.env, path_of("G"), &n),
	   "G is F, the big record whole");
	is_int(restore("svc", 0, "E", &st), MESH_OK, "E restored again");
	ok(st.reused_local && same_as_dir(f.env, path_of("E"), &n),
	   "... reusing its copy, the parts gathered whole");
	/* Snapshots only go forward: the new owner's, then the fenced one's
	 * (its copy behind it) refused, the new one standing. */
	begin(&f);
	puts_(&f, D_STATE, "after-claim", "F");
	is_int(commit(&f), MESH_OK, "F commits");
	is_int(mesh__clog_snapshot(f.l, f.env), MESH_OK, "F takes a snapshot");
	is_int(mesh__clog_snapshot(d.l, d.env), MESH_ESTALE,
	       "fenced D's snapshot (its copy behind F's) is refused");
	{
		struct mesh__clog_info ci;
		is_int(mesh__clog_info(c, "svc", 0, &ci), MESH_OK,
		       "the log's info");
		ok(ci.has_snapshot && ci.snap_seq == ci.last_seq,
		   "... the snapshot standing is F's, at the tail (%" PRIu64
		   ")",
		   ci.snap_seq);
	}
	free(v);
}

static void
corrupted_snapshot(void)
{
	struct owner p = {0};
	struct mesh__clog_restore_stats st;
	struct mesh__clog_info in;
	natsMsg *m = NULL, *bad = NULL;
	jsOptions jo;
	jsErrCode jerr = 0;
	char subject[128];
	mesh_err err;

	owner_open(&p, "svc", 1, "P", "inst-p");
	mesh__clog_claim(p.l, 1);
	begin(&p);
	puts_(&p, D_STATE, "p", "1");
	commit(&p);
	is_int(mesh__clog_snapshot(p.l, p.env), MESH_OK,
	       "partition 1: a snapshot");
	mesh__clog_info(c, "svc", 1, &in);
	snprintf(subject, sizeof(subject), "mesh.snap.svc.1.c.%s", in.snap_id);
	/* Its one chunk again, a byte flipped. */
	js_GetLastMsg(&m, mesh_conn_js(c), "MESH_SNAP_svc", subject, NULL,
	              &jerr);
	ok(m != NULL, "its chunk read back");
	if (m == NULL) {
		owner_close(&p);
		return;
	}
	{
		int len = natsMsg_GetDataLength(m);
		char *data = malloc((size_t)len);
		jsPubAck *ack = NULL;
		memcpy(data, natsMsg_GetData(m), (size_t)len);
		data[len / 2] ^= 1;
		jsOptions_Init(&jo);
		jo.Stream.Purge.Subject = subject;
		js_PurgeStream(mesh_conn_js(c), "MESH_SNAP_svc", &jo, &jerr);
		natsMsg_Create(&bad, subject, NULL, data, len);
		natsMsgHeader_Set(bad, "Mesh-Snap-Chunk", "0");
		js_PublishMsg(&ack, mesh_conn_js(c), bad, NULL, &jerr);
		jsPubAck_Destroy(ack);
		natsMsg_Destroy(bad);
		natsMsg_Destroy(m);
		free(data);
	}
	err = restore("svc", 1, "H", &st);
	is_int(err, MESH_EPARSE,
	       "a restore from the corrupted chunk: refused");
	has_str(mesh_errdetail(), "BLAKE2b", "... the detail names the hash");
	owner_close(&p);
}

static void
stream_deleted(void)
{
	struct mesh__clog_restore_stats st;
	jsErrCode jerr = 0;
	struct owner g = {0};

	js_DeleteStream(mesh_conn_js(c), "MESH_CL_svc", NULL, &jerr);
	begin(&f);
	puts_(&f, D_STATE, "into-the-void", "1");
	is_int(commit(&f), MESH_ENOTFOUND,
	       "changelog stream deleted: append is MESH_ENOTFOUND");
	has_str(mesh_errdetail(), "MESH_CL_svc", "... naming the stream");
	ok(!has_key(f.env, "state", "into-the-void"), "... nothing committed");
	is_int(restore("svc", 0, "B", &st), MESH_ENOTFOUND,
	       "restore: MESH_ENOTFOUND");
	has_str(mesh_errdetail(), "MESH_CL_svc", "... naming the stream");

	/* Made again (by a first start elsewhere): refused, not reset. */
	mesh__clog_streams_ensure(c, "svc");
	is_int(restore("svc", 0, "B", &st), MESH_EEXIST,
	       "a stream made anew: restore over a copy refused");
	has_str(mesh_errdetail(), "created at", "... naming both times");
	is_int(restore("svc", 0, "I", &st), MESH_EEXIST,
	       "... and from the older snapshot into an empty folder");
	is_int(owner_open(&g, "svc", 0, "B", "inst-g"), MESH_EEXIST,
	       "opening the log over a copy of the old stream: refused");
	mdb_env_close(g.env);
}

/* The restore rate against a plain LMDB copy of the same environment. */
static void
rate(void)
{
	struct owner m = {0};
	struct mesh__clog_restore_stats st;
	const int records = 96, per = 64, vsize = 4096; /* 24 MiB */
	char *v = malloc((size_t)vsize), key[32];
	long long t0, copy_ms;
	long n;
	struct stat sb;
	double mb;

	mesh__clog_streams_ensure(c, "big");
	owner_open(&m, "big", 0, "M", "inst-m");
	mesh__clog_claim(m.l, 1);
	for (int r = 0; r < records; r++) {
		begin(&m);
		for (int i = 0; i < per; i++) {
			for (int j = 0; j < vsize; j += 4) {
				unsigned x = test_rand();
				memcpy(v + j, &x, 4);
			}
			snprintf(key, sizeof(key), "r%04d-%02d", r, i);
			put(&m, D_STATE, key, v, (size_t)vsize);
		}
		if (commit(&m) != MESH_OK) {
			tap_diag("append: %s", mesh_errdetail());
		}
		if (r == records * 3 / 4) {
			mesh__clog_snapshot(m.l, m.env);
		}
	}
	t0 = test_now_ms();
	mkdir(path_of("M-copy"), 0755);
	mdb_env_copy2(m.env, path_of("M-copy"), 0);
	copy_ms = test_now_ms() - t0;
	snprintf(key, sizeof(key), "M-copy/data.mdb");
	stat(path_of(key), &sb);
	mb = (double)sb.st_size / 1e6;
	is_int(restore("big", 0, "R", &st), MESH_OK,
	       "a %.0f MB environment restored", mb);
	n = 0;
	ok(same_as_dir(m.env, path_of("R"), &n), "... identical");
	tap_diag("restore: %.1f MB in %lld ms, %.0f MB/s (snapshot %.1f MB + "
	         "%llu records); plain mdb_env_copy: %lld ms, %.0f MB/s",
	         mb, (long long)st.ms,
	         mb * 1000.0 / (double)(st.ms ? st.ms : 1),
	         (double)st.snapshot_bytes / 1e6,
	         (unsigned long long)st.records_applied, copy_ms,
	         mb * 1000.0 / (double)(copy_ms ? copy_ms : 1));
	free(v);
	owner_close(&m);
}

int
main(void)
{
	struct mesh_conn_opts o;

	if (!test_broker_start(&broker, NULL)) {
		return tap_done() ? 1 : 1;
	}
	mesh_conn_opts_init(&o);
	o.servers = broker.url;
	if (mesh_conn_open(&o, &c) != MESH_OK ||
	    !test_tmpdir(root, sizeof(root))) {
		ok(false, "connect: %s", mesh_errdetail());
		return tap_done();
	}
	is_int(mesh__clog_streams_ensure(c, "svc"), MESH_OK,
	       "changelog and snapshot streams made");
	is_int(mesh__clog_streams_ensure(c, "a b"), MESH_EINVAL,
	       "a bad service name: MESH_EINVAL");

	capture_and_restore();
	snapshots_and_reuse();
	fencing();
	big_record();
	corrupted_snapshot();
	stream_deleted();
	rate();

	owner_close(&a);
	owner_close(&d);
	owner_close(&f);
	mesh_conn_close(c);
	mesh_shutdown();
	test_rmtree(root);
	test_broker_stop(&broker);
	return tap_done();
}
