"""The C statistics kernels GradientMonitor uses (unit_stats, histogram_stats,
change_stats) against the NumPy reference backend.

Tolerances, as for tensor_stats in test_kernels_clip_optim.py: counts, max |x|
and histogram bins exactly equal (a bin is decided by the same float64
arithmetic on both sides); float64 sums within 1e-12 of the summed
magnitudes (16 lanes against NumPy's pairwise order). Every instruction set
and thread count give the very same bits.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

if os.environ.get("MINIGRAD_ALLOW_NO_C") == "1":
    pytest.importorskip("minigrad._C", reason="C extension not built (MINIGRAD_ALLOW_NO_C=1)")

from kernel_checks import (
    SIMD_LEVELS,
    assert_forced_isa_agrees,
    assert_thread_counts_agree,
    close,
)

from minigrad.backend.base import MAX_BINS, STATS_DTYPE
from minigrad.backend.c import CBackend
from minigrad.backend.numpy import NumpyBackend

C = CBackend()
REF = NumpyBackend()
DTYPES = [np.float32, np.float64]
SIZES = [0, 1, 7, 16, 17, 1000, 4096, 4097, (1 << 15) + 3]
EXACT = ["count", "n_zero", "n_above", "n_nan", "n_inf", "max_abs"]


def _values(dtype, n, rng, kind):
    x = (rng.standard_normal(n) * 2).astype(dtype)
    if n and kind == "nan":
        x[n // 2] = np.nan
    elif n and kind == "inf":
        x[n // 3] = np.inf
        x[-1] = -np.inf
    elif n and kind == "zeros":
        x[::3] = 0.0
        x[1::7] = -0.0
    elif n and kind == "tiny":
        x *= dtype(np.finfo(dtype).smallest_subnormal)
    elif n and kind == "huge":
        with np.errstate(over="ignore"):
            x *= dtype(np.finfo(dtype).max / 4)
    return x


KINDS = ["plain", "nan", "inf", "zeros", "tiny", "huge"]


def _assert_summaries_agree(got, want):
    for field in EXACT:
        np.testing.assert_array_equal(got[field], want[field], err_msg=field)
    # Sums that overflow a double do so at a point that depends on the order.
    ok = np.isfinite(want["sumsq"])
    got, want = got[ok], want[ok]
    scale = np.sqrt(want["sumsq"] * np.maximum(want["count"], 1))
    close(got["sum"], want["sum"], 1e-12, scale=float(scale.max(initial=0.0)), what="sum")
    close(got["sumsq"], want["sumsq"], 1e-12, what="sumsq")


# -- unit_stats ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape", [(0, 5), (5, 0), (1, 1), (64, 128), (33, 17), (300, 257), (3, 4099)]
)
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_unit_stats(dtype, shape):
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    rows, units = shape
    for kind in KINDS:
        x = np.maximum(_values(dtype, rows * units, rng, kind).reshape(shape), 0)
        if rows and units > 4:
            x[:, 1] = 0  # dead
            x[:, 3] = -0.0  # dead too
            x[:, 2] = 0
            x[rows // 2, 2] = np.nan  # a NaN is not zero: alive
        for threshold, center in ((np.inf, 0.0), (0.49, 0.5), (0.97, 0.0)):
            got, want = np.zeros(1, STATS_DTYPE), np.zeros(1, STATS_DTYPE)
            with np.errstate(all="ignore"):
                dead_c = C.unit_stats(got, x, units, threshold, center)
                dead_ref = REF.unit_stats(want, x, units, threshold, center)
            assert dead_c == dead_ref
            _assert_summaries_agree(got, want)
        if rows and units > 4:
            assert dead_ref >= 2


def test_unit_stats_dead_units_by_hand():
    x = np.array([[0, 1, 0, -0.0], [0, 0, np.nan, 0], [0, 2, 0, 0]], np.float32)
    out = np.zeros(1, STATS_DTYPE)
    assert C.unit_stats(out, x, 4) == REF.unit_stats(out, x, 4) == 2  # units 0 and 3
    assert C.unit_stats(out, np.ones((3, 4)), 4) == 0
    assert C.unit_stats(out, np.zeros(0, np.float32), 0) == 0
    assert C.unit_stats(out, np.zeros((2, 6), np.float32), 3) == 3  # (4, 3) seen as rows of 3


# -- unit_stats_multi: unit_stats over a list in one call ------------------------------


def _multi(backend, arrays, units, thresholds, centers):
    out = np.zeros(len(arrays), STATS_DTYPE)
    dead = np.zeros(len(arrays), np.uint64)
    thresholds, centers = np.array(thresholds, np.float64), np.array(centers, np.float64)
    with np.errstate(all="ignore"):
        backend.unit_stats_multi(out, dead, arrays, units, thresholds, centers)
    return out, dead


def _activations(dtype, rng, kind):
    """Activations of many shapes, some with dead units, a None and empty ones."""
    arrays = []
    for rows, units in ((64, 128), (33, 17), (1, 1), (0, 5), (300, 257), (7, 3), (16, 9)):
        x = np.maximum(_values(dtype, rows * units, rng, kind).reshape(rows, units), 0)
        if rows and units > 4:
            x[:, 1] = 0
            x[:, 3] = -0.0
        arrays.append(x)
    arrays.insert(2, None)  # a layer whose output was not recorded
    arrays.append(_values(dtype, 5, rng, kind))  # 1-D
    arrays.append(np.zeros((4, 6), dtype)[:, ::2])  # strided: read in C order
    units = [0 if a is None else a.size // max(a.shape[0], 1) for a in arrays]
    units[-2] = 1  # 1-D: one unit per element
    units[4] = 5  # (0, 5): empty, yet its units are known
    return arrays, units


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_unit_stats_multi(dtype, kind):
    rng = np.random.default_rng(11)
    arrays, units = _activations(dtype, rng, kind)
    thresholds = [(np.inf, 0.49, 0.97)[i % 3] for i in range(len(arrays))]
    centers = [(0.0, 0.5, 0.0)[i % 3] for i in range(len(arrays))]
    got, got_dead = _multi(C, arrays, units, thresholds, centers)
    want, want_dead = _multi(REF, arrays, units, thresholds, centers)
    np.testing.assert_array_equal(got_dead, want_dead)
    _assert_summaries_agree(got, want)
    # the very bits of one unit_stats call per array
    for i, a in enumerate(arrays):
        one = np.zeros(1, STATS_DTYPE)
        a = np.zeros(0, dtype) if a is None else a
        with np.errstate(all="ignore"):
            assert C.unit_stats(one, a, units[i], thresholds[i], centers[i]) == got_dead[i]
        np.testing.assert_array_equal(one.view(np.uint64), got[i : i + 1].view(np.uint64))
    assert got_dead[0] >= 2
    assert got[2]["count"] == 0  # None is an empty array


def test_unit_stats_multi_of_nothing_and_of_mixed_dtypes():
    out, dead = _multi(C, [], [], [], [])
    assert out.size == dead.size == 0
    out, dead = _multi(C, [None, None], [0, 3], [np.inf, 1], [0, 0])
    assert dead.tolist() == [0, 0] and out["count"].tolist() == [0, 0]
    # float16 and lists mixing dtypes go to the reference, which calls unit_stats per array
    x = np.array([[0, 1], [0, 2]], np.float32)
    arrays = [x.astype(np.float16), x, x.astype(np.float64)]
    got, got_dead = _multi(C, arrays, [2, 2, 2], [0.5, 0.5, 0.5], [0.0, 0.0, 0.0])
    want, want_dead = _multi(REF, arrays, [2, 2, 2], [0.5, 0.5, 0.5], [0.0, 0.0, 0.0])
    assert got_dead.tolist() == want_dead.tolist() == [1, 1, 1]
    np.testing.assert_array_equal(got["sumsq"], want["sumsq"])
    assert got["n_above"].tolist() == [2, 2, 2]


# -- histogram_stats ---------------------------------------------------------------------


def _histograms(backend, arrays, bins):
    out = np.zeros(len(arrays), STATS_DTYPE)
    hist = np.zeros((len(arrays), bins), np.uint64)
    with np.errstate(all="ignore"):
        backend.histogram_stats(out, hist, arrays)
    return out, hist


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bins", [1, 2, 7, 10, MAX_BINS])
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_histogram_stats(dtype, kind, bins):
    rng = np.random.default_rng(bins)
    arrays = [_values(dtype, n, rng, kind) for n in SIZES]
    arrays.insert(2, None)  # a parameter without a gradient
    arrays.append(np.zeros(50, dtype))  # all zero: b = 1, every element in the middle bin
    got, got_hist = _histograms(C, arrays, bins)
    want, want_hist = _histograms(REF, arrays, bins)
    np.testing.assert_array_equal(got_hist, want_hist)
    _assert_summaries_agree(got, want)
    finite = want["count"] - want["n_nan"] - want["n_inf"]
    np.testing.assert_array_equal(got_hist.sum(axis=1), finite)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bins", [2, 3, 10, 11, MAX_BINS])
@pytest.mark.parametrize("scale", [3.7, 1.0, 0.1, 1e-30, 3e37, "subnormal", "max"])
def test_histogram_bins_at_their_edges(dtype, bins, scale):
    """Values a few ulps around every edge, 0 and -0.0 included, and around the
    middle edge (where the position's rounding moves the edge off 0 by many
    ulps): each lands in the bin the float64 formula gives, for bounds of any
    size (the kernel searches each edge from a guess)."""
    info = np.finfo(dtype)
    named = {"subnormal": 1000 * info.smallest_subnormal, "max": info.max}
    bound = dtype(named.get(scale, scale))
    half = bins / 2
    values = [bound, -bound, dtype(0.0), dtype(-0.0)]
    for k in range(1, bins):
        edge = dtype(float(bound) * (k - half) / half)
        around = [edge]
        for direction in (np.inf, -np.inf):
            v = edge
            for _ in range(3):
                v = np.nextafter(v, dtype(direction))
                around.append(v)
        values += around
    tiny = np.finfo(dtype).eps * float(bound)
    values += list((np.linspace(-4, 4, 81) * tiny).astype(dtype))
    x = np.array(values, dtype)
    x = x[np.isfinite(x)]  # beyond the largest bound: inf, which no bin counts
    _, got = _histograms(C, [x], bins)
    _, want = _histograms(REF, [x], bins)
    np.testing.assert_array_equal(got, want)
    position = np.floor(x.astype(np.float64) / float(bound) * half + half)
    expected = np.bincount(np.clip(position, 0, bins - 1).astype(int), minlength=bins)
    np.testing.assert_array_equal(got[0], expected)


def test_histogram_matches_numpy_histogram_on_random_data():
    g = np.random.default_rng(5).standard_normal((128, 64)).astype(np.float32)
    _, hist = _histograms(C, [g], 10)
    bound = np.abs(g).max()
    counts, _ = np.histogram(g, bins=10, range=(-bound, bound))
    np.testing.assert_array_equal(hist[0], counts)


# -- change_stats ------------------------------------------------------------------------


def _change(backend, arrays, snapshot, sums=True, change=True, copy=True):
    s = np.zeros((len(arrays), 2)) if sums else None
    c = np.zeros((len(arrays), 2)) if change else None
    with np.errstate(all="ignore"):
        backend.change_stats(s, c, snapshot, arrays, copy)
    return s, c


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_change_stats(dtype, kind):
    rng = np.random.default_rng(7)
    arrays = [_values(dtype, n, rng, kind) for n in SIZES]
    arrays[5] = arrays[5].reshape(50, 20).T  # strided: read in C order
    total = sum(a.size for a in arrays)
    start = (rng.standard_normal(total) * 2).astype(dtype)
    for sums, change, copy in ((True, True, True), (False, True, False), (True, False, True)):
        snap_c, snap_ref = start.copy(), start.copy()
        got = _change(C, arrays, snap_c, sums, change, copy)
        want = _change(REF, arrays, snap_ref, sums, change, copy)
        for g, w in zip(got, want, strict=True):
            if w is None:
                assert g is None
                continue
            # NaN and inf elements make NaN or inf sums on both sides; finite
            # sums are compared (an overflow's point depends on the order)
            np.testing.assert_array_equal(np.isfinite(g[:, 1]), np.isfinite(w[:, 1]))
            ok = np.isfinite(w[:, 1])
            g, w = g[ok], w[ok]
            scale = float(np.sqrt(w[:, 1] * total).max(initial=0.0))
            close(g[:, 0], w[:, 0], 1e-12, scale=scale, what="sum")
            close(g[:, 1], w[:, 1], 1e-12, what="sum of squares")
        np.testing.assert_array_equal(snap_c, snap_ref)
        flat = np.concatenate([a.ravel() for a in arrays]) if copy else start
        np.testing.assert_array_equal(snap_c, flat)


def test_change_stats_by_hand():
    w = [np.array([1.0, 2.0, 4.0], np.float32), np.array([[0.5]], np.float32)]
    snap = np.array([1.0, 1.0, 1.0, 0.25], np.float32)
    sums, change = _change(C, w, snap)
    np.testing.assert_array_equal(sums, [[7.0, 21.0], [0.5, 0.25]])
    np.testing.assert_array_equal(change, [[4.0, 10.0], [0.25, 0.0625]])
    np.testing.assert_array_equal(snap, [1.0, 2.0, 4.0, 0.5])
    # a float32 difference is taken in double: no rounding to float32
    a, b = np.float32(1.0000001), np.float32(1e-8)
    _, change = _change(C, [np.array([a])], np.array([b]), sums=False, copy=False)
    assert change[0, 0] == float(a) - float(b)


# -- bad arguments: a clear error from both backends, never a write out of bounds ------


@pytest.mark.parametrize("backend", [C, REF], ids=["c", "numpy"])
def test_bad_arguments(backend):
    x = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="unit_stats: out"):
        backend.unit_stats(np.zeros(1), x, 3)
    with pytest.raises(ValueError, match="unit_stats: units"):
        backend.unit_stats(np.zeros(1, STATS_DTYPE), x, 5)
    out, dead, ones = np.zeros(2, STATS_DTYPE), np.zeros(2, np.uint64), np.ones(2)
    args = (ones, ones)
    with pytest.raises(ValueError, match="unit_stats_multi: out"):
        backend.unit_stats_multi(out[:1], dead, [x, x], [3, 3], *args)
    with pytest.raises(ValueError, match="unit_stats_multi: dead"):
        backend.unit_stats_multi(out, np.zeros(2, np.int64), [x, x], [3, 3], *args)
    with pytest.raises(ValueError, match="unit_stats_multi: dead"):
        backend.unit_stats_multi(out, dead[:1], [x, x], [3, 3], *args)
    with pytest.raises(ValueError, match="unit_stats_multi: units"):
        backend.unit_stats_multi(out, dead, [x, x], [3], *args)
    with pytest.raises(ValueError, match=r"unit_stats_multi: units .* dividing its size \(12\)"):
        backend.unit_stats_multi(out, dead, [x, x], [3, 5], *args)
    with pytest.raises(ValueError, match="unit_stats_multi: units"):
        backend.unit_stats_multi(out, dead, [x, x], [3, 0], *args)
    with pytest.raises(ValueError, match="unit_stats_multi: units"):
        backend.unit_stats_multi(out, dead, [x, x], [3, 3.0], *args)
    with pytest.raises(ValueError, match="unit_stats_multi: units"):
        backend.unit_stats_multi(out, dead, [x, x], np.array([3, 3]), *args)
    with pytest.raises(ValueError, match=r"unit_stats_multi: thresholds .* float64"):
        backend.unit_stats_multi(out, dead, [x, x], [3, 3], ones[:1], ones)
    with pytest.raises(ValueError, match="unit_stats_multi: thresholds"):
        backend.unit_stats_multi(out, dead, [x, x], [3, 3], [1.0, 1.0], ones)
    with pytest.raises(ValueError, match="unit_stats_multi: centers"):
        backend.unit_stats_multi(out, dead, [x, x], [3, 3], ones, ones.astype(np.float32))
    with pytest.raises(TypeError, match="unit_stats_multi: arrays"):
        backend.unit_stats_multi(out, dead, [x, x.tolist()], [3, 3], *args)
    with pytest.raises(ValueError, match="histogram_stats: out"):
        backend.histogram_stats(np.zeros(1, STATS_DTYPE), np.zeros((2, 10), np.uint64), [x, x])
    for bins in (0, MAX_BINS + 1):
        with pytest.raises(ValueError, match="histogram_stats: hist"):
            backend.histogram_stats(np.zeros(1, STATS_DTYPE), np.zeros((1, bins), np.uint64), [x])
    with pytest.raises(ValueError, match="change_stats: snapshot"):
        backend.change_stats(None, np.zeros((1, 2)), np.zeros(11, np.float32), [x], False)
    with pytest.raises(ValueError, match="change_stats: snapshot"):
        backend.change_stats(None, None, np.zeros(12), [x], True)  # float64 for float32
    with pytest.raises(ValueError, match="change_stats: sums"):
        backend.change_stats(np.zeros((1, 3)), None, None, [x], False)


def test_float16_and_mixed_lists_fall_back_to_the_reference():
    half = np.linspace(-1, 1, 9).astype(np.float16)
    arrays = [half, np.linspace(-1, 1, 5)]
    got, got_hist = _histograms(C, arrays, 10)
    want, want_hist = _histograms(REF, arrays, 10)
    np.testing.assert_array_equal(got_hist, want_hist)
    np.testing.assert_array_equal(got["sumsq"], want["sumsq"])


# -- every thread count and instruction set computes the same bits ---------------------


def isa_outputs() -> dict:
    rng = np.random.default_rng(78)
    out = {}
    for dtype in DTYPES:
        key = np.dtype(dtype).name
        # the large buffers are above the size where kernels use threads
        arrays = [_values(dtype, n, rng, "plain") for n in (5, 1 << 21, (1 << 21) + 9)]
        stats, hist = _histograms(C, arrays, 10)
        out[f"hist_{key}"] = hist
        out[f"hist_stats_{key}"] = np.array(stats.tolist(), np.float64)
        snapshot = np.zeros(sum(a.size for a in arrays), dtype)
        sums, change = _change(C, arrays, snapshot)
        out[f"sums_{key}"], out[f"change_{key}"] = sums, change
        relu = np.maximum(arrays[1], 0).reshape(4096, 512)
        relu[:, 7] = 0
        unit = np.zeros(1, STATS_DTYPE)
        out[f"dead_{key}"] = np.array(C.unit_stats(unit, relu, 512, 0.49, 0.5))
        out[f"unit_{key}"] = np.array(unit.tolist(), np.float64)
        acts, units = _activations(dtype, rng, "zeros")
        stats, dead = _multi(
            C, [*acts, relu], [*units, 512], [0.49] * (len(acts) + 1), [0.5] * (len(acts) + 1)
        )
        out[f"multi_{key}"] = np.array(stats.tolist(), np.float64)
        out[f"multi_dead_{key}"] = dead
    return out


def test_threads_give_identical_bits():
    assert_thread_counts_agree(C, isa_outputs)


@pytest.mark.parametrize("isa", SIMD_LEVELS)
def test_forced_isa_gives_identical_bits(isa, tmp_path):
    assert_forced_isa_agrees("test_kernels_stats", isa_outputs, isa, SIMD_LEVELS, tmp_path)


# -- monitor_stats: the three kernels in one call ----------------------------------------


def _monitor_case(dtype, big):
    """A monitored step's lists: gradients (one with NaN and inf, one empty), layer
    outputs (batch, units) with dead units, weights and their snapshot; with
    ``big``, one weight of 64K elements or more (the kernels thread it alone)."""
    rng = np.random.default_rng(11)
    shapes = [(64, 128), (128,), (128, 128), (128,), (10, 128), (0,)]
    if big:
        shapes[2] = (512, 256)
    weights = [_values(dtype, int(np.prod(s)), rng, "plain").reshape(s) for s in shapes]
    grads = [_values(dtype, w.size, rng, "plain").reshape(w.shape) for w in weights]
    grads[0][3, 5], grads[0][7, 1], grads[2][0, 0] = np.nan, np.inf, -np.inf
    outputs = [
        np.maximum(_values(dtype, 64 * u, rng, "zeros").reshape(64, u), 0) for u in (128, 17)
    ]
    outputs[0][:, :9] = 0.0
    outputs.append(_values(dtype, 64 * 10, rng, "plain").reshape(64, 10))
    snapshot = _values(dtype, sum(w.size for w in weights), rng, "plain")
    return grads, outputs, weights, snapshot


def _monitor_kernels(dtype, case, together, bins=10, with_weights=True, units=None):
    """The case through mg_monitor_stats (together) or the three kernels: their
    statuses and every array they wrote."""
    from minigrad._C import ffi, lib

    grads, outputs, weights, snapshot = case
    ctype, suffix = ("float", "f32") if dtype == np.float32 else ("double", "f64")
    units = [o.shape[1] for o in outputs] if units is None else units
    out = {
        "grad": np.zeros(len(grads), STATS_DTYPE),
        "hist": np.zeros((len(grads), bins), np.uint64),
        "act": np.zeros(len(outputs), STATS_DTYPE),
        "dead": np.zeros(len(outputs), np.uint64),
        "sums": np.zeros((len(weights), 2)),
        "change": np.zeros((len(weights), 2)),
        "snapshot": snapshot.copy(),
    }

    def c(name, a):
        return ffi.from_buffer(f"{name}[]", a, True)

    def pointers(arrays):
        return ffi.new(f"{ctype} *[]", [c(ctype, a) for a in arrays])

    def lens(sizes):
        return ffi.new("size_t[]", list(sizes))

    grad_args = (
        len(grads),
        c("mg_tensor_stats", out["grad"]),
        c("unsigned long long", out["hist"]),
    )
    grad_args += (bins, pointers(grads), lens(g.size for g in grads))
    unit_args = (len(outputs), c("mg_tensor_stats", out["act"]))
    unit_args += (c("unsigned long long", out["dead"]), pointers(outputs))
    unit_args += (lens(o.size for o in outputs), lens(units))
    unit_args += (ffi.new("double[]", [0.49] * len(outputs)), ffi.new("double[]", [0.5] * 3))
    if with_weights:
        change_args = (len(weights), c("double", out["sums"]), c("double", out["change"]))
        change_args += (c(ctype, out["snapshot"]), pointers(weights))
        change_args += (lens(w.size for w in weights), 1)
    else:
        change_args = (0, ffi.NULL, ffi.NULL, ffi.NULL, ffi.NULL, ffi.NULL, 0)
    if together:
        kernel = getattr(lib, f"mg_monitor_stats_{suffix}")
        statuses = [kernel(*grad_args, *unit_args, *change_args)]
    else:
        statuses = [
            getattr(lib, f"mg_histogram_stats_{suffix}")(*grad_args),
            getattr(lib, f"mg_unit_stats_multi_{suffix}")(*unit_args),
            getattr(lib, f"mg_change_stats_{suffix}")(*change_args),
        ]
    return statuses, out


def _assert_same_bits(got, want):
    for name in want:
        assert got[name].tobytes() == want[name].tobytes(), name


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("with_weights", [True, False])
def test_monitor_stats_equals_the_three_calls(dtype, big, with_weights):
    """On 1, 2 and 3 threads (the third idle), side by side or (a big tensor) in
    turn: the very bits of the three kernels called one after another."""
    from minigrad._C import lib

    case = _monitor_case(dtype, big)
    previous = lib.mg_get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            C.set_num_threads(threads)
            got = _monitor_kernels(dtype, case, True, with_weights=with_weights)
            want = _monitor_kernels(dtype, case, False, with_weights=with_weights)
            assert got[0] == [0] and want[0] == [0, 0, 0]
            _assert_same_bits(got[1], want[1])
            results.append(got[1])
    finally:
        C.set_num_threads(previous)
    for result in results[1:]:
        _assert_same_bits(result, results[0])
    assert results[0]["grad"]["n_nan"][0] == 1 and results[0]["grad"]["n_inf"][2] == 1
    assert results[0]["dead"][0] >= 9
    if with_weights:
        np.testing.assert_array_equal(
            results[0]["snapshot"], np.concatenate([w.ravel() for w in case[2]])
        )


@pytest.mark.parametrize("dtype", DTYPES)
def test_monitor_stats_runs_all_three_whatever_one_returns(dtype):
    """A kernel's error is the call's (the first, in histogram, units, change
    order) and the other kernels still do all their work."""
    from minigrad._C import lib

    case = _monitor_case(dtype, False)
    previous = lib.mg_get_num_threads()
    try:
        for threads in (1, 2):
            C.set_num_threads(threads)
            for bins, units in ((0, None), (10, [128, 17, 7]), (0, [128, 17, 7])):
                got = _monitor_kernels(dtype, case, True, bins=bins, units=units)
                want = _monitor_kernels(dtype, case, False, bins=bins, units=units)
                assert got[0] == [2] and 2 in want[0]  # MG_ERR_RANGE
                _assert_same_bits(got[1], want[1])
    finally:
        C.set_num_threads(previous)


# -- stats_rows: the three kernels bound to tables of rows ------------------------------


def _tables(n, m, rows=4, bins=10):
    return {
        "grad": np.zeros((rows, n), STATS_DTYPE),
        "hist": np.zeros((rows, n, bins), np.uint64),
        "weight": np.zeros((rows, n, 2)),
        "change": np.full((rows, n, 2), np.nan),
        "act": np.zeros((rows, m), STATS_DTYPE),
        "dead": np.zeros((rows, m), np.uint64),
        "thresholds": np.array([np.inf, 0.49, 0.97][:m] + [np.inf] * max(m - 3, 0)),
        "centers": np.array([0.0, 0.5, 0.0][:m] + [0.0] * max(m - 3, 0)),
    }


def _bound(backend, tables):
    return backend.stats_rows(*tables.values())


def _steps(backend, dtype, kind, whole=False):
    """Three steps of a small model's numbers through a binding, the weights
    updated in place in between and replaced by other arrays in the third;
    ``whole``: each step in one ``measure`` call."""
    rng = np.random.default_rng(3)
    shapes = [(6, 5), (6,), (3, 6), (3,)]
    weights = [_values(dtype, int(np.prod(s)), rng, "plain").reshape(s) for s in shapes]
    snapshot = np.zeros(sum(w.size for w in weights), dtype)
    tables = _tables(len(shapes), 4)
    bound = _bound(backend, tables)
    units = []
    for step in range(3):
        grads = [_values(dtype, w.size, rng, kind).reshape(w.shape) for w in weights]
        outputs = [np.maximum(_values(dtype, 8 * 6, rng, kind).reshape(8, 6), 0) for _ in range(3)]
        outputs.append(_values(dtype, 8 * 3, rng, kind).reshape(8, 3))
        if step == 1:
            grads[1] = None  # a parameter without gradient
            outputs[2] = None  # a layer that did not run
            outputs[3] = outputs[3][:, ::2]  # strided: read in C order
        if step == 2:
            weights = [w.copy() for w in weights]  # other arrays, same sizes
        with np.errstate(all="ignore"):
            pending = step - 1 if step else None
            if whole:
                units.append(bound.measure(step, pending, snapshot, weights, grads, outputs))
            else:
                bound.changes(step, pending, snapshot, weights, True)
                units.append(bound.record(step, grads, outputs))
        for w in weights:
            w *= dtype(0.9)
    return tables, snapshot, units


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["plain", "nan", "zeros"])
def test_stats_rows_equal_the_reference(dtype, kind):
    got, got_snapshot, got_units = _steps(C, dtype, kind)
    want, want_snapshot, want_units = _steps(REF, dtype, kind)
    assert got_units == want_units
    assert got_units[0] == (6, 6, 6, 3) and got_units[1][2] is None and got_units[1][3] == 2
    np.testing.assert_array_equal(got_snapshot, want_snapshot)
    np.testing.assert_array_equal(got["hist"], want["hist"])
    np.testing.assert_array_equal(got["dead"], want["dead"])
    for name in ("grad", "act"):
        _assert_summaries_agree(got[name].ravel(), want[name].ravel())
    for name in ("weight", "change"):
        close(got[name], want[name], 1e-12, what=name)
    assert np.isnan(got["change"][2:]).all()  # rows not measured yet


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["plain", "nan"])
@pytest.mark.parametrize("backend", [C, REF], ids=["c", "numpy"])
def test_stats_rows_measure_equals_changes_then_record(dtype, kind, backend):
    got, got_snapshot, got_units = _steps(backend, dtype, kind, whole=True)
    want, want_snapshot, want_units = _steps(backend, dtype, kind)
    assert got_units == want_units
    np.testing.assert_array_equal(got_snapshot, want_snapshot)
    _assert_same_bits(got, want)


def test_stats_rows_measure_of_mixed_dtypes_and_float16_takes_the_general_path():
    rng = np.random.default_rng(5)
    weights = [_values(np.float32, 12, rng, "plain").reshape(3, 4)]
    tables = {}
    for backend in (C, REF):
        tables[backend] = _tables(1, 2)
        bound = _bound(backend, tables[backend])
        for grads, outputs in (
            ([weights[0] * 2], [weights[0].astype(np.float64), weights[0]]),
            ([weights[0].astype(np.float16)], [weights[0], None]),
        ):
            snapshot = np.zeros(12, np.float32)
            units = bound.measure(0, None, snapshot, weights, grads, outputs)
            assert units[0] == 4
            np.testing.assert_array_equal(snapshot, weights[0].ravel())
    _assert_same_bits(
        {k: v for k, v in tables[C].items() if k in ("hist", "dead")},
        {k: v for k, v in tables[REF].items() if k in ("hist", "dead")},
    )


def test_stats_rows_without_arrays_and_with_float16():
    for backend in (C, REF):
        tables = _tables(0, 1)
        bound = _bound(backend, tables)
        bound.changes(0, None, np.zeros(0, np.float32), [], True)
        assert bound.record(0, [], [np.zeros(3, np.float16)]) == (1,)
        assert tables["act"][0]["count"] == 3


def test_stats_rows_keep_the_weights_buffers_in_place():
    """The C binding keeps pointers to the weights it read last: NumPy refuses
    to resize them (as it would refuse the monitor, which refers to them)."""
    weights = [np.ones(4, np.float32)]
    bound = _bound(C, _tables(1, 1))
    bound.changes(0, None, np.zeros(4, np.float32), weights, True)
    with pytest.raises(ValueError, match="resize"):
        weights[0].resize(1000, refcheck=False)


@pytest.mark.parametrize("backend", [C, REF], ids=["c", "numpy"])
def test_stats_rows_bad_arguments(backend):
    tables = _tables(2, 2)
    for name, bad in (
        ("grad", np.zeros((4, 2))),
        ("grad", np.zeros((0, 2), STATS_DTYPE)),
        ("hist", np.zeros((4, 2, MAX_BINS + 1), np.uint64)),
        ("weight", np.zeros((4, 3, 2))),
        ("change", np.zeros((4, 2, 2), np.float32)),
        ("act", np.zeros((3, 2), STATS_DTYPE)),
        ("dead", np.zeros((4, 2), np.uint64)[:, ::-1]),
        ("thresholds", np.zeros(3)),
        ("centers", [0.0, 0.0]),
    ):
        with pytest.raises(ValueError, match=f"stats_rows: {name}"):
            _bound(backend, {**tables, name: bad})
    bound = _bound(backend, tables)
    x = np.ones((3, 2), np.float32)
    for row in (4, -1, 1.0, None):
        with pytest.raises(
            IndexError, match=r"StatsRows.histogram: row must be an int in \[0, 4\)"
        ):
            bound.record(row, [x, x], [x, x])
        with pytest.raises(IndexError, match=r"StatsRows\.changes: row"):
            bound.changes(
                row if row is not None else 9, None, np.zeros(12, np.float32), [x, x], True
            )
    with pytest.raises(ValueError, match="StatsRows: expected 2 arrays, got 1"):
        bound.record(0, [x], [x, x])
    with pytest.raises(ValueError, match=r"StatsRows\.units: expected 2 arrays, got 3"):
        bound.record(0, [x, x], [x, x, x])
    with pytest.raises(TypeError, match="histogram_stats: arrays must hold numpy arrays"):
        bound.record(0, [x, x.tolist()], [x, x])
    with pytest.raises(ValueError, match="change_stats: snapshot"):
        bound.changes(0, 1, np.zeros(11, np.float32), [x, x], True)


def test_stats_rows_histogram_and_units_alone():
    rng = np.random.default_rng(9)
    grads = [_values(np.float32, n, rng, "plain") for n in (30, 6)]
    outputs = [np.maximum(_values(np.float32, 40, rng, "plain").reshape(8, 5), 0), np.ones(())]
    results = []
    for backend in (C, REF):
        tables = _tables(2, 2)
        bound = _bound(backend, tables)
        bound.histogram(1, grads)
        assert bound.units(3, outputs) == (5, 1)
        results.append(tables)
    got, want = results
    np.testing.assert_array_equal(got["hist"], want["hist"])
    np.testing.assert_array_equal(got["dead"], want["dead"])
    _assert_summaries_agree(got["grad"].ravel(), want["grad"].ravel())
    _assert_summaries_agree(got["act"].ravel(), want["act"].ravel())
    assert got["grad"][1]["count"].tolist() == [30, 6] and got["act"][3]["count"].tolist() == [
        40,
        1,
    ]


def _unaligned(a: np.ndarray) -> np.ndarray:
    """A read-only copy of a whose data starts one byte past an aligned address."""
    out = np.frombuffer(b"\0" + a.tobytes(), a.dtype, count=a.size, offset=1).reshape(a.shape)
    assert not out.flags.aligned
    return out


@pytest.mark.parametrize("dtype", DTYPES)
def test_list_kernels_read_unaligned_and_read_only_arrays(dtype):
    """C may assume aligned elements (its vectorized loops do): such arrays are
    copied first, through every entry point, and give the reference's numbers."""
    rng = np.random.default_rng(4)
    plain = [_values(dtype, n, rng, "zeros").reshape(-1, 5) for n in (40, 65)]
    odd = [_unaligned(a) for a in plain]
    got, want = _histograms(C, odd, 10), _histograms(REF, plain, 10)
    np.testing.assert_array_equal(got[1], want[1])
    _assert_summaries_agree(got[0], want[0])
    got, want = (
        _multi(C, odd, [5, 5], [0.5, 0.5], [0, 0]),
        _multi(REF, plain, [5, 5], [0.5, 0.5], [0, 0]),
    )
    np.testing.assert_array_equal(got[1], want[1])
    _assert_summaries_agree(got[0], want[0])
    snap_c, snap_ref = np.zeros(105, dtype), np.zeros(105, dtype)
    got, want = _change(C, odd, snap_c), _change(REF, plain, snap_ref)
    close(got[0], want[0], 1e-12, what="sums")
    np.testing.assert_array_equal(snap_c, snap_ref)
    tables = {}
    for backend, arrays in ((C, odd), (REF, plain)):
        tables[backend] = _tables(2, 2)
        bound = _bound(backend, tables[backend])
        assert bound.record(0, arrays, arrays) == (5, 5)
        bound.changes(1, 0, np.zeros(105, dtype), arrays, True)
    for name in ("hist", "dead"):
        np.testing.assert_array_equal(tables[C][name], tables[REF][name])
    _assert_summaries_agree(tables[C]["grad"].ravel(), tables[REF]["grad"].ravel())
    close(tables[C]["weight"], tables[REF]["weight"], 1e-12, what="weight")
