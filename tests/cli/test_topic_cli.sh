#!/usr/bin/env bash
# meshctl topic and subscription against a real broker: the AWS CLI's JSON
# shapes, exit codes and bad input (nothing half-made), publishing JSON
# encoded as protobuf, a MessageBody policy on a protobuf payload, --json
# anywhere on the line, and topic tail beside the subscriptions.
# Usage: test_topic_cli.sh MESHCTL MESH-ROUTER TEST-BROKER
set -u
MESHCTL=$1
ROUTER=$2
TEST_BROKER=$3
. "$(dirname "$0")/tap.sh"
unset NATS_URL NATS_USER NATS_PASSWORD NATS_TOKEN NATS_NKEY NATS_CREDS
scratch
start_broker || { echo "Bail out! no broker"; exit 1; }
export NATS_URL=$BROKER_URL
m() { "$MESHCTL" "$@"; }
field() { python3 -c 'import json,sys; d=json.load(sys.stdin)
for k in sys.argv[1].split("."): d=d[int(k)] if k.isdigit() else d[k]
print(d)' "$1"; }

out=$(m topic create orders --json); ok $? "topic create exits 0"
is "$(printf '%s' "$out" | field TopicArn)" orders "create-topic shape: TopicArn"
m topic create orders >/dev/null; ok $? "creating it again is fine (idempotent)"
out=$(m topic create orders --archive-days 3 2>&1); is $? 1 "again with other attributes exits 1"
has "$out" "other attributes" "and says why"
out=$(m topic create 'bad name' 2>&1); is $? 2 "a bad name exits 2"
has "$out" "bad name" "and names it"
m topic create events.fifo --content-based-dedup >/dev/null; ok $? "a FIFO topic"

# Replicas (issue 13) on one server.
is "$(m topic info orders --json | field Attributes.Replicas)" "1" "one server: Replicas 1 by default"
out=$(m topic create r3 --replicas 3 2>&1); [ $? -ne 0 ]; ok $? "topic create --replicas 3 on one server fails"
has "$out" "Replicas 3 is more than the 1 NATS server" "naming the value and the servers there are"
m topic info r3 >/dev/null 2>&1; is $? 1 "and no topic is made"
out=$(m topic create r3 --replicas 6 2>&1); is $? 2 "--replicas 6 is a usage error"
has "$out" "--replicas '6'" "naming the value"
out=$(m topic set-attributes orders --replicas 2 2>&1); is $? 1 "topic set-attributes --replicas 2 on one server fails"
has "$out" "Replicas 2" "naming the value"
out=$(m topic set-attributes orders 2>&1); is $? 2 "set-attributes without --replicas is a usage error"
m topic set-attributes orders --replicas 1 >/dev/null; ok $? "set-attributes to the count it has is fine"
out=$(m topic list --json)
is "$(printf '%s' "$out" | python3 -c 'import json,sys; print(",".join(sorted(t["TopicArn"] for t in json.load(sys.stdin)["Topics"])))')" \
	"events.fifo,orders" "list-topics shape: Topics[].TopicArn"
out=$(m topic info events.fifo --json)
is "$(printf '%s' "$out" | field Attributes.FifoTopic)" true "get-topic-attributes shape: Attributes.FifoTopic"

m queue create shipping >/dev/null
m queue create all-orders >/dev/null
out=$(m topic subscribe orders --queue shipping --raw --scope MessageBody 2>&1)
is $? 2 "an unknown option exits 2"
out=$(m topic subscribe orders --queue shipping --raw --filter-scope MessageBody \
	--filter-policy '{"country": ["DE"], "totalCents": [{"numeric": [">=", 100]}]}' --json)
ok $? "subscribe with a MessageBody policy"
sub=$(printf '%s' "$out" | field SubscriptionArn)
case "$sub" in orders:*) true ;; *) false ;; esac; ok $? "subscribe shape: SubscriptionArn ($sub)"
m topic subscribe orders --queue all-orders --raw >/dev/null
out=$(m topic subscribe orders --queue nowhere 2>&1); is $? 1 "an unknown queue exits 1"
has "$out" "nowhere" "and names it"
out=$(m topic subscribe nope --queue shipping 2>&1); is $? 1 "an unknown topic exits 1"
out=$(m topic subscribe orders --queue all-orders --filter-policy '{"a": "b"}' 2>&1)
is $? 2 "an invalid policy exits 2"
has "$out" "FilterPolicy" "with SNS's words"
m queue create f.fifo >/dev/null
out=$(m topic subscribe events.fifo --queue shipping 2>&1); is $? 2 "FIFO topic to a standard queue exits 2"
has "$out" "FIFO" "and says why"
out=$(m subscription list --topic orders --json)
is "$(printf '%s' "$out" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["Subscriptions"]))')" 2 \
	"list-subscriptions: the two, nothing half-made"
