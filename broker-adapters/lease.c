/* lease.c: partition leases (mesh/lease.h, where the protocol is). */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mesh/lease.h"

#define STREAM          "KV_" MESH_LEASE_BUCKET
#define SUBJECT_PREFIX  "$KV." MESH_LEASE_BUCKET "."
#define BUCKET_MAX_AGE  ((int64_t)600 * 1000 * 1000000) /* ns: 10 min */
#define SYNC_TIMEOUT_MS 10000
#define KEY_MAX         (MESH_LEASE_NAME_MAX * 2 + 8)
#define VALUE_MAX       256
/* Event slots a tenure (one ownership of one partition) may need:
 * acquired, revoked(lost=false), revoked(lost=true). Claims wait while
 * the callbacks lag so far behind that no 3 are left. */
#define TENURE_EVENTS 3

enum own_state {
	OWN_NONE = 0,
	OWN_HELD,
	OWN_HANDING,   /* revoked(lost=false) told; still renewed */
	OWN_RELEASING, /* released: the manager deletes the lease */
};

/* A partition as we hold it. */
struct own {
	enum own_state state;
	uint64_t epoch;   /* the claim's revision */
	uint64_t rev;     /* our last write's */
	int64_t ok_ms;    /* monotonic: when the last write that succeeded
	                     was sent */
	int64_t since_ms; /* wall: the claim, for the value */
	int reserve;      /* event slots kept for the tenure */
};

/* A lease key as the watcher (or a refresh) last saw it. */
struct seen {
	char owner[MESH_LEASE_NAME_MAX + 1]; /* "": deleted or never made */
	uint64_t rev;                        /* 0: no key */
	int64_t seen_ms; /* monotonic: when we saw it change */
	int64_t ttl_ms;  /* the owner's */
	bool handing;
};

struct member {
	char name[MESH_LEASE_NAME_MAX + 1];
	int64_t seen_ms; /* monotonic */
	int64_t ttl_ms;
	int count; /* balance's scratch */
};

enum ev_kind { EV_ACQUIRED, EV_HANDOVER, EV_LOST };

struct event {
	enum ev_kind kind;
	int partition;
	uint64_t epoch;
};

struct mesh_lease {
	jsCtx *js; /* ours: its Wait is ttl/3, for renewals */
	kvStore *kv;
	struct follow {
		natsSubscription *sub; /* NULL: to be made */
		natsMsgList list;
		int next;
		int64_t quiet_since; /* monotonic ms of the last message */
	} f;
	char group[MESH_LEASE_NAME_MAX + 1];
	char instance[MESH_LEASE_NAME_MAX + 1];
	int n;
	int64_t ttl;
	int64_t started_ms;
	void (*acquired)(void *arg, int partition, uint64_t epoch);
	void (*revoked)(void *arg, int partition, bool lost);
	void *arg;

	pthread_mutex_t mu;
	pthread_cond_t wake;    /* the manager's */
	pthread_cond_t cb_wake; /* the callback thread's */
	pthread_t manager, watcher, cb;

	struct own *own;
	struct seen *seen;
	bool *tried; /* balance's: claimed this round */
	struct member *members;
	size_t nmembers, members_cap;

	struct event *ring;
	size_t ring_cap, ring_head, ring_len;
	int budget; /* free event slots not kept by a tenure */

	int64_t next_renew;
	bool kick; /* something changed: run the manager's round again */
	bool leaving, left_group, watch_stop, cb_stop;
	int64_t leave_deadline;
};

/* ---- names and values ----------------------------------------------------
 */

static mesh_err
name_check(const char *what, const char *s)
{
	size_t len = s != NULL ? strlen(s) : 0;

	if (len == 0 || len > MESH_LEASE_NAME_MAX ||
	    strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	              "0123456789_-") != len) {
		return mesh_err_set(MESH_EINVAL,
		                    "lease %s '%s': must be 1-%d of "
		                    "[A-Za-z0-9_-]",
		                    what, s != NULL ? s : "(null)",
		                    MESH_LEASE_NAME_MAX);
	}
	return MESH_OK;
}

/* A key of the group: the partition (>= 0), or -1 for a member, whose name
 * goes to name; -2 for neither. */
static int
key_parse(const char *group, const char *key, char *name, size_t size)
{
	size_t gl = strlen(group);
	char *end;
	long k;

	if (strncmp(key, group, gl) != 0 || key[gl] != '.' ||
	    key[gl + 1] == '\0' || key[gl + 2] != '.' || key[gl + 3] == '\0') {
		return -2;
	}
	key += gl + 1;
	if (key[0] == 'm') {
		mesh__copy_str(name, size, key + 2);
		return -1;
	}
	if (key[0] != 'p') {
		return -2;
	}
	errno = 0;
	k = strtol(key + 2, &end, 10);
	if (*end != '\0' || errno != 0 || k < 0 ||
	    k >= MESH_LEASE_PARTITIONS_MAX) {
		return -2;
	}
	return (int)k;
}

/* What a lease or member record says (a malformed one: no owner, not
 * handing, default_ttl): owner or instance, ttl_ms, handing, partitions. */
struct record {
	char name[MESH_LEASE_NAME_MAX + 1];
	int64_t ttl_ms;
	int64_t started_ms;
	int partitions;
	bool handing;
	bool valid;
};

static void
record_parse(const void *data, int len, bool member, int64_t default_ttl,
             struct record *r)
{
	json_t *j = data != NULL && len > 0
	                    ? json_loadb(data, (size_t)len, 0, NULL)
	                    : NULL;
	const char *name = json_string_value(
	        json_object_get(j, member ? "instance" : "owner"));
	json_int_t ttl = json_integer_value(json_object_get(j, "ttl_ms"));

	memset(r, 0, sizeof(*r));
	r->valid = name != NULL && name[0] != '\0';
	/* An unreadable lease is someone's, whose: it dies unrenewed. */
	mesh__copy_str(r->name, sizeof(r->name), r->valid ? name : "?");
	r->ttl_ms =
	        ttl >= MESH_LEASE_TTL_MIN_MS && ttl <= MESH_LEASE_TTL_MAX_MS
	                ? (int64_t)ttl
	                : default_ttl;
	r->started_ms = json_integer_value(json_object_get(j, "started_ms"));
	r->partitions =
	        (int)json_integer_value(json_object_get(j, "partitions"));
	r->handing = json_is_true(json_object_get(j, "handing"));
	json_decref(j);
}

