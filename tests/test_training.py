"""Whole training loops: memory stays flat, and the digits example learns."""

import gc
import importlib.util
import pathlib
import tracemalloc
import weakref

import numpy as np

import minigrad as mg
from minigrad import nn, optim

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "train_digits.py"


def _mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(20, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 5)
    )


def test_memory_stays_flat_over_1000_steps(backend):
    mg.manual_seed(0)
    model = _mlp()
    opt = optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    x = mg.tensor(rng.standard_normal((32, 20)).astype(np.float32))
    y = mg.tensor(rng.integers(0, 5, 32))

    def step():
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    first_node = weakref.ref(step().grad_fn)
    tracemalloc.start()
    try:
        for _ in range(100):
            step()
        gc.collect()
        after_warmup = tracemalloc.get_traced_memory()[0]
        for _ in range(900):
            step()
        gc.collect()
        after_all = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert first_node() is None, "the graph of an old step is still alive"
    # 900 more steps may not hold on to anything: allow allocator noise only
    assert after_all - after_warmup < 64 * 1024, (after_warmup, after_all)


def test_digits_example_reaches_95_percent():
    spec = importlib.util.spec_from_file_location("train_digits", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    accuracy = example.main(["--epochs", "8"])
    assert accuracy >= 0.95
