/* bench_ondemand: mesh-supervisor's on-demand figures (issue 16), each
 * beside a baseline measured in the same run on the same nats-server
 * (started here). The function run is tests/fn-counter.c: each event
 * becomes "ev/ID" -> its handling time (Unix ms) in its LMDB state.
 *
 *   wake:  an event sent to a function scaled to zero (min 0, idle 1 s;
 *          before each send the supervisor reports no instance, not even
 *          a stopping one, and its wake subscriptions armed), timed from
 *          just before mesh_queue_send until its key is committed (the
 *          environment polled read-only every 0.25 ms). Baseline: the
 *          same against fn-counter started directly and kept running
 *          (always on), the two interleaved. BENCH_WAKEUPS (50) of each,
 *          after one unrecorded warm-up of each. Goal: p50 < 30 ms.
 *   burst: 5,000 events sent (a sender, its default window) to a
 *          function at zero with max 4 and target_backlog 100: the time
 *          until the supervisor reports 4 instances, until 4 instances
 *          answer their stats with an event processed, and until all
 *          5,000 are committed. Baselines: 4 fn-counters fork/exec'ed
 *          directly with 5,000 events waiting, until each answers its
 *          stats with an event processed; and one always-on fn-counter
 *          given the same 5,000. BENCH_BURST_ROUNDS (3), interleaved.
 *   request: a request (GET /count, as mesh-gateway sends it) to a
 *          function at zero that serves it (min 0, idle 1 s; at zero
 *          and armed before each, as for wake), timed from just before
 *          the request until its reply (the instance's): the supervisor
 *          holds it, cold-starts the instance and hands it over. Baseline:
 *          the same request to fn-counter started directly and kept
 *          running, interleaved. BENCH_COLD_REQUESTS (30) of each, after
 *          one unrecorded warm-up of each.
 *   idle:  BENCH_IDLE_FUNCTIONS (100) functions at zero, each on its own
 *          queue, under a fresh supervisor: its CPU over BENCH_IDLE_S
 *          (30) seconds as % of one core. Baseline, over the same
 *          seconds: a bare cnats program (this one, re-exec'ed) holding
 *          one core subscription per function on the subjects the
 *          supervisor watches (those mesh_source_watch names), and
 *          nothing else. Both measured by the kernel's per-thread run
 *          time (/proc/PID/task/ * /schedstat, ns), ticks (test_cpu_s)
 *          noted beside. Goal: < 1 % of a core.
 *
 * The supervisor runs with its defaults (--tick-ms 250, --lease-ms 3000)
 * unless BENCH_TICK_MS / BENCH_LEASE_MS say otherwise. BENCH_ONLY (wake,
 * burst, request or idle) runs one part; BENCH_KEEP keeps the temporary folder
 * (the supervisors' and instances' logs). A figure that could not be
 * measured prints "NAME: not measured: WHY" and the bench exits 1.
 * BENCH_IDLE_TAP (1, or raw: digits kept) prints what crosses the broker
 * during the idle measure, by subject (the tap adds to the broker's and
 * this process's CPU, not to the supervisor's). BENCH_VERBOSE prints each
 * wake-up. With 50 wake-ups, p99 (nearest rank) is the largest.
 *
 * argv[1]: mesh-supervisor, argv[2]: fn-counter. Run:
 *   meson test -C build --benchmark --suite ondemand -v */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <lmdb.h>

#include "bench.h"
#include "fn_world.h"
#include "harness.h"
#include "mesh/function.h"
#include "mesh/mesh.h"
#include "mesh/service_api.h"
#include "mesh/source.h"
#include "request_call.h"

#define WAKE_MAX      1000
#define BURST_EVENTS  5000
#define BURST_MAX     4
#define IDLE_FN_MAX   1000
#define KIDS_MAX      16
#define POLL_US       250   /* the LMDB probe's period */
#define WAKE_TIMEOUT  15000 /* ms: one event's commit */
#define ZERO_TIMEOUT  20000 /* ms: back to no instance */
#define BURST_TIMEOUT 60000 /* ms: a burst's 5,000 */

extern char **environ;

static struct test_broker broker;
static struct mesh_conn *conn;
static char *sup_bin, *counter_bin;
static char tmp[PATH_MAX];
static struct fn_world world;
static pid_t kids[KIDS_MAX];
static int failures;

/* ---- clocks, processes -------------------------------------------------- */

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static long long
wall_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void
nap_us(long us)
{
	struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};

	nanosleep(&ts, NULL);
}

static void
kid_add(pid_t pid)
{
	for (int i = 0; i < KIDS_MAX; i++) {
		if (kids[i] == 0) {
			kids[i] = pid;
			return;
		}
	}
}

static void
kid_del(pid_t pid)
{
	for (int i = 0; i < KIDS_MAX; i++) {
		if (kids[i] == pid) {
			kids[i] = 0;
		}
	}
}

/* SIGTERM, then SIGKILL after ms; true when it ended in time. */
static bool
stop_pid(pid_t pid, int ms)
{
	double until = now_ms() + ms;

	if (pid <= 0) {
		return true;
	}
	kill(pid, SIGTERM);
	while (now_ms() < until) {
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			kid_del(pid);
			return true;
		}
		nap_us(5000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	kid_del(pid);
	return false;
}

static void
kids_stop(void)
{
	for (int i = 0; i < KIDS_MAX; i++) {
		if (kids[i] > 0) {
			stop_pid(kids[i], 3000);
		}
	}
}

/* Start argv with extra "KEY=VALUE" entries over our environment, its
 * output appended to log (NULL: out_fd, a pipe's end, for stdout). The
 * child dies with us (PR_SET_PDEATHSIG). The environment is built before
 * fork: the child only execs. */
static pid_t
spawn(char *const argv[], char *const extra[], const char *log, int out_fd)
{
	size_t n = 0, k = 0, ne = 0;
	char **env;
	pid_t parent = getpid(), pid;
	int fd = -1;

	while (environ[n] != NULL) {
		n++;
	}
	while (extra != NULL && extra[ne] != NULL) {
		ne++;
	}
	if ((env = calloc(n + ne + 1, sizeof(*env))) == NULL) {
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		const char *eq = strchr(environ[i], '=');
		size_t len = eq ? (size_t)(eq - environ[i]) : 0;
		bool over = false;
		for (size_t e = 0; e < ne && !over; e++) {
			over = strncmp(extra[e], environ[i], len) == 0 &&
			       extra[e][len] == '=';
		}
		if (!over) {
			env[k++] = environ[i];
		}
	}
	for (size_t e = 0; e < ne; e++) {
		env[k++] = extra[e];
	}
	if (log != NULL) {
		fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
		          0644);
	}
	if ((pid = fork()) == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent) {
			_exit(0);
		}
		if (fd >= 0) {
			dup2(fd, 2);
			dup2(fd, 1);
		}
		if (out_fd >= 0) {
			dup2(out_fd, 1);
		}
		execve(argv[0], argv, env);
		_exit(127);
	}
	if (fd >= 0) {
		close(fd);
	}
	free(env);
	if (pid > 0) {
		kid_add(pid);
	}
	return pid;
}

/* ---- the supervisor and its functions ----------------------------------- */

