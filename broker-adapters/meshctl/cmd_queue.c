/* cmd_queue.c: meshctl queue ..., SQS's calls from the shell. With --json
 * the output has the AWS CLI's shapes, so scripts carry over. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cli.h"
#include "commands.h"
#include "message.h"

/* A queue may be named by its name or by the URL `create` printed. */
static const char *
queue_arg(const struct cli *cli, size_t i)
{
	const char *q = cli_pos(cli, i);
	const char *slash = q ? strrchr(q, '/') : NULL;

	return slash ? slash + 1 : q;
}

static json_t *
queue_url(struct cli *cli, const char *name)
{
	char url[512];
	const char *server = cli->conn.servers;
	size_t n = strcspn(server, ",");

	snprintf(url, sizeof(url), "%.*s/queue/%s", (int)n, server, name);
	return json_string(url);
}

/* ---- attributes from flags ------------------------------------------------
 */

static bool
attrs_from_flags(struct cli *cli, struct mesh_queue_attrs *a)
{
	long long v;

	if (cli_flag(cli, "--fifo")) {
		a->fifo = true;
	}
	if (cli_flag(cli, "--content-based-dedup")) {
		a->content_based_dedup = true;
	}
	if (cli_flag(cli, "--no-content-based-dedup")) {
		a->content_based_dedup = false;
	}
#define NUM(flag, field, lo, hi)                                              \
	do {                                                                  \
		if (!cli_opt_long(cli, flag, lo, hi, a->field, &v))           \
			return false;                                         \
		a->field = v;                                                 \
	} while (0)
	NUM("--visibility-timeout", visibility_timeout_s, 0, 43200);
	NUM("--delay", delay_s, 0, 900);
	NUM("--retention", retention_s, 60, 1209600);
	NUM("--max-size", max_message_size, 1024, 1048576);
	NUM("--receive-wait", receive_wait_s, 0, 20);
	NUM("--max-receive", max_receive_count, 1, 1000);
	NUM("--partitions", partitions, 1, 256);
	NUM("--replicas", replicas, 1, MESH_REPLICAS_MAX);
#undef NUM
	if (cli_opt(cli, "--dlq") != NULL) {
		snprintf(a->dlq, sizeof(a->dlq), "%s", cli_opt(cli, "--dlq"));
	}
	if (cli_flag(cli, "--no-dlq")) {
		a->dlq[0] = '\0';
	}
	if (!require_signers_flag(cli, a->require_signers,
	                          sizeof(a->require_signers)) ||
	    !encrypt_flags(cli, &a->encrypt, a->readers, sizeof(a->readers))) {
		return false;
	}
	if (cli_opt(cli, "--max-receive") != NULL && a->dlq[0] == '\0') {
		cli_usage_error(cli, "--max-receive goes with --dlq NAME");
		return false;
	}
	return true;
}

int
cmd_queue_create(struct cli *cli)
{
	const char *name = queue_arg(cli, 0);
	struct mesh_queue_attrs a;
	struct mesh_conn *c;
	mesh_err err;

	mesh_queue_attrs_init(&a);
	if (name != NULL && strlen(name) > 5 &&
	    strcmp(name + strlen(name) - 5, ".fifo") == 0) {
		a.fifo = true; /* as SQS: the name says it */
	}
	if (!attrs_from_flags(cli, &a)) {
		return CLI_USAGE;
	}
	if ((err = mesh_queue_attrs_check(name, &a)) != MESH_OK) {
		return cli_fail(cli, err);
	}
	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	err = mesh_queue_create(c, name, &a);
	if (err == MESH_OK) {
		if (cli->json) {
			cli_print_json(json_pack("{s:o}", "QueueUrl",
			                         queue_url(cli, name)));
		} else {
			printf("created queue %s\n", name);
		}
	}
	mesh_conn_close(c);
	return err == MESH_OK ? CLI_OK : cli_fail(cli, err);
}

int
cmd_queue_set_attributes(struct cli *cli)
{
	const char *name = queue_arg(cli, 0);
	struct mesh_queue_info info;
	struct mesh_conn *c;
	mesh_err err;

	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	if ((err = mesh_queue_info(c, name, &info)) == MESH_OK) {
		if (!attrs_from_flags(cli, &info.attrs)) {
			mesh_conn_close(c);
			return CLI_USAGE;
		}
		err = mesh_queue_set_attrs(c, name, &info.attrs);
	}
	mesh_conn_close(c);
	if (err != MESH_OK) {
		return cli_fail(cli, err);
	}
	if (!cli->json) {
		printf("updated queue %s\n", name);
	}
	return CLI_OK;
}

