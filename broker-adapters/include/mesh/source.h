/* Sources: one consumer interface over queues, topic subscriptions and
 * partitions.
 *
 * A consumer (the service runtime, the router) takes batches of messages
 * from a source and settles each one: done (ack), again later (retry), or
 * dead-lettered with a reason. It never asks what kind of source it has:
 * a source is an ops table and its implementation, in the manner of nng's
 * protocols. libmesh has three implementations, opened by
 * mesh_source_open:
 *
 *   "queue:NAME"          the queue's shared consumer (SQS receive);
 *                         retry = a changed visibility timeout; dead
 *                         letters go to the queue's own dead-letter queue
 *                         when it has a redrive policy, else to opts.dlq
 *   "subscription:ID"     a topic subscription's durable consumer, its
 *                         filter policy applied (mesh_subscriber_fetch);
 *                         retry = a NAK with delay; dead letters go to
 *                         opts.dlq
 *   "partition:SERVICE/K" partition K of a partitioned service
 *                         (mesh/partition.h): its durable consumer pK on
 *                         the stream MESH_PART_SERVICE, in the order the
 *                         forwarder stored them; attempt = the broker's
 *                         delivery count; group_id = the Mesh-Group
 *                         header; retry = a NAK with delay; dead letters
 *                         go to opts.dlq, from "partition:SERVICE/K"
 *
 * and anyone may make another with mesh_source_new (tests use an
 * in-memory one).
 *
 * Every message a source hands out is read as mesh_wire_read reads it: a
 * message that is not a readable CloudEvent comes as its bytes, with
 * parse_error set, and never fails the others of its batch.
 *
 * Thread safety: a source is for one thread at a time; open one per
 * thread. Messages belong to their source until released.
 */
#ifndef MESH_SOURCE_H
#define MESH_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mesh/conn.h"
#include "mesh/err.h"
#include "mesh/event.h"
#include "mesh/queue.h"

#define MESH_SOURCE_BATCH_MAX 256 /* messages fetched at once, at most */

struct mesh_source;

struct mesh_source_opts {
	/* Where dead letters go when the source has no dead-letter queue of
	 * its own; NULL: none (mesh_source_dead_letter then fails). */
	const char *dlq;
	/* Named in dead letters as DeadLetterService; NULL: none. */
	const char *service;
	/* Read every message's event (true, the default); false leaves
	 * event NULL until mesh_source_read (the router passes most
	 * messages on as bytes, unread). */
	bool decode;
};

void mesh_source_opts_init(struct mesh_source_opts *o);

/* A message from a source. The public fields are read-only; the rest are
 * the implementation's. */
struct mesh_source_msg {
	struct mesh_event *event; /* owned by the message; NULL if unread */
	const char *parse_error;  /* "": it is a readable CloudEvent */
	const char *group_id;     /* FIFO: its MessageGroupId; else NULL */
	uint64_t sequence;        /* its sequence in the source's stream */
	uint64_t attempt;         /* 1 on its first delivery */
	void *msg;                /* the NATS message (natsMsg *); NULL for
	                             sources without one */

	/* The implementation's. */
	void *impl;
	char parse_error_buf[256];
	char receipt[MESH_QUEUE_RECEIPT_MAX];
	char group_buf[MESH_QUEUE_ID_MAX + 1];
};

/* An implementation. impl is what mesh_source_new was given. */
struct mesh_source_ops {
	/* Up to max (<= MESH_SOURCE_BATCH_MAX) messages into out[], waiting
	 * up to wait_ms for the first; *n how many (0 on a quiet wait);
	 * *filtered (never NULL) those a filter policy took away. */
	mesh_err (*fetch)(void *impl, size_t max, int64_t wait_ms, bool decode,
	                  struct mesh_source_msg *out, size_t *n,
	                  size_t *filtered);
	/* Done with these: never again. May return before the broker has
	 * them (a lost ack is a redelivery). */
	void (*ack)(void *impl, struct mesh_source_msg *const *m, size_t n);
	/* Again after delay_ms (0: at once). */
	mesh_err (*retry)(void *impl, struct mesh_source_msg *m,
	                  int64_t delay_ms);
	/* Into the dead-letter queue with dl (the source fills in source,
	 * sequence and receive count), then done. */
	mesh_err (*dead_letter)(void *impl, struct mesh_source_msg *m,
	                        struct mesh_dead_letter *dl);
	/* Free what fetch filled in m[0..n). */
	void (*release)(void *impl, struct mesh_source_msg *m, size_t n);
	/* Free impl. */
	void (*close)(void *impl);
};

/* A source over an implementation. label names it in logs and dead
 * letters ("queue:NAME", "topic:NAME"); traits say how it behaves. Takes
 * impl (ops->close frees it, also on failure). Errors: MESH_ENOMEM. */
struct mesh_source_traits {
	bool fifo;     /* each group's messages in order, one batch at a
	                  time */
	bool redrives; /* it dead-letters what was received too often */
};
mesh_err mesh_source_new(const struct mesh_source_ops *ops, void *impl,
                         const char *label,
                         const struct mesh_source_traits *traits,
                         const struct mesh_source_opts *o,
                         struct mesh_source **out);

