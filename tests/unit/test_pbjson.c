/* The schema registry and the protobuf <-> JSON mapping: lookups, round
 * trips of every kind of field, error texts, and random JSON. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "changelog.pb-c.h"
#include "cloudevents.pb-c.h"
#include "harness.h"
#include "mesh/mesh.h"
#include "mesh_schemas.h"
#include "pbjson_kinds.pb-c.h"
#include "pbjson_legacy.pb-c.h"
#include "example.pb-c.h"
#include "shop.pb-c.h"

typedef Evmesh__Shop__PlaceOrder place_order;
typedef Evmesh__Test__Kinds kinds;

static json_t *
parse(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &e);

	if (j == NULL) {
		tap_diag("bad test JSON: %s: %s", text, e.text);
	}
	return j;
}

/* Encode text as desc; MESH_OK or the error. *out is NULL on error. */
static mesh_err
encode_text(const ProtobufCMessageDescriptor *desc, const char *text,
            ProtobufCMessage **out)
{
	json_t *j = parse(text);
	mesh_err err;

	*out = NULL;
	if (j == NULL) {
		return MESH_EINTERNAL;
	}
	err = mesh_pbjson_encode(desc, j, out);
	json_decref(j);
	return err;
}

/* decode(encode(text)) equals want (text itself when want is NULL). */
static void
round_trip(const ProtobufCMessageDescriptor *desc, const char *text,
           const char *want, const char *what)
{
	ProtobufCMessage *m = NULL;
	json_t *got = NULL, *expect = parse(want != NULL ? want : text);
	char *dump = NULL;
	mesh_err err;

	err = encode_text(desc, text, &m);
	if (err == MESH_OK) {
		err = mesh_pbjson_decode(m, &got);
	}
	if (!ok(err == MESH_OK && json_equal(got, expect), "%s", what)) {
		dump = got != NULL ? json_dumps(got, JSON_SORT_KEYS) : NULL;
		tap_diag("err %d (%s), got %s", err, mesh_errdetail(),
		         dump != NULL ? dump : "nothing");
		free(dump);
	}
	json_decref(got);
	json_decref(expect);
	protobuf_c_message_free_unpacked(m, NULL);
}

static void
fails(const ProtobufCMessageDescriptor *desc, const char *text, mesh_err want,
      const char *detail)
{
	ProtobufCMessage *m = NULL;
	mesh_err err = encode_text(desc, text, &m);

	is_int(err, want, "%s refused", text);
	is_str(mesh_errdetail(), detail, "  with: %s", detail);
	ok(m == NULL, "  and no message");
	protobuf_c_message_free_unpacked(m, NULL);
}

/* ---- the registry ------------------------------------------------------- */

/* Every message reachable from desc through its fields is registered. */
static bool
all_registered(const ProtobufCMessageDescriptor *desc, int depth)
{
	if (mesh_schema_find(desc->name) != desc) {
		tap_diag("%s is not in the registry", desc->name);
		return false;
	}
	if (depth > 4) {
		return true;
	}
	for (unsigned i = 0; i < desc->n_fields; i++) {
		if (desc->fields[i].type == PROTOBUF_C_TYPE_MESSAGE &&
		    !all_registered(desc->fields[i].descriptor, depth + 1)) {
			return false;
		}
	}
	return true;
}

