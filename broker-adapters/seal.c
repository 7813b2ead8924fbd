/* seal.c: sealed payloads (mesh/seal.h): data keys wrapped to readers
 * (shared with param.c's SecureStrings), the bucket MESH_DATA_KEYS, and
 * the keyring that seals and opens events. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "internal.h"
#include "mesh/seal.h"
#include "mesh/sign.h"
#include "mesh/wire.h"

#define KEY_LEN     MESH__DATA_KEY_LEN
#define NONCE_LEN   crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_LEN     crypto_aead_xchacha20poly1305_ietf_ABYTES
#define SEALED_LEN  MESH__SEALED_KEY_LEN
#define MAX_RECORD  (256 * 1024)
#define PUT_RETRIES 3
#define AD_PREFIX   "evmesh-seal-v1"
#define TARGET_MAX  (MESH_IDENTITY_NAME_MAX + 300)

/* ---- wrapping a data key (also param.c's) ------------------------------ */

mesh_err
mesh__datakey_wrap(struct mesh_conn *c, const char *what,
                   const struct mesh_identity *writer,
                   const char *const *names, size_t n, const uint8_t *key,
                   char **names_out, uint8_t (*keys_out)[SEALED_LEN],
                   size_t *count)
{
	uint8_t curve[MESH_IDENTITY_CURVE_LEN];
	mesh_err err = MESH_OK;

	*count = 0;
	for (size_t i = 0; i <= n && err == MESH_OK; i++) {
		const char *who;
		bool dup = false;
		if (i == 0 && writer == NULL) {
			continue;
		}
		who = i == 0 ? mesh_identity_name(writer) : names[i - 1];
		for (size_t m = 0; m < *count; m++) {
			dup = dup || strcmp(names_out[m], who) == 0;
		}
		if (dup) {
			continue;
		}
		if (i == 0) {
			mesh_identity_curve(writer, curve);
		} else {
			struct mesh_key_record rec;
			if ((err = mesh_keys_get(c, who, &rec)) != MESH_OK) {
				char detail[256];
				snprintf(detail, sizeof(detail), "%s",
				         mesh_errdetail());
				err = mesh_err_set(err, "%s: reader '%s': %s",
				                   what, who, detail);
				break;
			}
			memcpy(curve, rec.curve, sizeof(curve));
		}
		mesh_seal(curve, key, KEY_LEN, keys_out[*count]);
		if ((names_out[*count] = strdup(who)) == NULL) {
			err = mesh_err_set(MESH_ENOMEM, "%s", what);
			break;
		}
		(*count)++;
	}
	return err;
}

mesh_err
mesh__datakey_unwrap(const char *what, const struct mesh_identity *id,
                     char *const *names, const uint8_t (*keys)[SEALED_LEN],
                     size_t n, uint8_t *key)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (strcmp(names[i], mesh_identity_name(id)) == 0) {
			break;
		}
	}
	if (i == n) {
		return mesh_err_set(MESH_EAUTH, "%s: '%s' is not a reader",
		                    what, mesh_identity_name(id));
	}
	if (mesh_identity_unseal(id, keys[i], SEALED_LEN, key) != MESH_OK) {
		return mesh_err_set(MESH_EPARSE,
		                    "%s: its key for '%s' does not open "
		                    "(altered, or sealed to another key of "
		                    "'%s')",
		                    what, names[i], names[i]);
	}
	return MESH_OK;
}

/* ---- Readers ------------------------------------------------------------ */

mesh_err
mesh_readers_parse(const char *what, const char *text,
                   char names[][MESH_IDENTITY_NAME_MAX + 1], size_t *n)
{
	return mesh__names_parse(what, "Readers", "reader", text, names, n);
}

mesh_err
mesh_readers_check(struct mesh_conn *c, const char *what, const char *text)
{
	return mesh__names_check(c, what, "Readers", "reader", text);
}

/* ---- the record --------------------------------------------------------- */

