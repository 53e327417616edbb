#!/usr/bin/env bash
# The robustness suite: real placement-center processes, each in a network
# namespace of its own (tests/netns/lib.sh), under real faults drawn from a
# seed; the simulator's clients record the history and placement-check
# judges it (sim/src/robust.rs). Needs root, iproute2, nftables, faketime,
# e2fsprogs and the blkio cgroup (v1).
#   ci/robustness.sh [--nodes 3|5] [--duration S] [--seed N] [--faults LIST|all]
#                    [--bin path/to/placement-center] [--soak]
# Defaults: 3 members, 120 s (every fault kind once), seed 1, the release build.
# --soak: 30 minutes with every fault (a --duration after it overrides).
# Everything it makes (namespaces, rules, mounts, processes) goes at exit,
# also on failure; member logs are printed on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
nodes=3 duration=120 seed=1 faults=all bin="" extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --nodes) nodes=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        --faults) faults=$2; shift 2 ;;
        --bin) bin=$2; shift 2 ;;
        --soak) duration=1800; shift ;;
        *) extra+=("$1"); shift ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "robustness: needs root (network namespaces)" >&2; exit 1; }
. ci/setup.sh >/dev/null
if [ -z "$bin" ]; then
    cargo build --quiet --release -p placement-center --bin placement-center
    bin=target/release/placement-center
fi
# The runner is a client: the debug build does (and shares the tests' build).
cargo build --quiet -p placement-sim --bin placement-robust
runner=$(realpath target/debug/placement-robust)
bin=$(realpath "$bin")
. tests/netns/lib.sh
work=$(mktemp -d /tmp/robust.XXXXXX)
status=0
cleanup() {
    local rc=$?
    netns_down
    umount -l "$work"/m* 2>/dev/null || true
    # The slow-disk member's blkio cgroup (empty once its processes are gone).
    for cg in /sys/fs/cgroup/blkio/robust-*; do [ -d "$cg" ] && rmdir "$cg" 2>/dev/null; done || true
    if [ $rc -ne 0 ]; then
        # The members' whole logs are kept; their tails printed.
        mkdir -p target/robust-logs
        for log in "$work"/*.log; do
            [ -f "$log" ] || continue
            cp "$log" target/robust-logs/
            echo "--- $log (whole log: target/robust-logs/$(basename "$log"))"
            tail -15 "$log"
        done
    fi
    rm -rf "$work"
    exit $rc
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
netns_up rb "$nodes"
namespaces=$(for i in $(seq "$nodes"); do printf '%s,' "$(netns_ns "rb-$i")"; done)
# The runner lives in the client's namespace (it reaches members only by
# their namespaces' addresses) with a private mount namespace: the disk
# member's tmpfs goes with it.
netns_run rb-c "$runner" --bin "$bin" --work "$work" --namespaces "${namespaces%,}" \
    --duration "$duration" --seed "$seed" --faults "$faults" "${extra[@]}" || status=$?
exit $status
