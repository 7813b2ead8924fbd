/* rpc.c: pipelined requests on one inbox (see rpc.h). */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "rpc.h"

/* Replies, put here by cnats' thread; the waiter is woken only when as
 * many as it waits for are in (or a status ends a pull). */
struct mesh__rpc {
	struct mesh_conn *c;
	natsSubscription *sub;
	char inbox[128];
	uint64_t rid;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	natsMsg **msgs;
	size_t head, n, cap;
	size_t want;    /* wake when n reaches this */
	bool on_status; /* ... or when a status reply comes */
	/* While set, replies go to divert on cnats' thread instead. */
	void (*divert)(void *arg, natsMsg *m);
	void *divert_arg;
};

int
mesh__rpc_status(natsMsg *m)
{
	const char *st = NULL;

	if (natsMsg_GetDataLength(m) != 0 ||
	    natsMsgHeader_Get(m, "Status", &st) != NATS_OK || st == NULL) {
		return 0;
	}
	return atoi(st);
}

static void
put(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
	struct mesh__rpc *r = arg;

	(void)nc;
	(void)sub;
	pthread_mutex_lock(&r->mu);
	if (r->divert != NULL) {
		/* Under mu: mesh__rpc_divert(r, NULL, ...) returns once no
		 * reply is in the hands of the old one. */
		r->divert(r->divert_arg, m);
		pthread_mutex_unlock(&r->mu);
		return;
	}
	if (r->head + r->n == r->cap) {
		if (r->head > 0) {
			memmove(r->msgs, r->msgs + r->head,
			        r->n * sizeof(*r->msgs));
			r->head = 0;
		} else {
			size_t cap = r->cap ? r->cap * 2 : 64;
			natsMsg **nm = realloc(r->msgs, cap * sizeof(*nm));
			if (nm == NULL) {
				pthread_mutex_unlock(&r->mu);
				natsMsg_Destroy(m);
				return;
			}
			r->msgs = nm;
			r->cap = cap;
		}
	}
	r->msgs[r->head + r->n++] = m;
	if (r->n >= r->want || (r->on_status && mesh__rpc_status(m) != 0)) {
		pthread_cond_signal(&r->cv);
	}
	pthread_mutex_unlock(&r->mu);
}

mesh_err
mesh__rpc_open(struct mesh_conn *c, const char *what, struct mesh__rpc **out)
{
	struct mesh__rpc *r = calloc(1, sizeof(*r));
	char wildcard[sizeof(r->inbox) + 2];
	natsStatus s;

	if (r == NULL) {
		return mesh_err_set(MESH_ENOMEM, "%s: inbox", what);
	}
	r->c = c;
	r->want = SIZE_MAX;
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	mesh_conn_inbox(c, r->inbox, sizeof(r->inbox));
	snprintf(wildcard, sizeof(wildcard), "%s.*", r->inbox);
	s = natsConnection_Subscribe(&r->sub, mesh_conn_nats(c), wildcard, put,
	                             r);
	if (s == NATS_OK) {
		s = natsSubscription_SetPendingLimits(r->sub, -1, -1);
	}
	/* The server knows of the inbox before anything is asked: requests
	 * may go out on the bulk connection, and a reply to an interest
	 * not yet registered is dropped, not queued. */
	if (s == NATS_OK) {
		s = natsConnection_FlushTimeout(mesh_conn_nats(c), 5000);
	}
	if (s != NATS_OK) {
		mesh__rpc_close(r);
		return mesh_err_nats(s, 0, "%s: inbox", what);
	}
	*out = r;
	return MESH_OK;
}

void
mesh__rpc_close(struct mesh__rpc *r)
{
	if (r == NULL) {
		return;
	}
	if (r->sub != NULL) {
		/* Unsubscribe returns once the callback has stopped. */
		natsSubscription_Unsubscribe(r->sub);
		natsSubscription_WaitForDrainCompletion(r->sub, 0);
		natsSubscription_Destroy(r->sub);
	}
	for (size_t i = 0; i < r->n; i++) {
		natsMsg_Destroy(r->msgs[r->head + i]);
	}
	free(r->msgs);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	free(r);
}

void
mesh__rpc_divert(struct mesh__rpc *r, void (*fn)(void *arg, natsMsg *m),
                 void *arg)
{
	pthread_mutex_lock(&r->mu);
	r->divert = fn;
	r->divert_arg = arg;
	pthread_mutex_unlock(&r->mu);
}

const char *
mesh__rpc_reply(struct mesh__rpc *r, char *buf, size_t size)
{
	snprintf(buf, size, "%s.%" PRIu64, r->inbox, ++r->rid);
	return buf;
}

