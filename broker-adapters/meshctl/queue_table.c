/* queue_table.c: the `meshctl queue` command tree. */
#include "cli.h"
#include "commands.h"
#include "message.h"

static const struct cli_opt none[] = {{NULL, NULL, NULL}};

#define ATTR_OPTS                                                             \
	{"--visibility-timeout", "S", "VisibilityTimeout, 0-43200 (30)"},     \
	        {"--delay", "S", "DelaySeconds, 0-900 (0)"},                  \
	        {"--retention", "S",                                          \
	         "MessageRetentionPeriod, 60-1209600 (345600)"},              \
	        {"--max-size", "BYTES",                                       \
	         "MaximumMessageSize, 1024-1048576 (262144)"},                \
	        {"--receive-wait", "S",                                       \
	         "ReceiveMessageWaitTimeSeconds, 0-20 (0)"},                  \
	        {"--dlq", "NAME",                                             \
	         "dead-letter queue (RedrivePolicy target)"},                 \
	        {"--max-receive", "N",                                        \
	         "maxReceiveCount before dead-lettering, "                    \
	         "1-1000 (10)"},                                              \
	        {"--replicas", "N", REPLICAS_HELP},                           \
	        {"--require-signers", "A,B", REQUIRE_SIGNERS_HELP},           \
	{                                                                     \
		"--content-based-dedup", NULL,                                \
		        "ContentBasedDeduplication (FIFO)"                    \
	}

static const struct cli_opt create_opts[] = {
        {"--fifo", NULL, "a FIFO queue (the name must end in .fifo)"},
        ATTR_OPTS,
        ENCRYPT_CREATE_OPTS,
        {"--partitions", "N",
         "FIFO: partitions that groups hash to, 1-256 "
         "(64)"},
        {NULL, NULL, NULL},
};

static const struct cli_opt set_opts[] = {
        ATTR_OPTS,
        ENCRYPT_OPTS,
        {"--no-dlq", NULL, "remove the redrive policy"},
        {"--no-content-based-dedup", NULL,
         "turn content-based "
         "de-duplication off"},
        {NULL, NULL, NULL},
};

static const struct cli_opt send_opts[] = {
        MSG_OPTS,
        STDIN_OPT,
        SIGN_OPTS,
        AS_OPT,
        {"--delay", "S",
         "DelaySeconds for this message, 0-900 (standard "
         "queues)"},
        {"--group", "G", "MessageGroupId (required on FIFO queues)"},
        {"--dedup-id", "D", "MessageDeduplicationId (FIFO)"},
        {NULL, NULL, NULL},
};

static const struct cli_opt entries_opts[] = {
        {"--entries", "JSON", "the entries, in the AWS CLI's JSON shape"},
        {NULL, NULL, NULL},
};

static const struct cli_opt send_batch_opts[] = {
        {"--entries", "JSON", "the entries, in the AWS CLI's JSON shape"},
        AS_OPT,
        {"--seed", "FILE", "--as NAME's seed file (mode 0600)"},
        {NULL, NULL, NULL},
};

static const struct cli_opt receive_opts[] = {
        {"--max", "N", "MaxNumberOfMessages, 1-10 (1)"},
        {"--wait", "S", "WaitTimeSeconds (long polling), 0-20 (the queue's)"},
        {"--visibility-timeout", "S",
         "for these messages, 0-43200 (the "
         "queue's)"},
        RAW_OPT,
        {NULL, NULL, NULL},
};

static const struct cli_opt peek_opts[] = {
        {"--max", "N", "messages to show, 1-10000 (10)"},
        RAW_OPT,
        {NULL, NULL, NULL},
};

static const struct cli_opt delete_opts[] = {
        CLI_YES_OPT,
        {NULL, NULL, NULL},
};

static const struct cli_opt list_opts[] = {
        {"--prefix", "P", "only queues whose names start with P"},
        {NULL, NULL, NULL},
};

static const struct cli_opt dead_letter_opts[] = {
        {"--reason", "TEXT", "why (kept with the message)"},
        {NULL, NULL, NULL},
};

static const struct cli_opt redrive_opts[] = {
        {"--to", "QUEUE", "move here instead of each message's source queue"},
        {"--rate", "N", "at most N messages per second (no limit)"},
        {"--id", "MESSAGE-ID", "only this message; repeatable"},
        {"--attr-match", "NAME=VALUE",
         "only messages with this attribute "
         "value"},
        {"--max", "N", "move at most N messages"},
        {NULL, NULL, NULL},
};

