"""Layers, activations and losses: finite-difference gradients, PyTorch parity,
running statistics, initialization and the errors bad arguments raise.

Gradients are checked with ``mg.gradcheck`` in float64 on both backends.
Parity tests copy one set of weights into the minigrad and the torch layer
and compare outputs and every gradient.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import minigrad as mg
import minigrad.nn.functional as F
from minigrad import nn

_rng = np.random.default_rng(7)


def t64(*shape, requires_grad=True, low=None):
    """A float64 tensor of normal values (or |values| >= low, away from kinks)."""
    a = _rng.standard_normal(shape)
    if low is not None:
        a = np.sign(a) * (np.abs(a) + low)
    return mg.tensor(a, dtype=mg.float64, requires_grad=requires_grad)


def check_module(module, *inputs):
    """gradcheck a module w.r.t. its inputs and all its parameters."""
    params = list(module.parameters())
    n = len(inputs)
    return mg.gradcheck(lambda *args: module(*args[:n]), [*inputs, *params])


# ---------------------------------------------------------------------------
# Finite differences
# ---------------------------------------------------------------------------


class TestGradcheck:
    @pytest.mark.parametrize("bias", [True, False])
    @pytest.mark.parametrize("shape", [(4, 3), (2, 3, 3), (3,)])
    def test_linear(self, backend, bias, shape):
        layer = nn.Linear(3, 5, bias=bias, dtype=mg.float64)
        assert check_module(layer, t64(*shape))

    def test_linear_functional_only_weight_grad(self, backend):
        x = t64(4, 3, requires_grad=False)
        assert mg.gradcheck(lambda w, b: F.linear(x, w, b), [t64(2, 3), t64(2)])

    @pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5)])
    def test_batch_norm_train(self, backend, shape):
        bn = nn.BatchNorm1d(3, dtype=mg.float64)
        with mg.no_grad():
            bn.weight.copy_(_rng.uniform(0.5, 2, 3))
            bn.bias.copy_(_rng.standard_normal(3))
        assert check_module(bn, t64(*shape))

    def test_batch_norm_without_affine_and_without_running_stats(self, backend):
        bn = nn.BatchNorm1d(3, affine=False, track_running_stats=False, dtype=mg.float64)
        assert check_module(bn, t64(5, 3))
        bn.eval()  # still batch statistics: there are no running ones
        assert check_module(bn, t64(5, 3))

    def test_batch_norm_weight_only_and_bias_only(self, backend):
        x = t64(5, 3)
        assert mg.gradcheck(lambda x, w: F.batch_norm(x, None, None, w, None, True), [x, t64(3)])
        assert mg.gradcheck(lambda x, b: F.batch_norm(x, None, None, None, b, True), [x, t64(3)])

    @pytest.mark.parametrize("shape", [(5, 3), (2, 3, 4)])
    def test_batch_norm_eval(self, backend, shape):
        bn = nn.BatchNorm1d(3, dtype=mg.float64)
        with mg.no_grad():
            bn.running_mean.copy_(_rng.standard_normal(3))
            bn.running_var.copy_(_rng.uniform(0.5, 2, 3))
            bn.weight.copy_(_rng.uniform(0.5, 2, 3))
        bn.eval()
        assert check_module(bn, t64(*shape))

    @pytest.mark.parametrize("normalized", [(4,), (3, 4)])
    def test_layer_norm(self, backend, normalized):
        ln = nn.LayerNorm(normalized, dtype=mg.float64)
        with mg.no_grad():
            ln.weight.copy_(_rng.uniform(0.5, 2, normalized))
            ln.bias.copy_(_rng.standard_normal(normalized))
        assert check_module(ln, t64(2, 3, 4))

    def test_layer_norm_without_affine_or_bias(self, backend):
        assert check_module(nn.LayerNorm(4, elementwise_affine=False, dtype=mg.float64), t64(3, 4))
        assert check_module(nn.LayerNorm(4, bias=False, dtype=mg.float64), t64(3, 4))

    def test_dropout_with_a_fixed_mask(self):
        def f(x):
            mg.manual_seed(3)
            return F.dropout(x, 0.4)

        assert mg.gradcheck(f, [t64(5, 4)])
        assert check_module(nn.Dropout(0.3).eval(), t64(3))

    @pytest.mark.parametrize(
        "make",
        [
            nn.ReLU,
            lambda: nn.LeakyReLU(0.2),
            nn.Sigmoid,
            nn.Tanh,
            nn.GELU,
            lambda: nn.GELU("tanh"),
            lambda: nn.Softmax(dim=0),
            nn.LogSoftmax,
        ],
    )
    def test_activations(self, backend, make):
        assert check_module(make(), t64(3, 4, low=0.05))

    @pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
    def test_regression_losses(self, reduction):
        x, y = t64(3, 4), t64(3, 4)
        with mg.no_grad():
            y._data += np.where(y._data > x._data, 0.1, -0.1)  # keep |x - y| off the kink
        assert mg.gradcheck(lambda a, b: F.mse_loss(a, b, reduction=reduction), [x, y])
        assert mg.gradcheck(lambda a, b: F.l1_loss(a, b, reduction=reduction), [x, y])

    @pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
    @pytest.mark.parametrize("smoothing", [0.0, 0.2])
    def test_cross_entropy_class_indices(self, reduction, smoothing):
        target = mg.tensor([0, 2, -100, 1, 2])
        weight = mg.tensor([0.5, 2.0, 1.0], dtype=mg.float64)
        assert mg.gradcheck(
            lambda z: F.cross_entropy(
                z, target, weight=weight, reduction=reduction, label_smoothing=smoothing
            ),
            [t64(5, 3)],
        )

    @pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
    def test_cross_entropy_probabilities_and_k_dims(self, reduction):
        probs = np.ascontiguousarray(_rng.dirichlet(np.ones(3), size=(2, 4)).transpose(0, 2, 1))
        probs = mg.tensor(probs, requires_grad=True)
        assert mg.gradcheck(
            lambda z, p: F.cross_entropy(z, p, reduction=reduction, label_smoothing=0.1),
            [t64(2, 3, 4), probs],
        )
        target = mg.tensor([[0, 1, 2, 1], [2, 2, 0, 1]])
        assert mg.gradcheck(
            lambda z: F.cross_entropy(z, target, reduction=reduction), [t64(2, 3, 4)]
        )

    @pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
    def test_bce_with_logits(self, reduction):
        x = t64(3, 4)
        y = mg.tensor(_rng.uniform(0, 1, (3, 4)), dtype=mg.float64, requires_grad=True)
        w = mg.tensor(_rng.uniform(0.5, 2, (3, 1)), dtype=mg.float64, requires_grad=True)
        pw = mg.tensor(_rng.uniform(0.5, 3, 4), dtype=mg.float64, requires_grad=True)
        assert mg.gradcheck(
            lambda a, b, c, d: F.binary_cross_entropy_with_logits(
                a, b, weight=c, pos_weight=d, reduction=reduction
            ),
            [x, y, w, pw],
        )
        assert mg.gradcheck(
            lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction), [x, y]
        )


# ---------------------------------------------------------------------------
# Parity with PyTorch
# ---------------------------------------------------------------------------


def torch_twin(module, torch_module):
    """Load the minigrad module's state into the torch module."""
    torch = pytest.importorskip("torch")
    state = {k: torch.from_numpy(np.array(v.numpy())) for k, v in module.state_dict().items()}
    torch_module.load_state_dict(state)
    return torch_module


