/* The scaffolding the mesh's programs share (mesh-router, mesh-scheduler,
 * every service's mesh_service_main): the connection from flags and the
 * environment, SIGTERM and SIGINT as a stop flag, checked numeric flags,
 * JSON log lines on standard error, and the exit status. Unlike libmesh
 * proper, these calls print: they are the programs' part (libmesh_daemon,
 * a library of its own).
 *
 * Exit status, as every program of the mesh: 0 done, 1 failed (the
 * message names what and the value at fault), 2 usage error.
 *
 * Thread safety: one daemon per process, set up from its main thread. */
#ifndef MESH_DAEMON_H
#define MESH_DAEMON_H

#include <signal.h>
#include <stdbool.h>

#include "mesh/conn.h"
#include "mesh/err.h"

struct mesh_daemon {
	const char *name;           /* in every message: "mesh-router" */
	volatile sig_atomic_t stop; /* set by SIGTERM and SIGINT */
	struct mesh_conn_opts conn; /* from NATS_URL, NATS_USER, ... */
};

/* Name the program and read the connection's environment (the NATS tools'
 * variables; flags set later win). */
void mesh_daemon_init(struct mesh_daemon *d, const char *name);

/* A whole number in [lo, hi] from a flag's value (NULL: leave *out).
 * Prints "NAME: FLAG 'VALUE': must be a number in LO-HI" and returns false
 * otherwise. */
bool mesh_daemon_number(const struct mesh_daemon *d, const char *flag,
                        const char *value, long long lo, long long hi,
                        long long *out);

/* False, after printing "NAME: unexpected argument 'X'", when argv holds
 * arguments past the options (from first: getopt's optind). */
bool mesh_daemon_no_args(const struct mesh_daemon *d, int argc, char **argv,
                         int first);

/* Connect; then SIGTERM and SIGINT set d->stop. Errors: those of
 * mesh_conn_open (mesh_daemon_exit prints them). */
mesh_err mesh_daemon_connect(struct mesh_daemon *d, struct mesh_conn **c);

/* A log line (JSON) on standard error: a mesh_router_log_fn and the
 * scheduler's logger. */
void mesh_daemon_log(const char *line, void *arg);

/* The end: print err's detail unless MESH_OK, close c (may be NULL), shut
 * the library down; the exit status (2 for MESH_EINVAL, 1 otherwise). */
int mesh_daemon_exit(struct mesh_daemon *d, mesh_err err, struct mesh_conn *c);

#endif
