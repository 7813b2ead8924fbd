/* queue_move.c: moving messages between streams: delayed ones into the
 * queue when due, dead letters out (a redrive policy, a request, another
 * consumer's), and redrives back. */
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

/* The headers a dead letter gains (and a redrive takes off again). */
static const char *const dead_letter_headers[] = {HDR_NOT_BEFORE,
                                                  HDR_DLQ_SOURCE,
                                                  HDR_DLQ_REASON,
                                                  HDR_DLQ_COUNT,
                                                  HDR_DLQ_SEQ,
                                                  HDR_DLQ_SVC,
                                                  NULL};

size_t
mesh__q_dead_letter_pairs(const struct mesh_dead_letter *dl, char count[24],
                          char seq[24], char reason[512], const char **add)
{
	size_t k = 0;

	snprintf(count, 24, "%" PRIu64, dl->receive_count);
	snprintf(seq, 24, "%" PRIu64, dl->sequence);
	/* A reason may quote what came from outside: one clean line. */
	snprintf(reason, 512, "%s",
	         dl->reason && dl->reason[0] ? dl->reason
	                                     : "dead-lettered by request");
	mesh_text_clean(reason);
	add[k++] = HDR_DLQ_SOURCE;
	add[k++] = dl->source;
	add[k++] = HDR_DLQ_REASON;
	add[k++] = reason;
	if (dl->receive_count > 0) {
		add[k++] = HDR_DLQ_COUNT;
		add[k++] = count;
	}
	if (dl->sequence > 0) {
		add[k++] = HDR_DLQ_SEQ;
		add[k++] = seq;
	}
	if (dl->service != NULL && dl->service[0] != '\0') {
		add[k++] = HDR_DLQ_SVC;
		add[k++] = dl->service;
	}
	add[k] = NULL;
	return k;
}

/* Publish a stored message's body and headers to `subject` with a new
 * de-duplication id, leaving out the headers in `drop` and adding `add`
 * (pairs). Waits for the stream's acknowledgement. */
static mesh_err
republish(struct mesh_queue *q, natsMsg *src, const char *subject,
          const char *msg_id, const char *const *drop, const char *const *add)
{
	natsMsg *m = NULL, *ack = NULL;
	const char **keys = NULL;
	char reply[128];
	int nk = 0;
	uint64_t seq;
	bool dup;
	natsStatus s;
	mesh_err err;

	s = natsMsg_Create(&m, subject,
	                   mesh__q_req_reply(q, reply, sizeof(reply)),
	                   natsMsg_GetData(src), natsMsg_GetDataLength(src));
	if (s == NATS_OK) {
		natsMsgHeader_Keys(src, &keys, &nk);
	}
	for (int k = 0; s == NATS_OK && k < nk; k++) {
		bool skip = strcmp(keys[k], MESH_HDR_MSG_ID) == 0 ||
		            strncmp(keys[k], "Nats-", 5) == 0;
		for (const char *const *d = drop; d && *d && !skip; d++) {
			skip = strcmp(keys[k], *d) == 0;
		}
		if (!skip) {
			const char *v = mesh__q_hdr(src, keys[k]);
			s = natsMsgHeader_Set(m, keys[k], v ? v : "");
		}
	}
	free((void *)keys);
	/* A foreign message's id is its Nats-Msg-Id, which the move
	 * replaces: kept as its Ce-Id (see mesh_wire_read). */
	if (s == NATS_OK && mesh__q_hdr(src, MESH_HDR_CE_ID) == NULL &&
	    mesh__q_hdr(src, MESH_HDR_MSG_ID) != NULL) {
		s = natsMsgHeader_Set(m, MESH_HDR_CE_ID,
		                      mesh__q_hdr(src, MESH_HDR_MSG_ID));
	}
	if (s == NATS_OK) {
		s = natsMsgHeader_Set(m, MESH_HDR_MSG_ID, msg_id);
	}
	for (const char *const *a = add; s == NATS_OK && a && *a; a += 2) {
		s = natsMsgHeader_Set(m, a[0], a[1]);
	}
	if (s != NATS_OK) {
		natsMsg_Destroy(m);
		return mesh_err_nats(s, 0, "queue '%s': moving a message",
		                     q->name);
	}
	if ((err = mesh__q_rpc_many(q, &m, 1, RPC_TIMEOUT_MS, &ack)) !=
	    MESH_OK) {
		return err;
	}
	err = mesh__q_pub_ack(q, ack, &seq, &dup);
	natsMsg_Destroy(ack);
	return err;
}

/* Publish m, bytes and headers as they are, to the dead-letter queue
 * (names dn, configuration dc) with dl's headers, through q's connection;
 * de-duplicated by where it comes from. */
