/* cmd_state.c: meshctl state get|scan|backup: a service's state, read
 * while it runs, and a consistent copy of it. By default a client of the
 * service's own request API (mesh.service.NAME.state.*, answered by one
 * running instance: mesh/service_api.h), so it works from any machine and
 * needs no access to the service's files. With --state DIR it reads the
 * files instead: for a stopped service.
 *
 * From files, the environment is opened with MDB_RDONLY. A reader still needs
 * a slot in the reader table of lock.mdb, so that the service's writer does
 * not recycle the pages of the snapshot being read: that takes write access to
 * lock.mdb (run as the service's user). Without it, --no-lock reads with
 * MDB_NOLOCK, taking no slot: fine for a stopped service, a gamble for a
 * live one (pages may change under the read), so it is never the default,
 * and backup refuses it. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lmdb.h>

#include <sodium.h>

#include "cli.h"
#include "commands.h"
#include "mesh_schemas.h"
#include "message.h"
#include "mesh/partition.h"
#include "mesh/service_api.h"

/* The runtime opens 5 named databases; room for more. */
#define STATE_MAXDBS 8

struct state_env {
	const char *service;
	char dir[4096];
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
};

static void
state_close(struct state_env *st)
{
	if (st->txn != NULL) {
		mdb_txn_abort(st->txn);
	}
	if (st->env != NULL) {
		mdb_env_close(st->env);
	}
	st->txn = NULL;
	st->env = NULL;
}

/* Report an LMDB failure naming the service and its directory; returns
 * CLI_FAIL. */
static int
state_fail(const struct cli *cli, const struct state_env *st, int rc)
{
	fprintf(stderr, "%s %s: service '%s': state at %s: %s\n", cli->prog,
	        cli->cmd_path, st->service, st->dir, mdb_strerror(rc));
	return CLI_FAIL;
}

/* ---- over NATS ------------------------------------------------------------
 */

#define API_WAIT 10000 /* ms: a backup copies the whole environment first */

static int state_ask(struct cli *cli, const char *service, int part,
                     const char *verb, json_t *req, bool quiet_notfound,
                     json_t **reply);

/* Ask one instance of the service (part < 0), or the owner of its
 * partition part; the answer's JSON into *reply. Prints why not (an
 * error naming the key or value at fault: exit 2 when the input was,
 * else 1; no instance: 1, saying how to read a stopped one). */
static int
state_call(struct cli *cli, const char *service, int part, const char *verb,
           json_t *req, json_t **reply)
{
	return state_ask(cli, service, part, verb, req, false, reply);
}

/* state_call's; quiet_notfound: an answer "not found" is returned as
 * CLI_FAIL with *reply NULL, unprinted (a key looked for in turn). */
static int
state_ask(struct cli *cli, const char *service, int part, const char *verb,
          json_t *req, bool quiet_notfound, json_t **reply)
{
	char subject[MESH_SERVICE_NAME_MAX + 64],
	        who[MESH_SERVICE_NAME_MAX + 64];
	const char *code, *msg;
	json_t *j;
	int rc;

	*reply = NULL;
	if (part < 0) {
		snprintf(subject, sizeof(subject), MESH_SERVICE_STATE_SUBJECT,
		         service, verb);
		snprintf(who, sizeof(who), "instance of service '%s'",
		         service);
	} else {
		snprintf(subject, sizeof(subject),
		         MESH_SERVICE_PART_STATE_SUBJECT, service, part, verb);
		snprintf(who, sizeof(who),
		         "owner of service '%s' partition %d", service, part);
	}
	if ((rc = cli_request(cli, subject, req, API_WAIT, who,
	                      part < 0 ? "is it running? (--state DIR reads "
	                                 "a stopped service's files)"
	                               : "is an instance running? (meshctl "
	                                 "service info shows the owners)",
	                      &j)) != CLI_OK) {
		return rc;
	}
	if ((code = json_string_value(json_object_get(j, "code"))) != NULL) {
		msg = json_string_value(json_object_get(j, "error"));
		if (quiet_notfound &&
		    mesh_errname_parse(code) == MESH_ENOTFOUND) {
			json_decref(j);
			return CLI_FAIL;
		}
		rc = mesh_errname_parse(code) == MESH_EINVAL ? CLI_USAGE
		                                             : CLI_FAIL;
		fprintf(stderr, "%s %s: %s\n", cli->prog, cli->cmd_path,
		        msg ? msg : code);
		json_decref(j);
		return rc;
	}
	*reply = j;
	return CLI_OK;
}

