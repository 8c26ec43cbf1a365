"""Arithmetic and elementwise math. Broadcasting is NumPy's; the engine sums
each gradient back to its input's shape, so these backward methods never do."""

from __future__ import annotations

import numpy as np

from ..autograd import Function


def _broadcasting(name: str, ufunc: np.ufunc, a, b) -> np.ndarray:
    try:
        return ufunc(a, b)
    except ValueError:
        raise ValueError(
            f"{name}: shapes {np.shape(a)} and {np.shape(b)} do not broadcast "
            "(trailing dims must be equal or 1)"
        ) from None


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        return _broadcasting("add", np.add, a, b)

    @staticmethod
    def backward(ctx, grad):
        return grad, grad


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        return _broadcasting("sub", np.subtract, a, b)

    @staticmethod
    def backward(ctx, grad):
        return grad, -grad if ctx.needs_input_grad[1] else None


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        need_a, need_b = ctx.needs_input_grad
        ctx.save_for_backward(a if need_b else None, b if need_a else None)
        return _broadcasting("mul", np.multiply, a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        return (
            grad * b if ctx.needs_input_grad[0] else None,
            grad * a if ctx.needs_input_grad[1] else None,
        )


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        y = _broadcasting("div", np.true_divide, a, b)
        ctx.save_for_backward(b, y if ctx.needs_input_grad[1] else None)
        return y

    @staticmethod
    def backward(ctx, grad):
        b, y = ctx.saved_tensors
        ga = grad / b
        # d(a/b)/db = -a/b^2 = -(a/b)/b, reusing the output
        return ga, -ga * y if ctx.needs_input_grad[1] else None


class Neg(Function):
    @staticmethod
    def forward(ctx, x):
        return np.negative(x)

    @staticmethod
    def backward(ctx, grad):
        return -grad


class Pow(Function):
    """``base ** exponent``; either may be a tensor or a number."""

    @staticmethod
    def forward(ctx, base, exponent):
        y = _broadcasting("pow", np.power, base, exponent)
        ctx.save_for_backward(base, exponent, y)
        return y

    @staticmethod
    def backward(ctx, grad):
        base, exponent, y = ctx.saved_tensors
        g_base = g_exp = None
        with np.errstate(divide="ignore", invalid="ignore"):
            if ctx.needs_input_grad[0]:
                # d(b^e)/db = e b^(e-1), taken as 0 where e == 0 (b^0 is constant, even at b = 0)
                g_base = np.where(exponent == 0, 0, grad * exponent * np.power(base, exponent - 1))
            if ctx.needs_input_grad[1]:
                # d(b^e)/de = b^e log b, taken as 0 at b == 0 with e >= 0 (its limit there)
                g_exp = np.where((base == 0) & (exponent >= 0), 0, grad * y * np.log(base))
        return g_base, g_exp


class Exp(Function):
    @staticmethod
    def forward(ctx, x):
        y = np.exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * y


class Log(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.log(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / x


class Sqrt(Function):
    @staticmethod
    def forward(ctx, x):
        y = np.sqrt(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad / (2 * y)


class Abs(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.abs(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        # sign(x), but 0 (not NaN) at x == 0 and at NaN, as in PyTorch
        return grad * ((x > 0).astype(grad.dtype) - (x < 0))


class Clamp(Function):
    @staticmethod
    def forward(ctx, x, lo, hi):
        ctx.save_for_backward(x)
        ctx.lo, ctx.hi = lo, hi
        return np.clip(x, lo, hi)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        # the gradient passes where x was inside [lo, hi], bounds included
        inside = np.ones(x.shape, dtype=bool)
        if ctx.lo is not None:
            inside &= x >= ctx.lo
        if ctx.hi is not None:
            inside &= x <= ctx.hi
        return grad * inside


class Cast(Function):
    """Change dtype; the gradient is cast back by the engine."""

    @staticmethod
    def forward(ctx, x, dtype):
        return x.astype(dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad


class Clone(Function):
    @staticmethod
    def forward(ctx, x):
        return np.array(x, copy=True, order="C")

    @staticmethod
    def backward(ctx, grad):
        return grad
