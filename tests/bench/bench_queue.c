/* bench_queue: queue throughput beside the raw cnats baseline, measured in
 * the same run on the same nats-server (started here, like the tests).
 *
 *   (a') cnats async publish of the messages the queue sends (the events'
 *        wire form: envelope and headers, built as cnats' user would
 *        build them), the baseline of the send figures, against
 *   (b') the same events through a sender (its default window of 1024 in
 *        flight); BENCH_ROUNDS (3) rounds interleaved, the medians printed
 *   (a) raw cnats: async publish, pull fetch and ack of N 256-byte messages
 *   (b) the queue API: send batches of 10, receive batch, delete batch
 *   (c) FIFO, each message taking 1 ms to handle: 64 groups against 1
 *
 * Environment: BENCH_MESSAGES (200000), BENCH_FIFO_MESSAGES (5000),
 * BENCH_WORKERS (16), BENCH_ROUNDS (3), BENCH_WINDOW (the sender's window,
 * 1024). Prints "NAME: VALUE UNIT (baseline VALUE UNIT,
 * ratio R)". Run: meson test -C build --benchmark --suite queues -v */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "bench_msgs.h"
#include "harness.h"
#include "mesh/mesh.h"

#define BODY  BENCH_BODY
#define BATCH 10

static struct mesh_conn *conn;
static long n_msgs = 200000;
static long n_fifo = 5000;
static int workers = 16;
static int fifo_batch = 2;

static double
secs_since(long long t0)
{
	return (double)(test_now_ms() - t0) / 1000.0;
}

static void
figure(const char *name, double v, double base, const char *unit)
{
	printf("%s: %.0f %s (baseline %.0f %s, ratio %.2f)\n", name, v, unit,
	       base, unit, base > 0 ? v / base : 0.0);
	fflush(stdout);
}

/* (a'): cnats async publish of the events' wire form (what the queue
 * sends, headers and all) to a fresh stream of its own, deleted after;
 * msgs/s, 0 when it failed. */
static double
raw_same_messages(jsCtx *js, int round)
{
	char name[32], subject[32];
	const char *subj[] = {subject};
	jsStreamConfig sc;
	struct mesh_event *ev = NULL;
	char body[BODY + 1];
	double rate = 0;
	long i = 0;
	long long t0;

	snprintf(name, sizeof(name), "BENCH_SAME_%d", round);
	snprintf(subject, sizeof(subject), "bench.same.%d", round);
	jsStreamConfig_Init(&sc);
	sc.Name = name;
	sc.Subjects = subj;
	sc.SubjectsLen = 1;
	sc.Retention = js_WorkQueuePolicy;
	sc.Storage = js_FileStorage;
	sc.Duplicates = (int64_t)300 * 1000000000;
	if (js_AddStream(NULL, js, &sc, NULL, NULL) != NATS_OK) {
		return 0;
	}
	memset(body, 'x', BODY);
	body[BODY] = '\0';
	mesh_event_new("bench", "bench", &ev);
	mesh_event_set_text(ev, body, BODY);
	t0 = test_now_ms();
	for (; i < n_msgs; i++) {
		char id[37];
		natsMsg *m = NULL;
		snprintf(id, sizeof(id), "w%ld", i);
		mesh_event_set_id(ev, id);
		if (mesh_wire_msg(subject, NULL, ev, NULL, &m) != MESH_OK ||
		    js_PublishMsgAsync(js, &m, NULL) != NATS_OK) {
			natsMsg_Destroy(m);
			break;
		}
	}
	if (i == n_msgs && js_PublishAsyncComplete(js, NULL) == NATS_OK) {
		rate = (double)n_msgs / secs_since(t0);
	}
	mesh_event_free(ev);
	js_DeleteStream(js, name, NULL, NULL);
	return rate;
}

