/* runtime.c: the service runtime (see mesh/service.h): sources, batches,
 * the processing contract, the outbox, retries and dead letters. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <lmdb.h>
#include <sodium.h>

#include "internal.h"
#include "mesh/service.h"
#include "mesh/source.h"
#include "stats.h"

#define MAX_SOURCES     32
#define MAX_HANDLERS    64
#define MAX_INFLIGHT    64
#define KEY_MAX         511
#define FETCH_WAIT_MS   1000
#define PRUNE_PER_BATCH 256
#define FLUSH_EVERY_MS  1000

/* ---- declarations ------------------------------------------------------- */

enum source_kind { SRC_TOPIC, SRC_QUEUE };

struct source {
	enum source_kind kind;
	char name[256];
	char label[264]; /* "topic:orders" */
	char *filter_policy;
	mesh_filter_scope scope;
	int64_t replay_from_ms;
	bool fifo;
	bool has_dlq; /* queue sources: the queue's own redrive policy */
	char spec[MESH_SUBSCRIPTION_ID_MAX + 16]; /* for mesh_source_open */
};

struct handler {
	char *type; /* NULL: the fallback */
	const ProtobufCMessageDescriptor *desc;
	mesh_handler_fn fn;
	void *arg;
};

struct worker {
	struct mesh_service *s;
	struct source *src;
	pthread_t thread;
};

struct mesh_service {
	char name[MESH_SERVICE_NAME_MAX + 1];
	struct mesh_service_opts o;
	char state_buf[512];
	char dlq_buf[MESH_QUEUE_NAME_MAX + 1];
	struct source src[MAX_SOURCES];
	size_t n_src;
	struct handler h[MAX_HANDLERS];
	size_t n_h;
	void (*on_start)(struct mesh_service *, void *);
	void *on_start_arg;

	/* Running. */
	struct mesh_conn *c;
	volatile sig_atomic_t *stop;
	char instance[24];
	MDB_env *env;
	MDB_dbi db_state, db_processed, db_processed_at, db_outbox, db_meta;
	struct mesh__stats stats;
	natsSubscription *stats_sub[2];
	/* Outbox keys published but not yet deleted: the next batch's
	 * transaction deletes them (a crash before then re-publishes them,
	 * which JetStream drops as duplicates). */
	pthread_mutex_t done_mu;
	uint64_t *done;
	size_t n_done, cap_done;
	pthread_mutex_t flush_mu; /* one outbox flush at a time; and: */
	struct target {           /* the targets it publishes to, kept open */
		char name[300];
		struct mesh_topic *t;
		struct mesh_queue *q;
	} targets[32];
	size_t n_targets;
	pthread_mutex_t log_mu;
	/* Types no handler takes, each logged at most once a minute. */
	pthread_mutex_t unhandled_mu;
	struct unhandled {
		char type[128];
		int64_t logged_ms;
		uint64_t since; /* taken since that line */
	} unhandled[32];
};

/* One event of a batch. */
struct item {
	struct mesh_event *ev;
	int attempt;
	const char *group; /* FIFO sources */
	struct mesh_source_msg *m; /* as the source handed it out */
	enum {
		OUT_ACK,    /* done (processed, duplicate or ignored) */
		OUT_RETRY,  /* again after delay_ms */
		OUT_RETURN, /* FIFO: after a failure in its group, unprocessed
		             */
		OUT_DLQ,    /* dead-letter with reason */
	} out;
	int64_t delay_ms;
	char reason[256];
	/* How an acknowledged item was done, counted once its batch commits.
	 */
	enum { DONE_PROCESSED, DONE_DUPLICATE, DONE_IGNORED } done;
	bool fixed;     /* its outcome was settled by a storage failure */
	bool malformed; /* dead-lettered because it could not be parsed */
};

/* What a handler changed, to put back when it fails (see undo_note()),
 * newest last. Handlers
 * write straight into the batch's transaction; undoing their writes costs
 * far less than a nested LMDB transaction per event (which copies every
 * page it touches and merges them back). */
struct undo {
	uint8_t *buf;
	size_t len, cap;
};

struct mesh_ctx {
	struct mesh_service *s;
	const struct source *src;
	struct item *it;
	MDB_txn *txn;
	struct undo *undo;
	int broken; /* an LMDB error that spoils the whole transaction */
	mesh_handler_result decided;
	int64_t delay_ms;
	char reason[256];
	char trace_id[33]; /* "" until asked for */
	char parent_span[17];
};

/* ---- small helpers ------------------------------------------------------ */

/* Wall clock in ns: event times are wall-clock times. */
static int64_t
wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t
wall_ms(void)
{
	return now_ms();
}

static int64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void
log_json(struct mesh_service *s, const char *level, const char *event_id,
         const char *trace_id, const char *fmt, va_list ap)
{
	char msg[1024], when[40];
	struct timespec ts;
	struct tm tm;
	json_t *j;
	char *line;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	/* JSON takes only UTF-8: a foreign id, or a character cut at the
	 * buffer's end, must not cost the line. */
	mesh_text_clean(msg);
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, 24, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(when + strlen(when), sizeof(when) - strlen(when), ".%03ldZ",
	         ts.tv_nsec / 1000000);
	j = json_pack("{s:s, s:s, s:s, s:s, s:s}", "time", when, "level",
	              level, "service", s->name, "instance", s->instance,
	              "msg", msg);
	if (j != NULL && event_id != NULL) {
		json_object_set_new(j, "event_id", json_string(event_id));
	}
	if (j != NULL && trace_id != NULL && trace_id[0] != '\0') {
		json_object_set_new(j, "trace_id", json_string(trace_id));
	}
	line = j ? json_dumps(j, JSON_COMPACT) : NULL;
	if (line != NULL) {
		pthread_mutex_lock(&s->log_mu);
		fprintf(stderr, "%s\n", line);
		pthread_mutex_unlock(&s->log_mu);
	}
	free(line);
	json_decref(j);
}

static void slog(struct mesh_service *s, const char *level, const char *fmt,
                 ...) MESH__PRINTF(3, 4);

static void
slog(struct mesh_service *s, const char *level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_json(s, level, NULL, NULL, fmt, ap);
	va_end(ap);
}

/* W3C traceparent "00-<trace>-<span>-01": the consumed event's trace,
 * or a new one. */
static void
trace_of(const struct mesh_event *ev, char trace[33], char span[17])
{
	struct mesh_ext_value v;
	uint8_t r[16];

	if (mesh_event_ext_get(ev, "traceparent", &v) == MESH_OK &&
	    v.type == MESH_EXT_STRING && v.len == 55 &&
	    strncmp(v.string, "00-", 3) == 0) {
		snprintf(trace, 33, "%.32s", v.string + 3);
		snprintf(span, 17, "%.16s", v.string + 36);
		return;
	}
	randombytes_buf(r, sizeof(r));
	sodium_bin2hex(trace, 33, r, 16);
	span[0] = '\0';
}

/* The trace of the event a handler runs for, worked out when first
 * asked. */
static const char *
ctx_trace(struct mesh_ctx *c)
{
	if (c->trace_id[0] == '\0') {
		trace_of(c->it->ev, c->trace_id, c->parent_span);
	}
	return c->trace_id;
}

void
mesh_log(struct mesh_ctx *c, const char *level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_json(c->s, level, mesh_event_id(c->it->ev), ctx_trace(c), fmt, ap);
	va_end(ap);
}

/* Back-off for the n-th attempt: base * 2^(n-1), capped, times a jitter
 * of 0.5-1.5. */
static int64_t
backoff_ms(const struct mesh_service_opts *o, int attempt)
{
	int64_t d = o->retry_base_ms;

	for (int i = 1; i < attempt && d < o->retry_max_ms; i++) {
		d *= 2;
	}
	if (d > o->retry_max_ms) {
		d = o->retry_max_ms;
	}
	return d / 2 + (int64_t)randombytes_uniform((uint32_t)(d + 1));
}

/* ---- declaring ---------------------------------------------------------- */

