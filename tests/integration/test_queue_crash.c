/* Durability of queues against kill -9: a producer killed mid-stream loses
 * none of the messages whose sends were acknowledged, and a consumer killed
 * mid-stream loses nothing: every message it did not delete comes back,
 * and none that it deleted does. */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "mesh/mesh.h"

#define TOTAL 200000 /* more than a producer sends before it is killed */

static struct test_broker broker;
static const char *child_url;

static struct mesh_queue *
open_queue(struct mesh_conn **c)
{
	struct mesh_conn_opts o;
	struct mesh_queue *q = NULL;

	mesh_conn_opts_init(&o);
	o.servers = child_url;
	if (mesh_conn_open(&o, c) != MESH_OK ||
	    mesh_queue_open(*c, "crash", &q) != MESH_OK) {
		return NULL;
	}
	return q;
}

/* Child: send TOTAL messages with bodies "0".."TOTAL-1", writing each
 * acknowledged body to fd. */
static void
producer(int fd)
{
	struct mesh_conn *c;
	struct mesh_queue *q = open_queue(&c);

	for (int i = 0; q != NULL && i < TOTAL; i++) {
		char body[16];
		struct mesh_event *ev;
		struct mesh_queue_entry e = {.delay_s = -1};
		struct mesh_queue_sent s;
		snprintf(body, sizeof(body), "%d", i);
		mesh_event_new("crash", "test", &ev);
		mesh_event_set_text(ev, body, strlen(body));
		e.event = ev;
		if (mesh_queue_send(q, &e, &s) == MESH_OK) {
			dprintf(fd, "%d\n", i);
		}
		mesh_event_free(ev);
	}
	_exit(0);
}

/* Child: receive and delete, writing each body whose delete was
 * confirmed to fd. */
static void
consumer(int fd)
{
	struct mesh_conn *c;
	struct mesh_queue *q = open_queue(&c);

	for (;;) {
		struct mesh_queue_msg *m = NULL;
		size_t n = 0;
		const char *ids[10] = {"0", "1", "2", "3", "4",
		                       "5", "6", "7", "8", "9"};
		const char *rh[10];
		struct mesh_queue_result res[10];
		if (q == NULL ||
		    mesh_queue_receive(q, 10, 1, -1, &m, &n) != MESH_OK) {
			_exit(1);
		}
		for (size_t i = 0; i < n; i++) {
			const void *d;
			size_t len;
			rh[i] = m[i].receipt;
			mesh_event_data(m[i].event, &d, &len, NULL);
			dprintf(fd, "r %.*s\n", (int)len, (const char *)d);
		}
		if (n > 0 &&
		    mesh_queue_delete_batch(q, ids, rh, n, res) == MESH_OK) {
			for (size_t i = 0; i < n; i++) {
				const void *d;
				size_t len;
				if (res[i].err != MESH_OK) {
					continue;
				}
				mesh_event_data(m[i].event, &d, &len, NULL);
				dprintf(fd, "d %.*s\n", (int)len,
				        (const char *)d);
			}
		}
		mesh_queue_msgs_free(m, n);
	}
}

/* Run this program again as `role` (a fresh process: cnats' threads do
 * not survive a fork), SIGKILL it after ms, and read what it reported:
 * plain numbers and "d N" into seen[], "r N" into received[]. */
