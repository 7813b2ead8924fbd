/* stats.c: counters and log-scale latency histograms (see stats.h). */
#include <math.h>
#include <string.h>

#include "stats.h"

static void
hist_init(struct mesh__hist *h)
{
	memset(h, 0, sizeof(*h));
	pthread_mutex_init(&h->mu, NULL);
}

void
mesh__stats_init(struct mesh__stats *st)
{
	memset(st, 0, sizeof(*st));
	hist_init(&st->handler);
	hist_init(&st->commit);
}

void
mesh__stats_fini(struct mesh__stats *st)
{
	pthread_mutex_destroy(&st->handler.mu);
	pthread_mutex_destroy(&st->commit.mu);
}

/* Bucket i's upper bound in nanoseconds: 1000 * 2^(i/4). */
static double
bound_ns(int i)
{
	return 1000.0 * pow(2.0, i / 4.0);
}

void
mesh__stats_record(struct mesh__hist *h, int64_t ns)
{
	int i = 0;

	if (ns > 1000) {
		i = (int)ceil(4.0 * log2((double)ns / 1000.0));
	}
	if (i < 0) {
		i = 0;
	}
	if (i >= MESH__HIST_BUCKETS) {
		i = MESH__HIST_BUCKETS - 1;
	}
	pthread_mutex_lock(&h->mu);
	h->n[i]++;
	h->count++;
	pthread_mutex_unlock(&h->mu);
}

double
mesh__hist_percentile(struct mesh__hist *h, double q)
{
	uint64_t want, seen = 0;
	double v = 0;

	pthread_mutex_lock(&h->mu);
	want = (uint64_t)ceil(q * (double)h->count);
	for (int i = 0; h->count > 0 && i < MESH__HIST_BUCKETS; i++) {
		seen += h->n[i];
		if (seen >= want && seen > 0) {
			v = bound_ns(i) / 1e6;
			break;
		}
	}
	pthread_mutex_unlock(&h->mu);
	return v;
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
