/* SNS filter policies: every operator on AWS's documented examples, both
 * scopes, validation with SNS's texts, the limits, no allocation while
 * matching, and 20,000 random and mutated policies. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "mesh/mesh.h"

/* Calls to malloc, calloc and realloc from the code linked into this
 * program (libmesh is static): the test links with --wrap. */
static long allocs;
static long fail_after = -1; /* >= 0: that many succeed, then NULL */
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);

void *
__wrap_malloc(size_t n)
{
	allocs++;
	if (fail_after >= 0 && fail_after-- == 0) {
		return NULL;
	}
	return __real_malloc(n);
}

void *
__wrap_calloc(size_t n, size_t size)
{
	allocs++;
	if (fail_after >= 0 && fail_after-- == 0) {
		return NULL;
	}
	return __real_calloc(n, size);
}

void *
__wrap_realloc(void *p, size_t n)
{
	allocs++;
	if (fail_after >= 0 && fail_after-- == 0) {
		return NULL;
	}
	return __real_realloc(p, n);
}

#define ATTRS MESH_FILTER_SCOPE_ATTRIBUTES
#define BODY  MESH_FILTER_SCOPE_BODY

static struct mesh_filter *
compile(const char *policy, mesh_filter_scope scope)
{
	struct mesh_filter *f = NULL;

	if (mesh_filter_compile(policy, strlen(policy), scope, &f) !=
	    MESH_OK) {
		tap_diag("compile failed: %s", mesh_errdetail());
		return NULL;
	}
	return f;
}

/* 1 match, 0 no match, -1 error: SNS's JSON form of attributes. */
static int
attrs(const char *policy, const char *attributes)
{
	struct mesh_filter *f = compile(policy, ATTRS);
	json_t *a = json_loads(attributes, 0, NULL);
	bool m = false;
	int rc = -1;

	if (f != NULL && a != NULL &&
	    mesh_filter_match_sns_attrs(f, a, &m) == MESH_OK) {
		rc = m;
	}
	json_decref(a);
	mesh_filter_free(f);
	return rc;
}

static int
body(const char *policy, const char *text)
{
	struct mesh_filter *f = compile(policy, BODY);
	json_t *b = json_loads(text, JSON_DECODE_ANY, NULL);
	int rc = -1;

	if (f != NULL && b != NULL) {
		rc = mesh_filter_match_json(f, b);
	}
	json_decref(b);
	mesh_filter_free(f);
	return rc;
}

/* The error text of an invalid policy, or "" when it compiles. */
static const char *
bad(const char *policy, mesh_filter_scope scope)
{
	struct mesh_filter *f = NULL;
	mesh_err err = mesh_filter_compile(policy, strlen(policy), scope, &f);

	mesh_filter_free(f);
	return err == MESH_EINVAL ? mesh_errdetail() : "";
}

#define S(name, value)                                                        \
	"\"" name "\":{\"DataType\":\"String\",\"StringValue\":" value "}"
#define N(name, value)                                                        \
	"\"" name "\":{\"DataType\":\"Number\",\"StringValue\":\"" value "\"" \
	"}"
#define A(name, value)                                                        \
	"\"" name "\":{\"DataType\":\"String.Array\",\"StringValue\":" value  \
	"}"

#define EXACT_P    "{\"customer_interests\": [\"rugby\", \"tennis\"]}"
#define NUMBERS_EQ "{\"price_usd\": [{\"numeric\": [\"=\", 301.5]}]}"
#define NUMBERS_RNG                                                           \
	"{\"price_usd\": [{\"numeric\": [\">\", 0, \"<=\", "                  \
	"150]}]}"
#define ANYTHING_BUT_P                                                        \
	"{\"customer_interests\": [{\"anything-but\": [\"rugby\", "           \
	"\"tennis\"]}]}"
#define ANYTHING_BUT_PRE                                                      \
	"{\"event\": [{\"anything-but\": {\"prefix\": "                       \
	"\"order-\"}}]}"
#define ANYTHING_BUT_SUF                                                      \
	"{\"f\": [{\"anything-but\": {\"suffix\": "                           \
	"\".png\"}}]}"
#define CIDR_P4    "{\"source_ip\": [{\"cidr\": \"10.0.0.0/24\"}]}"
#define CIDR_P6    "{\"ip\": [{\"cidr\": \"2001:db8::/32\"}]}"
#define EXISTS_YES "{\"store\": [{\"exists\": true}]}"
#define EXISTS_NO  "{\"store\": [{\"exists\": false}]}"
#define AND_OR_AND                                                            \
	"{\"customer_interests\": [\"rugby\"], "                              \
	"\"price_usd\": [{\"numeric\": [\">\", 100]}]}"
#define AND_OR_OR                                                             \
	"{\"source\": [\"aws.cloudwatch\"], \"$or\": ["                       \
	"{\"metricName\": [\"CPUUtilization\", "                              \
	"\"ReadLatency\"]}, {\"namespace\": [\"AWS/EC2\", "                   \
	"\"AWS/ES\"]}]}"
#define AND_OR_NESTED_OR                                                      \
	"{\"source\": [\"aws.cloudwatch\"], \"$or\": "                        \
	"[{\"metricName\": "                                                  \
	"[\"CPUUtilization\"]}, {\"$or\": [{\"metricType\": "                 \
	"[\"MetricType\"]}, {\"namespace\": [\"AWS/EC2\"]}]}]}"
#define BODY_P                                                                \
	"{\"object\": {\"key\": [{\"prefix\": \"auto-\"}, "                   \
	"\"hardcodedvalue\"], \"nested_key\": [{\"exists\": "                 \
	"false}]}, \"test\": [{\"exists\": false}]}"
#define BODY_REC                                                              \
	"{\"Records\": {\"s3\": {\"object\": {\"key\": [{\"prefix\": "        \
	"\"auto-\"}]}}, \"eventName\": [{\"prefix\": "                        \
	"\"ObjectCreated:\"}]}}"

/* Policies and messages, mostly AWS's documented examples, and what SNS
 * decides (1 match, 0 not). */