/* Connect, run fn on the queue name, print "done" text. */
static int
simple(struct cli *cli, mesh_err (*fn)(struct mesh_conn *, const char *),
       const char *done)
{
	const char *name = queue_arg(cli, 0);
	struct mesh_conn *c;
	mesh_err err;

	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	err = fn(c, name);
	mesh_conn_close(c);
	if (err != MESH_OK) {
		return cli_fail(cli, err);
	}
	if (!cli->json) {
		printf("%s %s\n", done, name);
	}
	return CLI_OK;
}

int
cmd_queue_delete(struct cli *cli)
{
	const char *name = queue_arg(cli, 0);
	struct mesh_queue_info i;
	struct mesh_conn *c;
	uint64_t n;
	mesh_err err;
	int rc;

	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	if ((err = mesh_queue_info(c, name, &i)) != MESH_OK) {
		mesh_conn_close(c);
		return cli_fail(cli, err);
	}
	n = i.visible + i.not_visible + i.delayed;
	rc = cli_confirm(cli,
	                 "delete queue '%s' and its %" PRIu64 " message%s",
	                 name, n, n == 1 ? "" : "s");
	if (rc == CLI_OK && (err = mesh_queue_delete(c, name)) != MESH_OK) {
		rc = cli_fail(cli, err);
	}
	mesh_conn_close(c);
	if (rc == CLI_OK && !cli->json) {
		printf("deleted queue %s\n", name);
	}
	return rc;
}

int
cmd_queue_purge(struct cli *cli)
{
	return simple(cli, mesh_queue_purge, "purged queue");
}

int
cmd_queue_list(struct cli *cli)
{
	struct mesh_conn *c;
	char **names;
	size_t n;
	mesh_err err;

	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	err = mesh_queue_list(c, cli_opt(cli, "--prefix"), &names, &n);
	mesh_conn_close(c);
	if (err != MESH_OK) {
		return cli_fail(cli, err);
	}
	if (cli->json) {
		json_t *urls = json_array();
		for (size_t i = 0; i < n; i++) {
			json_array_append_new(urls, queue_url(cli, names[i]));
		}
		cli_print_json(json_pack("{s:o}", "QueueUrls", urls));
	} else {
		for (size_t i = 0; i < n; i++) {
			printf("%s\n", names[i]);
		}
	}
	mesh_queue_list_free(names, n);
	return CLI_OK;
}

int
cmd_queue_info(struct cli *cli)
{
	const char *name = queue_arg(cli, 0);
	struct mesh_queue_info i;
	const struct mesh_queue_attrs *a = &i.attrs;
	struct mesh_conn *c;
	char target[MESH_QUEUE_NAME_MAX + 8];
	json_t *at;
	mesh_err err;

	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	if ((err = mesh_queue_info(c, name, &i)) != MESH_OK) {
		mesh_conn_close(c);
		return cli_fail(cli, err);
	}
	/* get-queue-attributes: every value a string. */
	at = json_object();
	put_num(at, "ApproximateNumberOfMessages", (int64_t)i.visible);
	put_num(at, "ApproximateNumberOfMessagesNotVisible",
	        (int64_t)i.not_visible);
	put_num(at, "ApproximateNumberOfMessagesDelayed", (int64_t)i.delayed);
	put_num(at, "CreatedTimestamp", a->created_ms / 1000);
	put_num(at, "LastModifiedTimestamp", a->modified_ms / 1000);
	put_num(at, "VisibilityTimeout", a->visibility_timeout_s);
	put_num(at, "DelaySeconds", a->delay_s);
	put_num(at, "MessageRetentionPeriod", a->retention_s);
	put_num(at, "MaximumMessageSize", a->max_message_size);
	put_num(at, "ReceiveMessageWaitTimeSeconds", a->receive_wait_s);
	put_num(at, "Replicas", a->replicas);
	if (a->dlq[0] != '\0') {
		char rp[256];
		snprintf(rp, sizeof(rp),
		         "{\"deadLetterTargetArn\":\"%s\",\"maxReceiveCount\":"
		         "%" PRId64 "}",
		         a->dlq, a->max_receive_count);
		json_object_set_new(at, "RedrivePolicy", json_string(rp));
	}
	if (a->require_signers[0] != '\0') {
		json_object_set_new(at, "RequireSigners",
		                    json_string(a->require_signers));
	}
	snprintf(target, sizeof(target), "queue:%s", name);
	encrypt_attrs(c, target, a->encrypt, a->readers, at, true);
	mesh_conn_close(c);
	json_object_set_new(at, "QueueArn", json_string(name));
	if (a->fifo) {
		json_object_set_new(at, "FifoQueue", json_string("true"));
		json_object_set_new(at, "ContentBasedDeduplication",
		                    json_string(a->content_based_dedup
		                                        ? "true"
		                                        : "false"));
		put_num(at, "Partitions", a->partitions);
	}
	if (cli->json) {
		cli_print_json(json_pack("{s:o}", "Attributes", at));
		return CLI_OK;
	}
	{
		const char *key;
		json_t *v;
		json_object_foreach(at, key, v)
		{
			printf("%-40s %s\n", key, json_string_value(v));
		}
	}
	json_decref(at);
	return CLI_OK;
}

