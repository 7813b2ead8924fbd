/* cmd_topic.c: meshctl topic ... and subscription ..., SNS's calls from the
 * shell. With --json the output has the AWS CLI's shapes (a topic's or a
 * subscription's "ARN" is its name or id). */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "mesh/clock.h"
#include "mesh/seal.h"
#include "message.h"

static const char *
bool_str(bool b)
{
	return b ? "true" : "false";
}

/* Run fn with a connection; print the failure. */
static int
connected(struct cli *cli, int (*fn)(struct cli *, struct mesh_conn *))
{
	struct mesh_conn *c = NULL;
	int rc;

	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	rc = fn(cli, c);
	mesh_conn_close(c);
	return rc;
}

/* ---- topics ------------------------------------------------------------- */

static int
do_topic_create(struct cli *cli, struct mesh_conn *c)
{
	const char *name = cli_pos(cli, 0);
	struct mesh_topic_attrs a;
	long long days, replicas;
	bool fifo = false;
	mesh_err err;

	mesh_topic_attrs_init(&a);
	if (!cli_opt_long(cli, "--archive-days", 1, MESH_TOPIC_ARCHIVE_DAYS, 0,
	                  &days) ||
	    !cli_opt_long(cli, "--replicas", 1, MESH_REPLICAS_MAX, 0,
	                  &replicas)) {
		return CLI_USAGE;
	}
	if ((err = mesh_topic_name_check(name, &fifo)) != MESH_OK) {
		return cli_usage_error(cli, "%s", mesh_errdetail());
	}
	a.fifo = fifo || cli_flag(cli, "--fifo");
	a.content_based_dedup = cli_flag(cli, "--content-based-dedup");
	a.archive_days = days;
	a.replicas = replicas;
	if (!require_signers_flag(cli, a.require_signers,
	                          sizeof(a.require_signers)) ||
	    !encrypt_flags(cli, &a.encrypt, a.readers, sizeof(a.readers))) {
		return CLI_USAGE;
	}
	if ((err = mesh_topic_create(c, name, &a)) != MESH_OK) {
		return err == MESH_EINVAL
		               ? cli_usage_error(cli, "%s", mesh_errdetail())
		               : cli_fail(cli, err);
	}
	if (cli->json) {
		cli_print_json(json_pack("{s:s}", "TopicArn", name));
	} else {
		printf("%s\n", name);
	}
	return CLI_OK;
}

int
cmd_topic_create(struct cli *cli)
{
	return connected(cli, do_topic_create);
}

static int
do_topic_set_attributes(struct cli *cli, struct mesh_conn *c)
{
	const char *name = cli_pos(cli, 0);
	struct mesh_topic_info ti;
	long long replicas;
	mesh_err err;

	if (!cli_opt_long(cli, "--replicas", 1, MESH_REPLICAS_MAX, 0,
	                  &replicas)) {
		return CLI_USAGE;
	}
	if (replicas == 0 && cli_opt(cli, "--require-signers") == NULL &&
	    !cli_flag(cli, "--encrypt") && !cli_flag(cli, "--no-encrypt") &&
	    cli_opt(cli, "--readers") == NULL) {
		return cli_usage_error(
		        cli, "set-attributes: nothing to change "
		             "(--replicas N, --require-signers A,B, --encrypt "
		             "--readers A,B, --no-encrypt)");
	}
	if ((err = mesh_topic_info(c, name, &ti)) != MESH_OK) {
		return cli_fail(cli, err);
	}
	ti.a.replicas = replicas;
	if (!require_signers_flag(cli, ti.a.require_signers,
	                          sizeof(ti.a.require_signers)) ||
	    !encrypt_flags(cli, &ti.a.encrypt, ti.a.readers,
	                   sizeof(ti.a.readers))) {
		return CLI_USAGE;
	}
	if ((err = mesh_topic_set_attrs(c, name, &ti.a)) != MESH_OK) {
		return cli_fail(cli, err);
	}
	if (!cli->json) {
		printf("updated topic %s\n", name);
	}
	return CLI_OK;
}

int
cmd_topic_set_attributes(struct cli *cli)
{
	return connected(cli, do_topic_set_attributes);
}

