"""Gradient clipping on the exploding setup of ``demo exploding``.

The same 12-layer ReLU MLP with a too-large init, SGD lr 0.01, trained four
ways: no clipping (the first huge gradient throws the weights away and the
loss overflows), clip by value (every element clamped; the direction
changes), clip by global norm (the direction kept, the step length capped)
and AGC (each unit's gradient capped relative to its weights' norm).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

import minigrad as mg
from minigrad import nn, optim
from minigrad.data import spirals

from ._common import figure, save, table
from .exploding import too_large_relu_mlp

LR = 0.1


def _methods() -> list[tuple[str, Callable[[list], None] | None]]:
    return [
        ("none", None),
        ("value 0.1", lambda params: nn.utils.clip_grad_value_(params, 0.1)),
        ("norm 1.0", lambda params: nn.utils.clip_grad_norm_(params, 1.0)),
        ("AGC 0.1", lambda params: nn.utils.adaptive_clip_grad_(params, clipping=0.1)),
    ]


def run(steps: int = 300, seed: int = 0, plot: str | None = None) -> dict[str, Any]:
    x, y = spirals(100, 3, seed=seed)
    x, y = mg.tensor(x), mg.tensor(y)
    loss_fn = nn.CrossEntropyLoss()
    results: dict[str, Any] = {}
    for name, clip in _methods():
        model = too_large_relu_mlp(seed)
        params = list(model.parameters())
        optimizer = optim.SGD(params, lr=LR)
        losses, norms = [], []
        with np.errstate(all="ignore"):
            for _ in range(max(steps, 1)):
                loss = loss_fn(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                norms.append(
                    math.sqrt(
                        sum(float((p.grad.numpy().astype(np.float64) ** 2).sum()) for p in params)
                    )
                )
                if clip is not None:
                    clip(params)
                optimizer.step()
                losses.append(loss.item())
        finite = [v for v in losses if math.isfinite(v)]
        first_bad = next((i for i, v in enumerate(losses) if not math.isfinite(v)), None)
        results[name] = {
            "losses": losses,
            "grad_norms": norms,
            "final": losses[-1],
            "best": min(finite) if finite else math.nan,
            "first_nonfinite": first_bad,
        }
    print(
        f"The exploding setup (12-layer ReLU MLP, weights 2x He std, SGD lr {LR:g}, spirals) "
        f"trained {steps} steps four ways:"
    )
    rows = [
        [
            name,
            r["losses"][0],
            r["final"],
            r["best"],
            "-" if r["first_nonfinite"] is None else str(r["first_nonfinite"]),
            max(r["grad_norms"]),
        ]
        for name, r in results.items()
    ]
    print(
        table(
            ["clipping", "loss@0", "final loss", "best loss", "NaN/Inf at", "max grad norm"], rows
        )
    )
    print(
        "Without clipping one huge step ruins the weights; clipping bounds every step, so "
        "training survives the explosive start."
    )
    if plot:
        fig, (ax,) = figure(1, width=7.0)
        for name, r in results.items():
            ax.plot(r["losses"], label=name)
        ax.set_yscale("log")
        ax.set(xlabel="step", ylabel="loss (log)", title="Clipping the exploding setup")
        ax.legend()
        save(fig, plot)
    return results
