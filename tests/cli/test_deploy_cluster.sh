#!/usr/bin/env bash
# deploy/up --cluster: three nats-servers (n1, n2, n3) as one JetStream
# cluster, two routers, two scheduler replicas and the shop's three
# services on it, and one mesh-gateway, whose POST /orders places an
# order (202) and whose GET /orders/{id} is 503 (orders runs partitioned,
# and partitioned services serve no requests); 200 orders make a whole
# account; a second run reuses
# everything, a third brings back a node that died; the single-server mode
# refuses to start beside the cluster and the reverse; deploy/down stops
# every process. Runs on free ports (client ports P..P+2, routes the
# default P+2000.., monitoring set apart) with its own state folder.
set -u
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/ports.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
cluster_deploy_env "$root"

# ours: NAME:PROGRAM:PIDFILE of every process deploy/up --cluster starts.
ours=()
for n in n1 n2 n3; do ours+=("$n:nats-server:$EVMESH_STATE/nats/$n/nats-server.pid"); done
for d in mesh-router mesh-router-2 mesh-scheduler mesh-scheduler-2 \
	orders shipping notifications orders-2 shipping-2 notifications-2 \
	mesh-gateway; do
	ours+=("$d:${d%-2}:$EVMESH_STATE/$d.pid")
done
# pids: each of ours that runs its program, "NAME=PID" a line.
pids() {
	local e name prog pidf pid
	for e in "${ours[@]}"; do
		IFS=: read -r name prog pidf <<<"$e"
		pid=$(cat "$pidf" 2>/dev/null) && kill -0 "$pid" 2>/dev/null &&
			grep -q "$prog" "/proc/$pid/cmdline" 2>/dev/null &&
			echo "$name=$pid"
	done
}
# all_run DESCRIPTION: fourteen of ours run; if not, which ones are missing and
# the end of each one's log.
all_run() {
	local e name got
	running=$(pids)
	is "$(wc -l <<<"$running")" 14 "$1" && return
	for e in "${ours[@]}"; do
		name=${e%%:*}
		grep -q "^$name=" <<<"$running" && continue
		got=$(tail -n 5 "$EVMESH_STATE/$name.log" "$EVMESH_STATE/nats/$name/nats-server.log" 2>/dev/null)
		diag "$name is not running; its log ends:" "$got"
	done
}
# jsz PORT: the meta cluster's size and leader seen by a node, "3 n2".
jsz() {
	python3 -c '
import json, sys, urllib.request
m = json.load(urllib.request.urlopen("http://127.0.0.1:%s/jsz" % sys.argv[1], timeout=5))["meta_cluster"]
print(m.get("cluster_size"), m.get("leader", ""))' "$1" 2>/dev/null
}

start=$SECONDS
out=$("$root/deploy/up" --cluster --once 200 </dev/null 2>&1)
ok $? "deploy/up --cluster --once 200 exits 0" ||
	diag "$(grep -A6 -E 'has exited|not whole|did not' <<<"$out")"
echo "# up in $((SECONDS - start)) s; $(grep "JetStream is ready" <<<"$out")"
for i in 0 1 2; do
	has "$out" "starting nats-server n$((i + 1)) -js at nats://127.0.0.1:$((EVMESH_NATS_PORT + i)) (routes on port $((cport + i)), monitoring http://127.0.0.1:$((EVMESH_MONITOR_PORT + i))," \
		"and starts nats-server n$((i + 1)) on its client, route (default) and monitoring (set) ports"
done
has "$out" "the cluster's JetStream is ready (meta leader n" \
	"and waits for the cluster's JetStream to have a meta leader"
for d in mesh-scheduler mesh-scheduler-2 mesh-router mesh-router-2 \
	orders shipping notifications orders-2 shipping-2 notifications-2 \
	mesh-gateway; do
	has "$out" "started $d (log $EVMESH_STATE/$d.log)" "and starts $d"
done
has "$out" 'up:   POST /orders: 202 {"MessageId":"' "an order placed over HTTP: 202"
has "$(grep "^up:   GET /orders/http-" <<<"$out")" ': 503 {"message":"' \
	"read back: 503 (orders, partitioned, serves no requests)"
has "$out" "queue 'demo-all' got 2 of the 2" "which fans a topic out to a queue"
has "$out" "queue 'demo-eu' got 1 of the 2" "and through a filter policy"
has "$out" "smoke: round trip" "and round-trips the smoke event"
has "$out" "orders: 200 placed, 144 shipped, 144 notified, 56 filtered, duplicates 0, lost 0" \
	"and places 200 orders, every shippable one shipped and notified once"
has "$out" "the mesh is up at $urls " "at the three servers' URLs"
all_run "three nats-servers, two routers, two schedulers, two instances of three services and a gateway run"
meshctl=$root/build/broker-adapters/meshctl/meshctl
# spread: a service's partition count, whether each has an owner, and
# how many owners, "4 True 2".
spread() {
	"$meshctl" --server "$urls" service info "$1" --json 2>&1 |
		python3 -c '
import json, sys
j = json.load(sys.stdin)
parts = j["partition_list"]
owners = {p["owner"] for p in parts}
print(j["partitions"], all(p["owner"] for p in parts), len(owners))' 2>&1
}
for svc in orders shipping notifications; do
	# An instance that joined last takes its share within a few leases.
	for _ in $(seq 1 30); do
		[ "$(spread $svc)" = "4 True 2" ] && break
		sleep 0.5
	done
	is "$(spread $svc)" "4 True 2" \
		"$svc runs in 4 partitions, each owned, spread over its two instances"
done
oid=$(grep -o 'ids up-[0-9]*-' <<<"$out" | head -n 1 | cut -c5-)1
got=$("$meshctl" --server "$urls" state get orders "order/$oid" \
	--type evmesh.shop.OrderPlaced --json 2>&1)
