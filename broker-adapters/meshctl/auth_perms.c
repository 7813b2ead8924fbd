/* auth_perms.c: the NATS permissions of the mesh's identities (see
 * auth_perms.h). The subjects are those the library and the programs use
 * (queue*.c, topic.c, subscription.c, records.c, partition.c, lease.c,
 * function.c, route.c, services/runtime, scheduler/, services/supervisor,
 * services/gateway), checked
 * against a nats-server trace of the shop. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth_perms.h"
#include "mesh/function.h"
#include "mesh/identity.h"
#include "mesh/lease.h"
#include "mesh/partition.h"
#include "mesh/queue.h"
#include "mesh/route.h"
#include "mesh/service_api.h"
#include "mesh/subscription.h"

#define SUBS_KV     "KV_MESH_SUBSCRIPTIONS"
#define SUBS_PREFIX "$KV.MESH_SUBSCRIPTIONS."

bool
auth_reserved(const char *name)
{
	return strcmp(name, AUTH_ADMIN) == 0 ||
	       strcmp(name, AUTH_ROUTER) == 0 ||
	       strcmp(name, AUTH_SCHEDULER) == 0 ||
	       strcmp(name, AUTH_SUPERVISOR) == 0 ||
	       strcmp(name, AUTH_GATEWAY) == 0;
}

/* Allow p's direction ("publish" or "subscribe") the subject made of fmt,
 * for why; a subject granted already keeps its first reason. */
__attribute__((format(printf, 4, 5))) static void
grant(json_t *p, const char *dir, const char *why, const char *fmt, ...)
{
	json_t *list = json_object_get(p, dir), *g;
	char subject[512];
	size_t i;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(subject, sizeof(subject), fmt, ap);
	va_end(ap);
	json_array_foreach(list, i, g)
	{
		if (strcmp(json_string_value(json_object_get(g, "subject")),
		           subject) == 0) {
			return;
		}
	}
	json_array_append_new(
	        list, json_pack("{s:s, s:s}", "subject", subject, "why", why));
}

#define PUB(p, why, ...) grant(p, "publish", why, __VA_ARGS__)
#define SUB(p, why, ...) grant(p, "subscribe", why, __VA_ARGS__)

static void
broad(json_t *p, const char *why)
{
	json_array_append_new(json_object_get(p, "broad"), json_string(why));
}

static json_t *
perms_new(const char *name, const char *role, const char *public_key,
          bool responses)
{
	json_t *p =
	        json_pack("{s:s, s:s, s:s, s:[], s:[], s:b, s:[]}", "name",
	                  name, "role", role, "public", public_key, "publish",
	                  "subscribe", "allow_responses", responses, "broad");

	if (p != NULL && strcmp(role, "admin") != 0) {
		SUB(p,
		    "replies to its own requests (its connection's inbox "
		    "prefix is _INBOX.<its public key>)",
		    "_INBOX.%s.>", public_key);
	}
	return p;
}

/* A key-value bucket read by key and written: made when missing (a
 * create never changes an existing bucket), its info, direct gets of
 * keys, and puts of keys (each a NATS subject). */
static void
bucket_use(json_t *p, const char *bucket, const char *why)
{
	char w[512];

	snprintf(w, sizeof(w),
	         "%s: the bucket %s made when missing (a "
	         "create never changes one that exists)",
	         why, bucket);
	PUB(p, w, "$JS.API.STREAM.CREATE.KV_%s", bucket);
	snprintf(w, sizeof(w), "%s: the bucket %s opened", why, bucket);
	PUB(p, w, "$JS.API.STREAM.INFO.KV_%s", bucket);
}

/* Watching a bucket: an ordered push consumer (ephemeral: cnats 3.4 asks
 * for it on the stream, not by name), its flow control replies. */
