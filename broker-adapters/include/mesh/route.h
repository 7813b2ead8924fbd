/* HTTP routes: what mesh-gateway answers (API Gateway's routes).
 *
 * A route is a method (GET, POST, PUT, PATCH, DELETE or ANY), a path
 * template and a target:
 *   queue:NAME    the request body becomes an event sent to the queue;
 *   topic:NAME    ... published to the topic;
 *   service:NAME  a synchronous request to the service (NATS request on
 *                 MESH_SERVICE_REQUEST_SUBJECT, the protocol below).
 * Optionally a protobuf type (a full name in the schema registry): the
 * body is JSON, encoded to that type (checked, for a service); and up to
 * MESH_ROUTE_HEADERS_MAX HTTP header names whose values are forwarded
 * (message attributes of an event; Mesh-Header-NAME on a request).
 *
 * A path template is '/' alone or '/'-separated segments, each a literal
 * (A-Z a-z 0-9 and - . _ ~ ! $ & ' ( ) * + , ; = : @, not "." or ".."),
 * a parameter "{name}" (name: a letter or '_', then letters, digits, '_';
 * at most 64) matching one non-empty segment, or, last only, a greedy
 * "{name+}" matching the rest of the path (one segment or more). Path
 * parameters and forwarded headers are at most 10 together (an event's
 * message attributes are).
 *
 * A route's key is "METHOD TEMPLATE" ("GET /orders/{id}"). Its definition
 * is a record in the key-value bucket MESH_ROUTES (file storage, the
 * mesh's replicas, made when missing), under mesh_route_kv_key(), a JSON
 * document:
 *   {"method", "path", "target", "type" (absent: raw), "headers": [...],
 *    "created_ms", "updated_ms"}
 * mesh-gateway watches the bucket: changes apply without a restart.
 *
 * When more than one route's template matches a path, the most specific
 * wins: segment by segment, a literal before a parameter before a greedy
 * one; a route of the request's method before an ANY route.
 *
 * Thread safety: the pure calls (templates, matching, codec) share no
 * state; the bucket calls may be made from any thread.
 */
#ifndef MESH_ROUTE_H
#define MESH_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mesh/conn.h"
#include "mesh/err.h"

#define MESH_ROUTES_BUCKET         "MESH_ROUTES"
#define MESH_ROUTE_PATH_MAX        512
#define MESH_ROUTE_SEGMENTS_MAX    32
#define MESH_ROUTE_PARAM_NAME_MAX  64
#define MESH_ROUTE_ATTRS_MAX       10 /* path params + headers */
#define MESH_ROUTE_HEADERS_MAX     10
#define MESH_ROUTE_HEADER_NAME_MAX 64
#define MESH_ROUTE_TARGET_MAX      96 /* "service:" + a name */
#define MESH_ROUTE_TYPE_MAX        256
#define MESH_ROUTE_KEY_MAX         (8 + MESH_ROUTE_PATH_MAX)
/* The KV key: every byte outside [A-Za-z0-9/_-] as "=XX". */
#define MESH_ROUTE_KV_KEY_MAX (8 + 3 * MESH_ROUTE_PATH_MAX)

/* The service request protocol (mesh-gateway to a service's instances,
 * which subscribe in queue group MESH_SERVICE_REQUEST_GROUP). Request
 * headers: Mesh-Route (the route's key), Mesh-Method, Mesh-Path,
 * Mesh-Query (raw, when there is one), Mesh-Param-NAME (percent-decoded),
 * Mesh-Request-Id, Idempotency-Key (when the client sent one),
 * traceparent, Content-Type, Mesh-Header-NAME; the body is the raw HTTP
 * body. Reply headers: Mesh-Status (the HTTP status), Content-Type,
 * Mesh-Request-Id, Mesh-Header-NAME (copied to the HTTP response); the
 * body is the response body. */
#define MESH_SERVICE_REQUEST_SUBJECT "mesh.service.%s.request"
#define MESH_SERVICE_REQUEST_GROUP   "mesh-request"

/* Methods, as a bit mask (an Allow header is a set of them). */
enum {
	MESH_ROUTE_GET = 1 << 0,
	MESH_ROUTE_POST = 1 << 1,
	MESH_ROUTE_PUT = 1 << 2,
	MESH_ROUTE_PATCH = 1 << 3,
	MESH_ROUTE_DELETE = 1 << 4,
	MESH_ROUTE_ANY = 0x1f,
};

typedef enum {
	MESH_ROUTE_QUEUE = 1,
	MESH_ROUTE_TOPIC,
	MESH_ROUTE_SERVICE,
} mesh_route_kind;

enum { MESH_SEG_LITERAL = 0, MESH_SEG_PARAM, MESH_SEG_GREEDY };

/* A parsed template: segments as offsets into text (a literal's text, a
 * parameter's name without braces and '+'). */
struct mesh_route_tmpl {
	char text[MESH_ROUTE_PATH_MAX + 1];
	size_t n_segs;
	size_t n_params;
	struct {
		uint8_t kind; /* MESH_SEG_* */
		uint16_t off, len;
	} seg[MESH_ROUTE_SEGMENTS_MAX];
};

/* Parse a template (len bytes, not necessarily NUL-terminated). Errors:
 * MESH_EINVAL, the detail naming the template and the fault ("path
 * '/a/{b': segment 2: '{' without '}'"). *t is written on success only. */
mesh_err mesh_route_tmpl_parse(const char *path, size_t len,
                               struct mesh_route_tmpl *t);

/* Whether two templates match the same paths alike (the same segments,
 * parameters in the same places, whatever their names). */
