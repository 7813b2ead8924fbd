/* supervisor.c: mesh-supervisor's one deciding thread and what feeds it
 * (see supervisor.h). */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <nats/nats.h>

#include "instance.h"
#include "mesh/clock.h"
#include "mesh/filter.h"
#include "mesh/function.h"
#include "mesh/lease.h"
#include "mesh/service_api.h"
#include "mesh/source.h"
#include "mesh/subscription.h"
#include "mesh/event.h"
#include "mesh/wire.h"
#include "scale.h"
#include "supervisor.h"

#define SUP_NAME        "mesh-supervisor"
#define FAST_EXIT_MS    10000 /* an instance gone sooner crashed early */
#define BACKOFF_BASE_MS 500
#define BACKOFF_MAX_MS  30000
#define ARM_RETRY_MS    5000 /* a source that could not be watched */
#define GRAVE_MS        2000 /* a wake subscription freed this long after */
#define REAP_EVERY_MS   50   /* with instances: how often exits are seen */
#define IDLE_WAIT_MS    1000 /* without: the loop's longest sleep */
#define READ_SOURCES    (MESH_FUNCTION_SOURCES_MAX + 1024)
#define HELD_MAX        1000 /* requests held per function */
#define PROBE_EVERY_MS  5    /* is an instance answering requests yet? */
#define PROBE_SLOW_MS   100  /* ... once PROBE_FAST_MS went by without */
#define PROBE_FAST_MS   2000
#define PROBE_WAIT_MS   500 /* one probe's answer */
/* Our probe's header: the request subscription we hold answers it "held"
 * (no instance took it); an instance answers it 400 (no Mesh-Route), as
 * any responder of the protocol does, without running a handler. */
#define PROBE_HDR "Mesh-Supervisor-Probe"

struct sup;
struct fn;

/* A wake subscription: a source of a function at zero, its callback's
 * argument, never changed once subscribed. Taken down, it is unsubscribed
 * at once and freed (with its subscription and filter) GRAVE_MS later:
 * cnats 3.4's reading thread may still hold a message for it, and
 * destroying a subscription under it crashes (nats.c#637, fixed in 3.6);
 * its callback may still be running. */
struct wake {
	struct fn *f;
	natsSubscription *sub;
	struct mesh_filter *filter; /* a subscription's policy; NULL: all */
	char spec[MESH_SUBSCRIPTION_ID_MAX + 16];
	int64_t buried;    /* mono: when taken down */
	struct wake *next; /* in the graveyard */
	/* The request subscription (mesh.service.NAME.request) is drained,
	 * not unsubscribed: what the broker sent before it heard still
	 * arrives, and is forwarded (an instance answers) or refused. */
	bool request;
	bool forward;
	char refuse[160]; /* why, when not forwarded */
};

/* A request held for an instance, with its reply subject and headers. */
struct held {
	natsMsg *m;
	int64_t at; /* mono: when it came */
};

struct fn {
	struct sup *sup;
	struct fn *next;
	struct mesh_function def;
	bool defined;   /* in the bucket */
	bool redefined; /* program, args or env changed: replace instances */
	bool bad;       /* a record we cannot read */
	uint64_t gen;   /* changes with every put and delete of it */
	int slot;

	struct wake *wake[MESH_FUNCTION_SOURCES_MAX];
	size_t n_wake;
	bool armed;
	int64_t arm_after; /* mono: try arming again then */
	bool woken;
	char woken_by[320];

	/* Requests while no instance answers them: held here, then handed
	 * to the instance (its routes from the definition). */
	struct wake *req;
	bool req_live;  /* an instance answered since req was subscribed */
	bool req_quiet; /* its instances are about to stop: no probe */
	struct held *held;
	size_t n_held;
	int64_t probe_after, probing_since; /* mono */
	uint64_t refused;

	struct instance inst[MESH_FUNCTION_INSTANCES_MAX];
	int n_inst;
	uint64_t cold_starts, exits;
	int fast_exits;
	int64_t start_after; /* mono: back-off after an early exit */
	bool crash_loop;
	char last_exit[128];

	struct scale_state scale;
	uint64_t backlog;
	uint64_t requests;  /* answered by its instances: their stats
	                       counters' increases, summed */
	int64_t read_after; /* mono */
	struct {
		int64_t at_ms;
		int from, to;
		char why[320];
	} decision;
};

enum slot_state { SLOT_FREE = 0, SLOT_HELD, SLOT_HANDING };

struct sup {
	struct mesh_conn *c;
	struct supervisor_opts o;
	char instance[64];
	pthread_mutex_t mu;
	pthread_cond_t cond;
	bool kick;
	volatile sig_atomic_t *stop;
	struct fn *fns;
	struct wake *graves; /* taken down, freed GRAVE_MS later */
	struct mesh_lease *lease;
	enum slot_state slot[MESH_SUPERVISOR_SLOTS];
	uint64_t epoch[MESH_SUPERVISOR_SLOTS];
	kvStore *kv;
	kvWatcher *watcher;
	pthread_t watch_thread;
	bool watching;
	natsSubscription *info_sub, *list_sub;
	/* The instances' stats answers: INBOX.NAME (on_stats). */
	natsSubscription *stats_sub;
	char stats_inbox[128];
	pthread_t gate_thread; /* hands held requests over (gate_main) */
	pthread_cond_t gate_cond;
	bool gating, gate_kick, gate_quit;
};

/* ---- logs ----------------------------------------------------------------
 */

static void
slog(struct sup *s, const char *level, const struct fn *f, const char *fmt,
     ...)
{
	char msg[1024], when[40];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	json_t *j;
	char *line;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	mesh_text_clean(msg);
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, 24, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(when + strlen(when), sizeof(when) - strlen(when), ".%03ldZ",
	         ts.tv_nsec / 1000000);
	j = json_pack("{s:s, s:s, s:s, s:s, s:s}", "time", when, "level",
	              level, "program", SUP_NAME, "instance", s->instance,
	              "msg", msg);
	if (j != NULL && f != NULL) {
		json_object_set_new(j, "function", json_string(f->def.name));
	}
	if (j != NULL && (line = json_dumps(j, JSON_COMPACT)) != NULL) {
		fprintf(stderr, "%s\n", line);
		free(line);
	}
	json_decref(j);
}

static void
kick(struct sup *s)
{
	s->kick = true;
	pthread_cond_signal(&s->cond);
	s->gate_kick = true;
	pthread_cond_signal(&s->gate_cond);
}

/* ---- the functions' table ------------------------------------------------
 */

static struct fn *
fn_find(struct sup *s, const char *name)
{
	for (struct fn *f = s->fns; f != NULL; f = f->next) {
		if (strcmp(f->def.name, name) == 0) {
			return f;
		}
	}
	return NULL;
}

static struct fn *
fn_get(struct sup *s, const char *name)
{
	struct fn *f = fn_find(s, name);

	if (f == NULL && (f = calloc(1, sizeof(*f))) != NULL) {
		f->sup = s;
		mesh_function_init(&f->def);
		snprintf(f->def.name, sizeof(f->def.name), "%s", name);
		f->slot = mesh_function_slot(name);
		f->next = s->fns;
		s->fns = f;
	}
	return f;
}

