/* filter.c: SNS subscription filter policies, compiled once into a flat
 * immutable form and evaluated without allocating.
 *
 * A policy compiles to branches (its "$or" alternatives multiplied out, as
 * SNS's engine does), each a list of leaves (a key path and its match
 * values); a branch matches when all its leaves do, a leaf when any of its
 * values does. Checks and their texts follow SNS's (which are those of
 * AWS's Event Ruler): the first fault in document order is reported. */
#include <arpa/inet.h>
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mesh/event.h"
#include "mesh/filter.h"

#define ERR_PREFIX "Invalid parameter: FilterPolicy: "
/* SNS's numeric range and precision: +-1e9, five decimal places. */
#define NUM_LIMIT  1e9
#define NUM_SCALE  1e5
#define NUM_SAT    9e13 /* beyond this, scaled values saturate */
#define MAX_LEAVES 64   /* per branch: a bit mask in the body walk */
#define MAX_DEPTH  256  /* body nesting followed (arrays included) */

enum cond_kind {
	C_STRING,
	C_NUMBER,
	C_LITERAL, /* true, false or null */
	C_PREFIX,
	C_SUFFIX,
	C_IGNORE_CASE,
	C_NOT_STRINGS,
	C_NOT_NUMBERS,
	C_NOT_PREFIX,
	C_NOT_SUFFIX,
	C_NUMERIC,
	C_EXISTS,
	C_CIDR,
};

/* The type of a value being matched. */
enum vtype { V_STRING, V_NUMBER, V_TRUE, V_FALSE, V_NULL };

struct num {
	double d;
	int64_t scaled; /* d * 1e5, rounded, saturated */
};

struct cond {
	uint8_t kind;
	uint8_t lit; /* C_LITERAL: a vtype; C_EXISTS: true or false */
	uint8_t has_lo, lo_incl, has_hi, hi_incl; /* C_NUMERIC */
	uint8_t v6, bits;                         /* C_CIDR */
	uint32_t off, len; /* a string in f->p.text; sets: in strs/nums */
	struct num n;      /* C_NUMBER */
	int64_t lo, hi;    /* C_NUMERIC, scaled */
	uint8_t addr[16];  /* C_CIDR, the network */
};

struct leaf {
	uint32_t path, path_len; /* in f->p.text, NUL-terminated */
	uint32_t first, n;       /* in f->p.conds */
	bool absent_ok;          /* has {"exists": false} */
	bool present_ok;         /* has {"exists": true} */
};

struct span {
	uint32_t first, n;
};

/* What a policy compiles to, owned by a build until it becomes a
 * filter's. */
struct parts {
	char *text; /* strings and key paths, NUL-terminated */
	struct cond *conds;
	struct leaf *leaves;
	struct span *strs; /* anything-but string sets: offsets into text */
	struct num *nums;  /* anything-but number sets */
};

struct mesh_filter {
	mesh_filter_scope scope;
	struct parts p;
	uint32_t *ids; /* each branch's leaves */
	struct span *branches;
	size_t n_branches;
};

/* ---- compiling ----------------------------------------------------------
 */

struct bvec {
	uint32_t *ids;
	size_t n, cap;
};

struct bset {
	struct bvec *v;
	size_t n, cap;
};

struct build {
	mesh_filter_scope scope;
	bool dry; /* checking only: nothing is stored */
	struct parts p;
	size_t text_n, text_cap, conds_n, conds_cap, leaves_n, leaves_cap;
	size_t strs_n, strs_cap, nums_n, nums_cap;
	char nested[128]; /* the first nested key, if any */
	char *path;       /* the key path being compiled, dotted */
	size_t path_n, path_cap;
};

/* Make room for one more element of size in *p (n used, *cap held). */
static bool
grow(void *pp, size_t *cap, size_t n, size_t size)
{
	void **p = pp;
	size_t c = *cap ? *cap * 2 : 8;
	void *q;

	if (n < *cap) {
		return true;
	}
	while (c < n + 1) {
		c *= 2;
	}
	if ((q = realloc(*p, c * size)) == NULL) {
		return false;
	}
	*p = q;
	*cap = c;
	return true;
}

static mesh_err
nomem(void)
{
	return mesh__seterr(MESH_ENOMEM, ERR_PREFIX "out of memory");
}

/* Record SNS's text for a fault, naming the key (and operator). */
static mesh_err fault(const struct build *b, const char *op, const char *fmt,
                      ...) MESH__PRINTF(3, 4);

