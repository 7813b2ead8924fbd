/* Schedule expressions: every operator, leap years, month ends, the
 * EventBridge documentation's examples, and both DST transitions in
 * America/New_York, Europe/Berlin and Australia/Lord_Howe under each
 * format's rules; and hostile input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expr.h"
#include "schedule.h"
#include "harness.h"

struct expect {
	const char *expr;
	const char *tz;
	const char *from;
	const char *next[6]; /* NULL-terminated */
};

static const struct expect cases[] = {
        /* EventBridge documentation examples. */
        {"cron(0 10 * * ? *)",
         "UTC",
         "2026-05-01T11:00:00Z",
         {"2026-05-02T10:00:00Z", "2026-05-03T10:00:00Z"}},
        {"cron(15 12 * * ? *)",
         "UTC",
         "2026-05-01T00:00:00Z",
         {"2026-05-01T12:15:00Z"}},
        {"cron(0 18 ? * MON-FRI *)",
         "UTC",
         "2026-05-01T19:00:00Z",
         {"2026-05-04T18:00:00Z", "2026-05-05T18:00:00Z"}},
        {"cron(0 8 1 * ? *)",
         "UTC",
         "2026-05-01T09:00:00Z",
         {"2026-06-01T08:00:00Z"}},
        {"cron(0/15 * * * ? *)",
         "UTC",
         "2026-05-01T00:00:00Z",
         {"2026-05-01T00:15:00Z", "2026-05-01T00:30:00Z"}},
        {"cron(0/10 * ? * MON-FRI *)",
         "UTC",
         "2026-05-01T23:55:00Z",
         {"2026-05-04T00:00:00Z"}},
        {"cron(0/5 8-17 ? * MON-FRI *)",
         "UTC",
         "2026-05-01T17:55:00Z",
         {"2026-05-04T08:00:00Z"}},
        {"cron(0 9 ? * 2#1 *)",
         "UTC",
         "2026-05-01T00:00:00Z",
         {"2026-05-04T09:00:00Z", "2026-06-01T09:00:00Z"}},
        /* Operators: lists, names, L, W, LW, #, nL, year ranges. */
        {"cron(0,30 6 ? * SUN,SAT *)",
         "UTC",
         "2026-05-01T00:00:00Z",
         {"2026-05-02T06:00:00Z", "2026-05-02T06:30:00Z",
          "2026-05-03T06:00:00Z"}},
        {"cron(0 12 L * ? *)",
         "UTC",
         "2027-12-31T13:00:00Z",
         {"2028-01-31T12:00:00Z", "2028-02-29T12:00:00Z",
          "2028-03-31T12:00:00Z"}},
        {"cron(0 12 LW * ? *)",
         "UTC",
         "2026-05-01T00:00:00Z",
         {"2026-05-29T12:00:00Z", "2026-06-30T12:00:00Z"}},
        {"cron(0 12 1W * ? *)",
         "UTC",
         "2026-07-15T00:00:00Z",
         {"2026-08-03T12:00:00Z"}}, /* Aug 1 2026 is a Saturday */
        {"cron(0 12 ? * 6L *)",
         "UTC",
         "2026-05-01T00:00:00Z",
         {"2026-05-29T12:00:00Z"}}, /* last Friday */
        {"cron(0 12 ? * L *)",
         "UTC",
         "2026-05-01T00:00:00Z",
         {"2026-05-02T12:00:00Z"}}, /* L alone: Saturday */
        {"cron(0 0 1 JAN ? 2030-2031)",
         "UTC",
         "2026-05-01T00:00:00Z",
         {"2030-01-01T00:00:00Z", "2031-01-01T00:00:00Z"}},
        {"cron(0 0 1 1 ? 2027)", "UTC", "2027-01-01T00:00:00Z", {NULL}},
        /* Leap years and month ends. */
        {"0 0 29 2 *",
         "UTC",
         "2026-01-01T00:00:00Z",
         {"2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"}},
        {"cron(0 0 29 2 ? 2100-2104)",
         "UTC",
         "2026-01-01T00:00:00Z",
         {"2104-02-29T00:00:00Z"}}, /* 2100 is no leap year */
        {"0 0 31 * *",
         "UTC",
         "2026-04-01T00:00:00Z",
         {"2026-05-31T00:00:00Z", "2026-07-31T00:00:00Z"}},
        /* Unix cron: Vixie's day rule, 0 and 7 for Sunday, seconds,
         * macros. */
        {"0 0 13 * FRI",
         "UTC",
         "2026-02-01T00:00:00Z",
         {"2026-02-06T00:00:00Z", "2026-02-13T00:00:00Z",
          "2026-02-20T00:00:00Z"}},
        /* A day field starting with '*' (a step too) makes both
         * fields count: days 1, 11, 21, 31 that are Mondays. */
        {"0 0 */10 * 1",
         "UTC",
         "2026-05-02T00:00:00Z",
         {"2026-05-11T00:00:00Z", "2026-06-01T00:00:00Z"}},
        {"0 12 * * 7",
         "UTC",
         "2026-05-01T00:00:00Z",
         {"2026-05-03T12:00:00Z"}},
        {"*/15 * * * * *",
         "UTC",
         "2026-05-01T00:00:00Z",
         {"2026-05-01T00:00:15Z", "2026-05-01T00:00:30Z"}},
        {"@weekly", "UTC", "2026-05-01T00:00:00Z", {"2026-05-03T00:00:00Z"}},
        {"0 9-17/4 * jan-mar mon",
         "UTC",
         "2026-01-01T00:00:00Z",
         {"2026-01-05T09:00:00Z", "2026-01-05T13:00:00Z",
          "2026-01-05T17:00:00Z"}},
        /* rate and at. */
        {"rate(1 hour)",
         "UTC",
         "2026-05-01T00:00:00Z",
         {"2026-05-01T01:00:00Z", "2026-05-01T02:00:00Z"}},
        {"rate(90 seconds)",
         "UTC",
         "2026-05-01T00:00:00Z",
         {"2026-05-01T00:01:30Z", "2026-05-01T00:03:00Z"}},
        {"at(2026-12-24T18:00:00)",
         "Europe/Berlin",
         "2026-05-01T00:00:00Z",
         {"2026-12-24T17:00:00Z"}},
        {"at(2025-12-24T18:00:00)", "UTC", "2026-05-01T00:00:00Z", {NULL}},

        /* DST, America/New_York: 2026-03-08 02:00 -> 03:00,
         * 2026-11-01 02:00 -> 01:00. */
        {"cron(30 2 * * ? *)",
         "America/New_York",
         "2026-03-07T00:00:00Z",
         {"2026-03-07T07:30:00Z", "2026-03-09T06:30:00Z"}},
        {"30 2 * * *",
         "America/New_York",
         "2026-03-07T00:00:00Z",
         {"2026-03-07T07:30:00Z", "2026-03-08T07:00:00Z",
          "2026-03-09T06:30:00Z"}},
        {"*/30 2 * * *",
         "America/New_York",
         "2026-03-07T07:45:00Z",
         {"2026-03-09T06:00:00Z"}},
        {"cron(30 1 * * ? *)",
         "America/New_York",
         "2026-10-31T12:00:00Z",
         {"2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"}},
        {"30 1 * * *",
         "America/New_York",
         "2026-10-31T12:00:00Z",
         {"2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"}},
        {"30 * * * *",
         "America/New_York",
         "2026-11-01T04:00:00Z",
         {"2026-11-01T04:30:00Z", "2026-11-01T05:30:00Z",
          "2026-11-01T06:30:00Z", "2026-11-01T07:30:00Z"}},
        /* Europe/Berlin: 2026-03-29 02:00 -> 03:00, 2026-10-25 03:00 ->
         * 02:00. */
        {"cron(30 2 * * ? *)",
         "Europe/Berlin",
         "2026-03-28T12:00:00Z",
         {"2026-03-30T00:30:00Z"}},
        {"30 2 * * *",
         "Europe/Berlin",
         "2026-03-28T12:00:00Z",
         {"2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"}},
        {"cron(30 2 * * ? *)",
         "Europe/Berlin",
         "2026-10-24T12:00:00Z",
         {"2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"}},
        {"*/30 2 * * *",
         "Europe/Berlin",
         "2026-10-24T12:00:00Z",
         {"2026-10-25T00:00:00Z", "2026-10-25T00:30:00Z",
          "2026-10-25T01:00:00Z", "2026-10-25T01:30:00Z",
          "2026-10-26T01:00:00Z"}},
        /* Australia/Lord_Howe moves by 30 minutes: 2026-10-04 02:00 ->
         * 02:30 (+10:30 -> +11), 2026-04-05 02:00 -> 01:30. */
        {"cron(15 2 * * ? *)",
         "Australia/Lord_Howe",
         "2026-10-02T00:00:00Z",
         {"2026-10-02T15:45:00Z", "2026-10-04T15:15:00Z"}},
        {"15 2 * * *",
         "Australia/Lord_Howe",
         "2026-10-03T00:00:00Z",
         {"2026-10-03T15:30:00Z", "2026-10-04T15:15:00Z"}},
        {"cron(45 1 * * ? *)",
         "Australia/Lord_Howe",
         "2026-04-04T00:00:00Z",
         {"2026-04-04T14:45:00Z", "2026-04-05T15:15:00Z"}},
        {"*/20 1 * * *",
         "Australia/Lord_Howe",
         "2026-04-04T14:00:00Z",
         {"2026-04-04T14:20:00Z", "2026-04-04T14:40:00Z",
          "2026-04-04T15:10:00Z", "2026-04-05T14:30:00Z"}},
        {"at(2026-03-08T02:30:00)",
         "America/New_York",
         "2026-01-01T00:00:00Z",
         {"2026-03-08T07:00:00Z"}},
};

