/* rpc.h: pipelined requests whose replies come to one inbox (library
 * internal). A batch of requests is published at once and its replies are
 * collected with one wake-up, not one each: the JetStream calls that need
 * pipelining (publish batches, acknowledgements, pulls) use it. One
 * struct mesh__rpc is for one thread at a time. */
#ifndef MESH_RPC_H
#define MESH_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#include "mesh/conn.h"
#include "mesh/err.h"

struct mesh__rpc;

/* Subscribe a fresh inbox on c. `what` names the owner in errors. */
mesh_err mesh__rpc_open(struct mesh_conn *c, const char *what,
                        struct mesh__rpc **out);
void mesh__rpc_close(struct mesh__rpc *r);

/* Hand every reply to fn, on cnats' thread, as it comes, instead of
 * keeping it for mesh__rpc_take; fn takes the message and must not call
 * this inbox's functions. fn NULL keeps them again, and returns once no
 * reply is in the old fn's hands. */
void mesh__rpc_divert(struct mesh__rpc *r, void (*fn)(void *arg, natsMsg *m),
                      void *arg);

/* Reserve the next request id and write its reply subject into buf. */
const char *mesh__rpc_reply(struct mesh__rpc *r, char *buf, size_t size);
/* The request id in a subject on this inbox, or 0. */
uint64_t mesh__rpc_rid(const struct mesh__rpc *r, const char *subject);

/* The oldest reply, waiting until `want` are in (or a status reply, when
 * on_status) or until deadline (monotonic ms); NULL on timeout. */
natsMsg *mesh__rpc_take(struct mesh__rpc *r, size_t want, bool on_status,
                        int64_t deadline);

/* Replies that do not come on their reply subject (a pulled message keeps
 * its own) are matched by `match`: the index of the request it answers,
 * or -1. Replies that answer nothing waited for go to `drop` (or are
 * destroyed when it is NULL). */
struct mesh__rpc_hooks {
	long (*match)(natsMsg *reply, void *arg);
	void (*drop)(natsMsg *reply, void *arg);
	void *arg;
};

/* Publish msgs[i] (made with reply subjects from mesh__rpc_reply, in
 * order) and collect one reply each into replies[i] (NULL when none came
 * within timeout_ms). Takes the messages. Errors: the connection's. */
mesh_err mesh__rpc_many(struct mesh__rpc *r, natsMsg **msgs, size_t n,
                        int64_t timeout_ms, natsMsg **replies,
                        const struct mesh__rpc_hooks *hooks);

/* A JetStream status reply's code (100 heartbeat, 404, 408, 409, 503), or
 * 0 for anything else. */
int mesh__rpc_status(natsMsg *m);

/* Judge a publish acknowledgement: {"stream":"S","seq":N[,"duplicate":
 * true]} or {"error":{...}}. `what` names the target in errors ("queue
 * 'q'"). Errors: MESH_ETIMEDOUT (r is NULL), MESH_ENOTFOUND (no stream),
 * MESH_ETOOBIG, MESH_EBROKER. */
mesh_err mesh__pub_ack(natsMsg *r, const char *what, uint64_t *seq, bool *dup);

#endif
