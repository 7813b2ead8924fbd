/* bench_security: what verifying signed events costs, measured in the same
 * run on the same nats-server (started here).
 *
 *   verify:    mesh_event_verify on one thread (the canonical form, its
 *              SHA-256 and the Ed25519 verification) over a signed
 *              PlaceOrder event. Baseline: libsodium's
 *              crypto_sign_verify_detached alone over the same bytes: the
 *              machine's raw verifications per second.
 *   pipeline:  N signed PlaceOrder events wait in a queue; the runtime's
 *              pipeline (bench_runtime's) over them with the queue
 *              requiring their signer (each event verified in its batch's
 *              thread, in-flight batches in parallel). Baseline: the same
 *              events through the same service from a queue that
 *              requires no signer (nothing verified).
 *
 *   sealed pipeline: N PlaceOrder events wait in an encrypted queue,
 *              sealed by their producer (the queue's keyring); the
 *              runtime's pipeline over them, each opened in its batch's
 *              thread with the service's identity (a reader). Baseline:
 *              the same events in clear through the same service (its
 *              identity loaded too) from a clear queue.
 *
 *   seal, open: sealed payloads (mesh/seal.h) on one thread: a copy of a
 *              PlaceOrder event sealed with an encrypted topic's current
 *              data key (mesh_keyring_seal), and a sealed one parsed and
 *              opened (mesh_keyring_open). Baselines: the same copy or
 *              parse with libsodium's XChaCha20-Poly1305 alone over the
 *              payload's bytes.
 *
 * BENCH_SECURITY_EVENTS (50000), _BATCH (256), _INFLIGHT (4), _ROUNDS
 * (3, interleaved); prints "NAME: VALUE UNIT (baseline VALUE UNIT, ratio
 * R)". Run: meson test -C build --benchmark --suite security -v */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "bench.h"
#include "bench_service.h"
#include "harness.h"
#include "mesh/service.h"
#include "mesh/clock.h"
#include "mesh/seal.h"
#include "mesh/sign.h"
#include "mesh/topic.h"

static struct test_broker broker;
static struct mesh_conn *conn;
static struct mesh_identity *signer;

/* Orders 0..n-1 to queue, signed (sign) or sealed by the queue's
 * keyring (kr, for an encrypted queue). */
static void
fill(const char *queue, long n, bool sign, struct mesh_keyring *kr)
{
	struct mesh_queue *q = NULL;
	struct mesh_sender *snd = NULL;

	if (mesh_queue_open(conn, queue, &q) != MESH_OK ||
	    mesh_sender_open_queue(q, NULL, NULL, NULL, &snd) != MESH_OK) {
		fprintf(stderr, "bench: fill: %s\n", mesh_errdetail());
		exit(1);
	}
	mesh_queue_set_keyring(q, kr);
	for (long i = 0; i < n; i++) {
		struct mesh_event *ev = bench_order(i);
		if (sign) {
			mesh_event_sign(ev, signer);
		}
		if (mesh_sender_send(snd, &(struct mesh_send){.event = ev}) !=
		    MESH_OK) {
			fprintf(stderr, "bench: fill: %s\n", mesh_errdetail());
			exit(1);
		}
		mesh_event_free(ev);
	}
	mesh_sender_close(snd);
	mesh_queue_close(q);
}

static double
pipeline(const char *queue, const char *dir, long n, int batch, int inflight,
         bool sign, struct mesh_keyring *kr,
         const struct bench_service_opts *o)
{
	struct bench_service r;
	double rate;
	json_t *st;

	fill(queue, n, sign, kr);
	bench_service_start_opts(&r, conn, queue, dir, batch, inflight, n, o);
	if ((rate = bench_service_wait(&r, 300)) <= 0) {
		exit(1);
	}
	st = bench_service_stats(conn, "bench");
	if (json_integer_value(json_object_get(st, "signature_refused")) !=
	            0 ||
	    json_integer_value(json_object_get(st, "sealed_refused")) != 0) {
		fprintf(stderr, "bench: events refused\n");
		exit(1);
	}
	json_decref(st);
	bench_service_stop(&r);
	return rate;
}

