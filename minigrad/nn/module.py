"""Module: the base class of layers and models.

A Module keeps its parameters, buffers and sub-modules as plain attributes;
``parameters()`` and ``state_dict()`` find them by walking ``vars(self)`` in
the order they were assigned, so keys come out in PyTorch's order and a
state dict loads into the equivalent torch model. Buffers (tensors that are
state but not parameters, like BatchNorm's running mean) are attributes
named with ``register_buffer``.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

from ..autograd import no_grad
from ..dtypes import as_dtype
from ..tensor import Tensor
from .parameter import Parameter


def _factory_dtype(owner: str, dtype: Any, device: Any = None) -> np.dtype:
    """The float dtype a layer's parameters are made in (float32 by default).

    ``device`` is accepted so PyTorch constructor calls run unchanged; only the
    CPU exists here.
    """
    if device is not None and str(device) != "cpu":
        raise ValueError(f"{owner}: device must be None or 'cpu', got {device!r}")
    resolved = np.dtype(np.float32) if dtype is None else as_dtype(dtype, owner)
    if resolved.kind != "f":
        raise TypeError(f"{owner}: dtype must be float32 or float64, got {resolved}")
    return resolved


class IncompatibleKeys(NamedTuple):
    missing_keys: list[str]
    unexpected_keys: list[str]


# Hook handles need keys that are never reused: a key derived from the hook
# (its id, the count of hooks) can repeat once a hook is removed.
_hook_ids = itertools.count()


class _RemovableHandle:
    def __init__(self, module: Module, hooks: dict, key: int) -> None:
        self._module, self._hooks, self._key = module, hooks, key

    def remove(self) -> None:
        if self._hooks.pop(self._key, None) is not None:
            self._module._hooks_changed()


class Module:
    """Subclass it, assign layers and Parameters in ``__init__``, write ``forward``."""

    training: bool

    def __init__(self) -> None:
        self.training = True
        self._buffer_names: dict[str, bool] = {}  # name -> persistent (in state_dict)
        self._forward_hooks: dict[int, Callable] = {}
        self._forward_pre_hooks: dict[int, Callable] = {}
        # The hooks as tuples, remade when they change: a call runs the tuple it
        # read, so a hook may remove itself (or add one) while the hooks run, and
        # a call copies nothing.
        self._pre_hook_list: tuple[Callable, ...] = ()
        self._hook_list: tuple[Callable, ...] = ()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        for hook in self._pre_hook_list:
            changed = hook(self, args)
            if changed is not None:
                args = changed if isinstance(changed, tuple) else (changed,)
        output = self.forward(*args, **kwargs)
        for hook in self._hook_list:
            changed = hook(self, args, output)
            if changed is not None:
                output = changed
        return output

    def register_forward_hook(self, hook: Callable) -> _RemovableHandle:
        """``hook(module, inputs, output)`` runs after forward; a returned value replaces output."""
        key = next(_hook_ids)
        self._forward_hooks[key] = hook
        self._hooks_changed()
        return _RemovableHandle(self, self._forward_hooks, key)

    def register_forward_pre_hook(self, hook: Callable) -> _RemovableHandle:
        """``hook(module, inputs)`` runs before forward; a returned value replaces the inputs."""
        key = next(_hook_ids)
        self._forward_pre_hooks[key] = hook
        self._hooks_changed()
        return _RemovableHandle(self, self._forward_pre_hooks, key)

    def _hooks_changed(self) -> None:
        self._pre_hook_list = tuple(self._forward_pre_hooks.values())
        self._hook_list = tuple(self._forward_hooks.values())

    # -- what a module holds ------------------------------------------------
    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Keep ``tensor`` as state that is saved and loaded but not trained."""
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(
                f"register_buffer: {name!r} must be a Tensor or None, got {type(tensor).__name__}"
            )
        setattr(self, name, tensor)
        self._buffer_names[name] = persistent

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name!r} must be a Parameter or None")
        setattr(self, name, param)

    def _own(self, kind: type) -> Iterator[tuple[str, Any]]:
        for name, value in vars(self).items():
            if isinstance(value, kind):
                yield name, value

    def named_children(self) -> Iterator[tuple[str, Module]]:
        return self._own(Module)

    def children(self) -> Iterator[Module]:
        for _, child in self.named_children():
            yield child

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module and every descendant, depth first, each once."""
        seen: set[int] = set()
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{n}" if name else n, c) for n, c in module.named_children()]
            stack.extend(reversed(children))

    def modules(self) -> Iterator[Module]:
        for _, module in self.named_modules():
            yield module

    def _named_members(
        self, members: Callable, prefix: str, recurse: bool
    ) -> Iterator[tuple[str, Any]]:
        seen: set[int] = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for module_name, module in modules:
            for name, value in members(module):
                if id(value) in seen:
                    continue  # a shared parameter is listed once, under its first name
                seen.add(id(value))
                yield (f"{module_name}.{name}" if module_name else name), value

    def named_parameters(
        self, prefix: str = "", recurse: bool = True
    ) -> Iterator[tuple[str, Parameter]]:
        return self._named_members(lambda m: m._own(Parameter), prefix, recurse)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def _buffers(self) -> Iterator[tuple[str, Tensor]]:
        for name in self._buffer_names:
            value = getattr(self, name, None)
            if value is not None:
                yield name, value

    def named_buffers(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Tensor]]:
        return self._named_members(Module._buffers, prefix, recurse)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # -- modes and gradients --------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        for module in self.modules():
            module.training = mode
        return self

    def eval(self) -> Module:
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad._data[...] = 0

    def apply(self, fn: Callable[[Module], None]) -> Module:
        """Call ``fn`` on every sub-module (children first) and on this one."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def to(self, dtype: Any) -> Module:
        """Convert floating-point parameters and buffers to ``dtype`` in place."""
        dtype = as_dtype(dtype, "Module.to")
        for module in self.modules():
            for _, t in [*module._own(Parameter), *module._buffers()]:
                if t.dtype.kind == "f":
                    t._data = t._data.astype(dtype)
                    if t.grad is not None:
                        t.grad._data = t.grad._data.astype(dtype)
        return self

    def float(self) -> Module:
        return self.to(np.float32)

    def double(self) -> Module:
        return self.to(np.float64)

    # -- state ------------------------------------------------------------------
    def state_dict(self, prefix: str = "") -> OrderedDict[str, Tensor]:
        """Parameters then persistent buffers, module by module: PyTorch's keys and order.

        Values are detached tensors sharing storage with the module's.
        """
        state: OrderedDict[str, Tensor] = OrderedDict()
        self._save_to(state, prefix)
        return state

    def _save_to(self, state: OrderedDict, prefix: str) -> None:
        for name, p in self._own(Parameter):
            state[prefix + name] = p.detach()
        for name, b in self._buffers():
            if self._buffer_names[name]:
                state[prefix + name] = b.detach()
        for name, child in self.named_children():
            child._save_to(state, f"{prefix}{name}.")

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copy values into this module's parameters and buffers (shapes must match)."""
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        errors = []
        if strict:
            # PyTorch's wording and order, so messages can be searched for
            if missing:
                errors.append(
                    "Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ". "
                )
            if unexpected:
                errors.append(
                    "Unexpected key(s) in state_dict: "
                    + ", ".join(f'"{k}"' for k in unexpected)
                    + ". "
                )
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            source = value._data if isinstance(value, Tensor) else np.asarray(value)
            if source.shape != target.shape:
                errors.append(
                    f"size mismatch for {key}: copying a param with shape {source.shape} "
                    f"from checkpoint, the shape in current model is {target.shape}"
                )
        if errors:
            raise RuntimeError(
                f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                + "\n\t".join(errors)
            )
        with no_grad():
            for key, target in own.items():
                if key in state_dict:
                    value = state_dict[key]
                    np.copyto(
                        target._data,
                        value._data if isinstance(value, Tensor) else value,
                        casting="unsafe",
                    )
                    target._version[0] += 1
        return IncompatibleKeys(missing, unexpected)

    # -- printing -------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [
            f"({name}): " + repr(child).replace("\n", "\n  ")
            for name, child in self.named_children()
        ]
        extra = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({extra})"
        body = "\n  ".join(([extra] if extra else []) + lines)
        return f"{type(self).__name__}(\n  {body}\n)"