static void
test_registry(void)
{
	static const struct {
		const char *name;
		const ProtobufCMessageDescriptor *desc;
	} want[] = {
	        {"io.cloudevents.v1.CloudEvent",
	         &io__cloudevents__v1__cloud_event__descriptor},
	        {"io.cloudevents.v1.CloudEvent.CloudEventAttributeValue",
	         &io__cloudevents__v1__cloud_event__cloud_event_attribute_value__descriptor},
	        {"io.cloudevents.v1.CloudEvent.AttributesEntry",
	         &io__cloudevents__v1__cloud_event__attributes_entry__descriptor},
	        {"io.cloudevents.v1.CloudEventBatch",
	         &io__cloudevents__v1__cloud_event_batch__descriptor},
	        {"google.protobuf.Any", &google__protobuf__any__descriptor},
	        {"google.protobuf.Timestamp",
	         &google__protobuf__timestamp__descriptor},
	        {"evmesh.shop.PlaceOrder",
	         &evmesh__shop__place_order__descriptor},
	        {"evmesh.shop.LineItem", &evmesh__shop__line_item__descriptor},
	        {"evmesh.shop.OrderPlaced",
	         &evmesh__shop__order_placed__descriptor},
	        {"evmesh.shop.ShipmentCreated",
	         &evmesh__shop__shipment_created__descriptor},
	        {"evmesh.shop.OrderSummary",
	         &evmesh__shop__order_summary__descriptor},
	        {"evmesh.shop.OrderStatus",
	         &evmesh__shop__order_status__descriptor},
	        {"evmesh.example.Greet", &evmesh__example__greet__descriptor},
	        {"evmesh.example.Greeted",
	         &evmesh__example__greeted__descriptor},
	        {"evmesh.changelog.ChangelogRecord",
	         &evmesh__changelog__changelog_record__descriptor},
	        {"evmesh.changelog.ChangelogWrite",
	         &evmesh__changelog__changelog_write__descriptor},
	        {"evmesh.changelog.SnapshotManifest",
	         &evmesh__changelog__snapshot_manifest__descriptor},
	};
	size_t n = mesh_schema_count();
	bool unique = true, self = true;

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		ok(mesh_schema_find(want[i].name) == want[i].desc,
		   "registry finds %s", want[i].name);
	}
	is_int(n, sizeof(want) / sizeof(want[0]),
	       "the registry holds exactly the compiled messages");
	for (size_t i = 0; i < n; i++) {
		const ProtobufCMessageDescriptor *d = mesh_schema_at(i);

		self = self && mesh_schema_find(d->name) == d;
		for (size_t k = 0; k < i; k++) {
			unique = unique &&
			         strcmp(mesh_schema_at(k)->name, d->name) != 0;
		}
	}
	ok(self, "each entry is found by its own name");
	ok(unique, "no name is listed twice");
	ok(all_registered(&io__cloudevents__v1__cloud_event_batch__descriptor,
	                  0),
	   "every message cloudevents.proto reaches is registered");
	ok(mesh_schema_find(".evmesh.shop.OrderPlaced") ==
	           &evmesh__shop__order_placed__descriptor,
	   "a leading dot is allowed");
	ok(mesh_schema_find("evmesh.shop.Nope") == NULL, "unknown: NULL");
	ok(mesh_schema_find("OrderPlaced") == NULL, "short names: NULL");
	ok(mesh_schema_find("") == NULL && mesh_schema_find(NULL) == NULL,
	   "empty and NULL: NULL");
}

/* ---- shop.proto --------------------------------------------------------- */

