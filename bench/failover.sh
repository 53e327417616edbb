#!/usr/bin/env bash
# Shard failover (issue 24): a 3-node cluster on loopback (release build);
# BROKERS brokers kept alive in three zones, a topic of SHARDS shards with
# REPLICATION replicas placed on them; then ROUNDS brokers go silent one at
# a time. Prints how long placing the topic took and, per shard a silent
# broker led, the time from its registration leaving to the shard's new
# leader (p50 ... max), and the members' CPU seconds.
# Usage: bench/failover.sh [BROKERS] [SHARDS] [REPLICATION] [ROUNDS] (defaults 100 10000 3 5).
# Ports 4x379-4x381.
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/setup.sh >/dev/null
brokers=${1:-100}
shards=${2:-10000}
replication=${3:-3}
rounds=${4:-5}
. bench/lib.sh
start_three
$bench --endpoints "$endpoints" failover --brokers "$brokers" --shards "$shards" --replication "$replication" --rounds "$rounds"
for pid in "${pids[@]}"; do
    echo "member pid $pid: $(awk '{printf "%.1f CPU s", ($14+$15)/100}' /proc/$pid/stat)"
done
