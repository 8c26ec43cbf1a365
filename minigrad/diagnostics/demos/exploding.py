"""Exploding gradients: a product of factors above 1.

Part 1 (after "The exploding gradient problem: why your neural network gives
NaNs"): a chain of one unit per layer, every weight w = 8. Through ReLU at
x > 0 each layer multiplies dy/dx by w: 8, 64, 512 for 1, 2, 3 layers. tanh
at x = 0 does the same (tanh'(0) = 1); sigmoid with bias -w/2 at x = 0.5 sits
on its steepest point every layer, sigmoid'(0) = 1/4, so (w/4)^L.

Part 2: a deep ReLU MLP initialized too large (std 2 * He) and trained with
SGD. The first step's gradients are already huge, the update throws the
weights far away, and a few steps later the forward overflows float32 and the
loss turns NaN; the GradientMonitor tells the step and the first layer
whose output was no longer finite.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import minigrad as mg
from minigrad import nn, optim
from minigrad.data import spirals

from ..monitor import GradientMonitor
from ._common import deep_mlp, figure, save, table

W = 8.0
SCALE = 2.0  # times the He std
CHAIN = {
    # name: (activation, bias, input x, slope of the activation at the fixed point)
    "relu": (lambda t: t.relu(), 0.0, 1.0, 1.0),
    "tanh": (lambda t: t.tanh(), 0.0, 0.0, 1.0),
    "sigmoid": (lambda t: t.sigmoid(), -W / 2, 0.5, 0.25),
}


def chain_gradient(kind: str, layers: int, w: float = W) -> float:
    """dy/dx of y = act(w * ... act(w * x + b) ... + b), computed by backward."""
    activation, bias, x0, _ = CHAIN[kind]
    if kind == "sigmoid":
        bias = -w / 2
    x = mg.tensor([x0], dtype=mg.float64, requires_grad=True)
    h = x
    for _ in range(layers):
        h = activation(h * w + bias)
    h.sum().backward()
    return float(x.grad.numpy()[0])


def closed_form(kind: str, layers: int, w: float = W) -> float:
    return (w * CHAIN[kind][3]) ** layers


def run(steps: int = 30, seed: int = 0, plot: str | None = None) -> dict[str, Any]:
    depths = list(range(1, 6))
    chain = {
        kind: [(chain_gradient(kind, n), closed_form(kind, n)) for n in depths] for kind in CHAIN
    }
    print(f"1) One unit per layer, w = {W:g}: dy/dx by backward vs the closed form")
    rows = []
    for i, n in enumerate(depths):
        row: list[Any] = [str(n)]
        for kind in CHAIN:
            got, expected = chain[kind][i]
            row += [got, expected]
        rows.append(row)
    print(
        table(
            ["layers", "relu", "w^L", "tanh", "w^L", "sigmoid(b=-w/2)", "(w/4)^L"],
            rows,
        )
    )
    print("   Each layer multiplies the gradient by w * act'(z): ReLU and tanh 8x, sigmoid 2x.")

    blowup = _deep_relu(steps, seed)
    print()
    print(
        f"2) A {blowup['depth']}-layer ReLU MLP, weights N(0, ({SCALE:g} * He std)^2), SGD lr 0.01 "
        "on spirals:"
    )
    rows = [
        [str(r["step"]), r["loss"], r["global_norm"], r["first_layer"], r["last_layer"]]
        for r in blowup["log"]
    ]
    print(table(["step", "loss", "grad norm", "layer 1 norm", "last norm"], rows))
    if blowup["nan_step"] is None:
        print(f"   no NaN/Inf within {steps} steps (run more with --steps)")
    else:
        where = (
            "the loss"
            if blowup["nan_layer"] == "loss"
            else f"the output of module {blowup['nan_layer']} ({blowup['nan_kind']})"
        )
        print(
            f"   NaN/Inf first at step {blowup['nan_step']}, in {where}: the gradients "
            "exploded, each update overshot, and float32 overflowed."
        )
    if plot:
        _plot(chain, depths, blowup, plot)
    return {"chain": chain, "blowup": blowup}


DEPTH = 12


def too_large_relu_mlp(seed: int) -> nn.Sequential:
    """The exploding setup: a 12-layer ReLU MLP with weights SCALE times He's std."""
    mg.manual_seed(seed)
    sizes = [2] + [32] * (DEPTH - 1) + [3]

    def too_large(w: mg.Tensor) -> None:
        nn.init.normal_(w, 0.0, SCALE * math.sqrt(2.0 / w.shape[1]))

    return deep_mlp(sizes, nn.ReLU, init=too_large)


def _deep_relu(steps: int, seed: int) -> dict[str, Any]:
    depth = DEPTH
    model = too_large_relu_mlp(seed)
    x, y = spirals(100, 3, seed=seed)
    x, y = mg.tensor(x), mg.tensor(y)
    monitor = GradientMonitor(model)
    optimizer = optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    layer_of = {name: i for i, name in enumerate(monitor._layer_kinds)}
    log: list[dict[str, Any]] = []
    nan_step = nan_layer = nan_kind = None
    with np.errstate(all="ignore"):
        for step in range(max(steps, 1)):
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            monitor.step()
            record = monitor.history[-1]
            layers = [v["grad_norm"] for v in record["layers"].values()]
            log.append(
                {
                    "step": step,
                    "loss": loss.item(),
                    "global_norm": record["global_norm"],
                    "first_layer": layers[0],
                    "last_layer": layers[-1],
                }
            )
            bad = [name for name, act in record["activations"].items() if act["nan"] or act["inf"]]
            if bad or not math.isfinite(loss.item()):
                nan_step = step
                if bad:
                    first = min(bad, key=layer_of.__getitem__)
                    nan_layer = first
                    nan_kind = record["activations"][first]["kind"]
                else:
                    nan_layer, nan_kind = "loss", "CrossEntropyLoss"
                break
            optimizer.step()
    return {
        "depth": depth,
        "log": log,
        "nan_step": nan_step,
        "nan_layer": nan_layer,
        "nan_kind": nan_kind,
        "monitor": monitor,
    }


def _plot(chain: dict, depths: list[int], blowup: dict, path: str) -> None:
    fig, (ax_chain, ax_norm) = figure(2)
    for kind, pairs in chain.items():
        ax_chain.plot(depths, [g for g, _ in pairs], marker="o", label=f"{kind} (backward)")
        ax_chain.plot(depths, [c for _, c in pairs], linestyle="--", color="gray")
    ax_chain.set_yscale("log")
    ax_chain.set(
        xlabel="layers", ylabel="dy/dx", title="One-unit chain, w = 8 (dashed: closed form)"
    )
    ax_chain.legend()
    steps = [r["step"] for r in blowup["log"]]
    ax_norm.plot(steps, [r["global_norm"] for r in blowup["log"]], marker="o", label="global")
    ax_norm.plot(steps, [r["first_layer"] for r in blowup["log"]], marker="o", label="layer 1")
    ax_norm.set_yscale("log")
    ax_norm.set(xlabel="step", ylabel="gradient norm", title="Deep ReLU MLP, init too large")
    ax_norm.legend()
    save(fig, path)
