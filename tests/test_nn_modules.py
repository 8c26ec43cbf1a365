"""Module semantics: what a model holds, how it is walked, saved, loaded,
hooked and printed, checked against PyTorch where PyTorch has the same thing."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn


def mlp(lib):
    """The same architecture in minigrad (lib=nn) or torch (lib=torch.nn)."""
    residual = nn.Residual if lib is nn else _torch_residual()
    return lib.Sequential(
        lib.Linear(4, 8),
        lib.BatchNorm1d(8),
        lib.ReLU(),
        lib.Dropout(0.2),
        lib.LayerNorm(8),
        residual(lib.Sequential(lib.Linear(8, 8), lib.Tanh())),
        lib.Linear(8, 3),
    )


def _torch_residual():
    torch = pytest.importorskip("torch")

    class Residual(torch.nn.Module):
        def __init__(self, fn):
            super().__init__()
            self.fn = fn

        def forward(self, x):
            return x + self.fn(x)

    return Residual


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 3)
        self.scale = nn.Parameter(mg.ones(3))
        self.b = nn.Linear(3, 2)
        self.b.weight = nn.Parameter(mg.randn(2, 3))
        self.tied = self.a  # the same module under a second name
        self.register_buffer("steps", mg.tensor(0))

    def forward(self, x):
        return self.b(self.tied(x) * self.scale)


# ---------------------------------------------------------------------------
# What a module holds
# ---------------------------------------------------------------------------


def test_named_parameters_order_and_shared_dedup():
    block = Block()
    names = [n for n, _ in block.named_parameters()]
    assert names == ["scale", "a.weight", "a.bias", "b.weight", "b.bias"]
    assert len(list(block.parameters())) == 5
    assert [n for n, _ in block.named_parameters(recurse=False)] == ["scale"]
    assert next(block.named_parameters(prefix="m"))[0] == "m.scale"

    shared = nn.Linear(2, 2)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias"]
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_modules_and_children():
    block = Block()
    assert [n for n, _ in block.named_children()] == ["a", "b", "tied"]
    assert [n for n, _ in block.named_modules()] == ["", "a", "b"]  # tied is a, seen once
    model = mlp(nn)
    kinds = [type(m).__name__ for m in model.modules()]
    assert kinds == [
        "Sequential", "Linear", "BatchNorm1d", "ReLU", "Dropout", "LayerNorm",
        "Residual", "Sequential", "Linear", "Tanh", "Linear",
    ]  # fmt: skip
    assert len(list(model.children())) == 7
    assert [n for n, _ in model.named_buffers()] == [
        "1.running_mean", "1.running_var", "1.num_batches_tracked",
    ]  # fmt: skip


def test_train_eval_propagate():
    model = mlp(nn)
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    model[5].train()
    assert model[5].fn[0].training and not model[1].training
    model.train()
    assert all(m.training for m in model.modules())


def test_zero_grad_both_ways():
    model = nn.Linear(3, 2)
    model(mg.randn(4, 3)).sum().backward()
    grad = model.weight.grad
    model.zero_grad(set_to_none=False)
    assert model.weight.grad is grad
    np.testing.assert_array_equal(grad.numpy(), 0)
    model(mg.randn(4, 3)).sum().backward()
    model.zero_grad()
    assert model.weight.grad is None and model.bias.grad is None


# ---------------------------------------------------------------------------
# State dicts
# ---------------------------------------------------------------------------


def test_state_dict_matches_torch_keys_shapes_order():
    torch = pytest.importorskip("torch")
    mine, theirs = mlp(nn).state_dict(), mlp(torch.nn).state_dict()
    assert list(mine) == list(theirs)
    for key in mine:
        assert mine[key].shape == tuple(theirs[key].shape), key
        assert str(mine[key].dtype) == str(theirs[key].dtype).removeprefix("torch."), key
    assert list(nn.CrossEntropyLoss(weight=mg.ones(3)).state_dict()) == ["weight"]
    bce = nn.BCEWithLogitsLoss(pos_weight=mg.ones(3)).state_dict()
    assert list(bce) == list(torch.nn.BCEWithLogitsLoss(pos_weight=torch.ones(3)).state_dict())
    for kwargs in ({"affine": False}, {"track_running_stats": False}):
        mine = nn.BatchNorm1d(3, **kwargs).state_dict()
        assert list(mine) == list(torch.nn.BatchNorm1d(3, **kwargs).state_dict())
    assert list(nn.LayerNorm(3, bias=False).state_dict()) == ["weight"]
    assert list(nn.Linear(3, 2, bias=False).state_dict()) == ["weight"]


def test_state_dict_shares_storage_and_round_trips():
    model = mlp(nn)
    state = model.state_dict()
    assert np.shares_memory(state["0.weight"].numpy(), model[0].weight.detach().numpy())
    copy = {k: v.numpy().copy() * 0 + 1.5 for k, v in state.items()}
    other = mlp(nn)
    result = other.load_state_dict(copy)
    assert result.missing_keys == [] and result.unexpected_keys == []
    np.testing.assert_array_equal(other[6].bias.detach().numpy(), 1.5)
    assert other[1].num_batches_tracked.item() == 1  # cast to int64 on load


def test_load_state_dict_errors():
    model = nn.Sequential(nn.Linear(3, 2))
    state = dict(model.state_dict())
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "0.bias"'):
        model.load_state_dict({"0.weight": state["0.weight"]})
    with pytest.raises(RuntimeError, match=r'Unexpected key\(s\) in state_dict: "0.extra"'):
        model.load_state_dict({**state, "0.extra": mg.zeros(1)})
    bad = {**state, "0.weight": mg.zeros(2, 4)}
    with pytest.raises(RuntimeError, match=r"size mismatch for 0.weight"):
        model.load_state_dict(bad)
    with pytest.raises(RuntimeError, match=r"size mismatch"):
        model.load_state_dict(bad, strict=False)  # shapes are checked even when not strict

    before = model[0].weight.detach().numpy().copy()
    result = model.load_state_dict({"0.bias": mg.ones(2), "junk": mg.ones(1)}, strict=False)
    assert result.missing_keys == ["0.weight"] and result.unexpected_keys == ["junk"]
    np.testing.assert_array_equal(model[0].bias.detach().numpy(), 1)
    np.testing.assert_array_equal(model[0].weight.detach().numpy(), before)


def test_weights_load_into_torch_and_give_the_same_outputs():
    torch = pytest.importorskip("torch")
    mg.manual_seed(0)
    model = mlp(nn)
    for _ in range(3):  # move the running stats away from their defaults
        model(mg.randn(16, 4) * 2 + 1)
    model.eval()
    twin = mlp(torch.nn)
    twin.load_state_dict(
        {k: torch.from_numpy(v.numpy().copy()) for k, v in model.state_dict().items()}
    )
    twin.eval()
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    with mg.no_grad(), torch.no_grad():
        np.testing.assert_allclose(
            model(mg.tensor(x)).numpy(), twin(torch.tensor(x)).numpy(), rtol=1e-5, atol=1e-6
        )
    back = mlp(nn)
    back.load_state_dict({k: v.numpy() for k, v in twin.state_dict().items()})
    for key, value in back.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), model.state_dict()[key].numpy())


# ---------------------------------------------------------------------------
# Hooks
# ---------------------------------------------------------------------------


def test_forward_hooks_and_pre_hooks():
    layer = nn.Linear(2, 2)
    calls = []

    def pre(module, inputs):
        calls.append(("pre", module))
        return (inputs[0] * 0,)

    def post(module, inputs, output):
        calls.append(("post", inputs[0].shape))
        return output + 1

    h1 = layer.register_forward_pre_hook(pre)
    h2 = layer.register_forward_hook(post)
    out = layer(mg.randn(3, 2))
    assert calls == [("pre", layer), ("post", (3, 2))]
    expected = np.broadcast_to(layer.bias.detach().numpy() + 1, (3, 2))
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-6)
    h1.remove()
    h2.remove()
    h2.remove()  # removing twice is harmless
    x = mg.randn(3, 2)
    np.testing.assert_array_equal(
        layer(x).detach().numpy(),
        nn.functional.linear(x, layer.weight, layer.bias).detach().numpy(),
    )
    assert len(calls) == 2


def test_a_hook_may_remove_itself_while_the_hooks_run():
    layer = nn.Identity()
    calls = []
    handles = {}

    def once(name):
        def hook(module, *args):
            calls.append(name)
            handles[name].remove()

        return hook

    handles["pre"] = layer.register_forward_pre_hook(once("pre"))
    handles["a"] = layer.register_forward_hook(once("a"))
    handles["b"] = layer.register_forward_hook(once("b"))
    layer(mg.zeros(1))
    layer(mg.zeros(1))
    assert calls == ["pre", "a", "b"]
    assert not layer._forward_hooks and not layer._forward_pre_hooks


def test_the_same_hook_registered_twice_after_a_removal_runs_twice():
    layer = nn.Identity()
    count = []

    def hook(module, inputs, output):
        count.append(1)

    first = layer.register_forward_hook(hook)
    layer.register_forward_hook(hook)
    first.remove()
    layer.register_forward_hook(hook)
    layer(mg.zeros(1))
    assert len(count) == 2


# ---------------------------------------------------------------------------
# Containers
# ---------------------------------------------------------------------------


def test_sequential_indexing_slicing_len_append():
    a, b, c = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)
    seq = nn.Sequential(a, b)
    assert len(seq) == 2 and seq[0] is a and seq[-1] is b
    assert list(seq) == [a, b]
    seq.append(c)
    assert len(seq) == 3 and seq[2] is c
    tail = seq[1:]
    assert isinstance(tail, nn.Sequential) and list(tail) == [b, c]
    assert list(tail.state_dict()) == ["2.weight", "2.bias"]  # keys kept, as in torch
    with pytest.raises(IndexError):
        seq[3]
    with pytest.raises(TypeError, match="not a Module"):
        nn.Sequential(a, lambda x: x)
    with pytest.raises(TypeError, match="expected a Module"):
        seq.append(3)
    named = nn.Sequential(OrderedDict([("enc", nn.Linear(2, 2)), ("act", nn.Tanh())]))
    assert list(named.state_dict()) == ["enc.weight", "enc.bias"]
    assert named(mg.randn(1, 2)).shape == (1, 2)


def test_module_list():
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    assert len(layers) == 3
    extra = nn.Linear(2, 2)
    layers.append(extra)
    assert layers[3] is extra and layers[-1] is extra
    layers.insert(0, nn.Tanh())
    assert isinstance(layers[0], nn.Tanh) and layers[4] is extra
    layers.extend([nn.ReLU()])
    assert len(layers) == 6
    first = layers[1]
    layers[1] = nn.Identity()
    assert first not in list(layers)
    assert isinstance(layers[1:3], nn.ModuleList) and len(layers[1:3]) == 2
    assert [k.split(".")[0] for k in layers.state_dict()] == ["2", "2", "3", "3", "4", "4"]

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])

    assert len(list(Net().parameters())) == 4
    with pytest.raises(TypeError, match="not a Module"):
        nn.ModuleList([nn.ReLU(), 1])


def test_residual_gradient_is_identity_plus_fn():
    inner = nn.Linear(3, 3, dtype=mg.float64)
    res = nn.Residual(inner)
    x = mg.randn(1, 3, dtype=mg.float64, requires_grad=True)
    g = np.array([[1.0, -2.0, 0.5]])
    res(x).backward(mg.tensor(g, dtype=mg.float64))
    w = inner.weight.detach().numpy()
    np.testing.assert_allclose(x.grad.numpy(), g + g @ w)
    assert mg.gradcheck(lambda t: res(t), [mg.randn(2, 3, dtype=mg.float64, requires_grad=True)])
    np.testing.assert_array_equal(nn.Residual(lambda t: t * 2)(mg.ones(2)).numpy(), 3)


# ---------------------------------------------------------------------------
# Printing
# ---------------------------------------------------------------------------


def test_repr_like_torch():
    torch = pytest.importorskip("torch")
    assert repr(mlp(nn)).replace("Residual", "R") == repr(mlp(torch.nn)).replace("Residual", "R")
    pairs = [
        (nn.LeakyReLU(0.2, inplace=True), torch.nn.LeakyReLU(0.2, inplace=True)),
        (nn.ReLU(inplace=True), torch.nn.ReLU(inplace=True)),
        (nn.GELU("tanh"), torch.nn.GELU("tanh")),
        (nn.Softmax(dim=1), torch.nn.Softmax(dim=1)),
        (nn.LogSoftmax(dim=0), torch.nn.LogSoftmax(dim=0)),
        (
            nn.BatchNorm1d(3, momentum=None, affine=False),
            torch.nn.BatchNorm1d(3, momentum=None, affine=False),
        ),
        (
            nn.LayerNorm((2, 3), elementwise_affine=False),
            torch.nn.LayerNorm((2, 3), elementwise_affine=False),
        ),
        (nn.Linear(2, 3, bias=False), torch.nn.Linear(2, 3, bias=False)),
        (nn.Identity(), torch.nn.Identity()),
        (nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()),
        (nn.BCEWithLogitsLoss(), torch.nn.BCEWithLogitsLoss()),
        (nn.MSELoss(), torch.nn.MSELoss()),
        (nn.L1Loss(), torch.nn.L1Loss()),
    ]
    for mine, theirs in pairs:
        assert repr(mine) == repr(theirs)


def test_module_attributes_match_torch():
    torch = pytest.importorskip("torch")
    for mine, theirs, names in [
        (nn.Linear(2, 3), torch.nn.Linear(2, 3), ["in_features", "out_features"]),
        (
            nn.BatchNorm1d(3),
            torch.nn.BatchNorm1d(3),
            ["num_features", "eps", "momentum", "affine", "track_running_stats"],
        ),
        (nn.LayerNorm(3), torch.nn.LayerNorm(3), ["eps", "elementwise_affine"]),
        (nn.Dropout(0.1), torch.nn.Dropout(0.1), ["p", "inplace"]),
        (
            nn.CrossEntropyLoss(label_smoothing=0.1),
            torch.nn.CrossEntropyLoss(label_smoothing=0.1),
            ["reduction", "ignore_index", "label_smoothing"],
        ),
    ]:
        for name in names:
            assert getattr(mine, name) == getattr(theirs, name), name
    assert nn.LayerNorm(3).normalized_shape == tuple(torch.nn.LayerNorm(3).normalized_shape)
