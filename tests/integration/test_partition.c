/* Partitions (mesh/partition.h) against a real nats-server: the partition
 * function's known values; the record (the first count kept, another
 * refused, out of range refused, concurrent first starts); 10,000 events
 * and one malformed message forwarded from a queue to 8 partitions and
 * read back from each partition's source, each exactly once, in its
 * partition, in order, bytes and headers intact; a batch forwarded twice
 * stored once; retry and dead letters on a partition source; info; a
 * partition stream deleted underneath. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "mesh/mesh.h"

#define EVENTS 10000
#define PARTS  8
#define SVC    "orders"

static struct test_broker broker;
static struct mesh_conn *c;

/* ---- the function --------------------------------------------------------
 */

static void
known_values(void)
{
	/* FNV-1a 64 computed independently (Python):
	 *   "" 0xcbf29ce484222325, "a" 0xaf63dc4c8601ec8c,
	 *   "foobar" 0x85944171f73967e8, "orders.o-1" 0xede4048356df41d9,
	 *   "customer-42" 0x1e1b8c70eb18f59e, "\0\xff" 0x0831c907b4ea2b60 */
	static const struct {
		const char *key;
		size_t len;
		int n, want;
	} v[] = {
	        {"", 0, 1, 0},
	        {"", 0, 8, 5},
	        {"a", 1, 8, 4},
	        {"foobar", 6, 8, 0},
	        {"orders.o-1", 10, 8, 1},
	        {"orders.o-1", 10, 1024, 473},
	        {"customer-42", 11, 3, 2},
	        {"\0\xff", 2, 7, 6},
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(*v); i++) {
		is_int(mesh_partition_of(v[i].key, v[i].len, v[i].n),
		       v[i].want, "partition of '%s' (%zu bytes) among %d",
		       v[i].key, v[i].len, v[i].n);
	}
	is_int(mesh_partition_of(NULL, 0, 16), 0xcbf29ce484222325ULL % 16,
	       "an empty key (NULL) is the offset basis mod n");
}

/* ---- the record ----------------------------------------------------------
 */

static void *
ensure_race(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)mesh_partitions_ensure(c, "race", 5);
}

static void
record(void)
{
	struct mesh_partition_info *pi = NULL;
	pthread_t t[4];
	int n = 0, racers_ok = 0, present = 0;
	long long t0;

	is_int(mesh_partitions_ensure(c, SVC, PARTS), MESH_OK,
	       "the first start records %d partitions", PARTS);
	is_int(mesh_partitions_get(c, SVC, &n), MESH_OK, "its count read");
	is_int(n, PARTS, "... %d", PARTS);
	is_int(mesh_partitions_ensure(c, SVC, PARTS), MESH_OK,
	       "a later start with the same count: fine");
	is_int(mesh_partitions_ensure(c, SVC, 4), MESH_EINVAL,
	       "a later start with 4: refused");
	has_str(mesh_errdetail(),
	        "service 'orders' has 8 partitions (fixed "
	        "at its first start, 20",
	        "... the detail names the count and when it was fixed");
	has_str(mesh_errdetail(),
	        "4 refused: a partition's state can not be "
	        "split or merged in place",
	        "... and why the other is refused");
	mesh_partitions_get(c, SVC, &n);
	is_int(n, PARTS, "the record is unchanged");
	is_int(mesh_partitions_ensure(c, "other", 0), MESH_EINVAL,
	       "0 partitions refused");
	has_str(mesh_errdetail(), "0 partitions: must be 1-1024",
	        "... naming the value");
	is_int(mesh_partitions_ensure(c, "other", 1025), MESH_EINVAL,
	       "1025 partitions refused");
	has_str(mesh_errdetail(), "1025", "... naming the value");
	is_int(mesh_partitions_get(c, "other", &n), MESH_ENOTFOUND,
	       "a refused count records nothing: not partitioned");
	is_int(mesh_partitions_ensure(c, "a.fifo", 2), MESH_EINVAL,
	       "a name with a dot refused");
	is_int(mesh_partitions_ensure(c, "a b", 2), MESH_EINVAL,
	       "a name with a space refused");
	for (int i = 0; i < 4; i++) {
		pthread_create(&t[i], NULL, ensure_race, (void *)(intptr_t)i);
	}
	for (int i = 0; i < 4; i++) {
		void *r;
		pthread_join(t[i], &r);
		racers_ok += (intptr_t)r == MESH_OK;
	}
	is_int(racers_ok, 4, "4 concurrent first starts with one count: fine");
	is_int(mesh_partitions_delete(c, "race"), MESH_OK, "deleted");
	t0 = test_now_ms();
	is_int(mesh_partitions_ensure(c, "wide", MESH_PARTITIONS_MAX), MESH_OK,
	       "%d partitions, the most", MESH_PARTITIONS_MAX);
	tap_diag("%d partitions made in %lld ms", MESH_PARTITIONS_MAX,
	         test_now_ms() - t0);
	t0 = test_now_ms();
	is_int(mesh_partitions_ensure(c, "wide", MESH_PARTITIONS_MAX), MESH_OK,
	       "... ensured again");
	tap_diag("... found in %lld ms", test_now_ms() - t0);
	is_int(mesh_partitions_info(c, "wide", &pi, &n, NULL), MESH_OK,
	       "... their info");
	for (int k = 0; k < n; k++) {
		present += !pi[k].missing;
	}
	is_int(present, MESH_PARTITIONS_MAX, "... a consumer each");
	free(pi);
	mesh_partitions_delete(c, "wide");
}

