/* A partitioned service under faults: the shop's orders service in 8
 * partitions (3 s leases) on 3 instances, each with its own state
 * directory as on separate machines, takes 10,000 orders at about 500 a
 * second while one instance is killed with SIGKILL twice, another stopped
 * gracefully (and started again later: it gets partitions back) and the
 * third paused with SIGSTOP past its lease, then continued (a stale owner).
 *
 * At the end the shop's account is whole (lost 0, duplicates 0) read
 * from the partitions' current owners' environments; each order's state
 * is in its order id's partition only, and is what the order placed says
 * (as a run without faults would leave it); every event was processed
 * once; each partition's changelog is one chain whose epochs never go
 * back, so the stale owner committed nothing after its partitions were
 * taken. Then: another partition count is refused, so are counts out of
 * range, and a start whose changelog stream was deleted underneath fails
 * with a clear error.
 *
 * Usage: test_partitioned ORDERS SHIPPING NOTIFICATIONS */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

#include "changelog.pb-c.h"
#include "harness.h"
#include "mesh/lease.h"
#include "mesh/mesh.h"
#include "mesh/partition.h"
#include "report.h"
#include "shop_orders.h"

#define TOTAL     10000
#define RATE      500 /* orders a second */
#define PARTS     8
#define LEASE_MS  "3000"
#define COUNTRIES TEST_SHOP_COUNTRIES
#define N_ORDERS  3     /* under faults; a fourth joins at the end */
#define SNAPSHOT  "200" /* changelog records between snapshots */

static const char *orders_path, *paths[2];
static struct test_broker broker;
static struct mesh_conn *conn;
static char dir[PATH_MAX];
static pid_t orders_pid[N_ORDERS + 1], others_pid[2];
static atomic_int produced;
static atomic_bool producing = true;

/* Start a program with a log of its own; extra arguments end with NULL. */
static pid_t
spawn(const char *path, const char *log, const char *state, ...)
{
	const char *argv[16] = {path, "--server", broker.url, "--state",
	                        state};
	int argc = 5;
	va_list ap;
	pid_t pid;

	va_start(ap, state);
	for (const char *a; argc < 15 && (a = va_arg(ap, const char *));) {
		argv[argc++] = a;
	}
	va_end(ap);
	argv[argc] = NULL;
	if ((pid = fork()) == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (freopen(log, "a", stderr) == NULL ||
		    freopen("/dev/null", "w", stdout) == NULL) {
			_exit(127);
		}
		setenv("SHOP_COUNTRIES", COUNTRIES, 1);
		execv(path, (char *const *)argv);
		_exit(127);
	}
	return pid;
}

static void
orders_dir(int i, char *out, size_t size)
{
	snprintf(out, size, "%s/orders-%d", dir, i + 1);
}

static pid_t
spawn_orders(int i)
{
	char state[PATH_MAX + 16], log[PATH_MAX + 32];

	orders_dir(i, state, sizeof state);
	snprintf(log, sizeof log, "%s.log", state);
	return spawn(orders_path, log, state, "--partitions", "8",
	             "--lease-ms", LEASE_MS, "--snapshot-records", SNAPSHOT,
	             (char *)NULL);
}

static void *
producer(void *arg)
{
	struct mesh_queue *q = NULL;
	long long start = test_now_ms();

	(void)arg;
	if (mesh_queue_open(conn, "place-order", &q) != MESH_OK) {
		atomic_store(&producing, false);
		return NULL;
	}
	for (int i = 0; i < TOTAL; i += 10) {
		long long due = start + (long long)i * 1000 / RATE;
		long long now = test_now_ms();
		if (due > now) {
			usleep((useconds_t)(due - now) * 1000);
		}
		test_shop_send(q, "p-", i, 10);
		atomic_store(&produced, i + 10);
	}
	mesh_queue_close(q);
	atomic_store(&producing, false);
	return NULL;
}

static void
at_ms(long long t0, long long ms)
{
	long long now = test_now_ms();

	if (t0 + ms > now) {
		usleep((useconds_t)(t0 + ms - now) * 1000);
	}
}

/* The orders instance (index) whose pid ends the lease owner's name. */
static int
instance_of(const char *owner)
{
	const char *dash = strrchr(owner, '-');

	for (int i = 0; dash != NULL && i <= N_ORDERS; i++) {
		if (orders_pid[i] > 0 && atoi(dash + 1) == orders_pid[i]) {
			return i;
		}
	}
	return -1;
}

/* dir/view: orders/pK linked to partition K's owner's copy, shipping and
 * notifications linked to theirs; false when a partition has no owner. */
