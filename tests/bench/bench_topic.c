/* bench_topic: fan-out through the router beside the raw cnats baseline,
 * measured in the same run on the same nats-server (started here).
 *
 * One topic, 10 queue subscriptions, half of them with a filter policy
 * that matches half of the messages: N messages make 7.5 N copies.
 *   baseline: the same fan-out written with cnats alone (raw_forward):
 *             durable consumers on a plain stream holding the same N
 *             events, each fetched 256 at a time, the matching ones
 *             async-published to their queue as the same copies (bytes,
 *             envelope headers and a de-duplication id each, which
 *             exactly-once forwarding needs), the batch acked;
 *   fan-out:  the N messages wait in the topic, then mesh-router's
 *             workers (in this process) fetch, filter and forward them,
 *             and acknowledge each; timed until every queue holds its
 *             copies.
 *
 * Environment: BENCH_TOPIC_MESSAGES (20000), BENCH_TOPIC_RAW (1: raw
 * delivery; 0: SNS notification JSON). Prints "NAME: VALUE UNIT (baseline
 * VALUE UNIT, ratio R)". Run: meson test -C build --benchmark --suite
 * topics -v */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "mesh/mesh.h"

#define BODY   256
#define QUEUES 10

static struct mesh_conn *conn;

static long
env_long(const char *name, long def)
{
	const char *v = getenv(name);

	return v && *v ? strtol(v, NULL, 10) : def;
}

static struct mesh_event *
message(long i)
{
	struct mesh_event *ev = NULL;
	char body[BODY];
	const char *k = i % 2 ? "b" : "a";

	memset(body, 'x', sizeof(body));
	body[snprintf(body, 32, "%ld", i)] = ' ';
	mesh_event_new("bench.topic", "bench", &ev);
	mesh_event_set_text(ev, body, sizeof(body));
	mesh_event_attr_set(ev, "k", "String", k, 1);
	return ev;
}

static uint64_t
stored(const char *queue)
{
	struct mesh_queue_info qi;

	return mesh_queue_info(conn, queue, &qi) == MESH_OK ? qi.visible : 0;
}

/* The baseline: a fan-out written with cnats alone, doing the router's
 * work without evmesh: per subscription a durable consumer on a raw
 * stream holding the same N messages, and a thread that fetches 256,
 * async-publishes the matching ones to its queue's stream and waits for
 * the acknowledgements, then acks the batch. */
struct raw_sub {
	pthread_t t;
	natsConnection *nc;
	int round, q;
	long want, done;
};

static const char *raw_url;

/* A copy as the router makes it: the same bytes and envelope headers,
 * and a de-duplication id of its own. */
static void
forward(jsCtx *js, const char *subj, natsMsg *src, int q)
{
	static const char *const keep[] = {"Content-Type", "Ce-Id", "Ce-Type",
	                                   "Ce-Source"};
	natsMsg *m = NULL;
	char id[64];
	uint64_t seq = 0;
	jsMsgMetaData *meta = NULL;

	if (natsMsg_GetMetaData(&meta, src) == NATS_OK) {
		seq = meta->Sequence.Stream;
		jsMsgMetaData_Destroy(meta);
	}
	snprintf(id, sizeof(id), "raw:%d:%" PRIu64, q, seq);
	natsMsg_Create(&m, subj, NULL, natsMsg_GetData(src),
	               natsMsg_GetDataLength(src));
	for (size_t i = 0; i < sizeof(keep) / sizeof(*keep); i++) {
		const char *v = NULL;
		if (natsMsgHeader_Get(src, keep[i], &v) == NATS_OK) {
			natsMsgHeader_Set(m, keep[i], v);
		}
	}
	natsMsgHeader_Set(m, "Nats-Msg-Id", id);
	js_PublishMsgAsync(js, &m, NULL);
}

