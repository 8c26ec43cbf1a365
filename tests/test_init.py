"""nn.init: PyTorch's fans, gains and formulas; the statistics of what is drawn.

Statistical checks draw at least 100,000 values, so the sample std is within
about 0.5% of the true one; the tests allow 3%.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import minigrad as mg
import minigrad.nn.init as init

GAIN_CASES = [
    ("linear", None),
    ("conv1d", None),
    ("conv2d", None),
    ("conv3d", None),
    ("conv_transpose2d", None),
    ("sigmoid", None),
    ("tanh", None),
    ("relu", None),
    ("leaky_relu", None),
    ("leaky_relu", 0.2),
    ("leaky_relu", 0),
    ("leaky_relu", 1),
    ("leaky_relu", math.sqrt(5)),
    ("selu", None),
]
FAN_SHAPES = [(3, 5), (5, 3), (16, 8, 3, 3), (4, 2, 5), (7, 1), (2, 3, 2, 2, 2)]
BIG_SHAPES = [(400, 500), (500, 300), (64, 32, 7, 7)]


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _seeded():
    """Fixed draws, so a statistical check cannot fail one run in a million."""
    mg.manual_seed(2024)


def _values(t):
    return t.detach().numpy().astype(np.float64)


# ---------------------------------------------------------------------------
# gains and fans
# ---------------------------------------------------------------------------


def test_gain_table():
    assert init.calculate_gain("linear") == 1
    assert init.calculate_gain("sigmoid") == 1
    assert init.calculate_gain("tanh") == 5 / 3
    assert init.calculate_gain("relu") == math.sqrt(2)
    assert init.calculate_gain("leaky_relu") == math.sqrt(2 / (1 + 0.01**2))
    assert init.calculate_gain("leaky_relu", 0.2) == math.sqrt(2 / 1.04)
    assert init.calculate_gain("selu") == 0.75


@pytest.mark.parametrize(("nonlinearity", "param"), GAIN_CASES)
def test_gain_equals_torch(torch, nonlinearity, param):
    assert init.calculate_gain(nonlinearity, param) == torch.nn.init.calculate_gain(
        nonlinearity, param
    )


def test_gain_rejects_bad_input():
    with pytest.raises(ValueError, match="Unsupported nonlinearity gelu"):
        init.calculate_gain("gelu")
    with pytest.raises(ValueError, match="not a valid number"):
        init.calculate_gain("leaky_relu", True)
    with pytest.raises(ValueError, match="not a valid number"):
        init.calculate_gain("leaky_relu", "0.1")


@pytest.mark.parametrize("shape", FAN_SHAPES)
def test_fans_equal_torch(torch, shape):
    ours = init._calculate_fan_in_and_fan_out(mg.zeros(*shape))
    assert ours == torch.nn.init._calculate_fan_in_and_fan_out(torch.zeros(shape))


def test_fans_need_two_dims():
    for shape in [(), (5,)]:
        with pytest.raises(ValueError, match="fewer than 2 dimensions"):
            init._calculate_fan_in_and_fan_out(mg.zeros(*shape))
        with pytest.raises(ValueError, match="fewer than 2 dimensions"):
            init.xavier_uniform_(mg.zeros(*shape))
        with pytest.raises(ValueError, match="fewer than 2 dimensions"):
            init.kaiming_normal_(mg.zeros(*shape))


# ---------------------------------------------------------------------------
# statistics against the formulas
# ---------------------------------------------------------------------------


def _check_uniform(values, bound):
    """U(-bound, bound): inside the bounds, reaching near them, the right std.

    The bound itself may round outward when a float32 tensor stores it."""
    limit = bound * (1 + 1e-7)
    assert values.min() >= -limit and values.max() <= limit
    assert values.max() > 0.99 * bound and values.min() < -0.99 * bound
    _check_normal(values, bound / math.sqrt(3))


def _check_normal(values, std, mean=0.0):
    assert abs(values.std() / std - 1) < 0.03
    assert abs(values.mean() - mean) < 5 * std / math.sqrt(values.size)


@pytest.mark.parametrize("shape", BIG_SHAPES)
@pytest.mark.parametrize("gain", [1.0, 5 / 3])
def test_xavier_statistics(shape, gain):
    fan_in, fan_out = init._calculate_fan_in_and_fan_out(mg.zeros(*shape))
    std = gain * math.sqrt(2 / (fan_in + fan_out))
    _check_uniform(_values(init.xavier_uniform_(mg.zeros(*shape), gain)), math.sqrt(3) * std)
    _check_normal(_values(init.xavier_normal_(mg.zeros(*shape), gain=gain)), std)


KAIMING_CASES = [
    (0, "fan_in", "leaky_relu"),
    (math.sqrt(5), "fan_in", "leaky_relu"),
    (0.2, "fan_out", "leaky_relu"),
    (0, "fan_in", "relu"),
    (0, "fan_out", "relu"),
    (0, "fan_in", "tanh"),
    (0, "fan_out", "linear"),
    (0, "fan_in", "selu"),
    (0, "FAN_OUT", "sigmoid"),
]


@pytest.mark.parametrize("shape", BIG_SHAPES)
@pytest.mark.parametrize(("a", "mode", "nonlinearity"), KAIMING_CASES)
def test_kaiming_statistics_follow_torch_fans_and_gains(torch, shape, a, mode, nonlinearity):
    fan = torch.nn.init._calculate_correct_fan(torch.zeros(shape), mode)
    std = torch.nn.init.calculate_gain(nonlinearity, a) / math.sqrt(fan)
    uniform = init.kaiming_uniform_(mg.zeros(*shape), a, mode, nonlinearity)
    _check_uniform(_values(uniform), math.sqrt(3) * std)
    normal = init.kaiming_normal_(mg.zeros(*shape), a=a, mode=mode, nonlinearity=nonlinearity)
    _check_normal(_values(normal), std)


@pytest.mark.parametrize("name", ["xavier_uniform_", "xavier_normal_", "kaiming_uniform_"])
def test_spread_matches_torch_draws(torch, name):
    """The two libraries' draws have the same spread (not the same numbers)."""
    torch.manual_seed(0)
    shape = (300, 400)
    ours = _values(getattr(init, name)(mg.zeros(*shape)))
    theirs = getattr(torch.nn.init, name)(torch.zeros(shape)).numpy().astype(np.float64)
    assert abs(ours.std() / theirs.std() - 1) < 0.03
    if "uniform" in name:
        assert abs(np.abs(ours).max() / np.abs(theirs).max() - 1) < 0.01


