/* Subscriptions of queues and services to topics (SNS Subscribe).
 *
 * A subscription is a durable consumer on the topic's stream (S_<hex>,
 * where hex derives from the topic and the endpoint, so subscribing twice
 * is one subscription) and a record in the key-value bucket
 * MESH_SUBSCRIPTIONS (key TOPIC.<hex>) holding its endpoint, filter policy
 * and delivery options. Its id, "TOPIC:<hex>", plays the SubscriptionArn.
 *
 * A queue subscription is served by mesh-router (mesh/router.h), which
 * forwards each matching message to the queue exactly once. A service
 * subscription is consumed by the service itself through a
 * struct mesh_subscriber.
 *
 * A new subscription starts at "now": it gets the messages published after
 * it was made. On a topic with an archive, replay_from_ms makes it start
 * with the archived messages from that time on, then continue live, with
 * no gap and no duplicate (one consumer does both).
 *
 * A changed filter policy applies to the next message fetched, in every
 * process (SNS takes up to 15 minutes).
 */
#ifndef MESH_SUBSCRIPTION_H
#define MESH_SUBSCRIPTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mesh/conn.h"
#include "mesh/err.h"
#include "mesh/event.h"
#include "mesh/filter.h"

#define MESH_SUBSCRIPTION_ID_MAX 272 /* TOPIC:<16 hex> */
#define MESH_SUBSCRIPTION_BATCH  256 /* messages fetched at once, at most */

typedef enum {
	MESH_SUB_QUEUE = 1, /* "sqs": mesh-router forwards to a queue */
	MESH_SUB_SERVICE,   /* "service": consumed by a service */
} mesh_sub_protocol;

struct mesh_sub_attrs {
	const char *filter_policy;      /* FilterPolicy JSON; NULL: all */
	mesh_filter_scope filter_scope; /* FilterPolicyScope */
	bool raw;                       /* RawMessageDelivery (queues) */
	int64_t replay_from_ms;         /* 0: start now; else Unix ms (the
	                                   topic must keep an archive) */
};

void mesh_sub_attrs_init(struct mesh_sub_attrs *a);

/* A subscription as stored. */
struct mesh_subscription {
	char id[MESH_SUBSCRIPTION_ID_MAX + 1];
	char topic[256];
	mesh_sub_protocol protocol;
	char endpoint[256];  /* the queue's or the service's name */
	char *filter_policy; /* owned; NULL: none */
	mesh_filter_scope filter_scope;
	bool raw;
	int64_t replay_from_ms;
	int64_t created_ms;
	char consumer[24];  /* the durable consumer on the topic's stream */
	uint64_t pending;   /* messages not yet settled (from the consumer):
	                       waiting, and in_flight */
	uint64_t in_flight; /* handed out, not yet settled */
	uint64_t delivered; /* the topic's sequence last handed out */
	uint64_t revision;  /* the record's revision */
};

/* Free what a filled struct owns; the struct itself is the caller's. */
void mesh_subscription_fini(struct mesh_subscription *s);

/* "sqs" / "service" and back. */
const char *mesh_sub_protocol_name(mesh_sub_protocol p);
mesh_err mesh_sub_protocol_parse(const char *s, mesh_sub_protocol *out);

/* The names mesh_subscription_create gives the subscription of endpoint
 * (protocol p) to topic, without asking the broker: its id ("TOPIC:HEX",
 * NULL: not wanted) and its consumer on the topic's stream ("S_HEX");
 * meshctl auth grants a service its subscription's consumer by name.
 * Thread-safe. */
void mesh_subscription_names(const char *topic, mesh_sub_protocol p,
                             const char *endpoint,
                             char id[MESH_SUBSCRIPTION_ID_MAX + 1],
                             char consumer[24]);

/* Subscribe an endpoint (a queue or a service name) to a topic. The filter
 * policy is validated first; a queue must exist, and a FIFO topic takes
 * FIFO queues only, a standard topic standard ones. Subscribing again with
 * the same attributes returns the same subscription; with others it is
 * MESH_EEXIST (change them with mesh_subscription_set_attrs), except for
 * services, whose declared attributes replace the stored ones (a service
 * redeployed with a new policy gets it). out (optional) gets the record;
 * mesh_subscription_fini it.
 * Errors: MESH_EINVAL (policy, with SNS's words; names; replay without an
 * archive), MESH_ENOTFOUND (topic or queue), MESH_EEXIST, the
 * connection's. Nothing is left half-made on error. */
