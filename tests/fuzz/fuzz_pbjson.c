/* fuzz_pbjson: protobuf messages as JSON, both ways, over every message of
 * the schema registry and the test messages holding every kind of field
 * (messages.h). Input: a byte choosing the message (bit 0: the
 * direction), then JSON text or protobuf bytes.
 * JSON to protobuf: what encodes must decode back to JSON, and that JSON
 * must be a fixed point (encode, decode: the same JSON again), also after
 * a trip through the wire format.
 * Protobuf to JSON: bytes that protobuf-c unpacks must either be refused
 * with an error or give JSON that encodes again. */
#include <stdlib.h>

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

#include "fuzz.h"
#include "mesh/pbjson.h"
#include "messages.h"

/* msg as JSON, packed and unpacked on the way: the form a consumer sees. */
static json_t *
through_wire(const ProtobufCMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf = malloc(len ? len : 1);
	ProtobufCMessage *back = NULL;
	json_t *j = NULL;

	if (buf == NULL) {
		return NULL;
	}
	protobuf_c_message_pack(msg, buf);
	back = protobuf_c_message_unpack(msg->descriptor, NULL, len, buf);
	if (back == NULL) {
		abort(); /* protobuf-c cannot read what it wrote */
	}
	if (mesh_pbjson_decode(back, &j) != MESH_OK) {
		j = NULL;
	}
	protobuf_c_message_free_unpacked(back, NULL);
	free(buf);
	return j;
}

static void
from_json(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
          size_t size)
{
	json_t *in =
	        json_loadb((const char *)data, size,
	                   JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
	ProtobufCMessage *msg = NULL, *again = NULL;
	json_t *out = NULL, *out2 = NULL, *wired = NULL;

	if (in == NULL || mesh_pbjson_encode(desc, in, &msg) != MESH_OK) {
		goto done;
	}
	if (mesh_pbjson_decode(msg, &out) != MESH_OK) {
		goto done; /* e.g. a Timestamp beyond RFC 3339's years */
	}
	if (mesh_pbjson_encode(desc, out, &again) != MESH_OK ||
	    mesh_pbjson_decode(again, &out2) != MESH_OK ||
	    !json_equal(out, out2)) {
		abort(); /* what we write, we must read back the same */
	}
	if ((wired = through_wire(msg)) == NULL || !json_equal(out, wired)) {
		abort(); /* the wire format lost or changed something */
	}
done:
	json_decref(wired);
	json_decref(out2);
	json_decref(out);
	json_decref(in);
	if (again != NULL) {
		protobuf_c_message_free_unpacked(again, NULL);
	}
	if (msg != NULL) {
		protobuf_c_message_free_unpacked(msg, NULL);
	}
}

static void
from_protobuf(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
              size_t size)
{
	ProtobufCMessage *msg =
	        protobuf_c_message_unpack(desc, NULL, size, data);
	ProtobufCMessage *again = NULL;
	json_t *out = NULL;

	if (msg == NULL) {
		return;
	}
	if (mesh_pbjson_decode(msg, &out) == MESH_OK &&
	    mesh_pbjson_encode(desc, out, &again) != MESH_OK) {
		abort(); /* JSON we wrote is refused by our own reader */
	}
	json_decref(out);
	if (again != NULL) {
		protobuf_c_message_free_unpacked(again, NULL);
	}
	protobuf_c_message_free_unpacked(msg, NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = {data, size};
	uint8_t pick = fuzz_byte(&in);
	const ProtobufCMessageDescriptor *desc =
	        fuzz_message_at((pick >> 1) % fuzz_message_count());

	if (pick & 1) {
		from_protobuf(desc, in.p, in.n);
	} else {
		from_json(desc, in.p, in.n);
	}
	return 0;
}
