/* cmd_key.c: meshctl key ..., the directory of public keys (MESH_KEYS)
 * that signed events are verified against, and the producers' side of
 * signing: --sign NAME --seed FILE on queue send and topic publish. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "cli.h"
#include "commands.h"
#include "message.h"
#include "mesh/clock.h"
#include "mesh/identity.h"
#include "mesh/seal.h"
#include "mesh/queue.h"
#include "mesh/topic.h"
#include "mesh/sign.h"

static const struct cli_opt none[] = {{NULL, NULL, NULL}};

static const struct cli_opt create_opts[] = {
        {"--seed", "FILE",
         "where to write the new seed (mode 0600; an existing file is "
         "never replaced)"},
        {NULL, NULL, NULL},
};

static const struct cli_opt add_opts[] = {
        {"--public", "U...", "the producer's public key (56 characters)"},
        {"--replace", NULL,
         "replace the key recorded under NAME (a rotation)"},
        {NULL, NULL, NULL},
};

static const struct cli_opt delete_opts[] = {
        CLI_YES_OPT,
        {NULL, NULL, NULL},
};

const struct cli_cmd key_commands[] = {
        {"create",
         "Make an identity: a new seed file and its public key "
         "recorded.",
         "NAME --seed FILE",
         "Writes a new NKey user seed to FILE (mode 0600; refused when "
         "FILE exists)\nand records its public key in MESH_KEYS under "
         "NAME (refused when NAME has\nanother key: nothing is written "
         "then). The seed signs events: meshctl\nqueue send|topic publish "
         "... --sign NAME --seed FILE.",
         create_opts, cmd_key_create, NULL, 1, 1},
        {"add", "Record a foreign producer's public key.",
         "NAME --public U... [--replace]",
         "For a producer that keeps its own seed (another team, another "
         "language).\nThe same key again is no change; another key under "
         "NAME needs --replace\n(a rotation: the old key stops verifying "
         "within seconds).",
         add_opts, cmd_key_add, NULL, 1, 1},
        {"list", "List the recorded keys.", "", NULL, none, cmd_key_list, NULL,
         0, 0},
        {"show", "Show a recorded key.", "NAME", NULL, none, cmd_key_show,
         NULL, 1, 1},
        {"rotate",
         "Give an encrypted topic or queue a new data key (old ones "
         "still open old messages).",
         "TOPIC | topic:NAME | queue:NAME",
         "A bare name is a topic's. The new key is sealed to the target's "
         "Readers and\nto admin (when MESH_KEYS has it); producers seal "
         "with it within 5 seconds.",
         none, cmd_key_rotate, NULL, 1, 1},
        {"delete", "Delete a recorded key (its events stop verifying).",
         "NAME [--yes]", CONFIRM_HELP, delete_opts, cmd_key_delete, NULL, 1,
         1},
        {NULL},
};

static int
key_fail(struct cli *cli, mesh_err err)
{
	return err == MESH_EINVAL
	               ? cli_usage_error(cli, "%s", mesh_errdetail())
	               : cli_fail(cli, err);
}

static json_t *
key_json(const struct mesh_key_record *k)
{
	char *curve = mesh_base64(k->curve, sizeof(k->curve));
	char when[32];
	json_t *j;

	mesh_time_format(k->created_ms / 1000, when);
	j = json_pack("{s:s, s:s, s:s?, s:s}", "Name", k->name, "PublicKey",
	              k->public_key, "CurveKey", curve, "Created", when);
	free(curve);
	return j;
}

int
cmd_key_create(struct cli *cli)
{
	const char *name = cli_pos(cli, 0), *seed = cli_opt(cli, "--seed");
	struct mesh_identity *id = NULL;
	struct mesh_key_record k;
	struct mesh_conn *c = NULL;
	mesh_err err;
	int rc;

	if (seed == NULL) {
		return cli_usage_error(cli, "--seed FILE: where to write the "
		                            "new seed");
	}
	if ((err = mesh_name_check("key", name, MESH_IDENTITY_NAME_MAX,
	                           NULL)) != MESH_OK) {
		return cli_usage_error(cli, "%s", mesh_errdetail());
	}
	if (access(seed, F_OK) == 0) {
		return cli_usage_error(cli,
		                       "--seed '%s': exists (a seed is never "
		                       "replaced)",
		                       seed);
	}
	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	/* The name must be free before a seed is written. */
	if ((err = mesh_keys_get(c, name, &k)) == MESH_OK) {
		err = mesh_err_set(
		        MESH_EEXIST,
		        "key '%s': already recorded (%s); delete it "
		        "first, or add --replace a new key",
		        name, k.public_key);
		rc = cli_fail(cli, err);
		goto out;
	}
	if (err != MESH_ENOTFOUND) {
		rc = cli_fail(cli, err);
		goto out;
	}
	if ((err = mesh_identity_generate(name, seed, &id)) != MESH_OK) {
		rc = key_fail(cli, err);
		goto out;
	}
	mesh_identity_record(id, &k);
	if ((err = mesh_keys_put(c, &k, false)) != MESH_OK) {
		unlink(seed); /* nothing stored */
		rc = cli_fail(cli, err);
		goto out;
	}
	if (cli->json) {
		json_t *j = key_json(&k);
		json_object_set_new(j, "SeedFile", json_string(seed));
		cli_print_json(j);
	} else {
		printf("created key %s %s (seed in %s)\n", name, k.public_key,
		       seed);
	}
	rc = CLI_OK;
