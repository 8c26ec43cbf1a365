"""minigrad against PyTorch: the same expression, the same data, the same answers.

Each case is a function of a module (``mg`` or ``torch``) and its input
tensors. ``check`` runs it in both libraries on identical data and compares
the outputs (shape, dtype, values) and the gradient of every float input,
after a backward with a random upstream gradient.

Tolerances: float64 rtol=1e-10, atol=1e-12; float32 rtol=1e-5, atol=1e-6
(both libraries round each float32 op, but may sum in a different order).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import minigrad as mg  # noqa: E402

TOLERANCE = {
    np.dtype(np.float64): {"rtol": 1e-10, "atol": 1e-12},
    np.dtype(np.float32): {"rtol": 1e-5, "atol": 1e-6},
}
FLOATS = [np.float64, np.float32]


@pytest.fixture(params=sorted(mg.backend._BACKENDS), autouse=True, scope="module")
def backend(request):
    """Run every test on each backend that is built, then put the old one back."""
    previous = mg.get_backend()
    mg.set_backend(request.param)
    yield request.param
    mg.set_backend(previous)


# ---------------------------------------------------------------------------
# The helper
# ---------------------------------------------------------------------------

_rng = np.random.default_rng(20240501)


def normal(*shape):
    return _rng.standard_normal(shape)


def positive(*shape):
    return _rng.uniform(0.5, 2.0, shape)


def away_from_zero(*shape):
    return _rng.choice([-1.0, 1.0], shape) * _rng.uniform(0.5, 2.0, shape)


def _inputs(module, arrays, dtype):
    """Float arrays become tensors of ``dtype`` that require grad; others keep their dtype."""
    tensors = []
    for a in arrays:
        a = np.asarray(a)
        if a.dtype.kind == "f":
            a = a.astype(dtype)
            if module is torch:
                tensors.append(torch.tensor(a, requires_grad=True))
            else:
                tensors.append(mg.tensor(a, requires_grad=True))
        else:
            tensors.append(module.tensor(a))
    return tensors


def _as_numpy(t):
    return t.detach().numpy()


def _outputs(result):
    if isinstance(result, (tuple, list)):
        return tuple(result)
    return (result,)


def assert_same(got, expected, dtype, what, tolerance=None):
    """One minigrad array against one PyTorch array: shape, dtype and values."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, torch has {expected.shape}"
    assert got.dtype == expected.dtype, f"{what}: dtype {got.dtype}, torch has {expected.dtype}"
    if got.dtype.kind == "f":
        tolerance = tolerance or TOLERANCE[np.dtype(dtype)]
        np.testing.assert_allclose(got, expected, err_msg=what, **tolerance)
    else:
        np.testing.assert_array_equal(got, expected, err_msg=what)


def check(fn, *arrays, dtype=np.float64, upstream="random", tolerance=None):
    """Run ``fn(module, *tensors)`` with module = mg and torch; compare outputs and grads.

    ``arrays``: NumPy arrays; the float ones are cast to ``dtype`` and require
    grad. The first float output that requires grad is backpropagated with a
    random upstream gradient (``upstream="random"``) or ones (``"ones"``), and
    the ``.grad`` of every input is compared (both None, or equal).
    ``tolerance`` ({"rtol": .., "atol": ..}) replaces the dtype's default.
    """
    mg_in = _inputs(mg, arrays, dtype)
    th_in = _inputs(torch, arrays, dtype)
    mg_out = _outputs(fn(mg, *mg_in))
    th_out = _outputs(fn(torch, *th_in))
    assert len(mg_out) == len(th_out), f"{len(mg_out)} outputs, torch has {len(th_out)}"
    for k, (m, t) in enumerate(zip(mg_out, th_out, strict=True)):
        assert_same(_as_numpy(m), _as_numpy(t), dtype, f"output {k}", tolerance)
        assert m.requires_grad == t.requires_grad, f"output {k}: requires_grad {m.requires_grad}"

    for m, t in zip(mg_out, th_out, strict=True):
        if t.requires_grad:
            if upstream == "random":
                g = _rng.standard_normal(tuple(t.shape)).astype(_as_numpy(t).dtype)
            else:
                g = np.ones(tuple(t.shape), dtype=_as_numpy(t).dtype)
            t.backward(torch.tensor(g))
            m.backward(mg.tensor(g))
            break

    for k, (m, t) in enumerate(zip(mg_in, th_in, strict=True)):
        if t.grad is None:
            assert m.grad is None, f"input {k}: grad is set, torch has None"
        else:
            assert m.grad is not None, f"input {k}: grad is None, torch has one"
            assert_same(m.grad.numpy(), t.grad.numpy(), dtype, f"grad of input {k}", tolerance)


