/* retry.h: the runtime's retry policy (runtime-internal, pure). */
#ifndef MESH_RUNTIME_RETRY_H
#define MESH_RUNTIME_RETRY_H

#include <stdbool.h>
#include <stdint.h>

/* The delay before attempt+1 after the attempt-th failed: base_ms *
 * 2^(attempt-1), capped at max_ms, times a jitter of 0.5-1.5 (so that
 * events failing together do not come back together). */
int64_t mesh__backoff_ms(int64_t base_ms, int64_t max_ms, int attempt);

/* Whether a failed event has had its attempts and goes to the dead-letter
 * queue now: after max_receive attempts, unless its source dead-letters
 * by itself (a queue's redrive policy), which then decides. */
bool mesh__retry_exhausted(int attempt, int max_receive,
                           bool source_redrives);

#endif