static int
do_topic_delete(struct cli *cli, struct mesh_conn *c)
{
	const char *name = cli_pos(cli, 0);
	struct mesh_topic_info ti;
	mesh_err err;
	int rc;

	if ((err = mesh_topic_info(c, name, &ti)) != MESH_OK) {
		return cli_fail(cli, err);
	}
	rc = cli_confirm(cli,
	                 "delete topic '%s', its %" PRIu64
	                 " stored message%s and its %zu subscription%s",
	                 name, ti.messages, ti.messages == 1 ? "" : "s",
	                 ti.subscriptions, ti.subscriptions == 1 ? "" : "s");
	if (rc != CLI_OK) {
		return rc;
	}
	if ((err = mesh_topic_delete(c, name)) != MESH_OK) {
		return cli_fail(cli, err);
	}
	if (!cli->json) {
		printf("deleted topic %s\n", name);
	}
	return CLI_OK;
}

int
cmd_topic_delete(struct cli *cli)
{
	return connected(cli, do_topic_delete);
}

static int
do_topic_list(struct cli *cli, struct mesh_conn *c)
{
	char **names = NULL;
	size_t n = 0;
	json_t *arr;
	mesh_err err;

	if ((err = mesh_topic_list(c, &names, &n)) != MESH_OK) {
		return cli_fail(cli, err);
	}
	arr = json_array();
	for (size_t i = 0; i < n; i++) {
		if (cli->json) {
			json_array_append_new(
			        arr, json_pack("{s:s}", "TopicArn", names[i]));
		} else {
			printf("%s\n", names[i]);
		}
	}
	if (cli->json) {
		cli_print_json(json_pack("{s:o}", "Topics", arr));
	} else {
		json_decref(arr);
	}
	mesh_topic_list_free(names, n);
	return CLI_OK;
}

int
cmd_topic_list(struct cli *cli)
{
	return connected(cli, do_topic_list);
}

static int
do_topic_info(struct cli *cli, struct mesh_conn *c)
{
	const char *name = cli_pos(cli, 0);
	struct mesh_topic_info ti;
	char target[MESH_TOPIC_NAME_MAX + 8];
	json_t *at;
	mesh_err err;

	if ((err = mesh_topic_info(c, name, &ti)) != MESH_OK) {
		return cli_fail(cli, err);
	}
	at = json_pack("{s:s, s:s, s:s}", "TopicArn", name, "FifoTopic",
	               bool_str(ti.a.fifo), "ContentBasedDeduplication",
	               bool_str(ti.a.content_based_dedup));
	put_num(at, "SubscriptionsConfirmed", (int64_t)ti.subscriptions);
	put_num(at, "MessagesStored", (int64_t)ti.messages);
	put_num(at, "CreatedTimestamp", ti.a.created_ms);
	put_num(at, "Replicas", ti.a.replicas);
	if (ti.a.archive_days > 0) {
		char policy[64];
		snprintf(policy, sizeof(policy),
		         "{\"MessageRetentionPeriod\":\"%" PRId64 "\"}",
		         ti.a.archive_days);
		json_object_set_new(at, "ArchivePolicy", json_string(policy));
	}
	if (ti.a.require_signers[0] != '\0') {
		json_object_set_new(at, "RequireSigners",
		                    json_string(ti.a.require_signers));
	}
	snprintf(target, sizeof(target), "topic:%s", name);
	encrypt_attrs(c, target, ti.a.encrypt, ti.a.readers, at, false);
	if (cli->json) {
		cli_print_json(json_pack("{s:o}", "Attributes", at));
		return CLI_OK;
	}
	printf("topic          %s (%s)\n", name,
	       ti.a.fifo ? "FIFO" : "standard");
	if (ti.a.fifo) {
		printf("content dedup  %s\n",
		       bool_str(ti.a.content_based_dedup));
	}
	if (ti.a.archive_days > 0) {
		printf("archive        %" PRId64 " days\n", ti.a.archive_days);
	} else {
		printf("archive        none\n");
	}
	printf("replicas       %" PRId64 "\n", ti.a.replicas);
	printf("signers        %s\n", ti.a.require_signers[0]
	                                      ? ti.a.require_signers
	                                      : "any (none required)");
	if (ti.a.encrypt) {
		json_t *ids = json_object_get(at, "KeyIds");
		size_t i;
		json_t *v;
		printf("encrypt        true (readers: %s; and admin)\n",
		       ti.a.readers[0] ? ti.a.readers : "none");
		printf("key ids       ");
		json_array_foreach(ids, i, v)
		{
			printf(" %" JSON_INTEGER_FORMAT,
			       json_integer_value(v));
		}
		printf(" (current %s)\n",
		       json_string_value(json_object_get(at, "CurrentKeyId"))
		               ? json_string_value(
		                         json_object_get(at, "CurrentKeyId"))
		               : "none");
	} else {
		printf("encrypt        false\n");
	}
	printf("subscriptions  %zu\n", ti.subscriptions);
	printf("stored         %" PRIu64 " messages\n", ti.messages);
	json_decref(at);
	return CLI_OK;
}

