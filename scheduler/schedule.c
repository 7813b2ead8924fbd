/* schedule.c: schedule definitions, their checks, JSON, and firings. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "mesh/clock.h"
#include "mesh/err.h"
#include "schedule.h"
#include "mesh/event.h"
#include "mesh/jscan.h"
#include "mesh/pbjson.h"
#include "mesh/queue.h"
#include "mesh/topic.h"

static const char *const missed_names[] = {"latest", "all", "skip"};

void
mesh_schedule_init(struct mesh_schedule *s)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->tz, sizeof(s->tz), "UTC");
	snprintf(s->type, sizeof(s->type), "evmesh.scheduled");
	s->enabled = true;
	s->retry_max = 185;
	s->max_age_s = 86400;
}

void
mesh_schedule_fini(struct mesh_schedule *s)
{
	if (s != NULL) {
		free(s->body);
		free(s->attrs);
		s->body = NULL;
		s->attrs = NULL;
	}
}

mesh_err
mesh_schedule_set_attrs(const struct mesh_schedule *s, struct mesh_event *ev)
{
	const char *p = s->attrs;
	mesh_err err = MESH_OK;

	while (p != NULL && *p != '\0' && err == MESH_OK) {
		size_t n = strcspn(p, "\n");
		char *spec = strndup(p, n);
		err = spec == NULL ? mesh_err_set(MESH_ENOMEM, "schedule '%s'",
		                                  s->name)
		                   : mesh_event_attr_set_spec(ev, spec);
		free(spec);
		p += n + (p[n] == '\n');
	}
	return err;
}

/* The attributes must apply to an event, and be few enough. */
static mesh_err
attrs_check(const struct mesh_schedule *s)
{
	struct mesh_event *ev = NULL;
	size_t n = 0;
	mesh_err err;

	for (const char *p = s->attrs; p != NULL && *p; p++) {
		n += *p == '\n';
	}
	n += s->attrs != NULL && s->attrs[0] != '\0';
	if (n > MESH_SCHEDULE_ATTRS_MAX) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "schedule '%s': %zu attributes, more than %d "
		        "(with schedule and scheduledTime, SNS's 10)",
		        s->name, n, MESH_SCHEDULE_ATTRS_MAX);
	}
	if ((err = mesh_event_new("check", "check", &ev)) == MESH_OK) {
		err = mesh_schedule_set_attrs(s, ev);
	}
	mesh_event_free(ev);
	if (err != MESH_OK) {
		char why[512];
		snprintf(why, sizeof(why), "%s", mesh_errdetail());
		return mesh_err_set(err, "schedule '%s': %s", s->name, why);
	}
	return MESH_OK;
}

/* A JSON body must encode as its type once the placeholders are filled
 * in (with a sample time), so that no firing fails on it. */
static mesh_err
json_body_check(const struct mesh_schedule *s)
{
	struct mesh_event *ev = NULL;
	char *body = mesh_schedule_render(s, 1767225600, 1);
	mesh_err err;

	if (body == NULL) {
		return mesh_err_set(MESH_ENOMEM, "schedule '%s'", s->name);
	}
	if ((err = mesh_event_new(s->type, "check", &ev)) == MESH_OK) {
		err = mesh_pbjson_set_event_data(ev, s->type, body,
		                                 strlen(body));
	}
	mesh_event_free(ev);
	free(body);
	if (err != MESH_OK) {
		char why[512];
		snprintf(why, sizeof(why), "%s", mesh_errdetail());
		return mesh_err_set(err == MESH_ENOMEM ? err : MESH_EINVAL,
		                    "schedule '%s': the JSON body: %s",
		                    s->name, why);
	}
	return MESH_OK;
}