out=$(m subscription info "$sub" --json)
is "$(printf '%s' "$out" | field Attributes.FilterPolicyScope)" MessageBody "get-subscription-attributes shape"

"$ROUTER" --stats 0 2>>"$tmp/router.log" &
pids+=($!)
sleep 0.3
m topic publish orders --type evmesh.shop.OrderPlaced \
	--data '{"orderId": "o-1", "country": "DE", "totalCents": "250"}' >/dev/null
ok $? "publish JSON as an OrderPlaced"
m topic publish orders --type evmesh.shop.OrderPlaced \
	--data '{"orderId": "o-2", "country": "FR", "totalCents": "250"}' >/dev/null
out=$(m topic publish orders --type evmesh.shop.OrderPlaced \
	--data '{"orderId": "o-3", "country": "DE", "totalCents": "50"}' --output json)
ok $? "publish with --output json"
printf '%s' "$out" | field MessageId >/dev/null; ok $? "publish shape: MessageId"
out=$(m topic publish orders --type evmesh.shop.OrderPlaced --data '{"nope": 1}' 2>&1)
is $? 2 "JSON that is not the type exits 2"
has "$out" "nope" "and names the field"
out=$(m topic publish nope --body x 2>&1); is $? 1 "publishing to an unknown topic exits 1"
big=$(head -c 270000 /dev/zero | tr '\0' x)
printf '%s' "$big" >"$tmp/big"
out=$(m topic publish orders --body-file "$tmp/big" 2>&1); is $? 1 "an oversized message exits 1"
has "$out" "262144" "and names the limit"
for _ in $(seq 1 50); do
	n=$(m queue info all-orders --json | field Attributes.ApproximateNumberOfMessages)
	[ "$n" -ge 3 ] && break
	sleep 0.1
done
is "$n" 3 "the unfiltered queue got all 3"
n=$(m queue info shipping --json | field Attributes.ApproximateNumberOfMessages)
is "$n" 1 "the MessageBody policy on the protobuf payload passed 1 (DE and >= 100)"

m subscription set-attributes "$sub" --no-filter-policy; ok $? "set-attributes drops the policy"
m topic publish orders --type evmesh.shop.OrderPlaced \
	--data '{"orderId": "o-4", "country": "US", "totalCents": "1"}' >/dev/null
for _ in $(seq 1 50); do
	n=$(m queue info shipping --json | field Attributes.ApproximateNumberOfMessages)
	[ "$n" -ge 2 ] && break
	sleep 0.1
