"""``minigrad bench``: run the benchmark suite of a source checkout and report it.

The suite lives in the repository's ``bench/`` folder (pytest-benchmark), not
in the installed package, so this command works from a clone. It runs the
suite in a child process, then prints the table that ``bench/report.py`` makes
(NumPy, C and PyTorch side by side), the thread count and the BLAS NumPy uses,
and can write the JSON and a bar chart of the speedups.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent / "bench"


def _load_report():
    spec = importlib.util.spec_from_file_location("minigrad_bench_report", BENCH_DIR / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _blas_description() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (install threadpoolctl to see it)"
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    return (
        ", ".join(f"{p['internal_api']} {p['version']} ({p['num_threads']} threads)" for p in pools)
        or "none"
    )


def plot_speedups(json_path: str, png_path: str) -> None:
    """A horizontal bar per benchmark row: NumPy time / C time (log scale)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError('--plot needs matplotlib: pip install "minigrad[plot]"') from None
    import json
    from collections import defaultdict

    with open(json_path) as f:
        data = json.load(f)
    groups: dict = defaultdict(dict)
    for bench in data["benchmarks"]:
        groups[bench["group"]][bench["extra_info"]["backend"]] = bench["stats"]["median"]
    rows = sorted((g, t["numpy"] / t["c"]) for g, t in groups.items() if "c" in t and "numpy" in t)
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(rows) + 1.2))
    names, ratios = [r[0] for r in rows], [r[1] for r in rows]
    ax.barh(names, ratios, color=["tab:green" if r >= 1 else "tab:red" for r in ratios])
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("speedup of the C backend over NumPy (NumPy time / C time)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)


def run(quick: bool, json_path: str | None, png_path: str | None) -> int:
    if not (BENCH_DIR / "report.py").exists():
        print(
            "minigrad bench runs the benchmarks in a source checkout's bench/ folder, which this "
            "installation does not have; clone the repository and `pip install -e .` there.",
            file=sys.stderr,
        )
        return 2
    import minigrad

    out = json_path or os.path.join(tempfile.mkdtemp(), "bench.json")
    command = [sys.executable, "-m", "pytest", str(BENCH_DIR), "--benchmark-only", "-q",
               "-p", "no:cacheprovider", f"--benchmark-json={out}"]  # fmt: skip
    if quick:
        # a few warm-up calls first: with so few rounds, one call that wakes the
        # sleeping OpenMP or OpenBLAS threads would otherwise be a third of them
        command += ["-m", "not large", "--benchmark-max-time=0.1", "--benchmark-min-rounds=5",
                    "--benchmark-warmup=on", "--benchmark-warmup-iterations=5"]  # fmt: skip
    if os.environ.get("MINIGRAD_BENCH_SELECT"):  # a pytest -k expression, to run a subset
        command += ["-k", os.environ["MINIGRAD_BENCH_SELECT"]]
    print(f"minigrad {minigrad.__version__}, backend {minigrad.get_backend()}, "
          f"{minigrad.get_num_threads()} threads; NumPy's BLAS: {_blas_description()}")  # fmt: skip
    print("running:", " ".join(command), flush=True)
    status = subprocess.run(command, check=False, stdout=subprocess.DEVNULL).returncode
    if status != 0:
        print(f"the benchmark run failed (pytest exit {status}); run the command above to see why",
              file=sys.stderr)  # fmt: skip
        return status
    print()
    print(_load_report().report(out))
    if png_path:
        plot_speedups(out, png_path)
        print(f"wrote {png_path}")
    if json_path:
        print(f"wrote {json_path}")
    return 0