static void
test_shop(void)
{
	const ProtobufCMessageDescriptor *po =
	        &evmesh__shop__place_order__descriptor;
	ProtobufCMessage *m = NULL;
	place_order *p;

	round_trip(po,
	           "{\"orderId\":\"o-1\",\"customer\":\"ann\","
	           "\"country\":\"DE\",\"items\":[{\"sku\":\"A-1\","
	           "\"quantity\":2,\"priceCents\":\"1250\"},{\"sku\":\"B\"}],"
	           "\"totalCents\":\"2500\",\"priority\":\"EXPRESS\"}",
	           NULL, "PlaceOrder round trip (repeated message, enum)");
	round_trip(po,
	           "{\"order_id\":\"o-1\",\"total_cents\":2500,"
	           "\"priority\":1,\"items\":[{\"price_cents\":-3,"
	           "\"quantity\":\"-7\"}]}",
	           "{\"orderId\":\"o-1\",\"totalCents\":\"2500\","
	           "\"priority\":\"STANDARD\",\"items\":[{\"priceCents\":"
	           "\"-3\",\"quantity\":-7}]}",
	           "proto names, numbers for int64, enum by number, "
	           "int32 from a string");
	round_trip(po,
	           "{\"orderId\":\"\",\"totalCents\":0,\"priority\":"
	           "\"PRIORITY_UNSPECIFIED\",\"items\":[],\"country\":null}",
	           "{}", "defaults and null are left out");
	round_trip(po,
	           "{\"customer\":\"J\\u00fcrgen \\u2603 \\ud83d\\ude00\"}",
	           NULL, "UTF-8 strings");
	round_trip(po, "{\"totalCents\":\"-9223372036854775808\"}", NULL,
	           "int64 minimum");
	round_trip(po, "{\"totalCents\":\"9223372036854775807\"}", NULL,
	           "int64 maximum");
	round_trip(po, "{\"totalCents\":1e3}", "{\"totalCents\":\"1000\"}",
	           "an integral real is an integer");
	round_trip(&evmesh__shop__order_placed__descriptor,
	           "{\"orderId\":\"o-1\",\"customer\":\"ann\",\"country\":"
	           "\"FR\",\"totalCents\":\"99\",\"placedAt\":"
	           "\"2026-03-29T01:30:00.120Z\"}",
	           NULL, "OrderPlaced round trip (Timestamp)");
	round_trip(&evmesh__shop__order_placed__descriptor,
	           "{\"placedAt\":\"2026-03-29T03:30:00.000000001+02:00\"}",
	           "{\"placedAt\":\"2026-03-29T01:30:00.000000001Z\"}",
	           "a Timestamp with an offset is written in UTC");
	round_trip(&evmesh__shop__order_placed__descriptor,
	           "{\"placedAt\":\"0001-01-01T00:00:00Z\"}", NULL,
	           "the first Timestamp");
	round_trip(&evmesh__shop__order_placed__descriptor,
	           "{\"placedAt\":\"9999-12-31T23:59:59.999999999Z\"}", NULL,
	           "the last Timestamp");
	round_trip(&evmesh__shop__order_placed__descriptor,
	           "{\"placedAt\":\"2024-02-29T12:00:00.5Z\"}",
	           "{\"placedAt\":\"2024-02-29T12:00:00.500Z\"}",
	           "a leap day; fractions in 3, 6 or 9 digits");
	round_trip(&evmesh__shop__shipment_created__descriptor,
	           "{\"orderId\":\"o\",\"shipmentId\":\"s\",\"label\":"
	           "\"DHL 1\",\"country\":\"AT\"}",
	           NULL, "ShipmentCreated round trip");
	round_trip(&evmesh__shop__order_summary__descriptor,
	           "{\"windowStart\":\"1767225600\",\"orders\":\"3\","
	           "\"totalCents\":\"-1\"}",
	           NULL, "OrderSummary round trip");

	if (encode_text(po,
	                "{\"orderId\":\"o-9\",\"items\":[{\"sku\":\"x\","
	                "\"quantity\":3}],\"priority\":\"EXPRESS\"}",
	                &m) != MESH_OK) {
		ok(false, "PlaceOrder encodes: %s", mesh_errdetail());
		return;
	}
	p = (place_order *)m;
	is_str(p->order_id, "o-9", "the C struct has the order id");
	is_str(p->customer, "", "an absent string is empty");
	is_int(p->n_items, 1, "one item");
	is_int(p->items[0]->quantity, 3, "its quantity");
	is_int(p->priority, EVMESH__SHOP__PRIORITY__EXPRESS, "the priority");
	protobuf_c_message_free_unpacked(m, NULL);
}

/* ---- every kind of field ------------------------------------------------ */

