# Shared by the bench scripts that start clusters of their own: builds the
# release binaries; sets $pc and $bench, $run (a temporary dir, removed on
# exit) and stop (kills the members whose pids were added to $pids).
cargo build --release --quiet --bin placement-center --bin placement-bench
pc=target/release/placement-center
bench=target/release/placement-bench
run=$(mktemp -d)
pids=()
stop() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; pids=(); }
trap 'stop; rm -rf "$run"' EXIT

# report MODE NAME: one line from placement-bench's --json report on stdin.
report() {
    python3 -c "
import json, sys
r = json.load(sys.stdin)
print(f\"$1 {'$2':<8} {r['throughput']:>9.0f}/s  p50 {r['latency_ms'].get('p50', 0):6.2f} ms  p99 {r['latency_ms'].get('p99', 0):6.2f} ms  errors {sum(r['errors'].values())}\")"
}

# compare ROUNDS A B: put and linearizable range at 100 clients, on fresh
# clusters in turns (start MODE ROUND and measure MODE NAME ARGS are the
# script's own).
compare() {
    local round mode
    for round in $(seq 1 "$1"); do
        for mode in "$2" "$3"; do
            start "$mode" "$round"
            measure "$mode" put --clients 100 --total 50000 put
            measure "$mode" range-l --clients 100 --total 100000 range --consistency l
            stop
        done
    done
}

# start_three [FLAGS...]: members 1-3 on loopback (client 127.0.0.1:4N379,
# peer 4N380, metrics 4N381), data dirs $run/nN unless data_dir[N] is set,
# with FLAGS; returns once all three are ready. Sets $endpoints.
declare -a data_dir
start_three() {
    local n cluster="1=127.0.0.1:41380@127.0.0.1:41379,2=127.0.0.1:42380@127.0.0.1:42379,3=127.0.0.1:43380@127.0.0.1:43379"
    endpoints=127.0.0.1:41379,127.0.0.1:42379,127.0.0.1:43379
    for n in 1 2 3; do
        $pc --node-id $n --client-addr 127.0.0.1:4${n}379 --peer-addr 127.0.0.1:4${n}380 \
            --metrics-addr 127.0.0.1:4${n}381 --data-dir "${data_dir[n]:-$run/n$n}" --initial-cluster "$cluster" \
            --initial-cluster-token bench "$@" >"$run/n$n.log" 2>&1 &
        pids+=($!)
    done
    for n in 1 2 3; do until [ "$(curl -s 127.0.0.1:4${n}381/readyz)" = ok ]; do sleep 0.2; done; done
}
