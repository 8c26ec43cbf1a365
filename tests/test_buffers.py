"""Buffer reuse: the pool of large arrays and the leaf gradient taken without a copy.

Both decide from reference counts that nobody else holds an array; these tests
hold arrays in every way a program can and check that none is ever handed out
twice or shared between two gradients.
"""

import weakref

import numpy as np
import pytest

import minigrad as mg
from minigrad.autograd import Function
from minigrad.backend.pool import MIN_BYTES, ArrayPool

BIG = (256, 256)  # 256 KiB of float32: pooled
F32 = np.dtype(np.float32)


def test_pool_reuses_an_array_once_nothing_refers_to_it():
    pool = ArrayPool(1 << 30)
    a = pool.empty(BIG, F32)
    address = a.ctypes.data
    del a
    b = pool.empty(BIG, F32)
    assert b.ctypes.data == address
    assert pool.holds(b)


@pytest.mark.parametrize(
    "hold",
    [
        lambda a: a,  # a name
        lambda a: a[3:],  # a view
        lambda a: a.T,  # another view
        lambda a: mg.from_numpy(a),  # a Tensor
        lambda a: [a],  # a container
        lambda a: memoryview(a),  # a buffer export
    ],
    ids=["name", "slice", "transpose", "tensor", "list", "memoryview"],
)
def test_pool_never_hands_out_an_array_still_in_use(hold):
    pool = ArrayPool(1 << 30)
    a = pool.empty(BIG, F32)
    keeper = hold(a)
    address = a.ctypes.data
    del a
    b = pool.empty(BIG, F32)
    assert b.ctypes.data != address
    del keeper


def test_pool_keys_on_shape_and_dtype_and_skips_small_arrays():
    pool = ArrayPool(1 << 30)
    a = pool.empty(BIG, F32)
    address = a.ctypes.data
    del a
    assert pool.empty((128, 512), F32).ctypes.data != address
    assert pool.empty(BIG, np.dtype(np.float64)).ctypes.data != address
    small = pool.empty((4, 4), F32)
    assert small.nbytes < MIN_BYTES and not pool.holds(small)


def test_pool_stays_within_its_budget_and_releases_unused_arrays():
    pool = ArrayPool(3 * 256 * 1024)
    held = [pool.empty(BIG, F32) for _ in range(5)]
    assert pool.bytes <= pool.max_bytes
    assert sum(pool.holds(a) for a in held) == 3
    del held
    pool.release_unused()
    assert pool.bytes == 0


class _Passthrough(Function):
    """Identity whose backward returns a new array and records it."""

    made: list = []

    @staticmethod
    def forward(ctx, x):
        return x.copy()

    @staticmethod
    def backward(ctx, grad):
        g = grad * 2
        _Passthrough.made.append(weakref.ref(g))
        return g


def test_leaf_takes_an_unshared_gradient_without_a_copy():
    x = mg.randn(*BIG, requires_grad=True)
    _Passthrough.made.clear()
    _Passthrough.apply(x).backward(mg.ones(*BIG))
    assert x.grad.numpy().base is _Passthrough.made[0]()  # a view of that very array
    np.testing.assert_array_equal(x.grad.numpy(), 2)


def test_gradient_given_to_two_leaves_is_not_shared_between_them():
    a = mg.randn(*BIG, requires_grad=True)
    b = mg.randn(*BIG, requires_grad=True)
    (a + b).backward(mg.ones(*BIG))
    assert not np.shares_memory(a.grad.numpy(), b.grad.numpy())
    a.grad.numpy()[...] = 5
    np.testing.assert_array_equal(b.grad.numpy(), 1)


def test_leaf_gradient_never_aliases_the_callers_gradient():
    x = mg.randn(*BIG, requires_grad=True)
    g = mg.ones(*BIG)
    (x + 1).backward(g)
    assert not np.shares_memory(x.grad.numpy(), g.numpy())
    x.grad.numpy()[...] = 7
    np.testing.assert_array_equal(g.numpy(), 1)


def test_gradient_a_hook_kept_is_not_taken():
    x = mg.randn(*BIG, requires_grad=True)
    seen = []
    x.register_hook(lambda grad: seen.append(grad))
    _Passthrough.apply(x).backward(mg.ones(*BIG))
    assert not np.shares_memory(x.grad.numpy(), seen[0].numpy())


