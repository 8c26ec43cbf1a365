"""Matrix product. Two 2-D float operands of one dtype run on the backend's
GEMM, whose backward products read the operands transposed in place (no copy);
every other case (vectors, batches, mixed dtypes) follows ``np.matmul``."""

from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Function


def _check(a: np.ndarray, b: np.ndarray) -> None:
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(
            f"matmul: both operands need at least 1 dim, got shapes {a.shape} and {b.shape}; "
            "use * to scale by a number"
        )
    k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if a.shape[-1] != k_b:
        raise ValueError(
            f"matmul: shapes {a.shape} and {b.shape} cannot be multiplied "
            f"({a.shape[-1]} columns vs {k_b} rows)"
        )


class MatMul(Function):
    @staticmethod
    def forward(ctx, a, b):
        if type(a) is not np.ndarray or type(b) is not np.ndarray:  # a number or a list
            a, b = np.asarray(a), np.asarray(b)
        matrices = a.ndim == 2 and b.ndim == 2
        if not (matrices and a.shape[1] == b.shape[0]):  # the common case, checked first
            _check(a, b)
        need_a, need_b = ctx.needs_input_grad
        if need_a or need_b:
            ctx.ndims = (a.ndim, b.ndim)
            ctx.save_for_backward(a if need_b else None, b if need_a else None)
        if matrices and a.dtype == b.dtype and a.dtype.kind == "f":
            return backend.active.gemm(a, b)
        try:
            return np.matmul(a, b)
        except ValueError:
            raise ValueError(
                f"matmul: batch dims of {a.shape} and {b.shape} do not broadcast"
            ) from None

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        if (
            ctx.ndims == (2, 2)
            and grad.dtype.kind == "f"
            and all(x is None or x.dtype == grad.dtype for x in (a, b))
        ):
            gemm = backend.active.gemm
            return (
                gemm(grad, b, trans_b=True) if need_a else None,
                gemm(a, grad, trans_a=True) if need_b else None,
            )
        # Vectors are matrices with a unit dim; add it, multiply, drop it again.
        a_vec, b_vec = ctx.ndims[0] == 1, ctx.ndims[1] == 1
        if b_vec:
            grad = np.expand_dims(grad, -1)
        if a_vec:
            grad = np.expand_dims(grad, -2)
        ga = gb = None
        if need_a:
            b2 = b[:, None] if b_vec else b
            ga = grad @ np.swapaxes(b2, -1, -2)
            if a_vec:
                ga = ga[..., 0, :]
        if need_b:
            a2 = a[None, :] if a_vec else a
            gb = np.swapaxes(a2, -1, -2) @ grad
            if b_vec:
                gb = gb[..., 0]
        return ga, gb
