/* make-seeds: write the fuzz targets' seed corpora, real inputs made by
 * the library itself, into DIR/<target>/ (tests/fuzz/corpus). Run from the
 * root after a change of an input format:
 *   build/tests/fuzz/make-seeds tests/fuzz/corpus
 * Files are named after what they hold; the same build writes the same
 * files but for event ids and times (fresh UUIDs). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"
#include "mesh/event.h"
#include "mesh/pbjson.h"
#include "mesh/queue.h"
#include "mesh/wire.h"
#include "messages.h"
#include "schedule.h"

static const char *root;

/* 80 bytes (a data key sealed) in base64, for the seeds of "param". */
#define SEALED_B64                                                            \
	"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDE" \
	"y"                                                                   \
	"MzQ1Njc4OTo7PD0+P0BBQkNERUZHSElKS0xNTk8="
static int failed;

/* Write a seed: an optional leading byte (the target's selector; -1 for
 * none), then two parts joined by `sep` when b is not NULL. */
static void
seed(const char *target, const char *name, int lead, const void *a,
     size_t alen, int sep, const void *b, size_t blen)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", root, target);
	if (mkdir(path, 0755) != 0 && errno != EEXIST) {
		perror(path);
		failed = 1;
		return;
	}
	snprintf(path, sizeof(path), "%s/%s/%s", root, target, name);
	if ((f = fopen(path, "wb")) == NULL) {
		perror(path);
		failed = 1;
		return;
	}
	if (lead >= 0) {
		fputc(lead, f);
	}
	fwrite(a, 1, alen, f);
	if (b != NULL) {
		if (sep >= 0) {
			fputc(sep, f);
		}
		fwrite(b, 1, blen, f);
	}
	if (fclose(f) != 0) {
		perror(path);
		failed = 1;
	}
}

static void
seed_str(const char *target, const char *name, int lead, const char *s)
{
	seed(target, name, lead, s, strlen(s), -1, NULL, 0);
}

/* ---- events --------------------------------------------------------- */

static struct mesh_event *
order_event(void)
{
	struct mesh_event *ev = NULL;
	struct mesh_ext_value v = {.type = MESH_EXT_INT, .integer = -7};
	static const uint8_t bin[] = {0, 1, 2, 0xff};
	static const char order[] =
	        "{\"orderId\": \"o-42\", \"customer\": \"ada\", \"country\": "
	        "\"DE\", \"totalCents\": \"12500\", \"placedAt\": "
	        "\"2026-01-01T12:00:00.250Z\"}";

	if (mesh_event_new("evmesh.shop.OrderPlaced", "/services/orders",
	                   &ev) != MESH_OK) {
		return NULL;
	}
	mesh_event_set_subject(ev, "o-42");
	mesh_event_set_dataschema(ev, "https://example.com/shop.proto");
	mesh_event_set_time(ev, 1767225600, 123456789);
	mesh_event_ext_set(ev, "count", &v);
	v = (struct mesh_ext_value){.type = MESH_EXT_BOOL, .boolean = true};
	mesh_event_ext_set(ev, "flag", &v);
	v = (struct mesh_ext_value){
	        .type = MESH_EXT_TIME, .sec = 1, .nsec = 2};
	mesh_event_ext_set(ev, "seen", &v);
	v = (struct mesh_ext_value){
	        .type = MESH_EXT_URIREF, .string = "/x", .len = 2};
	mesh_event_ext_set(ev, "ref", &v);
	mesh_event_attr_set(ev, "country", "String", "DE", 2);
	mesh_event_attr_set(ev, "total", "Number", "125.00", 6);
	mesh_event_attr_set(ev, "tags", "String.Array", "[\"a\",\"b\"]", 9);
	mesh_event_attr_set(ev, "blob", "Binary", bin, sizeof(bin));
	mesh_event_attr_set(ev, "weight", "Number.kg", "3", 1);
	mesh_pbjson_set_event_data(ev, "evmesh.shop.OrderPlaced", order,
	                           strlen(order));
	return ev;
}

