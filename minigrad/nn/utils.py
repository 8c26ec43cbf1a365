"""Gradient clipping: keep one bad batch from throwing the weights far away.

- ``clip_grad_norm_`` rescales all gradients together when their global norm
  exceeds ``max_norm``: the direction is kept, the step length is capped.
- ``clip_grad_value_`` clamps every element to ``[-clip_value, clip_value]``;
  cheap, but it changes the direction.
- ``adaptive_clip_grad_`` (AGC, Brock et al. 2021) caps each output unit's
  gradient relative to the size of that unit's weights, so the limit follows
  the scale of each layer instead of one global number.

All three work on the gradients in place and run on the active backend's
kernels (``sum_squares``, ``max_abs``, ``scale_``, ``clamp_``,
``adaptive_clip_``).
"""

from __future__ import annotations

import math
import types
import warnings
from collections.abc import Callable, Iterable

import numpy as np

from .. import backend
from ..autograd import no_grad
from ..tensor import Tensor

__all__ = ["adaptive_clip_grad_", "clip_grad_norm_", "clip_grad_value_"]

TensorOrTensors = Tensor | Iterable[Tensor]


def _parameters(parameters: TensorOrTensors, op: str) -> list[Tensor]:
    if isinstance(parameters, Tensor):
        return [parameters]
    is_generator = isinstance(parameters, types.GeneratorType)
    params = list(parameters)
    for i, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise TypeError(f"{op}: parameters[{i}] is a {type(p).__name__}, expected a Tensor")
    if is_generator and not params:
        # Most often model.parameters() consumed by an earlier call.
        warnings.warn(
            "`parameters` is an empty generator, no gradient clipping will occur.", stacklevel=3
        )
    return params


def _update_in_place(grad: Tensor, op: str, kernel: Callable[..., None], *args: object) -> None:
    """Run an in-place kernel on grad's array; kernels need a C-ordered buffer,
    so a strided gradient is updated through a contiguous copy. Non-finite
    gradients are this module's business (0 * inf is NaN, as in PyTorch), so
    NumPy's warnings about them are silenced."""
    with no_grad():
        array = grad._writable(op)
    flags = array.flags
    with np.errstate(invalid="ignore", over="ignore"):
        if flags.c_contiguous and flags.aligned:
            kernel(array, *args)
            return
        work = np.ascontiguousarray(array)
        kernel(work, *args)
        array[...] = work


def _vector_norm(array: np.ndarray, p: float) -> float:
    """``torch.linalg.vector_norm(array, p)`` in float64 for the orders without a kernel."""
    magnitude = np.abs(array, dtype=np.float64).ravel()
    if p == -math.inf:
        return float(magnitude.min(initial=math.inf))
    if p == 0:
        return float(np.count_nonzero(magnitude))
    with np.errstate(divide="ignore", over="ignore"):
        return float(np.sum(magnitude**p) ** (1.0 / p))


def _total_norm(arrays: list[np.ndarray], p: float) -> float:
    """The p-norm of the per-array p-norms, as PyTorch defines the total."""
    if p == 2.0:
        return math.sqrt(backend.active.sum_squares(arrays))
    if p == math.inf:
        return backend.active.max_abs(arrays)
    return _vector_norm(np.array([_vector_norm(a, p) for a in arrays]), p)


def clip_grad_norm_(
    parameters: TensorOrTensors,
    max_norm: float,
    norm_type: float | str = 2.0,
    error_if_nonfinite: bool = False,
) -> Tensor:
    """Scale the gradients so that their total ``norm_type``-norm is at most ``max_norm``.

    The total is the norm over all gradients as if concatenated into one
    vector (``norm_type`` may be ``inf``, or ``"inf"``). Every gradient is
    multiplied by ``min(1, max_norm / (total + 1e-6))``. Parameters without a
    gradient are skipped. Returns the total norm before clipping, a 0-d tensor
    in the gradients' dtype; it is worth logging: a norm that grows step after
    step is the first sign of exploding gradients.

    A NaN or inf total makes every gradient NaN (or 0 and NaN), as in PyTorch;
    ``error_if_nonfinite=True`` raises RuntimeError instead.
    """
    params = _parameters(parameters, "clip_grad_norm_")
    try:
        norm_type = float(norm_type)
    except (TypeError, ValueError):
        raise ValueError(
            f"clip_grad_norm_: norm_type must be a number or 'inf', got {norm_type!r}"
        ) from None
    max_norm = float(max_norm)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return Tensor._wrap(np.array(0.0, dtype=np.float32))
    arrays = [g._data for g in grads]
    dtype = np.result_type(*arrays)
    total = dtype.type(_total_norm(arrays, norm_type))
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from `parameters` is "
            "non-finite, so it cannot be clipped. To disable this error and scale the "
            "gradients by the non-finite norm anyway, set `error_if_nonfinite=False`"
        )
    # PyTorch evaluates max_norm / (total + 1e-6) as reciprocal(total + 1e-6) * max_norm
    # in the norm's dtype; the same steps give the same rounding.
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        coef = np.reciprocal(total + dtype.type(1e-6)) * dtype.type(max_norm)
    # Multiplying by a clamped 1.0 would change nothing, so only a smaller
    # coefficient (or a NaN one, which must reach the gradients) is applied.
    if not coef >= 1.0:
        for g in grads:
            _update_in_place(g, "clip_grad_norm_", backend.active.scale_, float(coef))
    return Tensor._wrap(np.array(total, dtype=dtype))


def clip_grad_value_(parameters: TensorOrTensors, clip_value: float) -> None:
    """Clamp every gradient element to ``[-clip_value, clip_value]`` in place.

    As in PyTorch, a negative ``clip_value`` sets every element to ``clip_value``.
    """
    clip_value = float(clip_value)
    for p in _parameters(parameters, "clip_grad_value_"):
        if p.grad is not None:
            _update_in_place(
                p.grad, "clip_grad_value_", backend.active.clamp_, -clip_value, clip_value
            )


def adaptive_clip_grad_(
    parameters: TensorOrTensors, clipping: float = 0.01, eps: float = 1e-3
) -> None:
    """Unit-wise adaptive gradient clipping (Brock et al. 2021, timm's rule), in place.

    A unit is one output row: for a weight of shape (out, ...) row i is
    ``w[i].flatten()``; a 0-d or 1-D parameter (a bias, a norm's scale) is one
    unit as a whole. Where ``||g_i|| > clipping * max(||w_i||, eps)`` the
    gradient row is rescaled to that length; ``eps`` keeps zero-initialized
    weights from freezing.
    """
    clipping, eps = float(clipping), float(eps)
    for p in _parameters(parameters, "adaptive_clip_grad_"):
        if p.grad is None or p.numel() == 0:
            continue
        grad = p.grad
        if grad.shape != p.shape:
            raise ValueError(
                f"adaptive_clip_grad_: a parameter of shape {p.shape} has a gradient of "
                f"shape {grad.shape}; they must match"
            )
        units = p.shape[0] if p.ndim >= 2 else 1
        weight = np.ascontiguousarray(p._data.reshape(units, -1), dtype=grad.dtype)

        def clip_rows(g: np.ndarray, weight: np.ndarray = weight, units: int = units) -> None:
            backend.active.adaptive_clip_(g.reshape(units, -1), weight, clipping, eps)

        _update_in_place(grad, "adaptive_clip_grad_", clip_rows)
