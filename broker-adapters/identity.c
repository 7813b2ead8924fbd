/* identity.c: identities and the directory of public keys (see
 * mesh/identity.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "internal.h"
#include "mesh/clock.h"
#include "mesh/identity.h"
#include "mesh/wire.h"

#define MAX_RECORD 1024

struct mesh_identity {
	char name[MESH_IDENTITY_NAME_MAX + 1];
	char public_key[MESH_IDENTITY_PUBLIC_LEN + 1];
	uint8_t sign_sk[crypto_sign_SECRETKEYBYTES];
	uint8_t sign_pk[crypto_sign_PUBLICKEYBYTES];
	uint8_t curve_sk[crypto_box_SECRETKEYBYTES];
	uint8_t curve_pk[crypto_box_PUBLICKEYBYTES];
};

static mesh_err
name_check(const char *name)
{
	return mesh_name_check("identity", name, MESH_IDENTITY_NAME_MAX, NULL);
}

/* The identity of 32 raw seed bytes. */
static mesh_err
from_raw(const char *name, const unsigned char raw[32],
         struct mesh_identity **out)
{
	struct mesh_identity *id;

	if (sodium_init() < 0) {
		return mesh_err_set(MESH_EINTERNAL, "libsodium did not start");
	}
	if ((id = sodium_malloc(sizeof(*id))) == NULL) {
		return mesh_err_set(MESH_ENOMEM, "identity '%s'", name);
	}
	memset(id, 0, sizeof(*id));
	snprintf(id->name, sizeof(id->name), "%s", name);
	crypto_sign_seed_keypair(id->sign_pk, id->sign_sk, raw);
	if (crypto_sign_ed25519_sk_to_curve25519(id->curve_sk, id->sign_sk) !=
	            0 ||
	    crypto_sign_ed25519_pk_to_curve25519(id->curve_pk, id->sign_pk) !=
	            0) {
		sodium_free(id);
		return mesh_err_set(MESH_EINTERNAL,
		                    "identity '%s': no X25519 key", name);
	}
	mesh__nkey_public_encode(id->sign_pk, id->public_key);
	*out = id;
	return MESH_OK;
}

mesh_err
mesh_identity_generate(const char *name, const char *path,
                       struct mesh_identity **out)
{
	unsigned char raw[32];
	char seed[MESH__NKEY_SEED_LEN + 2];
	mesh_err err;
	int fd;

	if ((err = name_check(name)) != MESH_OK) {
		return err;
	}
	if (sodium_init() < 0) {
		return mesh_err_set(MESH_EINTERNAL, "libsodium did not start");
	}
	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) <
	    0) {
		return mesh_err_set(errno == EEXIST ? MESH_EEXIST : MESH_EIO,
		                    "identity '%s': %s: %s", name, path,
		                    errno == EEXIST ? "exists (never replaced)"
		                                    : strerror(errno));
	}
	randombytes_buf(raw, sizeof(raw));
	mesh__nkey_seed_encode(raw, seed);
	strcat(seed, "\n");
	if (write(fd, seed, strlen(seed)) != (ssize_t)strlen(seed) ||
	    fsync(fd) != 0) {
		err = mesh_err_set(MESH_EIO, "identity '%s': %s: %s", name,
		                   path, strerror(errno));
		close(fd);
		unlink(path);
	} else {
		close(fd);
		err = from_raw(name, raw, out);
	}
	sodium_memzero(raw, sizeof(raw));
	sodium_memzero(seed, sizeof(seed));
	return err;
}

mesh_err
mesh_identity_load(const char *name, const char *path,
                   struct mesh_identity **out)
{
	unsigned char raw[32];
	char buf[128], *seed = buf;
	struct stat st;
	mesh_err err;
	ssize_t n;
	int fd;

