#!/usr/bin/env bash
# Schedules that fire into a topic, with a JSON body encoded as a protobuf
# message: the firings reach a queue subscribed to the topic (through
# mesh-router), each once; bad targets and bodies are refused, nothing
# stored.
# Usage: test_schedule_topic.sh MESHCTL MESH-SCHEDULER MESH-ROUTER TEST-BROKER
set -u
MESHCTL=$1
SCHEDULER=$2
ROUTER=$3
TEST_BROKER=$4
. "$(dirname "$0")/tap.sh"
unset NATS_URL NATS_USER NATS_PASSWORD NATS_TOKEN NATS_NKEY NATS_CREDS
scratch

start_broker || { echo "Bail out! no broker"; exit 1; }
export NATS_URL=$BROKER_URL
m() { "$MESHCTL" "$@"; }

m topic create alarms >/dev/null
m queue create alarms-q >/dev/null
m topic subscribe alarms --queue alarms-q --raw >/dev/null
"$ROUTER" --stats 0 2>>"$tmp/router.log" &
pids+=($!)
"$SCHEDULER" --state "$tmp/s1" --id s1 2>>"$tmp/s1.log" &
pids+=($!)
"$SCHEDULER" --state "$tmp/s2" --id s2 2>>"$tmp/s2.log" &
pids+=($!)
sleep 0.3

out=$(m schedule create alarm --expression 'rate(1 second)' \
	--target topic:alarms --type evmesh.shop.OrderSummary \
	--data '{"windowStart": "<aws.scheduler.attempt-number>", "orders": 3}' \
	--attr region=String:eu --attr level=Number:3 2>&1)
ok $? "a schedule into a topic with a JSON body is created"
sleep 3.5
json=$(m queue peek alarms-q --max 100 --json)
n=$(printf '%s' "$json" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["Messages"]))')
u=$(printf '%s' "$json" | python3 -c 'import json,sys; m=json.load(sys.stdin)["Messages"]; print(len(set(x["MessageAttributes"]["scheduledTime"]["StringValue"] for x in m)))')
[ "$n" -ge 2 ]; ok $? "two replicas fired into the topic ($n firings reached the queue)"
is "$u" "$n" "each firing once"
m queue receive alarms-q --json >"$tmp/msg.json"
ok $? "a firing can be received"
body=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["Messages"][0]["Body"])' "$tmp/msg.json")
[ -n "$body" ]; ok $? "with a body (the encoded OrderSummary)"
orders=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["Messages"][0]["BodyJson"]["orders"])' "$tmp/msg.json")
is "$orders" 3 "which receive shows as JSON (BodyJson)"
region=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["Messages"][0]["MessageAttributes"]["region"]["StringValue"])' "$tmp/msg.json")
is "$region" eu "and the schedule's attributes (--attr)"
out=$(m schedule info alarm --json)
has "$out" '"Payload": "json"' "info shows the JSON payload kind"

out=$(printf '{"orders": 4}' | m schedule update alarm --data-file - 2>&1)
ok $? "schedule update --data-file - takes the payload from stdin"
has "$(m schedule info alarm --json)" '{\"orders\": 4}' "and stores it"
out=$(m schedule update alarm --data-file "$tmp/none.json" 2>&1); is $? 1 "an unreadable --data-file exits 1"
has "$out" "cannot read '$tmp/none.json'" "and names the file"
out=$(m schedule create nowhere --expression 'rate(1 minute)' \
	--target topic:no-such-topic --body x 2>&1)
is $? 1 "an unknown topic exits 1"
has "$out" "no-such-topic" "and names it"
out=$(m schedule create badjson --expression 'rate(1 minute)' \
	--target topic:alarms --type evmesh.shop.OrderSummary \
	--data '{"orders": "many"}' 2>&1)
is $? 2 "a JSON body that is not the type exits 2"
has "$out" "orders" "and names the field"
out=$(m schedule create badtype --expression 'rate(1 minute)' \
	--target topic:alarms --type evmesh.nope.Nothing --data '{}' 2>&1)
is $? 2 "an unknown protobuf type exits 2"
has "$out" "evmesh.nope.Nothing" "and names it"
out=$(m schedule create badattr --expression 'rate(1 minute)' \
	--target topic:alarms --body x --attr level=Number:many 2>&1)
is $? 2 "an attribute that is not its type exits 2"
has "$out" "level" "and names it"
out=$(m schedule create badtarget --expression 'rate(1 minute)' \
	--target bucket:x --body x 2>&1)
is $? 2 "a target that is neither queue: nor topic: exits 2"
out=$(m schedule list)
case "$out" in *nowhere*|*badjson*|*badtype*|*badtarget*|*badattr*) false ;; *) true ;; esac
ok $? "none of the refused schedules was stored"
done_testing
