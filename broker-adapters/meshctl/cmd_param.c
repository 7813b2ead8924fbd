/* cmd_param.c: meshctl param put|get|list|history|delete: parameters and
 * secrets (mesh/param.h), as the AWS CLI's ssm put-parameter,
 * get-parameter, get-parameters-by-path, get-parameter-history and
 * delete-parameter.
 *
 * A SecureString is written and read with an identity (--as NAME, its
 * seed --seed FILE): meshctl never prints a secure value unless asked
 * (--with-decryption) and never stores one in clear. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cli.h"
#include "commands.h"
#include "mesh/clock.h"
#include "mesh/identity.h"
#include "mesh/param.h"

/* Exit code of a failed call: a refused value is a usage error. */
static int
fail(struct cli *cli, mesh_err err)
{
	cli_fail(cli, err);
	return err == MESH_EINVAL ? CLI_USAGE : CLI_FAIL;
}

/* The identity --as NAME (or $MESH_IDENTITY_NAME) with its seed --seed
 * FILE (or $MESH_IDENTITY, else var/auth/NAME.nk); *id NULL when none is
 * named and none is required. */
static int
identity_of(struct cli *cli, bool required, const char *why,
            struct mesh_identity **id)
{
	const char *name = cli_opt(cli, "--as"),
	           *seed = cli_opt(cli, "--seed");
	char path[256];
	mesh_err err;

	*id = NULL;
	if (name == NULL) {
		name = getenv("MESH_IDENTITY_NAME");
	}
	if (seed == NULL) {
		seed = getenv("MESH_IDENTITY");
	}
	if (name == NULL || name[0] == '\0') {
		if (seed != NULL && cli_opt(cli, "--seed") != NULL) {
			return cli_usage_error(cli, "--seed needs --as NAME "
			                            "(whose seed it is)");
		}
		return required ? cli_usage_error(cli,
		                                  "%s needs an identity: --as "
		                                  "NAME [--seed FILE]",
		                                  why)
		                : CLI_OK;
	}
	if (seed == NULL || seed[0] == '\0') {
		snprintf(path, sizeof(path), "var/auth/%.64s.nk", name);
		seed = path;
	}
	if ((err = mesh_identity_load(name, seed, id)) != MESH_OK) {
		return fail(cli, err);
	}
	return CLI_OK;
}

/* All of standard input (at most the largest value and a newline), one
 * trailing newline dropped. */
static int
value_from_stdin(struct cli *cli, char *buf, size_t size)
{
	size_t n = fread(buf, 1, size - 1, stdin);

	if (ferror(stdin)) {
		return cli_fail(cli, mesh_err_errno(errno, "standard input"));
	}
	if (n == size - 1 && fgetc(stdin) != EOF) {
		return cli_usage_error(cli,
		                       "the value on standard input is over "
		                       "%d bytes",
		                       MESH_PARAM_VALUE_MAX);
	}
	if (n > 0 && buf[n - 1] == '\n') {
		n--;
	}
	if (n > 0 && buf[n - 1] == '\r') {
		n--;
	}
	buf[n] = '\0';
	if (strlen(buf) != n) {
		return cli_usage_error(cli,
		                       "the value on standard input holds "
		                       "a NUL byte");
	}
	return CLI_OK;
}

