/* outbox.h: what handlers emit, kept in the service's LMDB environment in
 * the batch's transaction and published after it commits
 * (runtime-internal).
 *
 * A record (key: its sequence, 8 bytes big-endian): target NUL group NUL
 * packed event. The last sequence is in the meta database under
 * "outbox". mesh__outbox_flush publishes records through a sink and notes
 * the published ones; the next write transaction deletes them
 * (mesh__outbox_forget). A crash in between publishes a record again,
 * with its event id as Nats-Msg-Id: JetStream drops the repeat within
 * its 5-minute window, and a consuming service drops it by its id.
 *
 * Thread safety: every call may be made from any thread; one flush runs
 * at a time.
 */
#ifndef MESH_RUNTIME_OUTBOX_H
#define MESH_RUNTIME_OUTBOX_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#include "mesh/event.h"
#include "undo.h"

#define MESH__OUTBOX_CHUNK  256 /* records handed to the sink at once */
#define MESH__OUTBOX_TARGET 300 /* "topic:NAME" / "queue:NAME" + NUL */

/* A record to publish: all of one call's records have one target. */
struct mesh__outbox_msg {
	uint64_t seq;
	char target[MESH__OUTBOX_TARGET];
	char group[160]; /* FIFO MessageGroupId; "" none */
	struct mesh_event *ev;
};

/* Publish n (1-MESH__OUTBOX_CHUNK) records of one target, in order; ok[i]
 * says which are stored. */
typedef void (*mesh__outbox_sink_fn)(void *arg,
                                     const struct mesh__outbox_msg *m,
                                     size_t n, bool *ok);
/* A line for the log (an unreadable record). */
typedef void (*mesh__outbox_log_fn)(void *arg, const char *line);

struct mesh__outbox {
	MDB_env *env;
	MDB_dbi db, meta;
	mesh__outbox_sink_fn sink;
	mesh__outbox_log_fn log;
	void *arg; /* the sink's and the log's */

	pthread_mutex_t done_mu; /* published, not yet deleted */
	uint64_t *done;
	size_t n_done, cap_done;
	pthread_mutex_t flush_mu; /* one flush at a time */
	struct mesh__wnote note;  /* told of the records forgotten */
};

void mesh__outbox_init(struct mesh__outbox *o, mesh__outbox_sink_fn sink,
                       mesh__outbox_log_fn log, void *arg);
/* The environment and its two databases, once open. */
void mesh__outbox_bind(struct mesh__outbox *o, MDB_env *env, MDB_dbi db,
                       MDB_dbi meta);
void mesh__outbox_fini(struct mesh__outbox *o);

/* Add a record in txn, noted in u (undone with the event's other writes).
 * Returns 0, an LMDB error or ENOMEM. */
int mesh__outbox_put(struct mesh__outbox *o, MDB_txn *txn,
                     struct mesh__undo *u, const char *target,
                     const char *group, const uint8_t *ev, size_t len);

/* The last sequence given out (0: none yet), as txn sees it. */
uint64_t mesh__outbox_last(const struct mesh__outbox *o, MDB_txn *txn);

/* Publish the records from sequence `from` on (0: all) that are not yet
 * published, target by target. Returns how many there were to publish. */
size_t mesh__outbox_flush(struct mesh__outbox *o, uint64_t from);

/* Delete, in txn, the records published so far. Returns 0 or the LMDB
 * error (they are then kept for the next transaction). */
int mesh__outbox_forget(struct mesh__outbox *o, MDB_txn *txn);

/* Records not yet published (published ones not yet deleted do not
 * count). */
size_t mesh__outbox_count(struct mesh__outbox *o);

#endif
