/* wire.c: events as NATS messages (CloudEvents structured mode). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "internal.h"
#include "mesh/clock.h"
#include "mesh/wire.h"

/* cnats must be initialised before a message is made or freed, even
 * without a connection. */
static pthread_once_t nats_once = PTHREAD_ONCE_INIT;

static void
open_nats(void)
{
	nats_Open(-1);
}

mesh_err
mesh_wire_msg(const char *subject, const char *reply,
              const struct mesh_event *ev, const char *msg_id, natsMsg **out)
{
	uint8_t *buf;
	size_t len;
	natsMsg *m = NULL;
	natsStatus s;
	mesh_err err;

	if (subject == NULL || subject[0] == '\0' ||
	    strpbrk(subject, " \t\r\n*>") != NULL) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "subject '%s': empty, or holds white space "
		        "or wildcards",
		        subject ? subject : "");
	}
	pthread_once(&nats_once, open_nats);
	if ((err = mesh_event_pack(ev, &buf, &len)) != MESH_OK) {
		return err;
	}
	s = natsMsg_Create(&m, subject, reply, (const char *)buf, (int)len);
	free(buf);
	if (s == NATS_OK) {
		s = natsMsgHeader_Set(m, MESH_HDR_CONTENT_TYPE,
		                      MESH_EVENT_CONTENT_TYPE);
	}
	if (s == NATS_OK) {
		s = natsMsgHeader_Set(m, MESH_HDR_MSG_ID,
		                      msg_id ? msg_id : mesh_event_id(ev));
	}
	if (s == NATS_OK) {
		s = natsMsgHeader_Set(m, MESH_HDR_CE_ID, mesh_event_id(ev));
	}
	if (s == NATS_OK) {
		s = natsMsgHeader_Set(m, MESH_HDR_CE_TYPE,
		                      mesh_event_type(ev));
	}
	if (s == NATS_OK) {
		s = natsMsgHeader_Set(m, MESH_HDR_CE_SOURCE,
		                      mesh_event_source(ev));
	}
	if (s == NATS_OK && mesh_event_subject(ev) != NULL) {
		s = natsMsgHeader_Set(m, MESH_HDR_CE_SUBJECT,
		                      mesh_event_subject(ev));
	}
	if (s != NATS_OK) {
		natsMsg_Destroy(m);
		return mesh_err_nats(s, 0, "message for event %s on '%s'",
		                     mesh_event_id(ev), subject);
	}
	*out = m;
	return MESH_OK;
}

mesh_err
mesh_wire_publish(struct mesh_conn *c, const char *subject,
                  const struct mesh_event *ev, const char *msg_id,
                  uint64_t *seq, bool *duplicate)
{
	natsMsg *m;
	jsPubAck *ack = NULL;
	jsErrCode jerr = 0;
	natsStatus s;
	mesh_err err;

	if ((err = mesh_wire_msg(subject, NULL, ev, msg_id, &m)) != MESH_OK) {
		return err;
	}
	s = js_PublishMsg(&ack, mesh_conn_js(c), m, NULL, &jerr);
	natsMsg_Destroy(m);
	if (s == NATS_NO_RESPONDERS) {
		return mesh_err_set(MESH_ENOTFOUND,
		                    "publishing to '%s': no stream takes this "
		                    "subject",
		                    subject);
	}
	if (s != NATS_OK) {
		return mesh_err_nats(s, jerr, "publishing event %s to '%s'",
		                     mesh_event_id(ev), subject);
	}
	if (seq != NULL) {
		*seq = ack->Sequence;
	}
	if (duplicate != NULL) {
		*duplicate = ack->Duplicate;
	}
	jsPubAck_Destroy(ack);
	return MESH_OK;
}

