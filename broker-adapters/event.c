/* event.c: the CloudEvents envelope, its codec and the message-attribute
 * view over its extension attributes. */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

#include "cloudevents.pb-c.h"
#include "internal.h"
#include "mesh/event.h"

typedef Io__Cloudevents__V1__CloudEvent pb_event;
typedef Io__Cloudevents__V1__CloudEvent__AttributesEntry pb_entry;
typedef Io__Cloudevents__V1__CloudEvent__CloudEventAttributeValue pb_value;
typedef Google__Protobuf__Timestamp pb_time;
typedef Google__Protobuf__Any pb_any;

#define ATTR_TYPES_EXT "meshattrtypes"

/* Timestamp's range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z. */
#define TIME_MIN_SEC (-62135596800LL)
#define TIME_MAX_SEC 253402300799LL

struct ext {
	char *name;
	mesh_ext_type type;
	bool boolean;
	int32_t integer;
	uint8_t *data; /* string (NUL-terminated) or bytes */
	size_t len;
	int64_t sec;
	int32_t nsec;
	/* Text form of BOOL, INT and TIME values, for the attribute view. */
	char text[40];
};

struct mesh_event {
	char *id;
	char *source;
	char *specversion;
	char *type;
	struct ext *exts;
	size_t n_ext;
	size_t cap_ext;
	mesh_data_kind data_kind;
	uint8_t *
	        data; /* NUL-terminated too, so text can be used as a string */
	size_t data_len;
	char *type_url;
};

/* The optional attributes, with the protobuf type the format gives them. */
static const struct {
	const char *name;
	mesh_ext_type type;
} optional_attrs[] = {
        {"subject", MESH_EXT_STRING},
        {"time", MESH_EXT_TIME},
        {"datacontenttype", MESH_EXT_STRING},
        {"dataschema", MESH_EXT_URI},
};

/* The length (1-4) of the valid UTF-8 character at s (len > 0 bytes),
 * or 0: overlong forms, surrogates and values past U+10FFFF are not. */
static size_t
utf8_char(const uint8_t *s, size_t len)
{
	uint8_t c = s[0];
	size_t n;
	uint32_t cp;

	if (c < 0x80) {
		return 1;
	} else if ((c & 0xe0) == 0xc0) {
		n = 1;
		cp = c & 0x1f;
	} else if ((c & 0xf0) == 0xe0) {
		n = 2;
		cp = c & 0x0f;
	} else if ((c & 0xf8) == 0xf0) {
		n = 3;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (len - 1 < n) {
		return 0;
	}
	for (size_t k = 1; k <= n; k++) {
		if ((s[k] & 0xc0) != 0x80) {
			return 0;
		}
		cp = (cp << 6) | (s[k] & 0x3f);
	}
	if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) ||
	    (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff)) {
		return 0;
	}
	return n + 1;
}

static bool
utf8_valid(const uint8_t *s, size_t len)
{
	for (size_t i = 0, n; i < len; i += n) {
		if ((n = utf8_char(s + i, len - i)) == 0) {
			return false;
		}
	}
	return true;
}

char *
mesh_base64(const void *data, size_t len)
{
	size_t size =
	        sodium_base64_encoded_len(len, sodium_base64_VARIANT_ORIGINAL);
	char *out = malloc(size);

	if (out != NULL) {
		sodium_bin2base64(out, size, data, len,
		                  sodium_base64_VARIANT_ORIGINAL);
	}
	return out;
}

void
mesh_text_clean(char *text)
{
	uint8_t *s = (uint8_t *)text;
	size_t len = strlen(text);

	for (size_t i = 0, n; i < len; i += n) {
		if ((n = utf8_char(s + i, len - i)) == 0 ||
		    (n == 1 && (s[i] < 0x20 || s[i] == 0x7f))) {
			s[i] = '?';
			n = 1;
		}
	}
}

static bool
str_valid(const char *s)
{
	return s != NULL && utf8_valid((const uint8_t *)s, strlen(s));
}

static int
optional_index(const char *name)
{
	for (size_t i = 0;
	     i < sizeof(optional_attrs) / sizeof(optional_attrs[0]); i++) {
		if (strcmp(name, optional_attrs[i].name) == 0) {
			return (int)i;
		}
	}
	return -1;
}

static bool
is_required_name(const char *name)
{
	return strcmp(name, "id") == 0 || strcmp(name, "source") == 0 ||
	       strcmp(name, "specversion") == 0 || strcmp(name, "type") == 0 ||
	       strcmp(name, "data") == 0;
}

static void
ext_clear(struct ext *x)
{
	free(x->name);
	free(x->data);
	memset(x, 0, sizeof(*x));
}

static struct ext *
ext_find(const struct mesh_event *ev, const char *name)
{
	for (size_t i = 0; i < ev->n_ext; i++) {
		if (strcmp(ev->exts[i].name, name) == 0) {
			return &ev->exts[i];
		}
	}
	return NULL;
}

static void
format_time(char *buf, size_t size, int64_t sec, int32_t nsec)
{
	struct tm tm;
	time_t t = (time_t)sec;
	size_t n;

	if (gmtime_r(&t, &tm) == NULL) {
		snprintf(buf, size, "%" PRId64, sec);
		return;
	}
	n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
	if (nsec != 0) {
		n += (size_t)snprintf(buf + n, size - n, ".%09" PRId32, nsec);
	}
	snprintf(buf + n, size - n, "Z");
}

