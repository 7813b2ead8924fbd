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

static const struct cli_opt sched_opts[] = {
        {"--expression", "EXPR", "cron(...), rate(...), at(...) or Unix cron"},
        {"--tz", "ZONE", "IANA time zone of the expression (UTC)"},
        {"--target", "queue:NAME|topic:NAME", "where each firing goes"},
        {"--type", "T", "the event type (evmesh.scheduled)"},
        {"--body", "TEXT",
         "the body; <aws.scheduler.scheduled-time>, "
         "<aws.scheduler.schedule-arn> and "
         "<aws.scheduler.attempt-number> are filled in"},
        {"--body-file", "FILE", "the body from a file (- for stdin)"},
        {"--data", "OBJ",
         "the payload as JSON, encoded as protobuf message --type "
         "(placeholders filled in first)"},
        {"--data-file", "FILE", "--data from a file (- for stdin)"},
        {"--attr", "NAME=TYPE:VALUE",
         "a message attribute of each firing (at most 8); repeatable"},
        {"--start", "TIME", "no firing before (ISO-8601)"},
        {"--end", "TIME", "no firing after (ISO-8601)"},
        {"--missed", "POLICY",
         "after downtime: latest (default), all or "
         "skip"},
        {"--delete-after", NULL,
         "a one-time schedule deletes itself after "
         "firing"},
        {"--window", "DURATION",
         "flexible window, 1-1440 minutes (15, 15m, 2h): each firing at a "
         "point in it"},
        {"--retry-max", "N", "retries of a failed firing, 0-185 (185)"},
        {"--max-age", "DURATION", "give a firing up after, 60 s-24 h (24h)"},
        {"--dlq", "QUEUE", "queue for firings given up"},
        {NULL, NULL, NULL},
};

static const struct cli_cmd schedule_commands[] = {
        {.name = "create",
         .summary = "Create a schedule.",
         .usage = "NAME --expression EXPR --target queue:NAME [OPTIONS]",
         .opts = sched_opts,
         .run = cmd_schedule_create,
         .min_pos = 1,
         .max_pos = 1},
        {.name = "update",
         .summary = "Change a schedule (the options given).",
         .usage = "NAME [OPTIONS]",
         .opts = sched_opts,
         .run = cmd_schedule_update,
         .min_pos = 1,
         .max_pos = 1},
        {.name = "pause",
         .summary = "Stop a schedule firing, keeping it.",
         .usage = "NAME",
         .opts = no_opts,
         .run = cmd_schedule_pause,
         .min_pos = 1,
         .max_pos = 1},
        {.name = "resume",
         .summary = "Let a paused schedule fire again.",
         .usage = "NAME",
         .opts = no_opts,
         .run = cmd_schedule_resume,
         .min_pos = 1,
         .max_pos = 1},
        {.name = "delete",
         .summary = "Delete a schedule.",
         .usage = "NAME",
         .opts = no_opts,
         .run = cmd_schedule_delete,
         .min_pos = 1,
         .max_pos = 1},
        {.name = "info",
         .summary = "Show a schedule, its next firings and its last one.",
         .usage = "NAME",
         .opts = no_opts,
         .run = cmd_schedule_info,
         .min_pos = 1,
         .max_pos = 1},
        {.name = "list",
         .summary = "List the schedules.",
         .usage = "",
         .opts = no_opts,
         .run = cmd_schedule_list},
        {.name = "next",
         .summary = "Print the next firings of an expression.",
         .usage = "EXPR [--tz ZONE] [--from TIME] [--count N]",
         .help = "EXPR is cron(...), rate(...), at(...) or a bare Unix "
                 "cron line (quote it).\nPrints ISO-8601 UTC instants, "
                 "one per line, as a running mesh-scheduler\ncomputes "
                 "them (its request API). An invalid expression or zone "
                 "prints which\nfield is wrong and exits 2.",
         .opts = next_opts,
         .run = cmd_schedule_next,
         .min_pos = 1,
         .max_pos = 1},
        {NULL},
};

static const struct cli_opt filter_test_opts[] = {
        {"--policy", "JSON", "the SNS filter policy"},
        {"--scope", "SCOPE", "MessageAttributes (default) or MessageBody"},
        {"--attributes", "JSON",
         "message attributes, as SNS's API takes them: {\"name\": "
         "{\"DataType\": \"String\", \"StringValue\": \"x\"}}"},
        {"--body", "JSON", "the message body"},
        {NULL, NULL, NULL},
};

static const struct cli_cmd filter_commands[] = {
        {.name = "test",
         .summary = "Print whether a filter policy passes a message.",
         .usage = "--policy JSON [--scope MessageAttributes|MessageBody] "
                  "(--attributes JSON | --body JSON)",
         .help = "Decides as SNS does and prints 'match' or 'no match' "
                 "(exit 0 either way;\n--json prints {\"Match\": "
                 "true}). Needs no server. An invalid policy prints\nSNS's "
                 "reason, naming the key and operator, and exits 2; so "
                 "does input\nthat is not JSON.",
         .opts = filter_test_opts,
         .run = cmd_filter_test},
        {NULL},
};

