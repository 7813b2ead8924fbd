/* The service runtime against a real nats-server and a real LMDB
 * environment: handlers, state, the outbox and its published events with
 * their trace, retries, rejections and max-receive dead letters, the
 * processed-id table, a topic source with a filter policy, FIFO group
 * order after a failure, stats on request, and a graceful stop. */
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <lmdb.h>

#include "harness.h"
#include "service_thread.h"
#include "mesh/service.h"

static struct test_broker broker;
static struct mesh_conn *c;
static char state_dir[PATH_MAX];

/* ---- the service under test --------------------------------------------- */

static mesh_handler_result
on_count(struct mesh_ctx *ctx, const struct mesh_event *ev,
         const ProtobufCMessage *msg, void *arg)
{
	const void *v;
	size_t len;
	char key[128], buf[32];
	long n = 0;
	struct mesh_event *out = NULL;

	(void)msg;
	(void)arg;
	if (mesh_state_get(ctx, "count", 5, &v, &len) == MESH_OK) {
		n = strtol(v, NULL, 10);
	}
	snprintf(buf, sizeof(buf), "%ld", n + 1);
	mesh_state_put(ctx, "count", 5, buf, strlen(buf) + 1);
	snprintf(key, sizeof(key), "seen/%s", mesh_event_id(ev));
	mesh_state_put(ctx, key, strlen(key), "1", 1);
	mesh_event_new("test.counted", "x", &out);
	mesh_event_set_text(out, buf, strlen(buf));
	mesh_emit(ctx, "topic:rt-out", out, NULL);
	mesh_event_free(out);
	return MESH_HANDLER_OK;
}

/* Fails its first two attempts after writing state, deleting a key and
 * emitting an event: all of which must vanish. */
static mesh_handler_result
on_flaky(struct mesh_ctx *ctx, const struct mesh_event *ev,
         const ProtobufCMessage *msg, void *arg)
{
	char key[32];
	struct mesh_event *out = NULL;

	(void)ev;
	(void)msg;
	(void)arg;
	if (mesh_ctx_attempt(ctx) < 3) {
		snprintf(key, sizeof(key), "flaky/fail-%d",
		         mesh_ctx_attempt(ctx));
		mesh_state_put(ctx, key, strlen(key), "x", 1);
		mesh_state_put(ctx, "count", 5, "999", 4);
		mesh_state_put(ctx, "count", 5, "998", 4);
		mesh_state_del(ctx, "count", 5);
		mesh_event_new("test.counted", "x", &out);
		mesh_event_set_text(out, "flaky", 5);
		mesh_emit(ctx, "topic:rt-out", out, NULL);
		mesh_event_free(out);
		return mesh_retry(ctx, 100);
	}
	mesh_state_put(ctx, "flaky/done", 10, "1", 1);
	return MESH_HANDLER_OK;
}

/* Marks its body in the state; "big" writes more than the map holds,
 * which spoils the batch's transaction. */
static mesh_handler_result
on_mark(struct mesh_ctx *ctx, const struct mesh_event *ev,
        const ProtobufCMessage *msg, void *arg)
{
	const void *data;
	size_t len;
	char key[64];

	(void)msg;
	(void)arg;
	mesh_event_data(ev, &data, &len, NULL);
	if (len == 3 && memcmp(data, "big", 3) == 0) {
		size_t big = 32u << 20;
		char *v = calloc(1, big);
		mesh_state_put(ctx, "big", 3, v, big);
		free(v);
		return MESH_HANDLER_OK; /* careless: the put failed */
	}
	snprintf(key, sizeof(key), "mark/%.*s", (int)len, (const char *)data);
	mesh_state_put(ctx, key, strlen(key), "1", 1);
	return MESH_HANDLER_OK;
}

static mesh_handler_result
on_reject(struct mesh_ctx *ctx, const struct mesh_event *ev,
          const ProtobufCMessage *msg, void *arg)
{
	(void)ev;
	(void)msg;
	(void)arg;
	return mesh_reject(ctx, "not for us: test");
}

