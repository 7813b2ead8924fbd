/* bench_partitions: a partitioned service (changelog on) beside the
 * single-environment runtime, and a partition's takeover after its owner
 * is killed, on a nats-server started here.
 *
 *   partitioned pipeline: N PlaceOrder events wait in a queue; the bench
 *     service (bench_service.h) in 8 partitions keyed by the order id,
 *     one instance in this process, takes them: every event forwarded to
 *     its partition's stream, then handled in its partition's LMDB
 *     environment, each batch appended to the changelog before it
 *     commits. Baseline: the same service with one environment taking
 *     the same N. Both are started once beforehand (a partitioned
 *     service's first start makes its streams, an empty restore per
 *     partition), stopped, the queue filled, started again and timed
 *     from the first event handled to the last, as bench_runtime's
 *     pipeline (a "# round" line also gives the rates from the start).
 *     A fresh service name each round, deleted after it.
 *   takeover: a service of 1 partition (3 s leases) in a process of its
 *     own (this program run again, its own state directory as on another
 *     machine) is given ~100 MB of state through events (a 64 KiB value
 *     each) and left to snapshot; a second instance starts beside it and
 *     gets nothing while the first holds the partition; then the first
 *     is killed with SIGKILL, one event is sent, and the time from the
 *     kill to the second instance's stats counting it processed is the
 *     figure, the lease time its baseline. A "# round" line splits it
 *     from the logs' times: kill to claim (the lease running out; the
 *     dead owner's last renewal's age at the kill said beside it),
 *     the restore, and the claim's end to the event's commit. The
 *     restore is a figure of its own against mdb_env_copy2 of the dead
 *     owner's environment (the same state, a plain LMDB copy).
 *   The restore rate against a plain LMDB copy alone is bench_changelog's
 *   (the same suite).
 *
 * Each figure is measured BENCH_PARTITIONS_ROUNDS times (3), both sides
 * interleaved; the figure lines give the medians and the median of the
 * rounds' ratios. Environment: BENCH_PARTITIONS_EVENTS (20000),
 * BENCH_PARTITIONS_BATCH (256), BENCH_PARTITIONS_INFLIGHT (4),
 * BENCH_TAKEOVER_MB (100), BENCH_PARTITIONS_ONLY (pipeline or takeover).
 * Prints "NAME: VALUE UNIT (baseline VALUE UNIT, ratio R)". Run:
 * meson test -C build --benchmark --suite partitions -v */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

#include "bench.h"
#include "bench_service.h"
#include "clog.h"
#include "harness.h"
#include "mesh/clock.h"
#include "mesh/service.h"
#include "shop.pb-c.h"

#define PARTS      8
#define LEASE_MS   3000
#define BLOB       65536         /* bytes of state an event writes */
#define MARKER     999999999L    /* the order sent after the kill */
#define MARKER_ID  "o-999999999" /* its id */
#define SNAP_BYTES (64u << 20)   /* a snapshot is due after (clog.h) */

static struct test_broker broker;
static struct mesh_conn *conn;
static char root[PATH_MAX - 64];
static char self[PATH_MAX];

static bool
phase(const char *name)
{
	const char *only = getenv("BENCH_PARTITIONS_ONLY");

	return only == NULL || *only == '\0' || strcmp(only, name) == 0;
}

/* ---- the partitioned pipeline ------------------------------------------- */

/* A stats field of the service's, -1 when it did not answer. */
static long
stats_long(const char *name, const char *field)
{
	json_t *st = bench_service_stats(conn, name);
	json_t *v = json_object_get(st, field);
	long n = json_is_integer(v) ? (long)json_integer_value(v) : -1;

	if (json_is_array(v)) {
		n = (long)json_array_size(v);
	}
	json_decref(st);
	return n;
}

/* Wait up to timeout_s until the service's stats field reaches want. */
static bool
stats_wait(const char *name, const char *field, long want, double timeout_s)
{
	for (double t0 = bench_now_s(); bench_now_s() - t0 < timeout_s;) {
		if (stats_long(name, field) >= want) {
			return true;
		}
		usleep(5000);
	}
	fprintf(stderr, "bench: %s's %s did not reach %ld in %.0f s\n", name,
	        field, want, timeout_s);
	return false;
}

/* One side of a round: the service (partitioned when parts) started once
 * and stopped, n orders sent to queue, the service started again; events
 * per second from the first handled to the last, *from_start from its
 * start to the last. */
