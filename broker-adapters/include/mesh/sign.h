/* Signed events: a producer signs an event's canonical form with its
 * identity's Ed25519 key (mesh/identity.h); a topic or a queue can require
 * signatures from a set of signers (RequireSigners, in its attributes);
 * consumers (the service runtime, mesh-router) verify and dead-letter what
 * fails, with the reason.
 *
 * A signed event carries three extension attributes (strings):
 *   meshsig     the Ed25519 signature of the canonical form: 64 bytes in
 *               base64 (RFC 4648, standard alphabet, padded: 88 chars)
 *   meshsigner  the signer's name (its record in MESH_KEYS)
 *   meshkeyid   the signer's public key, "U..." (56 characters)
 * The canonical form covers every attribute but meshsig (so the signer
 * and the key id are signed too) and a SHA-256 of the data; its byte
 * layout is in the README ("Signed events"), with a test vector that
 * tests/unit/test_sign.c checks.
 *
 * Thread safety: the functions on events are as mesh/event.h's; a
 * verifier may be used from any number of threads at once.
 */
#ifndef MESH_SIGN_H
#define MESH_SIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mesh/conn.h"
#include "mesh/err.h"
#include "mesh/event.h"
#include "mesh/identity.h"

#define MESH_SIG_EXT        "meshsig"
#define MESH_SIG_SIGNER_EXT "meshsigner"
#define MESH_SIG_KEYID_EXT  "meshkeyid"
#define MESH_SIG_DOMAIN                                                       \
	"evmesh-sig-v1" /* the canonical form's first field                   \
	                 */
#define MESH_SIG_FUTURE_MS                                                    \
	(5 * 60 * 1000) /* event time ahead of ours, at most */
#define MESH_SIG_MAX_AGE_MS (7LL * 86400 * 1000) /* the default horizon */
#define MESH_SIGNERS_MAX    8 /* names in a RequireSigners list */
/* "A,B,...": the longest RequireSigners text. */
#define MESH_SIGNERS_TEXT_MAX (MESH_SIGNERS_MAX * (MESH_IDENTITY_NAME_MAX + 1))

/* The canonical form of ev (the bytes a signature covers), into a new
 * buffer *buf of *len bytes to free(). Errors: MESH_ENOMEM. */
mesh_err mesh_event_canonical(const struct mesh_event *ev, uint8_t **buf,
                              size_t *len);

/* Sign ev as id: sets meshsigner and meshkeyid, then meshsig over the
 * canonical form (a signature already there is replaced). An event
 * without a time gets now: verifiers refuse signed events without one.
 * Sign last: any later change to the event (its id included, which FIFO
 * targets replace) breaks the signature. Errors: MESH_ETOOBIG (no room
 * for three more extension attributes), MESH_ENOMEM. */
mesh_err mesh_event_sign(struct mesh_event *ev,
                         const struct mesh_identity *id);

typedef enum {
	MESH_SIG_OK = 0,
	MESH_SIG_MISSING,     /* no meshsig */
	MESH_SIG_MALFORMED,   /* meshsig, meshsigner or meshkeyid unreadable */
	MESH_SIG_UNKNOWN_KEY, /* meshkeyid is no allowed signer's key */
	MESH_SIG_FORGED,      /* the signature does not verify */
	MESH_SIG_STALE,       /* no time, older than max_age, or ahead */
} mesh_sig_verdict;

/* "ok", "missing", "malformed", "unknown key", "forged", "stale". */
const char *mesh_sig_verdict_name(mesh_sig_verdict v);

/* Verify ev against the allowed signers' keys (keys[0..n), borrowed): its
 * meshkeyid must be one of them, recorded under its meshsigner's name,
 * the signature must verify over the canonical form, and its time must
 * lie within [now_ms - max_age_ms, now_ms + MESH_SIG_FUTURE_MS]. reason
 * (size bytes; may be NULL) gets "signature: missing", "signature:
 * malformed: ...", "signature: unknown key U... (signer 'NAME')",
 * "signature: forged (signer 'NAME', key U...)" or "signature: stale
 * event time ISO (...)"; "" when MESH_SIG_OK. Checks in that order: a
 * forged event is called forged whatever its time. */
mesh_sig_verdict mesh_event_verify(const struct mesh_event *ev,
                                   const struct mesh_key_record *keys,
                                   size_t n, int64_t max_age_ms,
                                   int64_t now_ms, char *reason, size_t size);

/* The MESH_KEYS record of a foreign producer's key (for mesh_keys_put):
 * name, its public key "U...", the X25519 key derived from it, created
 * now. Errors: MESH_EINVAL (a name or a key that is not a user public
 * key, named). */
mesh_err mesh_key_record_from_public(const char *name, const char *public_key,
                                     struct mesh_key_record *out);

/* ---- RequireSigners ------------------------------------------------------
 */

/* Split "A,B" into names (1-MESH_SIGNERS_MAX identity names, no repeats);
 * "" is none. what names the owner in errors ("topic 'orders'"). Errors:
 * MESH_EINVAL naming the name at fault. */
mesh_err mesh_signers_parse(const char *what, const char *text,
                            char names[][MESH_IDENTITY_NAME_MAX + 1],
                            size_t *n);

/* mesh_signers_parse, and each name recorded in MESH_KEYS. Errors:
 * MESH_EINVAL, MESH_ENOTFOUND ("topic 'orders': RequireSigners: signer
 * 'bob' has no key in MESH_KEYS"), the connection's. */
mesh_err mesh_signers_check(struct mesh_conn *c, const char *what,
                            const char *text);

/* ---- a verifier: what a topic or a queue requires, cached -------------- */

struct mesh_verifier;

#define MESH_VERIFIER_REFRESH_MS 5000

/* A verifier of target, "topic:NAME" or "queue:NAME": its RequireSigners
 * and those signers' keys (MESH_KEYS), read now, again every
 * MESH_VERIFIER_REFRESH_MS, and at once (at most once a second) when an
 * event names a key it does not know, so that a new or rotated key works
 * without a restart. max_age_ms: the replay horizon (events older are
 * stale; 0: MESH_SIG_MAX_AGE_MS). Errors: MESH_EINVAL (target),
 * MESH_ENOTFOUND (the topic or queue), the connection's. c must outlive
 * the verifier. */
mesh_err mesh_verifier_new(struct mesh_conn *c, const char *target,
                           int64_t max_age_ms, struct mesh_verifier **out);
void mesh_verifier_free(struct mesh_verifier *v);

/* Whether the target requires signatures now (refreshing when due; a
 * failed refresh keeps what was read before). */
bool mesh_verifier_required(struct mesh_verifier *v);

/* mesh_event_verify against the target's signers now; MESH_SIG_OK when
 * it requires none. */
mesh_sig_verdict mesh_verifier_check(struct mesh_verifier *v,
                                     const struct mesh_event *ev, char *reason,
                                     size_t size);

#endif