static pid_t
supervisor_start(const char *tag)
{
	char log[PATH_MAX + 32], tick[24], lease[24];
	char *argv[] = {
	        (char *)sup_bin, "--server", broker.url,  "--tick-ms", tick,
	        "--lease-ms",    lease,      "--stop-ms", "5000",      NULL};

	snprintf(log, sizeof(log), "%s/sup-%s.log", tmp, tag);
	snprintf(tick, sizeof(tick), "%ld",
	         bench_env_long("BENCH_TICK_MS", 250));
	snprintf(lease, sizeof(lease), "%ld",
	         bench_env_long("BENCH_LEASE_MS", 3000));
	return spawn(argv, NULL, log, -1);
}

static bool
queue_make(const char *name)
{
	return fn_queue_make(&world, name);
}

static bool
define(const char *name, const char *queue, int min, int max, int64_t idle)
{
	return fn_define(&world, name, queue, min, max, idle, 0, NULL) ==
	       MESH_OK;
}

/* fn-counter started directly as service NAME on QUEUE (state tmp/NAME,
 * starts noted in tmp/NAME.starts). */
static pid_t
counter_start_env(const char *name, const char *queue, char *extra)
{
	char state[PATH_MAX + 80], starts[PATH_MAX + 80], fname[128],
	        fqueue[128], url[96], log[PATH_MAX + 32];
	char *env[] = {state, starts, fname, fqueue, url, extra, NULL};
	char *argv[] = {(char *)counter_bin, NULL};

	snprintf(state, sizeof(state), "MESH_STATE=%s/%s", tmp, name);
	snprintf(starts, sizeof(starts), "FN_STARTS=%s/%s.starts", tmp, name);
	snprintf(fname, sizeof(fname), "FN_NAME=%s", name);
	snprintf(fqueue, sizeof(fqueue), "FN_QUEUE=%s", queue);
	snprintf(url, sizeof(url), "NATS_URL=%s", broker.url);
	snprintf(log, sizeof(log), "%s/%s.log", tmp, name);
	return spawn(argv, env, log, -1);
}

static pid_t
counter_start(const char *name, const char *queue)
{
	return counter_start_env(name, queue, NULL);
}

/* What the supervisor says of a function. */
struct fstat {
	bool answered;
	int n_inst; /* every instance, stopping ones too */
	int alive;  /* starting or running */
	bool armed;
	long long cold_starts;
};

static struct fstat
info(const char *name)
{
	struct fstat st = {0};
	json_t *j = fn_info(&world, name, 1000), *inst;
	size_t i;

	if (j == NULL) {
		return st;
	}
	st.answered = true;
	json_array_foreach(json_object_get(j, "instances"), i, inst)
	{
		const char *s =
		        json_string_value(json_object_get(inst, "state"));
		st.n_inst++;
		st.alive += s != NULL && strcmp(s, "stopping") != 0;
	}
	st.armed = json_is_true(json_object_get(j, "armed"));
	st.cold_starts = json_integer_value(json_object_get(j, "cold_starts"));
	json_decref(j);
	return st;
}

/* Wait until the supervisor reports no instance of NAME (none stopping
 * either) and its wake subscriptions armed. */
static bool
wait_zero(const char *name, int ms, struct fstat *out)
{
	double until = now_ms() + ms;
	struct fstat st = {0};

	do {
		st = info(name);
		if (st.answered && st.n_inst == 0 && st.armed) {
			if (out != NULL) {
				*out = st;
			}
			return true;
		}
		nap_us(5000);
	} while (now_ms() < until);
	fprintf(stderr,
	        "bench: %s not at zero after %d ms (answered %d, %d "
	        "instances, armed %d)\n",
	        name, ms, st.answered, st.n_inst, st.armed);
	return false;
}

/* ---- a function's LMDB state, read-only --------------------------------- */

struct probe {
	char dir[PATH_MAX + 64];
	MDB_env *env;
	MDB_txn *txn; /* reset between reads */
	MDB_dbi dbi;
	bool dbi_ok;
};

static void
probe_init(struct probe *p, const char *name)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->dir, sizeof(p->dir), "%s/%s", tmp, name);
}

static void
probe_close(struct probe *p)
{
	if (p->txn != NULL) {
		mdb_txn_abort(p->txn);
	}
	if (p->env != NULL) {
		mdb_env_close(p->env);
	}
	p->txn = NULL;
	p->env = NULL;
	p->dbi_ok = false;
}

/* A read transaction on the "state" database, once the environment and
 * the database exist: true when ready. */
static bool
probe_begin(struct probe *p)
{
	char data[PATH_MAX + 80];
	int rc;

	if (p->env == NULL) {
		snprintf(data, sizeof(data), "%s/data.mdb", p->dir);
		if (access(data, F_OK) != 0) {
			return false;
		}
		if (mdb_env_create(&p->env) != 0 ||
		    mdb_env_set_maxdbs(p->env, 8) != 0 ||
		    mdb_env_set_mapsize(p->env, (size_t)1 << 30) != 0 ||
		    mdb_env_open(p->env, p->dir, MDB_RDONLY | MDB_NOTLS,
		                 0644) != 0) {
			probe_close(p);
			return false;
		}
	}
	if (!p->dbi_ok) {
		MDB_txn *t = NULL;
		if (mdb_txn_begin(p->env, NULL, MDB_RDONLY, &t) != 0) {
			return false;
		}
		if (mdb_dbi_open(t, MESH_SERVICE_DB_STATE, 0, &p->dbi) != 0) {
			mdb_txn_abort(t);
			return false;
		}
		mdb_txn_commit(t); /* keeps the handle */
		p->dbi_ok = true;
	}
	rc = p->txn == NULL ? mdb_txn_begin(p->env, NULL, MDB_RDONLY, &p->txn)
	                    : mdb_txn_renew(p->txn);
	if (rc == MDB_MAP_RESIZED) {
		mdb_env_set_mapsize(p->env, 0);
		rc = p->txn == NULL
		             ? mdb_txn_begin(p->env, NULL, MDB_RDONLY, &p->txn)
		             : mdb_txn_renew(p->txn);
	}
	if (rc != 0) {
		probe_close(p);
		return false;
	}
	return true;
}

/* The value of key (Unix ms) in *val: true when committed. */
static bool
probe_get(struct probe *p, const char *key, long long *val)
{
	MDB_val k = {strlen(key), (void *)key}, v;
	bool found = false;

	if (!probe_begin(p)) {
		return false;
	}
	if (mdb_get(p->txn, p->dbi, &k, &v) == 0) {
		char buf[32];
		size_t n = v.mv_size < sizeof(buf) - 1 ? v.mv_size
		                                       : sizeof(buf) - 1;
		memcpy(buf, v.mv_data, n);
		buf[n] = '\0';
		*val = atoll(buf);
		found = true;
	}
	mdb_txn_reset(p->txn);
	return found;
}

/* Keys in the state (fn-counter writes "ev/" keys only): events
 * processed, each once. */
static long
probe_count(struct probe *p)
{
	MDB_stat st;
	long n = 0;

	if (!probe_begin(p)) {
		return 0;
	}
	if (mdb_stat(p->txn, p->dbi, &st) == 0) {
		n = (long)st.ms_entries;
	}
	mdb_txn_reset(p->txn);
	return n;
}

