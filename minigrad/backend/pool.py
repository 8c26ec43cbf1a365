"""Large kernel outputs come from a pool of arrays kept alive across steps.

A fresh 4 KiB page costs microseconds to fault in, and glibc's malloc hands
blocks of 128 KiB and more back to the operating system when they are freed, so
a loop that makes the same large temporaries every step would pay for every
page of them every step. The pool keeps those arrays instead. One is free for
reuse when nothing but the pool refers to it: a Tensor wrapping it, a view of
it, a value saved for backward, a name in user code, each holds a reference,
and the reference count says so. Process-wide malloc settings stay untouched.

The pool also keeps, for each of its arrays, a C pointer to the array's data
when the C backend has set ``make_pointer``: it is made once, when the array
is, and forgotten when the array is, so the backend can pass it to C for as
long as the pool holds the array instead of asking NumPy's buffer protocol
for it on every call.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from math import prod
from typing import Any

import numpy as np

# Below this an allocation stays on malloc's heap and is cheap already.
MIN_BYTES = 1 << 17


def _refs_of_unused() -> int:
    """The reference count an array has inside ``ArrayPool.empty``'s loop when
    only the pool's list holds it, measured with the same loop, so that the
    interpreter's own counting conventions do not matter."""
    arrays = [np.empty(1)]
    for a in arrays:
        return sys.getrefcount(a)
    raise AssertionError("unreachable")


class ArrayPool:
    """Arrays of one (shape, dtype) handed out again once nobody uses them."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._arrays: dict[tuple, list[np.ndarray]] = {}
        # id of every array the pool holds -> its C pointer, or None. The pool
        # refers to the array, so no other object can have that id meanwhile.
        self.pointers: dict[int, Any] = {}
        self.make_pointer: Callable[[np.ndarray], Any] | None = None
        self._unused = _refs_of_unused()

    def empty(self, shape: tuple, dtype: np.dtype) -> np.ndarray:
        """An uninitialized C-contiguous array, like ``np.empty(shape, dtype)``."""
        # The steady state of a training loop first: a free array of this kind.
        key = (shape, dtype)
        arrays = self._arrays.get(key)
        if arrays is not None:
            for a in arrays:
                if sys.getrefcount(a) <= self._unused:
                    return a
        nbytes = prod(shape) * dtype.itemsize
        if nbytes < MIN_BYTES:
            return np.empty(shape, dtype)
        a = np.empty(shape, dtype)
        if self.bytes + nbytes > self.max_bytes:
            self.release_unused()
            if self.bytes + nbytes > self.max_bytes:
                return a  # over budget: an ordinary array, freed as usual
        # looked up again: release_unused drops the lists it empties
        self._arrays.setdefault(key, []).append(a)
        self.pointers[id(a)] = None if self.make_pointer is None else self.make_pointer(a)
        self.bytes += nbytes
        return a

    def holds(self, array: np.ndarray) -> bool:
        """Whether ``array`` is one of the pool's (the pool's list refers to it)."""
        return id(array) in self.pointers

    def release_unused(self) -> None:
        """Give every array nobody uses back to malloc."""
        for key, arrays in list(self._arrays.items()):
            kept = []
            for a in arrays:
                if sys.getrefcount(a) <= self._unused:
                    del self.pointers[id(a)]
                    self.bytes -= a.nbytes
                else:
                    kept.append(a)
            if kept:
                self._arrays[key] = kept
            else:
                del self._arrays[key]


DEFAULT_MB = 512


def _budget() -> int:
    megabytes = os.environ.get("MINIGRAD_POOL_MB", str(DEFAULT_MB))
    try:
        return max(0, int(megabytes)) << 20
    except ValueError:
        warnings.warn(
            f"MINIGRAD_POOL_MB={megabytes!r} is not a whole number of MiB (0 turns the "
            f"pool off); using {DEFAULT_MB}",
            RuntimeWarning,
            stacklevel=2,
        )
        return DEFAULT_MB << 20


POOL = ArrayPool(_budget())
empty = POOL.empty
