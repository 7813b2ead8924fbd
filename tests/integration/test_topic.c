/* Topics, subscriptions and the router against a real nats-server: topic
 * lifecycle and publish rules, subscriptions and their bad input, fan-out
 * to queues with filter policies, raw and notification delivery, FIFO order
 * end to end, two routers at once, replay from an archive, and service
 * subscriptions with a policy changed on the fly. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "harness.h"
#include "mesh/mesh.h"

static struct test_broker broker;
static struct mesh_conn *c;

static struct mesh_event *
text_event(const char *body, const char *k)
{
	struct mesh_event *ev = NULL;

	mesh_event_new("test.text", "test", &ev);
	mesh_event_set_text(ev, body, strlen(body));
	if (k != NULL) {
		mesh_event_attr_set(ev, "k", "String", k, strlen(k));
	}
	return ev;
}

/* Publish body (attribute k when not NULL); MESH_OK or the error. */
static mesh_err
publish(const char *topic, const char *body, const char *k, const char *group,
        struct mesh_topic_published *out)
{
	struct mesh_topic *t = NULL;
	struct mesh_topic_published p;
	struct mesh_event *ev = text_event(body, k);
	struct mesh_topic_entry e = {.event = ev, .group_id = group};
	mesh_err err = mesh_topic_open(c, topic, &t);

	if (err == MESH_OK) {
		err = mesh_topic_publish(t, &e, out ? out : &p);
	}
	mesh_topic_close(t);
	mesh_event_free(ev);
	return err;
}

/* Receive and delete everything in a queue, waiting up to wait_ms for
 * `want` messages; bodies (malloc'ed) into out. Returns the count. */
static size_t
drain(const char *queue, size_t want, int64_t wait_ms, char **out, size_t cap)
{
	struct mesh_queue *q = NULL;
	long long end = test_now_ms() + wait_ms;
	size_t n = 0;

	if (mesh_queue_open(c, queue, &q) != MESH_OK) {
		return 0;
	}
	while (test_now_ms() < end) {
		struct mesh_queue_msg *m = NULL;
		size_t got = 0;
		if (mesh_queue_receive(q, 10, n >= want ? 0 : 1, -1, &m,
		                       &got) != MESH_OK) {
			break;
		}
		for (size_t i = 0; i < got; i++) {
			const void *d;
			size_t len;
			mesh_event_data(m[i].event, &d, &len, NULL);
			if (n < cap) {
				out[n] = strndup(d, len);
			}
			n++;
			mesh_queue_delete_message(q, m[i].receipt);
		}
		mesh_queue_msgs_free(m, got);
		if (got == 0 && n >= want) {
			break;
		}
	}
	mesh_queue_close(q);
	return n;
}

static void
free_all(char **s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(s[i]);
		s[i] = NULL;
	}
}

/* ---- a router in a thread ----------------------------------------------- */

struct router_thread {
	pthread_t t;
	volatile sig_atomic_t stop;
	struct mesh_conn *c;
};

static void *
router_main(void *arg)
{
	struct router_thread *r = arg;
	struct mesh_router_opts o;

	mesh_router_opts_init(&o);
	o.stats_every_s = 0;
	mesh_router_run(r->c, &o, &r->stop);
	return NULL;
}

static void
router_start(struct router_thread *r)
{
	struct mesh_conn_opts o;

	memset(r, 0, sizeof(*r));
	mesh_conn_opts_init(&o);
	o.servers = broker.url;
	if (mesh_conn_open(&o, &r->c) != MESH_OK) {
		return;
	}
	pthread_create(&r->t, NULL, router_main, r);
}

static void
router_stop(struct router_thread *r)
{
	r->stop = 1;
	pthread_join(r->t, NULL);
	mesh_conn_close(r->c);
}

/* ---- topics ------------------------------------------------------------- */

