"""The C backend: kernels from csrc/ called through cffi.

``CBackend`` subclasses the NumPy reference and overrides only the kernels
that exist in C, so anything not written in C yet (and any dtype C does not
handle, such as float16) runs the reference code instead.

Every call follows the same path: check the shapes, pick the C function
for the dtype, make the inputs C-contiguous and aligned (copying only when
they are not), allocate a fresh output, pass raw pointers with
``ffi.from_buffer`` while the arrays stay referenced here, and turn a nonzero
status into an exception. The kernels never write their inputs.

``gemm`` differs in two ways: operands go with leading dimensions and a
trans flag, so transposed and row-sliced views are read in place rather
than copied, and it writes into ``out`` when given one. Products too small
for C to win go to ``np.matmul``.
"""

from __future__ import annotations

import functools
import operator
import os
import warnings
import weakref
from typing import NamedTuple

import numpy as np

from minigrad._C import ffi, lib

from . import pool
from .base import (
    StatsRows,
    TensorStats,
    check_change_args,
    check_histogram_args,
    check_unit_stats_args,
    check_unit_stats_multi_args,
    check_update_lists,
)
from .numpy import NumpyBackend

_SIMD_LEVELS = ("generic", "avx2", "avx512")

_CPU_FEATURES = (
    ("avx2", lib.MG_CPU_AVX2),
    ("fma", lib.MG_CPU_FMA),
    ("avx512f", lib.MG_CPU_AVX512F),
    ("avx512dq", lib.MG_CPU_AVX512DQ),
    ("avx512vl", lib.MG_CPU_AVX512VL),
    ("avx512bw", lib.MG_CPU_AVX512BW),
)


class _Kernels(NamedTuple):
    """The C activation kernels for one dtype."""

    ctype: object  # the cffi array type, float[] or double[]
    relu_forward: object
    relu_backward: object
    leaky_relu_forward: object
    leaky_relu_backward: object
    sigmoid_forward: object
    sigmoid_backward: object
    tanh_forward: object
    tanh_backward: object
    gelu_forward: object
    gelu_backward: object


# Keyed by dtype so a call costs one dict lookup; non-native byte orders
# compare unequal to these dtypes and so fall back to NumPy.
_KERNELS = {
    np.dtype(np.float32): _Kernels(
        ffi.typeof("float[]"),
        lib.mg_relu_forward_f32,
        lib.mg_relu_backward_f32,
        lib.mg_leaky_relu_forward_f32,
        lib.mg_leaky_relu_backward_f32,
        lib.mg_sigmoid_forward_f32,
        lib.mg_sigmoid_backward_f32,
        lib.mg_tanh_forward_f32,
        lib.mg_tanh_backward_f32,
        lib.mg_gelu_forward_f32,
        lib.mg_gelu_backward_f32,
    ),
    np.dtype(np.float64): _Kernels(
        ffi.typeof("double[]"),
        lib.mg_relu_forward_f64,
        lib.mg_relu_backward_f64,
        lib.mg_leaky_relu_forward_f64,
        lib.mg_leaky_relu_backward_f64,
        lib.mg_sigmoid_forward_f64,
        lib.mg_sigmoid_backward_f64,
        lib.mg_tanh_forward_f64,
        lib.mg_tanh_backward_f64,
        lib.mg_gelu_forward_f64,
        lib.mg_gelu_backward_f64,
    ),
}

_GELU_FORMS = {"none": 0, "tanh": 1}

# The fused kernels (norms, clipping, optimizer updates, statistics) by
# dtype and name: _FUSED[dtype]["batch_norm_backward"] is
# lib.mg_batch_norm_backward_f32 for float32.
_FUSED_NAMES = (
    "batch_norm_forward_train",
    "batch_norm_forward_eval",
    "batch_norm_backward",
    "layer_norm_forward",
    "layer_norm_backward",
    "sum_squares",
    "max_abs",
    "scale",
    "clamp",
    "row_norms",
    "adaptive_clip",
    "sgd_step",
    "adam_step",
    "sgd_step_multi",
    "adam_step_multi",
    "tensor_stats",
    "unit_stats",
    "unit_stats_multi",
    "histogram_stats",
    "change_stats",
    "monitor_stats",
)
_FUSED = {
    np.dtype(dtype): {name: getattr(lib, f"mg_{name}_{suffix}") for name in _FUSED_NAMES}
    for dtype, suffix in ((np.float32, "f32"), (np.float64, "f64"))
}
_CTYPES = {
    np.dtype(np.float32): ffi.typeof("float[]"),
    np.dtype(np.float64): ffi.typeof("double[]"),
}
_POINTER_ARRAYS = {
    np.dtype(np.float32): ffi.typeof("float *[]"),
    np.dtype(np.float64): ffi.typeof("double *[]"),
}
# Outputs pass require_writable by position: as a keyword it doubles the cost
# of a call, and the statistics kernels make several per training step.
_NULL, _from_buffer = ffi.NULL, ffi.from_buffer
_FROM_BUFFER = {dtype: functools.partial(_from_buffer, ctype) for dtype, ctype in _CTYPES.items()}
_NDARRAY = frozenset((np.ndarray,))
_carray = operator.attrgetter("flags.carray")  # writable, aligned, C-contiguous
_dtype_of, _size_of = operator.attrgetter("dtype"), operator.attrgetter("size")
_STATS_ARRAY = ffi.typeof("mg_tensor_stats[]")
_DATA_POINTERS = {
    np.dtype(np.float32): ffi.typeof("float *"),
    np.dtype(np.float64): ffi.typeof("double *"),
}


def _pooled_pointer(a: np.ndarray):
    """The pointer the pool keeps with each array it makes (see pool.py): a
    plain cast of the address, which does not refer to the array, so the pool's
    reference counts stay as they were."""
    ptype = _DATA_POINTERS.get(a.dtype)
    return None if ptype is None else ffi.cast(ptype, a.ctypes.data)


pool.POOL.make_pointer = _pooled_pointer
# id of a pooled array -> its pointer; ``.get(id(a)) or _from_buffer(ctype, a)``
# is the pointer to any array C can take, a tenth of the cost for pooled ones.
_POOLED = pool.POOL.pointers
_DOUBLES = ffi.typeof("double[]")
_COUNTS = ffi.typeof("unsigned long long[]")
_COUNT_PTR = ffi.typeof("unsigned long long *")
_SIZES = ffi.typeof("size_t[]")


