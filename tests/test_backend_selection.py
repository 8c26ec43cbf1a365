"""Choosing the backend and threads, the C-missing fallback, and `minigrad info`."""

import json
import os
import subprocess
import sys

import pytest

import minigrad as mg

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code, **env):
    environment = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=environment,
        cwd=REPO,
        check=False,
    )


def test_set_and_get_backend(backend):
    assert mg.get_backend() == backend
    assert mg.backend_info()["backend"] == backend


def test_set_backend_rejects_unknown_names():
    with pytest.raises(ValueError, match="'c' or 'numpy'"):
        mg.set_backend("cuda")


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_set_num_threads_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="integer >= 1"):
        mg.set_num_threads(bad)


def test_set_num_threads_round_trip():
    before = mg.get_num_threads()
    try:
        mg.set_num_threads(1)
        assert mg.get_num_threads() == 1 and mg.backend_info()["num_threads"] == 1
    finally:
        mg.set_num_threads(before)


def test_environment_chooses_backend_and_threads():
    out = run_python(
        "import minigrad as mg; print(mg.get_backend(), mg.get_num_threads())",
        MINIGRAD_BACKEND="numpy",
        MINIGRAD_NUM_THREADS="1",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["numpy", "1"]


def test_bad_environment_warns_and_continues():
    out = run_python(
        "import minigrad as mg; print(mg.get_num_threads())", MINIGRAD_NUM_THREADS="lots"
    )
    assert out.returncode == 0 and out.stdout.strip() == "1"
    assert "MINIGRAD_NUM_THREADS" in out.stderr


def test_missing_extension_warns_once_and_runs_on_numpy():
    code = (
        "import sys, warnings\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'minigrad._C': raise ImportError('no compiled kernels')\n"
        "sys.meta_path.insert(0, Block())\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    import minigrad as mg\n"
        "    import minigrad.backend\n"
        "print(len([w for w in caught if 'C extension' in str(w.message)]), mg.get_backend())\n"
        "print((mg.tensor([-1.0, 2.0]).relu()).tolist())\n"
        "try:\n"
        "    mg.set_backend('c')\n"
        "except RuntimeError as e:\n"
        "    print('refused:', e)\n"
    )
    out = run_python(code)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "1 numpy"
    assert lines[1] == "[0.0, 2.0]"
    assert lines[2].startswith("refused:") and "not available" in lines[2]


def test_info_command():
    out = subprocess.run(
        [sys.executable, "-m", "minigrad", "info", "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert {"backend", "c_available", "num_threads", "numpy"} <= set(info)
    if info["c_available"]:
        assert info["simd_level"] in ("generic", "avx2", "avx512")
        assert "-O3" in info["compiler_flags"]


def test_bench_command_quick_run(tmp_path):
    # the whole pipeline: pytest-benchmark in a child, the table, the JSON and the chart
    out = subprocess.run(
        [sys.executable, "-m", "minigrad", "bench", "--quick", "--json", str(tmp_path / "b.json"),
         "--plot", str(tmp_path / "b.png")],
        capture_output=True, text=True, cwd=REPO, check=False,
        env={**os.environ, "MINIGRAD_BENCH_SELECT": "relu_forward"},
    )  # fmt: skip
    from minigrad.bench_command import BENCH_DIR

    if not BENCH_DIR.exists():  # an installed wheel: the suite is in the repository only
        assert out.returncode == 2 and "source checkout" in out.stderr
        return
    assert out.returncode == 0, out.stderr
    assert "| relu_forward | 128x512 |" in out.stdout
    assert (tmp_path / "b.png").stat().st_size > 1000


# bench/conftest.py registers the benchmarks' `large` mark, which this suite does not load
@pytest.mark.filterwarnings("ignore::pytest.PytestUnknownMarkWarning")
def test_op_path_splits_a_step_into_python_and_kernels():
    from minigrad.bench_command import BENCH_DIR

    if not (BENCH_DIR / "op_path.py").exists():
        pytest.skip("bench/ is part of the source checkout only")
    if "c" not in mg.backend._BACKENDS:
        pytest.skip("the C backend is not built")
    import importlib.util

    from minigrad.backend import c as cbackend

    spec = importlib.util.spec_from_file_location("minigrad_op_path", BENCH_DIR / "op_path.py")
    op_path = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(op_path)
    kernels = dict(cbackend._KERNELS)
    fused = {dtype: dict(table) for dtype, table in cbackend._FUSED.items()}
    previous = mg.get_backend()
    mg.set_backend("c")
    try:
        timers = op_path._KernelTimers()
        x, g = op_path.acts._inputs((256, 256))
        t = op_path.split(op_path.acts._step("c", "sigmoid", x, g), 2, timers, 0.0)
    finally:
        mg.set_backend(previous)
    assert len(t["step"]) == len(t["kernels"]) == 2
    # the kernels ran inside the timed steps, a forward and a backward kernel per step
    # (how their time compares with the plain step's is a measurement, not asserted here:
    # on a loaded machine one round of two can swing either way)
    assert all(k > 0 for k in t["kernels"]) and all(s > 0 for s in t["step"])
    calls = op_path._clock[1]
    assert calls > 0 and calls % 2 == 0
    # and the backend calls its own kernels again afterwards
    assert kernels == cbackend._KERNELS
    assert {dtype: dict(table) for dtype, table in cbackend._FUSED.items()} == fused


def test_op_instructions_runs_a_step_with_the_kernels_stubbed():
    from minigrad.bench_command import BENCH_DIR

    script = BENCH_DIR / "op_instructions.py"
    if not script.exists():
        pytest.skip("bench/ is part of the source checkout only")
    if "c" not in mg.backend._BACKENDS:
        pytest.skip("the C backend is not built")
    # the inner mode, as valgrind runs it: a fresh process, since it stubs the kernels
    out = subprocess.run(
        [sys.executable, str(script), "--inner", "leaky_relu", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
