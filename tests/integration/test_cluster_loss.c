/* The shop on a 3-node cluster (every stream and bucket with 3 replicas)
 * losing nodes: 10,000 orders placed through the library at about 500 a
 * second, each send's acknowledgement recorded, in two phases:
 *   A. orders 0-4,999: the node that leads the place-order queue's stream
 *      (asked of the JetStream API) is killed with SIGKILL a quarter of
 *      the way in, and started again halfway;
 *   B. orders 5,000-9,999: the same with the node leading it then; or,
 *      with EVMESH_TOTAL_LOSS=1, all three nodes killed with SIGKILL at
 *      once a quarter of the way in, and started again 2 s later.
 * The services, a mesh-router (forwarding topic 'orders' to a queue) and a
 * mesh-scheduler (a schedule firing every second) run throughout and are
 * never restarted: they must reconnect by themselves. After each phase the
 * shop's account is whole (every acknowledged order placed, shipped or
 * filtered exactly once: duplicates 0, lost 0); the router forwarded each
 * OrderPlaced once; the schedule fired every second between its first and
 * last firing once (late across the outage, none missing). The time
 * without progress after a leader's death, as the producer saw it (the
 * longest gap between acknowledged sends), is printed.
 *
 * The total loss is not in the default run: nats-server 2.9 does not come
 * through it whole. A consumer may forget the messages it was handing out
 * at that instant and report them acknowledged (never delivered again),
 * or stall behind a replica that does not catch up (broker_skipped).
 * With EVMESH_TOTAL_LOSS=1 the first is allowed on evidence and counted;
 * a stall fails.
 *
 * Usage: test_cluster_loss ORDERS SHIPPING NOTIFICATIONS ROUTER SCHEDULER */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "changelog.h"
#include "harness.h"
#include "mesh/mesh.h"
#include "report.h"
#include "shop_orders.h"

#define TOTAL     10000
#define RATE      500 /* orders a second */
#define COUNTRIES TEST_SHOP_COUNTRIES

enum { ORDERS, SHIPPING, NOTIFICATIONS, ROUTER, SCHEDULER, N_PROCS };

static const char *const names[N_PROCS] = {"orders", "shipping",
                                           "notifications", "mesh-router",
                                           "mesh-scheduler"};
static const char *paths[N_PROCS];
static pid_t pids[N_PROCS];
static struct test_cluster cl;
static struct mesh_conn *conn;
static char dir[PATH_MAX];
static bool keep_dir; /* KEEP_DIR set and the account not whole */

/* The producer's progress: orders acknowledged, and when each batch was
 * (monotonic ms; for the gaps). */
static atomic_int produced, send_failures;
/* Events the broker skipped after the total loss (broker_skipped). */
static long long skipped;
/* Phase B kills every node at once (EVMESH_TOTAL_LOSS=1). */
static bool total_loss;
static atomic_bool producing;
static long long acked_at[TOTAL / 10];

/* got == want, or short by no more than the events the broker skipped
 * (never over: over is a duplicate). */
#define is_whole(got, want, what)                                             \
	do {                                                                  \
		long long g_ = (long long)(got), w_ = (long long)(want);      \
		if (!ok(g_ == w_ || (g_ < w_ && w_ - g_ <= skipped), "%s%s",  \
		        what,                                                 \
		        g_ == w_ ? ""                                         \
		                 : " (but for events the broker "             \
		                   "skipped)"))                               \
			tap_diag("got %lld, want %lld", g_, w_);              \
	} while (0)

static pid_t
spawn(int i)
{
	char state[PATH_MAX + 32], log[PATH_MAX + 32];
	pid_t pid;

	snprintf(state, sizeof state, "%s/%s", dir, names[i]);
	snprintf(log, sizeof log, "%s/%s.log", dir, names[i]);
	if ((pid = fork()) == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (freopen(log, "a", stderr) == NULL ||
		    freopen("/dev/null", "w", stdout) == NULL) {
			_exit(127);
		}
		setenv("SHOP_COUNTRIES", COUNTRIES, 1);
		if (i == ROUTER) {
			execl(paths[i], paths[i], "--server", cl.urls,
			      (char *)NULL);
		} else if (i == SCHEDULER) {
			execl(paths[i], paths[i], "--server", cl.urls,
			      "--state", state, "--id", "loss", (char *)NULL);
		} else {
			execl(paths[i], paths[i], "--server", cl.urls,
			      "--state", state, (char *)NULL);
		}
		_exit(127);
	}
	return pid;
}

