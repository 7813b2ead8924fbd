#!/usr/bin/env bash
# meshctl auth init|show, and a real nats-server running the block it
# writes: the shop works with its least-privilege identities; shipping's
# identity is refused publishing to the topic orders, reading the queue
# place-order, deleting a queue and reading another service's state (each
# refusal naming the permission); the admin may do all of these.
# mesh-gateway as itself places an order over HTTP and reads one back
# (queue and service routes), and may not read state or delete a route.
# With the broker, init also reads the functions defined in MESH_FUNCTIONS
# and grants a consumed queue's redrive dead-letter queue.
# Usage: test_auth.sh MESHCTL TEST-BROKER ORDERS SHIPPING NOTIFICATIONS
#        FN-COUNTER GATEWAY
set -u
MESHCTL=$1
TEST_BROKER=$2
ORDERS=$3
SHIPPING=$4
NOTIFICATIONS=$5
FN_COUNTER=$6
GATEWAY=$7
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/http.sh"
unset NATS_URL NATS_USER NATS_PASSWORD NATS_TOKEN NATS_NKEY NATS_CREDS

scratch
auth=$tmp/auth
m() { "$MESHCTL" "$@"; }
init() {
	m auth init --dir "$auth" --service orders="$ORDERS" \
		--service shipping="$SHIPPING" \
		--service notifications="$NOTIFICATIONS" "$@"
}

# ---- the files ----------------------------------------------------------
out=$(init --offline); ok $? "auth init --offline exits 0"
has "$out" "8 identities" "eight identities: the admin, four daemons, three services"
for n in admin mesh-router mesh-scheduler mesh-supervisor mesh-gateway orders shipping notifications; do
	is "$(stat -c %a "$auth/$n.nk")" 600 "$n.nk is mode 0600"
done
pub=$(m auth show shipping --dir "$auth" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["public"])')
init --offline >/dev/null
is "$(m auth show shipping --dir "$auth" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["public"])')" \
	"$pub" "init again keeps the seeds"
out=$(m auth init --dir "$auth" --offline); ok $? "init without --service keeps the services known"
has "$out" "shipping" "shipping among them"
if command -v nats-server >/dev/null; then
	out=$(nats-server -t -c "$auth/authorization.conf" 2>&1); ok $? "nats-server -t accepts authorization.conf"
fi
show=$(m auth show shipping --dir "$auth"); ok $? "auth show shipping exits 0"
has "$show" "mesh.topic.shipments" "shipping may publish to shipments"
has "$show" "target topic:shipments: publishing to it" "and says why"
has "$show" '$JS.ACK.TP_orders.S_' "it acknowledges its own subscription's messages"
case "$show" in *"mesh.topic.orders "*) ok 1 "shipping may not publish to orders" ;;
*) ok 0 "shipping may not publish to orders" ;; esac
case "$show" in *"MQ_place-order"*) ok 1 "nor touch place-order" ;;
*) ok 0 "nor touch place-order" ;; esac
case "$show" in *"STREAM.DELETE"*) ok 1 "nor delete a stream" ;;
*) ok 0 "nor delete a stream" ;; esac
has "$(m auth show mesh-router --dir "$auth")" "Broad" "the router's broad grants are explained"
show=$(m auth show mesh-gateway --dir "$auth"); ok $? "auth show mesh-gateway"
has "$show" "mesh.service.*.request" "the gateway may ask any service"
has "$show" "Broad      routes target any queue, topic or service" "saying why that is broad"
case "$show" in *"MQ_"* | *"TP_"* | *'$KV.MESH_ROUTES'*) ok 1 "it may read no queue and write no route" ;;
*) ok 0 "it may read no queue and write no route" ;; esac
out=$(m auth show nobody --dir "$auth" 2>&1); is $? 1 "auth show of an unknown identity exits 1"
has "$out" "no identity 'nobody'" "naming it"
out=$(m auth init --dir "$auth" --offline --service orders="$SHIPPING" 2>&1); is $? 2 "a program that is another service is refused"
has "$out" "describes 'shipping', not the service 'orders'" "naming both"

