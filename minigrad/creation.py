"""Ways to make a tensor: from data, from NumPy, filled, random."""

from __future__ import annotations

from typing import Any

import numpy as np

from .dtypes import as_dtype, float32, to_array
from .random import generator
from .tensor import Tensor

Shape = Any  # an int, several ints, or one tuple of ints, as PyTorch takes them


def _shape(size: tuple, op: str) -> tuple[int, ...]:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    if not all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in size
    ):
        raise ValueError(f"{op}: size must be non-negative ints, got {size}")
    return tuple(int(s) for s in size)


def _float_dtype(dtype: Any, op: str) -> np.dtype:
    return float32 if dtype is None else as_dtype(dtype, op)


def _made(array: np.ndarray, requires_grad: bool) -> Tensor:
    t = Tensor._wrap(array)
    if requires_grad:
        t.requires_grad = True
    return t


def tensor(data: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of ``data``. Python floats become float32."""
    return Tensor(data, dtype=dtype, requires_grad=requires_grad)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing memory with ``array`` (float32, float64, int64 or bool)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(array).__name__}")
    as_dtype(array.dtype, "from_numpy")
    return Tensor._wrap(to_array(array, op="from_numpy", copy=False))


def zeros(*size: Shape, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return _made(np.zeros(_shape(size, "zeros"), _float_dtype(dtype, "zeros")), requires_grad)


def ones(*size: Shape, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return _made(np.ones(_shape(size, "ones"), _float_dtype(dtype, "ones")), requires_grad)


def full(size: Shape, fill_value: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    if dtype is None:
        dtype = to_array(fill_value, op="full").dtype
    return _made(
        np.full(_shape((size,), "full"), fill_value, as_dtype(dtype, "full")), requires_grad
    )


def zeros_like(t: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return _made(
        np.zeros(t.shape, t.dtype if dtype is None else as_dtype(dtype, "zeros_like")),
        requires_grad,
    )


def ones_like(t: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return _made(
        np.ones(t.shape, t.dtype if dtype is None else as_dtype(dtype, "ones_like")), requires_grad
    )


def arange(start: float, end: float | None = None, step: float = 1, dtype: Any = None) -> Tensor:
    if end is None:
        start, end = 0, start
    return Tensor(np.arange(start, end, step), dtype=dtype)


def rand(*size: Shape, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Uniform on [0, 1), from the global generator."""
    dtype = _float_dtype(dtype, "rand")
    return _made(generator().random(_shape(size, "rand"), dtype=dtype), requires_grad)


def randn(*size: Shape, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Standard normal, from the global generator."""
    dtype = _float_dtype(dtype, "randn")
    return _made(generator().standard_normal(_shape(size, "randn"), dtype=dtype), requires_grad)
