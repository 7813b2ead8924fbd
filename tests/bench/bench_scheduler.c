/* bench_scheduler: one mesh-scheduler replica (its engine, in a thread of
 * this process) holding BENCH_SCHEDULES schedules, beside raw baselines
 * measured in the same run on the same nats-server (started here).
 *
 *   load      the schedules are written straight into the replica's LMDB,
 *             as the change log would have put them (one transaction);
 *             then the replica starts: from its start to "started" (the
 *             table built from LMDB). Baseline: that raw LMDB write.
 *   catch-up  BENCH_CATCHUP definitions through the change log into a
 *             fresh replica: from its start to "started" (applied in
 *             batches of 1,000 per LMDB transaction). Baseline: the same
 *             messages fetched (1,000 at a time) and acked with cnats.
 *   memory    resident anonymous memory (statm: resident - shared) grown
 *             by the load, per schedule. Baseline: the LMDB record.
 *   idle CPU  user + system time of this process over 5 s with none due.
 *             Baseline: one core.
 *   lateness  BENCH_LATE schedules (Unix cron with seconds, a second of the
 *             minute each: 50 due each second) through the change log;
 *             lateness = the JetStream timestamp of the stored event minus
 *             its scheduled time, p50 and p99. Baseline: raw cnats publishes
 *             of as many messages at the same second boundaries.
 *   burst     BENCH_BURST schedules at(...) the same second: from that
 *             second to the last event stored. Baseline: raw cnats async
 *             publish of as many messages of the same size.
 *
 * Environment: BENCH_SCHEDULES (1000000), BENCH_CATCHUP (100000),
 * BENCH_LATE (3000), BENCH_BURST (10000). Prints "NAME: VALUE UNIT (baseline
 * VALUE UNIT, ratio R)". Run: meson test -C build --benchmark --suite
 * scheduler -v */
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "bench.h"
#include "harness.h"
#include "mesh/mesh.h"
#include "store.h"

static long n_sched = 1000000;
static long n_late = 3000;
static long n_burst = 10000;
static long n_catchup = 100000;

static struct mesh_conn *conn;
static volatile sig_atomic_t stop;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long long started_ms; /* when the replica logged "started" */
static long n_failed;

static void
figure(const char *name, double v, double base, const char *unit)
{
	printf("%s: %.3g %s (baseline %.3g %s, ratio %.2f)\n", name, v, unit,
	       base, unit, base > 0 ? v / base : 0.0);
	fflush(stdout);
}

static long long
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Resident anonymous memory, bytes. */
static double
anon_rss(void)
{
	long pages[3] = {0};
	FILE *f = fopen("/proc/self/statm", "r");

	if (f != NULL) {
		if (fscanf(f, "%ld %ld %ld", &pages[0], &pages[1],
		           &pages[2]) != 3) {
			pages[1] = pages[2] = 0;
		}
		fclose(f);
	}
	return (double)(pages[1] - pages[2]) * (double)sysconf(_SC_PAGESIZE);
}

static void
on_log(const char *line, void *arg)
{
	(void)arg;
	pthread_mutex_lock(&lock);
	if (strstr(line, "\"event\":\"started\"") != NULL) {
		started_ms = test_now_ms();
	} else if (strstr(line, "\"event\":\"failed\"") != NULL ||
	           strstr(line, "\"event\":\"retrying\"") != NULL ||
	           strstr(line, "\"event\":\"invalid\"") != NULL ||
	           strstr(line, "store-failed") != NULL) {
		if (n_failed++ < 5) {
			fprintf(stderr, "bench: %s\n", line);
		}
	}
	pthread_mutex_unlock(&lock);
}

static const char *const zones[] = {"UTC", "Europe/Berlin", "America/New_York",
                                    "Asia/Tokyo", "Australia/Lord_Howe"};

/* Schedule i of the big set: a mix of cron, Unix cron, rate and at in
 * five zones, none due in the next hour. */
