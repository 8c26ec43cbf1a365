"""Linear: the affine layer ``y = x W^T + b``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..autograd import no_grad
from ..random import generator
from ..tensor import Tensor
from . import functional as F
from .module import Module, _factory_dtype
from .parameter import Parameter


def _size(owner: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{owner}: {name} must be a non-negative int, got {value!r}")
    return int(value)


class Linear(Module):
    """``y = x @ weight.T + bias`` with weight (out_features, in_features).

    Initialized as PyTorch does: weight and bias uniform in
    ``[-1/sqrt(in_features), 1/sqrt(in_features)]`` (what
    ``kaiming_uniform_(a=sqrt(5))`` reduces to), drawn from the global
    generator, so ``mg.manual_seed`` makes it repeatable.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        self.in_features = _size("Linear", "in_features", in_features)
        self.out_features = _size("Linear", "out_features", out_features)
        dtype = _factory_dtype("Linear", dtype, device)
        self.weight = Parameter(
            Tensor._wrap(np.empty((self.out_features, self.in_features), dtype))
        )
        if bias:
            self.bias = Parameter(Tensor._wrap(np.empty(self.out_features, dtype)))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        fan_in = self.in_features
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        with no_grad():
            for p in (self.weight, self.bias):
                if p is not None:
                    p.copy_(generator().uniform(-bound, bound, p.shape))

    def forward(self, input: Tensor) -> Tensor:
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )
