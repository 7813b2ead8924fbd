/* Library-internal helpers of broker-adapters. Not installed, not API. */
#ifndef MESH_INTERNAL_H
#define MESH_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <jansson.h>
#include <nats/nats.h>
#include <protobuf-c/protobuf-c.h>

#include "mesh/arena.h"
#include "mesh/clock.h"
#include "mesh/conn.h"
#include "mesh/err.h"
#include "mesh/identity.h"
#include "mesh/sender.h"

/* Milliseconds: wall clock and monotonic (mesh/clock.h). */
#define now_ms  mesh_wall_ms
#define mono_ms mesh_mono_ms

/* Copy src (NULL: "") into dst of size > 0, cut short to fit, always
 * terminated: snprintf's "%s" without its cost, on the per-message
 * paths. */
static inline void
mesh__copy_str(char *dst, size_t size, const char *src)
{
	size_t n = src != NULL ? strnlen(src, size - 1) : 0;

	if (n > 0) {
		memcpy(dst, src, n);
	}
	dst[n] = '\0';
}

/* NKeys (nkey.c): the user public key ("U...") of a seed ("SU..."), and
 * the seed text of 32 raw Ed25519 seed bytes (for tests and tooling).
 * Errors: MESH_EINVAL when the seed is malformed or not a user seed. */
#define MESH__NKEY_PUBLIC_LEN 56
#define MESH__NKEY_SEED_LEN   58
mesh_err mesh__nkey_public_from_seed(const char *seed,
                                     char pub[MESH__NKEY_PUBLIC_LEN + 1]);
void mesh__nkey_seed_encode(const unsigned char raw[32],
                            char seed[MESH__NKEY_SEED_LEN + 1]);
/* The 32 raw bytes of a user seed; a user public key's 32 Ed25519 bytes
 * and back. Errors: MESH_EINVAL (malformed, not a user's). */
mesh_err mesh__nkey_seed_decode(const char *seed, unsigned char raw[32]);
mesh_err mesh__nkey_public_decode(const char *pub, unsigned char pk[32]);
void mesh__nkey_public_encode(const unsigned char pk[32],
                              char pub[MESH__NKEY_PUBLIC_LEN + 1]);
/* Sign a server's connect nonce with an Ed25519 secret key (libsodium's
 * 64 bytes: seed, then public key) so that cnats 3.4 sends the signature:
 * its base64 encoder takes a signature whose first byte is 0 for an empty
 * input (nats.c src/util.c, _base64Encode's `src[0] == '\0'`) and leaves
 * "sig" out of CONNECT, which nats-server refuses ("Authorization
 * Violation"): one connect in 256. Ed25519 verifies any valid signature,
 * so when the deterministic one (RFC 8032) starts with 0 this signs again
 * with a random nonce r (a hedged signature, as libsodium's
 * ED25519_NONDETERMINISTIC build makes) until it does not. */
void mesh__nkey_sign_nonce(const unsigned char sk[64], const unsigned char *m,
                           size_t n, unsigned char sig[64]);

/* A message attribute as mesh_event_attr_get() sees it, without recording
 * an error when it is absent (false). *data_type is not NUL-terminated: it
 * has *type_len bytes. Everything is borrowed from the event. */
struct mesh_event;
bool mesh__event_attr_peek(const struct mesh_event *ev, const char *name,
                           const char **data_type, size_t *type_len,
                           const void **value, size_t *len);

/* The bulk connection of c: a second connection to the same server with
 * the same credentials, which coalesces what it sends (cnats' flusher, not
 * a write per message as c's own connection, which serves requests). For
 * fire-and-forget traffic in volume: acknowledgements. Made when first
 * asked for; c's own connection when it cannot be made. Flushed and
 * closed by mesh_conn_close(). */
natsConnection *mesh__conn_bulk(struct mesh_conn *c);

/* Note a permission nats-server refused (its -ERR text), from the
 * connection's error handler: the next error of a request that timed out
 * within 10 s (mesh_err_nats) is MESH_EAUTH with this text. */
