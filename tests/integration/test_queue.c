/* Queues against a real nats-server: every SQS behaviour the issue names,
 * with short timeouts so the suite stays fast. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "mesh/mesh.h"

static struct mesh_conn *conn;

static struct mesh_event *
body(const char *text)
{
	struct mesh_event *ev = NULL;

	mesh_event_new("test.message", "/tests", &ev);
	mesh_event_set_text(ev, text, strlen(text));
	return ev;
}

static const char *
body_of(const struct mesh_queue_msg *m)
{
	const void *d;
	size_t len;

	mesh_event_data(m->event, &d, &len, NULL);
	return d;
}

static mesh_err
send_text(struct mesh_queue *q, const char *text, const char *group,
          const char *dedup, int64_t delay, struct mesh_queue_sent *out)
{
	struct mesh_queue_sent tmp;
	struct mesh_event *ev = body(text);
	struct mesh_queue_entry e = {.event = ev,
	                             .delay_s = delay,
	                             .group_id = group,
	                             .dedup_id = dedup};
	mesh_err err = mesh_queue_send(q, &e, out ? out : &tmp);

	mesh_event_free(ev);
	return err;
}

static struct mesh_queue *
make(const char *name, struct mesh_queue_attrs *a)
{
	struct mesh_queue *q = NULL;
	mesh_err err = mesh_queue_create(conn, name, a);

	if (err != MESH_OK) {
		tap_diag("create %s: %s", name, mesh_errdetail());
		return NULL;
	}
	if (mesh_queue_open(conn, name, &q) != MESH_OK) {
		tap_diag("open %s: %s", name, mesh_errdetail());
	}
	return q;
}

static size_t
recv(struct mesh_queue *q, int max, int wait, int64_t vis,
     struct mesh_queue_msg **m)
{
	size_t n = 0;

	*m = NULL;
	if (mesh_queue_receive(q, max, wait, vis, m, &n) != MESH_OK) {
		tap_diag("receive: %s", mesh_errdetail());
	}
	return n;
}

static void
test_create(void)
{
	struct mesh_queue_attrs a;
	struct mesh_queue_info info;
	char **names;
	size_t n;

	mesh_queue_attrs_init(&a);
	is_int(mesh_queue_create(conn, "bad name", &a), MESH_EINVAL,
	       "a name with a space is refused");
	has_str(mesh_errdetail(), "bad name", "the error names it");
	{
		char longname[90];
		memset(longname, 'a', 81);
		longname[81] = '\0';
		is_int(mesh_queue_create(conn, longname, &a), MESH_EINVAL,
		       "an 81-character name is refused");
	}
	a.visibility_timeout_s = 43201;
	is_int(mesh_queue_create(conn, "q1", &a), MESH_EINVAL,
	       "VisibilityTimeout over 12 h is refused");
	has_str(mesh_errdetail(), "VisibilityTimeout 43201",
	        "the error names the attribute and value");
	mesh_queue_attrs_init(&a);
	a.delay_s = 901;
	is_int(mesh_queue_create(conn, "q1", &a), MESH_EINVAL,
	       "DelaySeconds over 15 min is refused");
	mesh_queue_attrs_init(&a);
	a.retention_s = 59;
	is_int(mesh_queue_create(conn, "q1", &a), MESH_EINVAL,
	       "a retention under 60 s is refused");
	mesh_queue_attrs_init(&a);
	a.max_message_size = 1048577;
	is_int(mesh_queue_create(conn, "q1", &a), MESH_EINVAL,
	       "MaximumMessageSize over 1 MiB is refused");
	mesh_queue_attrs_init(&a);
	a.receive_wait_s = 21;
	is_int(mesh_queue_create(conn, "q1", &a), MESH_EINVAL,
	       "a receive wait over 20 s is refused");
	mesh_queue_attrs_init(&a);
	is_int(mesh_queue_create(conn, "q1.fifo", &a), MESH_EINVAL,
	       "a .fifo name for a standard queue is refused");
	a.fifo = true;
	is_int(mesh_queue_create(conn, "q1", &a), MESH_EINVAL,
	       "a FIFO queue without .fifo is refused");
	mesh_queue_attrs_init(&a);
	snprintf(a.dlq, sizeof(a.dlq), "nosuch");
	is_int(mesh_queue_create(conn, "q1", &a), MESH_ENOTFOUND,
	       "a missing dead-letter queue is refused");
	has_str(mesh_errdetail(), "nosuch", "naming it");
	a.max_receive_count = 1001;
	is_int(mesh_queue_create(conn, "q1", &a), MESH_EINVAL,
	       "maxReceiveCount over 1000 is refused");
	is_int(mesh_queue_list(conn, NULL, &names, &n), MESH_OK, "list works");
	is_int(n, 0, "and nothing was half-created by the refusals");
	mesh_queue_list_free(names, n);

	mesh_queue_attrs_init(&a);
	is_int(mesh_queue_create(conn, "q1", &a), MESH_OK, "q1 is created");
	is_int(mesh_queue_create(conn, "q1", &a), MESH_OK,
	       "creating it again with the same attributes succeeds");
	a.visibility_timeout_s = 5;
	is_int(mesh_queue_create(conn, "q1", &a), MESH_EEXIST,
	       "creating it with other attributes is refused");
	is_int(mesh_queue_set_attrs(conn, "q1", &a), MESH_OK,
	       "set-attributes changes VisibilityTimeout");
	ok(mesh_queue_info(conn, "q1", &info) == MESH_OK &&
	           info.attrs.visibility_timeout_s == 5 &&
	           info.attrs.retention_s == 345600 &&
	           info.attrs.max_message_size == 262144 &&
	           info.attrs.created_ms > 0,
	   "info shows the attributes, defaults included");
	a.fifo = true;
	is_int(mesh_queue_set_attrs(conn, "q1", &a), MESH_EINVAL,
	       "FifoQueue cannot be changed");
	is_int(mesh_queue_create(conn, "q2", &a), MESH_EINVAL, "(fifo name)");
	mesh_queue_attrs_init(&a);
	mesh_queue_create(conn, "q2", &a);
	is_int(mesh_queue_list(conn, "q", &names, &n), MESH_OK,
	       "list with a prefix");
	ok(n == 2 && strcmp(names[0], "q1") == 0 &&
	           strcmp(names[1], "q2") == 0,
	   "lists q1 and q2, sorted");
	mesh_queue_list_free(names, n);
	is_int(mesh_queue_delete(conn, "q2"), MESH_OK, "q2 is deleted");
	is_int(mesh_queue_info(conn, "q2", &info), MESH_ENOTFOUND,
	       "and is gone");
	is_int(mesh_queue_delete(conn, "q2"), MESH_ENOTFOUND,
	       "deleting it again says it does not exist");
	has_str(mesh_errdetail(), "'q2': does not exist", "by name");
}

static void
test_standard(void)
{
	struct mesh_queue_attrs a;
	struct mesh_queue *q;
	struct mesh_queue_msg *m, *m2;
	struct mesh_queue_sent sent;
	struct mesh_queue_info info;
	struct mesh_event *ev;
	struct mesh_queue_entry e = {.delay_s = -1};
	char first_receipt[MESH_QUEUE_RECEIPT_MAX];
	const char *type;
	const void *val;
	size_t len, n;

	mesh_queue_attrs_init(&a);
	a.visibility_timeout_s = 1;
	if (!ok((q = make("std", &a)) != NULL, "a standard queue")) {
		return;
	}
	ev = body("hello");
	mesh_event_attr_set(ev, "color", "String", "red", 3);
	mesh_event_attr_set(ev, "n", "Number", "3.5", 3);
	mesh_event_attr_set(ev, "raw", "Binary", "\0\1", 2);
	e.event = ev;
	is_int(mesh_queue_send(q, &e, &sent), MESH_OK, "a message is sent");
	is_str(sent.message_id, mesh_event_id(ev),
	       "its MessageId is the event id");
	mesh_event_free(ev);
	ok(mesh_queue_info(conn, "std", &info) == MESH_OK &&
	           info.visible == 1 && info.not_visible == 0,
	   "info: 1 visible, 0 in flight");

	n = recv(q, 10, 0, -1, &m);
	is_int(n, 1, "it is received");
	if (n != 1) {
		return;
	}
	is_str(body_of(&m[0]), "hello", "with its body");
	ok(mesh_event_attr_get(m[0].event, "n", &type, &val, &len) ==
	                   MESH_OK &&
	           strcmp(type, "Number") == 0 && memcmp(val, "3.5", 3) == 0,
	   "with its Number attribute");
	ok(mesh_event_attr_get(m[0].event, "raw", &type, &val, &len) ==
	                   MESH_OK &&
	           strcmp(type, "Binary") == 0 && len == 2,
	   "and its Binary attribute");
	is_int(m[0].receive_count, 1, "ApproximateReceiveCount is 1");
	ok(m[0].sent_ms > 0 && m[0].first_receive_ms >= m[0].sent_ms,
	   "SentTimestamp and ApproximateFirstReceiveTimestamp are set");
	ok(mesh_queue_info(conn, "std", &info) == MESH_OK &&
	           info.visible == 0 && info.not_visible == 1,
	   "info: 0 visible, 1 in flight");
	snprintf(first_receipt, sizeof(first_receipt), "%s", m[0].receipt);
	mesh_queue_msgs_free(m, n);

	is_int(recv(q, 10, 0, -1, &m), 0, "while in flight it is invisible");
	usleep(1300 * 1000);
	mesh_queue_msgs_free(m, 0);
	n = recv(q, 10, 2, -1, &m);
	ok(n == 1 && m[0].receive_count == 2,
	   "after the visibility timeout it comes back, receive count 2");
	is_int(mesh_queue_delete_message(q, first_receipt), MESH_ESTALE,
	       "the first receipt cannot delete the newer receipt");
	has_str(mesh_errdetail(), "expired", "and says it expired");
	if (n == 1) {
		size_t n2;
		is_int(mesh_queue_change_visibility(q, m[0].receipt, 0),
		       MESH_OK, "change visibility to 0");
		n2 = recv(q, 10, 2, -1, &m2);
		ok(n2 == 1 && m2[0].receive_count == 3,
		   "makes it receivable at once, receive count 3");
		is_int(mesh_queue_delete_message(q, m[0].receipt), MESH_ESTALE,
		       "and the receipt whose visibility was changed is "
		       "stale");
		if (n2 == 1) {
			struct mesh_queue_msg *m3;
			is_int(mesh_queue_change_visibility(q, m2[0].receipt,
			                                    3),
			       MESH_OK, "extend visibility to 3 s");
			usleep(1500 * 1000);
			is_int(recv(q, 10, 0, -1, &m3), 0,
			       "past the queue's 1 s it is still invisible");
			mesh_queue_msgs_free(m3, 0);
			is_int(mesh_queue_delete_message(q, m2[0].receipt),
			       MESH_OK,
			       "and the extended receipt still deletes it");
		}
		mesh_queue_msgs_free(m2, n2);
	}
	mesh_queue_msgs_free(m, n);
	ok(mesh_queue_info(conn, "std", &info) == MESH_OK &&
	           info.visible == 0 && info.not_visible == 0,
	   "info: the queue is empty");

	/* Per-call visibility timeout. */
	send_text(q, "pc", NULL, NULL, -1, NULL);
	n = recv(q, 1, 0, 3, &m);
	is_int(n, 1, "a receive with its own visibility timeout of 3 s");
	usleep(1500 * 1000);
	is_int(recv(q, 1, 0, -1, &m2), 0,
	       "is still invisible past the queue's 1 s");
	if (n == 1) {
		mesh_queue_delete_message(q, m[0].receipt);
	}
	mesh_queue_msgs_free(m, n);
	mesh_queue_msgs_free(m2, 0);

	/* Bad input. */
	{
		char *big = malloc(262146);
		memset(big, 'x', 262145); /* one over the default limit */
		big[262145] = '\0';
		ev = body(big);
		e.event = ev;
		is_int(mesh_queue_send(q, &e, &sent), MESH_ETOOBIG,
		       "a body over MaximumMessageSize is refused");
		has_str(mesh_errdetail(), "MaximumMessageSize",
		        "naming the limit");
		mesh_event_free(ev);
		free(big);
	}
	is_int(send_text(q, "x", NULL, "d", -1, NULL), MESH_EINVAL,
	       "a de-duplication id on a standard queue is refused");
	is_int(send_text(q, "x", NULL, NULL, 901, NULL), MESH_EINVAL,
	       "a message delay over 900 s is refused");
	is_int(mesh_queue_delete_message(q, "not-a-receipt"), MESH_EINVAL,
	       "a malformed receipt is refused");
	{
		char forged[MESH_QUEUE_RECEIPT_MAX];
		snprintf(forged, sizeof(forged), "%s", first_receipt);
		forged[strlen(forged) - 3] =
		        forged[strlen(forged) - 3] == 'A' ? 'B' : 'A';
		is_int(mesh_queue_delete_message(q, forged), MESH_EINVAL,
		       "a forged receipt is refused");
		has_str(mesh_errdetail(), "not issued by this queue",
		        "and called that");
	}
	is_int(mesh_queue_receive(q, 11, 0, -1, &m, &n), MESH_EINVAL,
	       "receiving 11 is refused");
	is_int(mesh_queue_receive(q, 1, 21, -1, &m, &n), MESH_EINVAL,
	       "waiting 21 s is refused");
	ok(mesh_queue_info(conn, "std", &info) == MESH_OK &&
	           info.visible == 0 && info.not_visible == 0,
	   "nothing was stored by the refused sends");
	mesh_queue_close(q);
}

