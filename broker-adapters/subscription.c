/* subscription.c: subscriptions to topics, their records, and consuming
 * them (see mesh/subscription.h). */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "internal.h"
#include "mesh/pbjson.h"
#include "mesh/queue.h"
#include "mesh/subscription.h"
#include "mesh/topic.h"
#include "mesh/wire.h"

#define KV_SUBJECT   "$KV." MESH__RECORDS_BUCKET "."
#define ACK_WAIT_NS  (30 * (int64_t)1000000000)
#define PENDING_FIFO MESH_SUBSCRIPTION_BATCH
#define PENDING_STD  20000
#define SERVICE_MAX  64
#define NS_PER_MS    ((int64_t)1000000)

void
mesh_sub_attrs_init(struct mesh_sub_attrs *a)
{
	memset(a, 0, sizeof(*a));
	a->filter_scope = MESH_FILTER_SCOPE_ATTRIBUTES;
}

void
mesh_subscription_fini(struct mesh_subscription *s)
{
	if (s != NULL) {
		free(s->filter_policy);
		s->filter_policy = NULL;
	}
}

const char *
mesh_sub_protocol_name(mesh_sub_protocol p)
{
	return p == MESH_SUB_SERVICE ? "service" : "sqs";
}

mesh_err
mesh_sub_protocol_parse(const char *s, mesh_sub_protocol *out)
{
	if (strcmp(s, "sqs") == 0 || strcmp(s, "queue") == 0) {
		*out = MESH_SUB_QUEUE;
	} else if (strcmp(s, "service") == 0) {
		*out = MESH_SUB_SERVICE;
	} else {
		return mesh_err_set(MESH_EINVAL,
		                    "protocol '%s': must be sqs or service",
		                    s);
	}
	return MESH_OK;
}

/* ---- ids and records ---------------------------------------------------- */

/* The hex that names a subscription: a hash of topic and endpoint, so
 * that subscribing twice finds the first. */
static void
sub_hex(const char *topic, mesh_sub_protocol p, const char *endpoint,
        char hex[17])
{
	crypto_generichash_state st;
	uint8_t h[8];

	crypto_generichash_init(&st, NULL, 0, sizeof(h));
	crypto_generichash_update(&st, (const uint8_t *)topic,
	                          strlen(topic) + 1);
	crypto_generichash_update(&st, (const uint8_t *)&p, sizeof(p));
	crypto_generichash_update(&st, (const uint8_t *)endpoint,
	                          strlen(endpoint));
	crypto_generichash_final(&st, h, sizeof(h));
	sodium_bin2hex(hex, 17, h, sizeof(h));
}

void
mesh_subscription_names(const char *topic, mesh_sub_protocol p,
                        const char *endpoint,
                        char id[MESH_SUBSCRIPTION_ID_MAX + 1],
                        char consumer[24])
{
	char hex[17];

	sub_hex(topic, p, endpoint, hex);
	if (id != NULL) {
		snprintf(id, MESH_SUBSCRIPTION_ID_MAX + 1, "%.255s:%s", topic,
		         hex);
	}
	snprintf(consumer, 24, "S_%s", hex);
}

/* Split an id "TOPIC:HEX" into the record's key "TOPIC.HEX" and the
 * topic. */
static mesh_err
id_parse(const char *id, char *topic, size_t tsize, char *key, size_t ksize)
{
	const char *colon = id ? strrchr(id, ':') : NULL;
	size_t tl = colon ? (size_t)(colon - id) : 0;

	if (colon == NULL || tl == 0 || tl >= tsize ||
	    strlen(colon + 1) != 16 ||
	    strspn(colon + 1, "0123456789abcdef") != 16) {
		return mesh_err_set(MESH_EINVAL,
		                    "subscription id '%.300s': must be "
		                    "TOPIC:<16 hex digits>",
		                    id ? id : "");
	}
	memcpy(topic, id, tl);
	topic[tl] = '\0';
	if (mesh_topic_name_check(topic, NULL) != MESH_OK) {
		return mesh_err_set(MESH_EINVAL,
		                    "subscription id '%.300s': names no valid "
		                    "topic",
		                    id);
	}
	snprintf(key, ksize, "%s.%s", topic, colon + 1);
	return MESH_OK;
}

mesh_err
mesh__subscription_id_check(const char *id)
{
	char topic[256], key[MESH_SUBSCRIPTION_ID_MAX + 1];

	return id_parse(id, topic, sizeof(topic), key, sizeof(key));
}

/* The policy in one canonical form, so that equal policies compare
 * equal; validated for its scope. *out NULL when there is no policy. */