int
cmd_topic_info(struct cli *cli)
{
	return connected(cli, do_topic_info);
}

/* ---- publishing --------------------------------------------------------- */

static json_t *
published_json(const char *id, const struct mesh_topic_published *p, bool fifo)
{
	json_t *j = json_pack("{s:s}", "MessageId", p->message_id);

	if (id != NULL) {
		json_object_set_new(j, "Id", json_string(id));
	}
	if (fifo) {
		char seq[24];
		snprintf(seq, sizeof(seq), "%020" PRIu64, p->sequence);
		json_object_set_new(j, "SequenceNumber", json_string(seq));
	}
	return j;
}

static mesh_err
open_topic_sender(void *t, mesh_sent_fn fn, void *arg,
                  struct mesh_sender **out)
{
	return mesh_sender_open_topic(t, NULL, fn, arg, out);
}

/* topic publish --stdin: many messages, pipelined. */
static int
topic_publish_stdin(struct cli *cli, const char *name)
{
	struct mesh_conn *c = NULL;
	struct mesh_topic *t = NULL;
	mesh_err err;
	int rc;

	if (cli_opt(cli, "--subject") != NULL) {
		return cli_usage_error(cli, "--stdin: no --subject beside it");
	}
	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	if ((err = mesh_topic_open(c, name, &t)) != MESH_OK) {
		rc = cli_fail(cli, err);
	} else {
		char target[MESH_TOPIC_NAME_MAX + 8];
		snprintf(target, sizeof(target), "topic:%s", name);
		rc = signer_fifo_check(cli, cli_opt(cli, "--sign") != NULL,
		                       mesh_topic_attrs(t)->fifo);
		if (rc == CLI_OK) {
			rc = send_stdin(cli, open_topic_sender, t, c, target,
			                mesh_topic_attrs(t)->encrypt);
		}
	}
	mesh_topic_close(t);
	mesh_conn_close(c);
	return rc;
}

