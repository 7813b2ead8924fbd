/* router.c: forwards topic messages to subscribed queues (see
 * mesh/router.h). */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "internal.h"
#include "mesh/pbjson.h"
#include "mesh/queue.h"
#include "mesh/router.h"
#include "mesh/seal.h"
#include "mesh/sign.h"
#include "mesh/source.h"
#include "mesh/subscription.h"
#include "mesh/topic.h"
#include "mesh/wire.h"

#define FETCH_WAIT_MS  1000
#define RETRY_FIRST_MS 250
#define RETRY_MAX_MS   10000
#define VERDICTS       8192 /* verdicts kept for the other subscriptions */

struct worker {
	struct worker *next;
	struct router *r;
	char id[MESH_SUBSCRIPTION_ID_MAX + 1];
	pthread_t thread;
	atomic_bool stop;
	atomic_uint_fast64_t forwarded, filtered, failed, malformed, refused;
};

/* A topic message's signature verdict, kept so that its other
 * subscriptions' workers do not verify it again (verifying costs far more
 * than forwarding). Keyed by the topic's stream and sequence. */
struct verdict {
	uint64_t topic; /* a hash of the topic's name and creation */
	uint64_t seq;   /* 0: empty */
	mesh_sig_verdict v;
	char reason[200];
};

struct router {
	struct mesh_conn *c;
	struct mesh_router_opts o;
	volatile sig_atomic_t *stop;
	pthread_mutex_t log_mu;
	struct worker *workers;
	pthread_mutex_t verdicts_mu;
	struct verdict *verdicts; /* VERDICTS of them; NULL: none kept */
};

void
mesh_router_opts_init(struct mesh_router_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->batch = MESH_SUBSCRIPTION_BATCH;
	o->stats_every_s = 60;
}

static void log_line(struct router *r, const char *event, const char *sub,
                     const char *fmt, ...) MESH_PRINTF(4, 5);

static void
log_line(struct router *r, const char *event, const char *sub, const char *fmt,
         ...)
{
	char iso[40], detail[600];
	time_t now = time(NULL);
	struct tm tm;
	va_list ap;
	json_t *j;
	char *line;

	if (r->o.log == NULL) {
		return;
	}
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	gmtime_r(&now, &tm);
	strftime(iso, sizeof(iso), "%Y-%m-%dT%H:%M:%SZ", &tm);
	j = json_pack("{s:s, s:s, s:s, s:s}", "time", iso, "event", event,
	              "subscription", sub ? sub : "", "detail", detail);
	line = j ? json_dumps(j, JSON_COMPACT) : NULL;
	if (line != NULL) {
		pthread_mutex_lock(&r->log_mu);
		r->o.log(line, r->o.log_arg);
		pthread_mutex_unlock(&r->log_mu);
	}
	free(line);
	json_decref(j);
}

/* ---- the notification (raw delivery off) -------------------------------- */

static void
iso_ms(int64_t sec, int32_t nsec, char out[32])
{
	time_t t = (time_t)sec;
	struct tm tm;
	char base[24];

	gmtime_r(&t, &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, 32, "%s.%03dZ", base, (int)(nsec / 1000000));
}

static json_t *
base64_json(const void *data, size_t len)
{
	char *b = mesh_base64(data, len);
	json_t *j = b != NULL ? json_string(b) : NULL;

	free(b);
	return j;
}

/* The message attributes in SNS's notification form. */
static json_t *
attrs_json(const struct mesh_event *ev)
{
	json_t *attrs = json_object();

	for (size_t i = 0; attrs != NULL && i < mesh_event_ext_count(ev);
	     i++) {
		const char *name = mesh_event_ext_at(ev, i, NULL), *type;
		const void *val;
		size_t len;
		json_t *v;
		if (!mesh_event_attr_is_message_attr(name) ||
		    mesh_event_attr_get(ev, name, &type, &val, &len) !=
		            MESH_OK) {
			continue;
		}
		v = strncmp(type, "Binary", 6) == 0
		            ? base64_json(val, len)
		            : json_stringn((const char *)val, len);
		json_object_set_new(
		        attrs, name,
		        json_pack("{s:s, s:o*}", "Type", type, "Value", v));
	}
	return attrs;
}

