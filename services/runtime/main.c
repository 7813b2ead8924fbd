/* main.c: mesh_service_main, a service's whole program: flags and
 * environment, the connection, signals. */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "mesh/daemon.h"
#include "mesh/service.h"

static void
usage(FILE *f, const struct mesh_service *s)
{
	const struct mesh_service_opts *o =
	        mesh_service_opts((struct mesh_service *)s);

	fprintf(f,
	        "Usage: %s [OPTIONS]\n"
	        "\n"
	        "The evmesh service '%s': takes its topics' and queues' "
	        "events "
	        "in batches\nand runs its handlers against its own LMDB "
	        "state, "
	        "effectively once.\n"
	        "\n"
	        "  --server URL      NATS servers (default: $NATS_URL, then "
	        "%s)\n"
	        "  --state DIR       its LMDB environment ($MESH_STATE; %s)\n"
	        "  --batch N         events per batch, 1-256 ($MESH_BATCH; "
	        "%d)\n"
	        "  --window MS       wait to fill a batch, 0-10000 "
	        "($MESH_WINDOW_MS; %d)\n"
	        "  --inflight N      batches in flight per source, 1-64 "
	        "($MESH_INFLIGHT; %d)\n"
	        "  --max-receive N   attempts before dead-lettering, 1-1000 "
	        "($MESH_MAX_RECEIVE; %d)\n"
	        "  --horizon S       processed ids kept, 60-31536000 s "
	        "($MESH_HORIZON_S; %" PRId64 ")\n"
	        "  --dlq QUEUE       dead letters ($MESH_DLQ; %s)\n"
	        "  --map-mb N        the LMDB map: the most its state holds,\n"
	        "                    1-1048576 MiB ($MESH_MAP_MB; %zu)\n"
	        "  --partitions N    partition its state by key, 1-1024, "
	        "fixed at\n"
	        "                    its first start ($MESH_PARTITIONS; %d: "
	        "%s)\n"
	        "  --lease-ms MS     a partition's lease, 500-60000 "
	        "($MESH_LEASE_MS; %" PRId64 ")\n"
	        "  --snapshot-records N  a partition's snapshot after N "
	        "changelog\n"
	        "                    records or 64 MiB, 10-100000000\n"
	        "                    ($MESH_SNAPSHOT_RECORDS; %ld)\n"
	        "  --request-threads N  requests handled at once, 1-64\n"
	        "                    ($MESH_REQUEST_THREADS; %d)\n"
	        "  --describe        print what it declares (JSON: its topics "
	        "and\n"
	        "                    queues, its partitions, its request "
	        "routes)\n"
	        "                    without connecting; exit\n"
	        "  --prepare         make what a start makes (its "
	        "subscriptions, its\n"
	        "                    dead-letter queue, its partitions), "
	        "print its\n"
	        "                    sources as JSON and exit (1, with "
	        "{\"error\",\"code\"},\n"
	        "                    when one is missing); no state is "
	        "opened\n"
	        "  --help            this text\n"
	        "\n"
	        "Credentials come from NATS_USER, NATS_PASSWORD, NATS_TOKEN,\n"
	        "NATS_NKEY, NATS_CREDS, NATS_CA, NATS_CERT and NATS_KEY; "
	        "its\nidentity (the SecureStrings it reads) from "
	        "MESH_IDENTITY, a seed file.\nLogs "
	        "JSON lines on stderr. SIGTERM or SIGINT: finish the batches "
	        "in\n"
	        "hand, then exit 0.\n",
	        mesh_service_name(s), mesh_service_name(s), MESH_DEFAULT_URL,
	        o->state_dir, o->batch_size, o->batch_window_ms,
	        o->max_inflight, o->max_receive, o->horizon_s, o->dlq,
	        o->map_size >> 20, o->partitions,
	        o->partitions ? "partitioned" : "not partitioned", o->lease_ms,
	        o->snapshot_records, o->request_threads);
}

static int
describe(const struct mesh_service *s)
{
	char *json = NULL;
	mesh_err err = mesh_service_describe(s, &json);

	if (err != MESH_OK) {
		fprintf(stderr, "%s: %s\n", mesh_service_name(s),
		        mesh_errdetail());
		return 1;
	}
	printf("%s\n", json);
	free(json);
	return 0;
}

/* --prepare: its sources as JSON, or {"error","code"} (the service API's
 * errors) with exit 1, whatever failed, for the tool that ran it. */
static int
prepare(struct mesh_daemon *d, struct mesh_service *s)
{
	struct mesh_conn *c = NULL;
	char *json = NULL;
	json_t *j;
	mesh_err err;

	if ((err = mesh_daemon_connect(d, &c)) == MESH_OK &&
	    (err = mesh_service_prepare(s, c, &json)) == MESH_OK) {
		printf("%s\n", json);
		free(json);
	} else {
		j = json_pack("{s:s, s:s}", "error", mesh_errdetail(), "code",
		              mesh_errname(err));
		json_dumpf(j, stdout, JSON_COMPACT);
		putchar('\n');
		json_decref(j);
	}
	fflush(stdout);
	return mesh_daemon_exit(d, err, c) == 0 ? 0 : 1;
}

