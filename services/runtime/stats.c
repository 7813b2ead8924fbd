/* stats.c: counters and log-scale latency histograms (see stats.h). */
#include <math.h>
#include <string.h>

#include "stats.h"

void
mesh__stats_init(struct mesh__stats *st)
{
	memset(st, 0, sizeof(*st));
}

void
mesh__stats_fini(struct mesh__stats *st)
{
	(void)st;
}

#define SUB ((uint64_t)1 << MESH__HIST_SUB_BITS)

/* The bucket of v ns: values under SUB have one each; above, the top
 * MESH__HIST_SUB_BITS + 1 bits of v pick it. */
static int
bucket_of(uint64_t v)
{
	int e;

	if (v < SUB) {
		return (int)v;
	}
	e = 63 - __builtin_clzll(v);
	if (e > MESH__HIST_MAX_EXP) {
		return MESH__HIST_BUCKETS - 1;
	}
	return (int)((uint64_t)(e - MESH__HIST_SUB_BITS + 1) * SUB +
	             (v >> (e - MESH__HIST_SUB_BITS)) - SUB);
}

/* Bucket i's values: [*lo, *lo + *width). */
static void
bucket_range(int i, double *lo, double *width)
{
	int major = i >> MESH__HIST_SUB_BITS;
	uint64_t minor = (uint64_t)i & (SUB - 1);

	if (major == 0) {
		*lo = (double)i;
		*width = 1;
		return;
	}
	*width = (double)((uint64_t)1 << (major - 1));
	*lo = (double)(SUB + minor) * *width;
}

void
mesh__stats_record(struct mesh__hist *h, int64_t ns)
{
	atomic_fetch_add_explicit(&h->n[bucket_of(ns > 0 ? (uint64_t)ns : 0)],
	                          1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
}

double
mesh__hist_percentile(struct mesh__hist *h, double q)
{
	uint64_t count = atomic_load(&h->count), want, seen = 0;

	if (count == 0) {
		return 0;
	}
	want = (uint64_t)ceil(q * (double)count);
	want = want < 1 ? 1 : want;
	for (int i = 0; i < MESH__HIST_BUCKETS; i++) {
		uint64_t n =
		        atomic_load_explicit(&h->n[i], memory_order_relaxed);
		double lo, width;
		if (n == 0 || seen + n < want) {
			seen += n;
			continue;
		}
		bucket_range(i, &lo, &width);
		if (width == 1) {
			return lo / 1e6; /* exact */
		}
		/* The want-th value, the bucket's spread evenly through it. */
		return (lo +
		        width * ((double)(want - seen) - 0.5) / (double)n) /
		       1e6;
	}
	return 0; /* counted while read: the top is not in yet */
}

json_t *
mesh__hist_json(struct mesh__hist *h)
{
	json_t *j = json_object();

	json_object_set_new(j, "p50",
	                    json_real(mesh__hist_percentile(h, 0.50)));
	json_object_set_new(j, "p95",
	                    json_real(mesh__hist_percentile(h, 0.95)));
	json_object_set_new(j, "p99",
	                    json_real(mesh__hist_percentile(h, 0.99)));
	json_object_set_new(j, "count", json_integer((json_int_t)h->count));
	return j;
}
