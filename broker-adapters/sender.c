/* sender.c: the pipelined producer path (see mesh/sender.h).
 *
 * Messages are published at once with reply subjects on the target's
 * inbox; a ring holds the unconfirmed ones in the order they were sent.
 * Confirmations are judged as they come, on cnats' thread (the inbox's
 * replies are diverted here while the sender is open), and mark their
 * slot; the caller's thread sleeps only while the window is full, until
 * half of what is in flight is confirmed, and reports completions from
 * the ring's head while it is done, so the caller hears of its messages
 * in the order it sent them. The ring starts small and grows to the
 * window: a sender opened for a few messages costs a few slots. */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "mesh/sender.h"
#include "rpc.h"

#define RING_FIRST 16

static void on_reply(void *arg, natsMsg *m);

struct slot {
	uint64_t rid;     /* 0: refused before it was sent */
	int64_t deadline; /* monotonic ms */
	void *tag;
	bool done;
	struct mesh_sent r;
};

struct mesh_sender {
	struct mesh_queue *q; /* one of the two */
	struct mesh_topic *t;
	struct mesh__rpc *rpc;
	natsConnection *nc; /* publishes on the bulk connection */
	char what[MESH_TOPIC_NAME_MAX + 16];
	struct mesh_sender_opts o;
	mesh_sent_fn fn;
	void *arg;
	/* Shared with cnats' thread, under mu. */
	pthread_mutex_t mu;
	pthread_cond_t cv; /* the head done and enough confirmed */
	struct slot *ring; /* cap slots, cap <= o.window */
	size_t cap, head, n;
	size_t waiting;   /* sent and not yet confirmed (or timed out) */
	size_t want;      /* the caller waits for this many more; 0: not */
	size_t confirmed; /* since the caller began to wait */
	bool all_at_once; /* a batch: the caller waits for all of it */
};

void
mesh_sender_opts_init(struct mesh_sender_opts *o)
{
	o->window = 1024;
	o->timeout_ms = 5000;
}

/* A sender whose ring starts with `first` slots (at most the window). */
static mesh_err
open_common(const struct mesh_sender_opts *o, size_t first, mesh_sent_fn fn,
            void *arg, const char *what, struct mesh_sender **out)
{
	struct mesh_sender_opts d;
	struct mesh_sender *s;

	if (o == NULL) {
		mesh_sender_opts_init(&d);
		o = &d;
	}
	if (o->window < 1 || o->window > MESH_SENDER_WINDOW_MAX) {
		return mesh_err_set(MESH_EINVAL,
		                    "%s: a sender's window is 1-%d, not %zu",
		                    what, MESH_SENDER_WINDOW_MAX, o->window);
	}
	if (o->timeout_ms < 1) {
		return mesh_err_set(MESH_EINVAL,
		                    "%s: a sender's timeout must be positive",
		                    what);
	}
	first = first < o->window ? first : o->window;
	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (s->ring = malloc(first * sizeof(*s->ring))) == NULL) {
		free(s);
		return mesh_err_set(MESH_ENOMEM, "%s: sender", what);
	}
	s->cap = first;
	pthread_mutex_init(&s->mu, NULL);
	{
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&s->cv, &ca);
		pthread_condattr_destroy(&ca);
	}
	s->o = *o;
	s->fn = fn;
	s->arg = arg;
	snprintf(s->what, sizeof(s->what), "%s", what);
	*out = s;
	return MESH_OK;
}

mesh_err
mesh_sender_open_queue(struct mesh_queue *q, const struct mesh_sender_opts *o,
                       mesh_sent_fn fn, void *arg, struct mesh_sender **out)
{
	char what[MESH_QUEUE_NAME_MAX + 16];
	mesh_err err;

	snprintf(what, sizeof(what), "queue '%s'", mesh_queue_name(q));
	if ((err = open_common(o, RING_FIRST, fn, arg, what, out)) ==
	    MESH_OK) {
		(*out)->q = q;
		(*out)->rpc = mesh__queue_rpc(q);
		(*out)->nc = mesh__conn_bulk(mesh__queue_conn(q));
		mesh__rpc_divert((*out)->rpc, on_reply, *out);
	}
	return err;
}

mesh_err
mesh_sender_open_topic(struct mesh_topic *t, const struct mesh_sender_opts *o,
                       mesh_sent_fn fn, void *arg, struct mesh_sender **out)
{
	char what[MESH_TOPIC_NAME_MAX + 16];
	mesh_err err;

	snprintf(what, sizeof(what), "topic '%s'", mesh_topic_name(t));
	if ((err = open_common(o, RING_FIRST, fn, arg, what, out)) ==
	    MESH_OK) {
		(*out)->t = t;
		(*out)->rpc = mesh__topic_rpc(t);
		(*out)->nc = mesh__conn_bulk(mesh__topic_conn(t));
		mesh__rpc_divert((*out)->rpc, on_reply, *out);
	}
	return err;
}

size_t
mesh_sender_in_flight(const struct mesh_sender *s)
{
	struct mesh_sender *w = (struct mesh_sender *)s; /* its lock */
	size_t n;

	pthread_mutex_lock(&w->mu);
	n = w->n;
	pthread_mutex_unlock(&w->mu);
	return n;
}