static double
pipeline(const char *queue, int round, int parts, long n, double *from_start)
{
	struct bench_service r;
	char name[32], dir[PATH_MAX];
	struct bench_service_opts o = {.name = name, .partitions = parts};
	int batch = (int)bench_env_long("BENCH_PARTITIONS_BATCH", 256);
	int inflight = (int)bench_env_long("BENCH_PARTITIONS_INFLIGHT", 4);
	double rate, cpu[2];

	snprintf(name, sizeof(name), "bench-%s%d", parts ? "p" : "s", round);
	snprintf(dir, sizeof(dir), "%s/%s", root, name);
	bench_service_start_opts(&r, conn, queue, dir, batch, inflight, 0, &o);
	if (!stats_wait(name, parts ? "partitions" : "processed",
	                parts ? parts : 0, 30)) {
		exit(1);
	}
	bench_service_stop(&r);
	bench_fill(conn, queue, n);
	/* What earlier benchmarks left to write back would stall the
	 * commits' fsyncs of whichever side runs first. */
	sync();
	cpu[0] = test_cpu_s(0);
	cpu[1] = test_cpu_s(test_broker_pid(&broker));
	bench_service_start_opts(&r, conn, queue, dir, batch, inflight, n, &o);
	if ((rate = bench_service_wait(&r, 120)) <= 0) {
		exit(1);
	}
	*from_start = (double)n / (atomic_load(&r.last_s) - r.start_s);
	printf("# %s: CPU per event %.1f us here, %.1f us in the broker\n",
	       parts ? "partitioned" : "one environment",
	       (test_cpu_s(0) - cpu[0]) * 1e6 / (double)n,
	       (test_cpu_s(test_broker_pid(&broker)) - cpu[1]) * 1e6 /
	               (double)n);
	bench_service_stop(&r);
	if (parts > 0) {
		unsigned long long recs = 0;
		for (int k = 0; k < parts; k++) {
			struct mesh__clog_info ci = {0};
			mesh__clog_info(conn, name, k, &ci);
			recs += ci.records_since;
		}
		printf("# partitioned: %llu changelog records, %.1f events "
		       "each\n",
		       recs, recs ? (double)n / (double)recs : 0);
	}
	if (parts > 0 && !bench_service_delete(conn, name)) {
		exit(1);
	}
	test_rmtree(dir);
	return rate;
}

static void
bench_pipeline(int rounds)
{
	long n = bench_env_long("BENCH_PARTITIONS_EVENTS", 20000);
	double part[BENCH_ROUNDS_MAX], one[BENCH_ROUNDS_MAX];
	double part0[BENCH_ROUNDS_MAX], one0[BENCH_ROUNDS_MAX];

	printf("# pipeline: %ld events, %d partitions against one "
	       "environment\n",
	       n, PARTS);
	for (int i = 0; i < rounds; i++) {
		if (i % 2 == 0) {
			one[i] = pipeline("bench-in", i, 0, n, &one0[i]);
			part[i] = pipeline("bench-in", i, PARTS, n, &part0[i]);
		} else {
			part[i] = pipeline("bench-in", i, PARTS, n, &part0[i]);
			one[i] = pipeline("bench-in", i, 0, n, &one0[i]);
		}
		printf("# round %d: partitioned %.0f events/s, one "
		       "environment %.0f (ratio %.2f); from the start %.0f "
		       "and %.0f (ratio %.2f)\n",
		       i + 1, part[i], one[i], part[i] / one[i], part0[i],
		       one0[i], part0[i] / one0[i]);
		fflush(stdout);
	}
	bench_figure_rounds("partitioned pipeline (8 partitions, changelog "
	                    "on)",
	                    part, one, rounds, "events/s", 0);
}

/* ---- takeover: the instances, processes of their own -------------------- */

/* The takeover service's handler: a BLOB-byte value (pseudo-random, so
 * that nothing on the way makes it smaller) at blob/ORDER. */
static mesh_handler_result
on_blob(struct mesh_ctx *ctx, const struct mesh_event *ev,
        const ProtobufCMessage *msg, void *arg)
{
	const Evmesh__Shop__PlaceOrder *po =
	        (const Evmesh__Shop__PlaceOrder *)msg;
	static _Thread_local uint64_t v[BLOB / 8];
	uint64_t x = (uint64_t)po->total_cents * 0x9E3779B97F4A7C15u | 1;
	char key[64];

	(void)ev;
	(void)arg;
	for (size_t i = 0; i < BLOB / 8; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		v[i] = x;
	}
	snprintf(key, sizeof(key), "blob/%s", po->order_id);
	if (mesh_state_put(ctx, key, strlen(key), v, sizeof(v)) != MESH_OK) {
		return mesh_retry(ctx, 0);
	}
	if (strcmp(po->order_id, MARKER_ID) == 0) {
		mesh_log(ctx, "info", "bench: the marker handled");
	}
	return MESH_HANDLER_OK;
}