static void *
raw_forward(void *arg)
{
	struct raw_sub *rs = arg;
	jsCtx *js = NULL;
	jsOptions jo;
	jsSubOptions so;
	natsSubscription *sub = NULL;
	char durable[16], subj[64], stream[32], topic[32];

	jsOptions_Init(&jo);
	jo.PublishAsync.MaxPending = 4096;
	snprintf(durable, sizeof(durable), "c%d", rs->q);
	snprintf(subj, sizeof(subj), "mesh.queue.raw%d_%d", rs->round, rs->q);
	snprintf(stream, sizeof(stream), "BENCH_RAW%d", rs->round);
	snprintf(topic, sizeof(topic), "bench.raw%d", rs->round);
	jsSubOptions_Init(&so);
	so.Stream = stream;
	so.Consumer = durable;
	if (natsConnection_JetStream(&js, rs->nc, &jo) != NATS_OK ||
	    js_PullSubscribe(&sub, js, topic, durable, NULL, &so, NULL) !=
	            NATS_OK) {
		return NULL;
	}
	while (rs->done < rs->want) {
		natsMsgList list = {0};
		if (natsSubscription_Fetch(&list, sub, 256, 1000, NULL) !=
		    NATS_OK) {
			continue;
		}
		for (int i = 0; i < list.Count; i++) {
			const char *k = NULL;
			natsMsgHeader_Get(list.Msgs[i], "K", &k);
			if (rs->q % 2 == 0 || (k != NULL && k[0] == 'a')) {
				forward(js, subj, list.Msgs[i], rs->q);
				rs->done++;
			}
		}
		js_PublishAsyncComplete(js, NULL);
		for (int i = 0; i < list.Count; i++) {
			natsMsg_Ack(list.Msgs[i], NULL);
		}
		natsMsgList_Destroy(&list);
	}
	natsSubscription_Destroy(sub);
	jsCtx_Destroy(js);
	return NULL;
}

static double
baseline(int round, long n, const long want[QUEUES])
{
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	jsStreamConfig sc;
	char stream[32], topic[32];
	const char *subj[] = {topic};
	struct raw_sub rs[QUEUES];
	struct mesh_queue_attrs qa;
	long total = 0;
	long long t0;

	snprintf(stream, sizeof(stream), "BENCH_RAW%d", round);
	snprintf(topic, sizeof(topic), "bench.raw%d", round);
	if (natsConnection_ConnectTo(&nc, raw_url) != NATS_OK ||
	    natsConnection_JetStream(&js, nc, NULL) != NATS_OK) {
		return 0;
	}
	mesh_queue_attrs_init(&qa);
	jsStreamConfig_Init(&sc);
	sc.Name = stream;
	sc.Subjects = subj;
	sc.SubjectsLen = 1;
	sc.Retention = js_InterestPolicy;
	sc.Storage = js_FileStorage;
	js_AddStream(NULL, js, &sc, NULL, NULL);
	for (int q = 0; q < QUEUES; q++) {
		jsConsumerConfig cc;
		char durable[16], queue[32];
		snprintf(durable, sizeof(durable), "c%d", q);
		snprintf(queue, sizeof(queue), "raw%d_%d", round, q);
		mesh_queue_create(conn, queue, &qa);
		jsConsumerConfig_Init(&cc);
		cc.Durable = durable;
		cc.AckPolicy = js_AckExplicit;
		cc.MaxAckPending = 20000;
		js_AddConsumer(NULL, js, stream, &cc, NULL, NULL);
	}
	for (long i = 0; i < n; i++) {
		natsMsg *m = NULL;
		struct mesh_event *src = message(i);
		if (mesh_wire_msg(topic, NULL, src, NULL, &m) == MESH_OK) {
			natsMsgHeader_Set(m, "K", i % 2 ? "b" : "a");
			js_PublishMsgAsync(js, &m, NULL);
		}
		mesh_event_free(src);
	}
	js_PublishAsyncComplete(js, NULL);
	t0 = test_now_ms();
	for (int q = 0; q < QUEUES; q++) {
		rs[q] = (struct raw_sub){
		        .nc = nc, .round = round, .q = q, .want = want[q]};
		pthread_create(&rs[q].t, NULL, raw_forward, &rs[q]);
		total += want[q];
	}
	for (int q = 0; q < QUEUES; q++) {
		pthread_join(rs[q].t, NULL);
	}
	double rate = (double)total * 1000.0 / (double)(test_now_ms() - t0);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	return rate;
}

struct router_thread {
	pthread_t t;
	volatile sig_atomic_t stop;
};

static void *
router_main(void *arg)
{
	struct router_thread *r = arg;
	struct mesh_router_opts o;

	mesh_router_opts_init(&o);
	o.stats_every_s = 0;
	mesh_router_run(conn, &o, &r->stop);
	return NULL;
}

/* The router's round: the N messages wait in a topic, then a router
 * forwards them; copies per second until every queue has its own. */