/* "topic:NAME" -> "topic.NAME". */
static mesh_err
target_key(const char *target, char *key, size_t size)
{
	const char *colon = target != NULL ? strchr(target, ':') : NULL;
	size_t kind;

	if (colon == NULL || colon[1] == '\0' ||
	    strcspn(colon + 1, " *>:\t/") != strlen(colon + 1)) {
		return mesh_err_set(MESH_EINVAL,
		                    "'%.80s': not a target (topic:NAME or "
		                    "queue:NAME)",
		                    target ? target : "");
	}
	kind = (size_t)(colon - target);
	if (!((kind == 5 && strncmp(target, "topic", 5) == 0) ||
	      (kind == 5 && strncmp(target, "queue", 5) == 0))) {
		return mesh_err_set(MESH_EINVAL,
		                    "'%.80s': not a target (topic:NAME or "
		                    "queue:NAME)",
		                    target);
	}
	if ((size_t)snprintf(key, size, "%.5s.%s", target, colon + 1) >=
	    size) {
		return mesh_err_set(MESH_EINVAL, "'%.80s': too long", target);
	}
	return MESH_OK;
}

static mesh_err
bucket(struct mesh_conn *c, bool create, kvStore **kv)
{
	return mesh__kv_bucket(c, MESH_DATA_KEYS_BUCKET, MAX_RECORD, 0, create,
	                       "data keys", kv);
}

/* The record of key, as JSON (*rev its revision), or NULL (*rev 0). */
static mesh_err
record_get(kvStore *kv, const char *target, const char *key, json_t **out,
           uint64_t *rev)
{
	kvEntry *e = NULL;
	natsStatus st = kvStore_Get(&e, kv, key);
	json_error_t je;

	*out = NULL;
	*rev = 0;
	if (st == NATS_NOT_FOUND) {
		return MESH_OK;
	}
	if (st != NATS_OK) {
		return mesh_err_nats(st, 0, "%s: data keys", target);
	}
	*out = json_loadb(kvEntry_ValueString(e), (size_t)kvEntry_ValueLen(e),
	                  0, &je);
	*rev = kvEntry_Revision(e);
	kvEntry_Destroy(e);
	if (!json_is_object(*out) ||
	    !json_is_array(json_object_get(*out, "keys")) ||
	    !json_is_integer(json_object_get(*out, "current"))) {
		json_decref(*out);
		*out = NULL;
		return mesh_err_set(MESH_EBROKER, "%s: damaged record in %s",
		                    target, MESH_DATA_KEYS_BUCKET);
	}
	return MESH_OK;
}

static json_t *
b64_json(const uint8_t *bin, size_t len)
{
	char *text = mesh_base64(bin, len);
	json_t *j = text != NULL ? json_string(text) : NULL;

	free(text);
	return j;
}

/* The current key's readers, "A,B" (admin excluded), into out. */
static void
current_readers(json_t *rec, char *out, size_t size)
{
	json_t *keys = json_object_get(rec, "keys"), *k, *sealed;
	json_int_t cur = json_integer_value(json_object_get(rec, "current"));
	const char *name;
	json_t *v;
	size_t i, len = 0;

	out[0] = '\0';
	json_array_foreach(keys, i, k)
	{
		if (json_integer_value(json_object_get(k, "id")) != cur) {
			continue;
		}
		sealed = json_object_get(k, "sealed");
		json_object_foreach(sealed, name, v)
		{
			(void)v;
			if (json_is_true(json_object_get(k, "admin")) &&
			    strcmp(name, "admin") == 0) {
				continue;
			}
			len += (size_t)snprintf(out + len,
			                        len < size ? size - len : 0,
			                        "%s%s", len ? "," : "", name);
		}
	}
}

