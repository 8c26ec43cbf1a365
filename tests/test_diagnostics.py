import math

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn, optim
from minigrad.diagnostics import GradientMonitor


def _model():
    mg.manual_seed(0)
    return nn.Sequential(
        nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.Sigmoid(), nn.Linear(5, 3), nn.Tanh()
    )


def _batch():
    rng = np.random.default_rng(0)
    return mg.tensor(rng.standard_normal((8, 4)).astype(np.float32)), mg.tensor(np.arange(8) % 3)


def _train(model, monitor, steps=2, clip=None, lr=0.1):
    x, y = _batch()
    opt = optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = nn.CrossEntropyLoss()(model(x), y)
        opt.zero_grad()
        loss.backward()
        monitor.step()
        if clip is not None:
            monitor.record_clip(nn.utils.clip_grad_norm_(model.parameters(), clip), clip)
        opt.step()


def test_gradient_numbers_equal_direct_computation_before_zero_grad():
    model = _model()
    monitor = GradientMonitor(model)
    x, y = _batch()
    loss = nn.CrossEntropyLoss()(model(x), y)
    loss.backward()
    monitor.step()
    record = monitor.history[-1]
    grads = {n: p.grad.numpy().astype(np.float64) for n, p in model.named_parameters()}
    weights = {n: p.detach().numpy().astype(np.float64) for n, p in model.named_parameters()}
    model.zero_grad()  # recorded already: zeroing afterwards must not change the record
    for name, g in grads.items():
        entry = record["params"][name]
        assert entry["grad_norm"] == pytest.approx(np.linalg.norm(g), rel=1e-6)
        assert entry["max_abs"] == pytest.approx(np.abs(g).max(), rel=1e-6)
        assert entry["grad_to_weight"] == pytest.approx(
            np.linalg.norm(g) / np.linalg.norm(weights[name]), rel=1e-6
        )
        counts, edges = np.histogram(g, bins=10, range=(-np.abs(g).max(), np.abs(g).max()))
        assert entry["hist"]["counts"] == counts.tolist()
        assert np.allclose(entry["hist"]["edges"], edges)
        assert entry["nan"] == entry["inf"] == 0
    layer0 = np.sqrt(np.sum(grads["0.weight"] ** 2) + np.sum(grads["0.bias"] ** 2))
    assert record["layers"]["0"]["grad_norm"] == pytest.approx(layer0, rel=1e-6)
    total = math.sqrt(sum(float(np.sum(g**2)) for g in grads.values()))
    assert record["global_norm"] == pytest.approx(total, rel=1e-6)
    assert record["global_norm"] > 0


def test_update_ratio_clip_and_activation_stats():
    model = _model()
    monitor = GradientMonitor(model)
    x, y = _batch()
    opt = optim.SGD(model.parameters(), lr=0.1)
    outputs = {}
    for name, m in model.named_modules():
        if name:
            m.register_forward_hook(
                lambda mod, inp, out, name=name: outputs.__setitem__(
                    name, out.detach().numpy().astype(np.float64)
                )
            )
    loss = nn.CrossEntropyLoss()(model(x), y)
    loss.backward()
    monitor.step()
    before = {n: p.detach().numpy().copy() for n, p in model.named_parameters()}
    total = nn.utils.clip_grad_norm_(model.parameters(), 0.01)
    monitor.record_clip(total, 0.01)
    opt.step()
    monitor.step()  # the next step measures the update of the previous one
    record = monitor.history[0]
    for name, p in model.named_parameters():
        delta = p.detach().numpy().astype(np.float64) - before[name]
        expected = math.log10(delta.std() / before[name].astype(np.float64).std())
        assert record["params"][name]["update_log10"] == pytest.approx(expected, abs=1e-4)
    assert record["clip"]["total_norm"] == pytest.approx(record["global_norm"], rel=1e-5)
    assert record["clip"]["coef"] == pytest.approx(0.01 / (total.item() + 1e-6), rel=1e-6)
    acts = record["activations"]
    for name, y_out in outputs.items():
        assert acts[name]["mean"] == pytest.approx(y_out.mean(), rel=1e-5, abs=1e-7)
        assert acts[name]["std"] == pytest.approx(y_out.std(), rel=1e-4)
    s = outputs["3"]
    assert acts["3"]["saturated"] == pytest.approx(np.mean((s < 0.01) | (s > 0.99)))
    t = outputs["5"]
    assert acts["5"]["saturated"] == pytest.approx(np.mean(np.abs(t) > 0.97))


