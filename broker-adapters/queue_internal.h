/* queue_internal.h: what the parts of a queue share (queue.c,
 * queue_receipt.c, queue_send.c, queue_receive.c, queue_visibility.c,
 * queue_move.c): names, the open queue, receipts, and the helpers that
 * cross from one part to another (mesh__q_*). Library-internal. */
#ifndef MESH_QUEUE_INTERNAL_H
#define MESH_QUEUE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#include "internal.h"
#include "mesh/queue.h"
#include "mesh/wire.h"
#include "rpc.h"

#define HDR_NOT_BEFORE "Mesh-Not-Before"
#define HDR_DLQ_SOURCE "Mesh-Dlq-Source"
#define HDR_DLQ_REASON "Mesh-Dlq-Reason"
#define HDR_DLQ_COUNT  "Mesh-Dlq-Receive-Count"
#define HDR_DLQ_SEQ    "Mesh-Dlq-Sequence"
#define HDR_DLQ_SVC    "Mesh-Dlq-Service"

#define RECEIVERS        "receivers"
#define MOVER            "mover"
#define LEDGER_STREAM    "MESH_RECEIPTS"
#define LEDGER_PREFIX    "mesh.receipts."
#define ENVELOPE_ROOM    (64 * 1024) /* stream MaxMsgSize above the body */
#define RELEASE_EVERY_MS 200
/* Long polls wait in slices (delayed messages come due between them). Not
 * a whole second: a slice ending just as a whole-second visibility timeout
 * ends makes nats-server 2.9 lose that redelivery now and then. */
#define POLL_SLICE_MS     950
#define PULL_GRACE_MS     250
#define RPC_TIMEOUT_MS    5000
#define FORWARD_CHUNK     256 /* messages sent in one round trip, at most */
#define FIFO_PULL_WAIT_MS 50  /* 2 ms pull expiry + network */
#define BUSY_CACHE_MS     100
#define MAX_VISIBILITY_S  43200
#define RECEIPT_TAG       16
/* The longest ack subject a receipt holds: "$JS.ACK." with a domain and
 * an account hash, a stream and consumer name, and five 20-digit
 * numbers fit with room. A receipt is its base64 (with the deadline and
 * the tag): see MESH_QUEUE_RECEIPT_MAX. */
#define ACK_MAX   384
#define NS_PER_MS ((int64_t)1000000)

struct qnames {
	char stream[96];   /* MQ_name / MF_base */
	char dstream[96];  /* MQD_name / MFD_base */
	char subject[128]; /* mesh.queue.name (FIFO: + ".<partition>") */
	char filter[132];  /* the stream's subject: subject or subject.* */
	char dsubject[128];
};

struct qcfg {
	struct mesh_queue_attrs a;
	uint8_t key[32]; /* receipt handles' HMAC key */
};

struct mesh_queue {
	struct mesh_conn *c;
	char name[MESH_QUEUE_NAME_MAX + 1];
	struct qcfg cfg;
	struct qnames n;
	bool have_dlq;
	struct qcfg dlq_cfg;
	struct qnames dlq_n;
	struct mesh__rpc *rpc;   /* its JetStream requests */
	struct mesh_keyring *kr; /* seals when it encrypts; borrowed */
	int64_t next_release_ms;
	struct plocks *locks; /* FIFO: partitions this process holds */
	/* The ledger of visibility changes, as far as this queue is
	 * concerned: loaded at first use, then kept current by a
	 * subscription to its subjects. */
	bool ledger_loaded;
	natsSubscription *ledger_sub;
	struct lentry *ledger;
	size_t n_ledger, cap_ledger;
};

struct lentry {
	uint64_t sseq, dseq;
	int64_t deadline_ms;
};

/* The FIFO partitions that some open queue of this connection has a
 * message of in flight, and until when (realtime ms). Threads sharing a
 * connection then do not ask JetStream for partitions they know to be
 * taken. Kept by the connection (mesh__conn_slot), freed with it. */
struct plocks {
	int64_t until[256];
	/* The partitions that held messages when last asked, so that
	 * receives do not ask JetStream each time. */
	int64_t busy_until;
	bool busy[256];
	uint64_t freed; /* partitions freed so far: receivers wait on it */
};

struct receipt {
	int64_t deadline_ms;
	char ack[ACK_MAX + 1]; /* the delivery's ack subject */
	char stream[96];
	char consumer[32];
	uint64_t delivered, sseq, dseq;
	int64_t ts_ns; /* when the message was stored */
};

/* queue.c: a queue's stream, subjects and consumer names. */
void mesh__q_names_of(const char *name, bool fifo, struct qnames *n);

/* ---- what crosses from one part to another --------------------------- */

/* queue.c: the subject a message goes to (FIFO: its group's partition). */
void mesh__q_target_subject(const struct qnames *n, const struct qcfg *cfg,
                            const char *group, char *out, size_t size);

/* A header's value or NULL. */
const char *mesh__q_hdr(natsMsg *m, const char *key);

/* Copy src (NULL: "") into dst, cut to size. */
void mesh__q_copy_str(char *dst, size_t size, const char *src);

