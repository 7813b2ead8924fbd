/* batch.c: the processing contract over a batch from a source (see
 * runtime.h and the README's "The service runtime"). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "be.h"
#include "partitions.h"
#include "retry.h"
#include "runtime.h"

static int64_t
backoff(const struct mesh_service *s, int attempt)
{
	return mesh__backoff_ms(s->o.retry_base_ms, s->o.retry_max_ms,
	                        attempt);
}

void
mesh__batch_init(struct batch *b)
{
	memset(b, 0, sizeof(*b));
	mesh_arena_init(&b->arena);
}

void
mesh__batch_fini(struct batch *b)
{
	mesh__undo_fini(&b->undo);
	mesh_arena_fini(&b->arena);
}

void
mesh__batch_release(struct mesh_source *src, struct batch *b)
{
	mesh_source_release(src, b->m, b->n);
	b->n = 0;
}

static bool
group_failed(const char *const *failed, size_t n, const char *group)
{
	for (size_t i = 0; group != NULL && i < n; i++) {
		if (strcmp(failed[i], group) == 0) {
			return true;
		}
	}
	return false;
}

/* A failed item: again after delay_ms, or to the dead-letter queue once
 * it has had its max-receive attempts (unless its queue redrives it
 * itself). why, when not the handler's failing, goes into the reason. */
static void
give_back(struct mesh_service *s, struct mesh_source *src, struct item *it,
          int64_t delay_ms, const char *why)
{
	it->out = OUT_RETRY;
	it->delay_ms = delay_ms;
	if (mesh__retry_exhausted(it->attempt, s->o.max_receive,
	                          mesh_source_redrives(src))) {
		it->out = OUT_DLQ;
		snprintf(it->reason, sizeof(it->reason),
		         "%s%sfailed %d times (max-receive %d)",
		         why ? why : "", why ? ": " : "", it->attempt,
		         s->o.max_receive);
	}
}

/* An event no handler takes is acknowledged and counted; its type is
 * logged at most once a minute, with how many came since, so that a
 * producer sending what nobody here handles is seen, not flooded. */
static void
unhandled_note(struct mesh_service *s, const char *type)
{
	struct unhandled *u = NULL, *oldest = &s->unhandled[0];
	int64_t now = mesh_mono_ms();
	uint64_t since = 0;
	bool log = false;

	pthread_mutex_lock(&s->unhandled_mu);
	for (size_t i = 0; i < sizeof(s->unhandled) / sizeof(*u); i++) {
		struct unhandled *e = &s->unhandled[i];
		if (strncmp(e->type, type, sizeof(e->type) - 1) == 0 &&
		    e->type[0] != '\0') {
			u = e;
			break;
		}
		if (e->logged_ms < oldest->logged_ms) {
			oldest = e;
		}
	}
	if (u == NULL) {
		u = oldest;
		snprintf(u->type, sizeof(u->type), "%s", type);
		u->logged_ms = 0;
		u->since = 0;
	}
	u->since++;
	if (u->logged_ms == 0 || now - u->logged_ms >= 60000) {
		log = true;
		since = u->since;
		u->since = 0;
		u->logged_ms = now;
	}
	pthread_mutex_unlock(&s->unhandled_mu);
	if (log) {
		mesh__svc_log(s, "warn",
		              "no handler takes events of type '%s': "
		              "acknowledged and "
		              "ignored (%" PRIu64
		              " since the last such line; at most "
		              "one a minute per type)",
		              type, since);
	}
}

/* Run one event in the batch's transaction txn; its writes are undone
 * unless its handler succeeds. Returns 0, or the LMDB error that spoilt
 * txn (the batch then runs again without this event). */
static int
run_one(struct mesh_service *s, struct store *st, struct mesh_source *src,
        MDB_txn *txn, struct mesh__undo *undo, struct mesh_arena *arena,
        struct item *it)
{
	const char *id = mesh_event_id(it->ev);
	MDB_val k = {strlen(id), (void *)id}, v;
	const struct handler *h =
	        mesh__svc_handler(s, mesh_event_type(it->ev));
	struct mesh_ctx ctx = {.s = s,
	                       .st = st,
	                       .src = src,
	                       .it = it,
	                       .txn = txn,
	                       .undo = undo};
	ProtobufCMessage *msg = NULL;
	mesh_handler_result r;
	int64_t t0, now;
	uint8_t at[8 + 128];
	int rc;