/* Check a value against its type; the name goes into the error detail. */
static mesh_err
value_check(const char *name, const struct mesh_ext_value *v)
{
	switch (v->type) {
	case MESH_EXT_BOOL:
	case MESH_EXT_INT:
		return MESH_OK;
	case MESH_EXT_STRING:
	case MESH_EXT_URI:
	case MESH_EXT_URIREF:
		if (v->string == NULL ||
		    !utf8_valid((const uint8_t *)v->string, v->len) ||
		    memchr(v->string, '\0', v->len) != NULL) {
			return mesh_err_set(MESH_EINVAL,
			                    "attribute '%s': not a valid "
			                    "UTF-8 string",
			                    name);
		}
		if (v->type == MESH_EXT_URI && v->len == 0) {
			return mesh_err_set(MESH_EINVAL,
			                    "attribute '%s': empty URI", name);
		}
		return MESH_OK;
	case MESH_EXT_BYTES:
		if (v->bytes == NULL && v->len != 0) {
			return mesh_err_set(MESH_EINVAL,
			                    "attribute '%s': no bytes", name);
		}
		return MESH_OK;
	case MESH_EXT_TIME:
		if (v->sec < TIME_MIN_SEC || v->sec > TIME_MAX_SEC ||
		    v->nsec < 0 || v->nsec > 999999999) {
			return mesh_err_set(
			        MESH_EINVAL,
			        "attribute '%s': time out of range", name);
		}
		return MESH_OK;
	}
	return mesh_err_set(MESH_EINVAL, "attribute '%s': unknown type %d",
	                    name, (int)v->type);
}

/* Insert or replace an attribute, without checking its name. */
static mesh_err
ext_put(struct mesh_event *ev, const char *name,
        const struct mesh_ext_value *v)
{
	struct ext x = {.type = v->type};
	struct ext *slot;
	mesh_err err;

	if ((err = value_check(name, v)) != MESH_OK) {
		return err;
	}
	switch (v->type) {
	case MESH_EXT_BOOL:
		x.boolean = v->boolean;
		snprintf(x.text, sizeof(x.text), "%s",
		         v->boolean ? "true" : "false");
		break;
	case MESH_EXT_INT:
		x.integer = v->integer;
		snprintf(x.text, sizeof(x.text), "%" PRId32, v->integer);
		break;
	case MESH_EXT_TIME:
		x.sec = v->sec;
		x.nsec = v->nsec;
		/* The text is for message attributes ("time" is not one). */
		if (mesh_event_attr_is_message_attr(name)) {
			format_time(x.text, sizeof(x.text), v->sec, v->nsec);
		}
		break;
	case MESH_EXT_STRING:
	case MESH_EXT_URI:
	case MESH_EXT_URIREF:
	case MESH_EXT_BYTES: {
		const void *src = v->type == MESH_EXT_BYTES
		                          ? (const void *)v->bytes
		                          : (const void *)v->string;
		x.data = malloc(v->len + 1);
		if (x.data == NULL) {
			return mesh_err_set(MESH_ENOMEM, "attribute '%s'",
			                    name);
		}
		if (v->len > 0) {
			memcpy(x.data, src, v->len);
		}
		x.data[v->len] = '\0';
		x.len = v->len;
		break;
	}
	}
	slot = ext_find(ev, name);
	if (slot != NULL) {
		x.name = slot->name;
		slot->name = NULL;
		ext_clear(slot);
		*slot = x;
		return MESH_OK;
	}
	if (ev->n_ext == MESH_EVENT_MAX_EXTS) {
		free(x.data);
		return mesh_err_set(MESH_ETOOBIG,
		                    "attribute '%s': more than %d attributes",
		                    name, MESH_EVENT_MAX_EXTS);
	}
	if (ev->n_ext == ev->cap_ext) {
		size_t cap = ev->cap_ext ? ev->cap_ext * 2 : 8;
		struct ext *n = realloc(ev->exts, cap * sizeof(*n));
		if (n == NULL) {
			free(x.data);
			return mesh_err_set(MESH_ENOMEM, "attribute '%s'",
			                    name);
		}
		ev->exts = n;
		ev->cap_ext = cap;
	}
	x.name = strdup(name);
	if (x.name == NULL) {
		free(x.data);
		return mesh_err_set(MESH_ENOMEM, "attribute '%s'", name);
	}
	ev->exts[ev->n_ext++] = x;
	return MESH_OK;
}

static void
ext_view(const struct ext *x, struct mesh_ext_value *v)
{
	memset(v, 0, sizeof(*v));
	v->type = x->type;
	v->boolean = x->boolean;
	v->integer = x->integer;
	v->sec = x->sec;
	v->nsec = x->nsec;
	v->len = x->len;
	if (x->type == MESH_EXT_BYTES) {
		v->bytes = x->data;
	} else if (x->data != NULL) {
		v->string = (const char *)x->data;
	}
}

static mesh_err
ext_delete(struct mesh_event *ev, const char *name)
{
	struct ext *x = ext_find(ev, name);
	size_t i;

	if (x == NULL) {
		return mesh_err_set(MESH_ENOTFOUND, "attribute '%s': not set",
		                    name);
	}
	i = (size_t)(x - ev->exts);
	ext_clear(x);
	memmove(&ev->exts[i], &ev->exts[i + 1],
	        (ev->n_ext - i - 1) * sizeof(*x));
	ev->n_ext--;
	return MESH_OK;
}

static mesh_err
set_owned_string(char **field, const char *what, const char *value)
{
	char *copy;

	if (value == NULL || value[0] == '\0' || !str_valid(value)) {
		return mesh_err_set(MESH_EINVAL,
		                    "%s: must be a non-empty UTF-8 string",
		                    what);
	}
	copy = strdup(value);
	if (copy == NULL) {
		return mesh_err_set(MESH_ENOMEM, "%s", what);
	}
	free(*field);
	*field = copy;
	return MESH_OK;
}

