/* shop_orders.h: the orders the shop's fault tests place (test_shop_crash,
 * test_cluster_loss): order i goes to countries[i % 7], 5 of every 7
 * shippable under SHOP_COUNTRIES "DE,FR,NL,US,GB". */
#ifndef TEST_SHOP_ORDERS_H
#define TEST_SHOP_ORDERS_H

#include <stdio.h>
#include <string.h>

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

/* Whether shipping and notifications have subscribed themselves. */
static inline bool
test_shop_subscribed(struct mesh_conn *c)
{
	struct mesh_subscription *subs = NULL;
	size_t n = 0, found = 0;

	if (mesh_subscription_list(c, NULL, &subs, &n) != MESH_OK) {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		found += strcmp(subs[i].endpoint, "shipping") == 0 ||
		         strcmp(subs[i].endpoint, "notifications") == 0;
	}
	mesh_subscription_list_free(subs, n);
	return found == 2;
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
