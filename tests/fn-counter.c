/* fn-counter: a service run by mesh-supervisor in the tests and the
 * ondemand bench. It consumes the queue $FN_QUEUE (default "work") as the
 * service $FN_NAME (default "fn-counter") and records each event it
 * processes in its state ("ev/ID" -> the processing time, Unix ms).
 * With $FN_TOPIC it consumes that topic instead, through the filter
 * policy $FN_FILTER (if set). $FN_CRASH set: it exits 3 at start (a crash
 * loop). $FN_SLOW_MS: each event takes this long. $FN_STARTS: a file each
 * instance appends "PID START_MS\n" to as it starts. $FN_ROUTES set: it
 * serves the request route "GET /count" too, answering
 * {"count": events processed (its "ev/" keys), "pid": its process id};
 * $FN_REQ_SLOW_MS: each request takes this long. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "mesh/service.h"

static long long
now_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static int
count_one(const void *key, size_t klen, const void *val, size_t vlen,
          void *arg)
{
	(void)key;
	(void)klen;
	(void)val;
	(void)vlen;
	(*(long *)arg)++;
	return 0;
}

static mesh_handler_result
get_count(struct mesh_ctx *ctx, const struct mesh_request *req,
          struct mesh_reply *rep, void *arg)
{
	const char *slow = getenv("FN_REQ_SLOW_MS");
	char json[64];
	long n = 0;

	(void)req;
	(void)arg;
	if (slow != NULL) {
		long ms = atol(slow);
		struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
		nanosleep(&ts, NULL);
	}
	if (mesh_state_scan(ctx, "ev/", 3, count_one, &n) != MESH_OK) {
		return mesh_reject(ctx, mesh_errdetail());
	}
	snprintf(json, sizeof(json), "{\"count\":%ld,\"pid\":%d}", n,
	         (int)getpid());
	return mesh_reply_json(rep, 200, json) == MESH_OK
	               ? MESH_HANDLER_OK
	               : mesh_reject(ctx, mesh_errdetail());
}

static mesh_handler_result
on_any(struct mesh_ctx *ctx, const struct mesh_event *ev,
       const ProtobufCMessage *msg, void *arg)
{
	const char *slow = getenv("FN_SLOW_MS");
	char key[300], val[24];
	int klen, vlen;

	(void)msg;
	(void)arg;
	if (slow != NULL) {
		long ms = atol(slow);
		struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
		nanosleep(&ts, NULL);
	}
	klen = snprintf(key, sizeof(key), "ev/%s", mesh_event_id(ev));
	vlen = snprintf(val, sizeof(val), "%lld", now_ms());
	if (mesh_state_put(ctx, key, (size_t)klen, val, (size_t)vlen) !=
	    MESH_OK) {
		return mesh_retry(ctx, 0);
	}
	return MESH_HANDLER_OK;
}

int
main(int argc, char **argv)
{
	const char *name = getenv("FN_NAME"), *queue = getenv("FN_QUEUE"),
	           *topic = getenv("FN_TOPIC"), *starts = getenv("FN_STARTS");
	struct mesh_service *s = NULL;
	int rc;

	if (getenv("FN_CRASH") != NULL) {
		fprintf(stderr, "fn-counter: FN_CRASH is set: exiting 3\n");
		return 3;
	}
	if (starts != NULL) {
		FILE *f = fopen(starts, "a");
		if (f != NULL) {
			fprintf(f, "%d %lld\n", (int)getpid(), now_ms());
			fclose(f);
		}
	}
	if (mesh_service_new(name ? name : "fn-counter", &s) != MESH_OK ||
	    (topic != NULL
	             ? mesh_service_subscribe(s, topic, getenv("FN_FILTER"),
	                                      MESH_FILTER_SCOPE_ATTRIBUTES, 0)
	             : mesh_service_consume(s, queue ? queue : "work")) !=
	            MESH_OK ||
	    mesh_service_on(s, NULL, NULL, on_any, NULL) != MESH_OK ||
	    (getenv("FN_ROUTES") != NULL &&
	     mesh_service_on_request(s, "GET /count", NULL, get_count, NULL) !=
	             MESH_OK)) {
		fprintf(stderr, "fn-counter: %s\n", mesh_errdetail());
		return 1;
	}
	rc = mesh_service_main(s, argc, argv);
	mesh_service_free(s);
	return rc;
}
