/* schedule.c: schedule definitions, their checks, JSON, and firings. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "internal.h"
#include "schedule.h"

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
		s->body = NULL;
	}
}

mesh_err
mesh_schedule_check(struct mesh_schedule *s)
{
	size_t n = strlen(s->name);
	const struct mesh_tz *tz = NULL;
	mesh_err err;

	if (n == 0 || strspn(s->name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKL"
	                              "MNOPQRSTUVWXYZ0123456789_.-") != n) {
		return mesh__seterr(MESH_EINVAL,
		                    "schedule name '%s': must be 1-%d of A-Z, "
		                    "a-z, 0-9, '_', '.' and '-'",
		                    s->name, MESH_SCHEDULE_NAME_MAX);
	}
	if ((err = mesh_sched_parse(s->expression, &s->expr)) != MESH_OK) {
		return err;
	}
	if ((err = mesh_tz_shared(s->tz, &tz)) != MESH_OK) {
		return err;
	}
	if (strncmp(s->target, "queue:", 6) != 0 || s->target[6] == '\0') {
		return mesh__seterr(
		        MESH_EINVAL,
		        "schedule '%s': target '%s' is not "
		        "queue:NAME (topic targets come with topics)",
		        s->name, s->target);
	}
	if (s->type[0] == '\0') {
		return mesh__seterr(MESH_EINVAL,
		                    "schedule '%s': empty event "
		                    "type",
		                    s->name);
	}
	if (s->body != NULL && strlen(s->body) > MESH_SCHEDULE_BODY_MAX) {
		return mesh__seterr(
		        MESH_ETOOBIG,
		        "schedule '%s': a body of %zu bytes is over "
		        "%d",
		        s->name, strlen(s->body), MESH_SCHEDULE_BODY_MAX);
	}
	if (s->window_s != 0 && (s->window_s < 60 || s->window_s > 86400)) {
		return mesh__seterr(
		        MESH_EINVAL,
		        "schedule '%s': a flexible window is 1-1440 "
		        "minutes, not %lld s",
		        s->name, (long long)s->window_s);
	}
	if (s->retry_max < 0 || s->retry_max > 185) {
		return mesh__seterr(
		        MESH_EINVAL,
		        "schedule '%s': maximum retry attempts %lld "
		        "is out of range 0-185",
		        s->name, (long long)s->retry_max);
	}
	if (s->max_age_s < 60 || s->max_age_s > 86400) {
		return mesh__seterr(
		        MESH_EINVAL,
		        "schedule '%s': maximum event age %lld s is "
		        "out of range 60-86400",
		        s->name, (long long)s->max_age_s);
	}
	if (s->dlq[0] != '\0' && strncmp(s->dlq, "queue:", 6) == 0) {
		memmove(s->dlq, s->dlq + 6, strlen(s->dlq + 6) + 1);
	}
	if (s->start != 0 && s->end != 0 && s->end <= s->start) {
		return mesh__seterr(MESH_EINVAL,
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
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;

	json_decref(j);
	if (text == NULL) {
		return mesh__seterr(MESH_ENOMEM, "schedule '%s'", s->name);
	}
	*out = text;
	return MESH_OK;
}

mesh_err
mesh_schedule_from_json(const char *json, size_t len,
                        struct mesh_schedule *out)
{
	struct mesh_schedule s;
	json_error_t jerr;
	json_t *j = json_loadb(json, len, 0, &jerr);
	const char *name, *expr, *tz, *target, *type, *body, *missed;
	json_int_t start, end, created, window = 0, retry_max = 185;
	json_int_t max_age = 86400;
	const char *dlq = "";
	int enabled, del;
	mesh_err err;

	mesh_schedule_init(&s);
	if (j == NULL ||
	    json_unpack(j,
	                "{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:s, s:b, "
	                "s:b, s:I, s?I, s?I, s?I, s?s}",
	                "name", &name, "expression", &expr, "tz", &tz,
	                "target", &target, "type", &type, "body", &body,
	                "start", &start, "end", &end, "missed", &missed,
	                "enabled", &enabled, "delete_after", &del, "created",
	                &created, "window", &window, "retry_max", &retry_max,
	                "max_age", &max_age, "dlq", &dlq) != 0 ||
	    strlen(dlq) >= sizeof(s.dlq) ||
	    strlen(name) > MESH_SCHEDULE_NAME_MAX ||
	    strlen(expr) > MESH_SCHED_EXPR_MAX || strlen(tz) >= sizeof(s.tz) ||
	    strlen(target) >= sizeof(s.target) ||
	    strlen(type) >= sizeof(s.type)) {
		json_decref(j);
		return mesh__seterr(MESH_EPARSE, "schedule record: malformed");
	}
	snprintf(s.name, sizeof(s.name), "%s", name);
	snprintf(s.expression, sizeof(s.expression), "%s", expr);
	snprintf(s.tz, sizeof(s.tz), "%s", tz);
	snprintf(s.target, sizeof(s.target), "%s", target);
	snprintf(s.type, sizeof(s.type), "%s", type);
	s.body = strdup(body);
	s.start = start;
	s.end = end;
	s.enabled = enabled;
	s.delete_after = del;
	s.created = created;
	s.window_s = window;
	s.retry_max = retry_max;
	s.max_age_s = max_age;
	snprintf(s.dlq, sizeof(s.dlq), "%s", dlq);
	s.missed = strcmp(missed, "all") == 0    ? MESH_MISSED_ALL
	           : strcmp(missed, "skip") == 0 ? MESH_MISSED_SKIP
	                                         : MESH_MISSED_LATEST;
	json_decref(j);
	if (s.body == NULL) {
		return mesh__seterr(MESH_ENOMEM, "schedule record");
	}
	if ((err = mesh_schedule_check(&s)) != MESH_OK) {
		mesh_schedule_fini(&s);
		return err;
	}
	*out = s;
	return MESH_OK;
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
		return mesh__seterr(MESH_ENOTFOUND, "schedule '%s' has ended",
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
	mesh__uuid_format(h, 8, out);
}
