/* fuzz_envelope: mesh_event_parse on any bytes. An event that parses must
 * read back whole (every attribute, the payload), pack, and parse again to
 * the same bytes: what the parser accepts, the codec can carry. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "mesh/event.h"

/* Touch everything a reader of the event would, so that ASan sees any
 * pointer the parser left dangling or unterminated. */
static size_t
read_all(const struct mesh_event *ev)
{
	struct mesh_ext_value v;
	const char *type_url, *data_type;
	const void *data, *value;
	size_t len, sum = 0;
	int64_t sec;
	int32_t nsec;

	sum += strlen(mesh_event_id(ev)) + strlen(mesh_event_source(ev)) +
	       strlen(mesh_event_type(ev)) +
	       strlen(mesh_event_specversion(ev));
	sum += mesh_event_subject(ev) ? strlen(mesh_event_subject(ev)) : 0;
	sum += mesh_event_time(ev, &sec, &nsec) ? (size_t)nsec : 0;
	for (size_t i = 0; i < mesh_event_ext_count(ev); i++) {
		const char *name = mesh_event_ext_at(ev, i, &v);
		sum += strlen(name);
		if (v.string != NULL) {
			sum += strlen(v.string);
		}
		if (mesh_event_attr_is_message_attr(name) &&
		    mesh_event_attr_get(ev, name, &data_type, &value, &len) ==
		            MESH_OK) {
			sum += strlen(data_type) + len;
		}
	}
	if (mesh_event_data(ev, &data, &len, &type_url) != MESH_DATA_NONE &&
	    len > 0) {
		sum += ((const uint8_t *)data)[len - 1];
	}
	return sum + (type_url ? strlen(type_url) : 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mesh_event *ev = NULL, *again = NULL, *copy = NULL;
	uint8_t *buf = NULL, *buf2 = NULL;
	size_t len = 0, len2 = 0;

	if (mesh_event_parse(data, size, 0, &ev) != MESH_OK) {
		return 0;
	}
	read_all(ev);
	if (mesh_event_pack(ev, &buf, &len) != MESH_OK) {
		goto done;
	}
	if (mesh_event_parse(buf, len, 0, &again) != MESH_OK) {
		abort(); /* a parsed event packs into one that does not */
	}
	read_all(again);
	if (mesh_event_pack(again, &buf2, &len2) == MESH_OK &&
	    (len2 != len || memcmp(buf, buf2, len) != 0)) {
		abort(); /* packing is not stable across a round trip */
	}
	if (mesh_event_dup(ev, &copy) == MESH_OK) {
		read_all(copy);
	}
done:
	mesh_event_free(copy);
	mesh_event_free(again);
	mesh_event_free(ev);
	free(buf2);
	free(buf);
	return 0;
}