static mesh_err
fault(const struct build *b, const char *op, const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (b->path_n == 0) { /* an empty "$or" alternative */
		return mesh__seterr(MESH_EINVAL, ERR_PREFIX "%s", text);
	}
	if (op != NULL) {
		return mesh__seterr(MESH_EINVAL,
		                    ERR_PREFIX
		                    "%s (key '%.*s', operator '%s')",
		                    text, (int)b->path_n, b->path, op);
	}
	return mesh__seterr(MESH_EINVAL, ERR_PREFIX "%s (key '%.*s')", text,
	                    (int)b->path_n, b->path);
}

/* Append bytes (and a NUL) to the text; *off gets their offset. */
static bool
text_add(struct build *b, const char *s, size_t len, uint32_t *off)
{
	while (b->text_n + len + 1 > b->text_cap) {
		if (!grow(&b->p.text, &b->text_cap, b->text_cap, 1)) {
			return false;
		}
	}
	memcpy(b->p.text + b->text_n, s, len);
	b->p.text[b->text_n + len] = '\0';
	*off = (uint32_t)b->text_n;
	b->text_n += len + 1;
	return true;
}

static int64_t
num_scaled(double d)
{
	double x = d * NUM_SCALE;

	if (!(d < NUM_SAT)) {
		return d != d ? 0 : INT64_MAX;
	}
	if (d <= -NUM_SAT) {
		return INT64_MIN;
	}
	return (int64_t)(x < 0 ? x - 0.5 : x + 0.5);
}

static struct num
num_make(double d)
{
	return (struct num){.d = d, .scaled = num_scaled(d)};
}

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

/* How a JSON token reads in SNS's messages ("Invalid member ...: 1"). */
static const char *
token_text(const json_t *v, char *buf, size_t size)
{
	switch (json_typeof(v)) {
	case JSON_STRING:
		return json_string_value(v);
	case JSON_INTEGER:
	case JSON_REAL:
		snprintf(buf, size, "%.17g", json_number_value(v));
		return buf;
	case JSON_TRUE:
		return "true";
	case JSON_FALSE:
		return "false";
	case JSON_NULL:
		return "null";
	case JSON_OBJECT:
		return "{";
	default:
		return "[";
	}
}

/* A numeric operand: a number within SNS's range. */
static mesh_err
numeric_value(const struct build *b, const json_t *v, const char *op,
              int64_t *out)
{
	double d;

	if (v == NULL || !json_is_number(v)) {
		return fault(b, "numeric", "Value of %s must be numeric",
		             strcmp(op, "=") == 0 ? "equals" : op);
	}
	d = json_number_value(v);
	if (d < -NUM_LIMIT || d > NUM_LIMIT) {
		return fault(b, "numeric",
		             "Value must be between -1.0E9 and 1.0E9, "
		             "inclusive");
	}
	*out = num_scaled(d);
	return MESH_OK;
}

static bool
is_op(const char *s, const char *const *ops)
{
	for (; *ops != NULL; ops++) {
		if (strcmp(s, *ops) == 0) {
			return true;
		}
	}
	return false;
}

static mesh_err
numeric_compile(const struct build *b, const json_t *a, struct cond *c)
{
	static const char *const ops[] = {"=", ">=", ">", "<=", "<", NULL};
	static const char *const tops[] = {"<=", "<", NULL};
	size_t n = json_array_size(a);
	const json_t *v = json_array_get(a, 0);
	char buf[32];
	const char *op, *top;
	int64_t x;
	mesh_err err;

	if (!json_is_array(a)) {
		return fault(b, "numeric",
		             "Value of numeric must be an array.");
	}
	if (n == 0) {
		return fault(b, "numeric",
		             "Invalid member in numeric match: ]");
	}
	if (!json_is_string(v)) {
		return fault(b, "numeric",
		             "Invalid member in numeric match: %s",
		             token_text(v, buf, sizeof(buf)));
	}
	op = json_string_value(v);
	if (!is_op(op, ops)) {
		return fault(b, "numeric",
		             "Unrecognized numeric range operator: %s", op);
	}
	if ((err = numeric_value(b, json_array_get(a, 1), op, &x)) !=
	    MESH_OK) {
		return err;
	}
	c->kind = C_NUMERIC;
	if (op[0] == '=' || op[0] == '>') {
		c->has_lo = 1;
		c->lo = x;
		c->lo_incl = op[0] == '=' || op[1] == '=';
	}
	if (op[0] == '=' || op[0] == '<') {
		c->has_hi = 1;
		c->hi = x;
		c->hi_incl = op[0] == '=' || op[1] == '=';
	}
	if (n == 2) {
		return MESH_OK;
	}
	if (op[0] != '>') {
		return fault(b, "numeric",
		             "Too many elements in numeric expression");
	}
	v = json_array_get(a, 2);
	if (!json_is_string(v)) {
		return fault(b, "numeric", "Bad value in numeric range: %s",
		             token_text(v, buf, sizeof(buf)));
	}
	top = json_string_value(v);
	if (!is_op(top, tops)) {
		return fault(b, "numeric", "Bad numeric range operator: %s",
		             top);
	}
	if ((err = numeric_value(b, json_array_get(a, 3), top, &x)) !=
	    MESH_OK) {
		return err;
	}
	if (n > 4) {
		return fault(b, "numeric",
		             "Too many terms in numeric range expression");
	}
	if (x <= c->lo) {
		return fault(b, "numeric", "Bottom must be less than top");
	}
	c->has_hi = 1;
	c->hi = x;
	c->hi_incl = top[1] == '=';
	return MESH_OK;
}

