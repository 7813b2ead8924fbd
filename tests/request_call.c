/* request_call.c: see request_call.h. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mesh/service_api.h"
#include "request_call.h"

static void
copy_hdr(natsMsg *m, const char *name, char *out, size_t size)
{
	const char *v = NULL;

	out[0] = '\0';
	if (natsMsgHeader_Get(m, name, &v) == NATS_OK) {
		snprintf(out, size, "%s", v);
	}
}

static void
copy_mesh_headers(natsMsg *m, struct test_reply *r)
{
	size_t pl = strlen(MESH_REQUEST_HEADER_PREFIX);
	const char **keys = NULL;
	int n = 0;

	if (natsMsgHeader_Keys(m, &keys, &n) != NATS_OK) {
		return;
	}
	for (int i = 0; i < n && r->n_hdr < TEST_REPLY_HEADERS; i++) {
		if (strncmp(keys[i], MESH_REQUEST_HEADER_PREFIX, pl) == 0) {
			snprintf(r->hdr_name[r->n_hdr], sizeof(r->hdr_name[0]),
			         "%s", keys[i] + pl);
			copy_hdr(m, keys[i], r->hdr_value[r->n_hdr],
			         sizeof(r->hdr_value[0]));
			r->n_hdr++;
		}
	}
	free((void *)keys);
}

int
test_request_call(natsConnection *nc, const char *service, const char *route,
                  const char *path, const char *id, const char *query,
                  const char *idem, const char *body, int64_t timeout_ms,
                  struct test_reply *r)
{
	static atomic_int seq;
	char subject[128], rid[64], method[8], status[8];
	natsMsg *m = NULL, *reply = NULL;

	memset(r, 0, sizeof(*r));
	snprintf(subject, sizeof(subject), MESH_SERVICE_REQUEST_SUBJECT,
	         service);
	snprintf(rid, sizeof(rid), "rid-%d-%d", (int)getpid(),
	         atomic_fetch_add(&seq, 1));
	snprintf(method, sizeof(method), "%.*s",
	         (int)(strchr(route, ' ') - route), route);
	natsMsg_Create(&m, subject, NULL, body, body ? (int)strlen(body) : 0);
	natsMsgHeader_Set(m, MESH_REQUEST_ROUTE_HDR, route);
	natsMsgHeader_Set(m, MESH_REQUEST_METHOD_HDR, method);
	natsMsgHeader_Set(m, MESH_REQUEST_PATH_HDR, path);
	natsMsgHeader_Set(m, MESH_REQUEST_ID_HDR, rid);
	natsMsgHeader_Set(m, MESH_REQUEST_CONTENT_TYPE_HDR,
	                  "application/json");
	if (id != NULL) {
		natsMsgHeader_Set(m, MESH_REQUEST_PARAM_PREFIX "id", id);
	}
	if (query != NULL) {
		natsMsgHeader_Set(m, MESH_REQUEST_QUERY_HDR, query);
	}
	if (idem != NULL) {
		natsMsgHeader_Set(m, MESH_REQUEST_IDEMPOTENCY_HDR, idem);
	}
	r->status = -1;
	r->nats = natsConnection_RequestMsg(&reply, nc, m, timeout_ms);
	natsMsg_Destroy(m);
	if (r->nats != NATS_OK) {
		return -1;
	}
	copy_hdr(reply, MESH_REPLY_STATUS_HDR, status, sizeof(status));
	r->status = atoi(status);
	snprintf(r->body, sizeof(r->body), "%.*s",
	         natsMsg_GetDataLength(reply),
	         natsMsg_GetData(reply) ? natsMsg_GetData(reply) : "");
	copy_hdr(reply, MESH_REPLY_REPLAYED_HDR, r->replayed,
	         sizeof(r->replayed));
	copy_hdr(reply, MESH_REQUEST_ID_HDR, r->request_id,
	         sizeof(r->request_id));
	copy_hdr(reply, MESH_REQUEST_CONTENT_TYPE_HDR, r->ctype,
	         sizeof(r->ctype));
	copy_mesh_headers(reply, r);
	natsMsg_Destroy(reply);
	return r->status;
}

const char *
test_reply_header(const struct test_reply *r, const char *name)
{
	for (int i = 0; i < r->n_hdr; i++) {
		if (strcmp(r->hdr_name[i], name) == 0) {
			return r->hdr_value[i];
		}
	}
	return "";
}
