/* param.c: parameters and secrets (mesh/param.h), the records of the
 * key-value bucket MESH_PARAMS. */
#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "internal.h"
#include "mesh/param.h"
#include "mesh/wire.h"

#define CIPHER         "xchacha20poly1305-ietf"
#define DATA_KEY_LEN   MESH__DATA_KEY_LEN
#define NONCE_LEN      crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_LEN        crypto_aead_xchacha20poly1305_ietf_ABYTES
#define SEALED_KEY_LEN MESH__SEALED_KEY_LEN
/* A record at its limits: name, description, a value's ciphertext and 32
 * sealed keys, in base64, with room. */
#define MAX_RECORD  (64 * 1024)
#define PUT_RETRIES 3

struct mesh_param_sealed {
	uint8_t nonce[NONCE_LEN];
	uint8_t *ciphertext; /* value_len + TAG_LEN */
	size_t ciphertext_len;
	uint8_t (*keys)[SEALED_KEY_LEN]; /* one per reader, in order */
};

static const char *const type_names[] = {
        [MESH_PARAM_STRING] = "String",
        [MESH_PARAM_STRING_LIST] = "StringList",
        [MESH_PARAM_SECURE_STRING] = "SecureString",
};

void
mesh_param_init(struct mesh_param *p)
{
	memset(p, 0, sizeof(*p));
}

static void
sealed_free(struct mesh_param_sealed *s)
{
	if (s != NULL) {
		free(s->ciphertext);
		free(s->keys);
		free(s);
	}
}

static void
value_free(struct mesh_param *p)
{
	if (p->value == NULL) {
		return;
	}
	if (p->type == MESH_PARAM_SECURE_STRING) {
		sodium_free(p->value); /* wipes */
	} else {
		free(p->value);
	}
	p->value = NULL;
	p->value_len = 0;
}

void
mesh_param_fini(struct mesh_param *p)
{
	if (p == NULL) {
		return;
	}
	value_free(p);
	free(p->description);
	for (size_t i = 0; i < p->n_readers; i++) {
		free(p->readers[i]);
	}
	free(p->readers);
	sealed_free(p->sealed);
	mesh_param_init(p);
}

const char *
mesh_param_type_name(enum mesh_param_type t)
{
	return (unsigned)t < 3 ? type_names[t] : "?";
}

mesh_err
mesh_param_type_parse(const char *text, enum mesh_param_type *out)
{
	for (int t = 0; t < 3; t++) {
		if (text != NULL && strcmp(text, type_names[t]) == 0) {
			*out = (enum mesh_param_type)t;
			return MESH_OK;
		}
	}
	return mesh_err_set(MESH_EINVAL,
	                    "type '%.64s': must be String, StringList or "
	                    "SecureString",
	                    text ? text : "");
}

/* ---- names and keys ------------------------------------------------------
 */

static bool
name_char(char ch)
{
	return isalnum((unsigned char)ch) || ch == '_' || ch == '.' ||
	       ch == '-' || ch == '/';
}

mesh_err
mesh_param_name_check(const char *name)
{
	size_t len = name != NULL ? strlen(name) : 0, levels = 0;
	const char *first;

	if (len == 0 || len > MESH_PARAM_NAME_MAX) {
		return mesh_err_set(MESH_EINVAL,
		                    "parameter name '%.64s%s': must be 1-%d "
		                    "characters",
		                    name ? name : "", len > 64 ? "..." : "",
		                    MESH_PARAM_NAME_MAX);
	}
	for (size_t i = 0; i < len; i++) {
		if (!name_char(name[i])) {
			return mesh_err_set(
			        MESH_EINVAL,
			        "parameter name '%.64s': may contain only "
			        "A-Z, a-z, 0-9, '_', '.', '-' and '/'",
			        name);
		}
		if (name[i] == '/') {
			levels++;
			if (name[i + 1] == '/' || name[i + 1] == '\0') {
				return mesh_err_set(
				        MESH_EINVAL,
				        "parameter name '%.64s': an empty "
				        "level (\"//\" or a '/' at its end)",
				        name);
			}
		}
	}
	if (levels > 0 && name[0] != '/') {
		return mesh_err_set(MESH_EINVAL,
		                    "parameter name '%.64s': a hierarchy must "
		                    "begin with '/' (a fully qualified name)",
		                    name);
	}
	if (levels > MESH_PARAM_LEVELS_MAX) {
		return mesh_err_set(MESH_EINVAL,
		                    "parameter name '%.64s': %zu levels: at "
		                    "most %d",
		                    name, levels, MESH_PARAM_LEVELS_MAX);
	}
	first = name[0] == '/' ? name + 1 : name;
	if (strncasecmp(first, "aws", 3) == 0 ||
	    strncasecmp(first, "ssm", 3) == 0) {
		return mesh_err_set(MESH_EINVAL,
		                    "parameter name '%.64s': may not begin "
		                    "with \"aws\" or \"ssm\" (reserved)",
		                    name);
	}
	return MESH_OK;
}

