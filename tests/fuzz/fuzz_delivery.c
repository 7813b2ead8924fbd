/* fuzz_delivery: the service runtime's delivery path (services/runtime/
 * batch.c) fed a batch of any NATS messages, headers included, through an
 * in-memory source: no broker, a real LMDB environment (on /dev/shm when
 * there is one). Each message is read as a subscriber reads it
 * (mesh_wire_read), then the processing contract runs over the batch with
 * handlers that decode payloads (evmesh.shop.PlaceOrder,
 * evmesh.example.Greet), write state, emit events, fail and reject.
 *
 * Input: a first byte of traits (bit 0 FIFO, bit 1 a source that
 * redrives), then up to MAX_MSGS messages, each a control byte (attempt
 * 1-4 in bits 0-1, FIFO group in bits 2-3), a two-byte big-endian length
 * and that many bytes: header lines "Key: Value" up to an empty line, then
 * the body (as fuzz_wire).
 *
 * What must hold, besides no crash and no sanitizer report: every message
 * has exactly one outcome (acknowledged, retried or dead-lettered); every
 * unreadable one is dead-lettered at once with its parse error as the
 * reason and counted as malformed; a non-redriving source dead-letters
 * what fails on its last attempt. FUZZ_DEBUG=1 in the environment prints
 * each message's outcome (to see why an input failed). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nats/nats.h>

#include "fuzz_msg.h"
#include "mesh/wire.h"
#include "mesh_schemas.h"
#include "runtime.h"

#define MAX_MSGS    16
#define MAX_ATTEMPT 4

enum outcome { NONE, ACKED, RETRIED, DEAD };

struct mem_msg {
	natsMsg *msg;
	uint8_t ctl;
	char group[8];
	enum outcome out;
	int outcomes; /* how many it was given: must be 1 */
	char reason[256];
};

struct mem {
	struct mem_msg in[MAX_MSGS];
	size_t n_in, next;
};

static struct mesh_service *svc;

/* ---- the in-memory source ------------------------------------------------
 */

static mesh_err
mem_fetch(void *impl, size_t max, int64_t wait_ms, bool decode,
          struct mesh_source_msg *out, size_t *n, size_t *filtered)
{
	struct mem *m = impl;
	size_t k = 0;

	(void)wait_ms;
	(void)decode;
	(void)filtered;
	for (; k < max && m->next < m->n_in; k++, m->next++) {
		struct mem_msg *in = &m->in[m->next];
		struct mesh_source_msg *o = &out[k];
		char fallback[32];

		memset(o, 0, sizeof(*o));
		o->sequence = m->next + 1;
		o->attempt = (uint64_t)(in->ctl & 3) + 1;
		o->group_id = in->group[0] ? in->group : NULL;
		o->msg = in->msg;
		o->impl = in;
		snprintf(fallback, sizeof(fallback), "mem-%zu", m->next + 1);
		o->parse_error = o->parse_error_buf;
		if (mesh_wire_read(in->msg, 0, fallback, &o->event,
		                   o->parse_error_buf,
		                   sizeof(o->parse_error_buf)) != MESH_OK) {
			abort(); /* only running out of memory may fail it */
		}
	}
	*n = k;
	return MESH_OK;
}

static void
mark(struct mesh_source_msg *msg, enum outcome out)
{
	struct mem_msg *in = msg->impl;

	in->out = out;
	in->outcomes++;
}

static void
mem_ack(void *impl, struct mesh_source_msg *const *msgs, size_t n)
{
	(void)impl;
	for (size_t i = 0; i < n; i++) {
		mark(msgs[i], ACKED);
	}
}

static mesh_err
mem_retry(void *impl, struct mesh_source_msg *msg, int64_t delay_ms)
{
	(void)impl;
	if (delay_ms < 0) {
		abort();
	}
	mark(msg, RETRIED);
	return MESH_OK;
}

static mesh_err
mem_dead_letter(void *impl, struct mesh_source_msg *msg,
                struct mesh_dead_letter *dl)
{
	struct mem_msg *in = msg->impl;

