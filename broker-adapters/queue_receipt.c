/* queue_receipt.c: receipt handles (the delivery's ack subject and its
 * visibility deadline, with an HMAC), raw ones for pollers inside the mesh,
 * and the ledger of changed visibilities that says whether one is still
 * current. */
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

void
mesh__q_receipt_make(const struct mesh_queue *q, const char *ack,
                     int64_t deadline_ms, char *out, size_t size)
{
	uint8_t buf[1 + 8 + ACK_MAX + RECEIPT_TAG];
	size_t alen = strlen(ack), len;

	/* The callers check: an ack subject longer than ACK_MAX, or a
	 * receipt that would not fit in size, never gets here. */
	assert(alen <= ACK_MAX &&
	       sodium_base64_ENCODED_LEN(
	               9 + alen + RECEIPT_TAG,
	               sodium_base64_VARIANT_URLSAFE_NO_PADDING) <= size);
	buf[0] = 1;
	for (int i = 0; i < 8; i++) {
		buf[1 + i] = (uint8_t)((uint64_t)deadline_ms >> (56 - 8 * i));
	}
	memcpy(buf + 9, ack, alen);
	len = 9 + alen;
	crypto_generichash(buf + len, RECEIPT_TAG, buf, len, q->cfg.key,
	                   sizeof(q->cfg.key));
	sodium_bin2base64(out, size, buf, len + RECEIPT_TAG,
	                  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static void
copy_token(char *dst, size_t size, const char *src, int len)
{
	size_t k = (size_t)len < size - 1 ? (size_t)len : size - 1;

	memcpy(dst, src, k);
	dst[k] = '\0';
}

/* $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>,
 * or with <domain>.<account hash> before the stream and a token after:
 * read in place (on every delivery, twice), without a copy. */
bool
mesh__q_ack_parse(const char *ack, struct receipt *r)
{
	const char *tok[16];
	int len[16], n = 0, base;

	if (strlen(ack) > ACK_MAX) {
		return false; /* cut short, it would misparse */
	}
	for (const char *p = ack; n < 16;) {
		const char *dot = strchr(p, '.');
		tok[n] = p;
		len[n] = dot ? (int)(dot - p) : (int)strlen(p);
		if (len[n++] == 0) {
			return false;
		}
		if (dot == NULL) {
			break;
		}
		p = dot + 1;
	}
	if (n < 9 || len[0] != 3 || memcmp(tok[0], "$JS", 3) != 0 ||
	    len[1] != 3 || memcmp(tok[1], "ACK", 3) != 0) {
		return false;
	}
	base = n == 9 ? 2 : 4;
	if (n != 9 && n < 12) {
		return false;
	}
	copy_token(r->stream, sizeof(r->stream), tok[base], len[base]);
	copy_token(r->consumer, sizeof(r->consumer), tok[base + 1],
	           len[base + 1]);
	r->delivered = strtoull(tok[base + 2], NULL, 10);
	r->sseq = strtoull(tok[base + 3], NULL, 10);
	r->dseq = strtoull(tok[base + 4], NULL, 10);
	r->ts_ns = strtoll(tok[base + 5], NULL, 10);
	return r->sseq > 0 && r->dseq > 0;
}

static mesh_err
receipt_open(const struct mesh_queue *q, const char *text, struct receipt *r)
{
	uint8_t buf[1 + 8 + ACK_MAX + RECEIPT_TAG];
	uint8_t tag[RECEIPT_TAG];
	size_t len = 0;

	if (text == NULL || text[0] == '\0' ||
	    strlen(text) >= MESH_QUEUE_RECEIPT_MAX ||
	    sodium_base642bin(buf, sizeof(buf), text, strlen(text), NULL, &len,
	                      NULL,
	                      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
	    len < 9 + 10 + RECEIPT_TAG || buf[0] != 1) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "queue '%s': malformed receipt handle '%.40s'",
		        q->name, text ? text : "");
	}
	len -= RECEIPT_TAG;
	crypto_generichash(tag, sizeof(tag), buf, len, q->cfg.key,
	                   sizeof(q->cfg.key));
	if (sodium_memcmp(tag, buf + len, RECEIPT_TAG) != 0) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "queue '%s': receipt handle '%.40s...' was "
		        "not issued by this queue (forged, damaged "
		        "or another queue's)",
		        q->name, text);
	}
	r->deadline_ms = 0;
	for (int i = 0; i < 8; i++) {
		r->deadline_ms = (int64_t)(((uint64_t)r->deadline_ms << 8) |
		                           buf[1 + i]);
	}
	memcpy(r->ack, buf + 9, len - 9);
	r->ack[len - 9] = '\0';
	if (!mesh__q_ack_parse(r->ack, r) ||
	    strcmp(r->stream, q->n.stream) != 0) {
		return mesh_err_set(MESH_EINVAL,
		                    "queue '%s': receipt handle names another "
		                    "queue",
		                    q->name);
	}
	return MESH_OK;
}