static const struct {
	const char *expr;
	const char *needle; /* in the error */
} bad[] = {
        {"cron(0 25 * * ? *)", "field 2 (hours) '25'"},
        {"cron(0 10 * * * *)", "must be '?'"},
        {"cron(0 10 ? * ? *)", "must be '?'"},
        {"cron(0 10 * * ?)", "takes 6 fields"},
        {"cron(0 10 32 * ? *)", "field 3 (day-of-month) '32'"},
        {"cron(0 10 ? * 8 *)", "field 5 (day-of-week) '8'"},
        {"cron(0 10 ? * 2#6 *)", "week 1-5"},
        {"cron(0 10 ? * MON-FRI 1969)", "field 6 (year)"},
        {"cron(0 10 ? FOO * *)", "field 4 (month) 'FOO'"},
        {"cron(5-1 10 * * ? *)", "backwards"},
        {"cron(*/0 10 * * ? *)", "step"},
        {"cron(0 10 * * ? *", "closing"},
        {"cron(0,,5 10 * * ? *)", "empty list item"},
        {"rate(0 minutes)", "1-1000000"},
        {"rate(1 minutes)", "use 'minute'"},
        {"rate(5 minute)", "use 'minutes'"},
        {"rate(5 weeks)", "unit 'weeks'"},
        {"rate(five minutes)", "a number and a unit"},
        {"at(2026-13-01T00:00:00)", "at() takes"},
        {"at(2026-02-29T00:00:00)", "at() takes"},
        {"60 * * * *", "field 1 (minute) '60'"},
        {"* * * *", "5 fields"},
        {"0 0 * * 8", "field 5 (day-of-week) '8'"},
        {"0 0 ? * *", "'?' is for cron"},
        {"@reboot", "not a schedule macro"},
        {"", "empty"},
        {"hourly(1)", "not cron"},
};