/* The service's partitions: *n 0 when it is not partitioned; --partition
 * K into *only (-1 without it). Prints why not. */
static int
state_parts(struct cli *cli, const char *service, int *n, int *only)
{
	struct mesh_conn *c = NULL;
	long long k = -1;
	mesh_err err;

	*n = 0;
	*only = -1;
	if (!cli_opt_long(cli, "--partition", 0, MESH_PARTITIONS_MAX - 1, -1,
	                  &k)) {
		return CLI_USAGE;
	}
	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	err = mesh_partitions_get(c, service, n);
	mesh_conn_close(c);
	if (err == MESH_ENOTFOUND) {
		*n = 0;
	} else if (err != MESH_OK) {
		return cli_fail(cli, err);
	}
	if (k >= 0 && k >= *n) {
		return cli_usage_error(
		        cli,
		        "--partition %lld: service '%s' has %d partitions", k,
		        service, *n);
	}
	*only = (int)k;
	return CLI_OK;
}

/* A base64 member of an answer, decoded into *out (malloc'd; free it). */
static bool
b64_field(json_t *j, const char *name, MDB_val *out)
{
	const char *enc = json_string_value(json_object_get(j, name));
	size_t len = 0, cap = enc ? strlen(enc) / 4 * 3 + 3 : 0;
	unsigned char *buf = enc ? malloc(cap + 1) : NULL;

	if (buf == NULL ||
	    sodium_base642bin(buf, cap, enc, strlen(enc), NULL, &len, NULL,
	                      sodium_base64_VARIANT_ORIGINAL) != 0) {
		free(buf);
		return false;
	}
	out->mv_data = buf;
	out->mv_size = len;
	return true;
}

/* The database a request names: --db's, or the handlers'. */
static const char *
db_name(struct cli *cli)
{
	return cli_opt(cli, "--db") ? cli_opt(cli, "--db")
	                            : MESH_SERVICE_DB_STATE;
}

/* ---- from files -----------------------------------------------------------
 */

/* Open SERVICE's environment (--state DIR, or var/services/SERVICE) read
 * only, with a read transaction on the database --db (the handlers'
 * "state"). Prints why not and returns the exit code. */
static int
state_open(struct cli *cli, struct state_env *st, bool may_nolock)
{
	bool nolock = may_nolock && cli_flag(cli, "--no-lock");
	const char *dir = cli_opt(cli, "--state");
	const char *db = cli_opt(cli, "--db") ? cli_opt(cli, "--db")
	                                      : MESH_SERVICE_DB_STATE;
	char data[4200];
	struct stat sb;
	unsigned flags = MDB_RDONLY | (nolock ? MDB_NOLOCK : 0);
	int rc;

	st->service = cli_pos(cli, 0);
	if (!service_name_check(cli, st->service)) {
		return CLI_USAGE;
	}
	if (dir != NULL) {
		snprintf(st->dir, sizeof(st->dir), "%s", dir);
	} else {
		snprintf(st->dir, sizeof(st->dir), "var/services/%s",
		         st->service);
	}
	snprintf(data, sizeof(data), "%s/data.mdb", st->dir);
	if (stat(data, &sb) != 0) {
		if (errno == ENOENT || errno == ENOTDIR) {
			fprintf(stderr,
			        "%s %s: service '%s' has no state at %s\n",
			        cli->prog, cli->cmd_path, st->service,
			        st->dir);
		} else {
			fprintf(stderr,
			        "%s %s: service '%s': state at %s: %s\n",
			        cli->prog, cli->cmd_path, st->service, st->dir,
			        strerror(errno));
		}
		return CLI_FAIL;
	}
	if ((rc = mdb_env_create(&st->env)) != 0 ||
	    (rc = mdb_env_set_maxdbs(st->env, STATE_MAXDBS)) != 0 ||
	    (rc = mdb_env_open(st->env, st->dir, flags, 0644)) != 0) {
		fprintf(stderr,
		        "%s %s: service '%s': cannot open its state "
		        "at %s: %s\n",
		        cli->prog, cli->cmd_path, st->service, st->dir,
		        mdb_strerror(rc));
		/* With data.mdb readable, EACCES is the lock file's. */
		if (rc == EACCES && !nolock && access(data, R_OK) == 0) {
			fprintf(stderr,
			        "A reader needs write access to %s/lock.mdb: "
			        "run as the service's user%s.\n",
			        st->dir,
			        may_nolock ? " (--no-lock reads without it, "
			                     "safely only while the service "
			                     "is stopped)"
			                   : "");
		}
		state_close(st);
		return CLI_FAIL;
	}
	if ((rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &st->txn)) != 0 ||
	    (rc = mdb_dbi_open(st->txn, db, 0, &st->dbi)) != 0) {
		if (rc == MDB_NOTFOUND) {
			fprintf(stderr,
			        "%s %s: service '%s' has no database '%s' in "
			        "%s\n",
			        cli->prog, cli->cmd_path, st->service, db,
			        st->dir);
		} else {
			state_fail(cli, st, rc);
		}
		state_close(st);
		return CLI_FAIL;
	}
	return CLI_OK;
}