static mesh_handler_result
on_boom(struct mesh_ctx *ctx, const struct mesh_event *ev,
        const ProtobufCMessage *msg, void *arg)
{
	(void)ev;
	(void)msg;
	(void)arg;
	return mesh_retry(ctx, 50);
}

/* FIFO: records "group:n" in order; "g1 2" fails once. */
static mesh_handler_result
on_fifo(struct mesh_ctx *ctx, const struct mesh_event *ev,
        const ProtobufCMessage *msg, void *arg)
{
	const void *data, *v;
	size_t len, vlen;
	char key[64], text[64], log[4096] = "";

	(void)msg;
	(void)arg;
	mesh_event_data(ev, &data, &len, NULL);
	snprintf(text, sizeof(text), "%.*s", (int)len, (const char *)data);
	if (strcmp(text, "g1 2") == 0 && mesh_ctx_attempt(ctx) == 1) {
		return mesh_retry(ctx, 100);
	}
	snprintf(key, sizeof(key), "fifo/%.2s", text);
	if (mesh_state_get(ctx, key, strlen(key), &v, &vlen) == MESH_OK) {
		snprintf(log, sizeof(log), "%.*s,", (int)vlen,
		         (const char *)v);
	}
	strncat(log, text + 3, sizeof(log) - strlen(log) - 1);
	mesh_state_put(ctx, key, strlen(key), log, strlen(log));
	return MESH_HANDLER_OK;
}

static struct mesh_service *
declare(void)
{
	struct mesh_service *s = NULL;
	struct mesh_service_opts *o;

	mesh_service_new("rt", &s);
	o = mesh_service_opts(s);
	o->state_dir = state_dir;
	o->max_receive = 3;
	o->retry_base_ms = 50;
	o->retry_max_ms = 200;
	o->batch_size = 32;
	o->map_size = 16u << 20;
	mesh_service_consume(s, "rt-in");
	mesh_service_consume(s, "rt-in2");
	mesh_service_consume(s, "rt-in.fifo");
	mesh_service_subscribe(s, "rt-topic", "{\"k\": [\"yes\"]}",
	                       MESH_FILTER_SCOPE_ATTRIBUTES, 0);
	mesh_service_on(s, "test.count", NULL, on_count, NULL);
	mesh_service_on(s, "test.flaky", NULL, on_flaky, NULL);
	mesh_service_on(s, "test.reject", NULL, on_reject, NULL);
	mesh_service_on(s, "test.boom", NULL, on_boom, NULL);
	mesh_service_on(s, "test.fifo", NULL, on_fifo, NULL);
	mesh_service_on(s, "test.mark", NULL, on_mark, NULL);
	return s;
}

static void
start(struct running *r)
{
	struct mesh_conn_opts o;

	memset(r, 0, sizeof(*r));
	mesh_conn_opts_init(&o);
	o.servers = broker.url;
	mesh_conn_open(&o, &r->c);
	r->s = declare();
	running_start(r);
}

static long long
stop(struct running *r)
{
	long long t0 = test_now_ms();

	running_stop(r);
	mesh_service_free(r->s);
	mesh_conn_close(r->c);
	return test_now_ms() - t0;
}

/* ---- helpers ------------------------------------------------------------ */

static void
send_to(const char *queue, const char *type, const char *body,
        struct mesh_event *reuse, const char *group)
{
	struct mesh_queue *q = NULL;
	struct mesh_event *ev = reuse;
	struct mesh_queue_entry e = {.delay_s = -1, .group_id = group};
	struct mesh_queue_sent sent;

	if (ev == NULL) {
		mesh_event_new(type, "test", &ev);
		mesh_event_set_text(ev, body, strlen(body));
	}
	e.event = ev;
	if (group != NULL) {
		e.dedup_id = mesh_event_id(ev);
	}
	if (mesh_queue_open(c, queue, &q) == MESH_OK) {
		mesh_queue_send(q, &e, &sent);
	}
	mesh_queue_close(q);
	if (reuse == NULL) {
		mesh_event_free(ev);
	}
}