static void
test_topic_lifecycle(void)
{
	struct mesh_topic_attrs a;
	struct mesh_topic_info ti;
	char **names = NULL;
	size_t n = 0;
	bool found = false;

	mesh_topic_attrs_init(&a);
	is_int(mesh_topic_create(c, "life", &a), MESH_OK, "create topic");
	is_int(mesh_topic_create(c, "life", &a), MESH_OK,
	       "create again with the same attributes: ok");
	a.archive_days = 3;
	is_int(mesh_topic_create(c, "life", &a), MESH_EEXIST,
	       "create again with other attributes: exists");
	has_str(mesh_errdetail(), "other attributes", "... says so");
	is_int(mesh_topic_create(c, "ba d", &a), MESH_EINVAL, "bad name");
	has_str(mesh_errdetail(), "'ba d'", "... names it");
	a.archive_days = 400;
	is_int(mesh_topic_create(c, "long", &a), MESH_EINVAL,
	       "archive of 400 days refused");
	has_str(mesh_errdetail(), "400", "... naming the value");
	mesh_topic_attrs_init(&a);
	a.fifo = true;
	is_int(mesh_topic_create(c, "notfifo", &a), MESH_EINVAL,
	       "FIFO topic without .fifo refused");
	mesh_topic_attrs_init(&a);
	a.content_based_dedup = true;
	is_int(mesh_topic_create(c, "cbd", &a), MESH_EINVAL,
	       "content-based de-duplication on a standard topic refused");
	is_int(mesh_topic_info(c, "long", &ti), MESH_ENOTFOUND,
	       "nothing half-made by a refused create");
	is_int(mesh_topic_list(c, &names, &n), MESH_OK, "list");
	for (size_t i = 0; i < n; i++) {
		found = found || strcmp(names[i], "life") == 0;
	}
	ok(found, "the topic is listed");
	mesh_topic_list_free(names, n);
	is_int(mesh_topic_info(c, "life", &ti), MESH_OK, "info");
	ok(!ti.a.fifo && ti.a.archive_days == 0, "info: attributes");
	is_int(mesh_topic_delete(c, "life"), MESH_OK, "delete");
	is_int(mesh_topic_delete(c, "life"), MESH_ENOTFOUND,
	       "delete again: not found");
	is_int(publish("life", "x", NULL, NULL, NULL), MESH_ENOTFOUND,
	       "publish to a deleted topic: not found");
}

static void
test_publish_rules(void)
{
	struct mesh_topic_attrs a;
	struct mesh_topic *t = NULL;
	struct mesh_topic_published p, p2, pb[3];
	struct mesh_event *ev, *big;
	struct mesh_topic_entry e = {0}, be[3];
	char *huge = malloc(300 * 1024);

	mesh_topic_attrs_init(&a);
	mesh_topic_create(c, "rules", &a);
	a.fifo = true;
	a.content_based_dedup = true;
	mesh_topic_create(c, "rules.fifo", &a);
	mesh_topic_open(c, "rules", &t);
	ev = text_event("body", "v");
	e.event = ev;
	is_int(mesh_topic_publish(t, &e, &p), MESH_OK, "publish");
	ok(!p.duplicate && p.sequence > 0, "stored with a sequence");
	is_str(p.message_id, mesh_event_id(ev), "MessageId is the event id");
	is_int(mesh_topic_publish(t, &e, &p2), MESH_OK, "publish it again");
	ok(p2.duplicate, "the same event within 5 minutes: a duplicate");
	e.group_id = "g";
	is_int(mesh_topic_publish(t, &e, &p), MESH_EINVAL,
	       "a group id on a standard topic refused");
	e.group_id = NULL;
	memset(huge, 'x', 300 * 1024);
	big = text_event("", NULL);
	mesh_event_set_text(big, huge, 300 * 1024);
	e.event = big;
	is_int(mesh_topic_publish(t, &e, &p), MESH_ETOOBIG,
	       "a 300 KiB message refused");
	has_str(mesh_errdetail(), "262144", "... naming the limit");
	mesh_event_free(big);
	big = text_event("many", NULL);
	for (int i = 0; i < 11; i++) {
		char name[8];
		snprintf(name, sizeof(name), "a%d", i);
		mesh_event_attr_set(big, name, "String", "v", 1);
	}
	e.event = big;
	is_int(mesh_topic_publish(t, &e, &p), MESH_EINVAL,
	       "11 message attributes refused");
	has_str(mesh_errdetail(), "11 message attributes", "... saying so");
	mesh_event_free(big);
	for (int i = 0; i < 3; i++) {
		be[i] = (struct mesh_topic_entry){.id = "same", .event = ev};
	}
	is_int(mesh_topic_publish_batch(t, be, 3, pb), MESH_EINVAL,
	       "a batch with repeated ids refused");
	has_str(mesh_errdetail(), "repeated", "... saying so");
	be[1].id = "b";
	be[2].id = "c";
	be[2].group_id = "g";
	is_int(mesh_topic_publish_batch(t, be, 3, pb), MESH_OK,
	       "a batch with one bad entry: judged");
	ok(pb[0].err == MESH_OK && pb[2].err == MESH_EINVAL,
	   "... each entry on its own");
	mesh_topic_close(t);

	mesh_topic_open(c, "rules.fifo", &t);
	e = (struct mesh_topic_entry){.event = ev};
	is_int(mesh_topic_publish(t, &e, &p), MESH_EINVAL,
	       "FIFO publish without a group refused");
	has_str(mesh_errdetail(), "MessageGroupId", "... naming it");
	e.group_id = "g1";
	is_int(mesh_topic_publish(t, &e, &p), MESH_OK, "FIFO publish");
	is_int(mesh_topic_publish(t, &e, &p2), MESH_OK, "the same body again");
	ok(p2.duplicate, "content-based de-duplication drops it");
	is_str(p2.message_id, p.message_id,
	       "... and returns the original's MessageId");
	mesh_topic_close(t);
	mesh_event_free(ev);
	free(huge);
}