static void
bucket_watch(json_t *p, const char *bucket, const char *why)
{
	char w[512];

	snprintf(w, sizeof(w),
	         "%s: a watch of the bucket %s (an ephemeral "
	         "ordered consumer; the keys it watches are in the request "
	         "body, which permissions cannot see)",
	         why, bucket);
	PUB(p, w, "$JS.API.CONSUMER.CREATE.KV_%s", bucket);
	PUB(p, w, "$JS.FC.KV_%s.>", bucket);
	PUB(p, w, "$JS.API.CONSUMER.MSG.NEXT.KV_%s.*", bucket);
	PUB(p, w, "$JS.ACK.KV_%s.*.>", bucket);
	PUB(p, w, "$JS.API.CONSUMER.DELETE.KV_%s.*", bucket);
}

/* Leases (lease.c): the bucket MESH_LEASES, keys OWNER.>. */
static void
leases(json_t *p, const char *owner, const char *why)
{
	char w[512];

	bucket_use(p, "MESH_LEASES", why);
	bucket_watch(p, "MESH_LEASES", why);
	snprintf(w, sizeof(w), "%s: its own leases and membership (keys %s.*)",
	         why, owner);
	PUB(p, w, "$KV.MESH_LEASES.%s.>", owner);
	PUB(p, w, "$JS.API.DIRECT.GET.KV_MESH_LEASES.$KV.MESH_LEASES.%s.>",
	    owner);
}

/* Signed events (sign.c): a source that requires signers (RequireSigners,
 * which may be set at any time) has its signers' public keys read from
 * the key directory. */
static void
signer_keys(json_t *p)
{
	bucket_use(p, MESH_KEYS_BUCKET,
	           "signed events: the signers' public keys");
	PUB(p, "signed events: a signer's public key read",
	    "$JS.API.DIRECT.GET.KV_" MESH_KEYS_BUCKET ".>");
}

/* Sealed payloads (seal.c): a service opens its sources' sealed events
 * and seals what it emits to encrypted targets with data keys read from
 * MESH_DATA_KEYS. Every record is readable: each data key in it is sealed
 * to its readers, so a record opens only for them. */
static void
data_keys(json_t *p)
{
	PUB(p, "sealed payloads: the data keys' bucket opened",
	    "$JS.API.STREAM.INFO.KV_" MESH_DATA_KEYS_BUCKET);
	PUB(p,
	    "sealed payloads: a target's data keys read (each sealed to its "
	    "readers)",
	    "$JS.API.DIRECT.GET.KV_" MESH_DATA_KEYS_BUCKET ".>");
}

