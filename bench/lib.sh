# Shared by the bench scripts.

# report MODE NAME: one line from placement-bench's --json report on stdin.
report() {
    python3 -c "
import json, sys
r = json.load(sys.stdin)
print(f\"$1 {'$2':<8} {r['throughput']:>9.0f}/s  p50 {r['latency_ms'].get('p50', 0):6.2f} ms  p99 {r['latency_ms'].get('p99', 0):6.2f} ms  errors {sum(r['errors'].values())}\")"
}
