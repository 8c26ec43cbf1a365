"""Batch norm and layer norm, C against the NumPy reference, at the backend level.

One group per kernel pair and shape (``batch_norm_train_fwd_bwd-128x512``)
with the two backends side by side: the training forward (with weight, bias
and running statistics) followed by the backward, float32, the threads the
backend chose (MINIGRAD_NUM_THREADS). ``extra_info`` holds the element
count and the bytes the pair must move at the least (x, y, gy, gx).
"""

from __future__ import annotations

import numpy as np
import pytest

from minigrad.backend import get_num_threads
from minigrad.backend.c import CBackend
from minigrad.backend.numpy import NumpyBackend

BACKENDS = {"c": CBackend(), "numpy": NumpyBackend()}
SHAPES = [(128, 512), (1024, 1024)]
DTYPE = np.float32
EPS = 1e-5


def _batch_norm(b, x, gy, w, bias, running_mean, running_var):
    _y, mean, invstd = b.batch_norm_forward_train(x, w, bias, EPS, running_mean, running_var, 0.1)
    return b.batch_norm_backward(gy, x, mean, invstd, w)


def _layer_norm(b, x, gy, w, bias, running_mean, running_var):
    _y, mean, invstd = b.layer_norm_forward(x, w, bias, EPS)
    return b.layer_norm_backward(gy, x, mean, invstd, w)


KERNELS = {"batch_norm_train_fwd_bwd": _batch_norm, "layer_norm_fwd_bwd": _layer_norm}


@pytest.fixture(scope="module", params=SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def arrays(request):
    rng = np.random.default_rng(0)
    shape = request.param
    x = (rng.standard_normal(shape) * 2 + 1).astype(DTYPE)
    gy = rng.standard_normal(shape).astype(DTYPE)
    return shape, x, gy


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("kernel", list(KERNELS))
def test_norm(benchmark, kernel, backend, arrays):
    shape, x, gy = arrays
    features = shape[1]
    w = np.ones(features, DTYPE)
    bias = np.zeros(features, DTYPE)
    running_mean, running_var = np.zeros(features, DTYPE), np.ones(features, DTYPE)
    benchmark.group = f"{kernel}-{shape[0]}x{shape[1]}"
    benchmark.extra_info.update(
        {
            "backend": backend,
            "shape": list(shape),
            "dtype": np.dtype(DTYPE).name,
            "elements": x.size,
            "bytes": 4 * x.nbytes,
            "threads": get_num_threads() if backend == "c" else 1,
        }
    )
    benchmark(KERNELS[kernel], BACKENDS[backend], x, gy, w, bias, running_mean, running_var)
