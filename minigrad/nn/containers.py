"""Modules that hold modules: Sequential, ModuleList, and the two trivial ones."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..tensor import Tensor
from .module import Module


class Sequential(Module):
    """Calls its modules in order; children are named "0", "1", ... (or by an OrderedDict)."""

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            named = list(modules[0].items())
        else:
            named = [(str(i), m) for i, m in enumerate(modules)]
        for name, module in named:
            if not isinstance(module, Module):
                raise TypeError(
                    f"Sequential: entry {name} is a {type(module).__name__}, not a Module"
                )
            setattr(self, name, module)

    def forward(self, x: Any) -> Any:
        for module in self.children():
            x = module(x)
        return x

    def __getitem__(self, index: int | slice) -> Module:
        named = list(self.named_children())
        if isinstance(index, slice):
            # Keys are kept, as in PyTorch, so a slice's state_dict names match the original's.
            return Sequential(OrderedDict(named[index]))
        return named[index][1]

    def __len__(self) -> int:
        return sum(1 for _ in self.children())

    def __iter__(self) -> Iterator[Module]:
        return self.children()

    def append(self, module: Module) -> Sequential:
        if not isinstance(module, Module):
            raise TypeError(f"Sequential.append: expected a Module, got {type(module).__name__}")
        setattr(self, str(len(self)), module)
        return self


class ModuleList(Module):
    """A list of modules whose parameters the parent sees; it has no forward."""

    def __init__(self, modules: Iterable[Module] = ()) -> None:
        super().__init__()
        self.extend(modules)

    def _items(self) -> list[Module]:
        return list(self.children())

    def _reset(self, modules: list[Module]) -> None:
        for name, _ in list(self.named_children()):
            delattr(self, name)
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"ModuleList: entry {i} is a {type(m).__name__}, not a Module")
            setattr(self, str(i), m)

    def __getitem__(self, index: int | slice) -> Any:
        items = self._items()
        return ModuleList(items[index]) if isinstance(index, slice) else items[index]

    def __setitem__(self, index: int, module: Module) -> None:
        items = self._items()
        items[index] = module
        self._reset(items)

    def __len__(self) -> int:
        return len(self._items())

    def __iter__(self) -> Iterator[Module]:
        return iter(self._items())

    def append(self, module: Module) -> ModuleList:
        self._reset([*self._items(), module])
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        self._reset([*self._items(), *modules])
        return self

    def insert(self, index: int, module: Module) -> None:
        items = self._items()
        items.insert(index, module)
        self._reset(items)


class Identity(Module):
    def forward(self, x: Any) -> Any:
        return x


class Residual(Module):
    """``y = x + fn(x)``: the skip connection that lets gradients bypass ``fn``."""

    def __init__(self, fn: Module | Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return x + self.fn(x)