/* ---- sending ------------------------------------------------------------ */

/* One event to q; ms from just before mesh_queue_send until its key is
 * committed in p's environment, or -1. *sent_wall and *handled_wall: the
 * Unix ms of the send and of the handler's call (the value). */
static double
send_until_commit(struct mesh_queue *q, struct probe *p, long long *sent_wall,
                  long long *handled_wall)
{
	struct mesh_event *ev = NULL;
	struct mesh_queue_entry e = {.delay_s = -1};
	struct mesh_queue_sent sent;
	char key[300];
	double t0, t = -1;

	if (mesh_event_new("bench.wake", "/bench", &ev) != MESH_OK ||
	    mesh_event_set_text(ev, "wake", 4) != MESH_OK) {
		mesh_event_free(ev);
		return -1;
	}
	snprintf(key, sizeof(key), "ev/%s", mesh_event_id(ev));
	e.event = ev;
	t0 = now_ms();
	*sent_wall = wall_ms();
	if (mesh_queue_send(q, &e, &sent) != MESH_OK) {
		fprintf(stderr, "bench: send: %s\n", mesh_errdetail());
		mesh_event_free(ev);
		return -1;
	}
	mesh_event_free(ev);
	while (now_ms() - t0 < WAKE_TIMEOUT) {
		if (probe_get(p, key, handled_wall)) {
			t = now_ms() - t0;
			break;
		}
		nap_us(POLL_US);
	}
	if (t < 0) {
		fprintf(stderr, "bench: %s not committed in %s within %d ms\n",
		        key, p->dir, WAKE_TIMEOUT);
	}
	return t;
}

/* n events to a queue through a sender, on a thread of its own. */
struct fill {
	const char *queue;
	long n;
	bool ok;
	double done_ms; /* now_ms() when every one was acknowledged */
	pthread_t t;
};

static void *
fill_main(void *arg)
{
	struct fill *f = arg;
	struct mesh_queue *q = NULL;
	struct mesh_sender *snd = NULL;

	f->ok = mesh_queue_open(conn, f->queue, &q) == MESH_OK &&
	        mesh_sender_open_queue(q, NULL, NULL, NULL, &snd) == MESH_OK;
	for (long i = 0; f->ok && i < f->n; i++) {
		struct mesh_event *ev = NULL;
		char body[32];
		int len = snprintf(body, sizeof(body), "event %ld", i);
		f->ok = mesh_event_new("bench.burst", "/bench", &ev) ==
		                MESH_OK &&
		        mesh_event_set_text(ev, body, (size_t)len) ==
		                MESH_OK &&
		        mesh_sender_send(snd, &(struct mesh_send){
		                                      .event = ev}) == MESH_OK;
		mesh_event_free(ev);
	}
	if (snd != NULL) {
		mesh_sender_flush(snd);
	}
	if (!f->ok) {
		fprintf(stderr, "bench: filling %s: %s\n", f->queue,
		        mesh_errdetail());
	}
	f->done_ms = now_ms();
	mesh_sender_close(snd);
	mesh_queue_close(q);
	return NULL;
}

static bool
fill_start(struct fill *f, const char *queue, long n)
{
	*f = (struct fill){.queue = queue, .n = n};
	return pthread_create(&f->t, NULL, fill_main, f) == 0;
}

/* ---- the instances' stats ----------------------------------------------- */

/* Instances of a service that answered their stats with an event
 * processed. */
struct statpoll {
	natsSubscription *sub;
	char inbox[64], subject[160];
	char seen[KIDS_MAX][96];
	int n_seen;
};

static bool
statpoll_open(struct statpoll *sp, const char *service)
{
	memset(sp, 0, sizeof(*sp));
	snprintf(sp->inbox, sizeof(sp->inbox), "_INBOX.bench.%u%u",
	         test_rand(), test_rand());
	snprintf(sp->subject, sizeof(sp->subject), MESH_SERVICE_STATS_SUBJECT,
	         service);
	return natsConnection_SubscribeSync(&sp->sub, mesh_conn_nats(conn),
	                                    sp->inbox) == NATS_OK;
}

static void
statpoll_close(struct statpoll *sp)
{
	natsSubscription_Destroy(sp->sub);
	sp->sub = NULL;
}

/* Ask once, take the answers that came within wait_ms; returns how many
 * instances have answered with processed > 0 so far. */
static int
statpoll_step(struct statpoll *sp, int wait_ms)
{
	natsMsg *m = NULL;

	natsConnection_PublishRequestString(mesh_conn_nats(conn), sp->subject,
	                                    sp->inbox, "");
	while (natsSubscription_NextMsg(&m, sp->sub, wait_ms) == NATS_OK) {
		json_t *j =
		        json_loadb(natsMsg_GetData(m),
		                   (size_t)natsMsg_GetDataLength(m), 0, NULL);
		const char *who =
		        json_string_value(json_object_get(j, "instance"));
		json_int_t done =
		        json_integer_value(json_object_get(j, "processed"));
		bool known = false;
		for (int i = 0; who != NULL && i < sp->n_seen && !known; i++) {
			known = strcmp(sp->seen[i], who) == 0;
		}
		if (who != NULL && done > 0 && !known &&
		    sp->n_seen < KIDS_MAX) {
			snprintf(sp->seen[sp->n_seen++], sizeof(*sp->seen),
			         "%s", who);
		}
		json_decref(j);
		natsMsg_Destroy(m);
	}
	return sp->n_seen;
}

/* ---- figures ------------------------------------------------------------ */

static int
cmp_double(const void *a, const void *b)
{
	return bench_cmp_double(a, b);
}

/* The p-th percentile (nearest rank) of n sorted values. */
static double
pct(const double *v, int n, double p)
{
	int k = (int)ceil(p * n) - 1;

	return v[k < 0 ? 0 : k >= n ? n - 1 : k];
}

static void
not_measured(const char *name, const char *why)
{
	printf("%s: not measured: %s\n", name, why);
	fflush(stdout);
	failures++;
}

static void
figure(const char *name, double v, double base, const char *unit, int decimals)
{
	printf("%s: %.*f %s (baseline %.*f %s, ratio %.2f)\n", name, decimals,
	       v, unit, decimals, base, unit, base > 0 ? v / base : 0);
	fflush(stdout);
}

/* The last start noted in tmp/NAME.starts (Unix ms) by pid (0: any),
 * or 0. */
static long long
start_of(const char *name, pid_t who)
{
	char path[PATH_MAX + 64], line[64];
	long long ms = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s.starts", tmp, name);
	if ((f = fopen(path, "r")) == NULL) {
		return 0;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		int pid;
		long long t;
		if (sscanf(line, "%d %lld", &pid, &t) == 2 &&
		    (who == 0 || pid == who)) {
			ms = t;
		}
	}
	fclose(f);
	return ms;
}

/* The Unix ms of the supervisor's first "scale 0 -> 1" of function NAME
 * at or after ms, from its log (tmp/sup-TAG.log), or 0. */
