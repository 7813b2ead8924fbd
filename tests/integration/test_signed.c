/* Signed events against a real nats-server: a service consuming a queue
 * and a topic that require the signer alice. A good signed event is
 * processed; a forged one, one signed with an unknown key, an unsigned
 * one and a replayed old (stale) one each end in the service's DLQ with
 * their reason, once, counted as signature_refused; a recent event
 * replayed byte for byte (another Nats-Msg-Id, so the broker does not
 * drop it) is a duplicate the processed-id table absorbs: handled once. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "harness.h"
#include "service_thread.h"
#include "mesh/identity.h"
#include "mesh/service.h"
#include "mesh/sign.h"

static struct test_broker broker;
static struct mesh_conn *c;
static struct mesh_identity *alice, *mallory;
static atomic_int handled_good, handled_other;

static mesh_handler_result
on_event(struct mesh_ctx *ctx, const struct mesh_event *ev,
         const ProtobufCMessage *msg, void *arg)
{
	const void *data;
	size_t len;

	(void)ctx;
	(void)msg;
	(void)arg;
	mesh_event_data(ev, &data, &len, NULL);
	if (len >= 4 && memcmp(data, "good", 4) == 0) {
		atomic_fetch_add(&handled_good, 1);
	} else {
		atomic_fetch_add(&handled_other, 1);
	}
	return MESH_HANDLER_OK;
}

static long long
stat_of(const char *name)
{
	natsMsg *reply = NULL;
	json_t *j = NULL;
	long long v;

	if (natsConnection_RequestString(&reply, mesh_conn_nats(c),
	                                 "mesh.service.sg.stats", "",
	                                 2000) == NATS_OK) {
		j = json_loadb(natsMsg_GetData(reply),
		               (size_t)natsMsg_GetDataLength(reply), 0, NULL);
	}
	natsMsg_Destroy(reply);
	v = j != NULL ? json_integer_value(json_object_get(j, name)) : -1;
	json_decref(j);
	return v;
}

/* An event with id and body, signed by id (NULL: unsigned), its time
 * age_s seconds ago; forged: its body changed after signing. */
static struct mesh_event *
event(const char *eid, const char *body, struct mesh_identity *by,
      long long age_s, bool forged)
{
	struct mesh_event *ev = NULL;
	int64_t now = (int64_t)time(NULL) - age_s;

	mesh_event_new("test.signed", "test", &ev);
	mesh_event_set_id(ev, eid);
	mesh_event_set_time(ev, now, 0);
	mesh_event_set_text(ev, body, strlen(body));
	if (by != NULL) {
		mesh_event_sign(ev, by);
	}
	if (forged) {
		mesh_event_set_text(ev, "good, but not what was signed", 29);
	}
	return ev;
}

static void
send_to(const char *target, bool topic, struct mesh_event *ev)
{
	if (topic) {
		struct mesh_topic *t = NULL;
		struct mesh_topic_entry e = {.event = ev};
		struct mesh_topic_published p;
		mesh_topic_open(c, target, &t);
		ok(t != NULL && mesh_topic_publish(t, &e, &p) == MESH_OK,
		   "published %s to topic %s", mesh_event_id(ev), target);
		mesh_topic_close(t);
	} else {
		struct mesh_queue *q = NULL;
		struct mesh_queue_entry e = {.event = ev, .delay_s = -1};
		struct mesh_queue_sent s;
		mesh_queue_open(c, target, &q);
		ok(q != NULL && mesh_queue_send(q, &e, &s) == MESH_OK,
		   "sent %s to queue %s", mesh_event_id(ev), target);
		mesh_queue_close(q);
	}
	mesh_event_free(ev);
}

/* The same bytes again under another Nats-Msg-Id: a replay the broker's
 * 5-minute de-duplication does not catch. */
