/* Clocks in milliseconds: the wall clock (times that other hosts share:
 * deadlines in receipts, event times) and the monotonic clock (waits and
 * timeouts, which a clock step must not stretch). */
#ifndef MESH_CLOCK_H
#define MESH_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t
mesh_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t
mesh_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
