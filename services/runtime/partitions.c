/* partitions.c: a partitioned service (see partitions.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clog.h"
#include "mesh/lease.h"
#include "mesh/partition.h"
#include "partitions.h"

const char *const mesh__store_db_names[STORE_DBS] = {
        MESH_SERVICE_DB_STATE, "processed", "processed_at", "outbox", "meta"};

#define CTL_TICK_MS 1000

static bool
stopping(const struct mesh_service *s)
{
	return *s->stop != 0;
}

/* ---- keys ----------------------------------------------------------------
 */

int
mesh__part_of(const struct mesh_service *s, const struct mesh_event *ev,
              const char *group, char *why, size_t why_size)
{
	const char *key = NULL;
	size_t len = 0;

	if (group != NULL && group[0] != '\0') {
		key = group;
		len = strlen(group);
	} else if (s->key_fn != NULL) {
		len = s->key_fn(ev, &key, s->key_arg);
		if (len == 0 || key == NULL) {
			snprintf(why, why_size,
			         "no partition key: the service's key "
			         "function gave none for this event");
			return -1;
		}
	} else if ((key = mesh_event_subject(ev)) != NULL && key[0] != '\0') {
		len = strlen(key);
	} else {
		key = mesh_event_id(ev);
		len = strlen(key);
	}
	return mesh_partition_of(key, len, s->o.partitions);
}

/* ---- forwarding: sources to partitions --------------------------------- */

/* One forwarding pass over a fetched batch: each message to its
 * partition; the confirmed ones acknowledged at the source, the others
 * handed back at once. */
static void
forward_batch(struct mesh_service *s, const struct source *decl,
              struct mesh_source *src, struct mesh_partitioner *pt,
              struct mesh_source_msg *m, size_t n)
{
	struct mesh_source_msg *fwd[MESH_SOURCE_BATCH_MAX],
	        *acks[MESH_SOURCE_BATCH_MAX];
	int part[MESH_SOURCE_BATCH_MAX];
	bool ok[MESH_SOURCE_BATCH_MAX];
	size_t nf = 0, na = 0;
	char why[160];
	mesh_err err;

	for (size_t i = 0; i < n; i++) {
		bool refused = false;
		int k;
		if (m[i].parse_error[0] != '\0' || m[i].event == NULL) {
			/* Unreadable: its owner dead-letters it, wherever it
			 * lands; by its bytes, so that such events spread. */
			const char *data = NULL;
			int len = 0;
			if (m[i].msg != NULL) {
				data = natsMsg_GetData(m[i].msg);
				len = natsMsg_GetDataLength(m[i].msg);
			}
			k = mesh_partition_of(data ? data : "", (size_t)len,
			                      s->o.partitions);
		} else if ((refused = mesh__sig_refused(s, decl, m[i].event,
		                                        why, sizeof(why))) ||
		           (k = mesh__part_of(s, m[i].event, m[i].group_id,
		                              why, sizeof(why))) < 0) {
			/* Verified once, here, before any partition has it;
			 * refused or keyless, it goes no further. */
			if (mesh_source_dead_letter(src, &m[i], why) ==
			    MESH_OK) {
				atomic_fetch_add(&s->stats.dead_lettered, 1);
				if (refused) {
					atomic_fetch_add(
					        &s->stats.signature_refused,
					        1);
				}
				mesh__svc_log(
				        s, "warn",
				        "event %s from %s dead-lettered: %s",
				        mesh_event_id(m[i].event),
				        mesh_source_label(src), why);
			} else {
				mesh_source_retry(src, &m[i], 1000);
			}
			continue;
		}
		part[nf] = k;
		fwd[nf++] = &m[i];
	}
	if (nf == 0) {
		return;
	}
	memset(ok, 0, sizeof(ok));
	err = mesh_partitioner_forward(pt, fwd, part, nf, ok);
	if (err != MESH_OK) {
		mesh__svc_log(s, "warn",
		              "%s: forwarding to partitions: %s; what was "
		              "not stored comes again",
		              mesh_source_label(src), mesh_errdetail());
	}
	for (size_t i = 0; i < nf; i++) {
		if (ok[i]) {
			acks[na++] = fwd[i];
		} else {
			mesh_source_retry(src, fwd[i], 0);
		}
	}
	mesh_source_ack(src, acks, na);
}