/* As a child: an instance of the takeover service.
 * argv: self --instance URL STATE NAME QUEUE */
static int
instance_main(char **argv)
{
	struct mesh_service *s = NULL;
	char lease[16];
	char *args[] = {argv[0], "--server",   argv[2], "--state",
	                argv[3], "--lease-ms", lease,   NULL};

	snprintf(lease, sizeof(lease), "%d", LEASE_MS);
	mesh_service_new(argv[4], &s);
	mesh_service_consume(s, argv[5]);
	mesh_service_partitions(s, 1, bench_order_key, NULL);
	mesh_service_on(s, "evmesh.shop.PlaceOrder",
	                &evmesh__shop__place_order__descriptor, on_blob, NULL);
	return mesh_service_main(s, 7, args);
}

/* Start an instance, its standard error to log. */
static pid_t
spawn(const char *state, const char *name, const char *queue, const char *log)
{
	char *argv[] = {self,         "--instance",  broker.url, (char *)state,
	                (char *)name, (char *)queue, NULL};
	pid_t pid;

	fflush(stdout); /* or the child's freopen writes it again */
	pid = fork();

	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (freopen(log, "w", stderr) == NULL ||
		    freopen("/dev/null", "w", stdout) == NULL) {
			_exit(127);
		}
		execv(self, argv);
		_exit(127);
	}
	return pid;
}

/* The first line of log holding needle (to line), waiting up to
 * timeout_s for it. */
static bool
log_wait(const char *log, const char *needle, double timeout_s, char *line,
         size_t size)
{
	for (double t0 = bench_now_s(); bench_now_s() - t0 < timeout_s;) {
		FILE *f = fopen(log, "r");
		bool found = false;
		while (f != NULL && !found && fgets(line, (int)size, f)) {
			found = strstr(line, needle) != NULL;
		}
		if (f != NULL) {
			fclose(f);
		}
		if (found) {
			return true;
		}
		usleep(5000);
	}
	fprintf(stderr, "bench: no '%s' in %s within %.0f s\n", needle, log,
	        timeout_s);
	return false;
}

/* The last lines of log on standard error. */
static void
log_tail(const char *log, const char *whose)
{
	char cmd[PATH_MAX + 64];

	fprintf(stderr, "bench: %s's log (%s), its end:\n", whose, log);
	snprintf(cmd, sizeof(cmd), "tail -n 12 '%s' >&2", log);
	if (system(cmd) != 0) {
		fprintf(stderr, "bench: (not read)\n");
	}
}

/* The Unix ms of a runtime log line ("time":"YYYY-MM-DDTHH:MM:SS.mmmZ"),
 * 0 when it has none. */
static long
line_ms(const char *line)
{
	const char *t = strstr(line, "\"time\":\"");
	struct tm tm = {0};
	int ms = 0;

	if (t == NULL || sscanf(t + 8, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year,
	                        &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
	                        &tm.tm_min, &tm.tm_sec, &ms) != 7) {
		return 0;
	}
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return (long)timegm(&tm) * 1000 + ms;
}

/* The number after `after` in line, or -1. */
static double
line_num(const char *line, const char *after)
{
	const char *p = strstr(line, after);

	return p != NULL ? atof(p + strlen(after)) : -1;
}

/* The Unix ms of the lease's last write (its owner's last renewal), 0
 * when it can not be read. */
static long
lease_written_ms(const char *name)
{
	char key[64];
	kvStore *kv = NULL;
	kvEntry *e = NULL;
	long ms = 0;

	snprintf(key, sizeof(key), "%s.p.0", name);
	if (js_KeyValue(&kv, mesh_conn_js(conn), "MESH_LEASES") == NATS_OK &&
	    kvStore_Get(&e, kv, key) == NATS_OK) {
		ms = (long)(kvEntry_Created(e) / 1000000);
	}
	kvEntry_Destroy(e);
	kvStore_Destroy(kv);
	return ms;
}

static double
dir_mb(const char *dir)
{
	char p[PATH_MAX + 16];
	struct stat sb;

	snprintf(p, sizeof(p), "%s/data.mdb", dir);
	return stat(p, &sb) == 0 ? (double)sb.st_size / 1e6 : 0;
}

/* Milliseconds of mdb_env_copy2 (compacting) of the environment in dir
 * into an empty folder: the plain LMDB copy of the same state. */
