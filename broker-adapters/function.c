/* function.c: function definitions (mesh/function.h), the records of the
 * key-value bucket MESH_FUNCTIONS that mesh-supervisor watches. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "mesh/function.h"
#include "mesh/partition.h"
#include "mesh/source.h"
#include "mesh/wire.h"

/* Every argument, variable and source at their limits fits. */
#define MAX_RECORD (1024 * 1024)

#define MIN_IDLE_MS    1000
#define MAX_IDLE_MS    86400000
#define MAX_BACKLOG    1000000
#define UPDATE_RETRIES 3

void
mesh_function_init(struct mesh_function *f)
{
	memset(f, 0, sizeof(*f));
	f->min = 0;
	f->max = 4;
	f->idle_ms = 60000;
	f->target_backlog = 100;
}

static void
strv_free(char **v, size_t n)
{
	for (size_t i = 0; v != NULL && i < n; i++) {
		free(v[i]);
	}
	free(v);
}

void
mesh_function_fini(struct mesh_function *f)
{
	if (f == NULL) {
		return;
	}
	free(f->program);
	strv_free(f->args, f->n_args);
	strv_free(f->env, f->n_env);
	strv_free(f->sources, f->n_sources);
	strv_free(f->routes, f->n_routes);
	mesh_function_init(f);
}

/* err, its detail "<fmt...>: <the detail so far>". */
static mesh_err rewrap(mesh_err err, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static mesh_err
rewrap(mesh_err err, const char *fmt, ...)
{
	char detail[512], prefix[128];
	va_list ap;

	snprintf(detail, sizeof(detail), "%s", mesh_errdetail());
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	return mesh_err_set(err, "%s: %s", prefix, detail);
}

static mesh_err
name_check(const char *name)
{
	bool fifo = false;
	mesh_err err = mesh_name_check("function", name,
	                               MESH_FUNCTION_NAME_MAX, &fifo);

	if (err == MESH_OK && fifo) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "function name '%s': may contain only A-Z, "
		        "a-z, 0-9, '-' and '_'",
		        name);
	}
	return err;
}

/* KEY=VALUE, KEY a shell variable's name. */
static bool
env_valid(const char *e)
{
	size_t key = e != NULL ? strcspn(e, "=") : 0;

	if (key == 0 || e[key] != '=' || (e[0] >= '0' && e[0] <= '9')) {
		return false;
	}
	return strspn(e, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	                 "0123456789_") == key;
}

static mesh_err
program_check(const char *name, const char *program)
{
	struct stat st;

	if (stat(program, &st) != 0) {
		return mesh_err_set(MESH_EINVAL,
		                    "function '%s': program '%s': %s", name,
		                    program, strerror(errno));
	}
	if (!S_ISREG(st.st_mode) || access(program, X_OK) != 0) {
		return mesh_err_set(MESH_EINVAL,
		                    "function '%s': program '%s': not an "
		                    "executable file",
		                    name, program);
	}
	return MESH_OK;
}

/* "METHOD /path", 1-255 bytes without control characters: the runtime
 * checks routes in full; this is what a record must hold. */
static bool
route_valid(const char *r)
{
	const char *sp = r != NULL ? strchr(r, ' ') : NULL;
	size_t len = r != NULL ? strlen(r) : 0;

	if (sp == NULL || sp == r || sp[1] != '/' || len > 255) {
		return false;
	}
	for (const char *p = r; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			return false;
		}
	}
	return true;
}

