/* route.c: HTTP routes (mesh/route.h): path templates and their matching,
 * and the records of the key-value bucket MESH_ROUTES that mesh-gateway
 * watches. */
#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mesh/queue.h"
#include "mesh/route.h"
#include "mesh/topic.h"
#include "mesh/wire.h"
#include "mesh_schemas.h"

#define MAX_RECORD 16384

/* ---- templates -----------------------------------------------------------
 */

static bool
literal_char(unsigned char ch)
{
	return isalnum(ch) || (ch != '\0' && strchr("-._~!$&'()*+,;=:@", ch));
}

static bool
name_char(unsigned char ch, bool first)
{
	return (ch < 0x80 && isalpha(ch)) || ch == '_' ||
	       (!first && ch < 0x80 && isdigit(ch));
}

static mesh_err
tmpl_fault(const char *path, size_t len, size_t seg, const char *fault)
{
	return mesh_err_set(MESH_EINVAL, "path '%.*s': segment %zu: %s",
	                    (int)(len > 200 ? 200 : len), path, seg, fault);
}

mesh_err
mesh_route_tmpl_parse(const char *path, size_t len,
                      struct mesh_route_tmpl *out)
{
	struct mesh_route_tmpl t;
	size_t i = 1;

	if (len == 0 || path[0] != '/') {
		return mesh_err_set(MESH_EINVAL,
		                    "path '%.*s': must start with '/'",
		                    (int)(len > 200 ? 200 : len), path);
	}
	if (len > MESH_ROUTE_PATH_MAX || memchr(path, '\0', len) != NULL) {
		return mesh_err_set(MESH_EINVAL,
		                    "path '%.200s...': longer than %d bytes",
		                    path, MESH_ROUTE_PATH_MAX);
	}
	memset(&t, 0, sizeof(t));
	memcpy(t.text, path, len);
	while (len > 1 && i <= len) {
		size_t end = i, n = t.n_segs + 1;
		while (end < len && path[end] != '/') {
			end++;
		}
		if (end == i) {
			return tmpl_fault(path, len, n,
			                  "empty (a '//' or a "
			                  "trailing '/')");
		}
		if (t.n_segs == MESH_ROUTE_SEGMENTS_MAX) {
			return mesh_err_set(MESH_EINVAL,
			                    "path '%.200s': more than %d "
			                    "segments",
			                    t.text, MESH_ROUTE_SEGMENTS_MAX);
		}
		if (t.n_segs > 0 &&
		    t.seg[t.n_segs - 1].kind == MESH_SEG_GREEDY) {
			return tmpl_fault(
			        path, len, n - 1,
			        "a greedy '{name+}' must be the last");
		}
		if (path[i] == '{') {
			bool greedy = end - i > 2 && path[end - 2] == '+';
			size_t nb = i + 1, ne = end - 1 - (greedy ? 1 : 0);
			if (path[end - 1] != '}' || end - i < 3) {
				return tmpl_fault(
				        path, len, n,
				        "'{' without a name and '}'");
			}
			if (ne - nb > MESH_ROUTE_PARAM_NAME_MAX) {
				return tmpl_fault(
				        path, len, n,
				        "a parameter name longer than "
				        "64");
			}
			for (size_t k = nb; k < ne; k++) {
				if (!name_char((unsigned char)path[k],
				               k == nb)) {
					return tmpl_fault(
					        path, len, n,
					        "a parameter name is a letter "
					        "or '_', then letters, digits "
					        "or '_'");
				}
			}
			for (size_t s = 0; s < t.n_segs; s++) {
				if (t.seg[s].kind != MESH_SEG_LITERAL &&
				    t.seg[s].len == ne - nb &&
				    memcmp(t.text + t.seg[s].off, path + nb,
				           ne - nb) == 0) {
					return tmpl_fault(path, len, n,
					                  "a parameter named "
					                  "twice");
				}
			}
			t.seg[t.n_segs].kind =
			        greedy ? MESH_SEG_GREEDY : MESH_SEG_PARAM;
			t.seg[t.n_segs].off = (uint16_t)nb;
			t.seg[t.n_segs].len = (uint16_t)(ne - nb);
			t.n_params++;
		} else {
			for (size_t k = i; k < end; k++) {
				if (!literal_char((unsigned char)path[k])) {
					return tmpl_fault(
					        path, len, n,
					        path[k] == '{' ||
					                        path[k] == '}'
					                ? "a parameter must "
					                  "be a "
					                  "whole segment"
					                : "a character "
					                  "outside "
					                  "A-Z a-z 0-9 "
					                  "-._~!$&'()*+,;=:@");
				}
			}
			if ((end - i == 1 && path[i] == '.') ||
			    (end - i == 2 && path[i] == '.' &&
			     path[i + 1] == '.')) {
				return tmpl_fault(path, len, n,
				                  "'.' and '..' are not "
				                  "segments");
			}
			t.seg[t.n_segs].kind = MESH_SEG_LITERAL;
			t.seg[t.n_segs].off = (uint16_t)i;
			t.seg[t.n_segs].len = (uint16_t)(end - i);
		}
		t.n_segs++;
		i = end + 1;
	}
	if (t.n_params > MESH_ROUTE_ATTRS_MAX) {
		return mesh_err_set(MESH_EINVAL,
		                    "path '%.200s': more than %d parameters",
		                    t.text, MESH_ROUTE_ATTRS_MAX);
	}
	*out = t;
	return MESH_OK;
}

