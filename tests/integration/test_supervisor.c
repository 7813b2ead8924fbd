/* mesh-supervisor against a real nats-server: scale to zero after idle,
 * the first event after idle processed, a burst scaled up to max (never
 * past it) and back down with nothing lost, a crash loop contained (and
 * its event kept), requests to a function at zero held and answered by
 * the instance they start (or refused: 503 when it crash-loops),
 * requests keeping a function's instance (requests are work) and all
 * answered across its stop and its replacement, requests waiting at the
 * instances starting more (up to max), two
 * supervisors never running one function at once, and one killed -9
 * taken over by the other.
 *
 * argv[1]: mesh-supervisor, argv[2]: fn-counter (tests/fn-counter.c). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <lmdb.h>

#include "fn_world.h"
#include "harness.h"
#include "mesh/function.h"
#include "mesh/mesh.h"
#include "request_call.h"

static struct test_broker broker;
static struct mesh_conn *conn;
static const char *supervisor_bin, *counter_bin;
static char tmp[PATH_MAX];
static int define_partitions; /* the next define()'s: 0 none */
static struct fn_world world;

static void
nap(int ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* A supervisor of our own, its log in tmp/sup-TAG.log. */
static pid_t
supervisor_start(const char *tag)
{
	char log[PATH_MAX + 32];
	pid_t pid;

	snprintf(log, sizeof(log), "%s/sup-%s.log", tmp, tag);
	if ((pid = fork()) == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		dup2(fd, 2);
		dup2(fd, 1);
		execl(supervisor_bin, supervisor_bin, "--server", broker.url,
		      "--tick-ms", "100", "--lease-ms", "1500", "--stop-ms",
		      "5000", (char *)NULL);
		_exit(127);
	}
	return pid;
}

static void
supervisor_stop(pid_t pid)
{
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
}

static mesh_err
define(const char *name, const char *queue, int min, int max, int64_t idle,
       const char *extra_env)
{
	return fn_define(&world, name, queue, min, max, idle,
	                 define_partitions, extra_env);
}

static json_t *
info(const char *name)
{
	return fn_info(&world, name, 1000);
}

/* Instances running or starting, from the supervisor's answer; -1 when
 * none answered. */
static int
running(const char *name)
{
	json_t *j = info(name), *inst;
	int n = -1;
	size_t i;

	if (j != NULL) {
		n = 0;
		json_array_foreach(json_object_get(j, "instances"), i, inst)
		{
			n += strcmp(json_string_value(
			                    json_object_get(inst, "state")),
			            "stopping") != 0;
		}
	}
	json_decref(j);
	return n;
}

static json_int_t
info_int(const char *name, const char *field)
{
	json_t *j = info(name);
	json_int_t v = j ? json_integer_value(json_object_get(j, field)) : -1;

	json_decref(j);
	return v;
}

/* No instance, and its wake subscriptions armed (running() == 0 holds
 * before they are, while an event sent is found only by arming's backlog
 * reading, whatever a filter policy says). */
static bool
at_zero(const char *name)
{
	json_t *j = info(name);
	bool zero = j != NULL &&
	            json_array_size(json_object_get(j, "instances")) == 0 &&
	            json_is_true(json_object_get(j, "armed"));

	json_decref(j);
	return zero;
}

static int
lines(const char *name)
{
	char path[PATH_MAX + 64];
	FILE *f;
	int n = 0, ch;

	snprintf(path, sizeof(path), "%s/%s.starts", tmp, name);
	if ((f = fopen(path, "r")) == NULL) {
		return 0;
	}
	while ((ch = fgetc(f)) != EOF) {
		n += ch == '\n';
	}
	fclose(f);
	return n;
}

/* Events processed by NAME: its state's "ev/" keys, read from its LMDB
 * environment (another process may be writing: LMDB allows it). */
static long processed_in(const char *dir);

static long
processed(const char *name)
{
	char dir[PATH_MAX + 64];
	long n = 0, k;

	/* A partitioned service's state: an environment per partition. */
	for (int p = 0;; p++) {
		snprintf(dir, sizeof(dir), "%s/%s/p%d", tmp, name, p);
		if (access(dir, F_OK) != 0) {
			break;
		}
		if ((k = processed_in(dir)) < 0) {
			return -1;
		}
		n += k;
	}
	if (n > 0) {
		return n;
	}
	snprintf(dir, sizeof(dir), "%s/%s", tmp, name);
	return processed_in(dir);
}

static long
processed_in(const char *dir)
{
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_dbi dbi;
	MDB_val k = {3, "ev/"}, v;
	long n = -1;

	if (access(dir, F_OK) != 0) {
		return 0;
	}
	if (mdb_env_create(&env) != 0 || mdb_env_set_maxdbs(env, 8) != 0 ||
	    mdb_env_set_mapsize(env, (size_t)1 << 30) != 0 ||
	    mdb_env_open(env, dir, MDB_RDONLY | MDB_NOTLS, 0644) != 0 ||
	    mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) != 0 ||
	    mdb_dbi_open(txn, "state", 0, &dbi) != 0 ||
	    mdb_cursor_open(txn, dbi, &cur) != 0) {
		goto out;
	}
	n = 0;
	for (int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size < 3 || memcmp(k.mv_data, "ev/", 3) != 0) {
			break;
		}
		n++;
	}
