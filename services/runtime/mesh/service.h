/* The service runtime: the Lambda half of the mesh.
 *
 * A service is a program that declares its name, the topics (each with an
 * optional filter policy) and queues it consumes, and a handler per event
 * type, then hands over to mesh_service_main(). The runtime subscribes the
 * service to its topics (durably, idempotently: starting a service is
 * subscribing it), takes batches from every source, and runs each event's
 * handler against the service's own LMDB environment:
 *
 *   one write transaction per batch, committed durably once;
 *   a savepoint per event (an undo log), so a failing event's writes
 *     vanish;
 *   a table of processed event ids, so an event delivered again after a
 *     crash is acknowledged without running its handler again;
 *   an outbox: the events a handler emits are recorded in its transaction
 *     and published after the commit with Nats-Msg-Id = the event's id
 *     (re-published at start if a crash left them pending);
 *   then the batch is acknowledged. Only failed events come again (partial
 *     batch failure), after an exponential back-off with jitter, and go to
 *     a dead-letter queue after max_receive attempts, with the reason.
 *
 * A kill -9 at any moment loses nothing and duplicates no effect. Several
 * instances of a service share its subscriptions and its LMDB environment
 * (LMDB is multi-process safe); work spreads without code.
 *
 * Thread safety: handlers run on the runtime's threads, one event at a time
 * per context; a struct mesh_ctx is valid only during its handler call.
 */
#ifndef MESH_SERVICE_H
#define MESH_SERVICE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "mesh/mesh.h"
#include "mesh/service_api.h"

struct mesh_service;
struct mesh_ctx;

/* What a handler decided. Return mesh_retry() or mesh_reject() rather than
 * the bare values, so that the delay or reason is kept. */
typedef enum {
	MESH_HANDLER_OK = 0, /* done: its writes and emits are committed */
	MESH_HANDLER_RETRY,  /* try again later; its writes are undone */
	MESH_HANDLER_REJECT, /* dead-letter now, with a reason */
} mesh_handler_result;

/* A handler. msg is the payload decoded as the descriptor the handler was
 * registered with (NULL when it was registered without one); ev and msg
 * are valid during the call. */
typedef mesh_handler_result (*mesh_handler_fn)(struct mesh_ctx *ctx,
                                               const struct mesh_event *ev,
                                               const ProtobufCMessage *msg,
                                               void *arg);

/* Options, with their defaults (set by mesh_service_new) and the flags and
 * environment variables mesh_service_main reads them from. */
struct mesh_service_opts {
	const char *state_dir; /* --state, MESH_STATE; var/services/NAME */
	int batch_size;        /* --batch, MESH_BATCH; 1-256; 10 */
	int batch_window_ms;   /* --window, MESH_WINDOW_MS: wait up to this
	                          long to fill a batch; 0-10000; 0 */
	int max_inflight;      /* --inflight, MESH_INFLIGHT: batches in
	                          flight per source; 1-64; 2 */
	int max_receive;       /* --max-receive, MESH_MAX_RECEIVE: attempts
	                          before dead-lettering; 1-1000; 5 */
	int64_t retry_base_ms; /* back-off base; 1000 */
	int64_t retry_max_ms;  /* back-off cap; 60000 */
	int64_t horizon_s;     /* --horizon, MESH_HORIZON_S: processed ids
	                          kept; 60-31536000; 604800 (7 days) */
	size_t map_size;       /* LMDB map size; 1 GiB */
	int64_t shutdown_ms;   /* the bound on a graceful stop; 10000 */
	const char *dlq;       /* --dlq, MESH_DLQ: dead letters of topic
	                          sources (and of queues without a redrive
	                          policy); NAME-dlq, made when missing */
	int partitions;        /* --partitions, MESH_PARTITIONS: 0 (not
	                          partitioned) or 1-1024 (see
	                          mesh_service_partitions) */
	int64_t lease_ms;      /* --lease-ms, MESH_LEASE_MS: a partition's
	                          lease lives this long unrenewed; 500-60000;
	                          3000 */
	long snapshot_records; /* --snapshot-records, MESH_SNAPSHOT_RECORDS:
	                          a partition's snapshot after this many
	                          changelog records (or 64 MiB);
	                          10-100000000; 100000 */
	const char *identity_file; /* MESH_IDENTITY: the seed file of the
	                          service's identity (named as the service),
	                          which opens the SecureStrings it is a
	                          reader of; NULL: none */
	int request_threads;       /* --request-threads, MESH_REQUEST_THREADS:
	                              requests handled at once by an instance
	                              (when it has routes); 1-64; 4 */
};

