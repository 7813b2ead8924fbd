/* instance.h: a function's processes: started with its program,
 * arguments and environment, stopped with SIGTERM (then SIGKILL), reaped.
 * Every child asks the kernel for SIGTERM when the supervisor dies
 * (PR_SET_PDEATHSIG), so that a supervisor killed -9 leaves no instance
 * running unwatched: each finishes its batches and exits, and the
 * supervisor that takes the function over starts its own. */
#ifndef SUPERVISOR_INSTANCE_H
#define SUPERVISOR_INSTANCE_H

#include <stdint.h>
#include <sys/types.h>

#include "mesh/err.h"
#include "mesh/function.h"

enum instance_state {
	INSTANCE_STARTING, /* alive for less than INSTANCE_SETTLE_MS */
	INSTANCE_RUNNING,
	INSTANCE_STOPPING, /* SIGTERM sent */
};

#define INSTANCE_SETTLE_MS 1000
#define INSTANCE_KILL_MS   15000 /* SIGKILL this long after SIGTERM */

struct instance {
	pid_t pid;
	enum instance_state state;
	int64_t started_ms; /* Unix ms */
	int64_t started_mono, term_mono;
	uint64_t requests;         /* answered, at its last stats answer (the
	                              supervisor's, for a function serving requests) */
	uint64_t requests_waiting; /* queued or being served, then */
};

/* Where and how the supervisor starts instances. */
struct instance_env {
	const char *servers;    /* NATS_URL for them; NULL: ours as it is */
	const char *supervisor; /* MESH_INSTANCE_OF: the supervisor's name */
	const char *state_root; /* MESH_STATE=ROOT/NAME unless the function
	                           sets MESH_STATE; NULL: the service's own
	                           default */
	const char *log_dir;    /* stdout and stderr appended to DIR/NAME.log;
	                           NULL: the supervisor's */
};

/* Start f's program: its arguments, the supervisor's environment with
 * f's entries over it and e's. A program that cannot be run shows as an
 * instance exiting 127 at once. Errors: MESH_ENOMEM (memory, fork),
 * MESH_EIO (the log file, named). */
mesh_err instance_start(const struct mesh_function *f,
                        const struct instance_env *e, struct instance *out);

/* SIGTERM (graceful: the runtime finishes the batches in hand). */
void instance_stop(struct instance *in);

/* "starting", "running", "stopping". */
const char *instance_state_name(enum instance_state s);

#endif
