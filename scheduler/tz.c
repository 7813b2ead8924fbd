/* tz.c: TZif (RFC 8536) version 2+ files and POSIX TZ rules, just what
 * the scheduler needs: the UTC offset at an instant, and the instants of a
 * local wall time. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh/clock.h"
#include "mesh/err.h"
#include "tz.h"

#define MAX_TRANSITIONS 4096
#define MAX_TYPES       256

/* A POSIX TZ rule: "STDoffset[DST[offset][,start[/time],end[/time]]]". */
struct posix_date {
	char kind;    /* 'M' (month.week.day), 'J' (1-365, no Feb 29), 'D' */
	int m, w, d;  /* M form; d also the day number of J and D forms */
	int32_t time; /* seconds after local midnight (may be negative) */
};

struct posix_rule {
	bool valid;
	int32_t std_off; /* seconds east of UTC */
	int32_t dst_off;
	bool has_dst;
	struct posix_date start, end;
};

struct mesh_tz {
	char name[128];
	int64_t *trans;      /* transition instants, ascending */
	uint8_t *trans_type; /* the type in force from each */
	size_t n_trans;
	int32_t *type_off; /* each type's offset */
	size_t n_types;
	struct posix_rule rule;
};

static bool
leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned
days_in_month(int64_t y, unsigned m)
{
	static const unsigned dim[] = {31, 28, 31, 30, 31, 30,
	                               31, 31, 30, 31, 30, 31};
	return m == 2 && leap(y) ? 29 : dim[m - 1];
}

/* ---- POSIX TZ rules ------------------------------------------------------
 */

static const char *
posix_name(const char *p)
{
	if (*p == '<') {
		const char *e = strchr(p, '>');
		return e ? e + 1 : NULL;
	}
	const char *s = p;
	while ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')) {
		p++;
	}
	return p - s >= 3 ? p : NULL;
}

/* [+-]hh[:mm[:ss]] into seconds; POSIX offsets are west-positive, so the
 * caller negates. */
static const char *
posix_hms(const char *p, int32_t *out)
{
	int sign = 1, h = 0, m = 0, s = 0, n = 0;

	if (*p == '+' || *p == '-') {
		sign = *p++ == '-' ? -1 : 1;
	}
	if (sscanf(p, "%d%n", &h, &n) != 1 || h < 0 || h > 167) {
		return NULL;
	}
	p += n;
	if (*p == ':') {
		if (sscanf(p + 1, "%d%n", &m, &n) != 1 || m < 0 || m > 59) {
			return NULL;
		}
		p += 1 + n;
		if (*p == ':') {
			if (sscanf(p + 1, "%d%n", &s, &n) != 1 || s < 0 ||
			    s > 59) {
				return NULL;
			}
			p += 1 + n;
		}
	}
	*out = sign * (h * 3600 + m * 60 + s);
	return p;
}

static const char *
posix_date(const char *p, struct posix_date *d)
{
	int n = 0;

	d->time = 7200;
	if (*p == 'M') {
		d->kind = 'M';
		if (sscanf(p + 1, "%d.%d.%d%n", &d->m, &d->w, &d->d, &n) !=
		            3 ||
		    d->m < 1 || d->m > 12 || d->w < 1 || d->w > 5 ||
		    d->d < 0 || d->d > 6) {
			return NULL;
		}
		p += 1 + n;
	} else if (*p == 'J') {
		d->kind = 'J';
		if (sscanf(p + 1, "%d%n", &d->d, &n) != 1 || d->d < 1 ||
		    d->d > 365) {
			return NULL;
		}
		p += 1 + n;
	} else {
		d->kind = 'D';
		if (sscanf(p, "%d%n", &d->d, &n) != 1 || d->d < 0 ||
		    d->d > 365) {
			return NULL;
		}
		p += n;
	}
	if (*p == '/') {
		p = posix_hms(p + 1, &d->time);
	}
	return p;
}

