/* cmd_service.c: meshctl service info|delete: a partitioned service's
 * partitions as the mesh holds them (the record, the leases, the partition
 * consumers) and as their owners report them (changelog positions,
 * restores; every instance answers the stats subject). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "commands.h"
#include "mesh/lease.h"
#include "mesh/partition.h"
#include "mesh/service_api.h"

/* The owner's report of partition k, from the instances' stats (borrowed
 * from stats), or NULL. */
static json_t *
reported(json_t *stats, const char *owner, int k)
{
	json_t *inst, *p;
	size_t i, j;

	json_array_foreach(stats, i, inst)
	{
		const char *id =
		        json_string_value(json_object_get(inst, "instance"));
		if (id == NULL || strcmp(id, owner) != 0) {
			continue;
		}
		json_array_foreach(json_object_get(inst, "partitions"), j, p)
		{
			if (json_integer_value(
			            json_object_get(p, "partition")) == k) {
				return p;
			}
		}
	}
	return NULL;
}

static void
iso_ms(int64_t ms, char out[32])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static json_t *
info_json(int n, int64_t created_ms, const struct mesh_partition_info *pi,
          const struct mesh_lease_view *lv, size_t nl,
          const struct mesh_lease_member *mv, size_t nm, json_t *stats)
{
	json_t *parts = json_array(), *members = json_array();
	char when[32];

	for (size_t i = 0; i < nm; i++) {
		json_array_append_new(
		        members,
		        json_pack("{s:s, s:b, s:I, s:I}", "instance",
		                  mv[i].instance, "alive", mv[i].alive,
		                  "heartbeat_age_ms", (json_int_t)mv[i].age_ms,
		                  "ttl_ms", (json_int_t)mv[i].ttl_ms));
	}
	for (int k = 0; k < n; k++) {
		const struct mesh_lease_view *l = NULL;
		json_t *p, *rep = NULL;
		for (size_t i = 0; i < nl; i++) {
			if (lv[i].partition == k) {
				l = &lv[i];
			}
		}
		p = json_pack("{s:i, s:s, s:I, s:I, s:b, s:I, s:I}",
		              "partition", k, "owner",
		              l != NULL ? l->owner : "", "lease_revision",
		              (json_int_t)(l != NULL ? l->revision : 0),
		              "lease_age_ms",
		              (json_int_t)(l != NULL ? l->age_ms : -1),
		              "handing_over", l != NULL && l->handing,
		              "pending", (json_int_t)pi[k].pending,
		              "in_flight", (json_int_t)pi[k].ack_pending);
		if (l != NULL && l->owner[0] != '\0') {
			rep = reported(stats, l->owner, k);
		}
		if (rep != NULL) {
			json_object_set(p, "owner_report", rep);
			/* The epoch its owner took it with (the lease's
			 * revision then; renewals move the revision on). */
			json_object_set(p, "epoch",
			                json_object_get(rep, "epoch"));
		}
		json_array_append_new(parts, p);
	}
	iso_ms(created_ms, when);
	return json_pack("{s:i, s:s, s:o, s:o}", "partitions", n,
	                 "partitions_fixed", when, "members", members,
	                 "partition_list", parts);
}

static void
print_info(const char *service, json_t *j)
{
	json_t *p, *m;
	size_t i;
	int alive = 0;

	printf("Service      %s\n", service);
	printf("Partitions   %lld (fixed %s)\n",
	       (long long)json_integer_value(json_object_get(j, "partitions")),
	       json_string_value(json_object_get(j, "partitions_fixed")));
	json_array_foreach(json_object_get(j, "members"), i, m)
	{
		alive += json_is_true(json_object_get(m, "alive"));
	}
	printf("Instances    %d alive", alive);
	json_array_foreach(json_object_get(j, "members"), i, m)
	{
		printf("%s%s%s", i == 0 ? ": " : ", ",
		       json_string_value(json_object_get(m, "instance")),
		       json_is_true(json_object_get(m, "alive")) ? ""
		                                                 : " (dead)");
	}
	printf("\n%-9s %-24s %7s %9s %8s %9s %10s %10s  %s\n", "PARTITION",
	       "OWNER", "EPOCH", "LEASE AGE", "PENDING", "IN FLIGHT",
	       "CHANGELOG", "COMMITTED", "RESTORE");
	json_array_foreach(json_object_get(j, "partition_list"), i, p)
	{
		json_t *r = json_object_get(p, "owner_report");
		const char *owner =
		        json_string_value(json_object_get(p, "owner"));
		long long age =
		        json_integer_value(json_object_get(p, "lease_age_ms"));
		char agebuf[32] = "-", cl[24] = "-", done[24] = "-",
		     restore[96] = "-", epoch[24] = "-";
		if (age >= 0) {
			snprintf(agebuf, sizeof(agebuf), "%.1f s%s",
			         (double)age / 1000,
			         json_is_true(
			                 json_object_get(p, "handing_over"))
			                 ? "*"
			                 : "");
		}
		if (r != NULL) {
			snprintf(epoch, sizeof(epoch), "%lld",
			         (long long)json_integer_value(
			                 json_object_get(r, "epoch")));
			snprintf(cl, sizeof(cl), "%lld",
			         (long long)json_integer_value(
			                 json_object_get(r, "changelog_seq")));
			snprintf(done, sizeof(done), "%lld",
			         (long long)json_integer_value(
			                 json_object_get(r, "committed")));
			snprintf(restore, sizeof(restore),
			         "%lld ms (%s, %lld snapshot bytes, %lld "
			         "records)",
			         (long long)json_integer_value(
			                 json_object_get(r, "restore_ms")),
			         json_is_true(
			                 json_object_get(r, "reused_local"))
			                 ? "local copy"
			                 : "from the changelog",
			         (long long)json_integer_value(
			                 json_object_get(r, "restored_bytes")),
			         (long long)json_integer_value(json_object_get(
			                 r, "restored_records")));
		}
		printf("%-9lld %-24s %7s %9s %8lld %9lld %10s %10s  %s\n",
		       (long long)json_integer_value(
		               json_object_get(p, "partition")),
		       owner && owner[0] ? owner : "(none)", epoch, agebuf,
		       (long long)json_integer_value(
		               json_object_get(p, "pending")),
		       (long long)json_integer_value(
		               json_object_get(p, "in_flight")),
		       cl, done, restore);
	}
}

