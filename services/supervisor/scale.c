/* scale.c: the supervisor's decision (see scale.h). */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>

#include "scale.h"

static int
clamp(int n, int lo, int hi)
{
	return n < lo ? lo : n > hi ? hi : n;
}

int
scale_decide(struct scale_state *st, const struct scale_limits *lim,
             const struct scale_reading *r, char *why, size_t why_size)
{
	uint64_t target =
	        lim->target_backlog > 0 ? (uint64_t)lim->target_backlog : 1;
	uint64_t load = r->backlog + r->request_load;
	uint64_t want64 = (load + target - 1) / target;
	int want = want64 > (uint64_t)lim->max ? lim->max : (int)want64;
	bool worked = st->seen > 0 && r->delivered != st->last_delivered;
	bool asked = st->seen > 0 && r->requests != st->last_requests;
	bool draining = st->seen > 0 && load < st->last_backlog;
	int out = r->running;
	char of_which[48] = "";

	why[0] = '\0';
	if (r->request_load > 0) {
		snprintf(of_which, sizeof(of_which),
		         ", %" PRIu64 " of it requests", r->request_load);
	}
	if (load > 0 || worked || asked || st->seen == 0) {
		st->work_ms = r->now_ms;
	}
	if (r->running > 1 && (uint64_t)(r->running - 1) * target > load &&
	    r->running > lim->min) {
		if (!st->low) {
			st->low = true;
			st->low_since_ms = r->now_ms;
		}
	} else {
		st->low = false;
	}

	if (r->running < lim->min) {
		out = lim->min;
		snprintf(why, why_size, "below min %d", lim->min);
	} else if (want > r->running && !draining) {
		out = want;
		snprintf(why, why_size,
		         "backlog %" PRIu64 "%s (was %" PRIu64 ") at %" PRIu64
		         " per instance wants %d%s",
		         load, of_which, st->last_backlog, target, (int)want,
		         want64 > (uint64_t)lim->max ? " (max)" : "");
	} else if (r->running > lim->min &&
	           r->now_ms - st->work_ms >= lim->idle_ms) {
		out = lim->min;
		snprintf(why, why_size,
		         "idle for %" PRId64 " ms: nothing waiting, nothing "
		         "taken, no request",
		         r->now_ms - st->work_ms);
	} else if (st->low && r->now_ms - st->low_since_ms >= lim->idle_ms) {
		out = r->running - 1;
		snprintf(why, why_size,
		         "backlog %" PRIu64
		         "%s held by %d instances for %" PRId64 " ms",
		         load, of_which, out, r->now_ms - st->low_since_ms);
		st->low = false;
	}
	st->last_backlog = load;
	st->last_delivered = r->delivered;
	st->last_requests = r->requests;
	st->seen++;
	return clamp(out, lim->min, lim->max);
}
