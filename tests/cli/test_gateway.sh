#!/usr/bin/env bash
# mesh-gateway with real HTTP clients (curl; node's fetch for concurrency):
# meshctl route refusals with nothing stored; every route kind (queue,
# topic, service) with its parameters, headers, request id and trace
# context carried on; every error status (400, 404, 405, 413, 502, 503,
# 504) as JSON with x-request-id; one log line per request; route changes
# applied live; 100 concurrent requests of each kind; a slow service
# holding no thread.
# Usage: test_gateway.sh MESHCTL TEST-BROKER GATEWAY RESPONDER
set -u
MESHCTL=$1
TEST_BROKER=$2
GATEWAY=$3
RESPONDER=$4
here=$(cd "$(dirname "$0")" && pwd)
. "$here/tap.sh"
. "$here/http.sh"
unset NATS_URL NATS_USER NATS_PASSWORD NATS_TOKEN NATS_NKEY NATS_CREDS

start_broker || { echo "Bail out! no broker"; exit 1; }
scratch
export NATS_URL=$BROKER_URL
m() { "$MESHCTL" "$@"; }
routes() { m route list --json | json 'len(d["routes"])'; }

# ---- meshctl route: refusals, nothing stored --------------------------
m queue create po >/dev/null && m topic create ev --archive-days 1 >/dev/null
refused() { # refused EXIT NEEDLE WHAT ARGS...
	local want=$1 needle=$2 what=$3 out
	shift 3
	out=$(m route create "$@" 2>&1)
	is $? "$want" "$what: refused, exit $want"
	has "$out" "$needle" "$what: naming the value"
}
refused 2 "method 'FETCH'" "a bad method" FETCH /x --target queue:po
refused 2 "path '/x/{id': segment 2" "a bad template" GET '/x/{id' --target queue:po
refused 2 "path 'x'" "a relative template" GET x --target queue:po
refused 2 "a greedy '{name+}' must be the last" "a greedy parameter not last" GET '/{p+}/x' --target queue:po
refused 2 "target 'bucket:po'" "a bad target kind" GET /x --target bucket:po
refused 2 "--target is required" "no target" GET /x
refused 1 "target 'queue:nope': the queue does not exist" "a missing queue" POST /x --target queue:nope
refused 1 "target 'topic:nope': the topic does not exist" "a missing topic" POST /x --target topic:nope
refused 1 "type 'evmesh.Nope': not in the schema registry" "an unknown type" POST /x --target queue:po --type evmesh.Nope
refused 2 "header 'X Y'" "a bad header" POST /x --target queue:po --header 'X Y'
is "$(routes)" 0 "nothing stored after the refusals"
out=$(m route create GET '/orders/{id}' --target service:orders --header X-Tenant); ok $? "a service route is created"
refused 1 "route 'GET /orders/{id}' exists" "the same route again" GET '/orders/{id}' --target service:orders
refused 1 "conflicts with route 'GET /orders/{id}'" "a route answering the same requests" GET '/orders/{oid}' --target service:other
refused 1 "conflicts with route 'GET /orders/{id}'" "an ANY route over it" ANY '/orders/{x}' --target service:other
is "$(routes)" 1 "only the first stored"
out=$(m route info GET '/orders/{x}' 2>&1); is $? 1 "info of a route that does not exist: exit 1"
has "$out" "route 'GET /orders/{x}': does not exist" "naming it"
out=$(m route delete PUT '/orders/{id}' 2>&1); is $? 1 "delete of another method's route: exit 1"

m route create POST /orders --target queue:po --type evmesh.shop.PlaceOrder >/dev/null &&
	m route create POST '/raw/{kind}' --target queue:po --header X-Tenant >/dev/null &&
	m route create POST '/events/{kind}' --target topic:ev >/dev/null &&
	m route create ANY '/svc/{proxy+}' --target service:orders >/dev/null &&
	m route create GET /lost --target service:nobody >/dev/null &&
	m route create PUT '/typed/{id}' --target service:orders --type evmesh.shop.PlaceOrder >/dev/null
ok $? "queue, topic, greedy, ANY and typed service routes created"
has "$(m route list)" "ANY     /svc/{proxy+}" "listed"

# ---- the gateway --------------------------------------------------------
mkfifo "$tmp/hold"
exec 7<>"$tmp/hold" # the stand-in reads it and stops when it closes
"$RESPONDER" "$BROKER_URL" orders 3000 <"$tmp/hold" >"$tmp/resp.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q ready "$tmp/resp.out" && break; sleep 0.05; done
is "$(cat "$tmp/resp.out")" "ready" "the stand-in service is ready"
start_gateway "$GATEWAY" --timeout-ms 500 --max-body 4096
is "$(grep -c '"msg":"route ' "$tmp/gw.log")" "7" "it read the 7 routes"

