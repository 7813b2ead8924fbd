/* Sealed payloads (mesh/seal.h) against a real nats-server: an encrypted
 * topic's messages read raw from its stream are not the plaintext; a
 * reader service handles the plaintext (its MessageAttributes filter
 * still working); a rotated key still opens old messages; a non-reader
 * cannot open (nor can a non-reader service: its dead letters say why);
 * a MessageBody filter policy is refused on an encrypted topic, and an
 * encrypted topic is refused to a topic that has one; an unsealed event
 * is refused by the encrypted topic. An encrypted queue: an unsealed
 * event refused, and a signed one not sealed; a queue given a keyring
 * seals what it sends (raw bytes not the plaintext, naming queue:NAME/1),
 * a FIFO one still de-duplicates by content (hashed before sealing). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "service_thread.h"
#include "mesh/identity.h"
#include "mesh/seal.h"
#include "mesh/service.h"
#include "mesh/subscription.h"
#include "mesh/queue.h"
#include "mesh/sign.h"
#include "mesh/topic.h"

#define PLAIN1 "card 4111-1111-1111-1111 for order one"
#define PLAIN2 "card 5500-0000-0000-0004 for order two"

static struct test_broker broker;
static struct mesh_conn *c;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int handled;
static char last_text[256];

static mesh_handler_result
on_pay(struct mesh_ctx *ctx, const struct mesh_event *ev,
       const ProtobufCMessage *msg, void *arg)
{
	const void *data;
	size_t len;

	(void)ctx;
	(void)msg;
	(void)arg;
	mesh_event_data(ev, &data, &len, NULL);
	pthread_mutex_lock(&mu);
	handled++;
	snprintf(last_text, sizeof(last_text), "%.*s", (int)len,
	         (const char *)data);
	pthread_mutex_unlock(&mu);
	return MESH_HANDLER_OK;
}

static int
handled_now(void)
{
	pthread_mutex_lock(&mu);
	int n = handled;
	pthread_mutex_unlock(&mu);
	return n;
}

static struct mesh_event *
pay_event(const char *text, const char *region)
{
	struct mesh_event *ev = NULL;

	mesh_event_new("test.pay", "/test/seal", &ev);
	mesh_event_set_text(ev, text, strlen(text));
	mesh_event_attr_set(ev, "region", "String", region, strlen(region));
	return ev;
}

static mesh_err
publish(struct mesh_topic *t, struct mesh_event *ev, uint64_t *seq)
{
	struct mesh_topic_entry e = {.event = ev};
	struct mesh_topic_published p;
	mesh_err err = mesh_topic_publish(t, &e, &p);

	if (seq != NULL) {
		*seq = p.sequence;
	}
	return err;
}

/* The stored message of the topic's stream at seq: its raw bytes. */
static natsMsg *
raw_at(uint64_t seq)
{
	natsMsg *m = NULL;

	js_GetMsg(&m, mesh_conn_js(c), "TP_st-pay", seq, NULL, NULL);
	return m;
}

static bool
raw_holds(natsMsg *m, const char *text)
{
	return m != NULL &&
	       memmem(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m),
	              text, strlen(text)) != NULL;
}

/* The message at seq, parsed (still sealed). */
static struct mesh_event *
stored_event(uint64_t seq)
{
	natsMsg *m = raw_at(seq);
	struct mesh_event *ev = NULL;

	if (m != NULL) {
		mesh_event_parse(natsMsg_GetData(m),
		                 (size_t)natsMsg_GetDataLength(m), 0, &ev);
	}
	natsMsg_Destroy(m);
	return ev;
}

