/* Poison messages against a real nats-server: bytes that are not a
 * readable CloudEvent, put on a queue's or a topic's subject by a foreign
 * producer, never fail the messages beside them. Queues return them as
 * bytes with their parse error (receive, peek, dead-letter queue,
 * redrive); the service runtime dead-letters them at once with the reason,
 * counts them and logs one line each, and handles the good events around
 * them; nothing is retried in a loop. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cloudevents.pb-c.h"
#include "example.pb-c.h"
#include "harness.h"
#include "service_thread.h"
#include "mesh/router.h"
#include "mesh/service.h"

static struct test_broker broker;
static struct mesh_conn *c;

static const char garbage[] = "\xff\x00 this is not protobuf \x01\x02";

/* ---- poison, made the way a foreign producer would ---------------------- */

/* A CloudEvent (protobuf) with the given type (NULL: none) and payload
 * (type_url NULL: none), serialized into buf; its length. */
static size_t
cloudevent(const char *id, const char *type, const char *type_url,
           const void *data, size_t len, uint8_t *buf, size_t size)
{
	Io__Cloudevents__V1__CloudEvent ce;
	Google__Protobuf__Any any;
	Io__Cloudevents__V1__CloudEvent__AttributesEntry k, *attrs[] = {&k};
	Io__Cloudevents__V1__CloudEvent__CloudEventAttributeValue yes;

	io__cloudevents__v1__cloud_event__init(&ce);
	google__protobuf__any__init(&any);

	/* k=yes: what the topic source's policy lets through. */
	io__cloudevents__v1__cloud_event__attributes_entry__init(&k);
	io__cloudevents__v1__cloud_event__cloud_event_attribute_value__init(
	        &yes);
	yes.attr_case =
	        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_STRING;
	yes.ce_string = "yes";
	k.key = "k";
	k.value = &yes;
	ce.n_attributes = 1;
	ce.attributes = attrs;
	ce.id = (char *)id;
	ce.source = "nats.js";
	ce.spec_version = "1.0";
	ce.type = (char *)(type ? type : "");
	if (data != NULL) {
		any.type_url = (char *)(type_url ? type_url : "");
		any.value.data = (uint8_t *)data;
		any.value.len = len;
		ce.data_case =
		        IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_PROTO_DATA;
		ce.proto_data = &any;
	}
	if (io__cloudevents__v1__cloud_event__get_packed_size(&ce) > size) {
		return 0;
	}
	return io__cloudevents__v1__cloud_event__pack(&ce, buf);
}

/* Publish bytes to a subject through JetStream, with Content-Type (NULL:
 * none) and a Nats-Msg-Id; the stream sequence. */
static uint64_t
put_raw(const char *subject, const char *ctype, const char *id,
        const void *data, size_t len)
{
	natsMsg *m = NULL;
	jsPubAck *ack = NULL;
	uint64_t seq = 0;

	natsMsg_Create(&m, subject, NULL, data, (int)len);
	if (ctype != NULL) {
		natsMsgHeader_Set(m, "Content-Type", ctype);
	}
	natsMsgHeader_Set(m, "Nats-Msg-Id", id);
	if (js_PublishMsg(&ack, mesh_conn_js(c), m, NULL, NULL) == NATS_OK) {
		seq = ack->Sequence;
	}
	jsPubAck_Destroy(ack);
	natsMsg_Destroy(m);
	return seq;
}

/* The five kinds of poison, on a subject; 3 unreadable envelopes, then 2
 * envelopes whose payload is not the message their type names. */
