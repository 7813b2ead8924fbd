/* topic.c: SNS topics on JetStream (see mesh/topic.h). */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mesh/topic.h"
#include "mesh/wire.h"
#include "rpc.h"

#define ENVELOPE_ROOM  (64 * 1024) /* stream MaxMsgSize above the body */
#define DEDUP_WINDOW_S 300
#define RPC_TIMEOUT_MS 5000
#define NS_PER_S       ((int64_t)1000000000)

struct tnames {
	char stream[MESH_TOPIC_NAME_MAX + 8];
	char subject[MESH_TOPIC_NAME_MAX + 16];
};

struct mesh_topic {
	struct mesh_conn *c;
	char name[MESH_TOPIC_NAME_MAX + 1];
	struct mesh_topic_attrs a;
	struct tnames n;
	struct mesh__rpc *rpc;
	struct mesh_keyring *kr; /* seals for an encrypted topic; borrowed */
};

void
mesh_topic_attrs_init(struct mesh_topic_attrs *a)
{
	memset(a, 0, sizeof(*a));
}

mesh_err
mesh_topic_name_check(const char *name, bool *fifo)
{
	return mesh_name_check("topic", name, MESH_TOPIC_NAME_MAX, fifo);
}

mesh_err
mesh__topic_names(const char *name, char *stream, size_t ssize, char *subject,
                  size_t subsize)
{
	bool fifo;
	mesh_err err;

	if ((err = mesh_topic_name_check(name, &fifo)) != MESH_OK) {
		return err;
	}
	if (fifo) {
		snprintf(stream, ssize, "TF_%.*s", (int)(strlen(name) - 5),
		         name);
	} else {
		snprintf(stream, ssize, "TP_%s", name);
	}
	snprintf(subject, subsize, "mesh.topic.%s", name);
	return MESH_OK;
}

static mesh_err
names_of(const char *name, struct tnames *n)
{
	return mesh__topic_names(name, n->stream, sizeof(n->stream),
	                         n->subject, sizeof(n->subject));
}

/* "evmesh-topic v1 fifo=1 cbd=0 archive=0 created=N": cnats writes the
 * description into JSON unescaped, so it holds no quotes. */
static void
cfg_encode(const struct mesh_topic_attrs *a, char *buf, size_t size)
{
	snprintf(buf, size,
	         "evmesh-topic v1 fifo=%d cbd=%d archive=%" PRId64
	         " created=%" PRId64 "%s%s%s%s",
	         a->fifo, a->content_based_dedup, a->archive_days,
	         a->created_ms, a->require_signers[0] ? " signers=" : "",
	         a->require_signers, a->encrypt ? " encrypt=1 readers=" : "",
	         a->encrypt ? a->readers : "");
}

static mesh_err
cfg_decode(const char *name, const char *desc, struct mesh_topic_attrs *a)
{
	const char *signers, *readers;
	int fifo, cbd;

	mesh_topic_attrs_init(a);
	if (desc == NULL ||
	    sscanf(desc,
	           "evmesh-topic v1 fifo=%d cbd=%d archive=%" SCNd64
	           " created=%" SCNd64,
	           &fifo, &cbd, &a->archive_days, &a->created_ms) != 4) {
		return mesh_err_set(MESH_EBROKER,
		                    "topic '%s': its stream holds no topic "
		                    "attributes (not made by evmesh?)",
		                    name);
	}
	a->fifo = fifo != 0;
	a->content_based_dedup = cbd != 0;
	if ((signers = strstr(desc, " signers=")) != NULL) {
		signers += 9;
		snprintf(a->require_signers, sizeof(a->require_signers),
		         "%.*s", (int)strcspn(signers, " "), signers);
	}
	a->encrypt = strstr(desc, " encrypt=1") != NULL;
	if (a->encrypt && (readers = strstr(desc, " readers=")) != NULL) {
		readers += 9;
		snprintf(a->readers, sizeof(a->readers), "%.*s",
		         (int)strcspn(readers, " "), readers);
	}
	return MESH_OK;
}

mesh_err
mesh__topic_cfg_decode(const char *desc, struct mesh_topic_attrs *a)
{
	return cfg_decode("fuzz", desc, a);
}