static struct mesh_identity *
identity(const char *dir, const char *name, bool record)
{
	struct mesh_identity *id = NULL;
	struct mesh_key_record rec;
	char path[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/%s.nk", dir, name);
	mesh_identity_generate(name, path, &id);
	if (id != NULL && record) {
		mesh_identity_record(id, &rec);
		mesh_keys_put(c, &rec, false);
	}
	return id;
}

static void
service_start(struct running *r, const char *name, const char *dir,
              char *state, char *seed, size_t size)
{
	struct mesh_service_opts *o;

	memset(r, 0, sizeof(*r));
	mesh_service_new(name, &r->s);
	o = mesh_service_opts(r->s);
	snprintf(state, size, "%s/state-%s", dir, name);
	snprintf(seed, size, "%s/%s.nk", dir, name);
	o->state_dir = state;
	o->map_size = 16u << 20;
	o->identity_file = seed;
	mesh_service_subscribe(r->s, "st-pay", "{\"region\":[\"eu\"]}",
	                       MESH_FILTER_SCOPE_ATTRIBUTES, 0);
	mesh_service_on(r->s, "test.pay", NULL, on_pay, NULL);
	r->c = c;
	running_start(r);
}

/* Its subscription's consumer exists once the topic counts it. */
static bool
subscribed(size_t want)
{
	struct mesh_topic_info ti;

	for (long long end = test_now_ms() + 10000; test_now_ms() < end;) {
		if (mesh_topic_info(c, "st-pay", &ti) == MESH_OK &&
		    ti.subscriptions >= want) {
			return true;
		}
		usleep(50000);
	}
	return false;
}

static int
dead_letters(const char *queue, char *reason, size_t size, int want)
{
	struct mesh_queue *q = NULL;
	int k = 0;

	for (long long end = test_now_ms() + 10000;
	     k < want && test_now_ms() < end;) {
		struct mesh_queue_msg *m = NULL;
		size_t n = 0;
		if (q == NULL && mesh_queue_open(c, queue, &q) != MESH_OK) {
			usleep(100000);
			continue;
		}
		mesh_queue_receive(q, 10, 1, -1, &m, &n);
		for (size_t i = 0; i < n; i++, k++) {
			snprintf(reason, size, "%s", m[i].dlq_reason);
			mesh_queue_delete_message(q, m[i].receipt);
		}
		mesh_queue_msgs_free(m, n);
	}
	mesh_queue_close(q);
	return k;
}

/* Whether the stored messages of stream hold text. */
static bool
stream_holds(const char *stream, const char *text)
{
	bool found = false;

	for (uint64_t seq = 1; seq <= 8 && !found; seq++) {
		natsMsg *m = NULL;
		js_GetMsg(&m, mesh_conn_js(c), stream, seq, NULL, NULL);
		found = raw_holds(m, text);
		natsMsg_Destroy(m);
	}
	return found;
}

/* Encrypted queues through the library. */
static void
queues(struct mesh_identity *pay, struct mesh_keyring *kr_pay)
{
	struct mesh_queue_attrs qa;
	struct mesh_queue *q = NULL, *f = NULL;
	struct mesh_queue_entry e = {.delay_s = -1};
	struct mesh_queue_sent sent;
	struct mesh_event *ev;
	uint32_t ids[4], cur = 0;
	size_t n = 0;
	char readers[64];

	mesh_queue_attrs_init(&qa);
	qa.encrypt = true;
	snprintf(qa.readers, sizeof(qa.readers), "payments,zed");
	is_int(mesh_queue_create(c, "sq-jobs", &qa), MESH_ENOTFOUND,
	       "queue: a reader without a key is refused");
	has_str(mesh_errdetail(), "queue 'sq-jobs': Readers: reader 'zed'",
	        "naming it");
	is_int(mesh_datakey_ids(c, "queue:sq-jobs", ids, 4, &n, &cur, NULL, 0),
	       MESH_ENOTFOUND, "and no data key is made");
	snprintf(qa.readers, sizeof(qa.readers), "payments");
	is_int(mesh_queue_create(c, "sq-jobs", &qa), MESH_OK,
	       "an encrypted queue");
	is_int(mesh_datakey_ids(c, "queue:sq-jobs", ids, 4, &n, &cur, readers,
	                        sizeof(readers)),
	       MESH_OK, "its data keys");
	ok(n == 1 && cur == 1 && strcmp(readers, "payments") == 0,
	   "key id 1, sealed to payments");
	is_int(mesh_queue_open(c, "sq-jobs", &q), MESH_OK, "opened");
	ok(mesh_queue_attrs(q)->encrypt, "Encrypt read back");
	ev = pay_event(PLAIN1, "eu");
	e.event = ev;
	is_int(mesh_queue_send(q, &e, &sent), MESH_EINVAL,
	       "an unsealed event is refused");
	has_str(mesh_errdetail(), "queue 'sq-jobs' is encrypted: seal",
	        "saying so");
	mesh_event_sign(ev, pay);
	mesh_queue_set_keyring(q, kr_pay);
	is_int(mesh_queue_send(q, &e, &sent), MESH_EINVAL,
	       "a signed event not sealed is refused, even with a keyring");
	has_str(mesh_errdetail(), "signed but not sealed (seal, then sign)",
	        "saying why");
	mesh_event_free(ev);
	ev = pay_event(PLAIN1, "eu");
	e.event = ev;
	is_int(mesh_queue_send(q, &e, &sent), MESH_OK,
	       "with a keyring the queue seals what it sends");
	ok(!mesh_event_sealed(ev), "a copy: the caller's event stays clear");
	mesh_event_free(ev);
	ok(!stream_holds("MQ_sq-jobs", "4111"), "its raw bytes: no plaintext");
	ok(stream_holds("MQ_sq-jobs", "queue:sq-jobs/1"), "naming the key id");
	mesh_queue_close(q);

	mesh_queue_attrs_init(&qa);
	qa.fifo = true;
	qa.content_based_dedup = true;
	qa.encrypt = true;
	snprintf(qa.readers, sizeof(qa.readers), "payments");
	is_int(mesh_queue_create(c, "sq-fifo.fifo", &qa), MESH_OK,
	       "an encrypted FIFO queue, content-based de-duplication");
	mesh_queue_open(c, "sq-fifo.fifo", &f);
	mesh_queue_set_keyring(f, kr_pay);
	e.delay_s = -1;
	e.group_id = "g";
	ev = pay_event(PLAIN2, "eu");
	e.event = ev;
	is_int(mesh_queue_send(f, &e, &sent), MESH_OK, "sent sealed");
	ok(!sent.duplicate, "the first");
	is_int(mesh_queue_send(f, &e, &sent), MESH_OK, "the same body again");
	ok(sent.duplicate, "is a duplicate (hashed before sealing)");
	mesh_event_free(ev);
	ok(stream_holds("MF_sq-fifo", "queue:sq-fifo.fifo/1"),
	   "stored sealed");
	ok(!stream_holds("MF_sq-fifo", "5500"), "no plaintext stored");
	mesh_queue_close(f);
}

int
main(void)
{
	struct mesh_conn_opts co;
	struct mesh_topic_attrs ta;
	struct mesh_sub_attrs sa;
	struct mesh_subscription sub;
	struct mesh_identity *admin, *pay, *bob, *eve;
	struct mesh_keyring *kr_pay = NULL, *kr_bob = NULL, *kr_admin = NULL,
	                    *kr_eve = NULL;
	struct mesh_topic *t = NULL;
	struct mesh_event *ev;
	struct running svc, other;
	uint64_t seq1 = 0, seq2 = 0, seq_us = 0;
	uint32_t ids[8], cur = 0, id = 0;
	size_t nids = 0;
	const void *data;
	size_t len;
	char dir[PATH_MAX], state[PATH_MAX + 64], seed[PATH_MAX + 64],
	        state2[PATH_MAX + 64], seed2[PATH_MAX + 64], reason[256],
	        readers[256];
	natsMsg *m;

	if (!test_tmpdir(dir, sizeof(dir))) {
		tap_skip_all("no temporary folder");
	}
	if (!test_broker_start(&broker, NULL)) {
		tap_skip_all("no nats-server");
	}
	mesh_conn_opts_init(&co);
	co.servers = broker.url;
	is_int(mesh_conn_open(&co, &c), MESH_OK, "connected");
	admin = identity(dir, "admin", true);
	pay = identity(dir, "payments", true);
	bob = identity(dir, "bob", true);
	eve = identity(dir, "eve", false);
	ok(admin && pay && bob && eve, "identities (eve not in MESH_KEYS)");

	/* Refusals. */
	mesh_topic_attrs_init(&ta);
	ta.encrypt = true;
	ta.archive_days = 1;
	snprintf(ta.readers, sizeof(ta.readers), "payments,eve");
	is_int(mesh_topic_create(c, "st-pay", &ta), MESH_ENOTFOUND,
	       "a reader without a key is refused");
	has_str(mesh_errdetail(), "reader 'eve' has no key in MESH_KEYS",
	        "and named");
	mesh_topic_attrs_init(&ta);
	mesh_topic_create(c, "st-body", &ta);
	mesh_sub_attrs_init(&sa);
	sa.filter_policy = "{\"amount\":[{\"numeric\":[\">\",10]}]}";
	sa.filter_scope = MESH_FILTER_SCOPE_BODY;
	is_int(mesh_subscription_create(c, "st-body", MESH_SUB_SERVICE,
	                                "bodysvc", &sa, &sub),
	       MESH_OK, "a MessageBody policy on a clear topic");
	mesh_subscription_fini(&sub);
	ta.encrypt = true;
	snprintf(ta.readers, sizeof(ta.readers), "payments");
	is_int(mesh_topic_set_attrs(c, "st-body", &ta), MESH_EINVAL,
	       "encrypting a topic with a MessageBody policy is refused");
	has_str(mesh_errdetail(), "MessageBody filter policy",
	        "saying which policy");

	mesh_topic_attrs_init(&ta);
	ta.encrypt = true;
	ta.archive_days = 1; /* its messages stay, to be read raw */
	snprintf(ta.readers, sizeof(ta.readers), "payments");
	is_int(mesh_topic_create(c, "st-pay", &ta), MESH_OK,
	       "an encrypted topic, reader payments");
	is_int(mesh_datakey_ids(c, "topic:st-pay", ids, 8, &nids, &cur,
	                        readers, sizeof(readers)),
	       MESH_OK, "its data keys");
	ok(nids == 1 && cur == 1, "key id 1, current");
	is_str(readers, "payments", "sealed to payments (and admin)");
	is_int(mesh_subscription_create(c, "st-pay", MESH_SUB_SERVICE,
	                                "bodysvc", &sa, &sub),
	       MESH_EINVAL, "a MessageBody policy on it is refused");
	has_str(mesh_errdetail(), "is encrypted: a MessageBody filter",
	        "with a clear error");

	/* A reader service, and a service that is not a reader. */
	service_start(&svc, "payments", dir, state, seed, sizeof(state));
	service_start(&other, "bob", dir, state2, seed2, sizeof(state2));
	ok(subscribed(2), "both services subscribed");

	is_int(mesh_topic_open(c, "st-pay", &t), MESH_OK, "opened to publish");
	ev = pay_event(PLAIN1, "eu");
	is_int(publish(t, ev, NULL), MESH_EINVAL,
	       "an unsealed event is refused");
	has_str(mesh_errdetail(), "is encrypted: seal", "saying so");
	mesh_keyring_new(c, pay, &kr_pay);
	is_int(mesh_keyring_seal(kr_pay, "topic:st-pay", ev), MESH_OK,
	       "sealed by a reader");
	ok(mesh_event_sealed(ev), "it is sealed");
	is_int(publish(t, ev, &seq1), MESH_OK, "published");
	mesh_event_free(ev);
	ev = pay_event("us text", "us");
	mesh_keyring_seal(kr_pay, "topic:st-pay", ev);
	publish(t, ev, &seq_us);
	mesh_event_free(ev);

	m = raw_at(seq1);
	ok(m != NULL, "the stored message read raw from the stream");
	ok(!raw_holds(m, PLAIN1), "its bytes are not the plaintext");
	ok(!raw_holds(m, "4111"), "nor hold any part of it");
	ok(raw_holds(m, "topic:st-pay/1"), "they name key id 1");
	ok(raw_holds(m, "region") && raw_holds(m, "eu"),
	   "the message attributes are clear");
	natsMsg_Destroy(m);

	/* Rotation: key 2 current; key 1 still opens. */
	is_int(mesh_datakey_rotate(c, "topic:st-pay", "payments", &id),
	       MESH_OK, "rotated");
	is_int((int)id, 2, "to key id 2");
	mesh_keyring_free(kr_pay);
	mesh_keyring_new(c, pay, &kr_pay);
	ev = pay_event(PLAIN2, "eu");
	mesh_keyring_seal(kr_pay, "topic:st-pay", ev);
	is_int(publish(t, ev, &seq2), MESH_OK, "published with key 2");
	mesh_event_free(ev);
	m = raw_at(seq2);
	ok(raw_holds(m, "topic:st-pay/2") && !raw_holds(m, PLAIN2),
	   "sealed with key 2, not the plaintext");
	natsMsg_Destroy(m);

	ev = stored_event(seq1);
	is_int(mesh_keyring_open(kr_pay, ev, reason, sizeof(reason)), MESH_OK,
	       "the old message opens after the rotation");
	mesh_event_data(ev, &data, &len, NULL);
	ok(len == strlen(PLAIN1) && memcmp(data, PLAIN1, len) == 0,
	   "to its plaintext");
	ok(!mesh_event_sealed(ev), "no longer marked sealed");
	mesh_event_free(ev);
	mesh_keyring_new(c, admin, &kr_admin);
	ev = stored_event(seq2);
	is_int(mesh_keyring_open(kr_admin, ev, reason, sizeof(reason)),
	       MESH_OK, "admin opens the new one");
	mesh_event_data(ev, &data, &len, NULL);
	ok(len == strlen(PLAIN2) && memcmp(data, PLAIN2, len) == 0,
	   "to its plaintext");
	mesh_event_free(ev);

	/* Not a reader. */
	mesh_keyring_new(c, bob, &kr_bob);
	ev = stored_event(seq1);
	is_int(mesh_keyring_open(kr_bob, ev, reason, sizeof(reason)),
	       MESH_EAUTH, "bob cannot open it");
	is_str(reason,
	       "sealed: 'bob' is not a reader of topic:st-pay (key id 1)",
	       "the reason");
	ok(mesh_event_sealed(ev), "it stays sealed");
	mesh_event_free(ev);
	ev = pay_event("x", "eu");
	is_int(mesh_keyring_seal(kr_bob, "topic:st-pay", ev), MESH_EAUTH,
	       "nor seal for it");
	mesh_event_free(ev);
	mesh_keyring_new(c, eve, &kr_eve);
	ev = stored_event(seq2);
	is_int(mesh_keyring_open(kr_eve, ev, reason, sizeof(reason)),
	       MESH_EAUTH, "nor can an identity not in MESH_KEYS");
	mesh_event_free(ev);
	/* Altered ciphertext. */
	ev = stored_event(seq1);
	mesh_event_data(ev, &data, &len, NULL);
	{
		uint8_t *bad = malloc(len);
		memcpy(bad, data, len);
		bad[len - 1] ^= 1;
		mesh_event_set_binary(ev, bad, len);
		free(bad);
	}
	is_int(mesh_keyring_open(kr_pay, ev, reason, sizeof(reason)),
	       MESH_EPARSE, "an altered ciphertext does not open");
	has_str(reason, "does not open", "said so");
	mesh_event_free(ev);

	/* The services. */
	for (long long end = test_now_ms() + 10000;
	     handled_now() < 2 && test_now_ms() < end;) {
		usleep(50000);
	}
	is_int(handled_now(), 2,
	       "the reader service handled both eu events (the us one "
	       "filtered on its clear attribute)");
	pthread_mutex_lock(&mu);
	is_str(last_text, PLAIN2, "as plaintext");
	pthread_mutex_unlock(&mu);
	is_int(dead_letters("bob-dlq", reason, sizeof(reason), 2), 2,
	       "the non-reader service dead-lettered both");
	has_str(reason, "sealed: 'bob' is not a reader of topic:st-pay",
	        "with the reason");
	is_int(handled_now(), 2, "and handled none");

	queues(pay, kr_pay);

	running_stop(&svc);
	running_stop(&other);
	mesh_service_free(svc.s);
	mesh_service_free(other.s);
	mesh_topic_close(t);
	mesh_keyring_free(kr_pay);
	mesh_keyring_free(kr_bob);
	mesh_keyring_free(kr_admin);
	mesh_keyring_free(kr_eve);
	mesh_identity_free(admin);
	mesh_identity_free(pay);
	mesh_identity_free(bob);
	mesh_identity_free(eve);
	mesh_conn_close(c);
	test_broker_stop(&broker);
	test_rmtree(dir);
	mesh_shutdown();
	return tap_done();
}
