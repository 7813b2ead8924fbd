/* The router: the SNS half of the mesh. It forwards each message of a
 * topic to every subscribed queue whose filter policy matches it, exactly
 * once per subscription.
 *
 * A router follows the MESH_SUBSCRIPTIONS bucket and runs one worker per
 * queue subscription; a worker takes batches from the subscription's
 * consumer, sends the matching messages to the queue with de-duplication
 * ids made of the subscription, the topic's creation time and the topic
 * sequence, waits for the queue to store them, then acknowledges them.
 * A router killed anywhere in between leaves messages that come again and
 * are stored once (the queue's 5-minute de-duplication window is far
 * longer than the 30 s after which they come again). Several routers
 * share each subscription's consumer, and so the work.
 *
 * Raw delivery off (the default, as in SNS), the queue message's body is
 * the SNS notification JSON (Type, MessageId, TopicArn (the topic's name),
 * Subject, Message, Timestamp, MessageAttributes, and SequenceNumber for
 * FIFO topics) and it carries no message attributes of its own; on, it is
 * the event as published.
 */
#ifndef MESH_ROUTER_H
#define MESH_ROUTER_H

#include <signal.h>

#include "mesh/conn.h"
#include "mesh/err.h"
#include "mesh/event.h"

/* Receives one JSON line per event of the router (started, subscribed,
 * unsubscribed, failed, stats, stopped); valid during the call, which may
 * come from any of the router's threads, one at a time. */
typedef void (*mesh_router_log_fn)(const char *line, void *arg);

struct mesh_router_opts {
	int batch;              /* messages taken at once (1-256); 256 */
	int stats_every_s;      /* a "stats" line this often; 0: never */
	mesh_router_log_fn log; /* may be NULL */
	void *log_arg;
};

void mesh_router_opts_init(struct mesh_router_opts *o);

/* Run until *stop is set; then finish the batches in hand and return.
 * Errors: MESH_EINVAL (options), the connection's at start. */
mesh_err mesh_router_run(struct mesh_conn *c, const struct mesh_router_opts *o,
                         volatile sig_atomic_t *stop);

/* The queue message that raw delivery off makes of a topic's event: a copy
 * whose body is the SNS notification JSON and which has no message
 * attributes. seq is the topic's sequence (shown for FIFO topics when
 * fifo). Errors: MESH_ENOMEM. */
mesh_err mesh_router_notification(const struct mesh_event *ev,
                                  const char *topic, bool fifo, uint64_t seq,
                                  struct mesh_event **out);

#endif