/* A value of the service's state ("" when absent), read while it runs by
 * another process: LMDB forbids opening one environment twice in a
 * process (closing it would drop the process's locks). */
static void
state_of(const char *key, char *out, size_t size)
{
	int fd[2];
	pid_t pid;
	ssize_t n = 0, r;

	out[0] = '\0';
	if (pipe(fd) != 0) {
		return;
	}
	if ((pid = fork()) == 0) {
		MDB_env *env = NULL;
		MDB_txn *txn = NULL;
		MDB_dbi dbi;
		MDB_val k = {strlen(key), (void *)key}, v;
		close(fd[0]);
		if (mdb_env_create(&env) == 0 &&
		    mdb_env_set_maxdbs(env, 8) == 0 &&
		    mdb_env_open(env, state_dir, MDB_RDONLY, 0644) == 0 &&
		    mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) == 0 &&
		    mdb_dbi_open(txn, MESH_SERVICE_DB_STATE, 0, &dbi) == 0 &&
		    mdb_get(txn, dbi, &k, &v) == 0) {
			write(fd[1], v.mv_data, v.mv_size);
		}
		_exit(0);
	}
	close(fd[1]);
	while (pid > 0 && (size_t)n + 1 < size &&
	       (r = read(fd[0], out + n, size - 1 - (size_t)n)) > 0) {
		n += r;
	}
	out[n] = '\0';
	close(fd[0]);
	if (pid > 0) {
		waitpid(pid, NULL, 0);
	}
}

static bool
wait_state(const char *key, const char *want, long long ms)
{
	char got[256];

	for (long long end = test_now_ms() + ms; test_now_ms() < end;) {
		state_of(key, got, sizeof(got));
		if (strcmp(got, want) == 0) {
			return true;
		}
		usleep(50000);
	}
	state_of(key, got, sizeof(got));
	tap_diag("state %s: got '%s', want '%s'", key, got, want);
	return false;
}

static json_t *
stats(void)
{
	natsMsg *reply = NULL;
	json_t *j = NULL;

	if (natsConnection_RequestString(&reply, mesh_conn_nats(c),
	                                 "mesh.service.rt.stats", "",
	                                 2000) == NATS_OK) {
		j = json_loadb(natsMsg_GetData(reply),
		               (size_t)natsMsg_GetDataLength(reply), 0, NULL);
	}
	natsMsg_Destroy(reply);
	return j;
}

static long long
stat_of(json_t *j, const char *name)
{
	return json_integer_value(json_object_get(j, name));
}

/* ---- the tests ---------------------------------------------------------- */

/* The partitioned service's: events of type test.nokey have no key. */
static size_t
key_of(const struct mesh_event *ev, const char **key, void *arg)
{
	(void)arg;
	if (strcmp(mesh_event_type(ev), "test.nokey") == 0) {
		return 0;
	}
	*key = mesh_event_id(ev);
	return strlen(*key);
}

static atomic_int any_handled;

static mesh_handler_result
on_any(struct mesh_ctx *ctx, const struct mesh_event *ev,
       const ProtobufCMessage *msg, void *arg)
{
	(void)ctx;
	(void)ev;
	(void)msg;
	(void)arg;
	atomic_fetch_add(&any_handled, 1);
	return MESH_HANDLER_OK;
}

static bool
wait_count(atomic_int *n, int want, long long ms)
{
	for (long long end = test_now_ms() + ms; test_now_ms() < end;) {
		if (atomic_load(n) >= want) {
			return true;
		}
		usleep(50 * 1000);
	}
	return atomic_load(n) >= want;
}

/* Take up to want dead letters from rt-dlq within ms, their reasons into
 * why[]; how many came. */