mesh_err
mesh_param_path_check(const char *path)
{
	if (path != NULL && strcmp(path, "/") == 0) {
		return MESH_OK;
	}
	if (path == NULL || path[0] != '/') {
		return mesh_err_set(
		        MESH_EINVAL,
		        "path '%.64s': must be \"/\" or begin with "
		        "'/'",
		        path ? path : "");
	}
	return mesh_param_name_check(path);
}

mesh_err
mesh_param_key(const char *name, char *key, size_t size)
{
	size_t k = 0;
	mesh_err err;

	if ((err = mesh_param_name_check(name)) != MESH_OK) {
		return err;
	}
	if (name[0] == '/' && size > 0) {
		key[k++] = '_';
	}
	for (const char *p = name; *p != '\0' && k < size; p++) {
		key[k++] = *p == '/' ? '.' : *p == '.' ? '=' : *p;
	}
	if (k >= size) {
		return mesh_err_set(MESH_ETOOBIG,
		                    "parameter '%.64s': its key needs more "
		                    "than %zu bytes",
		                    name, size);
	}
	key[k] = '\0';
	return MESH_OK;
}

mesh_err
mesh_param_name_of_key(const char *key, char *name, size_t size)
{
	const char *p = key;
	size_t n = 0;

	if (strchr(key, '/') != NULL) {
		/* No name's key has one ('/' becomes '.'), though a bucket's
		 * key may: such a key would map to a name whose key is
		 * another. */
		return mesh_err_set(MESH_EINVAL,
		                    "key '%.64s': not a parameter's", key);
	}
	if (strncmp(key, "_.", 2) == 0) {
		p = key + 1; /* its '.' is the name's leading '/' */
	} else if (strchr(key, '.') != NULL) {
		return mesh_err_set(MESH_EINVAL,
		                    "key '%.64s': not a parameter's", key);
	}
	for (; *p != '\0' && n < size; p++) {
		name[n++] = *p == '.' ? '/' : *p == '=' ? '.' : *p;
	}
	if (n >= size) {
		return mesh_err_set(MESH_ETOOBIG, "key '%.64s': too long",
		                    key);
	}
	name[n] = '\0';
	if (mesh_param_name_check(name) != MESH_OK) {
		return mesh_err_set(MESH_EINVAL,
		                    "key '%.64s': not a parameter's", key);
	}
	return MESH_OK;
}

/* ---- checks ------------------------------------------------------------- */

static bool
utf8_valid(const char *s, size_t len)
{
	json_t *j = json_stringn(s, len); /* NULL for anything but UTF-8 */

	json_decref(j);
	return j != NULL;
}

/* A value, NUL-terminated, of type t, as the record holds it. */
static mesh_err
value_check(const char *name, enum mesh_param_type t, const char *v,
            size_t len)
{
	if (v == NULL || len == 0 || len > MESH_PARAM_VALUE_MAX) {
		return mesh_err_set(MESH_EINVAL,
		                    "parameter '%.64s': a value of %zu bytes: "
		                    "must be 1-%d",
		                    name, len, MESH_PARAM_VALUE_MAX);
	}
	if (memchr(v, '\0', len) != NULL || !utf8_valid(v, len)) {
		return mesh_err_set(MESH_EINVAL,
		                    "parameter '%.64s': its value is not "
		                    "UTF-8 text",
		                    name);
	}
	if (t == MESH_PARAM_STRING_LIST) {
		size_t item = 0;
		for (const char *p = v;; p++) {
			if (*p == ',' || p == v + len) {
				if (p == v || p[-1] == ',') {
					return mesh_err_set(
					        MESH_EINVAL,
					        "parameter '%.64s': "
					        "StringList "
					        "item %zu is empty",
					        name, item + 1);
				}
				item++;
			}
			if (p == v + len) {
				break;
			}
		}
	}
	return MESH_OK;
}

static mesh_err
desc_check(const char *name, const char *d)
{
	size_t len = d != NULL ? strlen(d) : 0;

	if (len > MESH_PARAM_DESC_MAX) {
		return mesh_err_set(MESH_EINVAL,
		                    "parameter '%.64s': a description of %zu "
		                    "characters: at most %d",
		                    name, len, MESH_PARAM_DESC_MAX);
	}
	if (d != NULL && !utf8_valid(d, len)) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "parameter '%.64s': its description is not "
		        "UTF-8 text",
		        name);
	}
	return MESH_OK;
}

static mesh_err
reader_check(const char *name, const char *reader)
{
	if (reader == NULL ||
	    mesh_name_check("reader", reader, MESH_IDENTITY_NAME_MAX, NULL) !=
	            MESH_OK) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "parameter '%.64s': reader '%.64s': not an "
		        "identity's name (1-%d of A-Z a-z 0-9 _ -)",
		        name, reader ? reader : "", MESH_IDENTITY_NAME_MAX);
	}
	return MESH_OK;
}