static void
test_batches(void)
{
	struct mesh_queue_attrs a;
	struct mesh_queue *q;
	struct mesh_event *evs[11];
	struct mesh_queue_entry e[11];
	struct mesh_queue_sent sent[11];
	struct mesh_queue_msg *m;
	struct mesh_queue_info info;
	const char *ids[10], *rh[10];
	struct mesh_queue_result res[10];
	char idbuf[11][8];
	size_t n;

	mesh_queue_attrs_init(&a);
	if (!ok((q = make("batch", &a)) != NULL, "a queue for batches")) {
		return;
	}
	for (int i = 0; i < 11; i++) {
		snprintf(idbuf[i], sizeof(idbuf[i]), "e%d", i);
		evs[i] = body(idbuf[i]);
		e[i] = (struct mesh_queue_entry){
		        .id = idbuf[i], .event = evs[i], .delay_s = -1};
	}
	is_int(mesh_queue_send_batch(q, e, 11, sent), MESH_EINVAL,
	       "a batch of 11 is refused");
	e[1].id = "e0";
	is_int(mesh_queue_send_batch(q, e, 3, sent), MESH_EINVAL,
	       "a batch with a repeated id is refused");
	has_str(mesh_errdetail(), "'e0' is repeated", "naming the id");
	e[1].id = idbuf[1];
	ok(mesh_queue_info(conn, "batch", &info) == MESH_OK &&
	           info.visible == 0,
	   "and nothing of it was sent");
	e[4].dedup_id = "nope"; /* not on a standard queue */
	is_int(mesh_queue_send_batch(q, e, 10, sent), MESH_OK,
	       "a batch of 10 with one bad entry is judged");
	ok(sent[4].err == MESH_EINVAL && sent[3].err == MESH_OK &&
	           sent[9].err == MESH_OK,
	   "per entry: the bad one failed, the others succeeded");
	has_str(sent[4].error, "MessageDeduplicationId",
	        "the failure says why");
	n = recv(q, 10, 1, -1, &m);
	is_int(n, 9, "the 9 good messages are received in one batch");
	for (size_t i = 0; i < n && i < 10; i++) {
		ids[i] = idbuf[i];
		rh[i] = m[i].receipt;
	}
	rh[n > 0 ? n - 1 : 0] = "bogus";
	is_int(mesh_queue_delete_batch(q, ids, rh, n, res), MESH_OK,
	       "a delete batch with one bad receipt is judged");
	ok(n == 9 && res[0].err == MESH_OK && res[8].err == MESH_EINVAL,
	   "per entry");
	ok(mesh_queue_info(conn, "batch", &info) == MESH_OK &&
	           info.visible + info.not_visible == 1,
	   "8 were deleted, 1 is left");
	mesh_queue_msgs_free(m, n);
	is_int(mesh_queue_purge(conn, "batch"), MESH_OK, "purge");
	ok(mesh_queue_info(conn, "batch", &info) == MESH_OK &&
	           info.visible == 0 && info.not_visible == 0,
	   "empties the queue");
	for (int i = 0; i < 11; i++) {
		mesh_event_free(evs[i]);
	}
	mesh_queue_close(q);
}

