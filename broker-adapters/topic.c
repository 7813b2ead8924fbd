/* topic.c: SNS topics on JetStream (see mesh/topic.h). */
#include <inttypes.h>
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
};

void
mesh_topic_attrs_init(struct mesh_topic_attrs *a)
{
	memset(a, 0, sizeof(*a));
}

mesh_err
mesh_topic_name_check(const char *name, bool *fifo)
{
	return mesh__name_check("topic", name, MESH_TOPIC_NAME_MAX, fifo);
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
	         " created=%" PRId64,
	         a->fifo, a->content_based_dedup, a->archive_days,
	         a->created_ms);
}

static mesh_err
cfg_decode(const char *name, const char *desc, struct mesh_topic_attrs *a)
{
	int fifo, cbd;

	mesh_topic_attrs_init(a);
	if (desc == NULL ||
	    sscanf(desc,
	           "evmesh-topic v1 fifo=%d cbd=%d archive=%" SCNd64
	           " created=%" SCNd64,
	           &fifo, &cbd, &a->archive_days, &a->created_ms) != 4) {
		return mesh__seterr(MESH_EBROKER,
		                    "topic '%s': its stream holds no topic "
		                    "attributes (not made by evmesh?)",
		                    name);
	}
	a->fifo = fifo != 0;
	a->content_based_dedup = cbd != 0;
	return MESH_OK;
}

mesh_err
mesh__topic_cfg_decode(const char *desc, struct mesh_topic_attrs *a)
{
	return cfg_decode("fuzz", desc, a);
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
	if (err == MESH_OK && si_out != NULL) {
		*si_out = si;
	} else {
		jsStreamInfo_Destroy(si);
	}
	return err;
}

