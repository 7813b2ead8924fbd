/* pbjson.c: protobuf messages as JSON (the proto3 canonical mapping) over
 * protobuf-c descriptors. */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "google/protobuf/any.pb-c.h"
#include "google/protobuf/timestamp.pb-c.h"
#include "internal.h"
#include "mesh/pbjson.h"
#include "mesh_schemas.h"

#define TIMESTAMP_NAME "google.protobuf.Timestamp"
#define ANY_NAME       "google.protobuf.Any"

/* Timestamp's range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z. */
#define TIME_MIN_SEC (-62135596800LL)
#define TIME_MAX_SEC 253402300799LL

/* Where we are in the message, for error details: "items[1].quantity". */
struct walk {
	char path[256];
	size_t len;
	unsigned depth;
	bool int64_numbers; /* 64-bit integers as JSON numbers, not text */
};

static size_t path_add(struct walk *w, const char *fmt, ...) MESH_PRINTF(2, 3);

/* Append to the path (truncated when long); returns the length to pop
 * back to. */
static size_t
path_add(struct walk *w, const char *fmt, ...)
{
	size_t old = w->len;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(w->path + w->len, sizeof(w->path) - w->len, fmt, ap);
	va_end(ap);
	if (n > 0) {
		w->len += (size_t)n;
	}
	if (w->len >= sizeof(w->path)) {
		w->len = sizeof(w->path) - 1;
	}
	return old;
}

static size_t
path_field(struct walk *w, const char *name)
{
	return path_add(w, "%s%s", w->len > 0 ? "." : "", name);
}

static size_t
path_index(struct walk *w, size_t i)
{
	return path_add(w, "[%zu]", i);
}

static void
path_pop(struct walk *w, size_t old)
{
	w->len = old;
	w->path[old] = '\0';
}

static mesh_err
field_err(const struct walk *w, const char *what)
{
	if (w->len == 0) {
		return mesh_err_set(MESH_EINVAL, "%s", what);
	}
	return mesh_err_set(MESH_EINVAL, "field \"%s\": %s", w->path, what);
}

/* protoc's json_name: "order_id" -> "orderId". false when too long. */
static bool
json_name(const char *name, char *buf, size_t size)
{
	size_t n = 0;
	bool upper = false;

	for (; *name != '\0'; name++) {
		if (*name == '_') {
			upper = true;
			continue;
		}
		if (n + 1 >= size) {
			return false;
		}
		buf[n++] = upper ? (char)toupper((unsigned char)*name) : *name;
		upper = false;
	}
	buf[n] = '\0';
	return true;
}

static const ProtobufCFieldDescriptor *
field_find(const ProtobufCMessageDescriptor *desc, const char *key)
{
	const ProtobufCFieldDescriptor *f;
	char buf[256];

	f = protobuf_c_message_descriptor_get_field_by_name(desc, key);
	if (f != NULL) {
		return f;
	}
	for (unsigned i = 0; i < desc->n_fields; i++) {
		if (json_name(desc->fields[i].name, buf, sizeof(buf)) &&
		    strcmp(buf, key) == 0) {
			return &desc->fields[i];
		}
	}
	return NULL;
}

/* protoc-c compiles map<K, V> name as a repeated message NameEntry {K key
 * = 1; V value = 2;} nested in the message, and keeps no flag saying so. */
static bool
is_map(const ProtobufCFieldDescriptor *f)
{
	const ProtobufCMessageDescriptor *e = f->descriptor;
	char want[256];

	if (f->label != PROTOBUF_C_LABEL_REPEATED ||
	    f->type != PROTOBUF_C_TYPE_MESSAGE || e->n_fields != 2 ||
	    e->fields[0].id != 1 || strcmp(e->fields[0].name, "key") != 0 ||
	    e->fields[1].id != 2 || strcmp(e->fields[1].name, "value") != 0 ||
	    !json_name(f->name, want, sizeof(want) - 5)) {
		return false;
	}
	want[0] = (char)toupper((unsigned char)want[0]);
	strcat(want, "Entry");
	return strcmp(e->short_name, want) == 0;
}

static size_t
value_size(ProtobufCType type)
{
	switch (type) {
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return sizeof(int64_t);
	case PROTOBUF_C_TYPE_DOUBLE:
		return sizeof(double);
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_STRING:
		return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(ProtobufCMessage *);
	default: /* the 32-bit types, float and enums */
		return sizeof(int32_t);
	}
}

static void *
member(const ProtobufCMessage *m, unsigned offset)
{
	return (char *)m + offset;
}

/* ---- RFC 3339 ----------------------------------------------------------- */

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil), and back. */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static void
civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	int64_t era;
	unsigned doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = (unsigned)(z - era * 146097);
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/* n decimal digits at s; -1 when one is not a digit. */
static int
digits(const char *s, int n)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i])) {
			return -1;
		}
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

