/* conn.c: connecting to NATS, with credentials, TLS, back-off, and errors
 * that say which server could not be reached and why. */
#include <assert.h>
#include <inttypes.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "internal.h"
#include "mesh/conn.h"

#define PROBE_TIMEOUT_MS 1000
#define MAX_SERVERS      32

struct mesh_conn {
	natsConnection *nc;
	jsCtx *js;
	int replicas; /* the mesh-wide replica count; 0: by the servers */
	/* Where replies to this connection go: "_INBOX", or with an NKey
	 * "_INBOX.<its public key>", so that nats-server can let an identity
	 * subscribe to its own replies alone (meshctl auth). */
	char inbox[8 + MESH__NKEY_PUBLIC_LEN];
	/* The NKey's Ed25519 secret key, for connect nonces (nkey_sign). */
	unsigned char nkey_sk[crypto_sign_SECRETKEYBYTES];
	int64_t wait_ms;
	int64_t max_wait_ms;
	/* The bulk connection (mesh__conn_bulk): the same server and
	 * credentials, made when first asked for. */
	natsOptions *opts;
	pthread_mutex_t bulk_mu;
	natsConnection *bulk;
	bool bulk_failed;
	/* What modules keep per connection (mesh__conn_slot), freed with
	 * it; under bulk_mu. */
	struct slot {
		struct slot *next;
		char key[128];
		max_align_t data[];
	} * slots;
};

void
mesh_conn_opts_init(struct mesh_conn_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->servers = MESH_DEFAULT_URL;
	o->connect_timeout_ms = 2000;
	o->reconnect_wait_ms = 250;
	o->reconnect_max_wait_ms = 8000;
	o->max_reconnect = -1;
}

static void
env_overlay(const char **field, const char *var)
{
	const char *v = getenv(var);

	if (v != NULL && v[0] != '\0') {
		*field = v;
	}
}

void
mesh_conn_opts_from_env(struct mesh_conn_opts *o)
{
	env_overlay(&o->servers, "NATS_URL");
	env_overlay(&o->user, "NATS_USER");
	env_overlay(&o->password, "NATS_PASSWORD");
	env_overlay(&o->token, "NATS_TOKEN");
	env_overlay(&o->nkey_seed_file, "NATS_NKEY");
	env_overlay(&o->creds_file, "NATS_CREDS");
	env_overlay(&o->tls_ca, "NATS_CA");
	env_overlay(&o->tls_cert, "NATS_CERT");
	env_overlay(&o->tls_key, "NATS_KEY");
}

const char *
mesh__url_redact(const char *url, char *buf, size_t size)
{
	const char *scheme = strstr(url, "://");
	const char *start = scheme ? scheme + 3 : url;
	const char *end = start + strcspn(start, "/?");
	const char *at = NULL, *colon;

	/* The last '@' of the authority: a password may hold one unescaped,
	 * and every byte before the host is secret. */
	for (const char *p = start; p < end; p++) {
		if (*p == '@') {
			at = p;
		}
	}
	if (at == NULL) {
		snprintf(buf, size, "%s", url);
		return buf;
	}
	colon = memchr(start, ':', (size_t)(at - start));
	if (colon == NULL) {
		/* A lone token before '@'. */
		snprintf(buf, size, "%.*s***%s", (int)(start - url), url, at);
	} else {
		snprintf(buf, size, "%.*s:***%s", (int)(colon - url), url, at);
	}
	return buf;
}

/* Split "host:port" out of a URL; IPv6 hosts come in brackets. */
static bool
url_hostport(const char *url, char *host, size_t hsize, char *port,
             size_t psize)
{
	const char *p = strstr(url, "://");
	const char *at, *end, *colon;
	size_t hlen;

	p = p ? p + 3 : url;
	end = p + strcspn(p, "/?");
	at = memchr(p, '@', (size_t)(end - p));
	if (at != NULL) {
		p = at + 1;
	}
	if (*p == '[') {
		const char *rb = memchr(p, ']', (size_t)(end - p));
		if (rb == NULL) {
			return false;
		}
		hlen = (size_t)(rb - p - 1);
		if (hlen == 0 || hlen >= hsize) {
			return false;
		}
		memcpy(host, p + 1, hlen);
		host[hlen] = '\0';
		colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
	} else {
		colon = memchr(p, ':', (size_t)(end - p));
		hlen = (size_t)((colon ? colon : end) - p);
		if (hlen == 0 || hlen >= hsize) {
			return false;
		}
		memcpy(host, p, hlen);
		host[hlen] = '\0';
	}
	if (colon != NULL) {
		size_t plen = (size_t)(end - colon - 1);
		if (plen == 0 || plen >= psize) {
			return false;
		}
		memcpy(port, colon + 1, plen);
		port[plen] = '\0';
	} else {
		snprintf(port, psize, "4222");
	}
	return true;
}