mesh_err
mesh__q_ledger_ensure(struct mesh_queue *q)
{
	jsStreamConfig sc;
	const char *subj[] = {LEDGER_PREFIX ">"};

	mesh_stream_config_init(q->c, &sc, LEDGER_STREAM, subj, 1);
	sc.MaxMsgsPerSubject = 1;
	sc.MaxAge = (int64_t)(MAX_VISIBILITY_S + 3600) * 1000 * NS_PER_MS;
	return mesh_stream_ensure(q->c, &sc);
}

void
mesh__q_ledger_put(struct mesh_queue *q, uint64_t sseq, uint64_t dseq,
                   int64_t deadline_ms)
{
	int64_t horizon = now_ms() - (int64_t)(MAX_VISIBILITY_S + 3600) * 1000;
	size_t k = 0;

	/* Forget entries older than any receipt can be. */
	for (size_t i = 0; i < q->n_ledger; i++) {
		if (q->ledger[i].deadline_ms >= horizon &&
		    q->ledger[i].sseq != sseq) {
			q->ledger[k++] = q->ledger[i];
		}
	}
	q->n_ledger = k;
	if (q->n_ledger == q->cap_ledger) {
		size_t cap = q->cap_ledger ? q->cap_ledger * 2 : 16;
		struct lentry *n = realloc(q->ledger, cap * sizeof(*n));
		if (n == NULL) {
			return; /* the broker's copy still holds it */
		}
		q->ledger = n;
		q->cap_ledger = cap;
	}
	q->ledger[q->n_ledger++] = (struct lentry){sseq, dseq, deadline_ms};
}

/* Take a ledger message ("<dseq> <deadline>" on ...<stream>.<sseq>). */
static void
ledger_take(struct mesh_queue *q, natsMsg *m)
{
	const char *dot = strrchr(natsMsg_GetSubject(m), '.');
	unsigned long long dseq = 0;
	long long dl = 0;

	if (dot != NULL && natsMsg_GetData(m) != NULL &&
	    sscanf(natsMsg_GetData(m), "%llu %lld", &dseq, &dl) == 2) {
		mesh__q_ledger_put(q, strtoull(dot + 1, NULL, 10), dseq, dl);
	}
}

static void
ledger_sync(struct mesh_queue *q)
{
	natsMsg *m;

	if (!q->ledger_loaded) {
		jsOptions o;
		jsStreamInfo *si = NULL;
		char filter[160];

		snprintf(filter, sizeof(filter), LEDGER_PREFIX "%s.*",
		         q->n.stream);
		/* Subscribe first, so that nothing falls between. */
		if (natsConnection_SubscribeSync(&q->ledger_sub,
		                                 mesh_conn_nats(q->c),
		                                 filter) != NATS_OK) {
			q->ledger_sub = NULL;
			return;
		}
		q->ledger_loaded = true;
		jsOptions_Init(&o);
		o.Stream.Info.SubjectsFilter = filter;
		if (js_GetStreamInfo(&si, mesh_conn_js(q->c), LEDGER_STREAM,
		                     &o, NULL) == NATS_OK) {
			for (int k = 0; si->State.Subjects &&
			                k < si->State.Subjects->Count;
			     k++) {
				m = NULL;
				if (js_GetLastMsg(&m, mesh_conn_js(q->c),
				                  LEDGER_STREAM,
				                  si->State.Subjects->List[k]
				                          .Subject,
				                  NULL, NULL) == NATS_OK) {
					ledger_take(q, m);
				}
				natsMsg_Destroy(m);
			}
			jsStreamInfo_Destroy(si);
		}
	}
	while (q->ledger_sub != NULL) {
		uint64_t queued = 0;
		m = NULL;
		if (natsSubscription_QueuedMsgs(q->ledger_sub, &queued) !=
		            NATS_OK ||
		    queued == 0 ||
		    natsSubscription_NextMsg(&m, q->ledger_sub, 1) !=
		            NATS_OK) {
			break;
		}
		ledger_take(q, m);
		natsMsg_Destroy(m);
	}
}