static double
fan_out(int round, long n, const long want[QUEUES], long total, bool raw)
{
	struct mesh_topic_attrs ta;
	struct mesh_queue_attrs qa;
	struct mesh_sub_attrs sa;
	struct mesh_topic *t = NULL;
	struct router_thread r = {0};
	char topic[32];
	long long t0, deadline;
	bool done = false;

	snprintf(topic, sizeof(topic), "bench%d", round);
	mesh_topic_attrs_init(&ta);
	mesh_queue_attrs_init(&qa);
	mesh_topic_create(conn, topic, &ta);
	for (int q = 0; q < QUEUES; q++) {
		char name[32];
		snprintf(name, sizeof(name), "fan%d_%d", round, q);
		mesh_queue_create(conn, name, &qa);
		mesh_sub_attrs_init(&sa);
		sa.raw = raw;
		sa.filter_policy = q % 2 ? "{\"k\": [\"a\"]}" : NULL;
		mesh_subscription_create(conn, topic, MESH_SUB_QUEUE, name,
		                         &sa, NULL);
	}
	mesh_topic_open(conn, topic, &t);
	for (long i = 0; i < n; i += 10) {
		struct mesh_topic_entry e[10];
		struct mesh_topic_published p[10];
		struct mesh_event *ev[10];
		char ids[10][24];
		int k, m = n - i < 10 ? (int)(n - i) : 10;
		for (k = 0; k < m; k++) {
			ev[k] = message(i + k);
			snprintf(ids[k], sizeof(ids[k]), "e%d", k);
			e[k] = (struct mesh_topic_entry){.id = ids[k],
			                                 .event = ev[k]};
		}
		mesh_topic_publish_batch(t, e, (size_t)m, p);
		for (k = 0; k < m; k++) {
			mesh_event_free(ev[k]);
		}
	}
	mesh_topic_close(t);

	t0 = test_now_ms();
	pthread_create(&r.t, NULL, router_main, &r);
	deadline = t0 + 600000;
	while (!done && test_now_ms() < deadline) {
		done = true;
		for (int q = 0; q < QUEUES && done; q++) {
			char name[32];
			snprintf(name, sizeof(name), "fan%d_%d", round, q);
			done = stored(name) >= (uint64_t)want[q];
		}
		if (!done) {
			usleep(20000);
		}
	}
	double rate = (double)total * 1000.0 / (double)(test_now_ms() - t0);
	r.stop = 1;
	pthread_join(r.t, NULL);
	return done ? rate : 0;
}

int
main(void)
{
	struct test_broker b;
	struct mesh_conn_opts o;
	long n = env_long("BENCH_TOPIC_MESSAGES", 20000);
	bool raw = env_long("BENCH_TOPIC_RAW", 1) != 0;
	long want[QUEUES], total = 0;
	double base = 0, rate = 0;

	if (!test_broker_start(&b, NULL)) {
		fprintf(stderr, "bench: nats-server did not start\n");
		return 1;
	}
	mesh_conn_opts_init(&o);
	o.servers = b.url;
	if (mesh_conn_open(&o, &conn) != MESH_OK) {
		fprintf(stderr, "bench: %s\n", mesh_errdetail());
		return 1;
	}
	raw_url = b.url;
	for (int q = 0; q < QUEUES; q++) {
		want[q] = q % 2 ? (n + 1) / 2 : n;
		total += want[q];
	}
	printf("# %ld messages of %d bytes to 10 queue subscriptions, 5 with "
	       "a policy matching half (%ld copies); raw delivery %s; best "
	       "of 3 rounds each\n",
	       n, BODY, total, raw ? "on" : "off");
	/* Rounds alternate, so that both sides see the same noise. */
	for (int round = 0; round < 3; round++) {
		double bv = baseline(round, n, want);
		double fv = fan_out(round, n, want, total, raw);
		if (fv == 0) {
			fprintf(stderr, "bench: the copies did not all "
			                "arrive\n");
			return 1;
		}
		base = bv > base ? bv : base;
		rate = fv > rate ? fv : rate;
	}
	printf("topic fan-out: %.0f copies/s (baseline %.0f copies/s, "
	       "ratio %.2f)\n",
	       rate, base, base > 0 ? rate / base : 0.0);
	mesh_conn_close(conn);
	test_broker_stop(&b);
	mesh_shutdown();
	return 0;
}