out:
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	mdb_env_close(env);
	return n;
}

static long
processed_all(const char **names, int n)
{
	long d = 0;

	for (int k = 0; k < n; k++) {
		d += processed(names[k]);
	}
	return d;
}

static bool
send_n(const char *queue, int n)
{
	struct mesh_queue *q = NULL;
	bool ok = mesh_queue_open(conn, queue, &q) == MESH_OK;

	for (int i = 0; ok && i < n; i++) {
		struct mesh_event *ev = NULL;
		struct mesh_queue_entry e = {.delay_s = -1};
		struct mesh_queue_sent sent;
		char body[32];
		snprintf(body, sizeof(body), "event %d", i);
		ok = mesh_event_new("test.work", "/tests", &ev) == MESH_OK &&
		     mesh_event_set_text(ev, body, strlen(body)) == MESH_OK;
		e.event = ev;
		ok = ok && mesh_queue_send(q, &e, &sent) == MESH_OK;
		mesh_event_free(ev);
	}
	mesh_queue_close(q);
	return ok;
}

/* Wait up to ms for cond; true when it came. */
#define WAIT_FOR(cond, ms)                                                    \
	({                                                                    \
		long long until_ = test_now_ms() + (ms);                      \
		bool got_;                                                    \
		while (!(got_ = (cond)) && test_now_ms() < until_) {          \
			nap(50);                                              \
		}                                                             \
		got_;                                                         \
	})

static void
queue_make(const char *name)
{
	fn_queue_make(&world, name);
}

