/* A scheduler replica killed with SIGKILL in the middle of catching up
 * with the change log (applied in batches, each one LMDB transaction with
 * the sequence applied): started again, it has every schedule, once.
 * Usage: test_sched_crash MESH-SCHEDULER */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "harness.h"
#include "mesh/mesh.h"
#include "store.h"

#define N 30000

static const char *prog;
static char url[64], dir[PATH_MAX + 16], logfile[PATH_MAX + 32];

static pid_t
start(void)
{
	pid_t pid = fork();

	if (pid == 0) {
		if (freopen(logfile, "a", stderr) == NULL) {
			_exit(127);
		}
		execl(prog, prog, "--server", url, "--state", dir, "--id",
		      "crash", (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* Lines of the log holding `what`. */
static long
count(const char *what)
{
	FILE *f = fopen(logfile, "r");
	char line[1024];
	long n = 0;

	while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
		n += strstr(line, what) != NULL;
	}
	if (f != NULL) {
		fclose(f);
	}
	return n;
}

static mesh_err
count_def(const struct mesh_sched_rec *rec, void *arg)
{
	(void)rec;
	(*(long *)arg)++;
	return MESH_OK;
}

int
main(int argc, char **argv)
{
	struct test_broker b;
	struct mesh_conn_opts o;
	struct mesh_conn *c = NULL;
	struct mesh_sched_store *st = NULL;
	jsStreamInfo *si = NULL;
	long applied_before, defs = 0;
	pid_t pid;
	int status;

	if (argc < 2) {
		tap_skip_all("usage: test_sched_crash MESH-SCHEDULER");
	}
	prog = argv[1];
	if (!test_broker_start(&b, NULL)) {
		return tap_done();
	}
	snprintf(url, sizeof(url), "%s", b.url);
	snprintf(dir, sizeof(dir), "%s/replica", b.dir);
	snprintf(logfile, sizeof(logfile), "%s/replica.log", b.dir);
	mesh_conn_opts_init(&o);
	o.servers = b.url;
	if (mesh_conn_open(&o, &c) != MESH_OK ||
	    mesh_schedules_streams(c) != MESH_OK) {
		tap_diag("%s", mesh_errdetail());
		return 1;
	}
	for (long i = 0; i < N; i++) {
		char subject[96], json[512];
		int len = snprintf(
		        json, sizeof(json),
		        "{\"name\":\"s%05ld\",\"expression\":\"rate(1 day)\","
		        "\"tz\":\"UTC\",\"target\":\"queue:q\",\"type\":\"t\","
		        "\"body\":\"\",\"start\":0,\"end\":0,\"missed\":"
		        "\"skip\","
		        "\"enabled\":true,\"delete_after\":false,\"created\":%"
		        "ld}",
		        i, (long)time(NULL));
		snprintf(subject, sizeof(subject),
		         MESH_SCHEDULES_PREFIX "s%05ld", i);
		js_PublishAsync(mesh_conn_js(c), subject, json, len, NULL);
	}
	ok(js_PublishAsyncComplete(mesh_conn_js(c), NULL) == NATS_OK,
	   "%d schedules in the change log", N);

	pid = start();
	for (int i = 0; i < 4000 && count("\"applied\"") == 0; i++) {
		usleep(2000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	applied_before = count("\"applied\"");
	ok(applied_before > 0 && count("\"started\"") == 0,
	   "killed in the middle of catching up (%ld applied)",
	   applied_before);

	pid = start();
	for (int i = 0; i < 3000 && count("\"started\"") == 0; i++) {
		usleep(10000);
	}
	ok(count("\"started\"") == 1, "started again, it catches up");
	kill(pid, SIGTERM);
	waitpid(pid, &status, 0);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "and stops cleanly");
	/* A change is logged after its batch is committed, so the first
	 * run may have committed more than it logged, but nothing it
	 * committed is applied again. */
	ok(count("\"applied\"") <= N,
	   "no change applied twice (%ld, then %ld)", applied_before,
	   count("\"applied\"") - applied_before);

	if (mesh_sched_store_open(dir, &st) != MESH_OK) {
		tap_diag("%s", mesh_errdetail());
		return 1;
	}
	mesh_sched_store_each(st, count_def, &defs);
	is_int(defs, N, "every schedule is in the replica's LMDB");
	if (js_GetStreamInfo(&si, mesh_conn_js(c), MESH_SCHEDULES_STREAM, NULL,
	                     NULL) == NATS_OK) {
		is_int(mesh_sched_store_applied(st), si->State.LastSeq,
		       "and the last sequence applied is the log's last");
	}
	jsStreamInfo_Destroy(si);
	mesh_sched_store_close(st);
	mesh_conn_close(c);
	test_broker_stop(&b);
	mesh_shutdown();
	return tap_done();
}
