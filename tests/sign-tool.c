/* sign-tool: a foreign producer for the shell tests of signed events
 * (tests/cli/test_sign_cli.sh). Its identity is "carol" with the README's
 * test-vector seed (bytes 00..1f), as a producer in another language
 * would keep its own.
 *   sign-tool public                      carol's public key
 *   sign-tool publish URL TOPIC KIND      publish to TOPIC an event signed
 *       by carol: KIND good (body "carol's"), forged (body changed after
 *       signing) or stale (its time 8 days ago) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mesh/mesh.h"
#include "mesh/sign.h"

#define SEED "SUAAAAICAMCAKBQHBAEQUCYMBUHA6EARCIJRIFIWC4MBSGQ3DQOR4H776Y"

static struct mesh_identity *
carol(void)
{
	char path[] = "/tmp/sign-tool.XXXXXX";
	struct mesh_identity *id = NULL;
	int fd = mkstemp(path);

	if (fd < 0 || write(fd, SEED "\n", sizeof(SEED)) != sizeof(SEED)) {
		return NULL;
	}
	close(fd);
	chmod(path, 0600);
	if (mesh_identity_load("carol", path, &id) != MESH_OK) {
		fprintf(stderr, "sign-tool: %s\n", mesh_errdetail());
	}
	unlink(path);
	return id;
}

int
main(int argc, char **argv)
{
	struct mesh_identity *id = carol();
	struct mesh_conn_opts o;
	struct mesh_conn *c = NULL;
	struct mesh_topic *t = NULL;
	struct mesh_event *ev = NULL;
	struct mesh_topic_entry e = {0};
	struct mesh_topic_published p;
	const char *kind;
	mesh_err err;

	if (id == NULL) {
		return 1;
	}
	if (argc == 2 && strcmp(argv[1], "public") == 0) {
		printf("%s\n", mesh_identity_public(id));
		mesh_identity_free(id);
		return 0;
	}
	if (argc != 5 || strcmp(argv[1], "publish") != 0) {
		fprintf(stderr, "usage: sign-tool public | publish URL TOPIC "
		                "good|forged|stale\n");
		return 2;
	}
	kind = argv[4];
	mesh_event_new("test.signed", "sign-tool", &ev);
	if (strcmp(kind, "stale") == 0) {
		mesh_event_set_time(ev, (int64_t)time(NULL) - 8 * 86400, 0);
	}
	mesh_event_set_text(
	        ev, strcmp(kind, "good") == 0 ? "carol's" : kind,
	        strlen(strcmp(kind, "good") == 0 ? "carol's" : kind));
	mesh_event_sign(ev, id);
	if (strcmp(kind, "forged") == 0) {
		/* A message attribute added on the way. */
		mesh_event_attr_set(ev, "extra", "String", "x", 1);
	}
	mesh_conn_opts_init(&o);
	o.servers = argv[2];
	if ((err = mesh_conn_open(&o, &c)) == MESH_OK &&
	    (err = mesh_topic_open(c, argv[3], &t)) == MESH_OK) {
		e.event = ev;
		err = mesh_topic_publish(t, &e, &p);
	}
	if (err != MESH_OK) {
		fprintf(stderr, "sign-tool: %s\n", mesh_errdetail());
	}
	mesh_topic_close(t);
	mesh_conn_close(c);
	mesh_event_free(ev);
	mesh_identity_free(id);
	return err == MESH_OK ? 0 : 1;
}