/* Try a TCP connect to say why cnats could not: returns 0 when the port
 * answers, an errno otherwise, or -1 with *gai set for a name failure. */
static int
probe(const char *url, int *gai)
{
	char host[256], port[16];
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
	int result = EHOSTUNREACH;

	*gai = 0;
	if (!url_hostport(url, host, sizeof(host), port, sizeof(port))) {
		return EINVAL;
	}
	if ((*gai = getaddrinfo(host, port, &hints, &res)) != 0) {
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		int fd = socket(ai->ai_family,
		                ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
		                ai->ai_protocol);
		struct pollfd pfd = {.fd = fd, .events = POLLOUT};
		socklen_t len = sizeof(result);

		if (fd < 0) {
			result = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
			result = 0;
		} else if (errno != EINPROGRESS) {
			result = errno;
		} else if (poll(&pfd, 1, PROBE_TIMEOUT_MS) == 0) {
			result = ETIMEDOUT;
		} else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &result,
		                      &len) != 0) {
			result = errno;
		}
		close(fd);
		if (result == 0) {
			break;
		}
	}
	freeaddrinfo(res);
	return result;
}

/* Explain NATS_NO_SERVER: which servers, and why each could not be had. */
static mesh_err
unreachable(const char **urls, int n, natsStatus s)
{
	char why[1024] = "";
	size_t used = 0;
	int first_errno = 0;

	for (int i = 0; i < n && used < sizeof(why); i++) {
		char red[256];
		const char *reason;
		int gai, e = probe(urls[i], &gai);

		if (e == -1) {
			reason = gai_strerror(gai);
		} else if (e == 0) {
			/* The port answers but NATS did not: not a NATS
			 * server, or a TLS/protocol mismatch. */
			reason = nats_GetLastError(NULL);
			if (reason == NULL || reason[0] == '\0') {
				reason = natsStatus_GetText(s);
			}
			e = EPROTO;
		} else {
			reason = NULL;
		}
		if (first_errno == 0) {
			first_errno = e > 0 ? e : EHOSTUNREACH;
		}
		mesh__url_redact(urls[i], red, sizeof(red));
		if (n == 1) {
			/* The errno text comes from the one translation. */
			if (reason == NULL) {
				return mesh_err_errno(e,
				                      "cannot reach NATS "
				                      "at %s",
				                      red);
			}
			return mesh_err_set(MESH_EUNREACHABLE,
			                    "cannot reach NATS at %s: %s", red,
			                    reason);
		}
		char text[256];
		snprintf(text, sizeof(text), "%s",
		         reason ? reason : strerror(e));
		text[0] = (char)tolower((unsigned char)text[0]);
		used += (size_t)snprintf(why + used, sizeof(why) - used,
		                         "%s%s (%s)", i ? ", " : "", red,
		                         text);
	}
	return mesh_err_set(MESH_EUNREACHABLE, "cannot reach NATS at %s", why);
}

static int64_t
reconnect_delay(natsConnection *nc, int attempts, void *closure)
{
	const struct mesh_conn *c = closure;
	int64_t d = c->wait_ms;

	(void)nc;
	for (int i = 1; i < attempts && d < c->max_wait_ms; i++) {
		d *= 2;
	}
	if (d > c->max_wait_ms) {
		d = c->max_wait_ms;
	}
	/* Up to a quarter more, so that a fleet does not come back at once. */
	return d + (int64_t)randombytes_uniform((uint32_t)(d / 4 + 1));
}

/* Find the "SU..." seed in a seed file (plain, or decorated like a .creds
 * file): its public key and Ed25519 secret key. */
