/* cli.c: meshctl's argument parsing, help and error reporting. */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli.h"

static const struct cli_opt global_opts[] = {
        {"--server", "URL",
         "NATS server URLs, comma-separated "
         "(default: $NATS_URL, then " MESH_DEFAULT_URL ")"},
        {"--json", NULL, "print results as JSON"},
        {"--output", "FORMAT", "text or json (--json is --output json)"},
        {"--user", "USER", "user name ($NATS_USER)"},
        {"--password", "PASSWORD", "password ($NATS_PASSWORD)"},
        {"--token", "TOKEN", "authentication token ($NATS_TOKEN)"},
        {"--nkey", "FILE", "NKey user seed file ($NATS_NKEY)"},
        {"--creds", "FILE", "credentials file, JWT and seed ($NATS_CREDS)"},
        {"--tls", NULL, "require TLS"},
        {"--tls-ca", "FILE", "CA bundle to verify the server ($NATS_CA)"},
        {"--tls-cert", "FILE", "client certificate ($NATS_CERT)"},
        {"--tls-key", "FILE", "client key ($NATS_KEY)"},
        {"--connect-timeout", "MS", "per-server connect timeout (2000)"},
        {"--help", NULL, "show help for the command"},
        {NULL, NULL, NULL},
};

static const struct cli_opt *
find_opt(const struct cli_opt *opts, const char *name, size_t len)
{
	for (; opts != NULL && opts->name != NULL; opts++) {
		if (strlen(opts->name) == len &&
		    strncmp(opts->name, name, len) == 0) {
			return opts;
		}
	}
	return NULL;
}

/* Look an option up: the command's own, then the global ones. A name has
 * one meaning: no command reuses a global option's name. */
static const struct cli_opt *
lookup(const struct cli_cmd *cmd, const char *name, size_t len, bool *global)
{
	const struct cli_opt *o = cmd ? find_opt(cmd->opts, name, len) : NULL;

	*global = false;
	if (o == NULL && (o = find_opt(global_opts, name, len)) != NULL) {
		*global = true;
	}
	return o;
}

/* Each option name has one meaning on a line: a command's own options
 * never take a global option's name (that once made --json a payload). */
static bool __attribute__((unused)) names_distinct(const struct cli_cmd *cmd)
{
	for (const struct cli_opt *o = cmd->opts; o && o->name; o++) {
		if (find_opt(global_opts, o->name, strlen(o->name)) != NULL) {
			return false;
		}
	}
	for (const struct cli_cmd *s = cmd->subs; s && s->name; s++) {
		if (!names_distinct(s)) {
			return false;
		}
	}
	return true;
}

static void
print_opts(FILE *f, const struct cli_opt *opts)
{
	for (; opts != NULL && opts->name != NULL; opts++) {
		char left[64];
		snprintf(left, sizeof(left), "%s%s%s", opts->name,
		         opts->arg ? " " : "", opts->arg ? opts->arg : "");
		fprintf(f, "  %-26s %s\n", left, opts->help);
	}
}

static void
print_help(FILE *f, const char *prog, const char *path,
           const struct cli_cmd *cmd)
{
	fprintf(f, "Usage: %s%s%s %s\n", prog, path[0] ? " " : "", path,
	        cmd->usage ? cmd->usage : "");
	fprintf(f, "\n%s\n", cmd->summary);
	if (cmd->help != NULL) {
		fprintf(f, "\n%s\n", cmd->help);
	}
	if (cmd->subs != NULL) {
		fprintf(f, "\nCommands:\n");
		for (const struct cli_cmd *s = cmd->subs; s->name; s++) {
			fprintf(f, "  %-26s %s\n", s->name, s->summary);
		}
		fprintf(f,
		        "\nRun '%s%s%s COMMAND --help' for a command's "
		        "options.\n",
		        prog, path[0] ? " " : "", path);
	}
	if (cmd->opts != NULL && cmd->opts[0].name != NULL) {
		fprintf(f, "\nOptions:\n");
		print_opts(f, cmd->opts);
	}
	fprintf(f, "\nGlobal options (anywhere on the line):\n");
	print_opts(f, global_opts);
	fprintf(f, "\nExit status: 0 done, 1 failed, 2 usage error.\n");
}