def test_check_catches_a_wrong_gradient():
    """The helper itself: a gradient that differs from PyTorch's must fail."""

    def fn(m, x):
        if m is mg:
            return x * 2 + 0
        return x * 2 + x.detach() * 0 + (x - x.detach()) * 1e-3

    with pytest.raises(AssertionError, match="grad of input 0"):
        check(fn, normal(3))


# ---------------------------------------------------------------------------
# Arithmetic
# ---------------------------------------------------------------------------

BROADCAST_PAIRS = [
    ((2, 3), (2, 3)),
    ((3, 1), (1, 4)),
    ((2, 3, 4), (4,)),
    ((4,), (2, 3, 4)),
    ((), (2, 3)),
    ((2, 3), ()),
    ((), ()),
    ((4, 1, 3), (2, 1)),
    ((1,), (5,)),
    ((0, 3), (1, 3)),
    ((2, 0, 4), (4,)),
    ((1, 0), (3, 1)),
]

BINARY = {
    "add": (lambda m, a, b: a + b, normal, normal),
    "sub": (lambda m, a, b: a - b, normal, normal),
    "mul": (lambda m, a, b: a * b, normal, normal),
    "div": (lambda m, a, b: a / b, normal, away_from_zero),
    "pow": (lambda m, a, b: a**b, positive, normal),
}


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shapes", BROADCAST_PAIRS, ids=str)
@pytest.mark.parametrize("op", sorted(BINARY))
def test_binary_op_broadcasting(op, shapes, dtype):
    fn, make_a, make_b = BINARY[op]
    check(fn, make_a(*shapes[0]), make_b(*shapes[1]), dtype=dtype)


SCALAR_CASES = {
    "x + 2": (lambda m, x: x + 2, normal),
    "2 + x": (lambda m, x: 2 + x, normal),
    "x - 1.5": (lambda m, x: x - 1.5, normal),
    "3 - x": (lambda m, x: 3 - x, normal),
    "x * 2.5": (lambda m, x: x * 2.5, normal),
    "-2 * x": (lambda m, x: -2 * x, normal),
    "x / 4": (lambda m, x: x / 4, normal),
    "1 / x": (lambda m, x: 1 / x, away_from_zero),
    "x ** 2": (lambda m, x: x**2, normal),
    "x ** 3": (lambda m, x: x**3, normal),
    "x ** 0.5": (lambda m, x: x**0.5, positive),
    "x ** -1.5": (lambda m, x: x**-1.5, positive),
    "x ** 1": (lambda m, x: x**1, normal),
    "2 ** x": (lambda m, x: 2**x, normal),
    "0.5 ** x": (lambda m, x: 0.5**x, normal),
    "-x": (lambda m, x: -x, normal),
    "x.pow(2)": (lambda m, x: x.pow(2), normal),
}


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("case", sorted(SCALAR_CASES))
def test_scalar_operand(case, dtype):
    fn, make = SCALAR_CASES[case]
    check(fn, make(2, 3), dtype=dtype)


def test_pow_zero_exponent_at_zero_base():
    """d(x**0)/dx is 0 everywhere in PyTorch, x = 0 included."""
    check(lambda m, x: x**0, np.array([0.0, 1.0, -2.0]))


def test_pow_tensor_exponent_at_zero_base():
    """0 ** e: PyTorch gives 0 for both gradients where e == 0 (for e also where e > 0)."""
    check(lambda m, b, e: b**e, np.array([0.0, 0.0, 0.0, 2.0]), np.array([0.0, 1.0, 2.5, 0.0]))


def test_pow_tensor_exponent_zero_dim():
    check(lambda m, x, e: x**e, positive(2, 3), np.array(1.5))


def test_chain_of_arithmetic_reuses_inputs():
    check(lambda m, x, y: (x * y + x / (y * y + 1) - 3 * x) ** 2, normal(3, 4), normal(4))


# ---------------------------------------------------------------------------
# Matrix product
# ---------------------------------------------------------------------------

MATMUL_SHAPES = [
    ((3, 4), (4, 5)),
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((4,), (4,)),
    ((2, 3, 4), (2, 4, 5)),
    ((2, 3, 4), (4, 5)),
    ((4, 5), (2, 5, 3)),
    ((2, 1, 3, 4), (5, 4, 2)),
    ((4,), (2, 4, 5)),
    ((2, 3, 4), (4,)),
    ((1, 1), (1, 1)),
    ((0, 4), (4, 5)),
    ((3, 0), (0, 5)),
    ((3, 4), (4, 0)),
    ((0,), (0,)),
]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul(shapes, dtype):
    check(lambda m, a, b: a @ b, normal(*shapes[0]), normal(*shapes[1]), dtype=dtype)


