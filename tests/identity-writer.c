/* identity-writer: a stand-in for `meshctl auth` in the shell tests: makes
 * identity NAME with its seed at PATH (0600) and records its public key
 * in MESH_KEYS on the server at URL.
 * Usage: identity-writer URL NAME PATH */
#include <stdio.h>

#include "mesh/identity.h"
#include "mesh/mesh.h"

int
main(int argc, char **argv)
{
	struct mesh_identity *id = NULL;
	struct mesh_key_record rec;
	struct mesh_conn_opts o;
	struct mesh_conn *c = NULL;
	mesh_err err;

	if (argc != 4) {
		fprintf(stderr, "usage: identity-writer URL NAME PATH\n");
		return 2;
	}
	mesh_conn_opts_init(&o);
	o.servers = argv[1];
	if ((err = mesh_identity_generate(argv[2], argv[3], &id)) == MESH_OK &&
	    (err = mesh_conn_open(&o, &c)) == MESH_OK) {
		mesh_identity_record(id, &rec);
		err = mesh_keys_put(c, &rec, false);
	}
	if (err != MESH_OK) {
		fprintf(stderr, "identity-writer: %s\n", mesh_errdetail());
	}
	mesh_conn_close(c);
	mesh_identity_free(id);
	mesh_shutdown();
	return err == MESH_OK ? 0 : 1;
}
