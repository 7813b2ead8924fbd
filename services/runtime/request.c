/* request.c: request handlers (mesh_service_on_request): routes, the
 * request subscription and its threads, reads, commands and their
 * recorded replies. The protocol is mesh/service_api.h's.
 *
 * Reads run in a read transaction of their own on a request thread, in
 * parallel with everything. A command opens a write transaction of its
 * own: LMDB lets one writer in at a time (across the instances sharing the
 * environment too), so a command waits for a batch's commit, and a batch
 * for a command's; the runtime's single-writer use stays whole. The
 * command's idempotency key is looked up in that transaction, so two
 * instances given one key at once run it once: the second finds the
 * first's record. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "be.h"
#include "mesh/pbjson.h"
#include "runtime.h"

#define QUEUE_MAX          1024 /* requests queued an instance */
#define REPLY_HEADERS_MAX  32
#define EXPIRE_PER_COMMAND 16
#define PARAMS_MAX         16

struct mesh_request {
	natsMsg *m;
	const struct route *rt;
	const char *method, *path, *query, *id, *idem, *traceparent, *ctype;
	bool id_given; /* Mesh-Request-Id came with it */
	const char **keys;
	int n_keys;
	const uint8_t *body;
	size_t len;
	ProtobufCMessage *msg;
	char id_buf[32];
	char source[16 + 256];
};

struct mesh_reply {
	int status;
	char *ctype;
	char *names[REPLY_HEADERS_MAX], *values[REPLY_HEADERS_MAX];
	int n_hdr;
	uint8_t *body;
	size_t len;
	const char *request_id;
};

static const char *const methods[] = {"GET",   "HEAD",   "POST",   "PUT",
                                      "PATCH", "DELETE", "OPTIONS"};

/* ---- routes ------------------------------------------------------------- */

static bool
path_char(int c)
{
	return isalnum(c) || c == '.' || c == '_' || c == '~' || c == '-';
}

/* Whether key is "METHOD /path" as mesh_service_on_request wants; *read
 * for GET and HEAD. why says what is wrong. */
static bool
route_check(const char *key, bool *read, char *why, size_t size)
{
	const char *sp = strchr(key, ' '), *p;
	char names[PARAMS_MAX][64];
	size_t n_names = 0, m = 0;

	for (; sp != NULL && m < sizeof(methods) / sizeof(*methods); m++) {
		if (strlen(methods[m]) == (size_t)(sp - key) &&
		    strncmp(key, methods[m], (size_t)(sp - key)) == 0) {
			break;
		}
	}
	if (sp == NULL || m == sizeof(methods) / sizeof(*methods)) {
		snprintf(why, size,
		         "want METHOD /path (GET, HEAD, POST, PUT, PATCH, "
		         "DELETE, OPTIONS)");
		return false;
	}
	*read = m <= 1;
	if (sp[1] != '/') {
		snprintf(why, size, "the path must begin with '/'");
		return false;
	}
	if (strcmp(sp + 1, "/") == 0) {
		return true;
	}
	for (p = sp + 2;; p++) {
		const char *end = strchr(p, '/');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len == 0) {
			snprintf(why, size, "an empty path segment");
			return false;
		}
		if (p[0] == '{') {
			if (len < 3 || len - 2 >= sizeof(names[0]) ||
			    p[len - 1] != '}') {
				snprintf(why, size,
				         "a parameter is a whole segment "
				         "{name}, name of 1-62 characters");
				return false;
			}
			for (size_t i = 1; i + 1 < len; i++) {
				if (!isalnum((unsigned char)p[i]) &&
				    p[i] != '_') {
					snprintf(why, size,
					         "parameter '%.*s': names are "
					         "[A-Za-z0-9_]",
					         (int)len, p);
					return false;
				}
			}
			for (size_t i = 0; i < n_names; i++) {
				if (strlen(names[i]) == len - 2 &&
				    strncmp(names[i], p + 1, len - 2) == 0) {
					snprintf(why, size,
					         "parameter '%.*s' twice",
					         (int)len, p);
					return false;
				}
			}
			if (n_names == PARAMS_MAX) {
				snprintf(why, size, "more than %d parameters",
				         PARAMS_MAX);
				return false;
			}
			snprintf(names[n_names++], sizeof(names[0]), "%.*s",
			         (int)(len - 2), p + 1);
		} else {
			for (size_t i = 0; i < len; i++) {
				if (!path_char((unsigned char)p[i])) {
					snprintf(why, size,
					         "segment '%.*s': want "
					         "[A-Za-z0-9._~-] or {name}",
					         (int)len, p);
					return false;
				}
			}
		}
		if (end == NULL) {
			return true;
		}
		p = end;
	}
}

