"""Helpers shared by the fused-kernel tests (norms, clipping, optimizers, stats).

``close`` is the one comparison: ``|c - ref| <= rtol * (|ref| + scale)``
where ``scale`` is the size of the values the result is made from (the
largest |ref| by default), with NaN required in the same places on both
sides. ``run_isa_child`` runs a test module's ``isa_outputs()`` in a child
process with MINIGRAD_FORCE_ISA set and returns its arrays.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

SIMD_LEVELS = ["generic", "avx2", "avx512"]


def close(c, ref, rtol: float, scale: float | None = None, what: str = "") -> None:
    c, ref = np.asarray(c), np.asarray(ref)
    assert c.shape == ref.shape, f"{what}: shape {c.shape} vs {ref.shape}"
    assert c.dtype == ref.dtype, f"{what}: dtype {c.dtype} vs {ref.dtype}"
    nan_c, nan_r = np.isnan(c), np.isnan(ref)
    assert np.array_equal(nan_c, nan_r), f"{what}: NaN in different places"
    ok = ~nan_r
    if not ok.any():
        return
    cv, rv = c[ok].astype(np.float64), ref[ok].astype(np.float64)
    inf = np.isinf(rv)
    assert np.array_equal(cv[inf], rv[inf]), f"{what}: infinities differ"
    cv, rv = cv[~inf], rv[~inf]
    if rv.size == 0:
        return
    if scale is None:
        scale = float(np.max(np.abs(rv)))
    err = np.abs(cv - rv)
    bound = rtol * (np.abs(rv) + scale)
    with np.errstate(invalid="ignore"):
        worst = int(np.argmax(err - bound))
    assert np.all(err <= bound), (
        f"{what}: |c - ref| = {err[worst]:.3g} > {bound[worst]:.3g} "
        f"(c = {cv[worst]!r}, ref = {rv[worst]!r})"
    )


_CHILD = """
import sys
import numpy as np
sys.path.insert(0, sys.argv[3])
import importlib
from minigrad._C import lib
module = importlib.import_module(sys.argv[1])
np.savez(sys.argv[2], **module.isa_outputs())
print(lib.mg_simd_level())
"""


def run_isa_child(module: str, out_path, force: str | None) -> tuple[int, dict]:
    """(simd level the child ran, the dict ``module.isa_outputs()`` returned there)."""
    env = dict(os.environ)
    env.pop("MINIGRAD_FORCE_ISA", None)
    if force is not None:
        env["MINIGRAD_FORCE_ISA"] = force
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, module, str(out_path), tests_dir],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    with np.load(out_path) as results:
        return int(proc.stdout.split()[-1]), dict(results)


def cpu_simd_level() -> int:
    from minigrad._C import lib

    features = lib.mg_cpu_features()
    avx512 = lib.MG_CPU_AVX512F | lib.MG_CPU_AVX512DQ | lib.MG_CPU_AVX512VL | lib.MG_CPU_AVX512BW
    if features & avx512 == avx512:
        return 2
    avx2 = lib.MG_CPU_AVX2 | lib.MG_CPU_FMA
    return 1 if features & avx2 == avx2 else 0


def assert_thread_counts_agree(backend, isa_outputs) -> None:
    """``isa_outputs()`` gives the very same bits on 1 and 2 threads."""
    from minigrad._C import lib

    previous = lib.mg_get_num_threads()
    try:
        backend.set_num_threads(1)
        one = isa_outputs()
        backend.set_num_threads(2)
        two = isa_outputs()
    finally:
        backend.set_num_threads(previous)
    for key in one:
        np.testing.assert_array_equal(one[key], two[key], err_msg=key)


def assert_forced_isa_agrees(module: str, isa_outputs, isa: str, levels, tmp_path) -> None:
    """A child forced onto ``isa`` runs that level and computes the very same bits."""
    import pytest

    level = levels.index(isa)
    if level > cpu_simd_level():
        pytest.skip(f"this CPU has no {isa}")
    got_level, results = run_isa_child(module, tmp_path / "out.npz", isa)
    assert got_level == level
    for key, value in isa_outputs().items():
        np.testing.assert_array_equal(results[key], value, err_msg=f"{isa}: {key}")
