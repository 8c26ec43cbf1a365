"""Tensor: a NumPy array plus what autograd needs to know about it.

A Tensor holds its array (``_data``), whether it wants a gradient, its
``grad`` once backward has run, and ``grad_fn``: the graph node of the op that
made it (None for leaves: tensors the user created). Every operator below is
one line that calls a Function from ``minigrad.ops``; the math and the
gradients live there, side by side.
"""

from __future__ import annotations

import operator
import weakref
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

from . import ops
from .autograd import is_grad_enabled, run_backward
from .dtypes import as_dtype, to_array

Scalar = int | float | bool


class _RemovableHandle:
    """Returned by ``register_hook``; ``remove()`` unregisters the hook."""

    def __init__(self, remove: Callable[[], None]) -> None:
        self._remove = remove

    def remove(self) -> None:
        self._remove()


class MaxResult(NamedTuple):
    """``x.max(dim)`` returns the values and the index of each, as in PyTorch."""

    values: Tensor
    indices: Tensor


def _dims(dim: int | tuple[int, ...] | None, ndim: int, op: str) -> tuple[int, ...] | None:
    """Normalize ``dim`` (an int, a tuple or None) to a tuple of non-negative axes."""
    if dim is None:
        return None
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    rank = max(ndim, 1)
    out = []
    for d in dims:
        if not isinstance(d, (int, np.integer)) or not -rank <= d < rank:
            raise IndexError(
                f"{op}: dim {d!r} is out of range for a tensor with {ndim} dims "
                f"(expected an int in [{-rank}, {rank - 1}])"
            )
        out.append(int(d) % rank)
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: dim {dim} names the same axis twice")
    return tuple(out) if ndim else ()


def _index_arrays(index: Any) -> Any:
    """Tensors used as indices become their arrays."""
    if isinstance(index, Tensor):
        return index._data
    if isinstance(index, tuple):
        return tuple(i._data if isinstance(i, Tensor) else i for i in index)
    return index


