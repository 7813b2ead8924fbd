/* stats-responder: a stand-in for a service instance's stats, for the
 * shell tests of meshctl stats. Answers every request on
 * mesh.service.SERVICE.stats and mesh.services.stats with REPLY (any text:
 * the tests give the runtime's JSON, every counter meshctl shows, malformed
 * included, or garbage), prints "ready", and runs
 * until its standard input closes.
 * Usage: stats-responder URL SERVICE REPLY */
#include <stdio.h>
#include <unistd.h>

#include <nats/nats.h>

static void
on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
	(void)sub;
	if (natsMsg_GetReply(m) != NULL) {
		natsConnection_PublishString(nc, natsMsg_GetReply(m), arg);
	}
	natsMsg_Destroy(m);
}

int
main(int argc, char **argv)
{
	natsConnection *nc = NULL;
	natsSubscription *one = NULL, *all = NULL;
	char subject[256], c;
	natsStatus s;

	if (argc != 4) {
		fprintf(stderr, "Usage: stats-responder URL SERVICE REPLY\n");
		return 2;
	}
	snprintf(subject, sizeof(subject), "mesh.service.%s.stats", argv[2]);
	if ((s = natsConnection_ConnectTo(&nc, argv[1])) != NATS_OK ||
	    (s = natsConnection_Subscribe(&one, nc, subject, on_msg,
	                                  argv[3])) != NATS_OK ||
	    (s = natsConnection_Subscribe(&all, nc, "mesh.services.stats",
	                                  on_msg, argv[3])) != NATS_OK ||
	    (s = natsConnection_Flush(nc)) != NATS_OK) {
		fprintf(stderr, "stats-responder: %s\n",
		        natsStatus_GetText(s));
		natsConnection_Destroy(nc);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	while (read(0, &c, 1) > 0) {
	}
	natsSubscription_Destroy(one);
	natsSubscription_Destroy(all);
	natsConnection_Destroy(nc);
	nats_Close();
	return 0;
}
