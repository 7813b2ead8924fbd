/* queue_receive.c: receiving (standard queues from the shared consumer,
 * FIFO queues partition by partition, one message of a group in flight),
 * the partition locks of a connection, and peeking. */
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

/* One lock for every connection's partition locks; receivers waiting for
 * a partition this process holds wait on plocks_cv for its release. */
static pthread_mutex_t plocks_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t plocks_cv;
static pthread_once_t plocks_once = PTHREAD_ONCE_INIT;

static void
plocks_init(void)
{
	pthread_condattr_t a;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(&plocks_cv, &a);
	pthread_condattr_destroy(&a);
}

struct plocks *
mesh__q_plocks_of(struct mesh_conn *c, const char *stream)
{
	char key[128];

	pthread_once(&plocks_once, plocks_init);
	snprintf(key, sizeof(key), "queue.plocks.%s", stream);
	return mesh__conn_slot(c, key, sizeof(struct plocks));
}

void
mesh__q_plock_set(struct mesh_queue *q, const char *consumer, int64_t until)
{
	unsigned long part;

	if (q->locks == NULL || consumer[0] != 'p') {
		return;
	}
	part = strtoul(consumer + 1, NULL, 10);
	if (part < 256) {
		pthread_mutex_lock(&plocks_mu);
		if (until == 0 && q->locks->until[part] != 0) {
			q->locks->freed++;
			pthread_cond_broadcast(&plocks_cv);
		}
		q->locks->until[part] = until;
		pthread_mutex_unlock(&plocks_mu);
	}
}

/* While partitions with messages are held by this process, wait up to ms
 * for one to be freed: true then (freed or not). False when none is held:
 * only a publish can bring work. */
