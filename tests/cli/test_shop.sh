#!/usr/bin/env bash
# The shop end to end through real processes: a broker of its own, the
# topics and queues made with meshctl, orders, shipping and notifications
# started as programs, 100 orders placed with meshctl (5 of every 7 to a
# shippable country); then each service's state: shipped = shippable,
# notified = shipped, nothing for the filtered ones; an order placed again
# is not shipped again; a conflicting or malformed one is dead-lettered; a
# summary firing writes a summary; commands outside the limits (one over
# each, negative, overflowing int64) are dead-lettered with their reasons
# and change nothing, the largest valid one is placed with its exact total;
# SIGTERM stops each service with 0.
# Args: meshctl test-broker orders shipping notifications shop-report
set -u
. "$(dirname "$0")/tap.sh"
meshctl=$1 TEST_BROKER=$2 orders=$3 shipping=$4 notifications=$5 report=$6
start_broker || { echo "Bail out! no broker"; exit 1; }
dir=$(mktemp -d)
pids=()
stop_all() {
	[ ${#pids[@]} -eq 0 ] || { kill "${pids[@]}"; wait "${pids[@]}"; } 2>/dev/null
	rm -rf "$dir"
}
trap stop_all EXIT
m() { "$meshctl" --server "$BROKER_URL" "$@"; }

for t in orders shipments; do m topic create $t >/dev/null; done
for q in place-order orders-summary; do m queue create $q >/dev/null; done
for s in "$orders" "$shipping" "$notifications"; do
	name=$(basename "$s")
	"$s" --server "$BROKER_URL" --state "$dir/$name" 2>"$dir/$name.log" &
	pids+=($!)
done
# Subscribing a service is starting it: wait for its subscriptions.
for _ in $(seq 1 100); do
	subs=$(m subscription list)
	case "$subs" in *shipping*) case "$subs" in *notifications*) break ;; esac ;; esac
	sleep 0.1
done
has "$subs" 'service  shipping' "shipping subscribed itself to orders"
has "$subs" '{"country":["DE","FR","NL","US","GB"]}' "with its filter policy"
has "$subs" 'service  notifications' "notifications to shipments"

countries=(DE FR NL US GB JP BR)
order() { # order ID COUNTRY [QUANTITY]
	local q=${3:-2}
	printf '{"orderId":"%s","customer":"c-%s","country":"%s","items":[{"sku":"sku-1","quantity":%d,"priceCents":250}],"totalCents":%d}' \
		"$1" "$1" "$2" "$q" $((q * 250))
}
place() { m queue send place-order --type evmesh.shop.PlaceOrder --data "$1" >/dev/null; }
failed=0
for i in $(seq 1 100); do
	place "$(order t-$i ${countries[$(((i - 1) % 7))]})" || failed=$((failed + 1))
done
is "$failed" 0 "100 orders placed with meshctl"
out=$("$report" --state "$dir" --prefix t- --expect 100 --wait 60)
ok $? "every order got through"
is "$out" "orders: 100 placed, 72 shipped, 72 notified, 28 filtered, duplicates 0, lost 0" \
	"72 shipped and notified, 28 filtered out, none doubled or lost"

place "$(order t-1 DE)"
for _ in $(seq 1 100); do
	out=$("$report" --state "$dir" --prefix t- --verbose)
	case "$out" in *" 1 repeats"*) break ;; esac
	sleep 0.1
done
has "$out" " 1 repeats" "an order placed again (a new event id) is counted"
sleep 1
out=$("$report" --state "$dir" --prefix t- | head -n 1)
is "$out" "orders: 100 placed, 72 shipped, 72 notified, 28 filtered, duplicates 0, lost 0" \
	"and not shipped or notified again"

place "$(order t-2 FR 3)"            # the id of another order
place '{"orderId":"t-bad","customer":"x","country":"DE","items":[],"totalCents":5}'
for _ in $(seq 1 100); do
	n=$(m queue info orders-dlq --json 2>/dev/null | python3 -c \
		'import json,sys; print(json.load(sys.stdin)["Attributes"]["ApproximateNumberOfMessages"])' 2>/dev/null)
	[ "${n:-0}" -ge 2 ] && break
	sleep 0.1
done
is "${n:-0}" 2 "a conflicting and a malformed order are dead-lettered"
out=$(m queue receive orders-dlq --max 10 2>&1)
has "$out" "order_id: used by another order" "with the reason"
has "$out" "items: none" "each"

m queue send orders-summary --type evmesh.shop.OrderSummary --data '{}' >/dev/null
for _ in $(seq 1 100); do
	out=$("$report" --state "$dir" --verbose)
	case "$out" in *" 1 summaries"*) break ;; esac
	sleep 0.1
done
has "$out" " 1 summaries" "a summary firing writes a summary"
has "$(cat "$dir/orders.log")" "summary: 100 orders, 500.00 in all" "and logs it"
has "$(cat "$dir/notifications.log")" "your order t-1 is on its way" \
	"notifications logs what it sends"