static bool
time_parse(const char *s, int64_t *sec, int32_t *nsec)
{
	static const unsigned mdays[] = {31, 29, 31, 30, 31, 30,
	                                 31, 31, 30, 31, 30, 31};
	int y, mo, d, h, mi, se, frac = 0, scale = 100000000;
	int64_t t;

	if (strlen(s) < 20 || (y = digits(s, 4)) < 1 || s[4] != '-' ||
	    (mo = digits(s + 5, 2)) < 1 || mo > 12 || s[7] != '-' ||
	    (d = digits(s + 8, 2)) < 1 || d > (int)mdays[mo - 1] ||
	    (s[10] != 'T' && s[10] != 't') || (h = digits(s + 11, 2)) < 0 ||
	    h > 23 || s[13] != ':' || (mi = digits(s + 14, 2)) < 0 ||
	    mi > 59 || s[16] != ':' || (se = digits(s + 17, 2)) < 0 ||
	    se > 59) {
		return false;
	}
	if (mo == 2 && d == 29 &&
	    (y % 4 != 0 || (y % 100 == 0 && y % 400 != 0))) {
		return false;
	}
	s += 19;
	if (*s == '.') {
		s++;
		if (!isdigit((unsigned char)*s)) {
			return false;
		}
		for (; isdigit((unsigned char)*s); s++) {
			if (scale == 0) {
				return false; /* more than 9 digits */
			}
			frac += (*s - '0') * scale;
			scale /= 10;
		}
	}
	t = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 +
	    mi * 60 + se;
	if ((*s == 'Z' || *s == 'z') && s[1] == '\0') {
		/* UTC */
	} else if ((*s == '+' || *s == '-') && strlen(s) == 6 && s[3] == ':') {
		int oh = digits(s + 1, 2), om = digits(s + 4, 2);

		if (oh < 0 || oh > 23 || om < 0 || om > 59) {
			return false;
		}
		t -= (*s == '+' ? 1 : -1) * (oh * 3600 + om * 60);
	} else {
		return false;
	}
	if (t < TIME_MIN_SEC || t > TIME_MAX_SEC) {
		return false;
	}
	*sec = t;
	*nsec = frac;
	return true;
}

/* "2026-01-01T00:00:00.120Z": 0, 3, 6 or 9 fractional digits. */
static bool
time_format(int64_t sec, int32_t nsec, char out[40])
{
	int64_t days, rem, y;
	unsigned m, d;
	int n;

	if (sec < TIME_MIN_SEC || sec > TIME_MAX_SEC || nsec < 0 ||
	    nsec > 999999999) {
		return false;
	}
	days = sec / 86400;
	rem = sec % 86400;
	if (rem < 0) {
		rem += 86400;
		days--;
	}
	civil_from_days(days, &y, &m, &d);
	n = snprintf(out, 40, "%04" PRId64 "-%02u-%02uT%02d:%02d:%02d", y, m,
	             d, (int)(rem / 3600), (int)(rem / 60 % 60),
	             (int)(rem % 60));
	if (nsec % 1000000 == 0 && nsec != 0) {
		n += snprintf(out + n, (size_t)(40 - n), ".%03" PRId32,
		              nsec / 1000000);
	} else if (nsec % 1000 == 0 && nsec != 0) {
		n += snprintf(out + n, (size_t)(40 - n), ".%06" PRId32,
		              nsec / 1000);
	} else if (nsec != 0) {
		n += snprintf(out + n, (size_t)(40 - n), ".%09" PRId32, nsec);
	}
	snprintf(out + n, (size_t)(40 - n), "Z");
	return true;
}

/* ---- JSON -> message ---------------------------------------------------- */

static mesh_err message_from_json(struct walk *w,
                                  const ProtobufCMessageDescriptor *desc,
                                  const json_t *j, ProtobufCMessage **out);

/* An integer from a JSON number (integral) or a decimal string, within
 * [min, max] (max of an unsigned type as its bit pattern). */
static mesh_err
int_from_json(struct walk *w, const json_t *j, bool is_signed, int bits,
              uint64_t *out)
{
	const char *type = is_signed ? (bits == 32 ? "int32" : "int64")
	                             : (bits == 32 ? "uint32" : "uint64");
	char what[40];
	int64_t v = 0;
	uint64_t u = 0;
	bool neg = false;

	snprintf(what, sizeof(what), "out of range for %s", type);
	if (json_is_integer(j)) {
		v = json_integer_value(j);
		neg = v < 0;
		u = (uint64_t)v;
	} else if (json_is_real(j)) {
		double d = json_real_value(j);

		if (d != floor(d)) {
			return field_err(w, "expected an integer");
		}
		if (d < -9223372036854775808.0 ||
		    d >= 18446744073709551616.0) {
			return field_err(w, what);
		}
		neg = d < 0;
		if (neg) {
			v = (int64_t)d;
			u = (uint64_t)v;
		} else {
			u = (uint64_t)d;
			v = (int64_t)u;
		}
	} else if (json_is_string(j)) {
		const char *s = json_string_value(j);
		char *end;

		neg = s[0] == '-';
		if (!isdigit((unsigned char)s[neg])) {
			return field_err(w, "expected an integer");
		}
		errno = 0;
		if (neg) {
			v = strtoll(s, &end, 10);
			u = (uint64_t)v;
			neg = v < 0; /* "-0" */
		} else {
			u = strtoull(s, &end, 10);
			v = (int64_t)u;
		}
		if (*end != '\0' ||
		    (size_t)(end - s) != json_string_length(j)) {
			return field_err(w, "expected an integer");
		}
		if (errno == ERANGE) {
			return field_err(w, what);
		}
	} else {
		return field_err(w, "expected an integer");
	}
	if (is_signed) {
		if (!neg && u > (bits == 32 ? (uint64_t)INT32_MAX
		                            : (uint64_t)INT64_MAX)) {
			return field_err(w, what);
		}
		if (neg && bits == 32 && v < INT32_MIN) {
			return field_err(w, what);
		}
	} else if (neg || (bits == 32 && u > UINT32_MAX)) {
		return field_err(w, what);
	}
	*out = u;
	return MESH_OK;
}

