/* SNS subscription filter policies: compile once, evaluate many times.
 *
 * The language is SNS's: exact strings and numbers (numbers compare as
 * numbers, to five decimal places: 300 matches 3.0e2), true, false, null,
 * "prefix", "suffix", "equals-ignore-case", "anything-but" (a value, a list
 * of strings or of numbers, {"prefix": ...} or {"suffix": ...}), "numeric"
 * (["=", 5], [">", 0, "<=", 150], ...), "exists", "cidr" (IPv4 and IPv6),
 * "$or" (nested too), AND across keys and OR within a key's list; nested
 * keys in the MessageBody scope. See the README for the details and the few
 * places where evmesh's reading of SNS is its own.
 *
 * Thread safety: a compiled filter is immutable; share it across threads
 * freely. Matching never allocates memory.
 */
#ifndef MESH_FILTER_H
#define MESH_FILTER_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "mesh/err.h"

struct mesh_event;

/* SNS's FilterPolicyScope. */
typedef enum {
	MESH_FILTER_SCOPE_ATTRIBUTES = 0, /* "MessageAttributes" (default) */
	MESH_FILTER_SCOPE_BODY,           /* "MessageBody" */
} mesh_filter_scope;

/* SNS's limits. */
#define MESH_FILTER_MAX_SIZE         (256 * 1024) /* bytes of policy */
#define MESH_FILTER_MAX_KEYS         5
#define MESH_FILTER_MAX_COMBINATIONS 150

struct mesh_filter; /* immutable once compiled; safe to share across threads */

/* Parse "MessageAttributes" or "MessageBody" (exactly, as SNS does).
 * Errors: MESH_EINVAL, the detail naming s. *out only on success. */
mesh_err mesh_filter_scope_parse(const char *s, mesh_filter_scope *out);

/* "MessageAttributes" or "MessageBody"; never NULL. */
const char *mesh_filter_scope_name(mesh_filter_scope scope);

/* Compile the policy (JSON text of len bytes, not NUL-terminated) for a
 * scope. The policy is checked as SNS checks it: on error the detail
 * (mesh_errdetail()) is SNS's own text ("Invalid parameter: FilterPolicy:
 * ...") followed by the key and operator at fault.
 * Errors: MESH_EINVAL (invalid policy), MESH_ETOOBIG (over 256 KB),
 * MESH_ENOMEM. On success *out owns a new filter (free it with
 * mesh_filter_free()); it borrows nothing from policy. */
mesh_err mesh_filter_compile(const char *policy, size_t len,
                             mesh_filter_scope scope,
                             struct mesh_filter **out);

/* Free a filter; NULL is allowed. */
void mesh_filter_free(struct mesh_filter *f);

/* The scope a filter was compiled for. */
mesh_filter_scope mesh_filter_scope_of(const struct mesh_filter *f);

/* Does the event pass? MessageAttributes scope: the event's message
 * attributes (mesh_event_attr_get()). MessageBody scope: the event's
 * payload when it is text (MESH_DATA_TEXT) holding a JSON object; anything
 * else does not match. Binary attributes are ignored, as SNS ignores them.
 * As SNS's "exists": false, an event without message attributes (a body
 * without a value) passes only the empty policy {}.
 * MessageBody scope parses the payload (jansson allocates); the
 * MessageAttributes scope allocates nothing. */
bool mesh_filter_match_event(const struct mesh_filter *f,
                             const struct mesh_event *ev);

/* MessageBody scope over an already parsed JSON value (body is borrowed).
 * A body that is not an object does not match. Allocates nothing. */
bool mesh_filter_match_json(const struct mesh_filter *f, const json_t *body);

/* MessageAttributes scope over SNS's JSON form of message attributes:
 *   {"name": {"DataType": "String", "StringValue": "x"},
 *    "b": {"DataType": "Binary", "BinaryValue": "base64"}}
 * ("Type"/"Value", the form SNS delivers, is accepted too). On success
 * *match says whether the attributes pass. Allocates nothing.
 * Errors: MESH_EINVAL (attrs not an object, or an attribute without a
 * known DataType or value), the detail naming the attribute at fault. */
mesh_err mesh_filter_match_sns_attrs(const struct mesh_filter *f,
                                     const json_t *attrs, bool *match);

#endif
