/* daemon.c: the change log, the firing loop, and the missed-firing policy
 * of mesh-scheduler. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "daemon.h"
#include "internal.h"
#include "mesh/queue.h"
#include "mesh/wire.h"

#define HDR_OP          "Mesh-Op"
#define MAX_CATCH_UP    10000    /* missed firings fired at most, policy all */
#define MAX_MISSED_SCAN 10000000 /* missed firings looked at, at most */

struct entry {
	struct mesh_schedule s;
	const struct mesh_tz *tz; /* borrowed from the replica's zones */
	int64_t next;             /* next firing, Unix seconds; 0: none */
	bool live;
	/* A failed firing being retried (one at a time). */
	int64_t retry_fire; /* its scheduled time; 0: none */
	int64_t retry_at;
	int attempt;
};

struct replica {
	struct mesh_conn *c;
	struct mesh_sched_store *st;
	const char *id;
	struct entry *e;
	size_t n, cap;
	struct {
		char name[MESH_QUEUE_NAME_MAX + 1];
		struct mesh_queue *q;
	} queues[64];
	size_t n_queues;
	bool catching_up; /* reading the log's backlog into LMDB, at start */
	mesh_sched_log_fn log;
	void *log_arg;
	/* Zones, loaded once each: schedules share a handful. */
	struct mesh_tz **zones;
	size_t n_zones;
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

static mesh_err
ensure_stream(struct mesh_conn *c, const char *name, const char *subject)
{
	jsStreamConfig sc;
	const char *subj[] = {subject};

	jsStreamConfig_Init(&sc);
	sc.Name = name;
	sc.Subjects = subj;
	sc.SubjectsLen = 1;
	sc.Storage = js_FileStorage;
	sc.MaxMsgsPerSubject = 1;
	sc.AllowDirect = true;
	return mesh_stream_ensure(c, &sc);
}

mesh_err
mesh_schedules_streams(struct mesh_conn *c)
{
	mesh_err err = ensure_stream(c, MESH_SCHEDULES_STREAM,
	                             MESH_SCHEDULES_PREFIX "*");

	return err != MESH_OK ? err
	                      : ensure_stream(c, MESH_FIRINGS_STREAM,
	                                      MESH_FIRINGS_PREFIX "*");
}

/* The last message on a subject of a stream, or NULL. */
static natsMsg *
last_on(struct mesh_conn *c, const char *stream, const char *subject)
{
	natsMsg *m = NULL;

	if (js_GetLastMsg(&m, mesh_conn_js(c), stream, subject, NULL, NULL) !=
	    NATS_OK) {
		return NULL;
	}
	return m;
}

static bool
is_delete(natsMsg *m)
{
	const char *op = NULL;

	return natsMsgHeader_Get(m, HDR_OP, &op) == NATS_OK && op != NULL &&
	       strcmp(op, "delete") == 0;
}

mesh_err
mesh_schedules_get(struct mesh_conn *c, const char *name,
                   struct mesh_schedule *out)
{
	char subject[128];
	natsMsg *m;
	mesh_err err;