static struct slot *
slot_at(struct mesh_sender *s, size_t i)
{
	return &s->ring[(s->head + i) % s->cap];
}

static void
fail(struct slot *sl, mesh_err err)
{
	sl->done = true;
	sl->r.err = err;
	snprintf(sl->r.error, sizeof(sl->r.error), "%s", mesh_errdetail());
}

/* The slot of a request id, or NULL (a late reply, for a slot reported
 * already). Sent slots' ids rise along the ring, one apart but where a
 * message failed after its reply subject was made: look where it should
 * be, then before. */
static struct slot *
find(struct mesh_sender *s, uint64_t rid)
{
	uint64_t first = s->n > 0 ? s->ring[s->head].rid : 0;
	size_t at = first != 0 && rid >= first && rid - first < s->n
	                    ? (size_t)(rid - first)
	                    : 0;

	for (size_t i = at; rid != 0 && i < s->n; i++) {
		struct slot *sl = slot_at(s, i);
		if (sl->rid == rid) {
			return sl;
		}
	}
	for (size_t i = 0; rid != 0 && i < at; i++) {
		struct slot *sl = slot_at(s, i);
		if (sl->rid == rid) {
			return sl;
		}
	}
	return NULL;
}

/* A confirmation, on cnats' thread: judge it, mark its slot, and wake the
 * caller once the head is done and half of what it waited for came. */
static void
on_reply(void *arg, natsMsg *m)
{
	struct mesh_sender *s = arg;
	uint64_t rid = mesh__rpc_rid(s->rpc, natsMsg_GetSubject(m));
	struct slot *sl;

	pthread_mutex_lock(&s->mu);
	if ((sl = find(s, rid)) != NULL && !sl->done) {
		mesh_err err = mesh__pub_ack(m, s->what, &sl->r.sequence,
		                             &sl->r.duplicate);
		if (err != MESH_OK) {
			fail(sl, err);
		}
		sl->done = true;
		s->waiting--;
		s->confirmed++;
		if (s->want > 0 && s->ring[s->head].done &&
		    (s->confirmed >= s->want || s->waiting == 0)) {
			pthread_cond_signal(&s->cv);
		}
	}
	pthread_mutex_unlock(&s->mu);
	natsMsg_Destroy(m);
}

/* Report the done slots at the head, in order; the callback is called
 * without the lock. Called and returns with s->mu held. */
static void
report(struct mesh_sender *s)
{
	while (s->n > 0 && s->ring[s->head].done) {
		struct slot sl = s->ring[s->head];
		s->head = (s->head + 1) % s->cap;
		s->n--;
		if (s->fn != NULL) {
			pthread_mutex_unlock(&s->mu);
			s->fn(s->arg, sl.tag, &sl.r);
			pthread_mutex_lock(&s->mu);
		}
	}
}

/* Wait until the head is done (past its deadline, it has timed out),
 * then report. */
static void
reap_head(struct mesh_sender *s)
{
	pthread_mutex_lock(&s->mu);
	while (s->n > 0 && !s->ring[s->head].done) {
		struct slot *head = &s->ring[s->head];
		struct timespec ts = {.tv_sec = head->deadline / 1000,
		                      .tv_nsec = (head->deadline % 1000) *
		                                 1000000L};
		char denied[512];
		if (mono_ms() >= head->deadline &&
		    mesh__err_denied_recent(denied, sizeof(denied))) {
			mesh_err_set(MESH_EAUTH, "%s: %s", s->what, denied);
			fail(head, MESH_EAUTH);
			s->waiting--;
			break;
		}
		if (mono_ms() >= head->deadline) {
			mesh_err_set(
			        MESH_ETIMEDOUT,
			        "%s: no confirmation within %lld ms; it may "
			        "be stored: sending it again is safe (it is "
			        "de-duplicated by its id)",
			        s->what, (long long)s->o.timeout_ms);
			fail(head, MESH_ETIMEDOUT);
			s->waiting--;
			break;
		}
		/* One wake-up for many confirmations, not one each. */
		s->want = s->all_at_once       ? s->waiting
		          : s->waiting / 2 > 0 ? s->waiting / 2
		                               : 1;
		s->confirmed = 0;
		pthread_cond_timedwait(&s->cv, &s->mu, &ts);
	}
	s->want = 0;
	report(s);
	pthread_mutex_unlock(&s->mu);
}

/* Room for one more slot: the ring grows up to the window. Called with
 * s->mu held. */
static bool
room(struct mesh_sender *s)
{
	struct slot *ring;
	size_t cap;

	if (s->n < s->cap) {
		return true;
	}
	if (s->cap == s->o.window) {
		return false;
	}
	cap = s->cap * 2 < s->o.window ? s->cap * 2 : s->o.window;
	if ((ring = malloc(cap * sizeof(*ring))) == NULL) {
		return false; /* then the window is what it has */
	}
	for (size_t i = 0; i < s->n; i++) {
		ring[i] = *slot_at(s, i);
	}
	free(s->ring);
	s->ring = ring;
	s->cap = cap;
	s->head = 0;
	return true;
}

