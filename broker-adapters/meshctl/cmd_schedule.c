/* cmd_schedule.c: meshctl schedule ...: next (the offline preview of an
 * expression; no server needed), and the schedules on the mesh, through
 * the same operations as the scheduler's request API (api.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "commands.h"
#include "message.h"
#include "api.h"
#include "daemon.h"
#include "expr.h"
#include "schedule.h"

int
cmd_schedule_next(struct cli *cli)
{
	const char *text = cli_pos(cli, 0);
	const char *zone = cli_opt(cli, "--tz") ? cli_opt(cli, "--tz") : "UTC";
	const char *from = cli_opt(cli, "--from");
	struct mesh_sched_expr e;
	struct mesh_tz *tz = NULL;
	json_t *list = NULL;
	long long count;
	int64_t t, anchor;
	mesh_err err;

	if (!cli_opt_long(cli, "--count", 1, 10000, 5, &count)) {
		return CLI_USAGE;
	}
	/* Bad input here is the user's: exit 2, saying which field. */
	if ((err = mesh_sched_parse(text, &e)) != MESH_OK ||
	    (err = mesh_tz_load(zone, NULL, &tz)) != MESH_OK) {
		fprintf(stderr, "meshctl schedule next: %s\n",
		        mesh_errdetail());
		return CLI_USAGE;
	}
	if (from != NULL) {
		if ((err = mesh_sched_parse_time(from, tz, &t)) != MESH_OK) {
			fprintf(stderr, "meshctl schedule next: --from: %s\n",
			        mesh_errdetail());
			mesh_tz_free(tz);
			return CLI_USAGE;
		}
	} else {
		t = (int64_t)time(NULL);
	}
	anchor = t;
	if (cli->json) {
		list = json_array();
	}
	for (long long i = 0; i < count; i++) {
		char iso[32];
		if ((err = mesh_sched_next(&e, tz, t, anchor, &t)) !=
		    MESH_OK) {
			break; /* no more firings: print what there is */
		}
		mesh_sched_format(t, iso);
		if (list != NULL) {
			json_array_append_new(list, json_string(iso));
		} else {
			printf("%s\n", iso);
		}
	}
	if (list != NULL) {
		cli_print_json(json_pack("{s:s, s:s, s:o}", "Expression", text,
		                         "Timezone", zone, "NextFirings",
		                         list));
	}
	mesh_tz_free(tz);
	return CLI_OK;
}

/* ---- schedules on the mesh ------------------------------------------------
 */

