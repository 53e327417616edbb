#!/usr/bin/env bash
# Deterministic simulation of the cluster under faults (madsim).
#   ci/sim.sh --seeds N --from S           sweep seeds S..S+N-1
#   ci/sim.sh --seed S [--verbose]         replay one seed (same trace hash every time)
#   ci/sim.sh --soak [N]                   the nightly soak: N seeds (10,000), 3 and 5 nodes, every fault
#   ci/sim.sh --regression                 the seeds that once found a bug (sim/regression-seeds.txt)
#                                          and the regression scenarios (sim/src/scenarios.rs)
# Other flags: --nodes 3|5, --duration SECS (virtual), --faults LIST|all|none,
#   --clients N, --keys N. Prints one line per seed, the faults injected, a
#   summary with virtual seconds per wall second, and a replay command per failure.
# Diagnostics (stderr): PLACEMENT_SIM_DEBUG=1 prints Raft samples, per-key history sizes
#   and client errors; PLACEMENT_SIM_DUMP_KEY=k1-0005 prints that key's whole history.
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/setup.sh >/dev/null
RUSTFLAGS="--cfg madsim" cargo build --quiet -p placement-sim --profile sim --target-dir target/sim
bin=target/sim/sim/placement-sim
if [ "${1:-}" = "--soak" ]; then
    # The nightly soak: N seeds (default 10,000), half on 3 nodes and half on
    # 5, every fault, every rare path required; the summary (failures, faults
    # per kind, rare paths, speed) goes to target/soak-summary.txt.
    total=${2:-10000}
    half=$((total / 2))
    out=target/soak-summary.txt
    status=0
    : > "$out.log"
    "$bin" --from 100000 --seeds "$half" --duration 30 --nodes 3 --require-coverage >> "$out.log" || status=1
    "$bin" --from 200000 --seeds "$((total - half))" --duration 30 --nodes 5 --require-coverage >> "$out.log" || status=1
    {
        echo "soak of $total seeds ($(date -u +%FT%TZ), $(git rev-parse --short HEAD 2>/dev/null || echo unknown)): exit $status"
        grep -E '^(faults injected|rare paths reached|never reached|summary)' "$out.log"
        grep -E '^seed .* FAIL' "$out.log" || true
    } > "$out"
    cat "$out"
    exit $status
fi
if [ "${1:-}" = "--regression" ]; then
    shift
    status=0
    # Each line: seed nodes faults comment; continuation lines start with a space.
    old11=partition,isolate-leader,bridge,one-way-clog,kill,kill-leader,power-loss,disk-error,slow-disk,packet-loss,latency-spike
    while read -r seed nodes faults _; do
        case "$seed" in ''|'#'*) continue ;; esac
        [ "$faults" = old11 ] && faults=$old11
        "$bin" --seed "$seed" --nodes "$nodes" --faults "$faults" "$@" || status=1
    done < <(grep -v '^ ' sim/regression-seeds.txt)
    "$bin" --scenario all || status=1
    exit $status
fi
exec "$bin" "$@"