static void
test_kinds(void)
{
	const ProtobufCMessageDescriptor *k = &evmesh__test__kinds__descriptor;
	ProtobufCMessage *m = NULL;
	kinds *v;

	round_trip(k,
	           "{\"i32\":-2147483648,\"s32\":-5,\"sf32\":2147483647,"
	           "\"u32\":4294967295,\"f32\":7,\"i64\":\"-1\",\"s64\":"
	           "\"-9223372036854775808\",\"sf64\":\"5\",\"u64\":"
	           "\"18446744073709551615\",\"f64\":\"1\"}",
	           NULL, "every integer type at its limits");
	round_trip(k, "{\"u64\":1e19}", "{\"u64\":\"10000000000000000000\"}",
	           "uint64 from a large real");
	round_trip(k, "{\"fl\":0.1,\"db\":0.1}", NULL,
	           "float and double (shortest float text)");
	round_trip(k, "{\"fl\":-0.0,\"db\":-0.0}", "{}",
	           "negative zero: the default to protobuf-c, which writes "
	           "no field for it (it compares values)");
	round_trip(k, "{\"rFl\":[-0.0]}", NULL,
	           "kept in a repeated field (each element is written)");
	round_trip(k, "{\"fl\":\"NaN\",\"db\":\"-Infinity\"}", NULL,
	           "NaN and -Infinity");
	round_trip(k, "{\"fl\":\"Infinity\",\"db\":\"1.5e300\"}",
	           "{\"fl\":\"Infinity\",\"db\":1.5e300}",
	           "Infinity; a double from a string");
	round_trip(k, "{\"db\":3}", "{\"db\":3.0}",
	           "a double from an integer");
	round_trip(k, "{\"flag\":true,\"text\":\"hi\",\"blob\":\"AAH/\"}",
	           NULL, "bool, string, bytes");
	round_trip(k, "{\"blob\":\"-_8\"}", "{\"blob\":\"+/8=\"}",
	           "URL-safe base64 without padding");
	round_trip(k, "{\"blob\":\"aGk\"}", "{\"blob\":\"aGk=\"}",
	           "standard base64 without padding");
	round_trip(k, "{\"blob\":\"\"}", "{}", "empty bytes are the default");
	round_trip(k, "{\"color\":\"GREEN\",\"rColor\":[\"RED\",0,7]}",
	           "{\"color\":\"GREEN\",\"rColor\":[\"RED\","
	           "\"COLOR_UNSPECIFIED\",7]}",
	           "enums; an unnamed value stays a number");
	round_trip(k,
	           "{\"child\":{\"child\":{\"text\":\"deep\"}},\"at\":"
	           "\"1970-01-01T00:00:00Z\"}",
	           NULL, "nested messages; the epoch Timestamp is written");
	round_trip(k,
	           "{\"rI64\":[\"1\",\"-2\"],\"rText\":[\"a\",\"\"],"
	           "\"rBlob\":[\"AA==\",\"\"],\"rDb\":[1.5,\"NaN\"],"
	           "\"rFlag\":[false,true],\"rU32\":[0,4294967295],"
	           "\"rFl\":[0.5],\"rAt\":[\"2026-01-01T00:00:00Z\"]}",
	           NULL, "repeated scalars keep their defaults");
	round_trip(k,
	           "{\"counts\":{\"a\":1,\"b\":0},\"byId\":{\"-5\":{\"text\":"
	           "\"x\"},\"7\":{}},\"byFlag\":{\"true\":\"yes\","
	           "\"false\":\"\"}}",
	           NULL, "maps of string, int64 and bool keys");
	round_trip(k, "{\"cNum\":0}", NULL,
	           "a oneof member set to its default is written");
	round_trip(k, "{\"cMsg\":{}}", NULL, "a oneof message member");
	round_trip(k, "{\"c_text\":\"t\"}", "{\"cText\":\"t\"}",
	           "a oneof string member");
	round_trip(k,
	           "{\"any\":{\"@type\":\"type.googleapis.com/"
	           "evmesh.shop.OrderPlaced\",\"orderId\":\"o\","
	           "\"placedAt\":\"2026-01-01T00:00:00Z\"}}",
	           NULL, "an Any of a registered message");
	round_trip(k,
	           "{\"any\":{\"@type\":\"type.googleapis.com/"
	           "google.protobuf.Timestamp\",\"value\":"
	           "\"2026-01-01T00:00:00Z\"}}",
	           NULL, "an Any of a Timestamp");
	round_trip(k, "{\"any\":{}}", NULL, "an empty Any");
	round_trip(k,
	           "{\"any\":{\"@type\":\"type.googleapis.com/"
	           "google.protobuf.Any\",\"value\":{\"@type\":"
	           "\"type.googleapis.com/evmesh.shop.LineItem\","
	           "\"sku\":\"s\"}}}",
	           NULL, "an Any in an Any");

	if (encode_text(k,
	                "{\"cNum\":5,\"u64\":\"18446744073709551615\","
	                "\"counts\":{\"k\":3}}",
	                &m) != MESH_OK) {
		ok(false, "Kinds encodes: %s", mesh_errdetail());
		return;
	}
	v = (kinds *)m;
	is_int(v->choice_case, EVMESH__TEST__KINDS__CHOICE_C_NUM,
	       "the oneof case is set");
	ok(v->u64 == UINT64_MAX, "uint64 maximum");
	ok(v->n_counts == 1 && strcmp(v->counts[0]->key, "k") == 0 &&
	           v->counts[0]->value == 3,
	   "a map is its entries");
	protobuf_c_message_free_unpacked(m, NULL);
}

/* proto2: fields with presence, required fields. */
static void
test_legacy(void)
{
	const ProtobufCMessageDescriptor *l =
	        &evmesh__test__legacy__descriptor;
	ProtobufCMessage *m = NULL;
	Evmesh__Test__Legacy *v;

	round_trip(l, "{}", "{\"req\":\"0\"}",
	           "a required field is always written");
	round_trip(l,
	           "{\"optI32\":0,\"optText\":\"\",\"optBlob\":\"\","
	           "\"optFlag\":false,\"child\":{\"req\":\"1\"},"
	           "\"req\":\"2\"}",
	           NULL, "optional fields set to their default are written");
	if (encode_text(l, "{\"opt_i32\":0}", &m) != MESH_OK) {
		ok(false, "Legacy encodes: %s", mesh_errdetail());
		return;
	}
	v = (Evmesh__Test__Legacy *)m;
	ok(v->has_opt_i32 && v->opt_i32 == 0, "optional: has_ is set");
	ok(!v->has_opt_flag && v->opt_text == NULL, "  and only that one");
	protobuf_c_message_free_unpacked(m, NULL);
}

