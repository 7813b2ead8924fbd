/* expr.c: parsing schedule expressions and finding their next firing. */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expr.h"
#include "mesh/clock.h"
#include "mesh/err.h"

#define YEAR_MIN   MESH_TIME_YEAR_MIN
#define YEAR_MAX   MESH_TIME_YEAR_MAX
#define DST_WINDOW (3 * 3600) /* no zone moves its clock by more */

static const char *const month_names[] = {"JAN", "FEB", "MAR", "APR", "MAY",
                                          "JUN", "JUL", "AUG", "SEP", "OCT",
                                          "NOV", "DEC", NULL};
static const char *const day_names[] = {"SUN", "MON", "TUE", "WED",
                                        "THU", "FRI", "SAT", NULL};

/* Context for error messages. */
struct field {
	const char *expr;         /* the whole expression, for the message */
	int index;                /* 1-based */
	const char *name;         /* "day-of-month" */
	int lo, hi;               /* the range of values */
	const char *const *names; /* NULL or names for lo.. */
	int name_base;            /* value of names[0] */
};

static mesh_err
field_err(const struct field *f, const char *item, const char *why)
{
	return mesh_err_set(MESH_EINVAL, "%.100s: field %d (%s) '%.40s' %s",
	                    f->expr, f->index, f->name, item, why);
}

/* A number or a name; advances *p. */
static bool
value(const struct field *f, const char **p, int *out)
{
	const char *s = *p;

	if (isdigit((unsigned char)*s)) {
		long v = 0;
		while (isdigit((unsigned char)*s) && v < 100000) {
			v = v * 10 + (*s++ - '0');
		}
		*out = (int)v;
		*p = s;
		return true;
	}
	for (int i = 0; f->names != NULL && f->names[i] != NULL; i++) {
		if (strncasecmp(s, f->names[i], 3) == 0 &&
		    !isalpha((unsigned char)s[3])) {
			*out = f->name_base + i;
			*p = s + 3;
			return true;
		}
	}
	return false;
}

/* Parse one comma-separated list into bits (bit v for value v). Special
 * forms (L, W, #, ?) are handled by the callers before this. */
static mesh_err
parse_list(const struct field *f, const char *text, uint64_t *bits)
{
	char buf[128];
	char *save = NULL;

	if (strlen(text) >= sizeof(buf) || text[0] == '\0') {
		return field_err(f, text, "is empty or too long");
	}
	snprintf(buf, sizeof(buf), "%s", text);
	if (buf[strlen(buf) - 1] == ',' || strstr(buf, ",,") != NULL ||
	    buf[0] == ',') {
		return field_err(f, text, "has an empty list item");
	}
	for (char *item = strtok_r(buf, ",", &save); item != NULL;
	     item = strtok_r(NULL, ",", &save)) {
		const char *p = item;
		int lo, hi, step = 1;
		if (*p == '*') {
			lo = f->lo;
			hi = f->hi;
			p++;
		} else {
			if (!value(f, &p, &lo)) {
				return field_err(f, item, "is not a value");
			}
			hi = lo;
			if (*p == '-') {
				p++;
				if (!value(f, &p, &hi)) {
					return field_err(f, item,
					                 "has no range end");
				}
			}
		}
		if (*p == '/') {
			p++;
			if (!isdigit((unsigned char)*p) ||
			    !value(f, &p, &step) || step < 1) {
				return field_err(f, item,
				                 "has a step that is not a "
				                 "positive number");
			}
			if (hi == lo && item[0] != '*') {
				hi = f->hi; /* "5/15": from 5 to the end */
			}
		}
		if (*p != '\0') {
			return field_err(f, item,
			                 "is not a value, range, "
			                 "list or step");
		}
		if (lo < f->lo || hi > f->hi || lo > f->hi || hi < f->lo) {
			char why[64];
			snprintf(why, sizeof(why), "is out of range %d-%d",
			         f->lo, f->hi);
			return field_err(f, item, why);
		}
		if (lo > hi) {
			return field_err(f, item,
			                 "is a range that runs "
			                 "backwards");
		}
		for (int v = lo; v <= hi; v += step) {
			bits[(v - f->lo) / 64] |= 1ULL << ((v - f->lo) % 64);
		}
	}
	return MESH_OK;
}