def test_dead_relu_and_saturation_on_constructed_cases():
    lin = nn.Linear(3, 4)
    model = nn.Sequential(lin, nn.ReLU(), nn.Linear(4, 4), nn.Sigmoid())
    with mg.no_grad():
        lin.weight.copy_(np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0]], np.float32))
        lin.bias.copy_(np.array([0, 0, -1, -2], np.float32))  # units 2 and 3 never fire
        model[2].weight.copy_(np.full((4, 4), 50.0, np.float32))
        model[2].bias.copy_(np.array([0, 0, -1000, 1000], np.float32))
    monitor = GradientMonitor(model)
    x = mg.tensor(np.abs(np.random.default_rng(1).standard_normal((5, 3))).astype(np.float32) + 0.1)
    model(x).sum().backward()
    monitor.step()
    record = monitor.history[-1]
    assert record["activations"]["1"]["dead"] == pytest.approx(0.5)
    # Units 2 and 3 are pinned at 0 and 1; units 0 and 1 see 50 * (x0 + x1) > 10.
    assert record["activations"]["3"]["saturated"] == pytest.approx(1.0)
    kinds = {f["kind"] for f in monitor.flags()}
    assert {"dead", "saturated"} <= kinds


def test_nan_and_inf_counts():
    model = nn.Sequential(nn.Linear(2, 2))
    monitor = GradientMonitor(model)
    x = mg.tensor([[1.0, 2.0]])
    model(x).sum().backward()
    model[0].weight.grad.numpy()[0, 0] = np.nan
    model[0].weight.grad.numpy()[1, 1] = np.inf
    monitor.step()
    record = monitor.history[-1]
    entry = record["params"]["0.weight"]
    assert (entry["nan"], entry["inf"]) == (1, 1)
    assert sum(entry["hist"]["counts"]) == 2  # the two finite values
    assert any(f["kind"] == "non-finite" for f in monitor.flags())


def test_every_records_one_step_in_n():
    model = _model()
    monitor = GradientMonitor(model, every=3)
    _train(model, monitor, steps=7)
    assert [r["step"] for r in monitor.history] == [0, 3, 6]
    assert all(r["activations"] for r in monitor.history)
    assert monitor.history[0]["params"]["0.weight"]["update_log10"] is not None


def test_history_is_plain_data():
    import json

    model = _model()
    monitor = GradientMonitor(model)
    _train(model, monitor, clip=1.0)
    json.dumps(monitor.history)


def test_history_read_during_training_equals_history_read_at_the_end():
    """history is made from the recorded numbers when read; a record read early is
    completed in place (update ratio at the next step, clipping) and ends up equal
    to one made after training."""
    runs = []
    for read_each_step in (True, False):
        model = _model()
        monitor = GradientMonitor(model, every=2)
        x, y = _batch()
        opt = optim.SGD(model.parameters(), lr=0.1)
        early = []
        for _ in range(5):
            loss = nn.CrossEntropyLoss()(model(x), y)
            opt.zero_grad()
            loss.backward()
            monitor.step()
            monitor.record_clip(nn.utils.clip_grad_norm_(model.parameters(), 0.5), 0.5)
            if read_each_step and monitor.history:
                early.append(monitor.history[-1])
            opt.step()
        monitor.step()  # measures the last recorded step's update
        runs.append(monitor.history)
        if read_each_step:
            assert all(any(r is e for r in monitor.history) for e in early)
    with_reads, without = runs
    assert [r["step"] for r in without] == [0, 2, 4]
    assert with_reads == without
    assert all(r["clip"] is not None for r in without)
    assert all(p["update_log10"] is not None for r in without for p in r["params"].values())


