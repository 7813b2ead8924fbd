/* partition.c: partitioned services' records, their partition stream and
 * consumers, and the forwarder that routes events to partitions (see
 * mesh/partition.h). */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "internal.h"
#include "mesh/clock.h"
#include "mesh/partition.h"
#include "mesh/service_api.h"
#include "mesh/wire.h"
#include "rpc.h"

#define RECORD_MAX   1024
#define ACK_WAIT_NS  (30 * (int64_t)1000000000)
#define PENDING_MAX  20000
#define NS_PER_S     ((int64_t)1000000000)
#define STREAM_MAX   (MESH_SERVICE_NAME_MAX + 16)
#define SUBJECT_MAX  (MESH_SERVICE_NAME_MAX + 32)
#define DEDUP_ID_MAX 320

int
mesh_partition_of(const void *key, size_t len, int n)
{
	const unsigned char *b = key;
	uint64_t h = 0xcbf29ce484222325ULL;

	assert(n >= 1 && n <= MESH_PARTITIONS_MAX);
	assert(key != NULL || len == 0);
	for (size_t i = 0; i < len; i++) {
		h ^= b[i];
		h *= 0x100000001b3ULL;
	}
	return (int)(h % (uint64_t)n);
}

/* A service's name: that of mesh_name_check, without ".fifo" (a stream's
 * name takes no dot). */
static mesh_err
name_check(const char *service)
{
	bool fifo = false;
	mesh_err err = mesh_name_check("service", service,
	                               MESH_SERVICE_NAME_MAX, &fifo);

	if (err == MESH_OK && fifo) {
		return mesh_err_set(MESH_EINVAL,
		                    "service name '%s': may contain only A-Z, "
		                    "a-z, 0-9, '-' and '_'",
		                    service);
	}
	return err;
}

static mesh_err
count_check(const char *service, int n)
{
	if (n < 1 || n > MESH_PARTITIONS_MAX) {
		return mesh_err_set(MESH_EINVAL,
		                    "service '%s': %d partitions: must be "
		                    "1-%d",
		                    service, n, MESH_PARTITIONS_MAX);
	}
	return MESH_OK;
}

static void
stream_name(const char *service, char out[STREAM_MAX])
{
	snprintf(out, STREAM_MAX, MESH_PARTITION_STREAM, service);
}

/* ---- the record --------------------------------------------------------- */

struct record {
	int n;
	int64_t created_ms;
};

static mesh_err
bucket(struct mesh_conn *c, kvStore **kv)
{
	return mesh__kv_bucket(c, MESH_PARTITIONS_BUCKET, RECORD_MAX, 0, true,
	                       "services", kv);
}

/* MESH_ENOTFOUND when the service has none. */
static mesh_err
record_get(kvStore *kv, const char *service, struct record *r)
{
	kvEntry *e = NULL;
	json_int_t n = 0, created = 0;
	natsStatus st;
	json_t *j;

	/* A bucket just made on a cluster may not answer at once. */
	for (int64_t until = mesh_mono_ms() + MESH_JS_SETTLE_MS;;) {
		st = kvStore_Get(&e, kv, service);
		if (!mesh_js_transient(st, 0) || mesh_mono_ms() >= until) {
			break;
		}
		nats_Sleep(250);
	}

	if (st == NATS_NOT_FOUND) {
		return mesh_err_set(MESH_ENOTFOUND,
		                    "service '%s': is not partitioned (no "
		                    "record in %s)",
		                    service, MESH_PARTITIONS_BUCKET);
	}
	if (st != NATS_OK) {
		return mesh_err_nats(st, 0, "service '%s': its record",
		                     service);
	}
	j = json_loadb(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), 0, NULL);
	kvEntry_Destroy(e);
	if (j == NULL ||
	    json_unpack(j, "{s:I, s:I}", "partitions", &n, "created_ms",
	                &created) != 0 ||
	    n < 1 || n > MESH_PARTITIONS_MAX) {
		json_decref(j);
		return mesh_err_set(MESH_EBROKER,
		                    "service '%s': its record in %s is "
		                    "damaged",
		                    service, MESH_PARTITIONS_BUCKET);
	}
	json_decref(j);
	r->n = (int)n;
	r->created_ms = created;
	return MESH_OK;
}

