#!/usr/bin/env bash
# Where a write's CPU goes: a 3-member cluster on loopback (release build)
# under a 100-client put, sampled system-wide by perf for SECS seconds
# (10 by default). Prints the share of samples of each process (the leader,
# the followers, the load generator, idle), the put's throughput, and the
# top symbols of the leader and of one follower, by share of its samples.
# Usage: bench/profile-put.sh [SECS]. Ports 4x379-4x381 (bench/lib.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/setup.sh >/dev/null
command -v perf >/dev/null || { echo "perf is not installed (apt-get install linux-perf)" >&2; exit 2; }
. bench/lib.sh
secs=${1:-10}

start_three
leader_id=$(ETCDCTL_API=3 etcdctl --endpoints="$endpoints" endpoint status -w json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["leader"])')
member_pid() { # the pid of member N
    echo "${pids[$(($1 - 1))]}"
}
leader=0
for n in 1 2 3; do
    id=$(ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:4${n}379 endpoint status -w json |
        python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["header"]["member_id"])')
    [ "$id" = "$leader_id" ] && leader=$n
done
[ "$leader" != 0 ] || { echo "no leader found" >&2; exit 1; }
follower=$((leader % 3 + 1))

$bench --endpoints "$endpoints" --clients 100 --duration $((secs + 6)) put >"$run/bench.txt" &
load=$!
sleep 3
perf record -q -a -F 499 -o "$run/perf.data" -- sleep "$secs" 2>/dev/null
wait "$load"
echo "put, 100 clients: $(cat "$run/bench.txt")"

report() {
    perf report -i "$run/perf.data" --no-children --stdio "$@" 2>/dev/null | grep -v '^#' | grep -v '^$'
}
echo "share of all samples by process (leader = member $leader, pid $(member_pid $leader); follower = member $follower, pid $(member_pid $follower); load generator pid $load; 0 = idle):"
perf script -i "$run/perf.data" -F pid 2>/dev/null | sort | uniq -c | sort -rn | head -8 |
    awk -v total="$(perf script -i "$run/perf.data" -F pid 2>/dev/null | wc -l)" '{printf "  pid %-8s %5.1f%%\n", $2, 100 * $1 / total}'
for who in leader follower; do
    n=${!who}
    echo "top symbols of the $who (member $n), share of its own samples:"
    report --pid "$(member_pid "$n")" --sort dso,sym --percentage relative --percent-limit 1 | head -25
done
