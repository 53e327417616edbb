#!/usr/bin/env bash
# A member's disk fills (issue 19): a 3-node cluster on loopback (release
# build), member 3's data dir on a SIZE-MiB tmpfs (needs root; the mount is
# removed on exit), the quota far above it. 64 KiB puts until refused; then
# reads, the acknowledged writes, and recovery: delete, compact, defrag,
# alarm disarm, a put. Usage: bench/disk-full.sh [SIZE] (default 256).
# Ports 4x379-4x381.
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/setup.sh >/dev/null
size=${1:-256}
. bench/lib.sh
small="$run/small"
mkdir -p "$small"
mount -t tmpfs -o size=${size}m tmpfs "$small"
trap 'stop; umount "$small" 2>/dev/null || true; rm -rf "$run"' EXIT
data_dir[3]="$small/n3"
start_three --quota-backend-bytes $((8 << 30))
ep=127.0.0.1:41379
export ETCDCTL_API=3
python3 - "$ep" <<'PY'
import subprocess, sys, time
ep = sys.argv[1]
value = "v" * 65536
acked, started = 0, time.time()
while True:
    r = subprocess.run(["etcdctl", "--endpoints", ep, "put", f"/fill/{acked:06d}", value], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"refused after {acked} puts of 64 KiB ({acked * 64 / 1024:.0f} MiB) in {time.time() - started:.0f} s: {r.stderr.strip().splitlines()[-1]}")
        break
    acked += 1
open("/tmp/disk-full-acked", "w").write(str(acked))
PY
acked=$(cat /tmp/disk-full-acked)
echo "df of member 3's tmpfs: $(df -m "$small" | awk 'NR==2{print $3 " MiB used, " $4 " MiB free"}')"
echo "alarms: $(etcdctl --endpoints $ep alarm list | tr '\n' ' ')"
for n in 1 2 3; do echo "member $n: /health $(curl -s 127.0.0.1:4${n}381/health)"; done
count=$(etcdctl --endpoints $ep get /fill/ --prefix --keys-only --limit 1 -w fields | awk '/"Count"/{print $3}')
echo "reads: $count keys under /fill/ (acknowledged: $acked)"
[ "$count" -ge "$acked" ] || { echo "LOST acknowledged writes"; exit 1; }
# A delete's history event keeps the values it deleted until it is
# compacted, so on a full device the keys go in batches of 50 (3 MiB), each
# compacted away before the next.
for ((i = 0; i < acked; i += 50)); do
    etcdctl --endpoints $ep del "$(printf '/fill/%06d' $i)" "$(printf '/fill/%06d' $((i + 50)))" >/dev/null
    rev=$(etcdctl --endpoints $ep get x -w fields | awk '/"Revision"/{print $3}')
    etcdctl --endpoints $ep compact "$rev" --physical >/dev/null
done
for n in 1 2 3; do etcdctl --endpoints 127.0.0.1:4${n}379 defrag >/dev/null; done
echo "after delete, compact, defrag: $(df -m "$small" | awk 'NR==2{print $3 " MiB used, " $4 " MiB free"}')"
etcdctl --endpoints $ep alarm disarm >/dev/null
sleep 2
echo "alarms after disarm: $(etcdctl --endpoints $ep alarm list | tr '\n' ' ')"
etcdctl --endpoints $ep put /after ok && etcdctl --endpoints 127.0.0.1:43379 get /after --print-value-only
