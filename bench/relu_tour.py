"""ReLU forward on 128x512 float32, from NumPy to each C path: the numbers of docs/03.

    python bench/relu_tour.py

Each line is the best of several timed batches (microseconds per call), all
measured in this one run. The C paths are forced with MINIGRAD_FORCE_ISA in
a child process each, since the path is chosen once per process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import timeit

import numpy as np

SHAPE = (128, 512)


def best_us(fn, number: int = 2000, repeat: int = 7) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def numpy_steps() -> list[tuple[str, float]]:
    x = (np.random.default_rng(0).standard_normal(SHAPE) * 3).astype(np.float32)

    def maximum_into_zeros():
        y = np.zeros_like(x)
        return np.maximum(x, y, out=y)

    return [
        ("NumPy np.where(x > 0, x, 0)", best_us(lambda: np.where(x > 0, x, 0), number=200)),
        ("NumPy np.maximum(x, 0)", best_us(lambda: np.maximum(x, 0))),
        ("NumPy np.maximum(x, zeros) (the reference)", best_us(maximum_into_zeros)),
    ]


CHILD = """
import numpy as np, timeit
from minigrad.backend.c import CBackend, ffi, lib
x = (np.random.default_rng(0).standard_normal({shape}) * 3).astype(np.float32)
y = np.empty_like(x)
xp, yp = ffi.from_buffer("float[]", x), ffi.from_buffer("float[]", y)
raw = lambda: lib.mg_relu_forward_f32(x.size, yp, xp)
backend = CBackend()
call = lambda: backend.relu_forward(x)
best = lambda f: min(timeit.repeat(f, number=2000, repeat=7)) / 2000 * 1e6
print(best(raw), best(call))
"""


def c_steps() -> list[tuple[str, float]]:
    rows = []
    for isa in ("generic", "avx2", "avx512"):
        env = {**os.environ, "MINIGRAD_FORCE_ISA": isa}
        out = subprocess.run(
            [sys.executable, "-c", CHILD.format(shape=SHAPE)],
            capture_output=True, text=True, env=env, check=True,
        )  # fmt: skip
        raw, call = map(float, out.stdout.split())
        rows.append((f"C loop, {isa} path (lib call only)", raw))
        if isa == "avx512":
            rows.append(("C avx512 through CBackend.relu_forward", call))
    return rows


if __name__ == "__main__":
    print(f"ReLU forward, {SHAPE[0]}x{SHAPE[1]} float32, one thread")
    for name, us in numpy_steps() + c_steps():
        print(f"  {name:<44} {us:8.2f} us")
