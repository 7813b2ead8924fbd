/* queue.c: SQS queues on JetStream. The mapping is described in
 * mesh/queue.h; the JetStream requests that need pipelining (send batches,
 * acknowledgements, FIFO partition pulls) are made by hand on one inbox per
 * open queue, so that a batch costs one round trip. */
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

#include "internal.h"
#include "mesh/queue.h"
#include "rpc.h"
#include "mesh/wire.h"

#define HDR_NOT_BEFORE "Mesh-Not-Before"
#define HDR_DLQ_SOURCE "Mesh-Dlq-Source"
#define HDR_DLQ_REASON "Mesh-Dlq-Reason"
#define HDR_DLQ_COUNT  "Mesh-Dlq-Receive-Count"

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
#define NS_PER_MS         ((int64_t)1000000)

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
	struct mesh__rpc *rpc; /* its JetStream requests */
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

/* The FIFO partitions that some open queue of this process has a message
 * of in flight, and until when (realtime ms). Threads of one process then
 * do not ask JetStream for partitions they know to be taken. Entries live
 * as long as the process. */
struct plocks {
	struct plocks *next;
	const struct mesh_conn *c;
	char stream[96];
	int64_t until[256];
	/* The partitions that held messages when last asked, so that
	 * receives do not ask JetStream each time. */
	int64_t busy_until;
	bool busy[256];
};
static pthread_mutex_t plocks_mu = PTHREAD_MUTEX_INITIALIZER;
static struct plocks *plocks_head;

static struct plocks *
plocks_of(const struct mesh_conn *c, const char *stream)
{
	struct plocks *p;

	pthread_mutex_lock(&plocks_mu);
	for (p = plocks_head; p != NULL; p = p->next) {
		if (p->c == c && strcmp(p->stream, stream) == 0) {
			break;
		}
	}
	if (p == NULL && (p = calloc(1, sizeof(*p))) != NULL) {
		p->c = c;
		snprintf(p->stream, sizeof(p->stream), "%s", stream);
		p->next = plocks_head;
		plocks_head = p;
	}
	pthread_mutex_unlock(&plocks_mu);
	return p;
}