static void
one_supervisor(void)
{
	pid_t sup;
	long long t0;
	int peak = 0;
	pid_t killed = 0;

	queue_make("work");
	ok(define("counter", "work", 0, 3, 1500, "FN_SLOW_MS=1") == MESH_OK,
	   "a function with min 0, max 3, idle 1.5 s is defined");
	sup = supervisor_start("one");
	ok(WAIT_FOR(running("counter") == 0, 10000),
	   "the supervisor runs it with no instance while nothing waits");
	nap(1000);
	is_int(lines("counter"), 0, "no instance was started");

	t0 = test_now_ms();
	ok(send_n("work", 1), "one event sent");
	ok(WAIT_FOR(processed("counter") == 1, 10000),
	   "the first event woke an instance and was processed");
	tap_diag("first event processed %lld ms after sending (cold)",
	         test_now_ms() - t0);
	is_int(lines("counter"), 1, "one instance started for it");
	ok(WAIT_FOR(running("counter") == 0, 10000),
	   "after the idle time, no instance runs");
	is_int(info_int("counter", "cold_starts"), 1,
	       "one cold start counted");

	ok(send_n("work", 1), "one more event after idle");
	ok(WAIT_FOR(processed("counter") == 2, 10000),
	   "it is processed: the function woke again");
	ok(WAIT_FOR(running("counter") == 0, 10000), "and went back to zero");

	ok(send_n("work", 5000), "a burst of 5,000 events");
	t0 = test_now_ms();
	while (test_now_ms() - t0 < 60000 && processed("counter") < 5002) {
		int n = running("counter");
		if (n == 3 && killed == 0) {
			/* An instance killed -9 mid-burst: what it held comes
			 * back after the queue's visibility timeout. */
			json_t *j = info("counter");
			killed = (pid_t)json_integer_value(json_object_get(
			        json_array_get(json_object_get(j, "instances"),
			                       0),
			        "pid"));
			json_decref(j);
			if (killed > 0) {
				kill(killed, SIGKILL);
			}
		}
		peak = n > peak ? n : peak;
		nap(100);
	}
	ok(killed > 0, "an instance was killed -9 mid-burst");
	ok(info_int("counter", "exits") >= 1,
	   "and the supervisor counted its exit");
	is_int(processed("counter"), 5002, "every event processed once");
	is_int(peak, 3, "the burst scaled up to max 3, never past it");
	ok(WAIT_FOR(running("counter") == 0, 15000),
	   "and back down to zero after it");
	tap_diag("instances started in all: %d", lines("counter"));

	/* A crash loop: the program exits at once. */
	queue_make("crashq");
	ok(define("crasher", "crashq", 0, 2, 1500, "FN_CRASH=1") == MESH_OK,
	   "a function whose program exits at start");
	ok(send_n("crashq", 1), "an event for it");
	nap(6000);
	{
		json_t *j = info("crasher");
		json_int_t exits =
		        j ? json_integer_value(json_object_get(j, "exits"))
		          : -1;
		ok(j != NULL && json_is_true(json_object_get(j, "crash_loop")),
		   "it is reported crash-looping");
		ok(exits >= 3 && exits <= 6,
		   "restarted with back-off: %lld exits in 6 s",
		   (long long)exits);
		json_decref(j);
	}
	ok(define("crasher", "crashq", 0, 2, 1500, NULL) == MESH_OK,
	   "its definition mended (the crash taken out)");
	ok(WAIT_FOR(processed("crasher") == 1, 15000),
	   "the event survived the crash loop and is processed");
	supervisor_stop(sup);
	ok(WAIT_FOR(running("counter") == -1, 3000),
	   "a stopped supervisor answers no more");
}

/* A partitioned function: an instance per partition at most, whatever
 * its max. */
static void
partitioned(void)
{
	long long t0;
	int peak = 0;
	pid_t sup;

	queue_make("pwork");
	define_partitions = 2;
	ok(define("parted", "pwork", 0, 4, 1500, "FN_SLOW_MS=2") == MESH_OK,
	   "a function of 2 partitions with max 4");
	define_partitions = 0;
	sup = supervisor_start("parted");
	ok(WAIT_FOR(running("parted") == 0, 10000), "nothing runs at first");
	ok(send_n("pwork", 2000), "a burst of 2,000 events");
	t0 = test_now_ms();
	while (test_now_ms() - t0 < 60000 && processed("parted") < 2000) {
		int n = running("parted");
		peak = n > peak ? n : peak;
		nap(100);
	}
	is_int(processed("parted"), 2000, "every event processed once");
	is_int(peak, 2, "an instance per partition at most: 2, not max 4");
	ok(WAIT_FOR(running("parted") == 0, 20000), "back to zero after it");
	supervisor_stop(sup);
}

/* A function on a topic behind a filter policy: an event the policy
 * refuses wakes nothing, one it lets through wakes the function. */
