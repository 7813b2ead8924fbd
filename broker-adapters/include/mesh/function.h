/* Functions: services run on demand by mesh-supervisor (Lambda's function
 * configuration, KEDA's ScaledObject).
 *
 * A function is a service program (built on the runtime, mesh/service.h)
 * with how many instances of it may run: min (0: none while there is no
 * work) to max, each taking up to target_backlog waiting events before
 * another is started, stopped (SIGTERM: the runtime finishes the batches
 * in hand) after idle_ms without work. Its definition is a record in the
 * key-value bucket MESH_FUNCTIONS (file storage, the mesh's replicas,
 * made when missing), key NAME, a JSON document:
 *
 *   {"name", "program", "args": [...], "env": ["KEY=VALUE", ...],
 *    "min", "max", "idle_ms", "target_backlog",
 *    "sources": ["queue:NAME" | "subscription:ID", ...], "partitions",
 *    "routes": ["GET /count", ...], "created_ms", "updated_ms"}
 *
 * sources, partitions and routes are what the program declares, learned
 * when the definition is made or changed (meshctl runs PROGRAM ARGS
 * --prepare: the runtime makes its subscriptions and dead-letter queue and
 * prints them); a source that does not exist refuses the definition.
 * routes are the request routes it serves (mesh/service_api.h; none for a
 * partitioned service, which serves none): while such a function has no
 * instance, its supervisor holds its requests, starts one and hands them
 * over (a record without "routes", from before, serves none).
 *
 * mesh-supervisor watches the bucket; each function is run by the
 * supervisor that holds its slot (a lease of the group MESH_SUPERVISOR_GROUP
 * in MESH_LEASES, slot = mesh_partition_of(name) of MESH_SUPERVISOR_SLOTS).
 * That supervisor answers, as JSON:
 *   MESH_SUPERVISOR_INFO_SUBJECT (NAME): the function's status, below;
 *   MESH_SUPERVISOR_LIST_SUBJECT: every supervisor, an array of the
 *     statuses of the functions it runs ({"supervisor","functions":[...]}).
 * A status: {"function", "supervisor", "instances": [{"pid", "state":
 *   "starting"|"running"|"stopping", "started_ms"}], "cold_starts" (starts
 *   from zero), "exits" (unasked), "last_exit", "crash_loop": bool,
 *   "next_start_ms" (Unix ms; 0: none held back), "backlog" (the last
 *   reading), "armed" (waiting for an event to wake it), "requests_held"
 *   (requests the supervisor holds until an instance answers),
 *   "requests_refused" (answered 503/504 by the supervisor), "requests"
 *   (answered by its instances, from their stats: work to the scaling
 *   decision), "decision":
 *   {"at_ms", "from", "to", "why"} (the last change of its instances)}.
 *
 * Thread safety: the calls may be made from any thread.
 */
#ifndef MESH_FUNCTION_H
#define MESH_FUNCTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mesh/conn.h"
#include "mesh/err.h"

#define MESH_FUNCTIONS_BUCKET        "MESH_FUNCTIONS"
#define MESH_FUNCTION_NAME_MAX       64 /* a service's name */
#define MESH_FUNCTION_ARGS_MAX       64
#define MESH_FUNCTION_ENV_MAX        64
#define MESH_FUNCTION_SOURCES_MAX    32
#define MESH_FUNCTION_INSTANCES_MAX  64
#define MESH_FUNCTION_ROUTES_MAX     64 /* as the runtime's */
#define MESH_SUPERVISOR_GROUP        "mesh-supervisor"
#define MESH_SUPERVISOR_SLOTS        8
#define MESH_SUPERVISOR_INFO_SUBJECT "mesh.supervisor.info.%s"
#define MESH_SUPERVISOR_LIST_SUBJECT "mesh.supervisor.list"

