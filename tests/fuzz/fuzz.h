/* The fuzz targets: each fuzz_<name>.c defines LLVMFuzzerTestOneInput
 * (and LLVMFuzzerInitialize when it needs one-time setup). They link with
 * libFuzzer in the clang build (-Dfuzz=true) and with replay.c, which runs
 * the seed corpus and the regression inputs once, in every other build. */
#ifndef MESH_FUZZ_H
#define MESH_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A bounded reader over the input: targets split one input into parts. */
struct fuzz_in {
	const uint8_t *p;
	size_t n;
};

/* The next byte, 0 when the input is used up. */
static inline uint8_t
fuzz_byte(struct fuzz_in *in)
{
	uint8_t b = 0;

	if (in->n > 0) {
		b = in->p[0];
		in->p++;
		in->n--;
	}
	return b;
}

/* The bytes up to the next `sep` (consumed, not included), or all that is
 * left: *len bytes at the returned pointer, borrowed from the input. */
static inline const uint8_t *
fuzz_part(struct fuzz_in *in, uint8_t sep, size_t *len)
{
	const uint8_t *start = in->p;
	const uint8_t *end = in->n > 0 ? memchr(in->p, sep, in->n) : NULL;

	*len = end ? (size_t)(end - start) : in->n;
	in->p += *len + (end != NULL);
	in->n -= *len + (end != NULL);
	return start;
}

#endif
