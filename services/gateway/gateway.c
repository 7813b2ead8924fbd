/* gateway.c: mesh-gateway (gateway.h): the HTTP server, the table of
 * routes kept from the bucket's watch, and each request's way to a queue,
 * a topic or a service. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>
#include <microhttpd.h>

#include "call.h"
#include "gateway.h"
#include "http.h"
#include "mesh/clock.h"
#include "mesh/event.h"
#include "mesh/pbjson.h"
#include "mesh/queue.h"
#include "mesh/route.h"
#include "mesh/topic.h"
#include "mesh/wire.h"
#include "mesh_schemas.h"
#include "outlet.h"

#define GW_NAME       "mesh-gateway"
#define RAW_TYPE      "evmesh.http.request"
#define READY_WAIT_MS 10000

void
gw_opts_init(struct gw_opts *o)
{
	o->listen = "127.0.0.1:8080";
	o->max_body = 1024 * 1024;
	o->timeout_ms = 29000;
	o->threads = 4;
	o->tls_cert = o->tls_key = NULL;
}

/* A route of the table, under its bucket key. */
struct entry {
	char kv_key[MESH_ROUTE_KV_KEY_MAX + 1];
	struct mesh_route r;
};

struct gw {
	struct mesh_conn *c;
	struct gw_opts o;
	struct gw_calls calls;
	pthread_rwlock_t mu; /* the table */
	struct entry **routes;
	const struct mesh_route **view; /* routes[i]->r, for selecting */
	size_t n, cap;
	struct gw_outlets *outlets;
	/* What libmicrohttpd said last while starting (a refused
	 * certificate, say); it says nothing to us once serving. */
	char mhd_said[256];
	atomic_bool serving; /* read by libmicrohttpd's threads */
};

enum req_state { ST_NEW = 0, ST_BODY, ST_WAIT, ST_READY, ST_SENT };

struct req {
	struct gw *gw;
	struct MHD_Connection *conn;
	enum req_state state;
	int64_t start_us;
	char *uri; /* raw, as the request line had it */
	size_t path_len;
	const char *query; /* into uri, after '?'; NULL when none */
	char method[16];
	char *body;
	size_t len, cap;
	bool too_big;
	char request_id[GW_REQUEST_ID_MAX + 1];
	char trace[33], span[17], traceparent[56];
	char route_key[MESH_ROUTE_KEY_MAX + 1];
	int status;
	/* Set by the HTTP thread as it suspends the connection, read by it
	 * alone: state may change on another thread from then on. */
	bool suspended;
	struct MHD_Response *resp;
	struct gw_call call;
	struct gw_job job;
	char idem[GW_REQUEST_ID_MAX + 1]; /* a FIFO target's dedup id */
};

/* ---- logging -------------------------------------------------------------
 */

static void
log_json(json_t *j)
{
	char when[40], *line;
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, 24, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(when + strlen(when), sizeof(when) - strlen(when), ".%03ldZ",
	         ts.tv_nsec / 1000000);
	if (j == NULL) {
		return;
	}
	json_object_set_new(j, "time", json_string(when));
	json_object_set_new(j, "program", json_string(GW_NAME));
	if ((line = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER |
	                                  JSON_REAL_PRECISION(6))) != NULL) {
		fprintf(stderr, "%s\n", line);
		free(line);
	}
	json_decref(j);
}

static void gw_log(const char *level, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static void
gw_log(const char *level, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	mesh_text_clean(msg);
	log_json(json_pack("{s:s, s:s}", "level", level, "msg", msg));
}

/* ---- answers -------------------------------------------------------------
 */

static struct MHD_Response *
response(const void *body, size_t len, const char *content_type,
         const struct req *q)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(
	        len, (void *)body, MHD_RESPMEM_MUST_COPY);

	if (r != NULL) {
		MHD_add_response_header(r, "x-request-id", q->request_id);
		if (content_type != NULL) {
			MHD_add_response_header(r, "Content-Type",
			                        content_type);
		}
	}
	return r;
}