bool
mesh_route_tmpl_same(const struct mesh_route_tmpl *a,
                     const struct mesh_route_tmpl *b)
{
	if (a->n_segs != b->n_segs) {
		return false;
	}
	for (size_t i = 0; i < a->n_segs; i++) {
		if (a->seg[i].kind != b->seg[i].kind) {
			return false;
		}
		if (a->seg[i].kind == MESH_SEG_LITERAL &&
		    (a->seg[i].len != b->seg[i].len ||
		     memcmp(a->text + a->seg[i].off, b->text + b->seg[i].off,
		            a->seg[i].len) != 0)) {
			return false;
		}
	}
	return true;
}

int
mesh_route_tmpl_cmp(const struct mesh_route_tmpl *a,
                    const struct mesh_route_tmpl *b)
{
	size_t n = a->n_segs < b->n_segs ? a->n_segs : b->n_segs;

	for (size_t i = 0; i < n; i++) {
		if (a->seg[i].kind != b->seg[i].kind) {
			return a->seg[i].kind < b->seg[i].kind ? -1 : 1;
		}
	}
	return a->n_segs == b->n_segs ? 0 : a->n_segs > b->n_segs ? -1 : 1;
}

static int
hexval(unsigned char ch)
{
	if (ch >= '0' && ch <= '9') {
		return ch - '0';
	}
	ch = (unsigned char)tolower(ch);
	return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* Percent-decode src (n bytes) to dst (room for n + 1); false on a
 * malformed escape or a NUL. */
static bool
pct_decode(const char *src, size_t n, char *dst)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		int hi, lo;
		if (src[i] != '%') {
			if (src[i] == '\0') {
				return false;
			}
			dst[o++] = src[i];
			continue;
		}
		if (i + 2 >= n) {
			return false;
		}
		hi = hexval((unsigned char)src[i + 1]);
		lo = hexval((unsigned char)src[i + 2]);
		if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
			return false;
		}
		dst[o++] = (char)(hi * 16 + lo);
		i += 2;
	}
	dst[o] = '\0';
	return true;
}

