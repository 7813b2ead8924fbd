/* queue_send.c: sending: one message, batches of 10, many at once
 * (pipelined), and the router's forwarding path (raw messages passed
 * through as they are). */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

#include "queue_internal.h"

/* Validate one entry (ev: its event, sealed when the queue encrypts) and
 * build its NATS message. */
static mesh_err
prepare_event(struct mesh_queue *q, const struct mesh_queue_entry *e,
              const struct mesh_event *ev, const char *wire_id, natsMsg **out,
              char message_id[64])
{
	const struct mesh_queue_attrs *a = &q->cfg.a;
	struct mesh_event *copy = NULL;
	char dedup[MESH_QUEUE_ID_MAX + 1] = "";
	char subject[200], not_before[32], reply[128];
	char what[MESH_QUEUE_NAME_MAX + 16];
	int64_t delay = e->delay_s < 0 ? a->delay_s : e->delay_s;
	size_t size, n_attrs;
	natsMsg *m = NULL;
	natsStatus s = NATS_OK;
	mesh_err err;

	size = mesh__message_size(ev, &n_attrs);
	if (size > (size_t)a->max_message_size) {
		return mesh_err_set(
		        MESH_ETOOBIG,
		        "queue '%s': message of %zu bytes is over "
		        "the queue's MaximumMessageSize of %" PRId64 " bytes",
		        q->name, size, a->max_message_size);
	}
	if (n_attrs > MESH_QUEUE_MAX_ATTRS) {
		return mesh_err_set(MESH_EINVAL,
		                    "queue '%s': %zu message attributes, more "
		                    "than %d",
		                    q->name, n_attrs, MESH_QUEUE_MAX_ATTRS);
	}
	if (e->delay_s > 900) {
		return mesh_err_set(MESH_EINVAL,
		                    "queue '%s': DelaySeconds %" PRId64
		                    " is out of range 0-900",
		                    q->name, e->delay_s);
	}
	snprintf(what, sizeof(what), "queue '%s'", q->name);
	if ((err = mesh__ids_check(what, e->group_id, e->dedup_id)) !=
	    MESH_OK) {
		return err;
	}
	if (a->fifo) {
		/* The original's: content-based de-duplication hashes the
		 * data before sealing (a sealed copy differs each time). */
		if ((err = mesh__fifo_ids(what, e->event, e->group_id,
		                          e->dedup_id, a->content_based_dedup,
		                          q->cfg.key, sizeof(q->cfg.key),
		                          dedup, message_id)) != MESH_OK) {
			return err;
		}
		if (e->delay_s >= 0) {
			return mesh_err_set(
			        MESH_EINVAL,
			        "queue '%s': a FIFO queue takes no "
			        "per-message DelaySeconds (set the "
			        "queue's)",
			        q->name);
		}
		if ((err = mesh_event_dup(ev, &copy)) != MESH_OK ||
		    (err = mesh_event_set_id(copy, message_id)) != MESH_OK) {
			mesh_event_free(copy);
			return err;
		}
		ev = copy;
	} else {
		if (e->dedup_id != NULL) {
			return mesh_err_set(
			        MESH_EINVAL,
			        "queue '%s': MessageDeduplicationId "
			        "is for FIFO queues only",
			        q->name);
		}
		mesh__q_copy_str(message_id, 64, mesh_event_id(ev));
	}
	if (delay > 0) {
		mesh__q_copy_str(subject, sizeof(subject), q->n.dsubject);
	} else {
		mesh__q_target_subject(&q->n, &q->cfg, e->group_id, subject,
		                       sizeof(subject));
	}
	err = mesh_wire_msg(subject,
	                    mesh__q_req_reply(q, reply, sizeof(reply)), ev,
	                    a->fifo ? dedup : wire_id, &m);
	mesh_event_free(copy);
	if (err != MESH_OK) {
		return err;
	}
	if (e->group_id != NULL) {
		s = natsMsgHeader_Set(m, MESH_HDR_GROUP, e->group_id);
	}
	if (s == NATS_OK && a->fifo) {
		s = natsMsgHeader_Set(m, MESH_HDR_DEDUP, dedup);
	}
	if (s == NATS_OK && delay > 0) {
		snprintf(not_before, sizeof(not_before), "%" PRId64,
		         now_ms() + delay * 1000);
		s = natsMsgHeader_Set(m, HDR_NOT_BEFORE, not_before);
	}
	if (s == NATS_OK && e->dead_letter != NULL) {
		char count[24], seq[24], reason[512];
		const char *add[16];
		mesh__q_dead_letter_pairs(e->dead_letter, count, seq, reason,
		                          add);
		for (const char **h = add; s == NATS_OK && *h; h += 2) {
			s = natsMsgHeader_Set(m, h[0], h[1]);
		}
	}
	if (s != NATS_OK) {
		natsMsg_Destroy(m);
		return mesh_err_nats(s, 0, "queue '%s': message", q->name);
	}
	*out = m;
	return MESH_OK;
}

