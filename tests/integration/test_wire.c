/* Events through a real JetStream: publish, consume, decode, dedupe. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "mesh/mesh.h"

static bool
make_stream(struct mesh_conn *c, const char *name, const char *subject)
{
	jsStreamConfig cfg;
	const char *subjects[] = {subject};

	jsStreamConfig_Init(&cfg);
	cfg.Name = name;
	cfg.Subjects = subjects;
	cfg.SubjectsLen = 1;
	return mesh_stream_ensure(c, &cfg) == MESH_OK;
}

int
main(void)
{
	struct test_broker b;
	struct mesh_conn_opts o;
	struct mesh_conn *c = NULL;
	struct mesh_event *ev, *got = NULL;
	natsSubscription *sub = NULL;
	natsMsgList list = {0};
	uint64_t seq = 0, seq2 = 0;
	bool dup = true;
	const char *hv = NULL;
	const char *type;
	const void *val;
	size_t len;

	if (!test_broker_start(&b, NULL)) {
		ok(false, "a broker starts");
		return tap_done();
	}
	mesh_conn_opts_init(&o);
	o.servers = b.url;
	if (mesh_conn_open(&o, &c) != MESH_OK ||
	    !make_stream(c, "T", "mesh.test.>")) {
		ok(false, "connect and make a stream: %s", mesh_errdetail());
		test_broker_stop(&b);
		return tap_done();
	}

	mesh_event_new("test.v1.Thing", "/tests", &ev);
	mesh_event_set_subject(ev, "thing-1");
	mesh_event_attr_set(ev, "colour", "String", "red", 3);
	mesh_event_set_text(ev, "body", 4);
	is_int(mesh_wire_publish(c, "mesh.test.a", ev, NULL, &seq, &dup),
	       MESH_OK, "an event is published and stored");
	ok(seq == 1 && !dup, "as the stream's first message");
	is_int(mesh_wire_publish(c, "mesh.test.a", ev, NULL, &seq2, &dup),
	       MESH_OK, "publishing the same event again succeeds");
	ok(dup && seq2 == seq,
	   "but JetStream drops it as a duplicate (Nats-Msg-Id = event id)");
	is_int(mesh_wire_publish(c, "mesh.none", ev, NULL, NULL, NULL),
	       MESH_ENOTFOUND, "publishing where no stream listens fails");
	has_str(mesh_errdetail(), "no stream takes this subject",
	        "and the detail says why");
	is_int(mesh_wire_publish(c, "mesh.test.*", ev, NULL, NULL, NULL),
	       MESH_EINVAL, "a wildcard subject is refused");

	js_PullSubscribe(&sub, mesh_conn_js(c), "mesh.test.a", "d", NULL, NULL,
	                 NULL);
	natsSubscription_Fetch(&list, sub, 10, 2000, NULL);
	is_int(list.Count, 1, "one message is waiting");
	if (list.Count == 1) {
		natsMsg *m = list.Msgs[0];
		natsMsgHeader_Get(m, MESH_HDR_CONTENT_TYPE, &hv);
		is_str(hv, "application/cloudevents+protobuf",
		       "Content-Type says CloudEvents protobuf");
		natsMsgHeader_Get(m, MESH_HDR_CE_TYPE, &hv);
		is_str(hv, "test.v1.Thing", "Ce-Type is copied to a header");
		natsMsgHeader_Get(m, MESH_HDR_CE_SUBJECT, &hv);
		is_str(hv, "thing-1", "Ce-Subject is copied to a header");
		is_int(mesh_wire_decode(m, 0, &got), MESH_OK,
		       "the message decodes");
		is_str(got ? mesh_event_id(got) : NULL, mesh_event_id(ev),
		       "into the event that was published");
		ok(got &&
		           mesh_event_attr_get(got, "colour", &type, &val,
		                               &len) == MESH_OK &&
		           len == 3 && memcmp(val, "red", 3) == 0,
		   "with its message attributes");
		natsMsg_AckSync(m, NULL, NULL);
		natsMsgHeader_Set(m, MESH_HDR_CONTENT_TYPE, "text/plain");
		mesh_event_free(got);
		got = NULL;
		is_int(mesh_wire_decode(m, 0, &got), MESH_EPARSE,
		       "a message of another Content-Type is refused");
	}
	natsMsgList_Destroy(&list);
	natsSubscription_Destroy(sub);
	mesh_event_free(ev);
	mesh_conn_close(c);
	test_broker_stop(&b);
	mesh_shutdown();
	return tap_done();
}