out:
	mesh_identity_free(id);
	mesh_conn_close(c);
	return rc;
}

int
cmd_key_add(struct cli *cli)
{
	const char *name = cli_pos(cli, 0), *pub = cli_opt(cli, "--public");
	struct mesh_key_record k;
	struct mesh_conn *c = NULL;
	mesh_err err;
	int rc = CLI_OK;

	if (pub == NULL) {
		return cli_usage_error(cli,
		                       "--public U...: the key to record");
	}
	if ((err = mesh_key_record_from_public(name, pub, &k)) != MESH_OK) {
		return cli_usage_error(cli, "%s", mesh_errdetail());
	}
	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	if ((err = mesh_keys_put(c, &k, cli_flag(cli, "--replace"))) !=
	    MESH_OK) {
		rc = key_fail(cli, err);
	} else if (cli->json) {
		cli_print_json(key_json(&k));
	} else {
		printf("recorded key %s %s\n", name, pub);
	}
	mesh_conn_close(c);
	return rc;
}

int
cmd_key_list(struct cli *cli)
{
	struct mesh_key_record *keys = NULL;
	struct mesh_conn *c = NULL;
	size_t n = 0;
	json_t *arr;
	mesh_err err;

	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	err = mesh_keys_list(c, &keys, &n);
	mesh_conn_close(c);
	if (err != MESH_OK) {
		return cli_fail(cli, err);
	}
	if (cli->json) {
		arr = json_array();
		for (size_t i = 0; i < n; i++) {
			json_array_append_new(arr, key_json(&keys[i]));
		}
		cli_print_json(json_pack("{s:o}", "Keys", arr));
	} else {
		printf("%-24s %-56s %s\n", "NAME", "PUBLIC KEY", "CREATED");
		for (size_t i = 0; i < n; i++) {
			char when[32];
			mesh_time_format(keys[i].created_ms / 1000, when);
			printf("%-24s %-56s %s\n", keys[i].name,
			       keys[i].public_key, when);
		}
	}
	free(keys);
	return CLI_OK;
}

int
cmd_key_show(struct cli *cli)
{
	struct mesh_key_record k;
	struct mesh_conn *c = NULL;
	json_t *j;
	mesh_err err;

	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	err = mesh_keys_get(c, cli_pos(cli, 0), &k);
	mesh_conn_close(c);
	if (err != MESH_OK) {
		return key_fail(cli, err);
	}
	j = key_json(&k);
	if (cli->json) {
		cli_print_json(j);
		return CLI_OK;
	}
	printf("name        %s\npublic key  %s\ncurve key   %s\ncreated     "
	       "%s\n",
	       k.name, k.public_key,
	       json_string_value(json_object_get(j, "CurveKey")),
	       json_string_value(json_object_get(j, "Created")));
	json_decref(j);
	return CLI_OK;
}

int
cmd_key_delete(struct cli *cli)
{
	const char *name = cli_pos(cli, 0);
	struct mesh_key_record k;
	struct mesh_conn *c = NULL;
	mesh_err err;
	int rc;

	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	if ((err = mesh_keys_get(c, name, &k)) != MESH_OK) {
		mesh_conn_close(c);
		return key_fail(cli, err);
	}
	rc = cli_confirm(cli,
	                 "delete key '%s' (%s): events it signs stop "
	                 "verifying",
	                 name, k.public_key);
	if (rc == CLI_OK && (err = mesh_keys_delete(c, name)) != MESH_OK) {
		rc = cli_fail(cli, err);
	}
	mesh_conn_close(c);
	if (rc == CLI_OK && !cli->json) {
		printf("deleted key %s\n", name);
	}
	return rc;
}

