/* A scheduler replica's own state, in its own LMDB environment:
 *   defs   schedule name -> definition (JSON), as the change log has it
 *   fired  schedule name -> "<last fire time> <outcome>"
 *   meta   "applied" -> the change-log sequence applied last
 * Writes go in transactions (mesh_sched_txn), each committed durably and
 * holding as many changes as the caller batches. Readers may run in any
 * thread.
 */
#ifndef MESH_SCHED_STORE_H
#define MESH_SCHED_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mesh/err.h"

struct mesh_sched_store;
struct mesh_sched_rec;

/* Open (creating) the environment in folder dir. Errors: MESH_EIO,
 * MESH_ESTORE, MESH_ENOMEM, with the folder in the detail. */
mesh_err mesh_sched_store_open(const char *dir, struct mesh_sched_store **out);
void mesh_sched_store_close(struct mesh_sched_store *st);

/* The change-log sequence applied last (0: none). */
uint64_t mesh_sched_store_applied(struct mesh_sched_store *st);

/* Call fn for every definition (in name order), in one read-only
 * snapshot; stops at a non-OK, which it returns. */
mesh_err mesh_sched_store_each(struct mesh_sched_store *st,
                               mesh_err (*fn)(const struct mesh_sched_rec *rec,
                                              void *arg),
                               void *arg);

/* A transaction: a batch of writes (committed at once, durably) or a
 * read-only snapshot. One thread uses it; a thread holds at most one write
 * transaction at a time. Pointers read through it are valid until it ends.
 * Errors of begin and commit: MESH_ESTORE, MESH_EFULL (the map is full),
 * with the folder in the detail; of the others, with the schedule's name. */
struct mesh_sched_txn;
mesh_err mesh_sched_txn_begin(struct mesh_sched_store *st, bool write,
                              struct mesh_sched_txn **out);
mesh_err mesh_sched_txn_commit(struct mesh_sched_txn *t); /* frees t */
void mesh_sched_txn_abort(struct mesh_sched_txn *t);      /* NULL is fine */

/* In a write transaction: apply one change-log entry (json NULL deletes
 * the schedule and its last firing); record a last firing; record the
 * change-log sequence applied, in the transaction of the changes it
 * covers. */
mesh_err mesh_sched_txn_apply(struct mesh_sched_txn *t, const char *name,
                              const char *json, size_t len);
mesh_err mesh_sched_txn_set_fired(struct mesh_sched_txn *t, const char *name,
                                  int64_t last, const char *outcome);
mesh_err mesh_sched_txn_set_applied(struct mesh_sched_txn *t, uint64_t seq);

/* A definition, zero-copy: *json stays valid until the transaction ends.
 * Errors: MESH_ENOTFOUND. */
mesh_err mesh_sched_txn_def(struct mesh_sched_txn *t, const char *name,
                            const char **json, size_t *len);
/* The last firing: MESH_ENOTFOUND when it never fired. outcome may be
 * NULL. */
mesh_err mesh_sched_txn_fired(struct mesh_sched_txn *t, const char *name,
                              int64_t *last, char *outcome, size_t size);

/* A definition as mesh_sched_store_each hands it out: borrowed for the
 * call. */
struct mesh_sched_rec {
	const char *name; /* not NUL-terminated */
	size_t name_len;
	const char *json;
	size_t len;
	int64_t last_fired; /* 0: never fired */
};

/* The last firing of a schedule: MESH_ENOTFOUND when it never fired. */
mesh_err mesh_sched_store_fired(struct mesh_sched_store *st, const char *name,
                                int64_t *last, char *outcome, size_t size);

#endif
