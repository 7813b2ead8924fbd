/* bench_runtime: the service runtime beside raw cnats, measured in the same
 * run on the same nats-server (started here).
 *
 *   pipeline:  N PlaceOrder events wait in a queue; a service whose
 *              handler decodes each, updates its LMDB state and (the
 *              runtime) marks its id processed, one durable commit per
 *              batch, then acks; timed from the first event handled to
 *              the last (the start is the cold-start figure's).
 *              Baselines: cnats fetching the same N messages (the
 *              events' wire form, headers and all) from a pull consumer
 *              and acking each; and the service's work written by hand
 *              on cnats, protobuf-c and LMDB (a batch fetched, each
 *              event unpacked and its state and processed id put, one
 *              durable commit, then the acks). Each also notes the CPU
 *              time per event it and the broker used.
 *   latency:   events sent at 1,000 per second; publish-to-commit p50 and
 *              p99 from the runtime's own histogram. Baseline: the same
 *              rate through cnats alone, publish to fetch.
 *   cold start: exec of a service program until it is ready to consume
 *              (its "started" line). Baseline: exec of a cnats program
 *              that connects and binds a pull consumer.
 *
 * Each figure is measured BENCH_RUNTIME_ROUNDS times (3), the runtime
 * and its baseline interleaved (raw, runtime; runtime, raw; ...), so that
 * the machine's drift falls on both sides alike; each round prints a
 * "# round" comment and the figure line gives the medians and the median
 * of the rounds' ratios.
 *
 * Environment: BENCH_RUNTIME_EVENTS (50000), BENCH_RUNTIME_BATCH (256),
 * BENCH_RUNTIME_INFLIGHT (4), BENCH_RUNTIME_ROUNDS (3), BENCH_RUNTIME_ONLY
 * (pipeline, latency or cold: that figure alone, for profiling).
 * Prints "NAME: VALUE UNIT (baseline VALUE UNIT, ratio R)". Run:
 * meson test -C build --benchmark --suite runtime -v */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lmdb.h>
#include <sys/stat.h>

#include "bench.h"
#include "bench_service.h"
#include "cloudevents.pb-c.h"
#include "harness.h"
#include "mesh/service.h"
#include "shop.pb-c.h"

static struct test_broker broker;
static struct mesh_conn *conn;

/* CPU per event of this process and of the broker since *mark, printed
 * as a comment; then *mark moves on. */
static void
cpu_note(const char *what, long events, double mark[2])
{
	double self = test_cpu_s(0),
	       brk = test_cpu_s(test_broker_pid(&broker));

	printf("# %s: CPU per event %.1f us here, %.1f us in the broker\n",
	       what, (self - mark[0]) * 1e6 / (double)events,
	       (brk - mark[1]) * 1e6 / (double)events);
	mark[0] = self;
	mark[1] = brk;
}

/* Whether to measure this figure (BENCH_RUNTIME_ONLY). */
static bool
phase(const char *name)
{
	const char *only = getenv("BENCH_RUNTIME_ONLY");

	return only == NULL || *only == '\0' || strcmp(only, name) == 0;
}

/* ---- baselines ---------------------------------------------------------- */

static natsConnection *raw_nc;
static jsCtx *raw_js;

static void
raw_stream(const char *name, const char *subject)
{
	jsStreamConfig sc;
	jsConsumerConfig cc;
	const char *subj[] = {subject};

	jsStreamConfig_Init(&sc);
	sc.Name = name;
	sc.Subjects = subj;
	sc.SubjectsLen = 1;
	sc.Retention = js_WorkQueuePolicy;
	sc.Storage = js_FileStorage;
	js_AddStream(NULL, raw_js, &sc, NULL, NULL);
	jsConsumerConfig_Init(&cc);
	cc.Durable = "raw";
	cc.AckPolicy = js_AckExplicit;
	cc.MaxAckPending = 100000;
	js_AddConsumer(NULL, raw_js, name, &cc, NULL, NULL);
}

static natsSubscription *
raw_bind(const char *stream, const char *subject)
{
	jsSubOptions so;
	natsSubscription *sub = NULL;

	jsSubOptions_Init(&so);
	so.Stream = stream;
	so.Consumer = "raw";
	js_PullSubscribe(&sub, raw_js, subject, "raw", NULL, &so, NULL);
	return sub;
}