/* KEY or PREFIX as given, or decoded from hex with --hex. *buf (to free)
 * holds decoded bytes. Prints why not and returns false. */
static bool
key_arg(struct cli *cli, const char *text, MDB_val *out, unsigned char **buf)
{
	size_t n = strlen(text);

	*buf = NULL;
	if (!cli_flag(cli, "--hex")) {
		*out = (MDB_val){n, (void *)text};
		return true;
	}
	if (n % 2 != 0 || (*buf = malloc(n / 2 + 1)) == NULL) {
		cli_usage_error(cli,
		                "--hex: '%s' is not an even number of "
		                "hex digits",
		                text);
		return false;
	}
	for (size_t i = 0; i < n / 2; i++) {
		unsigned v;
		if (sscanf(text + 2 * i, "%2x", &v) != 1 ||
		    strchr("0123456789abcdefABCDEF", text[2 * i]) == NULL ||
		    strchr("0123456789abcdefABCDEF", text[2 * i + 1]) ==
		            NULL) {
			cli_usage_error(cli, "--hex: '%s' is not hex", text);
			free(*buf);
			*buf = NULL;
			return false;
		}
		(*buf)[i] = (unsigned char)v;
	}
	*out = (MDB_val){n / 2, *buf};
	return true;
}

/* Printable UTF-8: valid, and no control characters but tab and newline. */
static bool
printable(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned c = p[i];
		size_t len;
		unsigned cp;
		if (c < 0x80) {
			if ((c < 0x20 && c != '\t' && c != '\n') ||
			    c == 0x7f) {
				return false;
			}
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			len = 2, cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3, cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4, cp = c & 0x07;
		} else {
			return false;
		}
		if (i + len > n) {
			return false;
		}
		for (size_t k = 1; k < len; k++) {
			if ((p[i + k] & 0xc0) != 0x80) {
				return false;
			}
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		/* overlong forms, surrogates, beyond U+10FFFF, C1 controls */
		if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff ||
		    (cp >= 0x80 && cp < 0xa0)) {
			return false;
		}
		i += len;
	}
	return true;
}

/* A key or value for a person: as text when printable, else 0x + hex. */
static void
print_bytes(FILE *f, const MDB_val *v)
{
	const unsigned char *p = v->mv_data;

	if (printable(p, v->mv_size)) {
		fwrite(p, 1, v->mv_size, f);
		return;
	}
	fputs("0x", f);
	for (size_t i = 0; i < v->mv_size; i++) {
		fprintf(f, "%02x", p[i]);
	}
}

/* o[name] = v as text when printable, else o[name_base64] = base64. */
static void
json_put_bytes(json_t *o, const char *name, const MDB_val *v)
{
	char key[32];
	char *enc;

	if (printable(v->mv_data, v->mv_size)) {
		json_object_set_new(o, name,
		                    json_stringn(v->mv_data, v->mv_size));
		return;
	}
	snprintf(key, sizeof(key), "%s_base64", name);
	enc = mesh_base64(v->mv_data, v->mv_size);
	json_object_set_new(o, key, enc ? json_string(enc) : json_null());
	free(enc);
}

