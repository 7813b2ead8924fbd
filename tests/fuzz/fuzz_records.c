/* fuzz_records: the records the mesh stores and reads back, which anyone
 * with access to the broker or the disk can change. Input: a selector
 * byte, then the record.
 *   0: a queue's configuration in its stream's description (queue.c)
 *   1: a topic's, likewise (topic.c)
 *   2: a subscription record of the MESH_SUBSCRIPTIONS bucket
 *      (subscription.c)
 *   3: a schedule definition (JSON, in the change log and each replica's
 *      LMDB); one that reads must write and read back the same. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fuzz.h"
#include "internal.h"
#include "mesh/queue.h"
#include "mesh/subscription.h"
#include "mesh/topic.h"
#include "schedule.h"

#define DESC_MAX 4096

/* The schedule in record (len bytes) as to_json writes it, or NULL when
 * it does not read. */
static char *
schedule_canon(const char *record, size_t len)
{
	struct mesh_schedule s;
	char *json = NULL;

	mesh_schedule_init(&s);
	if (mesh_schedule_from_json(record, len, &s) != MESH_OK ||
	    mesh_schedule_to_json(&s, &json) != MESH_OK) {
		json = NULL;
	}
	mesh_schedule_fini(&s);
	return json;
}

/* from_json has a hand-written fast reader and falls back to jansson:
 * the record as jansson writes it back (which may take the other reader)
 * must read the same. And what to_json writes must read back as itself. */
static void
schedule_record(const uint8_t *data, size_t size)
{
	char *json = schedule_canon((const char *)data, size);
	char *again = NULL, *redone = NULL, *via = NULL;
	json_t *j = json_loadb((const char *)data, size, 0, NULL);

	if (j != NULL && (redone = json_dumps(j, JSON_COMPACT)) != NULL) {
		via = schedule_canon(redone, strlen(redone));
		if ((json == NULL) != (via == NULL) ||
		    (json != NULL && strcmp(json, via) != 0)) {
			abort(); /* the two readers disagree */
		}
	}
	if (json != NULL &&
	    ((again = schedule_canon(json, strlen(json))) == NULL ||
	     strcmp(json, again) != 0)) {
		abort(); /* a stored schedule must read back as itself */
	}
	free(via);
	free(redone);
	json_decref(j);
	free(again);
	free(json);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = {data, size};
	uint8_t which = fuzz_byte(&in) % 4;
	struct mesh_queue_attrs qa;
	struct mesh_topic_attrs ta;
	struct mesh_subscription sub;
	char desc[DESC_MAX];

	switch (which) {
	case 0:
	case 1:
		/* cnats hands the description over as a C string. */
		if (in.n >= sizeof(desc)) {
			return 0;
		}
		memcpy(desc, in.p, in.n);
		desc[in.n] = '\0';
		if (which == 0) {
			mesh__queue_cfg_decode(desc, &qa);
		} else {
			mesh__topic_cfg_decode(desc, &ta);
		}
		break;
	case 2:
		if (mesh__subscription_decode("fuzz", in.p, in.n, &sub) ==
		    MESH_OK) {
			mesh_subscription_fini(&sub);
		}
		break;
	default:
		schedule_record(in.p, in.n);
	}
	return 0;
}
