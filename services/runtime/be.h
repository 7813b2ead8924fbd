/* be.h: big-endian integers in keys and records, so that LMDB's byte
 * order is their numeric order (runtime-internal). */
#ifndef MESH_RUNTIME_BE_H
#define MESH_RUNTIME_BE_H

#include <stdint.h>

static inline void
mesh__be64(uint8_t out[8], uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		out[i] = (uint8_t)v;
		v >>= 8;
	}
}

static inline uint64_t
mesh__from_be64(const uint8_t in[8])
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++) {
		v = v << 8 | in[i];
	}
	return v;
}

static inline void
mesh__be32(uint8_t out[4], uint32_t v)
{
	out[0] = (uint8_t)(v >> 24);
	out[1] = (uint8_t)(v >> 16);
	out[2] = (uint8_t)(v >> 8);
	out[3] = (uint8_t)v;
}

static inline uint32_t
mesh__from_be32(const uint8_t in[4])
{
	return (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 |
	       (uint32_t)in[2] << 8 | in[3];
}

#endif
