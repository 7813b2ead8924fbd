/* daemon.c: the firing loop and the missed-firing policy of
 * mesh-scheduler (the change log it follows is changelog.c's). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "api.h"
#include "changelog.h"
#include "daemon.h"
#include "mesh/clock.h"
#include "mesh/err.h"
#include "mesh/queue.h"
#include "mesh/topic.h"
#include "mesh/pbjson.h"
#include "mesh/wire.h"
#include "table.h"

#define MAX_CATCH_UP    10000    /* missed firings fired at most, policy all */
#define MAX_MISSED_SCAN 10000000 /* missed firings looked at, at most */

/* ---- the replica -------------------------------------------------------- */

#define FETCH_MAX     1000  /* change-log messages at once (MaxAckPending) */
#define FIRE_MAX      20000 /* firings published in one round */
#define LEAD_MS       20    /* firings are made ready this much before */
#define CATCH_UP_IDLE 50    /* empty fetches (200 ms) before starting anyway */

/* One firing on its way: the schedule read from LMDB, the event made of
 * it, the outcome of its send. */
struct firing {
	struct mesh_sched_entry *e;
	struct mesh_schedule s;
	bool loaded;
	bool retry; /* a retry of a failed firing, not the scheduled one */
	bool done;  /* sent (or failed) */
	int64_t when;
	int attempt;
	const char *why;
	struct mesh_event *ev;
	struct mesh_queue_sent sent;
};

struct replica {
	struct mesh_conn *c;
	struct mesh_sched_store *st;
	const char *id;
	struct mesh_sched_table t;
	uint64_t applied; /* the change-log sequence in LMDB */
	struct {
		char name[MESH_QUEUE_NAME_MAX + 1];
		struct mesh_queue *q;
	} queues[64];
	size_t n_queues;
	mesh_sched_log_fn log;
	void *log_arg;
};

static int64_t
now_s(void)
{
	return (int64_t)time(NULL);
}

/* One JSON line per event, for humans and log shippers. */
static void
log_line(const struct replica *r, const char *event, const char *schedule,
         const char *detail)
{
	char iso[32];
	json_t *j;
	char *line;

	if (r->log == NULL) {
		return;
	}
	mesh_sched_format(now_s(), iso);
	j = json_pack("{s:s, s:s, s:s, s:s, s:s}", "time", iso, "replica",
	              r->id, "event", event, "schedule",
	              schedule ? schedule : "", "detail",
	              detail ? detail : "");
	line = j ? json_dumps(j, JSON_COMPACT) : NULL;
	if (line != NULL) {
		r->log(line, r->log_arg);
	}
	free(line);
	json_decref(j);
}

static struct mesh_queue *
queue_of(struct replica *r, const char *name)
{
	for (size_t i = 0; i < r->n_queues; i++) {
		if (strcmp(r->queues[i].name, name) == 0) {
			return r->queues[i].q;
		}
	}
	if (r->n_queues == sizeof(r->queues) / sizeof(r->queues[0])) {
		mesh_queue_close(r->queues[0].q);
		memmove(&r->queues[0], &r->queues[1],
		        (r->n_queues - 1) * sizeof(r->queues[0]));
		r->n_queues--;
	}
	struct mesh_queue *q = NULL;
	if (mesh_queue_open(r->c, name, &q) != MESH_OK) {
		return NULL;
	}
	snprintf(r->queues[r->n_queues].name,
	         sizeof(r->queues[r->n_queues].name), "%s", name);
	r->queues[r->n_queues++].q = q;
	return q;
}

/* The event of a firing: its id is the firing's, the same on every
 * replica. */
static mesh_err
make_event(const struct replica *r, const struct mesh_schedule *s,
           int64_t when, int attempt, const char *error,
           struct mesh_event **out)
{
	char id[37], iso[32], source[96];
	struct mesh_event *ev = NULL;
	char *body = mesh_schedule_render(s, when, attempt);
	mesh_err err;

