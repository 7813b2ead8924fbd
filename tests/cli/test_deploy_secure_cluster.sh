#!/usr/bin/env bash
# deploy/up --cluster --secure: three nats-servers whose routes use mutual
# TLS (each node proves itself with the CA's certificate), TLS and the
# identities of meshctl auth init on their client ports, and the shop's
# two instances of each service, the routers and schedulers each on its
# own identity, and the mesh-gateway on its own (an order placed over
# HTTP); the account is whole; a client without credentials, a
# route without the CA's certificate and shipping publishing to orders are
# refused; the plain cluster beside it is refused; deploy/down stops it.
# Runs on free ports with its own state folder.
set -u
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/ports.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
unset NATS_URL NATS_USER NATS_PASSWORD NATS_TOKEN NATS_NKEY NATS_CREDS \
	NATS_CA NATS_CERT NATS_KEY
cluster_deploy_env "$root"
meshctl=$root/build/broker-adapters/meshctl/meshctl
auth=$EVMESH_STATE/auth
ca=$auth/tls/ca.pem
m() { "$meshctl" --server "$urls" --connect-timeout 1000 "$@"; }
admin() { m --nkey "$auth/admin.nk" --tls-ca "$ca" "$@"; }

start=$SECONDS
out=$("$root/deploy/up" --cluster --secure --once 20 </dev/null 2>&1)
ok $? "deploy/up --cluster --secure --once 20 exits 0" ||
	diag "$(tail -n 25 <<<"$out")"
echo "# up in $((SECONDS - start)) s"
has "$out" "orders: 20 placed, 15 shipped, 15 notified, 5 filtered, duplicates 0, lost 0" \
	"and the shop's account is whole"
for i in 1 2 3; do
	has "$out" "starting nats-server n$i -js at nats://127.0.0.1:$((EVMESH_NATS_PORT + i - 1)) (routes on port $((cport + i - 1)) (TLS)" \
		"n$i starts with TLS routes"
	conf=$EVMESH_STATE/nats/n$i/nats-server.conf
	grep -q 'verify: true' "$conf"; ok $? "n$i verifies its peers' certificates"
	grep -q '^include "../../auth/authorization.conf"' "$conf"
	ok $? "n$i takes its users from auth/authorization.conf"
done
size=$(python3 - "$EVMESH_MONITOR_PORT" <<'PY'
import json, sys, urllib.request
j = json.load(urllib.request.urlopen("http://127.0.0.1:%s/jsz" % sys.argv[1], timeout=5))
print(j.get("meta_cluster", {}).get("cluster_size", 0))
PY
)
is "$size" 3 "a JetStream cluster of 3 over the TLS routes"
has "$out" 'up:   POST /orders: 202 {"MessageId":"' "the gateway, as itself, places an order over HTTP"
for d in mesh-router mesh-router-2 mesh-scheduler-2 orders-2 shipping mesh-gateway; do
	pid=$(cat "$EVMESH_STATE/$d.pid")
	tr '\0' '\n' <"/proc/$pid/environ" |
		grep -qx "NATS_NKEY=$auth/${d%-2}.nk"
	ok $? "$d runs as ${d%-2}"
done
for i in 1 2 3; do
	is "$(grep -c 'Violation' "$EVMESH_STATE/nats/n$i/nats-server.log")" 0 \
		"n$i refused none of the mesh's own calls"
done

# ---- refused -------------------------------------------------------------
out=$(m --tls-ca "$ca" ping 2>&1); is $? 1 "a client without credentials is refused"
has "$out" "Authorization Violation" "by the servers"
out=$(admin ping); ok $? "the admin with the CA connects"
out=$(m --nkey "$auth/shipping.nk" --tls-ca "$ca" topic publish orders --body forged 2>&1)
is $? 1 "shipping's identity may not publish to orders"
has "$out" 'Permissions Violation for Publish to "mesh.topic.orders"' "the error names the permission"
# A route from a server without the CA's certificate: refused by n1.
rogue=$EVMESH_STATE/rogue
mkdir -p "$rogue"
cat >"$rogue/nats-server.conf" <<CONF
server_name: rogue
listen: "127.0.0.1:-1"
cluster {
  name: evmesh
  listen: "127.0.0.1:-1"
  routes: [nats-route://127.0.0.1:$cport]
}
CONF
nats-server -c "$rogue/nats-server.conf" -l "$rogue/log" &
rogue_pid=$!
# n1's route count while the rogue server tries to join: the two others'.
routes() {
	python3 - "$EVMESH_MONITOR_PORT" <<'PY'
import json, sys, urllib.request
j = json.load(urllib.request.urlopen("http://127.0.0.1:%s/routez" % sys.argv[1], timeout=5))
print(len(j.get("routes") or []))
PY
}
seen=""
for _ in $(seq 1 15); do
	seen+="$(routes);"
	sleep 0.2
done
grep -q "Route connection created" "$rogue/log"
ok $? "the rogue server without the CA's certificate dials n1's route port"
kill "$rogue_pid" 2>/dev/null
wait "$rogue_pid" 2>/dev/null
is "$(tr ';' '\n' <<<"$seen" | sed '/^$/d' | sort -u | tr '\n' ';')" "2;" \
	"and n1 keeps its two routes (n2, n3) all the while: it is refused"
# ---- again, and the other mode -------------------------------------------
out=$("$root/deploy/up" --cluster --secure --once 7 </dev/null 2>&1)
ok $? "deploy/up --cluster --secure again exits 0" || diag "$(tail -n 25 <<<"$out")"
has "$out" "orders: 7 placed, 5 shipped, 5 notified, 2 filtered, duplicates 0, lost 0" "with the account whole"
for i in 1 2 3; do
	has "$out" "nats-server n$i already running" "reusing n$i"
done
out=$("$root/deploy/up" --cluster --once 1 </dev/null 2>&1); is $? 1 "a plain deploy/up --cluster beside it is refused"
has "$out" "runs with --secure" "saying why"

# ---- down ----------------------------------------------------------------
out=$("$root/deploy/down" 2>&1); ok $? "deploy/down exits 0"
for n in n1 n2 n3; do
	has "$out" "stopped nats-server $n (pid" "and stops nats-server $n"
done
is "$(pgrep -f -- "$EVMESH_STATE" | tr '\n' ' ')" "" \
	"no process naming the state folder is left"
done_testing
