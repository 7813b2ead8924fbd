# TAP helpers for shell tests: source it, call ok/is/has, end with done_testing.
tap_n=0
tap_failed=0

ok() { # ok CONDITION-EXIT-CODE DESCRIPTION; returns as the condition
	tap_n=$((tap_n + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $tap_n - $2"
	else
		echo "not ok $tap_n - $2"
		tap_failed=$((tap_failed + 1))
	fi
	[ "$1" -eq 0 ]
}

is() { # is GOT WANT DESCRIPTION
	[ "$1" = "$2" ]
	local r=$?
	ok $r "$3"
	[ $r -eq 0 ] || diag "  got:  $1" "  want: $2"
	return $r
}

diag() { # diag LINE...: each line of each argument as a TAP comment
	local a
	for a in "$@"; do sed 's/^/# /' <<<"$a"; done
}

has() { # has HAYSTACK NEEDLE DESCRIPTION
	case "$1" in *"$2"*) ok 0 "$3" ;; *)
		ok 1 "$3"
		diag "  $1" "  does not contain: $2" ;;
	esac
}

# field KEY.0.KEY: a value of the JSON document on standard input.
field() { python3 -c 'import json,sys; d=json.load(sys.stdin)
for k in sys.argv[1].split("."): d=d[int(k)] if k.isdigit() else d[k]
print(d)' "$1"; }

done_testing() {
	echo "1..$tap_n"
	[ "$tap_failed" -eq 0 ]
	exit $?
}

# start_broker [EXTRA-CONF]: a nats-server of our own in $BROKER_URL and
# $BROKER_DIR; it stops when this shell ends (its stdin pipe closes).
start_broker() {
	coproc BROKER { "$TEST_BROKER" "$@"; }
	read -r BROKER_URL BROKER_DIR <&"${BROKER[0]}" || return 1
	export BROKER_URL BROKER_DIR
}

stop_broker() {
	local pid=$BROKER_PID
	eval "exec ${BROKER[1]}>&-"
	wait "$pid" 2>/dev/null
}

# scratch: $tmp, a temporary folder, and $pids, the background programs a
# test starts (pids+=($!)); when the shell exits the programs are killed
# and the folder removed.
scratch() {
	tmp=$(mktemp -d)
	pids=()
	trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$tmp"' EXIT
}

# on_tty ANSWER CMD...: run CMD with a terminal on its standard input (for
# prompts), typing ANSWER and Enter; its exit code, and what it wrote.
on_tty() {
	local answer=$1
	shift
	printf '%s\n' "$answer" | script -qec "$(printf '%q ' "$@")" /dev/null
}

# raw_pub SUBJECT BODY [CONTENT-TYPE]: publish to $BROKER_URL as a plain
# NATS client in any language would (no evmesh library), with a
# Content-Type header when one is given.
raw_pub() {
	local hostport=${BROKER_URL#nats://} hdr=""
	[ -n "${3:-}" ] && hdr=$'NATS/1.0\r\nContent-Type: '"$3"$'\r\n\r\n'
	exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}"
	if [ -n "$hdr" ]; then
		printf 'CONNECT {"verbose":false,"headers":true}\r\nHPUB %s %d %d\r\n%s%s\r\nPING\r\n' \
			"$1" ${#hdr} $((${#hdr} + ${#2})) "$hdr" "$2" >&3
	else
		printf 'CONNECT {"verbose":false}\r\nPUB %s %d\r\n%s\r\nPING\r\n' "$1" ${#2} "$2" >&3
	fi
	timeout 5 grep -qam1 PONG <&3
	exec 3>&-
}
