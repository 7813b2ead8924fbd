/* shop.c: the shop services' shared helpers (see shop.h). */
#include "shop.h"

#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *
shop_countries_arg(int *argc, char **argv)
{
	const char *list = getenv(SHOP_COUNTRIES_ENV);
	int out = 1;

	for (int i = 1; i < *argc; i++) {
		if (strcmp(argv[i], "--countries") == 0 && i + 1 < *argc) {
			list = argv[++i];
		} else if (strncmp(argv[i], "--countries=", 12) == 0) {
			list = argv[i] + 12;
		} else {
			argv[out++] = argv[i];
		}
	}
	*argc = out;
	argv[out] = NULL;
	return list != NULL && list[0] != '\0' ? list : SHOP_COUNTRIES_DEFAULT;
}

bool
shop_country_in(const char *list, const char *country)
{
	size_t n = strlen(country);

	for (const char *p = list; *p != '\0';) {
		size_t len = strcspn(p, ",");

		if (len == n && n > 0 && memcmp(p, country, n) == 0) {
			return true;
		}
		p += len;
		p += *p == ',';
	}
	return false;
}

static bool
is_country(const char *p, size_t len)
{
	return len == 2 && p[0] >= 'A' && p[0] <= 'Z' && p[1] >= 'A' &&
	       p[1] <= 'Z';
}

bool
shop_countries_policy(const char *list, char *buf, size_t size)
{
	size_t used = (size_t)snprintf(buf, size, "{\"country\":[");

	for (const char *p = list; *p != '\0';) {
		size_t len = strcspn(p, ",");

		if (!is_country(p, len) || used + 8 >= size) {
			return false;
		}
		used += (size_t)snprintf(buf + used, size - used, "%s\"%.2s\"",
		                         buf[used - 1] == '[' ? "" : ",", p);
		p += len;
		p += *p == ',';
	}
	if (buf[used - 1] == '[' || used + 3 > size) {
		return false; /* an empty list would ship nothing: refuse */
	}
	snprintf(buf + used, size - used, "]}");
	return true;
}

