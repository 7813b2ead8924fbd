/* cmd_stats.c: meshctl stats [SERVICE]: every running instance's counters
 * and latencies, gathered from the service runtime's stats subject.
 *
 * One request goes out with a fresh inbox as its reply subject; every
 * instance answers (they do not share a queue group), so the replies are
 * collected for a bounded time (--wait, 300 ms) rather than until one
 * comes. NATS's "no responders" answer ends the wait at once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "commands.h"
#include "mesh/service_api.h"

/* No more replies than this are read, however many instances run. */
#define STATS_MAX_REPLIES 4096

/* The runtime's counters, and their column headings. "malformed": events
 * that could not be parsed, dead-lettered at once. */
static const struct {
	const char *key, *heading;
} counters[] = {
        {"received", "RECEIVED"},     {"processed", "PROCESSED"},
        {"retried", "RETRIED"},       {"failed", "FAILED"},
        {"dead_lettered", "DEAD"},    {"malformed", "MALFORMED"},
        {"duplicates", "DUPS"},       {"ignored", "IGNORED"},
        {"outbox_pending", "OUTBOX"}, {"in_flight", "INFLIGHT"},
};
#define N_COUNTERS (sizeof(counters) / sizeof(counters[0]))

static const char *const latencies[] = {"handler_ms", "commit_ms"};
static const char *const pcts[] = {"p50", "p95", "p99"};

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
by_key(const void *a, const void *b, const char *key)
{
	const char *x = json_string_value(json_object_get(*(json_t **)a, key));
	const char *y = json_string_value(json_object_get(*(json_t **)b, key));

	return strcmp(x ? x : "", y ? y : "");
}

static int
by_instance(const void *a, const void *b)
{
	return by_key(a, b, "instance");
}

static int
by_service(const void *a, const void *b)
{
	return by_key(a, b, "service");
}

/* Sort a JSON array of objects in place by cmp. */
static void
sort_array(json_t *arr, int (*cmp)(const void *, const void *))
{
	size_t n = json_array_size(arr);
	json_t **v = malloc(n * sizeof(*v) + 1);

	if (v == NULL) {
		return; /* unsorted is still right */
	}
	for (size_t i = 0; i < n; i++) {
		v[i] = json_incref(json_array_get(arr, i));
	}
	qsort(v, n, sizeof(*v), cmp);
	json_array_clear(arr);
	for (size_t i = 0; i < n; i++) {
		json_array_append_new(arr, v[i]);
	}
	free(v);
}

/* The service's total: counters (and latency sample counts) summed over
 * its instances; each latency percentile the largest of the instances'
 * (an upper bound of the
 * service's own: no instance has more than 1% of its events above its
 * p99, so neither has the whole). */
static json_t *
total_of(json_t *instances)
{
	json_t *t = json_object(), *inst;
	size_t i;

	for (size_t c = 0; c < N_COUNTERS; c++) {
		json_int_t sum = 0;
		json_array_foreach(instances, i, inst)
		{
			sum += json_integer_value(
			        json_object_get(inst, counters[c].key));
		}
		json_object_set_new(t, counters[c].key, json_integer(sum));
	}
	for (size_t l = 0; l < 2; l++) {
		json_t *h = json_object();
		json_int_t count = 0;
		json_array_foreach(instances, i, inst)
		{
			count += json_integer_value(json_object_get(
			        json_object_get(inst, latencies[l]), "count"));
		}
		json_object_set_new(h, "count", json_integer(count));
		for (size_t p = 0; p < 3; p++) {
			double max = 0;
			json_array_foreach(instances, i, inst)
			{
				double v = json_number_value(json_object_get(
				        json_object_get(inst, latencies[l]),
				        pcts[p]));
				max = v > max ? v : max;
			}
			json_object_set_new(h, pcts[p], json_real(max));
		}
		json_object_set_new(t, latencies[l], h);
	}
	return t;
}

/* Replies grouped by service: {"services": [{"service", "instances":
 * [reply, ...], "total": {...}}, ...]}, sorted by name. Takes replies. */
static json_t *
aggregate(json_t *replies)
{
	json_t *by_name = json_object(), *out = json_array(), *r, *g;
	const char *name;
	size_t i;

	json_array_foreach(replies, i, r)
	{
		name = json_string_value(json_object_get(r, "service"));
		if ((g = json_object_get(by_name, name)) == NULL) {
			g = json_array();
			json_object_set_new(by_name, name, g);
		}
		json_array_append(g, r);
	}
	json_object_foreach(by_name, name, g)
	{
		sort_array(g, by_instance);
		json_array_append_new(
		        out, json_pack("{s:s, s:O, s:o}", "service", name,
		                       "instances", g, "total", total_of(g)));
	}
	sort_array(out, by_service);
	json_decref(by_name);
	json_decref(replies);
	return json_pack("{s:o}", "services", out);
}

static void
print_row(const char *label, json_t *o)
{
	printf("%-24s", label);
	for (size_t c = 0; c < N_COUNTERS; c++) {
		printf(" %9lld", (long long)json_integer_value(
		                         json_object_get(o, counters[c].key)));
	}
	for (size_t l = 0; l < 2; l++) {
		json_t *h = json_object_get(o, latencies[l]);
		printf("  %6.2f/%.2f/%.2f",
		       json_number_value(json_object_get(h, "p50")),
		       json_number_value(json_object_get(h, "p95")),
		       json_number_value(json_object_get(h, "p99")));
	}
	putchar('\n');
}

