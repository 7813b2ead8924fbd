#!/usr/bin/env bash
# deploy/hosts/make-host: a 3-host set is written; every unit passes
# systemd-analyze verify without a warning; each host's nats-server config
# passes nats-server -t, and the three servers, started from them on
# loopback (127.0.0.1-3), form a JetStream cluster that carries a queue
# round trip from one host to another; the mesh daemons run from their
# units' ExecStart lines against it and stop cleanly; bad input exits 2
# naming the value, and writes nothing.
# Usage: test_hosts.sh MESHCTL MESH-ROUTER MESH-SCHEDULER ORDERS
set -u
MESHCTL=$1
. "$(dirname "$0")/tap.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
make_host=$root/deploy/hosts/make-host
unset NATS_URL NATS_USER NATS_PASSWORD NATS_TOKEN NATS_NKEY NATS_CREDS
scratch

# The programs' folder, as `meson install` makes it: the units' ExecStart
# paths exist.
mkdir "$tmp/bin"
for p in "$2" "$3" "$4"; do ln -s "$p" "$tmp/bin/"; done

# Three ports free on every loopback address.
read -r cport rport mport < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("0.0.0.0", 0))
print(*(s.getsockname()[1] for s in ss))')
hosts=(--host n1=127.0.0.1 --host n2=127.0.0.2 --host n3=127.0.0.3)
ports=(--client-port "$cport" --cluster-port "$rport" --monitor-port "$mport")
url() { echo "nats://127.0.0.$1:$cport"; }

out=$("$make_host" --help); ok $? "make-host --help exits 0"
for o in --host --this --out --client-port --cluster-port --monitor-port \
	--bin-dir --state-dir --store --replicas; do
	has "$out" "$o" "and documents $o"
done

for n in 1 2 3; do
	out=$("$make_host" "${hosts[@]}" --this n$n --out "$tmp/n$n" "${ports[@]}" \
		--bin-dir "$tmp/bin" --state-dir "$tmp/state$n" --replicas 3 2>&1)
	ok $? "make-host writes host n$n"
done
has "$out" "--bin-dir '$tmp/bin' is under /tmp, which each unit sees as its own empty one (PrivateTmp=yes)" \
	"and warns of a folder the units' sandbox hides"
has "$out" "its daemons use --server $(url 3),$(url 1),$(url 2)" \
	"and gives the daemons every host, this one first"
units=$tmp/n1/etc/systemd/system
conf=$tmp/n1/etc/evmesh/nats-server.conf
is "$(cd "$tmp/n1" && find . -type f | sort | tr '\n' ' ')" \
	"./etc/evmesh/nats-server.conf ./etc/systemd/system/evmesh-nats.service ./etc/systemd/system/evmesh-service@.service ./etc/systemd/system/mesh-router.service ./etc/systemd/system/mesh-scheduler.service ./etc/sysusers.d/evmesh.conf ./etc/tmpfiles.d/evmesh.conf " \
	"a host's tree: its nats config, four units, the user, the folders"
c=$(cat "$conf")
has "$c" "server_name: n1" "the config names its server"
has "$c" "listen: \"127.0.0.1:$cport\"" "listens on its address"
has "$c" "http: \"127.0.0.1:$mport\"" "serves monitoring"
has "$c" "max_payload: 2MB" "takes SQS's largest message"
has "$c" "\"nats-route://127.0.0.2:$rport\"
    \"nats-route://127.0.0.3:$rport\"" "routes to the two others"
[[ "$c" != *"nats-route://127.0.0.1:"* ]]; ok $? "and not to itself"
has "$c" "store_dir: \"$tmp/state1/nats\"" "keeps JetStream under the state folder"
u=$(cat "$units/mesh-scheduler.service")
has "$u" "ExecStart=$tmp/bin/mesh-scheduler --server $(url 1),$(url 2),$(url 3) --state $tmp/state1/scheduler --id n1" \
	"the scheduler replica is named after its host"
has "$u" "After=network-online.target time-sync.target evmesh-nats.service" \
	"and starts after the network and the host's broker"
