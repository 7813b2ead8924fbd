/* Schedule expressions: when a schedule fires.
 *
 *   cron(min hour day-of-month month day-of-week year)   EventBridge's
 *   rate(N minute|minutes|hour|hours|day|days|second|seconds)
 *   at(yyyy-mm-ddThh:mm:ss)                               one time
 *   m h dom mon dow  |  s m h dom mon dow  |  @daily ...  Unix (Vixie) cron
 *
 * EventBridge cron: `*`, `,`, `-`, `/`, `?` (one of day-of-month and
 * day-of-week must be `?`), `L`, `W`, `LW`, `#`, month and day names,
 * day-of-week 1-7 = SUN-SAT, year 1970-2199. Unix cron: day-of-week 0-7
 * (0 and 7 are Sunday), names, and Vixie's rule that when both day fields
 * are restricted (neither starts with `*`) a day matches when either does.
 *
 * Daylight-saving time, as each format documents it:
 *   cron(...): a local time that does not exist is skipped; a repeated local
 *     time fires once (at its first occurrence).
 *   Unix cron (Vixie/cronie): a fixed-time job (minute and hour fields not
 *     starting with `*`) whose time falls in the skipped gap runs at the
 *     first instant after the jump; in a repeated hour it runs once. A job
 *     whose minute or hour field is a wildcard or step follows the clock:
 *     skipped times do not run, repeated ones run in both passes.
 *   at(...): a time in a gap fires at the first instant after the jump; a
 *     repeated one at its first occurrence.
 *
 * Parsing takes outside input: any text gives a result or an error naming
 * the field at fault, never a crash.
 */
#ifndef MESH_SCHED_EXPR_H
#define MESH_SCHED_EXPR_H

#include <stdbool.h>
#include <stdint.h>

#include "mesh/err.h"
#include "tz.h"

#define MESH_SCHED_EXPR_MAX 256

typedef enum {
	MESH_SCHED_CRON = 1, /* EventBridge cron(...) */
	MESH_SCHED_UNIX,     /* bare Unix cron */
	MESH_SCHED_RATE,
	MESH_SCHED_AT,
} mesh_sched_kind;

struct mesh_sched_expr {
	mesh_sched_kind kind;
	/* cron and Unix cron: sets of allowed values, one bit each */
	uint64_t sec;     /* 0-59 (Unix with 6 fields; else {0}) */
	uint64_t min;     /* 0-59 */
	uint32_t hour;    /* 0-23 */
	uint32_t dom;     /* 1-31 */
	uint16_t month;   /* 1-12 */
	uint8_t dow;      /* 0-6, 0 = Sunday */
	uint64_t year[4]; /* 1970-2199 (cron); all for Unix */
	bool dom_star;    /* Vixie: the field starts with `*` */
	bool dow_star;
	bool dom_last;         /* L: the last day of the month */
	bool dom_last_weekday; /* LW */
	uint32_t dom_weekday;  /* nW: the weekday nearest day n (bit n) */
	uint8_t dow_last;   /* dL: the last weekday d of the month (bit d) */
	uint8_t dow_nth[7]; /* d#n: bit n of dow_nth[d] */
	bool fixed_time;    /* Vixie: minute and hour not starting with * */
	/* rate */
	int64_t rate_s;
	/* at: the local wall time, in seconds as if UTC */
	int64_t at_local;
};

/* Parse an expression. Errors: MESH_EINVAL, the detail naming the field
 * and the fault ("cron(...): field 3 (day-of-month) '32' is out of range
 * 1-31"). */
mesh_err mesh_sched_parse(const char *text, struct mesh_sched_expr *out);

/* The first firing strictly after `after` (Unix seconds) in zone tz, into
 * *next. `anchor` is a rate schedule's start (firings at anchor + k*rate,
 * k >= 1); other kinds ignore it. Errors: MESH_ENOTFOUND when the schedule
 * never fires again (a past at(), or a cron whose days never come). */
mesh_err mesh_sched_next(const struct mesh_sched_expr *e,
                         const struct mesh_tz *tz, int64_t after,
                         int64_t anchor, int64_t *next);

/* Format an instant as "2026-03-08T07:00:00Z" (21 bytes with the NUL). */
void mesh_sched_format(int64_t t, char out[32]);

/* Parse ISO-8601 "yyyy-mm-ddThh:mm[:ss][Z|+hh:mm|-hh:mm]" (or a date alone).
 * Without a zone designator the time is a wall time in tz (which may be
 * NULL for UTC). Errors: MESH_EINVAL. */
mesh_err mesh_sched_parse_time(const char *text, const struct mesh_tz *tz,
                               int64_t *out);

#endif