/* A new key entry: id, sealed to readers and to admin when recorded. */
static mesh_err
key_entry(struct mesh_conn *c, const char *target, const char *readers,
          json_int_t id, json_t **out)
{
	char names[MESH_READERS_MAX + 1][MESH_IDENTITY_NAME_MAX + 1];
	const char *ptrs[MESH_READERS_MAX + 1];
	char *got[MESH_READERS_MAX + 1] = {0};
	uint8_t sealed[MESH_READERS_MAX + 1][SEALED_LEN];
	uint8_t key[KEY_LEN];
	struct mesh_key_record admin;
	size_t n, count = 0;
	bool add_admin = false;
	json_t *k = NULL, *s = NULL;
	mesh_err err;

	if ((err = mesh_readers_parse(target, readers, names, &n)) !=
	    MESH_OK) {
		return err;
	}
	for (size_t i = 0; i < n; i++) {
		ptrs[i] = names[i];
		add_admin = add_admin || strcmp(names[i], "admin") == 0;
	}
	add_admin = !add_admin && mesh_keys_get(c, "admin", &admin) == MESH_OK;
	if (add_admin) {
		ptrs[n++] = "admin";
	}
	crypto_aead_xchacha20poly1305_ietf_keygen(key);
	err = mesh__datakey_wrap(c, target, NULL, ptrs, n, key, got, sealed,
	                         &count);
	sodium_memzero(key, sizeof(key));
	if (err == MESH_OK) {
		k = json_pack("{s:I, s:I, s:b, s:o}", "id", id, "created_ms",
		              (json_int_t)mesh_wall_ms(), "admin", add_admin,
		              "sealed", s = json_object());
		for (size_t i = 0; k != NULL && i < count; i++) {
			json_object_set_new(s, got[i],
			                    b64_json(sealed[i], SEALED_LEN));
		}
		if (k == NULL) {
			err = mesh_err_set(MESH_ENOMEM, "%s", target);
		}
	}
	for (size_t i = 0; i < count; i++) {
		free(got[i]);
	}
	*out = k;
	return err;
}

mesh_err
mesh_datakey_rotate(struct mesh_conn *c, const char *target,
                    const char *readers, uint32_t *id)
{
	char key[TARGET_MAX];
	kvStore *kv = NULL;
	mesh_err err;

	if ((err = target_key(target, key, sizeof(key))) != MESH_OK ||
	    (err = mesh_readers_check(c, target, readers)) != MESH_OK ||
	    (err = bucket(c, true, &kv)) != MESH_OK) {
		return err;
	}
	for (int i = 0; i < PUT_RETRIES; i++) {
		json_t *rec = NULL, *entry = NULL, *keys;
		uint64_t rev = 0;
		json_int_t next = 1;
		char *text;
		natsStatus st;
		if ((err = record_get(kv, target, key, &rec, &rev)) !=
		    MESH_OK) {
			break;
		}
		if (rec == NULL) {
			rec = json_pack("{s:s, s:I, s:[]}", "target", target,
			                "current", (json_int_t)0, "keys");
		}
		keys = json_object_get(rec, "keys");
		next = json_integer_value(json_object_get(rec, "current")) + 1;
		for (size_t j = 0; j < json_array_size(keys); j++) {
			json_int_t kid = json_integer_value(json_object_get(
			        json_array_get(keys, j), "id"));
			next = kid >= next ? kid + 1 : next;
		}
		if ((err = key_entry(c, target, readers, next, &entry)) !=
		    MESH_OK) {
			json_decref(rec);
			break;
		}
		json_array_append_new(keys, entry);
		while (json_array_size(keys) > MESH_DATA_KEYS_MAX) {
			json_array_remove(keys, 0);
		}
		json_object_set_new(rec, "current", json_integer(next));
		text = json_dumps(rec, JSON_COMPACT);
		json_decref(rec);
		if (text == NULL) {
			err = mesh_err_set(MESH_ENOMEM, "%s", target);
			break;
		}
		st = rev != 0 ? kvStore_Update(NULL, kv, key, text,
		                               (int)strlen(text), rev)
		              : kvStore_Create(NULL, kv, key, text,
		                               (int)strlen(text));
		free(text);
		if (st == NATS_OK) {
			if (id != NULL) {
				*id = (uint32_t)next;
			}
			err = MESH_OK;
			break;
		}
		err = mesh_err_set(MESH_ESTALE,
		                   "%s: data keys changed by others while "
		                   "storing, %d times",
		                   target, PUT_RETRIES);
	}
	kvStore_Destroy(kv);
	return err;
}

