#!/usr/bin/env bash
# Side by side: Placement Center and etcd 3.4 (Debian's etcd-server), each a
# 3-member cluster on loopback with every commit fsynced (etcd's default; ours
# always), measured by the same placement-bench scenarios, in turns
# (etcd, us, etcd, us, ... ROUNDS rounds), one cluster running at a time on a
# fresh data dir per round. Then, once per target, the scale run: load 1M keys
# of 256 B, read each member's RSS, restart one member and time how long it
# takes to serve a read of all of them again.
# Writes bench/results/{raw.jsonl,results.md,latency.svg}.
#   ci/bench.sh            2 rounds and the scale run (about 15 minutes here)
#   ci/bench.sh --rounds N
#   ci/bench.sh --no-scale the rounds only
#   ci/bench.sh --quick    1 round of smaller runs, 100k keys (a smoke test of the script)
# Not part of CI's test path: too noisy on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/setup.sh >/dev/null
rounds=2
scale=1
scale_keys=1000000
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds=$2; shift 2 ;;
        --no-scale) scale_keys=0; shift ;;
        --quick) rounds=1; scale=10; scale_keys=100000; shift ;;
        *) echo "unknown flag $1" >&2; exit 2 ;;
    esac
done
if ! command -v etcd >/dev/null; then
    echo "installing etcd-server (Debian)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
fi
# Debian starts etcd as a service where systemd runs: ours use other ports anyway.
cargo build --release --quiet --bin placement-center --bin placement-bench
bench=target/release/placement-bench
out=bench/results
mkdir -p "$out"
raw="$out/raw.jsonl"
: >"$raw"
run=$(mktemp -d)
pids=()
stop_cluster() { kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; pids=(); }
trap 'stop_cluster; rm -rf "$run"' EXIT

# Fails the run if a member exited (e.g. its port was taken), showing its log.
alive() {
    for p in "${pids[@]}"; do
        kill -0 "$p" 2>/dev/null || { echo "a member exited; $1:" >&2; tail -20 "$1" >&2; exit 1; }
    done
}

# Ports below the ephemeral range (32768-60999), which the clients' own connections use.
# Member n of the 3-member cluster in $1, started in the background; its pid
# goes to pids[n-1]. A member restarted on the same data dir comes back.
start_placement_member() {
    local dir=$1 n=$2 cluster="1=127.0.0.1:21380@127.0.0.1:21379,2=127.0.0.1:22380@127.0.0.1:22379,3=127.0.0.1:23380@127.0.0.1:23379"
    target/release/placement-center --node-id "$n" --client-addr 127.0.0.1:2${n}379 --peer-addr 127.0.0.1:2${n}380 \
        --metrics-addr 127.0.0.1:2${n}381 --data-dir "$dir/n$n" --initial-cluster "$cluster" --initial-cluster-token bench >>"$dir/n$n.log" 2>&1 &
    pids[n - 1]=$!
    member_endpoint=127.0.0.1:2${n}379
}

start_etcd_member() {
    local dir=$1 n=$2 cluster="e1=http://127.0.0.1:11380,e2=http://127.0.0.1:12380,e3=http://127.0.0.1:13380"
    etcd --name e$n --data-dir "$dir/e$n" --listen-client-urls http://127.0.0.1:1${n}379 \
        --advertise-client-urls http://127.0.0.1:1${n}379 --listen-peer-urls http://127.0.0.1:1${n}380 \
        --initial-advertise-peer-urls http://127.0.0.1:1${n}380 --initial-cluster "$cluster" \
        --initial-cluster-token bench --initial-cluster-state new --logger zap --log-level error \
        --quota-backend-bytes 8589934592 >>"$dir/e$n.log" 2>&1 &
    pids[n - 1]=$!
    member_endpoint=127.0.0.1:1${n}379
}

start_placement() {
    local dir=$1
    for n in 1 2 3; do start_placement_member "$dir" $n; done
    for n in 1 2 3; do
        until [ "$(curl -s 127.0.0.1:2${n}381/readyz)" = ok ]; do alive "$dir/n$n.log"; sleep 0.2; done
    done
    endpoints=127.0.0.1:21379,127.0.0.1:22379,127.0.0.1:23379
}

start_etcd() {
    local dir=$1
    for n in 1 2 3; do start_etcd_member "$dir" $n; done
    endpoints=127.0.0.1:11379,127.0.0.1:12379,127.0.0.1:13379
    until ETCDCTL_API=3 etcdctl --endpoints=$endpoints endpoint health >/dev/null 2>&1; do alive "$dir/e1.log"; sleep 0.2; done
}

# name | placement-bench arguments ("RATE" is replaced by half of etcd's put-100 throughput of the round)
scenarios=(
    "put-1|--clients 1 --total $((2000 / scale)) put"
    "put-1-at-leader|AT=leader --clients 1 --total $((2000 / scale)) put"
    "put-1-at-follower|AT=follower --clients 1 --total $((2000 / scale)) put"
    "put-100|--clients 100 --total $((60000 / scale)) put"
    "put-100-half-etcd-rate|--clients 100 --rate RATE --duration $((20 / scale)) put"
    "range-l-100|--clients 100 --total $((100000 / scale)) range --consistency l"
    "range-s-100|--clients 100 --total $((100000 / scale)) range --consistency s"
    "txn-put-100|--clients 100 --total $((30000 / scale)) txn-put"
    "lease-keepalive-100|--clients 100 --total $((60000 / scale)) lease-keepalive"
    "watch-latency|--clients 10 --rate 1000 --total $((10000 / scale)) watch-latency --watchers 100"
)

