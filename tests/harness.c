/* harness.c: TAP output and per-test nats-servers; see harness.h. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#include "harness.h"

static int tap_count;
static int tap_failed;

bool
tap_ok(bool pass, const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	printf("%sok %d - ", pass ? "" : "not ", ++tap_count);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!pass) {
		tap_failed++;
		printf("#   failed at %s:%d\n", file, line);
	}
	fflush(stdout);
	return pass;
}

void
tap_diag(const char *fmt, ...)
{
	va_list ap;

	printf("#   ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

int
tap_done(void)
{
	printf("1..%d\n", tap_count);
	if (tap_failed > 0) {
		printf("# %d of %d checks failed\n", tap_failed, tap_count);
	}
	fflush(stdout);
	return tap_failed > 0 || tap_count == 0 ? 1 : 0;
}

void
tap_skip_all(const char *why)
{
	printf("1..0 # SKIP %s\n", why);
	fflush(stdout);
	exit(77);
}

long long
test_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool
test_tmpdir(char *out, size_t size)
{
	const char *base = getenv("TMPDIR");

	snprintf(out, size, "%s/evmesh-test-XXXXXX", base ? base : "/tmp");
	return mkdtemp(out) != NULL;
}

void
test_rmtree(const char *dir)
{
	pid_t pid;

	if (dir == NULL || dir[0] == '\0' || strcmp(dir, "/") == 0) {
		return;
	}
	if ((pid = fork()) == 0) {
		execlp("rm", "rm", "-rf", "--", dir, (char *)NULL);
		_exit(127);
	}
	if (pid > 0) {
		waitpid(pid, NULL, 0);
	}
}

static int
free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int port = -1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0) {
		port = ntohs(sa.sin_port);
	}
	if (fd >= 0) {
		close(fd);
	}
	return port;
}

static bool
port_open(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bool open;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	open = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	if (fd >= 0) {
		close(fd);
	}
	return open;
}

static bool
wait_port(int port, bool want_open)
{
	long long deadline = test_now_ms() + 10000;

	while (test_now_ms() < deadline) {
		if (port_open(port) == want_open) {
			return true;
		}
		usleep(20000);
	}
	return false;
}

static pid_t
spawn_server(const struct test_broker *b)
{
	char conf[PATH_MAX + 16], log[PATH_MAX + 16];
	pid_t pid;

	snprintf(conf, sizeof(conf), "%s/nats.conf", b->dir);
	snprintf(log, sizeof(log), "%s/nats.log", b->dir);
	if ((pid = fork()) == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		execlp("nats-server", "nats-server", "-c", conf, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* The reaper: owns the server; obeys one-byte commands on its pipe:
 * 'k' kill -9, 'u' start again; EOF (the test ended) stops everything. */
static void
reaper_main(struct test_broker *b, int rd)
{
	pid_t server = spawn_server(b);
	char c;

	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	while (read(rd, &c, 1) == 1) {
		if (c == 'k' && server > 0) {
			kill(server, SIGKILL);
			waitpid(server, NULL, 0);
			server = -1;
		} else if (c == 'u' && server <= 0) {
			server = spawn_server(b);
		}
	}
	if (server > 0) {
		kill(server, SIGTERM);
		for (int i = 0; i < 100; i++) {
			if (waitpid(server, NULL, WNOHANG) == server) {
				server = -1;
				break;
			}
			usleep(20000);
		}
		if (server > 0) {
			kill(server, SIGKILL);
			waitpid(server, NULL, 0);
		}
	}
	test_rmtree(b->dir);
	_exit(0);
}

static bool
have_nats_server(void)
{
	return system("command -v nats-server >/dev/null 2>&1") == 0;
}

