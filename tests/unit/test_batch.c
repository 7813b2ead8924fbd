/* The runtime's processing contract (services/runtime/batch.c) with an
 * in-memory source and an in-memory outbox sink, on a real LMDB
 * environment, without a broker: what is acknowledged, retried (with its
 * back-off) and dead-lettered (with its reason); a failed event's writes
 * and emitted events vanish; duplicates run once; an unreadable event is
 * dead-lettered at once; a source that redrives decides itself; a FIFO
 * group holds its later events after a failure, not after a dead letter. The
 * same contract runs against nats-server in integration/test_runtime.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "runtime.h"

/* ---- an in-memory source ------------------------------------------------ */

struct mem_msg {
	char id[64], type[64], group[32], parse_error[128];
	int attempt;
};

struct mem {
	struct mem_msg in[64];
	size_t n_in, next;
	char acked[64][64], retried[64][64], dead[64][64];
	int64_t delay[64];
	char reason[64][256];
	size_t n_acked, n_retried, n_dead;
};

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
		memset(o, 0, sizeof(*o));
		mesh_event_new(in->type[0] ? in->type : MESH_WIRE_RAW_TYPE,
		               "test", &o->event);
		mesh_event_set_id(o->event, in->id);
		mesh_event_set_text(o->event, in->id, strlen(in->id));
		snprintf(o->parse_error_buf, sizeof(o->parse_error_buf), "%s",
		         in->parse_error);
		o->parse_error = o->parse_error_buf;
		o->group_id = in->group[0] ? in->group : NULL;
		o->attempt = (uint64_t)in->attempt;
		o->sequence = m->next + 1;
		o->impl = in;
	}
	*n = k;
	return MESH_OK;
}

static void
mem_ack(void *impl, struct mesh_source_msg *const *msgs, size_t n)
{
	struct mem *m = impl;

	for (size_t i = 0; i < n; i++) {
		snprintf(m->acked[m->n_acked++], 64, "%s",
		         ((struct mem_msg *)msgs[i]->impl)->id);
	}
}

static mesh_err
mem_retry(void *impl, struct mesh_source_msg *msg, int64_t delay_ms)
{
	struct mem *m = impl;

	m->delay[m->n_retried] = delay_ms;
	snprintf(m->retried[m->n_retried++], 64, "%s",
	         ((struct mem_msg *)msg->impl)->id);
	return MESH_OK;
}

static mesh_err
mem_dead_letter(void *impl, struct mesh_source_msg *msg,
                struct mesh_dead_letter *dl)
{
	struct mem *m = impl;

	snprintf(m->reason[m->n_dead], 256, "%s", dl->reason);
	snprintf(m->dead[m->n_dead++], 64, "%s",
	         ((struct mem_msg *)msg->impl)->id);
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

static void
add(struct mem *m, const char *id, const char *type, int attempt,
    const char *group, const char *parse_error)
{
	struct mem_msg *in = &m->in[m->n_in++];

	snprintf(in->id, sizeof(in->id), "%s", id);
	snprintf(in->type, sizeof(in->type), "%s", type ? type : "");
	snprintf(in->group, sizeof(in->group), "%s", group ? group : "");
	snprintf(in->parse_error, sizeof(in->parse_error), "%s",
	         parse_error ? parse_error : "");
	in->attempt = attempt;
}

static int
index_of(char list[][64], size_t n, const char *id)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(list[i], id) == 0) {
			return (int)i;
		}
	}
	return -1;
}

/* ---- an in-memory outbox sink ------------------------------------------- */

static char published[64][512];
static size_t n_published;

static void
mem_sink(void *arg, const struct mesh__outbox_msg *p, size_t n, bool *ok)
{
	(void)arg;
	for (size_t i = 0; i < n; i++) {
		const void *data;
		size_t len;
		mesh_event_data(p[i].ev, &data, &len, NULL);
		snprintf(published[n_published++], 512, "%.100s %.*s",
		         p[i].target, (int)len, (const char *)data);
		ok[i] = true;
	}
}

/* ---- the service's handlers ----------------------------------------------
 */