static bool
plock_wait(struct mesh_queue *q, int64_t ms)
{
	int64_t now = now_ms();
	bool held = false;

	if (q->locks == NULL) {
		return false;
	}
	pthread_mutex_lock(&plocks_mu);
	for (int p = 0; p < 256 && !held; p++) {
		held = q->locks->busy[p] && q->locks->until[p] > now;
	}
	if (held) {
		uint64_t freed = q->locks->freed;
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += ms / 1000;
		ts.tv_nsec += (long)(ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		while (freed == q->locks->freed &&
		       pthread_cond_timedwait(&plocks_cv, &plocks_mu, &ts) !=
		               ETIMEDOUT) {
		}
	}
	pthread_mutex_unlock(&plocks_mu);
	return held;
}

/* Take a partition for a pull, unless another thread has it. */
static bool
plock_claim(struct mesh_queue *q, uint32_t part, int64_t now)
{
	bool got = true;

	if (q->locks == NULL || part >= 256) {
		return true;
	}
	pthread_mutex_lock(&plocks_mu);
	if (q->locks->until[part] > now) {
		got = false;
	} else {
		q->locks->until[part] = now + RPC_TIMEOUT_MS;
	}
	pthread_mutex_unlock(&plocks_mu);
	return got;
}

void
mesh__q_msg_clear(struct mesh_queue_msg *m)
{
	mesh_event_free(m->event);
	natsMsg_Destroy(m->msg);
	m->event = NULL;
	m->msg = NULL;
}

void
mesh_queue_msgs_free(struct mesh_queue_msg *msgs, size_t n)
{
	for (size_t i = 0; msgs != NULL && i < n; i++) {
		mesh_event_free(msgs[i].event);
		natsMsg_Destroy(msgs[i].msg);
	}
	free(msgs);
}

/* Turn a stored message into an event: ours decode; anything else that a
 * foreign client put on the subject, or a CloudEvent that does not parse,
 * is carried as its bytes, with the parse error. */
static mesh_err
msg_event(struct mesh_queue *q, natsMsg *m, uint64_t sseq,
          struct mesh_queue_msg *r)
{
	char fallback[128];

	snprintf(fallback, sizeof(fallback), "%s-%" PRIu64, q->n.stream, sseq);
	return mesh_wire_read(m, SIZE_MAX, fallback, &r->event, r->parse_error,
	                      sizeof(r->parse_error));
}

static void
msg_fill(natsMsg *m, struct mesh_queue_msg *out)
{
	mesh__q_copy_str(out->group_id, sizeof(out->group_id),
	                 mesh__q_hdr(m, MESH_HDR_GROUP));
	mesh__q_copy_str(out->dedup_id, sizeof(out->dedup_id),
	                 mesh__q_hdr(m, MESH_HDR_DEDUP));
	mesh__q_copy_str(out->dlq_source, sizeof(out->dlq_source),
	                 mesh__q_hdr(m, HDR_DLQ_SOURCE));
	mesh__q_copy_str(out->dlq_reason, sizeof(out->dlq_reason),
	                 mesh__q_hdr(m, HDR_DLQ_REASON));
	mesh__q_copy_str(out->dlq_service, sizeof(out->dlq_service),
	                 mesh__q_hdr(m, HDR_DLQ_SVC));
	out->dlq_sequence =
	        mesh__q_hdr(m, HDR_DLQ_SEQ)
	                ? strtoull(mesh__q_hdr(m, HDR_DLQ_SEQ), NULL, 10)
	                : 0;
	out->dlq_receive_count =
	        mesh__q_hdr(m, HDR_DLQ_COUNT)
	                ? strtoull(mesh__q_hdr(m, HDR_DLQ_COUNT), NULL, 10)
	                : 0;
}

/* Judge delivered messages: dead-letter those over maxReceiveCount, set
 * visibility, and make receipts (raw ones for pollers inside the mesh:
 * see mesh__queue_receive_many). Takes got[]. */
static mesh_err
deliver(struct mesh_queue *q, natsMsg **got, size_t n, int64_t t_request,
        int64_t visibility_s, bool raw, struct mesh_queue_msg *out,
        size_t *n_out)
{
	const struct mesh_queue_attrs *a = &q->cfg.a;
	int64_t vis =
	        visibility_s < 0 ? a->visibility_timeout_s : visibility_s;
	bool nak = vis != a->visibility_timeout_s || vis == 0;
	int64_t now = now_ms();
	mesh_err err = MESH_OK;

	for (size_t i = 0; i < n; i++) {
		natsMsg *m = got[i];
		struct receipt meta;
		struct mesh_queue_msg *r = &out[*n_out];
		const char *ack = natsMsg_GetReply(m);

		if (ack == NULL || !mesh__q_ack_parse(ack, &meta)) {
			continue;
		}
		if (a->dlq[0] != '\0' &&
		    meta.delivered > (uint64_t)a->max_receive_count) {
			char reason[64];
			snprintf(reason, sizeof(reason),
			         "maxReceiveCount %" PRId64 " exceeded",
			         a->max_receive_count);
			if (mesh__q_dead_letter(q, m, meta.sseq,
			                        meta.delivered - 1, ack,
			                        reason) == MESH_OK) {
				continue;
			}
			/* The dead-letter queue is gone or refused it: hand
			 * the message out rather than hide it again. */
		}
		memset(r, 0, sizeof(*r));
		if (msg_event(q, m, meta.sseq, r) != MESH_OK) {
			/* Not even its bytes could be kept (out of memory):
			 * visible again at once, and the rest go on. */
			natsConnection_PublishString(mesh_conn_nats(q->c), ack,
			                             "-NAK");
			continue;
		}
		if (nak) {
			char body[64];
			snprintf(body, sizeof(body),
			         "-NAK {\"delay\":%" PRId64 "}",
			         vis * 1000 * NS_PER_MS);
			natsConnection_PublishString(mesh_conn_nats(q->c), ack,
			                             body);
		}
		if (raw) {
			snprintf(r->receipt, sizeof(r->receipt),
			         "@%" PRId64 "@%s", t_request + vis * 1000,
			         ack);
		} else {
			mesh__q_receipt_make(q, ack, t_request + vis * 1000,
			                     r->receipt, sizeof(r->receipt));
		}
		mesh__q_plock_set(q, meta.consumer, t_request + vis * 1000);
		r->receive_count = meta.delivered;
		r->sequence = meta.sseq;
		r->sent_ms = meta.ts_ns / NS_PER_MS;
		/* JetStream keeps no first-receive time: the first receive is
		 * now, a later one is estimated from the visibility timeout.
		 */
		r->first_receive_ms = now - (int64_t)(meta.delivered - 1) *
		                                    a->visibility_timeout_s *
		                                    1000;
		if (r->first_receive_ms < r->sent_ms) {
			r->first_receive_ms = r->sent_ms;
		}
		msg_fill(m, r);
		r->msg = m; /* freed with the message, together */
		got[i] = NULL;
		(*n_out)++;
	}
	if (nak) {
		natsConnection_Flush(mesh_conn_nats(q->c));
	}
	for (size_t i = 0; i < n; i++) {
		natsMsg_Destroy(got[i]);
	}
	return err;
}

/* The FIFO partitions that hold messages and that no open queue of this
 * process has in flight, in a random order. Which partitions hold messages
 * is asked of JetStream (a stream info with subjects) at most every
 * BUSY_CACHE_MS per process; pulls that find a partition empty, sends, and
 * publish signals keep the answer current in between. */
static int
busy_partitions(struct mesh_queue *q, uint32_t *parts, int cap)
{
	int64_t now = now_ms();
	bool fresh;
	int n = 0;

	pthread_mutex_lock(&plocks_mu);
	fresh = q->locks != NULL && now < q->locks->busy_until;
	pthread_mutex_unlock(&plocks_mu);
	if (!fresh) {
		jsOptions o;
		jsStreamInfo *si = NULL;
		bool busy[256] = {false};

		jsOptions_Init(&o);
		o.Stream.Info.SubjectsFilter = q->n.filter;
		if (js_GetStreamInfo(&si, mesh_conn_js(q->c), q->n.stream, &o,
		                     NULL) != NATS_OK) {
			return 0;
		}
		for (int k = 0;
		     si->State.Subjects && k < si->State.Subjects->Count;
		     k++) {
			const char *subj = si->State.Subjects->List[k].Subject;
			const char *dot = strrchr(subj, '.');
			unsigned long part;
			if (dot == NULL ||
			    si->State.Subjects->List[k].Msgs == 0) {
				continue;
			}
			part = strtoul(dot + 1, NULL, 10);
			if (part < 256) {
				busy[part] = true;
			}
		}
		jsStreamInfo_Destroy(si);
		if (q->locks == NULL) {
			for (uint32_t p = 0; p < 256 && n < cap; p++) {
				if (busy[p]) {
					parts[n++] = p;
				}
			}
			goto shuffle;
		}
		pthread_mutex_lock(&plocks_mu);
		memcpy(q->locks->busy, busy, sizeof(busy));
		q->locks->busy_until = now + BUSY_CACHE_MS;
		pthread_mutex_unlock(&plocks_mu);
	}
	pthread_mutex_lock(&plocks_mu);
	for (uint32_t p = 0; p < 256 && n < cap; p++) {
		if (q->locks->busy[p] && q->locks->until[p] <= now) {
			parts[n++] = p;
		}
	}
	pthread_mutex_unlock(&plocks_mu);
shuffle:
	/* Start somewhere new each time, so no partition starves. */
	for (int i = n - 1; i > 0; i--) {
		uint32_t j = randombytes_uniform((uint32_t)i + 1),
		         t = parts[i];
		parts[i] = parts[j];
		parts[j] = t;
	}
	return n;
}

/* Note what a pull or send learnt about a partition. */
static void
busy_note(struct mesh_queue *q, const char *consumer_or_subject, bool busy)
{
	const char *dot = strrchr(consumer_or_subject, '.');
	const char *num = consumer_or_subject[0] == 'p'
	                          ? consumer_or_subject + 1
	                  : dot ? dot + 1
	                        : NULL;
	unsigned long part;

	if (q->locks == NULL || num == NULL) {
		return;
	}
	part = strtoul(num, NULL, 10);
	if (part < 256) {
		pthread_mutex_lock(&plocks_mu);
		q->locks->busy[part] = busy;
		pthread_mutex_unlock(&plocks_mu);
	}
}

/* Pull one message from each of up to `want` busy partitions at once. */
static mesh_err
fifo_pull(struct mesh_queue *q, int want, natsMsg **got, size_t *n)
{
	uint32_t parts[256];
	int np = busy_partitions(q, parts, 256);
	mesh_err err;

	for (int at = 0; at < np && (int)*n < want;) {
		natsMsg *reqs[MESH_QUEUE_BATCH_MAX],
		        *replies[MESH_QUEUE_BATCH_MAX];
		char names[MESH_QUEUE_BATCH_MAX][16];
		const char *consumers[MESH_QUEUE_BATCH_MAX];
		int k = 0;
		while (k < want - (int)*n && at < np) {
			char subject[200];
			if (!plock_claim(q, parts[at], now_ms())) {
				at++;
				continue;
			}
			snprintf(names[k], sizeof(names[k]), "p%" PRIu32,
			         parts[at++]);
			consumers[k] = names[k];
			snprintf(subject, sizeof(subject),
			         "$JS.API.CONSUMER.MSG.NEXT.%s.%s",
			         q->n.stream, names[k]);
			/* An empty partition answers no_wait with a 404 at
			 * once; one at its one message in flight answers a
			 * bare no_wait with silence, but an expiring one
			 * with a 408 after the expiry. */
			if ((err = mesh__q_api_msg(
			             q, subject,
			             "{\"batch\":1,\"no_wait\":true,"
			             "\"expires\":2000000}",
			             &reqs[k])) != MESH_OK) {
				return err;
			}
			k++;
		}
		/* nats-server 2.9 may drop an expired pull without a 408;
		 * after its expiry no message can come for it, so a short
		 * wait past it is enough. */
		if ((err = mesh__q_rpc_many_from(q, reqs, (size_t)k,
		                                 FIFO_PULL_WAIT_MS, replies,
		                                 consumers)) != MESH_OK) {
			return err;
		}
		for (int i = 0; i < k; i++) {
			if (replies[i] != NULL &&
			    mesh__rpc_status(replies[i]) == 0 &&
			    !natsMsg_IsNoResponders(replies[i])) {
				got[(*n)++] = replies[i]; /* deliver() locks */
			} else {
				/* 404: empty; 408: held by another process. */
				if (replies[i] != NULL &&
				    mesh__rpc_status(replies[i]) == 404) {
					busy_note(q, names[i], false);
				}
				natsMsg_Destroy(replies[i]);
				mesh__q_plock_set(q, names[i], 0);
			}
		}
	}
	return MESH_OK;
}

/* Wait up to ms for work on a FIFO queue: a partition this process holds
 * freed (then at most BUSY_CACHE_MS, when partitions with messages are
 * known afresh), else a message published to the queue. */
static void
fifo_wait(struct mesh_queue *q, natsSubscription **watch, int64_t ms)
{
	natsMsg *m = NULL;

	if (plock_wait(q, ms < BUSY_CACHE_MS ? ms : BUSY_CACHE_MS)) {
		return;
	}
	if (*watch == NULL &&
	    natsConnection_SubscribeSync(watch, mesh_conn_nats(q->c),
	                                 q->n.filter) != NATS_OK) {
		*watch = NULL;
	}
	if (*watch == NULL ||
	    natsSubscription_NextMsg(&m, *watch, ms) != NATS_OK) {
		return;
	}
	busy_note(q, natsMsg_GetSubject(m), true);
	natsMsg_Destroy(m);
}

/* Receive up to max messages (the callers bound max). */
static mesh_err
receive(struct mesh_queue *q, int max, int wait_s, int64_t visibility_s,
        bool raw, struct mesh_queue_msg **msgs, size_t *n)
{
	natsMsg **got = calloc((size_t)max, sizeof(*got));
	struct mesh_queue_msg *out;
	natsSubscription *watch = NULL;
	size_t ngot = 0, nout = 0;
	int64_t wait_ms, deadline, t_request;
	mesh_err err = MESH_OK;

	if (wait_s > 20) {
		free(got);
		return mesh_err_set(MESH_EINVAL,
		                    "queue '%s': WaitTimeSeconds %d is out of "
		                    "range 0-20",
		                    q->name, wait_s);
	}
	if (visibility_s > MAX_VISIBILITY_S) {
		free(got);
		return mesh_err_set(MESH_EINVAL,
		                    "queue '%s': VisibilityTimeout %" PRId64
		                    " is out of range 0-%d",
		                    q->name, visibility_s, MAX_VISIBILITY_S);
	}
	if (got == NULL || (out = calloc((size_t)max, sizeof(*out))) == NULL) {
		free(got);
		return mesh_err_set(MESH_ENOMEM, "queue '%s'", q->name);
	}
	wait_ms = (wait_s < 0 ? q->cfg.a.receive_wait_s : wait_s) * 1000;
	deadline = mono_ms() + wait_ms;
	for (;;) {
		int64_t left = deadline - mono_ms();
		if ((err = mesh__q_release_due(q)) != MESH_OK) {
			break;
		}
		t_request = now_ms();
		if (q->cfg.a.fifo) {
			err = fifo_pull(q, max - (int)nout, got, &ngot);
		} else {
			err = mesh__q_pull(q, q->n.stream, RECEIVERS,
			                   max - (int)nout, 0, got, &ngot,
			                   (size_t)max);
			if (err == MESH_OK && ngot == 0 && left > 0) {
				/* Long poll for the first message, in slices
				 * so that delayed messages come due. */
				err = mesh__q_pull(
				        q, q->n.stream, RECEIVERS, 1,
				        left < POLL_SLICE_MS ? left
				                             : POLL_SLICE_MS,
				        got, &ngot, (size_t)max);
				if (err == MESH_OK && ngot == 1 && max > 1) {
					err = mesh__q_pull(q, q->n.stream,
					                   RECEIVERS, max - 1,
					                   0, got, &ngot,
					                   (size_t)max);
				}
			}
		}
		if (err == MESH_OK) {
			err = deliver(q, got, ngot, t_request, visibility_s,
			              raw, out, &nout);
		} else {
			for (size_t i = 0; i < ngot; i++) {
				natsMsg_Destroy(got[i]);
			}
		}
		ngot = 0;
		left = deadline - mono_ms();
		if (err != MESH_OK || nout > 0 || left <= 0) {
			break;
		}
		if (q->cfg.a.fifo) {
			fifo_wait(q, &watch, left < 250 ? left : 250);
		}
	}
	natsSubscription_Destroy(watch);
	free(got);
	if (err != MESH_OK) {
		mesh_queue_msgs_free(out, nout);
		return err;
	}
	*msgs = out;
	*n = nout;
	return MESH_OK;
}

mesh_err
mesh_queue_receive(struct mesh_queue *q, int max, int wait_s,
                   int64_t visibility_s, struct mesh_queue_msg **msgs,
                   size_t *n)
{
	if (max < 1 || max > MESH_QUEUE_BATCH_MAX) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "queue '%s': MaxNumberOfMessages %d is out "
		        "of range 1-%d",
		        q->name, max, MESH_QUEUE_BATCH_MAX);
	}
	return receive(q, max, wait_s, visibility_s, false, msgs, n);
}