/* A stream of n orders as the queue holds them: the events' wire form,
 * their headers and all; its pull consumer bound. */
static natsSubscription *
raw_filled(const char *stream, const char *subject, long n)
{
	raw_stream(stream, subject);
	for (long i = 0; i < n; i++) {
		struct mesh_event *ev = bench_order(i);
		natsMsg *m = NULL;
		if (mesh_wire_msg(subject, NULL, ev, NULL, &m) == MESH_OK) {
			js_PublishMsgAsync(raw_js, &m, NULL);
		}
		natsMsg_Destroy(m);
		mesh_event_free(ev);
	}
	js_PublishAsyncComplete(raw_js, NULL);
	return raw_bind(stream, subject);
}

/* The service's work written by hand on protobuf-c and LMDB, for one
 * fetched batch: in one write transaction, for each event not yet
 * processed, unpack its envelope and its PlaceOrder, put the order's state
 * and its id as processed; commit durably (the env syncs each commit). */
struct raw_lmdb {
	MDB_env *env;
	MDB_dbi state, seen;
};

static bool
raw_lmdb_open(struct raw_lmdb *l, const char *dir)
{
	MDB_txn *txn = NULL;

	mkdir(dir, 0700);
	if (mdb_env_create(&l->env) != 0 ||
	    mdb_env_set_mapsize(l->env, 1u << 30) ||
	    mdb_env_set_maxdbs(l->env, 2) ||
	    mdb_env_open(l->env, dir, 0, 0600) ||
	    mdb_txn_begin(l->env, NULL, 0, &txn) ||
	    mdb_dbi_open(txn, "state", MDB_CREATE, &l->state) ||
	    mdb_dbi_open(txn, "processed", MDB_CREATE, &l->seen) ||
	    mdb_txn_commit(txn)) {
		fprintf(stderr, "bench: LMDB in %s\n", dir);
		mdb_env_close(l->env);
		return false;
	}
	return true;
}

static void
raw_lmdb_apply(struct raw_lmdb *l, const natsMsgList *list)
{
	MDB_txn *txn = NULL;

	mdb_txn_begin(l->env, NULL, 0, &txn);
	for (int i = 0; i < list->Count; i++) {
		natsMsg *m = list->Msgs[i];
		Io__Cloudevents__V1__CloudEvent *ce =
		        io__cloudevents__v1__cloud_event__unpack(
		                NULL, (size_t)natsMsg_GetDataLength(m),
		                (const uint8_t *)natsMsg_GetData(m));
		Evmesh__Shop__PlaceOrder *po = NULL;
		MDB_val k, v;
		if (ce == NULL) {
			continue;
		}
		k = (MDB_val){strlen(ce->id), ce->id};
		if (mdb_get(txn, l->seen, &k, &v) == MDB_NOTFOUND &&
		    ce->proto_data != NULL &&
		    (po = evmesh__shop__place_order__unpack(
		             NULL, ce->proto_data->value.len,
		             ce->proto_data->value.data)) != NULL) {
			char key[64], val[32];
			snprintf(key, sizeof(key), "order/%s", po->order_id);
			snprintf(val, sizeof(val), "%lld",
			         (long long)po->total_cents);
			mdb_put(txn, l->state, &(MDB_val){strlen(key), key},
			        &(MDB_val){strlen(val), val}, 0);
			evmesh__shop__place_order__free_unpacked(po, NULL);
			v = (MDB_val){0, ""};
			mdb_put(txn, l->seen, &k, &v, 0);
		}
		io__cloudevents__v1__cloud_event__free_unpacked(ce, NULL);
	}
	mdb_txn_commit(txn);
}

/* Fetch and ack n messages, a batch at a time, as a plain consumer is
 * written; with lmdb_dir, each batch's work is done by hand on LMDB
 * (raw_lmdb_apply) before its acks. Events per second, 0 on failure. */
