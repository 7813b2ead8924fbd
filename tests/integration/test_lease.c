/* Partition leases (mesh/lease.h) against a real nats-server: one member
 * takes every partition; members joining get their share, a member
 * leaving hands its partitions over at once, a paused one (a child
 * process stopped with SIGSTOP past its ttl) loses them to higher epochs
 * and, resumed, finds them not held before it could renew; a broker gone
 * makes held false within ttl * 2/3 and the leases lost. All along, an
 * observer checks that no partition is held by two members at once, and
 * the callbacks' timeline that every handover ends before the next owner
 * begins. Bad input is refused, naming the value. */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "mesh/mesh.h"

#define N       12
#define TTL     1000
#define MAX_EVS 4096

static struct test_broker broker;

/* One callback, as seen: kind 'a' acquired, 'h' handed over (revoked,
 * lost=false), 'l' lost. */
struct ev {
	long long t;
	char member, kind;
	int p;
	uint64_t epoch;
};

struct member {
	char tag;
	char name[16];
	int n;
	struct mesh_conn *c;
	struct mesh_lease *l;
	bool has[N];
	uint64_t epoch[N]; /* the last acquired, kept after revocation */
	bool observed;
	FILE *log; /* a child's events */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct ev evs[MAX_EVS];
static int nev;
static struct member *members[8];
static int nmembers;
static long observations, violations;
static bool observer_stop;

static void
record(struct member *m, char kind, int p, uint64_t epoch)
{
	long long t = test_now_ms();

