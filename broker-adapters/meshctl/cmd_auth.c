/* cmd_auth.c: meshctl auth init and show: an NKey identity per service,
 * per daemon and for the admin, and nats-server's authorization block
 * computed from what each program declares (auth_perms.c).
 *
 * DIR (var/auth) holds NAME.nk (each seed, 0600, never replaced),
 * authorization.conf (the block) and permissions.json (every identity's
 * grants with their reasons, and each service's --describe, so that a
 * later init recomputes without being told every service again). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "auth_perms.h"
#include "cli.h"
#include "commands.h"
#include "mesh/function.h"
#include "mesh/identity.h"
#include "mesh/queue.h"
#include "program.h"

#define AUTH_DIR_DEFAULT "var/auth"
#define DESCRIBE_MS      30000

static const char *
auth_dir(const struct cli *cli)
{
	const char *d = cli_opt(cli, "--dir");

	return d != NULL ? d : AUTH_DIR_DEFAULT;
}

/* PROGRAM ARGS --describe (ENV added) as JSON, checked to describe the
 * service name; NULL with the reason printed, `who` naming where the
 * program came from ("--service orders=/usr/bin/x", "function 'orders'"). */
static json_t *
describe(const struct cli *cli, const char *who, const char *name,
         const char *program, char *const *args, size_t n_args,
         char *const *env, size_t n_env)
{
	char *text = NULL;
	int status = 0;
	const char *svc;
	json_t *d;
	mesh_err err;

	err = program_run(cli, program, args, n_args, env, n_env, "--describe",
	                  DESCRIBE_MS, &text, &status);
	if (err != MESH_OK) {
		fprintf(stderr, "meshctl %s: %s: %s\n", cli->cmd_path, who,
		        mesh_errdetail());
		return NULL;
	}
	if (status != 0) {
		char how[32];
		if (status == -1) {
			snprintf(how, sizeof(how), "killed after %d s",
			         DESCRIBE_MS / 1000);
		} else {
			snprintf(how, sizeof(how), "exit %d", status);
		}
		fprintf(stderr,
		        "meshctl %s: %s: %s --describe failed (%s): is it a "
		        "service built on the evmesh runtime?\n",
		        cli->cmd_path, who, program, how);
		free(text);
		return NULL;
	}
	d = json_loads(text, JSON_DISABLE_EOF_CHECK, NULL);
	free(text);
	svc = json_string_value(json_object_get(d, "service"));
	if (svc == NULL || strcmp(svc, name) != 0) {
		fprintf(stderr,
		        "meshctl %s: %s: %s describes %s%s%s, not the service "
		        "'%s'\n",
		        cli->cmd_path, who, program, svc ? "'" : "",
		        svc ? svc : "nothing readable", svc ? "'" : "", name);
		json_decref(d);
		return NULL;
	}
	return d;
}

/* Write text to path (mode), whole or not at all (a temporary file renamed
 * over it). */
static mesh_err
write_file(const char *path, const char *text, mode_t mode)
{
	char tmp[4200];
	size_t len = strlen(text);
	int fd;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)) <
	    0) {
		return mesh_err_errno(errno, "'%s'", tmp);
	}
	if (write(fd, text, len) != (ssize_t)len || fsync(fd) != 0) {
		mesh_err err =
		        mesh_err_errno(errno ? errno : EIO, "'%s'", tmp);
		close(fd);
		unlink(tmp);
		return err;
	}
	close(fd);
	if (rename(tmp, path) != 0) {
		mesh_err err = mesh_err_errno(errno, "'%s'", path);
		unlink(tmp);
		return err;
	}
	return MESH_OK;
}

/* name's identity: its seed file DIR/NAME.nk, made when missing. */
static mesh_err
identity_of(const char *dir, const char *name, struct mesh_identity **out,
            bool *made)
{
	char path[4096];
	mesh_err err;

	snprintf(path, sizeof(path), "%s/%s.nk", dir, name);
	err = mesh_identity_load(name, path, out);
	*made = false;
	if (err == MESH_ENOTFOUND) {
		err = mesh_identity_generate(name, path, out);
		*made = err == MESH_OK;
	}
	return err;
}

