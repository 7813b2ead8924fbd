/* outlet.h: mesh-gateway's way to a queue or topic: a thread per target
 * (up to 4, lanes) keeping a pipelined sender (mesh/sender.h) busy with
 * the events of every HTTP connection, so that a request waits for its own
 * confirmation (JetStream's ack) without holding an HTTP thread, and the
 * confirmations of many requests are awaited together.
 *
 * A lane takes every event waiting, sends them all, and, when no more
 * wait, flushes: each event's outcome comes back through its job's done,
 * on the lane's thread. A job goes to a lane that is not flushing, else
 * to a new lane, so that it need not wait for others' confirmations.
 *
 * Thread safety: gw_outlet_post from any thread. */
#ifndef GW_OUTLET_H
#define GW_OUTLET_H

#include <stdbool.h>

#include "mesh/conn.h"
#include "mesh/event.h"
#include "mesh/route.h"
#include "mesh/sender.h"

struct gw_job {
	struct mesh_event *event; /* owned by the job until done */
	const char *group_id;     /* FIFO targets only; borrowed until done */
	const char *dedup_id;
	/* The outcome: r->err MESH_OK (stored) or why not. */
	void (*done)(struct gw_job *j, const struct mesh_sent *r);
	void *arg;
	struct gw_job *next;
};

struct gw_outlets;

/* Errors: MESH_ENOMEM. */
mesh_err gw_outlets_new(struct mesh_conn *c, struct gw_outlets **out);

/* Hand j to the outlet of target ("queue:NAME" or "topic:NAME", kind as
 * the route's), started at its first job. j->done runs exactly once, on
 * another thread (perhaps before this returns), unless this fails:
 * MESH_ENOMEM, MESH_ECLOSED (stopping). */
mesh_err gw_outlet_post(struct gw_outlets *os, const char *target,
                        mesh_route_kind kind, struct gw_job *j);

/* Stop every outlet: jobs not yet sent end with MESH_ECLOSED, those in
 * flight with their outcome; then free. NULL is fine. */
void gw_outlets_free(struct gw_outlets *os);

#endif
