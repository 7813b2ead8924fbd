/* The envelope codec: round trips, validation, and hostile input. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "mesh/mesh.h"

static struct mesh_event *
full_event(void)
{
	struct mesh_event *ev;
	struct mesh_ext_value v;
	static const uint8_t bin[] = {0, 1, 2, 0xff};

	if (mesh_event_new("shop.v1.OrderPlaced", "/services/orders", &ev) !=
	    MESH_OK) {
		return NULL;
	}
	mesh_event_set_subject(ev, "order-42");
	mesh_event_set_dataschema(ev, "https://example.com/schema");
	mesh_event_set_time(ev, 1767225600, 123456789);
	v = (struct mesh_ext_value){.type = MESH_EXT_BOOL, .boolean = true};
	mesh_event_ext_set(ev, "flag", &v);
	v = (struct mesh_ext_value){.type = MESH_EXT_INT, .integer = -7};
	mesh_event_ext_set(ev, "count", &v);
	v = (struct mesh_ext_value){
	        .type = MESH_EXT_URIREF, .string = "/x", .len = 2};
	mesh_event_ext_set(ev, "ref", &v);
	v = (struct mesh_ext_value){
	        .type = MESH_EXT_TIME, .sec = 0, .nsec = 1};
	mesh_event_ext_set(ev, "seen", &v);
	mesh_event_attr_set(ev, "country", "String", "DE", 2);
	mesh_event_attr_set(ev, "price", "Number", "12.50", 5);
	mesh_event_attr_set(ev, "tags", "String.Array", "[\"a\",\"b\"]", 9);
	mesh_event_attr_set(ev, "blob", "Binary", bin, sizeof(bin));
	mesh_event_attr_set(ev, "weight", "Number.kg", "3", 1);
	mesh_event_set_proto(ev, "shop.v1.OrderPlaced", "\x0a\x02hi", 4);
	return ev;
}

static void
test_round_trip(void)
{
	struct mesh_event *ev = full_event(), *got = NULL;
	struct mesh_ext_value v;
	uint8_t *buf = NULL, *buf2 = NULL;
	size_t len = 0, len2 = 0;
	const char *type, *url;
	const void *val;
	size_t vlen;
	int64_t sec;
	int32_t nsec;

	ok(ev != NULL, "an event with every kind of attribute is built");
	is_int(mesh_event_pack(ev, &buf, &len), MESH_OK, "it packs");
	is_int(mesh_event_parse(buf, len, 0, &got), MESH_OK, "it parses");
	if (got == NULL) {
		return;
	}
	is_str(mesh_event_id(got), mesh_event_id(ev), "id survives");
	is_int(strlen(mesh_event_id(got)), 36, "the id is a UUID");
	is_str(mesh_event_type(got), "shop.v1.OrderPlaced", "type survives");
	is_str(mesh_event_source(got), "/services/orders", "source survives");
	is_str(mesh_event_specversion(got), "1.0", "specversion is 1.0");
	is_str(mesh_event_subject(got), "order-42", "subject survives");
	is_str(mesh_event_dataschema(got), "https://example.com/schema",
	       "dataschema survives");
	is_str(mesh_event_datacontenttype(got), "application/protobuf",
	       "a protobuf payload sets datacontenttype");
	ok(mesh_event_time(got, &sec, &nsec) && sec == 1767225600 &&
	           nsec == 123456789,
	   "time survives to the nanosecond");
	ok(mesh_event_ext_get(got, "flag", &v) == MESH_OK &&
	           v.type == MESH_EXT_BOOL && v.boolean,
	   "a boolean extension survives");
	ok(mesh_event_ext_get(got, "count", &v) == MESH_OK &&
	           v.type == MESH_EXT_INT && v.integer == -7,
	   "an integer extension survives");
	ok(mesh_event_ext_get(got, "ref", &v) == MESH_OK &&
	           v.type == MESH_EXT_URIREF && strcmp(v.string, "/x") == 0,
	   "a URI-reference extension survives");
	ok(mesh_event_ext_get(got, "seen", &v) == MESH_OK &&
	           v.type == MESH_EXT_TIME && v.sec == 0 && v.nsec == 1,
	   "a timestamp extension survives");
	ok(mesh_event_attr_get(got, "country", &type, &val, &vlen) ==
	                   MESH_OK &&
	           strcmp(type, "String") == 0 && vlen == 2 &&
	           memcmp(val, "DE", 2) == 0,
	   "a String message attribute survives");
	ok(mesh_event_attr_get(got, "price", &type, &val, &vlen) == MESH_OK &&
	           strcmp(type, "Number") == 0 && vlen == 5 &&
	           memcmp(val, "12.50", 5) == 0,
	   "a Number message attribute keeps its type and text");
	ok(mesh_event_attr_get(got, "tags", &type, &val, &vlen) == MESH_OK &&
	           strcmp(type, "String.Array") == 0,
	   "a String.Array message attribute keeps its type");
	ok(mesh_event_attr_get(got, "blob", &type, &val, &vlen) == MESH_OK &&
	           strcmp(type, "Binary") == 0 && vlen == 4 &&
	           memcmp(val, "\0\1\2\xff", 4) == 0,
	   "a Binary message attribute survives byte for byte");
	ok(mesh_event_attr_get(got, "weight", &type, &val, &vlen) == MESH_OK &&
	           strcmp(type, "Number.kg") == 0,
	   "a custom data type suffix survives");
	ok(mesh_event_attr_get(got, "count", &type, &val, &vlen) == MESH_OK &&
	           strcmp(type, "Number") == 0 && vlen == 2 &&
	           memcmp(val, "-7", 2) == 0,
	   "an integer extension reads as a Number attribute");
	is_int(mesh_event_attr_get(got, "subject", &type, &val, &vlen),
	       MESH_ENOTFOUND,
	       "context attributes are not message attributes");
	is_int(mesh_event_data(got, &val, &vlen, &url), MESH_DATA_PROTO,
	       "the payload is protobuf");
	ok(vlen == 4 && memcmp(val, "\x0a\x02hi", 4) == 0,
	   "the payload survives byte for byte");
	is_str(url, "type.googleapis.com/shop.v1.OrderPlaced",
	       "the payload's type URL names the message");
	is_int(mesh_event_pack(got, &buf2, &len2), MESH_OK, "it packs again");
	ok(len == len2 && memcmp(buf, buf2, len) == 0,
	   "packing is deterministic: same bytes after a round trip");
	free(buf);
	free(buf2);
	mesh_event_free(got);
	mesh_event_free(ev);
}

static void
test_data_kinds(void)
{
	struct mesh_event *ev, *got = NULL;
	uint8_t *buf;
	size_t len;
	const void *d;
	size_t dl;

	mesh_event_new("t", "s", &ev);
	mesh_event_set_text(ev, "héllo", strlen("héllo"));
	mesh_event_pack(ev, &buf, &len);
	ok(mesh_event_parse(buf, len, 0, &got) == MESH_OK &&
	           mesh_event_data(got, &d, &dl, NULL) == MESH_DATA_TEXT &&
	           dl == strlen("héllo") && memcmp(d, "héllo", dl) == 0,
	   "text data round-trips");
	free(buf);
	mesh_event_free(got);
	got = NULL;
	mesh_event_set_binary(ev, "\0\0", 2);
	mesh_event_pack(ev, &buf, &len);
	ok(mesh_event_parse(buf, len, 0, &got) == MESH_OK &&
	           mesh_event_data(got, &d, &dl, NULL) == MESH_DATA_BINARY &&
	           dl == 2,
	   "binary data round-trips");
	free(buf);
	mesh_event_free(got);
	mesh_event_free(ev);
}

static void
test_bad_values(void)
{
	struct mesh_event *ev = NULL;
	struct mesh_ext_value v = {
	        .type = MESH_EXT_STRING, .string = "x", .len = 1};

	is_int(mesh_event_new("", "s", &ev), MESH_EINVAL,
	       "an empty type is refused");
	ok(ev == NULL, "and nothing is returned");
	is_int(mesh_event_new("t", "\xff\xfe", &ev), MESH_EINVAL,
	       "a source that is not UTF-8 is refused");
	mesh_event_new("t", "s", &ev);
	is_int(mesh_event_set_id(ev, ""), MESH_EINVAL,
	       "an empty id is refused");
	ok(strlen(mesh_event_id(ev)) == 36, "and the old id stays");
	is_int(mesh_event_ext_set(ev, "subject", &v), MESH_EINVAL,
	       "a context attribute cannot be set as an extension");
	has_str(mesh_errdetail(), "subject", "the detail names the attribute");
	is_int(mesh_event_ext_set(ev, "", &v), MESH_EINVAL,
	       "an empty extension name is refused");
	v.string = "\xc0\xaf"; /* overlong '/' */
	v.len = 2;
	is_int(mesh_event_ext_set(ev, "x", &v), MESH_EINVAL,
	       "an overlong UTF-8 form is refused");
	v = (struct mesh_ext_value){.type = MESH_EXT_TIME, .nsec = 1000000000};
	is_int(mesh_event_ext_set(ev, "x", &v), MESH_EINVAL,
	       "nanoseconds past a second are refused");
	is_int(mesh_event_attr_set(ev, "price", "Number", "12abc", 5),
	       MESH_EINVAL, "a Number that is not a number is refused");
	has_str(mesh_errdetail(), "price", "the detail names the attribute");
	is_int(mesh_event_attr_set(ev, "n", "Number", "inf", 3), MESH_EINVAL,
	       "inf is not a Number");
	is_int(mesh_event_attr_set(ev, "a", "String.Array", "{}", 2),
	       MESH_EINVAL, "a String.Array must be a JSON array");
	is_int(mesh_event_attr_set(ev, "a", "Strin", "x", 1), MESH_EINVAL,
	       "an unknown data type is refused");
	has_str(mesh_errdetail(), "Strin", "the detail names the data type");
	is_int(mesh_event_attr_set(ev, "AWS.x", "String", "x", 1), MESH_EINVAL,
	       "the AWS. prefix is reserved");
	is_int(mesh_event_attr_set(ev, "a..b", "String", "x", 1), MESH_EINVAL,
	       "'..' in a name is refused");
	is_int(mesh_event_attr_set(ev, "a b", "String", "x", 1), MESH_EINVAL,
	       "a space in a name is refused");
	is_int(mesh_event_attr_set(ev, "meshx", "String", "x", 1), MESH_EINVAL,
	       "the mesh prefix is reserved for the envelope");
	is_int(mesh_event_attr_set(ev, "s", "String", "", 0), MESH_EINVAL,
	       "an empty String is refused");
	is_int(mesh_event_ext_count(ev), 1,
	       "after all that, only the time attribute is set");
	for (int i = 0; i < MESH_EVENT_MAX_EXTS - 1; i++) {
		char name[16];
		snprintf(name, sizeof(name), "e%d", i);
		v = (struct mesh_ext_value){.type = MESH_EXT_INT,
		                            .integer = i};
		mesh_event_ext_set(ev, name, &v);
	}
	v = (struct mesh_ext_value){.type = MESH_EXT_INT};
	is_int(mesh_event_ext_set(ev, "onemore", &v), MESH_ETOOBIG,
	       "attributes past the limit are refused");
	mesh_event_free(ev);
}