static json_t *
json_item(const MDB_val *k, const MDB_val *v)
{
	json_t *o = json_object();

	json_put_bytes(o, "key", k);
	json_put_bytes(o, "value", v);
	return o;
}

/* --type T: the protobuf message the values are (values carry no type of
 * their own). NULL when not given; false after a usage error when T is
 * not in the schema registry. */
static bool
value_type(struct cli *cli, const char **type)
{
	*type = cli_opt(cli, "--type");
	if (*type != NULL && mesh_schema_find(*type) == NULL) {
		cli_usage_error(cli,
		                "--type '%s': not a message in the schema "
		                "registry (see schemas/)",
		                *type);
		return false;
	}
	return true;
}

/* Print a decoded value: compact JSON, then a newline. */
static void
print_value_json(json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII |
	                                JSON_ENCODE_ANY);

	fputs(s ? s : "", stdout);
	free(s);
}

/* A key's value as get prints it: text or hex, the JSON of --type T,
 * the bytes (--raw), or JSON (--json). */
static int
print_value(struct cli *cli, const char *service, const MDB_val *k,
            const MDB_val *v, const char *type)
{
	json_t *vj = NULL;
	char why[256];

	if (type != NULL && !cli_flag(cli, "--raw") &&
	    !proto_json(type, v->mv_data, v->mv_size, &vj, why, sizeof(why))) {
		fprintf(stderr, "%s %s: service '%s': the value of key '",
		        cli->prog, cli->cmd_path, service);
		print_bytes(stderr, k);
		fprintf(stderr, "' (%zu bytes): %s\n", v->mv_size, why);
		return CLI_FAIL;
	}
	if (cli->json) {
		json_t *o = json_item(k, v);
		json_object_set_new(o, "service", json_string(service));
		json_object_set_new(o, "size", json_integer(v->mv_size));
		if (vj != NULL) {
			json_object_set(o, "value_json", vj);
		}
		cli_print_json(o);
	} else if (cli_flag(cli, "--raw")) {
		fwrite(v->mv_data, 1, v->mv_size, stdout);
	} else if (vj != NULL) {
		print_value_json(vj);
		fputc('\n', stdout);
	} else {
		print_bytes(stdout, v);
		fputc('\n', stdout);
	}
	json_decref(vj);
	return CLI_OK;
}

static int
get_over_nats(struct cli *cli, const MDB_val *k, const char *type)
{
	const char *service = cli_pos(cli, 0);
	char *enc = mesh_base64(k->mv_data, k->mv_size);
	json_t *reply = NULL;
	int n, part;
	MDB_val v;
	int rc;

	if (!service_name_check(cli, service)) {
		free(enc);
		return CLI_USAGE;
	}
	if ((rc = state_parts(cli, service, &n, &part)) != CLI_OK) {
		free(enc);
		return rc;
	}
	if (n > 0 && part < 0) {
		/* The key's own partition first (state keyed as events
		 * are), then the others in turn: a handler may key its state
		 * otherwise ("order/ID" for an event keyed "ID"). */
		int first = mesh_partition_of(k->mv_data, k->mv_size, n);
		for (int i = 0; i < n; i++) {
			part = (first + i) % n;
			rc = state_ask(cli, service, part, "get",
			               json_pack("{s:s, s:s}", "db",
			                         db_name(cli), "key_base64",
			                         enc ? enc : ""),
			               i < n - 1, &reply);
			if (rc == CLI_OK || reply != NULL || i == n - 1 ||
			    rc == CLI_USAGE) {
				break;
			}
		}
	} else {
		rc = state_call(cli, service, part, "get",
		                json_pack("{s:s, s:s}", "db", db_name(cli),
		                          "key_base64", enc ? enc : ""),
		                &reply);
	}
	free(enc);
	if (rc != CLI_OK) {
		return rc;
	}
	if (!b64_field(reply, "value_base64", &v)) {
		json_decref(reply);
		fprintf(stderr,
		        "%s %s: service '%s' answered without a "
		        "value\n",
		        cli->prog, cli->cmd_path, service);
		return CLI_FAIL;
	}
	json_decref(reply);
	rc = print_value(cli, service, k, &v, type);
	free(v.mv_data);
	return rc;
}

