#!/usr/bin/env bash
# Heartbeat throughput of the placement API (issue 6): a 3-node cluster on
# loopback (release build), NODES brokers registered, then CLIENTS clients
# heartbeat for them round robin, HEARTBEATS in all.
# Usage: bench/heartbeats.sh [NODES] [CLIENTS] [HEARTBEATS] (defaults 10000 32 100000).
# Ports 4x379-4x381. Prints the bench's line and each node's RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/setup.sh
nodes=${1:-10000}
clients=${2:-32}
heartbeats=${3:-100000}
cargo build --release --bin placement-center --bin placement-bench
pc=target/release/placement-center
run=$(mktemp -d)
cluster="1=127.0.0.1:41380@127.0.0.1:41379,2=127.0.0.1:42380@127.0.0.1:42379,3=127.0.0.1:43380@127.0.0.1:43379"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$run"; }
trap cleanup EXIT
for n in 1 2 3; do
    $pc --node-id $n --client-addr 127.0.0.1:4${n}379 --peer-addr 127.0.0.1:4${n}380 \
        --metrics-addr 127.0.0.1:4${n}381 --data-dir "$run/n$n" --initial-cluster "$cluster" --initial-cluster-token bench >"$run/n$n.log" 2>&1 &
    pids+=($!)
done
for n in 1 2 3; do until [ "$(curl -s 127.0.0.1:4${n}381/readyz)" = ok ]; do sleep 0.2; done; done
target/release/placement-bench --endpoints 127.0.0.1:41379,127.0.0.1:42379,127.0.0.1:43379 \
    --clients "$clients" --total "$heartbeats" heartbeat --nodes "$nodes"
for n in 1 2 3; do echo "node$n: rss_kib=$(awk '/VmRSS/{print $2}' /proc/${pids[$((n-1))]}/status)"; done
