/* HTTP routes without a broker (mesh/route.h): templates parsed and
 * refused, paths matched with their parameters decoded, the most specific
 * route chosen, 405's methods, conflicts, and the record's codec with
 * damaged records refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "mesh/route.h"

/* The fault parsing path gives, "" when it parses. */
static const char *
parse_fault(const char *path)
{
	static char out[512];
	struct mesh_route_tmpl t;

	if (mesh_route_tmpl_parse(path, strlen(path), &t) == MESH_OK) {
		return "";
	}
	snprintf(out, sizeof(out), "%s", mesh_errdetail());
	return out;
}

/* "name=value,..." of tmpl matched against path, or "no". */
static const char *
match(const char *tmpl, const char *path)
{
	static char out[1024];
	struct mesh_route_tmpl t;
	struct mesh_route_match m;
	size_t o = 0;

	if (mesh_route_tmpl_parse(tmpl, strlen(tmpl), &t) != MESH_OK) {
		return "bad template";
	}
	if (!mesh_route_tmpl_match(&t, path, strlen(path), &m)) {
		return "no";
	}
	out[0] = '\0';
	for (size_t i = 0; i < m.n; i++) {
		o += (size_t)snprintf(out + o, sizeof(out) - o, "%s%.*s=%s",
		                      i ? "," : "", (int)m.param[i].name_len,
		                      m.param[i].name, m.param[i].value);
	}
	return out;
}

static void
route(struct mesh_route *r, const char *method, const char *path,
      const char *target)
{
	mesh_route_init(r);
	snprintf(r->method, sizeof(r->method), "%s", method);
	snprintf(r->path, sizeof(r->path), "%s", path);
	snprintf(r->target, sizeof(r->target), "%s", target);
}

static const char *
check_fault(struct mesh_route *r)
{
	static char out[512];

	if (mesh_route_check(r) == MESH_OK) {
		return "";
	}
	snprintf(out, sizeof(out), "%s", mesh_errdetail());
	return out;
}

