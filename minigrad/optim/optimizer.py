"""Optimizer: what every optimizer shares, PyTorch's way.

An optimizer holds ``param_groups``, a list of dicts: each has ``"params"``
(a list of tensors) and every hyperparameter (``"lr"``, ...), filled in from
the optimizer's defaults where the group does not set its own. ``state`` maps
each parameter tensor to a dict of what the update rule remembers between
steps (momentum buffers, moment estimates, the step count).

``step()`` runs the update of every group, outside the graph; a subclass
supplies ``_step_group``, which gathers the group's arrays and updates them
all in one call of a fused backend kernel (or, when one call cannot take the
whole group, one call per parameter).
"""

from __future__ import annotations

import copy
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ..autograd import enable_grad, no_grad
from ..tensor import Tensor

__all__ = ["Optimizer"]

ParamsT = Iterable[Tensor] | Iterable[dict[str, Any]]

# A set's order changes between runs, and a state dict numbers the parameters by order.
_UNORDERED = (
    "optimizer parameters need to be organized in ordered collections, but the "
    "ordering of tensors in sets will change between runs. Please use a list instead."
)


class Optimizer:
    """Base class: param groups, state, zero_grad, step and state dicts."""

    def __init__(self, params: ParamsT, defaults: dict[str, Any]) -> None:
        if isinstance(params, Tensor):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of Tensors "
                f"or dicts, but got {type(params).__name__}"
            )
        if isinstance(params, (set, frozenset)):
            raise TypeError(_UNORDERED)
        self.defaults = dict(defaults)
        self.state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines) + "\n)"

    # -- hyperparameters --------------------------------------------------------
    def _check_group(self, group: dict[str, Any]) -> None:
        """Raise ValueError for a hyperparameter the update rule cannot use."""

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own hyperparameters (the rest from defaults).

        Useful to fine-tune: unfreeze layers and add them with a smaller lr.
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        # The caller's dict itself becomes the group, as in PyTorch, so keeping a
        # reference to it and changing its lr later takes effect.
        group = param_group
        params = group.get("params")
        if params is None:
            raise ValueError("param_group must have a 'params' entry")
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError(_UNORDERED)
        params = list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(
                    "optimizer can only optimize Tensors, but one of the params is "
                    f"{type(p).__name__}"
                )
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        group["params"] = params
        for name, default in self.defaults.items():
            group.setdefault(name, default)
        self._check_group(group)

        # Tensors compare elementwise, so membership goes by identity.
        ids = [id(p) for p in params]
        if len(set(ids)) != len(ids):
            warnings.warn(
                "optimizer contains a parameter group with duplicate parameters; "
                "each will be updated once per appearance",
                stacklevel=2,
            )
        taken = {id(p) for g in self.param_groups for p in g["params"]}
        if not taken.isdisjoint(ids):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    # -- gradients --------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients before the next backward (which would add to them).

        ``set_to_none=True`` drops them (``p.grad is None``: no memory, and
        ``step`` skips the parameter); False zeroes them in place.
        """
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    with no_grad():
                        p.grad.zero_()

    # -- the update ----------------------------------------------------------------
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; returns ``closure()``'s loss.

        ``closure`` re-evaluates the model and returns the loss (it runs with
        grad enabled, so it may call backward).
        """
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            for group in self.param_groups:
                self._step_group(group)
        return loss

    def _step_group(self, group: dict[str, Any]) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not define its update rule")

    def _param_and_grad(self, p: Tensor) -> tuple[np.ndarray, np.ndarray]:
        """The arrays a kernel updates: the parameter's (written) and its gradient's (read)."""
        op = f"{type(self).__name__}.step"
        grad = p.grad._data
        if grad.shape != p.shape:
            raise ValueError(
                f"{op}: a parameter of shape {p.shape} has a gradient of shape {grad.shape}"
            )
        if grad.dtype != p.dtype:
            raise TypeError(
                f"{op}: a {p.dtype} parameter has a {grad.dtype} gradient; they must match"
            )
        if p.dtype.kind != "f":
            raise TypeError(f"{op}: parameters must be float32 or float64, got {p.dtype}")
        return p._writable(op), np.ascontiguousarray(grad)

    @staticmethod
    def _one_call_fits(params: list[np.ndarray]) -> bool:
        """True when one multi-parameter kernel call can update all these
        parameters: they share a dtype and each is a C-ordered buffer (a
        strided one is updated through a copy, by ``_run_kernel``)."""
        return all(
            p.dtype == params[0].dtype and p.flags.c_contiguous and p.flags.aligned for p in params
        )

    @staticmethod
    def _run_kernel(param: np.ndarray, kernel: Callable[..., None], *args: Any, **kw: Any) -> None:
        """``kernel(param, ...)``; kernels need a C-ordered buffer, so a strided
        parameter is updated through a contiguous copy."""
        flags = param.flags
        if flags.c_contiguous and flags.aligned:
            kernel(param, *args, **kw)
            return
        work = np.ascontiguousarray(param)
        kernel(work, *args, **kw)
        param[...] = work

    # -- saving and resuming -----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{"state": {index: {...}}, "param_groups": [{..., "params": [indices]}]}``.

        Parameters are numbered in the order the groups list them, so the dict
        loads into any optimizer built over the same parameters in the same
        order. As in PyTorch the state tensors are the live ones, not copies:
        save them, or deep-copy the dict, before stepping on.
        """
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            for p in group["params"]:
                index.setdefault(id(p), len(index))
            packed["params"] = [index[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {index[id(p)]: dict(s) for p, s in self.state.items() if id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume from ``state_dict()``'s output. State arrays are copied (cast to
        each parameter's dtype), so two optimizers never share a buffer."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        for ours, saved in zip(self.param_groups, saved_groups, strict=True):
            if len(ours["params"]) != len(saved["params"]):
                raise ValueError(
                    "loaded state dict contains a parameter group that doesn't match the "
                    "size of optimizer's group"
                )
        by_index = {
            int(i): p
            for ours, saved in zip(self.param_groups, saved_groups, strict=True)
            for i, p in zip(saved["params"], ours["params"], strict=True)
        }

        state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        for key, values in state_dict["state"].items():
            p = by_index.get(int(key))
            if p is None:
                raise ValueError(
                    f"loaded state dict has state for parameter {key}, which no group lists"
                )
            state[p] = {name: self._load_value(p, name, v) for name, v in values.items()}

        groups = []
        for ours, saved in zip(self.param_groups, saved_groups, strict=True):
            group = copy.deepcopy({k: v for k, v in saved.items() if k != "params"})
            group["params"] = ours["params"]
            self._check_group(group)
            groups.append(group)
        self.state = state
        self.param_groups = groups

    @staticmethod
    def _load_value(p: Tensor, name: str, value: Any) -> Any:
        if isinstance(value, Tensor):
            value = value._data
        if not isinstance(value, np.ndarray):
            return copy.deepcopy(value)
        if name == "step":
            # a count, kept in its own dtype (PyTorch's float32) whatever the parameter's
            return Tensor._wrap(np.array(value, copy=True))
        if value.shape != p.shape:
            raise ValueError(
                f"load_state_dict: state {name!r} has shape {value.shape} but its parameter "
                f"has shape {p.shape}"
            )
        return Tensor._wrap(np.array(value, dtype=p.dtype, order="C", copy=True))
