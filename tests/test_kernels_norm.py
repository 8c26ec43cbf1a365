"""The C batch-norm and layer-norm kernels against the NumPy reference backend.

Tolerances, ``|c - ref| <= rtol * (|ref| + scale)`` (see kernel_checks.close)
with rtol 2e-6 for float32 and 1e-11 for float64 and scale the largest
|ref| of that output:

- The statistics differ in summation order and method (C: batch norm by
  leaves of eight rows in the element type, corrected two-pass, merged in
  double; layer norm's mean by 16-lane sums along a row in double and its
  variance by leaves of eight squares in the element type, summed in
  double; the reference: NumPy's pairwise sums and a two-pass variance in
  double), so mean and invstd agree to an ulp or two of the element type;
  y inherits that. Measured at 1024x1024: float32 invstd within 2 ulp
  (layer norm: 1 ulp, its mean exact), y within 1.5e-7 of the scale, also
  with mean 1e4 and std 1; float64 within 8e-14 relative.
- The backward takes mean and invstd as inputs and does the reference's
  arithmetic step for step; its sums differ in order and in the leaves'
  products and sums in the element type (both norms). Measured: float32
  within 7e-8 of the scale, float64 within 2e-15.

Every instruction-set path and any thread count give the very same bits,
which the forced-ISA and thread tests check exactly.
"""

from __future__ import annotations

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
RTOL = {np.dtype(np.float32): 2e-6, np.dtype(np.float64): 1e-11}
SHAPES = [(0, 5), (5, 0), (1, 1), (1, 7), (2, 3), (3, 17), (15, 16), (17, 33), (64, 129), (257, 65)]
EPS = 1e-5


def _params(rng, c, dtype, affine):
    if not affine:
        return None, None
    return (
        (rng.standard_normal(c) + 1.0).astype(dtype),
        rng.standard_normal(c).astype(dtype),
    )


def _x(rng, shape, dtype, offset=3.0, spread=2.0):
    return (rng.standard_normal(shape) * spread + offset).astype(dtype)