bool
mesh_route_tmpl_match(const struct mesh_route_tmpl *t, const char *path,
                      size_t len, struct mesh_route_match *m)
{
	size_t i = 1, used = 0;

	if (len == 0 || path[0] != '/' || len > MESH_ROUTE_PATH_MAX) {
		return false;
	}
	if (len > 1 && path[len - 1] == '/') {
		len--;
	}
	m->n = 0;
	for (size_t s = 0; s < t->n_segs; s++) {
		size_t end = i;
		if (i > len) {
			return false; /* the path is shorter */
		}
		if (t->seg[s].kind == MESH_SEG_GREEDY) {
			end = len;
		} else {
			while (end < len && path[end] != '/') {
				end++;
			}
		}
		if (end == i) {
			return false;
		}
		if (t->seg[s].kind == MESH_SEG_LITERAL) {
			if (end - i != t->seg[s].len ||
			    memcmp(path + i, t->text + t->seg[s].off,
			           t->seg[s].len) != 0) {
				return false;
			}
		} else {
			if (!pct_decode(path + i, end - i, m->buf + used)) {
				return false;
			}
			m->param[m->n].name = t->text + t->seg[s].off;
			m->param[m->n].name_len = t->seg[s].len;
			m->param[m->n].value = m->buf + used;
			m->n++;
			used += strlen(m->buf + used) + 1;
		}
		i = end + 1;
	}
	/* Every byte of the path used: "/" for no segments, else the last
	 * segment ended at len. */
	return t->n_segs == 0 ? len == 1 : i == len + 1;
}

unsigned
mesh_route_method_bit(const char *method)
{
	static const struct {
		const char *name;
		unsigned bit;
	} m[] = {
	        {"GET", MESH_ROUTE_GET},       {"POST", MESH_ROUTE_POST},
	        {"PUT", MESH_ROUTE_PUT},       {"PATCH", MESH_ROUTE_PATCH},
	        {"DELETE", MESH_ROUTE_DELETE}, {"ANY", MESH_ROUTE_ANY},
	};

	for (size_t i = 0; method != NULL && i < sizeof(m) / sizeof(m[0]);
	     i++) {
		if (strcmp(method, m[i].name) == 0) {
			return m[i].bit;
		}
	}
	return 0;
}

int
mesh_route_select(const struct mesh_route *const *routes, size_t n,
                  const char *method, const char *path, size_t len,
                  struct mesh_route_match *m, unsigned *allow)
{
	unsigned bit = mesh_route_method_bit(method);
	struct mesh_route_match tmp;
	int best = -1;

	*allow = 0;
	if (bit == MESH_ROUTE_ANY) {
		bit = 0; /* "ANY" is no HTTP method */
	}
	for (size_t i = 0; i < n; i++) {
		const struct mesh_route *r = routes[i];
		int cmp;
		if (!mesh_route_tmpl_match(&r->tmpl, path, len, &tmp)) {
			continue;
		}
		*allow |= r->methods;
		if ((r->methods & bit) == 0) {
			continue;
		}
		cmp = best < 0 ? -1
		               : mesh_route_tmpl_cmp(&r->tmpl,
		                                     &routes[best]->tmpl);
		/* Alike: the method's own route before ANY. */
		if (cmp < 0 || (cmp == 0 && r->methods != MESH_ROUTE_ANY &&
		                routes[best]->methods == MESH_ROUTE_ANY)) {
			best = (int)i;
		}
	}
	/* Matched again into *m: tmp's values point into tmp's buf. */
	if (best >= 0) {
		mesh_route_tmpl_match(&routes[best]->tmpl, path, len, m);
	}
	return best;
}

/* ---- definitions ---------------------------------------------------------
 */

void
mesh_route_init(struct mesh_route *r)
{
	memset(r, 0, sizeof(*r));
}

void
mesh_route_key(const struct mesh_route *r, char *key)
{
	snprintf(key, MESH_ROUTE_KEY_MAX + 1, "%s %s", r->method, r->path);
}

void
mesh_route_kv_key(const char *method, const char *path, char *out)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (const char *p = method; *p != '\0' && o < 8; p++) {
		out[o++] = isalnum((unsigned char)*p) ? *p : '_';
	}
	out[o++] = '.';
	for (const unsigned char *p = (const unsigned char *)path;
	     *p != '\0' && o + 3 < MESH_ROUTE_KV_KEY_MAX; p++) {
		if (isalnum(*p) || *p == '/' || *p == '_' || *p == '-') {
			out[o++] = (char)*p;
		} else {
			out[o++] = '=';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
	}
	out[o] = '\0';
}

