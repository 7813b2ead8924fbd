/* Partitions: routing a partitioned service's events to its partitions.
 *
 * A partitioned service has N partitions (1-MESH_PARTITIONS_MAX), fixed
 * at its first start; each of its instances owns some of them and takes
 * only their events. An event belongs to partition
 * mesh_partition_of(key) of N, the key being what the service chooses
 * (its subject, its FIFO group, ...).
 *
 * In the mesh a partitioned service NAME is:
 *   - its record, the key NAME of the key-value bucket MESH_SERVICES:
 *     {"partitions":N,"created_ms":T} (T: Unix milliseconds);
 *   - its partition stream MESH_PART_NAME over the subjects
 *     mesh.part.NAME.K (K = 0..N-1, in decimal), work-queue retention,
 *     a 2-minute de-duplication window;
 *   - one durable pull consumer per partition, pK, on mesh.part.NAME.K.
 *
 * A forwarder (struct mesh_partitioner) takes the events of the service's
 * sources (queues, subscriptions) and publishes each to its partition's
 * subject, headers and bytes as they are; an instance owning partition K
 * reads it with mesh_source_open(c, "partition:NAME/K", ...)
 * (mesh/source.h). Any producer may also publish to mesh.part.NAME.K
 * directly, computing K as mesh_partition_of does.
 *
 * Thread safety: the connection-level calls may be made from any thread;
 * a partitioner is for one thread at a time.
 */
#ifndef MESH_PARTITION_H
#define MESH_PARTITION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#include "mesh/conn.h"
#include "mesh/err.h"
#include "mesh/source.h"

#define MESH_PARTITIONS_MAX     1024
#define MESH_PARTITIONS_BUCKET  "MESH_SERVICES"
#define MESH_PARTITION_STREAM   "MESH_PART_%s"    /* the service */
#define MESH_PARTITION_SUBJECT  "mesh.part.%s.%d" /* service, K */
#define MESH_PARTITION_CONSUMER "p%d"             /* K */
#define MESH_PARTITION_DEDUP_S  120

/* The partition of a key among n (1-MESH_PARTITIONS_MAX): the 64-bit
 * FNV-1a hash of its len bytes, modulo n, computed as
 *
 *   h = 14695981039346656037 (0xcbf29ce484222325)
 *   for each byte b: h = (h XOR b) * 1099511628211 (0x100000001b3),
 *                    modulo 2^64
 *   partition = h mod n
 *
 * (unsigned 64-bit arithmetic throughout), so that a producer in any
 * language computes the same. An empty key is partition
 * 14695981039346656037 mod n. key may be NULL when len is 0. n out of
 * range is a bug (assert). */
int mesh_partition_of(const void *key, size_t len, int n);

/* Make service a partitioned service of n partitions, or check that it
 * is one: the first call records n (concurrent first calls with the same
 * n are fine); later calls must give the same n. Then makes the
 * partition stream and its consumers where missing (with the connection's
 * replica count, mesh_conn_replicas), so that a call also repairs what a
 * crash left half made. Errors: MESH_EINVAL (the service's name; n out of
 * 1-1024; n not the recorded count: the detail names both and when the
 * count was fixed), MESH_EBROKER and the connection's. */
mesh_err mesh_partitions_ensure(struct mesh_conn *c, const char *service,
                                int n);

/* The partition count of service into *n. Errors: MESH_EINVAL (name),
 * MESH_ENOTFOUND (the service is not partitioned), MESH_EBROKER (its
 * record is damaged), the connection's. */
mesh_err mesh_partitions_get(struct mesh_conn *c, const char *service, int *n);

/* One partition's consumer, as the broker reports it. */
struct mesh_partition_info {
	int partition;
	bool missing;         /* its consumer is gone (the rest are 0) */
	uint64_t pending;     /* stored, not yet delivered */
	uint64_t ack_pending; /* delivered, not yet acknowledged */
	uint64_t redelivered; /* delivered more than once, unacknowledged */
	uint64_t ack_floor;   /* stream sequence: all up to it acknowledged */
	uint64_t delivered;   /* stream sequence last delivered */
	int64_t last_active_ms; /* when it last delivered (Unix ms); 0 */
};

