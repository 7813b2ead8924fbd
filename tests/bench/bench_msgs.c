/* Sending and receiving queue messages: see bench_msgs.h. */
#include <stdio.h>
#include <string.h>

#include "bench_msgs.h"
#include "harness.h"

#define BATCH 10

static void
count_sent(void *arg, void *tag, const struct mesh_sent *r)
{
	long *ok = arg;

	(void)tag;
	*ok += r->err == MESH_OK;
}

double
bench_send(struct mesh_queue *q, long n, size_t window)
{
	struct mesh_sender *snd = NULL;
	struct mesh_sender_opts so;
	struct mesh_event *ev = NULL;
	char body[BENCH_BODY + 1];
	long stored = 0;
	long long t0;

	memset(body, 'x', BENCH_BODY);
	body[BENCH_BODY] = '\0';
	mesh_event_new("bench", "bench", &ev);
	mesh_event_set_text(ev, body, BENCH_BODY);
	mesh_sender_opts_init(&so);
	if (window > 0) {
		so.window = window;
	}
	t0 = test_now_ms();
	if (mesh_sender_open_queue(q, &so, count_sent, &stored, &snd) !=
	    MESH_OK) {
		fprintf(stderr, "bench: sender: %s\n", mesh_errdetail());
		mesh_event_free(ev);
		return 0;
	}
	for (long i = 0; i < n; i++) {
		char id[37];
		snprintf(id, sizeof(id), "s%ld", i);
		mesh_event_set_id(ev, id);
		if (mesh_sender_send(snd, &(struct mesh_send){.event = ev}) !=
		    MESH_OK) {
			fprintf(stderr, "bench: sender: %s\n",
			        mesh_errdetail());
			break;
		}
	}
	mesh_sender_close(snd);
	mesh_event_free(ev);
	if (stored != n) {
		fprintf(stderr, "bench: sender stored %ld of %ld\n", stored,
		        n);
		return 0;
	}
	return (double)(test_now_ms() - t0) / 1000.0;
}

double
bench_receive_delete(struct mesh_queue *q, long n)
{
	const char *ids[BATCH] = {"0", "1", "2", "3", "4",
	                          "5", "6", "7", "8", "9"};
	const char *rh[BATCH];
	struct mesh_queue_result res[BATCH];
	long got = 0;
	long long t0 = test_now_ms();

	while (got < n) {
		struct mesh_queue_msg *m = NULL;
		size_t k = 0;
		mesh_err err = mesh_queue_receive(q, BATCH, 1, -1, &m, &k);
		if (err != MESH_OK || k == 0) {
			fprintf(stderr, "bench: receive: %s\n",
			        err != MESH_OK ? mesh_errdetail()
			                       : "nothing within 1 s");
			mesh_queue_msgs_free(m, k);
			break;
		}
		for (size_t i = 0; i < k; i++) {
			rh[i] = m[i].receipt;
		}
		if (mesh_queue_delete_batch(q, ids, rh, k, res) != MESH_OK) {
			fprintf(stderr, "bench: delete: %s\n",
			        mesh_errdetail());
			mesh_queue_msgs_free(m, k);
			break;
		}
		got += (long)k;
		mesh_queue_msgs_free(m, k);
	}
	if (got != n) {
		fprintf(stderr, "bench: received %ld of %ld\n", got, n);
		return 0;
	}
	return (double)(test_now_ms() - t0) / 1000.0;
}
