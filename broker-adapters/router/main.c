/* mesh-router: forwards topic messages to subscribed queues. See
 * mesh/router.h for how routers share the work and never duplicate. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh/mesh.h"

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void
log_to_stderr(const char *line, void *arg)
{
	(void)arg;
	fprintf(stderr, "%s\n", line);
}

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

static bool
int_arg(const char *opt, const char *v, long lo, long hi, int *out)
{
	char *end;
	long n = strtol(v, &end, 10);

	if (*v == '\0' || *end != '\0' || n < lo || n > hi) {
		fprintf(stderr, "mesh-router: %s '%s': must be %ld-%ld\n", opt,
		        v, lo, hi);
		return false;
	}
	*out = (int)n;
	return true;
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
	struct mesh_conn_opts co;
	struct mesh_conn *c = NULL;
	struct sigaction sa = {.sa_handler = on_signal};
	mesh_err err;
	int o;

	mesh_conn_opts_init(&co);
	mesh_conn_opts_from_env(&co);
	co.name = "mesh-router";
	mesh_router_opts_init(&ro);
	ro.log = log_to_stderr;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 's':
			co.servers = optarg;
			break;
		case 'b':
			if (!int_arg("--batch", optarg, 1,
			             MESH_SUBSCRIPTION_BATCH, &ro.batch)) {
				return 2;
			}
			break;
		case 't':
			if (!int_arg("--stats", optarg, 0, 86400,
			             &ro.stats_every_s)) {
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "mesh-router: unexpected argument '%s'\n",
		        argv[optind]);
		return 2;
	}
	if ((err = mesh_conn_open(&co, &c)) != MESH_OK) {
		fprintf(stderr, "mesh-router: %s\n", mesh_errdetail());
		return 1;
	}
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	err = mesh_router_run(c, &ro, &stop);
	if (err != MESH_OK) {
		fprintf(stderr, "mesh-router: %s\n", mesh_errdetail());
	}
	mesh_conn_close(c);
	mesh_shutdown();
	return err == MESH_OK ? 0 : 1;
}