static void
put_poison(const char *subject, const char *tag)
{
	uint8_t buf[256], greet[64];
	char id[64];
	size_t n, glen;
	Evmesh__Example__Greet g = EVMESH__EXAMPLE__GREET__INIT;

	g.name = "ann";
	glen = evmesh__example__greet__pack(&g, greet);
	snprintf(id, sizeof(id), "%s-garbage", tag);
	put_raw(subject, MESH_EVENT_CONTENT_TYPE, id, garbage,
	        sizeof(garbage) - 1);
	snprintf(id, sizeof(id), "%s-notype", tag);
	n = cloudevent(id, NULL, NULL, NULL, 0, buf, sizeof(buf));
	put_raw(subject, MESH_EVENT_CONTENT_TYPE, id, buf, n);
	snprintf(id, sizeof(id), "%s-nourl", tag);
	n = cloudevent(id, "test.greet", NULL, greet, glen, buf, sizeof(buf));
	put_raw(subject, MESH_EVENT_CONTENT_TYPE, id, buf, n);
	snprintf(id, sizeof(id), "%s-unknownurl", tag);
	n = cloudevent(id, "test.greet", "type.googleapis.com/no.such.Type",
	               greet, glen, buf, sizeof(buf));
	put_raw(subject, MESH_EVENT_CONTENT_TYPE, id, buf, n);
	snprintf(id, sizeof(id), "%s-undecodable", tag);
	n = cloudevent(id, "test.greet",
	               "type.googleapis.com/evmesh.example.Greet",
	               "\xff\xff\xff\xff", 4, buf, sizeof(buf));
	put_raw(subject, MESH_EVENT_CONTENT_TYPE, id, buf, n);
}

static void
send_text(const char *queue, const char *type, const char *body)
{
	struct mesh_queue *q = NULL;
	struct mesh_event *ev = NULL;
	struct mesh_queue_entry e = {.delay_s = -1};
	struct mesh_queue_sent sent;

	mesh_event_new(type, "test", &ev);
	mesh_event_set_text(ev, body, strlen(body));
	e.event = ev;
	if (mesh_queue_open(c, queue, &q) == MESH_OK) {
		mesh_queue_send(q, &e, &sent);
	}
	mesh_queue_close(q);
	mesh_event_free(ev);
}

static void
publish_text(const char *topic, const char *type, const char *body)
{
	struct mesh_topic *t = NULL;
	struct mesh_event *ev = NULL;
	struct mesh_topic_entry e = {0};
	struct mesh_topic_published p;

	mesh_event_new(type, "test", &ev);
	mesh_event_set_text(ev, body, strlen(body));
	e.event = ev;
	if (mesh_topic_open(c, topic, &t) == MESH_OK) {
		mesh_topic_publish(t, &e, &p);
	}
	mesh_topic_close(t);
	mesh_event_free(ev);
}

static bool
is_garbage(const struct mesh_queue_msg *m)
{
	const void *data;
	size_t len;

	mesh_event_data(m->event, &data, &len, NULL);
	return len == sizeof(garbage) - 1 && memcmp(data, garbage, len) == 0;
}

/* ---- queues ------------------------------------------------------------- */