# Clock ticks of CPU (user and system) the members have used so far.
cpu_ticks() { local t=0 p; for p in "${pids[@]}"; do t=$((t + $(awk '{print $14 + $15}' /proc/"$p"/stat))); done; echo $t; }
clk_tck=$(getconf CLK_TCK)

# The client endpoint of the member that leads ($1 = leader) or of one that
# follows ($1 = follower), by etcdctl's endpoint status (both targets answer it).
member_at() {
    ETCDCTL_API=3 etcdctl --endpoints="$endpoints" endpoint status -w json | python3 -c "
import json, sys
members = json.load(sys.stdin)
leading = [m['Endpoint'] for m in members if m['Status']['header']['member_id'] == m['Status']['leader']]
following = [m['Endpoint'] for m in members if m['Endpoint'] not in leading]
print((leading if '$1' == 'leader' else following)[0])"
}

rss_kib() { local t=0; for p in "${pids[@]}"; do t=$((t + $(awk '/VmRSS/{print $2}' /proc/$p/status))); done; echo $((t / 3)); }

# measure NAME ROUND [AT=leader|AT=follower] ARGS...: one placement-bench run
# against $endpoints (or only the member that leads, or one that follows),
# appended to $raw (tagged with $target, with the CPU the three members used
# per request) and printed as a line.
measure() {
    local name=$1 round=$2 at=$endpoints before
    shift 2
    case "${1:-}" in AT=*) at=$(member_at "${1#AT=}"); shift ;; esac
    before=$(cpu_ticks)
    $bench --endpoints "$at" --json "$@" >"$run/measured.json"
    python3 -c "
import json, sys
r = json.load(sys.stdin)
done = r.get('count') or 0
cpu_s = ($(cpu_ticks) - $before) / $clk_tck
r.update(name='$name', target='$target', round=$round, server_cpu_us=1e6 * cpu_s / done if done else 0)
print(json.dumps(r))" <"$run/measured.json" >>"$raw"
    tail -1 "$raw" | python3 -c "
import json, sys
r = json.load(sys.stdin)
l = r['latency_ms']
print(f\"  {r['name']:<24} {r['throughput']:>9.0f}/s  p50 {l.get('p50', 0):7.2f} ms  p99 {l.get('p99', 0):7.2f} ms  cpu {r['server_cpu_us']:6.0f} us/req  errors {sum(r['errors'].values())}\")"
}

# How many keys member_endpoint serves from its own state (a serializable
# count; empty while it cannot answer).
served_keys() {
    ETCDCTL_API=3 etcdctl --endpoints="$member_endpoint" --dial-timeout=1s --command-timeout=2s \
        get "" --prefix --limit=1 --consistency=s -w json 2>/dev/null |
        python3 -c "import json,sys; print(json.load(sys.stdin).get('count', 0))" 2>/dev/null || true
}

# The scale run of $target: load $scale_keys keys, RSS per member, then stop
# member 3 (SIGTERM), start it again and time until it serves every key.
scale_run() {
    local dir="$run/$target-scale" log=n3.log stopped started served rss
    [ "$target" = placement ] || log=e3.log
    mkdir -p "$dir"
    "start_$target" "$dir"
    echo "scale: $target, $scale_keys keys"
    measure "load-$scale_keys" 1 --clients 100 --total "$scale_keys" --key-space "$scale_keys" put --sequential-keys
    rss=$(for p in "${pids[@]}"; do awk '/VmRSS/{print $2}' /proc/"$p"/status; done | paste -sd,)
    kill "${pids[2]}"
    wait "${pids[2]}" 2>/dev/null || true
    stopped=$(date +%s.%N)
    "start_${target}_member" "$dir" 3
    started=$(date +%s.%N)
    until [ "$(served_keys)" = "$scale_keys" ]; do alive "$dir/$log"; sleep 0.05; done
    served=$(date +%s.%N)
    python3 -c "
import json
rss = [$rss]
print(json.dumps({'name': 'scale', 'target': '$target', 'round': 1, 'keys': $scale_keys,
    'rss_kib_mean': sum(rss) / len(rss), 'rss_kib_max': max(rss),
    'restart_s': $served - $started, 'stopped_s': $started - $stopped}))" >>"$raw"
    tail -1 "$raw" | python3 -c "
import json, sys
r = json.load(sys.stdin)
print(f\"  RSS per member {r['rss_kib_mean'] / 1024:.0f} MiB (max {r['rss_kib_max'] / 1024:.0f}); restarted member serves all keys after {r['restart_s']:.2f} s\")"
    stop_cluster
}

for round in $(seq 1 "$rounds"); do
    half_rate=""
    for target in etcd placement; do
        dir="$run/$target-$round"
        mkdir -p "$dir"
        "start_$target" "$dir"
        echo "round $round: $target ($endpoints)"
        for entry in "${scenarios[@]}"; do
            name=${entry%%|*}
            args=${entry#*|}
            if [[ $args == *RATE* ]]; then
                [ -n "$half_rate" ] || { echo "  $name: skipped (no etcd rate)"; continue; }
                args=${args//RATE/$half_rate}
            fi
            # shellcheck disable=SC2086
            measure "$name" "$round" $args
            if [ "$target" = etcd ] && [ "$name" = put-100 ]; then
                half_rate=$(tail -1 "$raw" | python3 -c "import json,sys; print(round(json.load(sys.stdin)['throughput'] / 2))")
            fi
        done
        echo "{\"name\": \"rss-after-load\", \"target\": \"$target\", \"round\": $round, \"rss_kib\": $(rss_kib)}" >>"$raw"
        stop_cluster
    done
done
if [ "$scale_keys" -gt 0 ]; then
    for target in etcd placement; do scale_run; done
fi
python3 bench/report.py "$raw" "$out/results.md" "$out/latency.svg"
cat "$out/results.md"
