/* What the benchmarks share: their raw cnats baselines' consuming loop. */
#ifndef MESH_BENCH_H
#define MESH_BENCH_H

#include <nats/nats.h>

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
