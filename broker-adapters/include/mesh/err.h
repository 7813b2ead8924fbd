/* evmesh errors: one enum for the whole mesh.
 *
 * Every call that can fail returns a mesh_err (MESH_OK is 0). The failing
 * call also leaves a human-readable detail for the calling thread, naming
 * the value at fault ("queue 'x': not found"), and the original code of the
 * layer that failed (natsStatus, LMDB return code or errno). Both stay until
 * the thread's next failing call.
 */
#ifndef MESH_ERR_H
#define MESH_ERR_H

typedef enum {
	MESH_OK = 0,
	MESH_EINVAL,       /* invalid argument, name or value */
	MESH_ENOMEM,       /* out of memory */
	MESH_ENOTFOUND,    /* no such stream, queue, key, ... */
	MESH_EEXIST,       /* already exists with other settings */
	MESH_ETOOBIG,      /* over a size limit */
	MESH_EPARSE,       /* malformed input from outside */
	MESH_ETIMEDOUT,    /* no answer in time */
	MESH_EUNREACHABLE, /* no NATS server could be reached */
	MESH_EAUTH,        /* authentication or authorization refused */
	MESH_ECLOSED,      /* the connection is closed */
	MESH_EBROKER,      /* the broker refused or failed the request */
	MESH_ESTORE,       /* the LMDB environment failed */
	MESH_EFULL,        /* a store is full (LMDB map size) */
	MESH_EIO,          /* an operating-system call failed */
	MESH_ESTALE,       /* a receipt handle that is expired or superseded */
	MESH_EINTERNAL,    /* a bug: please report it */
} mesh_err;

#define MESH_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Record err with a detail for the calling thread ("queue 'x': not
 * found": name the value at fault); returns err, so that a failing call
 * ends with `return mesh_err_set(MESH_EINVAL, "...", ...)`. For code
 * built on the library (services, the scheduler) as for the library. */
mesh_err mesh_err_set(mesh_err err, const char *fmt, ...) MESH_PRINTF(2, 3);

/* The one place where each foreign code becomes a mesh_err (natsStatus:
 * mesh_err_nats in mesh/conn.h). Each records "<context>: <the layer's own
 * words>" as the detail, keeps the code (mesh_errorigin) and returns the
 * nearest mesh_err: an LMDB return code (MDB_NOTFOUND is MESH_ENOTFOUND,
 * the *_FULL codes MESH_EFULL, others MESH_ESTORE or their errno's), an
 * errno (ENOENT MESH_ENOTFOUND, ENOMEM MESH_ENOMEM, ...). */
mesh_err mesh_err_mdb(int rc, const char *fmt, ...) MESH_PRINTF(2, 3);
mesh_err mesh_err_errno(int errnum, const char *fmt, ...) MESH_PRINTF(2, 3);

/* Forget the calling thread's last error. */
void mesh_err_clear(void);

/* Where the original code of the last error came from. */
typedef enum {
	MESH_ORIGIN_NONE = 0,
	MESH_ORIGIN_NATS,  /* code is a natsStatus */
	MESH_ORIGIN_JS,    /* code is a JetStream API error code (jsErrCode) */
	MESH_ORIGIN_LMDB,  /* code is an LMDB return code */
	MESH_ORIGIN_ERRNO, /* code is an errno value */
} mesh_origin;

/* The fixed text of an error code ("not found"). Never NULL. */
const char *mesh_strerror(mesh_err err);

/* The code's name ("MESH_ENOTFOUND"), for protocols that carry errors
 * (the services' request APIs); mesh_errname_parse reads it back
 * (MESH_EINTERNAL for a name it does not know). */
const char *mesh_errname(mesh_err err);
mesh_err mesh_errname_parse(const char *name);

/* The detail of the calling thread's last error ("cannot reach NATS at
 * nats://127.0.0.1:4999: connection refused"), or "" when there is none.
 * The string is owned by the library and valid until the thread's next
 * call into it. */
const char *mesh_errdetail(void);

/* The layer and original code of the calling thread's last error. */
mesh_origin mesh_errorigin(int *code);

#endif