bool
test_broker_start(struct test_broker *b, const char *extra_conf)
{
	char conf[PATH_MAX + 16];
	int fds[2];
	FILE *f;

	memset(b, 0, sizeof(*b));
	b->ctl = -1;
	if (!have_nats_server()) {
		tap_skip_all("nats-server is not installed (apt-get install "
		             "nats-server)");
	}
	if (!test_tmpdir(b->dir, sizeof(b->dir)) ||
	    (b->port = free_port()) < 0) {
		tap_diag("cannot make a temp dir or find a free port: %s",
		         strerror(errno));
		return false;
	}
	snprintf(b->url, sizeof(b->url), "nats://127.0.0.1:%d", b->port);
	snprintf(conf, sizeof(conf), "%s/nats.conf", b->dir);
	if ((f = fopen(conf, "w")) == NULL) {
		return false;
	}
	fprintf(f,
	        "listen: \"127.0.0.1:%d\"\n"
	        "jetstream { store_dir: \"%s/js\" }\n%s\n",
	        b->port, b->dir, extra_conf ? extra_conf : "");
	fclose(f);
	if (pipe2(fds, O_CLOEXEC) != 0) {
		return false;
	}
	fflush(stdout);
	if ((b->reaper = fork()) == 0) {
		/* Nothing of the test's but its own pipe: another broker's
		 * pipe held open here would keep that reaper from seeing
		 * its end (a cluster's reapers are forked one by one). */
		if (fds[0] > 3) {
			close_range(3, (unsigned)fds[0] - 1, 0);
		}
		close_range((unsigned)fds[0] + 1, ~0U, 0);
		/* Not in the test's process group: a ^C to the test run
		 * still ends the server through the pipe. */
		setpgid(0, 0);
		reaper_main(b, fds[0]);
	}
	close(fds[0]);
	b->ctl = fds[1];
	if (b->reaper < 0 || !wait_port(b->port, true)) {
		tap_diag("nats-server did not start on port %d; its log is "
		         "%s/nats.log",
		         b->port, b->dir);
		return false;
	}
	return true;
}

void
test_broker_stop(struct test_broker *b)
{
	if (b->ctl >= 0) {
		close(b->ctl);
		b->ctl = -1;
		waitpid(b->reaper, NULL, 0);
	}
}

void
test_broker_kill(struct test_broker *b)
{
	if (write(b->ctl, "k", 1) == 1) {
		wait_port(b->port, false);
	}
}

bool
test_broker_restart(struct test_broker *b)
{
	return write(b->ctl, "u", 1) == 1 && wait_port(b->port, true);
}

unsigned
test_rand(void)
{
	static unsigned long long rng;

	if (rng == 0) {
		const char *seed = getenv("TEST_SEED");
		rng = seed ? strtoull(seed, NULL, 0) : 0x9e3779b97f4a7c15ULL;
		if (rng == 0) {
			rng = 1;
		}
	}
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)(rng >> 11);
}

double
test_cpu_s(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut = 0, st = 0;
	FILE *f;

	if (pid == 0) { /* to the microsecond */
		struct rusage ru;
		getrusage(RUSAGE_SELF, &ru);
		return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
		       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
	}
	/* To the clock tick (10 ms). */
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "r")) == NULL) {
		return 0;
	}
	p = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
	fclose(f);
	/* After the name: state ppid pgrp session tty tpgid flags minflt
	 * cminflt majflt cmajflt utime stime. */
	if (p == NULL || sscanf(p + 2,
	                        "%*c %*d %*d %*d %*d %*d %*u %*u %*u "
	                        "%*u %*u %lu %lu",
	                        &ut, &st) != 2) {
		return 0;
	}
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

pid_t
test_broker_pid(const struct test_broker *b)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	pid_t found = 0;

	while (d != NULL && found == 0 && (e = readdir(d)) != NULL) {
		char path[300], cmd[4096];
		size_t n;
		FILE *f;
		if (e->d_name[0] < '0' || e->d_name[0] > '9') {
			continue;
		}
		snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
		if ((f = fopen(path, "r")) == NULL) {
			continue;
		}
		n = fread(cmd, 1, sizeof(cmd) - 1, f);
		fclose(f);
		for (size_t i = 0; i < n; i++) {
			cmd[i] = cmd[i] ? cmd[i] : ' ';
		}
		cmd[n] = '\0';
		if (strstr(cmd, "nats-server") && strstr(cmd, b->dir)) {
			found = (pid_t)atoi(e->d_name);
		}
	}
	if (d != NULL) {
		closedir(d);
	}
	return found;
}

/* ---- clusters ----------------------------------------------------------- */

