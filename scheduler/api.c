/* api.c: operations on schedules (for meshctl and the request API) and the
 * request API itself. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "changelog.h"
#include "expr.h"
#include "tz.h"
#include "mesh/clock.h"
#include "mesh/err.h"
#include "mesh/queue.h"
#include "mesh/topic.h"

mesh_err
mesh_sched_save(struct mesh_conn *c, struct mesh_schedule *s, bool create)
{
	struct mesh_queue_info qi;
	mesh_err err;

	if ((err = mesh_schedule_check(s)) != MESH_OK) {
		return err;
	}
	/* The one place that knows target kinds on this side; the target
	 * must exist (mesh_schedule_check passed only queue: and topic:). */
	if (strncmp(s->target, "topic:", 6) == 0) {
		struct mesh_topic_info ti;
		err = mesh_topic_info(c, s->target + 6, &ti);
	} else {
		err = mesh_queue_info(c, s->target + 6, &qi);
	}
	if (err != MESH_OK) {
		return err;
	}
	if (s->dlq[0] != '\0' &&
	    (err = mesh_queue_info(c, s->dlq, &qi)) != MESH_OK) {
		return err;
	}
	return mesh_schedules_put(c, s, create);
}

mesh_err
mesh_sched_info(struct mesh_conn *c, const char *name, json_t **out)
{
	struct mesh_schedule s;
	const struct mesh_tz *tz = NULL;
	char outcome[320] = "", iso[32];
	int64_t last = 0, t;
	json_t *j, *next;
	mesh_err err;

	if ((err = mesh_schedules_get(c, name, &s)) != MESH_OK) {
		return err;
	}
	mesh_schedules_last_fired(c, s.name, &last, outcome, sizeof(outcome));
	j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "Name", s.name,
	              "ScheduleExpression", s.expression,
	              "ScheduleExpressionTimezone", s.tz, "Target", s.target,
	              "Type", s.type, "State",
	              s.enabled ? "ENABLED" : "DISABLED", "Body",
	              s.body ? s.body : "");
	if (j != NULL) {
		json_t *attrs = json_array();
		for (const char *p = s.attrs; p != NULL && *p;) {
			size_t n = strcspn(p, "\n");
			json_array_append_new(attrs, json_stringn(p, n));
			p += n + (p[n] == '\n');
		}
		json_object_set_new(
		        j, "Payload",
		        json_string(s.json_body ? "json" : "text"));
		json_object_set_new(j, "Attributes", attrs);
	}
	next = json_array();
	if (j == NULL || next == NULL) {
		json_decref(j);
		json_decref(next);
		mesh_schedule_fini(&s);
		return mesh_err_set(MESH_ENOMEM, "schedule '%s'", name);
	}
	t = (int64_t)time(NULL);
	if (s.enabled && mesh_tz_shared(s.tz, &tz) == MESH_OK) {
		for (int i = 0;
		     i < 5 && mesh_schedule_next(&s, tz, t, &t) == MESH_OK;
		     i++) {
			mesh_sched_format(t, iso);
			json_array_append_new(next, json_string(iso));
		}
	}
	json_object_set_new(j, "NextFirings", next);
	if (last != 0) {
		mesh_sched_format(last, iso);
		json_object_set_new(j, "LastFiring", json_string(iso));
		json_object_set_new(j, "LastOutcome", json_string(outcome));
	}
	mesh_schedule_fini(&s);
	*out = j;
	return MESH_OK;
}

mesh_err
mesh_sched_list(struct mesh_conn *c, json_t **out)
{
	jsOptions o;
	jsStreamInfo *si = NULL;
	json_t *names = json_array();
	natsStatus st;

	if (names == NULL) {
		return mesh_err_set(MESH_ENOMEM, "schedules");
	}
	jsOptions_Init(&o);
	o.Stream.Info.SubjectsFilter = MESH_SCHEDULES_PREFIX "*";
	st = js_GetStreamInfo(&si, mesh_conn_js(c), MESH_SCHEDULES_STREAM, &o,
	                      NULL);
	for (int k = 0; st == NATS_OK && si->State.Subjects &&
	                k < si->State.Subjects->Count;
	     k++) {
		const char *name = si->State.Subjects->List[k].Subject +
		                   strlen(MESH_SCHEDULES_PREFIX);
		struct mesh_schedule s;
		if (mesh_schedules_get(c, name, &s) == MESH_OK) {
			json_array_append_new(names, json_string(s.name));
			mesh_schedule_fini(&s);
		}
	}
	jsStreamInfo_Destroy(si);
	*out = names;
	return MESH_OK;
}

