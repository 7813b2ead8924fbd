/* filter.c: SNS subscription filter policies, compiled once into a flat
 * immutable form (filter_internal.h), which filter_match.c evaluates
 * without allocating.
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

#include "filter_internal.h"

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
	return mesh_err_set(MESH_ENOMEM, ERR_PREFIX "out of memory");
}

/* Record SNS's text for a fault, naming the key (and operator). */
static mesh_err fault(const struct build *b, const char *op, const char *fmt,
                      ...) MESH_PRINTF(3, 4);

static mesh_err
fault(const struct build *b, const char *op, const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (b->path_n == 0) { /* an empty "$or" alternative */
		return mesh_err_set(MESH_EINVAL, ERR_PREFIX "%s", text);
	}
	if (op != NULL) {
		return mesh_err_set(MESH_EINVAL,
		                    ERR_PREFIX
		                    "%s (key '%.*s', operator '%s')",
		                    text, (int)b->path_n, b->path, op);
	}
	return mesh_err_set(MESH_EINVAL, ERR_PREFIX "%s (key '%.*s')", text,
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

struct num
mesh__filter_num(double d)
{
	return (struct num){.d = d, .scaled = num_scaled(d)};
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
		b->p.nums[b->nums_n++] =
		        mesh__filter_num(json_number_value(v));
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
		c->n = mesh__filter_num(json_number_value(v));
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
			return mesh_err_set(MESH_EINVAL, ERR_PREFIX
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
		return mesh_err_set(MESH_ETOOBIG,
		                    ERR_PREFIX
		                    "policy of %zu bytes is over "
		                    "the limit of %d bytes (256 KB)",
		                    len, MESH_FILTER_MAX_SIZE);
	}
	root = json_loadb(policy, len,
	                  JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &jerr);
	if (root == NULL) {
		return mesh_err_set(MESH_EINVAL,
		                    ERR_PREFIX "not valid JSON: %s (line %d, "
		                               "column %d)",
		                    jerr.text, jerr.line, jerr.column);
	}
	if (!json_is_object(root)) {
		err = mesh_err_set(MESH_EINVAL,
		                   ERR_PREFIX "Filter is not an object");
		goto out;
	}
	/* An empty policy lets everything through, as no policy does. */
	if (json_object_size(root) > 0) {
		if ((err = walk(&b, root, 1, NULL, &combos)) != MESH_OK) {
			goto out;
		}
		if (top_keys(root) > MESH_FILTER_MAX_KEYS) {
			err = mesh_err_set(MESH_EINVAL,
			                   ERR_PREFIX "Filter policy can not "
			                              "have more than 5 keys");
			goto out;
		}
		if (scope == MESH_FILTER_SCOPE_ATTRIBUTES && b.nested[0]) {
			err = mesh_err_set(
			        MESH_EINVAL,
			        "Invalid parameter: Filter policy scope "
			        "MessageAttributes does not support "
			        "nested filter policy (key '%s')",
			        b.nested);
			goto out;
		}
		if (combos > MESH_FILTER_MAX_COMBINATIONS) {
			err = mesh_err_set(MESH_EINVAL,
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
	return mesh_err_set(MESH_EINVAL,
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
