#!/usr/bin/env bash
# deploy/up twice in a row: the broker comes up, the smoke flow round-trips
# an event both times, the second run reuses the first run's broker;
# deploy/down stops it. Runs on a free port with its own state folder.
set -u
. "$(dirname "$0")/tap.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
export EVMESH_STATE
EVMESH_STATE=$(mktemp -d)
export EVMESH_NATS_PORT
EVMESH_NATS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
trap '"$root/deploy/down" >/dev/null 2>&1; rm -rf "$EVMESH_STATE"' EXIT

out=$("$root/deploy/up" 2>&1); ok $? "deploy/up exits 0"
has "$out" "starting nats-server" "and starts a broker"
has "$out" "started mesh-scheduler" "and a scheduler"
has "$out" "started mesh-router" "and a router"
has "$out" "queue 'demo-all' got 2 of the 2" "which fans a topic out to a queue"
has "$out" "queue 'demo-eu' got 1 of the 2" "and through a filter policy"
has "$out" "smoke: round trip" "and prints the event's round trip"
has "$out" "Body           hello from deploy/up" "and round-trips a queue message"
out=$("$root/deploy/up" 2>&1); ok $? "deploy/up again exits 0"
has "$out" "nats-server already running" "and reuses the running broker"
has "$out" "mesh-scheduler already running" "and the running scheduler"
has "$out" "NextFirings" "and shows the heartbeat schedule"
has "$out" "sequence 2" "whose stream kept the first run's event"
has "$out" "smoke: round trip" "and prints the round trip again"
out=$("$root/deploy/down" 2>&1); ok $? "deploy/down exits 0"
has "$out" "stopped nats-server" "and stops the broker"
has "$out" "stopped mesh-scheduler" "and the scheduler"
has "$out" "stopped mesh-router" "and the router"
[ -d "$EVMESH_STATE/nats/jetstream" ]; ok $? "the store stays for next time"
out=$("$root/deploy/up" 2>&1); ok $? "deploy/up after down exits 0"
has "$out" "sequence 3" "and the new broker reads the old store"
done_testing