mesh_err
mesh_wire_decode(natsMsg *msg, size_t max_size, struct mesh_event **out)
{
	const char *ct = NULL;

	if (natsMsgHeader_Get(msg, MESH_HDR_CONTENT_TYPE, &ct) == NATS_OK &&
	    ct != NULL && strcmp(ct, MESH_EVENT_CONTENT_TYPE) != 0) {
		return mesh_err_set(
		        MESH_EPARSE,
		        "message on '%s': Content-Type '%s' is not "
		        "%s",
		        natsMsg_GetSubject(msg), ct, MESH_EVENT_CONTENT_TYPE);
	}
	return mesh_event_parse(natsMsg_GetData(msg),
	                        (size_t)natsMsg_GetDataLength(msg), max_size,
	                        out);
}

mesh_err
mesh_wire_read(natsMsg *msg, size_t max_size, const char *fallback_id,
               struct mesh_event **out, char *why, size_t why_size)
{
	const char *ct = NULL, *id = NULL;
	struct mesh_event *ev = NULL;
	mesh_err err;

	if (why != NULL && why_size > 0) {
		why[0] = '\0';
	}
	if (natsMsgHeader_Get(msg, MESH_HDR_CONTENT_TYPE, &ct) != NATS_OK) {
		ct = NULL;
	}
	if (ct != NULL && strcmp(ct, MESH_EVENT_CONTENT_TYPE) == 0) {
		err = mesh_event_parse(natsMsg_GetData(msg),
		                       (size_t)natsMsg_GetDataLength(msg),
		                       max_size, out);
		if (err != MESH_EPARSE && err != MESH_ETOOBIG) {
			return err;
		}
		if (why != NULL && why_size > 0) {
			snprintf(why, why_size, "%s", mesh_errdetail());
		}
	}
	/* Ce-Id first: a message moved (dead-lettered, redriven) keeps its
	 * first Nats-Msg-Id there. */
	if (natsMsgHeader_Get(msg, MESH_HDR_CE_ID, &id) != NATS_OK &&
	    natsMsgHeader_Get(msg, MESH_HDR_MSG_ID, &id) != NATS_OK) {
		id = NULL;
	}
	if ((err = mesh_event_new(MESH_WIRE_RAW_TYPE, "nats", &ev)) !=
	            MESH_OK ||
	    (err = mesh_event_set_binary(
	             ev, natsMsg_GetData(msg),
	             (size_t)natsMsg_GetDataLength(msg))) != MESH_OK) {
		goto fail;
	}
	/* A foreign id or content type we cannot carry is left out, never a
	 * reason to lose the message. */
	if (id == NULL || mesh_event_set_id(ev, id) != MESH_OK) {
		if ((err = mesh_event_set_id(ev, fallback_id)) != MESH_OK) {
			goto fail;
		}
	}
	if (ct != NULL && ct[0] != '\0' &&
	    strcmp(ct, MESH_EVENT_CONTENT_TYPE) != 0) {
		(void)mesh_event_set_datacontenttype(ev, ct);
	}
	*out = ev;
	return MESH_OK;
fail:
	mesh_event_free(ev);
	return err == MESH_ENOMEM ? err
	                          : mesh_err_set(MESH_ENOMEM,
	                                         "message on '%s': cannot "
	                                         "carry it as bytes",
	                                         natsMsg_GetSubject(msg));
}

void
mesh_stream_config_init(struct mesh_conn *c, jsStreamConfig *sc,
                        const char *name, const char **subjects,
                        int n_subjects)
{
	jsStreamConfig_Init(sc);
	sc->Name = name;
	sc->Subjects = subjects;
	sc->SubjectsLen = n_subjects;
	sc->Storage = js_FileStorage;
	sc->AllowDirect = true;
	sc->Replicas = mesh_conn_replicas(c);
}

natsStatus
mesh__stream_update(struct mesh_conn *c, jsStreamConfig *cfg, jsErrCode *jerr)
{
	natsStatus s = NATS_TIMEOUT;

	/* On a cluster an update can outlast the API's wait while the
	 * stream's peers change (a replica count raised just before): the
	 * same update again is harmless. */
	for (int i = 0; i < 3 && s == NATS_TIMEOUT; i++) {
		jsStreamInfo *si = NULL;
		s = js_UpdateStream(&si, mesh_conn_js(c), cfg, NULL, jerr);
		jsStreamInfo_Destroy(si);
	}
	return s;
}