static bool
make_view(char *view, size_t size)
{
	struct mesh_lease_view lv[PARTS];
	char path[PATH_MAX * 2], target[PATH_MAX + 16];
	size_t n = 0;

	snprintf(view, size, "%s/view", dir);
	snprintf(path, sizeof path, "rm -rf '%s'", view);
	if (system(path) != 0 || mkdir(view, 0755) != 0) {
		return false;
	}
	snprintf(path, sizeof path, "%s/orders", view);
	mkdir(path, 0755);
	for (int i = 0; i < 2; i++) {
		snprintf(path, sizeof path, "%s/%s", view,
		         i == 0 ? "shipping" : "notifications");
		snprintf(target, sizeof target, "%s/%s", dir,
		         i == 0 ? "shipping" : "notifications");
		if (symlink(target, path) != 0) {
			return false;
		}
	}
	if (mesh_lease_list(conn, "orders", lv, PARTS, &n) != MESH_OK ||
	    n != PARTS) {
		tap_diag("leases: %s (%zu)", mesh_errdetail(), n);
		return false;
	}
	for (size_t k = 0; k < n; k++) {
		int i = instance_of(lv[k].owner);
		if (i < 0) {
			/* (Waited for: a partition between owners.) */
			tap_diag("partition %zu: %s%s%s", k,
			         lv[k].owner[0] ? "owner '" : "no owner yet",
			         lv[k].owner,
			         lv[k].owner[0] ? "' is not ours" : "");
			return false;
		}
		orders_dir(i, target, sizeof target);
		snprintf(target + strlen(target),
		         sizeof target - strlen(target), "/p%zu", k);
		snprintf(path, sizeof path, "%s/orders/p%zu", view, k);
		if (symlink(target, path) != 0) {
			return false;
		}
	}
	return true;
}

/* Each order's state in the view is what order i placed: its customer,
 * country and total (placed_at aside: a clock's). Returns how many
 * differ or are missing. */
static int
orders_differ(const char *view)
{
	int bad = 0, seen = 0;

	for (int k = 0; k < PARTS; k++) {
		char path[PATH_MAX + 32];
		MDB_env *env = NULL;
		MDB_txn *txn = NULL;
		MDB_cursor *cur = NULL;
		MDB_dbi db;
		MDB_val key = {6, "order/"}, v;
		snprintf(path, sizeof path, "%s/orders/p%d", view, k);
		if (mdb_env_create(&env) != 0 ||
		    mdb_env_set_maxdbs(env, 16) != 0 ||
		    mdb_env_open(env, path, MDB_RDONLY, 0644) != 0 ||
		    mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) != 0 ||
		    mdb_dbi_open(txn, "state", 0, &db) != 0 ||
		    mdb_cursor_open(txn, db, &cur) != 0) {
			tap_diag("%s: can not be read", path);
			bad++;
			goto next;
		}
		for (int rc = mdb_cursor_get(cur, &key, &v, MDB_SET_RANGE);
		     rc == 0 && key.mv_size > 8 &&
		     memcmp(key.mv_data, "order/p-", 8) == 0;
		     rc = mdb_cursor_get(cur, &key, &v, MDB_NEXT)) {
			int i = atoi((const char *)key.mv_data + 8);
			struct mesh_event *ev = NULL;
			Evmesh__Shop__PlaceOrder *po = NULL;
			Evmesh__Shop__OrderPlaced *op =
			        evmesh__shop__order_placed__unpack(
			                NULL, v.mv_size, v.mv_data);
			seen++;
			if (test_shop_order("p-", i, &ev) != MESH_OK ||
			    mesh_event_unpack_message(
			            ev, &evmesh__shop__place_order__descriptor,
			            NULL,
			            (ProtobufCMessage **)&po) != MESH_OK ||
			    op == NULL || strcmp(op->customer, po->customer) ||
			    strcmp(op->country, po->country) ||
			    op->total_cents != po->total_cents ||
			    mesh_partition_of(op->order_id,
			                      strlen(op->order_id),
			                      PARTS) != k) {
				bad++;
			}
			protobuf_c_message_free_unpacked(&po->base, NULL);
			evmesh__shop__order_placed__free_unpacked(op, NULL);
			mesh_event_free(ev);
		}
	next:
		mdb_cursor_close(cur);
		if (txn != NULL) {
			mdb_txn_abort(txn);
		}
		mdb_env_close(env);
	}
	return bad + (TOTAL - seen);
}

/* Read every record of the orders' changelog: each partition's is one
 * chain (each record's prev the one before), its epochs never going
 * back. Returns the breaks; *records and *epochs (distinct epochs over
 * all partitions) for the diagnostics. */