static double
lmdb_copy_ms(const char *dir, const char *to)
{
	MDB_env *env = NULL;
	double t0, ms = -1;

	mkdir(to, 0700);
	if (mdb_env_create(&env) == 0 && mdb_env_set_maxdbs(env, 8) == 0 &&
	    mdb_env_set_mapsize(env, (size_t)1 << 30) == 0 &&
	    mdb_env_open(env, dir, MDB_RDONLY, 0600) == 0) {
		t0 = bench_now_s();
		if (mdb_env_copy2(env, to, MDB_CP_COMPACT) == 0) {
			ms = (bench_now_s() - t0) * 1000;
		}
	}
	mdb_env_close(env);
	return ms;
}

struct takeover {
	double total_ms;   /* kill to the event's commit seen in the stats */
	double restore_ms; /* the taking instance's restore */
	double copy_ms;    /* mdb_env_copy2 of the dead owner's environment */
};

/* Wait until the only partition's changelog has a snapshot (when that
 * much was written that one is due). */
static bool
snapshot_wait(const char *name, long bytes)
{
	struct mesh__clog_info ci = {0};

	for (double t0 = bench_now_s(); bench_now_s() - t0 < 60;) {
		if (mesh__clog_info(conn, name, 0, &ci) == MESH_OK &&
		    (ci.has_snapshot || bytes < (long)SNAP_BYTES)) {
			printf("# snapshot: %.1f MB at record %llu\n",
			       (double)ci.snap_size / 1e6,
			       (unsigned long long)ci.snap_seq);
			return true;
		}
		usleep(100000);
	}
	fprintf(stderr, "bench: %s: no snapshot in 60 s\n", name);
	return false;
}

static bool
takeover(int round, long mb, struct takeover *out)
{
	char name[24], a[PATH_MAX - 16], b[PATH_MAX - 16], la[PATH_MAX],
	        lb[PATH_MAX], pa[PATH_MAX], pb[PATH_MAX], cp[PATH_MAX],
	        line[4096];
	long n = (mb * 1000000 + BLOB - 1) / BLOB, kill_ms, renewed_ms,
	     taken_ms, marker_ms;
	struct mesh_queue *q = NULL;
	struct mesh_queue_sent sent;
	struct mesh_event *ev;
	pid_t pid_a, pid_b;
	double t0, restore_mb, records;
	bool ok = false;

	snprintf(name, sizeof(name), "bench-tk%d", round);
	snprintf(a, sizeof(a), "%s/%s-a", root, name);
	snprintf(b, sizeof(b), "%s/%s-b", root, name);
	snprintf(la, sizeof(la), "%s.log", a);
	snprintf(lb, sizeof(lb), "%s.log", b);
	snprintf(pa, sizeof(pa), "%s/p0", a);
	snprintf(pb, sizeof(pb), "%s/p0", b);
	snprintf(cp, sizeof(cp), "%s-copy", a);

	pid_a = spawn(a, name, "bench-tk", la);
	if (!log_wait(la, "\"msg\":\"started", 30, line, sizeof(line)) ||
	    !log_wait(la, "partition 0: taken", 30, line, sizeof(line))) {
		goto out_a;
	}
	t0 = bench_now_s();
	bench_fill(conn, "bench-tk", n);
	if (!stats_wait(name, "processed", n, 300)) {
		goto out_a;
	}
	printf("# takeover round %d: %ld events of %d KiB handled in %.1f s\n",
	       round + 1, n, BLOB / 1024, bench_now_s() - t0);
	if (!snapshot_wait(name, n * BLOB)) {
		goto out_a;
	}
	pid_b = spawn(b, name, "bench-tk", lb);
	if (!log_wait(lb, "\"msg\":\"started", 30, line, sizeof(line))) {
		goto out_b;
	}
	/* The kill at any point of the lease's renewal period (ttl/3). */
	usleep(500000 + (useconds_t)(test_rand() % (LEASE_MS / 3)) * 1000);
	kill_ms = (long)mesh_wall_ms();
	t0 = bench_now_s();
	kill(pid_a, SIGKILL);
	waitpid(pid_a, NULL, 0);
	pid_a = 0;
	ev = bench_order(MARKER);
	if (mesh_queue_open(conn, "bench-tk", &q) != MESH_OK ||
	    mesh_queue_send(
	            q, &(struct mesh_queue_entry){.event = ev, .delay_s = -1},
	            &sent) != MESH_OK) {
		fprintf(stderr, "bench: the marker: %s\n", mesh_errdetail());
		mesh_event_free(ev);
		mesh_queue_close(q);
		goto out_b;
	}
	mesh_event_free(ev);
	mesh_queue_close(q);
	renewed_ms = lease_written_ms(name);
	if (!stats_wait(name, "processed", 1, 60)) {
		goto out_b;
	}
	out->total_ms = (bench_now_s() - t0) * 1000;
	if (!log_wait(lb, "partition 0: taken", 1, line, sizeof(line))) {
		goto out_b;
	}
	taken_ms = line_ms(line);
	out->restore_ms = line_num(line, "restored in ");
	restore_mb = line_num(line, "reused, ") >= 0
	                     ? 0
	                     : line_num(line, "changelog, ") / 1e6;
	records = line_num(line, "snapshot bytes, ");
	if (!log_wait(lb, "the marker handled", 1, line, sizeof(line))) {
		goto out_b;
	}
	marker_ms = line_ms(line);
	out->copy_ms = lmdb_copy_ms(pa, cp);
	printf("# takeover round %d: %.0f ms: kill to claim %ld ms (the "
	       "lease last renewed %ld ms before the kill), restore %.0f ms "
	       "(%.1f MB of snapshot, %.0f changelog records; %.1f MB "
	       "restored; a plain copy %.0f ms), taken to the event "
	       "handled %ld ms, to its commit seen %.0f ms\n",
	       round + 1, out->total_ms,
	       taken_ms - (long)out->restore_ms - kill_ms,
	       renewed_ms ? kill_ms - renewed_ms : -1, out->restore_ms,
	       restore_mb, records, dir_mb(pb), out->copy_ms,
	       marker_ms - taken_ms,
	       out->total_ms - (double)(marker_ms - kill_ms));
	fflush(stdout);
	ok = out->restore_ms >= 0 && out->copy_ms > 0;
out_b:
	kill(pid_b, SIGTERM);
	waitpid(pid_b, NULL, 0);
out_a:
	if (pid_a > 0) {
		kill(pid_a, SIGKILL);
		waitpid(pid_a, NULL, 0);
	}
	if (!ok) {
		fprintf(stderr, "bench: takeover round %d failed\n",
		        round + 1);
		log_tail(la, "the first instance");
		log_tail(lb, "the second");
		return false;
	}
	bench_service_delete(conn, name);
	test_rmtree(a);
	test_rmtree(b);
	test_rmtree(cp);
	unlink(la);
	unlink(lb);
	return true;
}

