"""Activations forward and backward through the public API, autograd included.

What a user's code pays: ``F.relu(x).backward(g)`` on minigrad's C backend,
the same through PyTorch's autograd, and the NumPy reference's forward and
backward functions called directly (no graph at all: NumPy's best case). Groups
are ``<activation>_autograd-<shape>``, float32.

``copy-2048x2048`` times NumPy copying one array into another, the memory
bandwidth yardstick: a forward and backward must move at least five arrays
(read x, write y; read g and what forward saved, write the gradient), which
``extra_info["bytes"]`` records so the report can compare.
"""

from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
import minigrad.nn.functional as F
from minigrad.backend.numpy import NumpyBackend

SHAPES = [(128, 512), (2048, 2048)]
DTYPE = np.float32
REFERENCE = NumpyBackend()

# name -> (minigrad call, reference forward, reference backward from (g, x, y))
ACTIVATIONS = {
    "relu": (F.relu, REFERENCE.relu_forward, lambda g, x, y: REFERENCE.relu_backward(g, y)),
    "leaky_relu": (
        lambda t: F.leaky_relu(t, 0.01),
        lambda x: REFERENCE.leaky_relu_forward(x, 0.01),
        lambda g, x, y: REFERENCE.leaky_relu_backward(g, x, 0.01),
    ),
    "sigmoid": (
        F.sigmoid,
        REFERENCE.sigmoid_forward,
        lambda g, x, y: REFERENCE.sigmoid_backward(g, y),
    ),
    "tanh": (F.tanh, REFERENCE.tanh_forward, lambda g, x, y: REFERENCE.tanh_backward(g, y)),
    "gelu": (F.gelu, REFERENCE.gelu_forward, lambda g, x, y: REFERENCE.gelu_backward(g, x)),
    "gelu_tanh": (
        lambda t: F.gelu(t, approximate="tanh"),
        lambda x: REFERENCE.gelu_forward(x, "tanh"),
        lambda g, x, y: REFERENCE.gelu_backward(g, x, "tanh"),
    ),
}
TORCH_CALLS = {
    "relu": lambda torch, t: torch.relu(t),
    "leaky_relu": lambda torch, t: torch.nn.functional.leaky_relu(t, 0.01),
    "sigmoid": lambda torch, t: torch.sigmoid(t),
    "tanh": lambda torch, t: torch.tanh(t),
    "gelu": lambda torch, t: torch.nn.functional.gelu(t),
    "gelu_tanh": lambda torch, t: torch.nn.functional.gelu(t, approximate="tanh"),
}


def _shape_params():
    large = [pytest.mark.large]
    return [
        pytest.param(s, marks=large if s[0] * s[1] > 1 << 20 else [], id=f"{s[0]}x{s[1]}")
        for s in SHAPES
    ]


def _inputs(shape):
    rng = np.random.default_rng(0)
    return (rng.standard_normal(shape) * 3).astype(DTYPE), rng.standard_normal(shape).astype(DTYPE)


def _step(impl: str, name: str, x: np.ndarray, g: np.ndarray):
    """A function running one forward and backward of ``name`` with ``impl``."""
    if impl == "numpy":
        _, forward, backward = ACTIVATIONS[name]

        def step():
            y = forward(x)
            return backward(g, x, y)

        return step
    if impl == "torch":
        torch = pytest.importorskip("torch")
        torch.set_num_threads(mg.get_num_threads())
        xt = torch.from_numpy(x.copy()).requires_grad_()
        gt = torch.from_numpy(g)
        call = TORCH_CALLS[name]

        def step():
            xt.grad = None
            call(torch, xt).backward(gt)

        return step
    xm = mg.tensor(x, requires_grad=True)
    gm = mg.tensor(g)
    call = ACTIVATIONS[name][0]

    def step():
        xm.grad = None
        call(xm).backward(gm)

    return step


@pytest.mark.parametrize("shape", _shape_params())
@pytest.mark.parametrize("impl", ["c", "numpy", "torch"])
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_autograd(benchmark, name, impl, shape):
    if impl == "c":
        if "c" not in mg.backend._BACKENDS:
            pytest.skip("the C backend is not built")
        previous = mg.get_backend()
        mg.set_backend("c")
    x, g = _inputs(shape)
    step = _step(impl, name, x, g)
    benchmark.group = f"{name}_autograd-{shape[0]}x{shape[1]}"
    benchmark.extra_info.update(
        {
            "backend": impl,
            "shape": list(shape),
            "dtype": np.dtype(DTYPE).name,
            "elements": x.size,
            "bytes": 5 * x.nbytes,
            "threads": mg.get_num_threads() if impl != "numpy" else 1,
        }
    )
    try:
        benchmark(step)
    finally:
        if impl == "c":
            mg.set_backend(previous)


@pytest.mark.large
def test_copy_bandwidth(benchmark):
    x, _ = _inputs((2048, 2048))
    out = np.empty_like(x)
    benchmark.group = "copy-2048x2048"
    benchmark.extra_info.update(
        {"backend": "numpy", "shape": [2048, 2048], "bytes": 2 * x.nbytes, "threads": 1}
    )
    benchmark(np.copyto, out, x)