/* Every function defined in MESH_FUNCTIONS, described by its program with
 * its arguments and environment, into known (replacing one of the same
 * name). false: failed, the reason printed. */
static bool
functions_into(const struct cli *cli, struct mesh_conn *c, json_t *known)
{
	struct mesh_function *fs = NULL;
	size_t n = 0;
	bool good = true;
	mesh_err err;

	if ((err = mesh_function_list(c, &fs, &n)) != MESH_OK) {
		fprintf(stderr, "meshctl %s: the functions (%s): %s\n",
		        cli->cmd_path, MESH_FUNCTIONS_BUCKET,
		        mesh_errdetail());
		return false;
	}
	for (size_t i = 0; i < n && good; i++) {
		char who[MESH_FUNCTION_NAME_MAX + 16];
		json_t *d;

		snprintf(who, sizeof(who), "function '%s'", fs[i].name);
		if (fs[i].program == NULL) {
			fprintf(stderr,
			        "meshctl %s: %s: its record in %s is damaged "
			        "(meshctl function info %s)\n",
			        cli->cmd_path, who, MESH_FUNCTIONS_BUCKET,
			        fs[i].name);
			good = false;
		} else if ((d = describe(cli, who, fs[i].name, fs[i].program,
		                         fs[i].args, fs[i].n_args, fs[i].env,
		                         fs[i].n_env)) == NULL) {
			good = false;
		} else {
			json_object_set_new(known, fs[i].name, d);
		}
	}
	mesh_function_list_free(fs, n);
	return good;
}

/* Note in each queue source of each description the dead-letter queue of
 * the queue's redrive policy ("redrive_dlq"), which its consumers move
 * poison messages to (the broker's record of the queue; a queue that does
 * not exist yet has none). false: failed, the reason printed. */
static bool
redrives_into(const struct cli *cli, struct mesh_conn *c, json_t *known)
{
	const char *svc;
	json_t *d, *src;
	size_t i;

	json_object_foreach(known, svc, d)
	{
		json_array_foreach(json_object_get(d, "sources"), i, src)
		{
			const char *kind = json_string_value(
			        json_object_get(src, "kind"));
			const char *q = json_string_value(
			        json_object_get(src, "name"));
			struct mesh_queue *queue = NULL;
			mesh_err err;

			json_object_del(src, "redrive_dlq");
			if (kind == NULL || strcmp(kind, "queue") != 0 ||
			    q == NULL) {
				continue;
			}
			err = mesh_queue_open(c, q, &queue);
			if (err == MESH_ENOTFOUND) {
				continue;
			}
			if (err != MESH_OK) {
				fprintf(stderr,
				        "meshctl %s: service '%s': queue "
				        "'%s': %s\n",
				        cli->cmd_path, svc, q,
				        mesh_errdetail());
				return false;
			}
			if (mesh_queue_attrs(queue)->dlq[0] != '\0') {
				json_object_set_new(
				        src, "redrive_dlq",
				        json_string(
				                mesh_queue_attrs(queue)->dlq));
			}
			mesh_queue_close(queue);
		}
	}
	return true;
}

/* The services' descriptions: those of permissions.json, then (with a
 * connection) the functions', then those of --service NAME=PROGRAM, each
 * replacing one of the same name. A JSON object name -> describe; NULL:
 * failed, the reason printed. */
