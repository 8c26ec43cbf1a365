"""Reliability: threads, extreme values, and the C backend fuzzed against NumPy.

The fuzz runs a modest number of examples by default; a long run is
    MINIGRAD_FUZZ_EXAMPLES=5000 pytest tests/test_reliability.py -k fuzz
"""

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minigrad as mg
import minigrad.nn.functional as F

FUZZ_EXAMPLES = int(os.environ.get("MINIGRAD_FUZZ_EXAMPLES", "60"))
HAS_C = "c" in mg.backend._BACKENDS


# -- threads -------------------------------------------------------------------


def _forward_backward(x_array, op):
    x = mg.tensor(x_array, requires_grad=True)
    y = op(x)
    y.sum().backward()
    return y.detach().numpy().copy(), x.grad.numpy().copy()


THREAD_OPS = {
    "relu": lambda t: t.relu(),
    "sigmoid": lambda t: t.sigmoid(),
    "tanh": lambda t: t.tanh(),
    "gelu": lambda t: F.gelu(t),
    "linear": lambda t: F.linear(t, mg.ones(7, t.shape[1]), mg.ones(7)),
}


@pytest.mark.parametrize("name", THREAD_OPS)
def test_ops_from_several_threads_match_serial_results(backend, name):
    # cffi releases the GIL during a kernel, so these calls really overlap
    op = THREAD_OPS[name]
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((300, 129)).astype(np.float32) for _ in range(8)]
    serial = [_forward_backward(a, op) for a in inputs]
    results: list = [None] * len(inputs)
    errors: list = []

    def work(i):
        try:
            for _ in range(5):
                results[i] = _forward_backward(inputs[i], op)
        except Exception as exc:  # reported below, with the thread's input
            errors.append((i, exc))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for (y, g), (ys, gs) in zip(results, serial, strict=True):
        np.testing.assert_array_equal(y, ys)
        np.testing.assert_array_equal(g, gs)


def _openmp_threads_available() -> bool:
    return HAS_C and mg.backend_info().get("openmp", False) and len(os.sched_getaffinity(0)) > 1


@pytest.mark.skipif(not _openmp_threads_available(), reason="needs OpenMP and two cores")
def test_threads_back_off_while_every_core_is_busy():
    # A worker thread that waits for a core makes every region wait for it;
    # the kernels notice the late start and run on one thread for a while.
    from minigrad.backend.c import CBackend

    kernels = CBackend()
    busy = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in os.sched_getaffinity(0)
    ]
    previous = mg.get_num_threads()
    mg.set_num_threads(2)
    try:
        before = mg.backend_info()["thread_backoffs"]
        x = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32)
        expected = np.maximum(x, 0)
        deadline = time.monotonic() + 10
        while mg.backend_info()["thread_backoffs"] == before and time.monotonic() < deadline:
            np.testing.assert_array_equal(kernels.relu_forward(x), expected)
        after = mg.backend_info()["thread_backoffs"]
    finally:
        mg.set_num_threads(previous)
        for p in busy:
            p.kill()
            p.wait()
    assert after > before


# -- extreme values --------------------------------------------------------------

EXTREME = np.array([[-1e4, -100.0, -1.0, 0.0, 1.0, 100.0, 1e4]], dtype=np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "fn",
    [
        lambda x: x.sigmoid(),
        lambda x: x.tanh(),
        lambda x: x.log_softmax(-1),
        lambda x: x.softmax(-1),
        lambda x: F.cross_entropy(x, mg.tensor([6])),
        lambda x: F.cross_entropy(x, mg.tensor([0])),
        lambda x: F.binary_cross_entropy_with_logits(x, mg.ones(*x.shape, dtype=x.dtype)),
        lambda x: F.binary_cross_entropy_with_logits(x, mg.zeros(*x.shape, dtype=x.dtype)),
        lambda x: F.gelu(x),
        lambda x: F.gelu(x, approximate="tanh"),
    ],
    ids=["sigmoid", "tanh", "log_softmax", "softmax", "ce-right", "ce-wrong", "bce-1", "bce-0",
         "gelu", "gelu_tanh"],
)  # fmt: skip
def test_huge_logits_stay_finite(backend, dtype, fn):
    x = mg.tensor(EXTREME.astype(dtype), requires_grad=True)
    y = fn(x)
    y.sum().backward()
    assert np.isfinite(y.detach().numpy()).all()
    assert np.isfinite(x.grad.numpy()).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_is_finite_for_constant_columns(backend, dtype):
    x = np.full((16, 4), 3.0, dtype=dtype)
    x[:, 1] = 1e6  # large and constant: variance exactly 0
    xt = mg.tensor(x, requires_grad=True)
    bn = mg.nn.BatchNorm1d(4).to(dtype)
    y = bn(xt)
    (y * mg.tensor(np.arange(64.0).reshape(16, 4).astype(dtype))).sum().backward()
    assert np.isfinite(y.detach().numpy()).all()
    assert np.isfinite(xt.grad.numpy()).all()
    assert np.isfinite(bn.running_var.numpy()).all()