static mesh_err
opts_check(const struct mesh_param_put_opts *o,
           const struct mesh_identity *writer)
{
	mesh_err err;

	if ((err = mesh_param_name_check(o->name)) != MESH_OK) {
		return err;
	}
	if ((unsigned)o->type > MESH_PARAM_SECURE_STRING) {
		return mesh_err_set(MESH_EINVAL, "parameter '%.64s': type %d",
		                    o->name, (int)o->type);
	}
	if ((err = value_check(o->name, o->type, o->value,
	                       o->value ? strlen(o->value) : 0)) != MESH_OK ||
	    (err = desc_check(o->name, o->description)) != MESH_OK) {
		return err;
	}
	if (o->type != MESH_PARAM_SECURE_STRING) {
		if (o->n_readers > 0) {
			return mesh_err_set(
			        MESH_EINVAL,
			        "parameter '%.64s': readers are "
			        "for SecureString (this one is %s)",
			        o->name, mesh_param_type_name(o->type));
		}
		return MESH_OK;
	}
	if (writer == NULL) {
		return mesh_err_set(MESH_EINVAL,
		                    "parameter '%.64s': a SecureString needs "
		                    "the writer's identity (its value is "
		                    "sealed to it too)",
		                    o->name);
	}
	if (o->n_readers + 1 > MESH_PARAM_READERS_MAX) {
		return mesh_err_set(MESH_EINVAL,
		                    "parameter '%.64s': %zu readers: at most "
		                    "%d with the writer",
		                    o->name, o->n_readers,
		                    MESH_PARAM_READERS_MAX);
	}
	for (size_t i = 0; i < o->n_readers; i++) {
		if ((err = reader_check(o->name, o->readers[i])) != MESH_OK) {
			return err;
		}
	}
	return MESH_OK;
}

void
mesh_param_put_opts_init(struct mesh_param_put_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->type = MESH_PARAM_STRING;
}

/* ---- JSON ----------------------------------------------------------------
 */

static json_t *
b64_json(const uint8_t *bin, size_t len)
{
	size_t size =
	        sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
	char *text = malloc(size);
	json_t *j;

	if (text == NULL) {
		return NULL;
	}
	sodium_bin2base64(text, size, bin, len,
	                  sodium_base64_VARIANT_ORIGINAL);
	j = json_string(text);
	free(text);
	return j;
}

/* A base64 field of j into a new buffer of at most max bytes (exactly
 * `exact` when not 0). */
