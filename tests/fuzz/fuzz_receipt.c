/* fuzz_receipt: receipt handles as a queue's public calls take them back
 * from anyone (base64, an HMAC, the ack subject inside), and the raw
 * receipts of the runtime's pollers ("@<deadline>@<ack subject>") that
 * mesh__queue_seal turns into real ones. Input: a byte choosing a standard
 * or a FIFO queue, then the receipt text. Forged receipts cannot pass the
 * HMAC, so the raw form, sealed with the queue's key, is what reaches
 * ack_parse and the rest of receipt_open. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "internal.h"
#include "mesh/queue.h"

/* Room for a sealed receipt: what struct mesh_queue_msg has. */
#define RECEIPT_SIZE MESH_QUEUE_RECEIPT_MAX

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t key[32] = {0x6b, 0x65, 0x79};
	struct fuzz_in in = {data, size};
	const char *queue = fuzz_byte(&in) & 1 ? "orders.fifo" : "orders";
	char receipt[RECEIPT_SIZE];

	if (in.n >= sizeof(receipt)) {
		return 0;
	}
	memcpy(receipt, in.p, in.n);
	receipt[in.n] = '\0';
	mesh__queue_receipt_check(queue, key, receipt, sizeof(receipt));
	return 0;
}