	mesh_schedule_firing_id(s->name, when, id);
	mesh_sched_format(when, iso);
	snprintf(source, sizeof(source), "mesh-scheduler/%s", r->id);
	err = body == NULL
	              ? mesh_err_set(MESH_ENOMEM, "schedule '%s'", s->name)
	              : mesh_event_new(s->type, source, &ev);
	if (err == MESH_OK && (err = mesh_event_set_id(ev, id)) == MESH_OK &&
	    (err = s->json_body
	                   ? mesh_pbjson_set_event_data(ev, s->type, body,
	                                                strlen(body))
	                   : mesh_event_set_text(ev, body, strlen(body))) ==
	            MESH_OK &&
	    (err = mesh_event_attr_set(ev, "schedule", "String", s->name,
	                               strlen(s->name))) == MESH_OK) {
		err = mesh_event_attr_set(ev, "scheduledTime", "String", iso,
		                          strlen(iso));
	}
	if (err == MESH_OK) {
		err = mesh_schedule_set_attrs(s, ev);
	}
	if (err == MESH_OK && error != NULL) {
		err = mesh_event_attr_set(ev, "error", "String", error,
		                          strlen(error));
	}
	free(body);
	if (err != MESH_OK) {
		mesh_event_free(ev);
		return err;
	}
	*out = ev;
	return MESH_OK;
}

/* Send the firings f[first..n) whose target is `target` ("queue:NAME"),
 * pipelined. */
static void
send_to_queue(struct replica *r, struct firing *f, size_t n, size_t first,
              const char *target)
{
	const char *name = target + 6;
	struct mesh_queue_entry *qe = calloc(n - first, sizeof(*qe));
	struct mesh_queue_sent *sent = calloc(n - first, sizeof(*sent));
	size_t *idx = calloc(n - first, sizeof(*idx)), k = 0;
	struct mesh_queue *q = queue_of(r, name);
	mesh_err err = MESH_OK;

	if (qe == NULL || sent == NULL || idx == NULL) {
		err = mesh_err_set(MESH_ENOMEM, "queue '%s'", name);
	} else if (q == NULL) {
		err = mesh_err_set(MESH_ENOTFOUND,
		                   "queue '%s': does not exist", name);
	}
	for (size_t i = first; i < n; i++) {
		struct firing *x = &f[i];
		char *id = x->sent.message_id; /* scratch until sent */
		if (x->done || x->ev == NULL ||
		    strcmp(x->s.target, target) != 0) {
			continue;
		}
		x->done = true;
		if (err != MESH_OK) {
			x->sent.err = err;
			snprintf(x->sent.error, sizeof(x->sent.error), "%s",
			         mesh_errdetail());
			continue;
		}
		qe[k] = (struct mesh_queue_entry){.event = x->ev,
		                                  .delay_s = -1};
		if (mesh_queue_attrs(q)->fifo) {
			mesh_schedule_firing_id(x->s.name, x->when, id);
			qe[k].group_id = x->s.name;
			qe[k].dedup_id = id;
		}
		idx[k++] = i;
	}
	if (k > 0 && mesh_queue_send_many(q, qe, k, sent) != MESH_OK) {
		for (size_t i = 0; i < k; i++) {
			sent[i].err = MESH_ENOMEM;
			snprintf(sent[i].error, sizeof(sent[i].error), "%s",
			         mesh_errdetail());
		}
	}
	for (size_t i = 0; i < k; i++) {
		f[idx[i]].sent = sent[i];
	}
	free(qe);
	free(sent);
	free(idx);
}

/* Send the firings f[first..n) whose target is `target` ("topic:NAME"),
 * in batches of 10 (FIFO topics: group = the schedule, de-duplication id
 * = the firing's id, as for queues). */
static void
send_to_topic(struct replica *r, struct firing *f, size_t n, size_t first,
              const char *target)
{
	struct mesh_topic *t = NULL;
	struct mesh_topic_entry e[MESH_TOPIC_BATCH_MAX];
	struct mesh_topic_published p[MESH_TOPIC_BATCH_MAX];
	char ids[MESH_TOPIC_BATCH_MAX][24], dedup[MESH_TOPIC_BATCH_MAX][37];
	size_t idx[MESH_TOPIC_BATCH_MAX], k = 0;
	mesh_err err = mesh_topic_open(r->c, target + 6, &t);

	for (size_t i = first; i <= n; i++) {
		struct firing *x = i < n ? &f[i] : NULL;
		if (x != NULL && (x->done || x->ev == NULL ||
		                  strcmp(x->s.target, target) != 0)) {
			continue;
		}
		if (x != NULL) {
			x->done = true;
			if (err != MESH_OK) {
				x->sent.err = err;
				snprintf(x->sent.error, sizeof(x->sent.error),
				         "%s", mesh_errdetail());
				continue;
			}
			snprintf(ids[k], sizeof(ids[k]), "f%zu", k);
			e[k] = (struct mesh_topic_entry){.id = ids[k],
			                                 .event = x->ev};
			if (mesh_topic_attrs(t)->fifo) {
				mesh_schedule_firing_id(x->s.name, x->when,
				                        dedup[k]);
				e[k].group_id = x->s.name;
				e[k].dedup_id = dedup[k];
			}
			idx[k++] = i;
		}
		if (k == MESH_TOPIC_BATCH_MAX || (x == NULL && k > 0)) {
			mesh_err berr = mesh_topic_publish_batch(t, e, k, p);
			for (size_t j = 0; j < k; j++) {
				struct mesh_queue_sent *s = &f[idx[j]].sent;
				memset(s, 0, sizeof(*s));
				s->err = berr != MESH_OK ? berr : p[j].err;
				snprintf(s->error, sizeof(s->error), "%s",
				         berr != MESH_OK ? mesh_errdetail()
				                         : p[j].error);
				snprintf(s->message_id, sizeof(s->message_id),
				         "%s", p[j].message_id);
				s->duplicate = p[j].duplicate;
			}
			k = 0;
		}
	}
	mesh_topic_close(t);
}