static mesh_err
b64_read(json_t *j, const char *key, size_t max, size_t exact, uint8_t **out,
         size_t *len)
{
	const char *text = json_string_value(json_object_get(j, key));
	size_t n = 0;

	*out = NULL;
	if (text == NULL) {
		return mesh_err_set(MESH_EINVAL, "field '%s': not a string",
		                    key);
	}
	if ((*out = malloc(max > 0 ? max : 1)) == NULL) {
		return mesh_err_set(MESH_ENOMEM, "field '%s'", key);
	}
	if (sodium_base642bin(*out, max, text, strlen(text), NULL, &n, NULL,
	                      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    (exact != 0 && n != exact) || n == 0) {
		free(*out);
		*out = NULL;
		return mesh_err_set(
		        MESH_EINVAL, "field '%s': not base64 of %s%zu bytes",
		        key, exact ? "" : "1-", exact ? exact : max);
	}
	*len = n;
	return MESH_OK;
}

static json_t *
secure_json(const struct mesh_param *p)
{
	const struct mesh_param_sealed *s = p->sealed;
	json_t *keys = json_array();

	for (size_t i = 0; keys != NULL && i < p->n_readers; i++) {
		if (json_array_append_new(
		            keys, json_pack("{s:s, s:o}", "reader",
		                            p->readers[i], "sealed",
		                            b64_json(s->keys[i],
		                                     SEALED_KEY_LEN))) != 0) {
			json_decref(keys);
			return NULL;
		}
	}
	return json_pack("{s:s, s:o, s:o, s:o}", "cipher", CIPHER, "nonce",
	                 b64_json(s->nonce, NONCE_LEN), "ciphertext",
	                 b64_json(s->ciphertext, s->ciphertext_len), "keys",
	                 keys);
}

mesh_err
mesh_param_encode(const struct mesh_param *p, char **json)
{
	bool secure = p->type == MESH_PARAM_SECURE_STRING;
	json_t *j = json_pack("{s:s, s:s, s:I, s:I}", "name", p->name, "type",
	                      mesh_param_type_name(p->type), "version",
	                      (json_int_t)p->version, "modified_ms",
	                      (json_int_t)p->modified_ms);
	char *text = NULL;

	if (j != NULL && !secure && p->value != NULL) {
		json_object_set_new(j, "value",
		                    json_stringn(p->value, p->value_len));
	}
	if (j != NULL && p->description != NULL) {
		json_object_set_new(j, "description",
		                    json_string(p->description));
	}
	if (j != NULL && p->modified_by[0] != '\0') {
		json_object_set_new(j, "modified_by",
		                    json_string(p->modified_by));
	}
	if (j != NULL && secure && p->sealed != NULL) {
		json_object_set_new(j, "secure", secure_json(p));
	}
	text = j != NULL ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(j);
	if (text == NULL) {
		return mesh_err_set(MESH_ENOMEM, "parameter '%.64s': encoding",
		                    p->name);
	}
	*json = text;
	return MESH_OK;
}

static mesh_err
secure_read(json_t *sj, struct mesh_param *p)
{
	struct mesh_param_sealed *s;
	json_t *keys = json_object_get(sj, "keys"), *k;
	uint8_t *bin = NULL;
	size_t len = 0, i;
	mesh_err err;

	if (!json_is_object(sj) ||
	    !json_is_string(json_object_get(sj, "cipher")) ||
	    strcmp(json_string_value(json_object_get(sj, "cipher")), CIPHER) !=
	            0) {
		return mesh_err_set(MESH_EINVAL,
		                    "field 'secure': not an object with "
		                    "cipher \"%s\"",
		                    CIPHER);
	}
	if (!json_is_array(keys) || json_array_size(keys) == 0 ||
	    json_array_size(keys) > MESH_PARAM_READERS_MAX) {
		return mesh_err_set(MESH_EINVAL,
		                    "field 'secure.keys': not an array of "
		                    "1-%d keys",
		                    MESH_PARAM_READERS_MAX);
	}
	if ((s = p->sealed = calloc(1, sizeof(*s))) == NULL ||
	    (s->keys = calloc(json_array_size(keys), SEALED_KEY_LEN)) ==
	            NULL ||
	    (p->readers = calloc(json_array_size(keys), sizeof(char *))) ==
	            NULL) {
		return mesh_err_set(MESH_ENOMEM, "field 'secure'");
	}
	if ((err = b64_read(sj, "nonce", NONCE_LEN, NONCE_LEN, &bin, &len)) !=
	    MESH_OK) {
		return err;
	}
	memcpy(s->nonce, bin, NONCE_LEN);
	free(bin);
	if ((err = b64_read(sj, "ciphertext", MESH_PARAM_VALUE_MAX + TAG_LEN,
	                    0, &s->ciphertext, &s->ciphertext_len)) !=
	    MESH_OK) {
		return err;
	}
	if (s->ciphertext_len <= TAG_LEN) {
		return mesh_err_set(MESH_EINVAL,
		                    "field 'ciphertext': %zu bytes, shorter "
		                    "than a value and its tag",
		                    s->ciphertext_len);
	}
	json_array_foreach(keys, i, k)
	{
		const char *reader =
		        json_string_value(json_object_get(k, "reader"));
		if (reader_check(p->name, reader) != MESH_OK) {
			return mesh_err_set(MESH_EINVAL,
			                    "field 'secure.keys[%zu].reader': "
			                    "not an identity's name",
			                    i);
		}
		for (size_t m = 0; m < p->n_readers; m++) {
			if (strcmp(p->readers[m], reader) == 0) {
				return mesh_err_set(
				        MESH_EINVAL,
				        "field 'secure.keys[%zu].reader': "
				        "'%s' twice",
				        i, reader);
			}
		}
		if ((err = b64_read(k, "sealed", SEALED_KEY_LEN,
		                    SEALED_KEY_LEN, &bin, &len)) != MESH_OK) {
			return err;
		}
		memcpy(s->keys[i], bin, SEALED_KEY_LEN);
		free(bin);
		if ((p->readers[i] = strdup(reader)) == NULL) {
			return mesh_err_set(MESH_ENOMEM, "field 'secure'");
		}
		p->n_readers = i + 1;
	}
	return MESH_OK;
}

/* A string field, copied (absent: NULL, when optional). */
static mesh_err
str_read(json_t *j, const char *key, bool optional, char **out, size_t *len)
{
	json_t *v = json_object_get(j, key);

	*out = NULL;
	if (v == NULL && optional) {
		return MESH_OK;
	}
	if (!json_is_string(v)) {
		return mesh_err_set(MESH_EINVAL, "field '%s': not a string",
		                    key);
	}
	if ((*out = strdup(json_string_value(v))) == NULL) {
		return mesh_err_set(MESH_ENOMEM, "field '%s'", key);
	}
	if (len != NULL) {
		*len = json_string_length(v);
	}
	return MESH_OK;
}

static mesh_err
decode(json_t *j, struct mesh_param *p)
{
	const char *name = json_string_value(json_object_get(j, "name"));
	const char *by = json_string_value(json_object_get(j, "modified_by"));
	json_t *version = json_object_get(j, "version"),
	       *modified = json_object_get(j, "modified_ms"),
	       *secure = json_object_get(j, "secure");
	mesh_err err;

	if (!json_is_object(j)) {
		return mesh_err_set(MESH_EINVAL, "not a JSON object");
	}
	if (name == NULL || mesh_param_name_check(name) != MESH_OK) {
		return mesh_err_set(MESH_EINVAL, "field 'name': not a "
		                                 "parameter's name");
	}
	snprintf(p->name, sizeof(p->name), "%s", name);
	if ((err = mesh_param_type_parse(
	             json_string_value(json_object_get(j, "type")),
	             &p->type)) != MESH_OK) {
		return mesh_err_set(MESH_EINVAL, "field 'type': %s",
		                    mesh_errdetail());
	}
	if (!json_is_integer(version) || json_integer_value(version) < 1) {
		return mesh_err_set(MESH_EINVAL,
		                    "field 'version': not an integer >= 1");
	}
	p->version = json_integer_value(version);
	if (!json_is_integer(modified) || json_integer_value(modified) < 0) {
		return mesh_err_set(
		        MESH_EINVAL,
		        "field 'modified_ms': not an integer >= 0");
	}
	p->modified_ms = json_integer_value(modified);
	if (by != NULL && reader_check(name, by) != MESH_OK) {
		return mesh_err_set(MESH_EINVAL, "field 'modified_by': not an "
		                                 "identity's name");
	}
	snprintf(p->modified_by, sizeof(p->modified_by), "%s",
	         by != NULL ? by : "");
	if ((err = str_read(j, "description", true, &p->description, NULL)) !=
	            MESH_OK ||
	    (p->description != NULL &&
	     (err = desc_check(name, p->description)) != MESH_OK)) {
		return err;
	}
	if (p->type == MESH_PARAM_SECURE_STRING) {
		if (json_object_get(j, "value") != NULL) {
			return mesh_err_set(MESH_EINVAL,
			                    "field 'value': a SecureString "
			                    "holds no clear value");
		}
		return secure_read(secure, p);
	}
	if (secure != NULL) {
		return mesh_err_set(MESH_EINVAL, "field 'secure': only for a "
		                                 "SecureString");
	}
	if ((err = str_read(j, "value", false, &p->value, &p->value_len)) !=
	    MESH_OK) {
		return err;
	}
	return value_check(name, p->type, p->value, p->value_len);
}

mesh_err
mesh_param_decode(const char *json, size_t len, struct mesh_param *out)
{
	struct mesh_param tmp;
	json_error_t jerr;
	json_t *j = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	mesh_err err;

	if (j == NULL) {
		return mesh_err_set(MESH_EINVAL,
		                    "parameter record: not JSON: %s at offset "
		                    "%d",
		                    jerr.text, jerr.position);
	}
	mesh_param_init(&tmp);
	err = decode(j, &tmp);
	json_decref(j);
	if (err != MESH_OK) {
		char detail[512];
		snprintf(detail, sizeof(detail), "%s", mesh_errdetail());
		err = mesh_err_set(err, "parameter record '%.64s': %s",
		                   tmp.name, detail);
		mesh_param_fini(&tmp);
		return err;
	}
	*out = tmp;
	return MESH_OK;
}

/* ---- sealing -------------------------------------------------------------
 */

/* Encrypt o's value for the writer and o's readers into p (which holds
 * the name already). */
static mesh_err
seal(struct mesh_conn *c, const struct mesh_param_put_opts *o,
     const struct mesh_identity *writer, struct mesh_param *p)
{
	uint8_t key[DATA_KEY_LEN];
	size_t len = strlen(o->value);
	struct mesh_param_sealed *s;
	char what[96];
	mesh_err err = MESH_OK;

	if (sodium_init() < 0) {
		return mesh_err_set(MESH_EINTERNAL, "libsodium did not start");
	}
	if ((s = p->sealed = calloc(1, sizeof(*s))) == NULL ||
	    (s->keys = calloc(o->n_readers + 1, SEALED_KEY_LEN)) == NULL ||
	    (p->readers = calloc(o->n_readers + 1, sizeof(char *))) == NULL ||
	    (s->ciphertext = malloc(len + TAG_LEN)) == NULL) {
		return mesh_err_set(MESH_ENOMEM, "parameter '%.64s'", o->name);
	}
	crypto_aead_xchacha20poly1305_ietf_keygen(key);
	randombytes_buf(s->nonce, sizeof(s->nonce));
	crypto_aead_xchacha20poly1305_ietf_encrypt(
	        s->ciphertext, NULL, (const uint8_t *)o->value, len,
	        (const uint8_t *)p->name, strlen(p->name), NULL, s->nonce,
	        key);
	s->ciphertext_len = len + TAG_LEN;
	snprintf(what, sizeof(what), "parameter '%.64s'", o->name);
	err = mesh__datakey_wrap(c, what, writer, o->readers, o->n_readers,
	                         key, p->readers, s->keys, &p->n_readers);
	sodium_memzero(key, sizeof(key));
	return err;
}

mesh_err
mesh_param_open(struct mesh_param *p, const struct mesh_identity *id)
{
	const struct mesh_param_sealed *s = p->sealed;
	uint8_t key[DATA_KEY_LEN];
	unsigned long long len = 0;
	char *value, what[96];
	mesh_err err;

	if (p->type != MESH_PARAM_SECURE_STRING || p->value != NULL) {
		return MESH_OK;
	}
	if (s == NULL) {
		return mesh_err_set(MESH_EPARSE,
		                    "parameter '%.64s': no ciphertext",
		                    p->name);
	}
	snprintf(what, sizeof(what), "parameter '%.64s'", p->name);
	if ((err = mesh__datakey_unwrap(
	             what, id, p->readers,
	             (const uint8_t(*)[SEALED_KEY_LEN])s->keys, p->n_readers,
	             key)) != MESH_OK) {
		return err;
	}
	if ((value = sodium_malloc(s->ciphertext_len - TAG_LEN + 1)) == NULL) {
		sodium_memzero(key, sizeof(key));
		return mesh_err_set(MESH_ENOMEM, "parameter '%.64s'", p->name);
	}
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(
	            (uint8_t *)value, &len, NULL, s->ciphertext,
	            s->ciphertext_len, (const uint8_t *)p->name,
	            strlen(p->name), s->nonce, key) != 0) {
		sodium_memzero(key, sizeof(key));
		sodium_free(value);
		return mesh_err_set(MESH_EPARSE,
		                    "parameter '%.64s': its ciphertext does "
		                    "not open (altered or damaged)",
		                    p->name);
	}
	sodium_memzero(key, sizeof(key));
	value[len] = '\0';
	p->value = value;
	p->value_len = (size_t)len;
	return MESH_OK;
}

