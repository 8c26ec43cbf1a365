"""What GradientMonitor costs: one training step of the digits MLP that
``minigrad demo train`` trains (64-128-128-10, ReLU, batch 64, AdamW), plain and
watched by a monitor that records every step (``every=1``, the default) or one
step in ten, measured in the same run on the active backend.

    pytest bench/bench_monitor.py --benchmark-only

The step is a fraction of a millisecond, so other work on the machine moves
it; compare the rows of one run, not runs.

Each variant first trains for WARMUP steps, so that every row is measured in
the same steady state. The same batch every step leaves some ReLU units dead,
and AdamW's running average of their zero gradient decays into the float
subnormals (it stops at the smallest one, as in PyTorch, whose update is the
same), after which the optimizer step runs about twice as slow (measured here:
64 us a step before, 145 us after, from about the 700th step). A short warm-up
would time the variants on either side of that change, by chance.
"""

from __future__ import annotations

import pytest

import minigrad as mg
from minigrad import nn, optim
from minigrad.data import digits
from minigrad.diagnostics import GradientMonitor

VARIANTS = ["plain", "every=1", "every=10"]
BATCH = 64
WARMUP = 1500


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
    for _ in range(WARMUP):  # optimizer state, then the steady state (see above)
        step()
    benchmark(step)