static mesh_err
dead_letter_put(struct mesh_queue *q, const struct qnames *dn,
                const struct qcfg *dc, natsMsg *m,
                const struct mesh_dead_letter *dl)
{
	char subject[200], id[200], count[24], seq[24], reason[512];
	const char *group = mesh__q_hdr(m, MESH_HDR_GROUP);
	const char *add[16];
	size_t k = mesh__q_dead_letter_pairs(dl, count, seq, reason, add);

	snprintf(id, sizeof(id), "dlq:%s:%" PRIu64, dl->source, dl->sequence);
	/* A FIFO dead-letter queue needs a group: the source's. */
	if (dc->a.fifo && group == NULL) {
		group = dl->source;
		add[k++] = MESH_HDR_GROUP;
		add[k++] = group;
	}
	add[k] = NULL;
	mesh__q_target_subject(dn, dc, group, subject, sizeof(subject));
	return republish(q, m, subject, id, dead_letter_headers, add);
}

mesh_err
mesh_queue_put_dead_letter(struct mesh_queue *dlq, void *msg,
                           const struct mesh_dead_letter *dl)
{
	assert(msg != NULL && dl != NULL && dl->source != NULL);
	return dead_letter_put(dlq, &dlq->n, &dlq->cfg, msg, dl);
}

mesh_err
mesh__q_dead_letter(struct mesh_queue *q, natsMsg *m, uint64_t sseq,
                    uint64_t receives, const char *ack, const char *reason)
{
	struct mesh_dead_letter dl = {.source = q->name,
	                              .reason = reason,
	                              .sequence = sseq,
	                              .receive_count = receives};
	mesh_err err;

	if (!q->have_dlq) {
		return mesh_err_set(MESH_EINVAL,
		                    "queue '%s': has no dead-letter queue%s%s",
		                    q->name,
		                    q->cfg.a.dlq[0] ? " (missing: " : "",
		                    q->cfg.a.dlq[0] ? q->cfg.a.dlq : "");
	}
	if ((err = dead_letter_put(q, &q->dlq_n, &q->dlq_cfg, m, &dl)) !=
	    MESH_OK) {
		return err;
	}
	return mesh__q_ack_one(q, ack, "+ACK");
}

mesh_err
mesh__q_release_due(struct mesh_queue *q)
{
	natsMsg *got[64];
	size_t n = 0;
	int64_t now = now_ms();
	mesh_err err;

	if (mono_ms() < q->next_release_ms) {
		return MESH_OK;
	}
	q->next_release_ms = mono_ms() + RELEASE_EVERY_MS;
	err = mesh__q_pull(q, q->n.dstream, MOVER, 64, 0, got, &n, 64);
	for (size_t i = 0; i < n; i++) {
		const char *nb = mesh__q_hdr(got[i], HDR_NOT_BEFORE);
		int64_t due = nb ? strtoll(nb, NULL, 10) : 0;
		struct receipt meta;
		char subject[200], id[160], body[64];
		const char *drop[] = {HDR_NOT_BEFORE, NULL};

		if (due > now) {
			snprintf(body, sizeof(body),
			         "-NAK {\"delay\":%" PRId64 "}",
			         (due - now) * NS_PER_MS);
			natsConnection_PublishString(mesh_conn_nats(q->c),
			                             natsMsg_GetReply(got[i]),
			                             body);
			natsMsg_Destroy(got[i]);
			continue;
		}
		if (!mesh__q_ack_parse(natsMsg_GetReply(got[i]), &meta)) {
			natsMsg_Destroy(got[i]);
			continue;
		}
		snprintf(id, sizeof(id), "mv:%s:%" PRIu64, q->n.dstream,
		         meta.sseq);
		mesh__q_target_subject(&q->n, &q->cfg,
		                       mesh__q_hdr(got[i], MESH_HDR_GROUP),
		                       subject, sizeof(subject));
		/* A FIFO message keeps its de-duplication id as the id. */
		if (q->cfg.a.fifo &&
		    mesh__q_hdr(got[i], MESH_HDR_DEDUP) != NULL) {
			snprintf(id, sizeof(id), "%s",
			         mesh__q_hdr(got[i], MESH_HDR_DEDUP));
		}
		if (republish(q, got[i], subject, id, drop, NULL) == MESH_OK) {
			mesh__q_ack_one(q, natsMsg_GetReply(got[i]), "+ACK");
		}
		natsMsg_Destroy(got[i]);
	}
	return err;
}

mesh_err
mesh_queue_dead_letter(struct mesh_queue *q, const char *receipt,
                       const char *reason)
{
	struct receipt r;
	struct mesh_queue_result res = {MESH_OK, ""};
	natsMsg *m = NULL;
	jsErrCode jerr = 0;
	natsStatus s;
	mesh_err err;

	mesh__q_receipts_open(q, &receipt, 1, &r, &res);
	if (res.err != MESH_OK) {
		return mesh__q_batch_result(&res);
	}
	s = js_GetMsg(&m, mesh_conn_js(q->c), q->n.stream, r.sseq, NULL,
	              &jerr);
	if (s != NATS_OK) {
		return mesh_err_nats(s, jerr, "queue '%s': message %" PRIu64,
		                     q->name, r.sseq);
	}
	err = mesh__q_dead_letter(q, m, r.sseq, r.delivered, r.ack,
	                          reason && reason[0] ? reason
	                                              : "dead-lettered by "
	                                                "request");
	if (err == MESH_OK) {
		mesh__q_plock_set(q, r.consumer, 0);
	}
	natsMsg_Destroy(m);
	return err;
}

