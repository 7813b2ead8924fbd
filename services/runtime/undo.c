/* undo.c: the undo log (see undo.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "be.h"
#include "undo.h"

bool
mesh__mdb_fatal(int rc)
{
	return rc != 0 && rc != MDB_NOTFOUND && rc != MDB_KEYEXIST;
}

/* A record: [dbi 4][had 1][klen 2][vlen 4][key][old value][its size 4],
 * its size last so that the log is read back from its end. */
int
mesh__undo_note(struct mesh__undo *u, MDB_txn *txn, MDB_dbi dbi,
                const MDB_val *k)
{
	MDB_val old = {0, NULL};
	int rc = mdb_get(txn, dbi, (MDB_val *)k, &old);
	size_t need = 15 + k->mv_size + (rc == 0 ? old.mv_size : 0);
	uint8_t *p;

	if (mesh__mdb_fatal(rc)) {
		return rc;
	}
	mesh__wnote(&u->note, dbi, k);
	if (u->len + need > u->cap) {
		size_t cap = u->cap ? u->cap : 4096;
		while (cap < u->len + need) {
			cap *= 2;
		}
		if ((p = realloc(u->buf, cap)) == NULL) {
			return ENOMEM;
		}
		u->buf = p;
		u->cap = cap;
	}
	p = u->buf + u->len;
	memcpy(p, &dbi, 4);
	p[4] = rc == 0;
	p[5] = (uint8_t)(k->mv_size >> 8);
	p[6] = (uint8_t)k->mv_size;
	mesh__be32(p + 7, rc == 0 ? (uint32_t)old.mv_size : 0);
	memcpy(p + 11, k->mv_data, k->mv_size);
	if (rc == 0) {
		memcpy(p + 11 + k->mv_size, old.mv_data, old.mv_size);
	}
	mesh__be32(p + need - 4, (uint32_t)need);
	u->len += need;
	return 0;
}

int
mesh__undo_put(struct mesh__undo *u, MDB_txn *txn, MDB_dbi dbi, MDB_val *k,
               MDB_val *v)
{
	int rc = mesh__undo_note(u, txn, dbi, k);

	return rc != 0 ? rc : mdb_put(txn, dbi, k, v, 0);
}

int
mesh__undo_del(struct mesh__undo *u, MDB_txn *txn, MDB_dbi dbi, MDB_val *k)
{
	int rc = mesh__undo_note(u, txn, dbi, k);

	return rc != 0 ? rc : mdb_del(txn, dbi, k, NULL);
}

int
mesh__undo_apply(struct mesh__undo *u, MDB_txn *txn)
{
	int rc = 0;

	while (u->len > 0 && rc == 0) {
		const uint8_t *p =
		        u->buf + u->len - mesh__from_be32(u->buf + u->len - 4);
		MDB_dbi dbi;
		MDB_val k = {(size_t)p[5] << 8 | p[6], (void *)(p + 11)};
		MDB_val v = {mesh__from_be32(p + 7),
		             (void *)(p + 11 + k.mv_size)};
		memcpy(&dbi, p, 4);
		rc = p[4] ? mdb_put(txn, dbi, &k, &v, 0)
		          : mdb_del(txn, dbi, &k, NULL);
		rc = rc == MDB_NOTFOUND ? 0 : rc;
		u->len = (size_t)(p - u->buf);
	}
	u->len = 0;
	return rc;
}

void
mesh__undo_clear(struct mesh__undo *u)
{
	u->len = 0;
}

void
mesh__undo_fini(struct mesh__undo *u)
{
	free(u->buf);
	memset(u, 0, sizeof(*u));
}
