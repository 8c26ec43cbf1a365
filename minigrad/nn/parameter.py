"""Parameter: a leaf tensor that a Module owns and an optimizer updates."""

from __future__ import annotations

from typing import Any

from ..tensor import Tensor


class Parameter(Tensor):
    """A tensor that requires grad by default and that ``Module.parameters()`` finds.

    Made from a Tensor it shares that tensor's storage, as in PyTorch.
    """

    __slots__ = ()

    def __init__(self, data: Any = None, requires_grad: bool = True) -> None:
        if not isinstance(data, Tensor):
            data = Tensor([] if data is None else data)
        self._init(data._data, version=data._version)
        self.requires_grad = requires_grad

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()