/* ---- the bucket ----------------------------------------------------------
 */

static mesh_err
bucket(struct mesh_conn *c, bool create, kvStore **kv)
{
	return mesh__kv_bucket_history(c, MESH_PARAMS_BUCKET,
	                               MESH_PARAM_HISTORY, MAX_RECORD, create,
	                               "parameters", kv);
}

mesh_err
mesh_param_bucket(struct mesh_conn *c, kvStore **kv)
{
	return bucket(c, true, kv);
}

static mesh_err
not_found(const char *name)
{
	return mesh_err_set(MESH_ENOTFOUND,
	                    "parameter '%.64s': does not exist", name);
}

/* The bucket and name's key, for a call about name (no bucket: name does
 * not exist). */
static mesh_err
open_for(struct mesh_conn *c, const char *name, bool create, kvStore **kv,
         char key[MESH_PARAM_KEY_MAX + 1])
{
	mesh_err err;

	if ((err = mesh_param_key(name, key, MESH_PARAM_KEY_MAX + 1)) !=
	    MESH_OK) {
		return err;
	}
	err = bucket(c, create, kv);
	return err == MESH_ENOTFOUND ? not_found(name) : err;
}

/* An entry's record into *out: MESH_EBROKER when damaged or another
 * name's. */
static mesh_err
entry_decode(kvEntry *e, const char *name, struct mesh_param *out)
{
	mesh_err err = mesh_param_decode(kvEntry_ValueString(e),
	                                 (size_t)kvEntry_ValueLen(e), out);

	if (err == MESH_OK && strcmp(out->name, name) != 0) {
		mesh_param_fini(out);
		err = mesh_err_set(MESH_EINVAL,
		                   "the record of '%.64s' names '%.64s'", name,
		                   out->name);
	}
	if (err == MESH_OK) {
		out->revision = kvEntry_Revision(e);
	} else if (err == MESH_EINVAL) {
		char detail[512];
		snprintf(detail, sizeof(detail), "%s", mesh_errdetail());
		err = mesh_err_set(MESH_EBROKER,
		                   "parameter '%.64s': damaged record: %s",
		                   name, detail);
	}
	return err;
}