/* The next reply subject on the queue's inbox. */
const char *mesh__q_req_reply(struct mesh_queue *q, char *buf, size_t size);

/* rpc_many, where a reply that is a delivered message is matched to its
 * request by the consumer (consumers[i]) named in its ack subject. */
mesh_err mesh__q_rpc_many_from(struct mesh_queue *q, natsMsg **msgs, size_t n,
                               int64_t timeout_ms, natsMsg **replies,
                               const char *const *consumers);

/* Publish msgs[i] (their reply subjects are set here) and collect one
 * reply each into replies[i] (NULL when none came in time). Takes the
 * messages. */
mesh_err mesh__q_rpc_many(struct mesh_queue *q, natsMsg **msgs, size_t n,
                          int64_t timeout_ms, natsMsg **replies);

/* Make the message for a JetStream API request, with its reply. */
mesh_err mesh__q_api_msg(struct mesh_queue *q, const char *subject,
                         const char *body, natsMsg **out);

/* Pull up to batch messages from one consumer: no_wait, or waiting up to
 * expires_ms for the first. Appends to *out (capacity cap). */
mesh_err mesh__q_pull(struct mesh_queue *q, const char *stream,
                      const char *consumer, int batch, int64_t expires_ms,
                      natsMsg **out, size_t *n, size_t cap);

/* queue_receipt.c: a sealed receipt for an ack subject and deadline. */
void mesh__q_receipt_make(const struct mesh_queue *q, const char *ack,
                          int64_t deadline_ms, char *out, size_t size);

/* Parse "$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>"
 * (and the longer form with domain and account hash). */
bool mesh__q_ack_parse(const char *ack, struct receipt *r);

/* The ledger of visibility changes: one entry per message whose
 * visibility was changed, "<delivery sequence> <deadline ms>". A receipt is
 * current while its deadline (or its changed one) has not passed. */
mesh_err mesh__q_ledger_ensure(struct mesh_queue *q);

/* Record a changed visibility deadline for a delivery. */
void mesh__q_ledger_put(struct mesh_queue *q, uint64_t sseq, uint64_t dseq,
                        int64_t deadline_ms);

/* Open n receipts into r[], judging each into res[]. */
void mesh__q_receipts_open(struct mesh_queue *q, const char *const *texts,
                           size_t n, struct receipt *r,
                           struct mesh_queue_result *res);

/* A raw receipt "@<deadline ms>@<ack subject>": its ack subject, or NULL
 * (and *deadline_ms). */
const char *mesh__q_raw_receipt(const char *text, int64_t *deadline_ms);

/* queue_send.c: judge a publish acknowledgement for this queue. */
mesh_err mesh__q_pub_ack(struct mesh_queue *q, natsMsg *r, uint64_t *seq,
                         bool *dup);

/* A batch's own faults (ids: 1-10, distinct, well formed). */
mesh_err mesh__q_batch_check(const struct mesh_queue *q,
                             const char *const *ids, size_t n, size_t stride);

/* The headers of a dead letter as (name, value) pairs in add[] (room for
 * 12), NULL-terminated; count, seq and reason hold their texts. Returns how
 * many entries it wrote before the NULL. */
/* queue_move.c: */
size_t mesh__q_dead_letter_pairs(const struct mesh_dead_letter *dl,
                                 char count[24], char seq[24],
                                 char reason[512], const char **add);

/* Move a delivered message to the dead-letter queue, then acknowledge it
 * here. A crash between the two leaves it here, and moving it again is
 * dropped there as a duplicate. */
mesh_err mesh__q_dead_letter(struct mesh_queue *q, natsMsg *m, uint64_t sseq,
                             uint64_t receives, const char *ack,
                             const char *reason);

/* Move delayed messages whose time has come into the queue. Rate limited
 * per open queue; "receivable within one second after the delay". */
mesh_err mesh__q_release_due(struct mesh_queue *q);

/* queue_receive.c: the partition locks of a connection and stream. */
struct plocks *mesh__q_plocks_of(struct mesh_conn *c, const char *stream);

/* Hold (until > now) or free (0) the partition of a FIFO consumer. */
void mesh__q_plock_set(struct mesh_queue *q, const char *consumer,
                       int64_t until);

/* Free what one message holds (not the message itself). */
void mesh__q_msg_clear(struct mesh_queue_msg *m);

/* The next stored message at or after *seq, by direct get; NULL at end. */
natsMsg *mesh__q_next_stored(struct mesh_conn *c, const struct qnames *n,
                             uint64_t *seq);

/* A stored message (taken: it is r->msg on success, destroyed on error). */
mesh_err mesh__q_stored_to_msg(struct mesh_queue *q, natsMsg *m,
                               struct mesh_queue_msg *r);

/* queue_visibility.c: acknowledge one delivery ("+ACK", "-NAK ..."). */
mesh_err mesh__q_ack_one(struct mesh_queue *q, const char *ack,
                         const char *body);

/* A batch entry's outcome as the call's error. */
mesh_err mesh__q_batch_result(struct mesh_queue_result *r);

#endif