static const struct {
	mesh_filter_scope scope;
	const char *policy, *message;
	int want;
	const char *what;
} cases[] = {
        /* exact */
        {ATTRS, EXACT_P, "{" S("customer_interests", "\"rugby\"") "}", 1,
         "exact: rugby matches [rugby, tennis]"},
        {ATTRS, EXACT_P, "{" S("customer_interests", "\"tennis\"") "}", 1,
         "exact: tennis matches"},
        {ATTRS, EXACT_P,
         "{" A("customer_interests",
               "\"[\\\"rugby\\\", \\\"tennis\\\"]\"") "}",
         1, "exact: a String.Array matches by any element"},
        {ATTRS, EXACT_P, "{" S("customer_interests", "\"baseball\"") "}", 0,
         "exact: baseball does not"},
        {ATTRS, EXACT_P,
         "{" A("customer_interests", "\"[\\\"baseball\\\"]\"") "}", 0,
         "exact: nor [baseball]"},
        {ATTRS, EXACT_P, "{" S("customer_interests", "\"Rugby\"") "}", 0,
         "exact: matching is case-sensitive"},
        {ATTRS, EXACT_P, "{}", 0, "exact: a missing attribute does not match"},
        {BODY, EXACT_P, "{\"customer_interests\": \"rugby\"}", 1,
         "exact, body: rugby matches"},
        {BODY, EXACT_P, "{\"customer_interests\": \"baseball\"}", 0,
         "exact, body: baseball does not"},
        {BODY, EXACT_P, "{\"customer_interests\": [\"soccer\", \"tennis\"]}",
         1, "exact, body: an array matches by any element"},
        /* numbers */
        {ATTRS, NUMBERS_EQ, "{" N("price_usd", "301.5") "}", 1,
         "numeric =: 301.5 matches"},
        {ATTRS, NUMBERS_EQ, "{" N("price_usd", "3.015e2") "}", 1,
         "numeric =: 3.015e2 matches too"},
        {ATTRS, NUMBERS_EQ, "{" N("price_usd", "301.50001") "}", 0,
         "numeric =: 301.50001 does not (five decimals)"},
        {ATTRS, NUMBERS_EQ, "{" S("price_usd", "\"301.5\"") "}", 0,
         "numeric: a String attribute never matches a numeric "
         "condition"},
        {ATTRS, NUMBERS_RNG, "{" N("price_usd", "100") "}", 1,
         "range (0, 150]: 100 matches"},
        {ATTRS, NUMBERS_RNG, "{" N("price_usd", "150") "}", 1,
         "range: 150 matches (<=)"},
        {ATTRS, NUMBERS_RNG, "{" N("price_usd", "0") "}", 0,
         "range: 0 does not (>)"},
        {ATTRS, NUMBERS_RNG, "{" N("price_usd", "150.00001") "}", 0,
         "range: 150.00001 does not"},
        /* Regression (fuzz_filter): 19 digits overflowed the fast path. */
        {ATTRS, NUMBERS_RNG, "{" N("price_usd", "1555555555555555555.5") "}",
         0, "range: a 19-digit number does not, and does not overflow"},
        {ATTRS, NUMBERS_RNG, "{" N("price_usd", "10.12345678901234567") "}", 1,
         "range: a number with 17 decimals matches"},
        {ATTRS, "{\"p\": [{\"numeric\": [\"<\", 0]}]}",
         "{" N("p", "-1e-3") "}", 1, "numeric <: -0.001 matches"},
        {ATTRS, "{\"p\": [{\"numeric\": [\">=\", 10]}]}", "{" N("p", "10") "}",
         1, "numeric >=: 10 matches"},
        {ATTRS, "{\"p\": [300]}", "{" N("p", "3.0e2") "}", 1,
         "exact number: 300 matches 3.0e2"},
        {ATTRS, "{\"p\": [300]}", "{" S("p", "\"300\"") "}", 0,
         "exact number: not the String \"300\""},
        {ATTRS, "{\"p\": [\"300\"]}", "{" N("p", "300") "}", 0,
         "exact string \"300\": not the Number 300"},
        {ATTRS, "{\"p\": [123456789012]}", "{" N("p", "123456789012") "}", 1,
         "exact number beyond SNS's range (an account id)"},
        {BODY, NUMBERS_RNG, "{\"price_usd\": 99.5}", 1,
         "range, body: 99.5 matches"},
        {BODY, NUMBERS_RNG, "{\"price_usd\": \"99.5\"}", 0,
         "range, body: the string \"99.5\" does not"},
        {ATTRS, NUMBERS_RNG, "{" A("price_usd", "\"[200, 20]\"") "}", 1,
         "range: a String.Array of numbers matches by any element"},
        /* anything_but */
        {ATTRS, ANYTHING_BUT_P,
         "{" S("customer_interests", "\"baseball\"") "}", 1,
         "anything-but: baseball matches"},
        {ATTRS, ANYTHING_BUT_P, "{" S("customer_interests", "\"rugby\"") "}",
         0, "anything-but: rugby does not"},
        {ATTRS, ANYTHING_BUT_P,
         "{" A("customer_interests",
               "\"[\\\"rugby\\\", \\\"baseball\\\"]\"") "}",
         1, "anything-but: [rugby, baseball] matches (AWS's example)"},
        {ATTRS, ANYTHING_BUT_P,
         "{" A("customer_interests",
               "\"[\\\"rugby\\\", \\\"tennis\\\"]\"") "}",
         0, "anything-but: [rugby, tennis] does not"},
        {ATTRS, ANYTHING_BUT_P, "{}", 0,
         "anything-but: a missing attribute does not match"},
        {ATTRS, "{\"a\": [{\"anything-but\": \"x\"}]}",
         "{" S("a", "\"y\"") "}", 1, "anything-but: a single string"},
        {ATTRS, "{\"a\": [{\"anything-but\": [100, 200]}]}",
         "{" N("a", "1e2") "}", 0, "anything-but numbers: 1e2 is 100"},
        {ATTRS, "{\"a\": [{\"anything-but\": [100, 200]}]}",
         "{" N("a", "150") "}", 1, "anything-but numbers: 150 matches"},
        {ATTRS, ANYTHING_BUT_PRE, "{" S("event", "\"data-entry\"") "}", 1,
         "anything-but prefix: data-entry matches"},
        {ATTRS, ANYTHING_BUT_PRE, "{" S("event", "\"order_number\"") "}", 1,
         "anything-but prefix: order_number matches"},
        {ATTRS, ANYTHING_BUT_PRE, "{" S("event", "\"order-cancelled\"") "}", 0,
         "anything-but prefix: order-cancelled does not"},
        {ATTRS, ANYTHING_BUT_SUF, "{" S("f", "\"a.png\"") "}", 0,
         "anything-but suffix: a.png does not"},
        {ATTRS, ANYTHING_BUT_SUF, "{" S("f", "\"a.jpg\"") "}", 1,
         "anything-but suffix: a.jpg matches"},
        {ATTRS, "{\"a\": [null, {\"anything-but\": \"whatever\"}]}", "{}", 0,
         "null and anything-but: no attribute, no match (as SNS)"},
        {BODY, "{\"a\": [{\"anything-but\": \"x\"}]}", "{\"a\": null}", 0,
         "anything-but, body: null does not match"},
        {BODY, "{\"a\": [{\"anything-but\": \"x\"}]}", "{\"b\": 1}", 0,
         "anything-but, body: a missing key does not match"},
        {ATTRS,
         "{\"c\": [{\"anything-but\": [\"rugby\"]}, {\"exists\": false}]}",
         "{" S("d", "\"x\"") "}", 1,
         "anything-but combined with exists false: absent passes"},
        {ATTRS,
         "{\"c\": [{\"anything-but\": [\"rugby\"]}, {\"exists\": false}]}",
         "{}", 0,
         "anything-but combined with exists false: not without any "
         "attribute"},
        {ATTRS,
         "{\"c\": [{\"anything-but\": [\"rugby\"]}, {\"exists\": false}]}",
         "{" S("c", "\"rugby\"") "}", 0,
         "anything-but combined with exists false: rugby does not"},
        /* strings */
        {ATTRS, "{\"c\": [{\"prefix\": \"bas\"}]}",
         "{" S("c", "\"baseball\"") "}", 1,
         "prefix: baseball begins with bas"},
        {ATTRS, "{\"c\": [{\"prefix\": \"bas\"}]}",
         "{" S("c", "\"rugby\"") "}", 0, "prefix: rugby does not"},
        {ATTRS, "{\"c\": [{\"suffix\": \"ball\"}]}",
         "{" S("c", "\"baseball\"") "}", 1, "suffix: baseball ends with ball"},
        {ATTRS, "{\"c\": [{\"suffix\": \"ball\"}]}",
         "{" S("c", "\"rugby\"") "}", 0, "suffix: rugby does not"},
        {ATTRS, "{\"c\": [{\"equals-ignore-case\": \"tEnnis\"}]}",
         "{" S("c", "\"TENNIS\"") "}", 1, "equals-ignore-case: TENNIS"},
        {ATTRS, "{\"c\": [{\"equals-ignore-case\": \"tEnnis\"}]}",
         "{" S("c", "\"tennis2\"") "}", 0, "equals-ignore-case: not tennis2"},
        {ATTRS, "{\"c\": [{\"prefix\": \"a\\\"b\"}]}",
         "{" A("c", "\"[\\\"x\\\", \\\"a\\\\\\\"bc\\\"]\"") "}", 1,
         "String.Array element with an escape, decoded in place"},
        {ATTRS, "{\"c\": [\"\\u00e9t\\u00e9\"]}",
         "{" A("c", "\"[\\\"\\\\u00e9t\\\\u00e9\\\"]\"") "}", 1,
         "String.Array: \\u escapes decode to UTF-8"},
        {ATTRS, "{\"c\": [true]}", "{" A("c", "\"[false, true]\"") "}", 1,
         "String.Array: true matches true"},
        {ATTRS, "{\"c\": [true]}", "{" S("c", "\"true\"") "}", 0,
         "the String \"true\" is not true"},
        {BODY, "{\"c\": [{\"equals-ignore-case\": \"\u00c9t\u00c9\"}]}",
         "{\"c\": \"\u00e9t\u00e9\"}", 1,
         "equals-ignore-case folds Latin-1 (ÉtÉ, été)"},
        {BODY, "{\"c\": [{\"equals-ignore-case\": \"\u041c\u0418\u0420\"}]}",
         "{\"c\": \"\u043c\u0438\u0440\"}", 1,
         "equals-ignore-case folds Cyrillic"},
        {BODY, "{\"c\": [{\"equals-ignore-case\": \"ab\"}]}",
         "{\"c\": \"abc\"}", 0, "equals-ignore-case: lengths differ"},
        /* cidr */
        {ATTRS, CIDR_P4, "{" S("source_ip", "\"10.0.0.0\"") "}", 1,
         "cidr: 10.0.0.0 in 10.0.0.0/24"},
        {ATTRS, CIDR_P4, "{" S("source_ip", "\"10.0.0.255\"") "}", 1,
         "cidr: 10.0.0.255 in it"},
        {ATTRS, CIDR_P4, "{" S("source_ip", "\"10.1.1.0\"") "}", 0,
         "cidr: 10.1.1.0 not"},
        {ATTRS, CIDR_P4, "{" S("source_ip", "\"not an ip\"") "}", 0,
         "cidr: not an address, no match"},
        {ATTRS, CIDR_P6, "{" S("ip", "\"2001:db8:1::7\"") "}", 1,
         "cidr: IPv6 2001:db8:1::7 in 2001:db8::/32"},
        {ATTRS, CIDR_P6, "{" S("ip", "\"2001:db9::1\"") "}", 0,
         "cidr: IPv6 2001:db9::1 not"},
        {BODY, "{\"ip\": [{\"cidr\": \"192.168.0.0/17\"}]}",
         "{\"ip\": \"192.168.127.1\"}", 1, "cidr, body: /17 boundary inside"},
        {BODY, "{\"ip\": [{\"cidr\": \"192.168.0.0/17\"}]}",
         "{\"ip\": \"192.168.128.1\"}", 0, "cidr, body: /17 boundary outside"},
        /* exists */
        {ATTRS, EXISTS_YES, "{" N("store", "99") "," N("def", "99") "}", 1,
         "exists true: present"},
        {ATTRS, EXISTS_YES, "{" N("attr1", "111") "}", 0,
         "exists true: absent"},
        {ATTRS, EXISTS_NO, "{" N("def", "99") "}", 1, "exists false: absent"},
        {ATTRS, EXISTS_NO, "{" N("store", "99") "}", 0,
         "exists false: present"},
        {ATTRS, EXISTS_YES,
         "{\"store\":{\"DataType\":\"Binary\","
         "\"BinaryValue\":\"AAE=\"}}",
         0, "a Binary attribute is ignored (exists true)"},
        {ATTRS, "{\"store\": [\"\"]}",
         "{\"store\":{\"DataType\":\"Binary\","
         "\"BinaryValue\":\"\"}}",
         0, "a Binary attribute never matches a value"},
        /* AWS: "exists": false "only matches if at least one attribute is
         * present. An empty set of attributes results in the filter not
         * matching." */
        {ATTRS, EXISTS_NO, "{}", 0,
         "exists false: an empty set of attributes does not match"},
        {ATTRS, EXISTS_NO,
         "{\"blob\":{\"DataType\":\"Binary\",\"BinaryValue\":\"AAE=\"}}", 1,
         "exists false: a Binary attribute is one attribute"},
        {ATTRS, "{\"a\": [{\"exists\": false}], \"b\": [{\"exists\": false}]}",
         "{}", 0, "two keys exists false: not without any attribute"},
        {ATTRS, "{\"a\": [{\"exists\": false}], \"b\": [{\"exists\": false}]}",
         "{" S("c", "\"x\"") "}", 1, "... and with another attribute"},
        {ATTRS, "{\"a\": [{\"exists\": false}], \"b\": [\"x\"]}",
         "{" S("b", "\"x\"") "}", 1,
         "exists false and another key's value: both hold"},
        {ATTRS, "{\"a\": [{\"exists\": false}], \"b\": [\"x\"]}",
         "{" S("a", "\"y\"") "," S("b", "\"x\"") "}", 0,
         "... not with the key present"},
        {ATTRS,
         "{\"$or\": [{\"a\": [{\"exists\": false}]}, {\"b\": [\"x\"]}]}", "{}",
         0, "$or with exists false: not without any attribute"},
        {ATTRS,
         "{\"$or\": [{\"a\": [{\"exists\": false}]}, {\"b\": [\"x\"]}]}",
         "{" S("c", "\"x\"") "}", 1, "... and with one, its absence"},
        {ATTRS, "{}", "{}", 1,
         "an empty policy still passes a message without attributes"},
        {BODY, EXISTS_NO, "{\"other\": 1}", 1, "exists false, body: absent"},
        {BODY, EXISTS_NO, "{}", 0,
         "exists false, body: an empty body does not match"},
        {BODY, EXISTS_NO, "{\"a\": {}, \"b\": []}", 0,
         "exists false, body: nor one of empty objects and arrays"},
        {BODY, EXISTS_NO, "{\"other\": null}", 1,
         "exists false, body: a null is a value"},
        {BODY, EXISTS_NO, "{\"store\": null}", 0,
         "exists false, body: a key with null is not absent"},
        {BODY, EXISTS_NO, "{\"store\": \"\"}", 0,
         "exists false, body: nor one with an empty string"},
        {BODY, EXISTS_NO, "{\"store\": {\"x\": 1}}", 1,
         "exists false, body: an object is not a leaf, so absent"},
        {BODY, "{\"$or\": [{\"a\": [{\"exists\": false}]}, {\"b\": [1]}]}",
         "{}", 0, "$or with exists false, body: not an empty body"},
        /* AWS: "exists": true needs "a non-null and non-empty value". */
        {BODY, EXISTS_YES, "{\"store\": \"fans\"}", 1,
         "exists true, body: a value"},
        {BODY, EXISTS_YES, "{\"store\": null}", 0,
         "exists true, body: null is not"},
        {BODY, EXISTS_YES, "{\"store\": \"\"}", 0,
         "exists true, body: an empty string is not"},
        {BODY, EXISTS_YES, "{\"store\": 0}", 1,
         "exists true, body: 0 is a value"},
        {BODY, EXISTS_YES, "{\"store\": false}", 1,
         "exists true, body: false is a value"},
        {BODY, EXISTS_YES, "{\"store\": []}", 0,
         "exists true, body: an empty array is not"},
        {BODY, EXISTS_YES, "{\"store\": [null, \"\"]}", 0,
         "exists true, body: nor an array of null and \"\""},
        {BODY, EXISTS_YES, "{\"store\": [null, \"x\"]}", 1,
         "exists true, body: an array with one value is"},
        {BODY, "{\"store\": [{\"exists\": true}, null]}", "{\"store\": null}",
         1, "exists true beside null: null still matches null"},
        {BODY, "{\"a\": {\"b\": [{\"exists\": true}]}}",
         "{\"a\": {\"b\": \"\"}}", 0,
         "exists true, nested key: an empty string is not a value"},
        {BODY, "{\"a\": {\"b\": [{\"exists\": true}]}}",
         "{\"a\": {\"b\": \"x\"}}", 1, "exists true, nested key: a value"},
        {BODY, "{\"a\": {\"b\": [{\"exists\": false}]}}",
         "{\"a\": {\"c\": 1}}", 1, "exists false, nested key: absent"},
        {BODY, "{\"a\": {\"b\": [{\"exists\": false}]}}", "{\"a\": {}}", 0,
         "exists false, nested key: not in a body without a value"},
        {BODY, "{\"r\": {\"k\": [{\"exists\": false}]}}",
         "{\"r\": [{\"k\": 1}, {\"j\": 2}]}", 1,
         "exists false in an array of objects: an element without it"},
        {BODY, EXISTS_YES, "{\"store\": {\"x\": 1}}", 0,
         "exists true, body: an object is not a leaf"},
        {BODY, EXISTS_NO, "{\"store\": [], \"other\": 1}", 1,
         "exists false, body: an empty array holds nothing"},
        {BODY, "{\"a\": [null]}", "{\"a\": null}", 1,
         "null, body: matches null"},
        {BODY, "{\"a\": [null]}", "{}", 0,
         "null, body: does not match a missing key"},
        /* and_or */
        {ATTRS, AND_OR_AND,
         "{" S("customer_interests", "\"rugby\"") "," N("price_usd",
                                                        "101") "}",
         1, "AND: both match"},
        {ATTRS, AND_OR_AND,
         "{" S("customer_interests", "\"rugby\"") "," N("price_usd",
                                                        "100") "}",
         0, "AND: one fails"},
        {ATTRS, AND_OR_OR,
         "{" S("source", "\"aws.cloudwatch\"") "," S("namespace",
                                                     "\"AWS/ES\"") "}",
         1, "$or: the second alternative"},
        {ATTRS, AND_OR_OR,
         "{" S("source", "\"aws.cloudwatch\"") "," S("metricName",
                                                     "\"ReadLatency\"") "}",
         1, "$or: the first alternative"},
        {ATTRS, AND_OR_OR,
         "{" S("source", "\"aws.cloudwatch\"") "," S("namespace",
                                                     "\"AWS/S3\"") "}",
         0, "$or: neither"},
        {ATTRS, AND_OR_OR, "{" S("namespace", "\"AWS/ES\"") "}", 0,
         "$or: AND with the rest still holds"},
        {ATTRS, AND_OR_NESTED_OR,
         "{" S("source", "\"aws.cloudwatch\"") "," S("namespace",
                                                     "\"AWS/EC2\"") "}",
         1, "nested $or: the inner alternative"},
        {BODY, "{\"a\": {\"$or\": [{\"b\": [1]}, {\"c\": [2]}]}}",
         "{\"a\": {\"c\": 2}}", 1, "$or under a nested key, body"},
        {ATTRS, "{\"$or\": [\"x\"]}", "{" S("$or", "\"x\"") "}", 1,
         "$or not followed by 2+ objects is an ordinary key, as SNS"},
        /* body */
        {BODY, BODY_P, "{\"object\": {\"key\": \"auto-test\"}}", 1,
         "nested: auto-test matches (AWS's example)"},
        {BODY, BODY_P, "{\"object\": {\"key\": \"hardcodedvalue\"}}", 1,
         "nested: hardcodedvalue matches"},
        {BODY, BODY_P, "{\"object\": {\"key\": \"test-auto\"}}", 0,
         "nested: test-auto does not"},
        {BODY, BODY_P,
         "{\"object\": {\"key\": \"auto-test\"}, "
         "\"test\": \"x\"}",
         0, "nested: test must be absent"},
        {BODY, BODY_P,
         "{\"object\": {\"key\": \"auto-test\", "
         "\"nested_key\": \"x\"}}",
         0, "nested: nested_key must be absent"},
        {BODY, BODY_P, "{\"test\": \"auto-test\"}", 0,
         "nested: object missing"},
        {BODY, BODY_P, "\"a string\"", 0, "a body that is not an object"},
        {BODY, BODY_REC,
         "{\"Records\": [{\"eventName\": "
         "\"ObjectRemoved:Delete\", \"s3\": {\"object\": "
         "{\"key\": \"auto-1\"}}}, {\"eventName\": "
         "\"ObjectCreated:Put\", \"s3\": {\"object\": "
         "{\"key\": \"home-1\"}}}]}",
         0, "array of objects: both keys must match in one element"},
        {BODY, BODY_REC,
         "{\"Records\": [{\"eventName\": "
         "\"ObjectRemoved:Delete\"}, {\"eventName\": "
         "\"ObjectCreated:Put\", \"s3\": {\"object\": "
         "[[{\"key\": \"auto-1\"}]]}}]}",
         1, "array of objects, nested arrays: one element matches"},
        {BODY, "{\"object\": {\"nested\": [\"v\"]}}",
         "{\"object.nested\": \"v\"}", 1,
         "a dotted body key stands for nesting, as SNS"},
        {BODY, "{\"headers\": {\"route-to\": [\"queue1\"]}}",
         "{\"headers\": {\"route-to\": [\"queue2\", \"queue1\"]}}", 1,
         "body array of strings"},
};