mesh_err
mesh_router_notification(const struct mesh_event *ev, const char *topic,
                         bool fifo, uint64_t seq, struct mesh_event **out)
{
	struct mesh_event *copy = NULL;
	const void *data;
	size_t len, n;
	int64_t sec = 0;
	int32_t nsec = 0;
	char when[32], seqs[24], **names = NULL;
	json_t *j;
	char *text = NULL;
	mesh_err err;

	if ((err = mesh_event_dup(ev, &copy)) != MESH_OK) {
		return err;
	}
	if (!mesh_event_time(ev, &sec, &nsec)) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		sec = ts.tv_sec;
		nsec = (int32_t)ts.tv_nsec;
	}
	iso_ms(sec, nsec, when);
	j = json_pack("{s:s, s:s, s:s, s:s}", "Type", "Notification",
	              "MessageId", mesh_event_id(ev), "TopicArn", topic,
	              "Timestamp", when);
	if (j != NULL && mesh_event_subject(ev) != NULL) {
		json_object_set_new(j, "Subject",
		                    json_string(mesh_event_subject(ev)));
	}
	if (j != NULL && fifo) {
		snprintf(seqs, sizeof(seqs), "%020" PRIu64, seq);
		json_object_set_new(j, "SequenceNumber", json_string(seqs));
	}
	/* SNS's Message is text: a text body as it is, a protobuf one of a
	 * known type as its JSON mapping, any other as base64. */
	if (j != NULL) {
		json_t *msg = NULL, *pj = NULL;
		mesh_data_kind kind = mesh_event_data(ev, &data, &len, NULL);
		if (kind == MESH_DATA_TEXT) {
			msg = json_stringn(data, len);
		} else if (kind == MESH_DATA_PROTO &&
		           mesh_pbjson_event_data(ev, &pj) == MESH_OK) {
			char *t = json_dumps(pj, JSON_COMPACT);
			msg = t ? json_string(t) : NULL;
			free(t);
		}
		json_decref(pj);
		if (msg == NULL) {
			msg = base64_json(data, len);
		}
		json_object_set_new(j, "Message", msg ? msg : json_string(""));
		json_object_set_new(j, "MessageAttributes", attrs_json(ev));
		text = json_dumps(j, JSON_COMPACT);
	}
	json_decref(j);
	/* The notification carries the attributes in its body only. */
	n = mesh_event_ext_count(copy);
	names = calloc(n + 1, sizeof(*names));
	for (size_t i = 0; names != NULL && i < n; i++) {
		const char *name = mesh_event_ext_at(copy, i, NULL);
		if (mesh_event_attr_is_message_attr(name) ||
		    strcmp(name, "meshattrtypes") == 0) {
			names[i] = strdup(name);
		}
	}
	for (size_t i = 0; names != NULL && i < n; i++) {
		if (names[i] != NULL) {
			mesh_event_ext_remove(copy, names[i]);
		}
		free(names[i]);
	}
	if (text == NULL || names == NULL) {
		err = mesh_err_set(MESH_ENOMEM, "notification of %s",
		                   mesh_event_id(ev));
	} else if ((err = mesh_event_set_text(copy, text, strlen(text))) ==
	           MESH_OK) {
		err = mesh_event_set_datacontenttype(copy, "application/json");
	}
	free(names);
	free(text);
	if (err != MESH_OK) {
		mesh_event_free(copy);
		return err;
	}
	*out = copy;
	return MESH_OK;
}

/* ---- a worker: one queue subscription ----------------------------------- */

