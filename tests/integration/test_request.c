/* Request handlers (mesh_service_on_request) against a real nats-server
 * and a real LMDB environment, the test playing the gateway: reads from
 * state (writes refused), commands that commit and emit through the
 * outbox, idempotent retries answered from the recorded reply (the
 * handler not run again), 422 for a key reused with another body, 404,
 * 400 naming the field, 500 without the reason, no responders, reads
 * answered while a long batch runs, the routes in --describe, a
 * partitioned service refused; then two instances as processes sharing
 * requests (the queue group) and one killed with SIGKILL mid-command, its
 * retry run once. The test binary is also the service's program ("serve
 * URL STATE") for the second half. */
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "example.pb-c.h"
#include "harness.h"
#include "request_call.h"
#include "service_thread.h"
#include "mesh/service.h"

static struct test_broker broker;
static struct mesh_conn *c;
static atomic_int put_calls;     /* POST /items/{id} handler runs */
static atomic_bool slow_running; /* the long batch's handler runs */
static const char *busy_dir;     /* RQ_BUSY_DIR: who runs a command */

/* ---- the service under test --------------------------------------------- */

static void
count_key(const char *id, char *key, size_t size)
{
	snprintf(key, size, "count/%s", id);
}

static long
count_of(struct mesh_ctx *ctx, const char *id)
{
	char key[300], num[24];
	const void *v;
	size_t len;

	count_key(id, key, sizeof(key));
	if (mesh_state_get(ctx, key, strlen(key), &v, &len) != MESH_OK ||
	    len >= sizeof(num)) {
		return 0;
	}
	memcpy(num, v, len);
	num[len] = '\0';
	return strtol(num, NULL, 10);
}

/* GET /items/{id}: the item's name and count from state, 404 when none;
 * tries a write, which a read must refuse. */
static mesh_handler_result
get_item(struct mesh_ctx *ctx, const struct mesh_request *req,
         struct mesh_reply *rep, void *arg)
{
	Evmesh__Example__Greeted out = EVMESH__EXAMPLE__GREETED__INIT;
	const char *id = mesh_request_param(req, "id");
	char key[300], name[256];
	const void *v;
	size_t len;
	mesh_err err;

	(void)arg;
	snprintf(key, sizeof(key), "item/%s", id);
	err = mesh_state_put(ctx, "x", 1, "1", 1);
	mesh_reply_header(rep, "Put-Refused", mesh_errname(err));
	if (mesh_state_get(ctx, key, strlen(key), &v, &len) != MESH_OK) {
		mesh_reply_error(rep, 404, "no item '%s'", id);
		return MESH_HANDLER_OK;
	}
	snprintf(name, sizeof(name), "%.*s", (int)len, (const char *)v);
	out.name = name;
	out.count = count_of(ctx, id);
	mesh_reply_message(rep, 200, &out.base);
	return MESH_HANDLER_OK;
}

/* POST /items/{id} (a Greet): counts, names the item, emits Greeted;
 * "sleep=MS" in the query sleeps inside the transaction (announced in
 * RQ_BUSY_DIR). */
static mesh_handler_result
put_item(struct mesh_ctx *ctx, const struct mesh_request *req,
         struct mesh_reply *rep, void *arg)
{
	const Evmesh__Example__Greet *in =
	        (const Evmesh__Example__Greet *)mesh_request_message(req);
	Evmesh__Example__Greeted out = EVMESH__EXAMPLE__GREETED__INIT;
	const char *id = mesh_request_param(req, "id");
	const char *q = mesh_request_query(req);
	char key[300], num[24], calls[24];
	long n;

	(void)arg;
	snprintf(calls, sizeof(calls), "%d",
	         atomic_fetch_add(&put_calls, 1) + 1);
	if (strncmp(q, "sleep=", 6) == 0) {
		if (busy_dir != NULL) {
			char path[600];
			FILE *f;
			snprintf(path, sizeof(path), "%s/busy.%d", busy_dir,
			         (int)getpid());
			if ((f = fopen(path, "w")) != NULL) {
				fclose(f);
			}
		}
		usleep((useconds_t)atol(q + 6) * 1000);
	}
	n = count_of(ctx, id) + 1;
	count_key(id, key, sizeof(key));
	snprintf(num, sizeof(num), "%ld", n);
	if (mesh_state_put(ctx, key, strlen(key), num, strlen(num)) !=
	    MESH_OK) {
		return mesh_retry(ctx, 0);
	}
	snprintf(key, sizeof(key), "item/%s", id);
	out.name = in->name;
	out.count = n;
	if (mesh_state_put(ctx, key, strlen(key), in->name,
	                   strlen(in->name)) != MESH_OK ||
	    mesh_emit_message(ctx, "topic:rq-out", &out.base, NULL) !=
	            MESH_OK) {
		return mesh_retry(ctx, 0);
	}
	mesh_reply_header(rep, "Call", calls);
	mesh_reply_message(rep, 201, &out.base);
	return MESH_HANDLER_OK;
}

