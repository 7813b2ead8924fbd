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
 *  "commit_ms": {"p50", "p95", "p99"}}
 * where commit_ms is publish-to-commit: from the event's time to its
 * batch's commit. */
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

/* The LMDB layout of a service's environment: named databases "state"
 * (the handlers'), "processed" (event id -> time ms), "processed_at"
 * (time, id), "outbox" (sequence -> record), "meta". */
#define MESH_SERVICE_DB_STATE "state"

#endif
