/* Sources: the consumer interface and its implementations, queues, topic
 * subscriptions and partitions (see mesh/source.h). */
#include <assert.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "queue_internal.h"
#include "mesh/partition.h"
#include "mesh/service_api.h"
#include "mesh/source.h"
#include "mesh/subscription.h"
#include "mesh/topic.h"
#include "mesh/wire.h"

struct mesh_source {
	const struct mesh_source_ops *ops;
	void *impl;
	char label[MESH_SUBSCRIPTION_ID_MAX + 16];
	struct mesh_source_traits traits;
	bool decode;
	char service[MESH_QUEUE_NAME_MAX + 1];
};

void
mesh_source_opts_init(struct mesh_source_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->decode = true;
}

mesh_err
mesh_source_new(const struct mesh_source_ops *ops, void *impl,
                const char *label, const struct mesh_source_traits *traits,
                const struct mesh_source_opts *o, struct mesh_source **out)
{
	struct mesh_source *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		ops->close(impl);
		return mesh_err_set(MESH_ENOMEM, "source %s", label);
	}
	s->ops = ops;
	s->impl = impl;
	snprintf(s->label, sizeof(s->label), "%s", label);
	s->traits = *traits;
	s->decode = o == NULL || o->decode;
	if (o != NULL && o->service != NULL) {
		snprintf(s->service, sizeof(s->service), "%s", o->service);
	}
	*out = s;
	return MESH_OK;
}

void
mesh_source_close(struct mesh_source *s)
{
	if (s == NULL) {
		return;
	}
	s->ops->close(s->impl);
	free(s);
}

const char *
mesh_source_label(const struct mesh_source *s)
{
	return s->label;
}

bool
mesh_source_fifo(const struct mesh_source *s)
{
	return s->traits.fifo;
}

bool
mesh_source_redrives(const struct mesh_source *s)
{
	return s->traits.redrives;
}

mesh_err
mesh_source_fetch(struct mesh_source *s, size_t max, int64_t wait_ms,
                  struct mesh_source_msg *out, size_t *n, size_t *filtered)
{
	size_t skipped = 0;
	mesh_err err;

	*n = 0;
	if (filtered != NULL) {
		*filtered = 0;
	}
	if (max < 1 || max > MESH_SOURCE_BATCH_MAX) {
		return mesh_err_set(MESH_EINVAL,
		                    "source %s: fetch 1-%d messages, not %zu",
		                    s->label, MESH_SOURCE_BATCH_MAX, max);
	}
	err = s->ops->fetch(s->impl, max, wait_ms, s->decode, out, n,
	                    &skipped);
	if (err != MESH_OK) {
		*n = 0;
	}
	if (filtered != NULL) {
		*filtered = skipped;
	}
	return err;
}

/* Give a message its event as mesh_wire_read reads it; the fallback id
 * is what follows the label's colon, "-", the sequence ("TOPIC-17"), as a
 * subscriber's own reading names it. Errors: MESH_ENOMEM. */
static mesh_err
msg_read(const char *label, struct mesh_source_msg *m)
{
	char fallback[MESH_SUBSCRIPTION_ID_MAX + 48];
	const char *colon = strchr(label, ':');

	snprintf(fallback, sizeof(fallback), "%s-%" PRIu64,
	         colon ? colon + 1 : label, m->sequence);
	m->parse_error = m->parse_error_buf;
	return mesh_wire_read(m->msg, 0, fallback, &m->event,
	                      m->parse_error_buf, sizeof(m->parse_error_buf));
}

mesh_err
mesh_source_read(struct mesh_source *s, struct mesh_source_msg *m)
{
	if (m->event != NULL) {
		return MESH_OK;
	}
	assert(m->msg != NULL);
	return msg_read(s->label, m);
}

void
mesh_source_ack(struct mesh_source *s, struct mesh_source_msg *const *m,
                size_t n)
{
	if (n > 0) {
		s->ops->ack(s->impl, m, n);
	}
}

mesh_err
mesh_source_retry(struct mesh_source *s, struct mesh_source_msg *m,
                  int64_t delay_ms)
{
	return s->ops->retry(s->impl, m, delay_ms < 0 ? 0 : delay_ms);
}