	if ((err = name_check(name)) != MESH_OK) {
		return err;
	}
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		return mesh_err_set(
		        errno == ENOENT ? MESH_ENOTFOUND : MESH_EIO,
		        "identity '%s': %s: %s", name, path, strerror(errno));
	}
	if (fstat(fd, &st) != 0 || (st.st_mode & 077) != 0) {
		close(fd);
		return mesh_err_set(MESH_EINVAL,
		                    "identity '%s': %s is readable by others "
		                    "(mode %04o): chmod 600",
		                    name, path,
		                    (unsigned)(st.st_mode & 07777));
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0) {
		return mesh_err_set(MESH_EIO, "identity '%s': %s: %s", name,
		                    path, strerror(errno));
	}
	buf[n] = '\0';
	while (*seed == ' ' || *seed == '\t' || *seed == '\n' ||
	       *seed == '\r') {
		seed++;
	}
	seed[strcspn(seed, " \t\r\n")] = '\0';
	err = mesh__nkey_seed_decode(seed, raw);
	sodium_memzero(buf, sizeof(buf));
	if (err != MESH_OK) {
		return mesh_err_set(MESH_EINVAL, "identity '%s': %s: %s", name,
		                    path, mesh_errdetail());
	}
	err = from_raw(name, raw, out);
	sodium_memzero(raw, sizeof(raw));
	return err;
}

void
mesh_identity_free(struct mesh_identity *id)
{
	if (id != NULL) {
		sodium_free(id); /* wipes */
	}
}

const char *
mesh_identity_name(const struct mesh_identity *id)
{
	return id->name;
}

const char *
mesh_identity_public(const struct mesh_identity *id)
{
	return id->public_key;
}

void
mesh_identity_curve(const struct mesh_identity *id,
                    uint8_t out[MESH_IDENTITY_CURVE_LEN])
{
	memcpy(out, id->curve_pk, MESH_IDENTITY_CURVE_LEN);
}

void
mesh_identity_sign(const struct mesh_identity *id, const void *msg, size_t len,
                   uint8_t sig[MESH_IDENTITY_SIG_LEN])
{
	crypto_sign_detached(sig, NULL, msg, len, id->sign_sk);
}

bool
mesh_identity_verify(const char *public_key, const void *msg, size_t len,
                     const uint8_t sig[MESH_IDENTITY_SIG_LEN])
{
	unsigned char pk[32];

	if (sodium_init() < 0 ||
	    mesh__nkey_public_decode(public_key, pk) != MESH_OK) {
		return false;
	}
	return crypto_sign_verify_detached(sig, msg, len, pk) == 0;
}

void
mesh_seal(const uint8_t curve[MESH_IDENTITY_CURVE_LEN], const void *msg,
          size_t len, uint8_t *out)
{
	if (sodium_init() >= 0) {
		crypto_box_seal(out, msg, len, curve);
	}
}

mesh_err
mesh_identity_unseal(const struct mesh_identity *id, const uint8_t *sealed,
                     size_t len, uint8_t *out)
{
	if (len < MESH_SEAL_OVERHEAD) {
		return mesh_err_set(MESH_EINVAL,
		                    "sealed data of %zu bytes: shorter than "
		                    "the %d of a seal",
		                    len, MESH_SEAL_OVERHEAD);
	}
	if (crypto_box_seal_open(out, sealed, len, id->curve_pk,
	                         id->curve_sk) != 0) {
		return mesh_err_set(MESH_EPARSE,
		                    "sealed data: not sealed to '%s', or "
		                    "altered",
		                    id->name);
	}
	return MESH_OK;
}

/* ---- the directory -------------------------------------------------------
 */

void
mesh_identity_record(const struct mesh_identity *id,
                     struct mesh_key_record *out)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->name, sizeof(out->name), "%s", id->name);
	memcpy(out->public_key, id->public_key, sizeof(out->public_key));
	memcpy(out->curve, id->curve_pk, sizeof(out->curve));
	out->created_ms = mesh_wall_ms();
}