/* Every version kept of key, oldest first (puts only). */
static mesh_err
history(kvStore *kv, const char *name, const char *key,
        struct mesh_param **out, size_t *n, bool skip_damaged)
{
	kvEntryList list = {0};
	struct mesh_param *ps = NULL;
	natsStatus st = kvStore_History(&list, kv, key, NULL);
	mesh_err err = MESH_OK;
	size_t k = 0;

	*out = NULL;
	*n = 0;
	if (st == NATS_NOT_FOUND) {
		return not_found(name);
	}
	if (st != NATS_OK) {
		return mesh_err_nats(st, 0, "parameter '%.64s': history",
		                     name);
	}
	if (list.Count > 0 &&
	    (ps = calloc((size_t)list.Count, sizeof(*ps))) == NULL) {
		kvEntryList_Destroy(&list);
		return mesh_err_set(MESH_ENOMEM, "parameter '%.64s'", name);
	}
	for (int i = 0; i < list.Count; i++) {
		kvEntry *e = list.Entries[i];
		if (kvEntry_Operation(e) != kvOp_Put) {
			/* Versions before a delete are gone with it. */
			mesh_param_list_free(ps, k);
			ps = calloc((size_t)list.Count, sizeof(*ps));
			k = 0;
			if (ps == NULL) {
				err = mesh_err_set(MESH_ENOMEM, "history");
				break;
			}
			continue;
		}
		err = entry_decode(e, name, &ps[k]);
		if (err == MESH_OK) {
			k++;
		} else if (err != MESH_EBROKER || !skip_damaged) {
			break;
		}
		err = MESH_OK;
	}
	kvEntryList_Destroy(&list);
	if (err == MESH_OK && k == 0) {
		err = not_found(name);
	}
	if (err != MESH_OK) {
		mesh_param_list_free(ps, k);
		return err;
	}
	*out = ps;
	*n = k;
	return MESH_OK;
}