static bool
header_name_valid(const char *h)
{
	size_t n = strlen(h);

	/* An HTTP token that is also a message attribute's name. */
	if (n == 0 || n > MESH_ROUTE_HEADER_NAME_MAX) {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		if (!isalnum((unsigned char)h[i]) && h[i] != '-' &&
		    h[i] != '_') {
			return false;
		}
	}
	return true;
}

mesh_err
mesh_route_check(struct mesh_route *r)
{
	char key[MESH_ROUTE_KEY_MAX + 1];
	const char *colon = strchr(r->target, ':');
	size_t plen = strnlen(r->path, sizeof(r->path));
	bool fifo = false;
	mesh_err err;

	mesh_route_key(r, key);
	if ((r->methods = mesh_route_method_bit(r->method)) == 0) {
		return mesh_err_set(MESH_EINVAL,
		                    "route '%s': method '%s': want GET, POST, "
		                    "PUT, PATCH, DELETE or ANY",
		                    key, r->method);
	}
	if ((err = mesh_route_tmpl_parse(r->path, plen, &r->tmpl)) !=
	    MESH_OK) {
		char detail[512];
		snprintf(detail, sizeof(detail), "%s", mesh_errdetail());
		return mesh_err_set(err, "route '%s': %s", key, detail);
	}
	r->kind = 0;
	if (colon != NULL) {
		size_t k = (size_t)(colon - r->target);
		r->kind = k == 5 && strncmp(r->target, "queue", 5) == 0
		                  ? MESH_ROUTE_QUEUE
		          : k == 5 && strncmp(r->target, "topic", 5) == 0
		                  ? MESH_ROUTE_TOPIC
		          : k == 7 && strncmp(r->target, "service", 7) == 0
		                  ? MESH_ROUTE_SERVICE
		                  : 0;
	}
	if (r->kind == 0) {
		return mesh_err_set(MESH_EINVAL,
		                    "route '%s': target '%s': want "
		                    "queue:NAME, topic:NAME or service:NAME",
		                    key, r->target);
	}
	err = r->kind == MESH_ROUTE_QUEUE
	              ? mesh_queue_name_check(mesh_route_target_name(r), &fifo)
	      : r->kind == MESH_ROUTE_TOPIC
	              ? mesh_topic_name_check(mesh_route_target_name(r), &fifo)
	              : mesh_name_check("service", mesh_route_target_name(r),
	                                64, &fifo);
	if (err == MESH_OK && r->kind == MESH_ROUTE_SERVICE && fifo) {
		err = mesh_err_set(MESH_EINVAL, "service '%s': not a name",
		                   mesh_route_target_name(r));
	}
	if (err != MESH_OK) {
		char detail[512];
		snprintf(detail, sizeof(detail), "%s", mesh_errdetail());
		return mesh_err_set(err, "route '%s': target '%s': %s", key,
		                    r->target, detail);
	}
	if (r->type[0] != '\0' && mesh_schema_find(r->type) == NULL) {
		return mesh_err_set(MESH_ENOTFOUND,
		                    "route '%s': type '%s': not in the schema "
		                    "registry",
		                    key, r->type);
	}
	if (r->n_headers > MESH_ROUTE_HEADERS_MAX) {
		return mesh_err_set(MESH_EINVAL,
		                    "route '%s': %zu headers: at most %d", key,
		                    r->n_headers, MESH_ROUTE_HEADERS_MAX);
	}
	for (size_t i = 0; i < r->n_headers; i++) {
		if (!header_name_valid(r->headers[i])) {
			return mesh_err_set(
			        MESH_EINVAL,
			        "route '%s': header '%s': want 1-64 "
			        "of A-Z a-z 0-9 - _",
			        key, r->headers[i]);
		}
		for (size_t k = 0; k < i; k++) {
			if (strcasecmp(r->headers[k], r->headers[i]) == 0) {
				return mesh_err_set(MESH_EINVAL,
				                    "route '%s': header '%s': "
				                    "named twice",
				                    key, r->headers[i]);
			}
		}
	}
	if (r->tmpl.n_params + r->n_headers > MESH_ROUTE_ATTRS_MAX) {
		return mesh_err_set(MESH_EINVAL,
		                    "route '%s': %zu path parameters and %zu "
		                    "headers: at most %d together (message "
		                    "attributes)",
		                    key, r->tmpl.n_params, r->n_headers,
		                    MESH_ROUTE_ATTRS_MAX);
	}
	return MESH_OK;
}

