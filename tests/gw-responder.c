/* gw-responder: a stand-in service instance answering mesh-gateway's
 * requests with raw cnats (the protocol of mesh/route.h), for the gateway's
 * tests and bench. It subscribes mesh.service.SERVICE.request in the queue
 * group mesh-request and answers each request by its Mesh-Path:
 *   .../slow...        after SLOW_MS (a thread of its own), as echo;
 *   .../status/CODE    Mesh-Status CODE, as echo;
 *   .../bad-status     Mesh-Status "abc" (not an HTTP status);
 *   anything else      echo: 200, application/json, Mesh-Header-X-Echo:
 *                      yes, and a JSON object of what came: route, method,
 *                      path, query, params {}, requestId, traceparent,
 *                      idempotencyKey, contentType, headers {} (the
 *                      Mesh-Header-* ones), body (text).
 * Prints "ready", runs until its standard input closes.
 * Usage: gw-responder URL SERVICE [SLOW_MS] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>
#include <nats/nats.h>

static long slow_ms = 2000;

static const char *
get(natsMsg *m, const char *name)
{
	const char *v = NULL;

	return natsMsgHeader_Get(m, name, &v) == NATS_OK ? v : NULL;
}

static void
answer(natsConnection *nc, natsMsg *m)
{
	const char *path = get(m, "Mesh-Path"), *status = "200";
	json_t *j = json_object(), *params = json_object(),
	       *headers = json_object();
	const char **keys = NULL;
	natsMsg *r = NULL;
	char *text;
	int n = 0;

	if (path != NULL && strstr(path, "/status/") != NULL) {
		status = strstr(path, "/status/") + 8;
	} else if (path != NULL && strstr(path, "/bad-status") != NULL) {
		status = "abc";
	}
	if (natsMsgHeader_Keys(m, &keys, &n) == NATS_OK) {
		for (int i = 0; i < n; i++) {
			const char *v = get(m, keys[i]);
			if (strncasecmp(keys[i], "Mesh-Param-", 11) == 0) {
				json_object_set_new(params, keys[i] + 11,
				                    json_string(v));
			} else if (strncasecmp(keys[i], "Mesh-Header-", 12) ==
			           0) {
				json_object_set_new(headers, keys[i] + 12,
				                    json_string(v));
			}
		}
		free((void *)keys);
	}
	json_object_set_new(j, "route", json_string(get(m, "Mesh-Route")));
	json_object_set_new(j, "method", json_string(get(m, "Mesh-Method")));
	json_object_set_new(j, "path", json_string(path));
	json_object_set_new(j, "query", json_string(get(m, "Mesh-Query")));
	json_object_set_new(j, "params", params);
	json_object_set_new(j, "headers", headers);
	json_object_set_new(j, "requestId",
	                    json_string(get(m, "Mesh-Request-Id")));
	json_object_set_new(j, "traceparent",
	                    json_string(get(m, "traceparent")));
	json_object_set_new(j, "idempotencyKey",
	                    json_string(get(m, "Idempotency-Key")));
	json_object_set_new(j, "contentType",
	                    json_string(get(m, "Content-Type")));
	json_object_set_new(
	        j, "body",
	        json_stringn(natsMsg_GetData(m) ? natsMsg_GetData(m) : "",
	                     (size_t)natsMsg_GetDataLength(m)));
	text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(j);
	if (text != NULL && natsMsg_GetReply(m) != NULL &&
	    natsMsg_Create(&r, natsMsg_GetReply(m), NULL, text,
	                   (int)strlen(text)) == NATS_OK) {
		natsMsgHeader_Set(r, "Mesh-Status", status ? status : "200");
		natsMsgHeader_Set(r, "Content-Type", "application/json");
		if (get(m, "Mesh-Request-Id") != NULL) {
			natsMsgHeader_Set(r, "Mesh-Request-Id",
			                  get(m, "Mesh-Request-Id"));
		}
		natsMsgHeader_Set(r, "Mesh-Header-X-Echo", "yes");
		natsConnection_PublishMsg(nc, r);
	}
	natsMsg_Destroy(r);
	free(text);
}

struct later {
	natsConnection *nc;
	natsMsg *m;
};

static void *
slow_main(void *arg)
{
	struct later *l = arg;

	usleep((useconds_t)slow_ms * 1000);
	answer(l->nc, l->m);
	natsMsg_Destroy(l->m);
	free(l);
	return NULL;
}

static void
on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
	const char *path = get(m, "Mesh-Path");
	struct later *l;
	pthread_t t;

	(void)sub;
	(void)arg;
	if (path != NULL && strstr(path, "/slow") != NULL &&
	    (l = malloc(sizeof(*l))) != NULL) {
		l->nc = nc;
		l->m = m;
		if (pthread_create(&t, NULL, slow_main, l) == 0) {
			pthread_detach(t);
			return;
		}
		free(l);
	}
	answer(nc, m);
	natsMsg_Destroy(m);
}

int
main(int argc, char **argv)
{
	natsConnection *nc = NULL;
	natsSubscription *sub = NULL;
	char subject[256], c;
	natsStatus s;

	if (argc < 3 || argc > 4) {
		fprintf(stderr, "Usage: gw-responder URL SERVICE [SLOW_MS]\n");
		return 2;
	}
	if (argc == 4) {
		slow_ms = atol(argv[3]);
	}
	snprintf(subject, sizeof(subject), "mesh.service.%s.request", argv[2]);
	if ((s = natsConnection_ConnectTo(&nc, argv[1])) != NATS_OK ||
	    (s = natsConnection_QueueSubscribe(&sub, nc, subject,
	                                       "mesh-request", on_msg,
	                                       NULL)) != NATS_OK ||
	    (s = natsSubscription_SetPendingLimits(sub, -1, -1)) != NATS_OK ||
	    (s = natsConnection_Flush(nc)) != NATS_OK) {
		fprintf(stderr, "gw-responder: %s\n", natsStatus_GetText(s));
		natsConnection_Destroy(nc);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	while (read(0, &c, 1) > 0) {
	}
	natsSubscription_Unsubscribe(sub);
	natsSubscription_Destroy(sub);
	natsConnection_Destroy(nc);
	nats_Close();
	return 0;
}
