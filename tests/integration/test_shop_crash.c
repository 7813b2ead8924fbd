/* The shop under SIGKILL: a producer places 10,000 orders (5 of every 7
 * to a shippable country, and 100 of them twice, with new event ids) at
 * about 500 a second while orders, shipping and notifications are each
 * killed with SIGKILL several times at random moments and started again.
 * At the end every shippable order has exactly one shipment and one
 * notification, the others none; every event was processed once (the
 * processed-id tables hold exactly one id per event); no state holds a key
 * too many or too few, and after a graceful stop every outbox is empty.
 *
 * Usage: test_shop_crash ORDERS SHIPPING NOTIFICATIONS */
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

#include "harness.h"
#include "mesh/mesh.h"
#include "report.h"
#include "shop_orders.h"

#define TOTAL        10000
#define REPEAT_EVERY 100 /* every 100th order is placed again, later */
#define RATE         500 /* orders a second */
#define MIN_KILLS    4   /* of each service */
#define COUNTRIES    TEST_SHOP_COUNTRIES

static const char *const names[3] = {"orders", "shipping", "notifications"};
static const char *paths[3];
static pid_t pids[3];
static struct test_broker broker;
static struct mesh_conn *conn;
static char dir[PATH_MAX];
static atomic_int produced, send_failures;
static atomic_bool producing = true;

static pid_t
spawn(int i)
{
	return test_shop_spawn(paths[i], broker.url, dir, names[i]);
}

/* Whether order i - 500 is placed again after orders [i, i + 10): the
 * same command as a new event, half a thousand orders later. */
static bool
repeats_at(int i)
{
	return i >= 500 && (i - 500) % REPEAT_EVERY == 0;
}

static void *
producer(void *arg)
{
	struct mesh_queue *q = NULL;
	long long start = test_now_ms();

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
		atomic_fetch_add(&send_failures,
		                 test_shop_send(q, "c-", i, 10));
		if (repeats_at(i)) {
			atomic_fetch_add(&send_failures,
			                 test_shop_send(q, "c-", i - 500, 1));
		}
		atomic_store(&produced, i + 10);
	}
	mesh_queue_close(q);
	atomic_store(&producing, false);
	return NULL;
}

static int
shippable_count(int *repeats)
{
	int n = 0;

	*repeats = 0;
	for (int i = 0; i < TOTAL; i++) {
		n += i % 7 < 5;
		*repeats += i % 10 == 0 && repeats_at(i);
	}
	return n;
}

int
main(int argc, char **argv)
{
	struct mesh_conn_opts o;
	struct shop_report r;
	pthread_t prod;
	char err[512];
	int kills[3] = {0}, repeats, shippable = shippable_count(&repeats);
	long long t0, t1;
	bool whole = false;

	if (argc != 4) {
		fprintf(stderr, "usage: %s ORDERS SHIPPING NOTIFICATIONS\n",
		        argv[0]);
		return 2;
	}
	memcpy(paths, argv + 1, sizeof paths);
	srand((unsigned)time(NULL));
	if (!test_broker_start(&broker, NULL) ||
	    !test_tmpdir(dir, sizeof dir)) {
		tap_done();
		return 1;
	}
	mesh_conn_opts_init(&o);
	o.servers = broker.url;
	ok(mesh_conn_open(&o, &conn) == MESH_OK, "connected");
	ok(test_shop_make(conn),
	   "topics orders, shipments; queues place-order, orders-summary");
	for (int i = 0; i < 3; i++) {
		pids[i] = spawn(i);
	}
	ok(test_shop_wait_subscribed(conn),
	   "orders, shipping and notifications subscribed themselves");

	t0 = test_now_ms();
	pthread_create(&prod, NULL, producer, NULL);
	while (atomic_load(&producing) || kills[0] < MIN_KILLS ||
	       kills[1] < MIN_KILLS || kills[2] < MIN_KILLS) {
		int i = rand() % 3;

		usleep((useconds_t)(300 + rand() % 1200) * 1000);
		kill(pids[i], SIGKILL);
		waitpid(pids[i], NULL, 0);
		kills[i]++;
		usleep((useconds_t)(rand() % 300) * 1000);
		pids[i] = spawn(i);
	}
	pthread_join(prod, NULL);
	t1 = test_now_ms();
	is_int(atomic_load(&produced), TOTAL, "10,000 orders placed");
	tap_diag("placed in %lld ms (%d resent batches); kills: orders %d, "
	         "shipping %d, notifications %d",
	         t1 - t0, atomic_load(&send_failures), kills[0], kills[1],
	         kills[2]);

	/* Killed batches come back after their ack wait (30 s at most). */
	while (test_now_ms() - t1 < 150 * 1000) {
		if (!shop_report_read(dir, "", COUNTRIES, &r, err,
		                      sizeof err)) {
			break;
		}
		whole = shop_report_agrees(&r, TOTAL) &&
		        r.repeats == (uint64_t)repeats &&
		        test_queue_depth(conn, "place-order") == 0;
		if (whole) {
			break;
		}
		usleep(500 * 1000);
	}
	ok(whole, "every order accounted for, %lld ms after the last one",
	   test_now_ms() - t1);
	for (int i = 0; i < 3; i++) {
		int status = -1;

		kill(pids[i], SIGTERM);
		waitpid(pids[i], &status, 0);
		ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		   "%s stops with 0 on SIGTERM", names[i]);
	}
	ok(shop_report_read(dir, "", COUNTRIES, &r, err, sizeof err),
	   "the environments read: %s", err);
	is_int(r.placed, TOTAL, "10,000 orders stored");
	is_int(r.shipped, shippable, "every shippable one shipped");
	is_int(r.notified, shippable, "and notified");
	is_int(r.filtered, TOTAL - shippable, "the others filtered out");
	is_int(r.duplicates, 0, "nothing shipped or notified twice");
	is_int(r.lost, 0, "nothing lost");
	is_int(r.stray, 0, "nothing shipped that should not be");
	is_int(r.repeats, repeats, "each repeated command counted once");
	is_int(r.state_keys[0], TOTAL + repeats + shippable,
	       "orders' state: an order, a repeat count and a shipment "
	       "each, no more");
	is_int(r.state_keys[1], shippable, "shipping's: a shipment each");
	is_int(r.state_keys[2], shippable, "notifications': a note each");
	is_int(r.processed[0], TOTAL + repeats + shippable,
	       "orders processed each command and shipment once");
	is_int(r.processed[1], shippable, "shipping each OrderPlaced once");
	is_int(r.processed[2], shippable,
	       "notifications each ShipmentCreated once");
	for (int i = 0; i < 3; i++) {
		is_int(r.outbox[i], 0, "%s's outbox is empty", names[i]);
	}
	is_int(test_queue_depth(conn, "place-order") +
	               test_queue_depth(conn, "orders-dlq") +
	               test_queue_depth(conn, "shipping-dlq") +
	               test_queue_depth(conn, "notifications-dlq"),
	       0, "no command left, nothing dead-lettered");
	mesh_conn_close(conn);
	test_broker_stop(&broker);
	test_rmtree(dir);
	return tap_done();
}
