"""Weight initialization: PyTorch's ``torch.nn.init`` formulas and gains.

Why it matters: a layer multiplies its input's variance by roughly
``fan_in * Var(w)``. Draw the weights too small and the signal (and the
gradient coming back) shrinks geometrically with depth; too large and it
explodes. Xavier/Glorot keeps the variance steady for tanh-like layers
(``Var(w) = 2 / (fan_in + fan_out)``), Kaiming/He for ReLU layers
(``Var(w) = 2 / fan_in``), and ``calculate_gain`` supplies the factor for
each nonlinearity.

Every function here writes into the tensor's own array (in its dtype), outside
the graph, draws from minigrad's global generator (so ``mg.manual_seed`` makes
it repeatable) and returns the tensor.

A fixed-variance scheme in the style of GPT-2: every weight from N(0, 0.02^2)
and the projections that write into the residual stream scaled down by
``1/sqrt(2 * n_layers)``, because each of the ``2 * n_layers`` residual
branches adds its variance to the stream::

    import math
    import minigrad.nn.init as init

    n_layers = 12
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            init.zeros_(p)
        elif name.endswith("proj.weight"):  # the residual projections
            init.normal_(p, std=0.02 / math.sqrt(2 * n_layers))
        else:
            init.normal_(p, std=0.02)
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..autograd import no_grad
from ..random import generator
from ..tensor import Tensor

__all__ = [
    "calculate_gain",
    "constant_",
    "kaiming_normal_",
    "kaiming_uniform_",
    "normal_",
    "ones_",
    "orthogonal_",
    "trunc_normal_",
    "uniform_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]

_LINEAR = (
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
)


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The factor by which to scale the standard deviation for ``nonlinearity``.

    linear, conv* and sigmoid 1; tanh 5/3; relu sqrt(2); leaky_relu
    sqrt(2 / (1 + slope^2)) with ``param`` the slope (default 0.01); selu 3/4.
    """
    if nonlinearity in _LINEAR:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = param
        else:
            raise ValueError(f"negative_slope {param} not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def _calculate_fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    """(fan_in, fan_out): dim 1 and dim 0, times the receptive field for conv kernels."""
    shape = tensor.shape
    if len(shape) < 2:
        raise ValueError(
            "Fan in and fan out can not be computed for tensor with fewer than 2 dimensions"
        )
    receptive_field = math.prod(shape[2:])
    return shape[1] * receptive_field, shape[0] * receptive_field


def _calculate_correct_fan(tensor: Tensor, mode: str) -> int:
    mode = mode.lower()
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of ['fan_in', 'fan_out']")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _target(tensor: Tensor, op: str, random: bool = True) -> np.ndarray:
    """The array to overwrite. Initializers change a leaf that requires grad, which
    autograd allows only outside the graph, hence no_grad."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{op}: expected a Tensor, got {type(tensor).__name__}")
    if random and tensor.dtype.kind != "f":
        raise TypeError(f"{op}: the tensor must be float32 or float64, got {tensor.dtype}")
    with no_grad():
        return tensor._writable(op)


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """Fill with draws from U(a, b)."""
    if a > b:
        raise ValueError(f"uniform_: expects a <= b (the range [a, b)), got a={a} > b={b}")
    out = _target(tensor, "uniform_")
    draws = generator().random(out.shape, dtype=out.dtype)
    draws *= b - a
    draws += a
    out[...] = draws
    return tensor


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    """Fill with draws from N(mean, std^2)."""
    if std < 0:
        raise ValueError(f"normal_: expects std >= 0.0, got std={std}")
    out = _target(tensor, "normal_")
    draws = generator().standard_normal(out.shape, dtype=out.dtype)
    draws *= std
    draws += mean
    out[...] = draws
    return tensor


def constant_(tensor: Tensor, val: float) -> Tensor:
    """Fill with ``val``."""
    _target(tensor, "constant_", random=False)[...] = val
    return tensor


def zeros_(tensor: Tensor) -> Tensor:
    """Fill with 0."""
    return constant_(tensor, 0)


def ones_(tensor: Tensor) -> Tensor:
    """Fill with 1."""
    return constant_(tensor, 1)