/* Send orders [from, from + 10) until each is acknowledged (for two
 * minutes at most: the cluster may be down for a while). A send again is
 * the same event: the queue drops the repeat by its id. */
static bool
send_ten(struct mesh_queue *q, int from)
{
	struct mesh_queue_entry e[10];
	struct mesh_queue_sent sent[10];
	struct mesh_event *ev[10] = {0};
	char ids[10][16];
	bool stored[10] = {false};
	int left = 10;
	long long until = test_now_ms() + 120 * 1000;

	for (int k = 0; k < 10; k++) {
		test_shop_order("l-", from + k, &ev[k]);
		snprintf(ids[k], sizeof ids[k], "e%d", k);
	}
	while (left > 0 && test_now_ms() < until) {
		size_t n = 0;
		int idx[10];
		for (int k = 0; k < 10; k++) {
			if (!stored[k]) {
				idx[n] = k;
				e[n++] = (struct mesh_queue_entry){
				        .id = ids[k],
				        .event = ev[k],
				        .delay_s = -1};
			}
		}
		if (mesh_queue_send_batch(q, e, n, sent) == MESH_OK) {
			for (size_t j = 0; j < n; j++) {
				if (sent[j].err == MESH_OK) {
					stored[idx[j]] = true;
					left--;
				}
			}
		}
		if (left > 0) {
			atomic_fetch_add(&send_failures, 1);
			usleep(100 * 1000);
		}
	}
	for (int k = 0; k < 10; k++) {
		mesh_event_free(ev[k]);
	}
	return left == 0;
}

struct phase {
	int from, to;
};

static void *
producer(void *arg)
{
	const struct phase *ph = arg;
	struct mesh_queue *q = NULL;
	long long start = test_now_ms();

	for (int i = 0; i < 100 && q == NULL; i++) {
		if (mesh_queue_open(conn, "place-order", &q) != MESH_OK) {
			usleep(100 * 1000);
		}
	}
	for (int i = ph->from; q != NULL && i < ph->to; i += 10) {
		long long due =
		        start + (long long)(i - ph->from) * 1000 / RATE;
		long long now = test_now_ms();
		if (due > now) {
			usleep((useconds_t)(due - now) * 1000);
		}
		if (!send_ten(q, i)) {
			break; /* given up: counted as not produced */
		}
		acked_at[i / 10] = test_now_ms();
		atomic_store(&produced, i + 10);
	}
	mesh_queue_close(q);
	atomic_store(&producing, false);
	return NULL;
}

/* The longest gap between acknowledged batches of [from, to) that began
 * at or after t (ms). */
static long long
longest_gap(int from, int to, long long t)
{
	long long gap = 0;

	for (int b = from / 10 + 1; b < to / 10; b++) {
		if (acked_at[b] >= t && acked_at[b - 1] > 0) {
			long long g =
			        acked_at[b] -
			        (acked_at[b - 1] > t ? acked_at[b - 1] : t);
			gap = g > gap ? g : gap;
		}
	}
	return gap;
}

static int
cmp_id(const void *a, const void *b)
{
	return strcmp((const char *)a, (const char *)b);
}

/* Every consumer of every stream as the broker sees it: where a consumer
 * stands against its stream tells an event the broker never handed out
 * from one our service lost. */
