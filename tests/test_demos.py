import math

import pytest

from minigrad.cli import main
from minigrad.diagnostics.demos import batchnorm, clipping, exploding, train, vanishing


def test_exploding_chain_matches_closed_form(capsys):
    result = exploding.run(steps=4, seed=0)
    relu = [g for g, _ in result["chain"]["relu"]]
    assert relu[:3] == pytest.approx([8.0, 64.0, 512.0], rel=1e-12)
    for pairs in result["chain"].values():
        for got, expected in pairs:
            assert got == pytest.approx(expected, rel=1e-9)
    assert result["blowup"]["nan_step"] is not None
    assert result["blowup"]["log"][0]["global_norm"] > 1e3
    out = capsys.readouterr().out
    assert "512" in out and "NaN/Inf first at step" in out


def test_vanishing_sigmoid_far_below_relu_he(capsys):
    result = vanishing.run(steps=2, seed=0)
    sig = result["sigmoid/default"]["grad_norms"]
    relu = result["ReLU/He"]["grad_norms"]
    assert sig[0] / sig[-1] < 1e-6
    assert 0.1 < relu[0] / relu[-1] < 10
    assert sig[0] < 1e-6 * relu[0]
    assert "first/last" in capsys.readouterr().out


def test_clipping_keeps_training_finite(capsys):
    result = clipping.run(steps=6, seed=0)
    assert result["none"]["first_nonfinite"] is not None
    for name in ("value 0.1", "norm 1.0", "AGC 0.1"):
        assert result[name]["first_nonfinite"] is None
        assert math.isfinite(result[name]["final"])
    assert "final loss" in capsys.readouterr().out


def test_batchnorm_gradient_ratio(capsys):
    result = batchnorm.run(steps=3, seed=0)
    assert result["sigmoid"]["first_last_ratio"] < 1e-4
    assert result["sigmoid+BatchNorm"]["first_last_ratio"] > 1e-1
    assert "steps to target" in capsys.readouterr().out


def test_train_demo_and_cli_plot(tmp_path, capsys):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    path = tmp_path / "t.png"
    assert main(["demo", "train", "--steps", "1", "--plot", str(path)]) == 0
    out = capsys.readouterr().out
    assert "AdamW" in out and "GradientMonitor" in out
    assert path.read_bytes()[:4] == b"\x89PNG"
    result = train.run(steps=1, seed=0)
    assert all(0.0 <= result[n]["accuracy"][0] <= 1.0 for n in train.OPTIMIZERS)


def test_cli_rejects_unknown_demo(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "nope"])
