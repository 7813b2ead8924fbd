/* The service the runtime benchmarks run: see bench_service.h. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "bench_service.h"
#include "harness.h"
#include "mesh/partition.h"
#include "shop.pb-c.h"

bool
bench_broker_open(struct test_broker *b, char *root, size_t size,
                  struct mesh_conn **c)
{
	struct mesh_conn_opts o;

	if (!test_broker_start(b, NULL) || !test_tmpdir(root, size)) {
		fprintf(stderr, "bench: no broker\n");
		return false;
	}
	mesh_conn_opts_init(&o);
	o.servers = b->url;
	if (mesh_conn_open(&o, c) != MESH_OK) {
		fprintf(stderr, "bench: %s\n", mesh_errdetail());
		return false;
	}
	return true;
}

double
bench_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

struct mesh_event *
bench_order(long i)
{
	Evmesh__Shop__PlaceOrder po;
	struct mesh_event *ev = NULL;
	char id[32];

	evmesh__shop__place_order__init(&po);
	snprintf(id, sizeof(id), "o-%ld", i);
	po.order_id = id;
	po.customer = "bench";
	po.country = "DE";
	po.total_cents = 1000 + i;
	mesh_event_new("evmesh.shop.PlaceOrder", "bench", &ev);
	mesh_event_set_message(ev, &po.base);
	return ev;
}

void
bench_fill(struct mesh_conn *c, const char *queue, long n)
{
	struct mesh_queue *q = NULL;
	struct mesh_sender *snd = NULL;

	if (mesh_queue_open(c, queue, &q) != MESH_OK ||
	    mesh_sender_open_queue(q, NULL, NULL, NULL, &snd) != MESH_OK) {
		fprintf(stderr, "bench: fill: %s\n", mesh_errdetail());
		mesh_queue_close(q);
		return;
	}
	for (long i = 0; i < n; i++) {
		struct mesh_event *ev = bench_order(i);
		mesh_sender_send(snd, &(struct mesh_send){.event = ev});
		mesh_event_free(ev);
	}
	mesh_sender_close(snd);
	mesh_queue_close(q);
}

size_t
bench_order_key(const struct mesh_event *ev, const char **key, void *arg)
{
	static _Thread_local char id[64];
	Evmesh__Shop__PlaceOrder *po = NULL;

	(void)arg;
	if (mesh_event_unpack_message(
	            ev, &evmesh__shop__place_order__descriptor, NULL,
	            (ProtobufCMessage **)&po) != MESH_OK) {
		return 0;
	}
	snprintf(id, sizeof(id), "%s", po->order_id);
	evmesh__shop__place_order__free_unpacked(po, NULL);
	*key = id;
	return strlen(id);
}

mesh_handler_result
bench_on_order(struct mesh_ctx *ctx, const struct mesh_event *ev,
               const ProtobufCMessage *msg, void *arg)
{
	const Evmesh__Shop__PlaceOrder *po =
	        (const Evmesh__Shop__PlaceOrder *)msg;
	struct bench_service *r = arg;
	char key[64], val[32];

	(void)ev;
	snprintf(key, sizeof(key), "order/%s", po->order_id);
	snprintf(val, sizeof(val), "%lld", (long long)po->total_cents);
	mesh_state_put(ctx, key, strlen(key), val, strlen(val));
	if (r != NULL) {
		long seen = atomic_fetch_add(&r->handled, 1) + 1;
		if (seen == 1) {
			atomic_store(&r->first_s, bench_now_s());
		}
		if (seen == atomic_load(&r->wanted)) {
			atomic_store(&r->last_s, bench_now_s());
		}
	}
	return MESH_HANDLER_OK;
}

static void *
run_main(void *arg)
{
	struct bench_service *r = arg;

	if (mesh_service_run(r->s, r->conn, &r->stop) != MESH_OK) {
		fprintf(stderr, "bench: the service: %s\n", mesh_errdetail());
	}
	return NULL;
}

void
bench_service_start(struct bench_service *r, struct mesh_conn *c,
                    const char *queue, const char *dir, int batch,
                    int inflight, long wanted)
{
	bench_service_start_opts(r, c, queue, dir, batch, inflight, wanted,
	                         NULL);
}

void
bench_service_start_opts(struct bench_service *r, struct mesh_conn *c,
                         const char *queue, const char *dir, int batch,
                         int inflight, long wanted,
                         const struct bench_service_opts *o)
{
	memset(r, 0, sizeof(*r));
	r->conn = c;
	r->start_s = bench_now_s();
	atomic_store(&r->wanted, wanted);
	mesh_service_new(o != NULL && o->name != NULL ? o->name : "bench",
	                 &r->s);
	if (o != NULL && o->partitions > 0) {
		mesh_service_partitions(r->s, o->partitions, bench_order_key,
		                        NULL);
	}
	mesh_service_opts(r->s)->state_dir = dir;
	mesh_service_opts(r->s)->batch_size = batch;
	mesh_service_opts(r->s)->max_inflight = inflight;
	if (o != NULL && o->identity_file != NULL) {
		mesh_service_opts(r->s)->identity_file = o->identity_file;
	}
	mesh_service_consume(r->s, queue);
	mesh_service_on(r->s, "evmesh.shop.PlaceOrder",
	                &evmesh__shop__place_order__descriptor, bench_on_order,
	                r);
	pthread_create(&r->t, NULL, run_main, r);
}

double
bench_service_wait(struct bench_service *r, double timeout_s)
{
	long n = atomic_load(&r->wanted);

	for (double t0 = bench_now_s();
	     atomic_load(&r->handled) < n && bench_now_s() - t0 < timeout_s;) {
		usleep(2000);
	}
	if (atomic_load(&r->handled) < n) {
		fprintf(stderr, "bench: only %ld of %ld handled\n",
		        atomic_load(&r->handled), n);
		return 0;
	}
	/* From the first event handled to the last: the start is the
	 * cold-start figure's. */
	return (double)(n - 1) /
	       (atomic_load(&r->last_s) - atomic_load(&r->first_s));
}

