/* An arena for protobuf-c: what is unpacked with &a->pb as the allocator
 * is freed all at once by mesh_arena_reset() (freeing a piece alone does
 * nothing). The first reset after it ran out makes it big enough (up to 4
 * MiB); until then what does not fit is malloc'd. For code that unpacks
 * many messages and drops them together (a batch of events).
 *
 * Thread safety: one thread at a time. */
#ifndef MESH_ARENA_H
#define MESH_ARENA_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

struct mesh_arena {
	/* Pass &a->pb to __unpack and __free_unpacked. */
	ProtobufCAllocator pb;
	uint8_t *buf;
	size_t len, cap, spilled;
	struct mesh_arena_overflow *overflow;
};

void mesh_arena_init(struct mesh_arena *a);
/* Free everything unpacked with it since the last reset. */
void mesh_arena_reset(struct mesh_arena *a);
/* Free the arena's memory; NULL-safe. */
void mesh_arena_fini(struct mesh_arena *a);

#endif