/* ---- subscriptions ------------------------------------------------------ */

static void
test_subscription_rules(void)
{
	struct mesh_topic_attrs a;
	struct mesh_queue_attrs qa;
	struct mesh_sub_attrs sa;
	struct mesh_subscription s, s2, *subs = NULL;
	size_t n = 0;

	mesh_topic_attrs_init(&a);
	mesh_topic_create(c, "subs", &a);
	mesh_queue_attrs_init(&qa);
	mesh_queue_create(c, "subs-q", &qa);
	qa.fifo = true;
	mesh_queue_create(c, "subs-q.fifo", &qa);
	mesh_sub_attrs_init(&sa);
	is_int(mesh_subscription_create(c, "subs", MESH_SUB_QUEUE, "subs-q",
	                                &sa, &s),
	       MESH_OK, "subscribe a queue");
	is_int(mesh_subscription_create(c, "subs", MESH_SUB_QUEUE, "subs-q",
	                                &sa, &s2),
	       MESH_OK, "subscribe it again");
	is_str(s2.id, s.id, "... the same subscription");
	mesh_subscription_fini(&s2);
	sa.raw = true;
	is_int(mesh_subscription_create(c, "subs", MESH_SUB_QUEUE, "subs-q",
	                                &sa, NULL),
	       MESH_EEXIST, "again with other attributes: exists");
	sa.raw = false;
	is_int(mesh_subscription_create(c, "nope", MESH_SUB_QUEUE, "subs-q",
	                                &sa, NULL),
	       MESH_ENOTFOUND, "unknown topic");
	has_str(mesh_errdetail(), "nope", "... named");
	is_int(mesh_subscription_create(c, "subs", MESH_SUB_QUEUE, "nowhere",
	                                &sa, NULL),
	       MESH_ENOTFOUND, "unknown queue");
	has_str(mesh_errdetail(), "nowhere", "... named");
	is_int(mesh_subscription_create(c, "subs", MESH_SUB_QUEUE,
	                                "subs-q.fifo", &sa, NULL),
	       MESH_EINVAL, "standard topic to FIFO queue refused");
	sa.filter_policy = "{\"k\": \"not a list\"";
	is_int(mesh_subscription_create(c, "subs", MESH_SUB_SERVICE, "svc",
	                                &sa, NULL),
	       MESH_EINVAL, "invalid filter policy refused");
	sa.filter_policy = NULL;
	sa.replay_from_ms = 1000;
	is_int(mesh_subscription_create(c, "subs", MESH_SUB_SERVICE, "svc",
	                                &sa, NULL),
	       MESH_EINVAL, "replay from a topic without archive refused");
	has_str(mesh_errdetail(), "archive", "... saying why");
	is_int(mesh_subscription_list(c, "subs", &subs, &n), MESH_OK, "list");
	is_int(n, 1, "nothing half-made by the refused ones");
	mesh_subscription_list_free(subs, n);
	is_int(mesh_subscription_get(c, "subs:0123", &s2), MESH_EINVAL,
	       "malformed id refused");
	is_int(mesh_subscription_delete(c, s.id), MESH_OK, "unsubscribe");
	is_int(mesh_subscription_get(c, s.id, &s2), MESH_ENOTFOUND, "gone");
	is_int(mesh_subscription_delete(c, s.id), MESH_ENOTFOUND,
	       "unsubscribe again: not found");
	mesh_subscription_fini(&s);
}