mesh_err
mesh_service_on_request(struct mesh_service *s, const char *route,
                        const ProtobufCMessageDescriptor *desc,
                        mesh_request_fn fn, void *arg)
{
	struct route *rt;
	char why[160];
	bool read = false;

	if (route == NULL || strlen(route) > 255 ||
	    !route_check(route, &read, why, sizeof(why))) {
		return mesh_err_set(MESH_EINVAL,
		                    "service '%s': route '%.255s': %s",
		                    s->name, route ? route : "",
		                    route == NULL || strlen(route) > 255
		                            ? "want 1-255 bytes"
		                            : why);
	}
	if (fn == NULL || s->n_routes == MAX_ROUTES) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "service '%s': route '%s': a handler needs "
		        "a function (at most %d routes)",
		        s->name, route, MAX_ROUTES);
	}
	if (s->o.partitions > 0) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "service '%s': route '%s': a partitioned "
		        "service (%d partitions) serves no requests "
		        "(a request names no partition)",
		        s->name, route, s->o.partitions);
	}
	for (size_t i = 0; i < s->n_routes; i++) {
		if (strcmp(s->routes[i].key, route) == 0) {
			return mesh_err_set(
			        MESH_EINVAL,
			        "service '%s': route '%s' declared "
			        "twice",
			        s->name, route);
		}
	}
	rt = &s->routes[s->n_routes];
	memset(rt, 0, sizeof(*rt));
	if ((rt->key = strdup(route)) == NULL) {
		return mesh_err_set(MESH_ENOMEM, "service '%s'", s->name);
	}
	rt->read = read;
	snprintf(rt->method, sizeof(rt->method), "%.*s",
	         (int)(strchr(route, ' ') - route), route);
	rt->desc = desc;
	rt->fn = fn;
	rt->arg = arg;
	s->n_routes++;
	return MESH_OK;
}

json_t *
mesh__routes_json(const struct mesh_service *s)
{
	json_t *a = json_array();

	for (size_t i = 0; a != NULL && i < s->n_routes; i++) {
		const struct route *rt = &s->routes[i];
		json_t *o = json_pack("{s:s, s:s}", "route", rt->key, "kind",
		                      rt->read ? "read" : "command");
		if (o != NULL && rt->desc != NULL) {
			json_object_set_new(o, "type",
			                    json_string(rt->desc->name));
		}
		json_array_append_new(a, o);
	}
	return a;
}

static const struct route *
route_find(const struct mesh_service *s, const char *key)
{
	for (size_t i = 0; i < s->n_routes; i++) {
		if (strcmp(s->routes[i].key, key) == 0) {
			return &s->routes[i];
		}
	}
	return NULL;
}

/* ---- the request -------------------------------------------------------- */

static const char *
hdr(natsMsg *m, const char *name)
{
	const char *v = NULL;

	return natsMsgHeader_Get(m, name, &v) == NATS_OK ? v : NULL;
}

const char *
mesh_request_route(const struct mesh_request *r)
{
	return r->rt->key;
}

const char *
mesh_request_method(const struct mesh_request *r)
{
	return r->method;
}

const char *
mesh_request_path(const struct mesh_request *r)
{
	return r->path;
}

const char *
mesh_request_query(const struct mesh_request *r)
{
	return r->query;
}

const char *
mesh_request_id(const struct mesh_request *r)
{
	return r->id;
}

const char *
mesh_request_idempotency_key(const struct mesh_request *r)
{
	return r->idem;
}

const char *
mesh_request_content_type(const struct mesh_request *r)
{
	return r->ctype;
}

const char *
mesh_request_param(const struct mesh_request *r, const char *name)
{
	char key[128];

	if ((size_t)snprintf(key, sizeof(key), MESH_REQUEST_PARAM_PREFIX "%s",
	                     name) >= sizeof(key)) {
		return NULL;
	}
	return hdr(r->m, key);
}

const char *
mesh_request_header(const struct mesh_request *r, const char *name)
{
	size_t pl = strlen(MESH_REQUEST_HEADER_PREFIX);

	for (int i = 0; i < r->n_keys; i++) {
		if (strncmp(r->keys[i], MESH_REQUEST_HEADER_PREFIX, pl) == 0 &&
		    strcasecmp(r->keys[i] + pl, name) == 0) {
			return hdr(r->m, r->keys[i]);
		}
	}
	return NULL;
}

const void *
mesh_request_body(const struct mesh_request *r, size_t *len)
{
	*len = r->len;
	return r->body;
}

const ProtobufCMessage *
mesh_request_message(const struct mesh_request *r)
{
	return r->msg;
}

const char *
mesh__request_log_id(const struct mesh_request *r)
{
	return r->id;
}

const char *
mesh__request_source(const struct mesh_request *r)
{
	return r->source;
}

void
mesh__request_trace(const struct mesh_request *r, char trace[33],
                    char span[17])
{
	mesh__trace_parse(r->traceparent,
	                  r->traceparent ? strlen(r->traceparent) : 0, trace,
	                  span);
}

/* ---- the reply ---------------------------------------------------------- */