struct batch {
	struct mesh_source_msg m[MESH_SOURCE_BATCH_MAX];
	struct mesh_source_msg *acks[MESH_SOURCE_BATCH_MAX];
	struct mesh_event *made[MESH_SOURCE_BATCH_MAX];
	struct mesh_queue_entry e[MESH_SOURCE_BATCH_MAX];
	struct mesh_queue_sent sent[MESH_SOURCE_BATCH_MAX];
	natsMsg *src[MESH_SOURCE_BATCH_MAX];
	char ids[MESH_SOURCE_BATCH_MAX][96];
	const char *wire[MESH_SOURCE_BATCH_MAX];
	size_t n;
	/* Those to forward (all but the refused), nf of them. */
	struct mesh_source_msg *fw[MESH_SOURCE_BATCH_MAX];
	size_t nf;
};

static bool
stopping(const struct worker *w)
{
	return atomic_load(&w->stop) || *w->r->stop;
}

/* Sleep up to ms, waking early when told to stop. */
static void
nap(const struct worker *w, int64_t ms)
{
	int64_t until = mono_ms() + ms;

	while (!stopping(w) && mono_ms() < until) {
		struct timespec ts = {0, 50 * 1000000};
		nanosleep(&ts, NULL);
	}
}

/* A worker's counts, as one log line. */
static void
log_counts(struct router *r, const char *event, struct worker *w)
{
	log_line(r, event, w->id,
	         "forwarded %" PRIuFAST64 ", filtered %" PRIuFAST64
	         ", failed %" PRIuFAST64 ", malformed %" PRIuFAST64
	         ", refused %" PRIuFAST64,
	         atomic_load(&w->forwarded), atomic_load(&w->filtered),
	         atomic_load(&w->failed), atomic_load(&w->malformed),
	         atomic_load(&w->refused));
}

/* The event id of a message, read or not. */
static const char *
event_id(const struct mesh_source_msg *m)
{
	const char *id = NULL;

	if (m->event != NULL) {
		return mesh_event_id(m->event);
	}
	natsMsgHeader_Get(m->msg, MESH_HDR_CE_ID, &id);
	return id ? id : "(unreadable)";
}

/* A copy's de-duplication id at the queue, per subscription: the topic
 * message's own (its Nats-Msg-Id, which the topic de-duplicated by), so
 * that a message the topic's stream stored twice is one message in the
 * queue (nats-server 2.9 can store a re-sent message again across a
 * leader change: its de-duplication catches up only in 2.11); without a
 * usable one, the topic's sequence (the topic's creation time keeps a
 * re-created topic's sequences apart). */
static void
copy_id(char *buf, size_t size, const struct mesh_subscription *sub,
        int64_t topic_created, const struct mesh_source_msg *m)
{
	const char *id = NULL;
	bool usable =
	        m->msg != NULL &&
	        natsMsgHeader_Get(m->msg, MESH_HDR_MSG_ID, &id) == NATS_OK &&
	        id != NULL && id[0] != '\0' && strlen(id) <= 64;

	for (const char *p = id; usable && *p != '\0'; p++) {
		usable = *p > ' ' && *p < 0x7f;
	}
	if (usable) {
		snprintf(buf, size, "sns:%s:%s", sub->consumer + 2, id);
	} else {
		snprintf(buf, size, "sns:%s:%" PRId64 ":%" PRIu64,
		         sub->consumer + 2, topic_created, m->sequence);
	}
}

/* Permanent failures: the message can never be stored in the queue. */
static bool
permanent(mesh_err err)
{
	return err == MESH_EINVAL || err == MESH_ETOOBIG;
}

/* The signature verdict on a topic message: the one another
 * subscription's worker reached, or verified now and kept. */
static mesh_sig_verdict
judge(struct router *r, struct mesh_verifier *v, uint64_t topic,
      const struct mesh_source_msg *m, char *reason, size_t size)
{
	struct verdict *slot = NULL;
	mesh_sig_verdict verdict;

	if (r->verdicts != NULL && m->sequence != 0) {
		slot = &r->verdicts[(topic ^
		                     (m->sequence * 0x9e3779b97f4a7c15ULL)) %
		                    VERDICTS];
		pthread_mutex_lock(&r->verdicts_mu);
		if (slot->topic == topic && slot->seq == m->sequence) {
			verdict = slot->v;
			snprintf(reason, size, "%s", slot->reason);
			pthread_mutex_unlock(&r->verdicts_mu);
			return verdict;
		}
		pthread_mutex_unlock(&r->verdicts_mu);
	}
	verdict = mesh_verifier_check(v, m->event, reason, size);
	if (slot != NULL) {
		pthread_mutex_lock(&r->verdicts_mu);
		slot->topic = topic;
		slot->seq = m->sequence;
		slot->v = verdict;
		snprintf(slot->reason, sizeof(slot->reason), "%s", reason);
		pthread_mutex_unlock(&r->verdicts_mu);
	}
	return verdict;
}

