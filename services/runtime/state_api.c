/* state_api.c: a running service's state over NATS, so that tools read it
 * from any machine without its files (see "meshctl state" in the README).
 *
 * mesh.service.NAME.state.get     {"db","key"|"key_base64"}
 *                                 -> {"key_base64","value_base64"}
 * mesh.service.NAME.state.scan    {"db","prefix"|"prefix_base64","limit",
 *                                  "after_base64"}
 *                                 -> {"items":[{"key_base64",
 *                                    "value_base64"}],"more","next_base64"}
 * mesh.service.NAME.state.backup  {} -> {"id","size","sha256","subject"}:
 *                                 a compacted copy of the environment,
 *                                 then fetched in chunks from "subject"
 *                                 ({"id","offset"} -> the bytes, with
 *                                 header Mesh-Backup-Offset;
 *                                 {"id","done":true} -> {} and it is gone)
 *
 * Each answer comes from one instance (a queue group), from one read
 * transaction: one consistent moment while the service goes on writing.
 * An error is {"error": "...", "code": "MESH_E..."}. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "runtime.h"

#define SCAN_LIMIT_MAX  1000
#define REPLY_BYTES_MAX (768 * 1024) /* under NATS's 1 MiB payload */
#define CHUNK_BYTES     (512 * 1024)
#define BACKUP_IDLE_MS  (10 * 60 * 1000)
#define STATE_QUEUE     "mesh-state"

/* A request's bytes: field `name` as text, or `name`_base64 decoded into
 * buf. Returns the length, or -1 when neither is there or it is not
 * base64. */
static long
bytes_of(json_t *req, const char *name, uint8_t *buf, size_t size)
{
	char field[64];
	const char *text = json_string_value(json_object_get(req, name));
	const char *enc;
	size_t len = 0;

	if (text != NULL) {
		len = strlen(text);
		if (len > size) {
			return -1;
		}
		memcpy(buf, text, len);
		return (long)len;
	}
	snprintf(field, sizeof(field), "%s_base64", name);
	if ((enc = json_string_value(json_object_get(req, field))) == NULL ||
	    sodium_base642bin(buf, size, enc, strlen(enc), NULL, &len, NULL,
	                      sodium_base64_VARIANT_ORIGINAL) != 0) {
		return -1;
	}
	return (long)len;
}

static void
reply_json(natsConnection *nc, natsMsg *m, json_t *j)
{
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;

	if (natsMsg_GetReply(m) != NULL) {
		natsConnection_PublishString(nc, natsMsg_GetReply(m),
		                             text ? text : "{}");
	}
	free(text);
	json_decref(j);
}

static json_t *error_json(mesh_err err, const char *fmt, ...)
        MESH_PRINTF(2, 3);

static json_t *
error_json(mesh_err err, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	mesh_text_clean(msg);
	return json_pack("{s:s, s:s}", "error", msg, "code",
	                 mesh_errname(err));
}

/* The database a request names (default "state"). */
static bool
db_of(const struct store *st, json_t *req, MDB_dbi *dbi, const char **name)
{
	const char *db = json_string_value(json_object_get(req, "db"));
	const struct {
		const char *name;
		const MDB_dbi *dbi;
	} dbs[] = {{MESH_SERVICE_DB_STATE, &st->db_state},
	           {"processed", &st->db_processed},
	           {"processed_at", &st->db_processed_at},
	           {"outbox", &st->db_outbox},
	           {"meta", &st->db_meta},
	           {"requests", &st->db_requests},
	           {"requests_at", &st->db_requests_at}};

	*name = db ? db : MESH_SERVICE_DB_STATE;
	for (size_t i = 0; i < sizeof(dbs) / sizeof(*dbs); i++) {
		if (strcmp(*name, dbs[i].name) == 0) {
			*dbi = *dbs[i].dbi;
			return true;
		}
	}
	return false;
}

