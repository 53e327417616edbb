#!/usr/bin/env python3
"""Turns ci/bench.sh's raw results into a markdown table and an SVG chart.

Usage: bench/report.py RAW.jsonl RESULTS.md CHART.svg
Each scenario's numbers are the mean over the rounds of each target.
"""
import json
import sys
from collections import defaultdict


def mean(values):
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def load(path):
    runs = defaultdict(list)  # (name, target) -> [result]
    order = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            key = (r["name"], r["target"])
            if r["name"] not in order:
                order.append(r["name"])
            runs[key].append(r)
    return runs, order


def summary(results):
    if not results:
        return None
    if "rss_kib" in results[0]:
        return {"rss_mib": mean(r["rss_kib"] for r in results) / 1024}
    if "restart_s" in results[0]:
        return {
            "keys": results[0]["keys"],
            "rss_mib": mean(r["rss_kib_mean"] for r in results) / 1024,
            "rss_max_mib": mean(r["rss_kib_max"] for r in results) / 1024,
            "restart_s": mean(r["restart_s"] for r in results),
        }
    return {
        "throughput": mean(r["throughput"] for r in results),
        "p50": mean(r["latency_ms"].get("p50", 0) for r in results),
        "p99": mean(r["latency_ms"].get("p99", 0) for r in results),
        "p999": mean(r["latency_ms"].get("p99.9", 0) for r in results),
        "errors": sum(sum(r["errors"].values()) for r in results),
        "cpu_us": mean(r.get("server_cpu_us", 0) for r in results),
        "rounds": len(results),
        "unit": results[0].get("unit", "requests"),
    }


def ratio(a, b):
    return a / b if b else float("nan")


def markdown(runs, order):
    lines = [
        "| scenario | etcd /s | placement /s | ratio | etcd p50 / p99 ms | placement p50 / p99 ms | p99 ratio "
        "| members' CPU per request, etcd / placement | CPU ratio | errors (etcd / placement) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    s = {}
    for name in order:
        e, p = summary(runs.get((name, "etcd"), [])), summary(runs.get((name, "placement"), []))
        s[name] = (e, p)
        if e is None or p is None or "throughput" not in e:
            continue
        lines.append(
            f"| {name} | {e['throughput']:.0f} | {p['throughput']:.0f} | {ratio(p['throughput'], e['throughput']):.2f}x "
            f"| {e['p50']:.2f} / {e['p99']:.2f} | {p['p50']:.2f} / {p['p99']:.2f} | {ratio(p['p99'], e['p99']):.2f}x "
            f"| {e['cpu_us']:.0f} / {p['cpu_us']:.0f} us | {ratio(p['cpu_us'], e['cpu_us']):.2f}x "
            f"| {e['errors']} / {p['errors']} |"
        )
    rss = s.get("rss-after-load")
    if rss and rss[0] and rss[1]:
        lines.append("")
        lines.append(
            f"Mean RSS per member after the scenarios: etcd {rss[0]['rss_mib']:.0f} MiB, "
            f"Placement Center {rss[1]['rss_mib']:.0f} MiB."
        )
    scale = s.get("scale")
    if scale and scale[0] and scale[1]:
        e, p = scale
        lines.append("")
        lines.append(f"After loading {e['keys']:,} keys of 256 B (load-{e['keys']} above):")
        lines.append("")
        lines.append("| | etcd | placement | ratio |")
        lines.append("|---|---:|---:|---:|")
        lines.append(
            f"| RSS per member, mean (max) | {e['rss_mib']:.0f} ({e['rss_max_mib']:.0f}) MiB "
            f"| {p['rss_mib']:.0f} ({p['rss_max_mib']:.0f}) MiB | {ratio(p['rss_mib'], e['rss_mib']):.2f}x |"
        )
        lines.append(
            f"| a restarted member serves every key after | {e['restart_s']:.2f} s | {p['restart_s']:.2f} s "
            f"| {ratio(p['restart_s'], e['restart_s']):.2f}x |"
        )
    lines.append("")
    lines.append("| target (issue 22) | measured | met |")
    lines.append("|---|---|---|")

    def target(label, name, field, want, better_high):
        e, p = s.get(name, (None, None))
        if not e or not p:
            lines.append(f"| {label} | not measured | - |")
            return
        r = ratio(p[field], e[field])
        met = r >= want if better_high else r <= want
        lines.append(f"| {label} | {r:.2f}x | {'yes' if met else 'no'} |")

    target("write throughput, 100 clients, >= 2x etcd", "put-100", "throughput", 2.0, True)
    target("p99 write latency at half etcd's peak rate, <= 0.5x etcd", "put-100-half-etcd-rate", "p99", 0.5, False)
    target("linearizable range throughput, 100 clients, >= 2x etcd", "range-l-100", "throughput", 2.0, True)
    target("single-client sequential put latency (p50), <= etcd", "put-1", "p50", 1.0, False)
    return "\n".join(lines) + "\n"


def svg(runs, order):
    rows = [n for n in order if "throughput" in (summary(runs.get((n, "etcd"), [])) or {})]
    width, left, bar, gap = 900, 210, 11, 14
    panel = (width - left - 40) // 2
    height = 60 + len(rows) * (2 * bar + gap)
    colors = {"etcd": "#9e9e9e", "placement": "#1e6fd9"}
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
        f'<text x="{left}" y="16" font-size="13">throughput (/s)</text>',
        f'<text x="{left + panel + 30}" y="16" font-size="13">p99 latency (ms)</text>',
        '<rect x="10" y="24" width="10" height="10" fill="#9e9e9e"/><text x="24" y="33">etcd 3.4</text>',
        '<rect x="90" y="24" width="10" height="10" fill="#1e6fd9"/><text x="104" y="33">Placement Center</text>',
    ]
    max_tp = max(summary(runs[(n, t)])["throughput"] for n in rows for t in colors if (n, t) in runs) or 1
    max_p99 = max(summary(runs[(n, t)])["p99"] for n in rows for t in colors if (n, t) in runs) or 1
    y = 50
    for name in rows:
        out.append(f'<text x="{left - 8}" y="{y + bar + 4}" text-anchor="end">{name}</text>')
        for i, t in enumerate(colors):
            r = summary(runs.get((name, t), []))
            if not r:
                continue
            yy = y + i * bar
            w = panel * r["throughput"] / max_tp
            out.append(f'<rect x="{left}" y="{yy}" width="{w:.1f}" height="{bar - 1}" fill="{colors[t]}"/>')
            out.append(f'<text x="{left + w + 3:.1f}" y="{yy + bar - 2}">{r["throughput"]:.0f}</text>')
            x2 = left + panel + 30
            w2 = panel * r["p99"] / max_p99
            out.append(f'<rect x="{x2}" y="{yy}" width="{w2:.1f}" height="{bar - 1}" fill="{colors[t]}"/>')
            out.append(f'<text x="{x2 + w2 + 3:.1f}" y="{yy + bar - 2}">{r["p99"]:.1f}</text>')
        y += 2 * bar + gap
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    raw, md_path, svg_path = sys.argv[1:4]
    runs, order = load(raw)
    with open(md_path, "w") as f:
        f.write(markdown(runs, order))
    with open(svg_path, "w") as f:
        f.write(svg(runs, order))


if __name__ == "__main__":
    main()