/* RequireSigners: names, a standard topic, each signer in MESH_KEYS. */
static mesh_err
signers_check(struct mesh_conn *c, const char *name,
              const struct mesh_topic_attrs *a)
{
	char what[MESH_TOPIC_NAME_MAX + 16];

	if (a->require_signers[0] == '\0') {
		return MESH_OK;
	}
	snprintf(what, sizeof(what), "topic '%s'", name);
	if (a->fifo) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "%s: RequireSigners is for standard topics "
		        "only (a FIFO topic replaces the event id a "
		        "signature covers)",
		        what);
	}
	return mesh_signers_check(c, what, a->require_signers);
}

/* Encrypt and Readers: readers only with Encrypt, each in MESH_KEYS, no
 * subscription reading the body. */
static mesh_err
encrypt_check(struct mesh_conn *c, const char *name,
              const struct mesh_topic_attrs *a)
{
	char sub[MESH_TOPIC_NAME_MAX + 32];
	mesh_err err;

	if ((err = mesh__encrypt_check(c, "topic", name, a->encrypt,
	                               a->readers)) != MESH_OK ||
	    !a->encrypt) {
		return err;
	}
	err = mesh__records_body_policy(c, name, sub, sizeof(sub));
	if (err == MESH_EEXIST) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "topic '%s': cannot encrypt: subscription %s has a "
		        "MessageBody filter policy, which needs "
		        "the payload in clear (change it to "
		        "MessageAttributes scope first)",
		        name, sub);
	}
	return err;
}

/* The data key of an encrypted topic, made or rotated to its readers. */
static mesh_err
keys_ensure(struct mesh_conn *c, const char *name,
            const struct mesh_topic_attrs *a)
{
	return mesh__encrypt_keys(c, "topic", name, a->encrypt, a->readers);
}

/* The topic's attributes and stream state; MESH_ENOTFOUND when there is
 * no topic. *si (optional) gets the stream info to destroy. */
static mesh_err
load(struct mesh_conn *c, const char *name, struct mesh_topic_attrs *a,
     struct tnames *n, jsStreamInfo **si_out)
{
	jsStreamInfo *si = NULL;
	mesh_err err;

	if ((err = names_of(name, n)) != MESH_OK ||
	    (err = mesh__stream_info(c, n->stream, "topic", name, &si)) !=
	            MESH_OK) {
		return err;
	}
	err = cfg_decode(name, si->Config->Description, a);
	a->replicas = si->Config->Replicas > 0 ? si->Config->Replicas : 1;
	if (err == MESH_OK && si_out != NULL) {
		*si_out = si;
	} else {
		jsStreamInfo_Destroy(si);
	}
	return err;
}

mesh_err
mesh__topic_attrs_load(struct mesh_conn *c, const char *name,
                       struct mesh_topic_attrs *a)
{
	struct tnames n;

	return load(c, name, a, &n, NULL);
}

/* A topic of that name as it is: MESH_OK when it has attributes a (its
 * replicas unless a's are 0), MESH_EEXIST when others, MESH_ENOTFOUND
 * when there is none. */
static mesh_err
existing(struct mesh_conn *c, const char *name,
         const struct mesh_topic_attrs *a, struct tnames *n)
{
	struct mesh_topic_attrs old;
	mesh_err err = load(c, name, &old, n, NULL);

	if (err != MESH_OK) {
		return err;
	}
	if (old.fifo == a->fifo &&
	    old.content_based_dedup == a->content_based_dedup &&
	    old.archive_days == a->archive_days &&
	    (a->replicas == 0 || a->replicas == old.replicas) &&
	    strcmp(old.require_signers, a->require_signers) == 0 &&
	    old.encrypt == a->encrypt &&
	    strcmp(old.readers, a->readers) == 0) {
		return MESH_OK;
	}
	return mesh_err_set(MESH_EEXIST,
	                    "topic '%s': already exists with other "
	                    "attributes",
	                    name);
}