static json_t *
get(struct mesh_service *s, struct store *st, json_t *req)
{
	uint8_t key[KEY_MAX];
	long klen = bytes_of(req, "key", key, sizeof(key));
	MDB_txn *txn = NULL;
	MDB_val k = {(size_t)klen, key}, v;
	MDB_dbi dbi;
	const char *db;
	json_t *out;
	char *ke, *ve;
	int rc;

	if (!db_of(st, req, &dbi, &db)) {
		return error_json(MESH_EINVAL,
		                  "service '%s': no database '%s' (state, "
		                  "processed, processed_at, outbox, meta, "
		                  "requests, requests_at)",
		                  s->name, db);
	}
	if (klen <= 0) {
		return error_json(
		        MESH_EINVAL,
		        "service '%s': a key of 1-%d bytes, as \"key\" "
		        "or \"key_base64\"",
		        s->name, KEY_MAX);
	}
	if ((rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn)) != 0) {
		return error_json(MESH_ESTORE, "service '%s': %s", s->name,
		                  mdb_strerror(rc));
	}
	rc = mdb_get(txn, dbi, &k, &v);
	if (rc == MDB_NOTFOUND) {
		mdb_txn_abort(txn);
		return error_json(MESH_ENOTFOUND,
		                  "service '%s' has no key '%.*s' in %s",
		                  s->name, (int)klen, (const char *)key, db);
	}
	if (rc != 0) {
		mdb_txn_abort(txn);
		return error_json(MESH_ESTORE, "service '%s': %s", s->name,
		                  mdb_strerror(rc));
	}
	ke = mesh_base64(key, (size_t)klen);
	ve = mesh_base64(v.mv_data, v.mv_size);
	mdb_txn_abort(txn);
	out = json_pack("{s:s, s:s}", "key_base64", ke ? ke : "",
	                "value_base64", ve ? ve : "");
	free(ke);
	free(ve);
	return out;
}

