#!/usr/bin/env bash
# Sealed payloads from the shell: encrypted queues and topics
# (--encrypt --readers), every meshctl publish path sealing (send,
# --stdin, batches; signed ones sealed first), the raw stream bytes
# (read by a raw client) not the plaintext, key rotation keeping old
# messages readable, a reader service (the runtime) opening them and
# emitting sealed, a non-reader service dead-lettering them with the
# reason, dead letters and redrives keeping the ciphertext, and the
# refusals (unknown reader, --readers without --encrypt, a MessageBody
# policy, a clear topic to an encrypted queue) naming the value, exit
# non-zero, nothing made.
# Usage: test_seal_cli.sh MESHCTL MESH-ROUTER TEST-BROKER SEAL-TOOL
set -u
MESHCTL=$1
ROUTER=$2
TEST_BROKER=$3
SEAL_TOOL=$4
. "$(dirname "$0")/tap.sh"
unset NATS_URL NATS_USER NATS_PASSWORD NATS_TOKEN NATS_NKEY NATS_CREDS \
	MESH_IDENTITY
scratch
start_broker || { echo "Bail out! no broker"; exit 1; }
export NATS_URL=$BROKER_URL
m() { "$MESHCTL" "$@"; }
# raw STREAM: the stream's stored bytes, as the broker holds them.
raw() { "$SEAL_TOOL" raw "$BROKER_URL" "$1" >"$tmp/raw.bin" && cat "$tmp/raw.bin"; }
# holds STREAM TEXT: 0 when the stream's raw bytes hold TEXT.
holds() { "$SEAL_TOOL" raw "$BROKER_URL" "$1" | grep -a -q -F "$2"; }
# wait_for FILE TEXT [N]: until FILE holds TEXT N times (20 s at most).
wait_for() {
	for _ in $(seq 1 100); do
		[ "$(grep -c -F "$2" "$1" 2>/dev/null)" -ge "${3:-1}" ] && return 0
		sleep 0.2
	done
	return 1
}
# serve NAME SOURCE [EMIT]: seal-tool's service in the background, its
# identity NAME's seed; output in $tmp/NAME.out.
serve() {
	local name=$1
	shift
	MESH_IDENTITY=$tmp/$name.nk "$SEAL_TOOL" serve "$name" "$@" \
		--state "$tmp/state-$name" --map-mb 16 >"$tmp/$name.out" 2>"$tmp/$name.log" &
	pids+=($!)
}

for k in admin pay ship bob; do
	m key create $k --seed "$tmp/$k.nk" >/dev/null || echo "Bail out! key create $k"
done

# ---- refusals: nothing half-made ----
out=$(m queue create jobs --encrypt --readers pay,dave 2>&1); is $? 1 "queue create with an unknown reader: exit 1"
has "$out" "queue 'jobs': Readers: reader 'dave' has no key in MESH_KEYS" "naming the reader"
m queue info jobs >/dev/null 2>&1; is $? 1 "and no queue is made"
out=$(m key rotate queue:jobs 2>&1); is $? 1 "nor data keys (key rotate finds no queue)"
out=$(m queue create jobs --readers pay 2>&1); is $? 1 "--readers without --encrypt: exit 1"
has "$out" "queue 'jobs': Readers is for encrypted queues (--encrypt)" "saying so"
m queue info jobs >/dev/null 2>&1; is $? 1 "and no queue is made"
out=$(m queue create jobs --encrypt --readers 'pay,,x' 2>&1); is $? 1 "an empty reader's name: exit 1"
has "$out" "Readers" "naming the attribute"
out=$(m topic create pay --readers pay 2>&1); is $? 2 "topic: --readers without --encrypt: exit 2 (meshctl topic's usage errors)"
has "$out" "topic 'pay': Readers is for encrypted topics (--encrypt)" "saying so"
out=$(m topic create pay --encrypt --readers zed 2>&1); is $? 1 "topic: an unknown reader: exit 1"
has "$out" "reader 'zed' has no key in MESH_KEYS" "naming it"
m topic info pay >/dev/null 2>&1; is $? 1 "and no topic is made"

