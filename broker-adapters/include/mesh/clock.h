/* Clocks in milliseconds: the wall clock (times that other hosts share:
 * deadlines in receipts, event times) and the monotonic clock (waits and
 * timeouts, which a clock step must not stretch). */
#ifndef MESH_CLOCK_H
#define MESH_CLOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "mesh/err.h"

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

/* ---- times as text (clock.c) ---------------------------------------------
 * The years a time may name: 1970-2199. */
#define MESH_TIME_YEAR_MIN 1970
#define MESH_TIME_YEAR_MAX 2199

/* Days since 1970-01-01 of a civil date, and back (proleptic Gregorian;
 * Howard Hinnant's algorithms). */
int64_t mesh_days_from_civil(int64_t y, unsigned m, unsigned d);
void mesh_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d);

/* Read "yyyy-mm-dd[Thh:mm[:ss]]" (a 'T' or a space before the time; the
 * time required when need_time) at s as seconds of a day count, without
 * a zone; *rest is what follows. False when it is no such date (Feb 30
 * too). */
bool mesh_time_parse_local(const char *s, bool need_time, int64_t *local,
                           const char **rest);

/* An ISO-8601 time, "yyyy-mm-ddThh:mm[:ss]" with "Z" or "+hh:mm"/"-hh:mm"
 * (UTC then, *zoned true) or without (*zoned false: *out is the local
 * time's count, for the caller's zone). Errors: MESH_EINVAL, naming the
 * text and what is wrong. */
mesh_err mesh_time_parse_zoned(const char *text, int64_t *out, bool *zoned);

/* An ISO-8601 time as Unix seconds; without a zone, UTC. Errors:
 * MESH_EINVAL. */
mesh_err mesh_time_parse(const char *text, int64_t *out);

/* Unix seconds as "yyyy-mm-ddThh:mm:ssZ". */
void mesh_time_format(int64_t t, char out[32]);

/* A duration: a whole number in `unit` seconds, or with a suffix s, m, h
 * or d; 0 to 100 years. False when it is none. */
bool mesh_duration_parse(const char *text, int64_t unit, int64_t *out);

#endif