int
cmd_state_get(struct cli *cli)
{
	struct state_env st = {0};
	const char *type;
	unsigned char *buf;
	MDB_val k, v;
	int rc;

	if (!value_type(cli, &type) ||
	    !key_arg(cli, cli_pos(cli, 1), &k, &buf)) {
		return CLI_USAGE;
	}
	if (k.mv_size == 0 || k.mv_size > 511) {
		free(buf);
		return cli_usage_error(cli, "KEY: 1-511 bytes");
	}
	if (cli_opt(cli, "--state") == NULL) {
		rc = get_over_nats(cli, &k, type);
		free(buf);
		return rc;
	}
	if ((rc = state_open(cli, &st, true)) != CLI_OK) {
		free(buf);
		return rc;
	}
	rc = mdb_get(st.txn, st.dbi, &k, &v);
	if (rc == MDB_NOTFOUND) {
		fprintf(stderr, "%s %s: service '%s' has no key '", cli->prog,
		        cli->cmd_path, st.service);
		print_bytes(stderr, &k);
		fprintf(stderr, "' (state at %s)\n", st.dir);
		rc = CLI_FAIL;
	} else if (rc != 0) {
		rc = state_fail(cli, &st, rc);
	} else {
		rc = print_value(cli, st.service, &k, &v, type);
	}
	state_close(&st);
	free(buf);
	return rc;
}

/* A scan's output as it goes: JSON items, or KEY<tab>VALUE lines. */
struct scan {
	struct cli *cli;
	const char *type; /* --type T, or NULL */
	json_t *items;    /* --json */
	long long n, undecoded;
	bool more;
};

static void
scan_item(struct scan *sc, const MDB_val *k, const MDB_val *v)
{
	json_t *vj = NULL;
	char why[256];

	sc->n++;
	if (sc->type != NULL && !proto_json(sc->type, v->mv_data, v->mv_size,
	                                    &vj, why, sizeof(why))) {
		sc->undecoded++;
	}
	if (sc->items != NULL) {
		json_t *o = json_item(k, v);
		if (vj != NULL) {
			json_object_set(o, "value_json", vj);
		}
		json_array_append_new(sc->items, o);
	} else {
		print_bytes(stdout, k);
		fputc('\t', stdout);
		if (vj != NULL) {
			print_value_json(vj);
		} else {
			print_bytes(stdout, v);
		}
		fputc('\n', stdout);
	}
	json_decref(vj);
}

static void
scan_end(struct scan *sc, const char *service)
{
	if (sc->items != NULL) {
		cli_print_json(json_pack("{s:s, s:o, s:I, s:b}", "service",
		                         service, "items", sc->items, "count",
		                         (json_int_t)sc->n, "truncated",
		                         sc->more));
		sc->items = NULL;
	} else if (sc->more) {
		fprintf(stderr,
		        "(%lld keys shown; there are more: raise "
		        "--limit)\n",
		        sc->n);
	}
	if (sc->undecoded > 0) {
		fprintf(stderr,
		        "(%lld of the values do not decode as %s: shown "
		        "as stored)\n",
		        sc->undecoded, sc->type);
	}
}

/* Page through one instance's answers (at most 1,000 keys each; part as
 * state_call's) until limit keys or the prefix's end. */
static int
scan_part(struct scan *sc, const char *service, int part, const char *pfx,
          long long limit)
{
	char *after = NULL;
	int rc = CLI_OK;

	for (;;) {
		long long want = limit - sc->n + 1; /* one more: is there? */
		json_t *req =
		        json_pack("{s:s, s:s, s:I}", "db", db_name(sc->cli),
		                  "prefix_base64", pfx ? pfx : "", "limit",
		                  (json_int_t)(want > 1000 ? 1000 : want));
		json_t *reply = NULL, *item;
		size_t i;
		if (after != NULL) {
			json_object_set_new(req, "after_base64",
			                    json_string(after));
		}
		if ((rc = state_call(sc->cli, service, part, "scan", req,
		                     &reply)) != CLI_OK) {
			break;
		}
		json_array_foreach(json_object_get(reply, "items"), i, item)
		{
			MDB_val k, v;
			if (sc->n == limit) {
				sc->more = true;
				break;
			}
			if (b64_field(item, "key_base64", &k)) {
				if (b64_field(item, "value_base64", &v)) {
					scan_item(sc, &k, &v);
					free(v.mv_data);
				}
				free(k.mv_data);
			}
		}
		const char *next = json_string_value(
		        json_object_get(reply, "next_base64"));
		free(after);
		after = json_is_true(json_object_get(reply, "more")) &&
		                        !sc->more && next != NULL
		                ? strdup(next)
		                : NULL;
		json_decref(reply);
		if (after == NULL || sc->more) {
			break;
		}
	}
	free(after);
	return rc;
}