static void
test_delay(void)
{
	struct mesh_queue_attrs a;
	struct mesh_queue *q;
	struct mesh_queue_msg *m;
	struct mesh_queue_info info;
	long long t0;
	size_t n;

	mesh_queue_attrs_init(&a);
	a.delay_s = 2;
	if (!ok((q = make("delayed", &a)) != NULL,
	        "a queue with a 2 s delay")) {
		return;
	}
	t0 = test_now_ms();
	send_text(q, "later", NULL, NULL, -1, NULL);
	ok(mesh_queue_info(conn, "delayed", &info) == MESH_OK &&
	           info.delayed == 1 && info.visible == 0,
	   "info counts it as delayed");
	is_int(recv(q, 1, 1, -1, &m), 0, "it is not receivable at once");
	mesh_queue_msgs_free(m, 0);
	n = recv(q, 1, 5, -1, &m);
	ok(n == 1, "it arrives after its delay");
	ok(test_now_ms() - t0 >= 2000 && test_now_ms() - t0 < 3500,
	   "not before 2 s, and within a second after (%lld ms)",
	   test_now_ms() - t0);
	ok(n == 1 && m[0].receive_count == 1,
	   "the delay did not count as a receive");
	if (n == 1) {
		mesh_queue_delete_message(q, m[0].receipt);
	}
	mesh_queue_msgs_free(m, n);
	/* A per-message delay overrides the queue's. */
	t0 = test_now_ms();
	send_text(q, "now", NULL, NULL, 0, NULL);
	n = recv(q, 1, 1, -1, &m);
	ok(n == 1 && test_now_ms() - t0 < 1000,
	   "a message sent with delay 0 comes at once");
	if (n == 1) {
		mesh_queue_delete_message(q, m[0].receipt);
	}
	mesh_queue_msgs_free(m, n);
	mesh_queue_close(q);
}

