/* Queues with SQS semantics on JetStream.
 *
 * A queue NAME is a stream (MQ_NAME; FIFO: MF_BASE for BASE.fifo) over the
 * subject mesh.queue.NAME (FIFO: mesh.queue.NAME.P, P a partition chosen by
 * hashing the message group), with work-queue retention and one durable
 * pull consumer that every receiver shares (FIFO: one per partition, with
 * one message in flight, which keeps a group's order). The queue's
 * attributes live in its stream's description. Delayed messages wait in a
 * second stream (MQD_NAME / MFD_BASE) until a receive moves them in.
 *
 * Visibility timeout is the consumer's AckWait; a per-call or changed
 * timeout is a NAK with delay. Receipt handles are the delivery's ack subject
 * and visibility deadline, authenticated with a per-queue HMAC key: a
 * malformed or forged handle is refused, and so is a handle whose message
 * may have been received again since (MESH_ESTALE).
 *
 * Thread safety: the connection-level calls may be made from any thread. A
 * struct mesh_queue (an open queue) is for one thread at a time; open one
 * per thread to receive in parallel.
 */
#ifndef MESH_QUEUE_H
#define MESH_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mesh/conn.h"
#include "mesh/err.h"
#include "mesh/event.h"
#include "mesh/seal.h"
#include "mesh/sign.h"

#define MESH_QUEUE_NAME_MAX       80
#define MESH_QUEUE_BATCH_MAX      10
#define MESH_QUEUE_ID_MAX         128 /* group, de-duplication and batch-entry ids */
#define MESH_QUEUE_MAX_ATTRS      10
#define MESH_QUEUE_DEDUP_WINDOW_S 300
#define MESH_QUEUE_RECEIPT_MAX    576 /* the longest ack subject, sealed */

/* Attributes, with SQS's names, ranges and defaults (set by _init). */
struct mesh_queue_attrs {
	bool fifo;                    /* FifoQueue; the name ends in .fifo */
	bool content_based_dedup;     /* ContentBasedDeduplication (FIFO) */
	int64_t visibility_timeout_s; /* VisibilityTimeout 0-43200; 30 */
	int64_t delay_s;              /* DelaySeconds 0-900; 0 */
	int64_t retention_s;          /* MessageRetentionPeriod 60-1209600;
	                                 345600 (4 days) */
	int64_t max_message_size;     /* MaximumMessageSize 1024-1048576;
	                                 262144 */
	int64_t receive_wait_s; /* ReceiveMessageWaitTimeSeconds 0-20; 0 */
	char dlq[MESH_QUEUE_NAME_MAX + 1]; /* RedrivePolicy target; "" none */
	int64_t max_receive_count; /* RedrivePolicy maxReceiveCount 1-1000 */
	int64_t partitions;        /* FIFO: 1-256 partitions; 64 */
	int64_t replicas;    /* Replicas 1-5: copies of its streams, each on
	                        another server; 0: at create, the mesh's
	                        (mesh_conn_replicas), at set_attrs, as it is;
	                        read back as the streams have it. 0 */
	int64_t created_ms;  /* CreatedTimestamp (read only) */
	int64_t modified_ms; /* LastModifiedTimestamp (read only) */
	/* RequireSigners: "A,B" (mesh/sign.h), each recorded in MESH_KEYS
	 * when set; "" none. Standard queues only (a FIFO queue replaces
	 * the event id, which signatures cover). */
	char require_signers[MESH_SIGNERS_TEXT_MAX + 1];
	/* Encrypt: its events' data sealed (mesh/seal.h, target
	 * "queue:NAME") with a data key sealed to Readers ("A,B", each in
	 * MESH_KEYS) and to "admin"; creating or turning it on makes the
	 * first data key, changing Readers rotates it. Changeable (turning
	 * it off leaves old messages sealed). Dead letters and redrives
	 * move the sealed bytes as they are. */
	bool encrypt;
	char readers[MESH_READERS_TEXT_MAX + 1];
};

void mesh_queue_attrs_init(struct mesh_queue_attrs *a);

/* Check a queue name: 1-80 characters of [A-Za-z0-9_-], and for FIFO
 * queues the suffix ".fifo" (counted in the 80). *fifo (optional) says
 * which. Errors: MESH_EINVAL, with the name and the rule in the detail. */