	it->out = OUT_ACK;
	if (it->m->parse_error[0] != '\0') {
		/* Retrying cannot fix bytes: to the dead-letter queue now. */
		it->out = OUT_DLQ;
		it->malformed = true;
		snprintf(it->reason, sizeof(it->reason),
		         "not a readable CloudEvent: %s", it->m->parse_error);
		return 0;
	}
	if ((rc = mdb_get(txn, st->db_processed, &k, &v)) == 0) {
		it->done = DONE_DUPLICATE;
		return 0;
	}
	if (mesh__mdb_fatal(rc)) {
		return rc;
	}
	if (h == NULL) {
		it->done = DONE_IGNORED;
		unhandled_note(s, mesh_event_type(it->ev));
		return 0;
	}
	if (h->desc != NULL &&
	    mesh_event_unpack_message(it->ev, h->desc, &arena->pb, &msg) !=
	            MESH_OK) {
		mesh_arena_reset(arena);
		it->out = OUT_DLQ;
		snprintf(it->reason, sizeof(it->reason),
		         "payload is not a valid %s: %s", h->desc->name,
		         mesh_errdetail());
		return 0;
	}
	mesh__undo_clear(undo);
	t0 = mesh__mono_ns();
	r = h->fn(&ctx, it->ev, msg, h->arg);
	mesh__stats_record(&s->stats.handler, mesh__mono_ns() - t0);
	protobuf_c_message_free_unpacked(msg, &arena->pb);
	mesh_arena_reset(arena);
	if (ctx.broken) {
		return ctx.broken;
	}
	if (r == MESH_HANDLER_OK) {
		now = mesh_wall_ms();
		mesh__be64(at, (uint64_t)now);
		memcpy(at + 8, id, k.mv_size < 128 ? k.mv_size : 128);
		v.mv_size = 8;
		v.mv_data = at;
		MDB_val ak = {8 + (k.mv_size < 128 ? k.mv_size : 128), at};
		MDB_val empty = {0, ""};
		mesh__wnote(&undo->note, st->db_processed, &k);
		mesh__wnote(&undo->note, st->db_processed_at, &ak);
		if ((rc = mdb_put(txn, st->db_processed, &k, &v, 0)) != 0 ||
		    (rc = mdb_put(txn, st->db_processed_at, &ak, &empty, 0)) !=
		            0) {
			return rc; /* LMDB fails the transaction */
		}
		it->done = DONE_PROCESSED;
		return 0;
	}
	if ((rc = mesh__undo_apply(undo, txn)) != 0) {
		return rc;
	}
	if (r == MESH_HANDLER_REJECT) {
		it->out = OUT_DLQ;
		snprintf(it->reason, sizeof(it->reason), "%s",
		         ctx.decided == MESH_HANDLER_REJECT ? ctx.reason
		                                            : "rejected");
		return 0;
	}
	give_back(s, src, it,
	          ctx.decided == MESH_HANDLER_RETRY && ctx.delay_ms > 0
	                  ? ctx.delay_ms
	                  : backoff(s, it->attempt),
	          NULL);
	return 0;
}

int
mesh__expire(MDB_txn *txn, MDB_dbi table, MDB_dbi at, int64_t before_ms, int n,
             const struct mesh__wnote *note)
{
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	int rc, done = 0;

	if ((rc = mdb_cursor_open(txn, at, &cur)) != 0) {
		return rc;
	}
	while (done < n &&
	       (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST)) == 0 &&
	       k.mv_size > 8 &&
	       (int64_t)mesh__from_be64(k.mv_data) < before_ms) {
		MDB_val id = {k.mv_size - 8, (uint8_t *)k.mv_data + 8};
		mesh__wnote(note, table, &id);
		mesh__wnote(note, at, &k);
		rc = mdb_del(txn, table, &id, NULL);
		if (rc != 0 && rc != MDB_NOTFOUND) {
			break;
		}
		if ((rc = mdb_cursor_del(cur, 0)) != 0) {
			break;
		}
		done++;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND || rc == 0 ? 0 : rc;
}

