"""The C clipping, optimizer-update and tensor-statistics kernels against the
NumPy reference backend.

Tolerances:

- scale_, clamp_, sgd_step_, adam_step_: exactly equal. The kernels do the
  reference's operations in the same order in the element type, with the
  hyperparameters rounded the same way, and IEEE rounds them identically.
- sum_squares, row_norms, adaptive_clip_, tensor_stats sums: the float64
  sums are formed in another order (16 lanes over fixed chunks against
  NumPy's pairwise sums), so ``|c - ref| <= 1e-12 * (|ref| + scale)`` with
  scale the sum of the magnitudes summed (measured below 1e-15); a
  norm rounded to float32 may differ by one ulp (rtol 1.2e-7), and AGC's
  factor with it.
- max_abs and the tensor_stats counts: exactly equal.

Every instruction set and any thread count give the very same bits, which the
forced-ISA and thread tests check exactly.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

if os.environ.get("MINIGRAD_ALLOW_NO_C") == "1":
    pytest.importorskip("minigrad._C", reason="C extension not built (MINIGRAD_ALLOW_NO_C=1)")

from kernel_checks import (
    SIMD_LEVELS,
    assert_forced_isa_agrees,
    assert_thread_counts_agree,
    close,
)

from minigrad.backend.c import CBackend
from minigrad.backend.numpy import NumpyBackend

C = CBackend()
REF = NumpyBackend()
DTYPES = [np.float32, np.float64]
SIZES = [0, 1, 7, 15, 16, 17, 31, 33, 1000, (1 << 15) + 3, (1 << 21) + 5]
ULP_RTOL = {np.dtype(np.float32): 1.2e-7, np.dtype(np.float64): 1e-15}


def _special(dtype, n, rng, kind):
    x = (rng.standard_normal(n) * 2).astype(dtype)
    if kind == "nan" and n:
        x[n // 2] = np.nan
    elif kind == "inf" and n:
        x[n // 3] = np.inf
        x[-1] = -np.inf
    elif kind == "tiny" and n:
        x *= dtype(np.finfo(dtype).tiny)  # subnormals
        x[0] = -0.0
    elif kind == "huge" and n:
        with np.errstate(over="ignore"):  # a few overflow to inf, on purpose
            x *= dtype(np.finfo(dtype).max / 8)
    return x


KINDS = ["plain", "nan", "inf", "tiny", "huge"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_sum_squares_and_max_abs_over_a_list(dtype, kind):
    rng = np.random.default_rng(1)
    arrays = [_special(dtype, n, rng, kind).reshape(-1, 1) for n in SIZES]
    got, want = C.sum_squares(arrays), REF.sum_squares(arrays)
    scale = want if math.isfinite(want) else 0.0
    close(np.float64(got), np.float64(want), 1e-12, scale=scale, what="sum_squares")
    got, want = C.max_abs(arrays), REF.max_abs(arrays)
    assert got == want or (math.isnan(got) and math.isnan(want))
    assert C.sum_squares([]) == 0.0 and C.max_abs([]) == 0.0
    assert C.max_abs([np.zeros(0, dtype)]) == 0.0


def test_lists_mixing_dtypes_and_layouts():
    rng = np.random.default_rng(2)
    arrays = [
        rng.standard_normal((30, 20)).astype(np.float32).T,
        rng.standard_normal(17),
        np.float32(3.0) * np.ones((), np.float32),
    ]
    close(np.float64(C.sum_squares(arrays)), np.float64(REF.sum_squares(arrays)), 1e-12)
    assert C.max_abs(arrays) == REF.max_abs(arrays)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_scale_and_clamp_in_place(dtype, n):
    rng = np.random.default_rng(n)
    for kind in KINDS:
        x = _special(dtype, n, rng, kind)
        for factor in (0.37, 0.0, -2.5, math.nan, math.inf):
            a, b = x.copy(), x.copy()
            with np.errstate(all="ignore"):
                C.scale_(a, factor)
                REF.scale_(b, factor)
            np.testing.assert_array_equal(a, b)
        for lo, hi in ((-0.5, 0.5), (0.0, 0.0), (1.0, -1.0), (-math.inf, 0.1), (-0.0, 0.0)):
            a, b = x.copy(), x.copy()
            C.clamp_(a, lo, hi)
            REF.clamp_(b, lo, hi)
            np.testing.assert_array_equal(a, b)
            assert np.array_equal(np.signbit(a), np.signbit(b))


def test_strided_in_place_targets_fall_back():
    x = np.arange(20, dtype=np.float32).reshape(4, 5)
    view = x[:, ::2]
    C.scale_(view, 2.0)
    C.clamp_(view, 0.0, 10.0)
    want = np.arange(20, dtype=np.float32).reshape(4, 5)
    want[:, ::2] = np.clip(want[:, ::2] * 2, 0, 10)
    np.testing.assert_array_equal(x, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (1, 1), (5, 17), (64, 33), (300, 257)], ids=str)
@pytest.mark.parametrize("kind", KINDS)
def test_row_norms_and_adaptive_clip(dtype, shape, kind):
    rng = np.random.default_rng(3)
    n = shape[0] * shape[1]
    grad = _special(dtype, n, rng, kind).reshape(shape)
    param = (rng.standard_normal(shape) * 0.1).astype(dtype)
    if shape[0] > 2:
        param[1] = 0  # eps takes over
        grad[2] *= dtype(1e-3)  # kept
    rtol = ULP_RTOL[np.dtype(dtype)]
    with np.errstate(all="ignore"):
        close(C.row_norms(grad), REF.row_norms(grad), rtol, scale=0.0, what="row_norms")
        param_before = param.copy()
        for clipping in (0.01, 1.0, 100.0):
            a, b = grad.copy(), grad.copy()
            C.adaptive_clip_(a, param, clipping, 1e-3)
            REF.adaptive_clip_(b, param, clipping, 1e-3)
            close(a, b, 2 * rtol, scale=0.0, what=f"adaptive_clip {clipping}")
        np.testing.assert_array_equal(param, param_before)


SGD_CASES = [
    dict(momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False),
    dict(momentum=0.0, dampening=0.0, weight_decay=1e-2, nesterov=False),
    dict(momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=False),
    dict(momentum=0.9, dampening=0.1, weight_decay=5e-4, nesterov=False),
    dict(momentum=0.9, dampening=0.0, weight_decay=5e-4, nesterov=True),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("case", range(len(SGD_CASES)))
def test_sgd_step_is_exact(dtype, n, case):
    kw = SGD_CASES[case]
    rng = np.random.default_rng(n + case)
    start = rng.standard_normal(n).astype(dtype)
    params = [start, start.copy()]
    bufs = [np.empty(n, dtype), np.empty(n, dtype)] if kw["momentum"] else [None, None]
    for step in range(3):
        grad = _special(dtype, n, rng, "plain" if step < 2 else "nan")
        grad_before = grad.copy()
        for which, backend in enumerate((C, REF)):
            backend.sgd_step_(params[which], grad, bufs[which], lr=0.1, first_step=step == 0, **kw)
        np.testing.assert_array_equal(grad, grad_before)
        np.testing.assert_array_equal(params[0], params[1])
        if kw["momentum"]:
            np.testing.assert_array_equal(bufs[0], bufs[1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize(
    "decoupled, weight_decay, beta1", [(False, 0.0, 0.9), (False, 1e-2, 0.9), (True, 1e-2, 0.3)]
)
def test_adam_step_is_exact(dtype, n, decoupled, weight_decay, beta1):
    rng = np.random.default_rng(n)
    start = rng.standard_normal(n).astype(dtype)
    params = [start, start.copy()]
    m = [np.zeros(n, dtype), np.zeros(n, dtype)]
    v = [np.zeros(n, dtype), np.zeros(n, dtype)]
    for step in range(1, 4):
        grad = _special(dtype, n, rng, ["plain", "tiny", "inf"][step - 1])
        grad_before = grad.copy()
        for which, backend in enumerate((C, REF)):
            with np.errstate(all="ignore"):
                backend.adam_step_(
                    params[which],
                    grad,
                    m[which],
                    v[which],
                    step=step,
                    lr=1e-3,
                    beta1=beta1,
                    beta2=0.999,
                    eps=1e-8,
                    weight_decay=weight_decay,
                    decoupled=decoupled,
                )
        np.testing.assert_array_equal(grad, grad_before)
        for got, want in ((params[0], params[1]), (m[0], m[1]), (v[0], v[1])):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("kind", KINDS)
def test_tensor_stats(dtype, n, kind):
    rng = np.random.default_rng(n)
    x = _special(dtype, n, rng, kind)
    if n > 4:
        x[1] = 0.0
        x[3] = -0.0
    for threshold, center in ((np.inf, 0.0), (1.5, 0.0), (0.49, 0.5), (0.0, -1.0)):
        with np.errstate(all="ignore"):
            got = C.tensor_stats(x, threshold, center)
            want = REF.tensor_stats(x, threshold, center)
        assert (got.count, got.n_zero, got.n_above, got.n_nan, got.n_inf) == (
            want.count,
            want.n_zero,
            want.n_above,
            want.n_nan,
            want.n_inf,
        )
        assert got.max_abs == want.max_abs
        magnitude = want.sumsq**0.5 * max(n, 1) ** 0.5
        close(np.float64(got.sum), np.float64(want.sum), 1e-12, scale=magnitude)
        close(np.float64(got.sumsq), np.float64(want.sumsq), 1e-12)


# -- every thread count and instruction set computes the same bits ---------------


def isa_outputs() -> dict:
    rng = np.random.default_rng(77)
    out = {}
    for dtype in DTYPES:
        key = np.dtype(dtype).name
        # the two large buffers are above the size where kernels use threads
        arrays = [_special(dtype, n, rng, "plain") for n in (5, 1 << 21, (1 << 21) + 9)]
        out[f"sumsq_{key}"] = np.float64(C.sum_squares(arrays))
        out[f"maxabs_{key}"] = np.float64(C.max_abs(arrays))
        big = arrays[1].reshape(4096, 512)
        out[f"rownorms_{key}"] = C.row_norms(big)
        g = big.copy()
        C.adaptive_clip_(g, np.full_like(g, 0.01), 0.5, 1e-3)
        out[f"agc_{key}"] = g
        stats = C.tensor_stats(arrays[1], 1.0, 0.25)
        out[f"stats_{key}"] = np.array([float(v) for v in stats])
        p, buf = arrays[2].copy(), np.empty_like(arrays[2])
        for step in range(2):
            C.sgd_step_(
                p,
                arrays[2],
                buf,
                lr=0.1,
                momentum=0.9,
                dampening=0.0,
                weight_decay=1e-4,
                nesterov=True,
                first_step=step == 0,
            )
        out[f"sgd_{key}"] = p
        p, m, v = arrays[1].copy(), np.zeros_like(arrays[1]), np.zeros_like(arrays[1])
        for step in (1, 2):
            C.adam_step_(
                p,
                arrays[1],
                m,
                v,
                step=step,
                lr=1e-3,
                beta1=0.9,
                beta2=0.999,
                eps=1e-8,
                weight_decay=1e-2,
                decoupled=True,
            )
        out[f"adam_{key}"] = p
        c = arrays[1].copy()
        C.clamp_(c, -0.5, 0.5)
        C.scale_(c, 0.3)
        out[f"clamp_scale_{key}"] = c
    return out


def test_threads_give_identical_bits():
    assert_thread_counts_agree(C, isa_outputs)


@pytest.mark.parametrize("isa", SIMD_LEVELS)
def test_forced_isa_gives_identical_bits(isa, tmp_path):
    assert_forced_isa_agrees("test_kernels_clip_optim", isa_outputs, isa, SIMD_LEVELS, tmp_path)
