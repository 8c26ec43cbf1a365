"""What GradientMonitor costs: one training step of the digits MLP that
``minigrad demo train`` trains (64-128-128-10, ReLU, batch 64, AdamW), plain and
watched by a monitor that records every step (``every=1``, the default) or one
step in ten, measured in the same run on the active backend.

    pytest bench/bench_monitor.py --benchmark-only

The step is a fraction of a millisecond, so other work on the machine moves
it; compare the rows of one run, not runs.
"""

from __future__ import annotations

import pytest

import minigrad as mg
from minigrad import nn, optim
from minigrad.data import digits
from minigrad.diagnostics import GradientMonitor

VARIANTS = ["plain", "every=1", "every=10"]
BATCH = 64


def _train_step(variant: str):
    mg.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)
    )
    optimizer = optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    (x_train, y_train), _ = digits(seed=0)
    x, y = mg.tensor(x_train[:BATCH]), mg.tensor(y_train[:BATCH])
    loss_fn = nn.CrossEntropyLoss()
    monitor = None if variant == "plain" else GradientMonitor(model, every=int(variant[6:]))

    def step():
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        if monitor is not None:
            monitor.step()
        optimizer.step()

    return step


@pytest.mark.parametrize("variant", VARIANTS)
def test_monitor_overhead(benchmark, variant):
    step = _train_step(variant)
    benchmark.group = "monitor_overhead"
    benchmark.extra_info.update(
        {
            "backend": mg.get_backend(),
            "variant": variant,
            "batch": BATCH,
            "threads": mg.get_num_threads(),
        }
    )
    for _ in range(5):  # warm up: the first steps allocate optimizer state
        step()
    benchmark(step)
