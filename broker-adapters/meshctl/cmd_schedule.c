/* cmd_schedule.c: meshctl schedule ... (for now: next, the offline preview
 * of an expression; no server needed). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cli.h"
#include "commands.h"
#include "expr.h"

int
cmd_schedule_next(struct cli *cli)
{
	const char *text = cli_pos(cli, 0);
	const char *zone = cli_opt(cli, "--tz") ? cli_opt(cli, "--tz") : "UTC";
	const char *from = cli_opt(cli, "--from");
	struct mesh_sched_expr e;
	struct mesh_tz *tz = NULL;
	json_t *list = NULL;
	long long count;
	int64_t t, anchor;
	mesh_err err;

	if (!cli_opt_long(cli, "--count", 1, 10000, 5, &count)) {
		return CLI_USAGE;
	}
	/* Bad input here is the user's: exit 2, saying which field. */
	if ((err = mesh_sched_parse(text, &e)) != MESH_OK ||
	    (err = mesh_tz_load(zone, NULL, &tz)) != MESH_OK) {
		fprintf(stderr, "meshctl schedule next: %s\n",
		        mesh_errdetail());
		return CLI_USAGE;
	}
	if (from != NULL) {
		if ((err = mesh_sched_parse_time(from, tz, &t)) != MESH_OK) {
			fprintf(stderr, "meshctl schedule next: --from: %s\n",
			        mesh_errdetail());
			mesh_tz_free(tz);
			return CLI_USAGE;
		}
	} else {
		t = (int64_t)time(NULL);
	}
	anchor = t;
	if (cli->json) {
		list = json_array();
	}
	for (long long i = 0; i < count; i++) {
		char iso[32];
		if ((err = mesh_sched_next(&e, tz, t, anchor, &t)) !=
		    MESH_OK) {
			break; /* no more firings: print what there is */
		}
		mesh_sched_format(t, iso);
		if (list != NULL) {
			json_array_append_new(list, json_string(iso));
		} else {
			printf("%s\n", iso);
		}
	}
	if (list != NULL) {
		cli_print_json(json_pack("{s:s, s:s, s:o}", "Expression", text,
		                         "Timezone", zone, "NextFirings",
		                         list));
	}
	mesh_tz_free(tz);
	return CLI_OK;
}