static void
lease_key(const struct mesh_lease *l, int p, char key[KEY_MAX])
{
	snprintf(key, KEY_MAX, "%s.p.%d", l->group, p);
}

static void
member_key(const struct mesh_lease *l, char key[KEY_MAX])
{
	snprintf(key, KEY_MAX, "%s.m.%s", l->group, l->instance);
}

/* ---- the bucket ----------------------------------------------------------
 */

/* The bucket, made when missing (create) with the mesh's replicas. As
 * mesh__records_bucket: members starting together race to make it, and a
 * cluster that has just elected its meta leader may let a request time
 * out, so look again for a while before failing. */
static mesh_err
lease_bucket(struct mesh_conn *c, bool create, kvStore **kv)
{
	return mesh__kv_bucket(c, MESH_LEASE_BUCKET, VALUE_MAX, BUCKET_MAX_AGE,
	                       create, "lease", kv);
}

/* Write key: value, or a delete marker (value NULL), only when the key's
 * last revision is `last` (0: no key), or unchecked (last UINT64_MAX).
 * *rev gets the new revision; *jerr the JetStream error. */
static natsStatus
kv_write(struct mesh_lease *l, const char *key, const char *value,
         uint64_t last, uint64_t *rev, jsErrCode *jerr)
{
	char subject[sizeof(SUBJECT_PREFIX) + KEY_MAX];
	char seq[24];
	natsMsg *m = NULL;
	jsPubAck *pa = NULL;
	natsStatus s;

	*jerr = 0;
	snprintf(subject, sizeof(subject), SUBJECT_PREFIX "%s", key);
	s = natsMsg_Create(&m, subject, NULL, value,
	                   value != NULL ? (int)strlen(value) : 0);
	if (s == NATS_OK && last != UINT64_MAX) {
		snprintf(seq, sizeof(seq), "%" PRIu64, last);
		s = natsMsgHeader_Set(m, "Nats-Expected-Last-Subject-Sequence",
		                      seq);
	}
	if (s == NATS_OK && value == NULL) {
		s = natsMsgHeader_Set(m, "KV-Operation", "DEL");
	}
	if (s == NATS_OK) {
		s = js_PublishMsg(&pa, l->js, m, NULL, jerr);
	}
	if (s == NATS_OK && rev != NULL) {
		*rev = pa->Sequence;
	}
	jsPubAck_Destroy(pa);
	natsMsg_Destroy(m);
	return s;
}

/* ---- the view --------------------------------------------------------------
 */

static struct member *
member_find(struct mesh_lease *l, const char *name, bool make)
{
	struct member *m;

	for (size_t i = 0; i < l->nmembers; i++) {
		if (strcmp(l->members[i].name, name) == 0) {
			return &l->members[i];
		}
	}
	if (!make) {
		return NULL;
	}
	if (l->nmembers == l->members_cap) {
		size_t cap = l->members_cap ? l->members_cap * 2 : 8;
		m = realloc(l->members, cap * sizeof(*m));
		if (m == NULL) {
			return NULL; /* unseen until its next heartbeat */
		}
		l->members = m;
		l->members_cap = cap;
	}
	m = &l->members[l->nmembers++];
	memset(m, 0, sizeof(*m));
	mesh__copy_str(m->name, sizeof(m->name), name);
	return m;
}

static void
post(struct mesh_lease *l, int p, enum ev_kind kind)
{
	struct own *o = &l->own[p];
	struct event *e;

	/* The tenure's reserve guarantees the slot (see TENURE_EVENTS). */
	if (o->reserve == 0) {
		return;
	}
	o->reserve--;
	e = &l->ring[(l->ring_head + l->ring_len) % l->ring_cap];
	l->ring_len++;
	e->kind = kind;
	e->partition = p;
	e->epoch = o->epoch;
	pthread_cond_signal(&l->cb_wake);
}

/* The tenure of p ends: lost (told unless we were releasing it) or
 * released. */
static void
tenure_end(struct mesh_lease *l, int p, bool tell)
{
	struct own *o = &l->own[p];

	if (tell && (o->state == OWN_HELD || o->state == OWN_HANDING)) {
		post(l, p, EV_LOST);
	}
	l->budget += o->reserve;
	memset(o, 0, sizeof(*o));
	l->kick = true;
}

/* A lease key changed (rev; deleted; its value): note it, and lose our
 * lease of it when someone else wrote over it. */
static void
apply_lease(struct mesh_lease *l, int p, uint64_t rev, bool deleted,
            const void *data, int len, int64_t now)
{
	struct seen *v = &l->seen[p];
	struct own *o = &l->own[p];
	struct record r;

	if (p >= l->n || rev <= v->rev) {
		return; /* another partition count's, or old news */
	}
	record_parse(deleted ? NULL : data, len, false, l->ttl, &r);
	v->rev = rev;
	v->seen_ms = now;
	v->ttl_ms = r.ttl_ms;
	v->handing = !deleted && r.handing;
	mesh__copy_str(v->owner, sizeof(v->owner), deleted ? "" : r.name);
	if (o->state != OWN_NONE && rev > o->rev &&
	    (deleted || strcmp(v->owner, l->instance) != 0)) {
		tenure_end(l, p, true);
	}
}

static void
apply_member(struct mesh_lease *l, const char *name, bool deleted,
             const void *data, int len, int64_t now)
{
	struct member *m;
	struct record r;

	if (strcmp(name, l->instance) == 0) {
		return; /* we count ourselves */
	}
	if (deleted) {
		if ((m = member_find(l, name, false)) != NULL) {
			*m = l->members[--l->nmembers];
		}
		return;
	}
	if ((m = member_find(l, name, true)) != NULL) {
		record_parse(data, len, true, l->ttl, &r);
		m->seen_ms = now;
		m->ttl_ms = r.ttl_ms;
	}
}