int
cmd_service_info(struct cli *cli)
{
	const char *service = cli_pos(cli, 0);
	struct mesh_partition_info *pi = NULL;
	struct mesh_lease_view *lv = NULL;
	struct mesh_lease_member mv[256];
	char subject[MESH_SERVICE_NAME_MAX + 32];
	struct mesh_conn *c = NULL;
	size_t nl = 0, nm = 0;
	int64_t created = 0;
	json_t *stats = NULL, *j;
	long long wait;
	mesh_err err;
	int n = 0, rc = CLI_FAIL;

	if (!service_name_check(cli, service) ||
	    !cli_opt_long(cli, "--wait", 10, 10000, 300, &wait)) {
		return CLI_USAGE;
	}
	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	err = mesh_partitions_info(c, service, &pi, &n, &created);
	if (err == MESH_ENOTFOUND) {
		fprintf(stderr,
		        "%s %s: %s; meshctl stats %s shows its instances\n",
		        cli->prog, cli->cmd_path, mesh_errdetail(), service);
		goto out;
	}
	if (err != MESH_OK) {
		rc = cli_fail(cli, err);
		goto out;
	}
	if ((lv = calloc((size_t)n, sizeof(*lv))) == NULL) {
		rc = cli_fail(cli, mesh_err_set(MESH_ENOMEM, "leases"));
		goto out;
	}
	err = mesh_lease_list(c, service, lv, (size_t)n, &nl);
	if (err == MESH_OK) {
		err = mesh_lease_members(c, service, mv,
		                         sizeof(mv) / sizeof(*mv), &nm);
	}
	if (err == MESH_ENOTFOUND) {
		nl = nm = 0; /* no instance has run yet */
	} else if (err != MESH_OK) {
		rc = cli_fail(cli, err);
		goto out;
	}
	nl = nl > (size_t)n ? (size_t)n : nl;
	nm = nm > sizeof(mv) / sizeof(*mv) ? sizeof(mv) / sizeof(*mv) : nm;
	snprintf(subject, sizeof(subject), MESH_SERVICE_STATS_SUBJECT,
	         service);
	if ((rc = stats_gather(cli, c, subject, service, wait, &stats)) !=
	    CLI_OK) {
		goto out;
	}
	j = info_json(n, created, pi, lv, nl, mv, nm, stats);
	json_object_set_new(j, "service", json_string(service));
	if (cli->json) {
		cli_print_json(j);
	} else {
		print_info(service, j);
		json_decref(j);
	}
	rc = CLI_OK;
out:
	json_decref(stats);
	free(lv);
	free(pi);
	mesh_conn_close(c);
	return rc;
}

int
cmd_service_delete(struct cli *cli)
{
	const char *service = cli_pos(cli, 0);
	struct mesh_conn *c = NULL;
	mesh_err err;
	int n = 0, rc;

	if (!service_name_check(cli, service)) {
		return CLI_USAGE;
	}
	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	if ((err = mesh_partitions_get(c, service, &n)) != MESH_OK) {
		mesh_conn_close(c);
		return cli_fail(cli, err);
	}
	rc = cli_confirm(cli,
	                 "delete the %d partitions of service '%s': their "
	                 "events not yet taken, their changelogs and "
	                 "snapshots (the instances' local copies stay)",
	                 n, service);
	if (rc != CLI_OK) {
		mesh_conn_close(c);
		return rc;
	}
	err = mesh_partitions_delete(c, service);
	for (size_t i = 0; err == MESH_OK && i < 2; i++) {
		char name[MESH_SERVICE_NAME_MAX + 16];
		jsErrCode jerr = 0;
		natsStatus s;
		if (i == 0) {
			snprintf(name, sizeof(name),
			         MESH_SERVICE_CHANGELOG_STREAM, service);
		} else {
			snprintf(name, sizeof(name),
			         MESH_SERVICE_SNAPSHOT_STREAM, service);
		}
		s = js_DeleteStream(mesh_conn_js(c), name, NULL, &jerr);
		if (s != NATS_OK && s != NATS_NOT_FOUND &&
		    jerr != JSStreamNotFoundErr) {
			err = mesh_err_nats(s, jerr, "stream %s", name);
		}
	}
	mesh_conn_close(c);
	if (err != MESH_OK) {
		return cli_fail(cli, err);
	}
	printf("deleted the %d partitions of service '%s'\n", n, service);
	return CLI_OK;
}