static void
test_cases(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = cases[i].scope == ATTRS
		                  ? attrs(cases[i].policy, cases[i].message)
		                  : body(cases[i].policy, cases[i].message);
		is_int(got, cases[i].want, "%s", cases[i].what);
	}
}

static void
test_body(void)
{
	struct mesh_filter *f = compile("{\"a\": [\"b\"]}", BODY);
	struct mesh_event *ev = NULL;

	mesh_event_new("t.v1.T", "/t", &ev);
	mesh_event_set_text(ev, "{\"a\": \"b\"}", 10);
	ok(f && ev && mesh_filter_match_event(f, ev),
	   "match_event, body scope: a text payload holding JSON");
	mesh_event_set_binary(ev, "{\"a\": \"b\"}", 10);
	ok(f && ev && !mesh_filter_match_event(f, ev),
	   "match_event, body scope: a binary payload is not a text body");
	mesh_event_set_text(ev, "not json", 8);
	ok(f && ev && !mesh_filter_match_event(f, ev),
	   "match_event, body scope: text that is not JSON does not match");
	mesh_event_free(ev);
	mesh_filter_free(f);
}

/* String.Array elements are matched escape by escape, however long. */
static void
test_long_escaped(void)
{
	enum { N = 3000 };
	char *policy = malloc(4 * N), *attr = malloc(4 * N);
	char *mid = malloc(N + 1);
	/* Each policy value: what comes before and after the x's. */
	static const char *const ops[][3] = {
	        {"\"\\\"", "\\u00e9\"", "exact"},
	        {"{\"prefix\": \"\\\"", "\"}", "prefix"},
	        {"{\"suffix\": \"", "\\u00e9\"}", "suffix"},
	        {"{\"equals-ignore-case\": \"\\\"", "\\u00c9\"}",
	         "equals-ignore-case"},
	        {"{\"anything-but\": [\"\\\"", "\\u00e9\"]}", "anything-but"},
	};

	memset(mid, 'x', N);
	mid[N] = '\0';
	/* The element is "\"xxx...xxx\u00e9", escapes at both ends. */
	snprintf(attr, 4 * N,
	         "{\"c\": {\"DataType\": \"String.Array\", \"StringValue\": "
	         "\"[\\\"\\\\\\\"%s\\\\u00e9\\\"]\"}}",
	         mid);
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		snprintf(policy, 4 * N, "{\"c\": [%s%s%s]}", ops[i][0], mid,
		         ops[i][1]);
		is_int(attrs(policy, attr), i < 4,
		       "a 3002-byte String.Array element with escapes: %s",
		       ops[i][2]);
	}
	free(policy);
	free(attr);
	free(mid);
}