@pytest.mark.parametrize("dtype", FLOATS)
def test_matmul_of_transposed_operands(dtype):
    check(lambda m, a, b: a.T @ b.transpose(0, 1), normal(4, 3), normal(5, 4), dtype=dtype)


# sizes that leave partial register tiles and cache blocks in a blocked GEMM
LARGER_MATMULS = [
    ((67, 129), (129, 33)),
    ((1, 300), (300, 70)),
    ((130, 5), (5, 260)),
    ((3, 17, 40), (40, 9)),
]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shapes", LARGER_MATMULS, ids=str)
def test_matmul_larger_odd_sizes(shapes, dtype):
    # float32 sums of ~300 products: absolute error of a few ulps of the row norm
    tolerance = {"rtol": 1e-5, "atol": 1e-4} if dtype == np.float32 else None
    check(
        lambda m, a, b: a @ b,
        normal(*shapes[0]),
        normal(*shapes[1]),
        dtype=dtype,
        tolerance=tolerance,
    )


def test_matmul_one_operand_without_grad():
    w = normal(4, 5)
    check(lambda m, x: x @ m.tensor(w), normal(3, 4))
    check(lambda m, x: m.tensor(w).T @ x, normal(4, 2))


# ---------------------------------------------------------------------------
# Comparisons (values only)
# ---------------------------------------------------------------------------

COMPARISONS = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


@pytest.mark.parametrize("op", sorted(COMPARISONS))
def test_comparison(op):
    compare = COMPARISONS[op]
    # small integers as floats, so that some elements are equal
    a = _rng.integers(-2, 3, (3, 1)).astype(np.float64)
    b = _rng.integers(-2, 3, (1, 4)).astype(np.float64)
    check(lambda m, x, y: compare(x, y), a, b)
    check(lambda m, x: compare(x, 1.0), a)
    check(lambda m, x: compare(1, x), a)


# ---------------------------------------------------------------------------
# Elementwise math
# ---------------------------------------------------------------------------

AT_BOUNDS = np.array([-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0])

UNARY = {
    "exp": (lambda m, x: x.exp(), normal(3, 4)),
    "log": (lambda m, x: x.log(), positive(3, 4)),
    "sqrt": (lambda m, x: x.sqrt(), positive(3, 4)),
    "abs": (lambda m, x: x.abs(), np.concatenate([normal(5), [0.0]])),
    "abs()": (lambda m, x: abs(x), normal(2, 3)),
    "clamp min": (lambda m, x: x.clamp(min=-0.5), normal(3, 4)),
    "clamp max": (lambda m, x: x.clamp(max=0.25), normal(3, 4)),
    "clamp both": (lambda m, x: x.clamp(-0.5, 0.25), normal(3, 4)),
    "clamp min at bounds": (lambda m, x: x.clamp(min=-0.5), AT_BOUNDS),
    "clamp max at bounds": (lambda m, x: x.clamp(max=0.5), AT_BOUNDS),
    "clamp both at bounds": (lambda m, x: x.clamp(-0.5, 0.5), AT_BOUNDS),
    "clamp min > max": (lambda m, x: x.clamp(0.5, -0.5), AT_BOUNDS),
    "relu": (lambda m, x: x.relu(), np.concatenate([normal(7), [0.0]])),
    "sigmoid": (lambda m, x: x.sigmoid(), 4 * normal(3, 4)),
    "tanh": (lambda m, x: x.tanh(), 2 * normal(3, 4)),
    "exp of 0-d": (lambda m, x: x.exp(), normal()),
    "relu of 0-d": (lambda m, x: x.relu(), normal()),
    "sigmoid of 0-d": (lambda m, x: x.sigmoid(), normal()),
    "tanh of 0-d": (lambda m, x: x.tanh(), normal()),
    "sigmoid of empty": (lambda m, x: x.sigmoid(), normal(2, 0)),
    "tanh of empty": (
        lambda m, x: x.tanh(),
        normal(
            0,
        ),
    ),
    "relu of empty": (lambda m, x: x.relu(), normal(0, 3)),
}


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("case", sorted(UNARY))
def test_unary(case, dtype):
    fn, x = UNARY[case]
    check(fn, x, dtype=dtype)


def test_sqrt_and_log_at_zero():
    """Infinite values and gradients agree too (sqrt'(0) = inf, log(0) = -inf)."""
    with np.errstate(divide="ignore"):
        check(lambda m, x: x.sqrt(), np.array([0.0, 1.0, 4.0]), upstream="ones")
        check(lambda m, x: x.log(), np.array([0.0, 1.0, 4.0]), upstream="ones")


