"""BatchNorm1d and LayerNorm: the layers that keep activations at a trainable scale."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..autograd import no_grad
from ..tensor import Tensor
from . import functional as F
from .module import Module, _factory_dtype
from .parameter import Parameter


def _filled(shape: tuple, value: float, dtype: np.dtype) -> Tensor:
    return Tensor._wrap(np.full(shape, value, dtype))


class BatchNorm1d(Module):
    """Batch norm over the features of (N, C) or the channels of (N, C, L) input.

    Training normalizes with the batch mean and biased variance and moves the
    running statistics toward them (running_var takes the unbiased variance);
    ``momentum=None`` makes them a cumulative average over all batches seen.
    Eval normalizes with the running statistics. With
    ``track_running_stats=False`` there are none and the batch statistics are
    used in both modes.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if (
            isinstance(num_features, bool)
            or not isinstance(num_features, (int, np.integer))
            or num_features < 0
        ):
            raise ValueError(
                f"BatchNorm1d: num_features must be a non-negative int, got {num_features!r}"
            )
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"BatchNorm1d: momentum must be in [0, 1] or None, got {momentum}")
        self.num_features = int(num_features)
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        dtype = _factory_dtype("BatchNorm1d", dtype, device)
        shape = (self.num_features,)
        if affine:
            self.weight = Parameter(_filled(shape, 1.0, dtype))
            self.bias = Parameter(_filled(shape, 0.0, dtype)) if bias else None
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", _filled(shape, 0.0, dtype))
            self.register_buffer("running_var", _filled(shape, 1.0, dtype))
            self.register_buffer("num_batches_tracked", Tensor._wrap(np.array(0, np.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            with no_grad():
                self.running_mean.zero_()
                self.running_var.fill_(1.0)
                self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        with no_grad():
            if self.weight is not None:
                self.weight.fill_(1.0)
            if self.bias is not None:
                self.bias.zero_()

    def forward(self, input: Tensor) -> Tensor:
        if not isinstance(input, Tensor):
            raise TypeError(f"BatchNorm1d: input must be a Tensor, got {type(input).__name__}")
        if input.ndim not in (2, 3):
            raise ValueError(f"BatchNorm1d: expected 2D or 3D input (got {input.ndim}D input)")
        bn_training = self.training or self.running_mean is None
        if bn_training:
            # Checked before the counter moves, so a refused batch leaves no trace.
            F._check_batch_size("BatchNorm1d", input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            with no_grad():
                self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked.item())
        # Running stats are updated only by a training pass that tracks them,
        # and read only in eval.
        use_running = not self.training or self.track_running_stats
        return F.batch_norm(
            input,
            self.running_mean if use_running else None,
            self.running_var if use_running else None,
            self.weight,
            self.bias,
            bn_training,
            factor,
            self.eps,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, bias={self.bias is not None}, "
            f"track_running_stats={self.track_running_stats}"
        )


class LayerNorm(Module):
    """Normalize each sample over its trailing ``normalized_shape`` dims, then
    scale by ``weight`` and shift by ``bias`` (both of ``normalized_shape``)."""

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        self.normalized_shape = F._normalized_shape("LayerNorm", normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        dtype = _factory_dtype("LayerNorm", dtype, device)
        if elementwise_affine:
            self.weight = Parameter(_filled(self.normalized_shape, 1.0, dtype))
            if bias:
                self.bias = Parameter(_filled(self.normalized_shape, 0.0, dtype))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def reset_parameters(self) -> None:
        with no_grad():
            if self.weight is not None:
                self.weight.fill_(1.0)
            if self.bias is not None:
                self.bias.zero_()

    def forward(self, input: Tensor) -> Tensor:
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, eps={self.eps}, "
            f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}"
        )
