"""SGD with momentum, dampening, Nesterov and L2 weight decay (PyTorch's formulation)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import backend
from ..tensor import Tensor
from .optimizer import Optimizer, ParamsT

__all__ = ["SGD"]


class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's update rule.

    With ``d = grad + weight_decay * param``::

        buf = d                                      (first step)
        buf = momentum * buf + (1 - dampening) * d   (later steps)
        param -= lr * (d + momentum * buf)           (nesterov)
        param -= lr * buf                            (otherwise; d when momentum is 0)

    PyTorch's momentum differs from Sutskever et al. (2013): the lr multiplies
    the buffer instead of going into it, which only matters when lr changes.
    The per-parameter state is ``"momentum_buffer"`` when momentum is not 0.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
        }
        self._check_group(defaults)
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        if not group["lr"] >= 0.0:
            raise ValueError(f"Invalid learning rate: {group['lr']}")
        if not group["momentum"] >= 0.0:
            raise ValueError(f"Invalid momentum value: {group['momentum']}")
        if not group["weight_decay"] >= 0.0:
            raise ValueError(f"Invalid weight_decay value: {group['weight_decay']}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _step_group(self, group: dict[str, Any]) -> None:
        momentum = group["momentum"]
        hyper = {
            "lr": group["lr"],
            "momentum": momentum,
            "dampening": group["dampening"],
            "weight_decay": group["weight_decay"],
            "nesterov": group["nesterov"],
        }
        params, grads, buffers, first_steps = [], [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            param, grad = self._param_and_grad(p)
            buffer, first_step = None, False
            if momentum != 0:
                state = self.state[p]
                if state.get("momentum_buffer") is None:
                    # the kernel fills it with the first step's direction
                    state["momentum_buffer"] = Tensor._wrap(np.empty(param.shape, param.dtype))
                    first_step = True
                buffer = state["momentum_buffer"]._data
            params.append(param)
            grads.append(grad)
            buffers.append(buffer)
            first_steps.append(first_step)
        if self._one_call_fits(params):
            backend.active.sgd_step_multi_(
                params,
                grads,
                buffers if momentum != 0 else None,
                first_steps=first_steps,
                **hyper,
            )
            return
        for i, param in enumerate(params):
            self._run_kernel(
                param,
                backend.active.sgd_step_,
                grads[i],
                buffers[i],
                first_step=first_steps[i],
                **hyper,
            )