/* POST /fail: writes, emits, then fails with a reason not for clients. */
static mesh_handler_result
fail_item(struct mesh_ctx *ctx, const struct mesh_request *req,
          struct mesh_reply *rep, void *arg)
{
	Evmesh__Example__Greeted out = EVMESH__EXAMPLE__GREETED__INIT;

	(void)req;
	(void)arg;
	out.name = "failed";
	mesh_state_put(ctx, "item/failed", 11, "oops", 4);
	mesh_emit_message(ctx, "topic:rq-out", &out.base, NULL);
	mesh_reply_json(rep, 200, "{\"ok\":true}");
	return mesh_reject(ctx, "secret-detail-xyz: the database said no");
}

static mesh_handler_result
whoami(struct mesh_ctx *ctx, const struct mesh_request *req,
       struct mesh_reply *rep, void *arg)
{
	char pid[24];

	(void)ctx;
	(void)req;
	(void)arg;
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	mesh_reply_header(rep, "Pid", pid);
	return MESH_HANDLER_OK;
}

/* An event that takes its payload's milliseconds. */
static mesh_handler_result
on_slow(struct mesh_ctx *ctx, const struct mesh_event *ev,
        const ProtobufCMessage *msg, void *arg)
{
	const void *data;
	size_t len;
	char ms[24];

	(void)msg;
	(void)arg;
	mesh_event_data(ev, &data, &len, NULL);
	snprintf(ms, sizeof(ms), "%.*s", (int)len, (const char *)data);
	atomic_store(&slow_running, true);
	usleep((useconds_t)atol(ms) * 1000);
	atomic_store(&slow_running, false);
	mesh_state_put(ctx, "slow/done", 9, "1", 1);
	return MESH_HANDLER_OK;
}

static struct mesh_service *
declare(const char *state)
{
	struct mesh_service *s = NULL;

	mesh_service_new("rq", &s);
	mesh_service_opts(s)->state_dir = state;
	mesh_service_opts(s)->map_size = 16u << 20;
	mesh_service_consume(s, "rq-in");
	mesh_service_emits(s, "topic:rq-out");
	mesh_service_on(s, "test.slow", NULL, on_slow, NULL);
	mesh_service_on_request(s, "GET /items/{id}", NULL, get_item, NULL);
	mesh_service_on_request(s, "POST /items/{id}",
	                        &evmesh__example__greet__descriptor, put_item,
	                        NULL);
	mesh_service_on_request(s, "POST /fail", NULL, fail_item, NULL);
	mesh_service_on_request(s, "GET /whoami", NULL, whoami, NULL);
	return s;
}

/* ---- the caller: what the gateway sends --------------------------------- */

static int
call(const char *route, const char *path, const char *id, const char *query,
     const char *idem, const char *body, struct test_reply *r)
{
	return test_request_call(mesh_conn_nats(c), "rq", route, path, id,
	                         query, idem, body, 5000, r);
}

/* Greeted events of that name on the observer's subscription, waiting
 * up to ms for more than want to turn up (none should). */
static int
emitted(struct mesh_subscriber *obs, const char *name, int want, long long ms)
{
	struct mesh_delivery d[32];
	int got = 0;
	size_t n;

	for (long long end = test_now_ms() + ms; test_now_ms() < end;) {
		n = 0;
		mesh_subscriber_fetch(obs, 32, 200, d, &n, NULL);
		for (size_t i = 0; i < n; i++) {
			ProtobufCMessage *msg = NULL;
			if (mesh_event_unpack_message(
			            d[i].event,
			            &evmesh__example__greeted__descriptor,
			            NULL, &msg) == MESH_OK) {
				got += strcmp(((Evmesh__Example__Greeted *)msg)
				                      ->name,
				              name) == 0;
				protobuf_c_message_free_unpacked(msg, NULL);
			}
			mesh_delivery_ack(&d[i]);
			mesh_delivery_fini(&d[i]);
		}
		if (got > want) {
			break;
		}
	}
	return got;
}

