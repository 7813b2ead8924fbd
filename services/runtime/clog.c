/* clog.c: a partition's changelog, snapshots and restore (see
 * clog.h). */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "clog.h"
#include "changelog.pb-c.h"
#include "mesh/clock.h"
#include "mesh/service_api.h"
#include "mesh/wire.h"

#define HDR_EXPECT      "Nats-Expected-Last-Subject-Sequence"
#define HDR_CHUNK       "Mesh-Snap-Chunk"
#define KEY_SEQ         "clog.seq"
#define KEY_CREATED     "clog.stream_created"
#define KEY_PENDING     "clog.pending"
#define META            MESH__CLOG_DBS_MAX /* the meta database's slot */
#define K_MAX           1023
#define APPLY_PER_TXN   512 /* messages per restore transaction */
#define APPLY_BYTES_TXN (32 * 1024 * 1024) /* ... or bytes */
#define FETCH_TRIES     3 /* a snapshot replaced while it was fetched */

typedef Evmesh__Changelog__ChangelogRecord Record;
typedef Evmesh__Changelog__ChangelogWrite Write;
typedef Evmesh__Changelog__SnapshotManifest Manifest;

/* A partition's names. */
struct names {
	char service[MESH_SERVICE_NAME_MAX + 1];
	int k;
	char cl[96];        /* MESH_CL_<service> */
	char snap[96];      /* MESH_SNAP_<service> */
	char subj[128];     /* mesh.cl.<service>.<k> */
	char head[128];     /* mesh.snap.<service>.<k>.head */
	char chunks[128];   /* mesh.snap.<service>.<k>.c.> */
	char chunk_of[128]; /* mesh.snap.<service>.<k>.c. (+ id) */
};

struct mesh__clog {
	struct mesh_conn *c;
	MDB_env *env;
	MDB_dbi dbi[MESH__CLOG_DBS_MAX + 1];
	int n_dbs;
	const char *writer;
	struct mesh__clog_opts o;
	struct names n;
	int64_t created; /* the changelog stream's, ns */
	uint64_t snap_seq;
	uint64_t records_since, bytes_since;
};

/* ---- small helpers --------------------------------------------------------
 */

static void
put_be64(uint8_t b[8], uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8) {
		b[i] = (uint8_t)v;
	}
}

static uint64_t
get_be64(const uint8_t b[8])
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++) {
		v = v << 8 | b[i];
	}
	return v;
}

static mesh_err
names_of(const char *service, int k, struct names *n)
{
	bool fifo = false;
	mesh_err err = mesh_name_check("service", service,
	                               MESH_SERVICE_NAME_MAX, &fifo);

	if (err != MESH_OK) {
		return err;
	}
	if (fifo) {
		return mesh_err_set(MESH_EINVAL,
		                    "service '%s': a partitioned service's "
		                    "name has no '.fifo'",
		                    service);
	}
	if (k < 0 || k > K_MAX) {
		return mesh_err_set(MESH_EINVAL,
		                    "service '%s': partition %d is outside "
		                    "0-%d",
		                    service, k, K_MAX);
	}
	snprintf(n->service, sizeof(n->service), "%s", service);
	n->k = k;
	snprintf(n->cl, sizeof(n->cl), MESH__CLOG_STREAM "%s", service);
	snprintf(n->snap, sizeof(n->snap), MESH__SNAP_STREAM "%s", service);
	snprintf(n->subj, sizeof(n->subj), "mesh.cl.%s.%d", service, k);
	snprintf(n->head, sizeof(n->head), "mesh.snap.%s.%d.head", service, k);
	snprintf(n->chunks, sizeof(n->chunks), "mesh.snap.%s.%d.c.>", service,
	         k);
	snprintf(n->chunk_of, sizeof(n->chunk_of), "mesh.snap.%s.%d.c.",
	         service, k);
	return MESH_OK;
}

static mesh_err
stream_gone(const struct names *n, const char *stream, const char *doing)
{
	return mesh_err_set(MESH_ENOTFOUND,
	                    "service '%s' partition %d: %s: stream %s is gone "
	                    "(it is never made again here: no silent reset)",
	                    n->service, n->k, doing, stream);
}

/* The stream's creation time. */
static mesh_err
stream_created(struct mesh_conn *c, const struct names *n, int64_t *out)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s =
	        js_GetStreamInfo(&si, mesh_conn_js(c), n->cl, NULL, &jerr);

	if (s != NATS_OK) {
		if (jerr == JSStreamNotFoundErr || s == NATS_NOT_FOUND) {
			return stream_gone(n, n->cl, "changelog");
		}
		return mesh_err_nats(s, jerr, "stream %s", n->cl);
	}
	*out = si->Created;
	jsStreamInfo_Destroy(si);
	return MESH_OK;
}

/* The last message on subject (*out NULL: none). */
static mesh_err
last_msg(struct mesh_conn *c, const struct names *n, const char *stream,
         const char *subject, natsMsg **out)
{
	jsErrCode jerr = 0;
	natsStatus s;

	*out = NULL;
	s = js_GetLastMsg(out, mesh_conn_js(c), stream, subject, NULL, &jerr);
	if (s == NATS_OK) {
		return MESH_OK;
	}
	*out = NULL;
	if (jerr == JSNoMessageFoundErr) {
		return MESH_OK;
	}
	if (jerr == JSStreamNotFoundErr) {
		return stream_gone(n, stream, subject);
	}
	if (s == NATS_NOT_FOUND && jerr == 0) {
		return MESH_OK;
	}
	return mesh_err_nats(s, jerr, "stream %s: the last message on '%s'",
	                     stream, subject);
}

/* The partition's latest snapshot manifest (*out NULL: none). */
static mesh_err
manifest_get(struct mesh_conn *c, const struct names *n, Manifest **out)
{
	natsMsg *m = NULL;
	mesh_err err = last_msg(c, n, n->snap, n->head, &m);

	*out = NULL;
	if (err != MESH_OK || m == NULL) {
		return err;
	}
	*out = evmesh__changelog__snapshot_manifest__unpack(
	        NULL, (size_t)natsMsg_GetDataLength(m),
	        (const uint8_t *)natsMsg_GetData(m));
	natsMsg_Destroy(m);
	if (*out == NULL) {
		return mesh_err_set(MESH_EPARSE,
		                    "service '%s' partition %d: the snapshot "
		                    "manifest on '%s' does not decode",
		                    n->service, n->k, n->head);
	}
	return MESH_OK;
}

static uint64_t
meta_u64(MDB_txn *txn, MDB_dbi meta, const char *key)
{
	MDB_val k = {strlen(key), (void *)key}, v;

	if (mdb_get(txn, meta, &k, &v) != 0 || v.mv_size != 8) {
		return 0;
	}
	return get_be64(v.mv_data);
}

/* Put key = v (0: delete it). */
static int
meta_set(MDB_txn *txn, MDB_dbi meta, const char *key, uint64_t v)
{
	uint8_t b[8];
	MDB_val k = {strlen(key), (void *)key}, d = {8, b};
	int rc;

	if (v == 0) {
		rc = mdb_del(txn, meta, &k, NULL);
		return rc == MDB_NOTFOUND ? 0 : rc;
	}
	put_be64(b, v);
	return mdb_put(txn, meta, &k, &d, 0);
}

/* Open dbs and "meta" in a transaction of their own. */
static mesh_err
dbis_open(MDB_env *env, const char *const *dbs, int n_dbs, MDB_dbi *dbi)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(env, NULL, 0, &txn);

	for (int i = 0; rc == 0 && i < n_dbs; i++) {
		rc = mdb_dbi_open(txn, dbs[i], MDB_CREATE, &dbi[i]);
	}
	if (rc == 0) {
		rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &dbi[META]);
	}
	if (rc != 0) {
		mdb_txn_abort(txn);
		return mesh_err_mdb(rc, "opening the partition's databases");
	}
	if ((rc = mdb_txn_commit(txn)) != 0) {
		return mesh_err_mdb(rc, "opening the partition's databases");
	}
	return MESH_OK;
}