void
mesh_uuid_format(const uint8_t bytes[16], int version, char out[37])
{
	uint8_t b[16];

	memcpy(b, bytes, sizeof(b));
	b[6] = (uint8_t)((b[6] & 0x0f) | (version << 4));
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	snprintf(out, 37,
	         "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	         "%02x%02x%02x%02x%02x%02x",
	         b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9],
	         b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* A UUID version 7 (RFC 9562): the Unix time in milliseconds, then the
 * sub-millisecond fraction in 12 bits (its method 3), then random bits.
 * Ids made later sort later, so tables keyed by event id (a service's
 * processed ids) grow at their end rather than at random pages. */
static void
uuid7(const struct timespec *now, char out[37])
{
	uint64_t ms = (uint64_t)now->tv_sec * 1000 +
	              (uint64_t)now->tv_nsec / 1000000;
	uint32_t frac = (uint32_t)((uint64_t)(now->tv_nsec % 1000000) * 4096 /
	                           1000000);
	uint8_t b[16];

	randombytes_buf(b, sizeof(b));
	for (int i = 0; i < 6; i++) {
		b[i] = (uint8_t)(ms >> (40 - 8 * i));
	}
	b[6] = (uint8_t)(frac >> 8);
	b[7] = (uint8_t)frac;
	mesh_uuid_format(b, 7, out);
}

static struct mesh_event *
event_alloc(void)
{
	if (sodium_init() < 0) {
		return NULL;
	}
	return calloc(1, sizeof(struct mesh_event));
}

mesh_err
mesh_event_new(const char *type, const char *source, struct mesh_event **out)
{
	struct mesh_event *ev;
	struct timespec now;
	char id[37];
	mesh_err err;

	assert(out != NULL);
	if ((ev = event_alloc()) == NULL) {
		return mesh_err_set(MESH_ENOMEM, "new event");
	}
	clock_gettime(CLOCK_REALTIME, &now);
	uuid7(&now, id);
	if ((err = set_owned_string(&ev->type, "type", type)) != MESH_OK ||
	    (err = set_owned_string(&ev->source, "source", source)) !=
	            MESH_OK ||
	    (err = set_owned_string(&ev->id, "id", id)) != MESH_OK ||
	    (err = set_owned_string(&ev->specversion, "specversion",
	                            MESH_EVENT_SPECVERSION)) != MESH_OK ||
	    (err = mesh_event_set_time(ev, (int64_t)now.tv_sec,
	                               (int32_t)now.tv_nsec)) != MESH_OK) {
		mesh_event_free(ev);
		return err;
	}
	*out = ev;
	return MESH_OK;
}

void
mesh_event_free(struct mesh_event *ev)
{
	if (ev == NULL) {
		return;
	}
	for (size_t i = 0; i < ev->n_ext; i++) {
		ext_clear(&ev->exts[i]);
	}
	free(ev->exts);
	free(ev->id);
	free(ev->source);
	free(ev->specversion);
	free(ev->type);
	free(ev->data);
	free(ev->type_url);
	free(ev);
}

const char *
mesh_event_id(const struct mesh_event *ev)
{
	return ev->id;
}

const char *
mesh_event_source(const struct mesh_event *ev)
{
	return ev->source;
}

const char *
mesh_event_type(const struct mesh_event *ev)
{
	return ev->type;
}

const char *
mesh_event_specversion(const struct mesh_event *ev)
{
	return ev->specversion;
}

mesh_err
mesh_event_set_id(struct mesh_event *ev, const char *id)
{
	return set_owned_string(&ev->id, "id", id);
}

mesh_err
mesh_event_set_source(struct mesh_event *ev, const char *source)
{
	return set_owned_string(&ev->source, "source", source);
}

mesh_err
mesh_event_set_type(struct mesh_event *ev, const char *type)
{
	return set_owned_string(&ev->type, "type", type);
}

static const char *
string_attr(const struct mesh_event *ev, const char *name)
{
	const struct ext *x = ext_find(ev, name);

	return x != NULL ? (const char *)x->data : NULL;
}

static mesh_err
set_string_attr(struct mesh_event *ev, const char *name, mesh_ext_type type,
                const char *value)
{
	struct mesh_ext_value v = {.type = type, .string = value};

	if (value == NULL) {
		return ext_find(ev, name) ? ext_delete(ev, name) : MESH_OK;
	}
	v.len = strlen(value);
	return ext_put(ev, name, &v);
}

const char *
mesh_event_subject(const struct mesh_event *ev)
{
	return string_attr(ev, "subject");
}

mesh_err
mesh_event_set_subject(struct mesh_event *ev, const char *subject)
{
	return set_string_attr(ev, "subject", MESH_EXT_STRING, subject);
}

const char *
mesh_event_datacontenttype(const struct mesh_event *ev)
{
	return string_attr(ev, "datacontenttype");
}

mesh_err
mesh_event_set_datacontenttype(struct mesh_event *ev, const char *ct)
{
	return set_string_attr(ev, "datacontenttype", MESH_EXT_STRING, ct);
}

const char *
mesh_event_dataschema(const struct mesh_event *ev)
{
	return string_attr(ev, "dataschema");
}

mesh_err
mesh_event_set_dataschema(struct mesh_event *ev, const char *uri)
{
	return set_string_attr(ev, "dataschema", MESH_EXT_URI, uri);
}

bool
mesh_event_time(const struct mesh_event *ev, int64_t *sec, int32_t *nsec)
{
	const struct ext *x = ext_find(ev, "time");

	if (x == NULL) {
		return false;
	}
	if (sec != NULL) {
		*sec = x->sec;
	}
	if (nsec != NULL) {
		*nsec = x->nsec;
	}
	return true;
}

mesh_err
mesh_event_set_time(struct mesh_event *ev, int64_t sec, int32_t nsec)
{
	struct mesh_ext_value v = {
	        .type = MESH_EXT_TIME, .sec = sec, .nsec = nsec};

	return ext_put(ev, "time", &v);
}

static mesh_err
ext_name_check(const char *name)
{
	size_t len = name != NULL ? strlen(name) : 0;

	if (len == 0 || len > MESH_EVENT_MAX_NAME ||
	    !utf8_valid((const uint8_t *)name, len)) {
		return mesh_err_set(MESH_EINVAL,
		                    "attribute name '%.64s': must be 1-%d "
		                    "characters of UTF-8",
		                    name ? name : "", MESH_EVENT_MAX_NAME);
	}
	return MESH_OK;
}

mesh_err
mesh_event_ext_set(struct mesh_event *ev, const char *name,
                   const struct mesh_ext_value *v)
{
	mesh_err err;

	if ((err = ext_name_check(name)) != MESH_OK) {
		return err;
	}
	if (is_required_name(name) || optional_index(name) >= 0) {
		return mesh_err_set(MESH_EINVAL,
		                    "attribute '%s': is a CloudEvents context "
		                    "attribute; use its own setter",
		                    name);
	}
	return ext_put(ev, name, v);
}

mesh_err
mesh_event_ext_get(const struct mesh_event *ev, const char *name,
                   struct mesh_ext_value *v)
{
	const struct ext *x = ext_find(ev, name);

	if (x == NULL) {
		return mesh_err_set(MESH_ENOTFOUND, "attribute '%s': not set",
		                    name);
	}
	ext_view(x, v);
	return MESH_OK;
}

mesh_err
mesh_event_ext_remove(struct mesh_event *ev, const char *name)
{
	return ext_delete(ev, name);
}

size_t
mesh_event_ext_count(const struct mesh_event *ev)
{
	return ev->n_ext;
}

const char *
mesh_event_ext_at(const struct mesh_event *ev, size_t i,
                  struct mesh_ext_value *v)
{
	assert(i < ev->n_ext);
	if (v != NULL) {
		ext_view(&ev->exts[i], v);
	}
	return ev->exts[i].name;
}

/* ---- message attributes ---------------------------------------------- */

bool
mesh_event_attr_is_message_attr(const char *name)
{
	/* Every reserved name begins with one of these: most names are
	 * decided by their first letter (filters ask on every lookup). */
	if (strchr("dimst", name[0]) == NULL || name[0] == '\0') {
		return true;
	}
	return optional_index(name) < 0 && !is_required_name(name) &&
	       strncmp(name, "mesh", 4) != 0 &&
	       strcmp(name, "traceparent") != 0 &&
	       strcmp(name, "tracestate") != 0;
}

static mesh_err
attr_name_check(const char *name)
{
	size_t len = name != NULL ? strlen(name) : 0;

	if (len == 0 || len > 256) {
		return mesh_err_set(MESH_EINVAL,
		                    "message attribute name '%.64s': must be "
		                    "1-256 characters",
		                    name ? name : "");
	}
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '-' ||
		      c == '.')) {
			return mesh_err_set(MESH_EINVAL,
			                    "message attribute name '%s': "
			                    "may contain only A-Z, a-z, 0-9, "
			                    "'_', '-' and '.'",
			                    name);
		}
	}
	if (name[0] == '.' || name[len - 1] == '.' ||
	    strstr(name, "..") != NULL) {
		return mesh_err_set(MESH_EINVAL,
		                    "message attribute name '%s': must not "
		                    "start or end with '.' or hold '..'",
		                    name);
	}
	if (strncasecmp(name, "AWS.", 4) == 0 ||
	    strncasecmp(name, "Amazon.", 7) == 0) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "message attribute name '%s': the prefixes "
		        "'AWS.' and 'Amazon.' are reserved",
		        name);
	}
	if (!mesh_event_attr_is_message_attr(name)) {
		return mesh_err_set(MESH_EINVAL,
		                    "message attribute name '%s': is reserved "
		                    "for the envelope",
		                    name);
	}
	return MESH_OK;
}