static const struct cli_opt auth_init_opts[] = {
        {"--dir", "DIR", "where the seeds and files go (var/auth)"},
        {"--service", "NAME=PROGRAM",
         "a service and its program (asked for PROGRAM --describe); "
         "repeatable; services of an earlier init are kept"},
        {"--offline", NULL,
         "write the files only, without the broker: no public keys "
         "recorded in MESH_KEYS, no functions or queue redrive "
         "policies read"},
        {NULL, NULL, NULL},
};

static const struct cli_opt auth_show_opts[] = {
        {"--dir", "DIR", "where auth init wrote (var/auth)"},
        {NULL, NULL, NULL},
};

static const struct cli_cmd auth_commands[] = {
        {.name = "init",
         .summary = "Make the identities and nats-server's authorization "
                    "block.",
         .usage = "[--dir DIR] [--service NAME=PROGRAM]... [--offline]",
         .help = "An NKey identity (DIR/NAME.nk, mode 0600, kept when "
                 "it exists) for admin,\nmesh-router, mesh-scheduler, "
                 "mesh-supervisor and each service; DIR/\n"
                 "authorization.conf, the users block for nats-server "
                 "with each identity's\npublish and subscribe "
                 "permissions, computed from what the services\ndeclare "
                 "(their --describe); DIR/permissions.json, the same "
                 "with reasons.\nUnless --offline (as the connection's "
                 "user: the admin, once the broker uses\nthe block): "
                 "every function defined in MESH_FUNCTIONS is a service "
                 "too (its program\n--describe'd with its arguments and "
                 "environment), a consumed queue's redrive\ndead-letter "
                 "queue is granted to its consumers, and the public keys "
                 "are\nrecorded in MESH_KEYS.",
         .opts = auth_init_opts,
         .run = cmd_auth_init},
        {.name = "show",
         .summary = "An identity's permissions, each with why.",
         .usage = "NAME [--dir DIR]",
         .opts = auth_show_opts,
         .run = cmd_auth_show,
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
        {.name = "key",
         .summary = "The directory of public keys signed events are "
                    "verified against.",
         .usage = "COMMAND [ARGS]",
         .opts = no_opts,
         .subs = key_commands},
        {.name = "filter",
         .summary = "SNS subscription filter policies: test one offline.",
         .usage = "COMMAND [ARGS]",
         .opts = no_opts,
         .subs = filter_commands},
        {.name = "topic",
         .summary = "Topics with SNS semantics: create, publish, subscribe, "
                    "...",
         .usage = "COMMAND [ARGS]",
         .opts = no_opts,
         .subs = topic_commands},
        {.name = "subscription",
         .summary = "Subscriptions of queues and services to topics.",
         .usage = "COMMAND [ARGS]",
         .opts = no_opts,
         .subs = subscription_commands},
        {.name = "schedule",
         .summary = "Schedules: create, list, preview when they fire, ...",
         .usage = "COMMAND [ARGS]",
         .opts = no_opts,
         .subs = schedule_commands},
        {.name = "stats",
         .summary = "Show the counters and latencies of running services.",
         .usage = "[SERVICE] [--wait MS]",
         .help = "Asks mesh.service.SERVICE.stats (without SERVICE: "
                 "mesh.services.stats, every\nservice) and prints each "
                 "service's counters summed over its instances, then\n"
                 "one row per instance. A service's latency percentiles "
                 "are the largest of\nits instances' (an upper bound). "
                 "Exit 1 when no instance answers.",
         .opts = stats_opts,
         .run = cmd_stats,
         .max_pos = 1},
        {.name = "state",
         .summary = "Read a service's state while it runs; back it up.",
         .usage = "COMMAND [ARGS]",
         .opts = no_opts,
         .subs = state_commands},
        {.name = "service",
         .summary = "A partitioned service's partitions, owners, "
                    "changelog.",
         .usage = "COMMAND [ARGS]",
         .opts = no_opts,
         .subs = service_commands},
        {.name = "function",
         .summary = "Functions: services run on demand by mesh-supervisor.",
         .usage = "COMMAND [ARGS]",
         .opts = no_opts,
         .subs = function_commands},
        {.name = "route",
         .summary = "HTTP routes of mesh-gateway: create, list, ...",
         .usage = "COMMAND [ARGS]",
         .opts = no_opts,
         .subs = route_commands},
        {.name = "param",
         .summary = "Parameters and secrets (SSM Parameter Store).",
         .usage = "COMMAND [ARGS]",
         .opts = no_opts,
         .subs = param_commands},
        {.name = "auth",
         .summary = "Identities and their NATS permissions.",
         .usage = "COMMAND [ARGS]",
         .opts = no_opts,
         .subs = auth_commands},
        {.name = "new",
         .summary = "Make a new service from the template.",
         .usage = "COMMAND [ARGS]",
         .opts = no_opts,
         .subs = new_commands},
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