static void *
forward_work(void *arg)
{
	struct worker *w = arg;
	struct mesh_service *s = w->s;
	struct mesh_source *source = NULL;
	struct mesh_partitioner *pt = NULL;
	struct mesh_source_opts so;
	struct mesh_source_msg *m = calloc(MESH_SOURCE_BATCH_MAX, sizeof(*m));
	size_t n = 0;
	mesh_err err;

	pthread_setname_np(pthread_self(), "mesh-forward");
	mesh_source_opts_init(&so);
	so.dlq = s->o.dlq;
	so.service = s->name;
	while (m != NULL && !stopping(s)) {
		err = MESH_OK;
		if (pt == NULL) {
			err = mesh_partitioner_open(s->c, s->name,
			                            s->o.partitions, &pt);
		}
		if (err == MESH_OK && source == NULL) {
			err = mesh_source_open(s->c, w->src->spec, &so,
			                       &source);
		}
		if (err == MESH_OK) {
			err = mesh_source_fetch(source,
			                        (size_t)s->o.batch_size,
			                        FETCH_WAIT_MS, m, &n, NULL);
		}
		if (err != MESH_OK) {
			mesh__svc_log(s, "warn", "%s: %s; trying again",
			              w->src->label, mesh_errdetail());
			mesh_source_close(source);
			source = NULL;
			mesh__nap_ms(s, 1000);
			continue;
		}
		if (n > 0) {
			forward_batch(s, w->src, source, pt, m, n);
			mesh_source_release(source, m, n);
		}
	}
	mesh_source_close(source);
	mesh_partitioner_close(pt);
	free(m);
	return NULL;
}

static void ctl_push(struct mesh_service *s, struct ctl_ev ev);

/* ---- a partition's write transactions ------------------------------------
 */

static void
note_write(void *arg, MDB_dbi dbi, const MDB_val *k)
{
	struct part *p = arg;
	const MDB_dbi dbs[STORE_DBS] = {p->st.db_state, p->st.db_processed,
	                                p->st.db_processed_at, p->st.db_outbox,
	                                p->st.db_meta};

	for (int i = 0; i < STORE_DBS; i++) {
		if (dbs[i] == dbi) {
			/* ENOMEM: the append then logs too little; it fails
			 * the same way first (it needs memory too). */
			(void)mesh__redo_note(&p->redo, i, k);
			return;
		}
	}
}

void
mesh__part_txn_begin(struct part *p, struct mesh__undo *undo)
{
	mesh__redo_clear(&p->redo);
	undo->note = (struct mesh__wnote){note_write, p};
	p->st.outbox.note = (struct mesh__wnote){note_write, p};
}

mesh_err
mesh__part_txn_log(struct mesh_service *s, struct part *p, MDB_txn *txn)
{
	mesh_err err;

	if (atomic_load(&p->fenced) ||
	    !mesh_lease_held(s->lease, p->k, p->epoch)) {
		atomic_fetch_add(&p->fenced_batches, 1);
		return mesh_err_set(MESH_ESTALE,
		                    "partition %d: the lease (epoch %" PRIu64
		                    ") is no longer held",
		                    p->k, p->epoch);
	}
	pthread_mutex_lock(&p->log_mu);
	err = mesh__clog_append(p->log, txn, &p->redo, p->epoch);
	pthread_mutex_unlock(&p->log_mu);
	if (err == MESH_ESTALE && !atomic_exchange(&p->fenced, true)) {
		atomic_fetch_add(&p->fenced_batches, 1);
		mesh__svc_log(
		        s, "warn",
		        "partition %d: fenced: its changelog moved past "
		        "this copy (another owner, or an append of ours "
		        "that timed out but was stored); nothing more is "
		        "committed from it: restoring again if the "
		        "lease is still ours (%s)",
		        p->k, mesh_errdetail());
		ctl_push(s, (struct ctl_ev){.k = p->k, .retake = true});
	} else if (err == MESH_ESTALE) {
		atomic_fetch_add(&p->fenced_batches, 1);
	} else if (err == MESH_OK) {
		atomic_fetch_add(&p->committed, 1);
	}
	return err;
}

/* A write transaction of the partition's own: forget what its outbox has
 * published, logged like a batch's. */
static void
part_forget_published(struct mesh_service *s, struct part *p)
{
	struct mesh__undo undo = {0};
	MDB_txn *txn = NULL;

	if (mdb_txn_begin(p->st.env, NULL, 0, &txn) != 0) {
		return;
	}
	mesh__part_txn_begin(p, &undo);
	if (mesh__outbox_forget(&p->st.outbox, txn) == 0 &&
	    mesh__part_txn_log(s, p, txn) == MESH_OK) {
		mdb_txn_commit(txn);
	} else {
		mdb_txn_abort(txn);
	}
	mesh__undo_fini(&undo);
}

