/* A replica's schedules in memory: what the firing loop needs and no more.
 *
 * Each schedule is a compact entry (its name, its next firing, a retry in
 * progress; about 130 bytes with the index and heap slots), while its
 * definition stays in the replica's LMDB and is read when it fires. Entries
 * are found by name through an open-addressing hash index, and ordered by
 * when they are due in a binary min-heap, so the loop sleeps until the
 * earliest. Entries live in fixed slabs: a pointer to one stays valid until
 * it is removed.
 *
 * Not thread safe: the firing loop owns its table.
 */
#ifndef MESH_SCHED_TABLE_H
#define MESH_SCHED_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mesh/err.h"
#include "schedule.h"

struct mesh_sched_entry {
	int64_t fire;       /* next firing, Unix seconds; 0: none */
	int64_t at;         /* when it is published (fire + window offset) */
	int64_t retry_fire; /* a failed firing being retried; 0: none */
	int64_t retry_at;   /* when its next attempt is due */
	uint32_t id;        /* its index in the table (table-private) */
	uint32_t pos;       /* in the heap, or NOT_IN_HEAP (table-private) */
	uint16_t attempt;   /* the retry's attempt number */
	bool missed;        /* fire is a missed firing, fired at start */
	char name[MESH_SCHEDULE_NAME_MAX + 1];
};

struct mesh_sched_table {
	struct mesh_sched_entry **slabs;
	size_t n_slabs;
	uint32_t n;     /* entries used, free ones included */
	uint32_t *free; /* indices of removed entries */
	uint32_t n_free, cap_free;
	uint32_t *index; /* hash index: entry index + 1; 0 empty */
	uint32_t index_mask;
	uint32_t *heap; /* entry indices ordered by due time */
	uint32_t n_heap, cap_heap;
	size_t live;
};

void mesh_sched_table_init(struct mesh_sched_table *t);
void mesh_sched_table_fini(struct mesh_sched_table *t);

/* The entry of a schedule, or NULL. */
struct mesh_sched_entry *mesh_sched_table_find(struct mesh_sched_table *t,
                                               const char *name);
/* The entry of a schedule, made (zeroed, not due) when missing. Errors:
 * MESH_ENOMEM. */
mesh_err mesh_sched_table_add(struct mesh_sched_table *t, const char *name,
                              struct mesh_sched_entry **out);
void mesh_sched_table_remove(struct mesh_sched_table *t,
                             struct mesh_sched_entry *e);

/* When the loop must next act on e (its firing or its retry), Unix
 * seconds; 0: never. */
int64_t mesh_sched_entry_due(const struct mesh_sched_entry *e);

/* Put e in its place in the heap after its times changed (out of it when
 * no longer due). Errors: MESH_ENOMEM. */
mesh_err mesh_sched_table_update(struct mesh_sched_table *t,
                                 struct mesh_sched_entry *e);
/* Take the entry due first out of the heap when it is due at or before
 * `now` (Unix seconds); NULL when none is. mesh_sched_table_update()
 * puts it back. */
struct mesh_sched_entry *mesh_sched_table_pop(struct mesh_sched_table *t,
                                              int64_t now);
/* The entry due first, or NULL. */
struct mesh_sched_entry *mesh_sched_table_first(struct mesh_sched_table *t);

#endif