static void
reply_reset(struct mesh_reply *rep)
{
	for (int i = 0; i < rep->n_hdr; i++) {
		free(rep->names[i]);
		free(rep->values[i]);
	}
	free(rep->ctype);
	free(rep->body);
	rep->n_hdr = 0;
	rep->ctype = NULL;
	rep->body = NULL;
	rep->len = 0;
	rep->status = 200;
}

mesh_err
mesh_reply_status(struct mesh_reply *rep, int status)
{
	if (status < 100 || status > 599) {
		return mesh_err_set(MESH_EINVAL,
		                    "reply status %d: want 100-599", status);
	}
	rep->status = status;
	return MESH_OK;
}

static bool
header_value_ok(const char *v)
{
	return strpbrk(v, "\r\n") == NULL;
}

mesh_err
mesh_reply_header(struct mesh_reply *rep, const char *name, const char *value)
{
	size_t n = name ? strlen(name) : 0;

	for (size_t i = 0; i < n; i++) {
		if (!isalnum((unsigned char)name[i]) && name[i] != '-') {
			n = 0;
		}
	}
	if (n == 0 || n > 128 || value == NULL || !header_value_ok(value)) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "reply header '%.128s': a name of 1-128 "
		        "[A-Za-z0-9-] and a value without CR or LF",
		        name ? name : "");
	}
	if (rep->n_hdr == REPLY_HEADERS_MAX) {
		return mesh_err_set(MESH_EINVAL,
		                    "reply header '%s': at most %d headers",
		                    name, REPLY_HEADERS_MAX);
	}
	rep->names[rep->n_hdr] = strdup(name);
	rep->values[rep->n_hdr] = strdup(value);
	if (rep->names[rep->n_hdr] == NULL ||
	    rep->values[rep->n_hdr] == NULL) {
		free(rep->names[rep->n_hdr]);
		free(rep->values[rep->n_hdr]);
		return mesh_err_set(MESH_ENOMEM, "reply header '%s'", name);
	}
	rep->n_hdr++;
	return MESH_OK;
}

mesh_err
mesh_reply_body(struct mesh_reply *rep, const char *content_type,
                const void *data, size_t len)
{
	const char *ct =
	        content_type ? content_type : "application/octet-stream";
	uint8_t *body = malloc(len ? len : 1);
	char *ctype;

	if (!header_value_ok(ct)) {
		free(body);
		return mesh_err_set(MESH_EINVAL,
		                    "reply content type '%s': CR or LF in it",
		                    ct);
	}
	if (body == NULL || (ctype = strdup(ct)) == NULL) {
		free(body);
		return mesh_err_set(MESH_ENOMEM, "reply body of %zu bytes",
		                    len);
	}
	if (len > 0) {
		memcpy(body, data, len);
	}
	free(rep->body);
	free(rep->ctype);
	rep->body = body;
	rep->len = len;
	rep->ctype = ctype;
	return MESH_OK;
}

/* j (taken) as the reply's JSON body with status. */
static mesh_err
reply_json_value(struct mesh_reply *rep, int status, json_t *j)
{
	char *text = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	mesh_err err;

	json_decref(j);
	if (text == NULL) {
		return mesh_err_set(MESH_ENOMEM, "reply body");
	}
	if ((err = mesh_reply_status(rep, status)) == MESH_OK) {
		err = mesh_reply_body(rep, "application/json", text,
		                      strlen(text));
	}
	free(text);
	return err;
}

mesh_err
mesh_reply_json(struct mesh_reply *rep, int status, const char *json)
{
	json_error_t je;
	json_t *j = json ? json_loads(json, JSON_DECODE_ANY, &je) : NULL;

	if (j == NULL) {
		return mesh_err_set(
		        MESH_EPARSE,
		        "reply body: not JSON: line %d column %d: %s",
		        json ? je.line : 0, json ? je.column : 0,
		        json ? je.text : "NULL");
	}
	json_decref(j);
	if (mesh_reply_status(rep, status) != MESH_OK) {
		return MESH_EINVAL;
	}
	return mesh_reply_body(rep, "application/json", json, strlen(json));
}

mesh_err
mesh_reply_message(struct mesh_reply *rep, int status,
                   const ProtobufCMessage *msg)
{
	json_t *j = NULL;
	mesh_err err = mesh_pbjson_decode(msg, &j);

	return err != MESH_OK ? err : reply_json_value(rep, status, j);
}

static mesh_err reply_verror(struct mesh_reply *rep, int status,
                             const char *fmt, va_list ap) MESH_PRINTF(3, 0);

static mesh_err
reply_verror(struct mesh_reply *rep, int status, const char *fmt, va_list ap)
{
	char msg[1024];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	mesh_text_clean(msg);
	reply_reset(rep);
	return reply_json_value(rep, status,
	                        json_pack("{s:s, s:s}", "message", msg,
	                                  "requestId", rep->request_id));
}

mesh_err
mesh_reply_error(struct mesh_reply *rep, int status, const char *fmt, ...)
{
	va_list ap;
	mesh_err err;

	va_start(ap, fmt);
	err = reply_verror(rep, status, fmt, ap);
	va_end(ap);
	return err;
}