static void
test_dlq(void)
{
	struct mesh_queue_attrs a;
	struct mesh_queue *q, *dlq;
	struct mesh_queue_msg *m;
	struct mesh_queue_info info;
	struct mesh_queue_redrive rd = {0};
	struct mesh_event *ev;
	struct mesh_queue_entry e = {.delay_s = -1};
	struct mesh_queue_sent sent;
	const char *type;
	const void *val;
	size_t len, n, moved = 0;

	mesh_queue_attrs_init(&a);
	if (!ok((dlq = make("dead", &a)) != NULL, "a dead-letter queue")) {
		return;
	}
	a.visibility_timeout_s = 1;
	snprintf(a.dlq, sizeof(a.dlq), "dead");
	a.max_receive_count = 2;
	if (!ok((q = make("work", &a)) != NULL, "a queue redriving to it "
	                                        "after 2 receives")) {
		return;
	}
	ev = body("poison");
	mesh_event_attr_set(ev, "k", "String", "v", 1);
	e.event = ev;
	mesh_queue_send(q, &e, &sent);
	mesh_event_free(ev);
	for (int i = 1; i <= 2; i++) {
		n = recv(q, 1, 3, -1, &m);
		if (!ok(n == 1 && m[0].receive_count == (uint64_t)i,
		        "receive %d of the poison message", i)) {
			tap_diag("n %zu, count %llu", n,
			         n ? (unsigned long long)m[0].receive_count
			           : 0);
		}
		mesh_queue_msgs_free(m, n);
	}
	usleep(1100 * 1000);
	is_int(recv(q, 1, 2, -1, &m), 0,
	       "the third receive does not return it");
	mesh_queue_msgs_free(m, 0);
	n = 0;
	mesh_queue_peek(dlq, 10, &m, &n);
	ok(n == 1 && strcmp(body_of(&m[0]), "poison") == 0,
	   "it is in the dead-letter queue with its body");
	ok(n == 1 && strcmp(m[0].dlq_source, "work") == 0,
	   "its source queue is recorded");
	ok(n == 1 && strstr(m[0].dlq_reason, "maxReceiveCount") != NULL,
	   "and why (%s)", n == 1 ? m[0].dlq_reason : "");
	ok(n == 1 &&
	           mesh_event_attr_get(m[0].event, "k", &type, &val, &len) ==
	                   MESH_OK &&
	           len == 1,
	   "with its attributes intact");
	ok(n == 1 && strcmp(mesh_event_id(m[0].event), sent.message_id) == 0,
	   "and its MessageId");
	mesh_queue_msgs_free(m, n);
	n = 0;
	mesh_queue_peek(dlq, 10, &m, &n);
	mesh_queue_msgs_free(m, n);
	ok(mesh_queue_info(conn, "dead", &info) == MESH_OK &&
	           info.visible == 1,
	   "peeking twice changed nothing (still 1 visible)");

	/* Dead-letter at once, with a reason. */
	send_text(q, "bad input", NULL, NULL, -1, NULL);
	n = recv(q, 1, 2, -1, &m);
	if (n == 1) {
		is_int(mesh_queue_dead_letter(q, m[0].receipt,
		                              "cannot parse order"),
		       MESH_OK, "a message is dead-lettered on request");
	}
	mesh_queue_msgs_free(m, n);
	ok(mesh_queue_info(conn, "dead", &info) == MESH_OK &&
	           info.visible == 2,
	   "the DLQ now holds 2");

	/* Selective redrive, then all; a second run moves nothing. */
	rd.attr_name = "k";
	rd.attr_value = "v";
	is_int(mesh_queue_redrive(conn, "dead", &rd, &moved), MESH_OK,
	       "a redrive by attribute match");
	is_int(moved, 1, "moves the one message that matches");
	rd.attr_name = NULL;
	is_int(mesh_queue_redrive(conn, "dead", &rd, &moved), MESH_OK,
	       "a redrive of the rest");
	is_int(moved, 1, "moves the other");
	is_int(mesh_queue_redrive(conn, "dead", &rd, &moved), MESH_OK,
	       "running it again");
	is_int(moved, 0, "moves nothing");
	ok(mesh_queue_info(conn, "work", &info) == MESH_OK &&
	           info.visible == 2,
	   "both are back in their source queue, once each");
	n = recv(q, 10, 1, -1, &m);
	ok(n == 2 && m[0].receive_count == 1,
	   "and received afresh (receive count 1)");
	{
		const char *ids[] = {"a", "b"}, *rh[2];
		struct mesh_queue_result res[2];
		for (size_t i = 0; i < n && i < 2; i++) {
			rh[i] = m[i].receipt;
		}
		mesh_queue_delete_batch(q, ids, rh, n < 2 ? n : 2, res);
	}
	mesh_queue_msgs_free(m, n);
	mesh_queue_close(q);
	mesh_queue_close(dlq);

	/* With its dead-letter queue deleted, a queue hands a message out
	 * past maxReceiveCount rather than hide it. */
	mesh_queue_delete(conn, "dead");
	mesh_queue_open(conn, "work", &q);
	send_text(q, "orphan", NULL, NULL, -1, NULL);
	for (int i = 1; i <= 3; i++) {
		n = recv(q, 1, 3, -1, &m);
		if (i == 3) {
			ok(n == 1 && m[0].receive_count == 3,
			   "a third receive still gets it when the DLQ is "
			   "gone");
		}
		mesh_queue_msgs_free(m, n);
	}
	mesh_queue_close(q);
}