/* Shift a field's bits so that bit v stands for value v. */
static uint64_t
from_lo(const struct field *f, uint64_t bits)
{
	return f->lo > 0 ? bits << f->lo : bits;
}

/* ---- EventBridge day fields ----------------------------------------------
 */

static mesh_err
parse_eb_dom(struct field *f, const char *t, struct mesh_sched_expr *e)
{
	uint64_t bits = 0;
	size_t n = strlen(t);

	/* '?' leaves the choice to day-of-week: every day passes here. */
	if (strcmp(t, "?") == 0 || strcmp(t, "*") == 0) {
		e->dom = ~0u;
		return MESH_OK;
	}
	if (strcmp(t, "L") == 0) {
		e->dom_last = true;
		return MESH_OK;
	}
	if (strcmp(t, "LW") == 0) {
		e->dom_last_weekday = true;
		return MESH_OK;
	}
	if (n >= 2 && t[n - 1] == 'W') {
		char num[8];
		int d;
		const char *p = num;
		if (n - 1 >= sizeof(num)) {
			return field_err(f, t, "is not a day");
		}
		memcpy(num, t, n - 1);
		num[n - 1] = '\0';
		if (!value(f, &p, &d) || *p != '\0' || d < 1 || d > 31) {
			return field_err(f, t, "needs a day 1-31 before W");
		}
		e->dom_weekday |= 1u << d;
		return MESH_OK;
	}
	if (strpbrk(t, "LW#?") != NULL) {
		return field_err(f, t, "mixes L, W, # or ? with a list");
	}
	mesh_err err = parse_list(f, t, &bits);
	e->dom = (uint32_t)from_lo(f, bits);
	return err;
}

static mesh_err
parse_eb_dow(struct field *f, const char *t, struct mesh_sched_expr *e)
{
	uint64_t bits = 0;
	size_t n = strlen(t);
	const char *hash = strchr(t, '#');
	mesh_err err;

	if (strcmp(t, "?") == 0 || strcmp(t, "*") == 0) {
		e->dow = 0x7f;
		return MESH_OK;
	}
	if (strcmp(t, "L") == 0) {
		e->dow = 1u << 6; /* the last day of the week: Saturday */
		return MESH_OK;
	}
	if (hash != NULL || (n >= 2 && t[n - 1] == 'L')) {
		const char *p = t;
		int d, k = 0;
		if (!value(f, &p, &d) || d < 1 || d > 7) {
			return field_err(f, t,
			                 "needs a day 1-7 or SUN-SAT "
			                 "before L or #");
		}
		if (hash != NULL) {
			if (p != hash || sscanf(hash + 1, "%d", &k) != 1 ||
			    k < 1 || k > 5 ||
			    strspn(hash + 1, "0123456789") !=
			            strlen(hash + 1)) {
				return field_err(f, t,
				                 "needs # and a week 1-5 "
				                 "after the day");
			}
			e->dow_nth[d - 1] |= (uint8_t)(1u << k);
		} else {
			if (strcmp(p, "L") != 0) {
				return field_err(f, t, "is not a day and L");
			}
			e->dow_last |= (uint8_t)(1u << (d - 1));
		}
		return MESH_OK;
	}
	if (strpbrk(t, "LW?") != NULL) {
		return field_err(f, t, "mixes L, W or ? with a list");
	}
	err = parse_list(f, t, &bits); /* bit 0 = 1 = SUN */
	e->dow = (uint8_t)bits;
	return err;
}

/* ---- the three syntaxes --------------------------------------------------
 */