def compare(module, torch_module, x, *, atol=1e-10, train=True):
    """Same forward and backward in both; outputs, input grads and parameter grads agree."""
    torch = pytest.importorskip("torch")
    module.train(train)
    torch_module.train(train)
    xm = mg.tensor(x, dtype=x.dtype, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    ym, yt = module(xm), torch_module(xt)
    np.testing.assert_allclose(ym.detach().numpy(), yt.detach().numpy(), rtol=1e-7, atol=atol)
    g = _rng.standard_normal(ym.shape).astype(x.dtype)
    ym.backward(mg.tensor(g, dtype=x.dtype))
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(xm.grad.numpy(), xt.grad.numpy(), rtol=1e-7, atol=atol)
    tgrads = dict(torch_module.named_parameters())
    for name, p in module.named_parameters():
        np.testing.assert_allclose(
            p.grad.numpy(), tgrads[name].grad.numpy(), rtol=1e-7, atol=atol, err_msg=name
        )
    for name, b in module.named_buffers():
        np.testing.assert_allclose(
            b.numpy(), dict(torch_module.named_buffers())[name].numpy(), rtol=1e-7, atol=atol
        )


class TestTorchParity:
    @pytest.mark.parametrize("train", [True, False])
    def test_layers(self, backend, train):
        torch = pytest.importorskip("torch")
        cases = [
            (nn.Linear(4, 3), torch.nn.Linear(4, 3), (5, 4)),
            (nn.Linear(4, 3, bias=False), torch.nn.Linear(4, 3, bias=False), (2, 5, 4)),
            (nn.BatchNorm1d(4), torch.nn.BatchNorm1d(4), (6, 4)),
            (nn.BatchNorm1d(4), torch.nn.BatchNorm1d(4), (3, 4, 5)),
            (nn.BatchNorm1d(4, affine=False), torch.nn.BatchNorm1d(4, affine=False), (6, 4)),
            (
                nn.BatchNorm1d(4, track_running_stats=False),
                torch.nn.BatchNorm1d(4, track_running_stats=False),
                (6, 4),
            ),
            (nn.LayerNorm(4), torch.nn.LayerNorm(4), (2, 3, 4)),
            (nn.LayerNorm((3, 4), bias=False), torch.nn.LayerNorm((3, 4), bias=False), (2, 3, 4)),
            (nn.ReLU(), torch.nn.ReLU(), (3, 4)),
            (nn.LeakyReLU(0.1), torch.nn.LeakyReLU(0.1), (3, 4)),
            (nn.Sigmoid(), torch.nn.Sigmoid(), (3, 4)),
            (nn.Tanh(), torch.nn.Tanh(), (3, 4)),
            (nn.GELU(), torch.nn.GELU(), (3, 4)),
            (nn.GELU("tanh"), torch.nn.GELU("tanh"), (3, 4)),
            (nn.Softmax(dim=1), torch.nn.Softmax(dim=1), (3, 4)),
            (nn.LogSoftmax(dim=-1), torch.nn.LogSoftmax(dim=-1), (3, 4)),
            (nn.Dropout(0.3), torch.nn.Dropout(0.3), (3, 4)),  # eval only, see below
        ]
        for module, torch_module, shape in cases:
            if isinstance(module, nn.Dropout) and train:
                continue
            module.double()
            torch_module.double()
            with mg.no_grad():
                for p in module.parameters():  # not just ones and zeros
                    p.add_(mg.tensor(_rng.standard_normal(p.shape) * 0.3, dtype=mg.float64))
            torch_twin(module, torch_module)
            compare(module, torch_module, _rng.standard_normal(shape), train=train)

    def test_float32_layers(self, backend):
        torch = pytest.importorskip("torch")
        for module, torch_module, shape in [
            (nn.Linear(16, 8), torch.nn.Linear(16, 8), (10, 16)),
            (nn.BatchNorm1d(8), torch.nn.BatchNorm1d(8), (10, 8)),
            (nn.LayerNorm(8), torch.nn.LayerNorm(8), (10, 8)),
        ]:
            torch_twin(module, torch_module)
            x = _rng.standard_normal(shape).astype(np.float32)
            compare(module, torch_module, x, atol=1e-5)

    @pytest.mark.parametrize("momentum", [0.1, 0.5, None])
    @pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5)])
    def test_running_stats_after_several_steps(self, backend, momentum, shape):
        torch = pytest.importorskip("torch")
        bn = nn.BatchNorm1d(3, momentum=momentum, dtype=mg.float64)
        tbn = torch.nn.BatchNorm1d(3, momentum=momentum).double()
        for _ in range(4):
            x = _rng.standard_normal(shape) * 3 + 2
            bn(mg.tensor(x))
            tbn(torch.tensor(x))
        for name in ("running_mean", "running_var"):
            np.testing.assert_allclose(
                getattr(bn, name).numpy(), getattr(tbn, name).numpy(), rtol=1e-12
            )
        assert bn.num_batches_tracked.item() == 4
        assert bn.num_batches_tracked.dtype == mg.int64 and bn.num_batches_tracked.ndim == 0
        bn.eval()
        tbn.eval()
        x = _rng.standard_normal(shape)
        np.testing.assert_allclose(
            bn(mg.tensor(x)).detach().numpy(), tbn(torch.tensor(x)).detach().numpy(), rtol=1e-10
        )

    def test_eval_does_not_move_running_stats(self):
        bn = nn.BatchNorm1d(3).eval()
        bn(mg.randn(4, 3))
        assert bn.num_batches_tracked.item() == 0
        np.testing.assert_array_equal(bn.running_mean.numpy(), 0)

    @pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
    def test_losses(self, reduction):
        torch = pytest.importorskip("torch")
        tF = torch.nn.functional

        def both(mg_fn, torch_fn, arrays, grads_of):
            mt = [
                mg.tensor(a, dtype=a.dtype, requires_grad=i in grads_of)
                for i, a in enumerate(arrays)
            ]
            tt = [
                torch.tensor(a, requires_grad=i in grads_of)
                if a.dtype.kind == "f"
                else torch.tensor(a)
                for i, a in enumerate(arrays)
            ]
            ym, yt = mg_fn(*mt), torch_fn(*tt)
            np.testing.assert_allclose(ym.detach().numpy(), yt.detach().numpy(), rtol=1e-10)
            g = _rng.standard_normal(ym.shape)
            ym.backward(mg.tensor(g, dtype=mg.float64))
            yt.backward(torch.tensor(g))
            for i in grads_of:
                np.testing.assert_allclose(
                    mt[i].grad.numpy(), tt[i].grad.numpy(), rtol=1e-9, atol=1e-12
                )

        r = {"reduction": reduction}
        x, y = _rng.standard_normal((4, 5)), _rng.standard_normal((4, 5))
        both(
            lambda a, b: F.mse_loss(a, b, **r), lambda a, b: tF.mse_loss(a, b, **r), [x, y], {0, 1}
        )
        both(lambda a, b: F.l1_loss(a, b, **r), lambda a, b: tF.l1_loss(a, b, **r), [x, y], {0, 1})

        w = np.array([1.0, 0.5, 2.0, 1.5, 0.7])
        for kwargs in [{}, {"label_smoothing": 0.15}, {"ignore_index": 3}]:
            for weighted in (False, True):

                def mine(a, b, c, kwargs=kwargs, weighted=weighted):
                    return F.cross_entropy(a, b, weight=c if weighted else None, **kwargs, **r)

                def theirs(a, b, c, kwargs=kwargs, weighted=weighted):
                    return tF.cross_entropy(a, b, weight=c if weighted else None, **kwargs, **r)

                classes = np.array([0, 3, 4, kwargs.get("ignore_index", -100), 2])
                both(mine, theirs, [_rng.standard_normal((5, 5)), classes, w], {0})
                if "ignore_index" not in kwargs:
                    soft = _rng.dirichlet(np.ones(5), size=5)
                    both(mine, theirs, [_rng.standard_normal((5, 5)), soft, w], {0, 1})
        z3 = _rng.standard_normal((2, 5, 3))
        t3 = np.array([[0, 4, 1], [2, 2, 3]])
        both(
            lambda a, b: F.cross_entropy(a, b, label_smoothing=0.1, **r),
            lambda a, b: tF.cross_entropy(a, b, label_smoothing=0.1, **r),
            [z3, t3],
            {0},
        )
        both(
            lambda a, b: F.cross_entropy(a, b, **r),
            lambda a, b: tF.cross_entropy(a, b, **r),
            [_rng.standard_normal(5), np.array(3)],
            {0},
        )

        y01 = _rng.uniform(0, 1, (4, 5))
        for extra in [{}, {"weight": 0}, {"pos_weight": 1}, {"weight": 0, "pos_weight": 1}]:
            arrays = [x, y01, _rng.uniform(0.5, 2, (4, 1)), _rng.uniform(0.5, 3, 5)]

            def mine(a, b, c, d, extra=extra):
                named = {k: (c, d)[v] for k, v in extra.items()}
                return F.binary_cross_entropy_with_logits(a, b, **named, **r)

            def theirs(a, b, c, d, extra=extra):
                named = {k: (c, d)[v] for k, v in extra.items()}
                return tF.binary_cross_entropy_with_logits(a, b, **named, **r)

            both(mine, theirs, arrays, {0, 1})  # torch has no grads for weight, pos_weight

    def test_loss_modules_match_functional(self):
        torch = pytest.importorskip("torch")
        z = _rng.standard_normal((6, 4)).astype(np.float32)
        t = np.array([0, 1, 2, 3, 1, 0])
        w = np.array([1.0, 2.0, 0.5, 1.0], np.float32)
        mine = nn.CrossEntropyLoss(weight=mg.tensor(w), label_smoothing=0.1)(
            mg.tensor(z), mg.tensor(t)
        )
        theirs = torch.nn.CrossEntropyLoss(weight=torch.tensor(w), label_smoothing=0.1)(
            torch.tensor(z), torch.tensor(t)
        )
        assert mine.dtype == mg.float32
        np.testing.assert_allclose(mine.item(), theirs.item(), rtol=1e-6)
        y = (z > 0).astype(np.float32)
        pw = np.array([1.0, 2.0, 3.0, 0.5], np.float32)
        mine = nn.BCEWithLogitsLoss(pos_weight=mg.tensor(pw), reduction="sum")(
            mg.tensor(z), mg.tensor(y)
        )
        theirs = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pw), reduction="sum")(
            torch.tensor(z), torch.tensor(y)
        )
        np.testing.assert_allclose(mine.item(), theirs.item(), rtol=1e-6)
        np.testing.assert_allclose(
            nn.MSELoss()(mg.tensor(z), mg.tensor(y)).item(),
            torch.nn.MSELoss()(torch.tensor(z), torch.tensor(y)).item(),
            rtol=1e-6,
        )
        np.testing.assert_allclose(
            nn.L1Loss(reduction="sum")(mg.tensor(z), mg.tensor(y)).item(),
            torch.nn.L1Loss(reduction="sum")(torch.tensor(z), torch.tensor(y)).item(),
            rtol=1e-6,
        )


