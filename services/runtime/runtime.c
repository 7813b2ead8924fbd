/* runtime.c: the service runtime (see mesh/service.h): declaring a
 * service, its environment, what handlers call, the outbox's NATS sink,
 * stats, and running (the processing contract is batch.c's). */
#include <ctype.h>
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

#include "be.h"
#include "mesh/partition.h"
#include "partitions.h"
#include "runtime.h"

/* ---- declarations ------------------------------------------------------- */

/* ---- small helpers ------------------------------------------------------ */

/* Wall clock in ns: event times are wall-clock times. */
int64_t
mesh__wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t
mesh__mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void svc_vlog_as(struct mesh_service *s, const char *level,
                        const char *id_name, const char *id,
                        const char *trace_id, const char *fmt, va_list ap)
        MESH_PRINTF(6, 0);

void
mesh__svc_vlog(struct mesh_service *s, const char *level, const char *event_id,
               const char *trace_id, const char *fmt, va_list ap)
{
	svc_vlog_as(s, level, "event_id", event_id, trace_id, fmt, ap);
}

/* A log line whose id (an event's, a request's) is named id_name. */
static void
svc_vlog_as(struct mesh_service *s, const char *level, const char *id_name,
            const char *id, const char *trace_id, const char *fmt, va_list ap)
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
	if (j != NULL && id != NULL) {
		json_object_set_new(j, id_name, json_string(id));
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

void
mesh__svc_log(struct mesh_service *s, const char *level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	mesh__svc_vlog(s, level, NULL, NULL, fmt, ap);
	va_end(ap);
}

/* W3C traceparent "00-<trace>-<span>-01": the consumed event's trace,
 * or a new one. */
void
mesh__trace_parse(const char *tp, size_t len, char trace[33], char span[17])
{
	uint8_t r[16];

	if (tp != NULL && len == 55 && strncmp(tp, "00-", 3) == 0) {
		snprintf(trace, 33, "%.32s", tp + 3);
		snprintf(span, 17, "%.16s", tp + 36);
		return;
	}
	randombytes_buf(r, sizeof(r));
	sodium_bin2hex(trace, 33, r, 16);
	span[0] = '\0';
}

void
mesh__trace_of(const struct mesh_event *ev, char trace[33], char span[17])
{
	struct mesh_ext_value v;

	if (mesh_event_ext_get(ev, "traceparent", &v) == MESH_OK &&
	    v.type == MESH_EXT_STRING) {
		mesh__trace_parse(v.string, v.len, trace, span);
	} else {
		mesh__trace_parse(NULL, 0, trace, span);
	}
}

/* The trace of the event a handler runs for, worked out when first
 * asked. */
static const char *
ctx_trace(struct mesh_ctx *c)
{
	if (c->trace_id[0] != '\0') {
		return c->trace_id;
	}
	if (c->req != NULL) {
		mesh__request_trace(c->req, c->trace_id, c->parent_span);
	} else {
		mesh__trace_of(c->it->ev, c->trace_id, c->parent_span);
	}
	return c->trace_id;
}

void
mesh_log(struct mesh_ctx *c, const char *level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (c->req != NULL) {
		svc_vlog_as(c->s, level, "request_id",
		            mesh__request_log_id(c->req), ctx_trace(c), fmt,
		            ap);
	} else {
		mesh__svc_vlog(c->s, level, mesh_event_id(c->it->ev),
		               ctx_trace(c), fmt, ap);
	}
	va_end(ap);
}

static void nats_sink(void *arg, const struct mesh__outbox_msg *p, size_t n,
                      bool *ok);
static void outbox_log(void *arg, const char *line);

/* ---- declaring ---------------------------------------------------------- */

mesh_err
mesh_service_new(const char *name, struct mesh_service **out)
{
	struct mesh_service *s;
	mesh_err err;

	if ((err = mesh_name_check("service", name, MESH_SERVICE_NAME_MAX,
	                           NULL)) != MESH_OK) {
		return err;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		return mesh_err_set(MESH_ENOMEM, "service '%s'", name);
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
	s->o.lease_ms = 3000;
	s->o.snapshot_records = 100000;
	s->o.request_threads = 4;
	mesh__store_init(s, &s->one);
	pthread_mutex_init(&s->targets_mu, NULL);
	pthread_mutex_init(&s->seal_mu, NULL);
	pthread_mutex_init(&s->log_mu, NULL);
	pthread_mutex_init(&s->backup.mu, NULL);
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
	for (size_t i = 0; i < s->n_routes; i++) {
		free(s->routes[i].key);
	}
	for (size_t i = 0; i < s->n_emits; i++) {
		free(s->emits[i]);
	}
	mesh__outbox_fini(&s->one.outbox);
	mesh__params_free(s);
	pthread_mutex_destroy(&s->targets_mu);
	pthread_mutex_destroy(&s->seal_mu);
	pthread_mutex_destroy(&s->log_mu);
	pthread_mutex_destroy(&s->backup.mu);
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
		return mesh_err_set(MESH_EINVAL,
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
		return mesh_err_set(MESH_ENOMEM, "service '%s'", s->name);
	}
	src->scope = scope;
	src->replay_from_ms = replay_from_ms;
	return MESH_OK;
}

mesh_err
mesh_service_partitions(struct mesh_service *s, int n, mesh_key_fn key_fn,
                        void *arg)
{
	if (n < 0 || n > MESH_PARTITIONS_MAX) {
		return mesh_err_set(MESH_EINVAL,
		                    "service '%s': %d partitions: want 1-%d "
		                    "(0: as --partitions says)",
		                    s->name, n, MESH_PARTITIONS_MAX);
	}
	if (n > 0 && s->n_routes > 0) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "service '%s': %d partitions: it has %zu "
		        "request routes, and a partitioned service "
		        "serves no requests",
		        s->name, n, s->n_routes);
	}
	s->o.partitions = n;
	s->key_fn = key_fn;
	s->key_arg = arg;
	return MESH_OK;
}

