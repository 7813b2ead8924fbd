/* fuzz_sched_expr: schedule expressions (cron, Unix cron, rate, at) and
 * ISO-8601 times, as meshctl and the request API take them. Input: a byte
 * choosing the zone, 5 bytes of a starting instant, the text. An
 * expression that parses gets a few next firings computed, each after the
 * one before, and each must be later than it: the work per input stays
 * bounded and a search that goes backwards is caught. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "expr.h"
#include "fuzz.h"
#include "tz.h"

/* Zones with each kind of transition: none, DST at 02:00 both ways, the
 * southern hemisphere, a 30-minute DST, a 45-minute offset, DST abolished
 * (and a footer rule with none), a half-hour offset. */
static const char *const zones[] = {
        "UTC",
        "Europe/Berlin",
        "America/New_York",
        "Australia/Sydney",
        "Australia/Lord_Howe",
        "Pacific/Chatham",
        "America/Sao_Paulo",
        "Asia/Kolkata",
};
#define N_ZONES  (sizeof(zones) / sizeof(zones[0]))
#define FIRINGS  4
#define YEAR2200 INT64_C(7258118400)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = {data, size};
	const struct mesh_tz *tz = NULL;
	struct mesh_sched_expr e;
	char text[MESH_SCHED_EXPR_MAX * 2];
	uint64_t t = 0;
	int64_t after, anchor, next, parsed;
	const char *zone = zones[fuzz_byte(&in) % N_ZONES];

	for (int i = 0; i < 5; i++) {
		t = t << 8 | fuzz_byte(&in);
	}
	/* 1970 to 2200: the years cron(...) can name. */
	after = (int64_t)(t % (uint64_t)YEAR2200);
	anchor = after / 2;
	if (in.n >= sizeof(text)) {
		return 0;
	}
	memcpy(text, in.p, in.n);
	text[in.n] = '\0';
	if (mesh_tz_shared(zone, &tz) != MESH_OK) {
		abort(); /* the zones above are in tzdata */
	}
	mesh_sched_parse_time(text, tz, &parsed);
	if (mesh_sched_parse(text, &e) != MESH_OK) {
		return 0;
	}
	for (int i = 0; i < FIRINGS; i++) {
		if (mesh_sched_next(&e, tz, after, anchor, &next) != MESH_OK) {
			break;
		}
		if (next <= after) {
			abort(); /* the next firing must come after */
		}
		after = next;
	}
	return 0;
}