json_t *
auth_perms_daemon(const char *name, const char *public_key)
{
	json_t *p;

	if (strcmp(name, AUTH_ADMIN) == 0) {
		p = perms_new(name, "admin", public_key, true);
		PUB(p,
		    "the operator: every queue, topic, bucket, stream and API",
		    ">");
		SUB(p, "the operator: every subject", ">");
		broad(p, "the admin may do anything: keep its seed off the "
		         "machines that run services");
		return p;
	}
	if (strcmp(name, AUTH_ROUTER) == 0) {
		p = perms_new(name, "mesh-router", public_key, false);
		signer_keys(p);
		bucket_use(p, "MESH_SUBSCRIPTIONS", "the subscriptions");
		bucket_watch(p, "MESH_SUBSCRIPTIONS", "the subscriptions");
		PUB(p, "the subscriptions: a record read",
		    "$JS.API.DIRECT.GET." SUBS_KV ".>");
		SUB(p,
		    "a forwarded subscription's record watched for changes "
		    "(any: it follows every subscription, whose records it "
		    "may read anyway)",
		    SUBS_PREFIX ">");
		PUB(p, "the topics and queues listed", "$JS.API.STREAM.NAMES");
		PUB(p,
		    "a topic's or queue's stream opened (any: it follows "
		    "every subscription)",
		    "$JS.API.STREAM.INFO.*");
		PUB(p,
		    "a subscribed topic's subscriptions counted (its info: "
		    "the consumers listed, read only)",
		    "$JS.API.CONSUMER.LIST.*");
		PUB(p,
		    "a subscription's consumer: taking its messages (any "
		    "topic's stream, any S_<hex>)",
		    "$JS.API.CONSUMER.MSG.NEXT.*.*");
		PUB(p, "a subscription's consumer: its state",
		    "$JS.API.CONSUMER.INFO.*.*");
		PUB(p,
		    "a subscription's consumer: acknowledging what was "
		    "forwarded",
		    "$JS.ACK.*.*.>");
		PUB(p, "forwarding to the subscribed queues (any queue)",
		    "mesh.queue.>");
		broad(p, "NATS wildcards match whole tokens, so 'the streams "
		         "TP_* and TF_*' and 'the consumers S_*' cannot be "
		         "said: the router may take and acknowledge messages "
		         "of any consumer, and send to any queue; it may not "
		         "create, change or delete a stream or consumer, nor "
		         "publish to a topic");
		return p;
	}
	if (strcmp(name, AUTH_SCHEDULER) == 0) {
		p = perms_new(name, "mesh-scheduler", public_key, true);
		SUB(p, "its request API (meshctl schedule)",
		    "mesh.scheduler.api.*");
		PUB(p, "the change log of schedules: made when missing",
		    "$JS.API.STREAM.CREATE.MESH_SCHEDULES");
		PUB(p, "the record of firings: made when missing",
		    "$JS.API.STREAM.CREATE.MESH_SCHEDULE_FIRINGS");
		PUB(p, "the record of firings: opened",
		    "$JS.API.STREAM.INFO.MESH_SCHEDULE_FIRINGS");
		PUB(p, "the change log: opened",
		    "$JS.API.STREAM.INFO.MESH_SCHEDULES");
		PUB(p, "the change log: a record read",
		    "$JS.API.STREAM.MSG.GET.MESH_SCHEDULES");
		PUB(p, "the record of firings: a record read",
		    "$JS.API.STREAM.MSG.GET.MESH_SCHEDULE_FIRINGS");
		PUB(p, "a replica's consumer of the change log",
		    "$JS.API.CONSUMER.DURABLE.CREATE.MESH_SCHEDULES.*");
		PUB(p, "a replica's consumer of the change log",
		    "$JS.API.CONSUMER.INFO.MESH_SCHEDULES.*");
		PUB(p, "a replica's consumer of the change log (made again)",
		    "$JS.API.CONSUMER.DELETE.MESH_SCHEDULES.*");
		PUB(p, "a replica's consumer of the change log",
		    "$JS.API.CONSUMER.MSG.NEXT.MESH_SCHEDULES.*");
		PUB(p, "a replica's consumer of the change log",
		    "$JS.ACK.MESH_SCHEDULES.*.>");
		PUB(p, "the change log of schedules: writing it",
		    "mesh.schedules.def.>");
		PUB(p, "the record of firings: writing it",
		    "mesh.schedules.fired.>");
		PUB(p, "a target checked (any queue's or topic's stream)",
		    "$JS.API.STREAM.INFO.*");
		PUB(p, "a target queue's attributes (its consumer)",
		    "$JS.API.CONSUMER.INFO.*.receivers");
		PUB(p, "firing into a queue (any)", "mesh.queue.>");
		PUB(p, "firing into a queue with a delay (any)",
		    "mesh.delay.>");
		PUB(p, "firing into a topic (any)", "mesh.topic.>");
		broad(p, "a schedule may target any queue or topic, and "
		         "schedules change at run time: the scheduler may "
		         "publish to every queue and topic; it reads none");
		return p;
	}
	if (strcmp(name, AUTH_SUPERVISOR) == 0) {
		p = perms_new(name, "mesh-supervisor", public_key, true);
		SUB(p, "its status API (meshctl function info)",
		    "mesh.supervisor.info.*");
		SUB(p, "its status API (meshctl function list)",
		    MESH_SUPERVISOR_LIST_SUBJECT);
		bucket_use(p, MESH_FUNCTIONS_BUCKET, "the functions");
		bucket_watch(p, MESH_FUNCTIONS_BUCKET, "the functions");
		PUB(p, "the functions: a definition read",
		    "$JS.API.DIRECT.GET.KV_" MESH_FUNCTIONS_BUCKET ".>");
		leases(p, "mesh-supervisor",
		       "sharing the functions among supervisors");
		PUB(p, "a function's subscriptions: their records read",
		    "$JS.API.DIRECT.GET." SUBS_KV ".>");
		PUB(p, "a function's subscriptions: the bucket opened",
		    "$JS.API.STREAM.INFO." SUBS_KV);
		PUB(p, "the streams listed", "$JS.API.STREAM.NAMES");
		PUB(p, "a function's source: its stream (backlog)",
		    "$JS.API.STREAM.INFO.*");
		PUB(p, "a function's source: its consumer (backlog)",
		    "$JS.API.CONSUMER.INFO.*.*");
		SUB(p,
		    "waking a function at an event on its topic (any topic)",
		    "mesh.topic.>");
		SUB(p,
		    "waking a function at an event on its queue (any queue)",
		    "mesh.queue.>");
		SUB(p,
		    "holding a request to a function at zero, its queue group "
		    "mesh-request (any function's)",
		    "mesh.service.*.request");
		PUB(p,
		    "handing held requests to a started instance, and asking "
		    "whether one answers yet (any function's)",
		    "mesh.service.*.request");
		PUB(p, "the instances' request counts (any function's stats)",
		    "mesh.service.*.stats");
		broad(p, "functions change at run time and may consume any "
		         "queue or topic: the supervisor sees every queue's "
		         "and topic's messages go by (its wake subscriptions) "
		         "and reads every consumer's backlog; it takes, "
		         "acknowledges and publishes none. A function at zero "
		         "may serve requests: the supervisor takes those that "
		         "come before an instance runs and hands them on");
		return p;
	}
	if (strcmp(name, AUTH_GATEWAY) == 0) {
		/* No allow_responses: it asks services, it answers no one.
		 * JetStream's acks and the services' replies (and NATS's
		 * no-responders) come to its inbox, granted by perms_new. */
		p = perms_new(name, "mesh-gateway", public_key, false);
		bucket_use(p, MESH_ROUTES_BUCKET, "the routes");
		bucket_watch(p, MESH_ROUTES_BUCKET, "the routes");
		PUB(p,
		    "the routes: the watch's stream found by its subject "
		    "(cnats asks for the streams' names; names only)",
		    "$JS.API.STREAM.NAMES");
		PUB(p,
		    "a route's queue or topic opened (any: routes change at "
		    "run time)",
		    "$JS.API.STREAM.INFO.*");
		PUB(p,
		    "a queue route: sending its requests' events (any queue)",
		    "mesh.queue.>");
		PUB(p,
		    "a queue route: an event to a queue with a delivery delay "
		    "(any queue)",
		    "mesh.delay.>");
		PUB(p,
		    "a topic route: publishing its requests' events (any "
		    "topic)",
		    "mesh.topic.>");
		PUB(p,
		    "a service route: a request to the service's instances "
		    "(any service)",
		    MESH_SERVICE_REQUEST_SUBJECT, "*");
		broad(p,
		      "routes target any queue, topic or service and change "
		      "at run time (meshctl route): the gateway may send to "
		      "every queue and topic and ask every service; it "
		      "reads no queue, topic or state, and may write no "
		      "route");
		return p;
	}
	return NULL;
}

