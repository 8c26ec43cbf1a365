"""Ops that move elements without changing them: reshape, permute, indexing,
concatenation. Each backward moves the gradient back the same way."""

from __future__ import annotations

import numpy as np

from ..autograd import Function


class Reshape(Function):
    @staticmethod
    def forward(ctx, x, shape):
        ctx.shape = x.shape
        try:
            return x.reshape(shape)
        except (ValueError, TypeError):
            raise ValueError(
                f"reshape: cannot view a tensor of shape {x.shape} ({x.size} elements) as {shape}"
            ) from None

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape(ctx.shape)


class Permute(Function):
    @staticmethod
    def forward(ctx, x, axes):
        ctx.axes = axes
        return x.transpose(axes)

    @staticmethod
    def backward(ctx, grad):
        return grad.transpose(np.argsort(ctx.axes))


def _is_basic(index) -> bool:
    """Basic indexing (ints, slices, None, ...) selects each element at most once."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(
        p is None
        or p is Ellipsis
        or (isinstance(p, (int, np.integer, slice)) and not isinstance(p, bool))
        for p in parts
    )


class GetItem(Function):
    @staticmethod
    def forward(ctx, x, index):
        ctx.shape = x.shape
        ctx.save_for_backward(index)
        try:
            return x[index]
        except IndexError as exc:
            raise IndexError(f"getitem: {exc} (the tensor has shape {x.shape})") from None

    @staticmethod
    def backward(ctx, grad):
        (index,) = ctx.saved_tensors
        g = np.zeros(ctx.shape, dtype=grad.dtype)
        if _is_basic(index):
            g[index] = grad
        else:
            # an integer array may pick one element several times: add, don't assign
            np.add.at(g, index, grad)
        return g


class Cat(Function):
    @staticmethod
    def forward(ctx, dim, *xs):
        ctx.dim = dim
        ctx.sizes = [x.shape[dim] for x in xs]
        return np.concatenate(xs, axis=dim)

    @staticmethod
    def backward(ctx, grad):
        return (None, *np.split(grad, np.cumsum(ctx.sizes)[:-1], axis=ctx.dim))


class Stack(Function):
    @staticmethod
    def forward(ctx, dim, *xs):
        ctx.dim = dim
        return np.stack(xs, axis=dim)

    @staticmethod
    def backward(ctx, grad):
        return (None, *np.moveaxis(grad, ctx.dim, 0))