static mesh_err
dbs_check(const char *const *dbs, int n_dbs)
{
	if (n_dbs < 1 || n_dbs > MESH__CLOG_DBS_MAX) {
		return mesh_err_set(MESH_EINVAL,
		                    "%d databases: a partition has 1-%d",
		                    n_dbs, MESH__CLOG_DBS_MAX);
	}
	for (int i = 0; i < n_dbs; i++) {
		if (dbs[i] == NULL || dbs[i][0] == '\0') {
			return mesh_err_set(
			        MESH_EINVAL,
			        "database %d of the partition has no "
			        "name",
			        i);
		}
	}
	return MESH_OK;
}

/* Make *buf hold at least need bytes (doubling). Returns 0 or ENOMEM. */
static int
grow(uint8_t **buf, size_t *cap, size_t need)
{
	size_t c = *cap ? *cap : 4096;
	uint8_t *b;

	if (need <= *cap) {
		return 0;
	}
	while (c < need) {
		c *= 2;
	}
	if ((b = realloc(*buf, c)) == NULL) {
		return ENOMEM;
	}
	*buf = b;
	*cap = c;
	return 0;
}

/* ---- capture ----------------------------------------------------------- */

struct noted {
	uint32_t db;
	uint32_t len;
	const uint8_t *key;
};

int
mesh__redo_note(struct mesh__redo *r, int db, const MDB_val *key)
{
	size_t need = 8 + key->mv_size;
	uint32_t h[2] = {(uint32_t)db, (uint32_t)key->mv_size};

	assert(db >= 0 && db < MESH__CLOG_DBS_MAX);
	if (grow(&r->buf, &r->cap, r->len + need) != 0) {
		return ENOMEM;
	}
	memcpy(r->buf + r->len, h, 8);
	memcpy(r->buf + r->len + 8, key->mv_data, key->mv_size);
	r->len += need;
	r->n++;
	return 0;
}

void
mesh__redo_clear(struct mesh__redo *r)
{
	r->len = 0;
	r->n = 0;
}

void
mesh__redo_fini(struct mesh__redo *r)
{
	free(r->buf);
	memset(r, 0, sizeof(*r));
}

static int
noted_cmp(const void *a, const void *b)
{
	const struct noted *x = a, *y = b;
	int c;

	if (x->db != y->db) {
		return x->db < y->db ? -1 : 1;
	}
	c = memcmp(x->key, y->key, x->len < y->len ? x->len : y->len);
	return c != 0 ? c : (x->len > y->len) - (x->len < y->len);
}

/* The distinct pairs of r, sorted; *n of them. */
static mesh_err
noted_list(const struct mesh__redo *r, struct noted **out, size_t *n)
{
	struct noted *v = NULL;
	size_t m = 0;

	*out = NULL;
	*n = 0;
	if (r == NULL || r->n == 0) {
		return MESH_OK;
	}
	if ((v = calloc(r->n, sizeof(*v))) == NULL) {
		return mesh_err_set(MESH_ENOMEM, "changelog record: %zu keys",
		                    r->n);
	}
	for (size_t off = 0; off < r->len; m++) {
		uint32_t h[2];
		memcpy(h, r->buf + off, 8);
		v[m] = (struct noted){h[0], h[1], r->buf + off + 8};
		off += 8 + h[1];
	}
	qsort(v, m, sizeof(*v), noted_cmp);
	*n = m ? 1 : 0;
	for (size_t i = 1; i < m; i++) {
		if (noted_cmp(&v[i], &v[*n - 1]) != 0) {
			v[(*n)++] = v[i];
		}
	}
	*out = v;
	return MESH_OK;
}

/* ---- the owner's log -----------------------------------------------------
 */

void
mesh__clog_opts_init(struct mesh__clog_opts *o)
{
	o->chunk_size = 512 * 1024;
	o->snapshot_bytes = 64ull * 1024 * 1024;
	o->snapshot_records = 100000;
	o->timeout_ms = 5000;
}

mesh_err
mesh__clog_streams_ensure(struct mesh_conn *c, const char *service)
{
	struct names n;
	jsStreamConfig sc;
	const char *cl_subj[1], *snap_subj[1];
	char cl[128], snap[128];
	mesh_err err;

	if ((err = names_of(service, 0, &n)) != MESH_OK) {
		return err;
	}
	snprintf(cl, sizeof(cl), "mesh.cl.%s.*", service);
	snprintf(snap, sizeof(snap), "mesh.snap.%s.>", service);
	cl_subj[0] = cl;
	snap_subj[0] = snap;
	mesh_stream_config_init(c, &sc, n.cl, cl_subj, 1);
	if ((err = mesh_stream_ensure(c, &sc)) != MESH_OK) {
		return err;
	}
	mesh_stream_config_init(c, &sc, n.snap, snap_subj, 1);
	return mesh_stream_ensure(c, &sc);
}

mesh_err
mesh__clog_open(struct mesh_conn *c, const char *service, int k, MDB_env *env,
                const char *const *dbs, int n_dbs, const char *writer,
                const struct mesh__clog_opts *o, struct mesh__clog **out)
{
	struct mesh__clog *l = calloc(1, sizeof(*l));
	Manifest *mf = NULL;
	natsMsg *last = NULL;
	MDB_txn *txn = NULL;
	uint64_t local = 0;
	mesh_err err;
	int rc;

	if (l == NULL) {
		return mesh_err_set(MESH_ENOMEM, "changelog of '%s'", service);
	}
	l->c = c;
	l->env = env;
	l->n_dbs = n_dbs;
	l->writer = writer ? writer : "";
	if (o != NULL) {
		l->o = *o;
	} else {
		mesh__clog_opts_init(&l->o);
	}
	if ((err = names_of(service, k, &l->n)) != MESH_OK ||
	    (err = dbs_check(dbs, n_dbs)) != MESH_OK ||
	    (err = stream_created(c, &l->n, &l->created)) != MESH_OK ||
	    (err = dbis_open(env, dbs, n_dbs, l->dbi)) != MESH_OK) {
		goto fail;
	}
	if ((rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) != 0) {
		err = mesh_err_mdb(rc, "service '%s' partition %d", service,
		                   k);
		goto fail;
	}
	local = meta_u64(txn, l->dbi[META], KEY_CREATED);
	mdb_txn_abort(txn);
	if (local != 0 && (int64_t)local != l->created) {
		err = mesh_err_set(MESH_EEXIST,
		                   "service '%s' partition %d: changelog "
		                   "stream %s was created at %" PRId64
		                   " ns, the environment follows the one "
		                   "created at %" PRIu64
		                   " ns: restore it (no silent reset)",
		                   service, k, l->n.cl, l->created, local);
		goto fail;
	}
	if ((err = manifest_get(c, &l->n, &mf)) != MESH_OK ||
	    (err = last_msg(c, &l->n, l->n.cl, l->n.subj, &last)) != MESH_OK) {
		goto fail;
	}
	l->snap_seq = mf ? mf->seq : 0;
	if (last != NULL && natsMsg_GetSequence(last) > l->snap_seq) {
		Record *r = evmesh__changelog__changelog_record__unpack(
		        NULL, (size_t)natsMsg_GetDataLength(last),
		        (const uint8_t *)natsMsg_GetData(last));
		if (r != NULL) {
			l->records_since = r->records_since_snapshot;
			l->bytes_since = r->bytes_since_snapshot;
			evmesh__changelog__changelog_record__free_unpacked(
			        r, NULL);
		}
	}
	natsMsg_Destroy(last);
	evmesh__changelog__snapshot_manifest__free_unpacked(mf, NULL);
	*out = l;
	return MESH_OK;
fail:
	evmesh__changelog__snapshot_manifest__free_unpacked(mf, NULL);
	free(l);
	return err;
}