/* Declare a service. name: 1-64 of [A-Za-z0-9_-]. Errors: MESH_EINVAL,
 * MESH_ENOMEM. */
mesh_err mesh_service_new(const char *name, struct mesh_service **out);
void mesh_service_free(struct mesh_service *s);
const char *mesh_service_name(const struct mesh_service *s);
/* The options, to change before mesh_service_run/main. */
struct mesh_service_opts *mesh_service_opts(struct mesh_service *s);

/* Consume a topic: the service's subscription (made at start, or updated
 * to this policy) with an optional filter policy; replay_from_ms > 0 makes
 * a new subscription start with the topic's archive from that time.
 * Errors: MESH_EINVAL (name, policy, with SNS's words), MESH_ENOMEM. */
mesh_err mesh_service_subscribe(struct mesh_service *s, const char *topic,
                                const char *filter_policy,
                                mesh_filter_scope scope,
                                int64_t replay_from_ms);
/* Consume a queue (it must exist at start). */
mesh_err mesh_service_consume(struct mesh_service *s, const char *queue);

/* Declare a target the service emits to: "topic:NAME" or "queue:NAME"
 * (its --describe lists them; meshctl auth grants publishing to those
 * alone). Once any is declared, mesh_emit to an undeclared target is
 * refused (MESH_EINVAL). Declaring twice is fine. Errors: MESH_EINVAL
 * (target, more than 32), MESH_ENOMEM. */
mesh_err mesh_service_emits(struct mesh_service *s, const char *target);

/* Partition the service's state by key: n partitions (1-1024), each
 * with its own LMDB environment under the state directory (p0, p1, ...)
 * and its own changelog, owned by one instance at a time through a lease
 * (see the README's "Partitioned services"). n is fixed at the service's
 * first start and recorded in the mesh; a start with another n is
 * refused. An event's key: its MessageGroupId for FIFO sources; else what
 * key_fn returns (*key borrowed from ev or arg until the next call; 0 for
 * no key: the event is dead-lettered, "no partition key"); with key_fn
 * NULL, the event's subject, else its id. Handlers see only their
 * partition's state. n 0: partitioned only when --partitions
 * (MESH_PARTITIONS) says, the key function applying then. Errors:
 * MESH_EINVAL (n; n > 0 for a service with request routes, which a
 * partitioned service does not serve). */
typedef size_t (*mesh_key_fn)(const struct mesh_event *ev, const char **key,
                              void *arg);
mesh_err mesh_service_partitions(struct mesh_service *s, int n,
                                 mesh_key_fn key_fn, void *arg);

/* The handler of events of `type` (NULL: of any type without a handler of
 * its own). desc (optional) decodes the payload for it; an event whose
 * payload does not decode as desc is dead-lettered. An event no handler
 * takes is acknowledged and counted as ignored. */
mesh_err mesh_service_on(struct mesh_service *s, const char *type,
                         const ProtobufCMessageDescriptor *desc,
                         mesh_handler_fn fn, void *arg);

/* ---- requests: synchronous calls (HTTP through mesh-gateway) ----------
 *
 * The protocol (subject, headers, the statuses the runtime answers
 * itself) is in mesh/service_api.h and the README's "Requests". */

struct mesh_request; /* a request in hand; valid during its handler */
struct mesh_reply;   /* its reply, built by the handler */