/* The base of a data type ("Number" of "Number.float"), or NULL. */
static const char *
attr_base_type(const char *data_type, size_t *base_len)
{
	static const char *const bases[] = {"String.Array", "String", "Number",
	                                    "Binary"};

	for (size_t i = 0; i < sizeof(bases) / sizeof(bases[0]); i++) {
		size_t n = strlen(bases[i]);
		if (strncmp(data_type, bases[i], n) == 0 &&
		    (data_type[n] == '\0' ||
		     (data_type[n] == '.' && data_type[n + 1] != '\0'))) {
			*base_len = n;
			return bases[i];
		}
	}
	return NULL;
}

static bool
number_valid(const char *s, size_t len)
{
	char buf[64];
	char *end;
	double d;

	if (len == 0 || len >= sizeof(buf)) {
		return false;
	}
	memcpy(buf, s, len);
	buf[len] = '\0';
	/* strtod takes hex, inf and nan; a message attribute does not. */
	for (size_t i = 0; i < len; i++) {
		if (strchr("0123456789+-.eE", buf[i]) == NULL) {
			return false;
		}
	}
	errno = 0;
	d = strtod(buf, &end);
	return *end == '\0' && errno == 0 && isfinite(d);
}

static bool
string_array_valid(const char *s, size_t len)
{
	json_t *j = json_loadb(s, len, JSON_DECODE_ANY, NULL);
	bool ok = j != NULL && json_is_array(j);

	json_decref(j);
	return ok;
}

/* The recorded type of `name` in "a=Number;b=String.Array", or NULL. */
static const char *
recorded_type(const struct mesh_event *ev, const char *name, size_t *len)
{
	const char *map = string_attr(ev, ATTR_TYPES_EXT);
	size_t nlen = strlen(name);

	for (const char *p = map; p != NULL && *p != '\0';) {
		const char *end = strchr(p, ';');
		const char *eq = strchr(p, '=');
		if (end == NULL) {
			end = p + strlen(p);
		}
		if (eq != NULL && eq < end && (size_t)(eq - p) == nlen &&
		    strncmp(p, name, nlen) == 0) {
			*len = (size_t)(end - eq - 1);
			return eq + 1;
		}
		p = *end ? end + 1 : end;
	}
	return NULL;
}