/* Calls per second of fn over about a second. */
static double
per_second(bool (*fn)(void *), void *arg)
{
	double t0 = bench_now_s(), t;
	long k = 0;

	do {
		for (int i = 0; i < 500; i++, k++) {
			if (!fn(arg)) {
				fprintf(stderr, "bench: did not verify\n");
				exit(1);
			}
		}
	} while ((t = bench_now_s() - t0) < 1.0);
	return (double)k / t;
}

struct raw {
	uint8_t *msg;
	size_t len;
	uint8_t sig[64];
	uint8_t pk[32];
};

static bool
raw_verify(void *arg)
{
	struct raw *r = arg;

	return crypto_sign_verify_detached(r->sig, r->msg, r->len, r->pk) == 0;
}

struct whole {
	struct mesh_event *ev;
	struct mesh_key_record key;
};

static bool
event_verify(void *arg)
{
	struct whole *w = arg;

	return mesh_event_verify(w->ev, &w->key, 1, 0, mesh_wall_ms(), NULL,
	                         0) == MESH_SIG_OK;
}

/* ---- sealed payloads ---------------------------------------------------- */

struct sealing {
	struct mesh_keyring *kr;
	struct mesh_event *ev; /* the clear event */
	uint8_t *sealed;       /* a sealed copy, packed */
	size_t sealed_len;
	uint8_t key[32], nonce[24], *buf;
};

static bool
seal_one(void *arg)
{
	struct sealing *x = arg;
	struct mesh_event *copy = NULL;
	bool ok = mesh_event_dup(x->ev, &copy) == MESH_OK &&
	          mesh_keyring_seal(x->kr, "topic:sec-sealed", copy) ==
	                  MESH_OK &&
	          mesh_event_sealed(copy);

	mesh_event_free(copy);
	return ok;
}

static bool
seal_raw(void *arg)
{
	struct sealing *x = arg;
	struct mesh_event *copy = NULL;
	const void *data;
	size_t len;
	bool ok = mesh_event_dup(x->ev, &copy) == MESH_OK;

	mesh_event_data(x->ev, &data, &len, NULL);
	crypto_aead_xchacha20poly1305_ietf_encrypt(
	        x->buf, NULL, data, len, NULL, 0, NULL, x->nonce, x->key);
	mesh_event_free(copy);
	return ok;
}

static bool
open_one(void *arg)
{
	struct sealing *x = arg;
	struct mesh_event *ev = NULL;
	bool ok = mesh_event_parse(x->sealed, x->sealed_len, 0, &ev) ==
	                  MESH_OK &&
	          mesh_keyring_open(x->kr, ev, NULL, 0) == MESH_OK &&
	          !mesh_event_sealed(ev);

	mesh_event_free(ev);
	return ok;
}

static bool
open_raw(void *arg)
{
	struct sealing *x = arg;
	struct mesh_event *ev = NULL;
	const void *data;
	size_t len;
	unsigned long long out;
	bool ok =
	        mesh_event_parse(x->sealed, x->sealed_len, 0, &ev) == MESH_OK;

	mesh_event_data(x->ev, &data, &len, NULL);
	/* What seal_raw left in buf. */
	ok = ok && crypto_aead_xchacha20poly1305_ietf_decrypt(
	                   x->buf + 4096, &out, NULL, x->buf, len + 16, NULL,
	                   0, x->nonce, x->key) == 0;
	mesh_event_free(ev);
	return ok;
}

