/* cmd_function.c: meshctl function create|update|delete|list|info: the
 * definitions of services run on demand (mesh/function.h), and their
 * status as the supervisors running them answer.
 *
 * create and update learn what the program consumes by running it with
 * --prepare (the runtime makes its subscriptions and dead-letter queue
 * and prints its sources and request routes): a definition is stored only
 * for a program that is an evmesh service whose sources exist. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "mesh/clock.h"
#include "mesh/function.h"
#include "program.h"

#define PROBE_MS     30000
#define INFO_WAIT_MS 2000

/* Unix ms as ISO-8601 UTC. */
static void
iso_ms(int64_t ms, char out[32])
{
	mesh_time_format(ms / 1000, out);
}

/* The values of a repeatable option, copied; *given says whether there
 * was one. */
static bool
strv_from(const struct cli *cli, const char *opt, char ***out, size_t *n,
          bool *given)
{
	size_t count = 0;
	char **v;

	while (cli_opt_nth(cli, opt, count) != NULL) {
		count++;
	}
	*given = count > 0;
	if (count == 0) {
		return true;
	}
	if ((v = calloc(count, sizeof(*v))) == NULL) {
		return false;
	}
	for (size_t i = 0; i < count; i++) {
		if ((v[i] = strdup(cli_opt_nth(cli, opt, i))) == NULL) {
			for (size_t k = 0; k < i; k++) {
				free(v[k]);
			}
			free(v);
			return false;
		}
	}
	*out = v;
	*n = count;
	return true;
}

static void
strv_free(char **v, size_t n)
{
	for (size_t i = 0; v != NULL && i < n; i++) {
		free(v[i]);
	}
	free(v);
}

/* Apply the options given to f (its current values the defaults). */
static int
from_flags(struct cli *cli, struct mesh_function *f)
{
	const char *program = cli_opt(cli, "--program");
	long long min, max, idle, backlog;
	char **v = NULL;
	size_t n = 0;
	bool given;

	if (!cli_opt_long(cli, "--min", 0, MESH_FUNCTION_INSTANCES_MAX, f->min,
	                  &min) ||
	    !cli_opt_long(cli, "--max", 1, MESH_FUNCTION_INSTANCES_MAX, f->max,
	                  &max) ||
	    !cli_opt_long(cli, "--idle", 1, 86400, f->idle_ms / 1000, &idle) ||
	    !cli_opt_long(cli, "--target-backlog", 1, 1000000,
	                  f->target_backlog, &backlog)) {
		return CLI_USAGE;
	}
	f->min = (int)min;
	f->max = (int)max;
	if (cli_opt(cli, "--idle") != NULL) {
		f->idle_ms = idle * 1000;
	}
	f->target_backlog = backlog;
	if (program != NULL) {
		char cwd[PATH_MAX], *abs = NULL;
		if (program[0] != '/' && getcwd(cwd, sizeof(cwd)) != NULL) {
			size_t len = strlen(cwd) + strlen(program) + 2;
			if ((abs = malloc(len)) != NULL) {
				snprintf(abs, len, "%s/%s", cwd, program);
			}
		} else {
			abs = strdup(program);
		}
		if (abs == NULL) {
			return cli_fail(cli,
			                mesh_err_set(MESH_ENOMEM, "program"));
		}
		free(f->program);
		f->program = abs;
	}
	if (!strv_from(cli, "--arg", &v, &n, &given)) {
		return cli_fail(cli, mesh_err_set(MESH_ENOMEM, "--arg"));
	}
	if (given) {
		strv_free(f->args, f->n_args);
		f->args = v;
		f->n_args = n;
	}
	if (!strv_from(cli, "--env", &v, &n, &given)) {
		return cli_fail(cli, mesh_err_set(MESH_ENOMEM, "--env"));
	}
	if (given) {
		strv_free(f->env, f->n_env);
		f->env = v;
		f->n_env = n;
	}
	return CLI_OK;
}

/* The definition checked before its program runs: its sources are the
 * program's to say, so a stand-in takes their place meanwhile. */
static int
precheck(struct cli *cli, struct mesh_function *f)
{
	char stand_in[] = "queue:unprobed", *sources[] = {stand_in};
	char **was = f->sources;
	size_t n = f->n_sources;
	mesh_err err;

	f->sources = sources;
	f->n_sources = 1;
	err = mesh_function_check(f);
	f->sources = was;
	f->n_sources = n;
	if (err != MESH_OK) {
		cli_fail(cli, err);
		return err == MESH_EINVAL ? CLI_USAGE : CLI_FAIL;
	}
	return CLI_OK;
}