mesh_err
mesh_datakey_ids(struct mesh_conn *c, const char *target, uint32_t *ids,
                 size_t max, size_t *n, uint32_t *current, char *readers,
                 size_t size)
{
	char key[TARGET_MAX];
	kvStore *kv = NULL;
	json_t *rec = NULL, *k;
	uint64_t rev;
	size_t i;
	mesh_err err;

	*n = 0;
	if ((err = target_key(target, key, sizeof(key))) != MESH_OK) {
		return err;
	}
	err = bucket(c, false, &kv);
	if (err == MESH_OK) {
		err = record_get(kv, target, key, &rec, &rev);
	}
	kvStore_Destroy(kv);
	if (err == MESH_OK && rec == NULL) {
		err = MESH_ENOTFOUND;
	}
	if (err == MESH_ENOTFOUND) {
		return mesh_err_set(MESH_ENOTFOUND, "%s: no data key", target);
	}
	if (err != MESH_OK) {
		return err;
	}
	json_array_foreach(json_object_get(rec, "keys"), i, k)
	{
		if (*n < max) {
			ids[(*n)++] = (uint32_t)json_integer_value(
			        json_object_get(k, "id"));
		}
	}
	if (current != NULL) {
		*current = (uint32_t)json_integer_value(
		        json_object_get(rec, "current"));
	}
	if (readers != NULL && size > 0) {
		current_readers(rec, readers, size);
	}
	json_decref(rec);
	return MESH_OK;
}

mesh_err
mesh_datakey_ensure(struct mesh_conn *c, const char *target,
                    const char *readers)
{
	char names[MESH_READERS_MAX][MESH_IDENTITY_NAME_MAX + 1];
	char now[MESH_READERS_TEXT_MAX + 1], want[MESH_READERS_TEXT_MAX + 1];
	char have[MESH_READERS_MAX][MESH_IDENTITY_NAME_MAX + 1];
	size_t n, nh, nids;
	uint32_t ids[1];
	mesh_err err;

	err = mesh_datakey_ids(c, target, ids, 1, &nids, NULL, now,
	                       sizeof(now));
	if (err == MESH_ENOTFOUND) {
		return mesh_datakey_rotate(c, target, readers, NULL);
	}
	if (err != MESH_OK) {
		return err;
	}
	snprintf(want, sizeof(want), "%s", readers ? readers : "");
	if ((err = mesh_readers_parse(target, want, names, &n)) != MESH_OK ||
	    (err = mesh_readers_parse(target, now, have, &nh)) != MESH_OK) {
		return err;
	}
	bool same = n == nh;
	for (size_t i = 0; same && i < n; i++) {
		bool found = false;
		for (size_t j = 0; j < nh; j++) {
			found = found || strcmp(names[i], have[j]) == 0;
		}
		same = found;
	}
	return same ? MESH_OK : mesh_datakey_rotate(c, target, readers, NULL);
}

mesh_err
mesh_datakey_forget(struct mesh_conn *c, const char *target)
{
	char key[TARGET_MAX];
	kvStore *kv = NULL;
	natsStatus st;
	mesh_err err;

	if ((err = target_key(target, key, sizeof(key))) != MESH_OK) {
		return err;
	}
	err = bucket(c, false, &kv);
	if (err == MESH_ENOTFOUND) {
		return MESH_OK;
	}
	if (err != MESH_OK) {
		return err;
	}
	st = kvStore_Purge(kv, key, NULL);
	kvStore_Destroy(kv);
	return st == NATS_OK || st == NATS_NOT_FOUND
	               ? MESH_OK
	               : mesh_err_nats(st, 0, "%s: data keys", target);
}

/* ---- targets that encrypt ---------------------------------------------- */

mesh_err
mesh__encrypt_check(struct mesh_conn *c, const char *kind, const char *name,
                    bool encrypt, const char *readers)
{
	char what[TARGET_MAX];

	snprintf(what, sizeof(what), "%s '%s'", kind, name);
	if (!encrypt) {
		return readers[0] == '\0'
		               ? MESH_OK
		               : mesh_err_set(MESH_EINVAL,
		                              "%s: Readers is for encrypted "
		                              "%ss (--encrypt)",
		                              what, kind);
	}
	return mesh_readers_check(c, what, readers);
}

mesh_err
mesh__encrypt_keys(struct mesh_conn *c, const char *kind, const char *name,
                   bool encrypt, const char *readers)
{
	char target[TARGET_MAX];

	if (!encrypt) {
		return MESH_OK;
	}
	snprintf(target, sizeof(target), "%s:%s", kind, name);
	return mesh_datakey_ensure(c, target, readers);
}

mesh_err
mesh__seal_for_send(const char *what, const char *target, bool encrypt,
                    struct mesh_keyring *kr, const struct mesh_event *ev,
                    struct mesh_event **out)
{
	struct mesh_ext_value v;
	struct mesh_event *copy = NULL;
	mesh_err err;