/* Rewrite the type record without `name`, then with name=type if given. */
static mesh_err
record_type(struct mesh_event *ev, const char *name, const char *type)
{
	const char *map = string_attr(ev, ATTR_TYPES_EXT);
	size_t nlen = strlen(name);
	size_t cap =
	        (map ? strlen(map) : 0) + nlen + (type ? strlen(type) : 0) + 3;
	char *out = malloc(cap);
	size_t n = 0;
	mesh_err err;

	if (out == NULL) {
		return mesh_err_set(MESH_ENOMEM, "message attribute '%s'",
		                    name);
	}
	for (const char *p = map; p != NULL && *p != '\0';) {
		const char *end = strchr(p, ';');
		const char *eq = strchr(p, '=');
		if (end == NULL) {
			end = p + strlen(p);
		}
		if (!(eq != NULL && eq < end && (size_t)(eq - p) == nlen &&
		      strncmp(p, name, nlen) == 0)) {
			if (n > 0) {
				out[n++] = ';';
			}
			memcpy(out + n, p, (size_t)(end - p));
			n += (size_t)(end - p);
		}
		p = *end ? end + 1 : end;
	}
	if (type != NULL) {
		n += (size_t)snprintf(out + n, cap - n, "%s%s=%s",
		                      n > 0 ? ";" : "", name, type);
	}
	out[n] = '\0';
	err = n > 0 ? ext_put(ev, ATTR_TYPES_EXT,
	                      &(struct mesh_ext_value){.type = MESH_EXT_STRING,
	                                               .string = out,
	                                               .len = n})
	            : (map != NULL ? ext_delete(ev, ATTR_TYPES_EXT) : MESH_OK);
	free(out);
	return err;
}

mesh_err
mesh_event_attr_set(struct mesh_event *ev, const char *name,
                    const char *data_type, const void *value, size_t len)
{
	struct mesh_ext_value v = {.len = len};
	const char *base;
	size_t base_len = 0;
	bool plain;
	mesh_err err;

	if ((err = attr_name_check(name)) != MESH_OK) {
		return err;
	}
	base = data_type != NULL ? attr_base_type(data_type, &base_len) : NULL;
	if (base == NULL || strlen(data_type) > 256) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "message attribute '%s': data type '%.64s' "
		        "is not String, Number, String.Array or "
		        "Binary (optionally with a .suffix)",
		        name, data_type ? data_type : "");
	}
	if (value == NULL && len != 0) {
		return mesh_err_set(MESH_EINVAL,
		                    "message attribute '%s': no value", name);
	}
	plain = data_type[base_len] == '\0';
	if (strcmp(base, "Binary") == 0) {
		v.type = MESH_EXT_BYTES;
		v.bytes = value;
	} else {
		v.type = MESH_EXT_STRING;
		v.string = value;
		if (len == 0) {
			return mesh_err_set(MESH_EINVAL,
			                    "message attribute '%s': empty %s "
			                    "value",
			                    name, base);
		}
		if (strcmp(base, "Number") == 0 && !number_valid(value, len)) {
			return mesh_err_set(
			        MESH_EINVAL,
			        "message attribute '%s': '%.*s' is "
			        "not a number",
			        name, (int)(len > 64 ? 64 : len),
			        (const char *)value);
		}
		if (strcmp(base, "String.Array") == 0 &&
		    !string_array_valid(value, len)) {
			return mesh_err_set(MESH_EINVAL,
			                    "message attribute '%s': "
			                    "String.Array value is not a JSON "
			                    "array",
			                    name);
		}
	}
	if ((err = ext_put(ev, name, &v)) != MESH_OK) {
		return err;
	}
	/* String and Binary read back as what they are; others are noted. */
	err = record_type(ev, name,
	                  plain && (strcmp(base, "String") == 0 ||
	                            strcmp(base, "Binary") == 0)
	                          ? NULL
	                          : data_type);
	if (err != MESH_OK) {
		ext_delete(ev, name);
	}
	return err;
}

bool
mesh__event_attr_peek(const struct mesh_event *ev, const char *name,
                      const char **data_type, size_t *type_len,
                      const void **value, size_t *len)
{
	const struct ext *x = ext_find(ev, name);
	const char *rec;
	size_t rec_len = 0;

	if (x == NULL || !mesh_event_attr_is_message_attr(name)) {
		return false;
	}
	rec = recorded_type(ev, name, &rec_len);
	if (rec != NULL) {
		*data_type = rec;
	} else if (x->type == MESH_EXT_BYTES) {
		*data_type = "Binary";
		rec_len = 6;
	} else if (x->type == MESH_EXT_INT) {
		*data_type = "Number";
		rec_len = 6;
	} else {
		*data_type = "String";
		rec_len = 6;
	}
	*type_len = rec_len;
	switch (x->type) {
	case MESH_EXT_BOOL:
	case MESH_EXT_INT:
	case MESH_EXT_TIME:
		*value = x->text;
		*len = strlen(x->text);
		break;
	default:
		*value = x->data;
		*len = x->len;
		break;
	}
	return true;
}

mesh_err
mesh_event_attr_get(const struct mesh_event *ev, const char *name,
                    const char **data_type, const void **value, size_t *len)
{
	static _Thread_local char type_buf[260];
	const char *type;
	size_t type_len;

	if (!mesh__event_attr_peek(ev, name, &type, &type_len, value, len)) {
		return mesh_err_set(MESH_ENOTFOUND,
		                    "message attribute '%s': not set", name);
	}
	assert(type_len < sizeof(type_buf)); /* set refuses longer types */
	memcpy(type_buf, type, type_len);
	type_buf[type_len] = '\0';
	*data_type = type_buf;
	return MESH_OK;
}

/* ---- payload ------------------------------------------------------------ */

