/* cmd_basic.c: meshctl version, ping and smoke. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "commands.h"

#define SMOKE_STREAM   "MESH_SMOKE"
#define SMOKE_SUBJECTS "mesh.smoke.>"

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int
cmd_version(struct cli *cli)
{
	if (cli->json) {
		cli_print_json(json_pack("{s:s, s:s}", "version", MESH_VERSION,
		                         "nats_client", nats_GetVersion()));
	} else {
		printf("meshctl %s (cnats %s)\n", MESH_VERSION,
		       nats_GetVersion());
	}
	return CLI_OK;
}

int
cmd_ping(struct cli *cli)
{
	struct mesh_conn *c;
	char url[256];
	int64_t rtt;
	mesh_err err;

	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	if ((err = mesh_conn_rtt(c, &rtt)) != MESH_OK) {
		mesh_conn_close(c);
		return cli_fail(cli, err);
	}
	mesh_conn_url(c, url, sizeof(url));
	if (cli->json) {
		cli_print_json(json_pack("{s:s, s:I}", "server", url, "rtt_us",
		                         (json_int_t)rtt));
	} else {
		printf("connected to %s, round trip %.3f ms\n", url,
		       (double)rtt / 1000.0);
	}
	mesh_conn_close(c);
	return CLI_OK;
}

/* The smoke stream: small and short-lived; created if missing. */
static mesh_err
smoke_stream(struct mesh_conn *c)
{
	jsStreamConfig cfg;
	const char *subjects[] = {SMOKE_SUBJECTS};

	mesh_stream_config_init(c, &cfg, SMOKE_STREAM, subjects, 1);
	cfg.MaxAge = (int64_t)3600 * 1000000000; /* an hour */
	cfg.MaxMsgs = 1000;
	return mesh_stream_ensure(c, &cfg);
}

int
cmd_smoke(struct cli *cli)
{
	struct mesh_conn *c = NULL;
	struct mesh_event *ev = NULL, *got = NULL;
	natsSubscription *sub = NULL;
	natsMsgList list = {0};
	jsSubOptions so;
	jsErrCode jerr = 0;
	char subject[128];
	const char *text = "hello from meshctl smoke";
	const void *data;
	size_t len;
	uint64_t seq = 0;
	int64_t t0, t1;
	natsStatus s;
	mesh_err err;
	int rc = CLI_FAIL;

	if (cli_connect(cli, &c) != MESH_OK) {
		return CLI_FAIL;
	}
	if ((err = smoke_stream(c)) != MESH_OK ||
	    (err = mesh_event_new("evmesh.smoke.v1", "meshctl", &ev)) !=
	            MESH_OK ||
	    (err = mesh_event_set_text(ev, text, strlen(text))) != MESH_OK ||
	    (err = mesh_event_set_datacontenttype(ev, "text/plain")) !=
	            MESH_OK) {
		rc = cli_fail(cli, err);
		goto out;
	}
	snprintf(subject, sizeof(subject), "mesh.smoke.%s", mesh_event_id(ev));

	t0 = now_us();
	if ((err = mesh_wire_publish(c, subject, ev, NULL, &seq, NULL)) !=
	    MESH_OK) {
		rc = cli_fail(cli, err);
		goto out;
	}
	jsSubOptions_Init(&so);
	so.Stream = SMOKE_STREAM;
	so.Config.AckPolicy = js_AckExplicit;
	so.Config.DeliverPolicy = js_DeliverAll;
	s = js_PullSubscribe(&sub, mesh_conn_js(c), subject, NULL, NULL, &so,
	                     &jerr);
	if (s == NATS_OK) {
		s = natsSubscription_Fetch(&list, sub, 1, 5000, &jerr);
	}
	if (s != NATS_OK || list.Count != 1) {
		rc = cli_fail(cli, s != NATS_OK
		                           ? mesh_err_nats(s, jerr,
		                                           "reading back %s",
		                                           subject)
		                           : MESH_ENOTFOUND);
		goto out;
	}
	if ((err = mesh_wire_decode(list.Msgs[0], 0, &got)) != MESH_OK) {
		rc = cli_fail(cli, err);
		goto out;
	}
	natsMsg_AckSync(list.Msgs[0], NULL, NULL);
	t1 = now_us();
	mesh_event_data(got, &data, &len, NULL);
	if (strcmp(mesh_event_id(got), mesh_event_id(ev)) != 0 ||
	    len != strlen(text) || memcmp(data, text, len) != 0) {
		fprintf(stderr, "meshctl smoke: the event read back is not "
		                "the one published\n");
		goto out;
	}
	if (cli->json) {
		cli_print_json(json_pack(
		        "{s:s, s:s, s:s, s:I, s:f}", "id", mesh_event_id(got),
		        "subject", subject, "stream", SMOKE_STREAM, "sequence",
		        (json_int_t)seq, "round_trip_ms",
		        (double)(t1 - t0) / 1000.0));
	} else {
		printf("smoke: published event %s to %s (stream %s, "
		       "sequence %llu)\n",
		       mesh_event_id(ev), subject, SMOKE_STREAM,
		       (unsigned long long)seq);
		printf("smoke: consumed and decoded it: type %s, source %s, "
		       "data \"%.*s\"\n",
		       mesh_event_type(got), mesh_event_source(got), (int)len,
		       (const char *)data);
		printf("smoke: round trip %.3f ms\n",
		       (double)(t1 - t0) / 1000.0);
	}
	rc = CLI_OK;
out:
	natsMsgList_Destroy(&list);
	if (sub != NULL) {
		natsSubscription_Unsubscribe(sub);
		natsSubscription_Destroy(sub);
	}
	mesh_event_free(got);
	mesh_event_free(ev);
	mesh_conn_close(c);
	return rc;
}
