"""The NumPy reference backend against independent oracles.

The reference is what the C kernels are checked against, so it is checked
here against something else: PyTorch (its functional ops, autograd and
optimizers) when installed, float64 finite differences, Python's math module,
40-digit mpmath where float64 itself is not a good enough oracle, and plain
float64 NumPy formulas for the matrix product.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigrad.backend import numpy as numpy_backend
from minigrad.backend.base import TensorStats
from minigrad.backend.numpy import NumpyBackend

B = NumpyBackend()
DTYPES = [np.float32, np.float64]
# Agreement with an oracle that computes in the same precision (e.g. PyTorch
# in float32): a few ulp of rounding-order differences, scaled up for sums.
TOL = {
    np.float32: {"rtol": 2e-5, "atol": 2e-6},
    np.float64: {"rtol": 1e-12, "atol": 1e-13},
}
FD_TOL = {"rtol": 1e-6, "atol": 1e-7}  # float64 central differences, h = 1e-6


def _rng(seed=0):
    return np.random.default_rng(seed)


def _randn(rng, shape, dtype, scale=1.0, shift=0.0):
    return (rng.standard_normal(shape) * scale + shift).astype(dtype)


def _unchanged(before, after):
    assert np.array_equal(before, after, equal_nan=True), "an input the API does not write changed"


def _t(a):
    """A torch tensor holding a copy of a (so torch never sees our buffers)."""
    import torch

    return torch.from_numpy(np.array(a, copy=True))


def _allclose(actual, expected, dtype, **tol):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), **(tol or TOL[dtype]))


def _central_difference(loss, arr, h=1e-6):
    """d loss / d arr by central differences, perturbing arr in place."""
    grad = np.zeros_like(arr)
    for idx in np.ndindex(arr.shape):
        saved = arr[idx]
        arr[idx] = saved + h
        up = loss()
        arr[idx] = saved - h
        down = loss()
        arr[idx] = saved
        grad[idx] = (up - down) / (2 * h)
    return grad


# --------------------------------------------------------------------------- gemm

GEMM_SHAPES = [
    (3, 4, 5),
    (1, 1, 1),
    (0, 3, 4),
    (3, 0, 4),
    (3, 4, 0),
    (1, 7, 1),
    (5, 1, 6),
    (17, 33, 9),
]


def _gemm_operands(rng, m, k, n, trans_a, trans_b, dtype):
    a = _randn(rng, (k, m) if trans_a else (m, k), dtype)
    b = _randn(rng, (n, k) if trans_b else (k, n), dtype)
    return a, b


def _gemm_reference(a, b, trans_a, trans_b, alpha, beta, out, bias):
    a64 = a.astype(np.float64)
    b64 = b.astype(np.float64)
    ref = alpha * np.matmul(a64.T if trans_a else a64, b64.T if trans_b else b64)
    if out is not None:
        ref += beta * out.astype(np.float64)
    if bias is not None:
        ref += bias.astype(np.float64)
    return ref


def _gemm_tol(dtype, k):
    # Each output is a length-K dot product of N(0, 1) values.
    if dtype == np.float32:
        return {"rtol": 1e-5, "atol": 1e-6 * (k + 1)}
    return {"rtol": 1e-13, "atol": 1e-14 * (k + 1)}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", GEMM_SHAPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize(
    ("alpha", "beta", "with_out", "with_bias"),
    [
        (1.0, 0.0, False, False),
        (2.5, 0.0, False, True),
        (1.0, 0.0, True, False),
        (-0.5, 1.0, True, False),
        (1.0, 0.75, True, True),
        (0.0, 2.0, True, False),
    ],
)
def test_gemm_matches_float64_matmul(
    dtype, shape, trans_a, trans_b, alpha, beta, with_out, with_bias
):
    m, k, n = shape
    rng = _rng(m * 100 + k * 10 + n)
    a, b = _gemm_operands(rng, m, k, n, trans_a, trans_b, dtype)
    out = _randn(rng, (m, n), dtype) if with_out else None
    bias = _randn(rng, (n,), dtype) if with_bias else None
    a0, b0 = a.copy(), b.copy()
    bias0 = None if bias is None else bias.copy()
    out0 = None if out is None else out.copy()

    res = B.gemm(a, b, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta, out=out, bias=bias)

    expected = _gemm_reference(a0, b0, trans_a, trans_b, alpha, beta, out0, bias0)
    assert res.shape == (m, n)
    assert res.dtype == dtype
    if with_out:
        assert res is out
    _allclose(res, expected, dtype, **_gemm_tol(dtype, k))
    _unchanged(a0, a)
    _unchanged(b0, b)
    if bias is not None:
        _unchanged(bias0, bias)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_beta_zero_does_not_read_out(dtype):
    """BLAS convention: with beta == 0 an uninitialised (even NaN) out is fine."""
    rng = _rng(1)
    a, b = _randn(rng, (4, 3), dtype), _randn(rng, (3, 5), dtype)
    out = np.full((4, 5), np.nan, dtype=dtype)
    B.gemm(a, b, out=out)
    _allclose(out, a.astype(np.float64) @ b.astype(np.float64), dtype, **_gemm_tol(dtype, 3))


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_empty_inner_dimension(dtype):
    a = np.zeros((3, 0), dtype=dtype)
    b = np.zeros((0, 4), dtype=dtype)
    res = B.gemm(a, b)
    assert res.dtype == dtype
    np.testing.assert_array_equal(res, np.zeros((3, 4)))
    out = np.full((3, 4), 2.0, dtype=dtype)
    B.gemm(a, b, beta=0.5, out=out, bias=np.ones(4, dtype=dtype))
    np.testing.assert_array_equal(out, np.full((3, 4), 2.0))


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_accepts_non_contiguous_operands(dtype):
    rng = _rng(2)
    a = _randn(rng, (6, 8), dtype)[::2, 1::2]  # (3, 4) strided view
    b = np.asfortranarray(_randn(rng, (4, 5), dtype))
    _allclose(
        B.gemm(a, b), a.astype(np.float64) @ b.astype(np.float64), dtype, **_gemm_tol(dtype, 4)
    )


@settings(deadline=None, max_examples=40)
@given(
    m=st.integers(0, 40),
    k=st.integers(0, 40),
    n=st.integers(0, 40),
    trans_a=st.booleans(),
    trans_b=st.booleans(),
    use_out=st.booleans(),
    alpha=st.sampled_from([1.0, -2.0, 0.5]),
    beta=st.sampled_from([0.0, 1.0, 0.25]),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**16),
)
def test_gemm_random_shapes(m, k, n, trans_a, trans_b, use_out, alpha, beta, dtype, seed):
    rng = _rng(seed)
    a, b = _gemm_operands(rng, m, k, n, trans_a, trans_b, dtype)
    out = _randn(rng, (m, n), dtype) if use_out else None
    expected = _gemm_reference(
        a, b, trans_a, trans_b, alpha, beta, None if out is None else out.copy(), None
    )
    res = B.gemm(a, b, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta, out=out)
    assert res.shape == (m, n) and res.dtype == dtype
    _allclose(res, expected, dtype, **_gemm_tol(dtype, k))


# --------------------------------------------------------------------------- activations

# Dense grid plus the values where formulas usually break.
_SPECIAL = [0.0, -0.0, 1e-30, -1e-30, 1e-8, -1e-8, 0.5, -0.5, 20.0, -20.0, 80.0, -80.0]
GRID = np.concatenate([np.linspace(-30.0, 30.0, 6001), _SPECIAL])


def _sigmoid_math(v):
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


def _phi_math(v):
    return 0.5 * math.erfc(-v / math.sqrt(2.0))


def _gauss_math(v):
    return math.exp(-0.5 * v * v) / math.sqrt(2.0 * math.pi)


def _gelu_tanh_math(v):
    return 0.5 * v * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v**3)))


# Accuracy against a float64 oracle evaluated at the (float32 or float64)
# input: float32 results are a few float32 ulp off at most, float64 ones a
# few float64 ulp.
MATH_RTOL = {np.float32: 3e-7, np.float64: 2e-15}


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_matches_math_with_relative_accuracy(dtype):
    x = np.concatenate([GRID, np.linspace(-700.0, -30.0, 2001)]).astype(dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = B.sigmoid_forward(x)
    expected = np.array([_sigmoid_math(float(v)) for v in x])
    assert y.dtype == dtype
    # relative, also where sigmoid is tiny: wherever the float result is normal
    normal = expected > np.finfo(dtype).tiny
    _allclose(y[normal], expected[normal], dtype, rtol=MATH_RTOL[dtype], atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_tanh_matches_math(dtype):
    x = GRID.astype(dtype)
    expected = np.array([math.tanh(float(v)) for v in x])
    y = B.tanh_forward(x)
    assert y.dtype == dtype
    _allclose(y, expected, dtype, rtol=MATH_RTOL[dtype] * 2, atol=0)


def test_erfc_matches_math_erfc_on_a_dense_grid():
    t = np.linspace(-6.0, 27.2, 400_001)
    got = numpy_backend._erfc(t)
    expected = np.array([math.erfc(v) for v in t])
    normal = expected > np.finfo(np.float64).tiny
    # measured: 1.1e-15 at most (both sides contribute a few ulp)
    np.testing.assert_allclose(got[normal], expected[normal], rtol=2e-15, atol=0)
    # subnormal results: an ulp or so of the smallest subnormal
    np.testing.assert_allclose(got[~normal], expected[~normal], rtol=0, atol=5e-323)
    specials = numpy_backend._erfc(np.array([np.inf, -np.inf, np.nan, 0.0, 40.0, -40.0]))
    np.testing.assert_array_equal(specials, [0.0, 2.0, np.nan, 1.0, 0.0, 2.0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_gelu_exact_matches_math_erfc(dtype):
    # |x| <= 8: math.erfc(-x/sqrt 2) loses about x^2/2 ulp by rounding its
    # argument, so it is a good oracle only on a moderate range (mpmath below
    # covers the tail).
    x = np.linspace(-8.0, 8.0, 4001).astype(dtype)
    y = B.gelu_forward(x)
    expected = np.array([float(v) * _phi_math(float(v)) for v in x])
    assert y.dtype == dtype
    _allclose(y, expected, dtype, rtol=MATH_RTOL[dtype] * 20, atol=0)

    gy = np.linspace(-2.0, 2.0, x.size).astype(dtype)
    gx = B.gelu_backward(gy, x)
    deriv = np.array([_phi_math(float(v)) + float(v) * _gauss_math(float(v)) for v in x])
    # gelu' has a root near x = -0.75, so the error is measured against the
    # size of its two terms rather than the (cancelling) result.
    scale = np.array([_phi_math(float(v)) + abs(float(v)) * _gauss_math(float(v)) for v in x])
    assert gx.dtype == dtype
    err = np.abs(gx.astype(np.float64) - gy.astype(np.float64) * deriv) / (
        np.abs(gy) * scale + 1e-300
    )
    assert err.max() <= MATH_RTOL[dtype] * 20


@pytest.mark.parametrize("dtype", DTYPES)
def test_gelu_exact_tail_against_mpmath(dtype):
    """Relative accuracy for x << 0, where 1 + erf(x/sqrt 2) cancels completely."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    # the ranges where the results are normal floats
    lo, tiny = (-37.0, 1e-200) if dtype == np.float64 else (-13.0, 1e-30)
    x = np.concatenate([np.linspace(lo, 6.0, 1201), -np.geomspace(tiny, 1.0, 50)]).astype(dtype)
    gy = np.ones_like(x)
    y = B.gelu_forward(x)
    gx = B.gelu_backward(gy, x)
    ref_y, ref_d, scale = [], [], []
    for v in x:
        v = mpmath.mpf(float(v))
        cdf, pdf = mpmath.ncdf(v), mpmath.npdf(v)
        ref_y.append(float(v * cdf))
        ref_d.append(float(cdf + v * pdf))
        scale.append(float(cdf + abs(v) * pdf))
    ref_y, ref_d, scale = np.array(ref_y), np.array(ref_d), np.array(scale)
    # measured for float64: 8.6e-16 (forward) and 1.5e-15 (backward)
    rtol = 2e-15 if dtype == np.float64 else 6e-8  # float32: correctly rounded, 1/2 ulp
    _allclose(y, ref_y, dtype, rtol=rtol, atol=0)
    assert np.max(np.abs(gx - ref_d) / scale) <= 2 * rtol