class _Gemm(NamedTuple):
    """The C GEMM for one dtype."""

    ctype: object  # float[] or double[], for ffi.from_buffer
    ptype: object  # float * or double *, for strided views
    kernel: object


_GEMM = {
    np.dtype(np.float32): _Gemm(ffi.typeof("float[]"), ffi.typeof("float *"), lib.mg_gemm_f32),
    np.dtype(np.float64): _Gemm(ffi.typeof("double[]"), ffi.typeof("double *"), lib.mg_gemm_f64),
}

# Products below this many multiply-adds (m n k) go to NumPy: there a call
# is mostly fixed cost, and np.matmul's is lower than ours (three buffers,
# an output and a workspace to set up). Measured crossover on the build
# machine: about 64^3 (bench/RESULTS.md).
_GEMM_C_MIN_MACS = 64**3


def _gemm_operand(g: _Gemm, x: np.ndarray, trans: bool):
    """``(pointer, leading dimension, trans flag, array kept alive)`` for C.

    A C-contiguous array goes as it is; a Fortran-contiguous one is the
    transpose of a C-contiguous array, so it goes as that with the trans flag
    flipped; any view whose rows (or columns) are evenly spaced runs goes by
    its address and stride. Only what fits none of these is copied.
    """
    flags = x.flags
    rows, cols = x.shape
    if flags.aligned:
        if flags.c_contiguous:
            return ffi.from_buffer(g.ctype, x), cols or 1, trans, x
        if flags.f_contiguous:
            return ffi.from_buffer(g.ctype, x.T), rows or 1, not trans, x
        item = x.itemsize
        s0, s1 = x.strides
        if s1 == item and s0 > 0 and s0 % item == 0 and s0 >= cols * item:
            return ffi.cast(g.ptype, x.ctypes.data), s0 // item, trans, x
        if s0 == item and s1 > 0 and s1 % item == 0 and s1 >= rows * item:
            return ffi.cast(g.ptype, x.ctypes.data), s1 // item, not trans, x
    # np.array, not np.ascontiguousarray: the latter returns a contiguous
    # but misaligned array as it is.
    x = np.array(x, order="C")
    return ffi.from_buffer(g.ctype, x), cols or 1, trans, x


def _c_layout(a: np.ndarray) -> np.ndarray:
    """``a`` itself when C can read it as a flat buffer, else a C-ordered copy.

    Alignment matters as much as contiguity: C may assume a float pointer is
    float-aligned (the vectorizer's peeling for alignment does), so an array
    at an odd byte offset, which NumPy allows, is copied too.
    """
    flags = a.flags
    if flags.c_contiguous and flags.aligned:
        return a
    return np.array(a, order="C")


def _shape(a) -> tuple:
    return a.shape if type(a) is np.ndarray else np.shape(a)


def _check_same_shape(op: str, gy, name: str, saved) -> None:
    gy_shape, saved_shape = _shape(gy), _shape(saved)
    if gy_shape != saved_shape:
        raise ValueError(
            f"{op}: gy has shape {gy_shape} but {name} has shape {saved_shape}; they must match"
        )


def _gelu_form(op: str, approximate: str) -> int:
    try:
        return _GELU_FORMS[approximate]
    except (KeyError, TypeError):
        raise ValueError(
            f"{op}: approximate must be 'none' or 'tanh', got {approximate!r}"
        ) from None


def _kernel_failed(kernel, status: int) -> Exception:
    if status == lib.MG_ERR_NOMEM:
        return MemoryError(f"C kernel {kernel.__name__} could not allocate its scratch space")
    return RuntimeError(f"C kernel {kernel.__name__} failed with status {status}")


def _check_status(kernel, status: int) -> None:
    if status != 0:
        raise _kernel_failed(kernel, status)


def _matrix_dtype(x):
    """x's dtype when x is a 2-D plain ndarray of a dtype C takes, else None."""
    if type(x) is not np.ndarray or x.ndim != 2:
        return None
    dtype = x.dtype
    return dtype if dtype in _FUSED else None


def _vector_ptrs(op: str, dtype, length: int, read: tuple, updated: tuple = ()) -> list | None:
    """C pointers (NULL for None) to a norm kernel's per-channel or per-row
    arrays: ``read`` and ``updated`` are (name, array) pairs, each array None
    or of shape (length,), that C reads or updates in place. A strided array C
    only reads is copied. None when C cannot take one of them (not a plain
    ndarray of ``dtype``, or a strided array to update): the NumPy reference
    then takes the call, as it takes any dtype and updates any writable array
    in place. A pointer from from_buffer keeps its array alive."""
    ctype = _CTYPES[dtype]
    shape = (length,)
    ptrs = []
    for updating, named in ((False, read), (True, updated)):
        for name, a in named:
            if a is None:
                ptrs.append(_NULL)
                continue
            if type(a) is not np.ndarray or a.dtype != dtype:
                return None
            if a.shape != shape:
                raise ValueError(f"{op}: {name} must have shape ({length},), got {a.shape}")
            if updating:
                flags = a.flags
                if not flags.writeable:
                    raise ValueError(f"{op}: {name} is read-only but is updated in place")
                if not (flags.c_contiguous and flags.aligned):
                    return None
            else:
                a = _c_layout(a)
            ptrs.append(_from_buffer(ctype, a))
    return ptrs


def _ptr(ctype, a):
    """A pointer to a C-layout array for C to read, or NULL for None."""
    return ffi.NULL if a is None else ffi.from_buffer(ctype, a)


def _ptr_out(ctype, a):
    """A pointer to an output array C writes, or NULL for None."""
    return _NULL if a is None else _from_buffer(ctype, a, True)


def _in_place_target(x) -> bool:
    """True when C can update x in place: a writable, C-layout plain ndarray
    of a C dtype. Anything else goes to the reference, which updates any
    array NumPy can write (and raises for a read-only one)."""
    if type(x) is not np.ndarray or x.dtype not in _FUSED:
        return False
    flags = x.flags
    return flags.c_contiguous and flags.aligned and flags.writeable


def _same_array_kind(x, *others) -> bool:
    """True when every array in ``others`` is a plain ndarray with x's dtype and shape."""
    return all(type(a) is np.ndarray and a.dtype == x.dtype and a.shape == x.shape for a in others)


def _by_dtype(arrays) -> dict | None:
    """The arrays grouped by dtype, or None if any of them cannot go to C."""
    groups: dict = {}
    for a in arrays:
        if type(a) is not np.ndarray or a.dtype not in _FUSED:
            return None
        groups.setdefault(a.dtype, []).append(_c_layout(a))
    return groups