mesh_err
mesh_schedule_check(struct mesh_schedule *s)
{
	size_t n = strlen(s->name);
	const struct mesh_tz *tz = NULL;
	mesh_err err;

	if (n == 0 || strspn(s->name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKL"
	                              "MNOPQRSTUVWXYZ0123456789_.-") != n) {
		return mesh_err_set(MESH_EINVAL,
		                    "schedule name '%s': must be 1-%d of A-Z, "
		                    "a-z, 0-9, '_', '.' and '-'",
		                    s->name, MESH_SCHEDULE_NAME_MAX);
	}
	if ((err = mesh_sched_parse(s->expression, &s->expr)) != MESH_OK) {
		return err;
	}
	if ((err = mesh_tz_shared(s->tz, &tz)) != MESH_OK) {
		return mesh_sched_zone_err(err);
	}
	if (!((strncmp(s->target, "queue:", 6) == 0 &&
	       mesh_queue_name_check(s->target + 6, NULL) == MESH_OK) ||
	      (strncmp(s->target, "topic:", 6) == 0 &&
	       mesh_topic_name_check(s->target + 6, NULL) == MESH_OK))) {
		return mesh_err_set(MESH_EINVAL,
		                    "schedule '%s': target '%s' is not "
		                    "queue:NAME or topic:NAME",
		                    s->name, s->target);
	}
	if (s->type[0] == '\0') {
		return mesh_err_set(MESH_EINVAL,
		                    "schedule '%s': empty event "
		                    "type",
		                    s->name);
	}
	if (s->body != NULL && strlen(s->body) > MESH_SCHEDULE_BODY_MAX) {
		return mesh_err_set(
		        MESH_ETOOBIG,
		        "schedule '%s': a body of %zu bytes is over "
		        "%d",
		        s->name, strlen(s->body), MESH_SCHEDULE_BODY_MAX);
	}
	if (s->json_body && (err = json_body_check(s)) != MESH_OK) {
		return err;
	}
	if (s->attrs != NULL && (err = attrs_check(s)) != MESH_OK) {
		return err;
	}
	if (s->window_s != 0 && (s->window_s < 60 || s->window_s > 86400)) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "schedule '%s': a flexible window is 1-1440 "
		        "minutes, not %lld s",
		        s->name, (long long)s->window_s);
	}
	if (s->retry_max < 0 || s->retry_max > 185) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "schedule '%s': maximum retry attempts %lld "
		        "is out of range 0-185",
		        s->name, (long long)s->retry_max);
	}
	if (s->max_age_s < 60 || s->max_age_s > 86400) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "schedule '%s': maximum event age %lld s is "
		        "out of range 60-86400",
		        s->name, (long long)s->max_age_s);
	}
	if (s->dlq[0] != '\0' && strncmp(s->dlq, "queue:", 6) == 0) {
		memmove(s->dlq, s->dlq + 6, strlen(s->dlq + 6) + 1);
	}
	if (s->start != 0 && s->end != 0 && s->end <= s->start) {
		return mesh_err_set(MESH_EINVAL,
		                    "schedule '%s': the end is not after the "
		                    "start",
		                    s->name);
	}
	return MESH_OK;
}

mesh_err
mesh_schedule_to_json(const struct mesh_schedule *s, char **out)
{
	json_t *j = json_pack(
	        "{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:s, "
	        "s:b, s:b, s:I, s:I, s:I, s:I, s:s}",
	        "name", s->name, "expression", s->expression, "tz", s->tz,
	        "target", s->target, "type", s->type, "body",
	        s->body ? s->body : "", "start", (json_int_t)s->start, "end",
	        (json_int_t)s->end, "missed", missed_names[s->missed],
	        "enabled", s->enabled, "delete_after", s->delete_after,
	        "created", (json_int_t)s->created, "window",
	        (json_int_t)s->window_s, "retry_max", (json_int_t)s->retry_max,
	        "max_age", (json_int_t)s->max_age_s, "dlq", s->dlq);
	char *text;

	if (j != NULL && s->json_body) {
		json_object_set_new(j, "payload", json_string("json"));
	}
	if (j != NULL && s->attrs != NULL) {
		json_object_set_new(j, "attrs", json_string(s->attrs));
	}
	text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (text == NULL) {
		return mesh_err_set(MESH_ENOMEM, "schedule '%s'", s->name);
	}
	*out = text;
	return MESH_OK;
}

/* ---- reading records ------------------------------------------------------
 *
 * A replica reads every record at start (a million of them, say), so the
 * records it wrote itself, flat objects of strings, integers and booleans,
 * are read in place by a small reader; anything else it does not follow
 * (nesting, null, non-ASCII text, a repeated key, a value of the wrong
 * kind) goes to jansson, which decides. Both fill the same fields. */