static int
schedule_from_flags(struct cli *cli, struct mesh_schedule *s)
{
	const char *v;

#define COPY(flag, field)                                                     \
	do {                                                                  \
		if ((v = cli_opt(cli, flag)) != NULL) {                       \
			if (strlen(v) >= sizeof(s->field)) {                  \
				cli_usage_error(cli, "%s: too long", flag);   \
				return CLI_USAGE;                             \
			}                                                     \
			snprintf(s->field, sizeof(s->field), "%s", v);        \
		}                                                             \
	} while (0)
	COPY("--expression", expression);
	COPY("--tz", tz);
	COPY("--target", target);
	COPY("--type", type);
#undef COPY
	{
		struct payload p;
		int rc = payload_from_flags(cli, false, &p);
		if (rc == CLI_OK && p.text != NULL) {
			free(s->body);
			if ((s->body = strdup(p.text)) == NULL) {
				fprintf(stderr, "meshctl %s: out of memory\n",
				        cli->cmd_path);
				rc = CLI_FAIL;
			}
			s->json_body = p.data;
		}
		payload_fini(&p);
		if (rc != CLI_OK) {
			return rc;
		}
	}
	if (cli_opt_nth(cli, "--attr", 0) != NULL) {
		size_t len = 0;
		char *lines;
		for (size_t i = 0; (v = cli_opt_nth(cli, "--attr", i)); i++) {
			len += strlen(v) + 1;
		}
		if ((lines = calloc(1, len)) == NULL) {
			return CLI_USAGE;
		}
		for (size_t i = 0; (v = cli_opt_nth(cli, "--attr", i)); i++) {
			if (strchr(v, '\n') != NULL) {
				free(lines);
				cli_usage_error(cli, "--attr: one line each");
				return CLI_USAGE;
			}
			if (i > 0) {
				strcat(lines, "\n");
			}
			strcat(lines, v);
		}
		free(s->attrs);
		s->attrs = lines;
	}
	if ((v = cli_opt(cli, "--missed")) != NULL) {
		if (strcmp(v, "latest") == 0) {
			s->missed = MESH_MISSED_LATEST;
		} else if (strcmp(v, "all") == 0) {
			s->missed = MESH_MISSED_ALL;
		} else if (strcmp(v, "skip") == 0) {
			s->missed = MESH_MISSED_SKIP;
		} else {
			cli_usage_error(cli,
			                "--missed '%s': latest, all or "
			                "skip",
			                v);
			return CLI_USAGE;
		}
	}
	for (int i = 0; i < 2; i++) {
		const char *flag = i ? "--end" : "--start";
		int64_t *field = i ? &s->end : &s->start;
		if ((v = cli_opt(cli, flag)) != NULL &&
		    mesh_sched_parse_time(v, NULL, field) != MESH_OK) {
			cli_usage_error(cli, "%s: %s", flag, mesh_errdetail());
			return CLI_USAGE;
		}
	}
	if (cli_flag(cli, "--delete-after")) {
		s->delete_after = true;
	}
	if ((v = cli_opt(cli, "--window")) != NULL &&
	    !mesh_schedule_parse_duration(v, 60, &s->window_s)) {
		cli_usage_error(cli,
		                "--window '%s': a duration like 15 (minutes), "
		                "15m or 2h",
		                v);
		return CLI_USAGE;
	}
	if ((v = cli_opt(cli, "--max-age")) != NULL &&
	    !mesh_schedule_parse_duration(v, 1, &s->max_age_s)) {
		cli_usage_error(cli,
		                "--max-age '%s': a duration like 3600 "
		                "(seconds), 60m or 24h",
		                v);
		return CLI_USAGE;
	}
	{
		long long n;
		if (!cli_opt_long(cli, "--retry-max", 0, 185, s->retry_max,
		                  &n)) {
			return CLI_USAGE;
		}
		s->retry_max = n;
	}
	if ((v = cli_opt(cli, "--dlq")) != NULL) {
		if (strlen(v) >= sizeof(s->dlq)) {
			cli_usage_error(cli, "--dlq: too long");
			return CLI_USAGE;
		}
		snprintf(s->dlq, sizeof(s->dlq), "%s", v);
	}
	return CLI_OK;
}

/* Check a schedule and its target on the mesh (as the request API does),
 * and save it; print why not. */
static int
schedule_write(struct cli *cli, struct mesh_schedule *s, bool create)
{
	struct mesh_conn *c;
	mesh_err err;

	if ((err = mesh_schedule_check(s)) != MESH_OK) {
		fprintf(stderr, "meshctl %s: %s\n", cli->cmd_path,
		        mesh_errdetail());
		return CLI_USAGE;
	}
	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	err = mesh_sched_save(c, s, create);
	mesh_conn_close(c);
	if (err != MESH_OK) {
		return cli_fail(cli, err);
	}
	if (!cli->json) {
		printf("%s schedule %s\n", create ? "created" : "updated",
		       s->name);
	}
	return CLI_OK;
}