# -- fuzz: the C backend against the NumPy reference -----------------------------

SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, -1e-40, 1e30, -1e30, 1e4, -1e4]


@st.composite
def float_arrays(draw, min_dims=1, max_dims=3):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    shape = tuple(draw(st.lists(st.integers(0, 9), min_size=min_dims, max_size=max_dims)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal(shape) * draw(st.sampled_from([0.1, 1.0, 30.0]))).astype(dtype)
    if a.size and draw(st.booleans()):
        picks = rng.integers(0, a.size, size=max(1, a.size // 5))
        a.reshape(-1)[picks] = rng.choice(np.array(SPECIAL, dtype=dtype), size=picks.size)
    layout = draw(st.sampled_from(["c", "reversed", "transposed"]))
    if layout == "reversed":
        a = a[..., ::-1]  # negative stride: the kernels must see a contiguous copy
    elif layout == "transposed" and a.ndim >= 2:
        a = np.ascontiguousarray(a.swapaxes(-1, -2)).swapaxes(-1, -2)
    return a


UNARY = {
    "relu": lambda t: t.relu(),
    "leaky_relu": lambda t: F.leaky_relu(t, 0.2),
    "sigmoid": lambda t: t.sigmoid(),
    "tanh": lambda t: t.tanh(),
    "gelu": lambda t: F.gelu(t),
    "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
    "softmax": lambda t: t.softmax(-1),
    "log_softmax": lambda t: t.log_softmax(-1),
    "layer_norm": lambda t: F.layer_norm(t, t.shape[-1:]),
}


def _run(backend_name, fn, array, gy):
    previous = mg.get_backend()
    mg.set_backend(backend_name)
    try:
        x = mg.tensor(array, requires_grad=True)
        with np.errstate(all="ignore"):
            y = fn(x)
            y.backward(mg.tensor(gy))
        return y.detach().numpy(), x.grad.numpy()
    finally:
        mg.set_backend(previous)


def _close(c, ref, dtype):
    rtol = 2e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(c, ref, rtol=rtol, atol=rtol, equal_nan=True)


@pytest.mark.skipif(not HAS_C, reason="needs the C backend to compare with")
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(UNARY)), array=float_arrays())
def test_fuzz_unary_ops_c_matches_numpy(name, array):
    fn = UNARY[name]
    if name == "layer_norm" and array.shape[-1] == 0:
        return
    gy = np.random.default_rng(1).standard_normal(array.shape).astype(array.dtype)
    with np.errstate(all="ignore"):
        finite_input = np.isfinite(array).all()
    y_c, g_c = _run("c", fn, array, gy)
    y_n, g_n = _run("numpy", fn, array, gy)
    if finite_input or name in ("relu", "leaky_relu", "sigmoid", "tanh"):
        # elementwise kernels must agree on non-finite inputs too
        _close(y_c, y_n, array.dtype)
        _close(g_c, g_n, array.dtype)
    else:
        # a NaN/inf spreads through a row's reduction: compare where both are finite
        both = np.isfinite(y_c) & np.isfinite(y_n)
        _close(y_c[both], y_n[both], array.dtype)


@pytest.mark.skipif(not HAS_C, reason="needs the C backend to compare with")
@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(
    m=st.integers(0, 40), k=st.integers(0, 40), n=st.integers(0, 40),
    dtype=st.sampled_from([np.float32, np.float64]), bias=st.booleans(), seed=st.integers(0, 999),
)  # fmt: skip
def test_fuzz_linear_c_matches_numpy(m, k, n, dtype, bias, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, k)).astype(dtype)
    w = mg.tensor(rng.standard_normal((n, k)).astype(dtype))
    b = mg.tensor(rng.standard_normal(n).astype(dtype)) if bias else None
    gy = rng.standard_normal((m, n)).astype(dtype)
    y_c, g_c = _run("c", lambda t: F.linear(t, w, b), x, gy)
    y_n, g_n = _run("numpy", lambda t: F.linear(t, w, b), x, gy)
    tol = 1e-4 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(y_c, y_n, rtol=tol, atol=tol * max(k, 1))
    np.testing.assert_allclose(g_c, g_n, rtol=tol, atol=tol * max(n, 1))