/* ---- errors ------------------------------------------------------------- */

static void
test_errors(void)
{
	const ProtobufCMessageDescriptor *po =
	        &evmesh__shop__place_order__descriptor;
	const ProtobufCMessageDescriptor *k = &evmesh__test__kinds__descriptor;
	ProtobufCMessage *m = NULL;
	json_t *j, *deep;

	fails(po, "{\"orderId\":\"o\",\"x\":1}", MESH_EINVAL,
	      "unknown field \"x\" in evmesh.shop.PlaceOrder");
	fails(po, "{\"items\":[{},{\"bogus\":1}]}", MESH_EINVAL,
	      "unknown field \"items[1].bogus\" in evmesh.shop.LineItem");
	fails(po, "{\"items\":[{\"quantity\":1},{\"quantity\":\"x\"}]}",
	      MESH_EINVAL, "field \"items[1].quantity\": expected an integer");
	fails(po, "{\"items\":[{\"quantity\":1.5}]}", MESH_EINVAL,
	      "field \"items[0].quantity\": expected an integer");
	fails(po, "{\"items\":[{\"quantity\":2147483648}]}", MESH_EINVAL,
	      "field \"items[0].quantity\": out of range for int32");
	fails(po, "{\"totalCents\":\"9223372036854775808\"}", MESH_EINVAL,
	      "field \"totalCents\": out of range for int64");
	fails(po, "{\"totalCents\":\" 1\"}", MESH_EINVAL,
	      "field \"totalCents\": expected an integer");
	fails(po, "{\"totalCents\":\"1e3\"}", MESH_EINVAL,
	      "field \"totalCents\": expected an integer");
	fails(po, "{\"totalCents\":true}", MESH_EINVAL,
	      "field \"totalCents\": expected an integer");
	fails(po, "{\"orderId\":5}", MESH_EINVAL,
	      "field \"orderId\": expected a string");
	fails(po, "{\"items\":{}}", MESH_EINVAL,
	      "field \"items\": expected an array");
	fails(po, "{\"items\":[null]}", MESH_EINVAL,
	      "field \"items[0]\": null in an array");
	fails(po, "{\"items\":[\"x\"]}", MESH_EINVAL,
	      "field \"items[0]\": expected an object "
	      "(evmesh.shop.LineItem)");
	fails(po, "{\"priority\":\"FAST\"}", MESH_EINVAL,
	      "field \"priority\": unknown value \"FAST\" of "
	      "evmesh.shop.Priority");
	fails(po, "{\"priority\":[]}", MESH_EINVAL,
	      "field \"priority\": expected an enum name or number");
	fails(po, "{\"orderId\":\"a\",\"order_id\":\"b\"}", MESH_EINVAL,
	      "field \"order_id\": given twice (under both of its names)");
	fails(po, "[]", MESH_EINVAL,
	      "expected a JSON object for evmesh.shop.PlaceOrder");
	fails(&google__protobuf__timestamp__descriptor, "{}", MESH_EINVAL,
	      "expected an RFC 3339 timestamp string "
	      "(\"2026-01-01T00:00:00Z\")");
	fails(&evmesh__shop__order_placed__descriptor,
	      "{\"placedAt\":\"2026-02-30T00:00:00Z\"}", MESH_EINVAL,
	      "field \"placedAt\": expected an RFC 3339 timestamp string "
	      "(\"2026-01-01T00:00:00Z\")");
	fails(k, "{\"u32\":-1}", MESH_EINVAL,
	      "field \"u32\": out of range for uint32");
	fails(k, "{\"u64\":\"-1\"}", MESH_EINVAL,
	      "field \"u64\": out of range for uint64");
	fails(k, "{\"u64\":\"18446744073709551616\"}", MESH_EINVAL,
	      "field \"u64\": out of range for uint64");
	fails(k, "{\"fl\":1e39}", MESH_EINVAL,
	      "field \"fl\": out of range for float");
	/* Regression (fuzz_pbjson): FLT_MAX as we write it was refused. */
	round_trip(k, "{\"fl\":-3.4028235e38,\"rFl\":[3.4028235e38]}", NULL,
	           "float: FLT_MAX's shortest text reads back");
	fails(k, "{\"fl\":3.4028236e38}", MESH_EINVAL,
	      "field \"fl\": out of range for float");
	fails(k, "{\"db\":\"inf\"}", MESH_EINVAL,
	      "field \"db\": expected a number");
	fails(k, "{\"flag\":1}", MESH_EINVAL,
	      "field \"flag\": expected true or false");
	fails(k, "{\"blob\":\"a*b=\"}", MESH_EINVAL,
	      "field \"blob\": expected base64 text");
	fails(k, "{\"cText\":\"a\",\"cNum\":1}", MESH_EINVAL,
	      "field \"cNum\": \"c_text\" of the same oneof is set too");
	fails(k, "{\"counts\":{\"a\":\"x\"}}", MESH_EINVAL,
	      "field \"counts[\"a\"]\": expected an integer");
	fails(k, "{\"byId\":{\"x\":{}}}", MESH_EINVAL,
	      "field \"byId[\"x\"]\": expected an integer");
	fails(k, "{\"byFlag\":{\"yes\":\"\"}}", MESH_EINVAL,
	      "field \"byFlag[\"yes\"]\": expected true or false");
	fails(k, "{\"counts\":[]}", MESH_EINVAL,
	      "field \"counts\": expected an object");
	fails(k, "{\"any\":{\"orderId\":\"o\"}}", MESH_EINVAL,
	      "field \"any\": expected an object with \"@type\"");
	fails(k, "{\"any\":{\"@type\":\"type.googleapis.com/x.Y\"}}",
	      MESH_EINVAL,
	      "field \"any\": @type \"type.googleapis.com/x.Y\" is not in "
	      "the schema registry");
	fails(k,
	      "{\"any\":{\"@type\":\"type.googleapis.com/"
	      "evmesh.shop.OrderPlaced\",\"bad\":1}}",
	      MESH_EINVAL,
	      "unknown field \"any.bad\" in evmesh.shop.OrderPlaced");

	j = json_object();
	json_object_set_new(j, "text", json_stringn("a\0b", 3));
	is_int(mesh_pbjson_encode(k, j, &m), MESH_EINVAL, "a NUL is refused");
	is_str(mesh_errdetail(), "field \"text\": string contains a NUL",
	       "  and named");
	json_decref(j);

	/* {"child": {"child": ...}} nested past the limit */
	deep = json_object();
	for (int i = 0; i < MESH_PBJSON_MAX_DEPTH + 5; i++) {
		json_t *outer = json_object();

		json_object_set_new(outer, "child", deep);
		deep = outer;
	}
	is_int(mesh_pbjson_encode(k, deep, &m), MESH_EINVAL,
	       "nesting past the limit is refused");
	has_str(mesh_errdetail(), "nested too deeply", "  and said so");
	json_decref(deep);
}