static int
big_schedule(long i, int64_t now, char *out, size_t size)
{
	const char *zone = zones[i % 5];
	const struct mesh_tz *tz = NULL;
	char expr[96];
	int hour;

	mesh_tz_shared(zone, &tz);
	hour = (int)(((now + mesh_tz_offset(tz, now)) / 3600 + 2 + i % 20) %
	             24);
	switch (i % 4) {
	case 0:
		snprintf(expr, sizeof(expr), "rate(%ld minutes)",
		         60 + i % 900);
		break;
	case 1:
		snprintf(expr, sizeof(expr), "cron(%ld %d * * ? *)", i % 60,
		         hour);
		break;
	case 2:
		snprintf(expr, sizeof(expr), "%ld %d * * %ld", i % 60, hour,
		         i % 7);
		break;
	default:
		snprintf(expr, sizeof(expr), "at(2099-%02ld-%02ldT12:00:00)",
		         1 + i % 12, 1 + i % 28);
		break;
	}
	return snprintf(out, size,
	                "{\"name\":\"s%07ld\",\"expression\":\"%s\",\"tz\":"
	                "\"%s\",\"target\":\"queue:bench\",\"type\":"
	                "\"bench.tick\",\"body\":\"tick "
	                "<aws.scheduler.scheduled-time>\",\"start\":0,"
	                "\"end\":0,\"missed\":\"latest\",\"enabled\":true,"
	                "\"delete_after\":false,\"created\":%lld,\"window\":"
	                "0,\"retry_max\":185,\"max_age\":86400,\"dlq\":\"\"}",
	                i, expr, zone, (long long)now);
}

/* Write the big set into the replica's LMDB in one transaction; returns
 * seconds, and the mean record size. */
static double
write_big(struct mesh_sched_store *st, double *record)
{
	struct mesh_sched_txn *t;
	long long t0 = test_now_ms();
	int64_t now = (int64_t)time(NULL);
	double bytes = 0;
	char json[1024], name[24];

	if (mesh_sched_txn_begin(st, true, &t) != MESH_OK) {
		return -1;
	}
	for (long i = 0; i < n_sched; i++) {
		int len = big_schedule(i, now, json, sizeof(json));
		snprintf(name, sizeof(name), "s%07ld", i);
		if (mesh_sched_txn_apply(t, name, json, (size_t)len) !=
		    MESH_OK) {
			mesh_sched_txn_abort(t);
			return -1;
		}
		bytes += len + (double)strlen(name);
	}
	if (mesh_sched_txn_commit(t) != MESH_OK) {
		return -1;
	}
	*record = bytes / (double)n_sched;
	return (double)(test_now_ms() - t0) / 1000.0;
}

/* Publish schedule definitions to the change log, pipelined. */
static bool
publish_defs(const char *prefix, long n, const char *(*expr)(long, char *),
             const char *queue)
{
	jsCtx *js = mesh_conn_js(conn);
	char json[1024], subject[128], name[64], buf[96];
	jsPubOptions po;

	jsPubOptions_Init(&po);
	for (long i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "%s%05ld", prefix, i);
		snprintf(subject, sizeof(subject), MESH_SCHEDULES_PREFIX "%s",
		         name);
		int len = snprintf(
		        json, sizeof(json),
		        "{\"name\":\"%s\",\"expression\":\"%s\",\"tz\":"
		        "\"UTC\","
		        "\"target\":\"queue:%s\",\"type\":\"bench.tick\","
		        "\"body\":\"tick\",\"start\":0,\"end\":0,\"missed\":"
		        "\"skip\",\"enabled\":true,\"delete_after\":false,"
		        "\"created\":%lld,\"window\":0,\"retry_max\":185,"
		        "\"max_age\":86400,\"dlq\":\"\"}",
		        name, expr(i, buf), queue, (long long)time(NULL));
		if (js_PublishAsync(js, subject, json, len, &po) != NATS_OK) {
			return false;
		}
	}
	return js_PublishAsyncComplete(js, NULL) == NATS_OK;
}

static int64_t burst_at;

static const char *
late_expr(long i, char *buf)
{
	snprintf(buf, 96, "%ld * * * * *", i % 60);
	return buf;
}

static const char *
burst_expr(long i, char *buf)
{
	char iso[32];

	(void)i;
	mesh_sched_format(burst_at, iso);
	snprintf(buf, 96, "at(%.19s)", iso);
	return buf;
}

static int
cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;

	return x < y ? -1 : x > y;
}

/* Receive the events waiting in queue `name` (up to want): how late
 * each scheduled in [from, to) was stored (ms after its scheduledTime),
 * into late[]; returns how many. */
