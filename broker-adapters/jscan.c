/* jscan.c: the in-place JSON scanner (see mesh/jscan.h). */
#include <string.h>

#include "mesh/jscan.h"

#define MAX_DEPTH 256

static const char *
ws(const char *p, const char *end)
{
	while (p < end &&
	       (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) {
		p++;
	}
	return p;
}

void
mesh_jscan_init(struct mesh_jscan *j, const char *text, size_t len)
{
	memset(j, 0, sizeof(*j));
	j->p = text;
	j->end = text + len;
}

/* The closing quote of a string whose body starts at p; NULL if none or a
 * raw control character comes first. */
static const char *
string_end(const char *p, const char *end, bool *escaped)
{
	*escaped = false;
	for (; p < end; p++) {
		if (*p == '\\') {
			*escaped = true;
			if (++p == end) {
				return NULL;
			}
		} else if (*p == '"') {
			return p;
		} else if ((unsigned char)*p < 0x20) {
			return NULL;
		}
	}
	return NULL;
}

/* Past the end of the number at p, or NULL (JSON's grammar). */
static const char *
number_end(const char *p, const char *end)
{
	const char *d;

	if (p < end && *p == '-') {
		p++;
	}
	if (p == end || *p < '0' || *p > '9') {
		return NULL;
	}
	if (*p == '0') {
		p++;
	} else {
		while (p < end && *p >= '0' && *p <= '9') {
			p++;
		}
	}
	if (p < end && *p == '.') {
		for (d = ++p; p < end && *p >= '0' && *p <= '9'; p++) {
		}
		if (p == d) {
			return NULL;
		}
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-')) {
			p++;
		}
		for (d = p; p < end && *p >= '0' && *p <= '9'; p++) {
		}
		if (p == d) {
			return NULL;
		}
	}
	return p;
}

/* Past a nested object or array starting at p, or NULL; checks its
 * brackets and strings, not the rest of its grammar. */
static const char *
nested_end(const char *p, const char *end)
{
	char stack[MAX_DEPTH];
	int depth = 0;
	bool esc;

	for (; p < end; p++) {
		if (*p == '"') {
			if ((p = string_end(p + 1, end, &esc)) == NULL) {
				return NULL;
			}
		} else if (*p == '[' || *p == '{') {
			if (depth == MAX_DEPTH) {
				return NULL;
			}
			stack[depth++] = *p == '[' ? ']' : '}';
		} else if (*p == ']' || *p == '}') {
			if (depth == 0 || stack[--depth] != *p) {
				return NULL;
			}
			if (depth == 0) {
				return p + 1;
			}
		}
	}
	return NULL;
}

/* One value at p into t; past it, or NULL. */
static const char *
value(const char *p, const char *end, struct mesh_jtok *t)
{
	const char *q;
	static const struct {
		const char *word;
		size_t len;
		enum mesh_jkind kind;
	} words[] = {{"true", 4, MESH_JTRUE},
	             {"false", 5, MESH_JFALSE},
	             {"null", 4, MESH_JNULL}};

	memset(t, 0, sizeof(*t));
	if (p == end) {
		return NULL;
	}
	if (*p == '"') {
		if ((q = string_end(p + 1, end, &t->escaped)) == NULL) {
			return NULL;
		}
		t->kind = MESH_JSTRING;
		t->s = p + 1;
		t->len = (size_t)(q - p - 1);
		return q + 1;
	}
	if (*p == '{' || *p == '[') {
		if ((q = nested_end(p, end)) == NULL) {
			return NULL;
		}
		t->kind = *p == '{' ? MESH_JOBJECT : MESH_JARRAY;
		t->s = p;
		t->len = (size_t)(q - p);
		return q;
	}
	for (size_t i = 0; i < sizeof(words) / sizeof(*words); i++) {
		if ((size_t)(end - p) >= words[i].len &&
		    memcmp(p, words[i].word, words[i].len) == 0) {
			t->kind = words[i].kind;
			t->s = p;
			t->len = words[i].len;
			return p + words[i].len;
		}
	}
	if ((q = number_end(p, end)) == NULL) {
		return NULL;
	}
	t->kind = MESH_JNUMBER;
	t->s = p;
	t->len = (size_t)(q - p);
	return q;
}

