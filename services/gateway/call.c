/* call.c: service calls in flight (call.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "call.h"
#include "mesh/clock.h"
#include "mesh/conn.h"

static void
unlink_call(struct gw_calls *cs, struct gw_call *c)
{
	if (c->prev != NULL) {
		c->prev->next = c->next;
	} else {
		cs->head = c->next;
	}
	if (c->next != NULL) {
		c->next->prev = c->prev;
	} else {
		cs->tail = c->prev;
	}
	c->prev = c->next = NULL;
}

/* The call of id, taken out of the table; NULL when it has ended. */
static struct gw_call *
take(struct gw_calls *cs, uint64_t id)
{
	struct gw_call *c;

	pthread_mutex_lock(&cs->mu);
	for (c = cs->head; c != NULL && c->id != id; c = c->next) {
	}
	if (c != NULL) {
		unlink_call(cs, c);
	}
	pthread_mutex_unlock(&cs->mu);
	return c;
}

static void
on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
	struct gw_calls *cs = arg;
	const char *subj = natsMsg_GetSubject(m);
	size_t plen = strlen(cs->prefix);
	struct gw_call *c;
	char *end = NULL;
	uint64_t id;

	(void)nc;
	(void)sub;
	if (strncmp(subj, cs->prefix, plen) != 0 || subj[plen] != '.') {
		natsMsg_Destroy(m);
		return;
	}
	id = strtoull(subj + plen + 1, &end, 10);
	if (end != NULL && *end == '\0' && (c = take(cs, id)) != NULL) {
		c->done(c,
		        natsMsg_IsNoResponders(m) ? GW_CALL_NO_RESPONDERS
		                                  : GW_CALL_REPLY,
		        m);
	}
	natsMsg_Destroy(m);
}

static void *
timer_main(void *arg)
{
	struct gw_calls *cs = arg;

	pthread_mutex_lock(&cs->mu);
	while (!cs->stopping) {
		int64_t now = mesh_mono_ms();
		struct gw_call *due = NULL, **last = &due;
		if (cs->head == NULL) {
			pthread_cond_wait(&cs->cv, &cs->mu);
			continue;
		}
		if (cs->head->deadline_ms > now) {
			struct timespec ts;
			int64_t at = cs->head->deadline_ms;
			ts.tv_sec = at / 1000;
			ts.tv_nsec = (at % 1000) * 1000000;
			pthread_cond_timedwait(&cs->cv, &cs->mu, &ts);
			continue;
		}
		while (cs->head != NULL && cs->head->deadline_ms <= now) {
			struct gw_call *c = cs->head;
			unlink_call(cs, c);
			*last = c;
			last = &c->next;
		}
		pthread_mutex_unlock(&cs->mu);
		while (due != NULL) {
			struct gw_call *c = due;
			due = c->next;
			c->next = NULL;
			c->done(c, GW_CALL_TIMEOUT, NULL);
		}
		pthread_mutex_lock(&cs->mu);
	}
	pthread_mutex_unlock(&cs->mu);
	return NULL;
}

mesh_err
gw_calls_open(struct gw_calls *cs, struct mesh_conn *c, int64_t timeout_ms)
{
	pthread_condattr_t ca;
	char subject[sizeof(cs->prefix) + 2];
	natsStatus st;

	memset(cs, 0, sizeof(*cs));
	cs->nc = mesh_conn_nats(c);
	cs->timeout_ms = timeout_ms;
	cs->next_id = 1;
	pthread_mutex_init(&cs->mu, NULL);
	/* mesh_mono_ms is CLOCK_MONOTONIC: the waits are on it too. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&cs->cv, &ca);
	pthread_condattr_destroy(&ca);
	mesh_conn_inbox(c, cs->prefix, sizeof(cs->prefix));
	snprintf(subject, sizeof(subject), "%s.*", cs->prefix);
	if ((st = natsConnection_Subscribe(&cs->sub, cs->nc, subject, on_reply,
	                                   cs)) != NATS_OK ||
	    (st = natsSubscription_SetPendingLimits(cs->sub, -1, -1)) !=
	            NATS_OK) {
		return mesh_err_nats(st, 0, "subscribing %s", subject);
	}
	if (pthread_create(&cs->timer, NULL, timer_main, cs) != 0) {
		return mesh_err_set(MESH_ENOMEM, "the calls' timer thread");
	}
	cs->started = true;
	return MESH_OK;
}

void
gw_calls_reply_to(struct gw_calls *cs, struct gw_call *c, char *out,
                  size_t size)
{
	pthread_mutex_lock(&cs->mu);
	c->id = cs->next_id++;
	pthread_mutex_unlock(&cs->mu);
	snprintf(out, size, "%s.%" PRIu64, cs->prefix, c->id);
}

mesh_err
gw_calls_start(struct gw_calls *cs, struct gw_call *c, natsMsg *m)
{
	natsStatus st;

	pthread_mutex_lock(&cs->mu);
	if (cs->stopping) {
		pthread_mutex_unlock(&cs->mu);
		return mesh_err_set(MESH_ECLOSED, "the gateway is stopping");
	}
	c->deadline_ms = mesh_mono_ms() + cs->timeout_ms;
	c->next = NULL;
	c->prev = cs->tail;
	if (cs->tail != NULL) {
		cs->tail->next = c;
	} else {
		cs->head = c;
		pthread_cond_signal(&cs->cv);
	}
	cs->tail = c;
	pthread_mutex_unlock(&cs->mu);
	if ((st = natsConnection_PublishMsg(cs->nc, m)) != NATS_OK) {
		/* Its done must not run: take it back unless a reply or
		 * the timer already has (then it ran, or runs). */
		if (take(cs, c->id) == NULL) {
			return MESH_OK;
		}
		return mesh_err_nats(st, 0, "requesting %s",
		                     natsMsg_GetSubject(m));
	}
	return MESH_OK;
}

void
gw_calls_close(struct gw_calls *cs)
{
	struct gw_call *c;

	if (!cs->started) {
		natsSubscription_Destroy(cs->sub);
		return;
	}
	pthread_mutex_lock(&cs->mu);
	cs->stopping = true;
	pthread_cond_signal(&cs->cv);
	pthread_mutex_unlock(&cs->mu);
	pthread_join(cs->timer, NULL);
	natsSubscription_Unsubscribe(cs->sub);
	natsSubscription_Destroy(cs->sub);
	cs->sub = NULL;
	while ((c = cs->head) != NULL) {
		unlink_call(cs, c);
		c->done(c, GW_CALL_STOPPED, NULL);
	}
	cs->started = false;
}
