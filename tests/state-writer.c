/* state-writer: a stand-in for a running service's writer, for the shell
 * tests of meshctl state. Makes an LMDB environment laid out as the
 * runtime's (named databases "state", "processed", "meta"), writes a few
 * known keys (text, bytes, and protobuf values under pb/), prints "ready",
 * then commits a transaction every millisecond until its standard input
 * closes: each one adds load/<n> and sets count to n, so a consistent copy
 * holds exactly count load/ keys. Usage: state-writer DIR */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lmdb.h>

static int
put(MDB_txn *txn, MDB_dbi dbi, const char *k, const void *v, size_t vlen)
{
	MDB_val key = {strlen(k), (void *)k}, val = {vlen, (void *)v};

	return mdb_put(txn, dbi, &key, &val, 0);
}

int
main(int argc, char **argv)
{
	static const unsigned char bin[] = {0x00, 0x01, 0x02, 0xff};
	/* evmesh.example.Greeted {name, count}, as protoc encodes them. */
	static const unsigned char ada[] = {0x0a, 0x03, 'a', 'd',
	                                    'a',  0x10, 3};
	static const unsigned char bob[] = {0x0a, 0x03, 'b', 'o',
	                                    'b',  0x10, 1};
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi state, processed, meta;
	struct pollfd in = {.fd = 0, .events = POLLIN};
	char key[32], num[32];
	int rc = 0;

	if (argc != 2) {
		fprintf(stderr, "Usage: state-writer DIR\n");
		return 2;
	}
	if ((mkdir(argv[1], 0755) != 0 && errno != EEXIST) ||
	    (rc = mdb_env_create(&env)) != 0 ||
	    (rc = mdb_env_set_maxdbs(env, 8)) != 0 ||
	    (rc = mdb_env_set_mapsize(env, (size_t)64 << 20)) != 0 ||
	    (rc = mdb_env_open(env, argv[1], 0, 0644)) != 0 ||
	    (rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0 ||
	    (rc = mdb_dbi_open(txn, "state", MDB_CREATE, &state)) != 0 ||
	    (rc = mdb_dbi_open(txn, "processed", MDB_CREATE, &processed)) !=
	            0 ||
	    (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &meta)) != 0 ||
	    (rc = put(txn, state, "greeted/ada", "3", 1)) != 0 ||
	    (rc = put(txn, state, "greeted/bob", "1", 1)) != 0 ||
	    (rc = put(txn, state, "note", "héllo wörld", 13)) != 0 ||
	    (rc = put(txn, state, "bin", bin, sizeof(bin))) != 0 ||
	    (rc = put(txn, state, "pb/ada", ada, sizeof(ada))) != 0 ||
	    (rc = put(txn, state, "pb/bob", bob, sizeof(bob))) != 0 ||
	    (rc = put(txn, state, "count", "0", 1)) != 0 ||
	    (rc = put(txn, processed, "id-1", "0", 1)) != 0 ||
	    (rc = put(txn, meta, "version", "1", 1)) != 0 ||
	    (rc = mdb_txn_commit(txn)) != 0) {
		fprintf(stderr, "state-writer: %s: %s\n", argv[1],
		        mdb_strerror(rc));
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	for (long n = 1;; n++) {
		char c;
		if (poll(&in, 1, 1) > 0 && read(0, &c, 1) <= 0) {
			break;
		}
		snprintf(key, sizeof(key), "load/%08ld", n);
		snprintf(num, sizeof(num), "%ld", n);
		if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0 ||
		    (rc = put(txn, state, key, "x", 1)) != 0 ||
		    (rc = put(txn, state, "count", num, strlen(num))) != 0 ||
		    (rc = mdb_txn_commit(txn)) != 0) {
			fprintf(stderr, "state-writer: %s\n",
			        mdb_strerror(rc));
			return 1;
		}
	}
	mdb_env_close(env);
	return 0;
}
