/* Function definitions (mesh/function.h) against a real nats-server:
 * put, get, list, delete; a name taken refused (MESH_EEXIST), an update
 * of nothing refused (MESH_ENOTFOUND), a stale revision refused; the
 * record's JSON round trip; a damaged record (bytes put with cnats, as
 * anyone with access to the bucket may) reported by get and listed with
 * program NULL; mesh_function_check's refusals, each naming the
 * field and value; request routes stored, and an older record without
 * them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "mesh/mesh.h"

static struct test_broker broker;
static struct mesh_conn *c;

static char *
dup_str(const char *s)
{
	char *d = strdup(s);

	if (d == NULL) {
		abort();
	}
	return d;
}

static char **
strv(size_t n, const char *const *v)
{
	char **out = calloc(n, sizeof(*out));

	for (size_t i = 0; out != NULL && i < n; i++) {
		out[i] = dup_str(v[i]);
	}
	return out;
}

/* A definition of name running /bin/sh, with two sources. */
static void
sample(struct mesh_function *f, const char *name)
{
	static const char *const args[] = {"-c", "exit 0"};
	static const char *const env[] = {"GREETING=hello", "EMPTY="};
	static const char *const sources[] = {
	        "queue:place-order", "subscription:orders:0123456789abcdef"};

	mesh_function_init(f);
	snprintf(f->name, sizeof(f->name), "%s", name);
	f->program = dup_str("/bin/sh");
	f->args = strv(2, args);
	f->n_args = 2;
	f->env = strv(2, env);
	f->n_env = 2;
	f->sources = strv(2, sources);
	f->n_sources = 2;
	f->min = 1;
	f->max = 3;
	f->idle_ms = 5000;
	f->target_backlog = 10;
}

static void
round_trip(void)
{
	struct mesh_function f, g;
	char *json = NULL, *again = NULL;

	sample(&f, "rt");
	f.partitions = 4;
	f.created_ms = 1000;
	f.updated_ms = 2000;
	ok(mesh_function_encode(&f, &json) == MESH_OK, "encode");
	mesh_function_init(&g);
	ok(mesh_function_decode(json, strlen(json), &g) == MESH_OK,
	   "decode what encode wrote: %s", mesh_errdetail());
	is_str(g.name, "rt", "name");
	is_str(g.program, "/bin/sh", "program");
	ok(g.n_args == 2 && strcmp(g.args[1], "exit 0") == 0, "args");
	ok(g.n_env == 2 && strcmp(g.env[1], "EMPTY=") == 0, "env");
	ok(g.n_sources == 2 &&
	           strcmp(g.sources[1],
	                  "subscription:orders:0123456789abcdef") == 0,
	   "sources");
	ok(g.min == 1 && g.max == 3 && g.idle_ms == 5000 &&
	           g.target_backlog == 10 && g.partitions == 4 &&
	           g.created_ms == 1000 && g.updated_ms == 2000,
	   "numbers");
	ok(mesh_function_encode(&g, &again) == MESH_OK &&
	           strcmp(json, again) == 0,
	   "and encodes the same again");
	free(json);
	free(again);
	mesh_function_fini(&g);
	mesh_function_fini(&f);

	mesh_function_init(&g);
	ok(mesh_function_decode("{\"name\":\"x\"}", 12, &g) == MESH_EINVAL,
	   "a record without its program is refused");
	has_str(mesh_errdetail(), "program", "naming the field");
	ok(g.program == NULL, "and *out is left alone");
	json = "{\"name\":\"x\",\"program\":\"/p\",\"sources\":"
	       "[\"queue:q\"],\"max\":65}";
	ok(mesh_function_decode(json, strlen(json), &g) == MESH_EINVAL,
	   "max 65 is refused");
	has_str(mesh_errdetail(), "'max': 65", "naming the field and value");
	json = "{\"name\":\"x\",\"program\":\"/nowhere\",\"sources\":"
	       "[\"queue:q\"]}";
	ok(mesh_function_decode(json, strlen(json), &g) == MESH_OK,
	   "decode does not need the program here; defaults fill in");
	ok(g.max == 4 && g.min == 0 && g.idle_ms == 60000 &&
	           g.target_backlog == 100,
	   "the defaults: min 0, max 4, idle 60 s, backlog 100");
	mesh_function_fini(&g);
}