	(void)impl;
	if (dl->reason == NULL || dl->reason[0] == '\0') {
		abort(); /* a dead letter always says why */
	}
	snprintf(in->reason, sizeof(in->reason), "%s", dl->reason);
	mark(msg, DEAD);
	return MESH_OK;
}

static void
mem_release(void *impl, struct mesh_source_msg *msgs, size_t n)
{
	(void)impl;
	for (size_t i = 0; i < n; i++) {
		mesh_event_free(msgs[i].event);
		msgs[i].event = NULL;
	}
}

static void
mem_close(void *impl)
{
	(void)impl;
}

static const struct mesh_source_ops mem_ops = {
        .fetch = mem_fetch,
        .ack = mem_ack,
        .retry = mem_retry,
        .dead_letter = mem_dead_letter,
        .release = mem_release,
        .close = mem_close,
};

/* ---- the outbox's sink and the handlers -----------------------------------
 */

static void
sink(void *arg, const struct mesh__outbox_msg *p, size_t n, bool *ok)
{
	(void)arg;
	(void)p;
	for (size_t i = 0; i < n; i++) {
		ok[i] = true;
	}
}

/* The last character of the event's id decides: 'r' fails (retry), 'x'
 * rejects, anything else is done; each writes state and emits first. */
static mesh_handler_result
handle(struct mesh_ctx *ctx, const struct mesh_event *ev,
       const ProtobufCMessage *msg, void *arg)
{
	const char *id = mesh_event_id(ev);
	size_t len = strlen(id);
	struct mesh_event *out = NULL;
	const void *data;
	size_t dlen;

	(void)msg;
	(void)arg;
	mesh_event_data(ev, &data, &dlen, NULL);
	mesh_state_put(ctx, id, len, data, dlen);
	if (mesh_event_new("fuzz.out", "fuzz", &out) == MESH_OK) {
		mesh_event_set_text(out, id, len);
		mesh_emit(ctx, "topic:out", out, NULL);
		mesh_event_free(out);
	}
	switch (len > 0 ? id[len - 1] : '\0') {
	case 'r':
		return MESH_HANDLER_RETRY;
	case 'x':
		return mesh_reject(ctx, "fuzz: rejected");
	default:
		return MESH_HANDLER_OK;
	}
}

/* ---- setup and one input --------------------------------------------------
 */

static char dir[PATH_MAX];

static void
remove_dir(void)
{
	char path[PATH_MAX + 16];

	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/lock.mdb", dir);
	unlink(path);
	rmdir(dir);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct mesh_service_opts *o;
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";

	(void)argc;
	(void)argv;
	nats_Open(-1);
	snprintf(dir, sizeof(dir), "%s/fuzz-delivery-XXXXXX", base);
	if (mkdtemp(dir) == NULL ||
	    mesh_service_new("fuzz", &svc) != MESH_OK) {
		abort();
	}
	o = mesh_service_opts(svc);
	o->state_dir = dir;
	o->map_size = 64u << 20;
	o->max_receive = MAX_ATTEMPT;
	o->batch_size = MAX_MSGS;
	o->batch_window_ms = 0;
	o->retry_base_ms = 100;
	o->retry_max_ms = 1000;
	if (mesh_service_on(svc, "evmesh.shop.PlaceOrder",
	                    mesh_schema_find("evmesh.shop.PlaceOrder"), handle,
	                    NULL) != MESH_OK ||
	    mesh_service_on(svc, "evmesh.example.Greet",
	                    mesh_schema_find("evmesh.example.Greet"), handle,
	                    NULL) != MESH_OK ||
	    mesh_service_on(svc, "fuzz.text", NULL, handle, NULL) != MESH_OK) {
		abort();
	}
	svc->one.outbox.sink = sink;
	if (mesh__store_open(svc, &svc->one, svc->o.state_dir) != MESH_OK) {
		abort();
	}
	/* Open, the files need no names: nothing is left behind, however
	 * the process ends (a crash included). */
	remove_dir();
	return 0;
}

/* FIFO: an earlier event of message i's group went back (message i is
 * then held back behind it). */
static bool
held_back(const struct batch *b, size_t i)
{
	const char *g = b->m[i].group_id;

	for (size_t j = 0; g != NULL && j < i; j++) {
		const struct mem_msg *mm = b->m[j].impl;
		if (b->m[j].group_id != NULL &&
		    strcmp(b->m[j].group_id, g) == 0 && mm->out == RETRIED) {
			return true;
		}
	}
	return false;
}