static mesh_err
double_from_json(struct walk *w, const json_t *j, bool is_float, double *out)
{
	double d;

	if (json_is_number(j)) {
		d = json_number_value(j);
	} else if (json_is_string(j)) {
		const char *s = json_string_value(j);
		char *end;

		if (strcmp(s, "NaN") == 0) {
			d = NAN;
		} else if (strcmp(s, "Infinity") == 0) {
			d = INFINITY;
		} else if (strcmp(s, "-Infinity") == 0) {
			d = -INFINITY;
		} else {
			/* strtod would take " 1", "inf", "0x1p3" */
			if (s[0] != '-' && !isdigit((unsigned char)s[0])) {
				return field_err(w, "expected a number");
			}
			for (const char *p = s; *p != '\0'; p++) {
				if (!strchr("0123456789+-.eE", *p)) {
					return field_err(w,
					                 "expected a number");
				}
			}
			errno = 0;
			d = strtod(s, &end);
			if (*end != '\0' || end == s ||
			    (size_t)(end - s) != json_string_length(j)) {
				return field_err(w, "expected a number");
			}
			if (errno == ERANGE && isinf(d)) {
				return field_err(w, is_float ? "out of range "
				                               "for float"
				                             : "out of range "
				                               "for double");
			}
		}
	} else {
		return field_err(w, "expected a number");
	}
	/* The shortest text of FLT_MAX, 3.4028235e38 (ours, and Java's), is
	 * a little above FLT_MAX as a double, yet rounds to it as a float:
	 * only what would round to infinity is out of range, the rest is
	 * clamped (a float we wrote was refused on reading; found by
	 * fuzzing). 0x1.ffffffp127 is FLT_MAX and half its last unit. */
	if (is_float && isfinite(d) && fabs(d) > FLT_MAX) {
		if (fabs(d) >= 0x1.ffffffp127) {
			return field_err(w, "out of range for float");
		}
		d = copysign(FLT_MAX, d);
	}
	*out = d;
	return MESH_OK;
}

static mesh_err
enum_from_json(struct walk *w, const ProtobufCEnumDescriptor *ed,
               const json_t *j, int32_t *out)
{
	const ProtobufCEnumValue *ev;
	uint64_t u;
	mesh_err err;

	if (json_is_string(j)) {
		ev = protobuf_c_enum_descriptor_get_value_by_name(
		        ed, json_string_value(j));
		if (ev == NULL) {
			return mesh_err_set(MESH_EINVAL,
			                    "field \"%s\": unknown value "
			                    "\"%.64s\" of %s",
			                    w->path, json_string_value(j),
			                    ed->name);
		}
		*out = ev->value;
		return MESH_OK;
	}
	if (!json_is_number(j)) {
		return field_err(w, "expected an enum name or number");
	}
	/* proto3 enums are open: any int32 is a valid value. */
	if ((err = int_from_json(w, j, true, 32, &u)) != MESH_OK) {
		return err;
	}
	*out = (int32_t)(int64_t)u;
	return MESH_OK;
}

static mesh_err
bytes_from_json(struct walk *w, const json_t *j, ProtobufCBinaryData *out)
{
	const char *s;
	size_t len, max, n = 0;
	int variant;
	unsigned char *buf;

	if (!json_is_string(j)) {
		return field_err(w, "expected base64 text");
	}
	s = json_string_value(j);
	len = json_string_length(j);
	variant = strpbrk(s, "-_") != NULL ? sodium_base64_VARIANT_URLSAFE
	                                   : sodium_base64_VARIANT_ORIGINAL;
	if (len % 4 != 0 && (len == 0 || s[len - 1] != '=')) {
		variant |= 2; /* the _NO_PADDING variants */
	}
	max = len / 4 * 3 + 3;
	if ((buf = malloc(max)) == NULL) {
		return mesh_err_set(MESH_ENOMEM, "field \"%s\"", w->path);
	}
	if (sodium_base642bin(buf, max, s, len, NULL, &n, NULL, variant) !=
	    0) {
		free(buf);
		return field_err(w, "expected base64 text");
	}
	if (n == 0) {
		free(buf);
		buf = NULL;
	}
	out->data = buf;
	out->len = n;
	return MESH_OK;
}

static mesh_err
timestamp_from_json(struct walk *w, const json_t *j, ProtobufCMessage **out)
{
	Google__Protobuf__Timestamp *ts;
	int64_t sec;
	int32_t nsec;

	if (!json_is_string(j) ||
	    strlen(json_string_value(j)) != json_string_length(j) ||
	    !time_parse(json_string_value(j), &sec, &nsec)) {
		return field_err(w, "expected an RFC 3339 timestamp string "
		                    "(\"2026-01-01T00:00:00Z\")");
	}
	if ((ts = malloc(sizeof(*ts))) == NULL) {
		return mesh_err_set(MESH_ENOMEM, "field \"%s\"", w->path);
	}
	google__protobuf__timestamp__init(ts);
	ts->seconds = sec;
	ts->nanos = nsec;
	*out = &ts->base;
	return MESH_OK;
}

/* The well-known types whose JSON is not an object of their fields: in an
 * Any they go under "value". */
static bool
has_own_json(const ProtobufCMessageDescriptor *desc)
{
	return strcmp(desc->name, TIMESTAMP_NAME) == 0 ||
	       strcmp(desc->name, ANY_NAME) == 0;
}

static const ProtobufCMessageDescriptor *
type_url_find(const char *url)
{
	const char *slash = strrchr(url, '/');

	return mesh_schema_find(slash != NULL ? slash + 1 : url);
}

/* {"@type": url, fields...}, or {"@type": url, "value": ...} for the
 * types with a JSON form of their own. */