static void
test_fifo(void)
{
	struct mesh_queue_attrs a;
	struct mesh_queue *q;
	struct mesh_queue_msg *m;
	struct mesh_queue_sent s1, s2;
	size_t n;

	mesh_queue_attrs_init(&a);
	a.fifo = true;
	a.visibility_timeout_s = 1;
	if (!ok((q = make("orders.fifo", &a)) != NULL, "a FIFO queue")) {
		return;
	}
	is_int(send_text(q, "x", NULL, "d", -1, NULL), MESH_EINVAL,
	       "a FIFO send without a group is refused");
	has_str(mesh_errdetail(), "MessageGroupId", "naming the field");
	is_int(send_text(q, "x", "g", NULL, -1, NULL), MESH_EINVAL,
	       "a FIFO send without a de-duplication id is refused");
	is_int(send_text(q, "x", "g", "d", 5, NULL), MESH_EINVAL,
	       "a per-message delay on FIFO is refused");
	is_int(send_text(q, "a1", "A", "a1", -1, &s1), MESH_OK, "A1 is sent");
	is_int(send_text(q, "a1 again", "A", "a1", -1, &s2), MESH_OK,
	       "a duplicate is accepted");
	ok(s2.duplicate && strcmp(s1.message_id, s2.message_id) == 0,
	   "as a duplicate, with the original MessageId");
	send_text(q, "a2", "A", "a2", -1, NULL);
	send_text(q, "a3", "A", "a3", -1, NULL);
	send_text(q, "b1", "B", "b1", -1, NULL);

	n = recv(q, 10, 0, -1, &m);
	ok(n == 2, "one receive gets one message of each group (%zu)", n);
	for (size_t i = 0; i < n; i++) {
		ok(strcmp(body_of(&m[i]), "a1") == 0 ||
		           strcmp(body_of(&m[i]), "b1") == 0,
		   "the head of its group: %s", body_of(&m[i]));
		ok(m[i].sequence > 0 && m[i].group_id[0] != '\0' &&
		           m[i].dedup_id[0] != '\0',
		   "with SequenceNumber, MessageGroupId and "
		   "MessageDeduplicationId");
	}
	mesh_queue_msgs_free(m, n);
	n = recv(q, 10, 0, -1, &m);
	is_int(n, 0, "while A1 is in flight no later A message is given out");
	for (size_t i = 0; i < n; i++) {
		tap_diag("got %s (count %llu)", body_of(&m[i]),
		         (unsigned long long)m[i].receive_count);
	}
	mesh_queue_msgs_free(m, n);
	usleep(1200 * 1000);
	n = recv(q, 10, 2, -1, &m);
	{
		bool a1 = false;
		for (size_t i = 0; i < n; i++) {
			if (strcmp(body_of(&m[i]), "a1") == 0 &&
			    m[i].receive_count == 2) {
				a1 = true;
				mesh_queue_delete_message(q, m[i].receipt);
			} else {
				mesh_queue_delete_message(q, m[i].receipt);
			}
		}
		ok(a1, "after a failure A1 comes again before A2");
	}
	mesh_queue_msgs_free(m, n);
	n = recv(q, 10, 2, -1, &m);
	ok(n == 1 && strcmp(body_of(&m[0]), "a2") == 0, "then A2");
	if (n == 1) {
		mesh_queue_delete_message(q, m[0].receipt);
	}
	mesh_queue_msgs_free(m, n);
	n = recv(q, 10, 2, -1, &m);
	ok(n == 1 && strcmp(body_of(&m[0]), "a3") == 0, "then A3");
	if (n == 1) {
		mesh_queue_delete_message(q, m[0].receipt);
	}
	mesh_queue_msgs_free(m, n);
	mesh_queue_close(q);

	mesh_queue_attrs_init(&a);
	a.fifo = true;
	a.content_based_dedup = true;
	if ((q = make("cbd.fifo", &a)) != NULL) {
		send_text(q, "same body", "g", NULL, -1, &s1);
		send_text(q, "same body", "g", NULL, -1, &s2);
		ok(s2.duplicate && strcmp(s1.message_id, s2.message_id) == 0,
		   "content-based de-duplication drops the same body");
		mesh_queue_close(q);
	}
}