/* q's answer: a JSON error of status. */
static void fail(struct req *q, int status, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void
fail(struct req *q, int status, const char *fmt, ...)
{
	char msg[1024], *body;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	mesh_text_clean(msg);
	body = gw_error_body(msg, q->request_id);
	if (q->resp != NULL) {
		MHD_destroy_response(q->resp);
	}
	q->resp = response(body ? body : "{}", body ? strlen(body) : 2,
	                   "application/json", q);
	q->status = status;
	q->state = ST_READY;
	free(body);
}

/* ---- the route table -----------------------------------------------------
 */

static void
table_remove(struct gw *g, const char *kv_key)
{
	for (size_t i = 0; i < g->n; i++) {
		if (strcmp(g->routes[i]->kv_key, kv_key) == 0) {
			char key[MESH_ROUTE_KEY_MAX + 1];
			mesh_route_key(&g->routes[i]->r, key);
			gw_log("info", "route '%s' removed", key);
			free(g->routes[i]);
			g->routes[i] = g->routes[g->n - 1];
			g->n--;
			break;
		}
	}
	for (size_t i = 0; i < g->n; i++) {
		g->view[i] = &g->routes[i]->r;
	}
}

static void
table_put(struct gw *g, const char *kv_key, const struct mesh_route *r)
{
	struct entry *e = malloc(sizeof(*e));
	char key[MESH_ROUTE_KEY_MAX + 1];

	if (e == NULL) {
		gw_log("error", "route key '%s': out of memory", kv_key);
		return;
	}
	snprintf(e->kv_key, sizeof(e->kv_key), "%s", kv_key);
	e->r = *r;
	table_remove(g, kv_key);
	if (g->n == g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 16;
		struct entry **rs = realloc(g->routes, cap * sizeof(*rs));
		const struct mesh_route **v =
		        rs ? realloc(g->view, cap * sizeof(*v)) : NULL;
		if (rs != NULL) {
			g->routes = rs;
		}
		if (v == NULL) {
			free(e);
			gw_log("error", "route key '%s': out of memory",
			       kv_key);
			return;
		}
		g->view = v;
		g->cap = cap;
	}
	g->routes[g->n] = e;
	g->view[g->n] = &e->r;
	g->n++;
	mesh_route_key(r, key);
	gw_log("info", "route '%s' -> %s%s%s", key, r->target,
	       r->type[0] ? " as " : "", r->type);
}

/* A change of the bucket (the watch). */
static void
table_apply(struct gw *g, kvEntry *e)
{
	const char *kv_key = kvEntry_Key(e);
	struct mesh_route *r;

	if (kv_key == NULL) {
		return;
	}
	pthread_rwlock_wrlock(&g->mu);
	if (kvEntry_Operation(e) != kvOp_Put) {
		table_remove(g, kv_key);
	} else if ((r = malloc(sizeof(*r))) != NULL) {
		if (mesh_route_decode(kvEntry_Value(e),
		                      (size_t)kvEntry_ValueLen(e),
		                      r) == MESH_OK) {
			char want[MESH_ROUTE_KV_KEY_MAX + 1];
			mesh_route_kv_key(r->method, r->path, want);
			if (strcmp(want, kv_key) == 0) {
				table_put(g, kv_key, r);
			} else {
				table_remove(g, kv_key);
				gw_log("error",
				       "route key '%s': its record is of "
				       "'%s %s': not served",
				       kv_key, r->method, r->path);
			}
		} else {
			table_remove(g, kv_key);
			gw_log("error",
			       "route key '%s': damaged record, not served: "
			       "%s",
			       kv_key, mesh_errdetail());
		}
		free(r);
	}
	pthread_rwlock_unlock(&g->mu);
}

/* ---- queues and topics ---------------------------------------------------
 */

static const char *
header(const struct req *q, const char *name)
{
	return MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, name);
}

static bool
textual(const char *content_type)
{
	return content_type != NULL &&
	       (strncasecmp(content_type, "text/", 5) == 0 ||
	        strstr(content_type, "json") != NULL);
}

/* The event of a queue: or topic: route: the body, the parameters and
 * headers as message attributes, the trace context. */