static double
raw_pipeline(const char *lmdb_dir, long n, int batch)
{
	double mark[2] = {test_cpu_s(0), test_cpu_s(test_broker_pid(&broker))};
	struct raw_lmdb l = {0};
	natsSubscription *sub;
	long got = 0;
	double t0;

	if (lmdb_dir != NULL && !raw_lmdb_open(&l, lmdb_dir)) {
		return 0;
	}
	sub = lmdb_dir ? raw_filled("RAW_LMDB", "raw.lmdb", n)
	               : raw_filled("RAW_PIPE", "raw.pipe", n);
	cpu_note("(filling)", n, mark);
	t0 = bench_now_s();
	while (got < n) {
		natsMsgList list = {0};
		if (natsSubscription_Fetch(&list, sub, batch, 1000, NULL) !=
		    NATS_OK) {
			continue;
		}
		if (lmdb_dir != NULL) {
			raw_lmdb_apply(&l, &list);
		}
		for (int i = 0; i < list.Count; i++) {
			natsMsg_Ack(list.Msgs[i], NULL);
		}
		got += list.Count;
		natsMsgList_Destroy(&list);
	}
	t0 = bench_now_s() - t0;
	cpu_note(lmdb_dir ? "baseline (LMDB)" : "baseline", n, mark);
	natsSubscription_Destroy(sub);
	mdb_env_close(l.env);
	return (double)n / t0;
}

struct raw_fetcher {
	natsSubscription *sub;
	long n, got;
	double *lat;
};

/* Fetch (long polls) until n have come, noting publish-to-fetch times. */
static void *
raw_fetch_main(void *arg)
{
	struct raw_fetcher *f = arg;

	for (double until = bench_now_s() + 60;
	     f->got < f->n && bench_now_s() < until;) {
		natsMsgList list = {0};
		if (natsSubscription_Fetch(&list, f->sub, 64, 500, NULL) !=
		    NATS_OK) {
			continue;
		}
		for (int k = 0; k < list.Count && f->got < f->n; k++) {
			f->lat[f->got++] =
			        (bench_now_s() -
			         atof(natsMsg_GetData(list.Msgs[k]))) *
			        1000.0;
			natsMsg_Ack(list.Msgs[k], NULL);
		}
		natsMsgList_Destroy(&list);
	}
	return NULL;
}

/* Publish at `rate` per second for n events (each waiting for its
 * JetStream acknowledgement, as a queue send does) while another thread
 * fetches them with long polls; publish-to-fetch p50 and p99 in ms. */
static void
raw_latency(long n, int rate, double *p50, double *p99)
{
	struct raw_fetcher f = {.n = n};
	pthread_t t;
	double t0;

	raw_stream("RAW_LAT", "raw.lat");
	f.sub = raw_bind("RAW_LAT", "raw.lat");
	f.lat = calloc((size_t)n, sizeof(*f.lat));
	pthread_create(&t, NULL, raw_fetch_main, &f);
	usleep(100000);
	t0 = bench_now_s();
	for (long i = 0; i < n; i++) {
		char body[32];
		while (bench_now_s() < t0 + (double)i / rate) {
			usleep(100);
		}
		snprintf(body, sizeof(body), "%.9f", bench_now_s());
		js_Publish(NULL, raw_js, "raw.lat", body, (int)strlen(body),
		           NULL, NULL);
	}
	pthread_join(t, NULL);
	qsort(f.lat, (size_t)f.got, sizeof(*f.lat), bench_cmp_double);
	*p50 = f.got ? f.lat[f.got / 2] : 0;
	*p99 = f.got ? f.lat[(f.got * 99) / 100] : 0;
	free(f.lat);
	natsSubscription_Destroy(f.sub);
}

/* ---- cold start --------------------------------------------------------- */

/* Exec argv and time it until a line containing `ready` on its stderr;
 * then stop it. Milliseconds, or -1. */
static double
exec_until(char *const argv[], const char *ready)
{
	int fd[2];
	char buf[4096];
	size_t n = 0;
	double t0, t = -1;
	pid_t pid;

	if (pipe(fd) != 0) {
		return -1;
	}
	t0 = bench_now_s();
	if ((pid = fork()) == 0) {
		dup2(fd[1], 2);
		close(fd[0]);
		execv(argv[0], argv);
		_exit(127);
	}
	close(fd[1]);
	while (n + 1 < sizeof(buf)) {
		ssize_t r = read(fd[0], buf + n, sizeof(buf) - 1 - n);
		if (r <= 0) {
			break;
		}
		n += (size_t)r;
		buf[n] = '\0';
		if (strstr(buf, ready) != NULL) {
			t = (bench_now_s() - t0) * 1000.0;
			break;
		}
	}
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	close(fd[0]);
	return t;
}

