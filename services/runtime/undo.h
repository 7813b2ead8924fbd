/* undo.h: the undo log that makes each event's writes atomic inside its
 * batch's LMDB transaction (runtime-internal).
 *
 * Handlers write straight into the batch's transaction. Before each write
 * the log notes what the key held (or that it was absent); when the
 * handler fails, mesh__undo_apply puts every noted value back, newest
 * first. That costs a lookup per write, where an LMDB nested transaction
 * per event copies every page it touches and merges them back.
 *
 * Thread safety: a log is for one transaction, one thread.
 */
#ifndef MESH_RUNTIME_UNDO_H
#define MESH_RUNTIME_UNDO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

/* Who else hears of a transaction's writes: a partitioned service's
 * changelog notes each key written, to log its final value at commit.
 * fn NULL: nobody. */
struct mesh__wnote {
	void (*fn)(void *arg, MDB_dbi dbi, const MDB_val *k);
	void *arg;
};

static inline void
mesh__wnote(const struct mesh__wnote *w, MDB_dbi dbi, const MDB_val *k)
{
	if (w->fn != NULL) {
		w->fn(w->arg, dbi, k);
	}
}

struct mesh__undo {
	uint8_t *buf;
	size_t len, cap;
	struct mesh__wnote note; /* told of every key noted */
};

/* Errors after which LMDB refuses the rest of the transaction (not
 * MDB_NOTFOUND or MDB_KEYEXIST). */
bool mesh__mdb_fatal(int rc);

/* Note k's value in dbi (or its absence) before a write. Returns 0, an
 * LMDB error, or ENOMEM. */
int mesh__undo_note(struct mesh__undo *u, MDB_txn *txn, MDB_dbi dbi,
                    const MDB_val *k);

/* A write noted, then made: mdb_put / mdb_del's results. */
int mesh__undo_put(struct mesh__undo *u, MDB_txn *txn, MDB_dbi dbi, MDB_val *k,
                   MDB_val *v);
int mesh__undo_del(struct mesh__undo *u, MDB_txn *txn, MDB_dbi dbi,
                   MDB_val *k);

/* Put back what the log noted, newest first; the log is then empty.
 * Returns 0 or the LMDB error that stopped it (the transaction is then
 * spoilt). */
int mesh__undo_apply(struct mesh__undo *u, MDB_txn *txn);

/* Forget what was noted (the writes stand). */
void mesh__undo_clear(struct mesh__undo *u);

void mesh__undo_fini(struct mesh__undo *u);

#endif