mesh_err
mesh_source_dead_letter(struct mesh_source *s, struct mesh_source_msg *m,
                        const char *reason)
{
	struct mesh_dead_letter dl = {.reason = reason,
	                              .sequence = m->sequence,
	                              .receive_count = m->attempt,
	                              .service = s->service[0] ? s->service
	                                                       : NULL};

	return s->ops->dead_letter(s->impl, m, &dl);
}

void
mesh_source_release(struct mesh_source *s, struct mesh_source_msg *m, size_t n)
{
	if (n > 0) {
		s->ops->release(s->impl, m, n);
	}
}

/* Open a dead-letter queue by name, once (NULL name: none). */
static mesh_err
dlq_open(struct mesh_conn *c, const char *name, struct mesh_queue **dlq,
         const char *label)
{
	if (*dlq != NULL) {
		return MESH_OK;
	}
	if (name == NULL || name[0] == '\0') {
		return mesh_err_set(MESH_ENOTFOUND,
		                    "source %s: no dead-letter queue", label);
	}
	return mesh_queue_open(c, name, dlq);
}

/* ---- queues ------------------------------------------------------------- */

struct queue_source {
	struct mesh_conn *c;
	struct mesh_queue *q;
	struct mesh_queue *dlq;
	char dlq_name[MESH_QUEUE_NAME_MAX + 1];
	char label[MESH_QUEUE_NAME_MAX + 8];
};

static mesh_err
queue_fetch(void *impl, size_t max, int64_t wait_ms, bool decode,
            struct mesh_source_msg *out, size_t *n, size_t *filtered)
{
	struct queue_source *qs = impl;
	struct mesh_queue_msg *m = NULL;
	int wait_s = wait_ms <= 0 ? 0 : (int)((wait_ms + 999) / 1000);
	size_t got = 0;
	mesh_err err;

	(void)decode; /* a queue's messages are read as they come */
	(void)filtered;
	err = mesh__queue_receive_many(qs->q, (int)max,
	                               wait_s > 20 ? 20 : wait_s, &m, &got);
	if (err != MESH_OK) {
		return err;
	}
	for (size_t i = 0; i < got; i++) {
		struct mesh_source_msg *o = &out[i];
		o->event = m[i].event;
		o->msg = m[i].msg;
		m[i].event = NULL;
		m[i].msg = NULL;
		o->sequence = m[i].sequence;
		o->attempt = m[i].receive_count;
		o->impl = NULL;
		mesh__copy_str(o->parse_error_buf, sizeof(o->parse_error_buf),
		               m[i].parse_error);
		o->parse_error = o->parse_error_buf;
		mesh__copy_str(o->receipt, sizeof(o->receipt), m[i].receipt);
		mesh__copy_str(o->group_buf, sizeof(o->group_buf),
		               m[i].group_id);
		o->group_id = o->group_buf[0] ? o->group_buf : NULL;
	}
	mesh_queue_msgs_free(m, got);
	*n = got;
	return MESH_OK;
}

static void
queue_ack(void *impl, struct mesh_source_msg *const *m, size_t n)
{
	struct queue_source *qs = impl;
	const char *receipts[MESH_SOURCE_BATCH_MAX];

	for (size_t at = 0; at < n; at += MESH_SOURCE_BATCH_MAX) {
		size_t k = 0;
		for (size_t i = at; i < n && k < MESH_SOURCE_BATCH_MAX; i++) {
			receipts[k++] = m[i]->receipt;
		}
		mesh__queue_ack_many(qs->q, receipts, k);
	}
}

static mesh_err
queue_retry(void *impl, struct mesh_source_msg *m, int64_t delay_ms)
{
	struct queue_source *qs = impl;
	mesh_err err = mesh__queue_seal(qs->q, m->receipt, sizeof(m->receipt));

	return err != MESH_OK
	               ? err
	               : mesh_queue_change_visibility(qs->q, m->receipt,
	                                              (delay_ms + 999) / 1000);
}

static mesh_err
queue_dead_letter(void *impl, struct mesh_source_msg *m,
                  struct mesh_dead_letter *dl)
{
	struct queue_source *qs = impl;
	struct mesh_source_msg *one[] = {m};
	mesh_err err;