def test_update_ratio_with_adam_equals_numpy_over_several_steps():
    model = _model()
    monitor = GradientMonitor(model)
    x, y = _batch()
    opt = optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)
    befores = []
    for _ in range(4):
        loss = nn.CrossEntropyLoss()(model(x), y)
        opt.zero_grad()
        loss.backward()
        monitor.step()
        befores.append(
            {n: p.detach().numpy().astype(np.float64) for n, p in model.named_parameters()}
        )
        opt.step()
    monitor.step()
    last = {n: p.detach().numpy().astype(np.float64) for n, p in model.named_parameters()}
    afters = [*befores[1:], last]
    for record, before, after in zip(monitor.history[:4], befores, afters, strict=True):
        for name, w in before.items():
            expected = math.log10((after[name] - w).std() / w.std())
            assert record["params"][name]["update_log10"] == pytest.approx(expected, abs=1e-6)
            assert record["params"][name]["weight_std"] == pytest.approx(w.std(), rel=1e-9)
        layer = np.concatenate([before["0.weight"].ravel(), before["0.bias"].ravel()])
        moved = np.concatenate([after["0.weight"].ravel(), after["0.bias"].ravel()]) - layer
        expected = math.log10(moved.std() / layer.std())
        assert record["layers"]["0"]["update_log10"] == pytest.approx(expected, abs=1e-6)


def _deep(activation, std, depth=12, width=16):
    mg.manual_seed(0)
    layers = []
    for i in range(depth):
        lin = nn.Linear(width, width)
        nn.init.normal_(lin.weight, 0.0, std)
        nn.init.zeros_(lin.bias)
        layers += [lin, activation()] if i < depth - 1 else [lin]
    return nn.Sequential(*layers)


def _one_step(model, width=16):
    monitor = GradientMonitor(model)
    x = mg.tensor(np.random.default_rng(0).standard_normal((64, width)).astype(np.float32))
    ((model(x) ** 2).mean()).backward()
    monitor.step()
    return monitor


def test_report_flags_vanishing_and_exploding_and_stays_quiet_when_healthy(capsys):
    vanishing = _one_step(_deep(nn.Sigmoid, 0.1))
    text = vanishing.report()
    assert "vanishing" in text and "kaiming" in text
    assert any(f["kind"] == "vanishing" and f["layer"] == "0" for f in vanishing.flags())

    exploding = _one_step(_deep(nn.ReLU, 1.5))
    text = exploding.report()
    assert "exploding" in text and "clip" in text
    assert any(f["kind"] == "exploding" for f in exploding.flags())

    healthy = _one_step(_deep(nn.ReLU, math.sqrt(2 / 64), depth=6, width=64), width=64)
    assert healthy.flags() == []
    assert "no layer flagged" in healthy.report()
    assert "GradientMonitor" in capsys.readouterr().out


def test_growth_step_over_step_is_flagged():
    model = nn.Sequential(nn.Linear(2, 1))
    monitor = GradientMonitor(model)
    x = mg.tensor([[1.0, 1.0]])
    for k in range(5):
        (model(x).sum() * 4.0**k).backward()
        monitor.step()
        model.zero_grad()
    assert any("grew" in f["reason"] for f in monitor.flags())


def test_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    model = _model()
    monitor = GradientMonitor(model)
    _train(model, monitor, steps=3)
    path = tmp_path / "m.png"
    monitor.plot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.filterwarnings("ignore:invalid value encountered in log")
def test_anomaly_names_op_and_user_line():
    x = mg.tensor([-1.0, 1.0], requires_grad=True)
    forward_error = r"(?s)Log.*forward.*test_diagnostics.py"
    with pytest.raises(FloatingPointError, match=forward_error), mg.detect_anomaly():
        x.log()
    y = mg.tensor([0.0, 1.0], requires_grad=True)
    backward_error = r"(?s)SqrtBackward.*backward.*test_diagnostics"
    with pytest.raises(FloatingPointError, match=backward_error), mg.detect_anomaly():
        y.sqrt().sum().backward()


def _history_on(backend_name, steps=4):
    previous = mg.get_backend()
    mg.set_backend(backend_name)
    try:
        model = _model()
        model[4].bias.requires_grad_(False)  # a parameter without gradient
        monitor = GradientMonitor(model)
        _train(model, monitor, steps=steps, clip=0.5)
        return monitor.history
    finally:
        mg.set_backend(previous)