/* ---- taking and giving up partitions (the controller's thread) -----------
 */

static void
part_take(struct mesh_service *s, struct part *p, uint64_t epoch)
{
	struct mesh__clog_restore_stats rs;
	char dir[sizeof(p->st.dir)];
	int64_t t0 = mesh_mono_ms();
	mesh_err err;

	snprintf(dir, sizeof(dir), "%.500s/p%d", s->o.state_dir, p->k);
	for (int tries = 0;; tries++) {
		memset(&rs, 0, sizeof(rs));
		err = mesh__clog_restore(s->c, s->name, p->k, dir,
		                         mesh__store_db_names, STORE_DBS,
		                         s->o.map_size, &rs);
		if (err == MESH_OK) {
			pthread_mutex_lock(&p->mu);
			err = mesh__store_open(s, &p->st, dir);
			pthread_mutex_unlock(&p->mu);
		}
		if (err == MESH_OK) {
			struct mesh__clog_opts co;
			mesh__clog_opts_init(&co);
			co.snapshot_records = (uint64_t)s->o.snapshot_records;
			err = mesh__clog_open(s->c, s->name, p->k, p->st.env,
			                      mesh__store_db_names, STORE_DBS,
			                      s->instance, &co, &p->log);
		}
		/* Claim only a lease still ours: a claim fences whoever
		 * appended before, so it must never outrun the lease. */
		if (err == MESH_OK &&
		    !mesh_lease_held(s->lease, p->k, epoch)) {
			err = mesh_err_set(MESH_ESTALE,
			                   "partition %d: the lease (epoch "
			                   "%" PRIu64 ") is no longer held",
			                   p->k, epoch);
		}
		if (err == MESH_OK) {
			err = mesh__clog_claim(p->log, epoch);
		}
		if (err == MESH_OK) {
			break;
		}
		mesh__clog_close(p->log);
		p->log = NULL;
		pthread_mutex_lock(&p->mu);
		if (p->st.env != NULL) {
			mesh__store_close(&p->st);
		}
		pthread_mutex_unlock(&p->mu);
		mesh__svc_log(s, err == MESH_ESTALE ? "info" : "error",
		              "partition %d: taking it: %s; %s", p->k,
		              mesh_errdetail(),
		              err == MESH_ESTALE ? "restoring again"
		                                 : "trying again in a second");
		if (stopping(s) || !mesh_lease_held(s->lease, p->k, epoch)) {
			return;
		}
		if (err != MESH_ESTALE) {
			mesh__nap_ms(s, 1000);
		}
	}
	p->epoch = epoch;
	atomic_store(&p->fenced, false);
	atomic_store(&p->restore_ms, mesh_mono_ms() - t0);
	atomic_store(&p->restored_bytes, (long long)rs.snapshot_bytes);
	atomic_store(&p->restored_records, (long long)rs.records_applied);
	atomic_store(&p->reused, rs.reused_local);
	atomic_store(&p->owned_since_ms, mesh_wall_ms());
	mesh__svc_log(s, "info",
	              "partition %d: taken (epoch %" PRIu64
	              "): restored in %" PRId64 " ms (%s, %" PRIu64
	              " snapshot bytes, %" PRIu64 " changelog records)",
	              p->k, epoch, mesh_mono_ms() - t0,
	              rs.reused_local ? "local copy reused"
	                              : "from the changelog",
	              rs.snapshot_bytes, rs.records_applied);
	/* What the previous owner committed but did not publish. */
	mesh__outbox_flush(&p->st.outbox, 0);
	atomic_store(&p->running, true);
	snprintf(p->spec, sizeof(p->spec), "partition:%s/%d", s->name, p->k);
	p->n_workers = 0;
	for (int i = 0; i < s->o.max_inflight; i++) {
		struct worker *w = &p->workers[p->n_workers];
		*w = (struct worker){.s = s,
		                     .spec = p->spec,
		                     .label = p->spec,
		                     .st = &p->st,
		                     .running = &p->running};
		if (pthread_create(&w->thread, NULL, mesh__work, w) == 0) {
			p->n_workers++;
		}
	}
}

/* Stop taking partition p's events and close its store: handed over
 * (its outbox published first), or lost (nothing more of it may commit),
 * or given up to be restored again (why names which, for the log). */
