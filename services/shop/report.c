/* report.c: the shop's account from the services' LMDB environments. */
#include "report.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lmdb.h>

#include "mesh/partition.h"
#include "shop.h"

enum { ORDERS, SHIPPING, NOTIFICATIONS, NSERVICES };

static const char *const service_names[NSERVICES] = {"orders", "shipping",
                                                     "notifications"};

/* One environment, read in one transaction; db is 0 when the
 * environment or its database does not exist yet. */
struct env {
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi db;
	bool has_db;
};

/* A service's state: one environment, or a partitioned service's
 * partitions p0, p1, ... (their owners' copies, or links to them). */
struct store {
	struct env *e;
	int n;
	bool partitioned;
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

/* The environment in dir; none (empty) when it has no data.mdb. */
static int
env_open(struct env *e, const char *dir, char *err, size_t errsize)
{
	char path[PATH_MAX];
	int rc;

	memset(e, 0, sizeof *e);
	if (snprintf(path, sizeof path, "%s/data.mdb", dir) >=
	    (int)sizeof path) {
		snprintf(err, errsize, "%.200s...: path too long", dir);
		return -1;
	}
	if (access(path, F_OK) != 0) {
		return 0; /* never started: empty */
	}
	if ((rc = mdb_env_create(&e->env)) != MDB_SUCCESS ||
	    (rc = mdb_env_set_maxdbs(e->env, 16)) != MDB_SUCCESS ||
	    (rc = mdb_env_open(e->env, dir, MDB_RDONLY, 0644)) !=
	            MDB_SUCCESS ||
	    (rc = mdb_txn_begin(e->env, NULL, MDB_RDONLY, &e->txn)) !=
	            MDB_SUCCESS) {
		snprintf(err, errsize, "%s: %s", dir, mdb_strerror(rc));
		env_close(e);
		return -1;
	}
	e->has_db = open_db(e, "state", &e->db);
	return 0;
}

static void
store_close(struct store *st)
{
	for (int i = 0; i < st->n; i++) {
		env_close(&st->e[i]);
	}
	free(st->e);
	memset(st, 0, sizeof *st);
}

/* The changelog position of the partition copy in dir ("clog.seq" in its
 * meta database), 0 when there is none. */
static uint64_t
copy_position(const char *dir)
{
	struct env e;
	char err[64];
	MDB_dbi meta;
	MDB_val k = {8, "clog.seq"}, v;
	uint64_t seq = 0;

	if (env_open(&e, dir, err, sizeof err) != 0 || e.txn == NULL) {
		return 0;
	}
	if (open_db(&e, "meta", &meta) &&
	    mdb_get(e.txn, meta, &k, &v) == MDB_SUCCESS && v.mv_size == 8) {
		for (int i = 0; i < 8; i++) {
			seq = seq << 8 | ((const uint8_t *)v.mv_data)[i];
		}
	}
	env_close(&e);
	return seq;
}

/* The partitions in dir (folders p0, p1, ...): the highest number + 1,
 * or n if more. */
static int
max_partition(const char *dir, int n)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	while (d != NULL && (e = readdir(d)) != NULL) {
		char *end;
		long k;
		if (e->d_name[0] != 'p' || e->d_name[1] < '0' ||
		    e->d_name[1] > '9') {
			continue;
		}
		k = strtol(e->d_name + 1, &end, 10);
		if (*end == '\0' && k >= 0 && k < 1024 && k + 1 > n) {
			n = (int)k + 1;
		}
	}
	if (d != NULL) {
		closedir(d);
	}
	return n;
}

/* ROOT/name in the first root that has its data.mdb; or a partitioned
 * service's partitions ROOT/name/p0, p1, ..., each from the root whose
 * copy is furthest along its changelog (its owner's, since an owner
 * commits nothing that is not logged). */
static int
store_open(struct store *st, const char *const *roots, int n_roots,
           const char *name, char *err, size_t errsize)
{
	char path[PATH_MAX];
	int n = 0;

	memset(st, 0, sizeof *st);
	for (int r = 0; r < n_roots; r++) {
		snprintf(path, sizeof path, "%s/%s/data.mdb", roots[r], name);
		if (access(path, F_OK) == 0) {
			snprintf(path, sizeof path, "%s/%s", roots[r], name);
			st->n = 1;
			if ((st->e = calloc(1, sizeof(*st->e))) == NULL) {
				return -1;
			}
			return env_open(&st->e[0], path, err, errsize) == 0
			               ? 0
			               : (store_close(st), -1);
		}
		/* An instance holds some partitions, not p0 to pN. */
		snprintf(path, sizeof path, "%s/%s", roots[r], name);
		n = max_partition(path, n);
	}
	st->partitioned = n > 0;
	st->n = n > 0 ? n : 1;
	if ((st->e = calloc((size_t)st->n, sizeof(*st->e))) == NULL) {
		snprintf(err, errsize, "%s: out of memory", name);
		return -1;
	}
	for (int k = 0; k < n; k++) {
		char best[PATH_MAX] = "";
		uint64_t best_seq = 0;
		for (int r = 0; r < n_roots; r++) {
			uint64_t seq;
			snprintf(path, sizeof path, "%s/%s/p%d", roots[r],
			         name, k);
			if (access(path, F_OK) != 0) {
				continue;
			}
			if ((seq = copy_position(path)) >= best_seq ||
			    best[0] == '\0') {
				best_seq = seq;
				memcpy(best, path, sizeof best);
			}
		}
		if (best[0] != '\0' &&
		    env_open(&st->e[k], best, err, errsize) != 0) {
			store_close(st);
			return -1;
		}
	}
	return 0;
}

