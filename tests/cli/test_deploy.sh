#!/usr/bin/env bash
# deploy/up three times: the broker, scheduler, router and supervisor come
# up, the shop's three services defined as functions run on demand (none
# runs once the orders are through); the smoke flow round-trips an event; orders flow
# through the shop and the account read from the services' state is whole
# (--once 50, then the default 10 orders, shown end to end); the second run
# reuses what the first started; --watch prints live counts until Ctrl-C
# and exits 0; deploy/down stops everything, and the next deploy/up reads
# the old state; as root it links meshctl into a bin directory, never over
# another file. Each run places an order over HTTP through mesh-gateway
# (its routes made, then kept) and reads it back shipped; deploy/down
# stops the gateway. Runs on free ports with its own state and bin folders.
set -u
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/ports.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
export EVMESH_STATE
EVMESH_STATE=$(mktemp -d)
export EVMESH_NATS_PORT
EVMESH_NATS_PORT=$(free_port)
export EVMESH_HTTP_PORT
EVMESH_HTTP_PORT=$(free_port)
trap '"$root/deploy/down" >/dev/null 2>&1; rm -rf "$EVMESH_STATE"' EXIT
# Where deploy/up links meshctl (as root): not the machine's /usr/local/bin.
export EVMESH_BIN_DIR=$EVMESH_STATE/bin
meshctl=$root/build/broker-adapters/meshctl/meshctl

out=$("$root/deploy/up" --once 50 </dev/null 2>&1); ok $? "deploy/up --once 50 exits 0"
has "$out" "starting nats-server" "and starts a broker"
has "$out" "started mesh-scheduler" "and a scheduler"
has "$out" "started mesh-router" "and a router"
has "$out" "started mesh-supervisor" "and a supervisor"
has "$out" "started mesh-gateway" "and a gateway"
has "$out" "up: route 'POST /orders' -> queue:place-order (evmesh.shop.PlaceOrder): created" \
	"with the route POST /orders to place-order"
has "$out" "up: route 'GET /orders/{id}' -> service:orders: created" "and GET /orders/{id} to orders"
has "$out" 'up:   POST /orders: 202 {"MessageId":"' "an order placed over HTTP: 202 and its MessageId"
shown=$(grep "^up:   GET /orders/http-" <<<"$out" | tail -n 1)
has "$shown" '"shipped":true' "and read back over HTTP, shipped"
has "$shown" '"country":"DE"' "the order itself"
has "$out" "HTTP at http://127.0.0.1:$EVMESH_HTTP_PORT" "the gateway's address said"
for s in orders shipping notifications; do
	has "$out" "function $s: " "and the service $s, on demand"
done
has "$out" "no service process runs" "and says none runs after the orders"
pgrep -f "$root/build/services/(orders|shipping|notifications)/" >/dev/null
is $? 1 "and none does"
has "$out" "queue 'demo-all' got 2 of the 2" "which fans a topic out to a queue"
has "$out" "queue 'demo-eu' got 1 of the 2" "and through a filter policy"
has "$out" "smoke: round trip" "and prints the event's round trip"
has "$out" "Body           hello from deploy/up" "and round-trips a queue message"
has "$out" "orders: 50 placed, 36 shipped, 36 notified, 14 filtered, duplicates 0, lost 0" \
	"and places 50 orders, every shippable one shipped and notified once"
if [ "$(id -u)" -eq 0 ]; then
	has "$out" "up: linked $EVMESH_BIN_DIR/meshctl -> $meshctl: meshctl is on PATH" \
		"as root it ends by linking meshctl into the bin directory"
	[ "$(readlink "$EVMESH_BIN_DIR/meshctl")" = "$meshctl" ]; ok $? "and the link is there"
else
	has "$out" "up: to type meshctl anywhere: export PATH=\"$(dirname "$meshctl"):\$PATH\"" \
		"it ends by saying how to put meshctl on PATH"
fi
out=$("$root/deploy/up" </dev/null 2>&1); ok $? "deploy/up again exits 0"
if [ "$(id -u)" -eq 0 ]; then
	has "$out" "up: meshctl is on PATH: $EVMESH_BIN_DIR/meshctl -> $meshctl" "and finds its link in place"