/* mesh_function_check, the program's existence only when `exists`. */
static mesh_err
check(const struct mesh_function *f, bool exists)
{
	const char *n = f->name;
	mesh_err err;

	if ((err = name_check(n)) != MESH_OK) {
		return err;
	}
	if (f->program == NULL || f->program[0] != '/') {
		return mesh_err_set(MESH_EINVAL,
		                    "function '%s': program '%s': not an "
		                    "absolute path",
		                    n, f->program ? f->program : "");
	}
	if (exists && (err = program_check(n, f->program)) != MESH_OK) {
		return err;
	}
	if (f->n_args > MESH_FUNCTION_ARGS_MAX) {
		return mesh_err_set(MESH_EINVAL,
		                    "function '%s': %zu args: at most %d", n,
		                    f->n_args, MESH_FUNCTION_ARGS_MAX);
	}
	for (size_t i = 0; i < f->n_args; i++) {
		if (f->args[i] == NULL) {
			return mesh_err_set(MESH_EINVAL,
			                    "function '%s': args[%zu]: none",
			                    n, i);
		}
	}
	if (f->n_env > MESH_FUNCTION_ENV_MAX) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "function '%s': %zu env entries: at most %d", n,
		        f->n_env, MESH_FUNCTION_ENV_MAX);
	}
	for (size_t i = 0; i < f->n_env; i++) {
		if (!env_valid(f->env[i])) {
			return mesh_err_set(MESH_EINVAL,
			                    "function '%s': env '%.200s': not "
			                    "KEY=VALUE",
			                    n, f->env[i] ? f->env[i] : "");
		}
	}
	if (f->max < 1 || f->max > MESH_FUNCTION_INSTANCES_MAX) {
		return mesh_err_set(MESH_EINVAL,
		                    "function '%s': max %d: must be 1-%d", n,
		                    f->max, MESH_FUNCTION_INSTANCES_MAX);
	}
	if (f->min < 0) {
		return mesh_err_set(MESH_EINVAL,
		                    "function '%s': min %d: must be 0-%d", n,
		                    f->min, f->max);
	}
	if (f->min > f->max) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "function '%s': min %d is more than max %d", n, f->min,
		        f->max);
	}
	if (f->idle_ms < MIN_IDLE_MS || f->idle_ms > MAX_IDLE_MS) {
		return mesh_err_set(MESH_EINVAL,
		                    "function '%s': idle_ms %" PRId64
		                    ": must be %d-%d",
		                    n, f->idle_ms, MIN_IDLE_MS, MAX_IDLE_MS);
	}
	if (f->target_backlog < 1 || f->target_backlog > MAX_BACKLOG) {
		return mesh_err_set(MESH_EINVAL,
		                    "function '%s': target_backlog %" PRId64
		                    ": must be 1-%d",
		                    n, f->target_backlog, MAX_BACKLOG);
	}
	if (f->n_sources > MESH_FUNCTION_SOURCES_MAX) {
		return mesh_err_set(
		        MESH_EINVAL, "function '%s': %zu sources: at most %d",
		        n, f->n_sources, MESH_FUNCTION_SOURCES_MAX);
	}
	if (f->n_routes > MESH_FUNCTION_ROUTES_MAX) {
		return mesh_err_set(MESH_EINVAL,
		                    "function '%s': %zu routes: at most %d", n,
		                    f->n_routes, MESH_FUNCTION_ROUTES_MAX);
	}
	if (f->n_sources == 0 && f->n_routes == 0) {
		return mesh_err_set(MESH_EINVAL,
		                    "function '%s': no sources and no routes: "
		                    "nothing would ever start it",
		                    n);
	}
	for (size_t i = 0; i < f->n_routes; i++) {
		if (!route_valid(f->routes[i])) {
			return mesh_err_set(
			        MESH_EINVAL,
			        "function '%s': route '%.255s': not METHOD "
			        "/path of 1-255 bytes",
			        n, f->routes[i] ? f->routes[i] : "");
		}
	}
	if (f->n_routes > 0 && f->partitions > 0) {
		return mesh_err_set(MESH_EINVAL,
		                    "function '%s': %zu routes and %d "
		                    "partitions: a partitioned service serves "
		                    "no requests",
		                    n, f->n_routes, f->partitions);
	}
	for (size_t i = 0; i < f->n_sources; i++) {
		if ((err = mesh_source_spec_check(f->sources[i])) != MESH_OK) {
			return rewrap(err, "function '%s'", n);
		}
	}
	if (f->partitions < 0 || f->partitions > MESH_PARTITIONS_MAX) {
		return mesh_err_set(MESH_EINVAL,
		                    "function '%s': partitions %d: must be "
		                    "0-%d",
		                    n, f->partitions, MESH_PARTITIONS_MAX);
	}
	return MESH_OK;
}