static void
test_event_attrs(void)
{
	struct mesh_filter *f = compile(
	        "{\"store\": [\"example_corp\"], \"event\": "
	        "[{\"anything-but\": "
	        "\"order_cancelled\"}], \"customer_interests\": [\"rugby\", "
	        "\"football\", \"baseball\"], \"price_usd\": [{\"numeric\": "
	        "[\">=\", 100]}]}",
	        ATTRS);
	struct mesh_event *ev = NULL;
	static const char tags[] = "[\"soccer\", \"rugby\", \"hockey\"]";

	mesh_event_new("t.v1.T", "/t", &ev);
	mesh_event_attr_set(ev, "customer_interests", "String.Array", tags,
	                    strlen(tags));
	mesh_event_attr_set(ev, "store", "String", "example_corp", 12);
	mesh_event_attr_set(ev, "event", "String", "order_placed", 12);
	mesh_event_attr_set(ev, "price_usd", "Number", "210.75", 6);
	ok(f && ev && mesh_filter_match_event(f, ev),
	   "AWS's example message passes AWS's example policy");
	mesh_event_attr_set(ev, "event", "String", "order_cancelled", 15);
	ok(f && ev && !mesh_filter_match_event(f, ev),
	   "and not once cancelled");
	mesh_event_attr_set(ev, "event", "String", "order_placed", 12);
	mesh_event_attr_set(ev, "price_usd", "Number.usd", "99.99", 5);
	ok(f && ev && !mesh_filter_match_event(f, ev),
	   "a custom Number type (Number.usd) compares as a number");
	mesh_filter_free(f);

	f = compile("{\"store\": [\"example_corp\"], \"event\": "
	            "[\"order_cancelled\"], \"encrypted\": [false], "
	            "\"customer_interests\": [\"basketball\", \"baseball\"]}",
	            ATTRS);
	ok(f && ev && !mesh_filter_match_event(f, ev),
	   "AWS's example of a policy that rejects the example message");
	mesh_filter_free(f);

	f = compile("{\"blob\": [{\"exists\": false}]}", ATTRS);
	mesh_event_attr_set(ev, "blob", "Binary", "\x01\x02", 2);
	ok(f && mesh_filter_match_event(f, ev),
	   "a Binary event attribute is ignored: exists false holds");
	mesh_filter_free(f);
	mesh_event_free(ev);
}

