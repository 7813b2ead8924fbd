#!/usr/bin/env bash
# The shop over HTTP: the real orders (two instances), shipping and
# notifications and a real mesh-gateway against a broker of their own,
# with the routes deploy/up makes. POST /orders answers 202 and a
# MessageId; GET /orders/{id} shows the order shipped (one to JP never
# ships); an unknown order is 404, an id that is not one 400, a malformed
# body 400 naming the field. An instance of orders killed with SIGKILL
# while 16 clients (node's fetch) read orders: every answer is right or a
# clear error (502/503/504 as JSON), none wrong; then all are right.
# POST /orders/{id}/cancel (a command) twice with one Idempotency-Key
# runs once, the second answer replayed; another key runs again.
# Usage: test_shop_http.sh MESHCTL TEST-BROKER GATEWAY ORDERS SHIPPING
#        NOTIFICATIONS
set -u
MESHCTL=$1
TEST_BROKER=$2
GATEWAY=$3
ORDERS=$4
SHIPPING=$5
NOTIFICATIONS=$6
here=$(cd "$(dirname "$0")" && pwd)
. "$here/tap.sh"
. "$here/http.sh"
unset NATS_URL NATS_USER NATS_PASSWORD NATS_TOKEN NATS_NKEY NATS_CREDS

start_broker || { echo "Bail out! no broker"; exit 1; }
scratch
export NATS_URL=$BROKER_URL
m() { "$MESHCTL" "$@"; }

for t in orders shipments; do m topic create $t >/dev/null; done
for q in place-order orders-summary; do m queue create $q >/dev/null; done
# Two instances of orders share its state (as the supervisor's would); the
# second starts once the first has made its subscription (two making it
# at once can lose the subscription's first events: see the README's
# caveats).
"$ORDERS" --state "$tmp/orders" 2>"$tmp/orders-1.log" &
pids+=($!)
orders1=$!
"$SHIPPING" --state "$tmp/shipping" 2>"$tmp/shipping.log" &
pids+=($!)
"$NOTIFICATIONS" --state "$tmp/notifications" 2>"$tmp/notifications.log" &
pids+=($!)
for _ in $(seq 1 100); do
	subs=$(m subscription list 2>/dev/null)
	grep -q ' shipping ' <<<"$subs" && grep -q ' notifications ' <<<"$subs" &&
		grep -q ' orders ' <<<"$(m subscription list --topic shipments 2>/dev/null)" && break
	sleep 0.1
done
has "$subs" ' notifications ' "the shop's services subscribed themselves"
"$ORDERS" --state "$tmp/orders" 2>"$tmp/orders-2.log" &
pids+=($!)
for _ in $(seq 1 100); do grep -qs '"started: ' "$tmp/orders-2.log" && break; sleep 0.1; done
has "$(cat "$tmp/orders-2.log")" '"started: 3 sources' "a second instance of orders started"
m route create POST /orders --target queue:place-order --type evmesh.shop.PlaceOrder >/dev/null &&
	m route create GET '/orders/{id}' --target service:orders >/dev/null &&
	m route create POST '/orders/{id}/cancel' --target service:orders >/dev/null
ok $? "the shop's routes created"
start_gateway "$GATEWAY" --timeout-ms 2000

order() { # order ID COUNTRY
	printf '{"orderId":"%s","customer":"c-%s","country":"%s","items":[{"sku":"sku-1","quantity":2,"priceCents":250}],"totalCents":500}' \
		"$1" "$1" "$2"
}
# ---- POST /orders, GET /orders/{id} ---------------------------------------
req -X POST "$U/orders" -H 'Content-Type: application/json' -d "$(order h-1 DE)"
is "$status" 202 "POST /orders: 202"
mid=$(printf '%s' "$body" | json 'd["MessageId"]' 2>/dev/null)
ok $([ -n "$mid" ]; echo $?) "with a MessageId ($mid)"
req -X POST "$U/orders" -H 'Content-Type: application/json' -d "$(order h-2 JP)"
is "$status" 202 "POST /orders to JP: 202"
for _ in $(seq 1 100); do
	req "$U/orders/h-1"
	[ "$(printf '%s' "$body" | json 'd.get("shipped")' 2>/dev/null)" = True ] && break
	sleep 0.1