static mesh_err
policy_canon(const char *policy, mesh_filter_scope scope, char **out)
{
	struct mesh_filter *f = NULL;
	json_t *j;
	mesh_err err;

	*out = NULL;
	if (policy == NULL) {
		return MESH_OK;
	}
	if ((err = mesh_filter_compile(policy, strlen(policy), scope, &f)) !=
	    MESH_OK) {
		return err;
	}
	mesh_filter_free(f);
	if ((j = json_loads(policy, 0, NULL)) == NULL ||
	    (*out = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS)) == NULL) {
		json_decref(j);
		return mesh_err_set(MESH_ENOMEM, "filter policy");
	}
	json_decref(j);
	return MESH_OK;
}

/* A MessageBody policy reads the payload, which an encrypted topic's
 * events carry sealed. */
static mesh_err
body_check(const char *topic, const struct mesh_topic_attrs *ta,
           const struct mesh_sub_attrs *a)
{
	if (!ta->encrypt || a->filter_policy == NULL ||
	    a->filter_scope != MESH_FILTER_SCOPE_BODY) {
		return MESH_OK;
	}
	return mesh_err_set(MESH_EINVAL,
	                    "topic '%s' is encrypted: a MessageBody filter "
	                    "policy cannot read its sealed payloads (use "
	                    "MessageAttributes scope: message attributes "
	                    "travel in clear)",
	                    topic);
}

static char *
record_encode(const struct mesh_subscription *s)
{
	json_t *j = json_pack(
	        "{s:s, s:s, s:s, s:s, s:s, s:b, s:I, s:I, s:s}", "id", s->id,
	        "topic", s->topic, "protocol",
	        mesh_sub_protocol_name(s->protocol), "endpoint", s->endpoint,
	        "filter_scope", mesh_filter_scope_name(s->filter_scope), "raw",
	        s->raw, "replay_from", (json_int_t)s->replay_from_ms,
	        "created", (json_int_t)s->created_ms, "consumer", s->consumer);
	char *text;

	if (j != NULL && s->filter_policy != NULL) {
		json_object_set_new(j, "filter_policy",
		                    json_string(s->filter_policy));
	}
	text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	return text;
}

mesh_err
mesh__subscription_decode(const char *key, const void *data, size_t len,
                          struct mesh_subscription *s)
{
	json_t *j = json_loadb(data, len, 0, NULL);
	const char *id = NULL, *topic = NULL, *proto = NULL, *endpoint = NULL,
	           *scope = NULL, *policy = NULL, *consumer = NULL;
	json_int_t replay = 0, created = 0;
	int raw = 0;
	mesh_err err = MESH_OK;

	memset(s, 0, sizeof(*s));
	if (j == NULL ||
	    json_unpack(
	            j, "{s:s, s:s, s:s, s:s, s:s, s:b, s:I, s:I, s:s, s?s}",
	            "id", &id, "topic", &topic, "protocol", &proto, "endpoint",
	            &endpoint, "filter_scope", &scope, "raw", &raw,
	            "replay_from", &replay, "created", &created, "consumer",
	            &consumer, "filter_policy", &policy) != 0 ||
	    mesh_sub_protocol_parse(proto, &s->protocol) != MESH_OK ||
	    mesh_filter_scope_parse(scope, &s->filter_scope) != MESH_OK) {
		json_decref(j);
		return mesh_err_set(MESH_EBROKER,
		                    "subscription record %s: damaged", key);
	}
	snprintf(s->id, sizeof(s->id), "%s", id);
	snprintf(s->topic, sizeof(s->topic), "%s", topic);
	snprintf(s->endpoint, sizeof(s->endpoint), "%s", endpoint);
	snprintf(s->consumer, sizeof(s->consumer), "%s", consumer);
	s->raw = raw != 0;
	s->replay_from_ms = replay;
	s->created_ms = created;
	if (policy != NULL && (s->filter_policy = strdup(policy)) == NULL) {
		err = mesh_err_set(MESH_ENOMEM, "subscription %s", id);
	}
	json_decref(j);
	return err;
}

/* Read a record; MESH_ENOTFOUND when there is none. */
static mesh_err
record_get(kvStore *kv, const char *key, struct mesh_subscription *s)
{
	kvEntry *e = NULL;
	natsStatus st = kvStore_Get(&e, kv, key);
	mesh_err err;

	if (st == NATS_NOT_FOUND) {
		return mesh_err_set(MESH_ENOTFOUND,
		                    "subscription %s: does not exist", key);
	}
	if (st != NATS_OK) {
		return mesh_err_nats(st, 0, "subscription %s", key);
	}
	err = mesh__subscription_decode(key, kvEntry_Value(e),
	                                (size_t)kvEntry_ValueLen(e), s);
	s->revision = kvEntry_Revision(e);
	kvEntry_Destroy(e);
	return err;
}