void
mesh__clog_close(struct mesh__clog *l)
{
	free(l);
}

MDB_dbi
mesh__clog_dbi(const struct mesh__clog *l, int i)
{
	assert(i >= 0 && i < l->n_dbs);
	return l->dbi[i];
}

/* Publish one message of the partition expecting the subject's last
 * sequence to be `expect`; *seq gets its own. */
static mesh_err
publish_expect(struct mesh__clog *l, const uint8_t *data, size_t len,
               uint64_t expect, uint64_t *seq)
{
	natsMsg *m = NULL;
	jsPubAck *ack = NULL;
	jsPubOptions po;
	jsErrCode jerr = 0;
	char v[24];
	natsStatus s;

	snprintf(v, sizeof(v), "%" PRIu64, expect);
	if ((s = natsMsg_Create(&m, l->n.subj, NULL, (const char *)data,
	                        (int)len)) != NATS_OK ||
	    (s = natsMsgHeader_Set(m, HDR_EXPECT, v)) != NATS_OK) {
		natsMsg_Destroy(m);
		return mesh_err_nats(s, 0, "changelog record on '%s'",
		                     l->n.subj);
	}
	jsPubOptions_Init(&po);
	po.MaxWait = l->o.timeout_ms;
	s = js_PublishMsg(&ack, mesh_conn_js(l->c), m, &po, &jerr);
	natsMsg_Destroy(m);
	if (s == NATS_OK) {
		*seq = ack->Sequence;
		jsPubAck_Destroy(ack);
		return MESH_OK;
	}
	if (jerr == JSStreamWrongLastSequenceErr) {
		return mesh_err_set(MESH_ESTALE,
		                    "service '%s' partition %d: changelog "
		                    "subject '%s' moved past %" PRIu64
		                    " (another owner claimed or appended, or "
		                    "an append that timed out was stored): "
		                    "this owner is fenced; restore the "
		                    "partition to take it again",
		                    l->n.service, l->n.k, l->n.subj, expect);
	}
	if (s == NATS_NO_RESPONDERS || jerr == JSStreamNotFoundErr) {
		return stream_gone(&l->n, l->n.cl, "appending");
	}
	return mesh_err_nats(s, jerr, "changelog record on '%s'", l->n.subj);
}

/* Publish rec (its prev and counters set here) expecting *pos, whole or
 * in parts; *pos gets the last part's sequence, *bytes the whole record's
 * size. A record that `counts` adds itself to the counters it carries (a
 * marker does not). */
static mesh_err
publish_record(struct mesh__clog *l, Record *rec, bool counts, uint64_t *pos,
               uint64_t *bytes)
{
	size_t size, part_max = MESH__CLOG_PART_MAX;
	uint8_t *buf;
	mesh_err err = MESH_OK;

	rec->prev = *pos;
	rec->records_since_snapshot = l->records_since + (counts ? 1 : 0);
	rec->bytes_since_snapshot = l->bytes_since;
	size = evmesh__changelog__changelog_record__get_packed_size(rec);
	if (counts) {
		/* The varint may grow by a byte or two: count the size with
		 * the count in it. */
		rec->bytes_since_snapshot = l->bytes_since + size + 10;
		size = evmesh__changelog__changelog_record__get_packed_size(
		        rec);
	}
	if ((buf = malloc(size ? size : 1)) == NULL) {
		return mesh_err_set(MESH_ENOMEM,
		                    "changelog record of %zu bytes", size);
	}
	evmesh__changelog__changelog_record__pack(rec, buf);
	*bytes = size;
	if (size <= part_max) {
		err = publish_expect(l, buf, size, *pos, pos);
		free(buf);
		return err;
	}
	/* Too big for one message: the packed record in fragments, each a
	 * record of its own on the chain. */
	for (size_t off = 0, i = 0; off < size && err == MESH_OK; i++) {
		Record frag = EVMESH__CHANGELOG__CHANGELOG_RECORD__INIT;
		size_t n = size - off < part_max ? size - off : part_max;
		uint8_t *p;
		size_t psize;

		frag.partition = rec->partition;
		frag.epoch = rec->epoch;
		frag.prev = *pos;
		frag.writer = rec->writer;
		frag.part = (uint32_t)i;
		frag.more = off + n < size;
		frag.fragment.data = buf + off;
		frag.fragment.len = n;
		frag.records_since_snapshot = rec->records_since_snapshot;
		frag.bytes_since_snapshot = rec->bytes_since_snapshot;
		psize = evmesh__changelog__changelog_record__get_packed_size(
		        &frag);
		if ((p = malloc(psize)) == NULL) {
			err = mesh_err_set(MESH_ENOMEM,
			                   "changelog part of %zu bytes",
			                   psize);
			break;
		}
		evmesh__changelog__changelog_record__pack(&frag, p);
		err = publish_expect(l, p, psize, *pos, pos);
		free(p);
		off += n;
	}
	free(buf);
	return err;
}

/* The new position into txn's meta. */
static mesh_err
position_set(struct mesh__clog *l, MDB_txn *txn, uint64_t pos)
{
	int rc;

	if ((rc = meta_set(txn, l->dbi[META], KEY_SEQ, pos)) != 0 ||
	    (rc = meta_set(txn, l->dbi[META], KEY_PENDING, 0)) != 0 ||
	    (rc = meta_set(txn, l->dbi[META], KEY_CREATED,
	                   (uint64_t)l->created)) != 0) {
		return mesh_err_mdb(rc,
		                    "service '%s' partition %d: changelog "
		                    "position %" PRIu64,
		                    l->n.service, l->n.k, pos);
	}
	return MESH_OK;
}

mesh_err
mesh__clog_append(struct mesh__clog *l, MDB_txn *txn,
                  const struct mesh__redo *r, uint64_t epoch)
{
	Record rec = EVMESH__CHANGELOG__CHANGELOG_RECORD__INIT;
	struct noted *v = NULL;
	Write *w = NULL, **wp = NULL;
	size_t n = 0;
	uint64_t pos = meta_u64(txn, l->dbi[META], KEY_SEQ), bytes = 0;
	mesh_err err;

	if ((err = noted_list(r, &v, &n)) != MESH_OK) {
		return err;
	}
	if (n > 0 && ((w = calloc(n, sizeof(*w))) == NULL ||
	              (wp = calloc(n, sizeof(*wp))) == NULL)) {
		err = mesh_err_set(MESH_ENOMEM, "changelog record: %zu keys",
		                   n);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		MDB_val key = {v[i].len, (void *)v[i].key}, val;
		Write x = EVMESH__CHANGELOG__CHANGELOG_WRITE__INIT;
		int rc;

		if (v[i].db >= (uint32_t)l->n_dbs) {
			err = mesh_err_set(MESH_EINVAL,
			                   "changelog: database %" PRIu32
			                   " noted, the partition has %d",
			                   v[i].db, l->n_dbs);
			goto out;
		}
		rc = mdb_get(txn, l->dbi[v[i].db], &key, &val);
		if (rc != 0 && rc != MDB_NOTFOUND) {
			err = mesh_err_mdb(rc,
			                   "changelog: reading a key of "
			                   "database %" PRIu32,
			                   v[i].db);
			goto out;
		}
		x.db = v[i].db;
		x.key.data = (uint8_t *)v[i].key;
		x.key.len = v[i].len;
		x.delete_ = rc == MDB_NOTFOUND;
		if (rc == 0) {
			x.value.data = val.mv_data;
			x.value.len = val.mv_size;
		}
		w[i] = x;
		wp[i] = &w[i];
	}
	rec.partition = (uint32_t)l->n.k;
	rec.epoch = epoch;
	rec.writer = (char *)l->writer;
	rec.n_writes = n;
	rec.writes = wp;
	if ((err = publish_record(l, &rec, true, &pos, &bytes)) != MESH_OK ||
	    (err = position_set(l, txn, pos)) != MESH_OK) {
		goto out;
	}
	l->records_since = rec.records_since_snapshot;
	l->bytes_since = rec.bytes_since_snapshot;
out:
	free(wp);
	free(w);
	free(v);
	return err;
}