def _list_reduce(name: str, dtype, arrays: list) -> float:
    """Run a list kernel (sum_squares, max_abs) on arrays of one dtype."""
    ctype = _CTYPES[dtype]
    views = [ffi.from_buffer(ctype, a) for a in arrays]  # referenced until C returns
    bufs = ffi.new(_POINTER_ARRAYS[dtype], views)
    lens = ffi.new("size_t[]", [a.size for a in arrays])
    out = ffi.new("double *")
    kernel = _FUSED[dtype][name]
    _check_status(kernel, kernel(len(arrays), out, bufs, lens))
    return out[0]


def _buffers(arrays):
    """(dtype, pointer array, lengths, their sizes as ints, views) for a list
    kernel, or None unless every entry is a NumPy array or None and the arrays
    have one dtype C takes; None entries go as NULL with length 0. None means:
    check the arguments (they may be wrong), then take the reference's path.
    The views hold the arrays' buffers (or C-layout copies) until C returns.

    A monitored training loop makes two such lists per step (gradients,
    activations). The usual case, plain writable C-layout arrays of one dtype,
    takes loops that run inside the interpreter's C code (map, set)."""
    if _NDARRAY.issuperset(map(type, arrays)) and all(map(_carray, arrays)):
        dtypes = set(map(_dtype_of, arrays))
        if len(dtypes) == 1:
            dtype = dtypes.pop()
            from_buffer = _FROM_BUFFER.get(dtype)
            if from_buffer is not None:
                views, sizes = list(map(from_buffer, arrays)), tuple(map(_size_of, arrays))
                bufs = ffi.new(_POINTER_ARRAYS[dtype], views)
                return dtype, bufs, _lengths(sizes), sizes, views
    dtype = ctype = None
    views, sizes = [], []
    for a in arrays:
        if a is None:
            views.append(_NULL)
            sizes.append(0)
            continue
        if type(a) is not np.ndarray:
            return None
        if a.dtype is not dtype:
            if dtype is None and a.dtype in _FUSED:
                dtype, ctype = a.dtype, _CTYPES[a.dtype]
            elif a.dtype != dtype:
                return None
        a = _c_layout(a)
        views.append(_from_buffer(ctype, a))
        sizes.append(a.size)
    if dtype is None:
        return None
    sizes = tuple(sizes)
    return dtype, ffi.new(_POINTER_ARRAYS[dtype], views), _lengths(sizes), sizes, views


# size_t arrays by their contents, for list kernels: the lists of a training loop
# keep their sizes (and units) from one step to the next, and making a cffi
# array costs about a microsecond there. C only reads them, so they can be shared.
_SIZE_ARRAYS: dict[tuple, object] = {}


def _lengths(sizes: tuple):
    lens = _SIZE_ARRAYS.get(sizes)
    if lens is None:
        if len(_SIZE_ARRAYS) >= 256:
            _SIZE_ARRAYS.clear()
        lens = _SIZE_ARRAYS[sizes] = ffi.new(_SIZES, sizes)
    return lens