static mesh_err
record_put(kvStore *kv, const char *key, const struct mesh_subscription *s,
           bool create)
{
	char *text = record_encode(s);
	uint64_t rev;
	natsStatus st;

	if (text == NULL) {
		return mesh_err_set(MESH_ENOMEM, "subscription %s", s->id);
	}
	st = create ? kvStore_CreateString(&rev, kv, key, text)
	            : kvStore_PutString(&rev, kv, key, text);
	free(text);
	if (st != NATS_OK) {
		return mesh_err_nats(st, 0, "subscription %s: storing", s->id);
	}
	return MESH_OK;
}

/* ---- the consumer ------------------------------------------------------- */

static mesh_err
consumer_pending(struct mesh_conn *c, const char *topic, const char *consumer,
                 struct mesh_subscription *out)
{
	char stream[MESH_TOPIC_NAME_MAX + 8],
	        subject[MESH_TOPIC_NAME_MAX + 16];
	jsConsumerInfo *ci = NULL;
	jsErrCode jerr = 0;
	natsStatus s;

	mesh__topic_names(topic, stream, sizeof(stream), subject,
	                  sizeof(subject));
	s = js_GetConsumerInfo(&ci, mesh_conn_js(c), stream, consumer, NULL,
	                       &jerr);
	if (s != NATS_OK) {
		if (s == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr ||
		    jerr == JSStreamNotFoundErr) {
			return mesh_err_set(
			        MESH_ENOTFOUND,
			        "subscription %s on topic '%s': its "
			        "consumer is gone",
			        consumer, topic);
		}
		return mesh_err_nats(s, jerr, "consumer %s", consumer);
	}
	out->pending = ci->NumPending + (uint64_t)ci->NumAckPending;
	out->in_flight = (uint64_t)ci->NumAckPending;
	out->delivered = ci->Delivered.Stream;
	jsConsumerInfo_Destroy(ci);
	return MESH_OK;
}

static mesh_err
consumer_create(struct mesh_conn *c, const struct mesh_subscription *s,
                bool fifo, bool *created)
{
	char stream[MESH_TOPIC_NAME_MAX + 8],
	        subject[MESH_TOPIC_NAME_MAX + 16];
	jsConsumerConfig cc;
	jsConsumerInfo *ci = NULL;
	jsErrCode jerr = 0;
	natsStatus st;

	mesh__topic_names(s->topic, stream, sizeof(stream), subject,
	                  sizeof(subject));
	*created = false;
	st = js_GetConsumerInfo(&ci, mesh_conn_js(c), stream, s->consumer,
	                        NULL, &jerr);
	jsConsumerInfo_Destroy(ci);
	ci = NULL;
	if (st == NATS_OK) {
		return MESH_OK; /* left by an earlier attempt */
	}
	jsConsumerConfig_Init(&cc);
	cc.Durable = s->consumer;
	cc.AckPolicy = js_AckExplicit;
	cc.AckWait = ACK_WAIT_NS;
	cc.MaxDeliver = -1;
	/* A FIFO subscription's batch is all that is out at once, which
	 * keeps the order whoever takes it. */
	cc.MaxAckPending = fifo ? PENDING_FIFO : PENDING_STD;
	cc.MaxWaiting = 512;
	if (s->replay_from_ms > 0) {
		cc.DeliverPolicy = js_DeliverByStartTime;
		cc.OptStartTime = s->replay_from_ms * NS_PER_MS;
	} else {
		cc.DeliverPolicy = js_DeliverNew;
	}
	st = js_AddConsumer(&ci, mesh_conn_js(c), stream, &cc, NULL, &jerr);
	jsConsumerInfo_Destroy(ci);
	if (st != NATS_OK) {
		return mesh_err_nats(st, jerr, "subscription %s: consumer",
		                     s->id);
	}
	*created = true;
	return MESH_OK;
}

static void
consumer_delete(struct mesh_conn *c, const char *topic, const char *consumer)
{
	char stream[MESH_TOPIC_NAME_MAX + 8],
	        subject[MESH_TOPIC_NAME_MAX + 16];

	if (mesh__topic_names(topic, stream, sizeof(stream), subject,
	                      sizeof(subject)) == MESH_OK) {
		js_DeleteConsumer(mesh_conn_js(c), stream, consumer, NULL,
		                  NULL);
	}
}

/* ---- the calls ---------------------------------------------------------- */