static json_t *
services_of(const struct cli *cli, const char *dir, struct mesh_conn *c)
{
	char path[4096];
	json_t *known = json_object(), *old, *p;
	const char *spec;
	size_t i;

	snprintf(path, sizeof(path), "%s/permissions.json", dir);
	old = json_load_file(path, 0, NULL);
	json_array_foreach(json_object_get(old, "identities"), i, p)
	{
		json_t *d = json_object_get(p, "describe");
		if (d != NULL) {
			json_object_set(
			        known,
			        json_string_value(json_object_get(p, "name")),
			        d);
		}
	}
	json_decref(old);
	if (c != NULL && !functions_into(cli, c, known)) {
		json_decref(known);
		return NULL;
	}
	for (i = 0; (spec = cli_opt_nth(cli, "--service", i)) != NULL; i++) {
		const char *eq = strchr(spec, '=');
		char name[MESH_IDENTITY_NAME_MAX + 1], who[4200];
		json_t *d;

		if (eq == NULL || eq == spec || eq[1] == '\0' ||
		    (size_t)(eq - spec) > MESH_IDENTITY_NAME_MAX) {
			cli_usage_error(cli,
			                "--service '%s': want NAME=PROGRAM",
			                spec);
			json_decref(known);
			return NULL;
		}
		snprintf(name, sizeof(name), "%.*s", (int)(eq - spec), spec);
		snprintf(who, sizeof(who), "--service %s", spec);
		if ((d = describe(cli, who, name, eq + 1, NULL, 0, NULL, 0)) ==
		    NULL) {
			json_decref(known);
			return NULL;
		}
		json_object_set_new(known, name, d);
	}
	if (c != NULL && !redrives_into(cli, c, known)) {
		json_decref(known);
		return NULL;
	}
	return known;
}

int
cmd_auth_init(struct cli *cli)
{
	const char *dir = auth_dir(cli);
	const char *daemons[AUTH_DAEMONS] = {AUTH_ADMIN, AUTH_ROUTER,
	                                     AUTH_SCHEDULER, AUTH_SUPERVISOR,
	                                     AUTH_GATEWAY};
	json_t *services = NULL, *ids = json_array(), *d, *doc = NULL;
	struct mesh_identity *id[AUTH_DAEMONS + 256] = {NULL};
	size_t n = 0, made = 0;
	char path[4096], *text = NULL;
	const char *name;
	int rc = CLI_FAIL;
	mesh_err err = MESH_OK;
	struct mesh_conn *c = NULL;
	bool offline = cli_flag(cli, "--offline");

	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		err = mesh_err_errno(errno, "'%s'", dir);
		cli_fail(cli, err);
		goto out;
	}
	/* Unreachable: the files are written from what is known (below). */
	if (!offline && cli_connect(cli, &c) != MESH_OK) {
		c = NULL;
	}
	if ((services = services_of(cli, dir, c)) == NULL) {
		rc = CLI_USAGE;
		goto out;
	}
	if (json_object_size(services) > 256) {
		rc = cli_usage_error(cli, "at most 256 services");
		goto out;
	}
	for (size_t i = 0; i < AUTH_DAEMONS + json_object_size(services);
	     i++) {
		bool new_one;
		json_t *p = NULL;

		if (i < AUTH_DAEMONS) {
			name = daemons[i];
			d = NULL;
		} else {
			void *it = json_object_iter(services);
			for (size_t k = AUTH_DAEMONS; k < i; k++) {
				it = json_object_iter_next(services, it);
			}
			name = json_object_iter_key(it);
			d = json_object_iter_value(it);
		}
		if ((err = identity_of(dir, name, &id[n], &new_one)) !=
		    MESH_OK) {
			cli_fail(cli, err);
			goto out;
		}
		made += new_one;
		if (d == NULL) {
			p = auth_perms_daemon(name,
			                      mesh_identity_public(id[n]));
		} else if ((err = auth_perms_service(
		                    d, mesh_identity_public(id[n]), &p)) !=
		           MESH_OK) {
			fprintf(stderr, "meshctl %s: service '%s': %s\n",
			        cli->cmd_path, name, mesh_errdetail());
			goto out;
		}
		n++;
		json_array_append_new(ids, p);
	}
	doc = json_pack("{s:O}", "identities", ids);
	snprintf(path, sizeof(path), "%s/permissions.json", dir);
	if ((text = json_dumps(doc, JSON_INDENT(2))) == NULL ||
	    (err = write_file(path, text, 0644)) != MESH_OK) {
		cli_fail(cli, err != MESH_OK ? err : MESH_ENOMEM);
		goto out;
	}
	free(text);
	snprintf(path, sizeof(path), "%s/authorization.conf", dir);
	if ((text = auth_conf_text(ids)) == NULL ||
	    (err = write_file(path, text, 0644)) != MESH_OK) {
		cli_fail(cli, err != MESH_OK ? err : MESH_ENOMEM);
		goto out;
	}
	if (!offline) {
		if (c == NULL) {
			fprintf(stderr,
			        "meshctl %s: the files are written from what "
			        "was known; the public keys are not in %s, "
			        "the functions of %s and the queues' redrive "
			        "dead-letter queues not read (run again when "
			        "the broker is up, or --offline)\n",
			        cli->cmd_path, MESH_KEYS_BUCKET,
			        MESH_FUNCTIONS_BUCKET);
			goto out;
		}
		for (size_t i = 0; i < n && err == MESH_OK; i++) {
			struct mesh_key_record k;
			mesh_identity_record(id[i], &k);
			err = mesh_keys_put(c, &k, false);
		}
		if (err != MESH_OK) {
			cli_fail(cli, err);
			goto out;
		}
	}
	if (cli->json) {
		json_t *o = json_pack("{s:s, s:i, s:i, s:b}", "dir", dir,
		                      "identities", (int)n, "made", (int)made,
		                      "keys_recorded",
		                      !cli_flag(cli, "--offline"));
		json_dumpf(o, stdout, JSON_COMPACT);
		putchar('\n');
		json_decref(o);
	} else {
		printf("%zu identities in %s (%zu new):", n, dir, made);
		for (size_t i = 0; i < n; i++) {
			printf(" %s", mesh_identity_name(id[i]));
		}
		printf("\nnats-server's users: %s/authorization.conf "
		       "(include it in nats-server.conf)\n",
		       dir);
		printf("%s\n",
		       cli_flag(cli, "--offline")
		               ? "public keys not recorded (--offline)"
		               : "public keys recorded in " MESH_KEYS_BUCKET);
	}
	rc = CLI_OK;
