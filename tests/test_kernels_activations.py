"""The C activation kernels against the NumPy reference backend.

Every activation, forward and backward, float32 and float64, is run through
``CBackend`` and ``NumpyBackend`` on the same inputs. Tolerances:

- relu and leaky_relu, forward and backward: exactly equal (selects and one
  multiply; there is nothing to round differently).
- sigmoid, tanh, gelu: ``|c - ref| <= rtol * |ref| + atol`` with rtol 1e-6
  for float32 and 1e-13 for float64 (the two sides use different exp, tanh
  and erfc implementations, each good to a few ulp). atol is the smallest
  normal number, plus, for the GELU derivatives, whose two terms cancel near
  x = -0.75, rtol times their size (rtol * |gy| * (1 + x^2)). The reference
  for the tanh-form GELU is ``AccurateReference`` below: NumPy's 1 + tanh(u)
  cancels in the left tail, where the kernels keep full relative accuracy.

Accuracy over the whole range: sigmoid, tanh and the tanh-form GELU (forward
and backward) against float64 (for float32) or long double (for float64)
evaluations, on every exponent from the smallest subnormal to the largest
finite number with several mantissas each, both signs, a dense sweep of the
range where the functions bend, and the special values; the exact GELU
(forward and backward) likewise against mpmath, on a dense grid over
[-40, 10], random points and bit patterns, every exponent and the special
values; on every SIMD path (the forced-ISA children). The bounds are those
stated in csrc/activations.c: relative error 1e-6 (float32) and 1e-13
(float64) where the result is normal, one subnormal ulp where it is
subnormal (for the exact GELU, the larger of that and the relative bound).

The extension must be built (``pip install -e .``); set MINIGRAD_ALLOW_NO_C=1
to skip this file instead where no compiler is available.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import numpy as np
import pytest

if os.environ.get("MINIGRAD_ALLOW_NO_C") == "1":
    pytest.importorskip("minigrad._C", reason="C extension not built (MINIGRAD_ALLOW_NO_C=1)")

from minigrad._C import ffi, lib

from minigrad.backend.c import CBackend
from minigrad.backend.numpy import NumpyBackend

C = CBackend()
REF = NumpyBackend()

DTYPES = [np.float32, np.float64]
RTOL = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-13}
# Above THREADED_N the kernels split the work across OpenMP threads
# (MG_PARALLEL_MIN in kernel_common.h); the odd size gives uneven shares.
THREADED_N = (1 << 21) + 13
SIZES = [0, 1, 2, 3, 7, 8, 15, 16, 17, 31, 33, 63, 64, 65, 127, 1000, 1 << 17, THREADED_N]
SIMD_LEVELS = ["generic", "avx2", "avx512"]


def _extended(dtype):
    """A type precise enough to judge dtype's kernels: float64 for float32,
    long double (64-bit mantissa on x86-64) for float64."""
    return np.float64 if np.dtype(dtype) == np.float32 else np.longdouble


def _plain(*arrays) -> bool:
    """True for native float32/float64 ndarrays of one dtype, what C takes."""
    first = arrays[0]
    return first.dtype in (np.float32, np.float64) and all(
        type(a) is np.ndarray and a.dtype == first.dtype for a in arrays
    )


GELU_BETA = 0.79788456080286535588  # sqrt(2 / pi), the literal the C uses
GELU_KAPPA = 0.044715


def gelu_tanh_parts(x: np.ndarray, *, clamp_above: bool):
    """The tanh-form GELU of x as (xc, s, s_minus, du) in extended precision.

    xc, u and u' = du are rounded in x's dtype exactly as the kernels (and
    PyTorch) compute them, operation for operation; from there on, s =
    sigmoid(2u) and its complement 1 - s = sigmoid(-2u) are evaluated in the
    extended type. The forward clamps x at -1e4, the backward at +-1e4.
    """
    t = x.dtype.type
    xc = np.clip(x, t(-1e4), t(1e4) if clamp_above else None)
    with np.errstate(over="ignore", invalid="ignore"):
        u = t(GELU_BETA) * (xc + t(GELU_KAPPA) * (xc * xc * xc))
        du = t(GELU_BETA) * (t(1) + t(3 * GELU_KAPPA) * (xc * xc))
    ext = _extended(x.dtype)
    u2 = 2 * u.astype(ext)
    with np.errstate(over="ignore"):
        e = np.exp(-np.abs(u2))
    w = 1 / (1 + e)
    s = np.where(u2 >= 0, w, e * w)
    s_minus = np.where(u2 >= 0, e * w, w)
    return xc.astype(ext), s, s_minus, du.astype(ext)


def gelu_tanh_reference(x: np.ndarray) -> np.ndarray:
    xc, s, _, _ = gelu_tanh_parts(x, clamp_above=False)
    return xc * s


def gelu_tanh_grad_reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """gelu'(x) = s + 2 x s (1 - s) u', and the size of its two terms."""
    xc, s, s_minus, du = gelu_tanh_parts(x, clamp_above=True)
    right = 2 * xc * (s * s_minus) * du
    return s + right, np.abs(s) + np.abs(right)


class AccurateReference(NumpyBackend):
    """NumPy's reference, but the tanh-form GELU in extended precision.

    NumPy's x / 2 * (1 + tanh(u)) cancels for x << 0 (1 + tanh(u) rounds to
    0 at x = -5 in float32), where the kernels, using sigmoid(2u), stay
    accurate; comparing them there would need a tolerance of rtol * |x|.
    The backward, of the tanh form and of the exact form in float32,
    multiplies gy by the slope rounded to the element type, as those
    kernels do, where NumPy forms the product in float64: the two differ
    where the slope rounds to 0 and gy is infinite (0 * inf is NaN).
    Anything C does not take goes to NumPy's own code.
    """

    def gelu_forward(self, x, approximate="none"):
        if approximate != "tanh" or not _plain(x):
            return super().gelu_forward(x, approximate)
        return gelu_tanh_reference(x).astype(x.dtype)

    def gelu_backward(self, gy, x, approximate="none"):
        if not _plain(gy, x):
            return super().gelu_backward(gy, x, approximate)
        if approximate == "tanh":
            slope = gelu_tanh_grad_reference(x)[0].astype(x.dtype)
        elif approximate == "none" and x.dtype == np.float32:
            # NumPy's float64 slope, rounded to float32 (gy = 1 is exact).
            slope = super().gelu_backward(np.ones_like(x), x, approximate)
        else:
            return super().gelu_backward(gy, x, approximate)
        # Rounded before the multiply by gy, as in C: a slope that is 0 in
        # the element type times an infinite gy is NaN on both sides.
        with np.errstate(invalid="ignore"):
            return slope * gy


# Values are judged against this; behaviour (errors, fallbacks) against REF.
VALUE_REF = AccurateReference()


def _no_scale(gy, x):
    return 0.0


class Op(NamedTuple):
    """One activation as the tests drive it.

    ``backward(backend, gy, x, y)`` gets both the forward's input and output
    and passes the backend whichever of them it saves.
    """

    name: str
    forward: Callable
    backward: Callable
    exact: bool = False
    # (gy, x) -> the size of terms that cancel; rtol times it joins the bound.
    forward_scale: Callable = _no_scale
    backward_scale: Callable = _no_scale


def _gelu_grad_scale(gy, x):
    # Capped so that gy = 0 at x = inf gives 0, not 0 * inf = NaN.
    with np.errstate(over="ignore"):
        x_sq = np.minimum(np.square(x.astype(np.float64)), 1e300)
    return np.abs(gy) * (1.0 + x_sq)


OPS = [
    Op(
        "relu",
        lambda b, x: b.relu_forward(x),
        lambda b, gy, x, y: b.relu_backward(gy, y),
        exact=True,
    ),
    Op(
        "leaky_relu",
        lambda b, x: b.leaky_relu_forward(x, 0.01),
        lambda b, gy, x, y: b.leaky_relu_backward(gy, x, 0.01),
        exact=True,
    ),
    Op(
        "sigmoid",
        lambda b, x: b.sigmoid_forward(x),
        lambda b, gy, x, y: b.sigmoid_backward(gy, y),
    ),
    Op(
        "tanh",
        lambda b, x: b.tanh_forward(x),
        lambda b, gy, x, y: b.tanh_backward(gy, y),
    ),
    Op(
        "gelu",
        lambda b, x: b.gelu_forward(x, "none"),
        lambda b, gy, x, y: b.gelu_backward(gy, x, "none"),
        backward_scale=_gelu_grad_scale,
    ),
    Op(
        "gelu_tanh",
        lambda b, x: b.gelu_forward(x, "tanh"),
        lambda b, gy, x, y: b.gelu_backward(gy, x, "tanh"),
        backward_scale=_gelu_grad_scale,
    ),
]
OP_IDS = [op.name for op in OPS]


def special_values(dtype) -> np.ndarray:
    """Zeros, infinities, NaN, subnormals, large and moderate magnitudes."""
    info = np.finfo(dtype)
    smallest_subnormal = info.smallest_subnormal
    magnitudes = [
        0.0,
        smallest_subnormal,
        info.tiny / 4,
        info.tiny,
        1e-30,
        1e-8,
        0.5,
        0.7518,  # -0.7518 is near the zero of gelu'
        1.0,
        3.0,
        10.0,
        30.0,
        39.5,
        100.0,
        1e4,
        1e20,
        np.inf,
    ]
    values = [m for v in magnitudes for m in (v, -v)] + [np.nan]
    return np.array(values, dtype=dtype)


# -- comparison ------------------------------------------------------------------


def assert_matches(got, want, *, exact: bool, rtol: float, scale=0.0, what: str = ""):
    """got == want exactly, or within rtol * (|want| + scale) + tiny; NaN where NaN."""
    assert isinstance(got, np.ndarray), f"{what}: C returned {type(got).__name__}"
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    if exact:
        np.testing.assert_array_equal(got, want, err_msg=what, strict=True)
        return
    nan_got, nan_want = np.isnan(got), np.isnan(want)
    assert np.array_equal(nan_got, nan_want), (
        f"{what}: NaN at {np.argwhere(nan_got != nan_want)[:5].tolist()} on one side only"
    )
    g = got.astype(np.float64)[~nan_want]
    w = want.astype(np.float64)[~nan_want]
    s = np.broadcast_to(np.asarray(scale, dtype=np.float64), want.shape)[~nan_want]
    infinite = np.isinf(w) | np.isinf(g)
    assert np.array_equal(g[infinite], w[infinite]), f"{what}: infinities differ"
    g, w, s = g[~infinite], w[~infinite], s[~infinite]
    with np.errstate(invalid="ignore", over="ignore"):
        bound = rtol * (np.abs(w) + s) + np.finfo(want.dtype).tiny
    err = np.abs(g - w)
    bad = ~(err <= bound)
    if bad.any():
        i = int(np.argmax(np.where(bad, err / bound, 0)))
        pytest.fail(
            f"{what}: {int(bad.sum())} element(s) off; worst got {g[i]!r}, "
            f"want {w[i]!r}, |diff| {err[i]:.3g} > bound {bound[i]:.3g}"
        )


def check_op(op: Op, x: np.ndarray, gy: np.ndarray, what: str = "") -> None:
    """Forward and backward of op on C and the reference: equal, and inputs untouched."""
    rtol = RTOL[x.dtype]
    y_ref = op.forward(VALUE_REF, x)
    gx_ref = op.backward(VALUE_REF, gy, x, y_ref)

    # Both backends get the reference's y, so only the backward is compared.
    before = {"x": x.copy(), "gy": gy.copy(), "y": y_ref.copy()}
    y_c = op.forward(C, x)
    gx_c = op.backward(C, gy, x, y_ref)
    for name, after in (("x", x), ("gy", gy), ("y", y_ref)):
        assert before[name].tobytes() == after.tobytes(), f"{op.name}: C wrote its input {name}"

    assert_matches(
        y_c,
        y_ref,
        exact=op.exact,
        rtol=rtol,
        scale=op.forward_scale(gy, x),
        what=f"{op.name}_forward {what}",
    )
    assert_matches(
        gx_c,
        gx_ref,
        exact=op.exact,
        rtol=rtol,
        scale=op.backward_scale(gy, x),
        what=f"{op.name}_backward {what}",
    )


# -- values ------------------------------------------------------------------------


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_sizes(op, dtype, n):
    # Every length around the 4-, 8- and 16-lane vector widths exercises the
    # scalar tails; THREADED_N runs on several threads.
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 4).astype(dtype)
    gy = rng.standard_normal(n).astype(dtype)
    check_op(op, x, gy, what=f"n={n}")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_special_values(op, dtype):
    # Every special x against every special gy, so that e.g. an infinite
    # gradient meeting a dead ReLU unit is covered.
    special = special_values(dtype)
    x, gy = (a.ravel() for a in np.meshgrid(special, special, indexing="ij"))
    with np.errstate(all="ignore"):
        check_op(op, x, gy)


@pytest.mark.parametrize("slope", [0.0, 0.2, -0.5, 1.5, 1e-30])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_leaky_relu_slopes(dtype, slope):
    special = special_values(dtype)
    x = np.concatenate([special, np.linspace(-3, 3, 101, dtype=dtype)])
    gy = np.resize(special[::-1], x.shape)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(
            C.leaky_relu_forward(x, slope), REF.leaky_relu_forward(x, slope), strict=True
        )
        np.testing.assert_array_equal(
            C.leaky_relu_backward(gy, x, slope), REF.leaky_relu_backward(gy, x, slope), strict=True
        )


def _ulps(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Distance in units of the last place of want (subnormals count as tiny)."""
    spacing = np.spacing(np.maximum(np.abs(want), np.finfo(want.dtype).tiny))
    return np.abs(got.astype(np.float64) - want.astype(np.float64)) / spacing


