/* http.c: request ids, trace context and header checks (http.h). */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "http.h"
#include "mesh/event.h"

void
gw_request_id(const char *given, char *out)
{
	uint8_t r[16];
	size_t n = given != NULL ? strlen(given) : 0;

	if (n > 0 && n <= GW_REQUEST_ID_MAX &&
	    strspn(given,
	           "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	           "0123456789._:-") == n) {
		memcpy(out, given, n + 1);
		return;
	}
	randombytes_buf(r, sizeof(r));
	mesh_uuid_format(r, 4, out);
}

/* n lower-case hex digits, not all zeros when nonzero is asked. */
static bool
hex_ok(const char *s, size_t n, bool nonzero)
{
	bool zero = true;

	for (size_t i = 0; i < n; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') ||
		      (s[i] >= 'a' && s[i] <= 'f'))) {
			return false;
		}
		zero = zero && s[i] == '0';
	}
	return !(nonzero && zero);
}

static bool
traceparent_ok(const char *tp)
{
	size_t n = tp != NULL ? strlen(tp) : 0;

	if (n < 55 || !hex_ok(tp, 2, false) || strncmp(tp, "ff", 2) == 0 ||
	    tp[2] != '-' || !hex_ok(tp + 3, 32, true) || tp[35] != '-' ||
	    !hex_ok(tp + 36, 16, true) || tp[52] != '-' ||
	    !hex_ok(tp + 53, 2, false)) {
		return false;
	}
	/* Version 00 is exactly this long; later ones may add fields. */
	return strncmp(tp, "00", 2) == 0 ? n == 55 : n == 55 || tp[55] == '-';
}

bool
gw_trace(const char *given, char trace[33], char span[17], char *out)
{
	bool taken = traceparent_ok(given);
	char flags[3] = "01";
	uint8_t r[16];

	if (taken) {
		memcpy(trace, given + 3, 32);
		trace[32] = '\0';
		memcpy(flags, given + 53, 2);
	} else {
		randombytes_buf(r, sizeof(r));
		sodium_bin2hex(trace, 33, r, 16);
	}
	randombytes_buf(r, 8);
	sodium_bin2hex(span, 17, r, 8);
	snprintf(out, 56, "00-%s-%s-%s", trace, span, flags);
	return taken;
}

bool
gw_header_name_ok(const char *name)
{
	size_t n = strlen(name);

	return n > 0 && n <= 64 &&
	       strspn(name,
	              "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	              "0123456789!#$%&'*+-.^_`|~") == n;
}

bool
gw_header_value_ok(const char *value)
{
	for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
		if ((*p < 0x20 && *p != '\t') || *p == 0x7f) {
			return false;
		}
	}
	return true;
}

char *
gw_error_body(const char *message, const char *request_id)
{
	json_t *j = json_pack("{s:s, s:s}", "message", message, "requestId",
	                      request_id);
	char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;

	json_decref(j);
	return text;
}
