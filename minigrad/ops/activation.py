"""Activations. The elementwise ones run on the backend's fused kernels (C when
built): forward in one pass, backward in one pass over what forward saved."""

from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Function


def _float_input(op: str, x: np.ndarray) -> np.ndarray:
    if x.dtype.kind != "f":
        raise TypeError(
            f"{op}: input has dtype {x.dtype}; it needs float32 or float64 (use .float())"
        )
    return x


class ReLU(Function):
    @staticmethod
    def forward(ctx, x):
        y = backend.active.relu_forward(_float_input("relu", x))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return backend.active.relu_backward(grad, y)


class LeakyReLU(Function):
    @staticmethod
    def forward(ctx, x, negative_slope=0.01):
        ctx.save_for_backward(x)
        ctx.negative_slope = negative_slope
        return backend.active.leaky_relu_forward(_float_input("leaky_relu", x), negative_slope)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return backend.active.leaky_relu_backward(grad, x, ctx.negative_slope)


class Sigmoid(Function):
    @staticmethod
    def forward(ctx, x):
        y = backend.active.sigmoid_forward(_float_input("sigmoid", x))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return backend.active.sigmoid_backward(grad, y)


class Tanh(Function):
    @staticmethod
    def forward(ctx, x):
        y = backend.active.tanh_forward(_float_input("tanh", x))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return backend.active.tanh_backward(grad, y)


class GELU(Function):
    @staticmethod
    def forward(ctx, x, approximate="none"):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
        ctx.save_for_backward(x)
        ctx.approximate = approximate
        return backend.active.gelu_forward(_float_input("gelu", x), approximate)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return backend.active.gelu_backward(grad, x, ctx.approximate)


def _shifted(x: np.ndarray, dim: int) -> np.ndarray:
    """x minus its max along dim: exp of it cannot overflow."""
    return x - x.max(axis=dim, keepdims=True)


class Softmax(Function):
    @staticmethod
    def forward(ctx, x, dim):
        _float_input("softmax", x)
        if x.ndim == 0 or x.shape[dim] == 0:
            y = np.ones_like(x) if x.ndim == 0 else np.empty_like(x)
        else:
            y = np.exp(_shifted(x, dim))
            y /= y.sum(axis=dim, keepdims=True)
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        if y.ndim == 0:
            return np.zeros_like(grad)
        # J^T g = y * (g - <g, y>) along dim
        return y * (grad - (grad * y).sum(axis=ctx.dim, keepdims=True))


class LogSoftmax(Function):
    @staticmethod
    def forward(ctx, x, dim):
        _float_input("log_softmax", x)
        if x.ndim == 0 or x.shape[dim] == 0:
            y = np.zeros_like(x) if x.ndim == 0 else np.empty_like(x)
        else:
            y = _shifted(x, dim)
            y -= np.log(np.exp(y).sum(axis=dim, keepdims=True))
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        if y.ndim == 0:
            return np.zeros_like(grad)
        return grad - np.exp(y) * grad.sum(axis=ctx.dim, keepdims=True)