mesh_err
mesh_topic_create(struct mesh_conn *c, const char *name,
                  const struct mesh_topic_attrs *attrs)
{
	struct mesh_topic_attrs a = *attrs;
	struct tnames n;
	jsStreamConfig sc;
	jsErrCode jerr = 0;
	const char *subj[1];
	char desc[180 + MESH_SIGNERS_TEXT_MAX + MESH_READERS_TEXT_MAX],
	        what[MESH_TOPIC_NAME_MAX + 16];
	bool fifo;
	natsStatus s;
	mesh_err err;

	if ((err = mesh_topic_name_check(name, &fifo)) != MESH_OK) {
		return err;
	}
	if (a.fifo != fifo) {
		return mesh_err_set(MESH_EINVAL,
		                    "topic '%s': FifoTopic is %s, so the name "
		                    "must %send in .fifo",
		                    name, a.fifo ? "true" : "false",
		                    a.fifo ? "" : "not ");
	}
	if (a.content_based_dedup && !fifo) {
		return mesh_err_set(MESH_EINVAL,
		                    "topic '%s': ContentBasedDeduplication is "
		                    "for FIFO topics only",
		                    name);
	}
	if (a.archive_days < 0 || a.archive_days > MESH_TOPIC_ARCHIVE_DAYS) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "topic '%s': ArchivePolicy retention %" PRId64
		        " days is out of range 1-%d (0: none)",
		        name, a.archive_days, MESH_TOPIC_ARCHIVE_DAYS);
	}
	if (a.replicas < 0 || a.replicas > MESH_REPLICAS_MAX) {
		return mesh_err_set(MESH_EINVAL,
		                    "topic '%s': Replicas %" PRId64
		                    " is out of range 1-%d",
		                    name, a.replicas, MESH_REPLICAS_MAX);
	}
	if ((err = signers_check(c, name, &a)) != MESH_OK ||
	    (err = encrypt_check(c, name, &a)) != MESH_OK) {
		return err;
	}
	if ((err = existing(c, name, &a, &n)) != MESH_ENOTFOUND) {
		return err == MESH_OK ? keys_ensure(c, name, &a) : err;
	}
	if (a.replicas == 0) {
		a.replicas = mesh_conn_replicas(c);
	}
	snprintf(what, sizeof(what), "topic '%s'", name);
	if ((err = mesh_replicas_check(c, what, a.replicas)) != MESH_OK) {
		return attrs->replicas != 0 ? err
		                            : mesh__replicas_default_err(err);
	}
	a.created_ms = now_ms();
	cfg_encode(&a, desc, sizeof(desc));
	subj[0] = n.subject;
	mesh_stream_config_init(c, &sc, n.stream, subj, 1);
	sc.Replicas = (int)a.replicas;
	/* Without an archive a message lives until every subscription has
	 * it; with one, for the archive's days whatever they do. */
	if (a.archive_days > 0) {
		sc.Retention = js_LimitsPolicy;
		sc.MaxAge = a.archive_days * 86400 * NS_PER_S;
	} else {
		sc.Retention = js_InterestPolicy;
	}
	sc.MaxMsgSize = MESH_TOPIC_MAX_MESSAGE + ENVELOPE_ROOM;
	sc.Duplicates = DEDUP_WINDOW_S * NS_PER_S;
	sc.Description = desc;
	s = mesh__stream_add(c, &sc, &jerr);
	if (s != NATS_OK && (jerr == JSStreamNameExistErr ||
	                     jerr == JSStreamSubjectOverlapErr)) {
		/* Made meanwhile by another (services starting together;
		 * the loser may hear "name in use" or "subjects overlap"):
		 * the same topic is no error, as CreateTopic is idempotent. */
		mesh_err e = existing(c, name, &a, &n);
		if (e != MESH_ENOTFOUND) {
			return e == MESH_OK ? keys_ensure(c, name, &a) : e;
		}
	}
	if (s != NATS_OK) {
		return mesh_err_nats(s, jerr, "topic '%s': stream", name);
	}
	return keys_ensure(c, name, &a);
}