/* The one place that knows the kinds of target: send every firing made
 * into an event. */
static void
send_to_targets(struct replica *r, struct firing *f, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char target[sizeof(f[i].s.target)];
		if (f[i].done || f[i].ev == NULL) {
			continue;
		}
		snprintf(target, sizeof(target), "%s", f[i].s.target);
		if (strncmp(target, "queue:", 6) == 0) {
			send_to_queue(r, f, n, i, target);
		} else if (strncmp(target, "topic:", 6) == 0) {
			send_to_topic(r, f, n, i, target);
		} else {
			f[i].done = true;
			f[i].sent.err = MESH_EINVAL;
			snprintf(f[i].sent.error, sizeof(f[i].sent.error),
			         "target '%.200s': not a queue or topic",
			         target);
		}
	}
}

/* Record a firing's outcome, here (in txn) and for the other replicas
 * (published without waiting: de-duplicated like the firing itself). */
static void
record(struct replica *r, struct mesh_sched_txn *txn, const char *name,
       int64_t when, const char *outcome, bool failed)
{
	char id[37], rec[400], subj[128];
	natsMsg *m = NULL;

	log_line(r, failed ? "failed" : "fired", name, outcome);
	if (txn != NULL) {
		mesh_sched_txn_set_fired(txn, name, when, outcome);
	}
	mesh_schedule_firing_id(name, when, id);
	snprintf(subj, sizeof(subj), MESH_FIRINGS_PREFIX "%s", name);
	snprintf(rec, sizeof(rec), "%" PRId64 " %.300s", when, outcome);
	if (natsMsg_Create(&m, subj, NULL, rec, (int)strlen(rec)) == NATS_OK &&
	    natsMsgHeader_Set(m, "Nats-Msg-Id", id) == NATS_OK) {
		js_PublishMsgAsync(mesh_conn_js(r->c), &m, NULL);
	}
	natsMsg_Destroy(m); /* NULL when the publish took it */
}

/* Give a failed firing up: to the dead-letter queue if there is one. */
static void
give_up(struct replica *r, struct mesh_sched_txn *txn,
        const struct mesh_schedule *s, int64_t when, int attempts,
        const char *error)
{
	char iso[32], outcome[400];
	struct mesh_queue_sent sent;
	struct mesh_queue_entry qe = {.delay_s = -1};
	struct mesh_queue *q = s->dlq[0] ? queue_of(r, s->dlq) : NULL;
	struct mesh_event *ev = NULL;
	char id[37];
	bool dead = false;

	char source[MESH_QUEUE_NAME_MAX + 16];
	struct mesh_dead_letter dl = {.source = source,
	                              .reason = error,
	                              .receive_count = (uint64_t)attempts};

	snprintf(source, sizeof(source), "schedule:%s", s->name);
	mesh_sched_format(when, iso);
	if (q != NULL &&
	    make_event(r, s, when, attempts, error, &ev) == MESH_OK) {
		qe.event = ev;
		qe.dead_letter = &dl;
		if (mesh_queue_attrs(q)->fifo) {
			mesh_schedule_firing_id(s->name, when, id);
			qe.group_id = s->name;
			qe.dedup_id = id;
		}
		dead = mesh_queue_send(q, &qe, &sent) == MESH_OK;
		mesh_event_free(ev);
	}
	if (dead) {
		snprintf(outcome, sizeof(outcome),
		         "%s: gave up after %d attempts (%.200s); "
		         "dead-lettered to %s",
		         iso, attempts, error, s->dlq);
	} else {
		snprintf(outcome, sizeof(outcome),
		         "%s: gave up after %d attempts (%.200s)%s", iso,
		         attempts, error,
		         s->dlq[0] ? "; the dead-letter queue failed too"
		                   : "");
	}
	record(r, txn, s->name, when, outcome, true);
}

