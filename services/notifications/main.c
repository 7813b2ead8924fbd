/* notifications: subscribed to the topic shipments; "sends" each
 * shipment's confirmation by recording it (sent/<order id>) and logging
 * it, once per shipment: a shipment that comes again is counted
 * (dup/<order id>) and acknowledged, not sent twice. */
#include <stdio.h>
#include <string.h>

#include "shop.h"

static mesh_handler_result
notify(struct mesh_ctx *ctx, const struct mesh_event *ev,
       const ProtobufCMessage *msg, void *arg)
{
	const Evmesh__Shop__ShipmentCreated *sc = (const void *)msg;
	char key[SHOP_KEY_MAX], text[512];
	size_t klen;
	mesh_err err;

	if (!shop_id_valid(sc->order_id)) {
		return mesh_reject(ctx, "order_id: malformed");
	}
	switch (shop_seen(ctx, SHOP_SENT, SHOP_DUP, sc->order_id, key,
	                  &klen)) {
	case 1:
		mesh_log(ctx, "error",
		         "shipment %s came again: not sent twice",
		         sc->shipment_id);
		return MESH_HANDLER_OK;
	case -1:
		return mesh_retry(ctx, 0);
	}
	int n = snprintf(text, sizeof text,
	                 "your order %s is on its way: shipment %s, label %s",
	                 sc->order_id, sc->shipment_id, sc->label);
	err = mesh_state_put(ctx, key, klen, text,
	                     n < (int)sizeof text ? (size_t)n
	                                          : sizeof text - 1);
	if (err != MESH_OK) {
		return mesh_retry(ctx, 0);
	}
	mesh_log(ctx, "info", "sent: %s", text);
	return MESH_HANDLER_OK;
}

int
main(int argc, char **argv)
{
	struct mesh_service *s = NULL;
	mesh_err err = mesh_service_new("notifications", &s);

	if (err == MESH_OK) {
		err = mesh_service_subscribe(s, "shipments", NULL,
		                             MESH_FILTER_SCOPE_ATTRIBUTES, 0);
	}
	if (err == MESH_OK) {
		err = mesh_service_on(
		        s, "evmesh.shop.ShipmentCreated",
		        &evmesh__shop__shipment_created__descriptor, notify,
		        NULL);
	}
	return shop_main(s, err, argc, argv);
}
