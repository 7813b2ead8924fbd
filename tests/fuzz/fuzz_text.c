/* fuzz_text: the small parsers of text from outside, one picked by the
 * first byte:
 *   0: an NKey seed (the seed file NATS_NKEY names)
 *   1: a URL to redact before it is logged (NATS_URL)
 *   2: a duration ("90s", "15m", "1d": meshctl and schedule records)
 *   3: queue and topic names
 *   4: a zone name (schedule records, meshctl --tz): never a path out of
 *      the zoneinfo folder */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "internal.h"
#include "mesh/queue.h"
#include "mesh/topic.h"
#include "schedule.h"
#include "tz.h"

#define TEXT_MAX 1024

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = {data, size};
	uint8_t which = fuzz_byte(&in) % 5;
	char text[TEXT_MAX], buf[64], pub[MESH__NKEY_PUBLIC_LEN + 1];
	struct mesh_tz *tz = NULL;
	int64_t n;
	bool fifo;

	if (in.n >= sizeof(text) || memchr(in.p, '\0', in.n) != NULL) {
		return 0; /* C strings, as they come from argv and files */
	}
	memcpy(text, in.p, in.n);
	text[in.n] = '\0';
	switch (which) {
	case 0:
		if (mesh__nkey_public_from_seed(text, pub) == MESH_OK &&
		    (strlen(pub) != MESH__NKEY_PUBLIC_LEN || pub[0] != 'U')) {
			abort(); /* a user seed makes a user public key */
		}
		break;
	case 1:
		if (strlen(mesh__url_redact(text, buf, sizeof(buf))) >=
		    sizeof(buf)) {
			abort();
		}
		break;
	case 2:
		mesh_schedule_parse_duration(text, 60, &n);
		break;
	case 3:
		mesh_queue_name_check(text, &fifo);
		mesh_topic_name_check(text, &fifo);
		break;
	default:
		if (mesh_tz_load(text, NULL, &tz) == MESH_OK &&
		    (text[0] == '/' || strstr(text, "..") != NULL)) {
			abort(); /* a zone read from outside zoneinfo */
		}
		mesh_tz_free(tz);
	}
	return 0;
}