static bool
same_attrs(const struct mesh_subscription *x,
           const struct mesh_subscription *y)
{
	return x->filter_scope == y->filter_scope && x->raw == y->raw &&
	       x->replay_from_ms == y->replay_from_ms &&
	       (x->filter_policy == NULL) == (y->filter_policy == NULL) &&
	       (x->filter_policy == NULL ||
	        strcmp(x->filter_policy, y->filter_policy) == 0);
}

/* Check an endpoint against the topic: the queue exists and is of the
 * topic's kind. */
static mesh_err
endpoint_check(struct mesh_conn *c, const char *topic, bool topic_fifo,
               bool topic_encrypt, mesh_sub_protocol p, const char *endpoint)
{
	struct mesh_queue_info qi;
	bool fifo;
	mesh_err err;

	if (p == MESH_SUB_SERVICE) {
		return mesh_name_check("service", endpoint, SERVICE_MAX, NULL);
	}
	if ((err = mesh_queue_name_check(endpoint, &fifo)) != MESH_OK ||
	    (err = mesh_queue_info(c, endpoint, &qi)) != MESH_OK) {
		return err;
	}
	if (topic_fifo != fifo) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "topic '%s' is %s and queue '%s' is %s: a "
		        "FIFO topic delivers to FIFO queues only, a "
		        "standard topic to standard queues",
		        topic, topic_fifo ? "FIFO" : "standard", endpoint,
		        fifo ? "FIFO" : "standard");
	}
	/* The router cannot seal (it holds no key): a clear topic's events
	 * would reach an encrypted queue in clear. */
	if (qi.attrs.encrypt && !topic_encrypt) {
		return mesh_err_set(MESH_EINVAL,
		                    "queue '%s' is encrypted and topic '%s' "
		                    "is not: its events would reach the queue "
		                    "in clear (encrypt the topic: topic "
		                    "set-attributes %s --encrypt --readers "
		                    "A,B)",
		                    endpoint, topic, topic);
	}
	return MESH_OK;
}

mesh_err
mesh_subscription_create(struct mesh_conn *c, const char *topic,
                         mesh_sub_protocol p, const char *endpoint,
                         const struct mesh_sub_attrs *a,
                         struct mesh_subscription *out)
{
	struct mesh_subscription s, old;
	struct mesh_topic_info ti;
	kvStore *kv = NULL;
	char hex[17], key[MESH_SUBSCRIPTION_ID_MAX + 1];
	bool created = false, raced = false;
	mesh_err err;

	memset(&s, 0, sizeof(s));
	memset(&old, 0, sizeof(old));
	if ((err = mesh_topic_info(c, topic, &ti)) != MESH_OK ||
	    (err = endpoint_check(c, topic, ti.a.fifo, ti.a.encrypt, p,
	                          endpoint)) != MESH_OK ||
	    (err = body_check(topic, &ti.a, a)) != MESH_OK ||
	    (err = policy_canon(a->filter_policy, a->filter_scope,
	                        &s.filter_policy)) != MESH_OK) {
		return err;
	}
	if (a->replay_from_ms != 0 && ti.a.archive_days == 0) {
		err = mesh_err_set(MESH_EINVAL,
		                   "topic '%s' keeps no archive, so there is "
		                   "nothing to replay (create it with an "
		                   "archive)",
		                   topic);
		goto out;
	}
	if (a->replay_from_ms < 0) {
		err = mesh_err_set(MESH_EINVAL,
		                   "replay from %" PRId64 ": not a time",
		                   a->replay_from_ms);
		goto out;
	}
	sub_hex(topic, p, endpoint, hex);
	snprintf(s.id, sizeof(s.id), "%s:%s", topic, hex);
	snprintf(key, sizeof(key), "%s.%s", topic, hex);
	snprintf(s.topic, sizeof(s.topic), "%s", topic);
	snprintf(s.endpoint, sizeof(s.endpoint), "%s", endpoint);
	snprintf(s.consumer, sizeof(s.consumer), "S_%s", hex);
	s.protocol = p;
	s.filter_scope = a->filter_scope;
	s.raw = a->raw;
	s.replay_from_ms = a->replay_from_ms;
	s.created_ms = now_ms();
	if ((err = mesh__records_bucket(c, &kv)) != MESH_OK) {
		goto out;
	}
again:
	err = record_get(kv, key, &old);
	if (err == MESH_OK) {
		if (same_attrs(&old, &s)) {
			goto found;
		}
		if (p != MESH_SUB_SERVICE) {
			err = mesh_err_set(
			        MESH_EEXIST,
			        "subscription %s: already exists with "
			        "different attributes (change them "
			        "with subscription set-attributes)",
			        s.id);
			goto out;
		}
		/* A service's declaration wins; its start point stays. */
		s.created_ms = old.created_ms;
		s.replay_from_ms = old.replay_from_ms;
		if ((err = record_put(kv, key, &s, false)) != MESH_OK) {
			goto out;
		}
		mesh_subscription_fini(&old);
		old = s;
		memset(&s, 0, sizeof(s));
		goto found;
	}
	if (err != MESH_ENOTFOUND) {
		goto out;
	}
	/* The consumer first, then the record that makes the subscription
	 * visible; a failure takes the consumer back. */
	if ((err = consumer_create(c, &s, ti.a.fifo, &created)) != MESH_OK) {
		goto out;
	}
	if ((err = record_put(kv, key, &s, true)) != MESH_OK) {
		/* Another creator stored it first (two instances of a service
		 * starting at once): its record stands, and the consumer is
		 * its too (both made the same one: taking it back would lose
		 * what the topic holds for it meanwhile). */
		if (!raced && record_get(kv, key, &old) == MESH_OK) {
			mesh_subscription_fini(&old);
			memset(&old, 0, sizeof(old));
			raced = true;
			goto again;
		}
		if (created) {
			consumer_delete(c, topic, s.consumer);
		}
		goto out;
	}
	if (out != NULL) {
		*out = s;
		memset(&s, 0, sizeof(s));
	}
	goto out;
found:
	/* A consumer lost to a crash between the two steps is made again. */
	err = consumer_create(c, &old, ti.a.fifo, &created);
	if (err == MESH_OK && out != NULL) {
		*out = old;
		memset(&old, 0, sizeof(old));
	}
out:
	mesh_subscription_fini(&s);
	mesh_subscription_fini(&old);
	kvStore_Destroy(kv);
	return err;
}

