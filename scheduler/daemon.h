/* mesh-scheduler's engine.
 *
 * Schedule definitions live in the change log, the stream MESH_SCHEDULES
 * (subject mesh.schedules.def.<name>, the latest definition of each kept;
 * a deletion is a message with header Mesh-Op: delete). Every replica
 * follows the log with a durable consumer of its own and applies each
 * change to its own LMDB environment, so a change made while a replica was
 * down reaches it when it comes back.
 *
 * Each replica fires every due schedule; the event of a firing has an id
 * made of the schedule's name and fire time, so JetStream's de-duplication
 * keeps one copy whichever replicas fire it. The last firing of each
 * schedule is also shared (stream MESH_SCHEDULE_FIRINGS), so a replica
 * coming back does not repeat what another already fired.
 *
 * In memory a replica keeps a compact entry per schedule in a heap by due
 * time (table.h) and reads definitions from its LMDB when they fire; it
 * also answers the request API (api.h).
 */
#ifndef MESH_SCHED_DAEMON_H
#define MESH_SCHED_DAEMON_H

#include <signal.h>

#include "mesh/conn.h"
#include "mesh/err.h"
#include "schedule.h"
#include "store.h"

#define MESH_SCHEDULES_STREAM "MESH_SCHEDULES"
#define MESH_SCHEDULES_PREFIX "mesh.schedules.def."
#define MESH_FIRINGS_STREAM   "MESH_SCHEDULE_FIRINGS"
#define MESH_FIRINGS_PREFIX   "mesh.schedules.fired."

/* Create the change log and the firings stream if missing. */
mesh_err mesh_schedules_streams(struct mesh_conn *c);

/* Write a definition to the change log. create: fail with MESH_EEXIST if
 * the schedule exists; else fail with MESH_ENOTFOUND if it does not. */
mesh_err mesh_schedules_put(struct mesh_conn *c, const struct mesh_schedule *s,
                            bool create);
mesh_err mesh_schedules_delete(struct mesh_conn *c, const char *name);

/* The current definition of a schedule from the change log. */
mesh_err mesh_schedules_get(struct mesh_conn *c, const char *name,
                            struct mesh_schedule *out);

/* The last firing any replica recorded: MESH_ENOTFOUND if none. */
mesh_err mesh_schedules_last_fired(struct mesh_conn *c, const char *name,
                                   int64_t *fire, char *outcome, size_t size);

/* Receives one JSON line per event of a replica (started, applied,
 * fired, retrying, failed, skipped, deleted, stopped); the line is valid
 * during the call. */
typedef void (*mesh_sched_log_fn)(const char *line, void *arg);

/* Run a replica until *stop is set (checked at least once a second):
 * follow the change log into st, fire what is due, answer the request API.
 * `id` names the replica (its durable consumer, made anew at each start
 * from what st has applied). log may be NULL; it is called from this
 * thread. Errors: the connection's, at start. */
mesh_err mesh_scheduler_run(struct mesh_conn *c, struct mesh_sched_store *st,
                            const char *id, volatile sig_atomic_t *stop,
                            mesh_sched_log_fn log, void *log_arg);

#endif
