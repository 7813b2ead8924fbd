/* Replicas on a real 3-node JetStream cluster: the mesh-wide default (3 on
 * a cluster of 3), queues' and topics' own counts, changing them, the
 * internal streams and buckets and the consumers following, and counts
 * the cluster cannot hold refused with nothing created. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "mesh/mesh.h"

static struct test_cluster cl;

/* The copies a consumer has (leader and followers), or 0. */
static int
consumer_replicas(struct mesh_conn *c, const char *stream, const char *name)
{
	jsConsumerInfo *ci = NULL;
	int n = 0;

	if (js_GetConsumerInfo(&ci, mesh_conn_js(c), stream, name, NULL,
	                       NULL) == NATS_OK &&
	    ci->Cluster != NULL) {
		n = 1 + ci->Cluster->ReplicasLen;
	}
	jsConsumerInfo_Destroy(ci);
	return n;
}

/* Replicas take a moment to catch up after a change: wait for it. */
static int
consumer_replicas_become(struct mesh_conn *c, const char *stream,
                         const char *name, int want)
{
	int n = 0;

	for (int i = 0;
	     i < 50 && (n = consumer_replicas(c, stream, name)) != want; i++) {
		usleep(100 * 1000);
	}
	return n;
}

static void
test_defaults(struct mesh_conn *c)
{
	struct mesh_queue_attrs qa;
	struct mesh_queue_info qi;
	struct mesh_topic_attrs ta;
	struct mesh_topic_info ti;
	struct mesh_subscription sub;

	is_int(mesh_conn_servers(c), 3,
	       "a connection given one URL knows the cluster's 3 servers");
	is_int(mesh_conn_replicas(c), 3,
	       "so the mesh's default is 3 replicas");

	mesh_queue_attrs_init(&qa);
	is_int(mesh_queue_create(c, "orders", &qa), MESH_OK,
	       "a queue is created with the default");
	is_int(mesh_queue_info(c, "orders", &qi), MESH_OK, "its info reads");
	is_int(qi.attrs.replicas, 3, "with Replicas 3");
	is_int(test_cluster_stream_replicas(&cl, "MQ_orders"), 3,
	       "its stream has 3 replicas");
	is_int(test_cluster_stream_replicas(&cl, "MQD_orders"), 3,
	       "and its delay stream");
	is_int(consumer_replicas_become(c, "MQ_orders", "receivers", 3), 3,
	       "and its consumer takes the stream's");
	is_int(mesh_queue_create(c, "orders", &qa), MESH_OK,
	       "creating it again with the default is the same queue");

	mesh_topic_attrs_init(&ta);
	is_int(mesh_topic_create(c, "events", &ta), MESH_OK,
	       "a topic is created with the default");
	is_int(mesh_topic_info(c, "events", &ti), MESH_OK, "its info reads");
	is_int(ti.a.replicas, 3, "with Replicas 3");
	is_int(test_cluster_stream_replicas(&cl, "TP_events"), 3,
	       "its stream has 3 replicas");
	{
		struct mesh_sub_attrs sa;
		mesh_sub_attrs_init(&sa);
		is_int(mesh_subscription_create(c, "events", MESH_SUB_QUEUE,
		                                "orders", &sa, &sub),
		       MESH_OK, "a queue subscribes to it");
	}
	is_int(test_cluster_stream_replicas(&cl, "KV_MESH_SUBSCRIPTIONS"), 3,
	       "the subscriptions bucket, made then, has 3 replicas");
	is_int(consumer_replicas_become(c, "TP_events", sub.consumer, 3), 3,
	       "the subscription's consumer takes its topic's");
	mesh_subscription_fini(&sub);
}