# ---- an encrypted queue and topic ----
m queue create jobs-dlq >/dev/null
m queue create jobs --encrypt --readers pay --dlq jobs-dlq --max-receive 3 >/dev/null
ok $? "queue create jobs --encrypt --readers pay"
info=$(m queue info jobs --json)
is "$(printf '%s' "$info" | field Attributes.Encrypt)" "true" "queue info: Encrypt"
is "$(printf '%s' "$info" | field Attributes.Readers)" "pay" "Readers"
is "$(printf '%s' "$info" | field Attributes.KeyIds)" "1" "KeyIds"
is "$(printf '%s' "$info" | field Attributes.CurrentKeyId)" "1" "CurrentKeyId"
m queue create jobs --encrypt --readers pay --dlq jobs-dlq --max-receive 3 >/dev/null
ok $? "create again with the same attributes: no change"
is "$(m queue info jobs --json | field Attributes.KeyIds)" "1" "and no new key"
m topic create pay --encrypt --readers pay,ship --archive-days 1 >/dev/null
ok $? "topic create pay --encrypt --readers pay,ship"
has "$(m topic info pay)" "encrypt        true (readers: pay,ship; and admin)" "topic info says so"
out=$(m topic subscribe pay --service audit --filter-scope MessageBody \
	--filter-policy '{"amount":[{"numeric":[">",1]}]}' 2>&1)
[ $? -ne 0 ]; ok $? "a MessageBody policy on the encrypted topic: refused"
has "$out" "topic 'pay' is encrypted: a MessageBody filter policy cannot read its sealed payloads" "with a clear error"
is "$(m subscription list --topic pay --json | field Subscriptions | tr -d '[]')" "" "and no subscription is made"
m topic create clear >/dev/null
out=$(m topic subscribe clear --queue jobs 2>&1); is $? 2 "a clear topic to an encrypted queue: exit 2"
has "$out" "queue 'jobs' is encrypted and topic 'clear' is not" "naming both"

# ---- sending: who may seal ----
out=$(m queue send jobs --body hi 2>&1); is $? 2 "send to an encrypted queue without an identity: exit 2"
has "$out" "queue:jobs is encrypted: sending needs a reader's or admin's identity" "saying what is needed"
out=$(m queue send jobs --body hi --as bob --seed "$tmp/bob.nk" 2>&1); is $? 1 "as a non-reader: exit 1"
has "$out" "sealed: 'bob' is not a reader of queue:jobs (key id 1)" "naming the identity and the key"
out=$(m topic publish clear --body hi --as pay --seed "$tmp/pay.nk" 2>&1); is $? 2 "--as to a clear topic: exit 2"
has "$out" "--as: topic 'clear' is not encrypted" "saying so"
is "$(m queue info jobs --json | field Attributes.ApproximateNumberOfMessages)" "0" "nothing was sent"

m queue send jobs --body "secret-q1" --as pay --seed "$tmp/pay.nk" >/dev/null; ok $? "queue send --as pay"
printf 'secret-q2\nsecret-q3\n' | m queue send jobs --stdin --as pay --seed "$tmp/pay.nk" >/dev/null 2>&1
ok $? "queue send --stdin --as pay"
m queue send-batch jobs --as admin --seed "$tmp/admin.nk" \
	--entries '[{"Id":"a","MessageBody":"secret-q4"}]' >/dev/null; ok $? "queue send-batch --as admin"
m queue send jobs --body "secret-q5" --sign pay --seed "$tmp/pay.nk" >/dev/null; ok $? "queue send --sign pay: sealed, then signed"
is "$(m queue info jobs --json | field Attributes.ApproximateNumberOfMessages)" "5" "five messages stored"
raw MQ_jobs >/dev/null; ok $? "the queue's stream read raw"
grep -a -q "secret" "$tmp/raw.bin"; is $? 1 "its bytes hold no plaintext"
grep -a -q -F "queue:jobs/1" "$tmp/raw.bin"; ok $? "they name the key id (queue:jobs/1)"
grep -a -q -F "meshsig" "$tmp/raw.bin"; ok $? "the signed one carries its signature"

m topic publish pay --body "secret-t1" --as ship --seed "$tmp/ship.nk" >/dev/null; ok $? "topic publish --as ship"
printf 'secret-t2\n' | m topic publish pay --stdin --as pay --seed "$tmp/pay.nk" >/dev/null 2>&1
ok $? "topic publish --stdin --as pay"
m topic publish-batch pay --as pay --seed "$tmp/pay.nk" \
	--entries '[{"Id":"a","Message":"secret-t3"},{"Id":"b","Message":"secret-t4"}]' >/dev/null
ok $? "topic publish-batch --as pay"
out=$(printf 'x\n' | m topic publish pay --stdin 2>&1); is $? 2 "topic publish --stdin without an identity: exit 2"
out=$(m topic publish-batch pay --entries '[{"Id":"a","Message":"secret-t9"}]' 2>&1); is $? 2 "publish-batch without an identity: exit 2"
is "$(m topic info pay --json | field Attributes.MessagesStored)" "4" "four messages stored"
holds TP_pay "secret"; is $? 1 "the topic's raw bytes hold no plaintext"
holds TP_pay "topic:pay/1"; ok $? "and name its key id"