static mesh_handler_result
write_and_emit(struct mesh_ctx *ctx, const struct mesh_event *ev,
               const char *prefix)
{
	struct mesh_event *out = NULL;
	char key[96];

	snprintf(key, sizeof(key), "%s/%s", prefix, mesh_event_id(ev));
	mesh_state_put(ctx, key, strlen(key), "1", 1);
	mesh_event_new("t.out", "bt", &out);
	mesh_event_set_text(out, key, strlen(key));
	mesh_emit(ctx, "topic:out", out, NULL);
	mesh_event_free(out);
	return MESH_HANDLER_OK;
}

static mesh_handler_result
on_ok(struct mesh_ctx *ctx, const struct mesh_event *ev,
      const ProtobufCMessage *msg, void *arg)
{
	(void)msg;
	(void)arg;
	return write_and_emit(ctx, ev, "ok");
}

static mesh_handler_result
on_fail(struct mesh_ctx *ctx, const struct mesh_event *ev,
        const ProtobufCMessage *msg, void *arg)
{
	(void)msg;
	(void)arg;
	write_and_emit(ctx, ev, "fail");
	return MESH_HANDLER_RETRY;
}

static mesh_handler_result
on_reject(struct mesh_ctx *ctx, const struct mesh_event *ev,
          const ProtobufCMessage *msg, void *arg)
{
	(void)ev;
	(void)msg;
	(void)arg;
	return mesh_reject(ctx, "nope");
}

/* ---- running one batch ---------------------------------------------------
 */

static struct mesh_service *svc;

static void
run_batch(struct mem *m, bool fifo, bool redrives)
{
	struct mesh_source_traits t = {.fifo = fifo, .redrives = redrives};
	struct mesh_source *src = NULL;
	struct batch *b = calloc(1, sizeof(*b));

	mesh__batch_init(b);
	mesh_source_new(&mem_ops, m, "queue:mem", &t, NULL, &src);
	mesh__batch_fetch(svc, src, b);
	mesh__batch_process(svc, &svc->one, src, b);
	mesh__batch_settle(svc, src, b);
	mesh__batch_release(src, b);
	mesh__batch_fini(b);
	free(b);
	mesh_source_close(src);
}

static bool
has_key(const char *key)
{
	MDB_txn *txn = NULL;
	MDB_val k = {strlen(key), (void *)key}, v;
	bool found;

	mdb_txn_begin(svc->one.env, NULL, MDB_RDONLY, &txn);
	found = mdb_get(txn, svc->one.db_state, &k, &v) == 0;
	mdb_txn_abort(txn);
	return found;
}

static long long
counter(atomic_uint_fast64_t *c)
{
	return (long long)atomic_load(c);
}