static mesh_err
any_from_json(struct walk *w, const json_t *j, ProtobufCMessage **out)
{
	const ProtobufCMessageDescriptor *desc;
	const json_t *type = json_object_get(j, "@type");
	json_t *rest = NULL;
	ProtobufCMessage *inner = NULL;
	Google__Protobuf__Any *any = NULL;
	mesh_err err = MESH_OK;

	if (json_object_size(j) == 0) {
		any = malloc(sizeof(*any));
		if (any == NULL) {
			return mesh_err_set(MESH_ENOMEM, "field \"%s\"",
			                    w->path);
		}
		google__protobuf__any__init(any);
		*out = &any->base;
		return MESH_OK;
	}
	if (!json_is_string(type)) {
		return field_err(w, "expected an object with \"@type\"");
	}
	if ((desc = type_url_find(json_string_value(type))) == NULL) {
		return mesh_err_set(MESH_EINVAL,
		                    "field \"%s\": @type \"%.128s\" is not in "
		                    "the schema registry",
		                    w->path, json_string_value(type));
	}
	if (has_own_json(desc)) {
		const json_t *v = json_object_get(j, "value");

		if (json_object_size(j) != 2 || v == NULL) {
			return field_err(w,
			                 "expected \"@type\" and \"value\"");
		}
		err = message_from_json(w, desc, v, &inner);
	} else {
		if ((rest = json_copy((json_t *)j)) == NULL ||
		    json_object_del(rest, "@type") != 0) {
			err = mesh_err_set(MESH_ENOMEM, "field \"%s\"",
			                   w->path);
			goto done;
		}
		err = message_from_json(w, desc, rest, &inner);
	}
	if (err != MESH_OK) {
		goto done;
	}
	if ((any = malloc(sizeof(*any))) == NULL) {
		err = mesh_err_set(MESH_ENOMEM, "field \"%s\"", w->path);
		goto done;
	}
	google__protobuf__any__init(any);
	any->value.len = protobuf_c_message_get_packed_size(inner);
	any->value.data = malloc(any->value.len ? any->value.len : 1);
	any->type_url = strdup(json_string_value(type));
	if (any->value.data == NULL || any->type_url == NULL) {
		protobuf_c_message_free_unpacked(&any->base, NULL);
		any = NULL;
		err = mesh_err_set(MESH_ENOMEM, "field \"%s\"", w->path);
		goto done;
	}
	protobuf_c_message_pack(inner, any->value.data);
	*out = &any->base;
done:
	json_decref(rest);
	protobuf_c_message_free_unpacked(inner, NULL);
	return err;
}

/* One value of field f from j into slot (the field itself, or an element
 * of its array). Writes the slot only on success. */
static mesh_err
value_from_json(struct walk *w, const ProtobufCFieldDescriptor *f,
                const json_t *j, void *slot)
{
	bool is_signed = false;
	size_t size;
	uint64_t u;
	double d;
	mesh_err err;

	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		is_signed = true;
		/* fall through */
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		size = value_size(f->type);
		err = int_from_json(w, j, is_signed, (int)size * 8, &u);
		if (err == MESH_OK) {
			/* two's complement: the low bytes are the value */
			uint32_t low = (uint32_t)u;

			memcpy(slot, size == 8 ? (void *)&u : (void *)&low,
			       size);
		}
		return err;
	case PROTOBUF_C_TYPE_FLOAT:
		if ((err = double_from_json(w, j, true, &d)) == MESH_OK) {
			*(float *)slot = (float)d;
		}
		return err;
	case PROTOBUF_C_TYPE_DOUBLE:
		if ((err = double_from_json(w, j, false, &d)) == MESH_OK) {
			*(double *)slot = d;
		}
		return err;
	case PROTOBUF_C_TYPE_BOOL:
		if (!json_is_boolean(j)) {
			return field_err(w, "expected true or false");
		}
		*(protobuf_c_boolean *)slot = json_is_true(j);
		return MESH_OK;
	case PROTOBUF_C_TYPE_ENUM:
		return enum_from_json(w, f->descriptor, j, slot);
	case PROTOBUF_C_TYPE_STRING: {
		char *s;

		if (!json_is_string(j)) {
			return field_err(w, "expected a string");
		}
		if (strlen(json_string_value(j)) != json_string_length(j)) {
			return field_err(w, "string contains a NUL");
		}
		if ((s = strdup(json_string_value(j))) == NULL) {
			return mesh_err_set(MESH_ENOMEM, "field \"%s\"",
			                    w->path);
		}
		*(char **)slot = s;
		return MESH_OK;
	}
	case PROTOBUF_C_TYPE_BYTES:
		return bytes_from_json(w, j, slot);
	case PROTOBUF_C_TYPE_MESSAGE:
		return message_from_json(w, f->descriptor, j, slot);
	}
	return field_err(w, "unsupported field type");
}

/* A map key (JSON object keys are text) as the JSON value its field
 * reads. */
static json_t *
map_key_json(const ProtobufCFieldDescriptor *kf, const char *key)
{
	if (kf->type == PROTOBUF_C_TYPE_BOOL) {
		if (strcmp(key, "true") == 0) {
			return json_true();
		}
		return strcmp(key, "false") == 0 ? json_false()
		                                 : json_string(key);
	}
	return json_string(key);
}

static mesh_err
map_entry_from_json(struct walk *w, const ProtobufCFieldDescriptor *f,
                    const char *key, const json_t *val, ProtobufCMessage **out)
{
	const ProtobufCMessageDescriptor *ed = f->descriptor;
	ProtobufCMessage *e;
	json_t *kj;
	mesh_err err;

	if ((e = calloc(1, ed->sizeof_message)) == NULL) {
		return mesh_err_set(MESH_ENOMEM, "field \"%s\"", w->path);
	}
	protobuf_c_message_init(ed, e);
	if ((kj = map_key_json(&ed->fields[0], key)) == NULL) {
		err = mesh_err_set(MESH_ENOMEM, "field \"%s\"", w->path);
		goto fail;
	}
	err = value_from_json(w, &ed->fields[0], kj,
	                      member(e, ed->fields[0].offset));
	json_decref(kj);
	if (err != MESH_OK) {
		goto fail;
	}
	if (!json_is_null(val) &&
	    (err = value_from_json(w, &ed->fields[1], val,
	                           member(e, ed->fields[1].offset))) !=
	            MESH_OK) {
		goto fail;
	}
	*out = e;
	return MESH_OK;
fail:
	protobuf_c_message_free_unpacked(e, NULL);
	return err;
}