mesh_err mesh_queue_name_check(const char *name, bool *fifo);

/* Check attributes against SQS's ranges; the detail names the attribute
 * and its value. Errors: MESH_EINVAL. */
mesh_err mesh_queue_attrs_check(const char *name,
                                const struct mesh_queue_attrs *a);

/* Create a queue. Creating an existing queue with the same attributes
 * succeeds (as SQS); with other attributes it is MESH_EEXIST. A named
 * dead-letter queue must exist and be of the same kind (FIFO or not).
 * Errors: MESH_EINVAL (also: more replicas than the servers c knows),
 * MESH_EEXIST, MESH_ENOTFOUND (dead-letter queue), and the connection's
 * (MESH_EBROKER when JetStream cannot place the replicas, say servers
 * are down). Nothing is left half-created on failure. */
mesh_err mesh_queue_create(struct mesh_conn *c, const char *name,
                           const struct mesh_queue_attrs *a);

/* Replace a queue's changeable attributes (all but fifo and partitions;
 * replicas too: JetStream moves the copies). Errors: MESH_ENOTFOUND,
 * MESH_EINVAL (also for changing fifo, or more replicas than servers). */
mesh_err mesh_queue_set_attrs(struct mesh_conn *c, const char *name,
                              const struct mesh_queue_attrs *a);

/* Delete a queue and every message in it. Errors: MESH_ENOTFOUND. */
mesh_err mesh_queue_delete(struct mesh_conn *c, const char *name);

/* Remove every message, waiting, in flight and delayed. */
mesh_err mesh_queue_purge(struct mesh_conn *c, const char *name);

/* The names of the queues starting with prefix (NULL: all), sorted. On
 * success *names is a malloc'ed array of *n malloc'ed strings: free with
 * mesh_queue_list_free(). */
mesh_err mesh_queue_list(struct mesh_conn *c, const char *prefix,
                         char ***names, size_t *n);
void mesh_queue_list_free(char **names, size_t n);

/* Counts and attributes. The counts are JetStream's, read at one moment:
 * visible = stored - in flight; not_visible = received and neither deleted
 * nor returned yet (a message whose visibility timeout just ended counts
 * here until it is received again); delayed = waiting for their delay. */
struct mesh_queue_info {
	struct mesh_queue_attrs attrs;
	uint64_t visible;     /* ApproximateNumberOfMessages */
	uint64_t not_visible; /* ApproximateNumberOfMessagesNotVisible */
	uint64_t delayed;     /* ApproximateNumberOfMessagesDelayed */
	uint64_t delivered;   /* grows with every message handed out (the
	                         sum of its consumers' last delivered
	                         sequences) */
};
mesh_err mesh_queue_info(struct mesh_conn *c, const char *name,
                         struct mesh_queue_info *out);

/* ---- an open queue: send, receive, delete, change visibility ----------- */

struct mesh_queue;

/* Open a queue (reads its attributes once). Errors: MESH_EINVAL (name),
 * MESH_ENOTFOUND. The connection must outlive the queue. */
mesh_err mesh_queue_open(struct mesh_conn *c, const char *name,
                         struct mesh_queue **out);
void mesh_queue_close(struct mesh_queue *q);
const struct mesh_queue_attrs *mesh_queue_attrs(const struct mesh_queue *q);
const char *mesh_queue_name(const struct mesh_queue *q);

/* A dead letter's system attributes, the same whoever dead-letters:
 * a queue's redrive policy, a service's runtime (mesh_reject, an event
 * that cannot be parsed, attempts used up) or the scheduler (a firing
 * given up). They travel as headers, beside the message's bytes as they
 * were, and come back in struct mesh_queue_msg's dlq_* fields. */
struct mesh_dead_letter {
	/* Where from: a queue's name, "topic:NAME" (a service's
	 * subscription), "partition:SERVICE/K" or "schedule:NAME". */
	const char *source;
	const char *reason;     /* why; NULL: "dead-lettered by request" */
	uint64_t sequence;      /* its stream sequence there; 0: none */
	uint64_t receive_count; /* its receives there; 0: none */
	const char *service;    /* the service that gave it up; NULL: none */
};

/* One message to send. The event carries the body (its data) and the
 * message attributes (at most 10). */
