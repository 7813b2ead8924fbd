/* orders: takes PlaceOrder commands from the queue place-order, stores each
 * order (order/<id>) and emits OrderPlaced to the topic orders, with the
 * message attributes country (String) and total (Number, in units) for
 * subscribers' filter policies. On each firing of the schedule
 * orders-summary (queue orders-summary) it writes an OrderSummary of the
 * orders stored so far (summary/<ms>) and logs it.
 *
 * A command repeating a stored order id (a client that sent it twice, each
 * time with a new event id) is acknowledged without a second OrderPlaced,
 * and counted (repeat/<id>): the order exists, which is what the client
 * wants. A repeat with another customer, country or total is rejected
 * (dead-lettered with the reason): it is a different order under a used
 * id. Malformed commands, and those outside the limits of shop.h (lines,
 * quantities, prices, the total), are rejected too, with the reason.
 *
 * It keeps the shipments of its orders (topic shipments, shipped/<id>) so
 * that GET /orders/{id} answers from its own state: the order and whether
 * it shipped (an OrderStatus, 404 for an order it does not have).
 * POST /orders/{id}/cancel records that a cancellation was asked
 * (cancel/<id>, a count) and emits nothing: shipping goes on, what a
 * cancellation would stop is not modelled. A command, so a retry with the
 * same Idempotency-Key is answered from the recorded reply, not counted
 * again. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shop.h"

/* The order stored under the same id, if any: the same order again (1),
 * another order (-1), none (0). */
static int
stored(struct mesh_ctx *ctx, const char *key, size_t klen,
       const Evmesh__Shop__PlaceOrder *po, mesh_err *err)
{
	const void *val;
	size_t vlen;
	Evmesh__Shop__OrderPlaced *old;
	int same;

	if ((*err = mesh_state_get(ctx, key, klen, &val, &vlen)) != MESH_OK) {
		*err = *err == MESH_ENOTFOUND ? MESH_OK : *err;
		return 0;
	}
	if ((old = evmesh__shop__order_placed__unpack(NULL, vlen, val)) ==
	    NULL) {
		return -1;
	}
	same = strcmp(old->customer, po->customer) == 0 &&
	       strcmp(old->country, po->country) == 0 &&
	       old->total_cents == po->total_cents;
	evmesh__shop__order_placed__free_unpacked(old, NULL);
	return same ? 1 : -1;
}

static mesh_err
emit_placed(struct mesh_ctx *ctx, const Evmesh__Shop__OrderPlaced *op)
{
	struct mesh_event *ev = NULL;
	char total[32];
	int n = snprintf(total, sizeof total, "%lld.%02lld",
	                 (long long)op->total_cents / 100,
	                 (long long)op->total_cents % 100);
	mesh_err err =
	        mesh_event_new("evmesh.shop.OrderPlaced", "orders", &ev);

	if (err == MESH_OK) {
		err = mesh_event_set_message(ev, &op->base);
	}
	if (err == MESH_OK) {
		err = mesh_event_set_subject(ev, op->order_id);
	}
	if (err == MESH_OK) {
		err = mesh_event_attr_set(ev, "country", "String", op->country,
		                          strlen(op->country));
	}
	if (err == MESH_OK) {
		err = mesh_event_attr_set(ev, "total", "Number", total,
		                          (size_t)n);
	}
	if (err == MESH_OK) {
		err = mesh_emit(ctx, "topic:orders", ev, NULL);
	}
	mesh_event_free(ev);
	return err;
}

static mesh_handler_result
place_order(struct mesh_ctx *ctx, const struct mesh_event *ev,
            const ProtobufCMessage *msg, void *arg)
{
	const Evmesh__Shop__PlaceOrder *po = (const void *)msg;
	Evmesh__Shop__OrderPlaced op = EVMESH__SHOP__ORDER_PLACED__INIT;
	Google__Protobuf__Timestamp at = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	const char *why = shop_order_check(po);
	char key[SHOP_KEY_MAX];
	size_t klen;
	mesh_err err;
	int was;

	if (why != NULL) {
		return mesh_reject(ctx, why);
	}
	klen = shop_key(key, SHOP_ORDER, po->order_id);
	if ((was = stored(ctx, key, klen, po, &err)) != 0) {
		if (was < 0) {
			return mesh_reject(ctx,
			                   "order_id: used by another order");
		}
		mesh_log(ctx, "warn", "order %s placed again: not repeated",
		         po->order_id);
		err = shop_count_again(ctx, SHOP_REPEAT, po->order_id);
		return err == MESH_OK ? MESH_HANDLER_OK : mesh_retry(ctx, 0);
	}
	if (err != MESH_OK) {
		return mesh_retry(ctx, 0);
	}
	op.order_id = po->order_id;
	op.customer = po->customer;
	op.country = po->country;
	op.total_cents = po->total_cents;
	mesh_event_time(ev, &at.seconds, &at.nanos);
	op.placed_at = &at;
	err = shop_put_message(ctx, key, klen, &op.base);
	if (err == MESH_OK) {
		err = emit_placed(ctx, &op);
	}
	if (err != MESH_OK) {
		return mesh_retry(ctx, 0);
	}
	mesh_log(ctx, "info", "order %s placed: %s, %lld.%02lld", op.order_id,
	         op.country, (long long)op.total_cents / 100,
	         (long long)op.total_cents % 100);
	return MESH_HANDLER_OK;
}