/* The reply as a NATS message to the caller's inbox. */
static void
reply_send(struct mesh_service *s, natsMsg *m, const struct mesh_request *r,
           const struct mesh_reply *rep, bool replayed)
{
	const char *inbox = natsMsg_GetReply(m);
	bool head = r->method != NULL && strcmp(r->method, "HEAD") == 0;
	natsMsg *out = NULL;
	natsStatus st;
	char status[8], name[160];

	if (inbox == NULL || inbox[0] == '\0') {
		return; /* published without a reply inbox: nobody to tell */
	}
	snprintf(status, sizeof(status), "%d", rep->status);
	st = natsMsg_Create(&out, inbox, NULL, head ? NULL : (char *)rep->body,
	                    head ? 0 : (int)rep->len);
	if (st == NATS_OK) {
		st = natsMsgHeader_Set(out, MESH_REPLY_STATUS_HDR, status);
	}
	if (st == NATS_OK) {
		st = natsMsgHeader_Set(out, MESH_REQUEST_ID_HDR, r->id);
	}
	if (st == NATS_OK && rep->ctype != NULL) {
		st = natsMsgHeader_Set(out, MESH_REQUEST_CONTENT_TYPE_HDR,
		                       rep->ctype);
	}
	for (int i = 0; st == NATS_OK && i < rep->n_hdr; i++) {
		snprintf(name, sizeof(name), MESH_REQUEST_HEADER_PREFIX "%s",
		         rep->names[i]);
		st = natsMsgHeader_Add(out, name, rep->values[i]);
	}
	if (st == NATS_OK && replayed) {
		st = natsMsgHeader_Set(out, MESH_REPLY_REPLAYED_HDR, "true");
	}
	if (st == NATS_OK) {
		st = natsConnection_PublishMsg(mesh_conn_nats(s->c), out);
	}
	if (st != NATS_OK) {
		mesh__svc_log(s, "error", "request %s: reply not sent: %s",
		              r->id, natsStatus_GetText(st));
	}
	natsMsg_Destroy(out);
}

/* ---- recorded replies --------------------------------------------------- */

/* What a key's request was: its route, path, query and body. */
static void
fingerprint(const struct mesh_request *r, uint8_t fp[32])
{
	crypto_generichash_state h;
	const char *parts[] = {r->rt->key, r->path, r->query};

	crypto_generichash_init(&h, NULL, 0, 32);
	for (size_t i = 0; i < sizeof(parts) / sizeof(*parts); i++) {
		crypto_generichash_update(&h, (const uint8_t *)parts[i],
		                          strlen(parts[i]) + 1);
	}
	crypto_generichash_update(&h, r->body, r->len);
	crypto_generichash_final(&h, fp, 32);
}

/* A record: time ms (8), fingerprint (32), status (4), headers (4), each
 * name and value (4 + bytes each), content type (4 + bytes), body (4 +
 * bytes); lengths big-endian. */
static uint8_t *
record_pack(const struct mesh_reply *rep, int64_t now, const uint8_t fp[32],
            size_t *len)
{
	size_t n = 8 + 32 + 4 + 4 + 4 + 4 + rep->len, off = 0;
	uint8_t *buf;

	for (int i = 0; i < rep->n_hdr; i++) {
		n += 8 + strlen(rep->names[i]) + strlen(rep->values[i]);
	}
	n += rep->ctype ? strlen(rep->ctype) : 0;
	if ((buf = malloc(n)) == NULL) {
		return NULL;
	}
#define PUT_BYTES(p, l)                                                       \
	do {                                                                  \
		mesh__be32(buf + off, (uint32_t)(l));                         \
		memcpy(buf + off + 4, (p), (l));                              \
		off += 4 + (l);                                               \
	} while (0)
	mesh__be64(buf, (uint64_t)now);
	memcpy(buf + 8, fp, 32);
	mesh__be32(buf + 40, (uint32_t)rep->status);
	mesh__be32(buf + 44, (uint32_t)rep->n_hdr);
	off = 48;
	for (int i = 0; i < rep->n_hdr; i++) {
		PUT_BYTES(rep->names[i], strlen(rep->names[i]));
		PUT_BYTES(rep->values[i], strlen(rep->values[i]));
	}
	PUT_BYTES(rep->ctype ? rep->ctype : "",
	          rep->ctype ? strlen(rep->ctype) : 0);
	PUT_BYTES(rep->body ? (const void *)rep->body : "", rep->len);
#undef PUT_BYTES
	*len = off;
	return buf;
}

/* A length-prefixed string of a record at *off, as a new string. */
static char *
record_str(const MDB_val *v, size_t *off, size_t *len)
{
	const uint8_t *p = v->mv_data;
	char *out;

	if (*off + 4 > v->mv_size) {
		return NULL;
	}
	*len = mesh__from_be32(p + *off);
	if (*len > v->mv_size - *off - 4 || (out = malloc(*len + 1)) == NULL) {
		return NULL;
	}
	memcpy(out, p + *off + 4, *len);
	out[*len] = '\0';
	*off += 4 + *len;
	return out;
}