static void
filtered_topic(void)
{
	static const char policy[] = "{\"kind\":[\"wanted\"]}";
	struct mesh_topic_attrs ta;
	struct mesh_sub_attrs sa;
	struct mesh_subscription rec;
	struct mesh_function f;
	struct mesh_topic *t = NULL;
	char state[PATH_MAX + 64], starts[PATH_MAX + 64], spec[400];
	char *env[] = {state, starts, "FN_NAME=picky", "FN_TOPIC=things",
	               "FN_FILTER={\"kind\":[\"wanted\"]}"};
	char *sources[] = {spec};
	pid_t sup;

	mesh_topic_attrs_init(&ta);
	mesh_sub_attrs_init(&sa);
	sa.filter_policy = policy;
	if (mesh_topic_create(conn, "things", &ta) != MESH_OK ||
	    mesh_subscription_create(conn, "things", MESH_SUB_SERVICE, "picky",
	                             &sa, &rec) != MESH_OK) {
		tap_diag("%s", mesh_errdetail());
		return;
	}
	snprintf(spec, sizeof(spec), "subscription:%s", rec.id);
	mesh_subscription_fini(&rec);
	snprintf(state, sizeof(state), "MESH_STATE=%s/picky", tmp);
	snprintf(starts, sizeof(starts), "FN_STARTS=%s/picky.starts", tmp);
	mesh_function_init(&f);
	snprintf(f.name, sizeof(f.name), "picky");
	f.program = (char *)counter_bin;
	f.env = env;
	f.n_env = sizeof(env) / sizeof(*env);
	f.max = 1;
	f.idle_ms = 1500;
	f.sources = sources;
	f.n_sources = 1;
	ok(mesh_function_put(conn, &f, true) == MESH_OK,
	   "a function on a topic, behind the policy %s", policy);
	sup = supervisor_start("picky");
	ok(WAIT_FOR(at_zero("picky"), 10000),
	   "it runs nothing at first, its wake subscription armed");
	ok(mesh_topic_open(conn, "things", &t) == MESH_OK, "the topic opens");
	for (int i = 0; i < 2; i++) {
		struct mesh_event *ev = NULL;
		struct mesh_topic_entry e = {0};
		struct mesh_topic_published out;
		const char *kind = i == 0 ? "unwanted" : "wanted";
		mesh_event_new("test.thing", "/tests", &ev);
		mesh_event_attr_set(ev, "kind", "String", kind, strlen(kind));
		e.event = ev;
		ok(mesh_topic_publish(t, &e, &out) == MESH_OK,
		   "an event of kind '%s' published", kind);
		mesh_event_free(ev);
		if (i == 0) {
			nap(1500);
			is_int(lines("picky"), 0,
			       "the event its policy refuses woke nothing");
		}
	}
	mesh_topic_close(t);
	ok(WAIT_FOR(processed("picky") == 1, 10000),
	   "the one it lets through woke it and was processed");
	is_int(lines("picky"), 1, "one instance started");
	supervisor_stop(sup);
}

/* The pid in the starts file of NAME on line k (0: the first), or 0. */
static int
start_pid(const char *name, int k)
{
	char path[PATH_MAX + 64], line[64];
	int pid = 0, i = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s.starts", tmp, name);
	if ((f = fopen(path, "r")) == NULL) {
		return 0;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		if (i++ == k) {
			pid = atoi(line);
			break;
		}
	}
	fclose(f);
	return pid;
}

/* GET /count of service NAME, as mesh-gateway sends it. */
static int
count_call(const char *name, int64_t timeout_ms, struct test_reply *r)
{
	return test_request_call(mesh_conn_nats(conn), name, "GET /count",
	                         "/count", NULL, NULL, NULL, NULL, timeout_ms,
	                         r);
}

struct caller {
	const char *name;
	pthread_t t;
	struct test_reply r;
	long long ms;
};

static void *
caller_main(void *arg)
{
	struct caller *c = arg;
	long long t0 = test_now_ms();

	count_call(c->name, 15000, &c->r);
	c->ms = test_now_ms() - t0;
	return NULL;
}

/* Requests (GET /count, as the gateway sends them) to functions at zero:
 * the first cold-starts the function and is answered by its instance; 20
 * at once are all answered; a function serving no routes gives no
 * responders; a crash-looping one's request gets 503 within seconds. */
