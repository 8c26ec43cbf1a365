"""Every differentiable op against float64 central differences, on both backends."""

import numpy as np
import pytest

import minigrad as mg


def t(shape, seed=0, low=None):
    """A float64 leaf; ``low`` keeps values away from kinks (|x| >= low)."""
    data = np.random.default_rng(seed).standard_normal(shape)
    if low is not None:
        data = np.sign(data) * (np.abs(data) + low)
    return mg.tensor(data, dtype=mg.float64, requires_grad=True)


def positive(shape, seed=0):
    data = np.random.default_rng(seed).uniform(0.5, 2.0, shape)
    return mg.tensor(data, dtype=mg.float64, requires_grad=True)


BINARY_SHAPES = [
    ((3, 4), (3, 4)),
    ((3, 1), (1, 4)),
    ((2, 3, 4), (4,)),
    ((), (2, 3)),
    ((0, 3), (3,)),
    ((1,), (1,)),
]


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
@pytest.mark.parametrize(("sa", "sb"), BINARY_SHAPES)
def test_binary(backend, op, sa, sb):
    a = t(sa, 1)
    b = positive(sb, 2) if op == "div" else t(sb, 2)
    fn = {
        "add": lambda x, y: x + y,
        "sub": lambda x, y: x - y,
        "mul": lambda x, y: x * y,
        "div": lambda x, y: x / y,
    }[op]
    assert mg.gradcheck(fn, [a, b])
    assert mg.gradcheck(lambda x: fn(x, 1.5), [a])
    assert mg.gradcheck(lambda y: fn(2.5, y), [b])


@pytest.mark.parametrize("shape", [(3, 4), (), (0,), (1, 1)])
def test_pow(backend, shape):
    x = positive(shape)
    assert mg.gradcheck(lambda v: v**3, [x])
    assert mg.gradcheck(lambda v: v**-0.5, [x])
    assert mg.gradcheck(lambda v: 2.0**v, [x])
    assert mg.gradcheck(lambda v, w: v**w, [x, positive(shape, 3)])


@pytest.mark.parametrize("shape", [(3, 4), (), (0, 2), (1,)])
@pytest.mark.parametrize("op", ["neg", "exp", "log", "sqrt", "abs"])
def test_unary(backend, shape, op):
    x = positive(shape) if op in ("log", "sqrt") else t(shape, low=0.1)
    fn = {
        "neg": lambda v: -v,
        "exp": lambda v: v.exp(),
        "log": lambda v: v.log(),
        "sqrt": lambda v: v.sqrt(),
        "abs": lambda v: v.abs(),
    }[op]
    assert mg.gradcheck(fn, [x])


@pytest.mark.parametrize(("lo", "hi"), [(-0.5, 0.5), (None, 0.3), (-0.2, None)])
def test_clamp(backend, lo, hi):
    x = mg.tensor(
        np.array([-1.3, -0.45, 0.05, 0.4, 0.9, 2.0]), dtype=mg.float64, requires_grad=True
    )
    assert mg.gradcheck(lambda v: v.clamp(lo, hi), [x])


@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 4), (1, 7), (4, 0)])
@pytest.mark.parametrize("op", ["relu", "leaky_relu", "sigmoid", "tanh", "gelu", "gelu_tanh"])
def test_activation(backend, shape, op):
    from minigrad import ops

    x = t(shape, low=0.05)  # away from relu's kink, where finite differences lie
    fn = {
        "relu": lambda v: v.relu(),
        "leaky_relu": lambda v: ops.LeakyReLU.apply(v, 0.1),
        "sigmoid": lambda v: v.sigmoid(),
        "tanh": lambda v: v.tanh(),
        "gelu": lambda v: ops.GELU.apply(v, "none"),
        "gelu_tanh": lambda v: ops.GELU.apply(v, "tanh"),
    }[op]
    assert mg.gradcheck(fn, [x])


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize(
    ("shape", "dim"), [((3, 5), -1), ((3, 5), 0), ((2, 3, 4), 1), ((6,), 0), ((2, 0), 1)]
)
def test_softmax_family(backend, op, shape, dim):
    x = t(shape)
    assert mg.gradcheck(
        lambda v: getattr(v, op)(dim) * mg.tensor(np.arange(1.0, 1 + v.numel()).reshape(shape)), [x]
    )


REDUCE_CASES = [
    ((3, 4), None),
    ((3, 4), 0),
    ((3, 4), 1),
    ((2, 3, 4), (0, 2)),
    ((2, 3, 4), -1),
    ((5,), 0),
    ((), None),
]


