"""Layers and losses as single graph nodes: Linear, BatchNorm, LayerNorm,
Dropout, and the losses.

Each is one Function so that a layer costs one node and one saved set of
arrays, and so that the normalizations and the matrix product run on the
backend's fused kernels. The checks a user can trip (shapes, dtypes, target
values) happen at the top of each forward, before any work, and name the op.
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..autograd import Function
from ..random import generator

REDUCTIONS = ("mean", "sum", "none")


# ---------------------------------------------------------------------------
# Shared checks and helpers
# ---------------------------------------------------------------------------


def _float(op: str, name: str, a: np.ndarray | None) -> None:
    if a is not None and a.dtype.kind != "f":
        raise TypeError(
            f"{op}: {name} has dtype {a.dtype}; it needs float32 or float64 (use .float())"
        )


def _same_dtype(op: str, x: np.ndarray, **others: np.ndarray | None) -> None:
    """Kernels take one dtype per call; mixing them is refused rather than cast silently."""
    dtype = x.dtype
    if dtype.kind == "f":
        for a in others.values():
            if a is not None and a.dtype != dtype:
                break
        else:
            return  # the common case, checked first: one float dtype throughout
    _float(op, "input", x)
    for name, a in others.items():
        _float(op, name, a)
        if a is not None and a.dtype != x.dtype:
            raise TypeError(
                f"{op}: {name} is {a.dtype} but input is {x.dtype}; convert one of them "
                "(e.g. model.double() or x.float())"
            )


def _shapes_are(op: str, shape: tuple, **arrays: np.ndarray | None) -> None:
    """Each of ``arrays`` is None or has ``shape``."""
    for name, a in arrays.items():
        if a is not None and a.shape != shape:
            raise ValueError(f"{op}: {name} has shape {a.shape}; expected {shape}")


def _check_reduction(op: str, reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _reduce(loss: np.ndarray, reduction: str, count: float) -> np.ndarray:
    """Per-element losses to what ``reduction`` asks; mean divides by ``count``."""
    if reduction == "none":
        return loss
    total = loss.sum(dtype=loss.dtype)
    if reduction == "sum":
        return total
    with np.errstate(invalid="ignore", divide="ignore"):  # an empty batch gives NaN, as in torch
        return np.asarray(total / count, dtype=loss.dtype)


def _grad_scale(grad: np.ndarray, reduction: str, count: float) -> np.ndarray:
    """d(reduced loss)/d(each element loss), shaped to broadcast against the elements."""
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            return grad / count
    return grad


# ---------------------------------------------------------------------------
# Linear
# ---------------------------------------------------------------------------


class Linear(Function):
    """``y = x @ W.T + b`` for x (..., in) and W (out, in), on the backend's GEMM.

    Leading dims of x are folded into the GEMM's rows by a reshape, which is a
    view (no copy) whenever x is contiguous.
    """

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        _same_dtype("linear", x, weight=weight, bias=bias)
        if weight.ndim != 2:
            raise ValueError(
                f"linear: weight must be 2-D (out_features, in_features), got shape {weight.shape}"
            )
        out_features, in_features = weight.shape
        if x.ndim == 0 or x.shape[-1] != in_features:
            raise ValueError(
                f"linear: input of shape {x.shape} does not end in in_features={in_features} "
                f"(weight has shape {weight.shape})"
            )
        _shapes_are("linear", (out_features,), bias=bias)
        rows = math.prod(x.shape[:-1])
        x2 = x.reshape(rows, in_features)
        need_x, need_w = ctx.needs_input_grad[:2]
        # The inputs themselves are saved, not the 2-D view: the engine spots
        # an in-place change to a saved input only by identity.
        ctx.save_for_backward(x if need_w else None, weight if need_x else None)
        ctx.x_shape = x.shape
        y = backend.active.gemm(x2, weight, trans_b=True, bias=bias)
        return y.reshape(*x.shape[:-1], out_features)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        rows = math.prod(ctx.x_shape[:-1])
        gy = grad.reshape(rows, grad.shape[-1])
        gemm = backend.active.gemm
        gx = gemm(gy, weight).reshape(ctx.x_shape) if need_x else None
        gw = gemm(gy, x.reshape(rows, ctx.x_shape[-1]), trans_a=True) if need_w else None
        gb = gy.sum(axis=0) if need_b else None
        return gx, gw, gb


# ---------------------------------------------------------------------------
# Normalization
# ---------------------------------------------------------------------------


def _reshaped(a: np.ndarray | None, shape: tuple) -> np.ndarray | None:
    """a with ``shape``: itself when it has it already (a view costs as much as a
    small kernel's whole Python path), else a reshape."""
    if a is None or a.shape == shape:
        return a
    return a.reshape(shape)


def _channels_last(x: np.ndarray) -> np.ndarray:
    """(N, C) stays as it is; (N, C, L) becomes (N*L, C), a copy (the kernels
    want each channel as one column of a row-major matrix)."""
    if x.ndim == 2:
        return x
    return np.ascontiguousarray(x.transpose(0, 2, 1)).reshape(-1, x.shape[1])


def _channels_back(y2: np.ndarray, shape: tuple) -> np.ndarray:
    if len(shape) == 2:
        return y2
    n, c, length = shape
    return np.ascontiguousarray(y2.reshape(n, length, c).transpose(0, 2, 1))


class BatchNorm(Function):
    """Batch norm over the channel dim of x (N, C) or (N, C, L).

    ``training``: normalize with the batch's mean and biased variance and, if
    running_mean/running_var are given, update them in place (momentum rule,
    unbiased variance). Otherwise normalize with the running statistics.
    running_mean and running_var never receive gradients.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps):
        op = "batch_norm"
        _same_dtype(
            op, x, weight=weight, bias=bias, running_mean=running_mean, running_var=running_var
        )
        if x.ndim not in (2, 3):
            raise ValueError(f"{op}: expected 2D or 3D input (got {x.ndim}D input)")
        _shapes_are(
            op,
            (x.shape[1],),
            weight=weight,
            bias=bias,
            running_mean=running_mean,
            running_var=running_var,
        )
        if not training and (running_mean is None or running_var is None):
            raise ValueError(
                f"{op}: running_mean and running_var must be given when training=False"
            )
        x2 = _channels_last(x)
        ctx.shape = x.shape
        ctx.training = training
        kernels = backend.active
        if training:
            y2, mean, invstd = kernels.batch_norm_forward_train(
                x2, weight, bias, eps, running_mean, running_var, momentum
            )
        else:
            y2 = kernels.batch_norm_forward_eval(x2, running_mean, running_var, weight, bias, eps)
            # Copies: the buffers may be updated in place before this backward runs.
            mean = running_mean.copy()
            invstd = (1.0 / np.sqrt(running_var.astype(np.float64) + eps)).astype(x.dtype)
        ctx.save_for_backward(x2, mean, invstd, weight)
        return _channels_back(y2, x.shape)

    @staticmethod
    def backward(ctx, grad):
        x2, mean, invstd, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        gy = _channels_last(grad)
        if ctx.training:
            gx, gw, gb = backend.active.batch_norm_backward(gy, x2, mean, invstd, weight)
        else:
            # Eval mode is an affine map per channel: y = (x - mean) * invstd * w + b.
            scale = invstd if weight is None else invstd * weight
            gx = gy * scale if need_x else None
            gw = (gy * ((x2 - mean) * invstd)).sum(axis=0) if need_w else None
            gb = None
        if need_b and gb is None:
            gb = gy.sum(axis=0)
        if need_x:
            gx = _channels_back(gx, ctx.shape)
        return (
            gx if need_x else None,
            gw if need_w else None,
            gb if need_b else None,
        )


class LayerNorm(Function):
    """Normalize over the trailing ``normalized_ndim`` dims of x: each of the R
    leading positions is one row of a (R, D) matrix for the kernel."""

    @staticmethod
    def forward(ctx, x, weight, bias, normalized_ndim, eps):
        op = "layer_norm"
        _same_dtype(op, x, weight=weight, bias=bias)
        if normalized_ndim > x.ndim:
            raise ValueError(
                f"{op}: input of shape {x.shape} has fewer than {normalized_ndim} dims to normalize"
            )
        normalized = x.shape[x.ndim - normalized_ndim :]
        _shapes_are(op, normalized, weight=weight, bias=bias)
        d = math.prod(normalized)
        rows_cols = (math.prod(x.shape[: x.ndim - normalized_ndim]), d)
        y2, mean, invstd = backend.active.layer_norm_forward(
            _reshaped(x, rows_cols), _reshaped(weight, (d,)), _reshaped(bias, (d,)), eps
        )
        # x and weight themselves, not their reshaped views: the engine spots
        # an in-place change to a saved input only by identity.
        ctx.save_for_backward(x, mean, invstd, weight)
        ctx.rows_cols, ctx.normalized = rows_cols, normalized
        return _reshaped(y2, x.shape)

    @staticmethod
    def backward(ctx, grad):
        x, mean, invstd, weight = ctx.saved_tensors
        rows_cols, normalized = ctx.rows_cols, ctx.normalized
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        gy = _reshaped(grad, rows_cols)
        gx, gw, gb = backend.active.layer_norm_backward(
            gy, _reshaped(x, rows_cols), mean, invstd, _reshaped(weight, (rows_cols[1],))
        )
        if need_b and gb is None:
            gb = gy.sum(axis=0)
        return (
            _reshaped(gx, x.shape) if need_x else None,
            _reshaped(gw, normalized) if need_w else None,
            _reshaped(gb, normalized) if need_b else None,
        )


# ---------------------------------------------------------------------------
# Dropout
# ---------------------------------------------------------------------------


class Dropout(Function):
    """Inverted dropout: zero each element with probability p and scale the rest
    by 1/(1-p), so the expected output equals the input and eval needs no change.

    The mask, already scaled, is the saved array: backward is one multiply.
    It comes from ``minigrad.random.generator()``, so ``manual_seed`` fixes it.
    """

    @staticmethod
    def forward(ctx, x, p):
        _float("dropout", "input", x)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout: p must be in [0, 1], got {p}")
        keep = generator().random(x.shape, dtype=x.dtype) >= p
        mask = keep.astype(x.dtype)
        if p < 1.0:
            mask *= x.dtype.type(1.0 / (1.0 - p))
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return grad * mask, None


# ---------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------


def _same_shape_or_broadcast(op: str, x: np.ndarray, y: np.ndarray) -> tuple:
    try:
        return np.broadcast_shapes(x.shape, y.shape)
    except ValueError:
        raise ValueError(
            f"{op}: input of shape {x.shape} and target of shape {y.shape} do not broadcast"
        ) from None


class MSELoss(Function):
    @staticmethod
    def forward(ctx, x, y, reduction="mean"):
        _check_reduction("mse_loss", reduction)
        _float("mse_loss", "input", x)
        _float("mse_loss", "target", y)
        _same_shape_or_broadcast("mse_loss", x, y)
        diff = np.subtract(x, y)
        ctx.save_for_backward(diff)
        ctx.reduction = reduction
        return _reduce(diff * diff, reduction, diff.size)

    @staticmethod
    def backward(ctx, grad):
        (diff,) = ctx.saved_tensors
        g = diff * (2 * _grad_scale(grad, ctx.reduction, diff.size))
        return g, (-g if ctx.needs_input_grad[1] else None)


class L1Loss(Function):
    @staticmethod
    def forward(ctx, x, y, reduction="mean"):
        _check_reduction("l1_loss", reduction)
        _float("l1_loss", "input", x)
        _float("l1_loss", "target", y)
        _same_shape_or_broadcast("l1_loss", x, y)
        diff = np.subtract(x, y)
        ctx.save_for_backward(np.sign(diff))
        ctx.reduction = reduction
        return _reduce(np.abs(diff), reduction, diff.size)

    @staticmethod
    def backward(ctx, grad):
        (sign,) = ctx.saved_tensors
        g = sign * _grad_scale(grad, ctx.reduction, sign.size)
        return g, (-g if ctx.needs_input_grad[1] else None)


def _classes_last(x: np.ndarray) -> np.ndarray:
    """Logits (C,), (N, C) or (N, C, d1, ...) as rows of a (R, C) matrix."""
    if x.ndim == 1:
        return x.reshape(1, -1)
    if x.ndim == 2:
        return x
    return np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])


def _classes_back(g2: np.ndarray, shape: tuple) -> np.ndarray:
    if len(shape) <= 2:
        return g2.reshape(shape)
    moved = (shape[0], *shape[2:], shape[1])
    return np.ascontiguousarray(np.moveaxis(g2.reshape(moved), -1, 1))


def _log_softmax_rows(z: np.ndarray) -> np.ndarray:
    out = z - z.max(axis=1, keepdims=True) if z.shape[1] else z.copy()
    out -= np.log(np.exp(out).sum(axis=1, keepdims=True))
    return out


class CrossEntropy(Function):
    """Cross entropy of logits against class indices or class probabilities.

    Logits are (C,), (N, C) or (N, C, d1, ...). Class-index targets have the
    logits' shape without the class dim; probability targets have the logits'
    shape. PyTorch's definitions, incl. with ``weight`` and ``label_smoothing``:
    a row's loss is ``-sum_c q_c log softmax(z)_c`` with q the (smoothed,
    weighted) target distribution; "mean" over class indices divides by the
    summed weights of the targets that are not ``ignore_index``, over
    probabilities by the number of rows.
    """

    @staticmethod
    def forward(
        ctx, logits, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0
    ):
        op = "cross_entropy"
        _check_reduction(op, reduction)
        _float(op, "input", logits)
        if logits.ndim == 0:
            raise ValueError(f"{op}: input must have a class dim, got a 0-d tensor")
        classes = logits.shape[1] if logits.ndim > 1 else logits.shape[0]
        _same_dtype(op, logits, weight=weight)
        _shapes_are(op, (classes,), weight=weight)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing}")
        probabilities = target.dtype.kind == "f"
        if probabilities:
            if ignore_index != -100:
                raise ValueError(
                    f"{op}: ignore_index={ignore_index} is not supported for probability "
                    "targets (it selects class indices)"
                )
            if target.shape != logits.shape:
                raise ValueError(
                    f"{op}: probability targets must have the input's shape {logits.shape}, "
                    f"got {target.shape}"
                )
        else:
            if target.dtype.kind not in "iu":
                raise TypeError(
                    f"{op}: target has dtype {target.dtype}; expected int64 class indices "
                    "or float class probabilities"
                )
            expected = logits.shape[:1] + logits.shape[2:] if logits.ndim > 1 else ()
            if target.shape != expected:
                raise ValueError(
                    f"{op}: class-index target has shape {target.shape}; for input of shape "
                    f"{logits.shape} expected {expected}"
                )
            bad = (target != ignore_index) & ((target < 0) | (target >= classes))
            if bad.any():
                value = int(target[bad].flat[0])
                raise IndexError(
                    f"{op}: target {value} is out of bounds for {classes} classes "
                    f"(expected a class index in [0, {classes - 1}] or ignore_index={ignore_index})"
                )

        z = _classes_last(logits)
        dtype = z.dtype
        logp = _log_softmax_rows(z)
        eps = dtype.type(label_smoothing)
        per_class = np.ones(classes, dtype) if weight is None else weight
        if probabilities:
            q = _classes_last(target).astype(dtype, copy=True)
            if label_smoothing:
                q *= 1 - eps
                q += eps / classes
            if weight is not None:
                q *= weight
            with np.errstate(invalid="ignore"):
                rows = -(q * logp).sum(axis=1)
            count = rows.shape[0]
            ctx.save_for_backward(logp, q, per_class)
        else:
            t = target.reshape(-1)
            valid = t != ignore_index
            safe = np.where(valid, t, 0)
            picked = np.take_along_axis(logp, safe[:, None], axis=1)[:, 0]
            wt = np.where(valid, per_class[safe], 0).astype(dtype)
            rows = -(1 - eps) * wt * picked
            if label_smoothing:
                smooth = -(logp * per_class).sum(axis=1) * (eps / classes)
                rows += np.where(valid, smooth, 0)
            count = float(wt.sum(dtype=np.float64))
            ctx.save_for_backward(logp, safe, wt, valid, per_class)
        ctx.probabilities = probabilities
        ctx.reduction, ctx.count, ctx.eps, ctx.shape = reduction, count, eps, logits.shape
        if reduction == "none":
            return rows.reshape(logits.shape[:1] + logits.shape[2:] if logits.ndim > 1 else ())
        return _reduce(rows, reduction, count)

    @staticmethod
    def backward(ctx, grad):
        need_z, need_t = ctx.needs_input_grad[:2]
        s = _grad_scale(grad, ctx.reduction, ctx.count)
        s = s.reshape(-1, 1) if ctx.reduction == "none" else s
        if ctx.probabilities:
            logp, q, per_class = ctx.saved_tensors
            gz = None
            if need_z:
                # d/dz of -sum_c q_c log softmax(z)_c is softmax(z) * sum(q) - q
                gz = np.exp(logp) * q.sum(axis=1, keepdims=True)
                gz -= q
                gz *= s
            gt = None
            if need_t:
                gt = -(1 - ctx.eps) * per_class * logp * s
                gt = _classes_back(gt, ctx.shape)
            return (None if gz is None else _classes_back(gz, ctx.shape)), gt
        logp, safe, wt, valid, per_class = ctx.saved_tensors
        if not need_z:
            return None
        eps = ctx.eps
        classes = logp.shape[1]
        total = (1 - eps) * wt
        if eps:
            total = total + valid * (eps / classes) * per_class.sum()
        probs = np.exp(logp)
        probs *= total[:, None]
        probs[np.arange(len(safe)), safe] -= (1 - eps) * wt
        if eps:
            probs -= (valid[:, None] * (eps / classes)) * per_class
        probs *= s
        return _classes_back(probs, ctx.shape)


class BCEWithLogits(Function):
    """Binary cross entropy on logits, in the form that cannot overflow:
    ``(1 - y) x + (1 + (pos_weight - 1) y) softplus(-x)``, with
    ``softplus(-x) = max(-x, 0) + log1p(exp(-|x|))``; times ``weight``.

    weight and pos_weight broadcast against the input (pos_weight along the
    last dim, one per class). Every input, targets included, gets a gradient.
    """

    @staticmethod
    def forward(ctx, x, y, weight=None, pos_weight=None, reduction="mean"):
        op = "binary_cross_entropy_with_logits"
        _check_reduction(op, reduction)
        _same_dtype(op, x, target=y, weight=weight, pos_weight=pos_weight)
        if y.shape != x.shape:
            raise ValueError(
                f"{op}: target size {y.shape} must be the same as input size {x.shape}"
            )
        for name, a in (("weight", weight), ("pos_weight", pos_weight)):
            if a is not None:
                try:
                    if np.broadcast_shapes(a.shape, x.shape) != x.shape:
                        raise ValueError
                except ValueError:
                    raise ValueError(
                        f"{op}: {name} of shape {a.shape} does not broadcast to the "
                        f"input's shape {x.shape}"
                    ) from None
        softplus = np.maximum(-x, 0)
        softplus += np.log1p(np.exp(-np.abs(x)))
        loss = (1 - y) * x
        if pos_weight is None:
            loss += softplus
        else:
            loss += (1 + (pos_weight - 1) * y) * softplus
        if weight is not None:
            loss *= weight
        ctx.save_for_backward(x, y, weight, pos_weight)
        ctx.reduction = reduction
        return _reduce(loss, reduction, loss.size)

    @staticmethod
    def backward(ctx, grad):
        x, y, weight, pos_weight = ctx.saved_tensors
        need_x, need_y, need_w, need_pw = ctx.needs_input_grad[:4]
        s = _grad_scale(grad, ctx.reduction, x.size)
        ws = s if weight is None else weight * s
        softplus = np.maximum(-x, 0)
        softplus += np.log1p(np.exp(-np.abs(x)))
        log_weight = 1 if pos_weight is None else 1 + (pos_weight - 1) * y
        gx = gy = gw = gpw = None
        if need_x:
            # sigmoid(-x) from the backend kernel: exact 0 and 1 at the extremes
            gx = ((1 - y) - log_weight * backend.active.sigmoid_forward(-x)) * ws
        if need_y:
            gy = (-x if pos_weight is None else (pos_weight - 1) * softplus - x) * ws
        if need_w:
            gw = ((1 - y) * x + log_weight * softplus) * s
        if need_pw:
            gpw = y * softplus * ws
        return gx, gy, gw, gpw
