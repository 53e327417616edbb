#!/usr/bin/env bash
# The project's test command (README): formatting, lints in both flavours,
# and every test. Works on a fresh Debian machine (installs what it needs).
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/setup.sh
[ "${CI:-}" = "true" ] && export CARGO_INCREMENTAL=0
command -v cargo-nextest >/dev/null 2>&1 || cargo install cargo-nextest --locked

step() { echo; echo "=== $* ($(date +%T))"; }

step "fmt, and the Raft node's parts never naming the node (ci/module-deps.sh)"
cargo fmt --all -- --check
bash ci/module-deps.sh --check

step "clippy (tokio + RocksDB; the crates: proto, client, checkers, the robustness suite's runner, the broker example)"
cargo clippy --workspace --all-targets -- -D warnings

step "clippy (madsim flavour: must build without RocksDB) and the simulator"
RUSTFLAGS="--cfg madsim" cargo clippy -p placement-proto -p placement-client -p placement-center --all-targets --target-dir target/sim -- -D warnings
RUSTFLAGS="--cfg madsim" cargo clippy -p placement-check -p placement-sim --all-targets --target-dir target/sim -- -D warnings

step "crates: generated code current, docs without warnings, the client's doc examples compile, proto and client package and build alone"
cargo run -q -p placement-proto-codegen -- --check
RUSTDOCFLAGS="-D warnings" cargo doc -q --workspace --no-deps
cargo test -q --doc -p placement-proto -p placement-client
# A target dir of its own each time: cargo unpacks the packaged crates under
# ~/.cargo/registry/src/<hash of that path>/ and reuses what an earlier run
# unpacked there (a stale placement-proto), so the path must be new.
(
    package_dir=$(mktemp -d /tmp/pc-package.XXXXXX)
    trap 'rm -rf "$package_dir"' EXIT
    cargo package -q --allow-dirty -p placement-proto -p placement-client --target-dir "$package_dir"
)

step "tests (tokio + RocksDB: units, openraft storage suite, 3-node clusters, etcdctl)"
cargo nextest run --no-fail-fast

step "clients: Python etcd3 (PyPI), Node etcd3 (npm) and our broker example against 3 members (tests/clients)"
cargo build -q -p placement-broker-example -p placement-ctl
bash tests/clients/run.sh --bin target/debug/placement-center --broker target/debug/broker --ctl target/debug/placement-ctl

step "multi-host: three members in network namespaces, named by a hosts file (tests/netns, needs root)"
bash tests/netns/multi-host.sh target/debug/placement-center

step "robustness: 3 real members in namespaces, every fault at least once (ci/robustness.sh, needs root)"
bash ci/robustness.sh --bin target/debug/placement-center --duration 150 --seed 1

step "simulator: checker unit tests, determinism across processes"
RUSTFLAGS="--cfg madsim" cargo test -p placement-check -p placement-sim --profile sim --target-dir target/sim

step "simulator: regression seeds"
bash ci/sim.sh --regression

step "simulator: sweeps with every fault (fixed seeds, so CI is reproducible)"
# --require-coverage: each sweep must reach every rare path (src/runtime/coverage.rs).
bash ci/sim.sh --from 10000 --seeds 400 --duration 30 --nodes 3 --require-coverage
bash ci/sim.sh --from 20000 --seeds 150 --duration 30 --nodes 5 --require-coverage
# 5 nodes replaced one after another (removed, wiped, rejoined) under load,
# among crashes, partitions and snapshot-forcing lag.
bash ci/sim.sh --from 30000 --seeds 40 --duration 30 --nodes 5 --faults replace,kill,partition,lag-behind

step "fuzzing: every target builds, replays its fixed crashes and runs 30 s (fuzz/README.md)"
bash ci/fuzz.sh