/* What consuming the topic t as service svc needs. */
static void
topic_source(json_t *p, const char *svc, const char *t)
{
	char stream[300], consumer[24], id[MESH_SUBSCRIPTION_ID_MAX + 1];
	char why[512];
	size_t n = strlen(t);
	const char *hex;

	if (n > 5 && strcmp(t + n - 5, ".fifo") == 0) {
		snprintf(stream, sizeof(stream), "TF_%.*s", (int)(n - 5), t);
	} else {
		snprintf(stream, sizeof(stream), "TP_%s", t);
	}
	mesh_subscription_names(t, MESH_SUB_SERVICE, svc, id, consumer);
	hex = strrchr(id, ':') + 1;
	snprintf(why, sizeof(why), "source topic:%s: the topic opened", t);
	PUB(p, why, "$JS.API.STREAM.INFO.%s", stream);
	snprintf(why, sizeof(why),
	         "source topic:%s: its subscription's consumer %s made, "
	         "opened, read",
	         t, consumer);
	PUB(p, why, "$JS.API.CONSUMER.DURABLE.CREATE.%s.%s", stream, consumer);
	PUB(p, why, "$JS.API.CONSUMER.INFO.%s.%s", stream, consumer);
	PUB(p, why, "$JS.API.CONSUMER.MSG.NEXT.%s.%s", stream, consumer);
	snprintf(why, sizeof(why),
	         "source topic:%s: acknowledging its subscription's messages",
	         t);
	PUB(p, why, "$JS.ACK.%s.%s.>", stream, consumer);
	snprintf(why, sizeof(why),
	         "source topic:%s: the topic's consumers listed (names and "
	         "counts, no messages)",
	         t);
	PUB(p, why, "$JS.API.CONSUMER.LIST.%s", stream);
	snprintf(why, sizeof(why),
	         "source topic:%s: its subscription's record (%s) written, "
	         "read and watched",
	         t, id);
	bucket_use(p, "MESH_SUBSCRIPTIONS", "subscriptions");
	PUB(p, why, SUBS_PREFIX "%s.%s", t, hex);
	PUB(p, why, "$JS.API.DIRECT.GET." SUBS_KV "." SUBS_PREFIX "%s.%s", t,
	    hex);
	SUB(p, why, SUBS_PREFIX "%s.%s", t, hex);
}

