/* table.c: compact schedule entries, a hash index by name, a min-heap by
 * due time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh/clock.h"
#include "mesh/err.h"
#include "table.h"

#define SLAB_BITS   12 /* 4096 entries a slab */
#define SLAB        (1u << SLAB_BITS)
#define NOT_IN_HEAP UINT32_MAX

void
mesh_sched_table_init(struct mesh_sched_table *t)
{
	memset(t, 0, sizeof(*t));
}

void
mesh_sched_table_fini(struct mesh_sched_table *t)
{
	for (size_t i = 0; i < t->n_slabs; i++) {
		free(t->slabs[i]);
	}
	free(t->slabs);
	free(t->free);
	free(t->index);
	free(t->heap);
	memset(t, 0, sizeof(*t));
}

static struct mesh_sched_entry *
at(const struct mesh_sched_table *t, uint32_t id)
{
	return &t->slabs[id >> SLAB_BITS][id & (SLAB - 1)];
}

/* FNV-1a, 64 bits: names are short. */
static uint64_t
hash(const char *name)
{
	uint64_t h = 14695981039346656037ull;

	for (; *name; name++) {
		h = (h ^ (uint8_t)*name) * 1099511628211ull;
	}
	return h;
}

struct mesh_sched_entry *
mesh_sched_table_find(struct mesh_sched_table *t, const char *name)
{
	if (t->index == NULL) {
		return NULL;
	}
	for (uint32_t i = (uint32_t)hash(name) & t->index_mask;;
	     i = (i + 1) & t->index_mask) {
		if (t->index[i] == 0) {
			return NULL;
		}
		if (strcmp(at(t, t->index[i] - 1)->name, name) == 0) {
			return at(t, t->index[i] - 1);
		}
	}
}

static void
index_put(uint32_t *index, uint32_t mask, const char *name, uint32_t id)
{
	uint32_t i = (uint32_t)hash(name) & mask;

	while (index[i] != 0) {
		i = (i + 1) & mask;
	}
	index[i] = id + 1;
}

/* Keep the index at most half full. */
static mesh_err
index_grow(struct mesh_sched_table *t)
{
	uint32_t size = t->index ? (t->index_mask + 1) * 2 : 1024, *nx;

	if (t->index != NULL && t->live + 1 <= (t->index_mask + 1) / 2) {
		return MESH_OK;
	}
	if ((nx = calloc(size, sizeof(*nx))) == NULL) {
		return mesh_err_set(MESH_ENOMEM, "schedule index");
	}
	for (uint32_t i = 0; t->index && i <= t->index_mask; i++) {
		if (t->index[i] != 0) {
			index_put(nx, size - 1, at(t, t->index[i] - 1)->name,
			          t->index[i] - 1);
		}
	}
	free(t->index);
	t->index = nx;
	t->index_mask = size - 1;
	return MESH_OK;
}

/* Linear probing's deletion: move later members of the run back, so no
 * tombstones are needed. */
static void
index_del(struct mesh_sched_table *t, uint32_t id)
{
	uint32_t mask = t->index_mask, i, j;

	for (i = (uint32_t)hash(at(t, id)->name) & mask; t->index[i] != id + 1;
	     i = (i + 1) & mask) {
	}
	t->index[i] = 0;
	for (j = (i + 1) & mask; t->index[j] != 0; j = (j + 1) & mask) {
		uint32_t home =
		        (uint32_t)hash(at(t, t->index[j] - 1)->name) & mask;
		/* May the member at j move to the hole at i? Only when its
		 * home is not in (i, j], cyclically. */
		if (i <= j ? (home <= i || home > j)
		           : (home <= i && home > j)) {
			t->index[i] = t->index[j];
			t->index[j] = 0;
			i = j;
		}
	}
}

mesh_err
mesh_sched_table_add(struct mesh_sched_table *t, const char *name,
                     struct mesh_sched_entry **out)
{
	struct mesh_sched_entry *e = mesh_sched_table_find(t, name);
	uint32_t id;
	mesh_err err;

	if (e != NULL) {
		*out = e;
		return MESH_OK;
	}
	if ((err = index_grow(t)) != MESH_OK) {
		return err;
	}
	if (t->n_free > 0) {
		id = t->free[--t->n_free];
	} else {
		if ((t->n >> SLAB_BITS) == t->n_slabs) {
			struct mesh_sched_entry **ns, *slab;
			ns = realloc(t->slabs, (t->n_slabs + 1) * sizeof(*ns));
			if (ns == NULL) {
				return mesh_err_set(MESH_ENOMEM, "schedules");
			}
			t->slabs = ns;
			if ((slab = malloc(SLAB * sizeof(*slab))) == NULL) {
				return mesh_err_set(MESH_ENOMEM, "schedules");
			}
			t->slabs[t->n_slabs++] = slab;
		}
		id = t->n++;
	}
	e = at(t, id);
	memset(e, 0, sizeof(*e));
	e->id = id;
	e->pos = NOT_IN_HEAP;
	snprintf(e->name, sizeof(e->name), "%s", name);
	index_put(t->index, t->index_mask, e->name, id);
	t->live++;
	*out = e;
	return MESH_OK;
}