static json_t *
scan(struct mesh_service *s, struct store *st, json_t *req)
{
	uint8_t prefix[KEY_MAX], after[KEY_MAX];
	long plen = bytes_of(req, "prefix", prefix, sizeof(prefix));
	long alen = bytes_of(req, "after", after, sizeof(after));
	json_t *lim = json_object_get(req, "limit");
	json_int_t limit = lim ? json_integer_value(lim) : 100;
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	MDB_dbi dbi;
	const char *db;
	json_t *items, *out;
	size_t bytes = 0, n = 0;
	bool more = false;
	int rc, op;

	if (!db_of(st, req, &dbi, &db)) {
		return error_json(MESH_EINVAL,
		                  "service '%s': no database '%s'", s->name,
		                  db);
	}
	if (lim != NULL &&
	    (!json_is_integer(lim) || limit < 1 || limit > SCAN_LIMIT_MAX)) {
		return error_json(MESH_EINVAL,
		                  "service '%s': limit: 1-%d keys a request",
		                  s->name, SCAN_LIMIT_MAX);
	}
	plen = plen < 0 ? 0 : plen;
	if ((rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn)) != 0 ||
	    (rc = mdb_cursor_open(txn, dbi, &cur)) != 0) {
		if (txn != NULL) {
			mdb_txn_abort(txn);
		}
		return error_json(MESH_ESTORE, "service '%s': %s", s->name,
		                  mdb_strerror(rc));
	}
	items = json_array();
	k.mv_size = alen > 0 ? (size_t)alen : (size_t)plen;
	k.mv_data = alen > 0 ? after : prefix;
	op = k.mv_size > 0 ? MDB_SET_RANGE : MDB_FIRST;
	while ((rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
		char *ke, *ve;
		op = MDB_NEXT;
		if (alen > 0 && k.mv_size == (size_t)alen &&
		    memcmp(k.mv_data, after, (size_t)alen) == 0) {
			continue; /* the last one of the page before */
		}
		if (k.mv_size < (size_t)plen ||
		    memcmp(k.mv_data, prefix, (size_t)plen) != 0) {
			break;
		}
		if (n == (size_t)limit ||
		    bytes + (k.mv_size + v.mv_size) * 4 / 3 + 64 >
		            REPLY_BYTES_MAX) {
			more = n > 0;
			break;
		}
		ke = mesh_base64(k.mv_data, k.mv_size);
		ve = mesh_base64(v.mv_data, v.mv_size);
		json_array_append_new(items,
		                      json_pack("{s:s, s:s}", "key_base64",
		                                ke ? ke : "", "value_base64",
		                                ve ? ve : ""));
		bytes += (ke ? strlen(ke) : 0) + (ve ? strlen(ve) : 0) + 40;
		free(ke);
		free(ve);
		n++;
	}
	out = json_pack("{s:o, s:b}", "items", items, "more", more);
	if (more && n > 0) {
		json_t *last = json_array_get(items, n - 1);
		json_object_set(out, "next_base64",
		                json_object_get(last, "key_base64"));
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return out;
}

/* ---- backups ------------------------------------------------------------ */

static void
backup_drop(struct mesh_service *s)
{
	char path[sizeof(s->backup.dir) + 16];

	if (s->backup.id[0] == '\0') {
		return;
	}
	snprintf(path, sizeof(path), "%s/data.mdb", s->backup.dir);
	unlink(path);
	rmdir(s->backup.dir);
	s->backup.id[0] = '\0';
}

static bool
file_sha256(const char *path, char hex[65], uint64_t *size)
{
	crypto_hash_sha256_state st;
	uint8_t buf[65536], sum[crypto_hash_sha256_BYTES];
	int fd = open(path, O_RDONLY);
	ssize_t r;

	if (fd < 0) {
		return false;
	}
	*size = 0;
	crypto_hash_sha256_init(&st);
	while ((r = read(fd, buf, sizeof(buf))) > 0) {
		crypto_hash_sha256_update(&st, buf, (unsigned long long)r);
		*size += (uint64_t)r;
	}
	close(fd);
	crypto_hash_sha256_final(&st, sum);
	sodium_bin2hex(hex, 65, sum, sizeof(sum));
	return r == 0;
}

static json_t *
backup_start(struct mesh_service *s, struct store *st)
{
	const char *tmp = getenv("TMPDIR");
	char path[sizeof(s->backup.dir) + 16], hex[65];
	uint8_t r[8];
	int rc;

	/* One at a time an instance; an abandoned one expires. */
	if (s->backup.id[0] != '\0' &&
	    mesh_mono_ms() - s->backup.used_ms < BACKUP_IDLE_MS) {
		return error_json(MESH_EEXIST,
		                  "service '%s': instance %s is sending a "
		                  "backup; try again when it is done",
		                  s->name, s->instance);
	}
	backup_drop(s);
	snprintf(s->backup.dir, sizeof(s->backup.dir),
	         "%s/evmesh-backup-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
	if (mkdtemp(s->backup.dir) == NULL) {
		return error_json(MESH_EIO, "service '%s': %s: %s", s->name,
		                  s->backup.dir, strerror(errno));
	}
	if ((rc = mdb_env_copy2(st->env, s->backup.dir, MDB_CP_COMPACT)) !=
	    0) {
		rmdir(s->backup.dir);
		return error_json(MESH_ESTORE, "service '%s': backup: %s",
		                  s->name, mdb_strerror(rc));
	}
	snprintf(path, sizeof(path), "%s/data.mdb", s->backup.dir);
	randombytes_buf(r, sizeof(r));
	sodium_bin2hex(s->backup.id, sizeof(s->backup.id), r, sizeof(r));
	if (!file_sha256(path, hex, &s->backup.size)) {
		backup_drop(s);
		return error_json(MESH_EIO, "service '%s': backup: %s",
		                  s->name, strerror(errno));
	}
	s->backup.used_ms = mesh_mono_ms();
	return json_pack("{s:s, s:I, s:s, s:s}", "id", s->backup.id, "size",
	                 (json_int_t)s->backup.size, "sha256", hex, "subject",
	                 s->backup.subject);
}

/* A chunk request: the bytes at offset (empty past the end), or done. */
static void
on_chunk(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
	struct mesh_service *s = arg;
	json_t *req = json_loadb(natsMsg_GetData(m),
	                         (size_t)natsMsg_GetDataLength(m), 0, NULL);
	const char *id = json_string_value(json_object_get(req, "id"));
	json_int_t offset = json_integer_value(json_object_get(req, "offset"));
	char path[sizeof(s->backup.dir) + 16];

	(void)sub;
	pthread_mutex_lock(&s->backup.mu);
	if (id == NULL || s->backup.id[0] == '\0' ||
	    strcmp(id, s->backup.id) != 0) {
		reply_json(nc, m,
		           error_json(MESH_ENOTFOUND,
		                      "service '%s': no backup '%s' here (it "
		                      "expires after 10 idle minutes)",
		                      s->name, id ? id : ""));
	} else if (json_is_true(json_object_get(req, "done"))) {
		backup_drop(s);
		reply_json(nc, m, json_object());
	} else if (offset < 0 || (uint64_t)offset > s->backup.size) {
		reply_json(
		        nc, m,
		        error_json(MESH_EINVAL,
		                   "service '%s': offset %lld is outside the "
		                   "backup's %" PRIu64 " bytes",
		                   s->name, (long long)offset,
		                   s->backup.size));
	} else {
		uint8_t *buf = malloc(CHUNK_BYTES);
		ssize_t n = -1;
		int fd;
		snprintf(path, sizeof(path), "%s/data.mdb", s->backup.dir);
		if (buf != NULL && (fd = open(path, O_RDONLY)) >= 0) {
			n = pread(fd, buf, CHUNK_BYTES, (off_t)offset);
			close(fd);
		}
		if (n < 0) {
			reply_json(nc, m,
			           error_json(MESH_EIO, "service '%s': %s",
			                      s->name, strerror(errno)));
		} else if (natsMsg_GetReply(m) != NULL) {
			/* Bytes carry their offset in a header; answers
			 * without one are JSON (an error). */
			natsMsg *r = NULL;
			char off[24];
			snprintf(off, sizeof(off), "%lld", (long long)offset);
			if (natsMsg_Create(&r, natsMsg_GetReply(m), NULL,
			                   (const char *)buf,
			                   (int)n) == NATS_OK &&
			    natsMsgHeader_Set(r,
			                      MESH_SERVICE_BACKUP_OFFSET_HDR,
			                      off) == NATS_OK) {
				natsConnection_PublishMsg(nc, r);
			}
			natsMsg_Destroy(r);
		}
		free(buf);
		s->backup.used_ms = mesh_mono_ms();
	}
	pthread_mutex_unlock(&s->backup.mu);
	json_decref(req);
	natsMsg_Destroy(m);
}

/* A request to store st of service s. */
static void
answer(struct mesh_service *s, struct store *st, natsConnection *nc,
       natsMsg *m)
{
	const char *subject = natsMsg_GetSubject(m);
	const char *verb = strrchr(subject, '.') + 1;
	json_error_t jerr;
	json_t *req = json_loadb(natsMsg_GetData(m),
	                         (size_t)natsMsg_GetDataLength(m), 0, &jerr);

	if (natsMsg_GetDataLength(m) == 0) {
		req = json_object();
	}
	if (st->env == NULL) {
		reply_json(nc, m,
		           error_json(MESH_EINVAL,
		                      "service '%s' is partitioned (%d "
		                      "partitions): each partition's owner "
		                      "answers for it on "
		                      "mesh.service.%s.pK.state.%s (meshctl "
		                      "state finds a key's partition)",
		                      s->name, s->o.partitions, s->name,
		                      verb));
	} else if (req == NULL || !json_is_object(req)) {
		reply_json(
		        nc, m,
		        error_json(MESH_EINVAL,
		                   "service '%s': the request is not a JSON "
		                   "object (%s)",
		                   s->name,
		                   req ? "another value" : jerr.text));
	} else if (strcmp(verb, "get") == 0) {
		reply_json(nc, m, get(s, st, req));
	} else if (strcmp(verb, "scan") == 0) {
		reply_json(nc, m, scan(s, st, req));
	} else if (strcmp(verb, "backup") == 0) {
		pthread_mutex_lock(&s->backup.mu);
		reply_json(nc, m, backup_start(s, st));
		pthread_mutex_unlock(&s->backup.mu);
	} else {
		reply_json(nc, m,
		           error_json(MESH_EINVAL,
		                      "service '%s': no state call '%s' (get, "
		                      "scan, backup)",
		                      s->name, verb));
	}
	json_decref(req);
	natsMsg_Destroy(m);
}

static void
on_state(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
	struct mesh_service *s = arg;

	(void)sub;
	answer(s, &s->one, nc, m);
}

/* A partitioned service's: every instance hears every partition's
 * requests (one subscription, made once: no subscription comes and goes
 * with a partition), and the owner of the partition answers. */
static void
on_part_state(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
	struct mesh_service *s = arg;
	const char *subject = natsMsg_GetSubject(m);
	size_t skip = strlen("mesh.service.") + strlen(s->name) + 2;
	char *end;
	long k;

	(void)sub;
	if (strlen(subject) <= skip || subject[skip - 1] != 'p') {
		natsMsg_Destroy(m);
		return;
	}
	k = strtol(subject + skip, &end, 10);
	if (end == subject + skip || *end != '.' || k < 0 ||
	    k >= s->o.partitions || s->parts == NULL) {
		natsMsg_Destroy(m);
		return;
	}
	/* Under the partition's lock its store stays open; a partition not
	 * ours is not ours to answer for. */
	pthread_mutex_lock(&s->parts[k].mu);
	if (s->parts[k].st.env != NULL && atomic_load(&s->parts[k].running)) {
		answer(s, &s->parts[k].st, nc, m);
	} else {
		natsMsg_Destroy(m);
	}
	pthread_mutex_unlock(&s->parts[k].mu);
}

/* Unsubscribe, waiting for a request in hand (it reads the store). */
static void
unsubscribe(natsSubscription **sub)
{
	if (*sub != NULL) {
		if (natsSubscription_Drain(*sub) == NATS_OK) {
			natsSubscription_WaitForDrainCompletion(*sub, 5000);
		}
		natsSubscription_Destroy(*sub);
		*sub = NULL;
	}
}

mesh_err
mesh__state_api_start(struct mesh_service *s)
{
	char subject[MESH_SERVICE_NAME_MAX + 64], id[17];
	uint8_t r[8];
	natsStatus st;

	randombytes_buf(r, sizeof(r));
	sodium_bin2hex(id, sizeof(id), r, sizeof(r));
	snprintf(s->backup.subject, sizeof(s->backup.subject),
	         "mesh.service.%s.instance.%s.backup", s->name, id);
	snprintf(subject, sizeof(subject), MESH_SERVICE_STATE_SUBJECT, s->name,
	         "*");
	st = natsConnection_QueueSubscribe(&s->state_sub[0],
	                                   mesh_conn_nats(s->c), subject,
	                                   STATE_QUEUE, on_state, s);
	if (st == NATS_OK && s->o.partitions > 0) {
		char parts[MESH_SERVICE_NAME_MAX + 64];
		snprintf(parts, sizeof(parts), "mesh.service.%s.*.state.*",
		         s->name);
		st = natsConnection_Subscribe(&s->state_sub[2],
		                              mesh_conn_nats(s->c), parts,
		                              on_part_state, s);
	}
	if (st == NATS_OK) {
		st = natsConnection_Subscribe(&s->state_sub[1],
		                              mesh_conn_nats(s->c),
		                              s->backup.subject, on_chunk, s);
	}
	return st == NATS_OK ? MESH_OK
	                     : mesh_err_nats(st, 0, "service '%s': %s",
	                                     s->name, subject);
}

void
mesh__state_api_tick(struct mesh_service *s)
{
	pthread_mutex_lock(&s->backup.mu);
	if (s->backup.id[0] != '\0' &&
	    mesh_mono_ms() - s->backup.used_ms >= BACKUP_IDLE_MS) {
		backup_drop(s);
	}
	pthread_mutex_unlock(&s->backup.mu);
}

void
mesh__state_api_stop(struct mesh_service *s)
{
	for (int i = 0; i < 3; i++) {
		unsubscribe(&s->state_sub[i]);
	}
	pthread_mutex_lock(&s->backup.mu);
	backup_drop(s);
	pthread_mutex_unlock(&s->backup.mu);
}