mesh_err
mesh_function_check(const struct mesh_function *f)
{
	return check(f, true);
}

/* ---- JSON ----------------------------------------------------------------
 */

static json_t *
strv_json(char *const *v, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; a != NULL && i < n; i++) {
		if (json_array_append_new(a, json_string(v[i])) != 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

mesh_err
mesh_function_encode(const struct mesh_function *f, char **json)
{
	json_t *j = json_pack(
	        "{s:s, s:s?, s:o?, s:o?, s:i, s:i, s:I, s:I, s:o?, s:i, s:o?, "
	        "s:I, s:I}",
	        "name", f->name, "program", f->program, "args",
	        strv_json(f->args, f->n_args), "env",
	        strv_json(f->env, f->n_env), "min", f->min, "max", f->max,
	        "idle_ms", (json_int_t)f->idle_ms, "target_backlog",
	        (json_int_t)f->target_backlog, "sources",
	        strv_json(f->sources, f->n_sources), "partitions",
	        f->partitions, "routes", strv_json(f->routes, f->n_routes),
	        "created_ms", (json_int_t)f->created_ms, "updated_ms",
	        (json_int_t)f->updated_ms);
	char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;

	json_decref(j);
	if (text == NULL) {
		return mesh_err_set(MESH_ENOMEM, "function '%s': encoding",
		                    f->name);
	}
	*json = text;
	return MESH_OK;
}

/* An array of strings, field `key` of j (absent: none). */
static mesh_err
strv_read(json_t *j, const char *key, size_t max, char ***out, size_t *n)
{
	json_t *a = json_object_get(j, key), *v;
	size_t i;

	*out = NULL;
	*n = 0;
	if (a == NULL) {
		return MESH_OK;
	}
	if (!json_is_array(a) || json_array_size(a) > max) {
		return mesh_err_set(MESH_EINVAL,
		                    "field '%s': not an array of at most %zu "
		                    "strings",
		                    key, max);
	}
	if (json_array_size(a) == 0) {
		return MESH_OK;
	}
	if ((*out = calloc(json_array_size(a), sizeof(**out))) == NULL) {
		return mesh_err_set(MESH_ENOMEM, "field '%s'", key);
	}
	json_array_foreach(a, i, v)
	{
		const char *s = json_string_value(v);
		if (s == NULL || strlen(s) != json_string_length(v)) {
			return mesh_err_set(MESH_EINVAL,
			                    "field '%s': item %zu is not a "
			                    "string",
			                    key, i);
		}
		if (((*out)[i] = strdup(s)) == NULL) {
			return mesh_err_set(MESH_ENOMEM, "field '%s'", key);
		}
		*n = i + 1;
	}
	return MESH_OK;
}

/* An integer field in [lo, hi]; absent: *out stays. */
static mesh_err
int_read(json_t *j, const char *key, int64_t lo, int64_t hi, int64_t *out)
{
	json_t *v = json_object_get(j, key);

	if (v == NULL) {
		return MESH_OK;
	}
	if (!json_is_integer(v) || json_integer_value(v) < lo ||
	    json_integer_value(v) > hi) {
		char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
		mesh_err err = mesh_err_set(
		        MESH_EINVAL,
		        "field '%s': %.64s is not an integer in %" PRId64
		        "-%" PRId64,
		        key, text ? text : "?", lo, hi);
		free(text);
		return err;
	}
	*out = json_integer_value(v);
	return MESH_OK;
}

static mesh_err
decode(json_t *j, struct mesh_function *f)
{
	const char *name = json_string_value(json_object_get(j, "name"));
	json_t *program = json_object_get(j, "program");
	int64_t min = f->min, max = f->max, parts = 0;
	mesh_err err;

	if (!json_is_object(j)) {
		return mesh_err_set(MESH_EINVAL, "not a JSON object");
	}
	if (name == NULL || strlen(name) > MESH_FUNCTION_NAME_MAX) {
		return mesh_err_set(MESH_EINVAL,
		                    "field 'name': not a string of 1-%d "
		                    "characters",
		                    MESH_FUNCTION_NAME_MAX);
	}
	snprintf(f->name, sizeof(f->name), "%s", name);
	if (!json_is_string(program) || strlen(json_string_value(program)) !=
	                                        json_string_length(program)) {
		return mesh_err_set(MESH_EINVAL, "field 'program': not a "
		                                 "string");
	}
	if ((f->program = strdup(json_string_value(program))) == NULL) {
		return mesh_err_set(MESH_ENOMEM, "field 'program'");
	}
	if ((err = strv_read(j, "args", MESH_FUNCTION_ARGS_MAX, &f->args,
	                     &f->n_args)) != MESH_OK ||
	    (err = strv_read(j, "env", MESH_FUNCTION_ENV_MAX, &f->env,
	                     &f->n_env)) != MESH_OK ||
	    (err = strv_read(j, "sources", MESH_FUNCTION_SOURCES_MAX,
	                     &f->sources, &f->n_sources)) != MESH_OK ||
	    (err = strv_read(j, "routes", MESH_FUNCTION_ROUTES_MAX, &f->routes,
	                     &f->n_routes)) != MESH_OK ||
	    (err = int_read(j, "min", 0, MESH_FUNCTION_INSTANCES_MAX, &min)) !=
	            MESH_OK ||
	    (err = int_read(j, "max", 1, MESH_FUNCTION_INSTANCES_MAX, &max)) !=
	            MESH_OK ||
	    (err = int_read(j, "idle_ms", MIN_IDLE_MS, MAX_IDLE_MS,
	                    &f->idle_ms)) != MESH_OK ||
	    (err = int_read(j, "target_backlog", 1, MAX_BACKLOG,
	                    &f->target_backlog)) != MESH_OK ||
	    (err = int_read(j, "partitions", 0, MESH_PARTITIONS_MAX,
	                    &parts)) != MESH_OK ||
	    (err = int_read(j, "created_ms", 0, INT64_MAX, &f->created_ms)) !=
	            MESH_OK ||
	    (err = int_read(j, "updated_ms", 0, INT64_MAX, &f->updated_ms)) !=
	            MESH_OK) {
		return err;
	}
	f->min = (int)min;
	f->max = (int)max;
	f->partitions = (int)parts;
	return check(f, false);
}

mesh_err
mesh_function_decode(const char *json, size_t len, struct mesh_function *f)
{
	struct mesh_function tmp;
	json_error_t jerr;
	json_t *j = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	mesh_err err;

	if (j == NULL) {
		return mesh_err_set(MESH_EINVAL,
		                    "function record: not JSON: %s at "
		                    "offset %d",
		                    jerr.text, jerr.position);
	}
	mesh_function_init(&tmp);
	err = decode(j, &tmp);
	json_decref(j);
	if (err != MESH_OK) {
		err = rewrap(err, "function record '%s'", tmp.name);
		mesh_function_fini(&tmp);
		return err;
	}
	*f = tmp;
	return MESH_OK;
}

/* ---- the bucket ----------------------------------------------------------
 */

static mesh_err
bucket(struct mesh_conn *c, bool create, kvStore **kv)
{
	return mesh__kv_bucket(c, MESH_FUNCTIONS_BUCKET, MAX_RECORD, 0, create,
	                       "functions", kv);
}

static mesh_err
not_found(const char *name)
{
	return mesh_err_set(MESH_ENOTFOUND, "function '%s': does not exist",
	                    name);
}

/* The record of name from kv into *out (MESH_EBROKER when damaged). */
static mesh_err
record_get(kvStore *kv, const char *name, struct mesh_function *out)
{
	kvEntry *e = NULL;
	natsStatus st = kvStore_Get(&e, kv, name);
	mesh_err err;

	if (st == NATS_NOT_FOUND) {
		return not_found(name);
	}
	if (st != NATS_OK) {
		return mesh_err_nats(st, 0, "function '%s'", name);
	}
	err = mesh_function_decode(kvEntry_ValueString(e),
	                           (size_t)kvEntry_ValueLen(e), out);
	if (err == MESH_OK && strcmp(out->name, name) != 0) {
		mesh_function_fini(out);
		err = mesh_err_set(MESH_EINVAL,
		                   "the record of '%s' names '%.64s'", name,
		                   out->name);
	}
	if (err == MESH_OK) {
		out->revision = kvEntry_Revision(e);
	} else if (err == MESH_EINVAL) {
		err = rewrap(MESH_EBROKER, "function '%s': damaged record",
		             name);
	}
	kvEntry_Destroy(e);
	return err;
}

static bool
exists(kvStore *kv, const char *name)
{
	kvEntry *e = NULL;
	natsStatus st = kvStore_Get(&e, kv, name);

	kvEntry_Destroy(e);
	return st == NATS_OK;
}

static mesh_err
store(kvStore *kv, struct mesh_function *f, uint64_t last, bool create)
{
	char *text = NULL;
	uint64_t rev = 0;
	natsStatus st;
	mesh_err err;

	if ((err = mesh_function_encode(f, &text)) != MESH_OK) {
		return err;
	}
	st = create ? kvStore_Create(&rev, kv, f->name, text,
	                             (int)strlen(text))
	            : kvStore_Update(&rev, kv, f->name, text,
	                             (int)strlen(text), last);
	free(text);
	if (st != NATS_OK) {
		return mesh_err_nats(st, 0, "function '%s': storing", f->name);
	}
	f->revision = rev;
	return MESH_OK;
}

mesh_err
mesh_function_put(struct mesh_conn *c, struct mesh_function *f, bool create)
{
	struct mesh_function old;
	kvStore *kv = NULL;
	mesh_err err;

	if ((err = mesh_function_check(f)) != MESH_OK ||
	    (err = bucket(c, true, &kv)) != MESH_OK) {
		return err;
	}
	f->updated_ms = now_ms();
	if (create) {
		f->created_ms = f->updated_ms;
		err = store(kv, f, 0, true);
		/* kvStore_Create says only that it failed: a record there
		 * is the usual reason. */
		if (err != MESH_OK && exists(kv, f->name)) {
			err = mesh_err_set(MESH_EEXIST, "function '%s' exists",
			                   f->name);
		}
		kvStore_Destroy(kv);
		return err;
	}
	for (int i = 0; i < UPDATE_RETRIES; i++) {
		kvEntry *e = NULL;
		natsStatus st = kvStore_Get(&e, kv, f->name);
		uint64_t rev = e != NULL ? kvEntry_Revision(e) : 0;
		if (st == NATS_NOT_FOUND) {
			err = not_found(f->name);
			break;
		}
		if (st != NATS_OK) {
			err = mesh_err_nats(st, 0, "function '%s'", f->name);
			break;
		}
		mesh_function_init(&old);
		/* A damaged record's time of creation is lost: now. */
		f->created_ms =
		        mesh_function_decode(kvEntry_ValueString(e),
		                             (size_t)kvEntry_ValueLen(e),
		                             &old) == MESH_OK
		                ? old.created_ms
		                : f->updated_ms;
		mesh_function_fini(&old);
		kvEntry_Destroy(e);
		if (f->revision != 0 && f->revision != rev) {
			err = mesh_err_set(MESH_ESTALE,
			                   "function '%s': changed meanwhile "
			                   "(revision %" PRIu64
			                   ", not %" PRIu64 ")",
			                   f->name, rev, f->revision);
			break;
		}
		/* Deleted or changed between the two calls: look again. */
		if ((err = store(kv, f, rev, false)) == MESH_OK ||
		    f->revision != 0) {
			break;
		}
	}
	kvStore_Destroy(kv);
	return err;
}

/* The bucket, for a call about function name (no bucket: name does not
 * exist). */
static mesh_err
bucket_of(struct mesh_conn *c, const char *name, kvStore **kv)
{
	mesh_err err;

	if ((err = name_check(name)) != MESH_OK) {
		return err;
	}
	err = bucket(c, false, kv);
	return err == MESH_ENOTFOUND ? not_found(name) : err;
}

mesh_err
mesh_function_get(struct mesh_conn *c, const char *name,
                  struct mesh_function *out)
{
	kvStore *kv = NULL;
	mesh_err err;

	if ((err = bucket_of(c, name, &kv)) != MESH_OK) {
		return err;
	}
	err = record_get(kv, name, out);
	kvStore_Destroy(kv);
	return err;
}

static int
by_name(const void *a, const void *b)
{
	return strcmp(((const struct mesh_function *)a)->name,
	              ((const struct mesh_function *)b)->name);
}

mesh_err
mesh_function_list(struct mesh_conn *c, struct mesh_function **out, size_t *n)
{
	struct mesh_function *fs = NULL;
	kvKeysList keys = {0};
	kvStore *kv = NULL;
	size_t nf = 0;
	natsStatus st;
	mesh_err err;

	*out = NULL;
	*n = 0;
	if ((err = bucket(c, false, &kv)) == MESH_ENOTFOUND) {
		return MESH_OK;
	}
	if (err != MESH_OK) {
		return err;
	}
	st = kvStore_Keys(&keys, kv, NULL);
	if (st == NATS_NOT_FOUND) {
		kvStore_Destroy(kv);
		return MESH_OK;
	}
	if (st != NATS_OK) {
		kvStore_Destroy(kv);
		return mesh_err_nats(st, 0, "listing functions");
	}
	if (keys.Count > 0 &&
	    (fs = calloc((size_t)keys.Count, sizeof(*fs))) == NULL) {
		err = mesh_err_set(MESH_ENOMEM, "listing functions");
		goto out;
	}
	for (int i = 0; i < keys.Count; i++) {
		struct mesh_function *f = &fs[nf];
		mesh_function_init(f);
		err = record_get(kv, keys.Keys[i], f);
		if (err == MESH_ENOTFOUND) {
			continue; /* deleted meanwhile */
		}
		if (err == MESH_EBROKER) {
			mesh_function_init(f);
			mesh__copy_str(f->name, sizeof(f->name), keys.Keys[i]);
		} else if (err != MESH_OK) {
			mesh_function_list_free(fs, nf);
			fs = NULL;
			nf = 0;
			goto out;
		}
		nf++;
	}
	err = MESH_OK;
	if (nf > 1) {
		qsort(fs, nf, sizeof(*fs), by_name);
	}
	*out = fs;
	*n = nf;
out:
	kvKeysList_Destroy(&keys);
	kvStore_Destroy(kv);
	return err;
}

void
mesh_function_list_free(struct mesh_function *fs, size_t n)
{
	for (size_t i = 0; fs != NULL && i < n; i++) {
		mesh_function_fini(&fs[i]);
	}
	free(fs);
}

mesh_err
mesh_function_delete(struct mesh_conn *c, const char *name)
{
	kvStore *kv = NULL;
	natsStatus st;
	mesh_err err;

	if ((err = bucket_of(c, name, &kv)) != MESH_OK) {
		return err;
	}
	if (!exists(kv, name)) {
		err = not_found(name);
	} else if ((st = kvStore_Delete(kv, name)) != NATS_OK) {
		err = mesh_err_nats(st, 0, "function '%s': deleting", name);
	}
	kvStore_Destroy(kv);
	return err;
}

int
mesh_function_slot(const char *name)
{
	return mesh_partition_of(name, strlen(name), MESH_SUPERVISOR_SLOTS);
}

mesh_err
mesh_function_bucket(struct mesh_conn *c, kvStore **kv)
{
	return bucket(c, true, kv);
}