# A service route.
tp=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01
req "$U/orders/a%20b?x=1&y=2" -H 'X-Tenant: acme' -H 'X-Request-Id: rq-1' \
	-H "traceparent: $tp" -H 'Idempotency-Key: k-1'
is "$status" 200 "GET through a service route: 200"
is "$(hdr x-request-id)" "rq-1" "the client's X-Request-Id answered"
is "$(hdr x-echo)" "yes" "a reply's Mesh-Header-X-Echo is the response's X-Echo"
is "$(hdr content-type)" "application/json" "the reply's Content-Type"
is "$(printf '%s' "$body" | json 'd["params"]["id"]')" "a b" "Mesh-Param-id percent-decoded"
is "$(printf '%s' "$body" | json 'd["route"]')" "GET /orders/{id}" "Mesh-Route: the route's key"
is "$(printf '%s' "$body" | json 'd["method"] + " " + d["path"] + " " + d["query"]')" \
	"GET /orders/a%20b x=1&y=2" "Mesh-Method, Mesh-Path, Mesh-Query"
is "$(printf '%s' "$body" | json 'd["headers"]["X-Tenant"]')" "acme" "Mesh-Header-X-Tenant forwarded"
is "$(printf '%s' "$body" | json 'd["requestId"] + " " + d["idempotencyKey"]')" "rq-1 k-1" \
	"Mesh-Request-Id and Idempotency-Key"
