"""What the demos share: building deep MLPs, one training step, tables and figures."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import minigrad as mg
from minigrad import nn

from ..monitor import _matplotlib


def deep_mlp(
    sizes: Sequence[int],
    activation: Callable[[], nn.Module],
    *,
    batchnorm: bool = False,
    init: Callable[[mg.Tensor], Any] | None = None,
) -> nn.Sequential:
    """Linear (+ BatchNorm) + activation per hidden layer, a plain Linear at the end.

    ``init``, when given, re-initializes every weight and zeroes every bias;
    otherwise Linear keeps PyTorch's default init.
    """
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        linear = nn.Linear(n_in, n_out)
        if init is not None:
            init(linear.weight)
            nn.init.zeros_(linear.bias)
        layers.append(linear)
        if i < len(sizes) - 2:
            if batchnorm:
                layers.append(nn.BatchNorm1d(n_out))
            layers.append(activation())
    return nn.Sequential(*layers)


def linear_names(model: nn.Sequential) -> list[str]:
    """Names of the Linear layers in order (the monitor's layer keys)."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], first_width: int = 0) -> str:
    """A fixed-width text table; numbers in 3 significant digits."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            if math.isnan(value):
                return "nan"
            return f"{value:.3g}"
        return str(value)

    text = [[cell(v) for v in row] for row in rows]
    widths = [
        max([len(h)] + [len(r[i]) for r in text] + ([first_width] if i == 0 else []))
        for i, h in enumerate(header)
    ]
    lines = [
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w)
            for i, (h, w) in enumerate(zip(header, widths, strict=True))
        )
    ]
    lines.append("  ".join("-" * w for w in widths))
    for r in text:
        lines.append(
            "  ".join(
                v.ljust(w) if i == 0 else v.rjust(w)
                for i, (v, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return "\n".join(lines)


def figure(ncols: int, width: float = 6.0, height: float = 4.5):
    """A matplotlib Figure with ``ncols`` axes side by side (no pyplot state)."""
    figure_class, _ = _matplotlib()
    fig = figure_class(figsize=(width * ncols, height))
    axes = fig.subplots(1, ncols)
    return fig, np.atleast_1d(axes)


def save(fig: Any, path: str) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")