static bool
posix_parse(const char *s, struct posix_rule *r)
{
	const char *p = posix_name(s);
	int32_t off;

	memset(r, 0, sizeof(*r));
	if (p == NULL || (p = posix_hms(p, &off)) == NULL) {
		return false;
	}
	r->std_off = -off;
	r->dst_off = r->std_off + 3600;
	if (*p != '\0') {
		const char *q = posix_name(p);
		if (q == NULL) {
			return false;
		}
		p = q;
		r->has_dst = true;
		if (*p != ',' && *p != '\0') {
			if ((p = posix_hms(p, &off)) == NULL) {
				return false;
			}
			r->dst_off = -off;
		}
		if (*p == '\0') {
			/* No rule given: the US rule of POSIX's default. */
			r->start = (struct posix_date){'M', 3, 2, 0, 7200};
			r->end = (struct posix_date){'M', 11, 1, 0, 7200};
		} else if (*p != ',' ||
		           (p = posix_date(p + 1, &r->start)) == NULL ||
		           *p != ',' ||
		           (p = posix_date(p + 1, &r->end)) == NULL ||
		           *p != '\0') {
			return false;
		}
	}
	r->valid = true;
	return true;
}

/* The local instant (as if UTC) of a rule date in year y. */
static int64_t
posix_when(const struct posix_date *d, int64_t y)
{
	int64_t day;

	if (d->kind == 'M') {
		int64_t first = mesh_days_from_civil(y, (unsigned)d->m, 1);
		int wd = (int)((first + 4) % 7); /* 1970-01-01 was Thursday */
		if (wd < 0) {
			wd += 7;
		}
		int mday = 1 + (d->d - wd + 7) % 7 + (d->w - 1) * 7;
		int dim = (int)days_in_month(y, (unsigned)d->m);
		while (mday > dim) {
			mday -= 7;
		}
		day = first + mday - 1;
	} else if (d->kind == 'J') {
		day = mesh_days_from_civil(y, 1, 1) + d->d - 1;
		if (leap(y) && d->d >= 60) {
			day++;
		}
	} else {
		day = mesh_days_from_civil(y, 1, 1) + d->d;
	}
	return day * 86400 + d->time;
}

static int32_t
posix_offset(const struct posix_rule *r, int64_t t)
{
	int64_t y;
	unsigned m, d;
	int64_t start, end;

	if (!r->has_dst) {
		return r->std_off;
	}
	mesh_civil_from_days((t + r->std_off) / 86400 -
	                             ((t + r->std_off) % 86400 < 0),
	                     &y, &m, &d);
	/* Transition instants in UTC: start is in standard time, end in
	 * daylight time. */
	start = posix_when(&r->start, y) - r->std_off;
	end = posix_when(&r->end, y) - r->dst_off;
	if (start < end) {
		return t >= start && t < end ? r->dst_off : r->std_off;
	}
	/* Southern hemisphere: daylight time spans the new year. */
	return t >= end && t < start ? r->std_off : r->dst_off;
}

/* ---- TZif ----------------------------------------------------------------
 */

