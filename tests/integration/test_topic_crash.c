/* Routers killed with SIGKILL at random moments under a stream of 20,000
 * topic messages: at the end every subscribed queue holds every matching
 * message exactly once. Two routers run at once, and one of them is killed
 * and restarted every 50-300 ms while the producer publishes.
 *
 * Usage: test_topic_crash PATH-TO-mesh-router */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "harness.h"
#include "mesh/mesh.h"

#define TOTAL 20000

static struct test_broker broker;
static struct mesh_conn *c;
static const char *router_path;

static pid_t
router_spawn(void)
{
	pid_t pid = fork();

	if (pid == 0) {
		freopen("/dev/null", "w", stderr);
		execl(router_path, router_path, "--server", broker.url,
		      "--stats", "0", (char *)NULL);
		_exit(127);
	}
	return pid;
}

static void
router_kill(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

/* Publish messages [from, to) with attribute k = even|odd. */
static int
publish_range(struct mesh_topic *t, int from, int to)
{
	int stored = 0;

	for (int i = from; i < to; i += 10) {
		struct mesh_topic_entry e[10];
		struct mesh_topic_published p[10];
		struct mesh_event *ev[10] = {0};
		char ids[10][24];
		int k, n = to - i < 10 ? to - i : 10;
		for (k = 0; k < n; k++) {
			char body[16];
			const char *kind = (i + k) % 2 ? "odd" : "even";
			snprintf(body, sizeof(body), "%d", i + k);
			snprintf(ids[k], sizeof(ids[k]), "e%d", k);
			mesh_event_new("crash", "test", &ev[k]);
			mesh_event_set_text(ev[k], body, strlen(body));
			mesh_event_attr_set(ev[k], "k", "String", kind,
			                    strlen(kind));
			e[k] = (struct mesh_topic_entry){.id = ids[k],
			                                 .event = ev[k]};
		}
		if (mesh_topic_publish_batch(t, e, (size_t)n, p) == MESH_OK) {
			for (k = 0; k < n; k++) {
				stored += p[k].err == MESH_OK;
			}
		}
		for (k = 0; k < n; k++) {
			mesh_event_free(ev[k]);
		}
	}
	return stored;
}

static atomic_bool produced;
static int published;

static void *
produce(void *arg)
{
	published = publish_range(arg, 0, TOTAL);
	atomic_store(&produced, true);
	return NULL;
}

struct tally {
	const char *queue;
	bool notification; /* body is the SNS notification JSON */
	unsigned char seen[TOTAL];
	int total, dups, bad;
};

/* Receive and delete what is in the queue now. */
static void
take(struct tally *t)
{
	struct mesh_queue *q = NULL;

	if (mesh_queue_open(c, t->queue, &q) != MESH_OK) {
		return;
	}
	for (;;) {
		struct mesh_queue_msg *m = NULL;
		size_t got = 0;
		const char *rh[10];
		struct mesh_queue_result res[10];
		char ids[10][24];
		const char *idp[10];
		if (mesh_queue_receive(q, 10, 0, -1, &m, &got) != MESH_OK ||
		    got == 0) {
			mesh_queue_msgs_free(m, got);
			break;
		}
		for (size_t i = 0; i < got; i++) {
			const void *d;
			size_t len;
			char *text;
			int k;
			mesh_event_data(m[i].event, &d, &len, NULL);
			text = strndup(d, len);
			if (t->notification) {
				json_t *j = json_loads(text, 0, NULL);
				const char *msg = json_string_value(
				        json_object_get(j, "Message"));
				k = msg ? atoi(msg) : -1;
				json_decref(j);
			} else {
				k = atoi(text);
			}
			free(text);
			if (k < 0 || k >= TOTAL) {
				t->bad++;
			} else if (t->seen[k]++) {
				t->dups++;
			} else {
				t->total++;
			}
			rh[i] = m[i].receipt;
			snprintf(ids[i], sizeof(ids[i]), "d%zu", i);
			idp[i] = ids[i];
		}
		mesh_queue_delete_batch(q, idp, rh, got, res);
		mesh_queue_msgs_free(m, got);
	}
	mesh_queue_close(q);
}

static bool
all_acked(void)
{
	struct mesh_subscription *subs = NULL;
	size_t n = 0;
	bool done = true;

	if (mesh_subscription_list(c, "crash", &subs, &n) != MESH_OK) {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		done = done && subs[i].pending == 0;
	}
	mesh_subscription_list_free(subs, n);
	return done;
}

int
main(int argc, char **argv)
{
	static struct tally all = {.queue = "crash-all"},
	                    even = {.queue = "crash-even"},
	                    note = {.queue = "crash-note",
	                            .notification = true};
	struct mesh_conn_opts o;
	struct mesh_topic_attrs ta;
	struct mesh_queue_attrs qa;
	struct mesh_sub_attrs sa;
	struct mesh_topic *t = NULL;
	pid_t steady, victim;
	pthread_t producer;
	int stored = 0, kills = 0;
	long long end;

	if (argc < 2) {
		fprintf(stderr, "usage: %s PATH-TO-mesh-router\n", argv[0]);
		return 2;
	}
	router_path = argv[1];
	srand((unsigned)time(NULL));
	if (!test_broker_start(&broker, NULL)) {
		tap_skip_all("nats-server did not start");
	}
	mesh_conn_opts_init(&o);
	o.servers = broker.url;
	mesh_conn_open(&o, &c);
	mesh_topic_attrs_init(&ta);
	mesh_topic_create(c, "crash", &ta);
	mesh_queue_attrs_init(&qa);
	mesh_sub_attrs_init(&sa);
	sa.raw = true;
	mesh_queue_create(c, all.queue, &qa);
	mesh_queue_create(c, even.queue, &qa);
	mesh_queue_create(c, note.queue, &qa);
	mesh_subscription_create(c, "crash", MESH_SUB_QUEUE, all.queue, &sa,
	                         NULL);
	sa.filter_policy = "{\"k\": [\"even\"]}";
	mesh_subscription_create(c, "crash", MESH_SUB_QUEUE, even.queue, &sa,
	                         NULL);
	sa.filter_policy = NULL;
	sa.raw = false;
	mesh_subscription_create(c, "crash", MESH_SUB_QUEUE, note.queue, &sa,
	                         NULL);
	mesh_topic_open(c, "crash", &t);

	steady = router_spawn();
	victim = router_spawn();
	/* The producer publishes in a thread; meanwhile the victim is killed
	 * every 50-300 ms and started again, mid-batch more often than not,
	 * and once both routers are down at the same time. */
	pthread_create(&producer, NULL, produce, t);
	while (!atomic_load(&produced)) {
		usleep((useconds_t)(50000 + rand() % 250000));
		router_kill(victim);
		kills++;
		if (kills == 3) {
			router_kill(steady);
			kills++;
			steady = router_spawn();
		}
		victim = router_spawn();
	}
	pthread_join(producer, NULL);
	stored = published;
	mesh_topic_close(t);
	is_int(stored, TOTAL, "20,000 messages published");
	tap_diag("%d routers killed with SIGKILL", kills);
	/* Batches in flight at a kill come again after the consumer's 30 s
	 * ack wait; the queues de-duplicate them. */
	end = test_now_ms() + 150000;
	while (test_now_ms() < end) {
		take(&all);
		take(&even);
		take(&note);
		if (all.total == TOTAL && even.total == TOTAL / 2 &&
		    note.total == TOTAL && all_acked()) {
			break;
		}
		usleep(200000);
	}
	sleep(1);
	take(&all);
	take(&even);
	take(&note);
	is_int(all.total, TOTAL, "unfiltered queue: every message");
	is_int(all.dups, 0, "... none twice");
	is_int(even.total, TOTAL / 2, "filtered queue: every even message");
	is_int(even.dups + even.bad, 0, "... none twice, nothing else");
	for (int k = 1, odd = 0; k < TOTAL; k += 2) {
		odd += even.seen[k];
		if (k == TOTAL - 1) {
			is_int(odd, 0, "... and no odd one");
		}
	}
	is_int(note.total, TOTAL, "notification queue: every message");
	is_int(note.dups + note.bad, 0, "... none twice, all readable");
	ok(all_acked(), "every subscription's messages acknowledged");
	router_kill(victim);
	router_kill(steady);
	mesh_conn_close(c);
	test_broker_stop(&broker);
	mesh_shutdown();
	return tap_done();
}