# The exact GELU's float tail ratio is left unrepaired (vmath.h says why):
# measured within 6 ulp on 8.4 million points, against 4 for sigmoid and tanh.
FLOAT32_ULPS = {"sigmoid": 4, "tanh": 4, "gelu": 6}


@pytest.mark.parametrize("op", ["sigmoid", "tanh", "gelu"])
def test_float32_within_a_few_ulp_of_float64(op):
    # The float64 kernels agree with the reference to ~1e-13 (above), so
    # rounding their result gives float32's correct answer to judge with.
    x64 = np.concatenate([np.linspace(-20, 20, 40001), special_values(np.float64)[2:-3]])
    x32 = x64.astype(np.float32)
    forward = {
        "sigmoid": C.sigmoid_forward,
        "tanh": C.tanh_forward,
        "gelu": C.gelu_forward,
    }[op]
    want = forward(x32.astype(np.float64)).astype(np.float32)
    got = forward(x32)
    assert _ulps(got, want).max() <= FLOAT32_ULPS[op]


def test_gelu_float64_left_tail_against_mpmath():
    # The far left tail is where erfc(-x / sqrt(2)) loses accuracy unless the
    # argument's rounding error is carried; check it to a few ulp.
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    x = -np.geomspace(1.0, 37.0, 200)  # beyond -37.5, gelu(x) is subnormal
    want = np.array(
        [float(mpmath.mpf(v) * mpmath.erfc(-mpmath.mpf(v) / mpmath.sqrt(2)) / 2) for v in x]
    )
    slope = np.array(
        [
            float(
                mpmath.erfc(-mpmath.mpf(v) / mpmath.sqrt(2)) / 2
                + mpmath.mpf(v) * mpmath.npdf(mpmath.mpf(v))
            )
            for v in x
        ]
    )
    assert _ulps(C.gelu_forward(x), want).max() <= 4
    assert _ulps(C.gelu_backward(np.ones_like(x), x), slope).max() <= 8