/* ---- events ------------------------------------------------------------- */

static void
test_events(void)
{
	static const char order[] =
	        "{\"orderId\":\"o-7\",\"totalCents\":\"4200\",\"placedAt\":"
	        "\"2026-06-01T08:00:00Z\"}";
	struct mesh_event *ev = NULL;
	const char *url = NULL;
	json_t *got = NULL, *want = parse(order);

	if (mesh_event_new("evmesh.shop.OrderPlaced", "/test", &ev) !=
	    MESH_OK) {
		ok(false, "event: %s", mesh_errdetail());
		json_decref(want);
		return;
	}
	is_int(mesh_pbjson_set_event_data(ev, "evmesh.shop.OrderPlaced", order,
	                                  strlen(order)),
	       MESH_OK, "JSON becomes the event's payload");
	is_int(mesh_event_data(ev, NULL, NULL, &url), MESH_DATA_PROTO,
	       "  as protobuf");
	is_str(url, "type.googleapis.com/evmesh.shop.OrderPlaced",
	       "  with its type URL");
	is_int(mesh_pbjson_event_data(ev, &got), MESH_OK,
	       "the payload reads back as JSON");
	ok(json_equal(got, want), "  the same JSON");
	json_decref(got);
	got = NULL;

	is_int(mesh_pbjson_set_event_data(ev, "evmesh.shop.Nope", "{}", 2),
	       MESH_ENOTFOUND, "an unknown type is refused");
	is_str(mesh_errdetail(),
	       "message type \"evmesh.shop.Nope\": not in the schema registry",
	       "  and named");
	is_int(mesh_pbjson_set_event_data(ev, "evmesh.shop.OrderPlaced",
	                                  "{\"orderId\":", 11),
	       MESH_EPARSE, "malformed JSON: MESH_EPARSE");
	is_int(mesh_pbjson_set_event_data(ev, "evmesh.shop.OrderPlaced",
	                                  "{\"a\":1,\"a\":2}", 13),
	       MESH_EPARSE, "duplicate keys: MESH_EPARSE");
	is_int(mesh_pbjson_set_event_data(ev, "evmesh.shop.OrderPlaced",
	                                  "{\"orderId\":1}", 13),
	       MESH_EINVAL, "a wrong type: MESH_EINVAL");
	is_int(mesh_pbjson_event_data(ev, &got), MESH_OK,
	       "after failures the payload is unchanged");
	ok(json_equal(got, want), "  the same JSON");
	json_decref(got);
	got = NULL;

	mesh_event_set_proto(ev, "evmesh.shop.Nope", "", 0);
	is_int(mesh_pbjson_event_data(ev, &got), MESH_ENOTFOUND,
	       "a payload of an unknown type: MESH_ENOTFOUND");
	mesh_event_set_proto(ev, "evmesh.shop.OrderPlaced", "\x0a\xff", 2);
	is_int(mesh_pbjson_event_data(ev, &got), MESH_EPARSE,
	       "a malformed payload: MESH_EPARSE");
	mesh_event_set_text(ev, "hi", 2);
	is_int(mesh_pbjson_event_data(ev, &got), MESH_EINVAL,
	       "a text payload: MESH_EINVAL");
	ok(got == NULL, "no JSON on errors");
	json_decref(want);
	mesh_event_free(ev);
}