/* ---- signing messages ----------------------------------------------------
 */

int
signer_from_flags(struct cli *cli, struct mesh_identity **out)
{
	const char *name = cli_opt(cli, "--sign"),
	           *seed = cli_opt(cli, "--seed");
	mesh_err err;

	*out = NULL;
	/* --seed alone with --as: the sealing identity's (seal_for). */
	if (name == NULL && (seed == NULL || cli_opt(cli, "--as") != NULL)) {
		return CLI_OK;
	}
	if (name == NULL || seed == NULL) {
		return cli_usage_error(cli, "--sign NAME and --seed FILE go "
		                            "together");
	}
	if ((err = mesh_identity_load(name, seed, out)) != MESH_OK) {
		return err == MESH_EINVAL || err == MESH_ENOTFOUND
		               ? cli_usage_error(cli,
		                                 "--sign %s --seed %s: %s",
		                                 name, seed, mesh_errdetail())
		               : cli_fail(cli, err);
	}
	return CLI_OK;
}

int
signer_fifo_check(struct cli *cli, bool signing, bool fifo)
{
	if (signing && fifo) {
		return cli_usage_error(cli,
		                       "--sign: a FIFO target replaces the "
		                       "event id a signature covers; sign "
		                       "events to standard queues and topics");
	}
	return CLI_OK;
}

int
sign_for(struct cli *cli, const struct mesh_identity *id, bool fifo,
         struct mesh_event *ev)
{
	mesh_err err;
	int rc;

	if (id == NULL) {
		return CLI_OK;
	}
	if ((rc = signer_fifo_check(cli, true, fifo)) != CLI_OK) {
		return rc;
	}
	if ((err = mesh_event_sign(ev, id)) != MESH_OK) {
		return cli_fail(cli, err);
	}
	return CLI_OK;
}

/* A list of names given with flag ("--readers"), at most max of them
 * (noun: "readers'"), into dst when given; false after a usage error. */
static bool
names_flag(struct cli *cli, const char *flag, int max, const char *noun,
           char *dst, size_t size)
{
	const char *v = cli_opt(cli, flag);

	if (v == NULL) {
		return true;
	}
	if (strlen(v) >= size) {
		cli_usage_error(cli, "%s: more than %d %s names", flag, max,
		                noun);
		return false;
	}
	snprintf(dst, size, "%s", v);
	return true;
}

bool
require_signers_flag(struct cli *cli, char *dst, size_t size)
{
	return names_flag(cli, "--require-signers", MESH_SIGNERS_MAX,
	                  "signers'", dst, size);
}

/* ---- data keys of encrypted targets ------------------------------------ */

int
cmd_key_rotate(struct cli *cli)
{
	const char *arg = cli_pos(cli, 0);
	bool queue = strncmp(arg, "queue:", 6) == 0;
	const char *name =
	        queue || strncmp(arg, "topic:", 6) == 0 ? arg + 6 : arg;
	char target[MESH_TOPIC_NAME_MAX + 8],
	        readers[MESH_READERS_TEXT_MAX + 1];
	struct mesh_conn *c = NULL;
	bool encrypt = false;
	uint32_t id = 0;
	mesh_err err;
	int rc = CLI_OK;

	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	snprintf(target, sizeof(target), "%s:%s", queue ? "queue" : "topic",
	         name);
	if (queue) {
		struct mesh_queue_info qi;
		if ((err = mesh_queue_info(c, name, &qi)) == MESH_OK) {
			encrypt = qi.attrs.encrypt;
			snprintf(readers, sizeof(readers), "%s",
			         qi.attrs.readers);
		}
	} else {
		struct mesh_topic_info ti;
		if ((err = mesh_topic_info(c, name, &ti)) == MESH_OK) {
			encrypt = ti.a.encrypt;
			snprintf(readers, sizeof(readers), "%s", ti.a.readers);
		}
	}
	if (err != MESH_OK) {
		rc = cli_fail(cli, err);
	} else if (!encrypt) {
		rc = cli_usage_error(cli,
		                     "key rotate: %s '%s' is not encrypted "
		                     "(%s set-attributes %s --encrypt "
		                     "--readers A,B)",
		                     queue ? "queue" : "topic", name,
		                     queue ? "queue" : "topic", name);
	} else if ((err = mesh_datakey_rotate(c, target, readers, &id)) !=
	           MESH_OK) {
		rc = cli_fail(cli, err);
	}
	mesh_conn_close(c);
	if (rc != CLI_OK) {
		return rc;
	}
	if (cli->json) {
		cli_print_json(json_pack("{s:s, s:I}", "Target", target,
		                         "KeyId", (json_int_t)id));
	} else {
		printf("%s: data key %u is current\n", target, (unsigned)id);
	}
	return CLI_OK;
}

