/* topic_table.c: the `meshctl topic` and `meshctl subscription` trees. */
#include "cli.h"
#include "commands.h"
#include "message.h"

static const struct cli_opt none[] = {{NULL, NULL, NULL}};

static const struct cli_opt create_opts[] = {
        {"--fifo", NULL, "a FIFO topic (the name must end in .fifo)"},
        {"--content-based-dedup", NULL,
         "ContentBasedDeduplication (FIFO): the body's SHA-256 is the "
         "de-duplication id"},
        {"--archive-days", "N",
         "keep every message N days (1-365) for replay "
         "(ArchivePolicy)"},
        {"--replicas", "N", REPLICAS_HELP},
        {"--require-signers", "A,B", REQUIRE_SIGNERS_HELP},
        ENCRYPT_CREATE_OPTS,
        {NULL, NULL, NULL},
};

static const struct cli_opt set_opts[] = {
        {"--replicas", "N", REPLICAS_HELP},
        {"--require-signers", "A,B", REQUIRE_SIGNERS_HELP},
        ENCRYPT_OPTS,
        {NULL, NULL, NULL},
};

static const struct cli_opt delete_opts[] = {
        CLI_YES_OPT,
        {NULL, NULL, NULL},
};

static const struct cli_opt publish_opts[] = {
        MSG_OPTS,
        STDIN_OPT,
        SIGN_OPTS,
        AS_OPT,
        {"--subject", "TEXT", "the Subject (CloudEvents subject)"},
        {"--group", "G", "MessageGroupId (required on FIFO topics)"},
        {"--dedup-id", "D", "MessageDeduplicationId (FIFO)"},
        {NULL, NULL, NULL},
};

static const struct cli_opt entries_opts[] = {
        {"--entries", "JSON", "the entries, in the AWS CLI's JSON shape"},
        AS_OPT,
        {"--seed", "FILE", "--as NAME's seed file (mode 0600)"},
        {NULL, NULL, NULL},
};

#define FILTER_OPTS                                                           \
	{"--filter-policy", "JSON", "SNS filter policy"},                     \
	{                                                                     \
		"--filter-scope", "SCOPE",                                    \
		        "MessageAttributes (default) or MessageBody"          \
	}

static const struct cli_opt subscribe_opts[] = {
        {"--queue", "Q", "deliver to this queue (mesh-router forwards)"},
        {"--service", "NAME", "a service's subscription (it consumes it)"},
        FILTER_OPTS,
        {"--raw", NULL, "RawMessageDelivery: the event as published"},
        {"--replay-from", "TIME",
         "start with the archived messages from TIME (ISO-8601)"},
        {NULL, NULL, NULL},
};

static const struct cli_opt tail_opts[] = {
        {"--since", "TIME",
         "start with the messages still stored from TIME: ISO-8601, or a "
         "duration ago (15m, 2h)"},
        {"--count", "N", "stop after N messages"},
        RAW_OPT,
        {NULL, NULL, NULL},
};

static const struct cli_opt sub_list_opts[] = {
        {"--topic", "T", "only this topic's subscriptions"},
        {NULL, NULL, NULL},
};

static const struct cli_opt sub_set_opts[] = {
        FILTER_OPTS,
        {"--no-filter-policy", NULL, "remove the filter policy"},
        {"--raw", NULL, "RawMessageDelivery on"},
        {"--no-raw", NULL, "RawMessageDelivery off"},
        {NULL, NULL, NULL},
};

const struct cli_cmd topic_commands[] = {
        {"create", "Create a topic (idempotent, as SNS's CreateTopic).",
         "NAME [--fifo] [--content-based-dedup] [--archive-days N] "
         "[--replicas N] [--require-signers A,B] [--encrypt --readers "
         "A,B]",
         NULL, create_opts, cmd_topic_create, NULL, 1, 1},
        {"set-attributes",
         "Change a topic's replicas, RequireSigners, Encrypt or Readers "
         "(the rest is fixed at creation).",
         "NAME [--replicas N] [--require-signers A,B] [--encrypt "
         "--readers A,B | --no-encrypt]",
         "JetStream moves the copies while the topic stays in use; its "
         "subscriptions'\nconsumers follow.",
         set_opts, cmd_topic_set_attributes, NULL, 1, 1},
        {"delete", "Delete a topic, its messages and its subscriptions.",
         "NAME [--yes]", CONFIRM_HELP, delete_opts, cmd_topic_delete, NULL, 1,
         1},
        {"list", "List topics.", "", NULL, none, cmd_topic_list, NULL, 0, 0},
        {"info", "Show a topic's attributes and counts.", "NAME", NULL, none,
         cmd_topic_info, NULL, 1, 1},
        {"publish", "Publish a message to every subscription.",
         "NAME (--body TEXT | --type T --data OBJ) [OPTIONS]",
         "--type T --data OBJ encodes OBJ as the protobuf message T (see "
         "schemas/).",
         publish_opts, cmd_topic_publish, NULL, 1, 1},
        {"publish-batch", "Publish up to 10 messages (publish-batch).",
         "NAME --entries JSON",
         "JSON: [{\"Id\":\"a\",\"Message\":\"...\",\"Subject\":\"s\",\n"
         "        \"MessageGroupId\":\"g\",\"MessageDeduplicationId\":\"d\",\n"
         "        \"MessageAttributes\":{\"k\":{\"DataType\":\"String\","
         "\"StringValue\":\"v\"}}}, ...]\nExits 1 when any entry failed.",
         entries_opts, cmd_topic_publish_batch, NULL, 1, 1},
        {"subscribe", "Subscribe a queue (or a service) to a topic.",
         "NAME (--queue Q | --service NAME) [OPTIONS]",
         "Prints the subscription's id (TOPIC:HEX). Subscribing again with "
         "the same\nattributes returns the same id. A new subscription "
         "gets the messages\npublished from now on; --replay-from "
         "first delivers the topic's archive\nfrom that time.",
         subscribe_opts, cmd_topic_subscribe, NULL, 1, 1},
        {"tail", "Follow a topic's messages live, taking none of them.",
         "NAME [--since TIME] [--count N] [--raw]",
         "Prints each message the topic stores from now on (--since: "
         "first those still\nstored from TIME), until Ctrl-C (exit 0), "
         "--count, or the topic's deletion\n(exit 1). The tail is an "
         "ephemeral consumer that acknowledges nothing: every\n"
         "subscription still gets every message, and the topic keeps "
         "none for the tail\nonce it has been sent to it. A topic "
         "without an archive stores only what some\nsubscription has yet "
         "to take, so --since sees those; an archived topic, its\n"
         "archive. --json prints one object a line (JSON Lines).\n"
         "\n" PAYLOAD_HELP,
         tail_opts, cmd_topic_tail, NULL, 1, 1},
        {NULL},
};

const struct cli_cmd subscription_commands[] = {
        {"list", "List subscriptions, with their pending messages.",
         "[--topic T]", NULL, sub_list_opts, cmd_subscription_list, NULL, 0,
         0},
        {"info", "Show a subscription's attributes.", "ID", NULL, none,
         cmd_subscription_info, NULL, 1, 1},
        {"set-attributes",
         "Change a subscription's filter policy or raw delivery (at once).",
         "ID [OPTIONS]", NULL, sub_set_opts, cmd_subscription_set_attributes,
         NULL, 1, 1},
        {"delete", "Unsubscribe.", "ID [--yes]", CONFIRM_HELP, delete_opts,
         cmd_subscription_delete, NULL, 1, 1},
        {NULL},
};