static void
consumers_diag(void)
{
	jsStreamInfoList *sl = NULL;

	if (js_Streams(&sl, mesh_conn_js(conn), NULL, NULL) != NATS_OK) {
		tap_diag("the streams could not be listed");
		return;
	}
	for (int i = 0; i < sl->Count; i++) {
		jsStreamInfo *si = sl->List[i];
		jsConsumerInfoList *cl_ = NULL;

		if (js_Consumers(&cl_, mesh_conn_js(conn), si->Config->Name,
		                 NULL, NULL) != NATS_OK) {
			continue;
		}
		for (int k = 0; k < cl_->Count; k++) {
			jsConsumerInfo *ci = cl_->List[k];
			tap_diag("%s (%llu msgs, %llu-%llu) > %s: delivered "
			         "%llu/%llu, "
			         "ack floor %llu/%llu, pending %llu, ack "
			         "pending %lld, redelivered %lld",
			         si->Config->Name,
			         (unsigned long long)si->State.Msgs,
			         (unsigned long long)si->State.FirstSeq,
			         (unsigned long long)si->State.LastSeq,
			         ci->Name,
			         (unsigned long long)ci->Delivered.Stream,
			         (unsigned long long)ci->Delivered.Consumer,
			         (unsigned long long)ci->AckFloor.Stream,
			         (unsigned long long)ci->AckFloor.Consumer,
			         (unsigned long long)ci->NumPending,
			         (long long)ci->NumAckPending,
			         (long long)ci->NumRedelivered);
		}
		jsConsumerInfoList_Destroy(cl_);
	}
	jsStreamInfoList_Destroy(sl);
}

/* The distinct event ids (Ce-Id) a queue's stream holds, read one by one;
 * -1 when it cannot be read. A copy stored twice counts once. */
static long long
stream_distinct(const char *stream)
{
	static char ids[2 * TOTAL + 1024][40];
	jsStreamInfo *si = NULL;
	long long n = 0, distinct = 0, failed = 0;

	if (js_GetStreamInfo(&si, mesh_conn_js(conn), stream, NULL, NULL) !=
	    NATS_OK) {
		return -1;
	}
	for (uint64_t seq = si->State.FirstSeq;
	     seq > 0 && seq <= si->State.LastSeq &&
	     n < (long long)(sizeof ids / sizeof ids[0]);
	     seq++) {
		natsMsg *m = NULL;
		const char *id = NULL;
		jsErrCode jerr = 0;
		natsStatus st = js_GetMsg(&m, mesh_conn_js(conn), stream, seq,
		                          NULL, &jerr);
		if (st == NATS_OK &&
		    natsMsgHeader_Get(m, "Ce-Id", &id) == NATS_OK) {
			snprintf(ids[n++], sizeof ids[0], "%s", id);
		} else if (failed++ == 0) {
			tap_diag("%s: message %llu: %s (%d)", stream,
			         (unsigned long long)seq,
			         st == NATS_OK ? "no Ce-Id"
			                       : natsStatus_GetText(st),
			         (int)jerr);
		}
		natsMsg_Destroy(m);
	}
	jsStreamInfo_Destroy(si);
	qsort(ids, (size_t)n, sizeof ids[0], cmp_id);
	for (long long i = 0; i < n; i++) {
		distinct += i == 0 || strcmp(ids[i], ids[i - 1]) != 0;
	}
	return distinct;
}

/* Whether the broker reports nothing outstanding: every consumer of the
 * streams our services and the router read has handed out every message
 * and had each acknowledged (nothing pending, nothing unacknowledged),
 * and no dead-letter queue holds anything. Our runtime and router
 * acknowledge an event only after its effects are committed (or it is
 * dead-lettered): an event the account misses while this holds is one
 * the broker reports acknowledged although no service of ours ever took
 * it. */
static bool
broker_reports_all_acked(void)
{
	static const char *const sources[] = {"TP_orders", "TP_shipments",
	                                      "MQ_place-order"};
	static const char *const dlqs[] = {"orders-dlq", "shipping-dlq",
	                                   "notifications-dlq"};
	bool all = true;

	for (size_t i = 0; i < sizeof sources / sizeof sources[0]; i++) {
		jsConsumerInfoList *l = NULL;
		jsStreamInfo *si = NULL;
		if (js_GetStreamInfo(&si, mesh_conn_js(conn), sources[i], NULL,
		                     NULL) != NATS_OK ||
		    js_Consumers(&l, mesh_conn_js(conn), sources[i], NULL,
		                 NULL) != NATS_OK) {
			jsStreamInfo_Destroy(si);
			return false;
		}
		/* At the stream's end as well: a consumer whose leader sits
		 * on a replica that lags reports nothing pending too. */
		for (int k = 0; k < l->Count; k++) {
			all = all && l->List[k]->NumPending == 0 &&
			      l->List[k]->NumAckPending == 0 &&
			      l->List[k]->Delivered.Stream >=
			              si->State.LastSeq;
		}
		jsConsumerInfoList_Destroy(l);
		jsStreamInfo_Destroy(si);
	}
	for (size_t i = 0; i < sizeof dlqs / sizeof dlqs[0]; i++) {
		all = all && test_queue_depth(conn, dlqs[i]) == 0;
	}
	return all;
}