mesh_err
mesh__clog_claim(struct mesh__clog *l, uint64_t epoch)
{
	Record rec = EVMESH__CHANGELOG__CHANGELOG_RECORD__INIT;
	MDB_txn *txn;
	uint64_t pos, bytes = 0;
	mesh_err err;
	int rc;

	if ((rc = mdb_txn_begin(l->env, NULL, 0, &txn)) != 0) {
		return mesh_err_mdb(rc, "service '%s' partition %d: claim",
		                    l->n.service, l->n.k);
	}
	pos = meta_u64(txn, l->dbi[META], KEY_SEQ);
	rec.partition = (uint32_t)l->n.k;
	rec.epoch = epoch;
	rec.writer = (char *)l->writer;
	rec.marker = true;
	if ((err = publish_record(l, &rec, false, &pos, &bytes)) == MESH_OK) {
		err = position_set(l, txn, pos);
	}
	if (err != MESH_OK) {
		mdb_txn_abort(txn);
		return err;
	}
	if ((rc = mdb_txn_commit(txn)) != 0) {
		return mesh_err_mdb(rc, "service '%s' partition %d: claim",
		                    l->n.service, l->n.k);
	}
	return MESH_OK;
}

bool
mesh__clog_snapshot_due(const struct mesh__clog *l)
{
	return l->records_since >= l->o.snapshot_records ||
	       l->bytes_since >= l->o.snapshot_bytes;
}

/* ---- snapshots ------------------------------------------------------------
 */

struct chunk_acks {
	pthread_mutex_t mu;
	uint64_t acked, first_seq;
	mesh_err err;
	char why[256];
};

static void
on_chunk_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae,
             void *arg)
{
	struct chunk_acks *a = arg;

	pthread_mutex_lock(&a->mu);
	if (pa != NULL) {
		a->acked++;
		if (a->first_seq == 0 || pa->Sequence < a->first_seq) {
			a->first_seq = pa->Sequence;
		}
	} else if (a->err == MESH_OK) {
		a->err = pae && pae->Err == NATS_TIMEOUT ? MESH_ETIMEDOUT
		                                         : MESH_EBROKER;
		snprintf(a->why, sizeof(a->why), "%s",
		         pae && pae->ErrText ? pae->ErrText : "no answer");
	}
	pthread_mutex_unlock(&a->mu);
	natsMsg_Destroy(msg);
}

/* Purge subject's messages before sequence `before` (0: all of them). */
static mesh_err
purge(struct mesh__clog *l, const char *stream, const char *subject,
      uint64_t before)
{
	jsOptions jo;
	jsErrCode jerr = 0;
	natsStatus s;

	/* The server takes a purge "before 1" for "all". */
	if (before == 1) {
		return MESH_OK;
	}
	jsOptions_Init(&jo);
	jo.Stream.Purge.Subject = subject;
	jo.Stream.Purge.Sequence = before;
	s = js_PurgeStream(mesh_conn_js(l->c), stream, &jo, &jerr);
	if (s != NATS_OK) {
		return mesh_err_nats(s, jerr, "stream %s: purging '%s'",
		                     stream, subject);
	}
	return MESH_OK;
}

/* Publish the file's chunks on subject, pipelined; *first_seq gets the
 * first one's sequence. */
static mesh_err
chunks_publish(struct mesh__clog *l, int fd, const char *subject,
               uint64_t size, uint32_t *chunks, uint8_t hash[32],
               uint64_t *first_seq)
{
	struct chunk_acks a = {.err = MESH_OK};
	crypto_generichash_state h;
	jsOptions jo;
	jsPubOptions po;
	jsCtx *js = NULL;
	uint8_t *buf = malloc(l->o.chunk_size);
	uint64_t sent = 0;
	mesh_err err = MESH_OK;
	natsStatus s;

	pthread_mutex_init(&a.mu, NULL);
	crypto_generichash_init(&h, NULL, 0, 32);
	jsOptions_Init(&jo);
	jo.PublishAsync.MaxPending = 16;
	jo.PublishAsync.AckHandler = on_chunk_ack;
	jo.PublishAsync.AckHandlerClosure = &a;
	jo.PublishAsync.StallWait = l->o.timeout_ms;
	jo.Wait = l->o.timeout_ms;
	if (buf == NULL) {
		err = mesh_err_set(MESH_ENOMEM, "snapshot chunk of %zu bytes",
		                   l->o.chunk_size);
		goto out;
	}
	if ((s = natsConnection_JetStream(&js, mesh_conn_nats(l->c), &jo)) !=
	    NATS_OK) {
		err = mesh_err_nats(s, 0, "snapshot of '%s'", l->n.subj);
		goto out;
	}
	*chunks = 0;
	while (sent < size) {
		ssize_t got = read(fd, buf, l->o.chunk_size);
		natsMsg *m = NULL;
		char idx[16];

		if (got <= 0) {
			err = mesh_err_errno(got < 0 ? errno : EIO,
			                     "snapshot of service '%s' "
			                     "partition %d: reading its copy",
			                     l->n.service, l->n.k);
			goto out;
		}
		crypto_generichash_update(&h, buf, (size_t)got);
		snprintf(idx, sizeof(idx), "%" PRIu32, *chunks);
		if ((s = natsMsg_Create(&m, subject, NULL, (const char *)buf,
		                        (int)got)) != NATS_OK ||
		    (s = natsMsgHeader_Set(m, HDR_CHUNK, idx)) != NATS_OK ||
		    (s = js_PublishMsgAsync(js, &m, NULL)) != NATS_OK) {
			natsMsg_Destroy(m);
			err = mesh_err_nats(s, 0, "snapshot chunk %s on '%s'",
			                    idx, subject);
			goto out;
		}
		sent += (uint64_t)got;
		(*chunks)++;
	}
	jsPubOptions_Init(&po);
	po.MaxWait = l->o.timeout_ms * 4;
	if ((s = js_PublishAsyncComplete(js, &po)) != NATS_OK) {
		err = mesh_err_nats(s, 0, "snapshot chunks on '%s'", subject);
		goto out;
	}
	pthread_mutex_lock(&a.mu);
	if (a.err == MESH_OK && a.acked != *chunks) {
		a.err = MESH_ETIMEDOUT;
		snprintf(a.why, sizeof(a.why),
		         "%" PRIu64 " of %" PRIu32 " confirmed", a.acked,
		         *chunks);
	}
	err = a.err;
	*first_seq = a.first_seq;
	pthread_mutex_unlock(&a.mu);
	if (err != MESH_OK) {
		err = mesh_err_set(err, "snapshot chunks on '%s': %s", subject,
		                   a.why);
	}
	crypto_generichash_final(&h, hash, 32);
out:
	jsCtx_Destroy(js);
	free(buf);
	pthread_mutex_destroy(&a.mu);
	return err;
}

/* The latest manifest's stream sequence into *head_seq (0: none);
 * MESH_ESTALE when it covers position seq or more already. */
