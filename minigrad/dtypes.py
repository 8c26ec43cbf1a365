"""The dtypes a Tensor may hold, and how Python data becomes an array.

minigrad's dtypes are NumPy dtype objects, so ``t.dtype == mg.float32`` and
``t.dtype == np.float32`` both hold. Floats default to float32 as in PyTorch;
integers are int64 (targets, indices); bool is for masks. Anything else
(float16, complex, strings, objects) is refused at the door with a TypeError,
so no kernel ever sees it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int64 = np.dtype(np.int64)
bool_ = np.dtype(np.bool_)

SUPPORTED = (float32, float64, int64, bool_)


def as_dtype(dtype: Any, op: str = "tensor") -> np.dtype:
    """Turn ``mg.float32``, ``np.float64``, ``"float32"``, ``float``... into a supported dtype."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        raise TypeError(
            f"{op}: dtype {dtype!r} is not a dtype; use mg.float32 or mg.float64"
        ) from None
    if resolved == np.dtype(float):
        return float64
    if resolved not in SUPPORTED:
        raise TypeError(
            f"{op}: dtype {resolved} is not supported; use float32, float64, int64 or bool"
        )
    return resolved


def to_array(data: Any, dtype: Any = None, op: str = "tensor", copy: bool = True) -> np.ndarray:
    """An array of a supported dtype holding ``data`` (a copy unless ``copy=False``)."""
    from_numpy = isinstance(data, (np.ndarray, np.generic))
    try:
        array = np.array(data, copy=copy) if from_numpy else np.asarray(data)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"{op}: cannot make a tensor from {type(data).__name__}: {exc}") from None
    if dtype is not None:
        wanted = as_dtype(dtype, op)
    elif array.dtype.kind == "f":
        if array.dtype not in (float32, float64):
            raise TypeError(
                f"{op}: dtype {array.dtype} is not supported; convert the data to "
                "float32 or float64 first (e.g. a.astype(np.float32))"
            )
        # Python floats default to float32; arrays keep their precision.
        wanted = array.dtype if from_numpy else float32
    elif array.dtype.kind in "iu":
        wanted = int64
    elif array.dtype.kind == "b":
        wanted = bool_
    else:
        raise TypeError(
            f"{op}: data of dtype {array.dtype} is not supported; use numbers "
            "(float32, float64, int64 or bool)"
        )
    if array.dtype != wanted:
        array = array.astype(wanted)
    return array