int
cmd_topic_publish(struct cli *cli)
{
	const char *name = cli_pos(cli, 0);
	const char *subject = cli_opt(cli, "--subject");
	struct mesh_topic_entry e = {0};
	struct mesh_topic_published p;
	struct mesh_event *ev = NULL;
	struct mesh_conn *c = NULL;
	struct mesh_topic *t = NULL;
	struct mesh_identity *id = NULL;
	struct sealer sl = {0};
	char target[MESH_TOPIC_NAME_MAX + 8];
	mesh_err err;
	int rc;

	if (cli_flag(cli, "--stdin")) {
		return topic_publish_stdin(cli, name);
	}
	if ((rc = signer_from_flags(cli, &id)) != CLI_OK) {
		return rc;
	}
	if ((rc = msg_from_flags(cli, &ev)) != CLI_OK) {
		mesh_identity_free(id);
		return rc;
	}
	if (subject != NULL &&
	    (err = mesh_event_set_subject(ev, subject)) != MESH_OK) {
		mesh_event_free(ev);
		mesh_identity_free(id);
		return cli_usage_error(cli, "--subject: %s", mesh_errdetail());
	}
	e.event = ev;
	e.group_id = cli_opt(cli, "--group");
	e.dedup_id = cli_opt(cli, "--dedup-id");
	rc = CLI_FAIL;
	if (cli_connect(cli, &c) != MESH_OK) {
		goto out;
	}
	if ((err = mesh_topic_open(c, name, &t)) != MESH_OK) {
		rc = cli_fail(cli, err);
		goto out;
	}
	/* Seal, then sign: the signature covers the sealed form, so
	 * mesh-router verifies without any key. */
	snprintf(target, sizeof(target), "topic:%s", name);
	if ((rc = sealer_open(cli, c, target, mesh_topic_attrs(t)->encrypt, id,
	                      &sl)) != CLI_OK ||
	    (rc = sealer_seal(cli, &sl, ev)) != CLI_OK) {
		goto out;
	}
	if ((rc = sign_for(cli, id, mesh_topic_attrs(t)->fifo, ev)) !=
	    CLI_OK) {
		goto out;
	}
	if ((err = mesh_topic_publish(t, &e, &p)) != MESH_OK) {
		rc = err == MESH_EINVAL
		             ? cli_usage_error(cli, "%s", mesh_errdetail())
		             : cli_fail(cli, err);
		goto out;
	}
	if (cli->json) {
		cli_print_json(
		        published_json(NULL, &p, mesh_topic_attrs(t)->fifo));
	} else {
		printf("published %s%s\n", p.message_id,
		       p.duplicate ? " (duplicate: already published within "
		                     "5 minutes)"
		                   : "");
	}
	rc = CLI_OK;
out:
	mesh_topic_close(t);
	sealer_close(&sl);
	mesh_conn_close(c);
	mesh_event_free(ev);
	mesh_identity_free(id);
	return rc;
}

int
cmd_topic_publish_batch(struct cli *cli)
{
	const char *name = cli_pos(cli, 0);
	struct mesh_topic_entry e[MESH_TOPIC_BATCH_MAX];
	struct mesh_topic_published p[MESH_TOPIC_BATCH_MAX];
	struct mesh_event *evs[MESH_TOPIC_BATCH_MAX] = {0};
	json_t *entries = entries_arg(cli, MESH_TOPIC_BATCH_MAX), *ok, *failed,
	       *v;
	struct mesh_conn *c = NULL;
	struct mesh_topic *t = NULL;
	struct sealer sl = {0};
	char target[MESH_TOPIC_NAME_MAX + 8];
	size_t n, i;
	mesh_err err;
	int rc = CLI_FAIL;

	if (entries == NULL) {
		return CLI_USAGE;
	}
	n = json_array_size(entries);
	json_array_foreach(entries, i, v)
	{
		const char *subject =
		        json_string_value(json_object_get(v, "Subject"));
		e[i] = (struct mesh_topic_entry){
		        .id = json_string_value(json_object_get(v, "Id")),
		        .group_id = json_string_value(
		                json_object_get(v, "MessageGroupId")),
		        .dedup_id = json_string_value(
		                json_object_get(v, "MessageDeduplicationId"))};
		if ((rc = msg_from_entry(cli, v, i, "Message", &evs[i])) !=
		    CLI_OK) {
			goto out;
		}
		if (subject != NULL && (err = mesh_event_set_subject(
		                                evs[i], subject)) != MESH_OK) {
			rc = cli_usage_error(cli,
			                     "--entries[%zu]: Subject: %s", i,
			                     mesh_errdetail());
			goto out;
		}
		e[i].event = evs[i];
	}
	rc = CLI_FAIL;
	if (cli_connect(cli, &c) != MESH_OK) {
		goto out;
	}
	if ((err = mesh_topic_open(c, name, &t)) != MESH_OK) {
		rc = cli_fail(cli, err);
		goto out;
	}
	/* An encrypted topic: the library seals each entry. */
	snprintf(target, sizeof(target), "topic:%s", name);
	if ((rc = sealer_open(cli, c, target, mesh_topic_attrs(t)->encrypt,
	                      NULL, &sl)) != CLI_OK) {
		goto out;
	}
	mesh_topic_set_keyring(t, sl.kr);
	if ((err = mesh_topic_publish_batch(t, e, n, p)) != MESH_OK) {
		rc = err == MESH_EINVAL
		             ? cli_usage_error(cli, "%s", mesh_errdetail())
		             : cli_fail(cli, err);
		goto out;
	}
	ok = json_array();
	failed = json_array();
	for (i = 0; i < n; i++) {
		if (p[i].err != MESH_OK) {
			json_array_append_new(
			        failed,
			        failed_entry(e[i].id, p[i].err, p[i].error));
		} else {
			json_array_append_new(
			        ok, published_json(e[i].id, &p[i],
			                           mesh_topic_attrs(t)->fifo));
		}
	}
	rc = batch_output(cli, ok, failed);
out:
	for (i = 0; i < MESH_TOPIC_BATCH_MAX; i++) {
		mesh_event_free(evs[i]);
	}
	mesh_topic_close(t);
	sealer_close(&sl);
	mesh_conn_close(c);
	json_decref(entries);
	return rc;
}

