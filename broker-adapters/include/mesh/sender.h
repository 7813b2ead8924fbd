/* Senders: the pipelined producer path. A sender keeps many messages in
 * flight to one queue or topic, a window of them unconfirmed at once,
 * instead of waiting for each one's confirmation (or each batch of 10's)
 * before sending the next.
 *
 *   struct mesh_sender *s;
 *   mesh_sender_open_queue(q, NULL, on_sent, arg, &s);
 *   for (...) mesh_sender_send(s, &(struct mesh_send){.event = ev});
 *   mesh_sender_close(s);   // waits for the last confirmations
 *
 * Completions. Every message sent is reported exactly once to the
 * sender's callback, with its MessageId or its error, **in the order the
 * messages were sent**, from inside mesh_sender_send (when the window is
 * full), mesh_sender_flush or mesh_sender_close, on the caller's thread.
 * A message is stored when its completion says MESH_OK. A message whose
 * confirmation does not come within the timeout is reported as
 * MESH_ETIMEDOUT: it may or may not be stored, and sending it again is
 * safe within the 5-minute de-duplication window (its id is its
 * Nats-Msg-Id). A message that fails does not stop those after it: on a
 * FIFO queue or topic, send a group's later messages again after a
 * failure if their order matters.
 *
 * Thread safety: a sender is for one thread at a time, and the queue or
 * topic it was opened on is the sender's until it is closed (they share
 * one inbox).
 */
#ifndef MESH_SENDER_H
#define MESH_SENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mesh/err.h"
#include "mesh/event.h"
#include "mesh/queue.h"
#include "mesh/topic.h"

#define MESH_SENDER_WINDOW_MAX 4096

struct mesh_sender;

struct mesh_sender_opts {
	size_t window;      /* confirmations in flight, 1-4096; 1024 */
	int64_t timeout_ms; /* for each confirmation; 5000 */
};

void mesh_sender_opts_init(struct mesh_sender_opts *o);

/* One message: the event (borrowed for the call), its FIFO group and
 * de-duplication id (as mesh_queue_send's), and a tag for the caller,
 * handed back with its completion. */
struct mesh_send {
	const struct mesh_event *event;
	const char *group_id;
	const char *dedup_id;
	void *tag;
};

/* A message's outcome. */
struct mesh_sent {
	mesh_err err;        /* MESH_OK: stored */
	char error[256];     /* the detail when err != MESH_OK */
	char message_id[64]; /* MessageId */
	uint64_t sequence;   /* its stream sequence */
	bool duplicate;      /* dropped as a duplicate (FIFO; topics) */
};

typedef void (*mesh_sent_fn)(void *arg, void *tag, const struct mesh_sent *r);

/* A sender to an open queue or topic (o may be NULL for the defaults; fn
 * may be NULL to ignore completions). The queue or topic must outlive the
 * sender. Errors: MESH_EINVAL (window, timeout), MESH_ENOMEM. */
mesh_err mesh_sender_open_queue(struct mesh_queue *q,
                                const struct mesh_sender_opts *o,
                                mesh_sent_fn fn, void *arg,
                                struct mesh_sender **out);
mesh_err mesh_sender_open_topic(struct mesh_topic *t,
                                const struct mesh_sender_opts *o,
                                mesh_sent_fn fn, void *arg,
                                struct mesh_sender **out);

/* Send one message, waiting first (and reporting completions) while the
 * window is full. A message refused before it is sent (MESH_EINVAL,
 * MESH_ETOOBIG: the detail names the field) is reported through the
 * callback, in its place, like any other. Errors: the connection's
 * (nothing was sent then). */
mesh_err mesh_sender_send(struct mesh_sender *s, const struct mesh_send *m);

/* Wait until every message sent is reported. Errors: none yet (each
 * message's outcome is its completion); MESH_OK. */
mesh_err mesh_sender_flush(struct mesh_sender *s);

/* Messages sent and not yet reported. */
size_t mesh_sender_in_flight(const struct mesh_sender *s);

/* Flush, then free. NULL is fine. */
void mesh_sender_close(struct mesh_sender *s);

#endif
