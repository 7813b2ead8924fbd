/* message.c: messages from flags and entries, batch results (see
 * message.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "mesh_schemas.h"
#include "message.h"
#include "mesh/seal.h"

void
put_num(json_t *o, const char *key, int64_t v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%" PRId64, v);
	json_object_set_new(o, key, json_string(buf));
}

/* A whole file ("-": standard input) as a string; NULL after printing
 * why. */
char *
read_file(struct cli *cli, const char *path)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	size_t cap = 65536, n = 0, r;
	char *buf;

	if (f == NULL) {
		fprintf(stderr, "meshctl %s: cannot read '%s': %s\n",
		        cli->cmd_path, path, strerror(errno));
		return NULL;
	}
	buf = malloc(cap + 1);
	while (buf != NULL && (r = fread(buf + n, 1, cap - n, f)) > 0) {
		n += r;
		if (n == cap) {
			char *nb = realloc(buf, cap * 2 + 1);
			if (nb == NULL) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
	}
	if (f != stdin) {
		fclose(f);
	}
	if (buf == NULL) {
		fprintf(stderr, "meshctl %s: '%s': out of memory\n",
		        cli->cmd_path, path);
		return NULL;
	}
	buf[n] = '\0';
	return buf;
}

static mesh_err
body_event(const char *type, const char *body, struct mesh_event **out)
{
	struct mesh_event *ev;
	mesh_err err;

	if ((err = mesh_event_new(type, "meshctl", &ev)) != MESH_OK ||
	    (err = mesh_event_set_text(ev, body, strlen(body))) != MESH_OK) {
		mesh_event_free(ev);
		return err;
	}
	*out = ev;
	return MESH_OK;
}

/* Read an AWS-shaped --entries array. */
json_t *
entries_arg(struct cli *cli, size_t max)
{
	const char *text = cli_opt(cli, "--entries");
	json_error_t jerr;
	json_t *j;

	if (text == NULL) {
		cli_usage_error(cli, "--entries JSON is required");
		return NULL;
	}
	j = json_loads(text, 0, &jerr);
	if (j == NULL || !json_is_array(j)) {
		cli_usage_error(cli, "--entries: not a JSON array (%s)",
		                j ? "another JSON value" : jerr.text);
		json_decref(j);
		return NULL;
	}
	if (json_array_size(j) == 0 || json_array_size(j) > max) {
		cli_usage_error(cli, "--entries: 1-%zu entries, not %zu", max,
		                json_array_size(j));
		json_decref(j);
		return NULL;
	}
	return j;
}

json_t *
failed_entry(const char *id, mesh_err err, const char *msg)
{
	return json_pack("{s:s, s:b, s:s, s:s}", "Id", id ? id : "",
	                 "SenderFault",
	                 err != MESH_EBROKER && err != MESH_ETIMEDOUT, "Code",
	                 mesh_strerror(err), "Message", msg);
}

/* Print Successful/Failed; exit 1 when any entry failed. */
int
batch_output(struct cli *cli, json_t *ok, json_t *failed)
{
	size_t nf = json_array_size(failed);
	int rc = nf > 0 ? CLI_FAIL : CLI_OK;

	if (cli->json) {
		cli_print_json(json_pack("{s:o, s:o}", "Successful", ok,
		                         "Failed", failed));
		return rc;
	}
	{
		size_t i;
		json_t *v;
		json_array_foreach(ok, i, v)
		{
			const char *mid = json_string_value(
			        json_object_get(v, "MessageId"));
			printf("ok     %s%s%s\n",
			       json_string_value(json_object_get(v, "Id")),
			       mid ? " " : "", mid ? mid : "");
		}
		json_array_foreach(failed, i, v)
		{
			fprintf(stderr, "failed %s: %s\n",
			        json_string_value(json_object_get(v, "Id")),
			        json_string_value(
			                json_object_get(v, "Message")));
		}
	}
	json_decref(ok);
	json_decref(failed);
	return rc;
}