static void
part_drop(struct mesh_service *s, struct part *p, bool lost, const char *why)
{
	if (p->st.env == NULL) {
		return;
	}
	atomic_store(&p->running, false);
	if (lost) {
		atomic_store(&p->fenced, true);
	}
	for (int i = 0; i < p->n_workers; i++) {
		pthread_join(p->workers[i].thread, NULL);
	}
	p->n_workers = 0;
	if (!lost) {
		mesh__outbox_flush(&p->st.outbox, 0);
		part_forget_published(s, p);
	}
	mesh__clog_close(p->log);
	p->log = NULL;
	pthread_mutex_lock(&p->mu);
	mesh__store_close(&p->st);
	pthread_mutex_unlock(&p->mu);
	atomic_store(&p->owned_since_ms, 0);
	mesh__svc_log(s, "info", "partition %d: %s", p->k, why);
}

static void
ctl_push(struct mesh_service *s, struct ctl_ev ev)
{
	pthread_mutex_lock(&s->ctl_mu);
	if (s->ctl_n == s->ctl_cap) {
		size_t cap = s->ctl_cap ? s->ctl_cap * 2 : 64;
		struct ctl_ev *q = realloc(s->ctl_q, cap * sizeof(*q));
		if (q == NULL) {
			pthread_mutex_unlock(&s->ctl_mu);
			return; /* the lease then lapses: another takes it */
		}
		s->ctl_q = q;
		s->ctl_cap = cap;
	}
	s->ctl_q[s->ctl_n++] = ev;
	pthread_cond_signal(&s->ctl_cv);
	pthread_mutex_unlock(&s->ctl_mu);
}

static void
on_acquired(void *arg, int k, uint64_t epoch)
{
	ctl_push(arg,
	         (struct ctl_ev){.k = k, .acquire = true, .epoch = epoch});
}

static void
on_revoked(void *arg, int k, bool lost)
{
	struct mesh_service *s = arg;

	if (lost) { /* at once: nothing more may commit */
		atomic_store(&s->parts[k].fenced, true);
		atomic_store(&s->parts[k].running, false);
	}
	ctl_push(s, (struct ctl_ev){.k = k, .lost = lost});
}

/* Between events: what failed to go out before, and snapshots that are
 * due. */
static void
ctl_idle(struct mesh_service *s)
{
	for (int k = 0; k < s->o.partitions; k++) {
		struct part *p = &s->parts[k];
		if (p->st.env == NULL || !atomic_load(&p->running)) {
			continue;
		}
		mesh__outbox_flush(&p->st.outbox, 0);
		/* Appends wait while the snapshot is made and sent (the log
		 * is one writer's at a time); a snapshot is due every
		 * 100,000 records or 64 MiB of log. */
		pthread_mutex_lock(&p->log_mu);
		if (mesh__clog_snapshot_due(p->log) &&
		    !atomic_load(&p->fenced) &&
		    mesh_lease_held(s->lease, k, p->epoch) &&
		    mesh__clog_snapshot(p->log, p->st.env) != MESH_OK) {
			mesh__svc_log(s, "warn", "partition %d: snapshot: %s",
			              k, mesh_errdetail());
		}
		pthread_mutex_unlock(&p->log_mu);
	}
}

static void *
ctl_work(void *arg)
{
	struct mesh_service *s = arg;

	pthread_setname_np(pthread_self(), "mesh-parts");
	pthread_mutex_lock(&s->ctl_mu);
	while (!s->ctl_quit || s->ctl_n > 0) {
		if (s->ctl_n == 0) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += CTL_TICK_MS / 1000;
			if (pthread_cond_timedwait(&s->ctl_cv, &s->ctl_mu,
			                           &ts) != 0 &&
			    s->ctl_n == 0) {
				pthread_mutex_unlock(&s->ctl_mu);
				ctl_idle(s);
				pthread_mutex_lock(&s->ctl_mu);
			}
			continue;
		}
		struct ctl_ev ev = s->ctl_q[0];
		memmove(s->ctl_q, s->ctl_q + 1,
		        --s->ctl_n * sizeof(*s->ctl_q));
		pthread_mutex_unlock(&s->ctl_mu);
		if (ev.retake) {
			/* Fenced while the lease is ours: restore and claim
			 * again under the same epoch, if it still is. */
			struct part *p = &s->parts[ev.k];
			uint64_t epoch = p->epoch;
			part_drop(s, p, true, "given up, to restore again");
			if (!stopping(s) &&
			    mesh_lease_held(s->lease, ev.k, epoch)) {
				part_take(s, p, epoch);
			}
		} else if (ev.acquire) {
			part_take(s, &s->parts[ev.k], ev.epoch);
		} else {
			part_drop(s, &s->parts[ev.k], ev.lost,
			          ev.lost ? "lost (another instance has it)"
			                  : "handed over");
			if (!ev.lost) {
				mesh_lease_release(s->lease, ev.k);
			}
		}
		pthread_mutex_lock(&s->ctl_mu);
	}
	pthread_mutex_unlock(&s->ctl_mu);
	return NULL;
}

