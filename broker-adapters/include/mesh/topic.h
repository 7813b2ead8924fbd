/* Topics with SNS semantics on JetStream.
 *
 * A topic NAME is a stream (TP_NAME; FIFO: TF_BASE for BASE.fifo) over the
 * subject mesh.topic.NAME. Without an archive it has interest retention: a
 * message stays until every subscription has taken it, and one published
 * while there is no subscription is gone, as in SNS. With an archive it
 * keeps every message for the archive's retention (days), so that a new
 * subscription can replay history. The topic's attributes live in its
 * stream's description.
 *
 * Every message is a CloudEvent (mesh/event.h); its SNS message attributes
 * are the event's. The event id is the MessageId and the JetStream
 * de-duplication id (5 minutes), so a producer that retries a publish after
 * a timeout stores it once. FIFO topics take a MessageGroupId and a
 * MessageDeduplicationId (or hash the body when ContentBasedDeduplication
 * is on).
 *
 * Thread safety: the connection-level calls may be made from any thread; an
 * open topic is for one thread at a time.
 */
#ifndef MESH_TOPIC_H
#define MESH_TOPIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mesh/conn.h"
#include "mesh/err.h"
#include "mesh/event.h"
#include "mesh/seal.h"
#include "mesh/sign.h"

#define MESH_TOPIC_NAME_MAX                                                   \
	240 /* SNS: 256; ours leaves room for the                             \
	       stream's directory name */
#define MESH_TOPIC_BATCH_MAX    10
#define MESH_TOPIC_MAX_ATTRS    10
#define MESH_TOPIC_MAX_MESSAGE  262144 /* body + attributes, as SNS counts */
#define MESH_TOPIC_ARCHIVE_DAYS 365    /* the longest archive */
#define MESH_TOPIC_ID_MAX       128    /* group and de-duplication ids */

struct mesh_topic_attrs {
	bool fifo;                /* FifoTopic; the name ends in .fifo */
	bool content_based_dedup; /* ContentBasedDeduplication (FIFO) */
	int64_t archive_days;     /* ArchivePolicy retention 1-365; 0 none */
	int64_t replicas;   /* Replicas 1-5: copies of its stream, each on
	                       another server; 0: at create, the mesh's
	                       (mesh_conn_replicas), at set_attrs, as it is;
	                       read back as the stream has it. 0 */
	int64_t created_ms; /* read only */
	/* RequireSigners: "A,B" (mesh/sign.h), each recorded in MESH_KEYS
	 * when set; "" none. Standard topics only (a FIFO topic replaces
	 * the event id, which signatures cover). Changeable. */
	char require_signers[MESH_SIGNERS_TEXT_MAX + 1];
	/* Encrypt: its events' data sealed (mesh/seal.h) with a data key
	 * sealed to Readers ("A,B", each in MESH_KEYS) and to "admin";
	 * creating or turning it on makes the first data key, changing
	 * Readers rotates it. A topic with a subscription whose filter
	 * policy has MessageBody scope cannot encrypt (MESH_EINVAL).
	 * Changeable (turning it off leaves old messages sealed). */
	bool encrypt;
	char readers[MESH_READERS_TEXT_MAX + 1];
};

void mesh_topic_attrs_init(struct mesh_topic_attrs *a);

/* Check a topic name: 1-240 characters of [A-Za-z0-9_-], and for FIFO
 * topics the suffix ".fifo". *fifo (optional) says which.
 * Errors: MESH_EINVAL naming the name. */
mesh_err mesh_topic_name_check(const char *name, bool *fifo);

/* Create a topic. Creating one that exists with the same attributes
 * succeeds (SNS's CreateTopic is idempotent); with others it is
 * MESH_EEXIST. Errors: MESH_EINVAL (name or attribute named; more
 * replicas than the servers c knows), MESH_EEXIST, the connection's. */