static bool
entry_deleted(kvEntry *e)
{
	kvOperation op = kvEntry_Operation(e);

	return op == kvOp_Delete || op == kvOp_Purge;
}

/* A key's message from the bucket's stream: a put, or (KV-Operation DEL
 * or PURGE) a deletion. */
static void
apply_msg(struct mesh_lease *l, natsMsg *m, int64_t now)
{
	char name[MESH_LEASE_NAME_MAX + 1];
	const char *subject = natsMsg_GetSubject(m), *op = NULL;
	jsMsgMetaData *md = NULL;
	bool deleted;
	int k;

	if (strncmp(subject, SUBJECT_PREFIX, strlen(SUBJECT_PREFIX)) != 0 ||
	    natsMsg_GetMetaData(&md, m) != NATS_OK) {
		return;
	}
	natsMsgHeader_Get(m, "KV-Operation", &op);
	deleted = op != NULL && strcmp(op, "PUT") != 0;
	k = key_parse(l->group, subject + strlen(SUBJECT_PREFIX), name,
	              sizeof(name));
	if (k >= 0) {
		apply_lease(l, k, md->Sequence.Stream, deleted,
		            natsMsg_GetData(m), natsMsg_GetDataLength(m), now);
	} else if (k == -1) {
		apply_member(l, name, deleted, natsMsg_GetData(m),
		             natsMsg_GetDataLength(m), now);
	}
	jsMsgMetaData_Destroy(md);
}

/* ---- following the group's keys -------------------------------------------
 *
 * An ephemeral pull consumer on the bucket's stream, filtered to the
 * group's keys: each key's last message first, then every change. Not
 * cnats' kvStore_Watch: its ordered consumer resets itself from a timer
 * after missed heartbeats (an instance paused past its lease), and that
 * leaked and raced. A consumer gone (the server restarted; an idle one
 * deleted) is made again, last values first: applying a message twice
 * changes nothing. */

#define FOLLOW_BATCH   256
#define FOLLOW_WAIT_MS 250

static void
follow_close(struct follow *f)
{
	natsMsgList_Destroy(&f->list);
	f->next = 0;
	if (f->sub != NULL) {
		natsSubscription_Unsubscribe(f->sub); /* deletes it */
		natsSubscription_Destroy(f->sub);
		f->sub = NULL;
	}
}

static natsStatus
follow_open(struct mesh_lease *l)
{
	char filter[sizeof(SUBJECT_PREFIX) + MESH_LEASE_NAME_MAX + 4];
	jsSubOptions so;

	follow_close(&l->f);
	snprintf(filter, sizeof(filter), SUBJECT_PREFIX "%s.>", l->group);
	jsSubOptions_Init(&so);
	so.Stream = STREAM;
	so.Config.DeliverPolicy = js_DeliverLastPerSubject;
	so.Config.AckPolicy = js_AckAll;
	so.Config.MaxAckPending = FOLLOW_BATCH * 4;
	so.Config.InactiveThreshold = (int64_t)60 * 1000 * 1000 * 1000;
	l->f.quiet_since = mesh_mono_ms();
	return js_PullSubscribe(&l->f.sub, l->js, filter, NULL, NULL, &so,
	                        NULL);
}

/* The next message (the caller destroys it), or NULL when none came
 * within wait_ms; *pending: how many more the consumer holds for us.
 * Makes the consumer again when it is gone, or quiet for longer than
 * members renew. */
static natsStatus
follow_next(struct mesh_lease *l, int64_t wait_ms, natsMsg **m,
            uint64_t *pending)
{
	struct follow *f = &l->f;
	natsStatus s = NATS_OK;

	*m = NULL;
	*pending = 0;
	if (f->sub == NULL ||
	    mesh_mono_ms() - f->quiet_since > 3 * l->ttl + 1000) {
		if ((s = follow_open(l)) != NATS_OK) {
			return s;
		}
	}
	if (f->next == f->list.Count) {
		natsMsgList_Destroy(&f->list);
		f->next = 0;
		s = natsSubscription_Fetch(&f->list, f->sub, FOLLOW_BATCH,
		                           wait_ms > 0 ? wait_ms : 1, NULL);
		if (s == NATS_TIMEOUT) {
			return NATS_OK;
		}
		if (s != NATS_OK) {
			follow_close(f); /* made again next time */
			return s;
		}
	}
	if (f->next < f->list.Count) {
		jsMsgMetaData *md = NULL;
		*m = f->list.Msgs[f->next];
		f->list.Msgs[f->next++] = NULL;
		f->quiet_since = mesh_mono_ms();
		if (natsMsg_GetMetaData(&md, *m) == NATS_OK) {
			*pending = md->NumPending;
			jsMsgMetaData_Destroy(md);
		}
		if (f->next == f->list.Count) {
			natsMsg_Ack(*m, NULL); /* AckAll: the batch */
		}
	}
	return NATS_OK;
}

/* After a claim refused: read the key's last message (the watcher is
 * never told of a key MaxAge removed). Called and returns locked. */
static void
refresh(struct mesh_lease *l, int p)
{
	char key[KEY_MAX], subject[sizeof(SUBJECT_PREFIX) + KEY_MAX];
	const char *op = NULL;
	natsMsg *m = NULL;
	jsDirectGetMsgOptions o;
	natsStatus s;
	int64_t now;

	lease_key(l, p, key);
	snprintf(subject, sizeof(subject), SUBJECT_PREFIX "%s", key);
	/* A direct get by subject names the key in its subject, which the
	 * identity's permissions allow (meshctl auth), where a stream's
	 * MSG.GET carries it in the body. */
	jsDirectGetMsgOptions_Init(&o);
	o.LastBySubject = subject;
	pthread_mutex_unlock(&l->mu);
	s = js_DirectGetMsg(&m, l->js, STREAM, NULL, &o);
	pthread_mutex_lock(&l->mu);
	now = mesh_mono_ms();
	if (s == NATS_OK) {
		natsMsgHeader_Get(m, "KV-Operation", &op);
		apply_lease(l, p, natsMsg_GetSequence(m),
		            op != NULL && strcmp(op, "PUT") != 0,
		            natsMsg_GetData(m), natsMsg_GetDataLength(m), now);
	} else if (s == NATS_NOT_FOUND) {
		/* Gone for MaxAge: free long ago. */
		memset(&l->seen[p], 0, sizeof(l->seen[p]));
		l->seen[p].seen_ms = now - l->ttl;
		l->seen[p].ttl_ms = l->ttl;
	}
	natsMsg_Destroy(m);
}

