"""Activation kernels, C against the NumPy reference, at the backend level.

One group per kernel and shape (``relu_forward-2048x2048``) with the two
backends side by side; float32, the threads the backend chose
(MINIGRAD_NUM_THREADS). ``extra_info`` holds the element count and the bytes
each call reads and writes, so a report can turn times into GB/s.
"""

from __future__ import annotations

import numpy as np
import pytest

from minigrad.backend import get_num_threads
from minigrad.backend.c import CBackend
from minigrad.backend.numpy import NumpyBackend

BACKENDS = {"c": CBackend(), "numpy": NumpyBackend()}
SHAPES = [(128, 512), (2048, 2048)]
DTYPE = np.float32

# name -> (call, number of arrays read); each call also writes one array.
KERNELS = {
    "relu_forward": (lambda b, x, gy, y: b.relu_forward(x), 1),
    "relu_backward": (lambda b, x, gy, y: b.relu_backward(gy, y), 2),
    "leaky_relu_forward": (lambda b, x, gy, y: b.leaky_relu_forward(x, 0.01), 1),
    "leaky_relu_backward": (lambda b, x, gy, y: b.leaky_relu_backward(gy, x, 0.01), 2),
    "sigmoid_forward": (lambda b, x, gy, y: b.sigmoid_forward(x), 1),
    "sigmoid_backward": (lambda b, x, gy, y: b.sigmoid_backward(gy, y), 2),
    "tanh_forward": (lambda b, x, gy, y: b.tanh_forward(x), 1),
    "tanh_backward": (lambda b, x, gy, y: b.tanh_backward(gy, y), 2),
    "gelu_forward": (lambda b, x, gy, y: b.gelu_forward(x), 1),
    "gelu_backward": (lambda b, x, gy, y: b.gelu_backward(gy, x), 2),
    "gelu_tanh_forward": (lambda b, x, gy, y: b.gelu_forward(x, "tanh"), 1),
    "gelu_tanh_backward": (lambda b, x, gy, y: b.gelu_backward(gy, x, "tanh"), 2),
}


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(s, marks=[pytest.mark.large] if s[0] * s[1] > 1 << 20 else []) for s in SHAPES
    ],
    ids=lambda s: f"{s[0]}x{s[1]}",
)
def arrays(request):
    rng = np.random.default_rng(0)
    shape = request.param
    x = (rng.standard_normal(shape) * 3).astype(DTYPE)
    gy = rng.standard_normal(shape).astype(DTYPE)
    # y in (0, 1) serves every backward that takes the forward's output.
    y = BACKENDS["numpy"].sigmoid_forward(x)
    return shape, x, gy, y


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("kernel", list(KERNELS))
def test_activation(benchmark, kernel, backend, arrays):
    shape, x, gy, y = arrays
    call, n_inputs = KERNELS[kernel]
    b = BACKENDS[backend]
    benchmark.group = f"{kernel}-{shape[0]}x{shape[1]}"
    benchmark.extra_info.update(
        {
            "backend": backend,
            "shape": list(shape),
            "dtype": np.dtype(DTYPE).name,
            "elements": x.size,
            "bytes": (n_inputs + 1) * x.nbytes,
            "threads": get_num_threads() if backend == "c" else 1,
        }
    )
    benchmark(call, b, x, gy, y)
