/* sender.c: the pipelined producer path (see mesh/sender.h).
 *
 * Messages are published at once with reply subjects on the target's
 * inbox; a ring holds the unconfirmed ones in the order they were sent.
 * Confirmations come back in any order and mark their slot; completions
 * are reported from the ring's head while it is done, so the caller hears
 * of its messages in the order it sent them. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mesh/sender.h"
#include "rpc.h"

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
	struct slot *ring; /* o.window slots */
	size_t waiting;    /* sent and not yet confirmed (or timed out) */
	natsMsg **took;    /* confirmations to free together (o.window) */
	size_t head, n;
};

void
mesh_sender_opts_init(struct mesh_sender_opts *o)
{
	o->window = 256;
	o->timeout_ms = 5000;
}

static mesh_err
open_common(const struct mesh_sender_opts *o, mesh_sent_fn fn, void *arg,
            const char *what, struct mesh_sender **out)
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
	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (s->ring = calloc(o->window, sizeof(*s->ring))) == NULL ||
	    (s->took = calloc(o->window, sizeof(*s->took))) == NULL) {
		if (s != NULL) {
			free(s->ring);
		}
		free(s);
		return mesh_err_set(MESH_ENOMEM, "%s: sender", what);
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
	if ((err = open_common(o, fn, arg, what, out)) == MESH_OK) {
		(*out)->q = q;
		(*out)->rpc = mesh__queue_rpc(q);
		(*out)->nc = mesh__conn_bulk(mesh__queue_conn(q));
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
	if ((err = open_common(o, fn, arg, what, out)) == MESH_OK) {
		(*out)->t = t;
		(*out)->rpc = mesh__topic_rpc(t);
		(*out)->nc = mesh__conn_bulk(mesh__topic_conn(t));
	}
	return err;
}

size_t
mesh_sender_in_flight(const struct mesh_sender *s)
{
	return s->n;
}

static struct slot *
slot_at(struct mesh_sender *s, size_t i)
{
	return &s->ring[(s->head + i) % s->o.window];
}

static void
fail(struct slot *sl, mesh_err err)
{
	sl->done = true;
	sl->r.err = err;
	snprintf(sl->r.error, sizeof(sl->r.error), "%s", mesh_errdetail());
}

/* Report the done slots at the head, in order. */
static void
report(struct mesh_sender *s)
{
	while (s->n > 0 && s->ring[s->head].done) {
		struct slot *sl = &s->ring[s->head];
		if (s->fn != NULL) {
			s->fn(s->arg, sl->tag, &sl->r);
		}
		memset(sl, 0, sizeof(*sl));
		s->head = (s->head + 1) % s->o.window;
		s->n--;
	}
}

/* Mark the slot a confirmation answers (a late one answers none). The
 * caller destroys m. */
static void
confirm(struct mesh_sender *s, natsMsg *m)
{
	uint64_t rid = mesh__rpc_rid(s->rpc, natsMsg_GetSubject(m));

	for (size_t i = 0; rid != 0 && i < s->n; i++) {
		struct slot *sl = slot_at(s, i);
		if (sl->rid == rid && !sl->done) {
			mesh_err err = mesh__pub_ack(
			        m, s->what, &sl->r.sequence, &sl->r.duplicate);
			if (err != MESH_OK) {
				fail(sl, err);
			}
			sl->done = true;
			s->waiting--;
			break;
		}
	}
}

/* Take confirmations until the head is done (past its deadline, it has
 * timed out), then report. The wait is for half of what is in flight at
 * once: one wake-up for many confirmations, not one each. */
static void
reap_head(struct mesh_sender *s)
{
	natsMsg **took = s->took;
	size_t nt = 0;

	while (s->n > 0 && !s->ring[s->head].done) {
		struct slot *head = &s->ring[s->head];
		/* Half of what is still unconfirmed (those confirmed
		 * behind an unconfirmed head come no more). */
		size_t want = s->waiting / 2 > 0 ? s->waiting / 2 : 1;
		natsMsg *m =
		        mesh__rpc_take(s->rpc, want, false, head->deadline);

		if (m == NULL) {
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
		/* And whatever else is in, without waiting. */
		do {
			confirm(s, m);
			took[nt++] = m;
		} while (nt < s->o.window &&
		         (m = mesh__rpc_take(s->rpc, 1, false, 0)) != NULL);
		if (nt == s->o.window) {
			break; /* full: let them go, come again */
		}
	}
	/* Together: cnats hands each to its collector thread, woken once
	 * for the lot rather than once for each. */
	for (size_t i = 0; i < nt; i++) {
		natsMsg_Destroy(took[i]);
	}
	report(s);
}

mesh_err
mesh_sender_send(struct mesh_sender *s, const struct mesh_send *m)
{
	struct slot *sl;
	natsMsg *msg = NULL;
	natsStatus st;
	mesh_err err;

	while (s->n == s->o.window) {
		reap_head(s);
	}
	sl = slot_at(s, s->n);
	memset(sl, 0, sizeof(*sl));
	sl->tag = m->tag;
	if (s->q != NULL) {
		struct mesh_queue_entry e = {.event = m->event,
		                             .delay_s = -1,
		                             .group_id = m->group_id,
		                             .dedup_id = m->dedup_id};
		err = m->event == NULL
		              ? mesh_err_set(MESH_EINVAL, "%s: no message",
		                             s->what)
		              : mesh__queue_prepare(s->q, &e, &msg,
		                                    sl->r.message_id);
	} else {
		struct mesh_topic_entry e = {.event = m->event,
		                             .group_id = m->group_id,
		                             .dedup_id = m->dedup_id};
		err = mesh__topic_prepare(s->t, &e, &msg, sl->r.message_id);
	}
	s->n++;
	if (err != MESH_OK) {
		fail(sl, err); /* reported in its place, by its id */
		if (sl->r.message_id[0] == '\0' && m->event != NULL) {
			snprintf(sl->r.message_id, sizeof(sl->r.message_id),
			         "%s", mesh_event_id(m->event));
		}
		report(s);
		return MESH_OK;
	}
	sl->rid = mesh__rpc_rid(s->rpc, natsMsg_GetReply(msg));
	sl->deadline = mono_ms() + s->o.timeout_ms;
	s->waiting++;
	/* The coalescing connection: a window of messages is a few writes,
	 * not one each. */
	st = natsConnection_PublishMsg(s->nc, msg);
	natsMsg_Destroy(msg);
	if (st != NATS_OK) {
		s->n--; /* never sent: the caller hears of it now */
		s->waiting--;
		memset(sl, 0, sizeof(*sl));
		return mesh_err_nats(st, 0, "%s: sending", s->what);
	}
	return MESH_OK;
}

mesh_err
mesh_sender_flush(struct mesh_sender *s)
{
	while (s->n > 0) {
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
	free(s->took);
	free(s->ring);
	free(s);
}