/* The topic requires signatures: dead-letter, with the reason, each
 * readable message whose signature fails, and leave it out of b->fw.
 * Unreadable ones go on as bytes, to be dead-lettered at the queue. */
static void
refuse(struct worker *w, struct mesh_source *src, struct mesh_verifier *v,
       uint64_t topic, const char *dlq, struct batch *b)
{
	char reason[200];

	b->nf = 0;
	for (size_t i = 0; i < b->n; i++) {
		struct mesh_source_msg *m = &b->m[i];
		mesh_err err;
		if ((m->event == NULL &&
		     mesh_source_read(src, m) != MESH_OK) ||
		    (m->parse_error != NULL && m->parse_error[0] != '\0') ||
		    judge(w->r, v, topic, m, reason, sizeof(reason)) ==
		            MESH_SIG_OK) {
			b->fw[b->nf++] = m;
			continue;
		}
		err = mesh_source_dead_letter(src, m, reason);
		if (err == MESH_ENOTFOUND) {
			/* QUEUE-dlq, made when first needed, as a service
			 * makes NAME-dlq. */
			struct mesh_queue_attrs a;
			mesh_queue_attrs_init(&a);
			if (mesh_queue_create(w->r->c, dlq, &a) == MESH_OK) {
				err = mesh_source_dead_letter(src, m, reason);
			}
		}
		if (err != MESH_OK) {
			log_line(w->r, "retrying", w->id,
			         "message %s refused (%s) but not "
			         "dead-lettered: %s",
			         event_id(m), reason, mesh_errdetail());
			mesh_source_retry(src, m, RETRY_MAX_MS);
			continue;
		}
		atomic_fetch_add(&w->refused, 1);
		log_line(w->r, "refused", w->id,
		         "message %s (topic sequence %" PRIu64
		         ") dead-lettered to '%s': %s",
		         event_id(m), m->sequence, dlq, reason);
	}
}

/* Send the batch to the queue; ack what was stored; retry what may
 * succeed later (for FIFO, everything after the first such failure, to
 * keep the order); drop what never can. Returns whether the queue is
 * gone. */
static bool
forward(struct worker *w, struct mesh_source *src, struct mesh_queue *q,
        const struct mesh_subscription *sub, int64_t topic_created, bool fifo,
        struct batch *b, int64_t *backoff)
{
	bool gone = false, hold = false;
	size_t ok = 0, k = 0;