def test_uniform_and_normal():
    _check_uniform(_values(init.uniform_(mg.zeros(100_000), -3.0, 3.0)), 3.0)
    values = _values(init.uniform_(mg.zeros(100_000), 2.0, 5.0))
    assert values.min() >= 2.0 and values.max() <= 5.0
    assert abs(values.mean() - 3.5) < 0.02
    _check_normal(_values(init.normal_(mg.zeros(100_000), 1.5, 0.5)), 0.5, mean=1.5)
    np.testing.assert_array_equal(_values(init.normal_(mg.ones(10), 2.0, 0.0)), 2.0)


def test_constant_zeros_ones():
    t = mg.randn(3, 4, requires_grad=True)
    assert init.constant_(t, 0.25) is t
    np.testing.assert_array_equal(_values(t), 0.25)
    np.testing.assert_array_equal(_values(init.zeros_(t)), 0.0)
    np.testing.assert_array_equal(_values(init.ones_(t)), 1.0)
    ints = mg.tensor([1, 2, 3])
    np.testing.assert_array_equal(init.constant_(ints, 7).numpy(), [7, 7, 7])


# ---------------------------------------------------------------------------
# orthogonal and truncated normal
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(64, 16), (16, 64), (32, 32), (8, 4, 3, 3), (1, 5)])
@pytest.mark.parametrize("gain", [1.0, 2.0])
@pytest.mark.parametrize("dtype", [mg.float32, mg.float64])
def test_orthogonal(shape, gain, dtype):
    t = init.orthogonal_(mg.zeros(*shape, dtype=dtype), gain=gain)
    assert t.dtype == dtype and t.shape == shape
    q = _values(t).reshape(shape[0], -1)
    small = q.T @ q if q.shape[0] >= q.shape[1] else q @ q.T
    tol = 1e-5 if dtype == mg.float32 else 1e-12
    np.testing.assert_allclose(small, gain**2 * np.eye(len(small)), atol=tol * gain**2)


def test_orthogonal_needs_two_dims():
    with pytest.raises(ValueError, match="2 or more dimensions"):
        init.orthogonal_(mg.zeros(5))


def _truncated_moments(mean, std, a, b):
    """Mean and std of N(mean, std^2) restricted to [a, b]."""
    alpha, beta = (a - mean) / std, (b - mean) / std

    def pdf(x):
        return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)

    def cdf(x):
        return (1 + math.erf(x / math.sqrt(2))) / 2

    z = cdf(beta) - cdf(alpha)
    m = (pdf(alpha) - pdf(beta)) / z
    var = 1 + (alpha * pdf(alpha) - beta * pdf(beta)) / z - m * m
    return mean + std * m, std * math.sqrt(var)