static long long
decided_at(const char *tag, const char *name, long long ms)
{
	char path[PATH_MAX + 32], line[2048], fn[96];
	long long at = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/sup-%s.log", tmp, tag);
	snprintf(fn, sizeof(fn), "\"function\":\"%s\"", name);
	if ((f = fopen(path, "r")) == NULL) {
		return 0;
	}
	while (at == 0 && fgets(line, sizeof(line), f) != NULL) {
		const char *t = strstr(line, "\"time\":\"");
		struct tm tm = {0};
		char *rest;
		long long when;
		if (t == NULL || strstr(line, fn) == NULL ||
		    strstr(line, "scale 0 -> 1") == NULL ||
		    (rest = strptime(t + 8, "%Y-%m-%dT%H:%M:%S", &tm)) ==
		            NULL ||
		    *rest != '.') {
			continue;
		}
		when = (long long)timegm(&tm) * 1000 + atoi(rest + 1);
		if (when >= ms) {
			at = when;
		}
	}
	fclose(f);
	return at;
}

/* ---- 1. wake ------------------------------------------------------------ */

static void
bench_wake(void)
{
	static double wake[WAKE_MAX], warm[WAKE_MAX], to_decide[WAKE_MAX],
	        to_exec[WAKE_MAX], to_handled[WAKE_MAX], to_seen[WAKE_MAX];
	static long long sent_at[WAKE_MAX], main_at[WAKE_MAX];
	int n = (int)bench_env_long("BENCH_WAKEUPS", 50), got = 0;
	struct mesh_queue *qwake = NULL, *qwarm = NULL;
	struct probe pwake, pwarm;
	pid_t warm_pid;
	long long sent, handled, cold_before = -1;
	struct fstat st;
	int not_cold = 0;
	const char *why = NULL;
	double t0 = now_ms();

	n = n > WAKE_MAX ? WAKE_MAX : n;
	probe_init(&pwake, "wake");
	probe_init(&pwarm, "warm");
	if (!queue_make("wake-q") || !queue_make("warm-q") ||
	    !define("wake", "wake-q", 0, 1, 1000) ||
	    mesh_queue_open(conn, "wake-q", &qwake) != MESH_OK ||
	    mesh_queue_open(conn, "warm-q", &qwarm) != MESH_OK) {
		why = "setting up the queues and the function failed";
		goto out;
	}
	warm_pid = counter_start("warm", "warm-q");
	printf("# wake: %d wake-ups of a function at zero (min 0, max 1, "
	       "idle 1000 ms) beside %d events to an always-on fn-counter, "
	       "interleaved, after one warm-up of each; LMDB polled every "
	       "%d us\n",
	       n, n, POLL_US);
	fflush(stdout);
	/* Warm-ups: the environments made, the consumers bound. */
	if (send_until_commit(qwarm, &pwarm, &sent, &handled) < 0) {
		why = "the always-on fn-counter processed nothing";
		goto out;
	}
	if (!wait_zero("wake", ZERO_TIMEOUT, &st) ||
	    send_until_commit(qwake, &pwake, &sent, &handled) < 0) {
		why = "the function did not wake for its first event";
		goto out;
	}
	for (int i = 0; i < n; i++) {
		double a = -1, b = -1;
		long long s_wall = 0, h_wall = 0, started;
		if (!wait_zero("wake", ZERO_TIMEOUT, &st)) {
			why = "the function did not go back to zero";
			break;
		}
		if (cold_before >= 0 && st.cold_starts != cold_before + 1) {
			not_cold++;
		}
		if (i % 2 == 0) {
			b = send_until_commit(qwarm, &pwarm, &sent, &handled);
			a = send_until_commit(qwake, &pwake, &s_wall, &h_wall);
		} else {
			a = send_until_commit(qwake, &pwake, &s_wall, &h_wall);
			b = send_until_commit(qwarm, &pwarm, &sent, &handled);
		}
		if (a < 0 || b < 0) {
			why = a < 0 ? "a wake-up's event was not committed in "
			              "time"
			            : "the always-on instance's event was not "
			              "committed in time";
			break;
		}
		started = start_of("wake", 0);
		wake[got] = a;
		warm[got] = b;
		sent_at[got] = s_wall;
		main_at[got] = started;
		to_exec[got] = (double)(started - s_wall);
		to_handled[got] = (double)(h_wall - started);
		to_seen[got] = a - (double)(h_wall - s_wall);
		got++;
		cold_before = st.cold_starts;
		if (getenv("BENCH_VERBOSE") != NULL) {
			printf("# wake %d: %.2f ms (always on %.2f ms)\n",
			       i + 1, a, b);
		}
	}
	{
		struct fstat last = info("wake");
		if (cold_before >= 0 && last.cold_starts != cold_before + 1) {
			not_cold++;
		}
	}
	stop_pid(warm_pid, 10000);
	if (got == n) {
		for (int i = 0; i < n; i++) {
			long long d = decided_at("main", "wake", sent_at[i]);
			to_decide[i] = d > 0 ? (double)(d - sent_at[i]) : -1;
			to_exec[i] = d > 0 ? (double)(main_at[i] - d) : -1;
		}
		qsort(to_decide, (size_t)n, sizeof(double), cmp_double);
		qsort(wake, (size_t)n, sizeof(double), cmp_double);
		qsort(warm, (size_t)n, sizeof(double), cmp_double);
		qsort(to_exec, (size_t)n, sizeof(double), cmp_double);
		qsort(to_handled, (size_t)n, sizeof(double), cmp_double);
		qsort(to_seen, (size_t)n, sizeof(double), cmp_double);
		printf("# wake: %d of %d wake-ups were not one cold start "
		       "each "
		       "(the supervisor's cold_starts); %.0f s\n",
		       not_cold, n, (now_ms() - t0) / 1000);
		printf("# wake split (medians; wall clocks to 1 ms): send to "
		       "the supervisor's decision (its log) %.0f ms, decision "
		       "to the instance's main() %.0f ms, main() to the "
		       "handler "
		       "%.0f ms, handler to the commit seen here %.1f ms; "
		       "max %.0f / %.0f / %.0f / %.1f\n",
		       bench_median(to_decide, n), bench_median(to_exec, n),
		       bench_median(to_handled, n), bench_median(to_seen, n),
		       to_decide[n - 1], to_exec[n - 1], to_handled[n - 1],
		       to_seen[n - 1]);
		printf("# wake: min %.2f ms, max %.2f ms; always on: min %.2f "
		       "ms, max %.2f ms\n",
		       wake[0], wake[n - 1], warm[0], warm[n - 1]);
		figure("wake publish-to-commit p50", pct(wake, n, 0.50),
		       pct(warm, n, 0.50), "ms", 2);
		figure("wake publish-to-commit p99", pct(wake, n, 0.99),
		       pct(warm, n, 0.99), "ms", 2);
		printf("# goal (issue 16): wake p50 < 30 ms: %s\n",
		       pct(wake, n, 0.50) < 30 ? "met" : "NOT met");
		fflush(stdout);
	}
out:
	if (got < n) {
		char msg[200];
		snprintf(msg, sizeof(msg), "%s (after %d of %d wake-ups)",
		         why ? why : "?", got, n);
		not_measured("wake publish-to-commit p50", msg);
		not_measured("wake publish-to-commit p99", msg);
	}
	mesh_queue_close(qwake);
	mesh_queue_close(qwarm);
	probe_close(&pwake);
	probe_close(&pwarm);
}

