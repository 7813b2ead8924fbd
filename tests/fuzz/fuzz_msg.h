/* A NATS message made from fuzz input, for the targets that feed the
 * delivery path (fuzz_wire, fuzz_delivery): header lines "Key: Value" up
 * to an empty line (a line without ": ", or longer than FUZZ_HEADER_MAX,
 * is skipped), then the body. */
#ifndef MESH_FUZZ_MSG_H
#define MESH_FUZZ_MSG_H

#include <nats/nats.h>

#include "fuzz.h"

#define FUZZ_HEADER_MAX 1024

/* NULL only when cnats cannot make the message. */
static inline natsMsg *
fuzz_nats_msg(const uint8_t *p, size_t n, const char *subject)
{
	struct fuzz_in in = {p, n}, scan = in;
	natsMsg *m = NULL;
	size_t len;

	/* The body is found first: natsMsg_Create copies it. */
	do {
		fuzz_part(&scan, '\n', &len);
	} while (len > 0 && scan.n > 0);
	if (natsMsg_Create(&m, subject, NULL, (const char *)scan.p,
	                   (int)scan.n) != NATS_OK) {
		return NULL;
	}
	while (in.p < scan.p) {
		const uint8_t *line = fuzz_part(&in, '\n', &len);
		char buf[FUZZ_HEADER_MAX], *colon;
		if (len == 0) {
			break;
		}
		if (len >= sizeof(buf)) {
			continue;
		}
		memcpy(buf, line, len);
		buf[len] = '\0';
		if ((colon = strstr(buf, ": ")) != NULL) {
			*colon = '\0';
			natsMsgHeader_Add(m, buf, colon + 2);
		}
	}
	return m;
}

#endif