mesh_err
mesh_subscription_get(struct mesh_conn *c, const char *id,
                      struct mesh_subscription *out)
{
	char topic[256], key[MESH_SUBSCRIPTION_ID_MAX + 1];
	kvStore *kv = NULL;
	mesh_err err;

	if ((err = id_parse(id, topic, sizeof(topic), key, sizeof(key))) !=
	            MESH_OK ||
	    (err = mesh__records_bucket(c, &kv)) != MESH_OK) {
		return err;
	}
	err = record_get(kv, key, out);
	kvStore_Destroy(kv);
	if (err == MESH_ENOTFOUND) {
		return mesh_err_set(MESH_ENOTFOUND,
		                    "subscription %s: does not exist", id);
	}
	if (err == MESH_OK) {
		err = consumer_pending(c, out->topic, out->consumer, out);
		if (err == MESH_ENOTFOUND) {
			err = MESH_OK; /* shown as 0; a subscribe repairs it */
		}
		if (err != MESH_OK) {
			mesh_subscription_fini(out);
		}
	}
	return err;
}

mesh_err
mesh_subscription_set_attrs(struct mesh_conn *c, const char *id,
                            const struct mesh_sub_attrs *a)
{
	struct mesh_subscription s;
	char topic[256], key[MESH_SUBSCRIPTION_ID_MAX + 1], *policy = NULL;
	kvStore *kv = NULL;
	mesh_err err;

	if ((err = id_parse(id, topic, sizeof(topic), key, sizeof(key))) !=
	    MESH_OK) {
		return err;
	}
	if (a->filter_policy != NULL &&
	    a->filter_scope == MESH_FILTER_SCOPE_BODY) {
		struct mesh_topic_info ti;
		if ((err = mesh_topic_info(c, topic, &ti)) != MESH_OK ||
		    (err = body_check(topic, &ti.a, a)) != MESH_OK) {
			return err;
		}
	}
	if ((err = policy_canon(a->filter_policy, a->filter_scope, &policy)) !=
	    MESH_OK) {
		return err;
	}
	if ((err = mesh__records_bucket(c, &kv)) != MESH_OK) {
		free(policy);
		return err;
	}
	if ((err = record_get(kv, key, &s)) == MESH_OK) {
		free(s.filter_policy);
		s.filter_policy = policy;
		s.filter_scope = a->filter_scope;
		s.raw = a->raw;
		err = record_put(kv, key, &s, false);
		mesh_subscription_fini(&s);
	} else {
		free(policy);
	}
	kvStore_Destroy(kv);
	return err;
}