/* A request handler. msg is the body decoded from JSON as the route's
 * descriptor (NULL when registered without one). Return MESH_HANDLER_OK
 * to send the reply (status 200 and no body unless set); anything else
 * (mesh_reject, mesh_retry) answers 500, logs the reason with the
 * request id and, for a command, undoes its writes and emits. */
typedef mesh_handler_result (*mesh_request_fn)(struct mesh_ctx *ctx,
                                               const struct mesh_request *req,
                                               struct mesh_reply *rep,
                                               void *arg);

/* The handler of a route: "METHOD /path/{param}/..." (METHOD one of GET,
 * HEAD, POST, PUT, PATCH, DELETE, OPTIONS; segments of [A-Za-z0-9._~-]
 * or a whole-segment {name}, name of [A-Za-z0-9_], distinct), matched
 * exactly against a request's Mesh-Route. desc (optional): the body is
 * JSON of that protobuf type (proto3 JSON, mesh/pbjson.h), decoded before
 * the handler runs; a body that does not fit is answered 400 naming the
 * field. GET and HEAD routes are reads: the handler runs in an LMDB read
 * transaction (mesh_state_get and _scan work; puts, deletes and emits
 * are refused, MESH_EINVAL), in parallel with batches and other reads.
 * Others are commands: one write transaction of their own (waiting for a
 * batch's, as writers take turns), committed durably before the reply;
 * emits go through the outbox; the reply is recorded under the
 * idempotency key and a retry with the key is answered from the record
 * (README, "Requests"). A partitioned service serves no requests: a
 * route on one partitioned in code (mesh_service_partitions) is refused,
 * and one partitioned by --partitions starts without serving them,
 * saying so in its log. Before mesh_service_run/main. Errors:
 * MESH_EINVAL (route, fn, a route declared twice, more than 64,
 * partitioned), MESH_ENOMEM. */
mesh_err mesh_service_on_request(struct mesh_service *s, const char *route,
                                 const ProtobufCMessageDescriptor *desc,
                                 mesh_request_fn fn, void *arg);

/* About the request; strings borrowed until the handler returns. */
const char *mesh_request_route(const struct mesh_request *r);  /* key */
const char *mesh_request_method(const struct mesh_request *r); /* "GET" */
const char *mesh_request_path(const struct mesh_request *r);   /* or "" */
const char *mesh_request_query(const struct mesh_request *r);  /* or "" */
const char *mesh_request_id(const struct mesh_request *r);
/* Idempotency-Key, NULL when not given. */
const char *mesh_request_idempotency_key(const struct mesh_request *r);
/* Content-Type, "" when not given. */
const char *mesh_request_content_type(const struct mesh_request *r);
/* The path parameter {name} (percent-decoded by the gateway); NULL when
 * the route has none of that name. */
const char *mesh_request_param(const struct mesh_request *r, const char *name);
/* A forwarded HTTP header (Mesh-Header-NAME; name matched without
 * regard to case); NULL when absent. */
const char *mesh_request_header(const struct mesh_request *r,
                                const char *name);
/* The raw body (never NULL; *len may be 0). */
const void *mesh_request_body(const struct mesh_request *r, size_t *len);
/* The body decoded as the route's descriptor; NULL without one. */
const ProtobufCMessage *mesh_request_message(const struct mesh_request *r);

/* Build the reply. status: 100-599 (else MESH_EINVAL). A header is sent
 * as Mesh-Header-NAME (name of [A-Za-z0-9-], value without CR, LF or
 * NUL; at most 32). A body replaces the one set before; content_type
 * NULL: application/octet-stream. _json takes JSON text (checked:
 * MESH_EPARSE naming line and column); _message writes msg as proto3
 * JSON (MESH_EINVAL naming the field that cannot be written); _error
 * sends {"message", "requestId"} with the message formatted. Each copies
 * what it is given. Errors: MESH_EINVAL, MESH_EPARSE, MESH_ENOMEM. */
mesh_err mesh_reply_status(struct mesh_reply *rep, int status);
mesh_err mesh_reply_header(struct mesh_reply *rep, const char *name,
                           const char *value);
mesh_err mesh_reply_body(struct mesh_reply *rep, const char *content_type,
                         const void *data, size_t len);