/* Record n unless a record is there; *r is the record that stands. */
static mesh_err
record_ensure(kvStore *kv, const char *service, int n, struct record *r)
{
	mesh_err err = record_get(kv, service, r);
	char text[96];
	uint64_t rev;
	natsStatus st;

	if (err != MESH_ENOTFOUND) {
		return err;
	}
	r->n = n;
	r->created_ms = now_ms();
	snprintf(text, sizeof(text),
	         "{\"partitions\":%d,\"created_ms\":%" PRId64 "}", n,
	         r->created_ms);
	for (int64_t until = mesh_mono_ms() + MESH_JS_SETTLE_MS;;) {
		st = kvStore_CreateString(&rev, kv, service, text);
		if (!mesh_js_transient(st, 0) || mesh_mono_ms() >= until) {
			break;
		}
		nats_Sleep(250);
	}
	if (st == NATS_OK) {
		return MESH_OK;
	}
	/* Another first start was quicker: its record stands. */
	err = record_get(kv, service, r);
	return err == MESH_ENOTFOUND
	               ? mesh_err_nats(st, 0, "service '%s': recording",
	                               service)
	               : err;
}

static mesh_err
count_refused(const char *service, const struct record *r, int n)
{
	char when[32];

	mesh_time_format(r->created_ms / 1000, when);
	return mesh_err_set(MESH_EINVAL,
	                    "service '%s' has %d partitions (fixed at its "
	                    "first start, %s); %d refused: a partition's "
	                    "state can not be split or merged in place",
	                    service, r->n, when, n);
}

/* ---- the stream and its consumers --------------------------------------- */

static mesh_err
consumer_add(struct mesh_conn *c, const char *service, const char *stream,
             int k)
{
	char durable[16], subject[SUBJECT_MAX];
	jsConsumerConfig cc;
	jsErrCode jerr = 0;
	natsStatus st;

	snprintf(durable, sizeof(durable), MESH_PARTITION_CONSUMER, k);
	snprintf(subject, sizeof(subject), MESH_PARTITION_SUBJECT, service, k);
	jsConsumerConfig_Init(&cc);
	cc.Durable = durable;
	cc.FilterSubject = subject;
	cc.AckPolicy = js_AckExplicit;
	cc.AckWait = ACK_WAIT_NS;
	/* The runtime counts attempts and dead-letters: never the broker. */
	cc.MaxDeliver = -1;
	cc.MaxAckPending = PENDING_MAX;
	cc.MaxWaiting = 512;
	st = mesh__consumer_put(c, stream, &cc, false, &jerr);
	if (st != NATS_OK && jerr != JSConsumerNameExistErr) {
		return mesh_err_nats(st, jerr,
		                     "service '%s': partition %d's consumer",
		                     service, k);
	}
	return MESH_OK;
}

/* The partition stream and its n consumers, where missing. */
static mesh_err
stream_ensure(struct mesh_conn *c, const char *service, int n)
{
	char stream[STREAM_MAX], subject[SUBJECT_MAX];
	const char *subjects[] = {subject};
	jsStreamConfig sc;
	jsStreamInfo *si = NULL;
	mesh_err err;

	stream_name(service, stream);
	snprintf(subject, sizeof(subject), "mesh.part.%s.*", service);
	/* Every start asks once; only a stream short of consumers (new, or
	 * left by a crash) is given them. */
	if (js_GetStreamInfo(&si, mesh_conn_js(c), stream, NULL, NULL) ==
	            NATS_OK &&
	    si->State.Consumers >= (int64_t)n) {
		jsStreamInfo_Destroy(si);
		return MESH_OK;
	}
	jsStreamInfo_Destroy(si);
	mesh_stream_config_init(c, &sc, stream, subjects, 1);
	/* Each consumer's filter is one partition's subject, disjoint from
	 * the others': what a work queue allows. */
	sc.Retention = js_WorkQueuePolicy;
	sc.Duplicates = MESH_PARTITION_DEDUP_S * NS_PER_S;
	if ((err = mesh_stream_ensure(c, &sc)) != MESH_OK) {
		return err;
	}
	for (int k = 0; k < n; k++) {
		if ((err = consumer_add(c, service, stream, k)) != MESH_OK) {
			return err;
		}
	}
	return MESH_OK;
}