mesh_err
mesh_subscription_delete(struct mesh_conn *c, const char *id)
{
	struct mesh_subscription s;
	char topic[256], key[MESH_SUBSCRIPTION_ID_MAX + 1];
	kvStore *kv = NULL;
	natsStatus st;
	mesh_err err;

	if ((err = id_parse(id, topic, sizeof(topic), key, sizeof(key))) !=
	            MESH_OK ||
	    (err = mesh__records_bucket(c, &kv)) != MESH_OK) {
		return err;
	}
	if ((err = record_get(kv, key, &s)) != MESH_OK) {
		kvStore_Destroy(kv);
		return err == MESH_ENOTFOUND
		               ? mesh_err_set(
		                         MESH_ENOTFOUND,
		                         "subscription %s: does not exist", id)
		               : err;
	}
	/* The record first: without it the router stops forwarding; then
	 * the consumer, which lets the topic's stream drop what only this
	 * subscription still held. */
	st = kvStore_Delete(kv, key);
	if (st == NATS_OK) {
		consumer_delete(c, topic, s.consumer);
	}
	mesh_subscription_fini(&s);
	kvStore_Destroy(kv);
	return st == NATS_OK ? MESH_OK
	                     : mesh_err_nats(st, 0, "subscription %s", id);
}

static int
cmp_sub(const void *a, const void *b)
{
	return strcmp(((const struct mesh_subscription *)a)->id,
	              ((const struct mesh_subscription *)b)->id);
}

mesh_err
mesh_subscription_list(struct mesh_conn *c, const char *topic,
                       struct mesh_subscription **out, size_t *n)
{
	struct mesh_subscription *subs = NULL;
	kvKeysList keys;
	kvStore *kv = NULL;
	size_t nk = 0, k = 0;
	mesh_err err;

	*out = NULL;
	*n = 0;
	if (topic != NULL &&
	    (err = mesh_topic_name_check(topic, NULL)) != MESH_OK) {
		return err;
	}
	if ((err = mesh__records_bucket(c, &kv)) != MESH_OK) {
		return err;
	}
	if ((err = mesh__records_keys(kv, &keys, &nk)) != MESH_OK) {
		kvStore_Destroy(kv);
		return err;
	}
	if (nk > 0 && (subs = calloc(nk, sizeof(*subs))) == NULL) {
		err = mesh_err_set(MESH_ENOMEM, "listing subscriptions");
	}
	for (size_t i = 0; err == MESH_OK && i < nk; i++) {
		if (topic != NULL &&
		    !mesh__records_of_topic(keys.Keys[i], topic)) {
			continue;
		}
		err = record_get(kv, keys.Keys[i], &subs[k]);
		if (err == MESH_ENOTFOUND) { /* deleted meanwhile */
			err = MESH_OK;
			continue;
		}
		if (err == MESH_OK) {
			mesh_err e2 = consumer_pending(
			        c, subs[k].topic, subs[k].consumer, &subs[k]);
			k++;
			if (e2 != MESH_OK && e2 != MESH_ENOTFOUND) {
				err = e2;
			}
		}
	}
	if (nk > 0) {
		kvKeysList_Destroy(&keys);
	}
	kvStore_Destroy(kv);
	if (err != MESH_OK) {
		mesh_subscription_list_free(subs, k);
		return err;
	}
	if (k > 1) { /* subs is NULL when there are none: not for qsort */
		qsort(subs, k, sizeof(*subs), cmp_sub);
	}
	*out = subs;
	*n = k;
	return MESH_OK;
}

void
mesh_subscription_list_free(struct mesh_subscription *subs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		mesh_subscription_fini(&subs[i]);
	}
	free(subs);
}

/* ---- consuming ---------------------------------------------------------- */

struct mesh_subscriber {
	struct mesh_conn *c;
	kvStore *kv;
	char key[MESH_SUBSCRIPTION_ID_MAX + 1];
	struct mesh_subscription rec;
	struct mesh_filter *filter; /* NULL: every message */
	natsSubscription *pull;
	natsSubscription *watch; /* the record's changes */
	atomic_bool changed;
};

static void
on_change(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
	struct mesh_subscriber *s = arg;

	(void)nc;
	(void)sub;
	atomic_store(&s->changed, true);
	natsMsg_Destroy(m);
}

/* Read the record again and compile its policy. */
static mesh_err
reload(struct mesh_subscriber *s)
{
	struct mesh_subscription rec;
	struct mesh_filter *f = NULL;
	mesh_err err;

	atomic_store(&s->changed, false);
	if ((err = record_get(s->kv, s->key, &rec)) != MESH_OK) {
		return err;
	}
	if (rec.filter_policy != NULL &&
	    (err = mesh_filter_compile(rec.filter_policy,
	                               strlen(rec.filter_policy),
	                               rec.filter_scope, &f)) != MESH_OK) {
		mesh_subscription_fini(&rec);
		return err;
	}
	mesh_filter_free(s->filter);
	mesh_subscription_fini(&s->rec);
	s->filter = f;
	s->rec = rec;
	return MESH_OK;
}