bool
mesh_js_transient(natsStatus s, jsErrCode jerr)
{
	return s == NATS_TIMEOUT || s == NATS_NO_RESPONDERS ||
	       jerr == JSClusterNotAvailErr || jerr == JSClusterNotLeaderErr ||
	       jerr == JSClusterNoPeersErr;
}

/* "replica count exceeds parent stream": a stream's replicas raised a
 * moment ago are not known yet where consumers are placed. */
#define JS_REPLICAS_EXCEED_STREAM 10126

natsStatus
mesh__consumer_put(struct mesh_conn *c, const char *stream,
                   jsConsumerConfig *cc, bool update, jsErrCode *jerr)
{
	int64_t until = mesh_mono_ms() + MESH_JS_SETTLE_MS;
	natsStatus s;

	for (;;) {
		jsConsumerInfo *ci = NULL;
		*jerr = 0;
		s = update ? js_UpdateConsumer(&ci, mesh_conn_js(c), stream,
		                               cc, NULL, jerr)
		           : js_AddConsumer(&ci, mesh_conn_js(c), stream, cc,
		                            NULL, jerr);
		jsConsumerInfo_Destroy(ci);
		if (s == NATS_OK || mesh_mono_ms() >= until ||
		    (*jerr != JS_REPLICAS_EXCEED_STREAM &&
		     !mesh_js_transient(s, *jerr))) {
			return s;
		}
		nats_Sleep(100);
	}
}

natsStatus
mesh__stream_add(struct mesh_conn *c, jsStreamConfig *cfg, jsErrCode *jerr)
{
	int64_t until = mesh_mono_ms() + MESH_JS_SETTLE_MS;
	natsStatus s;

	/* The same configuration again is no error (JetStream answers with
	 * the stream), so a request that timed out but was done is safe to
	 * make again. */
	for (;;) {
		jsStreamInfo *si = NULL;
		*jerr = 0;
		s = js_AddStream(&si, mesh_conn_js(c), cfg, NULL, jerr);
		jsStreamInfo_Destroy(si);
		si = NULL;
		if (s != NATS_OK && *jerr != JSStreamNameExistErr &&
		    *jerr != JSStreamSubjectOverlapErr &&
		    js_GetStreamInfo(&si, mesh_conn_js(c), cfg->Name, NULL,
		                     NULL) == NATS_OK) {
			/* Made meanwhile by another creator, whose create
			 * raced this one: a cluster has answered the loser
			 * otherwise than "name in use" ("not found", seen
			 * with two instances of a service making their
			 * dead-letter queue at once). Said as the callers
			 * know it. */
			jsStreamInfo_Destroy(si);
			*jerr = JSStreamNameExistErr;
			return NATS_ERR;
		}
		/* Not found, for a create: the same race, the winner's
		 * stream not there yet: asked again, it is, or ours is
		 * made. */
		if (s == NATS_OK ||
		    (!mesh_js_transient(s, *jerr) && s != NATS_NOT_FOUND) ||
		    mesh_mono_ms() >= until) {
			return s;
		}
		nats_Sleep(250);
	}
}

mesh_err
mesh_stream_ensure(struct mesh_conn *c, jsStreamConfig *cfg)
{
	jsErrCode jerr = 0;
	natsStatus s = mesh__stream_add(c, cfg, &jerr);

	if (s == NATS_OK || jerr == JSStreamNameExistErr) {
		return MESH_OK;
	}
	/* Two programs making it at once: the loser may hear that its
	 * subjects overlap the stream the winner just made. */
	if (jerr == JSStreamSubjectOverlapErr) {
		jsStreamInfo *si = NULL;
		natsStatus gs = js_GetStreamInfo(&si, mesh_conn_js(c),
		                                 cfg->Name, NULL, NULL);
		jsStreamInfo_Destroy(si);
		if (gs == NATS_OK) {
			return MESH_OK;
		}
	}
	return mesh_err_nats(s, jerr, "stream %s", cfg->Name);
}