	for (size_t i = 0; i < b->nf; i++) {
		struct mesh_source_msg *m = b->fw[i];
		const struct mesh_event *ev = m->event;
		b->made[i] = NULL;
		b->src[i] = sub->raw ? m->msg : NULL;
		if (ev == NULL &&
		    (!sub->raw || !mesh__queue_passes_through(q)) &&
		    mesh_source_read(src, m) == MESH_OK) {
			ev = m->event;
		}
		if (m->parse_error != NULL && m->parse_error[0] != '\0') {
			/* Forwarded as what it is: its bytes, to be seen
			 * (and dead-lettered) at the queue. */
			atomic_fetch_add(&w->malformed, 1);
			log_line(w->r, "malformed", w->id,
			         "message %s (topic sequence %" PRIu64
			         ") is not a readable CloudEvent, forwarded "
			         "as bytes: %s",
			         event_id(m), m->sequence, m->parse_error);
		}
		/* A sealed event goes as it is: its notification would
		 * need the plaintext, which the router cannot read. */
		if (!sub->raw && ev != NULL && !mesh_event_sealed(ev) &&
		    mesh_router_notification(ev, sub->topic, fifo, m->sequence,
		                             &b->made[i]) == MESH_OK) {
			ev = b->made[i];
		}
		copy_id(b->ids[i], sizeof(b->ids[i]), sub, topic_created, m);
		memset(&b->e[i], 0, sizeof(b->e[i]));
		b->e[i].event = ev;
		b->e[i].delay_s = -1;
		if (fifo) {
			b->e[i].group_id = m->group_id;
			b->e[i].dedup_id = b->ids[i];
		}
		b->wire[i] = b->ids[i];
	}
	if (b->nf > 0) {
		mesh__queue_forward(q, b->e, b->wire, b->src, b->nf, b->sent);
	}
	for (size_t i = 0; i < b->nf; i++) {
		struct mesh_queue_sent *s = &b->sent[i];
		struct mesh_source_msg *m = b->fw[i];
		if (s->err == MESH_OK && !hold) {
			/* Stored in the queue: acknowledged in bulk (one
			 * lost is forwarded again, and dropped there as a
			 * duplicate by its id). */
			b->acks[k++] = m;
			ok++;
		} else if (s->err != MESH_OK && permanent(s->err) && !hold) {
			b->acks[k++] = m;
			atomic_fetch_add(&w->failed, 1);
			log_line(w->r, "failed", w->id,
			         "message %s (topic sequence %" PRIu64
			         ") can never be stored in queue '%s', "
			         "dropped: %s",
			         event_id(m), m->sequence, sub->endpoint,
			         s->error);
		} else {
			if (s->err == MESH_ENOTFOUND) {
				gone = true;
			}
			if (s->err != MESH_OK && !hold) {
				log_line(w->r, "retrying", w->id,
				         "queue '%s': %s", sub->endpoint,
				         s->error);
			}
			mesh_source_retry(src, m, *backoff);
			hold = hold || fifo;
		}
		mesh_event_free(b->made[i]);
	}
	mesh_source_ack(src, b->acks, k);
	mesh_source_release(src, b->m, b->n);
	atomic_fetch_add(&w->forwarded, ok);
	if (ok == b->nf) {
		*backoff = RETRY_FIRST_MS;
	} else if (*backoff < RETRY_MAX_MS) {
		*backoff *= 2;
	}
	return gone;
}

/* Where a subscription's refused messages go: its queue's own
 * dead-letter queue (RedrivePolicy), else QUEUE-dlq. */
static mesh_err
dlq_of(struct mesh_conn *c, const char *id, char *dlq, size_t size)
{
	struct mesh_subscription rec;
	struct mesh_queue_info qi;
	mesh_err err;

	if ((err = mesh_subscription_get(c, id, &rec)) != MESH_OK) {
		return err;
	}
	if ((err = mesh_queue_info(c, rec.endpoint, &qi)) == MESH_OK) {
		if (qi.attrs.dlq[0] != '\0') {
			snprintf(dlq, size, "%s", qi.attrs.dlq);
		} else {
			snprintf(dlq, size, "%.*s-dlq",
			         MESH_QUEUE_NAME_MAX - 4, rec.endpoint);
		}
	}
	mesh_subscription_fini(&rec);
	return err;
}

/* FNV-1a of a topic's name and creation time. */
static uint64_t
topic_key(const char *name, int64_t created_ms)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (const char *p = name; *p != '\0'; p++) {
		h = (h ^ (uint8_t)*p) * 0x100000001b3ULL;
	}
	return (h ^ (uint64_t)created_ms) * 0x100000001b3ULL;
}