int
cli_usage_error(const struct cli *cli, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s%s%s: ", cli->prog, cli->cmd_path[0] ? " " : "",
	        cli->cmd_path);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nRun '%s%s%s --help' for usage.\n", cli->prog,
	        cli->cmd_path[0] ? " " : "", cli->cmd_path);
	return CLI_USAGE;
}

int
cli_fail(const struct cli *cli, mesh_err err)
{
	const char *d = mesh_errdetail();

	fprintf(stderr, "%s%s%s: %s\n", cli->prog, cli->cmd_path[0] ? " " : "",
	        cli->cmd_path, d[0] ? d : mesh_strerror(err));
	return CLI_FAIL;
}

const char *
cli_opt(const struct cli *cli, const char *name)
{
	const char *v = NULL;

	for (size_t i = 0; i < cli->n_args; i++) {
		if (cli->args[i].name &&
		    strcmp(cli->args[i].name, name) == 0) {
			v = cli->args[i].value;
		}
	}
	return v;
}

const char *
cli_opt_nth(const struct cli *cli, const char *name, size_t n)
{
	for (size_t i = 0; i < cli->n_args; i++) {
		if (cli->args[i].name &&
		    strcmp(cli->args[i].name, name) == 0 && n-- == 0) {
			return cli->args[i].value;
		}
	}
	return NULL;
}

bool
cli_flag(const struct cli *cli, const char *name)
{
	for (size_t i = 0; i < cli->n_args; i++) {
		if (cli->args[i].name &&
		    strcmp(cli->args[i].name, name) == 0) {
			return true;
		}
	}
	return false;
}

const char *
cli_pos(const struct cli *cli, size_t i)
{
	for (size_t k = 0; k < cli->n_args; k++) {
		if (cli->args[k].name == NULL && i-- == 0) {
			return cli->args[k].value;
		}
	}
	return NULL;
}

size_t
cli_npos(const struct cli *cli)
{
	size_t n = 0;

	for (size_t k = 0; k < cli->n_args; k++) {
		n += cli->args[k].name == NULL;
	}
	return n;
}

bool
cli_opt_long(const struct cli *cli, const char *name, long long min,
             long long max, long long def, long long *out)
{
	const char *v = cli_opt(cli, name);
	char *end;
	long long n;

	if (v == NULL) {
		*out = def;
		return true;
	}
	errno = 0;
	n = strtoll(v, &end, 10);
	if (v[0] == '\0' || *end != '\0' || errno != 0 || n < min || n > max) {
		cli_usage_error(cli,
		                "%s '%s': must be a whole number from "
		                "%lld to %lld",
		                name, v, min, max);
		return false;
	}
	*out = n;
	return true;
}

int
cli_confirm(const struct cli *cli, const char *what, ...)
{
	char text[512], answer[16] = "";
	va_list ap;

	if (cli_flag(cli, "--yes")) {
		return CLI_OK;
	}
	va_start(ap, what);
	vsnprintf(text, sizeof(text), what, ap);
	va_end(ap);
	if (!isatty(STDIN_FILENO)) {
		return cli_usage_error(
		        cli,
		        "would %s: give --yes to do it (standard "
		        "input is not a terminal to ask on)",
		        text);
	}
	fprintf(stderr, "%s? [y/N] ", text);
	fflush(stderr);
	if (fgets(answer, sizeof(answer), stdin) == NULL) {
		fputc('\n', stderr);
	}
	answer[strcspn(answer, "\r\n")] = '\0';
	if (strcasecmp(answer, "y") == 0 || strcasecmp(answer, "yes") == 0) {
		return CLI_OK;
	}
	fprintf(stderr, "%s %s: did not %s (the answer was not yes)\n",
	        cli->prog, cli->cmd_path, text);
	return CLI_FAIL;
}

mesh_err
cli_connect(struct cli *cli, struct mesh_conn **out)
{
	mesh_err err = mesh_conn_open(&cli->conn, out);

	if (err != MESH_OK) {
		cli_fail(cli, err);
	}
	return err;
}