static void
check_refusals(void)
{
	struct mesh_function f;

	sample(&f, "chk");
	ok(mesh_function_check(&f) == MESH_OK, "a sample definition passes");

	snprintf(f.name, sizeof(f.name), "a b");
	ok(mesh_function_check(&f) == MESH_EINVAL, "name 'a b' refused");
	has_str(mesh_errdetail(), "'a b'", "naming it");
	snprintf(f.name, sizeof(f.name), "chk");

	f.min = 5;
	f.max = 2;
	ok(mesh_function_check(&f) == MESH_EINVAL, "min 5 > max 2 refused");
	has_str(mesh_errdetail(), "min 5 is more than max 2", "naming both");
	f.min = 0;
	f.max = 0;
	ok(mesh_function_check(&f) == MESH_EINVAL, "max 0 refused");
	has_str(mesh_errdetail(), "max 0", "naming it");
	f.max = MESH_FUNCTION_INSTANCES_MAX + 1;
	ok(mesh_function_check(&f) == MESH_EINVAL, "max 65 refused");
	f.max = 2;
	f.idle_ms = 999;
	ok(mesh_function_check(&f) == MESH_EINVAL, "idle_ms 999 refused");
	has_str(mesh_errdetail(), "idle_ms 999", "naming it");
	f.idle_ms = 60000;
	f.target_backlog = 0;
	ok(mesh_function_check(&f) == MESH_EINVAL, "target_backlog 0 refused");
	f.target_backlog = 100;

	free(f.program);
	f.program = dup_str("relative/prog");
	ok(mesh_function_check(&f) == MESH_EINVAL,
	   "a relative program refused");
	has_str(mesh_errdetail(), "'relative/prog'", "naming it");
	free(f.program);
	f.program = dup_str("/nonexistent/prog");
	ok(mesh_function_check(&f) == MESH_EINVAL,
	   "a missing program refused");
	has_str(mesh_errdetail(), "'/nonexistent/prog'", "naming it");
	free(f.program);
	{
		char dir[256], path[300];
		FILE *fp;
		if (!test_tmpdir(dir, sizeof(dir))) {
			abort();
		}
		snprintf(path, sizeof(path), "%s/plain", dir);
		if ((fp = fopen(path, "w")) != NULL) {
			fputs("#!/bin/sh\n", fp);
			fclose(fp);
		}
		f.program = dup_str(path);
	}
	ok(mesh_function_check(&f) == MESH_EINVAL,
	   "a file that is not executable refused");
	has_str(mesh_errdetail(), "not an executable file", "saying so");
	*strrchr(f.program, '/') = '\0';
	test_rmtree(f.program);
	free(f.program);
	f.program = dup_str("/bin/sh");

	free(f.env[0]);
	f.env[0] = dup_str("NOEQUALS");
	ok(mesh_function_check(&f) == MESH_EINVAL, "env without '=' refused");
	has_str(mesh_errdetail(), "'NOEQUALS'", "naming it");
	free(f.env[0]);
	f.env[0] = dup_str("A=1");

	free(f.sources[0]);
	f.sources[0] = dup_str("topic:orders");
	ok(mesh_function_check(&f) == MESH_EINVAL,
	   "a source spec that is not one refused");
	has_str(mesh_errdetail(), "'topic:orders'", "naming it");
	free(f.sources[0]);
	f.sources[0] = dup_str("subscription:orders:xyz");
	ok(mesh_function_check(&f) == MESH_EINVAL,
	   "a malformed subscription id refused");
	free(f.sources[0]);
	f.sources[0] = dup_str("partition:orders/2");
	ok(mesh_function_check(&f) == MESH_OK,
	   "partition:SERVICE/K is a source spec too");
	f.n_sources = 0;
	ok(mesh_function_check(&f) == MESH_EINVAL,
	   "no sources and no routes refused");
	has_str(mesh_errdetail(), "no sources and no routes",
	        "saying nothing would start it");
	f.n_sources = 2;
	mesh_function_fini(&f);
}

