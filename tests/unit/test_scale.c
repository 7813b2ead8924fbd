/* The supervisor's decision (services/supervisor/scale.h) over made-up
 * readings: up with the backlog (to max in one reading), held while it
 * drains, down one at a time when fewer would do, to min after idle,
 * never below min nor above max; requests answered are work (a function
 * serving them is not idle), and those waiting at the instances are
 * backlog (they add instances; their count alone does not). The real
 * supervisor is tested in tests/integration/test_supervisor.c. */
#include <string.h>

#include "harness.h"
#include "scale.h"

/* One reading: delivered is the sources' counter, requests the answered
 * count of a function that serves requests. */
static int
read_at(struct scale_state *st, const struct scale_limits *lim, int64_t now,
        int running, uint64_t backlog, uint64_t delivered, uint64_t requests,
        char *why)
{
	struct scale_reading r = {.now_ms = now,
	                          .running = running,
	                          .backlog = backlog,
	                          .delivered = delivered,
	                          .requests = requests};

	return scale_decide(st, lim, &r, why, 256);
}

#define decide(st, lim, now, running, backlog, delivered, why)                \
	read_at(st, lim, now, running, backlog, delivered, 0, why)
#define decide_req(st, lim, now, running, backlog, requests, why)             \
	read_at(st, lim, now, running, backlog, 0, requests, why)

int
main(void)
{
	struct scale_limits lim = {
	        .min = 0, .max = 4, .target_backlog = 100, .idle_ms = 1000};
	struct scale_state st;
	char why[256];

	memset(&st, 0, sizeof(st));
	is_int(decide(&st, &lim, 0, 1, 5000, 0, why), 4,
	       "a burst wants max at the first reading");
	has_str(why, "(max)", "and says max capped it");
	memset(&st, 0, sizeof(st));
	is_int(decide(&st, &lim, 0, 1, 250, 0, why), 3,
	       "250 waiting at 100 each: 3 instances");
	is_int(decide(&st, &lim, 100, 3, 400, 10, why), 4,
	       "a growing backlog adds more");
	is_int(decide(&st, &lim, 200, 4, 900, 20, why), 4, "never past max");
	is_int(decide(&st, &lim, 300, 2, 300, 30, why), 2,
	       "a draining backlog is left to the instances running");
	is_str(why, "", "no decision, no reason");

	memset(&st, 0, sizeof(st));
	is_int(decide(&st, &lim, 0, 3, 50, 0, why), 3,
	       "fewer would do: not at once");
	is_int(decide(&st, &lim, 999, 3, 50, 10, why), 3,
	       "nor before idle_ms");
	is_int(decide(&st, &lim, 1000, 3, 50, 20, why), 2,
	       "one fewer after idle_ms of fewer doing");
	has_str(why, "held by 2", "saying why");

	memset(&st, 0, sizeof(st));
	is_int(decide(&st, &lim, 0, 1, 0, 7, why), 1, "quiet: wait");
	is_int(decide(&st, &lim, 500, 1, 0, 8, why), 1,
	       "an event taken meanwhile restarts the idle time");
	is_int(decide(&st, &lim, 1400, 1, 0, 8, why), 1,
	       "not idle long enough");
	is_int(decide(&st, &lim, 1500, 1, 0, 8, why), 0,
	       "idle for idle_ms: down to min 0");
	has_str(why, "idle for", "saying it was idle");

	/* Requests and no events: every 300 ms for 3 s, idle 1 s. */
	memset(&st, 0, sizeof(st));
	{
		bool kept = true;
		uint64_t n = 0;
		for (int64_t t = 0; t <= 3000; t += 300) {
			kept = kept &&
			       decide_req(&st, &lim, t, 1, 0, ++n, why) == 1;
		}
		ok(kept, "requests every 300 ms keep the instance (idle 1 s)");
		is_str(why, "", "no decision meanwhile");
		is_int(decide_req(&st, &lim, 3999, 1, 0, n, why), 1,
		       "no request since: kept until idle_ms after the last");
		is_int(decide_req(&st, &lim, 4000, 1, 0, n, why), 0,
		       "then down to min 0");
		has_str(why, "no request", "saying no request came either");
	}
	memset(&st, 0, sizeof(st));
	is_int(decide_req(&st, &lim, 0, 1, 0, 1000, why), 1,
	       "many requests at once");
	is_int(decide_req(&st, &lim, 100, 1, 0, 5000, why), 1,
	       "add no instance by their count (answered quickly: none "
	       "waiting)");
	memset(&st, 0, sizeof(st));
	is_int(decide_req(&st, &lim, 0, 3, 0, 0, why), 3,
	       "3 instances, no backlog, requests coming");
	is_int(decide_req(&st, &lim, 600, 3, 0, 10, why), 3, "not at once");
	is_int(decide_req(&st, &lim, 1000, 3, 0, 20, why), 2,
	       "requests hold no more than one: one fewer after idle_ms");
	is_int(decide_req(&st, &lim, 2000, 2, 0, 30, why), 2,
	       "the next after idle_ms more");
	is_int(decide_req(&st, &lim, 3000, 2, 0, 40, why), 1, "then one");
	is_int(decide_req(&st, &lim, 9000, 1, 0, 50, why), 1,
	       "and that one stays while they come");

	/* Requests waiting at the instances (queued or being served) are
	 * backlog: 250 at 100 each want 3, then one fewer once 2 hold them
	 * for idle_ms. */
	memset(&st, 0, sizeof(st));
	{
		struct scale_reading r = {.now_ms = 0,
		                          .running = 1,
		                          .requests = 1,
		                          .request_load = 250};
		is_int(scale_decide(&st, &lim, &r, why, sizeof(why)), 3,
		       "250 requests waiting at 100 each: 3 instances");
		has_str(why, "backlog 250, 250 of it requests",
		        "saying they are requests");
		r = (struct scale_reading){.now_ms = 100,
		                           .running = 3,
		                           .backlog = 40,
		                           .requests = 300,
		                           .request_load = 120};
		is_int(scale_decide(&st, &lim, &r, why, sizeof(why)), 3,
		       "160 waiting (120 requests, 40 events) on 3: kept");
		r.now_ms = 1100;
		r.requests = 900;
		is_int(scale_decide(&st, &lim, &r, why, sizeof(why)), 2,
		       "held by 2 for idle_ms: one fewer");
		has_str(why, "120 of it requests", "saying so");
		r = (struct scale_reading){.now_ms = 1200,
		                           .running = 2,
		                           .requests = 1000,
		                           .request_load = 900};
		is_int(scale_decide(&st, &lim, &r, why, sizeof(why)), 4,
		       "900 waiting: max 4");
	}

	lim.min = 1;
	memset(&st, 0, sizeof(st));
	is_int(decide(&st, &lim, 0, 2, 0, 0, why), 2, "min 1, quiet");
	is_int(decide(&st, &lim, 5000, 2, 0, 0, why), 1, "idle: to min 1");
	is_int(decide(&st, &lim, 6000, 0, 0, 0, why), 1,
	       "below min: back up to it");
	has_str(why, "below min", "saying so");
	return tap_done();
}
