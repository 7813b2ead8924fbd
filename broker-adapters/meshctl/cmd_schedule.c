/* cmd_schedule.c: meshctl schedule ...: a client of the scheduler's
 * request API (mesh.scheduler.api.<verb>, answered by one running
 * mesh-scheduler replica), as the AWS CLI is of EventBridge Scheduler:
 * meshctl reads no scheduler file and links no scheduler code. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "message.h"

#define API_PREFIX "mesh.scheduler.api."
#define API_WAIT   10000 /* ms: a create checks queues and topics */

/* Send a request; the reply's JSON into *reply. The scheduler's errors
 * ({"error": {"code", "message"}}) are printed, and give exit 2 when the
 * input was at fault, else 1; no replica answering gives 1, saying so. */
static int
call(struct cli *cli, const char *verb, json_t *req, json_t **reply)
{
	char subject[64];
	const char *code, *msg;
	json_t *j, *e;
	int rc;

	snprintf(subject, sizeof(subject), API_PREFIX "%s", verb);
	if ((rc = cli_request(cli, subject, req, API_WAIT, "mesh-scheduler",
	                      "start one (deploy/up does)", &j)) != CLI_OK) {
		return rc;
	}
	if ((e = json_object_get(j, "error")) != NULL) {
		code = json_string_value(json_object_get(e, "code"));
		msg = json_string_value(json_object_get(e, "message"));
		fprintf(stderr, "meshctl %s: %s\n", cli->cmd_path,
		        msg ? msg : "the scheduler refused");
		/* The input's faults are usage errors, as before. */
		rc = code != NULL && (strcmp(code, "EINVAL") == 0 ||
		                      strcmp(code, "EPARSE") == 0 ||
		                      strcmp(code, "ETOOBIG") == 0)
		             ? CLI_USAGE
		             : CLI_FAIL;
		json_decref(j);
		return rc;
	}
	*reply = j;
	return CLI_OK;
}

static bool
all_digits(const char *v)
{
	if (*v == '\0') {
		return false;
	}
	for (; *v; v++) {
		if (!isdigit((unsigned char)*v)) {
			return false;
		}
	}
	return true;
}

/* The request fields the flags give (those given only). */
static int
fields_from_flags(struct cli *cli, json_t *req)
{
	static const struct {
		const char *flag, *field;
	} strings[] = {{"--expression", "expression"},
	               {"--tz", "tz"},
	               {"--target", "target"},
	               {"--type", "type"},
	               {"--dlq", "dlq"},
	               {"--missed", "missed"},
	               {"--start", "start"},
	               {"--end", "end"}};
	struct payload p;
	const char *v;
	long long n;
	int rc;

	for (size_t i = 0; i < sizeof(strings) / sizeof(*strings); i++) {
		if ((v = cli_opt(cli, strings[i].flag)) != NULL) {
			json_object_set_new(req, strings[i].field,
			                    json_string(v));
		}
	}
	if ((rc = payload_from_flags(cli, false, &p)) == CLI_OK &&
	    p.text != NULL) {
		json_object_set_new(req, "body", json_string(p.text));
		json_object_set_new(req, "payload",
		                    json_string(p.data ? "json" : "text"));
	}
	payload_fini(&p);
	if (rc != CLI_OK) {
		return rc;
	}
	if (cli_opt_nth(cli, "--attr", 0) != NULL) {
		json_t *attrs = json_array();
		for (size_t i = 0; (v = cli_opt_nth(cli, "--attr", i)); i++) {
			json_array_append_new(attrs, json_string(v));
		}
		json_object_set_new(req, "attrs", attrs);
	}
	/* --window counts minutes, the API seconds or a duration. */
	if ((v = cli_opt(cli, "--window")) != NULL) {
		char buf[64];
		snprintf(buf, sizeof(buf), "%s%s", v,
		         all_digits(v) ? "m" : "");
		json_object_set_new(req, "window", json_string(buf));
	}
	if ((v = cli_opt(cli, "--max-age")) != NULL) {
		json_object_set_new(req, "max_age",
		                    all_digits(v) ? json_integer(atoll(v))
		                                  : json_string(v));
	}
	if (cli_opt(cli, "--retry-max") != NULL) {
		if (!cli_opt_long(cli, "--retry-max", 0, 185, 0, &n)) {
			return CLI_USAGE;
		}
		json_object_set_new(req, "retry_max", json_integer(n));
	}
	if (cli_flag(cli, "--delete-after")) {
		json_object_set_new(req, "delete_after", json_true());
	}
	return CLI_OK;
}