/* The route keys of --prepare's "routes" ([{"route", "kind", "type"}])
 * into f (none for a partitioned service: it serves none). */
static mesh_err
routes_take(json_t *routes, struct mesh_function *f)
{
	size_t i, n = json_array_size(routes);
	char **keys;
	json_t *v;

	strv_free(f->routes, f->n_routes);
	f->routes = NULL;
	f->n_routes = 0;
	if (n == 0 || f->partitions > 0) {
		return MESH_OK;
	}
	if ((keys = calloc(n, sizeof(*keys))) == NULL) {
		return mesh_err_set(MESH_ENOMEM, "routes");
	}
	json_array_foreach(routes, i, v)
	{
		const char *key =
		        json_string_value(json_object_get(v, "route"));
		if (key != NULL && (keys[f->n_routes] = strdup(key)) == NULL) {
			strv_free(keys, f->n_routes);
			return mesh_err_set(MESH_ENOMEM, "routes");
		}
		f->n_routes += key != NULL;
	}
	f->routes = keys;
	return MESH_OK;
}

/* Learn f's sources, partitions and routes from its program. Prints why
 * not. */
static int
probe(struct cli *cli, struct mesh_function *f)
{
	char *text = NULL, **sources = NULL;
	json_t *j, *src, *v, *routes;
	int status = 0, rc = CLI_FAIL;
	const char *error;
	mesh_err err;
	size_t i, n;

	if ((err = program_run(cli, f->program, f->args, f->n_args, f->env,
	                       f->n_env, "--prepare", PROBE_MS, &text,
	                       &status)) != MESH_OK) {
		return cli_fail(cli, err);
	}
	j = json_loads(text, JSON_DISABLE_EOF_CHECK, NULL);
	error = json_string_value(json_object_get(j, "error"));
	src = json_object_get(j, "sources");
	routes = json_object_get(j, "routes");
	if (status == -1) {
		fprintf(stderr,
		        "%s %s: function '%s': %s --prepare did not end "
		        "within "
		        "%d s (killed)\n",
		        cli->prog, cli->cmd_path, f->name, f->program,
		        PROBE_MS / 1000);
	} else if (status != 0 && error != NULL) {
		const char *code =
		        json_string_value(json_object_get(j, "code"));
		bool unknown =
		        code != NULL && strcmp(code, "MESH_ENOTFOUND") == 0;
		fprintf(stderr,
		        "%s %s: function '%s': %s --prepare failed: %s%s\n",
		        cli->prog, cli->cmd_path, f->name, f->program, error,
		        unknown ? " (an unknown source)" : "");
	} else if (status != 0 || !json_is_array(src) ||
	           (json_array_size(src) == 0 &&
	            json_array_size(routes) == 0) ||
	           json_array_size(src) > MESH_FUNCTION_SOURCES_MAX ||
	           (routes != NULL && !json_is_array(routes)) ||
	           !json_is_integer(json_object_get(j, "partitions"))) {
		fprintf(stderr,
		        "%s %s: function '%s': %s is not an evmesh service: "
		        "its --prepare %s (exit %d), not its sources or "
		        "routes as JSON\n",
		        cli->prog, cli->cmd_path, f->name, f->program,
		        text[0] == '\0' ? "printed nothing"
		                        : "printed other "
		                          "output",
		        status);
	} else if (json_array_size(src) > 0 &&
	           (sources = calloc(json_array_size(src),
	                             sizeof(*sources))) == NULL) {
		cli_fail(cli, mesh_err_set(MESH_ENOMEM, "sources"));
	} else {
		n = 0;
		json_array_foreach(src, i, v)
		{
			if (json_is_string(v) &&
			    (sources[n] = strdup(json_string_value(v))) !=
			            NULL) {
				n++;
			}
		}
		strv_free(f->sources, f->n_sources);
		f->sources = sources;
		f->n_sources = n;
		f->partitions = (int)json_integer_value(
		        json_object_get(j, "partitions"));
		if ((err = routes_take(routes, f)) != MESH_OK) {
			cli_fail(cli, err);
		} else {
			rc = CLI_OK;
		}
	}
	json_decref(j);
	free(text);
	return rc;
}

