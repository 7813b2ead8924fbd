/* A running service's state over NATS (services/runtime/state_api.c)
 * against a real nats-server: get, scan with paging, a backup fetched in
 * chunks whose copy opens and holds the keys, and clear errors for bad
 * requests. */
#include <fcntl.h>
#include <sys/stat.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <lmdb.h>
#include <sodium.h>

#include "harness.h"
#include "service_thread.h"
#include "mesh/service.h"

static struct test_broker broker;
static struct mesh_conn *c;

static mesh_handler_result
on_put(struct mesh_ctx *ctx, const struct mesh_event *ev,
       const ProtobufCMessage *msg, void *arg)
{
	const void *data;
	size_t len;
	char key[64];

	(void)msg;
	(void)arg;
	mesh_event_data(ev, &data, &len, NULL);
	snprintf(key, sizeof(key), "k/%.*s", (int)len, (const char *)data);
	mesh_state_put(ctx, key, strlen(key), data, len);
	return MESH_HANDLER_OK;
}

/* A request; its answer as JSON (NULL: none). */
static json_t *
call(const char *verb, const char *body)
{
	char subject[128];
	natsMsg *reply = NULL;
	json_t *j = NULL;

	snprintf(subject, sizeof(subject), MESH_SERVICE_STATE_SUBJECT, "sa",
	         verb);
	if (natsConnection_RequestString(&reply, mesh_conn_nats(c), subject,
	                                 body, 5000) == NATS_OK) {
		j = json_loadb(natsMsg_GetData(reply),
		               (size_t)natsMsg_GetDataLength(reply), 0, NULL);
	}
	natsMsg_Destroy(reply);
	return j;
}

static const char *
str(json_t *j, const char *k)
{
	const char *v = json_string_value(json_object_get(j, k));

	return v ? v : "";
}

/* base64 -> text (short values). */
static const char *
unb64(const char *enc)
{
	static char buf[256];
	size_t len = 0;

	if (sodium_base642bin((unsigned char *)buf, sizeof(buf) - 1, enc,
	                      strlen(enc), NULL, &len, NULL,
	                      sodium_base64_VARIANT_ORIGINAL) != 0) {
		return "(bad base64)";
	}
	buf[len] = '\0';
	return buf;
}

static void
put_events(int n)
{
	struct mesh_queue *q = NULL;

	mesh_queue_open(c, "sa-in", &q);
	for (int i = 0; i < n; i++) {
		struct mesh_event *ev = NULL;
		struct mesh_queue_entry e = {.delay_s = -1};
		struct mesh_queue_sent sent;
		char body[16];
		snprintf(body, sizeof(body), "%02d", i);
		mesh_event_new("t.put", "test", &ev);
		mesh_event_set_text(ev, body, strlen(body));
		e.event = ev;
		mesh_queue_send(q, &e, &sent);
		mesh_event_free(ev);
	}
	mesh_queue_close(q);
}

static void
backup(const char *dir)
{
	json_t *b = call("backup", "{}"), *j;
	const char *subject = str(b, "subject"), *id = str(b, "id");
	json_int_t size = json_integer_value(json_object_get(b, "size"));
	char path[PATH_MAX + 32], req[128], hex[65];
	uint8_t sum[crypto_hash_sha256_BYTES];
	crypto_hash_sha256_state st;
	long long got = 0;
	int chunks = 0, fd;

	ok(b != NULL && id[0] != '\0' && size > 0 && subject[0] != '\0',
	   "backup: an id, a size (%lld bytes) and a chunk subject",
	   (long long)size);
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	crypto_hash_sha256_init(&st);
	for (;;) {
		natsMsg *m = NULL;
		snprintf(req, sizeof(req), "{\"id\":\"%s\",\"offset\":%lld}",
		         id, got);
		if (natsConnection_RequestString(&m, mesh_conn_nats(c),
		                                 subject, req,
		                                 5000) != NATS_OK) {
			break;
		}
		if (natsMsg_GetDataLength(m) == 0) {
			natsMsg_Destroy(m);
			break;
		}
		write(fd, natsMsg_GetData(m),
		      (size_t)natsMsg_GetDataLength(m));
		crypto_hash_sha256_update(
		        &st, (const unsigned char *)natsMsg_GetData(m),
		        (unsigned long long)natsMsg_GetDataLength(m));
		got += natsMsg_GetDataLength(m);
		chunks++;
		natsMsg_Destroy(m);
	}
	close(fd);
	crypto_hash_sha256_final(&st, sum);
	sodium_bin2hex(hex, sizeof(hex), sum, sizeof(sum));
	is_int(got, size, "... fetched whole in %d chunks", chunks);
	is_str(hex, str(b, "sha256"), "... its SHA-256 as announced");
	{
		MDB_env *env = NULL;
		MDB_txn *txn = NULL;
		MDB_dbi dbi;
		MDB_val k = {4, "k/07"}, v;
		bool found = mdb_env_create(&env) == 0 &&
		             mdb_env_set_maxdbs(env, 8) == 0 &&
		             mdb_env_open(env, dir, MDB_RDONLY, 0644) == 0 &&
		             mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) == 0 &&
		             mdb_dbi_open(txn, "state", 0, &dbi) == 0 &&
		             mdb_get(txn, dbi, &k, &v) == 0 &&
		             v.mv_size == 2 && memcmp(v.mv_data, "07", 2) == 0;
		ok(found, "... and the copy opens with its keys");
		if (txn != NULL) {
			mdb_txn_abort(txn);
		}
		mdb_env_close(env);
	}
	snprintf(req, sizeof(req), "{\"id\":\"%s\",\"done\":true}", id);
	json_decref(call("backup", "{}") /* a second one while busy */);
	{
		natsMsg *m = NULL;
		natsConnection_RequestString(&m, mesh_conn_nats(c), subject,
		                             req, 5000);
		natsMsg_Destroy(m);
		snprintf(req, sizeof(req), "{\"id\":\"%s\",\"offset\":0}", id);
		natsConnection_RequestString(&m, mesh_conn_nats(c), subject,
		                             req, 5000);
		j = m ? json_loadb(natsMsg_GetData(m),
		                   (size_t)natsMsg_GetDataLength(m), 0, NULL)
		      : NULL;
		is_str(str(j, "code"), "MESH_ENOTFOUND",
		       "after done, the backup is gone");
		json_decref(j);
		natsMsg_Destroy(m);
	}
	json_decref(b);
}