/* An event's message attributes are its extensions but the CloudEvents
 * and reserved ones: those alone are an empty set to "exists": false. */
static void
test_event_exists_false(void)
{
	struct mesh_filter *f = compile(EXISTS_NO, ATTRS);
	struct mesh_event *ev = NULL;
	long before;
	bool m;

	mesh_event_new("t.v1.T", "/t", &ev);
	mesh_event_set_subject(ev, "o-1");
	ok(f && ev && !mesh_filter_match_event(f, ev),
	   "exists false, an event with a subject but no message attribute: "
	   "no match");
	mesh_event_attr_set(ev, "other", "String", "x", 1);
	before = allocs;
	m = f && ev && mesh_filter_match_event(f, ev);
	ok(m, "with one message attribute (not store): a match");
	is_int(allocs - before, 0, "... made without allocating");
	mesh_event_attr_set(ev, "store", "String", "fans", 4);
	ok(f && ev && !mesh_filter_match_event(f, ev), "with store: no match");
	mesh_filter_free(f);
	mesh_event_free(ev);
}

static void
check_bad(const char *policy, mesh_filter_scope scope, const char *want,
          const char *what)
{
	has_str(bad(policy, scope), want, "%s", what);
}

#define FP "Invalid parameter: FilterPolicy: "