/* (a): publish and consume with cnats alone; returns msgs/s for each. */
static bool
raw_baseline(const char *url, double *pub_rate, double *con_rate)
{
	natsConnection *nc = NULL;
	jsCtx *js = NULL;

	/* Plain cnats, its default options: the baseline owes nothing to
	 * evmesh's connection settings. */
	if (natsConnection_ConnectTo(&nc, url) != NATS_OK ||
	    natsConnection_JetStream(&js, nc, NULL) != NATS_OK) {
		return false;
	}
	jsStreamConfig sc;
	jsConsumerConfig cc;
	jsSubOptions so;
	natsSubscription *sub = NULL;
	const char *subj[] = {"bench.raw"};
	char body[BODY];
	long got = 0;
	long long t0;

	memset(body, 'x', sizeof(body));
	jsStreamConfig_Init(&sc);
	sc.Name = "BENCH_RAW";
	sc.Subjects = subj;
	sc.SubjectsLen = 1;
	sc.Retention = js_WorkQueuePolicy;
	sc.Storage = js_FileStorage;
	if (js_AddStream(NULL, js, &sc, NULL, NULL) != NATS_OK) {
		return false;
	}
	jsConsumerConfig_Init(&cc);
	cc.Durable = "raw";
	cc.AckPolicy = js_AckExplicit;
	cc.MaxAckPending = 120000;
	if (js_AddConsumer(NULL, js, "BENCH_RAW", &cc, NULL, NULL) !=
	    NATS_OK) {
		return false;
	}
	t0 = test_now_ms();
	for (long i = 0; i < n_msgs; i++) {
		if (js_PublishAsync(js, "bench.raw", body, BODY, NULL) !=
		    NATS_OK) {
			return false;
		}
	}
	if (js_PublishAsyncComplete(js, NULL) != NATS_OK) {
		return false;
	}
	*pub_rate = (double)n_msgs / secs_since(t0);

	jsSubOptions_Init(&so);
	so.Stream = "BENCH_RAW";
	so.Consumer = "raw";
	if (js_PullSubscribe(&sub, js, "bench.raw", "raw", NULL, &so, NULL) !=
	    NATS_OK) {
		return false;
	}
	t0 = test_now_ms();
	got = bench_fetch_ack(sub, BATCH, n_msgs);
	natsConnection_Flush(nc);
	*con_rate = (double)got / secs_since(t0);
	natsSubscription_Destroy(sub);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	return got == n_msgs;
}

/* (b'): the same events through a sender (its default window) to a fresh
 * queue, deleted after; msgs/s, 0 when it failed. */
static double
sender_rate(int round)
{
	struct mesh_queue_attrs a;
	struct mesh_queue *q = NULL;
	char name[32];
	double t;

	snprintf(name, sizeof(name), "bench-send-%d", round);
	mesh_queue_attrs_init(&a);
	if (mesh_queue_create(conn, name, &a) != MESH_OK ||
	    mesh_queue_open(conn, name, &q) != MESH_OK) {
		fprintf(stderr, "bench: %s\n", mesh_errdetail());
		return 0;
	}
	t = bench_send(q, n_msgs, (size_t)bench_env_long("BENCH_WINDOW", 0));
	mesh_queue_close(q);
	mesh_queue_delete(conn, name);
	return t > 0 ? (double)n_msgs / t : 0;
}

/* (a') against (b'), `rounds` times, alternating which goes first. */
static bool
send_rounds(const char *url, int rounds, double *raw, double *snd)
{
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	bool ok = true;

	if (natsConnection_ConnectTo(&nc, url) != NATS_OK ||
	    natsConnection_JetStream(&js, nc, NULL) != NATS_OK) {
		natsConnection_Destroy(nc);
		return false;
	}
	for (int i = 0; i < rounds && ok; i++) {
		if (i % 2 == 0) {
			raw[i] = raw_same_messages(js, i);
			snd[i] = sender_rate(i);
		} else {
			snd[i] = sender_rate(i);
			raw[i] = raw_same_messages(js, i);
		}
		printf("# round %d: queue send %.0f msgs/s, cnats %.0f, ratio "
		       "%.2f\n",
		       i + 1, snd[i], raw[i],
		       raw[i] > 0 ? snd[i] / raw[i] : 0);
		ok = raw[i] > 0 && snd[i] > 0;
	}
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	return ok;
}

