"""Draw the graph behind a tensor with Graphviz.

``to_dot(loss)`` returns DOT text: one box per op (the ``grad_fn`` nodes, with
the shape and dtype of what they produced), one ellipse per leaf tensor, and
the tensor itself at the bottom. Arrows follow the forward pass: input -> op ->
output. Once backward has run, leaves (and tensors that called
``retain_grad()``) also show the L2 norm of their gradient, and a NaN or Inf
gradient is drawn in red, so a vanishing or exploding layer stands out.

Inputs that need no gradient (the data, constants) are not part of the graph,
so they are not drawn. ``render(loss, "graph.svg")`` runs Graphviz's ``dot``
program on the text; ``to_dot`` itself needs nothing installed.

    params = dict(model.named_parameters())
    print(mg.viz.to_dot(loss, params=params))   # parameters labelled by name
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .autograd import Context
from .tensor import Tensor

__all__ = ["render", "to_dot"]

_COLORS = {"op": "lightgrey", "param": "lightblue", "leaf": "white", "output": "palegreen"}
_NON_FINITE_COLOR = "salmon"
_IMAGE_FORMATS = ("png", "svg", "pdf")


def _quote(lines: list[str]) -> str:
    """A DOT string literal whose lines are ``lines``."""
    escaped = (line.replace("\\", "\\\\").replace('"', '\\"') for line in lines)
    return '"' + "\\n".join(escaped) + '"'


def _describe(shape: tuple, dtype: np.dtype) -> str:
    return f"{tuple(shape)} {dtype}"


def _grad_line(tensor: Tensor | None) -> tuple[str | None, bool]:
    """The "grad norm" line of a tensor whose gradient is known, and whether it is finite."""
    if tensor is None or tensor.grad is None:
        return None, True
    # float64, so that a large float32 gradient does not overflow while squared.
    norm = float(np.linalg.norm(tensor.grad._data.astype(np.float64).ravel()))
    return f"grad norm {norm:.3g}", bool(np.isfinite(norm))


def _node(node_id: str, kind: str, lines: list[str], finite: bool = True) -> str:
    shape = "box" if kind == "op" else "ellipse"
    color = _COLORS[kind] if finite else _NON_FINITE_COLOR
    return f"    {node_id} [label={_quote(lines)}, shape={shape}, fillcolor={color}];"


def to_dot(
    tensor: Tensor, params: Mapping[str, Tensor] | Iterable[tuple[str, Tensor]] | None = None
) -> str:
    """Graphviz DOT text of the graph that produced ``tensor``.

    ``params`` maps names to tensors (``dict(model.named_parameters())`` or the
    iterator itself); those leaves are labelled with their name. Node ids
    (``n0``, ``n1``...) are given in the order the walk meets them, so the same
    graph always gives the same text. The walk uses an explicit stack: graphs
    of any depth work.
    """
    if not isinstance(tensor, Tensor):
        raise TypeError(f"to_dot: expected a Tensor, got {type(tensor).__name__}")
    names = {}
    for name, t in dict(params or {}).items():
        if not isinstance(t, Tensor):
            raise TypeError(f"to_dot: params[{name!r}] is a {type(t).__name__}, not a Tensor")
        # Keyed by identity: the tensors stay alive in `params` during the call.
        names[id(t)] = name
    # Imported here so that loading viz never depends on the order in which
    # minigrad/__init__ imports nn and viz.
    from .nn.parameter import Parameter

    # Kept apart so the text declares every node, in id order, before any edge.
    nodes: dict[str, str] = {}
    edges: list[str] = []
    ids: dict[Any, str] = {}

    def new_id(obj: Any) -> str:
        ids[obj] = f"n{len(ids)}"
        return ids[obj]

    def add_leaf(leaf: Tensor, output: bool = False) -> str:
        name = names.get(id(leaf))
        if output:
            kind, title = "output", "output"
        elif name is not None or isinstance(leaf, Parameter):
            kind, title = "param", "param" if name is None else f"param {name}"
        else:
            kind, title = "leaf", "leaf"
        grad, finite = _grad_line(leaf)
        label = [title, _describe(leaf.shape, leaf.dtype)] + ([grad] if grad else [])
        node_id = new_id(leaf)
        nodes[node_id] = _node(node_id, kind, label, finite)
        return node_id

    root_id = add_leaf(tensor, output=True)
    start = tensor.grad_fn
    stack: list[Context] = []
    if start is not None:
        new_id(start)
        edges.append(f"    {ids[start]} -> {root_id};")
        stack.append(start)
    while stack:
        ctx = stack.pop()
        label = [ctx.name()]
        finite = True
        several = len(ctx._output_meta) > 1
        for nr, (shape, dtype) in enumerate(ctx._output_meta):
            label.append((f"out {nr}: " if several else "") + _describe(shape, dtype))
            kept = ctx._retained[nr]() if ctx._retained and nr in ctx._retained else None
            grad, ok = _grad_line(kept)
            if grad:
                label.append(grad)
                finite = finite and ok
        nodes[ids[ctx]] = _node(ids[ctx], "op", label, finite)
        for edge in ctx._edges:
            if edge is None:
                continue
            if type(edge) is tuple:
                child, nr = edge
                if child not in ids:
                    new_id(child)
                    stack.append(child)
                edge_label = (
                    f" [label={_quote([f'out {nr}'])}]" if len(child._output_meta) > 1 else ""
                )
                edges.append(f"    {ids[child]} -> {ids[ctx]}{edge_label};")
            else:
                leaf_id = ids[edge] if edge in ids else add_leaf(edge)
                edges.append(f"    {leaf_id} -> {ids[ctx]};")
    header = ["digraph minigrad {", '    node [style=filled, fontname="Helvetica", fontsize=10];']
    declared = [nodes[node_id] for node_id in ids.values()]
    return "\n".join([*header, *declared, *edges, "}"]) + "\n"


def render(
    tensor: Tensor,
    path: str | os.PathLike,
    format: str | None = None,
    params: Mapping[str, Tensor] | Iterable[tuple[str, Tensor]] | None = None,
) -> str:
    """Write the graph behind ``tensor`` to ``path`` and return the path.

    The format comes from ``format`` or the path's suffix: png, svg and pdf go
    through Graphviz's ``dot`` program; dot and gv write the DOT text itself.
    """
    path = os.fspath(path)
    fmt = (format or os.path.splitext(path)[1].lstrip(".")).lower()
    if fmt not in (*_IMAGE_FORMATS, "dot", "gv"):
        raise ValueError(
            f"render: cannot tell the format of {path!r}; use a .png, .svg, .pdf or .dot "
            "path, or pass format="
        )
    text = to_dot(tensor, params=params)
    if fmt in ("dot", "gv"):
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError(
            "render: Graphviz's `dot` program was not found on PATH; install Graphviz "
            "(`apt-get install graphviz`, `brew install graphviz` or `conda install graphviz`), "
            "or call mg.viz.to_dot(tensor), which needs nothing installed, and render its text "
            "elsewhere"
        )
    result = subprocess.run(
        [dot, f"-T{fmt}", "-o", path], input=text.encode("utf-8"), capture_output=True
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"render: `dot -T{fmt}` failed with exit code {result.returncode}: "
            f"{result.stderr.decode(errors='replace').strip()}"
        )
    return path