mesh_err mesh_reply_json(struct mesh_reply *rep, int status, const char *json);
mesh_err mesh_reply_message(struct mesh_reply *rep, int status,
                            const ProtobufCMessage *msg);
mesh_err mesh_reply_error(struct mesh_reply *rep, int status, const char *fmt,
                          ...) __attribute__((format(printf, 3, 4)));

/* Called once at start, after the LMDB environment is open and before any
 * event is taken (e.g. to seed state); may be NULL. */
void mesh_service_on_start(struct mesh_service *s,
                           void (*fn)(struct mesh_service *s, void *arg),
                           void *arg);

/* Parameters (mesh/param.h) the service reads: name_or_prefix is a
 * parameter's name ("/shop/orders/discount"), a path ending in '/'
 * ("/shop/", every parameter below it) or "/" (all). At start, before
 * on_start and any event, the runtime reads their last values, then
 * keeps them current (a watcher of MESH_PARAMS on its own thread);
 * SecureStrings are opened with the service's identity (opts
 * identity_file, MESH_IDENTITY) when it is among their readers. fn (may
 * be NULL: only declare) is called on that thread after each change of a
 * matching parameter (not for the values read at start), version 0 when
 * it was deleted; read the value with mesh_param_get. Before
 * mesh_service_run/main. Errors: MESH_EINVAL (name_or_prefix; more than
 * 32 declarations), MESH_ENOMEM. */
mesh_err
mesh_service_on_param(struct mesh_service *s, const char *name_or_prefix,
                      void (*fn)(struct mesh_service *s, const char *name,
                                 int64_t version, void *arg),
                      void *arg);

/* A declared parameter's value as the runtime holds it (no I/O: for
 * handlers; any thread), copied NUL-terminated into buf (size bytes;
 * MESH_PARAM_VALUE_MAX + 1 always do), and its version into *version
 * (may be NULL). Wipe a secret's copy when done (sodium_memzero). Errors:
 * MESH_EINVAL (not declared), MESH_ENOTFOUND (no such parameter),
 * MESH_EAUTH (a SecureString the service is not a reader of, or it has
 * no identity), MESH_EPARSE (a SecureString that does not open),
 * MESH_ETOOBIG (buf too small). mesh_param_get is a handler's (ctx);
 * mesh_service_param the same for on_start and on_param callbacks. */
mesh_err mesh_param_get(struct mesh_ctx *ctx, const char *name, char *buf,
                        size_t size, int64_t *version);
mesh_err mesh_service_param(struct mesh_service *s, const char *name,
                            char *buf, size_t size, int64_t *version);

/* Run on connection c until *stop is set: then stop taking batches, finish
 * those in hand (commit, publish, acknowledge) and return within
 * shutdown_ms. Errors: those of start (state directory, subscriptions,
 * queues), with the detail naming what failed. */
mesh_err mesh_service_run(struct mesh_service *s, struct mesh_conn *c,
                          volatile sig_atomic_t *stop);

/* What the service declares, without connecting (its program's
 * --describe), as JSON: {"service", "sources": [{"kind": "topic" |
 * "queue", "name", "filter_policy" (an object), "filter_scope",
 * "replay_from_ms" (the last three only when set)}], "emits": ["topic:X",
 * ...] (declared by mesh_service_emits), "dlq": its dead-letter queue,
 * "partitions": N, "routes": [{"route": "GET /orders/{id}", "kind":
 * "read" | "command", "type": the body's protobuf type (only when
 * declared)}]} (N: 0 when not partitioned; routes in declared order).
 * *json malloc'ed, NUL-terminated; free(). Errors: MESH_ENOMEM. */
mesh_err mesh_service_describe(const struct mesh_service *s, char **json);

