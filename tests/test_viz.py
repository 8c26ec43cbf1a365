"""mg.viz: DOT text of the graph behind a tensor, and rendering it with Graphviz."""

import re
import shutil

import numpy as np
import pytest

import minigrad as mg
from minigrad import viz
from minigrad.nn import Parameter

NODE = re.compile(r'^    (n\d+) \[label="((?:[^"\\]|\\.)*)", shape=(\w+), fillcolor=(\w+)\];$')
EDGE = re.compile(r'^    (n\d+) -> (n\d+)(?: \[label="((?:[^"\\]|\\.)*)"\])?;$')


def parse(dot):
    """Nodes as {id: (label lines, shape, color)} and edges as [(src, dst, label)],
    after checking that every line is one this module writes."""
    lines = dot.splitlines()
    assert lines[0] == "digraph minigrad {"
    assert lines[1].startswith("    node [")
    assert lines[-1] == "}"
    nodes, edges = {}, []
    for line in lines[2:-1]:
        if m := NODE.match(line):
            assert m[1] not in nodes, f"node {m[1]} declared twice"
            assert not edges, "a node declared after an edge"
            nodes[m[1]] = (m[2].split("\\n"), m[3], m[4])
        elif m := EDGE.match(line):
            edges.append((m[1], m[2], m[3]))
        else:
            raise AssertionError(f"unexpected DOT line: {line!r}")
    for src, dst, _ in edges:
        assert src in nodes and dst in nodes, (src, dst)
    return nodes, edges


def by_title(nodes, title):
    return [i for i, (label, _, _) in nodes.items() if label[0] == title]


def test_small_graph_structure():
    a = mg.randn(2, 3, requires_grad=True)
    b = mg.randn(2, 3, requires_grad=True)
    c = mg.randn(3, requires_grad=True)
    y = (a * b + c).sum()
    nodes, edges = parse(viz.to_dot(y))

    (mul,) = by_title(nodes, "MulBackward")
    (add,) = by_title(nodes, "AddBackward")
    (total,) = by_title(nodes, "SumBackward")
    (out,) = by_title(nodes, "output")
    leaves = by_title(nodes, "leaf")
    assert len(leaves) == 3
    assert len(nodes) == 7
    edge_set = {(s, d) for s, d, _ in edges}
    assert (mul, add) in edge_set and (add, total) in edge_set and (total, out) in edge_set
    into_mul = [s for s, d in edge_set if d == mul]
    into_add = [s for s, d in edge_set if d == add]
    assert sorted(nodes[s][0][1] for s in into_mul) == ["(2, 3) float32", "(2, 3) float32"]
    assert sorted(nodes[s][0][1] for s in into_add) == ["(2, 3) float32", "(3,) float32"]
    assert nodes[mul][0][1:] == ["(2, 3) float32"]
    assert nodes[out][0][1:] == ["() float32"]
    assert nodes[mul][1] == "box" and nodes[leaves[0]][1] == "ellipse"


def test_inputs_that_need_no_grad_are_not_drawn():
    w = mg.randn(3, requires_grad=True)
    x = mg.randn(3)  # data
    nodes, edges = parse(viz.to_dot((w * x).sum()))
    assert len(by_title(nodes, "leaf")) == 1
    assert len(edges) == 3


def test_dtypes_and_shapes_shown():
    x = mg.randn(4, 5, dtype=mg.float64, requires_grad=True)
    y = x.reshape(20).exp().mean()
    nodes, _ = parse(viz.to_dot(y))
    (reshape,) = [i for i, (label, _, _) in nodes.items() if "Reshape" in label[0]]
    assert nodes[reshape][0][1] == "(20,) float64"
    (leaf,) = by_title(nodes, "leaf")
    assert nodes[leaf][0][1] == "(4, 5) float64"


