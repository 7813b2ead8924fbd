/* changelog.c: the schedules' change log and their last firings on
 * JetStream (see changelog.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "changelog.h"
#include "mesh/clock.h"
#include "mesh/err.h"
#include "mesh/wire.h"

#define HDR_OP "Mesh-Op"

static mesh_err
ensure_stream(struct mesh_conn *c, const char *name, const char *subject)
{
	jsStreamConfig sc;
	const char *subj[] = {subject};

	mesh_stream_config_init(c, &sc, name, subj, 1);
	sc.MaxMsgsPerSubject = 1;
	return mesh_stream_ensure(c, &sc);
}

mesh_err
mesh_schedules_streams(struct mesh_conn *c)
{
	mesh_err err = ensure_stream(c, MESH_SCHEDULES_STREAM,
	                             MESH_SCHEDULES_PREFIX "*");

	return err != MESH_OK ? err
	                      : ensure_stream(c, MESH_FIRINGS_STREAM,
	                                      MESH_FIRINGS_PREFIX "*");
}

/* The last message on a subject of a stream, or NULL. */
static natsMsg *
last_on(struct mesh_conn *c, const char *stream, const char *subject)
{
	natsMsg *m = NULL;

	if (js_GetLastMsg(&m, mesh_conn_js(c), stream, subject, NULL, NULL) !=
	    NATS_OK) {
		return NULL;
	}
	return m;
}

bool
mesh_schedules_is_delete(natsMsg *m)
{
	const char *op = NULL;

	return natsMsgHeader_Get(m, HDR_OP, &op) == NATS_OK && op != NULL &&
	       strcmp(op, "delete") == 0;
}

mesh_err
mesh_schedules_get(struct mesh_conn *c, const char *name,
                   struct mesh_schedule *out)
{
	char subject[128];
	natsMsg *m;
	mesh_err err;

	snprintf(subject, sizeof(subject), MESH_SCHEDULES_PREFIX "%s", name);
	m = last_on(c, MESH_SCHEDULES_STREAM, subject);
	if (m == NULL || mesh_schedules_is_delete(m)) {
		natsMsg_Destroy(m);
		return mesh_err_set(MESH_ENOTFOUND,
		                    "schedule '%s': does not exist", name);
	}
	err = mesh_schedule_from_json(natsMsg_GetData(m),
	                              (size_t)natsMsg_GetDataLength(m), out);
	natsMsg_Destroy(m);
	return err;
}

mesh_err
mesh_schedules_put(struct mesh_conn *c, const struct mesh_schedule *s,
                   bool create)
{
	struct mesh_schedule old;
	char subject[128], *json = NULL;
	natsMsg *m = NULL;
	jsPubAck *ack = NULL;
	jsErrCode jerr = 0;
	natsStatus st;
	mesh_err err;

	if ((err = mesh_schedules_streams(c)) != MESH_OK) {
		return err;
	}
	err = mesh_schedules_get(c, s->name, &old);
	if (err == MESH_OK) {
		mesh_schedule_fini(&old);
		if (create) {
			return mesh_err_set(MESH_EEXIST,
			                    "schedule '%s': already exists",
			                    s->name);
		}
	} else if (err == MESH_ENOTFOUND && !create) {
		return err;
	} else if (err != MESH_ENOTFOUND) {
		return err;
	}
	if ((err = mesh_schedule_to_json(s, &json)) != MESH_OK) {
		return err;
	}
	snprintf(subject, sizeof(subject), MESH_SCHEDULES_PREFIX "%s",
	         s->name);
	st = natsMsg_Create(&m, subject, NULL, json, (int)strlen(json));
	if (st == NATS_OK) {
		st = js_PublishMsg(&ack, mesh_conn_js(c), m, NULL, &jerr);
	}
	natsMsg_Destroy(m);
	jsPubAck_Destroy(ack);
	free(json);
	if (st != NATS_OK) {
		return mesh_err_nats(st, jerr, "schedule '%s'", s->name);
	}
	return MESH_OK;
}

mesh_err
mesh_schedules_delete(struct mesh_conn *c, const char *name)
{
	struct mesh_schedule old;
	char subject[128];
	natsMsg *m = NULL;
	jsPubAck *ack = NULL;
	jsErrCode jerr = 0;
	natsStatus st;
	mesh_err err;

	if ((err = mesh_schedules_get(c, name, &old)) != MESH_OK) {
		return err;
	}
	mesh_schedule_fini(&old);
	snprintf(subject, sizeof(subject), MESH_SCHEDULES_PREFIX "%s", name);
	st = natsMsg_Create(&m, subject, NULL, NULL, 0);
	if (st == NATS_OK) {
		st = natsMsgHeader_Set(m, HDR_OP, "delete");
	}
	if (st == NATS_OK) {
		st = js_PublishMsg(&ack, mesh_conn_js(c), m, NULL, &jerr);
	}
	natsMsg_Destroy(m);
	jsPubAck_Destroy(ack);
	if (st != NATS_OK) {
		return mesh_err_nats(st, jerr, "schedule '%s'", name);
	}
	return MESH_OK;
}

mesh_err
mesh_schedules_last_fired(struct mesh_conn *c, const char *name, int64_t *fire,
                          char *outcome, size_t size)
{
	char subject[128], buf[320];
	natsMsg *m;
	int n = 0;
	long long t = 0;

	snprintf(subject, sizeof(subject), MESH_FIRINGS_PREFIX "%s", name);
	if ((m = last_on(c, MESH_FIRINGS_STREAM, subject)) == NULL) {
		return MESH_ENOTFOUND;
	}
	snprintf(buf, sizeof(buf), "%.*s", natsMsg_GetDataLength(m),
	         natsMsg_GetData(m));
	natsMsg_Destroy(m);
	if (sscanf(buf, "%lld %n", &t, &n) < 1) {
		return MESH_ENOTFOUND;
	}
	*fire = t;
	if (outcome != NULL) {
		snprintf(outcome, size, "%s", buf + n);
	}
	return MESH_OK;
}