/* ---- observing ------------------------------------------------------------
 */

/* The changelog position its store is at (meta "clog.seq"), 0 unknown. */
static uint64_t
store_clog_seq(struct store *st)
{
	MDB_txn *txn = NULL;
	MDB_val k = {8, "clog.seq"}, v;
	uint64_t seq = 0;

	if (mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn) != 0) {
		return 0;
	}
	if (mdb_get(txn, st->db_meta, &k, &v) == 0 && v.mv_size == 8) {
		for (int i = 0; i < 8; i++) {
			seq = seq << 8 | ((const uint8_t *)v.mv_data)[i];
		}
	}
	mdb_txn_abort(txn);
	return seq;
}

json_t *
mesh__parts_json(struct mesh_service *s)
{
	json_t *a = json_array();

	for (int k = 0; k < s->o.partitions; k++) {
		struct part *p = &s->parts[k];
		uint64_t seq = 0;
		bool open;
		pthread_mutex_lock(&p->mu);
		if ((open = p->st.env != NULL)) {
			seq = store_clog_seq(&p->st);
		}
		pthread_mutex_unlock(&p->mu);
		if (!open || atomic_load(&p->owned_since_ms) == 0) {
			continue;
		}
		json_array_append_new(
		        a,
		        json_pack(
		                "{s:i, s:I, s:I, s:I, s:I, s:I, s:b, s:I, "
		                "s:I, s:I}",
		                "partition", k, "epoch", (json_int_t)p->epoch,
		                "owned_since_ms",
		                (json_int_t)atomic_load(&p->owned_since_ms),
		                "restore_ms",
		                (json_int_t)atomic_load(&p->restore_ms),
		                "restored_bytes",
		                (json_int_t)atomic_load(&p->restored_bytes),
		                "restored_records",
		                (json_int_t)atomic_load(&p->restored_records),
		                "reused_local", atomic_load(&p->reused),
		                "changelog_seq", (json_int_t)seq, "committed",
		                (json_int_t)atomic_load(&p->committed),
		                "fenced",
		                (json_int_t)atomic_load(&p->fenced_batches)));
	}
	return a;
}

size_t
mesh__parts_outbox_count(struct mesh_service *s)
{
	size_t n = 0;

	for (int k = 0; s->parts != NULL && k < s->o.partitions; k++) {
		struct part *p = &s->parts[k];
		pthread_mutex_lock(&p->mu);
		if (p->st.env != NULL) {
			n += mesh__outbox_count(&p->st.outbox);
		}
		pthread_mutex_unlock(&p->mu);
	}
	return n;
}

/* ---- running --------------------------------------------------------------
 */

/* The partition count against the mesh's record; at the first start the
 * changelog's streams are made (before the record: a start that dies in
 * between is the first again), later they must be there: a changelog
 * deleted underneath is an error, never a silent reset. */
static mesh_err
check_record(struct mesh_service *s)
{
	char stream[sizeof(MESH__CLOG_STREAM) + MESH_SERVICE_NAME_MAX];
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus st;
	int had = 0;
	mesh_err err = mesh_partitions_get(s->c, s->name, &had);

	if (err == MESH_ENOTFOUND) {
		return mesh__clog_streams_ensure(s->c, s->name);
	}
	if (err != MESH_OK) {
		return err;
	}
	snprintf(stream, sizeof(stream), "%s%s", MESH__CLOG_STREAM, s->name);
	st = js_GetStreamInfo(&si, mesh_conn_js(s->c), stream, NULL, &jerr);
	jsStreamInfo_Destroy(si);
	if (st == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
		return mesh_err_set(
		        MESH_ENOTFOUND,
		        "service '%s' has %d partitions but its changelog "
		        "stream %s is gone: their state can not be restored "
		        "on another instance; refusing to start afresh "
		        "silently (delete the service's partitions with "
		        "meshctl service delete %s to begin again)",
		        s->name, had, stream, s->name);
	}
	return st == NATS_OK ? MESH_OK
	                     : mesh_err_nats(st, jerr, "stream %s", stream);
}

