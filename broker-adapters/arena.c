/* arena.c: a bump allocator for protobuf-c's unpacking (see mesh/arena.h).
 * Unpacking an event allocates a dozen small pieces that all die together
 * a moment later; from an arena they cost a pointer bump each and one
 * reset, instead of a malloc and a free each. */
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define ARENA_FIRST (16 * 1024)
#define ARENA_MAX   (4 * 1024 * 1024) /* kept between resets, at most */

/* Pieces that did not fit: malloc'd, freed at the reset. */
struct mesh_arena_overflow {
	struct mesh_arena_overflow *next;
	max_align_t data[];
};

static void *
arena_alloc(void *arg, size_t size)
{
	struct mesh_arena *a = arg;
	size_t at = (a->len + alignof(max_align_t) - 1) &
	            ~(alignof(max_align_t) - 1);
	struct mesh_arena_overflow *o;

	if (a->buf != NULL && at <= a->cap && size <= a->cap - at) {
		a->len = at + size;
		return a->buf + at;
	}
	if (size > SIZE_MAX - sizeof(*o) ||
	    (o = malloc(sizeof(*o) + size)) == NULL) {
		return NULL;
	}
	o->next = a->overflow;
	a->overflow = o;
	a->spilled += size + alignof(max_align_t);
	return o->data;
}

static void
arena_free(void *arg, void *p)
{
	(void)arg;
	(void)p; /* all at the reset */
}

void
mesh_arena_init(struct mesh_arena *a)
{
	memset(a, 0, sizeof(*a));
	a->pb.alloc = arena_alloc;
	a->pb.free = arena_free;
	a->pb.allocator_data = a;
}

void
mesh_arena_reset(struct mesh_arena *a)
{
	size_t want = a->len + a->spilled;

	while (a->overflow != NULL) {
		struct mesh_arena_overflow *o = a->overflow;
		a->overflow = o->next;
		free(o);
	}
	/* It spilled: grow, so that next time it does not. */
	if (a->spilled > 0 && want <= ARENA_MAX) {
		size_t cap = a->cap ? a->cap : ARENA_FIRST;
		uint8_t *buf;
		while (cap < want) {
			cap *= 2;
		}
		if ((buf = malloc(cap)) != NULL) {
			free(a->buf);
			a->buf = buf;
			a->cap = cap;
		}
	}
	a->len = a->spilled = 0;
}

void
mesh_arena_fini(struct mesh_arena *a)
{
	mesh_arena_reset(a);
	free(a->buf);
	a->buf = NULL;
	a->cap = 0;
}
