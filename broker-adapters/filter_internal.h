/* filter_internal.h: what the compiler (filter.c) and the matcher
 * (filter_match.c) of SNS filter policies share: the compiled form.
 * Library-internal. */
#ifndef MESH_FILTER_INTERNAL_H
#define MESH_FILTER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "mesh/event.h"
#include "mesh/filter.h"
#include "mesh/jscan.h"

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

/* A number as matching compares it (filter.c). */
struct num mesh__filter_num(double d);

#endif