/* The outcome of one firing: recorded, or a retry arranged, or held, or
 * given up when the retries or the event's age are used up. A schedule
 * retries one firing at a time; a later one that fails meanwhile is held
 * (true): it is tried again with the retry, and the schedule goes no
 * further until both are sent, so a broker down for a while makes the
 * firings of the outage late, in order, not lost. */
static bool
judge(struct replica *r, struct mesh_sched_txn *txn, struct firing *x)
{
	struct mesh_sched_entry *e = x->e;
	char iso[32], outcome[400];

	mesh_sched_format(x->when, iso);
	if (x->sent.err == MESH_OK) {
		snprintf(outcome, sizeof(outcome), "%s %s: sent %s%s%s",
		         x->why, iso, x->sent.message_id,
		         x->sent.duplicate ? " (another replica sent it first)"
		                           : "",
		         x->attempt > 1 ? " on a retry" : "");
		record(r, txn, x->s.name, x->when, outcome, false);
		if (e->retry_fire == x->when) {
			e->retry_fire = 0;
		}
		return false;
	}
	if (x->attempt <= x->s.retry_max &&
	    now_s() - x->when < x->s.max_age_s) {
		int64_t backoff =
		        x->attempt < 7 ? (int64_t)1 << (x->attempt - 1) : 60;
		if (e->retry_fire != 0 && e->retry_fire != x->when) {
			snprintf(outcome, sizeof(outcome),
			         "%s %s: failed (%.200s); held until the "
			         "firing being retried is sent",
			         x->why, iso, x->sent.error);
			log_line(r, "held", x->s.name, outcome);
			return true;
		}
		e->retry_fire = x->when;
		e->attempt = (uint16_t)(x->attempt + 1);
		e->retry_at = now_s() + (backoff > 60 ? 60 : backoff);
		snprintf(outcome, sizeof(outcome),
		         "%s %s: attempt %d failed (%.200s); retrying in %lld "
		         "s",
		         x->why, iso, x->attempt, x->sent.error,
		         (long long)(e->retry_at - now_s()));
		log_line(r, "retrying", x->s.name, outcome);
		return false;
	}
	if (e->retry_fire == x->when) {
		e->retry_fire = 0;
	}
	give_up(r, txn, &x->s, x->when, x->attempt, x->sent.error);
	return false;
}

/* Set an entry's next firing: the first after `after`. */
static void
plan(struct mesh_sched_entry *e, const struct mesh_schedule *s,
     const struct mesh_tz *tz, int64_t after)
{
	int64_t t;

	e->fire = 0;
	if (s->enabled && mesh_schedule_next(s, tz, after, &t) == MESH_OK) {
		e->fire = t;
		e->at = t + mesh_schedule_window_offset(s, t);
	}
}

/* Fire f[0..n), due at `due`: read each schedule from LMDB, make the
 * events, send them all at once (not before `due`), then judge and record
 * every outcome in one transaction and plan each schedule's next firing. */
static void
fire_round(struct replica *r, struct firing *f, size_t n, int64_t due)
{
	struct mesh_sched_txn *txn = NULL;
	const char *json;
	size_t len;

	if (mesh_sched_txn_begin(r->st, false, &txn) == MESH_OK) {
		for (size_t i = 0; i < n; i++) {
			f[i].loaded =
			        mesh_sched_txn_def(txn, f[i].e->name, &json,
			                           &len) == MESH_OK &&
			        mesh_schedule_from_json(json, len, &f[i].s) ==
			                MESH_OK;
		}
		mesh_sched_txn_abort(txn);
	}
	for (size_t i = 0; i < n; i++) {
		if (f[i].loaded && !f[i].retry && f[i].e->missed) {
			f[i].why = f[i].s.missed == MESH_MISSED_ALL
			                   ? "missed (all fired)"
			                   : "missed (latest of those missed "
			                     "fired)";
		}
		if (f[i].loaded &&
		    make_event(r, &f[i].s, f[i].when, f[i].attempt, NULL,
		               &f[i].ev) != MESH_OK) {
			f[i].done = true;
			f[i].sent.err = MESH_ENOMEM;
			snprintf(f[i].sent.error, sizeof(f[i].sent.error),
			         "%s", mesh_errdetail());
		}
	}
	if (due * 1000 > mesh_wall_ms()) {
		/* Ready early; sent at the wall-clock instant they name. */
		struct timespec ts = {.tv_sec = (time_t)due};
		clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &ts, NULL);
	}
	send_to_targets(r, f, n);
	txn = NULL;
	mesh_sched_txn_begin(r->st, true, &txn);
	for (size_t i = 0; i < n; i++) {
		struct firing *x = &f[i];
		const struct mesh_tz *tz;
		if (!x->loaded) {
			/* Deleted (its change comes next) or unreadable:
			 * not due again. */
			x->e->fire = x->e->retry_fire = 0;
			continue;
		}
		if (judge(r, txn, x)) {
			/* Held: again with the retry, from where it is. */
			x->e->at = x->e->retry_at;
			continue;
		}
		if (!x->retry && x->e->fire == x->when) {
			x->e->fire = 0;
			if (mesh_tz_shared(x->s.tz, &tz) == MESH_OK) {
				plan(x->e, &x->s, tz, x->when);
			}
			x->e->missed = x->e->missed && x->e->fire != 0 &&
			               x->e->fire < now_s();
			if (x->e->fire == 0 && x->s.delete_after) {
				mesh_schedules_delete(r->c, x->s.name);
			}
		}
	}
	if (txn != NULL && mesh_sched_txn_commit(txn) != MESH_OK) {
		log_line(r, "store-failed", NULL, mesh_errdetail());
	}
	for (size_t i = 0; i < n; i++) {
		mesh_sched_table_update(&r->t, f[i].e);
		mesh_event_free(f[i].ev);
		if (f[i].loaded) {
			mesh_schedule_fini(&f[i].s);
		}
	}
}