/* Copy a string field into a fixed one. */
static mesh_err
set_str(char *dst, size_t size, const char *key, json_t *v)
{
	if (!json_is_string(v)) {
		return mesh_err_set(MESH_EINVAL, "field '%s': not a string",
		                    key);
	}
	if (strlen(json_string_value(v)) >= size) {
		return mesh_err_set(MESH_EINVAL,
		                    "field '%s': longer than %zu characters",
		                    key, size - 1);
	}
	snprintf(dst, size, "%s", json_string_value(v));
	return MESH_OK;
}

/* Seconds: an integer, or text: for a time, ISO-8601 (as meshctl's
 * --start); for a duration, "15m", "2h" (as --window). */
static mesh_err
set_seconds(int64_t *dst, const char *key, json_t *v, bool time)
{
	const char *text = json_string_value(v);

	if (json_is_integer(v)) {
		*dst = json_integer_value(v);
		return MESH_OK;
	}
	if (text != NULL &&
	    (time ? mesh_sched_parse_time(text, NULL, dst) == MESH_OK
	          : mesh_schedule_parse_duration(text, 1, dst))) {
		return MESH_OK;
	}
	return mesh_err_set(MESH_EINVAL, "field '%s': not %s", key,
	                    time ? "Unix seconds or an ISO-8601 time"
	                         : "seconds or a duration like 15m or 2h");
}

static mesh_err
set_bool(bool *dst, const char *key, json_t *v)
{
	if (!json_is_boolean(v)) {
		return mesh_err_set(MESH_EINVAL,
		                    "field '%s': not true or false", key);
	}
	*dst = json_is_true(v);
	return MESH_OK;
}

