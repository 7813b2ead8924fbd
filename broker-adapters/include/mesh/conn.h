/* Connections to NATS.
 *
 * A mesh_conn is one NATS connection and its JetStream context, made from a
 * list of server URLs and the usual NATS credentials, and kept alive by
 * reconnecting with exponential back-off and jitter.
 *
 * Thread safety: a mesh_conn may be shared by threads (cnats connections
 * are thread safe); open and close it from one.
 */
#ifndef MESH_CONN_H
#define MESH_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include <nats/nats.h>

#include "mesh/err.h"

#define MESH_DEFAULT_URL  "nats://127.0.0.1:4222"
#define MESH_REPLICAS_MAX 5 /* JetStream's most copies of a stream */

/* Options; mesh_conn_opts_init() sets the defaults noted here. Strings are
 * borrowed: they must stay valid until mesh_conn_open() returns. */
struct mesh_conn_opts {
	const char *servers; /* comma-separated URLs; MESH_DEFAULT_URL */
	const char *name;    /* connection name the server shows; NULL */
	const char *user;    /* user and password; NULL */
	const char *password;
	const char *token;          /* authentication token; NULL */
	const char *nkey_seed_file; /* file holding an NKey user seed; NULL */
	const char *creds_file;     /* JWT + seed .creds file; NULL */
	const char *tls_ca;         /* CA bundle to verify the server; NULL */
	const char *tls_cert;       /* client certificate (mutual TLS); NULL */
	const char *tls_key;        /* its private key; NULL */
	bool tls; /* require TLS even for nats:// URLs; false */
	int64_t connect_timeout_ms;    /* per server and attempt; 2000 */
	int64_t reconnect_wait_ms;     /* first back-off step; 250 */
	int64_t reconnect_max_wait_ms; /* back-off ceiling; 8000 */
	int max_reconnect;             /* attempts, -1 = forever; -1 */
	/* The mesh-wide replica count of the streams and buckets made
	 * through this connection without one of their own, 1-5; 0: the
	 * MESH_REPLICAS environment variable, else by the servers (see
	 * mesh_conn_replicas). 0 */
	int replicas;
	/* Asynchronous subscriptions' callbacks run on cnats' shared pool of
	 * delivery threads (nats_SetMessageDeliveryPoolSize) rather than a
	 * thread each: for a program holding many subscriptions (the
	 * supervisor: one per source of each function at zero). false */
	bool shared_delivery;
};

/* Set the defaults. */
void mesh_conn_opts_init(struct mesh_conn_opts *o);

/* Overlay the environment the NATS tools read: NATS_URL, NATS_USER,
 * NATS_PASSWORD, NATS_TOKEN, NATS_NKEY (seed file), NATS_CREDS, NATS_CA,
 * NATS_CERT, NATS_KEY. Unset or empty variables change nothing. */
void mesh_conn_opts_from_env(struct mesh_conn_opts *o);

struct mesh_conn;

/* Connect to the first reachable server of o->servers.
 * Errors: MESH_EINVAL (bad URL or option; unreadable key file; a replica
 * count, or MESH_REPLICAS, outside 1-5),
 * MESH_EUNREACHABLE (no server answered; the detail says
 * "cannot reach NATS at <url>: <why>", e.g. "connection refused"),
 * MESH_EAUTH (credentials refused), MESH_EIO (TLS), MESH_ENOMEM.
 * Fails within about connect_timeout_ms per server (plus a short probe to
 * say why). Passwords in URLs are masked in error details.
 * On success *out owns the connection: close it with mesh_conn_close(). */
mesh_err mesh_conn_open(const struct mesh_conn_opts *o,
                        struct mesh_conn **out);

/* How many NATS servers the connection knows: those given and those the
 * server told of (a cluster's members advertise each other), counted
 * once each; at least 1. */
int mesh_conn_servers(struct mesh_conn *c);

/* The replica count for streams and buckets made without one of their
 * own: the options', else MESH_REPLICAS (checked at mesh_conn_open: 1-5),
 * else 3 when the connection knows 3 or more servers (a cluster), else
 * 1. Consumers take their stream's. */
int mesh_conn_replicas(struct mesh_conn *c);

/* Check a replica count for `what` ("queue 'q'"): 1-5, and no more than
 * the servers c knows (c NULL: the range only). Errors: MESH_EINVAL, the
 * detail naming the value and the servers there are. */
mesh_err mesh_replicas_check(struct mesh_conn *c, const char *what,
                             int64_t replicas);

/* Drain nothing, close, free; NULL is allowed. */
void mesh_conn_close(struct mesh_conn *c);

/* A new reply subject of this connection's: "_INBOX.<unique>", or with an
 * NKey "_INBOX.<its public key>.<unique>" (the only replies an identity of
 * meshctl auth may subscribe to). buf: 128 bytes are enough. */
void mesh_conn_inbox(struct mesh_conn *c, char *buf, size_t size);

/* The underlying cnats objects, borrowed for the connection's lifetime. */
natsConnection *mesh_conn_nats(struct mesh_conn *c);
jsCtx *mesh_conn_js(struct mesh_conn *c);

/* The URL of the server now connected (password masked), into buf. */
const char *mesh_conn_url(struct mesh_conn *c, char *buf, size_t size);

/* Round trip to the server in microseconds. Errors: MESH_ETIMEDOUT,
 * MESH_ECLOSED. */
mesh_err mesh_conn_rtt(struct mesh_conn *c, int64_t *usec);

/* Translate a cnats failure into a mesh_err, for code that calls cnats
 * itself: records "<fmt...>: <cnats' last error>" as the detail. jerr is
 * the JetStream error code when there is one, else 0. Never MESH_OK. */
mesh_err mesh_err_nats(natsStatus s, jsErrCode jerr, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Release the library's global resources (cnats' threads) at program exit,
 * after every connection is closed. */
void mesh_shutdown(void);

/* Wait until what c has sent (acknowledgements in bulk included) has
 * reached the server, at most timeout_ms. For a clean stop. */
void mesh_conn_flush(struct mesh_conn *c, int64_t timeout_ms);

#endif