mesh_err mesh_topic_create(struct mesh_conn *c, const char *name,
                           const struct mesh_topic_attrs *a);

/* Change a topic's replicas (a->replicas; 0 leaves them), its
 * RequireSigners (a->require_signers, as given) and Encrypt and Readers
 * (as given): the rest is fixed at
 * creation and must be as it is. Its subscriptions' consumers
 * follow. Errors: MESH_EINVAL (naming the attribute), MESH_ENOTFOUND, the
 * connection's. */
mesh_err mesh_topic_set_attrs(struct mesh_conn *c, const char *name,
                              const struct mesh_topic_attrs *a);

/* Delete a topic, its messages and its subscriptions. Errors:
 * MESH_ENOTFOUND, the connection's. */
mesh_err mesh_topic_delete(struct mesh_conn *c, const char *name);

/* The names of all topics, sorted; free with mesh_topic_list_free. */
mesh_err mesh_topic_list(struct mesh_conn *c, char ***names, size_t *n);
void mesh_topic_list_free(char **names, size_t n);

struct mesh_topic_info {
	struct mesh_topic_attrs a;
	uint64_t messages; /* stored: waiting for subscriptions or
	                      archived */
	uint64_t first_seq, last_seq;
	size_t subscriptions; /* confirmed subscriptions (tails are none) */
};

/* Errors: MESH_EINVAL, MESH_ENOTFOUND, the connection's. */
mesh_err mesh_topic_info(struct mesh_conn *c, const char *name,
                         struct mesh_topic_info *out);

struct mesh_topic;

/* Open a topic to publish to it (reads its attributes once). Errors:
 * MESH_EINVAL, MESH_ENOTFOUND, MESH_ENOMEM, the connection's. The
 * connection must outlive the topic. */
mesh_err mesh_topic_open(struct mesh_conn *c, const char *name,
                         struct mesh_topic **out);
void mesh_topic_close(struct mesh_topic *t);
const char *mesh_topic_name(const struct mesh_topic *t);
const struct mesh_topic_attrs *mesh_topic_attrs(const struct mesh_topic *t);

/* Seal with kr (borrowed: it must outlive t; NULL: none) what is
 * published to t when t encrypts: every publish path (publish, batch,
 * sender) then seals a copy of each event with data that is not sealed
 * yet, after computing a FIFO content-based de-duplication id. Without a
 * keyring such an event is refused (MESH_EINVAL, "topic 'pay' is
 * encrypted: seal the event's data first ..."), as is a signed event
 * that is not sealed (seal, then sign). kr's identity must be a reader of
 * the topic or admin (else MESH_EAUTH, from mesh_keyring_seal). */
void mesh_topic_set_keyring(struct mesh_topic *t, struct mesh_keyring *kr);

/* One message to publish: the event carries the body and the message
 * attributes. */
struct mesh_topic_entry {
	const char *id;                 /* batch entry id; NULL for single */
	const struct mesh_event *event; /* borrowed */
	const char *group_id;           /* MessageGroupId (FIFO: required) */
	const char *dedup_id;           /* MessageDeduplicationId (FIFO) */
};

struct mesh_topic_published {
	mesh_err err;        /* this entry's outcome */
	char error[256];     /* its detail when err != MESH_OK */
	char message_id[64]; /* MessageId (the event id) */
	uint64_t sequence;   /* SequenceNumber: the topic's stream sequence */
	bool duplicate;      /* dropped as a duplicate (5 minutes) */
};

/* Publish one message. Errors: MESH_EINVAL (the field named: missing
 * group id on a FIFO topic, more than 10 attributes, ...), MESH_ETOOBIG
 * (over 256 KiB), the connection's. After MESH_OK the message is stored. */
mesh_err mesh_topic_publish(struct mesh_topic *t,
                            const struct mesh_topic_entry *e,
                            struct mesh_topic_published *out);