/* The definition as JSON (its record, with its revision and slot). */
static json_t *
definition_json(const struct mesh_function *f)
{
	char *text = NULL;
	json_t *j = NULL;

	if (f->program == NULL) {
		return json_pack("{s:s, s:b}", "name", f->name, "damaged",
		                 true);
	}
	if (mesh_function_encode(f, &text) == MESH_OK) {
		j = json_loads(text, 0, NULL);
	}
	free(text);
	if (j != NULL) {
		json_object_set_new(j, "revision",
		                    json_integer((json_int_t)f->revision));
		json_object_set_new(j, "slot",
		                    json_integer(mesh_function_slot(f->name)));
	}
	return j;
}

static void
print_stored(const char *verb, const struct mesh_function *f)
{
	printf("%s function '%s': %zu source%s", verb, f->name, f->n_sources,
	       f->n_sources == 1 ? "" : "s");
	for (size_t i = 0; i < f->n_sources; i++) {
		printf("%s%s", i == 0 ? " (" : ", ", f->sources[i]);
	}
	printf("%s", f->n_sources > 0 ? ")" : "");
	if (f->partitions > 0) {
		printf(", %d partitions", f->partitions);
	}
	if (f->n_routes > 0) {
		printf(", %zu request route%s (requests wake it)", f->n_routes,
		       f->n_routes == 1 ? "" : "s");
	}
	putchar('\n');
}

/* create and update: the flags over f, checked, probed, stored. */
static int
define(struct cli *cli, struct mesh_function *f, bool create)
{
	struct mesh_conn *c = NULL;
	mesh_err err;
	int rc;

	if ((rc = from_flags(cli, f)) != CLI_OK ||
	    (rc = precheck(cli, f)) != CLI_OK ||
	    (rc = probe(cli, f)) != CLI_OK) {
		return rc;
	}
	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	err = mesh_function_put(c, f, create);
	mesh_conn_close(c);
	if (err != MESH_OK) {
		cli_fail(cli, err);
		return err == MESH_EINVAL ? CLI_USAGE : CLI_FAIL;
	}
	if (cli->json) {
		cli_print_json(definition_json(f));
	} else {
		print_stored(create ? "created" : "updated", f);
	}
	return CLI_OK;
}

int
cmd_function_create(struct cli *cli)
{
	struct mesh_function f;
	int rc;

	mesh_function_init(&f);
	if (cli_opt(cli, "--program") == NULL) {
		return cli_usage_error(cli, "--program PATH is required");
	}
	if (strlen(cli_pos(cli, 0)) > MESH_FUNCTION_NAME_MAX) {
		return cli_usage_error(cli,
		                       "function name '%s': 1-%d of A-Z "
		                       "a-z 0-9 _ -",
		                       cli_pos(cli, 0),
		                       MESH_FUNCTION_NAME_MAX);
	}
	snprintf(f.name, sizeof(f.name), "%s", cli_pos(cli, 0));
	rc = define(cli, &f, true);
	mesh_function_fini(&f);
	return rc;
}

/* The stored definition of NAME into *f; prints why not. */
static int
fetch(struct cli *cli, struct mesh_conn *c, struct mesh_function *f)
{
	mesh_err err = mesh_function_get(c, cli_pos(cli, 0), f);

	if (err != MESH_OK) {
		cli_fail(cli, err);
		return err == MESH_EINVAL ? CLI_USAGE : CLI_FAIL;
	}
	return CLI_OK;
}

int
cmd_function_update(struct cli *cli)
{
	struct mesh_function f;
	struct mesh_conn *c = NULL;
	int rc;

	mesh_function_init(&f);
	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	rc = fetch(cli, c, &f);
	mesh_conn_close(c);
	if (rc == CLI_OK) {
		rc = define(cli, &f, false);
	}
	mesh_function_fini(&f);
	return rc;
}

int
cmd_function_delete(struct cli *cli)
{
	struct mesh_conn *c = NULL;
	mesh_err err;

	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	err = mesh_function_delete(c, cli_pos(cli, 0));
	mesh_conn_close(c);
	if (err != MESH_OK) {
		cli_fail(cli, err);
		return err == MESH_EINVAL ? CLI_USAGE : CLI_FAIL;
	}
	if (cli->json) {
		cli_print_json(json_pack("{s:s, s:b}", "name", cli_pos(cli, 0),
		                         "deleted", true));
	} else {
		printf("deleted function '%s'\n", cli_pos(cli, 0));
	}
	return CLI_OK;
}