struct late_send {
	struct mesh_queue *q;
};

static void *
late_sender(void *arg)
{
	struct late_send *ls = arg;

	usleep(300 * 1000);
	send_text(ls->q, "late", NULL, NULL, -1, NULL);
	return NULL;
}

static void
test_long_poll(void)
{
	struct mesh_queue_attrs a;
	struct mesh_queue *q, *q2 = NULL;
	struct mesh_queue_msg *m;
	struct late_send ls;
	pthread_t t;
	long long t0;
	size_t n;

	mesh_queue_attrs_init(&a);
	if (!ok((q = make("poll", &a)) != NULL, "a queue to long-poll")) {
		return;
	}
	mesh_queue_open(conn, "poll", &q2);
	ls.q = q2;
	pthread_create(&t, NULL, late_sender, &ls);
	t0 = test_now_ms();
	n = recv(q, 10, 5, -1, &m);
	ok(n == 1, "a long poll gets the message sent during it");
	ok(test_now_ms() - t0 < 1500, "as soon as it is sent (%lld ms)",
	   test_now_ms() - t0);
	pthread_join(t, NULL);
	mesh_queue_msgs_free(m, n);
	t0 = test_now_ms();
	n = recv(q, 1, 1, -1, &m);
	ok(n == 0 && test_now_ms() - t0 >= 900,
	   "an empty long poll waits its time (%lld ms)", test_now_ms() - t0);
	mesh_queue_msgs_free(m, n);
	mesh_queue_close(q2);
	mesh_queue_close(q);
}