/* Forget processed ids older than the horizon, a few per batch. */
static int
prune(struct mesh_service *s, struct store *st, MDB_txn *txn,
      const struct mesh__wnote *note)
{
	return mesh__expire(txn, st->db_processed, st->db_processed_at,
	                    mesh_wall_ms() - s->o.horizon_s * 1000,
	                    PRUNE_PER_BATCH, note);
}

static void log_ev(struct mesh_service *s, const struct item *it,
                   const char *fmt, ...) MESH_PRINTF(3, 4);

static void
log_ev(struct mesh_service *s, const struct item *it, const char *fmt, ...)
{
	char trace[33], span[17];
	va_list ap;

	mesh__trace_of(it->ev, trace, span);
	va_start(ap, fmt);
	mesh__svc_vlog(s, "warn", mesh_event_id(it->ev), trace, fmt, ap);
	va_end(ap);
}

/* Settle each item with its source: acknowledge, retry later, or
 * dead-letter. Acknowledgements go in bulk, without waiting: one lost is a
 * redelivery, which the processed-id table absorbs. */
void
mesh__batch_settle(struct mesh_service *s, struct mesh_source *src,
                   struct batch *b)
{
	struct mesh_source_msg *acks[MESH_SOURCE_BATCH_MAX];
	size_t k = 0;

	for (size_t i = 0; i < b->n; i++) {
		struct item *it = &b->it[i];
		if (it->out == OUT_DLQ) {
			if (mesh_source_dead_letter(src, it->m, it->reason) ==
			    MESH_OK) {
				atomic_fetch_add(&s->stats.dead_lettered, 1);
				if (it->malformed) {
					atomic_fetch_add(&s->stats.malformed,
					                 1);
				}
				if (it->refused) {
					atomic_fetch_add(
					        &s->stats.signature_refused,
					        1);
				}
				if (it->unopened) {
					atomic_fetch_add(
					        &s->stats.sealed_refused, 1);
				}
				log_ev(s, it, "dead-lettered: %s", it->reason);
				continue; /* taken off its source */
			}
			mesh__svc_log(s, "error",
			              "event %s: dead-lettering failed (%s); "
			              "it comes "
			              "again",
			              mesh_event_id(it->ev), mesh_errdetail());
			it->out = OUT_RETRY;
			it->delay_ms = backoff(s, it->attempt);
		}
		if (it->out == OUT_ACK) {
			acks[k++] = it->m;
			continue;
		}
		if (it->out == OUT_RETRY) {
			atomic_fetch_add(&s->stats.retried, 1);
		}
		if (mesh_source_retry(src, it->m,
		                      it->out == OUT_RETRY ? it->delay_ms
		                                           : 0) != MESH_OK) {
			mesh__svc_log(s, "warn",
			              "event %s: %s; it comes again after its "
			              "visibility timeout",
			              mesh_event_id(it->ev), mesh_errdetail());
		}
	}
	mesh_source_ack(src, acks, k);
}

/* The contract: one transaction for the batch, a nested one per event,
 * one durable commit, then the outbox is published. */
void
mesh__batch_process(struct mesh_service *s, struct store *st,
                    struct mesh_source *src, struct batch *b)
{
	const char *failed[256];
	size_t nf = 0;
	MDB_txn *txn = NULL;
	uint64_t from;
	int64_t now;
	mesh_err err;
	int rc;