/* ---- messages -------------------------------------------------------------
 */

static mesh_err
open_queue_sender(void *q, mesh_sent_fn fn, void *arg,
                  struct mesh_sender **out)
{
	return mesh_sender_open_queue(q, NULL, fn, arg, out);
}

/* queue send --stdin: many messages, pipelined. */
static int
queue_send_stdin(struct cli *cli, const char *name)
{
	struct mesh_conn *c = NULL;
	struct mesh_queue *q = NULL;
	mesh_err err;
	int rc;

	if (cli_opt(cli, "--delay") != NULL) {
		return cli_usage_error(cli, "--stdin takes the queue's own "
		                            "DelaySeconds: no --delay");
	}
	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	if ((err = mesh_queue_open(c, name, &q)) != MESH_OK) {
		rc = cli_fail(cli, err);
	} else {
		char target[MESH_QUEUE_NAME_MAX + 8];
		snprintf(target, sizeof(target), "queue:%s", name);
		rc = signer_fifo_check(cli, cli_opt(cli, "--sign") != NULL,
		                       mesh_queue_attrs(q)->fifo);
		if (rc == CLI_OK) {
			rc = send_stdin(cli, open_queue_sender, q, c, target,
			                mesh_queue_attrs(q)->encrypt);
		}
	}
	mesh_queue_close(q);
	mesh_conn_close(c);
	return rc;
}

int
cmd_queue_send(struct cli *cli)
{
	const char *name = queue_arg(cli, 0);
	struct mesh_queue_entry e = {.delay_s = -1};
	struct mesh_queue_sent sent;
	struct mesh_event *ev = NULL;
	struct mesh_conn *c = NULL;
	struct mesh_queue *q = NULL;
	struct mesh_identity *id = NULL;
	struct sealer sl = {0};
	char target[MESH_QUEUE_NAME_MAX + 8];
	long long delay;
	mesh_err err;
	int rc;

	if (cli_flag(cli, "--stdin")) {
		return queue_send_stdin(cli, name);
	}
	if (!cli_opt_long(cli, "--delay", 0, 900, -1, &delay)) {
		return CLI_USAGE;
	}
	if ((rc = signer_from_flags(cli, &id)) != CLI_OK) {
		return rc;
	}
	if ((rc = msg_from_flags(cli, &ev)) != CLI_OK) {
		mesh_identity_free(id);
		return rc;
	}
	rc = CLI_FAIL;
	e.event = ev;
	e.delay_s = delay;
	e.group_id = cli_opt(cli, "--group");
	e.dedup_id = cli_opt(cli, "--dedup-id");
	if (cli_connect(cli, &c) != MESH_OK) {
		mesh_event_free(ev);
		mesh_identity_free(id);
		return CLI_FAIL;
	}
	if ((err = mesh_queue_open(c, name, &q)) != MESH_OK) {
		rc = cli_fail(cli, err);
		goto out;
	}
	/* Seal, then sign (as topic publish). */
	snprintf(target, sizeof(target), "queue:%s", name);
	if ((rc = sealer_open(cli, c, target, mesh_queue_attrs(q)->encrypt, id,
	                      &sl)) != CLI_OK ||
	    (rc = sealer_seal(cli, &sl, ev)) != CLI_OK ||
	    (rc = sign_for(cli, id, mesh_queue_attrs(q)->fifo, ev)) !=
	            CLI_OK) {
		goto out;
	}
	if ((err = mesh_queue_send(q, &e, &sent)) != MESH_OK) {
		rc = cli_fail(cli, err);
		goto out;
	}
	if (cli->json) {
		json_t *j = json_pack("{s:s}", "MessageId", sent.message_id);
		if (mesh_queue_attrs(q)->fifo) {
			put_num(j, "SequenceNumber", (int64_t)sent.sequence);
		}
		cli_print_json(j);
	} else {
		printf("sent %s%s\n", sent.message_id,
		       sent.duplicate ? " (duplicate: already sent within 5 "
		                        "minutes)"
		                      : "");
	}
	rc = CLI_OK;
out:
	mesh_queue_close(q);
	sealer_close(&sl);
	mesh_conn_close(c);
	mesh_event_free(ev);
	mesh_identity_free(id);
	return rc;
}