/* ---- forwarding and reading ----------------------------------------------
 */

/* What an event was when forwarded: its partition, bytes and headers. */
struct want {
	int partition;
	int seen;
	char *data;
	int len;
	char *headers; /* "K=V\n" but Nats-*, sorted */
};

static struct want want[EVENTS + 1]; /* the last: the malformed one */

static int
cmp_line(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *
headers_of(natsMsg *m)
{
	const char **keys = NULL;
	char *lines[64], *out;
	int nk = 0, nl = 0;
	size_t size = 1;

	if (natsMsgHeader_Keys(m, &keys, &nk) != NATS_OK) {
		nk = 0;
	}
	for (int i = 0; i < nk && nl < 64; i++) {
		const char **vals = NULL;
		int nv = 0;
		if (strncmp(keys[i], "Nats-", 5) == 0 ||
		    natsMsgHeader_Values(m, keys[i], &vals, &nv) != NATS_OK) {
			continue;
		}
		for (int v = 0; v < nv && nl < 64; v++) {
			if (asprintf(&lines[nl], "%s=%s\n", keys[i],
			             vals[v]) >= 0) {
				size += strlen(lines[nl++]);
			}
		}
		free(vals);
	}
	free(keys);
	qsort(lines, (size_t)nl, sizeof(*lines), cmp_line);
	out = calloc(1, size);
	for (int i = 0; i < nl; i++) {
		strcat(out, lines[i]);
		free(lines[i]);
	}
	return out;
}

/* The event's index: "e<i>", the malformed one EVENTS. */
static long
index_of(const struct mesh_event *ev, const char *parse_error)
{
	const char *id = mesh_event_id(ev);

	if (parse_error[0] != '\0' || id[0] != 'e') {
		return EVENTS;
	}
	return strtol(id + 1, NULL, 10);
}

/* The key: the event's subject, else its id. */
static int
partition_of(const struct mesh_event *ev)
{
	const char *key = mesh_event_subject(ev) ? mesh_event_subject(ev)
	                                         : mesh_event_id(ev);

	return mesh_partition_of(key, strlen(key), PARTS);
}

static void
fill_queue(void)
{
	struct mesh_queue *q = NULL;
	struct mesh_sender *s = NULL;
	struct mesh_queue_attrs a;
	natsMsg *raw = NULL;
	jsPubAck *pa = NULL;

	mesh_queue_attrs_init(&a);
	is_int(mesh_queue_create(c, "in", &a), MESH_OK, "queue 'in'");
	mesh_queue_open(c, "in", &q);
	mesh_sender_open_queue(q, NULL, NULL, NULL, &s);
	for (long i = 0; i < EVENTS; i++) {
		struct mesh_event *ev = NULL;
		char id[32], subject[32], body[64];
		snprintf(id, sizeof(id), "e%ld", i);
		snprintf(subject, sizeof(subject), "cust-%ld", i % 97);
		snprintf(body, sizeof(body), "{\"order\":%ld}", i);
		mesh_event_new("t.order", "test", &ev);
		mesh_event_set_id(ev, id);
		mesh_event_set_subject(ev, subject);
		mesh_event_set_text(ev, body, strlen(body));
		mesh_event_attr_set(ev, "region", "String", "eu", 2);
		mesh_sender_send(s, &(struct mesh_send){.event = ev});
		mesh_event_free(ev);
		if (i == EVENTS / 2) {
			/* A foreign producer's bytes that claim to be a
			 * CloudEvent. */
			natsMsg_Create(&raw, "mesh.queue.in", NULL,
			               "\x01\x02 not an event", 16);
			natsMsgHeader_Set(raw, MESH_HDR_CONTENT_TYPE,
			                  MESH_EVENT_CONTENT_TYPE);
			mesh_sender_flush(s);
			ok(js_PublishMsg(&pa, mesh_conn_js(c), raw, NULL,
			                 NULL) == NATS_OK,
			   "a malformed message published into the queue");
			jsPubAck_Destroy(pa);
			natsMsg_Destroy(raw);
		}
	}
	mesh_sender_close(s);
	mesh_queue_close(q);
}

static uint64_t
stream_msgs(const char *stream)
{
	jsStreamInfo *si = NULL;
	uint64_t n = 0;

	if (js_GetStreamInfo(&si, mesh_conn_js(c), stream, NULL, NULL) ==
	    NATS_OK) {
		n = si->State.Msgs;
	}
	jsStreamInfo_Destroy(si);
	return n;
}

static void
forward_all(void)
{
	static struct mesh_source_msg m[MESH_SOURCE_BATCH_MAX];
	struct mesh_source_msg *mp[MESH_SOURCE_BATCH_MAX];
	struct mesh_partitioner *p = NULL;
	struct mesh_source *src = NULL;
	int part[MESH_SOURCE_BATCH_MAX];
	bool okv[MESH_SOURCE_BATCH_MAX];
	long forwarded = 0, confirmed = 0, batches = 0, twice_ok = 0;
	long long t0 = test_now_ms();
	mesh_err first_err = MESH_OK;

	is_int(mesh_partitioner_open(c, SVC, 4, &p), MESH_EINVAL,
	       "a partitioner with the wrong count: refused");
	is_int(mesh_partitioner_open(c, SVC, PARTS, &p), MESH_OK,
	       "a partitioner");
	is_int(mesh_source_open(c, "queue:in", NULL, &src), MESH_OK,
	       "the queue's source");
	for (;;) {
		size_t n = 0;
		mesh_err err = mesh_source_fetch(src, MESH_SOURCE_BATCH_MAX,
		                                 1000, m, &n, NULL);
		size_t k = 0;
		if (err != MESH_OK || n == 0) {
			break;
		}
		for (size_t i = 0; i < n; i++) {
			long x = index_of(m[i].event, m[i].parse_error);
			mp[i] = &m[i];
			part[i] = partition_of(m[i].event);
			want[x].partition = part[i];
			want[x].len = natsMsg_GetDataLength(m[i].msg);
			free(want[x].data);
			want[x].data = malloc((size_t)want[x].len + 1);
			memcpy(want[x].data, natsMsg_GetData(m[i].msg),
			       (size_t)want[x].len);
			free(want[x].headers);
			want[x].headers = headers_of(m[i].msg);
		}
		err = mesh_partitioner_forward(p, mp, part, n, okv);
		if (err != MESH_OK && first_err == MESH_OK) {
			first_err = err;
			tap_diag("forward: %s", mesh_errdetail());
		}
		if (batches++ == 3) {
			/* A crash before the acknowledgement: the same batch
			 * again, all stored already. */
			bool again[MESH_SOURCE_BATCH_MAX];
			mesh_partitioner_forward(p, mp, part, n, again);
			for (size_t i = 0; i < n; i++) {
				twice_ok += again[i];
			}
			is_int(twice_ok, (long)n,
			       "a batch forwarded again: each confirmed");
		}
		for (size_t i = 0; i < n; i++) {
			if (okv[i]) {
				mp[k++] = &m[i];
			}
		}
		confirmed += (long)k;
		mesh_source_ack(src, mp, k);
		mesh_source_release(src, m, n);
		forwarded += (long)n;
	}
	is_int(first_err, MESH_OK, "every forward confirmed");
	is_int(forwarded, EVENTS + 1, "%d messages taken from the queue",
	       EVENTS + 1);
	is_int(confirmed, EVENTS + 1, "... each confirmed in its partition");
	tap_diag("forwarded %ld in %lld ms", forwarded, test_now_ms() - t0);
	is_int(stream_msgs("MESH_PART_" SVC), EVENTS + 1,
	       "the partition stream holds each once (the repeated batch "
	       "de-duplicated)");
	mesh_source_close(src);
	mesh_partitioner_close(p);
}

static void
read_partitions(void)
{
	static struct mesh_source_msg m[MESH_SOURCE_BATCH_MAX];
	struct mesh_source_msg *mp[MESH_SOURCE_BATCH_MAX];
	long total = 0, wrong_part = 0, out_of_order = 0, dup = 0,
	     bytes_differ = 0, headers_differ = 0, attempt_not_1 = 0;
	int malformed = 0;
	char malformed_why[256] = "";

	for (int k = 0; k < PARTS; k++) {
		struct mesh_source *src = NULL;
		char spec[64];
		long last = -1;
		snprintf(spec, sizeof(spec), "partition:%s/%d", SVC, k);
		if (mesh_source_open(c, spec, NULL, &src) != MESH_OK) {
			ok(false, "open %s: %s", spec, mesh_errdetail());
			continue;
		}
		if (k == 0) {
			is_str(mesh_source_label(src), "partition:orders/0",
			       "the source's label");
		}
		for (;;) {
			size_t n = 0;
			mesh_source_fetch(src, MESH_SOURCE_BATCH_MAX, 300, m,
			                  &n, NULL);
			if (n == 0) {
				break;
			}
			for (size_t i = 0; i < n; i++) {
				long x =
				        index_of(m[i].event, m[i].parse_error);
				char *h = headers_of(m[i].msg);
				mp[i] = &m[i];
				total++;
				dup += want[x].seen++ > 0;
				wrong_part += want[x].partition != k;
				attempt_not_1 += m[i].attempt != 1;
				if (x == EVENTS) {
					malformed++;
					snprintf(malformed_why,
					         sizeof(malformed_why), "%s",
					         m[i].parse_error);
				} else {
					out_of_order += x <= last;
					last = x;
				}
				bytes_differ +=
				        natsMsg_GetDataLength(m[i].msg) !=
				                want[x].len ||
				        memcmp(natsMsg_GetData(m[i].msg),
				               want[x].data,
				               (size_t)want[x].len) != 0;
				headers_differ +=
				        strcmp(h, want[x].headers) != 0;
				if (strcmp(h, want[x].headers) != 0 &&
				    headers_differ == 1) {
					tap_diag("headers of "
					         "%ld:\n%s\nwant\n%s",
					         x, h, want[x].headers);
				}
				free(h);
			}
			mesh_source_ack(src, mp, n);
			mesh_source_release(src, m, n);
		}
		mesh_source_close(src);
	}
	is_int(total, EVENTS + 1, "every partition read: %d messages in all",
	       EVENTS + 1);
	is_int(dup, 0, "none twice");
	is_int(wrong_part, 0, "each in its partition");
	is_int(out_of_order, 0, "in order within each partition");
	is_int(bytes_differ, 0, "bytes as they were");
	is_int(headers_differ, 0, "headers as they were (Nats-* aside)");
	is_int(attempt_not_1, 0, "attempt 1 each");
	is_int(malformed, 1, "the malformed message arrived once");
	ok(malformed_why[0] != '\0', "... with parse_error set (%s)",
	   malformed_why);
	for (long i = 0; i <= EVENTS; i++) {
		free(want[i].data);
		free(want[i].headers);
	}
}

/* A malformed CloudEvent (the content type claims one) arrives with
 * parse_error set; retry redelivers with attempt 2; dead letters land in
 * the DLQ with the reason. */
static void
settle(void)
{
	struct mesh_partitioner *p = NULL;
	struct mesh_source *src = NULL;
	struct mesh_source_opts so;
	struct mesh_source_msg m[4];
	struct mesh_queue_attrs a;
	struct mesh_queue *dlq = NULL;
	struct mesh_queue_msg *dm = NULL;
	struct mesh_event *ev = NULL;
	natsMsg *bad = NULL, *msgs[2];
	const char *ids[2] = {NULL, "bad-1"};
	int part[2] = {0, 0};
	bool okv[2] = {false, false};
	size_t n = 0, dn = 0;
	long long t0;

	mesh_queue_attrs_init(&a);
	mesh_queue_create(c, "part-dlq", &a);
	mesh_partitioner_open(c, SVC, PARTS, &p);
	mesh_event_new("t.order", "test", &ev);
	mesh_event_set_id(ev, "retry-me");
	mesh_wire_msg("x", NULL, ev, NULL, &msgs[0]);
	natsMsg_Create(&bad, "x", NULL, "garbage", 7);
	natsMsgHeader_Set(bad, "Content-Type", MESH_EVENT_CONTENT_TYPE);
	msgs[1] = bad;
	is_int(mesh_partitioner_forward_msgs(p, msgs, ids, part, 2, okv),
	       MESH_OK, "two NATS messages forwarded to partition 0");
	ok(okv[0] && okv[1], "... both confirmed");
	natsMsg_Destroy(msgs[0]);
	natsMsg_Destroy(bad);
	mesh_event_free(ev);

	mesh_source_opts_init(&so);
	so.dlq = "part-dlq";
	so.service = SVC;
	mesh_source_open(c, "partition:orders/0", &so, &src);
	mesh_source_fetch(src, 4, 2000, m, &n, NULL);
	is_int(n, 2, "partition 0 gives both");
	if (n != 2) {
		goto out;
	}
	is_str(mesh_event_id(m[0].event), "retry-me", "the event, first");
	ok(m[1].parse_error[0] != '\0', "... with parse_error set (%s)",
	   m[1].parse_error);
	is_int(mesh_source_retry(src, &m[0], 300), MESH_OK,
	       "retry the event in 300 ms");
	is_int(mesh_source_dead_letter(src, &m[1], "unreadable"), MESH_OK,
	       "dead-letter the garbage");
	mesh_source_release(src, m, n);
	t0 = test_now_ms();
	mesh_source_fetch(src, 4, 3000, m, &n, NULL);
	is_int(n, 1, "the event comes again");
	if (n == 1) {
		is_str(mesh_event_id(m[0].event), "retry-me", "... itself");
		is_int(m[0].attempt, 2, "... attempt 2");
		ok(test_now_ms() - t0 >= 200, "... after its delay (%lld ms)",
		   test_now_ms() - t0);
		mesh_source_ack(src, (struct mesh_source_msg *[]){&m[0]}, 1);
		mesh_source_release(src, m, n);
	}
	mesh_source_fetch(src, 4, 300, m, &n, NULL);
	is_int(n, 0, "then nothing: acknowledged");
	mesh_source_release(src, m, n);
	mesh_queue_open(c, "part-dlq", &dlq);
	mesh_queue_receive(dlq, 10, 2, -1, &dm, &dn);
	is_int(dn, 1, "the DLQ holds the dead letter");
	if (dn == 1) {
		is_str(dm[0].dlq_reason, "unreadable", "... with the reason");
		is_str(dm[0].dlq_source, "partition:orders/0",
		       "... and the partition as its source");
		is_str(dm[0].dlq_service, SVC, "... and the service");
		is_int(natsMsg_GetDataLength(dm[0].msg), 7,
		       "... its bytes as they were");
	}
	mesh_queue_msgs_free(dm, dn);
	mesh_queue_close(dlq);
out:
	mesh_source_close(src);
	mesh_partitioner_close(p);
}

static void
info(void)
{
	struct mesh_partition_info *pi = NULL;
	int n = 0, settled = 0, delivered = 0;
	int64_t created = 0;

	is_int(mesh_partitions_info(c, SVC, &pi, &n, &created), MESH_OK,
	       "info");
	is_int(n, PARTS, "... %d partitions", PARTS);
	ok(created > 0, "... and when the count was fixed");
	for (int k = 0; k < n; k++) {
		settled += !pi[k].missing && pi[k].pending == 0 &&
		           pi[k].ack_pending == 0 &&
		           pi[k].ack_floor == pi[k].delivered;
		delivered += pi[k].delivered > 0;
	}
	is_int(settled, PARTS,
	       "... every partition settled (pending 0, "
	       "ack floor = delivered)");
	is_int(delivered, PARTS, "... each delivered something");
	free(pi);
}

/* The partition stream deleted underneath: clear errors, no crash. */
static void
deleted(void)
{
	struct mesh_partitioner *p = NULL;
	struct mesh_source *src = NULL;
	struct mesh_source_msg m[4];
	struct mesh_partition_info *pi = NULL;
	struct mesh_event *ev = NULL;
	natsMsg *msg = NULL;
	int part = 1, n = 0;
	bool okv = true;
	size_t got = 0;
	mesh_err err;

	mesh_partitioner_open(c, SVC, PARTS, &p);
	mesh_source_open(c, "partition:orders/1", NULL, &src);
	js_DeleteStream(mesh_conn_js(c), "MESH_PART_" SVC, NULL, NULL);
	err = mesh_source_fetch(src, 4, 500, m, &got, NULL);
	is_int(err, MESH_ENOTFOUND,
	       "a fetch from a deleted stream: "
	       "MESH_ENOTFOUND");
	has_str(mesh_errdetail(), "MESH_PART_orders is gone",
	        "... saying the stream is gone");
	mesh_source_close(src);
	is_int(mesh_source_open(c, "partition:orders/1", NULL, &src),
	       MESH_ENOTFOUND, "opening one: MESH_ENOTFOUND");
	has_str(mesh_errdetail(), "is gone", "... saying so");
	mesh_event_new("t.order", "test", &ev);
	mesh_event_set_id(ev, "late");
	mesh_wire_msg("x", NULL, ev, NULL, &msg);
	err = mesh_partitioner_forward_msgs(p, &msg, NULL, &part, 1, &okv);
	ok(err != MESH_OK && !okv, "forwarding to it fails (%s)",
	   mesh_errdetail());
	natsMsg_Destroy(msg);
	mesh_event_free(ev);
	is_int(mesh_partitions_info(c, SVC, &pi, &n, NULL), MESH_ENOTFOUND,
	       "info: MESH_ENOTFOUND");
	has_str(mesh_errdetail(), "is gone", "... saying so");
	is_int(mesh_source_open(c, "partition:orders/8", NULL, &src),
	       MESH_EINVAL, "partition 8 of 8: refused");
	has_str(mesh_errdetail(), "has 8 partitions (0-7), not 8",
	        "... naming it");
	is_int(mesh_source_open(c, "partition:orders", NULL, &src),
	       MESH_EINVAL, "no partition number: refused");
	is_int(mesh_source_open(c, "partition:nosuch/0", NULL, &src),
	       MESH_ENOTFOUND, "a service not partitioned: MESH_ENOTFOUND");
	is_int(mesh_partitions_ensure(c, SVC, PARTS), MESH_OK,
	       "ensure makes the stream again");
	is_int(mesh_source_open(c, "partition:orders/1", NULL, &src), MESH_OK,
	       "... and its sources open");
	mesh_source_close(src);
	mesh_partitioner_close(p);
	is_int(mesh_partitions_delete(c, SVC), MESH_OK, "delete");
	is_int(mesh_partitions_get(c, SVC, &n), MESH_ENOTFOUND,
	       "... the record is gone");
	is_int(stream_msgs("MESH_PART_" SVC), 0, "... and the stream");
	is_int(mesh_partitions_delete(c, SVC), MESH_ENOTFOUND,
	       "deleting again: MESH_ENOTFOUND");
}

int
main(void)
{
	struct mesh_conn_opts o;

	known_values();
	if (!test_broker_start(&broker, NULL)) {
		tap_skip_all("nats-server did not start");
	}
	mesh_conn_opts_init(&o);
	o.servers = broker.url;
	if (mesh_conn_open(&o, &c) != MESH_OK) {
		ok(false, "connect: %s", mesh_errdetail());
		return tap_done();
	}
	record();
	fill_queue();
	forward_all();
	read_partitions();
	settle();
	info();
	deleted();
	mesh_conn_close(c);
	test_broker_stop(&broker);
	mesh_shutdown();
	return tap_done();
}
