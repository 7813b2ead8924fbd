/* The protobuf-c arena (broker-adapters/arena.c): aligned pieces, spills
 * past its buffer that it grows out of at the reset, and messages
 * unpacked from it whole. */
#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "harness.h"
#include "internal.h"
#include "shop.pb-c.h"

int
main(void)
{
	struct mesh_arena a;
	bool aligned = true, distinct = true;
	uint8_t *prev = NULL;

	mesh_arena_init(&a);
	/* Empty: everything spills, and the reset makes room. */
	for (int i = 0; i < 100; i++) {
		uint8_t *p =
		        a.pb.alloc(a.pb.allocator_data, (size_t)(i % 7) + 1);
		aligned = aligned && (uintptr_t)p % alignof(max_align_t) == 0;
		distinct = distinct && p != prev;
		memset(p, 0xab, (size_t)(i % 7) + 1);
		prev = p;
	}
	ok(aligned, "pieces are aligned for any type");
	ok(distinct && a.spilled > 0, "an empty arena spills to malloc");
	mesh_arena_reset(&a);
	ok(a.cap >= 100 && a.overflow == NULL && a.len == 0,
	   "the reset frees the spill and grows the buffer");
	for (int i = 0; i < 100; i++) {
		a.pb.alloc(a.pb.allocator_data, (size_t)(i % 7) + 1);
	}
	ok(a.spilled == 0, "the same load then fits");
	mesh_arena_reset(&a);

	/* A message unpacked from it is whole. */
	{
		Evmesh__Shop__PlaceOrder po = EVMESH__SHOP__PLACE_ORDER__INIT,
		                         *got;
		uint8_t buf[256];
		size_t len;
		po.order_id = "o-1";
		po.country = "DE";
		po.total_cents = 1234;
		len = evmesh__shop__place_order__pack(&po, buf);
		got = evmesh__shop__place_order__unpack(&a.pb, len, buf);
		ok(got != NULL && strcmp(got->order_id, "o-1") == 0 &&
		           strcmp(got->country, "DE") == 0 &&
		           got->total_cents == 1234,
		   "a message unpacks into it whole");
		evmesh__shop__place_order__free_unpacked(got, &a.pb);
		mesh_arena_reset(&a);
	}
	/* A piece bigger than the most it keeps still comes (malloc'd). */
	{
		uint8_t *big = a.pb.alloc(a.pb.allocator_data, 8u << 20);
		ok(big != NULL, "a piece over 4 MiB is still given");
		if (big != NULL) {
			memset(big, 1, 8u << 20);
		}
		mesh_arena_reset(&a);
		ok(a.cap <= 4u << 20, "... and the arena keeps at most 4 MiB");
	}
	mesh_arena_fini(&a);
	return tap_done();
}