const char *
mesh_route_target_name(const struct mesh_route *r)
{
	const char *colon = strchr(r->target, ':');

	return colon != NULL ? colon + 1 : "";
}

bool
mesh_route_conflicts(const struct mesh_route *a, const struct mesh_route *b)
{
	return (a->methods & b->methods) != 0 &&
	       mesh_route_tmpl_same(&a->tmpl, &b->tmpl);
}

/* ---- JSON ----------------------------------------------------------------
 */

mesh_err
mesh_route_encode(const struct mesh_route *r, char **json)
{
	json_t *h = json_array();
	json_t *j;
	char *text = NULL;

	for (size_t i = 0; h != NULL && i < r->n_headers; i++) {
		json_array_append_new(h, json_string(r->headers[i]));
	}
	j = json_pack("{s:s, s:s, s:s, s:o?, s:I, s:I}", "method", r->method,
	              "path", r->path, "target", r->target, "headers", h,
	              "created_ms", (json_int_t)r->created_ms, "updated_ms",
	              (json_int_t)r->updated_ms);
	if (j != NULL && r->type[0] != '\0') {
		json_object_set_new(j, "type", json_string(r->type));
	}
	text = j != NULL ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(j);
	if (text == NULL) {
		return mesh_err_set(MESH_ENOMEM, "route '%s %s': encoding",
		                    r->method, r->path);
	}
	*json = text;
	return MESH_OK;
}

/* A string field into dst (size bytes); absent: "" when optional. */
static mesh_err
str_read(json_t *j, const char *key, bool optional, char *dst, size_t size)
{
	json_t *v = json_object_get(j, key);

	if (v == NULL && optional) {
		dst[0] = '\0';
		return MESH_OK;
	}
	if (!json_is_string(v) || json_string_length(v) >= size ||
	    strlen(json_string_value(v)) != json_string_length(v)) {
		return mesh_err_set(MESH_EINVAL,
		                    "field '%s': not a string of at most %zu "
		                    "bytes",
		                    key, size - 1);
	}
	memcpy(dst, json_string_value(v), json_string_length(v) + 1);
	return MESH_OK;
}

static mesh_err
ms_read(json_t *j, const char *key, int64_t *out)
{
	json_t *v = json_object_get(j, key);

	if (v == NULL) {
		*out = 0;
		return MESH_OK;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 0) {
		return mesh_err_set(MESH_EINVAL,
		                    "field '%s': not a whole number >= 0",
		                    key);
	}
	*out = json_integer_value(v);
	return MESH_OK;
}