/* The running instances of `name` the supervisors reported, or -1 when
 * none reported it. */
static json_int_t
instances_of(json_t *replies, const char *name)
{
	json_t *r, *st;
	size_t i, k;

	json_array_foreach(replies, i, r)
	{
		json_array_foreach(json_object_get(r, "functions"), k, st)
		{
			const char *fn = json_string_value(
			        json_object_get(st, "function"));
			if (fn != NULL && strcmp(fn, name) == 0) {
				return (json_int_t)json_array_size(
				        json_object_get(st, "instances"));
			}
		}
	}
	return -1;
}

int
cmd_function_list(struct cli *cli)
{
	struct mesh_function *fs = NULL;
	struct mesh_conn *c = NULL;
	json_t *replies = NULL, *out;
	long long wait;
	size_t n = 0;
	mesh_err err;
	int rc;

	if (!cli_opt_long(cli, "--wait", 10, 10000, 300, &wait)) {
		return CLI_USAGE;
	}
	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	if ((err = mesh_function_list(c, &fs, &n)) != MESH_OK) {
		mesh_conn_close(c);
		return cli_fail(cli, err);
	}
	rc = n > 0 ? replies_gather(cli, c, MESH_SUPERVISOR_LIST_SUBJECT,
	                            "supervisor", NULL,
	                            "a supervisor's functions", wait, &replies)
	           : CLI_OK;
	mesh_conn_close(c);
	if (rc != CLI_OK) {
		mesh_function_list_free(fs, n);
		return rc;
	}
	out = json_array();
	if (!cli->json) {
		printf("%-24s %4s %4s %9s  %s\n", "NAME", "MIN", "MAX",
		       "INSTANCES", "SOURCES");
	}
	for (size_t i = 0; i < n; i++) {
		const struct mesh_function *f = &fs[i];
		json_int_t running = instances_of(replies, f->name);
		char inst[24] = "-";
		if (cli->json) {
			json_t *d = definition_json(f);
			json_object_set_new(d, "instances",
			                    running < 0
			                            ? json_null()
			                            : json_integer(running));
			json_array_append_new(out, d);
			continue;
		}
		if (f->program == NULL) {
			printf("%-24s %4s %4s %9s  %s\n", f->name, "-", "-",
			       "-", "(damaged record)");
			continue;
		}
		if (running >= 0) {
			snprintf(inst, sizeof(inst), "%lld",
			         (long long)running);
		}
		printf("%-24s %4d %4d %9s  ", f->name, f->min, f->max, inst);
		for (size_t k = 0; k < f->n_sources; k++) {
			printf("%s%s", k == 0 ? "" : ",", f->sources[k]);
		}
		putchar('\n');
	}
	if (cli->json) {
		cli_print_json(json_pack("{s:o}", "functions", out));
	} else {
		json_decref(out);
	}
	json_decref(replies);
	mesh_function_list_free(fs, n);
	return CLI_OK;
}

/* The status a supervisor answers for name: *status (NULL when none
 * answered; *why then says why). */
static mesh_err
status_ask(struct mesh_conn *c, const char *name, json_t **status,
           const char **why)
{
	char subject[MESH_FUNCTION_NAME_MAX + 64];
	natsMsg *m = NULL;
	natsStatus st;

	*status = NULL;
	snprintf(subject, sizeof(subject), MESH_SUPERVISOR_INFO_SUBJECT, name);
	st = natsConnection_Request(&m, mesh_conn_nats(c), subject, "{}", 2,
	                            INFO_WAIT_MS);
	if (st == NATS_NO_RESPONDERS || st == NATS_TIMEOUT) {
		*why = "no supervisor runs it (none answered)";
		return MESH_OK;
	}
	if (st != NATS_OK) {
		return mesh_err_nats(st, 0, "%s", subject);
	}
	*status = json_loadb(natsMsg_GetData(m),
	                     (size_t)natsMsg_GetDataLength(m), 0, NULL);
	natsMsg_Destroy(m);
	if (!json_is_object(*status)) {
		json_decref(*status);
		*status = NULL;
		*why = "its supervisor's answer is not a JSON object";
	}
	return MESH_OK;
}

