/* Partition leases: the instances of a partitioned service (each possibly
 * on another machine) share its N partitions, each owned by one instance
 * at a time, spread evenly, handed over when instances come and go.
 *
 * The protocol. One key-value bucket, MESH_LEASES (history 1, file
 * storage, the mesh's replicas, MaxAge 10 minutes as garbage collection
 * only: nothing relies on it), made when missing. A group's keys:
 *
 *   <group>.m.<instance>  membership: {"instance","started_ms",
 *                         "partitions","ttl_ms"}, put every ttl/3
 *   <group>.p.<k>         partition k's lease: {"owner","since_ms",
 *                         "ttl_ms"[,"handing":true]}
 *
 * Every write of a lease is revision-checked (the JetStream header
 * Nats-Expected-Last-Subject-Sequence): a claim names the revision its
 * claimer last saw (0 for a key never made), a renewal and a release the
 * owner's last one, so of two writers from one revision only one wins.
 * The epoch of an ownership is the revision of its claim: stream
 * sequences only grow, so every new owner has a higher epoch.
 *
 * A manager thread heartbeats membership and renews every lease held
 * every ttl/3; a renewal refused (the revision moved, the key is gone)
 * loses the lease at once, one that only times out is tried again until
 * ttl has passed since the last renewal that succeeded, then the lease is
 * lost. A watcher keeps a local view of the group's keys and notes the
 * local monotonic time each was last seen updated: nats-server 2.9 tells
 * watchers nothing when MaxAge removes a key, so a lease (a member) is
 * dead when no update of it was seen for ttl. A dead lease is claimed
 * with the revision last seen (so only if its owner did not renew
 * meanwhile), a deleted or never-made one with the revision of its delete
 * marker, or 0.
 *
 * Balance: with M live members, each wants floor(N/M) or ceil(N/M). A
 * member below floor claims free and dead partitions at once; one below
 * ceil claims a partition only after it stayed free for ttl/2 (the poorer
 * claim first). A member above ceil, or above floor while members below
 * floor are not covered by free partitions, hands its extras over,
 * highest-numbered first: revoked(p, lost=false), its lease marked
 * "handing" (no longer counted as its), and on mesh_lease_release the
 * lease deleted, so that a poorer member claims it at once. Every member
 * reaches the same counts from the same view, so the spread converges and
 * stays: nobody moves a partition between members within [floor, ceil].
 *
 * Safety. Others count ttl from when they saw a renewal, which is after
 * it was sent; mesh_lease_held is true only for ttl * 2/3 after the
 * sending of the last renewal that succeeded. Between that and ttl lies
 * the margin for the clocks' rates, the watchers' lag and a pause between
 * the check and the act it guards. A member paused longer (SIGSTOP, a
 * stalled VM) sees held false when it resumes, before any renewal.
 *
 * Threads: a manager (all writes), a watcher (the view), a callback thread
 * (acquired and revoked, in the order they happened, one at a time: a slow
 * callback never delays a renewal).
 */
#ifndef MESH_LEASE_H
#define MESH_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mesh/conn.h"
#include "mesh/err.h"

#define MESH_LEASE_BUCKET         "MESH_LEASES"
#define MESH_LEASE_NAME_MAX       64 /* group and instance names */
#define MESH_LEASE_PARTITIONS_MAX 1024
#define MESH_LEASE_TTL_MIN_MS     500
#define MESH_LEASE_TTL_MAX_MS     60000

struct mesh_lease;

/* Options; mesh_lease_opts_init() sets the defaults noted here. Strings
 * are borrowed until mesh_lease_start returns. */
