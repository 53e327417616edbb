#!/usr/bin/env bash
# Builds every fuzz target and runs each for a while (see fuzz/README.md).
#   ci/fuzz.sh              CI smoke: 30 s per target (FUZZ_SECONDS overrides)
#   ci/fuzz.sh --long SECS  soak: SECS per target
# Fails if a target crashes, and prints the reproducer's path.
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/setup.sh >/dev/null
seconds=${FUZZ_SECONDS:-30}
[ "${1:-}" = "--long" ] && seconds=${2:?--long needs seconds}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
cd fuzz
targets=$(cargo fuzz list)
cargo fuzz build -s none --release
status=0
for t in $targets; do
    mkdir -p "corpus/$t" "regressions/$t" "seeds/$t"
    # Fixed crashes first: each must pass now.
    for r in regressions/"$t"/*; do
        [ -f "$r" ] || continue
        cargo fuzz run -s none --release "$t" "$r" >/dev/null 2>&1 || { echo "REGRESSED: $t $r"; status=1; }
    done
    log=$(mktemp)
    dict=()
    [ -f "dicts/$t.dict" ] && dict=(-dict="dicts/$t.dict")
    if cargo fuzz run -s none --release "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$seconds" -rss_limit_mb=4096 "${dict[@]}" >"$log" 2>&1; then
        echo "fuzz $t: ok, $(grep -o 'Done [0-9]* runs' "$log" | tail -1) in ${seconds}s"
    else
        status=1
        echo "fuzz $t: FAILED"
        tail -30 "$log"
        find artifacts/"$t" -type f 2>/dev/null | sed 's|^|reproducer: fuzz/|'
    fi
    rm -f "$log"
done
exit $status