/* Fire what is due by `now` (Unix seconds; at most LEAD_MS ahead), FIRE_MAX
 * at most. */
static void
fire_due(struct replica *r, int64_t now)
{
	struct mesh_sched_entry *e;
	struct firing *f = NULL;
	size_t n = 0, cap = 0;

	while (n + 2 <= FIRE_MAX && (e = mesh_sched_table_pop(&r->t, now))) {
		if (n + 2 > cap) {
			size_t nc = cap ? cap * 2 : 64;
			struct firing *nf = realloc(f, nc * sizeof(*nf));
			if (nf == NULL) {
				mesh_sched_table_update(&r->t, e);
				break;
			}
			f = nf;
			cap = nc;
		}
		if (e->retry_fire != 0 && e->retry_at <= now) {
			f[n++] = (struct firing){.e = e,
			                         .retry = true,
			                         .when = e->retry_fire,
			                         .attempt = e->attempt,
			                         .why = "retried"};
		}
		if (e->fire != 0 && e->at <= now) {
			f[n++] = (struct firing){.e = e,
			                         .when = e->fire,
			                         .attempt = 1,
			                         .why = "scheduled"};
		}
		if (n == 0 || f[n - 1].e != e) {
			mesh_sched_table_update(&r->t, e); /* nothing due */
		}
	}
	if (n > 0) {
		fire_round(r, f, n, now);
	}
	free(f);
}

/* ---- schedules into the table ------------------------------------------- */

/* Take a schedule into the table. At start (at_start), its missed firings
 * follow its policy: the latest or all of them are due at once (fired by
 * the loop, oldest first), or they are skipped (noted in txn). `last` is
 * its last firing, 0 for none. */
static void
adopt(struct replica *r, struct mesh_sched_txn *txn,
      const struct mesh_schedule *s, int64_t last, bool at_start)
{
	static int64_t ring[MAX_CATCH_UP];
	struct mesh_sched_entry *e;
	const struct mesh_tz *tz;
	int64_t now = now_s(), t;
	uint64_t n = 0;

	if (mesh_sched_table_add(&r->t, s->name, &e) != MESH_OK) {
		log_line(r, "invalid", s->name, mesh_errdetail());
		return;
	}
	e->fire = e->retry_fire = 0;
	e->missed = false;
	if (mesh_tz_shared(s->tz, &tz) != MESH_OK) {
		log_line(r, "invalid", s->name, mesh_errdetail());
		mesh_sched_table_remove(&r->t, e);
		return;
	}
	if (last == 0) {
		/* Never fired: from its creation (or now, when that is
		 * older than the missed policy should reach back). */
		last = s->created > 0 ? s->created : now;
	}
	if (at_start && s->enabled) {
		/* The missed firings, counted all; the latest MAX_CATCH_UP
		 * of them kept (a ring), for policy all. */
		for (t = last; n < MAX_MISSED_SCAN &&
		               mesh_schedule_next(s, tz, t, &t) == MESH_OK &&
		               t < now;) {
			ring[n++ % MAX_CATCH_UP] = t;
		}
	}
	if (n > 0 && s->missed != MESH_MISSED_SKIP) {
		uint64_t from =
		        s->missed == MESH_MISSED_ALL && n > MAX_CATCH_UP
		                ? n - MAX_CATCH_UP
		                : 0;
		if (from > 0) {
			char note[96];
			snprintf(note, sizeof(note),
			         "missed %llu; only the latest %d fired",
			         (unsigned long long)n, MAX_CATCH_UP);
			log_line(r, "skipped", s->name, note);
		}
		if (s->missed == MESH_MISSED_LATEST) {
			from = n - 1;
		}
		e->fire = ring[from % MAX_CATCH_UP];
		e->at = e->fire; /* late already: no window */
		e->missed = true;
	} else {
		if (n > 0) {
			char note[96];
			last = ring[(n - 1) % MAX_CATCH_UP];
			snprintf(note, sizeof(note),
			         "missed %llu, skipped by policy",
			         (unsigned long long)n);
			log_line(r, "skipped", s->name, note);
			if (txn != NULL) {
				mesh_sched_txn_set_fired(txn, s->name, last,
				                         note);
			}
		}
		if (last < now - 1 && !at_start) {
			last = now -
			       1; /* a changed schedule starts from now */
		}
		plan(e, s, tz, last);
	}
	if (mesh_sched_table_update(&r->t, e) != MESH_OK) {
		log_line(r, "invalid", s->name, mesh_errdetail());
	}
}