mesh_err
mesh_service_new(const char *name, struct mesh_service **out)
{
	struct mesh_service *s;
	mesh_err err;

	if ((err = mesh__name_check("service", name, MESH_SERVICE_NAME_MAX,
	                            NULL)) != MESH_OK) {
		return err;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		return mesh__seterr(MESH_ENOMEM, "service '%s'", name);
	}
	snprintf(s->name, sizeof(s->name), "%s", name);
	snprintf(s->state_buf, sizeof(s->state_buf), "var/services/%s", name);
	snprintf(s->dlq_buf, sizeof(s->dlq_buf), "%.75s-dlq", name);
	s->o.state_dir = s->state_buf;
	s->o.dlq = s->dlq_buf;
	s->o.batch_size = 10;
	s->o.batch_window_ms = 0;
	s->o.max_inflight = 2;
	s->o.max_receive = 5;
	s->o.retry_base_ms = 1000;
	s->o.retry_max_ms = 60000;
	s->o.horizon_s = 7 * 86400;
	s->o.map_size = (size_t)1 << 30;
	s->o.shutdown_ms = 10000;
	pthread_mutex_init(&s->done_mu, NULL);
	pthread_mutex_init(&s->flush_mu, NULL);
	pthread_mutex_init(&s->log_mu, NULL);
	pthread_mutex_init(&s->unhandled_mu, NULL);
	mesh__stats_init(&s->stats);
	*out = s;
	return MESH_OK;
}

void
mesh_service_free(struct mesh_service *s)
{
	if (s == NULL) {
		return;
	}
	for (size_t i = 0; i < s->n_src; i++) {
		free(s->src[i].filter_policy);
	}
	for (size_t i = 0; i < s->n_h; i++) {
		free(s->h[i].type);
	}
	free(s->done);
	pthread_mutex_destroy(&s->done_mu);
	pthread_mutex_destroy(&s->flush_mu);
	pthread_mutex_destroy(&s->log_mu);
	pthread_mutex_destroy(&s->unhandled_mu);
	free(s);
}

const char *
mesh_service_name(const struct mesh_service *s)
{
	return s->name;
}

struct mesh_service_opts *
mesh_service_opts(struct mesh_service *s)
{
	return &s->o;
}

static mesh_err
add_source(struct mesh_service *s, enum source_kind kind, const char *name,
           struct source **out)
{
	struct source *src;
	mesh_err err = kind == SRC_TOPIC ? mesh_topic_name_check(name, NULL)
	                                 : mesh_queue_name_check(name, NULL);

	if (err != MESH_OK) {
		return err;
	}
	if (s->n_src == MAX_SOURCES) {
		return mesh__seterr(MESH_EINVAL,
		                    "service '%s': more than %d sources",
		                    s->name, MAX_SOURCES);
	}
	src = &s->src[s->n_src++];
	memset(src, 0, sizeof(*src));
	src->kind = kind;
	snprintf(src->name, sizeof(src->name), "%s", name);
	snprintf(src->label, sizeof(src->label), "%s:%s",
	         kind == SRC_TOPIC ? "topic" : "queue", name);
	*out = src;
	return MESH_OK;
}

mesh_err
mesh_service_subscribe(struct mesh_service *s, const char *topic,
                       const char *filter_policy, mesh_filter_scope scope,
                       int64_t replay_from_ms)
{
	struct mesh_filter *f = NULL;
	struct source *src;
	mesh_err err;

	if (filter_policy != NULL &&
	    (err = mesh_filter_compile(filter_policy, strlen(filter_policy),
	                               scope, &f)) != MESH_OK) {
		return err;
	}
	mesh_filter_free(f);
	if ((err = add_source(s, SRC_TOPIC, topic, &src)) != MESH_OK) {
		return err;
	}
	if (filter_policy != NULL &&
	    (src->filter_policy = strdup(filter_policy)) == NULL) {
		s->n_src--;
		return mesh__seterr(MESH_ENOMEM, "service '%s'", s->name);
	}
	src->scope = scope;
	src->replay_from_ms = replay_from_ms;
	return MESH_OK;
}

mesh_err
mesh_service_consume(struct mesh_service *s, const char *queue)
{
	struct source *src;

	return add_source(s, SRC_QUEUE, queue, &src);
}

mesh_err
mesh_service_on(struct mesh_service *s, const char *type,
                const ProtobufCMessageDescriptor *desc, mesh_handler_fn fn,
                void *arg)
{
	struct handler *h;

	if (fn == NULL || s->n_h == MAX_HANDLERS) {
		return mesh__seterr(MESH_EINVAL,
		                    "service '%s': a handler needs a function "
		                    "(at most %d handlers)",
		                    s->name, MAX_HANDLERS);
	}
	h = &s->h[s->n_h];
	memset(h, 0, sizeof(*h));
	if (type != NULL && (h->type = strdup(type)) == NULL) {
		return mesh__seterr(MESH_ENOMEM, "service '%s'", s->name);
	}
	h->desc = desc;
	h->fn = fn;
	h->arg = arg;
	s->n_h++;
	return MESH_OK;
}

void
mesh_service_on_start(struct mesh_service *s,
                      void (*fn)(struct mesh_service *s, void *arg), void *arg)
{
	s->on_start = fn;
	s->on_start_arg = arg;
}

static const struct handler *
handler_of(const struct mesh_service *s, const char *type)
{
	const struct handler *fallback = NULL;

	for (size_t i = 0; i < s->n_h; i++) {
		if (s->h[i].type == NULL) {
			fallback = &s->h[i];
		} else if (strcmp(s->h[i].type, type) == 0) {
			return &s->h[i];
		}
	}
	return fallback;
}

/* ---- the environment ---------------------------------------------------- */

static mesh_err
mkdirs(const char *dir)
{
	char path[512];

	snprintf(path, sizeof(path), "%s", dir);
	for (char *p = path + 1; *p; p++) {
		if (*p == '/') {
			*p = '\0';
			if (mkdir(path, 0755) != 0 && errno != EEXIST) {
				return mesh__err_errno(errno, "state '%s'",
				                       path);
			}
			*p = '/';
		}
	}
	if (mkdir(path, 0755) != 0 && errno != EEXIST) {
		return mesh__err_errno(errno, "state '%s'", path);
	}
	return MESH_OK;
}

static mesh_err
env_open(struct mesh_service *s)
{
	MDB_txn *txn = NULL;
	int rc;
	mesh_err err;

	if ((err = mkdirs(s->o.state_dir)) != MESH_OK) {
		return err;
	}
	if ((rc = mdb_env_create(&s->env)) != 0 ||
	    (rc = mdb_env_set_maxdbs(s->env, 8)) != 0 ||
	    (rc = mdb_env_set_mapsize(s->env, s->o.map_size)) != 0 ||
	    (rc = mdb_env_set_maxreaders(s->env, 256)) != 0 ||
	    (rc = mdb_env_open(s->env, s->o.state_dir, MDB_NOTLS, 0644)) !=
	            0 ||
	    (rc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0 ||
	    (rc = mdb_dbi_open(txn, MESH_SERVICE_DB_STATE, MDB_CREATE,
	                       &s->db_state)) != 0 ||
	    (rc = mdb_dbi_open(txn, "processed", MDB_CREATE,
	                       &s->db_processed)) != 0 ||
	    (rc = mdb_dbi_open(txn, "processed_at", MDB_CREATE,
	                       &s->db_processed_at)) != 0 ||
	    (rc = mdb_dbi_open(txn, "outbox", MDB_CREATE, &s->db_outbox)) !=
	            0 ||
	    (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->db_meta)) != 0 ||
	    (rc = mdb_txn_commit(txn)) != 0) {
		if (txn != NULL && rc != 0) {
			mdb_txn_abort(txn);
		}
		err = mesh__err_mdb(rc, "service '%s': state '%s'", s->name,
		                    s->o.state_dir);
		mdb_env_close(s->env);
		s->env = NULL;
		return err;
	}
	return MESH_OK;
}

/* ---- the outbox --------------------------------------------------------- */

static void
be64(uint8_t out[8], uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		out[i] = (uint8_t)v;
		v >>= 8;
	}
}