int
main(void)
{
	char dir[PATH_MAX];
	struct mesh_service_opts *o;
	static struct mem m1, m2, m3, m4;
	int i;

	if (!test_tmpdir(dir, sizeof(dir))) {
		tap_skip_all("no temporary directory");
	}
	mesh_service_new("bt", &svc);
	o = mesh_service_opts(svc);
	o->state_dir = dir;
	o->map_size = 16u << 20;
	o->max_receive = 3;
	o->batch_size = 32;
	o->retry_base_ms = 100;
	o->retry_max_ms = 1000;
	mesh_service_on(svc, "t.ok", NULL, on_ok, NULL);
	mesh_service_on(svc, "t.fail", NULL, on_fail, NULL);
	mesh_service_on(svc, "t.reject", NULL, on_reject, NULL);
	svc->one.outbox.sink = mem_sink;
	is_int(mesh__store_open(svc, &svc->one, svc->o.state_dir), MESH_OK,
	       "the environment opens");

	/* One batch of every outcome. */
	add(&m1, "a", "t.ok", 1, NULL, NULL);
	add(&m1, "b", "t.fail", 1, NULL, NULL);
	add(&m1, "c", "t.reject", 1, NULL, NULL);
	add(&m1, "d", "t.nobody", 1, NULL, NULL);
	add(&m1, "e", NULL, 1, NULL, "event of 3 bytes: not a CloudEvent");
	add(&m1, "a", "t.ok", 2, NULL, NULL); /* a again: a duplicate */
	add(&m1, "f", "t.fail", 3, NULL, NULL);
	run_batch(&m1, false, false);

	is_int(m1.n_acked, 3,
	       "acknowledged: the done, the unhandled, the "
	       "duplicate");
	ok(index_of(m1.acked, m1.n_acked, "a") >= 0 &&
	           index_of(m1.acked, m1.n_acked, "d") >= 0,
	   "... a and d");
	i = index_of(m1.retried, m1.n_retried, "b");
	ok(i >= 0 && m1.delay[i] >= 50 && m1.delay[i] <= 150,
	   "a failure on its 1st attempt comes again after 50-150 ms (%lld)",
	   i >= 0 ? (long long)m1.delay[i] : -1LL);
	is_int(m1.n_retried, 1, "... and it alone");
	i = index_of(m1.dead, m1.n_dead, "c");
	ok(i >= 0 && strcmp(m1.reason[i], "nope") == 0,
	   "a rejection is dead-lettered with the handler's reason");
	i = index_of(m1.dead, m1.n_dead, "e");
	ok(i >= 0 && strstr(m1.reason[i], "not a readable CloudEvent") != NULL,
	   "an unreadable event is dead-lettered at once (%s)",
	   i >= 0 ? m1.reason[i] : "");
	i = index_of(m1.dead, m1.n_dead, "f");
	ok(i >= 0 && strstr(m1.reason[i], "failed 3 times (max-receive 3)"),
	   "a failure on its last attempt is dead-lettered, saying so");
	ok(has_key("ok/a"), "the done event's write is committed");
	ok(!has_key("fail/b") && !has_key("fail/f"),
	   "the failed events' writes are undone");
	is_int(n_published, 1, "the outbox published one event");
	is_str(published[0], "topic:out ok/a",
	       "... the done event's, not the failed ones'");
	is_int(counter(&svc->stats.processed), 1, "processed: 1");
	is_int(counter(&svc->stats.duplicates), 1, "duplicates: 1");
	is_int(counter(&svc->stats.ignored), 1, "ignored: 1");
	is_int(counter(&svc->stats.dead_lettered), 3, "dead-lettered: 3");
	is_int(counter(&svc->stats.malformed), 1, "malformed: 1");
	is_int(counter(&svc->stats.retried), 1, "retried: 1");

	/* A source with a redrive policy decides when to give up. */
	add(&m2, "g", "t.fail", 9, NULL, NULL);
	add(&m2, "a", "t.ok", 1, NULL, NULL);
	run_batch(&m2, false, true);
	ok(m2.n_retried == 1 && m2.n_dead == 0,
	   "a redriving source's failure comes back, never dead-lettered "
	   "here");
	ok(m2.n_acked == 1 && strcmp(m2.acked[0], "a") == 0,
	   "an id already processed is acknowledged across batches");
	is_int(n_published, 1, "... without running its handler again");

	/* FIFO: a failure holds its group's later events back, unrun. */
	add(&m3, "h1", "t.fail", 1, "g1", NULL);
	add(&m3, "h2", "t.ok", 1, "g1", NULL);
	add(&m3, "h3", "t.ok", 1, "g2", NULL);
	run_batch(&m3, true, false);
	i = index_of(m3.retried, m3.n_retried, "h2");
	ok(i >= 0 && m3.delay[i] == 0 && !has_key("ok/h2"),
	   "FIFO: a failed group's later event goes back at once, unrun");
	ok(index_of(m3.retried, m3.n_retried, "h1") >= 0,
	   "... after its failed one");
	ok(index_of(m3.acked, m3.n_acked, "h3") >= 0 && has_key("ok/h3"),
	   "... while another group goes on");

	/* FIFO: a dead-lettered event is done with; its group goes on. */
	add(&m4, "u1", NULL, 1, "g1", "event of 3 bytes: not a CloudEvent");
	add(&m4, "u2", "t.reject", 1, "g1", NULL);
	add(&m4, "u3", "t.ok", 1, "g1", NULL);
	run_batch(&m4, true, false);
	ok(index_of(m4.dead, m4.n_dead, "u1") >= 0 &&
	           index_of(m4.dead, m4.n_dead, "u2") >= 0,
	   "FIFO: an unreadable and a rejected event are dead-lettered");
	ok(index_of(m4.acked, m4.n_acked, "u3") >= 0 && has_key("ok/u3") &&
	           m4.n_retried == 0,
	   "... and their group's next event runs in the same batch");

	mesh__store_close(&svc->one);
	mesh_service_free(svc);
	test_rmtree(dir);
	mesh_shutdown();
	return tap_done();
}
