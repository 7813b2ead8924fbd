/* A service's parameters (mesh_param_get, mesh_service_on_param) against
 * a real nats-server: a handler reads a String and a SecureString it is a
 * reader of (its identity from a seed file, as MESH_IDENTITY gives it),
 * is refused one it is not a reader of, and sees a change and a delete
 * through the callback and in its next event. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "service_thread.h"
#include "mesh/identity.h"
#include "mesh/param.h"
#include "mesh/service.h"

#define SECRET "db-pa55-for-pricing"

static struct test_broker broker;
static struct mesh_conn *c;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

/* What the handler saw, its last event. */
static struct {
	int events;
	char discount[64];
	mesh_err discount_err, secret_err, other_err, undeclared_err;
	bool secret_right;
	int64_t discount_version;
	/* The callback's last call. */
	char changed[128];
	int64_t changed_version;
	int changes;
} seen;

static mesh_handler_result
on_price(struct mesh_ctx *ctx, const struct mesh_event *ev,
         const ProtobufCMessage *msg, void *arg)
{
	char buf[MESH_PARAM_VALUE_MAX + 1], secret[MESH_PARAM_VALUE_MAX + 1];
	int64_t v = 0;
	mesh_err d, s, o, u;

	(void)ev;
	(void)msg;
	(void)arg;
	d = mesh_param_get(ctx, "/shop/orders/discount", buf, sizeof(buf), &v);
	s = mesh_param_get(ctx, "/shop/db/password", secret, sizeof(secret),
	                   NULL);
	o = mesh_param_get(ctx, "/shop/db/other", secret + 1024, 1024, NULL);
	u = mesh_param_get(ctx, "/elsewhere", secret + 2048, 1024, NULL);
	pthread_mutex_lock(&mu);
	seen.events++;
	seen.discount_err = d;
	snprintf(seen.discount, sizeof(seen.discount), "%.63s",
	         d == MESH_OK ? buf : "");
	seen.discount_version = v;
	seen.secret_err = s;
	seen.secret_right = s == MESH_OK && strcmp(secret, SECRET) == 0;
	seen.other_err = o;
	seen.undeclared_err = u;
	pthread_mutex_unlock(&mu);
	return MESH_HANDLER_OK;
}

static void
on_change(struct mesh_service *s, const char *name, int64_t version, void *arg)
{
	(void)s;
	(void)arg;
	pthread_mutex_lock(&mu);
	snprintf(seen.changed, sizeof(seen.changed), "%s", name);
	seen.changed_version = version;
	seen.changes++;
	pthread_mutex_unlock(&mu);
}

static void
send_price(void)
{
	struct mesh_queue *q = NULL;
	struct mesh_event *ev = NULL;
	struct mesh_queue_entry e = {.delay_s = -1};
	struct mesh_queue_sent sent;

	mesh_event_new("test.price", "test", &ev);
	mesh_event_set_text(ev, "x", 1);
	e.event = ev;
	if (mesh_queue_open(c, "pr-in", &q) == MESH_OK) {
		mesh_queue_send(q, &e, &sent);
	}
	mesh_queue_close(q);
	mesh_event_free(ev);
}

/* Wait until a counter of `seen` reaches want (5 s at most). */
static bool
reaches(const int *counter, int want)
{
	for (int i = 0; i < 500; i++) {
		pthread_mutex_lock(&mu);
		int n = *counter;
		pthread_mutex_unlock(&mu);
		if (n >= want) {
			return true;
		}
		nats_Sleep(10);
	}
	return false;
}

static mesh_err
put(const char *name, enum mesh_param_type t, const char *value,
    const char *reader, const struct mesh_identity *writer)
{
	struct mesh_param_put_opts o;
	const char *readers[] = {reader};

	mesh_param_put_opts_init(&o);
	o.name = name;
	o.type = t;
	o.value = value;
	o.overwrite = true;
	o.readers = readers;
	o.n_readers = reader != NULL ? 1 : 0;
	return mesh_param_put(c, &o, writer, NULL);
}