sent_tp=$(printf '%s' "$body" | json 'd["traceparent"]')
is "${sent_tp:0:35}" "${tp:0:35}" "traceparent: the client's trace carried on"
ok $([ "${sent_tp:36:16}" != "${tp:36:16}" ] && [ ${#sent_tp} -eq 55 ]; echo $?) "with the gateway's own span"
grep '"request_id":"rq-1"' "$tmp/gw.log" >"$tmp/line"
is "$(wc -l <"$tmp/line")" 1 "one log line for the request"
for f in '"method":"GET"' '"path":"/orders/a%20b"' '"route":"GET /orders/{id}"' '"status":200' \
	'"ms":' '"trace_id":"0af7651916cd43dd8448eb211c80319c"'; do
	has "$(cat "$tmp/line")" "$f" "the log line has $f"
done
req "$U/orders/x" -H 'X-Request-Id: bad id!' -H 'traceparent: 00-00000000000000000000000000000000-b7ad6b7169203331-01'
is "$status" 200 "a bad X-Request-Id and traceparent: still 200"
rid=$(hdr x-request-id)
ok $([[ $rid =~ ^[0-9a-f-]{36}$ ]]; echo $?) "a new request id instead ($rid)"
sent_tp=$(printf '%s' "$body" | json 'd["traceparent"]')
ok $([[ $sent_tp =~ ^00-[0-9a-f]{32}-[0-9a-f]{16}-01$ ]] && [ "${sent_tp:3:32}" != 00000000000000000000000000000000 ]; echo $?) \
	"a new trace instead ($sent_tp)"
req -X PATCH "$U/svc/deep/er/path" -d 'raw text' -H 'Content-Type: text/plain'
is "$status" 200 "ANY with a greedy parameter: PATCH answered"
is "$(printf '%s' "$body" | json 'd["params"]["proxy"] + "|" + d["body"] + "|" + d["contentType"]')" \
	"deep/er/path|raw text|text/plain" "the rest of the path, the raw body, its Content-Type"
req -X PUT "$U/typed/7" -H 'Content-Type: application/json' -d '{ "orderId" : "o-7" }'
is "$status" 200 "a body fitting a service route's type: answered"
is "$(printf '%s' "$body" | json 'd["body"]')" '{ "orderId" : "o-7" }' "the body passed on as it came"
req -X PUT "$U/typed/7" -d '{"orderId":7}'
error 400 'field \"orderId\"' "a body not fitting a service route's type, naming the field"
req "$U/svc/status/418"
is "$status" 418 "the reply's Mesh-Status is the HTTP status"

# A queue route with a type, and a raw one.
req -X POST "$U/orders" -H 'Content-Type: application/json' -H "traceparent: $tp" \
	-d '{"orderId":"o-1","customer":"ann","items":[{"sku":"s","quantity":2}]}'
is "$status" 202 "POST JSON to a typed queue route: 202"
mid=$(printf '%s' "$body" | json 'd["MessageId"]')
ok $([ -n "$mid" ]; echo $?) "with its MessageId"
got=$(m queue receive po --json --max 1)
is "$(printf '%s' "$got" | json 'd["Messages"][0]["MessageId"]')" "$mid" "the message is stored in the queue"
has "$got" '"orderId": "o-1"' "as the PlaceOrder, read back as JSON"
req -X POST "$U/raw/gift" -H 'X-Tenant: acme' -H 'Content-Type: text/plain' -d 'hello'
is "$status" 202 "POST raw text to a queue route: 202"
got=$(m queue receive po --json --max 1 --visibility-timeout 60)
has "$got" '"Body": "hello"' "the raw body stored"
has "$got" '"kind"' "the path parameter as a message attribute"
has "$got" '"X-Tenant"' "the header as a message attribute"
# The event's envelope carries the trace: read as any NATS client would,
# a core subscription on the queue's subject.
hostport=${BROKER_URL#nats://}
exec 4<>"/dev/tcp/${hostport%:*}/${hostport##*:}"
printf 'CONNECT {"verbose":false}\r\nSUB mesh.queue.po 1\r\nPING\r\n' >&4
timeout 5 grep -qam1 PONG <&4
req -X POST "$U/raw/traced" -H "traceparent: $tp" -H 'Content-Type: text/plain' -d 'traced'
is "$status" 202 "POST with a traceparent: 202"
got=$(timeout 5 grep -aom1 '00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]\{16\}-01' <&4)
exec 4>&-
ok $([ -n "$got" ] && [ "${got:36:16}" != "${tp:36:16}" ]; echo $?) \
	"the event's traceparent: the client's trace, the gateway's span (${got:-none})"
m queue purge po >/dev/null
req -X POST "$U/events/signup" -d '{"any":"json"}' -H 'Content-Type: application/json'
is "$status" 202 "POST to a topic route: 202"
is "$(m topic info ev --json | json 'd["Attributes"]["MessagesStored"]')" 1 \
	"stored in the topic"

# Errors.
req -X POST "$U/orders" -d '{"orderId": '
error 400 "as JSON: line 1 column" "malformed JSON"
req -X POST "$U/orders" -d '{"orderId":"o","nope":1}'
error 400 'unknown field \"nope\"' "an unknown field"
req -X POST "$U/orders" -d '{"orderId":"o","items":[{"quantity":"many"}]}'
error 400 'items[0].quantity' "a field of the wrong type, named"
req "$U/nothing/here"
error 404 "no route for GET /nothing/here" "an unknown path"
req -X DELETE "$U/orders"
error 405 "method DELETE not allowed" "another method"
is "$(hdr allow)" "POST" "405: Allow: POST"
head -c 5000 /dev/zero | tr '\0' a >"$tmp/big"
req -X POST "$U/raw/big" --data-binary @"$tmp/big"
error 413 "larger than 4096 bytes" "a body over --max-body (Content-Length)"
req -X POST "$U/raw/big" -H 'Transfer-Encoding: chunked' --data-binary @"$tmp/big"
error 413 "larger than 4096 bytes" "a chunked body over --max-body"
req "$U/lost"
error 503 "no instance answers" "a service without instances"
start=$(date +%s%N)
req "$U/svc/slow"
error 504 "no answer within 500 ms" "a slow service"
ms=$((($(date +%s%N) - start) / 1000000))
ok $([ "$ms" -ge 450 ] && [ "$ms" -lt 2500 ]; echo $?) "504 after the timeout ($ms ms)"
req "$U/svc/bad-status"
error 502 "Mesh-Status 'abc' is not an HTTP status" "a reply that is not one"

# Route changes, live.
m route create GET /live --target service:orders >/dev/null
for _ in $(seq 50); do req "$U/live"; [ "$status" = 200 ] && break; sleep 0.1; done
is "$status" 200 "a route created while it runs is answered"
m route delete GET /live >/dev/null
for _ in $(seq 50); do req "$U/live"; [ "$status" = 404 ] && break; sleep 0.1; done
is "$status" 404 "a route deleted while it runs is gone"
m route delete GET '/orders/{id}' >/dev/null && m route create GET '/orders/{id}' --target service:orders >/dev/null
for _ in $(seq 50); do req "$U/orders/1" -H 'X-Tenant: t'; [ "$(printf '%s' "$body" | json 'len(d["headers"])' 2>/dev/null)" = 0 ] && break; sleep 0.1; done
is "$(printf '%s' "$body" | json 'len(d["headers"])' 2>/dev/null)" 0 "a route changed: its new headers apply"

# Concurrency (node's fetch).
if command -v node >/dev/null; then
	m route create GET '/orders/{id}' --target service:orders 2>/dev/null
	m queue purge po >/dev/null
	load=$(node "$here/gateway_load.mjs" "$U")
	ok $? "the node client ran"
	diag "$load"
	is "$(printf '%s' "$load" | json 'd["service_ok"]')" 100 "100 concurrent service requests, each answered with its own"
	is "$(printf '%s' "$load" | json 'd["queue_ok"]')" 100 "100 concurrent events: 202"
	is "$(printf '%s' "$load" | json 'd["queue_unique_ids"]')" 100 "with 100 distinct MessageIds"
	is "$(m queue info po --json | json 'd["Attributes"]["ApproximateNumberOfMessages"]')" 100 "all 100 stored"
	is "$(printf '%s' "$load" | json 'd["slow_status"]')" 504 "a slow request beside them: 504"
	is "$(printf '%s' "$load" | json 'd["fast_ok"]')" 20 "20 fast requests meanwhile: 200"
	ok $(printf '%s' "$load" | json 'int(d["fast_max_ms"] < d["slow_ms"])' | grep -q 1; echo $?) \
		"each before the slow one's 504 (it holds no thread)"
else
	ok 1 "node is not installed (deploy/bootstrap installs nodejs)"
fi

# The log: one line per request answered.
kill -TERM "$gw"
wait "$gw"
is $? 0 "SIGTERM: the gateway exits 0"
lines=$(grep -c '"msg":"request"' "$tmp/gw.log")
ok $([ "$lines" -ge 240 ]; echo $?) "a log line per request ($lines)"
is "$(grep -o '"request_id":"[^"]*"' "$tmp/gw.log" | sort | uniq -d)" "" "none logged twice"
is "$(grep '"msg":"request"' "$tmp/gw.log" | grep -vc '"request_id":"[^"]\+".*"trace_id":"[0-9a-f]\{32\}"')" 0 \
	"each with its request id and trace id"
out=$("$GATEWAY" --listen nowhere 2>&1); is $? 2 "--listen without a port: exit 2"
has "$out" "--listen 'nowhere'" "naming it"
out=$("$GATEWAY" --timeout-ms 0 2>&1); is $? 2 "--timeout-ms 0: exit 2"
has "$out" "--timeout-ms '0'" "naming it"

# ---- HTTPS ----------------------------------------------------------------
# A CA and a certificate it signs for 127.0.0.1, made here with openssl.
tls=$tmp/tls
mkdir -p "$tls"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -days 2 -subj /CN=evmesh-test-ca \
	-keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null &&
	openssl req "${ec[@]}" -subj /CN=localhost -keyout "$tls/server.key" \
		-out "$tls/server.csr" 2>/dev/null &&
	printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" \
		"extendedKeyUsage=serverAuth" >"$tls/ext" &&
	openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" \
		-set_serial 7 -days 2 -extfile "$tls/ext" -out "$tls/server.pem" 2>/dev/null &&
	openssl req "${ec[@]}" -subj /CN=other -keyout "$tls/other.key" \
		-out "$tls/other.csr" 2>/dev/null
ok $? "openssl made a CA, a server certificate and another key"
start_gateway "$GATEWAY" --tls-cert "$tls/server.pem" --tls-key "$tls/server.key"
has "$(grep '"listening on' "$tmp/gw.log")" ", HTTPS," "the gateway says it speaks HTTPS"
req --cacert "$tls/ca.pem" -X POST "https://127.0.0.1:$port/orders" \
	-d '{"orderId":"o-tls","customer":"ann","items":[{"sku":"s","quantity":1}]}'
is "$status" 202 "a POST over HTTPS, its certificate verified against the CA: 202"
has "$body" '"MessageId"' "with its MessageId"
req --cacert "$tls/ca.pem" "https://127.0.0.1:$port/nowhere"
error 404 "no route" "an unknown path over HTTPS"
curl -s -o /dev/null "https://127.0.0.1:$port/orders"
is $? 60 "a client that does not trust the CA refuses the certificate (curl exit 60)"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$port/nowhere")
ok $([ "$code" = 000 ]; echo $?) "plain HTTP to the HTTPS port gets no HTTP answer"
kill -TERM "$gw"
wait "$gw"
is $? 0 "SIGTERM: the HTTPS gateway exits 0"
out=$("$GATEWAY" --tls-cert "$tls/server.pem" 2>&1); is $? 2 "--tls-cert without --tls-key: exit 2"
has "$out" "--tls-cert without --tls-key" "naming both"
out=$("$GATEWAY" --listen 127.0.0.1:0 --tls-cert "$tls/none.pem" --tls-key "$tls/server.key" 2>&1)
is $? 1 "a certificate file that does not exist: exit 1"
has "$out" "--tls-cert '$tls/none.pem'" "naming it"
out=$("$GATEWAY" --listen 127.0.0.1:0 --tls-cert "$tls/ext" --tls-key "$tls/server.key" 2>&1)
is $? 2 "a certificate file that is not PEM: exit 2"
has "$out" "--tls-cert '$tls/ext': not PEM" "naming it"
out=$("$GATEWAY" --listen 127.0.0.1:0 --tls-cert "$tls/server.pem" --tls-key "$tls/other.key" 2>&1)
is $? 2 "a key that is not the certificate's: exit 2"
has "$out" "--tls-key '$tls/other.key'" "naming the files"
diag "$out"
done_testing
