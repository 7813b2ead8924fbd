/* A schedule: when (an expression in a zone, between optional start and
 * end), what (a target queue or topic, an event type, a text or JSON
 * body with placeholders), and what to do about firings missed while no
 * scheduler ran. Stored as JSON in the change log and in each replica's LMDB.
 */
#ifndef MESH_SCHEDULE_H
#define MESH_SCHEDULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "expr.h"
#include "mesh/err.h"

#define MESH_SCHEDULE_NAME_MAX 64
#define MESH_SCHEDULE_BODY_MAX (256 * 1024)
#define MESH_SCHEDULE_ATTRS_MAX                                               \
	8 /* SNS/SQS's 10, less schedule and                                  \
	     scheduledTime */

typedef enum {
	MESH_MISSED_LATEST = 0, /* fire the latest missed firing once */
	MESH_MISSED_ALL,        /* fire every missed firing */
	MESH_MISSED_SKIP,       /* fire none */
} mesh_missed;

struct mesh_schedule {
	char name[MESH_SCHEDULE_NAME_MAX + 1];
	char expression[MESH_SCHED_EXPR_MAX + 1];
	char tz[100];
	char target[256];   /* "queue:NAME" or "topic:NAME" */
	char type[129];     /* the event type */
	char *body;         /* owned; may hold placeholders */
	bool json_body;     /* body is JSON, sent as protobuf message type */
	char *attrs;        /* owned; message attributes, one NAME=TYPE:VALUE
	                       a line (Binary in base64); NULL: none */
	int64_t start, end; /* Unix seconds; 0: none */
	mesh_missed missed;
	bool enabled;
	bool delete_after;           /* a one-time schedule deletes itself */
	int64_t window_s;            /* flexible window, 0 or 60-86400 */
	int64_t retry_max;           /* retries of a failed firing, 0-185 */
	int64_t max_age_s;           /* give up after, 60-86400 */
	char dlq[96];                /* queue for firings given up; "" */
	int64_t created;             /* Unix seconds */
	struct mesh_sched_expr expr; /* derived by mesh_schedule_check */
};

/* Set defaults: UTC, type "evmesh.scheduled", missed latest, enabled,
 * 185 retries within 24 hours (EventBridge's), no window, no DLQ. */
void mesh_schedule_init(struct mesh_schedule *s);
void mesh_schedule_fini(struct mesh_schedule *s);

/* Set each of the schedule's attributes on ev. Errors: those of
 * mesh_event_attr_set_spec, naming the attribute. */
struct mesh_event;
mesh_err mesh_schedule_set_attrs(const struct mesh_schedule *s,
                                 struct mesh_event *ev);

/* Check every field (name 1-64 of [A-Za-z0-9_.-], the expression, the
 * zone, a target "queue:NAME" or "topic:NAME", a body of at most 256 KiB
 * (with json_body, JSON that encodes as the protobuf message named by
 * type, placeholders filled in), end after start) and derive s->expr. Errors:
 * MESH_EINVAL (the field at fault in the detail), MESH_ENOTFOUND (unknown
 * zone). */
mesh_err mesh_schedule_check(struct mesh_schedule *s);

/* JSON forms. to_json: *out is malloc'ed. from_json checks the result. */
mesh_err mesh_schedule_to_json(const struct mesh_schedule *s, char **out);
mesh_err mesh_schedule_from_json(const char *json, size_t len,
                                 struct mesh_schedule *out);

/* A duration: "90", "90s", "15m", "2h", "1d"; a bare number counts in
 * `unit` seconds. Returns false when text is not one. */
bool mesh_schedule_parse_duration(const char *text, int64_t unit,
                                  int64_t *out);

/* The first firing after `after`, within start and end.
 * Errors: MESH_ENOTFOUND when there is none. */
mesh_err mesh_schedule_next(const struct mesh_schedule *s,
                            const struct mesh_tz *tz, int64_t after,
                            int64_t *next);

/* The body with EventBridge's placeholders filled in:
 * <aws.scheduler.scheduled-time>, <aws.scheduler.schedule-arn> (the name)
 * and <aws.scheduler.attempt-number>. Returns a malloc'ed string or NULL
 * when out of memory. */
char *mesh_schedule_render(const struct mesh_schedule *s, int64_t fire,
                           int attempt);

/* How long after its scheduled time a firing is published: a point in
 * the flexible window derived from name and time, so every replica picks
 * the same one. */
int64_t mesh_schedule_window_offset(const struct mesh_schedule *s,
                                    int64_t fire);

/* The id of the event of a firing: the same on every replica, so that
 * JetStream's de-duplication keeps one ("<name>/<fire time>" hashed into
 * a UUID). */
void mesh_schedule_firing_id(const char *name, int64_t fire, char out[37]);

#endif
