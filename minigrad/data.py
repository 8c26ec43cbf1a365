"""Mini-batches, and small data sets to train on.

``DataLoader((X, y), batch_size=32, shuffle=True)`` yields ``(xb, yb)``
tuples of Tensors. ``spirals`` and ``moons`` make the classic 2-D toy
problems with NumPy alone; ``digits`` loads the 8x8 handwritten digits that
ship with scikit-learn (no download). The data sets return NumPy arrays:
features float32, labels int64, the dtypes ``nn.CrossEntropyLoss`` expects.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .dtypes import to_array
from .random import generator
from .tensor import Tensor

__all__ = ["DataLoader", "digits", "moons", "spirals"]


def _check_int(value: Any, name: str, op: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{op}: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _rng(seed: int | None) -> np.random.Generator:
    """A generator of its own for a given seed, so seeding one data set leaves
    minigrad's global generator (init, dropout) untouched; else the global one."""
    return generator() if seed is None else np.random.default_rng(seed)


class DataLoader:
    """Iterate over equally long arrays in mini-batches.

    ``arrays`` is a tuple or list of NumPy arrays or Tensors whose first
    dimension is the sample index, e.g. ``(X, y)``. Each batch is a tuple of new
    Tensors, one per array, that share no memory with the arrays given: float
    arrays keep their dtype, integers become int64, bools stay bool. Tensors
    given are read without their graph.

    With ``shuffle=True`` every epoch (every ``for`` loop over the loader) uses
    a new permutation from minigrad's global generator, so ``mg.manual_seed``
    makes the order reproducible. ``drop_last=True`` drops a final batch smaller
    than ``batch_size``. ``len(loader)`` is the number of batches per epoch.
    """

    def __init__(
        self,
        arrays: Sequence[np.ndarray | Tensor],
        batch_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
    ) -> None:
        if isinstance(arrays, (np.ndarray, Tensor)) or not isinstance(arrays, (tuple, list)):
            raise TypeError(
                f"DataLoader: arrays must be a tuple or list of arrays, e.g. (X, y), got "
                f"{type(arrays).__name__}; wrap a single array as (X,)"
            )
        if not arrays:
            raise ValueError("DataLoader: arrays is empty; pass at least one array, e.g. (X, y)")
        self.batch_size = _check_int(batch_size, "batch_size", "DataLoader", 1)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.arrays: tuple[np.ndarray, ...] = tuple(
            self._as_array(a, i) for i, a in enumerate(arrays)
        )
        lengths = [len(a) for a in self.arrays]
        if len(set(lengths)) > 1:
            raise ValueError(
                f"DataLoader: the arrays must have the same first dimension (one row per "
                f"sample), got lengths {lengths}"
            )
        self.num_samples = lengths[0]

    @staticmethod
    def _as_array(a: Any, i: int) -> np.ndarray:
        if isinstance(a, Tensor):
            a = a._data
        elif not isinstance(a, np.ndarray):
            raise TypeError(
                f"DataLoader: arrays[{i}] is a {type(a).__name__}; expected a NumPy array "
                "or a Tensor"
            )
        if a.ndim == 0:
            raise ValueError(
                f"DataLoader: arrays[{i}] is 0-dimensional; its first dimension must index samples"
            )
        # No copy when the dtype is already right; batches are copied when taken.
        return to_array(a, op=f"DataLoader: arrays[{i}]", copy=False)

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        n = self.num_samples
        order = generator().permutation(n) if self.shuffle else np.arange(n)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            # Indexing with an index array copies, so a batch changed in place
            # never writes into the caller's arrays.
            yield tuple(Tensor._wrap(a[index]) for a in self.arrays)

    def __repr__(self) -> str:
        return (
            f"DataLoader({self.num_samples} samples, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last})"
        )


