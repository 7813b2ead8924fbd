/* Events on the wire: the NATS binding of the envelope.
 *
 * An event travels in CloudEvents structured mode: the message body is the
 * serialized CloudEvent, with headers
 *   Content-Type: application/cloudevents+protobuf
 *   Nats-Msg-Id:  the event id (JetStream de-duplication)
 *   Ce-Id, Ce-Type, Ce-Source, Ce-Subject: copies, so that routers and tools
 * can read them without decoding the body.
 */
#ifndef MESH_WIRE_H
#define MESH_WIRE_H

#include <stdint.h>

#include <nats/nats.h>

#include "mesh/conn.h"
#include "mesh/err.h"
#include "mesh/event.h"

#define MESH_HDR_CONTENT_TYPE "Content-Type"
#define MESH_HDR_MSG_ID       "Nats-Msg-Id"
#define MESH_HDR_CE_ID        "Ce-Id"
#define MESH_HDR_CE_TYPE      "Ce-Type"
#define MESH_HDR_CE_SOURCE    "Ce-Source"
#define MESH_HDR_CE_SUBJECT   "Ce-Subject"
#define MESH_HDR_GROUP        "Mesh-Group"    /* FIFO MessageGroupId */
#define MESH_HDR_DEDUP        "Mesh-Dedup-Id" /* FIFO de-duplication id */

/* Build the NATS message for ev on `subject` (reply may be NULL). msg_id
 * overrides the
 * de-duplication id (NULL: the event id).
 * Errors: MESH_EINVAL (bad subject), MESH_ENOMEM. On success *out is a new
 * natsMsg the caller destroys (or hands to cnats). */
mesh_err mesh_wire_msg(const char *subject, const char *reply,
                       const struct mesh_event *ev, const char *msg_id,
                       natsMsg **out);

/* Publish ev to JetStream and wait for the stream's acknowledgement. After
 * MESH_OK the event is stored. *seq (optional) gets its stream sequence,
 * *duplicate (optional) whether JetStream had it already.
 * Errors: MESH_ENOTFOUND (no stream takes the subject), MESH_ETOOBIG,
 * MESH_ETIMEDOUT, MESH_ECLOSED, MESH_EBROKER, MESH_ENOMEM. */
mesh_err mesh_wire_publish(struct mesh_conn *c, const char *subject,
                           const struct mesh_event *ev, const char *msg_id,
                           uint64_t *seq, bool *duplicate);

/* Create a stream unless one of that name exists (an existing stream is
 * left as it is). Errors: the broker's, with the stream named. */
mesh_err mesh_stream_ensure(struct mesh_conn *c, jsStreamConfig *cfg);

/* Decode a received message into an event (max_size as mesh_event_parse).
 * Errors: those of mesh_event_parse, and MESH_EPARSE when the
 * Content-Type says the body is something else. */
mesh_err mesh_wire_decode(natsMsg *msg, size_t max_size,
                          struct mesh_event **out);

#endif
