/* partitions.h: a partitioned service (runtime-internal; see
 * mesh_service_partitions in mesh/service.h and the README's
 * "Partitioned services").
 *
 *   sources --(forwarders: key -> partition)--> MESH_PART_<service>
 *   partition k (a lease held) --> store k (its own LMDB environment)
 *                                  \--> each write transaction first
 *                                       appended to MESH_CL_<service>
 *
 * Every instance forwards what its sources hand it to the partition
 * stream; an instance takes the events of partition k only while it holds
 * k's lease, after restoring k's store (its local copy brought up to the
 * changelog's tail, or a snapshot and the tail) and appending a claim to
 * k's changelog, which fences the previous owner: a write transaction
 * commits only after its changelog append, and an append expects the
 * last sequence its writer knows on k's subject.
 */
#ifndef MESH_RUNTIME_PARTITIONS_H
#define MESH_RUNTIME_PARTITIONS_H

#include <jansson.h>
#include <lmdb.h>

#include "runtime.h"

/* Set up a write transaction of a partition's store: its writes are
 * noted (undo's and the outbox's notes point at the batch's capture). */
void mesh__part_txn_begin(struct part *p, struct mesh__undo *undo);
/* Before the commit: log the transaction to the changelog (and check
 * the lease). MESH_ESTALE: fenced (another owner has the partition): the
 * caller aborts and hands the events back at once; other errors: abort,
 * the events come again later. */
mesh_err mesh__part_txn_log(struct mesh_service *s, struct part *p,
                            MDB_txn *txn);

/* Run a partitioned service until *s->stop (mesh_service_run's second
 * half, once sources and the dead-letter queue are ready). */
mesh_err mesh__parts_run(struct mesh_service *s);
/* Free the partitions (after the stats and state APIs stopped). */
void mesh__parts_free(struct mesh_service *s);

/* The partition of an event: its FIFO group for FIFO sources, else the
 * key function's key, else its subject, else its id. -1: the key
 * function gave no key (why says so). */
int mesh__part_of(const struct mesh_service *s, const struct mesh_event *ev,
                  const char *group, char *why, size_t why_size);

/* The partitions this instance owns, for its stats: an array of
 * {"partition","epoch","owned_since_ms","restore_ms","restored_bytes",
 * "restored_records","reused_local","changelog_seq","committed",
 * "fenced"}. */
json_t *mesh__parts_json(struct mesh_service *s);

/* The events the owned partitions' outboxes hold, for its stats (the
 * service's own store is not open when it is partitioned). */
size_t mesh__parts_outbox_count(struct mesh_service *s);

#endif
