/* cmd_state.c: meshctl state get|scan|backup: read a service's LMDB
 * environment while the service runs, and copy it consistently.
 *
 * The environment is opened with MDB_RDONLY. A reader still needs a slot in
 * the reader table of lock.mdb, so that the service's writer does not
 * recycle the pages of the snapshot being read: that takes write access to
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

#include "cli.h"
#include "commands.h"
#include "mesh_schemas.h"
#include "message.h"
#include "mesh/service.h"

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
	enc = b64(v->mv_data, v->mv_size);
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

int
cmd_state_get(struct cli *cli)
{
	struct state_env st = {0};
	const char *type;
	unsigned char *buf;
	json_t *vj = NULL;
	char why[256];
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
	} else if (type != NULL && !cli_flag(cli, "--raw") &&
	           !proto_json(type, v.mv_data, v.mv_size, &vj, why,
	                       sizeof(why))) {
		fprintf(stderr, "%s %s: service '%s': the value of key '",
		        cli->prog, cli->cmd_path, st.service);
		print_bytes(stderr, &k);
		fprintf(stderr, "' (%zu bytes): %s\n", v.mv_size, why);
		rc = CLI_FAIL;
	} else if (cli->json) {
		json_t *o = json_item(&k, &v);
		json_object_set_new(o, "service", json_string(st.service));
		json_object_set_new(o, "size", json_integer(v.mv_size));
		if (vj != NULL) {
			json_object_set(o, "value_json", vj);
		}
		cli_print_json(o);
		rc = CLI_OK;
	} else if (cli_flag(cli, "--raw")) {
		fwrite(v.mv_data, 1, v.mv_size, stdout);
		rc = CLI_OK;
	} else if (vj != NULL) {
		print_value_json(vj);
		fputc('\n', stdout);
		rc = CLI_OK;
	} else {
		print_bytes(stdout, &v);
		fputc('\n', stdout);
		rc = CLI_OK;
	}
	json_decref(vj);
	state_close(&st);
	free(buf);
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
	json_t *items = NULL;
	const char *type;
	long long limit, n = 0, undecoded = 0;
	bool more = false;
	int rc;

	if (!value_type(cli, &type) ||
	    !cli_opt_long(cli, "--limit", 1, 100000000, 100, &limit) ||
	    (ptext != NULL && !key_arg(cli, ptext, &p, &buf))) {
		return CLI_USAGE;
	}
	if ((rc = state_open(cli, &st, true)) != CLI_OK) {
		free(buf);
		return rc;
	}
	if ((rc = mdb_cursor_open(st.txn, st.dbi, &cur)) != 0) {
		goto fail;
	}
	k = p;
	rc = p.mv_size ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)
	               : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	if (cli->json) {
		items = json_array();
	}
	for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (p.mv_size > 0 &&
		    (k.mv_size < p.mv_size ||
		     memcmp(k.mv_data, p.mv_data, p.mv_size) != 0)) {
			break;
		}
		if (n == limit) {
			more = true;
			break;
		}
		json_t *vj = NULL;
		char why[256];
		n++;
		if (type != NULL && !proto_json(type, v.mv_data, v.mv_size,
		                                &vj, why, sizeof(why))) {
			undecoded++;
		}
		if (items != NULL) {
			json_t *o = json_item(&k, &v);
			if (vj != NULL) {
				json_object_set(o, "value_json", vj);
			}
			json_array_append_new(items, o);
		} else {
			print_bytes(stdout, &k);
			fputc('\t', stdout);
			if (vj != NULL) {
				print_value_json(vj);
			} else {
				print_bytes(stdout, &v);
			}
			fputc('\n', stdout);
		}
		json_decref(vj);
	}
	if (rc != 0 && rc != MDB_NOTFOUND) {
		goto fail;
	}
	if (items != NULL) {
		cli_print_json(json_pack("{s:s, s:o, s:I, s:b}", "service",
		                         st.service, "items", items, "count",
		                         (json_int_t)n, "truncated", more));
		items = NULL;
	} else if (more) {
		fprintf(stderr,
		        "(%lld keys shown; there are more: raise "
		        "--limit)\n",
		        n);
	}
	if (undecoded > 0) {
		fprintf(stderr,
		        "(%lld of the values do not decode as %s: shown "
		        "as stored)\n",
		        undecoded, type);
	}
	rc = CLI_OK;
	goto out;
fail:
	rc = state_fail(cli, &st, rc);
out:
	json_decref(items);
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
