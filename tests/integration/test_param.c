/* Parameters and secrets (mesh/param.h) against a real nats-server:
 * versions, overwrite refused, get by version, list by path, delete;
 * SecureStrings never in clear in the bucket (its messages nor the
 * server's files), opened by a reader, refused to others, an unknown
 * reader refused at put; damaged and altered records reported. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "harness.h"
#include "mesh/identity.h"
#include "mesh/mesh.h"
#include "mesh/param.h"

#define SECRET  "hunter2-Sup3r-s3cret"
#define CONTROL "plain-control-value-7f3a"

static const char *needle;
static int found;

static int
scan_file(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	FILE *fp;
	char *buf;

	(void)f;
	if (flag != FTW_F || st->st_size == 0 || st->st_size > 64 << 20 ||
	    (fp = fopen(path, "rb")) == NULL) {
		return 0;
	}
	if ((buf = malloc((size_t)st->st_size)) != NULL &&
	    fread(buf, 1, (size_t)st->st_size, fp) == (size_t)st->st_size &&
	    memmem(buf, (size_t)st->st_size, needle, strlen(needle)) != NULL) {
		found++;
	}
	free(buf);
	fclose(fp);
	return 0;
}

/* How many of the files under dir hold text. */
static int
files_holding(const char *dir, const char *text)
{
	needle = text;
	found = 0;
	nftw(dir, scan_file, 16, FTW_PHYS);
	return found;
}

static struct mesh_identity *
identity(const char *dir, const char *name)
{
	char path[PATH_MAX + 80];
	struct mesh_identity *id = NULL;

	snprintf(path, sizeof(path), "%s/%s.nk", dir, name);
	mesh_identity_generate(name, path, &id);
	return id;
}

static mesh_err
put(struct mesh_conn *c, const char *name, enum mesh_param_type t,
    const char *value, bool overwrite, int64_t *v)
{
	struct mesh_param_put_opts o;

	mesh_param_put_opts_init(&o);
	o.name = name;
	o.type = t;
	o.value = value;
	o.overwrite = overwrite;
	return mesh_param_put(c, &o, NULL, v);
}

static size_t
count(struct mesh_conn *c, const char *path, bool recursive)
{
	struct mesh_param *ps = NULL;
	size_t n = 0;

	if (mesh_param_list(c, path, recursive, &ps, &n) != MESH_OK) {
		return (size_t)-1;
	}
	mesh_param_list_free(ps, n);
	return n;
}

static void
names_and_keys(void)
{
	char key[MESH_PARAM_KEY_MAX + 1], name[MESH_PARAM_NAME_MAX + 1];
	const char *good[] = {
	        "/shop/orders/discount", "x.y", "_", "/_", "/a/./b",
	        "plain-name_1"};
	const char *bad[] = {"",       "a/b",      "/a//b", "/a/",
	                     "/aws/x", "SSMthing", "/a b",  "/x/$"};

	is_int(mesh_param_key("/shop/orders/discount", key, sizeof(key)),
	       MESH_OK, "a hierarchy's key");
	is_str(key, "_.shop.orders.discount", "is a subject path");
	mesh_param_key("x.y", key, sizeof(key));
	is_str(key, "x=y", "a '.' is '=' in a key");
	for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++) {
		ok(mesh_param_key(good[i], key, sizeof(key)) == MESH_OK &&
		           mesh_param_name_of_key(key, name, sizeof(name)) ==
		                   MESH_OK &&
		           strcmp(name, good[i]) == 0,
		   "'%s' -> '%s' -> back", good[i], key);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		is_int(mesh_param_name_check(bad[i]), MESH_EINVAL,
		       "name '%s' refused", bad[i]);
	}
	has_str((mesh_param_name_check("a/b"), mesh_errdetail()),
	        "must begin with '/'", "a hierarchy without '/' says so");
	is_int(mesh_param_name_of_key("a.b", name, sizeof(name)), MESH_EINVAL,
	       "a key no name maps to is refused");
}