@pytest.mark.parametrize("dtype", DTYPES)
def test_gelu_tanh_matches_math(dtype):
    x = np.linspace(-10.0, 10.0, 2001).astype(dtype)
    expected = np.array([_gelu_tanh_math(float(v)) for v in x])
    y = B.gelu_forward(x, approximate="tanh")
    assert y.dtype == dtype
    # cancellation in 1 + tanh(...) for x < -3 makes absolute error the fair measure
    _allclose(y, expected, dtype, rtol=MATH_RTOL[dtype] * 10, atol=MATH_RTOL[dtype] * 10)


def test_gelu_rejects_unknown_approximation():
    with pytest.raises(ValueError, match="approximate"):
        B.gelu_forward(np.zeros(3), approximate="erf")


@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_limits_at_infinity_and_nan(dtype):
    x = np.array([-np.inf, np.inf, np.nan], dtype=dtype)
    gy = np.ones(3, dtype=dtype)
    with np.errstate(all="raise"):
        np.testing.assert_array_equal(B.relu_forward(x), [0.0, np.inf, np.nan])
        np.testing.assert_array_equal(B.sigmoid_forward(x), [0.0, 1.0, np.nan])
        np.testing.assert_array_equal(B.tanh_forward(x), [-1.0, 1.0, np.nan])
        np.testing.assert_array_equal(B.leaky_relu_forward(x, 0.1), [-np.inf, np.inf, np.nan])
    for approximate in ("none", "tanh"):
        # the limits; PyTorch gives NaN at -inf here
        np.testing.assert_array_equal(B.gelu_forward(x, approximate), [0.0, np.inf, np.nan])
        np.testing.assert_array_equal(B.gelu_backward(gy, x, approximate), [0.0, 1.0, np.nan])
    # sigmoid(+-inf) is exactly 1 and 0, so its gradient there is 0
    np.testing.assert_array_equal(B.sigmoid_backward(gy, B.sigmoid_forward(x)), [0.0, 0.0, np.nan])