int
cmd_queue_send_batch(struct cli *cli)
{
	const char *name = queue_arg(cli, 0);
	struct mesh_queue_entry e[MESH_QUEUE_BATCH_MAX];
	struct mesh_queue_sent sent[MESH_QUEUE_BATCH_MAX];
	struct mesh_event *evs[MESH_QUEUE_BATCH_MAX] = {0};
	json_t *entries = entries_arg(cli, MESH_QUEUE_BATCH_MAX), *ok, *failed,
	       *v;
	struct mesh_conn *c = NULL;
	struct mesh_queue *q = NULL;
	struct sealer sl = {0};
	char target[MESH_QUEUE_NAME_MAX + 8];
	size_t n, i;
	mesh_err err;
	int rc = CLI_FAIL;

	if (entries == NULL) {
		return CLI_USAGE;
	}
	n = json_array_size(entries);
	json_array_foreach(entries, i, v)
	{
		json_t *delay = json_object_get(v, "DelaySeconds");
		e[i] = (struct mesh_queue_entry){
		        .id = json_string_value(json_object_get(v, "Id")),
		        .delay_s = json_is_integer(delay)
		                           ? json_integer_value(delay)
		                           : -1,
		        .group_id = json_string_value(
		                json_object_get(v, "MessageGroupId")),
		        .dedup_id = json_string_value(
		                json_object_get(v, "MessageDeduplicationId"))};
		if ((rc = msg_from_entry(cli, v, i, "MessageBody", &evs[i])) !=
		    CLI_OK) {
			goto out;
		}
		e[i].event = evs[i];
	}
	if (cli_connect(cli, &c) != MESH_OK) {
		goto out;
	}
	if ((err = mesh_queue_open(c, name, &q)) != MESH_OK) {
		rc = cli_fail(cli, err);
		goto out;
	}
	/* An encrypted queue: the library seals each entry. */
	snprintf(target, sizeof(target), "queue:%s", name);
	if ((rc = sealer_open(cli, c, target, mesh_queue_attrs(q)->encrypt,
	                      NULL, &sl)) != CLI_OK) {
		goto out;
	}
	mesh_queue_set_keyring(q, sl.kr);
	if ((err = mesh_queue_send_batch(q, e, n, sent)) != MESH_OK) {
		rc = cli_fail(cli, err);
		goto out;
	}
	ok = json_array();
	failed = json_array();
	for (i = 0; i < n; i++) {
		if (sent[i].err != MESH_OK) {
			json_array_append_new(
			        failed, failed_entry(e[i].id, sent[i].err,
			                             sent[i].error));
			continue;
		}
		v = json_pack("{s:s, s:s}", "Id", e[i].id, "MessageId",
		              sent[i].message_id);
		if (mesh_queue_attrs(q)->fifo) {
			put_num(v, "SequenceNumber",
			        (int64_t)sent[i].sequence);
		}
		json_array_append_new(ok, v);
	}
	rc = batch_output(cli, ok, failed);
out:
	for (i = 0; i < MESH_QUEUE_BATCH_MAX; i++) {
		mesh_event_free(evs[i]);
	}
	mesh_queue_close(q);
	sealer_close(&sl);
	mesh_conn_close(c);
	json_decref(entries);
	return rc;
}