# ---------------------------------------------------------------------------
# Reductions
# ---------------------------------------------------------------------------

DIMS = [None, 0, 1, 2, -1, -3, (0, 2), (-1, 0), (0, 1, 2), (1,)]
KEEP = [False, True]


def _reduce(name, dim, keepdim, **kwargs):
    def fn(m, x):
        if dim is None and not keepdim:
            return getattr(x, name)(**kwargs)
        return getattr(x, name)(dim=dim, keepdim=keepdim, **kwargs)

    return fn


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("keepdim", KEEP)
@pytest.mark.parametrize("dim", DIMS, ids=str)
@pytest.mark.parametrize("name", ["sum", "mean"])
def test_sum_mean(name, dim, keepdim, dtype):
    check(_reduce(name, dim, keepdim), normal(2, 3, 4), dtype=dtype)


# correction=2 over a dim of size 2 divides by zero: both libraries give inf or nan
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:.*degrees of freedom:UserWarning")
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("keepdim", KEEP)
@pytest.mark.parametrize("dim", DIMS, ids=str)
@pytest.mark.parametrize(
    "options",
    [{}, {"correction": 0}, {"unbiased": False}, {"unbiased": True}, {"correction": 2}],
    ids=str,
)
def test_var(options, dim, keepdim, dtype):
    check(_reduce("var", dim, keepdim, **options), normal(2, 3, 4), dtype=dtype)


@pytest.mark.parametrize("name", ["sum", "mean"])
@pytest.mark.parametrize(
    "shape, dim", [((0, 3), 0), ((0, 3), 1), ((2, 0, 3), (0, 2)), ((1, 3), 0)], ids=str
)
def test_sum_mean_of_zero_and_one_sized_dims(name, shape, dim):
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        check(_reduce(name, dim, False), normal(*shape))


def test_sum_of_everything_to_zero_dim():
    check(lambda m, x: x.sum(), normal(0, 4))
    check(lambda m, x: x.sum(), normal())
    check(lambda m, x: x.sum(0), normal())


@pytest.mark.parametrize("dtype", FLOATS)
def test_max_of_all(dtype):
    check(lambda m, x: x.max(), normal(3, 4), dtype=dtype)


def test_max_of_all_shares_the_gradient_between_ties():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 3.0, 0.0]])
    check(lambda m, t: t.max(), x)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("keepdim", KEEP)
@pytest.mark.parametrize("dim", [0, 1, 2, -1, -2])
def test_max_along_dim_values_and_indices(dim, keepdim, dtype):
    check(lambda m, x: tuple(x.max(dim, keepdim=keepdim)), normal(2, 3, 4), dtype=dtype)


def test_max_along_dim_with_ties_picks_the_first():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0], [5.0, 5.0, 5.0]])
    check(lambda m, t: tuple(t.max(1)), x)
    check(lambda m, t: tuple(t.max(0, keepdim=True)), x)


def test_max_named_fields():
    x = normal(3, 4)
    got = mg.tensor(x).max(1)
    expected = torch.tensor(x).max(1)
    assert_same(got.values.numpy(), expected.values.numpy(), np.float64, "values")
    assert_same(got.indices.numpy(), expected.indices.numpy(), np.float64, "indices")


def test_max_along_dim_of_zero_dim_tensor():
    check(lambda m, x: tuple(x.max(0)), np.array(2.5))


NAN_CASES = {
    "sum": lambda m, x: x.sum(),
    "exp": lambda m, x: x.exp(),
    "clamp": lambda m, x: x.clamp(0.0, 2.0),
    "sigmoid": lambda m, x: x.sigmoid(),
    "tanh": lambda m, x: x.tanh(),
    "max along dim": lambda m, x: tuple(x.max(0)),
    "max": lambda m, x: x.max(),
    "relu": lambda m, x: x.relu(),
    "abs": lambda m, x: x.abs(),
}


@pytest.mark.parametrize("case", list(NAN_CASES))
def test_nan_input(case):
    """A NaN element: the values and the gradients PyTorch gives, NaN where it has NaN."""
    check(NAN_CASES[case], np.array([1.0, np.nan, -3.0]), upstream="ones")


# ---------------------------------------------------------------------------
# Shape ops
# ---------------------------------------------------------------------------