static void
test_own_counts(struct mesh_conn *c)
{
	struct mesh_queue_attrs qa;
	struct mesh_queue_info qi;
	struct mesh_topic_attrs ta;
	struct mesh_topic_info ti;
	struct mesh_subscription sub;

	mesh_queue_attrs_init(&qa);
	qa.replicas = 1;
	is_int(mesh_queue_create(c, "single", &qa), MESH_OK,
	       "a queue with Replicas 1 of its own");
	is_int(test_cluster_stream_replicas(&cl, "MQ_single"), 1,
	       "has one copy");
	qa.replicas = 3;
	is_int(mesh_queue_create(c, "single", &qa), MESH_EEXIST,
	       "creating it again with another count is refused");
	is_int(mesh_queue_set_attrs(c, "single", &qa), MESH_OK,
	       "set_attrs raises it to 3");
	is_int(test_cluster_stream_replicas(&cl, "MQ_single"), 3,
	       "and its stream has 3");
	is_int(consumer_replicas_become(c, "MQ_single", "receivers", 3), 3,
	       "and its consumer follows");
	mesh_queue_info(c, "single", &qi);
	is_int(qi.attrs.replicas, 3, "as its info says");
	qi.attrs.replicas = 0;
	qi.attrs.visibility_timeout_s = 45;
	is_int(mesh_queue_set_attrs(c, "single", &qi.attrs), MESH_OK,
	       "set_attrs without a count changes the rest");
	is_int(test_cluster_stream_replicas(&cl, "MQ_single"), 3,
	       "and leaves the replicas");

	qa.replicas = 5;
	is_int(mesh_queue_create(c, "toomany", &qa), MESH_EINVAL,
	       "5 replicas on 3 servers are refused");
	has_str(mesh_errdetail(), "Replicas 5", "naming the value");
	has_str(mesh_errdetail(), "3 NATS servers",
	        "and the servers there are");
	is_int(mesh_queue_info(c, "toomany", &qi), MESH_ENOTFOUND,
	       "and nothing is created");
	qa.replicas = 6;
	is_int(mesh_queue_create(c, "toomany", &qa), MESH_EINVAL,
	       "6 replicas are out of range");

	mesh_topic_attrs_init(&ta);
	ta.replicas = 1;
	is_int(mesh_topic_create(c, "t1", &ta), MESH_OK,
	       "a topic with Replicas 1");
	{
		struct mesh_sub_attrs sa;
		mesh_sub_attrs_init(&sa);
		is_int(mesh_subscription_create(c, "t1", MESH_SUB_QUEUE,
		                                "single", &sa, &sub),
		       MESH_OK, "a queue subscribes to it");
	}
	is_int(consumer_replicas_become(c, "TP_t1", sub.consumer, 1), 1,
	       "its subscription's consumer has one copy");
	ta.replicas = 3;
	is_int(mesh_topic_set_attrs(c, "t1", &ta), MESH_OK,
	       "set_attrs raises the topic to 3");
	is_int(test_cluster_stream_replicas(&cl, "TP_t1"), 3,
	       "its stream has 3");
	is_int(consumer_replicas_become(c, "TP_t1", sub.consumer, 3), 3,
	       "and its subscription's consumer follows");
	mesh_subscription_fini(&sub);
	mesh_topic_info(c, "t1", &ti);
	is_int(ti.a.replicas, 3, "as its info says");
	ta.archive_days = 3;
	is_int(mesh_topic_set_attrs(c, "t1", &ta), MESH_EINVAL,
	       "the archive cannot be changed");
	has_str(mesh_errdetail(), "only Replicas", "and the error says so");
	ta.archive_days = 0;
	ta.replicas = 4;
	is_int(mesh_topic_set_attrs(c, "t1", &ta), MESH_EINVAL,
	       "4 replicas on 3 servers are refused");
	is_int(test_cluster_stream_replicas(&cl, "TP_t1"), 3,
	       "and the topic stays at 3");
}

static void
test_mesh_default(void)
{
	struct mesh_conn_opts o;
	struct mesh_conn *c1 = NULL;
	struct mesh_queue_attrs qa;

	mesh_conn_opts_init(&o);
	o.servers = cl.urls;
	o.replicas = 1;
	if (!ok(mesh_conn_open(&o, &c1) == MESH_OK,
	        "a connection with the mesh's count set to 1")) {
		return;
	}
	mesh_queue_attrs_init(&qa);
	is_int(mesh_queue_create(c1, "one", &qa), MESH_OK,
	       "makes a queue with the default");
	is_int(test_cluster_stream_replicas(&cl, "MQ_one"), 1, "of one copy");
	mesh_conn_close(c1);
	o.replicas = 7;
	is_int(mesh_conn_open(&o, &c1), MESH_EINVAL,
	       "a count of 7 is refused at open");
	has_str(mesh_errdetail(), "7", "naming it");
}

