/* Connections against real nats-servers: URL lists, every credential kind
 * the server can check here, clear errors, and reconnecting. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <sodium.h>

#include "harness.h"
#include "internal.h"
#include "mesh/mesh.h"

static mesh_err
connect_to(const char *servers, struct mesh_conn_opts *o, struct mesh_conn **c)
{
	o->servers = servers;
	return mesh_conn_open(o, c);
}

static void
test_plain(void)
{
	struct test_broker b;
	struct mesh_conn_opts o;
	struct mesh_conn *c = NULL;
	char list[256], url[128];
	int64_t rtt;

	if (!ok(test_broker_start(&b, NULL), "a broker starts")) {
		return;
	}
	mesh_conn_opts_init(&o);
	is_int(connect_to(b.url, &o, &c), MESH_OK, "connects to %s", b.url);
	ok(mesh_conn_js(c) != NULL, "with a JetStream context");
	ok(mesh_conn_rtt(c, &rtt) == MESH_OK && rtt >= 0,
	   "and measures a round trip");
	mesh_conn_close(c);
	c = NULL;

	/* A dead server first in the list: the next one is used. */
	snprintf(list, sizeof(list), "nats://127.0.0.1:1,%s", b.url);
	is_int(connect_to(list, &o, &c), MESH_OK,
	       "a URL list skips a dead server");
	has_str(mesh_conn_url(c, url, sizeof(url)), b.url + 7,
	        "and is connected to the live one");

	/* Reconnect: the broker is killed and comes back on its port. */
	test_broker_kill(&b);
	ok(test_broker_restart(&b), "the broker comes back after kill -9");
	{
		long long deadline = test_now_ms() + 10000;
		mesh_err err;
		do {
			usleep(50000);
			err = mesh_conn_rtt(c, &rtt);
		} while (err != MESH_OK && test_now_ms() < deadline);
		is_int(err, MESH_OK, "the connection reconnects by itself");
	}
	mesh_conn_close(c);
	test_broker_stop(&b);
}

static void
test_unreachable(void)
{
	struct mesh_conn_opts o;
	struct mesh_conn *c = NULL;
	long long t0 = test_now_ms();

	mesh_conn_opts_init(&o);
	is_int(connect_to("nats://127.0.0.1:1", &o, &c), MESH_EUNREACHABLE,
	       "a closed port is unreachable");
	is_str(mesh_errdetail(),
	       "cannot reach NATS at nats://127.0.0.1:1: connection refused",
	       "and the detail says where and why");
	ok(test_now_ms() - t0 < 5000, "within 5 seconds");
	ok(c == NULL, "nothing is returned");

	/* A port that accepts but never speaks NATS (a listener nobody
	 * serves) takes the connect timeout, not forever. */
	{
		struct sockaddr_in sa = {.sin_family = AF_INET};
		socklen_t len = sizeof(sa);
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		char url[64];

		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		bind(fd, (struct sockaddr *)&sa, sizeof(sa));
		listen(fd, 8);
		getsockname(fd, (struct sockaddr *)&sa, &len);
		snprintf(url, sizeof(url), "nats://127.0.0.1:%d",
		         ntohs(sa.sin_port));
		o.connect_timeout_ms = 500;
		t0 = test_now_ms();
		is_int(connect_to(url, &o, &c), MESH_EUNREACHABLE,
		       "a silent server is unreachable");
		ok(test_now_ms() - t0 < 5000, "within 5 seconds (%lld ms)",
		   test_now_ms() - t0);
		has_str(mesh_errdetail(), url, "the detail names the server");
		close(fd);
	}

	mesh_conn_opts_init(&o);
	is_int(connect_to("nats://u:hunter2@127.0.0.1:1", &o, &c),
	       MESH_EUNREACHABLE, "unreachable with a password in the URL");
	ok(strstr(mesh_errdetail(), "hunter2") == NULL,
	   "the password is not in the error");
	is_int(connect_to("nats://[::1", &o, &c), MESH_EINVAL,
	       "a malformed URL is invalid");
	has_str(mesh_errdetail(), "invalid NATS server URL",
	        "and the detail says so");
	is_int(connect_to("", &o, &c), MESH_EINVAL, "an empty URL is invalid");
	mesh_conn_opts_init(&o);
	o.nkey_seed_file = "/nonexistent/seed";
	is_int(connect_to("nats://127.0.0.1:1", &o, &c), MESH_ENOTFOUND,
	       "a missing seed file is an error before connecting");
	has_str(mesh_errdetail(), "/nonexistent/seed", "naming the file");
	mesh_conn_opts_init(&o);
	o.creds_file = "/nonexistent/x.creds";
	is_int(connect_to("nats://127.0.0.1:1", &o, &c), MESH_ENOTFOUND,
	       "a missing creds file is an error before connecting");
	has_str(mesh_errdetail(), "/nonexistent/x.creds", "naming the file");
}

static void
test_user_password(void)
{
	struct test_broker b;
	struct mesh_conn_opts o;
	struct mesh_conn *c = NULL;

	if (!ok(test_broker_start(&b, "authorization { user: alice, "
	                              "password: s3cret }"),
	        "a broker with a password starts")) {
		return;
	}
	mesh_conn_opts_init(&o);
	o.user = "alice";
	o.password = "s3cret";
	is_int(connect_to(b.url, &o, &c), MESH_OK, "the right password works");
	mesh_conn_close(c);
	c = NULL;
	o.password = "wrong";
	is_int(connect_to(b.url, &o, &c), MESH_EAUTH,
	       "a wrong password is an authentication error");
	has_str(mesh_errdetail(), "refused the credentials",
	        "and the detail says so");
	mesh_conn_opts_init(&o);
	setenv("NATS_USER", "alice", 1);
	setenv("NATS_PASSWORD", "s3cret", 1);
	mesh_conn_opts_from_env(&o);
	unsetenv("NATS_USER");
	unsetenv("NATS_PASSWORD");
	is_int(connect_to(b.url, &o, &c), MESH_OK,
	       "NATS_USER and NATS_PASSWORD are honoured");
	mesh_conn_close(c);
	test_broker_stop(&b);
}