/* ---- 1b. a request to a function at zero ---------------------------------
 */

/* GET /count to service name; ms until its 200, or -1. */
static double
request_ms(const char *name)
{
	struct test_reply r;
	double t0 = now_ms();

	if (test_request_call(mesh_conn_nats(conn), name, "GET /count",
	                      "/count", NULL, NULL, NULL, NULL, WAKE_TIMEOUT,
	                      &r) != 200) {
		fprintf(stderr,
		        "bench: GET /count of %s: status %d (nats %d) %s\n",
		        name, r.status, (int)r.nats, r.body);
		return -1;
	}
	return now_ms() - t0;
}

static void
bench_request(void)
{
	static double cold[WAKE_MAX], warm[WAKE_MAX];
	int n = (int)bench_env_long("BENCH_COLD_REQUESTS", 30), got = 0;
	const char *why = NULL;
	char served[] = "FN_ROUTES=1";
	pid_t warm_pid = -1;
	long long cold_before = -1;
	int not_cold = 0;
	struct fstat st;
	double t0 = now_ms();

	n = n > WAKE_MAX ? WAKE_MAX : n;
	if (!queue_make("reqfn-q") || !queue_make("reqwarm-q") ||
	    fn_define_served(&world, "reqfn", "reqfn-q", 0, 1, 1000, NULL) !=
	            MESH_OK) {
		why = "setting up the queues and the function failed";
		goto out;
	}
	warm_pid = counter_start_env("reqwarm", "reqwarm-q", served);
	printf("# request: %d requests (GET /count, as mesh-gateway sends "
	       "them) to a function at zero (min 0, max 1, idle 1000 ms) "
	       "beside %d to an always-on fn-counter, interleaved, after one "
	       "warm-up of each\n",
	       n, n);
	fflush(stdout);
	for (int tries = 0; tries < 200 && request_ms("reqwarm") < 0;
	     tries++) {
		nap_us(50000); /* until it subscribes */
	}
	if (request_ms("reqwarm") < 0) {
		why = "the always-on fn-counter answered no request";
		goto out;
	}
	if (!wait_zero("reqfn", ZERO_TIMEOUT, &st) ||
	    request_ms("reqfn") < 0) {
		why = "the function at zero answered no request";
		goto out;
	}
	for (int i = 0; i < n; i++) {
		double a, b;
		if (!wait_zero("reqfn", ZERO_TIMEOUT, &st)) {
			why = "the function did not go back to zero";
			break;
		}
		if (cold_before >= 0 && st.cold_starts != cold_before + 1) {
			not_cold++;
		}
		if (i % 2 == 0) {
			b = request_ms("reqwarm");
			a = request_ms("reqfn");
		} else {
			a = request_ms("reqfn");
			b = request_ms("reqwarm");
		}
		if (a < 0 || b < 0) {
			why = a < 0 ? "a request to the function at zero "
			              "failed"
			            : "a request to the always-on instance "
			              "failed";
			break;
		}
		cold[got] = a;
		warm[got] = b;
		got++;
		cold_before = st.cold_starts;
		if (getenv("BENCH_VERBOSE") != NULL) {
			printf("# request %d: %.2f ms (always on %.2f ms)\n",
			       i + 1, a, b);
		}
	}
	if (got == n) {
		struct fstat last = info("reqfn");
		if (last.cold_starts != cold_before + 1) {
			not_cold++;
		}
		qsort(cold, (size_t)n, sizeof(double), cmp_double);
		qsort(warm, (size_t)n, sizeof(double), cmp_double);
		printf("# request: %d of %d were not one cold start each; "
		       "min %.2f ms, max %.2f ms; always on: min %.2f ms, max "
		       "%.2f ms; %.0f s\n",
		       not_cold, n, cold[0], cold[n - 1], warm[0], warm[n - 1],
		       (now_ms() - t0) / 1000);
		figure("request to a function at zero, first-request latency "
		       "p50",
		       pct(cold, n, 0.50), pct(warm, n, 0.50), "ms", 2);
		figure("request to a function at zero, first-request latency "
		       "p99",
		       pct(cold, n, 0.99), pct(warm, n, 0.99), "ms", 2);
	}
out:
	if (got < n) {
		char msg[200];
		snprintf(msg, sizeof(msg), "%s (after %d of %d requests)",
		         why ? why : "?", got, n);
		not_measured("request to a function at zero, first-request "
		             "latency p50",
		             msg);
	}
	if (warm_pid > 0) {
		stop_pid(warm_pid, 10000);
	}
}

/* ---- 2. burst ----------------------------------------------------------- */

struct burst {
	double to_max;     /* the supervisor reports 4 */
	double to_working; /* 4 answer with an event processed */
	double to_all;     /* 5,000 committed */
	int peak;
};

/* 5,000 events to "burst" at zero. False (why in *why) on a failure. */
static bool
burst_supervised(struct burst *r, const char **why)
{
	struct probe p;
	struct statpoll sp;
	struct fill fill;
	long before;
	double t0, until;
	bool ok = false;

	*r = (struct burst){-1, -1, -1, 0};
	if (!wait_zero("burst", ZERO_TIMEOUT, NULL)) {
		*why = "the function did not go back to zero";
		return false;
	}
	probe_init(&p, "burst");
	before = probe_count(&p);
	if (!statpoll_open(&sp, "burst")) {
		*why = "no stats subscription";
		return false;
	}
	t0 = now_ms();
	if (!fill_start(&fill, "burst-q", BURST_EVENTS)) {
		*why = "no sending thread";
		statpoll_close(&sp);
		return false;
	}
	until = t0 + BURST_TIMEOUT;
	while (now_ms() < until &&
	       (r->to_max < 0 || r->to_working < 0 || r->to_all < 0)) {
		struct fstat st = info("burst");
		double t = now_ms() - t0;
		r->peak = st.alive > r->peak ? st.alive : r->peak;
		if (r->to_max < 0 && st.alive >= BURST_MAX) {
			r->to_max = t;
		}
		if (r->to_working < 0 && statpoll_step(&sp, 2) >= BURST_MAX) {
			r->to_working = now_ms() - t0;
		}
		if (r->to_all < 0 &&
		    probe_count(&p) >= before + BURST_EVENTS) {
			r->to_all = now_ms() - t0;
		}
		nap_us(2000);
	}
	pthread_join(fill.t, NULL);
	statpoll_close(&sp);
	if (!fill.ok) {
		*why = "sending the burst failed";
	} else if (r->to_all < 0) {
		*why = "not every event was processed within 60 s";
	} else if (r->to_max < 0) {
		*why = "the supervisor never reported 4 instances";
	} else if (r->to_working < 0) {
		*why = "4 instances never answered with an event processed";
	} else {
		ok = true;
	}
	printf("# burst: sent in %.0f ms; supervisor: %.0f ms to %d "
	       "instances reported, %.0f ms to %d processing, all in %.0f "
	       "ms; peak %d\n",
	       fill.done_ms - t0, r->to_max, BURST_MAX, r->to_working,
	       BURST_MAX, r->to_all, r->peak);
	probe_close(&p);
	return ok;
}

/* 4 fn-counters fork/exec'ed with 5,000 events waiting: ms until each
 * answers with an event processed, or -1. */