/* A verb that names a schedule and answers {"ok", "name"}. */
static int
write_verb(struct cli *cli, const char *verb, const char *done, json_t *req)
{
	json_t *reply = NULL;
	int rc;

	json_object_set_new(req, "name", json_string(cli_pos(cli, 0)));
	if ((rc = call(cli, verb, req, &reply)) != CLI_OK) {
		return rc;
	}
	if (cli->json) {
		cli_print_json(reply);
	} else {
		printf("%s schedule %s\n", done, cli_pos(cli, 0));
		json_decref(reply);
	}
	return CLI_OK;
}

int
cmd_schedule_create(struct cli *cli)
{
	json_t *req = json_object();
	int rc;

	if (cli_opt(cli, "--expression") == NULL ||
	    cli_opt(cli, "--target") == NULL) {
		json_decref(req);
		return cli_usage_error(cli, "--expression EXPR and --target "
		                            "queue:NAME are required");
	}
	if ((rc = fields_from_flags(cli, req)) != CLI_OK) {
		json_decref(req);
		return rc;
	}
	return write_verb(cli, "create", "created", req);
}

int
cmd_schedule_update(struct cli *cli)
{
	json_t *req = json_object();
	int rc;

	if ((rc = fields_from_flags(cli, req)) != CLI_OK) {
		json_decref(req);
		return rc;
	}
	return write_verb(cli, "update", "updated", req);
}

int
cmd_schedule_pause(struct cli *cli)
{
	return write_verb(cli, "pause", "paused", json_object());
}

int
cmd_schedule_resume(struct cli *cli)
{
	return write_verb(cli, "resume", "resumed", json_object());
}

int
cmd_schedule_delete(struct cli *cli)
{
	return write_verb(cli, "delete", "deleted", json_object());
}

/* Print an answer's members, arrays one value a line. */
static void
print_fields(json_t *j)
{
	const char *key;
	json_t *v;

	json_object_foreach(j, key, v)
	{
		if (json_is_array(v)) {
			size_t i;
			json_t *x;
			json_array_foreach(v, i, x)
			{
				printf("%-28s %s\n", i ? "" : key,
				       json_string_value(x));
			}
		} else if (json_is_string(v)) {
			printf("%-28s %s\n", key, json_string_value(v));
		}
	}
}

int
cmd_schedule_info(struct cli *cli)
{
	json_t *req = json_pack("{s:s}", "name", cli_pos(cli, 0)), *j = NULL;
	int rc = call(cli, "info", req, &j);

	if (rc != CLI_OK) {
		return rc;
	}
	if (cli->json) {
		cli_print_json(j);
	} else {
		print_fields(j);
		json_decref(j);
	}
	return CLI_OK;
}

int
cmd_schedule_list(struct cli *cli)
{
	json_t *j = NULL, *names;
	int rc = call(cli, "list", json_object(), &j);

	if (rc != CLI_OK) {
		return rc;
	}
	names = json_object_get(j, "schedules");
	if (cli->json) {
		cli_print_json(json_pack("{s:O}", "Schedules", names));
	} else {
		size_t i;
		json_t *v;
		json_array_foreach(names, i, v)
		{
			printf("%s\n", json_string_value(v));
		}
	}
	json_decref(j);
	return CLI_OK;
}

int
cmd_schedule_next(struct cli *cli)
{
	json_t *req = json_pack("{s:s}", "expression", cli_pos(cli, 0)), *j;
	json_t *list;
	long long count;
	size_t i;
	int rc;

	if (!cli_opt_long(cli, "--count", 1, 10000, 5, &count)) {
		json_decref(req);
		return CLI_USAGE;
	}
	json_object_set_new(req, "count", json_integer(count));
	if (cli_opt(cli, "--tz") != NULL) {
		json_object_set_new(req, "tz",
		                    json_string(cli_opt(cli, "--tz")));
	}
	if (cli_opt(cli, "--from") != NULL) {
		json_object_set_new(req, "from",
		                    json_string(cli_opt(cli, "--from")));
	}
	if ((rc = call(cli, "next", req, &j)) != CLI_OK) {
		return rc;
	}
	if (cli->json) {
		cli_print_json(j);
		return CLI_OK;
	}
	list = json_object_get(j, "NextFirings");
	json_array_foreach(list, i, req)
	{
		printf("%s\n", json_string_value(req));
	}
	json_decref(j);
	return CLI_OK;
}