static int
split(char *s, char **fields, int max)
{
	int n = 0;
	char *save = NULL;

	for (char *t = strtok_r(s, " \t", &save); t != NULL;
	     t = strtok_r(NULL, " \t", &save)) {
		if (n == max) {
			return max + 1;
		}
		fields[n++] = t;
	}
	return n;
}

static mesh_err
parse_eventbridge(const char *expr, char *body, struct mesh_sched_expr *e)
{
	char *f[7];
	int n = split(body, f, 6);
	uint64_t bits;
	mesh_err err;
	struct field fl;

	if (n != 6) {
		return mesh_err_set(MESH_EINVAL,
		                    "%.100s: cron() takes 6 fields (minutes "
		                    "hours day-of-month month day-of-week "
		                    "year), not %d",
		                    expr, n > 6 ? 7 : n);
	}
	e->kind = MESH_SCHED_CRON;
	e->sec = 1;
	fl = (struct field){expr, 1, "minutes", 0, 59, NULL, 0};
	bits = 0;
	if ((err = parse_list(&fl, f[0], &bits)) != MESH_OK) {
		return err;
	}
	e->min = bits;
	fl = (struct field){expr, 2, "hours", 0, 23, NULL, 0};
	bits = 0;
	if ((err = parse_list(&fl, f[1], &bits)) != MESH_OK) {
		return err;
	}
	e->hour = (uint32_t)bits;
	fl = (struct field){expr, 3, "day-of-month", 1, 31, NULL, 0};
	if ((err = parse_eb_dom(&fl, f[2], e)) != MESH_OK) {
		return err;
	}
	fl = (struct field){expr, 4, "month", 1, 12, month_names, 1};
	bits = 0;
	if ((err = parse_list(&fl, f[3], &bits)) != MESH_OK) {
		return err;
	}
	e->month = (uint16_t)from_lo(&fl, bits);
	fl = (struct field){expr, 5, "day-of-week", 1, 7, day_names, 1};
	if ((err = parse_eb_dow(&fl, f[4], e)) != MESH_OK) {
		return err;
	}
	if ((strcmp(f[2], "?") == 0) == (strcmp(f[4], "?") == 0)) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "%.100s: one of day-of-month (field 3) and "
		        "day-of-week (field 5) must be '?', and not "
		        "both",
		        expr);
	}
	fl = (struct field){expr, 6, "year", YEAR_MIN, YEAR_MAX, NULL, 0};
	return parse_list(&fl, f[5], e->year);
}