mesh_err
mesh_subscriber_bind(struct mesh_conn *c, const char *id,
                     struct mesh_subscriber **out)
{
	struct mesh_subscriber *s = calloc(1, sizeof(*s));
	char topic[256], stream[MESH_TOPIC_NAME_MAX + 8],
	        subject[MESH_TOPIC_NAME_MAX + 16], watch[400];
	jsSubOptions so;
	jsErrCode jerr = 0;
	natsStatus st;
	mesh_err err;

	if (s == NULL) {
		return mesh_err_set(MESH_ENOMEM, "subscription %s", id);
	}
	s->c = c;
	if ((err = id_parse(id, topic, sizeof(topic), s->key,
	                    sizeof(s->key))) != MESH_OK ||
	    (err = mesh__records_bucket(c, &s->kv)) != MESH_OK) {
		goto fail;
	}
	/* Watch before reading, so that no change slips between. */
	snprintf(watch, sizeof(watch), "%s%s", KV_SUBJECT, s->key);
	st = natsConnection_Subscribe(&s->watch, mesh_conn_nats(c), watch,
	                              on_change, s);
	if (st != NATS_OK) {
		err = mesh_err_nats(st, 0, "subscription %s: watching", id);
		goto fail;
	}
	if ((err = reload(s)) != MESH_OK) {
		goto fail;
	}
	mesh__topic_names(topic, stream, sizeof(stream), subject,
	                  sizeof(subject));
	jsSubOptions_Init(&so);
	so.Stream = stream;
	so.Consumer = s->rec.consumer;
	st = js_PullSubscribe(&s->pull, mesh_conn_js(c), subject,
	                      s->rec.consumer, NULL, &so, &jerr);
	if (st != NATS_OK) {
		err = (st == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr)
		              ? mesh_err_set(
		                        MESH_ENOTFOUND,
		                        "subscription %s: its consumer is "
		                        "gone",
		                        id)
		              : mesh_err_nats(st, jerr, "subscription %s", id);
		goto fail;
	}
	*out = s;
	return MESH_OK;
fail:
	mesh_subscriber_close(s);
	return err;
}

mesh_err
mesh_subscriber_open(struct mesh_conn *c, const char *topic,
                     const char *service, const struct mesh_sub_attrs *a,
                     struct mesh_subscriber **out)
{
	struct mesh_subscription rec;
	mesh_err err;

	if ((err = mesh_subscription_create(c, topic, MESH_SUB_SERVICE,
	                                    service, a, &rec)) != MESH_OK) {
		return err;
	}
	err = mesh_subscriber_bind(c, rec.id, out);
	mesh_subscription_fini(&rec);
	return err;
}

void
mesh_subscriber_close(struct mesh_subscriber *s)
{
	if (s == NULL) {
		return;
	}
	if (s->watch != NULL) {
		natsSubscription_Unsubscribe(s->watch);
		natsSubscription_WaitForDrainCompletion(s->watch, 0);
		natsSubscription_Destroy(s->watch);
	}
	if (s->pull != NULL) {
		/* Unsubscribing a bound pull subscription would delete the
		 * durable consumer; only let it go. */
		natsSubscription_Destroy(s->pull);
	}
	mesh_filter_free(s->filter);
	mesh_subscription_fini(&s->rec);
	kvStore_Destroy(s->kv);
	free(s);
}

const struct mesh_subscription *
mesh_subscriber_subscription(const struct mesh_subscriber *s)
{
	return &s->rec;
}

/* MessageBody scope reads protobuf payloads as their JSON mapping. */
bool
mesh__subscription_matches(const struct mesh_filter *f,
                           const struct mesh_event *ev)
{
	const void *data;
	size_t len;
	json_t *body = NULL;
	bool match;

	if (mesh_filter_scope_of(f) != MESH_FILTER_SCOPE_BODY ||
	    mesh_event_data(ev, &data, &len, NULL) != MESH_DATA_PROTO) {
		return mesh_filter_match_event(f, ev);
	}
	match = mesh__pbjson_event_fields(ev, &body) == MESH_OK &&
	        mesh_filter_match_json(f, body);
	json_decref(body);
	return match;
}

static const char *
hdr(natsMsg *m, const char *key)
{
	const char *v = NULL;

	return natsMsgHeader_Get(m, key, &v) == NATS_OK ? v : NULL;
}

/* Give a delivery its event (mesh_wire_read: a message that is not a
 * readable CloudEvent comes as its bytes, with d->parse_error); the
 * fallback id is "TOPIC-SEQUENCE". Errors: MESH_ENOMEM. */
static mesh_err
delivery_read(struct mesh_delivery *d, const char *topic)
{
	char fallback[MESH_TOPIC_NAME_MAX + 32];

	if (d->event != NULL) {
		return MESH_OK;
	}
	snprintf(fallback, sizeof(fallback), "%s-%" PRIu64, topic,
	         d->sequence);
	return mesh_wire_read(d->msg, 0, fallback, &d->event, d->parse_error,
	                      sizeof(d->parse_error));
}