/* Parse "address/bits" as Event Ruler does, with its texts. */
static mesh_err
cidr_compile(const struct build *b, const json_t *v, struct cond *c)
{
	const char *s = json_string_value(v), *slash;
	char ip[64], *end;
	long bits;

	if (s == NULL) {
		/* Sic: SNS names the wrong operator here. */
		return fault(b, "cidr",
		             "prefix match pattern must be a string");
	}
	slash = strchr(s, '/');
	if (slash == NULL || strchr(slash + 1, '/') != NULL ||
	    slash[1] == '\0') {
		return fault(b, "cidr", "Malformed CIDR, one '/' required");
	}
	bits = strtol(slash + 1, &end, 10);
	/* Java's parseInt: a sign and digits, nothing else. */
	if (*end != '\0' || end == slash + 1 ||
	    strchr("+-0123456789", slash[1]) == NULL || bits > INT32_MAX ||
	    bits < INT32_MIN) {
		return fault(b, "cidr",
		             "Malformed CIDR, mask bits must be an integer");
	}
	if (bits < 0) {
		return fault(b, "cidr",
		             "Malformed CIDR, mask bits must not be negative");
	}
	if ((size_t)(slash - s) >= sizeof(ip)) {
		return fault(b, "cidr", "Nonstandard IP address: %.*s",
		             (int)(slash - s), s);
	}
	memcpy(ip, s, (size_t)(slash - s));
	ip[slash - s] = '\0';
	c->kind = C_CIDR;
	if (inet_pton(AF_INET, ip, c->addr) == 1) {
		if (bits > 31) {
			return fault(b, "cidr", "IPv4 mask bits must be < 32");
		}
	} else if (inet_pton(AF_INET6, ip, c->addr) == 1) {
		if (bits > 127) {
			return fault(b, "cidr",
			             "IPv6 mask bits must be < 128");
		}
		c->v6 = 1;
	} else {
		return fault(b, "cidr", "Nonstandard IP address: %s", ip);
	}
	c->bits = (uint8_t)bits;
	return MESH_OK;
}

/* Store a string of the policy; in a dry run only check it. */
static mesh_err
cond_string(struct build *b, const json_t *v, struct cond *c)
{
	if (b->dry) {
		return MESH_OK;
	}
	c->len = (uint32_t)json_string_length(v);
	return text_add(b, json_string_value(v), c->len, &c->off) ? MESH_OK
	                                                          : nomem();
}

/* Add one member to an anything-but set. */
static mesh_err
set_add(struct build *b, const json_t *v)
{
	if (b->dry) {
		return MESH_OK;
	}
	if (json_is_number(v)) {
		if (!grow(&b->p.nums, &b->nums_cap, b->nums_n,
		          sizeof(*b->p.nums))) {
			return nomem();
		}
		b->p.nums[b->nums_n++] = num_make(json_number_value(v));
		return MESH_OK;
	}
	if (!grow(&b->p.strs, &b->strs_cap, b->strs_n, sizeof(*b->p.strs))) {
		return nomem();
	}
	b->p.strs[b->strs_n].n = (uint32_t)json_string_length(v);
	if (!text_add(b, json_string_value(v), json_string_length(v),
	              &b->p.strs[b->strs_n].first)) {
		return nomem();
	}
	b->strs_n++;
	return MESH_OK;
}