static void
bench_sealing(struct mesh_identity *reader, int rounds)
{
	double s[BENCH_ROUNDS_MAX], sr[BENCH_ROUNDS_MAX], o[BENCH_ROUNDS_MAX],
	        or [BENCH_ROUNDS_MAX];
	struct mesh_topic_attrs ta;
	struct mesh_event *copy = NULL;
	struct sealing x = {0};
	const void *data;
	size_t len;

	mesh_topic_attrs_init(&ta);
	ta.encrypt = true;
	snprintf(ta.readers, sizeof(ta.readers), "%s",
	         mesh_identity_name(reader));
	if (mesh_topic_create(conn, "sec-sealed", &ta) != MESH_OK ||
	    mesh_keyring_new(conn, reader, &x.kr) != MESH_OK) {
		fprintf(stderr, "bench: %s\n", mesh_errdetail());
		exit(1);
	}
	x.ev = bench_order(1);
	mesh_event_data(x.ev, &data, &len, NULL);
	x.buf = calloc(1, 8192 + len * 2);
	crypto_aead_xchacha20poly1305_ietf_keygen(x.key);
	randombytes_buf(x.nonce, sizeof(x.nonce));
	mesh_event_dup(x.ev, &copy);
	if (mesh_keyring_seal(x.kr, "topic:sec-sealed", copy) != MESH_OK ||
	    mesh_event_pack(copy, &x.sealed, &x.sealed_len) != MESH_OK) {
		fprintf(stderr, "bench: %s\n", mesh_errdetail());
		exit(1);
	}
	mesh_event_free(copy);
	printf("# one thread; a PlaceOrder's payload is %zu bytes, its "
	       "sealed event %zu\n",
	       len, x.sealed_len);
	for (int i = 0; i < rounds; i++) {
		sr[i] = per_second(seal_raw, &x);
		s[i] = per_second(seal_one, &x);
		or [i] = per_second(open_raw, &x);
		o[i] = per_second(open_one, &x);
	}
	bench_figure_rounds("seal an event (mesh_keyring_seal)", s, sr, rounds,
	                    "events/s", 0);
	bench_figure_rounds(
	        "parse and open a sealed event (mesh_keyring_open)", o, or,
	        rounds, "events/s", 0);
	free(x.sealed);
	free(x.buf);
	mesh_event_free(x.ev);
	mesh_keyring_free(x.kr);
}

/* The pipeline with a sealed source against a clear one: the service
 * "bench" is a reader of the encrypted queue and opens every event. */
static void
bench_sealed_pipeline(const char *root, long n, int batch, int inflight,
                      int rounds)
{
	double on[BENCH_ROUNDS_MAX], off[BENCH_ROUNDS_MAX];
	char seed[PATH_MAX + 32], dir[PATH_MAX + 32];
	struct bench_service_opts o = {.identity_file = seed};
	struct mesh_identity *svc = NULL;
	struct mesh_keyring *kr = NULL;
	struct mesh_key_record rec;
	struct mesh_queue_attrs qa;

	snprintf(seed, sizeof(seed), "%s/bench-service.nk", root);
	mesh_queue_attrs_init(&qa);
	if (mesh_identity_generate("bench", seed, &svc) != MESH_OK) {
		fprintf(stderr, "bench: %s\n", mesh_errdetail());
		exit(1);
	}
	mesh_identity_record(svc, &rec);
	if (mesh_keys_put(conn, &rec, false) != MESH_OK ||
	    mesh_queue_create(conn, "sec-clear", &qa) != MESH_OK) {
		fprintf(stderr, "bench: %s\n", mesh_errdetail());
		exit(1);
	}
	qa.encrypt = true;
	snprintf(qa.readers, sizeof(qa.readers), "bench");
	if (mesh_queue_create(conn, "sec-sealed", &qa) != MESH_OK ||
	    mesh_keyring_new(conn, svc, &kr) != MESH_OK) {
		fprintf(stderr, "bench: %s\n", mesh_errdetail());
		exit(1);
	}
	printf("# %ld events sealed by their producer against the same in "
	       "clear, batches of up to %d, %d in flight; %d rounds, "
	       "interleaved\n",
	       n, batch, inflight, rounds);
	for (int i = 0; i < rounds; i++) {
		char cdir[PATH_MAX + 32];
		snprintf(dir, sizeof(dir), "%s/sealed-%d", root, i);
		snprintf(cdir, sizeof(cdir), "%s/clear-%d", root, i);
		if (i % 2 == 0) {
			off[i] = pipeline("sec-clear", cdir, n, batch,
			                  inflight, false, NULL, &o);
			on[i] = pipeline("sec-sealed", dir, n, batch, inflight,
			                 false, kr, &o);
		} else {
			on[i] = pipeline("sec-sealed", dir, n, batch, inflight,
			                 false, kr, &o);
			off[i] = pipeline("sec-clear", cdir, n, batch,
			                  inflight, false, NULL, &o);
		}
		printf("# round %d: sealed %.0f events/s, clear %.0f (ratio "
		       "%.2f)\n",
		       i + 1, on[i], off[i], on[i] / off[i]);
		fflush(stdout);
	}
	bench_figure_rounds("runtime pipeline with a sealed source", on, off,
	                    rounds, "events/s", 0);
	mesh_keyring_free(kr);
	mesh_identity_free(svc);
}