/* What consuming the queue q needs (its receivers' consumer, its delayed
 * messages' mover). */
static void
queue_source(json_t *p, const char *q, const char *role)
{
	size_t n = strlen(q);
	bool fifo = n > 5 && strcmp(q + n - 5, ".fifo") == 0;
	int base = (int)n - (fifo ? 5 : 0);
	char why[512];

	snprintf(why, sizeof(why), "%s queue:%s: the queue opened", role, q);
	PUB(p, why, "$JS.API.STREAM.INFO.%s_%.*s", fifo ? "MF" : "MQ", base,
	    q);
	snprintf(why, sizeof(why),
	         "%s queue:%s: receiving and deleting its messages (%s)", role,
	         q, fifo ? "a consumer per partition" : "consumer receivers");
	if (fifo) {
		PUB(p, why, "$JS.API.CONSUMER.MSG.NEXT.MF_%.*s.*", base, q);
		PUB(p, why, "$JS.API.CONSUMER.INFO.MF_%.*s.*", base, q);
		PUB(p, why, "$JS.ACK.MF_%.*s.*.>", base, q);
	} else {
		PUB(p, why, "$JS.API.CONSUMER.MSG.NEXT.MQ_%s.receivers", q);
		PUB(p, why, "$JS.API.CONSUMER.INFO.MQ_%s.receivers", q);
		PUB(p, why, "$JS.ACK.MQ_%s.receivers.>", q);
	}
	snprintf(why, sizeof(why),
	         "%s queue:%s: moving its delayed messages that are due into "
	         "it",
	         role, q);
	PUB(p, why, "$JS.API.STREAM.INFO.%s_%.*s", fifo ? "MFD" : "MQD", base,
	    q);
	PUB(p, why, "$JS.API.CONSUMER.MSG.NEXT.%s_%.*s.mover",
	    fifo ? "MFD" : "MQD", base, q);
	PUB(p, why, "$JS.ACK.%s_%.*s.mover.>", fifo ? "MFD" : "MQD", base, q);
	PUB(p, why, "mesh.queue.%s%s", q, fifo ? ".*" : "");
}

