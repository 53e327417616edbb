#!/usr/bin/env bash
# The cost of auth checks (issue 18): put and linearizable range at 100
# clients on a 3-node loopback cluster (release build), auth off against
# auth on with a non-root user whose role grants readwrite on every bench
# key (so every request pays token verification and a permission check),
# fresh clusters in turns, ROUNDS rounds (default 2). Ports 5x379-5x381.
# Usage: bench/auth-cost.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/setup.sh
. bench/lib.sh
rounds=${1:-2}

cluster="1=127.0.0.1:51380@127.0.0.1:51379,2=127.0.0.1:52380@127.0.0.1:52379,3=127.0.0.1:53380@127.0.0.1:53379"
endpoints=127.0.0.1:51379,127.0.0.1:52379,127.0.0.1:53379
start() { # start MODE ROUND
    for n in 1 2 3; do
        $pc --node-id $n --client-addr 127.0.0.1:5${n}379 --peer-addr 127.0.0.1:5${n}380 \
            --metrics-addr 127.0.0.1:5${n}381 --data-dir "$run/$1-$2/n$n" --initial-cluster "$cluster" \
            --initial-cluster-token bench >"$run/$1-$2-n$n.log" 2>&1 &
        pids+=($!)
    done
    for n in 1 2 3; do until [ "$(curl -s 127.0.0.1:5${n}381/readyz)" = ok ]; do sleep 0.2; done; done
    if [ "$1" = auth ]; then
        local ctl=(etcdctl --endpoints=127.0.0.1:51379)
        "${ctl[@]}" user add root:rootpw >/dev/null
        "${ctl[@]}" user grant-role root root >/dev/null
        "${ctl[@]}" role add bench >/dev/null
        # Bench keys are zero-padded numbers: [0, :) holds them all.
        "${ctl[@]}" role grant-permission bench readwrite 0 : >/dev/null
        "${ctl[@]}" user add bench:benchpw >/dev/null
        "${ctl[@]}" user grant-role bench bench >/dev/null
        "${ctl[@]}" auth enable >/dev/null
    fi
}
measure() { # measure MODE NAME ARGS...
    local mode=$1 name=$2 user=()
    shift 2
    [ "$mode" = auth ] && user=(--user bench)
    PLACEMENT_PASSWORD=benchpw $bench --endpoints $endpoints "${user[@]}" --json "$@" |
        report "$mode" "$name"
}
compare "$rounds" off auth