static void
plock_set(struct mesh_queue *q, const char *consumer, int64_t until)
{
	unsigned long part;

	if (q->locks == NULL || consumer[0] != 'p') {
		return;
	}
	part = strtoul(consumer + 1, NULL, 10);
	if (part < 256) {
		pthread_mutex_lock(&plocks_mu);
		q->locks->until[part] = until;
		pthread_mutex_unlock(&plocks_mu);
	}
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

static void drop_reply(struct mesh_queue *q, natsMsg *m);

/* ---- small helpers ------------------------------------------------------ */

static uint32_t
partition_of(const char *group, int64_t partitions)
{
	uint64_t h = 1469598103934665603ULL;

	for (const unsigned char *p = (const unsigned char *)group; *p; p++) {
		h = (h ^ *p) * 1099511628211ULL;
	}
	return (uint32_t)(h % (uint64_t)partitions);
}

static void
names_of(const char *name, bool fifo, struct qnames *n)
{
	int base = (int)strlen(name) - (fifo ? 5 : 0);

	snprintf(n->stream, sizeof(n->stream), "%s_%.*s", fifo ? "MF" : "MQ",
	         base, name);
	snprintf(n->dstream, sizeof(n->dstream), "%s_%.*s",
	         fifo ? "MFD" : "MQD", base, name);
	snprintf(n->subject, sizeof(n->subject), "mesh.queue.%s", name);
	snprintf(n->filter, sizeof(n->filter), "%s%s", n->subject,
	         fifo ? ".*" : "");
	snprintf(n->dsubject, sizeof(n->dsubject), "mesh.delay.%s", name);
}

static void
target_subject(const struct qnames *n, const struct qcfg *cfg,
               const char *group, char *out, size_t size)
{
	if (cfg->a.fifo) {
		snprintf(out, size, "%s.%" PRIu32, n->subject,
		         partition_of(group ? group : "", cfg->a.partitions));
	} else {
		snprintf(out, size, "%s", n->subject);
	}
}

/* A header's value or NULL. */
static const char *
hdr(natsMsg *m, const char *key)
{
	const char *v = NULL;

	return natsMsgHeader_Get(m, key, &v) == NATS_OK ? v : NULL;
}

static void
copy_str(char *dst, size_t size, const char *src)
{
	snprintf(dst, size, "%s", src ? src : "");
}

struct receipt {
	int64_t deadline_ms;
	char ack[200]; /* the delivery's ack subject */
	char stream[96];
	char consumer[32];
	uint64_t delivered, sseq, dseq;
	int64_t ts_ns; /* when the message was stored */
};

static void
receipt_make(const struct mesh_queue *q, const char *ack, int64_t deadline_ms,
             char *out, size_t size)
{
	uint8_t buf[1 + 8 + 200 + RECEIPT_TAG];
	size_t alen = strlen(ack), len;

	assert(alen <= 200);
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

/* Parse "$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>"
 * (and the longer form with domain and account hash). */
static bool
ack_parse(const char *ack, struct receipt *r)
{
	char copy[200], *tok[16], *save = NULL;
	int n = 0, base;

	copy_str(copy, sizeof(copy), ack);
	for (char *t = strtok_r(copy, ".", &save); t && n < 16;
	     t = strtok_r(NULL, ".", &save)) {
		tok[n++] = t;
	}
	if (n < 9 || strcmp(tok[0], "$JS") != 0 || strcmp(tok[1], "ACK")) {
		return false;
	}
	base = n == 9 ? 2 : 4;
	if (n != 9 && n < 12) {
		return false;
	}
	copy_str(r->stream, sizeof(r->stream), tok[base]);
	copy_str(r->consumer, sizeof(r->consumer), tok[base + 1]);
	r->delivered = strtoull(tok[base + 2], NULL, 10);
	r->sseq = strtoull(tok[base + 3], NULL, 10);
	r->dseq = strtoull(tok[base + 4], NULL, 10);
	r->ts_ns = strtoll(tok[base + 5], NULL, 10);
	return r->sseq > 0 && r->dseq > 0;
}

/* Whether a delivered message comes from stream/consumer. */
static bool
from_consumer(natsMsg *m, const char *stream, const char *consumer)
{
	struct receipt r;

	return natsMsg_GetReply(m) != NULL &&
	       ack_parse(natsMsg_GetReply(m), &r) &&
	       strcmp(r.stream, stream) == 0 &&
	       strcmp(r.consumer, consumer) == 0;
}

/* ---- names and attributes ------------------------------------------------
 */

void
mesh_queue_attrs_init(struct mesh_queue_attrs *a)
{
	memset(a, 0, sizeof(*a));
	a->visibility_timeout_s = 30;
	a->retention_s = 345600;
	a->max_message_size = 262144;
	a->max_receive_count = 10;
	a->partitions = 64;
}

mesh_err
mesh_queue_name_check(const char *name, bool *fifo)
{
	return mesh__name_check("queue", name, MESH_QUEUE_NAME_MAX, fifo);
}

static mesh_err
range(const char *queue, const char *attr, int64_t v, int64_t lo, int64_t hi)
{
	if (v < lo || v > hi) {
		return mesh__seterr(MESH_EINVAL,
		                    "queue '%s': %s %" PRId64
		                    " is out of range %" PRId64 "-%" PRId64,
		                    queue, attr, v, lo, hi);
	}
	return MESH_OK;
}

mesh_err
mesh_queue_attrs_check(const char *name, const struct mesh_queue_attrs *a)
{
	bool fifo;
	mesh_err err;

	if ((err = mesh_queue_name_check(name, &fifo)) != MESH_OK) {
		return err;
	}
	if (fifo != a->fifo) {
		return mesh__seterr(
		        MESH_EINVAL, "queue '%s': %s", name,
		        a->fifo ? "a FIFO queue's name must end in "
		                  "'.fifo'"
		                : "a name ending in '.fifo' is for "
		                  "FIFO queues (--fifo)");
	}
	if (a->content_based_dedup && !a->fifo) {
		return mesh__seterr(MESH_EINVAL,
		                    "queue '%s': ContentBasedDeduplication is "
		                    "for FIFO queues only",
		                    name);
	}
	if ((err = range(name, "VisibilityTimeout", a->visibility_timeout_s, 0,
	                 MAX_VISIBILITY_S)) != MESH_OK ||
	    (err = range(name, "DelaySeconds", a->delay_s, 0, 900)) !=
	            MESH_OK ||
	    (err = range(name, "MessageRetentionPeriod", a->retention_s, 60,
	                 1209600)) != MESH_OK ||
	    (err = range(name, "MaximumMessageSize", a->max_message_size, 1024,
	                 1048576)) != MESH_OK ||
	    (err = range(name, "ReceiveMessageWaitTimeSeconds",
	                 a->receive_wait_s, 0, 20)) != MESH_OK ||
	    (err = range(name, "partitions", a->partitions, 1, 256)) !=
	            MESH_OK) {
		return err;
	}
	if (a->dlq[0] != '\0') {
		bool dfifo;
		if ((err = mesh_queue_name_check(a->dlq, &dfifo)) != MESH_OK) {
			return err;
		}
		if (dfifo != a->fifo) {
			return mesh__seterr(
			        MESH_EINVAL,
			        "queue '%s': its dead-letter queue "
			        "'%s' must be %s too",
			        name, a->dlq,
			        a->fifo ? "a FIFO queue" : "a standard queue");
		}
		if (strcmp(a->dlq, name) == 0) {
			return mesh__seterr(MESH_EINVAL,
			                    "queue '%s': cannot be its own "
			                    "dead-letter queue",
			                    name);
		}
		if ((err = range(name, "maxReceiveCount", a->max_receive_count,
		                 1, 1000)) != MESH_OK) {
			return err;
		}
	}
	return MESH_OK;
}

/* ---- the configuration kept in the stream's description ----------------- */

/* "evmesh-queue v1 fifo=0 cbd=0 vt=30 ... key=<hex>": cnats writes the
 * description into JSON unescaped, so it holds no quotes. */
static char *
cfg_encode(const char *name, const struct qcfg *cfg)
{
	const struct mesh_queue_attrs *a = &cfg->a;
	char key[65];
	char *s = NULL;

	sodium_bin2hex(key, sizeof(key), cfg->key, sizeof(cfg->key));
	if (asprintf(&s,
	             "evmesh-queue v1 name=%s fifo=%d cbd=%d vt=%" PRId64
	             " delay=%" PRId64 " retention=%" PRId64 " max=%" PRId64
	             " wait=%" PRId64 " dlq=%s maxrc=%" PRId64
	             " parts=%" PRId64 " created=%" PRId64 " modified=%" PRId64
	             " key=%s",
	             name, a->fifo, a->content_based_dedup,
	             a->visibility_timeout_s, a->delay_s, a->retention_s,
	             a->max_message_size, a->receive_wait_s, a->dlq,
	             a->max_receive_count, a->partitions, a->created_ms,
	             a->modified_ms, key) < 0) {
		return NULL;
	}
	return s;
}

static mesh_err
cfg_decode(const char *name, const char *desc, struct qcfg *cfg)
{
	char copy[1024], *save = NULL;
	int found = 0;
	size_t klen = 0;

	if (desc == NULL || strncmp(desc, "evmesh-queue v1 ", 16) != 0) {
		return mesh__seterr(MESH_EBROKER,
		                    "queue '%s': its stream holds no queue "
		                    "attributes (not made by evmesh?)",
		                    name);
	}
	mesh_queue_attrs_init(&cfg->a);
	copy_str(copy, sizeof(copy), desc + 16);
	for (char *t = strtok_r(copy, " ", &save); t != NULL;
	     t = strtok_r(NULL, " ", &save)) {
		char *eq = strchr(t, '=');
		const char *v;
		int64_t n;
		if (eq == NULL) {
			continue;
		}
		*eq = '\0';
		v = eq + 1;
		n = strtoll(v, NULL, 10);
		found++;
		if (strcmp(t, "fifo") == 0)
			cfg->a.fifo = n != 0;
		else if (strcmp(t, "cbd") == 0)
			cfg->a.content_based_dedup = n;
		else if (strcmp(t, "vt") == 0)
			cfg->a.visibility_timeout_s = n;
		else if (strcmp(t, "delay") == 0)
			cfg->a.delay_s = n;
		else if (strcmp(t, "retention") == 0)
			cfg->a.retention_s = n;
		else if (strcmp(t, "max") == 0)
			cfg->a.max_message_size = n;
		else if (strcmp(t, "wait") == 0)
			cfg->a.receive_wait_s = n;
		else if (strcmp(t, "dlq") == 0)
			copy_str(cfg->a.dlq, sizeof(cfg->a.dlq), v);
		else if (strcmp(t, "maxrc") == 0)
			cfg->a.max_receive_count = n;
		else if (strcmp(t, "parts") == 0)
			cfg->a.partitions = n;
		else if (strcmp(t, "created") == 0)
			cfg->a.created_ms = n;
		else if (strcmp(t, "modified") == 0)
			cfg->a.modified_ms = n;
		else if (strcmp(t, "key") == 0) {
			if (sodium_hex2bin(cfg->key, sizeof(cfg->key), v,
			                   strlen(v), NULL, &klen, NULL) != 0)
				klen = 0;
		} else
			found--;
	}
	if (klen != sizeof(cfg->key) || found < 13 ||
	    (cfg->a.fifo && cfg->a.partitions < 1)) {
		return mesh__seterr(MESH_EBROKER,
		                    "queue '%s': its stream's attributes are "
		                    "damaged",
		                    name);
	}
	return MESH_OK;
}

mesh_err
mesh__queue_cfg_decode(const char *desc, struct mesh_queue_attrs *a)
{
	struct qcfg cfg = {0};
	mesh_err err = cfg_decode("fuzz", desc, &cfg);

	*a = cfg.a;
	return err;
}

/* Read a queue's configuration. MESH_ENOTFOUND when there is no queue. */
static mesh_err
cfg_load(struct mesh_conn *c, const char *name, struct qcfg *cfg,
         struct qnames *n)
{
	jsStreamInfo *si = NULL;
	bool fifo;
	mesh_err err;

	if ((err = mesh_queue_name_check(name, &fifo)) != MESH_OK) {
		return err;
	}
	names_of(name, fifo, n);
	if ((err = mesh__stream_info(c, n->stream, "queue", name, &si)) !=
	    MESH_OK) {
		return err;
	}
	err = cfg_decode(name, si->Config->Description, cfg);
	jsStreamInfo_Destroy(si);
	return err;
}

static bool
attrs_same(const struct mesh_queue_attrs *x, const struct mesh_queue_attrs *y)
{
	return x->fifo == y->fifo &&
	       x->content_based_dedup == y->content_based_dedup &&
	       x->visibility_timeout_s == y->visibility_timeout_s &&
	       x->delay_s == y->delay_s && x->retention_s == y->retention_s &&
	       x->max_message_size == y->max_message_size &&
	       x->receive_wait_s == y->receive_wait_s &&
	       strcmp(x->dlq, y->dlq) == 0 &&
	       (x->dlq[0] == '\0' ||
	        x->max_receive_count == y->max_receive_count) &&
	       (!x->fifo || x->partitions == y->partitions);
}

/* ---- streams and consumers -----------------------------------------------
 */

static void
stream_config(jsStreamConfig *sc, const char *stream, const char **subject,
              const struct mesh_queue_attrs *a, const char *desc)
{
	jsStreamConfig_Init(sc);
	sc->Name = stream;
	sc->Subjects = subject;
	sc->SubjectsLen = 1;
	sc->Retention = js_WorkQueuePolicy;
	sc->Storage = js_FileStorage;
	sc->MaxAge = a->retention_s * 1000 * NS_PER_MS;
	sc->MaxMsgSize = (int32_t)(a->max_message_size + ENVELOPE_ROOM);
	sc->Duplicates = (int64_t)MESH_QUEUE_DEDUP_WINDOW_S * 1000 * NS_PER_MS;
	sc->AllowDirect = true;
	sc->Description = desc;
}

static int64_t
ack_wait_ns(const struct mesh_queue_attrs *a)
{
	/* A zero visibility timeout is a NAK at receive; AckWait must be
	 * positive, so it backs that up with a second. */
	int64_t s = a->visibility_timeout_s > 0 ? a->visibility_timeout_s : 1;

	return s * 1000 * NS_PER_MS;
}

static void
consumer_config(jsConsumerConfig *cc, const char *durable, const char *filter,
                int64_t ack_wait, int64_t max_ack_pending)
{
	jsConsumerConfig_Init(cc);
	cc->Durable = durable;
	cc->AckPolicy = js_AckExplicit;
	cc->AckWait = ack_wait;
	cc->MaxDeliver = -1;
	cc->MaxAckPending = max_ack_pending;
	cc->MaxWaiting = 4096;
	cc->FilterSubject = filter;
	cc->DeliverPolicy = js_DeliverAll;
}

/* Add or update the consumers of a queue's streams. */
static mesh_err
ensure_consumers(struct mesh_conn *c, const char *name, const struct qnames *n,
                 const struct mesh_queue_attrs *a, bool update)
{
	jsConsumerConfig cc;
	jsConsumerInfo *ci = NULL;
	jsErrCode jerr = 0;
	natsStatus s;
	int parts = a->fifo ? (int)a->partitions : 1;

	for (int p = 0; p < parts; p++) {
		char durable[16], filter[160];
		if (a->fifo) {
			snprintf(durable, sizeof(durable), "p%d", p);
			snprintf(filter, sizeof(filter), "%s.%d", n->subject,
			         p);
		}
		/* A FIFO partition has one message in flight: that is what
		 * keeps each of its groups in order. */
		consumer_config(&cc, a->fifo ? durable : RECEIVERS,
		                a->fifo ? filter : NULL, ack_wait_ns(a),
		                a->fifo ? 1 : 120000);
		s = update ? js_UpdateConsumer(&ci, mesh_conn_js(c), n->stream,
		                               &cc, NULL, &jerr)
		           : js_AddConsumer(&ci, mesh_conn_js(c), n->stream,
		                            &cc, NULL, &jerr);
		jsConsumerInfo_Destroy(ci);
		ci = NULL;
		if (s != NATS_OK) {
			return mesh_err_nats(s, jerr, "queue '%s': consumer",
			                     name);
		}
	}
	if (!update) {
		consumer_config(&cc, MOVER, NULL, 30 * 1000 * NS_PER_MS,
		                100000);
		s = js_AddConsumer(&ci, mesh_conn_js(c), n->dstream, &cc, NULL,
		                   &jerr);
		jsConsumerInfo_Destroy(ci);
		if (s != NATS_OK) {
			return mesh_err_nats(
			        s, jerr, "queue '%s': delay consumer", name);
		}
	}
	return MESH_OK;
}

static mesh_err
check_dlq(struct mesh_conn *c, const char *name,
          const struct mesh_queue_attrs *a)
{
	struct qcfg dcfg;
	struct qnames dn;
	mesh_err err;

	if (a->dlq[0] == '\0') {
		return MESH_OK;
	}
	err = cfg_load(c, a->dlq, &dcfg, &dn);
	if (err == MESH_ENOTFOUND) {
		return mesh__seterr(MESH_ENOTFOUND,
		                    "queue '%s': dead-letter queue '%s' does "
		                    "not exist; create it first",
		                    name, a->dlq);
	}
	return err;
}

mesh_err
mesh_queue_create(struct mesh_conn *c, const char *name,
                  const struct mesh_queue_attrs *attrs)
{
	struct qcfg cfg = {.a = *attrs}, old;
	struct qnames n;
	jsStreamConfig sc;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	const char *subj[1];
	char *desc = NULL;
	natsStatus s;
	mesh_err err;

	if ((err = mesh_queue_attrs_check(name, attrs)) != MESH_OK) {
		return err;
	}
	err = cfg_load(c, name, &old, &n);
	if (err == MESH_OK) {
		if (attrs_same(&old.a, attrs)) {
			return MESH_OK;
		}
		return mesh__seterr(MESH_EEXIST,
		                    "queue '%s': already exists with other "
		                    "attributes (use set-attributes to change "
		                    "them)",
		                    name);
	}
	if (err != MESH_ENOTFOUND) {
		return err;
	}
	if ((err = check_dlq(c, name, attrs)) != MESH_OK) {
		return err;
	}
	randombytes_buf(cfg.key, sizeof(cfg.key));
	cfg.a.created_ms = cfg.a.modified_ms = now_ms();
	if ((desc = cfg_encode(name, &cfg)) == NULL) {
		return mesh__seterr(MESH_ENOMEM, "queue '%s'", name);
	}
	/* The delay stream first: the main stream, which makes the queue
	 * exist, comes last, and a failure removes what was made. */
	subj[0] = n.dsubject;
	stream_config(&sc, n.dstream, subj, &cfg.a, NULL);
	s = js_AddStream(&si, mesh_conn_js(c), &sc, NULL, &jerr);
	jsStreamInfo_Destroy(si);
	si = NULL;
	if (s != NATS_OK) {
		err = mesh_err_nats(s, jerr, "queue '%s': delay stream", name);
		goto fail;
	}
	subj[0] = n.filter;
	stream_config(&sc, n.stream, subj, &cfg.a, desc);
	s = js_AddStream(&si, mesh_conn_js(c), &sc, NULL, &jerr);
	jsStreamInfo_Destroy(si);
	if (s != NATS_OK) {
		err = mesh_err_nats(s, jerr, "queue '%s': stream", name);
		goto fail;
	}
	if ((err = ensure_consumers(c, name, &n, &cfg.a, false)) != MESH_OK) {
		goto fail;
	}
	free(desc);
	return MESH_OK;
fail:
	js_DeleteStream(mesh_conn_js(c), n.stream, NULL, NULL);
	js_DeleteStream(mesh_conn_js(c), n.dstream, NULL, NULL);
	free(desc);
	return err;
}

mesh_err
mesh_queue_set_attrs(struct mesh_conn *c, const char *name,
                     const struct mesh_queue_attrs *attrs)
{
	struct qcfg cfg;
	struct qnames n;
	jsStreamConfig sc;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	const char *subj[1];
	char *desc;
	natsStatus s;
	mesh_err err;

	if ((err = cfg_load(c, name, &cfg, &n)) != MESH_OK) {
		return err;
	}
	if (attrs->fifo != cfg.a.fifo) {
		return mesh__seterr(MESH_EINVAL,
		                    "queue '%s': FifoQueue cannot be changed",
		                    name);
	}
	if (attrs->fifo && attrs->partitions != cfg.a.partitions) {
		return mesh__seterr(MESH_EINVAL,
		                    "queue '%s': partitions cannot be changed",
		                    name);
	}
	if ((err = mesh_queue_attrs_check(name, attrs)) != MESH_OK ||
	    (err = check_dlq(c, name, attrs)) != MESH_OK) {
		return err;
	}
	{
		int64_t created = cfg.a.created_ms;
		cfg.a = *attrs;
		cfg.a.created_ms = created;
		cfg.a.modified_ms = now_ms();
	}
	if ((desc = cfg_encode(name, &cfg)) == NULL) {
		return mesh__seterr(MESH_ENOMEM, "queue '%s'", name);
	}
	subj[0] = n.dsubject;
	stream_config(&sc, n.dstream, subj, &cfg.a, NULL);
	s = js_UpdateStream(&si, mesh_conn_js(c), &sc, NULL, &jerr);
	jsStreamInfo_Destroy(si);
	si = NULL;
	if (s == NATS_OK) {
		subj[0] = n.filter;
		stream_config(&sc, n.stream, subj, &cfg.a, desc);
		s = js_UpdateStream(&si, mesh_conn_js(c), &sc, NULL, &jerr);
		jsStreamInfo_Destroy(si);
	}
	free(desc);
	if (s != NATS_OK) {
		return mesh_err_nats(s, jerr, "queue '%s': updating", name);
	}
	return ensure_consumers(c, name, &n, &cfg.a, true);
}

/* Delete, or purge, a queue's two streams. */
static mesh_err
both_streams(struct mesh_conn *c, const char *name, bool purge)
{
	struct qcfg cfg;
	struct qnames n;
	jsErrCode jerr = 0;
	natsStatus s;
	mesh_err err;

	if ((err = cfg_load(c, name, &cfg, &n)) != MESH_OK) {
		return err;
	}
	/* The main stream first: once it is gone, the queue is. */
	s = purge ? js_PurgeStream(mesh_conn_js(c), n.stream, NULL, &jerr)
	          : js_DeleteStream(mesh_conn_js(c), n.stream, NULL, &jerr);
	if (s == NATS_OK) {
		s = purge ? js_PurgeStream(mesh_conn_js(c), n.dstream, NULL,
		                           &jerr)
		          : js_DeleteStream(mesh_conn_js(c), n.dstream, NULL,
		                            &jerr);
		if (!purge && s != NATS_OK) {
			s = NATS_OK; /* a queue made half-way has no delays */
		}
	}
	if (s != NATS_OK) {
		return mesh_err_nats(s, jerr, "queue '%s': %s", name,
		                     purge ? "purging" : "deleting");
	}
	return MESH_OK;
}

mesh_err
mesh_queue_delete(struct mesh_conn *c, const char *name)
{
	return both_streams(c, name, false);
}

mesh_err
mesh_queue_purge(struct mesh_conn *c, const char *name)
{
	return both_streams(c, name, true);
}

void
mesh_queue_list_free(char **names, size_t n)
{
	mesh__names_free(names, n);
}

mesh_err
mesh_queue_list(struct mesh_conn *c, const char *prefix, char ***names,
                size_t *n)
{
	return mesh__stream_names(c, "queue", "MQ_", "MF_", prefix, names, n);
}

static mesh_err
stream_msgs(struct mesh_conn *c, const char *stream, uint64_t *msgs)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s =
	        js_GetStreamInfo(&si, mesh_conn_js(c), stream, NULL, &jerr);

	if (s != NATS_OK) {
		return mesh_err_nats(s, jerr, "stream %s", stream);
	}
	*msgs = si->State.Msgs;
	jsStreamInfo_Destroy(si);
	return MESH_OK;
}

mesh_err
mesh_queue_info(struct mesh_conn *c, const char *name,
                struct mesh_queue_info *out)
{
	struct qcfg cfg;
	struct qnames n;
	uint64_t stored = 0, in_flight = 0, delayed = 0;
	int parts;
	mesh_err err;

	if ((err = cfg_load(c, name, &cfg, &n)) != MESH_OK ||
	    (err = stream_msgs(c, n.stream, &stored)) != MESH_OK) {
		return err;
	}
	stream_msgs(c, n.dstream, &delayed);
	parts = cfg.a.fifo ? (int)cfg.a.partitions : 1;
	for (int p = 0; p < parts; p++) {
		char durable[16];
		jsConsumerInfo *ci = NULL;
		jsErrCode jerr = 0;
		natsStatus s;
		snprintf(durable, sizeof(durable), "p%d", p);
		s = js_GetConsumerInfo(&ci, mesh_conn_js(c), n.stream,
		                       cfg.a.fifo ? durable : RECEIVERS, NULL,
		                       &jerr);
		if (s != NATS_OK) {
			return mesh_err_nats(s, jerr, "queue '%s': consumer",
			                     name);
		}
		in_flight += (uint64_t)ci->NumAckPending;
		jsConsumerInfo_Destroy(ci);
	}
	out->attrs = cfg.a;
	out->not_visible = in_flight < stored ? in_flight : stored;
	out->visible = stored - out->not_visible;
	out->delayed = delayed;
	return MESH_OK;
}

/* ---- open queues and the request pipeline --------------------------------
 */

mesh_err
mesh_queue_open(struct mesh_conn *c, const char *name, struct mesh_queue **out)
{
	struct mesh_queue *q = calloc(1, sizeof(*q));
	mesh_err err;

	if (q == NULL) {
		return mesh__seterr(MESH_ENOMEM, "queue '%s'", name);
	}
	q->c = c;
	if ((err = cfg_load(c, name, &q->cfg, &q->n)) != MESH_OK) {
		free(q);
		return err;
	}
	copy_str(q->name, sizeof(q->name), name);
	if (q->cfg.a.dlq[0] != '\0') {
		err = cfg_load(c, q->cfg.a.dlq, &q->dlq_cfg, &q->dlq_n);
		if (err == MESH_OK) {
			q->have_dlq = true;
		} else if (err != MESH_ENOTFOUND) {
			free(q);
			return err;
		}
	}
	if ((err = mesh__rpc_open(c, "queue", &q->rpc)) != MESH_OK) {
		mesh_queue_close(q);
		return err;
	}
	if (q->cfg.a.fifo) {
		q->locks = plocks_of(c, q->n.stream);
	}
	*out = q;
	return MESH_OK;
}

void
mesh_queue_close(struct mesh_queue *q)
{
	if (q == NULL) {
		return;
	}
	mesh__rpc_close(q->rpc);
	if (q->ledger_sub != NULL) {
		natsSubscription_Unsubscribe(q->ledger_sub);
		natsSubscription_Destroy(q->ledger_sub);
	}
	free(q->ledger);
	free(q);
}

const struct mesh_queue_attrs *
mesh_queue_attrs(const struct mesh_queue *q)
{
	return &q->cfg.a;
}

const char *
mesh_queue_name(const struct mesh_queue *q)
{
	return q->name;
}

static const char *
req_reply(struct mesh_queue *q, char *buf, size_t size)
{
	return mesh__rpc_reply(q->rpc, buf, size);
}

struct from_consumers {
	const char *stream;
	const char *const *consumers;
	size_t n;
	struct mesh_queue *q;
};

/* A reply that is a delivered message answers the pull of the consumer
 * named in its ack subject. */
static long
match_consumer(natsMsg *m, void *arg)
{
	const struct from_consumers *f = arg;

	for (size_t i = 0; f->consumers != NULL && i < f->n; i++) {
		if (from_consumer(m, f->stream, f->consumers[i])) {
			return (long)i;
		}
	}
	return -1;
}

static void
drop_hook(natsMsg *m, void *arg)
{
	drop_reply(((struct from_consumers *)arg)->q, m);
}

/* rpc_many, where a reply that is a delivered message is matched to its
 * request by the consumer (consumers[i]) named in its ack subject. */
static mesh_err
rpc_many_from(struct mesh_queue *q, natsMsg **msgs, size_t n,
              int64_t timeout_ms, natsMsg **replies,
              const char *const *consumers)
{
	struct from_consumers f = {q->n.stream, consumers, n, q};
	struct mesh__rpc_hooks hooks = {match_consumer, drop_hook, &f};

	return mesh__rpc_many(q->rpc, msgs, n, timeout_ms, replies, &hooks);
}

/* A reply nobody waits for any more. A delivered message among them (it
 * came after its request was given up) is handed back at once, so that it
 * is not hidden for a whole visibility timeout. */
static void
drop_reply(struct mesh_queue *q, natsMsg *m)
{
	const char *ack = natsMsg_GetReply(m);

	if (ack != NULL && strncmp(ack, "$JS.ACK.", 8) == 0) {
		natsConnection_PublishString(mesh_conn_nats(q->c), ack,
		                             "-NAK");
	}
	natsMsg_Destroy(m);
}

/* Publish msgs[i] (their reply subjects are set here) and collect one
 * reply each into replies[i] (NULL when none came in time). Takes the
 * messages. */
static mesh_err
rpc_many(struct mesh_queue *q, natsMsg **msgs, size_t n, int64_t timeout_ms,
         natsMsg **replies)
{
	return rpc_many_from(q, msgs, n, timeout_ms, replies, NULL);
}

/* Make the message for a JetStream API request, with its reply. */
static mesh_err
api_msg(struct mesh_queue *q, const char *subject, const char *body,
        natsMsg **out)
{
	char reply[96];
	natsStatus s = natsMsg_Create(out, subject,
	                              req_reply(q, reply, sizeof(reply)), body,
	                              body ? (int)strlen(body) : 0);

	return s == NATS_OK ? MESH_OK : mesh_err_nats(s, 0, "%s", subject);
}

/* Pull up to batch messages from one consumer: no_wait, or waiting up to
 * expires_ms for the first. Appends to *out (capacity cap). */
static mesh_err
pull(struct mesh_queue *q, const char *stream, const char *consumer, int batch,
     int64_t expires_ms, natsMsg **out, size_t *n, size_t cap)
{
	natsConnection *nc = mesh_conn_nats(q->c);
	char subject[256], reply[96], body[96];
	uint64_t rid;
	int64_t deadline;
	int got = 0;
	natsStatus s;

	snprintf(subject, sizeof(subject), "$JS.API.CONSUMER.MSG.NEXT.%s.%s",
	         stream, consumer);
	rid = mesh__rpc_rid(q->rpc, req_reply(q, reply, sizeof(reply)));
	if (expires_ms > 0) {
		snprintf(body, sizeof(body),
		         "{\"batch\":%d,\"expires\":%" PRId64 "}", batch,
		         expires_ms * NS_PER_MS);
	} else {
		snprintf(body, sizeof(body), "{\"batch\":%d,\"no_wait\":true}",
		         batch);
	}
	s = natsConnection_PublishRequestString(nc, subject, reply, body);
	if (s != NATS_OK) {
		return mesh_err_nats(s, 0, "queue '%s': pull", q->name);
	}
	/* nats-server 2.9 may let a waiting pull expire without a 408; no
	 * message can come for it after its expiry, so wait a little past
	 * it and no longer. */
	deadline = mono_ms() + (expires_ms > 0 ? expires_ms + PULL_GRACE_MS
	                                       : RPC_TIMEOUT_MS);
	while (got < batch && *n < cap) {
		natsMsg *m = NULL;
		int64_t left = deadline - mono_ms();
		int st;
		if (left <= 0) {
			break;
		}
		if ((m = mesh__rpc_take(q->rpc, (size_t)(batch - got), true,
		                        deadline)) == NULL) {
			break;
		}
		/* Statuses come on our reply subject; messages keep their
		 * own subject, and their ack subject names the consumer. */
		if ((st = mesh__rpc_status(m)) != 0 &&
		    mesh__rpc_rid(q->rpc, natsMsg_GetSubject(m)) != rid) {
			natsMsg_Destroy(m);
			continue;
		}
		if (st == 0 && !from_consumer(m, stream, consumer)) {
			drop_reply(q, m);
			continue;
		}
		if (st != 0) {
			natsMsg_Destroy(m);
			if (st == 100) {
				continue; /* heartbeat */
			}
			if (st == 503) { /* no responders */
				return mesh__seterr(
				        MESH_ENOTFOUND,
				        "queue '%s': its consumer is "
				        "gone (was the queue deleted?)",
				        q->name);
			}
			break; /* 404, 408, 409: the request is over */
		}
		out[(*n)++] = m;
		got++;
	}
	return MESH_OK;
}

/* ---- receipt handles ------------------------------------------------------
 */

static mesh_err
receipt_open(const struct mesh_queue *q, const char *text, struct receipt *r)
{
	uint8_t buf[1 + 8 + 200 + RECEIPT_TAG];
	uint8_t tag[RECEIPT_TAG];
	size_t len = 0;

	if (text == NULL || text[0] == '\0' || strlen(text) > 400 ||
	    sodium_base642bin(buf, sizeof(buf), text, strlen(text), NULL, &len,
	                      NULL,
	                      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
	    len < 9 + 10 + RECEIPT_TAG || buf[0] != 1) {
		return mesh__seterr(
		        MESH_EINVAL,
		        "queue '%s': malformed receipt handle '%.40s'",
		        q->name, text ? text : "");
	}
	len -= RECEIPT_TAG;
	crypto_generichash(tag, sizeof(tag), buf, len, q->cfg.key,
	                   sizeof(q->cfg.key));
	if (sodium_memcmp(tag, buf + len, RECEIPT_TAG) != 0) {
		return mesh__seterr(
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
	if (!ack_parse(r->ack, r) || strcmp(r->stream, q->n.stream) != 0) {
		return mesh__seterr(MESH_EINVAL,
		                    "queue '%s': receipt handle names another "
		                    "queue",
		                    q->name);
	}
	return MESH_OK;
}

/* For the fuzz tests: the receipt handles of a queue without a broker. */
mesh_err
mesh__queue_receipt_check(const char *name, const uint8_t key[32],
                          char *receipt, size_t size)
{
	struct mesh_queue q = {0};
	struct receipt r;
	bool fifo = false;
	mesh_err err;

	snprintf(q.name, sizeof(q.name), "%s", name);
	memcpy(q.cfg.key, key, sizeof(q.cfg.key));
	mesh_queue_name_check(name, &fifo);
	names_of(name, fifo, &q.n);
	if ((err = mesh__queue_seal(&q, receipt, size)) != MESH_OK) {
		return err;
	}
	return receipt_open(&q, receipt, &r);
}

/* The ledger of visibility changes: one entry per message whose
 * visibility was changed, "<delivery sequence> <deadline ms>". A receipt is
 * current while its deadline (or its changed one) has not passed. */
static mesh_err
ledger_ensure(struct mesh_queue *q)
{
	jsStreamConfig sc;
	const char *subj[] = {LEDGER_PREFIX ">"};

	jsStreamConfig_Init(&sc);
	sc.Name = LEDGER_STREAM;
	sc.Subjects = subj;
	sc.SubjectsLen = 1;
	sc.Storage = js_FileStorage;
	sc.MaxMsgsPerSubject = 1;
	sc.MaxAge = (int64_t)(MAX_VISIBILITY_S + 3600) * 1000 * NS_PER_MS;
	sc.AllowDirect = true;
	return mesh_stream_ensure(q->c, &sc);
}

static void
ledger_put(struct mesh_queue *q, uint64_t sseq, uint64_t dseq,
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
		ledger_put(q, strtoull(dot + 1, NULL, 10), dseq, dl);
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

/* Open n receipts into r[], judging each into res[]. */
static void
receipts_open(struct mesh_queue *q, const char *const *texts, size_t n,
              struct receipt *r, struct mesh_queue_result *res)
{
	for (size_t i = 0; i < n; i++) {
		res[i].err = receipt_open(q, texts[i], &r[i]);
		if (res[i].err != MESH_OK) {
			copy_str(res[i].error, sizeof(res[i].error),
			         mesh_errdetail());
		}
	}
	receipts_current(q, r, n, res);
}

/* ---- batch-level checks --------------------------------------------------
 */

/* ---- send ----------------------------------------------------------------
 */

/* Validate one entry and build its NATS message. */
static mesh_err
send_prepare(struct mesh_queue *q, const struct mesh_queue_entry *e,
             const char *wire_id, natsMsg **out, char message_id[64])
{
	const struct mesh_queue_attrs *a = &q->cfg.a;
	struct mesh_event *copy = NULL;
	const struct mesh_event *ev = e->event;
	char dedup[MESH_QUEUE_ID_MAX + 1] = "";
	char subject[200], not_before[32], reply[96];
	char what[MESH_QUEUE_NAME_MAX + 16];
	int64_t delay = e->delay_s < 0 ? a->delay_s : e->delay_s;
	size_t size, n_attrs;
	natsMsg *m = NULL;
	natsStatus s = NATS_OK;
	mesh_err err;

	if (ev == NULL) {
		return mesh__seterr(MESH_EINVAL, "queue '%s': no message",
		                    q->name);
	}
	size = mesh__message_size(ev, &n_attrs);
	if (size > (size_t)a->max_message_size) {
		return mesh__seterr(
		        MESH_ETOOBIG,
		        "queue '%s': message of %zu bytes is over "
		        "the queue's MaximumMessageSize of %" PRId64 " bytes",
		        q->name, size, a->max_message_size);
	}
	if (n_attrs > MESH_QUEUE_MAX_ATTRS) {
		return mesh__seterr(MESH_EINVAL,
		                    "queue '%s': %zu message attributes, more "
		                    "than %d",
		                    q->name, n_attrs, MESH_QUEUE_MAX_ATTRS);
	}
	if (e->delay_s > 900) {
		return mesh__seterr(MESH_EINVAL,
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
		if ((err = mesh__fifo_ids(what, ev, e->group_id, e->dedup_id,
		                          a->content_based_dedup, q->cfg.key,
		                          sizeof(q->cfg.key), dedup,
		                          message_id)) != MESH_OK) {
			return err;
		}
		if (e->delay_s >= 0) {
			return mesh__seterr(
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
			return mesh__seterr(
			        MESH_EINVAL,
			        "queue '%s': MessageDeduplicationId "
			        "is for FIFO queues only",
			        q->name);
		}
		copy_str(message_id, 64, mesh_event_id(ev));
	}
	if (delay > 0) {
		copy_str(subject, sizeof(subject), q->n.dsubject);
	} else {
		target_subject(&q->n, &q->cfg, e->group_id, subject,
		               sizeof(subject));
	}
	err = mesh_wire_msg(subject, req_reply(q, reply, sizeof(reply)), ev,
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
	if (s != NATS_OK) {
		natsMsg_Destroy(m);
		return mesh_err_nats(s, 0, "queue '%s': message", q->name);
	}
	*out = m;
	return MESH_OK;
}

static mesh_err
pub_ack(struct mesh_queue *q, natsMsg *r, uint64_t *seq, bool *dup)
{
	char what[MESH_QUEUE_NAME_MAX + 16];

	snprintf(what, sizeof(what), "queue '%s'", q->name);
	return mesh__pub_ack(r, what, seq, dup);
}

static mesh_err
batch_check(const struct mesh_queue *q, const char *const *ids, size_t n,
            size_t stride)
{
	char what[MESH_QUEUE_NAME_MAX + 16];

	snprintf(what, sizeof(what), "queue '%s'", q->name);
	return mesh__batch_check(what, ids, n, stride);
}

static void
sent_fail(struct mesh_queue_sent *r, mesh_err err)
{
	r->err = err;
	copy_str(r->error, sizeof(r->error), mesh_errdetail());
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
	char reply[96];
	natsMsg *m = NULL;
	natsStatus s;

	if (q->cfg.a.fifo || q->cfg.a.delay_s > 0 ||
	    natsMsg_GetDataLength(src) > q->cfg.a.max_message_size ||
	    natsMsgHeader_Get(src, MESH_HDR_CE_ID, &id) != NATS_OK) {
		return false;
	}
	s = natsMsg_Create(&m, q->n.subject,
	                   req_reply(q, reply, sizeof(reply)),
	                   natsMsg_GetData(src), natsMsg_GetDataLength(src));
	for (size_t i = 0; s == NATS_OK && i < sizeof(keep) / sizeof(*keep);
	     i++) {
		const char *v = NULL;
		if (natsMsgHeader_Get(src, keep[i], &v) == NATS_OK) {
			s = natsMsgHeader_Set(m, keep[i], v);
		}
	}
	if (s == NATS_OK) {
		s = natsMsgHeader_Set(m, MESH_HDR_MSG_ID, wire_id);
	}
	if (s != NATS_OK) {
		natsMsg_Destroy(m);
		return false;
	}
	copy_str(message_id, 64, id);
	*out = m;
	return true;
}

/* Send n prepared-here messages in one round trip; outcomes in out[]. */
static void
send_many(struct mesh_queue *q, const struct mesh_queue_entry *e,
          const char *const *wire_ids, natsMsg *const *srcs, size_t n,
          struct mesh_queue_sent *out)
{
	natsMsg *msgs[FORWARD_CHUNK], *replies[FORWARD_CHUNK];
	size_t idx[FORWARD_CHUNK], k = 0;
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
			          mesh__seterr(MESH_EINVAL,
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
	if (k == 0) {
		return;
	}
	if ((err = rpc_many(q, msgs, k, RPC_TIMEOUT_MS, replies)) != MESH_OK) {
		for (size_t i = 0; i < k; i++) {
			sent_fail(&out[idx[i]], err);
		}
		return;
	}
	for (size_t i = 0; i < k; i++) {
		struct mesh_queue_sent *r = &out[idx[i]];
		err = pub_ack(q, replies[i], &r->sequence, &r->duplicate);
		if (err != MESH_OK) {
			sent_fail(r, err);
		}
		natsMsg_Destroy(replies[i]);
	}
}

mesh_err
mesh_queue_send_batch(struct mesh_queue *q, const struct mesh_queue_entry *e,
                      size_t n, struct mesh_queue_sent *out)
{
	size_t total = 0, na;
	mesh_err err;

	if ((err = batch_check(q, &e[0].id, n, sizeof(*e))) != MESH_OK) {
		return err;
	}
	for (size_t i = 0; i < n; i++) {
		total += e[i].event ? mesh__message_size(e[i].event, &na) : 0;
	}
	/* One entry is judged alone, below, as SendMessage does. */
	if (n > 1 && total > (size_t)q->cfg.a.max_message_size) {
		return mesh__seterr(
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
		return mesh__seterr(out->err, "%s", out->error);
	}
	return MESH_OK;
}

/* ---- moving messages: delayed ones in, dead letters out ------------------
 */

/* Publish a stored message's body and headers to `subject` with a new
 * de-duplication id, leaving out the headers in `drop` and adding `add`
 * (pairs). Waits for the stream's acknowledgement. */
static mesh_err
republish(struct mesh_queue *q, natsMsg *src, const char *subject,
          const char *msg_id, const char *const *drop, const char *const *add)
{
	natsMsg *m = NULL, *ack = NULL;
	const char **keys = NULL;
	char reply[96];
	int nk = 0;
	uint64_t seq;
	bool dup;
	natsStatus s;
	mesh_err err;

	s = natsMsg_Create(&m, subject, req_reply(q, reply, sizeof(reply)),
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
			const char *v = hdr(src, keys[k]);
			s = natsMsgHeader_Set(m, keys[k], v ? v : "");
		}
	}
	free((void *)keys);
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
	if ((err = rpc_many(q, &m, 1, RPC_TIMEOUT_MS, &ack)) != MESH_OK) {
		return err;
	}
	err = pub_ack(q, ack, &seq, &dup);
	natsMsg_Destroy(ack);
	return err;
}

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
				copy_str(res[i].error, sizeof(res[i].error),
				         mesh_errdetail());
			}
		}
	}
}

static mesh_err
ack_one(struct mesh_queue *q, const char *ack, const char *body)
{
	struct mesh_queue_result r = {MESH_OK, ""};

	ack_many(q, &ack, body, 1, &r);
	return r.err == MESH_OK ? MESH_OK : mesh__seterr(r.err, "%s", r.error);
}

/* Move a delivered message to the dead-letter queue, then acknowledge it
 * here. A crash between the two leaves it here, and moving it again is
 * dropped there as a duplicate. */
static mesh_err
dead_letter(struct mesh_queue *q, natsMsg *m, uint64_t sseq, uint64_t receives,
            const char *ack, const char *reason)
{
	char subject[200], id[160], count[24];
	const char *drop[] = {HDR_NOT_BEFORE, HDR_DLQ_SOURCE, HDR_DLQ_REASON,
	                      HDR_DLQ_COUNT, NULL};
	const char *add[] = {
	        HDR_DLQ_SOURCE, q->name, HDR_DLQ_REASON, reason, HDR_DLQ_COUNT,
	        count,          NULL};
	mesh_err err;

	if (!q->have_dlq) {
		return mesh__seterr(MESH_EINVAL,
		                    "queue '%s': has no dead-letter queue%s%s",
		                    q->name,
		                    q->cfg.a.dlq[0] ? " (missing: " : "",
		                    q->cfg.a.dlq[0] ? q->cfg.a.dlq : "");
	}
	snprintf(count, sizeof(count), "%" PRIu64, receives);
	snprintf(id, sizeof(id), "dlq:%s:%" PRIu64, q->n.stream, sseq);
	target_subject(&q->dlq_n, &q->dlq_cfg, hdr(m, MESH_HDR_GROUP), subject,
	               sizeof(subject));
	if ((err = republish(q, m, subject, id, drop, add)) != MESH_OK) {
		return err;
	}
	return ack_one(q, ack, "+ACK");
}

/* Move delayed messages whose time has come into the queue. Rate limited
 * per open queue; "receivable within one second after the delay". */
static mesh_err
release_due(struct mesh_queue *q)
{
	natsMsg *got[64];
	size_t n = 0;
	int64_t now = now_ms();
	mesh_err err;

	if (mono_ms() < q->next_release_ms) {
		return MESH_OK;
	}
	q->next_release_ms = mono_ms() + RELEASE_EVERY_MS;
	err = pull(q, q->n.dstream, MOVER, 64, 0, got, &n, 64);
	for (size_t i = 0; i < n; i++) {
		const char *nb = hdr(got[i], HDR_NOT_BEFORE);
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
		if (!ack_parse(natsMsg_GetReply(got[i]), &meta)) {
			natsMsg_Destroy(got[i]);
			continue;
		}
		snprintf(id, sizeof(id), "mv:%s:%" PRIu64, q->n.dstream,
		         meta.sseq);
		target_subject(&q->n, &q->cfg, hdr(got[i], MESH_HDR_GROUP),
		               subject, sizeof(subject));
		/* A FIFO message keeps its de-duplication id as the id. */
		if (q->cfg.a.fifo && hdr(got[i], MESH_HDR_DEDUP) != NULL) {
			snprintf(id, sizeof(id), "%s",
			         hdr(got[i], MESH_HDR_DEDUP));
		}
		if (republish(q, got[i], subject, id, drop, NULL) == MESH_OK) {
			ack_one(q, natsMsg_GetReply(got[i]), "+ACK");
		}
		natsMsg_Destroy(got[i]);
	}
	return err;
}

/* ---- receive -------------------------------------------------------------
 */

void
mesh_queue_msgs_free(struct mesh_queue_msg *msgs, size_t n)
{
	for (size_t i = 0; msgs != NULL && i < n; i++) {
		mesh_event_free(msgs[i].event);
	}
	free(msgs);
}

/* Turn a stored message into an event: ours decode; anything else that a
 * foreign client put on the subject is carried as its bytes. */
static mesh_err
msg_event(struct mesh_queue *q, natsMsg *m, uint64_t sseq,
          struct mesh_event **out)
{
	const char *ct = hdr(m, MESH_HDR_CONTENT_TYPE);
	struct mesh_event *ev;
	const char *id = hdr(m, MESH_HDR_MSG_ID);
	char fallback[128];
	mesh_err err;

	if (ct != NULL && strcmp(ct, MESH_EVENT_CONTENT_TYPE) == 0) {
		return mesh_wire_decode(m, SIZE_MAX, out);
	}
	if ((err = mesh_event_new("evmesh.raw", "nats", &ev)) != MESH_OK) {
		return err;
	}
	snprintf(fallback, sizeof(fallback), "%s-%" PRIu64, q->n.stream, sseq);
	if ((err = mesh_event_set_id(ev, id ? id : fallback)) != MESH_OK ||
	    (err = mesh_event_set_binary(ev, natsMsg_GetData(m),
	                                 (size_t)natsMsg_GetDataLength(m))) !=
	            MESH_OK) {
		mesh_event_free(ev);
		return err;
	}
	*out = ev;
	return MESH_OK;
}

static void
msg_fill(natsMsg *m, struct mesh_queue_msg *out)
{
	copy_str(out->group_id, sizeof(out->group_id), hdr(m, MESH_HDR_GROUP));
	copy_str(out->dedup_id, sizeof(out->dedup_id), hdr(m, MESH_HDR_DEDUP));
	copy_str(out->dlq_source, sizeof(out->dlq_source),
	         hdr(m, HDR_DLQ_SOURCE));
	copy_str(out->dlq_reason, sizeof(out->dlq_reason),
	         hdr(m, HDR_DLQ_REASON));
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

		if (ack == NULL || !ack_parse(ack, &meta)) {
			continue;
		}
		if (a->dlq[0] != '\0' &&
		    meta.delivered > (uint64_t)a->max_receive_count) {
			char reason[64];
			snprintf(reason, sizeof(reason),
			         "maxReceiveCount %" PRId64 " exceeded",
			         a->max_receive_count);
			if (dead_letter(q, m, meta.sseq, meta.delivered - 1,
			                ack, reason) == MESH_OK) {
				continue;
			}
			/* The dead-letter queue is gone or refused it: hand
			 * the message out rather than hide it again. */
		}
		memset(r, 0, sizeof(*r));
		if (msg_event(q, m, meta.sseq, &r->event) != MESH_OK) {
			/* Unreadable even as bytes: out of memory. */
			err = MESH_ENOMEM;
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
			receipt_make(q, ack, t_request + vis * 1000,
			             r->receipt, sizeof(r->receipt));
		}
		plock_set(q, meta.consumer, t_request + vis * 1000);
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
		(*n_out)++;
	}
	if (nak) {
		natsConnection_Flush(mesh_conn_nats(q->c));
	}
	/* Together: cnats hands each to its collector thread, woken once
	 * for the lot rather than once for each. */
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
			if ((err = api_msg(q, subject,
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
		if ((err = rpc_many_from(q, reqs, (size_t)k, FIFO_PULL_WAIT_MS,
		                         replies, consumers)) != MESH_OK) {
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
				plock_set(q, names[i], 0);
			}
		}
	}
	return MESH_OK;
}

/* Wait up to ms for a message to be published to a FIFO queue. */
static void
fifo_wait(struct mesh_queue *q, natsSubscription **watch, int64_t ms)
{
	natsMsg *m = NULL;

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
		return mesh__seterr(MESH_EINVAL,
		                    "queue '%s': WaitTimeSeconds %d is out of "
		                    "range 0-20",
		                    q->name, wait_s);
	}
	if (visibility_s > MAX_VISIBILITY_S) {
		free(got);
		return mesh__seterr(MESH_EINVAL,
		                    "queue '%s': VisibilityTimeout %" PRId64
		                    " is out of range 0-%d",
		                    q->name, visibility_s, MAX_VISIBILITY_S);
	}
	if (got == NULL || (out = calloc((size_t)max, sizeof(*out))) == NULL) {
		free(got);
		return mesh__seterr(MESH_ENOMEM, "queue '%s'", q->name);
	}
	wait_ms = (wait_s < 0 ? q->cfg.a.receive_wait_s : wait_s) * 1000;
	deadline = mono_ms() + wait_ms;
	for (;;) {
		int64_t left = deadline - mono_ms();
		if ((err = release_due(q)) != MESH_OK) {
			break;
		}
		t_request = now_ms();
		if (q->cfg.a.fifo) {
			err = fifo_pull(q, max - (int)nout, got, &ngot);
		} else {
			err = pull(q, q->n.stream, RECEIVERS, max - (int)nout,
			           0, got, &ngot, (size_t)max);
			if (err == MESH_OK && ngot == 0 && left > 0) {
				/* Long poll for the first message, in slices
				 * so that delayed messages come due. */
				err = pull(q, q->n.stream, RECEIVERS, 1,
				           left < POLL_SLICE_MS
				                   ? left
				                   : POLL_SLICE_MS,
				           got, &ngot, (size_t)max);
				if (err == MESH_OK && ngot == 1 && max > 1) {
					err = pull(q, q->n.stream, RECEIVERS,
					           max - 1, 0, got, &ngot,
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
		return mesh__seterr(
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
		return mesh__seterr(
		        MESH_EINVAL,
		        "queue '%s': %d messages at once, not 1-%d", q->name,
		        max, FORWARD_CHUNK);
	}
	return receive(q, max, wait_s, -1, true, msgs, n);
}

/* ---- delete, change visibility, dead-letter ------------------------------
 */

static mesh_err
batch_result(struct mesh_queue_result *r)
{
	return r->err == MESH_OK ? MESH_OK
	                         : mesh__seterr(r->err, "%s", r->error);
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
		return mesh__seterr(MESH_ENOMEM, "queue '%s'", q->name);
	}
	memset(res, 0, n * sizeof(*res));
	receipts_open(q, receipts, n, r, res);
	for (size_t i = 0; i < n; i++) {
		acks[i] = r[i].ack;
	}
	ack_many(q, acks, "+ACK", n, res);
	for (size_t i = 0; i < n; i++) {
		if (res[i].err == MESH_OK) {
			plock_set(q, r[i].consumer, 0);
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

	if ((err = batch_check(q, ids, n, sizeof(*ids))) != MESH_OK) {
		return err;
	}
	return delete_many(q, receipts, n, res);
}

/* A raw receipt "@<deadline ms>@<ack subject>": its ack subject, or NULL
 * (and *deadline_ms). */
static const char *
raw_receipt(const char *text, int64_t *deadline_ms)
{
	char *end = NULL;

	if (text == NULL || text[0] != '@') {
		return NULL;
	}
	*deadline_ms = strtoll(text + 1, &end, 10);
	return end != NULL && *end == '@' ? end + 1 : NULL;
}

void
mesh__queue_ack_many(struct mesh_queue *q, const char *const *receipts,
                     size_t n)
{
	natsConnection *nc = mesh__conn_bulk(q->c);

	for (size_t i = 0; i < n; i++) {
		struct receipt r;
		int64_t deadline;
		const char *ack = raw_receipt(receipts[i], &deadline);
		if (ack == NULL) {
			continue;
		}
		natsConnection_PublishString(nc, ack, "+ACK");
		/* A FIFO partition is free again once its message is gone. */
		if (q->locks != NULL && ack_parse(ack, &r)) {
			plock_set(q, r.consumer, 0);
		}
	}
}

mesh_err
mesh__queue_seal(struct mesh_queue *q, char *receipt, size_t size)
{
	int64_t deadline;
	const char *ack = raw_receipt(receipt, &deadline);
	char copy[256];

	if (ack == NULL) {
		return receipt[0] != '\0'
		               ? MESH_OK
		               : mesh__seterr(MESH_EINVAL,
		                              "queue '%s': no receipt handle",
		                              q->name);
	}
	/* receipt_make holds at most 200 bytes of ack subject, and
	 * sodium_bin2base64 aborts the process when its output does not fit
	 * in size: refuse such a receipt rather than die (found by fuzzing). */
	if (strlen(ack) >= sizeof(copy) || strlen(ack) > 200 ||
	    sodium_base64_ENCODED_LEN(9 + strlen(ack) + RECEIPT_TAG,
	                              sodium_base64_VARIANT_URLSAFE_NO_PADDING) >
	            size) {
		return mesh__seterr(MESH_EINVAL,
		                    "queue '%s': malformed receipt handle",
		                    q->name);
	}
	snprintf(copy, sizeof(copy), "%s", ack);
	receipt_make(q, copy, deadline, receipt, size);
	return MESH_OK;
}

mesh_err
mesh_queue_delete_message(struct mesh_queue *q, const char *receipt)
{
	const char *id = "single";
	struct mesh_queue_result r;
	mesh_err err = mesh_queue_delete_batch(q, &id, &receipt, 1, &r);

	return err != MESH_OK ? err : batch_result(&r);
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

	if ((err = batch_check(q, ids, n, sizeof(*ids))) != MESH_OK) {
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
	receipts_open(q, receipts, n, r, res);
	if ((err = ledger_ensure(q)) != MESH_OK) {
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
		if ((err = api_msg(q, subj, val, &m)) == MESH_OK &&
		    (err = rpc_many(q, &m, 1, RPC_TIMEOUT_MS, &reply)) ==
		            MESH_OK) {
			uint64_t seq;
			bool dup;
			err = pub_ack(q, reply, &seq, &dup);
		}
		natsMsg_Destroy(reply);
		if (err == MESH_OK) {
			snprintf(body, sizeof(body),
			         "-NAK {\"delay\":%" PRId64 "}",
			         seconds[i] * 1000 * NS_PER_MS);
			err = ack_one(q, r[i].ack, body);
		}
		if (err == MESH_OK) {
			ledger_put(q, r[i].sseq, r[i].dseq, deadline);
			plock_set(q, r[i].consumer, deadline);
		}
		if (err != MESH_OK) {
			res[i].err = err;
			copy_str(res[i].error, sizeof(res[i].error),
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

	return err != MESH_OK ? err : batch_result(&r);
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

	receipts_open(q, &receipt, 1, &r, &res);
	if (res.err != MESH_OK) {
		return batch_result(&res);
	}
	s = js_GetMsg(&m, mesh_conn_js(q->c), q->n.stream, r.sseq, NULL,
	              &jerr);
	if (s != NATS_OK) {
		return mesh_err_nats(s, jerr, "queue '%s': message %" PRIu64,
		                     q->name, r.sseq);
	}
	err = dead_letter(q, m, r.sseq, r.delivered, r.ack,
	                  reason && reason[0] ? reason
	                                      : "dead-lettered by "
	                                        "request");
	if (err == MESH_OK) {
		plock_set(q, r.consumer, 0);
	}
	natsMsg_Destroy(m);
	return err;
}

/* ---- peek and redrive ----------------------------------------------------
 */

/* The next stored message at or after *seq, by direct get; NULL at end. */
static natsMsg *
next_stored(struct mesh_conn *c, const struct qnames *n, uint64_t *seq)
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

static mesh_err
stored_to_msg(struct mesh_queue *q, natsMsg *m, struct mesh_queue_msg *r)
{
	memset(r, 0, sizeof(*r));
	r->sequence = natsMsg_GetSequence(m);
	r->sent_ms = natsMsg_GetTime(m) / NS_PER_MS;
	msg_fill(m, r);
	return msg_event(q, m, r->sequence, &r->event);
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
		return mesh__seterr(MESH_ENOMEM, "queue '%s'", q->name);
	}
	while (k < max && (m = next_stored(q->c, &q->n, &seq)) != NULL) {
		mesh_err err = stored_to_msg(q, m, &out[k]);
		natsMsg_Destroy(m);
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
	       (m = next_stored(c, &src->n, &seq)) != NULL) {
		struct mesh_queue_msg qm;
		struct mesh_queue *to = dst;
		char subject[200], id[160];
		const char *drop[] = {HDR_DLQ_SOURCE, HDR_DLQ_REASON,
		                      HDR_DLQ_COUNT, HDR_NOT_BEFORE, NULL};
		jsErrCode jerr = 0;
		natsStatus s;

		if ((err = stored_to_msg(src, m, &qm)) != MESH_OK) {
			natsMsg_Destroy(m);
			break;
		}
		if (!redrive_wanted(r, m, qm.event)) {
			mesh_event_free(qm.event);
			natsMsg_Destroy(m);
			continue;
		}
		mesh_event_free(qm.event);
		if (to == NULL) {
			if (qm.dlq_source[0] == '\0') {
				err = mesh__seterr(
				        MESH_EINVAL,
				        "queue '%s': message %" PRIu64
				        " records no source queue; "
				        "give --to",
				        dlq, qm.sequence);
				natsMsg_Destroy(m);
				break;
			}
			if (dst == NULL ||
			    strcmp(dst->name, qm.dlq_source) != 0) {
				mesh_queue_close(dst);
				dst = NULL;
				err = mesh_queue_open(c, qm.dlq_source, &dst);
				if (err != MESH_OK) {
					natsMsg_Destroy(m);
					break;
				}
			}
			to = dst;
		}
		target_subject(&to->n, &to->cfg, hdr(m, MESH_HDR_GROUP),
		               subject, sizeof(subject));
		snprintf(id, sizeof(id), "rd:%s:%" PRIu64, src->n.stream,
		         qm.sequence);
		if (to->cfg.a.fifo && hdr(m, MESH_HDR_DEDUP) != NULL) {
			snprintf(id, sizeof(id), "%s", hdr(m, MESH_HDR_DEDUP));
		}
		/* Published first, deleted after: a rerun re-publishes
		 * what was not deleted, and JetStream drops the copy. */
		err = republish(src, m, subject, id, drop, NULL);
		natsMsg_Destroy(m);
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