mesh_err
mesh_sched_set_fields(struct mesh_schedule *s, json_t *fields)
{
	const char *key;
	json_t *v;
	mesh_err err = MESH_OK;

	json_object_foreach(fields, key, v)
	{
		if (strcmp(key, "name") == 0) {
			err = set_str(s->name, sizeof(s->name), key, v);
		} else if (strcmp(key, "expression") == 0) {
			err = set_str(s->expression, sizeof(s->expression),
			              key, v);
		} else if (strcmp(key, "tz") == 0) {
			err = set_str(s->tz, sizeof(s->tz), key, v);
		} else if (strcmp(key, "target") == 0) {
			err = set_str(s->target, sizeof(s->target), key, v);
		} else if (strcmp(key, "type") == 0) {
			err = set_str(s->type, sizeof(s->type), key, v);
		} else if (strcmp(key, "dlq") == 0) {
			err = set_str(s->dlq, sizeof(s->dlq), key, v);
		} else if (strcmp(key, "body") == 0) {
			char *body;
			if (!json_is_string(v)) {
				err = mesh_err_set(
				        MESH_EINVAL,
				        "field 'body': not a string");
			} else if ((body = strdup(json_string_value(v))) ==
			           NULL) {
				err = mesh_err_set(MESH_ENOMEM,
				                   "field 'body'");
			} else {
				free(s->body);
				s->body = body;
			}
		} else if (strcmp(key, "attrs") == 0) {
			/* ["NAME=TYPE:VALUE", ...] */
			size_t i, len = 0;
			json_t *a;
			char *lines = NULL;
			bool bad = !json_is_array(v);
			json_array_foreach(v, i, a)
			{
				bad = bad || !json_is_string(a) ||
				      strchr(json_string_value(a), '\n');
				len += bad ? 0
				           : strlen(json_string_value(a)) + 1;
			}
			if (bad) {
				err = mesh_err_set(
				        MESH_EINVAL,
				        "field 'attrs': an array of "
				        "\"NAME=TYPE:VALUE\" strings");
			} else if (len > 0 &&
			           (lines = calloc(1, len)) == NULL) {
				err = mesh_err_set(MESH_ENOMEM,
				                   "field 'attrs'");
			} else {
				json_array_foreach(v, i, a)
				{
					if (i > 0) {
						strcat(lines, "\n");
					}
					strcat(lines, json_string_value(a));
				}
				free(s->attrs);
				s->attrs = lines;
			}
		} else if (strcmp(key, "payload") == 0) {
			const char *m = json_string_value(v);
			if (m == NULL || (strcmp(m, "json") != 0 &&
			                  strcmp(m, "text") != 0)) {
				err = mesh_err_set(
				        MESH_EINVAL,
				        "field 'payload': json or text");
			} else {
				s->json_body = strcmp(m, "json") == 0;
			}
		} else if (strcmp(key, "missed") == 0) {
			const char *m = json_string_value(v);
			if (m != NULL && strcmp(m, "latest") == 0) {
				s->missed = MESH_MISSED_LATEST;
			} else if (m != NULL && strcmp(m, "all") == 0) {
				s->missed = MESH_MISSED_ALL;
			} else if (m != NULL && strcmp(m, "skip") == 0) {
				s->missed = MESH_MISSED_SKIP;
			} else {
				err = mesh_err_set(
				        MESH_EINVAL,
				        "field 'missed': latest, all or "
				        "skip");
			}
		} else if (strcmp(key, "start") == 0) {
			err = set_seconds(&s->start, key, v, true);
		} else if (strcmp(key, "end") == 0) {
			err = set_seconds(&s->end, key, v, true);
		} else if (strcmp(key, "window") == 0) {
			err = set_seconds(&s->window_s, key, v, false);
		} else if (strcmp(key, "max_age") == 0) {
			err = set_seconds(&s->max_age_s, key, v, false);
		} else if (strcmp(key, "retry_max") == 0) {
			if (!json_is_integer(v)) {
				err = mesh_err_set(MESH_EINVAL,
				                   "field 'retry_max': not an "
				                   "integer");
			} else {
				s->retry_max = json_integer_value(v);
			}
		} else if (strcmp(key, "delete_after") == 0) {
			err = set_bool(&s->delete_after, key, v);
		} else if (strcmp(key, "enabled") == 0) {
			err = set_bool(&s->enabled, key, v);
		} else {
			err = mesh_err_set(MESH_EINVAL, "field '%s': unknown",
			                   key);
		}
		if (err != MESH_OK) {
			return err;
		}
	}
	return MESH_OK;
}

/* ---- the request API ---------------------------------------------------- */

static const char *const codes[] = {
        [MESH_OK] = "OK",
        [MESH_EINVAL] = "EINVAL",
        [MESH_ENOMEM] = "ENOMEM",
        [MESH_ENOTFOUND] = "ENOTFOUND",
        [MESH_EEXIST] = "EEXIST",
        [MESH_ETOOBIG] = "ETOOBIG",
        [MESH_EPARSE] = "EPARSE",
        [MESH_ETIMEDOUT] = "ETIMEDOUT",
        [MESH_EUNREACHABLE] = "EUNREACHABLE",
        [MESH_EAUTH] = "EAUTH",
        [MESH_ECLOSED] = "ECLOSED",
        [MESH_EBROKER] = "EBROKER",
        [MESH_ESTORE] = "ESTORE",
        [MESH_EFULL] = "EFULL",
        [MESH_EIO] = "EIO",
        [MESH_ESTALE] = "ESTALE",
        [MESH_EINTERNAL] = "EINTERNAL",
};

static json_t *
error_reply(mesh_err err)
{
	const char *d = mesh_errdetail();

	return json_pack("{s:{s:s, s:s}}", "error", "code",
	                 (size_t)err < sizeof(codes) / sizeof(codes[0]) &&
	                                 codes[err]
	                         ? codes[err]
	                         : "EINTERNAL",
	                 "message", d[0] ? d : mesh_strerror(err));
}