struct mesh_function {
	char name[MESH_FUNCTION_NAME_MAX + 1]; /* [A-Za-z0-9_-] */
	char *program; /* an absolute path to an executable */
	char **args;   /* n_args arguments after the program */
	size_t n_args;
	char **env; /* n_env "KEY=VALUE" added to its environment */
	size_t n_env;
	int min;                /* instances kept running: 0-max; 0 */
	int max;                /* 1-MESH_FUNCTION_INSTANCES_MAX; 4 */
	int64_t idle_ms;        /* without work this long: scale down;
	                           1000-86400000; 60000 */
	int64_t target_backlog; /* waiting events per instance; 1-1000000;
	                          100 */
	char **sources;         /* n_sources source specs (mesh/source.h) */
	size_t n_sources;
	int partitions; /* the service's partitions; 0: none */
	char **routes;  /* n_routes request route keys it serves,
	                   "GET /orders/{id}"; none with partitions */
	size_t n_routes;
	int64_t created_ms; /* Unix ms; set by mesh_function_put */
	int64_t updated_ms;
	uint64_t revision; /* the record's, from get/list/decode */
};

/* Defaults, nothing owned. */
void mesh_function_init(struct mesh_function *f);
/* Free what f owns (program, args, env, sources, routes) and init it
 * again. */
void mesh_function_fini(struct mesh_function *f);

/* Whether f is a definition that can be stored: name, program (absolute,
 * an executable file on this machine), args/env counts and env entries
 * of the form KEY=VALUE, 0 <= min <= max <= MESH_FUNCTION_INSTANCES_MAX,
 * max >= 1, idle_ms and target_backlog in range, sources each a valid
 * spec, routes each "METHOD /path" (1-255 bytes), 1+ of either (a function
 * with neither would never run), no routes when partitioned. Errors:
 * MESH_EINVAL, the detail naming the field and value
 * ("function 'x': min 5 is more than max 2"). */
mesh_err mesh_function_check(const struct mesh_function *f);

/* The record as JSON (malloc'ed, NUL-terminated; free()) and back. decode
 * checks what it reads as mesh_function_check does, except that the
 * program need not exist here. Errors: MESH_EINVAL (decode: the detail
 * names the field), MESH_ENOMEM. */
mesh_err mesh_function_encode(const struct mesh_function *f, char **json);
mesh_err mesh_function_decode(const char *json, size_t len,
                              struct mesh_function *f);

/* Store a definition, checked first (mesh_function_check): create=true
 * makes a new one (MESH_EEXIST when the name is taken), false replaces an
 * existing one (MESH_ENOTFOUND when there is none; created_ms kept),
 * only if it is still at f->revision when that is not 0 (as get left it:
 * MESH_ESTALE when it changed meanwhile). Sets f->created_ms, updated_ms
 * and revision. Errors: those of mesh_function_check, MESH_EEXIST,
 * MESH_ENOTFOUND, MESH_ESTALE, the connection's. */
mesh_err mesh_function_put(struct mesh_conn *c, struct mesh_function *f,
                           bool create);

/* Errors: MESH_EINVAL (name), MESH_ENOTFOUND, MESH_EBROKER (a damaged
 * record: the detail says what), the connection's. mesh_function_fini
 * *out after. */
mesh_err mesh_function_get(struct mesh_conn *c, const char *name,
                           struct mesh_function *out);

/* Every definition, by name; free with mesh_function_list_free. A damaged
 * record is listed with its name and program NULL. Errors: the
 * connection's. */
mesh_err mesh_function_list(struct mesh_conn *c, struct mesh_function **out,
                            size_t *n);
void mesh_function_list_free(struct mesh_function *fs, size_t n);

/* Remove a definition (its supervisor stops its instances). Errors:
 * MESH_EINVAL (name), MESH_ENOTFOUND, the connection's. */
mesh_err mesh_function_delete(struct mesh_conn *c, const char *name);

/* The bucket, made when missing (mesh-supervisor watches it); destroy
 * with kvStore_Destroy. Errors: the connection's. */
mesh_err mesh_function_bucket(struct mesh_conn *c, kvStore **kv);

/* The slot of a function among MESH_SUPERVISOR_SLOTS. */
int mesh_function_slot(const char *name);

#endif