done
is "$n" 2 "and the next message passes at once"
# --json is the output switch wherever it stands; --data is the payload.
for line in "--json topic publish orders" "topic --json publish orders" "topic publish --json orders" "topic publish orders"; do
	# shellcheck disable=SC2086
	out=$(m $line --type evmesh.shop.OrderPlaced --data '{"orderId": "o-0", "country": "PL"}' \
		$([ "$line" = "topic publish orders" ] && echo --json)); r=$?
	is "$r" 0 "meshctl ${line}${line:+ }... --data OBJ: exit 0"
	[ ${#out} -gt 0 ] && [ "$(printf '%s' "$out" | field MessageId | wc -c)" -eq 37 ]
	ok $? "and prints {\"MessageId\": ...}"
done
out=$(printf '{"orderId": "o-0", "country": "PL"}' |
	m topic publish orders --type evmesh.shop.OrderPlaced --data-file - --json)
ok $? "--data-file - reads the payload from stdin"
printf '%s' "$out" | field MessageId >/dev/null; ok $? "and publishes it"
out=$(m topic publish orders --data '{}' 2>&1); is $? 2 "--data without --type exits 2"
has "$out" "--data needs --type T" "and says what is missing"
out=$(m topic publish orders --body x --data '{}' --type evmesh.shop.OrderPlaced 2>&1)
is $? 2 "--body and --data together exit 2"
out=$(m topic publish orders --type evmesh.shop.OrderPlaced --json '{"orderId": "o-0"}' 2>&1)
is $? 2 "--json OBJ is no payload any more: exit 2"
has "$out" "unexpected argument '{\"orderId\": \"o-0\"}'" "and names the stray value"
out=$(m subscription delete "$sub" 2>&1 </dev/null); is $? 2 "subscription delete without --yes and without a terminal exits 2"
has "$out" "would delete subscription $sub (topic orders to sqs shipping" "and says what it would delete"
m subscription info "$sub" >/dev/null; ok $? "and deletes nothing"
out=$(on_tty n "$MESHCTL" subscription delete "$sub" 2>&1); is $? 1 "on a terminal, answering n exits 1"
has "$out" "delete subscription $sub (topic orders to sqs shipping, 0 messages pending)? [y/N]" "after asking"
m subscription info "$sub" >/dev/null; ok $? "and deletes nothing"
out=$(on_tty y "$MESHCTL" subscription delete "$sub" 2>&1); ok $? "answering y unsubscribes"
has "$out" "deleted subscription $sub" "and says so"
out=$(m subscription delete "$sub" --yes 2>&1); is $? 1 "unsubscribing again exits 1"
out=$(m subscription info bad-id 2>&1); is $? 2 "a malformed id exits 2"
out=$(m topic publish-batch orders --entries '[{"Id":"a","Message":"one"},{"Id":"a","Message":"two"}]' 2>&1)
is $? 2 "a batch with repeated ids exits 2"
out=$(m topic publish-batch orders --entries '[{"Id":"a","Message":"one"},{"Id":"b","Message":"two"}]' --json)
ok $? "publish-batch"
is "$(printf '%s' "$out" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["Successful"]))')" 2 \
	"publish-batch shape: Successful"
# topic tail: follows a topic live and takes nothing from its
# subscriptions (an ephemeral AckNone consumer on an interest stream).
qn() { m queue info "$1" --json | field Attributes.ApproximateNumberOfMessages; }
following() { # FILE: wait until the tail writing its stderr to FILE runs
	for _ in $(seq 1 100); do grep -q following "$1" 2>/dev/null && return; sleep 0.05; done
}
# A subscription of its own, made now: it gets exactly what comes next.
m queue create tail-q >/dev/null
m topic subscribe orders --queue tail-q --raw >/dev/null
m topic tail orders --json --count 3 >"$tmp/tail.out" 2>"$tmp/tail.err" &
tailpid=$!
following "$tmp/tail.err"
has "$(cat "$tmp/tail.err")" "following topic orders (Ctrl-C to stop)" "tail says on stderr what it follows"
is "$(m topic info orders --json | field Attributes.SubscriptionsConfirmed)" 2 "a running tail is no subscription (topic info)"
m topic publish orders --type evmesh.shop.OrderPlaced --data '{"orderId": "t-1", "country": "DE"}' --attr k=String:v >/dev/null
m topic publish orders --body t-2 >/dev/null
m topic publish orders --body t-3 --subject hello >/dev/null
timeout 10 tail --pid=$tailpid -f /dev/null || kill -9 $tailpid
wait $tailpid; is $? 0 "tail --count 3 exits 0 after 3 messages"
is "$(wc -l <"$tmp/tail.out")" 3 "--json: one object a line"
is "$(head -1 "$tmp/tail.out" | field BodyJson.orderId)" t-1 "a protobuf payload as BodyJson"
is "$(head -1 "$tmp/tail.out" | field MessageAttributes.k.StringValue)" v "with its MessageAttributes"
is "$(sed -n 3p "$tmp/tail.out" | field Subject) $(sed -n 3p "$tmp/tail.out" | field Body)" "hello t-3" "Subject and a text Body"
for _ in $(seq 1 50); do
	[ "$(qn tail-q)" -ge 3 ] && break
	sleep 0.1
done
is "$(qn tail-q)" 3 "the subscribed queue still got all 3"

# A topic nobody subscribes to: the tail sees each message, and the
# topic keeps none for it.
m topic create lonely >/dev/null
m topic tail lonely --count 2 >"$tmp/lonely.out" 2>"$tmp/lonely.err" &
tailpid=$!
following "$tmp/lonely.err"
m topic publish lonely --body one >/dev/null
m topic publish lonely --body two >/dev/null
timeout 10 tail --pid=$tailpid -f /dev/null || kill -9 $tailpid
wait $tailpid
has "$(cat "$tmp/lonely.out")" "Body           two" "text: a block a message"
for _ in $(seq 1 50); do
	[ "$(m topic info lonely --json | field Attributes.MessagesStored)" = 0 ] && break
	sleep 0.1
done
is "$(m topic info lonely --json | field Attributes.MessagesStored)" 0 "what the tail has seen is not kept for it"
# Ctrl-C stops it, exit 0 (an asynchronous job would ignore SIGINT).
( trap - INT; exec "$MESHCTL" topic tail lonely --json ) >"$tmp/int.out" 2>"$tmp/int.err" &
tailpid=$!
following "$tmp/int.err"
m topic publish lonely --body three >/dev/null
for _ in $(seq 1 100); do [ -s "$tmp/int.out" ] && break; sleep 0.05; done
kill -INT $tailpid
timeout 10 tail --pid=$tailpid -f /dev/null || kill -9 $tailpid
wait $tailpid; is $? 0 "Ctrl-C ends tail, exit 0"
is "$(field Body <"$tmp/int.out")" three "after printing what it saw"
m topic create arch --archive-days 1 >/dev/null
m topic publish arch --body old >/dev/null
out=$(m topic tail arch --since 1h --count 1 --json 2>/dev/null); ok $? "--since 1h on an archived topic"
is "$(printf '%s' "$out" | field Body)" old "starts with the archive"
m topic tail arch >/dev/null 2>"$tmp/arch.err" &
tailpid=$!
following "$tmp/arch.err"
m topic delete arch --yes >/dev/null
timeout 10 tail --pid=$tailpid -f /dev/null || kill -9 $tailpid
wait $tailpid; is $? 1 "a topic deleted while followed ends the tail, exit 1"
has "$(cat "$tmp/arch.err")" "topic 'arch': deleted while followed" "and says so"
out=$(m topic tail nope 2>&1); is $? 1 "tail of an unknown topic exits 1"
has "$out" "topic 'nope'" "and names it"
out=$(m topic tail lonely --since soon 2>&1); is $? 2 "a bad --since exits 2"
has "$out" "--since 'soon'" "and names the value"
out=$(m topic delete orders 2>&1 </dev/null); is $? 2 "topic delete without --yes and without a terminal exits 2"
has "$out" "would delete topic 'orders', its " "and says what it would delete"
has "$out" "and its 2 subscriptions: give --yes" "and what to do"
m topic info orders >/dev/null; ok $? "and deletes nothing"
out=$(on_tty no "$MESHCTL" topic delete orders 2>&1); is $? 1 "on a terminal, answering no exits 1"
m topic info orders >/dev/null; ok $? "and deletes nothing"
out=$(m topic delete orders --yes); ok $? "topic delete --yes"
is "$out" "deleted topic orders" "and says what it deleted"
out=$(m subscription list --topic orders --json)
is "$(printf '%s' "$out" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["Subscriptions"]))')" 0 \
	"its subscriptions went with it"

# --stdin: a message a line, pipelined.
m topic create lines --archive-days 1 >/dev/null
out=$(seq 1 300 | m topic publish lines --stdin 2>err); ok $? "topic publish --stdin"
has "$(cat err)" "300 sent, 0 failed" "every line published"
is "$(m topic info lines --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["Attributes"]["MessagesStored"])')" 300 \
	"the archive holds the 300"
out=$(echo x | m topic publish lines --stdin --subject s 2>&1); is $? 2 "--stdin with --subject is a usage error"
done_testing