/* What emitting to target ("topic:X" / "queue:Y") needs. */
static void
emit_target(json_t *p, const char *target, const char *role)
{
	const char *name = target + 6;
	size_t n = strlen(name);
	bool fifo = n > 5 && strcmp(name + n - 5, ".fifo") == 0;
	int base = (int)n - (fifo ? 5 : 0);
	char why[512];

	snprintf(why, sizeof(why), "%s %s: opened", role, target);
	if (strncmp(target, "topic:", 6) == 0) {
		PUB(p, why, "$JS.API.STREAM.INFO.%s_%.*s", fifo ? "TF" : "TP",
		    base, name);
		snprintf(why, sizeof(why), "%s %s: publishing to it", role,
		         target);
		PUB(p, why, "mesh.topic.%s", name);
		return;
	}
	PUB(p, why, "$JS.API.STREAM.INFO.%s_%.*s", fifo ? "MF" : "MQ", base,
	    name);
	snprintf(why, sizeof(why),
	         "%s %s: sending to it (and to its delayed "
	         "messages)",
	         role, target);
	PUB(p, why, "mesh.queue.%s%s", name, fifo ? ".*" : "");
	PUB(p, why, "mesh.delay.%s", name);
}

/* What partitioning svc needs (partition.c, lease.c, runtime/clog.c):
 * granted to every service, since --partitions (MESH_PARTITIONS) decides
 * at start, and all of it is the service's own. */
static void
partitions(json_t *p, const char *svc)
{
	const char *why = "partitioned (--partitions): its partitions' stream "
	                  "MESH_PART_<svc>, their consumers p<K>, forwarding";

	PUB(p, why, "$JS.API.STREAM.CREATE.MESH_PART_%s", svc);
	PUB(p, why, "$JS.API.STREAM.INFO.MESH_PART_%s", svc);
	PUB(p, why, "$JS.API.CONSUMER.DURABLE.CREATE.MESH_PART_%s.*", svc);
	PUB(p, why, "$JS.API.CONSUMER.INFO.MESH_PART_%s.*", svc);
	PUB(p, why, "$JS.API.CONSUMER.LIST.MESH_PART_%s", svc);
	PUB(p, why, "$JS.API.CONSUMER.MSG.NEXT.MESH_PART_%s.*", svc);
	PUB(p, why, "$JS.ACK.MESH_PART_%s.*.>", svc);
	PUB(p, why, "mesh.part.%s.*", svc);
	why = "partitioned: each partition's changelog MESH_CL_<svc> and "
	      "snapshots MESH_SNAP_<svc>: written, read back at a restore, "
	      "trimmed";
	PUB(p, why, "$JS.API.STREAM.CREATE.MESH_CL_%s", svc);
	PUB(p, why, "$JS.API.STREAM.CREATE.MESH_SNAP_%s", svc);
	PUB(p, why, "$JS.API.STREAM.INFO.MESH_CL_%s", svc);
	PUB(p, why, "$JS.API.STREAM.INFO.MESH_SNAP_%s", svc);
	PUB(p, why, "$JS.API.STREAM.MSG.GET.MESH_CL_%s", svc);
	PUB(p, why, "$JS.API.STREAM.MSG.GET.MESH_SNAP_%s", svc);
	PUB(p, why, "$JS.API.STREAM.PURGE.MESH_CL_%s", svc);
	PUB(p, why, "$JS.API.STREAM.PURGE.MESH_SNAP_%s", svc);
	PUB(p, why, "$JS.API.CONSUMER.CREATE.MESH_CL_%s", svc);
	PUB(p, why, "$JS.API.CONSUMER.CREATE.MESH_SNAP_%s", svc);
	PUB(p, why, "$JS.API.CONSUMER.DELETE.MESH_CL_%s.*", svc);
	PUB(p, why, "$JS.API.CONSUMER.DELETE.MESH_SNAP_%s.*", svc);
	/* The readers' ephemeral consumers: fetched and acknowledged. */
	PUB(p, why, "$JS.API.CONSUMER.MSG.NEXT.MESH_CL_%s.*", svc);
	PUB(p, why, "$JS.API.CONSUMER.MSG.NEXT.MESH_SNAP_%s.*", svc);
	PUB(p, why, "$JS.ACK.MESH_CL_%s.>", svc);
	PUB(p, why, "$JS.ACK.MESH_SNAP_%s.>", svc);
	PUB(p, why, "$JS.FC.MESH_CL_%s.>", svc);
	PUB(p, why, "$JS.FC.MESH_SNAP_%s.>", svc);
	PUB(p, why, "mesh.cl.%s.*", svc);
	PUB(p, why, "mesh.snap.%s.>", svc);
	why = "partitioned: its record (the partition count) in MESH_SERVICES";
	bucket_use(p, MESH_PARTITIONS_BUCKET, "partitioned");
	PUB(p, why, "$KV." MESH_PARTITIONS_BUCKET ".%s", svc);
	PUB(p, why,
	    "$JS.API.DIRECT.GET.KV_" MESH_PARTITIONS_BUCKET
	    ".$KV." MESH_PARTITIONS_BUCKET ".%s",
	    svc);
	leases(p, svc, "partitioned: who owns which partition");
}