mesh_err
mesh_topic_set_attrs(struct mesh_conn *c, const char *name,
                     const struct mesh_topic_attrs *attrs)
{
	struct mesh_topic_attrs old;
	struct tnames n;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	char what[MESH_TOPIC_NAME_MAX + 16],
	        desc[180 + MESH_SIGNERS_TEXT_MAX + MESH_READERS_TEXT_MAX];
	const char *orig;
	bool same_signers, same_seal;
	natsStatus s;
	mesh_err err;

	if ((err = load(c, name, &old, &n, &si)) != MESH_OK) {
		return err;
	}
	snprintf(what, sizeof(what), "topic '%s'", name);
	if (attrs->fifo != old.fifo ||
	    attrs->content_based_dedup != old.content_based_dedup ||
	    attrs->archive_days != old.archive_days) {
		jsStreamInfo_Destroy(si);
		return mesh_err_set(
		        MESH_EINVAL,
		        "%s: only Replicas can be changed "
		        "(FifoTopic, ContentBasedDeduplication and "
		        "ArchivePolicy are fixed at creation)",
		        what);
	}
	same_signers =
	        strcmp(attrs->require_signers, old.require_signers) == 0;
	same_seal = attrs->encrypt == old.encrypt &&
	            strcmp(attrs->readers, old.readers) == 0;
	if ((attrs->replicas == 0 || attrs->replicas == old.replicas) &&
	    same_signers && same_seal) {
		jsStreamInfo_Destroy(si);
		return MESH_OK;
	}
	if ((attrs->replicas != 0 && attrs->replicas != old.replicas &&
	     (err = mesh_replicas_check(c, what, attrs->replicas)) !=
	             MESH_OK) ||
	    (err = signers_check(c, name, attrs)) != MESH_OK ||
	    (!same_seal && (err = encrypt_check(c, name, attrs)) != MESH_OK) ||
	    (!same_seal && (err = keys_ensure(c, name, attrs)) != MESH_OK)) {
		jsStreamInfo_Destroy(si);
		return err;
	}
	old.encrypt = attrs->encrypt;
	snprintf(old.readers, sizeof(old.readers), "%s", attrs->readers);
	if (attrs->replicas != 0) {
		si->Config->Replicas = (int)attrs->replicas;
	}
	snprintf(old.require_signers, sizeof(old.require_signers), "%s",
	         attrs->require_signers);
	cfg_encode(&old, desc, sizeof(desc));
	/* The stream's description is the topic's attributes; the info's
	 * own string goes back before the info is destroyed. */
	orig = si->Config->Description;
	si->Config->Description = desc;
	s = mesh__stream_update(c, si->Config, &jerr);
	si->Config->Description = orig;
	jsStreamInfo_Destroy(si);
	if (s != NATS_OK) {
		return mesh_err_nats(s, jerr, "%s: Replicas %" PRId64, what,
		                     attrs->replicas);
	}
	return MESH_OK;
}

mesh_err
mesh_topic_delete(struct mesh_conn *c, const char *name)
{
	struct mesh_topic_attrs a;
	struct tnames n;
	jsErrCode jerr = 0;
	natsStatus s;
	mesh_err err;

	if ((err = load(c, name, &a, &n, NULL)) != MESH_OK) {
		return err;
	}
	/* The stream first: once it is gone, so are the topic and its
	 * subscriptions' consumers; then their records. */
	s = js_DeleteStream(mesh_conn_js(c), n.stream, NULL, &jerr);
	if (s != NATS_OK) {
		return mesh_err_nats(s, jerr, "topic '%s': deleting", name);
	}
	return mesh__records_forget_topic(c, name);
}

mesh_err
mesh_topic_list(struct mesh_conn *c, char ***names, size_t *n)
{
	return mesh__stream_names(c, "topic", "TP_", "TF_", NULL, names, n);
}

void
mesh_topic_list_free(char **names, size_t n)
{
	mesh__names_free(names, n);
}

/* Every subscription is a durable consumer; tails are ephemeral ones. *n
 * (the stream's consumers) becomes the durable ones. Best effort: the
 * count is for people, so when the list cannot be read *n stays. A
 * stream without consumers needs no list. */
static void
count_subscriptions(struct mesh_conn *c, const char *stream, size_t *n)
{
	jsConsumerInfoList *list = NULL;
	size_t durable = 0;

	if (*n == 0 || js_Consumers(&list, mesh_conn_js(c), stream, NULL,
	                            NULL) != NATS_OK) {
		return;
	}
	for (int i = 0; i < list->Count; i++) {
		const char *d = list->List[i]->Config->Durable;
		durable += d != NULL && d[0] != '\0';
	}
	jsConsumerInfoList_Destroy(list);
	*n = durable;
}

mesh_err
mesh_topic_info(struct mesh_conn *c, const char *name,
                struct mesh_topic_info *out)
{
	struct tnames n;
	jsStreamInfo *si = NULL;
	mesh_err err;