/* The reply a record holds into rep; false when it is not whole. */
static bool
record_unpack(const MDB_val *v, struct mesh_reply *rep)
{
	const uint8_t *p = v->mv_data;
	size_t off = 48, len;
	uint32_t n;

	if (v->mv_size < 48) {
		return false;
	}
	reply_reset(rep);
	rep->status = (int)mesh__from_be32(p + 40);
	n = mesh__from_be32(p + 44);
	for (uint32_t i = 0; i < n && i < REPLY_HEADERS_MAX; i++) {
		char *name = record_str(v, &off, &len);
		char *value = name ? record_str(v, &off, &len) : NULL;
		if (value == NULL) {
			free(name);
			return false;
		}
		rep->names[rep->n_hdr] = name;
		rep->values[rep->n_hdr++] = value;
	}
	if ((rep->ctype = record_str(v, &off, &len)) == NULL) {
		return false;
	}
	if (rep->ctype[0] == '\0') {
		free(rep->ctype);
		rep->ctype = NULL;
	}
	rep->body = (uint8_t *)record_str(v, &off, &rep->len);
	return rep->body != NULL;
}

static void
at_key(uint8_t *buf, int64_t when, const char *key, MDB_val *k)
{
	size_t kl = strlen(key);

	mesh__be64(buf, (uint64_t)when);
	memcpy(buf + 8, key, kl);
	k->mv_size = 8 + kl;
	k->mv_data = buf;
}

/* ---- serving ------------------------------------------------------------ */

/* The key a command's reply is recorded under; NULL: none (a request id
 * the runtime made up cannot come again). */
static const char *
replay_key(const struct mesh_request *r)
{
	return r->idem != NULL ? r->idem : r->id_given ? r->id : NULL;
}

static void
fail(struct mesh_ctx *ctx, struct mesh_reply *rep, const char *why)
{
	mesh_log(ctx, "error", "%s %s: %s (answered 500)", ctx->req->rt->key,
	         ctx->req->path, why);
	mesh_reply_error(rep, 500,
	                 "internal error; the service's log has it under "
	                 "request id %s",
	                 ctx->req->id);
}

/* The handler's outcome, checked: false after answering 500. */
static bool
handler_ran(struct mesh_ctx *ctx, struct mesh_reply *rep,
            mesh_handler_result res)
{
	char why[300];

	if (ctx->broken) {
		snprintf(why, sizeof(why), "state: %s",
		         mdb_strerror(ctx->broken));
	} else if (res == MESH_HANDLER_OK) {
		return true;
	} else {
		snprintf(why, sizeof(why), "handler failed: %s",
		         ctx->decided == MESH_HANDLER_REJECT ? ctx->reason
		         : res == MESH_HANDLER_RETRY ? "it asked to retry"
		                                     : "rejected");
	}
	fail(ctx, rep, why);
	return false;
}

static void
serve_read(struct mesh_ctx *ctx, struct mesh_reply *rep)
{
	const struct route *rt = ctx->req->rt;
	mesh_handler_result res;
	int rc;

	if ((rc = mdb_txn_begin(ctx->st->env, NULL, MDB_RDONLY, &ctx->txn)) !=
	    0) {
		fail(ctx, rep, mdb_strerror(rc));
		return;
	}
	ctx->read_only = true;
	res = rt->fn(ctx, ctx->req, rep, rt->arg);
	mdb_txn_abort(ctx->txn);
	ctx->txn = NULL;
	handler_ran(ctx, rep, res);
}

/* Whether key has a recorded reply in txn: rep then holds it, or a 422
 * when the key's request was another. When not, *expired_ms is the time
 * of an expired record to replace (else 0), and *rc an LMDB error (else
 * 0). */
static bool
recorded(struct mesh_ctx *ctx, MDB_txn *txn, const char *key,
         const uint8_t fp[32], struct mesh_reply *rep, int64_t *expired_ms,
         int *rc)
{
	struct mesh_service *s = ctx->s;
	MDB_val k = {strlen(key), (void *)key}, v;
	int64_t when;

	*expired_ms = 0;
	if ((*rc = mdb_get(txn, ctx->st->db_requests, &k, &v)) != 0) {
		*rc = *rc == MDB_NOTFOUND ? 0 : *rc;
		return false;
	}
	when = v.mv_size >= 8 ? (int64_t)mesh__from_be64(v.mv_data) : 0;
	if (when < mesh_wall_ms() - s->o.horizon_s * 1000) {
		*expired_ms = when;
		return false;
	}
	if (v.mv_size < 40 ||
	    sodium_memcmp(fp, (uint8_t *)v.mv_data + 8, 32) != 0) {
		mesh_reply_error(rep, 422,
		                 "%s '%s' was used with another request (its "
		                 "route, path, query or body differ); send a "
		                 "new request with a new key",
		                 ctx->req->idem ? MESH_REQUEST_IDEMPOTENCY_HDR
		                                : MESH_REQUEST_ID_HDR,
		                 key);
		return true;
	}
	if (!record_unpack(&v, rep)) {
		reply_reset(rep);
		mesh_reply_error(rep, 500,
		                 "the recorded reply of %s is unreadable",
		                 key);
		mesh_log(ctx, "error", "recorded reply of key '%s' unreadable",
		         key);
	}
	return true;
}