static uint64_t
from_be64(const uint8_t in[8])
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++) {
		v = v << 8 | in[i];
	}
	return v;
}

static void
be32(uint8_t out[4], uint32_t v)
{
	out[0] = (uint8_t)(v >> 24);
	out[1] = (uint8_t)(v >> 16);
	out[2] = (uint8_t)(v >> 8);
	out[3] = (uint8_t)v;
}

static uint32_t
from_be32(const uint8_t in[4])
{
	return (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 |
	       (uint32_t)in[2] << 8 | in[3];
}

/* ---- a handler's writes, and undoing them ------------------------------- */

/* Errors after which LMDB refuses the rest of the transaction. */
static bool
mdb_fatal(int rc)
{
	return rc != 0 && rc != MDB_NOTFOUND && rc != MDB_KEYEXIST;
}

/* Note k's value in dbi (or its absence) in the undo log, before a write.
 * A record: [dbi 4][had 1][klen 2][vlen 4][key][old value][its size 4],
 * its size last so that the log is read back from its end. */
static int
undo_note(struct mesh_ctx *c, MDB_dbi dbi, const MDB_val *k)
{
	struct undo *u = c->undo;
	MDB_val old = {0, NULL};
	int rc = mdb_get(c->txn, dbi, (MDB_val *)k, &old);
	size_t need = 15 + k->mv_size + (rc == 0 ? old.mv_size : 0);
	uint8_t *p;

	if (mdb_fatal(rc)) {
		return rc;
	}
	if (u->len + need > u->cap) {
		size_t cap = u->cap ? u->cap : 4096;
		while (cap < u->len + need) {
			cap *= 2;
		}
		if ((p = realloc(u->buf, cap)) == NULL) {
			return ENOMEM;
		}
		u->buf = p;
		u->cap = cap;
	}
	p = u->buf + u->len;
	memcpy(p, &dbi, 4);
	p[4] = rc == 0;
	p[5] = (uint8_t)(k->mv_size >> 8);
	p[6] = (uint8_t)k->mv_size;
	be32(p + 7, rc == 0 ? (uint32_t)old.mv_size : 0);
	memcpy(p + 11, k->mv_data, k->mv_size);
	if (rc == 0) {
		memcpy(p + 11 + k->mv_size, old.mv_data, old.mv_size);
	}
	be32(p + need - 4, (uint32_t)need);
	u->len += need;
	return 0;
}

/* Put back what the undo log noted, newest first; then it is empty. */
static int
undo_apply(MDB_txn *txn, struct undo *u)
{
	int rc = 0;

	while (u->len > 0 && rc == 0) {
		const uint8_t *p =
		        u->buf + u->len - from_be32(u->buf + u->len - 4);
		MDB_dbi dbi;
		MDB_val k = {(size_t)p[5] << 8 | p[6], (void *)(p + 11)};
		MDB_val v = {from_be32(p + 7), (void *)(p + 11 + k.mv_size)};
		memcpy(&dbi, p, 4);
		rc = p[4] ? mdb_put(txn, dbi, &k, &v, 0)
		          : mdb_del(txn, dbi, &k, NULL);
		rc = rc == MDB_NOTFOUND ? 0 : rc;
		u->len = (size_t)(p - u->buf);
	}
	u->len = 0;
	return rc;
}

/* A write by the handler: noted for undo, then made. */
static int
ctx_put(struct mesh_ctx *c, MDB_dbi dbi, MDB_val *k, MDB_val *v)
{
	int rc = undo_note(c, dbi, k);

	if (rc == 0) {
		rc = mdb_put(c->txn, dbi, k, v, 0);
	}
	if (mdb_fatal(rc)) {
		c->broken = rc;
	}
	return rc;
}

static int
ctx_del(struct mesh_ctx *c, MDB_dbi dbi, MDB_val *k)
{
	int rc = undo_note(c, dbi, k);

	if (rc == 0) {
		rc = mdb_del(c->txn, dbi, k, NULL);
	}
	if (mdb_fatal(rc)) {
		c->broken = rc;
	}
	return rc;
}

/* The next outbox sequence, in the batch's transaction (writers take
 * turns, so it is unique). */
static int
outbox_seq(struct mesh_ctx *c, uint64_t *seq)
{
	MDB_val k = {6, "outbox"}, v;
	uint8_t buf[8];
	int rc = mdb_get(c->txn, c->s->db_meta, &k, &v);

	*seq = rc == 0 && v.mv_size == 8 ? from_be64(v.mv_data) + 1 : 1;
	if (mdb_fatal(rc)) {
		c->broken = rc;
		return rc;
	}
	be64(buf, *seq);
	v.mv_size = 8;
	v.mv_data = buf;
	return ctx_put(c, c->s->db_meta, &k, &v);
}

/* A record: target NUL group NUL packed event. */
static int
outbox_put(struct mesh_ctx *c, const char *target, const char *group,
           const uint8_t *ev, size_t len)
{
	size_t tl = strlen(target) + 1, gl = group ? strlen(group) + 1 : 1;
	uint8_t key[8], *rec = malloc(tl + gl + len);
	MDB_val k = {8, key}, v;
	uint64_t seq;
	int rc;

	if (rec == NULL) {
		return ENOMEM;
	}
	memcpy(rec, target, tl);
	memcpy(rec + tl, group ? group : "", gl);
	memcpy(rec + tl + gl, ev, len);
	if ((rc = outbox_seq(c, &seq)) == 0) {
		be64(key, seq);
		v.mv_size = tl + gl + len;
		v.mv_data = rec;
		rc = ctx_put(c, c->s->db_outbox, &k, &v);
	}
	free(rec);
	return rc;
}

struct pending {
	uint64_t seq;
	char target[300];
	char group[MESH_QUEUE_ID_MAX + 1];
	struct mesh_event *ev;
};

/* Note an outbox record as published (done_mu held); false when out of
 * memory (it is then published again later: a duplicate JetStream
 * drops). */
static bool
done_add(struct mesh_service *s, uint64_t seq)
{
	if (s->n_done == s->cap_done) {
		size_t cap = s->cap_done ? s->cap_done * 2 : 256;
		uint64_t *d = realloc(s->done, cap * sizeof(*d));
		if (d == NULL) {
			return false;
		}
		s->done = d;
		s->cap_done = cap;
	}
	s->done[s->n_done++] = seq;
	return true;
}

/* The open handle of a target (under flush_mu); NULL after logging why. */
static struct target *
target_of(struct mesh_service *s, const char *name)
{
	struct target *t;
	mesh_err err;

	for (size_t i = 0; i < s->n_targets; i++) {
		if (strcmp(s->targets[i].name, name) == 0) {
			return &s->targets[i];
		}
	}
	if (s->n_targets == sizeof(s->targets) / sizeof(*s->targets)) {
		/* Many targets: let the oldest go. */
		mesh_topic_close(s->targets[0].t);
		mesh_queue_close(s->targets[0].q);
		memmove(s->targets, s->targets + 1,
		        (s->n_targets - 1) * sizeof(*s->targets));
		s->n_targets--;
	}
	t = &s->targets[s->n_targets];
	memset(t, 0, sizeof(*t));
	snprintf(t->name, sizeof(t->name), "%s", name);
	err = strncmp(name, "topic:", 6) == 0
	              ? mesh_topic_open(s->c, name + 6, &t->t)
	              : mesh_queue_open(s->c, name + 6, &t->q);
	if (err != MESH_OK) {
		slog(s, "error", "outbox: %s: %s (kept, tried again)", name,
		     mesh_errdetail());
		return NULL;
	}
	s->n_targets++;
	return t;
}

/* Forget a target's handle (it failed; it is opened again next time). */
static void
target_drop(struct mesh_service *s, struct target *t)
{
	size_t i = (size_t)(t - s->targets);

	mesh_topic_close(t->t);
	mesh_queue_close(t->q);
	memmove(t, t + 1, (s->n_targets - i - 1) * sizeof(*t));
	s->n_targets--;
}

static void
targets_close(struct mesh_service *s)
{
	while (s->n_targets > 0) {
		target_drop(s, &s->targets[0]);
	}
}

/* Publish up to 10 outbox records for one target; marks each published one
 * done. */
static void
publish_chunk(struct mesh_service *s, struct pending *p, size_t n)
{
	struct target *tg = target_of(s, p[0].target);
	char ids[MESH_QUEUE_BATCH_MAX][24];
	mesh_err err = MESH_OK;
	bool ok[MESH_QUEUE_BATCH_MAX] = {0};

	if (tg == NULL) {
		return;
	}
	for (size_t i = 0; i < n; i++) {
		snprintf(ids[i], sizeof(ids[i]), "o%zu", i);
	}
	if (tg->t != NULL) {
		struct mesh_topic_entry e[MESH_TOPIC_BATCH_MAX];
		struct mesh_topic_published r[MESH_TOPIC_BATCH_MAX];
		bool fifo = mesh_topic_attrs(tg->t)->fifo;
		for (size_t i = 0; i < n; i++) {
			e[i] = (struct mesh_topic_entry){.id = ids[i],
			                                 .event = p[i].ev};
			if (fifo) {
				e[i].group_id = p[i].group;
				e[i].dedup_id = mesh_event_id(p[i].ev);
			}
		}
		err = mesh_topic_publish_batch(tg->t, e, n, r);
		for (size_t i = 0; err == MESH_OK && i < n; i++) {
			if (!(ok[i] = r[i].err == MESH_OK)) {
				slog(s, "error", "outbox: %s: %s", p[i].target,
				     r[i].error);
			}
		}
	} else {
		struct mesh_queue_entry e[MESH_QUEUE_BATCH_MAX];
		struct mesh_queue_sent r[MESH_QUEUE_BATCH_MAX];
		bool fifo = mesh_queue_attrs(tg->q)->fifo;
		for (size_t i = 0; i < n; i++) {
			e[i] = (struct mesh_queue_entry){
			        .id = ids[i], .event = p[i].ev, .delay_s = -1};
			if (fifo) {
				e[i].group_id = p[i].group;
				e[i].dedup_id = mesh_event_id(p[i].ev);
			}
		}
		err = mesh_queue_send_batch(tg->q, e, n, r);
		for (size_t i = 0; err == MESH_OK && i < n; i++) {
			if (!(ok[i] = r[i].err == MESH_OK)) {
				slog(s, "error", "outbox: %s: %s", p[i].target,
				     r[i].error);
			}
		}
	}
	if (err != MESH_OK) {
		slog(s, "error", "outbox: %s: %s (kept, tried again)",
		     p[0].target, mesh_errdetail());
	}
	/* A target that failed may be gone or changed: open it again. */
	for (size_t i = 0; i < n; i++) {
		if (!ok[i]) {
			target_drop(s, tg);
			break;
		}
	}
	pthread_mutex_lock(&s->done_mu);
	for (size_t i = 0; i < n; i++) {
		if (ok[i] && !done_add(s, p[i].seq)) {
			break;
		}
	}
	pthread_mutex_unlock(&s->done_mu);
}

static bool
is_done(struct mesh_service *s, uint64_t seq)
{
	bool found = false;

	pthread_mutex_lock(&s->done_mu);
	for (size_t i = 0; i < s->n_done && !found; i++) {
		found = s->done[i] == seq;
	}
	pthread_mutex_unlock(&s->done_mu);
	return found;
}

/* Publish the outbox records from seq `from` on (0: all) that are not yet
 * done, target by target in chunks of 10. Returns how many are left. */
static size_t
outbox_flush(struct mesh_service *s, uint64_t from)
{
	struct pending p[MESH_QUEUE_BATCH_MAX];
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	uint8_t start[8];
	size_t n = 0, left = 0;
	int op;

	pthread_mutex_lock(&s->flush_mu);
	if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0 ||
	    mdb_cursor_open(txn, s->db_outbox, &cur) != 0) {
		if (txn != NULL) {
			mdb_txn_abort(txn);
		}
		pthread_mutex_unlock(&s->flush_mu);
		return 1;
	}
	be64(start, from);
	k.mv_size = 8;
	k.mv_data = start;
	op = from > 0 ? MDB_SET_RANGE : MDB_FIRST;
	while (mdb_cursor_get(cur, &k, &v, op) == 0) {
		const char *rec = v.mv_data;
		size_t tl = strnlen(rec, v.mv_size), gl;
		uint64_t seq = from_be64(k.mv_data);
		op = MDB_NEXT;
		if (k.mv_size != 8 || tl >= v.mv_size || is_done(s, seq)) {
			continue;
		}
		gl = strnlen(rec + tl + 1, v.mv_size - tl - 1);
		left++;
		/* A chunk holds one target. */
		if (n > 0 && (n == MESH_QUEUE_BATCH_MAX ||
		              strcmp(p[0].target, rec) != 0)) {
			publish_chunk(s, p, n);
			for (size_t i = 0; i < n; i++) {
				mesh_event_free(p[i].ev);
			}
			n = 0;
		}
		p[n].seq = seq;
		snprintf(p[n].target, sizeof(p[n].target), "%s", rec);
		snprintf(p[n].group, sizeof(p[n].group), "%.*s", (int)gl,
		         rec + tl + 1);
		if (mesh_event_parse(rec + tl + 1 + gl + 1,
		                     v.mv_size - tl - gl - 2, 0,
		                     &p[n].ev) != MESH_OK) {
			slog(s, "error",
			     "outbox record %" PRIu64 " unreadable: "
			     "%s",
			     seq, mesh_errdetail());
			continue;
		}
		n++;
	}
	if (n > 0) {
		publish_chunk(s, p, n);
		for (size_t i = 0; i < n; i++) {
			mesh_event_free(p[i].ev);
		}
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	pthread_mutex_unlock(&s->flush_mu);
	return left;
}

/* Delete, in txn, the outbox records published so far. */
static int
outbox_forget(struct mesh_service *s, MDB_txn *txn)
{
	uint64_t *done;
	size_t n;
	int rc = 0;

	pthread_mutex_lock(&s->done_mu);
	done = s->done;
	n = s->n_done;
	s->done = NULL;
	s->n_done = s->cap_done = 0;
	pthread_mutex_unlock(&s->done_mu);
	for (size_t i = 0; i < n && (rc == 0 || rc == MDB_NOTFOUND); i++) {
		uint8_t key[8];
		MDB_val k = {8, key};
		be64(key, done[i]);
		rc = mdb_del(txn, s->db_outbox, &k, NULL);
	}
	if (rc != 0 && rc != MDB_NOTFOUND) {
		/* Keep them for the next transaction. */
		pthread_mutex_lock(&s->done_mu);
		for (size_t i = 0; i < n && done_add(s, done[i]); i++) {
		}
		pthread_mutex_unlock(&s->done_mu);
	}
	free(done);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Events in the outbox not yet published (those published and not yet
 * deleted, which the next transaction deletes, do not count). */
static size_t
outbox_count(struct mesh_service *s)
{
	MDB_txn *txn = NULL;
	MDB_stat st;
	size_t n = 0, done;

	if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) == 0) {
		if (mdb_stat(txn, s->db_outbox, &st) == 0) {
			n = st.ms_entries;
		}
		mdb_txn_abort(txn);
	}
	pthread_mutex_lock(&s->done_mu);
	done = s->n_done;
	pthread_mutex_unlock(&s->done_mu);
	return n > done ? n - done : 0;
}