SHAPE_CASES = {
    "reshape ints": (lambda m, x: x.reshape(4, 6), (2, 3, 4)),
    "reshape tuple": (lambda m, x: x.reshape((6, -1)), (2, 3, 4)),
    "reshape -1": (lambda m, x: x.reshape(-1), (2, 3, 4)),
    "reshape to 0-d": (lambda m, x: x.reshape(()), (1, 1)),
    "reshape empty": (lambda m, x: x.reshape(3, 0), (0, 3)),
    "view": (lambda m, x: x.view(3, 8), (2, 3, 4)),
    "view -1": (lambda m, x: x.view(-1, 4), (2, 3, 4)),
    "flatten": (lambda m, x: x.flatten(), (2, 3, 4)),
    "flatten 1": (lambda m, x: x.flatten(1), (2, 3, 4)),
    "flatten 0 1": (lambda m, x: x.flatten(0, 1), (2, 3, 4)),
    "flatten -2 -1": (lambda m, x: x.flatten(-2, -1), (2, 3, 4)),
    "flatten 0-d": (lambda m, x: x.flatten(), ()),
    "transpose 0 2": (lambda m, x: x.transpose(0, 2), (2, 3, 4)),
    "transpose -1 0": (lambda m, x: x.transpose(-1, 0), (2, 3, 4)),
    "transpose 1 1": (lambda m, x: x.transpose(1, 1), (2, 3, 4)),
    "T": (lambda m, x: x.T, (3, 4)),
    "permute": (lambda m, x: x.permute(2, 0, 1), (2, 3, 4)),
    "permute tuple": (lambda m, x: x.permute((1, 2, 0)), (2, 3, 4)),
    "permute negative": (lambda m, x: x.permute(-1, 0, -2), (2, 3, 4)),
    "squeeze": (lambda m, x: x.squeeze(), (1, 3, 1, 2)),
    "squeeze 0": (lambda m, x: x.squeeze(0), (1, 3, 1, 2)),
    "squeeze -2": (lambda m, x: x.squeeze(-2), (1, 3, 1, 2)),
    "squeeze non-1 dim": (lambda m, x: x.squeeze(1), (1, 3, 1, 2)),
    "squeeze all ones": (lambda m, x: x.squeeze(), (1, 1)),
    "unsqueeze 0": (lambda m, x: x.unsqueeze(0), (2, 3)),
    "unsqueeze 2": (lambda m, x: x.unsqueeze(2), (2, 3)),
    "unsqueeze -1": (lambda m, x: x.unsqueeze(-1), (2, 3)),
    "unsqueeze -3": (lambda m, x: x.unsqueeze(-3), (2, 3)),
    "unsqueeze 0-d": (lambda m, x: x.unsqueeze(0), ()),
    "chain": (lambda m, x: x.permute(1, 0, 2).reshape(3, 8).T.unsqueeze(1).squeeze(), (2, 3, 4)),
}


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("case", sorted(SHAPE_CASES))
def test_shape_op(case, dtype):
    fn, shape = SHAPE_CASES[case]
    check(fn, normal(*shape), dtype=dtype)


@pytest.mark.filterwarnings("ignore:The use of `x.T`", "ignore:Tensor.T is deprecated")
@pytest.mark.parametrize("shape", [(4,), (2, 3, 4), ()], ids=str)
def test_T_of_other_ranks(shape):
    check(lambda m, x: x.T, normal(*shape))


def test_squeeze_dim_of_zero_dim_tensor():
    check(lambda m, x: x.squeeze(0), np.array(1.5))


def test_transpose_of_zero_dim_tensor():
    check(lambda m, x: x.transpose(0, -1), np.array(1.5))


def test_view_shares_nothing_with_grad():
    """Two views of one tensor in one expression: their gradients add."""
    check(lambda m, x: x.view(6) * x.reshape(2, 3).flatten(), normal(3, 2))


# ---------------------------------------------------------------------------
# Indexing
# ---------------------------------------------------------------------------

MASK = _rng.random((4, 5)) > 0.5