	if (m->log != NULL) {
		fprintf(m->log, "%lld %c %c %d %" PRIu64 "\n", t, m->tag, kind,
		        p, epoch);
		fflush(m->log);
	} else if (nev < MAX_EVS) {
		evs[nev++] = (struct ev){t, m->tag, kind, p, epoch};
	}
}

static void
on_acquired(void *arg, int p, uint64_t epoch)
{
	struct member *m = arg;

	pthread_mutex_lock(&mu);
	record(m, 'a', p, epoch);
	m->has[p] = true;
	m->epoch[p] = epoch;
	pthread_mutex_unlock(&mu);
}

static void
on_revoked(void *arg, int p, bool lost)
{
	struct member *m = arg;
	struct mesh_lease *l;

	pthread_mutex_lock(&mu);
	record(m, lost ? 'l' : 'h', p, m->epoch[p]);
	m->has[p] = false;
	pthread_mutex_unlock(&mu);
	if (!lost) {
		/* The member may not have its pointer yet. */
		while ((l = __atomic_load_n(&m->l, __ATOMIC_ACQUIRE)) ==
		       NULL) {
			usleep(1000);
		}
		mesh_lease_release(l, p);
	}
}

static struct mesh_conn *
connect_broker(void)
{
	struct mesh_conn_opts o;
	struct mesh_conn *c = NULL;

	mesh_conn_opts_init(&o);
	o.servers = broker.url;
	mesh_conn_open(&o, &c);
	return c;
}

static mesh_err
member_start(struct member *m, const char *group, char tag, int n)
{
	struct mesh_lease_opts o;
	struct mesh_lease *l = NULL;
	mesh_err err;

	m->tag = tag;
	m->n = n;
	snprintf(m->name, sizeof(m->name), "member-%c", tag);
	m->c = connect_broker();
	mesh_lease_opts_init(&o);
	o.group = group;
	o.instance = m->name;
	o.partitions = n;
	o.ttl_ms = TTL;
	o.acquired = on_acquired;
	o.revoked = on_revoked;
	o.arg = m;
	err = mesh_lease_start(m->c, &o, &l);
	__atomic_store_n(&m->l, l, __ATOMIC_RELEASE);
	pthread_mutex_lock(&mu);
	m->observed = err == MESH_OK;
	if (err == MESH_OK && m->log == NULL) {
		members[nmembers++] = m;
	}
	pthread_mutex_unlock(&mu);
	return err;
}

static void
member_stop(struct member *m, int64_t timeout_ms)
{
	pthread_mutex_lock(&mu);
	m->observed = false;
	pthread_mutex_unlock(&mu);
	mesh_lease_stop(m->l, timeout_ms);
	m->l = NULL;
	mesh_conn_close(m->c);
	m->c = NULL;
}

static int
count(struct member *m)
{
	int k = 0;

	pthread_mutex_lock(&mu);
	for (int p = 0; p < m->n; p++) {
		k += m->has[p];
	}
	pthread_mutex_unlock(&mu);
	return k;
}

/* At no moment may two members hold one partition (mesh_lease_held
 * under the epoch each was last given). */
static void *
observer(void *arg)
{
	for (;;) {
		pthread_mutex_lock(&mu);
		if (observer_stop) {
			pthread_mutex_unlock(&mu);
			return NULL;
		}
		for (int p = 0; p < N; p++) {
			int holders = 0;
			for (int i = 0; i < nmembers; i++) {
				struct member *m = members[i];
				holders +=
				        m->observed && m->n == N &&
				        m->epoch[p] != 0 &&
				        mesh_lease_held(m->l, p, m->epoch[p]);
			}
			violations += holders > 1;
		}
		observations++;
		pthread_mutex_unlock(&mu);
		usleep(2000);
	}
	return arg;
}

/* Wait until the members hold want[i] each (up to ms); the time it took,
 * or -1. */
static long long
wait_counts(struct member **ms, const int *want, int k, long long ms_max)
{
	long long t0 = test_now_ms();

	while (test_now_ms() - t0 < ms_max) {
		int i = 0;
		while (i < k && count(ms[i]) == want[i]) {
			i++;
		}
		if (i == k) {
			return test_now_ms() - t0;
		}
		usleep(5000);
	}
	for (int i = 0; i < k; i++) {
		tap_diag("member %c holds %d, want %d", ms[i]->tag,
		         count(ms[i]), want[i]);
	}
	return -1;
}

/* ---- a member in a child process ----------------------------------------
 */

static volatile sig_atomic_t child_done;

static void
on_term(int sig)
{
	(void)sig;
	child_done = 1;
}

/* argv: --member URL NAME-TAG LOGFILE. Reports its callbacks to LOGFILE
 * and, when it finds it was paused past the ttl, how many of the
 * partitions it held before are still held ("H held of"). */
static int
child_main(char **argv)
{
	struct member m = {0};
	uint64_t before[N];
	long long last;

	snprintf(broker.url, sizeof(broker.url), "%s", argv[2]);
	m.log = fopen(argv[4], "a");
	signal(SIGTERM, on_term);
	if (m.log == NULL || member_start(&m, "svc", argv[3][0], N) != 0) {
		return 1;
	}
	last = test_now_ms();
	memset(before, 0, sizeof(before));
	while (!child_done) {
		long long now = test_now_ms();
		if (now - last > TTL) {
			int held = 0, of = 0;
			for (int p = 0; p < N; p++) {
				if (before[p] != 0) {
					of++;
					held += mesh_lease_held(m.l, p,
					                        before[p]);
				}
			}
			pthread_mutex_lock(&mu);
			fprintf(m.log, "%lld %c H %d %d\n", now, m.tag, held,
			        of);
			fflush(m.log);
			pthread_mutex_unlock(&mu);
		}
		last = now;
		pthread_mutex_lock(&mu);
		for (int p = 0; p < N; p++) {
			before[p] = m.has[p] ? m.epoch[p] : 0;
		}
		pthread_mutex_unlock(&mu);
		usleep(5000);
	}
	member_stop(&m, 2000);
	fclose(m.log);
	mesh_shutdown();
	return 0;
}

static pid_t
child_start(const char *log, char tag)
{
	char t[2] = {tag, '\0'};
	pid_t pid;

	fflush(stdout);
	if ((pid = fork()) == 0) {
		execl("/proc/self/exe", "test_lease", "--member", broker.url,
		      t, log, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* Read a child's log into evs[], and its "H" line: held, of. */
static void
child_read(const char *log, int *held, int *of)
{
	FILE *f = fopen(log, "r");
	char line[128];

	*held = *of = -1;
	while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
		struct ev e = {0};
		char kind;
		unsigned long long epoch;
		int a, b;
		if (sscanf(line, "%lld %c H %d %d", &e.t, &e.member, &a, &b) ==
		    4) {
			*held = a;
			*of = b;
		} else if (sscanf(line, "%lld %c %c %d %llu", &e.t, &e.member,
		                  &kind, &e.p, &epoch) == 5 &&
		           nev < MAX_EVS) {
			e.kind = kind;
			e.epoch = epoch;
			pthread_mutex_lock(&mu);
			evs[nev++] = e;
			pthread_mutex_unlock(&mu);
		}
	}
	if (f != NULL) {
		fclose(f);
	}
}

/* How many partitions of "svc" the list shows owned by name. */
static int
listed(struct mesh_conn *c, const char *name)
{
	struct mesh_lease_view v[N];
	size_t n = 0;
	int k = 0;

	if (mesh_lease_list(c, "svc", v, N, &n) != MESH_OK) {
		return -1;
	}
	for (size_t i = 0; i < n && i < N; i++) {
		k += strcmp(v[i].owner, name) == 0;
	}
	return k;
}

/* Wait until A, B and D hold 4 each (D's as the list shows). */
static bool
wait_d(struct mesh_conn *c, struct member *a, struct member *b,
       long long ms_max)
{
	long long t0 = test_now_ms();

	while (test_now_ms() - t0 < ms_max) {
		if (count(a) == 4 && count(b) == 4 &&
		    listed(c, "member-D") == 4) {
			return true;
		}
		usleep(10000);
	}
	tap_diag("A holds %d, B %d, D %d", count(a), count(b),
	         listed(c, "member-D"));
	return false;
}

/* ---- the checks ------------------------------------------------------------
 */

static void
bad_input(struct mesh_conn *c)
{
	struct mesh_lease_opts o;
	struct mesh_lease *l = NULL;
	struct mesh_lease_view v[1];
	size_t n;

	mesh_lease_opts_init(&o);
	is_int(o.ttl_ms, 3000, "default ttl 3000 ms");
	o.group = "svc.x";
	o.instance = "i1";
	o.partitions = 4;
	is_int(mesh_lease_start(c, &o, &l), MESH_EINVAL, "group 'svc.x'");
	has_str(mesh_errdetail(), "'svc.x'", "... the detail names it");
	o.group = "";
	is_int(mesh_lease_start(c, &o, &l), MESH_EINVAL, "empty group");
	o.group = "svc";
	o.instance = "a b";
	is_int(mesh_lease_start(c, &o, &l), MESH_EINVAL, "instance 'a b'");
	has_str(mesh_errdetail(), "instance 'a b'", "... named");
	o.instance = "0123456789012345678901234567890123456789012345678901"
	             "2345678901234"; /* 65 */
	is_int(mesh_lease_start(c, &o, &l), MESH_EINVAL, "instance of 65");
	o.instance = "i1";
	o.partitions = 0;
	is_int(mesh_lease_start(c, &o, &l), MESH_EINVAL, "partitions 0");
	has_str(mesh_errdetail(), "partitions 0", "... named");
	o.partitions = 1025;
	is_int(mesh_lease_start(c, &o, &l), MESH_EINVAL, "partitions 1025");
	has_str(mesh_errdetail(), "partitions 1025", "... named");
	o.partitions = 4;
	o.ttl_ms = 499;
	is_int(mesh_lease_start(c, &o, &l), MESH_EINVAL, "ttl 499 ms");
	has_str(mesh_errdetail(), "ttl_ms 499", "... named");
	o.ttl_ms = 60001;
	is_int(mesh_lease_start(c, &o, &l), MESH_EINVAL, "ttl 60001 ms");
	ok(l == NULL, "nothing made");
	mesh_lease_stop(l, 0);
	is_int(mesh_lease_list(c, "nosuch", v, 1, &n), MESH_ENOTFOUND,
	       "list: a group never seen: MESH_ENOTFOUND");
	has_str(mesh_errdetail(), "'nosuch'", "... named");
	is_int(mesh_lease_list(c, "bad.name", v, 1, &n), MESH_EINVAL,
	       "list: a bad group name");
	mesh_lease_stop(NULL, 0);
}

/* Every tenure of a partition ends before the next begins, unless it
 * was lost (its member must stop; held is false for it), and epochs grow
 * with every new owner. */
static void
timeline(void)
{
	int overlaps = 0, epochs = 0, tenures = 0;

	for (int p = 0; p < N; p++) {
		struct {
			char member;
			long long start, end;
			bool lost;
			uint64_t epoch;
		} t[512];
		int k = 0;
		for (int i = 0; i < nev; i++) {
			struct ev *e = &evs[i];
			if (e->p != p) {
				continue;
			}
			if (e->kind == 'a' && k < 512) {
				t[k].member = e->member;
				t[k].start = e->t;
				t[k].end = -1;
				t[k].lost = false;
				t[k].epoch = e->epoch;
				k++;
				continue;
			}
			for (int j = 0; j < k; j++) {
				/* A lost after a handover ends nothing new. */
				if (t[j].member == e->member &&
				    t[j].epoch == e->epoch && t[j].end < 0) {
					t[j].end = e->t;
					t[j].lost = e->kind == 'l';
				}
			}
		}
		tenures += k;
		/* By start time (the events of two processes merged). */
		for (int i = 1; i < k; i++) {
			for (int j = i; j > 0 && t[j].start < t[j - 1].start;
			     j--) {
				__typeof__(t[0]) x = t[j];
				t[j] = t[j - 1];
				t[j - 1] = x;
			}
		}
		for (int i = 1; i < k; i++) {
			if (t[i].epoch <= t[i - 1].epoch) {
				epochs++;
				tap_diag("partition %d: epoch %" PRIu64
				         " (%c) after %" PRIu64 " (%c)",
				         p, t[i].epoch, t[i].member,
				         t[i - 1].epoch, t[i - 1].member);
			}
			for (int j = 0; j < i; j++) {
				if (!t[j].lost &&
				    (t[j].end < 0 || t[j].end > t[i].start)) {
					overlaps++;
					tap_diag("partition %d: %c from %lld "
					         "while %c (%lld-%lld)",
					         p, t[i].member, t[i].start,
					         t[j].member, t[j].start,
					         t[j].end);
				}
			}
		}
	}
	ok(tenures > 3 * N, "timeline: %d tenures of %d partitions", tenures,
	   N);
	is_int(overlaps, 0,
	       "no partition began with a member before the "
	       "last one handed it over");
	is_int(epochs, 0, "every new owner has a higher epoch");
}

/* N=10 over three members started together: 4/3/3. */
static void
ten_over_three(void)
{
	static struct member t[3];
	int k[3], four = 0, three = 0;
	long long t0 = test_now_ms();

	for (int i = 0; i < 3; i++) {
		member_start(&t[i], "ten", (char)('x' + i), 10);
	}
	while (test_now_ms() - t0 < 8 * TTL) {
		four = three = 0;
		for (int i = 0; i < 3; i++) {
			k[i] = count(&t[i]);
			four += k[i] == 4;
			three += k[i] == 3;
		}
		if (four == 1 && three == 2) {
			break;
		}
		usleep(10000);
	}
	ok(four == 1 && three == 2,
	   "N=10 over 3 members: 4/3/3 (%d/%d/%d) in %lld ms", k[0], k[1],
	   k[2], test_now_ms() - t0);
	for (int i = 0; i < 3; i++) {
		member_stop(&t[i], 1000);
	}
}

int
main(int argc, char **argv)
{
	static struct member a, b, c;
	struct mesh_lease_view v[N + 4];
	struct mesh_lease_member mm[8];
	char dir[256], log[300];
	pthread_t obs;
	long long took, t0;
	size_t n = 0;
	int held = -1, of = -1, alive = 0;
	bool done;
	pid_t pid;

	if (argc == 5 && strcmp(argv[1], "--member") == 0) {
		return child_main(argv);
	}
	if (!test_broker_start(&broker, NULL)) {
		tap_skip_all("nats-server did not start");
	}
	test_tmpdir(dir, sizeof(dir));
	snprintf(log, sizeof(log), "%s/d.log", dir);

	a.c = connect_broker();
	bad_input(a.c);
	mesh_conn_close(a.c);

	is_int(member_start(&a, "svc", 'A', N), MESH_OK, "member A starts");
	took = wait_counts((struct member *[]){&a}, (int[]){N}, 1, 3 * TTL);
	ok(took >= 0, "alone, A takes all %d partitions (%lld ms)", N, took);
	pthread_create(&obs, NULL, observer, NULL);

	t0 = test_now_ms();
	member_start(&b, "svc", 'B', N);
	took = wait_counts((struct member *[]){&a, &b}, (int[]){6, 6}, 2,
	                   5 * TTL);
	ok(took >= 0, "B joins: 6/6 (%lld ms from its start)",
	   test_now_ms() - t0);
	t0 = test_now_ms();
	member_start(&c, "svc", 'C', N);
	took = wait_counts((struct member *[]){&a, &b, &c}, (int[]){4, 4, 4},
	                   3, 5 * TTL);
	ok(took >= 0, "C joins: 4/4/4 (%lld ms from its start)",
	   test_now_ms() - t0);
	usleep(3 * TTL * 1000);
	ok(count(&a) == 4 && count(&b) == 4 && count(&c) == 4,
	   "... and it stays so for 3 ttl");

	is_int(mesh_lease_list(a.c, "svc", v, N + 4, &n), MESH_OK,
	       "list the group");
	is_int(n, N, "... %d partitions", N);
	{
		int owned = 0, fresh = 0;
		for (size_t i = 0; i < n; i++) {
			owned += strncmp(v[i].owner, "member-", 7) == 0;
			fresh += v[i].age_ms >= 0 && v[i].age_ms < TTL &&
			         v[i].revision > 0 && v[i].partition == (int)i;
		}
		is_int(owned, N, "... every one owned");
		is_int(fresh, N, "... renewed within the ttl");
	}
	is_int(listed(a.c, "member-C"), 4, "... C owns 4");
	is_int(mesh_lease_members(a.c, "svc", mm, 8, &n), MESH_OK,
	       "list the members");
	for (size_t i = 0; i < n && i < 8; i++) {
		alive += mm[i].alive && mm[i].partitions == N &&
		         mm[i].ttl_ms == TTL;
	}
	ok(n == 3 && alive == 3 && strcmp(mm[0].instance, "member-A") == 0,
	   "... 3, alive, by name");
	{
		struct mesh_lease_opts o;
		struct mesh_lease *l = NULL;
		struct mesh_conn *x = connect_broker();
		mesh_lease_opts_init(&o);
		o.group = "svc";
		o.instance = "other";
		o.partitions = 8;
		is_int(mesh_lease_start(x, &o, &l), MESH_EEXIST,
		       "a member with another partition count: refused");
		has_str(mesh_errdetail(), "partitions", "... saying why");
		mesh_conn_close(x);
	}

	t0 = test_now_ms();
	member_stop(&c, 5000);
	tap_diag("C's mesh_lease_stop and mesh_conn_close took %lld ms",
	         test_now_ms() - t0);
	took = wait_counts((struct member *[]){&a, &b}, (int[]){6, 6}, 2,
	                   5 * TTL);
	ok(took >= 0 && test_now_ms() - t0 < TTL,
	   "C stops gracefully: A and B hold 6/6 %lld ms after it began "
	   "(ttl %d)",
	   test_now_ms() - t0, TTL);

	/* D, a child process: it gets its share, then is paused. */
	t0 = test_now_ms();
	pid = child_start(log, 'D');
	done = wait_d(a.c, &a, &b, 6 * TTL);
	ok(done, "D (a child process) joins: 4/4/4 (%lld ms)",
	   test_now_ms() - t0);
	usleep(100 * 1000); /* D's snapshot of what it holds is fresh */
	kill(pid, SIGSTOP);
	t0 = test_now_ms();
	took = wait_counts((struct member *[]){&a, &b}, (int[]){6, 6}, 2,
	                   4 * TTL);
	ok(took >= TTL / 3 && took < 2 * TTL,
	   "D paused: its partitions taken %lld ms later (ttl %d)", took, TTL);
	usleep(TTL * 1000);
	kill(pid, SIGCONT);
	t0 = test_now_ms();
	done = wait_d(a.c, &a, &b, 8 * TTL);
	ok(done, "D resumed: 4/4/4 again (%lld ms)", test_now_ms() - t0);
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	child_read(log, &held, &of);
	is_int(of, 4, "D had 4 partitions when it was paused");
	is_int(held, 0, "... and, resumed, held none of them");
	{
		int lost = 0;
		for (int i = 0; i < nev; i++) {
			lost += evs[i].member == 'D' && evs[i].kind == 'l';
		}
		ok(lost >= 4, "... and was told they were lost (%d)", lost);
	}

	ten_over_three();

	/* The broker gone: renewals fail, held goes false, leases lost. */
	{
		uint64_t e = 0;
		int p = 0, lost = 0;
		pthread_mutex_lock(&mu);
		for (p = 0; p < N && !a.has[p]; p++) {
		}
		e = p < N ? a.epoch[p] : 0;
		pthread_mutex_unlock(&mu);
		ok(p < N && mesh_lease_held(a.l, p, e), "A holds partition %d",
		   p);
		test_broker_kill(&broker);
		t0 = test_now_ms();
		while (mesh_lease_held(a.l, p, e) &&
		       test_now_ms() - t0 < 2 * TTL) {
			usleep(2000);
		}
		took = test_now_ms() - t0;
		ok(took <= TTL * 2 / 3 + 50,
		   "broker killed: held false %lld ms later (ttl %d)", took,
		   TTL);
		while (count(&a) > 0 && test_now_ms() - t0 < 3 * TTL) {
			usleep(5000);
		}
		pthread_mutex_lock(&mu);
		for (int i = 0; i < nev; i++) {
			lost += evs[i].member == 'A' && evs[i].kind == 'l';
		}
		pthread_mutex_unlock(&mu);
		took = test_now_ms() - t0;
		ok(count(&a) == 0 && lost >= 4 && took < TTL + TTL / 2,
		   "... and A was told its leases were lost (%lld ms)", took);
	}

	pthread_mutex_lock(&mu);
	observer_stop = true;
	pthread_mutex_unlock(&mu);
	pthread_join(obs, NULL);
	ok(observations > 100 && violations == 0,
	   "%ld observations: never two holders of one partition "
	   "(%ld violations)",
	   observations, violations);
	member_stop(&a, 500);
	member_stop(&b, 500);
	timeline();

	test_rmtree(dir);
	test_broker_stop(&broker);
	mesh_shutdown();
	return tap_done();
}