static mesh_err
anything_but_compile(struct build *b, const json_t *v, struct cond *c)
{
	const char *op = "anything-but", *inner;
	const json_t *x;
	size_t i, n_num = 0, n_str = 0;
	mesh_err err;

	if (json_is_object(v)) {
		if (json_object_size(v) == 0) {
			return fault(b, op,
			             "Anything-But expression name not found");
		}
		if (json_object_size(v) > 1) {
			return fault(
			        b, op,
			        "Only one key allowed in match expression");
		}
		inner = json_object_iter_key(json_object_iter((json_t *)v));
		x = json_object_iter_value(json_object_iter((json_t *)v));
		if (strcmp(inner, "prefix") != 0 &&
		    strcmp(inner, "suffix") != 0) {
			return fault(b, op,
			             "Unsupported anything-but pattern: %s",
			             inner);
		}
		if (!json_is_string(x)) {
			return fault(b, op,
			             "%s match pattern must be a string",
			             inner);
		}
		if (json_string_length(x) == 0) {
			return fault(b, op, "Null prefix/suffix not allowed");
		}
		c->kind = inner[0] == 'p' ? C_NOT_PREFIX : C_NOT_SUFFIX;
		return cond_string(b, x, c);
	}
	if (!json_is_array(v) && !json_is_string(v) && !json_is_number(v)) {
		return fault(
		        b, op,
		        "Value of anything-but must be an array or single "
		        "string/number value.");
	}
	c->off = (uint32_t)(json_is_number(v) ? b->nums_n : b->strs_n);
	if (!json_is_array(v)) {
		c->kind = json_is_number(v) ? C_NOT_NUMBERS : C_NOT_STRINGS;
		c->len = 1;
		return set_add(b, v);
	}
	json_array_foreach(v, i, x)
	{
		if (json_is_number(x)) {
			n_num++;
		} else if (json_is_string(x)) {
			n_str++;
		} else {
			return fault(b, op,
			             "Inside anything but list, "
			             "start|null|boolean is not supported.");
		}
	}
	if ((n_num > 0) == (n_str > 0)) {
		return fault(b, op,
		             "Inside anything but list, either all values are "
		             "number or string, mixed type is not supported");
	}
	c->kind = n_num > 0 ? C_NOT_NUMBERS : C_NOT_STRINGS;
	c->off = (uint32_t)(n_num > 0 ? b->nums_n : b->strs_n);
	c->len = (uint32_t)(n_num + n_str);
	json_array_foreach(v, i, x)
	{
		if ((err = set_add(b, x)) != MESH_OK) {
			return err;
		}
	}
	return MESH_OK;
}

/* One member of a key's list: a value or a {"operator": ...} object. */
static mesh_err
cond_compile(struct build *b, const json_t *v, struct cond *c)
{
	const char *op;
	const json_t *x;

	memset(c, 0, sizeof(*c));
	switch (json_typeof(v)) {
	case JSON_STRING:
		c->kind = C_STRING;
		return cond_string(b, v, c);
	case JSON_INTEGER:
	case JSON_REAL:
		c->kind = C_NUMBER;
		c->n = num_make(json_number_value(v));
		return MESH_OK;
	case JSON_TRUE:
	case JSON_FALSE:
	case JSON_NULL:
		c->kind = C_LITERAL;
		c->lit = json_is_true(v)    ? V_TRUE
		         : json_is_false(v) ? V_FALSE
		                            : V_NULL;
		return MESH_OK;
	case JSON_ARRAY:
		return fault(
		        b, NULL,
		        "Match value must be String, number, true, false, "
		        "or null");
	default:
		break;
	}
	if (json_object_size(v) == 0) {
		return fault(b, NULL, "Match expression name not found");
	}
	if (json_object_size(v) > 1) {
		return fault(b, NULL,
		             "Only one key allowed in match expression");
	}
	op = json_object_iter_key(json_object_iter((json_t *)v));
	x = json_object_iter_value(json_object_iter((json_t *)v));
	if (strcmp(op, "prefix") == 0 || strcmp(op, "suffix") == 0 ||
	    strcmp(op, "equals-ignore-case") == 0) {
		if (!json_is_string(x)) {
			return fault(b, op,
			             "%s match pattern must be a string", op);
		}
		c->kind = op[0] == 'p'   ? C_PREFIX
		          : op[0] == 's' ? C_SUFFIX
		                         : C_IGNORE_CASE;
		return cond_string(b, x, c);
	}
	if (strcmp(op, "anything-but") == 0) {
		return anything_but_compile(b, x, c);
	}
	if (strcmp(op, "numeric") == 0) {
		return numeric_compile(b, x, c);
	}
	if (strcmp(op, "exists") == 0) {
		if (!json_is_boolean(x)) {
			return fault(
			        b, op,
			        "exists match pattern must be either true "
			        "or false.");
		}
		c->kind = C_EXISTS;
		c->lit = json_is_true(x);
		return MESH_OK;
	}
	if (strcmp(op, "cidr") == 0) {
		return cidr_compile(b, x, c);
	}
	return fault(b, op, "Unrecognized match type %s", op);
}