static void
test_attr_replace(void)
{
	struct mesh_event *ev;
	const char *type;
	const void *val;
	size_t len;

	mesh_event_new("t", "s", &ev);
	mesh_event_attr_set(ev, "a", "Number", "1", 1);
	mesh_event_attr_set(ev, "a", "String", "x", 1);
	ok(mesh_event_attr_get(ev, "a", &type, &val, &len) == MESH_OK &&
	           strcmp(type, "String") == 0,
	   "re-setting an attribute as String forgets its Number type");
	is_int(mesh_event_ext_get(ev, "meshattrtypes",
	                          &(struct mesh_ext_value){0}),
	       MESH_ENOTFOUND, "and the type record is gone when empty");
	mesh_event_free(ev);
}

/* Hostile input: every prefix, random bytes, and bit flips. Each parse must
 * either fail cleanly or give an event that packs back to the same bytes. */
static bool
parse_is_sane(const uint8_t *buf, size_t len)
{
	struct mesh_event *ev = NULL;
	uint8_t *out;
	size_t olen;
	mesh_err err = mesh_event_parse(buf, len, 0, &ev);
	bool sane;

	if (err != MESH_OK) {
		return err == MESH_EPARSE && ev == NULL;
	}
	sane = mesh_event_pack(ev, &out, &olen) == MESH_OK;
	if (sane) {
		free(out);
	}
	mesh_event_free(ev);
	return sane;
}

