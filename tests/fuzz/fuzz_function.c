/* fuzz_function: a function definition as the bucket MESH_FUNCTIONS holds
 * it (mesh/function.h), which anyone with access to the broker can change
 * and every supervisor reads. Input: the record. One that decodes must
 * encode and decode back to the same record. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "mesh/function.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mesh_function f, g;
	char *json = NULL, *again = NULL;

	mesh_function_init(&f);
	mesh_function_init(&g);
	if (mesh_function_decode((const char *)data, size, &f) != MESH_OK) {
		if (f.program != NULL || f.n_sources != 0) {
			abort(); /* a failed decode wrote *out */
		}
		return 0;
	}
	if (f.program == NULL || f.n_sources == 0 ||
	    mesh_function_encode(&f, &json) != MESH_OK ||
	    mesh_function_decode(json, strlen(json), &g) != MESH_OK ||
	    mesh_function_encode(&g, &again) != MESH_OK ||
	    strcmp(json, again) != 0) {
		abort(); /* what encode wrote does not read back as itself */
	}
	free(json);
	free(again);
	mesh_function_fini(&g);
	mesh_function_fini(&f);
	return 0;
}