	memset(out, 0, sizeof(*out));
	if ((err = load(c, name, &out->a, &n, &si)) != MESH_OK) {
		return err;
	}
	out->messages = si->State.Msgs;
	out->first_seq = si->State.FirstSeq;
	out->last_seq = si->State.LastSeq;
	out->subscriptions = (size_t)si->State.Consumers;
	jsStreamInfo_Destroy(si);
	count_subscriptions(c, n.stream, &out->subscriptions);
	return MESH_OK;
}

mesh_err
mesh_topic_open(struct mesh_conn *c, const char *name, struct mesh_topic **out)
{
	struct mesh_topic *t = calloc(1, sizeof(*t));
	mesh_err err;

	if (t == NULL) {
		return mesh_err_set(MESH_ENOMEM, "topic '%s'", name);
	}
	t->c = c;
	if ((err = load(c, name, &t->a, &t->n, NULL)) != MESH_OK ||
	    (err = mesh__rpc_open(c, "topic", &t->rpc)) != MESH_OK) {
		mesh_topic_close(t);
		return err;
	}
	snprintf(t->name, sizeof(t->name), "%s", name);
	*out = t;
	return MESH_OK;
}

void
mesh_topic_close(struct mesh_topic *t)
{
	if (t == NULL) {
		return;
	}
	mesh__rpc_close(t->rpc);
	free(t);
}

const char *
mesh_topic_name(const struct mesh_topic *t)
{
	return t->name;
}

const struct mesh_topic_attrs *
mesh_topic_attrs(const struct mesh_topic *t)
{
	return &t->a;
}

/* Validate one entry and build its NATS message. */
static mesh_err
prepare_event(struct mesh_topic *t, const struct mesh_topic_entry *e,
              const struct mesh_event *ev, natsMsg **out, char message_id[64])
{
	struct mesh_event *copy = NULL;
	char dedup[MESH_TOPIC_ID_MAX + 1] = "", reply[128];
	char what[MESH_TOPIC_NAME_MAX + 16];
	size_t size, n_attrs;
	natsMsg *m = NULL;
	natsStatus s = NATS_OK;
	mesh_err err;

	snprintf(what, sizeof(what), "topic '%s'", t->name);
	size = mesh__message_size(ev, &n_attrs);
	if (size > MESH_TOPIC_MAX_MESSAGE) {
		return mesh_err_set(MESH_ETOOBIG,
		                    "topic '%s': message of %zu bytes is over "
		                    "the limit of %d bytes",
		                    t->name, size, MESH_TOPIC_MAX_MESSAGE);
	}
	if (n_attrs > MESH_TOPIC_MAX_ATTRS) {
		return mesh_err_set(MESH_EINVAL,
		                    "topic '%s': %zu message attributes, more "
		                    "than %d",
		                    t->name, n_attrs, MESH_TOPIC_MAX_ATTRS);
	}
	if ((err = mesh__ids_check(what, e->group_id, e->dedup_id)) !=
	    MESH_OK) {
		return err;
	}
	if (!t->a.fifo && (e->group_id != NULL || e->dedup_id != NULL)) {
		return mesh_err_set(MESH_EINVAL,
		                    "%s: MessageGroupId and "
		                    "MessageDeduplicationId are for FIFO "
		                    "topics only",
		                    what);
	}
	if (t->a.fifo) {
		/* The original's: content-based de-duplication hashes the
		 * data before sealing (a sealed copy differs each time). */
		err = mesh__fifo_ids(
		        what, e->event, e->group_id, e->dedup_id,
		        t->a.content_based_dedup, (const uint8_t *)t->n.stream,
		        strlen(t->n.stream) < 64 ? strlen(t->n.stream) : 64,
		        dedup, message_id);
		if (err != MESH_OK) {
			return err;
		}
		if ((err = mesh_event_dup(ev, &copy)) != MESH_OK ||
		    (err = mesh_event_set_id(copy, message_id)) != MESH_OK) {
			mesh_event_free(copy);
			return err;
		}
		ev = copy;
	} else {
		snprintf(message_id, 64, "%s", mesh_event_id(ev));
	}
	err = mesh_wire_msg(t->n.subject,
	                    mesh__rpc_reply(t->rpc, reply, sizeof(reply)), ev,
	                    t->a.fifo ? dedup : NULL, &m);
	mesh_event_free(copy);
	if (err != MESH_OK) {
		return err;
	}
	if (e->group_id != NULL) {
		s = natsMsgHeader_Set(m, MESH_HDR_GROUP, e->group_id);
	}
	if (s == NATS_OK && t->a.fifo) {
		s = natsMsgHeader_Set(m, MESH_HDR_DEDUP, dedup);
	}
	if (s != NATS_OK) {
		natsMsg_Destroy(m);
		return mesh_err_nats(s, 0, "topic '%s': message", t->name);
	}
	*out = m;
	return MESH_OK;
}