	if ((err = dlq_open(qs->c, qs->dlq_name, &qs->dlq, qs->label)) !=
	    MESH_OK) {
		return err;
	}
	dl->source = mesh_queue_name(qs->q);
	if ((err = mesh_queue_put_dead_letter(qs->dlq, m->msg, dl)) !=
	    MESH_OK) {
		return err;
	}
	queue_ack(qs, one, 1);
	return MESH_OK;
}

static void
release_msgs(void *impl, struct mesh_source_msg *m, size_t n)
{
	(void)impl;
	for (size_t i = 0; i < n; i++) {
		mesh_event_free(m[i].event);
		natsMsg_Destroy(m[i].msg);
		m[i].event = NULL;
		m[i].msg = NULL;
	}
}

static void
queue_close(void *impl)
{
	struct queue_source *qs = impl;

	mesh_queue_close(qs->dlq);
	mesh_queue_close(qs->q);
	free(qs);
}

static const struct mesh_source_ops queue_ops = {
        .fetch = queue_fetch,
        .ack = queue_ack,
        .retry = queue_retry,
        .dead_letter = queue_dead_letter,
        .release = release_msgs,
        .close = queue_close,
};

static mesh_err
queue_source_open(struct mesh_conn *c, const char *name,
                  const struct mesh_source_opts *o, struct mesh_source **out)
{
	struct queue_source *qs = calloc(1, sizeof(*qs));
	const struct mesh_queue_attrs *a;
	struct mesh_source_traits t;
	mesh_err err;

	if (qs == NULL) {
		return mesh_err_set(MESH_ENOMEM, "queue '%s'", name);
	}
	qs->c = c;
	if ((err = mesh_queue_open(c, name, &qs->q)) != MESH_OK) {
		free(qs);
		return err;
	}
	a = mesh_queue_attrs(qs->q);
	/* A queue with a redrive policy keeps its own dead letters. */
	snprintf(qs->dlq_name, sizeof(qs->dlq_name), "%s",
	         a->dlq[0]     ? a->dlq
	         : o && o->dlq ? o->dlq
	                       : "");
	snprintf(qs->label, sizeof(qs->label), "queue:%s", name);
	t.fifo = a->fifo;
	t.redrives = a->dlq[0] != '\0';
	return mesh_source_new(&queue_ops, qs, qs->label, &t, o, out);
}

/* ---- JetStream consumers ------------------------------------------------ */

/* What the sources over a durable JetStream consumer (topic subscriptions,
 * partitions) share: an ack is "+ACK" to the delivery's reply subject on
 * the bulk connection, a retry a NAK with delay, a dead letter goes to
 * opts.dlq. First in each one's impl. */
struct js_source {
	struct mesh_conn *c;
	struct mesh_queue *dlq;
	char dlq_name[MESH_QUEUE_NAME_MAX + 1];
	char label[MESH_SUBSCRIPTION_ID_MAX + 16];
};

static void
js_init(struct js_source *js, struct mesh_conn *c,
        const struct mesh_source_opts *o)
{
	js->c = c;
	snprintf(js->dlq_name, sizeof(js->dlq_name), "%s",
	         o && o->dlq ? o->dlq : "");
}

static void
js_ack(void *impl, struct mesh_source_msg *const *m, size_t n)
{
	struct js_source *js = impl;
	natsConnection *nc = mesh__conn_bulk(js->c);

	for (size_t i = 0; i < n; i++) {
		const char *reply = natsMsg_GetReply(m[i]->msg);
		if (reply != NULL) {
			natsConnection_PublishString(nc, reply, "+ACK");
		}
	}
}

static mesh_err
js_retry(void *impl, struct mesh_source_msg *m, int64_t delay_ms)
{
	natsStatus st = delay_ms > 0
	                        ? natsMsg_NakWithDelay(m->msg, delay_ms, NULL)
	                        : natsMsg_Nak(m->msg, NULL);

	(void)impl;
	return st == NATS_OK ? MESH_OK : mesh_err_nats(st, 0, "nak");
}

static mesh_err
js_dead_letter(void *impl, struct mesh_source_msg *m,
               struct mesh_dead_letter *dl)
{
	struct js_source *js = impl;
	struct mesh_source_msg *one[] = {m};
	mesh_err err;