/* ---- the service as a process ------------------------------------------- */

static int
serve_main(const char *url, const char *state)
{
	struct mesh_service *s = declare(state);
	char *args[] = {"rq",      "--server",    (char *)url,
	                "--state", (char *)state, NULL};
	int rc = mesh_service_main(s, 5, args);

	mesh_service_free(s);
	return rc;
}

static pid_t
spawn(const char *state)
{
	pid_t pid = fork();

	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* die with the test */
		execl("/proc/self/exe", "test_request", "serve", broker.url,
		      state, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* Until an instance answers (any of them), up to 15 s. */
static bool
wait_ready(void)
{
	struct test_reply r;

	for (long long end = test_now_ms() + 15000; test_now_ms() < end;) {
		if (test_request_call(mesh_conn_nats(c), "rq", "GET /whoami",
		                      "/whoami", NULL, NULL, NULL, NULL, 1000,
		                      &r) == 200) {
			return true;
		}
		usleep(100000);
	}
	return false;
}

/* The pid that announced a command in dir, or 0. */
static pid_t
busy_pid(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	pid_t pid = 0;

	while (d != NULL && (e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, "busy.", 5) == 0) {
			pid = (pid_t)atoi(e->d_name + 5);
		}
	}
	if (d != NULL) {
		closedir(d);
	}
	return pid;
}

struct bg_call {
	struct test_reply r;
	pthread_t t;
};

static void *
bg_kill_call(void *arg)
{
	struct bg_call *b = arg;

	call("POST /items/{id}", "/items/k9", "k9", "sleep=3000", "kill-key",
	     "{\"name\":\"nine\"}", &b->r);
	return NULL;
}

static void *
bg_command(void *arg)
{
	struct bg_call *b = arg;

	call("POST /items/{id}", "/items/during", "during", NULL, "during-1",
	     "{\"name\":\"during\"}", &b->r);
	return NULL;
}

/* ---- the test ----------------------------------------------------------- */

static void
declaring(void)
{
	struct mesh_service *s = NULL;
	char *json = NULL;
	json_t *j, *routes;

	s = declare("/nonexistent");
	is_int(mesh_service_on_request(s, "GET orders", NULL, whoami, NULL),
	       MESH_EINVAL, "a route without a path is refused");
	is_int(mesh_service_on_request(s, "FETCH /x", NULL, whoami, NULL),
	       MESH_EINVAL, "an unknown method is refused");
	has_str(mesh_errdetail(), "FETCH /x", "... naming the route");
	is_int(mesh_service_on_request(s, "GET /a/{id}/{id}", NULL, whoami,
	                               NULL),
	       MESH_EINVAL, "a parameter twice is refused");
	is_int(mesh_service_on_request(s, "GET /a/x{id}", NULL, whoami, NULL),
	       MESH_EINVAL, "a parameter inside a segment is refused");
	is_int(mesh_service_on_request(s, "GET /items/{id}", NULL, whoami,
	                               NULL),
	       MESH_EINVAL, "a route declared twice is refused");
	mesh_service_describe(s, &json);
	j = json ? json_loads(json, 0, NULL) : NULL;
	routes = json_object_get(j, "routes");
	is_int(json_array_size(routes), 4, "--describe lists the 4 routes");
	is_str(json_string_value(
	               json_object_get(json_array_get(routes, 0), "route")),
	       "GET /items/{id}", "... each by its key");
	is_str(json_string_value(
	               json_object_get(json_array_get(routes, 0), "kind")),
	       "read", "... GET is a read");
	is_str(json_string_value(
	               json_object_get(json_array_get(routes, 1), "kind")),
	       "command", "... POST a command");
	is_str(json_string_value(
	               json_object_get(json_array_get(routes, 1), "type")),
	       "evmesh.example.Greet", "... with its body's type");
	json_decref(j);
	free(json);
	/* Partitioned in code: refused either way round, saying why. */
	is_int(mesh_service_partitions(s, 2, NULL, NULL), MESH_EINVAL,
	       "partitioning a service with routes is refused");
	has_str(mesh_errdetail(), "serves no requests", "... saying why");
	mesh_service_free(s);
	mesh_service_new("rq-parts", &s);
	mesh_service_partitions(s, 2, NULL, NULL);
	is_int(mesh_service_on_request(s, "GET /more", NULL, whoami, NULL),
	       MESH_EINVAL, "a route on a partitioned service is refused");
	has_str(mesh_errdetail(), "GET /more", "... naming the route");
	mesh_service_free(s);
}

static void
in_process(struct mesh_subscriber *obs, const char *state)
{
	struct running run = {0};
	struct mesh_conn_opts o;
	struct test_reply r, r2;
	struct bg_call bg;
	long long t0, worst = 0;

	mesh_conn_opts_init(&o);
	o.servers = broker.url;
	mesh_conn_open(&o, &run.c);
	run.s = declare(state);
	running_start(&run);
	ok(wait_ready(), "the service answers requests");

	/* Reads. */
	is_int(call("GET /items/{id}", "/items/a", "a", NULL, NULL, NULL, &r),
	       404, "a read of an absent item: the handler's 404");
	has_str(r.body, "no item 'a'", "... with its message");
	has_str(r.body, "\"requestId\":\"rid-", "... and the request id");
	ok(strncmp(r.request_id, "rid-", 4) == 0, "Mesh-Request-Id echoed");

	/* A command: committed, emitted, recorded. */
	is_int(call("POST /items/{id}", "/items/a", "a", NULL, "key-1",
	            "{\"name\":\"ada\"}", &r),
	       201, "a command answers its status");
	is_str(r.body, "{\"name\":\"ada\",\"count\":\"1\"}",
	       "... and its message as proto3 JSON");
	is_str(r.ctype, "application/json", "... as application/json");
	is_str(test_reply_header(&r, "Call"), "1", "... the handler ran once");
	is_int(emitted(obs, "ada", 1, 3000), 1,
	       "its event went out through the outbox");
	is_int(call("GET /items/{id}", "/items/a", "a", NULL, NULL, NULL, &r),
	       200, "a read finds what the command committed");
	is_str(r.body, "{\"name\":\"ada\",\"count\":\"1\"}", "... its state");
	is_str(test_reply_header(&r, "Put-Refused"), "MESH_EINVAL",
	       "a read's write is refused");

	/* The retry. */
	is_int(call("POST /items/{id}", "/items/a", "a", NULL, "key-1",
	            "{\"name\":\"ada\"}", &r),
	       201, "a retry with the same Idempotency-Key: the same status");
	is_str(r.body, "{\"name\":\"ada\",\"count\":\"1\"}",
	       "... the recorded body");
	is_str(test_reply_header(&r, "Call"), "1", "... the recorded headers");
	is_str(r.replayed, "true", "... marked Idempotent-Replayed");
	is_int(atomic_load(&put_calls), 1,
	       "... and the handler not run again");
	is_int(emitted(obs, "ada", 0, 1000), 0,
	       "... nor its event sent again");
	is_int(call("POST /items/{id}", "/items/a", "a", NULL, "key-1",
	            "{\"name\":\"bob\"}", &r),
	       422, "the same key with another body: 422");
	has_str(r.body, "key-1", "... naming the key");
	is_int(atomic_load(&put_calls), 1, "... not run");
	is_int(call("POST /items/{id}", "/items/a", "a", NULL, "key-2",
	            "{\"name\":\"ada\"}", &r),
	       201, "a new key runs again");
	is_str(r.body, "{\"name\":\"ada\",\"count\":\"2\"}", "... counting 2");
	/* Without Idempotency-Key, Mesh-Request-Id is the key: each call
	 * here has a new one. */
	is_int(call("POST /items/{id}", "/items/a", "a", NULL, NULL,
	            "{\"name\":\"ada\"}", &r),
	       201, "a command without a key runs");
	is_str(test_reply_header(&r, "Call"), "3", "... once more");
	emitted(obs, "ada", 2, 1000);

	/* What the runtime answers itself. */
	is_int(call("DELETE /items/{id}", "/items/a", "a", NULL, NULL, NULL,
	            &r),
	       404, "a route the service lacks: 404");
	has_str(r.body, "DELETE /items/{id}", "... naming it");
	is_int(call("POST /items/{id}", "/items/b", "b", NULL, NULL,
	            "{\"name\": 5}", &r),
	       400, "a body of the wrong type: 400");
	has_str(r.body, "name", "... naming the field");
	has_str(r.body, "evmesh.example.Greet", "... and the type");
	is_int(call("POST /items/{id}", "/items/b", "b", NULL, NULL,
	            "{\"nope\": 1}", &r),
	       400, "an unknown field: 400");
	has_str(r.body, "nope", "... naming it");
	is_int(call("POST /items/{id}", "/items/b", "b", NULL, NULL, "{bad",
	            &r),
	       400, "a body that is not JSON: 400");
	is_int(call("POST /items/{id}", "/items/b", NULL, NULL, NULL,
	            "{\"name\":\"x\"}", &r),
	       400, "a missing path parameter: 400");
	has_str(r.body, "Mesh-Param-id", "... naming its header");
	is_int(atomic_load(&put_calls), 3, "none of those ran the handler");
	is_int(call("POST /fail", "/fail", NULL, NULL, "fail-1", NULL, &r),
	       500, "a failing handler: 500");
	ok(strstr(r.body, "secret-detail") == NULL &&
	           strstr(r.body, "ok") == NULL,
	   "... its reason and partial reply not sent");
	has_str(r.body, r.request_id,
	        "... the request id to find it in the log");
	is_int(call("GET /items/{id}", "/items/failed", "failed", NULL, NULL,
	            NULL, &r),
	       404, "... its write undone");
	is_int(emitted(obs, "failed", 0, 1000), 0, "... its event not sent");
	is_int(call("POST /fail", "/fail", NULL, NULL, "fail-1", NULL, &r),
	       500, "... and a retry runs again (a failure is not recorded)");
	{
		natsMsg *reply = NULL;
		is_int(natsConnection_RequestString(
		               &reply, mesh_conn_nats(c),
		               "mesh.service.nobody.request", "", 2000),
		       NATS_NO_RESPONDERS,
		       "a service without instances: no responders at once");
		natsMsg_Destroy(reply);
	}

	/* A long batch: reads go on, a command waits for its commit. */
	{
		struct mesh_queue *q = NULL;
		struct mesh_event *ev = NULL;
		struct mesh_queue_entry e = {.delay_s = -1};
		struct mesh_queue_sent sent;
		mesh_event_new("test.slow", "test", &ev);
		mesh_event_set_text(ev, "3000", 4);
		e.event = ev;
		mesh_queue_open(c, "rq-in", &q);
		mesh_queue_send(q, &e, &sent);
		mesh_queue_close(q);
		mesh_event_free(ev);
	}
	for (long long end = test_now_ms() + 5000;
	     !atomic_load(&slow_running) && test_now_ms() < end;) {
		usleep(10000);
	}
	ok(atomic_load(&slow_running), "a 3-second batch runs");
	pthread_create(&bg.t, NULL, bg_command, &bg);
	for (int i = 0; i < 10; i++) {
		t0 = test_now_ms();
		call("GET /items/{id}", "/items/a", "a", NULL, NULL, NULL,
		     &r2);
		worst = test_now_ms() - t0 > worst ? test_now_ms() - t0
		                                   : worst;
		if (r2.status != 200) {
			break;
		}
	}
	is_int(r2.status, 200, "reads are answered during the batch");
	ok(atomic_load(&slow_running), "... while it still runs");
	ok(worst < 1000, "... each within a second (slowest %lld ms)", worst);
	pthread_join(bg.t, NULL);
	is_int(bg.r.status, 201,
	       "a command during the batch is answered after its commit");
	{
		natsMsg *reply = NULL;
		json_t *j = NULL;
		if (natsConnection_RequestString(&reply, mesh_conn_nats(c),
		                                 "mesh.service.rq.stats", "",
		                                 2000) == NATS_OK) {
			j = json_loadb(natsMsg_GetData(reply),
			               (size_t)natsMsg_GetDataLength(reply), 0,
			               NULL);
		}
		natsMsg_Destroy(reply);
		ok(json_integer_value(json_object_get(j, "requests")) >= 25,
		   "stats count the requests (%lld)",
		   (long long)json_integer_value(
		           json_object_get(j, "requests")));
		is_int(json_integer_value(
		               json_object_get(j, "requests_replayed")),
		       1, "... the one replayed");
		is_int(json_integer_value(json_object_get(j, "requests_5xx")),
		       2, "... and the two 500s");
		ok(json_object_get(json_object_get(j, "request_ms"), "p99") !=
		           NULL,
		   "... and their latency");
		json_decref(j);
	}
	is_int(running_stop(&run), MESH_OK, "the service stops cleanly");
	mesh_service_free(run.s);
	mesh_conn_close(run.c);
}

static void
processes(const char *state, const char *busy)
{
	struct test_reply r;
	struct bg_call bg;
	pid_t pid[3], victim;
	int seen[2] = {0, 0}, status;

	setenv("RQ_BUSY_DIR", busy, 1);
	pid[0] = spawn(state);
	pid[1] = spawn(state);
	ok(wait_ready(), "two instances as processes answer");
	usleep(500000); /* both subscribed */
	for (int i = 0; i < 60; i++) {
		if (call("GET /whoami", "/whoami", NULL, NULL, NULL, NULL,
		         &r) == 200) {
			seen[0] +=
			        atoi(test_reply_header(&r, "Pid")) == pid[0];
			seen[1] +=
			        atoi(test_reply_header(&r, "Pid")) == pid[1];
		}
	}
	ok(seen[0] > 0 && seen[1] > 0 && seen[0] + seen[1] == 60,
	   "requests spread over both (%d and %d of 60)", seen[0], seen[1]);

	/* SIGKILL the instance in the middle of a command. */
	pthread_create(&bg.t, NULL, bg_kill_call, &bg);
	for (long long end = test_now_ms() + 5000;
	     busy_pid(busy) == 0 && test_now_ms() < end;) {
		usleep(20000);
	}
	victim = busy_pid(busy);
	ok(victim == pid[0] || victim == pid[1],
	   "a command runs in an instance");
	kill(victim, SIGKILL);
	waitpid(victim, &status, 0);
	pthread_join(bg.t, NULL);
	ok(bg.r.status != 201, "the killed command got no reply (%d)",
	   bg.r.status);
	is_int(call("POST /items/{id}", "/items/k9", "k9", NULL, "kill-key",
	            "{\"name\":\"nine\"}", &r),
	       201, "its retry, same key, on the other instance: 201");
	is_str(r.body, "{\"name\":\"nine\",\"count\":\"1\"}",
	       "... a fresh run that counts once");
	is_int(call("POST /items/{id}", "/items/k9", "k9", NULL, "kill-key",
	            "{\"name\":\"nine\"}", &r),
	       201, "... and again: the recorded reply");
	is_str(r.replayed, "true", "... replayed");
	is_str(r.body, "{\"name\":\"nine\",\"count\":\"1\"}", "... the same");
	pid[2] = spawn(state);
	usleep(1000000);
	for (int i = 0; i < 6; i++) {
		call("GET /items/{id}", "/items/k9", "k9", NULL, NULL, NULL,
		     &r);
		if (strcmp(r.body, "{\"name\":\"nine\",\"count\":\"1\"}") !=
		    0) {
			break;
		}
	}
	is_str(r.body, "{\"name\":\"nine\",\"count\":\"1\"}",
	       "the state, read by every instance, has the effect once");
	for (int i = 0; i < 3; i++) {
		if (pid[i] == victim) {
			continue;
		}
		kill(pid[i], SIGTERM);
		waitpid(pid[i], &status, 0);
		ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		   "instance %d stops with 0 on SIGTERM", i);
	}
}

