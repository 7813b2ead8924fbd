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

#include "fuzz.h"
#include "internal.h"
#include "mesh/queue.h"
#include "mesh/subscription.h"
#include "mesh/topic.h"
#include "schedule.h"

#define DESC_MAX 4096

static void
schedule_record(const uint8_t *data, size_t size)
{
	struct mesh_schedule s, again;
	char *json = NULL, *json2 = NULL;

	mesh_schedule_init(&s);
	mesh_schedule_init(&again);
	if (mesh_schedule_from_json((const char *)data, size, &s) != MESH_OK) {
		goto done;
	}
	if (mesh_schedule_to_json(&s, &json) != MESH_OK) {
		goto done;
	}
	if (mesh_schedule_from_json(json, strlen(json), &again) != MESH_OK ||
	    mesh_schedule_to_json(&again, &json2) != MESH_OK ||
	    strcmp(json, json2) != 0) {
		abort(); /* a stored schedule must read back as itself */
	}
done:
	free(json2);
	free(json);
	mesh_schedule_fini(&again);
	mesh_schedule_fini(&s);
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