static void
print_table(json_t *agg)
{
	json_t *svc, *inst;
	size_t i, k;

	printf("%-24s", "SERVICE / INSTANCE");
	for (size_t c = 0; c < N_COUNTERS; c++) {
		printf(" %9s", counters[c].heading);
	}
	printf("  %s  %s\n", "HANDLER ms p50/p95/p99",
	       "COMMIT ms p50/p95/p99");
	json_array_foreach(json_object_get(agg, "services"), i, svc)
	{
		json_t *insts = json_object_get(svc, "instances");
		char label[96];
		snprintf(label, sizeof(label), "%s (%zu)",
		         json_string_value(json_object_get(svc, "service")),
		         json_array_size(insts));
		print_row(label, json_object_get(svc, "total"));
		json_array_foreach(insts, k, inst)
		{
			const char *id = json_string_value(
			        json_object_get(inst, "instance"));
			snprintf(label, sizeof(label), "  %s", id ? id : "?");
			print_row(label, inst);
		}
	}
}

int
replies_gather(struct cli *cli, struct mesh_conn *c, const char *subject,
               const char *key, const char *want, const char *what,
               int64_t wait_ms, json_t **out)
{
	natsConnection *nc = mesh_conn_nats(c);
	natsSubscription *sub = NULL;
	char inbox[128];
	json_t *replies = json_array();
	int64_t deadline = now_ms() + wait_ms, left;
	size_t malformed = 0;
	natsStatus s;

	mesh_conn_inbox(c, inbox, sizeof(inbox));
	if ((s = natsConnection_SubscribeSync(&sub, nc, inbox)) != NATS_OK ||
	    (s = natsConnection_PublishRequest(nc, subject, inbox, NULL, 0)) !=
	            NATS_OK ||
	    (s = natsConnection_FlushTimeout(nc, wait_ms)) != NATS_OK) {
		cli_fail(cli, mesh_err_nats(s, 0, "asking %s", subject));
		natsSubscription_Destroy(sub);
		json_decref(replies);
		return CLI_FAIL;
	}
	while (json_array_size(replies) < STATS_MAX_REPLIES &&
	       (left = deadline - now_ms()) > 0) {
		natsMsg *m = NULL;
		json_t *j, *svc;
		if (natsSubscription_NextMsg(&m, sub, left) != NATS_OK) {
			break; /* the time is up */
		}
		if (natsMsg_IsNoResponders(m)) {
			natsMsg_Destroy(m);
			break;
		}
		j = json_loadb(natsMsg_GetData(m),
		               (size_t)natsMsg_GetDataLength(m), 0, NULL);
		svc = json_object_get(j, key);
		if (json_is_string(svc) &&
		    (want == NULL ||
		     strcmp(json_string_value(svc), want) == 0)) {
			json_array_append_new(replies, j);
		} else {
			json_decref(j);
			malformed++;
		}
		natsMsg_Destroy(m);
	}
	if (malformed > 0) {
		fprintf(stderr,
		        "%s %s: ignored %zu answer(s) on %s that are not %s\n",
		        cli->prog, cli->cmd_path, malformed, subject, what);
	}
	natsSubscription_Unsubscribe(sub);
	natsSubscription_Destroy(sub);
	*out = replies;
	return CLI_OK;
}

int
stats_gather(struct cli *cli, struct mesh_conn *c, const char *subject,
             const char *want, int64_t wait_ms, json_t **out)
{
	return replies_gather(cli, c, subject, "service", want,
	                      "a service's stats", wait_ms, out);
}

int
cmd_stats(struct cli *cli)
{
	const char *name = cli_pos(cli, 0);
	struct mesh_conn *c;
	char subject[MESH_SERVICE_NAME_MAX + 32];
	json_t *replies, *agg;
	long long wait;
	int rc;

	if (!cli_opt_long(cli, "--wait", 10, 10000, 300, &wait)) {
		return CLI_USAGE;
	}
	if (name != NULL) {
		if (!service_name_check(cli, name)) {
			return CLI_USAGE;
		}
		snprintf(subject, sizeof(subject), MESH_SERVICE_STATS_SUBJECT,
		         name);
	} else {
		snprintf(subject, sizeof(subject), "%s",
		         MESH_SERVICES_STATS_SUBJECT);
	}
	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	rc = stats_gather(cli, c, subject, name, wait, &replies);
	mesh_conn_close(c);
	if (rc != CLI_OK) {
		return rc;
	}
	if (json_array_size(replies) == 0) {
		json_decref(replies);
		if (name != NULL) {
			fprintf(stderr,
			        "%s %s: no instance of service %s answered "
			        "(on %s, within %lld ms)\n",
			        cli->prog, cli->cmd_path, name, subject, wait);
		} else {
			fprintf(stderr,
			        "%s %s: no service answered (on %s, within "
			        "%lld ms)\n",
			        cli->prog, cli->cmd_path, subject, wait);
		}
		return CLI_FAIL;
	}
	agg = aggregate(replies);
	if (cli->json && name != NULL) {
		/* One service: its object alone. */
		cli_print_json(json_incref(
		        json_array_get(json_object_get(agg, "services"), 0)));
		json_decref(agg);
	} else if (cli->json) {
		cli_print_json(agg);
	} else {
		print_table(agg);
		json_decref(agg);
	}
	return CLI_OK;
}