static long
lateness(const char *name, long want, int64_t from, int64_t to,
         long long *late)
{
	struct mesh_queue *q;
	long got = 0;
	int empty = 0;
	bool past = false; /* an event scheduled after the range came */
	long long deadline = test_now_ms() + 30000;

	if (mesh_queue_open(conn, name, &q) != MESH_OK) {
		return 0;
	}
	while (got < want && empty < 3 && !past && test_now_ms() < deadline) {
		struct mesh_queue_msg *m = NULL;
		size_t n = 0;
		if (mesh_queue_receive(q, 10, 1, 300, &m, &n) != MESH_OK ||
		    n == 0) {
			empty++;
			mesh_queue_msgs_free(m, n);
			continue;
		}
		for (size_t k = 0; k < n && got < want; k++) {
			const void *v;
			const char *type;
			size_t len;
			char iso[40];
			int64_t t;
			if (mesh_event_attr_get(m[k].event, "scheduledTime",
			                        &type, &v, &len) != MESH_OK ||
			    len >= sizeof(iso)) {
				continue;
			}
			memcpy(iso, v, len);
			iso[len] = '\0';
			if (mesh_sched_parse_time(iso, NULL, &t) != MESH_OK) {
				continue;
			}
			past = past || t > to;
			if (t >= from && t < to) {
				late[got++] = m[k].sent_ms - t * 1000;
			}
		}
		mesh_queue_msgs_free(m, n);
	}
	mesh_queue_close(q);
	return got;
}

/* Sleep until wall-clock millisecond t. */
static void
sleep_until(long long t)
{
	long long d = t - wall_ms();

	if (d > 0) {
		usleep((useconds_t)(d * 1000));
	}
}

/* The floor under lateness: raw cnats publishes (synchronous, one at a
 * time as they come due) of `per_s` messages at each of `seconds` second
 * boundaries; stored timestamp minus the boundary. */
static bool
raw_lateness(jsCtx *js, long per_s, int seconds, long long *late, long *n)
{
	jsStreamConfig sc;
	const char *subj[] = {"bench.late"};

	jsStreamConfig_Init(&sc);
	sc.Name = "BENCH_LATE";
	sc.Subjects = subj;
	sc.SubjectsLen = 1;
	sc.Storage = js_FileStorage;
	if (js_AddStream(NULL, js, &sc, NULL, NULL) != NATS_OK) {
		return false;
	}
	*n = 0;
	for (int s = 0; s < seconds; s++) {
		long long at = (wall_ms() / 1000 + 1) * 1000;
		sleep_until(at);
		for (long i = 0; i < per_s; i++) {
			if (js_PublishAsync(js, "bench.late", "tick", 4,
			                    NULL) != NATS_OK) {
				return false;
			}
		}
		js_PublishAsyncComplete(js, NULL);
		for (long i = 0; i < per_s; i++) {
			natsMsg *m = NULL;
			if (js_GetMsg(&m, js, "BENCH_LATE", (uint64_t)(*n + 1),
			              NULL, NULL) != NATS_OK) {
				return false;
			}
			late[(*n)++] = natsMsg_GetTime(m) / 1000000 - at;
			natsMsg_Destroy(m);
		}
	}
	return true;
}

/* Raw cnats: async publish of n messages of `size` bytes; seconds. */
static double
raw_burst(jsCtx *js, long n, int size)
{
	jsStreamConfig sc;
	const char *subj[] = {"bench.burst"};
	char *body = calloc(1, (size_t)size);
	long long t0;

	jsStreamConfig_Init(&sc);
	sc.Name = "BENCH_BURST";
	sc.Subjects = subj;
	sc.SubjectsLen = 1;
	sc.Storage = js_FileStorage;
	if (body == NULL ||
	    js_AddStream(NULL, js, &sc, NULL, NULL) != NATS_OK) {
		free(body);
		return -1;
	}
	memset(body, 'x', (size_t)size);
	t0 = test_now_ms();
	for (long i = 0; i < n; i++) {
		char id[32];
		natsMsg *m = NULL;
		snprintf(id, sizeof(id), "b%ld", i);
		natsMsg_Create(&m, "bench.burst", NULL, body, size);
		natsMsgHeader_Set(m, "Nats-Msg-Id", id);
		if (js_PublishMsgAsync(js, &m, NULL) != NATS_OK) {
			natsMsg_Destroy(m);
			free(body);
			return -1;
		}
	}
	js_PublishAsyncComplete(js, NULL);
	free(body);
	return (double)(test_now_ms() - t0) / 1000.0;
}

