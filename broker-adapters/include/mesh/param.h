/* Parameters and secrets (AWS Systems Manager Parameter Store).
 *
 * A parameter is a name, a type and a value, with versions. Names are
 * Parameter Store's: 1-1011 of [A-Za-z0-9_.-/]; a name with '/' is a
 * hierarchy and begins with '/' ("/shop/orders/discount"), at most 15
 * levels, no empty level; no name begins with "aws" or "ssm" (any case),
 * reserved as in AWS. Types: String, StringList (comma-separated items,
 * none empty) and SecureString. Values: 1-4096 bytes of UTF-8 text
 * without NUL; a description up to 1024.
 *
 * The parameters are the key-value bucket MESH_PARAMS (file storage, the
 * mesh's replicas, MESH_PARAM_HISTORY versions kept per key, made when
 * missing). A name maps to a key reversibly: '/' becomes '.', '.' becomes
 * '=' (never in a name), and a name that begins with '/' gets the first
 * token "_" ("/shop/orders/discount" -> "_.shop.orders.discount", "x.y"
 * -> "x=y"), so a path is a subject prefix ("_.shop.>"). A record is a
 * JSON document:
 *
 *   {"name", "type": "String"|"StringList"|"SecureString", "version",
 *    "value" (not for SecureString), "description", "modified_ms",
 *    "modified_by" (the writer's identity, when known),
 *    "secure": {"cipher": "xchacha20poly1305-ietf", "nonce" (24 bytes,
 *               base64), "ciphertext" (base64), "keys": [{"reader",
 *               "sealed" (base64: the data key sealed to the reader's
 *               X25519 key)}, ...]}}  (SecureString only)
 *
 * Versions count 1, 2, ... per name (in the record; put over a name
 * deleted starts again at 1); the bucket keeps the last
 * MESH_PARAM_HISTORY of them. A SecureString's value is encrypted with a
 * random data key (XChaCha20-Poly1305, the name as associated data, so a
 * record moved to another name does not open); the data key is sealed
 * (mesh_seal) to each reader's X25519 key from MESH_KEYS and to the
 * writer's own. The record holds no clear value, and the library logs
 * nothing. Reading needs an identity among the readers
 * (mesh_param_open).
 *
 * Thread safety: the calls may be made from any thread; a struct
 * mesh_param is one thread's at a time.
 */
#ifndef MESH_PARAM_H
#define MESH_PARAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mesh/conn.h"
#include "mesh/err.h"
#include "mesh/identity.h"

#define MESH_PARAMS_BUCKET     "MESH_PARAMS"
#define MESH_PARAM_HISTORY     64   /* versions kept per name */
#define MESH_PARAM_NAME_MAX    1011 /* Parameter Store's */
#define MESH_PARAM_KEY_MAX     1013 /* the longest key a name maps to */
#define MESH_PARAM_LEVELS_MAX  15
#define MESH_PARAM_VALUE_MAX   4096 /* the standard tier's */
#define MESH_PARAM_DESC_MAX    1024
#define MESH_PARAM_READERS_MAX 32

enum mesh_param_type {
	MESH_PARAM_STRING = 0,
	MESH_PARAM_STRING_LIST,
	MESH_PARAM_SECURE_STRING,
};

/* A SecureString's ciphertext and sealed keys (opaque). */
struct mesh_param_sealed;

struct mesh_param {
	char name[MESH_PARAM_NAME_MAX + 1];
	enum mesh_param_type type;
	int64_t version; /* 1, 2, ... */
	/* The value, NUL-terminated: String and StringList always; a
	 * SecureString only once opened (mesh_param_open: in guarded memory,
	 * wiped by mesh_param_fini), else NULL. */
	char *value;
	size_t value_len;
	char *description; /* NULL: none */
	int64_t modified_ms;
	char modified_by[MESH_IDENTITY_NAME_MAX + 1]; /* "": not known */
	char **readers; /* SecureString: n_readers names, the writer's too */
	size_t n_readers;
	struct mesh_param_sealed *sealed; /* SecureString */
	uint64_t revision; /* the bucket's, from read/list/history */
};

/* Nothing owned. */
void mesh_param_init(struct mesh_param *p);
/* Free (and wipe) what p owns and init it again. NULL is fine. */
void mesh_param_fini(struct mesh_param *p);

/* "String", "StringList", "SecureString"; parse is exact (MESH_EINVAL
 * naming the text otherwise). */
const char *mesh_param_type_name(enum mesh_param_type t);
mesh_err mesh_param_type_parse(const char *text, enum mesh_param_type *out);

/* Whether name is a valid parameter name (above). Errors: MESH_EINVAL,
 * the detail naming it and what is wrong. */