mesh_err
mesh_name_check(const char *noun, const char *name, size_t max, bool *fifo)
{
	size_t len = name ? strlen(name) : 0;
	bool is_fifo = len > 5 && strcmp(name + len - 5, ".fifo") == 0;
	size_t base = is_fifo ? len - 5 : len;

	if (len == 0 || len > max || base == 0) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "%s name '%.100s': must be 1-%zu characters", noun,
		        name ? name : "", max);
	}
	for (size_t i = 0; i < base; i++) {
		char ch = name[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '-')) {
			return mesh_err_set(
			        MESH_EINVAL,
			        "%s name '%s': may contain only A-Z, a-z, "
			        "0-9, "
			        "'-' and '_' (and end in .fifo for a FIFO %s)",
			        noun, name, noun);
		}
	}
	if (fifo != NULL) {
		*fifo = is_fifo;
	}
	return MESH_OK;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void
mesh__names_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(names[i]);
	}
	free(names);
}

mesh_err
mesh__stream_names(struct mesh_conn *c, const char *noun,
                   const char *std_prefix, const char *fifo_prefix,
                   const char *prefix, char ***names, size_t *n)
{
	size_t ls = strlen(std_prefix), lf = strlen(fifo_prefix), k = 0;
	jsStreamNamesList *list = NULL;
	jsErrCode jerr = 0;
	natsStatus s;
	char **out;

	s = js_StreamNames(&list, mesh_conn_js(c), NULL, &jerr);
	if (s == NATS_NOT_FOUND) {
		*names = NULL;
		*n = 0;
		return MESH_OK;
	}
	if (s != NATS_OK) {
		return mesh_err_nats(s, jerr, "listing %ss", noun);
	}
	if ((out = calloc((size_t)list->Count + 1, sizeof(*out))) == NULL) {
		jsStreamNamesList_Destroy(list);
		return mesh_err_set(MESH_ENOMEM, "listing %ss", noun);
	}
	for (int i = 0; i < list->Count; i++) {
		const char *sn = list->List[i];
		char *name = NULL;
		int rc;
		if (strncmp(sn, std_prefix, ls) == 0) {
			rc = asprintf(&name, "%s", sn + ls);
		} else if (strncmp(sn, fifo_prefix, lf) == 0) {
			rc = asprintf(&name, "%s.fifo", sn + lf);
		} else {
			continue;
		}
		if (rc < 0) {
			mesh__names_free(out, k);
			jsStreamNamesList_Destroy(list);
			return mesh_err_set(MESH_ENOMEM, "listing %ss", noun);
		}
		if (prefix != NULL && strncmp(name, prefix, strlen(prefix))) {
			free(name);
			continue;
		}
		out[k++] = name;
	}
	jsStreamNamesList_Destroy(list);
	qsort(out, k, sizeof(*out), cmp_str);
	*names = out;
	*n = k;
	return MESH_OK;
}

mesh_err
mesh__batch_check(const char *what, const char *const *ids, size_t n,
                  size_t stride)
{
	if (n == 0 || n > MESH__BATCH_MAX) {
		return mesh_err_set(MESH_EINVAL,
		                    "%s: a batch holds 1-%d entries, not %zu",
		                    what, MESH__BATCH_MAX, n);
	}
	for (size_t i = 0; i < n; i++) {
		const char *id =
		        *(const char *const *)((const char *)ids + i * stride);
		size_t len = id ? strlen(id) : 0;
		if (len == 0 || len > 80 ||
		    strspn(id,
		           "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTU"
		           "VWXYZ0123456789-_") != len) {
			return mesh_err_set(
			        MESH_EINVAL,
			        "%s: batch entry id '%.80s' must be 1-80 of "
			        "A-Z, a-z, 0-9, '-' and '_'",
			        what, id ? id : "");
		}
		for (size_t k = 0; k < i; k++) {
			const char *other =
			        *(const char *const *)((const char *)ids +
			                               k * stride);
			if (strcmp(id, other) == 0) {
				return mesh_err_set(
				        MESH_EINVAL,
				        "%s: batch entry id '%s' is repeated; "
				        "ids must be distinct",
				        what, id);
			}
		}
	}
	return MESH_OK;
}

