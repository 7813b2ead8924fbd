/* fn_world.c: see fn_world.h. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "fn_world.h"

bool
fn_queue_make(const struct fn_world *w, const char *name)
{
	struct mesh_queue_attrs a;

	mesh_queue_attrs_init(&a);
	a.visibility_timeout_s = 5;
	if (mesh_queue_create(w->conn, name, &a) != MESH_OK) {
		fprintf(stderr, "queue %s: %s\n", name, mesh_errdetail());
		return false;
	}
	return true;
}

static mesh_err
define(const struct fn_world *w, const char *name, const char *queue, int min,
       int max, int64_t idle_ms, int partitions, const char *extra_env,
       bool routes)
{
	struct mesh_function f;
	char state[PATH_MAX + 80], starts[PATH_MAX + 80], fname[128],
	        fqueue[128], spec[128], count[16], served[] = "FN_ROUTES=1",
	                                           route[] = "GET /count";
	char *env[] = {state,  starts, fname,
	               fqueue, served, (char *)extra_env};
	char *sources[1] = {spec}, *args[] = {"--partitions", count},
	     *routes_v[] = {route};
	mesh_err err;

	snprintf(state, sizeof(state), "MESH_STATE=%s/%s", w->dir, name);
	snprintf(starts, sizeof(starts), "FN_STARTS=%s/%s.starts", w->dir,
	         name);
	snprintf(fname, sizeof(fname), "FN_NAME=%s", name);
	snprintf(fqueue, sizeof(fqueue), "FN_QUEUE=%s", queue);
	snprintf(spec, sizeof(spec), "queue:%s", queue);
	snprintf(count, sizeof(count), "%d", partitions);
	mesh_function_init(&f);
	snprintf(f.name, sizeof(f.name), "%s", name);
	f.program = (char *)w->counter;
	f.env = env;
	f.n_env = 4;
	if (routes) {
		f.routes = routes_v;
		f.n_routes = 1;
		f.n_env++;
	} else {
		env[4] = (char *)extra_env;
	}
	f.n_env += extra_env != NULL;
	f.min = min;
	f.max = max;
	f.idle_ms = idle_ms;
	f.target_backlog = w->target_backlog > 0 ? w->target_backlog : 100;
	f.sources = sources;
	f.n_sources = 1;
	if (partitions > 0) {
		f.args = args;
		f.n_args = 2;
		f.partitions = partitions;
	}
	err = mesh_function_put(w->conn, &f, true);
	if (err == MESH_EEXIST) {
		err = mesh_function_put(w->conn, &f, false);
	}
	if (err != MESH_OK) {
		fprintf(stderr, "function %s: %s\n", name, mesh_errdetail());
	}
	return err;
}

mesh_err
fn_define(const struct fn_world *w, const char *name, const char *queue,
          int min, int max, int64_t idle_ms, int partitions,
          const char *extra_env)
{
	return define(w, name, queue, min, max, idle_ms, partitions, extra_env,
	              false);
}

mesh_err
fn_define_served(const struct fn_world *w, const char *name, const char *queue,
                 int min, int max, int64_t idle_ms, const char *extra_env)
{
	return define(w, name, queue, min, max, idle_ms, 0, extra_env, true);
}

json_t *
fn_info(const struct fn_world *w, const char *name, int wait_ms)
{
	char subject[160];
	natsMsg *reply = NULL;
	json_t *j = NULL;

	snprintf(subject, sizeof(subject), MESH_SUPERVISOR_INFO_SUBJECT, name);
	if (natsConnection_RequestString(&reply, mesh_conn_nats(w->conn),
	                                 subject, "", wait_ms) == NATS_OK) {
		j = json_loadb(natsMsg_GetData(reply),
		               (size_t)natsMsg_GetDataLength(reply), 0, NULL);
		natsMsg_Destroy(reply);
	}
	return j;
}