has "$u" "Environment=MESH_REPLICAS=3" "--replicas sets MESH_REPLICAS"
has "$u" "ReadWritePaths=$tmp/state1/scheduler" \
	"a folder outside /var/lib is writable through ReadWritePaths"
has "$(cat "$tmp/n1/etc/tmpfiles.d/evmesh.conf")" \
	"d $tmp/state1/scheduler 0750 evmesh evmesh -" "and made by tmpfiles.d"
has "$(cat "$units/evmesh-service@.service")" \
	"ExecStart=$tmp/bin/%i --server $(url 1),$(url 2),$(url 3) --state $tmp/state1/services/%i" \
	"a service instance runs BIN_DIR/NAME with its own state"
for k in User=evmesh ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
	NoNewPrivileges=yes Restart=on-failure RestartSec=2s; do
	n=$(grep -lx "$k" "$units"/*.service | wc -l)
	is "$n" 4 "every unit has $k"
done
[[ "$(cat "$units/evmesh-nats.service")" != *MESH_REPLICAS* ]]
ok $? "the broker's unit has no MESH_REPLICAS"

# The default folders, under /var/lib: systemd makes them.
"$make_host" "${hosts[@]}" --this n1 --out "$tmp/var" --bin-dir "$tmp/bin" \
	>/dev/null 2>&1
ok $? "make-host writes the default folders"
has "$(cat "$tmp/var/etc/systemd/system/evmesh-service@.service")" \
	"StateDirectory=evmesh/services/%i" \
	"under /var/lib a service's state is a StateDirectory of its own"
has "$(cat "$tmp/var/etc/systemd/system/evmesh-nats.service")" \
	"StateDirectory=evmesh/nats" "and so is the JetStream store"
[ ! -e "$tmp/var/etc/tmpfiles.d" ]; ok $? "and no tmpfiles.d is needed"
has "$(cat "$tmp/var/etc/systemd/system/mesh-router.service")" \
	"ExecStart=$tmp/bin/mesh-router --server nats://127.0.0.1:4222,nats://127.0.0.2:4222,nats://127.0.0.3:4222" \
	"the client port is 4222 by default"
has "$(cat "$tmp/var/etc/evmesh/nats-server.conf")" \
	"listen: \"127.0.0.1:6222\"" "the cluster port 6222"

# systemd-analyze verify: every unit, the template as an instance.
if command -v systemd-analyze >/dev/null; then
	for d in n1 n2 n3 var; do
		v=$(cd "$tmp/$d/etc/systemd/system" && systemd-analyze verify \
			evmesh-nats.service mesh-router.service mesh-scheduler.service \
			evmesh-service@orders.service 2>&1)
		ok $? "systemd-analyze verify passes $d's units"
		is "$v" "" "without a word"
	done
	v=$(cd "$units" && systemd-analyze verify evmesh-service@nope.service 2>&1)
	[ $? -ne 0 ] && [[ "$v" == *"$tmp/bin/nope is not executable"* ]]
	ok $? "and fails an instance with no program (it checks ExecStart)"
	v=$(cd "$units" && systemd-analyze security --offline=yes mesh-router.service 2>&1 |
		tail -n 1)
	[[ "$v" =~ exposure\ level.*:\ ([0-9.]+) ]] && echo "# security: $v"
	awk -v s="${BASH_REMATCH[1]:-10}" 'BEGIN { exit !(s <= 3.5) }'
	ok $? "systemd-analyze security rates a unit's exposure 3.5 or less"
else
	ok 0 "# SKIP systemd-analyze is not installed (Debian: systemd)"
fi

# The three nats-servers from their configs.
for n in 1 2 3; do
	nats-server -c "$tmp/n$n/etc/evmesh/nats-server.conf" -t >/dev/null 2>&1
	ok $? "nats-server -t accepts n$n's config"
done
for n in 1 2 3; do
	nats-server -c "$tmp/n$n/etc/evmesh/nats-server.conf" \
		-l "$tmp/nats$n.log" &
	pids+=($!)
	eval "nats$n=$!"
done
for n in 1 2 3; do
	for _ in $(seq 1 100); do
		"$MESHCTL" --server "$(url $n)" ping >/dev/null 2>&1 && break
		sleep 0.1
	done
	"$MESHCTL" --server "$(url $n)" ping >/dev/null; ok $? "n$n answers a ping"
done
monitor() { # monitor N PATH: GET a monitoring page of server N
	exec 3<>"/dev/tcp/127.0.0.$1/$mport" || return 1
	printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.%s\r\n\r\n' "$2" "$1" >&3
	timeout 5 cat <&3
	exec 3>&-
}
has "$(monitor 2 /routez)" '"num_routes": 2' "n2 has routes to the two others"
leader=""
for _ in $(seq 1 200); do
	leader=$(monitor 3 /jsz | python3 -c '
import json, sys
body = sys.stdin.read().split("\r\n\r\n", 1)[1]
m = json.loads(body).get("meta_cluster", {})
print(m.get("leader", "") if m.get("cluster_size") == 3 else "")' 2>/dev/null)
	[ -n "$leader" ] && break
	sleep 0.1
done
[ -n "$leader" ]; ok $? "JetStream's cluster of 3 has a leader ($leader)"

all=$(url 1),$(url 2),$(url 3)
for _ in $(seq 1 50); do
	"$MESHCTL" --server "$(url 1)" queue create hosts-q >/dev/null 2>&1 && break
	sleep 0.2
done
"$MESHCTL" --server "$(url 1)" queue create hosts-q >/dev/null
ok $? "a queue is created through n1"
"$MESHCTL" --server "$(url 2)" queue send hosts-q --body "across hosts" >/dev/null
ok $? "a message sent through n2"
out=$("$MESHCTL" --server "$(url 3)" queue receive hosts-q --wait 5)
has "$out" "across hosts" "is received through n3"
receipt=$(awk '/^ReceiptHandle/ {print $2}' <<<"$out")
"$MESHCTL" --server "$all" queue delete-message hosts-q "$receipt" >/dev/null
ok $? "and deleted through the list of all three"

# The daemons as their units run them (ExecStart, %i filled in).
for q in place-order orders-summary; do
	"$MESHCTL" --server "$all" queue create $q >/dev/null
done
for t in orders shipments; do
	"$MESHCTL" --server "$all" topic create $t >/dev/null
done
run_unit() { # run_unit UNIT [INSTANCE]: its ExecStart in the background
	local line
	line=$(sed -n 's/^ExecStart=//p' "$units/$1" | sed "s/%i/${2:-}/g")
	read -ra cmd <<<"$line"
	"${cmd[@]}" 2>"$tmp/$1${2:-}.log" &
	pids+=($!)
	unit_pid=$!
}
for u in mesh-router.service mesh-scheduler.service "evmesh-service@.service orders"; do
	read -r file inst <<<"$u"
	run_unit "$file" "$inst"
	log=$tmp/$file$inst.log
	for _ in $(seq 1 100); do
		grep -q '"started' "$log" 2>/dev/null && break
		sleep 0.1
	done
	has "$(cat "$log")" '"started' "${inst:-$file} starts from its unit's ExecStart"
	kill -TERM "$unit_pid"
	wait "$unit_pid"
	ok $? "and stops with 0 on SIGTERM (systemctl stop)"
done
[ -f "$tmp/state1/scheduler/data.mdb" ]; ok $? "the scheduler's state is in its folder"
[ -f "$tmp/state1/services/orders/data.mdb" ]; ok $? "and orders' in services/orders"

for n in 1 2 3; do
	eval "kill -INT \$nats$n; wait \$nats$n"
	ok $? "n$n stops with 0 on SIGINT (the unit's KillSignal)"
done

# A single host: no cluster block; IPv6 addresses in brackets.
"$make_host" --host solo=127.0.0.1 --this solo --out "$tmp/solo" \
	--bin-dir "$tmp/bin" --state-dir "$tmp/solo-state" >/dev/null 2>&1
ok $? "make-host writes a single host"
[[ "$(cat "$tmp/solo/etc/evmesh/nats-server.conf")" != *"cluster {"* ]]
ok $? "with no cluster block"
"$make_host" --host 'a=[::1]' --host 'b=[fd00::2]' --host c=node-c.example.net \
	--this a --out "$tmp/v6" --bin-dir "$tmp/bin" --state-dir "$tmp/v6s" >/dev/null 2>&1
ok $? "make-host takes IPv6 addresses and DNS names"
c=$(cat "$tmp/v6/etc/evmesh/nats-server.conf")
has "$c" 'listen: "[::1]:4222"' "an IPv6 listener is bracketed"
has "$c" '"nats-route://node-c.example.net:6222"' "a route to a DNS name"
nats-server -c "$tmp/v6/etc/evmesh/nats-server.conf" -t >/dev/null 2>&1
ok $? "nats-server -t accepts it"

# Bad input: exit 2, the value named, nothing written.
bad() { # bad WANT-IN-MESSAGE DESCRIPTION ARGS...
	local want=$1 what=$2
	shift 2
	out=$("$make_host" "$@" --out "$tmp/bad" 2>&1)
	is $? 2 "$what: exit 2"
	has "$out" "$want" "  naming it"
	[ ! -e "$tmp/bad" ] && ! ls -d "$tmp"/.make-host* >/dev/null 2>&1
	ok $? "  and nothing written"
}
bad "no --host given" "no host" --this n1
bad "--this NAME is required: which of the hosts (n1, n2, n3) this one is" \
	"no --this" "${hosts[@]}"
bad "--this 'n4': not one of the hosts given (n1, n2, n3)" "an unknown host" \
	"${hosts[@]}" --this n4
bad "--client-port '70000': want a port number, 1024-65535" "a port out of range" \
	"${hosts[@]}" --this n1 --client-port 70000
bad "--cluster-port 'x': want a port number" "a port that is no number" \
	"${hosts[@]}" --this n1 --cluster-port x
bad "--monitor-port '80': below 1024" "a privileged port" \
	"${hosts[@]}" --this n1 --monitor-port 80
bad "the ports must differ: --client-port 4222, --cluster-port 4222" "one port twice" \
	"${hosts[@]}" --this n1 --cluster-port 4222
bad "--host 'n1': want NAME=ADDR" "a host without an address" --host n1 --this n1
bad "--host n1: '10.0.0.256' is not an IPv4 address" "a bad address" \
	--host n1=10.0.0.256 --this n1
bad "--host n1: 'fd00::1': write an IPv6 address in brackets, [fd00::1]" \
	"an IPv6 address without brackets" --host n1=fd00::1 --this n1
bad "the name 'n 1' is not 1-64 of" "a bad name" --host "n 1=10.0.0.1" --this "n 1"
bad "--host 'n1=10.0.0.2': the name 'n1' is given twice" "a name twice" \
	--host n1=10.0.0.1 --host n1=10.0.0.2 --this n1
bad "--host n1: '0.0.0.0' is no address to reach a host at" "0.0.0.0 as a host" \
	--host n1=0.0.0.0 --this n1
bad "--replicas '6': want a replica count, 1-5" "--replicas 6" \
	"${hosts[@]}" --this n1 --replicas 6
bad "--replicas 3: more than the cluster's 1 host(s) can hold" "--replicas 3 on one host" \
	--host n1=10.0.0.1 --this n1 --replicas 3
bad "--bin-dir 'bin': want an absolute path" "a relative folder" \
	"${hosts[@]}" --this n1 --bin-dir bin
bad "unknown option '--hosts'" "an unknown option" --hosts n1=10.0.0.1 --this n1
out=$("$make_host" "${hosts[@]}" --this n1 --out "$tmp/n1" 2>&1)
is $? 1 "an --out folder that holds something: exit 1"
has "$out" "--out '$tmp/n1' exists and is not an empty folder; remove it, or --force to replace it" \
	"  naming it"
has "$(cat "$conf")" "listen: \"127.0.0.1:$cport\"" "  and it is left as it was"
"$make_host" "${hosts[@]}" --this n1 --out "$tmp/n1" --force >/dev/null 2>&1
ok $? "--force replaces it"
has "$(cat "$conf")" 'listen: "127.0.0.1:4222"' "  with the new files"
! ls -d "$tmp"/.make-host* >/dev/null 2>&1; ok $? "  leaving nothing beside it"
done_testing
