"""GradientMonitor: per-layer gradient, update and activation statistics, step by step.

Usage, in an ordinary training loop::

    monitor = GradientMonitor(model)
    for xb, yb in loader:
        loss = loss_fn(model(xb), yb)    # forward hooks record activations
        optimizer.zero_grad()
        loss.backward()
        monitor.step()                   # reads the gradients now
        total = nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        monitor.record_clip(total, 1.0)  # optional: only if you clip by norm
        optimizer.step()
    monitor.report()

``step()`` is an explicit call, placed right after ``backward()``, because
that is the only moment the gradients are both complete and untouched:
clipping rescales them and ``zero_grad`` erases them (tools that read them
later report zeros). ``step()`` also keeps a copy of the weights; the next
``step()`` compares the weights with that copy to measure what the optimizer
did (so the latest record has no update ratio yet), and no optimizer needs to
know about the monitor.

Every statistic of one tensor comes from ``backend.active.tensor_stats``: one
pass gives the count, sum, sum of squares, max |x|, zeros, saturated values
and NaN/Inf counts, from which norms, means and standard deviations follow.
"""

from __future__ import annotations

import itertools
import math
import sys
from typing import IO, Any

import numpy as np

from .. import backend
from ..autograd import is_grad_enabled
from ..nn import Module, ReLU, Sigmoid, Tanh
from ..tensor import Tensor

__all__ = ["GradientMonitor"]

# A sigmoid output below 0.01 or above 0.99 is |y - 0.5| > 0.49; its slope
# y(1 - y) is then under 0.0099, a 25th of the slope at 0.
_SIGMOID_CENTER, _SIGMOID_EDGE = 0.5, 0.49
_TANH_EDGE = 0.97  # slope 1 - t^2 below 0.06

_HINTS = {
    "vanishing": "use ReLU with He init (nn.init.kaiming_normal_), add BatchNorm, "
    "or add residual connections",
    "exploding": "clip the gradient norm (nn.utils.clip_grad_norm_), lower the learning "
    "rate, or shrink the init",
    "non-finite": "run one step under mg.detect_anomaly() to find the op; then lower "
    "the learning rate or clip",
    "dead": "lower the learning rate, use He init with zero biases, or LeakyReLU",
    "saturated": "use Xavier init, normalize the inputs, or put BatchNorm before the activation",
    "update-large": "lower the learning rate (a healthy log10 update ratio is near -3)",
    "update-small": "raise the learning rate (a healthy log10 update ratio is near -3)",
}


def _stats(array: np.ndarray, threshold: float = math.inf, center: float = 0.0):
    return backend.active.tensor_stats(np.ascontiguousarray(array), threshold, center)


def _std(count: int, total: float, sumsq: float) -> float:
    """Population standard deviation from the three sums of a one-pass summary."""
    if count == 0:
        return 0.0
    mean = total / count
    return math.sqrt(max(sumsq / count - mean * mean, 0.0))


def _histogram(array: np.ndarray, max_abs: float, clean: bool) -> dict[str, list]:
    """10 equal bins over [-max|g|, max|g|] of the finite values (``np.histogram``'s
    bins, the last one closed). Bin indices come from one scaled cast and a
    bincount, several times faster than ``np.histogram`` on small arrays."""
    values = array.ravel() if clean else array[np.isfinite(array)]
    bound = max_abs if max_abs > 0 else 1.0
    width = bound / 5.0
    index = np.multiply(values, 1.0 / width, dtype=np.float64)
    index += 5.0
    bins = index.astype(np.intp)
    np.clip(bins, 0, 9, out=bins)
    counts = np.bincount(bins, minlength=10)
    return {"counts": counts.tolist(), "edges": [-bound + i * width for i in range(11)]}


def _kind(module: Module) -> str:
    return type(module).__name__


