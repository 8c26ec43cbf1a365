"""Factories, seeding, conversions, and the messages bad input gets."""

import numpy as np
import pytest

import minigrad as mg


def test_factories_shapes_and_dtypes():
    assert mg.zeros(2, 3).shape == (2, 3) and mg.zeros(2, 3).dtype == mg.float32
    assert mg.ones((4,), dtype=mg.float64).dtype == mg.float64
    assert mg.full((2, 2), 7.0).numpy().tolist() == [[7.0, 7.0], [7.0, 7.0]]
    assert mg.full((2,), 3).dtype == mg.int64
    z = mg.zeros_like(mg.ones(3, dtype=mg.float64))
    assert z.dtype == mg.float64 and z.numpy().sum() == 0
    assert mg.ones_like(mg.zeros(2)).numpy().tolist() == [1.0, 1.0]
    assert mg.zeros(0, 5).numel() == 0
    assert mg.arange(4).tolist() == [0, 1, 2, 3] and mg.arange(4).dtype == mg.int64
    assert mg.zeros(3, requires_grad=True).requires_grad


def test_rand_and_randn_follow_the_global_seed():
    mg.manual_seed(7)
    a, b = mg.rand(3, 4), mg.randn(5)
    mg.manual_seed(7)
    assert np.array_equal(a.numpy(), mg.rand(3, 4).numpy())
    assert np.array_equal(b.numpy(), mg.randn(5).numpy())
    assert a.dtype == mg.float32 and mg.randn(2, dtype=mg.float64).dtype == mg.float64
    assert a.numpy().min() >= 0 and a.numpy().max() < 1


def test_bad_sizes_and_dtypes():
    with pytest.raises(ValueError, match="zeros: size"):
        mg.zeros(-1)
    with pytest.raises(TypeError, match="float16"):
        mg.ones(2, dtype="float16")
    with pytest.raises(TypeError, match="from_numpy"):
        mg.from_numpy([1, 2])
    with pytest.raises(TypeError, match="object"):
        mg.tensor(np.array([object()]))


def test_shape_mismatch_names_op_and_shapes():
    a, b = mg.ones(2, 3), mg.ones(4)
    for expr, name in [
        (lambda: a + b, "add"),
        (lambda: a - b, "sub"),
        (lambda: a * b, "mul"),
        (lambda: a / b, "div"),
    ]:
        with pytest.raises(ValueError, match=rf"{name}: shapes \(2, 3\) and \(4,\)"):
            expr()
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) and \(4,\)"):
        a @ b
    with pytest.raises(ValueError, match="matmul: both operands"):
        a @ mg.tensor(2.0)
    with pytest.raises(ValueError, match=r"reshape: cannot view a tensor of shape \(2, 3\)"):
        a.reshape(4, 2)
    with pytest.raises(ValueError, match="cat: tensor 1 has shape"):
        mg.cat([a, mg.ones(2, 4)], dim=0)
    with pytest.raises(ValueError, match="stack: tensor 1 has shape"):
        mg.stack([a, mg.ones(3, 2)])


def test_dim_out_of_range_names_op():
    x = mg.ones(2, 3)
    for call, name in [
        (lambda: x.sum(2), "sum"),
        (lambda: x.mean(-3), "mean"),
        (lambda: x.softmax(5), "softmax"),
        (lambda: x.max(3), "max"),
        (lambda: x.transpose(0, 2), "transpose"),
    ]:
        with pytest.raises(IndexError, match=f"{name}: dim"):
            call()


def test_conversions_and_protocol():
    x = mg.tensor([[1.5, -2.0]])
    with pytest.raises(ValueError, match="one-element"):
        x.item()
    assert mg.tensor([3.5]).item() == 3.5 and float(mg.tensor(2.0)) == 2.0
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(x)
    assert len(x) == 1 and [r.shape for r in x] == [(2,)]
    with pytest.raises(TypeError, match="0-d"):
        len(mg.tensor(1.0))
    assert "requires_grad=True" in repr(mg.ones(2, requires_grad=True))
    assert "dtype=mg.float64" in repr(mg.ones(2, dtype=mg.float64))
    assert np.asarray(x).shape == (1, 2)
    assert (np.ones(2) + mg.ones(2)).dtype == mg.float64  # NumPy defers to the tensor
    assert x.long().dtype == mg.int64 and x.double().dtype == mg.float64


def test_activation_on_integers_is_a_clear_type_error():
    with pytest.raises(TypeError, match="relu: input has dtype int64"):
        mg.tensor([1, 2]).relu()


def test_max_of_empty_raises():
    with pytest.raises(ValueError, match="empty"):
        mg.zeros(0).max()


def test_clamp_needs_a_bound():
    with pytest.raises(ValueError, match="at least one"):
        mg.ones(2).clamp()