/* ---- forwarding --------------------------------------------------------- */

static int
count(char **bodies, size_t n, const char *prefix)
{
	int k = 0;

	for (size_t i = 0; i < n; i++) {
		k += bodies[i] &&
		     strncmp(bodies[i], prefix, strlen(prefix)) == 0;
	}
	return k;
}

static void
test_fan_out(void)
{
	struct mesh_topic_attrs a;
	struct mesh_queue_attrs qa;
	struct mesh_sub_attrs sa;
	struct router_thread r;
	char *got[64] = {0};
	size_t n;
	json_t *j;

	mesh_topic_attrs_init(&a);
	mesh_topic_create(c, "fan", &a);
	mesh_queue_attrs_init(&qa);
	mesh_queue_create(c, "fan-all", &qa);
	mesh_queue_create(c, "fan-red", &qa);
	mesh_queue_create(c, "fan-blue", &qa);
	mesh_sub_attrs_init(&sa);
	sa.raw = true;
	mesh_subscription_create(c, "fan", MESH_SUB_QUEUE, "fan-all", &sa,
	                         NULL);
	sa.filter_policy = "{\"k\": [\"red\"]}";
	mesh_subscription_create(c, "fan", MESH_SUB_QUEUE, "fan-red", &sa,
	                         NULL);
	sa.raw = false;
	sa.filter_policy = "{\"k\": [\"blue\"]}";
	mesh_subscription_create(c, "fan", MESH_SUB_QUEUE, "fan-blue", &sa,
	                         NULL);
	router_start(&r);
	for (int i = 0; i < 6; i++) {
		char body[16];
		snprintf(body, sizeof(body), "m%d", i);
		publish("fan", body, i % 2 ? "red" : "blue", NULL, NULL);
	}
	publish("fan", "none", NULL, NULL, NULL);
	n = drain("fan-all", 7, 10000, got, 64);
	is_int(n, 7, "the unfiltered queue gets every message");
	free_all(got, n < 64 ? n : 64);
	n = drain("fan-red", 3, 10000, got, 64);
	is_int(n, 3, "the red queue gets the 3 red ones");
	is_int(count(got, n, "m"), 3, "... as published (raw)");
	free_all(got, n);
	n = drain("fan-blue", 3, 10000, got, 64);
	is_int(n, 3, "the blue queue gets the 3 blue ones");
	j = n > 0 ? json_loads(got[0], 0, NULL) : NULL;
	is_str(json_string_value(json_object_get(j, "Type")), "Notification",
	       "raw off: the body is the SNS notification");
	is_str(json_string_value(json_object_get(j, "TopicArn")), "fan",
	       "... naming the topic");
	has_str(json_string_value(json_object_get(j, "Message")), "m",
	        "... holding the message");
	is_str(json_string_value(json_object_get(
	               json_object_get(json_object_get(j, "MessageAttributes"),
	                               "k"),
	               "Value")),
	       "blue", "... and its attributes");
	json_decref(j);
	free_all(got, n);
	router_stop(&r);
}

