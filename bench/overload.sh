#!/usr/bin/env bash
# Overload (issue 19): a 3-node cluster on loopback (release build); puts at
# 100 and at 1000 clients for 20 s each (1000 is where throughput stops
# growing on 2 cores), then at 10,000 clients for 60 s. Prints both, the errors by code, the largest latency (to be within the
# 5 s request timeout) and each member's peak RSS (VmHWM).
# Usage: bench/overload.sh. Ports 4x379-4x381.
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/setup.sh >/dev/null
. bench/lib.sh
start_three
$bench --endpoints $endpoints --clients 100 --duration 20 put
$bench --endpoints $endpoints --clients 1000 --conns 200 --duration 20 put
$bench --endpoints $endpoints --clients 10000 --conns 500 --duration ${OVERLOAD_SECS:-60} put
for n in 1 2 3; do echo "node$n: peak rss $(awk '/VmHWM/{print $2, $3}' /proc/${pids[$((n-1))]}/status)"; done