static mesh_err
decode(json_t *j, struct mesh_route *r)
{
	json_t *h, *v;
	size_t i;
	mesh_err err;

	if (!json_is_object(j)) {
		return mesh_err_set(MESH_EINVAL, "not a JSON object");
	}
	if ((err = str_read(j, "method", false, r->method,
	                    sizeof(r->method))) != MESH_OK ||
	    (err = str_read(j, "path", false, r->path, sizeof(r->path))) !=
	            MESH_OK ||
	    (err = str_read(j, "target", false, r->target,
	                    sizeof(r->target))) != MESH_OK ||
	    (err = str_read(j, "type", true, r->type, sizeof(r->type))) !=
	            MESH_OK ||
	    (err = ms_read(j, "created_ms", &r->created_ms)) != MESH_OK ||
	    (err = ms_read(j, "updated_ms", &r->updated_ms)) != MESH_OK) {
		return err;
	}
	h = json_object_get(j, "headers");
	if (h != NULL && (!json_is_array(h) ||
	                  json_array_size(h) > MESH_ROUTE_HEADERS_MAX)) {
		return mesh_err_set(MESH_EINVAL,
		                    "field 'headers': not an array of at most "
		                    "%d names",
		                    MESH_ROUTE_HEADERS_MAX);
	}
	json_array_foreach(h, i, v)
	{
		if (!json_is_string(v) ||
		    json_string_length(v) > MESH_ROUTE_HEADER_NAME_MAX) {
			return mesh_err_set(MESH_EINVAL,
			                    "field 'headers': item %zu is not "
			                    "a name",
			                    i);
		}
		memcpy(r->headers[i], json_string_value(v),
		       json_string_length(v) + 1);
		r->n_headers = i + 1;
	}
	return mesh_route_check(r);
}

mesh_err
mesh_route_decode(const char *json, size_t len, struct mesh_route *r)
{
	struct mesh_route *tmp = malloc(sizeof(*tmp));
	json_error_t jerr;
	json_t *j;
	mesh_err err;

	if (tmp == NULL) {
		return mesh_err_set(MESH_ENOMEM, "route record");
	}
	if ((j = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr)) ==
	    NULL) {
		free(tmp);
		return mesh_err_set(MESH_EINVAL,
		                    "route record: not JSON: %s at offset %d",
		                    jerr.text, jerr.position);
	}
	mesh_route_init(tmp);
	err = decode(j, tmp);
	json_decref(j);
	if (err != MESH_OK) {
		char detail[512];
		snprintf(detail, sizeof(detail), "%s", mesh_errdetail());
		free(tmp);
		return mesh_err_set(err, "route record: %s", detail);
	}
	*r = *tmp;
	free(tmp);
	return MESH_OK;
}

/* ---- the bucket ----------------------------------------------------------
 */

static mesh_err
bucket(struct mesh_conn *c, bool create, kvStore **kv)
{
	return mesh__kv_bucket(c, MESH_ROUTES_BUCKET, MAX_RECORD, 0, create,
	                       "routes", kv);
}

mesh_err
mesh_route_bucket(struct mesh_conn *c, kvStore **kv)
{
	return bucket(c, true, kv);
}

static mesh_err
not_found(const char *method, const char *path)
{
	return mesh_err_set(MESH_ENOTFOUND, "route '%s %s': does not exist",
	                    method, path);
}

/* The record under key into *out (MESH_EBROKER when damaged). */
static mesh_err
record_get(kvStore *kv, const char *key, struct mesh_route *out)
{
	kvEntry *e = NULL;
	natsStatus st = kvStore_Get(&e, kv, key);
	mesh_err err;

	if (st == NATS_NOT_FOUND) {
		return mesh_err_set(MESH_ENOTFOUND, "route key '%s'", key);
	}
	if (st != NATS_OK) {
		return mesh_err_nats(st, 0, "route key '%s'", key);
	}
	err = mesh_route_decode(kvEntry_ValueString(e),
	                        (size_t)kvEntry_ValueLen(e), out);
	if (err == MESH_OK) {
		char want[MESH_ROUTE_KV_KEY_MAX + 1];
		mesh_route_kv_key(out->method, out->path, want);
		if (strcmp(want, key) != 0) {
			err = mesh_err_set(
			        MESH_EINVAL,
			        "the record under '%s' is of '%s %s'", key,
			        out->method, out->path);
		} else {
			out->revision = kvEntry_Revision(e);
		}
	}
	if (err != MESH_OK && err != MESH_ENOMEM) {
		char detail[512];
		snprintf(detail, sizeof(detail), "%s", mesh_errdetail());
		err = mesh_err_set(MESH_EBROKER, "route key '%s': damaged: %s",
		                   key, detail);
	}
	kvEntry_Destroy(e);
	return err;
}