static mesh_err
nkey_of_file(const char *path, char pub[MESH__NKEY_PUBLIC_LEN + 1],
             unsigned char sk[crypto_sign_SECRETKEYBYTES])
{
	char buf[4096];
	char *tok, *save = NULL;
	unsigned char raw[32], pk[crypto_sign_PUBLICKEYBYTES];
	size_t n;
	FILE *f = fopen(path, "r");
	mesh_err err = MESH_EINVAL;

	if (sodium_init() < 0) {
		if (f != NULL) {
			fclose(f);
		}
		return mesh_err_set(MESH_EINTERNAL, "libsodium did not start");
	}
	if (f == NULL) {
		return mesh_err_errno(errno, "nkey seed file '%s'", path);
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	for (tok = strtok_r(buf, " \t\r\n", &save); tok != NULL;
	     tok = strtok_r(NULL, " \t\r\n", &save)) {
		if (strncmp(tok, "SU", 2) == 0 &&
		    strlen(tok) == MESH__NKEY_SEED_LEN) {
			err = mesh__nkey_seed_decode(tok, raw);
			break;
		}
	}
	sodium_memzero(buf, sizeof(buf));
	if (err != MESH_OK) {
		return mesh_err_set(MESH_EINVAL,
		                    "nkey seed file '%s': no valid user seed "
		                    "(SU...) in it",
		                    path);
	}
	crypto_sign_seed_keypair(pk, sk, raw);
	sodium_memzero(raw, sizeof(raw));
	mesh__nkey_public_encode(pk, pub);
	return MESH_OK;
}

/* cnats' signature handler for the connect nonce; cnats frees *sig. */
static natsStatus
nkey_sign(char **err_text, unsigned char **sig, int *sig_len,
          const char *nonce, void *closure)
{
	const struct mesh_conn *c = closure;

	(void)err_text;
	if ((*sig = malloc(crypto_sign_BYTES)) == NULL) {
		return NATS_NO_MEMORY;
	}
	mesh__nkey_sign_nonce(c->nkey_sk, (const unsigned char *)nonce,
	                      strlen(nonce), *sig);
	*sig_len = crypto_sign_BYTES;
	return NATS_OK;
}

/* Apply every option to cnats' options; the failing one is named. */
/* nats-server answers a publish or subscribe its permissions refuse with
 * an asynchronous -ERR naming the subject, and the request then times
 * out: note the refusal, so that the timeout's error names it. */
static void
async_error(natsConnection *nc, natsSubscription *sub, natsStatus err,
            void *closure)
{
	const char *text = NULL;

	(void)sub;
	(void)closure;
	if (err == NATS_NOT_PERMITTED &&
	    natsConnection_GetLastError(nc, &text) == NATS_NOT_PERMITTED &&
	    text != NULL) {
		mesh__err_denied(text);
	}
}

static mesh_err
build_options(const struct mesh_conn_opts *o, struct mesh_conn *c,
              natsOptions *no, const char **urls, int n_urls)
{
	natsStatus s;

	if ((s = natsOptions_SetServers(no, urls, n_urls)) != NATS_OK) {
		return mesh_err_nats(s, 0, "server list '%s'", o->servers);
	}
	if ((s = natsOptions_SetNoRandomize(no, true)) != NATS_OK ||
	    (s = natsOptions_SetTimeout(no, o->connect_timeout_ms)) !=
	            NATS_OK ||
	    (s = natsOptions_SetMaxReconnect(
	             no, o->max_reconnect < 0 ? 1 << 30 : o->max_reconnect)) !=
	            NATS_OK ||
	    (s = natsOptions_SetCustomReconnectDelay(no, reconnect_delay,
	                                             c)) != NATS_OK ||
	    (s = natsOptions_SetReconnectBufSize(no, 16 * 1024 * 1024)) !=
	            NATS_OK ||
	    /* Requests are latency-bound: write each at once rather than
	     * wait for cnats' flusher to coalesce. */
	    (s = natsOptions_SetSendAsap(no, true)) != NATS_OK ||
	    (s = natsOptions_UseGlobalMessageDelivery(
	             no, o->shared_delivery)) != NATS_OK ||
	    (s = natsOptions_SetErrorHandler(no, async_error, NULL)) !=
	            NATS_OK) {
		return mesh_err_nats(s, 0, "connection options");
	}
	if (o->name != NULL &&
	    (s = natsOptions_SetName(no, o->name)) != NATS_OK) {
		return mesh_err_nats(s, 0, "connection name '%s'", o->name);
	}
	if (o->user != NULL &&
	    (s = natsOptions_SetUserInfo(no, o->user, o->password)) !=
	            NATS_OK) {
		return mesh_err_nats(s, 0, "user '%s'", o->user);
	}
	if (o->token != NULL &&
	    (s = natsOptions_SetToken(no, o->token)) != NATS_OK) {
		return mesh_err_nats(s, 0, "token");
	}
	if (o->creds_file != NULL) {
		if (access(o->creds_file, R_OK) != 0) {
			return mesh_err_errno(errno, "creds file '%s'",
			                      o->creds_file);
		}
		s = natsOptions_SetUserCredentialsFromFiles(no, o->creds_file,
		                                            NULL);
		if (s != NATS_OK) {
			return mesh_err_nats(s, 0, "creds file '%s'",
			                     o->creds_file);
		}
	}
	if (o->nkey_seed_file != NULL) {
		char pub[MESH__NKEY_PUBLIC_LEN + 1];
		mesh_err err =
		        nkey_of_file(o->nkey_seed_file, pub, c->nkey_sk);
		if (err != MESH_OK) {
			return err;
		}
		/* Not natsOptions_SetNKeyFromSeed: see mesh__nkey_sign_nonce.
		 */
		s = natsOptions_SetNKey(no, pub, nkey_sign, c);
		if (s == NATS_OK) {
			snprintf(c->inbox, sizeof(c->inbox), "_INBOX.%s", pub);
			s = natsOptions_SetCustomInboxPrefix(no, c->inbox);
		}
		if (s != NATS_OK) {
			return mesh_err_nats(s, 0, "nkey seed file '%s'",
			                     o->nkey_seed_file);
		}
	}
	if (o->tls || o->tls_ca != NULL || o->tls_cert != NULL) {
		if ((s = natsOptions_SetSecure(no, true)) != NATS_OK) {
			return mesh_err_nats(s, 0, "TLS");
		}
	}
	if (o->tls_ca != NULL && (s = natsOptions_LoadCATrustedCertificates(
	                                  no, o->tls_ca)) != NATS_OK) {
		return mesh_err_nats(s, 0, "TLS CA file '%s'", o->tls_ca);
	}
	if ((o->tls_cert != NULL) != (o->tls_key != NULL)) {
		return mesh_err_set(MESH_EINVAL,
		                    "TLS client certificate and key go "
		                    "together: give both or neither");
	}
	if (o->tls_cert != NULL &&
	    (s = natsOptions_LoadCertificatesChain(no, o->tls_cert,
	                                           o->tls_key)) != NATS_OK) {
		return mesh_err_nats(s, 0, "TLS certificate '%s' / key '%s'",
		                     o->tls_cert, o->tls_key);
	}
	return MESH_OK;
}

/* The mesh-wide replica count asked for: o->replicas, else MESH_REPLICAS,
 * else 0 (chosen by the servers there are). */
static mesh_err
replicas_of(const struct mesh_conn_opts *o, int *out)
{
	const char *env = getenv("MESH_REPLICAS");
	char *end = NULL;
	long v;

	if (o->replicas != 0) {
		if (o->replicas < 1 || o->replicas > MESH_REPLICAS_MAX) {
			return mesh_err_set(MESH_EINVAL,
			                    "replicas %d: a replica count is "
			                    "1-%d",
			                    o->replicas, MESH_REPLICAS_MAX);
		}
		*out = o->replicas;
		return MESH_OK;
	}
	*out = 0;
	if (env == NULL || env[0] == '\0') {
		return MESH_OK;
	}
	v = strtol(env, &end, 10);
	if (*end != '\0' || v < 1 || v > MESH_REPLICAS_MAX) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "MESH_REPLICAS '%.32s': a replica count is "
		        "1-%d",
		        env, MESH_REPLICAS_MAX);
	}
	*out = (int)v;
	return MESH_OK;
}