	*out = NULL;
	if (!encrypt || mesh_event_sealed(ev) ||
	    mesh_event_data(ev, NULL, NULL, NULL) == MESH_DATA_NONE) {
		return MESH_OK;
	}
	if (kr == NULL) {
		return mesh_err_set(MESH_EINVAL,
		                    "%s is encrypted: seal the event's data "
		                    "first (mesh_keyring_seal; meshctl: --as "
		                    "NAME --seed FILE, a reader or admin)",
		                    what);
	}
	/* Sealing changes what a signature covers: seal, then sign. */
	if (mesh_event_ext_get(ev, MESH_SIG_EXT, &v) == MESH_OK) {
		return mesh_err_set(MESH_EINVAL,
		                    "%s is encrypted: the event is signed but "
		                    "not sealed (seal, then sign)",
		                    what);
	}
	if ((err = mesh_event_dup(ev, &copy)) != MESH_OK ||
	    (err = mesh_keyring_seal(kr, target, copy)) != MESH_OK) {
		mesh_event_free(copy);
		return err;
	}
	*out = copy;
	return MESH_OK;
}

mesh_err
mesh_target_encrypted(struct mesh_conn *c, const char *target, bool *encrypt)
{
	char key[TARGET_MAX];
	mesh_err err;

	if ((err = target_key(target, key, sizeof(key))) != MESH_OK) {
		return err;
	}
	if (strncmp(target, "topic:", 6) == 0) {
		struct mesh_topic_attrs ta;
		err = mesh__topic_attrs_load(c, target + 6, &ta);
		*encrypt = err == MESH_OK && ta.encrypt;
	} else {
		struct mesh_queue_attrs qa;
		err = mesh__queue_attrs_load(c, target + 6, &qa);
		*encrypt = err == MESH_OK && qa.encrypt;
	}
	return err;
}

/* ---- the keyring ------------------------------------------------------- */

struct ring_key {
	uint32_t id;
	uint8_t *key; /* sodium_malloc'd KEY_LEN; NULL: not ours */
};

struct ring_target {
	char target[TARGET_MAX];
	uint32_t current;
	int64_t read_ms; /* mono */
	struct ring_key *keys;
	size_t n;
	struct ring_target *next;
};

struct mesh_keyring {
	struct mesh_conn *c;
	const struct mesh_identity *id;
	pthread_mutex_t mu;
	struct ring_target *targets;
};

mesh_err
mesh_keyring_new(struct mesh_conn *c, const struct mesh_identity *id,
                 struct mesh_keyring **out)
{
	struct mesh_keyring *kr;

	if (sodium_init() < 0) {
		return mesh_err_set(MESH_EINTERNAL, "libsodium did not start");
	}
	if ((kr = calloc(1, sizeof(*kr))) == NULL) {
		return mesh_err_set(MESH_ENOMEM, "keyring");
	}
	kr->c = c;
	kr->id = id;
	pthread_mutex_init(&kr->mu, NULL);
	*out = kr;
	return MESH_OK;
}

static void
target_clear(struct ring_target *t)
{
	for (size_t i = 0; i < t->n; i++) {
		sodium_free(t->keys[i].key);
	}
	free(t->keys);
	t->keys = NULL;
	t->n = 0;
}

void
mesh_keyring_free(struct mesh_keyring *kr)
{
	if (kr == NULL) {
		return;
	}
	while (kr->targets != NULL) {
		struct ring_target *t = kr->targets;
		kr->targets = t->next;
		target_clear(t);
		free(t);
	}
	pthread_mutex_destroy(&kr->mu);
	free(kr);
}