/* A key's list of values becomes a leaf (not stored in a dry run). */
static mesh_err
leaf_compile(struct build *b, const json_t *list, uint32_t *id)
{
	struct leaf l = {.first = (uint32_t)b->conds_n};
	struct cond c;
	const json_t *v;
	size_t i;
	mesh_err err;

	if (json_array_size(list) == 0) {
		return fault(b, NULL, "Empty arrays are not allowed");
	}
	json_array_foreach(list, i, v)
	{
		if ((err = cond_compile(b, v, &c)) != MESH_OK) {
			return err;
		}
		if (b->dry) {
			continue;
		}
		l.absent_ok |= c.kind == C_EXISTS && !c.lit;
		l.present_ok |= c.kind == C_EXISTS && c.lit;
		if (!grow(&b->p.conds, &b->conds_cap, b->conds_n, sizeof(c))) {
			return nomem();
		}
		b->p.conds[b->conds_n++] = c;
		l.n++;
	}
	if (b->dry) {
		return MESH_OK;
	}
	l.path_len = (uint32_t)b->path_n;
	if (!text_add(b, b->path, b->path_n, &l.path) ||
	    !grow(&b->p.leaves, &b->leaves_cap, b->leaves_n, sizeof(l))) {
		return nomem();
	}
	*id = (uint32_t)b->leaves_n;
	b->p.leaves[b->leaves_n++] = l;
	return MESH_OK;
}

/* "$or" is the operator only when followed by 2+ objects that use no
 * operator names as keys; otherwise it is an ordinary key, as in SNS. */
static bool
is_or(const char *key, const json_t *v)
{
	static const char *const reserved[] = {
	        "anything-but", "numeric",  "exists",
	        "prefix",       "suffix",   "equals-ignore-case",
	        "cidr",         "wildcard", NULL};
	const json_t *alt;
	const char *k;
	json_t *x;
	size_t i;

	if (strcmp(key, "$or") != 0 || json_array_size(v) < 2) {
		return false;
	}
	json_array_foreach(v, i, alt)
	{
		if (!json_is_object(alt)) {
			return false;
		}
		json_object_foreach((json_t *)alt, k, x)
		{
			if (is_op(k, reserved)) {
				return false;
			}
		}
	}
	return true;
}

static void
bset_free(struct bset *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->v[i].ids);
	}
	free(s->v);
	memset(s, 0, sizeof(*s));
}

/* Append a copy of branch v to s. */
static bool
bset_add(struct bset *s, const struct bvec *v)
{
	struct bvec c = {.n = v->n, .cap = v->n};

	if (!grow(&s->v, &s->cap, s->n, sizeof(*s->v))) {
		return false;
	}
	if (v->n > 0 && (c.ids = malloc(v->n * sizeof(*c.ids))) == NULL) {
		return false;
	}
	if (v->n > 0) {
		memcpy(c.ids, v->ids, v->n * sizeof(*c.ids));
	}
	s->v[s->n++] = c;
	return true;
}

static mesh_err
path_push(struct build *b, const char *key, size_t *saved)
{
	size_t len = strlen(key), need = b->path_n + len + 2;

	*saved = b->path_n;
	while (need > b->path_cap) {
		if (!grow(&b->path, &b->path_cap, b->path_cap, 1)) {
			return nomem();
		}
	}
	if (b->path_n > 0) {
		b->path[b->path_n++] = '.';
	}
	memcpy(b->path + b->path_n, key, len);
	b->path_n += len;
	return MESH_OK;
}

static mesh_err walk(struct build *b, const json_t *obj, size_t depth,
                     struct bset *set, size_t *combos);

/* "$or": each alternative extends a copy of the branches so far; the
 * complexity is the sum over the alternatives. */