static int
changelog_breaks(int *records, int *owners)
{
	jsSubOptions so;
	jsStreamInfo *si = NULL;
	natsSubscription *sub = NULL;
	uint64_t last_seq[PARTS] = {0}, last_epoch[PARTS] = {0};
	int breaks = 0;
	uint64_t want;

	*records = *owners = 0;
	if (js_GetStreamInfo(&si, mesh_conn_js(conn), "MESH_CL_orders", NULL,
	                     NULL) != NATS_OK) {
		return -1;
	}
	want = si->State.Msgs;
	jsStreamInfo_Destroy(si);
	jsSubOptions_Init(&so);
	so.Ordered = true;
	so.Stream = "MESH_CL_orders";
	if (js_SubscribeSync(&sub, mesh_conn_js(conn), "mesh.cl.orders.*",
	                     NULL, &so, NULL) != NATS_OK) {
		return -1;
	}
	for (uint64_t n = 0; n < want; n++) {
		natsMsg *m = NULL;
		jsMsgMetaData *meta = NULL;
		Evmesh__Changelog__ChangelogRecord *r;
		if (natsSubscription_NextMsg(&m, sub, 5000) != NATS_OK) {
			breaks++;
			break;
		}
		r = evmesh__changelog__changelog_record__unpack(
		        NULL, (size_t)natsMsg_GetDataLength(m),
		        (const uint8_t *)natsMsg_GetData(m));
		if (r != NULL && natsMsg_GetMetaData(&meta, m) == NATS_OK &&
		    r->partition < PARTS) {
			uint32_t k = r->partition;
			/* The first one kept may follow records a
			 * snapshot purged. */
			if ((last_seq[k] != 0 && r->prev != last_seq[k]) ||
			    r->epoch < last_epoch[k]) {
				breaks++;
			}
			*owners += r->epoch != last_epoch[k];
			last_seq[k] = meta->Sequence.Stream;
			last_epoch[k] = r->epoch;
			(*records)++;
		} else {
			breaks++;
		}
		jsMsgMetaData_Destroy(meta);
		evmesh__changelog__changelog_record__free_unpacked(r, NULL);
		natsMsg_Destroy(m);
	}
	natsSubscription_Destroy(sub);
	return breaks;
}

static bool
log_has(int i, const char *needle)
{
	char path[PATH_MAX + 16], line[4096];
	bool found = false;
	FILE *f;

	orders_dir(i, path, sizeof path);
	strcat(path, ".log");
	if ((f = fopen(path, "r")) == NULL) {
		return false;
	}
	while (!found && fgets(line, sizeof line, f) != NULL) {
		found = strstr(line, needle) != NULL;
	}
	fclose(f);
	return found;
}

/* Lines of instance i's log (-1: every instance's) holding needle. */
static int
log_count(int i, const char *needle)
{
	char path[PATH_MAX + 16], line[4096];
	int n = 0;

	for (int k = i < 0 ? 0 : i; k <= (i < 0 ? N_ORDERS : i); k++) {
		FILE *f;
		orders_dir(k, path, sizeof path);
		strcat(path, ".log");
		if ((f = fopen(path, "r")) == NULL) {
			continue;
		}
		while (fgets(line, sizeof line, f) != NULL) {
			n += strstr(line, needle) != NULL;
		}
		fclose(f);
	}
	return n;
}

/* Partitions instance i (-1: any) took from a snapshot: "taken" lines
 * with snapshot bytes. */
static int
snapshot_restores(int i)
{
	return log_count(i, "from the changelog, ") -
	       log_count(i, "from the changelog, 0 snapshot bytes");
}