mesh_err
mesh_service_consume(struct mesh_service *s, const char *queue)
{
	struct source *src;

	return add_source(s, SRC_QUEUE, queue, &src);
}

/* A target as "topic:NAME" or "queue:NAME" with a valid name. */
static bool
target_valid(const char *target)
{
	return target != NULL &&
	       ((strncmp(target, "topic:", 6) == 0 &&
	         mesh_topic_name_check(target + 6, NULL) == MESH_OK) ||
	        (strncmp(target, "queue:", 6) == 0 &&
	         mesh_queue_name_check(target + 6, NULL) == MESH_OK));
}

static bool
emit_declared(const struct mesh_service *s, const char *target)
{
	for (size_t i = 0; i < s->n_emits; i++) {
		if (strcmp(s->emits[i], target) == 0) {
			return true;
		}
	}
	return false;
}

mesh_err
mesh_service_emits(struct mesh_service *s, const char *target)
{
	if (!target_valid(target)) {
		return mesh_err_set(MESH_EINVAL,
		                    "service '%s': emit target '%s': want "
		                    "topic:NAME or queue:NAME",
		                    s->name, target ? target : "");
	}
	if (emit_declared(s, target)) {
		return MESH_OK;
	}
	if (s->n_emits == MAX_EMITS) {
		return mesh_err_set(MESH_EINVAL,
		                    "service '%s': at most %d emit targets",
		                    s->name, MAX_EMITS);
	}
	if ((s->emits[s->n_emits] = strdup(target)) == NULL) {
		return mesh_err_set(MESH_ENOMEM, "service '%s'", s->name);
	}
	s->n_emits++;
	return MESH_OK;
}