# -- accuracy over the whole range ------------------------------------------------


def accuracy_sweep(dtype) -> np.ndarray:
    """x over the whole range of dtype, both signs, and the special values.

    Every binary exponent from the smallest subnormal to the largest finite
    number with eight mantissas each, plus uniform samples where the
    functions bend (sigmoid underflows near -104 in float32 and -745 in
    float64; the tanh-form GELU near -10 and -22) and near 0, where tanh
    switches between its small and large forms.
    """
    info = np.finfo(dtype)
    exponents = np.arange(info.minexp - info.nmant, info.maxexp)
    mantissas = np.array([1.0, 1.1, 1.25, 1.375, 1.5, 1.618, 1.75, 2.0 - 2.0**-info.nmant])
    with np.errstate(over="ignore"):
        grid = np.ldexp(mantissas[None, :], exponents[:, None]).ravel().astype(dtype)
    grid = grid[np.isfinite(grid)]
    rng = np.random.default_rng(2024)
    reach = 110.0 if dtype == np.float32 else 760.0
    dense = np.concatenate(
        [
            rng.uniform(-reach, reach, 40000),
            rng.uniform(-25.0, 25.0, 40000),
            rng.uniform(-1.5, 1.5, 40000),
        ]
    ).astype(dtype)
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, info.max, -info.max]
    return np.concatenate([grid, -grid, dense, np.array(special, dtype=dtype)])


def _sigmoid_reference(x):
    xe = x.astype(_extended(x.dtype))
    e = np.exp(-np.abs(xe))
    want = np.where(xe >= 0, 1, e) / (1 + e)
    return want, np.abs(want)


def _tanh_reference(x):
    want = np.tanh(x.astype(_extended(x.dtype)))
    return want, np.abs(want)


def _gelu_tanh_forward_reference(x):
    want = gelu_tanh_reference(x)
    return want, np.abs(want)


