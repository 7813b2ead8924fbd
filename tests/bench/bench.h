/* What the benchmarks share: their settings from the environment, their
 * figure lines and their raw cnats baselines' consuming loop. */
#ifndef MESH_BENCH_H
#define MESH_BENCH_H

#include <stdio.h>
#include <stdlib.h>

#include <nats/nats.h>

#define BENCH_ROUNDS_MAX 16

/* A positive number from the environment, else def. */
static inline long
bench_env_long(const char *name, long def)
{
	const char *v = getenv(name);

	return v && atol(v) > 0 ? atol(v) : def;
}

static inline int
bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The median of n values (sorts them). */
static inline double
bench_median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), bench_cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The figure line of interleaved rounds: the medians of each side, and the
 * median of the rounds' ratios, with `decimals` after the point. */
static inline void
bench_figure_rounds(const char *name, double *v, double *base, int rounds,
                    const char *unit, int decimals)
{
	double ratio[BENCH_ROUNDS_MAX];

	for (int i = 0; i < rounds; i++) {
		ratio[i] = base[i] > 0 ? v[i] / base[i] : 0;
	}
	printf("%s: %.*f %s (baseline %.*f %s, ratio %.2f)\n", name, decimals,
	       bench_median(v, rounds), unit, decimals,
	       bench_median(base, rounds), unit, bench_median(ratio, rounds));
	fflush(stdout);
}

/* Fetch (batch at a time, waiting up to 5 s) and acknowledge until want
 * messages came or a fetch failed; returns how many came. */
static inline long
bench_fetch_ack(natsSubscription *sub, int batch, long want)
{
	long got = 0;

	while (got < want) {
		natsMsgList l = {0};
		if (natsSubscription_Fetch(&l, sub, batch, 5000, NULL) !=
		    NATS_OK) {
			break;
		}
		for (int i = 0; i < l.Count; i++) {
			natsMsg_Ack(l.Msgs[i], NULL);
		}
		got += l.Count;
		natsMsgList_Destroy(&l);
	}
	return got;
}

#endif