@pytest.mark.parametrize(
    ("mean", "std", "a", "b"),
    [
        (0.0, 1.0, -2.0, 2.0),  # most of the mass inside: normal proposals
        (0.0, 0.02, -0.04, 0.04),  # ViT's init, bounds at 2 std
        (0.5, 2.0, -1.0, 3.0),
        (0.0, 1.0, 1.0, 1.5),  # a thin slice in the tail: uniform proposals
        (0.0, 1.0, -0.1, 0.1),
    ],
)
@pytest.mark.parametrize("dtype", [mg.float32, mg.float64])
def test_trunc_normal(mean, std, a, b, dtype):
    t = init.trunc_normal_(mg.zeros(200, 500, dtype=dtype), mean, std, a, b)
    values = t.detach().numpy()
    assert t.dtype == dtype
    assert values.min() >= a and values.max() <= b
    expected_mean, expected_std = _truncated_moments(mean, std, a, b)
    values = values.astype(np.float64)
    assert abs(values.std() / expected_std - 1) < 0.03
    assert abs(values.mean() - expected_mean) < 5 * expected_std / math.sqrt(values.size)


def test_trunc_normal_warns_when_mean_is_far_and_rejects_bad_bounds():
    with pytest.warns(UserWarning, match="more than 2 std"):
        values = _values(init.trunc_normal_(mg.zeros(1000), mean=0.0, std=1.0, a=3.0, b=4.0))
    assert values.min() >= 3.0 and values.max() <= 4.0
    with pytest.raises(ValueError, match="a <= b"):
        init.trunc_normal_(mg.zeros(3), a=1.0, b=0.0)
    with pytest.raises(ValueError, match="std > 0"):
        init.trunc_normal_(mg.zeros(3), std=0.0)


# ---------------------------------------------------------------------------
# what every initializer promises
# ---------------------------------------------------------------------------

INITS = [
    lambda t: init.uniform_(t, -1, 1),
    lambda t: init.normal_(t, 0, 0.02),
    init.xavier_uniform_,
    init.xavier_normal_,
    init.kaiming_uniform_,
    lambda t: init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu"),
    init.orthogonal_,
    init.trunc_normal_,
]


@pytest.mark.parametrize("fn", INITS)
@pytest.mark.parametrize("dtype", [mg.float32, mg.float64])
def test_in_place_same_tensor_dtype_and_leaf(fn, dtype):
    t = mg.zeros(6, 5, dtype=dtype, requires_grad=True)
    array = t.detach().numpy()
    assert fn(t) is t
    assert t.detach().numpy().base is array.base and array.any()  # written in place
    assert t.dtype == dtype and t.requires_grad and t.is_leaf
    assert mg.is_grad_enabled()


@pytest.mark.parametrize("fn", INITS)
def test_reproducible_under_manual_seed(fn):
    mg.manual_seed(123)
    first = _values(fn(mg.zeros(8, 6)))
    mg.manual_seed(123)
    again = _values(fn(mg.zeros(8, 6)))
    mg.manual_seed(124)
    other = _values(fn(mg.zeros(8, 6)))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_writes_through_to_a_view_of_a_numpy_array():
    base = np.zeros((4, 6), dtype=np.float32)
    init.normal_(mg.from_numpy(base[:, ::2]))
    assert base[:, ::2].all() and not base[:, 1::2].any()


def test_bad_input():
    with pytest.raises(TypeError, match="expected a Tensor"):
        init.normal_(np.zeros(3))
    with pytest.raises(TypeError, match="float32 or float64"):
        init.normal_(mg.tensor([1, 2]))
    with pytest.raises(ValueError, match="std >= 0"):
        init.normal_(mg.zeros(3), std=-1.0)
    with pytest.raises(ValueError, match="a <= b"):
        init.uniform_(mg.zeros(3), 1.0, 0.0)
    with pytest.raises(ValueError, match="Mode fan_avg not supported"):
        init.kaiming_uniform_(mg.zeros(3, 3), mode="fan_avg")
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        init.kaiming_normal_(mg.zeros(3, 3), nonlinearity="swish")
    with pytest.raises(ValueError, match="read-only"):
        frozen = np.zeros((2, 2), dtype=np.float32)
        frozen.flags.writeable = False
        init.xavier_uniform_(mg.from_numpy(frozen))


def test_zero_element_tensors():
    with pytest.warns(UserWarning, match="zero-element"):
        init.kaiming_uniform_(mg.zeros(0, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for fn in (init.xavier_uniform_, init.orthogonal_, init.normal_, init.trunc_normal_):
            assert fn(mg.zeros(0, 3)).shape == (0, 3)