/* ---- tail --------------------------------------------------------------- */

/* One message a tail saw, in the shape of a received message: MessageId,
 * Type, Subject, SequenceNumber, Timestamp (stored), MessageGroupId,
 * Body, BodyJson, MessageAttributes, Attributes.MeshParseError. */
static json_t *
tailed_json(const struct mesh_topic_tailed *m, bool raw)
{
	const struct mesh_event *ev = m->event;
	json_t *j = json_pack("{s:s, s:s}", "MessageId", mesh_event_id(ev),
	                      "Type", mesh_event_type(ev));
	json_t *mattrs;
	char when[32];

	if (mesh_event_subject(ev) != NULL) {
		json_object_set_new(j, "Subject",
		                    json_string(mesh_event_subject(ev)));
	}
	put_num(j, "SequenceNumber", (int64_t)m->sequence);
	mesh_time_format(m->stored_ms / 1000, when);
	json_object_set_new(j, "Timestamp", json_string(when));
	if (m->group_id[0] != '\0') {
		json_object_set_new(j, "MessageGroupId",
		                    json_string(m->group_id));
	}
	put_body(j, ev, m->parse_error[0] != '\0', raw);
	if ((mattrs = msg_attrs_json(ev)) != NULL) {
		json_object_set_new(j, "MessageAttributes", mattrs);
	}
	if (m->parse_error[0] != '\0') {
		json_object_set_new(
		        j, "Attributes",
		        json_pack("{s:s}", "MeshParseError", m->parse_error));
	}
	return j;
}

static void
print_tailed(const json_t *j, bool first)
{
	static const char *const fields[] = {
	        "MessageId", "Type",           "Subject",
	        "Timestamp", "SequenceNumber", "MessageGroupId",
	};
	json_t *pe = json_object_get(json_object_get(j, "Attributes"),
	                             "MeshParseError");

	if (!first) {
		putchar('\n');
	}
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		json_t *v = json_object_get(j, fields[i]);
		if (v != NULL) {
			printf("%-15s%s\n", fields[i], json_string_value(v));
		}
	}
	printf("%-15s", "Body");
	print_body(j);
	if (pe != NULL) {
		printf("%-15s%s\n", "MeshParseError", json_string_value(pe));
	}
	print_msg_attrs(json_object_get(j, "MessageAttributes"));
}

/* Ctrl-C (or SIGTERM) stops the tail from a thread of its own: the main
 * thread waits in mesh_topic_tail_next, which a signal handler may not
 * touch. The signals are blocked before the connection's threads start,
 * so this thread is the one that takes them. A second one quits at once,
 * should stopping hang (a broker gone away). */
struct tail_stopper {
	sigset_t set;
	struct mesh_topic_tail *tail;
	atomic_bool done; /* the main thread is finishing: just return */
};

static void *
tail_stopper_run(void *arg)
{
	struct tail_stopper *st = arg;
	bool stopped = false;
	int sig;

	while (sigwait(&st->set, &sig) == 0 && !atomic_load(&st->done)) {
		if (stopped) {
			_exit(128 + sig);
		}
		stopped = true;
		mesh_topic_tail_stop(st->tail);
	}
	return NULL;
}

