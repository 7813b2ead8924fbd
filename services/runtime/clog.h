/* clog.h: a partition's changelog, its snapshots and its restore
 * (runtime-internal).
 *
 * A partition's state is one LMDB environment with a fixed list of named
 * databases. Every write transaction of it is appended, before it
 * commits, as one record (schemas/changelog.proto) to the subject
 * mesh.cl.<service>.<k> of the stream MESH_CL_<service>: each key it
 * wrote with the value that key holds in the transaction at commit (a
 * delete when absent). Snapshots (compacted copies of the environment,
 * MESH_SNAP_<service>) bound the replay: a restore takes the latest one
 * and applies the records after it, or reuses a local copy that is still
 * on the chain and applies only what it lacks.
 *
 * Fencing. Each append carries Nats-Expected-Last-Subject-Sequence: the
 * sequence the environment says it is at (meta "clog.seq", written in the
 * same transaction as the writes). JetStream stores the record only when
 * the subject's last message is that one, so of two owners only the one
 * whose environment follows the subject's tail can append; a new owner's
 * claim (a marker record) moves the tail, and every later append of the
 * old owner fails with MESH_ESTALE before anything of its transaction is
 * committed.
 *
 * The environment's "meta" database (made if absent) holds the log's
 * position: "clog.seq" (8 bytes big-endian), "clog.stream_created" (the
 * changelog stream's creation time, ns, 8 bytes big-endian: a stream made
 * anew is noticed) and "clog.pending" (the first part of a split record
 * not yet whole). Those keys are the changelog's: list "meta" among the
 * databases to replicate the others.
 *
 * Thread safety: a struct mesh__clog is for one thread at a time (a
 * partition's writer); a struct mesh__redo for one transaction.
 */
#ifndef MESH_RUNTIME_CLOG_H
#define MESH_RUNTIME_CLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#include "mesh/conn.h"
#include "mesh/err.h"

#define MESH__CLOG_DBS_MAX  15           /* databases per partition */
#define MESH__CLOG_PART_MAX (900 * 1024) /* larger records are split */
#define MESH__CLOG_STREAM   "MESH_CL_"   /* + service */
#define MESH__SNAP_STREAM   "MESH_SNAP_" /* + service */

/* ---- capture ------------------------------------------------------------ */

/* The (database, key) pairs a transaction wrote, in one growing buffer;
 * zeroed is empty. Repeats cost a few bytes and are dropped when the
 * record is built. */
struct mesh__redo {
	uint8_t *buf;
	size_t len, cap;
	size_t n; /* pairs noted */
};

/* Note that key was written (put or deleted) in database db (an index in
 * the clog's list). The key is copied. Returns 0 or ENOMEM. */
int mesh__redo_note(struct mesh__redo *r, int db, const MDB_val *key);
/* Forget every pair (after a commit or an abort). */
void mesh__redo_clear(struct mesh__redo *r);
void mesh__redo_fini(struct mesh__redo *r);

/* ---- a partition's log, as its owner ------------------------------------ */

struct mesh__clog_opts {
	size_t chunk_size;         /* snapshot chunk bytes; 512 KiB */
	uint64_t snapshot_bytes;   /* a snapshot is due after; 64 MiB */
	uint64_t snapshot_records; /* ... or after; 100,000 */
	int64_t timeout_ms;        /* each confirmation; 5000 */
};

void mesh__clog_opts_init(struct mesh__clog_opts *o);

struct mesh__clog;

/* Make the service's changelog and snapshot streams unless they exist
 * (file storage, no limits, direct gets, the connection's replica
 * count). Call it where the service is first set up: a stream deleted
 * later is an error for appends and restores, never made again by them.
 * Errors: MESH_EINVAL (service name), the broker's with the stream
 * named. */
mesh_err mesh__clog_streams_ensure(struct mesh_conn *c, const char *service);

/* Open partition k's log over env (open, its databases not yet opened
 * in a live transaction of this thread): opens dbs[0..n_dbs) and "meta"
 * (creating them), and reads the stream's creation time, the last
 * snapshot and the counters since it. writer names this instance in
 * records. c, env and the strings are borrowed until mesh__clog_close.
 * Errors: MESH_EINVAL (names, k, n_dbs), MESH_ENOTFOUND (the changelog
 * stream is gone: named), MESH_EEXIST (env follows another stream of that
 * name: both creation times named), LMDB's, the connection's. */
mesh_err mesh__clog_open(struct mesh_conn *c, const char *service, int k,
                         MDB_env *env, const char *const *dbs, int n_dbs,
                         const char *writer, const struct mesh__clog_opts *o,
                         struct mesh__clog **out);
/* NULL is fine. Leaves env open. */
void mesh__clog_close(struct mesh__clog *l);

