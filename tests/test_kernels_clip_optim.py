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


# -- one call for a group of parameters -------------------------------------------

# Sizes around the vector widths, empty tensors among them, and enough elements
# in all that two threads split the group (inside the large tensor).
GROUP_SIZES = [0, 1, 7, 15, 16, 17, 0, 31, 33, 1000, (1 << 15) + 3, (1 << 21) + 5, 5]


def _group(dtype, sizes, rng):
    return [rng.standard_normal(n).astype(dtype) for n in sizes]


def _copies(arrays):
    return [a.copy() for a in arrays]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "decoupled, weight_decay, beta1", [(False, 0.0, 0.9), (False, 1e-2, 0.9), (True, 1e-2, 0.3)]
)
def test_adam_step_multi_equals_one_parameter_at_a_time(dtype, decoupled, weight_decay, beta1):
    rng = np.random.default_rng(11)
    start = _group(dtype, GROUP_SIZES, rng)
    zeros = [np.zeros_like(a) for a in start]
    # three ways: C in one call, C per parameter, the reference in one call
    runs = [(_copies(start), _copies(zeros), _copies(zeros)) for _ in range(3)]
    hyper = dict(lr=1e-3, beta1=beta1, beta2=0.999, eps=1e-8, weight_decay=weight_decay)
    for step in range(1, 4):
        grads = [_special(dtype, a.size, rng, ["plain", "tiny", "inf"][step - 1]) for a in start]
        grads_before = _copies(grads)
        # each parameter its own step count, as when some were skipped
        steps = [step + i % 3 for i in range(len(start))]
        with np.errstate(all="ignore"):
            p, m, v = runs[0]
            C.adam_step_multi_(p, grads, m, v, steps=steps, decoupled=decoupled, **hyper)
            p, m, v = runs[1]
            for i in range(len(p)):
                C.adam_step_(
                    p[i], grads[i], m[i], v[i], step=steps[i], decoupled=decoupled, **hyper
                )
            p, m, v = runs[2]
            REF.adam_step_multi_(p, grads, m, v, steps=steps, decoupled=decoupled, **hyper)
        for g, before in zip(grads, grads_before, strict=True):
            np.testing.assert_array_equal(g, before)
        for other in runs[1:]:
            for got_list, want_list in zip(runs[0], other, strict=True):
                for i, (got, want) in enumerate(zip(got_list, want_list, strict=True)):
                    np.testing.assert_array_equal(got, want, err_msg=f"tensor {i}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(len(SGD_CASES)))
def test_sgd_step_multi_equals_one_parameter_at_a_time(dtype, case):
    kw = SGD_CASES[case]
    rng = np.random.default_rng(12 + case)
    start = _group(dtype, GROUP_SIZES, rng)
    with_buffers = kw["momentum"] != 0.0
    buffers = _group(dtype, GROUP_SIZES, rng)  # some tensors start mid-run
    runs = [(_copies(start), _copies(buffers)) for _ in range(3)]
    for step in range(3):
        grads = [_special(dtype, a.size, rng, "plain" if step < 2 else "nan") for a in start]
        grads_before = _copies(grads)
        # parameters join at different steps: a first step for some, not others
        first = [step == i % 2 for i in range(len(start))]
        p, b = runs[0]
        C.sgd_step_multi_(p, grads, b if with_buffers else None, first_steps=first, lr=0.1, **kw)
        p, b = runs[1]
        for i in range(len(p)):
            C.sgd_step_(p[i], grads[i], b[i] if with_buffers else None, lr=0.1,
                        first_step=first[i], **kw)  # fmt: skip
        p, b = runs[2]
        REF.sgd_step_multi_(p, grads, b if with_buffers else None, first_steps=first, lr=0.1, **kw)
        for g, before in zip(grads, grads_before, strict=True):
            np.testing.assert_array_equal(g, before)
        for other in runs[1:]:
            for i in range(len(start)):
                np.testing.assert_array_equal(runs[0][0][i], other[0][i], err_msg=f"param {i}")
                if with_buffers:
                    np.testing.assert_array_equal(runs[0][1][i], other[1][i], err_msg=f"buf {i}")


ADAM_HYPER = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2, decoupled=True)


@pytest.mark.parametrize("backend", [C, REF], ids=["c", "numpy"])
def test_multi_updates_of_no_parameters(backend):
    backend.adam_step_multi_([], [], [], [], steps=[], **ADAM_HYPER)
    backend.sgd_step_multi_(
        [], [], None, first_steps=[], lr=0.1, momentum=0.0, dampening=0.0,
        weight_decay=0.0, nesterov=False,
    )  # fmt: skip


def _adam_group_both_ways(params, grads, steps):
    """(the group after one C multi call, the group after the reference per tensor)."""
    runs = []
    for backend in (C, REF):
        # copies that keep a strided parameter out of C order
        p = [np.array(a, order="F") for a in params]
        m = [np.zeros(a.shape, a.dtype) for a in params]
        v = [np.zeros(a.shape, a.dtype) for a in params]
        backend.adam_step_multi_(p, grads, m, v, steps=steps, **ADAM_HYPER)
        runs.append(p)
    return runs