/* --since: an ISO-8601 time, or a duration ago (90s, 15m, 2h, 1d). */
static bool
since_arg(struct cli *cli, int64_t *since_ms)
{
	const char *v = cli_opt(cli, "--since");
	int64_t t, ago;

	*since_ms = 0;
	if (v == NULL) {
		return true;
	}
	if (mesh_time_parse(v, &t) == MESH_OK) {
		*since_ms = t * 1000;
		return true;
	}
	if (mesh_duration_parse(v, 1, &ago) && ago > 0) {
		*since_ms = (int64_t)time(NULL) * 1000 - ago * 1000;
		return true;
	}
	cli_usage_error(cli,
	                "--since '%s': an ISO-8601 time "
	                "(2026-01-31T12:00:00Z) or a duration ago (90s, 15m, "
	                "2h, 1d)",
	                v);
	return false;
}

int
cmd_topic_tail(struct cli *cli)
{
	const char *name = cli_pos(cli, 0);
	struct tail_stopper st;
	struct mesh_conn *c = NULL;
	struct mesh_topic_tail *t = NULL;
	bool raw = cli_flag(cli, "--raw"), stopper = false;
	long long count, seen = 0;
	pthread_t thread;
	int64_t since_ms;
	mesh_err err = MESH_OK;
	int rc = CLI_FAIL;

	if (!cli_opt_long(cli, "--count", 1, 1000000000, 0, &count) ||
	    !since_arg(cli, &since_ms)) {
		return CLI_USAGE;
	}
	sigemptyset(&st.set);
	sigaddset(&st.set, SIGINT);
	sigaddset(&st.set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &st.set, NULL);
	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	if ((err = mesh_topic_tail_open(c, name, since_ms, &t)) != MESH_OK) {
		rc = cli_fail(cli, err);
		goto out;
	}
	st.tail = t;
	atomic_init(&st.done, false);
	stopper = pthread_create(&thread, NULL, tail_stopper_run, &st) == 0;
	/* On stderr, also with --json: once it is there, so is the tail. */
	fprintf(stderr,
	        "following topic %s%s (Ctrl-C to stop); subscriptions keep "
	        "every message\n",
	        name, since_ms > 0 ? ", from --since" : "");
	while (count == 0 || seen < count) {
		struct mesh_topic_tailed m;
		json_t *j;
		if ((err = mesh_topic_tail_next(t, -1, &m)) != MESH_OK) {
			break;
		}
		j = tailed_json(&m, raw);
		if (cli->json) {
			/* One object a line (JSON Lines): a stream, not a
			 * document. */
			json_dumpf(j, stdout,
			           JSON_COMPACT | JSON_ENSURE_ASCII);
			putchar('\n');
		} else {
			print_tailed(j, seen == 0);
		}
		fflush(stdout);
		json_decref(j);
		mesh_topic_tailed_fini(&m);
		seen++;
	}
	rc = err == MESH_OK || err == MESH_ECLOSED ? CLI_OK
	                                           : cli_fail(cli, err);
out:
	if (stopper) {
		/* Wake it with a signal of its own, never cancel it: it may be
		 * inside cnats (stopping the tail), holding its locks. The
		 * tail is closed only once it has returned. */
		atomic_store(&st.done, true);
		pthread_kill(thread, SIGTERM);
		pthread_join(thread, NULL);
	}
	mesh_topic_tail_close(t);
	mesh_conn_close(c);
	return rc;
}

/* ---- subscriptions ------------------------------------------------------ */

/* The attributes given as flags; CLI_OK or an exit code. `set` reads
 * the set-attributes spelling (--no-filter-policy, --no-raw). */