/* The handle of the clog's database i (0..n_dbs), in env. */
MDB_dbi mesh__clog_dbi(const struct mesh__clog *l, int i);

/* Append txn's writes noted in r (their values as txn holds them now) as
 * one record of this epoch, wait for JetStream to store it, then write
 * the new position into txn's meta: commit txn next. r may be empty (the
 * record then carries no writes but still moves the position).
 * Errors (txn must then be aborted, nothing committed):
 *   MESH_ESTALE: the subject moved past txn's position (another owner
 *     claimed or appended, or an earlier append of this one that timed
 *     out was stored after all): give the partition up; take it again
 *     only through mesh__clog_restore and mesh__clog_claim.
 *   MESH_ENOTFOUND: the changelog stream is gone (named).
 *   MESH_ETIMEDOUT, MESH_ECLOSED, ...: the connection's; the record may
 *     be stored or not: retry the batch later (MESH_ESTALE tells).
 *   MESH_ESTORE, MESH_EFULL: LMDB's; MESH_ENOMEM. */
mesh_err mesh__clog_append(struct mesh__clog *l, MDB_txn *txn,
                           const struct mesh__redo *r, uint64_t epoch);

/* Take the partition as its new owner after mesh__clog_restore: append a
 * marker record of epoch expecting the position the environment was
 * restored to, and commit it (a write transaction of its own). From then
 * on the previous owner's appends fail. Errors: MESH_ESTALE (the tail
 * moved while restoring: restore again, then claim), those of
 * mesh__clog_append. */
mesh_err mesh__clog_claim(struct mesh__clog *l, uint64_t epoch);

/* Whether a snapshot is due: the records or bytes appended since the last
 * one (counted by every owner, carried in the records) reached the
 * options' bounds. */
bool mesh__clog_snapshot_due(const struct mesh__clog *l);

/* Snapshot env (l's): a compacted copy through a temporary file beside
 * it, published in chunks (pipelined), then its manifest; then the older
 * snapshots of the partition and its records before the snapshot's
 * position are purged (the record at that position is kept: the chain of
 * expected sequences stays whole). Writers may go on meanwhile. Errors:
 * MESH_ENOTFOUND (a stream gone), MESH_EIO, LMDB's, the connection's
 * (nothing purged then). */
mesh_err mesh__clog_snapshot(struct mesh__clog *l, MDB_env *env);

/* ---- restore --------------------------------------------------------------
 */

struct mesh__clog_restore_stats {
	uint64_t snapshot_bytes;  /* fetched from a snapshot (0: none) */
	uint64_t snapshot_seq;    /* the position it covered */
	uint64_t records_applied; /* records with writes */
	uint64_t messages; /* changelog messages read (parts, markers) */
	uint64_t tail_seq; /* the position restored to */
	int64_t ms;        /* the whole restore */
	bool reused_local; /* the copy in dir was reused */
};

/* Bring the environment in dir (made if absent; not open elsewhere) to
 * the tail of partition k's changelog: reuse dir's copy when it follows
 * this stream and its position is still on the chain, else fetch the
 * latest snapshot (checked against its size and BLAKE2b hash, written
 * beside dir and renamed over dir/data.mdb), or start empty when there is
 * none; then apply the records after it. dbs/n_dbs as mesh__clog_open's;
 * map_size the environment's. st may be NULL.
 * Errors: MESH_ENOTFOUND (the changelog stream gone, named; records
 * purged past every copy there is), MESH_EEXIST (the stream was made
 * anew: its creation time and the copy's or snapshot's named; nothing is
 * reset), MESH_EPARSE (a snapshot that fails its size or hash, a record
 * that does not decode or breaks the chain), LMDB's, the file system's,
 * the connection's. On error dir may hold a partial restore: restore
 * again. */
mesh_err mesh__clog_restore(struct mesh_conn *c, const char *service, int k,
                            const char *dir, const char *const *dbs, int n_dbs,
                            size_t map_size,
                            struct mesh__clog_restore_stats *st);

/* ---- info ------------------------------------------------------------------
 */

struct mesh__clog_info {
	uint64_t last_seq;      /* the subject's last record (0: none) */
	uint64_t records_since; /* since the last snapshot */
	uint64_t bytes_since;   /* since the last snapshot */
	uint64_t last_epoch;    /* of the last record */
	char last_writer[64];   /* of the last record */
	bool has_snapshot;
	char snap_id[17];
	uint64_t snap_seq, snap_size;
	int64_t snap_time_ms; /* Unix ms */
};

/* Partition k's log as the broker holds it (for meshctl service info;
 * any instance may ask). Errors: MESH_ENOTFOUND (a stream gone, named),
 * MESH_EPARSE, the connection's. */
mesh_err mesh__clog_info(struct mesh_conn *c, const char *service, int k,
                         struct mesh__clog_info *out);

#endif