/* ---- the calls ---------------------------------------------------------- */

mesh_err
mesh_partitions_ensure(struct mesh_conn *c, const char *service, int n)
{
	struct record r;
	kvStore *kv = NULL;
	mesh_err err;

	if ((err = name_check(service)) != MESH_OK ||
	    (err = count_check(service, n)) != MESH_OK ||
	    (err = bucket(c, &kv)) != MESH_OK) {
		return err;
	}
	err = record_ensure(kv, service, n, &r);
	kvStore_Destroy(kv);
	if (err != MESH_OK) {
		return err;
	}
	if (r.n != n) {
		return count_refused(service, &r, n);
	}
	return stream_ensure(c, service, n);
}

static mesh_err
record_read(struct mesh_conn *c, const char *service, struct record *r)
{
	kvStore *kv = NULL;
	mesh_err err;

	if ((err = name_check(service)) != MESH_OK ||
	    (err = bucket(c, &kv)) != MESH_OK) {
		return err;
	}
	err = record_get(kv, service, r);
	kvStore_Destroy(kv);
	return err;
}

mesh_err
mesh_partitions_get(struct mesh_conn *c, const char *service, int *n)
{
	struct record r;
	mesh_err err = record_read(c, service, &r);

	if (err == MESH_OK) {
		*n = r.n;
	}
	return err;
}

static mesh_err
stream_gone(const char *service)
{
	char stream[STREAM_MAX];

	stream_name(service, stream);
	return mesh_err_set(MESH_ENOTFOUND,
	                    "service '%s': its partition stream %s is gone "
	                    "(deleted underneath? mesh_partitions_ensure "
	                    "makes it again, empty)",
	                    service, stream);
}

mesh_err
mesh_partitions_info(struct mesh_conn *c, const char *service,
                     struct mesh_partition_info **out, int *n,
                     int64_t *created_ms)
{
	char stream[STREAM_MAX];
	struct mesh_partition_info *pi;
	jsConsumerInfoList *list = NULL;
	jsErrCode jerr = 0;
	struct record r;
	natsStatus st;
	mesh_err err;

	if ((err = record_read(c, service, &r)) != MESH_OK) {
		return err;
	}
	stream_name(service, stream);
	st = js_Consumers(&list, mesh_conn_js(c), stream, NULL, &jerr);
	if (st == NATS_NOT_FOUND && jerr == JSStreamNotFoundErr) {
		return stream_gone(service);
	}
	if (st != NATS_OK && st != NATS_NOT_FOUND) {
		return mesh_err_nats(st, jerr, "service '%s': partitions",
		                     service);
	}
	if ((pi = calloc((size_t)r.n, sizeof(*pi))) == NULL) {
		jsConsumerInfoList_Destroy(list);
		return mesh_err_set(MESH_ENOMEM, "service '%s': partitions",
		                    service);
	}
	for (int k = 0; k < r.n; k++) {
		pi[k].partition = k;
		pi[k].missing = true;
	}
	for (int i = 0; list != NULL && i < list->Count; i++) {
		const jsConsumerInfo *ci = list->List[i];
		char *end = NULL;
		long k = ci->Name[0] == 'p' ? strtol(ci->Name + 1, &end, 10)
		                            : -1;
		if (k < 0 || k >= r.n || end == NULL || *end != '\0') {
			continue;
		}
		pi[k].missing = false;
		pi[k].pending = ci->NumPending;
		pi[k].ack_pending = (uint64_t)ci->NumAckPending;
		pi[k].redelivered = (uint64_t)ci->NumRedelivered;
		pi[k].ack_floor = ci->AckFloor.Stream;
		pi[k].delivered = ci->Delivered.Stream;
		pi[k].last_active_ms = ci->Delivered.Last / 1000000;
	}
	jsConsumerInfoList_Destroy(list);
	*out = pi;
	*n = r.n;
	if (created_ms != NULL) {
		*created_ms = r.created_ms;
	}
	return MESH_OK;
}