/* ---- random input ------------------------------------------------------- */

static const char *const keys[] = {
        "orderId",     "order_id",  "items",      "quantity",    "sku",
        "priceCents",  "priority",  "totalCents", "placedAt",    "i32",
        "u32",         "i64",       "u64",        "fl",          "db",
        "flag",        "text",      "blob",       "color",       "child",
        "at",          "rI64",      "rText",      "rBlob",       "rColor",
        "counts",      "byId",      "byFlag",     "req",         "optText",
        "cText",       "cNum",      "cMsg",       "any",         "@type",
        "value",       "rAt",       "rFl",        "id",          "source",
        "specVersion", "type",      "attributes", "binaryData",  "textData",
        "protoData",   "ceBoolean", "ceInteger",  "ceTimestamp", "events",
        "optI32",      "x",
};

static const char *const strings[] = {
        "",
        "EXPRESS",
        "RED",
        "NaN",
        "Infinity",
        "-Infinity",
        "1",
        "-1",
        "18446744073709551616",
        "9223372036854775807",
        "AAH/",
        "-_8",
        "a=b",
        "2026-01-01T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "0000-01-01T00:00:00Z",
        "9999-12-31T23:59:59+01:00",
        "type.googleapis.com/evmesh.shop.OrderPlaced",
        "type.googleapis.com/google.protobuf.Timestamp",
        "type.googleapis.com/google.protobuf.Any",
        "type.googleapis.com/evmesh.test.Kinds",
        "true",
        "7",
        "\xc3\xa4",
};

static json_t *
random_json(int depth)
{
	static const double reals[] = {0.5,   -0.0,        1e300, -1e39,
	                               3.0,   1e19,        -1e19, 2147483648.0,
	                               1e-40, 4294967296.0};
	static const long long ints[] = {0,
	                                 1,
	                                 -1,
	                                 2147483647,
	                                 -2147483648LL,
	                                 4294967295LL,
	                                 4294967296LL,
	                                 9223372036854775807LL,
	                                 (-9223372036854775807LL - 1),
	                                 7};
	unsigned kind = depth == 0 ? 8 : test_rand() % (depth > 3 ? 6 : 9);
	json_t *j;

	switch (kind) {
	case 0:
		return json_null();
	case 1:
		return json_boolean(test_rand() % 2);
	case 2:
		return json_integer(ints[test_rand() % 10]);
	case 3:
		return json_real(reals[test_rand() % 10]);
	case 4:
	case 5:
		return json_string(
		        strings[test_rand() %
		                (sizeof(strings) / sizeof(strings[0]))]);
	case 6:
		j = json_array();
		for (unsigned i = test_rand() % 4; i > 0; i--) {
			json_array_append_new(j, random_json(depth + 1));
		}
		return j;
	default:
		j = json_object();
		for (unsigned i = test_rand() % 5; i > 0; i--) {
			json_object_set_new(
			        j,
			        keys[test_rand() %
			             (sizeof(keys) / sizeof(keys[0]))],
			        random_json(depth + 1));
		}
		return j;
	}
}

