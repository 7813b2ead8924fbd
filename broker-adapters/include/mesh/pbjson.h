/* Protobuf messages as JSON: the proto3 canonical JSON mapping over
 * protobuf-c descriptors, and event payloads as JSON.
 *
 * The mapping (https://protobuf.dev/programming-guides/json/):
 * - field names are lowerCamelCase (the json_name protoc would derive;
 *   a custom json_name option is not seen, protobuf-c does not keep it);
 *   when reading, the original field name is accepted too;
 * - int64, uint64, fixed64, sint64, sfixed64 are written as decimal
 *   strings; every integer type is read from a number or a decimal string;
 * - float and double are numbers, or "NaN", "Infinity", "-Infinity";
 * - enums are written by name (by number when the value has no name) and
 *   read by name or number;
 * - bytes are standard base64 with padding when written; standard or
 *   URL-safe, with or without padding, when read;
 * - repeated fields are arrays; map fields (protobuf-c's repeated
 *   XxxEntry messages) are objects keyed by the key's text;
 * - google.protobuf.Timestamp is an RFC 3339 string ("2026-01-01T00:00:00Z",
 *   0, 3, 6 or 9 fractional digits when written; any offset when read);
 * - google.protobuf.Any is an object with "@type" (the type URL, its
 *   message looked up in the schema registry) and the message's fields, or
 *   "value" for a Timestamp;
 * - when writing, proto3 fields that hold their default value are left
 *   out; fields with presence (proto2 optional, proto3 optional once
 *   protoc-c supports it: 1.4 refuses it) and the set member of a oneof
 *   are written when set, even to their default; when reading, null means
 *   the default (for a oneof member: not set).
 *
 * Messages nest at most MESH_PBJSON_MAX_DEPTH deep.
 *
 * Thread safety: no shared state; different calls may run in parallel.
 */
#ifndef MESH_PBJSON_H
#define MESH_PBJSON_H

#include <stddef.h>

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

#include "mesh/err.h"
#include "mesh/event.h"

#define MESH_PBJSON_MAX_DEPTH 100

/* Build a message of type desc from the JSON value obj (an object, or a
 * string for google.protobuf.Timestamp). obj is borrowed.
 * Errors: MESH_EINVAL, with a detail naming the field path and the fault:
 *   unknown field "x" in evmesh.shop.PlaceOrder
 *   field "items[1].quantity": expected an integer
 *   field "items[1].quantity": out of range for int32
 * (also: a field given twice, under both its names; two members of one
 * oneof; an unknown enum name; bad base64 or timestamp; a string with a
 * NUL; an Any whose @type is not in the schema registry; nesting deeper
 * than MESH_PBJSON_MAX_DEPTH), MESH_ENOMEM.
 * On success *out owns the message: free it with
 * protobuf_c_message_free_unpacked(*out, NULL). *out is untouched on
 * error. Never crashes or leaks on any JSON value. */
mesh_err mesh_pbjson_encode(const ProtobufCMessageDescriptor *desc,
                            const json_t *obj, ProtobufCMessage **out);

/* Write msg (borrowed) as a new JSON value: an object, or a string for a
 * google.protobuf.Timestamp. The caller json_decref()s *out.
 * Errors: MESH_ENOMEM; MESH_EINVAL when the message cannot be written
 * (a Timestamp out of the RFC 3339 range, a string that is not UTF-8, an
 * Any of a type not in the registry or with malformed bytes, nesting
 * deeper than MESH_PBJSON_MAX_DEPTH), naming the field. */
mesh_err mesh_pbjson_decode(const ProtobufCMessage *msg, json_t **out);

/* Parse the JSON text json (len bytes, not necessarily NUL-terminated) as
 * the message named type (a full name, looked up with mesh_schema_find)
 * and make it the event's payload (mesh_event_set_message).
 * Errors: MESH_ENOTFOUND (type is not in the schema registry; named in the
 * detail), MESH_EPARSE (not JSON, duplicate keys; line and column in the
 * detail), MESH_EINVAL (as mesh_pbjson_encode), MESH_ENOMEM. On error the
 * event is unchanged. */
mesh_err mesh_pbjson_set_event_data(struct mesh_event *ev, const char *type,
                                    const char *json, size_t len);

/* The event's protobuf payload as JSON, its message type taken from the
 * payload's type URL and looked up in the schema registry. On success the
 * caller json_decref()s *out.
 * Errors: MESH_EINVAL (the payload is not a protobuf message, or cannot be
 * written as JSON), MESH_ENOTFOUND (its type is not in the registry),
 * MESH_EPARSE (the payload is malformed), MESH_ENOMEM. */
mesh_err mesh_pbjson_event_data(const struct mesh_event *ev, json_t **out);

#endif
