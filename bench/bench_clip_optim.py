"""Gradient clipping, AdamW and tensor statistics, C against NumPy.

- ``clip_grad_norm_-784x512x512x10``: ``minigrad.nn.utils.clip_grad_norm_`` over the
  gradients of a 784-512-512-10 MLP (669,706 floats) with a max_norm small
  enough that clipping takes effect on every call, through the public API
  on each backend (the NumPy one is the competent baseline: a float64 dot
  per tensor, in-place scaling).
- ``adamw_step-784x512x512x10``: one ``minigrad.optim.AdamW`` step over the same
  parameters, through the public API.
- ``tensor_stats-1024x1024``: ``tensor_stats`` of 2^20 float32 values at the
  backend level.
"""

from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
from minigrad.backend import get_num_threads
from minigrad.backend.c import CBackend
from minigrad.backend.numpy import NumpyBackend
from minigrad.nn.utils import clip_grad_norm_

BACKEND_NAMES = ["c", "numpy"]
MLP_SHAPES = [(512, 784), (512,), (512, 512), (512,), (10, 512), (10,)]
DTYPE = np.float32


@pytest.fixture
def on_backend(request):
    previous = mg.get_backend()
    yield lambda name: mg.set_backend(name)
    mg.set_backend(previous)


def _mlp_parameters(seed: int = 0):
    rng = np.random.default_rng(seed)
    params = []
    for shape in MLP_SHAPES:
        p = mg.tensor(rng.standard_normal(shape).astype(DTYPE) * 0.05, requires_grad=True)
        p.grad = mg.tensor(rng.standard_normal(shape).astype(DTYPE))
        params.append(p)
    return params


def _info(benchmark, backend, elements):
    benchmark.extra_info.update(
        {
            "backend": backend,
            "dtype": np.dtype(DTYPE).name,
            "elements": elements,
            "threads": get_num_threads() if backend == "c" else 1,
        }
    )


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_clip_grad_norm(benchmark, backend, on_backend):
    on_backend(backend)
    params = _mlp_parameters()
    benchmark.group = "clip_grad_norm_-784x512x512x10"
    _info(benchmark, backend, sum(p.numel() for p in params))
    benchmark(clip_grad_norm_, params, 1e-3)


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_adamw_step(benchmark, backend, on_backend):
    on_backend(backend)
    params = _mlp_parameters()
    opt = mg.optim.AdamW(params, lr=1e-3, weight_decay=1e-2)
    benchmark.group = "adamw_step-784x512x512x10"
    _info(benchmark, backend, sum(p.numel() for p in params))
    benchmark(opt.step)


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_tensor_stats(benchmark, backend):
    b = CBackend() if backend == "c" else NumpyBackend()
    x = np.random.default_rng(0).standard_normal((1024, 1024)).astype(DTYPE)
    benchmark.group = "tensor_stats-1024x1024"
    _info(benchmark, backend, x.size)
    benchmark(b.tensor_stats, x, 3.0, 0.0)