struct mesh_lease_opts {
	const char *group;    /* the service's name: 1-64 of [A-Za-z0-9_-] */
	const char *instance; /* this member, unique among the running ones:
	                         1-64 of [A-Za-z0-9_-] (e.g. host-pid) */
	int partitions;       /* 1-1024; the same for every member; 0 */
	int64_t ttl_ms;       /* a lease lives this long unrenewed: 500-60000;
	                         3000 */
	/* Called on the lease's callback thread (never the manager's), one
	 * at a time, in the order the events happened; must be quick (flag
	 * work for another thread). Both may be NULL.
	 * acquired: partition is ours under epoch (the revision of the
	 * claim: higher with every new owner).
	 * revoked, lost=true: another member took the partition or our
	 * renewal failed: stop at once (mesh_lease_held is already false);
	 * lost=false: we hand it over to balance the load: finish what is in
	 * hand (held stays true meanwhile), then mesh_lease_release(). A
	 * partition handed over may still be lost before its release. */
	void (*acquired)(void *arg, int partition, uint64_t epoch);
	void (*revoked)(void *arg, int partition, bool lost);
	void *arg;
};

void mesh_lease_opts_init(struct mesh_lease_opts *o);

/* Join o->group as o->instance and start the lease's threads; partitions
 * come through o->acquired from then on. Errors: MESH_EINVAL (a name,
 * partitions or ttl_ms out of range; the detail names the value),
 * MESH_EEXIST (live members of the group run with another partition
 * count), MESH_ENOMEM, the connection's (bucket, watcher). *out only on
 * success; stop it with mesh_lease_stop() before closing c, which must
 * outlive it. */
mesh_err mesh_lease_start(struct mesh_conn *c, const struct mesh_lease_opts *o,
                          struct mesh_lease **out);

/* After revoked(partition, lost=false), when the partition is quiet: delete
 * the lease (in the background, at once) so another member takes it.
 * mesh_lease_held is false for it from this call on. A partition not being
 * handed over (already lost, never ours) is left alone. Thread-safe; may
 * be called from a callback. */
void mesh_lease_release(struct mesh_lease *l, int partition);

/* Whether partition is ours under epoch and our last renewal was sent
 * within ttl * 2/3, so that no other member can have taken it. No I/O;
 * thread-safe. Check it before an act the lease guards (commit,
 * acknowledge). */
bool mesh_lease_held(struct mesh_lease *l, int partition, uint64_t epoch);

/* How many partitions we hold (being handed over included). Thread-safe. */
int mesh_lease_count(struct mesh_lease *l);

/* Leave gracefully: our membership is deleted, every partition held is
 * handed over (revoked, lost=false), each lease deleted on its
 * mesh_lease_release or, after timeout_ms, anyway (then revoked with
 * lost=true); then the threads stop and l is freed. Every callback has
 * returned when it returns. Not from a callback. NULL is fine. */
void mesh_lease_stop(struct mesh_lease *l, int64_t timeout_ms);

/* ---- a group seen from outside (meshctl service info): no membership ---- */

struct mesh_lease_view {
	int partition;
	char owner[MESH_LEASE_NAME_MAX + 1]; /* "" when free */
	uint64_t revision;                   /* of the lease's key; 0: none */
	int64_t age_ms; /* since its last write (server time); -1: none */
	bool handing;   /* being handed over */
};

/* Every partition of group, 0 to N-1 (N from its members' records, else
 * its highest lease key), in order. Up to max go to out; *n gets how many
 * there are. A lease not renewed for its ttl is shown with its owner: the
 * age says it is dead. Errors: MESH_EINVAL (name), MESH_ENOTFOUND (no
 * such group), the connection's. */
mesh_err mesh_lease_list(struct mesh_conn *c, const char *group,
                         struct mesh_lease_view *out, size_t max, size_t *n);

struct mesh_lease_member {
	char instance[MESH_LEASE_NAME_MAX + 1];
	int partitions;
	int64_t ttl_ms;
	int64_t started_ms; /* Unix ms, the member's clock */
	int64_t age_ms;     /* since its last heartbeat (server time) */
	bool alive;         /* age_ms < ttl_ms */
};

/* The group's members with a record (those that left gracefully have
 * none; a dead one's stays up to 10 minutes, not alive), by name. Up to
 * max go to out; *n gets how many there are. Errors: as mesh_lease_list. */
mesh_err mesh_lease_members(struct mesh_conn *c, const char *group,
                            struct mesh_lease_member *out, size_t max,
                            size_t *n);

#endif
