/* Signed events without a broker: the canonical form and its test vector
 * (the README's "Signed events" prints the same bytes: they cannot drift
 * apart), and each verdict of mesh_event_verify. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "harness.h"
#include "internal.h"
#include "mesh/mesh.h"
#include "mesh/sign.h"

/* The test vector: the README shows these. */
#define VEC_SIGNER "alice"
#define VEC_ID     "0190d5a0-0000-7000-8000-000000000001"
#define VEC_TIME   1767225600 /* 2026-01-01T00:00:00Z */
/* Raw seed bytes 00 01 .. 1f as an NKey user seed, and its public key. */
#define VEC_SEED   "SUAAAAICAMCAKBQHBAEQUCYMBUHA6EARCIJRIFIWC4MBSGQ3DQOR4H776Y"
#define VEC_PUBLIC "UAB2CB576PHBBPQ5ODORRZ2LYCMWPZGWGCN2KDK7DXOIMZASKUY3RLKK"
#define VEC_CANONICAL                                                         \
	"0000000d65766d6573682d7369672d763100000003312e300000002430313930"    \
	"643561302d303030302d373030302d383030302d303030303030303030303031"    \
	"000000102f70726f6475636572732f616c6963650000001065766d6573682e74"    \
	"6573742e50696e6701000000076f726465722d3101000000006955b900000000"    \
	"00010000000a746578742f706c61696e0002000000002cf24dba5fb0a30e26e8"    \
	"3b2ac5b9e29e1b161e5c1fa7425e73043362938b982400000003000000096d65"    \
	"73686b657969640300000038554142324342353736504842425051354f444f52"    \
	"525a324c59434d57505a475747434e324b444b3744584f494d5a41534b555933"    \
	"524c4b4b0000000a6d6573687369676e65720300000005616c69636500000006"    \
	"726567696f6e03000000026575"
#define VEC_SIGNATURE                                                         \
	"7b670d1f2ef02bbcf290e2d487a5465132108a9e5a11a555ad58eaa378a19656"    \
	"b67ee0272efef10f6dd47a69387ea1516463039615579d4da834baa918455502"

static char dir[] = "/tmp/test_sign.XXXXXX";

static struct mesh_identity *
identity(const char *name, const unsigned char raw[32])
{
	char path[256], seed[MESH__NKEY_SEED_LEN + 1];
	struct mesh_identity *id = NULL;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s.nk", dir, name);
	mesh__nkey_seed_encode(raw, seed);
	unlink(path);
	if ((f = fopen(path, "w")) == NULL) {
		return NULL;
	}
	fprintf(f, "%s\n", seed);
	fclose(f);
	chmod(path, 0600);
	if (mesh_identity_load(name, path, &id) != MESH_OK) {
		tap_diag("load: %s", mesh_errdetail());
	}
	return id;
}

static struct mesh_event *
vector_event(void)
{
	struct mesh_event *ev = NULL;

	mesh_event_new("evmesh.test.Ping", "/producers/alice", &ev);
	mesh_event_set_id(ev, VEC_ID);
	mesh_event_set_time(ev, VEC_TIME, 0);
	mesh_event_set_subject(ev, "order-1");
	mesh_event_set_text(ev, "hello", 5);
	mesh_event_set_datacontenttype(ev, "text/plain");
	mesh_event_attr_set(ev, "region", "String", "eu", 2);
	return ev;
}

static char *
hex(const uint8_t *b, size_t len)
{
	char *h = malloc(len * 2 + 1);

	sodium_bin2hex(h, len * 2 + 1, b, len);
	return h;
}

static void
test_vector(void)
{
	unsigned char raw[32];
	struct mesh_identity *id;
	struct mesh_event *ev = vector_event();
	struct mesh_ext_value v;
	uint8_t *buf = NULL, sig[64];
	size_t len = 0, bin = 0;
	char *h;

	for (int i = 0; i < 32; i++) {
		raw[i] = (unsigned char)i;
	}
	id = identity(VEC_SIGNER, raw);
	ok(id != NULL, "the vector's identity loads");
	if (id == NULL) {
		return;
	}
	{
		char seed[MESH__NKEY_SEED_LEN + 1];
		mesh__nkey_seed_encode(raw, seed);
		is_str(seed, VEC_SEED, "seed bytes 00..1f are %s", VEC_SEED);
	}
	is_str(mesh_identity_public(id), VEC_PUBLIC, "its public key");
	is_int(mesh_event_sign(ev, id), MESH_OK, "signed");
	is_int(mesh_event_canonical(ev, &buf, &len), MESH_OK, "canonical");
	h = hex(buf, len);
	is_str(h, VEC_CANONICAL, "the canonical form is the README's");
	free(h);
	free(buf);
	is_int(mesh_event_ext_get(ev, MESH_SIG_EXT, &v), MESH_OK, "meshsig");
	sodium_base642bin(sig, sizeof(sig), v.string, v.len, NULL, &bin, NULL,
	                  sodium_base64_VARIANT_ORIGINAL);
	is_int(bin, 64, "64 bytes");
	h = hex(sig, 64);
	is_str(h, VEC_SIGNATURE, "the signature is the README's");
	free(h);
	mesh_event_free(ev);
	mesh_identity_free(id);
}

