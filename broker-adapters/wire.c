/* wire.c: events as NATS messages (CloudEvents structured mode). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
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
		return mesh__seterr(
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
		return mesh__seterr(MESH_ENOTFOUND,
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
		return mesh__seterr(
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
mesh_stream_ensure(struct mesh_conn *c, jsStreamConfig *cfg)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s = js_AddStream(&si, mesh_conn_js(c), cfg, NULL, &jerr);

	jsStreamInfo_Destroy(si);
	if (s != NATS_OK && jerr != JSStreamNameExistErr) {
		return mesh_err_nats(s, jerr, "stream %s", cfg->Name);
	}
	return MESH_OK;
}