/* Read t's record again and open what is sealed to us. Under kr->mu. */
static mesh_err
target_read(struct mesh_keyring *kr, struct ring_target *t)
{
	char key[TARGET_MAX];
	kvStore *kv = NULL;
	json_t *rec = NULL, *k;
	struct ring_key *keys;
	uint64_t rev;
	size_t i, n = 0;
	mesh_err err;

	if ((err = target_key(t->target, key, sizeof(key))) != MESH_OK) {
		return err;
	}
	err = bucket(kr->c, false, &kv);
	if (err == MESH_OK) {
		err = record_get(kv, t->target, key, &rec, &rev);
	}
	kvStore_Destroy(kv);
	if (err == MESH_OK && rec == NULL) {
		err = MESH_ENOTFOUND;
	}
	if (err == MESH_ENOTFOUND) {
		return mesh_err_set(MESH_ENOTFOUND, "%s: no data key",
		                    t->target);
	}
	if (err != MESH_OK) {
		return err;
	}
	k = json_object_get(rec, "keys");
	if ((keys = calloc(json_array_size(k) + 1, sizeof(*keys))) == NULL) {
		json_decref(rec);
		return mesh_err_set(MESH_ENOMEM, "%s", t->target);
	}
	json_array_foreach(json_object_get(rec, "keys"), i, k)
	{
		const char *b64 =
		        kr->id != NULL ? json_string_value(json_object_get(
		                                 json_object_get(k, "sealed"),
		                                 mesh_identity_name(kr->id)))
		                       : NULL;
		uint8_t sealed[SEALED_LEN];
		size_t len = 0;
		keys[n].id =
		        (uint32_t)json_integer_value(json_object_get(k, "id"));
		if (b64 != NULL &&
		    sodium_base642bin(sealed, sizeof(sealed), b64, strlen(b64),
		                      NULL, &len, NULL,
		                      sodium_base64_VARIANT_ORIGINAL) == 0 &&
		    len == SEALED_LEN &&
		    (keys[n].key = sodium_malloc(KEY_LEN)) != NULL &&
		    mesh_identity_unseal(kr->id, sealed, SEALED_LEN,
		                         keys[n].key) != MESH_OK) {
			sodium_free(keys[n].key);
			keys[n].key = NULL;
		}
		n++;
	}
	target_clear(t);
	t->keys = keys;
	t->n = n;
	t->current =
	        (uint32_t)json_integer_value(json_object_get(rec, "current"));
	t->read_ms = mesh_mono_ms();
	json_decref(rec);
	return MESH_OK;
}

/* target's key id (0: current) into key, under kr->mu. */
static mesh_err
ring_key(struct mesh_keyring *kr, const char *target, uint32_t id,
         uint8_t key[KEY_LEN], uint32_t *got, char *reason, size_t size)
{
	struct ring_target *t;
	struct ring_key *k = NULL;
	mesh_err err = MESH_OK;
	const char *who = kr->id ? mesh_identity_name(kr->id) : NULL;

	if (who == NULL) {
		snprintf(reason, size,
		         "sealed: no identity to open %s's data keys "
		         "(MESH_IDENTITY)",
		         target);
		return mesh_err_set(MESH_EAUTH, "%s", reason);
	}
	pthread_mutex_lock(&kr->mu);
	for (t = kr->targets; t != NULL; t = t->next) {
		if (strcmp(t->target, target) == 0) {
			break;
		}
	}
	if (t == NULL && (t = calloc(1, sizeof(*t))) != NULL) {
		snprintf(t->target, sizeof(t->target), "%s", target);
		t->next = kr->targets;
		kr->targets = t;
	}
	if (t == NULL) {
		pthread_mutex_unlock(&kr->mu);
		return mesh_err_set(MESH_ENOMEM, "keyring");
	}
	for (int pass = 0; pass < 2 && k == NULL; pass++) {
		bool stale = t->read_ms == 0 ||
		             (id == 0 && mesh_mono_ms() - t->read_ms >=
		                                 MESH_KEYRING_REFRESH_MS);
		uint32_t want = id;
		if ((pass == 0 && stale) || pass == 1) {
			if ((err = target_read(kr, t)) != MESH_OK) {
				snprintf(reason, size, "sealed: %s",
				         mesh_errdetail());
				break;
			}
		}
		want = id != 0 ? id : t->current;
		for (size_t i = 0; i < t->n; i++) {
			if (t->keys[i].id == want) {
				k = &t->keys[i];
			}
		}
		if (k == NULL && pass == 1) {
			snprintf(reason, size, "sealed: %s has no key id %u",
			         target, (unsigned)want);
			err = mesh_err_set(MESH_ENOTFOUND, "%s", reason);
		} else if (k != NULL && k->key == NULL) {
			snprintf(reason, size,
			         "sealed: '%s' is not a reader of %s (key id "
			         "%u)",
			         who, target, (unsigned)want);
			err = mesh_err_set(MESH_EAUTH, "%s", reason);
		} else if (k != NULL) {
			memcpy(key, k->key, KEY_LEN);
			*got = k->id;
		}
	}
	pthread_mutex_unlock(&kr->mu);
	return err;
}

