/* What the supervisor's test (integration/test_supervisor.c) and bench
 * (bench/bench_ondemand.c) share: functions running tests/fn-counter.c,
 * defined in a temporary folder, and what the supervisor says of them. */
#ifndef TESTS_FN_WORLD_H
#define TESTS_FN_WORLD_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "mesh/mesh.h"

struct fn_world {
	struct mesh_conn *conn;
	const char *dir;     /* functions' state in DIR/NAME, starts noted in
	                        DIR/NAME.starts */
	const char *counter; /* fn-counter's absolute path */
	int64_t target_backlog; /* per instance, for the next definitions;
	                           0: 100 */
};

/* A queue with a visibility timeout of 5 s; false (said on stderr) when
 * it could not be made. */
bool fn_queue_make(const struct fn_world *w, const char *name);

/* Define (or redefine) NAME: fn-counter as service NAME on queue QUEUE,
 * with partitions (0: none) and one more "KEY=VALUE" of environment
 * (NULL: none), w->target_backlog (100) events per instance. */
mesh_err fn_define(const struct fn_world *w, const char *name,
                   const char *queue, int min, int max, int64_t idle_ms,
                   int partitions, const char *extra_env);

/* The same, not partitioned, serving requests too: FN_ROUTES set, its
 * definition's routes "GET /count" (as --prepare would have said). */
mesh_err fn_define_served(const struct fn_world *w, const char *name,
                          const char *queue, int min, int max, int64_t idle_ms,
                          const char *extra_env);

/* The status the supervisor running NAME answers (mesh/function.h), or
 * NULL when none did within wait_ms. json_decref it. */
json_t *fn_info(const struct fn_world *w, const char *name, int wait_ms);

#endif