static void
requests(void)
{
	static struct caller callers[20];
	const int n = (int)(sizeof(callers) / sizeof(*callers));
	struct test_reply r;
	long long t0, ms;
	char pid[32];
	int answered = 0;
	json_t *j;
	pid_t sup;

	queue_make("rq");
	queue_make("plainq");
	queue_make("crq");
	ok(fn_define_served(&world, "served", "rq", 0, 2, 1500, NULL) ==
	           MESH_OK,
	   "a function serving GET /count, min 0");
	ok(define("plain", "plainq", 0, 1, 1500, NULL) == MESH_OK,
	   "a function serving no routes, min 0");
	ok(fn_define_served(&world, "crashy", "crq", 0, 1, 1500,
	                    "FN_CRASH=1") == MESH_OK,
	   "a function serving GET /count whose program exits at start");
	sup = supervisor_start("req");
	ok(WAIT_FOR(at_zero("served") && at_zero("plain") && at_zero("crashy"),
	            10000),
	   "all three at zero, armed");

	t0 = test_now_ms();
	is_int(count_call("served", 10000, &r), 200,
	       "a request to the function at zero is answered 200");
	ms = test_now_ms() - t0;
	tap_diag("first request answered %lld ms after sending (cold)", ms);
	snprintf(pid, sizeof(pid), "\"pid\":%d}", start_pid("served", 0));
	has_str(r.body, pid, "by the instance it started: %s", r.body);
	has_str(r.request_id, "rid-", "the caller's request id echoed");
	is_int(lines("served"), 1, "one instance started for it");
	j = info("served");
	is_int(j ? json_integer_value(json_object_get(j, "cold_starts")) : -1,
	       1, "one cold start counted");
	has_str(j ? json_string_value(json_object_get(
	                    json_object_get(j, "decision"), "why"))
	          : NULL,
	        "a request on mesh.service.served.request",
	        "the decision says a request woke it");
	ok(j != NULL && !json_is_true(json_object_get(j, "armed")) &&
	           json_integer_value(json_object_get(j, "requests_held")) ==
	                   0,
	   "nothing held once it runs");
	json_decref(j);
	t0 = test_now_ms();
	is_int(count_call("served", 5000, &r), 200,
	       "the next request is answered by the running instance");
	tap_diag("answered in %lld ms (warm)", test_now_ms() - t0);

	ok(WAIT_FOR(at_zero("served"), 15000), "idle, back to zero");
	for (int i = 0; i < n; i++) {
		callers[i].name = "served";
		pthread_create(&callers[i].t, NULL, caller_main, &callers[i]);
	}
	ms = 0;
	for (int i = 0; i < n; i++) {
		pthread_join(callers[i].t, NULL);
		answered += callers[i].r.status == 200;
		ms = callers[i].ms > ms ? callers[i].ms : ms;
		if (callers[i].r.status != 200) {
			tap_diag("request %d: status %d (nats %d): %s", i,
			         callers[i].r.status, (int)callers[i].r.nats,
			         callers[i].r.body);
		}
	}
	is_int(answered, n,
	       "%d requests at once to the function at zero: all "
	       "answered 200",
	       n);
	tap_diag("the slowest in %lld ms", ms);
	is_int(info_int("served", "cold_starts"), 2,
	       "after one more cold start");

	is_int(count_call("plain", 5000, &r), -1,
	       "a function at zero serving no routes: no reply");
	is_int(r.nats, NATS_NO_RESPONDERS, "NATS's no responders, at once");

	t0 = test_now_ms();
	is_int(count_call("crashy", 20000, &r), 503,
	       "a crash-looping function's held request is answered 503");
	ms = test_now_ms() - t0;
	ok(ms < 6000, "within seconds, not the caller's timeout: %lld ms", ms);
	has_str(r.body, "crash-looping", "saying why: %s", r.body);
	has_str(r.body, "\"requestId\":\"rid-", "with the request id");
	t0 = test_now_ms();
	is_int(count_call("crashy", 5000, &r), 503,
	       "the next one too, at once");
	ok(test_now_ms() - t0 < 1000, "in %lld ms", test_now_ms() - t0);
	ok(info_int("crashy", "requests_refused") >= 2,
	   "function info counts them refused");
	supervisor_stop(sup);
	mesh_function_delete(conn, "served");
	mesh_function_delete(conn, "plain");
	mesh_function_delete(conn, "crashy");
}

/* An instance of name stopping, none other running. */
static bool
stopping_now(const char *name)
{
	json_t *j = info(name), *inst;
	int stopping = 0, other = 0;
	size_t i;

	json_array_foreach(json_object_get(j, "instances"), i, inst)
	{
		bool st = strcmp(json_string_value(
		                         json_object_get(inst, "state")),
		                 "stopping") == 0;
		stopping += st;
		other += !st;
	}
	json_decref(j);
	return stopping > 0 && other == 0;
}

/* A pid from a GET /count body, 0 if none. */
static int
body_pid(const char *body)
{
	const char *p = strstr(body, "\"pid\":");

	return p != NULL ? atoi(p + 6) : 0;
}

/* Callers sending GET /count back to back until told to stop, counting
 * the answers that are not 200 and the pids that answered. */
struct loader {
	const char *name;
	pthread_t t;
	volatile bool quit;
	int sent, good, pids[8], n_pids;
	char bad[256];
};

