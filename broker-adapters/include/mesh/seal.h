/* Sealed payloads: a topic or a queue whose events' data only its readers
 * can read (its attributes Encrypt and Readers, mesh/topic.h and
 * mesh/queue.h).
 *
 * A target ("topic:NAME" or "queue:NAME") that encrypts has data keys
 * (32 random bytes, XChaCha20-Poly1305), numbered 1, 2, ... (the key id),
 * kept in the key-value bucket MESH_DATA_KEYS (file storage, the mesh's
 * replicas, made when missing): key "topic.NAME" / "queue.NAME" -> {
 * "target", "current" (the key id producers seal with), "keys": [{"id",
 * "created_ms", "sealed": {READER: base64 of the data key sealed to
 * READER's X25519 key (crypto_box_seal)}}]}. Each data key is sealed to
 * each reader named and to the identity "admin" when MESH_KEYS has it;
 * the broker never holds a clear data key. Rotation adds a key and makes
 * it current; old keys stay, so old messages still open.
 *
 * A sealed event: its data replaced by binary data, the XChaCha20-Poly1305
 * ciphertext of (u8 kind, u32 length and type URL, the data's bytes),
 * with the associated data "evmesh-seal-v1" and the value of meshsealed;
 * two extension attributes: meshsealed (a string, "topic:NAME/ID": the
 * target whose key id ID sealed it) and meshnonce (24 bytes). Everything
 * else stays clear: message attributes (filter policies see them),
 * subject, type, time, datacontenttype. An event without data is not
 * sealed (nothing to hide).
 *
 * Sign after sealing (mesh/sign.h): the signature then covers the
 * ciphertext, meshsealed and meshnonce, so mesh-router verifies without
 * any key and a reader verifies before it opens.
 */
#ifndef MESH_SEAL_H
#define MESH_SEAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mesh/conn.h"
#include "mesh/err.h"
#include "mesh/event.h"
#include "mesh/identity.h"

#define MESH_DATA_KEYS_BUCKET "MESH_DATA_KEYS"
#define MESH_READERS_MAX      8 /* names in a Readers list */
/* "A,B,...": the longest Readers text. */
#define MESH_READERS_TEXT_MAX (MESH_READERS_MAX * (MESH_IDENTITY_NAME_MAX + 1))
#define MESH_DATA_KEYS_MAX    64 /* key ids a target keeps */
#define MESH_SEAL_EXT         "meshsealed"
#define MESH_SEAL_NONCE_EXT   "meshnonce"
/* A sealed event's data is this much longer than its data. */
#define MESH_SEALED_OVERHEAD (1 + 4 + 16)

/* Split "A,B" into names (1-MESH_READERS_MAX identity names, no
 * repeats); "" is none. what names the owner in errors ("topic
 * 'orders'"). Errors: MESH_EINVAL naming the name at fault. */
mesh_err mesh_readers_parse(const char *what, const char *text,
                            char names[][MESH_IDENTITY_NAME_MAX + 1],
                            size_t *n);

/* mesh_readers_parse, and each name recorded in MESH_KEYS. Errors:
 * MESH_EINVAL, MESH_ENOTFOUND ("topic 'orders': Readers: reader 'bob' has
 * no key in MESH_KEYS"), the connection's. */
mesh_err mesh_readers_check(struct mesh_conn *c, const char *what,
                            const char *text);

/* ---- data keys: MESH_DATA_KEYS ------------------------------------------ */

/* Make a new data key for target ("topic:NAME" or "queue:NAME"), sealed
 * to readers ("A,B") and to "admin" when recorded, and make it current
 * (the first one's id is 1). *id (optional) gets its id. The oldest key
 * is dropped past MESH_DATA_KEYS_MAX. Errors: MESH_EINVAL (target,
 * readers), MESH_ENOTFOUND (a reader without a key in MESH_KEYS),
 * MESH_ESTALE (changed by others while storing, 3 times), the
 * connection's. */
mesh_err mesh_datakey_rotate(struct mesh_conn *c, const char *target,
                             const char *readers, uint32_t *id);

/* Ensure target has a data key sealed to exactly these readers: none yet,
 * or the current one for others, rotates. */
mesh_err mesh_datakey_ensure(struct mesh_conn *c, const char *target,
                             const char *readers);

/* What MESH_DATA_KEYS holds of target: its key ids (oldest first, n of
 * them, up to max) and the current one's readers, comma-separated.
 * Errors: MESH_ENOTFOUND (no key), MESH_EBROKER (a damaged record), the
 * connection's. */
mesh_err mesh_datakey_ids(struct mesh_conn *c, const char *target,
                          uint32_t *ids, size_t max, size_t *n,
                          uint32_t *current, char *readers, size_t size);

/* Forget target's keys (the target is deleted). Absent is fine. */
mesh_err mesh_datakey_forget(struct mesh_conn *c, const char *target);

/* Whether target ("topic:NAME" or "queue:NAME") encrypts, read from its
 * stream now (for producers that keep no open handle). Errors:
 * MESH_EINVAL, MESH_ENOTFOUND (no such topic or queue), the
 * connection's. */
mesh_err mesh_target_encrypted(struct mesh_conn *c, const char *target,
                               bool *encrypt);

/* ---- a keyring: an identity's opened data keys ------------------------- */

struct mesh_keyring;
#define MESH_KEYRING_REFRESH_MS 5000

/* A keyring opens data keys with id (borrowed: it must outlive the
 * keyring; NULL: it seals nothing and opens nothing, and says so). Keys
 * are read from MESH_DATA_KEYS when first needed, again every
 * MESH_KEYRING_REFRESH_MS for the current one (a rotation applies within
 * seconds), and at once for a key id it does not know; clear keys are kept
 * in guarded memory (sodium_malloc). Thread safety: any thread may seal
 * and open. Errors: MESH_ENOMEM. c must outlive the keyring. */
mesh_err mesh_keyring_new(struct mesh_conn *c, const struct mesh_identity *id,
                          struct mesh_keyring **out);
void mesh_keyring_free(struct mesh_keyring *kr);

/* Seal ev's data with target's current data key (see above). An event
 * without data, or sealed already, is left as it is. Errors: MESH_EAUTH
 * ("topic:orders: 'bob' is not a reader (key id 2)"; no identity),
 * MESH_ENOTFOUND (target has no data key), MESH_EINVAL (a type URL
 * without MESH_EVENT_TYPE_URL_PREFIX), MESH_ETOOBIG, MESH_ENOMEM, the
 * connection's. */
mesh_err mesh_keyring_seal(struct mesh_keyring *kr, const char *target,
                           struct mesh_event *ev);

/* Open a sealed event in place: its data restored, meshsealed and
 * meshnonce removed. An event that is not sealed is left as it is.
 * reason (size bytes; may be NULL) gets a line for a dead letter:
 * "sealed: 'bob' is not a reader of topic:orders (key id 2)", "sealed:
 * topic:orders has no key id 7", "sealed: does not open (altered, or
 * sealed with another key)", "sealed: malformed: ...". Errors: MESH_EAUTH
 * (not a reader; no identity), MESH_ENOTFOUND (no such key),
 * MESH_EPARSE (altered or malformed), MESH_ENOMEM, the connection's. */
mesh_err mesh_keyring_open(struct mesh_keyring *kr, struct mesh_event *ev,
                           char *reason, size_t size);

/* Whether ev carries sealed data (meshsealed). */
bool mesh_event_sealed(const struct mesh_event *ev);

#endif