mesh_err
mesh_param_read(struct mesh_conn *c, const char *name, int64_t version,
                struct mesh_param *out)
{
	char key[MESH_PARAM_KEY_MAX + 1];
	struct mesh_param *ps = NULL;
	kvStore *kv = NULL;
	kvEntry *e = NULL;
	size_t n = 0;
	natsStatus st;
	mesh_err err;

	if (version < 0) {
		return mesh_err_set(MESH_EINVAL,
		                    "parameter '%.64s': version %" PRId64
		                    ": must be 1 or more",
		                    name, version);
	}
	if ((err = open_for(c, name, false, &kv, key)) != MESH_OK) {
		return err;
	}
	if (version == 0) {
		st = kvStore_Get(&e, kv, key);
		if (st == NATS_NOT_FOUND) {
			err = not_found(name);
		} else if (st != NATS_OK) {
			err = mesh_err_nats(st, 0, "parameter '%.64s'", name);
		} else {
			err = entry_decode(e, name, out);
		}
		kvEntry_Destroy(e);
		kvStore_Destroy(kv);
		return err;
	}
	err = history(kv, name, key, &ps, &n, true);
	kvStore_Destroy(kv);
	if (err != MESH_OK) {
		return err;
	}
	err = mesh_err_set(MESH_ENOTFOUND,
	                   "parameter '%.64s': no version %" PRId64
	                   " (versions kept: %" PRId64 "-%" PRId64 ")",
	                   name, version, ps[0].version, ps[n - 1].version);
	for (size_t i = 0; i < n; i++) {
		if (ps[i].version == version) {
			*out = ps[i];
			mesh_param_init(&ps[i]);
			err = MESH_OK;
			break;
		}
	}
	mesh_param_list_free(ps, n);
	return err;
}

/* The version after the last one of key (1 when there is none). */
static int64_t
next_version(kvStore *kv, const char *name, const char *key, kvEntry *last)
{
	struct mesh_param p, *ps = NULL;
	int64_t v = 0;
	size_t n = 0;

	mesh_param_init(&p);
	if (last == NULL) {
		return 1;
	}
	if (entry_decode(last, name, &p) == MESH_OK) {
		v = p.version;
		mesh_param_fini(&p);
		return v + 1;
	}
	/* A damaged last record: after the highest one that reads. */
	if (history(kv, name, key, &ps, &n, true) == MESH_OK) {
		for (size_t i = 0; i < n; i++) {
			v = ps[i].version > v ? ps[i].version : v;
		}
		mesh_param_list_free(ps, n);
	}
	return v + 1;
}

mesh_err
mesh_param_put(struct mesh_conn *c, const struct mesh_param_put_opts *o,
               const struct mesh_identity *writer, int64_t *version)
{
	char key[MESH_PARAM_KEY_MAX + 1], *text = NULL;
	struct mesh_param p;
	kvStore *kv = NULL;
	mesh_err err;

	if ((err = opts_check(o, writer)) != MESH_OK) {
		return err;
	}
	mesh_param_init(&p);
	snprintf(p.name, sizeof(p.name), "%s", o->name);
	p.type = o->type;
	if (writer != NULL) {
		snprintf(p.modified_by, sizeof(p.modified_by), "%s",
		         mesh_identity_name(writer));
	}
	if (o->description != NULL &&
	    (p.description = strdup(o->description)) == NULL) {
		return mesh_err_set(MESH_ENOMEM, "parameter '%.64s'", o->name);
	}
	if ((err = open_for(c, o->name, true, &kv, key)) != MESH_OK) {
		goto out;
	}
	if (o->type == MESH_PARAM_SECURE_STRING) {
		err = seal(c, o, writer, &p);
	} else if ((p.value = strdup(o->value)) == NULL) {
		err = mesh_err_set(MESH_ENOMEM, "parameter '%.64s'", o->name);
	} else {
		p.value_len = strlen(p.value);
	}
	for (int i = 0; err == MESH_OK && i < PUT_RETRIES; i++) {
		kvEntry *e = NULL;
		natsStatus st = kvStore_Get(&e, kv, key);
		uint64_t rev = 0;
		if (st != NATS_OK && st != NATS_NOT_FOUND) {
			err = mesh_err_nats(st, 0, "parameter '%.64s'",
			                    o->name);
			break;
		}
		if (e != NULL && !o->overwrite) {
			kvEntry_Destroy(e);
			err = mesh_err_set(
			        MESH_EEXIST,
			        "parameter '%.64s' exists (overwrite "
			        "it to store a new version)",
			        o->name);
			break;
		}
		p.version = next_version(kv, o->name, key, e);
		p.modified_ms = now_ms();
		rev = e != NULL ? kvEntry_Revision(e) : 0;
		kvEntry_Destroy(e);
		free(text);
		text = NULL;
		if ((err = mesh_param_encode(&p, &text)) != MESH_OK) {
			break;
		}
		st = rev != 0 ? kvStore_Update(NULL, kv, key, text,
		                               (int)strlen(text), rev)
		              : kvStore_Create(NULL, kv, key, text,
		                               (int)strlen(text));
		if (st == NATS_OK) {
			if (version != NULL) {
				*version = p.version;
			}
			break;
		}
		/* Changed (or made) by another between the two calls. */
		err = mesh_err_nats(st, 0, "parameter '%.64s': storing",
		                    o->name);
		if (i + 1 < PUT_RETRIES) {
			err = MESH_OK;
		} else {
			err = mesh_err_set(
			        MESH_ESTALE,
			        "parameter '%.64s': changed by others "
			        "while storing, %d times",
			        o->name, PUT_RETRIES);
		}
	}
out:
	free(text);
	mesh_param_fini(&p);
	kvStore_Destroy(kv);
	return err;
}