INDEX_CASES = {
    "int": lambda m, x: x[1],
    "negative int": lambda m, x: x[-1],
    "two ints": lambda m, x: x[1, -2],
    "three ints": lambda m, x: x[3, 4, 5],
    "slice": lambda m, x: x[1:3],
    "slice step": lambda m, x: x[::2],
    "slices with steps": lambda m, x: x[1::2, ::3, 1:5:2],
    "negative slice bounds": lambda m, x: x[-3:-1, :-2],
    "empty slice": lambda m, x: x[2:2],
    "slice past the end": lambda m, x: x[2:10, 4:],
    "None": lambda m, x: x[None],
    "None in the middle": lambda m, x: x[:, None, 2:],
    "Ellipsis": lambda m, x: x[..., 1],
    "Ellipsis and None": lambda m, x: x[1, ..., None, 2],
    "list": lambda m, x: x[[0, 2]],
    "list with repeats": lambda m, x: x[[0, 0, 2, 0]],
    "list of negatives": lambda m, x: x[[-1, 0, -1]],
    "two lists": lambda m, x: x[[0, 1, 1], [2, 2, 4]],
    "list after slice": lambda m, x: x[:, [1, 1, 3]],
    "2-d array index": lambda m, x: x[np.array([[0, 1], [1, 0]])],
    "int and list": lambda m, x: x[1, [0, 0, 4]],
    "lists around a slice": lambda m, x: x[[0, 3], :, [5, 5]],
    "tensor index": lambda m, x: x[m.tensor([3, 0, 3])],
    "2-d tensor index": lambda m, x: x[m.tensor([[1, 1], [2, 0]])],
    "0-d tensor index": lambda m, x: x[m.tensor(2)],
    "tensor and slice": lambda m, x: x[1:, m.tensor([4, 0, 4])],
    "bool mask": lambda m, x: x[m.tensor(MASK)],
    "bool mask on dim 0": lambda m, x: x[m.tensor([True, False, True, True])],
    "bool mask after slice": lambda m, x: x[:, m.tensor([True, False, False, True, True])],
    "mask from a comparison": lambda m, x: x[x > 0],
}


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("case", sorted(INDEX_CASES))
def test_getitem(case, dtype):
    check(INDEX_CASES[case], normal(4, 5, 6), dtype=dtype)


def test_getitem_of_one_dim():
    check(lambda m, x: x[[2, 2, 2]] * x[1:].sum(), normal(4))
    check(lambda m, x: x[x.abs() < 10], normal(4))


# ---------------------------------------------------------------------------
# cat and stack
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("dim", [0, 1, 2, -1, -3])
def test_cat(dim, dtype):
    shapes = []
    for size in (2, 1, 3):
        shape = [2, 3, 4]
        shape[dim] = size
        shapes.append(tuple(shape))
    check(lambda m, a, b, c: m.cat([a, b, c], dim=dim), *(normal(*s) for s in shapes), dtype=dtype)


def test_cat_with_an_empty_part_and_a_tuple():
    check(lambda m, a, b: m.cat((a, b), 1), normal(2, 0), normal(2, 3))
    check(lambda m, a: m.cat([a]), normal(3))


def test_cat_same_tensor_twice():
    check(lambda m, a: m.cat([a, a * 2], -1), normal(2, 3))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("dim", [0, 1, 2, 3, -1, -4])
def test_stack(dim, dtype):
    check(
        lambda m, a, b, c: m.stack([a, b, c], dim=dim),
        normal(2, 3, 4),
        normal(2, 3, 4),
        normal(2, 3, 4),
        dtype=dtype,
    )


def test_stack_of_zero_dim_and_empty():
    check(lambda m, a, b: m.stack([a, b]), normal(), normal())
    check(lambda m, a, b: m.stack([a, b], 1), normal(0, 2), normal(0, 2))


def test_cat_and_stack_with_an_input_without_grad():
    c = normal(2, 3)
    check(lambda m, a: m.cat([a, m.tensor(c)]), normal(2, 3))
    check(lambda m, a: m.stack([m.tensor(c), a], 1), normal(2, 3))


# ---------------------------------------------------------------------------
# softmax and log_softmax
# ---------------------------------------------------------------------------

SOFTMAX_INPUTS = {
    "2-d": normal(3, 4),
    "3-d": normal(2, 3, 4),
    "large": 300 * normal(3, 4),
    "one column": normal(3, 1),
}


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("dim", [0, 1, -1, -2])
@pytest.mark.parametrize("data", sorted(SOFTMAX_INPUTS))
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax(name, data, dim, dtype):
    check(lambda m, x: getattr(x, name)(dim), SOFTMAX_INPUTS[data], dtype=dtype)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_with_a_masked_entry(name):
    x = normal(2, 4)
    x[0, 1] = -np.inf
    check(lambda m, t: getattr(t, name)(dim=1), x)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_of_zero_dim_and_empty(name):
    check(lambda m, x: getattr(x, name)(0), normal())
    check(lambda m, x: getattr(x, name)(-1), normal())
    check(lambda m, x: getattr(x, name)(1), normal(3, 0))
    check(lambda m, x: getattr(x, name)(1), normal(0, 3))


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_of_each_dim_of_3d(name):
    for dim in (0, 1, 2, -3):
        check(lambda m, x, dim=dim: getattr(x, name)(dim=dim), normal(2, 3, 4))