static int
sub_attrs(struct cli *cli, struct mesh_sub_attrs *a,
          const struct mesh_subscription *old)
{
	const char *scope = cli_opt(cli, "--filter-scope");
	const char *from = cli_opt(cli, "--replay-from");

	mesh_sub_attrs_init(a);
	if (old != NULL) {
		a->filter_policy = old->filter_policy;
		a->filter_scope = old->filter_scope;
		a->raw = old->raw;
	}
	if (cli_opt(cli, "--filter-policy") != NULL) {
		a->filter_policy = cli_opt(cli, "--filter-policy");
	}
	if (cli_flag(cli, "--no-filter-policy")) {
		a->filter_policy = NULL;
	}
	if (scope != NULL &&
	    mesh_filter_scope_parse(scope, &a->filter_scope) != MESH_OK) {
		return cli_usage_error(cli,
		                       "--filter-scope '%s': must be "
		                       "MessageAttributes or MessageBody",
		                       scope);
	}
	if (cli_flag(cli, "--raw")) {
		a->raw = true;
	}
	if (cli_flag(cli, "--no-raw")) {
		a->raw = false;
	}
	if (from != NULL) {
		int64_t t;
		if (mesh_time_parse(from, &t) != MESH_OK) {
			return cli_usage_error(cli,
			                       "--replay-from '%s': not an "
			                       "ISO-8601 time",
			                       from);
		}
		a->replay_from_ms = t * 1000;
	}
	return CLI_OK;
}

/* Errors of bad input exit 2, others 1. */
static int
sub_fail(struct cli *cli, mesh_err err)
{
	return err == MESH_EINVAL
	               ? cli_usage_error(cli, "%s", mesh_errdetail())
	               : cli_fail(cli, err);
}

static int
do_topic_subscribe(struct cli *cli, struct mesh_conn *c)
{
	const char *queue = cli_opt(cli, "--queue");
	const char *service = cli_opt(cli, "--service");
	struct mesh_subscription s;
	struct mesh_sub_attrs a;
	mesh_err err;
	int rc;

	if ((queue != NULL) == (service != NULL)) {
		return cli_usage_error(cli, "give one of --queue Q and "
		                            "--service NAME");
	}
	if ((rc = sub_attrs(cli, &a, NULL)) != CLI_OK) {
		return rc;
	}
	err = mesh_subscription_create(
	        c, cli_pos(cli, 0), queue ? MESH_SUB_QUEUE : MESH_SUB_SERVICE,
	        queue ? queue : service, &a, &s);
	if (err != MESH_OK) {
		return sub_fail(cli, err);
	}
	if (cli->json) {
		cli_print_json(json_pack("{s:s}", "SubscriptionArn", s.id));
	} else {
		printf("%s\n", s.id);
	}
	mesh_subscription_fini(&s);
	return CLI_OK;
}

int
cmd_topic_subscribe(struct cli *cli)
{
	return connected(cli, do_topic_subscribe);
}

static json_t *
sub_json(const struct mesh_subscription *s, bool attributes)
{
	json_t *j = json_pack("{s:s, s:s, s:s, s:s}", "SubscriptionArn", s->id,
	                      "TopicArn", s->topic, "Protocol",
	                      mesh_sub_protocol_name(s->protocol), "Endpoint",
	                      s->endpoint);

	if (attributes) {
		json_object_set_new(j, "RawMessageDelivery",
		                    json_string(bool_str(s->raw)));
		json_object_set_new(
		        j, "FilterPolicyScope",
		        json_string(mesh_filter_scope_name(s->filter_scope)));
		if (s->filter_policy != NULL) {
			json_object_set_new(j, "FilterPolicy",
			                    json_string(s->filter_policy));
		}
		put_num(j, "PendingMessages", (int64_t)s->pending);
		json_object_set_new(j, "ConfirmationWasAuthenticated",
		                    json_string("true"));
		j = json_pack("{s:o}", "Attributes", j);
	}
	return j;
}

