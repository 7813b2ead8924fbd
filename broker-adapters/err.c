/* err.c: mesh_err, its texts, and the translation of natsStatus, LMDB and
 * errno codes (each in exactly one function here). */
#include <ctype.h>
#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "internal.h"

static _Thread_local char last_detail[1024];
static _Thread_local mesh_origin last_origin;
static _Thread_local int last_code;

static const char *const names[] = {
        "MESH_OK",           "MESH_EINVAL",  "MESH_ENOMEM",  "MESH_ENOTFOUND",
        "MESH_EEXIST",       "MESH_ETOOBIG", "MESH_EPARSE",  "MESH_ETIMEDOUT",
        "MESH_EUNREACHABLE", "MESH_EAUTH",   "MESH_ECLOSED", "MESH_EBROKER",
        "MESH_ESTORE",       "MESH_EFULL",   "MESH_EIO",     "MESH_ESTALE",
        "MESH_EINTERNAL",
};

const char *
mesh_errname(mesh_err err)
{
	return (unsigned)err < sizeof(names) / sizeof(*names)
	               ? names[err]
	               : "MESH_EINTERNAL";
}

mesh_err
mesh_errname_parse(const char *name)
{
	for (size_t i = 0; name != NULL && i < sizeof(names) / sizeof(*names);
	     i++) {
		if (strcmp(names[i], name) == 0) {
			return (mesh_err)i;
		}
	}
	return MESH_EINTERNAL;
}

const char *
mesh_strerror(mesh_err err)
{
	switch (err) {
	case MESH_OK:
		return "success";
	case MESH_EINVAL:
		return "invalid argument";
	case MESH_ENOMEM:
		return "out of memory";
	case MESH_ENOTFOUND:
		return "not found";
	case MESH_EEXIST:
		return "already exists";
	case MESH_ETOOBIG:
		return "too big";
	case MESH_EPARSE:
		return "malformed input";
	case MESH_ETIMEDOUT:
		return "timed out";
	case MESH_EUNREACHABLE:
		return "server unreachable";
	case MESH_EAUTH:
		return "authentication failed";
	case MESH_ECLOSED:
		return "connection closed";
	case MESH_EBROKER:
		return "broker error";
	case MESH_ESTORE:
		return "store error";
	case MESH_EFULL:
		return "store full";
	case MESH_EIO:
		return "I/O error";
	case MESH_ESTALE:
		return "stale handle";
	case MESH_EINTERNAL:
		return "internal error";
	}
	return "unknown error";
}

const char *
mesh_errdetail(void)
{
	return last_detail;
}

mesh_origin
mesh_errorigin(int *code)
{
	if (code != NULL) {
		*code = last_code;
	}
	return last_origin;
}

void
mesh_err_clear(void)
{
	last_detail[0] = '\0';
	last_origin = MESH_ORIGIN_NONE;
	last_code = 0;
}

/* Format "<context>[: <cause>]" into the thread's detail buffer. The
 * attribute lets clang check callers' formats as gcc does (-Wformat=2). */
static void set_detail(const char *cause, const char *fmt, va_list ap)
        MESH_PRINTF(2, 0);

static void
set_detail(const char *cause, const char *fmt, va_list ap)
{
	int n = vsnprintf(last_detail, sizeof(last_detail), fmt, ap);

	if (n < 0) {
		last_detail[0] = '\0';
		n = 0;
	}
	if (cause != NULL && cause[0] != '\0' &&
	    (size_t)n < sizeof(last_detail)) {
		snprintf(last_detail + n, sizeof(last_detail) - (size_t)n,
		         ": %s", cause);
	}
}

mesh_err
mesh_err_set(mesh_err err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	set_detail(NULL, fmt, ap);
	va_end(ap);
	last_origin = MESH_ORIGIN_NONE;
	last_code = 0;
	return err;
}

