/* shipping: subscribed to the topic orders with the filter policy
 * {"country": [the shippable countries]} (--countries LIST or
 * SHOP_COUNTRIES; default DE,FR,NL,US,GB), so it sees only orders it can
 * ship. For each it checks the address, makes a label (deterministic from
 * the order id), stores the shipment (shipment/<order id>) and emits
 * ShipmentCreated to the topic shipments. An order that comes again is not
 * shipped twice: it is counted (dup/<order id>) and acknowledged. An order
 * it can not ship (its country not in the list, say after the list
 * changed) is rejected: dead-lettered with the reason. */
#include <stdio.h>
#include <string.h>

#include "shop.h"

static mesh_handler_result
ship(struct mesh_ctx *ctx, const struct mesh_event *ev,
     const ProtobufCMessage *msg, void *arg)
{
	const Evmesh__Shop__OrderPlaced *o = (const void *)msg;
	Evmesh__Shop__ShipmentCreated sc =
	        EVMESH__SHOP__SHIPMENT_CREATED__INIT;
	char key[SHOP_KEY_MAX], id[SHOP_KEY_MAX], label[64];
	size_t klen;
	mesh_err err;

	if (!shop_id_valid(o->order_id) || o->customer[0] == '\0') {
		return mesh_reject(ctx,
		                   "no order id or no customer to ship to");
	}
	if (!shop_country_in(arg, o->country)) {
		return mesh_reject(ctx, "country: not shippable");
	}
	switch (shop_seen(ctx, SHOP_SHIPMENT, SHOP_DUP, o->order_id, key,
	                  &klen)) {
	case 1:
		mesh_log(ctx, "error",
		         "order %s came again: not shipped twice",
		         o->order_id);
		return MESH_HANDLER_OK;
	case -1:
		return mesh_retry(ctx, 0);
	}
	shop_key(id, "shp-", o->order_id);
	shop_label(o->order_id, o->country, label, sizeof label);
	sc.order_id = o->order_id;
	sc.shipment_id = id;
	sc.label = label;
	sc.country = o->country;
	err = shop_put_message(ctx, key, klen, &sc.base);
	if (err == MESH_OK) {
		err = mesh_emit_message(ctx, "topic:shipments", &sc.base,
		                        NULL);
	}
	if (err != MESH_OK) {
		return mesh_retry(ctx, 0);
	}
	mesh_log(ctx, "info", "order %s shipped: %s, label %s", o->order_id,
	         id, label);
	return MESH_HANDLER_OK;
}

int
main(int argc, char **argv)
{
	const char *countries = shop_countries_arg(&argc, argv);
	struct mesh_service *s = NULL;
	char policy[1024];
	mesh_err err = mesh_service_new("shipping", &s);

	if (err == MESH_OK &&
	    !shop_countries_policy(countries, policy, sizeof policy)) {
		fprintf(stderr,
		        "shipping: --countries '%s': want two-letter "
		        "codes, comma-separated\n",
		        countries);
		mesh_service_free(s);
		return 2;
	}
	if (err == MESH_OK) {
		err = mesh_service_subscribe(s, "orders", policy,
		                             MESH_FILTER_SCOPE_ATTRIBUTES, 0);
	}
	if (err == MESH_OK) {
		err = mesh_service_emits(s, "topic:shipments");
	}
	if (err == MESH_OK) {
		err = mesh_service_on(s, "evmesh.shop.OrderPlaced",
		                      &evmesh__shop__order_placed__descriptor,
		                      ship, (void *)countries);
	}
	int rc = shop_main(s, err, argc, argv);

	for (int i = 1; rc == 0 && i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0) {
			puts("\nand shipping's own:\n"
			     "  --countries LIST  the shippable countries, "
			     "comma-separated (" SHOP_COUNTRIES_ENV ";\n"
			     "                    " SHOP_COUNTRIES_DEFAULT
			     "): its filter policy");
		}
	}
	return rc;
}