enum {
	F_NAME,
	F_EXPR,
	F_TZ,
	F_TARGET,
	F_TYPE,
	F_BODY,
	F_START,
	F_END,
	F_MISSED,
	F_ENABLED,
	F_DELETE,
	F_CREATED,
	F_WINDOW,
	F_RETRY,
	F_MAXAGE,
	F_DLQ,
	F_PAYLOAD,
	F_ATTRS,
	F_COUNT
};
static const char *const field_keys[F_COUNT] = {
        "name",         "expression", "tz",     "target",    "type",
        "body",         "start",      "end",    "missed",    "enabled",
        "delete_after", "created",    "window", "retry_max", "max_age",
        "dlq",          "payload",    "attrs"};
#define REQUIRED ((1u << F_WINDOW) - 1) /* name ... created */

/* The values read, before they go into a schedule. */
struct fields {
	const char *str[F_COUNT]; /* strings: NUL-terminated */
	int64_t num[F_COUNT];     /* integers and booleans */
	char *owned;              /* the strings' storage (fast reader) */
	json_t *j;                /* or jansson's */
};

/* A string member's text, decoded into *o (NUL-terminated, *o moved
 * past it); false for what the fast reader leaves to jansson: anything
 * beyond ASCII, whose UTF-8 jansson checks. */
static bool
read_string(const struct mesh_jtok *t, char **o)
{
	size_t n;

	for (size_t i = 0; i < t->len; i++) {
		if ((unsigned char)t->s[i] >= 0x80) {
			return false;
		}
	}
	if ((n = mesh_jscan_string(t, *o)) == (size_t)-1) {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)(*o)[i] >= 0x80) {
			return false; /* an escaped non-ASCII character */
		}
	}
	*o += n + 1;
	return true;
}

/* An integer member of at most 18 digits (reals and longer numbers go to
 * jansson). */
static bool
read_int(const struct mesh_jtok *t, int64_t *out)
{
	bool neg = t->s[0] == '-';
	uint64_t v = 0;

	if (t->len - neg == 0 || t->len - neg > 18) {
		return false;
	}
	for (size_t i = neg; i < t->len; i++) {
		if (t->s[i] < '0' || t->s[i] > '9') {
			return false;
		}
		v = v * 10 + (uint64_t)(t->s[i] - '0');
	}
	*out = neg ? -(int64_t)v : (int64_t)v;
	return true;
}

static bool
read_fast(const char *json, size_t len, struct fields *f)
{
	struct mesh_jscan j;
	struct mesh_jtok key, val;
	unsigned seen = 0;
	char *o;

	if ((f->owned = malloc(len + 1)) == NULL) {
		return false;
	}
	o = f->owned;
	mesh_jscan_init(&j, json, len);
	if (!mesh_jscan_enter(&j, '{')) {
		return false;
	}
	while (mesh_jscan_next(&j, &key, &val)) {
		int k = -1;
		for (int i = 0; i < F_COUNT && k < 0 && !key.escaped; i++) {
			if (key.len == strlen(field_keys[i]) &&
			    memcmp(key.s, field_keys[i], key.len) == 0) {
				k = i;
			}
		}
		if (key.escaped || (k >= 0 && (seen >> k & 1))) {
			return false; /* a repeated key: jansson's rule */
		}
		bool want_str = k == F_NAME || k == F_EXPR || k == F_TZ ||
		                k == F_TARGET || k == F_TYPE || k == F_BODY ||
		                k == F_MISSED || k == F_DLQ ||
		                k == F_PAYLOAD || k == F_ATTRS;
		bool want_bool = k == F_ENABLED || k == F_DELETE;
		switch (val.kind) {
		case MESH_JSTRING: {
			char *start = o;
			if ((k >= 0 && !want_str) || !read_string(&val, &o)) {
				return false;
			}
			if (k >= 0) {
				f->str[k] = start;
			}
			break;
		}
		case MESH_JTRUE:
		case MESH_JFALSE:
			if (k >= 0 && !want_bool) {
				return false;
			}
			if (k >= 0) {
				f->num[k] = val.kind == MESH_JTRUE;
			}
			break;
		case MESH_JNUMBER: {
			int64_t n;
			if ((k >= 0 && (want_str || want_bool)) ||
			    !read_int(&val, &n)) {
				return false;
			}
			if (k >= 0) {
				f->num[k] = n;
			}
			break;
		}
		default:
			return false; /* null, nesting: jansson */
		}
		if (k >= 0) {
			seen |= 1u << k;
		}
	}
	return mesh_jscan_done(&j) && (seen & REQUIRED) == REQUIRED;
}