static void *
work(void *arg)
{
	struct worker *w = arg;
	struct router *r = w->r;
	struct mesh_source *s = NULL;
	struct mesh_source_opts so;
	struct mesh_queue *q = NULL;
	struct batch *b = calloc(1, sizeof(*b));
	struct mesh_topic_info ti;
	struct mesh_verifier *v = NULL;
	char spec[MESH_SUBSCRIPTION_ID_MAX + 16], target[300];
	char dlq[MESH_QUEUE_NAME_MAX + 1] = "";
	uint64_t topic = 0;
	int64_t backoff = RETRY_FIRST_MS, wait = RETRY_FIRST_MS;
	mesh_err err;

	mesh_source_opts_init(&so);
	so.decode = false; /* raw delivery passes bytes through, unread */
	snprintf(spec, sizeof(spec), "subscription:%s", w->id);
	while (b != NULL && !stopping(w)) {
		const struct mesh_subscription *sub;
		size_t filtered = 0;
		if (s == NULL) {
			err = dlq_of(r->c, w->id, dlq, sizeof(dlq));
			so.dlq = dlq;
			if (err == MESH_OK) {
				err = mesh_source_open(r->c, spec, &so, &s);
			}
			if (err == MESH_OK) {
				sub = mesh_source_subscription(s);
				err = mesh_topic_info(r->c, sub->topic, &ti);
			}
			if (err == MESH_OK) {
				mesh_verifier_free(v);
				v = NULL;
				snprintf(target, sizeof(target), "topic:%s",
				         sub->topic);
				err = mesh_verifier_new(r->c, target, 0, &v);
				topic = topic_key(sub->topic, ti.a.created_ms);
			}
			if (err != MESH_OK) {
				log_line(r, "waiting", w->id, "%s",
				         mesh_errdetail());
				mesh_source_close(s);
				s = NULL;
				nap(w, wait);
				wait = wait < RETRY_MAX_MS ? wait * 2 : wait;
				continue;
			}
			wait = RETRY_FIRST_MS;
		}
		sub = mesh_source_subscription(s);
		if (q == NULL) {
			if (mesh_queue_open(r->c, sub->endpoint, &q) !=
			    MESH_OK) {
				log_line(r, "waiting", w->id, "%s",
				         mesh_errdetail());
				nap(w, wait);
				wait = wait < RETRY_MAX_MS ? wait * 2 : wait;
				continue;
			}
			wait = RETRY_FIRST_MS;
		}
		err = mesh_source_fetch(s, (size_t)r->o.batch, FETCH_WAIT_MS,
		                        b->m, &b->n, &filtered);
		atomic_fetch_add(&w->filtered, filtered);
		if (err != MESH_OK) {
			log_line(r, "waiting", w->id, "%s", mesh_errdetail());
			mesh_source_close(s);
			s = NULL;
			nap(w, wait);
			continue;
		}
		b->nf = 0;
		if (b->n > 0 && mesh_verifier_required(v)) {
			refuse(w, s, v, topic, dlq, b);
		} else {
			for (size_t i = 0; i < b->n; i++) {
				b->fw[b->nf++] = &b->m[i];
			}
		}
		if (b->n > 0 && forward(w, s, q, sub, ti.a.created_ms,
		                        ti.a.fifo, b, &backoff)) {
			mesh_queue_close(q); /* gone: open it again */
			q = NULL;
		}
	}
	mesh_queue_close(q);
	mesh_source_close(s);
	mesh_verifier_free(v);
	free(b);
	return NULL;
}

/* ---- the control loop --------------------------------------------------- */

static struct worker **
find(struct router *r, const char *id)
{
	struct worker **p = &r->workers;

	while (*p != NULL && strcmp((*p)->id, id) != 0) {
		p = &(*p)->next;
	}
	return p;
}

static void
start(struct router *r, const char *id)
{
	struct worker *w;

	if (*find(r, id) != NULL || (w = calloc(1, sizeof(*w))) == NULL) {
		return;
	}
	w->r = r;
	snprintf(w->id, sizeof(w->id), "%s", id);
	if (pthread_create(&w->thread, NULL, work, w) != 0) {
		log_line(r, "failed", id, "cannot start a thread");
		free(w);
		return;
	}
	w->next = r->workers;
	r->workers = w;
	log_line(r, "subscribed", id, "forwarding");
}

static void
stop_worker(struct router *r, struct worker **p)
{
	struct worker *w = *p;

	atomic_store(&w->stop, true);
	pthread_join(w->thread, NULL);
	*p = w->next;
	log_counts(r, "unsubscribed", w);
	free(w);
}