static void
test_token(void)
{
	struct test_broker b;
	struct mesh_conn_opts o;
	struct mesh_conn *c = NULL;
	char url[128];

	if (!ok(test_broker_start(&b, "authorization { token: t0ken }"),
	        "a broker with a token starts")) {
		return;
	}
	mesh_conn_opts_init(&o);
	o.token = "t0ken";
	is_int(connect_to(b.url, &o, &c), MESH_OK, "the token works");
	mesh_conn_close(c);
	c = NULL;
	mesh_conn_opts_init(&o);
	snprintf(url, sizeof(url), "nats://t0ken@127.0.0.1:%d", b.port);
	is_int(connect_to(url, &o, &c), MESH_OK, "a token in the URL works");
	mesh_conn_close(c);
	c = NULL;
	is_int(connect_to(b.url, &o, &c), MESH_EAUTH, "no token is refused");
	test_broker_stop(&b);
}

static void
test_nkey(void)
{
	struct test_broker b;
	struct mesh_conn_opts o;
	struct mesh_conn *c = NULL;
	unsigned char raw[32];
	char seed[MESH__NKEY_SEED_LEN + 1], pub[MESH__NKEY_PUBLIC_LEN + 1];
	char conf[256], path[PATH_MAX + 16];
	FILE *f;

	if (sodium_init() < 0) {
		ok(false, "libsodium starts");
		return;
	}
	randombytes_buf(raw, sizeof(raw));
	mesh__nkey_seed_encode(raw, seed);
	mesh__nkey_public_from_seed(seed, pub);
	snprintf(conf, sizeof(conf),
	         "authorization { users = [ { nkey: %s } ] }", pub);
	if (!ok(test_broker_start(&b, conf), "a broker with an nkey user "
	                                     "starts")) {
		return;
	}
	snprintf(path, sizeof(path), "%s/user.nk", b.dir);
	f = fopen(path, "w");
	fprintf(f, "%s\n", seed);
	fclose(f);
	mesh_conn_opts_init(&o);
	o.nkey_seed_file = path;
	is_int(connect_to(b.url, &o, &c), MESH_OK,
	       "the nkey seed file signs the server's nonce");
	mesh_conn_close(c);
	c = NULL;
	/* cnats 3.4 leaves out a signature whose first byte is 0 (one
	 * nonce in 256): 1,500 connects meet one with odds of 99.7 %. */
	int refused = 0;
	for (int i = 0; i < 1500; i++) {
		if (connect_to(b.url, &o, &c) != MESH_OK) {
			refused++;
		}
		mesh_conn_close(c);
		c = NULL;
	}
	is_int(refused, 0, "1,500 connects with the nkey: none refused");
	raw[0] ^= 1;
	mesh__nkey_seed_encode(raw, seed);
	f = fopen(path, "w");
	fprintf(f, "%s\n", seed);
	fclose(f);
	is_int(connect_to(b.url, &o, &c), MESH_EAUTH,
	       "another seed is refused");
	f = fopen(path, "w");
	fprintf(f, "not a seed\n");
	fclose(f);
	is_int(connect_to(b.url, &o, &c), MESH_EINVAL,
	       "a file without a seed is invalid");
	has_str(mesh_errdetail(), "no valid user seed", "and says so");
	test_broker_stop(&b);
}

/* The nonce signer: a message whose RFC 8032 signature starts with 0
 * gets another valid signature that does not. */
static void
test_nonce_signer(void)
{
	unsigned char seed[32] = {7}, pk[32], sk[64], sig[64], det[64];
	char m[32];
	int i, tried = 0, zero = 0, good = 0;

	if (sodium_init() < 0) {
		ok(false, "libsodium starts");
		return;
	}
	crypto_sign_seed_keypair(pk, sk, seed);
	for (i = 0; zero < 3 && i < 100000; i++) {
		snprintf(m, sizeof(m), "nonce-%d", i);
		crypto_sign_detached(sig, NULL, (unsigned char *)m, strlen(m),
		                     sk);
		if (sig[0] != 0) {
			continue;
		}
		zero++;
		mesh__nkey_sign_nonce(sk, (unsigned char *)m, strlen(m), sig);
		good += sig[0] != 0 &&
		        crypto_sign_verify_detached(sig, (unsigned char *)m,
		                                    strlen(m), pk) == 0;
		tried++;
	}
	is_int(tried, 3, "three nonces whose signature starts with 0");
	is_int(good, 3, "each signed again: valid, and not starting with 0");
	snprintf(m, sizeof(m), "nonce-x");
	crypto_sign_detached(det, NULL, (unsigned char *)m, strlen(m), sk);
	mesh__nkey_sign_nonce(sk, (unsigned char *)m, strlen(m), sig);
	ok(det[0] != 0 && memcmp(sig, det, sizeof(det)) == 0,
	   "any other nonce keeps its deterministic signature");
}

int
main(void)
{
	test_nonce_signer();
	test_unreachable();
	test_plain();
	test_user_password();
	test_token();
	test_nkey();
	mesh_shutdown();
	return tap_done();
}