/* Request routes: stored, read back, and a record from before them (no
 * "routes") serves none. */
static void
routes(void)
{
	static const char *const keys[] = {"GET /count", "POST /orders/{id}"};
	struct mesh_function f, g;
	char *json = NULL;
	size_t n_src;

	sample(&f, "rts");
	f.min = 0;
	f.routes = strv(2, keys);
	f.n_routes = 2;
	ok(mesh_function_check(&f) == MESH_OK, "a function with routes");
	ok(mesh_function_encode(&f, &json) == MESH_OK, "encodes");
	has_str(json, "\"routes\":[\"GET /count\",\"POST /orders/{id}\"]",
	        "its routes in the record");
	mesh_function_init(&g);
	ok(mesh_function_decode(json, strlen(json), &g) == MESH_OK &&
	           g.n_routes == 2 && strcmp(g.routes[1], keys[1]) == 0,
	   "and decodes them");
	mesh_function_fini(&g);
	free(json);
	json = "{\"name\":\"old\",\"program\":\"/p\",\"sources\":"
	       "[\"queue:q\"]}";
	mesh_function_init(&g);
	ok(mesh_function_decode(json, strlen(json), &g) == MESH_OK &&
	           g.n_routes == 0 && g.routes == NULL,
	   "a record without routes (from before them) serves none");
	mesh_function_fini(&g);

	n_src = f.n_sources;
	f.n_sources = 0;
	ok(mesh_function_check(&f) == MESH_OK,
	   "routes without sources: requests alone start it");
	f.partitions = 2;
	ok(mesh_function_check(&f) == MESH_EINVAL,
	   "routes on a partitioned function refused");
	has_str(mesh_errdetail(), "partitioned service serves no requests",
	        "saying why");
	f.partitions = 0;
	f.n_sources = n_src;
	free(f.routes[0]);
	f.routes[0] = dup_str("/count");
	ok(mesh_function_check(&f) == MESH_EINVAL, "a route without METHOD");
	has_str(mesh_errdetail(), "route '/count'", "naming it");
	mesh_function_fini(&f);
}

static void
crud(void)
{
	struct mesh_function f, g, *fs = NULL;
	size_t n = 0;
	mesh_err err;

	mesh_function_init(&g);
	ok(mesh_function_get(c, "alpha", &g) == MESH_ENOTFOUND,
	   "get before any bucket: MESH_ENOTFOUND");
	ok(mesh_function_list(c, &fs, &n) == MESH_OK && n == 0,
	   "list before any bucket: none");

	sample(&f, "alpha");
	ok(mesh_function_put(c, &f, true) == MESH_OK, "create alpha: %s",
	   mesh_errdetail());
	ok(f.revision > 0 && f.created_ms > 0 && f.created_ms == f.updated_ms,
	   "revision and times set");
	err = mesh_function_put(c, &f, true);
	is_int(err, MESH_EEXIST, "create alpha again: MESH_EEXIST");
	has_str(mesh_errdetail(), "function 'alpha' exists", "saying so");
	mesh_function_fini(&f);

	sample(&f, "beta");
	err = mesh_function_put(c, &f, false);
	is_int(err, MESH_ENOTFOUND, "update of beta, missing: MESH_ENOTFOUND");
	ok(mesh_function_put(c, &f, true) == MESH_OK, "create beta");
	mesh_function_fini(&f);

	ok(mesh_function_get(c, "alpha", &g) == MESH_OK, "get alpha");
	is_str(g.program, "/bin/sh", "its program");
	ok(g.revision > 0, "with its revision");
	g.max = 7;
	{
		int64_t created = g.created_ms;
		uint64_t rev = g.revision;
		ok(mesh_function_put(c, &g, false) == MESH_OK,
		   "update alpha (max 7): %s", mesh_errdetail());
		ok(g.created_ms == created && g.revision > rev,
		   "created_ms kept, the revision moved on");
		g.revision = rev;
		err = mesh_function_put(c, &g, false);
		is_int(err, MESH_ESTALE,
		       "an update from an older revision: MESH_ESTALE");
	}
	mesh_function_fini(&g);
	ok(mesh_function_get(c, "alpha", &g) == MESH_OK && g.max == 7,
	   "get sees max 7");
	mesh_function_fini(&g);

	ok(mesh_function_list(c, &fs, &n) == MESH_OK && n == 2,
	   "list: 2 functions");
	ok(n == 2 && strcmp(fs[0].name, "alpha") == 0 &&
	           strcmp(fs[1].name, "beta") == 0,
	   "by name");
	mesh_function_list_free(fs, n);

	ok(mesh_function_delete(c, "beta") == MESH_OK, "delete beta");
	is_int(mesh_function_delete(c, "beta"), MESH_ENOTFOUND,
	       "delete beta again: MESH_ENOTFOUND");
	is_int(mesh_function_get(c, "beta", &g), MESH_ENOTFOUND,
	       "get beta: MESH_ENOTFOUND");
	is_int(mesh_function_delete(c, "no such"), MESH_EINVAL,
	       "delete of an invalid name: MESH_EINVAL");
	ok(mesh_function_list(c, &fs, &n) == MESH_OK && n == 1,
	   "list: 1 function");
	mesh_function_list_free(fs, n);
}

