/* call.h: mesh-gateway's service calls in flight: NATS requests whose
 * replies come back on one wildcard inbox subscription, and their
 * timeouts.
 *
 * Every call gets the same timeout, so the calls in flight, kept in the
 * order they started, are also in the order they expire: the timer thread
 * waits for the first one alone (a FIFO, no heap needed), and wakes only
 * when a call is due or a new one starts an empty list.
 *
 * Thread safety: start from any thread; each call's done runs once, on a
 * NATS delivery thread (a reply or no responders), the timer thread (its
 * timeout) or the thread that calls gw_calls_close (stopped). */
#ifndef GW_CALL_H
#define GW_CALL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <nats/nats.h>

#include "mesh/conn.h"
#include "mesh/err.h"

typedef enum {
	GW_CALL_REPLY = 0,     /* the reply: msg */
	GW_CALL_NO_RESPONDERS, /* nobody subscribes to the subject */
	GW_CALL_TIMEOUT,
	GW_CALL_STOPPED, /* the gateway stops */
} gw_call_outcome;

struct gw_call {
	/* The caller's: */
	void (*done)(struct gw_call *c, gw_call_outcome o, natsMsg *msg);
	void *arg;
	/* The table's: */
	uint64_t id;
	int64_t deadline_ms; /* monotonic */
	struct gw_call *prev, *next;
};

struct gw_calls {
	natsConnection *nc;
	natsSubscription *sub;
	char prefix[128]; /* "_INBOX[.<public key>].<nuid>" */
	int64_t timeout_ms;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct gw_call *head, *tail;
	uint64_t next_id;
	bool stopping, started;
	pthread_t timer;
};

/* Subscribe an inbox of c's (mesh_conn_inbox: under an NKey identity,
 * _INBOX.<its public key>, the only replies nats-server lets it take) and
 * start the timer thread. c is borrowed until gw_calls_close. Errors: the
 * connection's, MESH_ENOMEM. */
mesh_err gw_calls_open(struct gw_calls *cs, struct mesh_conn *c,
                       int64_t timeout_ms);

/* A reply subject for c (its id set), into out (size bytes). */
void gw_calls_reply_to(struct gw_calls *cs, struct gw_call *c, char *out,
                       size_t size);

/* Publish m (its reply subject from gw_calls_reply_to for c; borrowed)
 * and wait for its outcome: c->done runs once, from another thread,
 * perhaps before this returns. Errors (done will not run): MESH_ECLOSED
 * once stopping, the connection's. */
mesh_err gw_calls_start(struct gw_calls *cs, struct gw_call *c, natsMsg *m);

/* Calls still in flight end with GW_CALL_STOPPED; then unsubscribe and
 * join the timer. */
void gw_calls_close(struct gw_calls *cs);

#endif
