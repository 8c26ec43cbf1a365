"""One training step of a 784-512-512-10 MLP with BatchNorm1d and ReLU, float32:
forward, cross-entropy, backward, clip_grad_norm_, AdamW. Batch 32 and 128, for
minigrad on each backend and for PyTorch when it is installed, in one run.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn, optim

BATCHES = [32, 128]
SIZES = (784, 512, 512, 10)


def _minigrad_step(batch: int):
    mg.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(784, 512), nn.BatchNorm1d(512), nn.ReLU(),
        nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(),
        nn.Linear(512, 10),
    )  # fmt: skip
    opt = optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    x = mg.tensor(rng.standard_normal((batch, 784)).astype(np.float32))
    y = mg.tensor(rng.integers(0, 10, batch))

    def step():
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step


def _torch_step(batch: int):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    torch.set_num_threads(mg.get_num_threads())
    tnn = torch.nn
    model = tnn.Sequential(
        tnn.Linear(784, 512), tnn.BatchNorm1d(512), tnn.ReLU(),
        tnn.Linear(512, 512), tnn.BatchNorm1d(512), tnn.ReLU(),
        tnn.Linear(512, 10),
    )  # fmt: skip
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = tnn.CrossEntropyLoss()
    x = torch.randn(batch, 784)
    y = torch.randint(0, 10, (batch,))

    def step():
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step


@pytest.mark.parametrize("impl", ["c", "numpy", "torch"])
@pytest.mark.parametrize("batch", BATCHES)
def test_train_step(benchmark, impl, batch):
    if impl == "torch":
        step = _torch_step(batch)
    else:
        if impl not in mg.backend._BACKENDS:
            pytest.skip(f"backend {impl} not available")
        previous = mg.get_backend()
        mg.set_backend(impl)
        step = _minigrad_step(batch)
    flops = 2 * 3 * batch * sum(a * b for a, b in itertools.pairwise(SIZES))
    benchmark.group = f"train_step-batch{batch}"
    benchmark.extra_info.update(
        {"backend": impl, "batch": batch, "threads": mg.get_num_threads(), "matmul_flops": flops}
    )
    try:
        for _ in range(3):  # warm up: the first steps allocate optimizer state
            step()
        benchmark(step)
    finally:
        if impl != "torch":
            mg.set_backend(previous)