/* Publish up to 10 messages (PublishBatch): each entry's outcome in out[i].
 * MESH_EINVAL for faults of the batch itself (none, more than 10, missing,
 * malformed or repeated entry ids, over 256 KiB in all); then nothing is
 * published. FIFO topics store the entries in order. */
mesh_err mesh_topic_publish_batch(struct mesh_topic *t,
                                  const struct mesh_topic_entry *e, size_t n,
                                  struct mesh_topic_published *out);

/* ---- tails: following a topic without taking from it ----------------- */

/* A tail follows a topic live, as `tail -f` follows a file: it sees each
 * message the topic stores from the moment it opens (or from since_ms),
 * and takes none of them from the topic's subscriptions.
 *
 * It is an ephemeral, ordered JetStream consumer that acknowledges nothing
 * (AckNone, flow control, heartbeats; recreated from where it was after a
 * gap), so it never stands in the queue of a subscription: on a topic
 * without an archive (interest retention) a message stays until every
 * durable subscription has taken it, whether the tail has seen it or not,
 * and once the server has delivered it to the tail (into the client's
 * buffer) the tail's interest in it ends. Only a tail that falls behind
 * by more than that buffer holds (cnats' pending limits) makes the topic
 * keep what it has not been sent yet, until it catches up or closes.
 * Closing deletes the consumer; after a crash the server drops it a few
 * seconds later. */
struct mesh_topic_tail;

/* One message a tail saw. */
struct mesh_topic_tailed {
	struct mesh_event *event; /* owned; MESH_WIRE_RAW_TYPE when the
	                             message is not a readable CloudEvent */
	uint64_t sequence;        /* the topic's stream sequence */
	int64_t stored_ms;        /* when the topic stored it (ms, epoch) */
	char group_id[MESH_TOPIC_ID_MAX + 1]; /* FIFO: MessageGroupId */
	/* Why a message that claimed to be a CloudEvent did not parse (see
	 * mesh_wire_read); "" otherwise. */
	char parse_error[256];
};

/* Start following topic `name`: since_ms 0 sees the messages stored from
 * now on; since_ms > 0 (milliseconds since the epoch) starts with those
 * the topic still stores from that time: on a topic without an archive,
 * only the messages some subscription has yet to take; on an archived
 * topic, the archive from then.
 * Errors: MESH_EINVAL (name), MESH_ENOTFOUND (no such topic), MESH_ENOMEM,
 * the connection's. On success *out is a new tail: close it with
 * mesh_topic_tail_close(). The connection must outlive the tail.
 * Thread safety: a tail is for one thread at a time, except
 * mesh_topic_tail_stop(). */
mesh_err mesh_topic_tail_open(struct mesh_conn *c, const char *name,
                              int64_t since_ms, struct mesh_topic_tail **out);

/* Wait up to timeout_ms (-1: for ever) for the next message, in the
 * topic's order. On MESH_OK *out holds it: release it with
 * mesh_topic_tailed_fini(). A message whose bytes are not a CloudEvent
 * still arrives (event of type MESH_WIRE_RAW_TYPE), never an error.
 * Errors: MESH_ETIMEDOUT (nothing came in time), MESH_ECLOSED (the tail
 * was stopped, or the connection closed), MESH_ENOTFOUND (the topic was
 * deleted), MESH_ENOMEM, the connection's; *out is untouched on error. */
mesh_err mesh_topic_tail_next(struct mesh_topic_tail *t, int64_t timeout_ms,
                              struct mesh_topic_tailed *out);
void mesh_topic_tailed_fini(struct mesh_topic_tailed *m);

/* Make a mesh_topic_tail_next() that waits, now or later, return
 * MESH_ECLOSED. May be called from another thread (not from a signal
 * handler), once; the tail must still be closed. */
void mesh_topic_tail_stop(struct mesh_topic_tail *t);

/* End the tail and free it; NULL is fine. */
void mesh_topic_tail_close(struct mesh_topic_tail *t);

#endif