int
main(void)
{
	struct test_broker broker;
	struct mesh_conn_opts o;
	struct mesh_conn *c = NULL;
	struct mesh_identity *admin, *orders, *billing;
	struct mesh_key_record rec;
	struct mesh_param p, *ps = NULL;
	struct mesh_param_put_opts po;
	const char *readers[] = {"orders"}, *unknown[] = {"orders", "nobody"};
	char dir[PATH_MAX], big[MESH_PARAM_DESC_MAX + 2];
	kvStore *kv = NULL;
	kvEntryList list = {0};
	kvEntry *e = NULL;
	int64_t v = 0;
	size_t n = 0;
	int clear = 0;

	names_and_keys();
	if (!test_tmpdir(dir, sizeof(dir))) {
		tap_skip_all("no temporary folder");
	}
	if (!test_broker_start(&broker, NULL)) {
		tap_skip_all("no nats-server");
	}
	mesh_conn_opts_init(&o);
	o.servers = broker.url;
	is_int(mesh_conn_open(&o, &c), MESH_OK, "connected");
	mesh_param_init(&p);

	/* Versions, overwrite, get by version. */
	is_int(put(c, "/shop/orders/discount", MESH_PARAM_STRING, "10", false,
	           &v),
	       MESH_OK, "a String stored");
	is_int(v, 1, "as version 1");
	is_int(put(c, "/shop/orders/discount", MESH_PARAM_STRING, "15", false,
	           &v),
	       MESH_EEXIST, "again without overwrite: refused");
	has_str(mesh_errdetail(), "'/shop/orders/discount' exists",
	        "naming it");
	is_int(put(c, "/shop/orders/discount", MESH_PARAM_STRING, "15", true,
	           &v),
	       MESH_OK, "with overwrite: stored");
	is_int(v, 2, "as version 2");
	is_int(mesh_param_read(c, "/shop/orders/discount", 0, &p), MESH_OK,
	       "read");
	ok(p.version == 2 && strcmp(p.value, "15") == 0 &&
	           p.type == MESH_PARAM_STRING && p.modified_ms > 0,
	   "the last version: 2, \"15\", String, a time");
	mesh_param_fini(&p);
	is_int(mesh_param_read(c, "/shop/orders/discount", 1, &p), MESH_OK,
	       "read version 1");
	is_str(p.value, "10", "its value");
	mesh_param_fini(&p);
	is_int(mesh_param_read(c, "/shop/orders/discount", 9, &p),
	       MESH_ENOTFOUND, "version 9: not found");
	has_str(mesh_errdetail(), "no version 9 (versions kept: 1-2)",
	        "saying which are kept");
	is_int(mesh_param_history(c, "/shop/orders/discount", &ps, &n),
	       MESH_OK, "history");
	ok(n == 2 && ps[0].version == 1 && ps[1].version == 2,
	   "two versions, oldest first");
	mesh_param_list_free(ps, n);
	is_int(mesh_param_read(c, "/shop/none", 0, &p), MESH_ENOTFOUND,
	       "an unknown parameter: not found");

	/* Refusals: nothing stored. */
	is_int(put(c, "a/b", MESH_PARAM_STRING, "x", false, NULL), MESH_EINVAL,
	       "a bad name is refused");
	is_int(put(c, "/x", MESH_PARAM_STRING, "", false, NULL), MESH_EINVAL,
	       "an empty value is refused");
	is_int(put(c, "/x", MESH_PARAM_STRING_LIST, "a,,b", false, NULL),
	       MESH_EINVAL, "a StringList with an empty item is refused");
	has_str(mesh_errdetail(), "item 2 is empty", "naming the item");
	is_int(put(c, "/x", MESH_PARAM_STRING, "\xff\xfe", false, NULL),
	       MESH_EINVAL, "a value that is not UTF-8 is refused");
	memset(big, 'd', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	mesh_param_put_opts_init(&po);
	po.name = "/x";
	po.value = "1";
	po.description = big;
	is_int(mesh_param_put(c, &po, NULL, NULL), MESH_EINVAL,
	       "a description of 1025 is refused");
	po.description = NULL;
	po.readers = readers;
	po.n_readers = 1;
	is_int(mesh_param_put(c, &po, NULL, NULL), MESH_EINVAL,
	       "readers of a String are refused");
	is_int(count(c, NULL, false), 1, "nothing of them stored");

	/* Lists by path. */
	put(c, "/shop/orders/limit", MESH_PARAM_STRING_LIST, "a,b,c", false,
	    NULL);
	put(c, "/shop/shipping/carrier", MESH_PARAM_STRING, "dhl", false,
	    NULL);
	put(c, "/other", MESH_PARAM_STRING, CONTROL, false, NULL);
	put(c, "top", MESH_PARAM_STRING, "t", false, NULL);
	is_int(count(c, NULL, false), 5, "five parameters");
	is_int(count(c, "/shop", false), 0, "none directly below /shop");
	is_int(count(c, "/shop", true), 3, "three at any depth below /shop");
	is_int(count(c, "/shop/orders", false), 2, "two below /shop/orders");
	is_int(count(c, "/", false), 2, "two at the root (/other, top)");
	is_int(mesh_param_list(c, "shop", false, &ps, &n), MESH_EINVAL,
	       "a path without '/' is refused");
	mesh_param_list(c, "/shop/orders", false, &ps, &n);
	ok(n == 2 && strcmp(ps[0].name, "/shop/orders/discount") == 0 &&
	           strcmp(ps[1].name, "/shop/orders/limit") == 0 &&
	           ps[1].type == MESH_PARAM_STRING_LIST,
	   "by name, with their types");
	mesh_param_list_free(ps, n);

	/* Delete. */
	is_int(mesh_param_delete(c, "top"), MESH_OK, "deleted");
	is_int(mesh_param_read(c, "top", 0, &p), MESH_ENOTFOUND, "gone");
	is_int(mesh_param_history(c, "top", &ps, &n), MESH_ENOTFOUND,
	       "with its history");
	is_int(mesh_param_delete(c, "top"), MESH_ENOTFOUND,
	       "deleting it again: not found");
	is_int(put(c, "top", MESH_PARAM_STRING, "t2", false, &v), MESH_OK,
	       "made again");
	is_int(v, 1, "from version 1");

	/* SecureStrings. */
	admin = identity(dir, "admin");
	orders = identity(dir, "orders");
	billing = identity(dir, "billing");
	ok(admin && orders && billing, "three identities");
	mesh_identity_record(orders, &rec);
	mesh_keys_put(c, &rec, false);
	mesh_identity_record(billing, &rec);
	mesh_keys_put(c, &rec, false);
	mesh_param_put_opts_init(&po);
	po.name = "/shop/db/password";
	po.type = MESH_PARAM_SECURE_STRING;
	po.value = SECRET;
	po.readers = unknown;
	po.n_readers = 2;
	is_int(mesh_param_put(c, &po, admin, NULL), MESH_ENOTFOUND,
	       "an unknown reader is refused");
	has_str(mesh_errdetail(), "reader 'nobody'", "by name");
	is_int(mesh_param_read(c, "/shop/db/password", 0, &p), MESH_ENOTFOUND,
	       "nothing stored");
	po.readers = readers;
	po.n_readers = 1;
	is_int(mesh_param_put(c, &po, NULL, NULL), MESH_EINVAL,
	       "a SecureString without the writer's identity is refused");
	is_int(mesh_param_put(c, &po, admin, &v), MESH_OK,
	       "a SecureString stored, readers orders (and admin)");
	is_int(mesh_param_read(c, "/shop/db/password", 0, &p), MESH_OK,
	       "read");
	ok(p.value == NULL && p.type == MESH_PARAM_SECURE_STRING &&
	           p.n_readers == 2 && strcmp(p.readers[0], "admin") == 0 &&
	           strcmp(p.readers[1], "orders") == 0,
	   "sealed, for admin and orders");
	is_str(p.modified_by, "admin", "written by admin");
	is_int(mesh_param_open(&p, billing), MESH_EAUTH,
	       "billing (not a reader) cannot open it");
	has_str(mesh_errdetail(), "'billing' is not a reader", "saying so");
	is_int(mesh_param_open(&p, orders), MESH_OK, "orders opens it");
	is_str(p.value, SECRET, "to its value");
	mesh_param_fini(&p);
	mesh_param_read(c, "/shop/db/password", 0, &p);
	is_int(mesh_param_open(&p, admin), MESH_OK, "so does admin");
	mesh_param_fini(&p);

	/* Never in clear: not in the bucket's messages ... */
	is_int(mesh_param_bucket(c, &kv), MESH_OK, "the bucket");
	is_int(kvStore_History(&list, kv, "_.shop.db.password", NULL), NATS_OK,
	       "its raw history");
	for (int i = 0; i < list.Count; i++) {
		const char *raw = kvEntry_ValueString(list.Entries[i]);
		clear += memmem(raw, (size_t)kvEntry_ValueLen(list.Entries[i]),
		                SECRET, strlen(SECRET)) != NULL;
	}
	ok(list.Count == 1 && clear == 0,
	   "a secure parameter is not in clear in the bucket");
	kvEntryList_Destroy(&list);
	/* ... nor in the server's files (where a String's value is). */
	for (int i = 0; i < 50 && files_holding(broker.dir, CONTROL) == 0;
	     i++) {
		nats_Sleep(100);
	}
	ok(files_holding(broker.dir, CONTROL) > 0,
	   "a String's value is found in the server's files");
	is_int(files_holding(broker.dir, SECRET), 0,
	       "a SecureString's is not");

	/* A damaged record, and an altered ciphertext. */
	kvStore_PutString(NULL, kv, "_.shop.broken", "{not json");
	is_int(mesh_param_read(c, "/shop/broken", 0, &p), MESH_EBROKER,
	       "a damaged record is reported");
	has_str(mesh_errdetail(), "'/shop/broken': damaged record",
	        "naming it");
	mesh_param_list(c, "/shop", false, &ps, &n);
	ok(n == 1 && strcmp(ps[0].name, "/shop/broken") == 0 &&
	           ps[0].version == 0,
	   "and listed as damaged (version 0)");
	mesh_param_list_free(ps, n);
	if (kvStore_Get(&e, kv, "_.shop.db.password") == NATS_OK) {
		json_t *j = json_loadb(kvEntry_ValueString(e),
		                       (size_t)kvEntry_ValueLen(e), 0, NULL);
		json_t *sec = json_object_get(j, "secure");
		char *ct = strdup(
		        json_string_value(json_object_get(sec, "ciphertext")));
		char *text;
		ct[2] = ct[2] == 'A' ? 'B' : 'A';
		json_object_set_new(sec, "ciphertext", json_string(ct));
		text = json_dumps(j, JSON_COMPACT);
		kvStore_PutString(NULL, kv, "_.shop.db.password", text);
		free(text);
		free(ct);
		json_decref(j);
		kvEntry_Destroy(e);
	}
	mesh_param_read(c, "/shop/db/password", 0, &p);
	is_int(mesh_param_open(&p, orders), MESH_EPARSE,
	       "an altered ciphertext does not open");
	has_str(mesh_errdetail(), "altered", "saying so");
	mesh_param_fini(&p);
	kvStore_Destroy(kv);

	/* A type changed by overwrite. */
	is_int(put(c, "/shop/db/password", MESH_PARAM_STRING, "open", true,
	           &v),
	       MESH_OK, "a SecureString overwritten as a String");
	is_int(v, 2, "version 2");

	mesh_identity_free(admin);
	mesh_identity_free(orders);
	mesh_identity_free(billing);
	mesh_conn_close(c);
	test_broker_stop(&broker);
	test_rmtree(dir);
	mesh_shutdown();
	return tap_done();
}