/* Another insertion order of the same attributes: the same form. */
static void
test_order(void)
{
	struct mesh_event *a = vector_event(), *b = NULL;
	uint8_t *ba = NULL, *bb = NULL;
	size_t la = 0, lb = 0;

	mesh_event_new("evmesh.test.Ping", "/producers/alice", &b);
	mesh_event_attr_set(b, "region", "String", "eu", 2);
	mesh_event_set_datacontenttype(b, "text/plain");
	mesh_event_set_text(b, "hello", 5);
	mesh_event_set_subject(b, "order-1");
	mesh_event_set_time(b, VEC_TIME, 0);
	mesh_event_set_id(b, VEC_ID);
	mesh_event_canonical(a, &ba, &la);
	mesh_event_canonical(b, &bb, &lb);
	ok(la == lb && memcmp(ba, bb, la) == 0,
	   "insertion order does not change the canonical form");
	/* An absent subject differs from an empty data, etc. */
	mesh_event_set_subject(b, NULL);
	free(bb);
	mesh_event_canonical(b, &bb, &lb);
	ok(la != lb || memcmp(ba, bb, la) != 0, "a subject counts");
	free(ba);
	free(bb);
	mesh_event_free(a);
	mesh_event_free(b);
}

static void
test_verdicts(void)
{
	unsigned char raw[32], other[32];
	struct mesh_identity *alice, *mallory;
	struct mesh_key_record keys[1];
	struct mesh_event *ev, *copy;
	struct mesh_ext_value v;
	char reason[256];
	uint8_t *buf;
	size_t len;
	int64_t now = (int64_t)VEC_TIME * 1000 + 60000;

	memset(raw, 1, sizeof(raw));
	memset(other, 2, sizeof(other));
	alice = identity("alice", raw);
	mallory = identity("mallory", other);
	mesh_identity_record(alice, &keys[0]);

	ev = vector_event();
	is_int(mesh_event_verify(ev, keys, 1, 0, now, reason, sizeof(reason)),
	       MESH_SIG_MISSING, "unsigned: missing");
	is_str(reason, "signature: missing", "its reason");

	mesh_event_sign(ev, alice);
	is_int(mesh_event_verify(ev, keys, 1, 0, now, reason, sizeof(reason)),
	       MESH_SIG_OK, "signed by alice: ok");
	is_str(reason, "", "no reason");
	/* The wire keeps it: packed and parsed, it still verifies. */
	mesh_event_pack(ev, &buf, &len);
	copy = NULL;
	mesh_event_parse(buf, len, 0, &copy);
	free(buf);
	is_int(mesh_event_verify(copy, keys, 1, 0, now, NULL, 0), MESH_SIG_OK,
	       "packed and parsed: ok");
	mesh_event_free(copy);

	/* Each part of the event is covered. */
	mesh_event_dup(ev, &copy);
	mesh_event_set_text(copy, "hellO", 5);
	is_int(mesh_event_verify(copy, keys, 1, 0, now, reason,
	                         sizeof(reason)),
	       MESH_SIG_FORGED, "data changed: forged");
	has_str(reason, "signature: forged (signer 'alice'", "its reason");
	mesh_event_free(copy);
	mesh_event_dup(ev, &copy);
	mesh_event_attr_set(copy, "region", "String", "us", 2);
	is_int(mesh_event_verify(copy, keys, 1, 0, now, NULL, 0),
	       MESH_SIG_FORGED, "an attribute changed: forged");
	mesh_event_free(copy);
	mesh_event_dup(ev, &copy);
	mesh_event_set_id(copy, "another");
	is_int(mesh_event_verify(copy, keys, 1, 0, now, NULL, 0),
	       MESH_SIG_FORGED, "the id changed: forged");
	mesh_event_free(copy);
	mesh_event_dup(ev, &copy);
	v = (struct mesh_ext_value){.type = MESH_EXT_BOOL, .boolean = true};
	mesh_event_ext_set(copy, "added", &v);
	is_int(mesh_event_verify(copy, keys, 1, 0, now, NULL, 0),
	       MESH_SIG_FORGED, "an extension added: forged");
	mesh_event_free(copy);

	/* Signed by a key nobody allowed. */
	mesh_event_dup(ev, &copy);
	mesh_event_sign(copy, mallory);
	is_int(mesh_event_verify(copy, keys, 1, 0, now, reason,
	                         sizeof(reason)),
	       MESH_SIG_UNKNOWN_KEY, "mallory's key: unknown");
	has_str(reason, "signature: unknown key U", "its reason");
	has_str(reason, mesh_identity_public(mallory), "names the key");
	/* mallory claiming alice's name and key id: forged. */
	v = (struct mesh_ext_value){
	        .type = MESH_EXT_STRING, .string = "alice", .len = 5};
	mesh_event_ext_set(copy, MESH_SIG_SIGNER_EXT, &v);
	v.string = keys[0].public_key;
	v.len = strlen(v.string);
	mesh_event_ext_set(copy, MESH_SIG_KEYID_EXT, &v);
	is_int(mesh_event_verify(copy, keys, 1, 0, now, NULL, 0),
	       MESH_SIG_FORGED, "mallory posing as alice: forged");
	mesh_event_free(copy);

	/* Malformed. */
	mesh_event_dup(ev, &copy);
	v = (struct mesh_ext_value){
	        .type = MESH_EXT_STRING, .string = "not base64!", .len = 11};
	mesh_event_ext_set(copy, MESH_SIG_EXT, &v);
	is_int(mesh_event_verify(copy, keys, 1, 0, now, reason,
	                         sizeof(reason)),
	       MESH_SIG_MALFORMED, "meshsig not base64: malformed");
	has_str(reason, "signature: malformed", "its reason");
	mesh_event_free(copy);

	/* Time: the horizon and the 5 minutes ahead. */
	is_int(mesh_event_verify(ev, keys, 1, 3600 * 1000,
	                         now + 2 * 3600 * 1000, reason,
	                         sizeof(reason)),
	       MESH_SIG_STALE, "older than the horizon: stale");
	has_str(reason, "signature: stale event time 2026-01-01T00:00:00",
	        "its reason");
	is_int(mesh_event_verify(ev, keys, 1, 0,
	                         (int64_t)VEC_TIME * 1000 - 301 * 1000, reason,
	                         sizeof(reason)),
	       MESH_SIG_STALE, "more than 5 min ahead: stale");
	is_int(mesh_event_verify(ev, keys, 1, 0,
	                         (int64_t)VEC_TIME * 1000 - 299 * 1000, NULL,
	                         0),
	       MESH_SIG_OK, "less than 5 min ahead: ok");
	mesh_event_free(ev);
	mesh_identity_free(alice);
	mesh_identity_free(mallory);
}

