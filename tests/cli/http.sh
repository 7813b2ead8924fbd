# http.sh: HTTP helpers for the shell tests of mesh-gateway, sourced after
# tap.sh and scratch (they use $tmp and $pids).

# json EXPR: EXPR (Python, the document as d) of the JSON on standard input.
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }

# start_gateway GATEWAY ARGS...: mesh-gateway on a free loopback port, its
# log in $tmp/gw.log; sets gw (its pid, in pids), port and U (its base
# URL). Fails, the log in a TAP comment, when it does not listen in 10 s.
start_gateway() {
	local bin=$1
	shift
	"$bin" --listen 127.0.0.1:0 "$@" 2>"$tmp/gw.log" &
	gw=$!
	pids+=($gw)
	for _ in $(seq 100); do grep -qs '"listening on' "$tmp/gw.log" && break; sleep 0.1; done
	port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\),.*/\1/p' "$tmp/gw.log")
	U=http://127.0.0.1:$port
	ok $([ -n "$port" ]; echo $?) "the gateway listens (port ${port:-none})" ||
		diag "$(cat "$tmp/gw.log")"
}

# req ARGS...: curl; sets $status, $hdrs (lower-case names) and $body.
req() {
	local out
	out=$(curl -s -D "$tmp/h" -o "$tmp/b" -w '%{http_code}' "$@")
	status=$out
	hdrs=$(tr -d '\r' <"$tmp/h" | sed 's/^[^:]*:/\L&/')
	body=$(cat "$tmp/b")
}
# hdr NAME: the last response's header NAME (lower case).
hdr() { printf '%s\n' "$hdrs" | sed -n "s/^$1: //p" | tail -n 1; }
# error STATUS NEEDLE WHAT: the answer is that status, a JSON error naming
# the fault, its requestId the x-request-id header.
error() {
	is "$status" "$1" "$3: $1"
	has "$body" "$2" "$3: the message says why"
	is "$(printf '%s' "$body" | json 'd["requestId"]' 2>/dev/null)" "$(hdr x-request-id)" \
		"$3: requestId is the x-request-id"
}
