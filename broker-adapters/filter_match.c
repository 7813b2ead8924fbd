/* filter_match.c: evaluating a compiled SNS filter policy against a
 * message's attributes or body, without allocating (see filter.c for the
 * compiled form). */
#include <arpa/inet.h>
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filter_internal.h"

/* ---- matching: nothing below allocates ----------------------------------
 */

static bool
num_eq(struct num a, struct num b)
{
	/* Within SNS's range numbers agree to five decimals; beyond it
	 * (account numbers and the like) they must be equal. */
	if (a.d >= -NUM_LIMIT && a.d <= NUM_LIMIT && b.d >= -NUM_LIMIT &&
	    b.d <= NUM_LIMIT) {
		return a.scaled == b.scaled;
	}
	return a.d == b.d;
}

struct val {
	enum vtype t;
	const char *s; /* V_STRING: not NUL-terminated */
	size_t len;
	bool esc;    /* s is a JSON string body whose escapes decode as read */
	size_t dlen; /* the decoded length (len when !esc) */
	struct num n; /* V_NUMBER */
};

static int
hexval(char c)
{
	if (c >= '0' && c <= '9') {
		return c - '0';
	}
	if (c >= 'a' && c <= 'f') {
		return c - 'a' + 10;
	}
	if (c >= 'A' && c <= 'F') {
		return c - 'A' + 10;
	}
	return -1;
}

static bool
hex4(const char *p, const char *end, unsigned *out)
{
	unsigned x = 0;

	if (end - p < 4) {
		return false;
	}
	for (int i = 0; i < 4; i++) {
		int h = hexval(p[i]);
		if (h < 0) {
			return false;
		}
		x = x * 16 + (unsigned)h;
	}
	*out = x;
	return true;
}

/* Decode the escape after a backslash at *pp (lenient: an unknown one
 * stands for its character) into buf as UTF-8; returns its length. */
