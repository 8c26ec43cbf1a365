"""A 20-layer MLP four ways: how far does the gradient reach back?

With sigmoid and PyTorch's default init each layer multiplies the backward
signal by roughly |w| * sigmoid' <= 0.25 * |w|, so the first layer's gradient
is orders of magnitude below the last one's and the first layers barely move.
Xavier init keeps tanh's signal near scale; He init does the same for ReLU;
BatchNorm rescales every layer's input, so even the sigmoid net learns.
"""

from __future__ import annotations

import math
from typing import Any

import minigrad as mg
from minigrad import nn, optim
from minigrad.data import spirals

from ..monitor import GradientMonitor
from ._common import deep_mlp, figure, linear_names, save, table

DEPTH, WIDTH = 20, 32
LR = 0.003


def _configs() -> list[tuple[str, Any]]:
    tanh_gain = nn.init.calculate_gain("tanh")
    return [
        ("sigmoid/default", lambda sizes: deep_mlp(sizes, nn.Sigmoid)),
        (
            "tanh/Xavier",
            lambda sizes: deep_mlp(
                sizes, nn.Tanh, init=lambda w: nn.init.xavier_normal_(w, gain=tanh_gain)
            ),
        ),
        (
            "ReLU/He",
            lambda sizes: deep_mlp(
                sizes, nn.ReLU, init=lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu")
            ),
        ),
        ("sigmoid+BN", lambda sizes: deep_mlp(sizes, nn.Sigmoid, batchnorm=True)),
    ]


def run(steps: int = 300, seed: int = 0, plot: str | None = None) -> dict[str, Any]:
    x, y = spirals(100, 3, seed=seed)
    x, y = mg.tensor(x), mg.tensor(y)
    sizes = [2] + [WIDTH] * (DEPTH - 1) + [3]
    loss_fn = nn.CrossEntropyLoss()
    results: dict[str, Any] = {}
    for name, build in _configs():
        mg.manual_seed(seed)
        model = build(sizes)
        monitor = GradientMonitor(model)
        optimizer = optim.SGD(model.parameters(), lr=LR, momentum=0.9)
        losses = []
        for _ in range(max(steps, 1)):
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            monitor.step()
            optimizer.step()
            losses.append(loss.item())
        first = monitor.history[0]["params"]
        norms = [first[f"{layer}.weight"]["grad_norm"] for layer in linear_names(model)]
        results[name] = {"grad_norms": norms, "losses": losses, "monitor": monitor}

    names = list(results)
    print(
        f"A {DEPTH}-layer MLP (width {WIDTH}) on spirals (300 points, 3 classes), "
        f"SGD lr {LR} momentum 0.9, full batch."
    )
    print("Weight-gradient L2 norm per Linear layer at step 0:")
    rows = [[str(i + 1)] + [results[n]["grad_norms"][i] for n in names] for i in range(DEPTH)]
    rows.append(["first/last"] + [_ratio(results[n]["grad_norms"]) for n in names])
    rows.append([f"loss@{steps}"] + [results[n]["losses"][-1] for n in names])
    print(table(["layer", *names], rows))
    for n in names:
        ratio = _ratio(results[n]["grad_norms"])
        print(f"  {n:<16} first layer gets {ratio:.2g}x the last layer's gradient")
    print("Vanishing = a first/last ratio far below 1: the early layers cannot learn.")
    if plot:
        _plot(results, plot)
    return results


def _ratio(norms: list[float]) -> float:
    return norms[0] / norms[-1] if norms[-1] else math.nan


def _plot(results: dict[str, Any], path: str) -> None:
    fig, (ax_norm, ax_loss) = figure(2)
    for name, r in results.items():
        ax_norm.plot(range(1, DEPTH + 1), r["grad_norms"], marker="o", label=name)
        ax_loss.plot(r["losses"], label=name)
    ax_norm.set_yscale("log")
    ax_norm.set(xlabel="layer (1 = input side)", ylabel="weight gradient L2 norm at step 0")
    ax_norm.set_title("Gradient per layer of a 20-layer MLP")
    ax_loss.set(xlabel="step", ylabel="cross-entropy loss", title="Training loss")
    ax_norm.legend()
    ax_loss.legend()
    save(fig, path)