static bool
strv_same(char **a, size_t na, char **b, size_t nb)
{
	if (na != nb) {
		return false;
	}
	for (size_t i = 0; i < na; i++) {
		if (strcmp(a[i], b[i]) != 0) {
			return false;
		}
	}
	return true;
}

/* How an instance is started changed: the running ones are replaced. */
static bool
run_changed(const struct mesh_function *a, const struct mesh_function *b)
{
	return a->program == NULL || b->program == NULL ||
	       strcmp(a->program, b->program) != 0 ||
	       !strv_same(a->args, a->n_args, b->args, b->n_args) ||
	       !strv_same(a->env, a->n_env, b->env, b->n_env) ||
	       !strv_same(a->sources, a->n_sources, b->sources, b->n_sources);
}

/* A definition put or deleted (the watcher's thread; s->mu held). */
static void
fn_apply(struct sup *s, kvEntry *e)
{
	const char *key = kvEntry_Key(e);
	kvOperation op = kvEntry_Operation(e);
	struct mesh_function def;
	struct fn *f;

	if (key == NULL || (f = fn_get(s, key)) == NULL) {
		return;
	}
	f->gen++;
	if (op != kvOp_Put) {
		if (f->defined) {
			slog(s, "info", f, "deleted: its instances stop");
		}
		f->defined = false;
		kick(s);
		return;
	}
	mesh_function_init(&def);
	if (mesh_function_decode(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e),
	                         &def) != MESH_OK) {
		if (!f->bad) {
			slog(s, "error", f, "its record cannot be read: %s",
			     mesh_errdetail());
		}
		f->bad = true;
		f->defined = false;
		mesh_function_fini(&def);
		kick(s);
		return;
	}
	f->bad = false;
	if (f->defined && run_changed(&f->def, &def)) {
		f->redefined = true;
		/* A mended program gets a fresh start, no back-off. */
		f->fast_exits = 0;
		f->start_after = 0;
		f->crash_loop = false;
	}
	if (!f->defined) {
		f->redefined = true; /* disarm a stale set of sources */
	}
	mesh_function_fini(&f->def);
	f->def = def;
	snprintf(f->def.name, sizeof(f->def.name), "%s", key);
	f->defined = true;
	slog(s, "info", f,
	     "defined: %s, %d-%d instances, idle %" PRId64 " ms, %" PRId64
	     " per instance, %zu sources",
	     f->def.program, f->def.min, f->def.max, f->def.idle_ms,
	     f->def.target_backlog, f->def.n_sources);
	kick(s);
}

static void *
watch_main(void *arg)
{
	struct sup *s = arg;

	while (!*s->stop) {
		kvEntry *e = NULL;
		natsStatus st = kvWatcher_Next(&e, s->watcher, 500);
		if (st == NATS_OK && e != NULL) {
			pthread_mutex_lock(&s->mu);
			fn_apply(s, e);
			pthread_mutex_unlock(&s->mu);
			kvEntry_Destroy(e);
		} else if (st == NATS_ILLEGAL_STATE) {
			break; /* stopped */
		}
	}
	return NULL;
}

/* ---- slots ---------------------------------------------------------------
 */

static void
on_acquired(void *arg, int slot, uint64_t epoch)
{
	struct sup *s = arg;

	pthread_mutex_lock(&s->mu);
	s->slot[slot] = SLOT_HELD;
	s->epoch[slot] = epoch;
	kick(s);
	pthread_mutex_unlock(&s->mu);
}

static void
on_revoked(void *arg, int slot, bool lost)
{
	struct sup *s = arg;

	pthread_mutex_lock(&s->mu);
	s->slot[slot] = lost ? SLOT_FREE : SLOT_HANDING;
	kick(s);
	pthread_mutex_unlock(&s->mu);
}

static bool
slot_held(struct sup *s, int slot)
{
	return s->slot[slot] == SLOT_HELD &&
	       mesh_lease_held(s->lease, slot, s->epoch[slot]);
}

/* ---- waking ---------------------------------------------------------------
 */

/* f is wanted: the first reason is kept (s->mu held). */
static void
wake_up(struct fn *f, const char *what, const char *where)
{
	if (!f->woken) {
		f->woken = true;
		snprintf(f->woken_by, sizeof(f->woken_by), "%s on %s", what,
		         where);
	}
	kick(f->sup);
}

static void
on_wake(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
	struct wake *w = arg;
	struct fn *f = w->f;
	struct sup *s = f->sup;
	bool match = true;

	(void)nc;
	(void)sub;
	if (w->filter != NULL) {
		struct mesh_event *ev = NULL;
		char why[128] = "";
		/* What the service would dead-letter wakes it too. */
		if (mesh_wire_read(m, 0, "wake", &ev, why, sizeof(why)) ==
		            MESH_OK &&
		    why[0] == '\0' &&
		    strcmp(mesh_event_type(ev), MESH_WIRE_RAW_TYPE) != 0) {
			match = mesh_filter_match_event(w->filter, ev);
		}
		mesh_event_free(ev);
	}
	if (match) {
		pthread_mutex_lock(&s->mu);
		wake_up(f, "an event", w->spec);
		pthread_mutex_unlock(&s->mu);
	}
	natsMsg_Destroy(m);
}

static void
disarm(struct fn *f)
{
	struct sup *s = f->sup;

	for (size_t i = 0; i < f->n_wake; i++) {
		struct wake *w = f->wake[i];
		if (w->sub != NULL) {
			natsSubscription_Unsubscribe(w->sub);
		}
		w->buried = mesh_mono_ms();
		w->next = s->graves;
		s->graves = w;
		f->wake[i] = NULL;
	}
	f->n_wake = 0;
	f->armed = false;
}

/* Destroy what was taken down long enough ago (all: at the end). */
static void
bury(struct sup *s, bool all)
{
	int64_t now = mesh_mono_ms();

	for (struct wake **wp = &s->graves; *wp != NULL;) {
		struct wake *w = *wp;
		if (all || now - w->buried >= GRAVE_MS) {
			if (w->request) {
				/* Drained by now, bar a broker away. */
				natsSubscription_WaitForDrainCompletion(w->sub,
				                                        100);
			}
			natsSubscription_Destroy(w->sub);
			mesh_filter_free(w->filter);
			*wp = w->next;
			free(w);
		} else {
			wp = &w->next;
		}
	}
}

/* The sources' specs: the definition's, and a partitioned service's
 * partitions (forwarded events wait there). */
static size_t
read_specs(const struct fn *f, char (*specs)[MESH_SUBSCRIPTION_ID_MAX + 16],
           size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < f->def.n_sources && n < max; i++) {
		snprintf(specs[n++], sizeof(*specs), "%s", f->def.sources[i]);
	}
	for (int k = 0; k < f->def.partitions && n < max; k++) {
		snprintf(specs[n++], sizeof(*specs), "partition:%s/%d",
		         f->def.name, k);
	}
	return n;
}

/* What the sources hold, summed, read with s->mu released (JetStream
 * requests: wakes and status requests must not wait for them). False
 * when one could not be read, or the definition changed meanwhile. */