@pytest.mark.parametrize(("shape", "dim"), REDUCE_CASES)
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("op", ["sum", "mean", "var"])
def test_reductions(backend, op, shape, dim, keepdim):
    x = t(shape)
    if op == "var" and x.numel() < 2:
        # one sample has no unbiased variance: NaN, as in PyTorch
        with np.errstate(divide="ignore", invalid="ignore"):
            assert np.isnan(x.var(dim=dim, keepdim=keepdim).item())
        return
    assert mg.gradcheck(lambda v: getattr(v, op)(dim=dim, keepdim=keepdim), [x])


def test_var_correction(backend):
    x = t((4, 5))
    assert mg.gradcheck(lambda v: v.var(dim=1, correction=0), [x])
    assert mg.gradcheck(lambda v: v.var(1, False), [x])


@pytest.mark.parametrize(
    ("shape", "dim"), [((3, 4), None), ((3, 4), 0), ((3, 4), 1), ((2, 3, 4), -1), ((5,), 0)]
)
@pytest.mark.parametrize("keepdim", [False, True])
def test_max(backend, shape, dim, keepdim):
    x = t(shape)
    if dim is None:
        assert mg.gradcheck(lambda v: v.max(), [x])
    else:
        assert mg.gradcheck(lambda v: v.max(dim, keepdim).values, [x])


def test_max_ties_share_gradient():
    x = mg.tensor([1.0, 3.0, 3.0], requires_grad=True)
    x.max().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0, 0.5, 0.5])


SHAPE_OPS = {
    "reshape": lambda v: v.reshape(4, 6),
    "view-1": lambda v: v.view(-1),
    "flatten": lambda v: v.flatten(1),
    "transpose": lambda v: v.transpose(0, 2),
    "T": lambda v: v.T,
    "permute": lambda v: v.permute(2, 0, 1),
    "unsqueeze": lambda v: v.unsqueeze(1),
    "getitem-basic": lambda v: v[1, ::2, None, -1],
    "getitem-ellipsis": lambda v: v[..., 1:3],
    "getitem-int-array": lambda v: v[np.array([0, 1, 1, 0])],
    "getitem-tensor-index": lambda v: v[:, mg.tensor([2, 0, 2])],
    "getitem-bool-mask": lambda v: v[v.detach() > 0],
}


@pytest.mark.parametrize("name", SHAPE_OPS)
def test_shape_ops(backend, name):
    x = t((2, 3, 4))
    fn = SHAPE_OPS[name]
    weights = mg.tensor(np.random.default_rng(5).standard_normal(fn(x).shape))
    assert mg.gradcheck(lambda v: fn(v) * weights, [x])


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cat_and_stack(backend, dim):
    a, b = t((2, 3), 1), t((2, 3), 2)
    assert mg.gradcheck(lambda u, v: mg.cat([u, v, u], dim=dim) * 1.5, [a, b])
    assert mg.gradcheck(lambda u, v: mg.stack([u, v], dim=dim) * 1.5, [a, b])


def test_cat_with_empty_piece(backend):
    a, b = t((0, 3), 1), t((2, 3), 2)
    assert mg.gradcheck(lambda u, v: mg.cat([u, v]) * 2, [a, b])


MATMUL_SHAPES = [
    ((3, 4), (4, 5)),
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((4,), (4,)),
    ((2, 3, 4), (2, 4, 5)),
    ((2, 3, 4), (4, 5)),
    ((3, 4), (2, 4, 5)),
    ((0, 4), (4, 5)),
    ((3, 0), (0, 5)),
    ((1, 1), (1, 1)),
]


@pytest.mark.parametrize(("sa", "sb"), MATMUL_SHAPES)
def test_matmul(backend, sa, sb):
    assert mg.gradcheck(lambda u, v: u @ v, [t(sa, 1), t(sb, 2)])


def test_composite_mlp_step(backend):
    x, w1, w2 = t((5, 4), 1), t((4, 6), 2), t((6, 3), 3)

    def loss(xv, a, b):
        h = (xv @ a).tanh()
        return ((h @ b).log_softmax(-1) * mg.tensor(np.eye(3)[[0, 1, 2, 0, 1]])).mean()

    assert mg.gradcheck(loss, [x, w1, w2])


def test_cast_passes_gradient_back_in_input_dtype():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = x.double() * mg.tensor([3.0, 4.0], dtype=mg.float64)
    y.sum().backward()
    assert x.grad.dtype == mg.float32
    np.testing.assert_allclose(x.grad.numpy(), [3, 4])
