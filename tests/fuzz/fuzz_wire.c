/* fuzz_wire: the runtime's delivery path fed any NATS message, headers
 * included, with no broker: a natsMsg made in process, then what the
 * runtime, the router and meshctl do with each message they receive.
 * Input: header lines "Key: Value" up to an empty line, then the body.
 *
 * - mesh_wire_read() never fails for the bytes' sake;
 * - the event passes through filter policies of both scopes (the body
 *   scope reading a protobuf payload as its JSON mapping, as a
 *   subscriber does);
 * - a payload whose type the registry knows is unpacked as that message,
 *   and written as JSON;
 * - the event put back on the wire (mesh_wire_msg) reads back as a
 *   CloudEvent of the same id and type. */
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

#include "fuzz_msg.h"
#include "internal.h"
#include "mesh/filter.h"
#include "mesh/pbjson.h"
#include "mesh/wire.h"
#include "mesh_schemas.h"

#define SUBJECT  "mesh.queue.fuzz"
#define FALLBACK "fuzz-fallback-id"

static const char *const policies[] = {
        "{\"country\": [\"DE\", {\"prefix\": \"F\"}], "
        "\"total\": [{\"numeric\": [\">\", 100]}]}",
        "{\"store\": [{\"exists\": false}], "
        "\"tags\": [{\"anything-but\": [\"spam\"]}]}",
};
static const char *const body_policies[] = {
        "{\"country\": [\"DE\"], \"items\": {\"quantity\": [{\"numeric\": "
        "[\">=\", 2]}]}}",
        "{\"$or\": [{\"orderId\": [{\"prefix\": \"o-\"}]}, "
        "{\"reason\": [{\"exists\": true}]}]}",
};
#define N_POLICIES (sizeof(policies) / sizeof(policies[0]))
static struct mesh_filter *filters[2 * N_POLICIES];

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	nats_Open(-1);
	for (size_t i = 0; i < N_POLICIES; i++) {
		if (mesh_filter_compile(policies[i], strlen(policies[i]),
		                        MESH_FILTER_SCOPE_ATTRIBUTES,
		                        &filters[2 * i]) != MESH_OK ||
		    mesh_filter_compile(body_policies[i],
		                        strlen(body_policies[i]),
		                        MESH_FILTER_SCOPE_BODY,
		                        &filters[2 * i + 1]) != MESH_OK) {
			abort();
		}
	}
	return 0;
}

static void
handle(const struct mesh_event *ev)
{
	const ProtobufCMessageDescriptor *desc;
	ProtobufCMessage *msg = NULL;
	json_t *j = NULL;

	for (size_t i = 0; i < 2 * N_POLICIES; i++) {
		mesh__subscription_matches(filters[i], ev);
	}
	desc = mesh_schema_find(mesh_event_type(ev));
	if (desc != NULL &&
	    mesh_event_unpack_message(ev, desc, NULL, &msg) == MESH_OK) {
		protobuf_c_message_free_unpacked(msg, NULL);
	}
	if (mesh_pbjson_event_data(ev, &j) == MESH_OK) {
		json_decref(j);
	}
}

/* The event sent on again must read back as the same event. */
static void
resend(const struct mesh_event *ev)
{
	natsMsg *m = NULL;
	struct mesh_event *back = NULL;
	char why[256];

	if (mesh_wire_msg(SUBJECT, NULL, ev, NULL, &m) != MESH_OK) {
		return;
	}
	if (mesh_wire_read(m, 0, FALLBACK, &back, why, sizeof(why)) !=
	            MESH_OK ||
	    why[0] != '\0' ||
	    strcmp(mesh_event_id(back), mesh_event_id(ev)) != 0 ||
	    strcmp(mesh_event_type(back), mesh_event_type(ev)) != 0) {
		abort();
	}
	mesh_event_free(back);
	natsMsg_Destroy(m);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mesh_event *ev = NULL;
	char why[256];
	natsMsg *m = fuzz_nats_msg(data, size, SUBJECT);

	if (m == NULL) {
		return 0;
	}
	if (mesh_wire_read(m, 0, FALLBACK, &ev, why, sizeof(why)) != MESH_OK) {
		abort(); /* only running out of memory may fail it */
	}
	handle(ev);
	resend(ev);
	mesh_event_free(ev);
	natsMsg_Destroy(m);
	return 0;
}