static struct mesh_event *
text_event(void)
{
	struct mesh_event *ev = NULL;
	static const char body[] =
	        "{\"country\": \"DE\", \"items\": [{\"quantity\": 2}]}";

	if (mesh_event_new("shop.text", "/fuzz", &ev) == MESH_OK) {
		mesh_event_set_text(ev, body, strlen(body));
		mesh_event_set_datacontenttype(ev, "application/json");
	}
	return ev;
}

static struct mesh_event *
binary_event(void)
{
	struct mesh_event *ev = NULL;

	if (mesh_event_new("shop.bytes", "/fuzz", &ev) == MESH_OK) {
		mesh_event_set_binary(ev, "\x00\x01\xfe\xff", 4);
	}
	return ev;
}

static void
envelope_and_wire(void)
{
	struct {
		const char *name;
		struct mesh_event *ev;
	} evs[] = {
	        {"order", order_event()},
	        {"text", text_event()},
	        {"binary", binary_event()},
	};
	static const char hdrs[] =
	        "Content-Type: " MESH_EVENT_CONTENT_TYPE "\n"
	        "Nats-Msg-Id: 0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b\n"
	        "Ce-Type: evmesh.shop.OrderPlaced\n"
	        "Ce-Source: /services/orders\n"
	        "Mesh-Group: g1\n";

	for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++) {
		uint8_t *buf = NULL;
		size_t len = 0;
		char name[64];
		if (evs[i].ev == NULL ||
		    mesh_event_pack(evs[i].ev, &buf, &len) != MESH_OK) {
			failed = 1;
			continue;
		}
		seed("envelope", evs[i].name, -1, buf, len, -1, NULL, 0);
		snprintf(name, sizeof(name), "cloudevent-%s", evs[i].name);
		seed("wire", name, -1, hdrs, strlen(hdrs), '\n', buf, len);
		if (i == 0) {
			/* A declared CloudEvent cut short: raw bytes, and
			 * its parse error. */
			seed("wire", "cloudevent-cut", -1, hdrs, strlen(hdrs),
			     '\n', buf, len / 2);
		}
		free(buf);
		mesh_event_free(evs[i].ev);
	}
	seed_str("wire", "foreign-json", -1,
	         "Content-Type: application/json\nNats-Msg-Id: abc\n\n"
	         "{\"country\": \"DE\"}");
	seed_str("wire", "no-headers", -1,
	         "\nplain bytes from another client");
}

/* ---- batches for the runtime ----------------------------------------- */

/* One message of a delivery batch: a control byte (attempt - 1 in bits
 * 0-1, FIFO group in bits 2-3), a two-byte length, then headers, an empty
 * line and the body (fuzz_delivery.c). */
static size_t
batch_add(uint8_t *out, size_t at, uint8_t ctl, const char *hdrs,
          const void *body, size_t blen)
{
	size_t hlen = strlen(hdrs), len = hlen + 1 + blen;

	out[at++] = ctl;
	out[at++] = (uint8_t)(len >> 8);
	out[at++] = (uint8_t)len;
	memcpy(out + at, hdrs, hlen);
	out[at + hlen] = '\n';
	memcpy(out + at + hlen + 1, body, blen);
	return at + len;
}

/* A CloudEvent of `type` with id `id` and a payload: JSON encoded as the
 * type when json is not NULL, else the bytes given; `cut` sends only the
 * first half of it. */
static size_t
batch_event(uint8_t *out, size_t at, uint8_t ctl, const char *type,
            const char *id, const char *json, const void *bytes, size_t n,
            bool cut)
{
	static const char hdrs[] =
	        "Content-Type: " MESH_EVENT_CONTENT_TYPE "\n";
	struct mesh_event *ev = NULL;
	uint8_t *buf = NULL;
	size_t len = 0;

	if (mesh_event_new(type, "/fuzz", &ev) != MESH_OK ||
	    mesh_event_set_id(ev, id) != MESH_OK ||
	    (json != NULL
	             ? mesh_pbjson_set_event_data(ev, type, json, strlen(json))
	             : mesh_event_set_binary(ev, bytes, n)) != MESH_OK ||
	    mesh_event_pack(ev, &buf, &len) != MESH_OK) {
		failed = 1;
		mesh_event_free(ev);
		return at;
	}
	at = batch_add(out, at, ctl, hdrs, buf, cut ? len / 2 : len);
	free(buf);
	mesh_event_free(ev);
	return at;
}

