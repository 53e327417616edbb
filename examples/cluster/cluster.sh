#!/usr/bin/env bash
# Starts or stops a 3-node Placement Center cluster on this machine.
#   examples/cluster/cluster.sh start   # build, start 3 nodes in the background
#   examples/cluster/cluster.sh stop    # SIGTERM them (graceful)
#   examples/cluster/cluster.sh status
# Clients: 127.0.0.1:2379, 127.0.0.1:22379, 127.0.0.1:32379. Data and logs in target/cluster/.
set -euo pipefail
cd "$(dirname "$0")/../.."
run=target/cluster
case "${1:-}" in
start)
    . ci/setup.sh
    cargo build --bin placement-center
    mkdir -p "$run"
    for n in 1 2 3; do
        if [ -f "$run/node$n.pid" ] && kill -0 "$(cat "$run/node$n.pid")" 2>/dev/null; then
            echo "node$n already running"; continue
        fi
        target/debug/placement-center --config "examples/cluster/node$n.toml" >"$run/node$n.log" 2>&1 &
        echo $! >"$run/node$n.pid"
        echo "node$n started (pid $!, log $run/node$n.log)"
    done
    ;;
stop)
    for n in 1 2 3; do
        if [ -f "$run/node$n.pid" ]; then
            kill -TERM "$(cat "$run/node$n.pid")" 2>/dev/null && echo "node$n stopped" || true
            rm -f "$run/node$n.pid"
        fi
    done
    ;;
status)
    for n in 1 2 3; do
        if [ -f "$run/node$n.pid" ] && kill -0 "$(cat "$run/node$n.pid")" 2>/dev/null; then echo "node$n running"; else echo "node$n stopped"; fi
    done
    ;;
*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