struct run {
	struct mesh_sched_store *st;
	const char *id;
	volatile sig_atomic_t *stop;
	mesh_err err;
};

static void *
replica(void *arg)
{
	struct run *r = arg;

	r->err = mesh_scheduler_run(conn, r->st, r->id, r->stop, on_log, NULL);
	return NULL;
}

static const char *
catchup_expr(long i, char *buf)
{
	snprintf(buf, 96, "rate(%ld minutes)", 60 + i % 900);
	return buf;
}

/* Catch-up through the change log, into a fresh replica of its own; the
 * log is purged afterwards. */
static bool
catch_up(const char *dir, jsCtx *js, double *took, double *raw)
{
	struct run r = {.id = "catchup"};
	volatile sig_atomic_t halt = 0;
	natsSubscription *sub = NULL;
	jsSubOptions so;
	pthread_t th;
	long got = 0;
	long long t0;

	r.stop = &halt;
	if (!publish_defs("c", n_catchup, catchup_expr, "bench")) {
		return false;
	}
	jsSubOptions_Init(&so);
	so.Stream = MESH_SCHEDULES_STREAM;
	so.Config.AckPolicy = js_AckExplicit;
	so.Config.MaxAckPending = 1000;
	if (js_PullSubscribe(&sub, js, MESH_SCHEDULES_PREFIX "*", "raw", NULL,
	                     &so, NULL) != NATS_OK) {
		return false;
	}
	t0 = test_now_ms();
	got = bench_fetch_ack(sub, 1000, n_catchup);
	*raw = (double)(test_now_ms() - t0) / 1000.0;
	natsSubscription_Unsubscribe(sub);
	natsSubscription_Destroy(sub);
	if (got < n_catchup || mesh_sched_store_open(dir, &r.st) != MESH_OK) {
		return false;
	}
	started_ms = 0;
	t0 = test_now_ms();
	pthread_create(&th, NULL, replica, &r);
	while (started_ms == 0 && r.err == MESH_OK) {
		usleep(10000);
	}
	*took = (double)(started_ms - t0) / 1000.0;
	halt = 1;
	pthread_join(th, NULL);
	mesh_sched_store_close(r.st);
	started_ms = 0;
	return r.err == MESH_OK && js_PurgeStream(js, MESH_SCHEDULES_STREAM,
	                                          NULL, NULL) == NATS_OK;
}

static bool
make_queue(const char *name)
{
	struct mesh_queue_attrs a;

	mesh_queue_attrs_init(&a);
	if (mesh_queue_create(conn, name, &a) != MESH_OK) {
		fprintf(stderr, "bench: %s\n", mesh_errdetail());
		return false;
	}
	return true;
}

