"""A deep sigmoid net with and without BatchNorm: steps to reach a target loss.

Without normalization the sigmoid's small slope shrinks the gradient layer
after layer and the early layers hardly train; BatchNorm re-centres and
rescales each layer's input, keeping the sigmoid in its steep middle.
"""

from __future__ import annotations

from typing import Any

import minigrad as mg
from minigrad import nn, optim
from minigrad.data import spirals

from ..monitor import GradientMonitor
from ._common import deep_mlp, figure, linear_names, save, table

DEPTH, WIDTH, LR, TARGET = 10, 32, 0.05, 0.5


def run(steps: int = 400, seed: int = 0, plot: str | None = None) -> dict[str, Any]:
    x, y = spirals(100, 3, seed=seed)
    x, y = mg.tensor(x), mg.tensor(y)
    sizes = [2] + [WIDTH] * (DEPTH - 1) + [3]
    loss_fn = nn.CrossEntropyLoss()
    results: dict[str, Any] = {}
    for name, batchnorm in (("sigmoid", False), ("sigmoid+BatchNorm", True)):
        mg.manual_seed(seed)
        model = deep_mlp(sizes, nn.Sigmoid, batchnorm=batchnorm)
        monitor = GradientMonitor(model)
        optimizer = optim.SGD(model.parameters(), lr=LR, momentum=0.9)
        losses = []
        reached = None
        for step in range(max(steps, 1)):
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            monitor.step()
            optimizer.step()
            losses.append(loss.item())
            if reached is None and losses[-1] < TARGET:
                reached = step
        first = monitor.history[0]["params"]
        layers = linear_names(model)
        ratio = (
            first[f"{layers[0]}.weight"]["grad_norm"] / first[f"{layers[-1]}.weight"]["grad_norm"]
        )
        saturated = [
            a["saturated"] for a in monitor.history[-1]["activations"].values() if "saturated" in a
        ]
        results[name] = {
            "losses": losses,
            "steps_to_target": reached,
            "first_last_ratio": ratio,
            "saturated": sum(saturated) / len(saturated),
        }
    print(
        f"A {DEPTH}-layer sigmoid MLP (width {WIDTH}) on spirals, SGD lr {LR:g} momentum 0.9, "
        f"full batch; target loss {TARGET:g}:"
    )
    rows = [
        [
            name,
            r["losses"][0],
            r["losses"][-1],
            "not reached" if r["steps_to_target"] is None else str(r["steps_to_target"]),
            r["first_last_ratio"],
            f"{r['saturated']:.0%}",
        ]
        for name, r in results.items()
    ]
    print(
        table(
            [
                "model",
                "loss@0",
                f"loss@{steps}",
                "steps to target",
                "grad first/last@0",
                "saturated@end",
            ],
            rows,
        )
    )
    print("BatchNorm keeps every layer's gradient near the last layer's, so the net trains.")
    if plot:
        fig, (ax,) = figure(1, width=7.0)
        for name, r in results.items():
            ax.plot(r["losses"], label=name)
        ax.axhline(TARGET, color="gray", linestyle="--", linewidth=1)
        ax.set(xlabel="step", ylabel="loss", title=f"{DEPTH}-layer sigmoid MLP")
        ax.legend()
        save(fig, plot)
    return results
