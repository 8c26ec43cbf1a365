"""The NumPy reference backend: every kernel of ``Backend`` in plain NumPy.

It is the oracle the C kernels are tested against, the baseline the benchmarks
compare with, and the fallback when the extension is missing. So it is
accurate first and fast second, but not slow on purpose: in-place ufuncs and
``out=`` where they save a temporary, transposes as views, and float64
accumulation for reductions (the C kernels accumulate in double too).

Scalar arguments are turned into Python floats before they meet an array:
NumPy 2 treats Python scalars as "weak", so ``float32_array * 0.1`` stays
float32, whereas a ``np.float64`` scalar would silently promote it to float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .base import (
    Backend,
    TensorStats,
    check_change_args,
    check_histogram_args,
    check_unit_stats_args,
    check_unit_stats_multi_args,
    check_update_lists,
)

_F64 = np.float64
_SQRT1_2 = math.sqrt(0.5)
_INV_SQRT_PI = 1.0 / math.sqrt(math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_TANH_BETA = math.sqrt(2.0 / math.pi)
_GELU_TANH_KAPPA = 0.044715

# ---------------------------------------------------------------------------
# erf / erfc for arrays.
#
# NumPy has no erf, and scipy is not a dependency. These are W. J. Cody's
# rational Chebyshev approximations ("Rational Chebyshev approximations for the
# error function", Math. Comp. 23, 1969; coefficients as in his SPECFUN routine
# CALERF), which approximate erf/erfc to about 18 significant digits, so
# float64 rounding is the only error left. Three ranges of y = |t|:
#   y <= 0.46875      erf(t)  = t P(t^2) / Q(t^2)
#   0.46875 < y <= 4  erfc(y) = exp(-y^2) P(y) / Q(y)
#   y > 4             erfc(y) = exp(-y^2) (1/sqrt(pi) - z P(z) / Q(z)) / y,  z = 1/y^2
# Coefficients are listed highest power first, in the order Cody's Horner
# loops use them.
#
# Measured where the results are normal floats: _erfc on 2,000,001 points of
# [-6, 27] is within 1.1e-15 (relative) of math.erfc and 8.0e-16 (3.6 ulp) of
# 40-digit mpmath. The exact GELU on 20,000 points of [-37, 10] (below -37
# Phi(x) is subnormal) is within 8.6e-16 of mpmath, and its derivative within
# 6.4e-16 of |Phi(x)| + |x phi(x)| (the derivative itself has a root near
# -0.75; away from it the relative error is below 1.9e-15).
# ---------------------------------------------------------------------------
_ERF_NUM = (
    1.85777706184603153e-1,
    3.16112374387056560e00,
    1.13864154151050156e02,
    3.77485237685302021e02,
    3.20937758913846947e03,
)
_ERF_DEN = (
    1.0,
    2.36012909523441209e01,
    2.44024637934444173e02,
    1.28261652607737228e03,
    2.84423683343917062e03,
)
_ERFC_MID_NUM = (
    2.15311535474403846e-8,
    5.64188496988670089e-1,
    8.88314979438837594e00,
    6.61191906371416295e01,
    2.98635138197400131e02,
    8.81952221241769090e02,
    1.71204761263407058e03,
    2.05107837782607147e03,
    1.23033935479799725e03,
)
_ERFC_MID_DEN = (
    1.0,
    1.57449261107098347e01,
    1.17693950891312499e02,
    5.37181101862009858e02,
    1.62138957456669019e03,
    3.29079923573345963e03,
    4.36261909014324716e03,
    3.43936767414372164e03,
    1.23033935480374942e03,
)
_ERFC_BIG_NUM = (
    1.63153871373020978e-2,
    3.05326634961232344e-1,
    3.60344899949804439e-1,
    1.25781726111229246e-1,
    1.60837851487422766e-2,
    6.58749161529837803e-4,
)
_ERFC_BIG_DEN = (
    1.0,
    2.56852019228982242e00,
    1.87295284992346047e00,
    5.27905102951428412e-1,
    6.05183413124413191e-2,
    2.33520497626869185e-3,
)
_ERF_SMALL_LIMIT = 0.46875
# erfc(27.25) is already below the smallest subnormal, so larger arguments can
# be clamped here; this keeps inf out of the arithmetic below.
_ERFC_ARG_CAP = 27.5


def _rational(num: Sequence[float], den: Sequence[float], z: np.ndarray) -> np.ndarray:
    """``num(z) / den(z)`` by Horner's rule; den's leading coefficient is 1."""
    p = np.multiply(z, num[0])
    p += num[1]
    for c in num[2:]:
        p *= z
        p += c
    q = np.add(z, den[1])
    for c in den[2:]:
        q *= z
        q += c
    p /= q
    return p


# Each range below is evaluated on the whole array and the right one picked
# with copyto(where=): a few more flops, but cheaper than gathering and
# scattering every range through boolean masks. Arguments are clamped first
# so that no range sees inf, and NaN always ends up in the result.


def _erf_small(t: np.ndarray) -> np.ndarray:
    """erf(t), valid for |t| <= 0.46875 (float64)."""
    out = _rational(_ERF_NUM, _ERF_DEN, t * t)
    out *= t
    return out


def _erfcx(y: np.ndarray) -> np.ndarray:
    """``exp(y^2) erfc(y)``, valid for 0.46875 < y <= _ERFC_ARG_CAP (float64)."""
    out = _rational(_ERFC_MID_NUM, _ERFC_MID_DEN, y)
    yb = np.maximum(y, 4.0)  # keeps 1/y^2 finite where the result is not used
    z = np.multiply(yb, yb)
    np.divide(1.0, z, out=z)
    big = _rational(_ERFC_BIG_NUM, _ERFC_BIG_DEN, z)
    big *= z
    np.subtract(_INV_SQRT_PI, big, out=big)
    big /= yb
    np.copyto(out, big, where=y > 4.0)
    return out


def _exp_neg_sq(v: np.ndarray, c: float) -> np.ndarray:
    """``exp(-c v^2)`` for v >= 0 and c in {1, 0.5}, accurate to a few ulp for large v.

    Rounding v*v would shift the exponent by up to ``c v^2 2^-53``, a relative
    error of about ``c v^2 / 2`` ulp in the result (hundreds near v = 27).
    Splitting v = s + r, with s holding v to 1/16, makes ``c s^2`` exact, and
    the small rest ``c r (v + s)`` is harmless.
    """
    s = np.multiply(v, 16.0)
    np.trunc(s, out=s)
    s *= 1.0 / 16.0
    out = np.multiply(s, s)
    out *= -c
    np.exp(out, out=out)
    r = np.subtract(v, s)
    s += v
    r *= s
    r *= -c
    np.exp(r, out=r)
    out *= r
    return out


def _erfc(t: np.ndarray) -> np.ndarray:
    """Complementary error function of a float64 array, elementwise."""
    t = np.asarray(t, dtype=_F64)
    y = np.abs(t)
    np.minimum(y, _ERFC_ARG_CAP, out=y)
    out = _exp_neg_sq(y, 1.0)
    out *= _erfcx(y)
    np.subtract(2.0, out, out=out, where=t < 0)
    small = _erf_small(np.clip(t, -_ERF_SMALL_LIMIT, _ERF_SMALL_LIMIT))
    np.subtract(1.0, small, out=small)
    np.copyto(out, small, where=y <= _ERF_SMALL_LIMIT)
    return out


def _normal_cdf_and_gauss(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``Phi(x)`` and ``exp(-x^2/2)`` for a float64 array.

    ``Phi(x) = erfc(-x/sqrt(2)) / 2``, but rounding x/sqrt(2) and then squaring
    it inside erfc would cost about x^2/2 ulp in the far tail. So the Gaussian
    factor is taken from x itself and only the slowly varying ``erfcx`` sees
    the rounded argument, which keeps Phi within a few ulp for all x.
    """
    # Beyond |x| = 39 both Phi's tail and exp(-x^2/2) are exactly 0 in float64.
    ax = np.abs(x)
    np.minimum(ax, 39.0, out=ax)
    gauss = _exp_neg_sq(ax, 0.5)
    y = ax
    y *= _SQRT1_2
    cdf = _erfcx(y)
    cdf *= gauss
    cdf *= 0.5
    np.subtract(1.0, cdf, out=cdf, where=x >= 0)
    t = np.clip(x, -_ERF_SMALL_LIMIT / _SQRT1_2, _ERF_SMALL_LIMIT / _SQRT1_2)
    t *= _SQRT1_2
    small = _erf_small(t)
    small *= 0.5
    small += 0.5
    np.copyto(cdf, small, where=y <= _ERF_SMALL_LIMIT)
    return cdf, gauss


