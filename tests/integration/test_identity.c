/* Identities (mesh/identity.h): seed files made 0600 and never replaced,
 * loaded only when private, Ed25519 signatures, seals, and the directory
 * of public keys MESH_KEYS against a real nats-server. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "mesh/identity.h"
#include "mesh/mesh.h"

int
main(void)
{
	struct test_broker broker;
	struct mesh_conn_opts o;
	struct mesh_conn *c = NULL;
	struct mesh_identity *a = NULL, *a2 = NULL, *b = NULL;
	struct mesh_key_record rec, got, *all = NULL;
	char dir[PATH_MAX], pa[PATH_MAX + 16], pb[PATH_MAX + 16];
	uint8_t sig[MESH_IDENTITY_SIG_LEN], curve[MESH_IDENTITY_CURVE_LEN];
	uint8_t sealed[5 + MESH_SEAL_OVERHEAD], opened[5];
	struct stat st;
	size_t n = 0;

	if (!test_tmpdir(dir, sizeof(dir))) {
		tap_skip_all("no temporary folder");
	}
	snprintf(pa, sizeof(pa), "%s/a.nk", dir);
	snprintf(pb, sizeof(pb), "%s/b.nk", dir);
	is_int(mesh_identity_generate("a", pa, &a), MESH_OK,
	       "an identity made");
	ok(stat(pa, &st) == 0 && (st.st_mode & 0777) == 0600,
	   "its seed file is 0600");
	is_int(mesh_identity_generate("a", pa, &a2), MESH_EEXIST,
	       "a seed file is never replaced");
	has_str(mesh_errdetail(), "never replaced", "saying so");
	is_int(mesh_identity_load("a", pa, &a2), MESH_OK, "and loads again");
	is_str(mesh_identity_public(a2), mesh_identity_public(a),
	       "as the same public key");
	ok(mesh_identity_public(a)[0] == 'U' &&
	           strlen(mesh_identity_public(a)) == MESH_IDENTITY_PUBLIC_LEN,
	   "a user NKey: %s", mesh_identity_public(a));
	mesh_identity_free(a2);
	chmod(pa, 0644);
	is_int(mesh_identity_load("a", pa, &a2), MESH_EINVAL,
	       "a seed readable by others is refused");
	has_str(mesh_errdetail(), "chmod 600", "saying how to mend it");
	chmod(pa, 0600);
	is_int(mesh_identity_load("a", "/nonexistent/x.nk", &a2),
	       MESH_ENOTFOUND, "a missing seed file: not found");
	is_int(mesh_identity_load("bad name", pa, &a2), MESH_EINVAL,
	       "a bad name is refused");
	is_int(mesh_identity_generate("b", pb, &b), MESH_OK,
	       "another identity");

	mesh_identity_sign(a, "hello", 5, sig);
	ok(mesh_identity_verify(mesh_identity_public(a), "hello", 5, sig),
	   "a signature verifies with its key");
	ok(!mesh_identity_verify(mesh_identity_public(b), "hello", 5, sig),
	   "not with another's");
	ok(!mesh_identity_verify(mesh_identity_public(a), "hellO", 5, sig),
	   "nor over other bytes");
	ok(!mesh_identity_verify("Unot-a-key", "hello", 5, sig),
	   "nor with a malformed key");

	mesh_identity_curve(b, curve);
	mesh_seal(curve, "sec!t", 5, sealed);
	ok(memcmp(sealed, "sec!t", 5) != 0, "a seal hides its bytes");
	is_int(mesh_identity_unseal(b, sealed, sizeof(sealed), opened),
	       MESH_OK, "sealed to b, b opens it");
	ok(memcmp(opened, "sec!t", 5) == 0, "to the same bytes");
	is_int(mesh_identity_unseal(a, sealed, sizeof(sealed), opened),
	       MESH_EPARSE, "a cannot");
	sealed[10] ^= 1;
	is_int(mesh_identity_unseal(b, sealed, sizeof(sealed), opened),
	       MESH_EPARSE, "nor anyone, once altered");
	is_int(mesh_identity_unseal(b, sealed, 10, opened), MESH_EINVAL,
	       "too short to be a seal");

	if (!test_broker_start(&broker, NULL)) {
		tap_skip_all("no nats-server");
	}
	mesh_conn_opts_init(&o);
	o.servers = broker.url;
	is_int(mesh_conn_open(&o, &c), MESH_OK, "connected");
	mesh_identity_record(a, &rec);
	is_int(mesh_keys_put(c, &rec, false), MESH_OK, "a's key recorded");
	is_int(mesh_keys_put(c, &rec, false), MESH_OK, "again: the same");
	is_int(mesh_keys_get(c, "a", &got), MESH_OK, "and read back");
	is_str(got.public_key, mesh_identity_public(a), "its public key");
	ok(memcmp(got.curve, rec.curve, sizeof(rec.curve)) == 0,
	   "and its X25519 key");
	mesh_identity_record(b, &rec);
	snprintf(rec.name, sizeof(rec.name), "a");
	is_int(mesh_keys_put(c, &rec, false), MESH_EEXIST,
	       "another key under a's name is refused");
	has_str(mesh_errdetail(), "rotate", "saying how to replace it");
	is_int(mesh_keys_put(c, &rec, true), MESH_OK, "unless replacing it");
	rec.curve[0] ^= 1;
	is_int(mesh_keys_put(c, &rec, true), MESH_EINVAL,
	       "a curve key not derived from the public key is refused");
	mesh_identity_record(b, &rec);
	is_int(mesh_keys_put(c, &rec, false), MESH_OK, "b's key recorded");
	is_int(mesh_keys_list(c, &all, &n), MESH_OK, "the keys listed");
	ok(n == 2 && strcmp(all[0].name, "a") == 0 &&
	           strcmp(all[1].name, "b") == 0,
	   "both, by name");
	free(all);
	is_int(mesh_keys_delete(c, "a"), MESH_OK, "a's key deleted");
	is_int(mesh_keys_get(c, "a", &got), MESH_ENOTFOUND, "and gone");
	is_int(mesh_keys_delete(c, "a"), MESH_ENOTFOUND, "deleting it again");

	mesh_identity_free(a);
	mesh_identity_free(b);
	mesh_conn_close(c);
	test_broker_stop(&broker);
	test_rmtree(dir);
	mesh_shutdown();
	return tap_done();
}