mesh_err
mesh_partitions_delete(struct mesh_conn *c, const char *service)
{
	char stream[STREAM_MAX];
	struct record r;
	kvStore *kv = NULL;
	jsErrCode jerr = 0;
	bool had_record;
	natsStatus st;
	mesh_err err;

	if ((err = name_check(service)) != MESH_OK ||
	    (err = bucket(c, &kv)) != MESH_OK) {
		return err;
	}
	/* The record first: without it no instance starts on the old
	 * count; then the stream, its consumers with it. */
	err = record_get(kv, service, &r);
	had_record = false;
	if (err == MESH_OK || err == MESH_EBROKER) {
		had_record = true;
		st = kvStore_Purge(kv, service, NULL);
		if (st != NATS_OK) {
			kvStore_Destroy(kv);
			return mesh_err_nats(
			        st, 0, "service '%s': removing its record",
			        service);
		}
	} else if (err != MESH_ENOTFOUND) {
		kvStore_Destroy(kv);
		return err;
	}
	kvStore_Destroy(kv);
	stream_name(service, stream);
	st = js_DeleteStream(mesh_conn_js(c), stream, NULL, &jerr);
	if (st == NATS_OK || (had_record && (st == NATS_NOT_FOUND ||
	                                     jerr == JSStreamNotFoundErr))) {
		return MESH_OK;
	}
	if (st == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
		return mesh_err_set(MESH_ENOTFOUND,
		                    "service '%s': is not partitioned",
		                    service);
	}
	return mesh_err_nats(st, jerr, "service '%s': deleting %s", service,
	                     stream);
}

/* ---- the forwarder ------------------------------------------------------ */

struct mesh_partitioner {
	struct mesh_conn *c;
	struct mesh__rpc *rpc;
	int n;
	char service[MESH_SERVICE_NAME_MAX + 1];
	char what[MESH_SERVICE_NAME_MAX + 32];
};

mesh_err
mesh_partitioner_open(struct mesh_conn *c, const char *service, int n,
                      struct mesh_partitioner **out)
{
	struct mesh_partitioner *p;
	struct record r;
	mesh_err err;

	if ((err = count_check(service, n)) != MESH_OK ||
	    (err = record_read(c, service, &r)) != MESH_OK) {
		return err;
	}
	if (r.n != n) {
		return count_refused(service, &r, n);
	}
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		return mesh_err_set(MESH_ENOMEM, "service '%s': partitioner",
		                    service);
	}
	p->c = c;
	p->n = n;
	snprintf(p->service, sizeof(p->service), "%s", service);
	snprintf(p->what, sizeof(p->what), "service '%s' partitions", service);
	if ((err = mesh__rpc_open(c, p->what, &p->rpc)) != MESH_OK) {
		free(p);
		return err;
	}
	*out = p;
	return MESH_OK;
}

void
mesh_partitioner_close(struct mesh_partitioner *p)
{
	if (p == NULL) {
		return;
	}
	mesh__rpc_close(p->rpc);
	free(p);
}

static const char *
hdr(natsMsg *m, const char *key)
{
	const char *v = NULL;

	return natsMsgHeader_Get(m, key, &v) == NATS_OK ? v : NULL;
}

/* A message's de-duplication id: its place in its JetStream stream, else
 * its event's id (Ce-Id, else Nats-Msg-Id); false when it has none. */