/* The summary being summed; over when its total would leave int64. */
struct summing {
	Evmesh__Shop__OrderSummary sum;
	bool over;
};

static int
add_order(const void *key, size_t klen, const void *val, size_t vlen,
          void *arg)
{
	struct summing *s = arg;
	Evmesh__Shop__OrderPlaced *o =
	        evmesh__shop__order_placed__unpack(NULL, vlen, val);

	s->over = !shop_summary_add(&s->sum, o != NULL ? o->total_cents : 0);
	evmesh__shop__order_placed__free_unpacked(o, NULL);
	return s->over; /* stop: no sum to report */
}

/* The scheduled job: whatever its payload, a firing asks for a summary. */
static mesh_handler_result
summarize(struct mesh_ctx *ctx, const struct mesh_event *ev,
          const ProtobufCMessage *msg, void *arg)
{
	struct summing s = {EVMESH__SHOP__ORDER_SUMMARY__INIT, false};
	Evmesh__Shop__OrderSummary *sum = &s.sum;
	char key[SHOP_KEY_MAX];
	int64_t sec = 0;
	int32_t nsec = 0;
	mesh_err err;

	mesh_event_time(ev, &sec, &nsec);
	sum->window_start = sec;
	err = mesh_state_scan(ctx, SHOP_ORDER, strlen(SHOP_ORDER), add_order,
	                      &s);
	if (err == MESH_OK && s.over) {
		return mesh_reject(ctx, "summary: the orders' total_cents sum "
		                        "overflows int64");
	}
	if (err == MESH_OK) {
		int n = snprintf(key, sizeof key, SHOP_SUMMARY "%013lld",
		                 (long long)sec * 1000 + nsec / 1000000);

		err = shop_put_message(ctx, key, (size_t)n, &sum->base);
	}
	if (err != MESH_OK) {
		return mesh_retry(ctx, 0);
	}
	mesh_log(ctx, "info", "summary: %lld orders, %lld.%02lld in all",
	         (long long)sum->orders, (long long)sum->total_cents / 100,
	         (long long)sum->total_cents % 100);
	return MESH_HANDLER_OK;
}

/* A shipment of one of its orders (ShipmentCreated, topic shipments):
 * kept whole, so that a read can say it shipped, and how. */
static mesh_handler_result
shipped(struct mesh_ctx *ctx, const struct mesh_event *ev,
        const ProtobufCMessage *msg, void *arg)
{
	const Evmesh__Shop__ShipmentCreated *sc = (const void *)msg;
	char key[SHOP_KEY_MAX];
	size_t klen;

	(void)ev;
	(void)arg;
	if (!shop_id_valid(sc->order_id)) {
		return mesh_reject(ctx, "order_id: not 1-128 of "
		                        "[A-Za-z0-9_.:-]");
	}
	klen = shop_key(key, SHOP_SHIPPED, sc->order_id);
	return shop_put_message(ctx, key, klen, &sc->base) == MESH_OK
	               ? MESH_HANDLER_OK
	               : mesh_retry(ctx, 0);
}

/* The stored order (OrderPlaced) of a request's {id}, borrowed as
 * mesh_state_get's: MESH_OK; MESH_ENOTFOUND with rep answered (400 for an
 * id that is not one, 404 for no such order); or the state's error. */
static mesh_err
request_order(struct mesh_ctx *ctx, struct mesh_reply *rep, const char *id,
              const void **val, size_t *vlen)
{
	char key[SHOP_KEY_MAX];
	size_t klen;
	mesh_err err;

	if (!shop_id_valid(id)) {
		mesh_reply_error(
		        rep, 400,
		        "id: an order id is 1-128 of [A-Za-z0-9_.:-]");
		return MESH_ENOTFOUND;
	}
	klen = shop_key(key, SHOP_ORDER, id);
	if ((err = mesh_state_get(ctx, key, klen, val, vlen)) ==
	    MESH_ENOTFOUND) {
		mesh_reply_error(rep, 404, "no order '%s'", id);
	}
	return err;
}

/* GET /orders/{id}: the order and whether it shipped, from orders' state
 * (a read transaction). */
