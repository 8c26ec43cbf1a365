"""The engine's semantics: graph building, accumulation, freeing, hooks, modes."""

import gc
import weakref

import numpy as np
import pytest

import minigrad as mg
from minigrad.autograd import Function, GradcheckError


def leaf(shape=(3,), seed=0, dtype=mg.float64):
    data = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return mg.tensor(data, requires_grad=True)


def test_leaf_and_graph_attributes():
    x = leaf()
    y = x * 2
    assert x.is_leaf and x.grad_fn is None and x.requires_grad
    assert not y.is_leaf and y.grad_fn is not None and y.requires_grad
    assert "Mul" in repr(y.grad_fn)
    z = mg.tensor([1.0, 2.0])
    assert not (z * 2).requires_grad and (z * 2).grad_fn is None


def test_wrapped_tensor_sets_every_slot_as_the_constructor_does():
    # Tensor._wrap sets the slots itself instead of calling _init: the two must
    # not drift apart when a slot is added.
    from minigrad.tensor import Tensor

    array = np.zeros(3, np.float32)
    built, wrapped = Tensor(array), Tensor._wrap(array)
    for slot in Tensor.__slots__:
        if slot != "__weakref__":
            assert type(getattr(wrapped, slot)) is type(getattr(built, slot)), slot
    assert wrapped._version == built._version and wrapped._version is not built._version


def test_gradients_accumulate_until_zeroed():
    x = leaf()
    (x * 3).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full(3, 6.0))
    x.grad = None
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full(3, 3.0))


def test_shared_subexpression_sums_both_paths():
    x = leaf()
    y = x * x  # x feeds both inputs of one node
    z = y + y  # y feeds both inputs of another
    z.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 4 * x.detach().numpy())


def test_first_gradient_is_copied_so_leaves_do_not_alias():
    a, b = leaf(seed=1), leaf(seed=2)
    (a + b).sum().backward()  # Add hands the same array to both inputs
    a.grad.add_(1.0)
    np.testing.assert_allclose(b.grad.numpy(), np.ones(3))


def test_deep_chain_has_no_recursion_limit():
    x = mg.tensor([1.0], requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y + 1.0
    y.sum().backward()
    assert x.grad.item() == 1.0


def test_second_backward_without_retain_graph_raises():
    x = leaf()
    y = (x.exp() * 2).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_retain_graph_allows_second_backward():
    x = leaf()
    y = (x.exp() * 2).sum()
    y.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * first)


def test_saved_arrays_are_freed_after_backward():
    x = leaf((1000,))
    h = x.exp()  # saves its output for backward
    node = h.grad_fn
    saved = weakref.ref(node.saved_tensors[0])
    loss = (h * 2).sum()
    del h
    loss.backward()
    gc.collect()
    assert saved() is None


def test_graph_is_released_with_the_output():
    x = leaf((10,))
    y = (x * 2).exp().sum()
    node = weakref.ref(y.grad_fn)
    del y
    gc.collect()
    assert node() is None


def test_non_scalar_backward_needs_gradient():
    x = leaf((2, 2))
    y = x * 2
    with pytest.raises(RuntimeError, match="one-element"):
        y.backward()
    y.backward(mg.ones(2, 2, dtype=mg.float64))
    np.testing.assert_allclose(x.grad.numpy(), np.full((2, 2), 2.0))
    with pytest.raises(ValueError, match="shape"):
        (x * 2).backward(mg.ones(3, dtype=mg.float64))


def test_backward_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        mg.tensor([1.0]).sum().backward()


def test_no_grad_and_enable_grad():
    x = leaf()
    with mg.no_grad():
        y = x * 2
        with mg.enable_grad():
            z = x * 2
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad

    @mg.no_grad()
    def f(t):
        return t * 2

    assert not f(x).requires_grad
    assert mg.is_grad_enabled()


def test_leaf_hook_can_replace_gradient():
    x = leaf()
    seen = []
    handle = x.register_hook(lambda g: seen.append(g.numpy().copy()) or g * 10)
    (x * 1).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full(3, 10.0))
    assert len(seen) == 1
    handle.remove()
    x.grad = None
    (x * 1).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.ones(3))