# ---- a broker with the block -------------------------------------------
start_broker "$(cat "$auth/authorization.conf")" || { echo "Bail out! no broker"; exit 1; }
export NATS_URL=$BROKER_URL
out=$(m ping 2>&1); is $? 1 "without an identity the broker refuses"
admin() { m --nkey "$auth/admin.nk" "$@"; }
as_shipping() { m --nkey "$auth/shipping.nk" "$@"; }
out=$(admin auth init --dir "$auth"); ok $? "auth init as the admin records the keys"
has "$out" "public keys recorded in MESH_KEYS" "says so"
for t in orders shipments; do admin topic create $t >/dev/null; done
for q in place-order orders-summary; do admin queue create $q >/dev/null; done
for s in orders shipping notifications; do
	prog=$ORDERS
	[ $s = shipping ] && prog=$SHIPPING
	[ $s = notifications ] && prog=$NOTIFICATIONS
	NATS_NKEY=$auth/$s.nk "$prog" --state "$tmp/$s" 2>"$tmp/$s.log" &
	pids+=($!)
done
for _ in $(seq 1 100); do
	subs=$(admin subscription list 2>/dev/null)
	grep -q ' shipping ' <<<"$subs" && grep -q ' notifications ' <<<"$subs" &&
		grep -q ' orders ' <<<"$(admin subscription list --topic shipments 2>/dev/null)" && break
	sleep 0.1
done
admin queue send place-order --type evmesh.shop.PlaceOrder \
	--data '{"orderId":"a1","customer":"ada","country":"DE","items":[{"sku":"s","quantity":1,"priceCents":100}],"totalCents":100}' >/dev/null
for _ in $(seq 1 100); do
	admin state get notifications sent/a1 >/dev/null 2>&1 && break
	n=$(admin stats notifications --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"]["processed"])' 2>/dev/null)
	[ "${n:-0}" = 1 ] && break
	sleep 0.1
done
is "$(admin stats notifications --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"]["processed"])')" 1 \
	"an order went through orders, shipping and notifications, each with its own identity"
out=$(admin state get shipping shipment/a1); ok $? "shipping consumed its subscription and stored the shipment"
for _ in $(seq 1 50); do admin state get orders shipped/a1 >/dev/null 2>&1 && break; sleep 0.1; done
out=$(admin state get orders shipped/a1); ok $? "orders consumed shipments (its subscription) and knows a1 shipped"
# (A busy machine may answer after stats' wait: asked again, a few times.)
for _ in 1 2 3 4 5; do out=$(admin stats shipping --wait 2000) && break; done
ok $? "shipping answers its stats (its subscription and allow_responses)"
has "$(m auth show orders --dir "$auth")" "mesh.service.orders.request" \
	"orders may take its requests (it has a route)"
for s in orders shipping notifications; do
	is "$(grep -c 'Permissions Violation' "$tmp/$s.log")" 0 "$s met no refusal"
done

# ---- mesh-gateway as itself ---------------------------------------------
admin route create POST /orders --target queue:place-order --type evmesh.shop.PlaceOrder >/dev/null &&
	admin route create GET '/orders/{id}' --target service:orders >/dev/null
ok $? "the admin creates a queue route and a service route"
NATS_NKEY=$auth/mesh-gateway.nk start_gateway "$GATEWAY"
out=$(curl -s -w ' %{http_code}' -XPOST "http://127.0.0.1:$port/orders" \
	-d '{"orderId":"a2","customer":"bob","country":"FR","items":[{"sku":"s","quantity":1,"priceCents":100}],"totalCents":100}')
