/* bench_cluster: what replication costs. On one 3-node JetStream cluster
 * started here (on loopback: the three servers share this machine's
 * cores), the same work on a queue with Replicas 3 against a queue with
 * Replicas 1, in the same run:
 *
 *   queue:     N messages of 256 bytes sent through a sender (its window
 *              of 1,024), then received and deleted 10 at a time (as
 *              bench_queue); the send, the receive+delete, and end to
 *              end (N over both times together).
 *   pipeline:  N PlaceOrder events waiting in the queue, consumed by
 *              bench_runtime's service (bench_service.h: decode, the
 *              order put in LMDB, one durable commit per batch, acks),
 *              timed from the first event handled to the last.
 *   latency:   publish-to-commit p50 and p99 at 1,000 events/s (or
 *              BENCH_CLUSTER_RATE), sent one at a time (each waits for
 *              its acknowledgement: on R3 a quorum's), from the
 *              service's own stats.
 *
 * Each side gets a fresh queue, deleted after, whose consumer is made to
 * be led by the server that leads its stream (its leader is asked to step
 * down until an election puts it there), and the client connects to that
 * server: neither side pays a hop between servers, so what differs is the
 * replication. Each figure is measured BENCH_ROUNDS times (3), R1 and R3
 * interleaved (R1, R3; R3, R1; ...); each round prints a "# round" comment
 * with where the queue is led and the CPU per message of the servers (the
 * three together) and of this process (the service's included); the
 * figure line gives the medians and the median of the rounds' ratios,
 * R3 / R1 (the R1 side is the "baseline").
 *
 * Environment: BENCH_CLUSTER_MESSAGES (20000), BENCH_CLUSTER_EVENTS
 * (50000), BENCH_CLUSTER_LATENCY_EVENTS (5000), BENCH_CLUSTER_BATCH (256),
 * BENCH_CLUSTER_INFLIGHT (4), BENCH_CLUSTER_RATE (1000, the latency's
 * events per second), BENCH_ROUNDS (3), BENCH_CLUSTER_ONLY (queue,
 * pipeline or latency: that figure alone). Prints "NAME: VALUE UNIT
 * (baseline VALUE UNIT, ratio R)". Run:
 * meson test -C build --benchmark --suite cluster -v */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "bench_msgs.h"
#include "bench_service.h"
#include "harness.h"
#include "mesh/mesh.h"

static struct test_cluster cl;
static pid_t server_pid[TEST_CLUSTER_MAX];
/* conn[i]: to server i first (the mesh connects to the first it is
 * given), knowing the others. */
static struct mesh_conn *conn[TEST_CLUSTER_MAX];
static char root[PATH_MAX];
static long n_msgs, n_events, n_latency;
static int batch, inflight, rate;

/* What one side of a round measured. */
struct side {
	double v[3];     /* the figure's values, in the order of its names */
	char where[64];  /* the server leading the queue */
	double cpu_srv;  /* CPU per message of the servers together, us */
	double cpu_self; /* and of this process */
};

static double
servers_cpu_s(void)
{
	double s = 0;

	for (int i = 0; i < cl.n; i++) {
		s += test_cpu_s(server_pid[i]);
	}
	return s;
}

/* CPU marks: take them at a side's start ... */
static void
cpu_mark(double mark[2])
{
	mark[0] = test_cpu_s(0);
	mark[1] = servers_cpu_s();
}

/* ... and turn them into CPU per message at its end. */
static void
cpu_per(struct side *out, const double mark[2], long n)
{
	out->cpu_self = (test_cpu_s(0) - mark[0]) * 1e6 / (double)n;
	out->cpu_srv = (servers_cpu_s() - mark[1]) * 1e6 / (double)n;
}

/* Who leads the receivers' consumer of a queue's stream ("nK", as the
 * servers are named), into buf; "?" when it is not known. */