static void
bench_takeover(int rounds)
{
	long mb = bench_env_long("BENCH_TAKEOVER_MB", 100);
	double total[BENCH_ROUNDS_MAX], lease[BENCH_ROUNDS_MAX],
	        restore[BENCH_ROUNDS_MAX], copy[BENCH_ROUNDS_MAX];
	char name[96];

	printf("# takeover: %ld MB of state in 1 partition, leases of %d "
	       "ms\n",
	       mb, LEASE_MS);
	for (int i = 0; i < rounds; i++) {
		struct takeover t;
		if (!takeover(i, mb, &t)) {
			exit(1);
		}
		total[i] = t.total_ms;
		lease[i] = LEASE_MS;
		restore[i] = t.restore_ms;
		copy[i] = t.copy_ms;
	}
	snprintf(name, sizeof(name), "takeover (%ld MB)", mb);
	bench_figure_rounds(name, total, lease, rounds, "ms", 0);
	snprintf(name, sizeof(name),
	         "takeover's restore vs a plain LMDB copy (%ld MB)", mb);
	bench_figure_rounds(name, restore, copy, rounds, "ms", 0);
}

int
main(int argc, char **argv)
{
	struct mesh_queue_attrs qa;
	int rounds = (int)bench_env_long("BENCH_PARTITIONS_ROUNDS", 3);
	ssize_t len;

	if (argc == 6 && strcmp(argv[1], "--instance") == 0) {
		return instance_main(argv);
	}
	if ((len = readlink("/proc/self/exe", self, sizeof(self) - 1)) <= 0) {
		fprintf(stderr, "bench: /proc/self/exe\n");
		return 1;
	}
	self[len] = '\0';
	rounds = rounds > BENCH_ROUNDS_MAX ? BENCH_ROUNDS_MAX : rounds;
	if (!bench_broker_open(&broker, root, sizeof(root), &conn)) {
		return 1;
	}
	mesh_queue_attrs_init(&qa);
	mesh_queue_create(conn, "bench-in", &qa);
	mesh_queue_create(conn, "bench-tk", &qa);
	printf("# %d rounds, interleaved\n", rounds);
	if (phase("pipeline")) {
		bench_pipeline(rounds);
	}
	if (phase("takeover")) {
		bench_takeover(rounds);
	}
	mesh_conn_close(conn);
	test_broker_stop(&broker);
	test_rmtree(root);
	mesh_shutdown();
	return 0;
}