static void
test_cases(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct expect *c = &cases[i];
		struct mesh_sched_expr e;
		struct mesh_tz *tz = NULL;
		int64_t t;
		char got[256] = "", want[256] = "";

		if (mesh_sched_parse(c->expr, &e) != MESH_OK ||
		    mesh_tz_load(c->tz, NULL, &tz) != MESH_OK ||
		    mesh_sched_parse_time(c->from, NULL, &t) != MESH_OK) {
			ok(false, "%s in %s: %s", c->expr, c->tz,
			   mesh_errdetail());
			mesh_tz_free(tz);
			continue;
		}
		int64_t anchor = t;
		for (int k = 0; k < 6 && c->next[k] != NULL; k++) {
			char iso[32];
			strcat(want, c->next[k]);
			strcat(want, " ");
			if (mesh_sched_next(&e, tz, t, anchor, &t) !=
			    MESH_OK) {
				strcat(got, "(end) ");
				break;
			}
			mesh_sched_format(t, iso);
			strcat(got, iso);
			strcat(got, " ");
		}
		if (c->next[0] == NULL) {
			ok(mesh_sched_next(&e, tz, t, anchor, &t) ==
			           MESH_ENOTFOUND,
			   "%s from %s never fires", c->expr, c->from);
		} else {
			is_str(got, want, "%s in %s from %s", c->expr, c->tz,
			       c->from);
		}
		mesh_tz_free(tz);
	}
}

static void
test_bad(void)
{
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct mesh_sched_expr e;
		mesh_err err = mesh_sched_parse(bad[i].expr, &e);
		ok(err == MESH_EINVAL &&
		           strstr(mesh_errdetail(), bad[i].needle),
		   "'%s' is refused: %s", bad[i].expr, mesh_errdetail());
	}
	{
		struct mesh_tz *tz = NULL;
		is_int(mesh_tz_load("Mars/Olympus", NULL, &tz), MESH_ENOTFOUND,
		       "an unknown zone is not found");
		has_str(mesh_errdetail(), "unknown time zone 'Mars/Olympus'",
		        "by name");
		is_int(mesh_tz_load("../../etc/passwd", NULL, &tz),
		       MESH_EINVAL, "a path is not a zone name");
		is_int(mesh_tz_load("zone.tab", NULL, &tz), MESH_EINVAL,
		       "a file that is not TZif is refused");
	}
}

