/* bench_gateway: mesh-gateway's figures (issue 17), each beside a raw
 * baseline measured in the same run on the same nats-server (started
 * here). The load generator is this program: HTTP/1.1 over keep-alive
 * connections, one per thread, written by hand (no client library).
 *
 *   async POST: BENCH_GW_POSTS (20,000) POSTs of a 100-byte text body to
 *          a queue: route from BENCH_GW_CONNS (64) connections, each
 *          answered 202 once JetStream stored the event: requests/s.
 *          Baseline: the same bodies as events sent with mesh_queue_send
 *          (the library, no HTTP) from as many threads, each with its
 *          own open queue. BENCH_GW_ROUNDS (3) of each, interleaved.
 *          Goal: ratio >= 0.5.
 *   service GET: GET /orders/{id} through a service: route to
 *          gw-responder (raw cnats, its echo reply) at BENCH_GW_RATE
 *          (1,000) requests/s offered for BENCH_GW_SECONDS (5), open
 *          loop: BENCH_GW_CONNS threads, thread k sending request i at
 *          start + (k + i * threads) / rate; a request's latency runs
 *          from when it was due (a late one counts its wait). p50, p99
 *          and requests/s answered. Baseline: the same schedule of raw
 *          NATS requests (natsConnection_RequestMsg, the same headers
 *          the gateway sends) to the same responder. Goal: p99 < 5 ms.
 *          Then the same closed loop (as fast as the connections go):
 *          requests/s against raw requests from as many threads.
 *
 * argv[1]: mesh-gateway, argv[2]: gw-responder. Run:
 *   meson test -C build --benchmark --suite gateway -v */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "harness.h"
#include "mesh/mesh.h"

#define THREADS_MAX 64
#define BODY_LEN    100

static long posts, rate, seconds;
static int conns, rounds;
static int port;
static char url[64];
static char body[BODY_LEN + 1];

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- a keep-alive HTTP/1.1 client ----------------------------------------
 */

struct hc {
	int fd;
	char buf[65536];
	size_t have;
};