static double
burst_direct(double *all_ms)
{
	struct probe p;
	struct statpoll sp;
	struct fill fill;
	pid_t pid[BURST_MAX] = {0};
	long long forked[BURST_MAX];
	double exec_ms[BURST_MAX];
	long before;
	double t0, t = -1;

	*all_ms = -1;
	if (!fill_start(&fill, "direct-q", BURST_EVENTS)) {
		return -1;
	}
	pthread_join(fill.t, NULL);
	if (!fill.ok || !statpoll_open(&sp, "direct")) {
		return -1;
	}
	probe_init(&p, "direct");
	before = probe_count(&p);
	t0 = now_ms();
	for (int i = 0; i < BURST_MAX; i++) {
		forked[i] = wall_ms();
		pid[i] = counter_start("direct", "direct-q");
	}
	while (now_ms() - t0 < BURST_TIMEOUT && (t < 0 || *all_ms < 0)) {
		if (t < 0 && statpoll_step(&sp, 2) >= BURST_MAX) {
			t = now_ms() - t0;
		}
		if (*all_ms < 0 && probe_count(&p) >= before + BURST_EVENTS) {
			*all_ms = now_ms() - t0;
		}
		nap_us(2000);
	}
	for (int i = 0; i < BURST_MAX; i++) {
		long long m = start_of("direct", pid[i]);
		exec_ms[i] = m > 0 ? (double)(m - forked[i]) : -1;
		stop_pid(pid[i], 10000);
	}
	printf("# direct: fork/exec to main() %.0f ms (median of %d; wall "
	       "clocks to 1 ms)\n",
	       bench_median(exec_ms, BURST_MAX), BURST_MAX);
	statpoll_close(&sp);
	probe_close(&p);
	return *all_ms < 0 ? -1 : t;
}

/* 5,000 events to the always-on fn-counter: ms until all are committed. */
static double
burst_always_on(void)
{
	struct probe p;
	struct fill fill;
	long before;
	double t0, t = -1;

	probe_init(&p, "warm");
	before = probe_count(&p);
	t0 = now_ms();
	if (!fill_start(&fill, "warm-q", BURST_EVENTS)) {
		return -1;
	}
	while (now_ms() - t0 < BURST_TIMEOUT) {
		if (probe_count(&p) >= before + BURST_EVENTS) {
			t = now_ms() - t0;
			break;
		}
		nap_us(2000);
	}
	pthread_join(fill.t, NULL);
	probe_close(&p);
	return fill.ok ? t : -1;
}

static void
bench_burst(void)
{
	int rounds = (int)bench_env_long("BENCH_BURST_ROUNDS", 3), got = 0;
	double to_max[BENCH_ROUNDS_MAX], to_working[BENCH_ROUNDS_MAX],
	        to_all[BENCH_ROUNDS_MAX], direct[BENCH_ROUNDS_MAX],
	        direct2[BENCH_ROUNDS_MAX], one[BENCH_ROUNDS_MAX];
	const char *why = NULL;
	pid_t warm_pid = -1;
	int peak = 0;

	rounds = rounds > BENCH_ROUNDS_MAX ? BENCH_ROUNDS_MAX : rounds;
	if (!queue_make("burst-q") || !queue_make("direct-q") ||
	    !queue_make("warm-q") ||
	    !define("burst", "burst-q", 0, BURST_MAX, 1000)) {
		why = "setting up the queues and the function failed";
		goto out;
	}
	warm_pid = counter_start("warm", "warm-q");
	{
		struct mesh_queue *q = NULL;
		struct probe p;
		long long s, h;
		double t = -1;
		probe_init(&p, "warm");
		if (mesh_queue_open(conn, "warm-q", &q) == MESH_OK) {
			t = send_until_commit(q, &p, &s, &h);
		}
		mesh_queue_close(q);
		probe_close(&p);
		if (t < 0) {
			why = "the always-on fn-counter processed nothing";
			goto out;
		}
	}
	printf("# burst: %d events to a function at zero (max %d, "
	       "target_backlog 100, idle 1000 ms); %d rounds, interleaved\n",
	       BURST_EVENTS, BURST_MAX, rounds);
	fflush(stdout);
	for (int i = 0; i < rounds; i++) {
		struct burst r;
		double all4;
		if (i % 2 == 0) {
			direct[i] = burst_direct(&all4);
			one[i] = burst_always_on();
			if (!burst_supervised(&r, &why)) {
				break;
			}
		} else {
			if (!burst_supervised(&r, &why)) {
				break;
			}
			one[i] = burst_always_on();
			direct[i] = burst_direct(&all4);
		}
		if (direct[i] < 0 || one[i] < 0) {
			why = direct[i] < 0
			              ? "the 4 direct fn-counters did not "
			                "all process within 60 s"
			              : "the always-on fn-counter did not "
			                "process the 5,000 within 60 s";
			break;
		}
		direct2[i] = direct[i];
		to_max[i] = r.to_max;
		to_working[i] = r.to_working;
		to_all[i] = r.to_all;
		peak = r.peak > peak ? r.peak : peak;
		printf("# round %d: supervisor %.0f ms to %d reported, %.0f "
		       "ms "
		       "to %d processing, %.0f ms all; direct 4 processing "
		       "%.0f ms (all %.0f ms); always-on 1: all %.0f ms\n",
		       i + 1, r.to_max, BURST_MAX, r.to_working, BURST_MAX,
		       r.to_all, direct[i], all4, one[i]);
		fflush(stdout);
		got++;
	}
	if (got == rounds) {
		printf("# burst: peak %d instances (max %d)%s\n", peak,
		       BURST_MAX, peak > BURST_MAX ? ": PAST max" : "");
		bench_figure_rounds(
		        "burst to max instances (reported by the "
		        "supervisor; baseline: 4 started directly, "
		        "each processing)",
		        to_max, direct, rounds, "ms", 0);
		bench_figure_rounds("burst to 4 instances processing",
		                    to_working, direct2, rounds, "ms", 0);
		bench_figure_rounds("burst 5000 events processed from zero "
		                    "(baseline: one always-on instance)",
		                    to_all, one, rounds, "ms", 0);
	}
out:
	stop_pid(warm_pid, 10000);
	if (got < rounds) {
		char msg[200];
		snprintf(msg, sizeof(msg), "%s (round %d of %d)",
		         why ? why : "?", got + 1, rounds);
		not_measured("burst to max instances", msg);
		not_measured("burst to 4 instances processing", msg);
		not_measured("burst 5000 events processed from zero", msg);
	}
}

/* ---- 3. idle ------------------------------------------------------------ */

/* CPU seconds of every thread of pid, from the scheduler (ns), or -1. */
static double
sched_cpu_s(pid_t pid)
{
	char path[64], file[PATH_MAX];
	struct dirent *d;
	DIR *dir;
	double s = 0;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	if ((dir = opendir(path)) == NULL) {
		return -1;
	}
	while ((d = readdir(dir)) != NULL) {
		unsigned long long ns;
		FILE *f;
		if (d->d_name[0] == '.') {
			continue;
		}
		snprintf(file, sizeof(file), "%s/%s/schedstat", path,
		         d->d_name);
		if ((f = fopen(file, "r")) == NULL) {
			continue;
		}
		if (fscanf(f, "%llu", &ns) == 1) {
			s += (double)ns / 1e9;
		}
		fclose(f);
	}
	closedir(dir);
	return s;
}