done
is "$status" 200 "GET /orders/h-1: 200"
is "$(printf '%s' "$body" | json 'd["order"]["orderId"], d["order"]["country"], d["order"]["totalCents"]')" \
	"('h-1', 'DE', '500')" "the order placed over HTTP, read from orders' state"
is "$(printf '%s' "$body" | json 'd.get("shipped"), d.get("label", "")[:7]')" "(True, 'EVM-DE-')" \
	"shipped, with shipping's label" || diag "$(tail -n 3 "$tmp"/*.log)"
for _ in $(seq 1 50); do req "$U/orders/h-2"; [ "$status" = 200 ] && break; sleep 0.1; done
is "$status" 200 "GET /orders/h-2: 200"
is "$(printf '%s' "$body" | json '(d["order"]["country"], "shipped" in d)')" "('JP', False)" \
	"the order to JP is not shipped (filtered out before shipping)"
req "$U/orders/nope"
error 404 "no order 'nope'" "an unknown order"
req "$U/orders/a%20b"
error 400 "id: an order id is" "an id that is not one"
req -X POST "$U/orders" -d '{"orderId":"h-3","items":[{"quantity":"many"}]}'
error 400 'field \"items[0].quantity\": expected an integer' "a malformed body, naming the field"
req -X POST "$U/orders" -d '{"orderId":'
error 400 "as JSON" "a body that is not JSON"
is "$(m queue info place-order --json | json 'd["Attributes"]["ApproximateNumberOfMessages"]')" 0 \
	"neither refused body reached place-order"

# ---- idempotent retries of a command ---------------------------------------
cancels() { m state get orders cancel/h-1 2>/dev/null || echo none; }
req -X POST "$U/orders/h-1/cancel" -H 'Idempotency-Key: c-1'
is "$status" 200 "POST /orders/h-1/cancel: 200"
is "$body" '{"orderId":"h-1","cancellations":1}' "it ran: one cancellation"
is "$(hdr idempotent-replayed)" "" "not a replay"
first=$body
req -X POST "$U/orders/h-1/cancel" -H 'Idempotency-Key: c-1'
is "$status" 200 "the same again with the same Idempotency-Key: 200"
is "$body" "$first" "the recorded answer"
is "$(hdr idempotent-replayed)" "true" "marked replayed"
has "$(cancels)" "1" "and not run again (cancel/h-1 is 1)"
req -X POST "$U/orders/h-1/cancel" -H 'Idempotency-Key: c-2'
is "$body" '{"orderId":"h-1","cancellations":2}' "another key runs again"
is "$(hdr idempotent-replayed)" "" "not a replay"
req -X POST "$U/orders/h-2/cancel" -H 'Idempotency-Key: c-1'
error 422 "Idempotency-Key 'c-1' was used with another request" "the first key on another order: refused"
req -X POST "$U/orders/nope/cancel" -H 'Idempotency-Key: c-3'
error 404 "no order 'nope'" "cancelling an unknown order"
has "$(cancels)" "2" "cancel/h-1 is 2"

# ---- an instance killed mid request ----------------------------------------
if command -v node >/dev/null; then
	node "$here/shop_http_load.mjs" "$U" stream 5000 h-1:true h-2:false >"$tmp/stream.json" &
	loader=$!
	sleep 1.5
	kill -9 "$orders1"
	wait "$loader"
	ok $? "16 clients read orders for 5 s, one instance of orders killed after 1.5 s"
	load=$(cat "$tmp/stream.json")
	diag "$load"
	is "$(printf '%s' "$load" | json 'd["wrong"]')" 0 "no answer was wrong"
	ok $(printf '%s' "$load" | json 'int(d["right"] > 100)' | grep -q 1; echo $?) \
		"most were right ($(printf '%s' "$load" | json 'd["right"]') of $(printf '%s' "$load" | json 'd["total"]'))"
	is "$(printf '%s' "$load" | json 'sorted(set(d["errors"]) - {"502", "503", "504"})')" "[]" \
		"the others were 502, 503 or 504 with a JSON message"
	load=$(node "$here/shop_http_load.mjs" "$U" all 100 h-1:true h-2:false)
	is "$(printf '%s' "$load" | json 'd["right"]')" 100 "afterwards 100 requests at once: all right" ||
		diag "$load"
else
	ok 1 "node is not installed (deploy/bootstrap installs nodejs)"
fi
kill -TERM "$gw"
wait "$gw"
is $? 0 "SIGTERM: the gateway exits 0"
done_testing