/* Random input, built from the pieces expressions are made of: parse never
 * crashes; what parses, evaluates. Runs under ASan and UBSan too. */
static void
test_random(void)
{
	static const char *const good[] = {
	        "*",   "*",       "*",   "?",       "0",    "5",   "1-5",
	        "*/5", "0/15",    "L",   "LW",      "15W",  "2#3", "6L",
	        "MON", "MON-FRI", "JAN", "jan-mar", "0,30", "7",   "2026-2199",
	        "31",  "29",      "2",   "1"};
	static const char *const broken[] = {"60",  "5-1",        "W", "1,,2",
	                                     "8",   "#",          "-", "/",
	                                     "*/0", "99999999999"};
	unsigned long long rng = 42;
	struct mesh_tz *tz = NULL;
	int parsed = 0, odd = 0;

	mesh_tz_load("Europe/Berlin", NULL, &tz);
	for (int i = 0; i < 20000; i++) {
		char buf[200] = "";
		int fields, cron;
		struct mesh_sched_expr e;
		rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
		cron = (int)((rng >> 40) & 1);
		fields = cron ? 6 : 5 + (int)((rng >> 50) % 2);
		if (cron) {
			strcat(buf, "cron(");
		}
		for (int k = 0; k < fields; k++) {
			rng = rng * 6364136223846793005ULL + 1;
			if ((rng >> 60) == 0) {
				strcat(buf, broken[(rng >> 33) %
				                   (sizeof(broken) /
				                    sizeof(broken[0]))]);
			} else {
				strcat(buf,
				       good[(rng >> 33) %
				            (sizeof(good) / sizeof(good[0]))]);
			}
			strcat(buf, k + 1 < fields ? " " : "");
		}
		if (cron) {
			strcat(buf, ")");
		}
		mesh_err err = mesh_sched_parse(buf, &e);
		if (err == MESH_OK) {
			int64_t t = 0;
			parsed++;
			err = mesh_sched_next(&e, tz, 1767225600, 1767225600,
			                      &t);
			odd += !(err == MESH_ENOTFOUND ||
			         (err == MESH_OK && t > 1767225600));
		} else {
			odd += err != MESH_EINVAL;
		}
	}
	ok(parsed > 100 && odd == 0,
	   "20000 random expressions are refused with MESH_EINVAL, or parse "
	   "and give a later firing or none (%d parsed, %d odd)",
	   parsed, odd);
	mesh_tz_free(tz);
}

static void
test_window(void)
{
	struct mesh_schedule s;
	int64_t lo = INT64_MAX, hi = 0;
	bool stable = true;

	mesh_schedule_init(&s);
	snprintf(s.name, sizeof(s.name), "nightly");
	s.window_s = 900;
	for (int64_t t = 0; t < 100 * 86400; t += 86400) {
		int64_t o = mesh_schedule_window_offset(&s, t);
		lo = o < lo ? o : lo;
		hi = o > hi ? o : hi;
		stable = stable && o == mesh_schedule_window_offset(&s, t);
	}
	ok(lo >= 0 && hi < 900 && hi - lo > 450,
	   "a 15-minute window spreads firings over it (%lld-%lld s)",
	   (long long)lo, (long long)hi);
	ok(stable, "and every replica computes the same point");
	s.window_s = 0;
	is_int(mesh_schedule_window_offset(&s, 12345), 0,
	       "no window, no delay");
}

/* Records: the fast reader and jansson agree on what they read, and
 * refuse the same things. */