/* The record's public and curve keys belong together. */
static mesh_err
record_check(const struct mesh_key_record *k)
{
	unsigned char pk[32], curve[32];
	mesh_err err;

	if ((err = name_check(k->name)) != MESH_OK ||
	    (err = mesh__nkey_public_decode(k->public_key, pk)) != MESH_OK) {
		return err;
	}
	if (crypto_sign_ed25519_pk_to_curve25519(curve, pk) != 0 ||
	    memcmp(curve, k->curve, sizeof(curve)) != 0) {
		return mesh_err_set(MESH_EINVAL,
		                    "key '%s': its X25519 key is not the one "
		                    "of %s",
		                    k->name, k->public_key);
	}
	return MESH_OK;
}

static char *
record_encode(const struct mesh_key_record *k)
{
	char curve[sodium_base64_ENCODED_LEN(32,
	                                     sodium_base64_VARIANT_ORIGINAL)];
	json_t *j;
	char *text;

	sodium_bin2base64(curve, sizeof(curve), k->curve, sizeof(k->curve),
	                  sodium_base64_VARIANT_ORIGINAL);
	j = json_pack("{s:s, s:s, s:s, s:I}", "name", k->name, "public",
	              k->public_key, "curve", curve, "created_ms",
	              (json_int_t)k->created_ms);
	text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	return text;
}

static mesh_err
record_decode(const char *name, const void *data, int len, uint64_t rev,
              struct mesh_key_record *out)
{
	json_t *j = json_loadb(data, len > 0 ? (size_t)len : 0, 0, NULL);
	const char *pub = json_string_value(json_object_get(j, "public")),
	           *curve = json_string_value(json_object_get(j, "curve"));
	size_t clen = 0;
	mesh_err err = MESH_OK;

	memset(out, 0, sizeof(*out));
	snprintf(out->name, sizeof(out->name), "%s", name);
	if (pub == NULL || curve == NULL ||
	    strlen(pub) != MESH_IDENTITY_PUBLIC_LEN ||
	    sodium_base642bin(out->curve, sizeof(out->curve), curve,
	                      strlen(curve), NULL, &clen, NULL,
	                      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    clen != sizeof(out->curve)) {
		err = mesh_err_set(MESH_EBROKER,
		                   "key '%s': its record in %s is damaged",
		                   name, MESH_KEYS_BUCKET);
	} else {
		memcpy(out->public_key, pub, MESH_IDENTITY_PUBLIC_LEN + 1);
		out->created_ms =
		        json_integer_value(json_object_get(j, "created_ms"));
		out->revision = rev;
	}
	json_decref(j);
	return err;
}

static mesh_err
bucket(struct mesh_conn *c, kvStore **kv)
{
	return mesh__kv_bucket(c, MESH_KEYS_BUCKET, MAX_RECORD, 0, true,
	                       "keys", kv);
}

static mesh_err
entry_get(kvStore *kv, const char *name, struct mesh_key_record *out)
{
	kvEntry *e = NULL;
	natsStatus st = kvStore_Get(&e, kv, name);
	mesh_err err;

	if (st == NATS_NOT_FOUND) {
		return mesh_err_set(MESH_ENOTFOUND, "key '%s': not in %s",
		                    name, MESH_KEYS_BUCKET);
	}
	if (st != NATS_OK) {
		return mesh_err_nats(st, 0, "key '%s'", name);
	}
	err = record_decode(name, kvEntry_Value(e), kvEntry_ValueLen(e),
	                    kvEntry_Revision(e), out);
	kvEntry_Destroy(e);
	return err;
}

mesh_err
mesh_keys_put(struct mesh_conn *c, const struct mesh_key_record *k,
              bool replace)
{
	struct mesh_key_record old;
	kvStore *kv = NULL;
	uint64_t rev = 0;
	char *text = NULL;
	natsStatus st;
	mesh_err err;

	if ((err = record_check(k)) != MESH_OK ||
	    (err = bucket(c, &kv)) != MESH_OK) {
		return err;
	}
	err = entry_get(kv, k->name, &old);
	if (err == MESH_OK && strcmp(old.public_key, k->public_key) == 0) {
		goto out; /* the same key again */
	}
	if (err == MESH_OK && !replace) {
		err = mesh_err_set(MESH_EEXIST,
		                   "key '%s': another key (%s) is recorded "
		                   "under this name (replace it to rotate)",
		                   k->name, old.public_key);
		goto out;
	}
	if (err != MESH_OK && err != MESH_ENOTFOUND && err != MESH_EBROKER) {
		goto out;
	}
	if ((text = record_encode(k)) == NULL) {
		err = mesh_err_set(MESH_ENOMEM, "key '%s'", k->name);
		goto out;
	}
	st = err == MESH_ENOTFOUND
	             ? kvStore_CreateString(&rev, kv, k->name, text)
	             : kvStore_PutString(&rev, kv, k->name, text);
	err = st == NATS_OK
	              ? MESH_OK
	              : mesh_err_nats(st, 0, "key '%s': recording", k->name);
out:
	free(text);
	kvStore_Destroy(kv);
	return err;
}

mesh_err
mesh_keys_get(struct mesh_conn *c, const char *name,
              struct mesh_key_record *out)
{
	kvStore *kv = NULL;
	mesh_err err;