/* ---- the manager -----------------------------------------------------------
 */

static bool
owning(const struct own *o)
{
	return o->state == OWN_HELD || o->state == OWN_HANDING;
}

static void
lease_value(const struct mesh_lease *l, const struct own *o,
            char value[VALUE_MAX])
{
	snprintf(value, VALUE_MAX,
	         "{\"owner\":\"%s\",\"since_ms\":%" PRId64
	         ",\"ttl_ms\":%" PRId64 "%s}",
	         l->instance, o->since_ms, l->ttl,
	         o->state == OWN_HANDING ? ",\"handing\":true" : "");
}

static void
heartbeat(struct mesh_lease *l)
{
	char key[KEY_MAX], value[VALUE_MAX];
	jsErrCode jerr;

	member_key(l, key);
	snprintf(value, sizeof(value),
	         "{\"instance\":\"%s\",\"started_ms\":%" PRId64
	         ",\"partitions\":%d,\"ttl_ms\":%" PRId64 "}",
	         l->instance, l->started_ms, l->n, l->ttl);
	pthread_mutex_unlock(&l->mu);
	kv_write(l, key, value, UINT64_MAX, NULL, &jerr);
	pthread_mutex_lock(&l->mu);
}

/* A write that neither succeeded nor was refused: the broker is slow or
 * out of reach, and the next write would likely wait as long. */
static bool
timed_out(natsStatus s, jsErrCode jerr)
{
	return s != NATS_OK && jerr != JSStreamWrongLastSequenceErr;
}

/* Renew every lease we hold, then our membership (unless leaving). After
 * a renewal that timed out the round ends, to be tried again soon: the
 * deadlines are checked meanwhile, not after a timeout per lease. */
static void
renew_all(struct mesh_lease *l)
{
	l->next_renew = mesh_mono_ms() + l->ttl / 3;
	for (int p = 0; p < l->n; p++) {
		struct own *o = &l->own[p];
		char key[KEY_MAX], value[VALUE_MAX];
		uint64_t epoch = o->epoch, last = o->rev, rev = 0;
		jsErrCode jerr;
		int64_t sent;
		natsStatus s;

		if (!owning(o)) {
			continue;
		}
		lease_key(l, p, key);
		lease_value(l, o, value);
		pthread_mutex_unlock(&l->mu);
		sent = mesh_mono_ms();
		s = kv_write(l, key, value, last, &rev, &jerr);
		pthread_mutex_lock(&l->mu);
		if (o->state == OWN_NONE || o->epoch != epoch) {
			continue; /* lost meanwhile */
		}
		/* Released meanwhile, it still needs the revision. */
		if (s == NATS_OK) {
			o->rev = rev > o->rev ? rev : o->rev;
			o->ok_ms = sent;
		} else if (jerr == JSStreamWrongLastSequenceErr) {
			tenure_end(l, p, true); /* taken, or the key is gone */
		} else {
			/* Timed out: again soon, until the deadline. */
			l->next_renew = mesh_mono_ms() + l->ttl / 12;
			return;
		}
	}
	if (!l->leaving) {
		heartbeat(l);
	}
}

/* A lease unrenewed for ttl may be someone else's by now. */
static void
check_deadlines(struct mesh_lease *l, int64_t now)
{
	for (int p = 0; p < l->n; p++) {
		if (owning(&l->own[p]) && now >= l->own[p].ok_ms + l->ttl) {
			tenure_end(l, p, true);
		}
	}
}

/* Delete the lease of p (ours at revision last), unless !io, and end
 * the tenure. False when the delete timed out. */
static bool
delete_lease(struct mesh_lease *l, int p, bool tell, bool io)
{
	struct own *o = &l->own[p];
	uint64_t epoch = o->epoch, last = o->rev;
	char key[KEY_MAX];
	jsErrCode jerr = 0;
	natsStatus s = NATS_OK;

	lease_key(l, p, key);
	pthread_mutex_unlock(&l->mu);
	/* Refused: someone took it already; timed out: it expires. */
	if (io) {
		s = kv_write(l, key, NULL, last, NULL, &jerr);
	}
	pthread_mutex_lock(&l->mu);
	if (o->state != OWN_NONE && o->epoch == epoch) {
		tenure_end(l, p, tell);
	}
	return !timed_out(s, jerr);
}

static void
release_pending(struct mesh_lease *l)
{
	for (int p = 0; p < l->n; p++) {
		if (l->own[p].state == OWN_RELEASING) {
			delete_lease(l, p, false, true);
		}
	}
}

static void
hand_over(struct mesh_lease *l, int p)
{
	l->own[p].state = OWN_HANDING;
	post(l, p, EV_HANDOVER);
	l->next_renew = 0; /* tell the others now: "handing" */
}

/* Claim p, whose key we last saw at revision last. False when the claim
 * timed out (no more claims this round). */
static bool
claim(struct mesh_lease *l, int p, uint64_t last)
{
	struct own *o = &l->own[p];
	char key[KEY_MAX], value[VALUE_MAX];
	uint64_t rev = 0;
	jsErrCode jerr;
	int64_t sent;
	natsStatus s;

	l->tried[p] = true;
	if (l->budget < TENURE_EVENTS) {
		return true; /* the callbacks lag: not more work now */
	}
	l->budget -= TENURE_EVENTS;
	o->since_ms = mesh_wall_ms();
	lease_key(l, p, key);
	lease_value(l, o, value);
	pthread_mutex_unlock(&l->mu);
	sent = mesh_mono_ms();
	s = kv_write(l, key, value, last, &rev, &jerr);
	pthread_mutex_lock(&l->mu);
	if (s != NATS_OK) {
		l->budget += TENURE_EVENTS;
		o->since_ms = 0;
		if (!timed_out(s, jerr)) {
			refresh(l, p);
		}
		return !timed_out(s, jerr);
	}
	o->state = OWN_HELD;
	o->epoch = o->rev = rev;
	o->ok_ms = sent;
	o->reserve = TENURE_EVENTS;
	post(l, p, EV_ACQUIRED);
	if (l->seen[p].rev > rev &&
	    strcmp(l->seen[p].owner, l->instance) != 0) {
		tenure_end(l, p, true); /* overtaken already */
	}
	return true;
}