class GradientMonitor:
    """Record gradient health per step and per layer of ``model``.

    ``every``: record one step in ``every`` (the others cost nothing but the
    weight comparison after a recorded step). A layer is a module that owns
    parameters or a leaf module (an activation, a norm) whose output is
    recorded. Activations are recorded only in forwards that build a graph, so
    an evaluation under ``mg.no_grad()`` does not overwrite them.

    The thresholds decide what ``flags()`` and ``report()`` call unhealthy:
    ``vanish_ratio`` (a layer's gradient norm over the last layer's),
    ``explode_norm`` (a layer's gradient norm), ``explode_ratio`` (a layer's
    norm over the last layer's), ``dead_fraction`` and ``saturated_fraction``
    (of a layer's units), ``update_range`` (healthy log10 update ratios).

    ``history`` is a list with one dict per recorded step: ``step``,
    ``global_norm``, ``clip`` (None, or total norm, max norm and coefficient),
    ``params`` (per parameter name), ``layers`` (per module name) and
    ``activations`` (per module name). Everything in it is a Python number,
    string, list or dict.
    """

    def __init__(
        self,
        model: Module,
        every: int = 1,
        *,
        vanish_ratio: float = 1e-2,
        explode_norm: float = 1e3,
        explode_ratio: float = 1e2,
        dead_fraction: float = 0.25,
        saturated_fraction: float = 0.25,
        update_range: tuple[float, float] = (-5.0, -1.0),
    ) -> None:
        if not isinstance(model, Module):
            raise TypeError(
                f"GradientMonitor: model must be an nn.Module, got {type(model).__name__}"
            )
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"GradientMonitor: every must be an int >= 1, got {every!r}")
        self.model = model
        self.every = every
        self.vanish_ratio = vanish_ratio
        self.explode_norm = explode_norm
        self.explode_ratio = explode_ratio
        self.dead_fraction = dead_fraction
        self.saturated_fraction = saturated_fraction
        self.update_range = update_range
        self.history: list[dict[str, Any]] = []
        self.steps = 0  # step() calls so far; the forward of step k runs while steps == k

        # parameter name -> (layer name, tensor); layer order is forward order
        # as far as the module tree tells it (the order layers were assigned).
        self._params: list[tuple[str, str, Any]] = []
        self._layer_kinds: dict[str, str] = {}
        for module_name, module in model.named_modules():
            own = list(module.named_parameters(recurse=False))
            is_leaf = next(module.children(), None) is None
            if own or is_leaf:
                self._layer_kinds[module_name or "(model)"] = _kind(module)
            for pname, p in own:
                full = f"{module_name}.{pname}" if module_name else pname
                self._params.append((full, module_name or "(model)", p))
        self._activations: dict[str, dict[str, Any]] = {}
        self._snapshot: tuple[dict[str, Any], dict[str, np.ndarray]] | None = None
        self._handles = [
            module.register_forward_hook(self._activation_hook(name or "(model)"))
            for name, module in model.named_modules()
            if next(module.children(), None) is None
        ]

    # -- recording -------------------------------------------------------------
    def _recording(self) -> bool:
        return self.steps % self.every == 0

    def _activation_hook(self, name: str):
        def hook(module: Module, inputs: tuple, output: Any) -> None:
            if not (is_grad_enabled() and self._recording()):
                return
            if not isinstance(output, Tensor):
                return
            y = output.detach().numpy()
            if y.dtype.kind != "f":
                return
            self._activations[name] = self._activation_stats(module, y)

        return hook

    def _activation_stats(self, module: Module, y: np.ndarray) -> dict[str, Any]:
        if isinstance(module, Sigmoid):
            s = _stats(y, _SIGMOID_EDGE, _SIGMOID_CENTER)
        elif isinstance(module, Tanh):
            s = _stats(y, _TANH_EDGE)
        else:
            s = _stats(y)
        finite = s.count - s.n_nan - s.n_inf
        record: dict[str, Any] = {
            "kind": _kind(module),
            "mean": s.sum / finite if finite else math.nan,
            "std": _std(finite, s.sum, s.sumsq),
            "max_abs": s.max_abs,
            "nan": s.n_nan,
            "inf": s.n_inf,
        }
        if isinstance(module, (Sigmoid, Tanh)):
            record["saturated"] = s.n_above / s.count if s.count else 0.0
        if isinstance(module, ReLU):
            # A unit is dead when it is zero for every sample of the batch; with
            # no zero at all (the usual case) no second pass is needed.
            units = y.reshape(y.shape[0], -1) if y.ndim > 1 else y.reshape(-1, 1)
            if s.n_zero == 0 or units.shape[1] == 0:
                record["dead"] = 0.0
            else:
                alive = np.count_nonzero(np.any(units, axis=0))
                record["dead"] = 1.0 - int(alive) / units.shape[1]
        return record

    def step(self) -> dict[str, Any] | None:
        """Read every parameter's gradient; call it right after ``backward()``.

        Returns the new history record, or None on a step that ``every`` skips.
        """
        self._measure_update()
        index = self.steps
        self.steps += 1
        activations, self._activations = self._activations, {}
        if index % self.every != 0:
            return None

        params: dict[str, dict[str, Any]] = {}
        layers: dict[str, dict[str, Any]] = {}
        weights: dict[str, np.ndarray] = {}
        total_sumsq = 0.0
        for name, layer, p in self._params:
            w = p.detach().numpy()
            ws = _stats(w)
            weights[name] = w.copy()
            entry: dict[str, Any] = {
                "layer": layer,
                "shape": list(w.shape),
                "weight_norm": math.sqrt(ws.sumsq),
                "weight_std": _std(ws.count, ws.sum, ws.sumsq),
                "update_log10": None,
            }
            agg = layers.setdefault(
                layer,
                {
                    "kind": self._layer_kinds.get(layer, ""),
                    "grad_sumsq": 0.0,
                    "max_abs": 0.0,
                    "nan": 0,
                    "inf": 0,
                    "w_count": 0,
                    "w_sum": 0.0,
                    "w_sumsq": 0.0,
                    "has_grad": False,
                    "update_log10": None,
                },
            )
            agg["w_count"] += ws.count
            agg["w_sum"] += ws.sum
            agg["w_sumsq"] += ws.sumsq
            if p.grad is None:
                entry.update(grad_norm=None, max_abs=None, nan=0, inf=0, hist=None)
            else:
                g = p.grad.numpy()
                gs = _stats(g)
                clean = gs.n_nan == 0 and gs.n_inf == 0
                norm = math.sqrt(gs.sumsq) if clean else math.nan
                entry.update(
                    grad_norm=norm,
                    max_abs=gs.max_abs if clean else math.inf,
                    nan=gs.n_nan,
                    inf=gs.n_inf,
                    hist=_histogram(g, gs.max_abs, clean),
                )
                total_sumsq += gs.sumsq if clean else math.nan
                agg["grad_sumsq"] += gs.sumsq if clean else math.nan
                agg["max_abs"] = max(agg["max_abs"], entry["max_abs"])
                agg["nan"] += gs.n_nan
                agg["inf"] += gs.n_inf
                agg["has_grad"] = True
            entry["grad_to_weight"] = (
                entry["grad_norm"] / entry["weight_norm"]
                if entry["grad_norm"] is not None and entry["weight_norm"] > 0
                else None
            )
            params[name] = entry

        for agg in layers.values():
            weight_norm = math.sqrt(agg["w_sumsq"])
            agg["weight_norm"] = weight_norm
            agg["weight_std"] = _std(agg["w_count"], agg["w_sum"], agg["w_sumsq"])
            grad_norm = math.sqrt(agg["grad_sumsq"]) if agg["has_grad"] else None
            agg["grad_norm"] = grad_norm
            if not agg["has_grad"]:
                agg["max_abs"] = None
            agg["grad_to_weight"] = (
                grad_norm / weight_norm if grad_norm is not None and weight_norm > 0 else None
            )
            for key in ("grad_sumsq", "w_sum", "w_sumsq", "has_grad"):
                del agg[key]

        record = {
            "step": index,
            "global_norm": math.sqrt(total_sumsq),
            "clip": None,
            "params": params,
            "layers": layers,
            "activations": activations,
        }
        self.history.append(record)
        self._snapshot = (record, weights)
        return record

    def record_clip(self, total_norm: Any, max_norm: float) -> None:
        """Note that ``clip_grad_norm_`` ran on this step: pass what it returned and
        its ``max_norm``. The coefficient is PyTorch's ``min(1, max_norm / (total + 1e-6))``."""
        if not self.history or self.history[-1]["step"] != self.steps - 1:
            return  # a step that ``every`` skipped
        total = float(total_norm.item() if hasattr(total_norm, "item") else total_norm)
        with np.errstate(divide="ignore", invalid="ignore"):
            coef = min(1.0, float(max_norm) / (total + 1e-6)) if math.isfinite(total) else math.nan
        self.history[-1]["clip"] = {"total_norm": total, "max_norm": float(max_norm), "coef": coef}

    def _measure_update(self) -> None:
        """Fill in std(delta w) / std(w) for the last recorded step, from the weight copy."""
        if self._snapshot is None:
            return
        record, before = self._snapshot
        self._snapshot = None
        layer_delta: dict[str, list[float]] = {}
        for name, layer, p in self._params:
            delta = p.detach().numpy() - before[name]
            ds = _stats(delta)
            entry = record["params"][name]
            entry["update_log10"] = _log_ratio(
                _std(ds.count, ds.sum, ds.sumsq), entry["weight_std"]
            )
            acc = layer_delta.setdefault(layer, [0, 0.0, 0.0])
            acc[0] += ds.count
            acc[1] += ds.sum
            acc[2] += ds.sumsq
        for layer, (count, total, sumsq) in layer_delta.items():
            agg = record["layers"][layer]
            agg["update_log10"] = _log_ratio(_std(count, total, sumsq), agg["weight_std"])

    def remove(self) -> None:
        """Detach the forward hooks; the history stays."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    # -- reading -------------------------------------------------------------------
    def _ordered_rows(self, record: dict[str, Any]) -> list[str]:
        return [
            name
            for name in self._layer_kinds
            if name in record["layers"] or name in record["activations"]
        ]

    def flags(self, step: int = -1) -> list[dict[str, Any]]:
        """Unhealthy layers at history record ``step`` (the latest by default).

        Each flag is ``{"layer", "kind", "value", "reason", "hint"}``.
        """
        if not self.history:
            return []
        record = self.history[step]
        found: list[dict[str, Any]] = []

        def flag(layer: str, kind: str, value: float, reason: str) -> None:
            found.append(
                {
                    "layer": layer,
                    "kind": kind,
                    "value": value,
                    "reason": reason,
                    "hint": _HINTS[kind],
                }
            )

        graded = [
            (name, agg["grad_norm"])
            for name, agg in record["layers"].items()
            if agg["grad_norm"] is not None
        ]
        last_norm = graded[-1][1] if graded else None
        position = step if step >= 0 else len(self.history) + step
        for name, norm in graded:
            agg = record["layers"][name]
            if agg["nan"] or agg["inf"] or not math.isfinite(norm):
                flag(
                    name, "non-finite", norm, f"gradient has {agg['nan']} NaN and {agg['inf']} Inf"
                )
                continue
            if norm > self.explode_norm:
                flag(name, "exploding", norm, f"gradient norm {norm:.3g} > {self.explode_norm:g}")
            elif last_norm and norm / last_norm > self.explode_ratio:
                flag(
                    name,
                    "exploding",
                    norm / last_norm,
                    f"gradient norm {norm:.3g} is {norm / last_norm:.3g}x the last layer's",
                )
            elif self._growing(name, position):
                flag(name, "exploding", norm, "gradient norm grew 10x over the last 5 steps")
            if last_norm and norm / last_norm < self.vanish_ratio:
                flag(
                    name,
                    "vanishing",
                    norm / last_norm,
                    f"gradient norm {norm:.3g} is {norm / last_norm:.2g}x the last layer's",
                )
            update = agg.get("update_log10")
            if update is not None and math.isfinite(update):
                low, high = self.update_range
                if update > high:
                    flag(
                        name, "update-large", update, f"log10 update ratio {update:.2f} > {high:g}"
                    )
                elif update < low:
                    flag(name, "update-small", update, f"log10 update ratio {update:.2f} < {low:g}")

        for name, act in record["activations"].items():
            if act["nan"] or act["inf"]:
                flag(
                    name,
                    "non-finite",
                    act["nan"] + act["inf"],
                    f"output has {act['nan']} NaN and {act['inf']} Inf",
                )
            if act.get("dead", 0.0) > self.dead_fraction:
                flag(
                    name,
                    "dead",
                    act["dead"],
                    f"{act['dead']:.0%} of units are zero on the whole batch",
                )
            if act.get("saturated", 0.0) > self.saturated_fraction:
                flag(
                    name,
                    "saturated",
                    act["saturated"],
                    f"{act['saturated']:.0%} of outputs saturated",
                )
        return found

    def _growing(self, layer: str, position: int, window: int = 5) -> bool:
        """The layer's gradient norm rose at each of the last ``window`` recorded
        steps, 10x in all."""
        if position + 1 < window:
            return False
        norms = [
            self.history[i]["layers"].get(layer, {}).get("grad_norm")
            for i in range(position + 1 - window, position + 1)
        ]
        if any(n is None or not math.isfinite(n) or n <= 0 for n in norms):
            return False
        rising = all(b > a for a, b in itertools.pairwise(norms))
        return rising and norms[-1] > 10 * norms[0]

    def report(self, step: int = -1, file: IO[str] | None = None) -> str:
        """Print the per-layer table of history record ``step`` and the flags with
        their numbers and a usual fix; returns the text."""
        flags = self.flags(step)
        if not self.history:
            text = "GradientMonitor: nothing recorded yet (call monitor.step() after backward())\n"
            print(text, end="", file=file or sys.stdout)
            return text
        record = self.history[step]
        header = (
            f"{'layer':<12} {'kind':<11} {'grad norm':>9} {'max|g|':>9} {'|g|/|w|':>9} "
            f"{'log10 upd':>9} {'act mean':>9} {'act std':>9} {'dead':>5} {'sat':>5}  flags"
        )
        lines = [
            f"GradientMonitor, step {record['step']}: "
            f"global gradient norm {record['global_norm']:.4g}"
        ]
        if record["clip"]:
            c = record["clip"]
            lines[0] += f", clipped to {c['max_norm']:g} (coefficient {c['coef']:.3g})"
        lines += [header, "-" * len(header)]
        by_layer: dict[str, list[str]] = {}
        for f in flags:
            by_layer.setdefault(f["layer"], []).append(f["kind"])
        for name in self._ordered_rows(record):
            agg = record["layers"].get(name, {})
            act = record["activations"].get(name, {})
            kind = agg.get("kind") or act.get("kind") or self._layer_kinds[name]
            cells = [
                _fmt(agg.get("grad_norm")),
                _fmt(agg.get("max_abs")),
                _fmt(agg.get("grad_to_weight")),
                _fmt(agg.get("update_log10"), ".2f"),
                _fmt(act.get("mean")),
                _fmt(act.get("std")),
                _fmt(act.get("dead"), ".0%", 5),
                _fmt(act.get("saturated"), ".0%", 5),
            ]
            row = f"{name[:12]:<12} {kind[:11]:<11} " + " ".join(cells)
            lines.append(row + "  " + ",".join(by_layer.get(name, [])))
        if flags:
            lines.append("")
            for f in flags:
                lines.append(f"{f['layer']}: {f['kind']}: {f['reason']} -> {f['hint']}")
        else:
            lines.append("no layer flagged")
        text = "\n".join(lines) + "\n"
        print(text, end="", file=file or sys.stdout)
        return text

    def plot(self, path: str) -> None:
        """Write a PNG: per-layer gradient norms over steps (log scale) and log10
        update ratios. Needs matplotlib (``pip install "minigrad[plot]"``)."""
        figure_class, colormap = _matplotlib()
        fig = figure_class(figsize=(12, 4.5))
        ax_norm, ax_update = fig.subplots(1, 2)
        steps = [r["step"] for r in self.history]
        layers = [n for n in self._layer_kinds if any(n in r["layers"] for r in self.history)]
        colors = colormap(np.linspace(0.0, 0.9, max(len(layers), 1)))
        marker = "o" if len(steps) < 3 else None
        for color, name in zip(colors, layers, strict=False):
            norms = [_nan_if_none(r["layers"].get(name, {}).get("grad_norm")) for r in self.history]
            updates = [
                _nan_if_none(r["layers"].get(name, {}).get("update_log10")) for r in self.history
            ]
            ax_norm.plot(steps, norms, color=color, marker=marker, label=name)
            ax_update.plot(steps, updates, color=color, marker=marker, label=name)
        ax_norm.set_yscale("log")
        ax_norm.set(xlabel="step", ylabel="gradient L2 norm", title="Gradient norm per layer")
        ax_update.axhline(-3.0, color="gray", linestyle="--", linewidth=1)
        ax_update.set(
            xlabel="step",
            ylabel="log10 std(Δw)/std(w)",
            title="Update-to-weight ratio (healthy ≈ -3)",
        )
        if len(layers) <= 12:
            ax_norm.legend(fontsize=7, title="first layer: dark")
        else:
            ax_norm.text(
                0.01,
                0.01,
                "dark: first layer, light: last",
                transform=ax_norm.transAxes,
                fontsize=8,
            )
        fig.tight_layout()
        fig.savefig(path, dpi=100)


def _log_ratio(num: float, den: float) -> float | None:
    if den == 0 or not math.isfinite(num) or not math.isfinite(den):
        return None
    if num == 0:
        return -math.inf
    return math.log10(num / den)


def _fmt(value: Any, spec: str = ".3g", width: int = 9) -> str:
    if value is None:
        return f"{'-':>{width}}"
    return f"{format(value, spec):>{width}}"


def _nan_if_none(value: Any) -> float:
    return math.nan if value is None else value


def _matplotlib():
    """matplotlib's Figure and viridis colormap. A bare Figure renders to a file
    without pyplot, so the user's interactive backend and open figures are untouched."""
    try:
        import matplotlib
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            'plotting needs matplotlib, which is not installed: pip install "minigrad[plot]"'
        ) from exc
    return Figure, matplotlib.colormaps["viridis"]