uint64_t
mesh__rpc_rid(const struct mesh__rpc *r, const char *subject)
{
	size_t n = strlen(r->inbox);

	if (subject == NULL || strncmp(subject, r->inbox, n) != 0 ||
	    subject[n] != '.') {
		return 0;
	}
	return strtoull(subject + n + 1, NULL, 10);
}

natsMsg *
mesh__rpc_take(struct mesh__rpc *r, size_t want, bool on_status,
               int64_t deadline)
{
	natsMsg *m = NULL;

	pthread_mutex_lock(&r->mu);
	r->want = want > 0 ? want : 1;
	r->on_status = on_status;
	while (r->n < r->want) {
		bool status_in = false;
		struct timespec ts;
		int64_t left = deadline - mono_ms();
		for (size_t i = 0; on_status && i < r->n && !status_in; i++) {
			status_in =
			        mesh__rpc_status(r->msgs[r->head + i]) != 0;
		}
		if (status_in || left <= 0) {
			break;
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += left / 1000;
		ts.tv_nsec += (left % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&r->cv, &r->mu, &ts);
	}
	if (r->n > 0) {
		m = r->msgs[r->head++];
		if (--r->n == 0) {
			r->head = 0;
		}
	}
	r->want = SIZE_MAX;
	pthread_mutex_unlock(&r->mu);
	return m;
}

mesh_err
mesh__rpc_many(struct mesh__rpc *r, natsMsg **msgs, size_t n,
               int64_t timeout_ms, natsMsg **replies,
               const struct mesh__rpc_hooks *hooks)
{
	natsConnection *nc = mesh_conn_nats(r->c);
	uint64_t first = 0;
	size_t got = 0;
	int64_t deadline;
	natsStatus s = NATS_OK;

	for (size_t i = 0; i < n; i++) {
		replies[i] = NULL;
		if (i == 0) {
			first = mesh__rpc_rid(r, natsMsg_GetReply(msgs[0]));
		}
		if (s == NATS_OK) {
			s = natsConnection_PublishMsg(nc, msgs[i]);
		}
		natsMsg_Destroy(msgs[i]);
		msgs[i] = NULL;
	}
	/* No flush: cnats' flusher sends at once, and a flush would add
	 * a round trip of its own. */
	if (s != NATS_OK) {
		return mesh_err_nats(s, 0, "request");
	}
	deadline = mono_ms() + timeout_ms;
	while (got < n) {
		natsMsg *m;
		uint64_t rid;
		if (deadline - mono_ms() <= 0 ||
		    (m = mesh__rpc_take(r, n - got, false, deadline)) ==
		            NULL) {
			break;
		}
		rid = mesh__rpc_rid(r, natsMsg_GetSubject(m));
		if (rid == 0 && hooks != NULL && hooks->match != NULL) {
			long i = hooks->match(m, hooks->arg);
			rid = i >= 0 ? first + (uint64_t)i : 0;
		}
		if (rid >= first && rid < first + n &&
		    replies[rid - first] == NULL) {
			replies[rid - first] = m;
			got++;
		} else if (hooks != NULL && hooks->drop != NULL) {
			hooks->drop(m, hooks->arg); /* late, from before */
		} else {
			natsMsg_Destroy(m);
		}
	}
	return MESH_OK;
}

/* Read by hand: it is on the hot path and its shape is fixed. */
mesh_err
mesh__pub_ack(natsMsg *r, const char *what, uint64_t *seq, bool *dup)
{
	const char *d, *p;

	if (r == NULL) {
		return mesh_err_set(MESH_ETIMEDOUT,
		                    "%s: no acknowledgement from JetStream in "
		                    "time",
		                    what);
	}
	if (natsMsg_IsNoResponders(r)) {
		return mesh_err_set(MESH_ENOTFOUND,
		                    "%s: no stream takes its messages (was it "
		                    "deleted?)",
		                    what);
	}
	d = natsMsg_GetData(r);
	if (d != NULL && strstr(d, "\"error\"") != NULL) {
		const char *desc = strstr(d, "\"description\":\"");
		int len = 0;
		mesh_err err = strstr(d, "\"err_code\":10054") != NULL
		                       ? MESH_ETOOBIG
		                       : MESH_EBROKER;
		if (desc != NULL) {
			desc += 15;
			len = (int)strcspn(desc, "\"");
		}
		return mesh_err_set(err,
		                    "%s: JetStream refused the message: %.*s",
		                    what, len, desc ? desc : "");
	}
	if (d == NULL || (p = strstr(d, "\"seq\":")) == NULL) {
		return mesh_err_set(MESH_EBROKER,
		                    "%s: unreadable acknowledgement", what);
	}
	*seq = strtoull(p + 6, NULL, 10);
	if ((p = strstr(d, "\"duplicate\":")) != NULL) {
		p += 12;
		p += strspn(p, " ");
		*dup = strncmp(p, "true", 4) == 0;
	} else {
		*dup = false;
	}
	return MESH_OK;
}
