/* The event envelope: a CloudEvents 1.0 event in the official protobuf
 * format (schemas/cloudevents.proto).
 *
 * An event has the required attributes id, source, specversion ("1.0") and
 * type; the optional ones subject, time, datacontenttype and dataschema;
 * typed extension attributes; and a payload (data): the serialized protobuf
 * message named by `type`, raw bytes, or text.
 *
 * SNS-style message attributes (String, Number, String.Array, Binary) are a
 * view over the extension attributes: see mesh_event_attr_set().
 *
 * Thread safety: an event is a plain value; use one from one thread at a
 * time. Different events are independent.
 */
#ifndef MESH_EVENT_H
#define MESH_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "mesh/err.h"

/* Limits of the codec. A parsed event larger than its caller's limit, or one
 * breaking these, is rejected with MESH_ETOOBIG or MESH_EPARSE. */
#define MESH_EVENT_MAX_SIZE           (1024 * 1024 + 64 * 1024) /* 1 MiB body + room */
#define MESH_EVENT_MAX_NAME           256 /* attribute names */
#define MESH_EVENT_MAX_EXTS           64  /* extension attributes per event */
#define MESH_EVENT_SPECVERSION        "1.0"
#define MESH_EVENT_CONTENT_TYPE       "application/cloudevents+protobuf"
#define MESH_EVENT_PROTO_CONTENT_TYPE "application/protobuf"
#define MESH_EVENT_TYPE_URL_PREFIX    "type.googleapis.com/"

struct mesh_event;

/* The type of an extension attribute (CloudEvents' type system). */
typedef enum {
	MESH_EXT_BOOL = 1,
	MESH_EXT_INT, /* int32 */
	MESH_EXT_STRING,
	MESH_EXT_BYTES,
	MESH_EXT_URI,
	MESH_EXT_URIREF,
	MESH_EXT_TIME,
} mesh_ext_type;

/* A borrowed view of an extension attribute's value: pointers are owned by
 * the event and valid until the attribute is changed or the event freed. */
struct mesh_ext_value {
	mesh_ext_type type;
	bool boolean;         /* MESH_EXT_BOOL */
	int32_t integer;      /* MESH_EXT_INT */
	const char *string;   /* STRING, URI, URIREF (NUL-terminated) */
	const uint8_t *bytes; /* BYTES */
	size_t len;           /* length of string or bytes */
	int64_t sec;          /* TIME: seconds since the Unix epoch */
	int32_t nsec;         /* TIME: 0..999999999 */
};

/* The kind of payload an event carries. */
typedef enum {
	MESH_DATA_NONE = 0,
	MESH_DATA_BINARY,
	MESH_DATA_TEXT,
	MESH_DATA_PROTO, /* a protobuf message, with its type URL */
} mesh_data_kind;

/* Create an event of `type` from `source` with a fresh id (a UUID v7:
 * time-ordered, its time the event's, the rest random), specversion 1.0 and
 * time = now.
 * Errors: MESH_EINVAL (type or source empty or not UTF-8), MESH_ENOMEM.
 * On success *out owns a new event; free it with mesh_event_free(). */
mesh_err mesh_event_new(const char *type, const char *source,
                        struct mesh_event **out);

/* Free an event; NULL is allowed. */
void mesh_event_free(struct mesh_event *ev);

/* Required attributes. Getters never return NULL for a valid event. */
const char *mesh_event_id(const struct mesh_event *ev);
const char *mesh_event_source(const struct mesh_event *ev);
const char *mesh_event_type(const struct mesh_event *ev);
const char *mesh_event_specversion(const struct mesh_event *ev);

/* Setters copy their argument. Errors: MESH_EINVAL (empty, not UTF-8),
 * MESH_ENOMEM; on error the event is unchanged. */
mesh_err mesh_event_set_id(struct mesh_event *ev, const char *id);
mesh_err mesh_event_set_source(struct mesh_event *ev, const char *source);
mesh_err mesh_event_set_type(struct mesh_event *ev, const char *type);

/* Optional attributes; getters return NULL (or false) when absent. Passing
 * NULL to a string setter removes the attribute. */
const char *mesh_event_subject(const struct mesh_event *ev);
mesh_err mesh_event_set_subject(struct mesh_event *ev, const char *subject);
const char *mesh_event_datacontenttype(const struct mesh_event *ev);
mesh_err mesh_event_set_datacontenttype(struct mesh_event *ev,
                                        const char *contenttype);
const char *mesh_event_dataschema(const struct mesh_event *ev);
mesh_err mesh_event_set_dataschema(struct mesh_event *ev, const char *uri);
bool mesh_event_time(const struct mesh_event *ev, int64_t *sec, int32_t *nsec);
mesh_err mesh_event_set_time(struct mesh_event *ev, int64_t sec, int32_t nsec);

/* Extension attributes. A name is 1-MESH_EVENT_MAX_NAME characters; names of
 * the required and optional attributes above are refused (use their own
 * setters). CloudEvents asks for lower-case letters and digits only;
 * stricter SDKs may refuse other names, so prefer them.
 * mesh_event_ext_set copies the value (v->type says which fields count).
 * Errors: MESH_EINVAL (bad name or value; the name is in the detail),
 * MESH_ETOOBIG (more than MESH_EVENT_MAX_EXTS), MESH_ENOMEM. */
mesh_err mesh_event_ext_set(struct mesh_event *ev, const char *name,
                            const struct mesh_ext_value *v);