/* One message in receive-message's shape; raw: no BodyJson. */
static json_t *
msg_json(const struct mesh_queue_msg *m, bool fifo, bool raw)
{
	json_t *j = json_object(), *attrs = json_object(), *mattrs;
	const struct mesh_event *ev = m->event;

	json_object_set_new(j, "MessageId", json_string(mesh_event_id(ev)));
	if (m->receipt[0] != '\0') {
		json_object_set_new(j, "ReceiptHandle",
		                    json_string(m->receipt));
	}
	/* A message that did not parse: its bytes, as they came. */
	put_body(j, ev, m->parse_error[0] != '\0', raw);
	if (m->receive_count > 0) {
		put_num(attrs, "ApproximateReceiveCount",
		        (int64_t)m->receive_count);
		put_num(attrs, "ApproximateFirstReceiveTimestamp",
		        m->first_receive_ms);
	}
	put_num(attrs, "SentTimestamp", m->sent_ms);
	if (fifo) {
		json_object_set_new(attrs, "MessageGroupId",
		                    json_string(m->group_id));
		json_object_set_new(attrs, "MessageDeduplicationId",
		                    json_string(m->dedup_id));
		put_num(attrs, "SequenceNumber", (int64_t)m->sequence);
	}
	if (m->parse_error[0] != '\0') {
		json_object_set_new(attrs, "MeshParseError",
		                    json_string(m->parse_error));
	}
	if (m->dlq_source[0] != '\0') {
		json_object_set_new(attrs, "DeadLetterQueueSourceArn",
		                    json_string(m->dlq_source));
		json_object_set_new(attrs, "DeadLetterReason",
		                    json_string(m->dlq_reason));
	}
	if (m->dlq_sequence > 0) {
		put_num(attrs, "DeadLetterSourceSequence",
		        (int64_t)m->dlq_sequence);
	}
	if (m->dlq_receive_count > 0) {
		put_num(attrs, "DeadLetterReceiveCount",
		        (int64_t)m->dlq_receive_count);
	}
	if (m->dlq_service[0] != '\0') {
		json_object_set_new(attrs, "DeadLetterService",
		                    json_string(m->dlq_service));
	}
	json_object_set_new(j, "Attributes", attrs);
	if ((mattrs = msg_attrs_json(ev)) != NULL) {
		json_object_set_new(j, "MessageAttributes", mattrs);
	}
	return j;
}

static void
print_msgs(struct cli *cli, const struct mesh_queue_msg *m, size_t n,
           bool fifo)
{
	json_t *arr = json_array();

	for (size_t i = 0; i < n; i++) {
		json_array_append_new(
		        arr, msg_json(&m[i], fifo, cli_flag(cli, "--raw")));
	}
	if (cli->json) {
		cli_print_json(json_pack("{s:o}", "Messages", arr));
		return;
	}
	if (n == 0) {
		printf("no messages\n");
	}
	for (size_t i = 0; i < n; i++) {
		json_t *j = json_array_get(arr, i), *v;
		const char *key;
		printf("%sMessageId      %s\n", i ? "\n" : "",
		       json_string_value(json_object_get(j, "MessageId")));
		if ((v = json_object_get(j, "ReceiptHandle")) != NULL) {
			printf("ReceiptHandle  %s\n", json_string_value(v));
		}
		printf("Body           ");
		print_body(j);
		json_object_foreach(json_object_get(j, "Attributes"), key, v)
		{
			printf("%-32s %s\n", key, json_string_value(v));
		}
		print_msg_attrs(json_object_get(j, "MessageAttributes"));
	}
	json_decref(arr);
}

/* Open the queue named by the first word, run fn, close. */
static int
with_queue(struct cli *cli, mesh_err (*fn)(struct cli *, struct mesh_queue *))
{
	struct mesh_conn *c = NULL;
	struct mesh_queue *q = NULL;
	mesh_err err;

	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	if ((err = mesh_queue_open(c, queue_arg(cli, 0), &q)) == MESH_OK) {
		err = fn(cli, q);
	}
	mesh_queue_close(q);
	mesh_conn_close(c);
	return err == MESH_OK ? CLI_OK : cli_fail(cli, err);
}

