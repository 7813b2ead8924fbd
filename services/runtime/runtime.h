/* runtime.h: the service runtime's inside, shared by its modules
 * (runtime.c: declaring, the environment, handlers' calls, running;
 * batch.c: the processing contract; outbox.c, undo.c, retry.c). Not part
 * of mesh/service.h. */
#ifndef MESH_RUNTIME_RUNTIME_H
#define MESH_RUNTIME_RUNTIME_H

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <lmdb.h>
#include <nats/nats.h>

#include "mesh/arena.h"
#include "mesh/clock.h"
#include "mesh/err.h"
#include "mesh/seal.h"
#include "mesh/service.h"
#include "mesh/sign.h"
#include "mesh/source.h"
#include "clog.h"
#include "outbox.h"
#include "stats.h"
#include "undo.h"

#define MAX_SOURCES     32
#define MAX_HANDLERS    64
#define MAX_ROUTES      64
#define MAX_EMITS       32
#define MAX_INFLIGHT    64
#define KEY_MAX         511
#define FETCH_WAIT_MS   1000
#define PRUNE_PER_BATCH 256
#define FLUSH_EVERY_MS  1000

enum source_kind { SRC_TOPIC, SRC_QUEUE };

struct source {
	enum source_kind kind;
	char name[256];
	char label[264]; /* "topic:orders" */
	char *filter_policy;
	mesh_filter_scope scope;
	int64_t replay_from_ms;
	bool fifo;
	bool has_dlq; /* queue sources: the queue's own redrive policy */
	char spec[MESH_SUBSCRIPTION_ID_MAX + 16]; /* for mesh_source_open */
	/* Its topic's or queue's RequireSigners, while running. */
	struct mesh_verifier *verifier;
};

struct handler {
	char *type; /* NULL: the fallback */
	const ProtobufCMessageDescriptor *desc;
	mesh_handler_fn fn;
	void *arg;
};

/* A request route (request.c). */
struct route {
	char *key;      /* "GET /orders/{id}" */
	char method[8]; /* "GET" */
	bool read;      /* GET, HEAD: a read transaction */
	const ProtobufCMessageDescriptor *desc;
	mesh_request_fn fn;
	void *arg;
};

/* The requests an instance serves: its subscription's callback queues
 * them, request threads take them (request.c). */
struct mesh__requests {
	natsSubscription *sub;
	struct store *st; /* where commands commit */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	natsMsg **q; /* a ring of cap */
	size_t head, n, cap;
	bool quit;
	pthread_t threads[64];
	int n_threads;
};

/* A thread taking batches from a source: into a store (mesh__work), or,
 * partitioned, forwarding them to their partitions (src). */
struct worker {
	struct mesh_service *s;
	struct source *src;   /* the declared source it serves, or NULL */
	const char *spec;     /* for mesh_source_open */
	const char *label;    /* for logs */
	struct store *st;     /* where its batches commit */
	atomic_bool *running; /* NULL: until the service stops */
	pthread_t thread;
};

/* A state store: one LMDB environment, its tables and its outbox. A
 * service has one; a partitioned service one per partition it owns. */
struct store {
	char dir[512];
	MDB_env *env;
	MDB_dbi db_state, db_processed, db_processed_at, db_outbox, db_meta;
	MDB_dbi db_requests, db_requests_at; /* commands' recorded replies */
	struct mesh__outbox outbox;
	struct part *part; /* a partition's store; NULL: the service's */
};

/* The names of a store's databases, in the changelog's numbering. */
#define STORE_DBS 5
extern const char *const mesh__store_db_names[STORE_DBS];

/* A partition of a partitioned service (partitions.c). */
struct part {
	struct mesh_service *s;
	int k;
	struct store st;
	struct mesh__clog *log; /* its changelog, while owned */
	struct mesh__redo redo; /* the write transaction's capture */
	uint64_t epoch;         /* the lease's, while owned */
	atomic_bool running;    /* its workers take batches */
	atomic_bool fenced;     /* lost: commit nothing more */
	char spec[MESH_SERVICE_NAME_MAX + 32]; /* "partition:NAME/K" */
	struct worker workers[MAX_INFLIGHT];
	int n_workers;
	/* For service info. */
	atomic_llong restore_ms, restored_bytes, restored_records;
	atomic_bool reused;
	atomic_llong owned_since_ms; /* wall clock; 0: not ours */
	atomic_ullong committed, fenced_batches;
	pthread_mutex_t mu;     /* st.env's opening and closing */
	pthread_mutex_t log_mu; /* log: appends, or a snapshot */
};

