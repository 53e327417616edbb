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
start_three
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
