/* mesh-router: forwards topic messages to subscribed queues. See
 * mesh/router.h for how routers share the work and never duplicate. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh/daemon.h"
#include "mesh/mesh.h"

static void
usage(FILE *f)
{
	fprintf(f,
	        "Usage: mesh-router [--server URL] [--batch N] [--stats "
	        "SECONDS]\n"
	        "\n"
	        "Forwards each topic message to every subscribed queue whose\n"
	        "filter policy matches it (meshctl topic subscribe), exactly\n"
	        "once per subscription. Run several to share the work.\n"
	        "\n"
	        "  --server URL     NATS servers (default: $NATS_URL, then "
	        "%s)\n"
	        "  --batch N        messages taken at once, 1-256 (256)\n"
	        "  --stats SECONDS  a stats line this often, 0 for none (60)\n"
	        "  --help           this text\n"
	        "\n"
	        "Credentials come from NATS_USER, NATS_PASSWORD, NATS_TOKEN,\n"
	        "NATS_NKEY, NATS_CREDS, NATS_CA, NATS_CERT and NATS_KEY.\n"
	        "Logs one JSON line per event on stderr. SIGTERM or SIGINT\n"
	        "stops it after the batches in hand.\n",
	        MESH_DEFAULT_URL);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"server", required_argument, NULL, 's'},
	        {"batch", required_argument, NULL, 'b'},
	        {"stats", required_argument, NULL, 't'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	struct mesh_router_opts ro;
	struct mesh_daemon d;
	struct mesh_conn *c = NULL;
	long long n;
	mesh_err err;
	int o;

	mesh_daemon_init(&d, "mesh-router");
	mesh_router_opts_init(&ro);
	ro.log = mesh_daemon_log;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 's':
			d.conn.servers = optarg;
			break;
		case 'b':
			n = ro.batch;
			if (!mesh_daemon_number(&d, "--batch", optarg, 1,
			                        MESH_SUBSCRIPTION_BATCH, &n)) {
				return 2;
			}
			ro.batch = (int)n;
			break;
		case 't':
			n = ro.stats_every_s;
			if (!mesh_daemon_number(&d, "--stats", optarg, 0, 86400,
			                        &n)) {
				return 2;
			}
			ro.stats_every_s = (int)n;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!mesh_daemon_no_args(&d, argc, argv, optind)) {
		return 2;
	}
	if ((err = mesh_daemon_connect(&d, &c)) == MESH_OK) {
		err = mesh_router_run(c, &ro, &d.stop);
	}
	return mesh_daemon_exit(&d, err, c);
}