static void
queues(void)
{
	struct mesh_queue_attrs a;
	struct mesh_queue *q = NULL, *dlq = NULL;
	struct mesh_queue_msg *m = NULL;
	struct mesh_queue_redrive rd = {0};
	size_t n = 0, moved = 0;
	uint64_t poison_seq;
	int poison = -1;

	mesh_queue_attrs_init(&a);
	mesh_queue_create(c, "pq-dlq", &a);
	a.visibility_timeout_s = 2;
	snprintf(a.dlq, sizeof(a.dlq), "pq-dlq");
	a.max_receive_count = 1;
	mesh_queue_create(c, "pq", &a);
	mesh_queue_open(c, "pq", &q);
	mesh_queue_open(c, "pq-dlq", &dlq);

	send_text("pq", "test.good", "good 1");
	poison_seq = put_raw("mesh.queue.pq", MESH_EVENT_CONTENT_TYPE,
	                     "poison-1", garbage, sizeof(garbage) - 1);
	send_text("pq", "test.good", "good 2");

	is_int(mesh_queue_peek(q, 10, &m, &n), MESH_OK,
	       "peek: good, poison, good succeeds");
	is_int(n, 3, "... showing all three");
	ok(n == 3 && m[1].parse_error[0] != '\0' && is_garbage(&m[1]),
	   "... the poison one as its bytes, with its parse error");
	mesh_queue_msgs_free(m, n);

	is_int(mesh_queue_receive(q, 10, 1, -1, &m, &n), MESH_OK,
	       "receive of 10: good, poison, good succeeds");
	is_int(n, 3, "... returning all three");
	for (size_t i = 0; i < n; i++) {
		if (m[i].parse_error[0] != '\0') {
			poison = (int)i;
		}
	}
	ok(poison >= 0 && is_garbage(&m[poison]) &&
	           strcmp(mesh_event_type(m[poison].event),
	                  MESH_WIRE_RAW_TYPE) == 0,
	   "... the poison one marked, type %s, bytes intact",
	   MESH_WIRE_RAW_TYPE);
	if (poison >= 0) {
		tap_diag("parse error: %s", m[poison].parse_error);
		is_str(mesh_event_id(m[poison].event), "poison-1",
		       "... its MessageId is its Nats-Msg-Id");
	}
	{
		int deleted = 0, first = 0;
		for (size_t i = 0; i < n; i++) {
			if ((int)i == poison) {
				continue;
			}
			first += m[i].receive_count == 1;
			deleted += mesh_queue_delete_message(
			                   q, m[i].receipt) == MESH_OK;
		}
		is_int(first, 2, "the good ones are on their first receive");
		is_int(deleted, 2,
		       "... and their receipts delete them (not made stale)");
	}
	mesh_queue_msgs_free(m, n);

	/* Its visibility ends; the next receive is over maxReceiveCount. */
	usleep(2500 * 1000);
	mesh_queue_receive(q, 10, 1, -1, &m, &n);
	is_int(n, 0, "the poison one over maxReceiveCount is not handed out");
	mesh_queue_msgs_free(m, n);

	is_int(mesh_queue_peek(dlq, 10, &m, &n), MESH_OK,
	       "the dead-letter queue can be peeked");
	is_int(n, 1, "... holding the poison message");
	if (n == 1) {
		ok(m[0].parse_error[0] != '\0' && is_garbage(&m[0]),
		   "... as its bytes with its parse error");
		is_str(m[0].dlq_source, "pq", "... DeadLetterQueueSourceArn");
		has_str(m[0].dlq_reason, "maxReceiveCount 1 exceeded",
		        "... DeadLetterReason");
		is_int(m[0].dlq_sequence, poison_seq,
		       "... DeadLetterSourceSequence");
		is_int(m[0].dlq_receive_count, 1,
		       "... DeadLetterReceiveCount");
	}
	mesh_queue_msgs_free(m, n);

	is_int(mesh_queue_receive(dlq, 10, 1, -1, &m, &n), MESH_OK,
	       "the dead-letter queue can be received from");
	ok(n == 1 && m[0].parse_error[0] != '\0',
	   "... the poison message, marked");
	if (n == 1) {
		is_int(mesh_queue_change_visibility(dlq, m[0].receipt, 0),
		       MESH_OK, "... and put back");
	}
	mesh_queue_msgs_free(m, n);

	is_int(mesh_queue_redrive(c, "pq-dlq", &rd, &moved), MESH_OK,
	       "the dead-letter queue can be redriven");
	is_int(moved, 1, "... moving the poison message");
	mesh_queue_peek(q, 10, &m, &n);
	ok(n == 1 && is_garbage(&m[0]) && m[0].parse_error[0] != '\0' &&
	           m[0].dlq_source[0] == '\0',
	   "... back to its queue, bytes intact, dead-letter marks gone");
	mesh_queue_msgs_free(m, n);

	put_raw("mesh.queue.pq-dlq", MESH_EVENT_CONTENT_TYPE, "poison-2",
	        garbage, sizeof(garbage) - 1);
	is_int(mesh_queue_purge(c, "pq-dlq"), MESH_OK,
	       "a dead-letter queue holding poison can be purged");
	mesh_queue_peek(dlq, 10, &m, &n);
	is_int(n, 0, "... and is empty");
	mesh_queue_msgs_free(m, n);

	mesh_queue_close(dlq);
	mesh_queue_close(q);

	/* The longest queue name makes the longest ack subjects: their
	 * receipts must fit (a receipt too long for its buffer once made
	 * libsodium abort the process). */
	{
		char name[MESH_QUEUE_NAME_MAX + 1];
		struct mesh_queue *lq = NULL;
		memset(name, 'q', MESH_QUEUE_NAME_MAX);
		name[MESH_QUEUE_NAME_MAX] = '\0';
		mesh_queue_attrs_init(&a);
		mesh_queue_create(c, name, &a);
		mesh_queue_open(c, name, &lq);
		for (int i = 0; i < 3; i++) {
			struct mesh_event *ev = NULL;
			struct mesh_queue_entry e = {.delay_s = -1};
			struct mesh_queue_sent sent;
			mesh_event_new("test.long", "test", &ev);
			mesh_event_set_text(ev, "x", 1);
			e.event = ev;
			mesh_queue_send(lq, &e, &sent);
			mesh_event_free(ev);
		}
		is_int(mesh_queue_receive(lq, 10, 1, 60, &m, &n), MESH_OK,
		       "an 80-character queue name: receive with a receipt");
		ok(n == 3 && mesh_queue_change_visibility(lq, m[0].receipt,
		                                          0) == MESH_OK,
		   "... whose receipts are whole (change visibility)");
		ok(n == 3 && mesh_queue_delete_message(lq, m[1].receipt) ==
		                     MESH_OK,
		   "... (delete)");
		mesh_queue_msgs_free(m, n);
		mesh_queue_close(lq);
	}
}