static int
dlq_take(int want, char why[][512], long long ms)
{
	struct mesh_queue *dlq = NULL;
	int found = 0;

	mesh_queue_open(c, "rt-dlq", &dlq);
	for (long long end = test_now_ms() + ms;
	     found < want && test_now_ms() < end;) {
		struct mesh_queue_msg *m = NULL;
		size_t n = 0;
		mesh_queue_receive(dlq, 10, 1, -1, &m, &n);
		for (size_t i = 0; i < n; i++) {
			if (found < want) {
				snprintf(why[found], 512, "%s",
				         m[i].dlq_reason);
			}
			found++;
			mesh_queue_delete_message(dlq, m[i].receipt);
		}
		mesh_queue_msgs_free(m, n);
	}
	mesh_queue_close(dlq);
	return found;
}

int
main(void)
{
	struct mesh_conn_opts o;
	struct mesh_queue_attrs qa;
	struct mesh_topic_attrs ta;
	struct mesh_sub_attrs sa;
	struct mesh_subscriber *observer = NULL;
	struct mesh_service *bad = NULL;
	struct running r;
	struct mesh_event *twice = NULL;
	json_t *j;
	long long took;

	if (!test_broker_start(&broker, NULL) ||
	    !test_tmpdir(state_dir, sizeof(state_dir))) {
		tap_skip_all("nats-server did not start");
	}
	mesh_conn_opts_init(&o);
	o.servers = broker.url;
	mesh_conn_open(&o, &c);
	mesh_queue_attrs_init(&qa);
	mesh_queue_create(c, "rt-in", &qa);
	mesh_queue_create(c, "rt-in2", &qa);
	qa.fifo = true;
	mesh_queue_create(c, "rt-in.fifo", &qa);
	mesh_topic_attrs_init(&ta);
	mesh_topic_create(c, "rt-topic", &ta);
	mesh_topic_create(c, "rt-out", &ta);
	mesh_sub_attrs_init(&sa);
	mesh_subscriber_open(c, "rt-out", "observer", &sa, &observer);

	/* Declaring. */
	is_int(mesh_service_new("bad name", &bad), MESH_EINVAL,
	       "a bad service name is refused");
	mesh_service_new("rt-bad", &bad);
	is_int(mesh_service_subscribe(bad, "rt-topic", "{\"k\": 5}",
	                              MESH_FILTER_SCOPE_ATTRIBUTES, 0),
	       MESH_EINVAL,
	       "an invalid filter policy is refused at declaring");
	mesh_service_consume(bad, "no-such-queue");
	mesh_service_opts(bad)->state_dir = state_dir;
	{
		volatile sig_atomic_t never = 0;
		is_int(mesh_service_run(bad, c, &never), MESH_ENOTFOUND,
		       "a missing queue stops the start");
		has_str(mesh_errdetail(), "no-such-queue", "... naming it");
	}
	mesh_service_free(bad);

	start(&r);
	/* Handlers, state and the outbox. */
	for (int i = 0; i < 20; i++) {
		send_to("rt-in", "test.count", "x", NULL, NULL);
	}
	ok(wait_state("count", "20", 10000),
	   "20 events counted in the service's state");
	{
		struct mesh_delivery d[32];
		size_t n = 0, got = 0;
		bool traced = true;
		for (long long end = test_now_ms() + 5000;
		     got < 20 && test_now_ms() < end;) {
			mesh_subscriber_fetch(observer, 32, 500, d, &n, NULL);
			for (size_t i = 0; i < n; i++) {
				struct mesh_ext_value v;
				traced = traced &&
				         mesh_event_ext_get(d[i].event,
				                            "traceparent",
				                            &v) == MESH_OK &&
				         v.len == 55;
				mesh_delivery_ack(&d[i]);
				mesh_delivery_fini(&d[i]);
			}
			got += n;
		}
		is_int(got, 20, "the outbox published the 20 emitted events");
		ok(traced, "... each with a W3C traceparent");
	}
	/* The processed-id table: one event on two queues runs once. */
	mesh_event_new("test.count", "test", &twice);
	mesh_event_set_text(twice, "twice", 5);
	send_to("rt-in", NULL, NULL, twice, NULL);
	send_to("rt-in2", NULL, NULL, twice, NULL);
	ok(wait_state("count", "21", 10000),
	   "an event delivered twice is handled once");
	mesh_event_free(twice);
	/* Retries: state written by failed attempts vanishes. */
	send_to("rt-in", "test.flaky", "f", NULL, NULL);
	ok(wait_state("flaky/done", "1", 15000),
	   "a failing event succeeds on its third attempt");
	{
		char v1[32], v2[32], count[32];
		struct mesh_delivery d[8];
		size_t n = 0;
		int flaky = 0, other = 0;
		state_of("flaky/fail-1", v1, sizeof(v1));
		state_of("flaky/fail-2", v2, sizeof(v2));
		state_of("count", count, sizeof(count));
		ok(v1[0] == '\0' && v2[0] == '\0',
		   "... keys its failed attempts wrote are gone");
		is_str(count, "21",
		       "... a key they overwrote and deleted is as it was");
		for (long long end = test_now_ms() + 1500;
		     test_now_ms() < end;) {
			mesh_subscriber_fetch(observer, 8, 300, d, &n, NULL);
			for (size_t i = 0; i < n; i++) {
				const void *data;
				size_t len;
				mesh_event_data(d[i].event, &data, &len, NULL);
				if (len == 5 &&
				    memcmp(data, "flaky", 5) == 0) {
					flaky++;
				} else {
					other++;
				}
				mesh_delivery_ack(&d[i]);
				mesh_delivery_fini(&d[i]);
			}
		}
		is_int(flaky, 0,
		       "... and the events they emitted never go out");
		is_int(other, 1, "... (the one event emitted since did)");
	}
	/* Rejection and max-receive. */
	send_to("rt-in", "test.reject", "r", NULL, NULL);
	send_to("rt-in", "test.boom", "b", NULL, NULL);
	{
		char why[2][512];
		int found = dlq_take(2, why, 20000), reasons = 0;
		for (int i = 0; i < found; i++) {
			reasons += strstr(why[i], "not for us") != NULL ||
			           strstr(why[i], "(max-receive 3)") != NULL;
		}
		is_int(found, 2,
		       "a rejected and an exhausted event are in "
		       "the service's DLQ");
		is_int(reasons, 2, "... each with its reason");
	}
	/* A write the map can not hold fails its event alone. */
	send_to("rt-in", "test.mark", "a", NULL, NULL);
	send_to("rt-in", "test.mark", "big", NULL, NULL);
	send_to("rt-in", "test.mark", "b", NULL, NULL);
	ok(wait_state("mark/a", "1", 10000) && wait_state("mark/b", "1", 1000),
	   "a full map: the batch's other events are done");
	{
		char why[1][512] = {""};
		/* Three attempts with back-off: under ASan on a loaded
		 * machine this took more than 20 s once. */
		dlq_take(1, why, 60000);
		has_str(why[0], "MDB_MAP_FULL",
		        "... the one that filled it is dead-lettered, saying "
		        "why");
		has_str(why[0], "(max-receive 3)", "... after its attempts");
	}
	/* A topic source with a filter policy. */
	{
		struct mesh_topic *t = NULL;
		mesh_topic_open(c, "rt-topic", &t);
		for (int i = 0; i < 4; i++) {
			struct mesh_event *ev = NULL;
			struct mesh_topic_entry e = {0};
			struct mesh_topic_published p;
			const char *k = i % 2 ? "no" : "yes";
			mesh_event_new("test.count", "test", &ev);
			mesh_event_attr_set(ev, "k", "String", k, strlen(k));
			e.event = ev;
			mesh_topic_publish(t, &e, &p);
			mesh_event_free(ev);
		}
		mesh_topic_close(t);
		ok(wait_state("count", "23", 10000),
		   "a topic source: the 2 matching events of 4 handled");
	}
	/* FIFO: a failure holds its group's later events back. */
	for (int k = 0; k < 4; k++) {
		char body[8];
		snprintf(body, sizeof(body), "g1 %d", k);
		send_to("rt-in.fifo", "test.fifo", body, NULL, "g1");
		snprintf(body, sizeof(body), "g2 %d", k);
		send_to("rt-in.fifo", "test.fifo", body, NULL, "g2");
	}
	ok(wait_state("fifo/g1", "0,1,2,3", 15000),
	   "FIFO: a group's events in order, though one failed once");
	ok(wait_state("fifo/g2", "0,1,2,3", 5000),
	   "FIFO: another group's too");
	/* Stats. */
	j = stats();
	ok(j != NULL, "stats answer on mesh.service.rt.stats");
	ok(stat_of(j, "processed") >= 26, "... counting processed events");
	ok(stat_of(j, "duplicates") >= 1, "... and duplicates");
	ok(stat_of(j, "retried") >= 2, "... and retries");
	is_int(stat_of(j, "dead_lettered"), 3, "... and dead letters");
	ok(json_real_value(json_object_get(json_object_get(j, "handler_ms"),
	                                   "p99")) > 0,
	   "... and handler latency percentiles");
	json_decref(j);
	/* A graceful stop. */
	took = stop(&r);
	ok(took < 5000, "a graceful stop returns in %lld ms", took);
	is_int(r.err, MESH_OK, "... with no error");
	/* A restart keeps state and handles only what is new. */
	start(&r);
	send_to("rt-in", "test.count", "after", NULL, NULL);
	ok(wait_state("count", "24", 10000),
	   "after a restart the state is kept and counting goes on");
	stop(&r);

	/* Partitioned: a key function that gives no key has the event
	 * dead-lettered with the reason, the others go on; a partition count
	 * out of range is refused. */
	{
		struct mesh_service *ps = NULL;
		struct running pr = {0};
		struct mesh_conn_opts po;
		char why[1][512] = {""}, dir[PATH_MAX + 16];
		mesh_conn_opts_init(&po);
		po.servers = broker.url;
		mesh_queue_attrs_init(&qa);
		mesh_queue_create(c, "rt-pin", &qa);
		mesh_service_new("rt-part", &ps);
		is_int(mesh_service_partitions(ps, 1025, NULL, NULL),
		       MESH_EINVAL, "1025 partitions are refused");
		has_str(mesh_errdetail(), "1025", "... naming the count");
		is_int(mesh_service_partitions(ps, 4, key_of, NULL), MESH_OK,
		       "4 partitions with a key function");
		snprintf(dir, sizeof(dir), "%s/part", state_dir);
		mesh_service_opts(ps)->state_dir = dir;
		mesh_service_opts(ps)->dlq = "rt-dlq";
		mesh_service_consume(ps, "rt-pin");
		mesh_service_on(ps, NULL, NULL, on_any, NULL);
		pr.s = ps;
		mesh_conn_open(&po, &pr.c);
		running_start(&pr);
		send_to("rt-pin", "test.keyed", "k", NULL, NULL);
		send_to("rt-pin", "test.nokey", "n", NULL, NULL);
		is_int(dlq_take(1, why, 20000), 1,
		       "an event its key function gives no key for is "
		       "dead-lettered");
		has_str(why[0], "no partition key", "... with the reason");
		ok(wait_count(&any_handled, 1, 10000),
		   "... and the keyed one is handled");
		running_stop(&pr);
		is_int(pr.err, MESH_OK,
		       "the partitioned service stops cleanly");
		mesh_service_free(ps);
		mesh_conn_close(pr.c);
	}

	mesh_subscriber_close(observer);
	mesh_conn_close(c);
	test_broker_stop(&broker);
	test_rmtree(state_dir);
	mesh_shutdown();
	return tap_done();
}