def test_adam_step_multi_groups_c_cannot_take_in_one_call():
    """Mixed dtypes, a strided parameter or float16 go one parameter at a time."""
    rng = np.random.default_rng(13)
    mixed = [rng.standard_normal(40).astype(np.float32), rng.standard_normal(9)]
    strided = [rng.standard_normal((6, 5)).astype(np.float32)[:, ::2] for _ in range(2)]
    half = [rng.standard_normal(10).astype(np.float16)]
    for params in (mixed, strided, half):
        grads = [np.ones_like(a) for a in params]
        got, want = _adam_group_both_ways(params, grads, [1] * len(params))
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_parameter_listed_twice_is_updated_twice_in_order():
    rng = np.random.default_rng(14)
    n = 300_000  # above the size where an update is split across threads
    p, g = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    m, v = np.zeros_like(p), np.zeros_like(p)
    want, wm, wv = p.copy(), m.copy(), v.copy()
    C.adam_step_multi_([p, p], [g, g], [m, m], [v, v], steps=[1, 2], **ADAM_HYPER)
    for step in (1, 2):
        REF.adam_step_(want, g, wm, wv, step=step, **ADAM_HYPER)
    np.testing.assert_array_equal(p, want)
    np.testing.assert_array_equal(v, wv)


def _bad_lists():
    """(params, grads, exp_avgs, exp_avg_sqs, steps, error, message) after a good
    first parameter, which the test puts in front of each list."""
    f32 = np.zeros(3, np.float32)
    ro = np.zeros(3, np.float32)
    ro.flags.writeable = False
    z = np.zeros_like
    return [
        ([f32], [], [z(f32)], [z(f32)], [1], ValueError, "grads has 1 entries but params has 2"),
        ([f32], [z(f32)], [z(f32)], [z(f32)], [], ValueError, "steps has 1 entries"),
        ([f32], [np.zeros(4, np.float32)], [z(f32)], [z(f32)], [1], ValueError,
         r"grads\[1\] has shape \(4,\) but params\[1\] has shape \(3,\)"),
        ([f32], [z(f32)], [np.zeros(3)], [z(f32)], [1], TypeError,
         r"exp_avgs\[1\] is float64 but params\[1\] is float32"),
        ([np.zeros(3, np.int64)], [z(f32)], [z(f32)], [z(f32)], [1], TypeError,
         r"params\[1\] must be a float32 or float64 array, got int64"),
        ([ro], [z(f32)], [z(f32)], [z(f32)], [1], ValueError, r"params\[1\] is read-only"),
        ([f32], [z(f32)], [z(f32)], [ro], [1], ValueError, r"exp_avg_sqs\[1\] is read-only"),
    ]  # fmt: skip


@pytest.mark.parametrize("backend", [C, REF], ids=["c", "numpy"])
@pytest.mark.parametrize("case", range(7))
def test_adam_step_multi_bad_lists_raise_before_writing(backend, case):
    params, grads, m, v, steps, error, pattern = _bad_lists()[case]
    # a good parameter first: it must not have moved when the call raises
    good = np.ones(5, np.float32)
    params, grads = [good, *params], [np.ones(5, np.float32), *grads]
    m, v = [np.zeros(5, np.float32), *m], [np.zeros(5, np.float32), *v]
    steps = [1, *steps]
    with pytest.raises(error, match="adam_step_multi_: " + pattern):
        backend.adam_step_multi_(params, grads, m, v, steps=steps, **ADAM_HYPER)
    np.testing.assert_array_equal(good, 1.0)


@pytest.mark.parametrize("backend", [C, REF], ids=["c", "numpy"])
def test_sgd_step_multi_needs_buffers_with_momentum(backend):
    p = np.zeros(3, np.float32)
    kw = dict(first_steps=[True], lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.0,
              nesterov=False)  # fmt: skip
    with pytest.raises(ValueError, match="sgd_step_multi_: momentum_buffers is None"):
        backend.sgd_step_multi_([p], [p.copy()], None, **kw)
    with pytest.raises(ValueError, match="sgd_step_multi_: first_steps has 2 entries"):
        backend.sgd_step_multi_([p], [p.copy()], [p.copy()], **{**kw, "first_steps": [1, 0]})


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
        # a group whose tensors are each too small to split but together are not,
        # so threads share tensors; and a group of a small and two large tensors
        for sizes in ([10_007] * 40, [5, 1 << 21, (1 << 21) + 9]):
            group = [_special(dtype, n, rng, "plain") for n in sizes]
            p, m, v = _copies(group), _copies(group), [np.abs(a) for a in group]
            for step in (1, 2):
                C.adam_step_multi_(p, group, m, v, steps=[step] * len(p), **ADAM_HYPER)
            out[f"adam_multi_{len(sizes)}_{key}"] = np.concatenate(p + m + v)
            p, b = _copies(group), _copies(group)
            C.sgd_step_multi_(
                p, group, b, first_steps=[False] * len(p), lr=0.1, momentum=0.9,
                dampening=0.1, weight_decay=1e-4, nesterov=True,
            )  # fmt: skip
            out[f"sgd_multi_{len(sizes)}_{key}"] = np.concatenate(p + b)
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
