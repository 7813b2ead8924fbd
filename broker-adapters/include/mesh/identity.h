/* Identities: who a program of the mesh is (a service, a daemon, the
 * admin, a producer of another team), to the broker and to each other.
 *
 * An identity is a name (1-64 of [A-Za-z0-9_-]) and an NKey user seed
 * ("SU...", 58 characters: Ed25519), kept in a file of its own, mode 0600
 * (meshctl auth init writes var/auth/NAME.nk). From the seed come:
 *   - its public key, "U..." (56 characters): its NATS user in
 *     nats-server's authorization block (by NKey), and its key id in the
 *     signatures of the events it signs;
 *   - an Ed25519 key pair: signed events;
 *   - an X25519 key pair (libsodium's crypto_sign_ed25519_*_to_curve25519):
 *     what sealed payloads' data keys and secure parameters are wrapped to
 *     (crypto_box_seal).
 *
 * The mesh's directory of public keys is the key-value bucket MESH_KEYS
 * (file storage, the mesh's replicas, made when missing): key NAME ->
 * {"name", "public" ("U..."), "curve" (X25519 public key, base64),
 * "created_ms"}. Verifiers and sealers read it; only the admin writes it.
 *
 * Thread safety: an identity is read-only once loaded: any thread may use
 * it. Secret bytes are wiped (sodium_memzero) when it is freed.
 */
#ifndef MESH_IDENTITY_H
#define MESH_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mesh/conn.h"
#include "mesh/err.h"

#define MESH_KEYS_BUCKET         "MESH_KEYS"
#define MESH_IDENTITY_NAME_MAX   64
#define MESH_IDENTITY_PUBLIC_LEN 56 /* "U" + base32 */
#define MESH_IDENTITY_SEED_LEN   58 /* "SU" + base32 */
#define MESH_IDENTITY_SIG_LEN    64 /* Ed25519 */
#define MESH_IDENTITY_CURVE_LEN  32 /* X25519 public key */
#define MESH_SEAL_OVERHEAD       48 /* crypto_box_SEALBYTES */

struct mesh_identity;

/* Make a new identity: a random seed written to path (created with
 * O_EXCL, mode 0600: an existing file is MESH_EEXIST, never replaced).
 * Errors: MESH_EINVAL (name), MESH_EEXIST, MESH_EIO (the file, named),
 * MESH_ENOMEM. */
mesh_err mesh_identity_generate(const char *name, const char *path,
                                struct mesh_identity **out);

/* Load name's identity from the seed file at path (one line: the seed;
 * surrounding white space ignored). A file readable by group or others is
 * refused (MESH_EINVAL: "... is readable by others (mode 0644): chmod
 * 600"), as ssh refuses such keys. Errors: MESH_EINVAL (name, mode, not a
 * user seed), MESH_ENOTFOUND (no file), MESH_EIO, MESH_ENOMEM. */
mesh_err mesh_identity_load(const char *name, const char *path,
                            struct mesh_identity **out);

/* NULL is fine. */
void mesh_identity_free(struct mesh_identity *id);

const char *mesh_identity_name(const struct mesh_identity *id);
/* "U..." (borrowed). */
const char *mesh_identity_public(const struct mesh_identity *id);
/* Its X25519 public key. */
void mesh_identity_curve(const struct mesh_identity *id,
                         uint8_t out[MESH_IDENTITY_CURVE_LEN]);

/* Ed25519 signature of msg (detached). */
void mesh_identity_sign(const struct mesh_identity *id, const void *msg,
                        size_t len, uint8_t sig[MESH_IDENTITY_SIG_LEN]);

/* Whether sig is public's ("U...") signature of msg; false as well when
 * public is not a well-formed user public key. */
bool mesh_identity_verify(const char *public_key, const void *msg, size_t len,
                          const uint8_t sig[MESH_IDENTITY_SIG_LEN]);

/* Seal msg to an X25519 public key (crypto_box_seal: anonymous sender);
 * out has room for len + MESH_SEAL_OVERHEAD bytes. */
void mesh_seal(const uint8_t curve[MESH_IDENTITY_CURVE_LEN], const void *msg,
               size_t len, uint8_t *out);

/* Open what was sealed to id; out has room for len - MESH_SEAL_OVERHEAD
 * bytes. Errors: MESH_EINVAL (too short), MESH_EPARSE (not sealed to this
 * identity, or altered). */
mesh_err mesh_identity_unseal(const struct mesh_identity *id,
                              const uint8_t *sealed, size_t len, uint8_t *out);

/* ---- the directory: MESH_KEYS ------------------------------------------ */

struct mesh_key_record {
	char name[MESH_IDENTITY_NAME_MAX + 1];
	char public_key[MESH_IDENTITY_PUBLIC_LEN + 1]; /* "U..." */
	uint8_t curve[MESH_IDENTITY_CURVE_LEN];
	int64_t created_ms;
	uint64_t revision;
};

/* The record of an identity (for mesh_keys_put). */
void mesh_identity_record(const struct mesh_identity *id,
                          struct mesh_key_record *out);

/* Record a public key under its name. The same key again is fine; another
 * key under a name taken is MESH_EEXIST unless replace (a rotation: the
 * old key stops verifying at once). Errors: MESH_EINVAL (name, a public
 * key that is not a user key, a curve key not derived from it),
 * MESH_EEXIST, the connection's. */
mesh_err mesh_keys_put(struct mesh_conn *c, const struct mesh_key_record *k,
                       bool replace);

/* Errors: MESH_EINVAL (name), MESH_ENOTFOUND, MESH_EBROKER (a damaged
 * record), the connection's. */
mesh_err mesh_keys_get(struct mesh_conn *c, const char *name,
                       struct mesh_key_record *out);

/* Every record, by name; free(*out). Damaged records are skipped. */
mesh_err mesh_keys_list(struct mesh_conn *c, struct mesh_key_record **out,
                        size_t *n);

/* Errors: MESH_EINVAL, MESH_ENOTFOUND, the connection's. */
mesh_err mesh_keys_delete(struct mesh_conn *c, const char *name);

#endif