def test_nonleaf_hook_and_retain_grad():
    x = leaf()
    y = x * 2
    y.retain_grad()
    y.register_hook(lambda g: g * 3)
    (y * 5).sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), np.full(3, 15.0))
    np.testing.assert_allclose(x.grad.numpy(), np.full(3, 30.0))
    assert y.retains_grad


def test_intermediate_grad_is_not_kept_by_default():
    x = leaf()
    y = x * 2
    (y * 5).sum().backward()
    assert y.grad is None


def test_only_float_tensors_require_grad():
    with pytest.raises(RuntimeError, match="floating point"):
        mg.tensor([1, 2], requires_grad=True)
    t = mg.tensor([1, 2])
    assert t.dtype == mg.int64
    with pytest.raises(RuntimeError, match="leaf"):
        (leaf() * 2).requires_grad = False


def test_inplace_rules():
    w = leaf()
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        w.add_(1.0)
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        w -= 1.0
    with pytest.raises(RuntimeError, match="part of a graph"):
        (w * 2).mul_(3)
    before = w.detach().numpy().copy()
    with mg.no_grad():
        w -= 0.5
        w.mul_(2).clamp_(-1, 1)
    np.testing.assert_allclose(w.detach().numpy(), np.clip((before - 0.5) * 2, -1, 1))
    t = mg.zeros(3)
    t.fill_(2.0).add_(mg.ones(3), alpha=3)
    t[0] = -1
    np.testing.assert_allclose(t.numpy(), [-1, 5, 5])
    t.copy_(np.arange(3.0)).zero_()
    np.testing.assert_allclose(t.numpy(), np.zeros(3))


def test_inplace_on_read_only_array_raises():
    a = np.zeros(3, dtype=np.float32)
    a.setflags(write=False)
    t = mg.from_numpy(a)
    with pytest.raises(ValueError, match="read-only"):
        t.add_(1)


def test_detach_and_data_share_storage():
    x = leaf()
    d = x.detach()
    assert not d.requires_grad and d.is_leaf
    d.numpy()[0] = 42.0
    assert x.data.numpy()[0] == 42.0
    with pytest.raises(RuntimeError, match="detach"):
        x.numpy()


def test_from_numpy_shares_memory_and_tensor_copies():
    a = np.arange(4, dtype=np.float32)
    shared, copied = mg.from_numpy(a), mg.tensor(a)
    a[0] = 9
    assert shared.numpy()[0] == 9 and copied.numpy()[0] == 0


def test_dtype_rules():
    assert mg.tensor([1.0]).dtype == mg.float32
    assert mg.tensor(np.zeros(2)).dtype == mg.float64
    assert mg.tensor([True]).dtype == mg.bool_
    assert (mg.tensor([1.0]) * 2.5).dtype == mg.float32
    assert (mg.tensor([1.0]) + mg.tensor([1.0], dtype=mg.float64)).dtype == mg.float64
    for bad in (np.zeros(2, np.float16), np.zeros(2, np.complex64), np.array(["a"])):
        with pytest.raises(TypeError):
            mg.tensor(bad)
    with pytest.raises(TypeError):
        mg.zeros(2, dtype=np.float16)