/* ---- inside a handler --------------------------------------------------- */

static mesh_err
state_key(struct mesh_ctx *c, const void *key, size_t klen, MDB_val *k)
{
	if (key == NULL || klen == 0 || klen > KEY_MAX) {
		return mesh__seterr(MESH_EINVAL,
		                    "service '%s': state keys are 1-%d bytes, "
		                    "not %zu",
		                    c->s->name, KEY_MAX, klen);
	}
	k->mv_size = klen;
	k->mv_data = (void *)key;
	return MESH_OK;
}

static mesh_err
state_err(struct mesh_ctx *c, int rc, const char *what)
{
	return mesh__err_mdb(rc, "service '%s': state %s", c->s->name, what);
}

mesh_err
mesh_state_get(struct mesh_ctx *c, const void *key, size_t klen,
               const void **val, size_t *vlen)
{
	MDB_val k, v;
	mesh_err err;
	int rc;

	if ((err = state_key(c, key, klen, &k)) != MESH_OK) {
		return err;
	}
	rc = mdb_get(c->txn, c->s->db_state, &k, &v);
	if (rc == MDB_NOTFOUND) {
		return mesh__seterr(MESH_ENOTFOUND,
		                    "service '%s': no such key", c->s->name);
	}
	if (rc != 0) {
		return state_err(c, rc, "get");
	}
	*val = v.mv_data;
	*vlen = v.mv_size;
	return MESH_OK;
}