/* Put a message in the ring, then send it: prepared (msg; err MESH_OK),
 * or refused before it was sent (err, with the detail `refused`), to be
 * reported in its place. Takes msg. */
static mesh_err
push(struct mesh_sender *s, natsMsg *msg, const char *message_id, mesh_err err,
     const char *refused, void *tag)
{
	struct slot *sl;
	natsStatus st;

	for (;;) {
		pthread_mutex_lock(&s->mu);
		if (room(s)) {
			break;
		}
		pthread_mutex_unlock(&s->mu);
		reap_head(s);
	}
	sl = slot_at(s, s->n++);
	memset(sl, 0, sizeof(*sl));
	sl->tag = tag;
	snprintf(sl->r.message_id, sizeof(sl->r.message_id), "%s", message_id);
	if (err != MESH_OK) {
		sl->done = true;
		sl->r.err = err;
		snprintf(sl->r.error, sizeof(sl->r.error), "%s", refused);
		report(s);
		pthread_mutex_unlock(&s->mu);
		return MESH_OK;
	}
	/* In the ring before it is sent: its confirmation finds it. */
	sl->rid = mesh__rpc_rid(s->rpc, natsMsg_GetReply(msg));
	sl->deadline = mono_ms() + s->o.timeout_ms;
	s->waiting++;
	pthread_mutex_unlock(&s->mu);
	st = natsConnection_PublishMsg(s->nc, msg);
	natsMsg_Destroy(msg);
	if (st != NATS_OK) {
		/* Never sent, so nothing answers it: still the last slot. */
		pthread_mutex_lock(&s->mu);
		s->n--;
		s->waiting--;
		pthread_mutex_unlock(&s->mu);
		return mesh_err_nats(st, 0, "%s: sending", s->what);
	}
	return MESH_OK;
}

mesh_err
mesh_sender_send(struct mesh_sender *s, const struct mesh_send *m)
{
	char message_id[64] = "", refused[256] = "";
	natsMsg *msg = NULL;
	mesh_err err;

	if (s->q != NULL) {
		struct mesh_queue_entry e = {.event = m->event,
		                             .delay_s = -1,
		                             .group_id = m->group_id,
		                             .dedup_id = m->dedup_id};
		err = m->event == NULL
		              ? mesh_err_set(MESH_EINVAL, "%s: no message",
		                             s->what)
		              : mesh__queue_prepare(s->q, &e, &msg,
		                                    message_id);
	} else {
		struct mesh_topic_entry e = {.event = m->event,
		                             .group_id = m->group_id,
		                             .dedup_id = m->dedup_id};
		err = mesh__topic_prepare(s->t, &e, &msg, message_id);
	}
	if (err != MESH_OK) {
		/* Kept now: waiting for room may set another detail. */
		snprintf(refused, sizeof(refused), "%s", mesh_errdetail());
		if (message_id[0] == '\0' && m->event != NULL) {
			snprintf(message_id, sizeof(message_id), "%s",
			         mesh_event_id(m->event));
		}
	}
	return push(s, msg, message_id, err, refused, m->tag);
}

void
mesh__send_prepared(struct mesh__rpc *rpc, natsConnection *nc,
                    const char *what, natsMsg **msgs, size_t n,
                    mesh_sent_fn fn, void *arg)
{
	struct mesh_sender_opts o = {.window = n, .timeout_ms = 5000};
	struct mesh_sender *s = NULL;
	mesh_err err = MESH_OK;
	size_t i = 0;

	if (o.window > MESH_SENDER_WINDOW_MAX) {
		o.window = MESH_SENDER_WINDOW_MAX;
	}
	if (n > 0 &&
	    (err = open_common(&o, n, fn, arg, what, &s)) == MESH_OK) {
		s->all_at_once = true;
		s->rpc = rpc;
		s->nc = nc;
		mesh__rpc_divert(rpc, on_reply, s);
		for (; i < n; i++) {
			natsMsg *m = msgs[i];
			msgs[i] = NULL; /* push takes it */
			if ((err = push(s, m, "", MESH_OK, NULL,
			                (void *)(uintptr_t)i)) != MESH_OK) {
				break;
			}
		}
		mesh_sender_close(s);
	}
	/* What could not be sent: the connection's error, each. */
	for (struct mesh_sent r = {.err = err}; i < n; i++) {
		snprintf(r.error, sizeof(r.error), "%s", mesh_errdetail());
		fn(arg, (void *)(uintptr_t)i, &r);
		natsMsg_Destroy(msgs[i]);
	}
}

mesh_err
mesh_sender_flush(struct mesh_sender *s)
{
	while (mesh_sender_in_flight(s) > 0) {
		reap_head(s);
	}
	return MESH_OK;
}

void
mesh_sender_close(struct mesh_sender *s)
{
	if (s == NULL) {
		return;
	}
	mesh_sender_flush(s);
	/* The inbox's replies are the queue's or topic's again. */
	mesh__rpc_divert(s->rpc, NULL, NULL);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	free(s->ring);
	free(s);
}
