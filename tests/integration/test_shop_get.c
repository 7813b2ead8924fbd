/* The shop's GET /orders/{id}: orders (as its program) answers from its
 * own state the order and whether it shipped, once shipping's
 * ShipmentCreated has reached it; an order to a country not shipped to is
 * never shipped; an unknown order is 404, a malformed id 400; orders
 * --describe lists the route. The test plays mesh-gateway. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "harness.h"
#include "request_call.h"
#include "shop_orders.h"
#include "mesh/queue.h"

static const char *paths[3];
static const char *const names[3] = {"orders", "shipping", "notifications"};
static struct test_broker broker;
static struct mesh_conn *conn;
static char dir[PATH_MAX];

static int
get_order(const char *id, struct test_reply *r)
{
	char path[300];

	snprintf(path, sizeof path, "/orders/%s", id);
	return test_request_call(mesh_conn_nats(conn), "orders",
	                         "GET /orders/{id}", path, id, NULL, NULL,
	                         NULL, 2000, r);
}

/* The answer's JSON field (a path of up to two names) as text. */
static const char *
field(json_t *j, const char *a, const char *b)
{
	json_t *v = json_object_get(j, a);

	v = b != NULL ? json_object_get(v, b) : v;
	return json_is_string(v) ? json_string_value(v)
	       : json_is_true(v) ? "true"
	                         : "";
}

int
main(int argc, char **argv)
{
	struct mesh_conn_opts o;
	struct mesh_queue *q = NULL;
	struct test_reply r;
	pid_t pids[3];
	json_t *j;
	int status;
	char cmd[PATH_MAX + 32], out[4096] = "";
	FILE *f;

	if (argc != 4) {
		fprintf(stderr, "usage: %s ORDERS SHIPPING NOTIFICATIONS\n",
		        argv[0]);
		return 2;
	}
	memcpy(paths, argv + 1, sizeof paths);
	snprintf(cmd, sizeof cmd, "%s --describe", paths[0]);
	if ((f = popen(cmd, "r")) != NULL) {
		size_t n = fread(out, 1, sizeof out - 1, f);
		out[n] = '\0';
		pclose(f);
	}
	has_str(out,
	        "\"routes\":[{\"route\":\"GET "
	        "/orders/{id}\",\"kind\":\"read\"},{\"route\":\"POST "
	        "/orders/{id}/cancel\",\"kind\":\"command\"}]",
	        "orders --describe lists GET /orders/{id}, a read, and POST "
	        "/orders/{id}/cancel, a command");
	if (!test_broker_start(&broker, NULL) ||
	    !test_tmpdir(dir, sizeof dir)) {
		tap_skip_all("nats-server did not start");
	}
	mesh_conn_opts_init(&o);
	o.servers = broker.url;
	ok(mesh_conn_open(&o, &conn) == MESH_OK, "connected");
	ok(test_shop_make(conn),
	   "topics orders, shipments; queues place-order, orders-summary");
	for (int i = 0; i < 3; i++) {
		pids[i] = test_shop_spawn(paths[i], broker.url, dir, names[i]);
	}
	ok(test_shop_wait_subscribed(conn),
	   "orders, shipping and notifications subscribed themselves");
	/* g-0 .. g-4 to shippable countries, g-5 (JP) and g-6 (BR) not. */
	mesh_queue_open(conn, "place-order", &q);
	is_int(test_shop_send(q, "g-", 0, 7), 0, "7 orders placed");
	mesh_queue_close(q);

	for (long long end = test_now_ms() + 20000; test_now_ms() < end;) {
		if (get_order("g-0", &r) == 200 &&
		    strstr(r.body, "\"shipped\":true") != NULL) {
			break;
		}
		usleep(200 * 1000);
	}
	is_int(r.status, 200, "GET /orders/g-0: 200");
	is_str(r.ctype, "application/json", "... JSON");
	j = json_loads(r.body, 0, NULL);
	is_str(field(j, "order", "orderId"), "g-0", "... the order");
	is_str(field(j, "order", "country"), "DE", "... its country");
	is_str(field(j, "order", "totalCents"), "995", "... its total");
	is_str(field(j, "shipped", NULL), "true", "... shipped");
	ok(strncmp(field(j, "label", NULL), "EVM-DE-", 7) == 0,
	   "... with shipping's label (%s)", field(j, "label", NULL));
	json_decref(j);

	/* JP is not shipped to: once g-4's shipment is known, g-5 has
	 * long been placed, and it never ships. */
	for (long long end = test_now_ms() + 20000; test_now_ms() < end;) {
		if (get_order("g-4", &r) == 200 &&
		    strstr(r.body, "\"shipped\":true") != NULL) {
			break;
		}
		usleep(200 * 1000);
	}
	is_int(get_order("g-5", &r), 200, "GET /orders/g-5: 200");
	j = json_loads(r.body, 0, NULL);
	is_str(field(j, "order", "country"), "JP", "... to JP");
	is_str(field(j, "shipped", NULL), "",
	       "... not shipped (false: left out)");
	json_decref(j);

	is_int(get_order("nope", &r), 404, "an unknown order: 404");
	has_str(r.body, "no order 'nope'", "... naming it");
	has_str(r.body, r.request_id, "... with the request id");
	is_int(get_order("a b", &r), 400, "a malformed id: 400");
	has_str(r.body, "id:", "... naming the parameter");

	for (int i = 0; i < 3; i++) {
		kill(pids[i], SIGTERM);
		waitpid(pids[i], &status, 0);
		ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		   "%s stops with 0 on SIGTERM", names[i]);
	}
	mesh_conn_close(conn);
	test_broker_stop(&broker);
	test_rmtree(dir);
	return tap_done();
}
