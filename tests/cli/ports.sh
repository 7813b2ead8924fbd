# ports.sh: free loopback ports for the deploy tests, sourced.

# free_port: a loopback port free now (the kernel's pick).
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# cluster_ports: "P M" for deploy/up --cluster: P..P+2 (client ports) and
# P+2000..P+2002 (routes, deploy/up's default) free, M..M+2 (monitoring)
# free elsewhere; below the ephemeral range (32768-), where other tests'
# ports come from.
cluster_ports() {
	python3 -c '
import random, socket
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        s.close()
def pick(offsets, lo, hi, avoid=()):
    while True:
        b = random.randrange(lo, hi)
        ports = [b + o + i for o in offsets for i in range(3)]
        if not set(ports) & set(avoid) and all(map(free, ports)):
            return b, ports
p, used = pick((0, 2000), 10000, 28000)
m, _ = pick((0,), 10000, 30000, used)
print(p, m)'
}

# cluster_deploy_env ROOT: what a deploy/up --cluster test runs in: its own
# state folder (EVMESH_STATE, removed at exit after deploy/down; kept with
# KEEP_DIR=1 for a look at the logs and stores), free ports
# (EVMESH_NATS_PORT, EVMESH_MONITOR_PORT, EVMESH_HTTP_PORT; cport the first
# route port),
# EVMESH_BIN_DIR inside the state folder, and urls, the three client URLs.
cluster_deploy_env() {
	export EVMESH_STATE EVMESH_NATS_PORT EVMESH_MONITOR_PORT EVMESH_BIN_DIR
	export EVMESH_HTTP_PORT
	EVMESH_STATE=$(mktemp -d)
	read -r EVMESH_NATS_PORT EVMESH_MONITOR_PORT < <(cluster_ports)
	EVMESH_HTTP_PORT=$(free_port)
	cport=$((EVMESH_NATS_PORT + 2000))
	trap '"'"$1"'/deploy/down" >/dev/null 2>&1
		if [ -n "${KEEP_DIR:-}" ]; then echo "# kept $EVMESH_STATE"; else rm -rf "$EVMESH_STATE"; fi' EXIT
	EVMESH_BIN_DIR=$EVMESH_STATE/bin
	urls=nats://127.0.0.1:$EVMESH_NATS_PORT,nats://127.0.0.1:$((EVMESH_NATS_PORT + 1)),nats://127.0.0.1:$((EVMESH_NATS_PORT + 2))
}
