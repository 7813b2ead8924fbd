/* auth_perms.h: the NATS permissions of the mesh's identities, computed
 * from what each program declares (meshctl auth).
 *
 * An identity's permissions are a JSON object:
 *   {"name", "role": "admin" | "mesh-router" | "mesh-scheduler" |
 *    "mesh-supervisor" | "mesh-gateway" | "service",
 *    "publish": [{"subject", "why"}], "subscribe": [{"subject", "why"}],
 *    "allow_responses": true | false,
 *    "broad": ["why a grant is wider than the program's own names"]}
 * Subjects are NATS subjects with wildcards; every grant says why. */
#ifndef MESHCTL_AUTH_PERMS_H
#define MESHCTL_AUTH_PERMS_H

#include <jansson.h>

#include "mesh/mesh.h"

/* The daemons' identities, by the names their programs connect with. */
#define AUTH_ADMIN      "admin"
#define AUTH_ROUTER     "mesh-router"
#define AUTH_SCHEDULER  "mesh-scheduler"
#define AUTH_SUPERVISOR "mesh-supervisor"
#define AUTH_GATEWAY    "mesh-gateway"
#define AUTH_DAEMONS    5 /* the admin and the four daemons */

/* Whether name is one of the five above. */
bool auth_reserved(const char *name);

/* The permissions of the daemon or admin called name (one of the five
 * above), whose NKey public key is public_key ("U...": its replies come
 * to _INBOX.<public_key>). New reference; NULL: out of memory. */
json_t *auth_perms_daemon(const char *name, const char *public_key);

/* The permissions of a service from its program's --describe JSON
 * ({"service", "sources": [{"kind", "name"}], "emits": ["topic:X"],
 * "dlq", "partitions"}). Errors: MESH_EINVAL (a description that is not
 * one, the detail naming what), MESH_ENOMEM. *out: a new reference. */
mesh_err auth_perms_service(const json_t *describe, const char *public_key,
                            json_t **out);

/* The authorization block nats-server 2.9 reads (users by NKey), of the
 * identities (an array of permission objects with "public"). malloc'ed;
 * NULL: out of memory. */
char *auth_conf_text(const json_t *identities);

#endif