static bool
event_build(struct req *q, const struct mesh_route *r,
            const struct mesh_route_match *m, struct mesh_event **out)
{
	const char *ct = header(q, "Content-Type");
	struct mesh_ext_value tp = {.type = MESH_EXT_STRING};
	struct mesh_event *ev = NULL;
	char subject[MESH_ROUTE_PATH_MAX + 1];
	mesh_err err;

	if (mesh_event_new(r->type[0] ? r->type : RAW_TYPE, GW_NAME, &ev) !=
	    MESH_OK) {
		fail(q, 500, "making the event: %s", mesh_errdetail());
		return false;
	}
	snprintf(subject, sizeof(subject), "%.*s", (int)q->path_len, q->uri);
	mesh_text_clean(subject);
	mesh_event_set_subject(ev, subject);
	if (r->type[0] != '\0') {
		err = mesh_pbjson_set_event_data(
		        ev, r->type, q->body ? q->body : "", q->len);
		if (err != MESH_OK) {
			fail(q, 400, "body: %s", mesh_errdetail());
			goto bad;
		}
	} else {
		err = textual(ct) ? mesh_event_set_text(ev, q->body, q->len)
		                  : MESH_EINVAL;
		if (err != MESH_OK &&
		    mesh_event_set_binary(ev, q->body, q->len) != MESH_OK) {
			fail(q, 500, "body: %s", mesh_errdetail());
			goto bad;
		}
		if (ct != NULL && gw_header_value_ok(ct)) {
			mesh_event_set_datacontenttype(ev, ct);
		}
	}
	for (size_t i = 0; i < m->n; i++) {
		char name[MESH_ROUTE_PARAM_NAME_MAX + 1];
		snprintf(name, sizeof(name), "%.*s", (int)m->param[i].name_len,
		         m->param[i].name);
		if (mesh_event_attr_set(ev, name, "String", m->param[i].value,
		                        strlen(m->param[i].value)) !=
		    MESH_OK) {
			fail(q, 400, "path parameter '%s': %s", name,
			     mesh_errdetail());
			goto bad;
		}
	}
	for (size_t i = 0; i < r->n_headers; i++) {
		const char *v = header(q, r->headers[i]);
		if (v != NULL && v[0] != '\0' &&
		    mesh_event_attr_set(ev, r->headers[i], "String", v,
		                        strlen(v)) != MESH_OK) {
			fail(q, 400, "header '%s': %s", r->headers[i],
			     mesh_errdetail());
			goto bad;
		}
	}
	tp.string = q->traceparent;
	tp.len = strlen(q->traceparent);
	mesh_event_ext_set(ev, "traceparent", &tp);
	*out = ev;
	return true;
bad:
	mesh_event_free(ev);
	return false;
}

/* The status of a send's failure. */
static int
send_status(mesh_err err)
{
	switch (err) {
	case MESH_EINVAL:
		return 400;
	case MESH_ETOOBIG:
		return 413;
	case MESH_ENOTFOUND:
		return 502;
	default:
		return 503;
	}
}

/* An event's outcome as q's answer; then q goes on (the outlet's
 * thread). */
static void
job_done(struct gw_job *j, const struct mesh_sent *r)
{
	struct req *q = j->arg;
	json_t *body;
	char *text;

	if (r->err != MESH_OK) {
		fail(q, send_status(r->err), "target: %s", r->error);
		MHD_resume_connection(q->conn);
		return;
	}
	body = json_pack("{s:s}", "MessageId", r->message_id);
	text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (text == NULL) {
		fail(q, 500, "out of memory");
	} else {
		q->resp = response(text, strlen(text), "application/json", q);
		q->status = 202;
		q->state = ST_READY;
	}
	free(text);
	MHD_resume_connection(q->conn);
}

static void
to_event(struct req *q, const struct mesh_route *r,
         const struct mesh_route_match *m)
{
	const char *idem = header(q, "Idempotency-Key");
	struct mesh_event *ev = NULL;

	if (!event_build(q, r, m, &ev)) {
		return;
	}
	snprintf(q->idem, sizeof(q->idem), "%s",
	         idem != NULL && idem[0] != '\0' ? idem : q->request_id);
	q->job.event = ev;
	q->job.group_id = GW_NAME;
	q->job.dedup_id = q->idem;
	q->job.done = job_done;
	q->job.arg = q;
	/* Suspended first, as for a service call. */
	q->state = ST_WAIT;
	q->suspended = true;
	MHD_suspend_connection(q->conn);
	if (gw_outlet_post(q->gw->outlets, r->target, r->kind, &q->job) !=
	    MESH_OK) {
		mesh_event_free(ev);
		fail(q, 503, "target '%s': %s", r->target, mesh_errdetail());
		MHD_resume_connection(q->conn);
	}
}

/* ---- services ------------------------------------------------------------
 */

/* The reply of a service call (or why there is none), as q's answer;
 * then q goes on (a NATS or timer thread). */