# ---- rotation ----
is "$(m key rotate queue:jobs)" "queue:jobs: data key 2 is current" "key rotate queue:jobs"
is "$(m queue info jobs --json | field Attributes.KeyIds)" "1,2" "both keys kept"
m queue send jobs --body "secret-q6" --as pay --seed "$tmp/pay.nk" >/dev/null; ok $? "sent with key 2"
holds MQ_jobs "queue:jobs/2"; ok $? "sealed with key 2"
out=$(m key rotate queue:jobs-dlq 2>&1); is $? 2 "rotating a clear queue: exit 2"
has "$out" "queue 'jobs-dlq' is not encrypted" "saying so"

# ---- services: a reader opens (old and new keys) and emits sealed ----
serve ship topic:pay
for _ in $(seq 1 100); do
	[ "$(m topic info pay --json | field Attributes.SubscriptionsConfirmed)" = 1 ] && break
	sleep 0.2
done
serve pay queue:jobs topic:pay
wait_for "$tmp/pay.out" "handled" 6; ok $? "the reader service handled all six"
for i in 1 2 3 4 5 6; do
	grep -q -x "handled secret-q$i" "$tmp/pay.out" || diag "missing secret-q$i"
done
is "$(grep -c -x 'handled secret-q[1-6]' "$tmp/pay.out")" 6 "as plaintext (keys 1 and 2, signed and not)"
wait_for "$tmp/ship.out" "handled secret-q" 6; ok $? "its emits reached the topic's reader"
holds TP_pay "secret"; is $? 1 "the emitted events are sealed on the broker"
grep -q "emit failed" "$tmp/pay.out"; is $? 1 "no emit failed"
grep -a -q "secret" "$tmp/pay.log" "$tmp/ship.log"; is $? 1 "no plaintext in the services' logs"

# ---- a non-reader service, dead letters, redrive ----
m queue create jobs2 --encrypt --readers pay >/dev/null
m queue send jobs2 --body "secret-n1" --as pay --seed "$tmp/pay.nk" >/dev/null
serve bob queue:jobs2
reason=""
for _ in $(seq 1 100); do
	reason=$(m queue peek bob-dlq --json 2>/dev/null | field Messages.0.Attributes.DeadLetterReason 2>/dev/null) && break
	sleep 0.2
done
is "$reason" "sealed: 'bob' is not a reader of queue:jobs2 (key id 1)" "a non-reader service dead-letters it, with the reason"
grep -q "handled" "$tmp/bob.out"; is $? 1 "and handles nothing"
holds MQ_bob-dlq "secret"; is $? 1 "the dead letter keeps the ciphertext"
holds MQ_bob-dlq "queue:jobs2/1"; ok $? "sealed as it was"
kill "${pids[-1]}" 2>/dev/null
m queue redrive bob-dlq --to jobs >/dev/null; ok $? "redriven to the reader's queue"
wait_for "$tmp/pay.out" "handled secret-n1"; ok $? "where the reader opens it"

# A queue's own dead-letter queue and redrive.
m queue create hold-dlq >/dev/null
m queue create hold --encrypt --readers pay --dlq hold-dlq --max-receive 1 >/dev/null
m queue send hold --body "secret-h1" --as pay --seed "$tmp/pay.nk" >/dev/null
receipt=$(m queue receive hold --json | field Messages.0.ReceiptHandle)
m queue dead-letter hold "$receipt" --reason "test" >/dev/null; ok $? "dead-lettered by request"
holds MQ_hold-dlq "queue:hold/1"; ok $? "the DLQ holds the sealed event"
holds MQ_hold-dlq "secret"; is $? 1 "not the plaintext"
m queue redrive hold-dlq >/dev/null; ok $? "redriven back"
holds MQ_hold "queue:hold/1"; ok $? "the queue holds it sealed again"
holds MQ_hold "secret"; is $? 1 "not the plaintext"

# ---- a service without an identity cannot emit to an encrypted target ----
m queue create plainq >/dev/null
m queue send plainq --body "hello" >/dev/null
"$SEAL_TOOL" serve noid queue:plainq topic:pay --state "$tmp/state-noid" \
	--map-mb 16 >"$tmp/noid.out" 2>"$tmp/noid.log" &
pids+=($!)
wait_for "$tmp/noid.out" "emit failed"; ok $? "emit without an identity fails in the handler" ||
	diag "$(cat "$tmp/noid.log")"
has "$(cat "$tmp/noid.out")" "emit to topic:pay: it is encrypted, and the service has no identity" "saying why"

done_testing