struct mesh_queue_entry {
	const char *id;                 /* batch entry id; NULL for single */
	const struct mesh_event *event; /* borrowed */
	int64_t delay_s;                /* -1: the queue's DelaySeconds */
	const char *group_id;           /* MessageGroupId (FIFO: required) */
	const char *dedup_id;           /* MessageDeduplicationId (FIFO) */
	/* Sent as a dead letter with these attributes; NULL: an ordinary
	 * message. Borrowed for the call. */
	const struct mesh_dead_letter *dead_letter;
};

struct mesh_queue_sent {
	mesh_err err;        /* this entry's outcome */
	char error[256];     /* its detail when err != MESH_OK */
	char message_id[64]; /* MessageId */
	uint64_t sequence;   /* SequenceNumber (FIFO) */
	bool duplicate;      /* dropped as a duplicate (FIFO) */
};

/* Seal with kr (borrowed: it must outlive q; NULL: none) what is sent
 * to q when q encrypts, on every send path (send, batch, many, sender),
 * as mesh_topic_set_keyring does for topics; without one an unsealed
 * event with data is refused (MESH_EINVAL, "queue 'jobs' is encrypted:
 * seal the event's data first ..."). Dead letters are not sent through
 * here: they keep the bytes they had. */
void mesh_queue_set_keyring(struct mesh_queue *q, struct mesh_keyring *kr);

/* Send one message. Errors: MESH_EINVAL (the detail names the field),
 * MESH_ETOOBIG (over MaximumMessageSize), and the connection's. When it
 * returns MESH_OK the message is stored. A FIFO duplicate within 5 minutes
 * is MESH_OK with out->duplicate and the original's MessageId. */
mesh_err mesh_queue_send(struct mesh_queue *q,
                         const struct mesh_queue_entry *e,
                         struct mesh_queue_sent *out);

/* Send up to 10 messages; each entry's outcome is in out[i]. Returns
 * MESH_OK when every entry was judged (some may have failed), or
 * MESH_EINVAL for faults of the batch itself (no entries, more than 10,
 * a missing, malformed or repeated entry id, more than MaximumMessageSize
 * in all); then nothing is sent. */
mesh_err mesh_queue_send_batch(struct mesh_queue *q,
                               const struct mesh_queue_entry *e, size_t n,
                               struct mesh_queue_sent *out);

/* Send n messages at once, pipelined (all published, then the
 * acknowledgements collected), without a batch's limits of 10 entries and
 * MaximumMessageSize in all; entry ids are not needed. Each entry's
 * outcome is in out[i]. Returns MESH_OK when every entry was judged, or
 * MESH_ENOMEM. For senders with many messages due at once (the
 * scheduler's firings). */
mesh_err mesh_queue_send_many(struct mesh_queue *q,
                              const struct mesh_queue_entry *e, size_t n,
                              struct mesh_queue_sent *out);

/* A received (or peeked) message. */
struct mesh_queue_msg {
	struct mesh_event *event;             /* owned; body = its data */
	char receipt[MESH_QUEUE_RECEIPT_MAX]; /* "" for a peeked message */
	uint64_t receive_count;               /* ApproximateReceiveCount */
	int64_t sent_ms;                      /* SentTimestamp */
	int64_t first_receive_ms; /* ApproximateFirstReceiveTimestamp */
	uint64_t sequence;        /* stream sequence (SequenceNumber) */
	char group_id[MESH_QUEUE_ID_MAX + 1];
	char dedup_id[MESH_QUEUE_ID_MAX + 1];
	/* Not a readable CloudEvent: why (Attributes.MeshParseError); the
	 * event is then of type MESH_WIRE_RAW_TYPE with the bytes as they
	 * are. "" for a message that parsed. */
	char parse_error[256];
	/* A dead letter (see "Dead letters" in the README): where from
	 * ("queue:NAME" or "topic:NAME"; a queue's redrive policy writes the
	 * bare NAME), why, its sequence there, its receives there, and the
	 * service that dead-lettered it ("" when a queue's redrive policy
	 * did). */
	char dlq_source[MESH_QUEUE_NAME_MAX + 16];
	char dlq_reason[256];
	uint64_t dlq_sequence;
	uint64_t dlq_receive_count;
	char dlq_service[MESH_QUEUE_NAME_MAX + 1];
	/* The NATS message as stored (natsMsg *), owned: for
	 * mesh_queue_put_dead_letter. */
	void *msg;
};