void mesh__err_denied(const char *text);
/* Copy the refusal noted within the last 10 s into buf and forget it;
 * false when there is none. */
bool mesh__err_denied_recent(char *buf, size_t size);
/* The same, only when the refusal names subject (a publish that expects
 * no answer of its own: a pull request). */
bool mesh__err_denied_subject(const char *subject, char *buf, size_t size);
/* A block of size bytes that a module keeps per connection under key
 * (zeroed when made; the same block for the same key), freed with the
 * connection; NULL when out of memory. Thread-safe; what is in it is the
 * module's to guard. */
void *mesh__conn_slot(struct mesh_conn *c, const char *key, size_t size);

/* Copy url into buf with any password replaced by "***". */
const char *mesh__url_redact(const char *url, char *buf, size_t size);

/* Send any number of messages to a queue, pipelined, for the topic router:
 * wire_ids[i] is entry i's JetStream de-duplication id (a FIFO entry names
 * it as its dedup_id), so a forward repeated within 5 minutes is stored
 * once. srcs (optional): where srcs[i] is a stored event message and the
 * queue passes messages through (standard, no delay, and the message
 * within its size), its bytes and envelope headers go as they are and
 * e[i].event may be NULL. Each entry's outcome is in out[i]. */
struct mesh_queue;
struct mesh_queue_entry;
struct mesh_queue_sent;
void mesh__queue_forward(struct mesh_queue *q,
                         const struct mesh_queue_entry *e,
                         const char *const *wire_ids, natsMsg *const *srcs,
                         size_t n, struct mesh_queue_sent *out);
bool mesh__queue_passes_through(const struct mesh_queue *q);
/* For pollers inside the mesh (the service runtime's queue sources):
 * SQS's receive without its limit of 10 (up to 256 at once), whose
 * messages carry raw receipts ("@<deadline>@<ack subject>": nothing to
 * sign or verify, and refused by the public calls); acknowledging them in
 * bulk on the bulk connection, fire and forget (a lost one is a
 * redelivery, which pollers that record processed ids absorb); and sealing
 * one into a real receipt for the public calls (change visibility, dead
 * letter). A sealed or real receipt is left as it is. */
struct mesh_queue_msg;
mesh_err mesh__queue_receive_many(struct mesh_queue *q, int max, int wait_s,
                                  struct mesh_queue_msg **msgs, size_t *n);
void mesh__queue_ack_many(struct mesh_queue *q, const char *const *receipts,
                          size_t n);
mesh_err mesh__queue_seal(struct mesh_queue *q, char *receipt, size_t size);

/* A message for a queue or topic, checked and built with a reply subject
 * on its inbox (mesh__queue_rpc, mesh__topic_rpc), as mesh_queue_send and
 * mesh_topic_publish build theirs (the sender's path). */
struct mesh__rpc;
struct mesh_topic;
struct mesh_topic_entry;
mesh_err mesh__queue_prepare(struct mesh_queue *q,
                             const struct mesh_queue_entry *e, natsMsg **out,
                             char message_id[64]);
struct mesh__rpc *mesh__queue_rpc(struct mesh_queue *q);
mesh_err mesh__topic_prepare(struct mesh_topic *t,
                             const struct mesh_topic_entry *e, natsMsg **out,
                             char message_id[64]);
struct mesh__rpc *mesh__topic_rpc(struct mesh_topic *t);
struct mesh_conn *mesh__queue_conn(struct mesh_queue *q);
struct mesh_conn *mesh__topic_conn(struct mesh_topic *t);

/* wire.c: js_UpdateStream, again (up to 3 times) while it times out. */
/* Add a stream, asking again for up to MESH_JS_SETTLE_MS while the
 * cluster settles (mesh_js_transient). */
natsStatus mesh__stream_add(struct mesh_conn *c, jsStreamConfig *cfg,
                            jsErrCode *jerr);