/* Run orders with args to its exit: its status and what it said. */
static int
run_orders(char *out, size_t size, const char *a1, const char *a2)
{
	char state[PATH_MAX + 16], log[PATH_MAX + 32];
	int status = -1;
	pid_t pid;
	FILE *f;

	orders_dir(0, state, sizeof state);
	snprintf(log, sizeof log, "%s/once.log", dir);
	unlink(log);
	pid = spawn(orders_path, log, state, a1, a2, "--lease-ms", LEASE_MS,
	            (char *)NULL);
	for (int t = 0; t < 150 && waitpid(pid, &status, WNOHANG) == 0; t++) {
		usleep(100 * 1000);
	}
	if (kill(pid, 0) == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		status = -1;
	}
	out[0] = '\0';
	if ((f = fopen(log, "r")) != NULL) {
		size_t n = fread(out, 1, size - 1, f);
		out[n] = '\0';
		fclose(f);
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The orders service's stats, the first instance's answer. */
static bool
stats_answer(char *out, size_t size)
{
	natsMsg *m = NULL;
	bool ok = natsConnection_RequestString(&m, mesh_conn_nats(conn),
	                                       "mesh.service.orders.stats", "",
	                                       2000) == NATS_OK;

	snprintf(out, size, "%.*s", ok ? natsMsg_GetDataLength(m) : 0,
	         ok ? natsMsg_GetData(m) : "");
	natsMsg_Destroy(m);
	return ok;
}

int
main(int argc, char **argv)
{
	struct mesh_conn_opts o;
	struct shop_report r;
	pthread_t prod;
	char err[512], view[PATH_MAX + 8], out[8192], state[PATH_MAX + 16],
	        log[PATH_MAX + 32];
	int shippable = 0, records, owners, breaks, status;
	long long t0, t1, paused;
	bool whole = false;

	if (argc != 4) {
		fprintf(stderr, "usage: %s ORDERS SHIPPING NOTIFICATIONS\n",
		        argv[0]);
		return 2;
	}
	orders_path = argv[1];
	paths[0] = argv[2];
	paths[1] = argv[3];
	for (int i = 0; i < TOTAL; i++) {
		shippable += i % 7 < 5;
	}
	if (!test_broker_start(&broker, NULL) ||
	    !test_tmpdir(dir, sizeof dir)) {
		return tap_done();
	}
	mesh_conn_opts_init(&o);
	o.servers = broker.url;
	ok(mesh_conn_open(&o, &conn) == MESH_OK, "connected");
	ok(test_shop_make(conn),
	   "topics orders, shipments; queues place-order, orders-summary");
	for (int i = 0; i < 2; i++) {
		const char *name = i == 0 ? "shipping" : "notifications";
		snprintf(state, sizeof state, "%s/%s", dir, name);
		snprintf(log, sizeof log, "%s.log", state);
		others_pid[i] = spawn(paths[i], log, state, (char *)NULL);
	}
	for (int i = 0; i < N_ORDERS; i++) {
		orders_pid[i] = spawn_orders(i);
	}
	ok(test_shop_wait_subscribed(conn),
	   "orders, shipping and notifications subscribed themselves");

	t0 = test_now_ms();
	pthread_create(&prod, NULL, producer, NULL);
	at_ms(t0, 4000);
	kill(orders_pid[0], SIGKILL);
	waitpid(orders_pid[0], NULL, 0);
	at_ms(t0, 5000);
	orders_pid[0] = spawn_orders(0);
	at_ms(t0, 9000);
	kill(orders_pid[0], SIGKILL);
	waitpid(orders_pid[0], NULL, 0);
	at_ms(t0, 10000);
	orders_pid[0] = spawn_orders(0);
	at_ms(t0, 12000);
	kill(orders_pid[2], SIGTERM);
	waitpid(orders_pid[2], &status, 0);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	   "an instance stopped with SIGTERM exits 0 (it hands its "
	   "partitions over)");
	orders_pid[2] = 0;
	at_ms(t0, 14000);
	kill(orders_pid[1], SIGSTOP);
	paused = test_now_ms();
	at_ms(t0, 20000); /* 6 s: twice its lease */
	kill(orders_pid[1], SIGCONT);
	paused = test_now_ms() - paused;
	at_ms(t0, 22000);
	orders_pid[2] = spawn_orders(2);
	pthread_join(prod, NULL);
	t1 = test_now_ms();
	is_int(atomic_load(&produced), TOTAL, "10,000 orders placed");
	tap_diag("placed in %lld ms; instance 1 killed twice, instance 3 "
	         "stopped and started again, instance 2 paused %lld ms",
	         t1 - t0, paused);

	while (test_now_ms() - t1 < 150 * 1000) {
		if (make_view(view, sizeof view) &&
		    shop_report_read(view, "", COUNTRIES, &r, err,
		                     sizeof err) &&
		    (whole = shop_report_agrees(&r, TOTAL) &&
		             test_queue_depth(conn, "place-order") == 0)) {
			break;
		}
		usleep(1000 * 1000);
	}
	ok(whole, "every order accounted for, %lld ms after the last one",
	   test_now_ms() - t1);
	ok(make_view(view, sizeof view) &&
	           shop_report_read(view, "", COUNTRIES, &r, err, sizeof err),
	   "the owners' environments read");
	is_int(r.partitions[0], PARTS, "orders in 8 partitions");
	is_int(r.placed, TOTAL, "10,000 orders stored");
	is_int(r.shipped, shippable, "every shippable one shipped");
	is_int(r.notified, shippable, "and notified");
	is_int(r.duplicates, 0, "nothing shipped or notified twice");
	is_int(r.lost, 0, "nothing lost");
	is_int(r.stray, 0, "nothing shipped that should not be");
	is_int(r.misplaced, 0, "each order's state in its id's partition");
	is_int(r.state_keys[0], TOTAL + shippable,
	       "orders' state: an order and a shipment each");
	is_int(r.processed[0], TOTAL + shippable,
	       "each command and shipment processed once");
	is_int(orders_differ(view), 0,
	       "each order's state is what its command placed (as without "
	       "faults)");
	breaks = changelog_breaks(&records, &owners);
	is_int(breaks, 0,
	       "each partition's changelog is one chain, its epochs never "
	       "going back (%d records, %d owner changes)",
	       records, owners);
	ok(owners > PARTS, "partitions changed owners under the faults");
	ok(log_has(1, "lost (another instance has it)") ||
	           log_has(1, "fenced"),
	   "the paused instance learnt it lost its partitions");
	is_int(test_queue_depth(conn, "orders-dlq"), 0,
	       "nothing dead-lettered");

	/* Regression: every instance gets a stats request, and each read
	 * the outbox of its service's store, never opened when partitioned
	 * (SIGSEGV). */
	ok(stats_answer(out, sizeof out), "the stats answer");
	has_str(out, "\"partitions\":[{",
	        "with the instance's partitions in them");
	usleep(200 * 1000);
	for (int i = 0; i < N_ORDERS; i++) {
		is_int(waitpid(orders_pid[i], &status, WNOHANG), 0,
		       "orders instance %d alive after the stats request",
		       i + 1);
	}

	/* A fourth instance with an empty folder (a new machine) takes its
	 * share from snapshots and changelog tails. */
	orders_pid[N_ORDERS] = spawn_orders(N_ORDERS);
	whole = false;
	for (long long t2 = test_now_ms(); test_now_ms() - t2 < 60000;) {
		usleep(1000 * 1000);
		if (snapshot_restores(N_ORDERS) >= 1 &&
		    make_view(view, sizeof view) &&
		    shop_report_read(view, "", COUNTRIES, &r, err,
		                     sizeof err) &&
		    r.partitions[0] == PARTS &&
		    shop_report_agrees(&r, TOTAL) &&
		    orders_differ(view) == 0) {
			whole = true;
			break;
		}
	}
	ok(snapshot_restores(N_ORDERS) >= 1,
	   "a new instance restored %d partitions from snapshots and "
	   "changelog tails",
	   snapshot_restores(N_ORDERS));
	ok(whole, "and the account read from the new owners is whole, each "
	          "order's state as placed");
	is_int(log_count(-1, "snapshot:"), 0, "no snapshot failed");

	for (int i = 0; i <= N_ORDERS; i++) {
		kill(orders_pid[i], SIGTERM);
	}
	for (int i = 0; i <= N_ORDERS; i++) {
		waitpid(orders_pid[i], &status, 0);
		if (!ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		        "orders instance %d stops with 0 on SIGTERM", i + 1)) {
			tap_diag("its status: %s %d",
			         WIFEXITED(status) ? "exit" : "signal",
			         WIFEXITED(status) ? WEXITSTATUS(status)
			                           : WTERMSIG(status));
		}
	}
	for (int i = 0; i < 2; i++) {
		kill(others_pid[i], SIGTERM);
		waitpid(others_pid[i], NULL, 0);
	}

	is_int(run_orders(out, sizeof out, "--partitions", "4"), 2,
	       "another partition count is refused");
	has_str(out, "has 8 partitions", "naming the count fixed");
	is_int(run_orders(out, sizeof out, "--partitions", "1025"), 2,
	       "1025 partitions are refused");
	has_str(out, "--partitions '1025'", "naming the value");
	is_int(run_orders(out, sizeof out, "--partitions", "0"), 2, "and 0");
	ok(js_DeleteStream(mesh_conn_js(conn), "MESH_CL_orders", NULL, NULL) ==
	           NATS_OK,
	   "the changelog stream deleted underneath");
	is_int(run_orders(out, sizeof out, "--partitions", "8"), 1,
	       "then a start fails");
	has_str(out, "changelog stream MESH_CL_orders is gone",
	        "saying the changelog is gone, not starting afresh");

	mesh_conn_close(conn);
	test_broker_stop(&broker);
	if (getenv("KEEP_DIR") == NULL) {
		test_rmtree(dir);
	} else {
		tap_diag("kept %s", dir);
	}
	return tap_done();
}
