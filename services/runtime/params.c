/* params.c: the parameters a service reads (mesh_param_get), kept current
 * in memory by a watcher of the bucket MESH_PARAMS, and the callbacks of
 * their changes (mesh_service_on_param).
 *
 * At start the runtime reads the last value of every parameter the
 * service declared before taking an event; a thread then applies each
 * change as the broker sends it. SecureStrings are opened once, when they
 * change, with the service's identity (MESH_IDENTITY), and kept in
 * guarded memory (sodium_malloc); a handler's read is a lookup under a
 * read lock: no I/O. */
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "mesh/identity.h"
#include "mesh/param.h"
#include "mesh/wire.h"
#include "runtime.h"

#define DECLS_MAX     32
#define LOAD_WAIT_MS  10000
#define WATCH_WAIT_MS 500

struct decl {
	char *prefix; /* a name, or a path ending in '/' */
	void (*fn)(struct mesh_service *, const char *, int64_t, void *);
	void *arg;
};

struct cached {
	char *name;
	struct mesh_param p; /* value opened when readable */
	mesh_err open_err;   /* why a SecureString did not open */
	char why[160];
};

struct mesh__params {
	struct decl decls[DECLS_MAX];
	size_t n_decls;
	pthread_rwlock_t mu;
	struct cached *items;
	size_t n, cap;
	struct mesh_identity *id;
	kvStore *kv;
	kvWatcher *w;
	pthread_t thread;
	bool running;
};

static struct mesh__params *
params_of(struct mesh_service *s)
{
	if (s->params == NULL &&
	    (s->params = calloc(1, sizeof(*s->params))) != NULL) {
		pthread_rwlock_init(&s->params->mu, NULL);
	}
	return s->params;
}

/* "/", a path ending in '/', or a parameter's name. */
static bool
decl_valid(const char *p)
{
	char name[MESH_PARAM_NAME_MAX + 1];
	size_t len = p != NULL ? strlen(p) : 0;

	if (len == 1 && p[0] == '/') {
		return true;
	}
	if (len > 1 && p[len - 1] == '/' && p[0] == '/' &&
	    len - 1 <= MESH_PARAM_NAME_MAX) {
		memcpy(name, p, len - 1);
		name[len - 1] = '\0';
		return mesh_param_name_check(name) == MESH_OK;
	}
	return len > 0 && mesh_param_name_check(p) == MESH_OK;
}

mesh_err
mesh_service_on_param(struct mesh_service *s, const char *name_or_prefix,
                      void (*fn)(struct mesh_service *s, const char *name,
                                 int64_t version, void *arg),
                      void *arg)
{
	struct mesh__params *ps = params_of(s);
	struct decl *d;

	if (ps == NULL) {
		return mesh_err_set(MESH_ENOMEM, "parameters");
	}
	if (!decl_valid(name_or_prefix)) {
		return mesh_err_set(MESH_EINVAL,
		                    "parameter '%.64s': not a parameter's "
		                    "name nor a path ending in '/'",
		                    name_or_prefix ? name_or_prefix : "");
	}
	if (ps->n_decls == DECLS_MAX) {
		return mesh_err_set(MESH_EINVAL,
		                    "parameter '%.64s': at most %d "
		                    "declarations",
		                    name_or_prefix, DECLS_MAX);
	}
	d = &ps->decls[ps->n_decls];
	if ((d->prefix = strdup(name_or_prefix)) == NULL) {
		return mesh_err_set(MESH_ENOMEM, "parameters");
	}
	d->fn = fn;
	d->arg = arg;
	ps->n_decls++;
	return MESH_OK;
}

static bool
matches(const struct decl *d, const char *name)
{
	size_t len = strlen(d->prefix);

	return d->prefix[len - 1] == '/' ? strncmp(name, d->prefix, len) == 0
	                                 : strcmp(name, d->prefix) == 0;
}

static bool
declared(const struct mesh__params *ps, const char *name)
{
	for (size_t i = 0; i < ps->n_decls; i++) {
		if (matches(&ps->decls[i], name)) {
			return true;
		}
	}
	return false;
}

/* Under the write lock. */
static struct cached *
find(struct mesh__params *ps, const char *name)
{
	for (size_t i = 0; i < ps->n; i++) {
		if (strcmp(ps->items[i].name, name) == 0) {
			return &ps->items[i];
		}
	}
	return NULL;
}