/* Record the reply under key in txn (replacing an expired record of
 * expired_ms). Returns 0 or the LMDB error (ENOMEM). */
static int
record(struct mesh_ctx *ctx, MDB_txn *txn, const char *key,
       const uint8_t fp[32], const struct mesh_reply *rep, int64_t expired_ms)
{
	struct store *st = ctx->st;
	uint8_t atbuf[8 + MESH_REQUEST_KEY_MAX];
	int64_t now = mesh_wall_ms();
	size_t len;
	uint8_t *rec = record_pack(rep, now, fp, &len);
	MDB_val k = {strlen(key), (void *)key}, v = {len, rec}, ak,
	        empty = {0, ""};
	int rc;

	if (rec == NULL) {
		return ENOMEM;
	}
	if (expired_ms != 0) {
		/* Else the old time's entry would expire the new record. */
		at_key(atbuf, expired_ms, key, &ak);
		if ((rc = mdb_del(txn, st->db_requests_at, &ak, NULL)) != 0 &&
		    rc != MDB_NOTFOUND) {
			free(rec);
			return rc;
		}
	}
	at_key(atbuf, now, key, &ak);
	if ((rc = mdb_put(txn, st->db_requests, &k, &v, 0)) == 0) {
		rc = mdb_put(txn, st->db_requests_at, &ak, &empty, 0);
	}
	free(rec);
	return rc;
}

/* A command: its own write transaction, committed before the reply.
 * Returns the outbox sequence to publish from after the reply (0:
 * nothing committed). */
static uint64_t
serve_command(struct mesh_ctx *ctx, struct mesh_reply *rep, bool *replayed)
{
	struct mesh_service *s = ctx->s;
	struct store *st = ctx->st;
	const struct route *rt = ctx->req->rt;
	const char *key = replay_key(ctx->req);
	uint8_t fp[32];
	int64_t expired_ms = 0;
	mesh_handler_result res;
	uint64_t from;
	int rc;

	fingerprint(ctx->req, fp);
	if ((rc = mdb_txn_begin(st->env, NULL, 0, &ctx->txn)) != 0) {
		fail(ctx, rep, mdb_strerror(rc));
		return 0;
	}
	rc = 0;
	if (key != NULL &&
	    recorded(ctx, ctx->txn, key, fp, rep, &expired_ms, &rc)) {
		mdb_txn_abort(ctx->txn);
		*replayed = rep->status != 422;
		return 0;
	}
	if (rc != 0) {
		mdb_txn_abort(ctx->txn);
		fail(ctx, rep, mdb_strerror(rc));
		return 0;
	}
	from = mesh__outbox_last(&st->outbox, ctx->txn) + 1;
	mesh__undo_clear(ctx->undo);
	res = rt->fn(ctx, ctx->req, rep, rt->arg);
	if (!handler_ran(ctx, rep, res)) {
		mdb_txn_abort(ctx->txn);
		return 0;
	}
	if ((rc = mesh__expire(ctx->txn, st->db_requests, st->db_requests_at,
	                       mesh_wall_ms() - s->o.horizon_s * 1000,
	                       EXPIRE_PER_COMMAND, &ctx->undo->note)) == 0 &&
	    (rc = mesh__outbox_forget(&st->outbox, ctx->txn)) == 0 &&
	    key != NULL) {
		rc = record(ctx, ctx->txn, key, fp, rep, expired_ms);
	}
	if (rc == 0) {
		rc = mdb_txn_commit(ctx->txn);
	} else {
		mdb_txn_abort(ctx->txn);
	}
	ctx->txn = NULL;
	if (rc != 0) {
		fail(ctx, rep, mdb_strerror(rc));
		return 0;
	}
	return from;
}

/* The body as the route's message; false after answering 400. */
static bool
decode_body(struct mesh_request *r, struct mesh_reply *rep)
{
	const ProtobufCMessageDescriptor *desc = r->rt->desc;
	json_error_t je;
	json_t *j;

	if (desc == NULL) {
		return true;
	}
	if (r->len == 0) {
		mesh_reply_error(rep, 400,
		                 "body: a JSON object of %s is required",
		                 desc->name);
		return false;
	}
	if ((j = json_loadb((const char *)r->body, r->len,
	                    JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je)) ==
	    NULL) {
		mesh_reply_error(rep, 400,
		                 "body: not JSON: line %d column %d: %s",
		                 je.line, je.column, je.text);
		return false;
	}
	if (mesh_pbjson_encode(desc, j, &r->msg) != MESH_OK) {
		mesh_reply_error(rep, 400, "body is not a valid %s: %s",
		                 desc->name, mesh_errdetail());
		json_decref(j);
		return false;
	}
	json_decref(j);
	return true;
}

