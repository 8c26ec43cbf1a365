"""Property tests: on random shapes, minigrad's forward and gradients equal PyTorch's.

Shapes have up to 4 dims of size 0..5; pairs for binary ops are made
broadcast-compatible by dropping leading dims of one shape and setting dims
of either to 1. All data is float64, compared with rtol=1e-10, atol=1e-12.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import minigrad as mg  # noqa: E402

RTOL, ATOL = 1e-10, 1e-12
SETTINGS = settings(deadline=None, max_examples=40)


@pytest.fixture(params=sorted(mg.backend._BACKENDS), autouse=True, scope="module")
def backend(request):
    """Run every property on each backend that is built, then put the old one back."""
    previous = mg.get_backend()
    mg.set_backend(request.param)
    yield request.param
    mg.set_backend(previous)


# ---------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------

sizes = st.integers(0, 5)
shapes = st.lists(sizes, max_size=4).map(tuple)
seeds = st.integers(0, 2**32 - 1)


@st.composite
def broadcast_pairs(draw):
    """Two shapes that broadcast: one shape, a copy with leading dims dropped, dims set to 1."""
    full = list(draw(shapes))
    other = full[draw(st.integers(0, len(full))) :]
    lead = len(full) - len(other)
    for k in range(len(other)):
        choice = draw(st.sampled_from(["same", "ones in other", "ones in full"]))
        if choice == "ones in other":
            other[k] = 1
        elif choice == "ones in full":
            full[lead + k] = 1
    pair = (tuple(full), tuple(other))
    return pair[::-1] if draw(st.booleans()) else pair


@st.composite
def reduction_dims(draw, ndim):
    """None, one dim or a tuple of distinct dims, each as a positive or a negative index."""
    if ndim == 0:
        return draw(st.sampled_from([None, 0, -1]))
    kind = draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none":
        return None
    if kind == "int":
        d = draw(st.integers(0, ndim - 1))
        return d - ndim if draw(st.booleans()) else d
    chosen = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
    return tuple(d - ndim if draw(st.booleans()) else d for d in chosen)


# ---------------------------------------------------------------------------
# The comparison
# ---------------------------------------------------------------------------


def _assert_close(got, expected, what):
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, torch has {expected.shape}"
    assert got.dtype == expected.dtype, f"{what}: dtype {got.dtype}, torch has {expected.dtype}"
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL, err_msg=what)


def run_both(fn, arrays, seed):
    """``fn(module, *tensors)`` in minigrad and PyTorch: same outputs, same input gradients.

    The first output is backpropagated with a random upstream gradient;
    further outputs (the indices of max) are compared as values.
    """
    mg_in = [mg.tensor(a, requires_grad=True) for a in arrays]
    th_in = [torch.tensor(a, requires_grad=True) for a in arrays]
    mg_out, th_out = fn(mg, *mg_in), fn(torch, *th_in)
    if not isinstance(mg_out, tuple):
        mg_out, th_out = (mg_out,), (th_out,)
    for k, (m, t) in enumerate(zip(mg_out, th_out, strict=True)):
        _assert_close(m.detach().numpy(), t.detach().numpy(), f"output {k}")

    upstream = np.random.default_rng(seed).standard_normal(tuple(th_out[0].shape))
    mg_out[0].backward(mg.tensor(upstream))
    th_out[0].backward(torch.tensor(upstream))
    for k, (m, t) in enumerate(zip(mg_in, th_in, strict=True)):
        assert m.grad is not None, f"input {k}: no gradient"
        _assert_close(m.grad.numpy(), t.grad.numpy(), f"grad of input {k}")


def normal(rng, shape):
    return rng.standard_normal(shape)


def away_from_zero(rng, shape):
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.5, 2.0, shape)


def positive(rng, shape):
    return rng.uniform(0.5, 2.0, shape)


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------

BINARY = {
    "add": (lambda m, a, b: a + b, normal, normal),
    "sub": (lambda m, a, b: a - b, normal, normal),
    "mul": (lambda m, a, b: a * b, normal, normal),
    "div": (lambda m, a, b: a / b, normal, away_from_zero),
    "pow": (lambda m, a, b: a**b, positive, normal),
}


@SETTINGS
@given(op=st.sampled_from(sorted(BINARY)), pair=broadcast_pairs(), seed=seeds)
def test_binary_op_broadcasts_like_torch(op, pair, seed):
    fn, make_a, make_b = BINARY[op]
    rng = np.random.default_rng(seed)
    run_both(fn, [make_a(rng, pair[0]), make_b(rng, pair[1])], seed)


UNARY = {
    "exp": lambda m, x: x.exp(),
    "abs": lambda m, x: x.abs(),
    "neg": lambda m, x: -x,
    "relu": lambda m, x: x.relu(),
    "sigmoid": lambda m, x: x.sigmoid(),
    "tanh": lambda m, x: x.tanh(),
    "clamp": lambda m, x: x.clamp(-0.5, 0.5),
    "x ** 2": lambda m, x: x**2,
    "3 - x": lambda m, x: 3 - x,
    "2 ** x": lambda m, x: 2**x,
}


@SETTINGS
@given(op=st.sampled_from(sorted(UNARY)), shape=shapes, seed=seeds)
def test_unary_op_like_torch(op, shape, seed):
    run_both(UNARY[op], [normal(np.random.default_rng(seed), shape)], seed)


@SETTINGS
@given(data=st.data(), shape=shapes, seed=seeds)
def test_sum_mean_var_like_torch(data, shape, seed):
    dim = data.draw(reduction_dims(len(shape)), label="dim")
    keepdim = data.draw(st.booleans(), label="keepdim")
    name = data.draw(st.sampled_from(["sum", "mean", "var", "var correction=0"]), label="op")
    options = {"correction": 0} if name == "var correction=0" else {}
    method = name.split()[0]

    def fn(m, x):
        if dim is None and not keepdim:
            return getattr(x, method)(**options)
        return getattr(x, method)(dim=dim, keepdim=keepdim, **options)

    # empty reductions and N <= correction give NaN/Inf, in both libraries
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_both(fn, [normal(np.random.default_rng(seed), shape)], seed)


@SETTINGS
@given(data=st.data(), shape=shapes.filter(lambda s: len(s) > 0), seed=seeds)
def test_max_along_dim_like_torch(data, shape, seed):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1), label="dim")
    keepdim = data.draw(st.booleans(), label="keepdim")
    x = normal(np.random.default_rng(seed), shape)
    if shape[dim] == 0:  # no maximum over an empty dim: both refuse
        with pytest.raises((ValueError, IndexError, RuntimeError)):
            mg.tensor(x).max(dim, keepdim=keepdim)
        with pytest.raises((ValueError, IndexError, RuntimeError)):
            torch.tensor(x).max(dim, keepdim=keepdim)
        return
    run_both(lambda m, t: tuple(t.max(dim, keepdim=keepdim)), [x], seed)


@SETTINGS
@given(data=st.data(), shape=shapes.filter(lambda s: 0 not in s), seed=seeds)
def test_max_of_all_like_torch(data, shape, seed):
    run_both(lambda m, t: t.max(), [normal(np.random.default_rng(seed), shape)], seed)


@SETTINGS
@given(data=st.data(), shape=shapes.filter(lambda s: len(s) > 0), seed=seeds)
def test_softmax_like_torch(data, shape, seed):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1), label="dim")
    name = data.draw(st.sampled_from(["softmax", "log_softmax"]), label="op")
    run_both(lambda m, x: getattr(x, name)(dim), [normal(np.random.default_rng(seed), shape)], seed)


@SETTINGS
@given(data=st.data(), shape=shapes, seed=seeds)
def test_permute_round_trip(data, shape, seed):
    order = tuple(data.draw(st.permutations(range(len(shape))), label="order"))
    inverse = tuple(int(i) for i in np.argsort(order))
    x = normal(np.random.default_rng(seed), shape)
    run_both(lambda m, t: t.permute(order), [x], seed)
    run_both(lambda m, t: t.permute(order).permute(inverse) * t, [x], seed)
    back = mg.tensor(x).permute(order).permute(inverse)
    np.testing.assert_array_equal(back.numpy(), x)


@st.composite
def reshapes(draw, shape):
    """Another shape with as many elements: dims shuffled, 1s inserted, two neighbours merged."""
    dims = list(draw(st.permutations(list(shape))))
    for _ in range(draw(st.integers(0, 2))):
        dims.insert(draw(st.integers(0, len(dims))), 1)
    if len(dims) >= 2 and draw(st.booleans()):
        k = draw(st.integers(0, len(dims) - 2))
        dims[k : k + 2] = [dims[k] * dims[k + 1]]
    return tuple(dims)


@SETTINGS
@given(data=st.data(), shape=shapes, seed=seeds)
def test_reshape_round_trip(data, shape, seed):
    target = data.draw(reshapes(shape), label="target")
    x = normal(np.random.default_rng(seed), shape)
    run_both(lambda m, t: t.reshape(target), [x], seed)
    run_both(lambda m, t: t.reshape(target).exp().view(shape), [x], seed)
    back = mg.tensor(x).reshape(target).reshape(shape)
    np.testing.assert_array_equal(back.numpy(), x)


@st.composite
def matmul_shapes(draw):
    """(m, k) x (k, n) with each in 0..5, maybe as vectors, maybe with broadcast batch dims."""
    m, k, n = draw(sizes), draw(sizes), draw(sizes)
    kind = draw(
        st.sampled_from(["matrix", "vector @ matrix", "matrix @ vector", "vector @ vector"])
    )
    a = (k,) if kind.startswith("vector") else (m, k)
    b = (k,) if kind.endswith("vector") else (k, n)
    if draw(st.booleans()):
        batch_a, batch_b = draw(broadcast_pairs().filter(lambda p: max(map(len, p)) <= 2))
        if len(a) == 2:
            a = batch_a + a
        if len(b) == 2:
            b = batch_b + b
    return a, b


@SETTINGS
@given(pair=matmul_shapes(), seed=seeds)
def test_matmul_like_torch(pair, seed):
    rng = np.random.default_rng(seed)
    run_both(lambda m, a, b: a @ b, [normal(rng, pair[0]), normal(rng, pair[1])], seed)
