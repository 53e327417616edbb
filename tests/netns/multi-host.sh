#!/usr/bin/env bash
# Three members as real processes on three "hosts" (network namespaces, see
# lib.sh), each listening on 0.0.0.0 and advertising its host name; etcdctl
# from a fourth. The cluster forms, serves, survives a member killed and
# restarted, and refuses a member restarted on a wiped data dir. Needs root.
#   tests/netns/multi-host.sh [path/to/placement-center]
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=$(realpath "${1:-target/debug/placement-center}")
[ "$(id -u)" -eq 0 ] || { echo "multi-host: needs root (network namespaces)" >&2; exit 1; }
. tests/netns/lib.sh
work=$(mktemp -d)
pids=()
cleanup() {
    local rc=$?
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    netns_down
    if [ $rc -ne 0 ]; then
        for log in "$work"/*.log; do echo "--- $log"; tail -20 "$log"; done
    fi
    rm -rf "$work"
    exit $rc
}
trap cleanup EXIT
# A signal exits through the same cleanup.
trap 'exit 143' TERM
trap 'exit 130' INT
started=$(date +%s)
step() { echo "multi-host [$(( $(date +%s) - started ))s] $*"; }

netns_up pc 3
cluster=1=pc-1:2380,2=pc-2:2380,3=pc-3:2380
start_member() {
    local i=$1
    netns_spawn "pc-$i" "$work/m$i.log" "$bin" --node-id "$i" --name "pc-$i" --data-dir "$work/m$i" \
        --listen-client-urls http://0.0.0.0:2379 --advertise-client-urls "http://pc-$i:2379" \
        --listen-peer-urls http://0.0.0.0:2380 --initial-advertise-peer-urls "http://pc-$i:2380" \
        --listen-metrics-urls http://0.0.0.0:2381 \
        --initial-cluster "$cluster" --initial-cluster-token multi-host-test \
        --election-timeout-ms 1000
    pids[$i]=$NETNS_PID
}
ctl() { netns_run pc-c env ETCDCTL_API=3 etcdctl --dial-timeout=2s --command-timeout=5s "$@"; }
all=pc-1:2379,pc-2:2379,pc-3:2379
# value_is ENDPOINT KEY VALUE: a linearizable read of KEY there gives VALUE.
value_is() { [ "$(ctl --endpoints="$1" get "$2" --print-value-only)" = "$3" ]; }
# wait_for WHAT CMD...: retries CMD for up to 60 s.
wait_for() {
    local what=$1
    shift
    for _ in $(seq 120); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
    echo "multi-host: $what never happened" >&2
    return 1
}

step "three members on pc-1..3 (198.18.0.11-13), listening on 0.0.0.0, advertising their names"
for i in 1 2 3; do start_member "$i"; done
wait_for "a healthy cluster" ctl --endpoints=$all endpoint health
ctl --endpoints=$all put /multi-host/a 1 >/dev/null
value_is pc-3:2379 /multi-host/a 1
# Each member publishes its name and client address once it runs.
all_started() {
    local members
    members=$(ctl --endpoints=pc-2:2379 member list)
    for i in 1 2 3; do grep -q "started, pc-$i, http://pc-$i:2380, http://pc-$i:2379" <<<"$members" || return 1; done
}
wait_for "every member started, advertising its names" all_started
members=$(ctl --endpoints=pc-2:2379 member list)
step "member list advertises names: $(tr '\n' ';' <<<"$members")"

step "member 2 killed (SIGKILL): the others serve; restarted, it catches up"
kill -9 "${pids[2]}"
wait "${pids[2]}" 2>/dev/null || true
ctl --endpoints=pc-1:2379,pc-3:2379 put /multi-host/b 2 >/dev/null
start_member 2
wait_for "member 2 serving b" value_is pc-2:2379 /multi-host/b 2

step "member 3 wiped and restarted as itself: it must refuse to start"
kill -9 "${pids[3]}"
wait "${pids[3]}" 2>/dev/null || true
rm -rf "$work/m3"
: >"$work/m3.log"
start_member 3
for _ in $(seq 60); do kill -0 "${pids[3]}" 2>/dev/null || break; sleep 0.5; done
if kill -0 "${pids[3]}" 2>/dev/null; then
    echo "multi-host: member 3 runs on a wiped data dir" >&2
    exit 1
fi
grep -q "member 3 has already been bootstrapped" "$work/m3.log" || { cat "$work/m3.log" >&2; exit 1; }
step "refused: $(grep -o 'member 3 has already been bootstrapped[^.]*' "$work/m3.log" | head -1)"
ctl --endpoints=pc-1:2379,pc-2:2379 put /multi-host/c 3 >/dev/null
step "ok"