/* The service's keys; a partitioned service's partition by partition
 * (each in order), or --partition's alone. */
static int
scan_over_nats(struct scan *sc, const MDB_val *prefix, long long limit)
{
	const char *service = cli_pos(sc->cli, 0);
	char *pfx;
	int rc, n, only;

	if (!service_name_check(sc->cli, service)) {
		return CLI_USAGE;
	}
	if ((rc = state_parts(sc->cli, service, &n, &only)) != CLI_OK) {
		return rc;
	}
	pfx = mesh_base64(prefix->mv_data, prefix->mv_size);
	if (n == 0 || only >= 0) {
		rc = scan_part(sc, service, only, pfx, limit);
	} else {
		for (int k = 0; k < n && rc == CLI_OK && !sc->more; k++) {
			rc = scan_part(sc, service, k, pfx, limit);
		}
	}
	free(pfx);
	if (rc == CLI_OK) {
		scan_end(sc, service);
	}
	return rc;
}

int
cmd_state_scan(struct cli *cli)
{
	struct state_env st = {0};
	const char *ptext = cli_pos(cli, 1);
	unsigned char *buf = NULL;
	MDB_cursor *cur = NULL;
	MDB_val p = {0, NULL}, k, v;
	struct scan sc = {.cli = cli};
	long long limit;
	int rc;

	if (!value_type(cli, &sc.type) ||
	    !cli_opt_long(cli, "--limit", 1, 100000000, 100, &limit) ||
	    (ptext != NULL && !key_arg(cli, ptext, &p, &buf))) {
		return CLI_USAGE;
	}
	if (cli->json) {
		sc.items = json_array();
	}
	if (cli_opt(cli, "--state") == NULL) {
		rc = scan_over_nats(&sc, &p, limit);
		json_decref(sc.items);
		free(buf);
		return rc;
	}
	if ((rc = state_open(cli, &st, true)) != CLI_OK) {
		json_decref(sc.items);
		free(buf);
		return rc;
	}
	if ((rc = mdb_cursor_open(st.txn, st.dbi, &cur)) != 0) {
		goto fail;
	}
	k = p;
	rc = p.mv_size ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)
	               : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (p.mv_size > 0 &&
		    (k.mv_size < p.mv_size ||
		     memcmp(k.mv_data, p.mv_data, p.mv_size) != 0)) {
			break;
		}
		if (sc.n == limit) {
			sc.more = true;
			break;
		}
		scan_item(&sc, &k, &v);
	}
	if (rc != 0 && rc != MDB_NOTFOUND) {
		goto fail;
	}
	scan_end(&sc, st.service);
	rc = CLI_OK;
	goto out;
fail:
	rc = state_fail(cli, &st, rc);
out:
	json_decref(sc.items);
	mdb_cursor_close(cur);
	state_close(&st);
	free(buf);
	return rc;
}

/* DEST must be a new directory (made here) or an empty one. Sets *made
 * when it made it. Prints why not and returns false. */
static bool
backup_dest(struct cli *cli, const char *dest, bool *made)
{
	DIR *d;
	struct dirent *e;

	*made = false;
	if (mkdir(dest, 0755) == 0) {
		*made = true;
		return true;
	}
	if (errno != EEXIST) {
		fprintf(stderr, "%s %s: cannot make %s: %s\n", cli->prog,
		        cli->cmd_path, dest, strerror(errno));
		return false;
	}
	if ((d = opendir(dest)) == NULL) {
		fprintf(stderr, "%s %s: %s: %s\n", cli->prog, cli->cmd_path,
		        dest, strerror(errno));
		return false;
	}
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") != 0 &&
		    strcmp(e->d_name, "..") != 0) {
			fprintf(stderr,
			        "%s %s: %s is not empty (it holds '%s'): "
			        "a backup goes to a new or empty directory\n",
			        cli->prog, cli->cmd_path, dest, e->d_name);
			closedir(d);
			return false;
		}
	}
	closedir(d);
	return true;
}