mesh_err
mesh_state_put(struct mesh_ctx *c, const void *key, size_t klen,
               const void *val, size_t vlen)
{
	MDB_val k, v = {vlen, (void *)val};
	mesh_err err;
	int rc;

	if ((err = state_key(c, key, klen, &k)) != MESH_OK) {
		return err;
	}
	if ((rc = ctx_put(c, c->s->db_state, &k, &v)) != 0) {
		return state_err(c, rc, "put");
	}
	return MESH_OK;
}

mesh_err
mesh_state_del(struct mesh_ctx *c, const void *key, size_t klen)
{
	MDB_val k;
	mesh_err err;
	int rc;

	if ((err = state_key(c, key, klen, &k)) != MESH_OK) {
		return err;
	}
	rc = ctx_del(c, c->s->db_state, &k);
	if (rc == MDB_NOTFOUND) {
		return mesh__seterr(MESH_ENOTFOUND,
		                    "service '%s': no such key", c->s->name);
	}
	return rc == 0 ? MESH_OK : state_err(c, rc, "delete");
}

mesh_err
mesh_state_scan(struct mesh_ctx *c, const void *prefix, size_t plen,
                mesh_state_scan_fn fn, void *arg)
{
	MDB_cursor *cur = NULL;
	MDB_val k = {plen, (void *)prefix}, v;
	int rc, op = plen > 0 ? MDB_SET_RANGE : MDB_FIRST;

	if ((rc = mdb_cursor_open(c->txn, c->s->db_state, &cur)) != 0) {
		return state_err(c, rc, "scan");
	}
	while ((rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
		op = MDB_NEXT;
		if (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0) {
			break;
		}
		if (fn(k.mv_data, k.mv_size, v.mv_data, v.mv_size, arg) != 0) {
			break;
		}
	}
	mdb_cursor_close(cur);
	return rc == 0 || rc == MDB_NOTFOUND ? MESH_OK
	                                     : state_err(c, rc, "scan");
}

mesh_err
mesh_emit(struct mesh_ctx *c, const char *target, const struct mesh_event *ev,
          const char *group_id)
{
	struct mesh_event *copy = NULL;
	struct mesh_ext_value tp = {.type = MESH_EXT_STRING};
	char traceparent[64], span[17];
	uint8_t r[8], *buf = NULL;
	size_t len = 0;
	mesh_err err;
	int rc;

	if (target == NULL ||
	    !((strncmp(target, "topic:", 6) == 0 &&
	       mesh_topic_name_check(target + 6, NULL) == MESH_OK) ||
	      (strncmp(target, "queue:", 6) == 0 &&
	       mesh_queue_name_check(target + 6, NULL) == MESH_OK))) {
		return mesh__seterr(MESH_EINVAL,
		                    "service '%s': emit target '%s': want "
		                    "topic:NAME or queue:NAME",
		                    c->s->name, target ? target : "");
	}
	if ((err = mesh_event_dup(ev, &copy)) != MESH_OK) {
		return err;
	}
	if (strcmp(mesh_event_source(copy), "evmesh") == 0 ||
	    mesh_event_source(copy)[0] == '\0') {
		mesh_event_set_source(copy, c->s->name);
	}
	randombytes_buf(r, sizeof(r));
	sodium_bin2hex(span, sizeof(span), r, sizeof(r));
	snprintf(traceparent, sizeof(traceparent), "00-%s-%s-01", ctx_trace(c),
	         span);
	tp.string = traceparent;
	tp.len = strlen(traceparent);
	if ((err = mesh_event_ext_set(copy, "traceparent", &tp)) != MESH_OK ||
	    (err = mesh_event_pack(copy, &buf, &len)) != MESH_OK) {
		mesh_event_free(copy);
		return err;
	}
	mesh_event_free(copy);
	if (len > MESH_TOPIC_MAX_MESSAGE + 65536) {
		free(buf);
		return mesh__seterr(MESH_ETOOBIG,
		                    "service '%s': emitted event of %zu bytes",
		                    c->s->name, len);
	}
	rc = outbox_put(c, target, group_id, buf, len);
	free(buf);
	if (rc != 0) {
		return state_err(c, rc, "outbox");
	}
	return MESH_OK;
}

mesh_err
mesh_emit_message(struct mesh_ctx *c, const char *target,
                  const ProtobufCMessage *msg, const char *group_id)
{
	struct mesh_event *ev = NULL;
	mesh_err err;

	if ((err = mesh_event_new(msg->descriptor->name, c->s->name, &ev)) ==
	            MESH_OK &&
	    (err = mesh_event_set_message(ev, msg)) == MESH_OK) {
		err = mesh_emit(c, target, ev, group_id);
	}
	mesh_event_free(ev);
	return err;
}

mesh_handler_result
mesh_retry(struct mesh_ctx *c, int64_t delay_ms)
{
	c->delay_ms = delay_ms;
	c->decided = MESH_HANDLER_RETRY;
	return MESH_HANDLER_RETRY;
}

mesh_handler_result
mesh_reject(struct mesh_ctx *c, const char *reason)
{
	snprintf(c->reason, sizeof(c->reason), "%s",
	         reason ? reason : "rejected");
	c->decided = MESH_HANDLER_REJECT;
	return MESH_HANDLER_REJECT;
}

const char *
mesh_ctx_service(const struct mesh_ctx *c)
{
	return c->s->name;
}

const char *
mesh_ctx_source(const struct mesh_ctx *c)
{
	return c->src->label;
}

int
mesh_ctx_attempt(const struct mesh_ctx *c)
{
	return c->it->attempt;
}

const char *
mesh_ctx_trace_id(const struct mesh_ctx *c)
{
	return ctx_trace((struct mesh_ctx *)c);
}

/* ---- processing a batch ------------------------------------------------- */

static bool
group_failed(const char *const *failed, size_t n, const char *group)
{
	for (size_t i = 0; group != NULL && i < n; i++) {
		if (strcmp(failed[i], group) == 0) {
			return true;
		}
	}
	return false;
}

/* A failed item: again after delay_ms, or to the dead-letter queue once
 * it has had its max-receive attempts (unless its queue redrives it
 * itself). why, when not the handler's failing, goes into the reason. */
static void
give_back(struct mesh_service *s, const struct source *src, struct item *it,
          int64_t delay_ms, const char *why)
{
	it->out = OUT_RETRY;
	it->delay_ms = delay_ms;
	if (it->attempt >= s->o.max_receive &&
	    !src->has_dlq) {
		it->out = OUT_DLQ;
		snprintf(it->reason, sizeof(it->reason),
		         "%s%sfailed %d times (max-receive %d)",
		         why ? why : "", why ? ": " : "", it->attempt,
		         s->o.max_receive);
	}
}

/* An event no handler takes is acknowledged and counted; its type is
 * logged at most once a minute, with how many came since, so that a
 * producer sending what nobody here handles is seen, not flooded. */
static void
unhandled_note(struct mesh_service *s, const char *type)
{
	struct unhandled *u = NULL, *oldest = &s->unhandled[0];
	int64_t now = mono_ms();
	uint64_t since = 0;
	bool log = false;

	pthread_mutex_lock(&s->unhandled_mu);
	for (size_t i = 0; i < sizeof(s->unhandled) / sizeof(*u); i++) {
		struct unhandled *e = &s->unhandled[i];
		if (strncmp(e->type, type, sizeof(e->type) - 1) == 0 &&
		    e->type[0] != '\0') {
			u = e;
			break;
		}
		if (e->logged_ms < oldest->logged_ms) {
			oldest = e;
		}
	}
	if (u == NULL) {
		u = oldest;
		snprintf(u->type, sizeof(u->type), "%s", type);
		u->logged_ms = 0;
		u->since = 0;
	}
	u->since++;
	if (u->logged_ms == 0 || now - u->logged_ms >= 60000) {
		log = true;
		since = u->since;
		u->since = 0;
		u->logged_ms = now;
	}
	pthread_mutex_unlock(&s->unhandled_mu);
	if (log) {
		slog(s, "warn",
		     "no handler takes events of type '%s': acknowledged and "
		     "ignored (%" PRIu64 " since the last such line; at most "
		     "one a minute per type)",
		     type, since);
	}
}

/* Run one event in the batch's transaction txn; its writes are undone
 * unless its handler succeeds. Returns 0, or the LMDB error that spoilt
 * txn (the batch then runs again without this event). */
static int
run_one(struct mesh_service *s, const struct source *src, MDB_txn *txn,
        struct undo *undo, struct mesh__arena *arena, struct item *it)
{
	const char *id = mesh_event_id(it->ev);
	MDB_val k = {strlen(id), (void *)id}, v;
	const struct handler *h = handler_of(s, mesh_event_type(it->ev));
	struct mesh_ctx ctx = {
	        .s = s, .src = src, .it = it, .txn = txn, .undo = undo};
	ProtobufCMessage *msg = NULL;
	mesh_handler_result r;
	int64_t t0, now;
	uint8_t at[8 + 128];
	int rc;

	it->out = OUT_ACK;
	if (it->m->parse_error[0] != '\0') {
		/* Retrying cannot fix bytes: to the dead-letter queue now. */
		it->out = OUT_DLQ;
		it->malformed = true;
		snprintf(it->reason, sizeof(it->reason),
		         "not a readable CloudEvent: %s", it->m->parse_error);
		return 0;
	}
	if ((rc = mdb_get(txn, s->db_processed, &k, &v)) == 0) {
		it->done = DONE_DUPLICATE;
		return 0;
	}
	if (mdb_fatal(rc)) {
		return rc;
	}
	if (h == NULL) {
		it->done = DONE_IGNORED;
		unhandled_note(s, mesh_event_type(it->ev));
		return 0;
	}
	if (h->desc != NULL &&
	    mesh_event_unpack_message(it->ev, h->desc, &arena->pb, &msg) !=
	            MESH_OK) {
		mesh__arena_reset(arena);
		it->out = OUT_DLQ;
		snprintf(it->reason, sizeof(it->reason),
		         "payload is not a valid %s: %s", h->desc->name,
		         mesh_errdetail());
		return 0;
	}
	undo->len = 0;
	t0 = mono_ns();
	r = h->fn(&ctx, it->ev, msg, h->arg);
	mesh__stats_record(&s->stats.handler, mono_ns() - t0);
	protobuf_c_message_free_unpacked(msg, &arena->pb);
	mesh__arena_reset(arena);
	if (ctx.broken) {
		return ctx.broken;
	}
	if (r == MESH_HANDLER_OK) {
		now = wall_ms();
		be64(at, (uint64_t)now);
		memcpy(at + 8, id, k.mv_size < 128 ? k.mv_size : 128);
		v.mv_size = 8;
		v.mv_data = at;
		MDB_val ak = {8 + (k.mv_size < 128 ? k.mv_size : 128), at};
		MDB_val empty = {0, ""};
		if ((rc = mdb_put(txn, s->db_processed, &k, &v, 0)) != 0 ||
		    (rc = mdb_put(txn, s->db_processed_at, &ak, &empty, 0)) !=
		            0) {
			return rc; /* LMDB fails the transaction */
		}
		it->done = DONE_PROCESSED;
		return 0;
	}
	if ((rc = undo_apply(txn, undo)) != 0) {
		return rc;
	}
	if (r == MESH_HANDLER_REJECT) {
		it->out = OUT_DLQ;
		snprintf(it->reason, sizeof(it->reason), "%s",
		         ctx.decided == MESH_HANDLER_REJECT ? ctx.reason
		                                            : "rejected");
		return 0;
	}
	give_back(s, src, it,
	          ctx.decided == MESH_HANDLER_RETRY && ctx.delay_ms > 0
	                  ? ctx.delay_ms
	                  : backoff_ms(&s->o, it->attempt),
	          NULL);
	return 0;
}

/* Forget processed ids older than the horizon, a few per batch. */
static int
prune(struct mesh_service *s, MDB_txn *txn)
{
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	int64_t before = wall_ms() - s->o.horizon_s * 1000;
	int rc, n = 0;

	if ((rc = mdb_cursor_open(txn, s->db_processed_at, &cur)) != 0) {
		return rc;
	}
	while (n < PRUNE_PER_BATCH &&
	       (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST)) == 0 &&
	       k.mv_size > 8 && (int64_t)from_be64(k.mv_data) < before) {
		MDB_val id = {k.mv_size - 8, (uint8_t *)k.mv_data + 8};
		rc = mdb_del(txn, s->db_processed, &id, NULL);
		if (rc != 0 && rc != MDB_NOTFOUND) {
			break;
		}
		if ((rc = mdb_cursor_del(cur, 0)) != 0) {
			break;
		}
		n++;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND || rc == 0 ? 0 : rc;
}

struct batch {
	struct undo undo;
	struct mesh__arena arena; /* for decoding payloads */
	struct item it[MESH_SOURCE_BATCH_MAX];
	struct mesh_source_msg m[MESH_SOURCE_BATCH_MAX];
	size_t n;
};

static void log_ev(struct mesh_service *s, const struct item *it,
                   const char *fmt, ...) MESH__PRINTF(3, 4);

static void
log_ev(struct mesh_service *s, const struct item *it, const char *fmt, ...)
{
	char trace[33], span[17];
	va_list ap;

	trace_of(it->ev, trace, span);
	va_start(ap, fmt);
	log_json(s, "warn", mesh_event_id(it->ev), trace, fmt, ap);
	va_end(ap);
}

/* Settle each item with its source: acknowledge, retry later, or
 * dead-letter. Acknowledgements go in bulk, without waiting: one lost is a
 * redelivery, which the processed-id table absorbs. */
static void
settle(struct mesh_service *s, struct mesh_source *src, struct batch *b)
{
	struct mesh_source_msg *acks[MESH_SOURCE_BATCH_MAX];
	size_t k = 0;

	for (size_t i = 0; i < b->n; i++) {
		struct item *it = &b->it[i];
		if (it->out == OUT_DLQ) {
			if (mesh_source_dead_letter(src, it->m, it->reason) ==
			    MESH_OK) {
				atomic_fetch_add(&s->stats.dead_lettered, 1);
				if (it->malformed) {
					atomic_fetch_add(&s->stats.malformed,
					                 1);
				}
				log_ev(s, it, "dead-lettered: %s", it->reason);
				continue; /* taken off its source */
			}
			slog(s, "error",
			     "event %s: dead-lettering failed (%s); it comes "
			     "again",
			     mesh_event_id(it->ev), mesh_errdetail());
			it->out = OUT_RETRY;
			it->delay_ms = backoff_ms(&s->o, it->attempt);
		}
		if (it->out == OUT_ACK) {
			acks[k++] = it->m;
			continue;
		}
		if (it->out == OUT_RETRY) {
			atomic_fetch_add(&s->stats.retried, 1);
		}
		if (mesh_source_retry(src, it->m,
		                      it->out == OUT_RETRY ? it->delay_ms
		                                           : 0) != MESH_OK) {
			slog(s, "warn",
			     "event %s: %s; it comes again after its "
			     "visibility timeout",
			     mesh_event_id(it->ev), mesh_errdetail());
		}
	}
	mesh_source_ack(src, acks, k);
}

/* The current outbox sequence (0 when none yet). */
static uint64_t
outbox_last(struct mesh_service *s, MDB_txn *txn)
{
	MDB_val k = {6, "outbox"}, v;

	return mdb_get(txn, s->db_meta, &k, &v) == 0 && v.mv_size == 8
	               ? from_be64(v.mv_data)
	               : 0;
}

/* The contract: one transaction for the batch, a nested one per event,
 * one durable commit, then the outbox is published. */
static void
process(struct mesh_service *s, const struct source *src, struct batch *b)
{
	const char *failed[256];
	size_t nf = 0;
	MDB_txn *txn = NULL;
	uint64_t from;
	int64_t now;
	int rc;

	atomic_fetch_add(&s->stats.received, b->n);
again:
	nf = 0;
	if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0) {
		slog(s, "error", "state: %s; the batch comes again",
		     mdb_strerror(rc));
		for (size_t i = 0; i < b->n; i++) {
			b->it[i].out = OUT_RETRY;
			b->it[i].delay_ms =
			        backoff_ms(&s->o, b->it[i].attempt);
		}
		return;
	}
	from = outbox_last(s, txn) + 1;
	for (size_t i = 0; i < b->n; i++) {
		struct item *it = &b->it[i];
		/* FIFO: after a failure, the group's later events go back
		 * unprocessed, so that the group keeps its order. */
		if (src->fifo && group_failed(failed, nf, it->group)) {
			it->out = OUT_RETURN;
			continue;
		}
		if (!it->fixed && (rc = run_one(s, src, txn, &b->undo,
		                                &b->arena, it)) != 0) {
			/* This event's writes spoilt the transaction (the map
			 * is full, say): it fails alone, and the batch runs
			 * again without it. */
			char why[128];
			mdb_txn_abort(txn);
			snprintf(why, sizeof(why), "state: %s",
			         mdb_strerror(rc));
			log_ev(s, it, "%s; the batch runs again without it",
			       why);
			give_back(s, src, it, backoff_ms(&s->o, it->attempt),
			          why);
			it->fixed = true;
			goto again;
		}
		if (src->fifo && it->out != OUT_ACK && it->group != NULL) {
			failed[nf++] = it->group;
		}
	}
	if (rc == 0 && (rc = prune(s, txn)) == 0) {
		rc = outbox_forget(s, txn);
	}
	if (rc == 0) {
		rc = mdb_txn_commit(txn);
	} else {
		mdb_txn_abort(txn);
	}
	if (rc != 0) {
		slog(s, "error",
		     "state: commit failed (%s); the batch comes "
		     "again",
		     mdb_strerror(rc));
		for (size_t i = 0; i < b->n; i++) {
			if (b->it[i].out == OUT_ACK) {
				b->it[i].out = OUT_RETRY;
				b->it[i].delay_ms =
				        backoff_ms(&s->o, b->it[i].attempt);
			}
		}
		return;
	}
	now = wall_ns();
	for (size_t i = 0; i < b->n; i++) {
		int64_t sec;
		int32_t nsec;
		if (b->it[i].out != OUT_ACK) {
			continue;
		}
		atomic_fetch_add(b->it[i].done == DONE_PROCESSED
		                         ? &s->stats.processed
		                 : b->it[i].done == DONE_DUPLICATE
		                         ? &s->stats.duplicates
		                         : &s->stats.ignored,
		                 1);
		if (mesh_event_time(b->it[i].ev, &sec, &nsec)) {
			mesh__stats_record(&s->stats.commit,
			                   now - (sec * 1000000000 + nsec));
		}
	}
	outbox_flush(s, from);
}