int
main(void)
{
	struct mesh_route rs[6], *rp[6], r, back;
	struct mesh_route_match m;
	char key[MESH_ROUTE_KV_KEY_MAX + 1], *json = NULL;
	unsigned allow;
	int i;

	/* Templates. */
	is_str(parse_fault("/"), "", "'/' parses");
	is_str(parse_fault("/orders/{id}/items/{item_2}"), "",
	       "literals and parameters parse");
	is_str(parse_fault("/files/{proxy+}"), "",
	       "a greedy parameter parses");
	has_str(parse_fault("orders"), "must start with '/'", "no leading /");
	has_str(parse_fault("/a//b"), "segment 2: empty", "'//' refused");
	has_str(parse_fault("/a/"), "empty", "a trailing '/' refused");
	has_str(parse_fault("/a/{b"), "segment 2: '{' without",
	        "an unclosed '{' refused, naming the segment");
	has_str(parse_fault("/a/{}"), "'{' without a name",
	        "an empty name refused");
	has_str(parse_fault("/a/x{b}"), "a parameter must be a whole segment",
	        "a parameter inside a segment refused");
	has_str(parse_fault("/a/{1b}"), "a parameter name is a letter",
	        "a name starting with a digit refused");
	has_str(parse_fault("/{a}/{a}"), "named twice", "a repeated name");
	has_str(parse_fault("/{p+}/x"), "must be the last",
	        "a greedy parameter before the end refused");
	has_str(parse_fault("/a b"), "a character outside", "a space refused");
	has_str(parse_fault("/a/../b"), "'.' and '..'", "'..' refused");
	has_str(parse_fault("/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}/{j}/{k}"),
	        "more than 10 parameters", "11 parameters refused");
	{
		char long_path[700];
		memset(long_path, 'a', sizeof(long_path) - 1);
		long_path[0] = '/';
		long_path[sizeof(long_path) - 1] = '\0';
		has_str(parse_fault(long_path), "longer than 512",
		        "a 699-byte path refused");
	}

	/* Matching. */
	is_str(match("/orders/{id}", "/orders/42"), "id=42", "a parameter");
	is_str(match("/orders/{id}", "/orders/42/"), "id=42",
	       "one trailing '/' ignored");
	is_str(match("/orders/{id}", "/orders"), "no", "too short");
	is_str(match("/orders/{id}", "/orders/"), "no", "an empty segment");
	is_str(match("/orders/{id}", "/orders/1/2"), "no", "too long");
	is_str(match("/orders/{id}", "/order/1"), "no", "another literal");
	is_str(match("/orders/{id}", "/orders/a%20b%2Fc"), "id=a b/c",
	       "percent-decoded, an escaped / inside one segment");
	is_str(match("/orders/{id}", "/orders/a%2"), "no",
	       "a malformed escape does not match");
	is_str(match("/orders/{id}", "/orders/a%00"), "no", "nor a NUL");
	is_str(match("/files/{p+}", "/files/a/b%20c/d"), "p=a/b c/d",
	       "greedy: the rest of the path");
	is_str(match("/files/{p+}", "/files"), "no", "greedy: one segment");
	is_str(match("/", "/"), "", "the root");
	is_str(match("/", "/x"), "no", "the root only");
	is_str(match("/a/{x}/c/{y}", "/a/1/c/2"), "x=1,y=2", "two params");

	/* Selection: the most specific, the method's own before ANY. */
	route(&rs[0], "GET", "/orders/{id}", "service:orders");
	route(&rs[1], "GET", "/orders/latest", "service:orders");
	route(&rs[2], "ANY", "/orders/{id}/x", "service:orders");
	route(&rs[3], "POST", "/orders", "queue:place-order");
	route(&rs[4], "ANY", "/{p+}", "service:fallback");
	route(&rs[5], "DELETE", "/orders/{id}", "service:orders");
	for (i = 0; i < 6; i++) {
		is_str(check_fault(&rs[i]), "", "route %d checks", i);
		rp[i] = &rs[i];
	}
	is_int(mesh_route_select((const struct mesh_route *const *)rp, 6,
	                         "GET", "/orders/7", 9, &m, &allow),
	       0, "GET /orders/7: the parameter route");
	is_str(m.param[0].value, "7", "with id 7");
	ok(m.param[0].value >= m.buf &&
	           m.param[0].value < m.buf + sizeof(m.buf),
	   "its value in the match's own buffer");
	is_int(mesh_route_select((const struct mesh_route *const *)rp, 6,
	                         "GET", "/orders/latest", 14, &m, &allow),
	       1, "GET /orders/latest: the literal wins");
	is_int(mesh_route_select((const struct mesh_route *const *)rp, 6,
	                         "PUT", "/orders/7/x", 11, &m, &allow),
	       2, "PUT /orders/7/x: ANY");
	is_int(mesh_route_select((const struct mesh_route *const *)rp, 5,
	                         "PUT", "/orders/7", 9, &m, &allow),
	       4, "PUT /orders/7: only the greedy ANY fits");
	is_int(mesh_route_select((const struct mesh_route *const *)rp, 4,
	                         "PUT", "/orders/7", 9, &m, &allow),
	       -1, "without it: none");
	is_int(allow, MESH_ROUTE_GET, "405: Allow GET");
	is_int(mesh_route_select((const struct mesh_route *const *)rp, 4,
	                         "GET", "/nothing", 8, &m, &allow),
	       -1, "an unknown path: none");
	is_int(allow, 0, "404: no method");
	is_int(mesh_route_select((const struct mesh_route *const *)rp, 4,
	                         "ANY", "/orders", 7, &m, &allow),
	       -1, "'ANY' is no request method");

	/* Conflicts. */
	route(&r, "GET", "/orders/{oid}", "service:x");
	check_fault(&r);
	ok(mesh_route_conflicts(&r, &rs[0]), "GET /orders/{oid} conflicts "
	                                     "with GET /orders/{id}");
	ok(!mesh_route_conflicts(&r, &rs[5]), "not with DELETE");
	ok(!mesh_route_conflicts(&r, &rs[1]), "not with /orders/latest");
	route(&r, "ANY", "/orders/{x}", "service:x");
	check_fault(&r);
	ok(mesh_route_conflicts(&r, &rs[5]), "ANY overlaps DELETE");

	/* Definitions refused, naming the value. */
	route(&r, "FETCH", "/a", "queue:q");
	has_str(check_fault(&r), "method 'FETCH'", "a bad method");
	route(&r, "get", "/a", "queue:q");
	has_str(check_fault(&r), "method 'get'", "a lower-case method");
	route(&r, "GET", "/a/{", "queue:q");
	has_str(check_fault(&r), "route 'GET /a/{': path '/a/{'",
	        "a bad template, naming the route");
	route(&r, "GET", "/a", "bucket:q");
	has_str(check_fault(&r), "target 'bucket:q': want queue:NAME",
	        "a bad target kind");
	route(&r, "GET", "/a", "queue:a b");
	has_str(check_fault(&r), "target 'queue:a b'", "a bad queue name");
	route(&r, "GET", "/a", "service:a.b");
	has_str(check_fault(&r), "target 'service:a.b'", "a bad service");
	route(&r, "GET", "/a", "queue:q");
	snprintf(r.type, sizeof(r.type), "evmesh.Nope");
	is_int(mesh_route_check(&r), MESH_ENOTFOUND, "an unknown type");
	has_str(mesh_errdetail(), "type 'evmesh.Nope': not in the schema",
	        "naming it");
	route(&r, "GET", "/a", "queue:q");
	snprintf(r.headers[0], sizeof(r.headers[0]), "X Bad");
	r.n_headers = 1;
	has_str(check_fault(&r), "header 'X Bad'", "a bad header name");
	snprintf(r.headers[0], sizeof(r.headers[0]), "X-A");
	snprintf(r.headers[1], sizeof(r.headers[1]), "x-a");
	r.n_headers = 2;
	has_str(check_fault(&r), "header 'x-a': named twice", "twice");
	route(&r, "GET", "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}", "queue:q");
	snprintf(r.headers[0], sizeof(r.headers[0]), "X-A");
	snprintf(r.headers[1], sizeof(r.headers[1]), "X-B");
	r.n_headers = 2;
	has_str(check_fault(&r), "at most 10 together",
	        "9 parameters and 2 headers refused");

	/* The codec. */
	route(&r, "POST", "/orders/{id}", "topic:orders");
	snprintf(r.type, sizeof(r.type), "evmesh.shop.PlaceOrder");
	snprintf(r.headers[0], sizeof(r.headers[0]), "X-Tenant");
	r.n_headers = 1;
	r.created_ms = 5;
	r.updated_ms = 6;
	is_str(check_fault(&r), "", "a full route checks");
	ok(mesh_route_encode(&r, &json) == MESH_OK, "encodes");
	is_str(json,
	       "{\"created_ms\":5,\"headers\":[\"X-Tenant\"],\"method\":"
	       "\"POST\",\"path\":\"/orders/{id}\",\"target\":"
	       "\"topic:orders\",\"type\":\"evmesh.shop.PlaceOrder\","
	       "\"updated_ms\":6}",
	       "as JSON");
	ok(mesh_route_decode(json, strlen(json), &back) == MESH_OK, "decodes");
	is_str(back.target, "topic:orders", "the target back");
	is_str(mesh_route_target_name(&back), "orders", "its name");
	is_int(back.kind, MESH_ROUTE_TOPIC, "its kind");
	is_str(back.headers[0], "X-Tenant", "the header back");
	is_int(back.tmpl.n_params, 1, "the template parsed");
	free(json);
	{
		static const char *damaged[] = {
		        "",
		        "[]",
		        "{\"method\":\"GET\"}",
		        "{\"method\":\"GET\",\"path\":\"/a\",\"target\":"
		        "\"queue:q\",\"headers\":\"x\"}",
		        "{\"method\":\"GET\",\"path\":\"a\",\"target\":"
		        "\"queue:q\"}",
		        "{\"method\":\"GET\",\"path\":\"/a\",\"target\":"
		        "\"queue:q\",\"method\":\"PUT\"}",
		        "{\"method\":\"GET\",\"path\":\"/a\",\"target\":"
		        "\"queue:q\",\"created_ms\":-1}",
		};
		for (size_t k = 0; k < sizeof(damaged) / sizeof(*damaged);
		     k++) {
			back.method[0] = 'Z';
			ok(mesh_route_decode(damaged[k], strlen(damaged[k]),
			                     &back) != MESH_OK &&
			           back.method[0] == 'Z',
			   "damaged record %zu refused, nothing written", k);
		}
	}

	/* KV keys: only the bucket's characters. */
	mesh_route_kv_key("GET", "/orders/{id}/a.b", key);
	is_str(key, "GET./orders/=7Bid=7D/a=2Eb", "the bucket's key");
	return tap_done();
}
