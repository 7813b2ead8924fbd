/* The test harness: TAP output and a real nats-server per test.
 *
 * Each test gets its own nats-server -js on a free loopback port with a
 * temporary store. A small reaper process owns the server: when the test
 * process ends, however it ends (exit, abort, SIGKILL), the reaper sees its
 * pipe close, stops the server and removes the store. */
#ifndef MESH_TEST_HARNESS_H
#define MESH_TEST_HARNESS_H

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

/* ---- TAP --------------------------------------------------------------- */

bool tap_ok(bool pass, const char *file, int line, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
void tap_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print the plan; returns the exit code (0 when every check passed). */
int tap_done(void);
/* Skip the whole test (exit 77) when a prerequisite is truly absent. */
void tap_skip_all(const char *why) __attribute__((noreturn));

#define ok(cond, ...) tap_ok((cond), __FILE__, __LINE__, __VA_ARGS__)
#define is_int(got, want, ...)                                                \
	do {                                                                  \
		long long g_ = (long long)(got), w_ = (long long)(want);      \
		if (!tap_ok(g_ == w_, __FILE__, __LINE__, __VA_ARGS__))       \
			tap_diag("got %lld, want %lld", g_, w_);              \
	} while (0)
#define is_str(got, want, ...)                                                \
	do {                                                                  \
		const char *g_ = (got), *w_ = (want);                         \
		bool p_ = g_ != NULL && w_ != NULL && strcmp(g_, w_) == 0;    \
		if (!tap_ok(p_, __FILE__, __LINE__, __VA_ARGS__))             \
			tap_diag("got '%s', want '%s'", g_ ? g_ : "(null)",   \
			         w_ ? w_ : "(null)");                         \
	} while (0)
#define has_str(got, needle, ...)                                             \
	do {                                                                  \
		const char *g_ = (got), *n_ = (needle);                       \
		bool p_ = g_ != NULL && strstr(g_, n_) != NULL;               \
		if (!tap_ok(p_, __FILE__, __LINE__, __VA_ARGS__))             \
			tap_diag("'%s' does not contain '%s'",                \
			         g_ ? g_ : "(null)", n_);                     \
	} while (0)

/* ---- a broker of one's own --------------------------------------------- */

struct test_broker {
	int port;
	char url[64];
	char dir[PATH_MAX]; /* temporary; holds the store and config */
	pid_t reaper;
	int ctl; /* write end of the reaper's pipe */
};

/* Start nats-server -js on a free port. extra_conf (may be NULL) is added
 * to the server's configuration file (e.g. an authorization block).
 * Returns false (with a TAP diagnostic) when the server did not come up
 * within 10 seconds; skips the test when nats-server is not installed. */
bool test_broker_start(struct test_broker *b, const char *extra_conf);
/* Stop the server and remove its store. */
void test_broker_stop(struct test_broker *b);
/* Fault injection: SIGKILL the server (it stays down) ... */
void test_broker_kill(struct test_broker *b);
/* ... and start it again on the same port and store; waits until it
 * accepts connections. */
bool test_broker_restart(struct test_broker *b);

/* ---- a JetStream cluster of one's own ---------------------------------- */

#define TEST_CLUSTER_MAX 5

/* n nats-servers (named n1..nN) on free loopback ports, routed to each
 * other, JetStream clustered, each with its own store and reaper. */
struct test_cluster {
	int n;
	struct test_broker node[TEST_CLUSTER_MAX];
	int route[TEST_CLUSTER_MAX];
	char urls[TEST_CLUSTER_MAX *
	          32]; /* every client URL, commas between */
};

/* Start the servers and wait (up to 30 s) until JetStream answers on the
 * cluster (its meta group has a leader). False with a TAP diagnostic. */
bool test_cluster_start(struct test_cluster *cl, int n);
void test_cluster_stop(struct test_cluster *cl);
/* Wait until JetStream answers through url (a meta leader), up to ms. */
bool test_cluster_js_ready(const char *url, long long ms);
/* The index of the node that leads a stream (its server_name nK), or -1. */
int test_cluster_leader(const struct test_cluster *cl, const char *stream);
/* The replicas a stream has (leader and followers), or 0. */
int test_cluster_stream_replicas(const struct test_cluster *cl,
                                 const char *stream);

/* The server's process id (a child of the reaper), 0 if not found. */
pid_t test_broker_pid(const struct test_broker *b);
/* CPU seconds (user and system) used so far by process pid (to the clock
 * tick), or by this one (pid 0, to the microsecond); 0 when it can not be
 * read. */
double test_cpu_s(pid_t pid);

/* Milliseconds on the monotonic clock. */
long long test_now_ms(void);

/* A small xorshift generator, seeded (TEST_SEED, or a fixed default) so
 * that a failing run repeats. */
unsigned test_rand(void);
/* Make a temporary folder (removed by test_rmtree). */
bool test_tmpdir(char *out, size_t size);
void test_rmtree(const char *dir);

#endif