class _CStatsRows(StatsRows):
    """The C backend's ``StatsRows``: pointers into the tables, taken once, and a
    row is a pointer plus an offset, for the calls a monitored step makes.
    ``record`` passes the gradients and the outputs to C as one list, and
    ``measure`` that list and the weights in one call of all three kernels. The
    weights ``changes`` reads are the same arrays step after step (optimizers
    update them in place): their pointer array is kept too, with the
    snapshot's, and used while the same arrays come. Anything unusual (a row
    out of range, a list of another length or of arrays C cannot read in
    place) takes ``StatsRows``'s path, which checks it and calls the backend's
    methods.

    NumPy refuses to resize an array that has a weak reference: the weak
    references below keep every buffer a pointer was taken of where it is."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        tables = (self.grad, self.hist, self.weight, self.change, self.act, self.dead)
        self._refs = [weakref.ref(t) for t in tables]
        self._grad_ptr = _from_buffer(_STATS_ARRAY, self.grad, True)
        self._hist_ptr = _from_buffer(_COUNTS, self.hist, True)
        self._weight_ptr = _from_buffer(_DOUBLES, self.weight, True)
        self._change_ptr = _from_buffer(_DOUBLES, self.change, True)
        self._act_ptr = _from_buffer(_STATS_ARRAY, self.act, True)
        self._dead_ptr = _from_buffer(_COUNTS, self.dead, True)
        self._thresholds_ptr = _from_buffer(_DOUBLES, self.thresholds)
        self._centers_ptr = _from_buffer(_DOUBLES, self.centers)
        self._bins = self.hist.shape[2]
        # (weights, snapshot, change_stats, pointer array, lengths, snapshot pointer,
        # weak refs, dtype, monitor_stats)
        self._pinned: tuple | None = None
        # record's last (sizes, batch sizes, units per sample, units as size_t[])
        self._units: tuple = ((), (), (), None)

    def record(self, row, grads, outputs):
        lists = self._lists(row, grads, outputs)
        if lists is None:
            return super().record(row, grads, outputs)
        dtype, bufs, lens, units, units_c, views = lists
        kernels = _FUSED[dtype]
        kernel = kernels["histogram_stats"]
        status = kernel(*self._histogram_args(row, bufs, lens))
        if not status:
            kernel = kernels["unit_stats_multi"]
            status = kernel(*self._unit_args(row, bufs, lens, units_c))
        if status:
            raise _kernel_failed(kernel, status)
        del views  # referenced until here, while C read the arrays
        return units

    def measure(self, row, change_row, snapshot, weights, grads, outputs):
        # The three kernels in one call (mg_monitor_stats, which runs them side by
        # side on two threads) when both halves take their usual paths in one dtype:
        # for the digits MLP on 2 cores, 32.5 -> 21.3 us a call, back to back.
        pinned = self._pinned_for(snapshot, weights)
        lists = None
        if pinned is not None and (
            change_row is None or (type(change_row) is int and 0 <= change_row < self.rows)
        ):
            lists = self._lists(row, grads, outputs)
        if lists is None or lists[0] != pinned[7]:
            return super().measure(row, change_row, snapshot, weights, grads, outputs)
        _, bufs, lens, units, units_c, views = lists
        n = self.n
        kernel, weight_bufs, weight_lens, snap = pinned[8], pinned[3], pinned[4], pinned[5]
        status = kernel(
            *self._histogram_args(row, bufs, lens),
            *self._unit_args(row, bufs, lens, units_c),
            n,
            self._weight_ptr + 2 * n * row,
            _NULL if change_row is None else self._change_ptr + 2 * n * change_row,
            snap,
            weight_bufs,
            weight_lens,
            1,
        )
        if status:
            raise _kernel_failed(kernel, status)
        del views  # referenced until here, while C read the arrays
        return units

    def _histogram_args(self, row, bufs, lens) -> tuple:
        """histogram_stats's arguments for this row: the gradients, the list's
        first n entries."""
        n, bins = self.n, self._bins
        return n, self._grad_ptr + n * row, self._hist_ptr + n * bins * row, bins, bufs, lens

    def _unit_args(self, row, bufs, lens, units_c) -> tuple:
        """unit_stats_multi's arguments for this row: the outputs, the list's
        entries after the n gradients."""
        n, m = self.n, self.m
        return (
            m,
            self._act_ptr + m * row,
            self._dead_ptr + m * row,
            bufs + n,
            lens + n,
            units_c,
            self._thresholds_ptr,
            self._centers_ptr,
        )

    def _lists(self, row, grads, outputs) -> tuple | None:
        """What ``record`` passes C for this row, gradients and outputs: (dtype,
        pointer array, lengths, units, units as size_t[], views), the gradients
        then the outputs in one list, read the same way; None for the general
        path (a row out of range, lists of another length or of arrays C cannot
        read, outputs that are not (batch, ...) arrays)."""
        n = self.n
        if not (
            type(row) is int and 0 <= row < self.rows and len(grads) == n and len(outputs) == self.m
        ):
            return None
        buffers = _buffers([*grads, *outputs])
        if buffers is None:
            return None
        dtype, bufs, lens, sizes, views = buffers
        try:
            batches = tuple(map(len, outputs))
        except TypeError:
            return None
        last = self._units
        if sizes != last[0] or batches != last[1]:  # usually the last step's
            try:
                units = tuple(map(operator.floordiv, sizes[n:], batches))
            except ZeroDivisionError:
                return None
            last = self._units = (sizes, batches, units, _lengths(units))
        return dtype, bufs, lens, last[2], last[3], views

    def changes(self, sums_row, change_row, snapshot, arrays, copy):
        pinned = self._pinned_for(snapshot, arrays)
        rows, n = self.rows, self.n
        if (
            pinned is None
            or not (sums_row is None or (type(sums_row) is int and 0 <= sums_row < rows))
            or not (change_row is None or (type(change_row) is int and 0 <= change_row < rows))
        ):
            return super().changes(sums_row, change_row, snapshot, arrays, copy)
        _, _, kernel, bufs, lens, snap, _, _, _ = pinned
        status = kernel(
            n,
            _NULL if sums_row is None else self._weight_ptr + 2 * n * sums_row,
            _NULL if change_row is None else self._change_ptr + 2 * n * change_row,
            snap,
            bufs,
            lens,
            1 if copy else 0,
        )
        if status:
            raise _kernel_failed(kernel, status)

    def _pinned_for(self, snapshot, arrays) -> tuple | None:
        """The kept pointers of these weights and snapshot: the last ones while the
        same arrays come (usually the very same tuple), else pinned anew."""
        pinned = self._pinned
        if (
            pinned is None
            or snapshot is not pinned[1]
            or (arrays is not pinned[0] and not _same(arrays, pinned[0]))
        ):
            pinned = self._pinned = self._pin(snapshot, arrays)
        return pinned

    def _pin(self, snapshot, arrays) -> tuple | None:
        """What ``changes`` keeps of these weights and snapshot, if they are fine for
        every call (a snapshot of their dtype and size, arrays C reads in place)."""
        if len(arrays) != self.n or type(snapshot) is not np.ndarray:
            return None
        try:
            check_change_args(None, None, snapshot, arrays, True)
        except (TypeError, ValueError):
            return None  # the checks on the way to the backend decide
        buffers = _buffers(arrays)
        if buffers is None or not all(map(_carray, arrays)):
            return None
        dtype, bufs, lens, _, _ = buffers
        # A tuple cannot change: the next call passing this very one needs no
        # comparison. Anything else is copied into one.
        arrays = arrays if type(arrays) is tuple else tuple(arrays)
        refs = [weakref.ref(a) for a in (*arrays, snapshot)]
        snap = _from_buffer(_CTYPES[dtype], snapshot, True)
        kernels = _FUSED[dtype]
        change, monitor = kernels["change_stats"], kernels["monitor_stats"]
        return arrays, snapshot, change, bufs, lens, snap, refs, dtype, monitor


def _same(arrays, kept: tuple) -> bool:
    """Whether ``arrays`` holds the very arrays of ``kept``, in order."""
    return len(arrays) == len(kept) and all(map(operator.is_, arrays, kept))


def _group_dtype(params, *lists) -> np.dtype | None:
    """The dtype of a group update that C can run in one call, else None.

    C needs one C dtype for the whole group and updates parameters and state
    in place, so each must be a C-layout plain ndarray. A parameter listed
    twice would be updated by two threads at once, so it sends the group down
    the one-parameter path, which updates it twice, in order.
    """
    if not params or len({id(p) for p in params}) != len(params):
        return None
    dtype = params[0].dtype
    if dtype not in _FUSED:
        return None
    for arrays in (params, *lists):
        for a in arrays:
            if type(a) is not np.ndarray or a.dtype != dtype:
                return None
            flags = a.flags
            if not (flags.c_contiguous and flags.aligned):
                return None
    return dtype


def _pointer_array(dtype, arrays: list):
    """A C array of pointers to the arrays' data. The arrays own that memory:
    the caller keeps the list referenced until C returns."""
    ctype = _CTYPES[dtype]
    return ffi.new(_POINTER_ARRAYS[dtype], [ffi.from_buffer(ctype, a) for a in arrays])


def _unary(op: str, x, *params) -> np.ndarray | None:
    """``y = op(x, *params)`` elementwise by the C kernel ``op`` for x's dtype,
    into a new array shaped like x; None when C cannot take x.

    Only plain ndarrays go to C: a subclass (a masked array, say) may mean
    more than its buffer says, and NumPy's own ufuncs know how to handle it.
    This and ``_binary`` run for every activation an op computes, so they test
    the layout themselves (what ``_c_layout`` does) rather than call it."""
    k = _KERNELS.get(x.dtype) if type(x) is np.ndarray else None
    if k is None:
        return None
    flags = x.flags
    if not (flags.c_contiguous and flags.aligned):
        x = np.array(x, order="C")
    kernel, ctype = getattr(k, op), k.ctype
    y = pool.empty(x.shape, x.dtype)
    status = kernel(
        x.size,
        _POOLED.get(id(y)) or _from_buffer(ctype, y),
        _POOLED.get(id(x)) or _from_buffer(ctype, x),
        *params,
    )
    if status != 0:
        raise _kernel_failed(kernel, status)
    return y


def _binary(op: str, gy, name: str, saved, *params) -> np.ndarray | None:
    """``gx = op(gy, saved, *params)`` elementwise by the C kernel ``op``, into
    a new array; None unless both arrays can go to C. Raises unless gy and the
    array called ``name`` have one shape."""
    if type(gy) is not np.ndarray or type(saved) is not np.ndarray:
        _check_same_shape(op, gy, name, saved)
        return None
    shape, dtype = gy.shape, gy.dtype
    if shape != saved.shape:
        _check_same_shape(op, gy, name, saved)
    k = _KERNELS.get(dtype) if dtype == saved.dtype else None
    if k is None:
        return None
    flags = gy.flags
    if not (flags.c_contiguous and flags.aligned):
        gy = np.array(gy, order="C")
    flags = saved.flags
    if not (flags.c_contiguous and flags.aligned):
        saved = np.array(saved, order="C")
    kernel, ctype = getattr(k, op), k.ctype
    gx = pool.empty(shape, dtype)
    status = kernel(
        gx.size,
        _POOLED.get(id(gx)) or _from_buffer(ctype, gx),
        _POOLED.get(id(gy)) or _from_buffer(ctype, gy),
        _POOLED.get(id(saved)) or _from_buffer(ctype, saved),
        *params,
    )
    if status != 0:
        raise _kernel_failed(kernel, status)
    return gx


class CBackend(NumpyBackend):
    """NumPy reference backend with the activation, normalization, clipping,
    optimizer and statistics kernels in C."""

    name = "c"

    def __init__(self) -> None:
        forced = os.environ.get("MINIGRAD_FORCE_ISA")
        if forced is not None and forced not in _SIMD_LEVELS:
            warnings.warn(
                f"MINIGRAD_FORCE_ISA={forced!r} is not one of {', '.join(_SIMD_LEVELS)}; "
                f"ignoring it (running {ffi.string(lib.mg_simd_name()).decode()})",
                RuntimeWarning,
                stacklevel=2,
            )

    # -- run time -------------------------------------------------------------
    def set_num_threads(self, n: int) -> None:
        lib.mg_set_num_threads(int(n))

    def build_info(self) -> dict:
        features = lib.mg_cpu_features()
        return {
            "compiler_flags": ffi.string(lib.mg_build_flags()).decode(),
            "openmp": bool(lib.mg_has_openmp()),
            "simd_level": ffi.string(lib.mg_simd_name()).decode(),
            "cpu_supports": [name for name, bit in _CPU_FEATURES if features & bit],
            # times the kernels went single-threaded for a while because a
            # worker thread started late (the machine was busy)
            "thread_backoffs": int(lib.mg_thread_backoffs()),
        }

    # -- matrix product ---------------------------------------------------------
    def gemm(self, a, b, *, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, out=None, bias=None):
        g = _GEMM.get(a.dtype) if type(a) is np.ndarray and type(b) is np.ndarray else None
        if g is None or b.dtype != a.dtype or a.ndim != 2 or b.ndim != 2:
            return super().gemm(
                a, b, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta, out=out, bias=bias
            )
        m, k = a.shape[::-1] if trans_a else a.shape
        k_b, n = b.shape[::-1] if trans_b else b.shape
        if k != k_b:
            raise ValueError(
                f"gemm: op(a) is {m}x{k} but op(b) is {k_b}x{n} "
                f"(a {a.shape}, trans_a={bool(trans_a)}; b {b.shape}, trans_b={bool(trans_b)}); "
                "the inner dimensions must match"
            )
        small = m * n * k < _GEMM_C_MIN_MACS
        if small and out is None and bias is None and alpha == 1:
            # Small products: a call is mostly fixed cost, and np.matmul's is
            # lower than packing panels; this is the plain product, checked first.
            return np.matmul(a.T if trans_a else a, b.T if trans_b else b)
        if bias is not None:
            bias = np.asarray(bias)
            if bias.shape != (n,):
                raise ValueError(f"gemm: bias must have shape ({n},), got {bias.shape}")
        if out is not None:
            if type(out) is not np.ndarray or out.shape != (m, n) or out.dtype != a.dtype:
                raise ValueError(
                    f"gemm: out must be a {a.dtype} array of shape ({m}, {n}), got "
                    f"{getattr(out, 'dtype', type(out).__name__)} "
                    f"{getattr(out, 'shape', '')}"
                )
            if not out.flags.writeable:
                raise ValueError("gemm: out is read-only")
            if bias is not None and np.may_share_memory(out, bias):
                bias = bias.copy()
        if small:
            return super().gemm(
                a, b, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta, out=out, bias=bias
            )
        if out is not None and (
            not (out.flags.c_contiguous and out.flags.aligned)
            or np.may_share_memory(out, a)
            or np.may_share_memory(out, b)
        ):
            # An output C would have to write through a copy (strided, or
            # overlapping an input) is NumPy's.
            return super().gemm(
                a, b, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta, out=out, bias=bias
            )
        # The common case inline: both operands C-contiguous.
        flags = a.flags
        if flags.c_contiguous and flags.aligned:
            pa, lda, ta = ffi.from_buffer(g.ctype, a), a.shape[1] or 1, trans_a
        else:
            pa, lda, ta, a = _gemm_operand(g, a, trans_a)
        flags = b.flags
        if flags.c_contiguous and flags.aligned:
            pb, ldb, tb = ffi.from_buffer(g.ctype, b), b.shape[1] or 1, trans_b
        else:
            pb, ldb, tb, b = _gemm_operand(g, b, trans_b)
        if out is None:
            out = pool.empty((m, n), a.dtype)
            beta = 0.0
        if bias is None:
            pbias = ffi.NULL
        else:
            if bias.dtype != a.dtype or not (bias.flags.c_contiguous and bias.flags.aligned):
                bias = np.array(bias, dtype=a.dtype, order="C")
            pbias = ffi.from_buffer(g.ctype, bias)
        status = g.kernel(
            ta,
            tb,
            m,
            n,
            k,
            alpha,
            pa,
            lda,
            pb,
            ldb,
            beta,
            ffi.from_buffer(g.ctype, out),
            n or 1,
            pbias,
        )
        if status != 0:
            raise _kernel_failed(g.kernel, status)
        return out

    # -- elementwise activations ------------------------------------------------
    def relu_forward(self, x):
        y = _unary("relu_forward", x)
        return super().relu_forward(x) if y is None else y

    def relu_backward(self, gy, y):
        gx = _binary("relu_backward", gy, "y", y)
        return super().relu_backward(gy, y) if gx is None else gx

    def leaky_relu_forward(self, x, negative_slope):
        y = _unary("leaky_relu_forward", x, float(negative_slope))
        return super().leaky_relu_forward(x, negative_slope) if y is None else y

    def leaky_relu_backward(self, gy, x, negative_slope):
        gx = _binary("leaky_relu_backward", gy, "x", x, float(negative_slope))
        return super().leaky_relu_backward(gy, x, negative_slope) if gx is None else gx

    def sigmoid_forward(self, x):
        y = _unary("sigmoid_forward", x)
        return super().sigmoid_forward(x) if y is None else y

    def sigmoid_backward(self, gy, y):
        gx = _binary("sigmoid_backward", gy, "y", y)
        return super().sigmoid_backward(gy, y) if gx is None else gx

    def tanh_forward(self, x):
        y = _unary("tanh_forward", x)
        return super().tanh_forward(x) if y is None else y

    def tanh_backward(self, gy, y):
        gx = _binary("tanh_backward", gy, "y", y)
        return super().tanh_backward(gy, y) if gx is None else gx

    def gelu_forward(self, x, approximate="none"):
        y = _unary("gelu_forward", x, _gelu_form("gelu_forward", approximate))
        return super().gelu_forward(x, approximate) if y is None else y

    def gelu_backward(self, gy, x, approximate="none"):
        gx = _binary("gelu_backward", gy, "x", x, _gelu_form("gelu_backward", approximate))
        return super().gelu_backward(gy, x, approximate) if gx is None else gx

    # -- normalization ----------------------------------------------------------
    # Each call checks and converts its per-channel (or per-row) arrays in one
    # loop, _vector_ptrs; a ``False`` or None from it means the reference's path.
    def batch_norm_forward_train(
        self, x, weight, bias, eps, running_mean=None, running_var=None, momentum=0.1
    ):
        op = "batch_norm_forward_train"
        dtype = _matrix_dtype(x)
        ptrs = dtype is not None and _vector_ptrs(
            op,
            dtype,
            x.shape[1],
            (("weight", weight), ("bias", bias)),
            (("running_mean", running_mean), ("running_var", running_var)),
        )
        if not ptrs:
            return super().batch_norm_forward_train(
                x, weight, bias, eps, running_mean, running_var, momentum
            )
        n, c = x.shape
        ctype = _CTYPES[dtype]
        x = _c_layout(x)
        y = pool.empty((n, c), dtype)
        mean = np.empty(c, dtype)
        invstd = np.empty(c, dtype)
        w, b, rm, rv = ptrs
        kernel = _FUSED[dtype][op]
        status = kernel(
            n,
            c,
            _from_buffer(ctype, y),
            _from_buffer(ctype, mean),
            _from_buffer(ctype, invstd),
            _from_buffer(ctype, x),
            w,
            b,
            float(eps),
            rm,
            rv,
            float(momentum),
        )
        if status != 0:
            raise _kernel_failed(kernel, status)
        return y, mean, invstd

    def batch_norm_forward_eval(self, x, running_mean, running_var, weight, bias, eps):
        op = "batch_norm_forward_eval"
        dtype = _matrix_dtype(x)
        ptrs = (
            dtype is not None
            and running_mean is not None
            and running_var is not None
            and _vector_ptrs(
                op,
                dtype,
                x.shape[1],
                (
                    ("running_mean", running_mean),
                    ("running_var", running_var),
                    ("weight", weight),
                    ("bias", bias),
                ),
            )
        )
        if not ptrs:
            return super().batch_norm_forward_eval(x, running_mean, running_var, weight, bias, eps)
        n, c = x.shape
        ctype = _CTYPES[dtype]
        x = _c_layout(x)
        y = pool.empty((n, c), dtype)
        kernel = _FUSED[dtype][op]
        status = kernel(n, c, _from_buffer(ctype, y), _from_buffer(ctype, x), *ptrs, float(eps))
        if status != 0:
            raise _kernel_failed(kernel, status)
        return y

    def batch_norm_backward(self, gy, x, mean, invstd, weight):
        return self._norm_backward("batch_norm_backward", gy, x, mean, invstd, weight, 1)

    def layer_norm_forward(self, x, weight, bias, eps):
        op = "layer_norm_forward"
        dtype = _matrix_dtype(x)
        ptrs = dtype is not None and _vector_ptrs(
            op, dtype, x.shape[1], (("weight", weight), ("bias", bias))
        )
        if not ptrs:
            return super().layer_norm_forward(x, weight, bias, eps)
        r, d = x.shape
        ctype = _CTYPES[dtype]
        x = _c_layout(x)
        y = pool.empty((r, d), dtype)
        mean = np.empty(r, dtype)
        invstd = np.empty(r, dtype)
        kernel = _FUSED[dtype][op]
        status = kernel(
            r,
            d,
            _from_buffer(ctype, y),
            _from_buffer(ctype, mean),
            _from_buffer(ctype, invstd),
            _from_buffer(ctype, x),
            *ptrs,
            float(eps),
        )
        if status != 0:
            raise _kernel_failed(kernel, status)
        return y, mean, invstd

    def layer_norm_backward(self, gy, x, mean, invstd, weight):
        return self._norm_backward("layer_norm_backward", gy, x, mean, invstd, weight, 0)

    def _norm_backward(self, op, gy, x, mean, invstd, weight, stats_axis):
        """batch_norm_backward and layer_norm_backward: mean and invstd have an
        entry per index of x's ``stats_axis`` (1, channels, for batch norm; 0,
        rows, for layer norm), weight one per column."""
        if type(gy) is np.ndarray and type(x) is np.ndarray and gy.shape == x.shape:
            dtype = _matrix_dtype(x) if gy.dtype == x.dtype else None
        else:
            _check_same_shape(op, gy, "x", x)  # raises unless they have one shape
            dtype = None
        ptrs = dtype is not None and _vector_ptrs(
            op, dtype, x.shape[stats_axis], (("mean", mean), ("invstd", invstd))
        )
        params_len = x.shape[1]
        weight_ptr = ptrs and _vector_ptrs(op, dtype, params_len, (("weight", weight),))
        if not weight_ptr:
            return getattr(super(), op)(gy, x, mean, invstd, weight)
        ctype = _CTYPES[dtype]
        gy, x = _c_layout(gy), _c_layout(x)
        gx = pool.empty(x.shape, dtype)
        gweight = gbias = None
        if weight is not None:
            gweight = np.empty(params_len, dtype)
            gbias = np.empty(params_len, dtype)
        kernel = _FUSED[dtype][op]
        status = kernel(
            x.shape[0],
            x.shape[1],
            _from_buffer(ctype, gx),
            _ptr_out(ctype, gweight),
            _ptr_out(ctype, gbias),
            _from_buffer(ctype, gy),
            _from_buffer(ctype, x),
            *ptrs,
            *weight_ptr,
        )
        if status != 0:
            raise _kernel_failed(kernel, status)
        return gx, gweight, gbias

    # -- gradient clipping ----------------------------------------------------
    def sum_squares(self, arrays):
        groups = _by_dtype(arrays)
        if groups is None:
            return super().sum_squares(arrays)
        return float(sum(_list_reduce("sum_squares", d, group) for d, group in groups.items()))

    def max_abs(self, arrays):
        groups = _by_dtype(arrays)
        if groups is None:
            return super().max_abs(arrays)
        per_dtype = [_list_reduce("max_abs", d, group) for d, group in groups.items()]
        # np.max keeps a NaN, which Python's max() would not
        return float(np.max(per_dtype)) if per_dtype else 0.0

    def scale_(self, x, factor):
        if not _in_place_target(x):
            return super().scale_(x, factor)
        kernel = _FUSED[x.dtype]["scale"]
        _check_status(kernel, kernel(x.size, ffi.from_buffer(_CTYPES[x.dtype], x), float(factor)))
        return None

    def clamp_(self, x, lo, hi):
        lo, hi = float(lo), float(hi)
        # NaN bounds make NumPy's clip all NaN; the kernel's compares would not
        if not _in_place_target(x) or lo != lo or hi != hi:
            return super().clamp_(x, lo, hi)
        kernel = _FUSED[x.dtype]["clamp"]
        _check_status(kernel, kernel(x.size, ffi.from_buffer(_CTYPES[x.dtype], x), lo, hi))
        return None

    def row_norms(self, x):
        dtype = _matrix_dtype(x)
        if dtype is None:
            return super().row_norms(x)
        x = _c_layout(x)
        out = np.empty(x.shape[0], dtype)
        ctype = _CTYPES[dtype]
        kernel = _FUSED[dtype]["row_norms"]
        status = kernel(
            x.shape[0], x.shape[1], ffi.from_buffer(ctype, out), ffi.from_buffer(ctype, x)
        )
        _check_status(kernel, status)
        return out

    def adaptive_clip_(self, grad, param, clipping, eps):
        op = "adaptive_clip_"
        if _shape(grad) != _shape(param):
            raise ValueError(
                f"{op}: grad has shape {_shape(grad)} but param has shape {_shape(param)}; "
                "they must match"
            )
        clipping, eps = float(clipping), float(eps)
        if (
            not _in_place_target(grad)
            or grad.ndim != 2
            or not _same_array_kind(grad, param)
            or eps != eps
        ):
            return super().adaptive_clip_(grad, param, clipping, eps)
        ctype = _CTYPES[grad.dtype]
        param = _c_layout(param)
        kernel = _FUSED[grad.dtype]["adaptive_clip"]
        status = kernel(
            grad.shape[0],
            grad.shape[1],
            ffi.from_buffer(ctype, grad),
            ffi.from_buffer(ctype, param),
            clipping,
            eps,
        )
        _check_status(kernel, status)
        return None

    # -- optimizer updates ------------------------------------------------------
    def sgd_step_(
        self,
        param,
        grad,
        momentum_buffer,
        *,
        lr,
        momentum,
        dampening,
        weight_decay,
        nesterov,
        first_step,
    ):
        momentum = float(momentum)
        state = [momentum_buffer] if momentum != 0.0 else []
        if not (
            _in_place_target(param)
            and _same_array_kind(param, grad, *state)
            and all(_in_place_target(a) for a in state)
        ):
            return super().sgd_step_(
                param,
                grad,
                momentum_buffer,
                lr=lr,
                momentum=momentum,
                dampening=dampening,
                weight_decay=weight_decay,
                nesterov=nesterov,
                first_step=first_step,
            )
        ctype = _CTYPES[param.dtype]
        grad = _c_layout(grad)
        kernel = _FUSED[param.dtype]["sgd_step"]
        status = kernel(
            param.size,
            ffi.from_buffer(ctype, param),
            ffi.from_buffer(ctype, momentum_buffer) if state else ffi.NULL,
            ffi.from_buffer(ctype, grad),
            float(lr),
            momentum,
            float(dampening),
            float(weight_decay),
            int(bool(nesterov)),
            int(bool(first_step)),
        )
        _check_status(kernel, status)
        return None

    def adam_step_(
        self,
        param,
        grad,
        exp_avg,
        exp_avg_sq,
        *,
        step,
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
        decoupled,
    ):
        if not (
            _in_place_target(param)
            and _in_place_target(exp_avg)
            and _in_place_target(exp_avg_sq)
            and _same_array_kind(param, grad, exp_avg, exp_avg_sq)
        ):
            return super().adam_step_(
                param,
                grad,
                exp_avg,
                exp_avg_sq,
                step=step,
                lr=lr,
                beta1=beta1,
                beta2=beta2,
                eps=eps,
                weight_decay=weight_decay,
                decoupled=decoupled,
            )
        ctype = _CTYPES[param.dtype]
        grad = _c_layout(grad)
        kernel = _FUSED[param.dtype]["adam_step"]
        status = kernel(
            param.size,
            ffi.from_buffer(ctype, param),
            ffi.from_buffer(ctype, exp_avg),
            ffi.from_buffer(ctype, exp_avg_sq),
            ffi.from_buffer(ctype, grad),
            int(step),
            float(lr),
            float(beta1),
            float(beta2),
            float(eps),
            float(weight_decay),
            int(bool(decoupled)),
        )
        _check_status(kernel, status)
        return None

    def sgd_step_multi_(
        self,
        params,
        grads,
        momentum_buffers,
        *,
        first_steps,
        lr,
        momentum,
        dampening,
        weight_decay,
        nesterov,
    ):
        op = "sgd_step_multi_"
        momentum = float(momentum)
        arrays = {"grads": grads}
        if momentum != 0.0:
            if momentum_buffers is None:
                raise ValueError(f"{op}: momentum_buffers is None but momentum is {momentum}")
            arrays["momentum_buffers"] = momentum_buffers
        check_update_lists(op, params, arrays, {"first_steps": first_steps})
        buffers = arrays.get("momentum_buffers", [])
        dtype = _group_dtype(params, buffers)
        if dtype is None:
            return super().sgd_step_multi_(
                params,
                grads,
                momentum_buffers,
                first_steps=first_steps,
                lr=lr,
                momentum=momentum,
                dampening=dampening,
                weight_decay=weight_decay,
                nesterov=nesterov,
            )
        grads = [_c_layout(g) for g in grads]  # read only: a copy will do
        kernel = _FUSED[dtype]["sgd_step_multi"]
        status = kernel(
            len(params),
            _pointer_array(dtype, params),
            _pointer_array(dtype, buffers) if buffers else ffi.NULL,
            _pointer_array(dtype, grads),
            ffi.new("size_t[]", [p.size for p in params]),
            ffi.new("int[]", [bool(f) for f in first_steps]),
            float(lr),
            momentum,
            float(dampening),
            float(weight_decay),
            int(bool(nesterov)),
        )
        _check_status(kernel, status)
        return None

    def adam_step_multi_(
        self,
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        *,
        steps,
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
        decoupled,
    ):
        arrays = {"grads": grads, "exp_avgs": exp_avgs, "exp_avg_sqs": exp_avg_sqs}
        check_update_lists("adam_step_multi_", params, arrays, {"steps": steps})
        dtype = _group_dtype(params, exp_avgs, exp_avg_sqs)
        if dtype is None:
            return super().adam_step_multi_(
                params,
                grads,
                exp_avgs,
                exp_avg_sqs,
                steps=steps,
                lr=lr,
                beta1=beta1,
                beta2=beta2,
                eps=eps,
                weight_decay=weight_decay,
                decoupled=decoupled,
            )
        grads = [_c_layout(g) for g in grads]  # read only: a copy will do
        kernel = _FUSED[dtype]["adam_step_multi"]
        status = kernel(
            len(params),
            _pointer_array(dtype, params),
            _pointer_array(dtype, exp_avgs),
            _pointer_array(dtype, exp_avg_sqs),
            _pointer_array(dtype, grads),
            ffi.new("size_t[]", [p.size for p in params]),
            ffi.new("long long[]", [int(t) for t in steps]),
            float(lr),
            float(beta1),
            float(beta2),
            float(eps),
            float(weight_decay),
            int(bool(decoupled)),
        )
        _check_status(kernel, status)
        return None

    # -- statistics ---------------------------------------------------------------
    def tensor_stats(self, x, threshold=np.inf, center=0.0):
        if type(x) is not np.ndarray or x.dtype not in _FUSED:
            return super().tensor_stats(x, threshold, center)
        x = _c_layout(x)
        out = ffi.new("mg_tensor_stats *")
        kernel = _FUSED[x.dtype]["tensor_stats"]
        status = kernel(
            x.size, out, ffi.from_buffer(_CTYPES[x.dtype], x), float(threshold), float(center)
        )
        _check_status(kernel, status)
        return TensorStats(
            int(out.count),
            float(out.sum),
            float(out.sumsq),
            float(out.max_abs),
            int(out.n_zero),
            int(out.n_above),
            int(out.n_nan),
            int(out.n_inf),
        )

    def unit_stats(self, out, x, units, threshold=np.inf, center=0.0):
        # Called once per layer per training step: kept to the bare path.
        check_unit_stats_args(out, x, units)
        kernels = _FUSED.get(x.dtype)
        if kernels is None:
            return super().unit_stats(out, x, units, threshold, center)
        x = _c_layout(x)
        dead = ffi.new(_COUNT_PTR)
        kernel = kernels["unit_stats"]
        status = kernel(
            x.size // units if units else 0,
            units,
            ffi.from_buffer(_STATS_ARRAY, out, require_writable=True),
            dead,
            ffi.from_buffer(_CTYPES[x.dtype], x),
            threshold,
            center,
        )
        if status:
            raise _kernel_failed(kernel, status)
        return dead[0]

    def unit_stats_multi(self, out, dead, arrays, units, thresholds, centers):
        check_unit_stats_multi_args(out, dead, arrays, units, thresholds, centers)
        buffers = _buffers(arrays)
        if buffers is None:
            return super().unit_stats_multi(out, dead, arrays, units, thresholds, centers)
        dtype, bufs, lens, _, views = buffers
        kernel = _FUSED[dtype]["unit_stats_multi"]
        status = kernel(
            len(arrays),
            _ptr_out(_STATS_ARRAY, out),
            _ptr_out(_COUNTS, dead),
            bufs,
            lens,
            ffi.new(_SIZES, units),
            _ptr(_DOUBLES, thresholds),
            _ptr(_DOUBLES, centers),
        )
        _check_status(kernel, status)
        del views  # referenced until here, while C read the buffers

    def histogram_stats(self, out, hist, arrays):
        check_histogram_args(out, hist, arrays)
        buffers = _buffers(arrays)
        if buffers is None:
            return super().histogram_stats(out, hist, arrays)
        dtype, bufs, lens, _, views = buffers
        kernel = _FUSED[dtype]["histogram_stats"]
        status = kernel(
            len(arrays),
            _ptr_out(_STATS_ARRAY, out),
            _ptr_out(_COUNTS, hist),
            hist.shape[1],
            bufs,
            lens,
        )
        _check_status(kernel, status)
        del views  # referenced until here, while C read the buffers

    def change_stats(self, sums, change, snapshot, arrays, copy):
        check_change_args(sums, change, snapshot, arrays, copy)
        buffers = _buffers(arrays)
        if buffers is None:
            return super().change_stats(sums, change, snapshot, arrays, copy)
        dtype, bufs, lens, _, views = buffers
        snap = _ptr_out(_CTYPES[dtype], snapshot if change is not None or copy else None)
        sums_ptr, change_ptr = _ptr_out(_DOUBLES, sums), _ptr_out(_DOUBLES, change)
        kernel = _FUSED[dtype]["change_stats"]
        status = kernel(len(arrays), sums_ptr, change_ptr, snap, bufs, lens, int(bool(copy)))
        _check_status(kernel, status)
        del views  # referenced until here, while C read the buffers

    def stats_rows(self, grad, hist, weight, change, act, dead, thresholds, centers):
        return _CStatsRows(self, grad, hist, weight, change, act, dead, thresholds, centers)
