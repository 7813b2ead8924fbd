/* shop_order_check: the largest valid order passes with its exact total;
 * one over each limit, negative quantities and prices, products that
 * would overflow int64 and a total other than the items' sum are each
 * refused with their reason. shop_summary_add: the orders' sum refuses to
 * leave int64. */
#include <stdint.h>
#include <string.h>

#include "harness.h"
#include "shop.h"

/* An order of up to SHOP_ITEMS_MAX + 1 lines, all 1 x 1 cent. */
struct order {
	Evmesh__Shop__PlaceOrder po;
	Evmesh__Shop__LineItem items[SHOP_ITEMS_MAX + 1];
	Evmesh__Shop__LineItem *ptrs[SHOP_ITEMS_MAX + 1];
};

static void
order_init(struct order *o, size_t lines)
{
	static const Evmesh__Shop__PlaceOrder po =
	        EVMESH__SHOP__PLACE_ORDER__INIT;
	static const Evmesh__Shop__LineItem it = EVMESH__SHOP__LINE_ITEM__INIT;

	o->po = po;
	o->po.order_id = "o-1";
	o->po.customer = "c-1";
	o->po.country = "DE";
	o->po.n_items = lines;
	o->po.items = o->ptrs;
	for (size_t i = 0; i < lines; i++) {
		o->items[i] = it;
		o->items[i].sku = "sku";
		o->items[i].quantity = 1;
		o->items[i].price_cents = 1;
		o->ptrs[i] = &o->items[i];
	}
	o->po.total_cents = (int64_t)lines;
}

/* A one-line order of quantity x price claiming total; its reason. */
static const char *
one_line(struct order *o, int32_t quantity, int64_t price, int64_t total)
{
	order_init(o, 1);
	o->items[0].quantity = quantity;
	o->items[0].price_cents = price;
	o->po.total_cents = total;
	return shop_order_check(&o->po);
}

/* The largest valid order: the most lines, one at the highest price, one
 * of the highest quantity, summing to exactly SHOP_TOTAL_MAX. */
static void
order_largest(struct order *o)
{
	/* 100,000,000 + 10,000 x 9,989,999 + 97 x 101 + 202 */
	order_init(o, SHOP_ITEMS_MAX);
	o->items[0].price_cents = SHOP_PRICE_MAX;
	o->items[1].quantity = SHOP_QUANTITY_MAX;
	o->items[1].price_cents = 9989999;
	for (size_t i = 2; i < SHOP_ITEMS_MAX; i++) {
		o->items[i].price_cents = 101;
	}
	o->items[2].price_cents = 202;
	o->po.total_cents = SHOP_TOTAL_MAX;
}

#define QUANTITY "items: a quantity not in 1-10000"
#define PRICE    "items: a price_cents not in 0-100000000"
#define OVER     "total_cents: the items' sum is over 99999999999"
#define NOT_SUM  "total_cents: not the items' sum"

/* The summary sums every stored order: a total that would leave int64 is
 * refused, the summary as it was. */
static void
test_summary(void)
{
	Evmesh__Shop__OrderSummary sum = EVMESH__SHOP__ORDER_SUMMARY__INIT;
	int64_t n = INT64_MAX / SHOP_TOTAL_MAX; /* largest orders that fit */

	sum.orders = n - 1;
	sum.total_cents = (n - 1) * SHOP_TOTAL_MAX;
	ok(shop_summary_add(&sum, SHOP_TOTAL_MAX),
	   "the summary adds a largest order as the %lldth", (long long)n);
	is_int(sum.total_cents, n * SHOP_TOTAL_MAX, "... to its total");
	is_int(sum.orders, n, "... and its count");
	ok(!shop_summary_add(&sum, SHOP_TOTAL_MAX),
	   "one more would overflow int64: refused");
	is_int(sum.total_cents, n * SHOP_TOTAL_MAX, "... the total unchanged");
	is_int(sum.orders, n, "... and the count");
	sum.total_cents = INT64_MIN + 1;
	ok(!shop_summary_add(&sum, -2),
	   "a negative total (stored before the limits) that would wrap: "
	   "refused");
}