static void
test_fifo_order(void)
{
	struct mesh_topic_attrs a;
	struct mesh_queue_attrs qa;
	struct mesh_sub_attrs sa;
	struct router_thread r;
	struct mesh_topic *t = NULL;
	struct mesh_queue *q = NULL;
	int next[4] = {0}, bad = 0, seen = 0;

	mesh_topic_attrs_init(&a);
	a.fifo = true;
	a.content_based_dedup = true;
	mesh_topic_create(c, "order.fifo", &a);
	mesh_queue_attrs_init(&qa);
	qa.fifo = true;
	mesh_queue_create(c, "order-q.fifo", &qa);
	mesh_sub_attrs_init(&sa);
	sa.raw = true;
	mesh_subscription_create(c, "order.fifo", MESH_SUB_QUEUE,
	                         "order-q.fifo", &sa, NULL);
	router_start(&r);
	mesh_topic_open(c, "order.fifo", &t);
	for (int i = 0; i < 200; i++) {
		char body[32], group[8];
		struct mesh_event *ev;
		struct mesh_topic_entry e = {0};
		struct mesh_topic_published p;
		snprintf(group, sizeof(group), "g%d", i % 4);
		snprintf(body, sizeof(body), "%d %d", i % 4, i / 4);
		ev = text_event(body, NULL);
		e.event = ev;
		e.group_id = group;
		mesh_topic_publish(t, &e, &p);
		mesh_event_free(ev);
	}
	mesh_topic_close(t);
	mesh_queue_open(c, "order-q.fifo", &q);
	for (long long end = test_now_ms() + 15000;
	     seen < 200 && test_now_ms() < end;) {
		struct mesh_queue_msg *m = NULL;
		size_t got = 0;
		mesh_queue_receive(q, 10, 1, -1, &m, &got);
		for (size_t i = 0; i < got; i++) {
			const void *d;
			size_t len;
			int g, k;
			mesh_event_data(m[i].event, &d, &len, NULL);
			if (sscanf(d, "%d %d", &g, &k) != 2 || g < 0 ||
			    g > 3 || next[g] != k) {
				bad++;
			} else {
				next[g]++;
			}
			seen++;
			mesh_queue_delete_message(q, m[i].receipt);
		}
		mesh_queue_msgs_free(m, got);
	}
	mesh_queue_close(q);
	is_int(seen, 200, "FIFO topic to FIFO queue: all 200 arrive");
	is_int(bad, 0, "... each group in order");
	router_stop(&r);
}

static void
test_two_routers(void)
{
	struct mesh_topic_attrs a;
	struct mesh_queue_attrs qa;
	struct mesh_sub_attrs sa;
	struct router_thread r1, r2;
	struct mesh_topic *t = NULL;
	static char *got[3000];
	static bool seen[2000];
	size_t n;
	int dups = 0, missing = 0;

	mesh_topic_attrs_init(&a);
	mesh_topic_create(c, "two", &a);
	mesh_queue_attrs_init(&qa);
	mesh_queue_create(c, "two-q", &qa);
	mesh_sub_attrs_init(&sa);
	sa.raw = true;
	mesh_subscription_create(c, "two", MESH_SUB_QUEUE, "two-q", &sa, NULL);
	router_start(&r1);
	router_start(&r2);
	mesh_topic_open(c, "two", &t);
	for (int i = 0; i < 2000; i += 10) {
		struct mesh_topic_entry e[10];
		struct mesh_topic_published p[10];
		struct mesh_event *ev[10];
		char ids[10][24];
		for (int k = 0; k < 10; k++) {
			char body[16];
			snprintf(body, sizeof(body), "%d", i + k);
			snprintf(ids[k], sizeof(ids[k]), "e%d", k);
			ev[k] = text_event(body, NULL);
			e[k] = (struct mesh_topic_entry){.id = ids[k],
			                                 .event = ev[k]};
		}
		mesh_topic_publish_batch(t, e, 10, p);
		for (int k = 0; k < 10; k++) {
			mesh_event_free(ev[k]);
		}
	}
	mesh_topic_close(t);
	n = drain("two-q", 2000, 20000, got, 3000);
	for (size_t i = 0; i < n && i < 3000; i++) {
		int k = atoi(got[i]);
		if (k < 0 || k >= 2000 || seen[k]) {
			dups++;
		} else {
			seen[k] = true;
		}
	}
	for (int k = 0; k < 2000; k++) {
		missing += !seen[k];
	}
	is_int(n, 2000, "two routers at once: 2000 forwarded");
	is_int(dups, 0, "... none twice");
	is_int(missing, 0, "... none missing");
	free_all(got, n < 3000 ? n : 3000);
	router_stop(&r1);
	router_stop(&r2);
}

