/* report.c: the shop's account from the services' LMDB environments. */
#include "report.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lmdb.h>

#include "shop.h"

enum { ORDERS, SHIPPING, NOTIFICATIONS, NSERVICES };

static const char *const service_names[NSERVICES] = {"orders", "shipping",
                                                     "notifications"};

/* One service's environment, read in one transaction; db is 0 when the
 * environment or its database does not exist yet. */
struct env {
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi db;
	bool has_db;
};

static void
env_close(struct env *e)
{
	if (e->txn != NULL) {
		mdb_txn_abort(e->txn);
	}
	if (e->env != NULL) {
		mdb_env_close(e->env);
	}
	memset(e, 0, sizeof *e);
}

static bool
open_db(struct env *e, const char *name, MDB_dbi *db)
{
	return mdb_dbi_open(e->txn, name, 0, db) == MDB_SUCCESS;
}

static uint64_t
db_entries(struct env *e, const char *name)
{
	MDB_dbi db;
	MDB_stat st;

	if (e->txn == NULL || !open_db(e, name, &db) ||
	    mdb_stat(e->txn, db, &st) != MDB_SUCCESS) {
		return 0;
	}
	return st.ms_entries;
}

static int
env_open(struct env *e, const char *root, const char *name, char *err,
         size_t errsize)
{
	char path[PATH_MAX];
	int rc;

	memset(e, 0, sizeof *e);
	snprintf(path, sizeof path, "%s/%s/data.mdb", root, name);
	if (access(path, F_OK) != 0) {
		return 0; /* never started: empty */
	}
	snprintf(path, sizeof path, "%s/%s", root, name);
	if ((rc = mdb_env_create(&e->env)) != MDB_SUCCESS ||
	    (rc = mdb_env_set_maxdbs(e->env, 16)) != MDB_SUCCESS ||
	    (rc = mdb_env_open(e->env, path, MDB_RDONLY, 0644)) !=
	            MDB_SUCCESS ||
	    (rc = mdb_txn_begin(e->env, NULL, MDB_RDONLY, &e->txn)) !=
	            MDB_SUCCESS) {
		snprintf(err, errsize, "%s: %s", path, mdb_strerror(rc));
		env_close(e);
		return -1;
	}
	e->has_db = open_db(e, "state", &e->db);
	return 0;
}

static bool
has_key(struct env *e, const char *prefix, const char *id)
{
	char key[SHOP_KEY_MAX];
	MDB_val k = {shop_key(key, prefix, id), key}, v;

	return e->has_db && mdb_get(e->txn, e->db, &k, &v) == MDB_SUCCESS;
}

/* Visit the keys prefix+id_prefix..., giving fn the id after prefix. */
typedef void (*visit_fn)(struct env *e, const char *id, const MDB_val *v,
                         void *arg);

static void
visit(struct env *e, const char *prefix, const char *id_prefix, visit_fn fn,
      void *arg)
{
	char key[SHOP_KEY_MAX], id[SHOP_KEY_MAX];
	size_t plen = strlen(prefix);
	size_t klen = shop_key(key, prefix, id_prefix);
	MDB_cursor *cur;
	MDB_val k = {klen, key}, v;

	if (!e->has_db ||
	    mdb_cursor_open(e->txn, e->db, &cur) != MDB_SUCCESS) {
		return;
	}
	for (int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	     rc == MDB_SUCCESS && k.mv_size >= klen &&
	     memcmp(k.mv_data, key, klen) == 0 && k.mv_size - plen < sizeof id;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		memcpy(id, (const char *)k.mv_data + plen, k.mv_size - plen);
		id[k.mv_size - plen] = '\0';
		fn(e, id, &v, arg);
	}
	mdb_cursor_close(cur);
}

struct walk {
	struct env *envs;
	const char *countries;
	struct shop_report *r;
	uint64_t *counter;
};

static void
count_key(struct env *e, const char *id, const MDB_val *v, void *arg)
{
	struct walk *w = arg;

	(*w->counter)++;
}

static void
sum_counts(struct env *e, const char *id, const MDB_val *v, void *arg)
{
	struct walk *w = arg;
	char num[24];
	size_t n = v->mv_size < sizeof num ? v->mv_size : sizeof num - 1;

	memcpy(num, v->mv_data, n);
	num[n] = '\0';
	if (__builtin_add_overflow(*w->counter, strtoull(num, NULL, 10),
	                           w->counter)) {
		*w->counter = UINT64_MAX; /* saturate: never wrap to "none" */
	}
}