static mesh_err
parse_unix(const char *expr, char *body, struct mesh_sched_expr *e)
{
	static const struct {
		const char *name, *expansion;
	} macros[] = {
	        {"@yearly", "0 0 1 1 *"},  {"@annually", "0 0 1 1 *"},
	        {"@monthly", "0 0 1 * *"}, {"@weekly", "0 0 * * 0"},
	        {"@daily", "0 0 * * *"},   {"@midnight", "0 0 * * *"},
	        {"@hourly", "0 * * * *"},
	};
	char expanded[32];
	char *f[7];
	int n, i = 0;
	uint64_t bits;
	struct field fl;
	mesh_err err;

	if (body[0] == '@') {
		for (size_t k = 0; k < sizeof(macros) / sizeof(macros[0]);
		     k++) {
			if (strcmp(body, macros[k].name) == 0) {
				snprintf(expanded, sizeof(expanded), "%s",
				         macros[k].expansion);
				body = expanded;
				break;
			}
		}
		if (body != expanded) {
			return mesh_err_set(MESH_EINVAL,
			                    "%.100s: not a schedule macro "
			                    "(@yearly, @monthly, @weekly, "
			                    "@daily, @hourly)",
			                    expr);
		}
	}
	n = split(body, f, 6);
	if (n != 5 && n != 6) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "%.100s: Unix cron takes 5 fields (minute "
		        "hour day-of-month month day-of-week), or 6 "
		        "with seconds first; not %d",
		        expr, n > 6 ? 7 : n);
	}
	e->kind = MESH_SCHED_UNIX;
	memset(e->year, 0xff, sizeof(e->year));
	if (strchr(expr, '?') != NULL) {
		return mesh_err_set(MESH_EINVAL,
		                    "%.100s: '?' is for cron(...); Unix cron "
		                    "uses '*'",
		                    expr);
	}
	e->sec = 1;
	if (n == 6) {
		fl = (struct field){expr, 1, "second", 0, 59, NULL, 0};
		bits = 0;
		if ((err = parse_list(&fl, f[0], &bits)) != MESH_OK) {
			return err;
		}
		e->sec = bits;
		i = 1;
	}
	fl = (struct field){expr, i + 1, "minute", 0, 59, NULL, 0};
	bits = 0;
	if ((err = parse_list(&fl, f[i], &bits)) != MESH_OK) {
		return err;
	}
	e->min = bits;
	fl = (struct field){expr, i + 2, "hour", 0, 23, NULL, 0};
	bits = 0;
	if ((err = parse_list(&fl, f[i + 1], &bits)) != MESH_OK) {
		return err;
	}
	e->hour = (uint32_t)bits;
	e->fixed_time = f[i][0] != '*' && f[i + 1][0] != '*';
	fl = (struct field){expr, i + 3, "day-of-month", 1, 31, NULL, 0};
	bits = 0;
	if ((err = parse_list(&fl, f[i + 2], &bits)) != MESH_OK) {
		return err;
	}
	e->dom = (uint32_t)from_lo(&fl, bits);
	e->dom_star = f[i + 2][0] == '*';
	fl = (struct field){expr, i + 4, "month", 1, 12, month_names, 1};
	bits = 0;
	if ((err = parse_list(&fl, f[i + 3], &bits)) != MESH_OK) {
		return err;
	}
	e->month = (uint16_t)from_lo(&fl, bits);
	fl = (struct field){expr, i + 5, "day-of-week", 0, 7, day_names, 0};
	bits = 0;
	if ((err = parse_list(&fl, f[i + 4], &bits)) != MESH_OK) {
		return err;
	}
	e->dow = (uint8_t)((bits | (bits >> 7)) & 0x7f); /* 7 is Sunday */
	e->dow_star = f[i + 4][0] == '*';
	return MESH_OK;
}

static mesh_err
parse_rate(const char *expr, const char *body, struct mesh_sched_expr *e)
{
	static const struct {
		const char *one, *many;
		int64_t seconds;
	} units[] = {{"second", "seconds", 1},
	             {"minute", "minutes", 60},
	             {"hour", "hours", 3600},
	             {"day", "days", 86400}};
	char unit[16];
	long long n;
	int used = 0;

	if (sscanf(body, "%lld %15s %n", &n, unit, &used) != 2 ||
	    body[used] != '\0' || !isdigit((unsigned char)body[0])) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "%.100s: rate() takes a number and a unit, "
		        "like rate(5 minutes)",
		        expr);
	}
	if (n < 1 || n > 1000000) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "%.100s: the rate value %lld is not 1-1000000", expr,
		        n);
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(unit, units[i].one) == 0 ||
		    strcmp(unit, units[i].many) == 0) {
			/* EventBridge's rule: singular for 1, plural else. */
			if ((n == 1) != (strcmp(unit, units[i].one) == 0)) {
				return mesh_err_set(
				        MESH_EINVAL,
				        "%.100s: use '%s' with %lld", expr,
				        n == 1 ? units[i].one : units[i].many,
				        n);
			}
			e->kind = MESH_SCHED_RATE;
			e->rate_s = n * units[i].seconds;
			return MESH_OK;
		}
	}
	return mesh_err_set(MESH_EINVAL,
	                    "%.100s: the rate unit '%s' is not second(s), "
	                    "minute(s), hour(s) or day(s)",
	                    expr, unit);
}