# ---------------------------------------------------------------------------
# dtypes
# ---------------------------------------------------------------------------


def _same_dtype(fn, *arrays):
    got = fn(mg, *(mg.tensor(a) for a in arrays))
    expected = fn(torch, *(torch.tensor(a) for a in arrays))
    assert got.dtype == expected.numpy().dtype, f"{got.dtype}, torch gives {expected.dtype}"


@pytest.mark.parametrize(
    "fn",
    [
        lambda m, x: x + 2.5,
        lambda m, x: 2.5 + x,
        lambda m, x: x * 2,
        lambda m, x: x / 3,
        lambda m, x: 1 / x,
        lambda m, x: x - 1e20,
        lambda m, x: x**2.0,
        lambda m, x: 2.0**x,
        lambda m, x: x.clamp(0.1, 1e30),
        lambda m, x: x.sum() * 0.1,
    ],
)
@pytest.mark.parametrize("dtype", FLOATS)
def test_python_scalar_keeps_the_tensor_dtype(fn, dtype):
    _same_dtype(fn, positive(2, 3).astype(dtype))


def test_float32_and_float64_promote_to_float64():
    a32, b64 = normal(2, 3).astype(np.float32), normal(3)
    for fn in (
        lambda m, a, b: a + b,
        lambda m, a, b: b - a,
        lambda m, a, b: a * b,
        lambda m, a, b: b / (a * a + 1),
        lambda m, a, b: m.cat([a, b.reshape(1, 3)]),
    ):
        _check_mixed(fn, a32, b64)


def _check_mixed(fn, a32, b64):
    """Outputs are float64; the float32 input's gradient stays float32, as in PyTorch."""
    mg_in = [mg.tensor(a32, requires_grad=True), mg.tensor(b64, requires_grad=True)]
    th_in = [torch.tensor(a32, requires_grad=True), torch.tensor(b64, requires_grad=True)]
    out_mg, out_th = fn(mg, *mg_in), fn(torch, *th_in)
    assert_same(out_mg.detach().numpy(), out_th.detach().numpy(), np.float32, "output")
    out_mg.sum().backward()
    out_th.sum().backward()
    for k, (m, t) in enumerate(zip(mg_in, th_in, strict=True)):
        assert_same(m.grad.numpy(), t.grad.numpy(), np.float32, f"grad of input {k}")


def test_tensor_factory_dtypes():
    assert mg.tensor([1.0]).dtype == mg.float32 == torch.tensor([1.0]).numpy().dtype
    assert mg.tensor(1.5).dtype == mg.float32
    assert mg.tensor([1]).dtype == mg.int64 == torch.tensor([1]).numpy().dtype
    assert mg.tensor([True]).dtype == mg.bool_ == torch.tensor([True]).numpy().dtype
    assert mg.tensor([1.0, 2], dtype=mg.float64).dtype == mg.float64
    for array in (np.ones(2), np.ones(2, np.float32), np.ones(2, np.int64)):
        assert mg.tensor(array).dtype == torch.tensor(array).numpy().dtype


def test_integer_results_keep_integer_dtype():
    _same_dtype(lambda m, x: x * 2 + 1, np.arange(6).reshape(2, 3))
    _same_dtype(lambda m, x: x.sum(), np.arange(6).reshape(2, 3))
    _same_dtype(lambda m, x: x.sum(1), np.arange(6).reshape(2, 3) > 2)


# ---------------------------------------------------------------------------
# Autograd behaviour
# ---------------------------------------------------------------------------


def _pair(array, dtype=np.float64):
    a = np.asarray(array, dtype=dtype)
    return mg.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)


def _same_grad(m, t, what="grad"):
    assert (m.grad is None) == (t.grad is None), f"{what}: {m.grad} vs torch {t.grad}"
    if t.grad is not None:
        assert_same(m.grad.numpy(), t.grad.numpy(), np.float64, what)


def test_gradients_accumulate_over_two_backwards():
    data = normal(3, 4)
    xs = _pair(data)
    for x in xs:
        (x * x).sum().backward()
        (x.exp() * 3).sum().backward()
    _same_grad(*xs)


def test_second_backward_without_retain_graph_raises():
    for x in _pair(normal(3)):
        y = (x * x).sum()
        y.backward()
        with pytest.raises(RuntimeError):
            y.backward()
        z = x.exp().sum()
        z.backward()
        with pytest.raises(RuntimeError):
            z.backward()


def test_retain_graph_allows_a_second_backward():
    xs = _pair(normal(3, 2))
    for x in xs:
        y = (x * x.tanh()).sum()
        y.backward(retain_graph=True)
        y.backward(retain_graph=True)
        y.backward()
        with pytest.raises(RuntimeError):
            y.backward()
    _same_grad(*xs)