/* The environment that holds id's keys: its partition's, partitioned by
 * the order id as the shop's services partition their events. */
static struct env *
env_of(const struct store *st, const char *id)
{
	return st->partitioned
	               ? &st->e[mesh_partition_of(id, strlen(id), st->n)]
	               : &st->e[0];
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
	struct store *stores;
	const char *countries;
	struct shop_report *r;
	uint64_t *counter;
	struct env *env;   /* the one visited */
	int part, n_parts; /* its partition (-1: none) of n_parts */
};

/* A key of id in a partition not its id's. */
static void
check_place(struct walk *w, const char *id)
{
	if (w->part >= 0 &&
	    mesh_partition_of(id, strlen(id), w->n_parts) != w->part) {
		w->r->misplaced++;
	}
}

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
	bool shipped =
	        has_key(env_of(&w->stores[SHIPPING], id), SHOP_SHIPMENT, id);

	evmesh__shop__order_placed__free_unpacked(o, NULL);
	check_place(w, id);
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

	check_place(w, id);
	w->r->shipped++;
	w->r->stray +=
	        !has_key(env_of(&w->stores[ORDERS], id), SHOP_ORDER, id);
	w->r->lost +=
	        !has_key(env_of(&w->stores[NOTIFICATIONS], id), SHOP_SENT, id);
	/* orders keeps its orders' shipments (GET /orders/{id} says
	 * shipped): one it has not taken yet is lost so far. */
	w->r->lost +=
	        !has_key(env_of(&w->stores[ORDERS], id), SHOP_SHIPPED, id);
}

static void
check_sent(struct env *e, const char *id, const MDB_val *v, void *arg)
{
	struct walk *w = arg;

	check_place(w, id);
	w->r->notified++;
	w->r->stray +=
	        !has_key(env_of(&w->stores[SHIPPING], id), SHOP_SHIPMENT, id);
}

/* Visit every environment of a store; in a partitioned one, a key found
 * outside its id's partition is misplaced. */
static void
visit_store(struct walk *w, struct store *st, const char *prefix,
            const char *id_prefix, visit_fn fn)
{
	for (int i = 0; i < st->n; i++) {
		w->env = &st->e[i];
		w->part = st->partitioned ? i : -1;
		w->n_parts = st->n;
		visit(&st->e[i], prefix, id_prefix, fn, w);
	}
}

bool
shop_report_read(const char *root, const char *prefix, const char *countries,
                 struct shop_report *r, char *err, size_t errsize)
{
	return shop_report_read_roots(&root, 1, prefix, countries, r, err,
	                              errsize);
}

bool
shop_report_read_roots(const char *const *roots, int n_roots,
                       const char *prefix, const char *countries,
                       struct shop_report *r, char *err, size_t errsize)
{
	struct store stores[NSERVICES];
	struct walk w = {.stores = stores, .countries = countries, .r = r};
	int failed = 0;

	memset(r, 0, sizeof *r);
	memset(stores, 0, sizeof stores);
	for (int i = 0; i < NSERVICES && !failed; i++) {
		failed = store_open(&stores[i], roots, n_roots,
		                    service_names[i], err, errsize) != 0;
	}
	if (!failed) {
		visit_store(&w, &stores[ORDERS], SHOP_ORDER, prefix,
		            check_order);
		visit_store(&w, &stores[SHIPPING], SHOP_SHIPMENT, prefix,
		            check_shipment);
		visit_store(&w, &stores[NOTIFICATIONS], SHOP_SENT, prefix,
		            check_sent);
		w.counter = &r->repeats;
		visit_store(&w, &stores[ORDERS], SHOP_REPEAT, prefix,
		            sum_counts);
		w.counter = &r->duplicates;
		visit_store(&w, &stores[SHIPPING], SHOP_DUP, prefix,
		            sum_counts);
		visit_store(&w, &stores[NOTIFICATIONS], SHOP_DUP, prefix,
		            sum_counts);
		w.counter = &r->summaries;
		visit_store(&w, &stores[ORDERS], SHOP_SUMMARY, "", count_key);
		for (int i = 0; i < NSERVICES; i++) {
			for (int k = 0; k < stores[i].n; k++) {
				struct env *e = &stores[i].e[k];
				r->outbox[i] += db_entries(e, "outbox");
				r->processed[i] += db_entries(e, "processed");
				r->state_keys[i] += db_entries(e, "state");
			}
			r->partitions[i] =
			        stores[i].partitioned ? stores[i].n : 0;
		}
	}
	for (int i = 0; i < NSERVICES; i++) {
		store_close(&stores[i]);
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
	       r->stray == 0 && r->duplicates == 0 && r->misplaced == 0 &&
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