/* ---- the router ----------------------------------------------------------
 */

struct routing {
	volatile sig_atomic_t stop;
	pthread_t t;
	struct mesh_conn *c;
};

static void *
route_main(void *arg)
{
	struct routing *r = arg;
	struct mesh_router_opts o;

	mesh_router_opts_init(&o);
	mesh_router_run(r->c, &o, &r->stop);
	return NULL;
}

/* Receive from a queue until want messages came (or ms passed). */
static size_t
receive_all(const char *queue, struct mesh_queue_msg **all, size_t want,
            long long ms)
{
	struct mesh_queue *q = NULL;
	size_t k = 0;

	*all = calloc(want, sizeof(**all));
	mesh_queue_open(c, queue, &q);
	for (long long end = test_now_ms() + ms;
	     q != NULL && k < want && test_now_ms() < end;) {
		struct mesh_queue_msg *m = NULL;
		size_t n = 0;
		mesh_queue_receive(q, 10, 1, -1, &m, &n);
		for (size_t i = 0; i < n; i++) {
			mesh_queue_delete_message(q, m[i].receipt);
			if (k < want) {
				(*all)[k++] = m[i];
				memset(&m[i], 0, sizeof(m[i]));
			}
		}
		mesh_queue_msgs_free(m, n);
	}
	mesh_queue_close(q);
	return k;
}

static void
router(void)
{
	struct mesh_topic_attrs ta;
	struct mesh_queue_attrs qa;
	struct mesh_sub_attrs sa;
	struct mesh_conn_opts o;
	struct routing r = {0};
	struct mesh_queue_msg *m = NULL;
	size_t n, marked = 0, bytes = 0;

	mesh_topic_attrs_init(&ta);
	mesh_topic_create(c, "pr-topic", &ta);
	mesh_queue_attrs_init(&qa);
	mesh_queue_create(c, "pr-raw", &qa);
	mesh_queue_create(c, "pr-json", &qa);
	mesh_sub_attrs_init(&sa);
	sa.raw = true;
	mesh_subscription_create(c, "pr-topic", MESH_SUB_QUEUE, "pr-raw", &sa,
	                         NULL);
	sa.raw = false;
	mesh_subscription_create(c, "pr-topic", MESH_SUB_QUEUE, "pr-json", &sa,
	                         NULL);
	mesh_conn_opts_init(&o);
	o.servers = broker.url;
	mesh_conn_open(&o, &r.c);
	pthread_create(&r.t, NULL, route_main, &r);

	publish_text("pr-topic", "test.good", "good 1");
	put_raw("mesh.topic.pr-topic", MESH_EVENT_CONTENT_TYPE, "pr-garbage",
	        garbage, sizeof(garbage) - 1);
	publish_text("pr-topic", "test.good", "good 2");

	n = receive_all("pr-raw", &m, 3, 10000);
	is_int(n, 3, "router, raw delivery: good, poison, good all forwarded");
	for (size_t i = 0; i < n; i++) {
		marked += m[i].parse_error[0] != '\0';
		bytes += is_garbage(&m[i]) &&
		         strcmp(mesh_event_id(m[i].event), "pr-garbage") == 0;
	}
	is_int(marked, 1, "... the poison one marked at the queue");
	is_int(bytes, 1, "... its bytes and id intact");
	mesh_queue_msgs_free(m, n);

	n = receive_all("pr-json", &m, 3, 10000);
	is_int(n, 3, "router, notifications: all three forwarded");
	bytes = 0;
	for (size_t i = 0; i < n; i++) {
		const void *data;
		size_t len;
		json_t *j;
		mesh_event_data(m[i].event, &data, &len, NULL);
		j = json_loadb(data, len, 0, NULL);
		bytes += j != NULL &&
		         json_string_value(json_object_get(j, "Message")) &&
		         strcmp(json_string_value(
		                        json_object_get(j, "MessageId")),
		                "pr-garbage") == 0;
		json_decref(j);
	}
	is_int(bytes, 1,
	       "... the poison one as a notification of its bytes (base64)");
	mesh_queue_msgs_free(m, n);

	r.stop = 1;
	pthread_join(r.t, NULL);
	mesh_conn_close(r.c);
}

