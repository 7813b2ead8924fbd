#!/usr/bin/env bash
# mesh-scheduler against a real broker: two replicas fire each firing once,
# one is killed with SIGKILL and the other goes on, changes made while a
# replica is down reach it, and missed firings follow latest/all/skip.
# Usage: test_scheduler.sh MESHCTL MESH-SCHEDULER TEST-BROKER
set -u
MESHCTL=$1
SCHEDULER=$2
TEST_BROKER=$3
. "$(dirname "$0")/tap.sh"
unset NATS_URL NATS_USER NATS_PASSWORD NATS_TOKEN NATS_NKEY NATS_CREDS
scratch

start_broker || { echo "Bail out! no broker"; exit 1; }
export NATS_URL=$BROKER_URL
m() { "$MESHCTL" "$@"; }
replica() { # replica ID: start one in the background, log in $tmp/ID.log
	"$SCHEDULER" --state "$tmp/$1" --id "$1" 2>>"$tmp/$1.log" &
	pids+=($!)
	eval "pid_$1=$!"
}
bodies() { # the bodies waiting in queue ticks, one per line
	m queue peek ticks --max 1000 --json |
		python3 -c 'import json,sys; print("\n".join(x["Body"] for x in json.load(sys.stdin)["Messages"]))'
}

out=$("$SCHEDULER" --help); ok $? "mesh-scheduler --help exits 0"
has "$out" "--state DIR" "and documents --state"
"$SCHEDULER" --bogus >/dev/null 2>&1; is $? 2 "an unknown option exits 2"

m queue create ticks >/dev/null
replica r1
replica r2
sleep 0.3
out=$(m schedule create tick --expression 'rate(1 second)' --target queue:ticks \
	--body 'tick <aws.scheduler.scheduled-time>'); ok $? "a schedule is created"
sleep 3.5
b=$(bodies)
n=$(printf '%s\n' "$b" | grep -c tick)
u=$(printf '%s\n' "$b" | sort -u | grep -c tick)
[ "$n" -ge 2 ]; ok $? "two replicas fired it ($n firings in 3.5 s)"
is "$u" "$n" "each firing once"
has "$(cat "$tmp/r1.log" "$tmp/r2.log")" "another replica sent it first" \
	"(both replicas fired; JetStream kept one)"

kill -9 "$pid_r1"
sleep 2.2
b=$(bodies)
n2=$(printf '%s\n' "$b" | grep -c tick)
u2=$(printf '%s\n' "$b" | sort -u | grep -c tick)
[ "$n2" -ge $((n + 1)) ]; ok $? "with r1 killed, r2 goes on ($n2 firings)"
is "$u2" "$n2" "still each once"

# A change made while r1 is down reaches it when it comes back.
m queue create other >/dev/null
m schedule create later --expression 'cron(0 0 1 1 ? 2199)' --target queue:other >/dev/null
replica r1
sleep 1
has "$(cat "$tmp/r1.log")" '"event":"applied","schedule":"later"' \
	"a schedule created while r1 was down reaches its LMDB"
kill -TERM "$pid_r1" "$pid_r2"
wait "$pid_r1"; is $? 0 "SIGTERM stops a replica with exit 0"
wait "$pid_r2" 2>/dev/null

# meshctl is a client of a running replica's request API: with none,
# it says so.
out=$(m schedule info tick 2>&1); is $? 1 "with no replica, meshctl schedule exits 1"
has "$out" "no mesh-scheduler answered" "and says why"

# A command run while a replica is up (which then stops again).
with_replica() {
	replica r1
	sleep 0.3
	"$@"
	kill -TERM "$pid_r1"; wait "$pid_r1"
}

# Missed firings, by the schedule's policy: after 4 s with no replica,
# one comes back; its log says what it did with the missed firings.
after_downtime() {
	sleep 4
	: >"$tmp/r1.log"
	replica r1
	sleep 0.5
	kill -TERM "$pid_r1"; wait "$pid_r1"
}
after_downtime
is "$(grep -c 'missed (latest' "$tmp/r1.log")" "1" \
	"policy latest (the default) fires one missed firing"
has "$(with_replica m schedule info tick)" "LastFiring" "info shows the last firing"
with_replica m schedule update tick --missed all >/dev/null
after_downtime
n=$(grep -c 'missed (all fired)' "$tmp/r1.log")
[ "$n" -ge 3 ]; ok $? "policy all fires every missed firing ($n)"
with_replica m schedule update tick --missed skip >/dev/null
after_downtime
is "$(grep -c 'missed (' "$tmp/r1.log")" "0" "policy skip fires none of them"
has "$(cat "$tmp/r1.log")" "skipped by policy" "and the replica says so"

