#!/usr/bin/env bash
# meshctl queue ...: the shell contract, AWS CLI JSON shapes, exit codes,
# bad input, and a redrive killed with SIGKILL and run again.
# Usage: test_queue_cli.sh MESHCTL TEST-BROKER
set -u
MESHCTL=$1
TEST_BROKER=$2
. "$(dirname "$0")/tap.sh"
unset NATS_URL NATS_USER NATS_PASSWORD NATS_TOKEN NATS_NKEY NATS_CREDS

start_broker || { echo "Bail out! no broker"; exit 1; }
export NATS_URL=$BROKER_URL
m() { "$MESHCTL" "$@"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }

out=$(m queue create jobs --visibility-timeout 5 --json); ok $? "queue create exits 0"
has "$out" '"QueueUrl"' "and prints a QueueUrl"
url=$(printf '%s' "$out" | json 'd["QueueUrl"]')
out=$(m queue info "$url" --json); ok $? "a QueueUrl names the queue too"
is "$(printf '%s' "$out" | json 'd["Attributes"]["VisibilityTimeout"]')" "5" \
	"get-queue-attributes shape: Attributes.VisibilityTimeout is \"5\""
is "$(printf '%s' "$out" | json 'd["Attributes"]["MaximumMessageSize"]')" "262144" \
	"defaults are SQS's (MaximumMessageSize 262144)"
out=$(m queue list --json); has "$out" '/queue/jobs' "list-queues shape: QueueUrls"
is "$(m queue info jobs --json | json 'd["Attributes"]["Replicas"]')" "1" \
	"one server: Replicas 1 by default"

# Replicas (issue 13): more than the servers, or out of range, refused
# with the value and the servers named; nothing is made.
out=$(m queue create r3 --replicas 3 2>&1); is $? 1 "queue create --replicas 3 on one server fails"
has "$out" "Replicas 3 is more than the 1 NATS server" "naming the value and the servers there are"
m queue info r3 >/dev/null 2>&1; is $? 1 "and no queue is made"
for v in 0 6 x; do
	out=$(m queue create r3 --replicas $v 2>&1); is $? 2 "--replicas $v is a usage error"
	has "$out" "--replicas '$v'" "naming the value"
done
out=$(m queue set-attributes jobs --replicas 2 2>&1); is $? 1 "set-attributes --replicas 2 on one server fails"
has "$out" "Replicas 2" "naming the value"
out=$(MESH_REPLICAS=7 m queue list 2>&1); is $? 1 "MESH_REPLICAS=7 is refused"
has "$out" "MESH_REPLICAS '7'" "naming it"
out=$(MESH_REPLICAS=3 m queue create r3 2>&1); is $? 1 "MESH_REPLICAS=3 on one server fails at create"
has "$out" "MESH_REPLICAS" "saying where the count came from"

# --json anywhere on the line is the output switch (issue 11).
for line in "--json queue send jobs" "queue --json send jobs" "queue send --json jobs"; do
	# shellcheck disable=SC2086
	out=$(m $line --body x); r=$?
	is "$r" 0 "meshctl $line --body x: exit 0"
	[ "$(printf '%s' "$out" | json 'len(d["MessageId"])')" = 36 ]; ok $? "and prints {\"MessageId\": ...}"
