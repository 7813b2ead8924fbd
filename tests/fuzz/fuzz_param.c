/* fuzz_param: a parameter's record as the bucket MESH_PARAMS holds it
 * (mesh/param.h), which anyone with access to the broker can change and
 * every service reading parameters decodes. Input: the record. One that
 * decodes must encode and decode back to the same record; a failed
 * decode leaves its output untouched. The input's first byte, when it is
 * not '{', is instead a key to map to a name and back. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "mesh/param.h"

static void
key_round_trip(const uint8_t *data, size_t size)
{
	char key[MESH_PARAM_KEY_MAX + 2], name[MESH_PARAM_NAME_MAX + 1],
	        again[MESH_PARAM_KEY_MAX + 1];

	if (size > MESH_PARAM_KEY_MAX + 1 || memchr(data, '\0', size)) {
		return;
	}
	memcpy(key, data, size);
	key[size] = '\0';
	if (mesh_param_name_of_key(key, name, sizeof(name)) != MESH_OK) {
		return;
	}
	if (mesh_param_key(name, again, sizeof(again)) != MESH_OK ||
	    strcmp(again, key) != 0) {
		abort(); /* a key read as a name maps back to another key */
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mesh_param p, q;
	char *json = NULL, *again = NULL;

	if (size > 0 && data[0] != '{') {
		key_round_trip(data, size);
		return 0;
	}
	mesh_param_init(&p);
	mesh_param_init(&q);
	p.version = -7; /* must stay when decode fails */
	if (mesh_param_decode((const char *)data, size, &p) != MESH_OK) {
		if (p.version != -7 || p.value != NULL || p.sealed != NULL) {
			abort(); /* a failed decode wrote *out */
		}
		return 0;
	}
	if ((p.type == MESH_PARAM_SECURE_STRING) != (p.sealed != NULL) ||
	    (p.type != MESH_PARAM_SECURE_STRING && p.value == NULL) ||
	    mesh_param_encode(&p, &json) != MESH_OK ||
	    mesh_param_decode(json, strlen(json), &q) != MESH_OK ||
	    mesh_param_encode(&q, &again) != MESH_OK ||
	    strcmp(json, again) != 0) {
		abort(); /* what encode wrote does not read back as itself */
	}
	free(json);
	free(again);
	mesh_param_fini(&q);
	mesh_param_fini(&p);
	return 0;
}
