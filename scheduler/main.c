/* mesh-scheduler: fires schedules. See daemon.h for how replicas agree. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "daemon.h"
#include "mesh/daemon.h"
#include "mesh/mesh.h"

static void
usage(FILE *f)
{
	fprintf(f,
	        "Usage: mesh-scheduler [--server URL] [--state DIR] [--id "
	        "NAME]\n"
	        "\n"
	        "Fires the mesh's schedules (meshctl schedule ...). Run "
	        "several,\n"
	        "each with its own --state folder: every schedule change "
	        "reaches\n"
	        "each replica, and each firing is published once. Replicas\n"
	        "answer requests on mesh.scheduler.api.<verb> (create, "
	        "update,\n"
	        "delete, pause, resume, info, list; JSON bodies).\n"
	        "\n"
	        "  --server URL  NATS servers (default: $NATS_URL, then %s)\n"
	        "  --state DIR   this replica's LMDB environment "
	        "(var/scheduler)\n"
	        "  --id NAME     this replica's name, stable across restarts\n"
	        "                (default: derived from the state folder)\n"
	        "  --help        this text\n"
	        "\n"
	        "Credentials come from NATS_USER, NATS_PASSWORD, NATS_TOKEN,\n"
	        "NATS_NKEY, NATS_CREDS, NATS_CA, NATS_CERT and NATS_KEY.\n"
	        "SIGTERM or SIGINT stops it after the current firing.\n",
	        MESH_DEFAULT_URL);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"server", required_argument, NULL, 's'},
	        {"state", required_argument, NULL, 'd'},
	        {"id", required_argument, NULL, 'i'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	struct mesh_daemon d;
	struct mesh_conn *c = NULL;
	struct mesh_sched_store *st = NULL;
	const char *state = "var/scheduler", *id = NULL;
	char idbuf[32], real[4096];
	mesh_err err;
	int o;

	mesh_daemon_init(&d, "mesh-scheduler");
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 's':
			d.conn.servers = optarg;
			break;
		case 'd':
			state = optarg;
			break;
		case 'i':
			id = optarg;
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
	if ((err = mesh_sched_store_open(state, &st)) != MESH_OK) {
		fprintf(stderr, "mesh-scheduler: %s\n", mesh_errdetail());
		return 1;
	}
	if (id == NULL) {
		unsigned char h[8];
		if (realpath(state, real) == NULL) {
			snprintf(real, sizeof(real), "%s", state);
		}
		if (sodium_init() < 0) {
			return 1;
		}
		crypto_generichash(h, sizeof(h), (unsigned char *)real,
		                   strlen(real), NULL, 0);
		sodium_bin2hex(idbuf, sizeof(idbuf), h, sizeof(h));
		id = idbuf;
	}
	if (strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	               "0123456789_-") != strlen(id) ||
	    strlen(id) == 0 || strlen(id) > 64) {
		fprintf(stderr,
		        "mesh-scheduler: --id '%s': 1-64 of A-Z, a-z, "
		        "0-9, '_' and '-'\n",
		        id);
		mesh_sched_store_close(st);
		return 2;
	}
	if ((err = mesh_daemon_connect(&d, &c)) == MESH_OK) {
		err = mesh_scheduler_run(c, st, id, &d.stop, mesh_daemon_log,
		                         NULL);
	}
	mesh_sched_store_close(st);
	mesh_tz_shared_free();
	return mesh_daemon_exit(&d, err, c);
}
