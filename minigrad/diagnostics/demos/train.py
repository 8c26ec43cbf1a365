"""The digits MLP trained with SGD, SGD+momentum, Adam and AdamW.

``steps`` counts epochs here (22 mini-batches of 64 each). The last run is
watched by a GradientMonitor, whose report ends the demo.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import minigrad as mg
from minigrad import nn, optim
from minigrad.data import DataLoader, digits

from ..monitor import GradientMonitor
from ._common import figure, save, table


def _model() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)
    )


OPTIMIZERS = {
    "SGD": lambda p: optim.SGD(p, lr=0.05),
    "SGD+momentum": lambda p: optim.SGD(p, lr=0.05, momentum=0.9),
    "Adam": lambda p: optim.Adam(p, lr=1e-3),
    "AdamW": lambda p: optim.AdamW(p, lr=1e-3, weight_decay=1e-2),
}


def _accuracy(model: nn.Module, x: mg.Tensor, y: mg.Tensor) -> float:
    model.eval()
    with mg.no_grad():
        predicted = model(x).max(dim=1).indices
    model.train()
    return float((predicted == y).numpy().mean())


def _progress(name: str, done: int, total: int, accuracy: float) -> None:
    """A one-line bar redrawn in place on a terminal; nothing when piped."""
    if not sys.stderr.isatty():
        return
    filled = round(20 * done / total)
    bar = "#" * filled + "." * (20 - filled)
    sys.stderr.write(f"\r{name:<13} [{bar}] epoch {done}/{total} acc {accuracy:.3f}")
    if done == total:
        sys.stderr.write("\r" + " " * 60 + "\r")
    sys.stderr.flush()


def run(steps: int = 8, seed: int = 0, plot: str | None = None) -> dict[str, Any]:
    epochs = max(steps, 1)
    (x_train, y_train), (x_test, y_test) = digits(seed=seed)
    x_test, y_test = mg.tensor(x_test), mg.tensor(y_test)
    loss_fn = nn.CrossEntropyLoss()
    results: dict[str, Any] = {}
    monitor = None
    for name, make in OPTIMIZERS.items():
        mg.manual_seed(seed)
        model = _model()
        optimizer = make(model.parameters())
        loader = DataLoader((x_train, y_train), batch_size=64, shuffle=True, drop_last=True)
        if name == "AdamW":
            monitor = GradientMonitor(model, every=10)
        accuracies = []
        start = time.perf_counter()
        for epoch in range(1, epochs + 1):
            for xb, yb in loader:
                loss = loss_fn(model(xb), yb)
                optimizer.zero_grad()
                loss.backward()
                if monitor is not None:
                    monitor.step()
                optimizer.step()
            accuracies.append(_accuracy(model, x_test, y_test))
            _progress(name, epoch, epochs, accuracies[-1])
        results[name] = {"accuracy": accuracies, "seconds": time.perf_counter() - start}

    print(
        f"64-128-128-10 ReLU MLP on the 8x8 digits (1,437 train / 360 test), batch 64, "
        f"{epochs} epochs; test accuracy per epoch:"
    )
    names = list(results)
    rows = [[str(e + 1)] + [results[n]["accuracy"][e] for n in names] for e in range(epochs)]
    rows.append(["seconds"] + [results[n]["seconds"] for n in names])
    print(table(["epoch", *names], rows))
    best = max(names, key=lambda n: results[n]["accuracy"][-1])
    print(f"Best final accuracy: {best} ({results[best]['accuracy'][-1]:.3f}).")
    print("Gradient health of the AdamW run (one step in 10 recorded):")
    monitor.report()
    results["monitor"] = monitor
    if plot:
        fig, (ax,) = figure(1, width=7.0)
        for n in names:
            ax.plot(range(1, epochs + 1), results[n]["accuracy"], marker="o", label=n)
        ax.set(xlabel="epoch", ylabel="test accuracy", title="Digits MLP, four optimizers")
        ax.legend()
        save(fig, plot)
    return results