# ---------------------------------------------------------------------------
# Numerics, dropout, init
# ---------------------------------------------------------------------------


def test_bce_with_extreme_logits_is_finite():
    for dtype in (mg.float32, mg.float64):
        x = mg.tensor([1e4, -1e4, 1e4, -1e4], dtype=dtype, requires_grad=True)
        y = mg.tensor([1.0, 0.0, 0.0, 1.0], dtype=dtype)
        loss = F.binary_cross_entropy_with_logits(x, y, reduction="none")
        np.testing.assert_allclose(loss.detach().numpy(), [0, 0, 1e4, 1e4])
        loss.sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), [0, 0, 1, -1])


def test_cross_entropy_with_huge_logits_is_finite():
    z = mg.tensor([[1e4, -1e4, 0.0]], requires_grad=True)
    loss = F.cross_entropy(z, mg.tensor([1]))
    assert loss.item() == pytest.approx(2e4)
    loss.backward()
    np.testing.assert_allclose(z.grad.numpy(), [[1, -1, 0]], atol=1e-6)


def test_dropout_statistics_and_modes():
    mg.manual_seed(0)
    x = mg.ones(200, 500)
    y = F.dropout(x, 0.3).numpy()
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    layer = nn.Dropout(0.3)
    assert layer.eval()(x) is x
    assert F.dropout(x, 0.0) is x
    assert F.dropout(x, 0.5, training=False) is x
    x = mg.randn(3, 4, requires_grad=True)
    y = F.dropout(x, 1.0)
    np.testing.assert_array_equal(y.detach().numpy(), 0)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), 0)
    mg.manual_seed(5)
    a = F.dropout(mg.ones(10), 0.5).numpy()
    mg.manual_seed(5)
    np.testing.assert_array_equal(a, F.dropout(mg.ones(10), 0.5).numpy())