/* A repeated field (an array) or a map (an object) into m, growing its
 * count element by element so that m stays freeable. */
static mesh_err
repeated_from_json(struct walk *w, ProtobufCMessage *m,
                   const ProtobufCFieldDescriptor *f, const json_t *j)
{
	size_t *n = member(m, f->quantifier_offset);
	void **arr = member(m, f->offset);
	size_t size = value_size(f->type), count, i = 0, old;
	bool map = is_map(f);
	const char *key;
	json_t *val;
	mesh_err err = MESH_OK;

	if (map ? !json_is_object(j) : !json_is_array(j)) {
		return field_err(w, map ? "expected an object"
		                        : "expected an array");
	}
	count = map ? json_object_size(j) : json_array_size(j);
	if (count == 0) {
		return MESH_OK;
	}
	if ((*arr = calloc(count, size)) == NULL) {
		return mesh_err_set(MESH_ENOMEM, "field \"%s\"", w->path);
	}
	if (map) {
		json_object_foreach((json_t *)j, key, val)
		{
			old = path_add(w, "[\"%.32s\"]", key);
			err = map_entry_from_json(
			        w, f, key, val, (ProtobufCMessage **)*arr + i);
			path_pop(w, old);
			if (err != MESH_OK) {
				return err;
			}
			*n = ++i;
		}
		return MESH_OK;
	}
	for (i = 0; i < count; i++) {
		val = json_array_get(j, i);
		old = path_index(w, i);
		if (json_is_null(val)) {
			err = field_err(w, "null in an array");
		} else {
			err = value_from_json(w, f, val,
			                      (char *)*arr + i * size);
		}
		path_pop(w, old);
		if (err != MESH_OK) {
			return err;
		}
		*n = i + 1;
	}
	return MESH_OK;
}

/* The oneof member of m that is set in the same oneof as f, if any. */
static const ProtobufCFieldDescriptor *
oneof_set(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
	const ProtobufCMessageDescriptor *desc = m->descriptor;
	uint32_t set = *(uint32_t *)member(m, f->quantifier_offset);

	if (set == 0) {
		return NULL;
	}
	return protobuf_c_message_descriptor_get_field(desc, set);
}

static mesh_err
field_from_json(struct walk *w, ProtobufCMessage *m,
                const ProtobufCFieldDescriptor *f, const json_t *j)
{
	const ProtobufCFieldDescriptor *other;
	mesh_err err;

	if (f->label == PROTOBUF_C_LABEL_REPEATED) {
		return repeated_from_json(w, m, f, j);
	}
	if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
	    (other = oneof_set(m, f)) != NULL) {
		return mesh_err_set(MESH_EINVAL,
		                    "field \"%s\": \"%s\" of the same oneof "
		                    "is set too",
		                    w->path, other->name);
	}
	if ((err = value_from_json(w, f, j, member(m, f->offset))) !=
	    MESH_OK) {
		return err;
	}
	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
		*(uint32_t *)member(m, f->quantifier_offset) = f->id;
	} else if (f->label == PROTOBUF_C_LABEL_OPTIONAL &&
	           f->type != PROTOBUF_C_TYPE_STRING &&
	           f->type != PROTOBUF_C_TYPE_MESSAGE) {
		*(protobuf_c_boolean *)member(m, f->quantifier_offset) = 1;
	}
	return MESH_OK;
}

static mesh_err
message_from_json(struct walk *w, const ProtobufCMessageDescriptor *desc,
                  const json_t *j, ProtobufCMessage **out)
{
	ProtobufCMessage *m = NULL;
	unsigned char *seen = NULL;
	const char *key;
	json_t *val;
	mesh_err err = MESH_OK;

	if (w->depth >= MESH_PBJSON_MAX_DEPTH) {
		return field_err(w, "nested too deeply");
	}
	if (strcmp(desc->name, TIMESTAMP_NAME) == 0) {
		return timestamp_from_json(w, j, out);
	}
	if (!json_is_object(j) && w->len == 0) {
		return mesh_err_set(MESH_EINVAL,
		                    "expected a JSON object for %s",
		                    desc->name);
	}
	if (!json_is_object(j)) {
		return mesh_err_set(MESH_EINVAL,
		                    "field \"%s\": expected an object (%s)",
		                    w->path, desc->name);
	}
	if (strcmp(desc->name, ANY_NAME) == 0) {
		w->depth++;
		err = any_from_json(w, j, out);
		w->depth--;
		return err;
	}
	m = calloc(1, desc->sizeof_message);
	seen = calloc(desc->n_fields ? desc->n_fields : 1, 1);
	if (m == NULL || seen == NULL) {
		free(m);
		free(seen);
		return mesh_err_set(MESH_ENOMEM, "%s", desc->name);
	}
	protobuf_c_message_init(desc, m);
	w->depth++;
	json_object_foreach((json_t *)j, key, val)
	{
		const ProtobufCFieldDescriptor *f = field_find(desc, key);
		size_t old;

		if (f == NULL) {
			old = path_field(w, key);
			err = mesh_err_set(MESH_EINVAL,
			                   "unknown field \"%s\" in %s",
			                   w->path, desc->name);
			path_pop(w, old);
			goto done;
		}
		old = path_field(w, key);
		if (seen[f - desc->fields]) {
			err = field_err(w, "given twice (under both of its "
			                   "names)");
		} else if (!json_is_null(val)) {
			err = field_from_json(w, m, f, val);
		}
		seen[f - desc->fields] = 1;
		path_pop(w, old);
		if (err != MESH_OK) {
			goto done;
		}
	}
done:
	w->depth--;
	free(seen);
	if (err != MESH_OK) {
		protobuf_c_message_free_unpacked(m, NULL);
		return err;
	}
	*out = m;
	return MESH_OK;
}