def test_mixed_precision_gradient_has_input_dtype():
    a = mg.tensor([1.0, 2.0], requires_grad=True)
    b = mg.tensor([3.0, 4.0], dtype=mg.float64, requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.dtype == mg.float32 and b.grad.dtype == mg.float64


def test_broadcast_gradient_is_summed_to_input_shape():
    a = leaf((3, 1), seed=1)
    b = leaf((4,), seed=2)
    (a * b).sum().backward()
    assert a.grad.shape == (3, 1) and b.grad.shape == (4,)
    np.testing.assert_allclose(a.grad.numpy()[:, 0], np.full(3, b.detach().numpy().sum()))


def test_custom_function():
    class Cube(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x**3

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * 3 * x**2

    x = leaf((4,))
    assert mg.gradcheck(Cube.apply, [x])
    y = Cube.apply(x)
    assert y.grad_fn.name() == "CubeBackward"


def test_custom_function_needs_input_grad_and_none_gradients():
    seen = {}

    class Scale(Function):
        @staticmethod
        def forward(ctx, x, factor, y):
            seen["needs"] = ctx.needs_input_grad
            return x * factor + y

        @staticmethod
        def backward(ctx, grad):
            return grad * 2, None, None

    x, y = leaf(), mg.tensor(np.ones(3))
    Scale.apply(x, 2.0, y).sum().backward()
    assert seen["needs"] == (True, False, False)
    np.testing.assert_allclose(x.grad.numpy(), np.full(3, 2.0))


def test_wrong_gradient_shape_from_custom_function_is_reported():
    class Bad(Function):
        @staticmethod
        def forward(ctx, x):
            return x.sum()

        @staticmethod
        def backward(ctx, grad):
            return np.ones(7)

    with pytest.raises(RuntimeError, match="BadBackward returned a gradient of shape"):
        Bad.apply(leaf()).backward()


def test_multiple_outputs():
    class Split(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2, x * 3

        @staticmethod
        def backward(ctx, g2, g3):
            return g2 * 2 + g3 * 3

    x = leaf()
    a, _ = Split.apply(x)
    a.sum().backward()  # b's gradient is taken as zero
    np.testing.assert_allclose(x.grad.numpy(), np.full(3, 2.0))


def test_gradcheck_catches_a_wrong_backward():
    class Wrong(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * x  # should be 2x

    with pytest.raises(GradcheckError, match="numerical"):
        mg.gradcheck(Wrong.apply, [leaf()])


def test_gradcheck_requires_float64():
    with pytest.raises(TypeError, match="float64"):
        mg.gradcheck(lambda t: t * 2, [mg.randn(3, requires_grad=True)])


def test_anomaly_forward_names_op_and_user_line():
    x = mg.tensor([0.0, 1.0], requires_grad=True)
    with (
        mg.detect_anomaly(),
        pytest.raises(FloatingPointError) as info,
        np.errstate(divide="ignore"),
    ):
        x.log()  # the line that makes -inf
    message = str(info.value)
    assert "Log" in message and "test_autograd.py" in message and "x.log()" in message


def test_anomaly_backward_names_op():
    x = mg.tensor([0.0, 4.0], requires_grad=True)
    with mg.detect_anomaly():
        y = x.sqrt().sum()  # finite forward, infinite gradient at 0
        with pytest.raises(FloatingPointError) as info, np.errstate(divide="ignore"):
            y.backward()
    assert "SqrtBackward" in str(info.value) and "x.sqrt()" in str(info.value)


def test_anomaly_off_lets_nan_through():
    x = mg.tensor([-1.0], requires_grad=True)
    with np.errstate(invalid="ignore"):
        assert np.isnan(x.log().item())


def test_thread_local_grad_mode():
    import threading

    results = []

    def worker():
        results.append(mg.is_grad_enabled())

    with mg.no_grad():
        t = threading.Thread(target=worker)
        t.start()
        t.join()
    assert results == [True]


def test_inplace_change_of_saved_input_is_caught_at_backward():
    w = leaf()
    x = mg.tensor(np.ones(3))
    y = (w * x).sum()  # Mul saved x for w's gradient
    x.mul_(2)
    with pytest.raises(RuntimeError, match="changed in place"):
        y.backward()


def test_inplace_through_detach_or_view_is_caught():
    w = leaf((2, 3))
    x = mg.tensor(np.ones((2, 3)))
    y = (w * x).sum()
    x.detach()[0].fill_(5.0)  # writes x's storage through a detached view
    with pytest.raises(RuntimeError, match="changed in place"):
        y.backward()


def test_inplace_after_backward_is_fine():
    w = leaf()
    x = mg.tensor(np.ones(3))
    (w * x).sum().backward()
    x.mul_(2)
    (w * x).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), np.full(3, 3.0))


def test_gradcheck_on_a_transposed_input():
    x = mg.tensor(np.arange(6.0).reshape(2, 3).T, dtype=mg.float64, requires_grad=True)
    assert mg.gradcheck(lambda t: (t * t).sum(), [x])
