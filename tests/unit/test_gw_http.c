/* mesh-gateway's header handling (services/gateway/http.h): request ids
 * kept or made, W3C traceparents accepted or refused, header names and
 * values it may pass on, the JSON error body. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "http.h"

static bool
taken(const char *tp)
{
	char trace[33], span[17], out[56];

	return gw_trace(tp, trace, span, out);
}

int
main(void)
{
	char id[GW_REQUEST_ID_MAX + 1], trace[33], span[17], out[56];
	char long_id[200], *body;
	const char *tp =
	        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

	gw_request_id("abc-1.2:x_y", id);
	is_str(id, "abc-1.2:x_y", "a sane X-Request-Id is kept");
	gw_request_id("bad id", id);
	ok(strlen(id) == 36 && id[14] == '4',
	   "one with a space: a new UUID v4");
	gw_request_id("", id);
	is_int(strlen(id), 36, "an empty one: a new UUID");
	gw_request_id(NULL, id);
	is_int(strlen(id), 36, "none: a new UUID");
	memset(long_id, 'a', 129);
	long_id[129] = '\0';
	gw_request_id(long_id, id);
	is_int(strlen(id), 36, "129 characters: a new UUID");
	gw_request_id("x\r\nInjected: 1", id);
	is_int(strlen(id), 36, "a CR LF: a new UUID");

	ok(gw_trace(tp, trace, span, out), "a valid traceparent is taken");
	is_str(trace, "0af7651916cd43dd8448eb211c80319c", "its trace id");
	ok(strncmp(out, "00-0af7651916cd43dd8448eb211c80319c-", 36) == 0 &&
	           strcmp(out + 52, "-01") == 0 && strlen(out) == 55,
	   "sent on with the same trace and flags");
	ok(strcmp(span, "b7ad6b7169203331") != 0 && strlen(span) == 16,
	   "and the gateway's own span");
	ok(!taken(NULL), "none: a new trace");
	ok(!taken("00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"),
	   "upper-case hex refused");
	ok(!taken("00-00000000000000000000000000000000-b7ad6b7169203331-01"),
	   "an all-zero trace id refused");
	ok(!taken("00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01"),
	   "an all-zero parent id refused");
	ok(!taken("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
	   "version ff refused");
	ok(!taken("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x"),
	   "version 00 with more refused");
	ok(taken("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x"),
	   "a later version with more taken");
	ok(!taken("00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333"),
	   "a short one refused");
	gw_trace("junk", trace, span, out);
	ok(strlen(out) == 55 && strncmp(out, "00-", 3) == 0 &&
	           strcmp(out + 52, "-01") == 0,
	   "a new trace: 00-TRACE-SPAN-01");

	ok(gw_header_name_ok("X-Tenant"), "X-Tenant is a header name");
	ok(!gw_header_name_ok("X Tenant"), "a space is not");
	ok(!gw_header_name_ok("X:T"), "a colon is not");
	ok(!gw_header_name_ok(""), "nor nothing");
	ok(gw_header_value_ok("a\tb c"), "a value with tab and space");
	ok(!gw_header_value_ok("a\r\nb: c"), "not one with CR LF");
	ok(!gw_header_value_ok("a\x7f"), "nor DEL");

	body = gw_error_body("no route for GET /x \"q\"", "rid");
	is_str(body,
	       "{\"message\":\"no route for GET /x \\\"q\\\"\","
	       "\"requestId\":\"rid\"}",
	       "the error body, escaped");
	free(body);
	return tap_done();
}
