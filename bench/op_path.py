"""Where an op's forward and backward spend their time: in Python (the
functional, autograd, the backend's checks and buffers) or in the C kernels.

    python bench/op_path.py [--rounds 21] [--threads N] [--shape 128x512]

Every round times the same API step as bench_activations_api.py and
bench_norms.py twice, in turn: plain, and with each C kernel call wrapped in
a timer that adds the call's wall time to a total. The kernels' time is that
total per step, less what the timer records for an empty kernel call (0
elements) for each call, so cffi's own call overhead counts as Python and the
timer's cost counts nowhere; Python's time is the plain step less the
kernels'. Both come from the same
round, and a row reports medians over the rounds, the ratio with its
quartiles. The kernels are timed where they run, inside the step, with the
caches as the step leaves them.
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
from paired import _calls_per_batch, _per_call, _quartiles

import minigrad as mg
from minigrad.backend import c as cbackend

_clock = [0.0, 0]  # seconds inside kernel calls, number of calls


def _timed(kernel):
    def call(*args):
        start = time.perf_counter()
        status = kernel(*args)
        _clock[0] += time.perf_counter() - start
        _clock[1] += 1
        return status

    return call


class _KernelTimers:
    """Wraps every C kernel the backend calls (the activation table and the
    fused kernels) while active, for every dtype."""

    def __init__(self) -> None:
        self.plain = dict(cbackend._KERNELS)
        self.plain_fused = {dtype: dict(table) for dtype, table in cbackend._FUSED.items()}
        self.timed = {
            dtype: k._replace(**{f: _timed(getattr(k, f)) for f in k._fields if f != "ctype"})
            for dtype, k in self.plain.items()
        }
        self.timed_fused = {
            dtype: {name: _timed(fn) for name, fn in table.items()}
            for dtype, table in self.plain_fused.items()
        }

    def __enter__(self) -> _KernelTimers:
        cbackend._KERNELS.update(self.timed)
        for dtype, table in self.timed_fused.items():
            cbackend._FUSED[dtype].update(table)
        return self

    def __exit__(self, *exc) -> None:
        cbackend._KERNELS.update(self.plain)
        for dtype, table in self.plain_fused.items():
            cbackend._FUSED[dtype].update(table)


def _empty_call_seconds() -> float:
    """What a timer records for a kernel call on 0 elements: cffi's call
    overhead and the timer's own, which is subtracted from every call so that
    only the time spent in C counts as the kernels'."""
    kernel = _timed(cbackend._KERNELS[np.dtype(np.float32)].relu_forward)
    null = cbackend.ffi.NULL
    calls = 20000
    best = np.inf
    for _ in range(5):
        _clock[:] = [0.0, 0]
        for _ in range(calls):
            kernel(0, null, null)
        best = min(best, _clock[0] / calls)
    _clock[:] = [0.0, 0]
    return best


def split(step, rounds: int, timers: _KernelTimers, empty_call: float) -> dict:
    """Per round: the plain step's seconds, and the kernels' seconds per step."""
    calls = _calls_per_batch(step)
    out: dict = {"step": [], "kernels": []}
    for r in range(rounds):
        for kind in ("plain", "timed") if r % 2 == 0 else ("timed", "plain"):
            if kind == "plain":
                _per_call(step, max(1, calls // 5))
                out["step"].append(_per_call(step, calls))
                continue
            with timers:
                _per_call(step, max(1, calls // 5))
                _clock[:] = [0.0, 0]
                _per_call(step, calls)
                seconds, count = _clock
            out["kernels"].append((seconds - count * empty_call) / calls)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--shape", default="128x512")
    args = parser.parse_args()
    if args.threads is not None:
        mg.set_num_threads(args.threads)
    mg.set_backend("c")
    shape = tuple(int(s) for s in args.shape.split("x"))
    timers = _KernelTimers()
    empty_call = _empty_call_seconds()

    rows = []
    x, g = acts._inputs(shape)
    for name in acts.ACTIVATIONS:
        rows.append((name, split(acts._step("c", name, x, g), args.rounds, timers, empty_call)))
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 2 + 1).astype(norms.DTYPE)
    gy = rng.standard_normal(shape).astype(norms.DTYPE)
    for kernel in norms.KERNELS:
        name = kernel.replace("_train_fwd_bwd", "").replace("_fwd_bwd", "")
        rows.append(
            (name, split(norms._api_step("c", kernel, x, gy), args.rounds, timers, empty_call))
        )

    info = mg.backend_info()
    print(
        f"{args.rounds} rounds at {shape[0]}x{shape[1]} float32, C backend {info['simd_level']} "
        f"with {info['num_threads']} threads; a timer records "
        f"{empty_call * 1e6:.2f} us for an empty kernel call, which counts as Python; "
        "medians in microseconds.\n"
    )
    print("| op | step (us) | kernels (us) | Python (us) | Python / kernels |")
    print("|---|---:|---:|---:|---:|")
    for name, t in rows:
        step, kernels = np.array(t["step"]), np.array(t["kernels"])
        python = step - kernels
        q1, q2, q3 = _quartiles(python / kernels)
        print(
            f"| {name} | {np.median(step) * 1e6:.1f} | {np.median(kernels) * 1e6:.1f} "
            f"| {np.median(python) * 1e6:.1f} | {q2:.2f} ({q1:.2f}-{q3:.2f}) |"
        )


if __name__ == "__main__":
    main()
