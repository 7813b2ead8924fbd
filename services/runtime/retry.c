/* retry.c: the retry policy (see retry.h). */
#include <sodium.h>

#include "retry.h"

int64_t
mesh__backoff_ms(int64_t base_ms, int64_t max_ms, int attempt)
{
	int64_t d = base_ms;

	for (int i = 1; i < attempt && d < max_ms; i++) {
		d *= 2;
	}
	if (d > max_ms) {
		d = max_ms;
	}
	return d / 2 + (int64_t)randombytes_uniform((uint32_t)(d + 1));
}

bool
mesh__retry_exhausted(int attempt, int max_receive, bool source_redrives)
{
	return !source_redrives && attempt >= max_receive;
}