out:
	for (size_t i = 0; i < n; i++) {
		mesh_identity_free(id[i]);
	}
	free(text);
	json_decref(doc);
	json_decref(ids);
	json_decref(services);
	mesh_conn_close(c);
	return rc;
}

static void
show_list(const char *title, const json_t *list)
{
	json_t *g;
	size_t i;

	printf("%s\n", title);
	json_array_foreach(list, i, g)
	{
		printf("  %-58s %s\n",
		       json_string_value(json_object_get(g, "subject")),
		       json_string_value(json_object_get(g, "why")));
	}
}

int
cmd_auth_show(struct cli *cli)
{
	const char *dir = auth_dir(cli), *name = cli_pos(cli, 0);
	char path[4096];
	json_error_t jerr;
	json_t *doc, *p, *found = NULL, *b;
	size_t i;

	snprintf(path, sizeof(path), "%s/permissions.json", dir);
	if ((doc = json_load_file(path, 0, &jerr)) == NULL) {
		fprintf(stderr,
		        "meshctl %s: %s: %s (run meshctl auth init first)\n",
		        cli->cmd_path, path, jerr.text);
		return CLI_FAIL;
	}
	json_array_foreach(json_object_get(doc, "identities"), i, p)
	{
		if (strcmp(json_string_value(json_object_get(p, "name")),
		           name) == 0) {
			found = p;
		}
	}
	if (found == NULL) {
		fprintf(stderr, "meshctl %s: no identity '%s' in %s\n",
		        cli->cmd_path, name, path);
		json_decref(doc);
		return CLI_FAIL;
	}
	if (cli->json) {
		json_dumpf(found, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(doc);
		return CLI_OK;
	}
	printf("Identity   %s (%s)\nPublic     %s\nSeed       %s/%s.nk\n",
	       name, json_string_value(json_object_get(found, "role")),
	       json_string_value(json_object_get(found, "public")), dir, name);
	show_list("Publish (allowed; everything else is refused)",
	          json_object_get(found, "publish"));
	show_list("Subscribe (allowed; everything else is refused)",
	          json_object_get(found, "subscribe"));
	printf("Responses  %s\n",
	       json_is_true(json_object_get(found, "allow_responses"))
	               ? "may answer the requests it receives, once each "
	                 "(allow_responses)"
	               : "none");
	json_array_foreach(json_object_get(found, "broad"), i, b)
	{
		printf("Broad      %s\n", json_string_value(b));
	}
	json_decref(doc);
	return CLI_OK;
}