static void
test_signers_parse(void)
{
	char names[MESH_SIGNERS_MAX][MESH_IDENTITY_NAME_MAX + 1];
	size_t n = 9;

	is_int(mesh_signers_parse("t", "", names, &n), MESH_OK, "empty");
	is_int(n, 0, "none");
	is_int(mesh_signers_parse("t", "a,b-2,C_3", names, &n), MESH_OK,
	       "three");
	is_int(n, 3, "three names");
	is_str(names[2], "C_3", "in order");
	is_int(mesh_signers_parse("t", "a,,b", names, &n), MESH_EINVAL,
	       "an empty name");
	is_int(mesh_signers_parse("t", "a,b c", names, &n), MESH_EINVAL,
	       "a space");
	has_str(mesh_errdetail(), "'b c'", "names it");
	is_int(mesh_signers_parse("t", "a,b,a", names, &n), MESH_EINVAL,
	       "twice");
	is_int(mesh_signers_parse("t", "a,b,c,d,e,f,g,h,i", names, &n),
	       MESH_EINVAL, "more than 8");
}

int
main(void)
{
	if (mkdtemp(dir) == NULL) {
		tap_skip_all("no temporary directory");
	}
	test_vector();
	test_order();
	test_verdicts();
	test_signers_parse();
	{
		char cmd[300];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		(void)!system(cmd);
	}
	return tap_done();
}
