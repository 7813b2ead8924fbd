/* fuzz_tzif: the TZif parser (tz.c) on any bytes, as a zone file of the
 * zoneinfo folder ($TZDIR names it, so it is input too). A zone that loads
 * answers offsets and local-time lookups for instants across its range and
 * its POSIX footer rule, and carries a cron expression's next firings. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "expr.h"
#include "fuzz.h"
#include "tz.h"

static char dir[64];
static char path[96];

static void
cleanup(void)
{
	unlink(path);
	rmdir(dir);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* A file is written per input: in memory (/dev/shm) ten times as
	 * many inputs a second as on this disk. */
	snprintf(dir, sizeof(dir), "/dev/shm/fuzz-tzif-XXXXXX");
	if (mkdtemp(dir) == NULL) {
		snprintf(dir, sizeof(dir), "/tmp/fuzz-tzif-XXXXXX");
		if (mkdtemp(dir) == NULL) {
			abort();
		}
	}
	snprintf(path, sizeof(path), "%s/zone", dir);
	atexit(cleanup);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* 1901, 1970, 2026 around DST, 2100 (past any table: the footer). */
	static const int64_t instants[] = {
	        INT64_C(-2147483648), 0,
	        INT64_C(1774746000),  INT64_C(1792800000),
	        INT64_C(4102444800),
	};
	FILE *f = fopen(path, "wb");
	struct mesh_tz *tz = NULL;
	struct mesh_sched_expr e;
	int64_t out[2], gap, t;

	if (f == NULL || fwrite(data, 1, size, f) != size) {
		abort();
	}
	fclose(f);
	if (mesh_tz_load("zone", dir, &tz) != MESH_OK) {
		return 0;
	}
	for (size_t i = 0; i < sizeof(instants) / sizeof(instants[0]); i++) {
		int32_t off = mesh_tz_offset(tz, instants[i]);
		mesh_tz_resolve(tz, instants[i] + off, out, &gap);
	}
	if (mesh_sched_parse("30 2 * * *", &e) == MESH_OK) {
		t = instants[2];
		for (int i = 0; i < 3; i++) {
			if (mesh_sched_next(&e, tz, t, 0, &t) != MESH_OK) {
				break;
			}
		}
	}
	mesh_tz_free(tz);
	return 0;
}