static bool
redrive_wanted(const struct mesh_queue_redrive *r, natsMsg *m,
               const struct mesh_event *ev)
{
	bool ok = r->n_ids == 0;

	for (size_t i = 0; i < r->n_ids && !ok; i++) {
		ok = strcmp(r->ids[i], mesh_event_id(ev)) == 0;
	}
	if (ok && r->attr_name != NULL) {
		const char *type;
		const void *val;
		size_t len;
		ok = mesh_event_attr_get(ev, r->attr_name, &type, &val,
		                         &len) == MESH_OK &&
		     len == strlen(r->attr_value) &&
		     memcmp(val, r->attr_value, len) == 0;
	}
	(void)m;
	return ok;
}

mesh_err
mesh_queue_redrive(struct mesh_conn *c, const char *dlq,
                   const struct mesh_queue_redrive *r, size_t *moved)
{
	struct mesh_queue *src = NULL, *dst = NULL;
	uint64_t seq = 1;
	size_t count = 0;
	int64_t start = mono_ms();
	natsMsg *m;
	mesh_err err;

	if ((err = mesh_queue_open(c, dlq, &src)) != MESH_OK) {
		return err;
	}
	if (r->to != NULL &&
	    (err = mesh_queue_open(c, r->to, &dst)) != MESH_OK) {
		mesh_queue_close(src);
		return err;
	}
	while ((r->max == 0 || count < r->max) &&
	       (m = mesh__q_next_stored(c, &src->n, &seq)) != NULL) {
		struct mesh_queue_msg qm;
		struct mesh_queue *to = dst;
		char subject[200], id[160];
		jsErrCode jerr = 0;
		natsStatus s;

		if ((err = mesh__q_stored_to_msg(src, m, &qm)) != MESH_OK) {
			break;
		}
		if (!redrive_wanted(r, qm.msg, qm.event)) {
			mesh__q_msg_clear(&qm);
			continue;
		}
		if (to == NULL) {
			/* Dead letters of a service's topic subscription or
			 * of a schedule name no queue to go back to. */
			if (qm.dlq_source[0] == '\0' ||
			    strchr(qm.dlq_source, ':') != NULL) {
				err = mesh_err_set(
				        MESH_EINVAL,
				        "queue '%s': message %" PRIu64
				        " came from %s, not a queue; give "
				        "--to "
				        "QUEUE",
				        dlq, qm.sequence,
				        qm.dlq_source[0]
				                ? qm.dlq_source
				                : "no recorded source");
				mesh__q_msg_clear(&qm);
				break;
			}
			if (dst == NULL ||
			    strcmp(dst->name, qm.dlq_source) != 0) {
				mesh_queue_close(dst);
				dst = NULL;
				err = mesh_queue_open(c, qm.dlq_source, &dst);
				if (err != MESH_OK) {
					mesh__q_msg_clear(&qm);
					break;
				}
			}
			to = dst;
		}
		mesh__q_target_subject(&to->n, &to->cfg,
		                       mesh__q_hdr(qm.msg, MESH_HDR_GROUP),
		                       subject, sizeof(subject));
		snprintf(id, sizeof(id), "rd:%s:%" PRIu64, src->n.stream,
		         qm.sequence);
		if (to->cfg.a.fifo &&
		    mesh__q_hdr(qm.msg, MESH_HDR_DEDUP) != NULL) {
			snprintf(id, sizeof(id), "%s",
			         mesh__q_hdr(qm.msg, MESH_HDR_DEDUP));
		}
		/* Published first, deleted after: a rerun re-publishes
		 * what was not deleted, and JetStream drops the copy. */
		err = republish(src, qm.msg, subject, id, dead_letter_headers,
		                NULL);
		mesh__q_msg_clear(&qm);
		if (err != MESH_OK) {
			break;
		}
		s = js_DeleteMsg(mesh_conn_js(c), src->n.stream, qm.sequence,
		                 NULL, &jerr);
		/* Already gone (a killed run's delete that the server took
		 * after it died) is what we wanted. nats-server 2.9 says so
		 * with JSStreamMsgDeleteFailedF and "no message found". */
		if (s != NATS_OK && jerr != JSNoMessageFoundErr &&
		    jerr != JSSequenceNotFoundErr &&
		    strstr(nats_GetLastError(NULL) ? nats_GetLastError(NULL)
		                                   : "",
		           "no message found") == NULL) {
			err = mesh_err_nats(s, jerr,
			                    "queue '%s': message %" PRIu64,
			                    dlq, qm.sequence);
			break;
		}
		count++;
		if (r->rate > 0) {
			int64_t due =
			        start + (int64_t)(count * 1000 / r->rate);
			int64_t wait = due - mono_ms();
			if (wait > 0) {
				struct timespec ts = {wait / 1000,
				                      (wait % 1000) *
				                              NS_PER_MS};
				nanosleep(&ts, NULL);
			}
		}
	}
	mesh_queue_close(dst);
	mesh_queue_close(src);
	if (moved != NULL) {
		*moved = count;
	}
	return err;
}