static int
do_subscription_list(struct cli *cli, struct mesh_conn *c)
{
	struct mesh_subscription *subs = NULL;
	size_t n = 0;
	json_t *arr;
	mesh_err err;

	err = mesh_subscription_list(c, cli_opt(cli, "--topic"), &subs, &n);
	if (err != MESH_OK) {
		return sub_fail(cli, err);
	}
	arr = json_array();
	if (!cli->json && n > 0) {
		printf("%-40s %-8s %-24s %8s %s\n", "SUBSCRIPTION", "PROTOCOL",
		       "ENDPOINT", "PENDING", "FILTER");
	}
	for (size_t i = 0; i < n; i++) {
		if (cli->json) {
			json_array_append_new(arr, sub_json(&subs[i], false));
			continue;
		}
		printf("%-40s %-8s %-24s %8" PRIu64 " %s%s\n", subs[i].id,
		       mesh_sub_protocol_name(subs[i].protocol),
		       subs[i].endpoint, subs[i].pending,
		       subs[i].filter_policy ? subs[i].filter_policy : "-",
		       subs[i].raw ? " (raw)" : "");
	}
	if (cli->json) {
		cli_print_json(json_pack("{s:o}", "Subscriptions", arr));
	} else {
		json_decref(arr);
	}
	mesh_subscription_list_free(subs, n);
	return CLI_OK;
}

int
cmd_subscription_list(struct cli *cli)
{
	return connected(cli, do_subscription_list);
}

static int
do_subscription_info(struct cli *cli, struct mesh_conn *c)
{
	struct mesh_subscription s;
	mesh_err err = mesh_subscription_get(c, cli_pos(cli, 0), &s);

	if (err != MESH_OK) {
		return sub_fail(cli, err);
	}
	if (cli->json) {
		cli_print_json(sub_json(&s, true));
	} else {
		printf("subscription  %s\n", s.id);
		printf("topic         %s\n", s.topic);
		printf("endpoint      %s %s\n",
		       mesh_sub_protocol_name(s.protocol), s.endpoint);
		printf("filter        %s (%s)\n",
		       s.filter_policy ? s.filter_policy : "none",
		       mesh_filter_scope_name(s.filter_scope));
		printf("raw delivery  %s\n", bool_str(s.raw));
		printf("pending       %" PRIu64 " messages\n", s.pending);
	}
	mesh_subscription_fini(&s);
	return CLI_OK;
}

int
cmd_subscription_info(struct cli *cli)
{
	return connected(cli, do_subscription_info);
}

static int
do_subscription_set(struct cli *cli, struct mesh_conn *c)
{
	struct mesh_subscription old;
	struct mesh_sub_attrs a;
	mesh_err err;
	int rc;

	if (cli_opt(cli, "--filter-policy") != NULL &&
	    cli_flag(cli, "--no-filter-policy")) {
		return cli_usage_error(cli, "--filter-policy and "
		                            "--no-filter-policy exclude each "
		                            "other");
	}
	if (cli_flag(cli, "--raw") && cli_flag(cli, "--no-raw")) {
		return cli_usage_error(cli, "--raw and --no-raw exclude each "
		                            "other");
	}
	if ((err = mesh_subscription_get(c, cli_pos(cli, 0), &old)) !=
	    MESH_OK) {
		return sub_fail(cli, err);
	}
	if ((rc = sub_attrs(cli, &a, &old)) == CLI_OK) {
		err = mesh_subscription_set_attrs(c, old.id, &a);
		rc = err == MESH_OK ? CLI_OK : sub_fail(cli, err);
	}
	mesh_subscription_fini(&old);
	return rc;
}

int
cmd_subscription_set_attributes(struct cli *cli)
{
	return connected(cli, do_subscription_set);
}

static int
do_subscription_delete(struct cli *cli, struct mesh_conn *c)
{
	struct mesh_subscription s;
	mesh_err err = mesh_subscription_get(c, cli_pos(cli, 0), &s);
	int rc;

	if (err != MESH_OK) {
		return sub_fail(cli, err);
	}
	rc = cli_confirm(cli,
	                 "delete subscription %s (topic %s to %s %s, %" PRIu64
	                 " message%s pending)",
	                 s.id, s.topic, mesh_sub_protocol_name(s.protocol),
	                 s.endpoint, s.pending, s.pending == 1 ? "" : "s");
	if (rc == CLI_OK &&
	    (err = mesh_subscription_delete(c, s.id)) != MESH_OK) {
		rc = sub_fail(cli, err);
	}
	if (rc == CLI_OK && !cli->json) {
		printf("deleted subscription %s\n", s.id);
	}
	mesh_subscription_fini(&s);
	return rc;
}

int
cmd_subscription_delete(struct cli *cli)
{
	return connected(cli, do_subscription_delete);
}