int
main(void)
{
	static struct order o;
	const char *why;

	order_largest(&o);
	why = shop_order_check(&o.po);
	ok(why == NULL, "the largest valid order passes (100 lines, a price "
	                "of 100000000, a quantity of 10000)");
	if (why != NULL) {
		tap_diag("refused: %s", why);
	}
	is_int(o.po.total_cents, 99999999999,
	       "... whose total is SHOP_TOTAL_MAX, 99999999999 cents, as "
	       "shop.proto states");
	o.po.total_cents--;
	is_str(shop_order_check(&o.po), NOT_SUM,
	       "... and one cent less is not its sum");

	order_largest(&o);
	o.items[3].price_cents++;
	o.po.total_cents++;
	is_str(shop_order_check(&o.po), OVER,
	       "an order one cent over the total limit, total_cents its "
	       "sum: refused");

	order_init(&o, SHOP_ITEMS_MAX + 1);
	is_str(shop_order_check(&o.po), "items: more than 100 lines",
	       "101 lines: refused");
	order_init(&o, SHOP_ITEMS_MAX);
	ok(shop_order_check(&o.po) == NULL, "100 lines: placed");
	order_init(&o, 0);
	is_str(shop_order_check(&o.po), "items: none", "no lines: refused");

	is_str(one_line(&o, SHOP_QUANTITY_MAX + 1, 1, SHOP_QUANTITY_MAX + 1),
	       QUANTITY, "a quantity of 10001");
	is_str(one_line(&o, 0, 1, 0), QUANTITY, "a quantity of 0");
	is_str(one_line(&o, -1, 1, -1), QUANTITY, "a quantity of -1");
	is_str(one_line(&o, INT32_MIN, 1, INT32_MIN), QUANTITY,
	       "a quantity of INT32_MIN");
	is_str(one_line(&o, 1, SHOP_PRICE_MAX + 1, SHOP_PRICE_MAX + 1), PRICE,
	       "a price of 100000001");
	is_str(one_line(&o, 1, -1, -1), PRICE, "a price of -1");
	is_str(one_line(&o, 1, INT64_MIN, INT64_MIN), PRICE,
	       "a price of INT64_MIN");
	ok(one_line(&o, 1, 0, 0) == NULL, "a price of 0: placed, total 0");
	/* The bug of issue 11: 4 x 2^61 wrapped to INT64_MIN, and an order
	 * claiming that total was placed. */
	is_str(one_line(&o, 4, INT64_C(1) << 61, INT64_MIN), PRICE,
	       "4 x 2^61 (overflows int64 to INT64_MIN), total INT64_MIN: "
	       "refused");
	is_str(one_line(&o, 2, INT64_MAX / 2 + 1, INT64_MIN), PRICE,
	       "2 x (INT64_MAX/2 + 1): refused");
	order_init(&o, 2);
	o.items[0].price_cents = INT64_MAX;
	o.po.total_cents = INT64_MIN; /* INT64_MAX + 1, wrapped */
	is_str(shop_order_check(&o.po), PRICE,
	       "a sum of INT64_MAX + 1 (wrapping to INT64_MIN): refused");

	/* Every line at its largest: 100 x 10^12, within int64 (the static
	 * assertion in shop.c), over the total. */
	order_init(&o, SHOP_ITEMS_MAX);
	for (size_t i = 0; i < SHOP_ITEMS_MAX; i++) {
		o.items[i].quantity = SHOP_QUANTITY_MAX;
		o.items[i].price_cents = SHOP_PRICE_MAX;
	}
	o.po.total_cents = INT64_C(100000000000000);
	is_str(shop_order_check(&o.po), OVER,
	       "100 lines of 10000 x 100000000: the exact sum, refused as "
	       "over the total");

	order_init(&o, 1);
	o.po.total_cents = -1;
	is_str(shop_order_check(&o.po), NOT_SUM, "a negative total");
	o.po.total_cents = 1;
	o.po.order_id = "";
	is_str(shop_order_check(&o.po),
	       "order_id: want 1-128 of "
	       "[A-Za-z0-9_.:-]",
	       "an empty order id");
	o.po.order_id = "o-1";
	o.po.customer = "";
	is_str(shop_order_check(&o.po), "customer: empty", "no customer");
	o.po.customer = "c-1";
	o.po.country = "DEU";
	is_str(shop_order_check(&o.po), "country: want a two-letter code",
	       "a three-letter country");

	test_summary();
	return tap_done();
}