int
main(void)
{
	struct mesh_conn_opts o;
	struct mesh_queue_attrs qa;
	struct running r = {0};
	char dir[PATH_MAX], state[PATH_MAX + 8], copy[PATH_MAX + 8];
	json_t *j;

	if (!test_broker_start(&broker, NULL) ||
	    !test_tmpdir(dir, sizeof(dir))) {
		tap_skip_all("nats-server did not start");
	}
	snprintf(state, sizeof(state), "%s/state", dir);
	snprintf(copy, sizeof(copy), "%s/copy", dir);
	mkdir(copy, 0755);
	mesh_conn_opts_init(&o);
	o.servers = broker.url;
	mesh_conn_open(&o, &c);
	mesh_queue_attrs_init(&qa);
	mesh_queue_create(c, "sa-in", &qa);

	mesh_conn_open(&o, &r.c);
	mesh_service_new("sa", &r.s);
	mesh_service_opts(r.s)->state_dir = state;
	mesh_service_opts(r.s)->map_size = 16u << 20;
	mesh_service_consume(r.s, "sa-in");
	mesh_service_on(r.s, "t.put", NULL, on_put, NULL);
	running_start(&r);
	put_events(12);
	for (long long end = test_now_ms() + 10000; test_now_ms() < end;) {
		j = call("get", "{\"key\":\"k/11\"}");
		bool done = j != NULL && json_object_get(j, "value_base64");
		json_decref(j);
		if (done) {
			break;
		}
		usleep(100000);
	}

	j = call("get", "{\"key\":\"k/03\"}");
	is_str(unb64(str(j, "value_base64")), "03", "get: a key's value");
	json_decref(j);
	j = call("get", "{\"key_base64\":\"ay8wNA==\"}");
	is_str(unb64(str(j, "value_base64")), "04", "get: a key in base64");
	json_decref(j);
	j = call("get", "{\"key\":\"nope\"}");
	is_str(str(j, "code"), "MESH_ENOTFOUND", "get: a missing key");
	has_str(str(j, "error"), "service 'sa' has no key 'nope'",
	        "... named in the error");
	json_decref(j);
	j = call("get", "{\"key\":\"k/03\",\"db\":\"tables\"}");
	is_str(str(j, "code"), "MESH_EINVAL", "get: an unknown database");
	has_str(str(j, "error"), "'tables'", "... named");
	json_decref(j);
	j = call("get", "{\"key\":\"k/03\",\"db\":\"processed\"}");
	is_str(str(j, "code"), "MESH_ENOTFOUND",
	       "get: another of the runtime's databases (processed ids)");
	json_decref(j);
	j = call("get", "not json");
	is_str(str(j, "code"), "MESH_EINVAL", "a request that is not JSON");
	json_decref(j);
	j = call("drop", "{}");
	is_str(str(j, "code"), "MESH_EINVAL", "an unknown call");
	json_decref(j);

	/* scan: pages of 5 over 12 keys, in order. */
	{
		char req[256], seen[512] = "";
		const char *next = NULL;
		int pages = 0;
		json_t *page = NULL;
		do {
			snprintf(req, sizeof(req),
			         "{\"prefix\":\"k/\",\"limit\":5%s%s%s}",
			         next ? ",\"after_base64\":\"" : "",
			         next ? next : "", next ? "\"" : "");
			json_t *p = call("scan", req);
			json_t *items = json_object_get(p, "items"), *it;
			size_t i;
			json_array_foreach(items, i, it)
			{
				strcat(seen, unb64(str(it, "key_base64")));
				strcat(seen, " ");
			}
			pages++;
			json_decref(page);
			page = p;
			next = json_is_true(json_object_get(p, "more"))
			               ? str(p, "next_base64")
			               : NULL;
		} while (next != NULL && pages < 10);
		json_decref(page);
		is_int(pages, 3, "scan: 12 keys in pages of 5: 3 pages");
		is_str(seen,
		       "k/00 k/01 k/02 k/03 k/04 k/05 k/06 k/07 k/08 k/09 "
		       "k/10 "
		       "k/11 ",
		       "... every key once, in order");
	}
	j = call("scan", "{\"limit\":0}");
	is_str(str(j, "code"), "MESH_EINVAL", "scan: a limit of 0");
	json_decref(j);

	backup(copy);

	running_stop(&r);
	mesh_service_free(r.s);
	mesh_conn_close(r.c);
	mesh_conn_close(c);
	test_broker_stop(&broker);
	test_rmtree(dir);
	mesh_shutdown();
	return tap_done();
}
