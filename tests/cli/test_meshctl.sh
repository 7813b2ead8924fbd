#!/usr/bin/env bash
# meshctl as a user meets it: help, versions, errors, and a real broker.
# Usage: test_meshctl.sh MESHCTL TEST-BROKER
set -u
MESHCTL=$1
TEST_BROKER=$2
. "$(dirname "$0")/tap.sh"
unset NATS_URL NATS_USER NATS_PASSWORD NATS_TOKEN NATS_NKEY NATS_CREDS
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

out=$("$MESHCTL" version); ok $? "meshctl version exits 0"
has "$out" "meshctl 0." "and prints the version"
out=$("$MESHCTL" --json version); has "$out" '"version"' "--json before the command gives JSON"
out=$("$MESHCTL" version --json); has "$out" '"version"' "--json after the command gives JSON"

"$MESHCTL" >/dev/null 2>&1; is $? 2 "no command is a usage error (exit 2)"
out=$("$MESHCTL" --help); ok $? "meshctl --help exits 0"
cmds=$(printf '%s\n' "$out" | sed -n '/^Commands:/,/^$/p' | awk 'NR>1 && NF {print $1}')
[ -n "$cmds" ]; ok $? "--help lists the commands"
for c in $cmds; do
	h=$("$MESHCTL" "$c" --help); r=$?
	ok $r "meshctl $c --help exits 0"
	has "$h" "Usage: meshctl $c" "meshctl $c --help shows its usage"
	# and each of its own commands (queue send, topic tail, ...)
	subs=$(printf '%s\n' "$h" | sed -n '/^Commands:/,/^$/p' | awk 'NR>1 && NF {print $1}')
	[ -n "$subs" ] || continue
	bad=""
	for s in $subs; do
		"$MESHCTL" "$c" "$s" --help | grep -q "^Usage: meshctl $c $s" || bad="$bad $c $s"
	done
	is "$bad" "" "each of the $(echo $subs | wc -w) 'meshctl $c ...' commands has --help"
done
out=$("$MESHCTL" --output yaml version 2>&1); is $? 2 "--output takes text or json only"
has "$out" "--output 'yaml': must be text or json" "and names the value"
out=$("$MESHCTL" version --output json); has "$out" '"version"' "--output json is --json"
out=$("$MESHCTL" bogus 2>&1); is $? 2 "an unknown command exits 2"
has "$out" "unknown command 'bogus'" "and names the command"
out=$("$MESHCTL" version --bogus 2>&1); is $? 2 "an unknown option exits 2"
has "$out" "unknown option '--bogus'" "and names the option"
out=$("$MESHCTL" ping --server 2>&1); is $? 2 "--server without a URL exits 2"

start=$(date +%s%N)
out=$("$MESHCTL" --server nats://127.0.0.1:1 ping 2>&1); r=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
is $r 1 "an unreachable server exits 1"
is "$out" "meshctl ping: cannot reach NATS at nats://127.0.0.1:1: connection refused" \
	"and says where and why"
[ $ms -lt 5000 ]; ok $? "within 5 seconds ($ms ms)"
out=$(NATS_URL=nats://127.0.0.1:2 "$MESHCTL" smoke 2>&1)
has "$out" "nats://127.0.0.1:2" "NATS_URL is honoured"

out=$("$MESHCTL" --server nats://127.0.0.1:1 schedule next 'rate(1 day)' 2>&1)
is $? 1 "schedule next needs the mesh (the scheduler computes it)"
has "$out" "cannot reach NATS" "and says so"

start_broker; ok $? "a broker starts"
out=$("$MESHCTL" --server "$BROKER_URL" smoke); ok $? "smoke runs against it"
has "$out" "round trip" "and prints the round trip"
out=$(NATS_URL=$BROKER_URL "$MESHCTL" smoke --json); ok $? "smoke runs again, with NATS_URL"
has "$out" '"sequence": 2' "and reuses the stream (second message)"
out=$("$MESHCTL" ping --server "$BROKER_URL"); ok $? "ping works"
has "$out" "connected to $BROKER_URL" "and names the server"
stop_broker

# TLS: a CA of our own signs the server's certificate for 127.0.0.1.
if command -v openssl >/dev/null; then
	(
		cd "$tmp" &&
		openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=evmesh-test-ca \
			-keyout ca.key -out ca.pem &&
		openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 \
			-keyout server.key -out server.csr &&
		printf 'subjectAltName=IP:127.0.0.1\n' > san.ext &&
		openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
			-days 1 -extfile san.ext -out server.pem
	) >/dev/null 2>&1
	ok $? "a test CA and server certificate are made"
	start_broker "tls { cert_file: \"$tmp/server.pem\", key_file: \"$tmp/server.key\" }"
	ok $? "a TLS broker starts"
	out=$("$MESHCTL" --server "$BROKER_URL" --tls-ca "$tmp/ca.pem" ping 2>&1)
	ok $? "ping over TLS with the CA works"
	out=$("$MESHCTL" --server "$BROKER_URL" ping 2>&1); r=$?
	is $r 1 "without the CA the server is not trusted (exit 1)"
	has "$out" "$BROKER_URL" "and the error names the server"
	out=$("$MESHCTL" --server "$BROKER_URL" --tls-ca /nonexistent ping 2>&1)
	has "$out" "/nonexistent" "a missing CA file is named"
	stop_broker
else
	echo "# openssl is not installed: TLS checks skipped"
fi

done_testing