@pytest.mark.parametrize("dtype", DTYPES)
def test_gelu_huge_inputs_stay_finite(dtype):
    big = float(np.finfo(dtype).max)
    x = np.array([-big, -1e10, 1e10, big], dtype=dtype)
    gy = np.ones_like(x)
    for approximate in ("none", "tanh"):
        np.testing.assert_array_equal(B.gelu_forward(x, approximate), [0.0, 0.0, 1e10, x[3]])
        np.testing.assert_array_equal(B.gelu_backward(gy, x, approximate), [0.0, 0.0, 1.0, 1.0])


def test_relu_backward_is_a_select():
    y = np.array([0.0, -1.0, 2.0, np.nan])
    gy = np.array([np.inf, np.nan, 3.0, 4.0])
    # off units give 0 even for a non-finite gy; a NaN output is not <= 0, so
    # it passes its gradient on (PyTorch's threshold_backward)
    np.testing.assert_array_equal(B.relu_backward(gy, y), [0.0, 0.0, 3.0, 4.0])


ACTIVATIONS = ["relu", "leaky_relu", "sigmoid", "tanh", "gelu", "gelu_tanh"]


def _run_activation(name, x, gy):
    if name == "leaky_relu":
        y = B.leaky_relu_forward(x, 0.02)
        return y, B.leaky_relu_backward(gy, x, 0.02)
    if name in ("gelu", "gelu_tanh"):
        approximate = "tanh" if name == "gelu_tanh" else "none"
        y = B.gelu_forward(x, approximate)
        return y, B.gelu_backward(gy, x, approximate)
    y = getattr(B, f"{name}_forward")(x)
    # relu, sigmoid and tanh take the forward's output
    return y, getattr(B, f"{name}_backward")(gy, y)


def _torch_activation(name, xt):
    import torch.nn.functional as F

    if name == "leaky_relu":
        return F.leaky_relu(xt, 0.02)
    if name == "gelu_tanh":
        return F.gelu(xt, approximate="tanh")
    return getattr(F, name)(xt)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_matches_torch_forward_and_autograd(name, dtype):
    torch = pytest.importorskip("torch")
    rng = _rng(3)
    # exact zeros too: every kernel must pick PyTorch's side of the kink
    x = np.concatenate(
        [_randn(rng, 500, dtype, scale=3.0), np.zeros(3, dtype), GRID[::20].astype(dtype)]
    )
    gy = _randn(rng, x.shape, dtype)
    x0, gy0 = x.copy(), gy.copy()
    y, gx = _run_activation(name, x, gy)
    xt = _t(x).requires_grad_(True)
    yt = _torch_activation(name, xt)
    (gxt,) = torch.autograd.grad(yt, xt, _t(gy))
    assert y.dtype == dtype and gx.dtype == dtype
    # PyTorch's float32 erf/tanh/exp are a few ulp; its gelu forms 1 + erf,
    # which cancels for x < -3, hence the absolute part
    tol = {"rtol": 2e-6, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-13, "atol": 1e-14}
    _allclose(y, yt.detach().numpy(), dtype, **tol)
    if name == "gelu_tanh" and dtype == np.float32:
        # the formula's 1 - tanh^2 cancels for x < -4: whether float32 tanh has
        # reached -1 yet moves the result by ~1e-7 * |0.5 x inner'|
        tol = {"rtol": 2e-6, "atol": 1e-5}
    _allclose(gx, gxt.numpy(), dtype, **tol)
    _unchanged(x0, x)
    _unchanged(gy0, gy)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_zero_size(name, dtype):
    x = np.zeros((0, 3), dtype=dtype)
    y, gx = _run_activation(name, x, x)
    assert y.shape == x.shape == gx.shape
    assert y.dtype == dtype and gx.dtype == dtype


# --------------------------------------------------------------------------- batch norm


