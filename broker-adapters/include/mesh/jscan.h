/* A JSON scanner that reads in place and allocates nothing: for the hot
 * paths that read JSON we wrote or that a filter policy matches against
 * (a String.Array attribute's elements, a scheduler replica's million
 * records at start). It walks one object's members or one array's
 * elements; a nested object or array is one value (its text), which a
 * caller may scan in turn. What it reads, jansson would read alike; what
 * it does not vouch for (invalid UTF-8 inside strings, say) a caller that
 * needs a verdict hands to jansson.
 *
 *   struct mesh_jscan j;
 *   struct mesh_jtok k, v;
 *   mesh_jscan_init(&j, text, len);
 *   if (mesh_jscan_enter(&j, '{'))
 *           while (mesh_jscan_next(&j, &k, &v)) ...;
 *   ok = mesh_jscan_done(&j);   (no error, nothing after the value)
 *
 * Thread safety: a scanner is a plain value. */
#ifndef MESH_JSCAN_H
#define MESH_JSCAN_H

#include <stdbool.h>
#include <stddef.h>

enum mesh_jkind {
	MESH_JSTRING, /* s, len: between the quotes, escapes as written */
	MESH_JNUMBER, /* s, len: JSON's number grammar, checked */
	MESH_JTRUE,
	MESH_JFALSE,
	MESH_JNULL,
	MESH_JOBJECT, /* s, len: the whole text, braces included */
	MESH_JARRAY,  /* s, len: the whole text, brackets included */
};

struct mesh_jtok {
	enum mesh_jkind kind;
	const char *s;
	size_t len;
	bool escaped; /* MESH_JSTRING: it holds backslash escapes */
};

struct mesh_jscan {
	const char *p, *end;
	char close; /* '}' or ']' of the container being walked; 0: none */
	bool first;
	bool bad; /* malformed, or nested deeper than 256 */
};

void mesh_jscan_init(struct mesh_jscan *j, const char *text, size_t len);

/* Enter the object ('{') or array ('[') at the cursor; false (and bad)
 * when something else is there. */
bool mesh_jscan_enter(struct mesh_jscan *j, char open);

/* The next member (key: its name, a MESH_JSTRING; may be NULL for arrays)
 * and value; false at the container's end (consumed) or when malformed
 * (bad set). */
bool mesh_jscan_next(struct mesh_jscan *j, struct mesh_jtok *key,
                     struct mesh_jtok *val);

/* Whether the scan ended well: no error and nothing but white space
 * after the container. */
bool mesh_jscan_done(const struct mesh_jscan *j);

/* A string token's text with its escapes decoded (\uXXXX as UTF-8,
 * surrogate pairs joined) into out (at least t->len bytes; decoding never
 * grows it) and NUL-terminated (so out needs t->len + 1). Returns the
 * length, or (size_t)-1 for a malformed escape or a lone surrogate. */
size_t mesh_jscan_string(const struct mesh_jtok *t, char *out);

#endif