/* Take a batch: up to batch_size, waiting up to a second for the first
 * and up to batch_window_ms for the rest. */
static mesh_err
fetch(struct mesh_service *s, struct mesh_source *src, struct batch *b)
{
	size_t want = (size_t)s->o.batch_size, got = 0;
	int64_t deadline = mono_ms() + s->o.batch_window_ms;
	mesh_err err;

	b->n = 0;
	err = mesh_source_fetch(src, want, FETCH_WAIT_MS, b->m, &got, NULL);
	b->n = got;
	while (err == MESH_OK && got > 0 && b->n < want &&
	       mono_ms() < deadline) {
		err = mesh_source_fetch(src, want - b->n, deadline - mono_ms(),
		                        b->m + b->n, &got, NULL);
		b->n += got;
	}
	for (size_t i = 0; i < b->n; i++) {
		b->it[i] = (struct item){.ev = b->m[i].event,
		                         .attempt = (int)b->m[i].attempt,
		                         .group = b->m[i].group_id,
		                         .m = &b->m[i]};
	}
	return err;
}

static bool
stopping(const struct mesh_service *s)
{
	return *s->stop != 0;
}

static void
nap_ms(struct mesh_service *s, int64_t ms)
{
	for (int64_t until = mono_ms() + ms;
	     !stopping(s) && mono_ms() < until;) {
		struct timespec ts = {0, 50 * 1000000};
		nanosleep(&ts, NULL);
	}
}

