/* fuzz_filter: a filter policy compiled, and when it compiles, matched
 * against a message. Input: one byte of mode, the policy, a NUL, the
 * message. Mode bit 0 picks the scope. MessageAttributes: bit 1 clear, the
 * message is SNS's JSON form of attributes (mesh_filter_match_sns_attrs);
 * set, it is "NAME=TYPE:VALUE" lines (meshctl's --attr, so the spec parser
 * is fuzzed too) set on an event, matched with mesh_filter_match_event.
 * MessageBody: the message is a JSON body, matched parsed as it comes
 * (mesh_filter_match_json) and as an event's text payload. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fuzz.h"
#include "mesh/event.h"
#include "mesh/filter.h"

/* The message as an event's attributes, one spec a line; specs that do not
 * parse are left out, as meshctl would refuse them one by one. */
static void
match_specs(const struct mesh_filter *f, const uint8_t *msg, size_t len)
{
	struct fuzz_in in = {msg, len};
	struct mesh_event *ev = NULL;

	if (mesh_event_new("fuzz.filter", "/fuzz", &ev) != MESH_OK) {
		return;
	}
	while (in.n > 0) {
		size_t n;
		const uint8_t *line = fuzz_part(&in, '\n', &n);
		char *spec = strndup((const char *)line, n);
		if (spec != NULL) {
			mesh_event_attr_set_spec(ev, spec);
		}
		free(spec);
	}
	mesh_filter_match_event(f, ev);
	mesh_event_free(ev);
}

static void
match_body(const struct mesh_filter *f, const uint8_t *msg, size_t len)
{
	struct mesh_event *ev = NULL;
	json_t *body = json_loadb((const char *)msg, len, 0, NULL);

	if (body != NULL) {
		mesh_filter_match_json(f, body);
		json_decref(body);
	}
	if (mesh_event_new("fuzz.filter", "/fuzz", &ev) == MESH_OK &&
	    mesh_event_set_text(ev, (const char *)msg, len) == MESH_OK) {
		mesh_filter_match_event(f, ev);
	}
	mesh_event_free(ev);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = {data, size};
	uint8_t mode = fuzz_byte(&in);
	mesh_filter_scope scope = mode & 1 ? MESH_FILTER_SCOPE_BODY
	                                   : MESH_FILTER_SCOPE_ATTRIBUTES;
	size_t plen;
	const uint8_t *policy = fuzz_part(&in, '\0', &plen);
	const uint8_t *msg = in.p;
	size_t mlen = in.n;
	struct mesh_filter *f = NULL;
	json_t *attrs;
	bool match;

	if (mesh_filter_compile((const char *)policy, plen, scope, &f) !=
	    MESH_OK) {
		return 0;
	}
	if (mesh_filter_scope_of(f) != scope) {
		abort();
	}
	if (scope == MESH_FILTER_SCOPE_BODY) {
		match_body(f, msg, mlen);
	} else if (mode & 2) {
		match_specs(f, msg, mlen);
	} else if ((attrs = json_loadb((const char *)msg, mlen, 0, NULL)) !=
	           NULL) {
		mesh_filter_match_sns_attrs(f, attrs, &match);
		json_decref(attrs);
	}
	mesh_filter_free(f);
	return 0;
}