	atomic_fetch_add(&s->stats.received, b->n);
again:
	nf = 0;
	if ((rc = mdb_txn_begin(st->env, NULL, 0, &txn)) != 0) {
		mesh__svc_log(s, "error", "state: %s; the batch comes again",
		              mdb_strerror(rc));
		for (size_t i = 0; i < b->n; i++) {
			b->it[i].out = OUT_RETRY;
			b->it[i].delay_ms = backoff(s, b->it[i].attempt);
		}
		return;
	}
	if (st->part != NULL) {
		mesh__part_txn_begin(st->part, &b->undo);
	}
	from = mesh__outbox_last(&st->outbox, txn) + 1;
	for (size_t i = 0; i < b->n; i++) {
		struct item *it = &b->it[i];
		/* FIFO: after a failure, the group's later events go back
		 * unprocessed, so that the group keeps its order. */
		if (mesh_source_fifo(src) &&
		    group_failed(failed, nf, it->group)) {
			it->out = OUT_RETURN;
			continue;
		}
		if (!it->fixed && (rc = run_one(s, st, src, txn, &b->undo,
		                                &b->arena, it)) != 0) {
			/* This event's writes spoilt the transaction (the map
			 * is full, say): it fails alone, and the batch runs
			 * again without it. */
			char why[128];
			mdb_txn_abort(txn);
			snprintf(why, sizeof(why), "state: %s",
			         mdb_strerror(rc));
			log_ev(s, it, "%s; the batch runs again without it",
			       why);
			give_back(s, src, it, backoff(s, it->attempt), why);
			it->fixed = true;
			goto again;
		}
		/* Only an event that comes again holds its group: one
		 * dead-lettered is done with, as SQS's move to the DLQ
		 * frees the group (an unreadable event must not hold the
		 * events behind it back a round). */
		if (mesh_source_fifo(src) && it->out == OUT_RETRY &&
		    it->group != NULL) {
			failed[nf++] = it->group;
		}
	}
	if (rc == 0 && (rc = prune(s, st, txn, &b->undo.note)) == 0) {
		rc = mesh__outbox_forget(&st->outbox, txn);
	}
	if (rc == 0 && st->part != NULL &&
	    (err = mesh__part_txn_log(s, st->part, txn)) != MESH_OK) {
		/* Not logged, so not committed: fenced, the events go to
		 * the partition's new owner at once. */
		mdb_txn_abort(txn);
		if (err != MESH_ESTALE) {
			mesh__svc_log(s, "error",
			              "changelog: %s; the batch comes again",
			              mesh_errdetail());
		}
		for (size_t i = 0; i < b->n; i++) {
			struct item *it = &b->it[i];
			if (err == MESH_ESTALE && !it->malformed) {
				it->out = OUT_RETURN;
			} else if (it->out == OUT_ACK) {
				it->out = OUT_RETRY;
				it->delay_ms = backoff(s, it->attempt);
			}
		}
		return;
	}
	if (rc == 0) {
		rc = mdb_txn_commit(txn);
	} else {
		mdb_txn_abort(txn);
	}
	if (rc != 0) {
		mesh__svc_log(s, "error",
		              "state: commit failed (%s); the batch comes "
		              "again",
		              mdb_strerror(rc));
		for (size_t i = 0; i < b->n; i++) {
			if (b->it[i].out == OUT_ACK) {
				b->it[i].out = OUT_RETRY;
				b->it[i].delay_ms =
				        backoff(s, b->it[i].attempt);
			}
		}
		return;
	}
	now = mesh__wall_ns();
	for (size_t i = 0; i < b->n; i++) {
		int64_t sec;
		int32_t nsec;
		if (b->it[i].out != OUT_ACK) {
			continue;
		}
		atomic_fetch_add(b->it[i].done == DONE_PROCESSED
		                         ? &s->stats.processed
		                 : b->it[i].done == DONE_DUPLICATE
		                         ? &s->stats.duplicates
		                         : &s->stats.ignored,
		                 1);
		/* Publish to commit, when the producer's clock says a
		 * time since 1970 and not after ours. */
		if (mesh_event_time(b->it[i].ev, &sec, &nsec) && sec >= 0 &&
		    sec <= now / 1000000000) {
			mesh__stats_record(&s->stats.commit,
			                   now - (sec * 1000000000 + nsec));
		}
	}
	mesh__outbox_flush(&st->outbox, from);
}

bool
mesh__sig_refused(struct mesh_service *s, const struct source *src,
                  const struct mesh_event *ev, char *reason, size_t size)
{
	if (src == NULL || src->verifier == NULL || ev == NULL ||
	    !mesh_verifier_required(src->verifier)) {
		return false;
	}
	return mesh_verifier_check(src->verifier, ev, reason, size) !=
	       MESH_SIG_OK;
}

/* Open the sealed events that passed verification (a signature covers
 * the sealed form: verify, then open); what does not open is
 * dead-lettered with its reason, never retried. */