static const char *
receivers_leader(const char *stream, char *buf, size_t size)
{
	jsConsumerInfo *ci = NULL;

	snprintf(buf, size, "?");
	if (js_GetConsumerInfo(&ci, mesh_conn_js(conn[0]), stream, "receivers",
	                       NULL, NULL) == NATS_OK &&
	    ci->Cluster != NULL && ci->Cluster->Leader != NULL) {
		snprintf(buf, size, "%s", ci->Cluster->Leader);
	}
	jsConsumerInfo_Destroy(ci);
	return buf;
}

/* Make the queue's consumer led by the server that leads its stream
 * (asking its leader to step down until an election puts it there), so
 * that the client, on that server, reaches both without a hop between
 * servers; the index of that server, or -1. */
static int
colocate(const char *stream)
{
	char want[16], now[16], subject[160];
	int lead = test_cluster_leader(&cl, stream);

	if (lead < 0) {
		return -1;
	}
	snprintf(want, sizeof(want), "n%d", lead + 1);
	snprintf(subject, sizeof(subject),
	         "$JS.API.CONSUMER.LEADER.STEPDOWN.%s.receivers", stream);
	for (int tries = 0; tries < 20; tries++) {
		natsMsg *reply = NULL;
		double until;
		if (strcmp(receivers_leader(stream, now, sizeof(now)), want) ==
		    0) {
			return lead;
		}
		natsConnection_Request(&reply, mesh_conn_nats(conn[0]),
		                       subject, NULL, 0, 5000);
		natsMsg_Destroy(reply);
		/* Until the election is over. */
		until = bench_now_s() + 10;
		while (strcmp(receivers_leader(stream, now, sizeof(now)),
		              "?") == 0 &&
		       bench_now_s() < until) {
			usleep(50000);
		}
	}
	fprintf(stderr, "bench: %s: its consumer is not led by %s\n", stream,
	        want);
	return -1;
}

/* A fresh queue for a side, made with its replicas, its consumer led by
 * the server that leads its stream; *c is the connection to that server
 * and out->where says which it is. */
static bool
queue_new(const char *what, int replicas, int round, char *name, size_t size,
          struct mesh_conn **c, struct side *out)
{
	struct mesh_queue_attrs a;
	char stream[96];
	int at;

	snprintf(name, size, "%s-r%d-%d", what, replicas, round);
	mesh_queue_attrs_init(&a);
	a.replicas = replicas;
	if (mesh_queue_create(conn[0], name, &a) != MESH_OK) {
		fprintf(stderr, "bench: queue %s: %s\n", name,
		        mesh_errdetail());
		return false;
	}
	snprintf(stream, sizeof(stream), "MQ_%s", name);
	if ((at = colocate(stream)) < 0) {
		mesh_queue_delete(conn[0], name);
		return false;
	}
	*c = conn[at];
	snprintf(out->where, sizeof(out->where), "led by n%d", at + 1);
	return true;
}

/* queue: send, receive+delete, end to end, msgs/s. */
static bool
queue_side(int replicas, int round, struct side *out)
{
	struct mesh_conn *c = NULL;
	char name[64];
	struct mesh_queue *q = NULL;
	double mark[2], ts = 0, tr = 0;

	if (!queue_new("bq", replicas, round, name, sizeof(name), &c, out)) {
		return false;
	}
	if (mesh_queue_open(c, name, &q) == MESH_OK) {
		cpu_mark(mark);
		if ((ts = bench_send(q, n_msgs, 0)) > 0) {
			tr = bench_receive_delete(q, n_msgs);
		}
		cpu_per(out, mark, n_msgs);
	}
	mesh_queue_close(q);
	mesh_queue_delete(conn[0], name);
	if (ts <= 0 || tr <= 0) {
		return false;
	}
	out->v[0] = (double)n_msgs / ts;
	out->v[1] = (double)n_msgs / tr;
	out->v[2] = (double)n_msgs / (ts + tr);
	return true;
}

/* A fresh state directory for a side. */
static const char *
state_dir(char *buf, size_t size, const char *queue)
{
	snprintf(buf, size, "%s/%s", root, queue);
	return buf;
}