static void
delivery(void)
{
	static const char order[] =
	        "{\"orderId\": \"o-1\", \"customer\": \"ada\", "
	        "\"country\": \"DE\", \"items\": [{\"sku\": \"s-1\", "
	        "\"quantity\": 2, \"priceCents\": \"1250\"}], "
	        "\"totalCents\": \"2500\"}";
	static const char greet[] = "{\"name\": \"ada\"}";
	static uint8_t out[8192];
	size_t n = 0;

	/* Every outcome in one batch: done, failed (id ends in r),
	 * rejected (x), a duplicate, no handler, a payload that is not its
	 * type, a CloudEvent cut short, foreign bytes. */
	out[n++] = 0; /* traits: neither FIFO nor redriving */
	n = batch_event(out, n, 0, "evmesh.shop.PlaceOrder", "order-1", order,
	                NULL, 0, false);
	n = batch_event(out, n, 3, "evmesh.example.Greet", "greet-r", greet,
	                NULL, 0, false);
	n = batch_event(out, n, 0, "fuzz.text", "text-x", NULL, "hi", 2,
	                false);
	n = batch_event(out, n, 1, "evmesh.shop.PlaceOrder", "order-1", order,
	                NULL, 0, false);
	n = batch_event(out, n, 0, "nobody.takes.it", "none-1", NULL, "x", 1,
	                false);
	n = batch_event(out, n, 0, "evmesh.shop.PlaceOrder", "order-2", NULL,
	                "\xff\xff\xff", 3, false);
	n = batch_event(out, n, 0, "evmesh.shop.PlaceOrder", "order-3", order,
	                NULL, 0, true);
	n = batch_add(out, n, 2, "", "plain bytes from another client", 31);
	seed("delivery", "every-outcome", -1, out, n, -1, NULL, 0);

	/* FIFO: a failure in group 1 holds its later events back. */
	n = 0;
	out[n++] = 1;
	n = batch_event(out, n, 1 << 2, "fuzz.text", "fifo-1r", NULL, "a", 1,
	                false);
	n = batch_event(out, n, 1 << 2, "fuzz.text", "fifo-2", NULL, "b", 1,
	                false);
	n = batch_event(out, n, 2 << 2, "fuzz.text", "fifo-3", NULL, "c", 1,
	                false);
	seed("delivery", "fifo", -1, out, n, -1, NULL, 0);

	/* A redriving source on its last attempt. */
	n = 0;
	out[n++] = 2;
	n = batch_event(out, n, 3, "fuzz.text", "last-r", NULL, "d", 1, false);
	seed("delivery", "redrive", -1, out, n, -1, NULL, 0);
}

/* ---- filter policies ------------------------------------------------ */

#define ATTRS_JSON 0 /* MessageAttributes, SNS's JSON form */
#define BODY       1
#define ATTRS_SPEC 2 /* MessageAttributes, NAME=TYPE:VALUE lines */

