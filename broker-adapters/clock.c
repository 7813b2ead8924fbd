/* clock.c: times as text and civil dates (see mesh/clock.h). */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh/clock.h"

int64_t
mesh_days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

void
mesh_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

bool
mesh_time_parse_local(const char *s, bool need_time, int64_t *out,
                      const char **rest)
{
	int y, mo, d, h = 0, mi = 0, sec = 0, n = 0;

	if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10) {
		return false;
	}
	s += n;
	if (*s == 'T' || *s == ' ') {
		int m2 = 0;
		if (sscanf(s + 1, "%2d:%2d%n", &h, &mi, &m2) != 2 || m2 != 5) {
			return false;
		}
		s += 1 + m2;
		if (*s == ':') {
			if (sscanf(s + 1, "%2d%n", &sec, &m2) != 1 ||
			    m2 != 2) {
				return false;
			}
			s += 3;
		} else if (need_time) {
			return false;
		}
	} else if (need_time) {
		return false;
	}
	if (y < MESH_TIME_YEAR_MIN || y > MESH_TIME_YEAR_MAX || mo < 1 ||
	    mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 59) {
		return false;
	}
	int64_t days = mesh_days_from_civil(y, (unsigned)mo, (unsigned)d);
	int64_t yy;
	unsigned mm, dd;
	mesh_civil_from_days(days, &yy, &mm, &dd);
	if ((int)mm != mo) {
		return false; /* Feb 30 and such */
	}
	*out = days * 86400 + h * 3600 + mi * 60 + sec;
	*rest = s;
	return true;
}

mesh_err
mesh_time_parse_zoned(const char *text, int64_t *out, bool *zoned)
{
	const char *rest;
	int64_t local;

	*zoned = false;
	if (text == NULL ||
	    !mesh_time_parse_local(text, false, &local, &rest)) {
		return mesh_err_set(MESH_EINVAL,
		                    "time '%.64s': not ISO-8601 "
		                    "(yyyy-mm-ddThh:mm[:ss][Z|+hh:mm])",
		                    text ? text : "");
	}
	if (*rest == 'Z' && rest[1] == '\0') {
		*zoned = true;
		*out = local;
		return MESH_OK;
	}
	if ((*rest == '+' || *rest == '-') && strlen(rest) == 6 &&
	    rest[3] == ':') {
		int h = atoi(rest + 1), m = atoi(rest + 4);
		int64_t off = (h * 3600 + m * 60) * (*rest == '-' ? -1 : 1);
		if (h > 23 || m > 59 || !isdigit((unsigned char)rest[1]) ||
		    !isdigit((unsigned char)rest[4])) {
			return mesh_err_set(MESH_EINVAL,
			                    "time '%.64s': bad UTC offset",
			                    text);
		}
		*zoned = true;
		*out = local - off;
		return MESH_OK;
	}
	if (*rest != '\0') {
		return mesh_err_set(MESH_EINVAL,
		                    "time '%.64s': unexpected '%.10s'", text,
		                    rest);
	}
	*out = local;
	return MESH_OK;
}

mesh_err
mesh_time_parse(const char *text, int64_t *out)
{
	bool zoned;

	return mesh_time_parse_zoned(text, out, &zoned);
}

void
mesh_time_format(int64_t t, char out[32])
{
	int64_t days = t / 86400 - (t % 86400 < 0);
	int64_t secs = t - days * 86400;
	int64_t y;
	unsigned m, d;

	mesh_civil_from_days(days, &y, &m, &d);
	snprintf(out, 32, "%04" PRId64 "-%02u-%02uT%02d:%02d:%02dZ", y, m, d,
	         (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60));
}

bool
mesh_duration_parse(const char *text, int64_t unit, int64_t *out)
{
	char *end;
	long long n = strtoll(text, &end, 10);

	if (end == text || n < 0 || n > 100 * 365 * 86400LL) {
		return false;
	}
	switch (*end) {
	case '\0':
		break;
	case 's':
		unit = 1;
		break;
	case 'm':
		unit = 60;
		break;
	case 'h':
		unit = 3600;
		break;
	case 'd':
		unit = 86400;
		break;
	default:
		return false;
	}
	if (*end != '\0' && end[1] != '\0') {
		return false;
	}
	*out = n * unit;
	return true;
}