static void
replay_raw(const char *subject, const struct mesh_event *ev)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	natsMsg *m = NULL;
	jsPubAck *ack = NULL;
	char id[128];

	mesh_event_pack(ev, &buf, &len);
	snprintf(id, sizeof(id), "replay-%s", mesh_event_id(ev));
	natsMsg_Create(&m, subject, NULL, (const char *)buf, (int)len);
	natsMsgHeader_Set(m, "Content-Type", MESH_EVENT_CONTENT_TYPE);
	natsMsgHeader_Set(m, "Nats-Msg-Id", id);
	ok(js_PublishMsg(&ack, mesh_conn_js(c), m, NULL, NULL) == NATS_OK,
	   "replayed %s's bytes to %s", mesh_event_id(ev), subject);
	jsPubAck_Destroy(ack);
	natsMsg_Destroy(m);
	free(buf);
}

struct letter {
	char id[128], reason[256], source[128];
};

static int
take_letters(struct letter *out, int want, long long ms)
{
	struct mesh_queue *q = NULL;
	int k = 0;

	for (long long end = test_now_ms() + ms;
	     k < want && test_now_ms() < end;) {
		struct mesh_queue_msg *m = NULL;
		size_t n = 0;
		if (q == NULL && mesh_queue_open(c, "sg-dlq", &q) != MESH_OK) {
			usleep(100000);
			continue;
		}
		mesh_queue_receive(q, 10, 1, -1, &m, &n);
		for (size_t i = 0; i < n && k < want; i++, k++) {
			snprintf(out[k].id, sizeof(out[k].id), "%s",
			         mesh_event_id(m[i].event));
			snprintf(out[k].reason, sizeof(out[k].reason), "%s",
			         m[i].dlq_reason);
			snprintf(out[k].source, sizeof(out[k].source), "%s",
			         m[i].dlq_source);
			mesh_queue_delete_message(q, m[i].receipt);
		}
		mesh_queue_msgs_free(m, n);
	}
	mesh_queue_close(q);
	return k;
}

static const char *
reason_of(const struct letter *l, int n, const char *id)
{
	for (int i = 0; i < n; i++) {
		if (strcmp(l[i].id, id) == 0) {
			return l[i].reason;
		}
	}
	return NULL;
}