static mesh_err
head_check(struct mesh__clog *l, uint64_t seq, uint64_t *head_seq)
{
	natsMsg *m = NULL;
	Manifest *cur = NULL;
	mesh_err err = last_msg(l->c, &l->n, l->n.snap, l->n.head, &m);

	*head_seq = 0;
	if (err != MESH_OK || m == NULL) {
		return err;
	}
	*head_seq = natsMsg_GetSequence(m);
	cur = evmesh__changelog__snapshot_manifest__unpack(
	        NULL, (size_t)natsMsg_GetDataLength(m),
	        (const uint8_t *)natsMsg_GetData(m));
	if (cur != NULL && cur->seq >= seq) {
		err = mesh_err_set(MESH_ESTALE,
		                   "snapshot of service '%s' partition %d at "
		                   "%" PRIu64 ": one at %" PRIu64
		                   " exists (this copy is behind)",
		                   l->n.service, l->n.k, seq, cur->seq);
	}
	evmesh__changelog__snapshot_manifest__free_unpacked(cur, NULL);
	natsMsg_Destroy(m);
	return err;
}

mesh_err
mesh__clog_snapshot(struct mesh__clog *l, MDB_env *env)
{
	Manifest mf = EVMESH__CHANGELOG__SNAPSHOT_MANIFEST__INIT;
	MDB_txn *txn;
	const char *dir = NULL;
	char path[4096], id[17], subject[160];
	uint8_t rnd[8], hash[32], *buf = NULL;
	uint64_t seq, pending, first = 0, mseq, head_seq = 0;
	uint32_t chunks = 0;
	char expect[24];
	off_t size;
	int fd = -1, rc;
	size_t mlen;
	mesh_err err;
	natsMsg *m = NULL;
	jsPubAck *ack = NULL;
	jsPubOptions po;
	jsErrCode jerr = 0;
	natsStatus s;

	assert(env == l->env);
	if ((rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) != 0) {
		return mesh_err_mdb(rc,
		                    "snapshot of service '%s' partition %d",
		                    l->n.service, l->n.k);
	}
	/* The copy below is at this position or later: records replayed
	 * over a later state leave it as it is. */
	seq = meta_u64(txn, l->dbi[META], KEY_SEQ);
	pending = meta_u64(txn, l->dbi[META], KEY_PENDING);
	mdb_txn_abort(txn);
	/* Behind the latest snapshot already: nothing to copy or send. */
	if ((err = head_check(l, seq, &head_seq)) != MESH_OK) {
		return err;
	}
	mdb_env_get_path(env, &dir);
	snprintf(path, sizeof(path), "%s/.clog-snap-XXXXXX", dir);
	if ((fd = mkstemp(path)) < 0) {
		return mesh_err_errno(errno,
		                      "snapshot: temporary file in '%s'", dir);
	}
	unlink(path);
	if ((rc = mdb_env_copyfd2(env, fd, MDB_CP_COMPACT)) != 0) {
		err = mesh_err_mdb(rc, "snapshot of service '%s' partition %d",
		                   l->n.service, l->n.k);
		goto out;
	}
	if ((size = lseek(fd, 0, SEEK_END)) < 0 ||
	    lseek(fd, 0, SEEK_SET) < 0) {
		err = mesh_err_errno(errno, "snapshot: its copy in '%s'", dir);
		goto out;
	}
	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(id, sizeof(id), rnd, sizeof(rnd));
	snprintf(subject, sizeof(subject), "%s%s", l->n.chunk_of, id);
	if ((err = chunks_publish(l, fd, subject, (uint64_t)size, &chunks,
	                          hash, &first)) != MESH_OK) {
		purge(l, l->n.snap, subject, 0);
		goto out;
	}
	mf.id = id;
	mf.seq = seq;
	mf.size = (uint64_t)size;
	mf.chunks = chunks;
	mf.blake2b.data = hash;
	mf.blake2b.len = sizeof(hash);
	mf.time_ms = mesh_wall_ms();
	mf.partition = (uint32_t)l->n.k;
	mf.stream_created = l->created;
	mf.writer = (char *)l->writer;
	mlen = evmesh__changelog__snapshot_manifest__get_packed_size(&mf);
	if ((buf = malloc(mlen)) == NULL) {
		err = mesh_err_set(MESH_ENOMEM, "snapshot manifest");
		goto out;
	}
	evmesh__changelog__snapshot_manifest__pack(&mf, buf);
	/* Snapshots only go forward: a writer whose copy is behind the
	 * latest snapshot (an owner that lost the partition while it made
	 * this one) must not replace it, or a restore would start before
	 * records already purged. The manifest stands only if no other came
	 * meanwhile. */
	if ((err = head_check(l, seq, &head_seq)) != MESH_OK) {
		purge(l, l->n.snap, subject, 0);
		goto out;
	}
	jsPubOptions_Init(&po);
	po.MaxWait = l->o.timeout_ms;
	snprintf(expect, sizeof(expect), "%" PRIu64, head_seq);
	if ((s = natsMsg_Create(&m, l->n.head, NULL, (const char *)buf,
	                        (int)mlen)) != NATS_OK ||
	    (s = natsMsgHeader_Set(m, "Nats-Expected-Last-Subject-Sequence",
	                           expect)) != NATS_OK ||
	    (s = js_PublishMsg(&ack, mesh_conn_js(l->c), m, &po, &jerr)) !=
	            NATS_OK) {
		if (jerr == JSStreamWrongLastSequenceErr) {
			purge(l, l->n.snap, subject, 0);
			err = mesh_err_set(
			        MESH_ESTALE,
			        "snapshot of service '%s' partition "
			        "%d: another snapshot came meanwhile",
			        l->n.service, l->n.k);
			goto out;
		}
		err = s == NATS_NO_RESPONDERS || jerr == JSStreamNotFoundErr
		              ? stream_gone(&l->n, l->n.snap, "snapshot")
		              : mesh_err_nats(s, jerr,
		                              "snapshot manifest on "
		                              "'%s'",
		                              l->n.head);
		goto out;
	}
	mseq = ack->Sequence;
	/* The new snapshot stands: the older ones and the records it
	 * covers go, the record at its position stays (the next append's
	 * expected sequence). */
	l->snap_seq = seq;
	l->records_since = 0;
	l->bytes_since = 0;
	seq = pending != 0 && pending < seq ? pending : seq;
	if ((err = purge(l, l->n.snap, l->n.chunks, first)) != MESH_OK ||
	    (err = purge(l, l->n.snap, l->n.head, mseq)) != MESH_OK ||
	    (seq > 0 &&
	     (err = purge(l, l->n.cl, l->n.subj, seq)) != MESH_OK)) {
		goto out;
	}
out:
	jsPubAck_Destroy(ack);
	natsMsg_Destroy(m);
	free(buf);
	close(fd);
	return err;
}

/* ---- restore
 * ----------------------------------------------------------------- */

struct applier {
	const struct names *n;
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi *dbi;
	int n_dbs;
	uint64_t last;    /* the previous message's sequence */
	bool first;       /* no message read yet */
	uint64_t pending; /* the first part of the record being gathered */
	uint32_t next_part;
	uint8_t *frag;
	size_t frag_len, frag_cap;
	size_t in_txn, bytes_in_txn;
	struct mesh__clog_restore_stats *st;
};

static mesh_err
apply_writes(struct applier *a, const Record *r, uint64_t seq)
{
	for (size_t i = 0; i < r->n_writes; i++) {
		const Write *w = r->writes[i];
		MDB_val k = {w->key.len, w->key.data};
		MDB_val v = {w->value.len, w->value.data};
		int rc;

		if (w->db >= (uint32_t)a->n_dbs) {
			return mesh_err_set(MESH_EPARSE,
			                    "changelog %s record %" PRIu64
			                    ": database %" PRIu32
			                    ", the partition has %d",
			                    a->n->cl, seq, w->db, a->n_dbs);
		}
		rc = w->delete_ ? mdb_del(a->txn, a->dbi[w->db], &k, NULL)
		                : mdb_put(a->txn, a->dbi[w->db], &k, &v, 0);
		if (rc != 0 && !(w->delete_ && rc == MDB_NOTFOUND)) {
			return mesh_err_mdb(
			        rc, "applying changelog %s record %" PRIu64,
			        a->n->cl, seq);
		}
	}
	a->st->records_applied++;
	return MESH_OK;
}

