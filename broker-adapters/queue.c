/* queue.c: SQS queues on JetStream: names, attributes and the
 * configuration kept in the stream's description, the streams and
 * consumers, creating, changing, deleting, listing, opening, and the
 * request pipeline an open queue's calls share (see queue_internal.h for
 * the other parts, mesh/queue.h for the mapping). The JetStream requests
 * that need pipelining (send batches, acknowledgements, FIFO partition
 * pulls) are made by hand on one inbox per open queue, so that a batch
 * costs one round trip. */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "queue_internal.h"

/* nats-server's JSConsumerReplicasExceedsStream. */

static void drop_reply(struct mesh_queue *q, natsMsg *m);

static uint32_t
partition_of(const char *group, int64_t partitions)
{
	uint64_t h = 1469598103934665603ULL;

	for (const unsigned char *p = (const unsigned char *)group; *p; p++) {
		h = (h ^ *p) * 1099511628211ULL;
	}
	return (uint32_t)(h % (uint64_t)partitions);
}

void
mesh__q_names_of(const char *name, bool fifo, struct qnames *n)
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

void
mesh__q_target_subject(const struct qnames *n, const struct qcfg *cfg,
                       const char *group, char *out, size_t size)
{
	if (cfg->a.fifo) {
		snprintf(out, size, "%s.%" PRIu32, n->subject,
		         partition_of(group ? group : "", cfg->a.partitions));
	} else {
		snprintf(out, size, "%s", n->subject);
	}
}

const char *
mesh__q_hdr(natsMsg *m, const char *key)
{
	const char *v = NULL;

	return natsMsgHeader_Get(m, key, &v) == NATS_OK ? v : NULL;
}

void
mesh__q_copy_str(char *dst, size_t size, const char *src)
{
	mesh__copy_str(dst, size, src);
}

/* Whether a delivered message comes from stream/consumer. */
static bool
from_consumer(natsMsg *m, const char *stream, const char *consumer)
{
	struct receipt r;

	return natsMsg_GetReply(m) != NULL &&
	       mesh__q_ack_parse(natsMsg_GetReply(m), &r) &&
	       strcmp(r.stream, stream) == 0 &&
	       strcmp(r.consumer, consumer) == 0;
}

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
	return mesh_name_check("queue", name, MESH_QUEUE_NAME_MAX, fifo);
}