struct mesh_service {
	char name[MESH_SERVICE_NAME_MAX + 1];
	/* Opens sealed events (mesh/seal.h) with the identity of
	 * MESH_IDENTITY (none: every sealed event is dead-lettered). */
	struct mesh_identity *seal_id;
	struct mesh_keyring *keyring;
	struct mesh_service_opts o;
	char state_buf[512];
	char dlq_buf[MESH_QUEUE_NAME_MAX + 1];
	struct source src[MAX_SOURCES];
	size_t n_src;
	char *emits[MAX_EMITS]; /* declared targets: "topic:NAME", ... */
	size_t n_emits;
	struct handler h[MAX_HANDLERS];
	size_t n_h;
	struct route routes[MAX_ROUTES];
	size_t n_routes;
	struct mesh__requests req; /* while running */
	void (*on_start)(struct mesh_service *, void *);
	void *on_start_arg;
	mesh_key_fn key_fn; /* partitioned: the key of an event */
	void *key_arg;
	struct part *parts; /* o.partitions of them, while running */
	struct mesh_lease *lease;
	struct mesh__params *params; /* what it reads (params.c); NULL: none */
	pthread_mutex_t ctl_mu;      /* the partitions' controller's queue */
	pthread_cond_t ctl_cv;
	struct ctl_ev {
		int k;
		bool acquire, lost, retake;
		uint64_t epoch;
	} * ctl_q;
	size_t ctl_n, ctl_cap;
	bool ctl_quit;

	/* Running. */
	struct mesh_conn *c;
	volatile sig_atomic_t *stop;
	char instance[64];
	struct store one; /* the service's store (unpartitioned) */
	struct mesh__stats stats;
	natsSubscription *stats_sub[2];
	pthread_mutex_t targets_mu; /* stores' flushes share the targets */
	struct target { /* the targets it publishes to, kept open (one
		           flush at a time uses them) */
		char name[MESH__OUTBOX_TARGET];
		struct mesh_topic *t;
		struct mesh_queue *q;
	} targets[32];
	size_t n_targets;
	/* Whether each emit target encrypts (mesh_emit seals for those),
	 * read again after MESH_KEYRING_REFRESH_MS. */
	pthread_mutex_t seal_mu;
	struct seal_target {
		char name[MESH__OUTBOX_TARGET];
		bool encrypt;
		int64_t read_ms; /* mono */
	} seal_targets[32];
	size_t n_seal_targets;
	natsSubscription *state_sub[3]; /* the state API (state_api.c) */
	struct {                        /* the backup an instance serves */
		pthread_mutex_t mu;
		char id[17]; /* "": none */
		char dir[256];
		uint64_t size;
		int64_t used_ms;
		char subject[MESH_SERVICE_NAME_MAX + 64];
	} backup;
	pthread_mutex_t log_mu;
	/* Types no handler takes, each logged at most once a minute. */
	pthread_mutex_t unhandled_mu;
	struct unhandled {
		char type[128];
		int64_t logged_ms;
		uint64_t since; /* taken since that line */
	} unhandled[32];
};

/* One event of a batch. */
struct item {
	struct mesh_event *ev;
	int attempt;
	const char *group;         /* FIFO sources */
	struct mesh_source_msg *m; /* as the source handed it out */
	enum {
		OUT_ACK,    /* done (processed, duplicate or ignored) */
		OUT_RETRY,  /* again after delay_ms */
		OUT_RETURN, /* FIFO: after a failure in its group, unprocessed
		             */
		OUT_DLQ,    /* dead-letter with reason */
	} out;
	int64_t delay_ms;
	char reason[256];
	/* How an acknowledged item was done, counted once its batch commits.
	 */
	enum { DONE_PROCESSED, DONE_DUPLICATE, DONE_IGNORED } done;
	bool fixed;     /* its outcome was settled before its handler ran */
	bool malformed; /* dead-lettered because it could not be parsed */
	bool refused;   /* dead-lettered for its signature */
	bool unopened;  /* dead-lettered: sealed, and it did not open */
};

struct mesh_ctx {
	struct mesh_service *s;
	struct store *st;
	struct mesh_source *src;
	struct item *it;                /* NULL for a request */
	const struct mesh_request *req; /* NULL for an event */
	bool read_only;                 /* a read request: writes refused */
	MDB_txn *txn;
	struct mesh__undo *undo;
	int broken; /* an LMDB error that spoils the whole transaction */
	mesh_handler_result decided;
	int64_t delay_ms;
	char reason[256];
	char trace_id[33]; /* "" until asked for */
	char parent_span[17];
};

struct batch {
	struct mesh__undo undo;
	struct mesh_arena arena; /* for decoding payloads */
	struct item it[MESH_SOURCE_BATCH_MAX];
	struct mesh_source_msg m[MESH_SOURCE_BATCH_MAX];
	size_t n;
};

/* ---- runtime.c ---------------------------------------------------------- */

int64_t mesh__wall_ns(void);
int64_t mesh__mono_ns(void);
/* A JSON log line on standard error (event_id, trace_id may be NULL). */
void mesh__svc_vlog(struct mesh_service *s, const char *level,
                    const char *event_id, const char *trace_id,
                    const char *fmt, va_list ap) MESH_PRINTF(5, 0);
void mesh__svc_log(struct mesh_service *s, const char *level, const char *fmt,
                   ...) MESH_PRINTF(3, 4);