static mesh_err
walk_or(struct build *b, const json_t *alts, size_t depth, struct bset *set,
        size_t *combos)
{
	struct bset out = {0}, copy = {0};
	const json_t *alt;
	size_t i, sum = 0, c;
	mesh_err err = MESH_OK;

	json_array_foreach(alts, i, alt)
	{
		c = *combos;
		for (size_t k = 0; set != NULL && k < set->n; k++) {
			if (!bset_add(&copy, &set->v[k])) {
				err = nomem();
				goto out;
			}
		}
		if ((err = walk(b, alt, depth, set ? &copy : NULL, &c)) !=
		    MESH_OK) {
			goto out;
		}
		/* Room first, then move: a branch is owned by one set. */
		if (copy.n > 0 && !grow(&out.v, &out.cap, out.n + copy.n - 1,
		                        sizeof(*out.v))) {
			err = nomem();
			goto out;
		}
		for (size_t k = 0; k < copy.n; k++) {
			out.v[out.n++] = copy.v[k];
		}
		free(copy.v);
		memset(&copy, 0, sizeof(copy));
		sum = sum + c > 1000000 ? 1000000 : sum + c;
	}
	*combos = sum;
	if (set != NULL) {
		bset_free(set);
		*set = out;
		memset(&out, 0, sizeof(out));
	}
out:
	bset_free(&copy);
	bset_free(&out);
	return err;
}

/* Walk a policy object: check it (set NULL) or compile it into the
 * branches of set. combos multiplies by each list's length times its
 * depth, as SNS counts. */
static mesh_err
walk(struct build *b, const json_t *obj, size_t depth, struct bset *set,
     size_t *combos)
{
	const char *key;
	json_t *v;
	size_t saved = b->path_n, n;
	uint32_t id = 0;
	mesh_err err = MESH_OK;

	if (json_object_size(obj) == 0) {
		return fault(b, NULL, "Empty objects are not allowed");
	}
	json_object_foreach((json_t *)obj, key, v)
	{
		if (is_or(key, v)) {
			if ((err = walk_or(b, v, depth, set, combos)) !=
			    MESH_OK) {
				break;
			}
			continue;
		}
		if ((err = path_push(b, key, &saved)) != MESH_OK) {
			break;
		}
		if (json_is_object(v)) {
			/* SNS checks the whole policy before it refuses
			 * nesting in the MessageAttributes scope. */
			if (b->nested[0] == '\0') {
				snprintf(b->nested, sizeof(b->nested), "%.*s",
				         (int)b->path_n, b->path);
			}
			err = walk(b, v, depth + 1, set, combos);
		} else if (json_is_array(v)) {
			err = leaf_compile(b, v, &id);
			n = json_array_size(v) * depth;
			*combos = *combos > 1000000 / (n ? n : 1)
			                  ? 1000000
			                  : *combos * n;
			for (size_t k = 0;
			     err == MESH_OK && set != NULL && k < set->n;
			     k++) {
				struct bvec *bv = &set->v[k];
				if (!grow(&bv->ids, &bv->cap, bv->n,
				          sizeof(*bv->ids))) {
					err = nomem();
					break;
				}
				bv->ids[bv->n++] = id;
			}
		} else {
			err = fault(b, NULL,
			            "\"%s\" must be an object or an array",
			            key);
		}
		b->path_n = saved;
		if (err != MESH_OK) {
			break;
		}
	}
	return err;
}

/* The most keys a branch has at the top (nested keys count as their
 * parent, "$or" as its largest alternative). */
static size_t
top_keys(const json_t *obj)
{
	const char *key;
	json_t *v, *alt;
	size_t n = 0, i, m;

	json_object_foreach((json_t *)obj, key, v)
	{
		if (!is_or(key, v)) {
			n++;
			continue;
		}
		m = 0;
		json_array_foreach(v, i, alt)
		{
			size_t k = top_keys(alt);
			m = k > m ? k : m;
		}
		n += m;
	}
	return n;
}

static void
parts_free(struct parts *p)
{
	free(p->text);
	free(p->conds);
	free(p->leaves);
	free(p->strs);
	free(p->nums);
}

/* Move the compiled parts into f. */
static mesh_err
finish(struct build *b, struct bset *set, struct mesh_filter *f)
{
	size_t total = 0;

	for (size_t i = 0; i < set->n; i++) {
		if (set->v[i].n > MAX_LEAVES) {
			return mesh__seterr(MESH_EINVAL, ERR_PREFIX
			                    "Filter policy is too complex");
		}
		total += set->v[i].n;
	}
	f->branches = calloc(set->n ? set->n : 1, sizeof(*f->branches));
	f->ids = calloc(total ? total : 1, sizeof(*f->ids));
	if (f->branches == NULL || f->ids == NULL) {
		return nomem();
	}
	total = 0;
	for (size_t i = 0; i < set->n; i++) {
		f->branches[i] =
		        (struct span){(uint32_t)total, (uint32_t)set->v[i].n};
		if (set->v[i].n > 0) {
			memcpy(f->ids + total, set->v[i].ids,
			       set->v[i].n * sizeof(*f->ids));
		}
		total += set->v[i].n;
	}
	f->n_branches = set->n;
	f->p = b->p;
	memset(&b->p, 0, sizeof(b->p));
	return MESH_OK;
}