/* The best of 5 starts. */
static double
cold_start(char *const argv[], const char *ready)
{
	double best = -1;

	for (int i = 0; i < 5; i++) {
		double t = exec_until(argv, ready);
		if (t >= 0 && (best < 0 || t < best)) {
			best = t;
		}
	}
	return best;
}

/* As a child: a cnats program that connects and binds a pull consumer,
 * then says so (the cold-start baseline), or the bench service. */
static int
child_main(int argc, char **argv)
{
	if (strcmp(argv[1], "--raw-start") == 0) {
		natsConnection *nc = NULL;
		jsCtx *js = NULL;
		natsSubscription *sub = NULL;
		jsSubOptions so;
		natsConnection_ConnectTo(&nc, argv[2]);
		natsConnection_JetStream(&js, nc, NULL);
		jsSubOptions_Init(&so);
		so.Stream = "RAW_PIPE";
		so.Consumer = "raw";
		js_PullSubscribe(&sub, js, "raw.pipe", "raw", NULL, &so, NULL);
		fprintf(stderr, "ready\n");
		pause();
		return 0;
	}
	if (strcmp(argv[1], "--service") == 0 && argc >= 5) {
		struct mesh_service *s = NULL;
		char *args[] = {argv[0],   "--server", argv[2],
		                "--state", argv[3],    NULL};
		mesh_service_new("bench-cold", &s);
		mesh_service_consume(s, argv[4]);
		mesh_service_on(s, NULL, NULL, bench_on_order, NULL);
		return mesh_service_main(s, 5, args);
	}
	return 2;
}

static int
inflight(void)
{
	return (int)bench_env_long("BENCH_RUNTIME_INFLIGHT", 4);
}

/* The runtime's pipeline over n events waiting in queue, in a fresh
 * state directory; events per second from the first handled to the
 * last. */
static double
runtime_pipeline(const char *queue, const char *dir, long n, int batch)
{
	struct bench_service r;
	double mark[2];
	double rate;

	bench_fill(conn, queue, n);
	mark[0] = test_cpu_s(0);
	mark[1] = test_cpu_s(test_broker_pid(&broker));
	bench_service_start(&r, conn, queue, dir, batch, inflight(), n);
	if ((rate = bench_service_wait(&r, 120)) <= 0) {
		exit(1);
	}
	cpu_note("runtime", n, mark);
	bench_service_stop(&r);
	return rate;
}

/* The runtime's publish-to-commit p50 and p99 at 1,000 events/s. */
static void
runtime_latency(const char *queue, const char *dir, int batch, double *p50,
                double *p99)
{
	if (!bench_service_latency(conn, queue, dir, batch, inflight(), 5000,
	                           1000, p50, p99)) {
		exit(1);
	}
}

/* A fresh directory under root for round i. */
static const char *
round_dir(char *buf, size_t size, const char *root, const char *what, int i)
{
	snprintf(buf, size, "%s/%s-%d", root, what, i);
	return buf;
}