struct load {
	struct replica *r;
	struct mesh_sched_txn *txn;
};

static mesh_err
load_one(const struct mesh_sched_rec *rec, void *arg)
{
	struct load *l = arg;
	struct mesh_schedule s;

	if (mesh_schedule_from_json(rec->json, rec->len, &s) == MESH_OK) {
		adopt(l->r, l->txn, &s, rec->last_fired, true);
		mesh_schedule_fini(&s);
	} else {
		log_line(l->r, "invalid", NULL, mesh_errdetail());
	}
	return MESH_OK;
}

/* The last firings the other replicas recorded while this one was away,
 * into LMDB where they are later than its own: read once, at start, from
 * the firings stream (the last message of each subject). */
static void
merge_firings(struct replica *r)
{
	jsStreamInfo *si = NULL;
	natsSubscription *sub = NULL;
	struct mesh_sched_txn *txn = NULL;
	jsSubOptions so;
	uint64_t msgs = 0;
	size_t in_txn = 0;

	if (js_GetStreamInfo(&si, mesh_conn_js(r->c), MESH_FIRINGS_STREAM,
	                     NULL, NULL) == NATS_OK) {
		msgs = si->State.Msgs;
	}
	jsStreamInfo_Destroy(si);
	if (msgs == 0) {
		return;
	}
	jsSubOptions_Init(&so);
	so.Stream = MESH_FIRINGS_STREAM;
	so.Ordered = true;
	so.Config.DeliverPolicy = js_DeliverLastPerSubject;
	if (js_SubscribeSync(&sub, mesh_conn_js(r->c), MESH_FIRINGS_PREFIX "*",
	                     NULL, &so, NULL) != NATS_OK) {
		log_line(r, "store-failed", NULL,
		         "reading the firings stream");
		return;
	}
	for (;;) {
		natsMsg *m = NULL;
		jsMsgMetaData *meta = NULL;
		uint64_t pending = 0;
		const char *name;
		char buf[320];
		long long t = 0;
		int64_t mine = 0;
		int off = 0;

		if (natsSubscription_NextMsg(&m, sub, 2000) != NATS_OK) {
			break;
		}
		if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
			pending = meta->NumPending;
			jsMsgMetaData_Destroy(meta);
		}
		if (txn == NULL &&
		    mesh_sched_txn_begin(r->st, true, &txn) != MESH_OK) {
			natsMsg_Destroy(m);
			break;
		}
		name = natsMsg_GetSubject(m) + strlen(MESH_FIRINGS_PREFIX);
		snprintf(buf, sizeof(buf), "%.*s", natsMsg_GetDataLength(m),
		         natsMsg_GetData(m));
		if (sscanf(buf, "%lld %n", &t, &off) >= 1 &&
		    (mesh_sched_txn_fired(txn, name, &mine, NULL, 0) !=
		             MESH_OK ||
		     mine < t)) {
			mesh_sched_txn_set_fired(txn, name, t, buf + off);
		}
		natsMsg_Destroy(m);
		if (++in_txn == 10000 || pending == 0) {
			mesh_sched_txn_commit(txn);
			txn = NULL;
			in_txn = 0;
		}
		if (pending == 0) {
			break;
		}
	}
	if (txn != NULL) {
		mesh_sched_txn_commit(txn);
	}
	natsSubscription_Destroy(sub);
}