static void *
loader_main(void *arg)
{
	struct loader *l = arg;

	while (!l->quit) {
		struct test_reply r;
		int pid;
		l->sent++;
		long long t0 = test_now_ms();
		if (count_call(l->name, 15000, &r) != 200) {
			snprintf(l->bad, sizeof(l->bad),
			         "status %d (nats %d) after %lld ms: %.200s",
			         r.status, (int)r.nats, test_now_ms() - t0,
			         r.body);
			continue;
		}
		l->good++;
		pid = body_pid(r.body);
		bool seen = false;
		for (int i = 0; i < l->n_pids; i++) {
			seen = seen || l->pids[i] == pid;
		}
		if (!seen && l->n_pids < 8) {
			l->pids[l->n_pids++] = pid;
		}
	}
	return NULL;
}

/* Start n loaders on name; returns after they are running. */
static void
load_start(struct loader *ls, int n, const char *name)
{
	for (int i = 0; i < n; i++) {
		memset(&ls[i], 0, sizeof(ls[i]));
		ls[i].name = name;
		pthread_create(&ls[i].t, NULL, loader_main, &ls[i]);
	}
}

/* Stop them; the requests not answered 200 (their last reason in why). */
static int
load_stop(struct loader *ls, int n, int *sent, int *pids, char *why,
          size_t size)
{
	int bad = 0;

	*sent = *pids = 0;
	for (int i = 0; i < n; i++) {
		ls[i].quit = true;
	}
	for (int i = 0; i < n; i++) {
		pthread_join(ls[i].t, NULL);
		*sent += ls[i].sent;
		*pids = ls[i].n_pids > *pids ? ls[i].n_pids : *pids;
		bad += ls[i].sent - ls[i].good;
		if (ls[i].bad[0] != '\0') {
			snprintf(why, size, "%s", ls[i].bad);
		}
	}
	return bad;
}

/* Requests are work: a function serving GET /count and nothing else,
 * idle 2 s, asked every 300 ms for 6 s keeps its one instance, and stops
 * about 2 s after the last request. Requests sent without pause across
 * its replacement (a changed definition) and across its stop to zero
 * are all answered 200: none meets no responders (503 from the gateway)
 * nor the runtime's "stopping". */
static void
requests_as_work(void)
{
	static struct loader ls[4];
	const int n_ls = (int)(sizeof(ls) / sizeof(*ls));
	struct test_reply r;
	char why[256] = "";
	long long t0, last = 0;
	int good = 0, sent = 0, pids = 0, bad, first_pid, min_up = 9;
	json_t *j;
	pid_t sup;

	queue_make("kq");
	ok(fn_define_served(&world, "kept", "kq", 0, 2, 2000, NULL) == MESH_OK,
	   "a function serving GET /count, min 0, idle 2 s");
	sup = supervisor_start("kept");
	ok(WAIT_FOR(at_zero("kept"), 10000), "at zero, armed");
	is_int(count_call("kept", 10000, &r), 200,
	       "a first request cold-starts it");
	first_pid = body_pid(r.body);
	t0 = test_now_ms();
	while (test_now_ms() - t0 < 6000) {
		int up;
		good += count_call("kept", 5000, &r) == 200 &&
		        body_pid(r.body) == first_pid;
		last = test_now_ms();
		sent++;
		up = running("kept");
		min_up = up < min_up ? up : min_up;
		nap(300);
	}
	is_int(good, sent,
	       "a request every 300 ms for 6 s: all %d answered by the "
	       "first instance",
	       sent);
	is_int(min_up, 1, "which ran the whole time (seen after each)");
	is_int(info_int("kept", "cold_starts"), 1, "no second cold start");
	is_int(lines("kept"), 1, "one instance started in all");
	ok(info_int("kept", "requests") >= sent,
	   "function info counts the requests its instances answered (%lld)",
	   (long long)info_int("kept", "requests"));
	ok(WAIT_FOR(running("kept") == 0, 10000), "then it stops");
	tap_diag("stopped %lld ms after the last request (idle 2 s)",
	         test_now_ms() - last);
	ok(test_now_ms() - last >= 1800 && test_now_ms() - last < 4000,
	   "about the idle time after the last request: %lld ms",
	   test_now_ms() - last);
	j = info("kept");
	has_str(j ? json_string_value(json_object_get(
	                    json_object_get(j, "decision"), "why"))
	          : NULL,
	        "no request", "the decision says no request came");
	json_decref(j);

	/* Its replacement under load: slow requests (20 ms) always in
	 * flight at the old instance when it hears SIGTERM. */
	ok(WAIT_FOR(at_zero("kept"), 10000), "at zero again, armed");
	ok(fn_define_served(&world, "kept", "kq", 0, 2, 2000,
	                    "FN_REQ_SLOW_MS=20") == MESH_OK,
	   "its requests made to take 20 ms");
	load_start(ls, n_ls, "kept");
	nap(1500);
	ok(fn_define_served(&world, "kept", "kq", 0, 2, 2000,
	                    "FN_REQ_SLOW_MS=21") == MESH_OK,
	   "its definition changed under load of 4 callers");
	ok(WAIT_FOR(lines("kept") == 3, 10000), "a new instance started");
	nap(1500);
	bad = load_stop(ls, n_ls, &sent, &pids, why, sizeof(why));
	is_int(bad, 0,
	       "across its replacement, all %d requests answered 200%s%s",
	       sent, bad ? ": " : "", why);
	ok(pids >= 2, "by the old instance, then the new (%d pids)", pids);

	/* Its stop to zero: requests sent as soon as it is stopping. */
	t0 = test_now_ms();
	while (test_now_ms() - t0 < 10000 && !stopping_now("kept")) {
		nap(2);
	}
	ok(stopping_now("kept"), "idle again: its instance stopping");
	load_start(ls, n_ls, "kept");
	nap(1500);
	bad = load_stop(ls, n_ls, &sent, &pids, why, sizeof(why));
	is_int(bad, 0,
	       "requests sent from its stop on: all %d answered 200%s%s", sent,
	       bad ? ": " : "", why);
	tap_diag("answered by %d instances; %lld cold starts", pids,
	         (long long)info_int("kept", "cold_starts"));
	supervisor_stop(sup);
	mesh_function_delete(conn, "kept");
}

