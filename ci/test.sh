#!/usr/bin/env bash
# The project's test command (README): formatting, lints in both flavours,
# and every test. Works on a fresh Debian machine (installs what it needs).
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/setup.sh
[ "${CI:-}" = "true" ] && export CARGO_INCREMENTAL=0
command -v cargo-nextest >/dev/null 2>&1 || cargo install cargo-nextest --locked

step() { echo; echo "=== $* ($(date +%T))"; }

step "fmt"
cargo fmt --all -- --check

step "clippy (tokio + RocksDB)"
cargo clippy --all-targets -- -D warnings

step "clippy (madsim flavour: must build without RocksDB)"
RUSTFLAGS="--cfg madsim" cargo clippy --lib --target-dir target/sim -- -D warnings

step "tests"
cargo nextest run --no-fail-fast