/* Validate one entry, seal it when the topic encrypts (with the topic's
 * keyring), and build its NATS message. */
static mesh_err
prepare(struct mesh_topic *t, const struct mesh_topic_entry *e, natsMsg **out,
        char message_id[64])
{
	struct mesh_event *sealed = NULL;
	char what[MESH_TOPIC_NAME_MAX + 16], target[MESH_TOPIC_NAME_MAX + 8];
	mesh_err err;

	snprintf(what, sizeof(what), "topic '%s'", t->name);
	snprintf(target, sizeof(target), "topic:%s", t->name);
	if (e->event == NULL) {
		return mesh_err_set(MESH_EINVAL, "%s: no message", what);
	}
	if ((err = mesh__seal_for_send(what, target, t->a.encrypt, t->kr,
	                               e->event, &sealed)) != MESH_OK) {
		return err;
	}
	err = prepare_event(t, e, sealed ? sealed : e->event, out, message_id);
	mesh_event_free(sealed);
	return err;
}

void
mesh_topic_set_keyring(struct mesh_topic *t, struct mesh_keyring *kr)
{
	t->kr = kr;
}

mesh_err
mesh__topic_prepare(struct mesh_topic *t, const struct mesh_topic_entry *e,
                    natsMsg **out, char message_id[64])
{
	return prepare(t, e, out, message_id);
}

struct mesh__rpc *
mesh__topic_rpc(struct mesh_topic *t)
{
	return t->rpc;
}

struct mesh_conn *
mesh__topic_conn(struct mesh_topic *t)
{
	return t->c;
}

static void
published_fail(struct mesh_topic_published *r, mesh_err err)
{
	r->err = err;
	snprintf(r->error, sizeof(r->error), "%s", mesh_errdetail());
}

/* A published message's outcome into its entry's (idx maps a sent one to
 * its entry). */
struct published_to {
	struct mesh_topic_published *out;
	const size_t *idx;
};

static void
published_into(void *arg, void *tag, const struct mesh_sent *r)
{
	const struct published_to *to = arg;
	struct mesh_topic_published *o = &to->out[to->idx[(uintptr_t)tag]];

	o->err = r->err;
	snprintf(o->error, sizeof(o->error), "%s", r->error);
	o->sequence = r->sequence;
	o->duplicate = r->duplicate;
}

mesh_err
mesh_topic_publish_batch(struct mesh_topic *t,
                         const struct mesh_topic_entry *e, size_t n,
                         struct mesh_topic_published *out)
{
	natsMsg *msgs[MESH_TOPIC_BATCH_MAX];
	size_t idx[MESH_TOPIC_BATCH_MAX], k = 0, total = 0, na;
	char what[MESH_TOPIC_NAME_MAX + 16];
	mesh_err err;

	snprintf(what, sizeof(what), "topic '%s'", t->name);
	if ((err = mesh__batch_check(what, &e[0].id, n, sizeof(*e))) !=
	    MESH_OK) {
		return err;
	}
	for (size_t i = 0; i < n; i++) {
		total += e[i].event ? mesh__message_size(e[i].event, &na) : 0;
	}
	if (n > 1 && total > MESH_TOPIC_MAX_MESSAGE) {
		return mesh_err_set(MESH_ETOOBIG,
		                    "%s: the batch's %zu bytes are over the "
		                    "limit of %d bytes in all",
		                    what, total, MESH_TOPIC_MAX_MESSAGE);
	}
	for (size_t i = 0; i < n; i++) {
		memset(&out[i], 0, sizeof(out[i]));
		if ((err = prepare(t, &e[i], &msgs[k], out[i].message_id)) !=
		    MESH_OK) {
			published_fail(&out[i], err);
			continue;
		}
		idx[k++] = i;
	}
	mesh__send_prepared(t->rpc, mesh_conn_nats(t->c), what, msgs, k,
	                    published_into, &(struct published_to){out, idx});
	return MESH_OK;
}