static void
cached_free(struct cached *c)
{
	free(c->name);
	mesh_param_fini(&c->p);
}

/* Apply one entry of the watcher; returns the name changed ("" when
 * none) into changed, and its version (0: deleted). */
static void
apply(struct mesh_service *s, kvEntry *e, char *changed, size_t size,
      int64_t *version)
{
	struct mesh__params *ps = s->params;
	char name[MESH_PARAM_NAME_MAX + 1];
	struct mesh_param p;
	struct cached *c;
	mesh_err err = MESH_OK, open_err = MESH_OK;
	char why[160] = "";

	changed[0] = '\0';
	if (mesh_param_name_of_key(kvEntry_Key(e), name, sizeof(name)) !=
	            MESH_OK ||
	    !declared(ps, name)) {
		return;
	}
	mesh_param_init(&p);
	if (kvEntry_Operation(e) == kvOp_Put) {
		err = mesh_param_decode(kvEntry_ValueString(e),
		                        (size_t)kvEntry_ValueLen(e), &p);
		if (err != MESH_OK) {
			mesh__svc_log(s, "error",
			              "parameter '%.64s': damaged record, "
			              "kept the last one: %s",
			              name, mesh_errdetail());
			return;
		}
		if (p.type == MESH_PARAM_SECURE_STRING) {
			open_err =
			        ps->id != NULL
			                ? mesh_param_open(&p, ps->id)
			                : mesh_err_set(MESH_EAUTH,
			                               "parameter '%.64s': "
			                               "a SecureString, and "
			                               "the service has no "
			                               "identity (set "
			                               "MESH_IDENTITY)",
			                               name);
			if (open_err != MESH_OK) {
				snprintf(why, sizeof(why), "%s",
				         mesh_errdetail());
				mesh__svc_log(s, "warn", "%s", why);
			}
		}
	}
	pthread_rwlock_wrlock(&ps->mu);
	c = find(ps, name);
	if (kvEntry_Operation(e) != kvOp_Put) {
		if (c != NULL) {
			cached_free(c);
			*c = ps->items[--ps->n];
		}
		*version = 0;
	} else {
		if (c == NULL && ps->n == ps->cap) {
			size_t cap = ps->cap ? ps->cap * 2 : 16;
			struct cached *items =
			        realloc(ps->items, cap * sizeof(*items));
			if (items != NULL) {
				ps->items = items;
				ps->cap = cap;
			}
		}
		if (c == NULL && ps->n < ps->cap) {
			c = &ps->items[ps->n];
			memset(c, 0, sizeof(*c));
			if ((c->name = strdup(name)) != NULL) {
				ps->n++;
			} else {
				c = NULL;
			}
		}
		if (c != NULL) {
			mesh_param_fini(&c->p);
			c->p = p;
			mesh_param_init(&p);
			c->open_err = open_err;
			snprintf(c->why, sizeof(c->why), "%s", why);
			*version = c->p.version;
		}
	}
	pthread_rwlock_unlock(&ps->mu);
	mesh_param_fini(&p);
	snprintf(changed, size, "%s", name);
}

static void
notify(struct mesh_service *s, const char *name, int64_t version)
{
	struct mesh__params *ps = s->params;

	for (size_t i = 0; i < ps->n_decls; i++) {
		if (ps->decls[i].fn != NULL && matches(&ps->decls[i], name)) {
			ps->decls[i].fn(s, name, version, ps->decls[i].arg);
		}
	}
}

static void *
watch_main(void *arg)
{
	struct mesh_service *s = arg;
	char name[MESH_PARAM_NAME_MAX + 1];

	while (!*s->stop) {
		kvEntry *e = NULL;
		int64_t version = 0;
		natsStatus st =
		        kvWatcher_Next(&e, s->params->w, WATCH_WAIT_MS);
		if (st == NATS_OK && e != NULL) {
			apply(s, e, name, sizeof(name), &version);
			kvEntry_Destroy(e);
			if (name[0] != '\0') {
				notify(s, name, version);
			}
		} else if (st == NATS_ILLEGAL_STATE) {
			break; /* stopped */
		}
	}
	return NULL;
}

