"""The NumPy reference backend (placeholder: being written)."""

from __future__ import annotations

from .base import Backend


class NumpyBackend(Backend):
    name = "numpy"
