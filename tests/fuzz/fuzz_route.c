/* fuzz_route: what mesh-gateway reads from outside about routes: a
 * request's path matched against a template, and the records of the
 * bucket MESH_ROUTES, which anyone with access to the broker can change.
 * Input: TEMPLATE '\n' PATH, or a whole record. A template that parses
 * must parse again from its own text to the same shape and be the same as
 * itself; a match's values are within the path's length; a record that
 * decodes must encode and decode back to the same text. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "mesh/route.h"

static void
templates(const uint8_t *data, size_t size)
{
	struct fuzz_in in = {data, size};
	struct mesh_route_tmpl t, again;
	struct mesh_route_match m;
	size_t tlen, plen;
	const char *tmpl = (const char *)fuzz_part(&in, '\n', &tlen);
	const char *path = (const char *)fuzz_part(&in, '\n', &plen);

	if (mesh_route_tmpl_parse(tmpl, tlen, &t) != MESH_OK) {
		return;
	}
	if (mesh_route_tmpl_parse(t.text, strlen(t.text), &again) != MESH_OK ||
	    !mesh_route_tmpl_same(&t, &again) ||
	    mesh_route_tmpl_cmp(&t, &again) != 0 ||
	    again.n_params != t.n_params) {
		abort();
	}
	if (mesh_route_tmpl_match(&t, path, plen, &m)) {
		if (m.n != t.n_params) {
			abort();
		}
		for (size_t i = 0; i < m.n; i++) {
			if (strlen(m.param[i].value) > plen ||
			    m.param[i].value[0] == '\0') {
				abort();
			}
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mesh_route *r = malloc(sizeof(*r)), *g = malloc(sizeof(*g));
	char *json = NULL, *twice = NULL;

	templates(data, size);
	if (r == NULL || g == NULL) {
		abort();
	}
	mesh_route_init(r);
	if (mesh_route_decode((const char *)data, size, r) == MESH_OK) {
		if (mesh_route_encode(r, &json) != MESH_OK ||
		    mesh_route_decode(json, strlen(json), g) != MESH_OK ||
		    mesh_route_encode(g, &twice) != MESH_OK ||
		    strcmp(json, twice) != 0) {
			abort();
		}
	} else if (r->method[0] != '\0') {
		abort(); /* a failed decode wrote *out */
	}
	free(json);
	free(twice);
	free(r);
	free(g);
	return 0;
}