/* (b): the same through the queue API. */
static bool
queue_api(double *batch_rate, double *con_rate)
{
	struct mesh_queue_attrs a;
	struct mesh_queue *q;
	struct mesh_event *ev[BATCH];
	struct mesh_queue_entry e[BATCH];
	struct mesh_queue_sent sent[BATCH];
	char body[BODY + 1], ids[BATCH][4];
	long long t0;
	double t;

	memset(body, 'x', BODY);
	body[BODY] = '\0';
	mesh_queue_attrs_init(&a);
	if (mesh_queue_create(conn, "bench", &a) != MESH_OK ||
	    mesh_queue_open(conn, "bench", &q) != MESH_OK) {
		fprintf(stderr, "bench: %s\n", mesh_errdetail());
		return false;
	}
	for (int i = 0; i < BATCH; i++) {
		snprintf(ids[i], sizeof(ids[i]), "%d", i);
		mesh_event_new("bench", "bench", &ev[i]);
		mesh_event_set_text(ev[i], body, BODY);
		e[i] = (struct mesh_queue_entry){
		        .id = ids[i], .event = ev[i], .delay_s = -1};
	}
	t0 = test_now_ms();
	for (long i = 0; i < n_msgs; i += BATCH) {
		for (int k = 0; k < BATCH; k++) {
			char id[37];
			snprintf(id, sizeof(id), "m%ld", i + k);
			mesh_event_set_id(ev[k], id);
		}
		if (mesh_queue_send_batch(q, e, BATCH, sent) != MESH_OK ||
		    sent[0].err != MESH_OK) {
			fprintf(stderr, "bench: send: %s\n", mesh_errdetail());
			return false;
		}
	}
	*batch_rate = (double)n_msgs / secs_since(t0);

	t = bench_receive_delete(q, n_msgs);
	*con_rate = t > 0 ? (double)n_msgs / t : 0;
	for (int i = 0; i < BATCH; i++) {
		mesh_event_free(ev[i]);
	}
	mesh_queue_close(q);
	return t > 0;
}

/* (c): workers receive up to 10, handle each for 1 ms, delete. */
struct fifo_run {
	const char *queue;
	long target;
	long done;
	long long finished_ms; /* when the last message was deleted */
	pthread_mutex_t lock;
};

static void *
fifo_worker(void *arg)
{
	struct fifo_run *r = arg;
	struct mesh_queue *q;
	const char *ids[BATCH] = {"0", "1", "2", "3", "4",
	                          "5", "6", "7", "8", "9"};
	const char *rh[BATCH];
	struct mesh_queue_result res[BATCH];

	if (mesh_queue_open(conn, r->queue, &q) != MESH_OK) {
		return NULL;
	}
	for (;;) {
		struct mesh_queue_msg *m = NULL;
		size_t n = 0;
		pthread_mutex_lock(&r->lock);
		bool over = r->done >= r->target;
		pthread_mutex_unlock(&r->lock);
		if (over) {
			break;
		}
		if (mesh_queue_receive(q, fifo_batch, 1, 30, &m, &n) !=
		    MESH_OK) {
			break;
		}
		for (size_t k = 0; k < n; k++) {
			usleep(1000); /* the handler */
			rh[k] = m[k].receipt;
		}
		if (n > 0) {
			mesh_queue_delete_batch(q, ids, rh, n, res);
			pthread_mutex_lock(&r->lock);
			r->done += (long)n;
			if (r->done >= r->target && r->finished_ms == 0) {
				r->finished_ms = test_now_ms();
			}
			pthread_mutex_unlock(&r->lock);
		}
		mesh_queue_msgs_free(m, n);
	}
	mesh_queue_close(q);
	return NULL;
}

