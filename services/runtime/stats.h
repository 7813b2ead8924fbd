/* stats.h: the runtime's counters and latency histograms (internal). */
#ifndef MESH_RUNTIME_STATS_H
#define MESH_RUNTIME_STATS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <jansson.h>

/* Buckets in the manner of HdrHistogram: each power of two of
 * nanoseconds is cut into 32 equal buckets, so a bucket is at most 1/32
 * (3 %) of its values wide, from 1 ns to 2^40 ns (18 minutes; longer
 * counts there). Recording is one atomic add. */
#define MESH__HIST_SUB_BITS 5
#define MESH__HIST_MAX_EXP  40
#define MESH__HIST_BUCKETS                                                    \
	((MESH__HIST_MAX_EXP - MESH__HIST_SUB_BITS + 2) << MESH__HIST_SUB_BITS)

struct mesh__hist {
	atomic_uint_fast64_t n[MESH__HIST_BUCKETS];
	atomic_uint_fast64_t count;
};

struct mesh__stats {
	atomic_uint_fast64_t received, processed, retried, failed,
	        dead_lettered, duplicates, ignored, malformed,
	        signature_refused, /* dead-lettered: see mesh/sign.h */
	        sealed_refused;    /* dead-lettered: did not open (seal.h) */
	/* Requests answered: all, answered from a recorded reply, with a
	 * 5xx (the runtime's or the handler's). */
	atomic_uint_fast64_t requests, requests_replayed, requests_5xx;
	atomic_int in_flight;
	/* Requests queued at the instance or being served: the load the
	 * supervisor scales a function's instances by (with its events). */
	atomic_int requests_waiting;
	struct mesh__hist handler; /* handler time */
	struct mesh__hist commit;  /* publish-to-commit */
	struct mesh__hist request; /* a request's receipt to its reply */
};

void mesh__stats_init(struct mesh__stats *st);
void mesh__stats_fini(struct mesh__stats *st);
/* Record a duration in nanoseconds. */
void mesh__stats_record(struct mesh__hist *h, int64_t ns);
/* {"p50": ms, "p95": ms, "p99": ms, "count": n} */
json_t *mesh__hist_json(struct mesh__hist *h);
/* The percentile q (0-1) in milliseconds, interpolated within its
 * bucket; 0 when empty. */
double mesh__hist_percentile(struct mesh__hist *h, double q);

#endif