/* The subscription id of a record's key "TOPIC.HEX". */
static void
id_of_key(const char *key, char *id, size_t size)
{
	const char *dot = strrchr(key, '.');

	snprintf(id, size, "%.*s:%s", (int)(dot - key), key, dot + 1);
}

static void
apply(struct router *r, kvEntry *e)
{
	char id[MESH_SUBSCRIPTION_ID_MAX + 1];
	const char *key = kvEntry_Key(e);
	struct mesh_subscription rec;
	struct worker **p;

	if (strrchr(key, '.') == NULL) {
		return;
	}
	id_of_key(key, id, sizeof(id));
	p = find(r, id);
	if (kvEntry_Operation(e) != kvOp_Put) {
		if (*p != NULL) {
			stop_worker(r, p);
		}
		return;
	}
	/* Only queue subscriptions are the router's; services consume
	 * their own. */
	if (kvEntry_ValueLen(e) > 0 &&
	    mesh__subscription_decode(key, kvEntry_Value(e),
	                              (size_t)kvEntry_ValueLen(e),
	                              &rec) == MESH_OK) {
		if (rec.protocol == MESH_SUB_QUEUE) {
			start(r, id);
		}
		mesh_subscription_fini(&rec);
	}
}

static void
stats(struct router *r)
{
	for (struct worker *w = r->workers; w != NULL; w = w->next) {
		log_counts(r, "stats", w);
	}
}

mesh_err
mesh_router_run(struct mesh_conn *c, const struct mesh_router_opts *o,
                volatile sig_atomic_t *stop)
{
	struct router r = {.c = c, .o = *o, .stop = stop};
	kvStore *kv = NULL;
	kvWatcher *watch = NULL;
	int64_t next_stats;
	natsStatus s;
	mesh_err err;

	if (o->batch < 1 || o->batch > MESH_SUBSCRIPTION_BATCH) {
		return mesh_err_set(MESH_EINVAL,
		                    "router batch %d: must be 1-%d", o->batch,
		                    MESH_SUBSCRIPTION_BATCH);
	}
	pthread_mutex_init(&r.log_mu, NULL);
	pthread_mutex_init(&r.verdicts_mu, NULL);
	r.verdicts =
	        calloc(VERDICTS, sizeof(*r.verdicts)); /* NULL: none kept */
	if ((err = mesh__records_bucket(c, &kv)) != MESH_OK) {
		free(r.verdicts);
		pthread_mutex_destroy(&r.verdicts_mu);
		pthread_mutex_destroy(&r.log_mu);
		return err;
	}
	s = mesh_kv_watch_all(kv, &watch);
	if (s != NATS_OK) {
		kvStore_Destroy(kv);
		free(r.verdicts);
		pthread_mutex_destroy(&r.verdicts_mu);
		pthread_mutex_destroy(&r.log_mu);
		return mesh_err_nats(s, 0, "following the subscriptions");
	}
	log_line(&r, "started", NULL, "following %s", MESH__RECORDS_BUCKET);
	next_stats = mono_ms() + (int64_t)o->stats_every_s * 1000;
	while (!*stop) {
		kvEntry *e = NULL;
		s = kvWatcher_Next(&e, watch, 500);
		if (s == NATS_OK && e != NULL) {
			apply(&r, e);
			kvEntry_Destroy(e);
		}
		if (o->stats_every_s > 0 && mono_ms() >= next_stats) {
			stats(&r);
			next_stats =
			        mono_ms() + (int64_t)o->stats_every_s * 1000;
		}
	}
	while (r.workers != NULL) {
		stop_worker(&r, &r.workers);
	}
	mesh_conn_flush(c, 2000); /* the last acknowledgements */
	kvWatcher_Destroy(watch);
	kvStore_Destroy(kv);
	log_line(&r, "stopped", NULL, "stopped");
	free(r.verdicts);
	pthread_mutex_destroy(&r.verdicts_mu);
	pthread_mutex_destroy(&r.log_mu);
	return MESH_OK;
}