def _bn_reference(x, eps, weight, bias):
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=0)
    var = x64.var(axis=0)
    y = (x64 - mean) / np.sqrt(var + eps)
    if weight is not None:
        y = y * weight + bias
    return y, mean, 1.0 / np.sqrt(var + eps), var


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3), (3, 1), (16, 5), (64, 7)])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_train_matches_torch(shape, affine, dtype):
    torch = pytest.importorskip("torch")
    n, c = shape
    rng = _rng(n * 10 + c)
    eps, momentum = 1e-5, 0.3
    x = _randn(rng, shape, dtype, scale=2.0, shift=1.5)
    gy = _randn(rng, shape, dtype)
    weight = _randn(rng, c, dtype) if affine else None
    bias = _randn(rng, c, dtype) if affine else None
    rm = _randn(rng, c, dtype)
    rv = (rng.random(c) + 0.5).astype(dtype)
    rm_t, rv_t = _t(rm), _t(rv)
    x0, gy0 = x.copy(), gy.copy()

    y, mean, invstd = B.batch_norm_forward_train(x, weight, bias, eps, rm, rv, momentum)
    gx, gw, gb = B.batch_norm_backward(gy, x, mean, invstd, weight)

    leaves = [_t(x).requires_grad_(True)]
    if affine:
        leaves += [_t(weight).requires_grad_(True), _t(bias).requires_grad_(True)]
    w_t, b_t = (leaves[1], leaves[2]) if affine else (None, None)
    y_t = torch.nn.functional.batch_norm(
        leaves[0], rm_t, rv_t, w_t, b_t, training=True, momentum=momentum, eps=eps
    )
    grads = torch.autograd.grad(y_t, leaves, _t(gy))

    _, ref_mean, ref_invstd, _ = _bn_reference(x, eps, None, None)
    for arr in (y, mean, invstd, gx, rm, rv):
        assert arr.dtype == dtype
    _allclose(y, y_t.detach().numpy(), dtype)
    _allclose(mean, ref_mean, dtype)
    _allclose(invstd, ref_invstd, dtype)
    _allclose(rm, rm_t.numpy(), dtype)
    _allclose(rv, rv_t.numpy(), dtype)
    _allclose(gx, grads[0].numpy(), dtype)
    if affine:
        assert gw.dtype == dtype and gb.dtype == dtype
        _allclose(gw, grads[1].numpy(), dtype)
        _allclose(gb, grads[2].numpy(), dtype)
    else:
        assert gw is None and gb is None
    _unchanged(x0, x)
    _unchanged(gy0, gy)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_eval_matches_torch(affine, dtype):
    torch = pytest.importorskip("torch")
    rng = _rng(7)
    x = _randn(rng, (9, 4), dtype, shift=0.5)
    rm = _randn(rng, 4, dtype)
    rv = (rng.random(4) + 0.2).astype(dtype)
    weight = _randn(rng, 4, dtype) if affine else None
    bias = _randn(rng, 4, dtype) if affine else None
    before = [a.copy() for a in (x, rm, rv)]
    y = B.batch_norm_forward_eval(x, rm, rv, weight, bias, 1e-5)
    y_t = torch.nn.functional.batch_norm(
        _t(x),
        _t(rm),
        _t(rv),
        None if weight is None else _t(weight),
        None if bias is None else _t(bias),
        training=False,
        eps=1e-5,
    )
    assert y.dtype == dtype
    _allclose(y, y_t.numpy(), dtype)
    for b, a in zip(before, (x, rm, rv), strict=True):
        _unchanged(b, a)  # eval never touches the running statistics


def test_batch_norm_eval_keeps_precision_far_from_zero():
    """(x - mean) * scale, not x * scale + shift: no cancellation when |mean| >> std."""
    rng = _rng(8)
    x = (1e4 + rng.standard_normal((50, 3))).astype(np.float32)
    rm = np.full(3, 1e4, dtype=np.float32)
    rv = np.full(3, 1e-2, dtype=np.float32)
    y = B.batch_norm_forward_eval(x, rm, rv, None, None, 1e-5)
    expected = (x.astype(np.float64) - 1e4) / np.sqrt(1e-2 + 1e-5)
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("dtype", "shift", "rtol"), [(np.float32, 1e4, 1e-5), (np.float64, 1e9, 1e-8)]
)
def test_batch_norm_variance_is_two_pass(dtype, shift, rtol):
    """E[x^2] - E[x]^2 would lose every digit of these variances to cancellation."""
    rng = _rng(9)
    x = _randn(rng, (256, 4), dtype, shift=shift)
    _, mean, invstd = B.batch_norm_forward_train(x, None, None, 0.0)
    var = x.astype(np.float64).var(axis=0)
    np.testing.assert_allclose(invstd, 1.0 / np.sqrt(var), rtol=rtol)
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(axis=0), rtol=1e-7)


