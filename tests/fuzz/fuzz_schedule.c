/* fuzz_schedule: a schedule as the request API and meshctl take it, a JSON
 * request body (mesh_sched_set_fields), then checked as both check it
 * (mesh_schedule_check: expression, zone, target, a JSON body encoded as
 * its protobuf type, attributes, window, retries). One that passes must
 * store and read back as itself, and fire as the engine fires it: next
 * firings, the body with its placeholders filled, its attributes set on an
 * event, a window offset within the window and a firing id. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api.h"
#include "fuzz.h"
#include "mesh/event.h"
#include "schedule.h"
#include "tz.h"

#define FIRINGS 3

static void
fire(const struct mesh_schedule *s)
{
	const struct mesh_tz *tz = NULL;
	struct mesh_event *ev = NULL;
	/* 2026-03-07T00:00:00Z, days before the DST changes of 2026. */
	int64_t t = INT64_C(1772841600);
	char id[37];
	char *body;

	if (mesh_tz_shared(s->tz, &tz) != MESH_OK) {
		abort(); /* the check loaded it */
	}
	for (int i = 0; i < FIRINGS; i++) {
		int64_t next;
		if (mesh_schedule_next(s, tz, t, &next) != MESH_OK) {
			break;
		}
		if (next <= t) {
			abort(); /* firings go forwards */
		}
		t = next;
	}
	if ((body = mesh_schedule_render(s, t, 2)) != NULL) {
		free(body);
	}
	if (mesh_event_new(s->type, "/fuzz", &ev) == MESH_OK) {
		mesh_schedule_set_attrs(s, ev);
	}
	mesh_event_free(ev);
	if (mesh_schedule_window_offset(s, t) < 0 ||
	    (s->window_s > 0 &&
	     mesh_schedule_window_offset(s, t) >= s->window_s)) {
		abort();
	}
	mesh_schedule_firing_id(s->name, t, id);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *fields = json_loadb((const char *)data, size, 0, NULL);
	struct mesh_schedule s, back;
	char *json = NULL, *json2 = NULL;

	mesh_schedule_init(&s);
	mesh_schedule_init(&back);
	if (!json_is_object(fields) ||
	    mesh_sched_set_fields(&s, fields) != MESH_OK ||
	    mesh_schedule_check(&s) != MESH_OK) {
		goto done;
	}
	if (mesh_schedule_to_json(&s, &json) != MESH_OK) {
		goto done;
	}
	if (mesh_schedule_from_json(json, strlen(json), &back) != MESH_OK ||
	    mesh_schedule_to_json(&back, &json2) != MESH_OK ||
	    strcmp(json, json2) != 0) {
		abort(); /* a checked schedule must store and read back */
	}
	fire(&s);
done:
	free(json2);
	free(json);
	mesh_schedule_fini(&back);
	mesh_schedule_fini(&s);
	json_decref(fields);
	return 0;
}
