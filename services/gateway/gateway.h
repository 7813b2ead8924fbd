/* gateway.h: mesh-gateway, the mesh's HTTP front door (API Gateway).
 *
 * An HTTP/1.1 server (libmicrohttpd: a pool of threads, each on its own
 * epoll) answering the routes of the bucket MESH_ROUTES (mesh/route.h),
 * which it watches, so that a route created, changed or deleted applies
 * to the next request:
 *   queue:NAME, topic:NAME: the body (JSON encoded to the route's type,
 *     or raw) becomes an event with the path parameters and the route's
 *     headers as message attributes and the request's trace context;
 *     202 {"MessageId": ...} once JetStream has stored it.
 *   service:NAME: a NATS request on mesh.service.NAME.request (the
 *     protocol in mesh/route.h), the connection suspended meanwhile so
 *     that a slow service holds no thread; its reply is the answer; no
 *     responders: 503 at once; none within the timeout: 504.
 * Errors: 400 (a body that is not JSON or does not fit the type, naming
 * the field), 404 (no route's path), 405 (another method; Allow), 413
 * (over the body limit), 502 (a reply that is not one), 503, 504; each a
 * JSON {"message", "requestId"}. Every answer carries x-request-id; one
 * JSON log line per request on standard error.
 *
 * Thread safety: one gateway per process, run from its main thread. */
#ifndef GW_GATEWAY_H
#define GW_GATEWAY_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "mesh/conn.h"
#include "mesh/err.h"

struct gw_opts {
	const char *listen; /* "ADDR:PORT"; port 0: any free one */
	size_t max_body;    /* bytes; 1 MiB */
	int64_t timeout_ms; /* a service's answer; 29000 */
	unsigned threads;   /* HTTP threads; 4 */
	/* HTTPS: a PEM certificate (chain) and its private key, both or
	 * neither; NULL: plain HTTP. */
	const char *tls_cert, *tls_key;
};

void gw_opts_init(struct gw_opts *o);

/* Serve until *stop. Errors: MESH_EINVAL (--listen, a certificate or key
 * that is not PEM or that TLS refuses), MESH_EIO (the address cannot be
 * bound, a file cannot be read), the connection's. */
mesh_err gw_run(struct mesh_conn *c, const struct gw_opts *o,
                volatile sig_atomic_t *stop);

#endif