@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_backward_matches_finite_differences(affine):
    rng = _rng(10)
    eps = 1e-5
    x = _randn(rng, (6, 3), np.float64, scale=1.5, shift=0.3)
    gy = _randn(rng, (6, 3), np.float64)
    weight = _randn(rng, 3, np.float64) if affine else None
    bias = _randn(rng, 3, np.float64) if affine else None

    def loss():
        return float(np.sum(gy * B.batch_norm_forward_train(x, weight, bias, eps)[0]))

    _, mean, invstd = B.batch_norm_forward_train(x, weight, bias, eps)
    gx, gw, gb = B.batch_norm_backward(gy, x, mean, invstd, weight)
    _allclose(gx, _central_difference(loss, x), np.float64, **FD_TOL)
    if affine:
        _allclose(gw, _central_difference(loss, weight), np.float64, **FD_TOL)
        _allclose(gb, _central_difference(loss, bias), np.float64, **FD_TOL)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_batch_of_one(dtype):
    """N == 1: the unbiased variance is undefined; running_var takes the biased one (0)."""
    x = np.array([[2.0, -3.0]], dtype=dtype)
    rm = np.array([1.0, 1.0], dtype=dtype)
    rv = np.array([4.0, 4.0], dtype=dtype)
    bias = np.array([0.5, -0.5], dtype=dtype)
    with np.errstate(all="raise"):
        y, mean, invstd = B.batch_norm_forward_train(x, np.ones(2, dtype), bias, 1e-5, rm, rv, 0.1)
        gx, gw, gb = B.batch_norm_backward(np.ones_like(x), x, mean, invstd, np.ones(2, dtype))
    np.testing.assert_array_equal(y, [[0.5, -0.5]])
    np.testing.assert_array_equal(mean, [2.0, -3.0])
    _allclose(invstd, [1e5**0.5] * 2, dtype)
    _allclose(rm, [0.9 + 0.2, 0.9 - 0.3], dtype)
    _allclose(rv, [3.6, 3.6], dtype)
    np.testing.assert_array_equal(gx, [[0.0, 0.0]])
    np.testing.assert_array_equal(gb, [1.0, 1.0])
    np.testing.assert_array_equal(gw, [0.0, 0.0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_zero_size(dtype):
    eps = 1e-5
    # empty batch: statistics mean 0, variance 0; running stats left alone
    x = np.zeros((0, 3), dtype=dtype)
    rm, rv = np.ones(3, dtype=dtype), np.ones(3, dtype=dtype)
    with np.errstate(all="raise"):
        y, mean, invstd = B.batch_norm_forward_train(
            x, np.ones(3, dtype), np.zeros(3, dtype), eps, rm, rv
        )
        gx, gw, gb = B.batch_norm_backward(x, x, mean, invstd, np.ones(3, dtype))
        y_eval = B.batch_norm_forward_eval(x, rm, rv, None, None, eps)
    assert y.shape == (0, 3) and gx.shape == (0, 3) and y_eval.shape == (0, 3)
    np.testing.assert_array_equal(mean, np.zeros(3))
    _allclose(invstd, np.full(3, eps**-0.5), dtype)
    np.testing.assert_array_equal(rm, np.ones(3))
    np.testing.assert_array_equal(rv, np.ones(3))
    np.testing.assert_array_equal(gw, np.zeros(3))
    np.testing.assert_array_equal(gb, np.zeros(3))
    for arr in (y, mean, invstd, gx, gw, gb, y_eval):
        assert arr.dtype == dtype
    # no channels
    x = np.zeros((4, 0), dtype=dtype)
    y, mean, invstd = B.batch_norm_forward_train(x, None, None, eps)
    gx, gw, gb = B.batch_norm_backward(x, x, mean, invstd, None)
    assert y.shape == gx.shape == (4, 0) and mean.shape == invstd.shape == (0,)


def _directional_derivative_check(forward, backward, x, gy, rng):
    """Central difference of sum(gy * forward(x)) along a random direction."""
    v = rng.standard_normal(x.shape)
    h = 1e-6
    numeric = (np.sum(gy * forward(x + h * v)) - np.sum(gy * forward(x - h * v))) / (2 * h)
    gx = backward()
    analytic = float(np.sum(gx * v))
    assert abs(numeric - analytic) <= 1e-6 * (np.sum(np.abs(gx * v)) + 1.0)


def _spread_rows(x):
    """Put one row clearly above the others, so no column is nearly constant."""
    if x.shape[0] > 1:
        x[0] = x[1:].max(axis=0) + 1.0
    return x


@settings(deadline=None, max_examples=30)
@given(
    n=st.integers(1, 40),
    c=st.integers(1, 40),
    affine=st.booleans(),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**16),
)
def test_batch_norm_random_shapes(n, c, affine, dtype, seed):
    rng = _rng(seed)
    eps = 1e-5
    x = _spread_rows(_randn(rng, (n, c), dtype, scale=2.0))
    weight = _randn(rng, c, dtype) if affine else None
    bias = _randn(rng, c, dtype) if affine else None
    y, mean, invstd = B.batch_norm_forward_train(x, weight, bias, eps)
    ref_y, ref_mean, ref_invstd, _ = _bn_reference(x, eps, weight, bias)
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else TOL[dtype]
    _allclose(y, ref_y, dtype, **tol)
    _allclose(mean, ref_mean, dtype, **tol)
    _allclose(invstd, ref_invstd, dtype, **tol)
    if dtype == np.float64:
        gy = rng.standard_normal((n, c))
        _directional_derivative_check(
            lambda z: B.batch_norm_forward_train(z, weight, bias, eps)[0],
            lambda: B.batch_norm_backward(gy, x, mean, invstd, weight)[0],
            x,
            gy,
            rng,
        )


# --------------------------------------------------------------------------- layer norm


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 4), (1, 1), (5, 1), (7, 33)])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_matches_torch(shape, affine, dtype):
    torch = pytest.importorskip("torch")
    r, d = shape
    rng = _rng(r * 10 + d)
    eps = 1e-5
    x = _randn(rng, shape, dtype, scale=3.0, shift=-1.0)
    gy = _randn(rng, shape, dtype)
    weight = _randn(rng, d, dtype) if affine else None
    bias = _randn(rng, d, dtype) if affine else None
    x0, gy0 = x.copy(), gy.copy()

    y, mean, invstd = B.layer_norm_forward(x, weight, bias, eps)
    gx, gw, gb = B.layer_norm_backward(gy, x, mean, invstd, weight)

    leaves = [_t(x).requires_grad_(True)]
    if affine:
        leaves += [_t(weight).requires_grad_(True), _t(bias).requires_grad_(True)]
    w_t, b_t = (leaves[1], leaves[2]) if affine else (None, None)
    y_t = torch.nn.functional.layer_norm(leaves[0], (d,), w_t, b_t, eps)
    grads = torch.autograd.grad(y_t, leaves, _t(gy))

    x64 = x.astype(np.float64)
    for arr in (y, mean, invstd, gx):
        assert arr.dtype == dtype
    assert mean.shape == invstd.shape == (r,)
    _allclose(y, y_t.detach().numpy(), dtype)
    _allclose(mean, x64.mean(axis=1), dtype)
    _allclose(invstd, 1.0 / np.sqrt(x64.var(axis=1) + eps), dtype)
    if affine:
        assert gw.dtype == dtype and gb.dtype == dtype
        _allclose(gb, grads[2].numpy(), dtype)
    else:
        assert gw is None and gb is None
    if d == 1:
        # y = bias whatever x is, so gx and gweight are exactly 0; float32
        # PyTorch misses that by rounding noise times invstd (~1e-5)
        np.testing.assert_array_equal(gx, 0.0)
        if affine:
            np.testing.assert_array_equal(gw, 0.0)
    else:
        _allclose(gx, grads[0].numpy(), dtype)
        if affine:
            _allclose(gw, grads[1].numpy(), dtype)
    _unchanged(x0, x)
    _unchanged(gy0, gy)


@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_backward_matches_finite_differences(affine):
    rng = _rng(11)
    eps = 1e-5
    x = _randn(rng, (3, 6), np.float64, scale=2.0, shift=0.5)
    gy = _randn(rng, (3, 6), np.float64)
    weight = _randn(rng, 6, np.float64) if affine else None
    bias = _randn(rng, 6, np.float64) if affine else None

    def loss():
        return float(np.sum(gy * B.layer_norm_forward(x, weight, bias, eps)[0]))

    _, mean, invstd = B.layer_norm_forward(x, weight, bias, eps)
    gx, gw, gb = B.layer_norm_backward(gy, x, mean, invstd, weight)
    _allclose(gx, _central_difference(loss, x), np.float64, **FD_TOL)
    if affine:
        _allclose(gw, _central_difference(loss, weight), np.float64, **FD_TOL)
        _allclose(gb, _central_difference(loss, bias), np.float64, **FD_TOL)


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm_zero_size(dtype):
    for shape in [(0, 5), (4, 0)]:
        x = np.zeros(shape, dtype=dtype)
        w, b = np.ones(shape[1], dtype), np.zeros(shape[1], dtype)
        with np.errstate(all="raise"):
            y, mean, invstd = B.layer_norm_forward(x, w, b, 1e-5)
            gx, gw, gb = B.layer_norm_backward(x, x, mean, invstd, w)
        assert y.shape == gx.shape == shape
        assert mean.shape == invstd.shape == (shape[0],)
        assert gw.shape == gb.shape == (shape[1],)
        np.testing.assert_array_equal(gw, 0.0)
        for arr in (y, mean, invstd, gx, gw, gb):
            assert arr.dtype == dtype