def gelu_erf_sweep(dtype) -> np.ndarray:
    """x for the exact GELU: a dense grid over [-40, 10], where Phi goes from
    below the subnormals to 1, random points there and random bit patterns
    (any finite value), every binary exponent with three mantissas, both
    signs, and the special values. For float32, whose kernels work in float
    on [-15, 15] (the limits beyond), a denser grid there and a denser one
    still over [-14.6, -9], where the results go subnormal and then to 0.
    Smaller than ``accuracy_sweep``: each point costs an mpmath erfc."""
    info = np.finfo(dtype)
    rng = np.random.default_rng(1234)
    uint = np.uint32 if np.dtype(dtype) == np.float32 else np.uint64
    bits = rng.integers(0, np.iinfo(uint).max, 2000, dtype=uint, endpoint=True).view(dtype)
    exponents = np.arange(info.minexp - info.nmant, info.maxexp)
    mantissas = np.array([1.0, 1.375, 2.0 - 2.0**-info.nmant])
    with np.errstate(over="ignore"):
        grid = np.ldexp(mantissas[None, :], exponents[:, None]).ravel().astype(dtype)
    grid = grid[np.isfinite(grid)]
    t = np.dtype(dtype).type
    # 39: where the kernels clamp x; 37.5: near where float64's gelu turns subnormal.
    special = [0.0, np.inf, info.max, info.tiny, info.smallest_subnormal, 0.7518, 37.5, 39.0]
    special = np.array([*special, np.nextafter(t(39), t(40)), 39.5], dtype=dtype)
    float_path = []
    if np.dtype(dtype) == np.float32:
        # 15: where the float kernels clamp x.
        limit = np.array([15.0, np.nextafter(t(15), t(16)), 14.36, 14.54], dtype=dtype)
        float_path = [
            np.linspace(-15.0, 15.0, 12001).astype(dtype),
            np.linspace(-14.6, -9.0, 5601).astype(dtype),
            limit,
            -limit,
        ]
    return np.concatenate(
        [
            *float_path,
            np.linspace(-40.0, 10.0, 20001).astype(dtype),
            rng.uniform(-40.0, 10.0, 8000).astype(dtype),
            bits[np.isfinite(bits)],
            grid,
            -grid,
            special,
            -special,
            np.array([np.nan], dtype=dtype),
        ]
    )


# x -> (gelu(x), gelu'(x), |Phi(x)| + |x phi(x)|) as mpmath numbers, and
# whole sweeps -> their arrays: a sweep is judged on the best path and again
# on every forced one.
_GELU_ERF_EXACT: dict = {}
_GELU_ERF_PARTS: dict = {}


def _gelu_erf_exact(v: float):
    mpmath = pytest.importorskip("mpmath")
    if v not in _GELU_ERF_EXACT:
        x = mpmath.mpf(v)
        if v > 40:  # Phi(x) = 1 - Phi(-x) with Phi(-x) < 1e-348: y = x, y' = 1
            out = (x, mpmath.mpf(1), mpmath.mpf(1))
        elif v < -40:  # |y| and |y'| below 1e-345, far under any subnormal
            out = (mpmath.mpf(0), mpmath.mpf(0), mpmath.mpf(0))
        else:
            with mpmath.workdps(30):
                cdf = mpmath.erfc(-x / mpmath.sqrt(2)) / 2
                x_pdf = x * mpmath.npdf(x)
                out = (x * cdf, cdf + x_pdf, cdf + abs(x_pdf))
        _GELU_ERF_EXACT[v] = out
    return _GELU_ERF_EXACT[v]


def _from_mpf(values, dtype) -> np.ndarray:
    """mpmath numbers as dtype's extended type, rounded once (long double
    through a two-double split of the mantissa, scaled back exactly)."""
    ext = _extended(dtype)
    if ext == np.float64:
        return np.array([float(v) for v in values], dtype=np.float64)
    import mpmath

    out = np.empty(len(values), dtype=ext)
    for i, v in enumerate(values):
        mantissa, exponent = mpmath.frexp(v)
        hi = float(mantissa)
        lo = float(mantissa - hi)
        out[i] = np.ldexp(ext(hi) + ext(lo), int(exponent))
    return out


def _gelu_erf_parts(x: np.ndarray):
    """(gelu, gelu', |Phi| + |x phi|: the size of gelu''s two terms) of x in
    extended precision; NaN where x is NaN, and the limits at +-inf."""
    key = (x.dtype.str, x.tobytes())
    if key not in _GELU_ERF_PARTS:
        _GELU_ERF_PARTS[key] = _gelu_erf_parts_uncached(x)
    return _GELU_ERF_PARTS[key]


def _gelu_erf_parts_uncached(x: np.ndarray):
    finite = np.isfinite(x)
    exact = [_gelu_erf_exact(float(v)) for v in x[finite]]
    ext = _extended(x.dtype)
    parts = []
    for k in range(3):
        out = np.full(x.shape, np.nan, dtype=ext)
        out[finite] = _from_mpf([e[k] for e in exact], x.dtype)
        parts.append(out)
    y, slope, size = parts
    y[x == np.inf], y[x == -np.inf] = np.inf, 0.0
    slope[x == np.inf], slope[x == -np.inf] = 1.0, 0.0
    size[np.isinf(x)] = slope[np.isinf(x)]
    return y, slope, size


def _gelu_erf_forward_reference(x):
    y, _, _ = _gelu_erf_parts(x)
    return y, np.abs(y)


def _gelu_erf_grad_reference(x):
    _, slope, size = _gelu_erf_parts(x)
    return slope, size


class Accuracy(NamedTuple):
    """A kernel judged over the whole range.

    ``reference(x)`` gives the wanted values in extended precision and the
    size each error is relative to: |want|, or for the GELU slopes the size
    of their two terms, which cancel near x = -0.75. ``sweep(dtype)`` gives
    the x.
    """

    name: str
    kernel: Callable
    reference: Callable
    sweep: Callable = accuracy_sweep
    relative_in_subnormals: bool = False