mesh_err
mesh_subscriber_fetch(struct mesh_subscriber *s, int max, int64_t wait_ms,
                      struct mesh_delivery *out, size_t *n, size_t *filtered)
{
	return mesh__subscriber_fetch(s, max, wait_ms, true, out, n, filtered);
}

mesh_err
mesh__subscriber_fetch(struct mesh_subscriber *s, int max, int64_t wait_ms,
                       bool decode, struct mesh_delivery *out, size_t *n,
                       size_t *filtered)
{
	natsMsgList list = {0};
	jsErrCode jerr = 0;
	size_t k = 0, skipped = 0;
	natsStatus st;
	mesh_err err;

	*n = 0;
	if (filtered != NULL) {
		*filtered = 0;
	}
	if (max < 1 || max > MESH_SUBSCRIPTION_BATCH) {
		return mesh_err_set(MESH_EINVAL,
		                    "subscription %s: fetch 1-%d messages, "
		                    "not %d",
		                    s->rec.id, MESH_SUBSCRIPTION_BATCH, max);
	}
	if (atomic_load(&s->changed) && (err = reload(s)) != MESH_OK) {
		return err;
	}
	st = natsSubscription_Fetch(&list, s->pull, max,
	                            wait_ms > 0 ? wait_ms : 1, &jerr);
	if (st == NATS_TIMEOUT) {
		return MESH_OK;
	}
	if (st != NATS_OK) {
		struct mesh_subscription now = {0};
		err = consumer_pending(s->c, s->rec.topic, s->rec.consumer,
		                       &now);
		if (err == MESH_OK) {
			err = mesh_err_nats(st, jerr, "subscription %s: fetch",
			                    s->rec.id);
		}
		return err;
	}
	/* A change noticed while the fetch waited applies to what it got. */
	if (atomic_load(&s->changed) && (err = reload(s)) != MESH_OK) {
		natsMsgList_Destroy(&list);
		return err;
	}
	for (int i = 0; i < list.Count; i++) {
		natsMsg *m = list.Msgs[i];
		struct mesh_delivery *d = &out[k];
		jsMsgMetaData *meta = NULL;
		list.Msgs[i] = NULL;
		memset(d, 0, sizeof(*d));
		d->msg = m;
		if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
			d->sequence = meta->Sequence.Stream;
			d->deliveries = meta->NumDelivered;
			jsMsgMetaData_Destroy(meta);
		}
		if ((decode || s->filter != NULL) &&
		    delivery_read(d, s->rec.topic) != MESH_OK) {
			/* Not even its bytes could be kept (out of memory):
			 * again at once; the rest go on. */
			natsMsg_Nak(m, NULL);
			natsMsg_Destroy(m);
			continue;
		}
		/* A policy cannot judge what cannot be read: such a message
		 * is handed out, to be seen and dead-lettered. */
		if (s->filter != NULL && d->parse_error[0] == '\0' &&
		    !mesh__subscription_matches(s->filter, d->event)) {
			natsMsg_Ack(m, NULL);
			mesh_delivery_fini(d);
			skipped++;
			continue;
		}
		d->group_id = hdr(m, MESH_HDR_GROUP);
		d->dedup_id = hdr(m, MESH_HDR_DEDUP);
		k++;
	}
	natsMsgList_Destroy(&list);
	*n = k;
	if (filtered != NULL) {
		*filtered = skipped;
	}
	return MESH_OK;
}

static mesh_err
ack_result(natsStatus st, const char *what)
{
	return st == NATS_OK ? MESH_OK : mesh_err_nats(st, 0, "%s", what);
}

mesh_err
mesh_delivery_ack(struct mesh_delivery *d)
{
	return ack_result(natsMsg_Ack(d->msg, NULL), "ack");
}

mesh_err
mesh_delivery_nak(struct mesh_delivery *d, int64_t delay_ms)
{
	return ack_result(
	        delay_ms > 0 ? natsMsg_NakWithDelay(d->msg, delay_ms, NULL)
	                     : natsMsg_Nak(d->msg, NULL),
	        "nak");
}

mesh_err
mesh_delivery_term(struct mesh_delivery *d)
{
	return ack_result(natsMsg_Term(d->msg, NULL), "term");
}

void
mesh_delivery_fini(struct mesh_delivery *d)
{
	if (d == NULL) {
		return;
	}
	mesh_event_free(d->event);
	natsMsg_Destroy(d->msg);
	memset(d, 0, sizeof(*d));
}
