/* function_table.c: the `meshctl function` tree: definitions of services
 * run on demand by mesh-supervisor (mesh/function.h). */
#include "cli.h"
#include "commands.h"

#define DEFINITION_OPTS                                                       \
	{"--program", "PATH",                                                 \
	 "the service program (built on the runtime); a relative path is "    \
	 "made absolute"},                                                    \
	        {"--arg", "A",                                                \
	         "an argument of the program; repeatable, in order (update: " \
	         "the given ones replace them all)"},                         \
	        {"--env", "KEY=VALUE",                                        \
	         "a variable added to its environment; repeatable (update: "  \
	         "the given ones replace them all)"},                         \
	        {"--min", "N", "instances kept running, 0-64 (0)"},           \
	        {"--max", "N", "instances at most, 1-64 (4)"},                \
	        {"--idle", "SECONDS",                                         \
	         "scale down after this long without work, 1-86400 (60)"},    \
	{                                                                     \
		"--target-backlog", "N",                                      \
		        "waiting events (and requests at the instances) per " \
		        "instance before another starts, 1-1000000 (100)"     \
	}

static const struct cli_opt definition_opts[] = {
        DEFINITION_OPTS,
        {NULL, NULL, NULL},
};

static const struct cli_opt no_opts[] = {{NULL, NULL, NULL}};

static const struct cli_opt list_opts[] = {
        {"--wait", "MS",
         "collect the supervisors' answers this long, 10-10000 ms (300)"},
        {NULL, NULL, NULL},
};

#define PROBE_HELP                                                            \
	"Runs PATH ARGS --prepare (NATS_URL and the credentials meshctl "     \
	"uses, the\ndefinition's --env added; 30 s at most; its standard "    \
	"error passes through):\nthe program makes its subscriptions and "    \
	"dead-letter queue and prints what it\nconsumes (its sources, and "   \
	"its request routes: a request wakes it too),\nwhich is stored "      \
	"with the definition. Refused, nothing stored: a\nprogram that is "   \
	"missing or not executable, --min above --max, a value out\nof "      \
	"range (exit 2), a program whose --prepare fails (a queue or topic "  \
	"it\nconsumes does not exist: exit 1), a program that is not an "     \
	"evmesh service\n(its --prepare prints no sources and no routes: "    \
	"exit 1)."

const struct cli_cmd function_commands[] = {
        {.name = "create",
         .summary = "Define a function: a service run on demand.",
         .usage = "NAME --program PATH [--arg A]... [--env KEY=VALUE]... "
                  "[--min N] [--max N] [--idle SECONDS] [--target-backlog "
                  "N]",
         .help = "Stores the definition in the bucket MESH_FUNCTIONS, "
                 "where mesh-supervisor\nfinds it. NAME: 1-64 of A-Z a-z "
                 "0-9 _ -; taken, it is refused.\n" PROBE_HELP,
         .opts = definition_opts,
         .run = cmd_function_create,
         .min_pos = 1,
         .max_pos = 1},
        {.name = "update",
         .summary = "Change a function (the options given).",
         .usage = "NAME [--program PATH] [--arg A]... [--env KEY=VALUE]... "
                  "[--min N] [--max N] [--idle SECONDS] [--target-backlog "
                  "N]",
         .help = "Changes the options given and keeps the others; the "
                 "program is probed again.\n" PROBE_HELP,
         .opts = definition_opts,
         .run = cmd_function_update,
         .min_pos = 1,
         .max_pos = 1},
        {.name = "delete",
         .summary = "Delete a function (its supervisor stops it).",
         .usage = "NAME",
         .opts = no_opts,
         .run = cmd_function_delete,
         .min_pos = 1,
         .max_pos = 1},
        {.name = "list",
         .summary = "List the functions and their running instances.",
         .usage = "[--wait MS]",
         .help = "A row a function: NAME MIN MAX INSTANCES SOURCES; "
                 "INSTANCES as the\nsupervisors answer on "
                 "mesh.supervisor.list (- when none runs it).\nA damaged "
                 "record is listed as such.",
         .opts = list_opts,
         .run = cmd_function_list},
        {.name = "info",
         .summary = "Show a function's definition and status.",
         .usage = "NAME",
         .help = "The definition, then the status its supervisor answers "
                 "on\nmesh.supervisor.info.NAME (within 2 s): instances, "
                 "cold starts, exits, crash\nloop, backlog and the last "
                 "scaling decision; when no supervisor answers it\nsays "
                 "so and still exits 0.",
         .opts = no_opts,
         .run = cmd_function_info,
         .min_pos = 1,
         .max_pos = 1},
        {NULL},
};