static void
call_done(struct gw_call *call, gw_call_outcome o, natsMsg *msg)
{
	struct req *q = call->arg;
	const char *status = NULL, *ct = NULL;
	const char **keys = NULL;
	int n = 0, code = 200;

	switch (o) {
	case GW_CALL_NO_RESPONDERS:
		fail(q, 503, "service: no instance answers on its subject");
		break;
	case GW_CALL_TIMEOUT:
		fail(q, 504, "service: no answer within %" PRId64 " ms",
		     q->gw->o.timeout_ms);
		break;
	case GW_CALL_STOPPED:
		fail(q, 503, "the gateway is stopping");
		break;
	case GW_CALL_REPLY:
		if (natsMsgHeader_Get(msg, "Mesh-Status", &status) ==
		    NATS_OK) {
			char *end = NULL;
			long v = strtol(status, &end, 10);
			code = end != status && *end == '\0' && v >= 200 &&
			                       v <= 599
			               ? (int)v
			               : 0;
		}
		if (code == 0) {
			fail(q, 502,
			     "service: Mesh-Status '%.32s' is not an "
			     "HTTP status",
			     status);
			break;
		}
		natsMsgHeader_Get(msg, "Content-Type", &ct);
		q->resp = response(
		        natsMsg_GetData(msg),
		        (size_t)natsMsg_GetDataLength(msg),
		        ct != NULL && gw_header_value_ok(ct) ? ct : NULL, q);
		if (q->resp == NULL) {
			fail(q, 500, "out of memory");
			break;
		}
		if (natsMsgHeader_Keys(msg, &keys, &n) == NATS_OK) {
			for (int i = 0; i < n; i++) {
				const char *v = NULL, *name = keys[i] + 12;
				if (strncasecmp(keys[i], "Mesh-Header-", 12) !=
				            0 ||
				    !gw_header_name_ok(name) ||
				    strcasecmp(name, "x-request-id") == 0 ||
				    natsMsgHeader_Get(msg, keys[i], &v) !=
				            NATS_OK ||
				    !gw_header_value_ok(v)) {
					continue;
				}
				MHD_add_response_header(q->resp, name, v);
			}
			free((void *)keys);
		}
		q->status = code;
		q->state = ST_READY;
		break;
	}
	MHD_resume_connection(q->conn);
}

static natsStatus
hdr(natsMsg *m, const char *name, const char *value)
{
	return value != NULL ? natsMsgHeader_Set(m, name, value) : NATS_OK;
}

static void
to_service(struct req *q, const struct mesh_route *r,
           const struct mesh_route_match *m)
{
	char subject[128], reply[96], name[128];
	natsMsg *msg = NULL;
	natsStatus st;
	mesh_err err;

	if (r->type[0] != '\0') {
		/* Checked here, so that a service gets bodies that fit. */
		const ProtobufCMessageDescriptor *d =
		        mesh_schema_find(r->type);
		json_error_t je;
		ProtobufCMessage *pm = NULL;
		json_t *j = json_loadb(q->body ? q->body : "", q->len,
		                       JSON_REJECT_DUPLICATES, &je);
		if (j == NULL) {
			fail(q, 400, "body: not JSON: %s at line %d column %d",
			     je.text, je.line, je.column);
			return;
		}
		err = d != NULL ? mesh_pbjson_encode(d, j, &pm)
		                : MESH_ENOTFOUND;
		json_decref(j);
		if (err != MESH_OK) {
			fail(q, 400, "body: %s", mesh_errdetail());
			return;
		}
		protobuf_c_message_free_unpacked(pm, NULL);
	}
	for (size_t i = 0; i < m->n; i++) {
		if (!gw_header_value_ok(m->param[i].value)) {
			fail(q, 400,
			     "path parameter '%.*s': a control "
			     "character",
			     (int)m->param[i].name_len, m->param[i].name);
			return;
		}
	}
	snprintf(subject, sizeof(subject), MESH_SERVICE_REQUEST_SUBJECT,
	         mesh_route_target_name(r));
	q->call.done = call_done;
	q->call.arg = q;
	gw_calls_reply_to(&q->gw->calls, &q->call, reply, sizeof(reply));
	st = natsMsg_Create(&msg, subject, reply, q->body, (int)q->len);
	if (st == NATS_OK) {
		char path[MESH_ROUTE_PATH_MAX + 1];
		snprintf(path, sizeof(path), "%.*s", (int)q->path_len, q->uri);
		st = hdr(msg, "Mesh-Route", q->route_key);
		st = st ? st : hdr(msg, "Mesh-Method", q->method);
		st = st ? st : hdr(msg, "Mesh-Path", path);
		st = st ? st : hdr(msg, "Mesh-Query", q->query);
		st = st ? st : hdr(msg, "Mesh-Request-Id", q->request_id);
		st = st ? st : hdr(msg, "traceparent", q->traceparent);
		st = st ? st
		        : hdr(msg, "Idempotency-Key",
		              header(q, "Idempotency-Key"));
		st = st ? st
		        : hdr(msg, "Content-Type", header(q, "Content-Type"));
		for (size_t i = 0; st == NATS_OK && i < m->n; i++) {
			snprintf(name, sizeof(name), "Mesh-Param-%.*s",
			         (int)m->param[i].name_len, m->param[i].name);
			st = hdr(msg, name, m->param[i].value);
		}
		for (size_t i = 0; st == NATS_OK && i < r->n_headers; i++) {
			snprintf(name, sizeof(name), "Mesh-Header-%s",
			         r->headers[i]);
			st = hdr(msg, name, header(q, r->headers[i]));
		}
	}
	if (st != NATS_OK) {
		natsMsg_Destroy(msg);
		fail(q, 500, "the request: %s", natsStatus_GetText(st));
		return;
	}
	/* Suspended first: the reply may come before the publish returns,
	 * and only a suspended connection can be resumed. */
	q->state = ST_WAIT;
	q->suspended = true;
	MHD_suspend_connection(q->conn);
	if ((err = gw_calls_start(&q->gw->calls, &q->call, msg)) != MESH_OK) {
		fail(q, 503, "service '%s': %s", mesh_route_target_name(r),
		     mesh_errdetail());
		MHD_resume_connection(q->conn);
	}
	natsMsg_Destroy(msg);
}