def test_grad_norm_shown_after_backward_only():
    x = mg.randn(3, 4, requires_grad=True)
    y = (x * x).sum()
    nodes, _ = parse(viz.to_dot(y))
    assert not any("grad norm" in line for label, _, _ in nodes.values() for line in label)

    y.backward()
    nodes, _ = parse(viz.to_dot(y))
    (leaf,) = by_title(nodes, "leaf")
    expected = np.linalg.norm(2 * x.detach().numpy())
    assert nodes[leaf][0][2] == f"grad norm {expected:.3g}"
    # the output is not a leaf and did not retain its grad: nothing to show
    (out,) = by_title(nodes, "output")
    assert len(nodes[out][0]) == 2


def test_retained_grads_are_shown_on_ops_and_output():
    x = mg.randn(3, requires_grad=True)
    h = x.exp()
    h.retain_grad()
    y = (h * 3.0).sum()
    y.retain_grad()
    y.backward()
    nodes, _ = parse(viz.to_dot(y))
    (exp,) = by_title(nodes, "ExpBackward")
    assert nodes[exp][0][2] == f"grad norm {np.linalg.norm(np.full(3, 3.0)):.3g}"
    (out,) = by_title(nodes, "output")
    assert nodes[out][0][2] == "grad norm 1"


@pytest.mark.filterwarnings("ignore:divide by zero")
def test_non_finite_gradient_is_highlighted():
    x = mg.tensor([0.0, 1.0], requires_grad=True)
    y = x.sqrt().sum()  # d sqrt(x)/dx is inf at 0
    y.backward()
    nodes, _ = parse(viz.to_dot(y))
    (leaf,) = by_title(nodes, "leaf")
    assert nodes[leaf][0][2] == "grad norm inf"
    assert nodes[leaf][2] == "salmon"


def test_large_float32_gradient_norm_does_not_overflow():
    x = mg.ones(4, requires_grad=True)
    x.grad = mg.full((4,), 3e30)  # its square overflows float32
    nodes, _ = parse(viz.to_dot(x))
    assert nodes["n0"][0][2] == "grad norm 6e+30"


def test_parameters_are_labelled_by_name():
    w = Parameter(mg.randn(4, 3))
    b = Parameter(mg.zeros(4))
    x = mg.randn(2, 3, requires_grad=True)
    y = (x @ w.T + b).sum()
    nodes, _ = parse(viz.to_dot(y, params={"fc.weight": w, "fc.bias": b}))
    titles = sorted(label[0] for label, _, _ in nodes.values() if label[0].startswith("param"))
    assert titles == ["param fc.bias", "param fc.weight"]
    assert len(by_title(nodes, "leaf")) == 1
    # an iterator of (name, tensor) pairs works too, and unnamed Parameters are "param"
    nodes, _ = parse(viz.to_dot(y, params=iter([("fc.weight", w)])))
    assert len(by_title(nodes, "param fc.weight")) == 1
    assert len(by_title(nodes, "param")) == 1
    assert nodes[by_title(nodes, "param")[0]][2] == "lightblue"


def test_names_with_quotes_and_backslashes_are_escaped():
    w = mg.randn(2, requires_grad=True)
    nodes, _ = parse(viz.to_dot(w.sum(), params={'a "quoted" \\ name': w}))
    assert by_title(nodes, 'param a \\"quoted\\" \\\\ name')


def test_shared_inputs_and_subgraphs_appear_once():
    x = mg.randn(3, requires_grad=True)
    a = x.exp()
    y = (a * a + a).sum()
    nodes, edges = parse(viz.to_dot(y))
    assert len(by_title(nodes, "leaf")) == 1
    assert len(by_title(nodes, "ExpBackward")) == 1
    (exp,) = by_title(nodes, "ExpBackward")
    assert sum(1 for s, _, _ in edges if s == exp) == 3  # a*a uses it twice, + a once


def test_multi_output_ops_label_their_outputs():
    class Split(mg.Function):
        @staticmethod
        def forward(ctx, x):
            return x[:2].copy(), x[2:].copy()

        @staticmethod
        def backward(ctx, g1, g2):
            return np.concatenate([g1, g2])

    x = mg.randn(5, requires_grad=True)
    first, second = Split.apply(x)
    y = (first.sum() + second.sum() * 2.0).sum()
    nodes, edges = parse(viz.to_dot(y))
    (split,) = by_title(nodes, "SplitBackward")
    assert nodes[split][0][1:] == ["out 0: (2,) float32", "out 1: (3,) float32"]
    assert sorted(label for s, _, label in edges if s == split) == ["out 0", "out 1"]


