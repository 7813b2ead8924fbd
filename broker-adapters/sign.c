/* sign.c: signed events, RequireSigners lists and verifiers (see
 * mesh/sign.h; the canonical form is in the README's "Signed events"). */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "internal.h"
#include "mesh/clock.h"
#include "mesh/queue.h"
#include "mesh/sign.h"
#include "mesh/topic.h"
#include "mesh/wire.h"

/* ---- the canonical form --------------------------------------------------
 */

struct out {
	uint8_t *p;
	size_t len, cap;
	bool failed;
};

static void
put(struct out *o, const void *data, size_t len)
{
	if (o->failed) {
		return;
	}
	if (o->len + len > o->cap) {
		size_t cap = o->cap ? o->cap : 512;
		uint8_t *p;
		while (cap < o->len + len) {
			cap *= 2;
		}
		if ((p = realloc(o->p, cap)) == NULL) {
			o->failed = true;
			return;
		}
		o->p = p;
		o->cap = cap;
	}
	if (len > 0) {
		memcpy(o->p + o->len, data, len);
	}
	o->len += len;
}

static void
put_u8(struct out *o, uint8_t v)
{
	put(o, &v, 1);
}

static void
put_be(struct out *o, uint64_t v, int bytes)
{
	uint8_t b[8];

	for (int i = 0; i < bytes; i++) {
		b[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
	}
	put(o, b, (size_t)bytes);
}

/* Length-prefixed: u32 big-endian length, then the bytes. */
static void
put_lp(struct out *o, const void *data, size_t len)
{
	put_be(o, len, 4);
	put(o, data, len);
}

static void
put_str(struct out *o, const char *s)
{
	put_lp(o, s, strlen(s));
}

static void
put_time(struct out *o, int64_t sec, int32_t nsec)
{
	put_be(o, (uint64_t)sec, 8);
	put_be(o, (uint64_t)(uint32_t)nsec, 4);
}

/* An optional string: 0x00 absent, or 0x01 and the string. */
static void
put_opt(struct out *o, const char *s)
{
	put_u8(o, s != NULL);
	if (s != NULL) {
		put_str(o, s);
	}
}

/* The context attributes with places of their own in the form. */
static bool
placed(const char *name)
{
	return strcmp(name, "subject") == 0 || strcmp(name, "time") == 0 ||
	       strcmp(name, "datacontenttype") == 0 ||
	       strcmp(name, "dataschema") == 0 ||
	       strcmp(name, MESH_SIG_EXT) == 0;
}

static int
name_cmp(const void *a, const void *b)
{
	/* strcmp compares as unsigned char: UTF-8 bytes, bytewise. */
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

mesh_err
mesh_event_canonical(const struct mesh_event *ev, uint8_t **buf, size_t *len)
{
	const char *names[MESH_EVENT_MAX_EXTS];
	struct out o = {0};
	struct mesh_ext_value v;
	const void *data;
	const char *type_url;
	uint8_t hash[crypto_hash_sha256_BYTES];
	size_t n = 0, dlen;
	mesh_data_kind kind;
	int64_t sec;
	int32_t nsec;

	put_str(&o, MESH_SIG_DOMAIN);
	put_str(&o, mesh_event_specversion(ev));
	put_str(&o, mesh_event_id(ev));
	put_str(&o, mesh_event_source(ev));
	put_str(&o, mesh_event_type(ev));
	put_opt(&o, mesh_event_subject(ev));
	put_u8(&o, mesh_event_time(ev, &sec, &nsec));
	if (mesh_event_time(ev, &sec, &nsec)) {
		put_time(&o, sec, nsec);
	}
	put_opt(&o, mesh_event_datacontenttype(ev));
	put_opt(&o, mesh_event_dataschema(ev));
	kind = mesh_event_data(ev, &data, &dlen, &type_url);
	put_u8(&o, (uint8_t)kind);
	put_str(&o, kind == MESH_DATA_PROTO && type_url ? type_url : "");
	crypto_hash_sha256(hash, dlen > 0 ? data : (const void *)"", dlen);
	put(&o, hash, sizeof(hash));
	for (size_t i = 0; i < mesh_event_ext_count(ev); i++) {
		const char *name = mesh_event_ext_at(ev, i, NULL);
		if (!placed(name) && n < MESH_EVENT_MAX_EXTS) {
			names[n++] = name;
		}
	}
	qsort(names, n, sizeof(*names), name_cmp);
	put_be(&o, n, 4);
	for (size_t i = 0; i < n; i++) {
		mesh_event_ext_get(ev, names[i], &v);
		put_str(&o, names[i]);
		put_u8(&o, (uint8_t)v.type);
		switch (v.type) {
		case MESH_EXT_BOOL:
			put_u8(&o, v.boolean ? 1 : 0);
			break;
		case MESH_EXT_INT:
			put_be(&o, (uint64_t)(uint32_t)v.integer, 4);
			break;
		case MESH_EXT_STRING:
		case MESH_EXT_URI:
		case MESH_EXT_URIREF:
			put_lp(&o, v.string, v.len);
			break;
		case MESH_EXT_BYTES:
			put_lp(&o, v.bytes, v.len);
			break;
		case MESH_EXT_TIME:
			put_time(&o, v.sec, v.nsec);
			break;
		}
	}
	if (o.failed) {
		free(o.p);
		return mesh_err_set(MESH_ENOMEM, "event %s: canonical form",
		                    mesh_event_id(ev));
	}
	*buf = o.p;
	*len = o.len;
	return MESH_OK;
}

static mesh_err
set_string(struct mesh_event *ev, const char *name, const char *s)
{
	struct mesh_ext_value v = {
	        .type = MESH_EXT_STRING, .string = s, .len = strlen(s)};

	return mesh_event_ext_set(ev, name, &v);
}

mesh_err
mesh_event_sign(struct mesh_event *ev, const struct mesh_identity *id)
{
	uint8_t sig[MESH_IDENTITY_SIG_LEN], *buf = NULL;
	char b64[sodium_base64_ENCODED_LEN(MESH_IDENTITY_SIG_LEN,
	                                   sodium_base64_VARIANT_ORIGINAL)];
	size_t len;
	mesh_err err;

	(void)mesh_event_ext_remove(ev, MESH_SIG_EXT);
	if (!mesh_event_time(ev, NULL, NULL)) {
		int64_t now = mesh_wall_ms();
		if ((err = mesh_event_set_time(ev, now / 1000,
		                               (int32_t)(now % 1000) *
		                                       1000000)) != MESH_OK) {
			return err;
		}
	}
	if ((err = set_string(ev, MESH_SIG_SIGNER_EXT,
	                      mesh_identity_name(id))) != MESH_OK ||
	    (err = set_string(ev, MESH_SIG_KEYID_EXT,
	                      mesh_identity_public(id))) != MESH_OK ||
	    (err = mesh_event_canonical(ev, &buf, &len)) != MESH_OK) {
		return err;
	}
	mesh_identity_sign(id, buf, len, sig);
	free(buf);
	sodium_bin2base64(b64, sizeof(b64), sig, sizeof(sig),
	                  sodium_base64_VARIANT_ORIGINAL);
	return set_string(ev, MESH_SIG_EXT, b64);
}

const char *
mesh_sig_verdict_name(mesh_sig_verdict v)
{
	switch (v) {
	case MESH_SIG_OK:
		return "ok";
	case MESH_SIG_MISSING:
		return "missing";
	case MESH_SIG_MALFORMED:
		return "malformed";
	case MESH_SIG_UNKNOWN_KEY:
		return "unknown key";
	case MESH_SIG_FORGED:
		return "forged";
	case MESH_SIG_STALE:
		return "stale";
	}
	return "?";
}

static mesh_sig_verdict verdict(mesh_sig_verdict v, char *reason, size_t size,
                                const char *fmt, ...) MESH_PRINTF(4, 5);

static mesh_sig_verdict
verdict(mesh_sig_verdict v, char *reason, size_t size, const char *fmt, ...)
{
	va_list ap;

	if (reason != NULL && size > 0) {
		va_start(ap, fmt);
		vsnprintf(reason, size, fmt, ap);
		va_end(ap);
		mesh_text_clean(reason); /* it quotes the producer */
	}
	return v;
}

/* A string extension, or NULL. */
static const char *
ext_string(const struct mesh_event *ev, const char *name, size_t *len)
{
	struct mesh_ext_value v;

	if (mesh_event_ext_get(ev, name, &v) != MESH_OK ||
	    v.type != MESH_EXT_STRING) {
		return NULL;
	}
	*len = v.len;
	return v.string;
}

mesh_sig_verdict
mesh_event_verify(const struct mesh_event *ev,
                  const struct mesh_key_record *keys, size_t n,
                  int64_t max_age_ms, int64_t now_ms, char *reason,
                  size_t size)
{
	const struct mesh_key_record *k = NULL;
	const char *sig64, *signer, *keyid;
	uint8_t sig[MESH_IDENTITY_SIG_LEN], *buf = NULL;
	size_t slen = 0, nlen = 0, klen = 0, bin = 0, len;
	int64_t sec, t;
	int32_t nsec;
	char when[32];
	bool good;

	if (reason != NULL && size > 0) {
		reason[0] = '\0';
	}
	if (mesh_event_ext_get(ev, MESH_SIG_EXT,
	                       &(struct mesh_ext_value){0}) != MESH_OK) {
		return verdict(MESH_SIG_MISSING, reason, size,
		               "signature: missing");
	}
	if ((sig64 = ext_string(ev, MESH_SIG_EXT, &slen)) == NULL ||
	    sodium_base642bin(sig, sizeof(sig), sig64, slen, NULL, &bin, NULL,
	                      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    bin != sizeof(sig)) {
		return verdict(MESH_SIG_MALFORMED, reason, size,
		               "signature: malformed: %s is not 64 bytes in "
		               "base64",
		               MESH_SIG_EXT);
	}
	signer = ext_string(ev, MESH_SIG_SIGNER_EXT, &nlen);
	keyid = ext_string(ev, MESH_SIG_KEYID_EXT, &klen);
	if (signer == NULL || keyid == NULL ||
	    klen != MESH_IDENTITY_PUBLIC_LEN || keyid[0] != 'U' || nlen == 0 ||
	    nlen > MESH_IDENTITY_NAME_MAX) {
		return verdict(MESH_SIG_MALFORMED, reason, size,
		               "signature: malformed: %s or %s missing or "
		               "not a signer's name and a key U...",
		               MESH_SIG_SIGNER_EXT, MESH_SIG_KEYID_EXT);
	}
	for (size_t i = 0; i < n && k == NULL; i++) {
		if (strcmp(keys[i].public_key, keyid) == 0 &&
		    strcmp(keys[i].name, signer) == 0) {
			k = &keys[i];
		}
	}
	if (k == NULL) {
		return verdict(MESH_SIG_UNKNOWN_KEY, reason, size,
		               "signature: unknown key %.56s (signer '%.64s')",
		               keyid, signer);
	}
	if (mesh_event_canonical(ev, &buf, &len) != MESH_OK) {
		/* Out of memory: said as forged would be a lie; the caller
		 * sees MALFORMED only for the producer's faults, so this
		 * counts as not verified. */
		return verdict(MESH_SIG_FORGED, reason, size,
		               "signature: not verified (out of memory)");
	}
	good = mesh_identity_verify(k->public_key, buf, len, sig);
	free(buf);
	if (!good) {
		return verdict(MESH_SIG_FORGED, reason, size,
		               "signature: forged (signer '%s', key %s)",
		               k->name, k->public_key);
	}
	if (!mesh_event_time(ev, &sec, &nsec)) {
		return verdict(MESH_SIG_STALE, reason, size,
		               "signature: stale event time: none");
	}
	t = sec * 1000 + nsec / 1000000;
	if (max_age_ms <= 0) {
		max_age_ms = MESH_SIG_MAX_AGE_MS;
	}
	if (t < now_ms - max_age_ms || t > now_ms + MESH_SIG_FUTURE_MS) {
		mesh_time_format(sec, when);
		return verdict(
		        MESH_SIG_STALE, reason, size,
		        "signature: stale event time %s (%s %" PRId64 " s)",
		        when, t < now_ms ? "older than" : "ahead by more than",
		        t < now_ms ? max_age_ms / 1000
		                   : (int64_t)MESH_SIG_FUTURE_MS / 1000);
	}
	return MESH_SIG_OK;
}

mesh_err
mesh_key_record_from_public(const char *name, const char *public_key,
                            struct mesh_key_record *out)
{
	unsigned char pk[crypto_sign_PUBLICKEYBYTES];
	mesh_err err;

	if ((err = mesh_name_check("key", name, MESH_IDENTITY_NAME_MAX,
	                           NULL)) != MESH_OK) {
		return err;
	}
	if (public_key == NULL ||
	    strlen(public_key) != MESH_IDENTITY_PUBLIC_LEN ||
	    mesh__nkey_public_decode(public_key, pk) != MESH_OK ||
	    sodium_init() < 0 ||
	    crypto_sign_ed25519_pk_to_curve25519(out->curve, pk) != 0) {
		return mesh_err_set(MESH_EINVAL,
		                    "key '%s': '%.64s' is not a user public "
		                    "key (U..., %d characters)",
		                    name, public_key ? public_key : "",
		                    MESH_IDENTITY_PUBLIC_LEN);
	}
	snprintf(out->name, sizeof(out->name), "%s", name);
	memcpy(out->public_key, public_key, MESH_IDENTITY_PUBLIC_LEN + 1);
	out->created_ms = mesh_wall_ms();
	out->revision = 0;
	return MESH_OK;
}

/* ---- RequireSigners ------------------------------------------------------
 */

/* A list of identity names, "A,B", of the attribute attr ("RequireSigners",
 * "Readers"), each a noun ("signer", "reader"): shared by RequireSigners
 * and seal.c's Readers. */
mesh_err
mesh__names_parse(const char *what, const char *attr, const char *noun,
                  const char *text, char names[][MESH_IDENTITY_NAME_MAX + 1],
                  size_t *n)
{
	const char *p = text;

	*n = 0;
	if (text == NULL || text[0] == '\0') {
		return MESH_OK;
	}
	for (;;) {
		size_t len = strcspn(p, ",");
		char name[MESH_IDENTITY_NAME_MAX + 1] = "";
		if (len > 0 && len <= MESH_IDENTITY_NAME_MAX) {
			memcpy(name, p, len);
			name[len] = '\0';
		}
		if (name[0] == '\0' ||
		    mesh_name_check(noun, name, MESH_IDENTITY_NAME_MAX,
		                    NULL) != MESH_OK) {
			return mesh_err_set(MESH_EINVAL,
			                    "%s: %s: %s '%.*s' is not a name "
			                    "(1-%d of [A-Za-z0-9_-])",
			                    what, attr, noun,
			                    (int)(len < 80 ? len : 80), p,
			                    MESH_IDENTITY_NAME_MAX);
		}
		for (size_t i = 0; i < *n; i++) {
			if (strcmp(names[i], name) == 0) {
				return mesh_err_set(MESH_EINVAL,
				                    "%s: %s: %s '%s' is named "
				                    "twice",
				                    what, attr, noun, name);
			}
		}
		if (*n == MESH_SIGNERS_MAX) {
			return mesh_err_set(MESH_EINVAL,
			                    "%s: %s: more than %d %ss", what,
			                    attr, MESH_SIGNERS_MAX, noun);
		}
		memcpy(names[(*n)++], name, len + 1);
		if (p[len] == '\0') {
			return MESH_OK;
		}
		p += len + 1;
	}
}

mesh_err
mesh__names_check(struct mesh_conn *c, const char *what, const char *attr,
                  const char *noun, const char *text)
{
	char names[MESH_SIGNERS_MAX][MESH_IDENTITY_NAME_MAX + 1];
	struct mesh_key_record k;
	size_t n;
	mesh_err err;

	if ((err = mesh__names_parse(what, attr, noun, text, names, &n)) !=
	    MESH_OK) {
		return err;
	}
	for (size_t i = 0; i < n; i++) {
		err = mesh_keys_get(c, names[i], &k);
		if (err == MESH_ENOTFOUND) {
			return mesh_err_set(MESH_ENOTFOUND,
			                    "%s: %s: %s '%s' has no key in %s "
			                    "(meshctl key create/add)",
			                    what, attr, noun, names[i],
			                    MESH_KEYS_BUCKET);
		}
		if (err != MESH_OK) {
			return err;
		}
	}
	return MESH_OK;
}

mesh_err
mesh_signers_parse(const char *what, const char *text,
                   char names[][MESH_IDENTITY_NAME_MAX + 1], size_t *n)
{
	return mesh__names_parse(what, "RequireSigners", "signer", text, names,
	                         n);
}

mesh_err
mesh_signers_check(struct mesh_conn *c, const char *what, const char *text)
{
	return mesh__names_check(c, what, "RequireSigners", "signer", text);
}

/* ---- verifiers -----------------------------------------------------------
 */

struct mesh_verifier {
	struct mesh_conn *c;
	bool topic; /* else a queue */
	char name[MESH_TOPIC_NAME_MAX + 1];
	int64_t max_age_ms;
	pthread_mutex_t mu;
	/* Under mu: */
	bool required;
	struct mesh_key_record keys[MESH_SIGNERS_MAX];
	size_t n_keys;
	int64_t next_ms;      /* the next refresh (monotonic) */
	int64_t next_unknown; /* the earliest refresh for an unknown key */
	bool refreshing;      /* one thread reads the broker at a time */
};

/* Read the target's RequireSigners and its signers' keys. */
static mesh_err
load(struct mesh_verifier *v, bool *required,
     struct mesh_key_record keys[MESH_SIGNERS_MAX], size_t *n_keys)
{
	char names[MESH_SIGNERS_MAX][MESH_IDENTITY_NAME_MAX + 1];
	char what[MESH_TOPIC_NAME_MAX + 16];
	const char *text;
	struct mesh_topic_info ti;
	struct mesh_queue_info qi;
	size_t n = 0;
	mesh_err err;

	if (v->topic) {
		err = mesh_topic_info(v->c, v->name, &ti);
		text = ti.a.require_signers;
	} else {
		err = mesh_queue_info(v->c, v->name, &qi);
		text = qi.attrs.require_signers;
	}
	snprintf(what, sizeof(what), "%s '%s'", v->topic ? "topic" : "queue",
	         v->name);
	if (err != MESH_OK ||
	    (err = mesh_signers_parse(what, text, names, &n)) != MESH_OK) {
		return err;
	}
	*required = n > 0;
	*n_keys = 0;
	for (size_t i = 0; i < n; i++) {
		err = mesh_keys_get(v->c, names[i], &keys[*n_keys]);
		if (err == MESH_OK) {
			(*n_keys)++;
		} else if (err != MESH_ENOTFOUND) {
			return err; /* a key deleted is no key: go on */
		}
	}
	return MESH_OK;
}

mesh_err
mesh_verifier_new(struct mesh_conn *c, const char *target, int64_t max_age_ms,
                  struct mesh_verifier **out)
{
	struct mesh_verifier *v;
	const char *name;
	bool topic;
	mesh_err err;

	if (strncmp(target, "topic:", 6) == 0) {
		topic = true;
		name = target + 6;
	} else if (strncmp(target, "queue:", 6) == 0) {
		topic = false;
		name = target + 6;
	} else {
		return mesh_err_set(MESH_EINVAL,
		                    "verifier of '%.64s': want topic:NAME or "
		                    "queue:NAME",
		                    target);
	}
	if ((err = topic ? mesh_topic_name_check(name, NULL)
	                 : mesh_queue_name_check(name, NULL)) != MESH_OK) {
		return err;
	}
	if ((v = calloc(1, sizeof(*v))) == NULL) {
		return mesh_err_set(MESH_ENOMEM, "verifier of %s", target);
	}
	v->c = c;
	v->topic = topic;
	snprintf(v->name, sizeof(v->name), "%s", name);
	v->max_age_ms = max_age_ms > 0 ? max_age_ms : MESH_SIG_MAX_AGE_MS;
	if ((err = load(v, &v->required, v->keys, &v->n_keys)) != MESH_OK) {
		free(v);
		return err;
	}
	pthread_mutex_init(&v->mu, NULL);
	v->next_ms = mesh_mono_ms() + MESH_VERIFIER_REFRESH_MS;
	*out = v;
	return MESH_OK;
}

void
mesh_verifier_free(struct mesh_verifier *v)
{
	if (v != NULL) {
		pthread_mutex_destroy(&v->mu);
		free(v);
	}
}

/* Read again when due (or, with unknown, when an event named a key we do
 * not have), in this thread, without holding mu while the broker
 * answers. */
static void
refresh(struct mesh_verifier *v, bool unknown)
{
	struct mesh_key_record keys[MESH_SIGNERS_MAX];
	int64_t now = mesh_mono_ms();
	size_t n = 0;
	bool required = false, go;

	pthread_mutex_lock(&v->mu);
	go = !v->refreshing &&
	     (now >= v->next_ms || (unknown && now >= v->next_unknown));
	if (go) {
		v->refreshing = true;
	}
	pthread_mutex_unlock(&v->mu);
	if (!go) {
		return;
	}
	mesh_err err = load(v, &required, keys, &n);
	pthread_mutex_lock(&v->mu);
	if (err == MESH_OK) {
		v->required = required;
		memcpy(v->keys, keys, n * sizeof(*keys));
		v->n_keys = n;
	}
	v->refreshing = false;
	v->next_ms = mesh_mono_ms() + MESH_VERIFIER_REFRESH_MS;
	v->next_unknown = mesh_mono_ms() + 1000;
	pthread_mutex_unlock(&v->mu);
}

bool
mesh_verifier_required(struct mesh_verifier *v)
{
	bool r;

	refresh(v, false);
	pthread_mutex_lock(&v->mu);
	r = v->required;
	pthread_mutex_unlock(&v->mu);
	return r;
}

mesh_sig_verdict
mesh_verifier_check(struct mesh_verifier *v, const struct mesh_event *ev,
                    char *reason, size_t size)
{
	struct mesh_key_record keys[MESH_SIGNERS_MAX];
	mesh_sig_verdict r = MESH_SIG_OK;
	size_t n;
	bool required;

	for (int round = 0; round < 2; round++) {
		refresh(v, round == 1);
		pthread_mutex_lock(&v->mu);
		required = v->required;
		n = v->n_keys;
		memcpy(keys, v->keys, n * sizeof(*keys));
		pthread_mutex_unlock(&v->mu);
		if (!required) {
			if (reason != NULL && size > 0) {
				reason[0] = '\0';
			}
			return MESH_SIG_OK;
		}
		r = mesh_event_verify(ev, keys, n, v->max_age_ms,
		                      mesh_wall_ms(), reason, size);
		if (r != MESH_SIG_UNKNOWN_KEY) {
			break;
		}
	}
	return r;
}