static void
damaged(void)
{
	struct mesh_function g, *fs = NULL;
	kvStore *kv = NULL;
	uint64_t rev = 0;
	size_t n = 0;

	ok(js_KeyValue(&kv, mesh_conn_js(c), MESH_FUNCTIONS_BUCKET) == NATS_OK,
	   "the bucket %s is there", MESH_FUNCTIONS_BUCKET);
	ok(kvStore_PutString(&rev, kv, "gamma", "{not json") == NATS_OK,
	   "put raw bytes as gamma with cnats");
	ok(kvStore_PutString(&rev, kv, "delta",
	                     "{\"name\":\"other\",\"program\":\"/bin/sh\","
	                     "\"sources\":[\"queue:q\"]}") == NATS_OK,
	   "and a record naming another function as delta");
	kvStore_Destroy(kv);

	mesh_function_init(&g);
	is_int(mesh_function_get(c, "gamma", &g), MESH_EBROKER,
	       "get gamma: MESH_EBROKER");
	has_str(mesh_errdetail(), "damaged", "saying it is damaged");
	ok(g.program == NULL, "nothing read");
	is_int(mesh_function_get(c, "delta", &g), MESH_EBROKER,
	       "get delta (names 'other'): MESH_EBROKER");
	ok(mesh_function_list(c, &fs, &n) == MESH_OK && n == 3,
	   "list: 3 records, the damaged ones too");
	ok(n == 3 && strcmp(fs[0].name, "alpha") == 0 && fs[0].program != NULL,
	   "alpha whole");
	ok(n == 3 && strcmp(fs[1].name, "delta") == 0 && fs[1].program == NULL,
	   "delta listed with program NULL");
	ok(n == 3 && strcmp(fs[2].name, "gamma") == 0 && fs[2].program == NULL,
	   "gamma listed with program NULL");
	mesh_function_list_free(fs, n);
	ok(mesh_function_delete(c, "gamma") == MESH_OK,
	   "a damaged record can be deleted");
}

static void
slots(void)
{
	int s = mesh_function_slot("orders");

	ok(s >= 0 && s < MESH_SUPERVISOR_SLOTS, "a slot is in 0-%d",
	   MESH_SUPERVISOR_SLOTS - 1);
	is_int(s, mesh_partition_of("orders", 6, MESH_SUPERVISOR_SLOTS),
	       "the name's partition among the slots");
}

int
main(void)
{
	struct mesh_conn_opts o;

	if (!test_broker_start(&broker, NULL)) {
		tap_skip_all("nats-server did not start");
	}
	round_trip();
	check_refusals();
	routes();
	slots();
	mesh_conn_opts_init(&o);
	o.servers = broker.url;
	if (mesh_conn_open(&o, &c) != MESH_OK) {
		ok(false, "connect: %s", mesh_errdetail());
		return tap_done();
	}
	crud();
	damaged();
	mesh_conn_close(c);
	test_broker_stop(&broker);
	mesh_shutdown();
	return tap_done();
}