static bool
dedup_of(natsMsg *m, char out[DEDUP_ID_MAX])
{
	jsMsgMetaData *meta = NULL;
	const char *id;

	if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
		snprintf(out, DEDUP_ID_MAX, "%s:%" PRIu64, meta->Stream,
		         meta->Sequence.Stream);
		jsMsgMetaData_Destroy(meta);
		return true;
	}
	if ((id = hdr(m, MESH_HDR_CE_ID)) == NULL &&
	    (id = hdr(m, MESH_HDR_MSG_ID)) == NULL) {
		return false;
	}
	snprintf(out, DEDUP_ID_MAX, "%s", id);
	return true;
}

/* Copy src's headers into m but the NATS directives of its first publish
 * ("Nats-*"); a Nats-Msg-Id that was its only id becomes its Ce-Id. */
static natsStatus
headers_copy(natsMsg *src, natsMsg *m)
{
	const char **keys = NULL;
	const char *old_id = hdr(src, MESH_HDR_MSG_ID);
	int nk = 0;
	natsStatus st = natsMsgHeader_Keys(src, &keys, &nk);

	if (st == NATS_NOT_FOUND) {
		return NATS_OK; /* no headers */
	}
	for (int i = 0; st == NATS_OK && i < nk; i++) {
		const char **vals = NULL;
		int nv = 0;
		if (strncasecmp(keys[i], "Nats-", 5) == 0) {
			continue;
		}
		st = natsMsgHeader_Values(src, keys[i], &vals, &nv);
		for (int v = 0; st == NATS_OK && v < nv; v++) {
			st = natsMsgHeader_Add(m, keys[i], vals[v]);
		}
		free(vals);
	}
	free(keys);
	if (st == NATS_OK && old_id != NULL &&
	    hdr(src, MESH_HDR_CE_ID) == NULL) {
		st = natsMsgHeader_Set(m, MESH_HDR_CE_ID, old_id);
	}
	return st;
}

/* The message for partition k: src's bytes and headers, or ev's when
 * there is no src; with a reply on the partitioner's inbox. */
static mesh_err
build(struct mesh_partitioner *p, natsMsg *src, const struct mesh_event *ev,
      const char *dedup, int k, natsMsg **out)
{
	char subject[SUBJECT_MAX], reply[128], id[DEDUP_ID_MAX];
	natsMsg *m = NULL;
	natsStatus st;

	if (k < 0 || k >= p->n) {
		return mesh_err_set(MESH_EINVAL,
		                    "service '%s': partition %d: it has %d "
		                    "(0-%d)",
		                    p->service, k, p->n, p->n - 1);
	}
	snprintf(subject, sizeof(subject), MESH_PARTITION_SUBJECT, p->service,
	         k);
	mesh__rpc_reply(p->rpc, reply, sizeof(reply));
	if (src == NULL) {
		if (ev == NULL) {
			return mesh_err_set(MESH_EINVAL,
			                    "%s: a message without event or "
			                    "NATS message",
			                    p->what);
		}
		return mesh_wire_msg(subject, reply, ev,
		                     dedup ? dedup : mesh_event_id(ev), out);
	}
	if (dedup == NULL) {
		if (!dedup_of(src, id)) {
			if (ev == NULL) {
				return mesh_err_set(
				        MESH_EINVAL,
				        "%s: a message on '%s' with no "
				        "de-duplication id (not from a "
				        "stream, no Ce-Id, no Nats-Msg-Id)",
				        p->what, natsMsg_GetSubject(src));
			}
			snprintf(id, sizeof(id), "%s", mesh_event_id(ev));
		}
		dedup = id;
	}
	st = natsMsg_Create(&m, subject, reply, natsMsg_GetData(src),
	                    natsMsg_GetDataLength(src));
	if (st == NATS_OK) {
		st = headers_copy(src, m);
	}
	if (st == NATS_OK) {
		st = natsMsgHeader_Set(m, MESH_HDR_MSG_ID, dedup);
	}
	if (st != NATS_OK) {
		natsMsg_Destroy(m);
		return mesh_err_nats(st, 0, "%s: message for partition %d",
		                     p->what, k);
	}
	*out = m;
	return MESH_OK;
}