/* Requests waiting at the instances are backlog: a function whose
 * requests take 200 ms, 2 per instance, max 3, under 8 callers without
 * pause grows past one instance and never past max, every request
 * answered 200; the callers gone, it goes back to zero. */
static void
requests_scale(void)
{
	static struct loader ls[8];
	const int n_ls = (int)(sizeof(ls) / sizeof(*ls));
	char why[256] = "";
	int sent = 0, pids = 0, bad, peak = 0;
	long long t0;
	pid_t sup;

	queue_make("bq");
	world.target_backlog = 2;
	ok(fn_define_served(&world, "busy", "bq", 0, 3, 2000,
	                    "FN_REQ_SLOW_MS=200") == MESH_OK,
	   "a function whose requests take 200 ms, 2 per instance, max 3");
	world.target_backlog = 0;
	sup = supervisor_start("busy");
	ok(WAIT_FOR(at_zero("busy"), 10000), "at zero, armed");
	load_start(ls, n_ls, "busy");
	t0 = test_now_ms();
	while (test_now_ms() - t0 < 6000) {
		int up = running("busy");
		peak = up > peak ? up : peak;
		nap(100);
	}
	bad = load_stop(ls, n_ls, &sent, &pids, why, sizeof(why));
	is_int(bad, 0, "8 callers for 6 s: all %d requests answered 200%s%s",
	       sent, bad ? ": " : "", why);
	ok(peak >= 2, "the requests waiting started more instances (peak %d)",
	   peak);
	ok(peak <= 3, "never past max 3");
	ok(pids >= 2, "each answering some (%d pids seen by one caller)",
	   pids);
	tap_diag("%d requests in 6 s on up to %d instances", sent, peak);
	ok(WAIT_FOR(running("busy") == 0, 15000),
	   "the callers gone, back to zero");
	supervisor_stop(sup);
	mesh_function_delete(conn, "busy");
}

/* Every supervisor's answer to the list request, for 300 ms: per function
 * name, how many supervisors run it and the instances they report. */