/* After every node was killed at once, nats-server 2.9 may lose a
 * consumer's record of the deliveries in flight at that instant: the
 * consumer then reports them delivered and acknowledged, and never hands
 * them out again (nats-server#5679, #8036), although no service of ours
 * took them. (It may also leave a consumer stalled behind a replica that
 * does not catch up, reporting nothing pending: that is no skip, and
 * fails.) The shortfall of the account is put down to that, and
 * returned, only when the evidence says so: every order was placed once,
 * nothing twice or stray, every outbox is empty (each event our services
 * emitted was acknowledged by the broker), and the broker reports every
 * consumer's messages acknowledged with no dead letter. Else -1. */
static long long
broker_skipped(int total)
{
	struct shop_report r = {0};
	char err[512];

	if (!shop_report_read(dir, "l-", COUNTRIES, &r, err, sizeof err) ||
	    r.placed != (uint64_t)total || r.duplicates != 0 || r.stray != 0 ||
	    r.outbox[0] + r.outbox[1] + r.outbox[2] != 0 ||
	    !broker_reports_all_acked()) {
		return -1;
	}
	tap_diag("the broker skipped %llu events after the total loss: "
	         "acknowledged to their producers, reported acknowledged by "
	         "their consumers, never handed to a service",
	         (unsigned long long)r.lost);
	return (long long)r.lost;
}

/* Wait (up to 3 minutes) until the account of the first `total` orders is
 * whole and the queue is drained. */
static bool
whole_within(int total, long long *took)
{
	long long t0 = test_now_ms();
	struct shop_report r = {0};
	char err[512];

	char last[256] = "";
	long long same_since = t0;

	while (test_now_ms() - t0 < 180 * 1000) {
		char line[256] = "";
		if (shop_report_read(dir, "l-", COUNTRIES, &r, err,
		                     sizeof err) &&
		    shop_report_agrees(&r, (uint64_t)total) &&
		    test_queue_depth(conn, "place-order") == 0) {
			*took = test_now_ms() - t0;
			return true;
		}
		/* An account that has not moved for 30 s while the broker
		 * reports nothing outstanding will not move again. */
		shop_report_line(&r, (uint64_t)total, line, sizeof line);
		if (strcmp(line, last) != 0) {
			snprintf(last, sizeof last, "%s", line);
			same_since = test_now_ms();
		} else if (test_now_ms() - same_since > 30 * 1000 &&
		           broker_reports_all_acked()) {
			break;
		}
		usleep(500 * 1000);
	}
	*took = test_now_ms() - t0;
	{
		struct mesh_queue_info qi = {0};
		char line[256];
		shop_report_read(dir, "l-", COUNTRIES, &r, err, sizeof err);
		shop_report_line(&r, (uint64_t)total, line, sizeof line);
		mesh_queue_info(conn, "place-order", &qi);
		tap_diag("not whole: %s; place-order: %llu visible, %llu in "
		         "flight, %llu delayed",
		         line, (unsigned long long)qi.visible,
		         (unsigned long long)qi.not_visible,
		         (unsigned long long)qi.delayed);
		consumers_diag();
		if (getenv("KEEP_DIR")) {
			tap_diag("the services' logs and state kept in %s",
			         dir);
			keep_dir = true;
		}
	}
	return false;
}