/* Invalid policies and SNS's text for each. */
static const struct {
	const char *policy;
	mesh_filter_scope scope;
	const char *want, *what;
} invalid[] = {
        {"{\"key\":[[\"value\"]]}", ATTRS,
         FP "Match value must be String, number, true, false, or "
            "null",
         "nested list"},
        {"{\"key\":[{\"wrong-operator\":true}]}", ATTRS,
         FP "Unrecognized match type wrong-operator", "unknown operator"},
        {"{\"key\":[{\"suffix\":\"value\",\"prefix\":\"value2\"}]}", ATTRS,
         FP "Only one key allowed in match expression",
         "two operators in one object"},
        {"{\"key\":[{\"suffix\":100}]}", ATTRS,
         FP "suffix match pattern must be a string", "suffix 100"},
        {"{\"key\":[{\"prefix\":null}]}", ATTRS,
         FP "prefix match pattern must be a string", "prefix null"},
        {"{\"key\":[{\"equals-ignore-case\":[\"a\"]}]}", ATTRS,
         FP "equals-ignore-case match pattern must be a string",
         "equals-ignore-case list"},
        {"{\"key\":{\"suffix\":\"value\"}}", BODY,
         FP "\"suffix\" must be an object or an array",
         "an operator outside a list"},
        {"{\"key\":{\"suffix\":\"value\",\"prefix\":\"value\"}}", ATTRS,
         FP "\"suffix\" must be an object or an array",
         "MessageAttributes scope: the policy is checked before nesting "
         "is refused (as SNS)"},
        {"{\"key_a\":\"value_one\"}", BODY,
         FP "\"key_a\" must be an object or an array", "a bare value"},
        {"{\"key\":[{\"numeric\":[]}]}", ATTRS,
         FP "Invalid member in numeric match: ]", "numeric []"},
        {"{\"key\":[{\"numeric\":[\"operator\"]}]}", ATTRS,
         FP "Unrecognized numeric range operator: operator",
         "numeric operator"},
        {"{\"key\":[{\"numeric\":[1,\"<=\"]}]}", ATTRS,
         FP "Invalid member in numeric match: 1", "numeric order"},
        {"{\"key\":[{\"numeric\":[\"=\",\"000\"]}]}", ATTRS,
         FP "Value of equals must be numeric", "numeric = string"},
        {"{\"key\":[{\"numeric\":[\">=\"]}]}", ATTRS,
         FP "Value of >= must be numeric", "numeric >= missing"},
        {"{\"key\":[{\"numeric\":[\"<\",100,\">\",10]}]}", ATTRS,
         FP "Too many elements in numeric expression",
         "range starting with <"},
        {"{\"key\":[{\"numeric\":[\">=\",1,\">\",2]}]}", ATTRS,
         FP "Bad numeric range operator: >", "range >= then >"},
        {"{\"key\":[{\"numeric\":[\">\",3,\"<\",1]}]}", ATTRS,
         FP "Bottom must be less than top", "range upside down"},
        {"{\"key\":[{\"numeric\":[\">\",20,\"<=\"]}]}", ATTRS,
         FP "Value of <= must be numeric", "range top missing"},
        {"{\"key\":[{\"numeric\":[\">\",20,30]}]}", ATTRS,
         FP "Bad value in numeric range: 30", "range operator missing"},
        {"{\"key\":[{\"numeric\":[\">\",20,\"test\"]}]}", ATTRS,
         FP "Bad numeric range operator: test", "range operator bad"},
        {"{\"key\":[{\"numeric\":[\">\",\"20\",\"<\",\"30\"]}]}", ATTRS,
         FP "Value of > must be numeric", "range bottom text"},
        {"{\"key\":[{\"numeric\":[\">\",20,\"<\",\"30\"]}]}", ATTRS,
         FP "Value of < must be numeric", "range top text"},
        {"{\"key\":[{\"numeric\":[\">\",20,\"<\",30,\"<\",50]}]}", ATTRS,
         FP "Too many terms in numeric range expression", "range too long"},
        {"{\"key\":[{\"numeric\":[\">\",1e10]}]}", ATTRS,
         FP "Value must be between -1.0E9 and 1.0E9, inclusive",
         "numeric out of SNS's range"},
        {"{\"key\":[{\"numeric\":\">\"}]}", ATTRS,
         FP "Value of numeric must be an array.", "numeric scalar"},
        {"{\"key\":[{\"exists\":null}]}", ATTRS,
         FP "exists match pattern must be either true or false.",
         "exists null"},
        {"{\"key\":[{\"exists\":\"no\"}]}", ATTRS,
         FP "exists match pattern must be either true or false.",
         "exists string"},
        {"{\"key\":[{\"anything-but\":{\"wrong-operator\":null}}]}", ATTRS,
         FP "Unsupported anything-but pattern: wrong-operator",
         "anything-but unknown"},
        {"{\"key\":[{\"anything-but\":{\"exists\":false}}]}", ATTRS,
         FP "Unsupported anything-but pattern: exists", "anything-but exists"},
        {"{\"key\":[{\"anything-but\":{\"prefix\":false}}]}", ATTRS,
         FP "prefix match pattern must be a string",
         "anything-but prefix false"},
        {"{\"key\":[{\"anything-but\":{\"prefix\":\"\"}}]}", ATTRS,
         FP "Null prefix/suffix not allowed", "anything-but prefix \"\""},
        {"{\"key\":[{\"anything-but\":[\"a\",1]}]}", ATTRS,
         FP "Inside anything but list, either all values are number "
            "or string, mixed type is not supported",
         "anything-but mixed list"},
        {"{\"key\":[{\"anything-but\":[null]}]}", ATTRS,
         FP "Inside anything but list, start|null|boolean is not "
            "supported.",
         "anything-but [null]"},
        {"{\"key\":[{\"anything-but\":true}]}", ATTRS,
         FP "Value of anything-but must be an array or single "
            "string/number value.",
         "anything-but true"},
        {"{\"key\":[{\"cidr\":10}]}", ATTRS,
         FP "prefix match pattern must be a string",
         "cidr not a string (SNS's own text)"},
        {"{\"key\":[{\"cidr\":\"10.0.0.0\"}]}", ATTRS,
         FP "Malformed CIDR, one '/' required", "cidr no slash"},
        {"{\"key\":[{\"cidr\":\"10.0.0.0/x\"}]}", ATTRS,
         FP "Malformed CIDR, mask bits must be an integer", "cidr bad mask"},
        {"{\"key\":[{\"cidr\":\"10.0.0.0/33\"}]}", ATTRS,
         FP "IPv4 mask bits must be < 32", "cidr /33"},
        {"{\"key\":[{\"cidr\":\"10.0.0/8\"}]}", ATTRS,
         FP "Nonstandard IP address: 10.0.0", "cidr bad address"},
        {"{\"key\":[]}", ATTRS, FP "Empty arrays are not allowed",
         "empty array"},
        {"{\"key\":[{}]}", ATTRS, FP "Match expression name not found",
         "empty match expression"},
        {"{\"a\":{}}", BODY, FP "Empty objects are not allowed",
         "empty nested object"},
        {"{\"object\":{\"key\":[{\"prefix\":\"auto-\"}]}}", ATTRS,
         "Invalid parameter: Filter policy scope MessageAttributes "
         "does not support nested filter policy",
         "nested policy in MessageAttributes scope"},
        {"[1]", ATTRS, FP "Filter is not an object", "not an object"},
        {"{\"a\": [", ATTRS, FP "not valid JSON", "not JSON"},
};

static void
test_validation(void)
{
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		has_str(bad(invalid[i].policy, invalid[i].scope),
		        invalid[i].want, "%s", invalid[i].what);
	}
	has_str(bad("{\"key\":[{\"wrong-operator\":true}]}", ATTRS),
	        "(key 'key', operator 'wrong-operator')",
	        "the detail names the key and the operator");
	ok(bad("{}", ATTRS)[0] == '\0', "an empty policy compiles");
}

static void
test_or_misuse(void)
{
	has_str(bad("{\"$or\":[{\"a\":[\"x\"]}]}", ATTRS),
	        FP "Unrecognized match type a (key '$or', operator 'a')",
	        "$or with one object: an ordinary key, whose object is a "
	        "match "
	        "expression");
	has_str(bad("{\"$or\":\"x\"}", ATTRS),
	        FP "\"$or\" must be an object or an array",
	        "$or with a string");
	has_str(bad("{\"$or\":[{}, {\"a\":[1]}]}", ATTRS),
	        FP "Empty objects are not allowed",
	        "$or with an empty object");
	is_int(attrs("{\"$or\":[{\"prefix\":\"a\"},{\"suffix\":\"z\"}]}",
	             "{" S("$or", "\"abc\"") "}"),
	       1,
	       "$or whose objects use operator names: an ordinary key with "
	       "operators, as SNS");
	has_str(bad("{\"a\":{\"$or\":[{\"b\":[1]},{\"c\":[2]}]}}", ATTRS),
	        "does not support nested filter policy",
	        "$or under a nested key is still nesting in "
	        "MessageAttributes");
}

static void
test_sns_attrs_errors(void)
{
	struct mesh_filter *f = compile("{\"a\": [\"x\"]}", ATTRS);
	json_t *j = json_loads("[1]", 0, NULL);
	bool m = false;

	is_int(mesh_filter_match_sns_attrs(f, j, &m), MESH_EINVAL,
	       "SNS attributes that are not an object: MESH_EINVAL");
	json_decref(j);
	j = json_loads("{\"b\": {\"StringValue\": \"x\"}}", 0, NULL);
	is_int(mesh_filter_match_sns_attrs(f, j, &m), MESH_EINVAL,
	       "an attribute without a DataType: MESH_EINVAL");
	has_str(mesh_errdetail(), "'b'", "naming the attribute");
	json_decref(j);
	j = json_loads("{\"a\": {\"DataType\": \"String\"}}", 0, NULL);
	is_int(mesh_filter_match_sns_attrs(f, j, &m), MESH_EINVAL,
	       "a String attribute without a StringValue: MESH_EINVAL");
	json_decref(j);
	j = json_loads("{\"a\": {\"Type\": \"String\", \"Value\": \"x\"}}", 0,
	               NULL);
	ok(mesh_filter_match_sns_attrs(f, j, &m) == MESH_OK && m,
	   "the delivered form (Type, Value) is read too");
	json_decref(j);
	mesh_filter_free(f);
}

