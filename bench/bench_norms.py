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


# -- through the public API, autograd included ----------------------------------


def _api_step(impl: str, kernel: str, x: np.ndarray, gy: np.ndarray):
    """One forward and backward as user code writes it: minigrad on the C
    backend, or PyTorch's autograd; the NumPy entry is the reference's two
    functions called directly (no graph: NumPy's best case)."""
    features = x.shape[1]
    if impl == "numpy":
        w, bias = np.ones(features, DTYPE), np.zeros(features, DTYPE)
        rm, rv = np.zeros(features, DTYPE), np.ones(features, DTYPE)
        return lambda: KERNELS[kernel](BACKENDS["numpy"], x, gy, w, bias, rm, rv)
    if impl == "torch":
        torch = pytest.importorskip("torch")
        torch.set_num_threads(get_num_threads())
        F = torch.nn.functional
        xt = torch.from_numpy(x.copy()).requires_grad_()
        gt = torch.from_numpy(gy)
        w = torch.ones(features, requires_grad=True)
        bias = torch.zeros(features, requires_grad=True)
        rm, rv = torch.zeros(features), torch.ones(features)
    else:
        import minigrad as torch  # the same names, on purpose
        from minigrad.nn import functional as F

        xt = torch.tensor(x, requires_grad=True)
        gt = torch.tensor(gy)
        w = torch.ones(features, requires_grad=True)
        bias = torch.zeros(features, requires_grad=True)
        rm, rv = torch.zeros(features), torch.ones(features)

    def step():
        xt.grad = w.grad = bias.grad = None
        if kernel == "batch_norm_train_fwd_bwd":
            y = F.batch_norm(xt, rm, rv, w, bias, training=True, momentum=0.1, eps=EPS)
        else:
            y = F.layer_norm(xt, (features,), w, bias, EPS)
        y.backward(gt)

    return step


@pytest.mark.parametrize("impl", ["c", "numpy", "torch"])
@pytest.mark.parametrize("kernel", list(KERNELS))
def test_norm_autograd(benchmark, kernel, impl, arrays):
    import minigrad as mg

    shape, x, gy = arrays
    previous = mg.get_backend()
    if impl == "c":
        if "c" not in mg.backend._BACKENDS:
            pytest.skip("the C backend is not built")
        mg.set_backend("c")
    step = _api_step(impl, kernel, x, gy)
    name = kernel.replace("_train_fwd_bwd", "").replace("_fwd_bwd", "")
    benchmark.group = f"{name}_autograd-{shape[0]}x{shape[1]}"
    benchmark.extra_info.update(
        {
            "backend": impl,
            "shape": list(shape),
            "dtype": np.dtype(DTYPE).name,
            "elements": x.size,
            "bytes": 4 * x.nbytes,
            "threads": get_num_threads() if impl != "numpy" else 1,
        }
    )
    try:
        benchmark(step)
    finally:
        mg.set_backend(previous)