def xavier_uniform_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """Glorot & Bengio (2010): U(-a, a) with ``a = gain * sqrt(6 / (fan_in + fan_out))``."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    if tensor.numel() == 0:
        return tensor
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    bound = math.sqrt(3.0) * std  # a uniform on [-b, b] has std b / sqrt(3)
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """Glorot & Bengio (2010): N(0, std^2) with ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    if tensor.numel() == 0:
        return tensor
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / float(fan_in + fan_out)))


def _kaiming_std(tensor: Tensor, a: float, mode: str, nonlinearity: str) -> float | None:
    """He et al. (2015): ``gain / sqrt(fan)``; None for a tensor with no elements."""
    if tensor.numel() == 0:
        warnings.warn("Initializing zero-element tensors is a no-op", stacklevel=3)
        return None
    fan = _calculate_correct_fan(tensor, mode)
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(
    tensor: Tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"
) -> Tensor:
    """U(-bound, bound) with ``bound = gain * sqrt(3 / fan)``; ``a`` is leaky_relu's slope."""
    std = _kaiming_std(tensor, a, mode, nonlinearity)
    if std is None:
        return tensor
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(
    tensor: Tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"
) -> Tensor:
    """N(0, std^2) with ``std = gain / sqrt(fan)``; ``a`` is leaky_relu's slope."""
    std = _kaiming_std(tensor, a, mode, nonlinearity)
    if std is None:
        return tensor
    return normal_(tensor, 0.0, std)


def orthogonal_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """Saxe et al. (2013): a (semi-)orthogonal matrix times ``gain``.

    The tensor is viewed as (rows, everything else). Orthogonal weights keep
    every singular value at 1, so a deep linear stack neither shrinks nor
    grows the signal.
    """
    if tensor.ndim < 2:
        raise ValueError("orthogonal_: only tensors with 2 or more dimensions are supported")
    out = _target(tensor, "orthogonal_")
    if out.size == 0:
        return tensor
    rows = out.shape[0]
    cols = out.size // rows
    # QR in float64 so that a float32 result is orthogonal to its own precision.
    flat = generator().standard_normal((rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    # Without the sign fix QR's output is not uniformly distributed over the
    # orthogonal matrices (Mezzadri, arXiv math-ph/0609050).
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    out[...] = (q * gain).reshape(out.shape)
    return tensor


def trunc_normal_(
    tensor: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0
) -> Tensor:
    """N(mean, std^2) restricted to [a, b] (bounds in absolute units, as in PyTorch).

    Rejection sampling, as PyTorch 2.13 does it: when most of the mass lies in
    [a, b], draw normals and redraw the ones outside; otherwise draw uniformly
    on [a, b] and accept with probability pdf(x) / max pdf on [a, b].
    """
    if not std > 0:
        raise ValueError(f"trunc_normal_: expects std > 0, got std={std}")
    if not a <= b:
        raise ValueError(f"trunc_normal_: expects a <= b, got a={a} > b={b}")
    if mean < a - 2 * std or mean > b + 2 * std:
        warnings.warn(
            "mean is more than 2 std from [a, b] in nn.init.trunc_normal_. "
            "The distribution of values may be incorrect.",
            stacklevel=2,
        )
    out = _target(tensor, "trunc_normal_")
    gen = generator()
    dtype = out.dtype
    # The bounds as the tensor's dtype can hold them, so the test that accepts
    # a value is the same test a user would make on the result.
    lo, hi = dtype.type(a), dtype.type(b)

    def cdf(x: float) -> float:
        return (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0

    mass = cdf((b - mean) / std) - cdf((a - mean) / std)
    mode = max(a, min(mean, b))
    log_peak = -0.5 * ((mode - mean) / std) ** 2

    def propose(n: int) -> tuple[np.ndarray, np.ndarray]:
        """n candidates and which of them are accepted."""
        if mass > 0.3:
            x = (gen.standard_normal(n) * std + mean).astype(dtype)
            return x, (x >= lo) & (x <= hi)
        x = gen.uniform(a, b, n)
        log_ratio = -0.5 * ((x - mean) / std) ** 2 - log_peak
        return x.astype(dtype), np.log(gen.random(n)) <= log_ratio

    result = np.empty(out.size, dtype=dtype)
    pending = np.arange(out.size)
    while pending.size:
        x, accepted = propose(pending.size)
        result[pending[accepted]] = x[accepted]
        pending = pending[~accepted]
    out[...] = result.reshape(out.shape)
    return tensor