mesh_err
mesh_topic_publish(struct mesh_topic *t, const struct mesh_topic_entry *e,
                   struct mesh_topic_published *out)
{
	struct mesh_topic_entry one = *e;
	mesh_err err;

	one.id = "single";
	if ((err = mesh_topic_publish_batch(t, &one, 1, out)) != MESH_OK) {
		return err;
	}
	if (out->err != MESH_OK) {
		return mesh_err_set(out->err, "%s", out->error);
	}
	return MESH_OK;
}

/* ---- tails -------------------------------------------------------------- */

#define TAIL_SLICE_MS 1000

struct mesh_topic_tail {
	struct mesh_conn *c;
	char name[MESH_TOPIC_NAME_MAX + 1];
	char stream[MESH_TOPIC_NAME_MAX + 8];
	natsSubscription *sub;
	natsSubscription *gone; /* the stream-deleted advisory */
	atomic_bool stopped, deleted;
};

/* The topic's stream was deleted: an ordered consumer would wait for ever
 * (it only recreates itself), so wake the tail, which reports it. */
static void
on_stream_deleted(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
                  void *arg)
{
	struct mesh_topic_tail *t = arg;

	(void)nc;
	(void)sub;
	natsMsg_Destroy(msg);
	atomic_store(&t->deleted, true);
	natsSubscription_Unsubscribe(t->sub);
}

mesh_err
mesh_topic_tail_open(struct mesh_conn *c, const char *name, int64_t since_ms,
                     struct mesh_topic_tail **out)
{
	struct mesh_topic_tail *t;
	struct mesh_topic_attrs a;
	struct tnames n;
	jsSubOptions so;
	jsErrCode jerr = 0;
	natsStatus s;
	mesh_err err;

	if ((err = load(c, name, &a, &n, NULL)) != MESH_OK) {
		return err;
	}
	if ((t = calloc(1, sizeof(*t))) == NULL) {
		return mesh_err_set(MESH_ENOMEM, "topic '%s': tail", name);
	}
	t->c = c;
	snprintf(t->name, sizeof(t->name), "%s", name);
	snprintf(t->stream, sizeof(t->stream), "%s", n.stream);
	atomic_init(&t->stopped, false);
	atomic_init(&t->deleted, false);
	/* Ordered: ephemeral, AckNone, flow control and heartbeats, in
	 * memory, and recreated from the next sequence after a gap. AckNone
	 * is what keeps the tail out of the subscriptions' way: it never
	 * holds a message back for an acknowledgement, and on an interest
	 * stream the server drops the tail's interest in a message as soon
	 * as it is delivered. */
	jsSubOptions_Init(&so);
	so.Stream = n.stream;
	so.Ordered = true;
	if (since_ms > 0) {
		so.Config.DeliverPolicy = js_DeliverByStartTime;
		so.Config.OptStartTime = since_ms * 1000000;
	} else {
		so.Config.DeliverPolicy = js_DeliverNew;
	}
	s = js_SubscribeSync(&t->sub, mesh_conn_js(c), n.subject, NULL, &so,
	                     &jerr);
	if (s == NATS_OK) {
		char advisory[MESH_TOPIC_NAME_MAX + 64];
		snprintf(advisory, sizeof(advisory),
		         "$JS.EVENT.ADVISORY.STREAM.DELETED.%s", n.stream);
		s = natsConnection_Subscribe(&t->gone, mesh_conn_nats(c),
		                             advisory, on_stream_deleted, t);
	}
	if (s == NATS_OK) {
		/* The advisory's subscription must be at the server before
		 * the caller goes on: the topic may be deleted right after. */
		s = natsConnection_FlushTimeout(mesh_conn_nats(c),
		                                RPC_TIMEOUT_MS);
	}
	if (s != NATS_OK) {
		err = mesh_err_nats(s, jerr, "topic '%s': tail", name);
		mesh_topic_tail_close(t);
		return err;
	}
	*out = t;
	return MESH_OK;
}

/* False only when the broker says the stream is gone (not when it cannot
 * be asked). */