mesh_err
mesh__params_start(struct mesh_service *s)
{
	struct mesh__params *ps = s->params;
	char name[MESH_PARAM_NAME_MAX + 1];
	int64_t until = mesh_mono_ms() + LOAD_WAIT_MS, version;
	natsStatus st;
	mesh_err err;

	if (ps == NULL || ps->n_decls == 0) {
		return MESH_OK;
	}
	if (s->o.identity_file != NULL && ps->id == NULL &&
	    (err = mesh_identity_load(s->name, s->o.identity_file, &ps->id)) !=
	            MESH_OK) {
		return err;
	}
	if ((err = mesh_param_bucket(s->c, &ps->kv)) != MESH_OK) {
		return err;
	}
	if ((st = mesh_kv_watch_all(ps->kv, &ps->w)) != NATS_OK) {
		return mesh_err_nats(st, 0, "watching %s", MESH_PARAMS_BUCKET);
	}
	/* The last values first, up to the watcher's end-of-data mark. */
	for (;;) {
		kvEntry *e = NULL;
		int64_t left = until - mesh_mono_ms();
		if (left <= 0) {
			return mesh_err_set(MESH_ETIMEDOUT,
			                    "reading %s: no end within %d ms",
			                    MESH_PARAMS_BUCKET, LOAD_WAIT_MS);
		}
		if ((st = kvWatcher_Next(&e, ps->w, left)) != NATS_OK) {
			return mesh_err_nats(st, 0, "reading %s",
			                     MESH_PARAMS_BUCKET);
		}
		if (e == NULL) {
			break;
		}
		apply(s, e, name, sizeof(name), &version);
		kvEntry_Destroy(e);
	}
	mesh__svc_log(s, "info", "parameters: %zu read, watching", ps->n);
	if (pthread_create(&ps->thread, NULL, watch_main, s) != 0) {
		return mesh_err_set(MESH_EINTERNAL, "no parameters thread");
	}
	ps->running = true;
	return MESH_OK;
}

void
mesh__params_stop(struct mesh_service *s)
{
	struct mesh__params *ps = s->params;

	if (ps == NULL) {
		return;
	}
	if (ps->w != NULL) {
		kvWatcher_Stop(ps->w);
	}
	if (ps->running) {
		pthread_join(ps->thread, NULL);
		ps->running = false;
	}
	kvWatcher_Destroy(ps->w);
	ps->w = NULL;
	kvStore_Destroy(ps->kv);
	ps->kv = NULL;
}

void
mesh__params_free(struct mesh_service *s)
{
	struct mesh__params *ps = s->params;

	if (ps == NULL) {
		return;
	}
	mesh__params_stop(s);
	for (size_t i = 0; i < ps->n; i++) {
		cached_free(&ps->items[i]);
	}
	free(ps->items);
	for (size_t i = 0; i < ps->n_decls; i++) {
		free(ps->decls[i].prefix);
	}
	mesh_identity_free(ps->id);
	pthread_rwlock_destroy(&ps->mu);
	free(ps);
	s->params = NULL;
}

mesh_err
mesh_param_get(struct mesh_ctx *ctx, const char *name, char *buf, size_t size,
               int64_t *version)
{
	return mesh_service_param(ctx->s, name, buf, size, version);
}

mesh_err
mesh_service_param(struct mesh_service *s, const char *name, char *buf,
                   size_t size, int64_t *version)
{
	struct mesh__params *ps = s->params;
	const struct cached *c;
	mesh_err err = MESH_OK;

	if (ps == NULL || name == NULL || !declared(ps, name)) {
		return mesh_err_set(MESH_EINVAL,
		                    "parameter '%.64s': not declared "
		                    "(mesh_service_on_param)",
		                    name ? name : "");
	}
	pthread_rwlock_rdlock(&ps->mu);
	c = find(ps, name);
	if (c == NULL) {
		err = mesh_err_set(MESH_ENOTFOUND,
		                   "parameter '%.64s': does not exist", name);
	} else if (c->p.value == NULL) {
		err = mesh_err_set(c->open_err != MESH_OK ? c->open_err
		                                          : MESH_EAUTH,
		                   "%s", c->why);
	} else if (c->p.value_len + 1 > size) {
		err = mesh_err_set(MESH_ETOOBIG,
		                   "parameter '%.64s': its value needs %zu "
		                   "bytes, the buffer has %zu",
		                   name, c->p.value_len + 1, size);
	} else {
		memcpy(buf, c->p.value, c->p.value_len + 1);
		if (version != NULL) {
			*version = c->p.version;
		}
	}
	pthread_rwlock_unlock(&ps->mu);
	return err;
}