static mesh_err
do_receive(struct cli *cli, struct mesh_queue *q)
{
	struct mesh_queue_msg *msgs = NULL;
	long long max, wait, vis;
	size_t n = 0;
	mesh_err err;

	/* Checked by cmd_queue_receive already. */
	cli_opt_long(cli, "--max", 1, 10, 1, &max);
	cli_opt_long(cli, "--wait", 0, 20, -1, &wait);
	cli_opt_long(cli, "--visibility-timeout", 0, 43200, -1, &vis);
	err = mesh_queue_receive(q, (int)max, (int)wait, vis, &msgs, &n);
	if (err == MESH_OK) {
		print_msgs(cli, msgs, n, mesh_queue_attrs(q)->fifo);
		mesh_queue_msgs_free(msgs, n);
	}
	return err;
}

int
cmd_queue_receive(struct cli *cli)
{
	long long v;

	if (!cli_opt_long(cli, "--max", 1, 10, 1, &v) ||
	    !cli_opt_long(cli, "--wait", 0, 20, -1, &v) ||
	    !cli_opt_long(cli, "--visibility-timeout", 0, 43200, -1, &v)) {
		return CLI_USAGE;
	}
	return with_queue(cli, do_receive);
}

static mesh_err
do_peek(struct cli *cli, struct mesh_queue *q)
{
	struct mesh_queue_msg *msgs = NULL;
	long long max;
	size_t n = 0;
	mesh_err err;

	cli_opt_long(cli, "--max", 1, 10000, 10, &max);
	err = mesh_queue_peek(q, (size_t)max, &msgs, &n);
	if (err == MESH_OK) {
		print_msgs(cli, msgs, n, mesh_queue_attrs(q)->fifo);
		mesh_queue_msgs_free(msgs, n);
	}
	return err;
}

int
cmd_queue_peek(struct cli *cli)
{
	long long v;

	if (!cli_opt_long(cli, "--max", 1, 10000, 10, &v)) {
		return CLI_USAGE;
	}
	return with_queue(cli, do_peek);
}

static mesh_err
do_delete_message(struct cli *cli, struct mesh_queue *q)
{
	mesh_err err = mesh_queue_delete_message(q, cli_pos(cli, 1));

	if (err == MESH_OK && !cli->json) {
		printf("deleted\n");
	}
	return err;
}

int
cmd_queue_delete_message(struct cli *cli)
{
	return with_queue(cli, do_delete_message);
}

static mesh_err
do_change_visibility(struct cli *cli, struct mesh_queue *q)
{
	long long secs = strtoll(cli_pos(cli, 2), NULL, 10);
	mesh_err err;

	err = mesh_queue_change_visibility(q, cli_pos(cli, 1), secs);
	if (err == MESH_OK && !cli->json) {
		printf("visible again in %lld s\n", secs);
	}
	return err;
}

int
cmd_queue_change_visibility(struct cli *cli)
{
	const char *s = cli_pos(cli, 2);
	char *end;
	long long secs = strtoll(s, &end, 10);

	if (*s == '\0' || *end != '\0' || secs < 0 || secs > 43200) {
		return cli_usage_error(cli,
		                       "visibility timeout '%s': must be "
		                       "0-43200 seconds",
		                       s);
	}
	return with_queue(cli, do_change_visibility);
}

static mesh_err
do_dead_letter(struct cli *cli, struct mesh_queue *q)
{
	mesh_err err = mesh_queue_dead_letter(q, cli_pos(cli, 1),
	                                      cli_opt(cli, "--reason"));

	if (err == MESH_OK && !cli->json) {
		printf("moved to %s\n", mesh_queue_attrs(q)->dlq);
	}
	return err;
}

int
cmd_queue_dead_letter(struct cli *cli)
{
	return with_queue(cli, do_dead_letter);
}