mesh_err
mesh_service_on(struct mesh_service *s, const char *type,
                const ProtobufCMessageDescriptor *desc, mesh_handler_fn fn,
                void *arg)
{
	struct handler *h;

	if (fn == NULL || s->n_h == MAX_HANDLERS) {
		return mesh_err_set(MESH_EINVAL,
		                    "service '%s': a handler needs a function "
		                    "(at most %d handlers)",
		                    s->name, MAX_HANDLERS);
	}
	h = &s->h[s->n_h];
	memset(h, 0, sizeof(*h));
	if (type != NULL && (h->type = strdup(type)) == NULL) {
		return mesh_err_set(MESH_ENOMEM, "service '%s'", s->name);
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

const struct handler *
mesh__svc_handler(const struct mesh_service *s, const char *type)
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

mesh_err
mesh__mkdirs(const char *dir)
{
	char path[512];

	snprintf(path, sizeof(path), "%s", dir);
	for (char *p = path + 1; *p; p++) {
		if (*p == '/') {
			*p = '\0';
			if (mkdir(path, 0755) != 0 && errno != EEXIST) {
				return mesh_err_errno(errno, "state '%s'",
				                      path);
			}
			*p = '/';
		}
	}
	if (mkdir(path, 0755) != 0 && errno != EEXIST) {
		return mesh_err_errno(errno, "state '%s'", path);
	}
	return MESH_OK;
}

void
mesh__store_init(struct mesh_service *s, struct store *st)
{
	mesh__outbox_init(&st->outbox, nats_sink, outbox_log, s);
}

mesh_err
mesh__store_open(struct mesh_service *s, struct store *st, const char *dir)
{
	MDB_txn *txn = NULL;
	int rc;
	mesh_err err;

	snprintf(st->dir, sizeof(st->dir), "%s", dir);
	if ((err = mesh__mkdirs(dir)) != MESH_OK) {
		return err;
	}
	if ((rc = mdb_env_create(&st->env)) != 0 ||
	    (rc = mdb_env_set_maxdbs(st->env, 8)) != 0 ||
	    (rc = mdb_env_set_mapsize(st->env, s->o.map_size)) != 0 ||
	    (rc = mdb_env_set_maxreaders(st->env, 256)) != 0 ||
	    (rc = mdb_env_open(st->env, dir, MDB_NOTLS, 0644)) != 0 ||
	    (rc = mdb_txn_begin(st->env, NULL, 0, &txn)) != 0 ||
	    (rc = mdb_dbi_open(txn, MESH_SERVICE_DB_STATE, MDB_CREATE,
	                       &st->db_state)) != 0 ||
	    (rc = mdb_dbi_open(txn, "processed", MDB_CREATE,
	                       &st->db_processed)) != 0 ||
	    (rc = mdb_dbi_open(txn, "processed_at", MDB_CREATE,
	                       &st->db_processed_at)) != 0 ||
	    (rc = mdb_dbi_open(txn, "outbox", MDB_CREATE, &st->db_outbox)) !=
	            0 ||
	    (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &st->db_meta)) != 0 ||
	    (rc = mdb_dbi_open(txn, "requests", MDB_CREATE,
	                       &st->db_requests)) != 0 ||
	    (rc = mdb_dbi_open(txn, "requests_at", MDB_CREATE,
	                       &st->db_requests_at)) != 0 ||
	    (rc = mdb_txn_commit(txn)) != 0) {
		if (txn != NULL && rc != 0) {
			mdb_txn_abort(txn);
		}
		err = mesh_err_mdb(rc, "service '%s': state '%s'", s->name,
		                   dir);
		mdb_env_close(st->env);
		st->env = NULL;
		return err;
	}
	mesh__outbox_bind(&st->outbox, st->env, st->db_outbox, st->db_meta);
	return MESH_OK;
}

void
mesh__store_close(struct store *st)
{
	mdb_env_close(st->env);
	st->env = NULL;
	st->outbox.env = NULL;
}

/* A write by the handler: noted for undo, then made. */
static int
ctx_put(struct mesh_ctx *c, MDB_dbi dbi, MDB_val *k, MDB_val *v)
{
	int rc = mesh__undo_put(c->undo, c->txn, dbi, k, v);

	if (mesh__mdb_fatal(rc)) {
		c->broken = rc;
	}
	return rc;
}

static int
ctx_del(struct mesh_ctx *c, MDB_dbi dbi, MDB_val *k)
{
	int rc = mesh__undo_del(c->undo, c->txn, dbi, k);

	if (mesh__mdb_fatal(rc)) {
		c->broken = rc;
	}
	return rc;
}

/* ---- the outbox's sink: NATS ---------------------------------------------
 */

/* The open handle of a target (under the outbox's flush); NULL after
 * logging why. */
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
		mesh__svc_log(s, "error", "outbox: %s: %s (kept, tried again)",
		              name, mesh_errdetail());
		return NULL;
	}
	/* mesh_emit sealed what it emitted to an encrypted target; this
	 * seals what was emitted before the target began to encrypt. */
	if (t->t != NULL) {
		mesh_topic_set_keyring(t->t, s->keyring);
	} else {
		mesh_queue_set_keyring(t->q, s->keyring);
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

struct sink_run {
	struct mesh_service *s;
	const struct mesh__outbox_msg *p;
	bool *ok;
};

static void
on_sent(void *arg, void *tag, const struct mesh_sent *r)
{
	struct sink_run *run = arg;
	size_t i = (size_t)(uintptr_t)tag;

	run->ok[i] = r->err == MESH_OK;
	if (!run->ok[i]) {
		mesh__svc_log(run->s, "error",
		              "outbox: %s: %s (kept, tried "
		              "again)",
		              run->p[i].target, r->error);
	}
}

/* The outbox's sink: records of one target, pipelined through a sender
 * (a window of confirmations in flight, each reported in order). */
static void
nats_sink(void *arg, const struct mesh__outbox_msg *p, size_t n, bool *ok)
{
	struct mesh_service *s = arg;
	struct target *tg;
	struct sink_run run = {s, p, ok};
	struct mesh_sender *snd = NULL;
	mesh_err err;

	pthread_mutex_lock(&s->targets_mu);
	if ((tg = target_of(s, p[0].target)) == NULL) {
		pthread_mutex_unlock(&s->targets_mu);
		return;
	}
	err = tg->t != NULL ? mesh_sender_open_topic(tg->t, NULL, on_sent,
	                                             &run, &snd)
	                    : mesh_sender_open_queue(tg->q, NULL, on_sent,
	                                             &run, &snd);
	for (size_t i = 0; err == MESH_OK && i < n; i++) {
		bool fifo = tg->t ? mesh_topic_attrs(tg->t)->fifo
		                  : mesh_queue_attrs(tg->q)->fifo;
		struct mesh_send m = {.event = p[i].ev,
		                      .tag = (void *)(uintptr_t)i};
		if (fifo) {
			m.group_id = p[i].group;
			m.dedup_id = mesh_event_id(p[i].ev);
		}
		err = mesh_sender_send(snd, &m);
	}
	mesh_sender_close(snd);
	if (err != MESH_OK) {
		mesh__svc_log(s, "error", "outbox: %s: %s (kept, tried again)",
		              p[0].target, mesh_errdetail());
	}
	/* A target that failed may be gone or changed: open it again. */
	for (size_t i = 0; i < n; i++) {
		if (!ok[i]) {
			target_drop(s, tg);
			break;
		}
	}
	pthread_mutex_unlock(&s->targets_mu);
}

static void
outbox_log(void *arg, const char *line)
{
	mesh__svc_log(arg, "error", "%s", line);
}

/* ---- inside a handler --------------------------------------------------- */

static mesh_err
state_key(struct mesh_ctx *c, const void *key, size_t klen, MDB_val *k)
{
	if (key == NULL || klen == 0 || klen > KEY_MAX) {
		return mesh_err_set(MESH_EINVAL,
		                    "service '%s': state keys are 1-%d bytes, "
		                    "not %zu",
		                    c->s->name, KEY_MAX, klen);
	}
	k->mv_size = klen;
	k->mv_data = (void *)key;
	return MESH_OK;
}

/* A read request's handler writes nothing (its transaction is read-only
 * and never committed). */
static mesh_err
writable(struct mesh_ctx *c, const char *what)
{
	if (!c->read_only) {
		return MESH_OK;
	}
	return mesh_err_set(MESH_EINVAL,
	                    "service '%s': %s refused: route '%s' is a read "
	                    "(GET, HEAD); writes belong to commands",
	                    c->s->name, what, mesh_request_route(c->req));
}

static mesh_err
state_err(struct mesh_ctx *c, int rc, const char *what)
{
	return mesh_err_mdb(rc, "service '%s': state %s", c->s->name, what);
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
	rc = mdb_get(c->txn, c->st->db_state, &k, &v);
	if (rc == MDB_NOTFOUND) {
		return mesh_err_set(MESH_ENOTFOUND,
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

	if ((err = state_key(c, key, klen, &k)) != MESH_OK ||
	    (err = writable(c, "put")) != MESH_OK) {
		return err;
	}
	if ((rc = ctx_put(c, c->st->db_state, &k, &v)) != 0) {
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

	if ((err = state_key(c, key, klen, &k)) != MESH_OK ||
	    (err = writable(c, "delete")) != MESH_OK) {
		return err;
	}
	rc = ctx_del(c, c->st->db_state, &k);
	if (rc == MDB_NOTFOUND) {
		return mesh_err_set(MESH_ENOTFOUND,
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

	if ((rc = mdb_cursor_open(c->txn, c->st->db_state, &cur)) != 0) {
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

/* Whether target encrypts, as last read (at most
 * MESH_KEYRING_REFRESH_MS ago). A target that cannot be read now is taken
 * as it was (clear when never read): the outbox's sender seals too. */
static bool
target_encrypts(struct mesh_service *s, const char *target)
{
	struct seal_target *t = NULL;
	int64_t now = mesh_mono_ms();
	bool encrypt = false;

	if (s->c == NULL) {
		return false; /* no broker to ask (a batch over a source in
		                 memory, as the unit tests run one) */
	}
	pthread_mutex_lock(&s->seal_mu);
	for (size_t i = 0; i < s->n_seal_targets; i++) {
		if (strcmp(s->seal_targets[i].name, target) == 0) {
			t = &s->seal_targets[i];
		}
	}
	if (t == NULL) {
		size_t max =
		        sizeof(s->seal_targets) / sizeof(*s->seal_targets);
		if (s->n_seal_targets == max) {
			memmove(s->seal_targets, s->seal_targets + 1,
			        (max - 1) * sizeof(*s->seal_targets));
			s->n_seal_targets--;
		}
		t = &s->seal_targets[s->n_seal_targets++];
		memset(t, 0, sizeof(*t));
		snprintf(t->name, sizeof(t->name), "%s", target);
	}
	if (t->read_ms == 0 || now - t->read_ms >= MESH_KEYRING_REFRESH_MS) {
		if (mesh_target_encrypted(s->c, target, &encrypt) == MESH_OK) {
			t->encrypt = encrypt;
		}
		t->read_ms = now;
	}
	encrypt = t->encrypt;
	pthread_mutex_unlock(&s->seal_mu);
	return encrypt;
}

/* Seal ev for an encrypted target before the outbox keeps it, so neither
 * the outbox nor a partition's changelog (on the broker) holds its
 * plaintext. The service's identity must be a reader of the target. */
static mesh_err
emit_seal(struct mesh_service *s, const char *target, struct mesh_event *ev)
{
	mesh_err err;

	if (mesh_event_data(ev, NULL, NULL, NULL) == MESH_DATA_NONE ||
	    mesh_event_sealed(ev) || !target_encrypts(s, target)) {
		return MESH_OK;
	}
	if (s->keyring == NULL) {
		return mesh_err_set(
		        MESH_EAUTH,
		        "service '%s': emit to %s: it is "
		        "encrypted, and the service has no identity "
		        "to seal with (set MESH_IDENTITY to the seed "
		        "file of one of its readers)",
		        s->name, target);
	}
	if ((err = mesh_keyring_seal(s->keyring, target, ev)) != MESH_OK) {
		char detail[256];
		snprintf(detail, sizeof(detail), "%s", mesh_errdetail());
		return mesh_err_set(err, "service '%s': emit to %s: %s",
		                    s->name, target, detail);
	}
	return MESH_OK;
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

	if (!target_valid(target)) {
		return mesh_err_set(MESH_EINVAL,
		                    "service '%s': emit target '%s': want "
		                    "topic:NAME or queue:NAME",
		                    c->s->name, target ? target : "");
	}
	/* A service that declares its targets gets permissions for those
	 * alone (meshctl auth): an undeclared one is refused here, before
	 * the outbox holds an event the broker would refuse for ever. */
	if (c->s->n_emits > 0 && !emit_declared(c->s, target)) {
		return mesh_err_set(MESH_EINVAL,
		                    "service '%s': emit target '%s' is not "
		                    "declared (mesh_service_emits)",
		                    c->s->name, target);
	}
	if ((err = writable(c, "emit")) != MESH_OK ||
	    (err = mesh_event_dup(ev, &copy)) != MESH_OK) {
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
	    (err = emit_seal(c->s, target, copy)) != MESH_OK ||
	    (err = mesh_event_pack(copy, &buf, &len)) != MESH_OK) {
		mesh_event_free(copy);
		return err;
	}
	mesh_event_free(copy);
	if (len > MESH_TOPIC_MAX_MESSAGE + 65536) {
		free(buf);
		return mesh_err_set(MESH_ETOOBIG,
		                    "service '%s': emitted event of %zu bytes",
		                    c->s->name, len);
	}
	rc = mesh__outbox_put(&c->st->outbox, c->txn, c->undo, target,
	                      group_id, buf, len);
	free(buf);
	if (mesh__mdb_fatal(rc)) {
		c->broken = rc;
	}
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
	return c->req != NULL ? mesh__request_source(c->req)
	                      : mesh_source_label(c->src);
}

int
mesh_ctx_attempt(const struct mesh_ctx *c)
{
	return c->it != NULL ? c->it->attempt : 1;
}

const char *
mesh_ctx_trace_id(const struct mesh_ctx *c)
{
	return ctx_trace((struct mesh_ctx *)c);
}

static bool
stopping(const struct mesh_service *s)
{
	return *s->stop != 0;
}

void
mesh__nap_ms(struct mesh_service *s, int64_t ms)
{
	for (int64_t until = mesh_mono_ms() + ms;
	     !stopping(s) && mesh_mono_ms() < until;) {
		struct timespec ts = {0, 50 * 1000000};
		nanosleep(&ts, NULL);
	}
}

void *
mesh__work(void *arg)
{
	struct worker *w = arg;
	struct mesh_service *s = w->s;
	struct mesh_source *source = NULL;
	struct mesh_source_opts so;
	struct batch *b = calloc(1, sizeof(*b));
	mesh_err err;

	/* Named for top -H and perf: each in-flight batch's thread. */
	pthread_setname_np(pthread_self(), "mesh-batch");
	mesh_source_opts_init(&so);
	so.dlq = s->o.dlq; /* unless a queue keeps its own */
	so.service = s->name;
	if (b != NULL) {
		mesh__batch_init(b);
	}
	while (b != NULL && !stopping(s) &&
	       (w->running == NULL || atomic_load(w->running))) {
		err = source != NULL
		              ? MESH_OK
		              : mesh_source_open(s->c, w->spec, &so, &source);
		if (err == MESH_OK) {
			err = mesh__batch_fetch(s, source, b);
		}
		if (err != MESH_OK) {
			mesh__svc_log(s, "warn", "%s: %s; trying again",
			              w->label, mesh_errdetail());
			if (b->n == 0) {
				mesh_source_close(source);
				source = NULL;
				mesh__nap_ms(s, 1000);
				continue;
			}
		}
		if (b->n == 0) {
			continue;
		}
		atomic_fetch_add(&s->stats.in_flight, 1);
		mesh__batch_verify(s, w->src, b);
		mesh__batch_process(s, w->st, source, b);
		mesh__batch_settle(s, source, b);
		atomic_fetch_sub(&s->stats.in_flight, 1);
		mesh__batch_release(source, b);
	}
	mesh_source_close(source);
	if (b != NULL) {
		mesh__batch_fini(b);
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
	COUNTER("signature_refused", signature_refused);
	COUNTER("sealed_refused", sealed_refused);
	COUNTER("requests", requests);
	COUNTER("requests_replayed", requests_replayed);
	COUNTER("requests_5xx", requests_5xx);
#undef COUNTER
	json_object_set_new(j, "in_flight",
	                    json_integer(atomic_load(&st->in_flight)));
	json_object_set_new(j, "requests_waiting",
	                    json_integer(atomic_load(&st->requests_waiting)));
	json_object_set_new(
	        j, "outbox_pending",
	        json_integer((json_int_t)(s->parts != NULL
	                                          ? mesh__parts_outbox_count(s)
	                                          : mesh__outbox_count(
	                                                    &s->one.outbox))));
	json_object_set_new(j, "handler_ms", mesh__hist_json(&st->handler));
	json_object_set_new(j, "commit_ms", mesh__hist_json(&st->commit));
	json_object_set_new(j, "request_ms", mesh__hist_json(&st->request));
	if (s->parts != NULL) {
		json_object_set_new(j, "partitions", mesh__parts_json(s));
	}
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
			/* Through a copy: gcc -O0 cannot tell that spec and
			 * name, both in *src, do not overlap (-Wrestrict). */
			char spec[sizeof(src->spec)];
			snprintf(spec, sizeof(spec), "queue:%s", src->name);
			memcpy(src->spec, spec, sizeof(spec));
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
forget_published(struct store *st)
{
	MDB_txn *txn = NULL;

	if (mdb_txn_begin(st->env, NULL, 0, &txn) != 0) {
		return;
	}
	if (mesh__outbox_forget(&st->outbox, txn) == 0) {
		mdb_txn_commit(txn);
	} else {
		mdb_txn_abort(txn);
	}
}

/* The dead-letter queue and the sources, made or checked; a broker that
 * does not answer in time (a cluster busy with instances starting
 * together) is asked again for up to 30 s, not a failed start. */
static mesh_err
prepare(struct mesh_service *s)
{
	int64_t until = mesh_mono_ms() + 30000;
	mesh_err err;

	for (;;) {
		if ((err = ensure_dlq(s)) == MESH_OK) {
			err = prepare_sources(s);
		}
		if ((err != MESH_ETIMEDOUT && err != MESH_EBROKER) ||
		    mesh_mono_ms() >= until || stopping(s)) {
			return err;
		}
		mesh__svc_log(s, "warn", "starting: %s; trying again",
		              mesh_errdetail());
		mesh__nap_ms(s, 1000);
	}
}

static mesh_err
check_opts(const struct mesh_service *s)
{
	const struct mesh_service_opts *o = &s->o;

	if (o->batch_size < 1 || o->batch_size > MESH_SUBSCRIPTION_BATCH) {
		return mesh_err_set(MESH_EINVAL, "batch size %d: must be 1-%d",
		                    o->batch_size, MESH_SUBSCRIPTION_BATCH);
	}
	if (o->batch_window_ms < 0 || o->batch_window_ms > 10000) {
		return mesh_err_set(MESH_EINVAL,
		                    "batch window %d ms: must be 0-10000",
		                    o->batch_window_ms);
	}
	if (o->max_inflight < 1 || o->max_inflight > MAX_INFLIGHT) {
		return mesh_err_set(MESH_EINVAL, "in-flight %d: must be 1-%d",
		                    o->max_inflight, MAX_INFLIGHT);
	}
	if (o->max_receive < 1 || o->max_receive > 1000) {
		return mesh_err_set(MESH_EINVAL,
		                    "max-receive %d: must be 1-1000",
		                    o->max_receive);
	}
	if (o->horizon_s < 60 || o->horizon_s > 31536000) {
		return mesh_err_set(MESH_EINVAL,
		                    "horizon %" PRId64
		                    " s: must be 60-31536000",
		                    o->horizon_s);
	}
	if (o->partitions < 0 || o->partitions > MESH_PARTITIONS_MAX) {
		return mesh_err_set(MESH_EINVAL,
		                    "partitions %d: must be 1-%d (0: not "
		                    "partitioned)",
		                    o->partitions, MESH_PARTITIONS_MAX);
	}
	if (o->snapshot_records < 10 || o->snapshot_records > 100000000) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "snapshot records %ld: must be 10-100000000",
		        o->snapshot_records);
	}
	if (o->lease_ms < 500 || o->lease_ms > 60000) {
		return mesh_err_set(MESH_EINVAL,
		                    "lease %" PRId64 " ms: must be 500-60000",
		                    o->lease_ms);
	}
	if (o->request_threads < 1 || o->request_threads > 64) {
		return mesh_err_set(MESH_EINVAL,
		                    "request threads %d: must be 1-64",
		                    o->request_threads);
	}
	if (s->n_src == 0 && s->n_routes == 0) {
		return mesh_err_set(MESH_EINVAL,
		                    "service '%s' consumes nothing (declare a "
		                    "topic, a queue or a request route)",
		                    s->name);
	}
	return mesh_queue_name_check(o->dlq, NULL);
}

/* {"service", "sources", "partitions"} as text into *json; takes
 * sources. */
static mesh_err
json_out(const struct mesh_service *s, json_t *sources, char **json)
{
	json_t *emits = json_array();
	json_t *j;
	char *text;

	for (size_t i = 0; emits != NULL && i < s->n_emits; i++) {
		json_array_append_new(emits, json_string(s->emits[i]));
	}
	j = json_pack("{s:s, s:o, s:o, s:s, s:i, s:o}", "service", s->name,
	              "sources", sources, "emits", emits, "dlq", s->o.dlq,
	              "partitions", s->o.partitions, "routes",
	              mesh__routes_json(s));
	text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;

	json_decref(j);
	if (text == NULL) {
		return mesh_err_set(MESH_ENOMEM, "service '%s'", s->name);
	}
	*json = text;
	return MESH_OK;
}

mesh_err
mesh_service_describe(const struct mesh_service *s, char **json)
{
	json_t *sources = json_array();

	for (size_t i = 0; sources != NULL && i < s->n_src; i++) {
		const struct source *src = &s->src[i];
		json_t *o =
		        json_pack("{s:s, s:s}", "kind",
		                  src->kind == SRC_TOPIC ? "topic" : "queue",
		                  "name", src->name);
		if (o != NULL && src->filter_policy != NULL) {
			json_object_set_new(
			        o, "filter_policy",
			        json_loads(src->filter_policy, 0, NULL));
			json_object_set_new(o, "filter_scope",
			                    json_string(mesh_filter_scope_name(
			                            src->scope)));
		}
		if (o != NULL && src->replay_from_ms > 0) {
			json_object_set_new(
			        o, "replay_from_ms",
			        json_integer((json_int_t)src->replay_from_ms));
		}
		json_array_append_new(sources, o);
	}
	return json_out(s, sources, json);
}

mesh_err
mesh_service_prepare(struct mesh_service *s, struct mesh_conn *c, char **json)
{
	volatile sig_atomic_t never = 0;
	json_t *sources;
	mesh_err err;

	if ((err = check_opts(s)) != MESH_OK) {
		return err;
	}
	s->c = c;
	s->stop = &never;
	if ((err = prepare(s)) == MESH_OK && s->o.partitions > 0) {
		err = mesh_partitions_ensure(c, s->name, s->o.partitions);
	}
	s->c = NULL;
	s->stop = NULL;
	if (err != MESH_OK) {
		return err;
	}
	sources = json_array();
	for (size_t i = 0; sources != NULL && i < s->n_src; i++) {
		json_array_append_new(sources, json_string(s->src[i].spec));
	}
	return json_out(s, sources, json);
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
	/* A lease holder's name: [A-Za-z0-9_-] only. */
	for (char *h = host; *h != '\0'; h++) {
		if (!isalnum((unsigned char)*h) && *h != '-') {
			*h = '_';
		}
	}
	snprintf(s->instance, sizeof(s->instance), "%.40s-%d", host,
	         (int)getpid());
	if (s->o.partitions > 0) {
		if ((err = mesh__params_start(s)) != MESH_OK) {
			mesh__params_stop(s);
			return err;
		}
		if (s->on_start != NULL) {
			s->on_start(s, s->on_start_arg);
		}
		if (s->n_routes > 0) {
			/* A request names no partition (yet): say so rather
			 * than refuse a service partitioned by its flags. */
			mesh__svc_log(s, "warn",
			              "%zu request routes not served: a "
			              "partitioned service (%d partitions) "
			              "serves no requests; callers get no "
			              "responders (503)",
			              s->n_routes, s->o.partitions);
		}
		if ((err = prepare(s)) == MESH_OK &&
		    (err = stats_serve(s)) == MESH_OK &&
		    (err = mesh__state_api_start(s)) == MESH_OK) {
			err = mesh__parts_run(s);
			mesh__svc_log(s, "info", "stopped%s%s",
			              err != MESH_OK ? ": " : "",
			              err != MESH_OK ? mesh_errdetail() : "");
		}
		stats_stop(s);
		mesh__state_api_stop(s);
		mesh__parts_free(s);
		targets_close(s);
		mesh__params_stop(s);
		return err;
	}
	if ((err = mesh__store_open(s, &s->one, s->o.state_dir)) != MESH_OK) {
		return err;
	}
	if ((err = mesh__params_start(s)) != MESH_OK) {
		goto out;
	}
	if (s->on_start != NULL) {
		s->on_start(s, s->on_start_arg);
	}
	if ((err = prepare(s)) != MESH_OK ||
	    (err = mesh__verifiers_open(s)) != MESH_OK ||
	    (err = stats_serve(s)) != MESH_OK ||
	    (err = mesh__state_api_start(s)) != MESH_OK ||
	    (err = mesh__requests_start(s, &s->one)) != MESH_OK) {
		goto out;
	}
	/* What a crash left in the outbox goes out first. */
	mesh__outbox_flush(&s->one.outbox, 0);
	for (size_t i = 0; i < s->n_src; i++) {
		int n = s->src[i].fifo ? 1 : s->o.max_inflight;
		for (int k = 0;
		     k < n && nw < sizeof(workers) / sizeof(*workers); k++) {
			workers[nw] = (struct worker){.s = s,
			                              .src = &s->src[i],
			                              .spec = s->src[i].spec,
			                              .label = s->src[i].label,
			                              .st = &s->one};
			if (pthread_create(&workers[nw].thread, NULL,
			                   mesh__work, &workers[nw]) == 0) {
				nw++;
			}
		}
	}
	mesh__svc_log(s, "info", "started: %zu sources, state %s", s->n_src,
	              s->o.state_dir);
	next_flush = mesh_mono_ms() + FLUSH_EVERY_MS;
	while (!stopping(s)) {
		struct timespec ts = {0, 50 * 1000000};
		nanosleep(&ts, NULL);
		if (mesh_mono_ms() >= next_flush) {
			mesh__outbox_flush(
			        &s->one.outbox,
			        0); /* what failed to go out before */
			mesh__state_api_tick(s);
			next_flush = mesh_mono_ms() + FLUSH_EVERY_MS;
		}
	}
	mesh__requests_stop(s);
	for (size_t i = 0; i < nw; i++) {
		pthread_join(workers[i].thread, NULL);
	}
	mesh_conn_flush(s->c, 2000); /* the last acknowledgements */
	mesh__outbox_flush(&s->one.outbox, 0);
	forget_published(&s->one);
	targets_close(s);
	mesh__svc_log(s, "info", "stopped: %zu events in the outbox",
	              mesh__outbox_count(&s->one.outbox));
out:
	mesh__requests_stop(s);
	mesh__verifiers_close(s);
	stats_stop(s);
	mesh__state_api_stop(s);
	mesh__params_stop(s);
	mesh__store_close(&s->one);
	return err;
}