static bool
read_jansson(const char *json, size_t len, struct fields *f)
{
	json_error_t jerr;
	json_int_t n[F_COUNT];
	int enabled, del;

	for (int i = 0; i < F_COUNT; i++) {
		n[i] = f->num[i]; /* the defaults of optional keys */
	}
	f->j = json_loadb(json, len, 0, &jerr);
	if (f->j == NULL ||
	    json_unpack(f->j,
	                "{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:s, s:b, "
	                "s:b, s:I, s?I, s?I, s?I, s?s, s?s, s?s}",
	                "name", &f->str[F_NAME], "expression", &f->str[F_EXPR],
	                "tz", &f->str[F_TZ], "target", &f->str[F_TARGET],
	                "type", &f->str[F_TYPE], "body", &f->str[F_BODY],
	                "start", &n[F_START], "end", &n[F_END], "missed",
	                &f->str[F_MISSED], "enabled", &enabled, "delete_after",
	                &del, "created", &n[F_CREATED], "window", &n[F_WINDOW],
	                "retry_max", &n[F_RETRY], "max_age", &n[F_MAXAGE],
	                "dlq", &f->str[F_DLQ], "payload", &f->str[F_PAYLOAD],
	                "attrs", &f->str[F_ATTRS]) != 0) {
		return false;
	}
	for (int i = 0; i < F_COUNT; i++) {
		f->num[i] = n[i];
	}
	f->num[F_ENABLED] = enabled;
	f->num[F_DELETE] = del;
	return true;
}

mesh_err
mesh_schedule_from_json(const char *json, size_t len,
                        struct mesh_schedule *out)
{
	struct mesh_schedule s;
	struct fields f = {.num = {[F_RETRY] = 185, [F_MAXAGE] = 86400}};
	bool read, want_attrs;
	mesh_err err;

	read = read_fast(json, len, &f);
	if (!read) {
		free(f.owned);
		f = (struct fields){
		        .num = {[F_RETRY] = 185, [F_MAXAGE] = 86400}};
		read = read_jansson(json, len, &f);
	}
	if (f.str[F_DLQ] == NULL) {
		f.str[F_DLQ] = "";
	}
	mesh_schedule_init(&s);
	if (!read || strlen(f.str[F_DLQ]) >= sizeof(s.dlq) ||
	    strlen(f.str[F_NAME]) > MESH_SCHEDULE_NAME_MAX ||
	    strlen(f.str[F_EXPR]) > MESH_SCHED_EXPR_MAX ||
	    strlen(f.str[F_TZ]) >= sizeof(s.tz) ||
	    strlen(f.str[F_TARGET]) >= sizeof(s.target) ||
	    strlen(f.str[F_TYPE]) >= sizeof(s.type)) {
		free(f.owned);
		json_decref(f.j);
		return mesh_err_set(MESH_EPARSE, "schedule record: malformed");
	}
	strcpy(s.name, f.str[F_NAME]);
	strcpy(s.expression, f.str[F_EXPR]);
	strcpy(s.tz, f.str[F_TZ]);
	strcpy(s.target, f.str[F_TARGET]);
	strcpy(s.type, f.str[F_TYPE]);
	strcpy(s.dlq, f.str[F_DLQ]);
	s.body = strdup(f.str[F_BODY]);
	s.start = f.num[F_START];
	s.end = f.num[F_END];
	s.enabled = f.num[F_ENABLED] != 0;
	s.delete_after = f.num[F_DELETE] != 0;
	s.created = f.num[F_CREATED];
	s.window_s = f.num[F_WINDOW];
	s.retry_max = f.num[F_RETRY];
	s.max_age_s = f.num[F_MAXAGE];
	s.json_body = f.str[F_PAYLOAD] != NULL &&
	              strcmp(f.str[F_PAYLOAD], "json") == 0;
	want_attrs = f.str[F_ATTRS] != NULL;
	s.attrs = want_attrs ? strdup(f.str[F_ATTRS]) : NULL;
	s.missed = strcmp(f.str[F_MISSED], "all") == 0    ? MESH_MISSED_ALL
	           : strcmp(f.str[F_MISSED], "skip") == 0 ? MESH_MISSED_SKIP
	                                                  : MESH_MISSED_LATEST;
	free(f.owned);
	json_decref(f.j);
	if (s.body == NULL || (want_attrs && s.attrs == NULL)) {
		mesh_schedule_fini(&s);
		return mesh_err_set(MESH_ENOMEM, "schedule record");
	}
	if ((err = mesh_schedule_check(&s)) != MESH_OK) {
		mesh_schedule_fini(&s);
		return err;
	}
	*out = s;
	return MESH_OK;
}