/* delete-message-batch and change-message-visibility-batch. */
static int
receipt_batch(struct cli *cli, bool visibility)
{
	const char *ids[MESH_QUEUE_BATCH_MAX], *rh[MESH_QUEUE_BATCH_MAX];
	int64_t secs[MESH_QUEUE_BATCH_MAX];
	struct mesh_queue_result res[MESH_QUEUE_BATCH_MAX];
	json_t *entries = entries_arg(cli, MESH_QUEUE_BATCH_MAX), *v, *ok,
	       *failed;
	struct mesh_conn *c = NULL;
	struct mesh_queue *q = NULL;
	size_t n, i;
	mesh_err err;
	int rc;

	if (entries == NULL) {
		return CLI_USAGE;
	}
	n = json_array_size(entries);
	json_array_foreach(entries, i, v)
	{
		ids[i] = json_string_value(json_object_get(v, "Id"));
		rh[i] = json_string_value(json_object_get(v, "ReceiptHandle"));
		secs[i] = json_integer_value(
		        json_object_get(v, "VisibilityTimeout"));
		if (rh[i] == NULL ||
		    (visibility && !json_is_integer(json_object_get(
		                           v, "VisibilityTimeout")))) {
			json_decref(entries);
			return cli_usage_error(
			        cli,
			        "--entries[%zu]: needs Id, ReceiptHandle%s", i,
			        visibility ? " and VisibilityTimeout" : "");
		}
	}
	if (cli_connect(cli, &c) != MESH_OK) {
		json_decref(entries);
		return CLI_FAIL;
	}
	if ((err = mesh_queue_open(c, queue_arg(cli, 0), &q)) == MESH_OK) {
		err = visibility ? mesh_queue_change_visibility_batch(
		                           q, ids, rh, secs, n, res)
		                 : mesh_queue_delete_batch(q, ids, rh, n, res);
	}
	if (err != MESH_OK) {
		rc = cli_fail(cli, err);
	} else {
		ok = json_array();
		failed = json_array();
		for (i = 0; i < n; i++) {
			if (res[i].err == MESH_OK) {
				json_array_append_new(
				        ok, json_pack("{s:s}", "Id", ids[i]));
			} else {
				json_array_append_new(
				        failed,
				        failed_entry(ids[i], res[i].err,
				                     res[i].error));
			}
		}
		rc = batch_output(cli, ok, failed);
	}
	mesh_queue_close(q);
	mesh_conn_close(c);
	json_decref(entries);
	return rc;
}

int
cmd_queue_delete_message_batch(struct cli *cli)
{
	return receipt_batch(cli, false);
}

int
cmd_queue_change_visibility_batch(struct cli *cli)
{
	return receipt_batch(cli, true);
}

int
cmd_queue_redrive(struct cli *cli)
{
	struct mesh_queue_redrive r = {.to = cli_opt(cli, "--to")};
	const char *ids[1024];
	const char *match = cli_opt(cli, "--attr-match");
	char attr_name[260];
	struct mesh_conn *c;
	long long rate, max;
	size_t moved = 0;
	mesh_err err;

	if (!cli_opt_long(cli, "--rate", 0, 1000000, 0, &rate) ||
	    !cli_opt_long(cli, "--max", 0, 1000000000, 0, &max)) {
		return CLI_USAGE;
	}
	while (r.n_ids < 1024 &&
	       (ids[r.n_ids] = cli_opt_nth(cli, "--id", r.n_ids)) != NULL) {
		r.n_ids++;
	}
	if (match != NULL) {
		const char *eq = strchr(match, '=');
		if (eq == NULL || eq == match ||
		    (size_t)(eq - match) >= sizeof(attr_name)) {
			return cli_usage_error(cli,
			                       "--attr-match '%s': want "
			                       "NAME=VALUE",
			                       match);
		}
		snprintf(attr_name, sizeof(attr_name), "%.*s",
		         (int)(eq - match), match);
		r.attr_name = attr_name;
		r.attr_value = eq + 1;
	}
	r.ids = ids;
	r.rate = (double)rate;
	r.max = (size_t)max;
	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	err = mesh_queue_redrive(c, queue_arg(cli, 0), &r, &moved);
	mesh_conn_close(c);
	if (cli->json) {
		cli_print_json(json_pack("{s:I}",
		                         "ApproximateNumberOfMessagesMoved",
		                         (json_int_t)moved));
	} else {
		printf("moved %zu message%s from %s\n", moved,
		       moved == 1 ? "" : "s", queue_arg(cli, 0));
	}
	return err == MESH_OK ? CLI_OK : cli_fail(cli, err);
}