def _check_bn_train(x, w, b, running, what, momentum=0.1):
    dtype = x.dtype
    rtol = RTOL[dtype]
    c = x.shape[1]
    rng = np.random.default_rng(7)
    rm = rng.standard_normal(c).astype(dtype) if running else None
    rv = rng.random(c).astype(dtype) + 0.5 if running else None
    rm_c, rv_c = (rm.copy(), rv.copy()) if running else (None, None)
    x_before = x.copy()
    got = C.batch_norm_forward_train(x, w, b, EPS, rm_c, rv_c, momentum)
    want = REF.batch_norm_forward_train(x, w, b, EPS, rm, rv, momentum)
    assert np.array_equal(x, x_before, equal_nan=True), "input written"
    for name, g, r in zip(("y", "mean", "invstd"), got, want, strict=True):
        close(g, r, rtol, what=f"{what} {name}")
    if running:
        close(rm_c, rm, rtol, what=f"{what} running_mean")
        close(rv_c, rv, rtol, what=f"{what} running_var")
    return got


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_train_and_backward(dtype, shape, affine):
    rng = np.random.default_rng(hash(shape) % 1000)
    x = _x(rng, shape, dtype)
    w, b = _params(rng, shape[1], dtype, affine)
    _, mean, invstd = _check_bn_train(x, w, b, running=affine, what=f"bn {shape}")

    gy = rng.standard_normal(shape).astype(dtype)
    gy_before = gy.copy()
    got = C.batch_norm_backward(gy, x, mean, invstd, w)
    want = REF.batch_norm_backward(gy, x, mean, invstd, w)
    assert np.array_equal(gy, gy_before)
    for name, g, r in zip(("gx", "gweight", "gbias"), got, want, strict=True):
        if r is None:
            assert g is None
        else:
            close(g, r, RTOL[np.dtype(dtype)], what=f"bn backward {shape} {name}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_eval(dtype, shape, affine):
    rng = np.random.default_rng(3)
    x = _x(rng, shape, dtype)
    w, b = _params(rng, shape[1], dtype, affine)
    rm = rng.standard_normal(shape[1]).astype(dtype)
    rv = (rng.random(shape[1]) + 0.1).astype(dtype)
    got = C.batch_norm_forward_eval(x, rm, rv, w, b, EPS)
    want = REF.batch_norm_forward_eval(x, rm, rv, w, b, EPS)
    # the same operations in the same order: equal
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("affine", ["both", "weight", "bias", "none"])
def test_layer_norm(dtype, shape, affine):
    rng = np.random.default_rng(11)
    x = _x(rng, shape, dtype)
    w, b = _params(rng, shape[1], dtype, True)
    w = w if affine in ("both", "weight") else None
    b = b if affine in ("both", "bias") else None
    rtol = RTOL[np.dtype(dtype)]
    got = C.layer_norm_forward(x, w, b, EPS)
    want = REF.layer_norm_forward(x, w, b, EPS)
    for name, g, r in zip(("y", "mean", "invstd"), got, want, strict=True):
        close(g, r, rtol, what=f"ln {shape} {name}")
    _, mean, invstd = want
    gy = rng.standard_normal(shape).astype(dtype)
    got = C.layer_norm_backward(gy, x, mean, invstd, w)
    want = REF.layer_norm_backward(gy, x, mean, invstd, w)
    for name, g, r in zip(("gx", "gweight", "gbias"), got, want, strict=True):
        if r is None:
            assert g is None
        else:
            close(g, r, rtol, what=f"ln backward {shape} {name}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("value", [0.0, 1.0, -7.25, 1e4 + 0.5, 3e30])
def test_constant_columns_stay_finite(dtype, value):
    """A constant column has mean exactly its value and variance 0 in the
    batch norm kernel (a constant leaf's pairwise sum is exact, and so are
    Chan's and Welford's updates with zero deviations; a constant 0 takes the
    slow path, which is exact too), so y is exactly the bias. The
    reference can miss this in float64, where the sum of n copies of a value
    need not be n times it (3e30 gives y of order 1 there)."""
    x = np.full((33, 20), value, dtype)
    x[:, 3] = np.arange(33)  # one column that varies
    w, b = _params(np.random.default_rng(0), 20, dtype, True)
    rm, rv = np.zeros(20, dtype), np.ones(20, dtype)
    y, mean, invstd = C.batch_norm_forward_train(x, w, b, EPS, rm, rv, 0.1)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(rv))
    constant = np.arange(20) != 3
    np.testing.assert_array_equal(y[:, constant], np.broadcast_to(b[constant], (33, 19)))
    np.testing.assert_array_equal(mean[constant], dtype(value))
    np.testing.assert_array_equal(invstd[constant], dtype(1 / np.sqrt(EPS)))
    y_ref, _, _ = REF.batch_norm_forward_train(x, w, b, EPS)
    close(y[:, 3], y_ref[:, 3], RTOL[np.dtype(dtype)])
    # Layer norm's mean is the reference's sum / d, exact for these values
    # except 19 * 3e30 in float64: there both give finite noise of order 1.
    # Where the mean is exact, y is exactly 0.
    rows = np.ascontiguousarray(x[:, constant])
    y, mean, invstd = C.layer_norm_forward(rows, None, None, EPS)
    assert np.all(np.isfinite(y))
    if np.all(mean == rows[:, 0]):
        assert np.all(y == 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("magnitude", [1e-30, 1e-3, 1e3, 1e18])
def test_huge_and_tiny_magnitudes(dtype, magnitude):
    rng = np.random.default_rng(5)
    x = _x(rng, (40, 24), dtype, offset=0.5, spread=1.0) * dtype(magnitude)
    w, b = _params(rng, 24, dtype, True)
    _check_bn_train(x, w, b, running=True, what=f"magnitude {magnitude}")
    rtol = RTOL[np.dtype(dtype)]
    for g, r in zip(
        C.layer_norm_forward(x, w, b, EPS), REF.layer_norm_forward(x, w, b, EPS), strict=True
    ):
        close(g, r, rtol, what=f"ln magnitude {magnitude}")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the reference overflows
def test_batch_norm_leaves_out_of_float_range_take_the_double_path():
    """Batch norm sums leaves of eight rows in the element type; channels where
    that overflows (squares above ~1.8e19, sums above ~4e37) or underflows (a
    variance of 1e-50, which float32 squares flush to 0) are redone in double,
    and agree with the reference, which works in float64 throughout. eps = 0
    so that the tiny variance is what invstd shows."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((96, 8)).astype(np.float32)  # whole leaves only
    x[:, 0] *= np.float32(1e20)  # squares overflow
    x[:, 1] = np.float32(1e38) + x[:, 1] * np.float32(1e36)  # sums overflow
    x[:, 2] *= np.float32(1e-25)  # squares underflow: variance 1e-50
    x[:, 3] = np.float32(1e-25)  # a tiny constant channel
    x[:, 4] = 0.0  # a dead unit
    x[:, 5] = np.float32(-7.25)  # constant, taken on the fast path
    x[:, 7] = np.float32(1e-30) * np.where(np.arange(96) % 2 == 0, 1, -1)  # mean 0, squares 0
    w, b = _params(rng, 8, np.float32, True)
    for eps in (0.0, EPS):
        y, mean, invstd = C.batch_norm_forward_train(x, w, b, eps)
        y_ref, mean_ref, invstd_ref = REF.batch_norm_forward_train(x, w, b, eps)
        varying = [0, 1, 2, 6, 7]
        close(mean, mean_ref, 2e-6, what=f"mean, eps {eps}")
        close(invstd[varying], invstd_ref[varying], 2e-6, what=f"invstd, eps {eps}")
        close(y[:, varying], y_ref[:, varying], 2e-6, what=f"y, eps {eps}")
        if eps == 0.0:
            assert invstd[2] > 1e24 and invstd[7] > 1e29  # 1 / sqrt(var), not 1 / sqrt(0)
            assert np.all(np.isinf(invstd[3:6]))  # variance exactly 0
    # The backward's products overflow float32 for gy of 1e38 in channel 0.
    gy = rng.standard_normal((96, 8)).astype(np.float32)
    gy[:, 0] *= np.float32(1e38)
    mean, invstd = mean_ref, invstd_ref
    got = C.batch_norm_backward(gy, x, mean, invstd, w)
    want = REF.batch_norm_backward(gy, x, mean, invstd, w)
    for name, g, r in zip(("gx", "gweight", "gbias"), got, want, strict=True):
        close(g[..., [0, 1, 2, 6]], r[..., [0, 1, 2, 6]], 2e-6, what=f"backward {name}")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the reference overflows
def test_layer_norm_variance_leaves_out_of_float_range_take_the_double_path():
    """Layer norm squares deviations in the element type, by leaves of eight
    (rows of 300: two whole chunks of 128 and a tail); rows where that
    overflows (deviations of 1e20) or underflows (a variance of 1e-50) are
    summed again in double and agree with the reference, float64 throughout.
    eps = 0 so that the tiny variance is what invstd shows."""
    rng = np.random.default_rng(13)
    x = rng.standard_normal((6, 300)).astype(np.float32)
    x[0] *= np.float32(1e20)  # squares overflow
    x[1] *= np.float32(1e-25)  # squares underflow: variance 1e-50
    x[2] = np.float32(-7.25)  # constant: variance exactly 0, fast path
    x[3] = 0.0  # a zero row: variance exactly 0, by the double path
    x[4] = np.float32(1e-30) * np.where(np.arange(300) % 2 == 0, 1, -1)  # mean 0, squares 0
    w, b = _params(rng, 300, np.float32, True)
    for eps in (0.0, EPS):
        y, mean, invstd = C.layer_norm_forward(x, w, b, eps)
        y_ref, mean_ref, invstd_ref = REF.layer_norm_forward(x, w, b, eps)
        varying = [0, 1, 4, 5]
        close(mean, mean_ref, 2e-6, what=f"mean, eps {eps}")
        close(invstd[varying], invstd_ref[varying], 2e-6, what=f"invstd, eps {eps}")
        close(y[varying], y_ref[varying], 2e-6, what=f"y, eps {eps}")
        if eps == 0.0:
            assert invstd[1] > 1e24 and invstd[4] > 1e29  # 1 / sqrt(var), not 1 / sqrt(0)
            assert np.all(np.isinf(invstd[2:4]))  # variance exactly 0


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the reference overflows
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_backward_leaves_that_overflow_take_the_double_path(affine):
    """Layer norm's backward sums leaves in the element type; a block of rows
    where one overflows (gy of 1e38: products and sums beyond float32) is
    redone in double and agrees with the reference. Rows 70-79 are in the
    second block of 64, which alone takes the slow path."""
    rng = np.random.default_rng(12)
    x = _x(rng, (150, 300), np.float32)
    gy = rng.standard_normal((150, 300)).astype(np.float32)
    gy[70:80] *= np.float32(1e38)
    w, b = _params(rng, 300, np.float32, affine)
    _, mean, invstd = REF.layer_norm_forward(x, w, b, EPS)
    got = C.layer_norm_backward(gy, x, mean, invstd, w)
    want = REF.layer_norm_backward(gy, x, mean, invstd, w)
    close(got[0][:64], want[0][:64], 2e-6, what="gx, first block")
    close(got[0][64:], want[0][64:], 2e-6, what="gx, the block that overflows")
    if affine:
        for name, g, r in zip(("gweight", "gbias"), got[1:], want[1:], strict=True):
            close(g, r, 2e-6, what=name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_non_finite_values_propagate(dtype):
    rng = np.random.default_rng(9)
    x = _x(rng, (19, 18), dtype)
    x[4, 2] = np.nan
    x[7, 5] = np.inf
    x[0, 9] = -np.inf
    x[3, 11] = np.inf
    x[8, 11] = -np.inf
    w, b = _params(rng, 18, dtype, True)
    y, mean, invstd = C.batch_norm_forward_train(x, w, b, EPS)
    y_ref, mean_ref, invstd_ref = REF.batch_norm_forward_train(x, w, b, EPS)
    bad = [2, 5, 9, 11]
    good = [j for j in range(18) if j not in bad]
    assert np.all(np.isnan(y[:, bad])) and np.all(np.isnan(y_ref[:, bad]))
    assert np.all(np.isnan(invstd[bad])) and np.all(np.isnan(invstd_ref[bad]))
    close(y[:, good], y_ref[:, good], RTOL[np.dtype(dtype)], what="finite columns")
    close(mean, mean_ref, RTOL[np.dtype(dtype)], what="mean with non-finite columns")
    y, mean, invstd = C.layer_norm_forward(x, w, b, EPS)
    y_ref, mean_ref, invstd_ref = REF.layer_norm_forward(x, w, b, EPS)
    assert np.array_equal(np.isnan(y), np.isnan(y_ref))
    close(mean, mean_ref, RTOL[np.dtype(dtype)], what="ln mean non-finite")


def test_non_contiguous_inputs_and_running_stats():
    rng = np.random.default_rng(2)
    x = _x(rng, (30, 40), np.float32).T  # (40, 30), Fortran order
    w, b = _params(rng, 30, np.float32, True)
    store = rng.random((30, 2)).astype(np.float32)
    rm_c, rv_c = store[:, 0].copy(), store[:, 1].copy()
    rm_view, rv_view = store[:, 0], store[:, 1]  # strided
    got = C.batch_norm_forward_train(x, w, b, EPS, rm_view, rv_view, 0.2)
    want = REF.batch_norm_forward_train(x, w, b, EPS, rm_c, rv_c, 0.2)
    for g, r in zip(got, want, strict=True):
        close(g, r, 2e-6)
    close(store[:, 0], rm_c, 2e-6)
    close(store[:, 1], rv_c, 2e-6)
    for g, r in zip(
        C.layer_norm_forward(x, w, b, EPS), REF.layer_norm_forward(x, w, b, EPS), strict=True
    ):
        close(g, r, 2e-6)


def test_bad_input_names_op_and_argument():
    x = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="batch_norm_forward_train: weight"):
        C.batch_norm_forward_train(x, np.ones(4, np.float32), None, EPS)
    with pytest.raises(ValueError, match="layer_norm_forward: bias"):
        C.layer_norm_forward(x, None, np.ones(4, np.float32), EPS)
    with pytest.raises(ValueError, match="batch_norm_backward: gy"):
        C.batch_norm_backward(np.ones((3, 3), np.float32), x, x[0], x[0], None)
    frozen = np.zeros(3, np.float32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="running_mean is read-only"):
        C.batch_norm_forward_train(x, None, None, EPS, frozen, None)


# -- every thread count and instruction set computes the same bits ---------------


def isa_outputs() -> dict:
    """Every kernel's outputs on fixed inputs, large enough to use threads."""
    rng = np.random.default_rng(2024)
    out = {}
    for dtype in DTYPES:
        key = np.dtype(dtype).name
        for shape in [(2053, 1031), (7, 13)]:  # the first is above the threading threshold
            x = _x(rng, shape, dtype)
            gy = rng.standard_normal(shape).astype(dtype)
            w, b = _params(rng, shape[1], dtype, True)
            rm, rv = np.zeros(shape[1], dtype), np.ones(shape[1], dtype)
            tag = f"{key}_{shape[0]}x{shape[1]}"
            y, mean, invstd = C.batch_norm_forward_train(x, w, b, EPS, rm, rv, 0.1)
            out.update({f"bn_y_{tag}": y, f"bn_mean_{tag}": mean, f"bn_invstd_{tag}": invstd})
            out.update({f"bn_rm_{tag}": rm, f"bn_rv_{tag}": rv})
            for i, g in enumerate(C.batch_norm_backward(gy, x, mean, invstd, w)):
                out[f"bn_grad{i}_{tag}"] = g
            out[f"bn_eval_{tag}"] = C.batch_norm_forward_eval(x, rm, rv, w, b, EPS)
            y, mean, invstd = C.layer_norm_forward(x, w, b, EPS)
            out.update({f"ln_y_{tag}": y, f"ln_mean_{tag}": mean, f"ln_invstd_{tag}": invstd})
            for i, g in enumerate(C.layer_norm_backward(gy, x, mean, invstd, w)):
                out[f"ln_grad{i}_{tag}"] = g
    return out


def test_threads_give_identical_bits():
    assert_thread_counts_agree(C, isa_outputs)


@pytest.mark.parametrize("isa", SIMD_LEVELS)
def test_forced_isa_gives_identical_bits(isa, tmp_path):
    assert_forced_isa_agrees("test_kernels_norm", isa_outputs, isa, SIMD_LEVELS, tmp_path)