int
mesh_conn_servers(struct mesh_conn *c)
{
	char **urls = NULL;
	int n = 0, distinct = 0;

	if (natsConnection_GetServers(c->nc, &urls, &n) != NATS_OK) {
		return 1; /* connected to one, at least */
	}
	for (int i = 0; i < n; i++) {
		bool seen = false;
		for (int j = 0; j < i && !seen; j++) {
			seen = strcmp(urls[i], urls[j]) == 0;
		}
		distinct += !seen;
	}
	for (int i = 0; i < n; i++) {
		free(urls[i]);
	}
	free(urls);
	return distinct > 0 ? distinct : 1;
}

int
mesh_conn_replicas(struct mesh_conn *c)
{
	if (c->replicas > 0) {
		return c->replicas;
	}
	return mesh_conn_servers(c) >= 3 ? 3 : 1;
}

mesh_err
mesh_replicas_check(struct mesh_conn *c, const char *what, int64_t replicas)
{
	int servers;

	if (replicas < 1 || replicas > MESH_REPLICAS_MAX) {
		return mesh_err_set(MESH_EINVAL,
		                    "%s: Replicas %" PRId64 " is out of range "
		                    "1-%d",
		                    what, replicas, MESH_REPLICAS_MAX);
	}
	if (c != NULL && replicas > (servers = mesh_conn_servers(c))) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "%s: Replicas %" PRId64 " is more than the "
		        "%d NATS server%s this mesh runs on (a "
		        "copy each)",
		        what, replicas, servers, servers == 1 ? "" : "s");
	}
	return MESH_OK;
}

