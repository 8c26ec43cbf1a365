"""Gradient clipping against PyTorch (norm and value) and against timm's AGC rule.

Every test runs on each backend (the ``backend`` fixture of conftest.py), since
the clipping goes through the kernels. Tolerances: float64 rtol=1e-12; float32
rtol=1e-5 (PyTorch sums float32 norms in float32, minigrad in float64).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import minigrad as mg
from minigrad.nn.utils import adaptive_clip_grad_, clip_grad_norm_, clip_grad_value_

TOLERANCE = {
    np.dtype(np.float64): {"rtol": 1e-12, "atol": 1e-14},
    np.dtype(np.float32): {"rtol": 1e-5, "atol": 1e-7},
}
SHAPES = [(5, 4), (4,), (3, 2, 2), (), (6,)]


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def _grads(dtype, seed=0, scale=1.0):
    """Gradients for SHAPES; the fourth parameter has none, the fifth is all zeros."""
    rng = np.random.default_rng(seed)
    grads = [(scale * rng.standard_normal(s)).astype(dtype) for s in SHAPES]
    grads[3] = None
    grads[4][...] = 0
    return grads


def _mg_params(grads):
    params = []
    for g in grads:
        shape = SHAPES[len(params)]
        p = mg.zeros(*shape, dtype=np.float64 if g is None else g.dtype, requires_grad=True)
        p.grad = None if g is None else mg.tensor(g.copy())
        params.append(p)
    return params


def _torch_params(torch, grads):
    params = []
    for shape, g in zip(SHAPES, grads, strict=True):
        p = torch.nn.Parameter(torch.zeros(shape, dtype=torch.float64 if g is None else None))
        if g is not None:
            p.data = p.data.to(torch.from_numpy(g).dtype)
            p.grad = torch.tensor(g.copy())
        params.append(p)
    return params


def _assert_grads_equal(ours, theirs, dtype):
    for p, tp in zip(ours, theirs, strict=True):
        if tp.grad is None:
            assert p.grad is None
        else:
            np.testing.assert_allclose(
                p.grad.numpy(), tp.grad.numpy(), equal_nan=True, **TOLERANCE[np.dtype(dtype)]
            )


# ---------------------------------------------------------------------------
# clip_grad_norm_
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("norm_type", [2.0, 1, 3.0, 0.5, math.inf, "inf", -math.inf, 0])
@pytest.mark.parametrize("max_norm", [0.5, 1e3, -1.0])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_clip_grad_norm_matches_torch(torch, backend, norm_type, max_norm, dtype):
    grads = _grads(dtype)
    ours, theirs = _mg_params(grads), _torch_params(torch, grads)
    total = clip_grad_norm_(ours, max_norm, norm_type)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm, float(norm_type))
    assert isinstance(total, mg.Tensor) and total.shape == ()
    assert total.dtype == np.dtype(str(expected.dtype).removeprefix("torch."))
    np.testing.assert_allclose(total.item(), expected.item(), **TOLERANCE[np.dtype(dtype)])
    _assert_grads_equal(ours, theirs, dtype)


def test_clip_grad_norm_of_float32_grads_is_exact_at_the_coefficient(torch, backend):
    """Same total, same coefficient arithmetic: the clipped float32 grads agree to 1 ulp."""
    grads = _grads(np.float32, seed=4, scale=10.0)
    ours, theirs = _mg_params(grads), _torch_params(torch, grads)
    clip_grad_norm_(ours, 1.0)
    torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    for p, tp in zip(ours, theirs, strict=True):
        if tp.grad is not None:
            np.testing.assert_array_max_ulp(p.grad.numpy(), tp.grad.numpy(), maxulp=1)


def test_clip_grad_norm_mixed_dtypes(torch, backend):
    grads = _grads(np.float32)
    grads[0] = grads[0].astype(np.float64)
    ours, theirs = _mg_params(grads), _torch_params(torch, grads)
    total = clip_grad_norm_(ours, 0.5)
    expected = torch.nn.utils.clip_grad_norm_(theirs, 0.5)
    assert total.dtype == np.float64 and expected.dtype == torch.float64
    np.testing.assert_allclose(total.item(), expected.item(), rtol=1e-6)
    _assert_grads_equal(ours, theirs, np.float32)


def test_clip_grad_norm_below_max_leaves_grads_bit_identical(backend):
    grads = _grads(np.float32)
    params = _mg_params(grads)
    before = [None if p.grad is None else p.grad.numpy().copy() for p in params]
    total = clip_grad_norm_(params, 1e6)
    expected = math.sqrt(
        sum(float((g.astype(np.float64) ** 2).sum()) for g in before if g is not None)
    )
    np.testing.assert_allclose(total.item(), expected, rtol=1e-6)
    for p, b in zip(params, before, strict=True):
        if b is not None:
            np.testing.assert_array_equal(p.grad.numpy(), b)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
def test_clip_grad_norm_non_finite_like_torch(torch, backend, bad, norm_type):
    grads = _grads(np.float32)
    grads[0][1, 2] = bad
    ours, theirs = _mg_params(grads), _torch_params(torch, grads)
    total = clip_grad_norm_(ours, 1.0, norm_type)
    expected = torch.nn.utils.clip_grad_norm_(theirs, 1.0, norm_type)
    np.testing.assert_array_equal(total.numpy(), expected.numpy())
    _assert_grads_equal(ours, theirs, np.float32)

    grads[0][1, 2] = bad
    ours, theirs = _mg_params(grads), _torch_params(torch, grads)
    with pytest.raises(RuntimeError) as theirs_error:
        torch.nn.utils.clip_grad_norm_(theirs, 1.0, norm_type, error_if_nonfinite=True)
    with pytest.raises(RuntimeError) as ours_error:
        clip_grad_norm_(ours, 1.0, norm_type, error_if_nonfinite=True)
    assert str(ours_error.value) == str(theirs_error.value)
    np.testing.assert_array_equal(ours[0].grad.numpy(), grads[0])  # untouched on error


def test_clip_grad_norm_inputs(backend):
    one = mg.zeros(3, requires_grad=True)
    one.grad = mg.tensor([3.0, 4.0, 0.0])
    assert clip_grad_norm_(one, 1.0).item() == pytest.approx(5.0)
    np.testing.assert_allclose(one.grad.numpy(), [0.6, 0.8, 0.0], rtol=1e-6)

    two = mg.zeros(2, dtype=mg.float64, requires_grad=True)
    two.grad = mg.tensor([6.0, 8.0], dtype=mg.float64)
    total = clip_grad_norm_((p for p in [two]), 5.0, norm_type="inf")
    assert total.item() == 8.0 and total.dtype == np.float64

    no_grads = clip_grad_norm_([mg.zeros(2, requires_grad=True)], 1.0)
    assert no_grads.item() == 0.0 and no_grads.dtype == np.float32 and no_grads.shape == ()

    with pytest.warns(UserWarning, match="empty generator"):
        clip_grad_norm_((p for p in []), 1.0)
    with pytest.raises(TypeError, match="expected a Tensor"):
        clip_grad_norm_([one, np.zeros(3)], 1.0)
    with pytest.raises(ValueError, match="norm_type must be a number or 'inf', got 'two'"):
        clip_grad_norm_(one, 1.0, norm_type="two")


def test_clip_grad_norm_strided_grad(backend):
    base = np.arange(12, dtype=np.float64).reshape(3, 4)
    p = mg.zeros(4, 3, dtype=mg.float64, requires_grad=True)
    p.grad = mg.from_numpy(base.T)  # a transposed view: not C-contiguous
    norm = np.linalg.norm(base)
    clip_grad_norm_(p, 1.0)
    np.testing.assert_allclose(base, np.arange(12).reshape(3, 4) / (norm + 1e-6), rtol=1e-12)


# ---------------------------------------------------------------------------
# clip_grad_value_
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("clip_value", [0.5, 2.0, 0.0, -0.3])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_clip_grad_value_matches_torch(torch, backend, clip_value, dtype):
    grads = _grads(dtype, scale=2.0)
    grads[0][0, 0] = np.nan
    grads[0][0, 1] = np.inf
    ours, theirs = _mg_params(grads), _torch_params(torch, grads)
    assert clip_grad_value_(ours, clip_value) is None
    torch.nn.utils.clip_grad_value_(theirs, clip_value)
    for p, tp in zip(ours, theirs, strict=True):
        if tp.grad is not None:
            np.testing.assert_array_equal(p.grad.numpy(), tp.grad.numpy())


def test_clip_grad_value_on_one_tensor_and_strided_grad(backend):
    base = np.array([[-3.0, 0.1], [2.0, -0.2]])
    p = mg.zeros(2, 2, dtype=mg.float64, requires_grad=True)
    p.grad = mg.from_numpy(base.T)
    clip_grad_value_(p, 1.0)
    np.testing.assert_array_equal(base, [[-1.0, 0.1], [1.0, -0.2]])


# ---------------------------------------------------------------------------
# adaptive_clip_grad_ against timm's rule
# ---------------------------------------------------------------------------


def _timm_adaptive_clip_grad(torch, parameters, clip_factor=0.01, eps=1e-3):
    """timm.utils.agc.adaptive_clip_grad, restated: unit-wise norms over all but dim 0."""

    def unitwise_norm(x):
        if x.ndim <= 1:
            return x.norm(2.0)
        return x.norm(2.0, dim=tuple(range(1, x.ndim)), keepdim=True)

    for p in parameters:
        if p.grad is None:
            continue
        p_data, g_data = p.detach(), p.grad.detach()
        max_norm = unitwise_norm(p_data).clamp_(min=eps).mul_(clip_factor)
        grad_norm = unitwise_norm(g_data)
        clipped = g_data * (max_norm / grad_norm.clamp(min=1e-6))
        p.grad.detach().copy_(torch.where(grad_norm < max_norm, g_data, clipped))


AGC_SHAPES = [(8, 5), (4, 3, 3, 3), (6,), (), (3, 7)]


@pytest.mark.parametrize("clipping", [0.01, 0.1, 1.0])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_adaptive_clip_grad_matches_timm(torch, backend, clipping, dtype):
    rng = np.random.default_rng(7)
    weights = [rng.standard_normal(s).astype(dtype) for s in AGC_SHAPES]
    weights[4][1] = 0  # a zero unit: eps sets its limit
    grads = [(0.05 * rng.standard_normal(s)).astype(dtype) for s in AGC_SHAPES]
    grads[0][2] *= 100  # one unit far above its limit, the others near it

    ours = [mg.tensor(w.copy(), requires_grad=True) for w in weights]
    theirs = [torch.nn.Parameter(torch.tensor(w.copy())) for w in weights]
    for p, tp, g in zip(ours, theirs, grads, strict=True):
        p.grad, tp.grad = mg.tensor(g.copy()), torch.tensor(g.copy())
    ours[2].grad = theirs[2].grad = None

    assert adaptive_clip_grad_(ours, clipping) is None
    _timm_adaptive_clip_grad(torch, theirs, clipping)
    _assert_grads_equal(ours, theirs, dtype)
    assert not np.array_equal(ours[0].grad.numpy(), grads[0])


def test_adaptive_clip_grad_rule(backend):
    w = mg.tensor([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]], dtype=mg.float64, requires_grad=True)
    w.grad = mg.tensor([[0.0, 1.0], [1.0, 0.0], [0.001, 0.0]], dtype=mg.float64)
    adaptive_clip_grad_(w, clipping=0.1, eps=1e-3)
    # row 0: limit 0.1 * 5 = 0.5; row 1: limit 0.1 * eps; row 2: under its limit 0.1
    np.testing.assert_allclose(w.grad.numpy(), [[0.0, 0.5], [1e-4, 0.0], [0.001, 0.0]])


def test_adaptive_clip_grad_strided_grad_and_shape_check(backend):
    base = np.array([[0.0, 2.0], [1.0, 0.0]])
    w = mg.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=mg.float64, requires_grad=True)
    w.grad = mg.from_numpy(base.T)  # rows [0, 1] and [2, 0]
    adaptive_clip_grad_(w, clipping=0.5)
    np.testing.assert_allclose(base.T, [[0.0, 0.5], [0.5, 0.0]])
    w.grad = mg.zeros(4, dtype=mg.float64)
    with pytest.raises(ValueError, match="must match"):
        adaptive_clip_grad_(w)