static void
phase_run(const struct phase *ph, bool all_nodes)
{
	pthread_t prod;
	int quarter = ph->from + (ph->to - ph->from) / 4;
	int half = ph->from + (ph->to - ph->from) / 2;
	long long t_kill = 0, took = 0;
	int leader = -1;
	bool whole;

	atomic_store(&producing, true);
	pthread_create(&prod, NULL, producer, (void *)ph);
	while (atomic_load(&producing) && atomic_load(&produced) < quarter) {
		usleep(20 * 1000);
	}
	if (all_nodes) {
		t_kill = test_now_ms();
		for (int i = 0; i < cl.n; i++) {
			test_broker_kill(&cl.node[i]);
		}
		tap_diag("phase B: all three nodes killed at order %d",
		         atomic_load(&produced));
		usleep(2000 * 1000);
		for (int i = 0; i < cl.n; i++) {
			test_broker_restart(&cl.node[i]);
		}
		ok(test_cluster_js_ready(cl.node[0].url, 60000),
		   "the three nodes are back and JetStream answers");
	} else {
		leader = test_cluster_leader(&cl, "MQ_place-order");
		if (!ok(leader >= 0,
		        "the place-order stream has a leader "
		        "(n%d)",
		        leader + 1)) {
			leader = 0;
		}
		t_kill = test_now_ms();
		test_broker_kill(&cl.node[leader]);
		tap_diag("phase %c: n%d, the leader, killed at order %d",
		         ph->from == 0 ? 'A' : 'B', leader + 1,
		         atomic_load(&produced));
		while (atomic_load(&producing) &&
		       atomic_load(&produced) < half) {
			usleep(20 * 1000);
		}
		ok(test_broker_restart(&cl.node[leader]),
		   "n%d started again at order %d", leader + 1,
		   atomic_load(&produced));
		{
			int now = test_cluster_leader(&cl, "MQ_place-order");
			ok(now >= 0 && now != leader,
			   "another node leads the stream (n%d)", now + 1);
		}
	}
	pthread_join(prod, NULL);
	is_int(atomic_load(&produced), ph->to,
	       "every order of the phase was acknowledged (%d sends again)",
	       atomic_load(&send_failures));
	tap_diag("phase %c (%s): the longest time without an acknowledged "
	         "send after the kill: %lld ms",
	         ph->from == 0 ? 'A' : 'B',
	         all_nodes ? "all nodes" : "the leader",
	         longest_gap(ph->from, ph->to, t_kill));
	whole = whole_within(ph->to, &took);
	if (!whole && all_nodes) {
		skipped = broker_skipped(ph->to);
		whole = skipped > 0;
	}
	ok(whole,
	   "the account of orders 0-%d is whole (%lld ms after the last "
	   "one)%s",
	   ph->to - 1, took,
	   skipped > 0 ? " but for events the broker skipped" : "");
}

/* Queue audit: each OrderPlaced once, by its event id (a copy the topic's
 * stream stored twice is dropped at the queue by the router's ids). */
static void
check_audit(void)
{
	static char ids[TOTAL * 2][40];
	struct mesh_queue *q = NULL;
	int n = 0, dups = 0;

	if (!ok(mesh_queue_open(conn, "audit", &q) == MESH_OK,
	        "the audit queue opens")) {
		return;
	}
	for (;;) {
		struct mesh_queue_msg *m = NULL;
		size_t got = 0;
		if (mesh_queue_receive(q, 10, 0, 600, &m, &got) != MESH_OK ||
		    got == 0) {
			mesh_queue_msgs_free(m, got);
			break;
		}
		for (size_t i = 0; i < got && n < TOTAL * 2; i++) {
			snprintf(ids[n++], sizeof ids[0], "%s",
			         mesh_event_id(m[i].event));
		}
		mesh_queue_msgs_free(m, got);
	}
	mesh_queue_close(q);
	qsort(ids, (size_t)n, sizeof ids[0], cmp_id);
	for (int i = 1; i < n; i++) {
		if (strcmp(ids[i], ids[i - 1]) == 0) {
			dups++;
			tap_diag("event %s twice in queue audit", ids[i]);
		}
	}
	if (n - dups != TOTAL) {
		long long held = stream_distinct("MQ_audit");
		consumers_diag();
		tap_diag("queue audit holds %lld distinct events, %d read",
		         held, n - dups);
		/* The router's consumer may have skipped some after the total
		 * loss: allowed when the queue holds no more than was read
		 * and broker_skipped's evidence holds (orders' outbox empty:
		 * each OrderPlaced acknowledged to it). */
		if (total_loss && n - dups < TOTAL && held == n - dups &&
		    broker_skipped(TOTAL) >= 0) {
			skipped += TOTAL - (n - dups);
			tap_diag(
			        "the broker skipped %d of the router's events",
			        TOTAL - (n - dups));
			n = TOTAL + dups;
		}
	}
	is_int(n - dups, TOTAL,
	       "the router forwarded each OrderPlaced to queue audit");
	is_int(dups, 0, "once");
}

