/* bench_filter: SNS filter policy evaluations per second beside the
 * unavoidable cost, measured in the same run.
 *
 *   filter:   a 5-key MessageAttributes policy (exact, anything-but,
 *             String.Array, numeric range, prefix) on an event with 8
 *             message attributes, through mesh_filter_match_event()
 *   baseline: the same 5 lookups as raw mesh_event_attr_get() calls, each
 *             followed by a strcmp of the value
 *
 * Environment: BENCH_FILTER_EVALS (2000000). Prints "NAME: VALUE UNIT
 * (baseline VALUE UNIT, ratio R)".
 * Run: meson test -C build --benchmark --suite topics -v */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mesh/mesh.h"

static const char policy[] =
        "{\"store\": [\"example_corp\"],"
        " \"event\": [{\"anything-but\": \"order_cancelled\"}],"
        " \"customer_interests\": [\"rugby\", \"football\", \"baseball\"],"
        " \"price_usd\": [{\"numeric\": [\">=\", 100, \"<\", 1000]}],"
        " \"region\": [{\"prefix\": \"eu-\"}]}";

static const char *const keys[5][2] = {
        {"store", "example_corp"},
        {"event", "order_placed"},
        {"customer_interests", "[\"soccer\", \"rugby\", \"hockey\"]"},
        {"price_usd", "210.75"},
        {"region", "eu-west-1"},
};

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(void)
{
	const char *env = getenv("BENCH_FILTER_EVALS");
	long n = env ? atol(env) : 2000000;
	struct mesh_filter *f = NULL;
	struct mesh_event *ev = NULL;
	volatile long sink = 0;
	double t0, rate, base;

	if (n <= 0 || mesh_event_new("shop.v1.OrderPlaced", "/shop", &ev) ||
	    mesh_filter_compile(policy, strlen(policy),
	                        MESH_FILTER_SCOPE_ATTRIBUTES, &f)) {
		fprintf(stderr, "bench_filter: %s\n", mesh_errdetail());
		return 1;
	}
	mesh_event_attr_set(ev, "customer_interests", "String.Array",
	                    keys[2][1], strlen(keys[2][1]));
	mesh_event_attr_set(ev, "store", "String", keys[0][1], 12);
	mesh_event_attr_set(ev, "channel", "String", "web", 3);
	mesh_event_attr_set(ev, "event", "String", keys[1][1], 12);
	mesh_event_attr_set(ev, "priority", "Number", "3", 1);
	mesh_event_attr_set(ev, "price_usd", "Number", keys[3][1], 6);
	mesh_event_attr_set(ev, "source_ip", "String", "10.0.0.7", 8);
	mesh_event_attr_set(ev, "region", "String", keys[4][1], 9);
	if (!mesh_filter_match_event(f, ev)) {
		fprintf(stderr, "bench_filter: the event should pass\n");
		return 1;
	}

	t0 = now_s();
	for (long i = 0; i < n; i++) {
		for (int k = 0; k < 5; k++) {
			const char *type;
			const void *value;
			size_t len;
			if (mesh_event_attr_get(ev, keys[k][0], &type, &value,
			                        &len) == MESH_OK) {
				sink += strcmp(value, keys[k][1]) == 0;
			}
		}
	}
	base = (double)n / (now_s() - t0);

	t0 = now_s();
	for (long i = 0; i < n; i++) {
		sink += mesh_filter_match_event(f, ev);
	}
	rate = (double)n / (now_s() - t0);

	printf("filter evaluations: %.0f evals/s (baseline %.0f evals/s, "
	       "ratio %.2f)\n",
	       rate, base, rate / base);
	mesh_filter_free(f);
	mesh_event_free(ev);
	return sink > 0 ? 0 : 1;
}
