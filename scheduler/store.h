/* A scheduler replica's own state, in its own LMDB environment:
 *   defs   schedule name -> definition (JSON), as the change log has it
 *   fired  schedule name -> "<last fire time> <outcome>"
 *   meta   "applied" -> the change-log sequence applied last
 * Every write is one durable transaction. Readers may run in any thread.
 */
#ifndef MESH_SCHED_STORE_H
#define MESH_SCHED_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "mesh/err.h"

struct mesh_sched_store;

/* Open (creating) the environment in folder dir. Errors: MESH_EIO,
 * MESH_ESTORE, MESH_ENOMEM, with the folder in the detail. */
mesh_err mesh_sched_store_open(const char *dir, struct mesh_sched_store **out);
void mesh_sched_store_close(struct mesh_sched_store *st);

/* Apply one change-log entry: json NULL deletes the schedule. Records
 * `seq` as applied, in the same transaction. */
mesh_err mesh_sched_store_apply(struct mesh_sched_store *st, const char *name,
                                const char *json, size_t len, uint64_t seq);
uint64_t mesh_sched_store_applied(struct mesh_sched_store *st);

/* Call fn for every definition (in name order); stops at a non-OK. */
mesh_err mesh_sched_store_each(struct mesh_sched_store *st,
                               mesh_err (*fn)(const char *json, size_t len,
                                              void *arg),
                               void *arg);

/* The last firing of a schedule: MESH_ENOTFOUND when it never fired. */
mesh_err mesh_sched_store_fired(struct mesh_sched_store *st, const char *name,
                                int64_t *last, char *outcome, size_t size);
mesh_err mesh_sched_store_set_fired(struct mesh_sched_store *st,
                                    const char *name, int64_t last,
                                    const char *outcome);

#endif
