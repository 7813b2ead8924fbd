/* meshctl: the command line of evmesh, for producers and operators. */
#include "cli.h"
#include "commands.h"

static const struct cli_opt no_opts[] = {{NULL, NULL, NULL}};

static const struct cli_opt next_opts[] = {
        {"--tz", "ZONE", "IANA time zone of the expression (UTC)"},
        {"--from", "TIME", "ISO-8601 instant to start after (now)"},
        {"--count", "N", "how many firings, 1-10000 (5)"},
        {NULL, NULL, NULL},
};

static const struct cli_cmd schedule_commands[] = {
        {.name = "next",
         .summary = "Print the next firings of an expression, offline.",
         .usage = "EXPR [--tz ZONE] [--from TIME] [--count N]",
         .help = "EXPR is cron(...), rate(...), at(...) or a bare Unix "
                 "cron line (quote it).\nPrints ISO-8601 UTC instants, "
                 "one per line; needs no server. An invalid\nexpression "
                 "or zone prints which field is wrong and exits 2.",
         .opts = next_opts,
         .run = cmd_schedule_next,
         .min_pos = 1,
         .max_pos = 1},
        {NULL},
};

static const struct cli_cmd commands[] = {
        {.name = "version",
         .summary = "Print meshctl's version and the NATS client's.",
         .usage = "",
         .opts = no_opts,
         .run = cmd_version},
        {.name = "ping",
         .summary = "Connect to NATS and print the round-trip time.",
         .usage = "",
         .opts = no_opts,
         .run = cmd_ping},
        {.name = "smoke",
         .summary = "Publish an event to JetStream and consume it back.",
         .usage = "",
         .help = "Creates the stream MESH_SMOKE (subjects mesh.smoke.>, kept "
                 "an "
                 "hour) if missing,\npublishes one CloudEvents envelope, "
                 "reads it back through a pull consumer,\nchecks it and "
                 "prints the round trip.",
         .opts = no_opts,
         .run = cmd_smoke},
        {.name = "queue",
         .summary = "Queues with SQS semantics: create, send, receive, ...",
         .usage = "COMMAND [ARGS]",
         .opts = no_opts,
         .subs = queue_commands},
        {.name = "schedule",
         .summary = "Schedules: preview when an expression fires.",
         .usage = "COMMAND [ARGS]",
         .opts = no_opts,
         .subs = schedule_commands},
        {NULL},
};

static const struct cli_cmd root = {
        .name = "meshctl",
        .summary =
                "meshctl: publish, inspect and operate an evmesh event mesh.",
        .usage = "[GLOBAL OPTIONS] COMMAND [ARGS]",
        .opts = no_opts,
        .subs = commands,
};

int
main(int argc, char **argv)
{
	int rc = cli_main(&root, argc, argv);

	mesh_shutdown();
	return rc;
}
