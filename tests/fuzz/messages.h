/* The messages fuzz_pbjson chooses from, by number: the schema registry's,
 * then the test messages holding every kind of field (evmesh.test.Kinds:
 * each scalar, enums, maps, a oneof, Any; evmesh.test.Legacy: proto2
 * presence and a required field). make_seeds numbers its seeds alike. */
#ifndef MESH_FUZZ_MESSAGES_H
#define MESH_FUZZ_MESSAGES_H

#include <stddef.h>

#include "mesh_schemas.h"
#include "pbjson_kinds.pb-c.h"
#include "pbjson_legacy.pb-c.h"

static inline size_t
fuzz_message_count(void)
{
	return mesh_schema_count() + 2;
}

/* i in 0 .. fuzz_message_count() - 1 */
static inline const ProtobufCMessageDescriptor *
fuzz_message_at(size_t i)
{
	if (i < mesh_schema_count()) {
		return mesh_schema_at(i);
	}
	return i == mesh_schema_count() ? &evmesh__test__kinds__descriptor
	                                : &evmesh__test__legacy__descriptor;
}

#endif