def test_dropout_backward_uses_the_forward_mask():
    x = mg.randn(50, requires_grad=True)
    y = F.dropout(x, 0.5)
    y.backward(mg.ones(50))
    np.testing.assert_array_equal(x.grad.numpy() != 0, y.detach().numpy() != 0)


def test_linear_default_init_bounds():
    mg.manual_seed(1)
    layer = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)
    for p in (layer.weight, layer.bias):
        a = p.detach().numpy()
        assert a.dtype == np.float32
        assert np.abs(a).max() <= bound
        assert np.abs(a).max() > 0.95 * bound
    w = layer.weight.detach().numpy().copy()
    assert abs(w.mean()) < 0.01 * bound
    assert w.var() == pytest.approx(bound**2 / 3, rel=0.02)  # variance of U(-b, b)
    mg.manual_seed(1)
    np.testing.assert_array_equal(nn.Linear(400, 300).weight.detach().numpy(), w)
    before = layer.weight
    layer.reset_parameters()
    assert layer.weight is before
    assert not np.array_equal(layer.weight.detach().numpy(), w)
    assert nn.Linear(4, 2, dtype=mg.float64).weight.dtype == mg.float64
    empty = nn.Linear(0, 3)
    np.testing.assert_array_equal(empty.bias.detach().numpy(), 0)