bool
test_cluster_start(struct test_cluster *cl, int n)
{
	memset(cl, 0, sizeof(*cl));
	if (n < 1 || n > TEST_CLUSTER_MAX) {
		return false;
	}
	for (int i = 0; i < n; i++) {
		bool dup;
		do {
			cl->route[i] = free_port();
			dup = false;
			for (int j = 0; j < i; j++) {
				dup = dup || cl->route[j] == cl->route[i];
			}
		} while (dup && cl->route[i] > 0);
		if (cl->route[i] < 0) {
			return false;
		}
	}
	for (int i = 0; i < n; i++) {
		char conf[1024];
		int k = snprintf(conf, sizeof(conf),
		                 "server_name: n%d\n"
		                 "cluster {\n  name: evmesh-test\n"
		                 "  listen: \"127.0.0.1:%d\"\n  routes: [",
		                 i + 1, cl->route[i]);
		for (int j = 0, first = 1; j < n; j++) {
			if (j != i) {
				k += snprintf(
				        conf + k, sizeof(conf) - (size_t)k,
				        "%s \"nats-route://127.0.0.1:%d\"",
				        first ? "" : ",", cl->route[j]);
				first = 0;
			}
		}
		snprintf(conf + k, sizeof(conf) - (size_t)k, " ]\n}\n");
		if (!test_broker_start(&cl->node[i], conf)) {
			cl->n = i + 1;
			test_cluster_stop(cl);
			return false;
		}
		cl->n = i + 1;
		k = (int)strlen(cl->urls);
		snprintf(cl->urls + k, sizeof(cl->urls) - (size_t)k, "%s%s",
		         i ? "," : "", cl->node[i].url);
	}
	if (!test_cluster_js_ready(cl->node[0].url, 30000)) {
		tap_diag("the cluster's JetStream did not come up in 30 s "
		         "(logs: %s/nats.log and the others)",
		         cl->node[0].dir);
		return false;
	}
	return true;
}

void
test_cluster_stop(struct test_cluster *cl)
{
	for (int i = cl->n - 1; i >= 0; i--) {
		test_broker_stop(&cl->node[i]);
	}
}

bool
test_cluster_js_ready(const char *url, long long ms)
{
	long long deadline = test_now_ms() + ms;
	bool ready = false;

	while (!ready && test_now_ms() < deadline) {
		natsConnection *nc = NULL;
		jsCtx *js = NULL;
		jsAccountInfo *ai = NULL;
		if (natsConnection_ConnectTo(&nc, url) == NATS_OK &&
		    natsConnection_JetStream(&js, nc, NULL) == NATS_OK &&
		    js_GetAccountInfo(&ai, js, NULL, NULL) == NATS_OK) {
			ready = true;
		}
		jsAccountInfo_Destroy(ai);
		jsCtx_Destroy(js);
		natsConnection_Destroy(nc);
		if (!ready) {
			usleep(200000);
		}
	}
	return ready;
}

/* The stream's info, asked of any node that answers; NULL if none. */
static jsStreamInfo *
cluster_stream_info(const struct test_cluster *cl, const char *stream)
{
	for (int i = 0; i < cl->n; i++) {
		natsConnection *nc = NULL;
		jsCtx *js = NULL;
		jsStreamInfo *si = NULL;
		natsOptions *o = NULL;
		if (natsOptions_Create(&o) == NATS_OK &&
		    natsOptions_SetURL(o, cl->node[i].url) == NATS_OK &&
		    natsOptions_SetTimeout(o, 1000) == NATS_OK &&
		    natsConnection_Connect(&nc, o) == NATS_OK &&
		    natsConnection_JetStream(&js, nc, NULL) == NATS_OK) {
			js_GetStreamInfo(&si, js, stream, NULL, NULL);
		}
		jsCtx_Destroy(js);
		natsConnection_Destroy(nc);
		natsOptions_Destroy(o);
		if (si != NULL) {
			return si;
		}
	}
	return NULL;
}

int
test_cluster_leader(const struct test_cluster *cl, const char *stream)
{
	jsStreamInfo *si = cluster_stream_info(cl, stream);
	int at = -1;

	if (si != NULL && si->Cluster != NULL && si->Cluster->Leader != NULL &&
	    si->Cluster->Leader[0] == 'n') {
		at = atoi(si->Cluster->Leader + 1) - 1;
	}
	jsStreamInfo_Destroy(si);
	return at >= 0 && at < cl->n ? at : -1;
}

int
test_cluster_stream_replicas(const struct test_cluster *cl, const char *stream)
{
	jsStreamInfo *si = cluster_stream_info(cl, stream);
	int n = 0;

	if (si != NULL) {
		n = si->Config->Replicas;
	}
	jsStreamInfo_Destroy(si);
	return n;
}
