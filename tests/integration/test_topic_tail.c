/* Topic tails (mesh_topic_tail_*) against a real nats-server: a tail sees
 * every message in order and takes none from a durable subscription; on an
 * interest topic it keeps nothing once it has seen it; --since's start;
 * bytes that are not a CloudEvent; a stop from another thread; the topic
 * deleted under it; its consumer gone when it closes. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "mesh/mesh.h"

static struct test_broker broker;
static struct mesh_conn *c;

static mesh_err
publish(const char *topic, const char *body)
{
	struct mesh_topic *t = NULL;
	struct mesh_topic_published p;
	struct mesh_event *ev = NULL;
	mesh_err err = mesh_event_new("test.text", "test", &ev);

	if (err == MESH_OK) {
		err = mesh_event_set_text(ev, body, strlen(body));
	}
	if (err == MESH_OK) {
		err = mesh_topic_open(c, topic, &t);
	}
	if (err == MESH_OK) {
		struct mesh_topic_entry e = {.event = ev};
		err = mesh_topic_publish(t, &e, &p);
	}
	mesh_topic_close(t);
	mesh_event_free(ev);
	return err;
}

/* The tail's next message's body (into buf), or "" with the error. */
static mesh_err
next_body(struct mesh_topic_tail *t, int64_t wait_ms, char *buf, size_t size,
          struct mesh_topic_tailed *m)
{
	const void *d;
	size_t len;
	mesh_err err = mesh_topic_tail_next(t, wait_ms, m);

	buf[0] = '\0';
	if (err == MESH_OK) {
		mesh_event_data(m->event, &d, &len, NULL);
		snprintf(buf, size, "%.*s", (int)len, (const char *)d);
	}
	return err;
}

/* Messages the topic stores, after waiting up to 5 s for want. */
static uint64_t
stored(const char *topic, uint64_t want)
{
	struct mesh_topic_info ti = {0};

	for (int i = 0; i < 50; i++) {
		if (mesh_topic_info(c, topic, &ti) == MESH_OK &&
		    ti.messages == want) {
			break;
		}
		usleep(100 * 1000);
	}
	return ti.messages;
}

/* The topic stream's consumers, tails included. */
static int64_t
consumers(const char *stream)
{
	jsStreamInfo *si = NULL;
	int64_t n = -1;

	if (js_GetStreamInfo(&si, mesh_conn_js(c), stream, NULL, NULL) ==
	    NATS_OK) {
		n = (int64_t)si->State.Consumers;
	}
	jsStreamInfo_Destroy(si);
	return n;
}

static void
ack_all(struct mesh_delivery *d, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		mesh_delivery_ack(&d[i]);
		mesh_delivery_fini(&d[i]);
	}
}

static void
test_beside_a_subscription(void)
{
	struct mesh_topic_attrs a;
	struct mesh_sub_attrs sa;
	struct mesh_subscriber *sub = NULL;
	struct mesh_topic_tail *t = NULL;
	struct mesh_topic_tailed m;
	struct mesh_delivery d[10];
	struct mesh_topic_info ti;
	char body[64], want[64];
	size_t n = 0;
	bool in_order = true;
	int64_t before = (int64_t)time(NULL) * 1000 - 1000;

	mesh_topic_attrs_init(&a);
	mesh_sub_attrs_init(&sa);
	is_int(mesh_topic_tail_open(c, "nope", 0, &t), MESH_ENOTFOUND,
	       "a tail of an unknown topic: MESH_ENOTFOUND");
	is_int(mesh_topic_tail_open(c, "bad name", 0, &t), MESH_EINVAL,
	       "of a malformed name: MESH_EINVAL");
	ok(mesh_topic_create(c, "news", &a) == MESH_OK &&
	           mesh_subscriber_open(c, "news", "svc", &sa, &sub) ==
	                   MESH_OK,
	   "a topic with a service's (durable) subscription");
	is_int(mesh_topic_tail_open(c, "news", 0, &t), MESH_OK, "a tail");
	is_int(mesh_topic_tail_next(t, 100, &m), MESH_ETIMEDOUT,
	       "nothing published: MESH_ETIMEDOUT after the wait");
	is_int(mesh_topic_info(c, "news", &ti), MESH_OK, "topic info");
	is_int(ti.subscriptions, 1, "counts the subscription, not the tail");
	for (int i = 1; i <= 5; i++) {
		snprintf(body, sizeof(body), "m%d", i);
		publish("news", body);
	}
	for (int i = 1; i <= 5; i++) {
		snprintf(want, sizeof(want), "m%d", i);
		if (next_body(t, 2000, body, sizeof(body), &m) != MESH_OK ||
		    strcmp(body, want) != 0 || m.sequence != (uint64_t)i ||
		    m.stored_ms < before || m.parse_error[0] != '\0') {
			in_order = false;
		}
		if (m.event != NULL) {
			mesh_topic_tailed_fini(&m);
		}
	}
	ok(in_order, "the tail sees the 5 messages in order, with their "
	             "sequences and store times");
	is_int(mesh_subscriber_fetch(sub, 10, 2000, d, &n, NULL), MESH_OK,
	       "the subscription fetches");
	is_int(n, 5, "and gets all 5: the tail took none");
	ack_all(d, n);
	is_int(stored("news", 0), 0,
	       "once the subscription has them, the topic keeps none for "
	       "the tail");

	/* Two the subscription has not taken: still stored, so a tail
	 * from --since's time sees them (and only them). */
	publish("news", "m6");
	publish("news", "m7");
	mesh_topic_tail_close(t);
	t = NULL;
	is_int(mesh_topic_tail_open(c, "news", before, &t), MESH_OK,
	       "a tail since before the first message");
	next_body(t, 2000, body, sizeof(body), &m);
	is_str(body, "m6", "starts with the first still stored");
	mesh_topic_tailed_fini(&m);
	next_body(t, 2000, body, sizeof(body), &m);
	is_str(body, "m7", "then the next");
	mesh_topic_tailed_fini(&m);
	is_int(mesh_topic_tail_next(t, 200, &m), MESH_ETIMEDOUT,
	       "and no more: the others are gone from an interest topic");
	is_int(mesh_subscriber_fetch(sub, 10, 2000, d, &n, NULL), MESH_OK,
	       "the subscription fetches again");
	is_int(n, 2, "and still gets both");
	ack_all(d, n);
	mesh_topic_tail_close(t);
	for (int i = 0; i < 50 && consumers("TP_news") != 1; i++) {
		usleep(100 * 1000);
	}
	is_int(consumers("TP_news"), 1,
	       "a closed tail's consumer is gone; the subscription's stays");
	mesh_subscriber_close(sub);
}