mesh_err
mesh_pbjson_encode(const ProtobufCMessageDescriptor *desc, const json_t *obj,
                   ProtobufCMessage **out)
{
	struct walk w = {.len = 0};

	assert(desc != NULL && out != NULL);
	if (obj == NULL) {
		return mesh_err_set(MESH_EINVAL, "%s: no JSON value",
		                    desc->name);
	}
	return message_from_json(&w, desc, obj, out);
}

/* ---- message -> JSON ---------------------------------------------------- */

static mesh_err message_to_json(struct walk *w, const ProtobufCMessage *m,
                                json_t **out);

static json_t *
double_to_json(double d, bool is_float)
{
	char buf[32];

	if (isnan(d)) {
		return json_string("NaN");
	}
	if (isinf(d)) {
		return json_string(d > 0 ? "Infinity" : "-Infinity");
	}
	if (is_float) {
		/* The shortest text that reads back as the same float, so
		 * 0.1f is 0.1 and not 0.100000001490116. */
		for (int p = 6; p <= 9; p++) {
			snprintf(buf, sizeof(buf), "%.*g", p, d);
			if ((float)strtod(buf, NULL) == (float)d) {
				break;
			}
		}
		d = strtod(buf, NULL);
	}
	return json_real(d);
}

static json_t *
enum_to_json(const ProtobufCEnumDescriptor *ed, int32_t v)
{
	const ProtobufCEnumValue *ev;

	ev = protobuf_c_enum_descriptor_get_value(ed, v);
	return ev != NULL ? json_string(ev->name) : json_integer(v);
}

static json_t *
bytes_to_json(const ProtobufCBinaryData *b)
{
	size_t size = sodium_base64_ENCODED_LEN(
	        b->len, sodium_base64_VARIANT_ORIGINAL);
	char *text = malloc(size);
	json_t *j;

	if (text == NULL) {
		return NULL;
	}
	if (b->len == 0) {
		text[0] = '\0';
	} else {
		sodium_bin2base64(text, size, b->data, b->len,
		                  sodium_base64_VARIANT_ORIGINAL);
	}
	j = json_string(text);
	free(text);
	return j;
}

static json_t *
int64_to_json(const struct walk *w, bool is_signed, const void *slot)
{
	char buf[24];

	if (w->int64_numbers) {
		return is_signed ? json_integer(*(const int64_t *)slot)
		                 : json_real((double)*(const uint64_t *)slot);
	}
	if (is_signed) {
		snprintf(buf, sizeof(buf), "%" PRId64, *(const int64_t *)slot);
	} else {
		snprintf(buf, sizeof(buf), "%" PRIu64,
		         *(const uint64_t *)slot);
	}
	return json_string(buf);
}

static mesh_err
string_to_json(struct walk *w, const char *s, json_t **out)
{
	json_t *j = json_string(s);
	json_t *probe;

	if (j != NULL) {
		*out = j;
		return MESH_OK;
	}
	/* jansson refuses text that is not UTF-8, and says NULL for both. */
	if ((probe = json_string("")) == NULL) {
		return mesh_err_set(MESH_ENOMEM, "field \"%s\"", w->path);
	}
	json_decref(probe);
	return field_err(w, "not valid UTF-8");
}

static mesh_err
value_to_json(struct walk *w, const ProtobufCFieldDescriptor *f,
              const void *slot, json_t **out)
{
	json_t *j = NULL;

	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		j = json_integer(*(const int32_t *)slot);
		break;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		j = json_integer(*(const uint32_t *)slot);
		break;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		j = int64_to_json(w, true, slot);
		break;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		j = int64_to_json(w, false, slot);
		break;
	case PROTOBUF_C_TYPE_FLOAT:
		j = double_to_json(*(const float *)slot, true);
		break;
	case PROTOBUF_C_TYPE_DOUBLE:
		j = double_to_json(*(const double *)slot, false);
		break;
	case PROTOBUF_C_TYPE_BOOL:
		j = json_boolean(*(const protobuf_c_boolean *)slot);
		break;
	case PROTOBUF_C_TYPE_ENUM:
		j = enum_to_json(f->descriptor, *(const int32_t *)slot);
		break;
	case PROTOBUF_C_TYPE_STRING:
		return string_to_json(w, *(char *const *)slot, out);
	case PROTOBUF_C_TYPE_BYTES:
		j = bytes_to_json(slot);
		break;
	case PROTOBUF_C_TYPE_MESSAGE:
		return message_to_json(w, *(ProtobufCMessage *const *)slot,
		                       out);
	}
	if (j == NULL) {
		return mesh_err_set(MESH_ENOMEM, "field \"%s\"", w->path);
	}
	*out = j;
	return MESH_OK;
}