static void
test_limits(void)
{
	const char *six = "{\"a\":[1],\"b\":[1],\"c\":[1],\"d\":[1],\"e\":[1],"
	                  "\"f\":[1]}";
	const char *five =
	        "{\"a\":[1],\"b\":[1],\"c\":[1],\"d\":[1],\"e\":[1]}";
	char big[400];
	struct mesh_filter *f = NULL;
	char *huge;
	size_t n = 256 * 1024 + 1;

	check_bad(six, ATTRS, FP "Filter policy can not have more than 5 keys",
	          "6 keys");
	ok(bad(five, ATTRS)[0] == '\0', "5 keys are fine");
	check_bad("{\"a\":[1],\"b\":[1],\"c\":[1],\"$or\":[{\"d\":[1],"
	          "\"e\":[1],\"f\":[1]},{\"g\":[1]}]}",
	          ATTRS, FP "Filter policy can not have more than 5 keys",
	          "6 keys in one $or branch");
	ok(bad("{\"a\":[1],\"b\":[1],\"c\":[1],\"$or\":[{\"d\":[1],"
	       "\"e\":[1]},{\"f\":[1],\"g\":[1]}]}",
	       ATTRS)[0] == '\0',
	   "5 keys in each $or branch are fine");
	/* 10 x 15 = 150 is the most; 10 x 16 is too many. */
	strcpy(big, "{\"a\":[1,2,3,4,5,6,7,8,9,10],\"b\":[1,2,3,4,5,6,7,8,9,"
	            "10,11,12,13,14,15]}");
	ok(bad(big, ATTRS)[0] == '\0', "150 combinations are fine");
	strcpy(big, "{\"a\":[1,2,3,4,5,6,7,8,9,10],\"b\":[1,2,3,4,5,6,7,8,9,"
	            "10,11,12,13,14,15,16]}");
	check_bad(big, ATTRS, FP "Filter policy is too complex",
	          "160 combinations");
	check_bad(
	        "{\"key_a\":{\"key_b\":{\"key_c\":[\"1\",\"2\",\"3\",\"4\"]}},"
	        "\"key_d\":{\"key_e\":[\"1\",\"2\",\"3\"]},\"key_f\":[\"1\","
	        "\"2\",\"3\"]}",
	        BODY, FP "Filter policy is too complex",
	        "nested: 3x4 x 2x3 x 1x3 = 216 (AWS's rule)");
	ok(bad("{\"key_a\":{\"key_b\":{\"key_c\":[\"1\",\"2\",\"3\",\"4\"]}},"
	       "\"key_d\":{\"key_e\":[\"1\",\"2\",\"3\"]}}",
	       BODY)[0] == '\0',
	   "nested: 3x4 x 2x3 = 72 is fine");
	check_bad(
	        "{\"a\":[1,2,3,4,5,6,7,8,9,10],\"$or\":[{\"b\":[1,2,3,4,5,6,7,"
	        "8]},{\"c\":[1,2,3,4,5,6,7,8]}]}",
	        ATTRS, FP "Filter policy is too complex",
	        "$or sums its branches: 10x8 + 10x8 = 160");
	ok(bad("{\"a\":[1,2,3,4,5,6,7,8,9,10],\"$or\":[{\"b\":[1,2,3,4,5,6,7]}"
	       ","
	       "{\"c\":[1,2,3,4,5,6,7,8]}]}",
	       ATTRS)[0] == '\0',
	   "$or: 10x7 + 10x8 = 150 is fine");

	huge = malloc(n + 1);
	memset(huge, ' ', n);
	huge[0] = '{';
	huge[n - 1] = '}';
	huge[n] = '\0';
	is_int(mesh_filter_compile(huge, n, ATTRS, &f), MESH_ETOOBIG,
	       "a policy over 256 KB: MESH_ETOOBIG");
	ok(f == NULL, "and *out untouched");
	is_int(mesh_filter_compile(huge, n - 1, ATTRS, &f), MESH_EINVAL,
	       "256 KB exactly is read (and this one is not JSON)");
	free(huge);
}

static void
test_scope_names(void)
{
	mesh_filter_scope s = BODY;
	struct mesh_filter *f = compile("{\"a\":[1]}", BODY);

	ok(mesh_filter_scope_parse("MessageAttributes", &s) == MESH_OK &&
	           s == ATTRS,
	   "scope MessageAttributes");
	ok(mesh_filter_scope_parse("MessageBody", &s) == MESH_OK && s == BODY,
	   "scope MessageBody");
	ok(mesh_filter_scope_parse("RandomValue", &s) == MESH_EINVAL,
	   "scope RandomValue is refused");
	has_str(mesh_errdetail(), "Invalid value [RandomValue]",
	        "naming the value, in SNS's words");
	is_str(mesh_filter_scope_name(BODY), "MessageBody", "scope name");
	ok(f && mesh_filter_scope_of(f) == BODY, "scope_of");
	mesh_filter_free(f);
	mesh_filter_free(NULL);
}

/* Out of memory at each allocation of a compile in turn: MESH_ENOMEM
 * and nothing leaked (ASan), or a filter that still decides right. */
static void
test_oom(void)
{
	static const char policy[] =
	        "{\"a\": {\"b\": [\"x\", {\"anything-but\": [\"p\", \"q\"]}]},"
	        " \"n\": [{\"anything-but\": [1, 2]}], \"$or\": [{\"c\": "
	        "[{\"prefix\": \"y\"}]}, {\"d\": {\"e\": [{\"exists\": "
	        "false}]}}]}";
	json_t *b = json_loads(
	        "{\"a\": {\"b\": \"x\"}, \"n\": 3, \"c\": \"yes\"}", 0, NULL);
	int nomem = 0, good = 0, bad_other = 0;

	for (long k = 0; k < 400; k++) {
		struct mesh_filter *f = NULL;
		mesh_err err;
		fail_after = k;
		err = mesh_filter_compile(policy, strlen(policy), BODY, &f);
		fail_after = -1;
		if (err == MESH_ENOMEM && f == NULL) {
			nomem++;
		} else if (err == MESH_OK && mesh_filter_match_json(f, b)) {
			good++;
		} else {
			bad_other++;
		}
		mesh_filter_free(f);
	}
	tap_diag("oom: %d compiles out of memory, %d good", nomem, good);
	ok(nomem > 10 && good > 0 && bad_other == 0,
	   "out of memory at every allocation of a compile in turn: "
	   "MESH_ENOMEM, or a filter that decides right");
	json_decref(b);
}