static double
fifo_rate(const char *name, int groups)
{
	struct mesh_queue_attrs a;
	struct mesh_queue *q;
	struct fifo_run r = {.queue = name, .target = n_fifo};
	pthread_t *t = calloc((size_t)workers, sizeof(*t));
	long long t0;

	mesh_queue_attrs_init(&a);
	a.fifo = true;
	a.partitions = bench_env_long("BENCH_PARTITIONS", a.partitions);
	if (mesh_queue_create(conn, name, &a) != MESH_OK ||
	    mesh_queue_open(conn, name, &q) != MESH_OK) {
		fprintf(stderr, "bench: %s\n", mesh_errdetail());
		return 0;
	}
	for (long i = 0; i < n_fifo; i += BATCH) {
		struct mesh_queue_entry e[BATCH];
		struct mesh_queue_sent sent[BATCH];
		struct mesh_event *ev[BATCH];
		char ids[BATCH][4], grp[BATCH][16], dd[BATCH][24];
		for (int k = 0; k < BATCH; k++) {
			snprintf(ids[k], sizeof(ids[k]), "%d", k);
			snprintf(grp[k], sizeof(grp[k]), "g%ld",
			         (i + k) % groups);
			snprintf(dd[k], sizeof(dd[k]), "d%ld", i + k);
			mesh_event_new("bench", "bench", &ev[k]);
			mesh_event_set_text(ev[k], "x", 1);
			e[k] = (struct mesh_queue_entry){.id = ids[k],
			                                 .event = ev[k],
			                                 .delay_s = -1,
			                                 .group_id = grp[k],
			                                 .dedup_id = dd[k]};
		}
		mesh_queue_send_batch(q, e, BATCH, sent);
		for (int k = 0; k < BATCH; k++) {
			mesh_event_free(ev[k]);
		}
	}
	mesh_queue_close(q);
	pthread_mutex_init(&r.lock, NULL);
	t0 = test_now_ms();
	for (int i = 0; i < workers; i++) {
		pthread_create(&t[i], NULL, fifo_worker, &r);
	}
	for (int i = 0; i < workers; i++) {
		pthread_join(t[i], NULL);
	}
	free(t);
	/* Until the last delete: idle workers' last long polls are not
	 * the queue's time. */
	return r.finished_ms ? (double)r.done /
	                               ((double)(r.finished_ms - t0) / 1000.0)
	                     : 0.0;
}

int
main(void)
{
	struct test_broker b;
	struct mesh_conn_opts o;
	double raw_pub = 0, raw_con = 0, q_batch = 0, q_con = 0;
	double raw_same[BENCH_ROUNDS_MAX], q_send[BENCH_ROUNDS_MAX], send_med;
	int rounds = (int)bench_env_long("BENCH_ROUNDS", 3);

	n_msgs = bench_env_long("BENCH_MESSAGES", n_msgs) / BATCH * BATCH;
	n_fifo = bench_env_long("BENCH_FIFO_MESSAGES", n_fifo) / BATCH * BATCH;
	workers = (int)bench_env_long("BENCH_WORKERS", workers);
	fifo_batch = (int)bench_env_long("BENCH_FIFO_BATCH", fifo_batch);
	rounds = rounds < 1                  ? 1
	         : rounds > BENCH_ROUNDS_MAX ? BENCH_ROUNDS_MAX
	                                     : rounds;
	if (!test_broker_start(&b, NULL)) {
		return 1;
	}
	mesh_conn_opts_init(&o);
	o.servers = b.url;
	if (mesh_conn_open(&o, &conn) != MESH_OK) {
		fprintf(stderr, "bench: %s\n", mesh_errdetail());
		return 1;
	}
	printf("# %ld messages of %d bytes, batches of %d; FIFO: %ld "
	       "messages, %d workers, 1 ms per message\n",
	       n_msgs, BODY, BATCH, n_fifo, workers);
	if (!send_rounds(b.url, rounds, raw_same, q_send) ||
	    !raw_baseline(b.url, &raw_pub, &raw_con) ||
	    !queue_api(&q_batch, &q_con)) {
		fprintf(stderr, "bench: a phase failed\n");
		return 1;
	}
	/* The send figures against cnats sending the same messages, the
	 * medians of interleaved rounds; the headerless publish of 256 bytes
	 * beside, as a comment. */
	bench_figure_rounds("queue send (sender)", q_send, raw_same, rounds,
	                    "msgs/s", 0);
	send_med = bench_median(q_send, rounds);
	printf("# raw async publish of 256 bytes without headers: %.0f "
	       "msgs/s (queue send / it: %.2f)\n",
	       raw_pub, raw_pub > 0 ? send_med / raw_pub : 0.0);
	figure("queue send-batch (10 a round trip)", q_batch,
	       bench_median(raw_same, rounds), "msgs/s");
	figure("queue receive+delete", q_con, raw_con, "msgs/s");
	figure("queue end to end", 1.0 / (1.0 / send_med + 1.0 / q_con),
	       1.0 / (1.0 / raw_pub + 1.0 / raw_con), "msgs/s");
	{
		double one = fifo_rate("one.fifo", 1);
		double many = fifo_rate("many.fifo", 64);
		figure("fifo 64 groups vs 1 group", many, one, "msgs/s");
	}
	mesh_conn_close(conn);
	test_broker_stop(&b);
	mesh_shutdown();
	return 0;
}