def test_backward_of_non_scalar_needs_a_gradient():
    for x in _pair(normal(3)):
        with pytest.raises(RuntimeError):
            (x * 2).backward()


def test_register_hook_doubling_a_leaf_gradient():
    xs = _pair(normal(3))
    for x in xs:
        x.register_hook(lambda g: g * 2)
        (x * x).sum().backward()
    _same_grad(*xs)


def test_register_hook_doubling_a_non_leaf_gradient():
    xs = _pair(normal(3))
    seen = []
    for x in xs:
        y = x.exp()
        y.register_hook(lambda g: g * 2)
        y.register_hook(lambda g: seen.append(g.detach().numpy().copy()))
        (y * y).sum().backward()
    _same_grad(*xs)
    np.testing.assert_allclose(seen[0], seen[1], rtol=1e-12)


def test_leaf_hook_sees_the_total_gradient_once():
    """A leaf used by three ops: PyTorch calls its hook once, with the summed gradient."""
    xs = _pair([1.0, 2.0])
    calls = []
    for x in xs:
        seen = []
        x.register_hook(lambda g, seen=seen: seen.append(g.detach().numpy().copy()))
        (x * x + x.exp()).sum().backward()
        calls.append(seen)
    assert len(calls[0]) == len(calls[1]) == 1, f"minigrad called the hook {len(calls[0])} times"
    np.testing.assert_allclose(calls[0][0], calls[1][0], rtol=1e-12)


def test_nonlinear_leaf_hook():
    xs = _pair([1.0, -2.0, 3.0])
    for x in xs:
        x.register_hook(lambda g: g * g)
        (x * x).sum().backward()
    _same_grad(*xs)


def test_hook_handle_remove():
    xs = _pair(normal(3))
    for x in xs:
        handle = x.register_hook(lambda g: g * 2)
        handle.remove()
        (x * 3).sum().backward()
    _same_grad(*xs)


def test_retain_grad_on_a_non_leaf():
    data = normal(2, 3)
    results = []
    for x in _pair(data):
        y = x * 2
        z = y.sigmoid()
        y.retain_grad()
        (z * z).sum().backward()
        assert y.retains_grad and not z.retains_grad
        assert not y.is_leaf and x.is_leaf
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch warns on .grad of a non-leaf
            assert z.grad is None
        results.append((x, y))
    (xm, ym), (xt, yt) = results
    _same_grad(xm, xt, "leaf grad")
    _same_grad(ym, yt, "retained grad")


def test_retain_grad_on_the_root_and_over_two_backwards():
    gradient = np.full((2, 3), 0.5)
    roots = []
    xs = _pair(normal(2, 3))
    for x, module in zip(xs, (mg, torch), strict=True):
        y = x.tanh()
        y.retain_grad()
        y.backward(module.tensor(gradient), retain_graph=True)
        y.backward(module.tensor(gradient))
        roots.append(y)
    _same_grad(*xs)
    _same_grad(*roots, "retained grad of the root")


def test_detach_stops_the_gradient():
    xs = _pair(normal(3))
    for x in xs:
        d = x.detach()
        assert not d.requires_grad and d.grad_fn is None and d.is_leaf
        (x * d + d).sum().backward()
    _same_grad(*xs)


def test_detach_shares_storage():
    for x in _pair(normal(3)):
        d = x.detach()
        d.numpy()[0] = 42.0
        assert float(x.detach()[0]) == 42.0


def test_no_grad_records_nothing():
    xs = _pair(normal(3))
    for x, module in zip(xs, (mg, torch), strict=True):
        with module.no_grad():
            y = x * 2
        assert not y.requires_grad and y.grad_fn is None and y.is_leaf
        z = (x * 3).sum()
        assert z.requires_grad and z.grad_fn is not None
        z.backward()
    _same_grad(*xs)


def test_leaf_flags():
    for x, module in zip(_pair(normal(3)), (mg, torch), strict=True):
        c = module.tensor(normal(3))
        assert x.is_leaf and x.requires_grad and x.grad_fn is None
        assert c.is_leaf and not c.requires_grad
        y = x + c
        assert not y.is_leaf and y.requires_grad
        assert not (c * 2).requires_grad


def test_input_used_in_two_branches():
    check(lambda m, x: x.exp() * x.sigmoid() + (x * 3).relu(), normal(4, 3))


def test_unused_input_keeps_grad_none():
    check(lambda m, x, y: x * 2, normal(3), normal(3))
