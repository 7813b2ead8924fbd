/* The service the runtime benchmarks run (bench_runtime, bench_cluster):
 * PlaceOrder events consumed from a queue, each order's total put in the
 * service's LMDB state, one durable commit per batch; the handler counts
 * what it handled, so a benchmark knows when the last event came. */
#ifndef MESH_BENCH_SERVICE_H
#define MESH_BENCH_SERVICE_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#include "mesh/service.h"

/* Seconds on the monotonic clock. */
double bench_now_s(void);

/* PlaceOrder number i as an event (free with mesh_event_free). */
struct mesh_event *bench_order(long i);

/* Send orders 0..n-1 to queue through a sender (its default window). */
void bench_fill(struct mesh_conn *c, const char *queue, long n);

/* The handler: puts order/ID = total in the state; arg is the running
 * service (struct bench_service *), whose counters it moves, or NULL. */
mesh_handler_result bench_on_order(struct mesh_ctx *ctx,
                                   const struct mesh_event *ev,
                                   const ProtobufCMessage *msg, void *arg);

/* A service named "bench" run on a thread of this process. */
struct bench_service {
	struct mesh_service *s;
	struct mesh_conn *conn; /* borrowed until bench_service_stop */
	volatile sig_atomic_t stop;
	pthread_t t;
	atomic_long handled;
	atomic_long wanted; /* the count whose time last_s notes */
	/* bench_now_s() of the first handler call, and of the wanted-th */
	_Atomic double first_s, last_s;
};

/* Start the service consuming queue with its state in dir (made when
 * missing), batches of up to batch, inflight of them in flight; wanted is
 * the count bench_service_wait waits for. */
void bench_service_start(struct bench_service *r, struct mesh_conn *c,
                         const char *queue, const char *dir, int batch,
                         int inflight, long wanted);

/* Wait up to timeout_s until the wanted count is handled; events per
 * second from the first handled to the last, or 0 (with a line on stderr)
 * when they did not all come. */
double bench_service_wait(struct bench_service *r, double timeout_s);

/* Stop the service (it finishes what it holds) and free it. */
void bench_service_stop(struct bench_service *r);

/* Publish-to-commit p50 and p99 in ms at `rate` events per second: the
 * service started on queue (state in dir), n orders sent one at a time
 * (each waiting for its acknowledgement, stamped with the time just
 * before), the figures read from the service's own stats. False (with a
 * line on stderr) when not all were handled within a minute or the stats
 * did not answer. */
bool bench_service_latency(struct mesh_conn *c, const char *queue,
                           const char *dir, int batch, int inflight, long n,
                           int rate, double *p50, double *p99);

#endif