ACCURACY = [
    Accuracy("sigmoid", lambda x: C.sigmoid_forward(x), _sigmoid_reference),
    Accuracy("tanh", lambda x: C.tanh_forward(x), _tanh_reference),
    Accuracy("gelu_tanh", lambda x: C.gelu_forward(x, "tanh"), _gelu_tanh_forward_reference),
    Accuracy(
        "gelu_tanh_grad",
        lambda x: C.gelu_backward(np.ones_like(x), x, "tanh"),
        gelu_tanh_grad_reference,
    ),
    Accuracy(
        "gelu",
        lambda x: C.gelu_forward(x),
        _gelu_erf_forward_reference,
        gelu_erf_sweep,
        relative_in_subnormals=True,
    ),
    Accuracy(
        "gelu_grad",
        lambda x: C.gelu_backward(np.ones_like(x), x),
        _gelu_erf_grad_reference,
        gelu_erf_sweep,
        relative_in_subnormals=True,
    ),
]


def assert_accurate(got, want, size, *, what: str, relative_in_subnormals=False) -> None:
    """Relative error <= RTOL where the result is normal, else <= 1 subnormal ulp.

    With ``relative_in_subnormals``, a subnormal result may also be off by up
    to RTOL times its size, as a normal one may: for a function computed to
    a few ulp, that is more than one subnormal ulp just below the smallest
    normal number. NaN exactly where want is NaN, infinities exactly equal.
    """
    dtype = got.dtype
    info = np.finfo(dtype)
    rtol = RTOL[dtype]
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan), f"{what}: NaN where the reference has none"
    g = got[~nan].astype(want.dtype)
    w, size = want[~nan], size[~nan]
    infinite = np.isinf(w)
    assert np.array_equal(g[infinite], w[infinite]), f"{what}: infinities differ"
    g, w, size = g[~infinite], w[~infinite], size[~infinite]
    x_err = np.abs(g - w)
    size = np.maximum(size, np.abs(w))
    normal = size >= info.tiny
    rel = x_err[normal] / size[normal]
    if rel.size:
        i = int(np.argmax(rel))
        assert rel[i] <= rtol, (
            f"{what}: relative error {float(rel[i]):.3g} > {rtol:g}: "
            f"got {g[normal][i]!r}, want {w[normal][i]!r}"
        )
    tiny_err = x_err[~normal]
    tiny_bound = np.full(tiny_err.shape, info.smallest_subnormal, dtype=want.dtype)
    if relative_in_subnormals:
        tiny_bound = np.maximum(tiny_bound, rtol * size[~normal])
    if tiny_err.size:
        i = int(np.argmax(tiny_err / tiny_bound))
        assert tiny_err[i] <= tiny_bound[i], (
            f"{what}: error {float(tiny_err[i]):.3g} in the subnormals, above "
            f"{float(tiny_bound[i]):.3g}: got {g[~normal][i]!r}, want {w[~normal][i]!r}"
        )


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("acc", ACCURACY, ids=[a.name for a in ACCURACY])
def test_accuracy_whole_range(acc, dtype):
    if dtype == np.float64 and np.finfo(np.longdouble).nmant < 63:
        pytest.skip("long double is not the x87 80-bit type here; no float64 reference")
    x = acc.sweep(dtype)
    with np.errstate(all="ignore"):
        got = acc.kernel(x)
        want, size = acc.reference(x)
    assert_accurate(
        got,
        want,
        size,
        what=f"{acc.name} {np.dtype(dtype).name}",
        relative_in_subnormals=acc.relative_in_subnormals,
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_exact_values(dtype):
    info = np.finfo(dtype)
    t = np.dtype(dtype).type
    inf = np.array([-np.inf, np.inf], dtype=dtype)
    np.testing.assert_array_equal(C.sigmoid_forward(inf), [0.0, 1.0])
    np.testing.assert_array_equal(C.tanh_forward(inf), [-1.0, 1.0])
    # tanh(x) = x for |x| below sqrt(3 eps): the odd polynomial, no cancellation.
    tiny = np.array([info.smallest_subnormal, info.tiny, 1e-30, 1e-20], dtype=dtype)
    tiny = np.concatenate([tiny, -tiny])
    np.testing.assert_array_equal(C.tanh_forward(tiny), tiny)
    zeros = np.array([0.0, -0.0], dtype=dtype)
    assert list(np.signbit(C.tanh_forward(zeros))) == [False, True]
    np.testing.assert_array_equal(C.sigmoid_forward(zeros), [0.5, 0.5])
    nan = np.array([np.nan], dtype=dtype)
    for kernel in (C.sigmoid_forward, C.tanh_forward, lambda x: C.gelu_forward(x, "tanh")):
        assert np.isnan(kernel(nan)).all()
    # Far left tail of sigmoid: relative accuracy down to the normal range,
    # then the subnormals, then exactly 0; no overflow anywhere.
    if dtype == np.float32:
        x = np.array([-80.0, -87.0, -100.0, -103.0, -104.0, -200.0], dtype=dtype)
    else:
        x = np.array([-700.0, -708.0, -720.0, -744.0, -746.0, -1e300], dtype=dtype)
    want, _ = _sigmoid_reference(x)
    got = C.sigmoid_forward(x)
    assert got[-1] == 0 and got[-2] == 0 and (got[:-2] > 0).all()
    assert_accurate(got, want, np.abs(want), what="sigmoid tail")
    big = np.array([info.max, -info.max], dtype=dtype)
    with np.errstate(all="raise"):  # NumPy-side checks only; C raises no flags to NumPy
        np.testing.assert_array_equal(C.sigmoid_forward(big), [t(1), t(0)])
        np.testing.assert_array_equal(C.tanh_forward(big), [t(1), t(-1)])


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_gelu_exact_limits(dtype):
    info = np.finfo(dtype)
    x = np.array([-np.inf, np.inf, -info.max, info.max, -0.0, 0.0, np.nan], dtype=dtype)
    y = C.gelu_forward(x)
    slope = C.gelu_backward(np.ones_like(x), x)
    np.testing.assert_array_equal(y[:6], [0.0, np.inf, 0.0, info.max, 0.0, 0.0])
    np.testing.assert_array_equal(slope[:6], [0.0, 1.0, 0.0, 1.0, 0.5, 0.5])
    assert np.isnan(y[6]) and np.isnan(slope[6])
    assert list(np.signbit(y[4:6])) == [True, False]  # gelu(-0) = -0
    # The left tail underflows through the subnormals to -0, never to NaN.
    start, stop = (-13.0, -16.0) if dtype == np.float32 else (-37.0, -40.0)
    tail = np.linspace(start, stop, 3001, dtype=dtype)
    for got in (C.gelu_forward(tail), C.gelu_backward(np.ones_like(tail), tail)):
        assert (got <= 0).all() and (np.diff(got) >= 0).all()  # no NaN; rises to -0
        assert got[0] < -info.tiny and got[-1] == 0 and np.signbit(got[-1])
        assert ((got > -info.tiny) & (got < 0)).any()  # passes through the subnormals


def test_extended_references_against_mpmath():
    # The whole-range tests trust NumPy's float64 and long double exp and
    # tanh; check those against 40 digits on points across the range.
    mpmath = pytest.importorskip("mpmath")
    if np.finfo(np.longdouble).nmant < 63:
        pytest.skip("long double is not the x87 80-bit type here")
    mpmath.mp.dps = 40
    x = np.concatenate([-np.geomspace(1e-30, 740, 150), np.geomspace(1e-30, 30, 100)])
    sig, _ = _sigmoid_reference(x)
    tanh, _ = _tanh_reference(x)

    def exact(v):  # mpmath takes no long double; its mantissa and exponent exactly
        mantissa, exponent = np.frexp(np.longdouble(v))
        return mpmath.ldexp(int(np.ldexp(mantissa, 64)), int(exponent) - 64)

    for i, v in enumerate(x):
        mv = mpmath.mpf(float(v))
        want_sig = 1 / (1 + mpmath.exp(-mv))
        want_tanh = mpmath.tanh(mv)
        assert abs(exact(sig[i]) - want_sig) <= 1e-17 * abs(want_sig), v
        assert abs(exact(tanh[i]) - want_tanh) <= 1e-17 * abs(want_tanh), v


# -- layouts -----------------------------------------------------------------------


def _unaligned(a: np.ndarray) -> np.ndarray:
    """A copy of a whose data starts one byte past an aligned address."""
    raw = np.zeros(a.nbytes + 1, dtype=np.uint8)
    out = np.frombuffer(raw.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned
    return out


def _read_only(a: np.ndarray) -> np.ndarray:
    out = a.copy()
    out.flags.writeable = False
    return out


LAYOUTS = {
    "2d": lambda a: a.reshape(37, 53),
    "fortran": lambda a: np.asfortranarray(a.reshape(37, 53)),
    "transposed": lambda a: a.reshape(53, 37).T,
    "strided": lambda a: np.tile(a.reshape(37, 53), (2, 3))[::2, ::3],
    "reversed_3d": lambda a: a.reshape(37, 53, 1)[::-1, :, :],
    "unaligned": lambda a: _unaligned(a.reshape(37, 53)),
    "read_only": lambda a: _read_only(a.reshape(37, 53)),
    "0d": lambda a: a[:1].reshape(()),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_layouts(op, dtype, layout):
    # gy arrives in another memory order than x, as it may in a graph.
    rng = np.random.default_rng(7)
    x_flat = (rng.standard_normal(37 * 53) * 4).astype(dtype)
    gy_flat = rng.standard_normal(37 * 53).astype(dtype)
    x = LAYOUTS[layout](x_flat)
    gy = gy_flat[: x.size].reshape(x.shape, order="C" if x.flags.f_contiguous else "F")
    check_op(op, x, gy, what=layout)
    # A contiguous copy must give the very same bits.
    np.testing.assert_array_equal(op.forward(C, x), op.forward(C, np.ascontiguousarray(x)))
    out = op.forward(C, x)
    assert out.flags.c_contiguous and out.flags.writeable


# -- bad input -----------------------------------------------------------------------


BACKWARDS = [
    ("relu_backward", lambda b, gy, s: b.relu_backward(gy, s), "y"),
    ("leaky_relu_backward", lambda b, gy, s: b.leaky_relu_backward(gy, s, 0.01), "x"),
    ("sigmoid_backward", lambda b, gy, s: b.sigmoid_backward(gy, s), "y"),
    ("tanh_backward", lambda b, gy, s: b.tanh_backward(gy, s), "y"),
    ("gelu_backward", lambda b, gy, s: b.gelu_backward(gy, s), "x"),
    ("gelu_backward", lambda b, gy, s: b.gelu_backward(gy, s, "tanh"), "x"),
]


@pytest.mark.parametrize("name, backward, saved", BACKWARDS)
@pytest.mark.parametrize("gy_shape, saved_shape", [((3,), (4,)), ((2, 3), (3,)), ((6,), (2, 3))])
def test_backward_shape_mismatch(name, backward, saved, gy_shape, saved_shape):
    gy = np.ones(gy_shape, np.float32)
    s = np.ones(saved_shape, np.float32)
    with pytest.raises(ValueError, match=name) as info:
        backward(C, gy, s)
    message = str(info.value)
    assert str(gy_shape) in message and str(saved_shape) in message and saved in message


@pytest.mark.parametrize("bad", ["exact", "", None, 1])
def test_gelu_unknown_approximate(bad):
    x = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="approximate"):
        C.gelu_forward(x, bad)
    with pytest.raises(ValueError, match="approximate"):
        C.gelu_backward(x, x, bad)


def _outcome(fn):
    """What fn() did: ("ok", result) or ("raised", exception type)."""
    try:
        with np.errstate(all="ignore"):
            return "ok", fn()
    except Exception as exc:
        return "raised", type(exc)


OTHER_DTYPES = {
    "float16": lambda a: a.astype(np.float16),
    "int32": lambda a: a.astype(np.int32),
    "big_endian": lambda a: a.astype(">f4"),
    "object": lambda a: a.astype(object),
}


@pytest.mark.parametrize("kind", list(OTHER_DTYPES))
@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_other_dtypes_behave_like_reference(op, kind):
    # C takes only native float32/float64; anything else is the reference's.
    x = OTHER_DTYPES[kind](np.linspace(-3, 3, 11))
    gy = OTHER_DTYPES[kind](np.linspace(1, 2, 11))
    calls = {
        "forward": lambda b: op.forward(b, x),
        "backward": lambda b: op.backward(b, gy, x, x),
    }
    for direction, run in calls.items():
        got, want = _outcome(partial(run, C)), _outcome(partial(run, REF))
        assert got[0] == want[0], f"{op.name} {direction} {kind}: C {got}, reference {want}"
        if got[0] == "ok":
            np.testing.assert_array_equal(got[1], want[1], strict=True)
        else:
            assert got[1] is want[1]


NOT_PLAIN_ARRAYS = {
    "masked": lambda a: np.ma.masked_array(a, mask=np.arange(a.size) % 3 == 0),
    "scalar": lambda a: a[4],
    "list": lambda a: a.tolist(),
}


@pytest.mark.parametrize("kind", list(NOT_PLAIN_ARRAYS))
@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_non_arrays_behave_like_reference(op, kind):
    # Only plain ndarrays reach C; the rest get exactly the reference's answer.
    x = NOT_PLAIN_ARRAYS[kind](np.linspace(-3, 3, 11, dtype=np.float32))
    gy = NOT_PLAIN_ARRAYS[kind](np.linspace(1, 2, 11, dtype=np.float32))
    calls = {
        "forward": lambda b: op.forward(b, x),
        "backward": lambda b: op.backward(b, gy, x, x),
    }
    for direction, run in calls.items():
        got, want = _outcome(partial(run, C)), _outcome(partial(run, REF))
        assert got[0] == want[0], f"{op.name} {direction} {kind}: C {got}, reference {want}"
        if got[0] == "ok":
            assert type(got[1]) is type(want[1])
            np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_mixed_dtypes_behave_like_reference(op):
    x = np.linspace(-3, 3, 11, dtype=np.float32)
    gy = np.linspace(1, 2, 11, dtype=np.float64)
    got = _outcome(lambda: op.backward(C, gy, x, x))
    want = _outcome(lambda: op.backward(REF, gy, x, x))
    assert got[0] == want[0]
    if got[0] == "ok":
        np.testing.assert_array_equal(got[1], want[1], strict=True)


# -- run time: threads, build info, instruction sets -------------------------------------


@pytest.fixture
def restore_threads():
    before = lib.mg_get_num_threads()
    yield
    lib.mg_set_num_threads(before)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_thread_count_does_not_change_results(op, dtype, restore_threads):
    # Sizes just above the parallel threshold and odd, so shares are uneven.
    n = THREADED_N
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(n) * 4).astype(dtype)
    gy = rng.standard_normal(n).astype(dtype)
    results = []
    for threads in (1, 2, 3):
        C.set_num_threads(threads)
        results.append((op.forward(C, x), op.backward(C, gy, x, x)))
    for forward, backward in results[1:]:
        np.testing.assert_array_equal(forward, results[0][0], strict=True)
        np.testing.assert_array_equal(backward, results[0][1], strict=True)


def test_set_num_threads(restore_threads):
    C.set_num_threads(3)
    assert lib.mg_get_num_threads() == (3 if lib.mg_has_openmp() else 1)
    lib.mg_set_num_threads(0)  # the C side clamps instead of trusting its caller
    assert lib.mg_get_num_threads() == 1


def test_build_info():
    info = C.build_info()
    assert set(info) == {
        "compiler_flags",
        "openmp",
        "simd_level",
        "cpu_supports",
        "thread_backoffs",
    }
    assert info["thread_backoffs"] == lib.mg_thread_backoffs() >= 0
    flags = info["compiler_flags"].split()
    assert "-O3" in flags and "-fno-math-errno" in flags
    assert "-ffast-math" not in flags and "-march=native" not in flags
    assert info["openmp"] is bool(lib.mg_has_openmp())
    assert info["openmp"] == ("-fopenmp" in flags)
    assert info["simd_level"] == SIMD_LEVELS[lib.mg_simd_level()]
    assert isinstance(info["cpu_supports"], list)
    assert set(info["cpu_supports"]) <= {
        "avx2",
        "fma",
        "avx512f",
        "avx512dq",
        "avx512vl",
        "avx512bw",
    }


def _cpu_simd_level() -> int:
    have = set(C.build_info()["cpu_supports"])
    if {"avx512f", "avx512dq", "avx512vl", "avx512bw"} <= have:
        return 2
    if {"avx2", "fma"} <= have:
        return 1
    return 0


def test_simd_level_is_the_best_the_cpu_has_unless_forced_lower():
    expected = _cpu_simd_level()
    forced = os.environ.get("MINIGRAD_FORCE_ISA")
    if forced in SIMD_LEVELS:  # forcing can lower the level, never raise it
        expected = min(expected, SIMD_LEVELS.index(forced))
    assert lib.mg_simd_level() == expected
    assert ffi.string(lib.mg_simd_name()).decode() == SIMD_LEVELS[expected]


# Run in a child with MINIGRAD_FORCE_ISA set: applies every op in OPS of
# this file (imported from argv[3]) to the arrays in the .npz named by
# argv[1], and every kernel in ACCURACY to the whole-range sweeps, saves the
# results to argv[2] and prints the SIMD level it ran.
_CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    sys.path.insert(0, sys.argv[3])
    from minigrad._C import lib
    from test_kernels_activations import ACCURACY, C, OPS

    inputs = np.load(sys.argv[1])
    out = {}
    for op in OPS:
        for key in ("f32", "f64"):
            x, gy = inputs["x_" + key], inputs["gy_" + key]
            y = inputs[op.name + "_y_" + key]
            with np.errstate(all="ignore"):
                out[op.name + "_forward_" + key] = op.forward(C, x)
                out[op.name + "_backward_" + key] = op.backward(C, gy, x, y)
    for acc in ACCURACY:
        for key in ("f32", "f64"):
            with np.errstate(all="ignore"):
                x = inputs["sweep_" + acc.name + "_" + key]
                out["accuracy_" + acc.name + "_" + key] = acc.kernel(x)
    np.savez(sys.argv[2], **out)
    print(lib.mg_simd_level())
    """
)


def _isa_inputs() -> dict:
    """Inputs for the child, and the reference forward of each op on them."""
    rng = np.random.default_rng(11)
    arrays = {}
    for key, dtype in (("f32", np.float32), ("f64", np.float64)):
        # 1000 + 35 elements: whole vectors plus a tail for every width.
        x = np.concatenate([(rng.standard_normal(1000) * 4).astype(dtype), special_values(dtype)])
        arrays["x_" + key] = x
        arrays["gy_" + key] = rng.permutation(x)
        for op in OPS:
            with np.errstate(all="ignore"):
                arrays[op.name + "_y_" + key] = op.forward(VALUE_REF, x)
        for acc in ACCURACY:
            arrays["sweep_" + acc.name + "_" + key] = acc.sweep(dtype)
    return arrays


def _run_child(tmp_path, inputs: dict, force: str | None) -> tuple[int, dict, str]:
    in_path, out_path = tmp_path / "in.npz", tmp_path / "out.npz"
    np.savez(in_path, **inputs)
    env = dict(os.environ)
    env.pop("MINIGRAD_FORCE_ISA", None)
    if force is not None:
        env["MINIGRAD_FORCE_ISA"] = force
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(in_path), str(out_path), tests_dir],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    with np.load(out_path) as results:
        return int(proc.stdout.split()[-1]), dict(results), proc.stderr


@pytest.fixture(scope="module")
def isa_inputs():
    return _isa_inputs()


@pytest.fixture(scope="module")
def best_path_results(tmp_path_factory, isa_inputs):
    return _run_child(tmp_path_factory.mktemp("best"), isa_inputs, None)


@pytest.mark.parametrize("isa", SIMD_LEVELS)
def test_force_isa_selects_path(isa, tmp_path, isa_inputs, best_path_results):
    level = SIMD_LEVELS.index(isa)
    if level > _cpu_simd_level():
        pytest.skip(f"this CPU has no {isa}")
    got_level, results, _ = _run_child(tmp_path, isa_inputs, isa)
    assert got_level == level

    for op in OPS:
        for key in ("f32", "f64"):
            x, gy = isa_inputs["x_" + key], isa_inputs["gy_" + key]
            y = isa_inputs[op.name + "_y_" + key]
            with np.errstate(all="ignore"):
                gx_ref = op.backward(VALUE_REF, gy, x, y)
            rtol = RTOL[x.dtype]
            what = f"{op.name} {key} on {isa}"
            assert_matches(
                results[op.name + "_forward_" + key],
                y,
                exact=op.exact,
                rtol=rtol,
                scale=op.forward_scale(gy, x),
                what=what,
            )
            assert_matches(
                results[op.name + "_backward_" + key],
                gx_ref,
                exact=op.exact,
                rtol=rtol,
                scale=op.backward_scale(gy, x),
                what=what,
            )

    # The whole-range accuracy bounds hold on this path too.
    for acc in ACCURACY:
        for key in ("f32", "f64"):
            x = isa_inputs["sweep_" + acc.name + "_" + key]
            assert_accurate(
                results["accuracy_" + acc.name + "_" + key],
                *acc.reference(x),
                what=f"{acc.name} {key} on {isa}",
                relative_in_subnormals=acc.relative_in_subnormals,
            )

    # No -ffast-math and no FMA contraction the code did not ask for: every
    # path rounds identically, so the forced path reproduces the best path bit
    # for bit. The exception: the exp-based results of a path with FMA and of
    # one without (the generic path), which may differ by an ulp or so; each
    # is held to the references above instead.
    best_level, best, _ = best_path_results
    assert best_level == _cpu_simd_level()
    one_fuses = (level == 0) != (best_level == 0)
    for name, want in best.items():
        if one_fuses and (name in FUSED_RESULTS or name.rsplit("_", 1)[0] in FUSED_RESULTS):
            continue
        np.testing.assert_array_equal(results[name], want, err_msg=f"{name} on {isa}", strict=True)


# The results computed with vmath.h's exp, which fuses its multiply-adds on
# the instruction sets with FMA (named as the child names them, less the
# dtype, or with it where only one dtype fuses: the exact GELU's float path).
FUSED_RESULTS = {
    "sigmoid_forward",
    "tanh_forward",
    "gelu_tanh_forward",
    "gelu_tanh_backward",
    "accuracy_sigmoid",
    "accuracy_tanh",
    "accuracy_gelu_tanh",
    "accuracy_gelu_tanh_grad",
    "gelu_forward_f32",
    "gelu_backward_f32",
    "accuracy_gelu_f32",
    "accuracy_gelu_grad_f32",
}


def test_force_isa_cannot_raise_or_be_misspelled(tmp_path, isa_inputs):
    got_level, _, stderr = _run_child(tmp_path, isa_inputs, "avx1024")
    assert got_level == _cpu_simd_level()
    assert "MINIGRAD_FORCE_ISA" in stderr
    if _cpu_simd_level() < 2:
        got_level, _, _ = _run_child(tmp_path, isa_inputs, "avx512")
        assert got_level == _cpu_simd_level()