def test_history_is_the_same_on_the_c_and_numpy_backends():
    """The same training on either backend (float32 arithmetic that differs in
    the last bits, so histogram bins may differ by an element at an edge)."""
    c, ref = _history_on("c"), _history_on("numpy")
    assert [r["step"] for r in c] == [r["step"] for r in ref] == [0, 1, 2, 3]
    for got, want in zip(c, ref, strict=True):
        assert got["params"]["4.bias"]["grad_norm"] is None
        assert got.keys() == want.keys()
        for section in ("params", "layers", "activations"):
            assert got[section].keys() == want[section].keys()
            for name, entry in got[section].items():
                for key, value in entry.items():
                    expected = want[section][name][key]
                    if key == "hist" and value is not None:
                        assert sum(value["counts"]) == sum(expected["counts"])
                        assert value["edges"] == pytest.approx(expected["edges"], rel=1e-4)
                    elif isinstance(value, float):
                        assert value == pytest.approx(expected, rel=1e-4, abs=1e-6), (name, key)
                    else:
                        assert value == expected, (name, key)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("every", [1, 2])
def test_one_call_per_step_records_what_separate_calls_do(monkeypatch, threads, every):
    """On the C backend a recorded step measures weights, gradients and outputs in
    one call (side by side on two threads): the very rows of the calls in turn."""
    from minigrad.backend.base import StatsRows
    from minigrad.backend.c import _CStatsRows

    def run():
        model = _model()
        model[4].bias.requires_grad_(False)  # a parameter without gradient
        monitor = GradientMonitor(model, every=every)
        _train(model, monitor, steps=5, clip=0.5)
        return monitor

    previous, previous_threads = mg.get_backend(), mg.get_num_threads()
    mg.set_backend("c")
    mg.set_num_threads(threads)
    try:
        one = run()
        monkeypatch.setattr(_CStatsRows, "measure", StatsRows.measure)
        separate = run()
    finally:
        mg.set_num_threads(previous_threads)
        mg.set_backend(previous)
    count = one._rows.count
    assert count == separate._rows.count == (5 if every == 1 else 3)
    for name in ("grad", "hist", "weight", "change", "act", "act_dead"):
        got, want = getattr(one._rows, name)[:count], getattr(separate._rows, name)[:count]
        assert got.tobytes() == want.tobytes(), name
    assert repr(one.history) == repr(separate.history)


def test_activations_are_those_of_the_forward_that_built_the_graph():
    model = _model()
    monitor = GradientMonitor(model)
    x, y = _batch()
    seen = []

    def keep_first(module, inputs, output):
        if not seen:
            seen.append(output.detach().numpy().copy())

    model[1].register_forward_hook(keep_first)
    loss = nn.CrossEntropyLoss()(model(x), y)
    with mg.no_grad():
        model(x * 100.0)  # an evaluation: not recorded
    loss.backward()
    monitor.step()
    act = monitor.history[-1]["activations"]["1"]
    assert act["mean"] == pytest.approx(float(seen[0].mean()), rel=1e-6)
    assert act["max_abs"] == pytest.approx(float(seen[0].max()), rel=1e-6)


def test_outputs_are_held_until_step_and_only_on_recorded_steps():
    import gc
    import weakref

    model = _model()
    monitor = GradientMonitor(model, every=2)
    x, y = _batch()
    outputs = []
    model[5].register_forward_hook(lambda m, i, out: outputs.append(weakref.ref(out._data)))

    def forward():
        loss = nn.CrossEntropyLoss()(model(x), y)
        loss.backward()
        del loss
        gc.collect()

    forward()
    assert outputs[-1]() is not None  # kept for step()
    forward()  # no step() in between: the new outputs replace the old ones
    assert outputs[0]() is None and outputs[1]() is not None
    monitor.step()
    gc.collect()
    assert outputs[1]() is None  # read and let go
    forward()  # step 1 is not recorded: nothing kept
    assert outputs[2]() is None
    monitor.step()
    forward()
    assert outputs[3]() is not None
    monitor.remove()
    assert outputs[3]() is None