int
main(int argc, char **argv)
{
	struct mesh_queue_attrs qa;
	char root[PATH_MAX], dir[PATH_MAX + 32], cold_dir[PATH_MAX + 32];
	long n = bench_env_long("BENCH_RUNTIME_EVENTS", 50000);
	int batch = (int)bench_env_long("BENCH_RUNTIME_BATCH", 256);
	int rounds = (int)bench_env_long("BENCH_RUNTIME_ROUNDS", 3);
	double rate[BENCH_ROUNDS_MAX], base[BENCH_ROUNDS_MAX],
	        p50[BENCH_ROUNDS_MAX], p99[BENCH_ROUNDS_MAX],
	        b50[BENCH_ROUNDS_MAX], b99[BENCH_ROUNDS_MAX];
	double cold[BENCH_ROUNDS_MAX], raw_cold[BENCH_ROUNDS_MAX];
	double lbase[BENCH_ROUNDS_MAX], rate2[BENCH_ROUNDS_MAX];

	if (argc > 1) {
		return child_main(argc, argv);
	}
	rounds = rounds < 1 ? 1 : rounds > 15 ? 15 : rounds;
	if (!bench_broker_open(&broker, root, sizeof(root), &conn)) {
		return 1;
	}
	natsConnection_ConnectTo(&raw_nc, broker.url);
	{
		jsOptions jo;
		jsOptions_Init(&jo);
		jo.PublishAsync.MaxPending = 4096;
		natsConnection_JetStream(&raw_js, raw_nc, &jo);
	}
	mesh_queue_attrs_init(&qa);
	mesh_queue_create(conn, "bench-in", &qa);
	mesh_queue_create(conn, "bench-lat", &qa);
	mesh_queue_create(conn, "bench-cold", &qa);
	printf("# %ld events, batches of up to %d; durable LMDB commits; %d "
	       "rounds, interleaved\n",
	       n, batch, rounds);

	if (phase("pipeline")) {
		char ldir[PATH_MAX + 32];
		for (int i = 0; i < rounds; i++) {
			round_dir(dir, sizeof(dir), root, "pipeline", i);
			round_dir(ldir, sizeof(ldir), root, "raw-lmdb", i);
			if (i % 2 == 0) {
				base[i] = raw_pipeline(NULL, n, batch);
				lbase[i] = raw_pipeline(ldir, n, batch);
				rate[i] = runtime_pipeline("bench-in", dir, n,
				                           batch);
			} else {
				rate[i] = runtime_pipeline("bench-in", dir, n,
				                           batch);
				lbase[i] = raw_pipeline(ldir, n, batch);
				base[i] = raw_pipeline(NULL, n, batch);
			}
			rate2[i] = rate[i];
			printf("# round %d: runtime pipeline %.0f events/s, "
			       "cnats %.0f (ratio %.2f), cnats+LMDB by hand "
			       "%.0f (ratio %.2f)\n",
			       i + 1, rate[i], base[i], rate[i] / base[i],
			       lbase[i], rate[i] / lbase[i]);
		}
		bench_figure_rounds("runtime pipeline", rate, base, rounds,
		                    "events/s", 0);
		bench_figure_rounds(
		        "runtime pipeline vs the same work by hand "
		        "(cnats+protobuf-c+LMDB)",
		        rate2, lbase, rounds, "events/s", 0);
	}
	if (phase("latency")) {
		for (int i = 0; i < rounds; i++) {
			round_dir(dir, sizeof(dir), root, "latency", i);
			if (i % 2 == 0) {
				raw_latency(5000, 1000, &b50[i], &b99[i]);
				runtime_latency("bench-lat", dir, batch,
				                &p50[i], &p99[i]);
			} else {
				runtime_latency("bench-lat", dir, batch,
				                &p50[i], &p99[i]);
				raw_latency(5000, 1000, &b50[i], &b99[i]);
			}
			printf("# round %d: p50 %.3f ms (raw %.3f), p99 %.3f "
			       "ms "
			       "(raw %.3f)\n",
			       i + 1, p50[i], b50[i], p99[i], b99[i]);
		}
		bench_figure_rounds("publish-to-commit p50 at 1000 events/s",
		                    p50, b50, rounds, "ms", 3);
		bench_figure_rounds("publish-to-commit p99 at 1000 events/s",
		                    p99, b99, rounds, "ms", 3);
	}
	if (phase("cold")) {
		char self[PATH_MAX];
		ssize_t len =
		        readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (len > 0) {
			self[len] = '\0';
		}
		for (int i = 0; i < rounds; i++) {
			char *svc[] = {len > 0 ? self : argv[0],
			               "--service",
			               broker.url,
			               (char *)round_dir(cold_dir,
			                                 sizeof(cold_dir),
			                                 root, "cold", i),
			               "bench-cold",
			               NULL};
			char *raw[] = {len > 0 ? self : argv[0], "--raw-start",
			               broker.url, NULL};
			if (i % 2 == 0) {
				raw_cold[i] = cold_start(raw, "ready");
				cold[i] = cold_start(svc, "\"started");
			} else {
				cold[i] = cold_start(svc, "\"started");
				raw_cold[i] = cold_start(raw, "ready");
			}
			printf("# round %d: cold start %.2f ms (raw %.2f)\n",
			       i + 1, cold[i], raw_cold[i]);
		}
		bench_figure_rounds("cold start (exec to ready to consume)",
		                    cold, raw_cold, rounds, "ms", 3);
	}
	mesh_conn_close(conn);
	jsCtx_Destroy(raw_js);
	natsConnection_Destroy(raw_nc);
	test_broker_stop(&broker);
	test_rmtree(root);
	mesh_shutdown();
	return 0;
}