mesh_err
mesh__replicas_default_err(mesh_err err)
{
	char detail[512];

	snprintf(detail, sizeof(detail), "%s", mesh_errdetail());
	return mesh_err_set(
	        err,
	        "%s: the mesh's default replica count (MESH_REPLICAS "
	        "or the connection's); give one with --replicas",
	        detail);
}

mesh_err
mesh_conn_open(const struct mesh_conn_opts *o, struct mesh_conn **out)
{
	struct mesh_conn *c;
	natsOptions *no = NULL;
	char *list = NULL, *save = NULL;
	const char *urls[MAX_SERVERS];
	int n_urls = 0;
	natsStatus s;
	mesh_err err;

	assert(o != NULL && out != NULL);
	if (o->servers == NULL || o->servers[0] == '\0') {
		return mesh_err_set(MESH_EINVAL, "no NATS server URL given");
	}
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (list = strdup(o->servers)) == NULL) {
		free(c);
		return mesh_err_set(MESH_ENOMEM, "connection");
	}
	pthread_mutex_init(&c->bulk_mu, NULL);
	snprintf(c->inbox, sizeof(c->inbox), "_INBOX");
	if ((err = replicas_of(o, &c->replicas)) != MESH_OK) {
		goto fail;
	}
	c->wait_ms = o->reconnect_wait_ms > 0 ? o->reconnect_wait_ms : 1;
	c->max_wait_ms = o->reconnect_max_wait_ms > c->wait_ms
	                         ? o->reconnect_max_wait_ms
	                         : c->wait_ms;
	for (char *t = strtok_r(list, ", ", &save); t != NULL;
	     t = strtok_r(NULL, ", ", &save)) {
		char host[256], port[16];
		if (n_urls == MAX_SERVERS) {
			err = mesh_err_set(MESH_EINVAL,
			                   "more than %d NATS server URLs",
			                   MAX_SERVERS);
			goto fail;
		}
		if (!url_hostport(t, host, sizeof(host), port, sizeof(port))) {
			char red[256];
			err = mesh_err_set(
			        MESH_EINVAL, "invalid NATS server URL '%s'",
			        mesh__url_redact(t, red, sizeof(red)));
			goto fail;
		}
		urls[n_urls++] = t;
	}
	if (n_urls == 0) {
		err = mesh_err_set(MESH_EINVAL, "no NATS server URL given");
		goto fail;
	}
	if ((s = natsOptions_Create(&no)) != NATS_OK) {
		err = mesh_err_nats(s, 0, "connection options");
		goto fail;
	}
	if ((err = build_options(o, c, no, urls, n_urls)) != MESH_OK) {
		goto fail;
	}
	s = natsConnection_Connect(&c->nc, no);
	if (s == NATS_NO_SERVER || s == NATS_TIMEOUT || s == NATS_IO_ERROR) {
		err = unreachable(urls, n_urls, s);
		goto fail;
	} else if (s == NATS_CONNECTION_AUTH_FAILED ||
	           s == NATS_NOT_PERMITTED) {
		char red[256];
		err = mesh_err_nats(
		        s, 0, "NATS at %s refused the credentials",
		        mesh__url_redact(urls[0], red, sizeof(red)));
		goto fail;
	} else if (s != NATS_OK) {
		char red[256];
		err = mesh_err_nats(
		        s, 0, "connecting to NATS at %s",
		        mesh__url_redact(urls[0], red, sizeof(red)));
		goto fail;
	}
	if ((s = natsConnection_JetStream(&c->js, c->nc, NULL)) != NATS_OK) {
		err = mesh_err_nats(s, 0, "JetStream context");
		goto fail;
	}
	c->opts = no;
	free(list);
	*out = c;
	return MESH_OK;
fail:
	natsOptions_Destroy(no);
	free(list);
	mesh_conn_close(c);
	return err;
}

/* Flush nc unless it is not connected: a flush while cnats reconnects
 * only waits out its timeout (what it holds is written on reconnecting,
 * or lost at close either way), which made a daemon told to stop while
 * its broker was away take seconds. */