int
payload_from_flags(struct cli *cli, bool required, struct payload *p)
{
	static const char *const flags[] = {"--body", "--body-file", "--data",
	                                    "--data-file"};
	const char *v = NULL;
	size_t given = 0, which = 0;

	memset(p, 0, sizeof(*p));
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
		if (cli_opt(cli, flags[i]) != NULL) {
			given++;
			which = i;
			v = cli_opt(cli, flags[i]);
		}
	}
	if (given > 1 || (required && given == 0)) {
		return cli_usage_error(cli,
		                       "give %s of --body TEXT, --body-file "
		                       "FILE, --data OBJ and --data-file "
		                       "FILE",
		                       required ? "one" : "at most one");
	}
	if (given == 0) {
		return CLI_OK;
	}
	p->flag = flags[which];
	p->data = strncmp(p->flag, "--data", 6) == 0;
	if (strstr(p->flag, "-file") != NULL) {
		if ((p->owned = read_file(cli, v)) == NULL) {
			return CLI_FAIL;
		}
		v = p->owned;
	}
	p->text = v;
	return CLI_OK;
}

void
payload_fini(struct payload *p)
{
	free(p->owned);
	p->owned = NULL;
}

int
msg_from_flags(struct cli *cli, struct mesh_event **out)
{
	const char *type = cli_opt(cli, "--type");
	struct mesh_event *ev = NULL;
	struct payload p;
	const char *spec;
	mesh_err err;
	int rc;

	if ((rc = payload_from_flags(cli, true, &p)) != CLI_OK) {
		payload_fini(&p);
		return rc;
	}
	if (p.data && type == NULL) {
		payload_fini(&p);
		return cli_usage_error(
		        cli,
		        "%s needs --type T, the protobuf message "
		        "to encode it as",
		        p.flag);
	}
	if (p.data) {
		err = mesh_event_new(type, "meshctl", &ev);
		if (err == MESH_OK) {
			err = mesh_pbjson_set_event_data(ev, type, p.text,
			                                 strlen(p.text));
		}
		if (err == MESH_EINVAL || err == MESH_ENOTFOUND ||
		    err == MESH_EPARSE) {
			mesh_event_free(ev);
			rc = cli_usage_error(cli, "%s: %s", p.flag,
			                     mesh_errdetail());
			payload_fini(&p);
			return rc;
		}
	} else {
		err = body_event(type ? type : "evmesh.message", p.text, &ev);
	}
	payload_fini(&p);
	if (err != MESH_OK) {
		mesh_event_free(ev);
		return cli_fail(cli, err);
	}
	for (size_t i = 0; (spec = cli_opt_nth(cli, "--attr", i)); i++) {
		if ((err = mesh_event_attr_set_spec(ev, spec)) != MESH_OK) {
			mesh_event_free(ev);
			if (err == MESH_EINVAL && mesh_errdetail()[0] &&
			    strchr(spec, ':') && strchr(spec, '=')) {
				return cli_fail(cli, err);
			}
			return cli_usage_error(
			        cli,
			        "--attr '%s': want NAME=TYPE:VALUE "
			        "(TYPE String, Number, "
			        "String.Array or Binary, base64)",
			        spec);
		}
	}
	*out = ev;
	return CLI_OK;
}

int
msg_from_entry(struct cli *cli, json_t *entry, size_t i, const char *body_key,
               struct mesh_event **out)
{
	const char *body = json_string_value(json_object_get(entry, body_key));
	json_t *attrs = json_object_get(entry, "MessageAttributes");
	struct mesh_event *ev = NULL;
	const char *key;
	json_t *av;
	mesh_err err;

	if (body == NULL) {
		return cli_usage_error(cli,
		                       "--entries[%zu]: %s (a string) is "
		                       "required",
		                       i, body_key);
	}
	if ((err = body_event("evmesh.message", body, &ev)) != MESH_OK) {
		return cli_fail(cli, err);
	}
	json_object_foreach(attrs, key, av)
	{
		const char *type =
		        json_string_value(json_object_get(av, "DataType"));
		const char *sv =
		        json_string_value(json_object_get(av, "StringValue"));
		const char *bv =
		        json_string_value(json_object_get(av, "BinaryValue"));
		char spec[2048];
		snprintf(spec, sizeof(spec), "%s=%s:%s", key, type ? type : "",
		         sv   ? sv
		         : bv ? bv
		              : "");
		if ((err = mesh_event_attr_set_spec(ev, spec)) != MESH_OK) {
			mesh_event_free(ev);
			return cli_fail(cli, err);
		}
	}
	*out = ev;
	return CLI_OK;
}