/* What the request says: false after answering 400 or 404. */
static bool
request_parse(struct mesh_service *s, struct mesh_request *r,
              struct mesh_reply *rep)
{
	const char *route = hdr(r->m, MESH_REQUEST_ROUTE_HDR);
	uint8_t rnd[12];

	r->id = hdr(r->m, MESH_REQUEST_ID_HDR);
	r->id_given = r->id != NULL && r->id[0] != '\0' &&
	              strlen(r->id) <= MESH_REQUEST_KEY_MAX;
	if (!r->id_given) {
		randombytes_buf(rnd, sizeof(rnd));
		memcpy(r->id_buf, "req-", 4);
		sodium_bin2hex(r->id_buf + 4, sizeof(r->id_buf) - 4, rnd,
		               sizeof(rnd));
	}
	if (r->id != NULL && !r->id_given) {
		r->id = rep->request_id = r->id_buf;
		mesh_reply_error(rep, 400, "header %s: 1-%d bytes, not %zu",
		                 MESH_REQUEST_ID_HDR, MESH_REQUEST_KEY_MAX,
		                 strlen(hdr(r->m, MESH_REQUEST_ID_HDR)));
		return false;
	}
	r->id = rep->request_id = r->id_given ? r->id : r->id_buf;
	r->idem = hdr(r->m, MESH_REQUEST_IDEMPOTENCY_HDR);
	r->method = hdr(r->m, MESH_REQUEST_METHOD_HDR);
	r->path = hdr(r->m, MESH_REQUEST_PATH_HDR);
	r->query = hdr(r->m, MESH_REQUEST_QUERY_HDR);
	r->ctype = hdr(r->m, MESH_REQUEST_CONTENT_TYPE_HDR);
	r->traceparent = hdr(r->m, MESH_REQUEST_TRACEPARENT_HDR);
	r->body = (const uint8_t *)natsMsg_GetData(r->m);
	r->len = (size_t)natsMsg_GetDataLength(r->m);
	r->body = r->body ? r->body : (const uint8_t *)"";
	r->path = r->path ? r->path : "";
	r->query = r->query ? r->query : "";
	r->ctype = r->ctype ? r->ctype : "";
	natsMsgHeader_Keys(r->m, &r->keys, &r->n_keys);
	if (r->idem != NULL &&
	    (r->idem[0] == '\0' || strlen(r->idem) > MESH_REQUEST_KEY_MAX)) {
		mesh_reply_error(rep, 400, "header %s: 1-%d bytes, not %zu",
		                 MESH_REQUEST_IDEMPOTENCY_HDR,
		                 MESH_REQUEST_KEY_MAX, strlen(r->idem));
		return false;
	}
	if (route == NULL) {
		mesh_reply_error(rep, 400,
		                 "header %s is missing: the route key, as "
		                 "'GET /orders/{id}'",
		                 MESH_REQUEST_ROUTE_HDR);
		return false;
	}
	if ((r->rt = route_find(s, route)) == NULL) {
		mesh_reply_error(rep, 404,
		                 "service '%s' has no handler for route '%s'",
		                 s->name, route);
		return false;
	}
	snprintf(r->source, sizeof(r->source), "request:%s", r->rt->key);
	r->method = r->method ? r->method : r->rt->method;
	for (const char *p = strchr(r->rt->key, '{'); p != NULL;
	     p = strchr(p + 1, '{')) {
		char name[64];
		snprintf(name, sizeof(name), "%.*s",
		         (int)(strchr(p, '}') - p - 1), p + 1);
		if (mesh_request_param(r, name) == NULL) {
			mesh_reply_error(
			        rep, 400,
			        "path parameter '%s' of route '%s' is "
			        "missing (header " MESH_REQUEST_PARAM_PREFIX
			        "%s)",
			        name, r->rt->key, name);
			return false;
		}
	}
	return decode_body(r, rep);
}

/* One request, answered. */
static void
serve(struct mesh_service *s, struct store *st, natsMsg *m,
      struct mesh__undo *undo)
{
	struct mesh_request r = {.m = m};
	struct mesh_reply rep = {.status = 200};
	struct mesh_ctx ctx = {.s = s, .st = st, .req = &r, .undo = undo};
	bool replayed = false;
	uint64_t from = 0;
	int64_t t0 = mesh__mono_ns();