/* "yyyy-mm-ddThh:mm:ss" as local seconds; false when malformed. */
static mesh_err
parse_at(const char *expr, const char *body, struct mesh_sched_expr *e)
{
	const char *rest;

	if (!mesh_time_parse_local(body, true, &e->at_local, &rest) ||
	    *rest != '\0') {
		return mesh_err_set(MESH_EINVAL,
		                    "%.100s: at() takes a date and time "
		                    "yyyy-mm-ddThh:mm:ss (in the schedule's "
		                    "zone)",
		                    expr);
	}
	e->kind = MESH_SCHED_AT;
	return MESH_OK;
}

mesh_err
mesh_sched_parse(const char *text, struct mesh_sched_expr *out)
{
	struct mesh_sched_expr e;
	char buf[MESH_SCHED_EXPR_MAX + 1];
	size_t n;
	mesh_err err;

	memset(&e, 0, sizeof(e));
	if (text == NULL || (n = strlen(text)) == 0 ||
	    n > MESH_SCHED_EXPR_MAX) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "schedule expression: empty or longer than "
		        "%d characters",
		        MESH_SCHED_EXPR_MAX);
	}
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)text[i] < 0x20 ||
		    (unsigned char)text[i] > 0x7e) {
			return mesh_err_set(MESH_EINVAL,
			                    "schedule expression: holds a "
			                    "character that is not printable "
			                    "ASCII");
		}
	}
	memcpy(buf, text, n + 1);
	for (const char *const *k =
	             (const char *const[]){"cron(", "rate(", "at(", NULL};
	     *k != NULL; k++) {
		size_t kl = strlen(*k);
		if (strncmp(buf, *k, kl) != 0) {
			continue;
		}
		if (buf[n - 1] != ')') {
			return mesh_err_set(MESH_EINVAL,
			                    "%.100s: no closing ')'", text);
		}
		buf[n - 1] = '\0';
		err = (*k)[0] == 'c'   ? parse_eventbridge(text, buf + kl, &e)
		      : (*k)[0] == 'r' ? parse_rate(text, buf + kl, &e)
		                       : parse_at(text, buf + kl, &e);
		if (err == MESH_OK) {
			*out = e;
		}
		return err;
	}
	if (strchr(buf, '(') != NULL) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "%.100s: not cron(...), rate(...), at(...) "
		        "or a Unix cron line",
		        text);
	}
	err = parse_unix(text, buf, &e);
	if (err == MESH_OK) {
		*out = e;
	}
	return err;
}

/* ---- when -------------------------------------------------------------- */

static bool
year_in(const struct mesh_sched_expr *e, int64_t y)
{
	int64_t i = y - YEAR_MIN;

	if (e->kind == MESH_SCHED_UNIX) {
		return true;
	}
	return i >= 0 && i <= YEAR_MAX - YEAR_MIN &&
	       (e->year[i / 64] >> (i % 64)) & 1;
}

static unsigned
month_days(int64_t y, unsigned m)
{
	int64_t a = mesh_days_from_civil(y, m, 1);
	int64_t b = m == 12 ? mesh_days_from_civil(y + 1, 1, 1)
	                    : mesh_days_from_civil(y, m + 1, 1);
	return (unsigned)(b - a);
}

static int
weekday(int64_t days)
{
	int w = (int)((days + 4) % 7);
	return w < 0 ? w + 7 : w;
}

/* The weekday (Mon-Fri) nearest to day d of the month, not leaving it. */
static unsigned
nearest_weekday(int64_t y, unsigned m, unsigned d)
{
	unsigned dim = month_days(y, m);
	int w;

	if (d > dim) {
		d = dim;
	}
	w = weekday(mesh_days_from_civil(y, m, d));
	if (w == 6) { /* Saturday: Friday, or Monday at the month start */
		return d > 1 ? d - 1 : d + 2;
	}
	if (w == 0) { /* Sunday: Monday, or Friday at the month end */
		return d < dim ? d + 1 : d - 2;
	}
	return d;
}