mesh_err
auth_perms_service(const json_t *d, const char *public_key, json_t **out)
{
	const char *svc = json_string_value(json_object_get(d, "service"));
	const char *dlq = json_string_value(json_object_get(d, "dlq"));
	json_t *sources = json_object_get(d, "sources");
	json_t *emits = json_object_get(d, "emits");
	json_t *p, *v;
	size_t i;

	if (svc == NULL || auth_reserved(svc) || !json_is_array(sources)) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "not a service's --describe (a \"service\" "
		        "name other than %s, %s, %s, %s and %s, and "
		        "\"sources\")",
		        AUTH_ADMIN, AUTH_ROUTER, AUTH_SCHEDULER,
		        AUTH_SUPERVISOR, AUTH_GATEWAY);
	}
	if (!json_is_array(emits) || dlq == NULL) {
		return mesh_err_set(MESH_EINVAL,
		                    "service '%s' declares no \"emits\" or "
		                    "\"dlq\": a program built before "
		                    "mesh_service_emits (rebuild it)",
		                    svc);
	}
	if ((p = perms_new(svc, "service", public_key, true)) == NULL) {
		return mesh_err_set(MESH_ENOMEM, "service '%s'", svc);
	}
	json_object_set_new(p, "describe", json_deep_copy(d));
	signer_keys(p);
	data_keys(p);
	SUB(p, "its stats (meshctl stats SERVICE)", MESH_SERVICE_STATS_SUBJECT,
	    svc);
	SUB(p, "every service's stats (meshctl stats)",
	    MESH_SERVICES_STATS_SUBJECT);
	SUB(p, "its state API (meshctl state get|scan|backup)",
	    "mesh.service.%s.state.*", svc);
	SUB(p, "its partitions' state API (meshctl state --partition)",
	    "mesh.service.%s.*.state.*", svc);
	SUB(p, "a backup's chunks, asked of the instance making it",
	    "mesh.service.%s.instance.*.backup", svc);
	if (json_array_size(json_object_get(d, "routes")) > 0) {
		SUB(p,
		    "its request routes (mesh_service_on_request: "
		    "mesh-gateway's calls)",
		    MESH_SERVICE_REQUEST_SUBJECT, svc);
	}
	json_array_foreach(sources, i, v)
	{
		const char *kind =
		        json_string_value(json_object_get(v, "kind"));
		const char *name =
		        json_string_value(json_object_get(v, "name"));
		if (kind == NULL || name == NULL) {
			json_decref(p);
			return mesh_err_set(MESH_EINVAL,
			                    "service '%s': source %zu has no "
			                    "kind or name",
			                    svc, i);
		}
		const char *redrive =
		        json_string_value(json_object_get(v, "redrive_dlq"));
		if (strcmp(kind, "topic") == 0) {
			topic_source(p, svc, name);
		} else {
			queue_source(p, name, "source");
		}
		if (redrive != NULL) {
			char t[8 + MESH_QUEUE_NAME_MAX], role[128];
			snprintf(t, sizeof(t), "queue:%s", redrive);
			snprintf(role, sizeof(role),
			         "source queue:%.64s's redrive dead-letter "
			         "queue",
			         name);
			emit_target(p, t, role);
		}
	}
	json_array_foreach(emits, i, v)
	{
		const char *t = json_string_value(v);
		if (t == NULL || (strncmp(t, "topic:", 6) != 0 &&
		                  strncmp(t, "queue:", 6) != 0)) {
			json_decref(p);
			return mesh_err_set(MESH_EINVAL,
			                    "service '%s': emit target %zu is "
			                    "not topic:NAME or queue:NAME",
			                    svc, i);
		}
		emit_target(p, t, "target");
	}
	{
		char why[300];
		size_t n = strlen(dlq);
		bool fifo = n > 5 && strcmp(dlq + n - 5, ".fifo") == 0;
		int base = (int)n - (fifo ? 5 : 0);
		const char *s = fifo ? "MF" : "MQ", *ds = fifo ? "MFD" : "MQD";

		snprintf(why, sizeof(why),
		         "its dead-letter queue %s: made when missing", dlq);
		PUB(p, why, "$JS.API.STREAM.CREATE.%s_%.*s", s, base, dlq);
		PUB(p, why, "$JS.API.STREAM.CREATE.%s_%.*s", ds, base, dlq);
		/* Two instances making it at once: the loser asks whether
		 * the stream it could not make exists (wire.c). */
		PUB(p, why, "$JS.API.STREAM.INFO.%s_%.*s", ds, base, dlq);
		PUB(p, why, "$JS.API.CONSUMER.DURABLE.CREATE.%s_%.*s.%s", s,
		    base, dlq, fifo ? "*" : "receivers");
		PUB(p, why, "$JS.API.CONSUMER.DURABLE.CREATE.%s_%.*s.mover",
		    ds, base, dlq);
		snprintf(why, sizeof(why), "queue:%s", dlq);
		emit_target(p, why, "its dead-letter queue");
	}
	partitions(p, svc);
	*out = p;
	return MESH_OK;
}