static mesh_err
range(const char *queue, const char *attr, int64_t v, int64_t lo, int64_t hi)
{
	if (v < lo || v > hi) {
		return mesh_err_set(MESH_EINVAL,
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
		return mesh_err_set(
		        MESH_EINVAL, "queue '%s': %s", name,
		        a->fifo ? "a FIFO queue's name must end in "
		                  "'.fifo'"
		                : "a name ending in '.fifo' is for "
		                  "FIFO queues (--fifo)");
	}
	if (a->content_based_dedup && !a->fifo) {
		return mesh_err_set(MESH_EINVAL,
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
	            MESH_OK ||
	    (err = range(name, "Replicas", a->replicas, 0,
	                 MESH_REPLICAS_MAX)) != MESH_OK) {
		return err;
	}
	if (a->require_signers[0] != '\0') {
		char what[MESH_QUEUE_NAME_MAX + 16];
		char names[MESH_SIGNERS_MAX][MESH_IDENTITY_NAME_MAX + 1];
		size_t n;
		snprintf(what, sizeof(what), "queue '%s'", name);
		if ((err = mesh_signers_parse(what, a->require_signers, names,
		                              &n)) != MESH_OK) {
			return err;
		}
		if (a->fifo) {
			return mesh_err_set(
			        MESH_EINVAL,
			        "queue '%s': RequireSigners is for "
			        "standard queues only (a FIFO queue "
			        "replaces the event id a signature "
			        "covers)",
			        name);
		}
	}
	if (a->encrypt) {
		char what[MESH_QUEUE_NAME_MAX + 16];
		char names[MESH_READERS_MAX][MESH_IDENTITY_NAME_MAX + 1];
		size_t n;
		snprintf(what, sizeof(what), "queue '%s'", name);
		if ((err = mesh_readers_parse(what, a->readers, names, &n)) !=
		    MESH_OK) {
			return err;
		}
	}
	if (a->dlq[0] != '\0') {
		bool dfifo;
		if ((err = mesh_queue_name_check(a->dlq, &dfifo)) != MESH_OK) {
			return err;
		}
		if (dfifo != a->fifo) {
			return mesh_err_set(
			        MESH_EINVAL,
			        "queue '%s': its dead-letter queue "
			        "'%s' must be %s too",
			        name, a->dlq,
			        a->fifo ? "a FIFO queue" : "a standard queue");
		}
		if (strcmp(a->dlq, name) == 0) {
			return mesh_err_set(MESH_EINVAL,
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
	             " key=%s%s%s%s%s",
	             name, a->fifo, a->content_based_dedup,
	             a->visibility_timeout_s, a->delay_s, a->retention_s,
	             a->max_message_size, a->receive_wait_s, a->dlq,
	             a->max_receive_count, a->partitions, a->created_ms,
	             a->modified_ms, key,
	             a->require_signers[0] ? " signers=" : "",
	             a->require_signers,
	             a->encrypt ? " encrypt=1 readers=" : "",
	             a->encrypt ? a->readers : "") < 0) {
		return NULL;
	}
	return s;
}

static mesh_err
cfg_decode(const char *name, const char *desc, struct qcfg *cfg)
{
	char copy[2048], *save = NULL;
	int found = 0;
	size_t klen = 0;

	if (desc == NULL || strncmp(desc, "evmesh-queue v1 ", 16) != 0) {
		return mesh_err_set(MESH_EBROKER,
		                    "queue '%s': its stream holds no queue "
		                    "attributes (not made by evmesh?)",
		                    name);
	}
	mesh_queue_attrs_init(&cfg->a);
	mesh__q_copy_str(copy, sizeof(copy), desc + 16);
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
			mesh__q_copy_str(cfg->a.dlq, sizeof(cfg->a.dlq), v);
		else if (strcmp(t, "maxrc") == 0)
			cfg->a.max_receive_count = n;
		else if (strcmp(t, "parts") == 0)
			cfg->a.partitions = n;
		else if (strcmp(t, "created") == 0)
			cfg->a.created_ms = n;
		else if (strcmp(t, "modified") == 0)
			cfg->a.modified_ms = n;
		else if (strcmp(t, "signers") == 0) {
			mesh__q_copy_str(cfg->a.require_signers,
			                 sizeof(cfg->a.require_signers), v);
			found--; /* optional */
		} else if (strcmp(t, "encrypt") == 0) {
			cfg->a.encrypt = n != 0;
			found--;
		} else if (strcmp(t, "readers") == 0) {
			mesh__q_copy_str(cfg->a.readers,
			                 sizeof(cfg->a.readers), v);
			found--;
		} else if (strcmp(t, "key") == 0) {
			if (sodium_hex2bin(cfg->key, sizeof(cfg->key), v,
			                   strlen(v), NULL, &klen, NULL) != 0)
				klen = 0;
		} else
			found--;
	}
	if (klen != sizeof(cfg->key) || found < 13 ||
	    (cfg->a.fifo && cfg->a.partitions < 1)) {
		return mesh_err_set(MESH_EBROKER,
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
	mesh__q_names_of(name, fifo, n);
	if ((err = mesh__stream_info(c, n->stream, "queue", name, &si)) !=
	    MESH_OK) {
		return err;
	}
	err = cfg_decode(name, si->Config->Description, cfg);
	/* Replicas live in the stream's configuration, changed by nobody
	 * but set_attrs: read as they are. */
	cfg->a.replicas = si->Config->Replicas > 0 ? si->Config->Replicas : 1;
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
	       (!x->fifo || x->partitions == y->partitions) &&
	       (y->replicas == 0 || x->replicas == y->replicas) &&
	       strcmp(x->require_signers, y->require_signers) == 0 &&
	       x->encrypt == y->encrypt && strcmp(x->readers, y->readers) == 0;
}

static void
stream_config(struct mesh_conn *c, jsStreamConfig *sc, const char *stream,
              const char **subject, const struct mesh_queue_attrs *a,
              const char *desc)
{
	mesh_stream_config_init(c, sc, stream, subject, 1);
	if (a->replicas > 0) {
		sc->Replicas = (int)a->replicas;
	}
	sc->Retention = js_WorkQueuePolicy;
	sc->MaxAge = a->retention_s * 1000 * NS_PER_MS;
	sc->MaxMsgSize = (int32_t)(a->max_message_size + ENVELOPE_ROOM);
	sc->Duplicates = (int64_t)MESH_QUEUE_DEDUP_WINDOW_S * 1000 * NS_PER_MS;
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
                int64_t ack_wait, int64_t max_ack_pending, int64_t replicas)
{
	jsConsumerConfig_Init(cc);
	/* As many copies as the stream: said, since an update that says 0
	 * keeps the consumer at what it had. */
	cc->Replicas = (int)replicas;
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
		                a->fifo ? 1 : 120000, a->replicas);
		s = mesh__consumer_put(c, n->stream, &cc, update, &jerr);
		if (s != NATS_OK) {
			return mesh_err_nats(s, jerr, "queue '%s': consumer",
			                     name);
		}
	}
	consumer_config(&cc, MOVER, NULL, 30 * 1000 * NS_PER_MS, 100000,
	                a->replicas);
	s = mesh__consumer_put(c, n->dstream, &cc, update, &jerr);
	if (s != NATS_OK) {
		return mesh_err_nats(s, jerr, "queue '%s': delay consumer",
		                     name);
	}
	return MESH_OK;
}

static mesh_err
replicas_check(struct mesh_conn *c, const char *name, int64_t replicas)
{
	char what[MESH_QUEUE_NAME_MAX + 16];

	snprintf(what, sizeof(what), "queue '%s'", name);
	return mesh_replicas_check(c, what, replicas);
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
		return mesh_err_set(MESH_ENOTFOUND,
		                    "queue '%s': dead-letter queue '%s' does "
		                    "not exist; create it first",
		                    name, a->dlq);
	}
	return err;
}

static mesh_err
signers_check(struct mesh_conn *c, const char *name,
              const struct mesh_queue_attrs *a)
{
	char what[MESH_QUEUE_NAME_MAX + 16];

	snprintf(what, sizeof(what), "queue '%s'", name);
	return mesh_signers_check(c, what, a->require_signers);
}

mesh_err
mesh__queue_attrs_load(struct mesh_conn *c, const char *name,
                       struct mesh_queue_attrs *a)
{
	struct qcfg cfg;
	struct qnames n;
	mesh_err err = cfg_load(c, name, &cfg, &n);

	if (err == MESH_OK) {
		*a = cfg.a;
	}
	return err;
}

/* A queue of that name as it is: MESH_OK when it has attributes a,
 * MESH_EEXIST when others, MESH_ENOTFOUND when there is none. */
static mesh_err
existing(struct mesh_conn *c, const char *name,
         const struct mesh_queue_attrs *a, struct qnames *n)
{
	struct qcfg old;
	mesh_err err = cfg_load(c, name, &old, n);

	if (err != MESH_OK) {
		return err;
	}
	if (attrs_same(&old.a, a)) {
		return MESH_OK;
	}
	return mesh_err_set(MESH_EEXIST,
	                    "queue '%s': already exists with other "
	                    "attributes (use set-attributes to change them)",
	                    name);
}

mesh_err
mesh_queue_create(struct mesh_conn *c, const char *name,
                  const struct mesh_queue_attrs *attrs)
{
	struct qcfg cfg = {.a = *attrs};
	bool made_delay = false, made_main = false;
	struct qnames n;
	jsStreamConfig sc;
	jsErrCode jerr = 0;
	const char *subj[1];
	char *desc = NULL;
	natsStatus s;
	mesh_err err;

	if ((err = mesh_queue_attrs_check(name, attrs)) != MESH_OK) {
		return err;
	}
	if ((err = mesh__encrypt_check(c, "queue", name, attrs->encrypt,
	                               attrs->readers)) != MESH_OK) {
		return err;
	}
	if ((err = existing(c, name, attrs, &n)) != MESH_ENOTFOUND) {
		return err == MESH_OK ? mesh__encrypt_keys(c, "queue", name,
		                                           attrs->encrypt,
		                                           attrs->readers)
		                      : err;
	}
	if ((err = check_dlq(c, name, attrs)) != MESH_OK ||
	    (err = signers_check(c, name, attrs)) != MESH_OK) {
		return err;
	}
	if (cfg.a.replicas == 0) {
		cfg.a.replicas = mesh_conn_replicas(c);
	}
	if ((err = replicas_check(c, name, cfg.a.replicas)) != MESH_OK) {
		return attrs->replicas != 0 ? err
		                            : mesh__replicas_default_err(err);
	}
	randombytes_buf(cfg.key, sizeof(cfg.key));
	cfg.a.created_ms = cfg.a.modified_ms = now_ms();
	if ((desc = cfg_encode(name, &cfg)) == NULL) {
		return mesh_err_set(MESH_ENOMEM, "queue '%s'", name);
	}
	/* The delay stream first: the main stream, which makes the queue
	 * exist, comes last, and a failure removes what was made. */
	subj[0] = n.dsubject;
	stream_config(c, &sc, n.dstream, subj, &cfg.a, NULL);
	s = mesh__stream_add(c, &sc, &jerr);
	/* A delay stream that exists is another creator's, racing this
	 * one: whoever makes the main stream makes the queue. */
	made_delay = s == NATS_OK;
	if (s != NATS_OK && jerr != JSStreamNameExistErr &&
	    jerr != JSStreamSubjectOverlapErr) {
		err = mesh_err_nats(s, jerr, "queue '%s': delay stream", name);
		goto fail;
	}
	subj[0] = n.filter;
	stream_config(c, &sc, n.stream, subj, &cfg.a, desc);
	s = mesh__stream_add(c, &sc, &jerr);
	if (s != NATS_OK && (jerr == JSStreamNameExistErr ||
	                     jerr == JSStreamSubjectOverlapErr)) {
		/* Made meanwhile by another (services starting together;
		 * the loser may hear "name in use" or "subjects overlap"):
		 * the same queue is no error, as CreateQueue is idempotent;
		 * nothing of it is ours to remove. */
		mesh_err e = existing(c, name, attrs, &n);
		if (e != MESH_ENOTFOUND) {
			free(desc);
			return e == MESH_OK
			               ? mesh__encrypt_keys(c, "queue", name,
			                                    attrs->encrypt,
			                                    attrs->readers)
			               : e;
		}
	}
	if (s != NATS_OK) {
		err = mesh_err_nats(s, jerr, "queue '%s': stream", name);
		goto fail;
	}
	made_main = true;
	/* The data key last: a queue whose key could not be made is
	 * removed, never left encrypting without one. */
	if ((err = ensure_consumers(c, name, &n, &cfg.a, false)) != MESH_OK ||
	    (err = mesh__encrypt_keys(c, "queue", name, cfg.a.encrypt,
	                              cfg.a.readers)) != MESH_OK) {
		goto fail;
	}
	free(desc);
	return MESH_OK;
fail:
	if (made_main) {
		js_DeleteStream(mesh_conn_js(c), n.stream, NULL, NULL);
	}
	if (made_delay) {
		js_DeleteStream(mesh_conn_js(c), n.dstream, NULL, NULL);
	}
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
	jsErrCode jerr = 0;
	const char *subj[1];
	char *desc;
	natsStatus s;
	mesh_err err;

	if ((err = cfg_load(c, name, &cfg, &n)) != MESH_OK) {
		return err;
	}
	if (attrs->fifo != cfg.a.fifo) {
		return mesh_err_set(MESH_EINVAL,
		                    "queue '%s': FifoQueue cannot be changed",
		                    name);
	}
	if (attrs->fifo && attrs->partitions != cfg.a.partitions) {
		return mesh_err_set(MESH_EINVAL,
		                    "queue '%s': partitions cannot be changed",
		                    name);
	}
	if ((err = mesh_queue_attrs_check(name, attrs)) != MESH_OK ||
	    (err = check_dlq(c, name, attrs)) != MESH_OK ||
	    (err = signers_check(c, name, attrs)) != MESH_OK) {
		return err;
	}
	/* The data key before the attribute: producers that see Encrypt
	 * find a key to seal with. */
	if ((attrs->encrypt != cfg.a.encrypt ||
	     strcmp(attrs->readers, cfg.a.readers) != 0) &&
	    ((err = mesh__encrypt_check(c, "queue", name, attrs->encrypt,
	                                attrs->readers)) != MESH_OK ||
	     (err = mesh__encrypt_keys(c, "queue", name, attrs->encrypt,
	                               attrs->readers)) != MESH_OK)) {
		return err;
	}
	{
		int64_t created = cfg.a.created_ms, replicas = cfg.a.replicas;
		cfg.a = *attrs;
		cfg.a.created_ms = created;
		cfg.a.modified_ms = now_ms();
		if (cfg.a.replicas == 0) {
			cfg.a.replicas = replicas;
		} else if (cfg.a.replicas != replicas &&
		           (err = replicas_check(c, name, cfg.a.replicas)) !=
		                   MESH_OK) {
			return err;
		}
	}
	if ((desc = cfg_encode(name, &cfg)) == NULL) {
		return mesh_err_set(MESH_ENOMEM, "queue '%s'", name);
	}
	subj[0] = n.dsubject;
	stream_config(c, &sc, n.dstream, subj, &cfg.a, NULL);
	s = mesh__stream_update(c, &sc, &jerr);
	if (s == NATS_OK) {
		subj[0] = n.filter;
		stream_config(c, &sc, n.stream, subj, &cfg.a, desc);
		s = mesh__stream_update(c, &sc, &jerr);
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
	uint64_t stored = 0, in_flight = 0, delayed = 0, live = 0;
	int parts;
	mesh_err err;

	if ((err = cfg_load(c, name, &cfg, &n)) != MESH_OK ||
	    (err = stream_msgs(c, n.stream, &stored)) != MESH_OK) {
		return err;
	}
	out->delivered = 0;
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
		live += ci->NumPending + (uint64_t)ci->NumAckPending;
		out->delivered += ci->Delivered.Stream;
		jsConsumerInfo_Destroy(ci);
	}
	/* Every message of the queue's stream is waiting or in flight for
	 * its consumer, except (nats-server 2.9, after every node of a
	 * cluster was killed at once) acknowledged ones the stream failed
	 * to drop: below the consumer's ack floor, never delivered again,
	 * they are not messages of the queue. */
	stored = live < stored ? live : stored;
	out->attrs = cfg.a;
	out->not_visible = in_flight < stored ? in_flight : stored;
	out->visible = stored - out->not_visible;
	out->delayed = delayed;
	return MESH_OK;
}

mesh_err
mesh_queue_open(struct mesh_conn *c, const char *name, struct mesh_queue **out)
{
	struct mesh_queue *q = calloc(1, sizeof(*q));
	mesh_err err;

	if (q == NULL) {
		return mesh_err_set(MESH_ENOMEM, "queue '%s'", name);
	}
	q->c = c;
	if ((err = cfg_load(c, name, &q->cfg, &q->n)) != MESH_OK) {
		free(q);
		return err;
	}
	mesh__q_copy_str(q->name, sizeof(q->name), name);
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
		q->locks = mesh__q_plocks_of(c, q->n.stream);
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

const char *
mesh__q_req_reply(struct mesh_queue *q, char *buf, size_t size)
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

mesh_err
mesh__q_rpc_many_from(struct mesh_queue *q, natsMsg **msgs, size_t n,
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

mesh_err
mesh__q_rpc_many(struct mesh_queue *q, natsMsg **msgs, size_t n,
                 int64_t timeout_ms, natsMsg **replies)
{
	return mesh__q_rpc_many_from(q, msgs, n, timeout_ms, replies, NULL);
}

mesh_err
mesh__q_api_msg(struct mesh_queue *q, const char *subject, const char *body,
                natsMsg **out)
{
	char reply[128];
	natsStatus s = natsMsg_Create(
	        out, subject, mesh__q_req_reply(q, reply, sizeof(reply)), body,
	        body ? (int)strlen(body) : 0);

	return s == NATS_OK ? MESH_OK : mesh_err_nats(s, 0, "%s", subject);
}

mesh_err
mesh__q_pull(struct mesh_queue *q, const char *stream, const char *consumer,
             int batch, int64_t expires_ms, natsMsg **out, size_t *n,
             size_t cap)
{
	natsConnection *nc = mesh_conn_nats(q->c);
	char subject[256], reply[128], body[96];
	uint64_t rid;
	int64_t deadline;
	int got = 0;
	bool answered = false;
	natsStatus s;

	snprintf(subject, sizeof(subject), "$JS.API.CONSUMER.MSG.NEXT.%s.%s",
	         stream, consumer);
	rid = mesh__rpc_rid(q->rpc,
	                    mesh__q_req_reply(q, reply, sizeof(reply)));
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
		answered = true;
		if (st != 0) {
			natsMsg_Destroy(m);
			if (st == 100) {
				continue; /* heartbeat */
			}
			if (st == 503) { /* no responders */
				return mesh_err_set(
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
	/* A pull the broker's permissions refuse gets no answer at all,
	 * only an -ERR naming its subject: say so rather than "nothing". */
	if (!answered) {
		char denied[512];
		if (mesh__err_denied_subject(subject, denied,
		                             sizeof(denied))) {
			return mesh_err_set(MESH_EAUTH, "queue '%s': %s",
			                    q->name, denied);
		}
	}
	return MESH_OK;
}