mesh_err
mesh_filter_compile(const char *policy, size_t len, mesh_filter_scope scope,
                    struct mesh_filter **out)
{
	struct build b = {.scope = scope, .dry = true};
	struct bset set = {0};
	struct bvec empty = {0};
	struct mesh_filter *f = NULL;
	json_error_t jerr;
	json_t *root;
	size_t combos = 1;
	mesh_err err;

	assert(policy != NULL || len == 0);
	assert(out != NULL);
	if (len > MESH_FILTER_MAX_SIZE) {
		return mesh__seterr(MESH_ETOOBIG,
		                    ERR_PREFIX
		                    "policy of %zu bytes is over "
		                    "the limit of %d bytes (256 KB)",
		                    len, MESH_FILTER_MAX_SIZE);
	}
	root = json_loadb(policy, len,
	                  JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &jerr);
	if (root == NULL) {
		return mesh__seterr(MESH_EINVAL,
		                    ERR_PREFIX "not valid JSON: %s (line %d, "
		                               "column %d)",
		                    jerr.text, jerr.line, jerr.column);
	}
	if (!json_is_object(root)) {
		err = mesh__seterr(MESH_EINVAL,
		                   ERR_PREFIX "Filter is not an object");
		goto out;
	}
	/* An empty policy lets everything through, as no policy does. */
	if (json_object_size(root) > 0) {
		if ((err = walk(&b, root, 1, NULL, &combos)) != MESH_OK) {
			goto out;
		}
		if (top_keys(root) > MESH_FILTER_MAX_KEYS) {
			err = mesh__seterr(MESH_EINVAL,
			                   ERR_PREFIX "Filter policy can not "
			                              "have more than 5 keys");
			goto out;
		}
		if (scope == MESH_FILTER_SCOPE_ATTRIBUTES && b.nested[0]) {
			err = mesh__seterr(
			        MESH_EINVAL,
			        "Invalid parameter: Filter policy scope "
			        "MessageAttributes does not support "
			        "nested filter policy (key '%s')",
			        b.nested);
			goto out;
		}
		if (combos > MESH_FILTER_MAX_COMBINATIONS) {
			err = mesh__seterr(MESH_EINVAL,
			                   ERR_PREFIX "Filter policy is too "
			                              "complex");
			goto out;
		}
	}
	b.dry = false;
	if (!bset_add(&set, &empty)) {
		err = nomem();
		goto out;
	}
	if (json_object_size(root) > 0 &&
	    (err = walk(&b, root, 1, &set, &combos)) != MESH_OK) {
		goto out;
	}
	if ((f = calloc(1, sizeof(*f))) == NULL) {
		err = nomem();
		goto out;
	}
	f->scope = scope;
	if ((err = finish(&b, &set, f)) != MESH_OK) {
		goto out;
	}
	*out = f;
	f = NULL;
out:
	mesh_filter_free(f);
	bset_free(&set);
	parts_free(&b.p);
	free(b.path);
	json_decref(root);
	return err;
}

void
mesh_filter_free(struct mesh_filter *f)
{
	if (f == NULL) {
		return;
	}
	parts_free(&f->p);
	free(f->ids);
	free(f->branches);
	free(f);
}

mesh_filter_scope
mesh_filter_scope_of(const struct mesh_filter *f)
{
	return f->scope;
}

mesh_err
mesh_filter_scope_parse(const char *s, mesh_filter_scope *out)
{
	if (s != NULL && strcmp(s, "MessageAttributes") == 0) {
		*out = MESH_FILTER_SCOPE_ATTRIBUTES;
		return MESH_OK;
	}
	if (s != NULL && strcmp(s, "MessageBody") == 0) {
		*out = MESH_FILTER_SCOPE_BODY;
		return MESH_OK;
	}
	return mesh__seterr(MESH_EINVAL,
	                    "Invalid parameter: FilterPolicyScope: Invalid "
	                    "value [%.64s]. Please use either MessageBody or "
	                    "MessageAttributes",
	                    s ? s : "null");
}

const char *
mesh_filter_scope_name(mesh_filter_scope scope)
{
	return scope == MESH_FILTER_SCOPE_BODY ? "MessageBody"
	                                       : "MessageAttributes";
}

/* ---- matching: nothing below allocates ----------------------------------
 */

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

