/* mesh-scheduler's engine.
 *
 * Schedule definitions live in the change log (changelog.h). Every replica
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

#include "changelog.h"
#include "mesh/conn.h"
#include "mesh/err.h"
#include "schedule.h"
#include "store.h"

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
