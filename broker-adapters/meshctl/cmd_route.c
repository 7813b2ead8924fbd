/* cmd_route.c: meshctl route create|delete|list|info: the HTTP routes
 * mesh-gateway answers (mesh/route.h), kept in the bucket MESH_ROUTES. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "mesh/clock.h"
#include "mesh/route.h"

static const struct cli_opt create_opts[] = {
        {"--target", "queue:NAME|topic:NAME|service:NAME",
         "where a request goes (required)"},
        {"--type", "FULL.PROTO.NAME",
         "the body is JSON of this protobuf type (schema registry): "
         "encoded to it for queue: and topic:, checked for service:; "
         "without it the body passes raw"},
        {"--header", "NAME",
         "an HTTP header forwarded (message attribute; Mesh-Header-NAME "
         "on a service request); repeatable, at most 10"},
        {NULL, NULL, NULL},
};

static const struct cli_opt no_opts[] = {{NULL, NULL, NULL}};

#define ROUTE_HELP                                                            \
	"METHOD: GET, POST, PUT, PATCH, DELETE or ANY. PATH: a template, "    \
	"'/' or\nsegments of literals (A-Z a-z 0-9 -._~!$&'()*+,;=:@), "      \
	"parameters {name}\nand, last, a greedy {name+} (the rest of the "    \
	"path)."

const struct cli_cmd route_commands[] = {
        {.name = "create",
         .summary = "Add an HTTP route to mesh-gateway.",
         .usage = "METHOD PATH --target queue:NAME|topic:NAME|service:NAME "
                  "[--type FULL.PROTO.NAME] [--header NAME]...",
         .help = ROUTE_HELP
         "\nStored in the bucket MESH_ROUTES; every mesh-gateway applies "
         "it at once.\nRefused, nothing stored: a bad method, template, "
         "target, header or type\n(exit 2); a route that exists or "
         "answers the same requests as another, a\ntarget queue or topic "
         "that does not exist, a type not in the schema\nregistry "
         "(exit 1).",
         .opts = create_opts,
         .run = cmd_route_create,
         .min_pos = 2,
         .max_pos = 2},
        {.name = "delete",
         .summary = "Remove a route (the gateways stop answering it).",
         .usage = "METHOD PATH",
         .help = ROUTE_HELP,
         .opts = no_opts,
         .run = cmd_route_delete,
         .min_pos = 2,
         .max_pos = 2},
        {.name = "list",
         .summary = "List the routes.",
         .usage = "",
         .help = "A row a route: METHOD PATH TARGET TYPE HEADERS, by path. "
                 "A damaged record\nis counted below the table.",
         .opts = no_opts,
         .run = cmd_route_list},
        {.name = "info",
         .summary = "Show a route.",
         .usage = "METHOD PATH",
         .help = ROUTE_HELP,
         .opts = no_opts,
         .run = cmd_route_info,
         .min_pos = 2,
         .max_pos = 2},
        {NULL},
};

static json_t *
route_json(const struct mesh_route *r)
{
	json_t *h = json_array();
	char key[MESH_ROUTE_KEY_MAX + 1];

	for (size_t i = 0; i < r->n_headers; i++) {
		json_array_append_new(h, json_string(r->headers[i]));
	}
	mesh_route_key(r, key);
	return json_pack("{s:s, s:s, s:s, s:s, s:s?, s:o, s:I, s:I}", "route",
	                 key, "method", r->method, "path", r->path, "target",
	                 r->target, "type", r->type[0] ? r->type : NULL,
	                 "headers", h, "created_ms", (json_int_t)r->created_ms,
	                 "updated_ms", (json_int_t)r->updated_ms);
}

/* The exit code of a failed call: a value at fault is a usage error. */
static int
failed(struct cli *cli, mesh_err err)
{
	cli_fail(cli, err);
	return err == MESH_EINVAL ? CLI_USAGE : CLI_FAIL;
}

