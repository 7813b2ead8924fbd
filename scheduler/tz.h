/* IANA time zones from the system's zoneinfo (TZif files, and the POSIX TZ
 * rule in their footer for times past the last listed transition).
 *
 * A zone is loaded once and is then read-only: share it between threads.
 */
#ifndef MESH_TZ_H
#define MESH_TZ_H

#include <stdint.h>

#include "mesh/clock.h"
#include "mesh/err.h"

#define MESH_TZ_DIR "/usr/share/zoneinfo"

struct mesh_tz;

/* Load zone `name` ("Europe/Berlin", "UTC") from dir (NULL: MESH_TZ_DIR,
 * or $TZDIR). Errors: MESH_EINVAL (a malformed name, or not a zone file),
 * MESH_ENOTFOUND (no such zone: "unknown time zone 'X'"), MESH_ENOMEM. */
mesh_err mesh_tz_load(const char *name, const char *dir, struct mesh_tz **out);
void mesh_tz_free(struct mesh_tz *tz);
const char *mesh_tz_name(const struct mesh_tz *tz);

/* Zone `name` from the system's zoneinfo, loaded at most once per process
 * and shared: *out is borrowed until mesh_tz_shared_free(). Thread safe.
 * Errors as mesh_tz_load's. */
mesh_err mesh_tz_shared(const char *name, const struct mesh_tz **out);
/* Free the shared zones; none may be in use. */
void mesh_tz_shared_free(void);

/* The zone's offset from UTC, in seconds, at instant t (Unix seconds). */
int32_t mesh_tz_offset(const struct mesh_tz *tz, int64_t t);

/* The instants at which the local wall time `local` (seconds since the
 * epoch, counted as if it were UTC) is shown: 0 (it falls in a gap),
 * 1, or 2 (a repeated hour; out[0] < out[1]). When 0, *gap_end (optional)
 * gets the instant the gap ends (the first instant after the jump). */
int mesh_tz_resolve(const struct mesh_tz *tz, int64_t local, int64_t out[2],
                    int64_t *gap_end);

/* Civil dates, proleptic Gregorian. */

/* A zone a schedule or a request names that does not exist is a bad
 * value there: MESH_ENOTFOUND becomes MESH_EINVAL, keeping its detail
 * ("unknown time zone 'X'"); other errors pass. */
mesh_err mesh_sched_zone_err(mesh_err err);

#endif
