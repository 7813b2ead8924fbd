/* Error translation: each foreign code maps to one mesh_err, keeps its
 * original code, and leaves a detail naming the context. */
#include <errno.h>
#include <string.h>

#include <lmdb.h>

#include "harness.h"
#include "internal.h"
#include "mesh/mesh.h"

int
main(void)
{
	int code;

	for (int e = MESH_OK; e <= MESH_EINTERNAL; e++) {
		ok(mesh_strerror((mesh_err)e)[0] != '\0',
		   "mesh_strerror(%d) has a text", e);
	}
	ok(strcmp(mesh_strerror((mesh_err)999), "unknown error") == 0,
	   "an unknown code still has a text");

	is_int(mesh_err_errno(ECONNREFUSED, "cannot reach NATS at %s",
	                      "nats://x:1"),
	       MESH_EUNREACHABLE, "ECONNREFUSED is unreachable");
	is_str(mesh_errdetail(),
	       "cannot reach NATS at nats://x:1: connection "
	       "refused",
	       "the errno detail reads as one lower-case sentence");
	ok(mesh_errorigin(&code) == MESH_ORIGIN_ERRNO && code == ECONNREFUSED,
	   "the errno is kept");
	is_int(mesh_err_errno(ENOSPC, "x"), MESH_EFULL, "ENOSPC is full");

	is_int(mesh_err_mdb(MDB_MAP_FULL, "service %s", "orders"), MESH_EFULL,
	       "MDB_MAP_FULL is full");
	has_str(mesh_errdetail(), "service orders: MDB_MAP_FULL",
	        "the LMDB detail has LMDB's words");
	ok(mesh_errorigin(&code) == MESH_ORIGIN_LMDB && code == MDB_MAP_FULL,
	   "the LMDB code is kept");
	is_int(mesh_err_mdb(MDB_NOTFOUND, "k"), MESH_ENOTFOUND,
	       "MDB_NOTFOUND is not found");
	is_int(mesh_err_mdb(EACCES, "env"), MESH_EAUTH,
	       "an errno from LMDB is translated too");

	is_int(mesh_err_nats(NATS_NO_SERVER, 0, "connect"), MESH_EUNREACHABLE,
	       "NATS_NO_SERVER is unreachable");
	ok(mesh_errorigin(&code) == MESH_ORIGIN_NATS && code == NATS_NO_SERVER,
	   "the natsStatus is kept");
	is_int(mesh_err_nats(NATS_ERR, JSStreamNotFoundErr, "stream %s", "Q"),
	       MESH_ENOTFOUND, "JetStream's stream-not-found is not found");
	ok(mesh_errorigin(&code) == MESH_ORIGIN_JS &&
	           code == JSStreamNotFoundErr,
	   "the JetStream code is kept");
	has_str(mesh_errdetail(), "stream Q", "the detail names the stream");
	is_int(mesh_err_nats(NATS_OK, 0, "x"), MESH_EINTERNAL,
	       "translating success is a bug, not success");
	is_int(mesh_err_nats(NATS_TIMEOUT, 0, "x"), MESH_ETIMEDOUT,
	       "NATS_TIMEOUT is timed out");

	{
		char buf[128];
		is_str(mesh__url_redact("nats://u:secret@h:1", buf,
		                        sizeof(buf)),
		       "nats://u:***@h:1", "passwords in URLs are masked");
		is_str(mesh__url_redact("nats://tok@h:1", buf, sizeof(buf)),
		       "nats://***@h:1", "tokens in URLs are masked");
		is_str(mesh__url_redact("nats://h:1", buf, sizeof(buf)),
		       "nats://h:1", "plain URLs are unchanged");
		is_str(mesh__url_redact("nats://u:p@ss@h:1/x@y", buf,
		                        sizeof(buf)),
		       "nats://u:***@h:1/x@y",
		       "a password holding '@' is masked whole");
	}
	{
		char seed[MESH__NKEY_SEED_LEN + 1];
		char pub[MESH__NKEY_PUBLIC_LEN + 1];
		unsigned char raw[32] = {1, 2, 3};
		mesh__nkey_seed_encode(raw, seed);
		ok(strncmp(seed, "SU", 2) == 0 &&
		           strlen(seed) == MESH__NKEY_SEED_LEN,
		   "an encoded user seed starts SU");
		is_int(mesh__nkey_public_from_seed(seed, pub), MESH_OK,
		       "its public key derives");
		ok(pub[0] == 'U' && strlen(pub) == MESH__NKEY_PUBLIC_LEN,
		   "a user public key starts U");
		seed[10] = seed[10] == 'A' ? 'B' : 'A';
		is_int(mesh__nkey_public_from_seed(seed, pub), MESH_EINVAL,
		       "a damaged seed fails its checksum");
	}
	return tap_done();
}
