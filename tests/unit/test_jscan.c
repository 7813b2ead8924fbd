/* The in-place JSON scanner (mesh/jscan.h): members and elements of every
 * kind, nested values as one, escapes decoded, and malformed text refused
 * wherever it goes wrong. */
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "mesh/jscan.h"

/* The kinds of an array's elements ("s n t f z o a"), or "bad". */
static const char *
kinds(const char *text)
{
	static char out[128];
	struct mesh_jscan j;
	struct mesh_jtok t;
	size_t n = 0;

	mesh_jscan_init(&j, text, strlen(text));
	if (!mesh_jscan_enter(&j, '[')) {
		return "bad";
	}
	while (mesh_jscan_next(&j, NULL, &t) && n + 2 < sizeof(out)) {
		out[n++] = "sntfzoa"[t.kind];
		out[n++] = ' ';
	}
	out[n > 0 ? n - 1 : 0] = '\0';
	return mesh_jscan_done(&j) ? out : "bad";
}

static const char *
decoded(const char *json_string)
{
	static char out[128];
	struct mesh_jtok t = {.kind = MESH_JSTRING,
	                      .s = json_string,
	                      .len = strlen(json_string)};

	return mesh_jscan_string(&t, out) == (size_t)-1 ? "(refused)" : out;
}

int
main(void)
{
	struct mesh_jscan j;
	struct mesh_jtok k, v;
	const char *obj =
	        " {\"a\": 1, \"b\" :\"x\\\"y\", \"c\":[1,{\"d\":[]}],"
	        "\"e\":null, \"f\":true}  ";
	char deep[600];
	int n = 0;

	is_str(kinds("[\"s\", -1.5e3, true, false, null, {\"a\":[1]}, [[]]]"),
	       "s n t f z o a", "every kind of element");
	is_str(kinds("[]"), "", "an empty array");
	is_str(kinds(" [ 0 , 1 ] "), "n n", "white space anywhere");
	is_str(kinds("[1,]"), "bad", "a trailing comma");
	is_str(kinds("[1 2]"), "bad", "a missing comma");
	is_str(kinds("[01]"), "bad", "a leading zero");
	is_str(kinds("[1.]"), "bad", "a dot without digits");
	is_str(kinds("[+1]"), "bad", "a plus sign");
	is_str(kinds("[\"a]"), "bad", "an unterminated string");
	is_str(kinds("[\"a\tb\"]"), "bad", "a raw control character");
	is_str(kinds("[tru]"), "bad", "a cut word");
	is_str(kinds("[{\"a\":[}]]"), "bad", "mismatched brackets inside");
	is_str(kinds("[1] x"), "bad", "text after the value");
	is_str(kinds("{}"), "bad", "an object where an array is wanted");
	memset(deep, '[', 300);
	memset(deep + 300, ']', 300);
	deep[0] = '[';
	deep[599] = '\0';
	deep[598] = ']';
	{
		char d[700];
		snprintf(d, sizeof(d), "[%s]", deep);
		is_str(kinds(d), "bad", "nested deeper than 256");
	}

	mesh_jscan_init(&j, obj, strlen(obj));
	ok(mesh_jscan_enter(&j, '{'), "an object");
	while (mesh_jscan_next(&j, &k, &v)) {
		n++;
		if (n == 2) {
			ok(k.len == 1 && k.s[0] == 'b' && v.escaped &&
			           strcmp(decoded("x\\\"y"), "x\"y") == 0,
			   "a member's key and its escaped value");
		}
		if (n == 3) {
			ok(v.kind == MESH_JARRAY && v.len == 12,
			   "a nested value is one token with its text");
		}
	}
	is_int(n, 5, "five members");
	ok(mesh_jscan_done(&j), "... and nothing after");
	mesh_jscan_init(&j, "{\"a\" 1}", 7);
	mesh_jscan_enter(&j, '{');
	ok(!mesh_jscan_next(&j, &k, &v) && j.bad, "a missing colon");
	mesh_jscan_init(&j, "{1:2}", 5);
	mesh_jscan_enter(&j, '{');
	ok(!mesh_jscan_next(&j, &k, &v) && j.bad, "a key that is no string");

	is_str(decoded("a\\nb\\t\\/\\\\"), "a\nb\t/\\", "simple escapes");
	is_str(decoded("\\u00e9\\u20ac"), "\xc3\xa9\xe2\x82\xac",
	       "\\u escapes as UTF-8");
	is_str(decoded("\\ud83d\\ude00"), "\xf0\x9f\x98\x80",
	       "a surrogate pair joined");
	is_str(decoded("\\ud83d"), "(refused)", "a lone high surrogate");
	is_str(decoded("\\ude00"), "(refused)", "a lone low surrogate");
	is_str(decoded("\\u0000"), "(refused)", "\\u0000");
	is_str(decoded("\\x"), "(refused)", "an unknown escape");
	is_str(decoded("\\u12"), "(refused)", "a cut \\u");
	return tap_done();
}
