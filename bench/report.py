"""Turn a pytest-benchmark JSON file into the Markdown table of bench/RESULTS.md.

    pytest bench/ --benchmark-only --benchmark-json=bench.json
    python bench/report.py bench.json > bench/RESULTS.md

Each benchmark group holds one kernel at one size on every backend, measured
in the same run; the table shows the medians and the NumPy/C ratio (above 1
means C is faster). Benchmarks that name a ``variant`` (bench_monitor.py: a
training step plain and with a GradientMonitor) get a table of their own,
each variant against the group's first one.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections import defaultdict


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _microseconds(seconds: float) -> str:
    us = seconds * 1e6
    return f"{us:,.1f}" if us < 1000 else f"{us:,.0f}"


def report(path: str) -> str:
    with open(path) as f:
        data = json.load(f)
    groups: dict[str, dict[str, dict]] = defaultdict(dict)
    variants: dict[str, list[dict]] = defaultdict(list)
    for bench in data["benchmarks"]:
        if "variant" in bench["extra_info"]:
            variants[bench["group"]].append(bench)
        else:
            groups[bench["group"]][bench["extra_info"]["backend"]] = bench
    threads = {
        b["extra_info"].get("threads")
        for b in data["benchmarks"]
        if b["extra_info"]["backend"] == "c"
    }
    info = data.get("machine_info", {})
    has_torch = any("torch" in entry for entry in groups.values())
    # Products carry their flop count: tables with them get GFLOPS columns too.
    has_flops = any("flops" in b["extra_info"] for b in data["benchmarks"])
    header = "| kernel | size | NumPy (us) | C (us) |" + (" PyTorch (us) |" if has_torch else "")
    header += " NumPy / C |" + (" PyTorch / C |" if has_torch else "")
    header += " NumPy GFLOPS | C GFLOPS |" if has_flops else ""
    lines = [
        "# Benchmark results",
        "",
        f"- Date: {data.get('datetime', '?')[:19].replace('T', ' ')} UTC",
        f"- CPU: {_cpu_model()}, {os.cpu_count()} logical cores",
        f"- Python {info.get('python_version', '?')}; "
        f"C backend threads: {', '.join(map(str, sorted(threads)))}",
        f"- OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
        f"MALLOC_ARENA_MAX={os.environ.get('MALLOC_ARENA_MAX', '(unset)')} "
        "(glibc malloc defaults otherwise)",
        f"- Thread backoffs during the run (kernels single-threaded for a while "
        f"because a worker started late): "
        f"{data.get('minigrad', {}).get('thread_backoffs', 'not recorded')}",
        "- Medians in microseconds, every column measured in the same run; "
        "a ratio above 1 means C is faster.",
        "",
        header,
        "|---|---|" + "---:|" * (header.count("|") - 3),
    ]
    for group in sorted(groups, key=_group_order):
        entry = groups[group]
        if "c" not in entry or "numpy" not in entry:
            continue
        kernel, size = group.rsplit("-", 1)
        c, ref = entry["c"]["stats"]["median"], entry["numpy"]["stats"]["median"]
        row = f"| {kernel} | {size} | {_microseconds(ref)} | {_microseconds(c)} |"
        torch = entry.get("torch", {}).get("stats", {}).get("median")
        if has_torch:
            row += f" {_microseconds(torch)} |" if torch else " - |"
        row += f" {ref / c:.2f}x |"
        if has_torch:
            row += f" {torch / c:.2f}x |" if torch else " - |"
        if has_flops:
            flops = entry["c"]["extra_info"].get("flops")
            row += f" {flops / ref / 1e9:.1f} | {flops / c / 1e9:.1f} |" if flops else " - | - |"
        lines.append(row)
    lines += _bandwidth(groups)
    for group, benches in sorted(variants.items()):
        lines += _variant_table(group, benches)
    return "\n".join(lines) + "\n"


def _variant_table(group: str, benches: list[dict]) -> list[str]:
    """One row per variant: its median and how much more than the first variant's."""
    base = benches[0]["stats"]["median"]
    lines = [
        "",
        f"{group} ({benches[0]['extra_info'].get('backend', '?')} backend), "
        "medians in microseconds, measured in the same run:",
        "",
        f"| variant | median (us) | vs {benches[0]['extra_info']['variant']} |",
        "|---|---:|---:|",
    ]
    for bench in benches:
        median = bench["stats"]["median"]
        lines.append(
            f"| {bench['extra_info']['variant']} | {_microseconds(median)} | "
            f"{100 * (median / base - 1):+.1f}% |"
        )
    return lines


def _bandwidth(groups: dict) -> list[str]:
    """Memory bandwidth of each autograd activation against NumPy's own copy of
    an array of the same size, measured in the same run."""
    lines = []
    for group in sorted(groups):
        if not group.startswith("copy-") or "numpy" not in groups[group]:
            continue
        size = group.split("-", 1)[1]
        copy = groups[group]["numpy"]
        copy_rate = copy["extra_info"]["bytes"] / copy["stats"]["median"] / 1e9
        lines += [
            "",
            f"Memory bandwidth at {size}, float32: NumPy's copy moves {copy_rate:.1f} GB/s. "
            "An activation's forward and backward move at least five arrays:",
            "",
            "| activation | C (GB/s) | share of copy bandwidth |",
            "|---|---:|---:|",
        ]
        for other in sorted(groups):
            if other.endswith(f"_autograd-{size}") and "c" in groups[other]:
                c = groups[other]["c"]
                rate = c["extra_info"]["bytes"] / c["stats"]["median"] / 1e9
                name = other.rsplit("_autograd", 1)[0]
                lines.append(f"| {name} | {rate:.1f} | {rate / copy_rate:.0%} |")
    return lines


def _group_order(group: str) -> tuple:
    """Sort by kernel, then by the size's leading number."""
    kernel, size = group.rsplit("-", 1)
    digits = "".join(ch if ch.isdigit() else " " for ch in size).split()
    return kernel, int(digits[0]) if digits else 0, size


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python bench/report.py BENCHMARK_JSON")
    sys.stdout.write(report(sys.argv[1]))