has "$out" '"MessageId"' "it sends a POST's order to place-order" && has "$out" " 202" "202"
out=$(curl -s -w ' %{http_code}' "http://127.0.0.1:$port/orders/a1")
has "$out" '"shipped":true' "it asks orders for a1 (its reply to the gateway's inbox)" && has "$out" " 200" "200"
for _ in $(seq 1 50); do admin state get orders order/a2 >/dev/null 2>&1 && break; sleep 0.1; done
out=$(admin state get orders order/a2); ok $? "the order sent through the gateway is placed"
is "$(grep -c 'Violation' "$tmp/gw.log")" 0 "the gateway met no refusal"
out=$(m --nkey "$auth/mesh-gateway.nk" state get orders order/a1 2>&1)
is $? 1 "the gateway's identity may not read a service's state"
has "$out" 'Permissions Violation for Publish' \
	"the error names the permission"
out=$(m --nkey "$auth/mesh-gateway.nk" route delete GET '/orders/{id}' 2>&1)
is $? 1 "nor delete a route"
has "$out" 'Permissions Violation for Publish' "the error names the permission"

# ---- shipping's identity: refused ---------------------------------------
out=$(as_shipping topic publish orders --body forged 2>&1); is $? 1 "shipping may not publish to the topic orders"
has "$out" 'Permissions Violation for Publish to "mesh.topic.orders"' "the error names the permission"
out=$(as_shipping queue receive place-order --wait 1 2>&1); is $? 1 "shipping may not read the queue place-order"
has "$out" 'Permissions Violation for Publish to "$JS.API.STREAM.INFO.MQ_place-order"' "the error names it"
out=$(as_shipping queue receive shipping-dlq --wait 1 2>&1)
is $? 1 "shipping may not take from its dead-letter queue (it only sends there)"
has "$out" 'Permissions Violation for Publish to "$JS.API.CONSUMER.MSG.NEXT.' \
	"the error names the pull refused, not 'no messages'"
out=$(as_shipping queue delete place-order --yes 2>&1); is $? 1 "shipping may not delete a queue"
has "$out" "Permissions Violation for Publish" "the error names the permission"
out=$(as_shipping state get orders order/a1 2>&1); is $? 1 "shipping may not read another service's state"
has "$out" "Permissions Violation for Publish" "the error names the permission"
has "$(admin queue list)" "place-order" "place-order is still there"

# ---- the admin: allowed --------------------------------------------------
out=$(admin state get orders order/a1); ok $? "the admin reads orders' state"
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null
admin queue send place-order --body "for the admin" >/dev/null
out=$(admin queue receive place-order --wait 2); ok $? "the admin reads place-order"
has "$out" "for the admin" "and gets the message"
out=$(admin topic publish orders --body ok); ok $? "the admin publishes to orders"
out=$(admin queue delete place-order --yes); ok $? "the admin deletes a queue"

# ---- read from the broker: functions, redrive policies -------------------
admin queue create work-a-dlq >/dev/null
admin queue create work-a --dlq work-a-dlq --max-receive 3 >/dev/null
out=$(admin function create counter-a --program "$FN_COUNTER" \
	--env FN_NAME=counter-a --env FN_QUEUE=work-a); ok $? "a function counter-a consuming work-a"
out=$(admin auth init --dir "$auth"); ok $? "auth init with the broker"
has "$out" "counter-a" "the function has an identity, read from MESH_FUNCTIONS"
show=$(m auth show counter-a --dir "$auth"); ok $? "auth show counter-a"
has "$show" '$JS.API.CONSUMER.MSG.NEXT.MQ_work-a.receivers' "it receives from work-a"
has "$show" '$JS.API.STREAM.INFO.MQ_work-a-dlq' "and may open work-a's redrive dead-letter queue"
has "$show" "source queue:work-a's redrive dead-letter queue queue:work-a-dlq" "saying why"
has "$show" 'mesh.queue.work-a-dlq' "and move poison messages into it"
case "$(m auth show shipping --dir "$auth")" in *"work-a-dlq"*) ok 1 "shipping is not granted it" ;;
*) ok 0 "shipping is not granted it" ;; esac
done_testing
