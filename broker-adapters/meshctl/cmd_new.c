/* cmd_new.c: meshctl new service NAME: a new service from the template.
 *
 * The template is services/template/{main.c,meson.build}.in with @NAME@
 * where the service's name goes. The same files build the service
 * template-service in every build (services/template/meson.build), so a
 * scaffold that does not compile fails CI before it reaches anyone. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "message.h"
#include "mesh/service_api.h"

#define PLACEHOLDER "@NAME@"

static const char *const template_files[] = {"main.c", "meson.build"};
#define N_FILES (sizeof(template_files) / sizeof(template_files[0]))

/* Write text to path (fopen mode), each @NAME@ in it as name (NULL: the
 * text as it is). Prints why not and returns false. */
static bool
write_file(struct cli *cli, const char *path, const char *text,
           const char *mode, const char *name)
{
	FILE *f = fopen(path, mode);
	const char *hit;
	bool ok = f != NULL;

	if (f != NULL) {
		while (ok && name != NULL &&
		       (hit = strstr(text, PLACEHOLDER)) != NULL) {
			size_t run = (size_t)(hit - text);
			ok = fwrite(text, 1, run, f) == run &&
			     fputs(name, f) != EOF;
			text = hit + strlen(PLACEHOLDER);
		}
		ok = ok && fputs(text, f) != EOF;
		ok = fclose(f) == 0 && ok;
	}
	if (!ok) {
		fprintf(stderr, "%s %s: cannot write %s: %s\n", cli->prog,
		        cli->cmd_path, path, strerror(errno));
	}
	return ok;
}

/* Add subdir('NAME') to DIR/meson.build unless a line says it already. */
static bool
add_subdir(struct cli *cli, const char *list, const char *name, bool *added)
{
	char line[MESH_SERVICE_NAME_MAX + 16];
	char *text = read_file(cli, list);
	size_t len = snprintf(line, sizeof(line), "subdir('%s')", name);
	bool ok;

	*added = false;
	if (text == NULL) {
		return false;
	}
	for (const char *p = text; (p = strstr(p, line)) != NULL; p += len) {
		if ((p == text || p[-1] == '\n') &&
		    (p[len] == '\n' || p[len] == '\0')) {
			free(text);
			return true;
		}
	}
	{
		/* A hand-edited list may lack its last newline. */
		size_t tl = strlen(text);
		char entry[sizeof(line) + 2];
		snprintf(entry, sizeof(entry), "%s%s\n",
		         tl > 0 && text[tl - 1] != '\n' ? "\n" : "", line);
		ok = write_file(cli, list, entry, "a", NULL);
	}
	*added = ok;
	free(text);
	return ok;
}

int
cmd_new_service(struct cli *cli)
{
	const char *name = cli_pos(cli, 0);
	const char *dir =
	        cli_opt(cli, "--dir") ? cli_opt(cli, "--dir") : "services";
	const char *tdir = cli_opt(cli, "--template");
	char tbuf[4096], target[4096], path[4200], list[4200];
	char *text[N_FILES] = {NULL};
	struct stat sb;
	bool added;
	int rc = CLI_FAIL;
	size_t made = 0;

	if (!service_name_check(cli, name)) {
		return CLI_USAGE;
	}
	if (tdir == NULL) {
		snprintf(tbuf, sizeof(tbuf), "%s/template", dir);
		tdir = tbuf;
	}
	snprintf(list, sizeof(list), "%s/meson.build", dir);
	snprintf(target, sizeof(target), "%s/%s", dir, name);
	if (stat(list, &sb) != 0) {
		fprintf(stderr,
		        "%s %s: %s: %s (run from the project's root, or "
		        "give --dir)\n",
		        cli->prog, cli->cmd_path, list, strerror(errno));
		return CLI_FAIL;
	}
	if (stat(target, &sb) == 0 || errno != ENOENT) {
		fprintf(stderr, "%s %s: %s already exists: not touched\n",
		        cli->prog, cli->cmd_path, target);
		return CLI_FAIL;
	}
	/* Read the whole template before writing anything. */
	for (size_t i = 0; i < N_FILES; i++) {
		snprintf(path, sizeof(path), "%s/%s.in", tdir,
		         template_files[i]);
		if ((text[i] = read_file(cli, path)) == NULL) {
			goto out;
		}
	}
	if (mkdir(target, 0755) != 0) {
		fprintf(stderr, "%s %s: cannot make %s: %s\n", cli->prog,
		        cli->cmd_path, target, strerror(errno));
		goto out;
	}
	for (; made < N_FILES; made++) {
		snprintf(path, sizeof(path), "%s/%s", target,
		         template_files[made]);
		if (!write_file(cli, path, text[made], "wx", name)) {
			goto undo;
		}
	}
	if (!add_subdir(cli, list, name, &added)) {
		goto undo;
	}
	if (cli->json) {
		cli_print_json(json_pack("{s:s, s:s, s:[s,s], s:b}", "service",
		                         name, "dir", target, "files",
		                         "main.c", "meson.build",
		                         "added_to_build", added));
	} else {
		printf("made service '%s' in %s (main.c, meson.build)%s%s\n",
		       name, target, added ? "; added it to " : "",
		       added ? list : "");
		if (target[0] != '/') {
			printf("next: ninja -C build, then run build/%s/%s\n",
			       target, name);
		}
	}
	rc = CLI_OK;
	goto out;
undo:
	while (made-- > 0) {
		snprintf(path, sizeof(path), "%s/%s", target,
		         template_files[made]);
		unlink(path);
	}
	rmdir(target);
out:
	for (size_t i = 0; i < N_FILES; i++) {
		free(text[i]);
	}
	return rc;
}