/* pipeline: events/s from the first handled to the last. */
static bool
pipeline_side(int replicas, int round, struct side *out)
{
	struct mesh_conn *c = NULL;
	char name[64], dir[PATH_MAX + 64];
	struct bench_service r;
	double mark[2];

	if (!queue_new("bp", replicas, round, name, sizeof(name), &c, out)) {
		return false;
	}
	bench_fill(c, name, n_events);
	cpu_mark(mark);
	bench_service_start(&r, c, name, state_dir(dir, sizeof(dir), name),
	                    batch, inflight, n_events);
	out->v[0] = bench_service_wait(&r, 120);
	cpu_per(out, mark, n_events);
	bench_service_stop(&r);
	mesh_queue_delete(conn[0], name);
	return out->v[0] > 0;
}

/* latency: publish-to-commit p50 and p99 in ms at 1,000 events/s. */
static bool
latency_side(int replicas, int round, struct side *out)
{
	struct mesh_conn *c = NULL;
	char name[64], dir[PATH_MAX + 64];
	double mark[2];
	bool ok;

	if (!queue_new("bl", replicas, round, name, sizeof(name), &c, out)) {
		return false;
	}
	cpu_mark(mark);
	ok = bench_service_latency(c, name, state_dir(dir, sizeof(dir), name),
	                           batch, inflight, n_latency, rate,
	                           &out->v[0], &out->v[1]);
	cpu_per(out, mark, n_latency);
	mesh_queue_delete(conn[0], name);
	return ok;
}

struct figure {
	const char *phase; /* BENCH_CLUSTER_ONLY's word */
	bool (*side)(int replicas, int round, struct side *out);
	int values;
	const char *label[3]; /* each value's, in the round lines */
	const char *name[3];  /* each value's figure line */
	const char *unit;
	int decimals;
	bool at_rate; /* measured at BENCH_CLUSTER_RATE */
};

static const struct figure figures[] = {
        {"queue",
         queue_side,
         3,
         {"send", "receive+delete", "end to end"},
         {"queue send (sender)", "queue receive+delete (batches of 10)",
          "queue end to end (send, then receive+delete)"},
         "msgs/s",
         0,
         false},
        {"pipeline",
         pipeline_side,
         1,
         {"pipeline"},
         {"runtime pipeline (durable LMDB commits)"},
         "events/s",
         0,
         false},
        {"latency",
         latency_side,
         2,
         {"p50", "p99"},
         {"publish-to-commit p50", "publish-to-commit p99"},
         "ms",
         3,
         true},
};

static void
round_note(const struct figure *f, int i, const struct side *r1,
           const struct side *r3)
{
	printf("# round %d:", i + 1);
	for (int k = 0; k < f->values; k++) {
		printf("%s %s R3 %.*f %s, R1 %.*f (ratio %.2f)", k ? ";" : "",
		       f->label[k], f->decimals, r3->v[k], f->unit,
		       f->decimals, r1->v[k],
		       r1->v[k] > 0 ? r3->v[k] / r1->v[k] : 0);
	}
	printf("\n#   R3: %s; CPU per message %.1f us in the servers, %.1f "
	       "us here\n",
	       r3->where, r3->cpu_srv, r3->cpu_self);
	printf("#   R1: %s; CPU per message %.1f us in the servers, %.1f "
	       "us here\n",
	       r1->where, r1->cpu_srv, r1->cpu_self);
	fflush(stdout);
}

/* A figure's rounds, R1 and R3 interleaved, then its figure lines. */
static bool
measure(const struct figure *f, int rounds)
{
	struct side r1[BENCH_ROUNDS_MAX] = {0}, r3[BENCH_ROUNDS_MAX] = {0};
	double v3[BENCH_ROUNDS_MAX], v1[BENCH_ROUNDS_MAX];
	char name[160];

	for (int i = 0; i < rounds; i++) {
		bool ok = i % 2 == 0 ? f->side(1, i, &r1[i]) &&
		                               f->side(3, i, &r3[i])
		                     : f->side(3, i, &r3[i]) &&
		                               f->side(1, i, &r1[i]);
		if (!ok) {
			fprintf(stderr, "bench: %s: round %d failed\n",
			        f->phase, i + 1);
			return false;
		}
		round_note(f, i, &r1[i], &r3[i]);
	}
	for (int k = 0; k < f->values; k++) {
		for (int i = 0; i < rounds; i++) {
			v3[i] = r3[i].v[k];
			v1[i] = r1[i].v[k];
		}
		if (f->at_rate) {
			snprintf(name, sizeof(name),
			         "%s at %d events/s, R3 against R1",
			         f->name[k], rate);
		} else {
			snprintf(name, sizeof(name), "%s, R3 against R1",
			         f->name[k]);
		}
		bench_figure_rounds(name, v3, v1, rounds, f->unit,
		                    f->decimals);
	}
	return true;
}