static mesh_err
apply_commit(struct applier *a)
{
	int rc;

	if (a->txn == NULL) {
		return MESH_OK;
	}
	rc = mdb_txn_commit(a->txn);
	a->txn = NULL;
	a->in_txn = 0;
	a->bytes_in_txn = 0;
	return rc != 0 ? mesh_err_mdb(rc,
	                              "restoring service '%s' partition "
	                              "%d",
	                              a->n->service, a->n->k)
	               : MESH_OK;
}

/* One changelog message at seq. *broken: the first message does not
 * follow the base (nothing written then). */
static mesh_err
apply_msg(struct applier *a, uint64_t seq, const uint8_t *data, size_t len,
          bool *broken)
{
	Record *r =
	        evmesh__changelog__changelog_record__unpack(NULL, len, data);
	mesh_err err = MESH_OK;
	int rc;

	if (r == NULL) {
		return mesh_err_set(MESH_EPARSE,
		                    "changelog %s: record %" PRIu64
		                    " on '%s' does not decode",
		                    a->n->cl, seq, a->n->subj);
	}
	if (a->first && a->pending != 0 ? seq != a->pending
	                                : r->prev != a->last) {
		if (a->first) {
			*broken = true;
			err = mesh_err_set(MESH_ENOTFOUND,
			                   "changelog %s: the records after "
			                   "%" PRIu64 " on '%s' are gone (the "
			                   "first there is %" PRIu64
			                   ", after %" PRIu64 ")",
			                   a->n->cl, a->last, a->n->subj, seq,
			                   r->prev);
		} else {
			err = mesh_err_set(MESH_EPARSE,
			                   "changelog %s: record %" PRIu64
			                   " follows %" PRIu64 ", not %" PRIu64
			                   " (a broken chain)",
			                   a->n->cl, seq, r->prev, a->last);
		}
		goto out;
	}
	if (r->partition != (uint32_t)a->n->k) {
		err = mesh_err_set(MESH_EPARSE,
		                   "changelog %s: record %" PRIu64
		                   " on '%s' is of partition %" PRIu32,
		                   a->n->cl, seq, a->n->subj, r->partition);
		goto out;
	}
	if (a->first && a->pending != 0 && r->part != 0) {
		err = mesh_err_set(MESH_EPARSE,
		                   "changelog %s: record %" PRIu64
		                   " is not a record's first part",
		                   a->n->cl, seq);
		goto out;
	}
	a->first = false;
	a->last = seq;
	a->st->messages++;
	if (a->txn == NULL &&
	    (rc = mdb_txn_begin(a->env, NULL, 0, &a->txn)) != 0) {
		err = mesh_err_mdb(rc, "restoring service '%s' partition %d",
		                   a->n->service, a->n->k);
		goto out;
	}
	if (r->marker || (r->part == 0 && !r->more && r->fragment.len == 0)) {
		/* A marker or a whole record ends any record being gathered:
		 * its writer was fenced before it was whole. */
		a->pending = 0;
		a->frag_len = 0;
		if (!r->marker) {
			err = apply_writes(a, r, seq);
		}
	} else if (r->part == 0 ||
	           (a->pending != 0 && r->part == a->next_part)) {
		if (r->part == 0) {
			a->pending = seq;
			a->frag_len = 0;
		}
		if (grow(&a->frag, &a->frag_cap,
		         a->frag_len + r->fragment.len) != 0) {
			err = mesh_err_set(MESH_ENOMEM,
			                   "changelog record of %zu bytes",
			                   a->frag_len + r->fragment.len);
			goto out;
		}
		memcpy(a->frag + a->frag_len, r->fragment.data,
		       r->fragment.len);
		a->frag_len += r->fragment.len;
		a->next_part = r->part + 1;
		if (!r->more) {
			Record *whole =
			        evmesh__changelog__changelog_record__unpack(
			                NULL, a->frag_len, a->frag);
			if (whole == NULL) {
				err = mesh_err_set(
				        MESH_EPARSE,
				        "changelog %s: the record in parts "
				        "%" PRIu64 "-%" PRIu64
				        " does not decode",
				        a->n->cl, a->pending, seq);
				goto out;
			}
			err = apply_writes(a, whole, seq);
			evmesh__changelog__changelog_record__free_unpacked(
			        whole, NULL);
			a->pending = 0;
			a->frag_len = 0;
		}
	} /* else: a part of a record whose start is not here: dropped */
	if (err == MESH_OK &&
	    ((rc = meta_set(a->txn, a->dbi[META], KEY_SEQ, seq)) != 0 ||
	     (rc = meta_set(a->txn, a->dbi[META], KEY_PENDING, a->pending)) !=
	             0)) {
		err = mesh_err_mdb(rc, "restoring service '%s' partition %d",
		                   a->n->service, a->n->k);
	}
	a->bytes_in_txn += len;
	if (err == MESH_OK && (++a->in_txn >= APPLY_PER_TXN ||
	                       a->bytes_in_txn >= APPLY_BYTES_TXN)) {
		err = apply_commit(a);
	}
out:
	evmesh__changelog__changelog_record__free_unpacked(r, NULL);
	return err;
}

/* A reader of subject of stream from sequence `from` (0: all), in order:
 * an ephemeral pull consumer taken in batches. (Not an ordered push
 * consumer: cnats 3.4 resets those on missed heartbeats from a timer,
 * and a reset racing the subscription's destruction crashed instances
 * under load.) */
struct reader {
	natsSubscription *sub;
	natsMsgList list;
	int next;
	const char *stream, *subject;
};

#define READ_BATCH 256

static mesh_err
reader_open(struct mesh_conn *c, const struct names *n, const char *stream,
            const char *subject, uint64_t from, struct reader *r)
{
	jsSubOptions so;
	jsErrCode jerr = 0;
	natsStatus s;

	memset(r, 0, sizeof(*r));
	r->stream = stream;
	r->subject = subject;
	jsSubOptions_Init(&so);
	so.Stream = stream;
	so.Config.AckPolicy = js_AckAll;
	so.Config.MaxAckPending = READ_BATCH * 4;
	so.Config.InactiveThreshold = (int64_t)60 * 1000 * 1000 * 1000;
	if (from > 0) {
		so.Config.DeliverPolicy = js_DeliverByStartSequence;
		so.Config.OptStartSeq = from;
	}
	s = js_PullSubscribe(&r->sub, mesh_conn_js(c), subject, NULL, NULL,
	                     &so, &jerr);
	if (s == NATS_OK) {
		return MESH_OK;
	}
	r->sub = NULL;
	if (jerr == JSStreamNotFoundErr) {
		return stream_gone(n, stream, subject);
	}
	return mesh_err_nats(s, jerr, "stream %s: reading '%s'", stream,
	                     subject);
}

/* The next message (the caller destroys it) and its stream sequence. */
static mesh_err
next_msg(struct reader *r, natsMsg **m, uint64_t *seq)
{
	jsMsgMetaData *md = NULL;
	natsStatus s = NATS_OK;

	*m = NULL;
	if (r->next == r->list.Count) {
		natsMsgList_Destroy(&r->list);
		r->next = 0;
		s = natsSubscription_Fetch(&r->list, r->sub, READ_BATCH, 10000,
		                           NULL);
	}
	if (s == NATS_OK && r->next < r->list.Count) {
		*m = r->list.Msgs[r->next];
		r->list.Msgs[r->next++] = NULL;
		if (r->next == r->list.Count) {
			/* The batch is read: acknowledge it (AckAll: its
			 * last one), so that the next comes. */
			natsMsg_Ack(*m, NULL);
		}
		if ((s = natsMsg_GetMetaData(&md, *m)) == NATS_OK) {
			*seq = md->Sequence.Stream;
			jsMsgMetaData_Destroy(md);
			return MESH_OK;
		}
	}
	natsMsg_Destroy(*m);
	*m = NULL;
	return mesh_err_nats(s == NATS_OK ? NATS_TIMEOUT : s, 0,
	                     "stream %s: reading '%s'", r->stream, r->subject);
}