/* --readers A,B into up to MESH_PARAM_READERS_MAX names in buf. */
static int
readers_of(struct cli *cli, char *buf, size_t size, const char **out,
           size_t *n)
{
	const char *spec = cli_opt(cli, "--readers");
	char *save = NULL, *tok;

	*n = 0;
	if (spec == NULL) {
		return CLI_OK;
	}
	snprintf(buf, size, "%s", spec);
	for (tok = strtok_r(buf, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		if (*n == MESH_PARAM_READERS_MAX) {
			return cli_usage_error(
			        cli, "--readers '%s': at most %d", spec,
			        MESH_PARAM_READERS_MAX - 1);
		}
		out[(*n)++] = tok;
	}
	if (*n == 0) {
		return cli_usage_error(cli, "--readers '%s': no name", spec);
	}
	return CLI_OK;
}

int
cmd_param_put(struct cli *cli)
{
	static char value[MESH_PARAM_VALUE_MAX + 2];
	char readers_buf[4096];
	const char *readers[MESH_PARAM_READERS_MAX];
	struct mesh_param_put_opts o;
	struct mesh_identity *id = NULL;
	struct mesh_conn *c = NULL;
	const char *type = cli_opt(cli, "--type");
	bool from_stdin = cli_flag(cli, "--stdin");
	int64_t version = 0;
	mesh_err err;
	int rc;

	mesh_param_put_opts_init(&o);
	o.name = cli_pos(cli, 0);
	o.overwrite = cli_flag(cli, "--overwrite");
	o.description = cli_opt(cli, "--description");
	if (type != NULL &&
	    (err = mesh_param_type_parse(type, &o.type)) != MESH_OK) {
		return cli_usage_error(cli, "--type %s", mesh_errdetail());
	}
	if ((cli_npos(cli) == 2) == from_stdin) {
		return cli_usage_error(cli, "give the value as VALUE or on "
		                            "standard input with --stdin "
		                            "(one of them)");
	}
	if ((rc = readers_of(cli, readers_buf, sizeof(readers_buf), readers,
	                     &o.n_readers)) != CLI_OK) {
		return rc;
	}
	o.readers = readers;
	if (from_stdin) {
		if ((rc = value_from_stdin(cli, value, sizeof(value))) !=
		    CLI_OK) {
			return rc;
		}
		o.value = value;
	} else {
		o.value = cli_pos(cli, 1);
	}
	if ((rc = identity_of(cli, o.type == MESH_PARAM_SECURE_STRING,
	                      "a SecureString", &id)) != CLI_OK) {
		goto out;
	}
	if (cli_connect(cli, &c) != MESH_OK) {
		rc = CLI_FAIL;
		goto out;
	}
	err = mesh_param_put(c, &o, id, &version);
	mesh_conn_close(c);
	if (err != MESH_OK) {
		rc = fail(cli, err);
		goto out;
	}
	if (cli->json) {
		cli_print_json(json_pack("{s:I, s:s}", "Version",
		                         (json_int_t)version, "Tier",
		                         "Standard"));
	} else {
		printf("stored parameter '%s' (%s) version %" PRId64 "\n",
		       o.name, mesh_param_type_name(o.type), version);
	}
out:
	sodium_memzero(value, sizeof(value));
	mesh_identity_free(id);
	return rc;
}

/* What a value shows as: itself, or "(secure; N readers)" sealed. */
static const char *
shown(const struct mesh_param *p, char *buf, size_t size)
{
	if (p->value != NULL) {
		return p->value;
	}
	snprintf(buf, size, "(secure; %zu reader%s)", p->n_readers,
	         p->n_readers == 1 ? "" : "s");
	return buf;
}

/* The AWS CLI's shape of a parameter (Value only when with_value). */
static json_t *
param_json(const struct mesh_param *p, bool with_value)
{
	char when[32], buf[64];
	json_t *j, *readers;

	if (p->version == 0) {
		return json_pack("{s:s, s:b}", "Name", p->name, "Damaged",
		                 true);
	}
	mesh_time_format(p->modified_ms / 1000, when);
	j = json_pack("{s:s, s:s, s:I, s:s, s:s}", "Name", p->name, "Type",
	              mesh_param_type_name(p->type), "Version",
	              (json_int_t)p->version, "LastModifiedDate", when,
	              "DataType", "text");
	if (j == NULL) {
		return NULL;
	}
	if (with_value) {
		json_object_set_new(j, "Value",
		                    json_string(shown(p, buf, sizeof(buf))));
	}
	if (p->modified_by[0] != '\0') {
		json_object_set_new(j, "LastModifiedUser",
		                    json_string(p->modified_by));
	}
	if (p->description != NULL) {
		json_object_set_new(j, "Description",
		                    json_string(p->description));
	}
	if (p->type == MESH_PARAM_SECURE_STRING) {
		readers = json_array();
		for (size_t i = 0; i < p->n_readers; i++) {
			json_array_append_new(readers,
			                      json_string(p->readers[i]));
		}
		json_object_set_new(j, "Readers", readers);
	}
	return j;
}

/* NAME or NAME:VERSION. */
static int
name_version(struct cli *cli, char *name, size_t size, int64_t *version)
{
	const char *arg = cli_pos(cli, 0), *colon = strchr(arg, ':');
	char *end = NULL;
	long long v;

	*version = 0;
	if (colon == NULL) {
		snprintf(name, size, "%s", arg);
		return CLI_OK;
	}
	errno = 0;
	v = strtoll(colon + 1, &end, 10);
	if (colon[1] < '1' || colon[1] > '9' || *end != '\0' || errno != 0) {
		return cli_usage_error(cli,
		                       "'%s': the version after ':' must be a "
		                       "number from 1",
		                       arg);
	}
	snprintf(name, size, "%.*s", (int)(colon - arg), arg);
	*version = v;
	return CLI_OK;
}

/* With --with-decryption, open p with the identity (required then). */
static int
decrypt(struct cli *cli, struct mesh_identity *id, struct mesh_param *p)
{
	mesh_err err;

	if (id == NULL || p->type != MESH_PARAM_SECURE_STRING ||
	    p->version == 0) {
		return CLI_OK;
	}
	if ((err = mesh_param_open(p, id)) != MESH_OK) {
		return fail(cli, err);
	}
	return CLI_OK;
}

/* The identity of --with-decryption (NULL without it). */
static int
decryption_identity(struct cli *cli, struct mesh_identity **id)
{
	*id = NULL;
	if (!cli_flag(cli, "--with-decryption")) {
		return CLI_OK;
	}
	return identity_of(cli, true, "--with-decryption", id);
}

int
cmd_param_get(struct cli *cli)
{
	char name[MESH_PARAM_NAME_MAX + 16], buf[64];
	struct mesh_identity *id = NULL;
	struct mesh_conn *c = NULL;
	struct mesh_param p;
	int64_t version;
	mesh_err err;
	int rc;

	mesh_param_init(&p);
	if ((rc = name_version(cli, name, sizeof(name), &version)) != CLI_OK ||
	    (rc = decryption_identity(cli, &id)) != CLI_OK) {
		return rc;
	}
	if (cli_connect(cli, &c) != MESH_OK) {
		mesh_identity_free(id);
		return CLI_FAIL;
	}
	err = mesh_param_read(c, name, version, &p);
	mesh_conn_close(c);
	if (err != MESH_OK) {
		rc = fail(cli, err);
	} else if ((rc = decrypt(cli, id, &p)) == CLI_OK) {
		if (cli->json) {
			cli_print_json(json_pack("{s:o}", "Parameter",
			                         param_json(&p, true)));
		} else {
			printf("%s\n", shown(&p, buf, sizeof(buf)));
		}
	}
	mesh_param_fini(&p);
	mesh_identity_free(id);
	return rc;
}

int
cmd_param_list(struct cli *cli)
{
	struct mesh_param *ps = NULL;
	struct mesh_conn *c = NULL;
	const char *path = cli_pos(cli, 0);
	char when[32];
	size_t n = 0;
	mesh_err err;

	if (path == NULL && cli_flag(cli, "--recursive")) {
		path = "/";
	}
	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	err = mesh_param_list(c, path, cli_flag(cli, "--recursive"), &ps, &n);
	mesh_conn_close(c);
	if (err != MESH_OK) {
		return fail(cli, err);
	}
	if (cli->json) {
		json_t *a = json_array();
		for (size_t i = 0; i < n; i++) {
			json_array_append_new(a, param_json(&ps[i], true));
		}
		cli_print_json(json_pack("{s:o}", "Parameters", a));
	} else if (n > 0) {
		printf("%-40s %-12s %7s  %-20s  %s\n", "NAME", "TYPE",
		       "VERSION", "LAST MODIFIED", "BY");
	}
	for (size_t i = 0; !cli->json && i < n; i++) {
		const struct mesh_param *p = &ps[i];
		if (p->version == 0) {
			printf("%-40s %s\n", p->name, "(damaged record)");
			continue;
		}
		mesh_time_format(p->modified_ms / 1000, when);
		printf("%-40s %-12s %7" PRId64 "  %-20s  %s\n", p->name,
		       mesh_param_type_name(p->type), p->version, when,
		       p->modified_by[0] ? p->modified_by : "-");
	}
	mesh_param_list_free(ps, n);
	return CLI_OK;
}

int
cmd_param_history(struct cli *cli)
{
	struct mesh_identity *id = NULL;
	struct mesh_param *ps = NULL;
	struct mesh_conn *c = NULL;
	char when[32], buf[64];
	size_t n = 0;
	mesh_err err;
	int rc;

	if ((rc = decryption_identity(cli, &id)) != CLI_OK) {
		return rc;
	}
	if (cli_connect(cli, &c) != MESH_OK) {
		mesh_identity_free(id);
		return CLI_FAIL;
	}
	err = mesh_param_history(c, cli_pos(cli, 0), &ps, &n);
	mesh_conn_close(c);
	if (err != MESH_OK) {
		mesh_identity_free(id);
		return fail(cli, err);
	}
	for (size_t i = 0; i < n && rc == CLI_OK; i++) {
		rc = decrypt(cli, id, &ps[i]);
	}
	if (rc == CLI_OK && cli->json) {
		json_t *a = json_array();
		for (size_t i = 0; i < n; i++) {
			json_array_append_new(a, param_json(&ps[i], true));
		}
		cli_print_json(json_pack("{s:o}", "Parameters", a));
	} else if (rc == CLI_OK) {
		printf("%7s  %-12s  %-20s  %-16s  %s\n", "VERSION", "TYPE",
		       "LAST MODIFIED", "BY", "VALUE");
		for (size_t i = 0; i < n; i++) {
			mesh_time_format(ps[i].modified_ms / 1000, when);
			printf("%7" PRId64 "  %-12s  %-20s  %-16s  %s\n",
			       ps[i].version, mesh_param_type_name(ps[i].type),
			       when,
			       ps[i].modified_by[0] ? ps[i].modified_by : "-",
			       shown(&ps[i], buf, sizeof(buf)));
		}
	}
	mesh_param_list_free(ps, n);
	mesh_identity_free(id);
	return rc;
}

int
cmd_param_delete(struct cli *cli)
{
	struct mesh_conn *c = NULL;
	mesh_err err;

	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	err = mesh_param_delete(c, cli_pos(cli, 0));
	mesh_conn_close(c);
	if (err != MESH_OK) {
		return fail(cli, err);
	}
	if (cli->json) {
		cli_print_json(json_pack("{s:[s]}", "DeletedParameters",
		                         cli_pos(cli, 0)));
	} else {
		printf("deleted parameter '%s' and its versions\n",
		       cli_pos(cli, 0));
	}
	return CLI_OK;
}

/* ---- the tree ------------------------------------------------------------
 */

#define IDENTITY_OPTS                                                         \
	{"--as", "NAME",                                                      \
	 "the identity to write or read a SecureString as "                   \
	 "($MESH_IDENTITY_NAME)"},                                            \
	{                                                                     \
		"--seed", "FILE",                                             \
		        "its NKey seed file, 0600 ($MESH_IDENTITY; else "     \
		        "var/auth/NAME.nk)"                                   \
	}

static const struct cli_opt put_opts[] = {
        {"--type", "TYPE", "String (default), StringList or SecureString"},
        {"--readers", "A,B",
         "SecureString: the identities (in MESH_KEYS) that may read it"},
        {"--overwrite", NULL, "store a new version of an existing one"},
        {"--description", "TEXT", "up to 1024 characters"},
        {"--stdin", NULL,
         "read the value from standard input (keeps it out of the shell's "
         "history)"},
        IDENTITY_OPTS,
        {NULL, NULL, NULL},
};

static const struct cli_opt read_opts[] = {
        {"--with-decryption", NULL,
         "show a SecureString's value, opened with --as NAME (a reader)"},
        IDENTITY_OPTS,
        {NULL, NULL, NULL},
};

static const struct cli_opt list_opts[] = {
        {"--recursive", NULL, "every level below PATH, not its children"},
        {NULL, NULL, NULL},
};

static const struct cli_opt no_opts[] = {{NULL, NULL, NULL}};

const struct cli_cmd param_commands[] = {
        {.name = "put",
         .summary = "Store a parameter (a new version with --overwrite).",
         .usage = "NAME (VALUE | --stdin) [--type String|StringList|"
                  "SecureString] [--readers A,B] [--overwrite] "
                  "[--description TEXT] [--as NAME] [--seed FILE]",
         .help = "NAME: 1-1011 of A-Z a-z 0-9 _ . - /; a hierarchy begins "
                 "with '/'\n(/shop/orders/discount), at most 15 levels; "
                 "not beginning with aws or ssm.\nVALUE: 1-4096 bytes of "
                 "text; a StringList's items are comma-separated.\nAn "
                 "existing NAME is refused without --overwrite. A "
                 "SecureString is\nencrypted to --readers (names in "
                 "MESH_KEYS; an unknown one is refused)\nand to --as "
                 "NAME, whose seed meshctl reads. Refused values exit 2,\n"
                 "nothing stored.",
         .opts = put_opts,
         .run = cmd_param_put,
         .min_pos = 1,
         .max_pos = 2},
        {.name = "get",
         .summary = "Print a parameter's value (NAME:VERSION: that one).",
         .usage = "NAME[:VERSION] [--with-decryption --as NAME [--seed "
                  "FILE]]",
         .help = "Prints the value alone; a SecureString shows as "
                 "(secure; N readers)\nunless --with-decryption, which "
                 "needs an identity among its readers.\n--json: "
                 "{\"Parameter\": {Name, Type, Value, Version, "
                 "LastModifiedDate, ...}}.",
         .opts = read_opts,
         .run = cmd_param_get,
         .min_pos = 1,
         .max_pos = 1},
        {.name = "list",
         .summary = "List the parameters (below PATH).",
         .usage = "[PATH] [--recursive]",
         .help = "Without PATH every parameter; with PATH (/ or /a/b) its "
                 "children, or\nwith --recursive every level below it.",
         .opts = list_opts,
         .run = cmd_param_list,
         .max_pos = 1},
        {.name = "history",
         .summary = "Every version kept of a parameter (the last 64).",
         .usage = "NAME [--with-decryption --as NAME [--seed FILE]]",
         .opts = read_opts,
         .run = cmd_param_history,
         .min_pos = 1,
         .max_pos = 1},
        {.name = "delete",
         .summary = "Delete a parameter and all its versions.",
         .usage = "NAME",
         .opts = no_opts,
         .run = cmd_param_delete,
         .min_pos = 1,
         .max_pos = 1},
        {NULL},
};