static bool
read_backlog(struct fn *f, struct scale_reading *r)
{
	static char specs[READ_SOURCES][MESH_SUBSCRIPTION_ID_MAX + 16];
	struct sup *s = f->sup;
	size_t n = read_specs(f, specs, READ_SOURCES);
	char name[MESH_FUNCTION_NAME_MAX + 1];
	uint64_t gen = f->gen;
	bool good = true;

	snprintf(name, sizeof(name), "%s", f->def.name);
	r->backlog = r->delayed = r->delivered = 0;
	pthread_mutex_unlock(&s->mu);
	for (size_t i = 0; i < n && good; i++) {
		struct mesh_source_backlog b;
		if (mesh_source_backlog(s->c, specs[i], &b) != MESH_OK) {
			if (strncmp(specs[i], "partition:", 10) == 0) {
				continue; /* not made yet: its first start */
			}
			slog(s, "warn", NULL, "function '%s': source %s: %s",
			     name, specs[i], mesh_errdetail());
			good = false;
			break;
		}
		r->backlog += b.pending + b.in_flight;
		r->delayed += b.delayed;
		r->delivered += b.delivered;
	}
	pthread_mutex_lock(&s->mu);
	if (!good || f->gen != gen) {
		return false;
	}
	f->backlog = r->backlog;
	return true;
}

/* Subscribe to the sources' subjects, then look at what they already
 * hold: an event stored before the subscriptions were in place is seen
 * there. The broker's answers are awaited with s->mu released. */
static void
arm(struct fn *f, int64_t now)
{
	struct sup *s = f->sup;
	struct scale_reading r = {0};
	char subject[MESH_FUNCTION_SOURCES_MAX][512];
	struct mesh_filter *filter[MESH_FUNCTION_SOURCES_MAX] = {NULL};
	char spec[MESH_FUNCTION_SOURCES_MAX][MESH_SUBSCRIPTION_ID_MAX + 16];
	size_t n = f->def.n_sources, got = 0;
	uint64_t gen = f->gen;
	char name[MESH_FUNCTION_NAME_MAX + 1];

	if (f->armed || now < f->arm_after) {
		return;
	}
	snprintf(name, sizeof(name), "%s", f->def.name);
	n = n > MESH_FUNCTION_SOURCES_MAX ? MESH_FUNCTION_SOURCES_MAX : n;
	for (size_t i = 0; i < n; i++) {
		snprintf(spec[i], sizeof(spec[i]), "%s", f->def.sources[i]);
	}
	pthread_mutex_unlock(&s->mu);
	for (; got < n; got++) {
		if (mesh_source_watch(s->c, spec[got], subject[got],
		                      sizeof(subject[got]),
		                      &filter[got]) != MESH_OK) {
			slog(s, "error", NULL,
			     "function '%s': source %s cannot be watched: %s "
			     "(again in %d s)",
			     name, spec[got], mesh_errdetail(),
			     ARM_RETRY_MS / 1000);
			break;
		}
	}
	pthread_mutex_lock(&s->mu);
	if (got < n || f->gen != gen) {
		for (size_t i = 0; i < got; i++) {
			mesh_filter_free(filter[i]); /* no callback has it */
		}
		f->arm_after = got < n ? now + ARM_RETRY_MS : 0;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		struct wake *w = calloc(1, sizeof(*w));
		natsStatus st;
		if (w == NULL) {
			for (size_t k = i; k < n; k++) {
				mesh_filter_free(filter[k]);
			}
			disarm(f);
			f->arm_after = now + ARM_RETRY_MS;
			return;
		}
		f->wake[f->n_wake++] = w;
		*w = (struct wake){.f = f, .filter = filter[i]};
		memcpy(w->spec, spec[i], sizeof(w->spec));
		st = natsConnection_Subscribe(&w->sub, mesh_conn_nats(s->c),
		                              subject[i], on_wake, w);
		/* One message is enough to wake: the broker sends no more
		 * (a burst is not copied to us). A filter must see them all
		 * until one passes. */
		if (st == NATS_OK && w->filter == NULL) {
			st = natsSubscription_AutoUnsubscribe(w->sub, 1);
		}
		if (st != NATS_OK) {
			slog(s, "error", f, "source %s: subscribing to %s: %s",
			     w->spec, subject[i], natsStatus_GetText(st));
			for (size_t k = i + 1; k < n; k++) {
				mesh_filter_free(filter[k]);
			}
			disarm(f);
			f->arm_after = now + ARM_RETRY_MS;
			return;
		}
	}
	f->armed = true;
	pthread_mutex_unlock(&s->mu);
	mesh_conn_flush(s->c, 2000); /* the subscriptions are in place */
	pthread_mutex_lock(&s->mu);
	if (f->gen != gen || !read_backlog(f, &r)) {
		return; /* armed: an event still wakes it */
	}
	if (r.backlog > 0 || r.delayed > 0) {
		f->woken = true;
		snprintf(f->woken_by, sizeof(f->woken_by),
		         "%" PRIu64 " events waiting%s", r.backlog,
		         r.delayed > 0
		                 ? " (some delayed: they need a receiver)"
		                 : "");
	}
}

/* ---- instances ------------------------------------------------------------
 */

static int
alive(const struct fn *f)
{
	int n = 0;

	for (int i = 0; i < f->n_inst; i++) {
		n += f->inst[i].state != INSTANCE_STOPPING;
	}
	return n;
}

static bool
any_stopping(const struct fn *f)
{
	for (int i = 0; i < f->n_inst; i++) {
		if (f->inst[i].state == INSTANCE_STOPPING) {
			return true;
		}
	}
	return false;
}

static void
decide(struct fn *f, int from, int to, const char *why)
{
	f->decision.at_ms = mesh_wall_ms();
	f->decision.from = from;
	f->decision.to = to;
	snprintf(f->decision.why, sizeof(f->decision.why), "%s", why);
	slog(f->sup, "info", f, "scale %d -> %d: %s", from, to, why);
}

static void
start_some(struct fn *f, int n, int64_t now)
{
	struct sup *s = f->sup;

	for (int i = 0; i < n && f->n_inst < MESH_FUNCTION_INSTANCES_MAX;
	     i++) {
		struct instance *in = &f->inst[f->n_inst];
		if (!slot_held(s, f->slot)) {
			return; /* never two supervisors' instances by choice
			         */
		}
		struct instance_env ie = {.servers = s->o.servers,
		                          .supervisor = s->instance,
		                          .state_root = s->o.state_root,
		                          .log_dir = s->o.log_dir};
		if (instance_start(&f->def, &ie, in) != MESH_OK) {
			slog(s, "error", f, "%s", mesh_errdetail());
			f->start_after = now + BACKOFF_BASE_MS;
			return;
		}
		if (alive(f) == 0) {
			f->cold_starts++; /* from zero */
		}
		f->n_inst++;
		slog(s, "info", f, "instance %d started: %s", (int)in->pid,
		     f->def.program);
	}
}

/* Stop n instances, the newest first. */
static void
stop_some(struct fn *f, int n)
{
	for (int i = f->n_inst - 1; i >= 0 && n > 0; i--) {
		if (f->inst[i].state != INSTANCE_STOPPING) {
			instance_stop(&f->inst[i]);
			slog(f->sup, "info", f,
			     "instance %d stopping (SIGTERM)",
			     (int)f->inst[i].pid);
			n--;
		}
	}
}