/* ---- requests ------------------------------------------------------------
 */

static void
dispatch(struct req *q)
{
	struct gw *g = q->gw;
	struct mesh_route *r = malloc(sizeof(*r));
	struct mesh_route_match *m = malloc(sizeof(*m));
	unsigned allow = 0;
	int i;

	if (r == NULL || m == NULL) {
		fail(q, 500, "out of memory");
		goto out;
	}
	if (q->too_big) {
		fail(q, 413, "the body is larger than %zu bytes",
		     g->o.max_body);
		goto out;
	}
	pthread_rwlock_rdlock(&g->mu);
	i = mesh_route_select(g->view, g->n, q->method, q->uri, q->path_len, m,
	                      &allow);
	if (i >= 0) {
		*r = g->routes[i]->r;
	}
	pthread_rwlock_unlock(&g->mu);
	if (i < 0 && allow == 0) {
		fail(q, 404, "no route for %s %.*s", q->method,
		     (int)(q->path_len > 512 ? 512 : q->path_len), q->uri);
		goto out;
	}
	if (i < 0) {
		char methods[64] = "";
		static const char *names[] = {"GET", "POST", "PUT", "PATCH",
		                              "DELETE"};
		for (int k = 0; k < 5; k++) {
			if (allow & (1u << k)) {
				snprintf(methods + strlen(methods),
				         sizeof(methods) - strlen(methods),
				         "%s%s", methods[0] ? ", " : "",
				         names[k]);
			}
		}
		fail(q, 405, "method %s not allowed on %.*s (allowed: %s)",
		     q->method, (int)(q->path_len > 512 ? 512 : q->path_len),
		     q->uri, methods);
		if (q->resp != NULL) {
			MHD_add_response_header(q->resp, "Allow", methods);
		}
		goto out;
	}
	mesh_route_key(r, q->route_key);
	if (r->kind == MESH_ROUTE_SERVICE) {
		to_service(q, r, m);
	} else {
		to_event(q, r, m);
	}
out:
	free(r);
	free(m);
}

static int64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

/* MHD's URI log callback: the first sight of a request, its raw URI
 * (MHD parses the query out and decodes the path; the route needs both
 * raw). Returns the request's state. */
static void *
on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
	struct req *q = calloc(1, sizeof(*q));
	const char *mark;

	(void)conn;
	if (q == NULL || (q->uri = strdup(uri)) == NULL) {
		free(q);
		return NULL;
	}
	q->gw = cls;
	q->start_us = mono_us();
	mark = strchr(q->uri, '?');
	q->path_len = mark ? (size_t)(mark - q->uri) : strlen(q->uri);
	q->query = mark && mark[1] ? mark + 1 : NULL;
	return q;
}