# Elements per block of the exact GELU. Its erfc needs about a dozen float64
# temporaries; block-sized ones stay in cache and are reused, while
# full-size ones would each be a fresh allocation (measured 1.6x slower).
_GELU_BLOCK = 16384


def _gelu_exact(x: np.ndarray, gy: np.ndarray | None = None) -> np.ndarray:
    """``x Phi(x)``, or ``gy gelu'(x)`` when gy is given, in float64 then x's dtype.

    Flooring x at -39 changes nothing (Phi(-39) is exactly 0 in float64) and
    gives the limits at -inf; for the derivative, +-39 likewise.
    """
    out = np.empty(x.shape, dtype=x.dtype)
    flat_out = out.reshape(-1)
    flat_x = x.reshape(-1)
    flat_gy = None if gy is None else gy.reshape(-1)
    for start in range(0, flat_x.size, _GELU_BLOCK):
        block = slice(start, start + _GELU_BLOCK)
        if flat_gy is None:
            xb = np.maximum(flat_x[block], -39.0, dtype=_F64)
            cdf, _ = _normal_cdf_and_gauss(xb)
            cdf *= xb
        else:
            xb = np.clip(flat_x[block], -39.0, 39.0, dtype=_F64)
            cdf, gauss = _normal_cdf_and_gauss(xb)
            # gelu'(x) = Phi(x) + x phi(x), with phi(x) = exp(-x^2/2) / sqrt(2 pi)
            gauss *= xb
            gauss *= _INV_SQRT_2PI
            cdf += gauss
            cdf *= flat_gy[block]
        flat_out[block] = cdf
    return out


