/* message.h: what meshctl's sending commands share: a message (an event)
 * from flags or from an AWS-shaped entry, and batch results in the AWS
 * CLI's shapes. */
#ifndef MESHCTL_MESSAGE_H
#define MESHCTL_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cli.h"
#include "mesh/sender.h"

/* The options msg_from_flags reads, for a command's option table. */
#define MSG_OPTS                                                              \
	{"--body", "TEXT", "the message body (text)"},                        \
	        {"--body-file", "FILE",                                       \
	         "the message body from a file (- for stdin)"},               \
	        {"--type", "T",                                               \
	         "the event type (evmesh.message); with --data, the "         \
	         "protobuf message (see schemas/)"},                          \
	        {"--data", "OBJ",                                             \
	         "the payload as JSON, encoded as protobuf message --type"},  \
	        {"--data-file", "FILE", "--data from a file (- for stdin)"},  \
	{                                                                     \
		"--attr", "NAME=TYPE:VALUE",                                  \
		        "a message attribute; TYPE String, Number, "          \
		        "String.Array or Binary (base64); repeatable"         \
	}

/* --stdin: many messages, one a line, sent through a sender. */
#define STDIN_OPT                                                             \
	{                                                                     \
		"--stdin", NULL,                                              \
		        "one message a line of standard input, pipelined (a " \
		        "window of 1024); with --type T each line is JSON "   \
		        "for "                                                \
		        "T (JSON Lines)"                                      \
	}

/* Send every line of standard input as one message: a text body, or
 * with --type T a JSON object encoded as the message T; --attr and --group
 * apply to each. `open` opens a sender on the target with the callback it
 * is given. Prints a line per message (--json: JSON Lines {"Line",
 * "MessageId"} or {"Line", "Error"}), then a count on standard error.
 * To a target that encrypts (seal_target, "topic:NAME" or "queue:NAME")
 * each message is sealed with --as NAME --seed FILE (or --sign's
 * identity), then signed with --sign.
 * Returns CLI_OK, CLI_FAIL when any message failed (the others are sent),
 * or CLI_USAGE for flags that do not go with --stdin. */
int send_stdin(struct cli *cli,
               mesh_err (*open)(void *target, mesh_sent_fn fn, void *arg,
                                struct mesh_sender **out),
               void *target, struct mesh_conn *c, const char *seal_target,
               bool encrypt);

/* --raw, and what it changes, for the commands that show messages. */
#define RAW_OPT                                                               \
	{                                                                     \
		"--raw", NULL,                                                \
		        "show a protobuf payload's bytes (base64), not its "  \
		        "JSON"                                                \
	}
#define PAYLOAD_HELP                                                          \
	"A protobuf payload whose type the schema registry knows prints as "  \
	"its\nproto3 JSON mapping (--json: \"BodyJson\" beside the base64 "   \
	"\"Body\"); --raw\nkeeps the bytes. A message that is not a "         \
	"readable CloudEvent shows its\nbytes (base64) and "                  \
	"Attributes.MeshParseError."

/* The message of --body TEXT | --body-file FILE | --type T --data OBJ |
 * --type T --data-file FILE, with its --attr NAME=TYPE:VALUE attributes.
 * Returns CLI_OK with *out set, or the exit code after printing why. */
int msg_from_flags(struct cli *cli, struct mesh_event **out);

/* A payload as given on the line: at most one of --body TEXT,
 * --body-file FILE, --data OBJ and --data-file FILE (- for stdin). */
struct payload {
	const char *text; /* NULL when none was given */
	bool data;        /* JSON to encode as protobuf message --type */
	const char *flag; /* the flag it came from, for messages */
	char *owned;      /* a file's contents (text points into it) */
};

/* Read the payload flags into *p (free with payload_fini, also after a
 * failure). One is needed when required. (--data needs a type: the
 * caller checks, a schedule may have one already.) Returns CLI_OK or the
 * exit code after printing why. */
int payload_from_flags(struct cli *cli, bool required, struct payload *p);
void payload_fini(struct payload *p);

/* The message of --entries[i]: its text under body_key ("MessageBody",
 * "Message") and its MessageAttributes ({"k": {"DataType": "String",
 * "StringValue": "v"}}). Returns CLI_OK or the exit code after printing
 * why. */
int msg_from_entry(struct cli *cli, json_t *entry, size_t i,
                   const char *body_key, struct mesh_event **out);

/* --entries JSON: an array of 1-max objects; NULL after printing why. */
json_t *entries_arg(struct cli *cli, size_t max);
/* A Failed entry: {"Id", "SenderFault", "Code", "Message"}. */
json_t *failed_entry(const char *id, mesh_err err, const char *msg);
/* Print {"Successful": ok, "Failed": failed} (takes both); exit code 1
 * when any entry failed. */
int batch_output(struct cli *cli, json_t *ok, json_t *failed);

/* A whole file ("-": standard input) as a string; NULL after printing
 * why. */
char *read_file(struct cli *cli, const char *path);
/* o[key] = v as a decimal string, as the AWS CLI prints counts. */
void put_num(json_t *o, const char *key, int64_t v);

/* The bytes as the protobuf message of full name type (schema registry),
 * in its proto3 JSON mapping: *out a new reference. False with why filled
 * in (the type unknown, the bytes not such a message). */
bool proto_json(const char *type, const void *data, size_t len, json_t **out,
                char *why, size_t why_size);
/* o["Body"]: the event's payload, text as it is, anything else (or all,
 * with as_bytes) in base64; o["BodyJson"]: unless raw or as_bytes, a
 * protobuf payload of a registered type in its proto3 JSON mapping. */
void put_body(json_t *o, const struct mesh_event *ev, bool as_bytes, bool raw);
/* Print o's BodyJson (compact) or else its Body, and a newline. */
void print_body(const json_t *o);

/* The event's message attributes in the AWS CLI's shape ({"k":
 * {"DataType": "String", "StringValue": "v"}}), or NULL when it has none;
 * and their text lines ("attr NAME VALUE (TYPE)"). */
json_t *msg_attrs_json(const struct mesh_event *ev);
void print_msg_attrs(const json_t *mattrs);

#endif