static unsigned
escape_decode(const char **pp, const char *end, char *buf)
{
	const char *p = *pp;
	unsigned cp, lo;

	switch (*p) {
	case 'b':
		cp = '\b';
		break;
	case 'f':
		cp = '\f';
		break;
	case 'n':
		cp = '\n';
		break;
	case 'r':
		cp = '\r';
		break;
	case 't':
		cp = '\t';
		break;
	case 'u':
		if (!hex4(p + 1, end, &cp)) {
			cp = 'u';
			break;
		}
		p += 4;
		if (cp >= 0xd800 && cp < 0xdc00 && end - p > 6 &&
		    p[1] == '\\' && p[2] == 'u' && hex4(p + 3, end, &lo) &&
		    lo >= 0xdc00 && lo < 0xe000) {
			cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			p += 6;
		}
		break;
	default:
		cp = (unsigned char)*p;
		break;
	}
	*pp = p + 1;
	if (cp < 0x80) {
		buf[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		buf[0] = (char)(0xc0 | (cp >> 6));
		buf[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		buf[0] = (char)(0xe0 | (cp >> 12));
		buf[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		buf[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	buf[0] = (char)(0xf0 | (cp >> 18));
	buf[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	buf[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	buf[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* A string's bytes as matching reads them: plain, or (String.Array
 * elements) decoded escape by escape, so no string is too long to match
 * and none is copied. */
struct src {
	const char *p, *end;
	bool esc;
	char buf[4];
	unsigned n, i;
};

static struct src
src_of(const char *s, size_t len, bool esc)
{
	return (struct src){.p = s, .end = s + len, .esc = esc};
}

/* The next byte, or -1 at the end. */
static int
src_byte(struct src *r)
{
	if (r->i < r->n) {
		return (unsigned char)r->buf[r->i++];
	}
	if (r->p >= r->end) {
		return -1;
	}
	if (!r->esc || *r->p != '\\' || r->p + 1 >= r->end) {
		return (unsigned char)*r->p++;
	}
	r->p++;
	r->n = escape_decode(&r->p, r->end, r->buf);
	r->i = 1;
	return (unsigned char)r->buf[0];
}

static size_t
decoded_len(const char *s, size_t len)
{
	struct src r = src_of(s, len, true);
	size_t n = 0;

	while (src_byte(&r) >= 0) {
		n++;
	}
	return n;
}

/* Are v's decoded bytes from `from` on pat (plen bytes)? */
static bool
str_at(const struct val *v, size_t from, const char *pat, size_t plen)
{
	struct src r = src_of(v->s, v->len, true);

	if (!v->esc) {
		return memcmp(v->s + from, pat, plen) == 0;
	}
	for (size_t i = 0; i < from; i++) {
		src_byte(&r);
	}
	for (size_t i = 0; i < plen; i++) {
		if (src_byte(&r) != (unsigned char)pat[i]) {
			return false;
		}
	}
	return true;
}

static bool
str_eq(const struct val *v, const char *pat, size_t plen)
{
	return v->dlen == plen && str_at(v, 0, pat, plen);
}

static bool
str_prefix(const struct val *v, const char *pat, size_t plen)
{
	return v->dlen >= plen && str_at(v, 0, pat, plen);
}

static bool
str_suffix(const struct val *v, const char *pat, size_t plen)
{
	return v->dlen >= plen && str_at(v, v->dlen - plen, pat, plen);
}

/* The next code point (UTF-8, not checked further), or -1 at the end. */
static long
src_cp(struct src *r)
{
	int b = src_byte(r), c;
	unsigned n;
	long cp;

	if (b < 0xc0) {
		return b;
	}
	n = b < 0xe0 ? 1 : b < 0xf0 ? 2 : 3;
	cp = b & (b < 0xe0 ? 0x1f : b < 0xf0 ? 0x0f : 0x07);
	while (n-- > 0) {
		if ((c = src_byte(r)) < 0) {
			return 0xfffd;
		}
		cp = cp << 6 | (c & 0x3f);
	}
	return cp;
}

/* Lower case for the alphabets of Europe (ASCII, Latin-1, Latin
 * Extended-A, Greek, Cyrillic); other code points stay. */
static unsigned
fold(unsigned c)
{
	if ((c >= 'A' && c <= 'Z') || (c >= 0xc0 && c <= 0xde && c != 0xd7) ||
	    (c >= 0x391 && c <= 0x3ab && c != 0x3a2) ||
	    (c >= 0x410 && c <= 0x42f)) {
		return c + 0x20;
	}
	if (c >= 0x400 && c <= 0x40f) {
		return c + 0x50;
	}
	if ((c >= 0x100 && c <= 0x137 && c != 0x130) ||
	    (c >= 0x14a && c <= 0x177)) {
		return c | 1;
	}
	if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e)) {
		return (c & 1) ? c + 1 : c;
	}
	return c;
}

static bool
eq_nocase(const struct val *v, const char *pat, size_t plen)
{
	struct src a = src_of(v->s, v->len, v->esc);
	struct src b = src_of(pat, plen, false);
	long x, y;

	do {
		x = src_cp(&a);
		y = src_cp(&b);
		if (x != y && (x < 0 || y < 0 ||
		               fold((unsigned)x) != fold((unsigned)y))) {
			return false;
		}
	} while (x >= 0);
	return true;
}

static bool
cidr_match(const struct cond *c, const struct val *v)
{
	struct src r = src_of(v->s, v->len, v->esc);
	char buf[64];
	uint8_t a[16];
	size_t full = c->bits / 8, n = 0;
	unsigned rem = c->bits % 8;
	int b;

	if (v->dlen >= sizeof(buf)) {
		return false;
	}
	while ((b = src_byte(&r)) >= 0) {
		buf[n++] = (char)b;
	}
	buf[n] = '\0';
	if (inet_pton(c->v6 ? AF_INET6 : AF_INET, buf, a) != 1) {
		return false;
	}
	if (memcmp(a, c->addr, full) != 0) {
		return false;
	}
	return rem == 0 ||
	       ((a[full] ^ c->addr[full]) & (uint8_t)(0xff << (8 - rem))) == 0;
}

static bool
in_strings(const struct mesh_filter *f, const struct cond *c,
           const struct val *v)
{
	for (uint32_t i = 0; i < c->len; i++) {
		const struct span *s = &f->p.strs[c->off + i];
		if (str_eq(v, f->p.text + s->first, s->n)) {
			return true;
		}
	}
	return false;
}

static bool
in_numbers(const struct mesh_filter *f, const struct cond *c,
           const struct val *v)
{
	for (uint32_t i = 0; i < c->len; i++) {
		if (num_eq(f->p.nums[c->off + i], v->n)) {
			return true;
		}
	}
	return false;
}

/* Does a present value match one condition (exists aside)? */
static bool
cond_match(const struct mesh_filter *f, const struct cond *c,
           const struct val *v)
{
	const char *s = f->p.text + c->off;
	bool str = v->t == V_STRING;

	switch (c->kind) {
	case C_STRING:
		return str && str_eq(v, s, c->len);
	case C_NUMBER:
		return v->t == V_NUMBER && num_eq(c->n, v->n);
	case C_LITERAL:
		return v->t == c->lit;
	case C_PREFIX:
		return str && str_prefix(v, s, c->len);
	case C_SUFFIX:
		return str && str_suffix(v, s, c->len);
	case C_IGNORE_CASE:
		return str && eq_nocase(v, s, c->len);
	case C_NOT_STRINGS:
		return v->t != V_NULL && !(str && in_strings(f, c, v));
	case C_NOT_NUMBERS:
		return v->t != V_NULL &&
		       !(v->t == V_NUMBER && in_numbers(f, c, v));
	case C_NOT_PREFIX:
		return v->t != V_NULL && !(str && str_prefix(v, s, c->len));
	case C_NOT_SUFFIX:
		return v->t != V_NULL && !(str && str_suffix(v, s, c->len));
	case C_NUMERIC:
		if (v->t != V_NUMBER) {
			return false;
		}
		if (c->has_lo && (v->n.scaled < c->lo ||
		                  (!c->lo_incl && v->n.scaled == c->lo))) {
			return false;
		}
		return !c->has_hi || v->n.scaled < c->hi ||
		       (c->hi_incl && v->n.scaled == c->hi);
	case C_CIDR:
		return str && cidr_match(c, v);
	default:
		return false; /* C_EXISTS: decided by presence */
	}
}

/* Does a present value match any of a leaf's conditions (exists aside)? */
static bool
leaf_conds(const struct mesh_filter *f, const struct leaf *l,
           const struct val *v)
{
	for (uint32_t i = 0; i < l->n; i++) {
		if (cond_match(f, &f->p.conds[l->first + i], v)) {
			return true;
		}
	}
	return false;
}

/* Does one present value of a leaf match any of its conditions? */
static bool
leaf_value(const struct mesh_filter *f, const struct leaf *l,
           const struct val *v)
{
	return l->present_ok || leaf_conds(f, l, v);
}

/* A plain decimal ("-210.75": up to 9 digits, then up to 5 decimals)
 * straight to the scaled form: exact, and far cheaper than strtod. */
static bool
fast_decimal(const char *s, size_t len, struct val *v)
{
	size_t i = s[0] == '-', digits = 0, decimals = 0;
	int64_t x = 0;

	/* The loops stop one digit past their limit: reading on would
	 * overflow x (signed overflow; found by fuzzing). */
	for (; i < len && digits <= 9 && s[i] >= '0' && s[i] <= '9';
	     i++, digits++) {
		x = x * 10 + (s[i] - '0');
	}
	if (digits == 0 || digits > 9) {
		return false;
	}
	if (i < len && s[i] == '.') {
		for (i++;
		     i < len && decimals <= 5 && s[i] >= '0' && s[i] <= '9';
		     i++) {
			x = x * 10 + (s[i] - '0');
			decimals++;
		}
		if (decimals == 0 || decimals > 5) {
			return false;
		}
	}
	if (i != len) {
		return false;
	}
	for (; decimals < 5; decimals++) {
		x *= 10;
	}
	v->t = V_NUMBER;
	v->n.scaled = s[0] == '-' ? -x : x;
	v->n.d = (double)v->n.scaled / NUM_SCALE;
	return true;
}

/* A number's text (JSON's grammar, at most 63 characters) as a value. */
static bool
parse_number(const char *s, size_t len, struct val *v)
{
	char buf[64], *end;
	double d;

	if (len > 0 && fast_decimal(s, len, v)) {
		return true;
	}
	if (len == 0 || len >= sizeof(buf)) {
		return false;
	}
	for (size_t i = 0; i < len; i++) {
		if (strchr("0123456789+-.eE", s[i]) == NULL || s[i] == '\0') {
			return false;
		}
	}
	memcpy(buf, s, len);
	buf[len] = '\0';
	d = strtod(buf, &end);
	if (*end != '\0') {
		return false;
	}
	v->t = V_NUMBER;
	v->n = mesh__filter_num(d);
	return true;
}

/* Does any element of a String.Array value (JSON array text, scanned in
 * place) match the leaf? */
static bool
array_match(const struct mesh_filter *f, const struct leaf *l, const char *s,
            size_t len)
{
	struct mesh_jscan j;
	struct mesh_jtok t;
	struct val v;

	mesh_jscan_init(&j, s, len);
	if (!mesh_jscan_enter(&j, '[')) {
		return false;
	}
	while (mesh_jscan_next(&j, NULL, &t)) {
		memset(&v, 0, sizeof(v));
		switch (t.kind) {
		case MESH_JSTRING:
			v.t = V_STRING;
			v.s = t.s;
			v.len = t.len;
			v.esc = t.escaped;
			v.dlen = t.escaped ? decoded_len(v.s, v.len) : v.len;
			break;
		case MESH_JNUMBER:
			if (!parse_number(t.s, t.len, &v)) {
				return false;
			}
			break;
		case MESH_JTRUE:
			v.t = V_TRUE;
			break;
		case MESH_JFALSE:
			v.t = V_FALSE;
			break;
		case MESH_JNULL:
			v.t = V_NULL;
			break;
		default:
			continue; /* a nested array or object never matches */
		}
		if (leaf_value(f, l, &v)) {
			return true;
		}
	}
	return false;
}

/* A message attribute's data type, reduced to its base. */
enum attr_base { A_STRING, A_NUMBER, A_ARRAY, A_BINARY, A_UNKNOWN };

static enum attr_base
attr_base(const char *t, size_t len)
{
	static const struct {
		const char *name;
		size_t len;
		enum attr_base base;
	} bases[] = {{"String.Array", 12, A_ARRAY},
	             {"String", 6, A_STRING},
	             {"Number", 6, A_NUMBER},
	             {"Binary", 6, A_BINARY}};

	for (size_t i = 0; i < sizeof(bases) / sizeof(bases[0]); i++) {
		if (len >= bases[i].len &&
		    memcmp(t, bases[i].name, bases[i].len) == 0 &&
		    (len == bases[i].len || t[bases[i].len] == '.')) {
			return bases[i].base;
		}
	}
	return A_UNKNOWN;
}

/* One leaf against one attribute (data type, value), or an absent one
 * (type NULL). Binary attributes are ignored, as SNS ignores them. */
static bool
attr_leaf(const struct mesh_filter *f, const struct leaf *l, const char *type,
          size_t type_len, const char *value, size_t len)
{
	enum attr_base base =
	        type != NULL ? attr_base(type, type_len) : A_BINARY;
	struct val v = {.t = V_STRING, .s = value, .len = len, .dlen = len};

	if (base == A_BINARY || base == A_UNKNOWN) {
		return l->absent_ok;
	}
	if (l->present_ok) {
		return true;
	}
	if (base == A_ARRAY) {
		return array_match(f, l, value, len);
	}
	if (base == A_NUMBER && !parse_number(value, len, &v)) {
		return false;
	}
	return leaf_value(f, l, &v);
}

/* SNS: "exists": false "only matches if at least one attribute is
 * present. An empty set of attributes results in the filter not
 * matching." A branch with leaves can pass an empty set only through
 * absence, so such a branch needs one attribute, of any type; only an
 * empty policy passes a message without any. */
static bool
event_has_attrs(const struct mesh_event *ev)
{
	for (size_t i = 0; i < mesh_event_ext_count(ev); i++) {
		if (mesh_event_attr_is_message_attr(
		            mesh_event_ext_at(ev, i, NULL))) {
			return true;
		}
	}
	return false;
}

static bool
match_attributes_event(const struct mesh_filter *f,
                       const struct mesh_event *ev)
{
	for (size_t i = 0; i < f->n_branches; i++) {
		const struct span *br = &f->branches[i];
		bool ok = true, seen = false;
		for (uint32_t k = 0; ok && k < br->n; k++) {
			const struct leaf *l =
			        &f->p.leaves[f->ids[br->first + k]];
			const char *type = NULL;
			const void *value = NULL;
			size_t type_len = 0, len = 0;
			mesh__event_attr_peek(ev, f->p.text + l->path, &type,
			                      &type_len, &value, &len);
			ok = attr_leaf(f, l, type, type_len, value, len);
			seen |= type != NULL;
		}
		if (ok && (seen || br->n == 0 || event_has_attrs(ev))) {
			return true;
		}
	}
	return false;
}

bool
mesh_filter_match_event(const struct mesh_filter *f,
                        const struct mesh_event *ev)
{
	const void *data;
	size_t len;
	json_t *body;
	bool match;

	assert(f != NULL && ev != NULL);
	if (f->scope == MESH_FILTER_SCOPE_ATTRIBUTES) {
		return match_attributes_event(f, ev);
	}
	switch (mesh_event_data(ev, &data, &len, NULL)) {
	case MESH_DATA_TEXT:
		break;
	default:
		return false;
	}
	/* Only the body scope parses: the payload is JSON text. */
	body = json_loadb(data, len, JSON_DECODE_INT_AS_REAL, NULL);
	match = body != NULL && mesh_filter_match_json(f, body);
	json_decref(body);
	return match;
}

/* The body walk: the leaves of mask (all with off bytes of their path
 * consumed) against the value v found there. All leaves under one array
 * must match in the same element, as SNS requires. */
static bool body_sat(const struct mesh_filter *f, const uint32_t *ids,
                     uint64_t mask, size_t off, const json_t *v, int depth);

static bool
body_absent(const struct mesh_filter *f, const uint32_t *ids, uint64_t mask)
{
	for (unsigned b = 0; b < MAX_LEAVES; b++) {
		if ((mask >> b & 1) && !f->p.leaves[ids[b]].absent_ok) {
			return false;
		}
	}
	return true;
}

static bool
body_leaf(const struct mesh_filter *f, const struct leaf *l, const json_t *v)
{
	struct val x = {0};

	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return l->absent_ok; /* only leaves count as present */
	case JSON_STRING:
		x.t = V_STRING;
		x.s = json_string_value(v);
		x.len = json_string_length(v);
		x.dlen = x.len;
		break;
	case JSON_INTEGER:
	case JSON_REAL:
		x.t = V_NUMBER;
		x.n = mesh__filter_num(json_number_value(v));
		break;
	case JSON_TRUE:
		x.t = V_TRUE;
		break;
	case JSON_FALSE:
		x.t = V_FALSE;
		break;
	default:
		x.t = V_NULL;
		break;
	}
	/* SNS: "exists": true needs "a non-null and non-empty value". */
	if (l->present_ok && x.t != V_NULL &&
	    !(x.t == V_STRING && x.len == 0)) {
		return true;
	}
	return leaf_conds(f, l, &x);
}

/* The key of object v that leaf l's path continues with after off (the
 * longest, since a body may spell "a.b" as one key), or NULL. */
static const char *
next_key(const struct mesh_filter *f, const struct leaf *l, size_t off,
         const json_t *v, size_t *klen, const json_t **kv)
{
	const char *rest = f->p.text + l->path + off, *best = NULL;
	size_t rlen = l->path_len - off, n;
	const char *key;
	json_t *x;

	json_object_foreach((json_t *)v, key, x)
	{
		n = strlen(key);
		if (n <= rlen && memcmp(rest, key, n) == 0 &&
		    (n == rlen || rest[n] == '.') &&
		    (best == NULL || n > *klen)) {
			best = key;
			*klen = n;
			*kv = x;
		}
	}
	return best;
}

static bool
body_sat(const struct mesh_filter *f, const uint32_t *ids, uint64_t mask,
         size_t off, const json_t *v, int depth)
{
	uint64_t rest = 0;

	if (depth > MAX_DEPTH) {
		return false;
	}
	if (json_is_array(v)) {
		size_t n = json_array_size(v);
		if (n == 0) {
			return body_absent(f, ids, mask);
		}
		for (size_t i = 0; i < n; i++) {
			if (body_sat(f, ids, mask, off, json_array_get(v, i),
			             depth + 1)) {
				return true;
			}
		}
		return false;
	}
	for (unsigned b = 0; b < MAX_LEAVES; b++) {
		const struct leaf *l;
		if (!(mask >> b & 1)) {
			continue;
		}
		l = &f->p.leaves[ids[b]];
		if (l->path_len > off) {
			rest |= (uint64_t)1 << b;
		} else if (!body_leaf(f, l, v)) {
			return false;
		}
	}
	if (rest == 0) {
		return true;
	}
	if (!json_is_object(v)) {
		return body_absent(f, ids, rest);
	}
	while (rest != 0) {
		unsigned b = (unsigned)__builtin_ctzll(rest);
		const struct leaf *l = &f->p.leaves[ids[b]];
		const json_t *kv = NULL, *kv2;
		size_t klen = 0, klen2, next;
		const char *key = next_key(f, l, off, v, &klen, &kv);
		uint64_t group = 0;
		bool ends = l->path_len == off + klen;

		if (key == NULL) {
			if (!l->absent_ok) {
				return false;
			}
			rest &= ~((uint64_t)1 << b);
			continue;
		}
		/* Its companions: the same key, and the same kind of end. */
		for (unsigned c = b; c < MAX_LEAVES; c++) {
			const struct leaf *m;
			if (!(rest >> c & 1)) {
				continue;
			}
			m = &f->p.leaves[ids[c]];
			if (next_key(f, m, off, v, &klen2, &kv2) == key &&
			    (m->path_len == off + klen) == ends) {
				group |= (uint64_t)1 << c;
			}
		}
		next = off + klen + (ends ? 0 : 1);
		if (!body_sat(f, ids, group, next, kv, depth + 1)) {
			return false;
		}
		rest &= ~group;
	}
	return true;
}

/* Whether a body holds a value (null too) anywhere: in the body scope,
 * SNS's "at least one attribute" of "exists": false (event_has_attrs). */
static bool
body_has_value(const json_t *v, int depth)
{
	const char *key;
	const json_t *x;

	if (depth > MAX_DEPTH) {
		return false;
	}
	if (json_is_array(v)) {
		for (size_t i = 0; i < json_array_size(v); i++) {
			if (body_has_value(json_array_get(v, i), depth + 1)) {
				return true;
			}
		}
		return false;
	}
	if (!json_is_object(v)) {
		return true;
	}
	json_object_foreach((json_t *)v, key, x)
	{
		if (body_has_value(x, depth + 1)) {
			return true;
		}
	}
	return false;
}

bool
mesh_filter_match_json(const struct mesh_filter *f, const json_t *body)
{
	assert(f != NULL);
	if (body == NULL || !json_is_object(body)) {
		return false;
	}
	for (size_t i = 0; i < f->n_branches; i++) {
		const struct span *br = &f->branches[i];
		uint64_t mask = br->n >= 64 ? ~(uint64_t)0
		                            : (((uint64_t)1 << br->n) - 1);
		if (body_sat(f, f->ids + br->first, mask, 0, body, 0) &&
		    (br->n == 0 || body_has_value(body, 0))) {
			return true;
		}
	}
	return false;
}

/* One attribute of SNS's JSON form: its data type and value. */
static mesh_err
sns_attr(const char *name, const json_t *a, const char **type,
         const char **value, size_t *len)
{
	const json_t *t, *v;

	t = json_object_get(a, "DataType");
	if (t == NULL) {
		t = json_object_get(a, "Type");
	}
	if (!json_is_object(a) || !json_is_string(t) ||
	    attr_base(json_string_value(t), json_string_length(t)) ==
	            A_UNKNOWN) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "message attribute '%s': needs a DataType "
		        "of String, Number, String.Array or Binary",
		        name);
	}
	*type = json_string_value(t);
	if (attr_base(*type, strlen(*type)) == A_BINARY) {
		*value = "";
		*len = 0;
		return MESH_OK;
	}
	v = json_object_get(a, "StringValue");
	if (v == NULL) {
		v = json_object_get(a, "Value");
	}
	if (!json_is_string(v)) {
		return mesh_err_set(MESH_EINVAL,
		                    "message attribute '%s': needs a "
		                    "StringValue",
		                    name);
	}
	*value = json_string_value(v);
	*len = json_string_length(v);
	return MESH_OK;
}

mesh_err
mesh_filter_match_sns_attrs(const struct mesh_filter *f, const json_t *attrs,
                            bool *match)
{
	const char *name, *type, *value = NULL;
	json_t *a;
	size_t len = 0;
	mesh_err err;

	assert(f != NULL && match != NULL);
	if (!json_is_object(attrs)) {
		return mesh_err_set(MESH_EINVAL,
		                    "message attributes: not a JSON object");
	}
	json_object_foreach((json_t *)attrs, name, a)
	{
		if ((err = sns_attr(name, a, &type, &value, &len)) !=
		    MESH_OK) {
			return err;
		}
	}
	*match = false;
	for (size_t i = 0; !*match && i < f->n_branches; i++) {
		const struct span *br = &f->branches[i];
		bool ok = true;
		for (uint32_t k = 0; ok && k < br->n; k++) {
			const struct leaf *l =
			        &f->p.leaves[f->ids[br->first + k]];
			a = json_object_get(attrs, f->p.text + l->path);
			type = NULL;
			if (a != NULL) {
				sns_attr(f->p.text + l->path, a, &type, &value,
				         &len);
			}
			ok = attr_leaf(f, l, type, type ? strlen(type) : 0,
			               value, len);
		}
		*match = ok && (br->n == 0 || json_object_size(attrs) > 0);
	}
	return MESH_OK;
}