static mesh_err
set_data(struct mesh_event *ev, mesh_data_kind kind, const void *data,
         size_t len, const char *type_url)
{
	uint8_t *copy;
	char *url = NULL;

	if (data == NULL && len != 0) {
		return mesh_err_set(MESH_EINVAL, "data: no bytes");
	}
	copy = malloc(len + 1);
	if (copy == NULL ||
	    (type_url != NULL && (url = strdup(type_url)) == NULL)) {
		free(copy);
		return mesh_err_set(MESH_ENOMEM, "data of %zu bytes", len);
	}
	if (len > 0) {
		memcpy(copy, data, len);
	}
	copy[len] = '\0';
	free(ev->data);
	free(ev->type_url);
	ev->data = copy;
	ev->data_len = len;
	ev->type_url = url;
	ev->data_kind = kind;
	return MESH_OK;
}

mesh_err
mesh_event_set_binary(struct mesh_event *ev, const void *data, size_t len)
{
	return set_data(ev, MESH_DATA_BINARY, data, len, NULL);
}

mesh_err
mesh_event_set_text(struct mesh_event *ev, const char *text, size_t len)
{
	if (text == NULL || !utf8_valid((const uint8_t *)text, len)) {
		return mesh_err_set(MESH_EINVAL, "text data: not valid UTF-8");
	}
	return set_data(ev, MESH_DATA_TEXT, text, len, NULL);
}

mesh_err
mesh_event_set_proto(struct mesh_event *ev, const char *message_name,
                     const void *data, size_t len)
{
	char url[512];
	mesh_err err;

	if (message_name == NULL || message_name[0] == '\0' ||
	    !str_valid(message_name) ||
	    strlen(message_name) + sizeof(MESH_EVENT_TYPE_URL_PREFIX) >
	            sizeof(url)) {
		return mesh_err_set(MESH_EINVAL,
		                    "protobuf data: message name '%.64s' is "
		                    "empty, too long or not UTF-8",
		                    message_name ? message_name : "");
	}
	snprintf(url, sizeof(url), "%s%s", MESH_EVENT_TYPE_URL_PREFIX,
	         message_name);
	if ((err = set_data(ev, MESH_DATA_PROTO, data, len, url)) != MESH_OK) {
		return err;
	}
	return mesh_event_set_datacontenttype(ev,
	                                      MESH_EVENT_PROTO_CONTENT_TYPE);
}

mesh_err
mesh_event_set_message(struct mesh_event *ev, const ProtobufCMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf = malloc(len ? len : 1);
	mesh_err err;

	if (buf == NULL) {
		return mesh_err_set(MESH_ENOMEM, "packing %s",
		                    msg->descriptor->name);
	}
	protobuf_c_message_pack(msg, buf);
	err = mesh_event_set_proto(ev, msg->descriptor->name, buf, len);
	free(buf);
	return err;
}

mesh_data_kind
mesh_event_data(const struct mesh_event *ev, const void **data, size_t *len,
                const char **type_url)
{
	if (data != NULL) {
		*data = ev->data;
	}
	if (len != NULL) {
		*len = ev->data_len;
	}
	if (type_url != NULL) {
		*type_url = ev->type_url;
	}
	return ev->data_kind;
}

mesh_err
mesh_event_unpack_message(const struct mesh_event *ev,
                          const ProtobufCMessageDescriptor *desc,
                          ProtobufCAllocator *alloc, ProtobufCMessage **out)
{
	const char *slash;
	ProtobufCMessage *m;

	if (ev->data_kind != MESH_DATA_PROTO) {
		return mesh_err_set(MESH_EINVAL,
		                    "event %s: payload is not a protobuf "
		                    "message",
		                    ev->id);
	}
	slash = strrchr(ev->type_url, '/');
	slash = slash != NULL ? slash + 1 : ev->type_url;
	if (strcmp(slash, desc->name) != 0) {
		return mesh_err_set(MESH_EINVAL,
		                    "event %s: payload is %s, not %s", ev->id,
		                    slash, desc->name);
	}
	m = protobuf_c_message_unpack(desc, alloc, ev->data_len, ev->data);
	if (m == NULL) {
		return mesh_err_set(MESH_EPARSE,
		                    "event %s: malformed %s payload", ev->id,
		                    desc->name);
	}
	*out = m;
	return MESH_OK;
}

/* ---- codec -------------------------------------------------------------- */