int
main(void)
{
	struct mesh_conn_opts o;
	struct mesh_queue_attrs qa;
	struct mesh_topic_attrs ta;
	struct mesh_key_record k;
	struct mesh_service_opts *so;
	struct running r;
	struct letter l[16];
	struct mesh_event *good;
	char dir[PATH_MAX], path[PATH_MAX + 32];
	int n;

	if (!test_broker_start(&broker, NULL) ||
	    !test_tmpdir(dir, sizeof(dir))) {
		tap_skip_all("nats-server did not start");
	}
	mesh_conn_opts_init(&o);
	o.servers = broker.url;
	mesh_conn_open(&o, &c);

	snprintf(path, sizeof(path), "%s/alice.nk", dir);
	mesh_identity_generate("alice", path, &alice);
	snprintf(path, sizeof(path), "%s/mallory.nk", dir);
	mesh_identity_generate("mallory", path, &mallory);
	mesh_identity_record(alice, &k);
	is_int(mesh_keys_put(c, &k, false), MESH_OK, "alice's key recorded");
	/* mallory has a key, but no target requires her. */
	mesh_identity_record(mallory, &k);
	mesh_keys_put(c, &k, false);

	mesh_queue_attrs_init(&qa);
	snprintf(qa.require_signers, sizeof(qa.require_signers), "alice");
	is_int(mesh_queue_create(c, "sg-in", &qa), MESH_OK,
	       "queue sg-in requires alice");
	mesh_topic_attrs_init(&ta);
	snprintf(ta.require_signers, sizeof(ta.require_signers), "alice");
	is_int(mesh_topic_create(c, "sg-topic", &ta), MESH_OK,
	       "topic sg-topic requires alice");

	memset(&r, 0, sizeof(r));
	mesh_conn_open(&o, &r.c);
	mesh_service_new("sg", &r.s);
	so = mesh_service_opts(r.s);
	snprintf(path, sizeof(path), "%s/state", dir);
	so->state_dir = path;
	so->horizon_s = 7 * 86400;
	mesh_service_consume(r.s, "sg-in");
	mesh_service_subscribe(r.s, "sg-topic", NULL,
	                       MESH_FILTER_SCOPE_ATTRIBUTES, 0);
	mesh_service_on(r.s, "test.signed", NULL, on_event, NULL);
	running_start(&r);
	/* Its topic subscription exists once it answers its stats. */
	for (long long end = test_now_ms() + 10000;
	     stat_of("received") < 0 && test_now_ms() < end;) {
		usleep(50000);
	}

	for (int topic = 0; topic < 2; topic++) {
		const char *to = topic ? "sg-topic" : "sg-in";
		const char *p = topic ? "t-" : "q-";
		char id[5][32];
		const char *kinds[] = {"good", "forged", "unknown", "missing",
		                       "stale"};
		for (int i = 0; i < 5; i++) {
			snprintf(id[i], sizeof(id[i]), "%s%s", p, kinds[i]);
		}
		good = event(id[0], "good", alice, 0, false);
		if (!topic) {
			/* Kept to replay later. */
			struct mesh_event *copy = NULL;
			mesh_event_dup(good, &copy);
			send_to(to, false, copy);
			replay_raw("mesh.queue.sg-in", good);
		} else {
			send_to(to, true, good);
			good = NULL;
		}
		mesh_event_free(good);
		send_to(to, topic, event(id[1], "forged", alice, 0, true));
		send_to(to, topic,
		        event(id[2], "stranger", mallory, 0, false));
		send_to(to, topic, event(id[3], "unsigned", NULL, 0, false));
		send_to(to, topic,
		        event(id[4], "old", alice, 8 * 86400, false));
	}

	n = take_letters(l, 8, 20000);
	for (int i = 0; i < n; i++) {
		tap_diag("dead letter %s from %s: %s", l[i].id, l[i].source,
		         l[i].reason);
	}
	is_int(n, 8, "4 refused events of each source in the DLQ");
	for (int topic = 0; topic < 2; topic++) {
		char id[32];
		const char *p = topic ? "t-" : "q-";
		snprintf(id, sizeof(id), "%sforged", p);
		has_str(reason_of(l, n, id),
		        "signature: forged (signer 'alice'",
		        "%s: signature: forged", id);
		snprintf(id, sizeof(id), "%sunknown", p);
		has_str(reason_of(l, n, id), "signature: unknown key U",
		        "%s: signature: unknown key", id);
		has_str(reason_of(l, n, id), mesh_identity_public(mallory),
		        "%s: naming the key", id);
		snprintf(id, sizeof(id), "%smissing", p);
		has_str(reason_of(l, n, id), "signature: missing",
		        "%s: signature: missing", id);
		snprintf(id, sizeof(id), "%sstale", p);
		has_str(reason_of(l, n, id), "signature: stale event time",
		        "%s: signature: stale event time (a replayed old "
		        "event)",
		        id);
		ok(reason_of(l, n, topic ? "t-good" : "q-good") == NULL,
		   "%sgood is not dead-lettered", p);
	}
	for (long long end = test_now_ms() + 10000;
	     test_now_ms() < end &&
	     (atomic_load(&handled_good) < 2 || stat_of("duplicates") < 1);) {
		usleep(50000);
	}
	usleep(300000);
	is_int(atomic_load(&handled_good), 2,
	       "the good events are handled, once each: the replayed copy "
	       "is not");
	is_int(stat_of("duplicates"), 1,
	       "the replay is a duplicate (the processed-id table)");
	is_int(atomic_load(&handled_other), 0, "no refused event is handled");
	is_int(stat_of("signature_refused"), 8,
	       "8 counted as "
	       "signature_refused");
	is_int(stat_of("retried"), 0, "none retried");

	running_stop(&r);
	is_int(r.err, MESH_OK, "the service stops cleanly");
	mesh_service_free(r.s);
	mesh_conn_close(r.c);
	mesh_identity_free(alice);
	mesh_identity_free(mallory);
	mesh_conn_close(c);
	test_broker_stop(&broker);
	test_rmtree(dir);
	mesh_shutdown();
	return tap_done();
}