/* The path left raw: percent-decoding is the route's, per segment. */
static size_t
no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
	(void)cls;
	(void)c;
	return strlen(s);
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url,
           const char *method, const char *version, const char *upload,
           size_t *upload_size, void **con_cls)
{
	struct req *q = *con_cls;
	enum MHD_Result rc;

	(void)cls;
	(void)url;
	(void)version;
	if (q == NULL) {
		static const char oom[] = "{\"message\":\"out of memory\"}";
		struct MHD_Response *r = MHD_create_response_from_buffer(
		        sizeof(oom) - 1, (void *)oom, MHD_RESPMEM_PERSISTENT);
		rc = MHD_queue_response(conn, 500, r);
		MHD_destroy_response(r);
		return rc;
	}
	if (q->state == ST_NEW) {
		const char *cl;
		q->conn = conn;
		snprintf(q->method, sizeof(q->method), "%s", method);
		gw_request_id(header(q, "X-Request-Id"), q->request_id);
		gw_trace(header(q, "traceparent"), q->trace, q->span,
		         q->traceparent);
		q->state = ST_BODY;
		cl = header(q, "Content-Length");
		if (cl != NULL && strtoull(cl, NULL, 10) > q->gw->o.max_body) {
			fail(q, 413, "the body is larger than %zu bytes",
			     q->gw->o.max_body);
		} else {
			return MHD_YES;
		}
	}
	if (q->state == ST_BODY && *upload_size > 0) {
		size_t n = *upload_size;
		*upload_size = 0;
		if (q->too_big || q->len + n > q->gw->o.max_body) {
			q->too_big = true;
			free(q->body);
			q->body = NULL;
			q->len = q->cap = 0;
			return MHD_YES;
		}
		if (q->len + n + 1 > q->cap) {
			size_t cap = (q->len + n + 1) * 2;
			char *b = realloc(q->body, cap);
			if (b == NULL) {
				q->too_big = true;
				return MHD_YES;
			}
			q->body = b;
			q->cap = cap;
		}
		memcpy(q->body + q->len, upload, n);
		q->len += n;
		q->body[q->len] = '\0';
		return MHD_YES;
	}
	if (q->state == ST_BODY) {
		dispatch(q);
	}
	if (q->suspended) {
		/* Its answer comes on another thread, which resumes it; then
		 * we are called again. */
		q->suspended = false;
		return MHD_YES;
	}
	if (q->state != ST_READY || q->resp == NULL) {
		fail(q, 500, "no answer");
	}
	rc = q->resp != NULL
	             ? MHD_queue_response(conn, (unsigned)q->status, q->resp)
	             : MHD_NO;
	q->state = ST_SENT;
	return rc;
}

/* The request's log line; its state freed. */
static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
             enum MHD_RequestTerminationCode toe)
{
	struct req *q = *con_cls;
	char path[MESH_ROUTE_PATH_MAX + 1];
	json_t *j;

	(void)cls;
	(void)conn;
	if (q == NULL) {
		return;
	}
	if (q->state != ST_NEW) {
		snprintf(path, sizeof(path), "%.*s", (int)q->path_len, q->uri);
		mesh_text_clean(path);
		mesh_text_clean(q->method);
		j = json_pack("{s:s, s:s, s:s, s:s, s:s?, s:i, s:f, s:s, s:s}",
		              "level", "info", "msg", "request", "method",
		              q->method, "path", path, "route",
		              q->route_key[0] ? q->route_key : NULL, "status",
		              q->status, "ms",
		              (double)(mono_us() - q->start_us) / 1000.0,
		              "request_id", q->request_id, "trace_id",
		              q->trace);
		if (j != NULL && toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) {
			json_object_set_new(j, "terminated",
			                    json_string("before the answer "
			                                "was sent"));
		}
		log_json(j);
	}
	if (q->resp != NULL) {
		MHD_destroy_response(q->resp);
	}
	free(q->body);
	free(q->uri);
	free(q);
	*con_cls = NULL;
}

/* ---- running -------------------------------------------------------------
 */

