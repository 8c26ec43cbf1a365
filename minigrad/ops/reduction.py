"""Reductions. Backward spreads the output gradient back over the reduced
axes: ``_expand`` restores the kept dims, then broadcasting does the rest."""

from __future__ import annotations

import math

import numpy as np

from ..autograd import Function


def _expand(grad: np.ndarray, shape: tuple, dims: tuple | None, keepdim: bool) -> np.ndarray:
    """The output gradient broadcast back to the input's shape (a read-only view)."""
    if dims is not None and not keepdim:
        grad = np.expand_dims(grad, dims)
    return np.broadcast_to(grad, shape)


def _count(shape: tuple, dims: tuple | None) -> int:
    return math.prod(shape if dims is None else [shape[d] for d in dims])


class Sum(Function):
    @staticmethod
    def forward(ctx, x, dims=None, keepdim=False):
        ctx.shape, ctx.dims, ctx.keepdim = x.shape, dims, keepdim
        return np.sum(x, axis=dims, keepdims=keepdim)

    @staticmethod
    def backward(ctx, grad):
        return _expand(grad, ctx.shape, ctx.dims, ctx.keepdim)


class Mean(Function):
    @staticmethod
    def forward(ctx, x, dims=None, keepdim=False):
        ctx.shape, ctx.dims, ctx.keepdim = x.shape, dims, keepdim
        return np.mean(x, axis=dims, keepdims=keepdim)

    @staticmethod
    def backward(ctx, grad):
        return _expand(grad / _count(ctx.shape, ctx.dims), ctx.shape, ctx.dims, ctx.keepdim)


class Var(Function):
    """Variance with ``correction`` (1: divide by N - 1, PyTorch's default)."""

    @staticmethod
    def forward(ctx, x, dims=None, correction=1, keepdim=False):
        centered = x - np.mean(x, axis=dims, keepdims=True)
        ctx.shape, ctx.dims, ctx.keepdim = x.shape, dims, keepdim
        ctx.divisor = max(_count(x.shape, dims) - correction, 0)
        ctx.save_for_backward(centered)
        return np.sum(centered * centered, axis=dims, keepdims=keepdim) / ctx.divisor

    @staticmethod
    def backward(ctx, grad):
        (centered,) = ctx.saved_tensors
        scale = 2 / ctx.divisor if ctx.divisor else float("inf")  # N <= correction: NaN, as forward
        return _expand(grad, ctx.shape, ctx.dims, ctx.keepdim) * scale * centered


class Max(Function):
    """The largest element; ties share the gradient equally, as in PyTorch."""

    @staticmethod
    def forward(ctx, x):
        y = np.max(x)
        ctx.save_for_backward(x, y)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, y = ctx.saved_tensors
        winners = np.isnan(x) if np.isnan(y) else x == y  # a NaN max came from the NaNs
        return winners * (grad / np.count_nonzero(winners))


class MaxAlongDim(Function):
    """Max along one axis, given the argmax ``indices`` (kept-dims shape); the
    gradient goes to the chosen element only."""

    @staticmethod
    def forward(ctx, x, indices, axis, keepdim=False):
        ctx.shape, ctx.axis, ctx.keepdim = x.shape, axis, keepdim
        ctx.save_for_backward(indices)
        values = np.take_along_axis(x.reshape(x.shape or (1,)), indices, axis)
        return values if keepdim else values.squeeze(axis)

    @staticmethod
    def backward(ctx, grad):
        (indices,) = ctx.saved_tensors
        g = np.zeros(ctx.shape or (1,), dtype=grad.dtype)
        np.put_along_axis(
            g, indices, grad if ctx.keepdim else np.expand_dims(grad, ctx.axis), ctx.axis
        )
        return g.reshape(ctx.shape)