/* ---- the service runtime ------------------------------------------------ */

static mesh_handler_result
on_good(struct mesh_ctx *ctx, const struct mesh_event *ev,
        const ProtobufCMessage *msg, void *arg)
{
	const void *v;
	size_t len;
	char buf[32];
	long count = 0;

	(void)ev;
	(void)msg;
	(void)arg;
	if (mesh_state_get(ctx, "good", 4, &v, &len) == MESH_OK) {
		count = strtol(v, NULL, 10);
	}
	snprintf(buf, sizeof(buf), "%ld", count + 1);
	mesh_state_put(ctx, "good", 4, buf, strlen(buf) + 1);
	return MESH_HANDLER_OK;
}

static mesh_handler_result
on_greet(struct mesh_ctx *ctx, const struct mesh_event *ev,
         const ProtobufCMessage *msg, void *arg)
{
	(void)ctx;
	(void)ev;
	(void)msg;
	(void)arg;
	return MESH_HANDLER_OK;
}

/* A handler's reason may hold anything: it must not break the header. */
static mesh_handler_result
on_reject(struct mesh_ctx *ctx, const struct mesh_event *ev,
          const ProtobufCMessage *msg, void *arg)
{
	(void)ev;
	(void)msg;
	(void)arg;
	return mesh_reject(ctx, "bad\r\nInjected: yes");
}

static json_t *
stats(void)
{
	natsMsg *reply = NULL;
	json_t *j = NULL;

	if (natsConnection_RequestString(&reply, mesh_conn_nats(c),
	                                 "mesh.service.pz.stats", "",
	                                 2000) == NATS_OK) {
		j = json_loadb(natsMsg_GetData(reply),
		               (size_t)natsMsg_GetDataLength(reply), 0, NULL);
	}
	natsMsg_Destroy(reply);
	return j;
}

static long long
stat_of(const char *name)
{
	json_t *j = stats();
	long long v = json_integer_value(json_object_get(j, name));

	json_decref(j);
	return v;
}

/* Lines of the file holding `what`. */
static int
lines_with(const char *path, const char *what)
{
	FILE *f = fopen(path, "r");
	char line[4096];
	int n = 0;

	while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
		n += strstr(line, what) != NULL;
	}
	if (f != NULL) {
		fclose(f);
	}
	return n;
}

struct letter {
	char id[128], source[128], reason[256], service[96];
	uint64_t receives;
	bool garbage;
};

/* Receive every dead letter of pz-dlq that comes within ms (stopping
 * early at want). */
static int
take_letters(struct letter *out, int want, long long ms)
{
	struct mesh_queue *q = NULL;
	int k = 0;

	mesh_queue_open(c, "pz-dlq", &q);
	for (long long end = test_now_ms() + ms;
	     q != NULL && k < want && test_now_ms() < end;) {
		struct mesh_queue_msg *m = NULL;
		size_t n = 0;
		mesh_queue_receive(q, 10, 1, -1, &m, &n);
		for (size_t i = 0; i < n && k < want; i++, k++) {
			snprintf(out[k].id, sizeof(out[k].id), "%s",
			         mesh_event_id(m[i].event));
			snprintf(out[k].source, sizeof(out[k].source), "%s",
			         m[i].dlq_source);
			snprintf(out[k].reason, sizeof(out[k].reason), "%s",
			         m[i].dlq_reason);
			snprintf(out[k].service, sizeof(out[k].service), "%s",
			         m[i].dlq_service);
			out[k].receives = m[i].dlq_receive_count;
			out[k].garbage = is_garbage(&m[i]);
			mesh_queue_delete_message(q, m[i].receipt);
		}
		mesh_queue_msgs_free(m, n);
	}
	mesh_queue_close(q);
	return k;
}