mesh_err
mesh_param_history(struct mesh_conn *c, const char *name,
                   struct mesh_param **out, size_t *n)
{
	char key[MESH_PARAM_KEY_MAX + 1];
	kvStore *kv = NULL;
	mesh_err err;

	*out = NULL;
	*n = 0;
	if ((err = open_for(c, name, false, &kv, key)) != MESH_OK) {
		return err;
	}
	err = history(kv, name, key, out, n, true);
	kvStore_Destroy(kv);
	return err;
}

/* Whether name is below path (its child; recursive: at any depth). */
static bool
below(const char *name, const char *path, bool recursive)
{
	size_t pl = strcmp(path, "/") == 0 ? 0 : strlen(path);
	const char *rest;

	if (pl == 0 && name[0] != '/') {
		return true; /* a name without hierarchy is at the root */
	}
	if (strncmp(name, path, pl) != 0 || name[pl] != '/') {
		return false;
	}
	rest = name + pl + 1;
	return recursive || strchr(rest, '/') == NULL;
}

static int
by_name(const void *a, const void *b)
{
	return strcmp(((const struct mesh_param *)a)->name,
	              ((const struct mesh_param *)b)->name);
}

mesh_err
mesh_param_list(struct mesh_conn *c, const char *path, bool recursive,
                struct mesh_param **out, size_t *n)
{
	char name[MESH_PARAM_NAME_MAX + 1];
	struct mesh_param *ps = NULL;
	kvKeysList keys = {0};
	kvStore *kv = NULL;
	size_t nk = 0, k = 0;
	mesh_err err;

	*out = NULL;
	*n = 0;
	if (path != NULL && (err = mesh_param_path_check(path)) != MESH_OK) {
		return err;
	}
	if ((err = bucket(c, false, &kv)) == MESH_ENOTFOUND) {
		return MESH_OK;
	}
	if (err != MESH_OK ||
	    (err = mesh__records_keys(kv, &keys, &nk)) != MESH_OK) {
		kvStore_Destroy(kv);
		return err;
	}
	if (nk > 0 && (ps = calloc(nk, sizeof(*ps))) == NULL) {
		err = mesh_err_set(MESH_ENOMEM, "listing parameters");
	}
	for (size_t i = 0; err == MESH_OK && i < nk; i++) {
		kvEntry *e = NULL;
		natsStatus st;
		if (mesh_param_name_of_key(keys.Keys[i], name, sizeof(name)) !=
		            MESH_OK ||
		    (path != NULL && !below(name, path, recursive))) {
			continue;
		}
		if ((st = kvStore_Get(&e, kv, keys.Keys[i])) ==
		    NATS_NOT_FOUND) {
			continue; /* deleted meanwhile */
		}
		if (st != NATS_OK) {
			err = mesh_err_nats(st, 0, "parameter '%.64s'", name);
			break;
		}
		if (entry_decode(e, name, &ps[k]) != MESH_OK) {
			mesh_param_init(&ps[k]);
			snprintf(ps[k].name, sizeof(ps[k].name), "%s", name);
		}
		kvEntry_Destroy(e);
		k++;
	}
	if (nk > 0) {
		kvKeysList_Destroy(&keys);
	}
	kvStore_Destroy(kv);
	if (err != MESH_OK) {
		mesh_param_list_free(ps, k);
		return err;
	}
	if (k > 1) {
		qsort(ps, k, sizeof(*ps), by_name);
	}
	*out = ps;
	*n = k;
	return MESH_OK;
}

void
mesh_param_list_free(struct mesh_param *ps, size_t n)
{
	for (size_t i = 0; ps != NULL && i < n; i++) {
		mesh_param_fini(&ps[i]);
	}
	free(ps);
}

mesh_err
mesh_param_delete(struct mesh_conn *c, const char *name)
{
	char key[MESH_PARAM_KEY_MAX + 1];
	kvStore *kv = NULL;
	kvEntry *e = NULL;
	natsStatus st;
	mesh_err err;

	if ((err = open_for(c, name, false, &kv, key)) != MESH_OK) {
		return err;
	}
	st = kvStore_Get(&e, kv, key);
	kvEntry_Destroy(e);
	if (st == NATS_NOT_FOUND) {
		err = not_found(name);
	} else if (st != NATS_OK) {
		err = mesh_err_nats(st, 0, "parameter '%.64s'", name);
	} else if ((st = kvStore_Purge(kv, key, NULL)) != NATS_OK) {
		err = mesh_err_nats(st, 0, "parameter '%.64s': deleting",
		                    name);
	}
	kvStore_Destroy(kv);
	return err;
}