static bool
day_matches(const struct mesh_sched_expr *e, int64_t y, unsigned m, unsigned d)
{
	int64_t days = mesh_days_from_civil(y, m, d);
	int w = weekday(days);
	unsigned dim = month_days(y, m);
	bool dom, dow;

	dom = (e->dom >> d) & 1;
	if (e->dom_last && d == dim) {
		dom = true;
	}
	if (e->dom_last_weekday && d == nearest_weekday(y, m, dim)) {
		dom = true;
	}
	for (unsigned k = 1; e->dom_weekday != 0 && k <= 31; k++) {
		if ((e->dom_weekday >> k) & 1 && k <= dim &&
		    d == nearest_weekday(y, m, k)) {
			dom = true;
		}
	}
	dow = (e->dow >> w) & 1;
	if ((e->dow_last >> w) & 1 && d + 7 > dim) {
		dow = true;
	}
	if ((e->dow_nth[w] >> ((d - 1) / 7 + 1)) & 1) {
		dow = true;
	}
	if (e->kind == MESH_SCHED_CRON) {
		return dom && dow; /* one of them is '?', which passes all */
	}
	/* Vixie: restricted both (neither starts with '*'): either. */
	if (!e->dom_star && !e->dow_star) {
		return dom || dow;
	}
	return dom && dow;
}

/* Consider local time L: add its firing instants (by the DST rules of the
 * expression's kind) that are after `after` into *best. */
static void
consider(const struct mesh_sched_expr *e, const struct mesh_tz *tz,
         int64_t local, int64_t after, int64_t *best)
{
	int64_t t[2], gap_end = 0;
	int n = mesh_tz_resolve(tz, local, t, &gap_end);
	int64_t cand[2];
	int nc = 0;

	if (n == 1) {
		cand[nc++] = t[0];
	} else if (n == 2) {
		cand[nc++] = t[0];
		if (e->kind == MESH_SCHED_UNIX && !e->fixed_time) {
			cand[nc++] = t[1]; /* the clock passes twice */
		}
	} else if (e->kind == MESH_SCHED_AT ||
	           (e->kind == MESH_SCHED_UNIX && e->fixed_time)) {
		cand[nc++] = gap_end;
	}
	for (int i = 0; i < nc; i++) {
		if (cand[i] > after &&
		    (*best == INT64_MIN || cand[i] < *best)) {
			*best = cand[i];
		}
	}
}

/* How much further to look once a firing at instant t is found: nothing
 * when no transition is near (wall time and instants keep step), else the
 * DST window, since a repeated hour can put a later wall time earlier. */
static int64_t
settle(const struct mesh_tz *tz, int64_t t)
{
	int32_t off = mesh_tz_offset(tz, t);

	return mesh_tz_offset(tz, t - DST_WINDOW) != off ||
	                       mesh_tz_offset(tz, t + DST_WINDOW) != off
	               ? DST_WINDOW
	               : 0;
}

static int
next_bit(uint64_t bits, int from, int to)
{
	for (int i = from; i <= to; i++) {
		if ((bits >> i) & 1) {
			return i;
		}
	}
	return -1;
}

