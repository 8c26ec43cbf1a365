"""The C GEMM (csrc/gemm.c) through CBackend.gemm, against a float64 product.

Every result is compared with ``alpha * op(a) @ op(b) + beta * out + bias``
computed in float64 from the same inputs, under the error bound of a k-term
dot product: per element,

    |got - ref| <= TOL_FACTOR * (k + 2) * eps * (|alpha| (|op(a)| @ |op(b)|) + |beta out| + |bias|)

with eps the unit roundoff of the dtype (FMA or not, blocked or not, a sum
of k products rounds at most k times). TOL_FACTOR = 2 leaves room for the
epilogue's roundings. The rounding of the inputs to float32 is not in it:
the reference multiplies the float32 values themselves.

The backend sends small products to NumPy; the ``c_always`` fixture lowers
that threshold to zero so that every size here runs the C kernel.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from minigrad._C import ffi, lib

import minigrad.backend.c as cmod
from minigrad.backend.c import CBackend

C = CBackend()
DTYPES = [np.float32, np.float64]
TOL_FACTOR = 2.0
SIMD_LEVELS = ("generic", "avx2", "avx512")


@pytest.fixture
def c_always(monkeypatch):
    monkeypatch.setattr(cmod, "_GEMM_C_MIN_MACS", 0)


@pytest.fixture
def threads():
    """Restore the thread count a test changes."""
    before = lib.mg_get_num_threads()
    yield lib.mg_set_num_threads
    lib.mg_set_num_threads(before)


def blocking(dtype) -> dict:
    out = ffi.new("size_t[5]")
    (lib.mg_gemm_blocking_f32 if dtype == np.float32 else lib.mg_gemm_blocking_f64)(out)
    return dict(zip(("mr", "nr", "mc", "kc", "nc"), list(out), strict=True))


def operands(rng, m, n, k, dtype, trans_a=False, trans_b=False):
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    return a, b


def reference(a, b, trans_a, trans_b, alpha, beta, out0, bias):
    """(float64 result, error bound per element)."""
    op_a = (a.T if trans_a else a).astype(np.float64)
    op_b = (b.T if trans_b else b).astype(np.float64)
    ref = alpha * (op_a @ op_b)
    scale = abs(alpha) * (np.abs(op_a) @ np.abs(op_b))
    if out0 is not None and beta != 0:
        ref = ref + beta * out0.astype(np.float64)
        scale = scale + abs(beta) * np.abs(out0.astype(np.float64))
    if bias is not None:
        ref = ref + bias.astype(np.float64)
        scale = scale + np.abs(bias.astype(np.float64))
    k = op_a.shape[1]
    eps = np.finfo(a.dtype).eps / 2
    return ref, TOL_FACTOR * (k + 2) * eps * scale


def check(got, a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, out0=None, bias=None):
    ref, tol = reference(a, b, trans_a, trans_b, alpha, beta, out0, bias)
    assert got.shape == ref.shape
    assert got.dtype == a.dtype
    err = np.abs(got.astype(np.float64) - ref)
    bad = err > tol
    assert not bad.any(), (
        f"{bad.sum()} of {bad.size} elements out of tolerance, worst excess "
        f"{(err - tol).max():.3g} at {np.unravel_index((err - tol).argmax(), err.shape)}"
    )


def run(
    rng,
    m,
    n,
    k,
    dtype,
    trans_a=False,
    trans_b=False,
    alpha=1.0,
    beta=0.0,
    with_out=False,
    with_bias=False,
    nan_out=False,
):
    a, b = operands(rng, m, n, k, dtype, trans_a, trans_b)
    bias = rng.standard_normal(n).astype(dtype) if with_bias else None
    out0 = None
    out = None
    if with_out:
        out0 = (
            np.full((m, n), np.nan, dtype) if nan_out else rng.standard_normal((m, n)).astype(dtype)
        )
        out = out0.copy()
    got = C.gemm(a, b, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta, out=out, bias=bias)
    if out is not None:
        assert got is out
    check(got, a, b, trans_a, trans_b, alpha, beta if with_out else 0.0, out0, bias)
    return got


# ---- every combination of the parameters --------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", list(itertools.product([False, True], repeat=2)))
@pytest.mark.parametrize("alpha", [1.0, -0.75])
@pytest.mark.parametrize("beta", [0.0, 1.0, 2.5])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("with_out", [False, True])
def test_combinations(c_always, rng, dtype, trans_a, trans_b, alpha, beta, with_bias, with_out):
    # 37 x 43 x 71: ragged against every register tile, several tiles each way
    run(rng, 37, 43, 71, dtype, trans_a, trans_b, alpha, beta, with_out, with_bias)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", list(itertools.product([False, True], repeat=2)))
@pytest.mark.parametrize("with_bias", [False, True])
def test_beta_zero_does_not_read_out(c_always, rng, dtype, trans_a, trans_b, with_bias):
    got = run(rng, 19, 35, 23, dtype, trans_a, trans_b, 1.5, 0.0, True, with_bias, nan_out=True)
    assert np.isfinite(got).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_and_inf_propagate(c_always, dtype):
    a = np.ones((9, 5), dtype)
    b = np.ones((5, 33), dtype)
    a[2, 3] = np.nan
    b[1, 7] = np.inf
    got = C.gemm(a, b)
    assert np.isnan(got[2]).all()
    assert np.isposinf(np.delete(got[:, 7], 2)).all()
    assert np.isfinite(np.delete(np.delete(got, 2, 0), 7, 1)).all()


# ---- sizes ---------------------------------------------------------------------


def _edge_sizes(dtype):
    """(m, n, k) at 0, 1, primes, every tile size +- 1, tall-skinny and short-wide."""
    bl = blocking(dtype)
    sizes = [(0, 5, 3), (4, 0, 3), (0, 0, 0), (1, 1, 1), (1, 7, 1), (5, 1, 9), (3, 4, 0)]
    sizes += [(2, 3, 5), (7, 11, 13), (17, 19, 23), (31, 37, 41), (97, 89, 101)]
    for t in (bl["mr"], bl["mc"]):
        sizes += [(t + d, 7, 5) for d in (-1, 0, 1)]
    for t in (bl["nr"], bl["nc"]):
        sizes += [(3, t + d, 5) for d in (-1, 0, 1)]
    sizes += [(5, 7, bl["kc"] + d) for d in (-1, 0, 1)]
    # every level blocked at once, with ragged edges on each
    sizes.append((bl["mc"] + bl["mr"] + 1, 2 * bl["nr"] + 3, 2 * bl["kc"] + 1))
    sizes += [(2000, 3, 17), (1500, 1, 64), (3, 2000, 17), (1, 1500, 64), (4, 5, 3000)]
    return sorted(set(sizes))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", list(itertools.product([False, True], repeat=2)))
def test_sizes(c_always, rng, dtype, trans_a, trans_b):
    for m, n, k in _edge_sizes(dtype):
        run(rng, m, n, k, dtype, trans_a, trans_b, 0.5, 2.0, with_out=True, with_bias=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", list(itertools.product([False, True], repeat=2)))
def test_every_narrow_width(c_always, rng, dtype, trans_a, trans_b):
    # Products narrower than a vector have a micro-kernel per width; 35 rows
    # leave a ragged tile and k = 600 takes two blocks of k (beta, then 1).
    for n in range(1, 18):
        run(rng, 35, n, 600, dtype, trans_a, trans_b, -0.75, 2.5, with_out=True, with_bias=True)
        run(rng, 35, n, 600, dtype, trans_a, trans_b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_k_zero_gives_beta_out_plus_bias(c_always, rng, dtype):
    out = rng.standard_normal((4, 6)).astype(dtype)
    bias = rng.standard_normal(6).astype(dtype)
    expected = 3 * out + bias
    got = C.gemm(np.empty((4, 0), dtype), np.empty((0, 6), dtype), beta=3.0, out=out, bias=bias)
    np.testing.assert_allclose(got, expected, rtol=4 * np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", DTYPES)
def test_default_threshold_still_correct(rng, dtype):
    """With the real routing, small products (NumPy) and large ones (C)."""
    for m, n, k in [(16, 16, 16), (3, 5, 7), (128, 512, 10), (130, 70, 300)]:
        run(rng, m, n, k, dtype, False, True, 1.0, 0.0, with_bias=True)
        run(rng, m, n, k, dtype, True, False, 2.0, 0.5, with_out=True)


# ---- layouts ---------------------------------------------------------------------


def _views(rng, rows, cols, dtype):
    """The same logical (rows, cols) matrix in several memory layouts."""
    base = rng.standard_normal((rows, cols)).astype(dtype)
    wide = np.zeros((rows, cols + 5), dtype)
    wide[:, 2 : 2 + cols] = base
    tall = np.zeros((rows + 3, cols), dtype).T.copy().T  # Fortran, with spare rows
    tall[1 : 1 + rows] = base
    spread = np.zeros((2 * rows, 3 * cols), dtype)
    spread[::2, ::3] = base
    unaligned = np.frombuffer(b"\0" + base.tobytes(), dtype, offset=1).reshape(rows, cols)
    return {
        "c": base,
        "fortran": np.asfortranarray(base),
        "row_slice": wide[:, 2 : 2 + cols],  # rows evenly spaced, lda > cols
        "fortran_slice": tall[1 : 1 + rows],  # columns evenly spaced
        "strided": spread[::2, ::3],  # neither: copied
        "reversed": base[::-1][::-1],  # negative strides, back to forward
        "negative": np.ascontiguousarray(base[::-1])[::-1],  # negative row stride
        "unaligned": unaligned,
    }


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", list(itertools.product([False, True], repeat=2)))
def test_layouts(c_always, rng, dtype, trans_a, trans_b):
    m, n, k = 23, 41, 37
    a_views = _views(rng, *((k, m) if trans_a else (m, k)), dtype)
    b_views = _views(rng, *((n, k) if trans_b else (k, n)), dtype)
    bias = rng.standard_normal(n).astype(dtype)
    for (name_a, a), (name_b, b) in itertools.product(a_views.items(), b_views.items()):
        got = C.gemm(a, b, trans_a=trans_a, trans_b=trans_b, alpha=0.5, bias=bias)
        check(got, np.array(a), np.array(b), trans_a, trans_b, 0.5, 0.0, None, bias)
        assert got.flags.c_contiguous, (name_a, name_b)


def test_inputs_untouched(c_always, rng):
    a, b = operands(rng, 30, 40, 50, np.float32)
    a_copy, b_copy = a.copy(), b.copy()
    C.gemm(a, b, bias=np.ones(40, np.float32))
    np.testing.assert_array_equal(a, a_copy)
    np.testing.assert_array_equal(b, b_copy)


@pytest.mark.parametrize("dtype", DTYPES)
def test_out_layouts_fall_back(c_always, rng, dtype):
    a, b = operands(rng, 20, 30, 40, dtype)
    out0 = rng.standard_normal((20, 30)).astype(dtype)
    # a strided out, and an out that is also an input, still get the right answer
    wide = np.zeros((20, 40), dtype)
    wide[:, :30] = out0
    got = C.gemm(a, b, beta=1.0, out=wide[:, :30])
    check(got, a, b, False, False, 1.0, 1.0, out0, None)
    sq = rng.standard_normal((30, 30)).astype(dtype)
    sq0 = sq.copy()
    got = C.gemm(sq, sq, beta=0.5, out=sq)
    check(got, sq0, sq0, False, False, 1.0, 0.5, sq0, None)


def test_bias_dtype_and_layout(c_always, rng):
    a, b = operands(rng, 20, 30, 40, np.float32)
    bias64 = rng.standard_normal(60)[::2]  # float64, strided
    got = C.gemm(a, b, bias=bias64)
    check(got, a, b, bias=bias64.astype(np.float32))
    bias32 = bias64.astype(np.float32)
    unaligned = np.frombuffer(b"\0" + bias32.tobytes(), np.float32, offset=1)
    check(C.gemm(a, b, bias=unaligned), a, b, bias=bias32)


# ---- code paths --------------------------------------------------------------------


def _cpu_simd_level() -> int:
    f = lib.mg_cpu_features()
    avx512 = lib.MG_CPU_AVX512F | lib.MG_CPU_AVX512DQ | lib.MG_CPU_AVX512VL | lib.MG_CPU_AVX512BW
    if f & avx512 == avx512:
        return 2
    avx2 = lib.MG_CPU_AVX2 | lib.MG_CPU_FMA
    return 1 if f & avx2 == avx2 else 0


# The child runs the edge sizes and the combinations on whatever path
# MINIGRAD_FORCE_ISA picked, checks them against the float64 reference itself
# and prints the level it ran.
_CHILD = textwrap.dedent(
    """
    import sys
    import itertools
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    import minigrad.backend.c as cmod
    from minigrad._C import lib
    from test_kernels_gemm import DTYPES, _edge_sizes, run

    cmod._GEMM_C_MIN_MACS = 0
    rng = np.random.default_rng(5)
    for dtype in DTYPES:
        for ta, tb in itertools.product([False, True], repeat=2):
            for m, n, k in _edge_sizes(dtype):
                run(rng, m, n, k, dtype, ta, tb, 0.5, 2.0, with_out=True, with_bias=True)
            for beta, nan in ((0.0, True), (1.0, False)):
                run(rng, 37, 43, 71, dtype, ta, tb, -0.75, beta, True, True, nan_out=nan)
            run(rng, 201, 150, 97, dtype, ta, tb)
    print(lib.mg_simd_level())
    """
)


@pytest.mark.parametrize("isa", SIMD_LEVELS)
def test_forced_isa_paths(isa):
    level = SIMD_LEVELS.index(isa)
    if level > _cpu_simd_level():
        pytest.skip(f"this CPU has no {isa}")
    env = dict(os.environ, MINIGRAD_FORCE_ISA=isa)
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, os.path.dirname(os.path.abspath(__file__))],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.split()[-1]) == level


# ---- threads ------------------------------------------------------------------------


@pytest.mark.skipif(not lib.mg_has_openmp(), reason="built without OpenMP")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True)])
def test_threads_deterministic(rng, threads, dtype, trans_a, trans_b):
    # large enough to be split among threads, ragged against the tiles
    m, n, k = 203, 301, 157
    a, b = operands(rng, m, n, k, dtype, trans_a, trans_b)
    bias = rng.standard_normal(n).astype(dtype)
    results = {}
    for t in (1, 2, 2, 1):
        threads(t)
        got = C.gemm(a, b, trans_a=trans_a, trans_b=trans_b, bias=bias)
        if t in results:
            np.testing.assert_array_equal(got, results[t])
        results[t] = got
    check(results[2], a, b, trans_a, trans_b, bias=bias)
    # each element is summed in the same order whatever the thread count
    np.testing.assert_array_equal(results[1], results[2])


# ---- errors and fallbacks ---------------------------------------------------------------


def test_inner_dimension_mismatch():
    a = np.ones((3, 4), np.float32)
    b = np.ones((5, 6), np.float32)
    with pytest.raises(ValueError, match=r"gemm.*\(3, 4\).*\(5, 6\)"):
        C.gemm(a, b)
    with pytest.raises(ValueError, match="gemm"):
        C.gemm(a, np.ones((6, 5), np.float32), trans_b=False)
    with pytest.raises(ValueError, match="gemm"):
        C.gemm(a, a)
    C.gemm(a, a, trans_b=True)  # (3, 4) @ (4, 3)


def test_bad_bias_and_out():
    a = np.ones((3, 4))
    b = np.ones((4, 5))
    with pytest.raises(ValueError, match=r"gemm: bias.*\(5,\)"):
        C.gemm(a, b, bias=np.ones(4))
    with pytest.raises(ValueError, match=r"gemm: bias"):
        C.gemm(a, b, bias=np.ones((1, 5)))
    with pytest.raises(ValueError, match=r"gemm: out"):
        C.gemm(a, b, out=np.empty((3, 4)))
    with pytest.raises(ValueError, match=r"gemm: out"):
        C.gemm(a, b, out=np.empty((3, 5), np.float32))
    ro = np.empty((3, 5))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        C.gemm(a, b, out=ro)


def test_other_dtypes_fall_back():
    a = np.ones((3, 4), np.float16)
    b = np.ones((4, 5), np.float16)
    assert C.gemm(a, b).dtype == np.float16
    mixed = C.gemm(np.ones((3, 4), np.float32), np.ones((4, 5)))
    np.testing.assert_array_equal(mixed, np.full((3, 5), 4.0))
    np.testing.assert_array_equal(
        C.gemm(np.ones((2, 3, 4)), np.ones((4, 5))), np.full((2, 3, 5), 4.0)
    )


def test_kernel_direct_alpha_zero_reads_neither_operand():
    a = np.full((4, 3), np.nan, np.float32)
    b = np.full((3, 5), np.nan, np.float32)
    c = np.ones((4, 5), np.float32)
    f = ffi.from_buffer
    assert (
        lib.mg_gemm_f32(
            0,
            0,
            4,
            5,
            3,
            0.0,
            f("float[]", a),
            3,
            f("float[]", b),
            5,
            2.0,
            f("float[]", c),
            5,
            ffi.NULL,
        )
        == 0
    )
    np.testing.assert_array_equal(c, np.full((4, 5), 2.0, np.float32))


def test_blocking_is_sane():
    for dtype in DTYPES:
        bl = blocking(dtype)
        assert bl["mc"] % bl["mr"] == 0 and bl["nc"] % bl["nr"] == 0
        assert 64 <= bl["kc"] <= 1024
