"""The one random generator behind init, dropout and rand/randn.

``manual_seed(s)`` replaces it with a freshly seeded one, so a seeded program
draws the same numbers every run.
"""

from __future__ import annotations

import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed: int) -> None:
    global _generator
    _generator = np.random.default_rng(seed)


def generator() -> np.random.Generator:
    """The current global generator (look it up on every use: manual_seed replaces it)."""
    return _generator