static void
test_hostile(void)
{
	struct mesh_event *ev = full_event();
	uint8_t *buf, *copy;
	size_t len;
	int rejected = 0, boundary = 0, insane = 0;

	mesh_event_pack(ev, &buf, &len);
	for (size_t n = 0; n < len; n++) {
		struct mesh_event *got = NULL;
		mesh_err err = mesh_event_parse(buf, n, 0, &got);
		if (err == MESH_EPARSE) {
			rejected++;
		} else if (err == MESH_OK) {
			/* Protobuf has no end marker: a cut between two
			 * fields is a shorter valid event. It must be
			 * exactly the fields before the cut. */
			uint8_t *re;
			size_t rl;
			if (mesh_event_pack(got, &re, &rl) == MESH_OK &&
			    rl == n && memcmp(re, buf, n) == 0) {
				boundary++;
			} else {
				insane++;
			}
			free(re);
		} else {
			insane++;
		}
		mesh_event_free(got);
	}
	is_int(insane, 0,
	       "every truncation of %zu bytes is rejected or is a "
	       "field boundary (%d rejected, %d boundaries)",
	       len, rejected, boundary);
	ok(rejected > (int)len * 9 / 10, "most truncations are rejected");

	copy = malloc(len);
	insane = 0;
	for (int i = 0; i < 20000; i++) {
		memcpy(copy, buf, len);
		for (int f = 1 + (int)(test_rand() % 4); f > 0; f--) {
			copy[test_rand() % len] ^=
			        (uint8_t)(1u << (test_rand() % 8));
		}
		insane += !parse_is_sane(copy, len);
	}
	is_int(insane, 0,
	       "20000 bit-flipped events parse cleanly or fail "
	       "cleanly");
	free(copy);

	insane = 0;
	for (int i = 0; i < 20000; i++) {
		uint8_t r[512];
		size_t n = test_rand() % sizeof(r);
		for (size_t k = 0; k < n; k++) {
			r[k] = (uint8_t)test_rand();
		}
		insane += !parse_is_sane(r, n);
	}
	is_int(insane, 0,
	       "20000 random buffers parse cleanly or fail cleanly");

	{
		struct mesh_event *got = NULL;
		is_int(mesh_event_parse(buf, len, len - 1, &got), MESH_ETOOBIG,
		       "an event over the caller's limit is refused");
		has_str(mesh_errdetail(), "over the limit",
		        "and the detail says so");
		ok(got == NULL, "and nothing is returned");
		is_int(mesh_event_parse(NULL, 0, 0, &got), MESH_EPARSE,
		       "an empty buffer is not an event (no id)");
	}
	{
		size_t big = MESH_EVENT_MAX_SIZE + 1;
		uint8_t *huge = calloc(1, big);
		struct mesh_event *got = NULL;
		is_int(mesh_event_parse(huge, big, 0, &got), MESH_ETOOBIG,
		       "a buffer over MESH_EVENT_MAX_SIZE is refused unread");
		free(huge);
	}
	free(buf);
	mesh_event_free(ev);
}

