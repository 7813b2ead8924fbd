/* daemon.c: what the mesh's programs share (see mesh/daemon.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh/daemon.h"
#include "mesh/mesh.h"

/* The one daemon of the process, for the signal handler. */
static struct mesh_daemon *the_daemon;

static void
on_signal(int sig)
{
	(void)sig;
	if (the_daemon != NULL) {
		the_daemon->stop = 1;
	}
}

void
mesh_daemon_init(struct mesh_daemon *d, const char *name)
{
	memset(d, 0, sizeof(*d));
	d->name = name;
	mesh_conn_opts_init(&d->conn);
	mesh_conn_opts_from_env(&d->conn);
	d->conn.name = name;
}

bool
mesh_daemon_number(const struct mesh_daemon *d, const char *flag,
                   const char *value, long long lo, long long hi,
                   long long *out)
{
	char *end;
	long long n;

	if (value == NULL) {
		return true;
	}
	n = strtoll(value, &end, 10);
	if (*value == '\0' || *end != '\0' || n < lo || n > hi) {
		fprintf(stderr, "%s: %s '%s': must be a number in %lld-%lld\n",
		        d->name, flag, value, lo, hi);
		return false;
	}
	*out = n;
	return true;
}

bool
mesh_daemon_no_args(const struct mesh_daemon *d, int argc, char **argv,
                    int first)
{
	if (first < argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n", d->name,
		        argv[first]);
		return false;
	}
	return true;
}

mesh_err
mesh_daemon_connect(struct mesh_daemon *d, struct mesh_conn **c)
{
	struct sigaction sa = {.sa_handler = on_signal};
	mesh_err err = mesh_conn_open(&d->conn, c);

	if (err != MESH_OK) {
		return err;
	}
	the_daemon = d;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	return MESH_OK;
}

void
mesh_daemon_log(const char *line, void *arg)
{
	(void)arg;
	fprintf(stderr, "%s\n", line);
}

int
mesh_daemon_exit(struct mesh_daemon *d, mesh_err err, struct mesh_conn *c)
{
	if (err != MESH_OK) {
		fprintf(stderr, "%s: %s\n", d->name, mesh_errdetail());
	}
	mesh_conn_close(c);
	mesh_shutdown();
	return err == MESH_OK ? 0 : err == MESH_EINVAL ? 2 : 1;
}