def spirals(
    n_points: int = 100, n_classes: int = 3, noise: float = 0.2, seed: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The CS231n spiral: ``n_classes`` arms of ``n_points`` points each.

    Not linearly separable, so a linear model stays near chance while a small
    MLP reaches ~99%. ``noise`` is the standard deviation of the angle jitter.
    Returns ``X`` float32 of shape (n_points * n_classes, 2) and ``y`` int64,
    ordered by class. ``seed`` makes it deterministic; without it the points
    come from minigrad's global generator (``mg.manual_seed``).
    """
    n_points = _check_int(n_points, "n_points", "spirals", 1)
    n_classes = _check_int(n_classes, "n_classes", "spirals", 1)
    if not noise >= 0:
        raise ValueError(f"spirals: noise must be >= 0, got {noise!r}")
    rng = _rng(seed)
    X = np.empty((n_points * n_classes, 2), dtype=np.float32)
    y = np.empty(n_points * n_classes, dtype=np.int64)
    radius = np.linspace(0.0, 1.0, n_points)
    for k in range(n_classes):
        rows = slice(k * n_points, (k + 1) * n_points)
        # Each arm turns through 4 radians, starting where the previous one began.
        theta = np.linspace(4.0 * k, 4.0 * (k + 1), n_points)
        theta = theta + rng.standard_normal(n_points) * noise
        X[rows, 0] = radius * np.sin(theta)
        X[rows, 1] = radius * np.cos(theta)
        y[rows] = k
    return X, y


def moons(
    n_samples: int = 200, noise: float = 0.1, seed: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles (scikit-learn's ``make_moons``), classes 0 and 1.

    The upper moon has ``n_samples // 2`` points, the lower one the rest;
    Gaussian noise of standard deviation ``noise`` is added to every coordinate.
    Returns ``X`` float32 of shape (n_samples, 2) and ``y`` int64, ordered by
    class. ``seed`` as in ``spirals``.
    """
    n_samples = _check_int(n_samples, "n_samples", "moons", 1)
    if not noise >= 0:
        raise ValueError(f"moons: noise must be >= 0, got {noise!r}")
    rng = _rng(seed)
    n_upper = n_samples // 2
    n_lower = n_samples - n_upper
    upper = np.linspace(0.0, np.pi, n_upper)
    lower = np.linspace(0.0, np.pi, n_lower)
    X = np.concatenate(
        [
            np.stack([np.cos(upper), np.sin(upper)], axis=1),
            np.stack([1.0 - np.cos(lower), 0.5 - np.sin(lower)], axis=1),
        ]
    )
    X = X + rng.standard_normal(X.shape) * noise
    y = np.concatenate([np.zeros(n_upper, np.int64), np.ones(n_lower, np.int64)])
    return X.astype(np.float32), y


def digits(
    test_fraction: float = 0.2, seed: int = 0
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The 8x8 handwritten digits (1,797 images, 10 classes) bundled with scikit-learn.

    Returns ``((X_train, y_train), (X_test, y_test))``: ``X`` float32 of shape
    (n, 64) with pixels scaled from 0..16 to [0, 1], ``y`` int64. The split is
    stratified: each digit contributes the same fraction of its images to the
    test set (``round(1797 * test_fraction)`` images in all), and ``seed``
    fixes which ones, so the same call always returns the same split.
    Needs scikit-learn: ``pip install "minigrad[data]"``.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"digits: test_fraction must be in [0, 1), got {test_fraction!r}")
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError(
            'digits() needs scikit-learn, which is not installed: pip install "minigrad[data]" '
            "(or pip install scikit-learn)"
        ) from exc
    bunch = load_digits()
    X = (np.asarray(bunch.data, dtype=np.float64) / 16.0).astype(np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)

    rng = np.random.default_rng(seed)
    counts = np.bincount(y)
    exact = counts * test_fraction
    per_class = np.floor(exact).astype(np.int64)
    # Hand the rows that rounding down left over to the classes closest to
    # their next row, so the test set has exactly round(n * test_fraction) rows.
    missing = round(len(y) * test_fraction) - int(per_class.sum())
    per_class[np.argsort(per_class - exact, kind="stable")[:missing]] += 1
    test_rows = [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in enumerate(per_class)]
    is_test = np.zeros(len(y), dtype=bool)
    is_test[np.concatenate(test_rows)] = True
    # Shuffled, so neither split is ordered by class.
    train = rng.permutation(np.flatnonzero(~is_test))
    test = rng.permutation(np.flatnonzero(is_test))
    return (X[train], y[train]), (X[test], y[test])