static bool
list_check(const char **names, int n, int max, char *why, size_t size)
{
	natsConnection *nc = mesh_conn_nats(conn);
	natsSubscription *sub = NULL;
	char inbox[64];
	int seen[16] = {0}, inst[16] = {0};
	natsMsg *m = NULL;
	bool good = true;

	snprintf(inbox, sizeof(inbox), "_INBOX.test.%d", (int)test_rand());
	natsConnection_SubscribeSync(&sub, nc, inbox);
	natsConnection_PublishRequestString(nc, MESH_SUPERVISOR_LIST_SUBJECT,
	                                    inbox, "");
	while (natsSubscription_NextMsg(&m, sub, 300) == NATS_OK) {
		json_t *j = json_loadb(natsMsg_GetData(m),
		                       (size_t)natsMsg_GetDataLength(m), 0,
		                       NULL),
		       *f;
		size_t i;
		json_array_foreach(json_object_get(j, "functions"), i, f)
		{
			const char *fn = json_string_value(
			        json_object_get(f, "function"));
			for (int k = 0; fn != NULL && k < n; k++) {
				if (strcmp(fn, names[k]) == 0) {
					seen[k]++;
					inst[k] += (int)json_array_size(
					        json_object_get(f,
					                        "instances"));
				}
			}
		}
		json_decref(j);
		natsMsg_Destroy(m);
	}
	natsSubscription_Destroy(sub);
	for (int k = 0; k < n; k++) {
		if (seen[k] > 1 || inst[k] > max) {
			snprintf(why, size, "%s: %d supervisors, %d instances",
			         names[k], seen[k], inst[k]);
			good = false;
		}
	}
	return good;
}

static void
two_supervisors(void)
{
	static const char *names[] = {"fa", "fb", "fc", "fd", "fe", "ff"};
	const int n = 6;
	pid_t a, b;
	bool never_double = true;
	char why[256] = "";
	long long t0;

	for (int k = 0; k < n; k++) {
		char q[32];
		snprintf(q, sizeof(q), "q-%s", names[k]);
		queue_make(q);
		if (define(names[k], q, 0, 2, 1500, "FN_SLOW_MS=2") !=
		    MESH_OK) {
			tap_diag("%s: %s", names[k], mesh_errdetail());
		}
	}
	a = supervisor_start("a");
	b = supervisor_start("b");
	nap(4000); /* the slots spread over both */
	for (int k = 0; k < n; k++) {
		char q[32];
		snprintf(q, sizeof(q), "q-%s", names[k]);
		send_n(q, 500);
	}
	t0 = test_now_ms();
	while (test_now_ms() - t0 < 30000) {
		if (!list_check(names, n, 2, why, sizeof(why))) {
			never_double = false;
			tap_diag("%s", why);
		}
		if (processed_all(names, n) == 500L * n) {
			break;
		}
	}
	ok(never_double, "no function ever ran under two supervisors, nor "
	                 "past its max");
	{
		is_int(processed_all(names, n), 500L * n,
		       "both supervisors' functions processed "
		       "every event");
	}

	kill(a, SIGKILL);
	waitpid(a, NULL, 0);
	for (int k = 0; k < n; k++) {
		char q[32];
		snprintf(q, sizeof(q), "q-%s", names[k]);
		send_n(q, 10);
	}
	t0 = test_now_ms();
	ok(WAIT_FOR(processed_all(names, n) == 510L * n, 30000),
	   "after one supervisor was killed -9, the other ran all its "
	   "functions: every event processed");
	tap_diag("taken over and processed in %lld ms", test_now_ms() - t0);
	supervisor_stop(b);
}

int
main(int argc, char **argv)
{
	if (argc < 3) {
		tap_skip_all(
		        "usage: test_supervisor MESH-SUPERVISOR FN-COUNTER");
	}
	supervisor_bin = argv[1];
	counter_bin = argv[2];
	signal(SIGPIPE, SIG_IGN);
	if (!test_tmpdir(tmp, sizeof(tmp)) ||
	    !test_broker_start(&broker, NULL)) {
		tap_skip_all("no nats-server");
	}
	struct mesh_conn_opts o;
	mesh_conn_opts_init(&o);
	o.servers = broker.url;
	if (mesh_conn_open(&o, &conn) != MESH_OK) {
		tap_diag("%s", mesh_errdetail());
		test_broker_stop(&broker);
		return 1;
	}
	world = (struct fn_world){conn, tmp, counter_bin, 0};
	one_supervisor();
	requests();
	requests_as_work();
	requests_scale();
	filtered_topic();
	partitioned();
	two_supervisors();
	mesh_conn_close(conn);
	test_broker_stop(&broker);
	if (getenv("TEST_KEEP") == NULL) {
		test_rmtree(tmp);
	} else {
		tap_diag("kept %s", tmp);
	}
	mesh_shutdown();
	return tap_done();
}
