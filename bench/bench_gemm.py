"""Matrix products, C against NumPy (OpenBLAS), float32 and float64.

One group per product and dtype, named ``gemm_f32-MxKxN`` (op(a) is M x K,
op(b) is K x N; a ``_tA`` or ``_tB`` suffix on the kernel name means the
operand is read transposed in place), with the two backends side by side,
each through its backend's ``gemm``. ``extra_info["flops"]`` is 2 M N K, so
a report can turn times into GFLOPS. Threads: the C backend's from
MINIGRAD_NUM_THREADS; NumPy's from OPENBLAS_NUM_THREADS (set both for a
fair one-thread comparison).

The ``matmul_*`` groups time the public path, ``Tensor @ Tensor`` on the C
backend, against NumPy's own ``a @ b`` on the same arrays.
"""

from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
from minigrad.backend import get_num_threads
from minigrad.backend.c import CBackend
from minigrad.backend.numpy import NumpyBackend

BACKENDS = {"c": CBackend(), "numpy": NumpyBackend()}
DTYPES = {"f32": np.float32, "f64": np.float64}

# (suffix, M, K, N, trans_a, trans_b, bias): the shapes of issue 4.
PRODUCTS = [
    ("", 512, 512, 512, False, False, False),
    ("", 1024, 1024, 1024, False, False, False),
    ("", 2048, 2048, 2048, False, False, False),
    ("", 128, 784, 512, False, False, False),
    ("", 128, 512, 512, False, False, False),
    ("", 128, 512, 10, False, False, False),
    # Linear backward: x.T @ g (512x128)@(128x512) and g @ w.T (128x512)@(512x512)^T
    ("_tA", 512, 128, 512, True, False, False),
    ("_tB", 128, 512, 512, False, True, False),
    # Linear forward as nn.Linear runs it: x @ W.T + b
    ("_tB_bias", 128, 784, 512, False, True, True),
]


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("dtype_key", list(DTYPES))
@pytest.mark.parametrize("product", PRODUCTS, ids=lambda p: f"gemm{p[0]}-{p[1]}x{p[2]}x{p[3]}")
def test_gemm(benchmark, product, dtype_key, backend):
    suffix, m, k, n, trans_a, trans_b, with_bias = product
    dtype = DTYPES[dtype_key]
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    bias = rng.standard_normal(n).astype(dtype) if with_bias else None
    gemm = BACKENDS[backend].gemm
    benchmark.group = f"gemm_{dtype_key}{suffix}-{m}x{k}x{n}"
    benchmark.extra_info.update(
        {
            "backend": backend,
            "m": m,
            "k": k,
            "n": n,
            "dtype": np.dtype(dtype).name,
            "flops": 2 * m * n * k,
            "threads": get_num_threads() if backend == "c" else None,
        }
    )
    benchmark(lambda: gemm(a, b, trans_a=trans_a, trans_b=trans_b, bias=bias))


@pytest.mark.parametrize("backend", ["c", "numpy"])
@pytest.mark.parametrize("size", [16, 64])
def test_matmul_small(benchmark, size, backend):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(np.float32)
    b = rng.standard_normal((size, size)).astype(np.float32)
    benchmark.group = f"matmul_f32-{size}x{size}x{size}"
    benchmark.extra_info.update(
        {
            "backend": backend,
            "m": size,
            "k": size,
            "n": size,
            "dtype": "float32",
            "flops": 2 * size**3,
            "threads": get_num_threads() if backend == "c" else None,
        }
    )
    if backend == "numpy":
        benchmark(lambda: a @ b)
        return
    previous = mg.get_backend()
    mg.set_backend("c")
    try:
        ta, tb = mg.tensor(a), mg.tensor(b)
        benchmark(lambda: ta @ tb)
    finally:
        mg.set_backend(previous)
