#!/usr/bin/env bash
# deploy/up --secure: the shop's account whole with every program on its
# own identity over TLS; the broker refuses a client without credentials,
# a client without the CA cannot verify it, shipping's identity may not
# publish to orders; a second run reuses the identities, the CA and the
# processes; a plain run beside it is refused; deploy/down stops it all.
# mesh-gateway runs as itself: an order placed and read back over HTTPS.
# Runs on free ports with its own state folder.
set -u
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/ports.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
unset NATS_URL NATS_USER NATS_PASSWORD NATS_TOKEN NATS_NKEY NATS_CREDS \
	NATS_CA NATS_CERT NATS_KEY
export EVMESH_STATE
EVMESH_STATE=$(mktemp -d)
export EVMESH_NATS_PORT
EVMESH_NATS_PORT=$(free_port)
export EVMESH_HTTP_PORT
EVMESH_HTTP_PORT=$(free_port)
trap '"$root/deploy/down" >/dev/null 2>&1; rm -rf "$EVMESH_STATE"' EXIT
export EVMESH_BIN_DIR=$EVMESH_STATE/bin
meshctl=$root/build/broker-adapters/meshctl/meshctl
url=nats://127.0.0.1:$EVMESH_NATS_PORT
auth=$EVMESH_STATE/auth
ca=$auth/tls/ca.pem
m() { "$meshctl" --server "$url" --connect-timeout 1000 "$@"; }

out=$("$root/deploy/up" --secure --once 20 </dev/null 2>&1); ok $? "deploy/up --secure --once 20 exits 0"
has "$out" "orders: 20 placed, 15 shipped, 15 notified, 5 filtered, duplicates 0, lost 0" \
	"and the shop's account is whole"
has "$out" "started mesh-scheduler as mesh-scheduler" "the scheduler runs as itself"
has "$out" "started mesh-router as mesh-router" "the router too"
has "$out" "started mesh-supervisor as mesh-supervisor" "and the supervisor"
has "$out" "started mesh-gateway as mesh-gateway" "and the gateway"
has "$out" 'up:   POST /orders: 202 {"MessageId":"' "which places an order over HTTP"
has "$(grep "^up:   GET /orders/http-" <<<"$out" | tail -n 1)" '"shipped":true' \
	"and reads it back from orders, shipped"
for s in orders shipping notifications; do
	has "$out" "function $s: " "the function $s is defined"
	has "$(m --nkey "$auth/admin.nk" --tls-ca "$ca" function info $s)" \
		"NATS_NKEY=$auth/$s.nk" "with its own identity"
done
has "$out" "export NATS_URL=$url NATS_NKEY=$auth/admin.nk NATS_CA=$ca" \
	"it ends with the exports for meshctl"
for k in admin mesh-router orders; do
	is "$(stat -c %a "$auth/$k.nk")" 600 "$k.nk is mode 0600"
done
for k in ca.key server.key; do
	is "$(stat -c %a "$auth/tls/$k")" 600 "tls/$k is mode 0600"
done
openssl x509 -in "$auth/tls/server.pem" -noout -ext subjectAltName 2>/dev/null |
	grep -q "IP Address:127.0.0.1"
ok $? "the server's certificate names 127.0.0.1"
pid=$(cat "$EVMESH_STATE/mesh-router.pid")
tr '\0' '\n' <"/proc/$pid/environ" | grep -qx "NATS_NKEY=$auth/mesh-router.nk"
ok $? "the router's process has its seed file"
pid=$(cat "$EVMESH_STATE/mesh-gateway.pid")
tr '\0' '\n' <"/proc/$pid/environ" | grep -qx "NATS_NKEY=$auth/mesh-gateway.nk"
ok $? "the gateway's process has its own"
# deploy/up ends with no instance of the shop running: a GET to orders
# is held by the supervisor (as itself), which starts orders and hands
# the request over.
oid=$(grep -o '^up:   GET /orders/http-[0-9]*' <<<"$out" | head -n 1 | cut -d/ -f3)
got=$(curl -s -m 30 --cacert "$ca" -w ' %{http_code}' "https://127.0.0.1:$EVMESH_HTTP_PORT/orders/$oid")
has "$got" '"shipped":true' "a GET over HTTPS to orders at zero instances starts it and is answered"
has "$got" " 200" "with 200"
has "$out" "(HTTP at https://127.0.0.1:$EVMESH_HTTP_PORT;" "the gateway speaks HTTPS, with the CA's certificate"
curl -s -m 5 -o /dev/null "https://127.0.0.1:$EVMESH_HTTP_PORT/orders/$oid"
is $? 60 "a client that does not trust the CA refuses it"
is "$(grep -c 'Violation' "$EVMESH_STATE/nats/nats-server.log")" 0 \
	"the broker refused none of the mesh's own calls"

# ---- refused -------------------------------------------------------------
out=$(m --tls-ca "$ca" ping 2>&1); is $? 1 "a client without credentials is refused"
has "$out" "Authorization Violation" "by the broker"
out=$(m --nkey "$auth/admin.nk" ping 2>&1); is $? 1 "a client without TLS cannot connect"
out=$(m --nkey "$auth/admin.nk" --tls ping 2>&1); is $? 1 "nor one with TLS but without the CA"
has "$out" "certificate" "which cannot verify the server's certificate"
out=$(m --nkey "$auth/admin.nk" --tls-ca "$ca" ping 2>&1); ok $? "the admin with the CA connects"
out=$(m --nkey "$auth/shipping.nk" --tls-ca "$ca" topic publish orders --body forged 2>&1)
is $? 1 "shipping's identity may not publish to orders"
has "$out" 'Permissions Violation for Publish to "mesh.topic.orders"' "the error names the permission"

# ---- again, and the other mode -------------------------------------------
seed=$(cat "$auth/shipping.nk")
capem=$(cat "$ca")
out=$("$root/deploy/up" --secure --once 7 </dev/null 2>&1)
ok $? "deploy/up --secure again exits 0" || diag "$(tail -n 25 <<<"$out")"
has "$out" "orders: 7 placed, 5 shipped, 5 notified, 2 filtered, duplicates 0, lost 0" "with the account whole"
has "$out" "(0 new)" "keeping the identities"
is "$(cat "$auth/shipping.nk")" "$seed" "shipping's seed unchanged"
has "$out" "reusing the CA" "reusing the CA"
is "$(cat "$ca")" "$capem" "which is unchanged"
has "$out" "nats-server already running" "and the broker"
has "$out" "mesh-router already running" "and the router"
has "$out" "mesh-supervisor already running" "and the supervisor"
out=$("$root/deploy/up" --once 1 </dev/null 2>&1); is $? 1 "a plain deploy/up beside it is refused"
has "$out" "runs with --secure" "saying why"
out=$("$root/deploy/up" --secure --cluster --once 1 </dev/null 2>&1); is $? 1 "--secure --cluster beside the single server is refused"
has "$out" "the single nats-server of ours is running" "saying why"

# ---- down ----------------------------------------------------------------
out=$("$root/deploy/down" 2>&1); ok $? "deploy/down exits 0"
has "$out" "stopped nats-server" "and stops the broker"
for d in mesh-scheduler mesh-router mesh-supervisor mesh-gateway; do
	has "$out" "stopped $d" "and $d"
done
pgrep -f "$root/build/services/(orders|shipping|notifications)/" >/dev/null
is $? 1 "and no service process is left"
pgrep -f "nats-server -c $EVMESH_STATE/" >/dev/null
is $? 1 "nor the broker"
done_testing