bool
encrypt_flags(struct cli *cli, bool *encrypt, char *readers, size_t size)
{
	if (cli_flag(cli, "--encrypt") && cli_flag(cli, "--no-encrypt")) {
		cli_usage_error(cli, "--encrypt or --no-encrypt, not both");
		return false;
	}
	if (cli_flag(cli, "--encrypt")) {
		*encrypt = true;
	}
	if (cli_flag(cli, "--no-encrypt")) {
		*encrypt = false;
		readers[0] = '\0';
	}
	return names_flag(cli, "--readers", MESH_READERS_MAX, "readers'",
	                  readers, size);
}

void
encrypt_attrs(struct mesh_conn *c, const char *target, bool encrypt,
              const char *readers, json_t *at, bool strings)
{
	uint32_t ids[MESH_DATA_KEYS_MAX], cur = 0;
	size_t n = 0;
	char text[MESH_DATA_KEYS_MAX * 11 + 1] = "";
	json_t *ja = json_array();

	json_object_set_new(at, "Encrypt",
	                    json_string(encrypt ? "true" : "false"));
	if (!encrypt) {
		json_decref(ja);
		return;
	}
	json_object_set_new(at, "Readers", json_string(readers));
	if (mesh_datakey_ids(c, target, ids, MESH_DATA_KEYS_MAX, &n, &cur,
	                     NULL, 0) == MESH_OK) {
		size_t len = 0;
		for (size_t i = 0; i < n; i++) {
			json_array_append_new(ja, json_integer(ids[i]));
			len += (size_t)snprintf(text + len, sizeof(text) - len,
			                        "%s%u", i ? "," : "",
			                        (unsigned)ids[i]);
		}
		put_num(at, "CurrentKeyId", (int64_t)cur);
	}
	if (strings) {
		json_decref(ja);
		json_object_set_new(at, "KeyIds", json_string(text));
	} else {
		json_object_set_new(at, "KeyIds", ja);
	}
}

int
sealer_open(struct cli *cli, struct mesh_conn *c, const char *target,
            bool encrypt, const struct mesh_identity *signer,
            struct sealer *sl)
{
	const char *as = cli_opt(cli, "--as"), *seed = cli_opt(cli, "--seed");
	const struct mesh_identity *id = signer;
	mesh_err err;

	memset(sl, 0, sizeof(*sl));
	if (!encrypt) {
		return as == NULL ? CLI_OK
		                  : cli_usage_error(cli,
		                                    "--as: %.5s '%s' is not "
		                                    "encrypted",
		                                    target, target + 6);
	}
	if (as != NULL && signer != NULL &&
	    strcmp(as, mesh_identity_name(signer)) != 0) {
		return cli_usage_error(cli,
		                       "--as %s and --sign %s: one "
		                       "identity (one --seed)",
		                       as, mesh_identity_name(signer));
	}
	if (as != NULL && signer == NULL) {
		if (seed == NULL) {
			return cli_usage_error(cli,
			                       "--as NAME and --seed FILE "
			                       "go together");
		}
		if ((err = mesh_identity_load(as, seed, &sl->own)) !=
		    MESH_OK) {
			return err == MESH_EINVAL || err == MESH_ENOTFOUND
			               ? cli_usage_error(
			                         cli, "--as %s --seed %s: %s",
			                         as, seed, mesh_errdetail())
			               : cli_fail(cli, err);
		}
		id = sl->own;
	}
	if (id == NULL) {
		return cli_usage_error(
		        cli,
		        "%s is encrypted: sending needs a "
		        "reader's or admin's identity (--as NAME "
		        "--seed FILE)",
		        target);
	}
	if ((err = mesh_keyring_new(c, id, &sl->kr)) != MESH_OK) {
		sealer_close(sl);
		return cli_fail(cli, err);
	}
	snprintf(sl->target, sizeof(sl->target), "%s", target);
	return CLI_OK;
}

int
sealer_seal(struct cli *cli, struct sealer *sl, struct mesh_event *ev)
{
	mesh_err err;

	if (sl->kr == NULL ||
	    (err = mesh_keyring_seal(sl->kr, sl->target, ev)) == MESH_OK) {
		return CLI_OK;
	}
	return cli_fail(cli, err);
}

void
sealer_close(struct sealer *sl)
{
	mesh_keyring_free(sl->kr);
	mesh_identity_free(sl->own);
	memset(sl, 0, sizeof(*sl));
}