mesh_err
mesh__parts_run(struct mesh_service *s)
{
	struct worker fw[MAX_SOURCES * 4];
	struct mesh_lease_opts lo;
	pthread_t ctl;
	size_t nf = 0;
	mesh_err err;

	if ((err = mesh__mkdirs(s->o.state_dir)) != MESH_OK ||
	    (err = check_record(s)) != MESH_OK ||
	    (err = mesh_partitions_ensure(s->c, s->name, s->o.partitions)) !=
	            MESH_OK) {
		return err;
	}
	if ((s->parts = calloc((size_t)s->o.partitions, sizeof(*s->parts))) ==
	    NULL) {
		return mesh_err_set(MESH_ENOMEM, "service '%s': partitions",
		                    s->name);
	}
	for (int k = 0; k < s->o.partitions; k++) {
		struct part *p = &s->parts[k];
		p->s = s;
		p->k = k;
		p->st.part = p;
		pthread_mutex_init(&p->mu, NULL);
		pthread_mutex_init(&p->log_mu, NULL);
		mesh__store_init(s, &p->st);
	}
	pthread_mutex_init(&s->ctl_mu, NULL);
	pthread_cond_init(&s->ctl_cv, NULL);
	s->ctl_quit = false;
	if (pthread_create(&ctl, NULL, ctl_work, s) != 0) {
		err = mesh_err_set(MESH_ENOMEM, "service '%s': a thread",
		                   s->name);
		goto out_ctl;
	}
	mesh_lease_opts_init(&lo);
	lo.group = s->name;
	lo.instance = s->instance;
	lo.partitions = s->o.partitions;
	lo.ttl_ms = s->o.lease_ms;
	lo.acquired = on_acquired;
	lo.revoked = on_revoked;
	lo.arg = s;
	if ((err = mesh_lease_start(s->c, &lo, &s->lease)) != MESH_OK) {
		goto out_thread;
	}
	if ((err = mesh__verifiers_open(s)) != MESH_OK) {
		goto out_lease;
	}
	for (size_t i = 0; i < s->n_src; i++) {
		int n = s->src[i].fifo ? 1 : s->o.max_inflight;
		for (int k = 0; k < n && nf < sizeof(fw) / sizeof(*fw); k++) {
			fw[nf] = (struct worker){.s = s, .src = &s->src[i]};
			if (pthread_create(&fw[nf].thread, NULL, forward_work,
			                   &fw[nf]) == 0) {
				nf++;
			}
		}
	}
	mesh__svc_log(s, "info",
	              "started: %zu sources into %d partitions, state %s, "
	              "leases of %" PRId64 " ms",
	              s->n_src, s->o.partitions, s->o.state_dir,
	              s->o.lease_ms);
	while (!stopping(s)) {
		struct timespec ts = {0, 50 * 1000000};
		nanosleep(&ts, NULL);
	}
	for (size_t i = 0; i < nf; i++) {
		pthread_join(fw[i].thread, NULL);
	}
	mesh__verifiers_close(s);
out_lease:
	/* Every partition handed over at once, not after its lease. */
	mesh_lease_stop(s->lease, s->o.shutdown_ms);
	s->lease = NULL;
out_thread:
	pthread_mutex_lock(&s->ctl_mu);
	s->ctl_quit = true;
	pthread_cond_signal(&s->ctl_cv);
	pthread_mutex_unlock(&s->ctl_mu);
	pthread_join(ctl, NULL);
	for (int k = 0; k < s->o.partitions; k++) {
		part_drop(s, &s->parts[k], true, "closed at stop");
	}
out_ctl:
	pthread_mutex_destroy(&s->ctl_mu);
	pthread_cond_destroy(&s->ctl_cv);
	free(s->ctl_q);
	s->ctl_q = NULL;
	s->ctl_n = s->ctl_cap = 0;
	return err;
}

void
mesh__parts_free(struct mesh_service *s)
{
	for (int k = 0; s->parts != NULL && k < s->o.partitions; k++) {
		mesh__redo_fini(&s->parts[k].redo);
		pthread_mutex_destroy(&s->parts[k].mu);
		pthread_mutex_destroy(&s->parts[k].log_mu);
		mesh__outbox_fini(&s->parts[k].st.outbox);
	}
	free(s->parts);
	s->parts = NULL;
}