static int
by_key(const void *a, const void *b)
{
	const struct mesh_route *x = a, *y = b;
	int c = strcmp(x->path, y->path);

	return c != 0 ? c : strcmp(x->method, y->method);
}

static mesh_err
list(kvStore *kv, struct mesh_route **out, size_t *n, size_t *damaged)
{
	struct mesh_route *rs = NULL;
	kvKeysList keys = {0};
	size_t nr = 0, bad = 0;
	natsStatus st = kvStore_Keys(&keys, kv, NULL);
	mesh_err err = MESH_OK;

	*out = NULL;
	*n = 0;
	if (st == NATS_NOT_FOUND) {
		goto done;
	}
	if (st != NATS_OK) {
		return mesh_err_nats(st, 0, "listing routes");
	}
	if (keys.Count > 0 &&
	    (rs = calloc((size_t)keys.Count, sizeof(*rs))) == NULL) {
		kvKeysList_Destroy(&keys);
		return mesh_err_set(MESH_ENOMEM, "listing routes");
	}
	for (int i = 0; i < keys.Count; i++) {
		err = record_get(kv, keys.Keys[i], &rs[nr]);
		if (err == MESH_OK) {
			nr++;
		} else if (err == MESH_EBROKER) {
			bad++;
		} else if (err != MESH_ENOTFOUND) {
			free(rs);
			kvKeysList_Destroy(&keys);
			return err;
		}
	}
	err = MESH_OK;
	if (nr > 1) {
		qsort(rs, nr, sizeof(*rs), by_key);
	}
	*out = rs;
	*n = nr;
done:
	kvKeysList_Destroy(&keys);
	if (damaged != NULL) {
		*damaged = bad;
	}
	return err;
}

mesh_err
mesh_route_list(struct mesh_conn *c, struct mesh_route **out, size_t *n,
                size_t *damaged)
{
	kvStore *kv = NULL;
	mesh_err err;

	*out = NULL;
	*n = 0;
	if (damaged != NULL) {
		*damaged = 0;
	}
	if ((err = bucket(c, false, &kv)) == MESH_ENOTFOUND) {
		return MESH_OK;
	}
	if (err != MESH_OK) {
		return err;
	}
	err = list(kv, out, n, damaged);
	kvStore_Destroy(kv);
	return err;
}

/* Whether r's target queue or topic exists. */
static mesh_err
target_check(struct mesh_conn *c, const struct mesh_route *r)
{
	struct mesh_queue_info qi;
	struct mesh_topic_info ti;
	mesh_err err;

	if (r->kind == MESH_ROUTE_SERVICE) {
		return MESH_OK; /* its instances may all be down now */
	}
	err = r->kind == MESH_ROUTE_QUEUE
	              ? mesh_queue_info(c, mesh_route_target_name(r), &qi)
	              : mesh_topic_info(c, mesh_route_target_name(r), &ti);
	if (err == MESH_ENOTFOUND) {
		return mesh_err_set(MESH_ENOTFOUND,
		                    "route '%s %s': target '%s': the %s does "
		                    "not exist",
		                    r->method, r->path, r->target,
		                    r->kind == MESH_ROUTE_QUEUE ? "queue"
		                                                : "topic");
	}
	return err;
}