/* Add (or update) a consumer, asking again for up to MESH_JS_SETTLE_MS
 * while the cluster settles (mesh_js_transient, or a stream's replicas
 * raised a moment ago not yet known where consumers are placed). */
natsStatus mesh__consumer_put(struct mesh_conn *c, const char *stream,
                              jsConsumerConfig *cc, bool update,
                              jsErrCode *jerr);
natsStatus mesh__stream_update(struct mesh_conn *c, jsStreamConfig *cfg,
                               jsErrCode *jerr);

/* conn.c: a replica check's error, when the count was the mesh's
 * default: the detail says where it came from. */
mesh_err mesh__replicas_default_err(mesh_err err);

/* sender.c: send n prepared messages (replies on rpc) on nc, all in flight
 * at once, and wait for them: fn gets each one's outcome, its tag the
 * index, in order (the message_id left empty: the caller has it). The
 * path of send-batch, publish-batch and the router. Takes the messages. */
void mesh__send_prepared(struct mesh__rpc *rpc, natsConnection *nc,
                         const char *what, natsMsg **msgs, size_t n,
                         mesh_sent_fn fn, void *arg);

/* The sorted names of the streams beginning with std_prefix (the name
 * follows) or fifo_prefix (BASE follows; the name is BASE.fifo), only those
 * beginning with `prefix` when it is not NULL. Free with mesh__names_free. */
mesh_err mesh__stream_names(struct mesh_conn *c, const char *noun,
                            const char *std_prefix, const char *fifo_prefix,
                            const char *prefix, char ***names, size_t *n);
void mesh__names_free(char **names, size_t n);
/* The info of the stream behind `noun` `name` (a queue, a topic); a
 * missing one is MESH_ENOTFOUND "queue 'x': does not exist". *out only on
 * success; destroy it. */
mesh_err mesh__stream_info(struct mesh_conn *c, const char *stream,
                           const char *noun, const char *name,
                           jsStreamInfo **out);

/* Batches of SQS and SNS calls (wire.c): 1-10 entries whose ids (found
 * every `stride` bytes from `ids`) are 1-80 of [A-Za-z0-9_-] and distinct.
 * `what` names the target in errors ("queue 'q'"). */
#define MESH__BATCH_MAX 10
mesh_err mesh__batch_check(const char *what, const char *const *ids, size_t n,
                           size_t stride);
/* Group and de-duplication ids: 1-128 printable ASCII characters. */
#define MESH__ID_MAX 128
bool mesh__id_valid(const char *s);
/* Check the group and de-duplication ids given (either may be NULL). */
mesh_err mesh__ids_check(const char *what, const char *group_id,
                         const char *dedup_id);
/* A FIFO message's de-duplication id (dedup_id, or the body's SHA-256 when
 * content-based de-duplication is on) and the MessageId derived from it
 * under key. Errors: MESH_EINVAL (no group; no de-duplication id). */
mesh_err mesh__fifo_ids(const char *what, const struct mesh_event *ev,
                        const char *group_id, const char *dedup_id, bool cbd,
                        const uint8_t *key, size_t key_len,
                        char dedup[MESH__ID_MAX + 1], char message_id[64]);
/* A message's size as SQS and SNS count it: body, and the message
 * attributes' names, types and values; *n_attrs gets their number. */
struct mesh_event;
size_t mesh__message_size(const struct mesh_event *ev, size_t *n_attrs);

/* A topic's stream and subject (topic.c). Errors: MESH_EINVAL (name). */
mesh_err mesh__topic_names(const char *name, char *stream, size_t ssize,
                           char *subject, size_t subsize);
/* mesh_subscriber_fetch, leaving deliveries' events NULL unless the
 * subscription's filter needed them decoded (decode false): the router
 * passes raw messages through without decoding them. */
struct mesh_subscriber;
struct mesh_delivery;
mesh_err mesh__subscriber_fetch(struct mesh_subscriber *s, int max,
                                int64_t wait_ms, bool decode,
                                struct mesh_delivery *out, size_t *n,
                                size_t *filtered);