bool
proto_json(const char *type, const void *data, size_t len, json_t **out,
           char *why, size_t why_size)
{
	const ProtobufCMessageDescriptor *d = mesh_schema_find(type);
	ProtobufCMessage *m;
	mesh_err err;

	if (d == NULL) {
		snprintf(why, why_size,
		         "type '%s' is not in the schema registry", type);
		return false;
	}
	if ((m = protobuf_c_message_unpack(d, NULL, len, data)) == NULL) {
		snprintf(why, why_size, "does not decode as %s", type);
		return false;
	}
	err = mesh_pbjson_decode(m, out);
	protobuf_c_message_free_unpacked(m, NULL);
	if (err != MESH_OK) {
		snprintf(why, why_size, "%s as JSON: %s", type,
		         mesh_errdetail()[0] ? mesh_errdetail()
		                             : mesh_strerror(err));
		return false;
	}
	return true;
}

void
put_body(json_t *o, const struct mesh_event *ev, bool as_bytes, bool raw)
{
	const void *data;
	size_t len;
	mesh_data_kind kind = mesh_event_data(ev, &data, &len, NULL);
	json_t *j = NULL;

	if (!as_bytes && (kind == MESH_DATA_TEXT || kind == MESH_DATA_NONE)) {
		json_object_set_new(o, "Body",
		                    json_stringn(len ? data : "", len));
	} else {
		char *s = mesh_base64(data, len);
		json_object_set_new(o, "Body", json_string(s ? s : ""));
		free(s);
	}
	if (!raw && !as_bytes && kind == MESH_DATA_PROTO &&
	    mesh_pbjson_event_data(ev, &j) == MESH_OK) {
		json_object_set_new(o, "BodyJson", j);
	}
}

void
print_body(const json_t *o)
{
	const json_t *j = json_object_get(o, "BodyJson");

	if (j != NULL) {
		char *s = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
		printf("%s\n", s ? s : "");
		free(s);
	} else {
		printf("%s\n", json_string_value(json_object_get(o, "Body")));
	}
}

json_t *
msg_attrs_json(const struct mesh_event *ev)
{
	json_t *mattrs = json_object();

	for (size_t i = 0; i < mesh_event_ext_count(ev); i++) {
		const char *name = mesh_event_ext_at(ev, i, NULL);
		const char *type;
		const void *val;
		size_t vlen;
		json_t *a;
		if (!mesh_event_attr_is_message_attr(name) ||
		    mesh_event_attr_get(ev, name, &type, &val, &vlen) !=
		            MESH_OK) {
			continue;
		}
		a = json_pack("{s:s}", "DataType", type);
		if (strncmp(type, "Binary", 6) == 0) {
			char *s = mesh_base64(val, vlen);
			json_object_set_new(a, "BinaryValue",
			                    json_string(s ? s : ""));
			free(s);
		} else {
			json_object_set_new(a, "StringValue",
			                    json_stringn(val, vlen));
		}
		json_object_set_new(mattrs, name, a);
	}
	if (json_object_size(mattrs) == 0) {
		json_decref(mattrs);
		return NULL;
	}
	return mattrs;
}

void
print_msg_attrs(const json_t *mattrs)
{
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)mattrs, key, v)
	{
		json_t *sv = json_object_get(v, "StringValue");
		printf("attr %-27s %s (%s)\n", key,
		       json_string_value(
		               sv ? sv : json_object_get(v, "BinaryValue")),
		       json_string_value(json_object_get(v, "DataType")));
	}
}

/* ---- --stdin ---------------------------------------------------------- */

struct stdin_run {
	struct cli *cli;
	long sent, failed;
};

static void
stdin_sent(void *arg, void *tag, const struct mesh_sent *r)
{
	struct stdin_run *run = arg;
	long line = (long)(intptr_t)tag;

	if (r->err == MESH_OK) {
		run->sent++;
		if (run->cli->json) {
			printf("{\"Line\": %ld, \"MessageId\": \"%s\"}\n",
			       line, r->message_id);
		} else {
			printf("sent %s%s\n", r->message_id,
			       r->duplicate ? " (duplicate)" : "");
		}
		return;
	}
	run->failed++;
	if (run->cli->json) {
		json_t *j = json_pack(
		        "{s:I, s:s, s:s}", "Line", (json_int_t)line, "Code",
		        mesh_strerror(r->err), "Error", r->error);
		char *s = json_dumps(j, JSON_COMPACT);
		printf("%s\n", s ? s : "{}");
		free(s);
		json_decref(j);
	} else {
		fprintf(stderr, "meshctl %s: line %ld: %s\n",
		        run->cli->cmd_path, line, r->error);
	}
}