	if ((err = dlq_open(js->c, js->dlq_name, &js->dlq, js->label)) !=
	    MESH_OK) {
		return err;
	}
	dl->source = js->label;
	if ((err = mesh_queue_put_dead_letter(js->dlq, m->msg, dl)) !=
	    MESH_OK) {
		return err;
	}
	js_ack(js, one, 1);
	return MESH_OK;
}

/* ---- topic subscriptions ------------------------------------------------ */

struct sub_source {
	struct js_source js; /* first */
	struct mesh_subscriber *sub;
	struct mesh_delivery d[MESH_SOURCE_BATCH_MAX];
};

static mesh_err
sub_fetch(void *impl, size_t max, int64_t wait_ms, bool decode,
          struct mesh_source_msg *out, size_t *n, size_t *filtered)
{
	struct sub_source *ss = impl;
	size_t got = 0;
	mesh_err err;

	err = mesh__subscriber_fetch(ss->sub, (int)max, wait_ms, decode, ss->d,
	                             &got, filtered);
	if (err != MESH_OK) {
		return err;
	}
	for (size_t i = 0; i < got; i++) {
		struct mesh_source_msg *o = &out[i];
		struct mesh_delivery *d = &ss->d[i];
		o->event = d->event;
		o->msg = d->msg;
		o->sequence = d->sequence;
		o->attempt = d->deliveries;
		o->impl = NULL;
		snprintf(o->parse_error_buf, sizeof(o->parse_error_buf), "%s",
		         d->parse_error);
		o->parse_error = o->parse_error_buf;
		snprintf(o->group_buf, sizeof(o->group_buf), "%s",
		         d->group_id ? d->group_id : "");
		o->group_id = d->group_id ? o->group_buf : NULL;
		o->receipt[0] = '\0';
		memset(d, 0, sizeof(*d)); /* taken */
	}
	*n = got;
	return MESH_OK;
}

static void
sub_close(void *impl)
{
	struct sub_source *ss = impl;

	mesh_subscriber_close(ss->sub);
	mesh_queue_close(ss->js.dlq);
	free(ss);
}

static const struct mesh_source_ops sub_ops = {
        .fetch = sub_fetch,
        .ack = js_ack,
        .retry = js_retry,
        .dead_letter = js_dead_letter,
        .release = release_msgs,
        .close = sub_close,
};

static mesh_err
sub_source_open(struct mesh_conn *c, const char *id,
                const struct mesh_source_opts *o, struct mesh_source **out)
{
	struct sub_source *ss = calloc(1, sizeof(*ss));
	const struct mesh_subscription *rec;
	struct mesh_source_traits t = {0};
	mesh_err err;

	if (ss == NULL) {
		return mesh_err_set(MESH_ENOMEM, "subscription %s", id);
	}
	js_init(&ss->js, c, o);
	if ((err = mesh_subscriber_bind(c, id, &ss->sub)) != MESH_OK) {
		free(ss);
		return err;
	}
	rec = mesh_subscriber_subscription(ss->sub);
	(void)mesh_topic_name_check(rec->topic, &t.fifo);
	snprintf(ss->js.label, sizeof(ss->js.label), "topic:%s", rec->topic);
	return mesh_source_new(&sub_ops, ss, ss->js.label, &t, o, out);
}

const struct mesh_subscription *
mesh_source_subscription(const struct mesh_source *s)
{
	const struct sub_source *ss = s->impl;

	return s->ops == &sub_ops ? mesh_subscriber_subscription(ss->sub)
	                          : NULL;
}

/* ---- partitions --------------------------------------------------------- */

struct part_source {
	struct js_source js; /* first */
	natsSubscription *pull;
	char service[MESH_SERVICE_NAME_MAX + 1];
	int k;
	int64_t next_check; /* monotonic ms: whether the consumer is there */
};

#define CHECK_EVERY_MS 5000

/* Why a pull failed (st; NATS_OK: it only waited): the partition's
 * consumer or stream gone is MESH_ENOTFOUND, said plainly; else st's
 * error, or MESH_OK for NATS_OK. */
