/* The scheduler's operations on schedules, and the NATS request API that
 * serves them.
 *
 * meshctl and the request API call the same functions here, so a schedule
 * is checked the same way whichever way it comes.
 *
 * The API: replicas answer requests on mesh.scheduler.api.<verb> in the
 * queue group "mesh-scheduler" (one replica answers each request). Bodies
 * and replies are JSON objects; see README ("request API") for each verb.
 * An error is {"error": {"code": "EINVAL", "message": "..."}}, the message
 * naming the field or value at fault; nothing is stored then.
 */
#ifndef MESH_SCHED_API_H
#define MESH_SCHED_API_H

#include <stdbool.h>

#include <jansson.h>

#include "mesh/conn.h"
#include "mesh/err.h"
#include "schedule.h"

#define MESH_SCHED_API_PREFIX "mesh.scheduler.api."
#define MESH_SCHED_API_GROUP  "mesh-scheduler"

/* Check s (mesh_schedule_check), check that its target queue and dead-letter
 * queue exist, and write it to the change log. create: MESH_EEXIST when it
 * exists; else MESH_ENOTFOUND when it does not. Errors: those of the checks
 * (MESH_EINVAL, MESH_ENOTFOUND naming the queue, MESH_ETOOBIG), and the
 * connection's. */
mesh_err mesh_sched_save(struct mesh_conn *c, struct mesh_schedule *s,
                         bool create);

/* A schedule's settings, next 5 firings and last firing, as meshctl
 * schedule info --json prints it: *out is a new reference. Errors:
 * MESH_ENOTFOUND, the connection's. */
mesh_err mesh_sched_info(struct mesh_conn *c, const char *name, json_t **out);

/* The names of the schedules: *out is a new JSON array. */
mesh_err mesh_sched_list(struct mesh_conn *c, json_t **out);

/* Set the fields of s named in `fields` (a request body: name, expression,
 * tz, target, type, body, start, end, missed, window, retry_max, max_age,
 * dlq, delete_after, enabled). Errors: MESH_EINVAL naming the field (an
 * unknown one, or a value of the wrong kind). */
mesh_err mesh_sched_set_fields(struct mesh_schedule *s, json_t *fields);

/* Answer one request (verb, JSON body): *reply is a malloc'ed JSON object,
 * the result or {"error": ...}. Never fails otherwise. */
void mesh_sched_api_handle(struct mesh_conn *c, const char *verb,
                           const char *body, size_t len, char **reply);

/* Serve the API from this process (cnats' threads call
 * mesh_sched_api_handle) until mesh_sched_api_stop(). Errors: the
 * connection's. */
mesh_err mesh_sched_api_start(struct mesh_conn *c, natsSubscription **out);
/* Stop serving, after the requests being answered; NULL is fine. */
void mesh_sched_api_stop(natsSubscription *sub);

#endif