	snprintf(subject, sizeof(subject), MESH_SCHEDULES_PREFIX "%s", name);
	m = last_on(c, MESH_SCHEDULES_STREAM, subject);
	if (m == NULL || is_delete(m)) {
		natsMsg_Destroy(m);
		return mesh__seterr(MESH_ENOTFOUND,
		                    "schedule '%s': does not exist", name);
	}
	err = mesh_schedule_from_json(natsMsg_GetData(m),
	                              (size_t)natsMsg_GetDataLength(m), out);
	natsMsg_Destroy(m);
	return err;
}

mesh_err
mesh_schedules_put(struct mesh_conn *c, const struct mesh_schedule *s,
                   bool create)
{
	struct mesh_schedule old;
	char subject[128], *json = NULL;
	natsMsg *m = NULL;
	jsPubAck *ack = NULL;
	jsErrCode jerr = 0;
	natsStatus st;
	mesh_err err;

	if ((err = mesh_schedules_streams(c)) != MESH_OK) {
		return err;
	}
	err = mesh_schedules_get(c, s->name, &old);
	if (err == MESH_OK) {
		mesh_schedule_fini(&old);
		if (create) {
			return mesh__seterr(MESH_EEXIST,
			                    "schedule '%s': already exists",
			                    s->name);
		}
	} else if (err == MESH_ENOTFOUND && !create) {
		return err;
	} else if (err != MESH_ENOTFOUND) {
		return err;
	}
	if ((err = mesh_schedule_to_json(s, &json)) != MESH_OK) {
		return err;
	}
	snprintf(subject, sizeof(subject), MESH_SCHEDULES_PREFIX "%s",
	         s->name);
	st = natsMsg_Create(&m, subject, NULL, json, (int)strlen(json));
	if (st == NATS_OK) {
		st = js_PublishMsg(&ack, mesh_conn_js(c), m, NULL, &jerr);
	}
	natsMsg_Destroy(m);
	jsPubAck_Destroy(ack);
	free(json);
	if (st != NATS_OK) {
		return mesh_err_nats(st, jerr, "schedule '%s'", s->name);
	}
	return MESH_OK;
}

mesh_err
mesh_schedules_delete(struct mesh_conn *c, const char *name)
{
	struct mesh_schedule old;
	char subject[128];
	natsMsg *m = NULL;
	jsPubAck *ack = NULL;
	jsErrCode jerr = 0;
	natsStatus st;
	mesh_err err;

	if ((err = mesh_schedules_get(c, name, &old)) != MESH_OK) {
		return err;
	}
	mesh_schedule_fini(&old);
	snprintf(subject, sizeof(subject), MESH_SCHEDULES_PREFIX "%s", name);
	st = natsMsg_Create(&m, subject, NULL, NULL, 0);
	if (st == NATS_OK) {
		st = natsMsgHeader_Set(m, HDR_OP, "delete");
	}
	if (st == NATS_OK) {
		st = js_PublishMsg(&ack, mesh_conn_js(c), m, NULL, &jerr);
	}
	natsMsg_Destroy(m);
	jsPubAck_Destroy(ack);
	if (st != NATS_OK) {
		return mesh_err_nats(st, jerr, "schedule '%s'", name);
	}
	return MESH_OK;
}

mesh_err
mesh_schedules_last_fired(struct mesh_conn *c, const char *name, int64_t *fire,
                          char *outcome, size_t size)
{
	char subject[128], buf[320];
	natsMsg *m;
	int n = 0;
	long long t = 0;

	snprintf(subject, sizeof(subject), MESH_FIRINGS_PREFIX "%s", name);
	if ((m = last_on(c, MESH_FIRINGS_STREAM, subject)) == NULL) {
		return MESH_ENOTFOUND;
	}
	snprintf(buf, sizeof(buf), "%.*s", natsMsg_GetDataLength(m),
	         natsMsg_GetData(m));
	natsMsg_Destroy(m);
	if (sscanf(buf, "%lld %n", &t, &n) < 1) {
		return MESH_ENOTFOUND;
	}
	*fire = t;
	if (outcome != NULL) {
		snprintf(outcome, size, "%s", buf + n);
	}
	return MESH_OK;
}

/* ---- the replica -------------------------------------------------------- */

/* When an entry next needs the loop (a firing, with its window, or a
 * retry); 0 for never. */
static int64_t
entry_due(const struct entry *e)
{
	int64_t due = 0;

	if (!e->live) {
		return 0;
	}
	if (e->next > 0) {
		due = e->next + mesh_schedule_window_offset(&e->s, e->next);
	}
	if (e->retry_fire != 0 && (due == 0 || e->retry_at < due)) {
		due = e->retry_at;
	}
	return due;
}

static struct entry *
find(struct replica *r, const char *name)
{
	for (size_t i = 0; i < r->n; i++) {
		if (r->e[i].live && strcmp(r->e[i].s.name, name) == 0) {
			return &r->e[i];
		}
	}
	return NULL;
}

static void
drop(struct entry *e)
{
	mesh_schedule_fini(&e->s);
	memset(e, 0, sizeof(*e));
}

static mesh_err
zone(struct replica *r, const char *name, const struct mesh_tz **out)
{
	struct mesh_tz *tz, **nz;
	mesh_err err;

	for (size_t i = 0; i < r->n_zones; i++) {
		if (strcmp(mesh_tz_name(r->zones[i]), name) == 0) {
			*out = r->zones[i];
			return MESH_OK;
		}
	}
	if ((err = mesh_tz_load(name, NULL, &tz)) != MESH_OK) {
		return err;
	}
	nz = realloc(r->zones, (r->n_zones + 1) * sizeof(*nz));
	if (nz == NULL) {
		mesh_tz_free(tz);
		return mesh__seterr(MESH_ENOMEM, "time zone '%s'", name);
	}
	r->zones = nz;
	r->zones[r->n_zones++] = tz;
	*out = tz;
	return MESH_OK;
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

/* Publish one firing to `queue`. */
static mesh_err
publish(struct replica *r, struct entry *e, const char *queue, int64_t when,
        int attempt, const char *error, struct mesh_queue_sent *sent)
{
	char id[37], iso[32], source[96];
	struct mesh_event *ev = NULL;
	struct mesh_queue_entry qe = {.delay_s = -1};
	struct mesh_queue *q;
	char *body = mesh_schedule_render(&e->s, when, attempt);
	mesh_err err;

	mesh_schedule_firing_id(e->s.name, when, id);
	mesh_sched_format(when, iso);
	snprintf(source, sizeof(source), "mesh-scheduler/%s", r->id);
	err = body == NULL ? MESH_ENOMEM
	                   : mesh_event_new(e->s.type, source, &ev);
	if (err == MESH_OK && (err = mesh_event_set_id(ev, id)) == MESH_OK &&
	    (err = mesh_event_set_text(ev, body, strlen(body))) == MESH_OK &&
	    (err = mesh_event_attr_set(ev, "schedule", "String", e->s.name,
	                               strlen(e->s.name))) == MESH_OK) {
		err = mesh_event_attr_set(ev, "scheduledTime", "String", iso,
		                          strlen(iso));
	}
	if (err == MESH_OK && error != NULL) {
		err = mesh_event_attr_set(ev, "error", "String", error,
		                          strlen(error));
	}
	if (err == MESH_OK) {
		if ((q = queue_of(r, queue)) == NULL) {
			err = mesh__seterr(MESH_ENOTFOUND,
			                   "queue '%s': does not exist",
			                   queue);
		} else {
			qe.event = ev;
			if (mesh_queue_attrs(q)->fifo) {
				qe.group_id = e->s.name;
				qe.dedup_id = id;
			}
			err = mesh_queue_send(q, &qe, sent);
		}
	}
	mesh_event_free(ev);
	free(body);
	return err;
}

/* Record a firing's outcome, here and for the other replicas. */
static void
record(struct replica *r, struct entry *e, int64_t when, const char *outcome,
       bool failed)
{
	char id[37], rec[400], subj[128];
	natsMsg *m = NULL;

	log_line(r, failed ? "failed" : "fired", e->s.name, outcome);
	mesh_sched_store_set_fired(r->st, e->s.name, when, outcome);
	mesh_schedule_firing_id(e->s.name, when, id);
	snprintf(subj, sizeof(subj), MESH_FIRINGS_PREFIX "%s", e->s.name);
	snprintf(rec, sizeof(rec), "%" PRId64 " %.300s", when, outcome);
	/* De-duplicated like the firing itself. */
	if (natsMsg_Create(&m, subj, NULL, rec, (int)strlen(rec)) == NATS_OK &&
	    natsMsgHeader_Set(m, "Nats-Msg-Id", id) == NATS_OK) {
		js_PublishMsg(NULL, mesh_conn_js(r->c), m, NULL, NULL);
	}
	natsMsg_Destroy(m);
}

/* Give a failed firing up: to the dead-letter queue if there is one. */
static void
give_up(struct replica *r, struct entry *e, int64_t when, int attempts,
        const char *error)
{
	char iso[32], outcome[400];
	struct mesh_queue_sent sent;

	mesh_sched_format(when, iso);
	if (e->s.dlq[0] != '\0' &&
	    publish(r, e, e->s.dlq, when, attempts, error, &sent) == MESH_OK) {
		snprintf(outcome, sizeof(outcome),
		         "%s: gave up after %d attempts (%.200s); "
		         "dead-lettered to %s",
		         iso, attempts, error, e->s.dlq);
	} else {
		snprintf(outcome, sizeof(outcome),
		         "%s: gave up after %d attempts (%.200s)%s", iso,
		         attempts, error,
		         e->s.dlq[0] ? "; the dead-letter queue failed too"
		                     : "");
	}
	record(r, e, when, outcome, true);
}

/* Publish one firing, attempt `attempt`; on failure arrange a retry, or
 * give up when the retries or the event's age are used up. */
static void
fire(struct replica *r, struct entry *e, int64_t when, const char *why,
     int attempt)
{
	char iso[32], outcome[400];
	struct mesh_queue_sent sent;
	mesh_err err;

	mesh_sched_format(when, iso);
	err = publish(r, e, e->s.target + 6, when, attempt, NULL, &sent);
	if (err == MESH_OK) {
		snprintf(outcome, sizeof(outcome), "%s %s: sent %s%s%s", why,
		         iso, sent.message_id,
		         sent.duplicate ? " (another replica sent it first)"
		                        : "",
		         attempt > 1 ? " on a retry" : "");
		record(r, e, when, outcome, false);
		if (e->retry_fire == when) {
			e->retry_fire = 0;
		}
		return;
	}
	char error[256];
	snprintf(error, sizeof(error), "%s", mesh_errdetail());
	if (attempt <= e->s.retry_max && now_s() - when < e->s.max_age_s) {
		int64_t backoff =
		        attempt < 7 ? (int64_t)1 << (attempt - 1) : 60;
		if (e->retry_fire != 0 && e->retry_fire != when) {
			give_up(r, e, e->retry_fire, e->attempt,
			        "superseded by a later failed firing");
		}
		e->retry_fire = when;
		e->attempt = attempt + 1;
		e->retry_at = now_s() + (backoff > 60 ? 60 : backoff);
		snprintf(outcome, sizeof(outcome),
		         "%s %s: attempt %d failed (%.200s); retrying in %lld "
		         "s",
		         why, iso, attempt, error,
		         (long long)(e->retry_at - now_s()));
		log_line(r, "retrying", e->s.name, outcome);
		return;
	}
	if (e->retry_fire == when) {
		e->retry_fire = 0;
	}
	give_up(r, e, when, attempt, error);
}

/* The last firing of a schedule that any replica made, or 0. */
static int64_t
last_fired(struct replica *r, const char *name)
{
	int64_t mine = 0, shared = 0;

	mesh_sched_store_fired(r->st, name, &mine, NULL, 0);
	mesh_schedules_last_fired(r->c, name, &shared, NULL, 0);
	return mine > shared ? mine : shared;
}

/* Take a schedule into the table; at start, apply its missed policy. */
static void
adopt(struct replica *r, struct mesh_schedule *s, bool at_start)
{
	struct entry *e = find(r, s->name);
	int64_t now = now_s(), last, t;
	mesh_err err;

	if (e == NULL) {
		for (size_t i = 0; i < r->n; i++) {
			if (!r->e[i].live) {
				e = &r->e[i];
				break;
			}
		}
	}
	if (e == NULL) {
		if (r->n == r->cap) {
			size_t cap = r->cap ? r->cap * 2 : 64;
			struct entry *ne = realloc(r->e, cap * sizeof(*ne));
			if (ne == NULL) {
				mesh_schedule_fini(s);
				return;
			}
			memset(ne + r->cap, 0, (cap - r->cap) * sizeof(*ne));
			r->e = ne;
			r->cap = cap;
		}
		e = &r->e[r->n++];
	} else if (e->live) {
		drop(e);
	}
	e->s = *s;
	e->live = true;
	e->next = 0;
	if ((err = zone(r, e->s.tz, &e->tz)) != MESH_OK) {
		log_line(r, "invalid", e->s.name, mesh_errdetail());
		drop(e);
		return;
	}
	last = last_fired(r, e->s.name);
	if (last == 0) {
		/* Never fired: from its creation (or now, when that is
		 * older than the missed policy should reach back). */
		last = e->s.created > 0 ? e->s.created : now;
	}
	if (at_start && e->s.enabled) {
		/* The missed firings, counted all; the latest MAX_CATCH_UP
		 * of them kept (a ring), for policy all. */
		static int64_t ring[MAX_CATCH_UP];
		uint64_t n = 0;
		for (t = last;
		     n < MAX_MISSED_SCAN &&
		     mesh_schedule_next(&e->s, e->tz, t, &t) == MESH_OK &&
		     t < now;) {
			ring[n++ % MAX_CATCH_UP] = t;
		}
		if (n > 0 && e->s.missed == MESH_MISSED_LATEST) {
			fire(r, e, ring[(n - 1) % MAX_CATCH_UP],
			     "missed (latest of those missed fired)", 1);
		} else if (n > 0 && e->s.missed == MESH_MISSED_ALL) {
			uint64_t from =
			        n > MAX_CATCH_UP ? n - MAX_CATCH_UP : 0;
			if (from > 0) {
				char note[96];
				snprintf(note, sizeof(note),
				         "missed %llu; only the latest %d "
				         "fired",
				         (unsigned long long)n, MAX_CATCH_UP);
				log_line(r, "skipped", e->s.name, note);
			}
			for (uint64_t i = from; i < n; i++) {
				fire(r, e, ring[i % MAX_CATCH_UP],
				     "missed (all fired)", 1);
			}
		} else if (n > 0) {
			char note[96];
			snprintf(note, sizeof(note),
			         "missed %llu, skipped by policy",
			         (unsigned long long)n);
			log_line(r, "skipped", e->s.name, note);
			mesh_sched_store_set_fired(
			        r->st, e->s.name, ring[(n - 1) % MAX_CATCH_UP],
			        note);
		}
		if (n > 0) {
			last = ring[(n - 1) % MAX_CATCH_UP];
		}
	}
	if (last < now - 1 && !at_start) {
		last = now - 1; /* a changed schedule starts from now */
	}
	if (e->s.enabled &&
	    mesh_schedule_next(&e->s, e->tz, last, &t) == MESH_OK) {
		e->next = t;
	}
}

static mesh_err
load_one(const char *json, size_t len, void *arg)
{
	struct replica *r = arg;
	struct mesh_schedule s;

	if (mesh_schedule_from_json(json, len, &s) == MESH_OK) {
		adopt(r, &s, true);
	}
	return MESH_OK;
}

/* Apply one change-log message. */
static void
apply(struct replica *r, natsMsg *m)
{
	const char *subj = natsMsg_GetSubject(m);
	const char *name = subj + strlen(MESH_SCHEDULES_PREFIX);
	jsMsgMetaData *meta = NULL;
	uint64_t seq = 0;
	struct mesh_schedule s;

	if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
		seq = meta->Sequence.Stream;
		jsMsgMetaData_Destroy(meta);
	}
	if (seq != 0 && seq <= mesh_sched_store_applied(r->st)) {
		return; /* redelivered after a crash: already in LMDB */
	}
	if (is_delete(m)) {
		struct entry *e = find(r, name);
		if (mesh_sched_store_apply(r->st, name, NULL, 0, seq) ==
		    MESH_OK) {
			if (e != NULL) {
				drop(e);
			}
			log_line(r, "deleted", name, NULL);
		}
		return;
	}
	if (mesh_schedule_from_json(natsMsg_GetData(m),
	                            (size_t)natsMsg_GetDataLength(m),
	                            &s) != MESH_OK) {
		log_line(r, "invalid", name, mesh_errdetail());
		return;
	}
	if (mesh_sched_store_apply(r->st, name, natsMsg_GetData(m),
	                           (size_t)natsMsg_GetDataLength(m),
	                           seq) != MESH_OK) {
		log_line(r, "store-failed", name, mesh_errdetail());
		mesh_schedule_fini(&s);
		return;
	}
	log_line(r, "applied", name, NULL);
	if (r->catching_up) {
		mesh_schedule_fini(&s); /* adopted from LMDB afterwards */
		return;
	}
	adopt(r, &s, false);
}

mesh_err
mesh_scheduler_run(struct mesh_conn *c, struct mesh_sched_store *st,
                   const char *id, volatile sig_atomic_t *stop,
                   mesh_sched_log_fn log, void *log_arg)
{
	struct replica r = {
	        .c = c, .st = st, .id = id, .log = log, .log_arg = log_arg};
	natsSubscription *sub = NULL;
	jsSubOptions so;
	jsErrCode jerr = 0;
	char durable[96];
	natsStatus s;
	mesh_err err;

	if ((err = mesh_schedules_streams(c)) != MESH_OK) {
		return err;
	}
	snprintf(durable, sizeof(durable), "replica-%s", id);
	jsSubOptions_Init(&so);
	so.Stream = MESH_SCHEDULES_STREAM;
	so.Config.AckPolicy = js_AckExplicit;
	so.Config.DeliverPolicy = js_DeliverAll;
	so.Config.MaxAckPending = 1000;
	s = js_PullSubscribe(&sub, mesh_conn_js(c), MESH_SCHEDULES_PREFIX "*",
	                     durable, NULL, &so, &jerr);
	if (s != NATS_OK) {
		return mesh_err_nats(s, jerr, "change log consumer %s",
		                     durable);
	}
	/* The changes made while this replica was away go into LMDB first,
	 * so that the missed-firing policy is that of the latest
	 * definitions; then the table is built from LMDB. */
	r.catching_up = true;
	for (;;) {
		natsMsgList list = {0};
		s = natsSubscription_Fetch(&list, sub, 256, 200, &jerr);
		for (int i = 0; i < list.Count; i++) {
			apply(&r, list.Msgs[i]);
			natsMsg_AckSync(list.Msgs[i], NULL, NULL);
		}
		natsMsgList_Destroy(&list);
		if (s != NATS_OK) {
			break; /* NATS_TIMEOUT: nothing more waiting */
		}
	}
	r.catching_up = false;
	mesh_sched_store_each(st, load_one, &r);
	log_line(&r, "started", NULL, durable);
	while (!*stop) {
		int64_t due = INT64_MAX, wait_ms;
		natsMsgList list = {0};

		for (size_t i = 0; i < r.n; i++) {
			int64_t d = entry_due(&r.e[i]);
			if (d > 0 && d < due) {
				due = d;
			}
		}
		/* Sleep in the fetch until a change comes or a firing is
		 * due; at most a second, to notice a stop. */
		wait_ms = due == INT64_MAX ? 1000 : due * 1000 - now_ms();
		wait_ms = wait_ms < 1 ? 1 : wait_ms > 1000 ? 1000 : wait_ms;
		s = natsSubscription_Fetch(&list, sub, 64, wait_ms, &jerr);
		for (int i = 0; i < list.Count; i++) {
			/* Into LMDB (durably) first, then acknowledged. */
			apply(&r, list.Msgs[i]);
			natsMsg_AckSync(list.Msgs[i], NULL, NULL);
		}
		natsMsgList_Destroy(&list);
		if (s != NATS_OK && s != NATS_TIMEOUT) {
			nats_Sleep(100); /* reconnecting: cnats does it */
		}
		for (size_t i = 0; i < r.n; i++) {
			struct entry *e = &r.e[i];
			int64_t t;
			if (e->live && e->retry_fire != 0 &&
			    e->retry_at <= now_s()) {
				fire(&r, e, e->retry_fire, "retried",
				     e->attempt);
			}
			if (!e->live || e->next == 0 ||
			    e->next + mesh_schedule_window_offset(&e->s,
			                                          e->next) >
			            now_s()) {
				continue;
			}
			fire(&r, e, e->next, "scheduled", 1);
			t = e->next;
			e->next = 0;
			if (mesh_schedule_next(&e->s, e->tz, t, &t) ==
			    MESH_OK) {
				e->next = t;
			} else if (e->s.delete_after) {
				mesh_schedules_delete(c, e->s.name);
			}
		}
	}
	log_line(&r, "stopped", NULL, NULL);
	natsSubscription_Destroy(sub);
	for (size_t i = 0; i < r.n; i++) {
		if (r.e[i].live) {
			drop(&r.e[i]);
		}
	}
	free(r.e);
	for (size_t i = 0; i < r.n_queues; i++) {
		mesh_queue_close(r.queues[i].q);
	}
	for (size_t i = 0; i < r.n_zones; i++) {
		mesh_tz_free(r.zones[i]);
	}
	free(r.zones);
	return MESH_OK;
}