has "$got" "\"orderId\": \"$oid\"" \
	"meshctl state get finds an order in whichever partition holds it"
oid=$(grep -o 'ids up-[0-9]*-' <<<"$out" | head -n 1 | cut -c5-)1
got=$("$meshctl" --server "$urls" state get orders "order/$oid" \
	--type evmesh.shop.OrderPlaced --json 2>&1)
has "$got" "\"orderId\": \"$oid\"" \
	"meshctl state get finds an order in whichever partition holds it"
for i in 0 1 2; do
	read -r size leader < <(jsz $((EVMESH_MONITOR_PORT + i)))
	is "${size:-}" 3 "n$((i + 1)) is one of a JetStream cluster of 3"
	[[ "${leader:-}" == n[123] ]]; ok $? "which has a meta leader (${leader:-none})"
done
for d in mesh-router-2 mesh-scheduler-2 orders; do
	pid=$(sed -n "s/^$d=//p" <<<"$running")
	grep -qa -- "$urls" "/proc/${pid:-0}/cmdline"; ok $? "$d connects to all three servers"
done
for r in 1 2; do
	d=mesh-scheduler$([ $r -eq 1 ] || echo -2)
	pid=$(sed -n "s/^$d=//p" <<<"$running")
	grep -qa -- "--state.$EVMESH_STATE/scheduler-cluster/$r" "/proc/${pid:-0}/cmdline"
	ok $? "$d keeps its state in scheduler-cluster/$r"
done

out=$("$root/deploy/up" --once 3 </dev/null 2>&1); is $? 1 \
	"deploy/up (one server) while the cluster runs exits 1"
has "$out" "up: our 3-node cluster is running (n1 pid" "and says the cluster runs"
has "$out" "stop it with deploy/down first, or run deploy/up --cluster" \
	"and what to do"
is "$(pids)" "$running" "and touches none of it"

start=$SECONDS
out=$("$root/deploy/up" --cluster --once 20 </dev/null 2>&1)
ok $? "deploy/up --cluster --once 20 again exits 0" ||
	diag "$(grep -A6 -E 'has exited|not whole|did not' <<<"$out")"
echo "# again in $((SECONDS - start)) s"
for n in n1 n2 n3; do
	has "$out" "nats-server $n already running" "and reuses nats-server $n"
done
for d in mesh-scheduler-2 mesh-router-2 notifications; do
	has "$out" "$d already running" "and $d"
done
has "$out" "orders: 20 placed, 15 shipped, 15 notified, 5 filtered, duplicates 0, lost 0" \
	"and places 20 more orders"
is "$(pids)" "$running" "the same processes run"

n2=$(sed -n 's/^n2=//p' <<<"$running")
kill "$n2"
for _ in $(seq 1 50); do kill -0 "$n2" 2>/dev/null || break; sleep 0.1; done
out=$("$root/deploy/up" --cluster --once 7 </dev/null 2>&1)
ok $? "with n2 stopped, deploy/up --cluster --once 7 exits 0"
has "$out" "nats-server n1 already running" "and reuses n1"
has "$out" "starting nats-server n2 -js" "and starts n2 again"
has "$out" "orders: 7 placed, 5 shipped, 5 notified, 2 filtered, duplicates 0, lost 0" \
	"and the account is whole"
all_run "all fourteen run again"

out=$("$root/deploy/down" 2>&1); ok $? "deploy/down exits 0"
for n in n1 n2 n3; do
	has "$out" "stopped nats-server $n (pid" "and stops nats-server $n"
done
for d in mesh-router mesh-router-2 mesh-scheduler mesh-scheduler-2 \
	orders shipping notifications orders-2 shipping-2 notifications-2 \
	mesh-gateway; do
	has "$out" "stopped $d (pid" "and $d"
done
left=""
for np in $running; do kill -0 "${np#*=}" 2>/dev/null && left+=" $np"; done
is "$left" "" "no process of ours is left"
is "$(pgrep -f -- "$EVMESH_STATE" | tr '\n' ' ')" "" \
	"nor any process naming the state folder"
[ -d "$EVMESH_STATE/nats/n1/jetstream" ] && [ -d "$EVMESH_STATE/scheduler-cluster/2" ]
ok $? "the stores stay for next time"

# The other way round: one server of ours running, --cluster refused.
out=$("$root/deploy/up" --once 1 </dev/null 2>&1); ok $? "deploy/up (one server) after down exits 0"
out=$("$root/deploy/up" --cluster --once 1 </dev/null 2>&1); is $? 1 \
	"deploy/up --cluster while the single server runs exits 1"
has "$out" "up: the single nats-server of ours is running (pid" \
	"and says it runs"
has "$out" "stop it with deploy/down first, then deploy/up --cluster" "and what to do"
[ ! -e "$EVMESH_STATE/nats/n1/nats-server.pid" ]; ok $? "and starts no node"
out=$("$root/deploy/down" 2>&1); ok $? "deploy/down stops it"
has "$out" "stopped nats-server (pid" "the single server"

out=$(EVMESH_NATS_PORT=65534 "$root/deploy/up" --cluster 2>&1); is $? 2 \
	"--cluster wants three client ports"
has "$out" "up: EVMESH_NATS_PORT=65534: want a port, 1-65533" "and says which value is at fault"
out=$(EVMESH_NATS_PORT=63000 EVMESH_MONITOR_PORT= "$root/deploy/up" --cluster 2>&1); is $? 2 \
	"a derived port past 65535 is refused"
has "$out" "up: EVMESH_MONITOR_PORT=67000 (EVMESH_NATS_PORT+4000): want a port" \
	"and named with where it came from"
done_testing