bool
mesh_jscan_enter(struct mesh_jscan *j, char open)
{
	j->p = ws(j->p, j->end);
	if (j->bad || j->p == j->end || *j->p != open ||
	    (open != '{' && open != '[')) {
		j->bad = true;
		return false;
	}
	j->p++;
	j->close = open == '{' ? '}' : ']';
	j->first = true;
	return true;
}

static bool
fail(struct mesh_jscan *j)
{
	j->bad = true;
	return false;
}

bool
mesh_jscan_next(struct mesh_jscan *j, struct mesh_jtok *key,
                struct mesh_jtok *val)
{
	struct mesh_jtok k;
	const char *p;

	if (j->bad || j->close == 0) {
		return fail(j);
	}
	p = ws(j->p, j->end);
	if (p < j->end && *p == j->close && j->first) {
		j->p = p + 1;
		j->close = 0;
		return false;
	}
	if (!j->first) {
		if (p < j->end && *p == j->close) {
			j->p = p + 1;
			j->close = 0;
			return false;
		}
		if (p == j->end || *p != ',') {
			return fail(j);
		}
		p = ws(p + 1, j->end);
	}
	j->first = false;
	if (j->close == '}') {
		if (p == j->end || *p != '"' ||
		    (p = value(p, j->end, &k)) == NULL) {
			return fail(j);
		}
		p = ws(p, j->end);
		if (p == j->end || *p != ':') {
			return fail(j);
		}
		p = ws(p + 1, j->end);
		if (key != NULL) {
			*key = k;
		}
	}
	if ((p = value(p, j->end, val)) == NULL) {
		return fail(j);
	}
	j->p = p;
	return true;
}

bool
mesh_jscan_done(const struct mesh_jscan *j)
{
	return !j->bad && j->close == 0 && ws(j->p, j->end) == j->end;
}

static int
hex4(const char *p)
{
	int v = 0;

	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9') {
			v |= c - '0';
		} else if (c >= 'a' && c <= 'f') {
			v |= c - 'a' + 10;
		} else if (c >= 'A' && c <= 'F') {
			v |= c - 'A' + 10;
		} else {
			return -1;
		}
	}
	return v;
}

static size_t
utf8_put(char *o, unsigned cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | (cp >> 18));
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

size_t
mesh_jscan_string(const struct mesh_jtok *t, char *out)
{
	const char *p = t->s, *end = t->s + t->len;
	char *o = out;

	while (p < end) {
		int u, lo;
		if (*p != '\\') {
			*o++ = *p++;
			continue;
		}
		if (++p == end) {
			return (size_t)-1;
		}
		switch (*p++) {
		case '"':
			*o++ = '"';
			break;
		case '\\':
			*o++ = '\\';
			break;
		case '/':
			*o++ = '/';
			break;
		case 'b':
			*o++ = '\b';
			break;
		case 'f':
			*o++ = '\f';
			break;
		case 'n':
			*o++ = '\n';
			break;
		case 'r':
			*o++ = '\r';
			break;
		case 't':
			*o++ = '\t';
			break;
		case 'u':
			if (end - p < 4 || (u = hex4(p)) < 0) {
				return (size_t)-1;
			}
			p += 4;
			if (u >= 0xdc00 && u < 0xe000) {
				return (size_t)-1; /* a lone low surrogate */
			}
			if (u >= 0xd800 && u < 0xdc00) {
				if (end - p < 6 || p[0] != '\\' || p[1] != 'u' ||
				    (lo = hex4(p + 2)) < 0xdc00 || lo >= 0xe000) {
					return (size_t)-1;
				}
				p += 6;
				u = 0x10000 + ((u - 0xd800) << 10) +
				    (lo - 0xdc00);
			}
			/* \u0000 would cut the text short: refused. */
			if (u == 0) {
				return (size_t)-1;
			}
			o += utf8_put(o, (unsigned)u);
			break;
		default:
			return (size_t)-1;
		}
	}
	*o = '\0';
	return (size_t)(o - out);
}