/* Empty the environment: every input starts from the same state. */
static void
reset_state(void)
{
	MDB_txn *txn = NULL;

	if (mdb_txn_begin(svc->one.env, NULL, 0, &txn) != 0 ||
	    mdb_drop(txn, svc->one.db_state, 0) != 0 ||
	    mdb_drop(txn, svc->one.db_processed, 0) != 0 ||
	    mdb_drop(txn, svc->one.db_processed_at, 0) != 0 ||
	    mdb_drop(txn, svc->one.db_outbox, 0) != 0 ||
	    mdb_txn_commit(txn) != 0) {
		abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct mem m;
	struct fuzz_in in = {data, size};
	uint8_t traits = fuzz_byte(&in);
	struct mesh_source_traits t = {.fifo = traits & 1,
	                               .redrives = (traits & 2) != 0};
	struct mesh_source *src = NULL;
	struct batch *b;
	uint64_t malformed0 = atomic_load(&svc->stats.malformed);
	size_t unreadable = 0;

	memset(&m, 0, sizeof(m));
	while (in.n > 0 && m.n_in < MAX_MSGS) {
		struct mem_msg *mm = &m.in[m.n_in];
		size_t len;
		mm->ctl = fuzz_byte(&in);
		len = (size_t)fuzz_byte(&in) << 8;
		len |= fuzz_byte(&in);
		len = len < in.n ? len : in.n;
		if ((mm->msg = fuzz_nats_msg(in.p, len, "mesh.queue.fuzz")) ==
		    NULL) {
			break;
		}
		in.p += len;
		in.n -= len;
		if (t.fifo) {
			snprintf(mm->group, sizeof(mm->group), "g%d",
			         (mm->ctl >> 2) & 3);
		}
		m.n_in++;
	}

	b = calloc(1, sizeof(*b));
	if (b == NULL || mesh_source_new(&mem_ops, &m, "queue:fuzz", &t, NULL,
	                                 &src) != MESH_OK) {
		abort();
	}
	mesh__batch_init(b);
	if (mesh__batch_fetch(svc, src, b) != MESH_OK || b->n != m.n_in) {
		abort();
	}
	mesh__batch_process(svc, &svc->one, src, b);
	mesh__batch_settle(svc, src, b);

	for (size_t i = 0; i < b->n; i++) {
		struct mesh_source_msg *sm = &b->m[i];
		struct mem_msg *mm = sm->impl;
		if (getenv("FUZZ_DEBUG") != NULL) {
			fprintf(stderr,
			        "msg %zu: %s, group %s, attempt %d: "
			        "%d outcome(s), the last %d (%s)\n",
			        i, mesh_event_id(sm->event),
			        sm->group_id ? sm->group_id : "-",
			        (int)sm->attempt, mm->outcomes, mm->out,
			        sm->parse_error);
		}
		if (mm->outcomes != 1) {
			abort(); /* exactly one outcome each */
		}
		if (sm->parse_error[0] != '\0') {
			/* Unreadable: dead-lettered at once, saying so; in
			 * FIFO order only once its group's earlier events
			 * are done (held back, it goes back unread). */
			if (mm->out == RETRIED && held_back(b, i)) {
				continue;
			}
			if (mm->out != DEAD ||
			    strstr(mm->reason, "not a readable CloudEvent") ==
			            NULL) {
				abort();
			}
			unreadable++;
		}
		if (mm->out == RETRIED && !t.redrives && !held_back(b, i) &&
		    sm->attempt >= MAX_ATTEMPT) {
			abort(); /* the last attempt is not retried */
		}
	}
	if (atomic_load(&svc->stats.malformed) - malformed0 != unreadable) {
		abort(); /* each one dead-lettered unread is counted once */
	}
	mesh__batch_release(src, b);
	mesh__batch_fini(b);
	free(b);
	mesh_source_close(src);
	for (size_t i = 0; i < m.n_in; i++) {
		natsMsg_Destroy(m.in[i].msg);
	}
	reset_state();
	return 0;
}
