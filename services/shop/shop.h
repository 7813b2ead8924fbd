/* The shop example's shared nouns: the state keys the three services
 * write, the list of shippable countries, and the few helpers their
 * handlers share.
 *
 * State keys (each service's own LMDB environment, database "state"):
 *   orders:        order/<id>    the OrderPlaced it emitted (packed)
 *                  repeat/<id>   times a command repeated a stored order
 *                  summary/<ms>  an OrderSummary per scheduled firing
 *   shipping:      shipment/<id> the ShipmentCreated it emitted (packed)
 *                  dup/<id>      times an order came again (never, when
 *                                the mesh keeps its promise)
 *   notifications: sent/<id>     the confirmation "sent"
 *                  dup/<id>      as for shipping
 */
#ifndef SHOP_SHOP_H
#define SHOP_SHOP_H

#include <stdbool.h>
#include <stddef.h>

#include "mesh/service.h"
#include "shop.pb-c.h"

#define SHOP_ORDER    "order/"
#define SHOP_REPEAT   "repeat/"
#define SHOP_SUMMARY  "summary/"
#define SHOP_SHIPMENT "shipment/"
#define SHOP_SHIPPED  "shipped/" /* orders': the order's shipment */
#define SHOP_CANCEL   "cancel/"  /* orders': cancellations asked */
#define SHOP_SENT     "sent/"
#define SHOP_DUP      "dup/"

/* An order id: 1-128 of [A-Za-z0-9_.:-], so that keys stay short. */
#define SHOP_ID_MAX  128
#define SHOP_KEY_MAX (16 + SHOP_ID_MAX)

/* The limits of a PlaceOrder (schemas/shop.proto states them too). The
 * bounds of a line are checked before any arithmetic: within them, no
 * line's product and no order's sum can leave int64 (shop.c asserts it).
 * The total stays below 10^9 units, so that OrderPlaced's "total"
 * attribute (in units) is in the range SNS documents for numeric filter
 * conditions, +-10^9 to five decimals. */
#define SHOP_ITEMS_MAX    100         /* lines of an order: 1-100 */
#define SHOP_QUANTITY_MAX 10000       /* a line's quantity: 1-10000 */
#define SHOP_PRICE_MAX    100000000   /* a unit price: 0-1,000,000.00 */
#define SHOP_TOTAL_MAX    99999999999 /* an order: 0-999,999,999.99 */

/* The shippable countries: --countries LIST, else SHOP_COUNTRIES, else
 * this. */
#define SHOP_COUNTRIES_DEFAULT "DE,FR,NL,US,GB"
#define SHOP_COUNTRIES_ENV     "SHOP_COUNTRIES"

/* Take "--countries LIST" (or "--countries=LIST") out of argv, so that the
 * rest goes to mesh_service_main; returns the list (argv's, the
 * environment's or the default: borrowed for the program's life). */
const char *shop_countries_arg(int *argc, char **argv);

/* Whether country (a two-letter code) is in the comma-separated list. */
bool shop_country_in(const char *list, const char *country);

/* The filter policy {"country":["DE",...]} for a list, in buf. Returns
 * false when it does not fit or an entry is not two capital letters. */
bool shop_countries_policy(const char *list, char *buf, size_t size);

/* Whether an order id is well-formed (see SHOP_ID_MAX). */
bool shop_id_valid(const char *id);

/* Check a PlaceOrder command: its id, customer and country, its lines
 * within the limits above, and total_cents equal to the sum of the lines'
 * quantity * price_cents. Returns NULL when it holds, else the reason
 * (static text naming the field and the limit: what mesh_reject records). */
const char *shop_order_check(const Evmesh__Shop__PlaceOrder *po);

/* Count one more order of total_cents into a summary. Returns false, the
 * summary unchanged, when its total would leave int64: the orders are
 * unbounded in number. */
bool shop_summary_add(Evmesh__Shop__OrderSummary *sum, int64_t total_cents);

/* prefix + id into key (SHOP_KEY_MAX); returns the key's length. */
size_t shop_key(char *key, const char *prefix, const char *id);

/* The shipping label: deterministic from the order id and country, so
 * that handling an order again makes the same label. */
void shop_label(const char *order_id, const char *country, char *buf,
                size_t size);

/* Count, under dup/<id> (or repeat/<id>), one more arrival of something
 * already handled. */
mesh_err shop_count_again(struct mesh_ctx *ctx, const char *prefix,
                          const char *id);

/* Whether prefix+id is stored already; if so, one more arrival is counted
 * under again+id. Returns 1 (stored; counted), 0 (new: key, of
 * SHOP_KEY_MAX, and *klen are filled) or -1 (the state failed). */
int shop_seen(struct mesh_ctx *ctx, const char *prefix, const char *again,
              const char *id, char *key, size_t *klen);

/* Store msg packed under key. Errors: mesh_state_put's, MESH_ENOMEM. */
mesh_err shop_put_message(struct mesh_ctx *ctx, const char *key, size_t klen,
                          const ProtobufCMessage *msg);

/* The end of a service's main(): declared is the outcome of declaring s
 * (its name, sources and handlers); on error it is printed and the exit
 * code is 1, else mesh_service_main runs. Frees s (NULL allowed). */
int shop_main(struct mesh_service *s, mesh_err declared, int argc,
              char **argv);

#endif