int
main(void)
{
	char root[PATH_MAX], path[PATH_MAX + 32], dir[PATH_MAX + 32];
	long n = bench_env_long("BENCH_SECURITY_EVENTS", 50000);
	int batch = (int)bench_env_long("BENCH_SECURITY_BATCH", 256);
	int inflight = (int)bench_env_long("BENCH_SECURITY_INFLIGHT", 4);
	int rounds = (int)bench_env_long("BENCH_SECURITY_ROUNDS", 3);
	double on[BENCH_ROUNDS_MAX], off[BENCH_ROUNDS_MAX],
	        v[BENCH_ROUNDS_MAX], raw[BENCH_ROUNDS_MAX];
	struct mesh_queue_attrs qa;
	struct whole w;
	struct raw r;
	unsigned char sk[64];

	rounds = rounds < 1 ? 1 : rounds > 15 ? 15 : rounds;
	if (!bench_broker_open(&broker, root, sizeof(root), &conn)) {
		return 1;
	}
	snprintf(path, sizeof(path), "%s/bench.nk", root);
	if (mesh_identity_generate("bench-signer", path, &signer) != MESH_OK) {
		fprintf(stderr, "bench: %s\n", mesh_errdetail());
		return 1;
	}
	mesh_identity_record(signer, &w.key);
	mesh_keys_put(conn, &w.key, false);

	/* One thread: the whole verification, and libsodium alone. */
	w.ev = bench_order(1);
	mesh_event_sign(w.ev, signer);
	mesh_event_canonical(w.ev, &r.msg, &r.len);
	crypto_sign_keypair(r.pk, sk);
	crypto_sign_detached(r.sig, NULL, r.msg, r.len, sk);
	printf("# one thread; a signed PlaceOrder's canonical form is %zu "
	       "bytes\n",
	       r.len);
	for (int i = 0; i < rounds; i++) {
		raw[i] = per_second(raw_verify, &r);
		v[i] = per_second(event_verify, &w);
	}
	bench_figure_rounds("event verification (canonical form + Ed25519)", v,
	                    raw, rounds, "verifications/s", 0);
	free(r.msg);
	mesh_event_free(w.ev);
	bench_sealing(signer, rounds);

	mesh_queue_attrs_init(&qa);
	mesh_queue_create(conn, "sec-off", &qa);
	snprintf(qa.require_signers, sizeof(qa.require_signers),
	         "bench-signer");
	if (mesh_queue_create(conn, "sec-on", &qa) != MESH_OK) {
		fprintf(stderr, "bench: %s\n", mesh_errdetail());
		return 1;
	}
	printf("# %ld signed events, batches of up to %d, %d in flight; %d "
	       "rounds, interleaved\n",
	       n, batch, inflight, rounds);
	for (int i = 0; i < rounds; i++) {
		snprintf(dir, sizeof(dir), "%s/on-%d", root, i);
		snprintf(path, sizeof(path), "%s/off-%d", root, i);
		if (i % 2 == 0) {
			off[i] = pipeline("sec-off", path, n, batch, inflight,
			                  true, NULL, NULL);
			on[i] = pipeline("sec-on", dir, n, batch, inflight,
			                 true, NULL, NULL);
		} else {
			on[i] = pipeline("sec-on", dir, n, batch, inflight,
			                 true, NULL, NULL);
			off[i] = pipeline("sec-off", path, n, batch, inflight,
			                  true, NULL, NULL);
		}
		printf("# round %d: verified %.0f events/s, not verified "
		       "%.0f (ratio %.2f)\n",
		       i + 1, on[i], off[i], on[i] / off[i]);
		fflush(stdout);
	}
	bench_figure_rounds("runtime pipeline with signatures verified", on,
	                    off, rounds, "events/s", 0);
	bench_sealed_pipeline(root, n, batch, inflight, rounds);
	mesh_identity_free(signer);
	mesh_conn_close(conn);
	test_broker_stop(&broker);
	test_rmtree(root);
	mesh_shutdown();
	return 0;
}