/* Receive up to max (1-10) messages. wait_s: long polling, 0-20 seconds,
 * -1 for the queue's ReceiveMessageWaitTimeSeconds; the call returns as
 * soon as a message is there. visibility_s: 0-43200, -1 for the queue's.
 * Messages received more than maxReceiveCount times are moved to the
 * dead-letter queue instead of being returned. On success *msgs holds *n
 * messages (possibly 0): free with mesh_queue_msgs_free().
 * Errors: MESH_EINVAL, MESH_ENOTFOUND (queue deleted), the connection's. */
mesh_err mesh_queue_receive(struct mesh_queue *q, int max, int wait_s,
                            int64_t visibility_s, struct mesh_queue_msg **msgs,
                            size_t *n);
void mesh_queue_msgs_free(struct mesh_queue_msg *msgs, size_t n);

/* Delete a received message. Errors: MESH_EINVAL (malformed receipt, or
 * one not issued for this queue), MESH_ESTALE (its visibility timeout
 * ended, so the message may have been received again: receive it again). */
mesh_err mesh_queue_delete_message(struct mesh_queue *q, const char *receipt);

/* Make a received message visible again after seconds (0-43200; 0: now),
 * counted from now. Errors: as mesh_queue_delete_message. */
mesh_err mesh_queue_change_visibility(struct mesh_queue *q,
                                      const char *receipt, int64_t seconds);

/* Batch forms: up to 10 entries with distinct ids; results[i] per entry.
 * Return MESH_EINVAL for faults of the batch itself. */
struct mesh_queue_result {
	mesh_err err;
	char error[256];
};
mesh_err mesh_queue_delete_batch(struct mesh_queue *q, const char *const *ids,
                                 const char *const *receipts, size_t n,
                                 struct mesh_queue_result *results);
mesh_err mesh_queue_change_visibility_batch(struct mesh_queue *q,
                                            const char *const *ids,
                                            const char *const *receipts,
                                            const int64_t *seconds, size_t n,
                                            struct mesh_queue_result *results);

/* Move a received message to the queue's dead-letter queue now, with a
 * reason (beyond SQS). Errors: as delete, and MESH_EINVAL when the queue has
 * no dead-letter queue. */
mesh_err mesh_queue_dead_letter(struct mesh_queue *q, const char *receipt,
                                const char *reason);

/* Put a message taken elsewhere (msg: a natsMsg, from a mesh_delivery or
 * a mesh_queue_msg; borrowed) into the queue dlq as a dead letter: its
 * bytes and headers as they are, with dl's attributes (dl->source is
 * required). De-duplicated by source and sequence within the queue's
 * 5-minute window, so a caller that crashed before taking the message off
 * its source can put it again. The caller then acknowledges it at its
 * source. Errors: MESH_ETOOBIG, the connection's. */
mesh_err mesh_queue_put_dead_letter(struct mesh_queue *dlq, void *msg,
                                    const struct mesh_dead_letter *dl);

/* Look at up to max stored messages, oldest first, without receiving them:
 * receive counts and visibility are unchanged (beyond SQS). Messages in
 * flight are included. */
mesh_err mesh_queue_peek(struct mesh_queue *q, size_t max,
                         struct mesh_queue_msg **msgs, size_t *n);

/* Move messages out of a dead-letter queue back to where they came from
 * (or to `to`), at most rate per second (0: no limit), optionally only those
 * whose MessageId is in ids, or which have message attribute attr_name
 * equal to attr_value. Each message is published to its target with a
 * de-duplication id derived from its place in the DLQ and only then deleted
 * from the DLQ, so an interrupted redrive run again neither loses nor
 * duplicates (within the 5-minute de-duplication window).
 * *moved (optional) counts the messages moved. */
struct mesh_queue_redrive {
	const char *to;         /* NULL: each message's source queue */
	double rate;            /* messages per second; 0: unlimited */
	const char *const *ids; /* NULL: every message */
	size_t n_ids;
	const char *attr_name; /* NULL: no attribute filter */
	const char *attr_value;
	size_t max; /* 0: all */
};
mesh_err mesh_queue_redrive(struct mesh_conn *c, const char *dlq,
                            const struct mesh_queue_redrive *r, size_t *moved);

#endif
