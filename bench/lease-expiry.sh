#!/usr/bin/env bash
# Lease expiry at scale (issue 19): a 3-node cluster on loopback (release
# build); LEASES leases of TTL seconds are granted (each with a key) by 50
# clients, then all run out. Prints how long after the last TTL ended the
# last lease was revoked, and the p99 of puts at a fixed rate while it
# happens against the same puts on a quiet cluster.
# Usage: bench/lease-expiry.sh [LEASES] [TTL] (defaults 10000 10). Ports 4x379-4x381.
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/setup.sh >/dev/null
leases=${1:-10000}
ttl=${2:-10}
. bench/lib.sh
cluster="1=127.0.0.1:41380@127.0.0.1:41379,2=127.0.0.1:42380@127.0.0.1:42379,3=127.0.0.1:43380@127.0.0.1:43379"
endpoints=127.0.0.1:41379,127.0.0.1:42379,127.0.0.1:43379
for n in 1 2 3; do
    $pc --node-id $n --client-addr 127.0.0.1:4${n}379 --peer-addr 127.0.0.1:4${n}380 \
        --metrics-addr 127.0.0.1:4${n}381 --data-dir "$run/n$n" --initial-cluster "$cluster" \
        --initial-cluster-token bench >"$run/n$n.log" 2>&1 &
    pids+=($!)
done
for n in 1 2 3; do until [ "$(curl -s 127.0.0.1:4${n}381/readyz)" = ok ]; do sleep 0.2; done; done
puts() { $bench --endpoints $endpoints --clients 10 --rate 500 --duration "$1" --json put | report "$2" put; }
puts 10 quiet
$bench --endpoints $endpoints --clients 50 --total "$leases" lease-expiry --ttl "$ttl" 2>"$run/expiry.txt" &
expiry=$!
# The puts span the expiry: from 1 s after the first leases' TTL ends
# (the grants take ~3 s) for 8 s.
sleep $((ttl + 1))
puts 8 expiring
wait $expiry
grep '^lease-expiry' "$run/expiry.txt"