static void
test_no_alloc(void)
{
	struct mesh_filter *fa = compile("{\"store\": [\"example_corp\"], "
	                                 "\"event\": [{\"anything-but\": "
	                                 "{\"prefix\": \"order-c\"}}], "
	                                 "\"tags\": [{\"suffix\": \"by\"}],"
	                                 " \"price\": [{\"numeric\": [\">\", "
	                                 "0, \"<=\", 300]}], \"ip\": "
	                                 "[{\"cidr\": \"10.0.0.0/8\"}]}",
	                                 ATTRS);
	struct mesh_filter *fb = compile(
	        "{\"a\": {\"b\": [{\"prefix\": \"x\"}], \"c\": [{\"exists\": "
	        "false}]}, \"$or\": [{\"d\": [1]}, {\"e\": [\"q\"]}]}",
	        BODY);
	struct mesh_event *ev = NULL;
	static const char tags[] = "[\"soc\\\"cer\", \"rugby\", 7]";
	json_t *b = json_loads("{\"a\": [{\"b\": \"y\"}, {\"b\": \"xy\"}], "
	                       "\"e\": \"q\"}",
	                       0, NULL);
	json_t *sa =
	        json_loads("{" S("store", "\"example_corp\"") "}", 0, NULL);
	bool m1 = false, m2 = false, m3 = true;
	long before;

	mesh_event_new("t.v1.T", "/t", &ev);
	mesh_event_attr_set(ev, "tags", "String.Array", tags, strlen(tags));
	mesh_event_attr_set(ev, "store", "String", "example_corp", 12);
	mesh_event_attr_set(ev, "event", "String", "order_placed", 12);
	mesh_event_attr_set(ev, "price", "Number", "210.75", 6);
	mesh_event_attr_set(ev, "ip", "String", "10.1.2.3", 8);
	before = allocs;
	for (int i = 0; i < 1000; i++) {
		m1 = mesh_filter_match_event(fa, ev);
		m2 = mesh_filter_match_json(fb, b);
		mesh_filter_match_sns_attrs(fa, sa, &m3);
	}
	is_int(allocs - before, 0,
	       "3000 evaluations (attributes, body, SNS JSON) call no "
	       "malloc/calloc/realloc");
	ok(m1 && m2 && !m3, "and they decide right");
	mesh_event_free(ev);
	json_decref(b);
	json_decref(sa);
	mesh_filter_free(fa);
	mesh_filter_free(fb);
}

/* ---- fuzz ------------------------------------------------------------- */

static const char *const keys[] = {"a", "b", "c.d", "$or", "e", "x"};
static const char *const leaves[] = {
        "\"v\"",
        "1",
        "3.0e2",
        "true",
        "null",
        "{\"prefix\":\"v\"}",
        "{\"suffix\":\"\"}",
        "{\"equals-ignore-case\":\"V\"}",
        "{\"anything-but\":[\"v\",\"w\"]}",
        "{\"anything-but\":[1,2]}",
        "{\"anything-but\":{\"prefix\":\"q\"}}",
        "{\"anything-but\":{\"suffix\":\"q\"}}",
        "{\"numeric\":[\">\",0,\"<=\",5]}",
        "{\"numeric\":[\"=\",1e9]}",
        "{\"exists\":true}",
        "{\"exists\":false}",
        "{\"cidr\":\"10.0.0.0/8\"}",
        "{\"cidr\":\"::/1\"}",
        "{\"numeric\":[\">\"]}",
        "[]",
        "{}",
};

/* A random policy object of some depth into buf. */
static void
gen(char *buf, size_t size, int depth)
{
	size_t n = 1 + test_rand() % 3;

	strncat(buf, "{", size - strlen(buf) - 1);
	for (size_t i = 0; i < n; i++) {
		const char *k = keys[test_rand() % 6];
		if (i > 0) {
			strncat(buf, ",", size - strlen(buf) - 1);
		}
		strncat(buf, "\"", size - strlen(buf) - 1);
		strncat(buf, k, size - strlen(buf) - 1);
		strncat(buf, "\":", size - strlen(buf) - 1);
		if (strcmp(k, "$or") == 0 && depth < 3) {
			strncat(buf, "[", size - strlen(buf) - 1);
			gen(buf, size, depth + 1);
			strncat(buf, ",", size - strlen(buf) - 1);
			gen(buf, size, depth + 1);
			strncat(buf, "]", size - strlen(buf) - 1);
		} else if (test_rand() % 4 == 0 && depth < 3) {
			gen(buf, size, depth + 1);
		} else {
			size_t m = 1 + test_rand() % 3;
			strncat(buf, "[", size - strlen(buf) - 1);
			for (size_t j = 0; j < m; j++) {
				strncat(buf, j ? "," : "",
				        size - strlen(buf) - 1);
				strncat(buf,
				        leaves[test_rand() %
				               (sizeof(leaves) /
				                sizeof(leaves[0]))],
				        size - strlen(buf) - 1);
			}
			strncat(buf, "]", size - strlen(buf) - 1);
		}
	}
	strncat(buf, "}", size - strlen(buf) - 1);
}

static void
test_fuzz(void)
{
	static const char *const bodies[] = {
	        "{\"a\":\"v\",\"b\":1,\"c\":{\"d\":[300,\"v\",null]},\"e\":"
	        "true}",
	        "{\"a\":[{\"b\":\"q\"},{\"c.d\":\"10.1.1.1\"}],\"x\":[[[]]]}",
	        "{\"$or\":\"v\",\"a\":{\"a\":{\"a\":\"V\"}},\"b\":-0.5}",
	        "{}",
	};
	static const char junk[] = "{}[]\",:0-e.\\ntfu$";
	struct mesh_event *ev = NULL;
	json_t *js[4], *sa;
	long compiled = 0, matched = 0;
	char buf[2048];

	for (size_t i = 0; i < 4; i++) {
		js[i] = json_loads(bodies[i], 0, NULL);
	}
	sa = json_loads("{" S("a", "\"v\"") "," N("b", "1") "," A(
	                        "e", "\"[\\\"v\\\",1,true,[2],{\\\"q\\\":[]}]"
	                             "\"") ","
	                                   "\"x\":{\"DataType\":\"Binary\","
	                                   "\"BinaryValue\":\"\"}}",
	                0, NULL);
	mesh_event_new("t.v1.T", "/t", &ev);
	mesh_event_attr_set(ev, "a", "String", "v", 1);
	mesh_event_attr_set(ev, "b", "Number", "1", 1);
	mesh_event_attr_set(ev, "e", "String.Array", "[\"v\", \"\\u0041\"]",
	                    14);
	mesh_event_set_text(ev, bodies[0], strlen(bodies[0]));
	for (int i = 0; i < 20000; i++) {
		struct mesh_filter *f = NULL;
		size_t len;
		buf[0] = '\0';
		gen(buf, sizeof(buf), 0);
		len = strlen(buf);
		/* Half of them mutated: bytes flipped, cut or inserted. */
		for (unsigned m = (i & 1) ? 1 + test_rand() % 4 : 0;
		     m > 0 && len > 0; m--) {
			size_t at = test_rand() % len;
			switch (test_rand() % 3) {
			case 0:
				buf[at] =
				        junk[test_rand() % (sizeof(junk) - 1)];
				break;
			case 1:
				len = at;
				break;
			default:
				if (len + 1 < sizeof(buf)) {
					memmove(buf + at + 1, buf + at,
					        len - at);
					buf[at] = junk[test_rand() %
					               (sizeof(junk) - 1)];
					len++;
				}
				break;
			}
		}
		if (mesh_filter_compile(buf, len, (i & 2) ? BODY : ATTRS,
		                        &f) != MESH_OK) {
			continue;
		}
		compiled++;
		for (size_t k = 0; k < 4; k++) {
			matched += mesh_filter_match_json(f, js[k]);
		}
		bool m = false;
		mesh_filter_match_sns_attrs(f, sa, &m);
		matched += m;
		matched += mesh_filter_match_event(f, ev);
		mesh_filter_free(f);
	}
	tap_diag("fuzz: %ld of 20000 policies compiled, %ld matches", compiled,
	         matched);
	ok(compiled > 1000 && matched > 100,
	   "20,000 random and mutated policies: no crash, and they do "
	   "compile and match");
	for (size_t i = 0; i < 4; i++) {
		json_decref(js[i]);
	}
	json_decref(sa);
	mesh_event_free(ev);
}

int
main(void)
{
	test_cases();
	test_body();
	test_long_escaped();
	test_event_attrs();
	test_event_exists_false();
	test_validation();
	test_or_misuse();
	test_sns_attrs_errors();
	test_limits();
	test_scope_names();
	test_oom();
	test_no_alloc();
	test_fuzz();
	return tap_done();
}