/* A protobuf payload as JSON for filter policies (pbjson.c): as
 * mesh_pbjson_event_data, but 64-bit integers are numbers, so that
 * numeric conditions see them. */
mesh_err mesh__pbjson_event_fields(const struct mesh_event *ev, json_t **out);

/* A subscription record as stored under `key` (subscription.c). Errors:
 * MESH_EBROKER (damaged), MESH_ENOMEM. Free with mesh_subscription_fini. */
struct mesh_subscription;
mesh_err mesh__subscription_decode(const char *key, const void *data,
                                   size_t len, struct mesh_subscription *out);

/* Whether id is a subscription id as the mesh makes them,
 * "TOPIC:<16 hex digits>" (subscription.c). Errors: MESH_EINVAL, naming
 * it. */
mesh_err mesh__subscription_id_check(const char *id);

/* The store of subscription records (records.c): the key-value bucket
 * MESH_SUBSCRIPTIONS (made when missing), a record a key "TOPIC.HEX".
 * Below both topics and subscriptions, so that deleting a topic removes
 * its records without topic.c knowing subscriptions. */
#define MESH__RECORDS_BUCKET "MESH_SUBSCRIPTIONS"
/* A key-value bucket of the mesh's records (history 1, file storage, the
 * connection's replicas, values up to max_value, entries kept max_age_ns,
 * 0: for ever), made when missing if create (else MESH_ENOTFOUND); looked
 * up again for up to 10 s while programs starting together race to make
 * it. `noun` names it in errors ("subscriptions"). */
mesh_err mesh__kv_bucket(struct mesh_conn *c, const char *bucket,
                         int32_t max_value, int64_t max_age_ns, bool create,
                         const char *noun, kvStore **kv);
/* The same keeping `history` values per key (1-64; kept for ever). */
mesh_err mesh__kv_bucket_history(struct mesh_conn *c, const char *bucket,
                                 uint8_t history, int32_t max_value,
                                 bool create, const char *noun, kvStore **kv);
mesh_err mesh__records_bucket(struct mesh_conn *c, kvStore **kv);
/* Every key of the bucket (keys->Count in *n; none: *n 0, nothing to
 * destroy). */
mesh_err mesh__records_keys(kvStore *kv, kvKeysList *keys, size_t *n);
/* Whether key "T.HEX" belongs to topic T. */
bool mesh__records_of_topic(const char *key, const char *topic);
/* Whether a subscription of topic has a MessageBody filter policy:
 * MESH_EEXIST, its id in id (size bytes); MESH_OK when none. */
mesh_err mesh__records_body_policy(struct mesh_conn *c, const char *topic,
                                   char *id, size_t size);
/* Remove a deleted topic's records. */
mesh_err mesh__records_forget_topic(struct mesh_conn *c, const char *topic);

/* The fuzz tests' seams: what queue.c and topic.c read from outside,
 * without a broker. mesh__queue_receipt_check seals a raw receipt in place
 * (as mesh__queue_seal, for a queue `name` whose HMAC key is `key`) and
 * opens it as the public calls do; the cfg_decode calls read a stream's
 * description into attributes (*a is written even on error). */
struct mesh_queue_attrs;
struct mesh_topic_attrs;
mesh_err mesh__queue_receipt_check(const char *name, const uint8_t key[32],
                                   char *receipt, size_t size);
mesh_err mesh__queue_cfg_decode(const char *desc, struct mesh_queue_attrs *a);
mesh_err mesh__topic_cfg_decode(const char *desc, struct mesh_topic_attrs *a);

/* Does a delivery pass a subscription's filter (subscription.c)? As
 * mesh_filter_match_event, but the MessageBody scope reads a protobuf
 * payload as its JSON mapping (mesh__pbjson_event_fields). */
struct mesh_filter;
bool mesh__subscription_matches(const struct mesh_filter *f,
                                const struct mesh_event *ev);