static void
test_records(void)
{
	struct mesh_schedule s, back;
	char *json = NULL;
	static const char *const good[] = {
	        /* whitespace, another order, unknown keys (nested too),
	         * optional keys missing, escapes */
	        " { \"created\" : 5 , \"name\":\"a.b-c\",\"expression\":"
	        "\"rate(1 hour)\",\"tz\":\"UTC\",\"target\":\"queue:q\","
	        "\"type\":\"t\",\"body\":\"x\\\"y\\n\\u0041\",\"start\":0,"
	        "\"end\":0,\"missed\":\"all\",\"enabled\":false,"
	        "\"delete_after\":true,\"extra\":{\"k\":[1,null]}} ",
	        "{\"name\":\"u\",\"expression\":\"rate(1 hour)\",\"tz\":"
	        "\"UTC\",\"target\":\"queue:q\",\"type\":\"t\",\"body\":"
	        "\"caf\u00e9 \xc3\xa9\",\"start\":-1,\"end\":0,\"missed\":"
	        "\"skip\",\"enabled\":true,\"delete_after\":false,"
	        "\"created\":7,\"window\":60,\"retry_max\":3,"
	        "\"max_age\":600,\"dlq\":\"dead\"}",
	};
	static const char *const malformed[] = {
	        "{\"name\":\"a\"}",
	        "{\"name\":1,\"expression\":\"rate(1 hour)\",\"tz\":\"UTC\","
	        "\"target\":\"queue:q\",\"type\":\"t\",\"body\":\"\","
	        "\"start\":0,\"end\":0,\"missed\":\"all\",\"enabled\":true,"
	        "\"delete_after\":true,\"created\":1}",
	        "{\"name\":\"a\",\"expression\":\"rate(1 hour)\",\"tz\":"
	        "\"UTC\",\"target\":\"queue:q\",\"type\":\"t\",\"body\":"
	        "\"\",\"start\":1.5,\"end\":0,\"missed\":\"all\",\"enabled\":"
	        "true,\"delete_after\":true,\"created\":1}",
	        "{\"name\":\"a\",\"expression\":\"rate(1 hour)\",\"tz\":"
	        "\"UTC\",\"target\":\"queue:q\",\"type\":\"t\",\"body\":"
	        "\"\",\"start\":0,\"end\":0,\"missed\":\"all\",\"enabled\":"
	        "1,\"delete_after\":true,\"created\":1}",
	        "{\"name\":\"a\",\"expression\":\"rate(1 hour)\",\"tz\":"
	        "\"UTC\",\"target\":\"queue:q\",\"type\":\"t\",\"body\":"
	        "\"\\u0000\",\"start\":0,\"end\":0,\"missed\":\"all\","
	        "\"enabled\":true,\"delete_after\":true,\"created\":1}",
	        "{\"name\":\"a\",\"expression\":\"rate(1 hour)\",\"tz\":"
	        "\"UTC\",\"target\":\"queue:q\",\"type\":\"t\",\"body\":"
	        "\"\",\"start\":0,\"end\":0,\"missed\":\"all\",\"enabled\":"
	        "true,\"delete_after\":true,\"created\":1} x",
	        "",
	};

	mesh_schedule_init(&s);
	snprintf(s.name, sizeof(s.name), "rt");
	snprintf(s.expression, sizeof(s.expression), "cron(0 12 * * ? *)");
	snprintf(s.tz, sizeof(s.tz), "Europe/Berlin");
	snprintf(s.target, sizeof(s.target), "queue:q");
	s.body = strdup("tab\tquote\" backslash\\ \u00e9t\xc3\xa9 <x>");
	s.created = 1767225600;
	s.window_s = 120;
	ok(mesh_schedule_check(&s) == MESH_OK &&
	           mesh_schedule_to_json(&s, &json) == MESH_OK &&
	           mesh_schedule_from_json(json, strlen(json), &back) ==
	                   MESH_OK,
	   "a schedule goes to JSON and back");
	is_str(back.body, s.body, "its body unchanged");
	is_int(back.window_s, 120, "its window");
	is_str(back.tz, "Europe/Berlin", "its zone");
	mesh_schedule_fini(&back);
	free(json);
	mesh_schedule_fini(&s);

	ok(mesh_schedule_from_json(good[0], strlen(good[0]), &back) == MESH_OK,
	   "a record with spaces, another key order and unknown keys");
	is_str(back.body, "x\"y\nA", "its escapes decoded");
	ok(!back.enabled && back.delete_after &&
	           back.missed == MESH_MISSED_ALL && back.retry_max == 185 &&
	           back.max_age_s == 86400 && back.created == 5,
	   "its flags, and defaults for the keys left out");
	mesh_schedule_fini(&back);
	ok(mesh_schedule_from_json(good[1], strlen(good[1]), &back) == MESH_OK,
	   "a record with non-ASCII text (read by jansson)");
	is_str(back.body, "caf\xc3\xa9 \xc3\xa9", "decoded the same");
	ok(back.start == -1 && back.window_s == 60 && back.retry_max == 3 &&
	           back.max_age_s == 600 && strcmp(back.dlq, "dead") == 0,
	   "with its optional keys");
	mesh_schedule_fini(&back);
	for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
		is_int(mesh_schedule_from_json(malformed[i],
		                               strlen(malformed[i]), &back),
		       MESH_EPARSE, "malformed record %zu is refused", i);
	}
}

int
main(void)
{
	test_records();
	test_window();
	test_cases();
	test_bad();
	test_random();
	return tap_done();
}
