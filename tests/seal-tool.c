/* seal-tool: the shell test of sealed payloads' raw client and service
 * (tests/cli/test_seal_cli.sh).
 *   seal-tool raw URL STREAM      every message STREAM stores, its bytes
 *       as they are on the broker, one after another on standard output
 *   seal-tool serve NAME SOURCE [EMIT] [RUNTIME OPTIONS...]
 *       a service NAME (its identity: MESH_IDENTITY) on the runtime whose
 *       source is SOURCE (queue:Q or topic:T): each event it handles is
 *       printed as "handled TEXT" on standard output; with EMIT
 *       (topic:X or queue:Y) it also emits an event with the same text
 *       there (the outbox path). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh/mesh.h"
#include "mesh/service.h"

static const char *emit_to;

static int
raw(const char *url, const char *stream)
{
	struct mesh_conn_opts o;
	struct mesh_conn *c = NULL;
	jsStreamInfo *si = NULL;
	int rc = 0;

	mesh_conn_opts_init(&o);
	o.servers = url;
	if (mesh_conn_open(&o, &c) != MESH_OK ||
	    js_GetStreamInfo(&si, mesh_conn_js(c), stream, NULL, NULL) !=
	            NATS_OK) {
		fprintf(stderr, "seal-tool: stream '%s': %s\n", stream,
		        mesh_errdetail());
		mesh_conn_close(c);
		return 1;
	}
	for (uint64_t seq = si->State.FirstSeq;
	     seq > 0 && seq <= si->State.LastSeq; seq++) {
		natsMsg *m = NULL;
		if (js_GetMsg(&m, mesh_conn_js(c), stream, seq, NULL, NULL) !=
		    NATS_OK) {
			continue; /* deleted */
		}
		fwrite(natsMsg_GetData(m), 1, (size_t)natsMsg_GetDataLength(m),
		       stdout);
		natsMsg_Destroy(m);
	}
	jsStreamInfo_Destroy(si);
	mesh_conn_close(c);
	return rc;
}

static mesh_handler_result
on_event(struct mesh_ctx *ctx, const struct mesh_event *ev,
         const ProtobufCMessage *msg, void *arg)
{
	const void *data = NULL;
	size_t len = 0;
	struct mesh_event *out = NULL;
	mesh_err err;

	(void)msg;
	(void)arg;
	mesh_event_data(ev, &data, &len, NULL);
	printf("handled %.*s\n", (int)len, (const char *)data);
	fflush(stdout);
	if (emit_to == NULL) {
		return MESH_HANDLER_OK;
	}
	if ((err = mesh_event_new("evmesh.message", "seal-tool", &out)) ==
	            MESH_OK &&
	    (err = mesh_event_set_text(out, data, len)) == MESH_OK) {
		err = mesh_emit(ctx, emit_to, out, NULL);
	}
	mesh_event_free(out);
	if (err != MESH_OK) {
		printf("emit failed: %s\n", mesh_errdetail());
		fflush(stdout);
		return mesh_reject(ctx, mesh_errdetail());
	}
	return MESH_HANDLER_OK;
}

static int
serve(int argc, char **argv)
{
	const char *name = argv[2], *source = argv[3];
	struct mesh_service *s = NULL;
	int skip = 4;

	if (argc > 4 && strchr(argv[4], ':') != NULL) {
		emit_to = argv[4];
		skip = 5;
	}
	if (mesh_service_new(name, &s) != MESH_OK ||
	    (strncmp(source, "queue:", 6) == 0
	             ? mesh_service_consume(s, source + 6)
	             : mesh_service_subscribe(s, source + 6, NULL,
	                                      MESH_FILTER_SCOPE_ATTRIBUTES,
	                                      0)) != MESH_OK ||
	    mesh_service_on(s, NULL, NULL, on_event, NULL) != MESH_OK ||
	    (emit_to != NULL && mesh_service_emits(s, emit_to) != MESH_OK)) {
		fprintf(stderr, "seal-tool: %s\n", mesh_errdetail());
		mesh_service_free(s);
		return 1;
	}
	/* mesh_service_main reads argv[1..] as the runtime's options. */
	argv[skip - 1] = argv[0];
	return mesh_service_main(s, argc - skip + 1, argv + skip - 1);
}

int
main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "raw") == 0) {
		return raw(argv[2], argv[3]);
	}
	if (argc >= 4 && strcmp(argv[1], "serve") == 0) {
		return serve(argc, argv);
	}
	fprintf(stderr, "usage: seal-tool raw URL STREAM | seal-tool serve "
	                "NAME SOURCE [EMIT] [OPTIONS]\n");
	return 2;
}
