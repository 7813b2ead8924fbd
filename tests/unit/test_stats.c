/* The runtime's latency histograms: percentiles within the 3 % a bucket
 * spans, at every scale, and nothing lost at the edges. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "stats.h"

/* Whether got is within rel of want. */
static bool
near(double got, double want, double rel)
{
	return fabs(got - want) <= rel * want;
}

int
main(void)
{
	static struct mesh__hist h;
	struct mesh__stats st;

	mesh__stats_init(&st);
	is_int((int)(mesh__hist_percentile(&st.commit, 0.5) * 1000), 0,
	       "an empty histogram says 0");
	mesh__stats_fini(&st);

	/* 1 ms to 1000 ms evenly: p50 500 ms, p99 990 ms. */
	for (int64_t v = 1; v <= 1000; v++) {
		mesh__stats_record(&h, v * 1000000);
	}
	ok(near(mesh__hist_percentile(&h, 0.50), 500, 0.03),
	   "p50 of 1..1000 ms is 500 ms within 3 %%");
	ok(near(mesh__hist_percentile(&h, 0.99), 990, 0.03),
	   "p99 is 990 ms within 3 %%");
	ok(near(mesh__hist_percentile(&h, 1.0), 1000, 0.03),
	   "p100 is the largest within 3 %%");

	/* Around 1 ms, where the goal is: 0.97 ms reads below 1 ms. */
	memset(&h, 0, sizeof(h));
	for (int i = 0; i < 100; i++) {
		mesh__stats_record(&h, 970000);
	}
	ok(mesh__hist_percentile(&h, 0.5) < 1.0 &&
	           near(mesh__hist_percentile(&h, 0.5), 0.97, 0.03),
	   "0.97 ms reads as 0.97 ms within 3 %%, under 1 ms");

	/* Every scale: a single value v reads back within 3 %. */
	{
		bool all = true;
		for (double v = 1; v < 1e12; v *= 1.37) {
			memset(&h, 0, sizeof(h));
			mesh__stats_record(&h, (int64_t)v);
			all = all && near(mesh__hist_percentile(&h, 0.5) * 1e6,
			                  (double)(int64_t)v, 0.035);
		}
		ok(all, "from 1 ns to 1000 s, a value reads back within 3 %%");
	}

	/* The edges: nothing negative, nothing beyond the top is lost. */
	memset(&h, 0, sizeof(h));
	mesh__stats_record(&h, -5);
	mesh__stats_record(&h, INT64_MAX);
	is_int((int)atomic_load(&h.count), 2, "both extremes are counted");
	ok(mesh__hist_percentile(&h, 0.25) == 0,
	   "a negative time counts as 0");
	ok(mesh__hist_percentile(&h, 1.0) > 1e6,
	   "a huge one lands in the top bucket (over 1000 s)");
	return tap_done();
}