static void
batch_open(struct mesh_service *s, struct batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		struct item *it = &b->it[i];
		if (it->out == OUT_DLQ || it->ev == NULL ||
		    it->m->parse_error[0] != '\0' ||
		    !mesh_event_sealed(it->ev)) {
			continue;
		}
		if (s->keyring == NULL) {
			snprintf(it->reason, sizeof(it->reason),
			         "sealed: no identity to open it (set "
			         "MESH_IDENTITY to a reader's seed file)");
		} else if (mesh_keyring_open(s->keyring, it->ev, it->reason,
		                             sizeof(it->reason)) == MESH_OK) {
			continue;
		}
		it->out = OUT_DLQ;
		it->fixed = true;
		it->unopened = true;
	}
}

void
mesh__batch_verify(struct mesh_service *s, const struct source *src,
                   struct batch *b)
{
	if (src == NULL || src->verifier == NULL ||
	    !mesh_verifier_required(src->verifier)) {
		batch_open(s, b);
		return;
	}
	for (size_t i = 0; i < b->n; i++) {
		struct item *it = &b->it[i];
		if (it->m->parse_error[0] != '\0' ||
		    mesh_verifier_check(src->verifier, it->ev, it->reason,
		                        sizeof(it->reason)) == MESH_SIG_OK) {
			continue;
		}
		it->out = OUT_DLQ;
		it->fixed = true;
		it->refused = true;
	}
	batch_open(s, b);
}

mesh_err
mesh__verifiers_open(struct mesh_service *s)
{
	char target[MESH_SUBSCRIPTION_ID_MAX + 16];
	mesh_err err;

	if (s->keyring == NULL && s->o.identity_file != NULL &&
	    ((err = mesh_identity_load(s->name, s->o.identity_file,
	                               &s->seal_id)) != MESH_OK ||
	     (err = mesh_keyring_new(s->c, s->seal_id, &s->keyring)) !=
	             MESH_OK)) {
		mesh_identity_free(s->seal_id);
		s->seal_id = NULL;
		return err;
	}
	for (size_t i = 0; i < s->n_src; i++) {
		struct source *src = &s->src[i];
		if (src->verifier != NULL) {
			continue;
		}
		snprintf(target, sizeof(target), "%s:%s",
		         src->kind == SRC_TOPIC ? "topic" : "queue",
		         src->name);
		if ((err = mesh_verifier_new(s->c, target,
		                             s->o.horizon_s * 1000,
		                             &src->verifier)) != MESH_OK) {
			mesh__verifiers_close(s);
			return err;
		}
	}
	return MESH_OK;
}

void
mesh__verifiers_close(struct mesh_service *s)
{
	for (size_t i = 0; i < s->n_src; i++) {
		mesh_verifier_free(s->src[i].verifier);
		s->src[i].verifier = NULL;
	}
	mesh_keyring_free(s->keyring);
	s->keyring = NULL;
	mesh_identity_free(s->seal_id);
	s->seal_id = NULL;
}

/* Take a batch: up to batch_size, waiting up to a second for the first
 * and up to batch_window_ms for the rest. */
mesh_err
mesh__batch_fetch(struct mesh_service *s, struct mesh_source *src,
                  struct batch *b)
{
	size_t want = (size_t)s->o.batch_size, got = 0;
	int64_t deadline = mesh_mono_ms() + s->o.batch_window_ms;
	mesh_err err;

	b->n = 0;
	err = mesh_source_fetch(src, want, FETCH_WAIT_MS, b->m, &got, NULL);
	b->n = got;
	while (err == MESH_OK && got > 0 && b->n < want &&
	       mesh_mono_ms() < deadline) {
		err = mesh_source_fetch(src, want - b->n,
		                        deadline - mesh_mono_ms(), b->m + b->n,
		                        &got, NULL);
		b->n += got;
	}
	for (size_t i = 0; i < b->n; i++) {
		b->it[i] = (struct item){.ev = b->m[i].event,
		                         .attempt = (int)b->m[i].attempt,
		                         .group = b->m[i].group_id,
		                         .m = &b->m[i]};
	}
	return err;
}