static void
test_wrong_specversion(void)
{
	/* id "a", source "b", spec_version "0.3", type "c". */
	static const uint8_t pb[] = {0x0a, 1,   'a', 0x12, 1,    'b', 0x1a,
	                             3,    '0', '.', '3',  0x22, 1,   'c'};
	struct mesh_event *got = NULL;

	is_int(mesh_event_parse(pb, sizeof(pb), 0, &got), MESH_EPARSE,
	       "specversion 0.3 is refused");
	has_str(mesh_errdetail(), "specversion", "the detail says why");
}

/* New ids are UUID v7: version 7, their time the event's, later ones
 * sorting after earlier ones. */
static void
test_ids(void)
{
	struct mesh_event *a = NULL, *b = NULL;
	struct timespec pause = {0, 2 * 1000000};
	unsigned long long ms = 0;
	int64_t sec = 0;
	int32_t nsec = 0;

	mesh_event_new("t", "s", &a);
	nanosleep(&pause, NULL);
	mesh_event_new("t", "s", &b);
	if (a == NULL || b == NULL) {
		ok(false, "events are made");
		return;
	}
	is_int(mesh_event_id(a)[14], '7', "the id is a UUID version 7");
	ok(strchr("89ab", mesh_event_id(a)[19]) != NULL,
	   "with the RFC variant");
	ok(strcmp(mesh_event_id(a), mesh_event_id(b)) < 0,
	   "an id made later sorts later");
	sscanf(mesh_event_id(a), "%8llx", &ms);
	ms = ms << 16 | strtoull(mesh_event_id(a) + 9, NULL, 16);
	mesh_event_time(a, &sec, &nsec);
	ok(ms == (unsigned long long)(sec * 1000 + nsec / 1000000),
	   "its first 48 bits are the event's time in ms");
	mesh_event_free(a);
	mesh_event_free(b);
}

/* Text from outside made safe for a header and a log line. */
static void
test_text_clean(void)
{
	char a[] = "bad\r\nInjected: yes\tend";
	char b[] = "caf\xc3\xa9 \xe2\x82\xac ok";
	char c[] = "cut \xe2\x82";
	char d[] = "\xc0\xaf overlong \xed\xa0\x80 surrogate \x7f";

	mesh_text_clean(a);
	is_str(a, "bad??Injected: yes?end",
	       "text_clean: control characters become '?'");
	mesh_text_clean(b);
	is_str(b, "caf\xc3\xa9 \xe2\x82\xac ok",
	       "text_clean: valid UTF-8 stays");
	mesh_text_clean(c);
	is_str(c, "cut ??", "text_clean: a character cut short becomes '?'s");
	mesh_text_clean(d);
	is_str(d, "?? overlong ??? surrogate ?",
	       "text_clean: overlong forms, surrogates and DEL too");
}

int
main(void)
{
	test_text_clean();
	test_ids();
	test_round_trip();
	test_data_kinds();
	test_bad_values();
	test_attr_replace();
	test_hostile();
	test_wrong_specversion();
	return tap_done();
}