static void
exited(struct fn *f, int k, int status, int64_t now)
{
	struct instance *in = &f->inst[k];
	int64_t ran = now - in->started_mono;
	char how[64];

	if (WIFSIGNALED(status)) {
		snprintf(how, sizeof(how), "signal %d", WTERMSIG(status));
	} else {
		snprintf(how, sizeof(how), "status %d", WEXITSTATUS(status));
	}
	if (in->state == INSTANCE_STOPPING) {
		slog(f->sup, "info", f, "instance %d stopped (%s)",
		     (int)in->pid, how);
	} else {
		int64_t delay;
		f->exits++;
		f->fast_exits = ran < FAST_EXIT_MS ? f->fast_exits + 1 : 1;
		delay = (int64_t)BACKOFF_BASE_MS
		        << (f->fast_exits > 7 ? 6 : f->fast_exits - 1);
		delay = delay > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : delay;
		f->start_after = now + delay;
		f->crash_loop = f->fast_exits >= 3;
		snprintf(f->last_exit, sizeof(f->last_exit),
		         "pid %d, %s after %" PRId64 " ms", (int)in->pid, how,
		         ran);
		slog(f->sup, f->crash_loop ? "error" : "warn", f,
		     "instance %d exited unasked (%s after %" PRId64
		     " ms)%s; next start in %" PRId64 " ms",
		     (int)in->pid, how, ran,
		     f->crash_loop ? ": crash-looping" : "", delay);
	}
	f->inst[k] = f->inst[--f->n_inst];
}

static void
reap(struct sup *s, int64_t now)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (struct fn *f = s->fns; f != NULL; f = f->next) {
			for (int i = 0; i < f->n_inst; i++) {
				if (f->inst[i].pid == pid) {
					exited(f, i, status, now);
					goto next;
				}
			}
		}
	next:;
	}
}

/* ---- requests -------------------------------------------------------------
 *
 * A function whose program serves requests, at zero, is woken by one too:
 * the supervisor subscribes mesh.service.NAME.request in the queue group
 * "mesh-request" (so requests to it come here rather than to NATS's no
 * responders), holds each with its reply subject and headers, and starts
 * an instance. Once an instance answers a probe, the subscription is
 * drained (its UNSUB goes out before anything forwarded, on the same
 * connection, so nothing forwarded comes back here) and the held requests
 * are published again, their reply subjects unchanged: the instance
 * answers the caller itself. The subscription is kept while instances
 * start (probes that land here are answered "held"), so a request that
 * comes meanwhile is held too, not refused.
 */

static bool
serves(const struct fn *f)
{
	return f->defined && f->def.n_routes > 0 && f->def.partitions == 0;
}

/* Answer a request as the protocol's runtime does: Mesh-Status, JSON
 * {"message", "requestId"}. */