/* Check receipts against their deadlines and the ledger; res[i] gets
 * MESH_ESTALE (with text) for a receipt that may have been superseded. */
static void
receipts_current(struct mesh_queue *q, struct receipt *r, size_t n,
                 struct mesh_queue_result *res)
{
	int64_t now = now_ms();

	ledger_sync(q);
	for (size_t i = 0; i < n; i++) {
		int64_t deadline = r[i].deadline_ms;
		if (res[i].err != MESH_OK) {
			continue;
		}
		for (size_t k = 0; k < q->n_ledger; k++) {
			const struct lentry *e = &q->ledger[k];
			if (e->sseq != r[i].sseq) {
				continue;
			}
			if (e->dseq > r[i].dseq) {
				deadline = 0; /* a newer receipt */
			} else if (e->dseq == r[i].dseq) {
				deadline = e->deadline_ms;
			}
		}
		if (now >= deadline) {
			res[i].err = MESH_ESTALE;
			snprintf(res[i].error, sizeof(res[i].error),
			         "queue '%s': receipt handle has expired: the "
			         "message became visible again and may have "
			         "been received since; receive it again",
			         q->name);
		}
	}
}

void
mesh__q_receipts_open(struct mesh_queue *q, const char *const *texts, size_t n,
                      struct receipt *r, struct mesh_queue_result *res)
{
	for (size_t i = 0; i < n; i++) {
		res[i].err = receipt_open(q, texts[i], &r[i]);
		if (res[i].err != MESH_OK) {
			mesh__q_copy_str(res[i].error, sizeof(res[i].error),
			                 mesh_errdetail());
		}
	}
	receipts_current(q, r, n, res);
}

const char *
mesh__q_raw_receipt(const char *text, int64_t *deadline_ms)
{
	char *end = NULL;

	if (text == NULL || text[0] != '@') {
		return NULL;
	}
	*deadline_ms = strtoll(text + 1, &end, 10);
	return end != NULL && *end == '@' ? end + 1 : NULL;
}

mesh_err
mesh__queue_seal(struct mesh_queue *q, char *receipt, size_t size)
{
	int64_t deadline;
	const char *ack = mesh__q_raw_receipt(receipt, &deadline);
	char copy[ACK_MAX + 1];

	if (ack == NULL) {
		return receipt[0] != '\0'
		               ? MESH_OK
		               : mesh_err_set(MESH_EINVAL,
		                              "queue '%s': no receipt handle",
		                              q->name);
	}
	/* receipt_make holds at most ACK_MAX bytes of ack subject, and
	 * sodium_bin2base64 aborts the process when its output does not fit
	 * in size: refuse such a receipt rather than die (found by fuzzing).
	 */
	if (strlen(ack) > ACK_MAX ||
	    sodium_base64_ENCODED_LEN(
	            9 + strlen(ack) + RECEIPT_TAG,
	            sodium_base64_VARIANT_URLSAFE_NO_PADDING) > size) {
		return mesh_err_set(MESH_EINVAL,
		                    "queue '%s': malformed receipt handle",
		                    q->name);
	}
	snprintf(copy, sizeof(copy), "%s", ack);
	mesh__q_receipt_make(q, copy, deadline, receipt, size);
	return MESH_OK;
}

/* For the fuzz tests: the receipt handles of a queue without a broker. */
mesh_err
mesh__queue_receipt_check(const char *name, const uint8_t key[32],
                          char *receipt, size_t size)
{
	struct mesh_queue q = {0};
	struct receipt rc;
	bool fifo = false;
	mesh_err err;

	snprintf(q.name, sizeof(q.name), "%s", name);
	memcpy(q.cfg.key, key, sizeof(q.cfg.key));
	mesh_queue_name_check(name, &fifo);
	mesh__q_names_of(name, fifo, &q.n);
	if ((err = mesh__queue_seal(&q, receipt, size)) != MESH_OK) {
		return err;
	}
	return receipt_open(&q, receipt, &rc);
}
