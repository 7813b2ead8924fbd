/* Senders (mesh/sender.h) against a real nats-server: many messages in
 * flight, each reported once, in the order sent, with its MessageId or
 * its error in its place; queues and topics, FIFO included; a target that
 * is gone is an error per message, not a hang. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "mesh/mesh.h"

static struct test_broker broker;
static struct mesh_conn *c;

struct seen {
	long n, ok, in_order;
	long next;
	mesh_err errs[2048];
	char ids[2048][64];
	uint64_t seqs[2048];
	char first_error[300];
};

static void
on_sent(void *arg, void *tag, const struct mesh_sent *r)
{
	struct seen *s = arg;
	long i = (long)(intptr_t)tag;

	s->in_order += i == s->next;
	s->next = i + 1;
	if (i >= 0 && i < 2048) {
		s->errs[i] = r->err;
		snprintf(s->ids[i], sizeof(s->ids[i]), "%s", r->message_id);
		s->seqs[i] = r->sequence;
	}
	s->ok += r->err == MESH_OK;
	if (r->err != MESH_OK && s->first_error[0] == '\0') {
		snprintf(s->first_error, sizeof(s->first_error), "tag %ld: %s",
		         i, r->error);
	}
	s->n++;
}

static struct mesh_event *
text_event(const char *id, size_t size)
{
	struct mesh_event *ev = NULL;
	char *body = malloc(size + 1);

	memset(body, 'x', size);
	body[size] = '\0';
	mesh_event_new("t.sent", "test", &ev);
	mesh_event_set_id(ev, id);
	mesh_event_set_text(ev, body, size);
	free(body);
	return ev;
}

static void
queue_sends(void)
{
	struct mesh_queue_attrs a;
	struct mesh_queue *q = NULL;
	struct mesh_queue_info info;
	struct mesh_sender *s = NULL;
	struct mesh_sender_opts o;
	struct seen *seen = calloc(1, sizeof(*seen));
	long ids_ok = 0;

	mesh_queue_attrs_init(&a);
	a.max_message_size = 1024;
	mesh_queue_create(c, "snd", &a);
	mesh_queue_open(c, "snd", &q);
	mesh_sender_opts_init(&o);
	o.window = 64;
	is_int(mesh_sender_open_queue(q, &o, on_sent, seen, &s), MESH_OK,
	       "a sender on a queue, window 64");
	for (long i = 0; i < 1000; i++) {
		char id[32];
		struct mesh_event *ev;
		snprintf(id, sizeof(id), "m%ld", i);
		ev = text_event(id, i == 500 ? 4096 : 100);
		mesh_sender_send(
		        s, &(struct mesh_send){.event = ev, .tag = (void *)i});
		mesh_event_free(ev);
		if (i == 200) {
			ok(mesh_sender_in_flight(s) <= 64,
			   "no more than the window in flight (%zu)",
			   mesh_sender_in_flight(s));
		}
	}
	mesh_sender_flush(s);
	is_int(mesh_sender_in_flight(s), 0, "flush: nothing left in flight");
	is_int(seen->n, 1000, "each of 1000 messages reported once");
	is_int(seen->in_order, 1000, "... in the order they were sent");
	is_int(seen->ok, 999, "999 stored");
	is_int(seen->errs[500], MESH_ETOOBIG,
	       "the one over MaximumMessageSize: MESH_ETOOBIG, in its place");
	for (long i = 0; i < 1000; i++) {
		char id[32];
		snprintf(id, sizeof(id), "m%ld", i);
		ids_ok += strcmp(seen->ids[i], id) == 0;
	}
	is_int(ids_ok, 1000, "every completion carries its MessageId");
	mesh_queue_info(c, "snd", &info);
	is_int(info.visible, 999, "the queue holds the 999");
	mesh_sender_close(s);

	/* The queue gone: an error for each message, not a hang. */
	memset(seen, 0, sizeof(*seen));
	o.timeout_ms = 1000;
	mesh_sender_open_queue(q, &o, on_sent, seen, &s);
	mesh_queue_delete(c, "snd");
	{
		struct mesh_event *ev = text_event("after", 10);
		long long t0 = test_now_ms();
		mesh_sender_send(s, &(struct mesh_send){.event = ev});
		mesh_sender_close(s);
		mesh_event_free(ev);
		is_int(seen->n, 1, "a send to a deleted queue is reported");
		ok(seen->errs[0] != MESH_OK, "... as an error (%s)",
		   mesh_strerror(seen->errs[0]));
		ok(test_now_ms() - t0 < 3000, "... within the timeout (1 s)");
	}
	mesh_queue_close(q);
	free(seen);
}