int
mesh_service_main(struct mesh_service *s, int argc, char **argv)
{
	static const struct option opts[] = {
	        {"server", required_argument, NULL, 's'},
	        {"state", required_argument, NULL, 'd'},
	        {"batch", required_argument, NULL, 'b'},
	        {"window", required_argument, NULL, 'w'},
	        {"inflight", required_argument, NULL, 'i'},
	        {"max-receive", required_argument, NULL, 'r'},
	        {"horizon", required_argument, NULL, 'z'},
	        {"dlq", required_argument, NULL, 'q'},
	        {"map-mb", required_argument, NULL, 'm'},
	        {"partitions", required_argument, NULL, 'p'},
	        {"lease-ms", required_argument, NULL, 'l'},
	        {"snapshot-records", required_argument, NULL, 'n'},
	        {"request-threads", required_argument, NULL, 't'},
	        {"describe", no_argument, NULL, 'D'},
	        {"prepare", no_argument, NULL, 'P'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	struct mesh_service_opts *o = mesh_service_opts(s);
	const char *batch = getenv("MESH_BATCH"),
	           *window = getenv("MESH_WINDOW_MS"),
	           *inflight = getenv("MESH_INFLIGHT"),
	           *max_receive = getenv("MESH_MAX_RECEIVE"),
	           *horizon = getenv("MESH_HORIZON_S"),
	           *map_mb = getenv("MESH_MAP_MB"),
	           *partitions = getenv("MESH_PARTITIONS"),
	           *lease_ms = getenv("MESH_LEASE_MS"),
	           *snap = getenv("MESH_SNAPSHOT_RECORDS"),
	           *req_threads = getenv("MESH_REQUEST_THREADS");
	struct mesh_daemon d;
	struct mesh_conn *c = NULL;
	enum { RUN, DESCRIBE, PREPARE } mode = RUN;
	long long n;
	mesh_err err;
	int opt;

	if (getenv("MESH_STATE") != NULL) {
		o->state_dir = getenv("MESH_STATE");
	}
	if (getenv("MESH_IDENTITY") != NULL) {
		o->identity_file = getenv("MESH_IDENTITY");
	}
	if (getenv("MESH_DLQ") != NULL) {
		o->dlq = getenv("MESH_DLQ");
	}
	mesh_daemon_init(&d, mesh_service_name(s));
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 's':
			d.conn.servers = optarg;
			break;
		case 'd':
			o->state_dir = optarg;
			break;
		case 'b':
			batch = optarg;
			break;
		case 'w':
			window = optarg;
			break;
		case 'i':
			inflight = optarg;
			break;
		case 'r':
			max_receive = optarg;
			break;
		case 'z':
			horizon = optarg;
			break;
		case 'q':
			o->dlq = optarg;
			break;
		case 'm':
			map_mb = optarg;
			break;
		case 'p':
			partitions = optarg;
			break;
		case 'l':
			lease_ms = optarg;
			break;
		case 'n':
			snap = optarg;
			break;
		case 't':
			req_threads = optarg;
			break;
		case 'D':
			mode = DESCRIBE;
			break;
		case 'P':
			mode = PREPARE;
			break;
		case 'h':
			usage(stdout, s);
			return 0;
		default:
			usage(stderr, s);
			return 2;
		}
	}
	if (!mesh_daemon_no_args(&d, argc, argv, optind)) {
		return 2;
	}
	n = o->batch_size;
	if (!mesh_daemon_number(&d, "--batch", batch, 1, 256, &n)) {
		return 2;
	}
	o->batch_size = (int)n;
	n = o->batch_window_ms;
	if (!mesh_daemon_number(&d, "--window", window, 0, 10000, &n)) {
		return 2;
	}
	o->batch_window_ms = (int)n;
	n = o->max_inflight;
	if (!mesh_daemon_number(&d, "--inflight", inflight, 1, 64, &n)) {
		return 2;
	}
	o->max_inflight = (int)n;
	n = o->max_receive;
	if (!mesh_daemon_number(&d, "--max-receive", max_receive, 1, 1000,
	                        &n)) {
		return 2;
	}
	o->max_receive = (int)n;
	n = o->horizon_s;
	if (!mesh_daemon_number(&d, "--horizon", horizon, 60, 31536000, &n)) {
		return 2;
	}
	o->horizon_s = n;
	n = (long long)(o->map_size >> 20);
	if (!mesh_daemon_number(&d, "--map-mb", map_mb, 1, 1048576, &n)) {
		return 2;
	}
	o->map_size = (size_t)n << 20;
	n = o->partitions;
	if (!mesh_daemon_number(&d, "--partitions", partitions, 1, 1024, &n)) {
		return 2;
	}
	o->partitions = (int)n;
	n = o->lease_ms;
	if (!mesh_daemon_number(&d, "--lease-ms", lease_ms, 500, 60000, &n)) {
		return 2;
	}
	o->lease_ms = n;
	n = o->snapshot_records;
	if (!mesh_daemon_number(&d, "--snapshot-records", snap, 10, 100000000,
	                        &n)) {
		return 2;
	}
	o->snapshot_records = (long)n;
	n = o->request_threads;
	if (!mesh_daemon_number(&d, "--request-threads", req_threads, 1, 64,
	                        &n)) {
		return 2;
	}
	o->request_threads = (int)n;
	if (mode == DESCRIBE) {
		return describe(s);
	}
	if (mode == PREPARE) {
		return prepare(&d, s);
	}
	if ((err = mesh_daemon_connect(&d, &c)) == MESH_OK) {
		err = mesh_service_run(s, c, &d.stop);
	}
	return mesh_daemon_exit(&d, err, c);
}