static uint32_t
be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static int64_t
be64(const uint8_t *p)
{
	return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

/* The six counts of a TZif header. */
static void
counts(const uint8_t *h, uint32_t *isut, uint32_t *isstd, uint32_t *leap_n,
       uint32_t *time_n, uint32_t *type_n, uint32_t *char_n)
{
	*isut = be32(h + 20);
	*isstd = be32(h + 24);
	*leap_n = be32(h + 28);
	*time_n = be32(h + 32);
	*type_n = be32(h + 36);
	*char_n = be32(h + 40);
}

/* Parse a TZif file held in buf; false when malformed. */
static bool
tzif_parse(struct mesh_tz *tz, const uint8_t *buf, size_t len)
{
	const uint8_t *p = buf, *end = buf + len;
	uint32_t isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt;
	size_t skip;

	if (len < 44 || memcmp(p, "TZif", 4) != 0 || p[4] < '2') {
		return false;
	}
	/* Skip the version 1 block (32-bit times). */
	counts(p, &isutcnt, &isstdcnt, &leapcnt, &timecnt, &typecnt, &charcnt);
	skip = 44 + (size_t)timecnt * 5 + (size_t)typecnt * 6 + charcnt +
	       (size_t)leapcnt * 8 + isstdcnt + isutcnt;
	if (skip + 44 > len) {
		return false;
	}
	p += skip;
	if (memcmp(p, "TZif", 4) != 0) {
		return false;
	}
	counts(p, &isutcnt, &isstdcnt, &leapcnt, &timecnt, &typecnt, &charcnt);
	p += 44;
	if (timecnt > MAX_TRANSITIONS || typecnt == 0 || typecnt > MAX_TYPES ||
	    (size_t)(end - p) < (size_t)timecnt * 9 + (size_t)typecnt * 6 +
	                                charcnt + (size_t)leapcnt * 12 +
	                                isstdcnt + isutcnt) {
		return false;
	}
	tz->trans = calloc(timecnt ? timecnt : 1, sizeof(*tz->trans));
	tz->trans_type = calloc(timecnt ? timecnt : 1, 1);
	tz->type_off = calloc(typecnt, sizeof(*tz->type_off));
	if (!tz->trans || !tz->trans_type || !tz->type_off) {
		return false;
	}
	for (uint32_t i = 0; i < timecnt; i++) {
		tz->trans[i] = be64(p + 8 * i);
		if (i > 0 && tz->trans[i] <= tz->trans[i - 1]) {
			return false;
		}
	}
	p += 8 * (size_t)timecnt;
	for (uint32_t i = 0; i < timecnt; i++) {
		if (p[i] >= typecnt) {
			return false;
		}
		tz->trans_type[i] = p[i];
	}
	p += timecnt;
	for (uint32_t i = 0; i < typecnt; i++) {
		tz->type_off[i] = (int32_t)be32(p + 6 * i);
		if (tz->type_off[i] < -89999 || tz->type_off[i] > 93599) {
			return false;
		}
	}
	p += 6 * (size_t)typecnt + charcnt + (size_t)leapcnt * 12 + isstdcnt +
	     isutcnt;
	tz->n_trans = timecnt;
	tz->n_types = typecnt;
	/* The footer: "\n<POSIX TZ>\n". */
	if (p < end && *p == '\n') {
		const uint8_t *nl = memchr(p + 1, '\n', (size_t)(end - p - 1));
		char rule[128];
		if (nl != NULL && (size_t)(nl - p - 1) < sizeof(rule)) {
			memcpy(rule, p + 1, (size_t)(nl - p - 1));
			rule[nl - p - 1] = '\0';
			if (rule[0] != '\0' && !posix_parse(rule, &tz->rule)) {
				return false;
			}
		}
	}
	return true;
}

static bool
name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n >= 100 || name[0] == '/' || strstr(name, "..")) {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '/' || c == '_' ||
		      c == '-' || c == '+')) {
			return false;
		}
	}
	return true;
}

mesh_err
mesh_tz_load(const char *name, const char *dir, struct mesh_tz **out)
{
	char path[512];
	struct mesh_tz *tz;
	uint8_t *buf;
	size_t len;
	FILE *f;
	long size;

	if (name == NULL || !name_valid(name)) {
		return mesh_err_set(MESH_EINVAL,
		                    "time zone '%.100s': not a "
		                    "zone name",
		                    name ? name : "");
	}
	if (dir == NULL) {
		dir = getenv("TZDIR") ? getenv("TZDIR") : MESH_TZ_DIR;
	}
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((f = fopen(path, "rb")) == NULL) {
		return mesh_err_set(MESH_ENOTFOUND,
		                    "unknown time zone '%s' (no %s)", name,
		                    path);
	}
	if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 ||
	    size > 1 << 20 || fseek(f, 0, SEEK_SET) != 0) {
		fclose(f);
		return mesh_err_set(MESH_EINVAL,
		                    "time zone '%s': not a zone "
		                    "file",
		                    name);
	}
	buf = malloc((size_t)size + 1);
	tz = calloc(1, sizeof(*tz));
	len = buf ? fread(buf, 1, (size_t)size, f) : 0;
	fclose(f);
	if (buf == NULL || tz == NULL) {
		free(buf);
		free(tz);
		return mesh_err_set(MESH_ENOMEM, "time zone '%s'", name);
	}
	snprintf(tz->name, sizeof(tz->name), "%s", name);
	if (!tzif_parse(tz, buf, len)) {
		free(buf);
		mesh_tz_free(tz);
		return mesh_err_set(MESH_EINVAL,
		                    "time zone '%s': %s is not a TZif file of "
		                    "version 2 or later",
		                    name, path);
	}
	free(buf);
	*out = tz;
	return MESH_OK;
}