/* Whether a lease seen is alive: written within its owner's ttl and not
 * deleted. */
static bool
seen_alive(const struct seen *v, int64_t now)
{
	return v->owner[0] != '\0' && now - v->seen_ms < v->ttl_ms;
}

/* Since when p has been free for the taking (dead: since its ttl ran). */
static int64_t
free_since(const struct seen *v)
{
	return v->owner[0] == '\0' ? v->seen_ms : v->seen_ms + v->ttl_ms;
}

static bool
member_alive(const struct member *m, int64_t now)
{
	return now - m->seen_ms < m->ttl_ms;
}

/* One step of balance: claim or hand over one partition. False when
 * there is nothing (more) to do. */
static bool
balance_step(struct mesh_lease *l, int64_t now)
{
	int live = 1, rank = 0, mine = 0, avail = 0, deficit = 0, richer = 0;
	int lo, hi, top = -1;

	for (size_t i = 0; i < l->nmembers; i++) {
		struct member *m = &l->members[i];
		m->count = 0;
		if (member_alive(m, now)) {
			live++;
			rank += strcmp(m->name, l->instance) < 0;
		}
	}
	for (int p = 0; p < l->n; p++) {
		struct seen *v = &l->seen[p];
		struct member *m;
		if (l->own[p].state == OWN_HELD) {
			mine++;
			top = p;
		} else if (l->own[p].state != OWN_NONE ||
		           !seen_alive(v, now) || v->handing) {
			avail++;
		} else if ((m = member_find(l, v->owner, false)) != NULL) {
			m->count++;
		}
	}
	lo = l->n / live;
	hi = lo + (l->n % live != 0);

	if (mine < hi) {
		/* From an offset of our own, so that members claiming at
		 * once do not all want the same partitions. */
		int start = (int)((int64_t)rank * l->n / live);
		for (int i = 0; i < l->n; i++) {
			int p = (start + i) % l->n;
			struct seen *v = &l->seen[p];
			if (l->own[p].state != OWN_NONE || l->tried[p] ||
			    seen_alive(v, now) ||
			    (mine >= lo && now - free_since(v) < l->ttl / 2)) {
				continue;
			}
			return claim(l, p, v->rev);
		}
	}
	if (mine > hi) {
		hand_over(l, top);
		return true;
	}
	if (mine <= lo) {
		return false;
	}
	/* Above floor: hand one over if members below floor are more than
	 * the free partitions can serve, and we are among the richest
	 * (count, then name) of as many members as are missing. */
	for (size_t i = 0; i < l->nmembers; i++) {
		struct member *m = &l->members[i];
		if (!member_alive(m, now)) {
			continue;
		}
		deficit += m->count < lo ? lo - m->count : 0;
		richer +=
		        m->count > mine ||
		        (m->count == mine && strcmp(m->name, l->instance) < 0);
	}
	if (deficit - avail > richer) {
		hand_over(l, top);
		return true;
	}
	return false;
}

static void
balance(struct mesh_lease *l, int64_t now)
{
	memset(l->tried, 0, (size_t)l->n * sizeof(*l->tried));
	for (int i = 0; i <= l->n && balance_step(l, now); i++) {
		now = mesh_mono_ms();
	}
}

/* The first round of leaving: our membership goes, so that the others
 * count without us, and every lease is handed over. */
static void
leave(struct mesh_lease *l)
{
	char key[KEY_MAX];
	jsErrCode jerr;

	l->left_group = true;
	member_key(l, key);
	pthread_mutex_unlock(&l->mu);
	kv_write(l, key, NULL, UINT64_MAX, NULL, &jerr);
	pthread_mutex_lock(&l->mu);
	for (int p = 0; p < l->n; p++) {
		if (l->own[p].state == OWN_HELD) {
			hand_over(l, p);
		}
	}
}

/* Whether leaving is over: nothing held, or the time is up (then the
 * leases left are deleted anyway and lost). */
static bool
left(struct mesh_lease *l, int64_t now)
{
	bool any = false, io = true;

	for (int p = 0; p < l->n; p++) {
		if (l->own[p].state != OWN_NONE) {
			any = true;
			if (now >= l->leave_deadline) {
				io = delete_lease(l, p, true, io) && io;
			}
		}
	}
	return !any || now >= l->leave_deadline;
}

static int64_t
min_after(int64_t t, int64_t cand, int64_t now)
{
	return cand > now && cand < t ? cand : t;
}

/* When the manager has something to do next, unless woken before. */
static int64_t
next_round(struct mesh_lease *l, int64_t now)
{
	int64_t t = l->next_renew;

	if (l->leaving) {
		t = min_after(t, l->leave_deadline, now);
	}
	for (int p = 0; p < l->n; p++) {
		struct seen *v = &l->seen[p];
		if (owning(&l->own[p])) {
			t = min_after(t, l->own[p].ok_ms + l->ttl, now);
		} else if (!l->leaving && l->own[p].state == OWN_NONE) {
			t = min_after(t, free_since(v), now);
			t = min_after(t, free_since(v) + l->ttl / 2, now);
		}
	}
	for (size_t i = 0; i < l->nmembers && !l->leaving; i++) {
		t = min_after(t, l->members[i].seen_ms + l->members[i].ttl_ms,
		              now);
	}
	return t;
}

static void
wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t mono)
{
	struct timespec ts = {.tv_sec = mono / 1000,
	                      .tv_nsec = (mono % 1000) * 1000000};

	pthread_cond_timedwait(cv, mu, &ts);
}

