/* The NATS protocol every service of the mesh answers: the service
 * runtime (services/runtime, mesh/service.h) implements it, and tools
 * (meshctl) and any NATS client use it, needing only libmesh.
 */
#ifndef MESH_SERVICE_API_H
#define MESH_SERVICE_API_H

/* A service's name: 1-64 of [A-Za-z0-9_-]. */
#define MESH_SERVICE_NAME_MAX 64

/* Each instance answers requests on mesh.service.NAME.stats with its
 * counters as JSON (meshctl stats gathers all instances):
 * {"service", "instance", "received", "processed", "retried", "failed",
 *  "dead_lettered", "malformed", "duplicates", "ignored",
 *  "outbox_pending", "in_flight", "handler_ms": {"p50", "p95", "p99"},
 *  "commit_ms": {"p50", "p95", "p99"}, "requests", "requests_replayed",
 *  "requests_5xx", "request_ms": {"p50", "p95", "p99"}}
 * where commit_ms is publish-to-commit: from the event's time to its
 * batch's commit, and request_ms a request's receipt to its reply. */
#define MESH_SERVICE_STATS_SUBJECT "mesh.service.%s.stats"
/* ... and every instance of every service answers on this one. */
#define MESH_SERVICES_STATS_SUBJECT "mesh.services.stats"

/* A running service's state (get, scan, backup), answered by one of its
 * instances from a read transaction; JSON requests and answers (the
 * README's "State over NATS"):
 *   get    {"db","key"|"key_base64"} -> {"key_base64","value_base64"}
 *   scan   {"db","prefix"|"prefix_base64","limit","after_base64"}
 *          -> {"items":[{"key_base64","value_base64"}],"more","next_base64"}
 *   backup {} -> {"id","size","sha256","subject"}; then {"id","offset"} to
 *          "subject" gives the bytes at offset (none past the end), with
 *          the header MESH_SERVICE_BACKUP_OFFSET_HDR (an answer without
 *          it is a JSON error), and {"id","done":true} ends it.
 * An error is {"error","code"}, code a mesh_errname(). */
#define MESH_SERVICE_STATE_SUBJECT "mesh.service.%s.state.%s"
/* A partitioned service's changelog and snapshot streams (its
 * partitions' write transactions, and compacted copies of their
 * environments), made at its first start. */
#define MESH_SERVICE_CHANGELOG_STREAM "MESH_CL_%s"
#define MESH_SERVICE_SNAPSHOT_STREAM  "MESH_SNAP_%s"
/* A partitioned service's: partition K's, answered by its owner (the
 * same calls; meshctl finds a key's partition with mesh_partition_of). */
#define MESH_SERVICE_PART_STATE_SUBJECT "mesh.service.%s.p%d.state.%s"
#define MESH_SERVICE_BACKUP_OFFSET_HDR  "Mesh-Backup-Offset"

/* ---- Requests: synchronous calls to a service (HTTP through mesh-gateway)
 *
 * A core NATS request (the caller's reply inbox) on
 * mesh.service.NAME.request; every instance of the service subscribes in
 * the queue group "mesh-request", so requests spread over its instances.
 * No instance: NATS answers the caller at once with its no-responders
 * status (cnats: NATS_NO_RESPONDERS), which the gateway turns into 503.
 *
 * Request headers (exact spelling; NATS header names are case-sensitive):
 *   Mesh-Route        the route key exactly as the service registered it
 *                     (mesh_service_on_request): "GET /orders/{id}"
 *                     (required; API Gateway's routeKey)
 *   Mesh-Method       the HTTP method ("HEAD" on a GET route: the reply's
 *                     body is dropped)
 *   Mesh-Path         the actual path, "/orders/o-1"
 *   Mesh-Query        the raw query string without '?' (optional)
 *   Mesh-Param-NAME   one per {NAME} of the route, percent-decoded
 *   Mesh-Request-Id   the request's id, 1-255 bytes (the runtime makes one
 *                     when missing)
 *   Idempotency-Key   optional, 1-255 bytes: a command's replay key
 *   traceparent       optional, W3C; carried to the events it emits
 *   Content-Type      of the body
 *   Mesh-Header-NAME  an HTTP header the route forwards
 * Body: the raw HTTP request body.
 *
 * Reply headers: Mesh-Status (the HTTP status, decimal), Content-Type,
 * Mesh-Request-Id (echoed), Mesh-Header-NAME per HTTP header of the
 * reply; body: the response body. A command's reply answered from its
 * record carries Mesh-Header-Idempotent-Replayed: true.
 *
 * What the runtime answers itself, as {"message": "...", "requestId":
 * "..."} (application/json):
 *   400  a missing Mesh-Route or Mesh-Param-NAME, a key over 255 bytes, or
 *        a body that is not JSON of the route's protobuf type (naming the
 *        field: "body: field \"count\": expected an integer")
 *   404  the service has no handler for Mesh-Route
 *   422  a command's idempotency key used before with another request
 *        (another route, path, query or body), as Stripe does
 *   500  the handler failed (its reason is logged with the request id, not
 *        sent), or the state could not be read or committed
 *   503  the instance is stopping or has too many requests queued
 *
 * GET and HEAD routes are reads (an LMDB read transaction: no writes, no
 * commit); other methods are commands: one write transaction, committed
 * (durably) before the reply, with what the handler emits in its outbox
 * and the reply recorded under the idempotency key (Idempotency-Key, else
 * Mesh-Request-Id): a command retried with the key is answered from the
 * record and not run again, for the service's horizon (--horizon, 7 days:
 * as long as processed event ids are kept). */
#define MESH_SERVICE_REQUEST_SUBJECT  "mesh.service.%s.request"
#define MESH_SERVICE_REQUEST_QUEUE    "mesh-request"
#define MESH_REQUEST_ROUTE_HDR        "Mesh-Route"
#define MESH_REQUEST_METHOD_HDR       "Mesh-Method"
#define MESH_REQUEST_PATH_HDR         "Mesh-Path"
#define MESH_REQUEST_QUERY_HDR        "Mesh-Query"
#define MESH_REQUEST_PARAM_PREFIX     "Mesh-Param-"
#define MESH_REQUEST_ID_HDR           "Mesh-Request-Id"
#define MESH_REQUEST_IDEMPOTENCY_HDR  "Idempotency-Key"
#define MESH_REQUEST_TRACEPARENT_HDR  "traceparent"
#define MESH_REQUEST_CONTENT_TYPE_HDR "Content-Type"
#define MESH_REQUEST_HEADER_PREFIX    "Mesh-Header-"
#define MESH_REPLY_STATUS_HDR         "Mesh-Status"
#define MESH_REPLY_REPLAYED_HDR       "Mesh-Header-Idempotent-Replayed"
/* The longest request id or idempotency key. */
#define MESH_REQUEST_KEY_MAX 255

/* The LMDB layout of a service's environment: named databases "state"
 * (the handlers'), "processed" (event id -> time ms), "processed_at"
 * (time, id), "outbox" (sequence -> record), "meta", "requests"
 * (idempotency key -> time, fingerprint, recorded reply) and
 * "requests_at" (time, key). */
#define MESH_SERVICE_DB_STATE "state"

#endif