mesh_err
mesh_topic_create(struct mesh_conn *c, const char *name,
                  const struct mesh_topic_attrs *attrs)
{
	struct mesh_topic_attrs a = *attrs, old;
	struct tnames n;
	jsStreamConfig sc;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	const char *subj[1];
	char desc[160];
	bool fifo;
	natsStatus s;
	mesh_err err;

	if ((err = mesh_topic_name_check(name, &fifo)) != MESH_OK) {
		return err;
	}
	if (a.fifo != fifo) {
		return mesh__seterr(MESH_EINVAL,
		                    "topic '%s': FifoTopic is %s, so the name "
		                    "must %send in .fifo",
		                    name, a.fifo ? "true" : "false",
		                    a.fifo ? "" : "not ");
	}
	if (a.content_based_dedup && !fifo) {
		return mesh__seterr(MESH_EINVAL,
		                    "topic '%s': ContentBasedDeduplication is "
		                    "for FIFO topics only",
		                    name);
	}
	if (a.archive_days < 0 || a.archive_days > MESH_TOPIC_ARCHIVE_DAYS) {
		return mesh__seterr(
		        MESH_EINVAL,
		        "topic '%s': ArchivePolicy retention %" PRId64
		        " days is out of range 1-%d (0: none)",
		        name, a.archive_days, MESH_TOPIC_ARCHIVE_DAYS);
	}
	err = load(c, name, &old, &n, NULL);
	if (err == MESH_OK) {
		if (old.fifo == a.fifo &&
		    old.content_based_dedup == a.content_based_dedup &&
		    old.archive_days == a.archive_days) {
			return MESH_OK;
		}
		return mesh__seterr(MESH_EEXIST,
		                    "topic '%s': already exists with other "
		                    "attributes",
		                    name);
	}
	if (err != MESH_ENOTFOUND) {
		return err;
	}
	a.created_ms = now_ms();
	cfg_encode(&a, desc, sizeof(desc));
	subj[0] = n.subject;
	jsStreamConfig_Init(&sc);
	sc.Name = n.stream;
	sc.Subjects = subj;
	sc.SubjectsLen = 1;
	sc.Storage = js_FileStorage;
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
	sc.AllowDirect = true;
	sc.Description = desc;
	s = js_AddStream(&si, mesh_conn_js(c), &sc, NULL, &jerr);
	jsStreamInfo_Destroy(si);
	if (s != NATS_OK) {
		return mesh_err_nats(s, jerr, "topic '%s': stream", name);
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
	return mesh__subscriptions_forget(c, name);
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
	return MESH_OK;
}

mesh_err
mesh_topic_open(struct mesh_conn *c, const char *name, struct mesh_topic **out)
{
	struct mesh_topic *t = calloc(1, sizeof(*t));
	mesh_err err;

	if (t == NULL) {
		return mesh__seterr(MESH_ENOMEM, "topic '%s'", name);
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
prepare(struct mesh_topic *t, const struct mesh_topic_entry *e, natsMsg **out,
        char message_id[64])
{
	struct mesh_event *copy = NULL;
	const struct mesh_event *ev = e->event;
	char dedup[MESH_TOPIC_ID_MAX + 1] = "", reply[96];
	char what[MESH_TOPIC_NAME_MAX + 16];
	size_t size, n_attrs;
	natsMsg *m = NULL;
	natsStatus s = NATS_OK;
	mesh_err err;

	snprintf(what, sizeof(what), "topic '%s'", t->name);
	if (ev == NULL) {
		return mesh__seterr(MESH_EINVAL, "%s: no message", what);
	}
	size = mesh__message_size(ev, &n_attrs);
	if (size > MESH_TOPIC_MAX_MESSAGE) {
		return mesh__seterr(MESH_ETOOBIG,
		                    "topic '%s': message of %zu bytes is over "
		                    "the limit of %d bytes",
		                    t->name, size, MESH_TOPIC_MAX_MESSAGE);
	}
	if (n_attrs > MESH_TOPIC_MAX_ATTRS) {
		return mesh__seterr(MESH_EINVAL,
		                    "topic '%s': %zu message attributes, more "
		                    "than %d",
		                    t->name, n_attrs, MESH_TOPIC_MAX_ATTRS);
	}
	if ((err = mesh__ids_check(what, e->group_id, e->dedup_id)) !=
	    MESH_OK) {
		return err;
	}
	if (!t->a.fifo && (e->group_id != NULL || e->dedup_id != NULL)) {
		return mesh__seterr(MESH_EINVAL,
		                    "%s: MessageGroupId and "
		                    "MessageDeduplicationId are for FIFO "
		                    "topics only",
		                    what);
	}
	if (t->a.fifo) {
		err = mesh__fifo_ids(
		        what, ev, e->group_id, e->dedup_id,
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

static void
published_fail(struct mesh_topic_published *r, mesh_err err)
{
	r->err = err;
	snprintf(r->error, sizeof(r->error), "%s", mesh_errdetail());
}

mesh_err
mesh_topic_publish_batch(struct mesh_topic *t,
                         const struct mesh_topic_entry *e, size_t n,
                         struct mesh_topic_published *out)
{
	natsMsg *msgs[MESH_TOPIC_BATCH_MAX], *replies[MESH_TOPIC_BATCH_MAX];
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
		return mesh__seterr(MESH_ETOOBIG,
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
	if (k == 0) {
		return MESH_OK;
	}
	err = mesh__rpc_many(t->rpc, msgs, k, RPC_TIMEOUT_MS, replies, NULL);
	for (size_t i = 0; i < k; i++) {
		struct mesh_topic_published *r = &out[idx[i]];
		if (err == MESH_OK) {
			mesh_err e2 = mesh__pub_ack(
			        replies[i], what, &r->sequence, &r->duplicate);
			if (e2 != MESH_OK) {
				published_fail(r, e2);
			}
			natsMsg_Destroy(replies[i]);
		} else {
			published_fail(r, err);
		}
	}
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
		return mesh__seterr(out->err, "%s", out->error);
	}
	return MESH_OK;
}