static void
check_order(struct env *e, const char *id, const MDB_val *v, void *arg)
{
	struct walk *w = arg;
	Evmesh__Shop__OrderPlaced *o = evmesh__shop__order_placed__unpack(
	        NULL, v->mv_size, v->mv_data);
	bool shippable =
	        o != NULL && shop_country_in(w->countries, o->country);
	bool shipped = has_key(&w->envs[SHIPPING], SHOP_SHIPMENT, id);

	evmesh__shop__order_placed__free_unpacked(o, NULL);
	w->r->placed++;
	if (!shippable) {
		w->r->filtered++;
		w->r->stray += shipped;
	} else {
		w->r->shippable++;
		w->r->lost += !shipped;
	}
}

static void
check_shipment(struct env *e, const char *id, const MDB_val *v, void *arg)
{
	struct walk *w = arg;

	w->r->shipped++;
	w->r->stray += !has_key(&w->envs[ORDERS], SHOP_ORDER, id);
	w->r->lost += !has_key(&w->envs[NOTIFICATIONS], SHOP_SENT, id);
}

static void
check_sent(struct env *e, const char *id, const MDB_val *v, void *arg)
{
	struct walk *w = arg;

	w->r->notified++;
	w->r->stray += !has_key(&w->envs[SHIPPING], SHOP_SHIPMENT, id);
}

bool
shop_report_read(const char *root, const char *prefix, const char *countries,
                 struct shop_report *r, char *err, size_t errsize)
{
	struct env envs[NSERVICES];
	struct walk w = {envs, countries, r, NULL};
	int failed = 0;

	memset(r, 0, sizeof *r);
	for (int i = 0; i < NSERVICES; i++) {
		if (failed == 0 &&
		    env_open(&envs[i], root, service_names[i], err, errsize)) {
			failed = 1;
		}
		if (failed) {
			memset(&envs[i], 0, sizeof envs[i]);
		}
	}
	if (!failed) {
		visit(&envs[ORDERS], SHOP_ORDER, prefix, check_order, &w);
		visit(&envs[SHIPPING], SHOP_SHIPMENT, prefix, check_shipment,
		      &w);
		visit(&envs[NOTIFICATIONS], SHOP_SENT, prefix, check_sent, &w);
		w.counter = &r->repeats;
		visit(&envs[ORDERS], SHOP_REPEAT, prefix, sum_counts, &w);
		w.counter = &r->duplicates;
		visit(&envs[SHIPPING], SHOP_DUP, prefix, sum_counts, &w);
		visit(&envs[NOTIFICATIONS], SHOP_DUP, prefix, sum_counts, &w);
		w.counter = &r->summaries;
		visit(&envs[ORDERS], SHOP_SUMMARY, "", count_key, &w);
		for (int i = 0; i < NSERVICES; i++) {
			r->outbox[i] = db_entries(&envs[i], "outbox");
			r->processed[i] = db_entries(&envs[i], "processed");
			r->state_keys[i] = db_entries(&envs[i], "state");
		}
	}
	for (int i = 0; i < NSERVICES; i++) {
		env_close(&envs[i]);
	}
	return !failed;
}

static uint64_t
missing(const struct shop_report *r, uint64_t expected)
{
	return expected > r->placed ? expected - r->placed : 0;
}

bool
shop_report_agrees(const struct shop_report *r, uint64_t expected)
{
	return (expected == 0 || r->placed == expected) && r->lost == 0 &&
	       r->stray == 0 && r->duplicates == 0 &&
	       r->shipped == r->shippable && r->notified == r->shipped;
}

void
shop_report_line(const struct shop_report *r, uint64_t expected, char *buf,
                 size_t size)
{
	snprintf(buf, size,
	         "orders: %llu placed, %llu shipped, %llu notified, "
	         "%llu filtered, duplicates %llu, lost %llu",
	         (unsigned long long)r->placed, (unsigned long long)r->shipped,
	         (unsigned long long)r->notified,
	         (unsigned long long)r->filtered,
	         (unsigned long long)r->duplicates,
	         (unsigned long long)(r->lost + missing(r, expected)));
}