def test_linear_reshapes_without_copying_contiguous_input():
    x = mg.randn(2, 3, 4)
    y = F.linear(x, mg.randn(5, 4))
    assert y.shape == (2, 3, 5)
    assert F.linear(mg.randn(4), mg.randn(5, 4), mg.randn(5)).shape == (5,)
    assert F.linear(mg.zeros(0, 4), mg.randn(5, 4)).shape == (0, 5)


def test_softmax_default_dim_is_last():
    x = mg.randn(2, 3, 4)
    np.testing.assert_allclose(F.softmax(x).numpy().sum(-1), 1, rtol=1e-6)
    np.testing.assert_allclose(nn.Softmax()(x).numpy().sum(-1), 1, rtol=1e-6)
    assert F.log_softmax(x, dim=1, dtype=mg.float64).dtype == mg.float64


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------


class TestErrors:
    def test_cross_entropy_out_of_range_target(self):
        z = mg.randn(3, 4, requires_grad=True)
        with pytest.raises(IndexError, match=r"cross_entropy: target 4 is out of bounds"):
            F.cross_entropy(z, mg.tensor([0, 4, 1]))
        with pytest.raises(IndexError, match="target -1"):
            F.cross_entropy(z, mg.tensor([0, -1, 1]))
        with pytest.raises(TypeError, match="class indices"):
            F.cross_entropy(z, mg.tensor([True, False, True]))
        with pytest.raises(ValueError, match=r"expected \(3,\)"):
            F.cross_entropy(z, mg.tensor([0, 1]))
        with pytest.raises(ValueError, match="probability targets"):
            F.cross_entropy(z, mg.rand(3, 5))
        with pytest.raises(ValueError, match="ignore_index=0 is not supported"):
            F.cross_entropy(z, mg.rand(3, 4), ignore_index=0)
        with pytest.raises(ValueError, match="label_smoothing"):
            F.cross_entropy(z, mg.tensor([0, 1, 1]), label_smoothing=1.5)

    def test_reduction_names(self):
        x = mg.randn(3)
        for fn in (F.mse_loss, F.l1_loss, F.binary_cross_entropy_with_logits):
            with pytest.raises(ValueError, match=r"'reduction' must be 'mean', 'sum' or 'none'"):
                fn(x, x, reduction="avg")
        with pytest.raises(ValueError, match="reduction"):
            nn.CrossEntropyLoss(reduction="max")

    def test_dropout_p(self):
        with pytest.raises(ValueError, match=r"dropout: argument 'p' must be in \[0.0, 1.0\]"):
            F.dropout(mg.randn(3), 1.5)
        with pytest.raises(ValueError, match="Dropout"):
            nn.Dropout(-0.1)

    def test_batch_of_one_in_training(self):
        bn = nn.BatchNorm1d(3)
        with pytest.raises(
            ValueError, match="Expected more than 1 value per channel when training"
        ):
            bn(mg.randn(1, 3))
        assert bn.num_batches_tracked.item() == 0
        bn(mg.randn(1, 3, 2))  # two values per channel
        assert bn.eval()(mg.randn(1, 3)).shape == (1, 3)

    def test_shapes_and_dtypes(self):
        with pytest.raises(ValueError, match=r"linear: input of shape \(2, 3\)"):
            nn.Linear(4, 2)(mg.randn(2, 3))
        with pytest.raises(TypeError, match="linear: weight is float64 but input is float32"):
            F.linear(mg.randn(2, 3), mg.randn(2, 3, dtype=mg.float64))
        with pytest.raises(TypeError, match="linear: input has dtype int64"):
            nn.Linear(3, 2)(mg.tensor([[1, 2, 3]]))
        with pytest.raises(ValueError, match="expected 2D or 3D input"):
            nn.BatchNorm1d(3)(mg.randn(2, 3, 4, 5))
        with pytest.raises(ValueError, match=r"batch_norm: weight has shape \(4,\)"):
            F.batch_norm(mg.randn(5, 3), None, None, mg.ones(4), training=True)
        with pytest.raises(ValueError, match="does not end in normalized_shape"):
            nn.LayerNorm(4)(mg.randn(4, 3))
        with pytest.raises(TypeError, match="argument 'input' must be a Tensor"):
            F.relu([1.0, 2.0])
        with pytest.raises(ValueError, match="target size"):
            F.binary_cross_entropy_with_logits(mg.randn(3), mg.rand(4))
        with pytest.raises(TypeError, match="mse_loss: target has dtype int64"):
            F.mse_loss(mg.randn(3), mg.tensor([1, 2, 3]))
        with pytest.raises(ValueError, match="approximate"):
            nn.GELU("fast")
        with pytest.raises(ValueError, match="device"):
            nn.Linear(2, 2, device="cuda")

    def test_mismatched_target_shape_warns(self):
        with pytest.warns(UserWarning, match="broadcast"):
            F.mse_loss(mg.randn(3, 1), mg.randn(3))


@pytest.mark.parametrize(
    "layer",
    [
        lambda x, w: F.linear(x, w),
        lambda x, w: F.layer_norm(x, (3,), w[0]),
        lambda x, w: F.batch_norm(x, None, None, w[0], training=True),
    ],
)
def test_changing_a_saved_input_in_place_is_caught(layer):
    x = mg.randn(2, 3)
    w = mg.randn(3, 3, requires_grad=True)
    y = layer(x, w)
    x.mul_(2)
    with pytest.raises(RuntimeError, match="changed in place"):
        y.sum().backward()