int
cmd_schedule_create(struct cli *cli)
{
	struct mesh_schedule s;
	int rc;

	mesh_schedule_init(&s);
	if (strlen(cli_pos(cli, 0)) > MESH_SCHEDULE_NAME_MAX) {
		return cli_usage_error(cli,
		                       "schedule name: at most %d "
		                       "characters",
		                       MESH_SCHEDULE_NAME_MAX);
	}
	snprintf(s.name, sizeof(s.name), "%s", cli_pos(cli, 0));
	s.created = (int64_t)time(NULL);
	if (cli_opt(cli, "--expression") == NULL ||
	    cli_opt(cli, "--target") == NULL) {
		return cli_usage_error(cli, "--expression EXPR and --target "
		                            "queue:NAME are required");
	}
	if ((rc = schedule_from_flags(cli, &s)) != CLI_OK) {
		mesh_schedule_fini(&s);
		return rc;
	}
	rc = schedule_write(cli, &s, true);
	mesh_schedule_fini(&s);
	return rc;
}

/* Load a schedule, let fn change it, write it back. */
static int
schedule_change(struct cli *cli,
                int (*fn)(struct cli *, struct mesh_schedule *))
{
	struct mesh_schedule s;
	struct mesh_conn *c;
	mesh_err err;
	int rc;

	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	err = mesh_schedules_get(c, cli_pos(cli, 0), &s);
	mesh_conn_close(c);
	if (err != MESH_OK) {
		return cli_fail(cli, err);
	}
	if ((rc = fn(cli, &s)) != CLI_OK) {
		mesh_schedule_fini(&s);
		return rc;
	}
	rc = schedule_write(cli, &s, false);
	mesh_schedule_fini(&s);
	return rc;
}

int
cmd_schedule_update(struct cli *cli)
{
	return schedule_change(cli, schedule_from_flags);
}

static int
set_paused(struct cli *cli, struct mesh_schedule *s)
{
	s->enabled = false;
	(void)cli;
	return CLI_OK;
}

static int
set_resumed(struct cli *cli, struct mesh_schedule *s)
{
	s->enabled = true;
	(void)cli;
	return CLI_OK;
}

int
cmd_schedule_pause(struct cli *cli)
{
	return schedule_change(cli, set_paused);
}

int
cmd_schedule_resume(struct cli *cli)
{
	return schedule_change(cli, set_resumed);
}

int
cmd_schedule_delete(struct cli *cli)
{
	struct mesh_conn *c;
	mesh_err err;

	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	err = mesh_schedules_delete(c, cli_pos(cli, 0));
	mesh_conn_close(c);
	if (err != MESH_OK) {
		return cli_fail(cli, err);
	}
	if (!cli->json) {
		printf("deleted schedule %s\n", cli_pos(cli, 0));
	}
	return CLI_OK;
}

int
cmd_schedule_info(struct cli *cli)
{
	struct mesh_conn *c;
	json_t *j = NULL;
	mesh_err err;

	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	err = mesh_sched_info(c, cli_pos(cli, 0), &j);
	mesh_conn_close(c);
	if (err != MESH_OK) {
		return cli_fail(cli, err);
	}
	if (cli->json) {
		cli_print_json(j);
	} else {
		const char *key;
		json_t *v;
		json_object_foreach(j, key, v)
		{
			if (json_is_array(v)) {
				size_t i;
				json_t *x;
				json_array_foreach(v, i, x)
				{
					printf("%-28s %s\n", i ? "" : key,
					       json_string_value(x));
				}
			} else {
				printf("%-28s %s\n", key,
				       json_string_value(v));
			}
		}
		json_decref(j);
	}
	return CLI_OK;
}

int
cmd_schedule_list(struct cli *cli)
{
	struct mesh_conn *c;
	json_t *names = NULL;
	mesh_err err;

	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	err = mesh_sched_list(c, &names);
	mesh_conn_close(c);
	if (err != MESH_OK) {
		return cli_fail(cli, err);
	}
	if (cli->json) {
		cli_print_json(json_pack("{s:o}", "Schedules", names));
	} else {
		size_t i;
		json_t *v;
		json_array_foreach(names, i, v)
		{
			printf("%s\n", json_string_value(v));
		}
		json_decref(names);
	}
	return CLI_OK;
}