@settings(deadline=None, max_examples=30)
@given(
    r=st.integers(1, 20),
    d=st.integers(1, 40),
    affine=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_layer_norm_random_shapes(r, d, affine, seed):
    rng = _rng(seed)
    eps = 1e-5
    x = _spread_rows(rng.standard_normal((r, d)).T.copy()).T.copy()  # spread each row
    weight = rng.standard_normal(d) if affine else None
    bias = rng.standard_normal(d) if affine else None
    y, mean, invstd = B.layer_norm_forward(x, weight, bias, eps)
    ref = (x - x.mean(axis=1, keepdims=True)) / np.sqrt(x.var(axis=1, keepdims=True) + eps)
    if affine:
        ref = ref * weight + bias
    _allclose(y, ref, np.float64)
    gy = rng.standard_normal((r, d))
    _directional_derivative_check(
        lambda z: B.layer_norm_forward(z, weight, bias, eps)[0],
        lambda: B.layer_norm_backward(gy, x, mean, invstd, weight)[0],
        x,
        gy,
        rng,
    )


# --------------------------------------------------------------------------- clipping


def _grad_arrays(rng, dtype):
    shapes = [(4, 3), (7,), (2, 3, 5), (1,), (0, 4)]
    return [_randn(rng, s, dtype, scale=3.0) for s in shapes]


@pytest.mark.parametrize("dtype", DTYPES)
def test_global_norms_match_torch_clip_grad_norm(dtype):
    torch = pytest.importorskip("torch")
    # PyTorch refuses the inf-norm of an empty tensor, so no (0, 4) array here
    arrays = _grad_arrays(_rng(12), dtype)[:-1]
    before = [a.copy() for a in arrays]
    for norm_type, ours in ((2.0, math.sqrt(B.sum_squares(arrays))), (math.inf, B.max_abs(arrays))):
        params = []
        for a in arrays:
            p = torch.nn.Parameter(torch.zeros(a.shape, dtype=_t(a).dtype))
            p.grad = _t(a)
            params.append(p)
        total = torch.nn.utils.clip_grad_norm_(params, max_norm=1e30, norm_type=norm_type)
        assert isinstance(ours, float)
        np.testing.assert_allclose(ours, float(total), rtol=1e-6 if dtype == np.float32 else 1e-13)
    for b, a in zip(before, arrays, strict=True):
        _unchanged(b, a)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sum_squares_accumulates_in_float64(dtype):
    rng = _rng(13)
    arrays = [rng.random(200_000).astype(dtype), rng.random((30, 40)).astype(dtype)[:, ::3]]
    exact = math.fsum(float(v) ** 2 for a in arrays for v in a.ravel())
    assert B.sum_squares(arrays) == pytest.approx(exact, rel=1e-12)
    assert B.max_abs(arrays) == max(float(np.abs(a).max()) for a in arrays)


def test_norms_edge_cases():
    assert B.sum_squares([]) == 0.0
    assert B.sum_squares([np.zeros(0, np.float32)]) == 0.0
    assert B.max_abs([]) == 0.0
    assert B.max_abs([np.zeros((0, 3))]) == 0.0
    # float32 values whose squares overflow float32
    assert B.sum_squares([np.array([1e20, -1e20], np.float32)]) == pytest.approx(2e40, rel=1e-6)
    nan, inf = np.array([1.0, np.nan]), np.array([-np.inf, 1.0])
    for arrays in ([nan, np.array([5.0])], [np.array([5.0]), nan], [inf, nan], [nan, inf]):
        assert math.isnan(B.sum_squares(arrays))
        assert math.isnan(B.max_abs(arrays))
    assert B.sum_squares([inf]) == math.inf
    assert B.max_abs([np.array([2.0]), inf]) == math.inf


@pytest.mark.parametrize("dtype", DTYPES)
def test_scale_and_clamp_in_place(dtype):
    x = np.array([-3.0, -0.5, 0.0, 0.25, 7.0, np.nan, np.inf, -np.inf], dtype=dtype)
    y = x.copy()
    assert B.scale_(y, 0.5) is None
    np.testing.assert_array_equal(y, x.astype(np.float64) * 0.5)
    assert y.dtype == dtype
    assert B.clamp_(y, -1.0, 1.0) is None
    np.testing.assert_array_equal(y, [-1.0, -0.25, 0.0, 0.125, 1.0, np.nan, 1.0, -1.0])
    assert y.dtype == dtype
    # lo > hi gives hi, as min(max(x, lo), hi) and torch.clamp do
    z = x.copy()
    B.clamp_(z, 2.0, 1.0)
    np.testing.assert_array_equal(z, [1.0] * 5 + [np.nan, 1.0, 1.0])
    # an in-place kernel writes through a view
    base = np.arange(12, dtype=dtype).reshape(3, 4)
    B.scale_(base[:, 1], -1.0)
    np.testing.assert_array_equal(base[:, 1], [-1.0, -5.0, -9.0])
    empty = np.zeros(0, dtype)
    B.scale_(empty, 2.0)
    B.clamp_(empty, 0.0, 1.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_row_norms(dtype):
    rng = _rng(14)
    x = _randn(rng, (6, 9), dtype)
    x[2] = 0.0
    x0 = x.copy()
    norms = B.row_norms(x)
    expected = [math.sqrt(math.fsum(float(v) ** 2 for v in row)) for row in x]
    assert norms.dtype == dtype and norms.shape == (6,)
    _allclose(norms, expected, dtype, rtol=1e-7 if dtype == np.float32 else 1e-15, atol=0)
    _unchanged(x0, x)
    big = np.array([[3e20, 4e20]], dtype=dtype)
    _allclose(B.row_norms(big), [5e20], dtype, rtol=1e-7, atol=0)
    assert B.row_norms(np.zeros((0, 3), dtype)).shape == (0,)
    np.testing.assert_array_equal(B.row_norms(np.zeros((2, 0), dtype)), [0.0, 0.0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_adaptive_clip_matches_timm_rule_in_torch(dtype):
    torch = pytest.importorskip("torch")
    rng = _rng(15)
    clipping, eps = 0.05, 1e-3
    param = _randn(rng, (8, 5), dtype)
    param[3] = 0.0  # falls back to eps
    grad = _randn(rng, (8, 5), dtype, scale=0.02)
    grad[0] *= 100.0
    grad[3] *= 0.01
    grad[5] = 0.0
    param0, grad0 = param.copy(), grad.copy()
    B.adaptive_clip_(grad, param, clipping, eps)

    # timm.utils.agc.adaptive_clip_grad, for 2-D parameters
    p, g = _t(param0), _t(grad0)
    max_norm = p.norm(dim=1, keepdim=True).clamp(min=eps).mul(clipping)
    g_norm = g.norm(dim=1, keepdim=True)
    clipped = g * (max_norm / g_norm.clamp(min=1e-6))
    expected = torch.where(g_norm < max_norm, g, clipped).numpy()

    assert grad.dtype == dtype
    clipped_rows = ~np.all(grad == grad0, axis=1)
    assert 0 < clipped_rows.sum() < 8  # the case mixes clipped and kept rows
    _allclose(grad, expected, dtype, rtol=1e-6 if dtype == np.float32 else 1e-14, atol=0)
    _unchanged(param0, param)


def test_adaptive_clip_by_hand():
    grad = np.array([[3.0, 4.0], [0.003, 0.004], [1.0, 0.0]])
    param = np.array([[0.0, 100.0], [0.0, 100.0], [0.0, 0.0]])
    B.adaptive_clip_(grad, param, 0.01, 1e-3)
    # row 0: |g| = 5 > 0.01 * 100 -> length 1; row 1 kept; row 2: bound 0.01 * eps
    np.testing.assert_allclose(grad, [[0.6, 0.8], [0.003, 0.004], [1e-5, 0.0]], rtol=1e-15)
    B.adaptive_clip_(np.zeros((0, 3)), np.zeros((0, 3)), 0.01, 1e-3)


# --------------------------------------------------------------------------- optimizers

SGD_VARIANTS = [
    {"momentum": 0.0},
    {"momentum": 0.0, "weight_decay": 0.1},
    {"momentum": 0.9},
    {"momentum": 0.9, "dampening": 0.1},
    {"momentum": 0.9, "nesterov": True},
    {"momentum": 0.8, "nesterov": True, "weight_decay": 0.05},
    {"momentum": 0.5, "dampening": 0.5, "weight_decay": 1e-3},
]
STEP_TOL = {np.float32: {"rtol": 2e-6, "atol": 1e-7}, np.float64: {"rtol": 1e-13, "atol": 1e-15}}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("options", SGD_VARIANTS)
def test_sgd_matches_torch(options, dtype):
    torch = pytest.importorskip("torch")
    rng = _rng(16)
    lr = 0.1
    param = _randn(rng, (4, 3), dtype)
    p_t = torch.nn.Parameter(_t(param))
    opt = torch.optim.SGD([p_t], lr=lr, foreach=False, **options)
    full = {"momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False, **options}
    buf = np.zeros_like(param) if full["momentum"] else None
    for step in range(5):
        grad = _randn(rng, (4, 3), dtype)
        grad0 = grad.copy()
        p_t.grad = _t(grad)
        opt.step()
        B.sgd_step_(param, grad, buf, lr=lr, first_step=step == 0, **full)
        _unchanged(grad0, grad)
    assert param.dtype == dtype
    _allclose(param, p_t.detach().numpy(), dtype, **STEP_TOL[dtype])
    if buf is not None:
        assert buf.dtype == dtype
        _allclose(buf, opt.state[p_t]["momentum_buffer"].numpy(), dtype, **STEP_TOL[dtype])


ADAM_VARIANTS = [
    ("Adam", {}),
    ("Adam", {"weight_decay": 0.1}),
    ("Adam", {"betas": (0.5, 0.9), "eps": 1e-6}),  # lerp's other branch (weight >= 0.5)
    ("AdamW", {}),
    ("AdamW", {"weight_decay": 0.3, "betas": (0.8, 0.99)}),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("kind", "options"), ADAM_VARIANTS)
def test_adam_matches_torch(kind, options, dtype):
    torch = pytest.importorskip("torch")
    rng = _rng(17)
    lr = 0.05
    param = _randn(rng, (5, 2), dtype)
    p_t = torch.nn.Parameter(_t(param))
    opt = getattr(torch.optim, kind)([p_t], lr=lr, foreach=False, **options)
    group = opt.param_groups[0]
    exp_avg, exp_avg_sq = np.zeros_like(param), np.zeros_like(param)
    for step in range(1, 6):
        grad = _randn(rng, (5, 2), dtype)
        grad0 = grad.copy()
        p_t.grad = _t(grad)
        opt.step()
        B.adam_step_(
            param,
            grad,
            exp_avg,
            exp_avg_sq,
            step=step,
            lr=lr,
            beta1=group["betas"][0],
            beta2=group["betas"][1],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            decoupled=kind == "AdamW",
        )
        _unchanged(grad0, grad)
    state = opt.state[p_t]
    for ours, theirs in (
        (param, p_t.detach()),
        (exp_avg, state["exp_avg"]),
        (exp_avg_sq, state["exp_avg_sq"]),
    ):
        assert ours.dtype == dtype
        _allclose(ours, theirs.numpy(), dtype, **STEP_TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_optimizer_steps_on_empty_parameters(dtype):
    p, g = np.zeros(0, dtype), np.zeros(0, dtype)
    B.sgd_step_(
        p,
        g,
        np.zeros(0, dtype),
        lr=0.1,
        momentum=0.9,
        dampening=0.0,
        weight_decay=0.1,
        nesterov=True,
        first_step=True,
    )
    B.adam_step_(
        p,
        g,
        np.zeros(0, dtype),
        np.zeros(0, dtype),
        step=1,
        lr=0.1,
        beta1=0.9,
        beta2=0.999,
        eps=1e-8,
        weight_decay=0.1,
        decoupled=True,
    )


def test_optimizer_steps_keep_float32_with_numpy_scalar_hyperparameters():
    """np.float64 hyperparameters must not promote float32 state (NumPy 2 rules)."""
    p = np.ones(3, np.float32)
    g = np.full(3, 0.5, np.float32)
    buf = np.zeros(3, np.float32)
    B.sgd_step_(
        p,
        g,
        buf,
        lr=np.float64(0.1),
        momentum=np.float64(0.9),
        dampening=np.float64(0),
        weight_decay=np.float64(0.01),
        nesterov=False,
        first_step=True,
    )
    m, v = np.zeros(3, np.float32), np.zeros(3, np.float32)
    B.adam_step_(
        p,
        g,
        m,
        v,
        step=1,
        lr=np.float64(1e-3),
        beta1=np.float64(0.9),
        beta2=np.float64(0.999),
        eps=np.float64(1e-8),
        weight_decay=np.float64(0.0),
        decoupled=False,
    )
    assert p.dtype == buf.dtype == m.dtype == v.dtype == np.float32
    x = np.linspace(-2, 2, 5, dtype=np.float32)
    assert B.leaky_relu_forward(x, np.float64(0.1)).dtype == np.float32
    assert B.gemm(x[:, None], x[None, :], alpha=np.float64(2.0)).dtype == np.float32


# --------------------------------------------------------------------------- statistics


def _stats_by_hand(x, threshold, center):
    values = [float(v) for v in x.ravel()]
    finite = [v for v in values if math.isfinite(v)]
    return TensorStats(
        count=len(values),
        sum=math.fsum(finite),
        sumsq=math.fsum(v * v for v in finite),
        max_abs=max((abs(v) for v in finite), default=0.0),
        n_zero=sum(v == 0.0 for v in finite),
        n_above=sum(abs(v - center) > threshold for v in finite),
        n_nan=sum(math.isnan(v) for v in values),
        n_inf=sum(math.isinf(v) for v in values),
    )


def _assert_stats_equal(got, expected, rel):
    assert isinstance(got, TensorStats)
    for field in ("count", "n_zero", "n_above", "n_nan", "n_inf"):
        value = getattr(got, field)
        assert type(value) is int, field
        assert value == getattr(expected, field), field
    for field in ("sum", "sumsq", "max_abs"):
        value = getattr(got, field)
        assert type(value) is float, field
        assert value == pytest.approx(getattr(expected, field), rel=rel, abs=1e-12), field


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("threshold", "center"), [(math.inf, 0.0), (1.0, 0.0), (0.49, 0.5)])
def test_tensor_stats_against_plain_python(threshold, center, dtype):
    rng = _rng(18)
    x = _randn(rng, (40, 25), dtype)
    flat = x.reshape(-1)
    flat[::37] = 0.0
    flat[5] = -0.0
    flat[::101] = np.nan
    flat[7::211] = np.inf
    flat[9] = -np.inf
    x0 = x.copy()
    got = B.tensor_stats(x, threshold, center)
    _assert_stats_equal(got, _stats_by_hand(x, threshold, center), rel=1e-12)
    assert got.n_nan > 0 and got.n_inf > 1 and got.n_zero > 1
    _unchanged(x0, x)
    # strided input
    _assert_stats_equal(
        B.tensor_stats(x[:, ::3], threshold, center),
        _stats_by_hand(x[:, ::3], threshold, center),
        rel=1e-12,
    )


def test_tensor_stats_edge_cases():
    empty = B.tensor_stats(np.zeros((0, 4), np.float32))
    assert empty == TensorStats(0, 0.0, 0.0, 0.0, 0, 0, 0, 0)
    nonfinite = B.tensor_stats(np.array([np.nan, np.inf, -np.inf]), threshold=0.0)
    assert nonfinite == TensorStats(3, 0.0, 0.0, 0.0, 0, 0, 1, 2)
    # the saturation count from the docstring is decided in float64:
    # float32(0.99) - 0.5 = 0.49000000954 > 0.49 (in float32 arithmetic both
    # sides would round to 0.49000001 and the element would not count)
    y = np.array([0.99, 0.5, 0.2], np.float32)
    assert B.tensor_stats(y, threshold=0.49, center=0.5).n_above == 1
    # float32 squares that overflow float32 do not overflow the float64 sum
    assert B.tensor_stats(np.array([1e20], np.float32)).sumsq == pytest.approx(1e40, rel=1e-6)


# --------------------------------------------------------------------------- read-only inputs


def _frozen(a):
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernels_never_write_their_read_only_inputs(dtype):
    """Every input a kernel does not document as written may be read-only."""
    rng = _rng(19)
    x = _frozen(_randn(rng, (6, 4), dtype))
    gy = _frozen(_randn(rng, (6, 4), dtype))
    w = _frozen(_randn(rng, 4, dtype))
    b = _frozen(_randn(rng, 4, dtype))
    rv_frozen = _frozen(rng.random(4).astype(dtype) + 0.5)

    B.gemm(x, gy, trans_a=True, bias=w)
    B.gemm(x, gy, trans_b=True, out=np.ones((6, 6), dtype), beta=0.5)
    for name in ACTIVATIONS:
        _run_activation(name, x, gy)
    _, mean, invstd = B.batch_norm_forward_train(
        x, w, b, 1e-5, np.zeros(4, dtype), np.ones(4, dtype), 0.1
    )
    B.batch_norm_backward(gy, x, _frozen(mean), _frozen(invstd), w)
    B.batch_norm_forward_eval(x, b, rv_frozen, w, b, 1e-5)
    _, mean, invstd = B.layer_norm_forward(x, w, b, 1e-5)
    B.layer_norm_backward(gy, x, _frozen(mean), _frozen(invstd), w)
    B.sum_squares([x, w])
    B.max_abs([x, w])
    B.row_norms(x)
    B.tensor_stats(x, 0.5, 0.1)
    B.adaptive_clip_(_randn(rng, (6, 4), dtype), x, 0.01, 1e-3)
    B.sgd_step_(
        _randn(rng, (6, 4), dtype),
        gy,
        np.zeros((6, 4), dtype),
        lr=0.1,
        momentum=0.9,
        dampening=0.0,
        weight_decay=0.1,
        nesterov=True,
        first_step=False,
    )
    for decoupled in (False, True):
        B.adam_step_(
            _randn(rng, (6, 4), dtype),
            gy,
            np.zeros((6, 4), dtype),
            np.zeros((6, 4), dtype),
            step=3,
            lr=0.1,
            beta1=0.9,
            beta2=0.999,
            eps=1e-8,
            weight_decay=0.1,
            decoupled=decoupled,
        )


def test_adaptive_clip_nan_weight_row_is_clipped_like_timm():
    # timm keeps a row only where ||g|| < bound; a NaN bound clips the row to NaN
    grad = np.ones((2, 2))
    param = np.array([[np.nan, 1.0], [1.0, 1.0]])
    B.adaptive_clip_(grad, param, 0.01, 1e-3)
    assert np.isnan(grad[0]).all()
    np.testing.assert_allclose(grad[1], np.full(2, 0.01))