bool
shop_id_valid(const char *id)
{
	size_t n = id != NULL ? strlen(id) : 0;

	if (n == 0 || n > SHOP_ID_MAX) {
		return false;
	}
	return strspn(id,
	              "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	              "0123456789_.:-") == n;
}

/* The reasons, their limits from the same macros. */
#define TEXT(x)  #x
#define LIMIT(x) TEXT(x)
static const char bad_id[] =
        "order_id: want 1-" LIMIT(SHOP_ID_MAX) " of [A-Za-z0-9_.:-]";
static const char bad_lines[] =
        "items: more than " LIMIT(SHOP_ITEMS_MAX) " lines";
static const char bad_quantity[] =
        "items: a quantity not in 1-" LIMIT(SHOP_QUANTITY_MAX);
static const char bad_price[] =
        "items: a price_cents not in 0-" LIMIT(SHOP_PRICE_MAX);
static const char bad_total[] =
        "total_cents: the items' sum is over " LIMIT(SHOP_TOTAL_MAX);

/* With the bounds checked first, a line is at most QUANTITY * PRICE and an
 * order at most ITEMS such lines: the sum below cannot overflow. */
_Static_assert(SHOP_PRICE_MAX <=
                       INT64_MAX / SHOP_ITEMS_MAX / SHOP_QUANTITY_MAX,
               "the shop's limits let an order's sum overflow int64");

const char *
shop_order_check(const Evmesh__Shop__PlaceOrder *po)
{
	int64_t sum = 0;

	if (!shop_id_valid(po->order_id)) {
		return bad_id;
	}
	if (po->customer[0] == '\0') {
		return "customer: empty";
	}
	if (strlen(po->country) != 2) {
		return "country: want a two-letter code";
	}
	if (po->n_items == 0) {
		return "items: none";
	}
	if (po->n_items > SHOP_ITEMS_MAX) {
		return bad_lines;
	}
	for (size_t i = 0; i < po->n_items; i++) {
		const Evmesh__Shop__LineItem *it = po->items[i];

		if (it->quantity < 1 || it->quantity > SHOP_QUANTITY_MAX) {
			return bad_quantity;
		}
		if (it->price_cents < 0 || it->price_cents > SHOP_PRICE_MAX) {
			return bad_price;
		}
		sum += (int64_t)it->quantity * it->price_cents;
	}
	if (sum > SHOP_TOTAL_MAX) {
		return bad_total;
	}
	return sum == po->total_cents ? NULL
	                              : "total_cents: not the items' sum";
}

bool
shop_summary_add(Evmesh__Shop__OrderSummary *sum, int64_t total_cents)
{
	int64_t total;

	if (__builtin_add_overflow(sum->total_cents, total_cents, &total)) {
		return false;
	}
	sum->total_cents = total;
	sum->orders++;
	return true;
}

size_t
shop_key(char *key, const char *prefix, const char *id)
{
	int n = snprintf(key, SHOP_KEY_MAX, "%s%s", prefix, id);

	return n < 0 || n >= SHOP_KEY_MAX ? SHOP_KEY_MAX - 1 : (size_t)n;
}

void
shop_label(const char *order_id, const char *country, char *buf, size_t size)
{
	uint64_t h = 0xcbf29ce484222325u; /* FNV-1a: stable everywhere */

	for (const unsigned char *p = (const void *)order_id; *p; p++) {
		h = (h ^ *p) * 0x100000001b3u;
	}
	snprintf(buf, size, "EVM-%s-%016" PRIX64, country, h);
}

mesh_err
shop_count_again(struct mesh_ctx *ctx, const char *prefix, const char *id)
{
	char key[SHOP_KEY_MAX], num[24];
	size_t klen = shop_key(key, prefix, id), vlen;
	const void *val;
	unsigned long long times = 0;
	mesh_err err = mesh_state_get(ctx, key, klen, &val, &vlen);

	if (err == MESH_OK && vlen < sizeof num) {
		memcpy(num, val, vlen);
		num[vlen] = '\0';
		times = strtoull(num, NULL, 10);
	} else if (err != MESH_OK && err != MESH_ENOTFOUND) {
		return err;
	}
	times += times < ULLONG_MAX; /* saturate: never wrap to 0 */
	int n = snprintf(num, sizeof num, "%llu", times);
	return mesh_state_put(ctx, key, klen, num, (size_t)n);
}

int
shop_seen(struct mesh_ctx *ctx, const char *prefix, const char *again,
          const char *id, char *key, size_t *klen)
{
	const void *val;
	size_t vlen;
	mesh_err err;

	*klen = shop_key(key, prefix, id);
	err = mesh_state_get(ctx, key, *klen, &val, &vlen);
	if (err == MESH_ENOTFOUND) {
		return 0;
	}
	if (err == MESH_OK) {
		err = shop_count_again(ctx, again, id);
	}
	return err == MESH_OK ? 1 : -1;
}

mesh_err
shop_put_message(struct mesh_ctx *ctx, const char *key, size_t klen,
                 const ProtobufCMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint8_t *val = malloc(len + 1); /* +1: an empty message is no NULL */
	mesh_err err;

	if (val == NULL) {
		return MESH_ENOMEM;
	}
	protobuf_c_message_pack(msg, val);
	err = mesh_state_put(ctx, key, klen, val, len);
	free(val);
	return err;
}

/* The partition key of the shop's events: an order's id, whichever of
 * its events it is (so that an order's state is all in one partition);
 * other events (summary firings), their subject or id. */
static size_t
order_key(const struct mesh_event *ev, const char **key, void *arg)
{
	static const ProtobufCMessageDescriptor *const with_id[] = {
	        &evmesh__shop__place_order__descriptor,
	        &evmesh__shop__order_placed__descriptor,
	        &evmesh__shop__shipment_created__descriptor,
	};
	static _Thread_local char id[SHOP_ID_MAX + 1];
	const char *type = mesh_event_type(ev);

	(void)arg;
	for (size_t i = 0; i < sizeof(with_id) / sizeof(*with_id); i++) {
		const ProtobufCFieldDescriptor *f;
		ProtobufCMessage *m = NULL;
		if (strcmp(type, with_id[i]->name) != 0 ||
		    mesh_event_unpack_message(ev, with_id[i], NULL, &m) !=
		            MESH_OK) {
			continue;
		}
		/* order_id is field 1 of each, a string. */
		f = protobuf_c_message_descriptor_get_field_by_name(
		        with_id[i], "order_id");
		snprintf(id, sizeof(id), "%s",
		         *(const char **)((const char *)m + f->offset));
		protobuf_c_message_free_unpacked(m, NULL);
		*key = id;
		return strlen(id);
	}
	*key = mesh_event_subject(ev);
	if (*key == NULL || (*key)[0] == '\0') {
		*key = mesh_event_id(ev);
	}
	return strlen(*key);
}

int
shop_main(struct mesh_service *s, mesh_err declared, int argc, char **argv)
{
	int rc = 1;

	/* Partitioned when --partitions (MESH_PARTITIONS) says so. */
	if (declared == MESH_OK) {
		declared = mesh_service_partitions(s, 0, order_key, NULL);
	}
	if (declared == MESH_OK) {
		rc = mesh_service_main(s, argc, argv);
	} else {
		fprintf(stderr, "%s: %s: %s\n", argv[0],
		        mesh_strerror(declared), mesh_errdetail());
	}
	mesh_service_free(s);
	return rc;
}
