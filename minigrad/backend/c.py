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

import os
import warnings
from typing import NamedTuple

import numpy as np

from minigrad._C import ffi, lib

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


def _kernels(x) -> _Kernels | None:
    """The kernels for x's dtype, or None if C cannot take x.

    Only plain ndarrays go to C: a subclass (a masked array, say) may mean
    more than its buffer says, and NumPy's own ufuncs know how to handle it.
    """
    return _KERNELS.get(x.dtype) if type(x) is np.ndarray else None


def _kernels_for_pair(gy, saved) -> _Kernels | None:
    """The kernels for a backward's two arrays, or None unless both can go to C."""
    if type(saved) is not np.ndarray or getattr(gy, "dtype", None) != saved.dtype:
        return None
    return _kernels(gy)


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


def _kernel_failed(kernel, status: int) -> RuntimeError:
    return RuntimeError(f"C kernel {kernel.__name__} failed with status {status}")


def _run_unary(k: _Kernels, kernel, x: np.ndarray, *params) -> np.ndarray:
    """``y = kernel(x, *params)`` elementwise, into a new array shaped like x."""
    x = _c_layout(x)
    y = np.empty_like(x, order="C")
    status = kernel(x.size, ffi.from_buffer(k.ctype, y), ffi.from_buffer(k.ctype, x), *params)
    if status != 0:
        raise _kernel_failed(kernel, status)
    return y


def _run_binary(k: _Kernels, kernel, gy: np.ndarray, saved: np.ndarray, *params) -> np.ndarray:
    """``gx = kernel(gy, saved, *params)`` elementwise; gy and saved have one shape."""
    gy = _c_layout(gy)
    saved = _c_layout(saved)
    gx = np.empty_like(gy, order="C")
    status = kernel(
        gy.size,
        ffi.from_buffer(k.ctype, gx),
        ffi.from_buffer(k.ctype, gy),
        ffi.from_buffer(k.ctype, saved),
        *params,
    )
    if status != 0:
        raise _kernel_failed(kernel, status)
    return gx


class CBackend(NumpyBackend):
    """NumPy reference backend with the activation kernels in C."""

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
        if m * n * k < _GEMM_C_MIN_MACS:
            # Small products: a call is mostly fixed cost, and np.matmul's is
            # lower than packing panels; the plain product skips even the
            # reference's keyword handling.
            if out is None and bias is None and alpha == 1:
                return np.matmul(a.T if trans_a else a, b.T if trans_b else b)
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
            out = np.empty((m, n), dtype=a.dtype)
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
        k = _kernels(x)
        if k is None:
            return super().relu_forward(x)
        return _run_unary(k, k.relu_forward, x)

    def relu_backward(self, gy, y):
        _check_same_shape("relu_backward", gy, "y", y)
        k = _kernels_for_pair(gy, y)
        if k is None:
            return super().relu_backward(gy, y)
        return _run_binary(k, k.relu_backward, gy, y)

    def leaky_relu_forward(self, x, negative_slope):
        k = _kernels(x)
        if k is None:
            return super().leaky_relu_forward(x, negative_slope)
        return _run_unary(k, k.leaky_relu_forward, x, float(negative_slope))

    def leaky_relu_backward(self, gy, x, negative_slope):
        _check_same_shape("leaky_relu_backward", gy, "x", x)
        k = _kernels_for_pair(gy, x)
        if k is None:
            return super().leaky_relu_backward(gy, x, negative_slope)
        return _run_binary(k, k.leaky_relu_backward, gy, x, float(negative_slope))

    def sigmoid_forward(self, x):
        k = _kernels(x)
        if k is None:
            return super().sigmoid_forward(x)
        return _run_unary(k, k.sigmoid_forward, x)

    def sigmoid_backward(self, gy, y):
        _check_same_shape("sigmoid_backward", gy, "y", y)
        k = _kernels_for_pair(gy, y)
        if k is None:
            return super().sigmoid_backward(gy, y)
        return _run_binary(k, k.sigmoid_backward, gy, y)

    def tanh_forward(self, x):
        k = _kernels(x)
        if k is None:
            return super().tanh_forward(x)
        return _run_unary(k, k.tanh_forward, x)

    def tanh_backward(self, gy, y):
        _check_same_shape("tanh_backward", gy, "y", y)
        k = _kernels_for_pair(gy, y)
        if k is None:
            return super().tanh_backward(gy, y)
        return _run_binary(k, k.tanh_backward, gy, y)

    def gelu_forward(self, x, approximate="none"):
        form = _gelu_form("gelu_forward", approximate)
        k = _kernels(x)
        if k is None:
            return super().gelu_forward(x, approximate)
        return _run_unary(k, k.gelu_forward, x, form)

    def gelu_backward(self, gy, x, approximate="none"):
        form = _gelu_form("gelu_backward", approximate)
        _check_same_shape("gelu_backward", gy, "x", x)
        k = _kernels_for_pair(gy, x)
        if k is None:
            return super().gelu_backward(gy, x, approximate)
        return _run_binary(k, k.gelu_backward, gy, x, form)