int
main(void)
{
	struct mesh_conn_opts co;
	struct mesh_queue_attrs qa;
	struct mesh_identity *admin = NULL, *pricing = NULL, *other = NULL;
	struct mesh_key_record rec;
	struct mesh_service_opts *o;
	struct running r;
	char dir[PATH_MAX], state[PATH_MAX + 16], seed[PATH_MAX + 16],
	        path[PATH_MAX + 16], buf[64];

	if (!test_tmpdir(dir, sizeof(dir))) {
		tap_skip_all("no temporary folder");
	}
	if (!test_broker_start(&broker, NULL)) {
		tap_skip_all("no nats-server");
	}
	mesh_conn_opts_init(&co);
	co.servers = broker.url;
	is_int(mesh_conn_open(&co, &c), MESH_OK, "connected");
	mesh_queue_attrs_init(&qa);
	mesh_queue_create(c, "pr-in", &qa);

	snprintf(seed, sizeof(seed), "%s/pricing.nk", dir);
	mesh_identity_generate("pricing", seed, &pricing);
	snprintf(path, sizeof(path), "%s/admin.nk", dir);
	mesh_identity_generate("admin", path, &admin);
	snprintf(path, sizeof(path), "%s/other.nk", dir);
	mesh_identity_generate("other", path, &other);
	ok(admin && pricing && other, "identities");
	mesh_identity_record(pricing, &rec);
	mesh_keys_put(c, &rec, false);
	mesh_identity_record(other, &rec);
	mesh_keys_put(c, &rec, false);
	is_int(put("/shop/orders/discount", MESH_PARAM_STRING, "10", NULL,
	           NULL),
	       MESH_OK, "a String");
	is_int(put("/shop/db/password", MESH_PARAM_SECURE_STRING, SECRET,
	           "pricing", admin),
	       MESH_OK, "a SecureString for pricing");
	is_int(put("/shop/db/other", MESH_PARAM_SECURE_STRING, "not-yours",
	           "other", admin),
	       MESH_OK, "a SecureString for another");
	put("/elsewhere", MESH_PARAM_STRING, "x", NULL, NULL);

	memset(&r, 0, sizeof(r));
	mesh_service_new("pricing", &r.s);
	o = mesh_service_opts(r.s);
	snprintf(state, sizeof(state), "%s/state", dir);
	o->state_dir = state;
	o->map_size = 16u << 20;
	o->identity_file = seed;
	mesh_service_consume(r.s, "pr-in");
	mesh_service_on(r.s, "test.price", NULL, on_price, NULL);
	is_int(mesh_service_on_param(r.s, "shop/", NULL, NULL), MESH_EINVAL,
	       "a path without its leading '/' is refused");
	is_int(mesh_service_on_param(r.s, "/shop/", on_change, NULL), MESH_OK,
	       "the service declares /shop/ with a callback");
	r.c = c;
	running_start(&r);

	send_price();
	ok(reaches(&seen.events, 1), "the handler ran");
	pthread_mutex_lock(&mu);
	is_int(seen.discount_err, MESH_OK, "it read the String");
	is_str(seen.discount, "10", "its value");
	is_int(seen.discount_version, 1, "version 1");
	is_int(seen.secret_err, MESH_OK, "it read its SecureString");
	ok(seen.secret_right, "opened with its identity");
	is_int(seen.other_err, MESH_EAUTH,
	       "another's SecureString: refused (not a reader)");
	is_int(seen.undeclared_err, MESH_EINVAL,
	       "an undeclared parameter: refused");
	pthread_mutex_unlock(&mu);
	is_int(mesh_service_param(r.s, "/shop/db/other", buf, sizeof(buf),
	                          NULL),
	       MESH_EAUTH, "outside a handler too");
	has_str(mesh_errdetail(), "'pricing' is not a reader", "saying so");
	is_int(mesh_service_param(r.s, "/shop/orders/discount", buf, 2, NULL),
	       MESH_ETOOBIG, "a buffer too small: refused");

	is_int(put("/shop/orders/discount", MESH_PARAM_STRING, "20", NULL,
	           NULL),
	       MESH_OK, "the String changed");
	ok(reaches(&seen.changes, 1), "the callback was called");
	pthread_mutex_lock(&mu);
	is_str(seen.changed, "/shop/orders/discount", "with its name");
	is_int(seen.changed_version, 2, "and its version");
	pthread_mutex_unlock(&mu);
	send_price();
	ok(reaches(&seen.events, 2), "the next event");
	pthread_mutex_lock(&mu);
	is_str(seen.discount, "20", "sees the new value");
	pthread_mutex_unlock(&mu);
	put("/elsewhere", MESH_PARAM_STRING, "y", NULL, NULL);
	mesh_param_delete(c, "/shop/orders/discount");
	ok(reaches(&seen.changes, 2), "a delete is a change too");
	pthread_mutex_lock(&mu);
	ok(seen.changes == 2 && seen.changed_version == 0 &&
	           strcmp(seen.changed, "/shop/orders/discount") == 0,
	   "version 0, and not a word of /elsewhere (undeclared)");
	pthread_mutex_unlock(&mu);
	is_int(mesh_service_param(r.s, "/shop/orders/discount", buf,
	                          sizeof(buf), NULL),
	       MESH_ENOTFOUND, "gone from the service");

	running_stop(&r);
	is_int(r.err, MESH_OK, "a graceful stop");
	mesh_service_free(r.s);

	/* A service whose identity file is missing does not start. */
	memset(&r, 0, sizeof(r));
	mesh_service_new("pricing", &r.s);
	o = mesh_service_opts(r.s);
	o->state_dir = state;
	o->map_size = 16u << 20;
	snprintf(path, sizeof(path), "%s/none.nk", dir);
	o->identity_file = path;
	mesh_service_consume(r.s, "pr-in");
	mesh_service_on_param(r.s, "/", NULL, NULL);
	is_int(mesh_service_run(r.s, c, &r.stop), MESH_ENOTFOUND,
	       "a missing identity file stops the start");
	mesh_service_free(r.s);

	mesh_identity_free(admin);
	mesh_identity_free(pricing);
	mesh_identity_free(other);
	mesh_conn_close(c);
	test_broker_stop(&broker);
	test_rmtree(dir);
	mesh_shutdown();
	return tap_done();
}
