/* Sending and receiving queue messages as the queue benchmarks measure
 * them (bench_queue, bench_cluster), so that their figures mean the same. */
#ifndef MESH_BENCH_MSGS_H
#define MESH_BENCH_MSGS_H

#include <stddef.h>

#include "mesh/mesh.h"

#define BENCH_BODY 256 /* bytes of text in each message */

/* Send n messages of BENCH_BODY bytes to q through a sender with `window`
 * confirmations in flight (0: its default), each with the id "s<i>";
 * seconds from opening the sender to the last confirmation, or 0 (with a
 * line on stderr) when not all were stored. */
double bench_send(struct mesh_queue *q, long n, size_t window);

/* Receive (up to 10 at a time, long polling up to 1 s) and delete n
 * messages from q; seconds, or 0 (with a line on stderr) when they did
 * not all come. */
double bench_receive_delete(struct mesh_queue *q, long n);

#endif