static mesh_err
listen_addr(const char *listen, struct sockaddr_in *sa)
{
	char host[64];
	const char *colon = strrchr(listen, ':');
	char *end = NULL;
	long port;

	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	if (colon == NULL || (size_t)(colon - listen) >= sizeof(host)) {
		return mesh_err_set(MESH_EINVAL,
		                    "--listen '%s': want ADDR:PORT "
		                    "(127.0.0.1:8080)",
		                    listen);
	}
	snprintf(host, sizeof(host), "%.*s", (int)(colon - listen), listen);
	port = strtol(colon + 1, &end, 10);
	if (end == colon + 1 || *end != '\0' || port < 0 || port > 65535 ||
	    inet_pton(AF_INET, host[0] ? host : "0.0.0.0", &sa->sin_addr) !=
	            1) {
		return mesh_err_set(MESH_EINVAL,
		                    "--listen '%s': want an IPv4 ADDR:PORT "
		                    "(127.0.0.1:8080)",
		                    listen);
	}
	sa->sin_port = htons((uint16_t)port);
	return MESH_OK;
}

/* libmicrohttpd's messages: kept while starting (the reason it would not),
 * dropped once serving (a client's failed TLS handshake is not ours to
 * log line by line). */
static void
mhd_logger(void *arg, const char *fmt, va_list ap)
{
	struct gw *g = arg;
	size_t n;

	if (atomic_load(&g->serving)) {
		return;
	}
	vsnprintf(g->mhd_said, sizeof(g->mhd_said), fmt, ap);
	n = strlen(g->mhd_said);
	while (n > 0 &&
	       (g->mhd_said[n - 1] == '\n' || g->mhd_said[n - 1] == '.')) {
		g->mhd_said[--n] = '\0';
	}
}

/* A PEM file, whole, NUL-terminated (libmicrohttpd takes PEM in memory). */
static mesh_err
read_pem(const char *flag, const char *path, char **out)
{
	enum { PEM_MAX = 1024 * 1024 };
	FILE *f = fopen(path, "rb");
	char *buf;
	size_t n;

	*out = NULL;
	if (f == NULL) {
		return mesh_err_errno(errno, "%s '%s'", flag, path);
	}
	if ((buf = malloc(PEM_MAX + 1)) == NULL) {
		fclose(f);
		return mesh_err_set(MESH_ENOMEM, "%s '%s'", flag, path);
	}
	n = fread(buf, 1, PEM_MAX + 1, f);
	if (ferror(f)) {
		int e = errno;
		fclose(f);
		free(buf);
		return mesh_err_errno(e, "%s '%s'", flag, path);
	}
	fclose(f);
	if (n > PEM_MAX) {
		free(buf);
		return mesh_err_set(MESH_EINVAL, "%s '%s': over %d bytes",
		                    flag, path, PEM_MAX);
	}
	buf[n] = '\0';
	if (strstr(buf, "-----BEGIN ") == NULL) {
		free(buf);
		return mesh_err_set(MESH_EINVAL,
		                    "%s '%s': not PEM (no -----BEGIN line)",
		                    flag, path);
	}
	*out = buf;
	return MESH_OK;
}

