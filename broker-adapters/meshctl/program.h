/* program.h: asking a service program about itself (PROGRAM --describe,
 * PROGRAM --prepare), as meshctl auth and meshctl function do. */
#ifndef MESHCTL_PROGRAM_H
#define MESHCTL_PROGRAM_H

#include <stddef.h>
#include <stdint.h>

#include "cli.h"
#include "mesh/err.h"

#define PROGRAM_OUTPUT_MAX (1024 * 1024)

/* Run PROGRAM ARGS FLAG (args and env may be NULL with n 0): its
 * environment is meshctl's, the connection's settings as the NATS tools'
 * variables (NATS_URL, NATS_NKEY, ...), then env's "KEY=VALUE"s; standard
 * input /dev/null. Its standard output (up to PROGRAM_OUTPUT_MAX bytes)
 * goes into *out (malloc'ed, NUL-terminated), its exit status into
 * *status (128 + N when killed by signal N; -1 when killed at limit_ms).
 * Errors: MESH_ENOMEM, or the errno of pipe/fork (naming the program). */
mesh_err program_run(const struct cli *cli, const char *program,
                     char *const *args, size_t n_args, char *const *env,
                     size_t n_env, const char *flag, int64_t limit_ms,
                     char **out, int *status);

#endif