/* ---- the change log ----------------------------------------------------- */

/* Apply fetched change-log messages: into LMDB in one transaction with
 * the last sequence applied (so a crash before the acks repeats nothing),
 * then acknowledged, then (unless catching up at start, when the table
 * is built from LMDB afterwards) into the table. */
static void
apply_list(struct replica *r, natsMsgList *list, bool catching_up)
{
	struct mesh_sched_txn *txn = NULL;
	struct mesh_schedule *defs;
	bool *del, *ok;
	uint64_t applied = r->applied;
	mesh_err err;

	if (list->Count == 0) {
		return;
	}
	defs = calloc((size_t)list->Count, sizeof(*defs));
	del = calloc((size_t)list->Count, sizeof(*del));
	ok = calloc((size_t)list->Count, sizeof(*ok));
	if (defs == NULL || del == NULL || ok == NULL ||
	    (err = mesh_sched_txn_begin(r->st, true, &txn)) != MESH_OK) {
		log_line(r, "store-failed", NULL, mesh_errdetail());
		goto out; /* not acknowledged: delivered again */
	}
	for (int i = 0; i < list->Count; i++) {
		natsMsg *m = list->Msgs[i];
		const char *name =
		        natsMsg_GetSubject(m) + strlen(MESH_SCHEDULES_PREFIX);
		jsMsgMetaData *meta = NULL;
		uint64_t seq = 0;

		if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
			seq = meta->Sequence.Stream;
			jsMsgMetaData_Destroy(meta);
		}
		if (seq != 0 && seq <= r->applied) {
			continue; /* redelivered after a crash: in LMDB */
		}
		if (mesh_schedules_is_delete(m)) {
			del[i] = ok[i] = mesh_sched_txn_apply(txn, name, NULL,
			                                      0) == MESH_OK;
		} else if (mesh_schedule_from_json(
		                   natsMsg_GetData(m),
		                   (size_t)natsMsg_GetDataLength(m),
		                   &defs[i]) != MESH_OK) {
			log_line(r, "invalid", name, mesh_errdetail());
		} else if (mesh_sched_txn_apply(txn, name, natsMsg_GetData(m),
		                                (size_t)natsMsg_GetDataLength(
		                                        m)) == MESH_OK) {
			ok[i] = true;
		} else {
			mesh_schedule_fini(&defs[i]);
		}
		if (seq > applied) {
			applied = seq;
		}
	}
	if ((err = mesh_sched_txn_set_applied(txn, applied)) != MESH_OK) {
		mesh_sched_txn_abort(txn);
		log_line(r, "store-failed", NULL, mesh_errdetail());
		goto out;
	}
	if ((err = mesh_sched_txn_commit(txn)) != MESH_OK) {
		log_line(r, "store-failed", NULL, mesh_errdetail());
		goto out;
	}
	r->applied = applied;
	for (int i = 0; i < list->Count; i++) {
		const char *name = natsMsg_GetSubject(list->Msgs[i]) +
		                   strlen(MESH_SCHEDULES_PREFIX);
		natsMsg_Ack(list->Msgs[i], NULL);
		if (!ok[i]) {
			continue;
		}
		log_line(r, del[i] ? "deleted" : "applied", name, NULL);
		if (catching_up) {
			/* adopted from LMDB afterwards */
		} else if (del[i]) {
			struct mesh_sched_entry *e =
			        mesh_sched_table_find(&r->t, name);
			if (e != NULL) {
				mesh_sched_table_remove(&r->t, e);
			}
		} else {
			int64_t last = 0;
			mesh_sched_store_fired(r->st, name, &last, NULL, 0);
			adopt(r, NULL, &defs[i], last, false);
		}
	}
out:
	for (int i = 0; defs != NULL && i < list->Count; i++) {
		if (ok[i] && !del[i]) {
			mesh_schedule_fini(&defs[i]);
		}
	}
	free(defs);
	free(del);
	free(ok);
}