bool mesh_route_tmpl_same(const struct mesh_route_tmpl *a,
                          const struct mesh_route_tmpl *b);

/* The path parameters of a match: names borrowed from the template,
 * values percent-decoded into buf. */
struct mesh_route_match {
	size_t n;
	struct {
		const char *name; /* not terminated: name_len bytes */
		size_t name_len;
		const char *value; /* NUL-terminated, in buf */
	} param[MESH_ROUTE_SEGMENTS_MAX];
	char buf[MESH_ROUTE_PATH_MAX + MESH_ROUTE_SEGMENTS_MAX + 1];
};

/* Whether the raw request path (len bytes, without the query; one
 * trailing '/' ignored) matches t; on a match, fills *m. A parameter
 * whose value has a malformed %-escape, or decodes to a NUL, does not
 * match. Paths longer than MESH_ROUTE_PATH_MAX match nothing. */
bool mesh_route_tmpl_match(const struct mesh_route_tmpl *t, const char *path,
                           size_t len, struct mesh_route_match *m);

/* < 0 when a is more specific than b, 0 alike, > 0 less. */
int mesh_route_tmpl_cmp(const struct mesh_route_tmpl *a,
                        const struct mesh_route_tmpl *b);

/* A method's bit (upper case names; "ANY" all), 0 when unknown. */
unsigned mesh_route_method_bit(const char *method);

/* ---- route definitions --------------------------------------------------
 */

struct mesh_route {
	char method[8];                     /* GET ... ANY */
	char path[MESH_ROUTE_PATH_MAX + 1]; /* the template */
	char target[MESH_ROUTE_TARGET_MAX +
	            1];                     /* queue:|topic:|service:NAME */
	char type[MESH_ROUTE_TYPE_MAX + 1]; /* "" raw */
	char headers[MESH_ROUTE_HEADERS_MAX][MESH_ROUTE_HEADER_NAME_MAX + 1];
	size_t n_headers;
	int64_t created_ms, updated_ms; /* Unix ms; set by mesh_route_put */
	uint64_t revision;              /* the record's */
	/* Set by mesh_route_check and decode: */
	struct mesh_route_tmpl tmpl;
	unsigned methods; /* MESH_ROUTE_* bits */
	mesh_route_kind kind;
};

void mesh_route_init(struct mesh_route *r);

/* Whether r can be stored; fills tmpl, methods and kind.
 * Errors: MESH_EINVAL, the detail naming the route, the field and the
 * value ("route 'GET /x': method 'FETCH': want GET, POST, PUT, PATCH,
 * DELETE or ANY"); MESH_ENOTFOUND for a type not in the schema
 * registry. */
mesh_err mesh_route_check(struct mesh_route *r);

/* The target's name (after "queue:" ...), borrowed from r. */
const char *mesh_route_target_name(const struct mesh_route *r);

/* "METHOD TEMPLATE" into key (MESH_ROUTE_KEY_MAX + 1 bytes). */
void mesh_route_key(const struct mesh_route *r, char *key);
/* The bucket's key of a route into out (MESH_ROUTE_KV_KEY_MAX + 1). */
void mesh_route_kv_key(const char *method, const char *path, char *out);

/* Whether a and b (both checked) would answer the same requests: their
 * methods overlap (ANY overlaps every method) and their templates are
 * the same (mesh_route_tmpl_same). */
bool mesh_route_conflicts(const struct mesh_route *a,
                          const struct mesh_route *b);

/* The most specific of n routes (checked) for method and the raw path:
 * its index, *m its parameters; -1 when none fits, *allow then the
 * methods of the routes whose template matched the path (0: the path
 * matched none: 404; else 405). */
int mesh_route_select(const struct mesh_route *const *routes, size_t n,
                      const char *method, const char *path, size_t len,
                      struct mesh_route_match *m, unsigned *allow);

/* The record as JSON (malloc'ed, NUL-terminated; free()) and back.
 * decode checks as mesh_route_check does, damaged records refused.
 * Errors: MESH_EINVAL (the detail names the field), MESH_ENOTFOUND (an
 * unknown type), MESH_ENOMEM. *r is written on success only. */
mesh_err mesh_route_encode(const struct mesh_route *r, char **json);
mesh_err mesh_route_decode(const char *json, size_t len, struct mesh_route *r);

/* Store a new route: checked; refused when its key is taken (MESH_EEXIST)
 * or it conflicts with another route (MESH_EEXIST, naming it), and when
 * its target queue or topic does not exist (MESH_ENOTFOUND). Sets
 * created_ms, updated_ms, revision. Errors: those, MESH_EINVAL, the
 * connection's. */
mesh_err mesh_route_put(struct mesh_conn *c, struct mesh_route *r);

/* A route by method and template. Errors: MESH_EINVAL, MESH_ENOTFOUND,
 * MESH_EBROKER (a damaged record), the connection's. */
mesh_err mesh_route_get(struct mesh_conn *c, const char *method,
                        const char *path, struct mesh_route *out);

/* Every route, by key (malloc'ed array: free()). A damaged record is
 * left out and counted in *damaged (may be NULL). Errors: the
 * connection's, MESH_ENOMEM. */
mesh_err mesh_route_list(struct mesh_conn *c, struct mesh_route **out,
                         size_t *n, size_t *damaged);

/* Errors: MESH_EINVAL, MESH_ENOTFOUND, the connection's. */
mesh_err mesh_route_delete(struct mesh_conn *c, const char *method,
                           const char *path);

/* The bucket, made when missing (mesh-gateway watches it); destroy with
 * kvStore_Destroy. Errors: the connection's. */
mesh_err mesh_route_bucket(struct mesh_conn *c, kvStore **kv);

#endif
