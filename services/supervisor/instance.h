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
};

/* Start f's program: its arguments, the supervisor's environment with
 * f's entries over it, NATS_URL set to servers (NULL: left as it is),
 * MESH_INSTANCE_OF naming the supervisor. A program that cannot be run
 * shows as an instance exiting 127 at once. Errors: MESH_ENOMEM (memory,
 * fork). */
mesh_err instance_start(const struct mesh_function *f, const char *servers,
                        const char *supervisor, struct instance *out);

/* SIGTERM (graceful: the runtime finishes the batches in hand). */
void instance_stop(struct instance *in);

/* "starting", "running", "stopping". */
const char *instance_state_name(enum instance_state s);

#endif