void
bench_service_stop(struct bench_service *r)
{
	r->stop = 1;
	pthread_join(r->t, NULL);
	mesh_service_free(r->s);
}

json_t *
bench_service_stats(struct mesh_conn *c, const char *name)
{
	char subject[128];
	natsMsg *reply = NULL;
	json_t *st = NULL;

	snprintf(subject, sizeof(subject), "mesh.service.%s.stats", name);
	if (natsConnection_RequestString(&reply, mesh_conn_nats(c), subject,
	                                 "", 2000) == NATS_OK) {
		st = json_loadb(natsMsg_GetData(reply),
		                (size_t)natsMsg_GetDataLength(reply), 0, NULL);
	}
	natsMsg_Destroy(reply);
	return st;
}

bool
bench_service_delete(struct mesh_conn *c, const char *name)
{
	mesh_err err = mesh_partitions_delete(c, name);

	for (size_t i = 0; err == MESH_OK && i < 2; i++) {
		char stream[128];
		jsErrCode jerr = 0;
		natsStatus st;
		snprintf(stream, sizeof(stream),
		         i == 0 ? MESH_SERVICE_CHANGELOG_STREAM
		                : MESH_SERVICE_SNAPSHOT_STREAM,
		         name);
		st = js_DeleteStream(mesh_conn_js(c), stream, NULL, &jerr);
		if (st != NATS_OK && st != NATS_NOT_FOUND &&
		    jerr != JSStreamNotFoundErr) {
			err = mesh_err_nats(st, jerr, "stream %s", stream);
		}
	}
	if (err != MESH_OK) {
		fprintf(stderr, "bench: deleting service %s: %s\n", name,
		        mesh_errdetail());
	}
	return err == MESH_OK;
}

/* The service's publish-to-commit percentile p ("p50") in ms, from its
 * stats; -1 when they did not answer. */
static double
commit_ms(json_t *stats, const char *p)
{
	json_t *v = json_object_get(json_object_get(stats, "commit_ms"), p);

	return json_is_number(v) ? json_number_value(v) : -1;
}

bool
bench_service_latency(struct mesh_conn *c, const char *queue, const char *dir,
                      int batch, int inflight, long n, int rate, double *p50,
                      double *p99)
{
	struct bench_service r;
	struct mesh_queue *q = NULL;
	json_t *st = NULL;
	double start;
	bool all;

	bench_service_start(&r, c, queue, dir, batch, inflight, n);
	usleep(300000);
	start = bench_now_s();
	mesh_queue_open(c, queue, &q);
	for (long i = 0; i < n; i++) {
		struct mesh_event *ev = bench_order(i);
		struct mesh_queue_entry e = {.event = ev, .delay_s = -1};
		struct mesh_queue_sent s;
		struct timespec ts;
		double due = start + (double)i / rate;
		while (bench_now_s() < due) {
			usleep(100);
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		mesh_event_set_time(ev, ts.tv_sec, (int32_t)ts.tv_nsec);
		mesh_queue_send(q, &e, &s);
		mesh_event_free(ev);
	}
	mesh_queue_close(q);
	all = bench_service_wait(&r, 60) > 0;
	if (all) {
		st = bench_service_stats(c, "bench");
	}
	*p50 = commit_ms(st, "p50");
	*p99 = commit_ms(st, "p99");
	json_decref(st);
	bench_service_stop(&r);
	if (all && (*p50 < 0 || *p99 < 0)) {
		fprintf(stderr, "bench: the service's stats did not answer\n");
	}
	return all && *p50 >= 0 && *p99 >= 0;
}