static void
flush_connected(natsConnection *nc, int64_t timeout_ms)
{
	if (nc != NULL &&
	    natsConnection_Status(nc) == NATS_CONN_STATUS_CONNECTED) {
		natsConnection_FlushTimeout(nc, timeout_ms);
	}
}

void
mesh_conn_close(struct mesh_conn *c)
{
	if (c == NULL) {
		return;
	}
	jsCtx_Destroy(c->js);
	if (c->bulk != NULL) {
		flush_connected(c->bulk, 2000);
		natsConnection_Close(c->bulk);
		natsConnection_Destroy(c->bulk);
	}
	if (c->nc != NULL) {
		natsConnection_Close(c->nc);
		natsConnection_Destroy(c->nc);
	}
	natsOptions_Destroy(c->opts);
	while (c->slots != NULL) {
		struct slot *next = c->slots->next;
		free(c->slots);
		c->slots = next;
	}
	pthread_mutex_destroy(&c->bulk_mu);
	sodium_memzero(c->nkey_sk, sizeof(c->nkey_sk));
	free(c);
}

void *
mesh__conn_slot(struct mesh_conn *c, const char *key, size_t size)
{
	struct slot *sl;

	pthread_mutex_lock(&c->bulk_mu);
	for (sl = c->slots; sl != NULL; sl = sl->next) {
		if (strcmp(sl->key, key) == 0) {
			break;
		}
	}
	if (sl == NULL && (sl = calloc(1, sizeof(*sl) + size)) != NULL) {
		snprintf(sl->key, sizeof(sl->key), "%s", key);
		sl->next = c->slots;
		c->slots = sl;
	}
	pthread_mutex_unlock(&c->bulk_mu);
	return sl != NULL ? sl->data : NULL;
}

natsConnection *
mesh__conn_bulk(struct mesh_conn *c)
{
	natsConnection *nc;

	pthread_mutex_lock(&c->bulk_mu);
	if (c->bulk == NULL && !c->bulk_failed && c->opts != NULL &&
	    (natsOptions_SetSendAsap(c->opts, false) != NATS_OK ||
	     natsConnection_Connect(&c->bulk, c->opts) != NATS_OK)) {
		c->bulk = NULL;
		c->bulk_failed = true; /* the main connection serves */
	}
	nc = c->bulk != NULL ? c->bulk : c->nc;
	pthread_mutex_unlock(&c->bulk_mu);
	return nc;
}

void
mesh_conn_flush(struct mesh_conn *c, int64_t timeout_ms)
{
	natsConnection *nc;

	pthread_mutex_lock(&c->bulk_mu);
	nc = c->bulk;
	pthread_mutex_unlock(&c->bulk_mu);
	flush_connected(nc, timeout_ms);
	flush_connected(c->nc, timeout_ms);
}

void
mesh_conn_inbox(struct mesh_conn *c, char *buf, size_t size)
{
	natsInbox *inbox = NULL;
	const char *unique;

	/* natsInbox_Create makes "_INBOX.<nuid>" whatever the prefix. */
	if (natsInbox_Create(&inbox) != NATS_OK) {
		snprintf(buf, size, "%s.%016llx", c->inbox,
		         (unsigned long long)randombytes_random() << 32 |
		                 randombytes_random());
		return;
	}
	unique = strrchr(inbox, '.');
	snprintf(buf, size, "%s%s", c->inbox, unique != NULL ? unique : "");
	natsInbox_Destroy(inbox);
}

natsConnection *
mesh_conn_nats(struct mesh_conn *c)
{
	return c->nc;
}

jsCtx *
mesh_conn_js(struct mesh_conn *c)
{
	return c->js;
}

const char *
mesh_conn_url(struct mesh_conn *c, char *buf, size_t size)
{
	char url[512];

	if (natsConnection_GetConnectedUrl(c->nc, url, sizeof(url)) !=
	            NATS_OK ||
	    url[0] == '\0') {
		snprintf(buf, size, "(not connected)");
		return buf;
	}
	return mesh__url_redact(url, buf, size);
}

mesh_err
mesh_conn_rtt(struct mesh_conn *c, int64_t *usec)
{
	int64_t ns;
	natsStatus s = natsConnection_GetRTT(c->nc, &ns);

	if (s != NATS_OK) {
		return mesh_err_nats(s, 0, "round trip to NATS");
	}
	*usec = ns / 1000;
	return MESH_OK;
}

void
mesh_shutdown(void)
{
	nats_CloseAndWait(2000);
}