bool
mesh__id_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > MESH__ID_MAX) {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '!' || s[i] > '~') {
			return false;
		}
	}
	return true;
}

size_t
mesh__message_size(const struct mesh_event *ev, size_t *n_attrs)
{
	size_t size, len;
	const void *data;

	mesh_event_data(ev, &data, &size, NULL);
	*n_attrs = 0;
	for (size_t i = 0; i < mesh_event_ext_count(ev); i++) {
		const char *name = mesh_event_ext_at(ev, i, NULL);
		const char *type;
		const void *val;
		if (!mesh_event_attr_is_message_attr(name) ||
		    mesh_event_attr_get(ev, name, &type, &val, &len) !=
		            MESH_OK) {
			continue;
		}
		size += strlen(name) + strlen(type) + len;
		(*n_attrs)++;
	}
	return size;
}

mesh_err
mesh__ids_check(const char *what, const char *group_id, const char *dedup_id)
{
	if (group_id != NULL && !mesh__id_valid(group_id)) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "%s: MessageGroupId '%.128s' must be 1-128 "
		        "printable ASCII characters",
		        what, group_id);
	}
	if (dedup_id != NULL && !mesh__id_valid(dedup_id)) {
		return mesh_err_set(MESH_EINVAL,
		                    "%s: MessageDeduplicationId '%.128s' must "
		                    "be 1-128 printable ASCII characters",
		                    what, dedup_id);
	}
	return MESH_OK;
}

mesh_err
mesh__fifo_ids(const char *what, const struct mesh_event *ev,
               const char *group_id, const char *dedup_id, bool cbd,
               const uint8_t *key, size_t key_len,
               char dedup[MESH__ID_MAX + 1], char message_id[64])
{
	uint8_t h[32];

	if (group_id == NULL) {
		return mesh_err_set(MESH_EINVAL,
		                    "%s: MessageGroupId is required on FIFO",
		                    what);
	}
	if (dedup_id != NULL) {
		snprintf(dedup, MESH__ID_MAX + 1, "%s", dedup_id);
	} else if (cbd) {
		const void *data;
		size_t len;
		mesh_event_data(ev, &data, &len, NULL);
		crypto_hash_sha256(h, data, len);
		sodium_bin2hex(dedup, MESH__ID_MAX + 1, h, 32);
	} else {
		return mesh_err_set(MESH_EINVAL,
		                    "%s: MessageDeduplicationId is required "
		                    "unless ContentBasedDeduplication is on",
		                    what);
	}
	/* The MessageId derives from the de-duplication id, so that a
	 * duplicate's send returns the original's id. */
	crypto_generichash(h, 16, (const uint8_t *)dedup, strlen(dedup), key,
	                   key_len);
	mesh_uuid_format(h, 8, message_id);
	return MESH_OK;
}

mesh_err
mesh__stream_info(struct mesh_conn *c, const char *stream, const char *noun,
                  const char *name, jsStreamInfo **out)
{
	jsErrCode jerr = 0;
	natsStatus s =
	        js_GetStreamInfo(out, mesh_conn_js(c), stream, NULL, &jerr);

	if (s == NATS_OK) {
		return MESH_OK;
	}
	if (jerr == JSStreamNotFoundErr || s == NATS_NOT_FOUND) {
		return mesh_err_set(MESH_ENOTFOUND, "%s '%s': does not exist",
		                    noun, name);
	}
	return mesh_err_nats(s, jerr, "%s '%s'", noun, name);
}

natsStatus
mesh_kv_watch_all(kvStore *kv, kvWatcher **out)
{
	int64_t until = mesh_mono_ms() + MESH_JS_SETTLE_MS;
	natsStatus s;

	while ((s = kvStore_WatchAll(out, kv, NULL)) != NATS_OK &&
	       s != NATS_NOT_PERMITTED && s != NATS_CONNECTION_CLOSED &&
	       mesh_mono_ms() < until) {
		nats_Sleep(250);
	}
	return s;
}