mesh_err
gw_run(struct mesh_conn *c, const struct gw_opts *o,
       volatile sig_atomic_t *stop)
{
	struct gw g = {.c = c, .o = *o};
	struct MHD_Daemon *d = NULL;
	struct sockaddr_in sa;
	kvStore *kv = NULL;
	kvWatcher *w = NULL;
	bool ready = false;
	int64_t until;
	natsStatus st;
	mesh_err err;
	char *cert = NULL, *key = NULL;
	struct MHD_OptionItem tls[3] = {{MHD_OPTION_END, 0, NULL}};

	if ((err = listen_addr(o->listen, &sa)) != MESH_OK) {
		return err;
	}
	if (o->tls_cert != NULL) {
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
			return mesh_err_set(MESH_EINVAL,
			                    "--tls-cert: this libmicrohttpd "
			                    "was built without TLS");
		}
		if ((err = read_pem("--tls-cert", o->tls_cert, &cert)) !=
		            MESH_OK ||
		    (err = read_pem("--tls-key", o->tls_key, &key)) !=
		            MESH_OK) {
			free(cert);
			return err;
		}
		tls[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0,
		                                 cert};
		tls[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0,
		                                 key};
		tls[2] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
	}
	pthread_rwlock_init(&g.mu, NULL);
	if ((err = gw_outlets_new(c, &g.outlets)) != MESH_OK ||
	    (err = gw_calls_open(&g.calls, c, o->timeout_ms)) != MESH_OK ||
	    (err = mesh_route_bucket(c, &kv)) != MESH_OK) {
		goto out;
	}
	if ((st = mesh_kv_watch_all(kv, &w)) != NATS_OK) {
		err = mesh_err_nats(st, 0, "following %s", MESH_ROUTES_BUCKET);
		goto out;
	}
	/* The routes as they are, before the first request. */
	until = mesh_mono_ms() + READY_WAIT_MS;
	while (!ready && !*stop && mesh_mono_ms() < until) {
		kvEntry *e = NULL;
		if (kvWatcher_Next(&e, w, 500) != NATS_OK) {
			continue;
		}
		if (e == NULL) {
			ready = true;
		} else {
			table_apply(&g, e);
			kvEntry_Destroy(e);
		}
	}
	if (!ready && !*stop) {
		err = mesh_err_set(MESH_ETIMEDOUT,
		                   "the routes of %s: not read within %d ms",
		                   MESH_ROUTES_BUCKET, READY_WAIT_MS);
		goto out;
	}
	errno = 0;
	d = MHD_start_daemon(
	        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
	                MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG |
	                (cert != NULL ? MHD_USE_TLS : 0),
	        0, NULL, NULL, on_request, &g, MHD_OPTION_SOCK_ADDR,
	        (struct sockaddr *)&sa, MHD_OPTION_THREAD_POOL_SIZE,
	        (unsigned)o->threads, MHD_OPTION_URI_LOG_CALLBACK, on_uri, &g,
	        MHD_OPTION_NOTIFY_COMPLETED, on_completed, &g,
	        MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, &g,
	        MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, &g,
	        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_ARRAY,
	        tls, MHD_OPTION_END);
	if (d == NULL) {
		if (cert != NULL && g.mhd_said[0] != '\0' &&
		    strstr(g.mhd_said, "bind") == NULL &&
		    strstr(g.mhd_said, "listen") == NULL) {
			err = mesh_err_set(
			        MESH_EINVAL,
			        "--tls-cert '%s', --tls-key '%s': %s",
			        o->tls_cert, o->tls_key, g.mhd_said);
		} else {
			err = mesh_err_errno(
			        errno ? errno : EADDRINUSE,
			        "--listen '%s': cannot listen%s%s", o->listen,
			        g.mhd_said[0] ? ": " : "", g.mhd_said);
		}
		goto out;
	}
	atomic_store(&g.serving, true);
	{
		const union MHD_DaemonInfo *info =
		        MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
		char host[INET_ADDRSTRLEN] = "?";
		inet_ntop(AF_INET, &sa.sin_addr, host, sizeof(host));
		gw_log("info",
		       "listening on %s:%u, %s, %zu routes, %u threads, "
		       "bodies up to %zu bytes, services answer within "
		       "%" PRId64 " ms",
		       host, info != NULL ? (unsigned)info->port : 0,
		       cert != NULL ? "HTTPS" : "HTTP", g.n, o->threads,
		       o->max_body, o->timeout_ms);
	}
	/* The main thread follows the routes (and sees the stop flag at
	 * least twice a second). */
	while (!*stop) {
		kvEntry *e = NULL;
		st = kvWatcher_Next(&e, w, 500);
		if (st == NATS_OK && e != NULL) {
			table_apply(&g, e);
			kvEntry_Destroy(e);
		}
	}
	gw_log("info", "stopping");
out:
	if (d != NULL) {
		MHD_quiesce_daemon(d);
	}
	/* Every suspended connection resumed before MHD stops. */
	gw_calls_close(&g.calls);
	gw_outlets_free(g.outlets);
	if (d != NULL) {
		struct timespec ts = {0, 100 * 1000000};
		nanosleep(&ts, NULL);
		MHD_stop_daemon(d);
	}
	if (w != NULL) {
		kvWatcher_Stop(w);
		kvWatcher_Destroy(w);
	}
	kvStore_Destroy(kv);
	for (size_t i = 0; i < g.n; i++) {
		free(g.routes[i]);
	}
	free(g.routes);
	free(g.view);
	pthread_rwlock_destroy(&g.mu);
	if (key != NULL) {
		/* The private key leaves no copy in freed memory. */
		explicit_bzero(key, strlen(key));
	}
	free(key);
	free(cert);
	return err;
}
