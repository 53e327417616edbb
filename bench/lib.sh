# Sourced by the benchmark scripts (bench/*.sh, ci/bench.sh).

# Fails the run if a member exited (e.g. its port was taken), showing LOG.
alive() {
    for p in "${pids[@]}"; do
        kill -0 "$p" 2>/dev/null || { echo "a member exited; $1:" >&2; tail -20 "$1" >&2; exit 1; }
    done
}

# start_placement DIR P: a 3-node release cluster with data in DIR; node n
# serves clients on 127.0.0.1:P<n>379, peers on P<n>380, metrics on P<n>381.
# Appends the members' pids to `pids`; sets `endpoints`.
start_placement() {
    local dir=$1 p=$2 n cluster=""
    for n in 1 2 3; do cluster+="${cluster:+,}$n=127.0.0.1:$p${n}380@127.0.0.1:$p${n}379"; done
    for n in 1 2 3; do
        target/release/placement-center --node-id $n --client-addr 127.0.0.1:$p${n}379 --peer-addr 127.0.0.1:$p${n}380 \
            --metrics-addr 127.0.0.1:$p${n}381 --data-dir "$dir/n$n" --initial-cluster "$cluster" >"$dir/n$n.log" 2>&1 &
        pids+=($!)
    done
    for n in 1 2 3; do
        until [ "$(curl -s 127.0.0.1:$p${n}381/readyz)" = ok ]; do alive "$dir/n$n.log"; sleep 0.2; done
    done
    endpoints=127.0.0.1:${p}1379,127.0.0.1:${p}2379,127.0.0.1:${p}3379
}