def test_leaf_and_plain_tensors_are_a_single_node():
    for t in (mg.randn(3, requires_grad=True), mg.ones(2, 2), mg.tensor([1, 2])):
        nodes, edges = parse(viz.to_dot(t))
        assert list(nodes) == ["n0"] and edges == []


def test_deep_chain_is_walked_without_recursion():
    x = mg.randn(2, requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0
    nodes, edges = parse(viz.to_dot(y))
    assert len(by_title(nodes, "MulBackward")) == 10_000
    assert len(edges) == 10_001


def test_ids_are_stable_across_runs_and_graphs():
    def build():
        x = mg.ones(3, requires_grad=True)
        w = mg.ones(3, requires_grad=True)
        return ((x * w).exp() + x).mean()

    first = viz.to_dot(build())
    assert first == viz.to_dot(build())
    y = build()
    assert viz.to_dot(y) == viz.to_dot(y)
    ids = re.findall(r"^    (n\d+) \[", first, flags=re.M)
    assert ids == [f"n{i}" for i in range(len(ids))]


def test_to_dot_refuses_non_tensors():
    with pytest.raises(TypeError, match="expected a Tensor"):
        viz.to_dot(np.ones(3))
    with pytest.raises(TypeError, match=r"params\['w'\]"):
        viz.to_dot(mg.ones(1), params={"w": np.ones(1)})


# ---------------------------------------------------------------------------
# render
# ---------------------------------------------------------------------------


def _loss():
    w = mg.randn(3, 2, requires_grad=True)
    return (mg.randn(4, 3) @ w).relu().sum()


def test_render_without_graphviz_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match=r"apt-get install graphviz.*to_dot"):
        viz.render(_loss(), tmp_path / "graph.png")
    assert not (tmp_path / "graph.png").exists()


def test_render_dot_text_needs_no_graphviz(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    loss = _loss()
    path = viz.render(loss, tmp_path / "graph.dot")
    assert (tmp_path / "graph.dot").read_text() == viz.to_dot(loss)
    assert path == str(tmp_path / "graph.dot")


def test_render_refuses_unknown_formats(tmp_path):
    with pytest.raises(ValueError, match="format"):
        viz.render(_loss(), tmp_path / "graph.jpeg2000")
    with pytest.raises(ValueError, match="format"):
        viz.render(_loss(), tmp_path / "graph")


def test_render_reports_a_failing_dot(tmp_path, monkeypatch):
    fake = tmp_path / "dot"
    fake.write_text("#!/bin/sh\necho 'syntax error in line 1' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setattr(shutil, "which", lambda name: str(fake))
    with pytest.raises(RuntimeError, match=r"exit code 3: syntax error in line 1"):
        viz.render(_loss(), tmp_path / "graph.svg")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
@pytest.mark.parametrize(
    ("name", "format", "magic"),
    [
        ("g.svg", None, b"<?xml"),
        ("g.png", None, b"\x89PNG"),
        ("g.pdf", None, b"%PDF"),
        ("g.out", "png", b"\x89PNG"),
        ("G.SVG", None, b"<?xml"),
    ],
)
def test_render_with_graphviz(tmp_path, name, format, magic):
    path = viz.render(_loss(), tmp_path / name, format=format)
    assert path == str(tmp_path / name)
    assert (tmp_path / name).read_bytes().startswith(magic)


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_graphviz_accepts_escaped_names(tmp_path):
    w = mg.randn(2, requires_grad=True)
    (w * w).sum().backward()
    viz.render(w.sum(), tmp_path / "g.svg", params={'odd "name" \\ {x}; ->': w})
    assert "odd" in (tmp_path / "g.svg").read_text()