/* Whether a field is written: proto3 leaves defaults out. */
static bool
field_present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
	const void *slot = member(m, f->offset);
	static const unsigned char zero[sizeof(ProtobufCBinaryData)];

	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
		return *(uint32_t *)member(m, f->quantifier_offset) == f->id;
	}
	if (f->label == PROTOBUF_C_LABEL_REPEATED) {
		return *(size_t *)member(m, f->quantifier_offset) > 0;
	}
	if (f->type == PROTOBUF_C_TYPE_STRING ||
	    f->type == PROTOBUF_C_TYPE_MESSAGE) {
		const char *p = *(const char *const *)slot;

		if (p == NULL) {
			return false;
		}
		return f->label != PROTOBUF_C_LABEL_NONE ||
		       f->type == PROTOBUF_C_TYPE_MESSAGE || p[0] != '\0';
	}
	if (f->label == PROTOBUF_C_LABEL_OPTIONAL) {
		return *(protobuf_c_boolean *)member(m, f->quantifier_offset);
	}
	if (f->label == PROTOBUF_C_LABEL_REQUIRED) {
		return true;
	}
	if (f->type == PROTOBUF_C_TYPE_BYTES) {
		return ((const ProtobufCBinaryData *)slot)->len > 0;
	}
	/* As protobuf-c writes it: it compares a float's value with 0, so
	 * -0.0 is not written and arrives as 0 (C++ compares the bits). The
	 * JSON shows what the wire carries (fuzz_pbjson checks both agree). */
	if (f->type == PROTOBUF_C_TYPE_FLOAT) {
		return *(const float *)slot != 0;
	}
	if (f->type == PROTOBUF_C_TYPE_DOUBLE) {
		return *(const double *)slot != 0;
	}
	return memcmp(slot, zero, value_size(f->type)) != 0;
}

static mesh_err
map_key_text(const ProtobufCFieldDescriptor *kf, const void *slot,
             char buf[24], const char **key)
{
	switch (kf->type) {
	case PROTOBUF_C_TYPE_STRING:
		*key = *(char *const *)slot;
		return MESH_OK;
	case PROTOBUF_C_TYPE_BOOL:
		*key = *(const protobuf_c_boolean *)slot ? "true" : "false";
		return MESH_OK;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		snprintf(buf, 24, "%" PRId64, *(const int64_t *)slot);
		break;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		snprintf(buf, 24, "%" PRIu64, *(const uint64_t *)slot);
		break;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		snprintf(buf, 24, "%" PRIu32, *(const uint32_t *)slot);
		break;
	default:
		snprintf(buf, 24, "%" PRId32, *(const int32_t *)slot);
		break;
	}
	*key = buf;
	return MESH_OK;
}

static mesh_err
repeated_to_json(struct walk *w, const ProtobufCMessage *m,
                 const ProtobufCFieldDescriptor *f, json_t **out)
{
	size_t n = *(size_t *)member(m, f->quantifier_offset);
	const char *arr = *(char *const *)member(m, f->offset);
	size_t size = value_size(f->type), old;
	bool map = is_map(f);
	json_t *all = map ? json_object() : json_array();
	json_t *v;
	mesh_err err = MESH_OK;

	if (all == NULL) {
		return mesh_err_set(MESH_ENOMEM, "field \"%s\"", w->path);
	}
	for (size_t i = 0; i < n && err == MESH_OK; i++) {
		const void *slot = arr + i * size;

		old = path_index(w, i);
		if (map) {
			const ProtobufCMessage *e =
			        *(ProtobufCMessage *const *)slot;
			const ProtobufCFieldDescriptor *kf, *vf;
			const char *key;
			char buf[24];

			kf = &e->descriptor->fields[0];
			vf = &e->descriptor->fields[1];
			map_key_text(kf, member(e, kf->offset), buf, &key);
			if ((err = value_to_json(w, vf, member(e, vf->offset),
			                         &v)) == MESH_OK &&
			    json_object_set_new(all, key, v) != 0) {
				err = field_err(w, "key is not UTF-8");
			}
		} else if ((err = value_to_json(w, f, slot, &v)) == MESH_OK &&
		           json_array_append_new(all, v) != 0) {
			err = mesh_err_set(MESH_ENOMEM, "field \"%s\"",
			                   w->path);
		}
		path_pop(w, old);
	}
	if (err != MESH_OK) {
		json_decref(all);
		return err;
	}
	*out = all;
	return MESH_OK;
}

static mesh_err
timestamp_to_json(struct walk *w, const ProtobufCMessage *m, json_t **out)
{
	const Google__Protobuf__Timestamp *ts =
	        (const Google__Protobuf__Timestamp *)m;
	char buf[40];

	if (!time_format(ts->seconds, ts->nanos, buf)) {
		return field_err(w, "timestamp out of range");
	}
	if ((*out = json_string(buf)) == NULL) {
		return mesh_err_set(MESH_ENOMEM, "field \"%s\"", w->path);
	}
	return MESH_OK;
}

static mesh_err
any_to_json(struct walk *w, const ProtobufCMessage *m, json_t **out)
{
	const Google__Protobuf__Any *any = (const Google__Protobuf__Any *)m;
	const ProtobufCMessageDescriptor *desc;
	ProtobufCMessage *inner;
	json_t *j = NULL, *obj = NULL;
	mesh_err err;

	if (any->type_url == NULL || any->type_url[0] == '\0') {
		if ((*out = json_object()) == NULL) {
			return mesh_err_set(MESH_ENOMEM, "field \"%s\"",
			                    w->path);
		}
		return MESH_OK;
	}
	if ((desc = type_url_find(any->type_url)) == NULL) {
		return mesh_err_set(MESH_EINVAL,
		                    "field \"%s\": Any of type \"%.128s\", "
		                    "not in the schema registry",
		                    w->path, any->type_url);
	}
	inner = protobuf_c_message_unpack(desc, NULL, any->value.len,
	                                  any->value.data);
	if (inner == NULL) {
		return mesh_err_set(MESH_EINVAL,
		                    "field \"%s\": malformed %s in an Any",
		                    w->path, desc->name);
	}
	err = message_to_json(w, inner, &j);
	protobuf_c_message_free_unpacked(inner, NULL);
	if (err != MESH_OK) {
		return err;
	}
	if (!has_own_json(desc)) {
		obj = j;
	} else if ((obj = json_object()) == NULL) {
		json_decref(j);
		goto nomem;
	} else if (json_object_set_new(obj, "value", j) != 0) {
		goto nomem;
	}
	if (json_object_set_new(obj, "@type", json_string(any->type_url)) !=
	    0) {
		goto nomem;
	}
	*out = obj;
	return MESH_OK;
nomem:
	json_decref(obj);
	return mesh_err_set(MESH_ENOMEM, "field \"%s\"", w->path);
}

