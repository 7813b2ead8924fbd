#!/usr/bin/env bash
# Signed events from the shell: meshctl key (the directory MESH_KEYS),
# --require-signers on queues and topics (refusals naming the value,
# nothing stored), --sign NAME --seed FILE on send and publish (and
# --stdin), and mesh-router's verification of a topic that requires
# signers: a signed message forwarded, unsigned, forged, unknown-key and
# stale ones dead-lettered with their reasons.
# Usage: test_sign_cli.sh MESHCTL MESH-ROUTER TEST-BROKER SIGN-TOOL
set -u
MESHCTL=$1
ROUTER=$2
TEST_BROKER=$3
SIGN_TOOL=$4
. "$(dirname "$0")/tap.sh"
unset NATS_URL NATS_USER NATS_PASSWORD NATS_TOKEN NATS_NKEY NATS_CREDS
scratch
start_broker || { echo "Bail out! no broker"; exit 1; }
export NATS_URL=$BROKER_URL
m() { "$MESHCTL" "$@"; }
field() { python3 -c 'import json,sys; d=json.load(sys.stdin)
for k in sys.argv[1].split("."): d=d[int(k)] if k.isdigit() else d[k]
print(d)' "$1"; }

# ---- keys ----
out=$(m key create alice --seed "$tmp/alice.nk" --json); ok $? "key create exits 0"
pub=$(printf '%s' "$out" | field PublicKey)
is "${#pub}" 56 "its public key: 56 characters"
is "$(stat -c %a "$tmp/alice.nk")" 600 "the seed file is 0600"
is "$(m key show alice --json | field PublicKey)" "$pub" "key show: the same key"
out=$(m key create alice --seed "$tmp/alice2.nk" 2>&1); is $? 1 "a name taken: exit 1"
has "$out" "key 'alice': already recorded" "naming it"
[ ! -e "$tmp/alice2.nk" ]; ok $? "and no seed is written"
out=$(m key create bob --seed "$tmp/alice.nk" 2>&1); is $? 2 "an existing seed file: exit 2"
has "$out" "alice.nk': exists" "naming the file"
m key show bob >/dev/null 2>&1; is $? 1 "and bob is not recorded"
out=$(m key create 'bad name' --seed "$tmp/x.nk" 2>&1); is $? 2 "a bad name: exit 2"
has "$out" "'bad name'" "naming it"
m key create mallory --seed "$tmp/mallory.nk" >/dev/null; ok $? "another identity, mallory"
out=$(m key add carol --public UNOTAKEY 2>&1); is $? 2 "key add of a non-key: exit 2"
has "$out" "'UNOTAKEY' is not a user public key" "naming the value"
m key show carol >/dev/null 2>&1; is $? 1 "and carol is not recorded"
# A foreign producer's key (the test tool's fixed seed, as another
# language would keep it).
foreign=$("$SIGN_TOOL" public)
m key add carol --public "$foreign" >/dev/null; ok $? "key add carol --public U..."
out=$(m key add carol --public "$pub" 2>&1); is $? 1 "another key under carol without --replace: exit 1"
has "$out" "another key" "and says so"
is "$(m key list --json | python3 -c 'import json,sys; print(",".join(k["Name"] for k in json.load(sys.stdin)["Keys"]))')" \
	"alice,carol,mallory" "key list: by name"
m key delete carol >/dev/null 2>&1 </dev/null; is $? 2 "key delete without --yes nor a terminal: exit 2"
m key show carol >/dev/null; ok $? "and carol stays"

# ---- --require-signers ----
m queue create plain >/dev/null
out=$(m queue create jobs --require-signers alice,dave 2>&1); is $? 1 "queue create with an unknown signer: exit 1"
has "$out" "signer 'dave' has no key" "naming the signer"
m queue info jobs >/dev/null 2>&1; is $? 1 "and no queue is made"
out=$(m queue create jobs --require-signers 'alice,,x' 2>&1); is $? 1 "an empty name: exit 1"
has "$out" "RequireSigners" "saying which attribute"
m queue info jobs >/dev/null 2>&1; is $? 1 "and no queue is made"
m queue create jobs --require-signers alice,carol >/dev/null; ok $? "queue create --require-signers alice,carol"
is "$(m queue info jobs --json | field Attributes.RequireSigners)" "alice,carol" "RequireSigners in queue info"
out=$(m queue set-attributes jobs --require-signers erin 2>&1); is $? 1 "set-attributes to an unknown signer: exit 1"
has "$out" "signer 'erin'" "naming it"
is "$(m queue info jobs --json | field Attributes.RequireSigners)" "alice,carol" "and the attribute stays"
out=$(m queue create jobs.fifo --require-signers alice 2>&1); is $? 1 "a FIFO queue cannot require signers"
has "$out" "standard queues only" "and says why"
m queue set-attributes plain --require-signers alice >/dev/null; ok $? "set-attributes --require-signers alice"
m queue set-attributes plain --require-signers '' >/dev/null; ok $? "set-attributes --require-signers '' clears it"
m queue info plain --json | grep -q RequireSigners; is $? 1 "RequireSigners gone"

out=$(m topic create orders --require-signers zed 2>&1); is $? 1 "topic create with an unknown signer: exit 1"
has "$out" "signer 'zed'" "naming it"
m topic info orders >/dev/null 2>&1; is $? 1 "and no topic is made"
m topic create orders >/dev/null; ok $? "topic create orders"
m topic set-attributes orders --require-signers alice,carol >/dev/null; ok $? "topic set-attributes --require-signers alice,carol"
is "$(m topic info orders --json | field Attributes.RequireSigners)" "alice,carol" "RequireSigners in topic info"
has "$(m topic info orders)" "signers        alice,carol" "and in its text"
out=$(m topic set-attributes orders --require-signers 'a b' 2>&1); is $? 1 "a bad name: exit 1"
has "$out" "'a b'" "naming it"
is "$(m topic info orders --json | field Attributes.RequireSigners)" "alice,carol" "and the attribute stays"
m topic create events.fifo --content-based-dedup >/dev/null
out=$(m topic set-attributes events.fifo --require-signers alice 2>&1); is $? 1 "a FIFO topic cannot require signers"
has "$out" "standard topics only" "and says why"

# ---- signing on the line ----
out=$(m queue send jobs --body hi --sign alice 2>&1); is $? 2 "--sign without --seed: exit 2"
has "$out" "--sign NAME and --seed FILE go together" "and says so"
cp "$tmp/alice.nk" "$tmp/open.nk"; chmod 644 "$tmp/open.nk"
out=$(m queue send jobs --body hi --sign alice --seed "$tmp/open.nk" 2>&1); is $? 2 "a seed readable by others: exit 2"
has "$out" "chmod 600" "and says what to do"
m queue send jobs --body hi --sign alice --seed "$tmp/alice.nk" >/dev/null; ok $? "queue send --sign alice --seed FILE"
out=$(m queue send events.fifo --body hi --group g --sign alice --seed "$tmp/alice.nk" 2>&1)
[ $? -ne 0 ]; ok $? "signing for a FIFO target is refused"
printf 'a\nb\n' | m queue send jobs --stdin --sign alice --seed "$tmp/alice.nk" >/dev/null 2>&1; ok $? "--stdin signs each line"

# ---- mesh-router: a topic that requires signers ----
"$ROUTER" --stats 0 2>>"$tmp/router.log" &
pids+=($!)
m queue create inbox >/dev/null
m topic subscribe orders --queue inbox --raw >/dev/null
sleep 1
m topic publish orders --body good --sign alice --seed "$tmp/alice.nk" >/dev/null; ok $? "a signed message published"
m topic publish orders --body unsigned >/dev/null
m topic publish orders --body stranger --sign mallory --seed "$tmp/mallory.nk" >/dev/null
printf 'a\nb\n' | m topic publish orders --stdin --sign alice --seed "$tmp/alice.nk" >/dev/null 2>&1; ok $? "topic publish --stdin --sign"
"$SIGN_TOOL" publish "$BROKER_URL" orders forged >/dev/null; ok $? "a forged event published (signed, then altered)"
"$SIGN_TOOL" publish "$BROKER_URL" orders stale >/dev/null; ok $? "a stale event published (signed 8 days ago)"
"$SIGN_TOOL" publish "$BROKER_URL" orders good >/dev/null; ok $? "carol's event published (a foreign producer)"
got=""
for _ in $(seq 1 50); do
	got=$(m queue peek inbox --max 10 --json 2>/dev/null | python3 -c 'import json,sys; print(",".join(sorted(x["Body"] for x in json.load(sys.stdin)["Messages"])))' 2>/dev/null)
	dl=$(m queue peek inbox-dlq --max 10 --json 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["Messages"]))' 2>/dev/null)
	[ "${dl:-0}" -ge 4 ] && [ -n "$got" ] && break
	sleep 0.2
done
is "$got" "a,b,carol's,good" "the signed messages reach the queue (good, the --stdin lines, carol's)"
reasons=$(m queue peek inbox-dlq --max 10 --json | python3 -c 'import json,sys
for x in json.load(sys.stdin)["Messages"]: print(x["Body"], "|", x["Attributes"]["DeadLetterReason"])' | sort)
diag "$reasons"
has "$reasons" "unsigned | signature: missing" "unsigned: dead-lettered, signature: missing"
has "$reasons" "stranger | signature: unknown key $(m key show mallory --json | field PublicKey) (signer 'mallory')" "mallory's: unknown key, named"
has "$reasons" "forged | signature: forged (signer 'carol'" "forged: signature: forged"
has "$reasons" "stale | signature: stale event time" "stale: signature: stale event time"
has "$(m queue peek inbox-dlq --max 1 --json | field Messages.0.Attributes.DeadLetterQueueSourceArn)" "topic:orders" "dead letters come from topic:orders"
has "$(cat "$tmp/router.log")" '"event":"refused"' "the router logs each refusal"

done_testing