/* The queue works on three copies: what is sent is received. */
static void
test_round_trip(struct mesh_conn *c)
{
	struct mesh_queue *q = NULL;
	struct mesh_event *ev = NULL;
	struct mesh_queue_msg *m = NULL;
	size_t n = 0;

	if (!ok(mesh_queue_open(c, "orders", &q) == MESH_OK,
	        "the R3 queue opens")) {
		return;
	}
	mesh_event_new("test.order", "test", &ev);
	mesh_event_set_text(ev, "on three servers", 16);
	is_int(mesh_queue_send(
	               q,
	               &(struct mesh_queue_entry){.event = ev, .delay_s = -1},
	               &(struct mesh_queue_sent){0}),
	       MESH_OK, "a message is sent to it");
	is_int(mesh_queue_receive(q, 1, 5, -1, &m, &n), MESH_OK,
	       "and received");
	ok(n == 1, "once");
	if (n == 1) {
		is_int(mesh_queue_delete_message(q, m[0].receipt), MESH_OK,
		       "and deleted");
	}
	mesh_queue_msgs_free(m, n);
	mesh_event_free(ev);
	mesh_queue_close(q);
}

/* Two instances of a service starting at once make its dead-letter queue
 * together, each through another server: both must succeed (a racing
 * create was once answered "not found", and the instance exited). */
struct racer {
	struct mesh_conn *conn;
	pthread_barrier_t *go;
	const char *queue;
	mesh_err err;
};

static void *
race_create(void *arg)
{
	struct racer *r = arg;
	struct mesh_queue_attrs a;

	mesh_queue_attrs_init(&a);
	pthread_barrier_wait(r->go);
	r->err = mesh_queue_create(r->conn, r->queue, &a);
	return NULL;
}

static void
test_racing_creates(void)
{
	struct mesh_conn *conn[2] = {NULL, NULL};
	int failed = 0, made = 0;
	const int rounds = 15;

	for (int k = 0; k < 2; k++) {
		struct mesh_conn_opts o;
		mesh_conn_opts_init(&o);
		o.servers = cl.node[k].url;
		if (mesh_conn_open(&o, &conn[k]) != MESH_OK) {
			ok(false, "connect to node %d", k + 1);
			mesh_conn_close(conn[0]);
			return;
		}
	}
	for (int i = 0; i < rounds; i++) {
		char queue[32];
		pthread_barrier_t go;
		struct racer r[2] = {{conn[0], &go, queue, MESH_OK},
		                     {conn[1], &go, queue, MESH_OK}};
		pthread_t t[2];
		struct mesh_queue *q = NULL;

		snprintf(queue, sizeof(queue), "race-dlq-%d", i);
		pthread_barrier_init(&go, NULL, 2);
		for (int k = 0; k < 2; k++) {
			pthread_create(&t[k], NULL, race_create, &r[k]);
		}
		for (int k = 0; k < 2; k++) {
			pthread_join(t[k], NULL);
			if (r[k].err != MESH_OK) {
				failed++;
				tap_diag("round %d, creator %d: %s", i, k,
				         mesh_errname(r[k].err));
			}
		}
		pthread_barrier_destroy(&go);
		if (mesh_queue_open(conn[0], queue, &q) == MESH_OK) {
			made++;
		}
		mesh_queue_close(q);
		mesh_queue_delete(conn[0], queue);
	}
	is_int(failed, 0,
	       "%d rounds of two creators of one queue at once, on "
	       "two servers: each succeeds",
	       rounds);
	is_int(made, rounds, "and the queue opens after each");
	mesh_conn_close(conn[0]);
	mesh_conn_close(conn[1]);
}

int
main(void)
{
	struct mesh_conn_opts o;
	struct mesh_conn *c = NULL;

	if (!test_cluster_start(&cl, 3)) {
		ok(false, "a 3-node cluster starts");
		test_cluster_stop(&cl);
		return tap_done();
	}
	mesh_conn_opts_init(&o);
	o.servers = cl.node[0].url; /* one: the others are learnt */
	if (!ok(mesh_conn_open(&o, &c) == MESH_OK, "connect: %s",
	        mesh_errdetail())) {
		test_cluster_stop(&cl);
		return tap_done();
	}
	test_defaults(c);
	test_own_counts(c);
	test_mesh_default();
	test_round_trip(c);
	test_racing_creates();
	mesh_conn_close(c);
	test_cluster_stop(&cl);
	mesh_shutdown();
	return tap_done();
}
