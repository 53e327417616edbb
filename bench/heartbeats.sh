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
. bench/lib.sh
run=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$run"; }
trap cleanup EXIT
start_placement "$run" 4
target/release/placement-bench --endpoints "$endpoints" \
    --clients "$clients" --total "$heartbeats" heartbeat --nodes "$nodes"
for n in 1 2 3; do echo "node$n: rss_kib=$(awk '/VmRSS/{print $2}' /proc/${pids[$((n-1))]}/status)"; done