static void
put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t
get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

/* The associated data: AD_PREFIX and meshsealed's value. */
static size_t
ad_of(const char *sealed, uint8_t *ad, size_t size)
{
	return (size_t)snprintf((char *)ad, size, "%s%c%s", AD_PREFIX, 0,
	                        sealed);
}

bool
mesh_event_sealed(const struct mesh_event *ev)
{
	struct mesh_ext_value v;

	return mesh_event_ext_get(ev, MESH_SEAL_EXT, &v) == MESH_OK;
}

mesh_err
mesh_keyring_seal(struct mesh_keyring *kr, const char *target,
                  struct mesh_event *ev)
{
	const void *data;
	const char *type_url = NULL;
	size_t len, url_len = 0, plen;
	mesh_data_kind kind = mesh_event_data(ev, &data, &len, &type_url);
	uint8_t key[KEY_LEN], nonce[NONCE_LEN], ad[TARGET_MAX + 32];
	uint8_t *plain = NULL, *ct = NULL;
	char sealed[TARGET_MAX + 16], reason[256];
	uint32_t id = 0;
	struct mesh_ext_value v;
	mesh_err err;

	if (kind == MESH_DATA_NONE || mesh_event_sealed(ev)) {
		return MESH_OK;
	}
	if (kind == MESH_DATA_PROTO) {
		const char *pre = MESH_EVENT_TYPE_URL_PREFIX;
		if (type_url == NULL || strncmp(type_url, pre, strlen(pre))) {
			return mesh_err_set(MESH_EINVAL,
			                    "%s: type URL '%.80s' is not "
			                    "%s...",
			                    target, type_url ? type_url : "",
			                    pre);
		}
		url_len = strlen(type_url);
	}
	if ((err = ring_key(kr, target, 0, key, &id, reason,
	                    sizeof(reason))) != MESH_OK) {
		return err;
	}
	plen = 1 + 4 + url_len + len;
	if ((plain = malloc(plen)) == NULL ||
	    (ct = malloc(plen + TAG_LEN)) == NULL) {
		err = mesh_err_set(MESH_ENOMEM, "%s: sealing", target);
		goto out;
	}
	plain[0] = (uint8_t)kind;
	put_u32(plain + 1, (uint32_t)url_len);
	memcpy(plain + 5, type_url ? type_url : "", url_len);
	memcpy(plain + 5 + url_len, data, len);
	snprintf(sealed, sizeof(sealed), "%s/%u", target, (unsigned)id);
	randombytes_buf(nonce, sizeof(nonce));
	crypto_aead_xchacha20poly1305_ietf_encrypt(
	        ct, NULL, plain, plen, ad, ad_of(sealed, ad, sizeof(ad)), NULL,
	        nonce, key);
	sodium_memzero(plain, plen);
	v = (struct mesh_ext_value){.type = MESH_EXT_STRING,
	                            .string = sealed,
	                            .len = strlen(sealed)};
	if ((err = mesh_event_ext_set(ev, MESH_SEAL_EXT, &v)) != MESH_OK) {
		goto out;
	}
	v = (struct mesh_ext_value){
	        .type = MESH_EXT_BYTES, .bytes = nonce, .len = sizeof(nonce)};
	if ((err = mesh_event_ext_set(ev, MESH_SEAL_NONCE_EXT, &v)) !=
	            MESH_OK ||
	    (err = mesh_event_set_binary(ev, ct, plen + TAG_LEN)) != MESH_OK) {
		mesh_event_ext_remove(ev, MESH_SEAL_EXT);
		mesh_event_ext_remove(ev, MESH_SEAL_NONCE_EXT);
	}
out:
	sodium_memzero(key, sizeof(key));
	free(plain);
	free(ct);
	return err;
}

static mesh_err
malformed(char *reason, size_t size, const char *what)
{
	snprintf(reason, size, "sealed: malformed: %s", what);
	return mesh_err_set(MESH_EPARSE, "%s", reason);
}