struct late_delete {
	struct mesh_queue *q;
	const char *receipt;
};

static void *
late_deleter(void *arg)
{
	struct late_delete *ld = arg;

	usleep(100 * 1000);
	mesh_queue_delete_message(ld->q, ld->receipt);
	return NULL;
}

/* A receiver waiting on a FIFO group that another thread of the process
 * holds gets the group's next message as soon as the holder deletes its
 * own, not at its next poll (a receive waits in slices of 250 ms). */
static void
test_fifo_handover(void)
{
	struct mesh_queue_attrs a;
	struct mesh_queue *q, *q2 = NULL;
	struct mesh_queue_msg *m, *m2;
	struct late_delete ld;
	pthread_t t;
	long long t0, took;
	size_t n;

	mesh_queue_attrs_init(&a);
	a.fifo = true;
	if (!ok((q = make("handover.fifo", &a)) != NULL, "a FIFO queue")) {
		return;
	}
	mesh_queue_open(conn, "handover.fifo", &q2);
	send_text(q, "one", "G", "one", -1, NULL);
	send_text(q, "two", "G", "two", -1, NULL);
	n = recv(q, 1, 1, -1, &m);
	if (!ok(n == 1, "the group's first message is in flight")) {
		mesh_queue_msgs_free(m, n);
		mesh_queue_close(q2);
		mesh_queue_close(q);
		return;
	}
	ld = (struct late_delete){q, m[0].receipt};
	pthread_create(&t, NULL, late_deleter, &ld);
	t0 = test_now_ms();
	n = recv(q2, 1, 5, -1, &m2);
	took = test_now_ms() - t0;
	pthread_join(t, NULL);
	ok(n == 1 && strcmp(body_of(&m2[0]), "two") == 0,
	   "a receiver waiting on the group gets the next message");
	ok(took >= 90 && took < 200,
	   "once the first is deleted (after %lld ms; deleted at 100)", took);
	mesh_queue_msgs_free(m2, n);
	mesh_queue_msgs_free(m, 1);
	mesh_queue_close(q2);
	mesh_queue_close(q);
}