	if ((err = name_check(name)) != MESH_OK ||
	    (err = bucket(c, &kv)) != MESH_OK) {
		return err;
	}
	err = entry_get(kv, name, out);
	kvStore_Destroy(kv);
	return err;
}

static int
record_cmp(const void *a, const void *b)
{
	return strcmp(((const struct mesh_key_record *)a)->name,
	              ((const struct mesh_key_record *)b)->name);
}

mesh_err
mesh_keys_list(struct mesh_conn *c, struct mesh_key_record **out, size_t *n)
{
	kvStore *kv = NULL;
	kvKeysList keys = {0};
	struct mesh_key_record *recs = NULL;
	size_t nk = 0, k = 0;
	mesh_err err;

	*out = NULL;
	*n = 0;
	if ((err = bucket(c, &kv)) != MESH_OK) {
		return err;
	}
	if ((err = mesh__records_keys(kv, &keys, &nk)) == MESH_OK && nk > 0 &&
	    (recs = calloc(nk, sizeof(*recs))) == NULL) {
		err = mesh_err_set(MESH_ENOMEM, "keys");
	}
	for (size_t i = 0; err == MESH_OK && i < nk; i++) {
		mesh_err e = entry_get(kv, keys.Keys[i], &recs[k]);
		if (e == MESH_OK) {
			k++;
		} else if (e != MESH_ENOTFOUND && e != MESH_EBROKER) {
			err = e;
		}
	}
	kvKeysList_Destroy(&keys);
	kvStore_Destroy(kv);
	if (err != MESH_OK) {
		free(recs);
		return err;
	}
	if (k > 0) {
		qsort(recs, k, sizeof(*recs), record_cmp);
	}
	*out = recs;
	*n = k;
	return MESH_OK;
}

mesh_err
mesh_keys_delete(struct mesh_conn *c, const char *name)
{
	struct mesh_key_record rec;
	kvStore *kv = NULL;
	natsStatus st;
	mesh_err err;

	if ((err = name_check(name)) != MESH_OK ||
	    (err = bucket(c, &kv)) != MESH_OK) {
		return err;
	}
	if ((err = entry_get(kv, name, &rec)) == MESH_OK ||
	    err == MESH_EBROKER) {
		st = kvStore_Delete(kv, name);
		err = st == NATS_OK ? MESH_OK
		                    : mesh_err_nats(st, 0, "key '%s'", name);
	}
	kvStore_Destroy(kv);
	return err;
}