static void answer(natsConnection *nc, natsMsg *req, int status,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void
answer(natsConnection *nc, natsMsg *req, int status, const char *fmt, ...)
{
	const char *reply = natsMsg_GetReply(req), *id = NULL;
	char msg[512], code[8];
	natsMsg *out = NULL;
	char *text = NULL;
	va_list ap;
	json_t *j;

	if (reply == NULL) {
		return; /* published, not asked: nobody waits */
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	mesh_text_clean(msg);
	natsMsgHeader_Get(req, MESH_REQUEST_ID_HDR, &id);
	j = json_pack("{s:s, s:s}", "message", msg, "requestId", id ? id : "");
	if (j == NULL) { /* an id that is not UTF-8 */
		j = json_pack("{s:s, s:s}", "message", msg, "requestId", "");
	}
	snprintf(code, sizeof(code), "%d", status);
	if (j != NULL && (text = json_dumps(j, JSON_COMPACT)) != NULL &&
	    natsMsg_Create(&out, reply, NULL, text, (int)strlen(text)) ==
	            NATS_OK &&
	    natsMsgHeader_Set(out, MESH_REPLY_STATUS_HDR, code) == NATS_OK &&
	    natsMsgHeader_Set(out, MESH_REQUEST_CONTENT_TYPE_HDR,
	                      "application/json") == NATS_OK &&
	    (id == NULL ||
	     natsMsgHeader_Set(out, MESH_REQUEST_ID_HDR, id) == NATS_OK)) {
		natsConnection_PublishMsg(nc, out);
	}
	natsMsg_Destroy(out);
	free(text);
	json_decref(j);
}

/* Publish a held request again: its subject, reply subject, headers and
 * body as they came. */
static void
forward(natsConnection *nc, natsMsg *m)
{
	const char **keys = NULL, **values = NULL;
	natsMsg *out = NULL;
	natsStatus st;
	int n = 0, nv = 0;

	st = natsMsg_Create(&out, natsMsg_GetSubject(m), natsMsg_GetReply(m),
	                    natsMsg_GetData(m), natsMsg_GetDataLength(m));
	if (st == NATS_OK && natsMsgHeader_Keys(m, &keys, &n) == NATS_OK) {
		for (int i = 0; st == NATS_OK && i < n; i++) {
			st = natsMsgHeader_Values(m, keys[i], &values, &nv);
			for (int k = 0; st == NATS_OK && k < nv; k++) {
				st = natsMsgHeader_Add(out, keys[i],
				                       values[k]);
			}
			free((void *)values);
			values = NULL;
		}
	}
	if (st == NATS_OK) {
		natsConnection_PublishMsg(nc, out);
	}
	free((void *)keys);
	natsMsg_Destroy(out);
}

/* Why f's requests cannot wait for an instance; NULL: they can. */
static const char *
unservable(struct fn *f, char *why, size_t size)
{
	if (!f->defined) {
		snprintf(why, size, "the function was deleted");
	} else if (!serves(f)) {
		snprintf(why, size, "the function serves no requests");
	} else if (!slot_held(f->sup, f->slot)) {
		snprintf(why, size, "its supervisor no longer runs it");
	} else if (f->crash_loop) {
		snprintf(why, size,
		         "it is crash-looping (last exit: %s), its next start "
		         "in %" PRId64 " ms",
		         f->last_exit,
		         f->start_after > mesh_mono_ms()
		                 ? f->start_after - mesh_mono_ms()
		                 : 0);
	} else {
		return NULL;
	}
	return why;
}

static void
on_request(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
	struct wake *w = arg;
	struct fn *f = w->f;
	struct sup *s = f->sup;
	const char *probe = NULL;
	char why[300];

	(void)sub;
	if (natsMsgHeader_Get(m, PROBE_HDR, &probe) == NATS_OK) {
		natsMsg *out = NULL;
		if (natsMsg_GetReply(m) != NULL &&
		    natsMsg_Create(&out, natsMsg_GetReply(m), NULL, NULL, 0) ==
		            NATS_OK &&
		    natsMsgHeader_Set(out, PROBE_HDR, "held") == NATS_OK) {
			natsConnection_PublishMsg(nc, out);
		}
		natsMsg_Destroy(out);
		natsMsg_Destroy(m);
		return;
	}
	pthread_mutex_lock(&s->mu);
	if (w->buried != 0 && w->forward) {
		forward(nc, m);
	} else if (w->buried != 0) {
		f->refused++;
		answer(nc, m, 503, "function '%s': %s", f->def.name,
		       w->refuse);
	} else if (unservable(f, why, sizeof(why)) != NULL) {
		f->refused++;
		answer(nc, m, 503, "function '%s': %s", f->def.name, why);
	} else if (f->n_held == HELD_MAX ||
	           (f->held == NULL &&
	            (f->held = calloc(HELD_MAX, sizeof(*f->held))) == NULL)) {
		f->refused++;
		answer(nc, m, 503,
		       "function '%s' is starting: %d requests already wait "
		       "for its first instance",
		       f->def.name, HELD_MAX);
	} else {
		f->held[f->n_held++] = (struct held){m, mesh_mono_ms()};
		m = NULL;
		wake_up(f, "a request", w->spec);
	}
	pthread_mutex_unlock(&s->mu);
	natsMsg_Destroy(m);
}

/* Hold f's requests while it has no instance that answers them (s->mu
 * held). */
static void
req_arm(struct fn *f)
{
	struct sup *s = f->sup;
	struct wake *w;
	natsStatus st;

	if (f->req != NULL || !serves(f) ||
	    (w = calloc(1, sizeof(*w))) == NULL) {
		return;
	}
	*w = (struct wake){.f = f, .request = true};
	snprintf(w->spec, sizeof(w->spec), MESH_SERVICE_REQUEST_SUBJECT,
	         f->def.name);
	st = natsConnection_QueueSubscribe(&w->sub, mesh_conn_nats(s->c),
	                                   w->spec, MESH_SERVICE_REQUEST_QUEUE,
	                                   on_request, w);
	if (st != NATS_OK) {
		slog(s, "error", f, "subscribing to %s: %s", w->spec,
		     natsStatus_GetText(st));
		free(w); /* no callback has it */
		return;
	}
	f->req = w;
	f->req_live = false;
	f->probe_after = 0;
	f->probing_since = 0;
}

/* Stop holding f's requests: what still arrives is forwarded (an
 * instance answers) or refused with why. */
static void
req_drop(struct fn *f, bool forward, const char *why)
{
	struct sup *s = f->sup;
	struct wake *w = f->req;

	if (w == NULL) {
		return;
	}
	w->forward = forward;
	snprintf(w->refuse, sizeof(w->refuse), "%s", why);
	if (natsSubscription_Drain(w->sub) != NATS_OK) {
		natsSubscription_Unsubscribe(w->sub);
	}
	w->buried = mesh_mono_ms();
	w->next = s->graves;
	s->graves = w;
	f->req = NULL;
}

/* Before f's last instances stop: hold its requests from now on, the
 * subscription in place at the broker (flushed, s->mu released meanwhile)
 * before any instance hears SIGTERM and unsubscribes, so that no request
 * meets no responders between the two. The caller stops the instances,
 * then clears f->req_quiet: until then no probe is sent (an instance
 * about to stop would answer it). A request that comes meanwhile is
 * held and wakes the function again, as at zero; one the broker gives a
 * stopping instance before its unsubscription is answered by it (the
 * runtime drains its subscription and answers what it took). */
static void
req_hold(struct fn *f)
{
	struct sup *s = f->sup;

	if (!serves(f)) {
		return;
	}
	req_arm(f);
	f->req_quiet = true;
	pthread_mutex_unlock(&s->mu);
	mesh_conn_flush(s->c, 2000);
	pthread_mutex_lock(&s->mu);
}

/* Whether an instance answers requests on subject: a request without
 * Mesh-Route, which the runtime answers 400 at once, running nothing. */
static bool
probe(struct sup *s, const char *subject)
{
	natsMsg *m = NULL, *reply = NULL;
	const char *v = NULL;
	bool ready = false;

	if (natsMsg_Create(&m, subject, NULL, NULL, 0) == NATS_OK &&
	    natsMsgHeader_Set(m, PROBE_HDR, s->instance) == NATS_OK &&
	    natsMsgHeader_Set(m, MESH_REQUEST_ID_HDR,
	                      "mesh-supervisor-probe") == NATS_OK &&
	    natsConnection_RequestMsg(&reply, mesh_conn_nats(s->c), m,
	                              PROBE_WAIT_MS) == NATS_OK) {
		ready = natsMsgHeader_Get(reply, PROBE_HDR, &v) != NATS_OK &&
		        natsMsgHeader_Get(reply, MESH_REPLY_STATUS_HDR, &v) ==
		                NATS_OK;
	}
	natsMsg_Destroy(reply);
	natsMsg_Destroy(m);
	return ready;
}

/* Take the first n held requests out of f. */
static void
held_pop(struct fn *f, size_t n)
{
	memmove(f->held, f->held + n, (f->n_held - n) * sizeof(*f->held));
	f->n_held -= n;
}

/* One look at f's requests (s->mu held; released while probing). The
 * mono ms it wants to look again at, INT64_MAX: none. */
static int64_t
gate_step(struct sup *s, struct fn *f, int64_t now)
{
	natsConnection *nc = mesh_conn_nats(s->c);
	int64_t next = INT64_MAX;
	char why[300];

	if (f->n_held > 0 && unservable(f, why, sizeof(why)) != NULL) {
		for (size_t i = 0; i < f->n_held; i++) {
			answer(nc, f->held[i].m, 503, "function '%s': %s",
			       f->def.name, why);
			natsMsg_Destroy(f->held[i].m);
		}
		slog(s, "warn", f, "%zu held requests answered 503: %s",
		     f->n_held, why);
		f->refused += f->n_held;
		f->n_held = 0;
	}
	while (f->n_held > 0 && now - f->held[0].at >= s->o.request_wait_ms) {
		answer(nc, f->held[0].m, 504,
		       "function '%s': no instance answered within %" PRId64
		       " ms of the request (a cold start)",
		       f->def.name, s->o.request_wait_ms);
		natsMsg_Destroy(f->held[0].m);
		held_pop(f, 1);
		f->refused++;
	}
	/* Not while an instance stops: a probe it answered (before its
	 * subscription is drained) would hand the held requests over while
	 * the instance starting may not listen yet: no responders. Its stop
	 * ends with its exit, seen within REAP_EVERY_MS. */
	if (f->req != NULL && alive(f) > 0 && !any_stopping(f) &&
	    !f->req_quiet) {
		if (now >= f->probe_after) {
			struct wake *w = f->req;
			char subject[sizeof(w->spec)];
			bool ready;
			snprintf(subject, sizeof(subject), "%s", w->spec);
			if (f->probing_since == 0) {
				f->probing_since = now;
			}
			pthread_mutex_unlock(&s->mu);
			ready = probe(s, subject);
			pthread_mutex_lock(&s->mu);
			now = mesh_mono_ms();
			if (ready && f->req == w && !any_stopping(f) &&
			    !f->req_quiet) {
				slog(s, "info", f,
				     "an instance answers requests (%" PRId64
				     " ms after the first start): %zu held "
				     "requests handed over",
				     now - f->probing_since, f->n_held);
				req_drop(f, true, "");
				f->req_live = true;
			}
			f->probe_after =
			        now + (now - f->probing_since < PROBE_FAST_MS
			                       ? PROBE_EVERY_MS
			                       : PROBE_SLOW_MS);
		}
		if (f->req != NULL) {
			next = f->probe_after;
		}
	} else if (f->req != NULL && alive(f) > 0) {
		next = now + REAP_EVERY_MS; /* instances stopping */
	} else if (f->req != NULL) {
		f->probing_since = 0;
		f->probe_after = 0;
	}
	if (f->req == NULL && f->req_live && f->n_held > 0) {
		/* In order, before anything the drained subscription still
		 * brings (its callback forwards under s->mu too). */
		for (size_t i = 0; i < f->n_held; i++) {
			forward(nc, f->held[i].m);
			natsMsg_Destroy(f->held[i].m);
		}
		f->n_held = 0;
	}
	if (f->n_held > 0 && f->held[0].at + s->o.request_wait_ms < next) {
		next = f->held[0].at + s->o.request_wait_ms;
	}
	return next;
}

static void *
gate_main(void *arg)
{
	struct sup *s = arg;

	pthread_mutex_lock(&s->mu);
	while (!s->gate_quit) {
		int64_t now = mesh_mono_ms(), at = INT64_MAX;
		s->gate_kick = false;
		/* New functions go to the head: the rest stays linked. */
		for (struct fn *f = s->fns; f != NULL; f = f->next) {
			int64_t t = gate_step(s, f, now);
			at = t < at ? t : at;
			now = mesh_mono_ms();
		}
		if (s->gate_kick || s->gate_quit) {
			continue;
		}
		if (at == INT64_MAX) {
			pthread_cond_wait(&s->gate_cond, &s->mu);
		} else if (at > now) {
			struct timespec ts;
			int64_t wait = at - now;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += wait / 1000;
			ts.tv_nsec += (wait % 1000) * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&s->gate_cond, &s->mu, &ts);
		}
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

/* ---- requests as work ----------------------------------------------------
 *
 * Requests are work to the scaling decision: a function serving them is
 * not idle while they come. The supervisor learns of them from its
 * instances' stats (mesh.service.NAME.stats, the "requests" counter each
 * instance keeps), asked on each backlog reading with a reply subject of
 * ours and read as the answers come, never awaited: one small request per
 * function and tick, one answer per instance, whatever the request rate.
 * Not an observer subscription on the request subject: that would copy
 * every request (and its body) to the supervisor, and, a plain
 * subscriber, it counts as a responder: a request no instance takes would
 * wait out its caller's timeout where NATS now answers no responders at
 * once. The counters are read per instance (by pid; other processes
 * serving the service are not ours to count): an instance that stops
 * takes its count with it, and a new one starts at 0, so f->requests sums
 * each instance's increases and only grows. An answer is counted at the
 * reading after it came: a tick late at most. Each answer also says how
 * many requests wait at the instance or are being served
 * ("requests_waiting"): their sum over the running instances is backlog
 * to the decision, as events waiting are, so requests coming faster than
 * its instances serve them start more (target_backlog each).
 */

static void
on_stats(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
	struct sup *s = arg;
	const char *name = strrchr(natsMsg_GetSubject(m), '.'), *who, *dash;
	json_t *j = json_loadb(natsMsg_GetData(m),
	                       (size_t)natsMsg_GetDataLength(m), 0, NULL);
	json_t *n = json_object_get(j, "requests");
	json_t *waiting = json_object_get(j, "requests_waiting");
	struct fn *f;

	(void)nc;
	(void)sub;
	who = json_string_value(json_object_get(j, "instance"));
	dash = who != NULL ? strrchr(who, '-') : NULL;
	if (name != NULL && dash != NULL && json_is_integer(n) &&
	    json_integer_value(n) >= 0) {
		pid_t pid = (pid_t)atol(dash + 1);
		uint64_t v = (uint64_t)json_integer_value(n);
		pthread_mutex_lock(&s->mu);
		f = fn_find(s, name + 1);
		for (int i = 0; f != NULL && i < f->n_inst; i++) {
			struct instance *in = &f->inst[i];
			if (in->pid != pid) {
				continue;
			}
			if (v > in->requests) {
				f->requests += v - in->requests;
				in->requests = v;
			}
			if (json_is_integer(waiting) &&
			    json_integer_value(waiting) >= 0) {
				in->requests_waiting =
				        (uint64_t)json_integer_value(waiting);
			}
		}
		pthread_mutex_unlock(&s->mu);
	}
	json_decref(j);
	natsMsg_Destroy(m);
}

/* Ask f's instances for their stats (answered to on_stats). */
static void
ask_stats(struct sup *s, const struct fn *f)
{
	char subject[MESH_FUNCTION_NAME_MAX + 32];
	char reply[sizeof(s->stats_inbox) + MESH_FUNCTION_NAME_MAX + 2];

	snprintf(subject, sizeof(subject), MESH_SERVICE_STATS_SUBJECT,
	         f->def.name);
	snprintf(reply, sizeof(reply), "%s.%s", s->stats_inbox, f->def.name);
	natsConnection_PublishRequest(mesh_conn_nats(s->c), subject, reply,
	                              NULL, 0);
}

/* ---- the decision, per function ------------------------------------------
 */

static void
step(struct sup *s, struct fn *f, int64_t now)
{
	bool owned = f->defined && slot_held(s, f->slot);
	int up = alive(f), want = up;
	char why[320] = "";

	for (int i = 0; i < f->n_inst; i++) {
		struct instance *in = &f->inst[i];
		if (in->state == INSTANCE_STARTING &&
		    now - in->started_mono >= INSTANCE_SETTLE_MS) {
			in->state = INSTANCE_RUNNING;
		}
		if (in->state == INSTANCE_RUNNING &&
		    now - in->started_mono >= FAST_EXIT_MS) {
			f->fast_exits = 0;
			f->crash_loop = false;
		}
		if (in->state == INSTANCE_STOPPING &&
		    now - in->term_mono >= INSTANCE_KILL_MS) {
			slog(s, "warn", f,
			     "instance %d still running %d s "
			     "after SIGTERM: SIGKILL",
			     (int)in->pid, INSTANCE_KILL_MS / 1000);
			kill(in->pid, SIGKILL);
			in->term_mono = now; /* once more later if need be */
		}
	}
	if (!owned || f->redefined) {
		if (up > 0 && owned && f->defined) {
			req_hold(f); /* replaced: none meets no responders */
		}
		if (up > 0) {
			decide(f, up, 0,
			       !f->defined    ? "the function was deleted"
			       : f->redefined ? "the definition changed: "
			                        "instances replaced"
			                      : "its slot went to another "
			                        "supervisor");
			stop_some(f, up);
			f->req_quiet = false;
		}
		disarm(f);
		if (!owned || !serves(f)) {
			req_drop(f, false,
			         !f->defined ? "the function was deleted"
			         : !serves(f)
			                 ? "the function serves no "
			                   "requests"
			                 : "its supervisor no longer runs "
			                   "it");
		}
		f->redefined = false;
		f->woken = false;
		memset(&f->scale, 0, sizeof(f->scale));
		return;
	}
	if (up == 0) {
		req_arm(f);
		arm(f, now);
		if (f->woken || f->def.min > 0 || f->n_held > 0) {
			want = f->def.min > 0 ? f->def.min : 1;
			if (f->woken) {
				snprintf(why, sizeof(why), "%s", f->woken_by);
			} else if (f->n_held > 0) {
				snprintf(why, sizeof(why), "%zu requests held",
				         f->n_held);
			} else {
				snprintf(why, sizeof(why), "min instances");
			}
		}
	} else if (now >= f->read_after) {
		struct scale_limits lim = {f->def.min, f->def.max,
		                           f->def.target_backlog,
		                           f->def.idle_ms};
		struct scale_reading r = {.now_ms = now, .running = up};
		f->read_after = now + s->o.tick_ms;
		if (serves(f)) {
			r.requests = f->requests; /* answers to the last ask */
			for (int i = 0; i < f->n_inst; i++) {
				if (f->inst[i].state != INSTANCE_STOPPING) {
					r.request_load +=
					        f->inst[i].requests_waiting;
				}
			}
			ask_stats(s, f);
		}
		if (f->def.partitions > 0 && lim.max > f->def.partitions) {
			/* An instance more than partitions would hold none. */
			lim.max = f->def.partitions;
		}
		if (read_backlog(f, &r)) {
			if (r.delayed > 0 && lim.min == 0) {
				/* Delayed messages become work only through
				 * a receiver: never scale to zero past them.
				 */
				lim.min = 1;
			}
			uint64_t was = f->scale.last_backlog;
			want = scale_decide(&f->scale, &lim, &r, why,
			                    sizeof(why));
			if (r.backlog + r.request_load > was &&
			    want < lim.max) {
				/* Growing: look again sooner. */
				f->read_after = now + (s->o.tick_ms + 4) / 5;
			}
		}
	}
	if (want > up) {
		if (now < f->start_after) {
			return; /* backing off; the loop comes back then */
		}
		decide(f, up, want, why);
		start_some(f, want - up, now);
		if (alive(f) > 0) {
			disarm(f);
			f->woken = false;
			if (up == 0) {
				/* Read at once: a burst that woke it wants
				 * more than one. */
				memset(&f->scale, 0, sizeof(f->scale));
				f->read_after = now;
				kick(s);
			}
		}
	} else if (want < up) {
		decide(f, up, want, why);
		if (want == 0) {
			/* Watch before the last instance goes: an event
			 * published while it stops wakes the next. (A wake
			 * arming sees is kept: its subscription asked for
			 * one message only.) */
			f->woken = false;
			req_hold(f);
			arm(f, now); /* releases s->mu: still quiet */
		}
		stop_some(f, up - want);
		f->req_quiet = false;
	}
}

/* Slots being handed over: released once their functions have no
 * instance left. */
static void
hand_over(struct sup *s)
{
	for (int k = 0; k < MESH_SUPERVISOR_SLOTS; k++) {
		bool busy = false;
		if (s->slot[k] != SLOT_HANDING) {
			continue;
		}
		for (struct fn *f = s->fns; f != NULL && !busy; f = f->next) {
			busy = f->slot == k && f->n_inst > 0;
		}
		if (!busy) {
			s->slot[k] = SLOT_FREE;
			mesh_lease_release(s->lease, k);
		}
	}
}

/* ---- status ----------------------------------------------------------------
 */

static json_t *
fn_status(struct sup *s, const struct fn *f)
{
	json_t *inst = json_array(), *j;

	for (int i = 0; i < f->n_inst; i++) {
		json_array_append_new(
		        inst, json_pack("{s:i, s:s, s:I}", "pid",
		                        (int)f->inst[i].pid, "state",
		                        instance_state_name(f->inst[i].state),
		                        "started_ms",
		                        (json_int_t)f->inst[i].started_ms));
	}
	j = json_pack(
	        "{s:s, s:s, s:o, s:I, s:I, s:b, s:I, s:I, s:s, s:b, s:I, "
	        "s:I, s:I}",
	        "function", f->def.name, "supervisor", s->instance,
	        "instances", inst, "cold_starts", (json_int_t)f->cold_starts,
	        "exits", (json_int_t)f->exits, "crash_loop", f->crash_loop,
	        "next_start_ms",
	        (json_int_t)(f->start_after > mesh_mono_ms()
	                             ? mesh_wall_ms() + f->start_after -
	                                       mesh_mono_ms()
	                             : 0),
	        "backlog", (json_int_t)f->backlog, "last_exit", f->last_exit,
	        "armed", f->armed, "requests_held", (json_int_t)f->n_held,
	        "requests_refused", (json_int_t)f->refused, "requests",
	        (json_int_t)f->requests);
	if (j != NULL && f->decision.at_ms > 0) {
		json_object_set_new(j, "decision",
		                    json_pack("{s:I, s:i, s:i, s:s}", "at_ms",
		                              (json_int_t)f->decision.at_ms,
		                              "from", f->decision.from, "to",
		                              f->decision.to, "why",
		                              f->decision.why));
	}
	return j;
}

static void
reply_json(natsConnection *nc, natsMsg *m, json_t *j)
{
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;

	if (text != NULL && natsMsg_GetReply(m) != NULL) {
		natsConnection_PublishString(nc, natsMsg_GetReply(m), text);
	}
	free(text);
	json_decref(j);
}

static void
on_info(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
	struct sup *s = arg;
	const char *subject = natsMsg_GetSubject(m);
	const char *name = strrchr(subject, '.');
	json_t *j = NULL;
	struct fn *f;

	(void)sub;
	pthread_mutex_lock(&s->mu);
	f = name ? fn_find(s, name + 1) : NULL;
	/* Only the supervisor running it answers. */
	if (f != NULL && f->defined && slot_held(s, f->slot)) {
		j = fn_status(s, f);
	}
	pthread_mutex_unlock(&s->mu);
	if (j != NULL) {
		reply_json(nc, m, j);
	}
	natsMsg_Destroy(m);
}

static void
on_list(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
	struct sup *s = arg;
	json_t *fns = json_array();

	(void)sub;
	pthread_mutex_lock(&s->mu);
	for (struct fn *f = s->fns; f != NULL; f = f->next) {
		if (f->defined && slot_held(s, f->slot)) {
			json_array_append_new(fns, fn_status(s, f));
		}
	}
	pthread_mutex_unlock(&s->mu);
	reply_json(nc, m,
	           json_pack("{s:s, s:o}", "supervisor", s->instance,
	                     "functions", fns));
	natsMsg_Destroy(m);
}

/* ---- running
 * ----------------------------------------------------------------- */

void
supervisor_opts_init(struct supervisor_opts *o)
{
	*o = (struct supervisor_opts){.lease_ms = 3000,
	                              .tick_ms = 250,
	                              .stop_ms = 15000,
	                              .request_wait_ms = 25000};
}

static mesh_err
start(struct sup *s)
{
	struct mesh_lease_opts lo;
	char info[64], stats[136];
	natsStatus st;
	mesh_err err;

	if ((err = mesh_function_bucket(s->c, &s->kv)) != MESH_OK) {
		return err;
	}
	if ((st = mesh_kv_watch_all(s->kv, &s->watcher)) != NATS_OK) {
		return mesh_err_nats(st, 0, "following %s",
		                     MESH_FUNCTIONS_BUCKET);
	}
	if (pthread_create(&s->watch_thread, NULL, watch_main, s) != 0) {
		return mesh_err_set(MESH_ENOMEM, "the watcher's thread");
	}
	s->watching = true;
	if (pthread_create(&s->gate_thread, NULL, gate_main, s) != 0) {
		return mesh_err_set(MESH_ENOMEM, "the requests' thread");
	}
	s->gating = true;
	snprintf(info, sizeof(info), MESH_SUPERVISOR_INFO_SUBJECT, "*");
	st = natsConnection_Subscribe(&s->info_sub, mesh_conn_nats(s->c), info,
	                              on_info, s);
	if (st == NATS_OK) {
		st = natsConnection_Subscribe(
		        &s->list_sub, mesh_conn_nats(s->c),
		        MESH_SUPERVISOR_LIST_SUBJECT, on_list, s);
	}
	if (st != NATS_OK) {
		return mesh_err_nats(st, 0, "subscribing to %s", info);
	}
	/* The connection's inbox: under an NKey identity the only one it
	 * may subscribe to (_INBOX.<public key>.>, meshctl auth). */
	mesh_conn_inbox(s->c, s->stats_inbox, sizeof(s->stats_inbox));
	snprintf(stats, sizeof(stats), "%s.*", s->stats_inbox);
	st = natsConnection_Subscribe(&s->stats_sub, mesh_conn_nats(s->c),
	                              stats, on_stats, s);
	if (st != NATS_OK) {
		return mesh_err_nats(st, 0,
		                     "subscribing to the instances' "
		                     "stats answers");
	}
	mesh_lease_opts_init(&lo);
	lo.group = MESH_SUPERVISOR_GROUP;
	lo.instance = s->instance;
	lo.partitions = MESH_SUPERVISOR_SLOTS;
	lo.ttl_ms = s->o.lease_ms;
	lo.acquired = on_acquired;
	lo.revoked = on_revoked;
	lo.arg = s;
	return mesh_lease_start(s->c, &lo, &s->lease);
}

/* At our stop: every instance gets SIGTERM, then SIGKILL after stop_ms. */
static void
stop_all(struct sup *s)
{
	int64_t until = mesh_mono_ms() + s->o.stop_ms;
	bool any;

	for (struct fn *f = s->fns; f != NULL; f = f->next) {
		stop_some(f, f->n_inst);
	}
	do {
		any = false;
		reap(s, mesh_mono_ms());
		for (struct fn *f = s->fns; f != NULL; f = f->next) {
			any = any || f->n_inst > 0;
		}
		if (any) {
			struct timespec ts = {0, REAP_EVERY_MS * 1000000L};
			nanosleep(&ts, NULL);
		}
	} while (any && mesh_mono_ms() < until);
	for (struct fn *f = s->fns; f != NULL; f = f->next) {
		for (int i = 0; i < f->n_inst; i++) {
			slog(s, "warn", f, "instance %d: SIGKILL at stop",
			     (int)f->inst[i].pid);
			kill(f->inst[i].pid, SIGKILL);
			waitpid(f->inst[i].pid, NULL, 0);
		}
		f->n_inst = 0;
	}
}

static void
cleanup(struct sup *s)
{
	/* Before the leases go: the requests' thread and callbacks ask
	 * them. */
	if (s->gating) {
		pthread_mutex_lock(&s->mu);
		s->gate_quit = true;
		pthread_cond_signal(&s->gate_cond);
		pthread_mutex_unlock(&s->mu);
		pthread_join(s->gate_thread, NULL);
	}
	pthread_mutex_lock(&s->mu);
	for (struct fn *f = s->fns; f != NULL; f = f->next) {
		disarm(f);
		req_drop(f, false, "the supervisor is stopping");
		for (size_t i = 0; i < f->n_held; i++) {
			answer(mesh_conn_nats(s->c), f->held[i].m, 503,
			       "function '%s': the supervisor is stopping",
			       f->def.name);
			natsMsg_Destroy(f->held[i].m);
		}
		f->n_held = 0;
	}
	pthread_mutex_unlock(&s->mu);
	if (s->info_sub != NULL) {
		natsSubscription_Unsubscribe(s->info_sub);
	}
	if (s->list_sub != NULL) {
		natsSubscription_Unsubscribe(s->list_sub);
	}
	if (s->stats_sub != NULL) {
		natsSubscription_Unsubscribe(s->stats_sub);
	}
	mesh_lease_stop(s->lease, 2000); /* callbacks take s->mu: not held */
	if (s->watching) {
		pthread_join(s->watch_thread, NULL);
	}
	kvWatcher_Destroy(s->watcher);
	kvStore_Destroy(s->kv);
	/* Once the broker has answered a flush, it has sent nothing more
	 * for the subscriptions, and the reading thread is past what it
	 * sent; callbacks in flight end soon after. */
	mesh_conn_flush(s->c, 1000);
	nats_Sleep(100);
	natsSubscription_Destroy(s->info_sub);
	natsSubscription_Destroy(s->list_sub);
	natsSubscription_Destroy(s->stats_sub);
	bury(s, true);
	while (s->fns != NULL) {
		struct fn *f = s->fns;
		s->fns = f->next;
		mesh_function_fini(&f->def);
		free(f->held);
		free(f);
	}
}

/* The soonest the loop must look again. */
static int64_t
next_look(struct sup *s, int64_t now)
{
	int64_t at = now + IDLE_WAIT_MS;

	for (struct fn *f = s->fns; f != NULL; f = f->next) {
		if (f->n_inst > 0 && now + REAP_EVERY_MS < at) {
			at = now + REAP_EVERY_MS;
		}
		if (f->start_after > now && f->start_after < at) {
			at = f->start_after;
		}
	}
	return at;
}

mesh_err
supervisor_run(struct mesh_conn *c, const struct supervisor_opts *o,
               volatile sig_atomic_t *stop)
{
	struct sup *s = calloc(1, sizeof(*s));
	char host[64] = "";
	mesh_err err;

	if (s == NULL) {
		return mesh_err_set(MESH_ENOMEM, SUP_NAME);
	}
	s->c = c;
	s->o = *o;
	s->stop = stop;
	gethostname(host, sizeof(host) - 1);
	for (char *h = host; *h != '\0'; h++) {
		if (!isalnum((unsigned char)*h) && *h != '-') {
			*h = '_';
		}
	}
	snprintf(s->instance, sizeof(s->instance), "%.40s-%d", host,
	         (int)getpid());
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cond, NULL);
	pthread_cond_init(&s->gate_cond, NULL);
	if ((err = start(s)) == MESH_OK) {
		slog(s, "info", NULL,
		     "started: %d slots, lease %" PRId64 " ms",
		     MESH_SUPERVISOR_SLOTS, s->o.lease_ms);
		pthread_mutex_lock(&s->mu);
		while (!*stop) {
			int64_t now = mesh_mono_ms(), at = next_look(s, now);
			while (!s->kick && !*stop && now < at) {
				struct timespec ts;
				int64_t wait = at - now;
				clock_gettime(CLOCK_REALTIME, &ts);
				ts.tv_sec += wait / 1000;
				ts.tv_nsec += (wait % 1000) * 1000000L;
				if (ts.tv_nsec >= 1000000000L) {
					ts.tv_sec++;
					ts.tv_nsec -= 1000000000L;
				}
				pthread_cond_timedwait(&s->cond, &s->mu, &ts);
				now = mesh_mono_ms();
			}
			s->kick = false;
			now = mesh_mono_ms();
			reap(s, now);
			for (struct fn *f = s->fns; f != NULL && !*stop;
			     f = f->next) {
				step(s, f, now);
			}
			hand_over(s);
			bury(s, false);
		}
		stop_all(s);
		pthread_mutex_unlock(&s->mu);
		slog(s, "info", NULL, "stopped");
	}
	cleanup(s);
	pthread_cond_destroy(&s->cond);
	pthread_cond_destroy(&s->gate_cond);
	pthread_mutex_destroy(&s->mu);
	free(s);
	return err;
}
