"""The kernel interface: every numeric routine minigrad's ops and optimizers call.

A backend works on NumPy arrays only; nothing here knows about Tensors or the
graph. Two backends implement it:

- ``NumpyBackend`` (numpy.py): the reference. Plain, competent NumPy. It is the
  test oracle, the benchmark baseline and the fallback for anything C lacks.
- ``CBackend`` (c.py): subclasses the reference and overrides the kernels that
  exist in C, so a kernel not yet written in C simply falls back to NumPy.

Conventions shared by all kernels:

- Inputs are float32 or float64 arrays of one dtype; outputs have that dtype.
- ``*_forward`` returns new arrays. ``*_backward`` takes the incoming gradient
  first, then what the forward saved, and returns the input gradients.
- Names ending in ``_`` update their first argument(s) in place and return None.
- Reductions that return a Python float accumulate in float64.
- NaN and Inf propagate; no kernel hides a non-finite value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


class TensorStats(NamedTuple):
    """Summary of one array from a single pass (see ``Backend.tensor_stats``).

    ``count`` is every element. ``sum``, ``sumsq``, ``max_abs``, ``n_zero``
    and ``n_above`` are over the finite elements only; the non-finite ones are
    counted in ``n_nan`` and ``n_inf`` instead.
    """

    count: int
    sum: float
    sumsq: float
    max_abs: float
    n_zero: int
    n_above: int
    n_nan: int
    n_inf: int


# One TensorStats per element, laid out as the C struct mg_tensor_stats: what
# the statistics kernels below write into, so that a caller can keep many
# summaries in one preallocated array.
STATS_DTYPE = np.dtype(
    [
        ("count", np.uint64),
        ("sum", np.float64),
        ("sumsq", np.float64),
        ("max_abs", np.float64),
        ("n_zero", np.uint64),
        ("n_above", np.uint64),
        ("n_nan", np.uint64),
        ("n_inf", np.uint64),
    ]
)

_U64, _F64 = np.dtype(np.uint64), np.dtype(np.float64)

# The most bins ``histogram_stats`` takes (MG_MAX_BINS in csrc/minigrad.h).
MAX_BINS = 64


def _is_out(a, dtype: np.dtype, count: int) -> bool:
    """Whether C can write ``count`` elements of ``dtype`` into a: a plain, writable,
    aligned, C-contiguous ndarray (``flags.carray``) of that dtype and size."""
    return type(a) is np.ndarray and a.dtype == dtype and a.size >= count and a.flags.carray


def _is_stats_array(a, count: int) -> bool:
    return _is_out(a, STATS_DTYPE, count)


def _stats_out_error(
    op: str, name: str, a, count: int, dtype: str = "STATS_DTYPE", kind: str = ""
) -> ValueError:
    kind = kind or "writable C-contiguous"
    return ValueError(
        f"{op}: {name} must be a {kind} array of {dtype} with at least "
        f"{count} elements, got {getattr(a, 'dtype', type(a).__name__)} "
        f"{getattr(a, 'shape', '')}"
    )


def check_unit_stats_args(out, x, units) -> None:
    """The checks of ``unit_stats``, shared by the backends (C relies on them)."""
    if not _is_stats_array(out, 1):
        raise _stats_out_error("unit_stats", "out", out, 1)
    if type(x) is not np.ndarray:
        raise TypeError(f"unit_stats: x must be a numpy array, got {type(x).__name__}")
    size = x.size
    if type(units) is not int or units < 0 or (size and (units == 0 or size % units)):
        raise ValueError(
            f"unit_stats: units must be a positive int dividing x.size ({size}), got {units!r}"
        )


def check_unit_stats_multi_args(out, dead, arrays, units, thresholds, centers) -> None:
    """The checks of ``unit_stats_multi``, shared by the backends (C relies on them)."""
    op = "unit_stats_multi"
    count = len(arrays)
    if not _is_stats_array(out, count):
        raise _stats_out_error(op, "out", out, count)
    if not _is_out(dead, _U64, count):
        raise _stats_out_error(op, "dead", dead, count, "uint64")
    for name, a in (("thresholds", thresholds), ("centers", centers)):
        if not (
            type(a) is np.ndarray
            and a.dtype == _F64
            and a.ndim == 1
            and a.size >= count
            and a.flags.c_contiguous
            and a.flags.aligned
        ):
            raise _stats_out_error(op, name, a, count, "float64", "C-contiguous 1-D")
    if type(units) is not list or len(units) != count:
        raise ValueError(
            f"{op}: units must be a list with one int per array ({count}), got {units!r}"
        )
    for a, n in zip(arrays, units, strict=True):
        if a is None:
            size = 0
        elif type(a) is np.ndarray:
            size = a.size
        else:
            raise TypeError(f"{op}: arrays must hold numpy arrays or None, got {type(a).__name__}")
        if type(n) is not int or n < 0 or (size and (n == 0 or size % n)):
            raise ValueError(
                f"{op}: units must hold, per array, a positive int dividing its size "
                f"({size}), got {n!r}"
            )


def check_histogram_args(out, hist, arrays) -> None:
    """The checks of ``histogram_stats``, shared by the backends."""
    count = len(arrays)
    if not _is_stats_array(out, count):
        raise _stats_out_error("histogram_stats", "out", out, count)
    if not (
        type(hist) is np.ndarray
        and hist.dtype == np.uint64
        and hist.ndim == 2
        and hist.shape[0] >= count
        and 1 <= hist.shape[1] <= MAX_BINS
        and hist.flags.c_contiguous
        and hist.flags.aligned
        and hist.flags.writeable
    ):
        raise ValueError(
            f"histogram_stats: hist must be a writable C-contiguous uint64 array of shape "
            f"(>= {count}, bins) with 1 <= bins <= {MAX_BINS}, got "
            f"{getattr(hist, 'dtype', type(hist).__name__)} {getattr(hist, 'shape', '')}"
        )
    for a in arrays:
        if a is not None and type(a) is not np.ndarray:
            raise TypeError(
                f"histogram_stats: arrays must hold numpy arrays or None, got {type(a).__name__}"
            )


def _is_pairs(a, count: int) -> bool:
    return (
        type(a) is np.ndarray
        and a.dtype == np.float64
        and a.ndim == 2
        and a.shape[0] >= count
        and a.shape[1] == 2
        and a.flags.c_contiguous
        and a.flags.aligned
        and a.flags.writeable
    )


def check_change_args(sums, change, snapshot, arrays, copy) -> None:
    """The checks of ``change_stats``, shared by the backends."""
    count = len(arrays)
    for name, a in (("sums", sums), ("change", change)):
        if a is not None and not _is_pairs(a, count):
            raise ValueError(
                f"change_stats: {name} must be a writable C-contiguous float64 array of shape "
                f"(>= {count}, 2), got {getattr(a, 'dtype', type(a).__name__)} "
                f"{getattr(a, 'shape', '')}"
            )
    total = 0
    for a in arrays:
        if type(a) is not np.ndarray:
            raise TypeError(f"change_stats: arrays must hold numpy arrays, got {type(a).__name__}")
        total += a.size
    if change is None and not copy:
        return
    flags = getattr(snapshot, "flags", None)
    if (
        type(snapshot) is not np.ndarray
        or snapshot.size != total
        or not (flags.c_contiguous and flags.aligned and flags.writeable)
        or any(a.dtype != snapshot.dtype for a in arrays)
    ):
        raise ValueError(
            f"change_stats: snapshot must be a writable, aligned, C-contiguous array of the "
            f"arrays' one dtype with {total} elements (theirs, one after another), got "
            f"{getattr(snapshot, 'dtype', type(snapshot).__name__)} "
            f"{getattr(snapshot, 'shape', '')} for arrays of "
            f"{sorted({str(a.dtype) for a in arrays})}"
        )


class Backend:
    """Names and documents every kernel. Subclasses implement them."""

    name = "abstract"

    # -- matrix product ---------------------------------------------------
    def gemm(
        self,
        a: np.ndarray,
        b: np.ndarray,
        *,
        trans_a: bool = False,
        trans_b: bool = False,
        alpha: float = 1.0,
        beta: float = 0.0,
        out: np.ndarray | None = None,
        bias: np.ndarray | None = None,
    ) -> np.ndarray:
        """``out = alpha * op(a) @ op(b) + beta * out (+ bias)``.

        ``op(x)`` is ``x.T`` when ``trans_x`` is set; a and b are 2-D. When
        ``out`` is None a new (M, N) array is returned and ``beta`` is ignored;
        otherwise ``out`` is written and returned. As in BLAS, ``beta == 0``
        means ``out`` is not read (it may hold garbage or NaN). ``bias`` (N,)
        is added to every row after the scaling.
        """
        raise NotImplementedError

    # -- elementwise activations ------------------------------------------
    def relu_forward(self, x: np.ndarray) -> np.ndarray:
        """``max(x, 0)``; NaN stays NaN."""
        raise NotImplementedError

    def relu_backward(self, gy: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``0 if y <= 0 else gy`` from the forward's output y (PyTorch's rule:
        an inf gy on an off unit gives 0, a NaN unit passes gy)."""
        raise NotImplementedError

    def leaky_relu_forward(self, x: np.ndarray, negative_slope: float) -> np.ndarray:
        """``x if x > 0 else negative_slope * x``."""
        raise NotImplementedError

    def leaky_relu_backward(
        self, gy: np.ndarray, x: np.ndarray, negative_slope: float
    ) -> np.ndarray:
        """``gy if x > 0 else negative_slope * gy`` from the forward's input x."""
        raise NotImplementedError

    def sigmoid_forward(self, x: np.ndarray) -> np.ndarray:
        """``1 / (1 + exp(-x))``, exact 0 and 1 at -inf and +inf."""
        raise NotImplementedError

    def sigmoid_backward(self, gy: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``gy * y * (1 - y)`` from the forward's output y."""
        raise NotImplementedError

    def tanh_forward(self, x: np.ndarray) -> np.ndarray:
        """``tanh(x)``."""
        raise NotImplementedError

    def tanh_backward(self, gy: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``gy * (1 - y*y)`` from the forward's output y."""
        raise NotImplementedError

    def gelu_forward(self, x: np.ndarray, approximate: str = "none") -> np.ndarray:
        """GELU. ``"none"``: ``x * Phi(x)`` (Phi via erfc, accurate for x << 0).
        ``"tanh"``: ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``."""
        raise NotImplementedError

    def gelu_backward(self, gy: np.ndarray, x: np.ndarray, approximate: str = "none") -> np.ndarray:
        """Derivative of ``gelu_forward`` times gy, from the forward's input x."""
        raise NotImplementedError

    # -- normalization ------------------------------------------------------
    def batch_norm_forward_train(
        self,
        x: np.ndarray,
        weight: np.ndarray | None,
        bias: np.ndarray | None,
        eps: float,
        running_mean: np.ndarray | None = None,
        running_var: np.ndarray | None = None,
        momentum: float = 0.1,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Batch norm over axis 0 of x (N, C) with batch statistics.

        Returns ``(y, mean, invstd)``: mean (C,) and ``invstd = 1/sqrt(var + eps)``
        (C,) with the biased variance. When running_mean/var are given they are
        updated in place, PyTorch's way: ``r = (1 - momentum) r + momentum s``,
        running_var taking the unbiased variance ``var * N / (N - 1)``.
        """
        raise NotImplementedError

    def batch_norm_forward_eval(
        self,
        x: np.ndarray,
        running_mean: np.ndarray,
        running_var: np.ndarray,
        weight: np.ndarray | None,
        bias: np.ndarray | None,
        eps: float,
    ) -> np.ndarray:
        """``(x - running_mean) / sqrt(running_var + eps) * weight + bias`` for x (N, C)."""
        raise NotImplementedError

    def batch_norm_backward(
        self,
        gy: np.ndarray,
        x: np.ndarray,
        mean: np.ndarray,
        invstd: np.ndarray,
        weight: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Gradients of the training forward: ``(gx, gweight, gbias)``.

        gweight and gbias are None when weight is None (no affine).
        """
        raise NotImplementedError

    def layer_norm_forward(
        self,
        x: np.ndarray,
        weight: np.ndarray | None,
        bias: np.ndarray | None,
        eps: float,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Normalize each row of x (R, D); returns ``(y, mean, invstd)``, both (R,)."""
        raise NotImplementedError

    def layer_norm_backward(
        self,
        gy: np.ndarray,
        x: np.ndarray,
        mean: np.ndarray,
        invstd: np.ndarray,
        weight: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Gradients of ``layer_norm_forward``: ``(gx, gweight, gbias)``."""
        raise NotImplementedError

    # -- gradient clipping ----------------------------------------------------
    def sum_squares(self, arrays: Sequence[np.ndarray]) -> float:
        """Sum of x*x over every element of every array (the squared global norm)."""
        raise NotImplementedError

    def max_abs(self, arrays: Sequence[np.ndarray]) -> float:
        """Largest |x| over every element of every array (the inf-norm); 0.0 if empty.
        NaN if any element is NaN."""
        raise NotImplementedError

    def scale_(self, x: np.ndarray, factor: float) -> None:
        """``x *= factor`` in place."""
        raise NotImplementedError

    def clamp_(self, x: np.ndarray, lo: float, hi: float) -> None:
        """``x = min(max(x, lo), hi)`` in place; NaN stays NaN."""
        raise NotImplementedError

    def row_norms(self, x: np.ndarray) -> np.ndarray:
        """L2 norm of each row of x (R, K), accumulated in float64, returned in x's dtype."""
        raise NotImplementedError

    def adaptive_clip_(
        self, grad: np.ndarray, param: np.ndarray, clipping: float, eps: float
    ) -> None:
        """Unit-wise adaptive gradient clipping (Brock et al. 2021, timm's rule), in place.

        grad and param are (R, K): row i is one output unit. A row is kept
        where ``||g_i|| < max_norm = clipping * max(||w_i||, eps)``; every other
        row (a NaN norm included) is rescaled: ``g_i *= max_norm / max(||g_i||, 1e-6)``.
        """
        raise NotImplementedError

    # -- optimizer updates ------------------------------------------------------
    def sgd_step_(
        self,
        param: np.ndarray,
        grad: np.ndarray,
        momentum_buffer: np.ndarray | None,
        *,
        lr: float,
        momentum: float,
        dampening: float,
        weight_decay: float,
        nesterov: bool,
        first_step: bool,
    ) -> None:
        """PyTorch's SGD on one parameter, in place (param and momentum_buffer).

        ``d = grad + weight_decay * param``; with momentum,
        ``buf = d`` on the first step else ``buf = momentum * buf + (1 - dampening) * d``,
        then ``d = d + momentum * buf`` (Nesterov) or ``d = buf``; ``param -= lr * d``.
        momentum_buffer is None when momentum is 0. grad is never written.
        """
        raise NotImplementedError

    def adam_step_(
        self,
        param: np.ndarray,
        grad: np.ndarray,
        exp_avg: np.ndarray,
        exp_avg_sq: np.ndarray,
        *,
        step: int,
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
        weight_decay: float,
        decoupled: bool,
    ) -> None:
        """PyTorch's Adam (decoupled=False) or AdamW (decoupled=True), in place.

        Adam adds ``weight_decay * param`` to the gradient; AdamW first does
        ``param *= 1 - lr * weight_decay``. Then with step t (1-based):
        ``m = beta1 m + (1 - beta1) g``, ``v = beta2 v + (1 - beta2) g^2``,
        ``param -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)``.
        grad is never written.
        """
        raise NotImplementedError

    def sgd_step_multi_(
        self,
        params: Sequence[np.ndarray],
        grads: Sequence[np.ndarray],
        momentum_buffers: Sequence[np.ndarray] | None,
        *,
        first_steps: Sequence[bool],
        lr: float,
        momentum: float,
        dampening: float,
        weight_decay: float,
        nesterov: bool,
    ) -> None:
        """``sgd_step_`` on every parameter of a group at once: ``params[i]`` with
        ``grads[i]``, ``momentum_buffers[i]`` and ``first_steps[i]``, the same result
        bit for bit. momentum_buffers is None when momentum is 0.
        ``check_update_lists`` says what the lists must hold."""
        raise NotImplementedError

    def adam_step_multi_(
        self,
        params: Sequence[np.ndarray],
        grads: Sequence[np.ndarray],
        exp_avgs: Sequence[np.ndarray],
        exp_avg_sqs: Sequence[np.ndarray],
        *,
        steps: Sequence[int],
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
        weight_decay: float,
        decoupled: bool,
    ) -> None:
        """``adam_step_`` on every parameter of a group at once: ``params[i]`` with
        ``grads[i]``, ``exp_avgs[i]``, ``exp_avg_sqs[i]`` and its own step count
        ``steps[i]`` (parameters skipped on some steps lag behind), the same result
        bit for bit. ``check_update_lists`` says what the lists must hold."""
        raise NotImplementedError

    # -- statistics ---------------------------------------------------------------
    def tensor_stats(
        self, x: np.ndarray, threshold: float = np.inf, center: float = 0.0
    ) -> TensorStats:
        """One-pass summary of x; ``n_above`` counts finite elements with
        ``|x - center| > threshold`` (e.g. center 0.5, threshold 0.49 counts
        saturated sigmoid outputs); the comparison is made in float64."""
        raise NotImplementedError

    def unit_stats(
        self,
        out: np.ndarray,
        x: np.ndarray,
        units: int,
        threshold: float = np.inf,
        center: float = 0.0,
    ) -> int:
        """``tensor_stats(x, threshold, center)`` into ``out[0]`` (a STATS_DTYPE
        array); returns the number of dead units: x is seen as rows of
        ``units`` elements (one row per sample), and a unit is dead when it is
        zero in every row (NaN is not zero). None is dead when x is empty.
        ``x.size`` is a multiple of ``units`` (which is 0 only for an empty x).
        """
        raise NotImplementedError

    def unit_stats_multi(
        self,
        out: np.ndarray,
        dead: np.ndarray,
        arrays: Sequence[np.ndarray | None],
        units: list[int],
        thresholds: np.ndarray,
        centers: np.ndarray,
    ) -> None:
        """``unit_stats`` for each array, in one call: ``dead[i] = unit_stats(out[i :
        i + 1], arrays[i], units[i], thresholds[i], centers[i])``. ``dead`` is a
        uint64 array, ``thresholds`` and ``centers`` float64 arrays, ``units`` a list
        of ints. None counts as an empty array (its units may be any int >= 0)."""
        raise NotImplementedError

    def histogram_stats(
        self, out: np.ndarray, hist: np.ndarray, arrays: Sequence[np.ndarray | None]
    ) -> None:
        """For each array (None counts as an empty one): its ``tensor_stats`` into
        ``out[i]`` (STATS_DTYPE), and into ``hist[i]`` (uint64, ``bins =
        hist.shape[1]`` columns, 1 to MAX_BINS) how many of its finite elements
        fall in each of ``bins`` equal bins over ``[-b, b]``, ``b = max_abs`` (1 if
        that is 0). The bin of x is ``floor(x / b * (bins / 2) + bins / 2)``,
        computed in float64 and clamped to ``[0, bins - 1]``.
        """
        raise NotImplementedError

    def change_stats(
        self,
        sums: np.ndarray | None,
        change: np.ndarray | None,
        snapshot: np.ndarray | None,
        arrays: Sequence[np.ndarray],
        copy: bool,
    ) -> None:
        """For each array: ``sums[i] = (sum, sum of squares)`` of its elements (when
        sums is not None) and ``change[i]`` the same of the array minus its part
        of ``snapshot``, each difference taken in float64 (when change is not
        None), all in float64 over every element (a NaN makes them NaN); then,
        when ``copy``, the arrays are copied into ``snapshot``. The snapshot holds
        the arrays' elements one after another (C order), in their one dtype.
        One pass over each array: the spread of an update w - w_before without
        storing the difference.
        """
        raise NotImplementedError

    def stats_rows(
        self,
        grad: np.ndarray,
        hist: np.ndarray,
        weight: np.ndarray,
        change: np.ndarray,
        act: np.ndarray,
        dead: np.ndarray,
        thresholds: np.ndarray,
        centers: np.ndarray,
    ) -> StatsRows:
        """``histogram_stats``, ``change_stats`` and ``unit_stats_multi`` bound to
        tables with a row per recorded step (see ``StatsRows``)."""
        return StatsRows(self, grad, hist, weight, change, act, dead, thresholds, centers)


def _units_per_sample(a) -> int | None:
    if a is None or type(a) is not np.ndarray:
        return None  # (unit_stats_multi says what it thinks of anything but None)
    if a.ndim == 0:
        return 1
    return a.size // len(a) if len(a) else 0


class StatsRows:
    """GradientMonitor's three list kernels bound to its tables, which have a row
    per recorded step: each call writes a row of them.

    The tables, checked once here: ``grad`` (rows, n) of STATS_DTYPE and
    ``hist`` (rows, n, bins) of uint64 for ``histogram_stats`` of n arrays;
    ``weight`` and ``change`` (rows, n, 2) of float64 for ``change_stats``;
    ``act`` (rows, m) of STATS_DTYPE and ``dead`` (rows, m) of uint64 for
    ``unit_stats_multi`` of m arrays with ``thresholds`` and ``centers``.

    Here each call passes views of its rows to the backend's method; the C
    backend's binding writes through pointers into the tables instead, which
    spares making and checking a view of each row on every training step. So
    the tables must not be replaced by others: bind the new ones. Not for use
    from several threads at once (the monitor is not either).
    """

    def __init__(self, backend, grad, hist, weight, change, act, dead, thresholds, centers):
        op = "stats_rows"

        def table(name, a, dtype, shape):
            if not (
                type(a) is np.ndarray
                and a.dtype == dtype
                and len(a.shape) == len(shape)
                and all(want in (None, got) for want, got in zip(shape, a.shape, strict=True))
                and a.shape[0] > 0
                and a.flags.carray
            ):
                shown = tuple("any" if d is None else d for d in shape)
                raise ValueError(
                    f"{op}: {name} must be a writable C-contiguous {dtype} array of shape "
                    f"{shown} with at least one row, got {getattr(a, 'dtype', type(a).__name__)} "
                    f"{getattr(a, 'shape', '')}"
                )
            return a.shape

        rows, n = table("grad", grad, STATS_DTYPE, (None, None))
        _, m = table("act", act, STATS_DTYPE, (rows, None))
        bins = table("hist", hist, _U64, (rows, n, None))[2]
        if bins > MAX_BINS:
            raise ValueError(f"{op}: hist must have 1 to {MAX_BINS} bins, got {bins}")
        table("weight", weight, _F64, (rows, n, 2))
        table("change", change, _F64, (rows, n, 2))
        table("dead", dead, _U64, (rows, m))
        for name, a in (("thresholds", thresholds), ("centers", centers)):
            if not (type(a) is np.ndarray and a.dtype == _F64 and a.shape == (m,)):
                raise _stats_out_error(op, name, a, m, "float64", "1-D")
        self.backend = backend
        self.rows, self.n, self.m = rows, n, m
        self.grad, self.hist, self.weight, self.change = grad, hist, weight, change
        self.act, self.dead = act, dead
        # copies: C-contiguous, and nobody else's to change
        self.thresholds, self.centers = thresholds.copy(), centers.copy()

    def _check_row(self, op: str, row) -> None:
        if type(row) is not int or not 0 <= row < self.rows:
            raise IndexError(f"{op}: row must be an int in [0, {self.rows}), got {row!r}")

    def histogram(self, row: int, arrays: Sequence[np.ndarray | None]) -> None:
        """``histogram_stats(grad[row], hist[row], arrays)``: n arrays."""
        self._check_row("StatsRows.histogram", row)
        self.backend.histogram_stats(self.grad[row], self.hist[row], self._n(arrays))

    def changes(
        self,
        sums_row: int | None,
        change_row: int | None,
        snapshot: np.ndarray | None,
        arrays: Sequence[np.ndarray],
        copy: bool,
    ) -> None:
        """``change_stats(weight[sums_row], change[change_row], snapshot, arrays,
        copy)``: n arrays; a row None passes None."""
        for row in (sums_row, change_row):
            if row is not None:
                self._check_row("StatsRows.changes", row)
        self.backend.change_stats(
            None if sums_row is None else self.weight[sums_row],
            None if change_row is None else self.change[change_row],
            snapshot,
            self._n(arrays),
            copy,
        )

    def units(self, row: int, arrays: Sequence[np.ndarray | None]) -> tuple[int | None, ...]:
        """``unit_stats_multi(act[row], dead[row], arrays, units, thresholds,
        centers)`` for m arrays (layer outputs), each seen as a batch along its
        first axis: its units are ``size // len(a)`` (0 when it is empty), one
        for a 0-d array. Returns the units, None for a None entry."""
        self._check_row("StatsRows.units", row)
        if len(arrays) != self.m:
            raise ValueError(f"StatsRows.units: expected {self.m} arrays, got {len(arrays)}")
        units = tuple(map(_units_per_sample, arrays))
        self.backend.unit_stats_multi(
            self.act[row],
            self.dead[row],
            arrays,
            [0 if u is None else u for u in units],
            self.thresholds,
            self.centers,
        )
        return units

    def record(
        self, row: int, grads: list[np.ndarray | None], outputs: list[np.ndarray | None]
    ) -> tuple[int | None, ...]:
        """``histogram(row, grads)`` then ``units(row, outputs)``, whose units it
        returns: a recorded step's calls on the gradients and the outputs."""
        self.histogram(row, grads)
        return self.units(row, outputs)

    def measure(
        self,
        row: int,
        change_row: int | None,
        snapshot: np.ndarray,
        weights: Sequence[np.ndarray],
        grads: list[np.ndarray | None],
        outputs: list[np.ndarray | None],
    ) -> tuple[int | None, ...]:
        """A recorded step whole: ``changes(row, change_row, snapshot, weights,
        True)`` then ``record(row, grads, outputs)``, whose units it returns."""
        self.changes(row, change_row, snapshot, weights, True)
        return self.record(row, grads, outputs)

    def _n(self, arrays):
        if len(arrays) != self.n:
            raise ValueError(f"StatsRows: expected {self.n} arrays, got {len(arrays)}")
        return arrays


def check_update_lists(
    op: str,
    params: Sequence[np.ndarray],
    arrays: dict[str, Sequence[np.ndarray]],
    values: dict[str, Sequence],
) -> None:
    """Check the lists of a multi-parameter update before anything is written.

    ``params`` must be writable float arrays. Each list in ``arrays`` (gradients
    and state, by argument name) holds one array per parameter with its dtype and
    shape; each list in ``values`` (step counts, flags) one entry per parameter.
    The state lists (every name but ``grads``) must be writable. Raises TypeError
    or ValueError naming the op and the argument.
    """
    n = len(params)
    for name, items in (*arrays.items(), *values.items()):
        if len(items) != n:
            raise ValueError(
                f"{op}: {name} has {len(items)} entries but params has {n}; "
                "they must have one per parameter"
            )
    for i, p in enumerate(params):
        if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
            kind = getattr(p, "dtype", type(p).__name__)
            raise TypeError(f"{op}: params[{i}] must be a float32 or float64 array, got {kind}")
        if not p.flags.writeable:
            raise ValueError(f"{op}: params[{i}] is read-only but is updated in place")
        for name, items in arrays.items():
            a = items[i]
            if not isinstance(a, np.ndarray) or a.dtype != p.dtype:
                kind = getattr(a, "dtype", type(a).__name__)
                raise TypeError(f"{op}: {name}[{i}] is {kind} but params[{i}] is {p.dtype}")
            if a.shape != p.shape:
                raise ValueError(
                    f"{op}: {name}[{i}] has shape {a.shape} but params[{i}] has shape "
                    f"{p.shape}; they must match"
                )
            if name != "grads" and not a.flags.writeable:
                raise ValueError(f"{op}: {name}[{i}] is read-only but is updated in place")