/* The scheduled times of the schedule's firings, in order; each second
 * between the first and the last once. */
static void
check_ticks(void)
{
	struct mesh_queue *q = NULL;
	static long long times[4096];
	int n = 0, dups = 0, gaps = 0;

	if (!ok(mesh_queue_open(conn, "ticks", &q) == MESH_OK,
	        "the ticks queue opens")) {
		return;
	}
	for (;;) {
		struct mesh_queue_msg *m = NULL;
		size_t got = 0;
		if (mesh_queue_receive(q, 10, 0, 300, &m, &got) != MESH_OK ||
		    got == 0) {
			mesh_queue_msgs_free(m, got);
			break;
		}
		for (size_t i = 0; i < got && n < 4096; i++) {
			const void *data;
			size_t len;
			char body[128] = "";
			struct tm tm = {0};
			mesh_event_data(m[i].event, &data, &len, NULL);
			snprintf(body, sizeof body, "%.*s", (int)len,
			         (const char *)data);
			/* "tick 2026-12-06T23:59:59Z" */
			if (strptime(body, "tick %Y-%m-%dT%H:%M:%S", &tm)) {
				times[n++] = (long long)timegm(&tm);
			}
		}
		mesh_queue_msgs_free(m, got);
	}
	mesh_queue_close(q);
	for (int i = 1; i < n; i++) {
		for (int j = i; j > 0 && times[j] < times[j - 1]; j--) {
			long long t = times[j];
			times[j] = times[j - 1];
			times[j - 1] = t;
		}
	}
	for (int i = 1; i < n; i++) {
		dups += times[i] == times[i - 1];
		gaps += times[i] > times[i - 1] + 1
		                ? (int)(times[i] - times[i - 1] - 1)
		                : 0;
	}
	if (!ok(n > 20, "the schedule fired through both phases (%d firings)",
	        n)) {
		consumers_diag();
	}
	for (int i = 1; i < n; i++) {
		if (times[i] > times[i - 1] + 1 || times[i] == times[i - 1]) {
			tap_diag("firings at %lld then %lld", times[i - 1],
			         times[i]);
		}
	}
	is_int(dups, 0, "no second fired twice");
	is_int(gaps, 0, "no second missed between the first and the last");
}