/* A list of identity names "A,B" (sign.c): RequireSigners' signers and
 * Readers' readers. attr names the attribute and noun one name in errors;
 * at most MESH_SIGNERS_MAX. _check: each in MESH_KEYS too. */
mesh_err mesh__names_parse(const char *what, const char *attr,
                           const char *noun, const char *text,
                           char names[][MESH_IDENTITY_NAME_MAX + 1],
                           size_t *n);
mesh_err mesh__names_check(struct mesh_conn *c, const char *what,
                           const char *attr, const char *noun,
                           const char *text);

/* Data keys wrapped to readers (seal.c), shared by sealed payloads and
 * param.c's SecureStrings: an XChaCha20-Poly1305 key sealed
 * (crypto_box_seal) to each reader's X25519 key. */
#define MESH__DATA_KEY_LEN   32 /* crypto_aead_xchacha20poly1305_ietf */
#define MESH__SEALED_KEY_LEN (MESH__DATA_KEY_LEN + MESH_SEAL_OVERHEAD)
/* Seal key to writer's own X25519 key (when not NULL), then to each of
 * names' (their keys from MESH_KEYS), a name given twice once: names_out
 * (strdup'd names) and keys_out get *count entries (room for n + 1).
 * what prefixes errors ("parameter '/x'"). Errors: those of
 * mesh_keys_get, with the reader named; MESH_ENOMEM. On error the names
 * made so far are in names_out (*count) for the caller to free. */
mesh_err mesh__datakey_wrap(struct mesh_conn *c, const char *what,
                            const struct mesh_identity *writer,
                            const char *const *names, size_t n,
                            const uint8_t *key, char **names_out,
                            uint8_t (*keys_out)[MESH__SEALED_KEY_LEN],
                            size_t *count);
/* Encrypt and Readers of a topic or a queue (kind "topic" or "queue"):
 * Readers only with Encrypt, each reader in MESH_KEYS. Errors: MESH_EINVAL
 * ("queue 'q': Readers is for encrypted queues (--encrypt)"), those of
 * mesh_readers_check. */
mesh_err mesh__encrypt_check(struct mesh_conn *c, const char *kind,
                             const char *name, bool encrypt,
                             const char *readers);
/* An encrypting target's data key, made or rotated to readers
 * (mesh_datakey_ensure); nothing when it does not encrypt. */
mesh_err mesh__encrypt_keys(struct mesh_conn *c, const char *kind,
                            const char *name, bool encrypt,
                            const char *readers);
/* What a producer path sends to target ("topic:NAME"), which encrypts or
 * not: *out NULL when ev goes as it is (a clear target, sealed already,
 * no data); else a copy sealed with kr (the caller frees it). what
 * prefixes errors ("topic 'pay'"). Errors: MESH_EINVAL (no keyring: seal
 * first; signed but not sealed: seal, then sign), mesh_keyring_seal's. */
struct mesh_keyring;
mesh_err mesh__seal_for_send(const char *what, const char *target,
                             bool encrypt, struct mesh_keyring *kr,
                             const struct mesh_event *ev,
                             struct mesh_event **out);
/* The attributes of a topic or queue as its stream has them now (no
 * counts). Errors: MESH_EINVAL, MESH_ENOTFOUND, the connection's. */
mesh_err mesh__topic_attrs_load(struct mesh_conn *c, const char *name,
                                struct mesh_topic_attrs *a);
mesh_err mesh__queue_attrs_load(struct mesh_conn *c, const char *name,
                                struct mesh_queue_attrs *a);
/* Open id's entry of names/keys into key. Errors: MESH_EAUTH ("WHAT: 'bob'
 * is not a reader"), MESH_EPARSE (does not open). */
mesh_err mesh__datakey_unwrap(const char *what, const struct mesh_identity *id,
                              char *const *names,
                              const uint8_t (*keys)[MESH__SEALED_KEY_LEN],
                              size_t n, uint8_t *key);

#endif