static void
reader_close(struct reader *r)
{
	natsMsgList_Destroy(&r->list);
	if (r->sub != NULL) {
		/* Unsubscribing deletes the ephemeral consumer. */
		natsSubscription_Unsubscribe(r->sub);
		natsSubscription_Destroy(r->sub);
		r->sub = NULL;
	}
}

/* Apply the partition's messages from `from` to tail over env, whose
 * position is base (pending: the first part of a record it was
 * gathering, read again from there). */
static mesh_err
apply_tail(struct mesh_conn *c, struct applier *a, uint64_t base,
           uint64_t pending, uint64_t tail, bool *broken)
{
	struct reader rd = {0};
	mesh_err err;

	*broken = false;
	a->last = pending ? pending - 1 : base;
	a->first = true;
	a->pending = pending;
	if (tail < base) {
		*broken = true;
		return mesh_err_set(MESH_ENOTFOUND,
		                    "changelog %s: the copy is at %" PRIu64
		                    ", past the last record on '%s' (%" PRIu64
		                    ")",
		                    a->n->cl, base, a->n->subj, tail);
	}
	if (tail == base) {
		return MESH_OK;
	}
	err = reader_open(c, a->n, a->n->cl, a->n->subj,
	                  pending ? pending : base + 1, &rd);
	while (err == MESH_OK && a->last < tail) {
		natsMsg *m = NULL;
		uint64_t seq = 0;
		if ((err = next_msg(&rd, &m, &seq)) != MESH_OK) {
			break;
		}
		if (seq > a->last) {
			err = apply_msg(
			        a, seq, (const uint8_t *)natsMsg_GetData(m),
			        (size_t)natsMsg_GetDataLength(m), broken);
		}
		natsMsg_Destroy(m);
	}
	reader_close(&rd);
	if (err == MESH_OK) {
		err = apply_commit(a);
	}
	if (a->txn != NULL) {
		mdb_txn_abort(a->txn);
		a->txn = NULL;
	}
	return err;
}

static mesh_err
env_open(const char *dir, int n_dbs, size_t map_size, MDB_env **out)
{
	MDB_env *env = NULL;
	int rc;

	if ((rc = mdb_env_create(&env)) != 0 ||
	    (rc = mdb_env_set_maxdbs(env, (MDB_dbi)n_dbs + 2)) != 0 ||
	    (rc = mdb_env_set_mapsize(env, map_size)) != 0 ||
	    (rc = mdb_env_open(env, dir, MDB_NOTLS | MDB_NOSYNC, 0644)) != 0) {
		mdb_env_close(env);
		return mesh_err_mdb(rc, "environment '%s'", dir);
	}
	*out = env;
	return MESH_OK;
}

/* Fetch the snapshot of mf into dir/data.mdb (its environment closed). */
static mesh_err
snapshot_fetch(struct mesh_conn *c, const struct names *n, const Manifest *mf,
               const char *dir, uint64_t *bytes)
{
	char tmp[4096], path[4200], dst[4200], subject[160];
	crypto_generichash_state h;
	struct reader rd = {0};
	uint8_t hash[32];
	uint64_t size = 0;
	mesh_err err = MESH_OK;
	int fd = -1;

	snprintf(tmp, sizeof(tmp), "%s.snap-XXXXXX", dir);
	if (mkdtemp(tmp) == NULL) {
		return mesh_err_errno(errno, "restore: a folder beside '%s'",
		                      dir);
	}
	snprintf(path, sizeof(path), "%s/data.mdb", tmp);
	snprintf(dst, sizeof(dst), "%s/data.mdb", dir);
	snprintf(subject, sizeof(subject), "%s%s", n->chunk_of, mf->id);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644)) < 0) {
		err = mesh_err_errno(errno, "restore: '%s'", path);
		goto out;
	}
	crypto_generichash_init(&h, NULL, 0, 32);
	if (mf->chunks > 0 &&
	    (err = reader_open(c, n, n->snap, subject, 0, &rd)) != MESH_OK) {
		goto out;
	}
	for (uint32_t i = 0; i < mf->chunks; i++) {
		natsMsg *m = NULL;
		uint64_t seq;
		const char *idx = NULL;
		const char *d;
		size_t len;

		if ((err = next_msg(&rd, &m, &seq)) != MESH_OK) {
			goto out;
		}
		d = natsMsg_GetData(m);
		len = (size_t)natsMsg_GetDataLength(m);
		if (natsMsgHeader_Get(m, HDR_CHUNK, &idx) != NATS_OK ||
		    idx == NULL || strtoul(idx, NULL, 10) != i ||
		    size + len > mf->size) {
			natsMsg_Destroy(m);
			err = mesh_err_set(MESH_EPARSE,
			                   "snapshot %s of service '%s' "
			                   "partition %d: chunk %" PRIu32
			                   " is missing or out of place: "
			                   "refused",
			                   mf->id, n->service, n->k, i);
			goto out;
		}
		crypto_generichash_update(&h, (const uint8_t *)d, len);
		if (write(fd, d, len) != (ssize_t)len) {
			natsMsg_Destroy(m);
			err = mesh_err_errno(errno ? errno : EIO,
			                     "restore: writing '%s'", path);
			goto out;
		}
		size += len;
		natsMsg_Destroy(m);
	}
	crypto_generichash_final(&h, hash, sizeof(hash));
	if (size != mf->size || mf->blake2b.len != sizeof(hash) ||
	    sodium_memcmp(hash, mf->blake2b.data, sizeof(hash)) != 0) {
		err = mesh_err_set(MESH_EPARSE,
		                   "snapshot %s of service '%s' partition %d: "
		                   "%" PRIu64 " bytes whose BLAKE2b hash is "
		                   "not the manifest's (%" PRIu64
		                   " bytes): refused",
		                   mf->id, n->service, n->k, size, mf->size);
		goto out;
	}
	if (fsync(fd) != 0 || rename(path, dst) != 0) {
		err = mesh_err_errno(errno, "restore: '%s' to '%s'", path,
		                     dst);
		goto out;
	}
	*bytes = size;
out:
	reader_close(&rd);
	if (fd >= 0) {
		close(fd);
	}
	unlink(path);
	rmdir(tmp);
	return err;
}

/* dir's environment made empty (its files removed). */
static mesh_err
local_drop(const char *dir)
{
	char p[4200];

	snprintf(p, sizeof(p), "%s/data.mdb", dir);
	if (unlink(p) != 0 && errno != ENOENT) {
		return mesh_err_errno(errno, "restore: removing '%s'", p);
	}
	snprintf(p, sizeof(p), "%s/lock.mdb", dir);
	unlink(p);
	return MESH_OK;
}

/* The base of a restore without a usable local copy: the latest snapshot,
 * or nothing. env is closed and opened again here. */