static void
filters(void)
{
	static const struct {
		const char *name;
		int mode;
		const char *policy, *message;
	} cases[] = {
	        {"exact", ATTRS_JSON,
	         "{\"customer_interests\": [\"rugby\", \"tennis\"]}",
	         "{\"customer_interests\": {\"DataType\": \"String\", "
	         "\"StringValue\": \"rugby\"}}"},
	        {"numeric-range", ATTRS_JSON,
	         "{\"price_usd\": [{\"numeric\": [\">\", 0, \"<=\", 150]}]}",
	         "{\"price_usd\": {\"Type\": \"Number\", \"Value\": "
	         "\"3.0e2\"}}"},
	        {"string-array", ATTRS_JSON,
	         "{\"price_usd\": [{\"numeric\": [\"=\", 301.5]}]}",
	         "{\"price_usd\": {\"DataType\": \"String.Array\", "
	         "\"StringValue\": \"[200, 301.5]\"}, \"b\": {\"DataType\": "
	         "\"Binary\", \"BinaryValue\": \"AAE=\"}}"},
	        {"anything-but", ATTRS_SPEC,
	         "{\"customer_interests\": [{\"anything-but\": [\"rugby\", "
	         "\"tennis\"]}], \"event\": [{\"anything-but\": {\"prefix\": "
	         "\"order-\"}}]}",
	         "customer_interests=String:baseball\nevent=String:data"},
	        {"cidr", ATTRS_SPEC,
	         "{\"source_ip\": [{\"cidr\": \"10.0.0.0/24\"}], \"ip\": "
	         "[{\"cidr\": \"2001:db8::/32\"}]}",
	         "source_ip=String:10.0.0.7\nip=String:2001:db8::1"},
	        {"exists", ATTRS_SPEC,
	         "{\"store\": [{\"exists\": false}], \"c\": [{\"suffix\": "
	         "\"ball\"}, {\"equals-ignore-case\": \"RUGBY\"}]}",
	         "c=String:baseball\nb=Binary:AAEC\nn=Number.kg:12\n"
	         "t=String.Array:[\"x\",1,null]"},
	        {"or", ATTRS_JSON,
	         "{\"source\": [\"aws.cloudwatch\"], \"$or\": "
	         "[{\"metricName\": "
	         "[\"CPUUtilization\"]}, {\"$or\": [{\"metricType\": "
	         "[\"MetricType\"]}, {\"namespace\": [\"AWS/EC2\"]}]}]}",
	         "{\"source\": {\"DataType\": \"String\", \"StringValue\": "
	         "\"aws.cloudwatch\"}, \"namespace\": {\"DataType\": "
	         "\"String\", \"StringValue\": \"AWS/EC2\"}}"},
	        {"body-nested", BODY,
	         "{\"object\": {\"key\": [{\"prefix\": \"auto-\"}, "
	         "\"hardcodedvalue\"], \"nested_key\": [{\"exists\": "
	         "false}]}, "
	         "\"test\": [{\"exists\": false}]}",
	         "{\"object\": {\"key\": \"auto-1\"}, \"other\": [1, true, "
	         "null]}"},
	        {"body-array", BODY,
	         "{\"Records\": {\"s3\": {\"object\": {\"key\": [{\"prefix\": "
	         "\"auto-\"}]}}, \"eventName\": [{\"prefix\": "
	         "\"ObjectCreated:\"}]}}",
	         "{\"Records\": [{\"s3\": {\"object\": {\"key\": "
	         "\"auto-x\"}}, "
	         "\"eventName\": \"ObjectCreated:Put\"}]}"},
	        {"body-literals", BODY,
	         "{\"a\": [true, null, 5, {\"numeric\": [\"<\", 0]}], \"b\": "
	         "[{\"anything-but\": [100, 200]}]}",
	         "{\"a\": -1e-3, \"b\": 150}"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		seed("filter", cases[i].name, cases[i].mode, cases[i].policy,
		     strlen(cases[i].policy), '\0', cases[i].message,
		     strlen(cases[i].message));
	}
}

/* ---- protobuf as JSON ----------------------------------------------- */

static int
schema_index(const char *name)
{
	for (size_t i = 0; i < fuzz_message_count(); i++) {
		if (strcmp(fuzz_message_at(i)->name, name) == 0) {
			return (int)i;
		}
	}
	fprintf(stderr, "make-seeds: %s is not in the registry\n", name);
	failed = 1;
	return 0;
}

static void
pbjson(void)
{
	static const struct {
		const char *name, *type, *json;
	} cases[] = {
	        {"place-order", "evmesh.shop.PlaceOrder",
	         "{\"orderId\": \"o-1\", \"customer\": \"ada\", \"country\": "
	         "\"FR\", \"items\": [{\"sku\": \"s-1\", \"quantity\": 2, "
	         "\"priceCents\": \"499\"}, {\"sku\": \"s-2\", \"quantity\": "
	         "\"1\", \"price_cents\": 1000}], \"totalCents\": 1998, "
	         "\"priority\": \"EXPRESS\"}"},
	        {"order-placed", "evmesh.shop.OrderPlaced",
	         "{\"orderId\": \"o-2\", \"totalCents\": \"-9\", "
	         "\"placedAt\": "
	         "\"2026-03-08T02:30:00.000000001+05:30\"}"},
	        {"shipment", "evmesh.shop.ShipmentCreated",
	         "{\"orderId\": \"o-3\", \"shipmentId\": \"s\", \"label\": "
	         "\"\\u00e9\\ud83d\\ude00\", \"country\": \"DE\"}"},
	        {"summary", "evmesh.shop.OrderSummary",
	         "{\"windowStart\": 1767225600, \"orders\": \"3\", "
	         "\"totalCents\": null}"},
	        {"timestamp", "google.protobuf.Timestamp",
	         "\"1970-01-01T00:00:00Z\""},
	        {"any", "google.protobuf.Any",
	         "{\"@type\": \"type.googleapis.com/evmesh.example.Greet\", "
	         "\"name\": \"ada\"}"},
	        {"kinds", "evmesh.test.Kinds",
	         "{\"i32\": -2147483648, \"s32\": -5, \"sf32\": 7, \"u32\": "
	         "4294967295, \"f32\": 7, \"i64\": \"-1\", \"s64\": "
	         "\"-9223372036854775808\", \"sf64\": \"5\", \"u64\": 1e19, "
	         "\"f64\": \"1\", \"fl\": \"NaN\", \"db\": 1.5e300, \"flag\": "
	         "true, \"text\": \"hi\", \"blob\": \"-_8\", \"color\": "
	         "\"GREEN\", \"child\": {\"cText\": \"t\"}, \"at\": "
	         "\"1970-01-01T00:00:00Z\", \"rI64\": [\"1\", -2], \"rText\": "
	         "[\"a\", \"\"], \"rBlob\": [\"AA==\"], \"rColor\": [\"RED\", "
	         "0, "
	         "7], \"rDb\": [\"-Infinity\", -0.0], \"rFlag\": [false], "
	         "\"counts\": {\"a\": 1}, \"byId\": {\"-5\": {\"text\": "
	         "\"x\"}}, "
	         "\"byFlag\": {\"true\": \"yes\"}, \"cNum\": 0, \"any\": "
	         "{\"@type\": \"type.googleapis.com/google.protobuf.Any\", "
	         "\"value\": {\"@type\": "
	         "\"type.googleapis.com/evmesh.shop.LineItem\", \"sku\": "
	         "\"s\"}}, \"rAt\": [\"2026-01-01T00:00:00.5Z\"], \"rU32\": "
	         "[0], "
	         "\"rFl\": [0.1]}"},
	        {"legacy", "evmesh.test.Legacy",
	         "{\"optI32\": 0, \"optText\": \"\", \"req\": \"7\", "
	         "\"optBlob\": \"\", \"child\": {\"req\": 1, \"optFlag\": "
	         "false}}"},
	        {"cloudevent", "io.cloudevents.v1.CloudEvent",
	         "{\"id\": \"1\", \"source\": \"/s\", \"specVersion\": "
	         "\"1.0\", "
	         "\"type\": \"t\", \"attributes\": {\"x\": {\"ceString\": "
	         "\"y\"}, \"n\": {\"ceInteger\": 5}}, \"binaryData\": "
	         "\"AAE-_w\"}"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int at = schema_index(cases[i].type);
		const ProtobufCMessageDescriptor *desc = fuzz_message_at(at);
		json_t *j = json_loads(cases[i].json, JSON_DECODE_ANY, NULL);
		ProtobufCMessage *msg = NULL;
		char name[64];
		seed_str("pbjson", cases[i].name, at << 1, cases[i].json);
		if (j == NULL ||
		    mesh_pbjson_encode(desc, j, &msg) != MESH_OK) {
			fprintf(stderr, "make-seeds: %s: %s\n", cases[i].name,
			        mesh_errdetail());
			failed = 1;
		} else {
			size_t len = protobuf_c_message_get_packed_size(msg);
			uint8_t *buf = malloc(len + 1);
			if (buf != NULL) {
				protobuf_c_message_pack(msg, buf);
				snprintf(name, sizeof(name), "%s.pb",
				         cases[i].name);
				seed("pbjson", name, at << 1 | 1, buf, len, -1,
				     NULL, 0);
			}
			free(buf);
			protobuf_c_message_free_unpacked(msg, NULL);
		}
		json_decref(j);
	}
}

/* ---- receipts and records ------------------------------------------- */

static void
receipts(void)
{
	static const uint8_t key[32] = {0x6b, 0x65, 0x79};
	static const char raw[] =
	        "@1767225600000@$JS.ACK.MQ_orders.receivers.1.42.42."
	        "1767225600000000000.0";
	static const char raw_domain[] =
	        "@1767225600000@$JS.ACK.hub.ACCHASH.MF_orders.p7.2.9.9."
	        "1767225600000000000.3.token";
	char sealed[MESH_QUEUE_RECEIPT_MAX];

	seed_str("receipt", "raw", 0, raw);
	seed_str("receipt", "raw-domain-fifo", 1, raw_domain);
	snprintf(sealed, sizeof(sealed), "%s", raw);
	if (mesh__queue_receipt_check("orders", key, sealed, sizeof(sealed)) !=
	    MESH_OK) {
		fprintf(stderr, "make-seeds: receipt: %s\n", mesh_errdetail());
		failed = 1;
	}
	seed_str("receipt", "sealed", 0, sealed);
}

static void
records(void)
{
	struct mesh_schedule s;
	char *json = NULL;

	seed_str("records", "queue", 0,
	         "evmesh-queue v1 name=orders.fifo fifo=1 cbd=1 vt=30 delay=0 "
	         "retention=345600 max=262144 wait=0 dlq=dead maxrc=5 "
	         "parts=64 created=1767225600000 modified=1767225600000 "
	         "key=000102030405060708090a0b0c0d0e0f101112131415161718191a1b"
	         "1c1d1e1f");
	seed_str("records", "topic", 1,
	         "evmesh-topic v1 fifo=1 cbd=0 archive=30 created="
	         "1767225600000");
	seed_str("records", "subscription", 2,
	         "{\"id\":\"orders:0123456789abcdef\",\"topic\":\"orders\","
	         "\"protocol\":\"sqs\",\"endpoint\":\"shipping\","
	         "\"filter_scope\":\"MessageBody\",\"raw\":true,"
	         "\"replay_from\":0,\"created\":1767225600000,\"consumer\":"
	         "\"S_0123456789abcdef\",\"filter_policy\":\"{\\\"country\\\":"
	         "[\\\"DE\\\"]}\"}");
	mesh_schedule_init(&s);
	snprintf(s.name, sizeof(s.name), "nightly");
	snprintf(s.expression, sizeof(s.expression),
	         "cron(0 2 ? * MON-FRI *)");
	snprintf(s.tz, sizeof(s.tz), "Europe/Berlin");
	snprintf(s.target, sizeof(s.target), "topic:orders");
	snprintf(s.type, sizeof(s.type), "evmesh.shop.OrderSummary");
	s.body = strdup(
	        "{\"windowStart\": \"<aws.scheduler.scheduled-time>\"}");
	s.attrs = strdup("kind=String:nightly\nn=Number:3");
	s.json_body = false;
	s.window_s = 300;
	s.dlq[0] = '\0';
	s.start = 1767225600;
	if (mesh_schedule_to_json(&s, &json) != MESH_OK) {
		failed = 1;
	} else {
		seed_str("records", "schedule", 3, json);
	}
	free(json);
	mesh_schedule_fini(&s);
}

/* Function definitions (mesh/function.h), as the bucket holds them. */
static void
functions(void)
{
	seed_str("function", "queue", -1,
	         "{\"name\":\"orders\",\"program\":\"/usr/local/bin/"
	         "orders\",\"args\":[\"--batch\",\"20\"],\"env\":"
	         "[\"MESH_WINDOW_MS=5\"],\"min\":0,\"max\":4,\"idle_ms\":"
	         "60000,\"target_backlog\":100,\"sources\":[\"queue:place-"
	         "order\",\"queue:orders-summary\"],\"partitions\":0,"
	         "\"created_ms\":1767225600000,\"updated_ms\":"
	         "1767225600000}");
	seed_str("function", "partitioned", -1,
	         "{\"name\":\"shipping\",\"program\":\"/opt/shipping\","
	         "\"min\":1,\"max\":64,\"idle_ms\":1000,"
	         "\"target_backlog\":1000000,\"sources\":[\"subscription:"
	         "orders:0123456789abcdef\",\"partition:shipping/3\"],"
	         "\"partitions\":8}");
	seed_str("function", "minimal", -1,
	         "{\"name\":\"n\",\"program\":\"/p\",\"sources\":"
	         "[\"queue:q\"]}");
}

/* Parameter records (mesh/param.h), as the bucket holds them, and keys. */
static void
params(void)
{
	seed_str("param", "string", -1,
	         "{\"description\":\"percent off\",\"modified_by\":"
	         "\"admin\",\"modified_ms\":1767225600000,\"name\":"
	         "\"/shop/orders/discount\",\"type\":\"String\",\"value\":"
	         "\"10\",\"version\":3}");
	seed_str("param", "string-list", -1,
	         "{\"modified_ms\":0,\"name\":\"top.level\",\"type\":"
	         "\"StringList\",\"value\":\"a,b,c\",\"version\":1}");
	seed_str("param", "secure", -1,
	         "{\"modified_by\":\"admin\",\"modified_ms\":1767225600000,"
	         "\"name\":\"/shop/db/password\",\"secure\":{\"cipher\":"
	         "\"xchacha20poly1305-ietf\",\"ciphertext\":"
	         "\"n2NE4BhqX1mXr1JSbrk4nHbyJ9TpAqPnFgK3yBeb\",\"keys\":[{"
	         "\"reader\":\"admin\",\"sealed\":\"" SEALED_B64 "\"},{"
	         "\"reader\":\"orders\",\"sealed\":\"" SEALED_B64 "\"}],"
	         "\"nonce\":\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYX\"},\"type\":"
	         "\"SecureString\",\"version\":1}");
	seed_str("param", "key-hierarchy", -1, "_.shop.orders.discount");
	seed_str("param", "key-dots", -1, "x=y");
}

/* ---- schedule expressions ------------------------------------------- */

static void
expressions(void)
{
	static const struct {
		const char *name;
		int zone; /* index in fuzz_sched_expr.c's zones */
		const char *text;
	} cases[] = {
	        {"cron-weekdays", 1, "cron(0/5 8-17 ? * MON-FRI *)"},
	        {"cron-nth", 2, "cron(0 9 ? * 2#1 *)"},
	        {"cron-last", 0, "cron(0 12 L * ? *)"},
	        {"cron-lw", 3, "cron(0 12 LW * ? *)"},
	        {"cron-w", 4, "cron(30 2 1W * ? 2030-2031)"},
	        {"cron-dow-last", 5, "cron(0 12 ? * 6L *)"},
	        {"cron-leap", 0, "cron(0 0 29 FEB ? 2100-2104)"},
	        {"unix", 2, "30 2 * * 1-5"},
	        {"unix-seconds", 4, "*/10 0 0 1,15 * 0,7"},
	        {"macro", 6, "@weekly"},
	        {"rate", 0, "rate(90 seconds)"},
	        {"rate-days", 7, "rate(3 days)"},
	        {"at", 1, "at(2026-03-29T02:30:00)"},
	        {"time", 2, "2026-11-01T01:30:00-04:00"},
	};
	/* 2026-03-07T00:00:00Z, days before the DST changes of 2026. */
	static const uint8_t when[5] = {0x00, 0x69, 0xab, 0x6a, 0x80};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		seed("sched_expr", cases[i].name, cases[i].zone, when,
		     sizeof(when), -1, cases[i].text, strlen(cases[i].text));
	}
}

/* ---- schedule requests (the request API's bodies) ------------------- */

static void
schedule_requests(void)
{
	static const struct {
		const char *name, *body;
	} cases[] = {
	        {"readme",
	         "{\"name\":\"nightly\",\"expression\":\"cron(0 2 * * "
	         "? *)\",\"tz\":\"Europe/Berlin\",\"target\":"
	         "\"queue:jobs\"}"},
	        {"json-body",
	         "{\"name\": \"summary\", \"expression\": \"rate(1 hour)\", "
	         "\"target\": \"topic:orders\", \"type\": "
	         "\"evmesh.shop.OrderSummary\", \"payload\": \"json\", "
	         "\"body\": \"{\\\"windowStart\\\": \\\"1767225600\\\"}\", "
	         "\"window\": \"15m\", \"retry_max\": 3, \"max_age\": 3600, "
	         "\"dlq\": \"dead\", \"missed\": \"all\"}"},
	        {"one-time",
	         "{\"name\": \"once\", \"expression\": "
	         "\"at(2026-03-29T02:30:00)\", \"tz\": \"Europe/Berlin\", "
	         "\"target\": \"queue:jobs\", \"delete_after\": true, "
	         "\"body\": \"fired <aws.scheduler.scheduled-time> by "
	         "<aws.scheduler.schedule-arn>, try "
	         "<aws.scheduler.attempt-number>\"}"},
	        {"unix-window",
	         "{\"name\": \"ticks\", \"expression\": \"*/10 * * * * *\", "
	         "\"target\": \"queue:t\", \"start\": "
	         "\"2026-03-01T00:00:00+01:00\", \"end\": 1798761600, "
	         "\"enabled\": false, \"attrs\": "
	         "[\"kind=String:tick\", \"n=Number:1\"]}"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		seed_str("schedule", cases[i].name, -1, cases[i].body);
	}
}

/* ---- small text parsers, and zone files ---------------------------- */

static void
texts(void)
{
	static const struct {
		const char *name;
		int which; /* fuzz_text.c's selector */
		const char *text;
	} cases[] = {
	        {"seed", 0,
	         "SUAMLK2ZNL35WSMW37E7UD4VZ7ELPKW7DHC3BWBSD2GCZ7IUQQXZIORRBU"},
	        {"url-password", 1, "nats://ada:s3cret@127.0.0.1:4222"},
	        {"url-token", 1, "tls://tok3n@[::1]:4222,nats://b:4223"},
	        {"duration", 2, "15m"},
	        {"duration-days", 2, "2d"},
	        {"name-fifo", 3, "orders-eu_1.fifo"},
	        {"zone", 4, "America/Argentina/Buenos_Aires"},
	        {"zone-etc", 4, "Etc/GMT+5"},
	};
	char raw[32];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		seed_str("text", cases[i].name, cases[i].which, cases[i].text);
	}
	/* A seed of our own making, so that its checksum is right. */
	for (size_t i = 0; i < sizeof(raw); i++) {
		raw[i] = (char)i;
	}
	{
		char s[MESH__NKEY_SEED_LEN + 1];
		mesh__nkey_seed_encode((const unsigned char *)raw, s);
		seed_str("text", "seed-valid", 0, s);
	}
}

/* Real zone files: a fixed offset, DST both ways in each hemisphere, a
 * 30-minute DST, DST abolished. */
static void
zones(void)
{
	static const char *const names[] = {
	        "Etc/UTC",
	        "Europe/Berlin",
	        "Australia/Lord_Howe",
	        "America/Sao_Paulo",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char path[256], name[64], *p;
		uint8_t buf[8192];
		size_t len;
		FILE *f;
		snprintf(path, sizeof(path), "/usr/share/zoneinfo/%s",
		         names[i]);
		if ((f = fopen(path, "rb")) == NULL) {
			perror(path);
			failed = 1;
			continue;
		}
		len = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		snprintf(name, sizeof(name), "%s", names[i]);
		for (p = name; *p != '\0'; p++) {
			*p = *p == '/' ? '-' : *p;
		}
		seed("tzif", name, -1, buf, len, -1, NULL, 0);
	}
}

int
main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: make-seeds DIR (tests/fuzz/corpus)\n");
		return 2;
	}
	root = argv[1];
	if (mkdir(root, 0755) != 0 && errno != EEXIST) {
		perror(root);
		return 1;
	}
	envelope_and_wire();
	delivery();
	filters();
	pbjson();
	receipts();
	records();
	functions();
	params();
	expressions();
	schedule_requests();
	texts();
	zones();
	return failed;
}
