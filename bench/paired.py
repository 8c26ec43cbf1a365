"""The autograd rows near a target, with the implementations timed in turn.

This machine's speed drifts by up to 2x over seconds (other guests share the
host), and a pytest-benchmark run times each implementation in a stretch of
its own, so one run's ratio can be off by as much. Here every round times
each implementation in turn, in an order that rotates, and a row's
ratio is the median over the rounds of the ratio within a round: a slow
stretch slows both sides of the ratios it falls in. The quartiles of those
ratios show how much a single draw may miss by.

    python bench/paired.py [--rounds 21] [--quick] [--threads N]

Rows: the activations' and norms' forward and backward through the public
API (the same steps as bench_activations_api.py and bench_norms.py, against
the NumPy reference's functions called directly and PyTorch's autograd),
and the exact and tanh GELU's bytes per second as a share of NumPy's copy
at 2048x2048. --quick leaves out the 2048x2048 and 1024x1024 rows.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_activations_api as acts
import bench_norms as norms

import minigrad as mg

BATCH_SECONDS = 0.01  # one timed batch of calls; a round is one batch per implementation
# Before each timed batch, an untimed one of a fifth its length: the previous
# implementation's library (OpenBLAS, PyTorch's OpenMP, minigrad's own) keeps
# its worker threads spinning for a while after its last call, and on two cores
# those take the core the next one's worker needs. A pause instead would let
# every worker fall asleep, and the first calls after it pay for waking them.
WARM_SHARE = 5


def _has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _calls_per_batch(step) -> int:
    step()  # warm: buffers, pools, threads
    start = time.perf_counter()
    step()
    once = max(time.perf_counter() - start, 1e-7)
    return max(1, int(BATCH_SECONDS / once))


def _per_call(step, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        step()
    return (time.perf_counter() - start) / calls


def paired(steps: dict, rounds: int) -> dict:
    """Seconds per call of each step, round by round: {name: [t_round0, ...]}."""
    calls = {name: _calls_per_batch(step) for name, step in steps.items()}
    names = list(steps)
    times: dict = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            _per_call(steps[name], max(1, calls[name] // WARM_SHARE))
            times[name].append(_per_call(steps[name], calls[name]))
    return times


def _quartiles(values) -> tuple[float, float, float]:
    q1, q2, q3 = np.percentile(values, [25, 50, 75])
    return float(q1), float(q2), float(q3)


def _ratio_cell(times: dict, base: str) -> str:
    if base not in times:
        return "-"
    q1, q2, q3 = _quartiles(np.array(times[base]) / np.array(times["c"]))
    return f"{q2:.2f}x ({q1:.2f}-{q3:.2f})"


def _us(times: dict, name: str) -> str:
    return f"{np.median(times[name]) * 1e6:,.1f}" if name in times else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads is not None:
        mg.set_num_threads(args.threads)
    mg.set_backend("c")
    impls = ["c", "numpy"] + (["torch"] if _has_torch() else [])

    rows = []
    act_shapes = [(128, 512)] if args.quick else [(128, 512), (2048, 2048)]
    for shape in act_shapes:
        x, g = acts._inputs(shape)
        for name in acts.ACTIVATIONS:
            steps = {impl: acts._step(impl, name, x, g) for impl in impls}
            rows.append((f"{name}_autograd-{shape[0]}x{shape[1]}", paired(steps, args.rounds)))
    norm_shapes = [(128, 512)] if args.quick else norms.SHAPES
    rng = np.random.default_rng(0)
    for shape in norm_shapes:
        x = (rng.standard_normal(shape) * 2 + 1).astype(norms.DTYPE)
        gy = rng.standard_normal(shape).astype(norms.DTYPE)
        for kernel in norms.KERNELS:
            steps = {impl: norms._api_step(impl, kernel, x, gy) for impl in impls}
            name = kernel.replace("_train_fwd_bwd", "").replace("_fwd_bwd", "")
            rows.append((f"{name}_autograd-{shape[0]}x{shape[1]}", paired(steps, args.rounds)))

    info = mg.backend_info()
    print(
        f"{args.rounds} paired rounds, C backend {info['simd_level']} with "
        f"{info['num_threads']} threads, thread backoffs so far {info.get('thread_backoffs')}; "
        "medians in microseconds; a ratio is the median of the rounds' ratios "
        "(quartiles in brackets), above 1 when C is faster.\n"
    )
    print("| row | NumPy (us) | C (us) | PyTorch (us) | NumPy / C | PyTorch / C |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, times in rows:
        print(
            f"| {label} | {_us(times, 'numpy')} | {_us(times, 'c')} | {_us(times, 'torch')} "
            f"| {_ratio_cell(times, 'numpy')} | {_ratio_cell(times, 'torch')} |"
        )

    if args.quick:
        return
    x, g = acts._inputs((2048, 2048))
    out = np.empty_like(x)
    steps = {"copy": lambda: np.copyto(out, x)}
    for name in ("gelu", "gelu_tanh"):
        steps[name] = acts._step("c", name, x, g)
    times = paired(steps, args.rounds)
    copy_rate = 2 * x.nbytes / np.array(times["copy"])
    print("\n| activation at 2048x2048 | share of NumPy's copy bandwidth |")
    print("|---|---:|")
    for name in ("gelu", "gelu_tanh"):
        share = 5 * x.nbytes / np.array(times[name]) / copy_rate
        q1, q2, q3 = _quartiles(share * 100)
        print(f"| {name} | {q2:.0f}% ({q1:.0f}-{q3:.0f}%) |")


if __name__ == "__main__":
    main()