static void
idle_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
	(void)nc;
	(void)sub;
	(void)arg;
	natsMsg_Destroy(m);
}

/* The threads of pid, or -1. */
static int
threads(pid_t pid)
{
	char path[64], line[128];
	int n = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if ((f = fopen(path, "r")) == NULL) {
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "Threads: %d", &n) == 1) {
			break;
		}
	}
	fclose(f);
	return n;
}

/* The baseline: connect, subscribe to each subject (a callback, as the
 * supervisor's), say "ready", sleep until killed. */
static int
idle_child_main(int argc, char **argv)
{
	natsConnection *nc = NULL;
	natsSubscription **subs = calloc((size_t)argc, sizeof(*subs));

	if (subs == NULL ||
	    natsConnection_ConnectTo(&nc, argv[2]) != NATS_OK) {
		return 1;
	}
	for (int i = 3; i < argc; i++) {
		if (natsConnection_Subscribe(&subs[i], nc, argv[i],
		                             idle_on_msg, NULL) != NATS_OK) {
			return 1;
		}
	}
	if (natsConnection_FlushTimeout(nc, 5000) != NATS_OK) {
		return 1;
	}
	printf("ready %d\n", argc - 3);
	fflush(stdout);
	for (;;) {
		pause();
	}
}

/* A stream's last sequence, or 0. */
static uint64_t
stream_last(const char *stream)
{
	jsStreamInfo *si = NULL;
	uint64_t seq = 0;

	if (js_GetStreamInfo(&si, mesh_conn_js(conn), stream, NULL, NULL) ==
	    NATS_OK) {
		seq = si->State.LastSeq;
	}
	jsStreamInfo_Destroy(si);
	return seq;
}

/* BENCH_IDLE_TAP: what crosses the broker while all is idle, by subject
 * (inbox tokens folded, and digits unless it is "raw"), printed as
 * comments; else a sleep. */
static void
idle_wait(long secs)
{
	enum { N = 48 };
	static char subj[N][96];
	static long count[N];
	natsSubscription *sub = NULL;
	double until = now_ms() + (double)secs * 1000;
	natsMsg *m = NULL;
	uint64_t last[2];
	long delivered = 0;
	int n = 0;
	bool raw = getenv("BENCH_IDLE_TAP") != NULL &&
	           strcmp(getenv("BENCH_IDLE_TAP"), "raw") == 0;

	if (getenv("BENCH_IDLE_TAP") == NULL ||
	    natsConnection_SubscribeSync(&sub, mesh_conn_nats(conn), ">") !=
	            NATS_OK) {
		nap_us(secs * 1000000L);
		return;
	}
	last[0] = stream_last("KV_MESH_LEASES");
	while (now_ms() < until) {
		char key[96];
		int k = 0, i;
		if (natsSubscription_NextMsg(&m, sub, 100) != NATS_OK) {
			continue;
		}
		/* A JetStream delivery to a fetcher's inbox shows the stored
		 * message's subject: counted apart, not as a publish. */
		if (natsMsg_GetReply(m) != NULL &&
		    strncmp(natsMsg_GetReply(m), "$JS.ACK.", 8) == 0) {
			delivered++;
			natsMsg_Destroy(m);
			continue;
		}
		for (const char *c = natsMsg_GetSubject(m);
		     *c != '\0' && k < (int)sizeof(key) - 2; c++) {
			if (strncmp(c, "_INBOX.", 7) == 0 ||
			    strncmp(c, "$JS.ACK.", 8) == 0) {
				k += snprintf(key + k, sizeof(key) - (size_t)k,
				              "%.*s*", c[1] == 'I' ? 7 : 8, c);
				break;
			}
			if (*c >= '0' && *c <= '9' && !raw) {
				if (k == 0 || key[k - 1] != '#') {
					key[k++] = '#';
				}
			} else {
				key[k++] = *c;
			}
		}
		key[k] = '\0';
		for (i = 0; i < n && strcmp(subj[i], key) != 0; i++) {
		}
		if (i == n && n < N) {
			snprintf(subj[n++], sizeof(*subj), "%s", key);
		}
		if (i < n) {
			count[i]++;
		}
		natsMsg_Destroy(m);
	}
	natsSubscription_Destroy(sub);
	last[1] = stream_last("KV_MESH_LEASES");
	for (int i = 0; i < n; i++) {
		printf("# idle tap: %.1f/s %s\n",
		       (double)count[i] / (double)secs, subj[i]);
	}
	printf("# idle tap: %.1f/s JetStream deliveries (to fetchers); the "
	       "stream KV_MESH_LEASES stored %.1f/s\n",
	       (double)delivered / (double)secs,
	       (double)(last[1] - last[0]) / (double)secs);
}

/* Functions at zero, armed, of the supervisor's list answer. */
static int
idle_armed(void)
{
	natsMsg *reply = NULL;
	json_t *j = NULL, *f;
	size_t i;
	int n = 0;

	if (natsConnection_RequestString(&reply, mesh_conn_nats(conn),
	                                 MESH_SUPERVISOR_LIST_SUBJECT, "",
	                                 2000) == NATS_OK) {
		j = json_loadb(natsMsg_GetData(reply),
		               (size_t)natsMsg_GetDataLength(reply), 0, NULL);
		natsMsg_Destroy(reply);
	}
	json_array_foreach(json_object_get(j, "functions"), i, f)
	{
		const char *name =
		        json_string_value(json_object_get(f, "function"));
		n += name != NULL && strncmp(name, "idle-", 5) == 0 &&
		     json_is_true(json_object_get(f, "armed")) &&
		     json_array_size(json_object_get(f, "instances")) == 0;
	}
	json_decref(j);
	return n;
}

