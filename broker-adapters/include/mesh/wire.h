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

#include <stdbool.h>
#include <stddef.h>
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

/* Names that go into subjects and stream names (queues, topics,
 * services): 1-max characters of [A-Za-z0-9_-], FIFO ones ending in
 * ".fifo" (*fifo, optional, says which); `noun` names the kind in errors
 * ("queue 'x y': ..."). Errors: MESH_EINVAL. */
mesh_err mesh_name_check(const char *noun, const char *name, size_t max,
                         bool *fifo);

/* A stream's configuration with the mesh's defaults: the name, its
 * subjects (borrowed: the array must live as long as sc), file storage,
 * direct gets allowed, the mesh-wide replica count of c
 * (mesh_conn_replicas); the rest as jsStreamConfig_Init leaves it. Every
 * stream of the mesh starts here, so that what all of them need is set in
 * one place. */
void mesh_stream_config_init(struct mesh_conn *c, jsStreamConfig *sc,
                             const char *name, const char **subjects,
                             int n_subjects);

/* Create a stream unless one of that name exists (an existing stream is
 * left as it is). A request that fails for a moment (mesh_js_transient)
 * is made again for up to MESH_JS_SETTLE_MS. Errors: the broker's, with
 * the stream named. */
mesh_err mesh_stream_ensure(struct mesh_conn *c, jsStreamConfig *cfg);

/* How long programs starting together on a new cluster wait out its
 * settling (a meta leader elected, a stream's peers placed) before a
 * JetStream call that failed for a moment fails them. */
#define MESH_JS_SETTLE_MS 15000

/* kvStore_WatchAll, asked again for up to MESH_JS_SETTLE_MS while it
 * fails: programs starting together on a new cluster make a bucket at
 * once, and the server one of them asks may not know its stream yet ("no
 * stream matches subject", which once stopped a second mesh-router).
 * A refused permission or a closed connection fails at once. */
natsStatus mesh_kv_watch_all(kvStore *kv, kvWatcher **out);
/* Whether a JetStream API call failed for a moment (a request timed out,
 * the cluster was electing or placing peers) rather than for good. */
bool mesh_js_transient(natsStatus s, jsErrCode jerr);

/* Decode a received message into an event (max_size as mesh_event_parse).
 * Errors: those of mesh_event_parse, and MESH_EPARSE when the
 * Content-Type says the body is something else. */
mesh_err mesh_wire_decode(natsMsg *msg, size_t max_size,
                          struct mesh_event **out);

/* The type of an event made from bytes that are not (or not readably) a
 * CloudEvent: see mesh_wire_read. */
#define MESH_WIRE_RAW_TYPE "evmesh.raw"

/* Read a message that any producer, in any language, may have put on a
 * subject; its bytes never make it fail. A message whose Content-Type says
 * it is a CloudEvent is decoded (max_size as mesh_event_parse). Any other
 * message, and one that says it is a CloudEvent but does not decode,
 * becomes an event of type MESH_WIRE_RAW_TYPE whose data are the message's
 * bytes as they are, whose id is its Ce-Id header, else its Nats-Msg-Id
 * header, else fallback_id (which must be a valid id) and whose
 * datacontenttype is the Content-Type header (else application/octet-stream).
 * why (why_size bytes, may be NULL) gets the parse error of a CloudEvent that
 * did not decode, "" otherwise. Errors: MESH_ENOMEM only. On success *out owns
 * a new event. */
mesh_err mesh_wire_read(natsMsg *msg, size_t max_size, const char *fallback_id,
                        struct mesh_event **out, char *why, size_t why_size);

#endif
