/* service_table.c: the commands about services: `meshctl stats`, the
 * `meshctl state` tree and `meshctl new service`. */
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "mesh/service_api.h"

bool
service_name_check(const struct cli *cli, const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > MESH_SERVICE_NAME_MAX ||
	    strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	                 "0123456789_-") != n) {
		cli_usage_error(cli,
		                "service name '%s': 1-%d of A-Z a-z 0-9 _ -",
		                name, MESH_SERVICE_NAME_MAX);
		return false;
	}
	return true;
}

const struct cli_opt stats_opts[] = {
        {"--wait", "MS",
         "collect answers this long, 10-10000 ms (300); every instance "
         "answers"},
        {NULL, NULL, NULL},
};

#define STATE_OPTS                                                            \
	{"--state", "DIR",                                                    \
	 "read the LMDB files in DIR (a stopped service's) instead of "       \
	 "asking the running service"},                                       \
	        {"--db", "NAME",                                              \
	         "the named database: state (the handlers'), or the "         \
	         "runtime's processed, processed_at, outbox, meta, "          \
	         "requests, requests_at"},                                    \
	{                                                                     \
		"--no-lock", NULL,                                            \
		        "read without a slot in lock.mdb (when it is not "    \
		        "writable): safe only while the service is stopped"   \
	}

#define PARTITION_OPT                                                         \
	{                                                                     \
		"--partition", "K",                                           \
		        "a partitioned service's partition K (get: the "      \
		        "key's, by default; scan: every one, in turn)"        \
	}

#define TYPE_OPT                                                              \
	{                                                                     \
		"--type", "T",                                                \
		        "the values are protobuf messages T (see schemas/): " \
		        "print them as JSON"                                  \
	}

static const struct cli_opt get_opts[] = {
        STATE_OPTS,
        TYPE_OPT,
        PARTITION_OPT,
        {"--hex", NULL, "KEY is given in hex"},
        {"--raw", NULL, "write the value's bytes as they are"},
        {NULL, NULL, NULL},
};

static const struct cli_opt scan_opts[] = {
        STATE_OPTS,
        TYPE_OPT,
        PARTITION_OPT,
        {"--hex", NULL, "PREFIX is given in hex"},
        {"--limit", "N", "at most N keys, 1-100000000 (100)"},
        {NULL, NULL, NULL},
};

static const struct cli_opt backup_opts[] = {
        {"--state", "DIR",
         "copy the LMDB files in DIR (a stopped service's) instead of "
         "asking the running service"},
        {"--partition", "K", "a partitioned service's partition K"},
        {NULL, NULL, NULL},
};

static const struct cli_opt new_opts[] = {
        {"--dir", "DIR", "where services live (services)"},
        {"--template", "DIR", "the template (DIR/template)"},
        {NULL, NULL, NULL},
};

#define STATE_HELP                                                            \
	"Asks a running instance of the service (mesh.service.SERVICE.state." \
	"*, over NATS:\nfrom any machine, no access to its files), which "    \
	"reads the database\n'" MESH_SERVICE_DB_STATE "' (or --db's) in one " \
	"read transaction; --state DIR reads a stopped\nservice's files "     \
	"instead. Keys and values print as text when they are\nprintable "    \
	"UTF-8, else as 0x and hex (--json: key_base64, value_base64).\n"     \
	"Values carry no type: --type T reads them as the protobuf message "  \
	"T and\nprints its proto3 JSON mapping (--json: value_json beside "   \
	"value).\nA partitioned service's keys are each in one partition, "   \
	"answered by its\nowner: get asks the partition of KEY "              \
	"(mesh_partition_of, the key\nhashed as events' keys are), then "     \
	"the others in turn; scan each\npartition in turn."

const struct cli_cmd state_commands[] = {
        {.name = "get",
         .summary = "Print the value of a key in a service's state.",
         .usage = "SERVICE KEY [--state DIR] [--type T] [--hex] [--raw]",
         .help = STATE_HELP,
         .opts = get_opts,
         .run = cmd_state_get,
         .min_pos = 2,
         .max_pos = 2},
        {.name = "scan",
         .summary = "List a service's keys (and values) in order.",
         .usage = "SERVICE [PREFIX] [--state DIR] [--type T] [--limit N]",
         .help = STATE_HELP "\nOne key a line: KEY, a tab, VALUE. Says "
                            "on standard error when --limit cut\nthe "
                            "list short.",
         .opts = scan_opts,
         .run = cmd_state_scan,
         .min_pos = 1,
         .max_pos = 2},
        {.name = "backup",
         .summary = "Copy a service's environment, consistently, while it "
                    "runs.",
         .usage = "SERVICE DEST [--state DIR]",
         .help = "Writes DEST/data.mdb, a compacted copy of one moment of "
                 "the whole environment\n(every database), taken with "
                 "mdb_env_copy2 in a read transaction: the\nservice goes "
                 "on writing. A running instance makes it and meshctl "
                 "fetches it\nover NATS in chunks, checking its SHA-256 "
                 "(--state DIR copies a stopped\nservice's files). DEST "
                 "must be a new or empty directory. To restore,\nstop "
                 "the service and put DEST/data.mdb in its state "
                 "directory (remove\nlock.mdb there).",
         .opts = backup_opts,
         .run = cmd_state_backup,
         .min_pos = 2,
         .max_pos = 2},
        {NULL},
};

const struct cli_cmd new_commands[] = {
        {.name = "service",
         .summary = "Make a new service from the template.",
         .usage = "NAME [--dir DIR]",
         .help = "Writes DIR/NAME/main.c and DIR/NAME/meson.build from "
                 "DIR/template/*.in\n(@NAME@ replaced) and adds "
                 "subdir('NAME') to DIR/meson.build. Refuses an\nexisting "
                 "DIR/NAME. Run it from the project's root; then build.",
         .opts = new_opts,
         .run = cmd_new_service,
         .min_pos = 1,
         .max_pos = 1},
        {NULL},
};

static const struct cli_opt service_info_opts[] = {
        {"--wait", "MS",
         "collect the instances' reports this long, 10-10000 ms (300)"},
        {NULL, NULL, NULL},
};

static const struct cli_opt service_delete_opts[] = {
        CLI_YES_OPT,
        {NULL, NULL, NULL},
};

const struct cli_cmd service_commands[] = {
        {.name = "info",
         .summary = "Show a partitioned service's partitions and owners.",
         .usage = "SERVICE [--wait MS]",
         .help = "For each partition: its owner (the instance holding "
                 "its lease), the lease's\nepoch (its revision: it grows "
                 "with every new owner) and age (* when being\nhanded "
                 "over), the events waiting and in flight in its "
                 "consumer, and what\nthe owner reports: its changelog "
                 "position, batches committed, and how it\nrestored the "
                 "partition when it took it (time, snapshot bytes, "
                 "changelog\nrecords, or its local copy). Then the "
                 "instances, alive or not.",
         .opts = service_info_opts,
         .run = cmd_service_info,
         .min_pos = 1,
         .max_pos = 1},
        {.name = "delete",
         .summary = "Delete a partitioned service's partitions and "
                    "changelog.",
         .usage = "SERVICE [--yes]",
         .help = "Deletes the record of its partition count, its "
                 "partition stream (events\nnot yet taken), its changelog "
                 "and snapshot streams. Stop its instances\nfirst; a "
                 "start afterwards begins afresh. " CONFIRM_HELP,
         .opts = service_delete_opts,
         .run = cmd_service_delete,
         .min_pos = 1,
         .max_pos = 1},
        {NULL},
};
