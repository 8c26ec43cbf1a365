"""Dropout: a regularizer that is active only in training."""

from __future__ import annotations

from ..tensor import Tensor
from . import functional as F
from .module import Module


class Dropout(Module):
    """Zero each element with probability ``p`` in training and scale the rest
    by ``1/(1-p)``; the identity in eval. ``inplace`` is accepted for
    PyTorch compatibility; the output is always a new tensor."""

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        self.p = F._number("Dropout", "p", p, 0.0, 1.0)
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.dropout(input, self.p, self.training, self.inplace)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"