/* Open the copy in dest and count its keys: a backup that cannot be read
 * is no backup. Returns an LMDB code. */
static int
backup_verify(const char *dest, size_t *keys)
{
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	MDB_dbi dbi;
	MDB_stat ms;
	int rc;

	/* Nobody else uses the copy yet: no lock file in it. */
	if ((rc = mdb_env_create(&env)) == 0 &&
	    (rc = mdb_env_set_maxdbs(env, STATE_MAXDBS)) == 0 &&
	    (rc = mdb_env_open(env, dest, MDB_RDONLY | MDB_NOLOCK, 0644)) ==
	            0 &&
	    (rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) == 0 &&
	    (rc = mdb_dbi_open(txn, MESH_SERVICE_DB_STATE, 0, &dbi)) == 0 &&
	    (rc = mdb_stat(txn, dbi, &ms)) == 0) {
		*keys = ms.ms_entries;
	}
	if (txn != NULL) {
		mdb_txn_abort(txn);
	}
	mdb_env_close(env);
	return rc;
}

/* Fetch a backup the service made into DEST/data.mdb, in chunks, and
 * check its SHA-256; then tell the service it may drop it. */
static int
backup_over_nats(struct cli *cli, const char *service, const char *dest,
                 size_t *keys, long long *bytes)
{
	json_t *b = NULL;
	char file[4200], hex[65], req[160];
	unsigned char sum[crypto_hash_sha256_BYTES];
	crypto_hash_sha256_state hs;
	struct mesh_conn *c = NULL;
	const char *subject, *id, *want;
	long long size, got = 0;
	bool made, ok = false;
	FILE *f = NULL;
	int rc, n, part;

	if ((rc = state_parts(cli, service, &n, &part)) != CLI_OK) {
		return rc;
	}
	if (n > 0 && part < 0) {
		return cli_usage_error(cli,
		                       "service '%s' is partitioned (%d "
		                       "partitions): back up one with "
		                       "--partition K",
		                       service, n);
	}
	if ((rc = state_call(cli, service, part, "backup", json_object(),
	                     &b)) != CLI_OK) {
		return rc;
	}
	subject = json_string_value(json_object_get(b, "subject"));
	id = json_string_value(json_object_get(b, "id"));
	want = json_string_value(json_object_get(b, "sha256"));
	size = json_integer_value(json_object_get(b, "size"));
	if (subject == NULL || id == NULL || want == NULL || size <= 0 ||
	    strlen(id) > 64) {
		fprintf(stderr,
		        "%s %s: service '%s' answered the backup "
		        "without its id, size, sum or subject\n",
		        cli->prog, cli->cmd_path, service);
		json_decref(b);
		return CLI_FAIL;
	}
	if (!backup_dest(cli, dest, &made)) {
		json_decref(b);
		return CLI_FAIL;
	}
	snprintf(file, sizeof(file), "%s/data.mdb", dest);
	crypto_hash_sha256_init(&hs);
	if ((f = fopen(file, "wb")) != NULL &&
	    cli_connect(cli, &c) == MESH_OK) {
		for (;;) {
			natsMsg *m = NULL;
			int len;
			snprintf(req, sizeof(req),
			         "{\"id\":\"%s\",\"offset\":%lld}", id, got);
			if (natsConnection_RequestString(
			            &m, mesh_conn_nats(c), subject, req,
			            API_WAIT) != NATS_OK) {
				fprintf(stderr,
				        "%s %s: service '%s': the backup's "
				        "bytes at %lld did not come\n",
				        cli->prog, cli->cmd_path, service,
				        got);
				break;
			}
			len = natsMsg_GetDataLength(m);
			const char *off = NULL;
			if (natsMsgHeader_Get(m,
			                      MESH_SERVICE_BACKUP_OFFSET_HDR,
			                      &off) != NATS_OK) {
				fprintf(stderr, "%s %s: service '%s': %.*s\n",
				        cli->prog, cli->cmd_path, service,
				        len > 300 ? 300 : len,
				        natsMsg_GetData(m));
				natsMsg_Destroy(m);
				break; /* an error answer */
			}
			if (len == 0) {
				natsMsg_Destroy(m);
				ok = got == size;
				break; /* the end */
			}
			fwrite(natsMsg_GetData(m), 1, (size_t)len, f);
			crypto_hash_sha256_update(
			        &hs, (const unsigned char *)natsMsg_GetData(m),
			        (unsigned long long)len);
			got += len;
			natsMsg_Destroy(m);
		}
		snprintf(req, sizeof(req), "{\"id\":\"%s\",\"done\":true}",
		         id);
		natsConnection_PublishString(mesh_conn_nats(c), subject, req);
		natsConnection_Flush(mesh_conn_nats(c));
	}
	mesh_conn_close(c);
	if (f != NULL && fclose(f) != 0) {
		ok = false;
	}
	crypto_hash_sha256_final(&hs, sum);
	sodium_bin2hex(hex, sizeof(hex), sum, sizeof(sum));
	if (ok && strcmp(hex, want) != 0) {
		fprintf(stderr,
		        "%s %s: service '%s': the backup's SHA-256 is "
		        "%s, not the %s announced\n",
		        cli->prog, cli->cmd_path, service, hex, want);
		ok = false;
	}
	json_decref(b);
	if (ok && (rc = backup_verify(dest, keys)) != 0) {
		fprintf(stderr,
		        "%s %s: service '%s': the backup in %s does "
		        "not open: %s\n",
		        cli->prog, cli->cmd_path, service, dest,
		        mdb_strerror(rc));
		ok = false;
	}
	if (!ok) {
		unlink(file);
		if (made) {
			rmdir(dest);
		}
		return CLI_FAIL;
	}
	*bytes = got;
	return CLI_OK;
}

