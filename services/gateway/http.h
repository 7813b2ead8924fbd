/* http.h: what mesh-gateway reads from an HTTP request's headers and
 * writes in its answers, pure: request ids, W3C trace context, header
 * names and values it may pass on, the JSON error body.
 *
 * Thread safety: no shared state (randomness from libsodium). */
#ifndef GW_HTTP_H
#define GW_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#define GW_REQUEST_ID_MAX 128

/* The request id: the client's X-Request-Id (given, may be NULL) when it
 * is 1-128 of A-Z a-z 0-9 . _ : -, else a new UUID v4. Into out
 * (GW_REQUEST_ID_MAX + 1 bytes). */
void gw_request_id(const char *given, char *out);

/* A W3C trace context: the trace id and flags of a valid traceparent
 * (given, may be NULL: version 2 hex other than ff, 00 exactly 55
 * characters, lower-case hex, trace and parent ids not all zeros), or a
 * new trace sampled ("01"); and a new span id, the gateway's own. The
 * traceparent to send on ("00-TRACE-SPAN-FLAGS") into out (56 bytes).
 * Returns whether the given one was taken. */
bool gw_trace(const char *given, char trace[33], char span[17], char *out);

/* Whether name is an HTTP token (RFC 9110) of 1-64 characters, and value
 * holds no control character but tab (so no header can be split). */
bool gw_header_name_ok(const char *name);
bool gw_header_value_ok(const char *value);

/* {"message": message, "requestId": request_id} (malloc'ed; NULL when out
 * of memory). */
char *gw_error_body(const char *message, const char *request_id);

#endif