# A firing that cannot be delivered is retried, then dead-lettered.
m queue create gone >/dev/null
m queue create dead >/dev/null
: >"$tmp/r1.log"
replica r1
sleep 0.3
when=$(date -u -d '+3 seconds' +%Y-%m-%dT%H:%M:%S)
m schedule create once --expression "at($when)" --target queue:gone \
	--retry-max 2 --dlq dead --body 'once' >/dev/null
ok $? "a one-time schedule with 2 retries and a dead-letter queue"
m queue delete gone --yes >/dev/null
sleep 8
has "$(cat "$tmp/r1.log")" "attempt 1 failed" "its failed firing is retried"
out=$(m queue receive dead --json)
is "$(printf '%s' "$out" | python3 -c 'import json,sys; m=json.load(sys.stdin)["Messages"]; print(len(m), m[0]["MessageAttributes"]["schedule"]["StringValue"] if m else "")')" \
	"1 once" "after the retries it is in the dead-letter queue"
has "$out" "does not exist" "with the error as an attribute"
is "$(printf '%s' "$out" | python3 -c 'import json,sys; a=json.load(sys.stdin)["Messages"][0]["Attributes"]; print(a["DeadLetterQueueSourceArn"], "does not exist" in a["DeadLetterReason"])')" \
	"schedule:once True" "a dead letter's shape: its source and reason in Attributes"
has "$(m schedule info once)" "gave up after 3 attempts" "and info says what happened"

# Pause and delete stop the firings.
m schedule pause tick >/dev/null
has "$(m schedule info tick)" "DISABLED" "pause disables it"
m schedule delete tick >/dev/null; ok $? "delete"
out=$(m schedule info tick 2>&1); is $? 1 "a deleted schedule is gone"
has "$out" "schedule 'tick': does not exist" "by name"

# Bad input: a clear error, and nothing stored.
out=$(m schedule create bad --expression 'cron(0 25 * * ? *)' --target queue:ticks 2>&1)
is $? 2 "a bad expression exits 2"
has "$out" "field 2 (hours)" "naming the field"
out=$(m schedule create bad --expression 'rate(1 hour)' --tz Nowhere/City --target queue:ticks 2>&1)
is $? 2 "an unknown zone exits 2"
out=$(m schedule create bad --expression 'rate(1 hour)' --target queue:nosuch 2>&1)
is $? 1 "an unknown target queue exits 1"
has "$out" "queue 'nosuch': does not exist" "naming it"
out=$(m schedule create bad --expression 'rate(1 hour)' --target queue:ticks \
	--start 2027-01-01T00:00:00Z --end 2026-01-01T00:00:00Z 2>&1)
is $? 2 "an end before the start exits 2"
out=$(m schedule create bad --expression 'rate(1 hour)' --target queue:ticks --window 2000m 2>&1)
is $? 2 "a window over 1440 minutes exits 2"
has "$out" "1-1440 minutes" "and says the range"
out=$(m schedule create bad --expression 'rate(1 hour)' --target queue:ticks --retry-max 186 2>&1)
is $? 2 "more than 185 retries exits 2"
out=$(m schedule create bad --expression 'rate(1 hour)' --target queue:ticks --max-age 30s 2>&1)
is $? 2 "a maximum event age under 60 s exits 2"
out=$(m schedule create bad --expression 'rate(1 hour)' --target queue:ticks --dlq nosuch 2>&1)
is $? 1 "an unknown dead-letter queue exits 1"
out=$(m schedule create later --expression 'rate(1 hour)' --target queue:other 2>&1)
is $? 1 "creating an existing schedule exits 1"
has "$out" "already exists" "and says so"
is "$(m schedule list | sort | tr '\n' ' ')" "later once " "none of the refused schedules was stored"

# next: an expression's next firings, computed by the scheduler.
out=$(m schedule next 'cron(0 2 * * ? *)' --tz America/New_York --from 2026-03-07T12:00:00Z --count 2)
ok $? "schedule next asks the scheduler"
is "$out" "2026-03-09T06:00:00Z
2026-03-10T06:00:00Z" "and skips the local time that DST removes"
out=$(m schedule next 'cron(0 25 * * ? *)' 2>&1); is $? 2 "an invalid expression exits 2"
has "$out" "field 2 (hours) '25'" "and names the field"
out=$(m schedule next '0 0 * * *' --tz Nowhere/City 2>&1); is $? 2 "an unknown zone exits 2"
has "$out" "unknown time zone 'Nowhere/City'" "and names it"
out=$(m schedule next 'rate(1 day)' --from 2026-01-01T00:00:00Z --count 1 --json)
has "$out" '"2026-01-02T00:00:00Z"' "--json lists the firings"
out=$(m schedule next 'rate(1 day)' --from yesterday 2>&1); is $? 2 "a bad --from exits 2"
has "$out" "yesterday" "and names it"
kill -TERM "$pid_r1"; wait "$pid_r1"

stop_broker
done_testing
