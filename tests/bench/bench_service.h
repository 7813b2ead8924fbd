/* The service the runtime benchmarks run (bench_runtime, bench_cluster,
 * bench_partitions): PlaceOrder events consumed from a queue, each order's
 * total put in the service's LMDB state (or its partition's), one durable
 * commit per batch; the handler counts what it handled, so a benchmark
 * knows when the last event came. */
#ifndef MESH_BENCH_SERVICE_H
#define MESH_BENCH_SERVICE_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#include <jansson.h>

#include "mesh/service.h"

struct test_broker;

/* A benchmark's setting: its own nats-server started, a temporary folder
 * made (root, size bytes) and a connection opened (*c). False (with a
 * line on stderr) when one failed. */
bool bench_broker_open(struct test_broker *b, char *root, size_t size,
                       struct mesh_conn **c);

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

/* The partition key of a PlaceOrder event: its order id, as the shop
 * partitions an order's events (a mesh_key_fn; *key thread-local). */
size_t bench_order_key(const struct mesh_event *ev, const char **key,
                       void *arg);

/* A service run on a thread of this process. */
struct bench_service {
	struct mesh_service *s;
	struct mesh_conn *conn; /* borrowed until bench_service_stop */
	volatile sig_atomic_t stop;
	pthread_t t;
	atomic_long handled;
	atomic_long wanted; /* the count whose time last_s notes */
	/* bench_now_s() of the start, of the first handler call, and of
	 * the wanted-th */
	double start_s;
	_Atomic double first_s, last_s;
};

/* What bench_service_start_opts adds; zeroed is bench_service_start. */
struct bench_service_opts {
	const char *name; /* the service's name; NULL: "bench" */
	int partitions;   /* 0: one environment; 1-1024: partitioned by
	                     bench_order_key, changelog and leases on */
	const char *identity_file; /* its MESH_IDENTITY (opens sealed
	                              events); NULL: none */
};

/* Start the service consuming queue with its state in dir (made when
 * missing), batches of up to batch, inflight of them in flight; wanted is
 * the count bench_service_wait waits for. */
void bench_service_start(struct bench_service *r, struct mesh_conn *c,
                         const char *queue, const char *dir, int batch,
                         int inflight, long wanted);
/* The same with options (o may be NULL); o's strings are borrowed until
 * bench_service_stop. */
void bench_service_start_opts(struct bench_service *r, struct mesh_conn *c,
                              const char *queue, const char *dir, int batch,
                              int inflight, long wanted,
                              const struct bench_service_opts *o);

/* Wait up to timeout_s until the wanted count is handled; events per
 * second from the first handled to the last, or 0 (with a line on stderr)
 * when they did not all come. */
double bench_service_wait(struct bench_service *r, double timeout_s);

/* Stop the service (it finishes what it holds) and free it. */
void bench_service_stop(struct bench_service *r);

/* A running service's stats (mesh.service.NAME.stats, the first
 * instance to answer within 2 s), or NULL; json_decref it. */
json_t *bench_service_stats(struct mesh_conn *c, const char *name);

/* Delete a partitioned service's mesh records as meshctl service delete
 * does: its partitions (record, stream, consumers), its changelog and
 * snapshot streams. False (with a line on stderr) on failure. */
bool bench_service_delete(struct mesh_conn *c, const char *name);

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