mesh_err
mesh_route_put(struct mesh_conn *c, struct mesh_route *r)
{
	char key[MESH_ROUTE_KV_KEY_MAX + 1], *text = NULL;
	struct mesh_route *rs = NULL;
	kvStore *kv = NULL;
	uint64_t rev = 0;
	size_t n = 0;
	natsStatus st;
	mesh_err err;

	if ((err = mesh_route_check(r)) != MESH_OK ||
	    (err = target_check(c, r)) != MESH_OK ||
	    (err = bucket(c, true, &kv)) != MESH_OK) {
		return err;
	}
	if ((err = list(kv, &rs, &n, NULL)) != MESH_OK) {
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (strcmp(rs[i].method, r->method) == 0 &&
		    strcmp(rs[i].path, r->path) == 0) {
			err = mesh_err_set(MESH_EEXIST,
			                   "route '%s %s' exists (delete it "
			                   "first)",
			                   r->method, r->path);
			goto out;
		}
		if (mesh_route_conflicts(&rs[i], r)) {
			err = mesh_err_set(
			        MESH_EEXIST,
			        "route '%s %s' conflicts with route "
			        "'%s %s' (the same requests)",
			        r->method, r->path, rs[i].method, rs[i].path);
			goto out;
		}
	}
	r->updated_ms = now_ms();
	r->created_ms = r->updated_ms;
	if ((err = mesh_route_encode(r, &text)) != MESH_OK) {
		goto out;
	}
	mesh_route_kv_key(r->method, r->path, key);
	st = kvStore_Create(&rev, kv, key, text, (int)strlen(text));
	if (st != NATS_OK) {
		kvEntry *e = NULL;
		err = kvStore_Get(&e, kv, key) == NATS_OK
		              ? mesh_err_set(MESH_EEXIST,
		                             "route '%s %s' exists", r->method,
		                             r->path)
		              : mesh_err_nats(st, 0, "route '%s %s': storing",
		                              r->method, r->path);
		kvEntry_Destroy(e);
		goto out;
	}
	r->revision = rev;
out:
	free(text);
	free(rs);
	kvStore_Destroy(kv);
	return err;
}

/* Method and template as given to get and delete: checked. */
static mesh_err
key_of(const char *method, const char *path, char *key)
{
	struct mesh_route_tmpl t;
	mesh_err err;

	if (mesh_route_method_bit(method) == 0) {
		return mesh_err_set(MESH_EINVAL,
		                    "method '%s': want GET, POST, PUT, PATCH, "
		                    "DELETE or ANY",
		                    method);
	}
	if ((err = mesh_route_tmpl_parse(path, strlen(path), &t)) != MESH_OK) {
		return err;
	}
	mesh_route_kv_key(method, path, key);
	return MESH_OK;
}

mesh_err
mesh_route_get(struct mesh_conn *c, const char *method, const char *path,
               struct mesh_route *out)
{
	char key[MESH_ROUTE_KV_KEY_MAX + 1];
	kvStore *kv = NULL;
	mesh_err err;

	if ((err = key_of(method, path, key)) != MESH_OK) {
		return err;
	}
	if ((err = bucket(c, false, &kv)) != MESH_OK) {
		return err == MESH_ENOTFOUND ? not_found(method, path) : err;
	}
	err = record_get(kv, key, out);
	kvStore_Destroy(kv);
	return err == MESH_ENOTFOUND ? not_found(method, path) : err;
}

mesh_err
mesh_route_delete(struct mesh_conn *c, const char *method, const char *path)
{
	char key[MESH_ROUTE_KV_KEY_MAX + 1];
	kvStore *kv = NULL;
	kvEntry *e = NULL;
	natsStatus st;
	mesh_err err;

	if ((err = key_of(method, path, key)) != MESH_OK) {
		return err;
	}
	if ((err = bucket(c, false, &kv)) != MESH_OK) {
		return err == MESH_ENOTFOUND ? not_found(method, path) : err;
	}
	st = kvStore_Get(&e, kv, key);
	kvEntry_Destroy(e);
	if (st == NATS_NOT_FOUND) {
		err = not_found(method, path);
	} else if (st != NATS_OK) {
		err = mesh_err_nats(st, 0, "route '%s %s'", method, path);
	} else if ((st = kvStore_Delete(kv, key)) != NATS_OK) {
		err = mesh_err_nats(st, 0, "route '%s %s': deleting", method,
		                    path);
	}
	kvStore_Destroy(kv);
	return err;
}