int
cmd_route_create(struct cli *cli)
{
	const char *target = cli_opt(cli, "--target");
	const char *type = cli_opt(cli, "--type");
	struct mesh_route r;
	struct mesh_conn *c = NULL;
	const char *h;
	mesh_err err;

	mesh_route_init(&r);
	if (target == NULL) {
		return cli_usage_error(cli, "--target is required "
		                            "(queue:NAME, topic:NAME or "
		                            "service:NAME)");
	}
	if (strlen(cli_pos(cli, 0)) >= sizeof(r.method) ||
	    strlen(cli_pos(cli, 1)) >= sizeof(r.path) ||
	    strlen(target) >= sizeof(r.target) ||
	    (type != NULL && strlen(type) >= sizeof(r.type))) {
		return cli_usage_error(cli,
		                       "'%.64s %.64s': a method, path, target "
		                       "or type too long",
		                       cli_pos(cli, 0), cli_pos(cli, 1));
	}
	snprintf(r.method, sizeof(r.method), "%s", cli_pos(cli, 0));
	snprintf(r.path, sizeof(r.path), "%s", cli_pos(cli, 1));
	snprintf(r.target, sizeof(r.target), "%s", target);
	snprintf(r.type, sizeof(r.type), "%s", type ? type : "");
	while ((h = cli_opt_nth(cli, "--header", r.n_headers)) != NULL) {
		if (r.n_headers == MESH_ROUTE_HEADERS_MAX) {
			return cli_usage_error(cli,
			                       "--header '%s': at most %d "
			                       "headers",
			                       h, MESH_ROUTE_HEADERS_MAX);
		}
		if (strlen(h) > MESH_ROUTE_HEADER_NAME_MAX) {
			return cli_usage_error(cli,
			                       "--header '%.80s': longer than "
			                       "%d",
			                       h, MESH_ROUTE_HEADER_NAME_MAX);
		}
		snprintf(r.headers[r.n_headers], sizeof(r.headers[0]), "%s",
		         h);
		r.n_headers++;
	}
	/* Checked before connecting: a bad value needs no broker. */
	if ((err = mesh_route_check(&r)) != MESH_OK) {
		return failed(cli, err);
	}
	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	err = mesh_route_put(c, &r);
	mesh_conn_close(c);
	if (err != MESH_OK) {
		return failed(cli, err);
	}
	if (cli->json) {
		cli_print_json(route_json(&r));
	} else {
		printf("created route '%s %s' -> %s%s%s\n", r.method, r.path,
		       r.target, r.type[0] ? " as " : "", r.type);
	}
	return CLI_OK;
}

int
cmd_route_delete(struct cli *cli)
{
	struct mesh_conn *c = NULL;
	mesh_err err;

	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	err = mesh_route_delete(c, cli_pos(cli, 0), cli_pos(cli, 1));
	mesh_conn_close(c);
	if (err != MESH_OK) {
		return failed(cli, err);
	}
	if (cli->json) {
		cli_print_json(json_pack("{s:s, s:s, s:b}", "method",
		                         cli_pos(cli, 0), "path",
		                         cli_pos(cli, 1), "deleted", true));
	} else {
		printf("deleted route '%s %s'\n", cli_pos(cli, 0),
		       cli_pos(cli, 1));
	}
	return CLI_OK;
}

int
cmd_route_list(struct cli *cli)
{
	struct mesh_route *rs = NULL;
	struct mesh_conn *c = NULL;
	size_t n = 0, damaged = 0;
	json_t *out;
	mesh_err err;

	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	err = mesh_route_list(c, &rs, &n, &damaged);
	mesh_conn_close(c);
	if (err != MESH_OK) {
		return cli_fail(cli, err);
	}
	out = json_array();
	if (!cli->json) {
		printf("%-7s %-32s %-24s %-24s %s\n", "METHOD", "PATH",
		       "TARGET", "TYPE", "HEADERS");
	}
	for (size_t i = 0; i < n; i++) {
		const struct mesh_route *r = &rs[i];
		if (cli->json) {
			json_array_append_new(out, route_json(r));
			continue;
		}
		printf("%-7s %-32s %-24s %-24s ", r->method, r->path,
		       r->target, r->type[0] ? r->type : "-");
		for (size_t k = 0; k < r->n_headers; k++) {
			printf("%s%s", k ? "," : "", r->headers[k]);
		}
		printf("%s\n", r->n_headers ? "" : "-");
	}
	if (cli->json) {
		cli_print_json(json_pack("{s:o, s:I}", "routes", out,
		                         "damaged", (json_int_t)damaged));
	} else {
		json_decref(out);
		if (damaged > 0) {
			printf("(%zu damaged records left out)\n", damaged);
		}
	}
	free(rs);
	return CLI_OK;
}

int
cmd_route_info(struct cli *cli)
{
	struct mesh_route r;
	struct mesh_conn *c = NULL;
	char when[32];
	mesh_err err;

	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	err = mesh_route_get(c, cli_pos(cli, 0), cli_pos(cli, 1), &r);
	mesh_conn_close(c);
	if (err != MESH_OK) {
		return failed(cli, err);
	}
	if (cli->json) {
		cli_print_json(route_json(&r));
		return CLI_OK;
	}
	printf("Route        %s %s\n", r.method, r.path);
	printf("Target       %s\n", r.target);
	printf("Type         %s\n", r.type[0] ? r.type : "- (raw body)");
	printf("Headers      ");
	for (size_t k = 0; k < r.n_headers; k++) {
		printf("%s%s", k ? ", " : "", r.headers[k]);
	}
	printf("%s\n", r.n_headers ? "" : "-");
	printf("Parameters   %zu\n", r.tmpl.n_params);
	mesh_time_format(r.created_ms / 1000, when);
	printf("Created      %s\n", when);
	return CLI_OK;
}
