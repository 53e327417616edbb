#!/usr/bin/env bash
# Measures what issue 5 asks for, on this machine, release build:
#   1. the Raft log stays bounded while KEYS keys are written (max of
#      placement_raft_log_entries over every node, sampled each second);
#   2. how long a new member takes to catch up KEYS keys: from starting it
#      with --join until it is a voter that has every key.
# Usage: bench/join-catch-up.sh [KEYS] (default 1000000). Ports 4x379-4x381.
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/setup.sh
keys=${1:-1000000}
clients=64
keys=$(( keys / clients * clients ))  # every client writes the same number
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
metric() { curl -s "127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m {print $2}'; }
for n in 1 2 3; do until [ "$(curl -s 127.0.0.1:4${n}381/readyz)" = ok ]; do sleep 0.2; done; done

# 1. Load, sampling the log size.
( while sleep 1; do for n in 1 2 3; do metric 4${n}381 placement_raft_log_entries; done; done ) >"$run/log-sizes" 2>/dev/null &
sampler=$!
pids+=($sampler)
echo "loading $keys keys of 256 B ($clients clients, 3 endpoints)"
target/release/placement-bench --endpoints 127.0.0.1:41379,127.0.0.1:42379,127.0.0.1:43379 \
    --clients $clients --total "$keys" --val-size 256 put --sequential-keys
kill $sampler
echo "raft log entries per node, max over $(wc -l <"$run/log-sizes") samples: $(sort -n "$run/log-sizes" | tail -1)"
for n in 1 2 3; do echo "node$n: keys=$(metric 4${n}381 placement_mvcc_keys) db_size_bytes=$(metric 4${n}381 placement_db_size_bytes) rss_kib=$(awk '/VmRSS/{print $2}' /proc/${pids[$((n-1))]}/status)"; done

# 2. A fourth member joins.
start=$(date +%s.%N)
$pc --name n4 --client-addr 127.0.0.1:44379 --peer-addr 127.0.0.1:44380 --metrics-addr 127.0.0.1:44381 \
    --data-dir "$run/n4" --join 127.0.0.1:41379 >"$run/n4.log" 2>&1 &
pids+=($!)
until [ "$(metric 44381 placement_mvcc_keys 2>/dev/null)" = "$keys" ] \
    && ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:41379 member list | grep -q "n4, http://127.0.0.1:44380, http://127.0.0.1:44379, false"; do
    sleep 0.2
done
end=$(date +%s.%N)
echo "new member caught up $keys keys and was promoted in $(echo "$end - $start" | bc) s"
echo "node4: db_size_bytes=$(metric 44381 placement_db_size_bytes) rss_kib=$(awk '/VmRSS/{print $2}' /proc/${pids[-1]}/status)"