mesh_err
mesh_scheduler_run(struct mesh_conn *c, struct mesh_sched_store *st,
                   const char *id, volatile sig_atomic_t *stop,
                   mesh_sched_log_fn log, void *log_arg)
{
	struct replica r = {
	        .c = c, .st = st, .id = id, .log = log, .log_arg = log_arg};
	struct load l = {.r = &r};
	natsSubscription *sub = NULL, *api = NULL;
	jsSubOptions so;
	jsErrCode jerr = 0;
	char durable[96];
	natsStatus s;
	mesh_err err;

	if ((err = mesh_schedules_streams(c)) != MESH_OK ||
	    (err = mesh_sched_api_start(c, &api)) != MESH_OK) {
		return err;
	}
	mesh_sched_table_init(&r.t);
	snprintf(durable, sizeof(durable), "replica-%s", id);
	/* LMDB says what was applied: the consumer starts right after it,
	 * made anew, so that messages a killed run had fetched but not
	 * acknowledged do not wait out their AckWait. */
	r.applied = mesh_sched_store_applied(st);
	js_DeleteConsumer(mesh_conn_js(c), MESH_SCHEDULES_STREAM, durable,
	                  NULL, NULL);
	jsSubOptions_Init(&so);
	so.Stream = MESH_SCHEDULES_STREAM;
	so.Config.AckPolicy = js_AckExplicit;
	so.Config.DeliverPolicy = js_DeliverAll;
	if (r.applied > 0) {
		so.Config.DeliverPolicy = js_DeliverByStartSequence;
		so.Config.OptStartSeq = r.applied + 1;
	}
	so.Config.MaxAckPending = FETCH_MAX;
	/* Replicas starting together on a new cluster: its stream may not
	 * have its peers yet. */
	for (int64_t until = mesh_mono_ms() + MESH_JS_SETTLE_MS;;) {
		jerr = 0;
		s = js_PullSubscribe(&sub, mesh_conn_js(c),
		                     MESH_SCHEDULES_PREFIX "*", durable, NULL,
		                     &so, &jerr);
		if (s == NATS_OK || !mesh_js_transient(s, jerr) ||
		    mesh_mono_ms() >= until || *stop) {
			break;
		}
		nats_Sleep(250);
	}
	if (s != NATS_OK) {
		mesh_sched_api_stop(api);
		return mesh_err_nats(s, jerr, "change log consumer %s",
		                     durable);
	}
	/* The changes made while this replica was away go into LMDB first,
	 * so that the missed-firing policy is that of the latest
	 * definitions; then the table is built from LMDB. */
	for (int idle = 0; !*stop && idle < CATCH_UP_IDLE;) {
		natsMsgList list = {0};
		jsConsumerInfo *ci = NULL;
		s = natsSubscription_Fetch(&list, sub, FETCH_MAX, 200, &jerr);
		apply_list(&r, &list, true);
		natsMsgList_Destroy(&list);
		if (s == NATS_OK) {
			idle = 0;
			continue;
		}
		/* Nothing came: done, unless the consumer still has some
		 * (a slow server) */
		if (natsSubscription_GetConsumerInfo(&ci, sub, NULL, NULL) ==
		            NATS_OK &&
		    ci->NumPending == 0 && ci->NumAckPending == 0) {
			jsConsumerInfo_Destroy(ci);
			break;
		}
		jsConsumerInfo_Destroy(ci);
		idle++;
	}
	merge_firings(&r);
	if (mesh_sched_txn_begin(st, true, &l.txn) != MESH_OK) {
		l.txn = NULL;
	}
	mesh_sched_store_each(st, load_one, &l);
	if (l.txn != NULL && mesh_sched_txn_commit(l.txn) != MESH_OK) {
		log_line(&r, "store-failed", NULL, mesh_errdetail());
	}
	log_line(&r, "started", NULL, durable);
	while (!*stop) {
		struct mesh_sched_entry *first = mesh_sched_table_first(&r.t);
		int64_t wait_ms = 1000;
		natsMsgList list = {0};

		if (first != NULL) {
			int64_t due = mesh_sched_entry_due(first);
			wait_ms = due * 1000 - mesh_wall_ms();
			if (wait_ms <= LEAD_MS) {
				fire_due(&r, due > now_s() ? due : now_s());
				continue;
			}
			wait_ms -= LEAD_MS;
		}
		/* Sleep in the fetch until a change comes or a firing is
		 * nearly due; at most a second, to notice a stop. */
		wait_ms = wait_ms > 1000 ? 1000 : wait_ms;
		s = natsSubscription_Fetch(&list, sub, FETCH_MAX, wait_ms,
		                           &jerr);
		apply_list(&r, &list, false);
		natsMsgList_Destroy(&list);
		if (s != NATS_OK && s != NATS_TIMEOUT) {
			nats_Sleep(100); /* reconnecting: cnats does it */
		}
	}
	log_line(&r, "stopped", NULL, NULL);
	mesh_sched_api_stop(api);
	natsSubscription_Destroy(sub);
	mesh_sched_table_fini(&r.t);
	for (size_t i = 0; i < r.n_queues; i++) {
		mesh_queue_close(r.queues[i].q);
	}
	return MESH_OK;
}