static void *
work(void *arg)
{
	struct worker *w = arg;
	struct mesh_service *s = w->s;
	const struct source *src = w->src;
	struct mesh_source *source = NULL;
	struct mesh_source_opts so;
	struct batch *b = calloc(1, sizeof(*b));
	mesh_err err;

	mesh_source_opts_init(&so);
	so.dlq = s->o.dlq; /* unless a queue keeps its own */
	so.service = s->name;
	if (b != NULL) {
		mesh__arena_init(&b->arena);
	}
	while (b != NULL && !stopping(s)) {
		err = source != NULL
		              ? MESH_OK
		              : mesh_source_open(s->c, src->spec, &so, &source);
		if (err == MESH_OK) {
			err = fetch(s, source, b);
		}
		if (err != MESH_OK) {
			slog(s, "warn", "%s: %s; trying again", src->label,
			     mesh_errdetail());
			if (b->n == 0) {
				mesh_source_close(source);
				source = NULL;
				nap_ms(s, 1000);
				continue;
			}
		}
		if (b->n == 0) {
			continue;
		}
		atomic_fetch_add(&s->stats.in_flight, 1);
		process(s, src, b);
		settle(s, source, b);
		atomic_fetch_sub(&s->stats.in_flight, 1);
		mesh_source_release(source, b->m, b->n);
		b->n = 0;
	}
	mesh_source_close(source);
	if (b != NULL) {
		free(b->undo.buf);
		mesh__arena_fini(&b->arena);
	}
	free(b);
	return NULL;
}

/* ---- observing ---------------------------------------------------------- */

static json_t *
stats_json(struct mesh_service *s)
{
	struct mesh__stats *st = &s->stats;
	json_t *j = json_object();

	json_object_set_new(j, "service", json_string(s->name));
	json_object_set_new(j, "instance", json_string(s->instance));
#define COUNTER(name, field)                                                  \
	json_object_set_new(                                                  \
	        j, name, json_integer((json_int_t)atomic_load(&st->field)))
	COUNTER("received", received);
	COUNTER("processed", processed);
	COUNTER("retried", retried);
	COUNTER("failed", failed);
	COUNTER("dead_lettered", dead_lettered);
	COUNTER("duplicates", duplicates);
	COUNTER("ignored", ignored);
	COUNTER("malformed", malformed);
#undef COUNTER
	json_object_set_new(j, "in_flight",
	                    json_integer(atomic_load(&st->in_flight)));
	json_object_set_new(j, "outbox_pending",
	                    json_integer((json_int_t)outbox_count(s)));
	json_object_set_new(j, "handler_ms", mesh__hist_json(&st->handler));
	json_object_set_new(j, "commit_ms", mesh__hist_json(&st->commit));
	return j;
}

static void
on_stats(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
	struct mesh_service *s = arg;
	const char *reply = natsMsg_GetReply(m);
	json_t *j;
	char *text;

	(void)sub;
	if (reply != NULL && (j = stats_json(s)) != NULL) {
		if ((text = json_dumps(j, JSON_COMPACT)) != NULL) {
			natsConnection_PublishString(nc, reply, text);
			free(text);
		}
		json_decref(j);
	}
	natsMsg_Destroy(m);
}