/* next: an expression's next firings, computed without storing anything
 * ({"expression", "tz", "from", "count"}). */
static mesh_err
handle_next(json_t *req, json_t **out)
{
	const char *text =
	        json_string_value(json_object_get(req, "expression"));
	const char *zone = json_string_value(json_object_get(req, "tz"));
	json_t *from = json_object_get(req, "from");
	json_t *count = json_object_get(req, "count");
	json_int_t n = count ? json_integer_value(count) : 5;
	struct mesh_sched_expr e;
	struct mesh_tz *tz = NULL;
	json_t *list;
	int64_t t, anchor;
	mesh_err err;

	if (text == NULL) {
		return mesh_err_set(MESH_EINVAL,
		                    "field 'expression': missing, or not a "
		                    "string");
	}
	if (count != NULL && (!json_is_integer(count) || n < 1 || n > 10000)) {
		return mesh_err_set(MESH_EINVAL, "field 'count': 1-10000");
	}
	zone = zone ? zone : "UTC";
	if ((err = mesh_sched_parse(text, &e)) != MESH_OK) {
		return err;
	}
	if ((err = mesh_tz_load(zone, NULL, &tz)) != MESH_OK) {
		return mesh_sched_zone_err(err);
	}
	t = (int64_t)time(NULL);
	if (from != NULL && json_is_integer(from)) {
		t = json_integer_value(from);
	} else if (from != NULL &&
	           (!json_is_string(from) ||
	            (err = mesh_sched_parse_time(json_string_value(from), tz,
	                                         &t)) != MESH_OK)) {
		char why[256];
		snprintf(why, sizeof(why), "%s", mesh_errdetail());
		mesh_tz_free(tz);
		return json_is_string(from)
		               ? mesh_err_set(MESH_EINVAL, "field 'from': %s",
		                              why)
		               : mesh_err_set(MESH_EINVAL,
		                              "field 'from': a time or Unix "
		                              "seconds");
	}
	anchor = t;
	list = json_array();
	for (json_int_t i = 0; i < n; i++) {
		char iso[32];
		if (mesh_sched_next(&e, tz, t, anchor, &t) != MESH_OK) {
			break; /* no more firings: what there is */
		}
		mesh_sched_format(t, iso);
		json_array_append_new(list, json_string(iso));
	}
	mesh_tz_free(tz);
	*out = json_pack("{s:s, s:s, s:o}", "Expression", text, "Timezone",
	                 zone, "NextFirings", list);
	return MESH_OK;
}

/* The name in a request, as a C string; NULL when missing. */
static const char *
name_of(json_t *req)
{
	return json_string_value(json_object_get(req, "name"));
}

/* create, update, pause, resume: a schedule built or changed, then saved
 * as meshctl saves it. */
static mesh_err
handle_write(struct mesh_conn *c, const char *verb, json_t *req)
{
	struct mesh_schedule s;
	const char *name = name_of(req);
	bool create = strcmp(verb, "create") == 0;
	mesh_err err;

	if (name == NULL) {
		return mesh_err_set(MESH_EINVAL,
		                    "field 'name': missing, or not a string");
	}
	if (create) {
		mesh_schedule_init(&s);
		s.created = (int64_t)time(NULL);
		if (json_object_get(req, "expression") == NULL ||
		    json_object_get(req, "target") == NULL) {
			return mesh_err_set(MESH_EINVAL,
			                    "fields 'expression' and 'target' "
			                    "are required");
		}
	} else if ((err = mesh_schedules_get(c, name, &s)) != MESH_OK) {
		return err;
	}
	if (strcmp(verb, "pause") == 0 || strcmp(verb, "resume") == 0) {
		s.enabled = verb[0] == 'r';
		err = json_object_size(req) == 1
		              ? MESH_OK
		              : mesh_err_set(MESH_EINVAL,
		                             "%s takes only 'name'", verb);
	} else {
		err = mesh_sched_set_fields(&s, req);
	}
	if (err == MESH_OK && strcmp(s.name, name) != 0) {
		err = mesh_err_set(MESH_EINVAL,
		                   "field 'name': not changeable");
	}
	if (err == MESH_OK) {
		err = mesh_sched_save(c, &s, create);
	}
	mesh_schedule_fini(&s);
	return err;
}