static void
bench_idle(const char *self)
{
	int nfn = (int)bench_env_long("BENCH_IDLE_FUNCTIONS", 100);
	long secs = bench_env_long("BENCH_IDLE_S", 30);
	static char subjects[IDLE_FN_MAX][256];
	static char *argv[IDLE_FN_MAX + 4];
	const char *why = NULL;
	pid_t sup = -1, base = -1;
	int out[2] = {-1, -1};
	double t0, cpu[2][2], tick[2][2], brk[2];
	char line[64] = "";

	nfn = nfn > IDLE_FN_MAX ? IDLE_FN_MAX : nfn;
	t0 = now_ms();
	for (int i = 0; i < nfn; i++) {
		char name[32], q[32], spec[48];
		snprintf(name, sizeof(name), "idle-%03d", i);
		snprintf(q, sizeof(q), "idle-q-%03d", i);
		snprintf(spec, sizeof(spec), "queue:%s", q);
		if (!queue_make(q) || !define(name, q, 0, 1, 60000) ||
		    mesh_source_watch(conn, spec, subjects[i],
		                      sizeof(subjects[i]), NULL) != MESH_OK) {
			why = "setting up the queues and functions failed";
			goto out;
		}
	}
	printf("# idle: %d functions defined at zero in %.1f s; their wake "
	       "subjects are like %s\n",
	       nfn, (now_ms() - t0) / 1000, subjects[0]);
	fflush(stdout);
	t0 = now_ms();
	if ((sup = supervisor_start("idle")) < 0) {
		why = "the supervisor did not start";
		goto out;
	}
	while (now_ms() - t0 < 60000 && idle_armed() < nfn) {
		nap_us(200000);
	}
	if (idle_armed() < nfn) {
		why = "the supervisor did not arm every function within 60 s";
		goto out;
	}
	printf("# idle: the supervisor armed all %d in %.1f s\n", nfn,
	       (now_ms() - t0) / 1000);
	fflush(stdout);
	argv[0] = (char *)self;
	argv[1] = "--idle-subs";
	argv[2] = broker.url;
	for (int i = 0; i < nfn; i++) {
		argv[3 + i] = subjects[i];
	}
	argv[3 + nfn] = NULL;
	if (pipe(out) != 0 || (base = spawn(argv, NULL, NULL, out[1])) < 0) {
		why = "the baseline program did not start";
		goto out;
	}
	close(out[1]);
	out[1] = -1;
	{
		struct pollfd pf = {.fd = out[0], .events = POLLIN};
		ssize_t k;
		if (poll(&pf, 1, 10000) != 1 ||
		    (k = read(out[0], line, sizeof(line) - 1)) <= 0 ||
		    strncmp(line, "ready", 5) != 0) {
			why = "the baseline program did not subscribe";
			goto out;
		}
	}
	nap_us(1000000); /* both settled */
	cpu[0][0] = sched_cpu_s(sup);
	cpu[1][0] = sched_cpu_s(base);
	tick[0][0] = test_cpu_s(sup);
	tick[1][0] = test_cpu_s(base);
	brk[0] = test_cpu_s(test_broker_pid(&broker));
	t0 = now_ms();
	idle_wait(secs);
	cpu[0][1] = sched_cpu_s(sup);
	cpu[1][1] = sched_cpu_s(base);
	tick[0][1] = test_cpu_s(sup);
	tick[1][1] = test_cpu_s(base);
	brk[1] = test_cpu_s(test_broker_pid(&broker));
	t0 = (now_ms() - t0) / 1000;
	if (kill(sup, 0) != 0 || kill(base, 0) != 0 || cpu[0][0] < 0 ||
	    cpu[1][0] < 0 || cpu[0][1] < 0 || cpu[1][1] < 0) {
		why = "a process ended during the measure";
		goto out;
	}
	{
		double s = (cpu[0][1] - cpu[0][0]) * 100 / t0,
		       b = (cpu[1][1] - cpu[1][0]) * 100 / t0;
		printf("# idle: %.1f s; by ticks (test_cpu_s): supervisor "
		       "%.3f %%, baseline %.3f %%; nats-server %.3f %%; "
		       "functions still armed at zero after: %d of %d\n",
		       t0, (tick[0][1] - tick[0][0]) * 100 / t0,
		       (tick[1][1] - tick[1][0]) * 100 / t0,
		       (brk[1] - brk[0]) * 100 / t0, idle_armed(), nfn);
		printf("# idle: CPU used over the %.1f s: supervisor %.1f ms "
		       "(%d threads), baseline %.1f ms (%d threads)\n",
		       t0, (cpu[0][1] - cpu[0][0]) * 1000, threads(sup),
		       (cpu[1][1] - cpu[1][0]) * 1000, threads(base));
		printf("idle CPU, %d functions at zero: %.3f %% of a core "
		       "(baseline %.3f %% of a core, ratio %.2f)\n",
		       nfn, s, b, b > 0 ? s / b : 0);
		printf("# goal (issue 16): idle CPU < 1 %% of a core: %s\n",
		       s < 1 ? "met" : "NOT met");
		fflush(stdout);
	}
out:
	if (why != NULL) {
		not_measured("idle CPU", why);
	}
	if (out[0] >= 0) {
		close(out[0]);
	}
	if (out[1] >= 0) {
		close(out[1]);
	}
	if (base > 0) {
		stop_pid(base, 3000);
	}
	if (sup > 0 && !stop_pid(sup, 20000)) {
		printf("# idle: the supervisor did not stop within 20 s of "
		       "SIGTERM (killed)\n");
	}
}

/* ---- main --------------------------------------------------------------- */

static bool
part(const char *name)
{
	const char *only = getenv("BENCH_ONLY");

	return only == NULL || *only == '\0' || strcmp(only, name) == 0;
}

int
main(int argc, char **argv)
{
	struct mesh_conn_opts o;
	char self[PATH_MAX];
	ssize_t len;
	pid_t sup = -1;

	if (argc > 2 && strcmp(argv[1], "--idle-subs") == 0) {
		return idle_child_main(argc, argv);
	}
	if (argc < 3) {
		fprintf(stderr, "usage: bench_ondemand MESH-SUPERVISOR "
		                "FN-COUNTER\n");
		return 2;
	}
	/* A definition's program is an absolute path. */
	if ((sup_bin = realpath(argv[1], NULL)) == NULL ||
	    (counter_bin = realpath(argv[2], NULL)) == NULL) {
		fprintf(stderr, "bench: %s: %s\n", argv[sup_bin ? 2 : 1],
		        strerror(errno));
		return 2;
	}
	len = readlink("/proc/self/exe", self, sizeof(self) - 1);
	self[len > 0 ? len : 0] = '\0';
	signal(SIGPIPE, SIG_IGN);
	if (!test_tmpdir(tmp, sizeof(tmp)) ||
	    !test_broker_start(&broker, NULL)) {
		fprintf(stderr, "bench: no nats-server\n");
		return 1;
	}
	mesh_conn_opts_init(&o);
	o.servers = broker.url;
	if (mesh_conn_open(&o, &conn) != MESH_OK) {
		fprintf(stderr, "bench: %s\n", mesh_errdetail());
		test_broker_stop(&broker);
		return 1;
	}
	world = (struct fn_world){conn, tmp, counter_bin, 0};
	printf("# mesh-supervisor --tick-ms %ld --lease-ms %ld; temporary "
	       "folder %s\n",
	       bench_env_long("BENCH_TICK_MS", 250),
	       bench_env_long("BENCH_LEASE_MS", 3000), tmp);
	fflush(stdout);
	if (part("wake") || part("burst") || part("request")) {
		sup = supervisor_start("main");
		if (part("wake")) {
			bench_wake();
		}
		if (part("request")) {
			bench_request();
		}
		if (part("burst")) {
			bench_burst();
		}
		if (!stop_pid(sup, 20000)) {
			printf("# the supervisor did not stop within 20 s of "
			       "SIGTERM (killed)\n");
		}
		mesh_function_delete(conn, "wake");
		mesh_function_delete(conn, "burst");
		mesh_function_delete(conn, "reqfn");
	}
	if (part("idle")) {
		bench_idle(len > 0 ? self : argv[0]);
	}
	kids_stop();
	mesh_conn_close(conn);
	test_broker_stop(&broker);
	if (getenv("BENCH_KEEP") == NULL) {
		test_rmtree(tmp);
	} else {
		printf("# kept %s\n", tmp);
	}
	mesh_shutdown();
	return failures > 0 ? 1 : 0;
}