static void
conf_list(FILE *f, const json_t *list)
{
	json_t *g;
	size_t i;

	fputs("[", f);
	json_array_foreach(list, i, g)
	{
		fprintf(f, "%s\n          \"%s\"", i ? "," : "",
		        json_string_value(json_object_get(g, "subject")));
	}
	fputs("\n        ]", f);
}

char *
auth_conf_text(const json_t *identities)
{
	char *buf = NULL;
	size_t len = 0, i;
	FILE *f = open_memstream(&buf, &len);
	json_t *p;

	if (f == NULL) {
		return NULL;
	}
	fputs("# The mesh's users, by NKey, each with the NATS subjects it "
	      "may\n"
	      "# publish and subscribe to (written by meshctl auth init; "
	      "`meshctl auth\n# show NAME` says why each is there). Include "
	      "it in nats-server.conf.\n"
	      "authorization {\n  users = [\n",
	      f);
	json_array_foreach(identities, i, p)
	{
		fprintf(f, "    # %s (%s)\n",
		        json_string_value(json_object_get(p, "name")),
		        json_string_value(json_object_get(p, "role")));
		fprintf(f, "    {\n      nkey: \"%s\"\n      permissions: {\n",
		        json_string_value(json_object_get(p, "public")));
		fputs("        publish: {allow: ", f);
		conf_list(f, json_object_get(p, "publish"));
		fputs("}\n        subscribe: {allow: ", f);
		conf_list(f, json_object_get(p, "subscribe"));
		fputs("}\n", f);
		if (json_is_true(json_object_get(p, "allow_responses"))) {
			fputs("        allow_responses: true\n", f);
		}
		fputs("      }\n    }\n", f);
	}
	fputs("  ]\n}\n", f);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}