static void *
manager_main(void *arg)
{
	struct mesh_lease *l = arg;
	int64_t now;

	pthread_mutex_lock(&l->mu);
	for (;;) {
		l->kick = false;
		if (l->leaving && !l->left_group) {
			leave(l);
		}
		if (mesh_mono_ms() >= l->next_renew) {
			renew_all(l);
		}
		release_pending(l);
		now = mesh_mono_ms();
		check_deadlines(l, now);
		if (l->leaving) {
			if (left(l, now)) {
				break;
			}
		} else {
			balance(l, now);
		}
		if (!l->kick) {
			wait_until(&l->wake, &l->mu,
			           next_round(l, mesh_mono_ms()));
		}
	}
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

/* ---- the watcher and the callbacks ---------------------------------------
 */

static void *
watcher_main(void *arg)
{
	struct mesh_lease *l = arg;

	for (;;) {
		natsMsg *m = NULL;
		uint64_t pending;
		natsStatus s = follow_next(l, FOLLOW_WAIT_MS, &m, &pending);
		bool stop;

		pthread_mutex_lock(&l->mu);
		stop = l->watch_stop;
		if (!stop && m != NULL) {
			apply_msg(l, m, mesh_mono_ms());
			l->kick = true;
			pthread_cond_signal(&l->wake);
		}
		pthread_mutex_unlock(&l->mu);
		natsMsg_Destroy(m);
		if (stop) {
			break;
		}
		if (s != NATS_OK) {
			nats_Sleep(100); /* made again at the next call */
		}
	}
	return NULL;
}

static void *
callback_main(void *arg)
{
	struct mesh_lease *l = arg;

	pthread_mutex_lock(&l->mu);
	for (;;) {
		struct event e;
		while (l->ring_len == 0 && !l->cb_stop) {
			pthread_cond_wait(&l->cb_wake, &l->mu);
		}
		if (l->ring_len == 0) {
			break;
		}
		e = l->ring[l->ring_head];
		l->ring_head = (l->ring_head + 1) % l->ring_cap;
		l->ring_len--;
		pthread_mutex_unlock(&l->mu);
		if (e.kind == EV_ACQUIRED && l->acquired != NULL) {
			l->acquired(l->arg, e.partition, e.epoch);
		} else if (e.kind != EV_ACQUIRED && l->revoked != NULL) {
			l->revoked(l->arg, e.partition, e.kind == EV_LOST);
		}
		pthread_mutex_lock(&l->mu);
		if (l->budget++ < TENURE_EVENTS) {
			l->kick = true; /* claims may go on */
			pthread_cond_signal(&l->wake);
		}
	}
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

/* ---- the API ---------------------------------------------------------------
 */

void
mesh_lease_opts_init(struct mesh_lease_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->ttl_ms = 3000;
}

static mesh_err
opts_check(const struct mesh_lease_opts *o)
{
	mesh_err err;

	if ((err = name_check("group", o->group)) != MESH_OK ||
	    (err = name_check("instance", o->instance)) != MESH_OK) {
		return err;
	}
	if (o->partitions < 1 || o->partitions > MESH_LEASE_PARTITIONS_MAX) {
		return mesh_err_set(MESH_EINVAL,
		                    "lease group '%s': partitions %d: must be "
		                    "1-%d",
		                    o->group, o->partitions,
		                    MESH_LEASE_PARTITIONS_MAX);
	}
	if (o->ttl_ms < MESH_LEASE_TTL_MIN_MS ||
	    o->ttl_ms > MESH_LEASE_TTL_MAX_MS) {
		return mesh_err_set(MESH_EINVAL,
		                    "lease group '%s': ttl_ms %" PRId64
		                    ": must be %d-%d",
		                    o->group, o->ttl_ms, MESH_LEASE_TTL_MIN_MS,
		                    MESH_LEASE_TTL_MAX_MS);
	}
	return MESH_OK;
}

static void
lease_free(struct mesh_lease *l)
{
	follow_close(&l->f);
	kvStore_Destroy(l->kv);
	jsCtx_Destroy(l->js);
	pthread_cond_destroy(&l->wake);
	pthread_cond_destroy(&l->cb_wake);
	pthread_mutex_destroy(&l->mu);
	free(l->own);
	free(l->seen);
	free(l->tried);
	free(l->members);
	free(l->ring);
	free(l);
}

static mesh_err
lease_alloc(const struct mesh_lease_opts *o, struct mesh_lease **out)
{
	struct mesh_lease *l = calloc(1, sizeof(*l));
	pthread_condattr_t ca;

	if (l == NULL) {
		return mesh_err_set(MESH_ENOMEM, "lease group '%s'", o->group);
	}
	pthread_mutex_init(&l->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&l->wake, &ca);
	pthread_cond_init(&l->cb_wake, &ca);
	pthread_condattr_destroy(&ca);
	mesh__copy_str(l->group, sizeof(l->group), o->group);
	mesh__copy_str(l->instance, sizeof(l->instance), o->instance);
	l->n = o->partitions;
	l->ttl = o->ttl_ms;
	l->acquired = o->acquired;
	l->revoked = o->revoked;
	l->arg = o->arg;
	l->started_ms = mesh_wall_ms();
	l->ring_cap = (size_t)l->n * TENURE_EVENTS;
	l->budget = (int)l->ring_cap;
	l->own = calloc((size_t)l->n, sizeof(*l->own));
	l->seen = calloc((size_t)l->n, sizeof(*l->seen));
	l->tried = calloc((size_t)l->n, sizeof(*l->tried));
	l->ring = calloc(l->ring_cap, sizeof(*l->ring));
	if (l->own == NULL || l->seen == NULL || l->tried == NULL ||
	    l->ring == NULL) {
		lease_free(l);
		return mesh_err_set(MESH_ENOMEM, "lease group '%s'", o->group);
	}
	*out = l;
	return MESH_OK;
}

/* Read the group's keys as they are now, until the watcher says it has
 * given them all; fail on live members with another partition count. */
static mesh_err
sync_view(struct mesh_lease *l)
{
	int64_t until = mesh_mono_ms() + SYNC_TIMEOUT_MS;
	mesh_err err = MESH_OK;

	for (;;) {
		char name[MESH_LEASE_NAME_MAX + 1];
		natsStatus s;
		struct record r;
		int k;

		natsMsg *m = NULL;
		uint64_t pending = 0;
		const char *op = NULL;
		jsMsgMetaData *md = NULL;

		if (mesh_mono_ms() >= until) {
			return mesh_err_set(
			        MESH_ETIMEDOUT,
			        "lease group '%s': reading its keys",
			        l->group);
		}
		s = follow_next(l, FOLLOW_WAIT_MS, &m, &pending);
		if (s != NATS_OK) {
			return mesh_err_nats(s, 0, "lease group '%s': reading",
			                     l->group);
		}
		if (m == NULL) {
			/* Nothing came: nothing more to read (a new group,
			 * or every key read). */
			break;
		}
		apply_msg(l, m, mesh_mono_ms());
		natsMsgHeader_Get(m, "KV-Operation", &op);
		k = key_parse(l->group,
		              natsMsg_GetSubject(m) + strlen(SUBJECT_PREFIX),
		              name, sizeof(name));
		if (k == -1 && op == NULL && err == MESH_OK &&
		    natsMsg_GetMetaData(&md, m) == NATS_OK) {
			record_parse(natsMsg_GetData(m),
			             natsMsg_GetDataLength(m), true, l->ttl,
			             &r);
			if (r.partitions != l->n && r.partitions > 0 &&
			    mesh_wall_ms() - md->Timestamp / 1000000 <
			            r.ttl_ms) {
				err = mesh_err_set(
				        MESH_EEXIST,
				        "lease group '%s': member '%s' runs "
				        "with %d partitions, not %d",
				        l->group, name, r.partitions, l->n);
			}
		}
		jsMsgMetaData_Destroy(md);
		natsMsg_Destroy(m);
		if (pending == 0) {
			break; /* caught up */
		}
	}
	return err;
}

mesh_err
mesh_lease_start(struct mesh_conn *c, const struct mesh_lease_opts *o,
                 struct mesh_lease **out)
{
	struct mesh_lease *l = NULL;
	char filter[MESH_LEASE_NAME_MAX + 4];
	jsOptions jo;
	natsStatus s;
	mesh_err err;

	if ((err = opts_check(o)) != MESH_OK ||
	    (err = lease_alloc(o, &l)) != MESH_OK) {
		return err;
	}
	jsOptions_Init(&jo);
	jo.Wait = o->ttl_ms / 3;
	snprintf(filter, sizeof(filter), "%s.>", l->group);
	if ((s = natsConnection_JetStream(&l->js, mesh_conn_nats(c), &jo)) !=
	    NATS_OK) {
		err = mesh_err_nats(s, 0, "lease group '%s'", l->group);
		goto fail;
	}
	if ((err = lease_bucket(c, true, &l->kv)) != MESH_OK) {
		goto fail;
	}
	if ((s = follow_open(l)) != NATS_OK) {
		err = mesh_err_nats(s, 0, "lease group '%s': following",
		                    l->group);
		goto fail;
	}
	if ((err = sync_view(l)) != MESH_OK) {
		goto fail;
	}
	for (int p = 0; p < l->n; p++) {
		if (l->seen[p].rev == 0) {
			l->seen[p].seen_ms =
			        mesh_mono_ms(); /* free from now */
		}
	}
	pthread_mutex_lock(&l->mu);
	heartbeat(l);
	pthread_mutex_unlock(&l->mu);
	if (pthread_create(&l->cb, NULL, callback_main, l) != 0) {
		err = mesh_err_errno(errno, "lease group '%s': thread",
		                     l->group);
		goto fail;
	}
	if (pthread_create(&l->watcher, NULL, watcher_main, l) != 0) {
		l->cb_stop = true;
		pthread_cond_signal(&l->cb_wake);
		pthread_join(l->cb, NULL);
		err = mesh_err_errno(errno, "lease group '%s': thread",
		                     l->group);
		goto fail;
	}
	if (pthread_create(&l->manager, NULL, manager_main, l) != 0) {
		err = mesh_err_errno(errno, "lease group '%s': thread",
		                     l->group);
		pthread_mutex_lock(&l->mu);
		l->watch_stop = l->cb_stop = true;
		pthread_cond_signal(&l->cb_wake);
		pthread_mutex_unlock(&l->mu);
		pthread_join(l->watcher, NULL);
		pthread_join(l->cb, NULL);
		goto fail;
	}
	*out = l;
	return MESH_OK;
fail:
	lease_free(l);
	return err;
}

void
mesh_lease_release(struct mesh_lease *l, int partition)
{
	if (partition < 0 || partition >= l->n) {
		return;
	}
	pthread_mutex_lock(&l->mu);
	if (l->own[partition].state == OWN_HANDING) {
		l->own[partition].state = OWN_RELEASING;
		l->kick = true;
		pthread_cond_signal(&l->wake);
	}
	pthread_mutex_unlock(&l->mu);
}

bool
mesh_lease_held(struct mesh_lease *l, int partition, uint64_t epoch)
{
	bool held;
	struct own *o;

	if (partition < 0 || partition >= l->n) {
		return false;
	}
	pthread_mutex_lock(&l->mu);
	o = &l->own[partition];
	held = owning(o) && o->epoch == epoch &&
	       mesh_mono_ms() - o->ok_ms < l->ttl - l->ttl / 3;
	pthread_mutex_unlock(&l->mu);
	return held;
}

int
mesh_lease_count(struct mesh_lease *l)
{
	int n = 0;

	pthread_mutex_lock(&l->mu);
	for (int p = 0; p < l->n; p++) {
		n += owning(&l->own[p]);
	}
	pthread_mutex_unlock(&l->mu);
	return n;
}

void
mesh_lease_stop(struct mesh_lease *l, int64_t timeout_ms)
{
	if (l == NULL) {
		return;
	}
	pthread_mutex_lock(&l->mu);
	l->leaving = true;
	l->leave_deadline = mesh_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	l->kick = true;
	pthread_cond_signal(&l->wake);
	pthread_mutex_unlock(&l->mu);
	pthread_join(l->manager, NULL);

	pthread_mutex_lock(&l->mu);
	l->watch_stop = true;
	pthread_mutex_unlock(&l->mu);
	pthread_join(l->watcher, NULL);

	pthread_mutex_lock(&l->mu);
	l->cb_stop = true;
	pthread_cond_signal(&l->cb_wake);
	pthread_mutex_unlock(&l->mu);
	pthread_join(l->cb, NULL);
	lease_free(l);
}

/* ---- a group seen from outside -------------------------------------------
 */

struct snapshot {
	struct mesh_lease_view *leases; /* MESH_LEASE_PARTITIONS_MAX */
	struct mesh_lease_member *members;
	size_t nmembers, cap;
	int partitions; /* from the members' records, else highest key + 1 */
	size_t keys;
};

static mesh_err
snapshot_add(struct snapshot *sn, const char *group, kvEntry *e)
{
	char name[MESH_LEASE_NAME_MAX + 1];
	int k = key_parse(group, kvEntry_Key(e), name, sizeof(name));
	int64_t age = mesh_wall_ms() - kvEntry_Created(e) / 1000000;
	bool deleted = entry_deleted(e);
	struct record r;

	if (k < -1) {
		return MESH_OK;
	}
	sn->keys++;
	record_parse(deleted ? NULL : kvEntry_Value(e), kvEntry_ValueLen(e),
	             k == -1, 0, &r);
	if (k >= 0) {
		struct mesh_lease_view *v = &sn->leases[k];
		mesh__copy_str(v->owner, sizeof(v->owner),
		               deleted ? "" : r.name);
		v->revision = kvEntry_Revision(e);
		v->age_ms = age;
		v->handing = r.handing;
		sn->partitions =
		        k + 1 > sn->partitions ? k + 1 : sn->partitions;
		return MESH_OK;
	}
	if (deleted) {
		return MESH_OK;
	}
	if (sn->nmembers == sn->cap) {
		size_t cap = sn->cap ? sn->cap * 2 : 8;
		struct mesh_lease_member *m =
		        realloc(sn->members, cap * sizeof(*m));
		if (m == NULL) {
			return mesh_err_set(MESH_ENOMEM, "lease group '%s'",
			                    group);
		}
		sn->members = m;
		sn->cap = cap;
	}
	struct mesh_lease_member *m = &sn->members[sn->nmembers++];
	mesh__copy_str(m->instance, sizeof(m->instance), name);
	m->partitions = r.partitions;
	m->ttl_ms = r.ttl_ms;
	m->started_ms = r.started_ms;
	m->age_ms = age;
	m->alive = age < r.ttl_ms;
	return MESH_OK;
}

static int
member_cmp(const void *a, const void *b)
{
	return strcmp(((const struct mesh_lease_member *)a)->instance,
	              ((const struct mesh_lease_member *)b)->instance);
}

/* The group's keys as they are now. Free sn's arrays after. */
static mesh_err
snapshot_read(struct mesh_conn *c, const char *group, struct snapshot *sn)
{
	char filter[MESH_LEASE_NAME_MAX + 4];
	int64_t until = mesh_mono_ms() + SYNC_TIMEOUT_MS;
	kvStore *kv = NULL;
	kvWatcher *w = NULL;
	mesh_err err;
	natsStatus s;

	memset(sn, 0, sizeof(*sn));
	if ((err = name_check("group", group)) != MESH_OK) {
		return err;
	}
	sn->leases = calloc(MESH_LEASE_PARTITIONS_MAX, sizeof(*sn->leases));
	if (sn->leases == NULL) {
		return mesh_err_set(MESH_ENOMEM, "lease group '%s'", group);
	}
	if ((err = lease_bucket(c, false, &kv)) != MESH_OK) {
		return err == MESH_ENOTFOUND
		               ? mesh_err_set(err,
		                              "lease group '%s': not found",
		                              group)
		               : err;
	}
	snprintf(filter, sizeof(filter), "%s.>", group);
	if ((s = kvStore_Watch(&w, kv, filter, NULL)) != NATS_OK) {
		err = mesh_err_nats(s, 0, "lease group '%s': watching", group);
	}
	while (err == MESH_OK) {
		kvEntry *e = NULL;
		s = kvWatcher_Next(&e, w, until - mesh_mono_ms());
		if (s != NATS_OK) {
			err = mesh_err_nats(s, 0, "lease group '%s': reading",
			                    group);
		} else if (e == NULL) {
			break;
		} else {
			err = snapshot_add(sn, group, e);
			kvEntry_Destroy(e);
		}
	}
	kvWatcher_Destroy(w);
	kvStore_Destroy(kv);
	if (err == MESH_OK && sn->keys == 0) {
		err = mesh_err_set(MESH_ENOTFOUND,
		                   "lease group '%s': not found", group);
	}
	for (size_t i = 0; i < sn->nmembers; i++) {
		if (sn->members[i].partitions > sn->partitions &&
		    sn->members[i].partitions <= MESH_LEASE_PARTITIONS_MAX) {
			sn->partitions = sn->members[i].partitions;
		}
	}
	return err;
}

static void
snapshot_fini(struct snapshot *sn)
{
	free(sn->leases);
	free(sn->members);
}

mesh_err
mesh_lease_list(struct mesh_conn *c, const char *group,
                struct mesh_lease_view *out, size_t max, size_t *n)
{
	struct snapshot sn;
	mesh_err err = snapshot_read(c, group, &sn);

	*n = 0;
	if (err == MESH_OK) {
		for (int p = 0; p < sn.partitions; p++) {
			struct mesh_lease_view *v = &sn.leases[p];
			if (v->revision == 0) {
				v->age_ms = -1;
			}
			v->partition = p;
			if ((size_t)p < max) {
				out[p] = *v;
			}
		}
		*n = (size_t)sn.partitions;
	}
	snapshot_fini(&sn);
	return err;
}

mesh_err
mesh_lease_members(struct mesh_conn *c, const char *group,
                   struct mesh_lease_member *out, size_t max, size_t *n)
{
	struct snapshot sn;
	mesh_err err = snapshot_read(c, group, &sn);

	*n = 0;
	if (err == MESH_OK) {
		qsort(sn.members, sn.nmembers, sizeof(*sn.members),
		      member_cmp);
		for (size_t i = 0; i < sn.nmembers && i < max; i++) {
			out[i] = sn.members[i];
		}
		*n = sn.nmembers;
	}
	snapshot_fini(&sn);
	return err;
}