static mesh_err
message_to_json(struct walk *w, const ProtobufCMessage *m, json_t **out)
{
	const ProtobufCMessageDescriptor *desc;
	json_t *obj, *v;
	char name[256];
	mesh_err err = MESH_OK;

	if (m == NULL) {
		return field_err(w, "no message (NULL)");
	}
	desc = m->descriptor;
	if (w->depth >= MESH_PBJSON_MAX_DEPTH) {
		return field_err(w, "nested too deeply");
	}
	if (strcmp(desc->name, TIMESTAMP_NAME) == 0) {
		return timestamp_to_json(w, m, out);
	}
	w->depth++;
	if (strcmp(desc->name, ANY_NAME) == 0) {
		err = any_to_json(w, m, out);
		w->depth--;
		return err;
	}
	if ((obj = json_object()) == NULL) {
		w->depth--;
		return mesh_err_set(MESH_ENOMEM, "%s", desc->name);
	}
	for (unsigned i = 0; i < desc->n_fields && err == MESH_OK; i++) {
		const ProtobufCFieldDescriptor *f = &desc->fields[i];
		size_t old;

		if (!field_present(m, f)) {
			continue;
		}
		if (!json_name(f->name, name, sizeof(name))) {
			snprintf(name, sizeof(name), "%s", f->name);
		}
		old = path_field(w, name);
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			err = repeated_to_json(w, m, f, &v);
		} else {
			err = value_to_json(w, f, member(m, f->offset), &v);
		}
		if (err == MESH_OK && json_object_set_new(obj, name, v) != 0) {
			err = mesh_err_set(MESH_ENOMEM, "field \"%s\"",
			                   w->path);
		}
		path_pop(w, old);
	}
	w->depth--;
	if (err != MESH_OK) {
		json_decref(obj);
		return err;
	}
	*out = obj;
	return MESH_OK;
}

mesh_err
mesh_pbjson_decode(const ProtobufCMessage *msg, json_t **out)
{
	struct walk w = {.len = 0};

	assert(msg != NULL && out != NULL);
	return message_to_json(&w, msg, out);
}

/* ---- events ------------------------------------------------------------- */

mesh_err
mesh_pbjson_set_event_data(struct mesh_event *ev, const char *type,
                           const char *json, size_t len)
{
	const ProtobufCMessageDescriptor *desc;
	ProtobufCMessage *msg = NULL;
	json_error_t jerr;
	json_t *j;
	mesh_err err;

	assert(ev != NULL && type != NULL);
	if ((desc = mesh_schema_find(type)) == NULL) {
		return mesh_err_set(MESH_ENOTFOUND,
		                    "message type \"%.128s\": not in the "
		                    "schema registry",
		                    type);
	}
	if (json == NULL && len != 0) {
		return mesh_err_set(MESH_EINVAL, "%s: no JSON text", type);
	}
	j = json_loadb(json != NULL ? json : "", len,
	               JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	if (j == NULL) {
		return mesh_err_set(MESH_EPARSE,
		                    "%s as JSON: line %d column %d: %s", type,
		                    jerr.line, jerr.column, jerr.text);
	}
	err = mesh_pbjson_encode(desc, j, &msg);
	json_decref(j);
	if (err != MESH_OK) {
		return err;
	}
	err = mesh_event_set_message(ev, msg);
	protobuf_c_message_free_unpacked(msg, NULL);
	return err;
}

/* The event's protobuf payload as JSON; numbers says how 64-bit integers
 * come out. */
static mesh_err
event_data(const struct mesh_event *ev, bool numbers, json_t **out)
{
	const ProtobufCMessageDescriptor *desc;
	ProtobufCMessage *msg;
	struct walk w = {.int64_numbers = numbers};
	const char *url;
	mesh_err err;

	assert(ev != NULL && out != NULL);
	if (mesh_event_data(ev, NULL, NULL, &url) != MESH_DATA_PROTO) {
		return mesh_err_set(MESH_EINVAL,
		                    "event %s: payload is not a protobuf "
		                    "message",
		                    mesh_event_id(ev));
	}
	if ((desc = type_url_find(url)) == NULL) {
		return mesh_err_set(MESH_ENOTFOUND,
		                    "event %s: payload type \"%.128s\" is not "
		                    "in the schema registry",
		                    mesh_event_id(ev), url);
	}
	if ((err = mesh_event_unpack_message(ev, desc, NULL, &msg)) !=
	    MESH_OK) {
		return err;
	}
	err = message_to_json(&w, msg, out);
	protobuf_c_message_free_unpacked(msg, NULL);
	return err;
}

mesh_err
mesh_pbjson_event_data(const struct mesh_event *ev, json_t **out)
{
	return event_data(ev, false, out);
}

mesh_err
mesh__pbjson_event_fields(const struct mesh_event *ev, json_t **out)
{
	return event_data(ev, true, out);
}
