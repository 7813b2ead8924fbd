/* shop_orders.h: the orders the shop's fault tests place (test_shop_crash,
 * test_cluster_loss): order i goes to countries[i % 7], 5 of every 7
 * shippable under SHOP_COUNTRIES "DE,FR,NL,US,GB". */
#ifndef TEST_SHOP_ORDERS_H
#define TEST_SHOP_ORDERS_H

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "mesh/mesh.h"
#include "shop.pb-c.h"

#define TEST_SHOP_COUNTRIES "DE,FR,NL,US,GB"

/* A PlaceOrder event for order <prefix><i>. */
static inline mesh_err
test_shop_order(const char *prefix, int i, struct mesh_event **out)
{
	static const char *const countries[7] = {"DE", "FR", "NL", "US",
	                                         "GB", "JP", "BR"};
	Evmesh__Shop__PlaceOrder po = EVMESH__SHOP__PLACE_ORDER__INIT;
	Evmesh__Shop__LineItem item = EVMESH__SHOP__LINE_ITEM__INIT;
	Evmesh__Shop__LineItem *items[1] = {&item};
	char id[32], customer[32];
	mesh_err err;

	snprintf(id, sizeof id, "%s%d", prefix, i);
	snprintf(customer, sizeof customer, "customer-%d", i % 97);
	item.sku = "sku-1";
	item.quantity = 1 + i % 3;
	item.price_cents = 995;
	po.order_id = id;
	po.customer = customer;
	po.country = (char *)countries[i % 7];
	po.n_items = 1;
	po.items = items;
	po.total_cents = item.quantity * item.price_cents;
	if ((err = mesh_event_new("evmesh.shop.PlaceOrder", "test", out)) ==
	    MESH_OK) {
		err = mesh_event_set_message(*out, &po.base);
	}
	return err;
}

/* Start a shop service's program with its state in dir/name and its log
 * in dir/name.log, on the broker at url, shipping to
 * TEST_SHOP_COUNTRIES; it dies with the test. Returns its pid (-1: no
 * fork). */
static inline pid_t
test_shop_spawn(const char *program, const char *url, const char *dir,
                const char *name)
{
	char state[PATH_MAX + 32], log[PATH_MAX + 32];
	pid_t pid;

	snprintf(state, sizeof state, "%s/%s", dir, name);
	snprintf(log, sizeof log, "%s/%s.log", dir, name);
	if ((pid = fork()) == 0) {
		/* Hold none of the test's output open (meson waits for
		 * that to close). */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (freopen(log, "a", stderr) == NULL ||
		    freopen("/dev/null", "w", stdout) == NULL) {
			_exit(127);
		}
		setenv("SHOP_COUNTRIES", TEST_SHOP_COUNTRIES, 1);
		execl(program, program, "--server", url, "--state", state,
		      (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* Whether orders, shipping and notifications have subscribed themselves
 * (orders to shipments, the others to orders and shipments). */
static inline bool
test_shop_subscribed(struct mesh_conn *c)
{
	struct mesh_subscription *subs = NULL;
	size_t n = 0, found = 0;

	if (mesh_subscription_list(c, NULL, &subs, &n) != MESH_OK) {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		found += strcmp(subs[i].endpoint, "orders") == 0 ||
		         strcmp(subs[i].endpoint, "shipping") == 0 ||
		         strcmp(subs[i].endpoint, "notifications") == 0;
	}
	mesh_subscription_list_free(subs, n);
	return found == 3;
}

/* Wait up to 10 s for the three to subscribe. */
static inline bool
test_shop_wait_subscribed(struct mesh_conn *c)
{
	for (int i = 0; i < 100 && !test_shop_subscribed(c); i++) {
		usleep(100 * 1000);
	}
	return test_shop_subscribed(c);
}

/* The shop's topics (orders, shipments) and queues (place-order,
 * orders-summary: a killed batch comes back after 10 s). */
static inline bool
test_shop_make(struct mesh_conn *c)
{
	struct mesh_queue_attrs qa;
	struct mesh_topic_attrs ta;

	mesh_topic_attrs_init(&ta);
	mesh_queue_attrs_init(&qa);
	qa.visibility_timeout_s = 10;
	return mesh_topic_create(c, "orders", &ta) == MESH_OK &&
	       mesh_topic_create(c, "shipments", &ta) == MESH_OK &&
	       mesh_queue_create(c, "place-order", &qa) == MESH_OK &&
	       mesh_queue_create(c, "orders-summary", &qa) == MESH_OK;
}

/* Send orders <prefix>[from, from + n), n <= 10, until each is stored
 * (up to 50 tries, 100 ms apart; a resend is a new message with the same
 * event id: the queue drops the repeat). Returns the tries that failed. */
static inline int
test_shop_send(struct mesh_queue *q, const char *prefix, int from, int n)
{
	struct mesh_queue_entry e[10];
	struct mesh_queue_sent sent[10];
	struct mesh_event *ev[10] = {0};
	char ids[10][16];
	int left = n, failures = 0;

	for (int k = 0; k < n; k++) {
		test_shop_order(prefix, from + k, &ev[k]);
		snprintf(ids[k], sizeof ids[k], "e%d", k);
		e[k] = (struct mesh_queue_entry){
		        .id = ids[k], .event = ev[k], .delay_s = -1};
	}
	for (int tries = 0; left > 0 && tries < 50; tries++) {
		left = 0;
		if (mesh_queue_send_batch(q, e, (size_t)n, sent) != MESH_OK) {
			left = n;
		}
		for (int k = 0; left != n && k < n; k++) {
			left += sent[k].err != MESH_OK;
		}
		if (left > 0) {
			failures++;
			usleep(100 * 1000);
		}
	}
	for (int k = 0; k < n; k++) {
		mesh_event_free(ev[k]);
	}
	return failures;
}

/* A queue's messages, visible, in flight and delayed; 0 for a queue never
 * made (a dead-letter queue nothing went to). */
static inline uint64_t
test_queue_depth(struct mesh_conn *c, const char *name)
{
	struct mesh_queue_info info;

	if (mesh_queue_info(c, name, &info) != MESH_OK) {
		return 0;
	}
	return info.visible + info.not_visible + info.delayed;
}

#endif