fi
has "$out" "nats-server already running" "and reuses the running broker"
has "$out" "mesh-scheduler already running" "and the running scheduler"
has "$out" "mesh-supervisor already running" "and the running supervisor"
has "$out" "mesh-gateway already running" "and the running gateway"
has "$out" "up: route 'POST /orders' -> queue:place-order: kept" "keeping its routes"
has "$out" "up: route 'GET /orders/{id}' -> service:orders: kept" "both"
has "$(grep "^up:   GET /orders/http-" <<<"$out" | tail -n 1)" '"shipped":true' \
	"and shows another order over HTTP, shipped"
has "$out" "NextFirings" "and shows the heartbeat schedule"
has "$out" "schedule 'orders-summary' asks orders" "and the summary schedule"
has "$out" "sequence 2" "whose stream kept the first run's event"
has "$out" "smoke: round trip" "and prints the round trip again"
has "$out" "orders: 10 placed, 8 shipped, 8 notified, 2 filtered, duplicates 0, lost 0" \
	"and places 10 orders by default"
has "$out" "shipping: order up-" "shown going through shipping"
has "$out" "notifications: sent: your order up-" "and notifications"
has "$out" "stopped at orders: shipping's filter policy" \
	"and one stopping at the filter policy"
"$root/deploy/up" --watch </dev/null >"$EVMESH_STATE/watch.out" 2>&1 &
watcher=$!
# (The run's order over HTTP is shown shipped before the live lines
# start; its notification may come a line later.)
for _ in $(seq 1 600); do
	grep -q "^up: [0-9:]* orders: 73 placed, 55 shipped, 55 notified" \
		"$EVMESH_STATE/watch.out" && break
	sleep 0.1
done
# A background job of a script ignores SIGINT: TERM takes Ctrl-C's part.
kill -TERM $watcher
wait $watcher
ok $? "deploy/up --watch exits 0 when stopped"
out=$(cat "$EVMESH_STATE/watch.out")
has "$out" "orders: 73 placed, 55 shipped, 55 notified, 18 filtered" \
	"after a live line counting every order so far (70 and 3 over HTTP)"
has "$out" "still up" "and leaves the mesh up"
out=$("$root/deploy/down" 2>&1); ok $? "deploy/down exits 0"
has "$out" "stopped nats-server" "and stops the broker"
has "$out" "stopped mesh-scheduler" "and the scheduler"
has "$out" "stopped mesh-router" "and the router"
has "$out" "stopped mesh-supervisor" "and the supervisor"
has "$out" "stopped mesh-gateway" "and the gateway"
curl -s -o /dev/null "http://127.0.0.1:$EVMESH_HTTP_PORT/"
is $? 7 "which no longer listens"
pgrep -f "$root/build/services/(orders|shipping|notifications)/" >/dev/null
is $? 1 "and no service process is left"
[ -d "$EVMESH_STATE/nats/jetstream" ]; ok $? "the store stays for next time"
mkdir -p "$EVMESH_STATE/other-bin"
printf '#!/bin/sh\n' >"$EVMESH_STATE/other-bin/meshctl"
out=$(EVMESH_BIN_DIR=$EVMESH_STATE/other-bin "$root/deploy/up" --once 7 </dev/null 2>&1); ok $? "deploy/up after down exits 0"
if [ "$(id -u)" -eq 0 ]; then
	has "$out" "up: $EVMESH_STATE/other-bin/meshctl is another meshctl, left as it is" \
		"and never replaces another program's file"
	[ ! -L "$EVMESH_STATE/other-bin/meshctl" ]; ok $? "which stays as it was"
fi
has "$out" "sequence 4" "and the new broker reads the old store"
has "$out" "orders: 7 placed, 5 shipped, 5 notified, 2 filtered, duplicates 0, lost 0" \
	"and the services their old state"
out=$("$root/deploy/up" --once x 2>&1); is $? 2 "--once wants a number"
out=$(EVMESH_HTTP_PORT=65536 "$root/deploy/up" 2>&1); is $? 2 "EVMESH_HTTP_PORT wants a port"
has "$out" "EVMESH_HTTP_PORT=65536: want a port, 1-65535" "naming it"
done_testing