done
m queue purge jobs >/dev/null
out=$(m queue send jobs --body 'hello world' --attr color=String:red --attr n=Number:7 --json)
ok $? "send exits 0"
mid=$(printf '%s' "$out" | json 'd["MessageId"]')
[ ${#mid} -eq 36 ]; ok $? "send-message shape: a MessageId"
out=$(m queue peek jobs --json)
is "$(printf '%s' "$out" | json 'len(d["Messages"])')" "1" "peek shows the waiting message"
out=$(m queue receive jobs --json); ok $? "receive exits 0"
is "$(printf '%s' "$out" | json 'd["Messages"][0]["Body"]')" "hello world" "receive-message shape: Messages[0].Body"
is "$(printf '%s' "$out" | json 'd["Messages"][0]["MessageId"]')" "$mid" "with its MessageId"
is "$(printf '%s' "$out" | json 'd["Messages"][0]["Attributes"]["ApproximateReceiveCount"]')" "1" \
	"Attributes.ApproximateReceiveCount is \"1\" (peek did not count)"
is "$(printf '%s' "$out" | json 'd["Messages"][0]["MessageAttributes"]["n"]["DataType"]')" "Number" \
	"MessageAttributes keep their DataType"
rh=$(printf '%s' "$out" | json 'd["Messages"][0]["ReceiptHandle"]')
out=$(m queue delete-message jobs "$rh"); ok $? "delete-message with the receipt exits 0"
out=$(m queue info jobs --json)
is "$(printf '%s' "$out" | json 'd["Attributes"]["ApproximateNumberOfMessages"] + d["Attributes"]["ApproximateNumberOfMessagesNotVisible"]')" "00" \
	"and the queue is empty"

# Batches.
out=$(m queue send-batch jobs --json --entries '[{"Id":"a","MessageBody":"1"},{"Id":"b","MessageBody":"2","MessageAttributes":{"k":{"DataType":"String","StringValue":"v"}}}]')
ok $? "send-batch exits 0"
is "$(printf '%s' "$out" | json 'len(d["Successful"])')" "2" "Successful lists both"
out=$(m queue send-batch jobs --json --entries '[{"Id":"a","MessageBody":"1"},{"Id":"a","MessageBody":"2"}]' 2>&1)
is $? 1 "a batch with repeated ids exits 1"
has "$out" "'a' is repeated" "and names the id"
out=$(m queue receive jobs --max 10 --json)
is "$(printf '%s' "$out" | json 'len(d["Messages"])')" "2" "only the 2 good messages were stored"
entries=$(printf '%s' "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps([{"Id":"e%d"%i,"ReceiptHandle":m["ReceiptHandle"]} for i,m in enumerate(d["Messages"])]+[{"Id":"bad","ReceiptHandle":"nonsense"}]))')
out=$(m queue delete-message-batch jobs --json --entries "$entries" 2>&1); r=$?
is $r 1 "a delete batch with a bad receipt exits 1"
is "$(printf '%s' "$out" | json 'len(d["Successful"]), len(d["Failed"]), d["Failed"][0]["Id"]')" "(2, 1, 'bad')" \
	"with Successful and Failed per entry"

# Bad input: clear errors, non-zero exits, nothing stored.
out=$(m queue send nosuch --body x 2>&1); is $? 1 "sending to an unknown queue exits 1"
has "$out" "queue 'nosuch': does not exist" "and names the queue"
out=$(m queue create 'bad name' 2>&1); is $? 1 "an invalid name exits 1"
has "$out" "'bad name'" "and names it"
out=$(m queue create q2 --visibility-timeout 99999 2>&1); is $? 2 "an out-of-range attribute exits 2"
has "$out" "--visibility-timeout '99999'" "and names the flag and value"
out=$(m queue send jobs 2>&1); is $? 2 "send without --body exits 2"
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
head -c 262145 /dev/zero | tr '\0' x > "$tmp"
out=$(m queue send jobs --body-file "$tmp" 2>&1); is $? 1 "a body one byte over 256 KiB exits 1"
has "$out" "MaximumMessageSize" "naming the limit"
head -c 262144 /dev/zero | tr '\0' y > "$tmp"
out=$(m queue send jobs --body-file "$tmp" 2>&1); ok $? "a body of exactly 256 KiB is sent (--body-file)"
out=$(m queue receive jobs --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d["Messages"][0]["Body"]))')
is "$out" "262144" "and received whole"
m queue purge jobs >/dev/null
out=$(m queue send jobs --body x --attr 'n=Number:abc' 2>&1); is $? 1 "a bad Number attribute exits 1"
has "$out" "'abc' is not a number" "and says why"
out=$(m queue delete-message jobs 'AAAA' 2>&1); is $? 1 "a malformed receipt exits 1"
has "$out" "malformed receipt handle" "and says so"
m queue create orders.fifo >/dev/null
out=$(m queue send orders.fifo --body x --dedup-id d 2>&1); is $? 1 "a FIFO send without --group exits 1"
has "$out" "MessageGroupId is required" "and says which field"
out=$(m queue info jobs --json)
is "$(printf '%s' "$out" | json 'd["Attributes"]["ApproximateNumberOfMessages"]')" "0" \
	"none of the refused sends stored anything"

# A redrive killed with SIGKILL mid-way, then run again: nothing lost,
# nothing twice.
m queue create dlq >/dev/null
m queue create src --visibility-timeout 0 --dlq dlq --max-receive 1 >/dev/null
for b in $(seq 0 9); do
	e=$(python3 -c "import json; print(json.dumps([{'Id':'i%d'%i,'MessageBody':'msg-%d-%d'%($b,i)} for i in range(10)]))")
	m queue send-batch src --entries "$e" >/dev/null
done
for _ in $(seq 1 40); do m queue receive src --max 10 >/dev/null; done
n_dlq=$(m queue info dlq --json | json 'd["Attributes"]["ApproximateNumberOfMessages"]')
is "$n_dlq" "100" "100 messages received twice with maxReceiveCount 1 are in the DLQ"
m queue redrive dlq --rate 100 >/dev/null 2>&1 &
pid=$!
sleep 0.4
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
mid_src=$(m queue info src --json | json 'd["Attributes"]["ApproximateNumberOfMessages"]')
[ "$mid_src" -gt 0 ] && [ "$mid_src" -lt 100 ]
ok $? "the killed redrive had moved some ($mid_src)"
out=$(m queue redrive dlq 2>&1); ok $? "the redrive run again exits 0"
bodies=$(m queue peek src --max 1000 --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print("\n".join(m["Body"] for m in d["Messages"]))')
is "$(printf '%s\n' "$bodies" | sort -u | wc -l)" "100" "all 100 messages are back in src"
is "$(printf '%s\n' "$bodies" | wc -l)" "100" "each once"
is "$(m queue info dlq --json | json 'd["Attributes"]["ApproximateNumberOfMessages"]')" "0" "and the DLQ is empty"

# Readable payloads (issue 11): a protobuf body whose type the schema
# registry knows prints as its proto3 JSON mapping; --raw keeps the bytes.
m queue create shop >/dev/null
m queue send shop --type evmesh.shop.OrderPlaced \
	--data '{"orderId": "o-7", "country": "DE", "totalCents": "1250"}' >/dev/null
out=$(m queue peek shop --json)
is "$(printf '%s' "$out" | json 'json.dumps(d["Messages"][0]["BodyJson"], sort_keys=True)')" \
	'{"country": "DE", "orderId": "o-7", "totalCents": "1250"}' "--json: BodyJson is the payload's JSON mapping"
b64=$(printf '%s' "$out" | json 'd["Messages"][0]["Body"]')
printf '%s' "$b64" | base64 -d | grep -qa 'o-7'; ok $? "beside Body, the protobuf bytes in base64"
out=$(m queue peek shop)
has "$out" 'Body           {"orderId":"o-7","country":"DE","totalCents":"1250"}' "text: the Body line shows the JSON"
out=$(m queue peek shop --raw --json)
is "$(printf '%s' "$out" | json '"BodyJson" in d["Messages"][0]')" False "--raw --json: no BodyJson"
has "$(m queue receive shop --raw)" "Body           $b64" "--raw text: the bytes in base64"

# Messages from any producer that are not CloudEvents: their bytes, base64.
raw_pub mesh.queue.shop hello
out=$(m queue peek shop --json); ok $? "peek shows a message that is not a CloudEvent"
is "$(printf '%s' "$out" | json '[x["Body"] for x in d["Messages"]][-1]')" "aGVsbG8=" "its Body is its bytes in base64"
raw_pub mesh.queue.shop 'garbage!' application/cloudevents+protobuf
out=$(m queue peek shop --json); ok $? "and one that claims to be a CloudEvent and is not"
is "$(printf '%s' "$out" | json '[x["Body"] for x in d["Messages"]][-1]')" "Z2FyYmFnZSE=" "its Body is its bytes in base64"
has "$(printf '%s' "$out" | json '[x["Attributes"].get("MeshParseError", "") for x in d["Messages"]][-1]')" \
	"not a CloudEvents protobuf message" "Attributes.MeshParseError says why it did not parse"
has "$(m queue peek shop)" "MeshParseError                   event of 8 bytes" "text shows it too"

# Dead letters show where from and why, in JSON and in text.
m queue create shop-dlq >/dev/null
m queue set-attributes shop --dlq shop-dlq --max-receive 5 >/dev/null
m queue send shop --body doomed >/dev/null
m queue purge shop >/dev/null
m queue send shop --body doomed >/dev/null
rh=$(m queue receive shop --json | json 'd["Messages"][0]["ReceiptHandle"]')
m queue dead-letter shop "$rh" --reason 'bad address' >/dev/null; ok $? "dead-letter a message by hand"
out=$(m queue peek shop-dlq --json)
is "$(printf '%s' "$out" | json 'd["Messages"][0]["Attributes"]["DeadLetterQueueSourceArn"], d["Messages"][0]["Attributes"]["DeadLetterReason"]')" \
	"('shop', 'bad address')" "--json: Attributes.DeadLetterQueueSourceArn and DeadLetterReason"
out=$(m queue peek shop-dlq)
has "$out" "DeadLetterReason                 bad address" "text shows them too"
m queue create auto-dlq >/dev/null
m queue create auto --visibility-timeout 0 --dlq auto-dlq --max-receive 1 >/dev/null
m queue send auto --body z >/dev/null
for _ in 1 2 3; do m queue receive auto >/dev/null; done
out=$(m queue peek auto-dlq --json)
is "$(printf '%s' "$out" | json 'tuple(d["Messages"][0]["Attributes"].get(k) for k in ("DeadLetterQueueSourceArn", "DeadLetterSourceSequence", "DeadLetterReceiveCount", "DeadLetterService"))')" \
	"('auto', '1', '1', None)" "a redrive policy's dead letter: its source, sequence and receives there, no service"
has "$(m queue peek auto-dlq)" "DeadLetterReceiveCount           1" "text shows them too"

# queue delete asks first; a script says --yes.
out=$(m queue delete shop 2>&1 </dev/null); is $? 2 "queue delete without --yes and without a terminal exits 2"
has "$out" "would delete queue 'shop' and its " "and says what it would delete"
has "$out" "give --yes" "and what to do"
m queue info shop >/dev/null; ok $? "and deletes nothing"
out=$(on_tty n "$MESHCTL" queue delete shop 2>&1); is $? 1 "on a terminal, answering n exits 1"
has "$out" "delete queue 'shop' and its " "after asking"
m queue info shop >/dev/null; ok $? "and deletes nothing"
out=$(on_tty yes "$MESHCTL" queue delete shop 2>&1); ok $? "answering yes deletes"
out=$(m queue info shop 2>&1); is $? 1 "the queue is gone"
out=$(m queue delete shop-dlq --yes); ok $? "queue delete --yes does not ask"
is "$out" "deleted queue shop-dlq" "and says what it deleted"
out=$(m queue delete shop-dlq --yes 2>&1); is $? 1 "deleting it again exits 1"

# --stdin: a message a line, pipelined.
m queue create lines >/dev/null
out=$(seq 1 500 | m queue send lines --stdin 2>err); ok $? "queue send --stdin sends a message a line"
is "$(printf '%s\n' "$out" | grep -c '^sent ')" 500 "one 'sent' line each"
has "$(cat err)" "500 sent, 0 failed" "and a count on stderr"
is "$(m queue info lines --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["Attributes"]["ApproximateNumberOfMessages"])')" 500 \
	"the queue holds the 500"
out=$(m queue peek lines --max 2 --json | python3 -c 'import json,sys; print(" ".join(m["Body"] for m in json.load(sys.stdin)["Messages"]))')
is "$out" "1 2" "in the order sent"
out=$(printf '{"name":"ada"}\n\n{"nope":1}\n{"name":"bob"}\n' | m queue send lines --stdin --type evmesh.example.Greet --json 2>err)
is $? 1 "--stdin --type T: a line that is not a T exits 1"
is "$(printf '%s\n' "$out" | python3 -c 'import json,sys; print(" ".join(str(json.loads(l)["Line"]) for l in sys.stdin))')" "1 4" \
	"the others are sent (JSON Lines with their line numbers)"
has "$(cat err)" "line 3: unknown field \"nope\"" "the bad line is named"
out=$(echo x | m queue send lines --stdin --body y 2>&1); is $? 2 "--stdin with --body is a usage error"
out=$(echo x | m queue send nosuch --stdin 2>&1); is $? 1 "--stdin to a missing queue exits 1"

stop_broker
done_testing