static void
test_replay(void)
{
	struct mesh_topic_attrs a;
	struct mesh_queue_attrs qa;
	struct mesh_sub_attrs sa;
	struct router_thread r;
	char *got[32] = {0};
	size_t n;
	long long t0;

	mesh_topic_attrs_init(&a);
	a.archive_days = 1;
	mesh_topic_create(c, "arch", &a);
	mesh_queue_attrs_init(&qa);
	mesh_queue_create(c, "arch-now", &qa);
	mesh_queue_create(c, "arch-replay", &qa);
	publish("arch", "old0", NULL, NULL, NULL);
	usleep(20000);
	t0 = (long long)time(NULL) * 1000;
	while ((long long)time(NULL) * 1000 == t0) {
		usleep(10000); /* past a second boundary */
	}
	t0 = (long long)time(NULL) * 1000;
	publish("arch", "old1", NULL, NULL, NULL);
	publish("arch", "old2", NULL, NULL, NULL);
	mesh_sub_attrs_init(&sa);
	sa.raw = true;
	mesh_subscription_create(c, "arch", MESH_SUB_QUEUE, "arch-now", &sa,
	                         NULL);
	sa.replay_from_ms = t0;
	is_int(mesh_subscription_create(c, "arch", MESH_SUB_QUEUE,
	                                "arch-replay", &sa, NULL),
	       MESH_OK, "subscribe with replay from an archive");
	router_start(&r);
	publish("arch", "new", NULL, NULL, NULL);
	n = drain("arch-now", 1, 8000, got, 32);
	is_int(n, 1, "a new subscription starts at now");
	is_str(n > 0 ? got[0] : NULL, "new", "... with the next message");
	free_all(got, n);
	n = drain("arch-replay", 3, 8000, got, 32);
	is_int(n, 3, "replay: history from the time, then live");
	is_str(n > 2 ? got[0] : NULL, "old1", "... the first archived");
	is_str(n > 2 ? got[1] : NULL, "old2", "... the second");
	is_str(n > 2 ? got[2] : NULL, "new", "... then the live one");
	free_all(got, n < 32 ? n : 32);
	router_stop(&r);
}

static void
test_service_subscriber(void)
{
	struct mesh_topic_attrs a;
	struct mesh_sub_attrs sa;
	struct mesh_subscriber *s = NULL;
	struct mesh_delivery d[8];
	size_t n = 0, filtered = 0;
	struct mesh_subscription rec;

	mesh_topic_attrs_init(&a);
	mesh_topic_create(c, "svc", &a);
	mesh_sub_attrs_init(&sa);
	sa.filter_policy = "{\"k\": [\"a\"]}";
	is_int(mesh_subscriber_open(c, "svc", "billing", &sa, &s), MESH_OK,
	       "a service subscribes itself");
	publish("svc", "one", "a", NULL, NULL);
	publish("svc", "two", "b", NULL, NULL);
	is_int(mesh_subscriber_fetch(s, 8, 2000, d, &n, &filtered), MESH_OK,
	       "fetch");
	is_int(n, 1, "the matching message is handed out");
	is_int(filtered, 1, "the other is filtered (and acknowledged)");
	for (size_t i = 0; i < n; i++) {
		mesh_delivery_ack(&d[i]);
		mesh_delivery_fini(&d[i]);
	}
	mesh_subscription_get(c, mesh_subscriber_subscription(s)->id, &rec);
	sa.filter_policy = "{\"k\": [\"b\"]}";
	is_int(mesh_subscription_set_attrs(c, rec.id, &sa), MESH_OK,
	       "change the policy");
	mesh_subscription_fini(&rec);
	usleep(100000);
	publish("svc", "three", "a", NULL, NULL);
	publish("svc", "four", "b", NULL, NULL);
	mesh_subscriber_fetch(s, 8, 2000, d, &n, &filtered);
	is_int(n, 1, "the changed policy applies at once");
	if (n == 1) {
		const void *data;
		size_t len;
		mesh_event_data(d[0].event, &data, &len, NULL);
		ok(len == 4 && memcmp(data, "four", 4) == 0,
		   "... to the next message");
		ok(d[0].sequence > 0 && d[0].deliveries == 1,
		   "... with its sequence and delivery count");
		mesh_delivery_nak(&d[0], 0);
		mesh_delivery_fini(&d[0]);
	}
	mesh_subscriber_fetch(s, 8, 2000, d, &n, &filtered);
	is_int(n, 1, "a nak'ed message comes again");
	if (n == 1) {
		is_int(d[0].deliveries, 2, "... as a second delivery");
		mesh_delivery_ack(&d[0]);
		mesh_delivery_fini(&d[0]);
	}
	mesh_subscriber_close(s);
	s = NULL;
	sa.filter_policy = NULL;
	is_int(mesh_subscriber_open(c, "svc", "billing", &sa, &s), MESH_OK,
	       "a service starting again with another declaration");
	is_int(mesh_subscriber_subscription(s)->filter_policy == NULL, 1,
	       "... gets its declared policy");
	mesh_subscriber_close(s);
}