static mesh_err
from_jserr(jsErrCode jerr)
{
	switch (jerr) {
	case JSStreamNotFoundErr:
	case JSConsumerNotFoundErr:
	case JSNoMessageFoundErr:
		return MESH_ENOTFOUND;
	case JSStreamNameExistErr:
	case JSConsumerNameExistErr:
	case JSConsumerExistingActiveErr:
		return MESH_EEXIST;
	case JSStreamInvalidConfig:
	case JSConsumerInvalidPolicyErr:
	case JSConsumerConfigRequiredErr:
	case JSStreamSubjectOverlapErr:
		return MESH_EINVAL;
	case JSStreamStoreFailedErr:
	case JSInsufficientResourcesErr:
	case JSStorageResourcesExceededErr:
	case JSMemoryResourcesExceededErr:
		return MESH_EFULL;
	case JSStreamMessageExceedsMaximumErr:
		return MESH_ETOOBIG;
	default:
		return MESH_EBROKER;
	}
}

static mesh_err
from_natsstatus(natsStatus s)
{
	switch (s) {
	case NATS_OK:
		return MESH_OK;
	case NATS_NO_MEMORY:
		return MESH_ENOMEM;
	case NATS_INVALID_ARG:
	case NATS_INVALID_SUBJECT:
	case NATS_INVALID_TIMEOUT:
	case NATS_ILLEGAL_STATE:
		return MESH_EINVAL;
	case NATS_NOT_FOUND:
		return MESH_ENOTFOUND;
	case NATS_TIMEOUT:
		return MESH_ETIMEDOUT;
	case NATS_NO_SERVER:
		return MESH_EUNREACHABLE;
	case NATS_CONNECTION_AUTH_FAILED:
	case NATS_NOT_PERMITTED:
		return MESH_EAUTH;
	case NATS_CONNECTION_CLOSED:
	case NATS_CONNECTION_DISCONNECTED:
	case NATS_STALE_CONNECTION:
		return MESH_ECLOSED;
	case NATS_MAX_PAYLOAD:
		return MESH_ETOOBIG;
	case NATS_PROTOCOL_ERROR:
		return MESH_EPARSE;
	case NATS_IO_ERROR:
	case NATS_SYS_ERROR:
	case NATS_SSL_ERROR:
		return MESH_EIO;
	default:
		return MESH_EBROKER;
	}
}

/* The last permission nats-server refused, any connection's. */
static pthread_mutex_t denied_mu = PTHREAD_MUTEX_INITIALIZER;
static char denied_text[512];
static struct timespec denied_at;

void
mesh__err_denied(const char *text)
{
	pthread_mutex_lock(&denied_mu);
	snprintf(denied_text, sizeof(denied_text), "%s", text);
	clock_gettime(CLOCK_MONOTONIC, &denied_at);
	pthread_mutex_unlock(&denied_mu);
}

/* Copy the refusal noted within the last 10 s when it names subject (any,
 * for NULL), and forget it: a refusal of another subject stays for its
 * own caller when subject is given, and is forgotten when it is not. */
static bool
denied_take(const char *subject, char *buf, size_t size)
{
	struct timespec now;
	bool taken;

	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&denied_mu);
	taken = denied_text[0] != '\0' &&
	        now.tv_sec - denied_at.tv_sec <= 10 &&
	        (subject == NULL || strstr(denied_text, subject) != NULL);
	if (taken) {
		snprintf(buf, size, "%s", denied_text);
	}
	if (taken || subject == NULL) {
		denied_text[0] = '\0';
	}
	pthread_mutex_unlock(&denied_mu);
	return taken;
}

bool
mesh__err_denied_recent(char *buf, size_t size)
{
	return denied_take(NULL, buf, size);
}

bool
mesh__err_denied_subject(const char *subject, char *buf, size_t size)
{
	return denied_take(subject, buf, size);
}