bool
mesh_schedule_parse_duration(const char *text, int64_t unit, int64_t *out)
{
	return mesh_duration_parse(text, unit, out);
}

mesh_err
mesh_schedule_next(const struct mesh_schedule *s, const struct mesh_tz *tz,
                   int64_t after, int64_t *next)
{
	int64_t anchor = s->start != 0 ? s->start : s->created;
	mesh_err err;

	if (s->start != 0 && after < s->start - 1) {
		after = s->start - 1;
	}
	if ((err = mesh_sched_next(&s->expr, tz, after, anchor, next)) !=
	    MESH_OK) {
		return err;
	}
	if (s->end != 0 && *next > s->end) {
		return mesh_err_set(MESH_ENOTFOUND, "schedule '%s' has ended",
		                    s->name);
	}
	return MESH_OK;
}

/* Replace every `from` in *text by `to`. */
static bool
replace_all(char **text, const char *from, const char *to)
{
	size_t fl = strlen(from), tl = strlen(to), count = 0;
	char *p, *out, *o;

	for (p = strstr(*text, from); p != NULL; p = strstr(p + fl, from)) {
		count++;
	}
	if (count == 0) {
		return true;
	}
	out = malloc(strlen(*text) + count * tl + 1);
	if (out == NULL) {
		return false;
	}
	o = out;
	for (const char *s = *text;;) {
		const char *hit = strstr(s, from);
		size_t n = hit ? (size_t)(hit - s) : strlen(s);
		memcpy(o, s, n);
		o += n;
		if (hit == NULL) {
			break;
		}
		memcpy(o, to, tl);
		o += tl;
		s = hit + fl;
	}
	*o = '\0';
	free(*text);
	*text = out;
	return true;
}

char *
mesh_schedule_render(const struct mesh_schedule *s, int64_t fire, int attempt)
{
	char iso[32], num[16];
	char *text = strdup(s->body ? s->body : "");

	mesh_sched_format(fire, iso);
	snprintf(num, sizeof(num), "%d", attempt);
	if (text == NULL ||
	    !replace_all(&text, "<aws.scheduler.scheduled-time>", iso) ||
	    !replace_all(&text, "<aws.scheduler.schedule-arn>", s->name) ||
	    !replace_all(&text, "<aws.scheduler.attempt-number>", num)) {
		free(text);
		return NULL;
	}
	return text;
}

int64_t
mesh_schedule_window_offset(const struct mesh_schedule *s, int64_t fire)
{
	char key[128];
	uint8_t h[8];
	uint64_t v = 0;

	if (s->window_s <= 0) {
		return 0;
	}
	snprintf(key, sizeof(key), "%s/%lld/window", s->name, (long long)fire);
	crypto_generichash(h, sizeof(h), (const uint8_t *)key, strlen(key),
	                   NULL, 0);
	for (int i = 0; i < 8; i++) {
		v = v << 8 | h[i];
	}
	return (int64_t)(v % (uint64_t)s->window_s);
}

void
mesh_schedule_firing_id(const char *name, int64_t fire, char out[37])
{
	char key[128];
	uint8_t h[16];

	snprintf(key, sizeof(key), "%s/%lld", name, (long long)fire);
	crypto_generichash(h, sizeof(h), (const uint8_t *)key, strlen(key),
	                   NULL, 0);
	mesh_uuid_format(h, 8, out);
}