mesh_err
mesh__queue_receive_many(struct mesh_queue *q, int max, int wait_s,
                         struct mesh_queue_msg **msgs, size_t *n)
{
	if (max < 1 || max > FORWARD_CHUNK) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "queue '%s': %d messages at once, not 1-%d", q->name,
		        max, FORWARD_CHUNK);
	}
	return receive(q, max, wait_s, -1, true, msgs, n);
}

natsMsg *
mesh__q_next_stored(struct mesh_conn *c, const struct qnames *n, uint64_t *seq)
{
	jsDirectGetMsgOptions o;
	natsMsg *m = NULL;

	jsDirectGetMsgOptions_Init(&o);
	o.Sequence = *seq;
	o.NextBySubject = n->filter;
	if (js_DirectGetMsg(&m, mesh_conn_js(c), n->stream, NULL, &o) !=
	    NATS_OK) {
		return NULL;
	}
	*seq = natsMsg_GetSequence(m) + 1;
	return m;
}

mesh_err
mesh__q_stored_to_msg(struct mesh_queue *q, natsMsg *m,
                      struct mesh_queue_msg *r)
{
	mesh_err err;

	memset(r, 0, sizeof(*r));
	r->sequence = natsMsg_GetSequence(m);
	r->sent_ms = natsMsg_GetTime(m) / NS_PER_MS;
	msg_fill(m, r);
	if ((err = msg_event(q, m, r->sequence, r)) != MESH_OK) {
		natsMsg_Destroy(m);
		return err;
	}
	r->msg = m;
	return MESH_OK;
}

mesh_err
mesh_queue_peek(struct mesh_queue *q, size_t max, struct mesh_queue_msg **msgs,
                size_t *n)
{
	struct mesh_queue_msg *out = calloc(max ? max : 1, sizeof(*out));
	uint64_t seq = 1;
	size_t k = 0;
	natsMsg *m;

	if (out == NULL) {
		return mesh_err_set(MESH_ENOMEM, "queue '%s'", q->name);
	}
	while (k < max &&
	       (m = mesh__q_next_stored(q->c, &q->n, &seq)) != NULL) {
		mesh_err err = mesh__q_stored_to_msg(q, m, &out[k]);
		if (err != MESH_OK) {
			mesh_queue_msgs_free(out, k);
			return err;
		}
		k++;
	}
	*msgs = out;
	*n = k;
	return MESH_OK;
}
