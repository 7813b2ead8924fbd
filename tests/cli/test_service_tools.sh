#!/usr/bin/env bash
# meshctl state and meshctl stats as an operator meets them: against
# stand-ins (an LMDB writer committing every millisecond, stats responders
# with known counters) and, when it is given, the real template service.
# Usage: test_service_tools.sh MESHCTL TEST-BROKER STATE-WRITER
#        STATS-RESPONDER [TEMPLATE-SERVICE]
set -u
MESHCTL=$1
TEST_BROKER=$2
STATE_WRITER=$3
STATS_RESPONDER=$4
SERVICE=${5:-}
. "$(dirname "$0")/tap.sh"
unset NATS_URL NATS_USER NATS_PASSWORD NATS_TOKEN NATS_NKEY NATS_CREDS
tmp=$(mktemp -d)
pids=()
cleanup() {
	exec 7>&- 2>/dev/null
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT
cd "$tmp" || exit 1
mkfifo hold
exec 7<>hold # stand-ins read it and stop when it closes

# jget JSON PYTHON-EXPR: a value out of JSON (j is the document).
jget() {
	python3 -c 'import json, sys
j = json.loads(sys.argv[1])
r = eval(sys.argv[2])
print(" ".join(map(str, r)) if isinstance(r, tuple) else r)' "$1" "$2"
}

# spawn OUT CMD...: run a stand-in in the background until 'hold' closes;
# wait for its "ready".
spawn() {
	local out=$1
	shift
	"$@" <hold >"$out" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do
		grep -q ready "$out" 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}

# ---- state from files (--state DIR: a stopped service's) -----------------
# (Without --state, meshctl asks the running service over NATS: below.)
out=$("$MESHCTL" state get nosuch --state var/services/nosuch k 2>&1); is $? 1 "state get of a service without state exits 1"
is "$out" "meshctl state get: service 'nosuch' has no state at var/services/nosuch" \
	"and names the service and the directory"
out=$("$MESHCTL" state scan nosuch --state elsewhere 2>&1); is $? 1 "state scan too"
has "$out" "service 'nosuch' has no state at elsewhere" "and names --state's directory"
out=$("$MESHCTL" state backup nosuch --state var/services/nosuch bk 2>&1); is $? 1 "state backup too"
[ ! -e bk ]; ok $? "and makes no destination"
out=$("$MESHCTL" state get 'bad/name' k --state x 2>&1); is $? 2 "a malformed service name is a usage error"
has "$out" "service name 'bad/name'" "and is named"
out=$("$MESHCTL" state get demo --state var/services/demo 2>&1); is $? 2 "state get without KEY is a usage error"

# ---- state: a live writer ---------------------------------------------------
mkdir -p var/services
spawn writer.out "$STATE_WRITER" var/services/demo; ok $? "a writer commits to var/services/demo"
out=$("$MESHCTL" state get demo --state var/services/demo greeted/ada); ok $? "state get reads a key while the writer writes"
is "$out" "3" "and prints its value"
out=$("$MESHCTL" state get demo --state var/services/demo note); is "$out" "héllo wörld" "UTF-8 values print as text"
out=$("$MESHCTL" state get demo --state var/services/demo bin); is "$out" "0x000102ff" "other bytes print as hex"
out=$("$MESHCTL" state get demo --state var/services/demo bin --json)
is "$(jget "$out" 'j["value_base64"], j["key"], j["size"]')" "AAEC/w== bin 4" "--json: value_base64 for bytes, key, size"
out=$("$MESHCTL" state get demo --state var/services/demo 62696e --hex); is "$out" "0x000102ff" "--hex takes the key in hex"
out=$("$MESHCTL" state get demo --state var/services/demo 6g --hex 2>&1); is $? 2 "bad hex is a usage error"
out=$("$MESHCTL" state get demo --state var/services/demo bin --raw | od -An -tx1 | tr -d ' \n'); is "$out" "000102ff" "--raw writes the bytes"
# Values carry no type: --type T reads them as the protobuf message T.
G=evmesh.example.Greeted
out=$("$MESHCTL" state get demo --state var/services/demo pb/ada --type $G); ok $? "state get --type T exits 0"
is "$out" '{"name":"ada","count":"3"}' "and prints the value's proto3 JSON mapping"
out=$("$MESHCTL" state get demo --state var/services/demo pb/ada); is "$out" "0x0a036164611003" "without --type, the bytes as hex"
out=$("$MESHCTL" state get demo --state var/services/demo pb/ada --type $G --json)
is "$(jget "$out" 'j["value_json"]["name"], j["value_base64"]')" "ada CgNhZGEQAw==" "--json: value_json beside value_base64"
out=$("$MESHCTL" state get demo --state var/services/demo pb/ada --type $G --raw | od -An -tx1 | tr -d ' \n'); is "$out" "0a036164611003" "--raw keeps the bytes"
out=$("$MESHCTL" state scan demo --state var/services/demo pb/ --type $G)
is "$out" "$(printf 'pb/ada\t{"name":"ada","count":"3"}\npb/bob\t{"name":"bob","count":"1"}')" "state scan --type T: KEY, a tab, the JSON"
out=$("$MESHCTL" state get demo --state var/services/demo bin --type $G 2>&1); is $? 1 "a value that is not a T exits 1"
is "$out" "meshctl state get: service 'demo': the value of key 'bin' (4 bytes): does not decode as $G" \
	"and names the key and the type"
out=$("$MESHCTL" state scan demo --state var/services/demo b --type $G 2>err); ok $? "state scan --type shows values that are not a T"
is "$out" "$(printf 'bin\t0x000102ff')" "as stored"
has "$(cat err)" "(1 of the values do not decode as $G: shown as stored)" "and says so on stderr"
out=$("$MESHCTL" state get demo --state var/services/demo pb/ada --type evmesh.nope.Nothing 2>&1); is $? 2 "a type not in the registry is a usage error"
has "$out" "--type 'evmesh.nope.Nothing': not a message in the schema registry" "and is named"
out=$("$MESHCTL" state scan demo --state var/services/demo --db meta); is "$out" "$(printf 'version\t1')" "--db names another database"
out=$("$MESHCTL" state get demo --state var/services/demo k --db nope 2>&1); is $? 1 "a database the environment lacks exits 1"
is "$out" "meshctl state get: service 'demo' has no database 'nope' in var/services/demo" "and is named"
out=$("$MESHCTL" state get demo --state var/services/demo nope 2>&1); is $? 1 "a missing key exits 1"
is "$out" "meshctl state get: service 'demo' has no key 'nope' (state at var/services/demo)" \
	"and names the service, the key and the directory"
out=$("$MESHCTL" state get other greeted/bob --state var/services/demo); is "$out" "1" "--state names the directory"
out=$("$MESHCTL" state get demo --state var/services/demo greeted/bob --no-lock); is "$out" "1" "--no-lock reads without a reader slot"
# A reader that may not write lock.mdb (root owns it; nobody reads).
nobody=(setpriv --reuid=65534 --regid=65534 --clear-groups)
chmod 755 "$tmp"
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null &&
	"${nobody[@]}" "$MESHCTL" version >/dev/null 2>&1; then
	out=$("${nobody[@]}" "$MESHCTL" state get demo --state var/services/demo greeted/ada 2>&1); is $? 1 \
		"without write access to lock.mdb, state get exits 1"
	has "$out" "A reader needs write access to var/services/demo/lock.mdb: run as the service's user (--no-lock" \
		"and says why and what to do"
	out=$("${nobody[@]}" "$MESHCTL" state get demo --state var/services/demo greeted/ada --no-lock); is "$out" "3" "--no-lock reads anyway"
	out=$("${nobody[@]}" "$MESHCTL" state backup demo --state var/services/demo /nonexistent 2>&1); is $? 1 "backup refuses"
	has "$out" "run as the service's user." "and offers no --no-lock"
else
	echo "# skipping the reader without write access to lock.mdb: needs root, setpriv and a meshctl that nobody may run"
fi
chmod 700 "$tmp"

out=$("$MESHCTL" state scan demo --state var/services/demo greeted/)
is "$out" "$(printf 'greeted/ada\t3\ngreeted/bob\t1')" "state scan PREFIX lists the keys in order, with values"
out=$("$MESHCTL" state scan demo --state var/services/demo --limit 2 2>err); ok $? "state scan --limit exits 0"
is "$(printf '%s\n' "$out" | wc -l)" 2 "and prints no more than the limit"
has "$(cat err)" "there are more: raise --limit" "and says on stderr that it cut the list"
out=$("$MESHCTL" state scan demo --state var/services/demo g --json)
is "$(jget "$out" '[i["key"] for i in j["items"]], j["count"], j["truncated"]')" \
	"['greeted/ada', 'greeted/bob'] 2 False" "--json: items, count, truncated"
out=$("$MESHCTL" state scan demo --state var/services/demo zzz); is "$out" "" "a prefix no key has prints nothing"
out=$("$MESHCTL" state scan demo --state var/services/demo --limit 0 2>&1); is $? 2 "--limit 0 is a usage error"

c1=$("$MESHCTL" state get demo --state var/services/demo count); sleep 0.3
c2=$("$MESHCTL" state get demo --state var/services/demo count)
[ "$c2" -gt "$c1" ]; ok $? "each read sees the writer's latest commit ($c1, then $c2)"

out=$("$MESHCTL" state backup demo --state var/services/demo bk); ok $? "state backup copies while the writer writes"
has "$out" "backed up service 'demo' (state at var/services/demo) to bk" "and says what went where"
[ -f bk/data.mdb ] && [ ! -e bk/lock.mdb ]; ok $? "the copy is bk/data.mdb alone"
n=$("$MESHCTL" state get demo count --state bk)
lines=$("$MESHCTL" state scan demo load/ --limit 100000000 --state bk | wc -l)
is "$lines" "$n" "the copy is one moment: count ($n) = load/ keys"
[ "$n" -ge "$c2" ]; ok $? "and no older than the last read ($n >= $c2)"
out=$("$MESHCTL" state backup demo --state var/services/demo bk 2>&1); is $? 1 "a backup into a non-empty directory exits 1"
has "$out" "bk is not empty" "and names it"
mkdir empty
out=$("$MESHCTL" state backup demo --state var/services/demo empty --json); ok $? "a backup into an empty directory works"
[ "$(jget "$out" 'j["keys"] > 5 and j["bytes"] > 0')" = True ]; ok $? "--json counts keys and bytes"
out=$("$MESHCTL" state backup demo --state var/services/demo no/such/dir 2>&1); is $? 1 "a destination that cannot be made exits 1"
has "$out" "cannot make no/such/dir" "and names it"
mkdir -p var/services/empty-env && touch var/services/empty-env/data.mdb
out=$("$MESHCTL" state get empty-env k --state var/services/empty-env 2>&1); is $? 1 "a data.mdb that is no environment exits 1"
has "$out" "service 'empty-env': cannot open its state at var/services/empty-env" "and says so"

# ---- stats: stand-in instances -----------------------------------------------
start_broker; ok $? "a broker starts"
start=$(date +%s%N)
out=$("$MESHCTL" --server "$BROKER_URL" stats orders 2>&1); r=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
is $r 1 "stats of a service nobody runs exits 1"
has "$out" "no instance of service orders answered" "and says so"
[ $ms -lt 2000 ]; ok $? "quickly ($ms ms)"
out=$("$MESHCTL" --server "$BROKER_URL" stats 2>&1); is $? 1 "stats of no service exits 1"
has "$out" "no service answered (on mesh.services.stats" "and says so"
out=$("$MESHCTL" --server "$BROKER_URL" stats 'a.b' 2>&1); is $? 2 "a malformed service name is a usage error"

stat_json() { # SERVICE INSTANCE RECEIVED P99 MALFORMED
	printf '{"service":"%s","instance":"%s","received":%s,"processed":%s,"retried":1,"failed":0,"dead_lettered":0,"malformed":%s,"duplicates":2,"ignored":0,"outbox_pending":0,"in_flight":1,"handler_ms":{"p50":0.5,"p95":1.0,"p99":%s,"count":%s},"commit_ms":{"p50":2.0,"p95":4.0,"p99":8.0,"count":%s}}' \
		"$1" "$2" "$3" "$3" "${5:-0}" "$4" "$3" "$3"
}
spawn r1.out "$STATS_RESPONDER" "$BROKER_URL" orders "$(stat_json orders host-b:2 100 3.5 1)"
ok $? "a stand-in instance of orders answers"
spawn r2.out "$STATS_RESPONDER" "$BROKER_URL" orders "$(stat_json orders host-a:1 50 7.25 2)"
ok $? "a second one"
spawn r3.out "$STATS_RESPONDER" "$BROKER_URL" shipping "$(stat_json shipping host-a:3 7 0.1)"
ok $? "and one of shipping"
spawn r4.out "$STATS_RESPONDER" "$BROKER_URL" orders "not json"
ok $? "and a broken one"

out=$("$MESHCTL" --server "$BROKER_URL" stats orders --wait 1000 2>err); ok $? "stats orders exits 0"
row=$(printf '%s\n' "$out" | awk '$1 == "orders" {print $2, $3, $4, $8, $9, $12}')
is "$row" "(2) 150 150 3 4 2" "its row sums the instances' counters (received, processed, malformed, duplicates, in flight)"
has "$(printf '%s\n' "$out" | head -1)" " DEAD MALFORMED " "the table has a MALFORMED column beside DEAD"
has "$out" "  host-a:1 " "and shows each instance"
[ "$(printf '%s\n' "$out" | grep -n 'host-a:1' | cut -d: -f1)" -lt "$(printf '%s\n' "$out" | grep -n 'host-b:2' | cut -d: -f1)" ]
ok $? "in order"
has "$(printf '%s\n' "$out" | awk '$1 == "orders"')" "0.50/1.00/7.25" "its p99 is the largest instance's"
has "$(cat err)" "ignored 1 answer(s) on mesh.service.orders.stats" "the broken answer is reported, not shown"
out=$("$MESHCTL" --server "$BROKER_URL" stats orders --json --wait 1000 2>/dev/null)
is "$(jget "$out" 'j["service"], j["total"]["received"], j["total"]["malformed"], j["total"]["duplicates"], j["total"]["in_flight"], j["total"]["handler_ms"]["p99"], len(j["instances"])')" \
	"orders 150 3 4 2 7.25 2" "--json: the total (malformed summed too) and the instances' own answers"
is "$(jget "$out" 'j["instances"][1]["received"]')" "100" "each instance's answer is kept as it came"
is "$(jget "$out" 'j["total"]["handler_ms"]["count"]')" "150" "the latencies' sample counts are summed"
out=$("$MESHCTL" --server "$BROKER_URL" stats --json --wait 1000 2>/dev/null); ok $? "stats without SERVICE asks every service"
is "$(jget "$out" '[(s["service"], len(s["instances"]), s["total"]["received"]) for s in j["services"]]')" \
	"[('orders', 2, 150), ('shipping', 1, 7)]" "and groups the answers by service"
start=$(date +%s%N)
out=$("$MESHCTL" --server "$BROKER_URL" stats shipping --wait 1500); r=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
ok $r "stats --wait 1500 exits 0"
[ $ms -ge 1500 ] && [ $ms -lt 6000 ]; ok $? "and collects answers for that long, no longer ($ms ms)"
out=$("$MESHCTL" --server "$BROKER_URL" stats shipping --wait 5 2>&1); is $? 2 "--wait under 10 ms is a usage error"

# ---- the real thing: the template service ------------------------------------
if [ -n "$SERVICE" ]; then
	M=("$MESHCTL" --server "$BROKER_URL")
	"${M[@]}" topic create greetings >/dev/null &&
		"${M[@]}" topic create greeted --archive-days 1 >/dev/null
	ok $? "the template's topics are made"
	"$SERVICE" --server "$BROKER_URL" --state var/services/tpl >svc.log 2>&1 &
	svc=$!
	pids+=($svc)
	for _ in $(seq 100); do
		"${M[@]}" stats template-service --wait 300 >/dev/null 2>&1 && break
		sleep 0.1
	done
	out=$("${M[@]}" stats template-service --wait 1000); ok $? "the running template service answers stats"
	for n in ada bob ada; do
		"${M[@]}" topic publish greetings --type evmesh.example.Greet --data "{\"name\":\"$n\"}" >/dev/null
	done
	for _ in $(seq 100); do
		[ "$("$MESHCTL" state get template-service greeted/ada --state var/services/tpl 2>/dev/null)" = 2 ] && break
		sleep 0.1
	done
	out=$("$MESHCTL" state scan template-service greeted/ --state var/services/tpl)
	is "$out" "$(printf 'greeted/ada\t2\ngreeted/bob\t1')" "state scan reads what the running service wrote"
	for _ in $(seq 50); do
		out=$("${M[@]}" topic info greeted --json)
		[ "$(jget "$out" 'j["Attributes"]["MessagesStored"]')" = 3 ] && break
		sleep 0.1
	done
	is "$(jget "$out" 'j["Attributes"]["MessagesStored"]')" 3 "it emitted a Greeted event for each"
	out=$("$MESHCTL" state scan template-service --db processed --state var/services/tpl | wc -l)
	is "$out" 3 "--db reads the runtime's databases: 3 processed ids"
	out=$("${M[@]}" stats template-service --json --wait 1000)
	is "$(jget "$out" 'j["total"]["processed"], len(j["instances"])')" "3 1" "stats counts its 3 events"
	raw_pub mesh.topic.greetings 'garbage!' application/cloudevents+protobuf
	for _ in $(seq 50); do
		out=$("${M[@]}" stats template-service --json --wait 300)
		[ "$(jget "$out" 'j["total"]["malformed"]')" = 1 ] && break
		sleep 0.1
	done
	is "$(jget "$out" 'j["instances"][0]["malformed"], j["total"]["malformed"]')" "1 1" \
		"an event that does not parse: the runtime counts it malformed, and stats sums it"
	has "$("${M[@]}" stats template-service --wait 300)" " MALFORMED " "in its own column"
	out=$("${M[@]}" stats --json --wait 1000)
	has "$out" '"service": "template-service"' "stats without SERVICE finds it"
	out=$("$MESHCTL" state backup template-service tpl-bk --state var/services/tpl); ok $? "state backup of the running service"
	out=$("$MESHCTL" state get template-service greeted/ada --state tpl-bk); is "$out" "2" "and the copy holds its state"

	# Over NATS (the default): the running service answers, no files.
	out=$("${M[@]}" state get template-service greeted/ada); is "$out" "2" "state get over NATS: the service answers"
	out=$("${M[@]}" state get template-service greeted/ada --json)
	is "$(jget "$out" 'j["key"], j["value"], j["size"]')" "greeted/ada 2 1" "--json: key, value, size"
	out=$("${M[@]}" state scan template-service greeted/)
	is "$out" "$(printf 'greeted/ada\t2\ngreeted/bob\t1')" "state scan over NATS"
	out=$("${M[@]}" state scan template-service greeted/ --limit 1 2>err)
	is "$out" "$(printf 'greeted/ada\t2')" "--limit over NATS"
	has "$(cat err)" "there are more" "and says it cut the list"
	out=$("${M[@]}" state scan template-service --db processed | wc -l)
	is "$out" 3 "--db over NATS: 3 processed ids"
	out=$("${M[@]}" state get template-service nope 2>&1); is $? 1 "a missing key over NATS exits 1"
	has "$out" "service 'template-service' has no key 'nope'" "and names the service and the key"
	out=$("${M[@]}" state get template-service k --db tables 2>&1); is $? 2 "an unknown database over NATS exits 2"
	has "$out" "no database 'tables'" "and names it"
	out=$("${M[@]}" state get nosuch k 2>&1); is $? 1 "a service with no running instance exits 1"
	has "$out" "no instance of service 'nosuch' answered" "and says so"
	has "$out" "--state DIR" "and how to read a stopped one"
	out=$("${M[@]}" state backup template-service nats-bk); ok $? "state backup over NATS"
	has "$out" "backed up service 'template-service' to nats-bk" "and says what went where"
	out=$("$MESHCTL" state get template-service greeted/ada --state nats-bk); is "$out" "2" "the copy fetched in chunks holds its state"
	out=$("${M[@]}" state backup template-service nats-bk 2>&1); is $? 1 "into a non-empty directory it exits 1"
	"$SERVICE" --server "$BROKER_URL" --state var/services/tpl >svc2.log 2>&1 &
	svc2=$!
	pids+=($svc2)
	for _ in $(seq 100); do
		out=$("${M[@]}" stats template-service --json 2>/dev/null)
		[ "$(jget "$out" 'len(j["instances"])' 2>/dev/null)" = 2 ] && break
		sleep 0.1
	done
	is "$(jget "$out" 'len(j["instances"]), j["total"]["processed"]')" "2 3" \
		"a second instance on the same state: both answer, the total is kept"
	kill -TERM $svc2; wait $svc2; ok $? "the second stops on SIGTERM, exit 0"
	kill -TERM $svc; wait $svc; ok $? "the service stops on SIGTERM, exit 0"
fi

stop_broker
# What a stand-in said beyond "ready" (a sanitizer's report, say).
for f in *.out; do
	grep -v '^ready$' "$f" | sed "s|^|# $f: |"
done
done_testing