static bool
hc_open(struct hc *h)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)port)};
	int one = 1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	h->have = 0;
	h->fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(h->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return h->fd >= 0 &&
	       connect(h->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
}

/* Send req, read one whole answer; its status, or -1. */
static int
hc_do(struct hc *h, const char *req, size_t len)
{
	size_t off = 0, need;
	char *end, *cl;
	int status;

	while (off < len) {
		ssize_t n = write(h->fd, req + off, len - off);
		if (n <= 0) {
			return -1;
		}
		off += (size_t)n;
	}
	h->have = 0;
	for (;;) {
		ssize_t n;
		h->buf[h->have] = '\0';
		if ((end = strstr(h->buf, "\r\n\r\n")) != NULL) {
			break;
		}
		n = read(h->fd, h->buf + h->have,
		         sizeof(h->buf) - 1 - h->have);
		if (n <= 0) {
			return -1;
		}
		h->have += (size_t)n;
	}
	status = atoi(h->buf + 9);
	cl = strcasestr(h->buf, "\r\ncontent-length:");
	need = (size_t)(end + 4 - h->buf) +
	       (cl ? strtoul(cl + 17, NULL, 10) : 0);
	while (h->have < need) {
		ssize_t n = read(h->fd, h->buf + h->have,
		                 sizeof(h->buf) - 1 - h->have);
		if (n <= 0) {
			return -1;
		}
		h->have += (size_t)n;
	}
	return status;
}

/* ---- the gateway and the responder ---------------------------------------
 */

static pid_t
spawn(char *const argv[], const char *out)
{
	pid_t pid = fork();

	if (pid == 0) {
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int null = open("/dev/null", O_RDONLY);
		dup2(fd, 2);
		dup2(fd, 1);
		dup2(null, 0);
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

/* The port the gateway logged, or 0 after 10 s. */
static int
gateway_port(const char *log)
{
	for (int i = 0; i < 200; i++) {
		char line[2048];
		FILE *f = fopen(log, "r");
		while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
			char *p = strstr(line, "listening on 127.0.0.1:");
			if (p != NULL) {
				fclose(f);
				return atoi(p + 23);
			}
		}
		if (f != NULL) {
			fclose(f);
		}
		usleep(50000);
	}
	return 0;
}

/* ---- async POST ----------------------------------------------------------
 */

struct worker {
	pthread_t t;
	int k;
	long n, failed;
	struct mesh_conn *conn;
	double *lat; /* service GET: each request's latency, s */
	long n_lat;
	double t0;
	bool closed_loop;
	natsConnection *nc;
};

static void *
post_main(void *arg)
{
	struct worker *w = arg;
	char req[512];
	struct hc *h = malloc(sizeof(*h));
	int len = snprintf(req, sizeof(req),
	                   "POST /events HTTP/1.1\r\nHost: x\r\n"
	                   "Content-Type: text/plain\r\nContent-Length: "
	                   "%d\r\n\r\n%s",
	                   BODY_LEN, body);

	if (h == NULL || !hc_open(h)) {
		w->failed = w->n;
		free(h);
		return NULL;
	}
	for (long i = 0; i < w->n; i++) {
		if (hc_do(h, req, (size_t)len) != 202) {
			w->failed++;
		}
	}
	close(h->fd);
	free(h);
	return NULL;
}

static void *
send_main(void *arg)
{
	struct worker *w = arg;
	struct mesh_queue *q = NULL;
	struct mesh_event *ev = NULL;

	if (mesh_queue_open(w->conn, "bench", &q) != MESH_OK ||
	    mesh_event_new("evmesh.http.request", "bench", &ev) != MESH_OK ||
	    mesh_event_set_text(ev, body, BODY_LEN) != MESH_OK) {
		w->failed = w->n;
	}
	for (long i = 0; q != NULL && ev != NULL && i < w->n; i++) {
		struct mesh_queue_entry e = {.event = ev, .delay_s = -1};
		struct mesh_queue_sent sent;
		/* A new id each, as the gateway makes a new event each. */
		struct mesh_event *copy = NULL;
		if (mesh_event_new("evmesh.http.request", "bench", &copy) ==
		            MESH_OK &&
		    mesh_event_set_text(copy, body, BODY_LEN) == MESH_OK) {
			e.event = copy;
		}
		if (mesh_queue_send(q, &e, &sent) != MESH_OK) {
			w->failed++;
		}
		mesh_event_free(copy);
	}
	mesh_event_free(ev);
	mesh_queue_close(q);
	return NULL;
}

/* Requests/s of n split over conns threads of fn. */
static double
run_threads(void *(*fn)(void *), struct mesh_conn *c, long n)
{
	struct worker w[THREADS_MAX];
	long failed = 0;
	double t0 = now_s(), t;

	for (int k = 0; k < conns; k++) {
		memset(&w[k], 0, sizeof(w[k]));
		w[k].k = k;
		w[k].n = n / conns;
		w[k].conn = c;
		pthread_create(&w[k].t, NULL, fn, &w[k]);
	}
	for (int k = 0; k < conns; k++) {
		pthread_join(w[k].t, NULL);
		failed += w[k].failed;
	}
	t = now_s() - t0;
	if (failed > 0) {
		fprintf(stderr, "bench: %ld of %ld failed\n", failed, n);
		return 0;
	}
	return (double)(n / conns * conns) / t;
}

/* ---- service GET ---------------------------------------------------------
 */

/* Sleep until due (open loop: the time a request was due); closed loop:
 * now. */
static double
wait_until(double due, bool closed_loop)
{
	double t;

	if (closed_loop) {
		return now_s();
	}
	while ((t = now_s()) < due) {
		if (due - t > 0.0002) {
			usleep((useconds_t)((due - t) * 1e6 - 100));
		}
	}
	return due;
}

static void *
get_main(void *arg)
{
	struct worker *w = arg;
	struct hc *h = malloc(sizeof(*h));
	char req[256];

	if (h == NULL || !hc_open(h)) {
		w->failed = w->n;
		free(h);
		return NULL;
	}
	for (long i = 0; i < w->n; i++) {
		long seq = w->k + i * conns;
		double due = w->t0 + (double)seq / (double)rate;
		int len = snprintf(
		        req, sizeof(req),
		        "GET /orders/%ld HTTP/1.1\r\nHost: x\r\n\r\n", seq);
		due = wait_until(due, w->closed_loop);
		if (hc_do(h, req, (size_t)len) != 200) {
			w->failed++;
			continue;
		}
		w->lat[w->n_lat++] = now_s() - due;
	}
	close(h->fd);
	free(h);
	return NULL;
}

static void *
raw_main(void *arg)
{
	struct worker *w = arg;
	char subject[64], path[64];

	snprintf(subject, sizeof(subject), "mesh.service.bench.request");
	for (long i = 0; i < w->n; i++) {
		long seq = w->k + i * conns;
		double due = w->t0 + (double)seq / (double)rate;
		natsMsg *m = NULL, *reply = NULL;
		due = wait_until(due, w->closed_loop);
		snprintf(path, sizeof(path), "/orders/%ld", seq);
		natsMsg_Create(&m, subject, NULL, NULL, 0);
		natsMsgHeader_Set(m, "Mesh-Route", "GET /orders/{id}");
		natsMsgHeader_Set(m, "Mesh-Method", "GET");
		natsMsgHeader_Set(m, "Mesh-Path", path);
		natsMsgHeader_Set(m, "Mesh-Param-id", path + 8);
		natsMsgHeader_Set(m, "Mesh-Request-Id", "bench");
		natsMsgHeader_Set(m, "traceparent",
		                  "00-0af7651916cd43dd8448eb211c80319c-"
		                  "b7ad6b7169203331-01");
		if (natsConnection_RequestMsg(&reply, w->nc, m, 5000) !=
		    NATS_OK) {
			w->failed++;
		} else {
			w->lat[w->n_lat++] = now_s() - due;
		}
		natsMsg_Destroy(m);
		natsMsg_Destroy(reply);
	}
	return NULL;
}

struct lat_result {
	double p50_ms, p99_ms, rps;
	bool ok;
};

static struct lat_result
run_latency(void *(*fn)(void *), natsConnection *nc, bool closed_loop, long n)
{
	struct worker w[THREADS_MAX];
	struct lat_result r = {0};
	double *all = calloc((size_t)n + 1, sizeof(*all));
	long got = 0, failed = 0;
	double t0 = now_s() + 0.05, t;

	for (int k = 0; k < conns; k++) {
		memset(&w[k], 0, sizeof(w[k]));
		w[k].k = k;
		w[k].n = n / conns;
		w[k].t0 = t0;
		w[k].nc = nc;
		w[k].closed_loop = closed_loop;
		w[k].lat = calloc((size_t)w[k].n + 1, sizeof(double));
		pthread_create(&w[k].t, NULL, fn, &w[k]);
	}
	for (int k = 0; k < conns; k++) {
		pthread_join(w[k].t, NULL);
		memcpy(all + got, w[k].lat,
		       (size_t)w[k].n_lat * sizeof(double));
		got += w[k].n_lat;
		failed += w[k].failed;
		free(w[k].lat);
	}
	t = now_s() - t0;
	if (failed == 0 && got > 0) {
		qsort(all, (size_t)got, sizeof(double), bench_cmp_double);
		r.p50_ms = all[(got - 1) / 2] * 1000;
		r.p99_ms = all[(long)((double)got * 0.99 + 0.999) - 1] * 1000;
		r.rps = (double)got / t;
		r.ok = true;
	} else {
		fprintf(stderr, "bench: %ld of %ld requests failed\n", failed,
		        n);
	}
	free(all);
	return r;
}

static bool
route_add(struct mesh_conn *c, const char *method, const char *path,
          const char *target)
{
	struct mesh_route r;

	mesh_route_init(&r);
	snprintf(r.method, sizeof(r.method), "%s", method);
	snprintf(r.path, sizeof(r.path), "%s", path);
	snprintf(r.target, sizeof(r.target), "%s", target);
	if (mesh_route_put(c, &r) != MESH_OK) {
		fprintf(stderr, "bench: %s\n", mesh_errdetail());
		return false;
	}
	return true;
}

int
main(int argc, char **argv)
{
	struct test_broker broker;
	struct mesh_conn_opts o;
	struct mesh_conn *c = NULL;
	struct mesh_queue_attrs qa;
	natsConnection *nc = NULL;
	char root[PATH_MAX], log[PATH_MAX + 32], rlog[PATH_MAX + 32];
	double gw[BENCH_ROUNDS_MAX], lib[BENCH_ROUNDS_MAX];
	struct lat_result lg[BENCH_ROUNDS_MAX], lr[BENCH_ROUNDS_MAX];
	double v[BENCH_ROUNDS_MAX], b[BENCH_ROUNDS_MAX];
	pid_t gpid, rpid;
	int hold[2], rc = 0;

	if (argc != 3) {
		fprintf(stderr, "Usage: bench_gateway MESH-GATEWAY "
		                "GW-RESPONDER\n");
		return 2;
	}
	posts = bench_env_long("BENCH_GW_POSTS", 20000);
	rate = bench_env_long("BENCH_GW_RATE", 1000);
	seconds = bench_env_long("BENCH_GW_SECONDS", 5);
	conns = (int)bench_env_long("BENCH_GW_CONNS", 64);
	rounds = (int)bench_env_long("BENCH_GW_ROUNDS", 3);
	conns = conns > THREADS_MAX ? THREADS_MAX : conns;
	rounds = rounds > BENCH_ROUNDS_MAX ? BENCH_ROUNDS_MAX : rounds;
	memset(body, 'x', BODY_LEN);
	signal(SIGPIPE, SIG_IGN);

	if (!test_broker_start(&broker, NULL) ||
	    !test_tmpdir(root, sizeof(root))) {
		fprintf(stderr, "bench: no broker\n");
		return 1;
	}
	snprintf(url, sizeof(url), "%s", broker.url);
	mesh_conn_opts_init(&o);
	o.servers = broker.url;
	mesh_queue_attrs_init(&qa);
	if (mesh_conn_open(&o, &c) != MESH_OK ||
	    mesh_queue_create(c, "bench", &qa) != MESH_OK ||
	    natsConnection_ConnectTo(&nc, broker.url) != NATS_OK) {
		fprintf(stderr, "bench: %s\n", mesh_errdetail());
		return 1;
	}
	if (!route_add(c, "POST", "/events", "queue:bench") ||
	    !route_add(c, "GET", "/orders/{id}", "service:bench")) {
		return 1;
	}

	/* The responder reads a pipe we hold: it stops when we end. */
	if (pipe(hold) != 0) {
		return 1;
	}
	snprintf(rlog, sizeof(rlog), "%s/responder.log", root);
	rpid = fork();
	if (rpid == 0) {
		int fd = open(rlog, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(hold[0], 0);
		dup2(fd, 1);
		dup2(fd, 2);
		close(hold[1]);
		execl(argv[2], argv[2], url, "bench", (char *)NULL);
		_exit(127);
	}
	close(hold[0]);
	{
		char threads[16];
		char *gargv[] = {argv[1],    "--server",    url,
		                 "--listen", "127.0.0.1:0", "--threads",
		                 threads,    NULL};
		snprintf(threads, sizeof(threads), "%ld",
		         bench_env_long("BENCH_GW_THREADS", 4));
		snprintf(log, sizeof(log), "%s/gateway.log", root);
		gpid = spawn(gargv, log);
	}
	if ((port = gateway_port(log)) == 0) {
		fprintf(stderr, "bench: the gateway did not start (%s)\n",
		        log);
		rc = 1;
		goto out;
	}
	usleep(300000); /* the responder's subscription */

	printf("# %d connections (HTTP) or threads (library, raw NATS); "
	       "%d rounds, interleaved\n",
	       conns, rounds);
	run_threads(post_main, c, posts / 10); /* warm-up */
	run_threads(send_main, c, posts / 10);
	for (int i = 0; i < rounds; i++) {
		mesh_queue_purge(c, "bench");
		gw[i] = run_threads(post_main, c, posts);
		mesh_queue_purge(c, "bench");
		lib[i] = run_threads(send_main, c, posts);
		printf("# round %d: gateway %.0f req/s, library %.0f "
		       "sends/s\n",
		       i + 1, gw[i], lib[i]);
		if (gw[i] <= 0 || lib[i] <= 0) {
			printf("async POST to a queue: not measured: requests "
			       "failed\n");
			rc = 1;
			goto out;
		}
	}
	bench_figure_rounds("async POST to a queue (202 once stored)", gw, lib,
	                    rounds, "req/s", 0);

	for (int i = 0; i < rounds; i++) {
		lg[i] = run_latency(get_main, nc, false, rate * seconds);
		lr[i] = run_latency(raw_main, nc, false, rate * seconds);
		printf("# round %d: gateway p50 %.2f p99 %.2f ms %.0f req/s; "
		       "raw p50 %.2f p99 %.2f ms %.0f req/s\n",
		       i + 1, lg[i].p50_ms, lg[i].p99_ms, lg[i].rps,
		       lr[i].p50_ms, lr[i].p99_ms, lr[i].rps);
		if (!lg[i].ok || !lr[i].ok) {
			printf("GET through a service: not measured: requests "
			       "failed\n");
			rc = 1;
			goto out;
		}
	}
	for (int i = 0; i < rounds; i++) {
		v[i] = lg[i].p50_ms;
		b[i] = lr[i].p50_ms;
	}
	bench_figure_rounds("GET through a service at 1k req/s: p50", v, b,
	                    rounds, "ms", 2);
	for (int i = 0; i < rounds; i++) {
		v[i] = lg[i].p99_ms;
		b[i] = lr[i].p99_ms;
	}
	bench_figure_rounds("GET through a service at 1k req/s: p99", v, b,
	                    rounds, "ms", 2);
	for (int i = 0; i < rounds; i++) {
		v[i] = lg[i].rps;
		b[i] = lr[i].rps;
	}
	bench_figure_rounds("GET through a service at 1k req/s: answered", v,
	                    b, rounds, "req/s", 0);
	for (int i = 0; i < rounds; i++) {
		struct lat_result g = run_latency(get_main, nc, true, posts);
		struct lat_result x = run_latency(raw_main, nc, true, posts);
		v[i] = g.rps;
		b[i] = x.rps;
		printf("# round %d: closed loop gateway %.0f req/s (p99 %.2f "
		       "ms), raw %.0f req/s (p99 %.2f ms)\n",
		       i + 1, g.rps, g.p99_ms, x.rps, x.p99_ms);
	}
	bench_figure_rounds("GET through a service, closed loop", v, b, rounds,
	                    "req/s", 0);
out:
	if (gpid > 0) {
		kill(gpid, SIGTERM);
		waitpid(gpid, NULL, 0);
	}
	close(hold[1]);
	waitpid(rpid, NULL, 0);
	natsConnection_Destroy(nc);
	mesh_conn_close(c);
	mesh_shutdown();
	test_broker_stop(&broker);
	return rc;
}
