"""Optimizers and schedulers: PyTorch's update rules, state and state dicts.

Parity tests start minigrad and PyTorch from the same weights, feed both the
same gradients for 10 steps, and compare the weights and the optimizer state
after every step. Tolerances: float64 rtol=1e-12; float32 rtol=1e-5,
atol=1e-6 (the same float32 ops, possibly fused differently).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

import minigrad as mg
from minigrad import optim
from minigrad.optim.lr_scheduler import CosineAnnealingLR, StepLR

TOLERANCE = {
    np.dtype(np.float64): {"rtol": 1e-12, "atol": 1e-14},
    np.dtype(np.float32): {"rtol": 1e-5, "atol": 1e-6},
}
SHAPES = [(4, 3), (3,), (2, 3, 2)]
STEPS = 10


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def _weights(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def _gradients(dtype, steps=STEPS, seed=1):
    """One gradient per parameter per step; parameter 1 has none at step 3."""
    rng = np.random.default_rng(seed)
    grads = [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(steps)]
    grads[3][1] = None
    return grads


def _mg_params(weights):
    return [mg.tensor(w.copy(), requires_grad=True) for w in weights]


def _torch_params(torch, weights):
    return [torch.nn.Parameter(torch.tensor(w.copy())) for w in weights]


def _set_grads(params, grads, wrap):
    for p, g in zip(params, grads, strict=True):
        p.grad = None if g is None else wrap(g.copy())


def _groups(params, split):
    """All parameters in one group, or two groups with their own lr."""
    if not split:
        return params
    return [{"params": params[:2]}, {"params": params[2:], "lr": 0.05}]


def _close(actual, expected, dtype):
    np.testing.assert_allclose(actual, expected, **TOLERANCE[np.dtype(dtype)])


def _compare_state(mg_opt, mg_params, t_opt, t_params, dtype):
    for p, tp in zip(mg_params, t_params, strict=True):
        _close(p.detach().numpy(), tp.detach().numpy(), dtype)
        ours, theirs = mg_opt.state[p], t_opt.state[tp]
        assert set(ours) == set(theirs)
        for key, value in theirs.items():
            if key == "step":
                assert float(ours[key]) == float(value)
            else:
                _close(ours[key].numpy(), value.numpy(), dtype)


CONFIGS = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.5}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("SGD", {"lr": 0.1, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.1, "momentum": 0.8, "dampening": 0.1, "weight_decay": 0.05}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.05}),
    ("Adam", {}),
    ("Adam", {"lr": 0.01, "betas": (0.5, 0.9), "eps": 1e-6}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1}),
    ("AdamW", {}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1, "betas": (0.8, 0.99)}),
]


def _config_id(config):
    name, kwargs = config
    return name + "".join(f"-{k}={v}" for k, v in kwargs.items())


@pytest.mark.parametrize("config", CONFIGS, ids=_config_id)
@pytest.mark.parametrize("split", [False, True], ids=["one-group", "two-groups"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_optimizer_matches_torch(torch, backend, config, split, dtype):
    name, kwargs = config
    weights, grads = _weights(dtype), _gradients(dtype)
    ours = _mg_params(weights)
    theirs = _torch_params(torch, weights)
    mg_opt = getattr(optim, name)(_groups(ours, split), **kwargs)
    t_opt = getattr(torch.optim, name)(_groups(theirs, split), **kwargs)
    for step_grads in grads:
        _set_grads(ours, step_grads, mg.tensor)
        _set_grads(theirs, step_grads, torch.tensor)
        mg_opt.step()
        t_opt.step()
        _compare_state(mg_opt, ours, t_opt, theirs, dtype)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_gradients_from_backward_match_torch(torch, backend, name):
    """The usual loop, each library computing its own gradients of a quadratic loss."""
    rng = np.random.default_rng(5)
    a = rng.standard_normal((6, 4))
    target = rng.standard_normal((6, 3))
    w0 = rng.standard_normal((4, 3))
    kwargs = {"lr": 0.05, "momentum": 0.9} if name == "SGD" else {"lr": 0.05}

    w = mg.tensor(w0.copy(), requires_grad=True)
    opt = getattr(optim, name)([w], **kwargs)
    tw = torch.tensor(w0.copy(), requires_grad=True)
    t_opt = getattr(torch.optim, name)([tw], **kwargs)
    for _ in range(STEPS):
        opt.zero_grad()
        ((mg.tensor(a) @ w - mg.tensor(target)) ** 2).mean().backward()
        opt.step()
        t_opt.zero_grad()
        ((torch.tensor(a) @ tw - torch.tensor(target)) ** 2).mean().backward()
        t_opt.step()
        _close(w.detach().numpy(), tw.detach().numpy(), np.float64)


def test_strided_parameter_and_gradient(backend):
    """A transposed parameter and gradient are updated like contiguous ones."""
    rng = np.random.default_rng(3)
    w0, g0 = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    strided = mg.from_numpy(np.asfortranarray(w0)).requires_grad_()
    plain = mg.tensor(w0.copy(), requires_grad=True)
    strided.grad = mg.from_numpy(np.asfortranarray(g0))
    plain.grad = mg.tensor(g0.copy())
    opts = [optim.Adam([p], lr=0.1) for p in (strided, plain)]
    for opt in opts:
        opt.step()
    np.testing.assert_array_equal(strided.detach().numpy(), plain.detach().numpy())
    np.testing.assert_array_equal(strided.grad.numpy(), g0)


@pytest.mark.parametrize("config", CONFIGS, ids=_config_id)
def test_one_call_per_group_equals_one_call_per_parameter(backend, config, monkeypatch):
    """The group path gives the very bits of the per-parameter path, with a
    parameter that skips a step (so the step counts differ) and one listed twice."""
    name, kwargs = config
    dtype = np.float32
    grads = _gradients(dtype)
    results = []
    for one_call in (True, False):
        fits = staticmethod(lambda params, answer=one_call: answer)
        monkeypatch.setattr(optim.Optimizer, "_one_call_fits", fits)
        params = _mg_params(_weights(dtype))
        with pytest.warns(UserWarning, match="duplicate parameters"):
            opt = getattr(optim, name)([*params, params[0]], **kwargs)
        for step_grads in grads:
            _set_grads(params, step_grads, mg.tensor)
            opt.step()
        results.append([p.detach().numpy() for p in params])
    for got, want in zip(*results, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("backend", ["c"], indirect=True)  # the reference loops inside
@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_a_group_is_updated_in_one_c_call(backend, name, monkeypatch):
    calls = []
    active = mg.backend.active
    for method in ("sgd_step_", "adam_step_", "sgd_step_multi_", "adam_step_multi_"):
        original = getattr(active, method)
        monkeypatch.setattr(
            active, method, lambda *a, f=original, m=method, **kw: calls.append(m) or f(*a, **kw)
        )
    params = _mg_params(_weights(np.float32))
    opt = getattr(optim, name)([{"params": params[:2]}, {"params": params[2:]}], lr=0.1)
    _set_grads(params, _gradients(np.float32)[0], mg.tensor)
    opt.step()
    assert calls == [f"{name.lower()}_step_multi_"] * 2
    # a strided parameter sends its group down the per-parameter path
    calls.clear()
    strided = mg.from_numpy(np.asfortranarray(np.ones((3, 2), np.float32))).requires_grad_()
    strided.grad = mg.ones(3, 2)
    opt.add_param_group({"params": [strided]})
    opt.step()
    assert calls == [f"{name.lower()}_step_multi_"] * 2 + [f"{name.lower()}_step_"]


# ---------------------------------------------------------------------------
# zero_grad, step(closure), parameter groups
# ---------------------------------------------------------------------------


def test_zero_grad_set_to_none():
    params = _mg_params(_weights(np.float32))
    opt = optim.SGD(params, lr=0.1)
    _set_grads(params, _gradients(np.float32)[0], mg.tensor)
    opt.zero_grad()
    assert all(p.grad is None for p in params)


def test_zero_grad_in_place_keeps_the_gradient_tensors():
    params = _mg_params(_weights(np.float32))
    opt = optim.SGD(params, lr=0.1)
    _set_grads(params, _gradients(np.float32)[0], mg.tensor)
    before = [p.grad for p in params]
    opt.zero_grad(set_to_none=False)
    for p, g in zip(params, before, strict=True):
        assert p.grad is g
        assert not g.numpy().any()


def test_skips_parameters_without_grad():
    params = _mg_params(_weights(np.float64))
    opt = optim.Adam(params, lr=0.1)
    params[0].grad = mg.ones(*SHAPES[0], dtype=mg.float64)
    before = [p.detach().numpy().copy() for p in params]
    opt.step()
    assert not np.array_equal(params[0].detach().numpy(), before[0])
    for p, b in zip(params[1:], before[1:], strict=True):
        np.testing.assert_array_equal(p.detach().numpy(), b)
        assert p not in opt.state


def test_step_returns_the_closure_loss_and_runs_it_with_grad():
    w = mg.tensor([1.0, -2.0], requires_grad=True)
    opt = optim.SGD([w], lr=0.5)

    def closure():
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss

    with mg.no_grad():
        loss = opt.step(closure)
    assert loss.item() == 5.0
    np.testing.assert_allclose(w.detach().numpy(), [0.0, 0.0])
    assert mg.is_grad_enabled()


def test_param_groups_get_defaults_and_keep_their_own():
    a, b = mg.zeros(2, requires_grad=True), mg.zeros(3, requires_grad=True)
    opt = optim.SGD([{"params": [a]}, {"params": b, "lr": 0.5}], lr=0.1, momentum=0.9)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert all(g["momentum"] == 0.9 for g in opt.param_groups)
    assert opt.param_groups[1]["params"][0] is b
    c = mg.zeros(1, requires_grad=True)
    group = {"params": [c], "lr": 0.01}
    opt.add_param_group(group)
    assert opt.param_groups[2] is group and group["nesterov"] is False
    assert "SGD" in repr(opt) and "Parameter Group 2" in repr(opt)


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda p: optim.SGD(p, lr=-1), ValueError, "Invalid learning rate: -1"),
        (lambda p: optim.SGD(p, momentum=-0.5), ValueError, "Invalid momentum value: -0.5"),
        (lambda p: optim.SGD(p, weight_decay=-1), ValueError, "Invalid weight_decay value: -1"),
        (lambda p: optim.SGD(p, nesterov=True), ValueError, "Nesterov momentum requires"),
        (
            lambda p: optim.SGD(p, momentum=0.9, dampening=0.1, nesterov=True),
            ValueError,
            "zero dampening",
        ),
        (lambda p: optim.Adam(p, lr=-0.1), ValueError, "Invalid learning rate: -0.1"),
        (lambda p: optim.Adam(p, eps=-1e-8), ValueError, "Invalid epsilon value"),
        (lambda p: optim.Adam(p, betas=(1.0, 0.9)), ValueError, "beta parameter at index 0"),
        (lambda p: optim.AdamW(p, betas=(0.9, -0.1)), ValueError, "beta parameter at index 1"),
        (lambda p: optim.AdamW(p, weight_decay=-1), ValueError, "Invalid weight_decay"),
        (lambda p: optim.SGD(p[0]), TypeError, "iterable of Tensors or dicts"),
        (lambda p: optim.SGD([]), ValueError, "empty parameter list"),
        (lambda p: optim.SGD([p[0], 3.0]), TypeError, "can only optimize Tensors"),
        (lambda p: optim.SGD([p[0] * 2]), ValueError, "non-leaf"),
        (lambda p: optim.SGD([{"params": p}, {"params": p[:1]}]), ValueError, "more than one"),
        (lambda p: optim.SGD({p[0]}), TypeError, "ordered collections"),
        (lambda p: optim.SGD([{"params": {p[0]}}]), TypeError, "ordered collections"),
        (lambda p: optim.SGD([{"params": p, "lr": -2.0}]), ValueError, "learning rate: -2.0"),
    ],
)
def test_bad_arguments_raise_pytorch_errors(make, error, message):
    params = _mg_params(_weights(np.float32))
    with pytest.raises(error, match=message):
        make(params)


def test_validation_messages_equal_torch(torch):
    w = [torch.nn.Parameter(torch.zeros(2))]
    p = [mg.zeros(2, requires_grad=True)]
    for kwargs in ({"lr": -1}, {"momentum": -1}, {"weight_decay": -1}, {"nesterov": True}):
        with pytest.raises(ValueError) as theirs:
            torch.optim.SGD(w, **kwargs)
        with pytest.raises(ValueError) as ours:
            optim.SGD(p, **kwargs)
        assert str(ours.value) == str(theirs.value)


def test_default_learning_rates_equal_torch(torch):
    import inspect

    for name in ("SGD", "Adam", "AdamW"):
        ours = inspect.signature(getattr(optim, name)).parameters
        theirs = inspect.signature(getattr(torch.optim, name)).parameters
        for arg in ours:
            if arg in theirs and arg != "params":
                assert ours[arg].default == theirs[arg].default, (name, arg)


# ---------------------------------------------------------------------------
# state dicts
# ---------------------------------------------------------------------------


def _run(opt, params, grads):
    for step_grads in grads:
        _set_grads(params, step_grads, mg.tensor)
        opt.step()


@pytest.mark.parametrize("config", CONFIGS[1:3] + CONFIGS[7:], ids=_config_id)
def test_state_dict_round_trip_continues_identically(backend, config):
    name, kwargs = config
    dtype = np.float32
    grads = _gradients(dtype)
    first = _mg_params(_weights(dtype))
    opt = getattr(optim, name)(_groups(first, True), **kwargs)
    _run(opt, first, grads[:5])

    saved = copy.deepcopy(opt.state_dict())
    second = [mg.tensor(p.detach().numpy().copy(), requires_grad=True) for p in first]
    resumed = getattr(optim, name)(_groups(second, True), **kwargs)
    resumed.load_state_dict(saved)
    assert resumed.param_groups[1]["lr"] == 0.05

    _run(opt, first, grads[5:])
    _run(resumed, second, grads[5:])
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())


def test_state_dict_structure():
    params = _mg_params(_weights(np.float64))
    opt = optim.Adam(_groups(params, True), lr=0.01)
    _set_grads(params, [np.ones(s) for s in SHAPES], mg.tensor)
    opt.step()
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    assert sd["param_groups"][1]["lr"] == 0.05
    assert set(sd["state"]) == {0, 1, 2}
    entry = sd["state"][2]
    assert set(entry) == {"step", "exp_avg", "exp_avg_sq"}
    assert isinstance(entry["exp_avg"], mg.Tensor) and entry["exp_avg"].shape == SHAPES[2]
    assert entry["step"].dtype == np.float32 and entry["step"].item() == 1.0


def test_load_state_dict_copies_instead_of_sharing():
    params = _mg_params(_weights(np.float64))
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    _run(opt, params, _gradients(np.float64)[:2])
    other = optim.SGD(_mg_params(_weights(np.float64)), lr=0.1, momentum=0.9)
    other.load_state_dict(opt.state_dict())
    a = opt.state[params[0]]["momentum_buffer"]
    b = other.state[other.param_groups[0]["params"][0]]["momentum_buffer"]
    assert a is not b and not np.shares_memory(a.numpy(), b.numpy())
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_load_state_dict_rejects_a_mismatch():
    params = _mg_params(_weights(np.float64))
    opt = optim.Adam(params)
    _run(opt, params, _gradients(np.float64)[:1])
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="number of parameter groups"):
        optim.Adam(_groups(_mg_params(_weights(np.float64)), True)).load_state_dict(sd)
    with pytest.raises(ValueError, match="doesn't match the size"):
        optim.Adam(_mg_params(_weights(np.float64))[:2]).load_state_dict(
            {"state": {}, "param_groups": [{**sd["param_groups"][0], "params": [0, 1, 2]}]}
        )
    swapped = _mg_params(_weights(np.float64))
    swapped[0], swapped[1] = swapped[1], swapped[0]
    with pytest.raises(ValueError, match="has shape"):
        optim.Adam(swapped).load_state_dict(sd)


def test_adam_state_dict_saved_by_adam_keeps_adamw_decoupled():
    params = _mg_params(_weights(np.float64))
    sd = optim.Adam(params, weight_decay=0.1).state_dict()
    opt = optim.AdamW(_mg_params(_weights(np.float64)))
    opt.load_state_dict(sd)
    assert opt.param_groups[0]["decoupled_weight_decay"] is True


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_torch_state_dict_loads_and_continues_like_torch(torch, backend, name):
    """A state dict written by torch.optim, its tensors converted, resumes in minigrad."""
    dtype = np.float64
    kwargs = {"lr": 0.05, "momentum": 0.9} if name == "SGD" else {"lr": 0.05}
    grads = _gradients(dtype)
    theirs = _torch_params(torch, _weights(dtype))
    t_opt = getattr(torch.optim, name)(theirs, **kwargs)
    for step_grads in grads[:5]:
        _set_grads(theirs, step_grads, torch.tensor)
        t_opt.step()

    sd = t_opt.state_dict()
    converted = {
        "state": {
            i: {k: mg.tensor(v.numpy().copy()) for k, v in s.items()}
            for i, s in sd["state"].items()
        },
        "param_groups": copy.deepcopy(sd["param_groups"]),
    }
    ours = [mg.tensor(p.detach().numpy().copy(), requires_grad=True) for p in theirs]
    opt = getattr(optim, name)(ours, **kwargs)
    opt.load_state_dict(converted)
    for step_grads in grads[5:]:
        _set_grads(ours, step_grads, mg.tensor)
        _set_grads(theirs, step_grads, torch.tensor)
        opt.step()
        t_opt.step()
        _compare_state(opt, ours, t_opt, theirs, dtype)


# ---------------------------------------------------------------------------
# learning-rate schedulers
# ---------------------------------------------------------------------------


def _lr_sequence(make_opt, make_sched, steps, step_opt):
    opt = make_opt()
    sched = make_sched(opt)
    lrs = [sched.get_last_lr()]
    for _ in range(steps):
        step_opt(opt)
        sched.step()
        lrs.append(sched.get_last_lr())
    return lrs, opt


SCHEDULES = [
    ("StepLR", {"step_size": 3}, 15),
    ("StepLR", {"step_size": 2, "gamma": 0.5}, 12),
    ("CosineAnnealingLR", {"T_max": 5}, 15),
    ("CosineAnnealingLR", {"T_max": 7, "eta_min": 0.01}, 21),
    ("CosineAnnealingLR", {"T_max": 1}, 6),
]


@pytest.mark.parametrize(("name", "kwargs", "steps"), SCHEDULES)
def test_scheduler_lrs_equal_torch(torch, name, kwargs, steps):
    ours, opt = _lr_sequence(
        lambda: optim.SGD(_groups(_mg_params(_weights(np.float32)), True), lr=0.1),
        lambda o: getattr(optim.lr_scheduler, name)(o, **kwargs),
        steps,
        lambda o: o.step(),
    )
    theirs, t_opt = _lr_sequence(
        lambda: torch.optim.SGD(_groups(_torch_params(torch, _weights(np.float32)), True), lr=0.1),
        lambda o: getattr(torch.optim.lr_scheduler, name)(o, **kwargs),
        steps,
        lambda o: o.step(),
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-14, atol=1e-17)
    assert [g["initial_lr"] for g in opt.param_groups] == [
        g["initial_lr"] for g in t_opt.param_groups
    ]


def test_cosine_follows_the_closed_form():
    base, eta_min, t_max = 0.1, 0.001, 10
    lrs, _ = _lr_sequence(
        lambda: optim.SGD(_mg_params(_weights(np.float32)), lr=base),
        lambda o: CosineAnnealingLR(o, t_max, eta_min),
        3 * t_max,
        lambda o: None,
    )
    expected = [
        eta_min + (base - eta_min) * (1 + math.cos(math.pi * t / t_max)) / 2
        for t in range(3 * t_max + 1)
    ]
    np.testing.assert_allclose([lr[0] for lr in lrs], expected, rtol=1e-12, atol=1e-15)


def test_step_lr_changes_the_sgd_update():
    w = mg.tensor([1.0], dtype=mg.float64, requires_grad=True)
    opt = optim.SGD([w], lr=1.0)
    sched = StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(3):
        w.grad = mg.tensor([1.0], dtype=mg.float64)
        opt.step()
        sched.step()
    np.testing.assert_allclose(w.detach().numpy(), [1.0 - 1.0 - 0.5 - 0.25])


@pytest.mark.parametrize("name", ["StepLR", "CosineAnnealingLR"])
def test_scheduler_state_dict_resumes(name):
    kwargs = {"step_size": 3} if name == "StepLR" else {"T_max": 4}
    make = getattr(optim.lr_scheduler, name)
    opt = optim.SGD(_mg_params(_weights(np.float32)), lr=0.1)
    sched = make(opt, **kwargs)
    for _ in range(5):
        opt.step()
        sched.step()
    opt_sd, sched_sd = copy.deepcopy(opt.state_dict()), copy.deepcopy(sched.state_dict())
    assert "optimizer" not in sched_sd and sched_sd["last_epoch"] == 5

    opt2 = optim.SGD(_mg_params(_weights(np.float32)), lr=0.1)
    opt2.load_state_dict(opt_sd)
    sched2 = make(opt2, **kwargs)
    sched2.load_state_dict(sched_sd)
    for _ in range(8):
        sched.step()
        sched2.step()
        assert sched.get_last_lr() == sched2.get_last_lr()


def test_scheduler_bad_arguments():
    opt = optim.SGD(_mg_params(_weights(np.float32)), lr=0.1)
    with pytest.raises(TypeError, match="is not an Optimizer"):
        StepLR(object(), step_size=2)
    with pytest.raises(ValueError, match="step_size"):
        StepLR(opt, step_size=0)
    with pytest.raises(ValueError, match="T_max"):
        CosineAnnealingLR(opt, T_max=0)
    with pytest.raises(KeyError, match="initial_lr"):
        CosineAnnealingLR(opt, T_max=3, last_epoch=4)
