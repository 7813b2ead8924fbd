/* commands.h: the commands of meshctl, one run function each. */
#ifndef MESHCTL_COMMANDS_H
#define MESHCTL_COMMANDS_H

#include "cli.h"

int cmd_version(struct cli *cli);
int cmd_ping(struct cli *cli);
int cmd_smoke(struct cli *cli);

/* The `meshctl queue` tree (queue_table.c). */
extern const struct cli_cmd queue_commands[];

int cmd_queue_create(struct cli *cli);
int cmd_queue_set_attributes(struct cli *cli);
int cmd_queue_delete(struct cli *cli);
int cmd_queue_purge(struct cli *cli);
int cmd_queue_list(struct cli *cli);
int cmd_queue_info(struct cli *cli);
int cmd_queue_send(struct cli *cli);
int cmd_queue_send_batch(struct cli *cli);
int cmd_queue_receive(struct cli *cli);
int cmd_queue_peek(struct cli *cli);
int cmd_queue_delete_message(struct cli *cli);
int cmd_queue_delete_message_batch(struct cli *cli);
int cmd_queue_change_visibility(struct cli *cli);
int cmd_queue_change_visibility_batch(struct cli *cli);
int cmd_queue_dead_letter(struct cli *cli);
int cmd_queue_redrive(struct cli *cli);

/* meshctl auth (cmd_auth.c). */
int cmd_auth_init(struct cli *cli);
int cmd_auth_show(struct cli *cli);

/* meshctl filter test (cmd_filter.c). */
int cmd_filter_test(struct cli *cli);

/* The `meshctl topic` and `meshctl subscription` trees (topic_table.c). */
extern const struct cli_cmd topic_commands[];
extern const struct cli_cmd subscription_commands[];

int cmd_topic_create(struct cli *cli);
int cmd_topic_set_attributes(struct cli *cli);
int cmd_topic_delete(struct cli *cli);
int cmd_topic_list(struct cli *cli);
int cmd_topic_info(struct cli *cli);
int cmd_topic_publish(struct cli *cli);
int cmd_topic_publish_batch(struct cli *cli);
int cmd_topic_subscribe(struct cli *cli);
int cmd_topic_tail(struct cli *cli);
int cmd_subscription_list(struct cli *cli);
int cmd_subscription_info(struct cli *cli);
int cmd_subscription_set_attributes(struct cli *cli);
int cmd_subscription_delete(struct cli *cli);

/* The `meshctl schedule` tree (main.c). */
int cmd_schedule_next(struct cli *cli);
int cmd_schedule_create(struct cli *cli);
int cmd_schedule_update(struct cli *cli);
int cmd_schedule_pause(struct cli *cli);
int cmd_schedule_resume(struct cli *cli);
int cmd_schedule_delete(struct cli *cli);
int cmd_schedule_info(struct cli *cli);
int cmd_schedule_list(struct cli *cli);

/* Services: `meshctl stats`, `meshctl state`, `meshctl new service`
 * (service_table.c). */
extern const struct cli_opt stats_opts[];
extern const struct cli_cmd state_commands[];
extern const struct cli_cmd new_commands[];

int cmd_stats(struct cli *cli);
/* Ask subject once and collect every instance's stats answer for wait_ms
 * into *out (a JSON array; only service want's when want is not NULL).
 * Prints why not and returns the exit code (cmd_stats.c). */
int stats_gather(struct cli *cli, struct mesh_conn *c, const char *subject,
                 const char *want, int64_t wait_ms, json_t **out);
/* The same for any subject every responder answers: replies whose
 * string field `key` is present (and is want, when want is not NULL);
 * the others are counted and named as not `what` ("a service's
 * stats"). */
int replies_gather(struct cli *cli, struct mesh_conn *c, const char *subject,
                   const char *key, const char *want, const char *what,
                   int64_t wait_ms, json_t **out);

/* The `meshctl service` tree (cmd_service.c, service_table.c). */
extern const struct cli_cmd service_commands[];
int cmd_service_info(struct cli *cli);
int cmd_service_delete(struct cli *cli);
int cmd_state_get(struct cli *cli);
int cmd_state_scan(struct cli *cli);
int cmd_state_backup(struct cli *cli);
int cmd_new_service(struct cli *cli);

/* The `meshctl function` tree (function_table.c, cmd_function.c). */
extern const struct cli_cmd function_commands[];
int cmd_function_create(struct cli *cli);
int cmd_function_update(struct cli *cli);
int cmd_function_delete(struct cli *cli);
int cmd_function_list(struct cli *cli);
int cmd_function_info(struct cli *cli);

/* The `meshctl route` tree (cmd_route.c). */
extern const struct cli_cmd route_commands[];
int cmd_route_create(struct cli *cli);
int cmd_route_delete(struct cli *cli);
int cmd_route_list(struct cli *cli);
int cmd_route_info(struct cli *cli);