mesh_err
mesh_event_pack(const struct mesh_event *ev, uint8_t **buf, size_t *len)
{
	pb_event pe;
	pb_any any;
	size_t n = ev->n_ext;
	pb_entry *entries = calloc(n ? n : 1, sizeof(*entries));
	pb_entry **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
	pb_value *values = calloc(n ? n : 1, sizeof(*values));
	pb_time *times = calloc(n ? n : 1, sizeof(*times));
	uint8_t *out = NULL;
	size_t size;
	mesh_err err = MESH_OK;

	if (entries == NULL || ptrs == NULL || values == NULL ||
	    times == NULL) {
		err = mesh_err_set(MESH_ENOMEM, "packing event %s", ev->id);
		goto done;
	}
	/* The generated INIT macros lack braces that -Wextra wants. */
	io__cloudevents__v1__cloud_event__init(&pe);
	google__protobuf__any__init(&any);
	pe.id = ev->id;
	pe.source = ev->source;
	pe.spec_version = ev->specversion;
	pe.type = ev->type;
	for (size_t i = 0; i < n; i++) {
		const struct ext *x = &ev->exts[i];
		pb_value *v = &values[i];

		io__cloudevents__v1__cloud_event__attributes_entry__init(
		        &entries[i]);
		io__cloudevents__v1__cloud_event__cloud_event_attribute_value__init(
		        v);
		entries[i].key = x->name;
		entries[i].value = v;
		ptrs[i] = &entries[i];
		switch (x->type) {
		case MESH_EXT_BOOL:
			v->attr_case =
			        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_BOOLEAN;
			v->ce_boolean = x->boolean;
			break;
		case MESH_EXT_INT:
			v->attr_case =
			        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_INTEGER;
			v->ce_integer = x->integer;
			break;
		case MESH_EXT_STRING:
			v->attr_case =
			        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_STRING;
			v->ce_string = (char *)x->data;
			break;
		case MESH_EXT_URI:
			v->attr_case =
			        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_URI;
			v->ce_uri = (char *)x->data;
			break;
		case MESH_EXT_URIREF:
			v->attr_case =
			        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_URI_REF;
			v->ce_uri_ref = (char *)x->data;
			break;
		case MESH_EXT_BYTES:
			v->attr_case =
			        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_BYTES;
			v->ce_bytes.data = x->data;
			v->ce_bytes.len = x->len;
			break;
		case MESH_EXT_TIME:
			google__protobuf__timestamp__init(&times[i]);
			times[i].seconds = x->sec;
			times[i].nanos = x->nsec;
			v->attr_case =
			        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_TIMESTAMP;
			v->ce_timestamp = &times[i];
			break;
		}
	}
	pe.n_attributes = n;
	pe.attributes = ptrs;
	switch (ev->data_kind) {
	case MESH_DATA_NONE:
		break;
	case MESH_DATA_BINARY:
		pe.data_case =
		        IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_BINARY_DATA;
		pe.binary_data.data = ev->data;
		pe.binary_data.len = ev->data_len;
		break;
	case MESH_DATA_TEXT:
		pe.data_case =
		        IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_TEXT_DATA;
		pe.text_data = (char *)ev->data;
		break;
	case MESH_DATA_PROTO:
		any.type_url = ev->type_url;
		any.value.data = ev->data;
		any.value.len = ev->data_len;
		pe.data_case =
		        IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_PROTO_DATA;
		pe.proto_data = &any;
		break;
	}
	size = io__cloudevents__v1__cloud_event__get_packed_size(&pe);
	out = malloc(size ? size : 1);
	if (out == NULL) {
		err = mesh_err_set(MESH_ENOMEM, "packing event %s (%zu bytes)",
		                   ev->id, size);
		goto done;
	}
	io__cloudevents__v1__cloud_event__pack(&pe, out);
	*buf = out;
	*len = size;
done:
	free(entries);
	free(ptrs);
	free(values);
	free(times);
	return err;
}

/* Turn one protobuf attribute into ours, checking what the format says. */
static mesh_err
import_attr(struct mesh_event *ev, const pb_entry *e)
{
	struct mesh_ext_value v = {0};
	const pb_value *pv = e->value;
	int opt;
	mesh_err err;

	if (e->key == NULL || (err = ext_name_check(e->key)) != MESH_OK) {
		return MESH_EPARSE;
	}
	if (is_required_name(e->key)) {
		return mesh_err_set(MESH_EPARSE,
		                    "attribute '%s': a required attribute in "
		                    "the attribute map",
		                    e->key);
	}
	if (pv == NULL) {
		return mesh_err_set(MESH_EPARSE, "attribute '%s': no value",
		                    e->key);
	}
	switch (pv->attr_case) {
	case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_BOOLEAN:
		v.type = MESH_EXT_BOOL;
		v.boolean = pv->ce_boolean;
		break;
	case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_INTEGER:
		v.type = MESH_EXT_INT;
		v.integer = pv->ce_integer;
		break;
	case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_STRING:
		v.type = MESH_EXT_STRING;
		v.string = pv->ce_string;
		break;
	case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_URI:
		v.type = MESH_EXT_URI;
		v.string = pv->ce_uri;
		break;
	case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_URI_REF:
		v.type = MESH_EXT_URIREF;
		v.string = pv->ce_uri_ref;
		break;
	case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_BYTES:
		v.type = MESH_EXT_BYTES;
		v.bytes = pv->ce_bytes.data;
		v.len = pv->ce_bytes.len;
		break;
	case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_TIMESTAMP:
		if (pv->ce_timestamp == NULL) {
			return mesh_err_set(MESH_EPARSE,
			                    "attribute '%s': empty timestamp",
			                    e->key);
		}
		v.type = MESH_EXT_TIME;
		v.sec = pv->ce_timestamp->seconds;
		v.nsec = pv->ce_timestamp->nanos;
		break;
	default:
		return mesh_err_set(MESH_EPARSE, "attribute '%s': no value",
		                    e->key);
	}
	if (v.string != NULL) {
		v.len = strlen(v.string);
	}
	opt = optional_index(e->key);
	if (opt >= 0 && optional_attrs[opt].type != v.type) {
		return mesh_err_set(MESH_EPARSE,
		                    "attribute '%s': wrong type for a "
		                    "CloudEvents context attribute",
		                    e->key);
	}
	err = ext_put(ev, e->key, &v);
	return err == MESH_EINVAL ? MESH_EPARSE : err;
}

/* Each thread's arena for the unpacked envelope, which lives only until
 * its parts are copied out. */
static pthread_key_t parse_key;
static pthread_once_t parse_once = PTHREAD_ONCE_INIT;

static void
parse_arena_free(void *p)
{
	mesh_arena_fini(p);
	free(p);
}

static void
parse_key_make(void)
{
	pthread_key_create(&parse_key, parse_arena_free);
}

static struct mesh_arena *
parse_arena(void)
{
	struct mesh_arena *a;

	pthread_once(&parse_once, parse_key_make);
	if ((a = pthread_getspecific(parse_key)) == NULL &&
	    (a = malloc(sizeof(*a))) != NULL) {
		mesh_arena_init(a);
		if (pthread_setspecific(parse_key, a) != 0) {
			free(a);
			a = NULL;
		}
	}
	return a;
}