/* Validate one entry, seal it when the queue encrypts (with the queue's
 * keyring), and build its NATS message. */
static mesh_err
send_prepare(struct mesh_queue *q, const struct mesh_queue_entry *e,
             const char *wire_id, natsMsg **out, char message_id[64])
{
	struct mesh_event *sealed = NULL;
	char what[MESH_QUEUE_NAME_MAX + 16], target[MESH_QUEUE_NAME_MAX + 8];
	mesh_err err;

	if (e->event == NULL) {
		return mesh_err_set(MESH_EINVAL, "queue '%s': no message",
		                    q->name);
	}
	snprintf(what, sizeof(what), "queue '%s'", q->name);
	snprintf(target, sizeof(target), "queue:%s", q->name);
	if ((err = mesh__seal_for_send(what, target, q->cfg.a.encrypt, q->kr,
	                               e->event, &sealed)) != MESH_OK) {
		return err;
	}
	err = prepare_event(q, e, sealed ? sealed : e->event, wire_id, out,
	                    message_id);
	mesh_event_free(sealed);
	return err;
}

void
mesh_queue_set_keyring(struct mesh_queue *q, struct mesh_keyring *kr)
{
	q->kr = kr;
}

mesh_err
mesh__q_pub_ack(struct mesh_queue *q, natsMsg *r, uint64_t *seq, bool *dup)
{
	char what[MESH_QUEUE_NAME_MAX + 16];

	snprintf(what, sizeof(what), "queue '%s'", q->name);
	return mesh__pub_ack(r, what, seq, dup);
}

mesh_err
mesh__q_batch_check(const struct mesh_queue *q, const char *const *ids,
                    size_t n, size_t stride)
{
	char what[MESH_QUEUE_NAME_MAX + 16];

	snprintf(what, sizeof(what), "queue '%s'", q->name);
	return mesh__batch_check(what, ids, n, stride);
}

static void
sent_fail(struct mesh_queue_sent *r, mesh_err err)
{
	r->err = err;
	mesh__q_copy_str(r->error, sizeof(r->error), mesh_errdetail());
}

/* A stored message passed through unchanged (its bytes and envelope
 * headers) to a standard queue without delay: the router's fast path for
 * raw delivery. False when the queue needs more (FIFO, delays) or the
 * message may be over its size; then the event path is taken. */
static bool
pass_through(struct mesh_queue *q, natsMsg *src, const char *wire_id,
             natsMsg **out, char message_id[64])
{
	static const char *const keep[] = {
	        MESH_HDR_CONTENT_TYPE, MESH_HDR_CE_ID, MESH_HDR_CE_TYPE,
	        MESH_HDR_CE_SOURCE, MESH_HDR_CE_SUBJECT};
	const char *id = NULL;
	char reply[128];
	natsMsg *m = NULL;
	natsStatus s;

	if (q->cfg.a.fifo || q->cfg.a.delay_s > 0 ||
	    natsMsg_GetDataLength(src) > q->cfg.a.max_message_size) {
		return false;
	}
	/* A foreign message without our headers passes as it is too: its
	 * MessageId is then its own de-duplication id, or ours. */
	if (natsMsgHeader_Get(src, MESH_HDR_CE_ID, &id) != NATS_OK &&
	    natsMsgHeader_Get(src, MESH_HDR_MSG_ID, &id) != NATS_OK) {
		id = wire_id;
	}
	s = natsMsg_Create(&m, q->n.subject,
	                   mesh__q_req_reply(q, reply, sizeof(reply)),
	                   natsMsg_GetData(src), natsMsg_GetDataLength(src));
	for (size_t i = 0; s == NATS_OK && i < sizeof(keep) / sizeof(*keep);
	     i++) {
		const char *v = NULL;
		if (natsMsgHeader_Get(src, keep[i], &v) == NATS_OK) {
			s = natsMsgHeader_Set(m, keep[i], v);
		}
	}
	/* A foreign message's id (its Nats-Msg-Id) stays its id there. */
	if (s == NATS_OK && mesh__q_hdr(src, MESH_HDR_CE_ID) == NULL &&
	    id != wire_id) {
		s = natsMsgHeader_Set(m, MESH_HDR_CE_ID, id);
	}
	if (s == NATS_OK) {
		s = natsMsgHeader_Set(m, MESH_HDR_MSG_ID, wire_id);
	}
	if (s != NATS_OK) {
		natsMsg_Destroy(m);
		return false;
	}
	mesh__q_copy_str(message_id, 64, id);
	*out = m;
	return true;
}

/* A sent message's outcome into its entry's (idx maps a sent one to its
 * entry). */
struct sent_to {
	struct mesh_queue_sent *out;
	const size_t *idx;
};