static mesh_err
restore_base(struct mesh_conn *c, const struct names *n, const char *dir,
             int n_dbs, size_t map_size, int64_t created, MDB_env **env,
             uint64_t *base, struct mesh__clog_restore_stats *st)
{
	Manifest *mf = NULL;
	mesh_err err = MESH_OK, ferr = MESH_OK;
	char prev[17] = "";

	mdb_env_close(*env);
	*env = NULL;
	if ((err = local_drop(dir)) != MESH_OK) {
		return err;
	}
	*base = 0;
	for (int i = 0; i < FETCH_TRIES; i++) {
		if ((err = manifest_get(c, n, &mf)) != MESH_OK) {
			break;
		}
		/* None (or the same again after a failed fetch). */
		if (mf == NULL || strcmp(prev, mf->id) == 0) {
			err = ferr;
			break;
		}
		if (mf->stream_created != created) {
			err = mesh_err_set(
			        MESH_EEXIST,
			        "service '%s' partition %d: the "
			        "snapshot %s follows changelog stream "
			        "%s created at %" PRId64
			        " ns, the stream now was created at "
			        "%" PRId64 " ns: restore refused (no "
			        "silent reset)",
			        n->service, n->k, mf->id, n->cl,
			        mf->stream_created, created);
			break;
		}
		/* A snapshot replaced while it was read loses its chunks:
		 * then the newer one is read. */
		snprintf(prev, sizeof(prev), "%s", mf->id);
		ferr = snapshot_fetch(c, n, mf, dir, &st->snapshot_bytes);
		if ((err = ferr) == MESH_OK) {
			*base = mf->seq;
			st->snapshot_seq = mf->seq;
			break;
		}
		evmesh__changelog__snapshot_manifest__free_unpacked(mf, NULL);
		mf = NULL;
	}
	evmesh__changelog__snapshot_manifest__free_unpacked(mf, NULL);
	if (err != MESH_OK) {
		return err;
	}
	return env_open(dir, n_dbs, map_size, env);
}

/* The position and origin of dir's copy, as base + pending, forced to
 * (base, 0, created) when `set`. */
static mesh_err
position_rw(MDB_env *env, MDB_dbi meta, bool set, uint64_t *base,
            uint64_t *pending, int64_t *created)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(env, NULL, set ? 0 : MDB_RDONLY, &txn);

	if (rc == 0 && !set) {
		*base = meta_u64(txn, meta, KEY_SEQ);
		*pending = meta_u64(txn, meta, KEY_PENDING);
		*created = (int64_t)meta_u64(txn, meta, KEY_CREATED);
		mdb_txn_abort(txn);
		return MESH_OK;
	}
	if (rc == 0 && (rc = meta_set(txn, meta, KEY_SEQ, *base)) == 0 &&
	    (rc = meta_set(txn, meta, KEY_PENDING, 0)) == 0 &&
	    (rc = meta_set(txn, meta, KEY_CREATED, (uint64_t)*created)) == 0) {
		rc = mdb_txn_commit(txn);
	} else if (rc == 0) {
		mdb_txn_abort(txn);
	}
	return rc ? mesh_err_mdb(rc, "restore: the position") : MESH_OK;
}

mesh_err
mesh__clog_restore(struct mesh_conn *c, const char *service, int k,
                   const char *dir, const char *const *dbs, int n_dbs,
                   size_t map_size, struct mesh__clog_restore_stats *st)
{
	struct mesh__clog_restore_stats dummy;
	struct names n;
	struct applier a = {.n = &n, .n_dbs = n_dbs};
	MDB_dbi dbi[MESH__CLOG_DBS_MAX + 1];
	MDB_env *env = NULL;
	natsMsg *last = NULL;
	int64_t t0 = mesh_mono_ms(), created = 0, local_created = 0;
	uint64_t tail = 0, base = 0, pending = 0;
	bool broken = false;
	mesh_err err;

	st = st ? st : &dummy;
	memset(st, 0, sizeof(*st));
	if ((err = names_of(service, k, &n)) != MESH_OK ||
	    (err = dbs_check(dbs, n_dbs)) != MESH_OK ||
	    (err = stream_created(c, &n, &created)) != MESH_OK ||
	    (err = last_msg(c, &n, n.cl, n.subj, &last)) != MESH_OK) {
		return err;
	}
	tail = last ? natsMsg_GetSequence(last) : 0;
	natsMsg_Destroy(last);
	if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
		return mesh_err_errno(errno, "restore: folder '%s'", dir);
	}
	if ((err = env_open(dir, n_dbs, map_size, &env)) != MESH_OK ||
	    (err = dbis_open(env, dbs, n_dbs, dbi)) != MESH_OK ||
	    (err = position_rw(env, dbi[META], false, &base, &pending,
	                       &local_created)) != MESH_OK) {
		goto out;
	}
	a.dbi = dbi;
	a.st = st;
	if (local_created != 0 && local_created != created) {
		err = mesh_err_set(
		        MESH_EEXIST,
		        "service '%s' partition %d: changelog stream "
		        "%s was created at %" PRId64
		        " ns, the copy in '%s' follows the one "
		        "created at %" PRId64
		        " ns: restore refused (no silent reset)",
		        service, k, n.cl, created, dir, local_created);
		goto out;
	}
	if (local_created != 0) {
		a.env = env;
		err = apply_tail(c, &a, base, pending, tail, &broken);
		if (err == MESH_OK) {
			st->reused_local = true;
			goto done;
		}
		if (!broken) {
			goto out;
		}
		mesh_err_clear();
	}
	if ((err = restore_base(c, &n, dir, n_dbs, map_size, created, &env,
	                        &base, st)) != MESH_OK ||
	    (err = dbis_open(env, dbs, n_dbs, dbi)) != MESH_OK ||
	    (err = position_rw(env, dbi[META], true, &base, &pending,
	                       &created)) != MESH_OK) {
		goto out;
	}
	a.env = env;
	if ((err = apply_tail(c, &a, base, 0, tail, &broken)) != MESH_OK) {
		goto out;
	}
done:
	st->tail_seq = a.last > tail ? a.last : tail;
	mdb_env_sync(env, 1);
out:
	free(a.frag);
	mdb_env_close(env);
	st->ms = mesh_mono_ms() - t0;
	return err;
}

/* ---- info
 * ------------------------------------------------------------------- */

mesh_err
mesh__clog_info(struct mesh_conn *c, const char *service, int k,
                struct mesh__clog_info *out)
{
	struct names n;
	Manifest *mf = NULL;
	natsMsg *last = NULL;
	mesh_err err;

	memset(out, 0, sizeof(*out));
	if ((err = names_of(service, k, &n)) != MESH_OK ||
	    (err = manifest_get(c, &n, &mf)) != MESH_OK ||
	    (err = last_msg(c, &n, n.cl, n.subj, &last)) != MESH_OK) {
		evmesh__changelog__snapshot_manifest__free_unpacked(mf, NULL);
		return err;
	}
	if (mf != NULL) {
		out->has_snapshot = true;
		snprintf(out->snap_id, sizeof(out->snap_id), "%s", mf->id);
		out->snap_seq = mf->seq;
		out->snap_size = mf->size;
		out->snap_time_ms = mf->time_ms;
		evmesh__changelog__snapshot_manifest__free_unpacked(mf, NULL);
	}
	if (last != NULL) {
		Record *r = evmesh__changelog__changelog_record__unpack(
		        NULL, (size_t)natsMsg_GetDataLength(last),
		        (const uint8_t *)natsMsg_GetData(last));
		out->last_seq = natsMsg_GetSequence(last);
		natsMsg_Destroy(last);
		if (r == NULL) {
			return mesh_err_set(MESH_EPARSE,
			                    "changelog %s: record %" PRIu64
			                    " does not decode",
			                    n.cl, out->last_seq);
		}
		out->last_epoch = r->epoch;
		snprintf(out->last_writer, sizeof(out->last_writer), "%s",
		         r->writer);
		if (out->last_seq > out->snap_seq) {
			out->records_since = r->records_since_snapshot;
			out->bytes_since = r->bytes_since_snapshot;
		}
		evmesh__changelog__changelog_record__free_unpacked(r, NULL);
	}
	return MESH_OK;
}