int64_t
mesh_sched_entry_due(const struct mesh_sched_entry *e)
{
	int64_t due = e->fire != 0 ? e->at : 0;

	if (e->retry_fire != 0 && (due == 0 || e->retry_at < due)) {
		due = e->retry_at;
	}
	return due;
}

/* ---- the heap ----------------------------------------------------------- */

static int64_t
key(const struct mesh_sched_table *t, uint32_t pos)
{
	return mesh_sched_entry_due(at(t, t->heap[pos]));
}

static void
place(struct mesh_sched_table *t, uint32_t pos, uint32_t id)
{
	t->heap[pos] = id;
	at(t, id)->pos = pos;
}

static void
sift_up(struct mesh_sched_table *t, uint32_t pos)
{
	uint32_t id = t->heap[pos];
	int64_t k = mesh_sched_entry_due(at(t, id));

	while (pos > 0 && key(t, (pos - 1) / 2) > k) {
		place(t, pos, t->heap[(pos - 1) / 2]);
		pos = (pos - 1) / 2;
	}
	place(t, pos, id);
}

static void
sift_down(struct mesh_sched_table *t, uint32_t pos)
{
	uint32_t id = t->heap[pos];
	int64_t k = mesh_sched_entry_due(at(t, id));

	for (;;) {
		uint32_t c = 2 * pos + 1;
		if (c >= t->n_heap) {
			break;
		}
		if (c + 1 < t->n_heap && key(t, c + 1) < key(t, c)) {
			c++;
		}
		if (key(t, c) >= k) {
			break;
		}
		place(t, pos, t->heap[c]);
		pos = c;
	}
	place(t, pos, id);
}

static void
heap_out(struct mesh_sched_table *t, struct mesh_sched_entry *e)
{
	uint32_t pos = e->pos, last;

	if (pos == NOT_IN_HEAP) {
		return;
	}
	e->pos = NOT_IN_HEAP;
	last = t->heap[--t->n_heap];
	if (pos == t->n_heap) {
		return;
	}
	place(t, pos, last);
	sift_down(t, pos);
	sift_up(t, at(t, last)->pos);
}

mesh_err
mesh_sched_table_update(struct mesh_sched_table *t, struct mesh_sched_entry *e)
{
	if (mesh_sched_entry_due(e) == 0) {
		heap_out(t, e);
		return MESH_OK;
	}
	if (e->pos != NOT_IN_HEAP) {
		sift_down(t, e->pos);
		sift_up(t, e->pos);
		return MESH_OK;
	}
	if (t->n_heap == t->cap_heap) {
		uint32_t cap = t->cap_heap ? t->cap_heap * 2 : 1024, *nh;
		if ((nh = realloc(t->heap, cap * sizeof(*nh))) == NULL) {
			return mesh_err_set(MESH_ENOMEM, "schedule heap");
		}
		t->heap = nh;
		t->cap_heap = cap;
	}
	place(t, t->n_heap, e->id);
	sift_up(t, t->n_heap++);
	return MESH_OK;
}

struct mesh_sched_entry *
mesh_sched_table_first(struct mesh_sched_table *t)
{
	return t->n_heap > 0 ? at(t, t->heap[0]) : NULL;
}

struct mesh_sched_entry *
mesh_sched_table_pop(struct mesh_sched_table *t, int64_t now)
{
	struct mesh_sched_entry *e = mesh_sched_table_first(t);

	if (e == NULL || mesh_sched_entry_due(e) > now) {
		return NULL;
	}
	heap_out(t, e);
	return e;
}

void
mesh_sched_table_remove(struct mesh_sched_table *t, struct mesh_sched_entry *e)
{
	heap_out(t, e);
	index_del(t, e->id);
	if (t->n_free == t->cap_free) {
		uint32_t cap = t->cap_free ? t->cap_free * 2 : 64, *nf;
		if ((nf = realloc(t->free, cap * sizeof(*nf))) == NULL) {
			e->name[0] = '\0'; /* leaked until the table's end */
			t->live--;
			return;
		}
		t->free = nf;
		t->cap_free = cap;
	}
	t->free[t->n_free++] = e->id;
	e->name[0] = '\0';
	t->live--;
}
