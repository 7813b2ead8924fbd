/* cli.h: the command-line frame of meshctl: a tree of commands, each with
 * its options; global options (--server, --json, credentials) accepted
 * anywhere on the line; --help on every command; exit codes 0 (done),
 * 1 (failed), 2 (usage error). */
#ifndef MESHCTL_CLI_H
#define MESHCTL_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "mesh/mesh.h"

#define CLI_OK    0
#define CLI_FAIL  1
#define CLI_USAGE 2

struct cli_opt {
	const char *name; /* "--max" */
	const char *arg;  /* "N" when the option takes a value, else NULL */
	const char *help;
};

struct cli_arg {
	const char *name; /* option name, or NULL for a positional word */
	const char *value;
};

struct cli {
	const char *prog;
	struct mesh_conn_opts conn;
	bool json;
	const struct cli_cmd *cmd;
	const char *cmd_path; /* "queue create" */
	struct cli_arg *args;
	size_t n_args;
};

struct cli_cmd {
	const char *name;
	const char *summary; /* one line, for the parent's list */
	const char *usage;   /* after "meshctl <path> " */
	const char *help;    /* paragraphs after the usage; may be NULL */
	const struct cli_opt *opts; /* terminated by {NULL} */
	int (*run)(struct cli *cli);
	const struct cli_cmd *subs; /* terminated by {NULL}; or NULL */
	size_t min_pos, max_pos;    /* positional words allowed */
};

/* Parse argv and run the command it names; returns the exit code. */
int cli_main(const struct cli_cmd *root, int argc, char **argv);

/* The value of option `name` (the last one given), or NULL. */
const char *cli_opt(const struct cli *cli, const char *name);
bool cli_flag(const struct cli *cli, const char *name);
/* The n-th value of a repeatable option (0 first), or NULL past the end. */
const char *cli_opt_nth(const struct cli *cli, const char *name, size_t n);
/* The i-th positional word, or NULL. */
const char *cli_pos(const struct cli *cli, size_t i);
size_t cli_npos(const struct cli *cli);

/* Numeric option in [min, max]; def when absent. On a bad value prints
 * the error and returns false. */
bool cli_opt_long(const struct cli *cli, const char *name, long long min,
                  long long max, long long def, long long *out);

/* Report a usage error ("meshctl queue create: ...") and return CLI_USAGE. */
int cli_usage_error(const struct cli *cli, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
/* Report a failed call: "meshctl <cmd>: <detail or strerror>", CLI_FAIL. */
int cli_fail(const struct cli *cli, mesh_err err);

/* Before destroying something: with --yes, go on; with a terminal on
 * standard input, ask "<what>? [y/N]" on standard error and go on only on
 * y or yes; without one, refuse (a script must say --yes). what is a
 * printf format ("delete queue 'q' and its 3 messages"). Returns CLI_OK to
 * go on, else the exit code after printing why: CLI_USAGE without --yes
 * and a terminal, CLI_FAIL when the answer was not yes. The command's
 * options must hold CLI_YES_OPT. */
#define CLI_YES_OPT                                                           \
	{                                                                     \
		"--yes", NULL,                                                \
		        "do not ask (a command whose standard input is not "  \
		        "a terminal needs it)"                                \
	}
#define CONFIRM_HELP                                                          \
	"Says what it would delete and asks first (y or yes goes on); "       \
	"--yes does not ask.\nWithout --yes and without a terminal on "       \
	"standard input it deletes nothing\nand exits 2."
/* --replicas N on queues and topics. */
#define REPLICAS_HELP                                                         \
	"copies of its streams, each on another server, 1-5 (the mesh's: "    \
	"MESH_REPLICAS, else 3 on a cluster of 3 or more servers, else 1)"

int cli_confirm(const struct cli *cli, const char *what, ...)
        __attribute__((format(printf, 2, 3)));

/* Connect with the global options; prints the error on failure. */
mesh_err cli_connect(struct cli *cli, struct mesh_conn **out);

/* Print a JSON value (steals the reference) to stdout, indented. */
void cli_print_json(json_t *j);

/* A JSON request to a daemon's request API (takes req): its answer, a
 * JSON object, into *reply. When nobody answers (no responders, or
 * nothing within timeout_ms) it prints "meshctl CMD: no WHO answered on
 * SUBJECT (why): HINT" and returns CLI_FAIL; any other failure is printed
 * too. The answer's own errors are the caller's to judge. */
int cli_request(struct cli *cli, const char *subject, json_t *req,
                int64_t timeout_ms, const char *who, const char *hint,
                json_t **reply);

#endif