static void
sent_into(void *arg, void *tag, const struct mesh_sent *r)
{
	const struct sent_to *to = arg;
	struct mesh_queue_sent *o = &to->out[to->idx[(uintptr_t)tag]];

	o->err = r->err;
	mesh__q_copy_str(o->error, sizeof(o->error), r->error);
	o->sequence = r->sequence;
	o->duplicate = r->duplicate;
}

/* Send n messages made here, all in flight at once; outcomes in out[]. */
static void
send_many(struct mesh_queue *q, const struct mesh_queue_entry *e,
          const char *const *wire_ids, natsMsg *const *srcs, size_t n,
          struct mesh_queue_sent *out)
{
	natsMsg *msgs[FORWARD_CHUNK];
	size_t idx[FORWARD_CHUNK], k = 0;
	char what[MESH_QUEUE_NAME_MAX + 16];
	mesh_err err;

	assert(n <= FORWARD_CHUNK);
	for (size_t i = 0; i < n; i++) {
		memset(&out[i], 0, sizeof(out[i]));
		if (srcs != NULL && srcs[i] != NULL && wire_ids != NULL &&
		    pass_through(q, srcs[i], wire_ids[i], &msgs[k],
		                 out[i].message_id)) {
			idx[k++] = i;
			continue;
		}
		if (e[i].event == NULL) {
			sent_fail(&out[i],
			          mesh_err_set(MESH_EINVAL,
			                       "queue '%s': no message",
			                       q->name));
			continue;
		}
		err = send_prepare(q, &e[i], wire_ids ? wire_ids[i] : NULL,
		                   &msgs[k], out[i].message_id);
		if (err != MESH_OK) {
			sent_fail(&out[i], err);
			continue;
		}
		idx[k++] = i;
	}
	snprintf(what, sizeof(what), "queue '%s'", q->name);
	/* The main connection: a batch waits for its confirmations, and
	 * that connection sends at once. */
	mesh__send_prepared(q->rpc, mesh_conn_nats(q->c), what, msgs, k,
	                    sent_into, &(struct sent_to){out, idx});
}

mesh_err
mesh_queue_send_batch(struct mesh_queue *q, const struct mesh_queue_entry *e,
                      size_t n, struct mesh_queue_sent *out)
{
	size_t total = 0, na;
	mesh_err err;

	if ((err = mesh__q_batch_check(q, &e[0].id, n, sizeof(*e))) !=
	    MESH_OK) {
		return err;
	}
	for (size_t i = 0; i < n; i++) {
		total += e[i].event ? mesh__message_size(e[i].event, &na) : 0;
	}
	/* One entry is judged alone, below, as SendMessage does. */
	if (n > 1 && total > (size_t)q->cfg.a.max_message_size) {
		return mesh_err_set(
		        MESH_ETOOBIG,
		        "queue '%s': the batch's %zu bytes are over "
		        "the queue's MaximumMessageSize of %" PRId64
		        " bytes in all",
		        q->name, total, q->cfg.a.max_message_size);
	}
	send_many(q, e, NULL, NULL, n, out);
	return MESH_OK;
}

mesh_err
mesh_queue_send_many(struct mesh_queue *q, const struct mesh_queue_entry *e,
                     size_t n, struct mesh_queue_sent *out)
{
	mesh__queue_forward(q, e, NULL, NULL, n, out);
	return MESH_OK;
}

mesh_err
mesh__queue_prepare(struct mesh_queue *q, const struct mesh_queue_entry *e,
                    natsMsg **out, char message_id[64])
{
	return send_prepare(q, e, NULL, out, message_id);
}

struct mesh__rpc *
mesh__queue_rpc(struct mesh_queue *q)
{
	return q->rpc;
}

struct mesh_conn *
mesh__queue_conn(struct mesh_queue *q)
{
	return q->c;
}

bool
mesh__queue_passes_through(const struct mesh_queue *q)
{
	return !q->cfg.a.fifo && q->cfg.a.delay_s == 0;
}

void
mesh__queue_forward(struct mesh_queue *q, const struct mesh_queue_entry *e,
                    const char *const *wire_ids, natsMsg *const *srcs,
                    size_t n, struct mesh_queue_sent *out)
{
	for (size_t at = 0; at < n; at += FORWARD_CHUNK) {
		size_t k = n - at < FORWARD_CHUNK ? n - at : FORWARD_CHUNK;
		send_many(q, e + at, wire_ids ? wire_ids + at : NULL,
		          srcs ? srcs + at : NULL, k, out + at);
	}
}

mesh_err
mesh_queue_send(struct mesh_queue *q, const struct mesh_queue_entry *e,
                struct mesh_queue_sent *out)
{
	struct mesh_queue_entry one = *e;
	mesh_err err;

	one.id = "single";
	if ((err = mesh_queue_send_batch(q, &one, 1, out)) != MESH_OK) {
		return err;
	}
	if (out->err != MESH_OK) {
		return mesh_err_set(out->err, "%s", out->error);
	}
	return MESH_OK;
}