# The limits (services/shop/shop.h, schemas/shop.proto). lines N Q P: N
# items of Q x P cents; command ID TOTAL ITEMS: a PlaceOrder to DE.
lines() {
	local i out=
	for ((i = 0; i < $1; i++)); do
		out+="${out:+,}{\"sku\":\"s$i\",\"quantity\":$2,\"priceCents\":\"$3\"}"
	done
	printf '%s' "$out"
}
command() {
	printf '{"orderId":"%s","customer":"c","country":"DE","items":[%s],"totalCents":"%s"}' "$1" "$3" "$2"
}
# 100 lines: 100000000 + 10000 x 9989999 + 97 x 101 + 202 = 99999999999
largest="$(lines 1 1 100000000),$(lines 1 10000 9989999),$(lines 97 1 101)"
dlq_count() { # received ones too (the two above are in flight)
	m queue info orders-dlq --json 2>/dev/null | python3 -c '
import json, sys
a = json.load(sys.stdin)["Attributes"]
print(int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"]))' 2>/dev/null
}
before=$(m state scan orders --state "$dir/orders")
bad=(
	"x-lines|101|$(lines 101 1 1)|items: more than 100 lines"
	"x-qty|10001|$(lines 1 10001 1)|items: a quantity not in 1-10000"
	"x-negq|-250|$(lines 1 -1 250)|items: a quantity not in 1-10000"
	"x-price|100000001|$(lines 1 1 100000001)|items: a price_cents not in 0-100000000"
	"x-negp|-1|$(lines 1 1 -1)|items: a price_cents not in 0-100000000"
	"x-total|100000000000|$largest,$(lines 1 1 203)|total_cents: the items' sum is over 99999999999"
	"x-overflow|-9223372036854775808|$(lines 1 4 2305843009213693952)|items: a price_cents not in 0-100000000"
)
for b in "${bad[@]}"; do
	IFS='|' read -r id total items _ <<<"$b"
	place "$(command "$id" "$total" "$items")" || echo "# $id: not sent"
done
for _ in $(seq 1 100); do
	n=$(dlq_count)
	[ "${n:-0}" -ge 9 ] && break
	sleep 0.1
done
is "${n:-0}" 9 "7 commands outside the limits are dead-lettered"
out=$(m queue peek orders-dlq --max 20 --json)
for b in "${bad[@]}"; do
	IFS='|' read -r id _ _ why <<<"$b"
	reason=$(printf '%s' "$out" | python3 -c '
import base64, json, sys
id = sys.argv[1].encode()
for msg in json.load(sys.stdin)["Messages"]:
    # The body is the PlaceOrder; its field 1, order_id, leads. The
    # reason: a queue attribute (a message attribute, once).
    if base64.b64decode(msg["Body"]).startswith(b"\n" + bytes([len(id)]) + id):
        print(msg.get("Attributes", {}).get("DeadLetterReason") or
              msg.get("MessageAttributes", {}).get("DeadLetterReason", {})
              .get("StringValue", ""))' "$id" 2>&1)
	is "$reason" "$why" "$id: dead-lettered with its reason"
done
after=$(m state scan orders --state "$dir/orders")
ok $([ -n "$before" ] && [ "$before" = "$after" ]; echo $?) \
	"and orders' state is as it was, key for key"

place "$(command x-max 99999999999 "$largest,$(lines 1 1 202)")"
out=$("$report" --state "$dir" --prefix x- --expect 1 --wait 30)
is "$out" "orders: 1 placed, 1 shipped, 1 notified, 0 filtered, duplicates 0, lost 0" \
	"the largest valid order (100 lines, the highest price and quantity) is placed and shipped"
has "$(cat "$dir/orders.log")" "order x-max placed: DE, 999999999.99" \
	"with its total, 999999999.99, exact"

names=(orders shipping notifications)
for i in 0 1 2; do
	kill -TERM "${pids[$i]}"
	wait "${pids[$i]}"
	ok $? "${names[$i]} stops with 0 on SIGTERM"
done
out=$("$report" --state "$dir" --prefix t- --verbose)
has "$out" "outbox records 0, 0, 0" "and leaves no outbox behind"
pids=()
out=$("$shipping" --help); ok $? "shipping --help exits 0"
has "$out" "--countries LIST" "and names its own option"
"$shipping" --countries 'DE,X1' 2>/dev/null; is $? 2 "a malformed country list is a usage error"
# The runtime's own flags: each bad value a usage error naming it.
for bad in "--batch 0" "--batch 257" "--window -1" "--inflight 65" \
	"--max-receive x" "--horizon 59" "--map-mb 0" "--map-mb 2097152"; do
	out=$("$orders" $bad 2>&1); rc=$?
	is $rc 2 "orders $bad: exit 2"
	has "$out" "${bad%% *} '${bad#* }': must be a number" "... naming the flag and value"
done
out=$(MESH_MAP_MB=12x "$orders" 2>&1); is $? 2 "a bad \$MESH_MAP_MB: exit 2"
has "$out" "'12x'" "... naming the value"
out=$("$orders" --no-such-flag 2>&1); is $? 2 "an unknown flag: exit 2"
out=$("$orders" extra 2>&1); is $? 2 "an argument: exit 2"
has "$out" "unexpected argument 'extra'" "... saying so"
out=$("$orders" --help); ok $? "orders --help exits 0"
has "$out" "--map-mb N" "and lists --map-mb"
done_testing
