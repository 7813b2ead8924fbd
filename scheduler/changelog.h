/* The schedules' change log on JetStream, which the request API writes
 * and every replica follows: the stream MESH_SCHEDULES (subject
 * mesh.schedules.def.<name>, the latest definition of each kept; a
 * deletion is a message with header Mesh-Op: delete), and the last firing
 * of each schedule any replica recorded (MESH_SCHEDULE_FIRINGS). */
#ifndef MESH_SCHED_CHANGELOG_H
#define MESH_SCHED_CHANGELOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#include "mesh/conn.h"
#include "mesh/err.h"
#include "schedule.h"

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

/* Whether a change-log message deletes its schedule. */
bool mesh_schedules_is_delete(natsMsg *m);

#endif