void
mesh_sched_api_handle(struct mesh_conn *c, const char *verb, const char *body,
                      size_t len, char **reply)
{
	json_error_t jerr;
	json_t *req = len ? json_loadb(body, len, 0, &jerr) : json_object();
	json_t *res = NULL;
	mesh_err err = MESH_OK;

	if (!json_is_object(req)) {
		err = mesh_err_set(MESH_EPARSE,
		                   "request body: not a JSON object");
	} else if (strcmp(verb, "create") == 0 ||
	           strcmp(verb, "update") == 0 || strcmp(verb, "pause") == 0 ||
	           strcmp(verb, "resume") == 0) {
		if ((err = handle_write(c, verb, req)) == MESH_OK) {
			res = json_pack("{s:b, s:s}", "ok", 1, "name",
			                name_of(req));
		}
	} else if (name_of(req) == NULL && strcmp(verb, "list") != 0 &&
	           (strcmp(verb, "delete") == 0 ||
	            strcmp(verb, "info") == 0)) {
		err = mesh_err_set(MESH_EINVAL,
		                   "field 'name': missing, or not a string");
	} else if (strcmp(verb, "delete") == 0) {
		if ((err = mesh_schedules_delete(c, name_of(req))) ==
		    MESH_OK) {
			res = json_pack("{s:b, s:s}", "ok", 1, "name",
			                name_of(req));
		}
	} else if (strcmp(verb, "info") == 0) {
		err = mesh_sched_info(c, name_of(req), &res);
	} else if (strcmp(verb, "next") == 0) {
		err = handle_next(req, &res);
	} else if (strcmp(verb, "list") == 0) {
		json_t *names = NULL;
		if ((err = mesh_sched_list(c, &names)) == MESH_OK) {
			res = json_pack("{s:o}", "schedules", names);
		}
	} else {
		err = mesh_err_set(MESH_EINVAL,
		                   "verb '%.64s': not create, update, delete, "
		                   "pause, resume, info, list or next",
		                   verb);
	}
	if (err != MESH_OK || res == NULL) {
		json_decref(res);
		res = error_reply(err != MESH_OK ? err : MESH_ENOMEM);
	}
	*reply = res ? json_dumps(res, JSON_COMPACT) : NULL;
	if (*reply == NULL) {
		*reply = strdup("{\"error\":{\"code\":\"ENOMEM\",\"message\":"
		                "\"out of memory\"}}");
	}
	json_decref(res);
	json_decref(req);
}

static void
on_request(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
	const char *verb =
	        natsMsg_GetSubject(m) + strlen(MESH_SCHED_API_PREFIX);
	char *reply = NULL;

	(void)sub;
	if (natsMsg_GetReply(m) != NULL) {
		mesh_sched_api_handle(arg, verb, natsMsg_GetData(m),
		                      (size_t)natsMsg_GetDataLength(m),
		                      &reply);
		if (reply != NULL) {
			natsConnection_PublishString(nc, natsMsg_GetReply(m),
			                             reply);
		}
		free(reply);
	}
	natsMsg_Destroy(m);
}

mesh_err
mesh_sched_api_start(struct mesh_conn *c, natsSubscription **out)
{
	natsStatus s = natsConnection_QueueSubscribe(
	        out, mesh_conn_nats(c), MESH_SCHED_API_PREFIX "*",
	        MESH_SCHED_API_GROUP, on_request, c);

	return s == NATS_OK ? MESH_OK
	                    : mesh_err_nats(s, 0, "request API %s*",
	                                    MESH_SCHED_API_PREFIX);
}

void
mesh_sched_api_stop(natsSubscription *sub)
{
	if (sub == NULL) {
		return;
	}
	if (natsSubscription_Drain(sub) == NATS_OK) {
		natsSubscription_WaitForDrainCompletion(sub, 5000);
	}
	natsSubscription_Destroy(sub);
}