static void
test_random(void)
{
	const ProtobufCMessageDescriptor *descs[] = {
	        &evmesh__test__kinds__descriptor,
	        &evmesh__shop__place_order__descriptor,
	        &evmesh__shop__order_placed__descriptor,
	        &io__cloudevents__v1__cloud_event__descriptor,
	        &evmesh__test__legacy__descriptor,
	};
	int accepted = 0, stable = 0, undecodable = 0;

	for (int i = 0; i < 10000; i++) {
		const ProtobufCMessageDescriptor *d = descs[i % 5];
		json_t *j = random_json(0), *once = NULL, *twice = NULL;
		ProtobufCMessage *m = NULL, *m2 = NULL;

		if (mesh_pbjson_encode(d, j, &m) == MESH_OK) {
			accepted++;
			/* decode(encode(x)) is a fixed point of the two */
			if (mesh_pbjson_decode(m, &once) != MESH_OK) {
				undecodable++;
			} else if (mesh_pbjson_encode(d, once, &m2) ==
			                   MESH_OK &&
			           mesh_pbjson_decode(m2, &twice) == MESH_OK &&
			           json_equal(once, twice)) {
				stable++;
			} else {
				char *s = json_dumps(once, 0);

				tap_diag("not stable: %s (%s)", s,
				         mesh_errdetail());
				free(s);
			}
		}
		json_decref(j);
		json_decref(once);
		json_decref(twice);
		protobuf_c_message_free_unpacked(m, NULL);
		protobuf_c_message_free_unpacked(m2, NULL);
	}
	tap_diag("%d of 10000 random values accepted", accepted);
	ok(accepted > 100, "some random values are valid messages");
	is_int(undecodable, 0, "every accepted message decodes");
	is_int(stable, accepted, "and reads back to the same JSON");
}

/* Valid JSON text with random bytes changed, as an event's payload. */
static void
test_random_text(void)
{
	static const char order[] =
	        "{\"orderId\":\"o-1\",\"items\":[{\"sku\":\"A\","
	        "\"quantity\":2,\"priceCents\":\"125\"}],\"totalCents\":"
	        "250,\"priority\":\"EXPRESS\"}";
	struct mesh_event *ev = NULL;
	char text[sizeof(order)];
	int accepted = 0, counts[MESH_EINTERNAL + 1] = {0};

	if (mesh_event_new("t", "/test", &ev) != MESH_OK) {
		ok(false, "event");
		return;
	}
	for (int i = 0; i < 5000; i++) {
		size_t len = sizeof(order) - 1 - test_rand() % 4;
		mesh_err err;

		memcpy(text, order, sizeof(order));
		for (unsigned n = 1 + test_rand() % 3; n > 0; n--) {
			text[test_rand() % len] =
			        "{}[]\",:0-e.\\x\x80"[test_rand() % 15];
		}
		err = mesh_pbjson_set_event_data(ev, "evmesh.shop.PlaceOrder",
		                                 text, len);
		accepted += err == MESH_OK;
		counts[err <= MESH_EINTERNAL ? err : MESH_EINTERNAL]++;
	}
	tap_diag("mutated JSON: %d accepted, %d EPARSE, %d EINVAL", accepted,
	         counts[MESH_EPARSE], counts[MESH_EINVAL]);
	is_int(accepted + counts[MESH_EPARSE] + counts[MESH_EINVAL], 5000,
	       "5000 mutated JSON texts: accepted, EPARSE or EINVAL");
	mesh_event_free(ev);
}

/* Random bytes as a registered payload: refused or written, never worse. */
static void
test_random_payloads(void)
{
	struct mesh_event *ev = NULL;
	uint8_t buf[64];
	int decoded = 0;

	if (mesh_event_new("t", "/test", &ev) != MESH_OK) {
		ok(false, "event");
		return;
	}
	for (int i = 0; i < 5000; i++) {
		size_t len = test_rand() % sizeof(buf);
		json_t *got = NULL;
		mesh_err err;

		for (size_t k = 0; k < len; k++) {
			buf[k] = (uint8_t)test_rand();
		}
		mesh_event_set_proto(ev,
		                     i % 2 ? "evmesh.shop.PlaceOrder"
		                           : "io.cloudevents.v1.CloudEvent",
		                     buf, len);
		err = mesh_pbjson_event_data(ev, &got);
		decoded += err == MESH_OK;
		json_decref(got);
	}
	tap_diag("%d of 5000 random payloads decoded", decoded);
	ok(true, "5000 random payloads: no crash");
	mesh_event_free(ev);
}

int
main(void)
{
	test_registry();
	test_shop();
	test_kinds();
	test_legacy();
	test_errors();
	test_events();
	test_random();
	test_random_text();
	test_random_payloads();
	return tap_done();
}