int
cmd_state_backup(struct cli *cli)
{
	struct state_env st = {0};
	const char *dest = cli_pos(cli, 1);
	char file[4200];
	struct stat sb;
	size_t keys = 0;
	bool made;
	int rc;

	if (cli_opt(cli, "--state") == NULL) {
		long long bytes = 0;
		const char *service = cli_pos(cli, 0);
		if (!service_name_check(cli, service)) {
			return CLI_USAGE;
		}
		if ((rc = backup_over_nats(cli, service, dest, &keys,
		                           &bytes)) != CLI_OK) {
			return rc;
		}
		if (cli->json) {
			cli_print_json(json_pack(
			        "{s:s, s:s, s:I, s:I}", "service", service,
			        "backup", dest, "bytes", (json_int_t)bytes,
			        "keys", (json_int_t)keys));
		} else {
			printf("backed up service '%s' to %s: %lld bytes, %zu "
			       "keys in '%s'\n",
			       service, dest, bytes, keys,
			       MESH_SERVICE_DB_STATE);
		}
		return CLI_OK;
	}
	if ((rc = state_open(cli, &st, false)) != CLI_OK) {
		return rc;
	}
	/* The copy takes a read transaction of its own, on this thread. */
	mdb_txn_abort(st.txn);
	st.txn = NULL;
	if (!backup_dest(cli, dest, &made)) {
		state_close(&st);
		return CLI_FAIL;
	}
	snprintf(file, sizeof(file), "%s/data.mdb", dest);
	if ((rc = mdb_env_copy2(st.env, dest, MDB_CP_COMPACT)) != 0 ||
	    (rc = backup_verify(dest, &keys)) != 0) {
		fprintf(stderr,
		        "%s %s: service '%s': copying its state at %s to %s: "
		        "%s\n",
		        cli->prog, cli->cmd_path, st.service, st.dir, dest,
		        mdb_strerror(rc));
		unlink(file);
		if (made) {
			rmdir(dest);
		}
		state_close(&st);
		return CLI_FAIL;
	}
	state_close(&st);
	if (stat(file, &sb) != 0) {
		sb.st_size = 0;
	}
	if (cli->json) {
		cli_print_json(json_pack(
		        "{s:s, s:s, s:s, s:I, s:I}", "service", st.service,
		        "state", st.dir, "backup", dest, "bytes",
		        (json_int_t)sb.st_size, "keys", (json_int_t)keys));
	} else {
		printf("backed up service '%s' (state at %s) to %s: %lld "
		       "bytes, %zu keys in '%s'\n",
		       st.service, st.dir, dest, (long long)sb.st_size, keys,
		       MESH_SERVICE_DB_STATE);
	}
	return CLI_OK;
}