static const struct letter *
letter_of(const struct letter *l, int n, const char *id)
{
	for (int i = 0; i < n; i++) {
		if (strcmp(l[i].id, id) == 0) {
			return &l[i];
		}
	}
	return NULL;
}

static void
runtime(const char *state_dir, const char *log_path)
{
	struct mesh_queue_attrs qa;
	struct mesh_topic_attrs ta;
	struct mesh_conn_opts o;
	struct mesh_service_opts *so;
	struct running r;
	struct letter l[16];
	int n, saved_err, fd;
	char good[32] = "";

	mesh_queue_attrs_init(&qa);
	mesh_queue_create(c, "pz-in", &qa);
	mesh_topic_attrs_init(&ta);
	mesh_topic_create(c, "pz-topic", &ta);

	memset(&r, 0, sizeof(r));
	mesh_conn_opts_init(&o);
	o.servers = broker.url;
	mesh_conn_open(&o, &r.c);
	mesh_service_new("pz", &r.s);
	so = mesh_service_opts(r.s);
	so->state_dir = state_dir;
	so->max_receive = 5;
	so->retry_base_ms = 50;
	so->retry_max_ms = 100;
	mesh_service_consume(r.s, "pz-in");
	/* A policy cannot judge bytes it cannot read: poison still comes. */
	mesh_service_subscribe(r.s, "pz-topic", "{\"k\": [\"yes\"]}",
	                       MESH_FILTER_SCOPE_ATTRIBUTES, 0);
	mesh_service_on(r.s, "test.good", NULL, on_good, NULL);
	mesh_service_on(r.s, "test.reject", NULL, on_reject, NULL);
	mesh_service_on(r.s, "test.greet", &evmesh__example__greet__descriptor,
	                on_greet, NULL);

	/* The runtime logs to standard error: into a file, to count. */
	fflush(stderr);
	saved_err = dup(2);
	fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	dup2(fd, 2);
	close(fd);
	running_start(&r);

	send_text("pz-in", "test.good", "before");
	put_poison("mesh.queue.pz-in", "q");
	put_raw("mesh.queue.pz-in", NULL, "q-plain", "hello", 5);
	put_raw("mesh.queue.pz-in", "text/plain", "q-plain2", "hello", 5);
	send_text("pz-in", "test.good", "after");
	send_text("pz-in", "test.reject", "reject me");
	/* Published once the subscription exists (the service made it). */
	for (long long end = test_now_ms() + 5000;
	     stat_of("received") < 1 && test_now_ms() < end;) {
		usleep(50000);
	}
	{
		struct mesh_topic *t = NULL;
		struct mesh_event *ev = NULL;
		struct mesh_topic_entry e = {0};
		struct mesh_topic_published p;
		mesh_event_new("test.good", "test", &ev);
		mesh_event_set_text(ev, "topic", 5);
		mesh_event_attr_set(ev, "k", "String", "yes", 3);
		e.event = ev;
		mesh_topic_open(c, "pz-topic", &t);
		mesh_topic_publish(t, &e, &p);
		put_poison("mesh.topic.pz-topic", "t");
		/* No attributes: the policy filters it out. */
		put_raw("mesh.topic.pz-topic", NULL, "t-plain", "hello", 5);
		mesh_topic_close(t);
		mesh_event_free(ev);
		publish_text("pz-topic", "test.good", "no k: filtered");
	}

	n = take_letters(l, 11, 15000);
	for (int i = 0; i < n; i++) {
		tap_diag("dead letter %s from %s: %s", l[i].id, l[i].source,
		         l[i].reason);
	}
	is_int(n, 11,
	       "a queue and a topic source: the 5 poison messages of each, "
	       "and a rejected event, are dead-lettered");
	{
		int first = 0, reasons = 0, service = 0;
		for (int i = 0; i < n; i++) {
			first += l[i].receives == 1;
			reasons += l[i].reason[0] != '\0';
			service += strcmp(l[i].service, "pz") == 0;
		}
		is_int(first, n, "... each within one attempt");
		is_int(reasons, n, "... each with its reason");
		is_int(service, n, "... and the service that gave it up");
	}
	{
		const struct letter *g = letter_of(l, n, "q-garbage");
		const struct letter *t = letter_of(l, n, "t-garbage");
		const struct letter *nt = letter_of(l, n, "q-notype");
		const struct letter *nu = letter_of(l, n, "t-nourl");
		const struct letter *uu = letter_of(l, n, "q-unknownurl");
		const struct letter *ud = letter_of(l, n, "t-undecodable");
		const struct letter *rj = NULL;
		for (int i = 0; i < n; i++) {
			if (strncmp(l[i].reason, "bad", 3) == 0) {
				rj = &l[i];
			}
		}
		ok(rj != NULL && strcmp(rj->reason, "bad??Injected: yes") == 0,
		   "a handler's reason with CR LF arrives as one clean line "
		   "(%s)",
		   rj ? rj->reason : "missing");
		ok(g != NULL && g->garbage && strcmp(g->source, "pz-in") == 0,
		   "garbage from a queue: bytes intact, source the queue");
		if (g != NULL) {
			has_str(g->reason, "not a readable CloudEvent",
			        "... the reason says why");
		}
		ok(t != NULL && t->garbage &&
		           strcmp(t->source, "topic:pz-topic") == 0,
		   "garbage from a topic: bytes intact, source topic:NAME");
		ok(nt != NULL && strstr(nt->reason, "type") != NULL,
		   "a CloudEvent without type: its reason names the type "
		   "(%s)",
		   nt ? nt->reason : "missing");
		ok(nu != NULL && strstr(nu->reason, "not a readable") != NULL,
		   "proto_data without a type URL: unreadable (%s)",
		   nu ? nu->reason : "missing");
		ok(uu != NULL &&
		           strstr(uu->reason, "evmesh.example.Greet") != NULL,
		   "an unknown type URL: not the handler's message (%s)",
		   uu ? uu->reason : "missing");
		ok(ud != NULL &&
		           strstr(ud->reason, "evmesh.example.Greet") != NULL,
		   "a payload that does not decode: dead-lettered (%s)",
		   ud ? ud->reason : "missing");
	}
	for (long long end = test_now_ms() + 5000;
	     strcmp(good, "3") != 0 && test_now_ms() < end;) {
		json_t *j = stats();
		snprintf(good, sizeof(good), "%lld",
		         (long long)json_integer_value(
		                 json_object_get(j, "processed")));
		json_decref(j);
		usleep(100000);
	}
	is_str(good, "3", "the good events around them are processed");
	is_int(stat_of("malformed"), 6,
	       "the 6 unreadable envelopes are counted as malformed");
	is_int(stat_of("dead_lettered"), 11, "... all 11 as dead-lettered");
	is_int(stat_of("ignored"), 2,
	       "messages no handler takes are acknowledged as ignored");
	is_int(lines_with(log_path, "dead-lettered"), 11,
	       "one log line for each dead letter");
	/* Nothing comes back: no retry loop. */
	usleep(10 * 1000 * 1000);
	is_int(lines_with(log_path, "dead-lettered"), 11,
	       "... and 10 s later still 11: nothing retried in a loop");
	is_int(stat_of("received"), 16,
	       "... and nothing received again (16 messages, once each)");
	is_int(lines_with(
	               log_path,
	               "no handler takes events of type '" MESH_WIRE_RAW_TYPE
	               "'"),
	       1, "unhandled raw messages: one line per type per minute");

	running_stop(&r);
	fflush(stderr);
	dup2(saved_err, 2);
	close(saved_err);
	is_int(r.err, MESH_OK, "the service stops cleanly");
	mesh_service_free(r.s);
	mesh_conn_close(r.c);
}

int
main(void)
{
	struct mesh_conn_opts o;
	char dir[PATH_MAX], state_dir[PATH_MAX + 8], log_path[PATH_MAX + 16];

	if (!test_broker_start(&broker, NULL) ||
	    !test_tmpdir(dir, sizeof(dir))) {
		tap_skip_all("nats-server did not start");
	}
	snprintf(state_dir, sizeof(state_dir), "%s/state", dir);
	snprintf(log_path, sizeof(log_path), "%s/service.log", dir);
	mesh_conn_opts_init(&o);
	o.servers = broker.url;
	mesh_conn_open(&o, &c);

	queues();
	router();
	runtime(state_dir, log_path);

	mesh_conn_close(c);
	test_broker_stop(&broker);
	test_rmtree(dir);
	mesh_shutdown();
	return tap_done();
}