/* Make on c what a start makes, and nothing else (its program's
 * --prepare; no LMDB environment is opened, no event taken): its
 * dead-letter queue, its topic subscriptions (made, or updated to the
 * declared policy), its queues checked, and a partitioned service's
 * record, partition stream and consumers. *json (malloc'ed; free()) says
 * what it consumes: {"service", "sources": ["subscription:ID" |
 * "queue:NAME", ...] (mesh_source_open's specs, in declared order),
 * "emits", "dlq", "partitions": N, "routes"}. Errors: those of
 * mesh_service_run's start, the detail naming what failed (MESH_ENOTFOUND: a
 * queue or topic that does not exist; MESH_EINVAL: an option, or a partition
 * count other than the recorded one). Not while the service runs. */
mesh_err mesh_service_prepare(struct mesh_service *s, struct mesh_conn *c,
                              char **json);

/* The whole program: read flags and environment (and --help), connect
 * (--server, NATS_URL and the credentials of meshctl), run until SIGTERM
 * or SIGINT; returns the exit code (0 after a graceful stop). */
int mesh_service_main(struct mesh_service *s, int argc, char **argv);

/* ---- inside a handler ----------------------------------------------- */

/* The service's state, in the batch's transaction: what a handler writes
 * is committed with the batch, or undone when it fails (a request
 * handler's: in its request's transaction; a read's refuses writes with
 * MESH_EINVAL). Values are
 * borrowed until the handler's next write (LMDB may move them) or its
 * return. Errors: MESH_ENOTFOUND (get),
 * MESH_EINVAL (empty key, or over 511 bytes), MESH_EFULL (the map is
 * full), MESH_ESTORE. */
mesh_err mesh_state_get(struct mesh_ctx *c, const void *key, size_t klen,
                        const void **val, size_t *vlen);
mesh_err mesh_state_put(struct mesh_ctx *c, const void *key, size_t klen,
                        const void *val, size_t vlen);
mesh_err mesh_state_del(struct mesh_ctx *c, const void *key, size_t klen);
/* Visit the keys beginning with prefix, in order, until fn returns
 * non-zero. */
typedef int (*mesh_state_scan_fn)(const void *key, size_t klen,
                                  const void *val, size_t vlen, void *arg);
mesh_err mesh_state_scan(struct mesh_ctx *c, const void *prefix, size_t plen,
                         mesh_state_scan_fn fn, void *arg);

/* Emit an event to "topic:NAME" or "queue:NAME", recorded in the outbox
 * and published after the batch commits. The runtime sets its source (the
 * service's name) unless set, and carries the consumed event's W3C
 * traceparent (a child span). group_id is for FIFO targets (the event id
 * is then the de-duplication id). Takes a copy. Errors: MESH_EINVAL
 * (target), MESH_ETOOBIG, MESH_ESTORE, MESH_ENOMEM. */
mesh_err mesh_emit(struct mesh_ctx *c, const char *target,
                   const struct mesh_event *ev, const char *group_id);
/* The same for a protobuf message (type = its full name). */
mesh_err mesh_emit_message(struct mesh_ctx *c, const char *target,
                           const ProtobufCMessage *msg, const char *group_id);

/* Return these from a handler: retry after delay_ms (0: the back-off's
 * next step), or dead-letter now with a reason. */
mesh_handler_result mesh_retry(struct mesh_ctx *c, int64_t delay_ms);
mesh_handler_result mesh_reject(struct mesh_ctx *c, const char *reason);

/* About the event in hand (a request's: source "request:GET /x",
 * attempt 1, its trace from its traceparent). */
const char *mesh_ctx_service(const struct mesh_ctx *c);
const char *mesh_ctx_source(const struct mesh_ctx *c); /* "topic:orders" */
int mesh_ctx_attempt(const struct mesh_ctx *c);        /* 1 on the first */
const char *mesh_ctx_trace_id(const struct mesh_ctx *c);

/* A JSON log line on standard error with the service, the event id (a
 * request's: request_id) and the trace id. level: "info", "warn", "error". */
void mesh_log(struct mesh_ctx *c, const char *level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* ---- observing ----------------------------------------------------------
 *
 * Stats and state over NATS: see mesh/service_api.h (the protocol every
 * service answers, in libmesh so that tools need only libmesh). */

#endif