static int
run_and_kill(const char *role, int ms, char *seen, char *received)
{
	int fds[2], count = 0;
	FILE *f;
	char line[32];
	pid_t pid;

	if (pipe(fds) != 0) {
		return -1;
	}
	fflush(stdout);
	if ((pid = fork()) == 0) {
		char fd[16];
		close(fds[0]);
		snprintf(fd, sizeof(fd), "%d", fds[1]);
		execl("/proc/self/exe", "test_queue_crash", role, broker.url,
		      fd, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	usleep((useconds_t)ms * 1000);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	f = fdopen(fds[0], "r");
	while (fgets(line, sizeof(line), f) != NULL) {
		bool r = line[0] == 'r';
		int i = atoi(line[0] == 'r' || line[0] == 'd' ? line + 2
		                                              : line);
		if (i < 0 || i >= TOTAL) {
			continue;
		}
		if (r) {
			received[i]++;
		} else {
			seen[i]++;
			count++;
		}
	}
	fclose(f);
	return count;
}

int
main(int argc, char **argv)
{
	struct mesh_conn_opts o;
	struct mesh_conn *c;
	struct mesh_queue_attrs a;
	struct mesh_queue *q;
	static char acked[TOTAL], deleted[TOTAL], drained[TOTAL],
	        received[TOTAL];
	int n_acked, n_deleted, lost = 0, again = 0, missing = 0;

	if (argc == 4) {
		child_url = argv[2];
		if (strcmp(argv[1], "producer") == 0) {
			producer(atoi(argv[3]));
		}
		consumer(atoi(argv[3]));
	}
	if (!test_broker_start(&broker, NULL)) {
		ok(false, "a broker starts");
		return tap_done();
	}
	mesh_conn_opts_init(&o);
	o.servers = broker.url;
	mesh_queue_attrs_init(&a);
	a.visibility_timeout_s = 2;
	if (mesh_conn_open(&o, &c) != MESH_OK ||
	    mesh_queue_create(c, "crash", &a) != MESH_OK ||
	    mesh_queue_open(c, "crash", &q) != MESH_OK) {
		ok(false, "a queue: %s", mesh_errdetail());
		test_broker_stop(&broker);
		return tap_done();
	}

	n_acked = run_and_kill("producer", 1500, acked, received);
	ok(n_acked > 0 && n_acked < TOTAL,
	   "a producer killed mid-stream had %d sends acknowledged", n_acked);

	memset(received, 0, sizeof(received));
	n_deleted = run_and_kill("consumer", 100, deleted, received);
	ok(n_deleted > 0 && n_deleted < n_acked,
	   "a consumer killed mid-stream had deleted %d", n_deleted);

	/* Drain: the killed consumer's in-flight messages come back after
	 * their visibility timeout. */
	for (int empty = 0; empty < 3;) {
		struct mesh_queue_msg *m = NULL;
		size_t n = 0;
		const char *ids[10] = {"0", "1", "2", "3", "4",
		                       "5", "6", "7", "8", "9"};
		const char *rh[10];
		struct mesh_queue_result res[10];
		if (mesh_queue_receive(q, 10, 2, -1, &m, &n) != MESH_OK) {
			break;
		}
		empty = n == 0 ? empty + 1 : 0;
		for (size_t i = 0; i < n; i++) {
			const void *d;
			size_t len;
			mesh_event_data(m[i].event, &d, &len, NULL);
			int k = atoi((const char *)d);
			if (k >= 0 && k < TOTAL) {
				drained[k]++;
			}
			rh[i] = m[i].receipt;
		}
		if (n > 0) {
			mesh_queue_delete_batch(q, ids, rh, n, res);
		}
		mesh_queue_msgs_free(m, n);
	}
	for (int i = 0; i < TOTAL; i++) {
		if (acked[i] && !deleted[i] && !drained[i]) {
			lost++;
		}
		if (deleted[i] && drained[i]) {
			again++;
		}
		if ((deleted[i] || drained[i]) && !acked[i]) {
			missing++; /* stored but unacknowledged: allowed */
		}
	}
	/* The consumer may have had its last batch deleted and died before
	 * it could say so: at most one batch is unaccounted for, and only
	 * among the messages it received. */
	{
		int unreceived = 0;
		for (int i = 0; i < TOTAL; i++) {
			unreceived += acked[i] && !deleted[i] && !drained[i] &&
			              !received[i];
		}
		is_int(unreceived, 0, "no acknowledged message was lost");
		ok(lost <= MESH_QUEUE_BATCH_MAX,
		   "every message the killed consumer did not delete came "
		   "back (%d unaccounted, at most its last batch)",
		   lost);
	}
	is_int(again, 0, "no message whose delete was confirmed came back");
	tap_diag("%d messages were stored though their sender died before "
	         "the acknowledgement (allowed: at least once)",
	         missing);
	mesh_queue_close(q);
	mesh_conn_close(c);
	test_broker_stop(&broker);
	mesh_shutdown();
	return tap_done();
}