class Tensor:
    __slots__ = (
        "__weakref__",
        "_data",
        "_hooks",
        "_output_nr",
        "_requires_grad",
        "_version",
        "grad",
        "grad_fn",
    )

    # NumPy must hand `ndarray + tensor` to Tensor.__radd__ instead of looping itself.
    __array_ufunc__ = None

    def __init__(self, data: Any, dtype: Any = None, requires_grad: bool = False) -> None:
        array = to_array(data._data if isinstance(data, Tensor) else data, dtype, "tensor")
        self._init(array)
        if requires_grad:
            self.requires_grad = True

    def _init(
        self,
        array: np.ndarray,
        grad_fn: Any = None,
        output_nr: int = 0,
        version: list | None = None,
    ) -> None:
        self._data = array
        self.grad: Tensor | None = None
        self.grad_fn = grad_fn
        self._output_nr = output_nr
        self._hooks: tuple = ()
        # Bumped by every in-place write; shared by tensors that share storage
        # (detach, data, views), so a graph can tell that a saved array changed.
        self._version = [0] if version is None else version
        self._requires_grad = grad_fn is not None

    @classmethod
    def _wrap(
        cls, array: np.ndarray, grad_fn: Any = None, output_nr: int = 0, version: list | None = None
    ) -> Tensor:
        """A Tensor around an existing array, no checks, no copy (the ops' fast path).

        It sets what ``_init`` sets without calling it: every op's output
        comes through here, and the call would be a tenth of its cost."""
        t = object.__new__(cls)
        t._data = array
        t.grad = None
        t.grad_fn = grad_fn
        t._output_nr = output_nr
        t._hooks = ()
        t._version = [0] if version is None else version
        t._requires_grad = grad_fn is not None
        return t

    # -- what it is ---------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self._data.shape

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    def dim(self) -> int:
        return self._data.ndim

    def size(self, dim: int | None = None) -> Any:
        if dim is None:
            return self._data.shape
        return self._data.shape[_dims(dim, self.ndim, "size")[0]]

    def numel(self) -> int:
        return self._data.size

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if self.grad_fn is not None:
            raise RuntimeError(
                "requires_grad can only be changed on leaf tensors; use .detach() "
                "to get a tensor outside the graph"
            )
        if value and self._data.dtype.kind != "f":
            raise RuntimeError(
                f"only floating point tensors can require gradients, this one is {self.dtype}; "
                "create it with dtype=mg.float32"
            )
        self._requires_grad = bool(value)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        self.requires_grad = requires_grad
        return self

    @property
    def data(self) -> Tensor:
        """A tensor sharing this one's storage, outside the graph."""
        return Tensor._wrap(self._data, version=self._version)

    @data.setter
    def data(self, value: Tensor) -> None:
        self._data = (
            value._data if isinstance(value, Tensor) else to_array(value, self.dtype, "data")
        )

    def numpy(self) -> np.ndarray:
        """An array sharing the tensor's memory (no copy).

        It is a view, a new array object each call as in PyTorch, so changing
        its flags (making it read-only, say) leaves the tensor as it was; an
        op's output may be a pooled buffer that a later op receives."""
        if self._requires_grad:
            raise RuntimeError(
                "numpy() on a tensor that requires grad would let changes bypass autograd; "
                "use tensor.detach().numpy()"
            )
        return self._data.view()

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if dtype is not None and dtype != self._data.dtype:
            return self._data.astype(dtype)
        return self._data.copy() if copy else self._data.view()

    def item(self) -> Scalar:
        if self._data.size != 1:
            raise ValueError(
                f"item(): the tensor has {self._data.size} elements; only a one-element "
                "tensor converts to a Python number"
            )
        return self._data.item()

    def tolist(self) -> Any:
        return self._data.tolist()

    def detach(self) -> Tensor:
        return Tensor._wrap(self._data, version=self._version)

    def clone(self) -> Tensor:
        return ops.Clone.apply(self)

    def contiguous(self) -> Tensor:
        return self if self._data.flags.c_contiguous else self.clone()

    def to(self, dtype: Any) -> Tensor:
        dtype = as_dtype(dtype, "to")
        return self if dtype == self.dtype else ops.Cast.apply(self, dtype)

    def float(self) -> Tensor:
        return self.to(np.float32)

    def double(self) -> Tensor:
        return self.to(np.float64)

    def long(self) -> Tensor:
        return self.to(np.int64)

    # -- gradients --------------------------------------------------------------
    def backward(self, gradient: Tensor | None = None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``."""
        if not self._requires_grad:
            raise RuntimeError(
                "backward: this tensor does not require grad and has no grad_fn; "
                "did you create the inputs with requires_grad=True, outside no_grad()?"
            )
        if gradient is None:
            if self._data.size != 1:
                raise RuntimeError(
                    f"backward: a gradient can only be implied for a one-element tensor; "
                    f"this one has shape {self.shape}, so pass gradient= of that shape"
                )
            grad = np.ones_like(self._data)
        elif (
            type(gradient) is Tensor
            and gradient._data.dtype == self._data.dtype
            and gradient._data.shape == self._data.shape
        ):
            grad = gradient._data  # no copy: backward only reads the gradient it is given
        else:
            grad = to_array(
                gradient._data if isinstance(gradient, Tensor) else gradient,
                self.dtype,
                "backward",
                copy=False,
            )
            if grad.shape != self.shape:
                raise ValueError(
                    f"backward: gradient has shape {grad.shape} "
                    f"but the tensor has shape {self.shape}"
                )
        run_backward(self, grad, retain_graph)

    def register_hook(self, hook: Callable[[Tensor], Tensor | None]) -> _RemovableHandle:
        """Call ``hook(grad)`` when this tensor's gradient is computed; a returned
        tensor replaces the gradient."""
        if not self._requires_grad:
            raise RuntimeError("register_hook: this tensor does not require grad")
        if self.grad_fn is None:
            self._hooks = (*self._hooks, hook)

            def remove() -> None:
                self._hooks = tuple(h for h in self._hooks if h is not hook)

            return _RemovableHandle(remove)
        if self.grad_fn._hooks is None:
            self.grad_fn._hooks = {}
        hooks = self.grad_fn._hooks.setdefault(self._output_nr, [])
        hooks.append(hook)
        return _RemovableHandle(lambda: hook in hooks and hooks.remove(hook))

    def retain_grad(self) -> None:
        """Keep ``.grad`` on this non-leaf tensor after backward."""
        if not self._requires_grad:
            raise RuntimeError("retain_grad: this tensor does not require grad")
        if self.grad_fn is not None:
            if self.grad_fn._retained is None:
                self.grad_fn._retained = {}
            self.grad_fn._retained[self._output_nr] = weakref.ref(self)

    @property
    def retains_grad(self) -> bool:
        return self.grad_fn is not None and self._output_nr in (self.grad_fn._retained or {})

    # -- arithmetic -------------------------------------------------------------
    def __add__(self, other: Tensor | Scalar) -> Tensor:
        return ops.Add.apply(self, other)

    def __radd__(self, other: Scalar) -> Tensor:
        return ops.Add.apply(other, self)

    def __sub__(self, other: Tensor | Scalar) -> Tensor:
        return ops.Sub.apply(self, other)

    def __rsub__(self, other: Scalar) -> Tensor:
        return ops.Sub.apply(other, self)

    def __mul__(self, other: Tensor | Scalar) -> Tensor:
        return ops.Mul.apply(self, other)

    def __rmul__(self, other: Scalar) -> Tensor:
        return ops.Mul.apply(other, self)

    def __truediv__(self, other: Tensor | Scalar) -> Tensor:
        return ops.Div.apply(self, other)

    def __rtruediv__(self, other: Scalar) -> Tensor:
        return ops.Div.apply(other, self)

    def __pow__(self, exponent: Tensor | Scalar) -> Tensor:
        return ops.Pow.apply(self, exponent)

    def __rpow__(self, base: Scalar) -> Tensor:
        return ops.Pow.apply(base, self)

    def __matmul__(self, other: Tensor) -> Tensor:
        return ops.MatMul.apply(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return ops.MatMul.apply(other, self)

    def __neg__(self) -> Tensor:
        return ops.Neg.apply(self)

    def __pos__(self) -> Tensor:
        return self

    def __abs__(self) -> Tensor:
        return ops.Abs.apply(self)

    def exp(self) -> Tensor:
        return ops.Exp.apply(self)

    def log(self) -> Tensor:
        return ops.Log.apply(self)

    def sqrt(self) -> Tensor:
        return ops.Sqrt.apply(self)

    def abs(self) -> Tensor:
        return ops.Abs.apply(self)

    def pow(self, exponent: Tensor | Scalar) -> Tensor:
        return ops.Pow.apply(self, exponent)

    def clamp(self, min: Scalar | None = None, max: Scalar | None = None) -> Tensor:
        if min is None and max is None:
            raise ValueError("clamp: at least one of min and max must be given")
        return ops.Clamp.apply(self, min, max)

    clip = clamp

    # -- comparisons (no gradient) -------------------------------------------------
    def _compare(self, other: Any, fn: Callable) -> Tensor:
        other = other._data if isinstance(other, Tensor) else other
        return Tensor._wrap(fn(self._data, other))

    def __eq__(self, other: Any) -> Tensor:  # type: ignore[override]
        return self._compare(other, operator.eq)

    def __ne__(self, other: Any) -> Tensor:  # type: ignore[override]
        return self._compare(other, operator.ne)

    def __lt__(self, other: Any) -> Tensor:
        return self._compare(other, operator.lt)

    def __le__(self, other: Any) -> Tensor:
        return self._compare(other, operator.le)

    def __gt__(self, other: Any) -> Tensor:
        return self._compare(other, operator.gt)

    def __ge__(self, other: Any) -> Tensor:
        return self._compare(other, operator.ge)

    __hash__ = object.__hash__  # identity, so tensors can key dicts and sets

    # -- reductions -------------------------------------------------------------
    def sum(self, dim: int | tuple[int, ...] | None = None, keepdim: bool = False) -> Tensor:
        return ops.Sum.apply(self, _dims(dim, self.ndim, "sum"), keepdim)

    def mean(self, dim: int | tuple[int, ...] | None = None, keepdim: bool = False) -> Tensor:
        return ops.Mean.apply(self, _dims(dim, self.ndim, "mean"), keepdim)

    def var(
        self,
        dim: int | tuple[int, ...] | None = None,
        unbiased: bool | None = None,
        keepdim: bool = False,
        *,
        correction: int | None = None,
    ) -> Tensor:
        """Variance; ``correction=1`` (the default, like ``unbiased=True``) divides by N - 1."""
        if correction is None:
            correction = 0 if unbiased is False else 1
        return ops.Var.apply(self, _dims(dim, self.ndim, "var"), correction, keepdim)

    def max(self, dim: int | None = None, keepdim: bool = False) -> Any:
        """``max()`` is the largest element; ``max(dim)`` returns ``(values, indices)``."""
        if self._data.size == 0 and (
            dim is None or self.shape[_dims(dim, self.ndim, "max")[0]] == 0
        ):
            raise ValueError("max: the tensor is empty along the reduced dim; there is no maximum")
        if dim is None:
            return ops.Max.apply(self)
        if not isinstance(dim, (int, np.integer)):
            raise TypeError(f"max: dim must be one int, got {dim!r}")
        _dims(dim, self.ndim, "max")
        if self.ndim == 0:
            return MaxResult(ops.Clone.apply(self), Tensor._wrap(np.array(0)))
        (axis,) = _dims(dim, self.ndim, "max")
        indices = np.expand_dims(np.argmax(self._data, axis=axis), axis)
        values = ops.MaxAlongDim.apply(self, indices, axis, keepdim)
        return MaxResult(values, Tensor._wrap(indices if keepdim else indices.squeeze(axis)))

    # -- shape ---------------------------------------------------------------------
    def reshape(self, *shape: Any) -> Tensor:
        shape = (
            tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        )
        return ops.Reshape.apply(self, shape)

    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        if self.ndim == 0:
            return self.reshape(1)
        start, end = (
            _dims((start_dim,), self.ndim, "flatten")[0],
            _dims((end_dim,), self.ndim, "flatten")[0],
        )
        if start > end:
            raise ValueError("flatten: start_dim must not come after end_dim")
        shape = self.shape
        merged = int(np.prod(shape[start : end + 1]))
        return self.reshape((*shape[:start], merged, *shape[end + 1 :]))

    def squeeze(self, dim: int | None = None) -> Tensor:
        if dim is None:
            return self.reshape(tuple(s for s in self.shape if s != 1))
        axes = _dims(dim, self.ndim, "squeeze")  # () for a 0-d tensor
        if not axes or self.shape[axes[0]] != 1:
            return self
        axis = axes[0]
        return self.reshape(self.shape[:axis] + self.shape[axis + 1 :])

    def unsqueeze(self, dim: int) -> Tensor:
        (axis,) = _dims(dim, self.ndim + 1, "unsqueeze")
        return self.reshape((*self.shape[:axis], 1, *self.shape[axis:]))

    def permute(self, *dims: Any) -> Tensor:
        dims = tuple(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
        axes = _dims(dims, self.ndim, "permute")
        if len(axes) != self.ndim:
            raise ValueError(f"permute: got {len(axes)} dims for a tensor with {self.ndim}")
        return ops.Permute.apply(self, axes)

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        a, b = _dims((dim0,), self.ndim, "transpose"), _dims((dim1,), self.ndim, "transpose")
        if self.ndim == 0:
            return self
        a, b = a[0], b[0]
        axes = list(range(self.ndim))
        axes[a], axes[b] = axes[b], axes[a]
        return ops.Permute.apply(self, tuple(axes))

    @property
    def T(self) -> Tensor:
        return self if self.ndim < 2 else ops.Permute.apply(self, tuple(reversed(range(self.ndim))))

    def __getitem__(self, index: Any) -> Tensor:
        return ops.GetItem.apply(self, _index_arrays(index))

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self) -> Iterator[Tensor]:
        return (self[i] for i in range(len(self)))

    # -- activations ---------------------------------------------------------------
    def relu(self) -> Tensor:
        return ops.ReLU.apply(self)

    def sigmoid(self) -> Tensor:
        return ops.Sigmoid.apply(self)

    def tanh(self) -> Tensor:
        return ops.Tanh.apply(self)

    def softmax(self, dim: int = -1) -> Tensor:
        return ops.Softmax.apply(self, _dims(dim, self.ndim, "softmax")[0] if self.ndim else 0)

    def log_softmax(self, dim: int = -1) -> Tensor:
        return ops.LogSoftmax.apply(
            self, _dims(dim, self.ndim, "log_softmax")[0] if self.ndim else 0
        )

    # -- in place ------------------------------------------------------------------
    def _writable(self, op: str) -> np.ndarray:
        """The array to write into, once the write is known to be safe for autograd."""
        if self._requires_grad and is_grad_enabled():
            if self.grad_fn is None:
                raise RuntimeError(
                    f"{op}: a leaf tensor that requires grad cannot be changed in place; "
                    "wrap the update in `with mg.no_grad():`"
                )
            raise RuntimeError(
                f"{op}: this tensor is part of a graph and backward may need its old value; "
                "use the out-of-place form"
            )
        if not self._data.flags.writeable:
            raise ValueError(
                f"{op}: this tensor's array is read-only (it shares memory with a read-only "
                "NumPy array); make a writable copy with .clone()"
            )
        self._version[0] += 1
        return self._data

    @staticmethod
    def _operand(value: Any) -> Any:
        return value._data if isinstance(value, Tensor) else value

    def add_(self, other: Tensor | Scalar, alpha: Scalar = 1) -> Tensor:
        out = self._writable("add_")
        other = self._operand(other)
        out += other if alpha == 1 else np.multiply(other, alpha)
        return self

    def sub_(self, other: Tensor | Scalar, alpha: Scalar = 1) -> Tensor:
        out = self._writable("sub_")
        other = self._operand(other)
        out -= other if alpha == 1 else np.multiply(other, alpha)
        return self

    def mul_(self, other: Tensor | Scalar) -> Tensor:
        out = self._writable("mul_")
        out *= self._operand(other)
        return self

    def div_(self, other: Tensor | Scalar) -> Tensor:
        out = self._writable("div_")
        out /= self._operand(other)
        return self

    def zero_(self) -> Tensor:
        self._writable("zero_")[...] = 0
        return self

    def fill_(self, value: Scalar) -> Tensor:
        self._writable("fill_")[...] = self._operand(value)
        return self

    def copy_(self, src: Tensor | np.ndarray) -> Tensor:
        out = self._writable("copy_")
        try:
            np.copyto(out, self._operand(src), casting="unsafe")
        except ValueError:
            raise ValueError(
                f"copy_: source of shape {np.shape(self._operand(src))} does not broadcast "
                f"to this tensor's shape {self.shape}"
            ) from None
        return self

    def clamp_(self, min: Scalar | None = None, max: Scalar | None = None) -> Tensor:
        if min is None and max is None:
            raise ValueError("clamp_: at least one of min and max must be given")
        out = self._writable("clamp_")
        np.clip(out, min, max, out=out)
        return self

    def __setitem__(self, index: Any, value: Any) -> None:
        self._writable("__setitem__")[_index_arrays(index)] = self._operand(value)

    __iadd__ = add_
    __isub__ = sub_
    __imul__ = mul_
    __itruediv__ = div_

    # -- Python protocol -------------------------------------------------------------
    def __bool__(self) -> bool:
        if self._data.size != 1:
            raise RuntimeError(
                f"the truth value of a tensor with {self._data.size} elements is ambiguous; "
                "use .any() or .all() on the array"
            )
        return bool(self._data)

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __repr__(self) -> str:
        body = np.array2string(self._data, separator=", ", prefix="tensor(")
        extras = ""
        if self.dtype != np.float32:
            extras += f", dtype=mg.{self.dtype}"
        if self.grad_fn is not None:
            extras += f", grad_fn={self.grad_fn!r}"
        elif self._requires_grad:
            extras += ", requires_grad=True"
        return f"tensor({body}{extras})"


def _joined(op: str, tensors: Any, dim: int, new_axis: bool) -> tuple[int, list[Tensor]]:
    """Check the inputs of cat/stack; return the normalized dim and the tensors."""
    tensors = list(tensors)
    if not tensors or not all(isinstance(t, Tensor) for t in tensors):
        raise TypeError(f"{op}: expected a non-empty sequence of Tensors")
    first = tensors[0]
    axis = _dims(dim, first.ndim + new_axis, op)[0]
    for i, t in enumerate(tensors):
        same = (
            t.shape == first.shape
            if new_axis
            else (
                t.ndim == first.ndim
                and all(
                    a == b
                    for k, (a, b) in enumerate(zip(t.shape, first.shape, strict=True))
                    if k != axis
                )
            )
        )
        if not same:
            rule = "the same shape" if new_axis else f"the same shape except in dim {axis}"
            raise ValueError(
                f"{op}: tensor {i} has shape {t.shape}, tensor 0 has {first.shape}; "
                f"they need {rule}"
            )
    return axis, tensors


def cat(tensors: Any, dim: int = 0) -> Tensor:
    """Join tensors along an existing dim."""
    axis, tensors = _joined("cat", tensors, dim, new_axis=False)
    if tensors[0].ndim == 0:
        raise ValueError("cat: zero-dimensional tensors cannot be concatenated; use stack")
    return ops.Cat.apply(axis, *tensors)


def stack(tensors: Any, dim: int = 0) -> Tensor:
    """Join tensors of one shape along a new dim."""
    axis, tensors = _joined("stack", tensors, dim, new_axis=True)
    return ops.Stack.apply(axis, *tensors)