static void
test_raw_bytes(void)
{
	struct mesh_topic_attrs a;
	struct mesh_topic_tail *t = NULL;
	struct mesh_topic_tailed m = {0};
	natsMsg *msg = NULL;
	const void *d;
	size_t len = 0;

	mesh_topic_attrs_init(&a);
	mesh_topic_create(c, "raw", &a);
	is_int(mesh_topic_tail_open(c, "raw", 0, &t), MESH_OK, "a tail");
	natsMsg_Create(&msg, "mesh.topic.raw", NULL, "junk!", 5);
	natsMsgHeader_Set(msg, MESH_HDR_CONTENT_TYPE, MESH_EVENT_CONTENT_TYPE);
	natsConnection_PublishMsg(mesh_conn_nats(c), msg);
	natsMsg_Destroy(msg);
	is_int(mesh_topic_tail_next(t, 2000, &m), MESH_OK,
	       "bytes that claim to be a CloudEvent and are not still come");
	if (m.event != NULL) {
		mesh_event_data(m.event, &d, &len, NULL);
		is_str(mesh_event_type(m.event), MESH_WIRE_RAW_TYPE,
		       "as an event of type " MESH_WIRE_RAW_TYPE);
		ok(len == 5 && memcmp(d, "junk!", 5) == 0,
		   "holding the bytes as they are");
		ok(m.parse_error[0] != '\0', "with the parse error (%s)",
		   m.parse_error);
	}
	mesh_topic_tailed_fini(&m);
	mesh_topic_tail_close(t);
}

static void *
stop_later(void *arg)
{
	usleep(200 * 1000);
	mesh_topic_tail_stop(arg);
	return NULL;
}

static void
test_stop_and_delete(void)
{
	struct mesh_topic_attrs a;
	struct mesh_topic_tail *t = NULL;
	struct mesh_topic_tailed m;
	pthread_t th;
	long long t0;

	mesh_topic_attrs_init(&a);
	mesh_topic_create(c, "quiet", &a);
	is_int(mesh_topic_tail_open(c, "quiet", 0, &t), MESH_OK, "a tail");
	pthread_create(&th, NULL, stop_later, t);
	t0 = test_now_ms();
	is_int(mesh_topic_tail_next(t, -1, &m), MESH_ECLOSED,
	       "a wait for ever ends with MESH_ECLOSED when another thread "
	       "stops the tail");
	ok(test_now_ms() - t0 < 5000, "at once (%lld ms)", test_now_ms() - t0);
	pthread_join(th, NULL);
	is_int(mesh_topic_tail_next(t, 100, &m), MESH_ECLOSED,
	       "and every later call too");
	mesh_topic_tail_close(t);

	is_int(mesh_topic_tail_open(c, "quiet", 0, &t), MESH_OK,
	       "a tail again");
	mesh_topic_delete(c, "quiet");
	t0 = test_now_ms();
	is_int(mesh_topic_tail_next(t, 10000, &m), MESH_ENOTFOUND,
	       "the topic deleted under it: MESH_ENOTFOUND");
	ok(test_now_ms() - t0 < 5000, "at once (%lld ms)", test_now_ms() - t0);
	has_str(mesh_errdetail(), "'quiet'", "naming the topic");
	mesh_topic_tail_close(t);
	mesh_topic_tail_close(NULL);
	ok(true, "closing NULL is fine");
}

int
main(void)
{
	struct mesh_conn_opts o;

	if (!test_broker_start(&broker, NULL)) {
		tap_skip_all("nats-server did not start");
	}
	mesh_conn_opts_init(&o);
	o.servers = broker.url;
	if (mesh_conn_open(&o, &c) != MESH_OK) {
		ok(false, "connect: %s", mesh_errdetail());
		return tap_done();
	}
	test_beside_a_subscription();
	test_raw_bytes();
	test_stop_and_delete();
	mesh_conn_close(c);
	mesh_shutdown();
	test_broker_stop(&broker);
	return tap_done();
}
