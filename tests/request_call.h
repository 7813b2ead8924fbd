/* A caller of a service's request handlers, as mesh-gateway calls them
 * (mesh/service_api.h): for the tests of the runtime's requests and of
 * the services that answer them. */
#ifndef TESTS_REQUEST_CALL_H
#define TESTS_REQUEST_CALL_H

#include <stdint.h>

#include <nats/nats.h>

#define TEST_REPLY_HEADERS 8

struct test_reply {
	int status;      /* Mesh-Status; -1: no reply (nats says why) */
	natsStatus nats; /* the request's */
	char body[4096]; /* NUL-terminated (cut at 4095 bytes) */
	char request_id[300], ctype[128], replayed[8];
	int n_hdr; /* the reply's Mesh-Header-NAME, NAME and value */
	char hdr_name[TEST_REPLY_HEADERS][64];
	char hdr_value[TEST_REPLY_HEADERS][256];
};

/* Call service's route ("GET /orders/{id}", its method taken from it)
 * for path, with the path parameter id (NULL: none), query, idem (the
 * Idempotency-Key), body (NULL: empty) and a fresh Mesh-Request-Id;
 * waits up to timeout_ms. Returns r->status. */
int test_request_call(natsConnection *nc, const char *service,
                      const char *route, const char *path, const char *id,
                      const char *query, const char *idem, const char *body,
                      int64_t timeout_ms, struct test_reply *r);

/* The reply's Mesh-Header-NAME value, "" when absent. */
const char *test_reply_header(const struct test_reply *r, const char *name);

#endif
