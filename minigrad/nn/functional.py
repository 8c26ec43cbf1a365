"""Stateless layers and losses: ``import minigrad.nn.functional as F``.

PyTorch's names, signatures and semantics. Each function checks what it was
given (a Tensor, a known reduction, p in [0, 1], ...) and then calls one
Function from ``minigrad.ops``; the math and the gradients live there.

Deviations from PyTorch, all deliberate:

- ``softmax``/``log_softmax`` default to ``dim=-1``: PyTorch's ``dim=None``
  guesses a dim from the rank (dim 0 for 3-D input) and warns that the guess
  is deprecated; here None means -1.
- ``inplace=True`` is accepted (so ported code runs) but the result is a new
  tensor: the input is not overwritten.
- ``mse_loss``/``l1_loss`` take no ``weight``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import ops
from ..dtypes import as_dtype
from ..ops.nn import REDUCTIONS
from ..tensor import Tensor, _dims

__all__ = [
    "batch_norm",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "dropout",
    "gelu",
    "l1_loss",
    "layer_norm",
    "leaky_relu",
    "linear",
    "log_softmax",
    "mse_loss",
    "relu",
    "sigmoid",
    "softmax",
    "tanh",
]


# ---------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------


def _tensor(fn: str, name: str, value: Any) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(
            f"{fn}: argument '{name}' must be a Tensor, got {type(value).__name__}"
            + (" (wrap it with mg.tensor(...))" if isinstance(value, (list, np.ndarray)) else "")
        )
    return value


def _optional_tensor(fn: str, name: str, value: Any) -> Tensor | None:
    return None if value is None else _tensor(fn, name, value)


def _number(fn: str, name: str, value: Any, lo: float, hi: float) -> float:
    if type(value) is not float:  # a float, the usual case, needs no conversion
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{fn}: argument '{name}' must be a number, got {type(value).__name__}")
        value = float(value)
    if not lo <= value <= hi:
        raise ValueError(f"{fn}: argument '{name}' must be in [{lo}, {hi}], got {value}")
    return value


def _reduction(
    fn: str, reduction: str, size_average: bool | None = None, reduce: bool | None = None
) -> str:
    if size_average is not None or reduce is not None:
        # PyTorch's legacy pair, mapped the way torch maps it
        warnings.warn(
            f"{fn}: size_average and reduce are deprecated; use reduction='mean'|'sum'|'none'",
            DeprecationWarning,
            stacklevel=3,
        )
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        return "mean" if size_average and reduce else "sum" if reduce else "none"
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"{fn}: argument 'reduction' must be 'mean', 'sum' or 'none', got {reduction!r}"
        )
    return reduction


# ---------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    return ops.ReLU.apply(_tensor("relu", "input", input))


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    slope = _number("leaky_relu", "negative_slope", negative_slope, -math.inf, math.inf)
    return ops.LeakyReLU.apply(_tensor("leaky_relu", "input", input), slope)


def sigmoid(input: Tensor) -> Tensor:
    return ops.Sigmoid.apply(_tensor("sigmoid", "input", input))


def tanh(input: Tensor) -> Tensor:
    return ops.Tanh.apply(_tensor("tanh", "input", input))


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    if approximate not in ("none", "tanh"):
        raise ValueError(
            f"gelu: argument 'approximate' must be 'none' or 'tanh', got {approximate!r}"
        )
    return ops.GELU.apply(_tensor("gelu", "input", input), approximate)


def _softmax_dim(fn: str, x: Tensor, dim: int | None) -> int:
    if x.ndim == 0:
        _dims(-1 if dim is None else dim, 0, fn)
        return 0
    return _dims(-1 if dim is None else dim, x.ndim, fn)[0]


def softmax(input: Tensor, dim: int | None = -1, dtype: Any = None) -> Tensor:
    x = _tensor("softmax", "input", input)
    if dtype is not None:
        x = x.to(as_dtype(dtype, "softmax"))
    return ops.Softmax.apply(x, _softmax_dim("softmax", x, dim))


def log_softmax(input: Tensor, dim: int | None = -1, dtype: Any = None) -> Tensor:
    x = _tensor("log_softmax", "input", input)
    if dtype is not None:
        x = x.to(as_dtype(dtype, "log_softmax"))
    return ops.LogSoftmax.apply(x, _softmax_dim("log_softmax", x, dim))


# ---------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``input @ weight.T + bias`` for input (..., in_features), weight (out, in)."""
    return ops.Linear.apply(
        _tensor("linear", "input", input),
        _tensor("linear", "weight", weight),
        _optional_tensor("linear", "bias", bias),
    )


def _check_batch_size(fn: str, x: Tensor) -> None:
    per_channel = x.shape[0] * (x.shape[2] if x.ndim == 3 else 1)
    if per_channel == 1:
        raise ValueError(
            f"Expected more than 1 value per channel when training, got input size {x.shape}"
        )


def batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Batch norm over dim 1 of input (N, C) or (N, C, L).

    In training the batch statistics normalize and, when running_mean and
    running_var are given, update them in place with ``momentum``.
    """
    fn = "batch_norm"
    x = _tensor(fn, "input", input)
    running = (
        _optional_tensor(fn, "running_mean", running_mean),
        _optional_tensor(fn, "running_var", running_var),
    )
    w = _optional_tensor(fn, "weight", weight)
    b = _optional_tensor(fn, "bias", bias)
    momentum = _number(fn, "momentum", momentum, 0.0, 1.0)
    eps = _number(fn, "eps", eps, 0.0, math.inf)
    if x.ndim not in (2, 3):
        raise ValueError(f"{fn}: expected 2D or 3D input (got {x.ndim}D input)")
    if training:
        _check_batch_size(fn, x)
    for name, t in (("running_mean", running[0]), ("running_var", running[1])):
        if t is not None and t._requires_grad:
            raise ValueError(f"{fn}: {name} must not require grad; it is a buffer, not a weight")
    # The options go by keyword: apply then walks only the five array arguments.
    out = ops.BatchNorm.apply(
        x, w, b, *running, training=bool(training), momentum=momentum, eps=eps
    )
    if training:
        for t in running:
            if t is not None:
                t._version[0] += 1  # updated in place: graphs that saved them must notice
    return out


def _normalized_shape(fn: str, normalized_shape: Any) -> tuple[int, ...]:
    if isinstance(normalized_shape, (int, np.integer)):
        normalized_shape = (normalized_shape,)
    try:
        shape = tuple(map(int, normalized_shape))
    except (TypeError, ValueError):
        raise TypeError(
            f"{fn}: normalized_shape must be an int or a sequence of ints, got {normalized_shape!r}"
        ) from None
    if not shape or min(shape) < 0:
        raise ValueError(
            f"{fn}: normalized_shape must be one or more non-negative sizes, got {shape}"
        )
    return shape


def layer_norm(
    input: Tensor,
    normalized_shape: int | Sequence[int],
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Normalize over the trailing dims given by ``normalized_shape``."""
    fn = "layer_norm"
    x = _tensor(fn, "input", input)
    shape = _normalized_shape(fn, normalized_shape)
    if x.shape[x.ndim - len(shape) :] != shape or x.ndim < len(shape):
        raise ValueError(f"{fn}: input of shape {x.shape} does not end in normalized_shape {shape}")
    eps = _number(fn, "eps", eps, 0.0, math.inf)
    return ops.LayerNorm.apply(
        x,
        _optional_tensor(fn, "weight", weight),
        _optional_tensor(fn, "bias", bias),
        normalized_ndim=len(shape),
        eps=eps,
    )


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Inverted dropout; the input itself when not training or p == 0."""
    x = _tensor("dropout", "input", input)
    p = _number("dropout", "p", p, 0.0, 1.0)
    if not training or p == 0.0:
        return x
    return ops.Dropout.apply(x, p)


# ---------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------


def _warn_if_broadcast(fn: str, x: Tensor, y: Tensor) -> None:
    if x.shape != y.shape:
        warnings.warn(
            f"{fn}: target size {y.shape} differs from input size {x.shape}; they will be "
            "broadcast, which is likely not what you want",
            UserWarning,
            stacklevel=3,
        )


def _pointwise_loss(fn, function, input, target, size_average, reduce, reduction) -> Tensor:
    """The shared body of mse_loss and l1_loss: check, resolve the reduction, apply."""
    x, y = _tensor(fn, "input", input), _tensor(fn, "target", target)
    reduction = _reduction(fn, reduction, size_average, reduce)
    _warn_if_broadcast(fn, x, y)
    return function.apply(x, y, reduction)


def mse_loss(
    input: Tensor,
    target: Tensor,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Tensor:
    return _pointwise_loss("mse_loss", ops.MSELoss, input, target, size_average, reduce, reduction)


def l1_loss(
    input: Tensor,
    target: Tensor,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Tensor:
    return _pointwise_loss("l1_loss", ops.L1Loss, input, target, size_average, reduce, reduction)


def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross entropy of logits (C,), (N, C) or (N, C, d1, ...) against int64
    class indices or float class probabilities."""
    fn = "cross_entropy"
    x, t = _tensor(fn, "input", input), _tensor(fn, "target", target)
    w = _optional_tensor(fn, "weight", weight)
    reduction = _reduction(fn, reduction, size_average, reduce)
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        raise TypeError(f"{fn}: argument 'ignore_index' must be an int, got {ignore_index!r}")
    label_smoothing = _number(fn, "label_smoothing", label_smoothing, 0.0, 1.0)
    return ops.CrossEntropy.apply(x, t, w, int(ignore_index), reduction, label_smoothing)


def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    pos_weight: Tensor | None = None,
) -> Tensor:
    """Sigmoid + binary cross entropy in one numerically stable step."""
    fn = "binary_cross_entropy_with_logits"
    x, y = _tensor(fn, "input", input), _tensor(fn, "target", target)
    reduction = _reduction(fn, reduction, size_average, reduce)
    return ops.BCEWithLogits.apply(
        x,
        y,
        _optional_tensor(fn, "weight", weight),
        _optional_tensor(fn, "pos_weight", pos_weight),
        reduction,
    )