mesh_err mesh_subscription_create(struct mesh_conn *c, const char *topic,
                                  mesh_sub_protocol protocol,
                                  const char *endpoint,
                                  const struct mesh_sub_attrs *a,
                                  struct mesh_subscription *out);

/* Change a subscription's filter policy, scope and raw delivery
 * (replay_from_ms is ignored). Errors: MESH_EINVAL, MESH_ENOTFOUND, the
 * connection's. */
mesh_err mesh_subscription_set_attrs(struct mesh_conn *c, const char *id,
                                     const struct mesh_sub_attrs *a);

/* Unsubscribe: the consumer and the record go. Errors: MESH_EINVAL,
 * MESH_ENOTFOUND, the connection's. */
mesh_err mesh_subscription_delete(struct mesh_conn *c, const char *id);

/* Errors: MESH_EINVAL, MESH_ENOTFOUND, the connection's. */
mesh_err mesh_subscription_get(struct mesh_conn *c, const char *id,
                               struct mesh_subscription *out);

/* Every subscription, or a topic's (topic not NULL), sorted by id. Free
 * with mesh_subscription_list_free. */
mesh_err mesh_subscription_list(struct mesh_conn *c, const char *topic,
                                struct mesh_subscription **out, size_t *n);
void mesh_subscription_list_free(struct mesh_subscription *subs, size_t n);

/* ---- consuming a subscription ---------------------------------------- */

struct mesh_subscriber;

/* A message taken from a subscription: ack it when it has been handled,
 * nak it to have it again (after delay_ms), term it to never see it
 * again. Unacknowledged, it comes again after 30 s. */
struct mesh_delivery {
	struct mesh_event *event; /* owned by the delivery */
	uint64_t sequence;        /* the topic's stream sequence */
	uint64_t deliveries;      /* 1 on first delivery */
	const char *group_id;     /* FIFO topics: MessageGroupId */
	const char *dedup_id;     /* FIFO topics: de-duplication id */
	void *msg;                /* the NATS message (natsMsg *) */
	/* Not a readable CloudEvent: why; event is then of type
	 * MESH_WIRE_RAW_TYPE with the bytes as they are. "" otherwise. */
	char parse_error[256];
};

/* Create (idempotently; a service's attributes replace the stored ones)
 * the subscription of `service` to `topic` and bind to it. Errors: those
 * of mesh_subscription_create, MESH_ENOMEM. */
mesh_err mesh_subscriber_open(struct mesh_conn *c, const char *topic,
                              const char *service,
                              const struct mesh_sub_attrs *a,
                              struct mesh_subscriber **out);
/* Bind to an existing subscription by id (any protocol; mesh-router binds
 * to queue subscriptions so). Errors: MESH_ENOTFOUND, the connection's. */
mesh_err mesh_subscriber_bind(struct mesh_conn *c, const char *id,
                              struct mesh_subscriber **out);
void mesh_subscriber_close(struct mesh_subscriber *s);
/* The subscription as last read (its policy is the one applied). */
const struct mesh_subscription *
mesh_subscriber_subscription(const struct mesh_subscriber *s);

/* Take up to max (<= MESH_SUBSCRIPTION_BATCH) matching messages, waiting
 * up to wait_ms for the first. Messages the filter policy does not match
 * are acknowledged here and never returned (*filtered counts them,
 * optional). A message that is not a readable CloudEvent is returned as
 * its bytes with its parse_error set, whatever the policy (which cannot
 * judge it): see mesh_wire_read. FIFO
 * topics hand out one batch at a time to all the subscription's
 * consumers, in order. Errors: MESH_ENOTFOUND (the subscription is gone),
 * the connection's. Free each delivery with mesh_delivery_fini after
 * acking, nacking or terming it. */
mesh_err mesh_subscriber_fetch(struct mesh_subscriber *s, int max,
                               int64_t wait_ms, struct mesh_delivery *out,
                               size_t *n, size_t *filtered);

mesh_err mesh_delivery_ack(struct mesh_delivery *d);
mesh_err mesh_delivery_nak(struct mesh_delivery *d, int64_t delay_ms);
mesh_err mesh_delivery_term(struct mesh_delivery *d);
void mesh_delivery_fini(struct mesh_delivery *d);

#endif
