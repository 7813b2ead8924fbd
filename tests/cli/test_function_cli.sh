#!/usr/bin/env bash
# meshctl function ...: definitions of services run on demand, learned from
# the program's --prepare; each bad definition refused with its message and
# nothing stored; info without a supervisor says so. Also the service
# programs' --describe and --prepare.
# Usage: test_function_cli.sh MESHCTL TEST-BROKER ORDERS SHIPPING
set -u
MESHCTL=$1
TEST_BROKER=$2
ORDERS=$3
SHIPPING=$4
. "$(dirname "$0")/tap.sh"
unset NATS_URL NATS_USER NATS_PASSWORD NATS_TOKEN NATS_NKEY NATS_CREDS

start_broker || { echo "Bail out! no broker"; exit 1; }
scratch
export NATS_URL=$BROKER_URL
m() { "$MESHCTL" "$@"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }
# nothing_stored: `function list --json` shows no function.
nothing_stored() {
	is "$(m function list --json | json 'len(d["functions"])')" 0 "$1: nothing stored"
}

# --describe needs no broker; --prepare makes what a start makes.
out=$(NATS_URL=nats://127.0.0.1:1 "$SHIPPING" --describe); ok $? "shipping --describe exits 0 without a broker"
is "$(printf '%s' "$out" | json 'd["sources"][0]["kind"] + ":" + d["sources"][0]["name"]')" "topic:orders" \
	"and names its topic"
has "$out" '"filter_policy":{"country"' "with its filter policy"
is "$(printf '%s' "$out" | json 'd["partitions"]')" 0 "not partitioned"
is "$("$ORDERS" --describe --partitions 4 | json 'd["partitions"]')" 4 "--describe --partitions 4: partitions 4"
out=$("$SHIPPING" --prepare 2>/dev/null); is $? 1 "shipping --prepare before its topic exists exits 1"
has "$out" "topic 'orders': does not exist" "naming the topic"
has "$out" '"code":"MESH_ENOTFOUND"' "with the code"
m topic create orders >/dev/null
out=$("$SHIPPING" --prepare); ok $? "shipping --prepare once the topic exists exits 0"
has "$out" '"sources":["subscription:orders:' "printing its subscription"
has "$(m subscription list --topic orders 2>&1)" "shipping" "which is made"
has "$(m queue list)" "shipping-dlq" "and so is its dead-letter queue"

# Refusals: each named, nothing stored.
out=$(m function create orders --program "$ORDERS" 2>&1); is $? 1 "orders before its queue exists is refused, exit 1"
has "$out" "queue 'place-order': does not exist (an unknown source)" "naming the queue"
nothing_stored "unknown source"
out=$(m function create f --program "$tmp/none" 2>&1); is $? 2 "a missing program is refused, exit 2"
has "$out" "program '$tmp/none': No such file or directory" "naming it"
nothing_stored "missing program"
printf '#!/bin/sh\n' >"$tmp/plain"; chmod 644 "$tmp/plain"
out=$(m function create f --program "$tmp/plain" 2>&1); is $? 2 "a file that is not executable is refused"
has "$out" "program '$tmp/plain': not an executable file" "naming it"
nothing_stored "not executable"
out=$(m function create f --program "$ORDERS" --min 5 --max 2 2>&1); is $? 2 "--min 5 --max 2 is refused"
has "$out" "min 5 is more than max 2" "naming both"
nothing_stored "min > max"
for bad in "--max 0" "--max 65" "--idle 0"; do
	# shellcheck disable=SC2086
	out=$(m function create f --program "$ORDERS" $bad 2>&1); is $? 2 "$bad is refused"
	has "$out" "${bad% *} '${bad#* }'" "naming the value"
done
nothing_stored "values out of range"
out=$(m function create f --program /bin/true 2>&1); is $? 1 "/bin/true (not a service) is refused"
has "$out" "/bin/true is not an evmesh service: its --prepare printed nothing" "saying so"
nothing_stored "not a service"
printf '#!/bin/sh\necho "{\\"x\\":1}"\n' >"$tmp/liar"; chmod 755 "$tmp/liar"
out=$(m function create f --program "$tmp/liar" 2>&1); is $? 1 "a program printing other JSON is refused"
has "$out" "is not an evmesh service" "saying so"
out=$(m function create "a b" --program "$ORDERS" 2>&1); is $? 2 "a bad name is refused"
has "$out" "'a b'" "naming it"
nothing_stored "every refusal"

# A real one.
m queue create place-order >/dev/null && m queue create orders-summary >/dev/null
m topic create shipments >/dev/null
out=$(m function create orders --program "$ORDERS" --arg --batch --arg 20 --env MESH_WINDOW_MS=5 --max 3 --idle 30); ok $? "create orders exits 0"
has "$out" "queue:place-order, queue:orders-summary" "saying its sources"
has "$out" "2 request routes (requests wake it)" "and its request routes"
out=$(m function create orders --program "$ORDERS" 2>&1); is $? 1 "create orders again fails"
has "$out" "function 'orders' exists" "saying so"
out=$(m function list); ok $? "list exits 0"
has "$out" "NAME" "a table"
has "$(printf '%s' "$out" | grep '^orders')" "queue:place-order,queue:orders-summary" "orders with its sources"
is "$(printf '%s' "$out" | awk '$1=="orders"{print $2, $3, $4}')" "0 3 -" "min 0, max 3, instances - (no supervisor)"
out=$(m function list --json)
is "$(printf '%s' "$out" | json 'd["functions"][0]["instances"]')" "None" "--json: instances null"
is "$(printf '%s' "$out" | json 'd["functions"][0]["args"]')" "['--batch', '20']" "--json: its args"
out=$(m function info orders); ok $? "info exits 0 without a supervisor"
has "$out" "no supervisor runs it (none answered)" "saying none answered"
has "$out" "idle after 30 s" "and the definition"
has "$out" "MESH_WINDOW_MS=5" "its environment"
has "$out" "Routes       GET /orders/{id}" "its route, from its --prepare"
out=$(m function info orders --json); ok $? "info --json"
is "$(printf '%s' "$out" | json 'd["function"]["idle_ms"]')" 30000 "idle_ms 30000"
is "$(printf '%s' "$out" | json 'd["status"]')" None "status null"
out=$(m function update orders --max 8); ok $? "update --max 8"
is "$(m function info orders --json | json 'd["function"]["max"], d["function"]["idle_ms"], d["function"]["args"]')" \
	"(8, 30000, ['--batch', '20'])" "max 8, the rest kept"
out=$(m function update orders --min 9 2>&1); is $? 2 "update --min 9 over max 8 is refused"
is "$(m function info orders --json | json 'd["function"]["min"]')" 0 "and not stored"
out=$(m function update nothing --max 2 2>&1); is $? 1 "update of a missing function fails"
has "$out" "function 'nothing': does not exist" "saying so"
out=$(m function info nothing 2>&1); is $? 1 "info of a missing function fails"
out=$(m function delete orders); ok $? "delete exits 0"
nothing_stored "after delete"
out=$(m function delete orders 2>&1); is $? 1 "delete again fails"
has "$out" "does not exist" "saying so"
has "$(m function --help)" "create" "function --help lists its commands"
has "$(m --help)" "function" "and meshctl --help lists function"
done_testing
