"""Adam (Kingma & Ba 2015) and AdamW (Loshchilov & Hutter 2019), PyTorch's formulation."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import backend
from ..tensor import Tensor
from .optimizer import Optimizer, ParamsT

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """Adam: a per-element step size from running moments of the gradient.

    With step t (1-based) and ``g`` the gradient::

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g^2
        param -= lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)

    Dividing by sqrt(v) makes the step about ``lr`` in size whatever the scale
    of the gradient, so a layer whose gradients vanished still moves. The
    weight decay is L2 (added to ``g``) unless ``decoupled_weight_decay``,
    which is AdamW. Per-parameter state: ``"step"`` (a 0-d float32 tensor, as
    in PyTorch), ``"exp_avg"`` (m) and ``"exp_avg_sq"`` (v).
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        *,
        decoupled_weight_decay: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "decoupled_weight_decay": decoupled_weight_decay,
        }
        self._check_group(defaults)
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        betas = group["betas"]
        if not group["lr"] >= 0.0:
            raise ValueError(f"Invalid learning rate: {group['lr']}")
        if not group["eps"] >= 0.0:
            raise ValueError(f"Invalid epsilon value: {group['eps']}")
        if len(betas) != 2:
            raise ValueError(f"Invalid betas: expected two values (beta1, beta2), got {betas}")
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        if not group["weight_decay"] >= 0.0:
            raise ValueError(f"Invalid weight_decay value: {group['weight_decay']}")

    def _step_group(self, group: dict[str, Any]) -> None:
        beta1, beta2 = group["betas"]
        hyper = {
            "lr": group["lr"],
            "beta1": beta1,
            "beta2": beta2,
            "eps": group["eps"],
            "weight_decay": group["weight_decay"],
            "decoupled": group["decoupled_weight_decay"],
        }
        params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            param, grad = self._param_and_grad(p)
            state = self.state[p]
            if not state:
                state["step"] = Tensor._wrap(np.array(0.0, dtype=np.float32))
                state["exp_avg"] = Tensor._wrap(np.zeros(param.shape, param.dtype))
                state["exp_avg_sq"] = Tensor._wrap(np.zeros(param.shape, param.dtype))
            # each parameter counts its own steps: one without a gradient was skipped
            state["step"]._data += 1
            params.append(param)
            grads.append(grad)
            exp_avgs.append(state["exp_avg"]._data)
            exp_avg_sqs.append(state["exp_avg_sq"]._data)
            steps.append(int(state["step"]._data))
        if self._one_call_fits(params):
            backend.active.adam_step_multi_(
                params, grads, exp_avgs, exp_avg_sqs, steps=steps, **hyper
            )
            return
        for i, param in enumerate(params):
            self._run_kernel(
                param,
                backend.active.adam_step_,
                grads[i],
                exp_avgs[i],
                exp_avg_sqs[i],
                step=steps[i],
                **hyper,
            )


class AdamW(Adam):
    """Adam with decoupled weight decay: ``param *= 1 - lr * weight_decay`` before
    the Adam step, instead of adding ``weight_decay * param`` to the gradient.

    With L2 in Adam the decay is divided by sqrt(v) like the gradient, so
    weights with large gradients are barely decayed; decoupling makes the
    decay the same for every weight.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, decoupled_weight_decay=True)

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        # a state dict saved by Adam must not turn AdamW's decay back into L2
        group["decoupled_weight_decay"] = True