mesh_err
mesh_err_nats(natsStatus s, jsErrCode jerr, const char *fmt, ...)
{
	const char *cause = nats_GetLastError(NULL);
	mesh_err err;
	va_list ap;

	char clean[512], denied[512];
	char *p;

	/* A request whose publish nats-server refused gets no answer: its
	 * timeout is the refusal. */
	if ((s == NATS_TIMEOUT || s == NATS_NOT_PERMITTED) &&
	    mesh__err_denied_recent(denied, sizeof(denied))) {
		cause = denied;
		s = NATS_NOT_PERMITTED;
		jerr = 0;
	}
	if (cause == NULL || cause[0] == '\0') {
		cause = natsStatus_GetText(s);
	}
	/* cnats prefixes its source position, "(conn.c:1905): ", and may
	 * end in ": (null)"; users need neither. */
	if (cause[0] == '(' && (p = strstr(cause, "): ")) != NULL) {
		cause = p + 3;
	}
	snprintf(clean, sizeof(clean), "%s", cause);
	if ((p = strstr(clean, ": (null)")) != NULL && p[8] == '\0') {
		*p = '\0';
	}
	va_start(ap, fmt);
	set_detail(clean, fmt, ap);
	va_end(ap);
	if (jerr != 0) {
		last_origin = MESH_ORIGIN_JS;
		last_code = (int)jerr;
		err = from_jserr(jerr);
	} else {
		last_origin = MESH_ORIGIN_NATS;
		last_code = (int)s;
		err = from_natsstatus(s);
	}
	return err == MESH_OK ? MESH_EINTERNAL : err;
}

static mesh_err
from_errno(int errnum)
{
	switch (errnum) {
	case ENOMEM:
		return MESH_ENOMEM;
	case ENOENT:
		return MESH_ENOTFOUND;
	case EEXIST:
		return MESH_EEXIST;
	case EINVAL:
		return MESH_EINVAL;
	case EACCES:
	case EPERM:
		return MESH_EAUTH;
	case ETIMEDOUT:
		return MESH_ETIMEDOUT;
	case ECONNREFUSED:
	case EHOSTUNREACH:
	case ENETUNREACH:
		return MESH_EUNREACHABLE;
	case E2BIG:
	case EFBIG:
		return MESH_ETOOBIG;
	case ENOSPC:
		return MESH_EFULL;
	default:
		return MESH_EIO;
	}
}

mesh_err
mesh_err_mdb(int rc, const char *fmt, ...)
{
	mesh_err err;
	va_list ap;

	va_start(ap, fmt);
	set_detail(mdb_strerror(rc), fmt, ap);
	va_end(ap);
	last_origin = MESH_ORIGIN_LMDB;
	last_code = rc;
	switch (rc) {
	case MDB_NOTFOUND:
		err = MESH_ENOTFOUND;
		break;
	case MDB_KEYEXIST:
		err = MESH_EEXIST;
		break;
	case MDB_MAP_FULL:
	case MDB_TXN_FULL:
	case MDB_CURSOR_FULL:
	case MDB_PAGE_FULL:
	case MDB_DBS_FULL:
	case MDB_READERS_FULL:
		err = MESH_EFULL;
		break;
	case MDB_BAD_VALSIZE:
		err = MESH_ETOOBIG;
		break;
	default:
		/* LMDB passes errno values through. */
		err = rc > 0 ? from_errno(rc) : MESH_ESTORE;
		break;
	}
	return err;
}

mesh_err
mesh_err_errno(int errnum, const char *fmt, ...)
{
	char cause[128];
	va_list ap;

	/* "connection refused", as the rest of our messages: lower case. */
	snprintf(cause, sizeof(cause), "%s", strerror(errnum));
	cause[0] = (char)tolower((unsigned char)cause[0]);
	va_start(ap, fmt);
	set_detail(cause, fmt, ap);
	va_end(ap);
	last_origin = MESH_ORIGIN_ERRNO;
	last_code = errnum;
	return from_errno(errnum);
}