static void
fifo_and_topics(void)
{
	struct mesh_queue_attrs a;
	struct mesh_topic_attrs ta;
	struct mesh_queue *q = NULL;
	struct mesh_topic *t = NULL;
	struct mesh_sender *s = NULL;
	struct seen *seen = calloc(1, sizeof(*seen));
	bool rising = true;

	mesh_queue_attrs_init(&a);
	a.fifo = true;
	mesh_queue_create(c, "snd.fifo", &a);
	mesh_queue_open(c, "snd.fifo", &q);
	mesh_sender_open_queue(q, NULL, on_sent, seen, &s);
	for (long i = 0; i < 20; i++) {
		char id[32];
		struct mesh_event *ev;
		snprintf(id, sizeof(id), "f%ld", i);
		ev = text_event(id, 10);
		mesh_sender_send(
		        s, &(struct mesh_send){.event = ev,
		                               .group_id = i == 7 ? NULL : "g",
		                               .dedup_id = id,
		                               .tag = (void *)i});
		mesh_event_free(ev);
	}
	mesh_sender_close(s);
	is_int(seen->ok, 19, "FIFO: 19 of 20 stored");
	is_int(seen->errs[7], MESH_EINVAL,
	       "... the one without a MessageGroupId refused in its place");
	{
		struct mesh_queue_msg *m = NULL;
		size_t n = 0;
		bool order = true;
		long want = 0;
		mesh_queue_peek(q, 20, &m, &n);
		for (size_t i = 0; i < n; i++, want++) {
			char id[32];
			want += want == 7;
			snprintf(id, sizeof(id), "f%ld", want);
			order = order && strcmp(m[i].dedup_id, id) == 0;
		}
		ok(n == 19 && order, "... stored in the order sent");
		mesh_queue_msgs_free(m, n);
	}
	mesh_queue_close(q);

	memset(seen, 0, sizeof(*seen));
	mesh_topic_attrs_init(&ta);
	ta.archive_days = 1;
	mesh_topic_create(c, "snd-topic", &ta);
	mesh_topic_open(c, "snd-topic", &t);
	is_int(mesh_sender_open_topic(t, NULL, on_sent, seen, &s), MESH_OK,
	       "a sender on a topic");
	for (long i = 0; i < 300; i++) {
		char id[32];
		struct mesh_event *ev;
		snprintf(id, sizeof(id), "t%ld", i);
		ev = text_event(id, 50);
		mesh_sender_send(
		        s, &(struct mesh_send){.event = ev, .tag = (void *)i});
		mesh_event_free(ev);
	}
	mesh_sender_close(s);
	is_int(seen->ok, 300, "300 published");
	if (seen->ok != 300) {
		tap_diag("first error: %s", seen->first_error);
	}
	for (long i = 1; i < 300; i++) {
		rising = rising && seen->seqs[i] == seen->seqs[i - 1] + 1;
	}
	ok(rising, "... their sequences one after another, as sent");
	mesh_topic_close(t);
	free(seen);

	{
		struct mesh_sender_opts o;
		mesh_sender_opts_init(&o);
		o.window = 0;
		mesh_queue_attrs_init(&a);
		mesh_queue_create(c, "snd2", &a);
		mesh_queue_open(c, "snd2", &q);
		is_int(mesh_sender_open_queue(q, &o, NULL, NULL, &s),
		       MESH_EINVAL, "a window of 0 is refused");
		has_str(mesh_errdetail(), "window", "... saying which option");
		mesh_queue_close(q);
	}
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
	mesh_conn_open(&o, &c);
	queue_sends();
	fifo_and_topics();
	mesh_conn_close(c);
	test_broker_stop(&broker);
	mesh_shutdown();
	return tap_done();
}
