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
	int64_t created_ms;       /* read only */
};

void mesh_topic_attrs_init(struct mesh_topic_attrs *a);

/* Check a topic name: 1-240 characters of [A-Za-z0-9_-], and for FIFO
 * topics the suffix ".fifo". *fifo (optional) says which.
 * Errors: MESH_EINVAL naming the name. */
mesh_err mesh_topic_name_check(const char *name, bool *fifo);

/* Create a topic. Creating one that exists with the same attributes
 * succeeds (SNS's CreateTopic is idempotent); with others it is
 * MESH_EEXIST. Errors: MESH_EINVAL (name or attribute named),
 * MESH_EEXIST, the connection's. */
mesh_err mesh_topic_create(struct mesh_conn *c, const char *name,
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
	size_t subscriptions; /* confirmed subscriptions */
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

#endif