class _ReturnsSaved(Function):
    """Backward returns an array its context saved: with retain_graph the
    context still holds it, so the leaf must copy it."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(np.full_like(x, 3))
        return x.copy()

    @staticmethod
    def backward(ctx, grad):
        (three,) = ctx.saved_tensors
        return three


def test_gradient_still_saved_for_a_second_backward_is_copied():
    x = mg.randn(*BIG, requires_grad=True)
    y = _ReturnsSaved.apply(x)
    y.backward(mg.ones(*BIG), retain_graph=True)
    x.grad.numpy()[...] = 0  # must not change what the graph saved
    y.backward(mg.ones(*BIG))
    np.testing.assert_array_equal(x.grad.numpy(), 3)


def test_training_loop_reuses_its_large_buffers(backend):
    """After a warm-up step, steps allocate no new pooled arrays."""
    from minigrad import nn, optim
    from minigrad.backend.pool import POOL

    mg.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 10))
    opt = optim.SGD(model.parameters(), lr=0.01)
    x = mg.randn(128, 256)
    y = mg.tensor(np.arange(128) % 10)

    def step():
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    step()
    step()
    pooled = POOL.bytes
    for _ in range(3):
        step()
    assert POOL.bytes == pooled


def test_pool_budget_comes_from_the_environment(monkeypatch):
    from minigrad.backend import pool

    monkeypatch.setenv("MINIGRAD_POOL_MB", "0")
    assert pool._budget() == 0
    off = ArrayPool(pool._budget())
    assert not off.holds(off.empty(BIG, F32))
    monkeypatch.setenv("MINIGRAD_POOL_MB", "lots")
    with pytest.warns(RuntimeWarning, match="MINIGRAD_POOL_MB"):
        assert pool._budget() == pool.DEFAULT_MB << 20


class _ReshapedGrad(Function):
    """Backward returns a reshape of a fresh array, as most ops' backward do."""

    made: list = []

    @staticmethod
    def forward(ctx, x):
        return x.copy()

    @staticmethod
    def backward(ctx, grad):
        flat = grad.reshape(-1) * 2
        _ReshapedGrad.made.append(weakref.ref(flat))
        return flat.reshape(grad.shape)


def test_leaf_takes_a_reshape_of_an_unshared_array_without_a_copy():
    x = mg.randn(*BIG, requires_grad=True)
    _ReshapedGrad.made.clear()
    _ReshapedGrad.apply(x).backward(mg.ones(*BIG))
    assert x.grad.numpy().base is _ReshapedGrad.made[0]()
    np.testing.assert_array_equal(x.grad.numpy(), 2)


class _TwoViews(Function):
    """Backward gives both inputs views of one array: neither may take it."""

    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, grad):
        both = grad * 1
        return both.reshape(grad.shape), both.reshape(grad.shape)


def test_two_views_of_one_array_are_not_shared_between_leaves():
    a = mg.randn(*BIG, requires_grad=True)
    b = mg.randn(*BIG, requires_grad=True)
    _TwoViews.apply(a, b).backward(mg.ones(*BIG))
    assert not np.shares_memory(a.grad.numpy(), b.grad.numpy())


def test_an_array_made_read_only_by_its_user_comes_back_writable():
    # numpy() hands out a view, so flags a user sets stay on the view and never
    # reach the pooled buffer that a later op's output reuses.
    x = mg.randn(*BIG)
    y = x.relu()
    view = y.numpy()
    view.flags.writeable = False
    address = view.ctypes.data
    del y, view
    z = x.relu()
    assert z.numpy().ctypes.data == address  # the same buffer, reused
    assert z._data.flags.writeable and z.numpy().flags.writeable
    z.add_(1.0)


def test_pool_keeps_a_pointer_with_each_array_and_forgets_both_together():
    pool = ArrayPool(1 << 30)
    pool.make_pointer = lambda a: ("pointer to", a.ctypes.data)
    a = pool.empty(BIG, F32)
    key, address = id(a), a.ctypes.data
    assert pool.pointers[key] == ("pointer to", address)
    assert pool.empty((4, 4), F32).ctypes.data not in [p[1] for p in pool.pointers.values()]
    del a
    pool.release_unused()
    assert key not in pool.pointers and not pool.holds(pool.empty((8, 8), F32))


def test_c_backend_pointer_for_a_pooled_output_is_its_address():
    c = pytest.importorskip("minigrad.backend.c")
    previous = mg.get_backend()
    mg.set_backend("c")
    try:
        y = mg.randn(*BIG).relu()._data
    finally:
        mg.set_backend(previous)
    assert int(c.ffi.cast("uintptr_t", c._POOLED[id(y)])) == y.ctypes.data


def test_pool_keeps_an_array_it_made_room_for():
    # Making room releases unused arrays and drops the lists it empties; the new
    # array must still land in the pool's list, or it could never be reused and
    # the pool would keep a pointer for an array it no longer holds.
    nbytes = BIG[0] * BIG[1] * F32.itemsize
    pool = ArrayPool(2 * nbytes)
    pool.empty(BIG, F32)  # dropped at once: unused, still pooled
    held = pool.empty((BIG[0] * 2, BIG[1] // 2), F32)
    made = pool.empty((BIG[0] // 2, BIG[1] * 2), F32)  # over budget until the first goes
    address = made.ctypes.data
    del made
    again = pool.empty((BIG[0] // 2, BIG[1] * 2), F32)
    assert again.ctypes.data == address and pool.holds(again)
    assert pool.bytes == 2 * nbytes and len(pool.pointers) == 2
    del held