/* Open "queue:NAME", "subscription:ID" or "partition:SERVICE/K" (see
 * above); o may be NULL for the defaults. Errors: MESH_EINVAL (spec; K
 * not below the service's partition count), MESH_ENOTFOUND (queue,
 * subscription, a service not partitioned, its partition's consumer or
 * stream gone), the connection's. The connection must outlive the
 * source. */
mesh_err mesh_source_open(struct mesh_conn *c, const char *spec,
                          const struct mesh_source_opts *o,
                          struct mesh_source **out);

/* Whether spec is written as mesh_source_open takes it ("queue:NAME",
 * "subscription:ID", "partition:SERVICE/K"), without asking the broker
 * whether it exists. Errors: MESH_EINVAL, the detail naming the spec. */
mesh_err mesh_source_spec_check(const char *spec);

/* Close a source; messages not yet settled come again (after their
 * visibility timeout or ack wait). NULL is fine. */
void mesh_source_close(struct mesh_source *s);

/* The subscription record, as the subscriber last read it (its filter
 * policy and raw delivery as they apply now), of a "subscription:ID"
 * source; NULL for any other. Borrowed until the next fetch. */
struct mesh_subscription;
const struct mesh_subscription *
mesh_source_subscription(const struct mesh_source *s);

/* "queue:NAME", "topic:NAME" or "partition:SERVICE/K" (borrowed, for the
 * source's life). */
const char *mesh_source_label(const struct mesh_source *s);
bool mesh_source_fifo(const struct mesh_source *s);
/* Whether the source dead-letters by itself a message received too often
 * (a queue's redrive policy): a consumer then hands failures back rather
 * than count attempts itself. */
bool mesh_source_redrives(const struct mesh_source *s);

/* Take up to max (1-MESH_SOURCE_BATCH_MAX) messages into out[], waiting
 * up to wait_ms for the first. *filtered (may be NULL) counts those a
 * filter policy took away (acknowledged, never handed out). Settle each
 * message (ack, retry, dead-letter; one left unsettled comes again after
 * its visibility timeout), then release them. Errors: MESH_EINVAL (max),
 * MESH_ENOTFOUND (the queue, subscription or partition stream is gone),
 * the connection's;
 * on error *n is 0. */
mesh_err mesh_source_fetch(struct mesh_source *s, size_t max, int64_t wait_ms,
                           struct mesh_source_msg *out, size_t *n,
                           size_t *filtered);

/* Give an unread message (opts.decode false) its event. Errors:
 * MESH_ENOMEM. */
mesh_err mesh_source_read(struct mesh_source *s, struct mesh_source_msg *m);

/* Done: n messages taken off the source (in bulk, without waiting). */
void mesh_source_ack(struct mesh_source *s, struct mesh_source_msg *const *m,
                     size_t n);

/* Hand a message out again after delay_ms (0: now). Errors: those of
 * the implementation (a stale queue receipt: MESH_ESTALE; it comes again
 * after its visibility timeout anyway). */
mesh_err mesh_source_retry(struct mesh_source *s, struct mesh_source_msg *m,
                           int64_t delay_ms);

/* Move a message to the dead-letter queue with a reason (NULL: "dead-
 * lettered by request"), bytes intact (see the README's "Poison messages
 * and dead letters"), then take it off the source. Errors: MESH_ENOTFOUND
 * (no dead-letter queue), the connection's; the message is then not
 * settled. */
mesh_err mesh_source_dead_letter(struct mesh_source *s,
                                 struct mesh_source_msg *m,
                                 const char *reason);

/* Free n fetched messages (settled or not). */
void mesh_source_release(struct mesh_source *s, struct mesh_source_msg *m,
                         size_t n);

/* ---- a source seen from outside (mesh-supervisor) ---------------------- */

/* What waits for a source's consumers, read from the broker at one moment. */
struct mesh_source_backlog {
	uint64_t pending;   /* stored, not yet handed out */
	uint64_t in_flight; /* handed out, not yet settled */
	uint64_t delayed;   /* queues: waiting for their delay */
	uint64_t delivered; /* grows with every message handed out: unchanged
	                       between two readings, nothing was taken */
};

/* The backlog of "queue:NAME", "subscription:ID" or "partition:SVC/K".
 * Errors: as mesh_source_open. */
mesh_err mesh_source_backlog(struct mesh_conn *c, const char *spec,
                             struct mesh_source_backlog *out);

/* Where a source's new messages are published: a NATS subject (with a
 * wildcard for FIFO queues) into subject, and for a subscription its
 * filter policy compiled into *filter (NULL: none; filter may be NULL;
 * mesh_filter_free it). A core NATS subscription to the subject hears of
 * each message as the broker stores it. Errors: as mesh_source_open;
 * those of mesh_filter_compile. */
struct mesh_filter;
mesh_err mesh_source_watch(struct mesh_conn *c, const char *spec,
                           char *subject, size_t size,
                           struct mesh_filter **filter);

#endif