void
cli_print_json(json_t *j)
{
	json_dumpf(j, stdout,
	           JSON_INDENT(2) | JSON_ENSURE_ASCII |
	                   JSON_REAL_PRECISION(6));
	fputc('\n', stdout);
	json_decref(j);
}

/* Apply a global option's value. Returns false on a bad value. */
static bool
apply_global(struct cli *cli, const char *name, const char *v)
{
	struct mesh_conn_opts *c = &cli->conn;

	if (strcmp(name, "--server") == 0)
		c->servers = v;
	else if (strcmp(name, "--json") == 0)
		cli->json = true;
	else if (strcmp(name, "--output") == 0) {
		if (strcmp(v, "json") != 0 && strcmp(v, "text") != 0) {
			fprintf(stderr,
			        "%s: --output '%s': must be text or json\n",
			        cli->prog, v);
			return false;
		}
		cli->json = strcmp(v, "json") == 0;
	} else if (strcmp(name, "--user") == 0)
		c->user = v;
	else if (strcmp(name, "--password") == 0)
		c->password = v;
	else if (strcmp(name, "--token") == 0)
		c->token = v;
	else if (strcmp(name, "--nkey") == 0)
		c->nkey_seed_file = v;
	else if (strcmp(name, "--creds") == 0)
		c->creds_file = v;
	else if (strcmp(name, "--tls") == 0)
		c->tls = true;
	else if (strcmp(name, "--tls-ca") == 0)
		c->tls_ca = v;
	else if (strcmp(name, "--tls-cert") == 0)
		c->tls_cert = v;
	else if (strcmp(name, "--tls-key") == 0)
		c->tls_key = v;
	else if (strcmp(name, "--connect-timeout") == 0) {
		char *end;
		long ms = strtol(v, &end, 10);
		if (*end != '\0' || ms < 1 || ms > 60000) {
			fprintf(stderr,
			        "%s: --connect-timeout '%s': must be "
			        "1-60000 milliseconds\n",
			        cli->prog, v);
			return false;
		}
		c->connect_timeout_ms = ms;
	}
	return true;
}