/* ---- running ------------------------------------------------------------ */

static mesh_err
prepare_sources(struct mesh_service *s)
{
	mesh_err err;

	for (size_t i = 0; i < s->n_src; i++) {
		struct source *src = &s->src[i];
		if (src->kind == SRC_TOPIC) {
			struct mesh_sub_attrs a;
			struct mesh_subscription rec;
			struct mesh_topic_info ti;
			mesh_sub_attrs_init(&a);
			a.filter_policy = src->filter_policy;
			a.filter_scope = src->scope;
			a.replay_from_ms = src->replay_from_ms;
			if ((err = mesh_topic_info(s->c, src->name, &ti)) !=
			            MESH_OK ||
			    (err = mesh_subscription_create(
			             s->c, src->name, MESH_SUB_SERVICE,
			             s->name, &a, &rec)) != MESH_OK) {
				return err;
			}
			snprintf(src->spec, sizeof(src->spec),
			         "subscription:%s", rec.id);
			src->fifo = ti.a.fifo;
			mesh_subscription_fini(&rec);
		} else {
			struct mesh_queue *q = NULL;
			if ((err = mesh_queue_open(s->c, src->name, &q)) !=
			    MESH_OK) {
				return err;
			}
			src->fifo = mesh_queue_attrs(q)->fifo;
			src->has_dlq = mesh_queue_attrs(q)->dlq[0] != '\0';
			snprintf(src->spec, sizeof(src->spec), "queue:%s",
			         src->name);
			mesh_queue_close(q);
		}
	}
	return MESH_OK;
}

static mesh_err
ensure_dlq(struct mesh_service *s)
{
	struct mesh_queue_attrs a;
	struct mesh_queue *q = NULL;
	bool fifo;
	/* Opening asks one question; the queue's info, several. */
	mesh_err err = mesh_queue_open(s->c, s->o.dlq, &q);

	mesh_queue_close(q);
	if (err != MESH_ENOTFOUND) {
		return err;
	}
	mesh_queue_attrs_init(&a);
	if (mesh_queue_name_check(s->o.dlq, &fifo) == MESH_OK && fifo) {
		a.fifo = true;
	}
	a.retention_s = 1209600;
	return mesh_queue_create(s->c, s->o.dlq, &a);
}

static mesh_err
stats_serve(struct mesh_service *s)
{
	char subject[128];
	natsStatus st;

	snprintf(subject, sizeof(subject), MESH_SERVICE_STATS_SUBJECT,
	         s->name);
	st = natsConnection_Subscribe(&s->stats_sub[0], mesh_conn_nats(s->c),
	                              subject, on_stats, s);
	if (st == NATS_OK) {
		st = natsConnection_Subscribe(
		        &s->stats_sub[1], mesh_conn_nats(s->c),
		        MESH_SERVICES_STATS_SUBJECT, on_stats, s);
	}
	return st == NATS_OK ? MESH_OK
	                     : mesh_err_nats(st, 0, "service '%s': %s",
	                                     s->name, subject);
}

static void
stats_stop(struct mesh_service *s)
{
	for (int i = 0; i < 2; i++) {
		if (s->stats_sub[i] != NULL) {
			natsSubscription_Unsubscribe(s->stats_sub[i]);
			natsSubscription_WaitForDrainCompletion(
			        s->stats_sub[i], 0);
			natsSubscription_Destroy(s->stats_sub[i]);
			s->stats_sub[i] = NULL;
		}
	}
}

/* Delete what was published, in a transaction of its own (at stop). */
static void
forget_published(struct mesh_service *s)
{
	MDB_txn *txn = NULL;

	if (mdb_txn_begin(s->env, NULL, 0, &txn) != 0) {
		return;
	}
	if (outbox_forget(s, txn) == 0) {
		mdb_txn_commit(txn);
	} else {
		mdb_txn_abort(txn);
	}
}

static mesh_err
check_opts(const struct mesh_service *s)
{
	const struct mesh_service_opts *o = &s->o;

	if (o->batch_size < 1 || o->batch_size > MESH_SUBSCRIPTION_BATCH) {
		return mesh__seterr(MESH_EINVAL, "batch size %d: must be 1-%d",
		                    o->batch_size, MESH_SUBSCRIPTION_BATCH);
	}
	if (o->batch_window_ms < 0 || o->batch_window_ms > 10000) {
		return mesh__seterr(MESH_EINVAL,
		                    "batch window %d ms: must be 0-10000",
		                    o->batch_window_ms);
	}
	if (o->max_inflight < 1 || o->max_inflight > MAX_INFLIGHT) {
		return mesh__seterr(MESH_EINVAL, "in-flight %d: must be 1-%d",
		                    o->max_inflight, MAX_INFLIGHT);
	}
	if (o->max_receive < 1 || o->max_receive > 1000) {
		return mesh__seterr(MESH_EINVAL,
		                    "max-receive %d: must be 1-1000",
		                    o->max_receive);
	}
	if (o->horizon_s < 60 || o->horizon_s > 31536000) {
		return mesh__seterr(MESH_EINVAL,
		                    "horizon %" PRId64
		                    " s: must be 60-31536000",
		                    o->horizon_s);
	}
	if (s->n_src == 0) {
		return mesh__seterr(MESH_EINVAL,
		                    "service '%s' consumes nothing (declare a "
		                    "topic or a queue)",
		                    s->name);
	}
	return mesh_queue_name_check(o->dlq, NULL);
}

mesh_err
mesh_service_run(struct mesh_service *s, struct mesh_conn *c,
                 volatile sig_atomic_t *stop)
{
	struct worker workers[MAX_SOURCES * 4];
	size_t nw = 0;
	char host[64] = "";
	int64_t next_flush;
	mesh_err err;

	if ((err = check_opts(s)) != MESH_OK) {
		return err;
	}
	s->c = c;
	s->stop = stop;
	gethostname(host, sizeof(host) - 1);
	snprintf(s->instance, sizeof(s->instance), "%.12s-%d", host,
	         (int)getpid());
	if ((err = env_open(s)) != MESH_OK) {
		return err;
	}
	if (s->on_start != NULL) {
		s->on_start(s, s->on_start_arg);
	}
	if ((err = ensure_dlq(s)) != MESH_OK ||
	    (err = prepare_sources(s)) != MESH_OK ||
	    (err = stats_serve(s)) != MESH_OK) {
		goto out;
	}
	/* What a crash left in the outbox goes out first. */
	outbox_flush(s, 0);
	for (size_t i = 0; i < s->n_src; i++) {
		int n = s->src[i].fifo ? 1 : s->o.max_inflight;
		for (int k = 0;
		     k < n && nw < sizeof(workers) / sizeof(*workers); k++) {
			workers[nw] =
			        (struct worker){.s = s, .src = &s->src[i]};
			if (pthread_create(&workers[nw].thread, NULL, work,
			                   &workers[nw]) == 0) {
				nw++;
			}
		}
	}
	slog(s, "info", "started: %zu sources, state %s", s->n_src,
	     s->o.state_dir);
	next_flush = mono_ms() + FLUSH_EVERY_MS;
	while (!stopping(s)) {
		struct timespec ts = {0, 50 * 1000000};
		nanosleep(&ts, NULL);
		if (mono_ms() >= next_flush) {
			outbox_flush(s, 0); /* what failed to go out before */
			next_flush = mono_ms() + FLUSH_EVERY_MS;
		}
	}
	for (size_t i = 0; i < nw; i++) {
		pthread_join(workers[i].thread, NULL);
	}
	mesh__conn_bulk_flush(s->c, 2000); /* the last acknowledgements */
	outbox_flush(s, 0);
	forget_published(s);
	targets_close(s);
	slog(s, "info", "stopped: %zu events in the outbox", outbox_count(s));
out:
	stats_stop(s);
	mdb_env_close(s->env);
	s->env = NULL;
	return err;
}