/* The `meshctl param` tree (cmd_param.c). */
extern const struct cli_cmd param_commands[];
int cmd_param_put(struct cli *cli);
int cmd_param_get(struct cli *cli);
int cmd_param_list(struct cli *cli);
int cmd_param_history(struct cli *cli);
int cmd_param_delete(struct cli *cli);

/* The `meshctl key` tree and signing (cmd_key.c). */
extern const struct cli_cmd key_commands[];
int cmd_key_create(struct cli *cli);
int cmd_key_add(struct cli *cli);
int cmd_key_list(struct cli *cli);
int cmd_key_show(struct cli *cli);
int cmd_key_delete(struct cli *cli);
int cmd_key_rotate(struct cli *cli);

/* --encrypt and --readers on topics and queues (create), and
 * --no-encrypt (set-attributes). */
#define ENCRYPT_CREATE_OPTS                                                   \
	{"--encrypt", NULL,                                                   \
	 "Encrypt: seal every event's data (XChaCha20-Poly1305) with a "      \
	 "data key only Readers and admin can open"},                         \
	{                                                                     \
		"--readers", "A,B",                                           \
		        "Readers: the identities (in MESH_KEYS) that may "    \
		        "open its events (at most 8)"                         \
	}
#define ENCRYPT_OPTS                                                          \
	ENCRYPT_CREATE_OPTS,                                                  \
	{                                                                     \
		"--no-encrypt", NULL,                                         \
		        "Encrypt off (old messages stay sealed)"              \
	}
/* --as NAME: the identity that seals, for an encrypted target. */
#define AS_OPT                                                                \
	{                                                                     \
		"--as", "NAME",                                               \
		        "seal as NAME (a reader or admin; with --seed) when " \
		        "the target is encrypted"                             \
	}
/* --encrypt, --no-encrypt and --readers A,B into *encrypt and readers
 * (size bytes), as they are when not given (--readers alone keeps
 * Encrypt). False after a usage error. */
bool encrypt_flags(struct cli *cli, bool *encrypt, char *readers, size_t size);
/* Encrypt, and for an encrypted target ("topic:NAME") Readers, KeyIds
 * and CurrentKeyId, into at (strings: KeyIds as "1,2", for
 * get-queue-attributes' all-strings shape). */
struct mesh_conn;
void encrypt_attrs(struct mesh_conn *c, const char *target, bool encrypt,
                   const char *readers, json_t *at, bool strings);
struct mesh_event;
struct mesh_identity;
struct mesh_keyring;
/* What seals for a target that encrypts: a keyring opened with the
 * identity of --as NAME --seed FILE, or signer's (--sign). */
struct sealer {
	struct mesh_identity *own; /* --as's */
	struct mesh_keyring *kr;   /* NULL: the target is clear */
	char target[300];
};
/* Open sl for target ("topic:NAME" / "queue:NAME"); for a clear target
 * (encrypt false) nothing is opened and --as is refused. Returns CLI_OK
 * or the exit code after printing why (no identity: a usage error). */
int sealer_open(struct cli *cli, struct mesh_conn *c, const char *target,
                bool encrypt, const struct mesh_identity *signer,
                struct sealer *sl);
/* Seal ev (before signing it) when sl has a keyring. Returns CLI_OK or
 * CLI_FAIL after printing why ("sealed: 'bob' is not a reader ..."). */
int sealer_seal(struct cli *cli, struct sealer *sl, struct mesh_event *ev);
void sealer_close(struct sealer *sl);

/* --sign NAME --seed FILE, for the commands that send messages. */
#define SIGN_OPTS                                                             \
	{"--sign", "NAME",                                                    \
	 "sign each message as the identity NAME (Ed25519; see "              \
	 "meshctl key)"},                                                     \
	{                                                                     \
		"--seed", "FILE", "NAME's seed file (mode 0600)"              \
	}
/* --require-signers on queues and topics. */
#define REQUIRE_SIGNERS_HELP                                                  \
	"RequireSigners: accept only events signed by these identities "      \
	"(names in MESH_KEYS, at most 8; '' none)"
/* The identity of --sign NAME --seed FILE into *out (NULL when neither
 * is given: no signing). Returns CLI_OK or the exit code after printing
 * why. */
struct mesh_identity;
int signer_from_flags(struct cli *cli, struct mesh_identity **out);
/* CLI_OK, or a usage error when signing for a FIFO target (which
 * replaces the event id a signature covers). */
int signer_fifo_check(struct cli *cli, bool signing, bool fifo);
/* Sign ev as id (NULL: nothing to do) for a target, after
 * signer_fifo_check. Returns CLI_OK or the exit code after printing
 * why. */
struct mesh_event;
int sign_for(struct cli *cli, const struct mesh_identity *id, bool fifo,
             struct mesh_event *ev);
/* --require-signers A,B ('' clears) into dst (size bytes) when given;
 * false after a usage error (too long). */
bool require_signers_flag(struct cli *cli, char *dst, size_t size);

/* A service's name is 1-64 of [A-Za-z0-9_-]; prints a usage error and
 * returns false when it is not. */
bool service_name_check(const struct cli *cli, const char *name);

#endif