int
cli_main(const struct cli_cmd *root, int argc, char **argv)
{
	struct cli cli = {.prog = "meshctl"};
	const struct cli_cmd *cmd = root;
	char path[128] = "";
	bool help = false, dashdash = false;
	bool *is_cmd_word = calloc((size_t)argc + 1, sizeof(bool));
	int rc;

	assert(names_distinct(root));
	cli.args = calloc((size_t)argc + 1, sizeof(*cli.args));
	if (is_cmd_word == NULL || cli.args == NULL) {
		fprintf(stderr, "meshctl: out of memory\n");
		free(is_cmd_word);
		free(cli.args);
		return CLI_FAIL;
	}
	mesh_conn_opts_init(&cli.conn);
	mesh_conn_opts_from_env(&cli.conn);
	cli.cmd_path = path;

	/* First pass: find the command words, skipping options (and the
	 * values of those that take one) wherever they stand. */
	for (int i = 1; i < argc && cmd->subs != NULL; i++) {
		const char *a = argv[i];
		if (a[0] == '-' && a[1] != '\0') {
			size_t len = strcspn(a, "=");
			bool g;
			const struct cli_opt *o = lookup(cmd, a, len, &g);
			if (strcmp(a, "--") == 0) {
				break;
			}
			if (o != NULL && o->arg != NULL && a[len] == '\0') {
				i++;
			}
			continue;
		}
		const struct cli_cmd *s = cmd->subs;
		while (s->name != NULL && strcmp(s->name, a) != 0) {
			s++;
		}
		if (s->name == NULL) {
			cli.cmd = cmd;
			rc = cli_usage_error(&cli, "unknown command '%s'", a);
			goto out;
		}
		cmd = s;
		is_cmd_word[i] = true;
		snprintf(path + strlen(path), sizeof(path) - strlen(path),
		         "%s%s", path[0] ? " " : "", s->name);
	}
	cli.cmd = cmd;

	/* Second pass: options and positional words. */
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (is_cmd_word[i]) {
			continue;
		}
		if (!dashdash && strcmp(a, "--") == 0) {
			dashdash = true;
			continue;
		}
		if (dashdash || a[0] != '-' || a[1] == '\0') {
			cli.args[cli.n_args++] = (struct cli_arg){NULL, a};
			continue;
		}
		if (strcmp(a, "-h") == 0) {
			help = true;
			continue;
		}
		size_t len = strcspn(a, "=");
		bool global;
		const struct cli_opt *o = lookup(cmd, a, len, &global);
		const char *value = NULL;
		if (o == NULL) {
			rc = cli_usage_error(&cli, "unknown option '%.*s'",
			                     (int)len, a);
			goto out;
		}
		if (o->arg != NULL) {
			if (a[len] == '=') {
				value = a + len + 1;
			} else if (i + 1 < argc) {
				value = argv[++i];
			} else {
				rc = cli_usage_error(&cli,
				                     "%s needs a value "
				                     "(%s)",
				                     o->name, o->arg);
				goto out;
			}
		} else if (a[len] == '=') {
			rc = cli_usage_error(&cli, "%s takes no value",
			                     o->name);
			goto out;
		}
		if (global) {
			if (strcmp(o->name, "--help") == 0) {
				help = true;
			} else if (!apply_global(&cli, o->name, value)) {
				rc = CLI_USAGE;
				goto out;
			}
			continue;
		}
		cli.args[cli.n_args++] = (struct cli_arg){o->name, value};
	}

	if (help) {
		print_help(stdout, cli.prog, path, cmd);
		rc = CLI_OK;
		goto out;
	}
	if (cmd->run == NULL) {
		if (cmd == root && cli_npos(&cli) == 0) {
			print_help(stderr, cli.prog, path, cmd);
			rc = CLI_USAGE;
		} else {
			rc = cli_usage_error(&cli, "which command? (one of "
			                           "the list in --help)");
		}
		goto out;
	}
	if (cli_npos(&cli) < cmd->min_pos) {
		rc = cli_usage_error(&cli, "missing argument: %s",
		                     cmd->usage ? cmd->usage : "");
		goto out;
	}
	if (cli_npos(&cli) > cmd->max_pos) {
		rc = cli_usage_error(&cli, "unexpected argument '%s'",
		                     cli_pos(&cli, cmd->max_pos));
		goto out;
	}
	rc = cmd->run(&cli);
out:
	free(is_cmd_word);
	free(cli.args);
	return rc;
}

int
cli_request(struct cli *cli, const char *subject, json_t *req,
            int64_t timeout_ms, const char *who, const char *hint,
            json_t **reply)
{
	char *body = json_dumps(req, JSON_COMPACT);
	struct mesh_conn *c = NULL;
	natsMsg *m = NULL;
	natsStatus st;
	json_t *j;

	json_decref(req);
	*reply = NULL;
	if (body == NULL || cli_connect(cli, &c) != MESH_OK) {
		free(body);
		return CLI_FAIL;
	}
	st = natsConnection_RequestString(&m, mesh_conn_nats(c), subject, body,
	                                  timeout_ms);
	free(body);
	mesh_conn_close(c);
	if (st == NATS_NO_RESPONDERS || st == NATS_TIMEOUT) {
		fprintf(stderr, "%s %s: no %s answered on %s (%s): %s\n",
		        cli->prog, cli->cmd_path, who, subject,
		        st == NATS_TIMEOUT ? "timed out" : "no responders",
		        hint);
		return CLI_FAIL;
	}
	if (st != NATS_OK) {
		return cli_fail(cli, mesh_err_nats(st, 0, "%s", subject));
	}
	j = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0,
	               NULL);
	natsMsg_Destroy(m);
	if (!json_is_object(j)) {
		json_decref(j);
		fprintf(stderr,
		        "%s %s: the answer on %s is not a JSON object\n",
		        cli->prog, cli->cmd_path, subject);
		return CLI_FAIL;
	}
	*reply = j;
	return CLI_OK;
}