int
main(void)
{
	struct test_broker b;
	struct mesh_conn_opts o;
	struct run run = {.id = "bench", .stop = &stop};
	pthread_t th;
	char state[sizeof(b.dir) + 16];
	double put_s, record = 0, rss0, rss1, cpu0, cpu1, load_s;
	long long t0, *late, *raw_late;
	long n_got, n_raw = 0;
	natsConnection *nc = NULL;
	jsCtx *js = NULL;

	n_sched = bench_env_long("BENCH_SCHEDULES", n_sched);
	n_late = bench_env_long("BENCH_LATE", n_late);
	n_burst = bench_env_long("BENCH_BURST", n_burst);
	n_catchup = bench_env_long("BENCH_CATCHUP", n_catchup);
	late = calloc((size_t)(n_late + n_burst) * 4, sizeof(*late));
	raw_late = calloc((size_t)n_late * 4, sizeof(*raw_late));
	if (late == NULL || raw_late == NULL || !test_broker_start(&b, NULL)) {
		return 1;
	}
	mesh_conn_opts_init(&o);
	o.servers = b.url;
	if (mesh_conn_open(&o, &conn) != MESH_OK ||
	    mesh_schedules_streams(conn) != MESH_OK || !make_queue("bench") ||
	    !make_queue("late") || !make_queue("burst") ||
	    natsConnection_ConnectTo(&nc, b.url) != NATS_OK ||
	    natsConnection_JetStream(&js, nc, NULL) != NATS_OK) {
		fprintf(stderr, "bench: %s\n", mesh_errdetail());
		return 1;
	}
	printf("# %ld changes caught up; %ld schedules in one replica; "
	       "lateness: %ld schedules, "
	       "%ld due each second; burst: %ld at the same second\n",
	       n_catchup, n_sched, n_late, n_late < 60 ? n_late : n_late / 60,
	       n_burst);
	fflush(stdout);

	{
		double took = 0, raw = 0;
		snprintf(state, sizeof(state), "%s/catchup", b.dir);
		if (!catch_up(state, js, &took, &raw)) {
			fprintf(stderr, "bench: catch-up: %s\n",
			        mesh_errdetail());
			return 1;
		}
		figure("catch-up", took, raw, "s");
	}
	snprintf(state, sizeof(state), "%s/replica", b.dir);
	if (mesh_sched_store_open(state, &run.st) != MESH_OK ||
	    (put_s = write_big(run.st, &record)) < 0) {
		fprintf(stderr, "bench: %s\n", mesh_errdetail());
		return 1;
	}

	/* Load, from a heap with nothing freed left resident. */
	malloc_trim(0);
	rss0 = anon_rss();
	t0 = test_now_ms();
	pthread_create(&th, NULL, replica, &run);
	while (started_ms == 0 && run.err == MESH_OK) {
		usleep(10000);
	}
	load_s = (double)(started_ms - t0) / 1000.0;
	rss1 = anon_rss();
	figure("load", load_s, put_s, "s");
	figure("memory per schedule", (rss1 - rss0) / (double)n_sched, record,
	       "bytes");

	/* Idle. */
	cpu0 = test_cpu_s(0);
	t0 = test_now_ms();
	sleep(5);
	cpu1 = test_cpu_s(0);
	figure("idle CPU",
	       100.0 * (cpu1 - cpu0) / ((double)(test_now_ms() - t0) / 1000.0),
	       100.0, "% of a core");

	/* Lateness. */
	{
		long per_s = n_late < 60 ? n_late : n_late / 60;
		int seconds = 6;
		long want = per_s * seconds;
		int64_t from;
		if (!publish_defs("late", n_late, late_expr, "late")) {
			fprintf(stderr, "bench: publishing definitions\n");
			return 1;
		}
		/* Past the second in which the replica takes them in. */
		from = (int64_t)time(NULL) + 2;
		sleep_until((from + seconds) * 1000 + 500);
		n_got = lateness("late", want, from, from + seconds, late);
		if (!raw_lateness(js, per_s, seconds, raw_late, &n_raw) ||
		    n_got == 0 || n_raw == 0) {
			fprintf(stderr, "bench: lateness: %ld events\n",
			        n_got);
			return 1;
		}
		qsort(late, (size_t)n_got, sizeof(*late), cmp_ll);
		qsort(raw_late, (size_t)n_raw, sizeof(*raw_late), cmp_ll);
		printf("# lateness: %ld firings received\n", n_got);
		figure("lateness p50", (double)late[n_got / 2],
		       (double)raw_late[n_raw / 2], "ms");
		figure("lateness p99", (double)late[n_got * 99 / 100],
		       (double)raw_late[n_raw * 99 / 100], "ms");
	}

	/* Burst. */
	{
		double raw;
		long long last = 0;
		burst_at = (int64_t)time(NULL) + 4;
		if (!publish_defs("burst", n_burst, burst_expr, "burst")) {
			fprintf(stderr, "bench: publishing definitions\n");
			return 1;
		}
		sleep_until(burst_at * 1000 + 3000);
		n_got = lateness("burst", n_burst, burst_at, burst_at + 1,
		                 late);
		for (long i = 0; i < n_got; i++) {
			last = late[i] > last ? late[i] : last;
		}
		raw = raw_burst(js, n_burst, 200);
		printf("# burst: %ld of %ld firings stored\n", n_got, n_burst);
		figure("burst published", (double)last / 1000.0, raw, "s");
	}
	stop = 1;
	pthread_join(th, NULL);
	if (n_failed > 0) {
		printf("# %ld failed firings or errors logged\n", n_failed);
	}
	mesh_sched_store_close(run.st);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	mesh_conn_close(conn);
	test_broker_stop(&b);
	mesh_tz_shared_free();
	mesh_shutdown();
	free(late);
	free(raw_late);
	return 0;
}