/* The outcome of a forward: ok[] by message, and the first failure. */
struct outcome {
	bool *ok;
	const size_t *idx; /* a sent message's index in the call */
	size_t first;      /* the first failed message's index; SIZE_MAX */
	mesh_err err;
	char detail[300];
};

static void
failed(struct outcome *o, size_t i, mesh_err err, const char *detail)
{
	o->ok[i] = false;
	if (i < o->first) {
		o->first = i;
		o->err = err;
		snprintf(o->detail, sizeof(o->detail), "%s", detail);
	}
}

static void
on_sent(void *arg, void *tag, const struct mesh_sent *r)
{
	struct outcome *o = arg;
	size_t i = o->idx[(uintptr_t)tag];

	if (r->err == MESH_OK) {
		o->ok[i] = true;
	} else {
		failed(o, i, r->err, r->error);
	}
}

/* Forward n messages (src[i], else ev[i]; ids: de-duplication ids or
 * NULL), a window at a time through the sender's machinery. */
static mesh_err
forward(struct mesh_partitioner *p, natsMsg *const *src,
        const struct mesh_event *const *ev, const char *const *ids,
        const int *partition, size_t n, bool *ok)
{
	size_t chunk = n < MESH_SENDER_WINDOW_MAX ? n : MESH_SENDER_WINDOW_MAX;
	natsMsg **msgs = NULL;
	size_t *idx = NULL;
	struct outcome o = {.ok = ok, .first = SIZE_MAX};

	if (n == 0) {
		return MESH_OK;
	}
	if ((msgs = malloc(chunk * sizeof(*msgs))) == NULL ||
	    (idx = malloc(chunk * sizeof(*idx))) == NULL) {
		free(msgs);
		for (size_t i = 0; i < n; i++) {
			ok[i] = false;
		}
		return mesh_err_set(MESH_ENOMEM, "%s: forwarding %zu", p->what,
		                    n);
	}
	o.idx = idx;
	for (size_t at = 0; at < n; at += chunk) {
		size_t k = 0;
		for (size_t i = at; i < n && i < at + chunk; i++) {
			mesh_err err = build(p, src[i], ev ? ev[i] : NULL,
			                     ids ? ids[i] : NULL, partition[i],
			                     &msgs[k]);
			ok[i] = false;
			if (err != MESH_OK) {
				failed(&o, i, err, mesh_errdetail());
				continue;
			}
			idx[k++] = i;
		}
		mesh__send_prepared(p->rpc, mesh_conn_nats(p->c), p->what,
		                    msgs, k, on_sent, &o);
	}
	free(msgs);
	free(idx);
	if (o.first == SIZE_MAX) {
		return MESH_OK;
	}
	return mesh_err_set(o.err, "message %zu of %zu: %s", o.first, n,
	                    o.detail);
}

mesh_err
mesh_partitioner_forward(struct mesh_partitioner *p,
                         struct mesh_source_msg *const *m,
                         const int *partition, size_t n, bool *ok)
{
	natsMsg **src = malloc((n ? n : 1) * sizeof(*src));
	const struct mesh_event **ev = malloc((n ? n : 1) * sizeof(*ev));
	mesh_err err;

	if (src == NULL || ev == NULL) {
		free(src);
		free(ev);
		for (size_t i = 0; i < n; i++) {
			ok[i] = false;
		}
		return mesh_err_set(MESH_ENOMEM, "%s: forwarding %zu", p->what,
		                    n);
	}
	for (size_t i = 0; i < n; i++) {
		src[i] = m[i]->msg;
		ev[i] = m[i]->event;
	}
	err = forward(p, src, ev, NULL, partition, n, ok);
	free(src);
	free(ev);
	return err;
}

mesh_err
mesh_partitioner_forward_msgs(struct mesh_partitioner *p, natsMsg *const *msgs,
                              const char *const *dedup_ids,
                              const int *partition, size_t n, bool *ok)
{
	return forward(p, msgs, NULL, dedup_ids, partition, n, ok);
}
