/* mesh-gateway: the mesh's HTTP front door (gateway.h). */
#include <getopt.h>
#include <stdio.h>

#include "gateway.h"
#include "mesh/daemon.h"
#include "mesh/mesh.h"

static void
usage(FILE *f)
{
	fprintf(f,
	        "Usage: mesh-gateway [--server URL] [--listen ADDR:PORT] "
	        "[--max-body BYTES]\n"
	        "                    [--timeout-ms MS] [--threads N]\n"
	        "                    [--tls-cert FILE --tls-key FILE]\n"
	        "\n"
	        "Answers HTTP requests on the routes of `meshctl route "
	        "create`: a route to\n"
	        "queue:NAME or topic:NAME makes the body an event (202 with "
	        "its MessageId once\n"
	        "stored); a route to service:NAME asks the service over NATS "
	        "and answers its\n"
	        "reply. Route changes apply at once, without a restart.\n"
	        "\n"
	        "  --server URL        NATS servers (default: $NATS_URL, then "
	        "%s)\n"
	        "  --listen ADDR:PORT  where to listen, IPv4 (127.0.0.1:8080; "
	        "port 0: any free\n"
	        "                      one, logged)\n"
	        "  --max-body BYTES    larger request bodies get 413, "
	        "1-67108864 (1048576)\n"
	        "  --timeout-ms MS     a service's answer; none within it: "
	        "504, 1-600000 (29000)\n"
	        "  --threads N         HTTP threads (each on its own epoll), "
	        "1-64 (4)\n"
	        "  --tls-cert FILE     HTTPS: the server certificate (PEM, "
	        "its chain after it)\n"
	        "  --tls-key FILE      and its private key (PEM); both or "
	        "neither\n"
	        "  --help              this text\n"
	        "\n"
	        "Credentials come from NATS_USER, NATS_PASSWORD, NATS_TOKEN, "
	        "NATS_NKEY,\n"
	        "NATS_CREDS, NATS_CA, NATS_CERT and NATS_KEY. Logs JSON lines "
	        "on stderr, one per\n"
	        "request. SIGTERM or SIGINT: requests waiting for a service "
	        "get 503, then it\n"
	        "exits 0.\n",
	        MESH_DEFAULT_URL);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"server", required_argument, NULL, 's'},
	        {"listen", required_argument, NULL, 'l'},
	        {"max-body", required_argument, NULL, 'b'},
	        {"timeout-ms", required_argument, NULL, 't'},
	        {"threads", required_argument, NULL, 'n'},
	        {"tls-cert", required_argument, NULL, 'c'},
	        {"tls-key", required_argument, NULL, 'k'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	struct gw_opts go;
	struct mesh_daemon d;
	struct mesh_conn *c = NULL;
	long long n;
	mesh_err err;
	int o;

	mesh_daemon_init(&d, "mesh-gateway");
	gw_opts_init(&go);
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 's':
			d.conn.servers = optarg;
			break;
		case 'l':
			go.listen = optarg;
			break;
		case 'b':
			n = (long long)go.max_body;
			if (!mesh_daemon_number(&d, "--max-body", optarg, 1,
			                        64 * 1024 * 1024, &n)) {
				return 2;
			}
			go.max_body = (size_t)n;
			break;
		case 't':
			n = go.timeout_ms;
			if (!mesh_daemon_number(&d, "--timeout-ms", optarg, 1,
			                        600000, &n)) {
				return 2;
			}
			go.timeout_ms = n;
			break;
		case 'n':
			n = go.threads;
			if (!mesh_daemon_number(&d, "--threads", optarg, 1, 64,
			                        &n)) {
				return 2;
			}
			go.threads = (unsigned)n;
			break;
		case 'c':
			go.tls_cert = optarg;
			break;
		case 'k':
			go.tls_key = optarg;
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
	if ((go.tls_cert == NULL) != (go.tls_key == NULL)) {
		fprintf(stderr,
		        "mesh-gateway: %s without %s: HTTPS needs both\n",
		        go.tls_cert != NULL ? "--tls-cert" : "--tls-key",
		        go.tls_cert != NULL ? "--tls-key" : "--tls-cert");
		return 2;
	}
	if ((err = mesh_daemon_connect(&d, &c)) == MESH_OK) {
		err = gw_run(c, &go, &d.stop);
	}
	return mesh_daemon_exit(&d, err, c);
}