def _sum64(x: np.ndarray, axis: int | None = None) -> np.ndarray:
    return np.add.reduce(x, axis=axis, dtype=_F64)


def _dot64(a: np.ndarray, b: np.ndarray, axis: int) -> np.ndarray:
    """``sum(a * b, axis)`` of 2-D arrays with products and sums in float64.

    Forming the products in float64 also keeps float32 values above ~1.8e19
    from overflowing when squared.
    """
    return np.einsum("ij,ij->j" if axis == 0 else "ij,ij->i", a, b, dtype=_F64)


def _update_running_(running: np.ndarray, batch64: np.ndarray, momentum: float) -> None:
    # In float64 and rounded once, as PyTorch updates its running statistics.
    np.copyto(running, (1.0 - momentum) * running.astype(_F64) + momentum * batch64)


def _sum_squares_one(a: np.ndarray) -> float:
    flat = a.ravel()
    if flat.dtype == _F64:
        return float(np.dot(flat, flat))
    return float(np.einsum("i,i->", flat, flat, dtype=_F64))


class NumpyBackend(Backend):
    name = "numpy"

    # -- matrix product ---------------------------------------------------
    def gemm(self, a, b, *, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, out=None, bias=None):
        """``out = alpha * op(a) @ op(b) + beta * out (+ bias)``.

        As in BLAS, ``beta == 0`` overwrites out without reading it, so an
        uninitialised buffer (or one holding NaN) is fine.
        """
        alpha, beta = float(alpha), float(beta)
        op_a = a.T if trans_a else a
        op_b = b.T if trans_b else b
        if out is None or beta == 0.0:
            result = np.matmul(op_a, op_b, out=out)
            if alpha != 1.0:
                result *= alpha
        else:
            product = np.matmul(op_a, op_b)
            if alpha != 1.0:
                product *= alpha
            result = out
            if beta != 1.0:
                result *= beta
            result += product
        if bias is not None:
            result += bias
        return result

    # -- elementwise activations ------------------------------------------
    # np.where and masked copies branch per element: on random signs they run
    # at a few ns per element, slower than an exp. The forms below are
    # branch-free and give the same results (NaN and inf included).

    def relu_forward(self, x):
        # maximum against an array, not the scalar 0: NumPy's scalar-operand
        # loop for maximum is several times slower on this data
        y = np.zeros_like(x)
        np.maximum(x, y, out=y)
        return y

    def relu_backward(self, gy, y):
        # PyTorch's threshold_backward: 0 where y <= 0, else gy (a NaN unit
        # passes gy on). Multiplying by the 0/1 mask is exact for finite gy;
        # an inf or NaN gy on an off unit would give NaN, so those are zeroed.
        if not np.isfinite(gy).all():
            return np.where(y <= 0, 0, gy).astype(gy.dtype, copy=False)
        # (out= keeps 0-d inputs arrays, so the in-place steps work for them too)
        on = np.less_equal(y, 0, out=np.empty(y.shape, dtype=bool))
        np.logical_not(on, out=on)
        return np.multiply(gy, on, out=np.empty_like(gy))

    def leaky_relu_forward(self, x, negative_slope):
        slope = float(negative_slope)
        if slope == 0:  # inf * 0 would be NaN on the positive side
            return np.where(x > 0, x, x * slope)
        y = np.multiply(x, slope, out=np.empty_like(x))
        # for slope <= 1 the larger of x and slope*x is the right branch on
        # both sides of 0 (for slope > 1 the smaller); NaN propagates
        (np.maximum if slope <= 1 else np.minimum)(x, y, out=y)
        return y

    def leaky_relu_backward(self, gy, x, negative_slope):
        # gy*on + (slope*gy)*off: each element adds an exact 0 to its branch
        slope = float(negative_slope)
        if not np.isfinite(gy).all():  # inf * 0 would make NaN on the other branch
            return np.where(x > 0, gy, gy * slope).astype(gy.dtype, copy=False)
        on = np.greater(x, 0, out=np.empty(x.shape, dtype=bool))
        g = np.multiply(gy, on, out=np.empty_like(gy))
        off = np.multiply(gy, slope, out=np.empty_like(gy))
        off *= ~on
        g += off
        return g

    def sigmoid_forward(self, x):
        # 1 / (1 + exp(-x)) is accurate in relative terms for every x: where
        # exp(-x) is huge the result is about exp(x), rounded once. exp(-x)
        # overflows to inf below x = -88.7 (float32), giving exactly 0 there
        # instead of a subnormal; that overflow is expected, not an error.
        y = np.negative(x, out=np.empty_like(x))  # out=: a 0-d input still gives an array
        with np.errstate(over="ignore"):
            np.exp(y, out=y)
        y += 1
        np.reciprocal(y, out=y)
        return y

    def sigmoid_backward(self, gy, y):
        g = np.subtract(1, y, out=np.empty_like(y))
        g *= y
        g *= gy
        return g

    def tanh_forward(self, x):
        return np.tanh(x)

    def tanh_backward(self, gy, y):
        g = np.multiply(y, y, out=np.empty_like(y))
        np.subtract(1, g, out=g)
        g *= gy
        return g

    def gelu_forward(self, x, approximate="none"):
        """GELU. ``"none"``: ``x * Phi(x)``; ``"tanh"``: PyTorch's tanh form.

        The exact form is computed in float64 for either dtype (one rounding
        at the end, so float32 results are almost always correctly rounded).
        At -inf both forms give 0, the limit, where PyTorch gives NaN.
        """
        if approximate == "tanh":
            # For x < -1e4 the tanh form is exactly -0.0 in both dtypes; the
            # floor only stops -inf * 0 from making a NaN.
            xc = np.maximum(x, -1e4)
            with np.errstate(over="ignore"):  # x^3 may overflow; tanh(+-inf) is fine
                inner = np.multiply(xc, xc, out=np.empty_like(x))
                inner *= xc
            inner *= _GELU_TANH_KAPPA
            inner += xc
            inner *= _GELU_TANH_BETA
            np.tanh(inner, out=inner)
            inner += 1
            inner *= 0.5  # before x: (1 + t) * x could overflow for x near the dtype's max
            inner *= xc
            return inner
        self._check_approximate(approximate)
        return _gelu_exact(x)

    def gelu_backward(self, gy, x, approximate="none"):
        """``gy * gelu'(x)``; PyTorch's formula for the tanh form.

        At +-inf both forms give the limits 1 and 0 (PyTorch gives NaN).
        """
        if approximate == "tanh":
            # Beyond |x| = 1e4, tanh(inner) is exactly +-1 and the derivative
            # exactly 1 or 0; clipping keeps x^3 * 0 from becoming NaN.
            xc = np.clip(x, -1e4, 1e4)
            x_sq = np.multiply(xc, xc, out=np.empty_like(x))
            t = np.multiply(x_sq, xc, out=np.empty_like(x))
            t *= _GELU_TANH_KAPPA
            t += xc
            t *= _GELU_TANH_BETA
            np.tanh(t, out=t)
            # right = 0.5 x * (1 - t^2) * beta * (1 + 3 kappa x^2)
            right = np.multiply(t, t, out=np.empty_like(x))
            np.subtract(1, right, out=right)
            right *= xc
            right *= 0.5
            x_sq *= 3.0 * _GELU_TANH_KAPPA
            x_sq += 1
            x_sq *= _GELU_TANH_BETA
            right *= x_sq
            # left = 0.5 * (1 + t)
            t += 1
            t *= 0.5
            t += right
            t *= gy
            return t
        self._check_approximate(approximate)
        return _gelu_exact(x, gy)

    @staticmethod
    def _check_approximate(approximate):
        if approximate != "none":
            raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")

    # -- normalization ------------------------------------------------------
    def batch_norm_forward_train(
        self, x, weight, bias, eps, running_mean=None, running_var=None, momentum=0.1
    ):
        """Batch norm over axis 0 of x (N, C) with batch statistics.

        Returns ``(y, mean, invstd)`` with the biased variance; the statistics
        are accumulated in float64, and the variance takes a second pass over
        the centred data rather than E[x^2] - E[x]^2, which cancels.

        running_mean/var, when given, are updated in place:
        ``r = (1 - momentum) r + momentum s`` with the unbiased variance
        ``var * N / (N - 1)``. Edge cases (PyTorch's module refuses N == 1 in
        training; this kernel does not divide by zero instead): with N == 1 the
        running variance takes the biased variance, 0; with N == 0 the batch
        statistics are mean 0, variance 0 and the running stats are left alone.
        """
        n = x.shape[0]
        eps, momentum = float(eps), float(momentum)
        mean64 = _sum64(x, axis=0) / max(n, 1)
        mean = mean64.astype(x.dtype)
        y = np.subtract(x, mean)
        var64 = _dot64(y, y, axis=0) / max(n, 1)
        invstd64 = 1.0 / np.sqrt(var64 + eps)
        scale64 = invstd64 if weight is None else invstd64 * weight
        y *= scale64.astype(x.dtype)
        if bias is not None:
            y += bias
        if n > 0:
            if running_mean is not None:
                _update_running_(running_mean, mean64, momentum)
            if running_var is not None:
                _update_running_(running_var, var64 * (n / max(n - 1, 1)), momentum)
        return y, mean, invstd64.astype(x.dtype)

    def batch_norm_forward_eval(self, x, running_mean, running_var, weight, bias, eps):
        # (x - mean) * scale rather than PyTorch's folded x * scale + shift:
        # one more pass, but no cancellation when |mean| >> std.
        scale64 = 1.0 / np.sqrt(running_var.astype(_F64) + float(eps))
        if weight is not None:
            scale64 *= weight
        y = np.subtract(x, running_mean)
        y *= scale64.astype(x.dtype)
        if bias is not None:
            y += bias
        return y

    def batch_norm_backward(self, gy, x, mean, invstd, weight):
        """``gx = invstd * w * (gy - mean(gy) - xhat * mean(gy * xhat))``,
        ``gweight = sum(gy * xhat)``, ``gbias = sum(gy)`` over axis 0.

        gweight and gbias are None when weight is None (no affine).
        """
        n = max(x.shape[0], 1)
        xhat = np.subtract(x, mean)
        xhat *= invstd
        gbias64 = _sum64(gy, axis=0)
        gweight64 = _dot64(gy, xhat, axis=0)
        gx = xhat
        gx *= (gweight64 / -n).astype(x.dtype)
        gx += gy
        gx -= (gbias64 / n).astype(x.dtype)
        gx *= invstd if weight is None else (invstd * weight)
        if weight is None:
            return gx, None, None
        return gx, gweight64.astype(x.dtype), gbias64.astype(x.dtype)

    def layer_norm_forward(self, x, weight, bias, eps):
        """Normalize each row of x (R, D); returns ``(y, mean, invstd)``, both (R,).

        Statistics in float64 with a two-pass variance; D == 0 gives mean 0
        and variance 0.
        """
        d = max(x.shape[1], 1)
        mean64 = _sum64(x, axis=1) / d
        mean = mean64.astype(x.dtype)
        y = np.subtract(x, mean[:, None])
        var64 = _dot64(y, y, axis=1) / d
        invstd = (1.0 / np.sqrt(var64 + float(eps))).astype(x.dtype)
        y *= invstd[:, None]
        if weight is not None:
            y *= weight
        if bias is not None:
            y += bias
        return y, mean, invstd

    def layer_norm_backward(self, gy, x, mean, invstd, weight):
        """Gradients of ``layer_norm_forward``: ``(gx, gweight, gbias)``.

        Per row, with ``g = gy * weight``:
        ``gx = invstd * (g - mean(g) - xhat * mean(g * xhat))``; gweight and
        gbias are sums over rows, None when weight is None (no affine).
        """
        d = max(x.shape[1], 1)
        xhat = np.subtract(x, mean[:, None])
        xhat *= invstd[:, None]
        if weight is None:
            g = gy
            gweight = gbias = None
        else:
            g = gy * weight
            gweight = _dot64(gy, xhat, axis=0).astype(x.dtype)
            gbias = _sum64(gy, axis=0).astype(x.dtype)
        mean_g = (_sum64(g, axis=1) / d).astype(x.dtype)
        mean_gxhat = (_dot64(g, xhat, axis=1) / -d).astype(x.dtype)
        gx = xhat
        gx *= mean_gxhat[:, None]
        gx += g
        gx -= mean_g[:, None]
        gx *= invstd[:, None]
        return gx, gweight, gbias

    # -- gradient clipping ----------------------------------------------------
    def sum_squares(self, arrays):
        return float(sum(_sum_squares_one(a) for a in arrays))

    def max_abs(self, arrays):
        # max and -min read the data twice but allocate nothing, which beats
        # np.abs(a).max(); both propagate NaN, and np.max over the per-array
        # results keeps it (Python's max() would not).
        per_array = [max(float(a.max()), -float(a.min())) for a in arrays if a.size]
        return float(np.max(per_array)) if per_array else 0.0

    def scale_(self, x, factor):
        np.multiply(x, float(factor), out=x)

    def clamp_(self, x, lo, hi):
        # np.clip is minimum(maximum(x, lo), hi): NaN stays NaN, and lo > hi gives hi.
        np.clip(x, float(lo), float(hi), out=x)

    def row_norms(self, x):
        return np.sqrt(_dot64(x, x, axis=1)).astype(x.dtype)

    def adaptive_clip_(self, grad, param, clipping, eps):
        grad_norm = np.sqrt(_dot64(grad, grad, axis=1))
        max_norm = float(clipping) * np.maximum(np.sqrt(_dot64(param, param, axis=1)), float(eps))
        # timm keeps a row only where ||g|| < bound, so a NaN norm clips it (to NaN)
        rows = ~(grad_norm < max_norm)
        if rows.any():
            factor = max_norm[rows] / np.maximum(grad_norm[rows], 1e-6)
            grad[rows] *= factor.astype(grad.dtype)[:, None]

    # -- optimizer updates ------------------------------------------------------
    def sgd_step_(
        self,
        param,
        grad,
        momentum_buffer,
        *,
        lr,
        momentum,
        dampening,
        weight_decay,
        nesterov,
        first_step,
    ):
        # The order of operations is torch.optim.SGD's single-tensor path.
        lr, momentum, dampening, weight_decay = (
            float(lr),
            float(momentum),
            float(dampening),
            float(weight_decay),
        )
        d = grad
        if weight_decay != 0.0:
            d = np.multiply(param, weight_decay)
            d += grad
        if momentum != 0.0:
            buf = momentum_buffer
            if first_step:
                np.copyto(buf, d)
            else:
                buf *= momentum
                buf += d if dampening == 0.0 else (1.0 - dampening) * d
            if nesterov:
                step = np.multiply(buf, momentum)
                step += d
            else:
                step = buf
        else:
            step = d
        # a fresh scratch array: step may be grad, which is never written
        update = np.multiply(step, lr)
        param -= update

    def adam_step_(
        self,
        param,
        grad,
        exp_avg,
        exp_avg_sq,
        *,
        step,
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
        decoupled,
    ):
        # torch.optim.Adam/AdamW's single-tensor path, operation for operation.
        lr, beta1, beta2, eps, weight_decay = (
            float(lr),
            float(beta1),
            float(beta2),
            float(eps),
            float(weight_decay),
        )
        g = grad
        if weight_decay != 0.0:
            if decoupled:
                param *= 1.0 - lr * weight_decay
            else:
                g = np.multiply(param, weight_decay)
                g += grad
        # PyTorch forms the first moment as exp_avg.lerp_(g, 1 - beta1), and
        # lerp switches formula at weight 0.5 to stay exact at both ends.
        weight = 1.0 - beta1
        scratch = np.subtract(g, exp_avg)
        if weight < 0.5:
            scratch *= weight
            exp_avg += scratch
        else:
            scratch *= 1.0 - weight
            np.subtract(g, scratch, out=exp_avg)
        # v = beta2 v + (1 - beta2) g^2
        exp_avg_sq *= beta2
        np.multiply(g, g, out=scratch)
        scratch *= 1.0 - beta2
        exp_avg_sq += scratch
        # param -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
        step_size = lr / (1.0 - beta1**step)
        bias_correction2_sqrt = math.sqrt(1.0 - beta2**step)
        denom = np.sqrt(exp_avg_sq, out=scratch)
        denom /= bias_correction2_sqrt
        denom += eps
        np.divide(exp_avg, denom, out=denom)
        denom *= step_size
        param -= denom

    # The group updates check every list first, so a bad entry raises before any
    # parameter changes, then run the one-parameter update on each in order.
    def sgd_step_multi_(
        self,
        params,
        grads,
        momentum_buffers,
        *,
        first_steps,
        lr,
        momentum,
        dampening,
        weight_decay,
        nesterov,
    ):
        op = "sgd_step_multi_"
        arrays = {"grads": grads}
        if float(momentum) != 0.0:
            if momentum_buffers is None:
                raise ValueError(f"{op}: momentum_buffers is None but momentum is {momentum}")
            arrays["momentum_buffers"] = momentum_buffers
        check_update_lists(op, params, arrays, {"first_steps": first_steps})
        buffers = arrays.get("momentum_buffers", [None] * len(params))
        for param, grad, buf, first in zip(params, grads, buffers, first_steps, strict=True):
            self.sgd_step_(
                param,
                grad,
                buf,
                lr=lr,
                momentum=momentum,
                dampening=dampening,
                weight_decay=weight_decay,
                nesterov=nesterov,
                first_step=first,
            )

    def adam_step_multi_(
        self,
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        *,
        steps,
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
        decoupled,
    ):
        arrays = {"grads": grads, "exp_avgs": exp_avgs, "exp_avg_sqs": exp_avg_sqs}
        check_update_lists("adam_step_multi_", params, arrays, {"steps": steps})
        for i, param in enumerate(params):
            self.adam_step_(
                param,
                grads[i],
                exp_avgs[i],
                exp_avg_sqs[i],
                step=steps[i],
                lr=lr,
                beta1=beta1,
                beta2=beta2,
                eps=eps,
                weight_decay=weight_decay,
                decoupled=decoupled,
            )

    # -- statistics ---------------------------------------------------------------
    def tensor_stats(self, x, threshold=np.inf, center=0.0):
        """Summary of x (several NumPy passes; the C kernel makes one).

        ``count`` is every element; ``sum``, ``sumsq``, ``max_abs``, ``n_zero``
        and ``n_above`` see the finite ones only. ``|x - center| > threshold``
        is evaluated in float64.
        """
        flat = x.ravel()
        count = flat.size
        finite_mask = np.isfinite(flat)
        n_finite = int(np.count_nonzero(finite_mask))
        n_nan = int(np.count_nonzero(np.isnan(flat))) if n_finite < count else 0
        n_inf = count - n_finite - n_nan
        finite = flat if n_finite == count else flat[finite_mask]
        if finite.size == 0:
            return TensorStats(count, 0.0, 0.0, 0.0, 0, 0, n_nan, n_inf)
        total = float(_sum64(finite))
        sumsq = _sum_squares_one(finite)
        max_abs = max(float(finite.max()), -float(finite.min()))
        n_zero = int(np.count_nonzero(finite == 0))
        threshold = float(threshold)
        if threshold == math.inf:
            n_above = 0
        else:
            dev = np.subtract(finite, float(center), dtype=_F64)
            np.abs(dev, out=dev)
            n_above = int(np.count_nonzero(dev > threshold))
        return TensorStats(count, total, sumsq, max_abs, n_zero, n_above, n_nan, n_inf)

    def unit_stats(self, out, x, units, threshold=np.inf, center=0.0):
        check_unit_stats_args(out, x, units)
        stats = self.tensor_stats(x, threshold, center)
        out[0] = tuple(stats)
        if stats.n_zero == 0:  # no zero, no dead unit (and an empty x has none)
            return 0
        rows = x.reshape(-1, units)
        return units - int(np.count_nonzero(np.any(rows, axis=0)))

    def unit_stats_multi(self, out, dead, arrays, units, thresholds, centers):
        check_unit_stats_multi_args(out, dead, arrays, units, thresholds, centers)
        for i, a in enumerate(arrays):
            a = np.zeros(0) if a is None else a
            dead[i] = self.unit_stats(out[i : i + 1], a, units[i], thresholds[i], centers[i])

    def histogram_stats(self, out, hist, arrays):
        check_histogram_args(out, hist, arrays)
        bins = hist.shape[1]
        for i, a in enumerate(arrays):
            a = np.zeros(0) if a is None else a
            stats = self.tensor_stats(a)
            out[i] = tuple(stats)
            hist[i] = _bin_counts(a, stats.max_abs, bins)

    def change_stats(self, sums, change, snapshot, arrays, copy):
        check_change_args(sums, change, snapshot, arrays, copy)
        offset = 0
        for i, a in enumerate(arrays):
            flat = a.ravel()  # element by element in C order, whatever the shapes
            part = None if snapshot is None else snapshot.reshape(-1)[offset : offset + a.size]
            offset += a.size
            if sums is not None:
                sums[i] = (float(_sum64(flat)), _sum_squares_one(flat))
            if change is not None:
                diff = np.subtract(flat, part, dtype=_F64)
                change[i] = (float(_sum64(diff)), _sum_squares_one(diff))
            if copy:
                part[...] = flat


def _bin_counts(a: np.ndarray, max_abs: float, bins: int) -> np.ndarray:
    """The finite elements of a in ``bins`` equal bins over [-b, b], as documented
    in ``Backend.histogram_stats``: a position in float64, floored and clamped."""
    values = a.ravel()
    finite = np.isfinite(values)
    if not finite.all():
        values = values[finite]
    bound = max_abs if max_abs > 0 else 1.0
    half = bins / 2.0
    position = np.divide(values, bound, dtype=_F64)
    position *= half
    position += half
    np.floor(position, out=position)
    np.clip(position, 0, bins - 1, out=position)
    return np.bincount(position.astype(np.intp), minlength=bins)
