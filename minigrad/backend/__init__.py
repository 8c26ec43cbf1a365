"""Backend selection: which implementation of the kernel interface runs.

``active`` is the backend every op calls. It is the C backend when the
extension was built, else the NumPy reference (with one warning). The choice
can be made with ``set_backend`` or the ``MINIGRAD_BACKEND`` environment
variable; the thread count with ``set_num_threads`` or ``MINIGRAD_NUM_THREADS``.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from .base import Backend, TensorStats
from .numpy import NumpyBackend

__all__ = [
    "Backend",
    "TensorStats",
    "active",
    "backend_info",
    "get_backend",
    "get_num_threads",
    "set_backend",
    "set_num_threads",
]

_numpy_backend = NumpyBackend()
_c_backend: Backend | None = None
_c_import_error: str | None = None
try:
    from .c import CBackend

    _c_backend = CBackend()
except ImportError as exc:  # the extension was not built or cannot load
    _c_import_error = f"{type(exc).__name__}: {exc}"

_BACKENDS = {"numpy": _numpy_backend}
if _c_backend is not None:
    _BACKENDS["c"] = _c_backend

active: Backend = _numpy_backend
_num_threads = 1


def get_backend() -> str:
    """Name of the backend ops run on: ``"c"`` or ``"numpy"``."""
    return active.name


def set_backend(name: str) -> None:
    """Run every op on backend ``name`` (``"c"`` or ``"numpy"``)."""
    global active
    if name not in ("c", "numpy"):
        raise ValueError(f"set_backend: name must be 'c' or 'numpy', got {name!r}")
    if name == "c" and _c_backend is None:
        raise RuntimeError(
            "set_backend: the C extension is not available "
            f"({_c_import_error}); reinstall with `pip install -e .` and a C compiler"
        )
    active = _BACKENDS[name]


def get_num_threads() -> int:
    """Threads the C kernels may use."""
    return _num_threads


def set_num_threads(n: int) -> None:
    """Let the C kernels use ``n`` threads (n >= 1). Call it while no op runs."""
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"set_num_threads: n must be an integer >= 1, got {n!r}")
    _num_threads = int(n)
    if _c_backend is not None:
        _c_backend.set_num_threads(_num_threads)


def backend_info() -> dict:
    """What runs: backend, C build flags, SIMD level picked at run time, threads."""
    info = {
        "backend": active.name,
        "c_available": _c_backend is not None,
        "num_threads": _num_threads,
        "numpy": np.__version__,
    }
    if _c_backend is not None:
        info.update(_c_backend.build_info())
    else:
        info["c_import_error"] = _c_import_error
    return info


def _default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _configure_from_environment() -> None:
    threads = os.environ.get("MINIGRAD_NUM_THREADS")
    try:
        set_num_threads(int(threads) if threads else _default_threads())
    except ValueError:
        warnings.warn(
            f"MINIGRAD_NUM_THREADS={threads!r} is not an integer >= 1; using 1 thread",
            stacklevel=2,
        )
        set_num_threads(1)

    wanted = os.environ.get("MINIGRAD_BACKEND", "").strip().lower()
    if wanted not in ("", "c", "numpy"):
        warnings.warn(
            f"MINIGRAD_BACKEND={wanted!r} is not 'c' or 'numpy'; ignoring it", stacklevel=2
        )
        wanted = ""
    if wanted == "numpy":
        set_backend("numpy")
    elif _c_backend is not None:
        set_backend("c")
    else:
        warnings.warn(
            "minigrad: the C extension could not be loaded "
            f"({_c_import_error}); running on the NumPy backend. "
            "Reinstall with `pip install -e .` to build it.",
            RuntimeWarning,
            stacklevel=2,
        )


_configure_from_environment()
