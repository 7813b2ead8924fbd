/* cmd_filter.c: meshctl filter test: what an SNS filter policy decides for
 * a message, offline. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"

/* Parse an option's JSON value; prints the fault and returns NULL. */
static json_t *
json_opt(const struct cli *cli, const char *name, const char *text)
{
	json_error_t jerr;
	json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL,
	                       &jerr);

	if (j == NULL) {
		cli_usage_error(cli, "%s: not valid JSON: %s (column %d)",
		                name, jerr.text, jerr.column);
	}
	return j;
}

int
cmd_filter_test(struct cli *cli)
{
	const char *policy = cli_opt(cli, "--policy");
	const char *scope_text = cli_opt(cli, "--scope");
	const char *attrs_text = cli_opt(cli, "--attributes");
	const char *body_text = cli_opt(cli, "--body");
	mesh_filter_scope scope = MESH_FILTER_SCOPE_ATTRIBUTES;
	struct mesh_filter *f = NULL;
	json_t *input = NULL;
	bool match = false;
	int rc = CLI_USAGE;

	if (policy == NULL) {
		return cli_usage_error(cli, "--policy is required");
	}
	if ((attrs_text == NULL) == (body_text == NULL)) {
		return cli_usage_error(cli, "give one of --attributes and "
		                            "--body");
	}
	if (scope_text != NULL &&
	    mesh_filter_scope_parse(scope_text, &scope) != MESH_OK) {
		return cli_usage_error(cli, "--scope: %s", mesh_errdetail());
	}
	if (mesh_filter_compile(policy, strlen(policy), scope, &f) !=
	    MESH_OK) {
		fprintf(stderr, "%s %s: --policy: %s\n", cli->prog,
		        cli->cmd_path, mesh_errdetail());
		return CLI_USAGE;
	}
	if (attrs_text != NULL) {
		if ((input = json_opt(cli, "--attributes", attrs_text)) ==
		    NULL) {
			goto out;
		}
		if (scope == MESH_FILTER_SCOPE_BODY) {
			/* The body scope never looks at attributes. */
			match = false;
		} else if (mesh_filter_match_sns_attrs(f, input, &match) !=
		           MESH_OK) {
			cli_usage_error(cli, "--attributes: %s",
			                mesh_errdetail());
			goto out;
		}
	} else {
		if ((input = json_opt(cli, "--body", body_text)) == NULL) {
			goto out;
		}
		if (scope == MESH_FILTER_SCOPE_BODY) {
			match = mesh_filter_match_json(f, input);
		} else {
			/* A bare body carries no message attributes. */
			json_t *none = json_object();
			if (none == NULL ||
			    mesh_filter_match_sns_attrs(f, none, &match) !=
			            MESH_OK) {
				match = false;
			}
			json_decref(none);
		}
	}
	if (cli->json) {
		cli_print_json(json_pack("{s:b}", "Match", match));
	} else {
		printf("%s\n", match ? "match" : "no match");
	}
	rc = CLI_OK;
out:
	json_decref(input);
	mesh_filter_free(f);
	return rc;
}