static mesh_handler_result
get_order(struct mesh_ctx *ctx, const struct mesh_request *req,
          struct mesh_reply *rep, void *arg)
{
	Evmesh__Shop__OrderStatus st = EVMESH__SHOP__ORDER_STATUS__INIT;
	Evmesh__Shop__OrderPlaced *op = NULL;
	Evmesh__Shop__ShipmentCreated *sc = NULL;
	const char *id = mesh_request_param(req, "id");
	char key[SHOP_KEY_MAX];
	const void *val;
	size_t klen, vlen;
	mesh_err err;

	(void)arg;
	if ((err = request_order(ctx, rep, id, &val, &vlen)) ==
	    MESH_ENOTFOUND) {
		return MESH_HANDLER_OK;
	}
	if (err != MESH_OK || (op = evmesh__shop__order_placed__unpack(
	                               NULL, vlen, val)) == NULL) {
		return mesh_reject(ctx, "order unreadable in state");
	}
	st.order = op;
	klen = shop_key(key, SHOP_SHIPPED, id);
	if (mesh_state_get(ctx, key, klen, &val, &vlen) == MESH_OK &&
	    (sc = evmesh__shop__shipment_created__unpack(NULL, vlen, val)) !=
	            NULL) {
		st.shipped = true;
		st.shipment_id = sc->shipment_id;
		st.label = sc->label;
	}
	err = mesh_reply_message(rep, 200, &st.base);
	evmesh__shop__order_placed__free_unpacked(op, NULL);
	evmesh__shop__shipment_created__free_unpacked(sc, NULL);
	return err == MESH_OK ? MESH_HANDLER_OK
	                      : mesh_reject(ctx, mesh_errdetail());
}

/* POST /orders/{id}/cancel: one more cancellation asked of a stored order
 * (a write transaction, committed before the reply). */
static mesh_handler_result
cancel_order(struct mesh_ctx *ctx, const struct mesh_request *req,
             struct mesh_reply *rep, void *arg)
{
	const char *id = mesh_request_param(req, "id");
	char key[SHOP_KEY_MAX], json[64 + SHOP_ID_MAX];
	const void *val;
	size_t klen, vlen;
	mesh_err err;

	(void)arg;
	if ((err = request_order(ctx, rep, id, &val, &vlen)) ==
	    MESH_ENOTFOUND) {
		return MESH_HANDLER_OK;
	}
	if (err != MESH_OK ||
	    shop_count_again(ctx, SHOP_CANCEL, id) != MESH_OK) {
		return mesh_reject(ctx, "cancellation not recorded in state");
	}
	klen = shop_key(key, SHOP_CANCEL, id);
	if (mesh_state_get(ctx, key, klen, &val, &vlen) != MESH_OK ||
	    vlen > 20) {
		return mesh_reject(ctx, "cancellation unreadable in state");
	}
	/* The id is of [A-Za-z0-9_.:-]: nothing to escape. */
	snprintf(json, sizeof json,
	         "{\"orderId\":\"%s\",\"cancellations\":%.*s}", id, (int)vlen,
	         (const char *)val);
	mesh_log(ctx, "info", "order %s: cancellation asked (%.*s so far)", id,
	         (int)vlen, (const char *)val);
	return mesh_reply_json(rep, 200, json) == MESH_OK
	               ? MESH_HANDLER_OK
	               : mesh_reject(ctx, mesh_errdetail());
}

int
main(int argc, char **argv)
{
	struct mesh_service *s = NULL;
	mesh_err err = mesh_service_new("orders", &s);

	if (err == MESH_OK) {
		err = mesh_service_consume(s, "place-order");
	}
	if (err == MESH_OK) {
		err = mesh_service_consume(s, "orders-summary");
	}
	if (err == MESH_OK) {
		err = mesh_service_subscribe(s, "shipments", NULL,
		                             MESH_FILTER_SCOPE_ATTRIBUTES, 0);
	}
	if (err == MESH_OK) {
		err = mesh_service_emits(s, "topic:orders");
	}
	if (err == MESH_OK) {
		err = mesh_service_on(s, "evmesh.shop.PlaceOrder",
		                      &evmesh__shop__place_order__descriptor,
		                      place_order, NULL);
	}
	if (err == MESH_OK) {
		err = mesh_service_on(s, "evmesh.shop.OrderSummary", NULL,
		                      summarize, NULL);
	}
	if (err == MESH_OK) {
		err = mesh_service_on(
		        s, "evmesh.shop.ShipmentCreated",
		        &evmesh__shop__shipment_created__descriptor, shipped,
		        NULL);
	}
	if (err == MESH_OK) {
		err = mesh_service_on_request(s, "GET /orders/{id}", NULL,
		                              get_order, NULL);
	}
	if (err == MESH_OK) {
		err = mesh_service_on_request(s, "POST /orders/{id}/cancel",
		                              NULL, cancel_order, NULL);
	}
	return shop_main(s, err, argc, argv);
}