mesh_err
mesh_keyring_open(struct mesh_keyring *kr, struct mesh_event *ev, char *reason,
                  size_t size)
{
	char target[TARGET_MAX], sealed[TARGET_MAX + 16], spare[256];
	uint8_t key[KEY_LEN], ad[TARGET_MAX + 32], *plain = NULL;
	struct mesh_ext_value v, nv;
	const void *data;
	const char *slash;
	unsigned long long plen = 0;
	size_t len;
	uint32_t id = 0, got = 0;
	char *end = NULL;
	mesh_err err;

	if (reason == NULL || size == 0) {
		reason = spare;
		size = sizeof(spare);
	}
	reason[0] = '\0';
	if (mesh_event_ext_get(ev, MESH_SEAL_EXT, &v) != MESH_OK) {
		return MESH_OK;
	}
	if (v.type != MESH_EXT_STRING || v.len >= sizeof(sealed) ||
	    (slash = memchr(v.string, '/', v.len)) == NULL) {
		return malformed(reason, size,
		                 MESH_SEAL_EXT " is not TARGET/ID");
	}
	memcpy(sealed, v.string, v.len);
	sealed[v.len] = '\0';
	snprintf(target, sizeof(target), "%.*s", (int)(slash - v.string),
	         v.string);
	unsigned long lid = strtoul(slash + 1, &end, 10);
	if (end == slash + 1 || *end != '\0' || lid == 0 || lid > UINT32_MAX) {
		return malformed(reason, size,
		                 MESH_SEAL_EXT " is not TARGET/ID");
	}
	id = (uint32_t)lid;
	if (mesh_event_ext_get(ev, MESH_SEAL_NONCE_EXT, &nv) != MESH_OK ||
	    nv.type != MESH_EXT_BYTES || nv.len != NONCE_LEN) {
		return malformed(reason, size,
		                 "no 24-byte " MESH_SEAL_NONCE_EXT);
	}
	if (mesh_event_data(ev, &data, &len, NULL) != MESH_DATA_BINARY ||
	    len < TAG_LEN + 5) {
		return malformed(reason, size, "its data is not ciphertext");
	}
	if ((err = ring_key(kr, target, id, key, &got, reason, size)) !=
	    MESH_OK) {
		return err;
	}
	if ((plain = malloc(len)) == NULL) {
		sodium_memzero(key, sizeof(key));
		return mesh_err_set(MESH_ENOMEM, "opening");
	}
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(
	            plain, &plen, NULL, data, len, ad,
	            ad_of(sealed, ad, sizeof(ad)), nv.bytes, key) != 0) {
		sodium_memzero(key, sizeof(key));
		free(plain);
		snprintf(reason, size,
		         "sealed: does not open with %s's key id %u (altered, "
		         "or sealed with another key)",
		         target, (unsigned)id);
		return mesh_err_set(MESH_EPARSE, "%s", reason);
	}
	sodium_memzero(key, sizeof(key));
	uint32_t url_len = get_u32(plain + 1);
	uint8_t kind = plain[0];
	if (plen < 5 || url_len > plen - 5 ||
	    (kind == MESH_DATA_PROTO &&
	     url_len <= strlen(MESH_EVENT_TYPE_URL_PREFIX))) {
		free(plain);
		return malformed(reason, size, "its plaintext");
	}
	const uint8_t *body = plain + 5 + url_len;
	size_t blen = (size_t)plen - 5 - url_len;
	char url[1024];
	switch (kind) {
	case MESH_DATA_BINARY:
		err = mesh_event_set_binary(ev, body, blen);
		break;
	case MESH_DATA_TEXT:
		err = mesh_event_set_text(ev, (const char *)body, blen);
		break;
	case MESH_DATA_PROTO: {
		const char *dct = mesh_event_datacontenttype(ev);
		char *keep = dct ? strdup(dct) : NULL;
		size_t pre = strlen(MESH_EVENT_TYPE_URL_PREFIX);
		snprintf(url, sizeof(url), "%.*s", (int)(url_len - pre),
		         (const char *)plain + 5 + pre);
		err = mesh_event_set_proto(ev, url, body, blen);
		if (err == MESH_OK && keep != NULL) {
			err = mesh_event_set_datacontenttype(ev, keep);
		}
		free(keep);
		break;
	}
	default:
		err = malformed(reason, size, "its data kind");
	}
	sodium_memzero(plain, (size_t)plen);
	free(plain);
	if (err == MESH_OK) {
		mesh_event_ext_remove(ev, MESH_SEAL_EXT);
		mesh_event_ext_remove(ev, MESH_SEAL_NONCE_EXT);
	}
	return err;
}