static void
print_status(json_t *s)
{
	json_t *inst, *d = json_object_get(s, "decision");
	long long next = (long long)json_integer_value(
	        json_object_get(s, "next_start_ms"));
	char when[32];
	size_t i;

	printf("Supervisor   %s\n",
	       json_string_value(json_object_get(s, "supervisor")));
	printf("Running      %zu instance%s\n",
	       json_array_size(json_object_get(s, "instances")),
	       json_array_size(json_object_get(s, "instances")) == 1 ? ""
	                                                             : "s");
	json_array_foreach(json_object_get(s, "instances"), i, inst)
	{
		iso_ms(json_integer_value(json_object_get(inst, "started_ms")),
		       when);
		printf("  pid %-8lld %-9s since %s\n",
		       (long long)json_integer_value(
		               json_object_get(inst, "pid")),
		       json_string_value(json_object_get(inst, "state")),
		       when);
	}
	printf("Backlog      %lld\n",
	       (long long)json_integer_value(json_object_get(s, "backlog")));
	printf("Cold starts  %lld, exits %lld%s\n",
	       (long long)json_integer_value(
	               json_object_get(s, "cold_starts")),
	       (long long)json_integer_value(json_object_get(s, "exits")),
	       json_is_true(json_object_get(s, "crash_loop")) ? " (crash loop)"
	                                                      : "");
	if (json_integer_value(json_object_get(s, "requests_held")) > 0 ||
	    json_integer_value(json_object_get(s, "requests_refused")) > 0) {
		printf("Requests     %lld held for an instance, %lld "
		       "refused (503/504)\n",
		       (long long)json_integer_value(
		               json_object_get(s, "requests_held")),
		       (long long)json_integer_value(
		               json_object_get(s, "requests_refused")));
	}
	if (next > 0) {
		iso_ms(next, when);
		printf("Next start   %s\n", when);
	}
	if (json_is_object(d)) {
		iso_ms(json_integer_value(json_object_get(d, "at_ms")), when);
		printf("Decision     %s: %lld -> %lld: %s\n", when,
		       (long long)json_integer_value(
		               json_object_get(d, "from")),
		       (long long)json_integer_value(json_object_get(d, "to")),
		       json_string_value(json_object_get(d, "why")));
	}
}

static void
print_definition(const struct mesh_function *f)
{
	char when[32];

	printf("Function     %s\n", f->name);
	printf("Program      %s", f->program);
	for (size_t i = 0; i < f->n_args; i++) {
		printf(" %s", f->args[i]);
	}
	putchar('\n');
	for (size_t i = 0; i < f->n_env; i++) {
		printf("%-12s %s\n", i == 0 ? "Environment" : "", f->env[i]);
	}
	printf("Instances    %d-%d, one more per %" PRId64
	       " waiting events; idle after %" PRId64 " s\n",
	       f->min, f->max, f->target_backlog, f->idle_ms / 1000);
	for (size_t i = 0; i < f->n_sources; i++) {
		printf("%-12s %s\n", i == 0 ? "Sources" : "", f->sources[i]);
	}
	for (size_t i = 0; i < f->n_routes; i++) {
		printf("%-12s %s\n", i == 0 ? "Routes" : "", f->routes[i]);
	}
	if (f->partitions > 0) {
		printf("Partitions   %d\n", f->partitions);
	}
	iso_ms(f->created_ms, when);
	printf("Created      %s\n", when);
	iso_ms(f->updated_ms, when);
	printf("Updated      %s (revision %" PRIu64 ", slot %d)\n", when,
	       f->revision, mesh_function_slot(f->name));
}

int
cmd_function_info(struct cli *cli)
{
	struct mesh_function f;
	struct mesh_conn *c = NULL;
	const char *why = NULL;
	json_t *status = NULL;
	mesh_err err;
	int rc;

	mesh_function_init(&f);
	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	if ((rc = fetch(cli, c, &f)) != CLI_OK) {
		mesh_conn_close(c);
		return rc;
	}
	err = status_ask(c, f.name, &status, &why);
	mesh_conn_close(c);
	if (err != MESH_OK) {
		mesh_function_fini(&f);
		return cli_fail(cli, err);
	}
	if (cli->json) {
		json_t *j = json_pack("{s:o, s:o}", "function",
		                      definition_json(&f), "status",
		                      status != NULL ? json_incref(status)
		                                     : json_null());
		if (why != NULL) {
			json_object_set_new(j, "status_note",
			                    json_string(why));
		}
		cli_print_json(j);
	} else {
		print_definition(&f);
		if (status != NULL) {
			print_status(status);
		} else {
			printf("Status       %s\n", why);
		}
	}
	json_decref(status);
	mesh_function_fini(&f);
	return CLI_OK;
}