int
main(int argc, char **argv)
{
	struct mesh_conn_opts o;
	struct mesh_queue_attrs qa;
	struct mesh_topic_attrs ta;
	struct mesh_sub_attrs sa;
	struct shop_report r = {0};
	char err[512] = "";
	int shippable = 0;

	if (argc != 6) {
		fprintf(stderr,
		        "usage: %s ORDERS SHIPPING NOTIFICATIONS ROUTER "
		        "SCHEDULER\n",
		        argv[0]);
		return 2;
	}
	memcpy(paths, argv + 1, sizeof paths);
	total_loss = getenv("EVMESH_TOTAL_LOSS") != NULL &&
	             strcmp(getenv("EVMESH_TOTAL_LOSS"), "1") == 0;
	tap_diag("phase B: %s", total_loss ? "every node killed at once"
	                                   : "the leader killed again "
	                                     "(EVMESH_TOTAL_LOSS=1: every "
	                                     "node at once)");
	for (int i = 0; i < TOTAL; i++) {
		shippable += i % 7 < 5;
	}
	if (!test_tmpdir(dir, sizeof dir) || !test_cluster_start(&cl, 3)) {
		ok(false, "a 3-node cluster starts");
		test_cluster_stop(&cl);
		return tap_done();
	}
	mesh_conn_opts_init(&o);
	o.servers = cl.urls;
	if (!ok(mesh_conn_open(&o, &conn) == MESH_OK, "connected")) {
		test_cluster_stop(&cl);
		return tap_done();
	}
	is_int(mesh_conn_replicas(conn), 3, "the mesh's default: 3 replicas");
	mesh_topic_attrs_init(&ta);
	mesh_queue_attrs_init(&qa);
	qa.visibility_timeout_s = 10; /* a batch cut off comes back sooner */
	ok(mesh_topic_create(conn, "orders", &ta) == MESH_OK &&
	           mesh_topic_create(conn, "shipments", &ta) == MESH_OK &&
	           mesh_queue_create(conn, "place-order", &qa) == MESH_OK &&
	           mesh_queue_create(conn, "orders-summary", &qa) == MESH_OK &&
	           mesh_queue_create(conn, "audit", &qa) == MESH_OK &&
	           mesh_queue_create(conn, "ticks", &qa) == MESH_OK,
	   "topics orders, shipments; queues place-order, orders-summary, "
	   "audit, ticks");
	is_int(test_cluster_stream_replicas(&cl, "MQ_place-order"), 3,
	       "place-order has 3 replicas");
	mesh_sub_attrs_init(&sa);
	sa.raw = true;
	ok(mesh_subscription_create(conn, "orders", MESH_SUB_QUEUE, "audit",
	                            &sa, NULL) == MESH_OK,
	   "queue audit subscribes to topic orders (through the router)");
	{
		char json[512];
		int len = snprintf(
		        json, sizeof json,
		        "{\"name\":\"tick\",\"expression\":\"rate(1 second)\","
		        "\"tz\":\"UTC\",\"target\":\"queue:ticks\","
		        "\"type\":\"test.tick\",\"body\":\"tick "
		        "<aws.scheduler.scheduled-time>\",\"start\":0,"
		        "\"end\":0,\"missed\":\"all\",\"enabled\":true,"
		        "\"delete_after\":false,\"created\":%ld}",
		        (long)time(NULL));
		ok(mesh_schedules_streams(conn) == MESH_OK &&
		           js_Publish(NULL, mesh_conn_js(conn),
		                      MESH_SCHEDULES_PREFIX "tick", json, len,
		                      NULL, NULL) == NATS_OK,
		   "a schedule firing every second into queue ticks");
	}
	for (int i = 0; i < N_PROCS; i++) {
		pids[i] = spawn(i);
	}
	ok(test_shop_wait_subscribed(conn),
	   "orders, shipping and notifications subscribed themselves");

	phase_run(&(struct phase){0, TOTAL / 2}, false);
	phase_run(&(struct phase){TOTAL / 2, TOTAL}, total_loss);

	for (int i = 0; i < N_PROCS; i++) {
		int status = -1;
		ok(waitpid(pids[i], &status, WNOHANG) == 0,
		   "%s ran throughout (reconnecting by itself)", names[i]);
	}
	/* The router forwards at its pace: wait for the last copies. */
	for (int i = 0; i < 600 && test_queue_depth(conn, "audit") < TOTAL;
	     i++) {
		usleep(100 * 1000);
	}
	check_audit();
	for (int i = 0; i < N_PROCS; i++) {
		int status = -1;
		kill(pids[i], SIGTERM);
		waitpid(pids[i], &status, 0);
		ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		   "%s stops with 0 on SIGTERM", names[i]);
	}
	check_ticks();
	ok(shop_report_read(dir, "l-", COUNTRIES, &r, err, sizeof err),
	   "the environments read: %s", err);
	if (skipped > 0) {
		tap_diag("%lld events the broker skipped after the total loss "
		         "are allowed for below (see broker_skipped)",
		         skipped);
	}
	is_int(r.placed, TOTAL, "10,000 orders stored");
	is_whole(r.shipped, shippable, "every shippable one shipped");
	is_whole(r.notified, shippable, "and notified");
	is_int(r.filtered, TOTAL - shippable, "the others filtered out");
	is_int(r.duplicates, 0, "nothing shipped or notified twice");
	is_whole(shippable - (long long)r.lost, shippable, "nothing lost");
	is_whole(r.processed[0], TOTAL + shippable,
	         "orders processed each command and shipment once");
	is_whole(r.processed[1], shippable, "shipping each OrderPlaced once");
	is_whole(r.processed[2], shippable,
	         "notifications each ShipmentCreated once");
	mesh_conn_close(conn);
	test_cluster_stop(&cl);
	if (!keep_dir) {
		test_rmtree(dir);
	}
	mesh_shutdown();
	return tap_done();
}
