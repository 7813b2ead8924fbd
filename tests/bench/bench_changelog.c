/* The restore rate of a partition (services/runtime/clog.h) against a
 * plain LMDB copy of the same environment, in the same run:
 *
 *   restore: an empty folder brought to the tail: the latest snapshot
 *     (BENCH_CLOG_MB of state, default 96) fetched, checked and written,
 *     then the records after it (BENCH_CLOG_TAIL_MB, default 16) replayed;
 *     MB/s of the restored data.mdb;
 *   replay: a local copy behind by the tail brought up to it; MB/s of the
 *     records applied.
 * The baseline of both is mdb_env_copy2 of the writer's environment into
 * an empty folder (MB/s of its data.mdb). Interleaved rounds, medians.
 *
 *   meson test -C build --benchmark --suite partitions -v */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench.h"
#include "clog.h"
#include "harness.h"
#include "mesh/mesh.h"

#define ROUNDS 3
#define N_DBS  2
#define VSIZE  1000
#define PER    256 /* values per transaction */

static const char *const DBS[N_DBS] = {"state", "meta"};
static char root[PATH_MAX - 64];

static MDB_env *
env_open(const char *dir)
{
	MDB_env *env = NULL;

	mkdir(dir, 0755);
	if (mdb_env_create(&env) != 0 || mdb_env_set_maxdbs(env, 4) != 0 ||
	    mdb_env_set_mapsize(env, (size_t)4 << 30) != 0 ||
	    mdb_env_open(env, dir, MDB_NOTLS | MDB_NOSYNC, 0644) != 0) {
		fprintf(stderr, "bench_changelog: cannot open %s\n", dir);
		exit(1);
	}
	return env;
}

static double
file_mb(const char *dir)
{
	char p[PATH_MAX];
	struct stat sb;

	snprintf(p, sizeof(p), "%s/data.mdb", dir);
	return stat(p, &sb) == 0 ? (double)sb.st_size / 1e6 : 0;
}

/* n transactions of PER random values; through the log when l. */
static void
fill(MDB_env *env, struct mesh__clog *l, MDB_dbi dbi, long n,
     const char *prefix)
{
	struct mesh__redo r = {0};
	char v[VSIZE], key[48];

	for (long t = 0; t < n; t++) {
		MDB_txn *txn;
		mdb_txn_begin(env, NULL, 0, &txn);
		for (int i = 0; i < PER; i++) {
			MDB_val k, d = {VSIZE, v};
			for (int j = 0; j < VSIZE; j += 4) {
				unsigned x = test_rand();
				memcpy(v + j, &x, 4);
			}
			snprintf(key, sizeof(key), "%s-%06ld-%02d", prefix, t,
			         i);
			k = (MDB_val){strlen(key), key};
			mdb_put(txn, dbi, &k, &d, 0);
			mesh__redo_note(&r, 0, &k);
		}
		if (l != NULL && mesh__clog_append(l, txn, &r, 1) != MESH_OK) {
			fprintf(stderr, "bench_changelog: append: %s\n",
			        mesh_errdetail());
			exit(1);
		}
		mdb_txn_commit(txn);
		mesh__redo_clear(&r);
	}
	mesh__redo_fini(&r);
}

int
main(void)
{
	struct test_broker b;
	struct mesh_conn_opts o;
	struct mesh_conn *c = NULL;
	long state_tx =
	        bench_env_long("BENCH_CLOG_MB", 96) * 1000000 / (VSIZE * PER);
	long tail_tx = bench_env_long("BENCH_CLOG_TAIL_MB", 16) * 1000000 /
	               (VSIZE * PER);
	double rest[ROUNDS], replay[ROUNDS], base[ROUNDS], base2[ROUNDS];
	double mb = 0;

	if (!test_broker_start(&b, NULL)) {
		return 1;
	}
	mesh_conn_opts_init(&o);
	o.servers = b.url;
	if (mesh_conn_open(&o, &c) != MESH_OK ||
	    !test_tmpdir(root, sizeof(root)) ||
	    mesh__clog_streams_ensure(c, "bench") != MESH_OK) {
		fprintf(stderr, "bench_changelog: %s\n", mesh_errdetail());
		return 1;
	}
	for (int r = 0; r < ROUNDS; r++) {
		char w[PATH_MAX], dst[PATH_MAX], cp[PATH_MAX];
		struct mesh__clog *l = NULL;
		struct mesh__clog_restore_stats st;
		MDB_env *env;
		long long t0;

		snprintf(w, sizeof(w), "%s/w%d", root, r);
		snprintf(dst, sizeof(dst), "%s/r%d", root, r);
		snprintf(cp, sizeof(cp), "%s/c%d", root, r);
		env = env_open(w);
		if (mesh__clog_open(c, "bench", r, env, DBS, N_DBS, "bench",
		                    NULL, &l) != MESH_OK ||
		    mesh__clog_claim(l, 1) != MESH_OK) {
			fprintf(stderr, "bench_changelog: %s\n",
			        mesh_errdetail());
			return 1;
		}
		/* The state: through the snapshot, not the log. */
		fill(env, NULL, mesh__clog_dbi(l, 0), state_tx, "s");
		mesh__clog_snapshot(l, env);
		/* A copy of that, to replay onto. */
		if (mesh__clog_restore(c, "bench", r, dst, DBS, N_DBS,
		                       (size_t)4 << 30, &st) != MESH_OK) {
			fprintf(stderr, "bench_changelog: %s\n",
			        mesh_errdetail());
			return 1;
		}
		fill(env, l, mesh__clog_dbi(l, 0), tail_tx, "t");

		t0 = test_now_ms();
		mkdir(cp, 0755);
		mdb_env_copy2(env, cp, 0);
		mb = file_mb(cp);
		base[r] = mb * 1000.0 / (double)(test_now_ms() - t0 + 1);
		base2[r] = base[r]; /* bench_figure_rounds sorts */

		t0 = test_now_ms();
		mesh__clog_restore(c, "bench", r, dst, DBS, N_DBS,
		                   (size_t)4 << 30, &st);
		replay[r] = (double)(tail_tx * PER * VSIZE) / 1e6 * 1000.0 /
		            (double)(test_now_ms() - t0 + 1);
		test_rmtree(dst);

		if (mesh__clog_restore(c, "bench", r, dst, DBS, N_DBS,
		                       (size_t)4 << 30, &st) != MESH_OK) {
			fprintf(stderr, "bench_changelog: %s\n",
			        mesh_errdetail());
			return 1;
		}
		rest[r] = file_mb(dst) * 1000.0 / (double)(st.ms + 1);
		mesh__clog_close(l);
		mdb_env_close(env);
		test_rmtree(w);
		test_rmtree(dst);
		test_rmtree(cp);
	}
	printf("bench_changelog: %d rounds, %.0f MB environment (%ld MB of "
	       "state in the snapshot, %ld MB of records after it)\n",
	       ROUNDS, mb, bench_env_long("BENCH_CLOG_MB", 96),
	       bench_env_long("BENCH_CLOG_TAIL_MB", 16));
	bench_figure_rounds("restore (snapshot + tail)", rest, base, ROUNDS,
	                    "MB/s", 0);
	bench_figure_rounds("replay (records onto a local copy)", replay,
	                    base2, ROUNDS, "MB/s", 0);
	mesh_conn_close(c);
	mesh_shutdown();
	test_rmtree(root);
	test_broker_stop(&b);
	return 0;
}
