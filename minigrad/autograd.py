"""The autograd engine: Functions record a graph in forward; backward walks it.

Every differentiable op is a ``Function`` with a static ``forward(ctx, ...)``
and ``backward(ctx, *grads)``. Both work on the NumPy arrays under the tensors:
``apply`` unwraps Tensor arguments into arrays, calls ``forward``, and wraps
the result in Tensors. The ``ctx`` it passes is a ``Context``; when any input
needs a gradient, that same Context becomes the output's ``grad_fn``: the node
of the graph. A node knows only its Function, what forward saved, and for each
input an edge to where that input's gradient goes (another node, or a leaf
tensor whose ``.grad`` accumulates it). Nodes never hold their outputs, so the
graph is freed as soon as the last tensor referring to it is.

``backward`` orders the nodes with an explicit stack and a dependency count
(Kahn's algorithm), so a graph of any depth works without recursion. A
gradient that broadcasting made larger than its input is summed back to the
input's shape in exactly one place: ``_sum_to_shape``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import traceback
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .backend import pool

__all__ = [
    "Context",
    "Function",
    "GradcheckError",
    "detect_anomaly",
    "enable_grad",
    "gradcheck",
    "is_anomaly_enabled",
    "is_grad_enabled",
    "no_grad",
]

# ---------------------------------------------------------------------------
# Grad mode and anomaly mode
# ---------------------------------------------------------------------------


class _GradState(threading.local):
    """Grad mode, per thread as in PyTorch. The class attribute is every thread's
    default, so reading it is a plain attribute lookup: ``getattr`` with a
    default costs ten times as much when the attribute was never set."""

    grad_enabled = True


_local = _GradState()
_anomaly = {"enabled": False}


def is_grad_enabled() -> bool:
    return _local.grad_enabled


class _GradMode(contextlib.ContextDecorator):
    """Sets grad mode inside a ``with`` block or a decorated function."""

    enabled = True

    def __enter__(self) -> None:
        self._previous = is_grad_enabled()
        _local.grad_enabled = self.enabled

    def __exit__(self, *exc: object) -> None:
        _local.grad_enabled = self._previous


class no_grad(_GradMode):
    """Ops inside record no graph: use it for evaluation and in-place updates."""

    enabled = False


class enable_grad(_GradMode):
    """Turns graph recording back on inside a ``no_grad`` block."""

    enabled = True


def is_anomaly_enabled() -> bool:
    return _anomaly["enabled"]


class detect_anomaly(contextlib.ContextDecorator):
    """Raise at the first op whose forward or backward turns finite values into NaN/Inf.

    Each op records where in user code it was created, so the error names the op
    and the line. It costs a stack walk per op: use it to debug, not to train.
    """

    def __enter__(self) -> None:
        self._previous = _anomaly["enabled"]
        _anomaly["enabled"] = True

    def __exit__(self, *exc: object) -> None:
        _anomaly["enabled"] = self._previous


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _user_frame(stack: traceback.StackSummary) -> str:
    """The innermost frame outside minigrad: the line the user wrote."""
    for frame in reversed(stack):
        if not os.path.abspath(frame.filename).startswith(_PACKAGE_DIR):
            return (
                f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}\n    {frame.line}'
            )
    return "  (created inside minigrad)"


def _non_finite(arrays: Sequence[Any]) -> bool:
    for a in arrays:
        if isinstance(a, np.ndarray) and a.dtype.kind == "f" and not np.isfinite(a).all():
            return True
    return False


# ---------------------------------------------------------------------------
# Context: what forward saves, and the graph node
# ---------------------------------------------------------------------------

_FREED = "freed"


class Context:
    """Passed to ``forward`` and ``backward``; in a graph it is also the node (``grad_fn``).

    - ``save_for_backward(*arrays)`` keeps what backward needs; ``saved_tensors``
      returns it. Saved arrays are released after backward (unless
      ``retain_graph``), so save big arrays only this way, never as attributes.
    - ``needs_input_grad``: one bool per forward argument; backward may return
      None for the inputs that are False.
    - Small non-array values (a dim, a shape) may be stored as plain attributes.
    """

    # Most nodes never get hooks, retained grads or a recorded stack: these
    # class-level defaults are replaced per node only when one does.
    _hooks: dict[int, list[Callable]] | None = None
    _retained: dict[int, weakref.ref] | None = None
    _stack: traceback.StackSummary | None = None
    _edges: tuple = ()  # per input: None, a leaf Tensor, or (node, output index)
    _input_meta: tuple = ()  # per input: (shape, dtype), or None if it needs no grad
    _output_meta: tuple = ()  # per output: (shape, dtype)
    _saved_versions: tuple = ()  # (version counter, value when saved) per saved input

    def __init__(self, function: type[Function], needs_input_grad: tuple[bool, ...] = ()) -> None:
        self.function = function
        self.needs_input_grad = needs_input_grad
        self._saved: tuple | str = ()

    def save_for_backward(self, *arrays: Any) -> None:
        self._saved = arrays

    @property
    def saved_tensors(self) -> tuple:
        if self._saved is _FREED:
            raise RuntimeError(
                f"{self.name()}: trying to backward through the graph a second time; its "
                "saved values were freed by the first backward. Call the first "
                "backward with retain_graph=True if you need to backward twice."
            )
        for counter, value in self._saved_versions:
            if counter[0] != value:
                raise RuntimeError(
                    f"{self.name()}: an input this op saved for backward was changed in place "
                    "after the forward pass, so its gradient would be wrong; change a copy "
                    "(.clone()) instead, or do the in-place update after backward"
                )
        return self._saved

    @property
    def next_functions(self) -> tuple:
        """Per forward argument, where its gradient goes: ``(node, output index)``
        for a tensor made by an op, ``(leaf tensor, 0)`` for a leaf, and
        ``(None, 0)`` for an argument that needs no gradient (PyTorch's name)."""
        return tuple(edge if type(edge) is tuple else (edge, 0) for edge in self._edges)

    def name(self) -> str:
        return f"{self.function.__name__}Backward"

    def __repr__(self) -> str:
        return f"<{self.name()}>"


# ---------------------------------------------------------------------------
# Function
# ---------------------------------------------------------------------------


class Function:
    """Base class of every differentiable op, built-in or user-defined.

    Subclass it with two static methods and call ``MyOp.apply(*args)``::

        class Cube(Function):
            @staticmethod
            def forward(ctx, x):          # x is the NumPy array of the input
                ctx.save_for_backward(x)
                return x**3

            @staticmethod
            def backward(ctx, grad):      # grad: array shaped like the output
                (x,) = ctx.saved_tensors
                return grad * 3 * x**2    # one gradient per forward argument

    Tensor arguments arrive as arrays; other arguments (numbers, dims) arrive
    unchanged. ``forward`` returns an array or a tuple of arrays; ``backward``
    returns one gradient per ``forward`` argument (None where there is none).
    A gradient may have the broadcast shape; it is summed to the input's shape.
    """

    @staticmethod
    def forward(ctx: Context, *args: Any) -> Any:
        raise NotImplementedError

    @staticmethod
    def backward(ctx: Context, *grads: np.ndarray) -> Any:
        raise NotImplementedError

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Any:
        # The hot path of every op: plain loops, no generators, no repeated
        # attribute look-ups; a graph node is recorded only if some input needs
        # a gradient.
        grad_on = _local.grad_enabled  # is_grad_enabled(), inlined
        any_need = False
        arrays = []
        needs = []
        for arg in args:
            if isinstance(arg, Tensor):
                arrays.append(arg._data)
                need = grad_on and arg._requires_grad
                any_need = any_need or need
                needs.append(need)
            else:
                arrays.append(arg)
                needs.append(False)
        ctx = Context(cls, tuple(needs))
        anomaly = _anomaly["enabled"]
        if anomaly:
            ctx._stack = traceback.extract_stack()[:-1]

        raw = cls.forward(ctx, *arrays, **kwargs)
        single = type(raw) is not tuple
        if single:
            out = raw if type(raw) is np.ndarray else _as_array(raw)
            outputs = (out,)
        else:
            outputs = tuple([_as_array(r) for r in raw])
        if anomaly and _non_finite(outputs) and not _non_finite(arrays):
            raise FloatingPointError(
                f"{cls.__name__} produced NaN or Inf in its forward from finite inputs; "
                f"it was called at\n{_user_frame(ctx._stack)}"
            )

        wrap = Tensor._wrap
        if not any_need:
            if single:
                if out.base is None:
                    return wrap(out)
                # a view shares its base's version counter (see _version_of_viewed)
                return wrap(out, None, 0, _version_of_viewed(out, args))
            return tuple([wrap(o) for o in outputs])

        if ctx._saved:
            ctx._saved_versions = _versions_of_saved_inputs(ctx._saved, args)
        edges = []
        input_meta = []
        for i, arg in enumerate(args):
            if needs[i]:
                node = arg.grad_fn
                edges.append(arg if node is None else (node, arg._output_nr))
                data = arg._data
                input_meta.append((data.shape, data.dtype))
            else:
                edges.append(None)
                input_meta.append(None)
        ctx._edges = tuple(edges)
        ctx._input_meta = tuple(input_meta)
        if single:
            ctx._output_meta = ((out.shape, out.dtype),)
            return wrap(out, ctx) if out.dtype.kind == "f" else wrap(out)
        ctx._output_meta = tuple([(o.shape, o.dtype) for o in outputs])
        return tuple(
            [wrap(o, ctx, i) if o.dtype.kind == "f" else wrap(o) for i, o in enumerate(outputs)]
        )


def _root(array: np.ndarray) -> np.ndarray:
    while array.base is not None and isinstance(array.base, np.ndarray):
        array = array.base
    return array


def _version_of_viewed(view: np.ndarray, args: tuple) -> list | None:
    """A view (reshape, indexing, transpose) shares the version counter of its base
    tensor, so writing through the view is seen by graphs that saved the base."""
    root = _root(view)
    for arg in args:
        if isinstance(arg, Tensor) and _root(arg._data) is root:
            return arg._version
    return None


def _as_array(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, Tensor):
        return value._data
    return np.asarray(value)


def _versions_of_saved_inputs(saved: tuple, args: tuple) -> tuple:
    """Note the version of every input tensor whose array forward saved."""
    versions = []
    for arg in args:
        if isinstance(arg, Tensor):
            data = arg._data
            for item in saved:
                if item is data:
                    versions.append((arg._version, arg._version[0]))
                    break
    return tuple(versions)


# ---------------------------------------------------------------------------
# backward
# ---------------------------------------------------------------------------


def _sum_to_shape(
    grad: np.ndarray, shape: tuple, dtype: np.dtype, ctx: Context, i: int
) -> np.ndarray:
    """Undo broadcasting: sum ``grad`` over the axes along which the input was stretched."""
    grad = _as_array(grad)
    if grad.shape != shape:
        lead = grad.ndim - len(shape)
        if lead < 0 or any(
            s != 1 and g != s for s, g in zip(shape, grad.shape[lead:], strict=True)
        ):
            raise RuntimeError(
                f"{ctx.name()} returned a gradient of shape {grad.shape} for input {i}, "
                f"which has shape {shape}: the gradient must have the input's shape "
                "or one that broadcasts from it"
            )
        stretched = tuple(
            lead + k for k, s in enumerate(shape) if s == 1 and grad.shape[lead + k] != 1
        )
        grad = grad.sum(axis=tuple(range(lead)) + stretched, keepdims=True)
        grad = grad.reshape(shape)
    if grad.dtype != dtype:
        grad = grad.astype(dtype)
    return grad


def _run_hooks(hooks: list[Callable], grad: np.ndarray) -> np.ndarray:
    for hook in hooks:
        replaced = hook(Tensor._wrap(grad))
        if replaced is not None:
            grad = _as_array(replaced)
    return grad


def _accumulate(tensor: Tensor, grad: np.ndarray) -> None:
    """Add ``grad`` into ``tensor.grad``.

    The first gradient becomes ``.grad`` itself when nothing else refers to it
    (PyTorch steals it the same way); otherwise it is copied, since another
    branch of the graph, a hook or the caller may hold the same array.
    """
    if tensor.grad is not None:
        tensor.grad._data += grad
    elif _unshared(grad) and grad.dtype == tensor._data.dtype:
        tensor.grad = Tensor._wrap(grad)
    else:
        copy = pool.empty(grad.shape, tensor._data.dtype)
        np.copyto(copy, grad)
        tensor.grad = Tensor._wrap(copy)


def _refs_when_unshared() -> int:
    """The reference count ``_unshared`` sees for an array that only
    ``run_backward`` holds, measured through the same chain of calls, so the
    interpreter's own conventions for counting do not matter."""

    def accumulate(tensor: Any, grad: np.ndarray) -> int:
        return unshared(grad)

    def unshared(grad: np.ndarray) -> int:
        return sys.getrefcount(grad)

    g = np.empty(1)
    return accumulate(None, g)


_REFS_WHEN_UNSHARED = _refs_when_unshared()


def _refs_of_reshaped() -> int:
    """The reference count of an array that only one reshape of it refers to, as
    ``_unshared`` sees it (the view's reference, a local name, the argument)."""
    view = np.empty(4).reshape(2, 2)
    base = view.base
    return sys.getrefcount(base)


_REFS_OF_RESHAPED = _refs_of_reshaped()


def _unshared(grad: np.ndarray) -> bool:
    """Whether only the backward pass refers to ``grad``: it owns its memory (or
    is a reshape of a whole array nobody else refers to), is writable and
    C-contiguous, and its reference count is that of an array held by
    ``run_backward`` alone (plus the pool's reference when the pool made it)."""
    if type(grad) is not np.ndarray:
        return False
    base = grad.base
    if base is not None:
        # A reshape of a whole array (what most ops' backward returns) is as
        # good as the array, if nothing but the reshape refers to that array.
        if type(base) is not np.ndarray or base.base is not None or base.size != grad.size:
            return False
        if sys.getrefcount(base) > _REFS_OF_RESHAPED + pool.POOL.holds(base):
            return False
        del base
    if not grad.flags.carray:  # writeable, aligned and C-contiguous
        return False
    return sys.getrefcount(grad) <= _REFS_WHEN_UNSHARED + pool.POOL.holds(grad)


# As a decorator, errstate costs less than half of what its ``with`` form does
# (no object and no method calls per use), and it is as safe across threads.
@np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore")
def run_backward(root: Tensor, grad: np.ndarray, retain_graph: bool = False) -> None:
    """Propagate ``grad`` (d output / d root) from ``root`` to every leaf that needs it.

    NumPy's floating-point warnings are off for the pass: an infinite gradient
    (sqrt's at 0, say) is a value here, as in PyTorch, not a fault in code the
    user wrote. ``detect_anomaly`` is the tool that reports where one arose.
    """
    if root.grad_fn is None:
        _accumulate(root, _run_hooks(root._hooks, grad))
        return
    leaf_grads = _propagate(root, grad, retain_graph)
    # popped, so that only this frame refers to a gradient _accumulate may keep
    while leaf_grads:
        leaf, g = leaf_grads.popitem()
        if leaf._hooks:
            g = _run_hooks(leaf._hooks, g)
        _accumulate(leaf, g)


def _propagate(root: Tensor, grad: np.ndarray, retain_graph: bool) -> dict:
    """Run every node's backward in topological order; return the gradient of
    each leaf, summed over the paths that reach it."""
    # Count, for every node reachable from the root, how many edges lead into it.
    start = root.grad_fn
    dependencies = {start: 0}
    stack = [start]
    while stack:
        node = stack.pop()
        for edge in node._edges:
            if type(edge) is tuple:
                child = edge[0]
                if child in dependencies:
                    dependencies[child] += 1
                else:
                    dependencies[child] = 1
                    stack.append(child)

    # Visit a node once all gradients flowing into it have arrived. Leaf
    # gradients are summed first, so a leaf's hooks see the total once.
    leaf_grads: dict[Tensor, np.ndarray] = {}
    pending: dict[Context, list] = {start: [None] * len(start._output_meta)}
    pending[start][root._output_nr] = grad
    ready = [start]
    while ready:
        node = ready.pop()
        output_grads = pending.pop(node, None)
        input_grads: tuple = ()
        if output_grads is not None:
            input_grads = _backward_node(node, output_grads, retain_graph)
        for i, edge in enumerate(node._edges):
            g = input_grads[i] if i < len(input_grads) else None
            if edge is None:
                continue
            if type(edge) is not tuple:  # a leaf
                if g is not None:
                    leaf_grads[edge] = g if edge not in leaf_grads else leaf_grads[edge] + g
                continue
            child, nr = edge
            if g is not None:
                slots = pending.get(child)
                if slots is None:
                    slots = pending[child] = [None] * len(child._output_meta)
                slots[nr] = g if slots[nr] is None else slots[nr] + g
            dependencies[child] -= 1
            if dependencies[child] == 0:
                ready.append(child)
    return leaf_grads


def _prepare_output_grads(node: Context, output_grads: list) -> None:
    """Zeros for the outputs no gradient reached; then the outputs' hooks and
    retained grads see their gradients."""
    hooks, retained = node._hooks, node._retained
    for nr, g in enumerate(output_grads):
        if g is None:
            g = output_grads[nr] = np.zeros(*node._output_meta[nr])
        if hooks and nr in hooks:
            g = output_grads[nr] = _run_hooks(hooks[nr], g)
        if retained and nr in retained:
            kept = retained[nr]()
            if kept is not None:
                _accumulate(kept, g)


def _backward_node(node: Context, output_grads: list, retain_graph: bool) -> tuple:
    """Run one node's backward; return one gradient (or None) per input."""
    # With one output, its gradient is there (the node would not be pending
    # otherwise), so only hooks and retained grads need _prepare_output_grads.
    if len(output_grads) > 1 or node._hooks or node._retained:
        _prepare_output_grads(node, output_grads)
    grads = node.function.backward(node, *output_grads)
    if not isinstance(grads, tuple):
        grads = (grads,)
    input_meta = node._input_meta
    if len(grads) > len(input_meta):
        raise RuntimeError(
            f"{node.name()} returned {len(grads)} gradients but its forward took "
            f"{len(input_meta)} arguments"
        )
    checked = []
    # a Function may return fewer gradients than inputs: the rest are None
    for i, g in enumerate(grads):
        meta = input_meta[i]
        if g is None or meta is None:
            checked.append(None)
        elif type(g) is np.ndarray and g.shape == meta[0] and g.dtype == meta[1]:
            checked.append(g)  # the common case: already the input's shape and dtype
        else:
            checked.append(_sum_to_shape(g, meta[0], meta[1], node, i))
    grads = tuple(checked)
    if _anomaly["enabled"] and _non_finite(grads) and not _non_finite(output_grads):
        where = _user_frame(node._stack) if node._stack else "  (created outside detect_anomaly)"
        raise FloatingPointError(
            f"{node.name()} produced NaN or Inf in its backward from finite gradients; "
            f"the op was created at\n{where}"
        )
    if not retain_graph and node._saved != ():
        node._saved = _FREED
    return grads


# ---------------------------------------------------------------------------
# gradcheck
# ---------------------------------------------------------------------------


class GradcheckError(RuntimeError):
    """Analytic and numerical gradients disagree."""


def gradcheck(
    fn: Callable[..., Tensor],
    inputs: Sequence[Any],
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
) -> bool:
    """Compare backward's Jacobian with central finite differences in float64.

    ``inputs`` are passed to ``fn`` in order; every float64 Tensor among them
    with ``requires_grad`` is checked. Returns True, or raises GradcheckError
    naming the worst element: input, position, output element, both values.
    """
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t._requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input is a Tensor with requires_grad=True")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(
                f"gradcheck: input {i} is {inputs[i].dtype}; finite differences need "
                "float64 inputs (create them with dtype=mg.float64)"
            )

    def evaluate() -> np.ndarray:
        with no_grad():
            return np.array(_as_array(fn(*inputs)), dtype=np.float64).ravel()

    out = fn(*inputs)
    n_out = out._data.size
    numerical = {}
    for i in checked:
        x = inputs[i]._data
        if not (x.flags.c_contiguous and x.flags.writeable):
            x = inputs[i]._data = np.array(x, order="C")
        flat = x.reshape(-1)  # a view: each element is nudged in place and restored
        jac = np.zeros((x.size, n_out))
        for k in range(x.size):
            original = flat[k]
            flat[k] = original + eps
            plus = evaluate()
            flat[k] = original - eps
            minus = evaluate()
            flat[k] = original
            jac[k] = (plus - minus) / (2 * eps)
        numerical[i] = jac

    analytic = {i: np.zeros((inputs[i]._data.size, n_out)) for i in checked}
    for j in range(n_out):
        for i in checked:
            inputs[i].grad = None
        seed = np.zeros(out._data.size, dtype=out._data.dtype)
        seed[j] = 1.0
        if out.grad_fn is not None or out._requires_grad:
            run_backward(out, seed.reshape(out.shape), retain_graph=True)
        for i in checked:
            g = inputs[i].grad
            if g is not None:
                analytic[i][:, j] = g._data.ravel()
    for i in checked:
        inputs[i].grad = None

    for i in checked:
        a, n = analytic[i], numerical[i]
        excess = np.abs(a - n) - (atol + rtol * np.abs(n))
        if excess.size and (excess.max() > 0 or not np.isfinite(a).all()):
            flat_idx = int(np.nanargmax(np.where(np.isfinite(excess), excess, np.inf)))
            k, j = np.unravel_index(flat_idx, excess.shape)
            position = np.unravel_index(k, inputs[i].shape)
            raise GradcheckError(
                f"gradcheck: Jacobian mismatch for input {i} at element "
                f"{tuple(map(int, position))}, "
                f"output element {int(j)}: numerical {n[k, j]:.10g}, analytic {a[k, j]:.10g} "
                f"(atol={atol}, rtol={rtol})"
            )
    return True


# tensor.py imports this module, so the Tensor class is bound last.
from .tensor import Tensor  # noqa: E402
