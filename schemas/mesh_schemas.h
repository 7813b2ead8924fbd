/* The schema registry: every protobuf message the mesh compiles, by full
 * name.
 *
 * The table is generated at build time from the headers protoc-c writes for
 * each .proto listed in schemas/meson.build (Google's Any and Timestamp
 * included), so it lists every message, nested ones and map entries too,
 * and never needs a hand-kept list: adding a .proto to that list is all it
 * takes.
 *
 * Thread safety: the registry is constant data; call from any thread.
 */
#ifndef MESH_SCHEMAS_H
#define MESH_SCHEMAS_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

/* The descriptor of the message with this full name
 * ("evmesh.shop.OrderPlaced", "google.protobuf.Timestamp"; a leading '.'
 * is allowed, as in descriptor type names), or NULL when the registry has
 * no such message (or full_name is NULL). The descriptor is static. */
const ProtobufCMessageDescriptor *mesh_schema_find(const char *full_name);

/* Iterate over the registry: i from 0 to mesh_schema_count() - 1, in the
 * order of the .proto list and, within a file, of protoc-c's output. */
size_t mesh_schema_count(void);
const ProtobufCMessageDescriptor *mesh_schema_at(size_t i);

#endif