	if (request_parse(s, &r, &rep)) {
		if (r.rt->read) {
			serve_read(&ctx, &rep);
		} else {
			from = serve_command(&ctx, &rep, &replayed);
		}
	}
	reply_send(s, m, &r, &rep, replayed);
	mesh__stats_record(&s->stats.request, mesh__mono_ns() - t0);
	atomic_fetch_add(&s->stats.requests, 1);
	if (replayed) {
		atomic_fetch_add(&s->stats.requests_replayed, 1);
	}
	if (rep.status >= 500) {
		atomic_fetch_add(&s->stats.requests_5xx, 1);
	}
	if (from != 0) {
		/* Committed: what it emitted goes out now (or at the next
		 * flush, should this fail). */
		mesh__outbox_flush(&st->outbox, from);
	}
	if (r.msg != NULL) {
		protobuf_c_message_free_unpacked(r.msg, NULL);
	}
	free((void *)r.keys);
	reply_reset(&rep);
}

/* A request the instance cannot take (stopping, too many queued). */
static void
busy(struct mesh_service *s, natsMsg *m, const char *why)
{
	struct mesh_request r = {.m = m};
	struct mesh_reply rep = {.status = 503};
	const char *id = hdr(m, MESH_REQUEST_ID_HDR);

	r.id = rep.request_id = id ? id : "";
	mesh_reply_error(&rep, 503, "service '%s': %s", s->name, why);
	reply_send(s, m, &r, &rep, false);
	reply_reset(&rep);
}

static void
on_request(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
	struct mesh_service *s = arg;
	struct mesh__requests *q = &s->req;
	bool taken = false;

	(void)nc;
	(void)sub;
	pthread_mutex_lock(&q->mu);
	if (!q->quit && q->n < q->cap) {
		q->q[(q->head + q->n) % q->cap] = m;
		q->n++;
		taken = true;
		atomic_fetch_add(&s->stats.requests_waiting, 1);
		pthread_cond_signal(&q->cv);
	}
	pthread_mutex_unlock(&q->mu);
	if (!taken) {
		busy(s, m,
		     q->quit ? "the instance is stopping"
		             : "too many requests queued at the instance");
		natsMsg_Destroy(m);
	}
}

static void *
request_thread(void *arg)
{
	struct mesh_service *s = arg;
	struct mesh__requests *q = &s->req;
	struct mesh__undo undo = {0};
	natsMsg *m;

	pthread_setname_np(pthread_self(), "mesh-request");
	for (;;) {
		pthread_mutex_lock(&q->mu);
		while (q->n == 0 && !q->quit) {
			pthread_cond_wait(&q->cv, &q->mu);
		}
		if (q->n == 0) {
			pthread_mutex_unlock(&q->mu);
			break;
		}
		m = q->q[q->head];
		q->head = (q->head + 1) % q->cap;
		q->n--;
		pthread_mutex_unlock(&q->mu);
		serve(s, q->st, m, &undo);
		natsMsg_Destroy(m);
		atomic_fetch_sub(&s->stats.requests_waiting, 1);
	}
	mesh__undo_fini(&undo);
	return NULL;
}

mesh_err
mesh__requests_start(struct mesh_service *s, struct store *st)
{
	struct mesh__requests *q = &s->req;
	char subject[MESH_SERVICE_NAME_MAX + 32];
	natsStatus ns;

	if (s->n_routes == 0) {
		return MESH_OK;
	}
	memset(q, 0, sizeof(*q));
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->cv, NULL);
	q->st = st;
	q->cap = QUEUE_MAX;
	if ((q->q = calloc(q->cap, sizeof(*q->q))) == NULL) {
		return mesh_err_set(MESH_ENOMEM, "service '%s': requests",
		                    s->name);
	}
	for (int i = 0; i < s->o.request_threads; i++) {
		if (pthread_create(&q->threads[q->n_threads], NULL,
		                   request_thread, s) == 0) {
			q->n_threads++;
		}
	}
	snprintf(subject, sizeof(subject), MESH_SERVICE_REQUEST_SUBJECT,
	         s->name);
	ns = natsConnection_QueueSubscribe(&q->sub, mesh_conn_nats(s->c),
	                                   subject, MESH_SERVICE_REQUEST_QUEUE,
	                                   on_request, s);
	if (ns != NATS_OK) {
		return mesh_err_nats(ns, 0, "service '%s': subscribing to %s",
		                     s->name, subject);
	}
	return MESH_OK;
}

void
mesh__requests_stop(struct mesh_service *s)
{
	struct mesh__requests *q = &s->req;

	if (q->q == NULL) {
		return;
	}
	if (q->sub != NULL) {
		/* What the server sent before it heard is still served. */
		natsSubscription_Drain(q->sub);
		natsSubscription_WaitForDrainCompletion(q->sub, 5000);
		natsSubscription_Destroy(q->sub);
		q->sub = NULL;
	}
	pthread_mutex_lock(&q->mu);
	q->quit = true;
	pthread_cond_broadcast(&q->cv);
	pthread_mutex_unlock(&q->mu);
	for (int i = 0; i < q->n_threads; i++) {
		pthread_join(q->threads[i], NULL);
	}
	free(q->q);
	q->q = NULL;
	q->n_threads = 0;
	pthread_mutex_destroy(&q->mu);
	pthread_cond_destroy(&q->cv);
}