/* The partitions of service: *n (its partition count) entries in *out,
 * by partition, and when the count was fixed (*created_ms, Unix
 * milliseconds; may be NULL). Free *out with free(). Errors: as
 * mesh_partitions_get; MESH_ENOTFOUND also when the partition stream is
 * gone (the detail says so). */
mesh_err mesh_partitions_info(struct mesh_conn *c, const char *service,
                              struct mesh_partition_info **out, int *n,
                              int64_t *created_ms);

/* Remove service's record, partition stream and consumers (and with them
 * every event not yet taken). Errors: MESH_EINVAL (name), MESH_ENOTFOUND
 * (neither record nor stream exists), the connection's. */
mesh_err mesh_partitions_delete(struct mesh_conn *c, const char *service);

/* ---- the forwarder ----------------------------------------------------- */

struct mesh_partitioner;

/* A forwarder to service's partitions, which must be n (checked against
 * the record: mesh_partitions_ensure first). Errors: those of
 * mesh_partitions_get, MESH_EINVAL (n not the recorded count),
 * MESH_ENOMEM. The connection must outlive the partitioner. */
mesh_err mesh_partitioner_open(struct mesh_conn *c, const char *service, int n,
                               struct mesh_partitioner **out);

/* Free; NULL is fine. Nothing is in flight between calls. */
void mesh_partitioner_close(struct mesh_partitioner *p);

/* Forward n source messages, m[i] to partition[i] (0 to the partition
 * count - 1), all in flight at once, and wait for the broker's
 * confirmations: ok[i] says whether m[i] is stored in its partition.
 * Acknowledge exactly those at the source, and leave the others to come
 * again (or retry them): each is published with the de-duplication id
 * (Nats-Msg-Id) "<stream>:<sequence>" of its place in its source's
 * stream (from its JetStream metadata; a message without one: its event
 * id), so a message forwarded again within 2 minutes, after a crash
 * before its source's acknowledgement, is stored once.
 *
 * The message goes to its partition as it was stored, bytes and headers
 * (an unreadable event included: its owner dead-letters it), except the
 * NATS directives of its first publish (headers beginning "Nats-"), and
 * Nats-Msg-Id, which becomes the de-duplication id: when the message has
 * no Ce-Id, its old Nats-Msg-Id goes to Ce-Id, so its event id stays.
 * A message without a NATS message (m[i]->msg NULL) is written from its
 * event. Messages of one partition are stored in the order given; one
 * that failed and is forwarded again comes after those stored meanwhile.
 * The 2-minute window outlasts the sources' 30-second visibility timeout
 * and ack wait, after which an unacknowledged message comes again.
 *
 * Returns MESH_OK when every message was stored; else the error of the
 * first that was not (MESH_EINVAL: its partition out of range; MESH_
 * ENOTFOUND: the partition stream is gone; MESH_ETIMEDOUT; the
 * connection's), its detail naming it. */
mesh_err mesh_partitioner_forward(struct mesh_partitioner *p,
                                  struct mesh_source_msg *const *m,
                                  const int *partition, size_t n, bool *ok);

/* The same for NATS messages from anywhere (msgs[i] borrowed), for
 * gateways and tests: dedup_ids[i] is message i's de-duplication id, or
 * NULL (dedup_ids may be NULL) for "<stream>:<sequence>" of a JetStream
 * message, else its Ce-Id, else its Nats-Msg-Id; a message with none of
 * these fails (ok false, MESH_EINVAL). */
mesh_err mesh_partitioner_forward_msgs(struct mesh_partitioner *p,
                                       natsMsg *const *msgs,
                                       const char *const *dedup_ids,
                                       const int *partition, size_t n,
                                       bool *ok);

#endif