static bool
bytes_eq(const char *a, size_t alen, const char *b, size_t blen)
{
	return alen == blen && memcmp(a, b, alen) == 0;
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

/* Does one present value of a leaf match any of its conditions? */
static bool
leaf_value(const struct mesh_filter *f, const struct leaf *l,
           const struct val *v)
{
	if (l->present_ok) {
		return true;
	}
	for (uint32_t i = 0; i < l->n; i++) {
		if (cond_match(f, &f->p.conds[l->first + i], v)) {
			return true;
		}
	}
	return false;
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
	v->n = num_make(d);
	return true;
}

static const char *
skip_ws(const char *p, const char *end)
{
	while (p < end &&
	       (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) {
		p++;
	}
	return p;
}

/* The end of a JSON string starting after its opening quote, or NULL;
 * *escaped tells whether it holds escapes. */
static const char *
string_end(const char *p, const char *end, bool *escaped)
{
	*escaped = false;
	for (; p < end; p++) {
		if (*p == '\\') {
			*escaped = true;
			p++;
		} else if (*p == '"') {
			return p;
		}
	}
	return NULL;
}

/* Skip a nested array or object (which never matches), or NULL. */
static const char *
skip_nested(const char *p, const char *end)
{
	int depth = 0;
	bool esc;

	for (; p < end; p++) {
		if (*p == '"') {
			if ((p = string_end(p + 1, end, &esc)) == NULL) {
				return NULL;
			}
		} else if (*p == '[' || *p == '{') {
			depth++;
		} else if ((*p == ']' || *p == '}') && --depth == 0) {
			return p + 1;
		}
	}
	return NULL;
}

/* Does any element of a String.Array value (JSON array text, parsed in
 * place) match the leaf? */
static bool
array_match(const struct mesh_filter *f, const struct leaf *l, const char *s,
            size_t len)
{
	const char *p = s, *end = s + len, *q;
	struct val v;
	bool esc;

	p = skip_ws(p, end);
	if (p >= end || *p++ != '[') {
		return false;
	}
	for (;;) {
		bool have = true;
		p = skip_ws(p, end);
		if (p >= end) {
			return false;
		}
		if (*p == ']') {
			return false;
		}
		memset(&v, 0, sizeof(v));
		if (*p == '"') {
			if ((q = string_end(p + 1, end, &esc)) == NULL) {
				return false;
			}
			v.t = V_STRING;
			v.s = p + 1;
			v.len = (size_t)(q - p - 1);
			v.esc = esc;
			v.dlen = esc ? decoded_len(v.s, v.len) : v.len;
			p = q + 1;
		} else if (*p == '[' || *p == '{') {
			if ((p = skip_nested(p, end)) == NULL) {
				return false;
			}
			have = false;
		} else {
			for (q = p; q < end && strchr(",] \t\r\n", *q) == NULL;
			     q++) {
			}
			if (bytes_eq(p, (size_t)(q - p), "true", 4)) {
				v.t = V_TRUE;
			} else if (bytes_eq(p, (size_t)(q - p), "false", 5)) {
				v.t = V_FALSE;
			} else if (bytes_eq(p, (size_t)(q - p), "null", 4)) {
				v.t = V_NULL;
			} else if (!parse_number(p, (size_t)(q - p), &v)) {
				return false;
			}
			p = q;
		}
		if (have && leaf_value(f, l, &v)) {
			return true;
		}
		p = skip_ws(p, end);
		if (p >= end || *p != ',') {
			return false;
		}
		p++;
	}
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

static bool
match_attributes_event(const struct mesh_filter *f,
                       const struct mesh_event *ev)
{
	for (size_t i = 0; i < f->n_branches; i++) {
		const struct span *br = &f->branches[i];
		bool ok = true;
		for (uint32_t k = 0; ok && k < br->n; k++) {
			const struct leaf *l =
			        &f->p.leaves[f->ids[br->first + k]];
			const char *type = NULL;
			const void *value = NULL;
			size_t type_len = 0, len = 0;
			mesh__event_attr_peek(ev, f->p.text + l->path, &type,
			                      &type_len, &value, &len);
			ok = attr_leaf(f, l, type, type_len, value, len);
		}
		if (ok) {
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
		x.n = num_make(json_number_value(v));
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
	return leaf_value(f, l, &x);
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
		if (body_sat(f, f->ids + br->first, mask, 0, body, 0)) {
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
		return mesh__seterr(
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
		return mesh__seterr(MESH_EINVAL,
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
		return mesh__seterr(MESH_EINVAL,
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
		*match = ok;
	}
	return MESH_OK;
}