static mesh_err
cron_next(const struct mesh_sched_expr *e, const struct mesh_tz *tz,
          int64_t after, int64_t *next)
{
	/* Walk local wall times upward from a little before `after`'s
	 * local time; once a firing is found, look a DST window further, since
	 * a repeated hour can put a later wall time at an earlier instant. */
	int32_t off = mesh_tz_offset(tz, after);
	/* Away from a transition, wall time and instants keep step: start
	 * at after's own wall time. */
	bool near = mesh_tz_offset(tz, after - DST_WINDOW) != off ||
	            mesh_tz_offset(tz, after + DST_WINDOW) != off;
	int64_t start = after + off - (near ? DST_WINDOW : 0);
	int64_t start_day = start / 86400 - (start % 86400 < 0);
	int64_t y0;
	unsigned m0, d0;
	int64_t best = INT64_MIN, stop = INT64_MAX;

	mesh_civil_from_days(start_day, &y0, &m0, &d0);
	for (int64_t y = y0;
	     y <= (e->kind == MESH_SCHED_UNIX ? y0 + 30 : YEAR_MAX); y++) {
		if (!year_in(e, y)) {
			continue;
		}
		for (unsigned m = y == y0 ? m0 : 1; m <= 12; m++) {
			if (!((e->month >> m) & 1)) {
				continue;
			}
			unsigned dim = month_days(y, m);
			for (unsigned d = (y == y0 && m == m0) ? d0 : 1;
			     d <= dim; d++) {
				int64_t day = mesh_days_from_civil(y, m, d);
				if (day * 86400 > stop) {
					goto done;
				}
				if (!day_matches(e, y, m, d)) {
					continue;
				}
				/* On the first day, start at start's own
				 * hour, minute and second. */
				int64_t into = day == start_day
				                       ? start - day * 86400
				                       : 0;
				int h0 = (int)(into / 3600);
				for (int h = next_bit(e->hour, h0, 23); h >= 0;
				     h = next_bit(e->hour, h + 1, 23)) {
					int mi0 =
					        h == h0 ? (int)(into / 60 % 60)
					                : 0;
					for (int mi =
					             next_bit(e->min, mi0, 59);
					     mi >= 0;
					     mi = next_bit(e->min, mi + 1,
					                   59)) {
						int s0 = h == h0 && mi == mi0
						                 ? (int)(into %
						                         60)
						                 : 0;
						for (int s = next_bit(e->sec,
						                      s0, 59);
						     s >= 0;
						     s = next_bit(e->sec,
						                  s + 1, 59)) {
							int64_t L =
							        day * 86400 +
							        h * 3600 +
							        mi * 60 + s;
							if (L < start) {
								continue;
							}
							if (L > stop) {
								goto done;
							}
							consider(e, tz, L,
							         after, &best);
							if (best != INT64_MIN &&
							    stop == INT64_MAX) {
								stop = L +
								       settle(tz,
								              best);
							}
						}
					}
				}
			}
		}
	}
done:
	if (best == INT64_MIN) {
		return mesh_err_set(MESH_ENOTFOUND,
		                    "the schedule never fires after this");
	}
	*next = best;
	return MESH_OK;
}

mesh_err
mesh_sched_next(const struct mesh_sched_expr *e, const struct mesh_tz *tz,
                int64_t after, int64_t anchor, int64_t *next)
{
	switch (e->kind) {
	case MESH_SCHED_RATE: {
		int64_t k;
		if (after < anchor) {
			*next = anchor + e->rate_s;
			return MESH_OK;
		}
		k = (after - anchor) / e->rate_s + 1;
		*next = anchor + k * e->rate_s;
		return MESH_OK;
	}
	case MESH_SCHED_AT: {
		int64_t best = INT64_MIN;
		consider(e, tz, e->at_local, after, &best);
		if (best == INT64_MIN) {
			return mesh_err_set(MESH_ENOTFOUND,
			                    "the one-time schedule is past");
		}
		*next = best;
		return MESH_OK;
	}
	case MESH_SCHED_CRON:
	case MESH_SCHED_UNIX:
		return cron_next(e, tz, after, next);
	}
	return mesh_err_set(MESH_EINVAL, "schedule expression: not parsed");
}

void
mesh_sched_format(int64_t t, char out[32])
{
	mesh_time_format(t, out);
}

mesh_err
mesh_sched_parse_time(const char *text, const struct mesh_tz *tz, int64_t *out)
{
	int64_t local, t[2], gap_end = 0;
	bool zoned;
	mesh_err err;

	if ((err = mesh_time_parse_zoned(text, &local, &zoned)) != MESH_OK) {
		return err;
	}
	if (zoned || tz == NULL) {
		*out = local;
		return MESH_OK;
	}
	int n = mesh_tz_resolve(tz, local, t, &gap_end);
	*out = n > 0 ? t[0] : gap_end;
	return MESH_OK;
}