const struct cli_cmd queue_commands[] = {
        {"create", "Create a queue (idempotent, as SQS's CreateQueue).",
         "NAME [OPTIONS]", NULL, create_opts, cmd_queue_create, NULL, 1, 1},
        {"set-attributes", "Change a queue's attributes (those given).",
         "NAME [OPTIONS]", NULL, set_opts, cmd_queue_set_attributes, NULL, 1,
         1},
        {"info",
         "Show a queue's counts and attributes "
         "(get-queue-attributes).",
         "NAME", NULL, none, cmd_queue_info, NULL, 1, 1},
        {"list", "List queues.", "[--prefix P]", NULL, list_opts,
         cmd_queue_list, NULL, 0, 0},
        {"delete", "Delete a queue and its messages.", "NAME [--yes]",
         CONFIRM_HELP, delete_opts, cmd_queue_delete, NULL, 1, 1},
        {"purge", "Delete every message of a queue.", "NAME", NULL, none,
         cmd_queue_purge, NULL, 1, 1},
        {"send", "Send a message.",
         "NAME (--body TEXT | --type T --data OBJ) [OPTIONS]",
         "--type T --data OBJ encodes OBJ as the protobuf message T (see "
         "schemas/).",
         send_opts, cmd_queue_send, NULL, 1, 1},
        {"send-batch", "Send up to 10 messages (send-message-batch).",
         "NAME --entries JSON",
         "JSON: [{\"Id\":\"a\",\"MessageBody\":\"...\",\"DelaySeconds\":0,\n"
         "        \"MessageGroupId\":\"g\",\"MessageDeduplicationId\":\"d\",\n"
         "        \"MessageAttributes\":{\"k\":{\"DataType\":\"String\","
         "\"StringValue\":\"v\"}}}, ...]\nExits 1 when any entry failed.",
         send_batch_opts, cmd_queue_send_batch, NULL, 1, 1},
        {"receive", "Receive up to 10 messages.", "NAME [OPTIONS]",
         PAYLOAD_HELP, receive_opts, cmd_queue_receive, NULL, 1, 1},
        {"peek", "Show waiting messages without receiving them.",
         "NAME [--max N] [--raw]",
         "Receive counts and visibility stay as they are; messages in flight "
         "are shown too.\n" PAYLOAD_HELP,
         peek_opts, cmd_queue_peek, NULL, 1, 1},
        {"delete-message", "Delete a received message.", "NAME RECEIPT", NULL,
         none, cmd_queue_delete_message, NULL, 2, 2},
        {"delete-message-batch", "Delete up to 10 received messages.",
         "NAME --entries JSON",
         "JSON: [{\"Id\":\"a\",\"ReceiptHandle\":\"...\"}, ...]\n"
         "Exits 1 when any entry failed.",
         entries_opts, cmd_queue_delete_message_batch, NULL, 1, 1},
        {"change-visibility",
         "Make a received message visible again after S "
         "seconds (0: now).",
         "NAME RECEIPT S", NULL, none, cmd_queue_change_visibility, NULL, 3,
         3},
        {"change-visibility-batch",
         "Change the visibility of up to 10 "
         "messages.",
         "NAME --entries JSON",
         "JSON: [{\"Id\":\"a\",\"ReceiptHandle\":\"...\","
         "\"VisibilityTimeout\":0}, ...]\nExits 1 when any entry failed.",
         entries_opts, cmd_queue_change_visibility_batch, NULL, 1, 1},
        {"dead-letter",
         "Move a received message to the dead-letter queue "
         "now.",
         "NAME RECEIPT [--reason TEXT]", NULL, dead_letter_opts,
         cmd_queue_dead_letter, NULL, 2, 2},
        {"redrive", "Move messages from a dead-letter queue back.",
         "DLQ [--to SOURCE] [--rate N] [--id ID]... [--attr-match NAME=VALUE]",
         "Like SQS's StartMessageMoveTask: each message goes back to the "
         "queue it came from\n(or to --to). A redrive that is interrupted "
         "and run again neither loses\nnor duplicates messages.",
         redrive_opts, cmd_queue_redrive, NULL, 1, 1},
        {NULL},
};
