#!/usr/bin/env bash
# Consumer offset commits (issue 24): a 3-node cluster on loopback (release
# build); CLIENTS clients commit the offsets of SHARDS shards for GROUPS
# groups, COMMITS in all, spread over the members. Prints the bench's line,
# how many Raft writes (revisions) the commits took, and the members'
# proposals (Raft entries carrying client commands) from /metrics.
# Usage: bench/offsets.sh [CLIENTS] [GROUPS] [SHARDS] [COMMITS] (defaults 100 1000 4 100000).
# Ports 4x379-4x381.
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/setup.sh >/dev/null
clients=${1:-100}
groups=${2:-1000}
shards=${3:-4}
commits=${4:-100000}
. bench/lib.sh
start_three
proposals() {
    local n total=0
    for n in 1 2 3; do
        total=$((total + $(curl -s 127.0.0.1:4${n}381/metrics | awk '/^placement_raft_proposals_total /{print $2}')))
    done
    echo "$total"
}
before=$(proposals)
$bench --endpoints "$endpoints" --clients "$clients" --total "$commits" offset-commit --groups "$groups" --shards "$shards"
echo "proposals (Raft entries with client commands, all members): $(($(proposals) - before))"
