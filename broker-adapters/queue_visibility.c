/* queue_visibility.c: what a receiver does with a received message:
 * delete it, change its visibility timeout, in batches of 10. */
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

/* Acknowledge deliveries (by ack subject) and wait until the server has
 * them. The flush's PONG comes after the server read every ack before it;
 * JetStream applies them in order (its consumer state reaches disk
 * asynchronously, as for every acknowledgement). */
static void
ack_many(struct mesh_queue *q, const char *const *acks, const char *body,
         size_t n, struct mesh_queue_result *res)
{
	natsConnection *nc = mesh_conn_nats(q->c);
	natsStatus s = NATS_OK;
	size_t k = 0;

	for (size_t i = 0; i < n && s == NATS_OK; i++) {
		if (res[i].err == MESH_OK) {
			s = natsConnection_PublishString(nc, acks[i], body);
			k++;
		}
	}
	if (k > 0 && s == NATS_OK) {
		s = natsConnection_FlushTimeout(nc, RPC_TIMEOUT_MS);
	}
	if (s != NATS_OK) {
		mesh_err err = mesh_err_nats(s, 0, "queue '%s': acknowledging",
		                             q->name);
		for (size_t i = 0; i < n; i++) {
			if (res[i].err == MESH_OK) {
				res[i].err = err;
				mesh__q_copy_str(res[i].error,
				                 sizeof(res[i].error),
				                 mesh_errdetail());
			}
		}
	}
}

mesh_err
mesh__q_ack_one(struct mesh_queue *q, const char *ack, const char *body)
{
	struct mesh_queue_result r = {MESH_OK, ""};

	ack_many(q, &ack, body, 1, &r);
	return r.err == MESH_OK ? MESH_OK : mesh_err_set(r.err, "%s", r.error);
}

mesh_err
mesh__q_batch_result(struct mesh_queue_result *r)
{
	return r->err == MESH_OK ? MESH_OK
	                         : mesh_err_set(r->err, "%s", r->error);
}

/* Acknowledge n received messages by their receipts; res[i] each. */
static mesh_err
delete_many(struct mesh_queue *q, const char *const *receipts, size_t n,
            struct mesh_queue_result *res)
{
	struct receipt *r = calloc(n, sizeof(*r));
	const char **acks = calloc(n, sizeof(*acks));

	if (r == NULL || acks == NULL) {
		free(r);
		free(acks);
		return mesh_err_set(MESH_ENOMEM, "queue '%s'", q->name);
	}
	memset(res, 0, n * sizeof(*res));
	mesh__q_receipts_open(q, receipts, n, r, res);
	for (size_t i = 0; i < n; i++) {
		acks[i] = r[i].ack;
	}
	ack_many(q, acks, "+ACK", n, res);
	for (size_t i = 0; i < n; i++) {
		if (res[i].err == MESH_OK) {
			mesh__q_plock_set(q, r[i].consumer, 0);
		}
	}
	free(r);
	free(acks);
	return MESH_OK;
}

mesh_err
mesh_queue_delete_batch(struct mesh_queue *q, const char *const *ids,
                        const char *const *receipts, size_t n,
                        struct mesh_queue_result *res)
{
	mesh_err err;

	if ((err = mesh__q_batch_check(q, ids, n, sizeof(*ids))) != MESH_OK) {
		return err;
	}
	return delete_many(q, receipts, n, res);
}

void
mesh__queue_ack_many(struct mesh_queue *q, const char *const *receipts,
                     size_t n)
{
	natsConnection *nc = mesh__conn_bulk(q->c);

	for (size_t i = 0; i < n; i++) {
		struct receipt r;
		int64_t deadline;
		const char *ack = mesh__q_raw_receipt(receipts[i], &deadline);
		if (ack == NULL) {
			continue;
		}
		natsConnection_PublishString(nc, ack, "+ACK");
		/* A FIFO partition is free again once its message is gone. */
		if (q->locks != NULL && mesh__q_ack_parse(ack, &r)) {
			mesh__q_plock_set(q, r.consumer, 0);
		}
	}
}

mesh_err
mesh_queue_delete_message(struct mesh_queue *q, const char *receipt)
{
	const char *id = "single";
	struct mesh_queue_result r;
	mesh_err err = mesh_queue_delete_batch(q, &id, &receipt, 1, &r);

	return err != MESH_OK ? err : mesh__q_batch_result(&r);
}

mesh_err
mesh_queue_change_visibility_batch(struct mesh_queue *q,
                                   const char *const *ids,
                                   const char *const *receipts,
                                   const int64_t *seconds, size_t n,
                                   struct mesh_queue_result *res)
{
	struct receipt r[MESH_QUEUE_BATCH_MAX];
	mesh_err err;

	if ((err = mesh__q_batch_check(q, ids, n, sizeof(*ids))) != MESH_OK) {
		return err;
	}
	memset(res, 0, n * sizeof(*res));
	for (size_t i = 0; i < n; i++) {
		if (seconds[i] < 0 || seconds[i] > MAX_VISIBILITY_S) {
			res[i].err = MESH_EINVAL;
			snprintf(res[i].error, sizeof(res[i].error),
			         "queue '%s': VisibilityTimeout %" PRId64
			         " is out of range 0-%d",
			         q->name, seconds[i], MAX_VISIBILITY_S);
		}
	}
	mesh__q_receipts_open(q, receipts, n, r, res);
	if ((err = mesh__q_ledger_ensure(q)) != MESH_OK) {
		return err;
	}
	for (size_t i = 0; i < n; i++) {
		char subj[200], val[64], body[64];
		natsMsg *m = NULL, *reply = NULL;
		int64_t deadline = now_ms() + seconds[i] * 1000;
		if (res[i].err != MESH_OK) {
			continue;
		}
		/* Record the new deadline first: if the NAK is lost, the
		 * ledger errs on the side of calling the receipt stale. */
		snprintf(subj, sizeof(subj), LEDGER_PREFIX "%s.%" PRIu64,
		         q->n.stream, r[i].sseq);
		snprintf(val, sizeof(val), "%" PRIu64 " %" PRId64, r[i].dseq,
		         deadline);
		if ((err = mesh__q_api_msg(q, subj, val, &m)) == MESH_OK &&
		    (err = mesh__q_rpc_many(q, &m, 1, RPC_TIMEOUT_MS,
		                            &reply)) == MESH_OK) {
			uint64_t seq;
			bool dup;
			err = mesh__q_pub_ack(q, reply, &seq, &dup);
		}
		natsMsg_Destroy(reply);
		if (err == MESH_OK) {
			snprintf(body, sizeof(body),
			         "-NAK {\"delay\":%" PRId64 "}",
			         seconds[i] * 1000 * NS_PER_MS);
			err = mesh__q_ack_one(q, r[i].ack, body);
		}
		if (err == MESH_OK) {
			mesh__q_ledger_put(q, r[i].sseq, r[i].dseq, deadline);
			mesh__q_plock_set(q, r[i].consumer, deadline);
		}
		if (err != MESH_OK) {
			res[i].err = err;
			mesh__q_copy_str(res[i].error, sizeof(res[i].error),
			                 mesh_errdetail());
		}
	}
	return MESH_OK;
}

mesh_err
mesh_queue_change_visibility(struct mesh_queue *q, const char *receipt,
                             int64_t seconds)
{
	const char *id = "single";
	struct mesh_queue_result r;
	mesh_err err = mesh_queue_change_visibility_batch(q, &id, &receipt,
	                                                  &seconds, 1, &r);

	return err != MESH_OK ? err : mesh__q_batch_result(&r);
}
