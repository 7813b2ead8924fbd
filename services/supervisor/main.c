/* mesh-supervisor: runs the mesh's functions on demand (supervisor.h). */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mesh/daemon.h"
#include "mesh/mesh.h"
#include "supervisor.h"

static void
usage(FILE *f)
{
	fprintf(f,
	        "Usage: mesh-supervisor [--server URL] [--lease-ms MS] "
	        "[--tick-ms MS]\n"
	        "\n"
	        "Runs the functions defined with `meshctl function create`\n"
	        "on demand: none while nothing waits for them (min 0), one\n"
	        "started as the first event arrives (or request: held, then\n"
	        "answered by it), more while the backlog grows, up to max,\n"
	        "and down again after the idle time. Run\n"
	        "one per machine: the functions spread over them, and the\n"
	        "others take over the functions of one that stops.\n"
	        "\n"
	        "  --server URL    NATS servers (default: $NATS_URL, then "
	        "%s);\n"
	        "                  instances get the same in NATS_URL\n"
	        "  --lease-ms MS   a share of the functions is ours this "
	        "long\n"
	        "                  unrenewed, 500-60000 (3000)\n"
	        "  --tick-ms MS    backlog readings of running functions,\n"
	        "                  50-10000 (250)\n"
	        "  --stop-ms MS    at our stop, SIGKILL instances still\n"
	        "                  running after SIGTERM, 100-600000 (15000)\n"
	        "  --request-wait-ms MS  a request to a function at zero\n"
	        "                  is held for its first instance this long,\n"
	        "                  then answered 504, 100-600000 (25000)\n"
	        "  --state-root DIR  instances' state in DIR/NAME "
	        "(MESH_STATE,\n"
	        "                  unless the function's env sets it)\n"
	        "  --log-dir DIR   instances' output appended to "
	        "DIR/NAME.log\n"
	        "                  (default: with ours, on stderr)\n"
	        "  --help          this text\n"
	        "\n"
	        "Credentials come from NATS_USER, NATS_PASSWORD, NATS_TOKEN,\n"
	        "NATS_NKEY, NATS_CREDS, NATS_CA, NATS_CERT and NATS_KEY, and\n"
	        "pass to the instances. Logs JSON lines on stderr (instances\n"
	        "write theirs there too). SIGTERM or SIGINT: the instances\n"
	        "stop gracefully, then it exits 0.\n",
	        MESH_DEFAULT_URL);
}

/* A directory the instances write in: made when missing. */
static bool
dir_ok(const char *dir, const char *flag)
{
	if (dir == NULL) {
		return true;
	}
	if ((mkdir(dir, 0755) == 0 || errno == EEXIST) &&
	    access(dir, W_OK) == 0) {
		return true;
	}
	fprintf(stderr, "mesh-supervisor: %s '%s': %s\n", flag, dir,
	        strerror(errno));
	return false;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"server", required_argument, NULL, 's'},
	        {"lease-ms", required_argument, NULL, 'l'},
	        {"tick-ms", required_argument, NULL, 't'},
	        {"stop-ms", required_argument, NULL, 'k'},
	        {"request-wait-ms", required_argument, NULL, 'w'},
	        {"state-root", required_argument, NULL, 'r'},
	        {"log-dir", required_argument, NULL, 'g'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	struct supervisor_opts so;
	struct mesh_daemon d;
	struct mesh_conn *c = NULL;
	long long n;
	mesh_err err;
	int o;

	mesh_daemon_init(&d, "mesh-supervisor");
	supervisor_opts_init(&so);
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 's':
			d.conn.servers = optarg;
			break;
		case 'l':
			n = so.lease_ms;
			if (!mesh_daemon_number(&d, "--lease-ms", optarg, 500,
			                        60000, &n)) {
				return 2;
			}
			so.lease_ms = n;
			break;
		case 't':
			n = so.tick_ms;
			if (!mesh_daemon_number(&d, "--tick-ms", optarg, 50,
			                        10000, &n)) {
				return 2;
			}
			so.tick_ms = n;
			break;
		case 'k':
			n = so.stop_ms;
			if (!mesh_daemon_number(&d, "--stop-ms", optarg, 100,
			                        600000, &n)) {
				return 2;
			}
			so.stop_ms = n;
			break;
		case 'w':
			n = so.request_wait_ms;
			if (!mesh_daemon_number(&d, "--request-wait-ms",
			                        optarg, 100, 600000, &n)) {
				return 2;
			}
			so.request_wait_ms = n;
			break;
		case 'r':
			so.state_root = optarg;
			break;
		case 'g':
			so.log_dir = optarg;
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
	so.servers = d.conn.servers;
	/* A subscription per source of each function at zero: on a pool of
	 * 4 delivery threads, not a thread each. */
	d.conn.shared_delivery = true;
	nats_SetMessageDeliveryPoolSize(4);
	if (!dir_ok(so.state_root, "--state-root") ||
	    !dir_ok(so.log_dir, "--log-dir")) {
		return 1;
	}
	if ((err = mesh_daemon_connect(&d, &c)) == MESH_OK) {
		err = supervisor_run(c, &so, &d.stop);
	}
	return mesh_daemon_exit(&d, err, c);
}