static mesh_err
part_fetch_err(struct part_source *ps, natsStatus st, jsErrCode jerr)
{
	char stream[MESH_SERVICE_NAME_MAX + 16], consumer[16];
	jsConsumerInfo *ci = NULL;
	jsErrCode ierr = 0;
	natsStatus is;

	snprintf(stream, sizeof(stream), MESH_PARTITION_STREAM, ps->service);
	snprintf(consumer, sizeof(consumer), MESH_PARTITION_CONSUMER, ps->k);
	is = js_GetConsumerInfo(&ci, mesh_conn_js(ps->js.c), stream, consumer,
	                        NULL, &ierr);
	jsConsumerInfo_Destroy(ci);
	if (ierr == JSStreamNotFoundErr) {
		return mesh_err_set(MESH_ENOTFOUND,
		                    "source %s: stream %s is gone (deleted "
		                    "underneath? mesh_partitions_ensure makes "
		                    "it again, empty)",
		                    ps->js.label, stream);
	}
	if (is == NATS_NOT_FOUND || ierr == JSConsumerNotFoundErr) {
		return mesh_err_set(MESH_ENOTFOUND,
		                    "source %s: consumer %s of stream %s is "
		                    "gone (deleted underneath? "
		                    "mesh_partitions_ensure makes it again)",
		                    ps->js.label, consumer, stream);
	}
	return st == NATS_OK ? MESH_OK
	                     : mesh_err_nats(st, jerr, "source %s: fetch",
	                                     ps->js.label);
}

static mesh_err
part_fetch(void *impl, size_t max, int64_t wait_ms, bool decode,
           struct mesh_source_msg *out, size_t *n, size_t *filtered)
{
	struct part_source *ps = impl;
	natsMsgList list = {0};
	jsErrCode jerr = 0;
	size_t k = 0;
	natsStatus st;

	(void)filtered; /* a partition has no filter */
	st = natsSubscription_Fetch(&list, ps->pull, (int)max,
	                            wait_ms > 0 ? wait_ms : 1, &jerr);
	if (st == NATS_TIMEOUT) {
		/* A pull on a consumer that is gone waits its time out like
		 * a quiet one: a quiet source looks now and then. */
		if (mono_ms() < ps->next_check) {
			return MESH_OK;
		}
		ps->next_check = mono_ms() + CHECK_EVERY_MS;
		return part_fetch_err(ps, NATS_OK, 0);
	}
	if (st != NATS_OK) {
		return part_fetch_err(ps, st, jerr);
	}
	for (int i = 0; i < list.Count; i++) {
		natsMsg *m = list.Msgs[i];
		struct mesh_source_msg *o = &out[k];
		jsMsgMetaData *meta = NULL;
		const char *group = NULL;
		list.Msgs[i] = NULL;
		memset(o, 0,
		       offsetof(struct mesh_source_msg, parse_error_buf));
		o->msg = m;
		o->parse_error_buf[0] = '\0';
		o->parse_error = o->parse_error_buf;
		o->receipt[0] = '\0';
		if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
			o->sequence = meta->Sequence.Stream;
			o->attempt = meta->NumDelivered;
			jsMsgMetaData_Destroy(meta);
		}
		if (natsMsgHeader_Get(m, MESH_HDR_GROUP, &group) == NATS_OK &&
		    group != NULL) {
			mesh__copy_str(o->group_buf, sizeof(o->group_buf),
			               group);
			o->group_id = o->group_buf;
		}
		if (decode && msg_read(ps->js.label, o) != MESH_OK) {
			/* Not even its bytes could be kept (out of memory):
			 * again at once; the rest go on. */
			natsMsg_Nak(m, NULL);
			natsMsg_Destroy(m);
			continue;
		}
		k++;
	}
	natsMsgList_Destroy(&list);
	*n = k;
	return MESH_OK;
}

static void
part_close(void *impl)
{
	struct part_source *ps = impl;

	/* Unsubscribing a bound pull subscription would delete the durable
	 * consumer; only let it go. */
	natsSubscription_Destroy(ps->pull);
	mesh_queue_close(ps->js.dlq);
	free(ps);
}

static const struct mesh_source_ops part_ops = {
        .fetch = part_fetch,
        .ack = js_ack,
        .retry = js_retry,
        .dead_letter = js_dead_letter,
        .release = release_msgs,
        .close = part_close,
};

/* "SERVICE/K" as written: a service's name and a partition number below
 * MESH_PARTITIONS_MAX. */