struct racer {
	const char *name;
	bool topic;
	mesh_err err;
	char detail[256];
};

static void *
race_create(void *arg)
{
	struct racer *r = arg;
	struct mesh_queue_attrs qa;
	struct mesh_topic_attrs ta;

	mesh_queue_attrs_init(&qa);
	mesh_topic_attrs_init(&ta);
	r->err = r->topic ? mesh_topic_create(conn, r->name, &ta)
	                  : mesh_queue_create(conn, r->name, &qa);
	snprintf(r->detail, sizeof(r->detail), "%s", mesh_errdetail());
	return NULL;
}

/* Instances of a service starting together make its dead-letter queue
 * (and producers their topics) at once: every call succeeds, as SQS's
 * CreateQueue and SNS's CreateTopic do for the same attributes, and none
 * removes what another made. */
static void
test_create_race(void)
{
	struct racer r[8];
	pthread_t t[8];
	struct mesh_queue *q = NULL;
	struct mesh_queue_msg *m = NULL;
	int failed = 0;
	size_t n;

	for (int round = 0; round < 2; round++) {
		failed = 0;
		for (int i = 0; i < 8; i++) {
			r[i] = (struct racer){.name = round ? "raced-topic"
			                                    : "raced",
			                      .topic = round == 1};
			pthread_create(&t[i], NULL, race_create, &r[i]);
		}
		for (int i = 0; i < 8; i++) {
			pthread_join(t[i], NULL);
			if (r[i].err != MESH_OK) {
				tap_diag("%s", r[i].detail);
				failed++;
			}
		}
		is_int(failed, 0, "8 creators of one %s at once all succeed",
		       round ? "topic" : "queue");
	}
	if (!ok(mesh_queue_open(conn, "raced", &q) == MESH_OK,
	        "and the queue is whole")) {
		return;
	}
	send_text(q, "after the race", NULL, NULL, -1, NULL);
	n = recv(q, 1, 2, -1, &m);
	ok(n == 1 && strcmp(body_of(&m[0]), "after the race") == 0,
	   "it takes and gives a message");
	mesh_queue_msgs_free(m, n);
	mesh_queue_close(q);
}

int
main(void)
{
	struct test_broker b;
	struct mesh_conn_opts o;

	if (!test_broker_start(&b, NULL)) {
		ok(false, "a broker starts");
		return tap_done();
	}
	mesh_conn_opts_init(&o);
	o.servers = b.url;
	if (mesh_conn_open(&o, &conn) != MESH_OK) {
		ok(false, "connect: %s", mesh_errdetail());
		test_broker_stop(&b);
		return tap_done();
	}
	test_create();
	test_create_race();
	test_standard();
	test_batches();
	test_delay();
	test_dlq();
	test_fifo();
	test_fifo_handover();
	test_long_poll();
	mesh_conn_close(conn);
	test_broker_stop(&b);
	mesh_shutdown();
	return tap_done();
}