int
main(int argc, char **argv)
{
	struct mesh_conn_opts o;
	struct mesh_queue_attrs qa;
	struct mesh_topic_attrs ta;
	struct mesh_sub_attrs sa;
	struct mesh_subscriber *obs = NULL;
	char state1[PATH_MAX], state2[PATH_MAX], busy[PATH_MAX];

	if (argc == 4 && strcmp(argv[1], "serve") == 0) {
		busy_dir = getenv("RQ_BUSY_DIR");
		return serve_main(argv[2], argv[3]);
	}
	if (!test_broker_start(&broker, NULL)) {
		tap_skip_all("nats-server did not start");
	}
	if (!test_tmpdir(state1, sizeof(state1)) ||
	    !test_tmpdir(state2, sizeof(state2)) ||
	    !test_tmpdir(busy, sizeof(busy))) {
		ok(false, "temporary folders");
		return tap_done();
	}
	mesh_conn_opts_init(&o);
	o.servers = broker.url;
	mesh_conn_open(&o, &c);
	mesh_queue_attrs_init(&qa);
	mesh_queue_create(c, "rq-in", &qa);
	mesh_topic_attrs_init(&ta);
	mesh_topic_create(c, "rq-out", &ta);
	mesh_sub_attrs_init(&sa);
	mesh_subscriber_open(c, "rq-out", "observer", &sa, &obs);

	declaring();
	in_process(obs, state1);
	processes(state2, busy);

	is_int(emitted(obs, "nine", 1, 3000), 1,
	       "the killed command's event went out once, from its retry");
	mesh_subscriber_close(obs);
	mesh_conn_close(c);
	test_rmtree(state1);
	test_rmtree(state2);
	test_rmtree(busy);
	test_broker_stop(&broker);
	return tap_done();
}