/* mesh_event_parse, the envelope unpacked with allocator pa. */
static mesh_err
parse_with(const void *buf, size_t len, size_t max_size,
           ProtobufCAllocator *pa, struct mesh_event **out)
{
	pb_event *pe;
	struct mesh_event *ev;
	mesh_err err = MESH_OK;

	assert(out != NULL);
	if (max_size == 0) {
		max_size = MESH_EVENT_MAX_SIZE;
	}
	if (len > max_size) {
		return mesh_err_set(
		        MESH_ETOOBIG,
		        "event of %zu bytes: over the limit of %zu", len,
		        max_size);
	}
	if (buf == NULL && len != 0) {
		return mesh_err_set(MESH_EINVAL, "event: no buffer");
	}
	pe = io__cloudevents__v1__cloud_event__unpack(pa, len, buf);
	if (pe == NULL) {
		return mesh_err_set(MESH_EPARSE,
		                    "event of %zu bytes: not a CloudEvents "
		                    "protobuf message",
		                    len);
	}
	if ((ev = event_alloc()) == NULL) {
		io__cloudevents__v1__cloud_event__free_unpacked(pe, pa);
		return mesh_err_set(MESH_ENOMEM, "parsing event");
	}
	if (set_owned_string(&ev->id, "id", pe->id) != MESH_OK ||
	    set_owned_string(&ev->source, "source", pe->source) != MESH_OK ||
	    set_owned_string(&ev->type, "type", pe->type) != MESH_OK ||
	    set_owned_string(&ev->specversion, "specversion",
	                     pe->spec_version) != MESH_OK) {
		err = MESH_EPARSE;
		goto fail;
	}
	if (strcmp(ev->specversion, MESH_EVENT_SPECVERSION) != 0) {
		err = mesh_err_set(
		        MESH_EPARSE, "event %s: specversion '%.16s' is not %s",
		        ev->id, ev->specversion, MESH_EVENT_SPECVERSION);
		goto fail;
	}
	if (pe->n_attributes > MESH_EVENT_MAX_EXTS) {
		err = mesh_err_set(
		        MESH_EPARSE, "event %s: %zu attributes, more than %d",
		        ev->id, pe->n_attributes, MESH_EVENT_MAX_EXTS);
		goto fail;
	}
	for (size_t i = 0; i < pe->n_attributes; i++) {
		if ((err = import_attr(ev, pe->attributes[i])) != MESH_OK) {
			goto fail;
		}
	}
	switch (pe->data_case) {
	case IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_BINARY_DATA:
		err = mesh_event_set_binary(ev, pe->binary_data.data,
		                            pe->binary_data.len);
		break;
	case IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_TEXT_DATA:
		err = mesh_event_set_text(ev, pe->text_data,
		                          strlen(pe->text_data));
		break;
	case IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_PROTO_DATA:
		if (pe->proto_data == NULL ||
		    pe->proto_data->type_url == NULL ||
		    pe->proto_data->type_url[0] == '\0' ||
		    !str_valid(pe->proto_data->type_url)) {
			err = mesh_err_set(MESH_EPARSE,
			                   "event %s: protobuf data without a "
			                   "type URL",
			                   ev->id);
			break;
		}
		err = set_data(ev, MESH_DATA_PROTO, pe->proto_data->value.data,
		               pe->proto_data->value.len,
		               pe->proto_data->type_url);
		break;
	default:
		break;
	}
	if (err != MESH_OK) {
		err = err == MESH_EINVAL ? MESH_EPARSE : err;
		goto fail;
	}
	io__cloudevents__v1__cloud_event__free_unpacked(pe, pa);
	*out = ev;
	return MESH_OK;
fail:
	io__cloudevents__v1__cloud_event__free_unpacked(pe, pa);
	mesh_event_free(ev);
	return err;
}

mesh_err
mesh_event_parse(const void *buf, size_t len, size_t max_size,
                 struct mesh_event **out)
{
	struct mesh_arena *arena = parse_arena();
	mesh_err err = parse_with(buf, len, max_size,
	                          arena != NULL ? &arena->pb : NULL, out);

	if (arena != NULL) {
		mesh_arena_reset(arena);
	}
	return err;
}

mesh_err
mesh_event_dup(const struct mesh_event *ev, struct mesh_event **out)
{
	uint8_t *buf;
	size_t len;
	mesh_err err;

	if ((err = mesh_event_pack(ev, &buf, &len)) != MESH_OK) {
		return err;
	}
	err = mesh_event_parse(buf, len, SIZE_MAX, out);
	free(buf);
	return err;
}

mesh_err
mesh_event_attr_set_spec(struct mesh_event *ev, const char *spec)
{
	const char *eq = strchr(spec, '=');
	const char *colon = eq ? strchr(eq + 1, ':') : NULL;
	char name[260], type[260];
	mesh_err err;

	if (eq == NULL || colon == NULL || eq == spec ||
	    (size_t)(eq - spec) >= sizeof(name) ||
	    (size_t)(colon - eq - 1) >= sizeof(type)) {
		return mesh_err_set(MESH_EINVAL,
		                    "attribute '%.300s': want NAME=TYPE:VALUE",
		                    spec);
	}
	snprintf(name, sizeof(name), "%.*s", (int)(eq - spec), spec);
	snprintf(type, sizeof(type), "%.*s", (int)(colon - eq - 1), eq + 1);
	if (strncmp(type, "Binary", 6) == 0) {
		size_t cap = strlen(colon + 1) + 1, len = 0;
		unsigned char *bin = malloc(cap);
		if (bin == NULL) {
			return mesh_err_set(MESH_ENOMEM, "attribute '%s'",
			                    name);
		}
		if (sodium_base642bin(bin, cap, colon + 1, strlen(colon + 1),
		                      NULL, &len, NULL,
		                      sodium_base64_VARIANT_ORIGINAL) != 0) {
			free(bin);
			return mesh_err_set(
			        MESH_EINVAL,
			        "attribute '%s': a Binary value is "
			        "base64",
			        name);
		}
		err = mesh_event_attr_set(ev, name, type, bin, len);
		free(bin);
		return err;
	}
	return mesh_event_attr_set(ev, name, type, colon + 1,
	                           strlen(colon + 1));
}
