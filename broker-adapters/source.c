/* Sources: the consumer interface and its two implementations, queues and
 * topic subscriptions (see mesh/source.h). */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
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

mesh_err
mesh_source_read(struct mesh_source *s, struct mesh_source_msg *m)
{
	char fallback[MESH_SUBSCRIPTION_ID_MAX + 32];

	if (m->event != NULL) {
		return MESH_OK;
	}
	assert(m->msg != NULL);
	/* As a subscriber's own reading names it: "TOPIC-SEQUENCE". */
	snprintf(fallback, sizeof(fallback), "%s-%" PRIu64,
	         strchr(s->label, ':') ? strchr(s->label, ':') + 1 : s->label,
	         m->sequence);
	m->parse_error = m->parse_error_buf;
	return mesh_wire_read(m->msg, 0, fallback, &m->event,
	                      m->parse_error_buf, sizeof(m->parse_error_buf));
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

/* ---- topic subscriptions ------------------------------------------------ */

struct sub_source {
	struct mesh_conn *c;
	struct mesh_subscriber *sub;
	struct mesh_queue *dlq;
	char dlq_name[MESH_QUEUE_NAME_MAX + 1];
	char label[MESH_SUBSCRIPTION_ID_MAX + 16];
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
sub_ack(void *impl, struct mesh_source_msg *const *m, size_t n)
{
	struct sub_source *ss = impl;
	natsConnection *nc = mesh__conn_bulk(ss->c);

	for (size_t i = 0; i < n; i++) {
		const char *reply = natsMsg_GetReply(m[i]->msg);
		if (reply != NULL) {
			natsConnection_PublishString(nc, reply, "+ACK");
		}
	}
}

static mesh_err
sub_retry(void *impl, struct mesh_source_msg *m, int64_t delay_ms)
{
	natsStatus st = delay_ms > 0
	                        ? natsMsg_NakWithDelay(m->msg, delay_ms, NULL)
	                        : natsMsg_Nak(m->msg, NULL);

	(void)impl;
	return st == NATS_OK ? MESH_OK : mesh_err_nats(st, 0, "nak");
}

static mesh_err
sub_dead_letter(void *impl, struct mesh_source_msg *m,
                struct mesh_dead_letter *dl)
{
	struct sub_source *ss = impl;
	struct mesh_source_msg *one[] = {m};
	mesh_err err;

	if ((err = dlq_open(ss->c, ss->dlq_name, &ss->dlq, ss->label)) !=
	    MESH_OK) {
		return err;
	}
	dl->source = ss->label;
	if ((err = mesh_queue_put_dead_letter(ss->dlq, m->msg, dl)) !=
	    MESH_OK) {
		return err;
	}
	sub_ack(ss, one, 1);
	return MESH_OK;
}

static void
sub_close(void *impl)
{
	struct sub_source *ss = impl;

	mesh_subscriber_close(ss->sub);
	mesh_queue_close(ss->dlq);
	free(ss);
}

static const struct mesh_source_ops sub_ops = {
        .fetch = sub_fetch,
        .ack = sub_ack,
        .retry = sub_retry,
        .dead_letter = sub_dead_letter,
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
	ss->c = c;
	if ((err = mesh_subscriber_bind(c, id, &ss->sub)) != MESH_OK) {
		free(ss);
		return err;
	}
	rec = mesh_subscriber_subscription(ss->sub);
	(void)mesh_topic_name_check(rec->topic, &t.fifo);
	snprintf(ss->label, sizeof(ss->label), "topic:%s", rec->topic);
	snprintf(ss->dlq_name, sizeof(ss->dlq_name), "%s",
	         o && o->dlq ? o->dlq : "");
	return mesh_source_new(&sub_ops, ss, ss->label, &t, o, out);
}

const struct mesh_subscription *
mesh_source_subscription(const struct mesh_source *s)
{
	const struct sub_source *ss = s->impl;

	return s->ops == &sub_ops ? mesh_subscriber_subscription(ss->sub)
	                          : NULL;
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
	return mesh_err_set(MESH_EINVAL,
	                    "source '%s': not queue:NAME or subscription:ID",
	                    spec);
}