/* Two instances of a service starting at once on a new topic: both make
 * its subscription; one stores the record first. The other must keep the
 * consumer they both made (it once took it back, and the topic's events
 * were lost to the service until it came back). */
struct racer {
	struct mesh_conn *conn;
	pthread_barrier_t *go;
	const char *topic;
	mesh_err err;
};

static void *
race_create(void *arg)
{
	struct racer *r = arg;
	struct mesh_sub_attrs sa;

	mesh_sub_attrs_init(&sa);
	pthread_barrier_wait(r->go);
	r->err = mesh_subscription_create(r->conn, r->topic, MESH_SUB_SERVICE,
	                                  "racing", &sa, NULL);
	return NULL;
}

static void
test_concurrent_create(void)
{
	struct mesh_conn_opts o;
	struct mesh_conn *other = NULL;
	struct mesh_topic_attrs a;
	int failed = 0, lost = 0;
	const int rounds = 30;

	mesh_conn_opts_init(&o);
	o.servers = broker.url;
	if (!ok(mesh_conn_open(&o, &other) == MESH_OK,
	        "a second connection")) {
		return;
	}
	mesh_topic_attrs_init(&a);
	for (int i = 0; i < rounds; i++) {
		char topic[32], id[MESH_SUBSCRIPTION_ID_MAX + 1], consumer[24];
		pthread_barrier_t go;
		struct racer r[2] = {{c, &go, topic, MESH_OK},
		                     {other, &go, topic, MESH_OK}};
		pthread_t t[2];
		struct mesh_subscription got;

		snprintf(topic, sizeof(topic), "race-%d", i);
		if (mesh_topic_create(c, topic, &a) != MESH_OK) {
			failed++;
			continue;
		}
		pthread_barrier_init(&go, NULL, 2);
		for (int k = 0; k < 2; k++) {
			pthread_create(&t[k], NULL, race_create, &r[k]);
		}
		for (int k = 0; k < 2; k++) {
			pthread_join(t[k], NULL);
		}
		pthread_barrier_destroy(&go);
		failed += (r[0].err != MESH_OK) + (r[1].err != MESH_OK);
		memset(&got, 0, sizeof(got));
		mesh_subscription_names(topic, MESH_SUB_SERVICE, "racing", id,
		                        consumer);
		if (mesh_subscription_get(c, id, &got) != MESH_OK) {
			lost++;
		}
		mesh_subscription_fini(&got);
		mesh_topic_delete(c, topic);
	}
	is_int(failed, 0,
	       "%d rounds of two instances subscribing at once: "
	       "each succeeds",
	       rounds);
	is_int(lost, 0, "and the subscription keeps its consumer");
	mesh_conn_close(other);
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
		test_broker_stop(&broker);
		tap_skip_all("cannot connect");
	}
	test_topic_lifecycle();
	test_publish_rules();
	test_subscription_rules();
	test_fan_out();
	test_fifo_order();
	test_two_routers();
	test_replay();
	test_service_subscriber();
	test_concurrent_create();
	mesh_conn_close(c);
	test_broker_stop(&broker);
	mesh_shutdown();
	return tap_done();
}