void
mesh_tz_free(struct mesh_tz *tz)
{
	if (tz == NULL) {
		return;
	}
	free(tz->trans);
	free(tz->trans_type);
	free(tz->type_off);
	free(tz);
}

const char *
mesh_tz_name(const struct mesh_tz *tz)
{
	return tz->name;
}

int32_t
mesh_tz_offset(const struct mesh_tz *tz, int64_t t)
{
	size_t lo = 0, hi = tz->n_trans;

	if (tz->n_trans == 0 || t < tz->trans[0]) {
		return tz->rule.valid && tz->n_trans == 0
		               ? posix_offset(&tz->rule, t)
		               : tz->type_off[0];
	}
	if (t >= tz->trans[tz->n_trans - 1] && tz->rule.valid) {
		return posix_offset(&tz->rule, t);
	}
	while (hi - lo > 1) { /* the last transition <= t */
		size_t mid = (lo + hi) / 2;
		if (tz->trans[mid] <= t) {
			lo = mid;
		} else {
			hi = mid;
		}
	}
	return tz->type_off[tz->trans_type[lo]];
}

int
mesh_tz_resolve(const struct mesh_tz *tz, int64_t local, int64_t out[2],
                int64_t *gap_end)
{
	/* Offsets change at most once within a day around any instant, so
	 * the offsets a day before and after are the only candidates. */
	int32_t a = mesh_tz_offset(tz, local - 86400);
	int32_t b = mesh_tz_offset(tz, local + 86400);
	int n = 0;

	if (mesh_tz_offset(tz, local - a) == a) {
		out[n++] = local - a;
	}
	if (b != a && mesh_tz_offset(tz, local - b) == b) {
		out[n++] = local - b;
	}
	if (n == 2 && out[0] > out[1]) {
		int64_t t = out[0];
		out[0] = out[1];
		out[1] = t;
	}
	if (n == 0 && gap_end != NULL) {
		/* The jump happens between local - a and local - b (the
		 * offset grows: b > a); find its instant. */
		int64_t lo = local - a, hi = local - b;
		if (lo > hi) {
			int64_t t = lo;
			lo = hi;
			hi = t;
		}
		while (hi - lo > 1) {
			int64_t mid = lo + (hi - lo) / 2;
			if (mesh_tz_offset(tz, mid) == a) {
				lo = mid;
			} else {
				hi = mid;
			}
		}
		*gap_end = hi;
	}
	return n;
}

/* The shared zones: a process uses a handful, looked up by name. */
static struct {
	pthread_mutex_t lock;
	struct mesh_tz **z;
	size_t n;
} shared = {.lock = PTHREAD_MUTEX_INITIALIZER};

mesh_err
mesh_tz_shared(const char *name, const struct mesh_tz **out)
{
	struct mesh_tz *tz, **nz;
	mesh_err err = MESH_OK;

	pthread_mutex_lock(&shared.lock);
	for (size_t i = 0; i < shared.n; i++) {
		if (strcmp(mesh_tz_name(shared.z[i]), name) == 0) {
			*out = shared.z[i];
			goto out;
		}
	}
	if ((err = mesh_tz_load(name, NULL, &tz)) != MESH_OK) {
		goto out;
	}
	if ((nz = realloc(shared.z, (shared.n + 1) * sizeof(*nz))) == NULL) {
		mesh_tz_free(tz);
		err = mesh_err_set(MESH_ENOMEM, "time zone '%s'", name);
		goto out;
	}
	shared.z = nz;
	shared.z[shared.n++] = tz;
	*out = tz;
out:
	pthread_mutex_unlock(&shared.lock);
	return err;
}

void
mesh_tz_shared_free(void)
{
	pthread_mutex_lock(&shared.lock);
	for (size_t i = 0; i < shared.n; i++) {
		mesh_tz_free(shared.z[i]);
	}
	free(shared.z);
	shared.z = NULL;
	shared.n = 0;
	pthread_mutex_unlock(&shared.lock);
}

mesh_err
mesh_sched_zone_err(mesh_err err)
{
	char why[512];

	if (err != MESH_ENOTFOUND) {
		return err;
	}
	snprintf(why, sizeof(why), "%s", mesh_errdetail());
	return mesh_err_set(MESH_EINVAL, "%s", why);
}