/* conn[i] for each server; and the service's dead-letter queue, made
 * before any side is timed (the service would make it at its first
 * start). */
static bool
open_conns(void)
{
	struct mesh_queue_attrs a;

	for (int i = 0; i < cl.n; i++) {
		struct mesh_conn_opts o;
		char urls[sizeof(cl.urls)];
		int k = snprintf(urls, sizeof(urls), "%s", cl.node[i].url);
		for (int j = 0; j < cl.n; j++) {
			if (j != i) {
				k += snprintf(urls + k,
				              sizeof(urls) - (size_t)k, ",%s",
				              cl.node[j].url);
			}
		}
		mesh_conn_opts_init(&o);
		o.servers = urls;
		if (mesh_conn_open(&o, &conn[i]) != MESH_OK) {
			fprintf(stderr, "bench: %s\n", mesh_errdetail());
			return false;
		}
	}
	mesh_queue_attrs_init(&a);
	if (mesh_queue_create(conn[0], "bench-dlq", &a) != MESH_OK) {
		fprintf(stderr, "bench: bench-dlq: %s\n", mesh_errdetail());
		return false;
	}
	return true;
}

int
main(void)
{
	const char *only = getenv("BENCH_CLUSTER_ONLY");
	int rounds = (int)bench_env_long("BENCH_ROUNDS", 3);
	int rc = 0;

	n_msgs = bench_env_long("BENCH_CLUSTER_MESSAGES", 20000);
	n_events = bench_env_long("BENCH_CLUSTER_EVENTS", 50000);
	n_latency = bench_env_long("BENCH_CLUSTER_LATENCY_EVENTS", 5000);
	rate = (int)bench_env_long("BENCH_CLUSTER_RATE", 1000);
	batch = (int)bench_env_long("BENCH_CLUSTER_BATCH", 256);
	inflight = (int)bench_env_long("BENCH_CLUSTER_INFLIGHT", 4);
	rounds = rounds > BENCH_ROUNDS_MAX ? BENCH_ROUNDS_MAX : rounds;
	if (!test_cluster_start(&cl, 3) || !test_tmpdir(root, sizeof(root))) {
		fprintf(stderr, "bench: no cluster\n");
		test_cluster_stop(&cl);
		return 1;
	}
	for (int i = 0; i < cl.n; i++) {
		server_pid[i] = test_broker_pid(&cl.node[i]);
	}
	if (!open_conns()) {
		test_cluster_stop(&cl);
		return 1;
	}
	printf("# 3 nodes on loopback, %ld online CPUs; queue: "
	       "%ld messages of %d bytes; pipeline: %ld events, batches of "
	       "up to %d, %d in flight; latency: %ld events at %d/s; %d "
	       "rounds, interleaved\n",
	       sysconf(_SC_NPROCESSORS_ONLN), n_msgs, BENCH_BODY, n_events,
	       batch, inflight, n_latency, rate, rounds);
	for (size_t i = 0; i < sizeof(figures) / sizeof(figures[0]); i++) {
		if ((only == NULL || *only == '\0' ||
		     strcmp(only, figures[i].phase) == 0) &&
		    !measure(&figures[i], rounds)) {
			rc = 1;
			break;
		}
	}
	for (int i = 0; i < cl.n; i++) {
		mesh_conn_close(conn[i]);
	}
	test_cluster_stop(&cl);
	test_rmtree(root);
	mesh_shutdown();
	return rc;
}