static mesh_err
part_spec_parse(const char *spec, char *service, size_t size, int *k)
{
	const char *slash = strrchr(spec, '/');
	size_t len = slash ? (size_t)(slash - spec) : 0;
	char *end = NULL;
	long part;

	part = slash ? strtol(slash + 1, &end, 10) : -1;
	if (slash == NULL || len == 0 || len >= size || slash[1] < '0' ||
	    slash[1] > '9' || *end != '\0' || part >= MESH_PARTITIONS_MAX) {
		return mesh_err_set(MESH_EINVAL,
		                    "source 'partition:%.200s': not "
		                    "partition:SERVICE/K",
		                    spec);
	}
	memcpy(service, spec, len);
	service[len] = '\0';
	*k = (int)part;
	return mesh_name_check("service", service, MESH_SERVICE_NAME_MAX,
	                       NULL);
}

/* "SERVICE/K": the service and a partition it has. */
static mesh_err
part_spec(struct mesh_conn *c, const char *spec, char *service, size_t size,
          int *k)
{
	int n = 0, part;
	mesh_err err;

	if ((err = part_spec_parse(spec, service, size, &part)) != MESH_OK ||
	    (err = mesh_partitions_get(c, service, &n)) != MESH_OK) {
		return err;
	}
	if (part >= n) {
		return mesh_err_set(MESH_EINVAL,
		                    "source 'partition:%s': service '%s' has "
		                    "%d partitions (0-%d), not %d",
		                    spec, service, n, n - 1, part);
	}
	*k = part;
	return MESH_OK;
}

static mesh_err
part_source_open(struct mesh_conn *c, const char *spec,
                 const struct mesh_source_opts *o, struct mesh_source **out)
{
	struct part_source *ps = calloc(1, sizeof(*ps));
	struct mesh_source_traits t = {0};
	char stream[MESH_SERVICE_NAME_MAX + 16],
	        subject[MESH_SERVICE_NAME_MAX + 32], consumer[16];
	jsSubOptions so;
	jsErrCode jerr = 0;
	natsStatus st;
	mesh_err err;

	if (ps == NULL) {
		return mesh_err_set(MESH_ENOMEM, "source partition:%s", spec);
	}
	js_init(&ps->js, c, o);
	if ((err = part_spec(c, spec, ps->service, sizeof(ps->service),
	                     &ps->k)) != MESH_OK) {
		free(ps);
		return err;
	}
	snprintf(ps->js.label, sizeof(ps->js.label), "partition:%s/%d",
	         ps->service, ps->k);
	snprintf(stream, sizeof(stream), MESH_PARTITION_STREAM, ps->service);
	snprintf(subject, sizeof(subject), MESH_PARTITION_SUBJECT, ps->service,
	         ps->k);
	snprintf(consumer, sizeof(consumer), MESH_PARTITION_CONSUMER, ps->k);
	jsSubOptions_Init(&so);
	so.Stream = stream;
	so.Consumer = consumer;
	st = js_PullSubscribe(&ps->pull, mesh_conn_js(c), subject, consumer,
	                      NULL, &so, &jerr);
	if (st != NATS_OK) {
		err = part_fetch_err(ps, st, jerr);
		free(ps);
		return err;
	}
	return mesh_source_new(&part_ops, ps, ps->js.label, &t, o, out);
}

static mesh_err
spec_unknown(const char *spec)
{
	return mesh_err_set(MESH_EINVAL,
	                    "source '%.200s': not queue:NAME, subscription:ID "
	                    "or partition:SERVICE/K",
	                    spec);
}

mesh_err
mesh_source_open(struct mesh_conn *c, const char *spec,
                 const struct mesh_source_opts *o, struct mesh_source **out)
{
	if (strncmp(spec, "queue:", 6) == 0) {
		return queue_source_open(c, spec + 6, o, out);
	}
	if (strncmp(spec, "subscription:", 13) == 0) {
		return sub_source_open(c, spec + 13, o, out);
	}
	if (strncmp(spec, "partition:", 10) == 0) {
		return part_source_open(c, spec + 10, o, out);
	}
	return spec_unknown(spec);
}

/* ---- a source seen from outside ----------------------------------------- */

