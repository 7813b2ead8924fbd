/* supervisor.h: mesh-supervisor, services run on demand (mesh/function.h
 * has the definitions and the status it answers).
 *
 * One thread decides: it starts and stops instances, reads the backlogs of
 * the functions with instances, and reaps exits. Others only note what
 * they saw and wake it: the bucket's watcher (definitions), the wake
 * subscriptions (an event on a source of a function at zero, or a request
 * to one that serves requests: held), the leases' callbacks (slots gained
 * and lost) and the status requests. Another thread hands the held
 * requests to the first instance that answers (or refuses them: 503 when
 * the function cannot start, 504 after request_wait_ms). */
#ifndef SUPERVISOR_H
#define SUPERVISOR_H

#include <signal.h>
#include <stdint.h>

#include "mesh/conn.h"
#include "mesh/err.h"

struct supervisor_opts {
	const char *servers;    /* NATS_URL given to instances (NULL: ours) */
	const char *state_root; /* instances' MESH_STATE=ROOT/NAME (unless the
	                           function sets it); NULL: none */
	const char *log_dir;    /* instances' output to DIR/NAME.log; NULL:
	                           our stderr */
	int64_t lease_ms;       /* a slot's lease; 3000 */
	int64_t tick_ms; /* backlog readings of running functions; 250 */
	int64_t stop_ms; /* at our stop, SIGKILL instances after; 15000 */
	int64_t request_wait_ms; /* a request held for a function at zero
	                            is answered 504 after; 25000 */
};

void supervisor_opts_init(struct supervisor_opts *o);

/* Run on c until *stop: then stop every instance (SIGTERM, SIGKILL after
 * stop_ms), leave the group and return. Errors: the connection's (the
 * bucket, the leases, the status subscriptions), with the detail. */
mesh_err supervisor_run(struct mesh_conn *c, const struct supervisor_opts *o,
                        volatile sig_atomic_t *stop);

#endif