static bool
tail_stream_exists(struct mesh_topic_tail *t)
{
	jsStreamInfo *si = NULL;
	mesh_err err =
	        mesh__stream_info(t->c, t->stream, "topic", t->name, &si);

	jsStreamInfo_Destroy(si);
	return err != MESH_ENOTFOUND;
}

mesh_err
mesh_topic_tail_next(struct mesh_topic_tail *t, int64_t timeout_ms,
                     struct mesh_topic_tailed *out)
{
	struct mesh_topic_tailed m = {0};
	jsMsgMetaData *meta = NULL;
	const char *group = NULL;
	char fallback[MESH_TOPIC_NAME_MAX + 32];
	natsMsg *msg = NULL;
	natsStatus s;
	mesh_err err;

	if (atomic_load(&t->stopped)) {
		return mesh_err_set(MESH_ECLOSED, "topic '%s': tail stopped",
		                    t->name);
	}
	/* A second at a time: the advisory wakes the tail when the topic is
	 * deleted, but an advisory is not guaranteed to come, so a quiet
	 * tail also asks whether its stream is still there. */
	for (int64_t end = mesh_mono_ms() + timeout_ms;;) {
		int64_t left =
		        timeout_ms < 0 ? TAIL_SLICE_MS : end - mesh_mono_ms();
		s = natsSubscription_NextMsg(&msg, t->sub,
		                             left < TAIL_SLICE_MS
		                                     ? (left > 0 ? left : 1)
		                                     : TAIL_SLICE_MS);
		if (s != NATS_TIMEOUT || atomic_load(&t->deleted) ||
		    atomic_load(&t->stopped)) {
			break;
		}
		if (!tail_stream_exists(t)) {
			atomic_store(&t->deleted, true);
			break;
		}
		if (timeout_ms >= 0 && mesh_mono_ms() >= end) {
			break;
		}
	}
	if (s != NATS_OK) {
		if (atomic_load(&t->deleted)) {
			return mesh_err_set(
			        MESH_ENOTFOUND,
			        "topic '%s': deleted while followed", t->name);
		}
		if (atomic_load(&t->stopped)) {
			return mesh_err_set(MESH_ECLOSED,
			                    "topic '%s': tail stopped",
			                    t->name);
		}
		if (s == NATS_TIMEOUT) {
			return mesh_err_set(
			        MESH_ETIMEDOUT,
			        "topic '%s': no message in %" PRId64 " ms",
			        t->name, timeout_ms);
		}
		return mesh_err_nats(s, 0, "topic '%s': tail", t->name);
	}
	if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
		m.sequence = meta->Sequence.Stream;
		m.stored_ms = meta->Timestamp / 1000000;
		jsMsgMetaData_Destroy(meta);
	}
	if (natsMsgHeader_Get(msg, MESH_HDR_GROUP, &group) == NATS_OK) {
		snprintf(m.group_id, sizeof(m.group_id), "%s", group);
	}
	snprintf(fallback, sizeof(fallback), "%s-%" PRIu64, t->stream,
	         m.sequence);
	err = mesh_wire_read(msg, SIZE_MAX, fallback, &m.event, m.parse_error,
	                     sizeof(m.parse_error));
	natsMsg_Destroy(msg);
	if (err != MESH_OK) {
		return err;
	}
	*out = m;
	return MESH_OK;
}

void
mesh_topic_tailed_fini(struct mesh_topic_tailed *m)
{
	if (m != NULL) {
		mesh_event_free(m->event);
		m->event = NULL;
	}
}

void
mesh_topic_tail_stop(struct mesh_topic_tail *t)
{
	atomic_store(&t->stopped, true);
	/* Closing the subscription wakes a waiting NextMsg. */
	natsSubscription_Unsubscribe(t->sub);
}

void
mesh_topic_tail_close(struct mesh_topic_tail *t)
{
	if (t == NULL) {
		return;
	}
	/* Draining waits for a running on_stream_deleted, which uses t. */
	if (t->gone != NULL && natsSubscription_Drain(t->gone) == NATS_OK) {
		natsSubscription_WaitForDrainCompletion(t->gone, 5000);
	}
	natsSubscription_Destroy(t->gone);
	/* Unsubscribing deletes the ephemeral consumer now, rather than
	 * when the server notices the interest gone. */
	natsSubscription_Unsubscribe(t->sub);
	natsSubscription_Destroy(t->sub);
	free(t);
}
