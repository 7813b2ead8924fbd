/* The scheduler's request API, with real requests to a replica (its
 * engine in a thread here) on a broker of its own: every verb, errors
 * naming the field at fault, and nothing stored on bad input. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "daemon.h"
#include "harness.h"
#include "mesh/mesh.h"

static struct mesh_conn *conn;
static struct mesh_sched_store *store;
static volatile sig_atomic_t stop;

static void *
replica(void *arg)
{
	(void)arg;
	mesh_scheduler_run(conn, store, "api", &stop, NULL, NULL);
	return NULL;
}

/* One request; the reply's text (static), or "" when none came. */
static const char *
request(const char *verb, const char *body)
{
	static char out[8192];
	char subject[128];
	natsMsg *r = NULL;

	snprintf(subject, sizeof(subject), MESH_SCHED_API_PREFIX "%s", verb);
	out[0] = '\0';
	if (natsConnection_RequestString(&r, mesh_conn_nats(conn), subject,
	                                 body, 5000) == NATS_OK) {
		snprintf(out, sizeof(out), "%.*s", natsMsg_GetDataLength(r),
		         natsMsg_GetData(r));
	}
	natsMsg_Destroy(r);
	return out;
}

int
main(void)
{
	struct test_broker b;
	struct mesh_conn_opts o;
	struct mesh_queue_attrs a;
	char state[sizeof(b.dir) + 16];
	pthread_t th;
	const char *r;

	if (!test_broker_start(&b, NULL)) {
		return tap_done();
	}
	mesh_conn_opts_init(&o);
	o.servers = b.url;
	mesh_queue_attrs_init(&a);
	snprintf(state, sizeof(state), "%s/replica", b.dir);
	if (mesh_conn_open(&o, &conn) != MESH_OK ||
	    mesh_queue_create(conn, "ticks", &a) != MESH_OK ||
	    mesh_sched_store_open(state, &store) != MESH_OK) {
		tap_diag("%s", mesh_errdetail());
		return 1;
	}
	pthread_create(&th, NULL, replica, NULL);
	/* The replica serves once it has subscribed; wait for it. */
	for (int i = 0; i < 100 && request("list", "{}")[0] == '\0'; i++) {
		usleep(100000);
	}

	r = request(
	        "create",
	        "{\"name\":\"nightly\",\"expression\":\"cron(0 2 * * ? *)\","
	        "\"tz\":\"Europe/Berlin\",\"target\":\"queue:ticks\","
	        "\"body\":\"run <aws.scheduler.scheduled-time>\","
	        "\"window\":\"15m\",\"retry_max\":3}");
	is_str(r, "{\"ok\":true,\"name\":\"nightly\"}", "create");
	r = request("info", "{\"name\":\"nightly\"}");
	has_str(r, "\"ScheduleExpressionTimezone\":\"Europe/Berlin\"",
	        "info shows the zone");
	has_str(r, "\"NextFirings\":[\"", "and the next firings");
	r = request("create",
	            "{\"name\":\"nightly\",\"expression\":\"rate(1 hour)\","
	            "\"target\":\"queue:ticks\"}");
	has_str(r, "\"code\":\"EEXIST\"", "creating it again is refused");

	/* Bad input: the field at fault named, nothing stored. */
	r = request("create",
	            "{\"name\":\"bad\",\"expression\":\"cron(0 25 * * "
	            "? *)\",\"target\":\"queue:ticks\"}");
	has_str(r, "\"code\":\"EINVAL\"", "a bad expression: EINVAL");
	has_str(r, "field 2 (hours)", "naming the field");
	r = request("create", "{\"name\":\"bad\",\"expression\":\"rate(1 "
	                      "hour)\",\"tz\":\"Nowhere/City\",\"target\":"
	                      "\"queue:ticks\"}");
	has_str(r, "\"code\":\"EINVAL\"",
	        "an unknown zone (a bad value: EINVAL)");
	has_str(r, "Nowhere/City", "naming it");
	r = request("create", "{\"name\":\"bad\",\"expression\":\"rate(1 "
	                      "hour)\",\"target\":\"queue:nosuch\"}");
	has_str(r, "queue 'nosuch': does not exist", "an unknown queue");
	r = request("create", "{\"name\":\"bad\",\"expression\":\"rate(1 "
	                      "hour)\",\"target\":\"queue:ticks\","
	                      "\"window\":\"2000m\"}");
	has_str(r, "1-1440 minutes", "a window out of range");
	r = request("create", "{\"name\":\"bad\",\"expression\":\"rate(1 "
	                      "hour)\",\"target\":\"queue:ticks\","
	                      "\"retry_max\":\"x\"}");
	has_str(r, "field 'retry_max'", "a value of the wrong kind");
	r = request("create", "{\"name\":\"bad\",\"expression\":\"rate(1 "
	                      "hour)\",\"target\":\"queue:ticks\","
	                      "\"colour\":1}");
	has_str(r, "field 'colour': unknown", "an unknown field");
	r = request("create", "{\"name\":\"bad\",\"expression\":\"rate(1 "
	                      "hour)\",\"target\":\"queue:ticks\",\"start\":"
	                      "\"2027-01-01T00:00:00Z\",\"end\":"
	                      "\"2026-01-01T00:00:00Z\"}");
	has_str(r, "the end is not after the start", "an end before start");
	r = request("create", "not json");
	has_str(r, "\"code\":\"EPARSE\"", "a body that is not JSON");
	r = request("launch", "{}");
	has_str(r, "verb 'launch'", "an unknown verb");
	r = request("list", "{}");
	is_str(r, "{\"schedules\":[\"nightly\"]}",
	       "none of the refused schedules was stored");

	/* Change it. */
	r = request("update", "{\"name\":\"nightly\",\"expression\":\"rate(2 "
	                      "hours)\"}");
	is_str(r, "{\"ok\":true,\"name\":\"nightly\"}", "update");
	has_str(request("info", "{\"name\":\"nightly\"}"), "rate(2 hours)",
	        "info shows the change");
	r = request("update", "{\"name\":\"nightly\",\"retry_max\":186}");
	has_str(r, "0-185", "an update out of range is refused");
	is_str(request("pause", "{\"name\":\"nightly\"}"),
	       "{\"ok\":true,\"name\":\"nightly\"}", "pause");
	has_str(request("info", "{\"name\":\"nightly\"}"),
	        "\"State\":\"DISABLED\"", "disables it");
	request("resume", "{\"name\":\"nightly\"}");
	has_str(request("info", "{\"name\":\"nightly\"}"),
	        "\"State\":\"ENABLED\"", "resume enables it");
	is_str(request("delete", "{\"name\":\"nightly\"}"),
	       "{\"ok\":true,\"name\":\"nightly\"}", "delete");
	r = request("info", "{\"name\":\"nightly\"}");
	has_str(r, "\"code\":\"ENOTFOUND\"", "a deleted schedule is gone");
	has_str(r, "schedule 'nightly': does not exist", "by name");
	has_str(request("delete", "{}"), "field 'name'",
	        "a request without a name says so");

	stop = 1;
	pthread_join(th, NULL);
	mesh_sched_store_close(store);
	mesh_conn_close(conn);
	test_broker_stop(&b);
	mesh_tz_shared_free();
	mesh_shutdown();
	return tap_done();
}