/* One line as an event; NULL after printing why (the line is skipped). */
static struct mesh_event *
line_event(struct cli *cli, const char *type, char *line, long n)
{
	struct mesh_event *ev = NULL;
	const char *spec;
	mesh_err err;

	if (type != NULL) {
		err = mesh_event_new(type, "meshctl", &ev);
		if (err == MESH_OK) {
			err = mesh_pbjson_set_event_data(ev, type, line,
			                                 strlen(line));
		}
	} else {
		err = body_event("evmesh.message", line, &ev);
	}
	for (size_t i = 0;
	     err == MESH_OK && (spec = cli_opt_nth(cli, "--attr", i)) != NULL;
	     i++) {
		err = mesh_event_attr_set_spec(ev, spec);
	}
	if (err != MESH_OK) {
		fprintf(stderr, "meshctl %s: line %ld: %s\n", cli->cmd_path, n,
		        mesh_errdetail());
		mesh_event_free(ev);
		return NULL;
	}
	return ev;
}

int
send_stdin(struct cli *cli,
           mesh_err (*open)(void *target, mesh_sent_fn fn, void *arg,
                            struct mesh_sender **out),
           void *target, struct mesh_conn *c, const char *seal_target,
           bool encrypt)
{
	const char *type = cli_opt(cli, "--type");
	struct stdin_run run = {.cli = cli};
	struct mesh_identity *id = NULL;
	struct sealer sl = {0};
	struct mesh_sender *s = NULL;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	long n = 0, bad = 0;
	mesh_err err;
	int rc;

	if (cli_opt(cli, "--body") || cli_opt(cli, "--body-file") ||
	    cli_opt(cli, "--data") || cli_opt(cli, "--data-file") ||
	    cli_opt(cli, "--dedup-id")) {
		return cli_usage_error(cli, "--stdin reads the messages: no "
		                            "--body, --data or --dedup-id "
		                            "beside it");
	}
	if (type != NULL && mesh_schema_find(type) == NULL) {
		return cli_usage_error(
		        cli,
		        "--type '%s': not a message in the schema "
		        "registry (see schemas/)",
		        type);
	}
	if ((rc = signer_from_flags(cli, &id)) != CLI_OK) {
		return rc;
	}
	if ((rc = sealer_open(cli, c, seal_target, encrypt, id, &sl)) !=
	    CLI_OK) {
		mesh_identity_free(id);
		return rc;
	}
	if ((err = open(target, stdin_sent, &run, &s)) != MESH_OK) {
		sealer_close(&sl);
		mesh_identity_free(id);
		return cli_fail(cli, err);
	}
	while ((len = getline(&line, &cap, stdin)) >= 0) {
		struct mesh_event *ev;
		n++;
		while (len > 0 &&
		       (line[len - 1] == '\n' || line[len - 1] == '\r')) {
			line[--len] = '\0';
		}
		if (len == 0) {
			continue; /* blank lines separate nothing */
		}
		if ((ev = line_event(cli, type, line, n)) == NULL) {
			bad++;
			continue;
		}
		/* Seal, then sign. */
		if ((sl.kr != NULL &&
		     (err = mesh_keyring_seal(sl.kr, seal_target, ev)) !=
		             MESH_OK) ||
		    (id != NULL &&
		     (err = mesh_event_sign(ev, id)) != MESH_OK)) {
			fprintf(stderr, "meshctl %s: line %ld: %s\n",
			        cli->cmd_path, n, mesh_errdetail());
			mesh_event_free(ev);
			bad++;
			continue;
		}
		err = mesh_sender_send(
		        s, &(struct mesh_send){.event = ev,
		                               .group_id =
		                                       cli_opt(cli, "--group"),
		                               .tag = (void *)(intptr_t)n});
		mesh_event_free(ev);
		if (err != MESH_OK) {
			mesh_sender_close(s);
			sealer_close(&sl);
			mesh_identity_free(id);
			free(line);
			return cli_fail(cli, err);
		}
	}
	free(line);
	mesh_sender_close(s);
	sealer_close(&sl);
	mesh_identity_free(id);
	fprintf(stderr, "meshctl %s: %ld sent, %ld failed\n", cli->cmd_path,
	        run.sent, run.failed + bad);
	return run.failed + bad > 0 ? CLI_FAIL : CLI_OK;
}