mesh_err mesh_param_name_check(const char *name);
/* A path for list: "/" or a name beginning with '/'. */
mesh_err mesh_param_path_check(const char *path);

/* A name's key in the bucket and back (size: MESH_PARAM_KEY_MAX + 1 is
 * always enough). Errors: MESH_EINVAL (a bad name; a key no name maps
 * to), MESH_ETOOBIG (size). */
mesh_err mesh_param_key(const char *name, char *key, size_t size);
mesh_err mesh_param_name_of_key(const char *key, char *name, size_t size);

/* What to store. */
struct mesh_param_put_opts {
	const char *name;
	enum mesh_param_type type;  /* MESH_PARAM_STRING */
	const char *value;          /* NUL-terminated */
	const char *description;    /* NULL: none */
	const char *const *readers; /* SecureString: names in MESH_KEYS */
	size_t n_readers;
	bool overwrite; /* replace an existing one (false: MESH_EEXIST) */
};
void mesh_param_put_opts_init(struct mesh_param_put_opts *o);

/* Store a new version of a parameter: version 1 for a new name, the last
 * one's + 1 with overwrite. writer (may be NULL for String and
 * StringList) is recorded as modified_by; a SecureString needs it: its
 * data key is sealed to the writer and to every reader (duplicates
 * counted once). Checked whole before anything is stored. Errors:
 * MESH_EINVAL (name, type, value, description, readers: the detail names
 * the value; a SecureString without writer), MESH_ENOTFOUND (a reader not
 * in MESH_KEYS, named), MESH_EBROKER (a reader's key record damaged),
 * MESH_EEXIST (the name exists and not overwrite), MESH_ESTALE (changed
 * by others three times while storing), the connection's. *version (may
 * be NULL) is the stored version. */
mesh_err mesh_param_put(struct mesh_conn *c,
                        const struct mesh_param_put_opts *o,
                        const struct mesh_identity *writer, int64_t *version);

/* A parameter's last version (version 0) or the given one, into *out
 * (mesh_param_fini after); a SecureString comes sealed. Errors:
 * MESH_EINVAL (name, version < 0), MESH_ENOTFOUND (no such parameter, or
 * no such version kept: the detail says which), MESH_EBROKER (a damaged
 * record: the detail says what), the connection's. */
mesh_err mesh_param_read(struct mesh_conn *c, const char *name,
                         int64_t version, struct mesh_param *out);

/* Open a SecureString with id: p->value set (guarded memory). Other
 * types: nothing to do. Errors: MESH_EAUTH (id is not among its readers:
 * "parameter '/x': 'bob' is not a reader"), MESH_EPARSE (its data key or
 * ciphertext does not open: altered or damaged), MESH_ENOMEM. */
mesh_err mesh_param_open(struct mesh_param *p, const struct mesh_identity *id);

/* The parameters (last versions), by name: all of them (path NULL), or
 * those below path ("/" or "/a/b": its children; recursive: every level
 * below). A damaged record is listed with its name and version 0.
 * Free with mesh_param_list_free. Errors: MESH_EINVAL (path), the
 * connection's. */
mesh_err mesh_param_list(struct mesh_conn *c, const char *path, bool recursive,
                         struct mesh_param **out, size_t *n);
void mesh_param_list_free(struct mesh_param *ps, size_t n);

/* Every version kept, oldest first (mesh_param_list_free). A damaged
 * one is skipped. Errors: MESH_EINVAL (name), MESH_ENOTFOUND, the
 * connection's. */
mesh_err mesh_param_history(struct mesh_conn *c, const char *name,
                            struct mesh_param **out, size_t *n);

/* Remove a parameter and every version of it (as AWS's DeleteParameter;
 * the ciphertexts go too). Errors: MESH_EINVAL (name), MESH_ENOTFOUND,
 * the connection's. */
mesh_err mesh_param_delete(struct mesh_conn *c, const char *name);

/* The record as JSON (malloc'ed, NUL-terminated; free()) and back.
 * decode checks what it reads (name, type, version, value, description,
 * the sealed parts' sizes); it writes *out only on success. Errors:
 * MESH_EINVAL (decode: the detail names the field), MESH_ENOMEM. */
mesh_err mesh_param_encode(const struct mesh_param *p, char **json);
mesh_err mesh_param_decode(const char *json, size_t len,
                           struct mesh_param *out);

/* The bucket, made when missing (the runtime watches it); destroy with
 * kvStore_Destroy. Errors: the connection's. */
mesh_err mesh_param_bucket(struct mesh_conn *c, kvStore **kv);

#endif