/* The handler of a type (or the fallback; NULL: none). */
const struct handler *mesh__svc_handler(const struct mesh_service *s,
                                        const char *type);
/* An event's W3C trace: its traceparent's, or "" (trace 32 hex, span 16
 * hex). */
void mesh__trace_of(const struct mesh_event *ev, char trace[33],
                    char span[17]);
/* The same from a traceparent's text (len bytes; NULL: a new trace). */
void mesh__trace_parse(const char *tp, size_t len, char trace[33],
                       char span[17]);
/* Open a store's environment in dir (made if missing) and bind its
 * outbox. Errors: those of the file system and LMDB, with the directory
 * named. */
/* Make dir and its parents. Errors: the file system's, naming the path. */
mesh_err mesh__mkdirs(const char *dir);
void mesh__store_init(struct mesh_service *s, struct store *st);
mesh_err mesh__store_open(struct mesh_service *s, struct store *st,
                          const char *dir);
void mesh__store_close(struct store *st);

/* ---- state_api.c: the state over NATS ---------------------------------- */

/* Answer mesh.service.NAME.state.* (one instance of the service, a queue
 * group) and this instance's backup chunks. Errors: the connection's. */
mesh_err mesh__state_api_start(struct mesh_service *s);
/* Drop a backup left idle for 10 minutes. */
void mesh__state_api_tick(struct mesh_service *s);
void mesh__state_api_stop(struct mesh_service *s);

/* Sleep ms, or less when the service stops. */
void mesh__nap_ms(struct mesh_service *s, int64_t ms);
/* A worker's thread (struct worker): batches from its source into its
 * store until the service stops or *w->running turns false. */
void *mesh__work(void *arg);

/* ---- request.c: request handlers ------------------------------------- */

/* The routes as JSON for --describe ([{"route","kind","type"}]). */
json_t *mesh__routes_json(const struct mesh_service *s);
/* Serve mesh.service.NAME.request from st (the service's store) on
 * o.request_threads threads; nothing when it has no routes. Errors: the
 * connection's, naming the subject. */
mesh_err mesh__requests_start(struct mesh_service *s, struct store *st);
/* Stop taking requests, answer those queued 503, join the threads. */
void mesh__requests_stop(struct mesh_service *s);
/* A request's request id and W3C trace (for logs and emits). */
const char *mesh__request_log_id(const struct mesh_request *r);
void mesh__request_trace(const struct mesh_request *r, char trace[33],
                         char span[17]);
/* "request:GET /orders/{id}" (mesh_ctx_source). */
const char *mesh__request_source(const struct mesh_request *r);

/* ---- batch.c ------------------------------------------------------------ */

/* Delete up to n entries of table older than before_ms through its time
 * index at (keys: 8 bytes big-endian ms, then the table's key), oldest
 * first, each told to note. Returns 0 or the LMDB error. */
int mesh__expire(MDB_txn *txn, MDB_dbi table, MDB_dbi at, int64_t before_ms,
                 int n, const struct mesh__wnote *note);

void mesh__batch_init(struct batch *b);
void mesh__batch_fini(struct batch *b);
/* Take a batch: up to batch_size, waiting up to a second for the first and
 * up to batch_window_ms for the rest. */
mesh_err mesh__batch_fetch(struct mesh_service *s, struct mesh_source *src,
                           struct batch *b);
/* The processing contract over a fetched batch: one write transaction,
 * each event's writes undone unless its handler succeeds, one durable
 * commit, then the outbox is published. */
void mesh__batch_process(struct mesh_service *s, struct store *st,
                         struct mesh_source *src, struct batch *b);
/* Settle each message with its source: ack, retry later, dead-letter. */
void mesh__batch_settle(struct mesh_service *s, struct mesh_source *src,
                        struct batch *b);
/* Whether src requires signatures that ev's fail (reason filled in):
 * such an event is dead-lettered at once, never retried. */
bool mesh__sig_refused(struct mesh_service *s, const struct source *src,
                       const struct mesh_event *ev, char *reason, size_t size);
/* Verify the batch's readable events when src requires signatures (the
 * batch's thread, before its transaction: in-flight batches verify in
 * parallel); those refused are settled as dead letters. */
void mesh__batch_verify(struct mesh_service *s, const struct source *src,
                        struct batch *b);
/* The declared sources' verifiers (mesh/sign.h): opened after prepare,
 * closed when the service stops. Errors: the connection's. */
mesh_err mesh__verifiers_open(struct mesh_service *s);
void mesh__verifiers_close(struct mesh_service *s);
/* Release the batch's messages to their source. */
void mesh__batch_release(struct mesh_source *src, struct batch *b);

/* The parameters it declared (params.c): read at start, before any event,
 * then watched (nothing when none is declared); stopped; freed. */
mesh_err mesh__params_start(struct mesh_service *s);
void mesh__params_stop(struct mesh_service *s);
void mesh__params_free(struct mesh_service *s);

#endif