mesh_err
mesh_source_backlog(struct mesh_conn *c, const char *spec,
                    struct mesh_source_backlog *out)
{
	memset(out, 0, sizeof(*out));
	if (strncmp(spec, "queue:", 6) == 0) {
		struct mesh_queue_info qi;
		mesh_err err = mesh_queue_info(c, spec + 6, &qi);
		if (err == MESH_OK) {
			out->pending = qi.visible;
			out->in_flight = qi.not_visible;
			out->delayed = qi.delayed;
			out->delivered = qi.delivered;
		}
		return err;
	}
	if (strncmp(spec, "subscription:", 13) == 0) {
		struct mesh_subscription rec;
		mesh_err err = mesh_subscription_get(c, spec + 13, &rec);
		if (err == MESH_OK) {
			out->in_flight = rec.in_flight;
			out->pending = rec.pending - rec.in_flight;
			out->delivered = rec.delivered;
			mesh_subscription_fini(&rec);
		}
		return err;
	}
	if (strncmp(spec, "partition:", 10) == 0) {
		char service[MESH_SERVICE_NAME_MAX + 1];
		struct mesh_partition_info *pi = NULL;
		int k = 0, n = 0;
		mesh_err err =
		        part_spec(c, spec + 10, service, sizeof(service), &k);
		if (err == MESH_OK &&
		    (err = mesh_partitions_info(c, service, &pi, &n, NULL)) ==
		            MESH_OK) {
			if (k < n) {
				out->pending = pi[k].pending;
				out->in_flight = pi[k].ack_pending;
				out->delivered = pi[k].delivered;
			}
			free(pi);
		}
		return err;
	}
	return spec_unknown(spec);
}

mesh_err
mesh_source_watch(struct mesh_conn *c, const char *spec, char *subject,
                  size_t size, struct mesh_filter **filter)
{
	mesh_err err = MESH_OK;

	if (filter != NULL) {
		*filter = NULL;
	}
	if (strncmp(spec, "queue:", 6) == 0) {
		struct mesh_queue *q = NULL;
		struct qnames n;
		if ((err = mesh_queue_open(c, spec + 6, &q)) == MESH_OK) {
			mesh__q_names_of(spec + 6, mesh_queue_attrs(q)->fifo,
			                 &n);
			snprintf(subject, size, "%s", n.filter);
			mesh_queue_close(q);
		}
		return err;
	}
	if (strncmp(spec, "subscription:", 13) == 0) {
		struct mesh_subscription rec;
		char stream[MESH_TOPIC_NAME_MAX + 8];
		if ((err = mesh_subscription_get(c, spec + 13, &rec)) !=
		    MESH_OK) {
			return err;
		}
		mesh__topic_names(rec.topic, stream, sizeof(stream), subject,
		                  size);
		if (filter != NULL && rec.filter_policy != NULL) {
			err = mesh_filter_compile(rec.filter_policy,
			                          strlen(rec.filter_policy),
			                          rec.filter_scope, filter);
		}
		mesh_subscription_fini(&rec);
		return err;
	}
	if (strncmp(spec, "partition:", 10) == 0) {
		char service[MESH_SERVICE_NAME_MAX + 1];
		int k = 0;
		if ((err = part_spec(c, spec + 10, service, sizeof(service),
		                     &k)) == MESH_OK) {
			snprintf(subject, size, MESH_PARTITION_SUBJECT,
			         service, k);
		}
		return err;
	}
	return spec_unknown(spec);
}

mesh_err
mesh_source_spec_check(const char *spec)
{
	char service[MESH_SERVICE_NAME_MAX + 1];
	int k;

	if (spec == NULL) {
		return mesh_err_set(MESH_EINVAL, "source: none given");
	}
	if (strncmp(spec, "queue:", 6) == 0) {
		return mesh_queue_name_check(spec + 6, NULL);
	}
	if (strncmp(spec, "subscription:", 13) == 0) {
		return mesh__subscription_id_check(spec + 13);
	}
	if (strncmp(spec, "partition:", 10) == 0) {
		return part_spec_parse(spec + 10, service, sizeof(service),
		                       &k);
	}
	return mesh_err_set(MESH_EINVAL,
	                    "source '%.300s': not queue:NAME, subscription:ID "
	                    "or partition:SERVICE/K",
	                    spec);
}
