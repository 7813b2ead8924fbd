/* scale.h: how many instances a function wants, from what its sources
 * hold: the supervisor's one decision, pure (no I/O, no clock of its own),
 * so that tests can drive it with made-up readings. */
#ifndef SUPERVISOR_SCALE_H
#define SUPERVISOR_SCALE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What is known of a function at one reading. */
struct scale_reading {
	int64_t now_ms;     /* monotonic */
	int running;        /* instances running or starting (not stopping) */
	uint64_t backlog;   /* waiting + in flight, over its sources */
	uint64_t delayed;   /* queues' delayed messages (not yet work) */
	uint64_t delivered; /* the sources' delivered counters, summed */
	uint64_t requests;  /* requests its instances answered, a count
	                       that only grows (the supervisor sums each
	                       instance's increase); 0 for a function that
	                       serves none */
	uint64_t request_load; /* requests queued at its instances or being
	                          served, now: backlog as events are */
};

/* The function's limits (from its definition). */
struct scale_limits {
	int min, max;
	int64_t target_backlog; /* per instance */
	int64_t idle_ms;
};

/* Memory between readings. Zero it to start. */
struct scale_state {
	int64_t work_ms;      /* the last reading that saw work (waiting, or
	                         taken since the reading before) */
	bool low;             /* fewer instances would do ... */
	int64_t low_since_ms; /* ... since then */
	uint64_t last_backlog;
	uint64_t last_delivered;
	uint64_t last_requests;
	int seen; /* readings taken */
};

/* The instance count wanted after reading r, and why (a sentence, for
 * logs and meshctl function info) when it differs from r->running.
 *
 * The backlog is the sources' events plus the requests at the instances
 * (request_load): a request waiting or being served counts as an event
 * waiting, as Lambda counts concurrency.
 * Up: ceil(backlog / target_backlog) instances (at least 1 with any
 * backlog), up to max, whenever that is more than run now and the backlog
 * is not draining (no smaller than at the last reading): a burst reaches
 * max in one reading. Down: to min when nothing waited, nothing was
 * taken and no request was answered for idle_ms (requests are work: a
 * function that serves them is not idle while they come); one instance
 * fewer when one fewer would hold the backlog under target each, for
 * idle_ms. Never below min. */
int scale_decide(struct scale_state *st, const struct scale_limits *lim,
                 const struct scale_reading *r, char *why, size_t why_size);

#endif