/* MESH_ENOTFOUND when absent. *v borrows from the event. */
mesh_err mesh_event_ext_get(const struct mesh_event *ev, const char *name,
                            struct mesh_ext_value *v);
mesh_err mesh_event_ext_remove(struct mesh_event *ev, const char *name);
/* Iterate: i from 0 to mesh_event_ext_count()-1, in insertion order. The
 * optional attributes (subject, time, ...) are included. */
size_t mesh_event_ext_count(const struct mesh_event *ev);
const char *mesh_event_ext_at(const struct mesh_event *ev, size_t i,
                              struct mesh_ext_value *v);

/* SNS-style message attributes, carried as extension attributes so any
 * CloudEvents reader sees them: String as a string, Binary as bytes, and
 * Number and String.Array as strings (decimal text; a JSON array), their
 * data type recorded in the reserved extension "meshattrtypes". data_type is
 * "String", "Number", "String.Array" or "Binary", optionally with a custom
 * suffix as SNS allows ("Number.float"). Names follow SNS: 1-256 of
 * [A-Za-z0-9_.-], not starting with "AWS." or "Amazon.", no leading,
 * trailing or doubled '.'.
 * Errors: MESH_EINVAL (name, type or value at fault in the detail; a Number
 * that is not a number, a String.Array that is not a JSON array),
 * MESH_ENOMEM. */
mesh_err mesh_event_attr_set(struct mesh_event *ev, const char *name,
                             const char *data_type, const void *value,
                             size_t len);
/* MESH_ENOTFOUND when absent. Borrowed results, as for extensions. */
mesh_err mesh_event_attr_get(const struct mesh_event *ev, const char *name,
                             const char **data_type, const void **value,
                             size_t *len);
/* Set a message attribute from "NAME=TYPE:VALUE" (the form of meshctl's
 * --attr; a Binary value in base64). Errors: those of
 * mesh_event_attr_set, and MESH_EINVAL for a malformed spec. */
mesh_err mesh_event_attr_set_spec(struct mesh_event *ev, const char *spec);

/* The message attributes are the extension attributes other than the
 * optional CloudEvents ones and the reserved "mesh*" and trace ones. */
bool mesh_event_attr_is_message_attr(const char *name);

/* Payload. The setters copy. mesh_event_set_proto records type_url
 * MESH_EVENT_TYPE_URL_PREFIX + message_name and sets datacontenttype to
 * application/protobuf. Errors: MESH_EINVAL, MESH_ENOMEM. */
mesh_err mesh_event_set_binary(struct mesh_event *ev, const void *data,
                               size_t len);
mesh_err mesh_event_set_text(struct mesh_event *ev, const char *text,
                             size_t len);
mesh_err mesh_event_set_proto(struct mesh_event *ev, const char *message_name,
                              const void *data, size_t len);
/* Serialize msg as the payload (message name from its descriptor). */
mesh_err mesh_event_set_message(struct mesh_event *ev,
                                const ProtobufCMessage *msg);
/* The payload, borrowed. type_url is NULL unless kind is MESH_DATA_PROTO. */
mesh_data_kind mesh_event_data(const struct mesh_event *ev, const void **data,
                               size_t *len, const char **type_url);
/* Decode a MESH_DATA_PROTO payload as message `desc`. Errors:
 * MESH_EINVAL (no protobuf payload, or its type URL names another
 * message), MESH_EPARSE (malformed). On success *out must be freed with
 * protobuf_c_message_free_unpacked(*out, alloc). */
mesh_err mesh_event_unpack_message(const struct mesh_event *ev,
                                   const ProtobufCMessageDescriptor *desc,
                                   ProtobufCAllocator *alloc,
                                   ProtobufCMessage **out);

/* Serialize. On success *buf is a malloc'ed buffer of *len bytes that the
 * caller frees. Errors: MESH_ENOMEM. */
mesh_err mesh_event_pack(const struct mesh_event *ev, uint8_t **buf,
                         size_t *len);

/* Parse a serialized event, refusing anything over max_size bytes (0 means
 * MESH_EVENT_MAX_SIZE), malformed protobuf, a missing required attribute,
 * a specversion other than 1.0, invalid UTF-8, bad attribute names or
 * values. Never crashes on any input.
 * Errors: MESH_ETOOBIG, MESH_EPARSE (the fault in the detail), MESH_ENOMEM.
 * On success *out owns a new event. */
mesh_err mesh_event_parse(const void *buf, size_t len, size_t max_size,
                          struct mesh_event **out);

/* Deep copy. Errors: MESH_ENOMEM. */
mesh_err mesh_event_dup(const struct mesh_event *ev, struct mesh_event **out);

/* Make text that came from outside (a parse error quoting a foreign id, a
 * handler's reason) safe for a NATS header and a log line, in place: each
 * control character and each byte that does not start a valid UTF-8
 * character becomes '?'. */
void mesh_text_clean(char *text);

/* Format 16 bytes as a UUID text of the given version (4: random, 7:
 * time-ordered, 8: derived from other data), setting its version and
 * variant bits. */
void mesh_uuid_format(const uint8_t bytes[16], int version, char out[37]);

/* Bytes as base64 text (RFC 4648's standard alphabet, padded), as JSON
 * carries bytes: a new NUL-terminated string to free(), NULL when out of
 * memory. */
char *mesh_base64(const void *data, size_t len);

#endif
