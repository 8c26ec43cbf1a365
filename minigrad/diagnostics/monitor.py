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
later report zeros). ``step()`` also keeps a snapshot of the weights; the
next ``step()`` compares the weights with it to measure what the optimizer
did (so the latest record has no update ratio yet), and no optimizer needs
to know about the monitor.

It is cheap enough to leave on. Every number comes from the backend's
statistics kernels, one fused pass over each tensor (see
``Backend.tensor_stats``). An activation hook only keeps a reference to its
layer's output, until ``step()`` (or the next forward, if no ``step()``
came). ``step()`` then makes one kernel call for all those outputs (their
summaries and dead units), one for all the gradients (summaries and
histograms) and one for all the weights (their sums, those of their change
since the snapshot, the new snapshot). The raw sums land in preallocated
arrays, a row per recorded step, which the kernels are bound to once (see
``Backend.stats_rows``); ``history`` turns them into dicts of norms, ratios
and fractions only when it is read, and keeps those.
"""

from __future__ import annotations

import itertools
import math
import operator
import sys
from typing import IO, Any

import numpy as np

from .. import backend
from ..autograd import is_grad_enabled
from ..backend.base import STATS_DTYPE
from ..nn import Module, ReLU, Sigmoid, Tanh
from ..tensor import Tensor

__all__ = ["GradientMonitor"]

# A sigmoid output below 0.01 or above 0.99 is |y - 0.5| > 0.49; its slope
# y(1 - y) is then under 0.0099, a 25th of the slope at 0.
_SIGMOID_CENTER, _SIGMOID_EDGE = 0.5, 0.49
_TANH_EDGE = 0.97  # slope 1 - t^2 below 0.06

_BINS = 10  # gradient histogram bins over [-max|g|, max|g|]

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


def _std(count: int, total: float, sumsq: float) -> float:
    """Population standard deviation from the three sums of a one-pass summary."""
    if count == 0:
        return 0.0
    mean = total / count
    return math.sqrt(max(sumsq / count - mean * mean, 0.0))


def _kind(module: Module) -> str:
    return type(module).__name__


_data_of, _grad_of = operator.attrgetter("_data"), operator.attrgetter("grad._data")


def _present(arrays: list) -> tuple[bool, ...]:
    """Which entries are not None."""
    return tuple(map(operator.is_not, arrays, itertools.repeat(None)))


def _saturation(module: Module) -> tuple[float, float]:
    """(threshold, center): an output y of ``module`` is saturated when |y - center| >
    threshold; never, for a module that does not saturate."""
    if isinstance(module, Sigmoid):
        return _SIGMOID_EDGE, _SIGMOID_CENTER
    if isinstance(module, Tanh):
        return _TANH_EDGE, 0.0
    return math.inf, 0.0


class _Rows:
    """The raw numbers of the recorded steps, one row per step, in arrays grown by
    doubling: a step writes into the next row (``count``), then adds it with
    ``commit``, and allocates no array. Columns follow the monitor's parameter
    and activation order.

    The backend's kernels write rows through ``kernels()``, bound to these
    arrays (see ``Backend.stats_rows``): bound once, rather than handed views
    of a row on every step, which on a small model costs more than the
    kernels' work."""

    def __init__(self, n_params: int, n_acts: int, thresholds, centers) -> None:
        self.count = 0
        self._saturation = (thresholds, centers)  # per activation, for unit_stats_multi
        self._bound = None
        # name -> (shape after the row index, dtype, initial value)
        self._layout = {
            "grad": ((n_params,), STATS_DTYPE, 0),
            "hist": ((n_params, _BINS), np.uint64, 0),
            "weight": ((n_params, 2), np.float64, 0.0),  # sum and sum of squares
            "change": ((n_params, 2), np.float64, math.nan),  # NaN until measured
            "act": ((n_acts,), STATS_DTYPE, 0),
            "act_dead": ((n_acts,), np.uint64, 0),  # units zero on the whole batch
            "clip": ((3,), np.float64, math.nan),  # total norm, max norm, coefficient
        }
        # Per row, what its numbers need besides to be read: (the parameters'
        # shapes, their sizes, which had a gradient, each activation's units per
        # sample or None when it was not recorded). The previous row's tuple when
        # equal, so that a step keeps no new object (each would add to the
        # garbage collector's work).
        self.layout: list[tuple[list, list, tuple, tuple]] = []
        self.step: list[int] = []  # the step() count of each row
        self._grow(16)

    def _grow(self, capacity: int) -> None:
        for name, (shape, dtype, fill) in self._layout.items():
            new = np.zeros((capacity, *shape), dtype)
            if fill:
                new[...] = fill
            old = getattr(self, name, None)
            if old is not None:
                new[: self.count] = old[: self.count]
            setattr(self, name, new)
        self._bound = None  # new arrays

    def kernels(self):
        """The active backend's statistics kernels, bound to these arrays."""
        bound = self._bound
        if bound is None or bound.backend is not backend.active:
            bound = self._bound = backend.active.stats_rows(
                self.grad,
                self.hist,
                self.weight,
                self.change,
                self.act,
                self.act_dead,
                *self._saturation,
            )
        return bound

    def next_row(self) -> int:
        if self.count == len(self.grad):
            self._grow(2 * self.count)
        return self.count

    def commit(self, step: int, layout: tuple) -> None:
        """Add the next row, written."""
        self.step.append(step)
        if self.layout and layout == self.layout[-1]:
            layout = self.layout[-1]
        self.layout.append(layout)
        self.count += 1


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
        self._tensors = [p for _, _, p in self._params]

        # The leaf modules whose outputs are recorded, in module order.
        leaves = [
            (name or "(model)", module)
            for name, module in model.named_modules()
            if next(module.children(), None) is None
        ]
        self._acts = [
            (name, _kind(m), isinstance(m, ReLU), isinstance(m, (Sigmoid, Tanh)))
            for name, m in leaves
        ]
        # What counts as saturated, per leaf: |y - center| > threshold.
        thresholds = np.array([_saturation(m)[0] for _, m in leaves], np.float64)
        centers = np.array([_saturation(m)[1] for _, m in leaves], np.float64)
        self._rows = _Rows(len(self._params), len(leaves), thresholds, centers)
        self._built: list[dict[str, Any]] = []  # history's dicts, made when read

        # The outputs of the current step's forward, which the hooks fill in and
        # step() summarizes and drops. Held no longer: a forward that no step()
        # follows has its outputs replaced by the next one's.
        self._no_outputs = (None,) * len(leaves)
        self._all_params = (True,) * len(self._params)
        self._outputs: list[np.ndarray | None] = list(self._no_outputs)
        self._recording = True  # whether the current step is recorded

        # The weights at the last record, per dtype: (parameter indices, their values
        # one after another), and the arrays they were taken of.
        self._snapshots: list[tuple[list[int], np.ndarray]] = []
        self._snapshot_of: tuple[np.ndarray, ...] = ()
        self._dtypes: list[np.dtype] = []
        self._shapes: list[list[int]] = []
        self._sizes: list[int] = []
        self._pending: int | None = None  # the row whose weight change the next step measures
        self._handles = [
            module.register_forward_hook(self._activation_hook(j))
            for j, (_, module) in enumerate(leaves)
        ]

    # -- recording -------------------------------------------------------------
    def _activation_hook(self, j: int):
        outputs = self._outputs

        def hook(module: Module, inputs: tuple, output: Any) -> None:
            # The array itself, not a copy: an array in a graph is never changed in
            # place, and the pool does not reuse an array anyone refers to.
            if self._recording and isinstance(output, Tensor) and is_grad_enabled():
                y = output._data
                if y.dtype.kind == "f":
                    outputs[j] = y

        return hook

    def step(self) -> None:
        """Read every parameter's gradient; call it right after ``backward()``.

        The record appears in ``history`` (on a step that ``every`` does not skip).
        """
        index = self.steps
        self.steps += 1
        pending = self._pending  # the last record, whose update this step measures
        weights = self._snapshot_of
        if not (weights and all(map(operator.is_, map(_data_of, self._tensors), weights))):
            # not the arrays of the snapshot (optimizers update in place)
            weights = tuple(map(_data_of, self._tensors))
            if not self._snapshots_match(weights):
                pending = None  # first step, or weights replaced by others of another size
        row = self._rows.next_row() if index % self.every == 0 else None
        kernels = self._rows.kernels()
        if row is not None and len(self._snapshots) == 1:
            self._measure_all(kernels, weights, index, row, pending)
        else:
            if row is not None or pending is not None:
                self._measure_weights(kernels, weights, row, pending)
            if row is not None:
                self._measure_gradients_and_activations(kernels, index, row)
        if pending is not None and pending < len(self._built):
            self._fill_update(self._built[pending], pending)
        self._outputs[:] = self._no_outputs
        self._pending = row
        self._recording = self.steps % self.every == 0

    def _measure_all(
        self, kernels, weights: tuple[np.ndarray, ...], index: int, row: int, pending
    ) -> None:
        """A recorded step with one snapshot (one dtype): what _measure_weights and
        _measure_gradients_and_activations measure, in one call, which the C
        backend runs on two threads; then the row is added."""
        grads, has_grad = self._gradients()
        snapshot = self._snapshots[0][1]
        units = kernels.measure(row, pending, snapshot, weights, grads, self._outputs)
        self._rows.commit(index, (self._shapes, self._sizes, has_grad, units))

    def _measure_gradients_and_activations(self, kernels, index: int, row: int) -> None:
        """The gradients' summaries and histograms in one call, the summaries and
        dead units of the outputs the hooks kept in another; then the row is added."""
        grads, has_grad = self._gradients()
        units = kernels.record(row, grads, self._outputs)
        self._rows.commit(index, (self._shapes, self._sizes, has_grad, units))

    def _gradients(self) -> tuple[list, Any]:
        """The parameters' gradient arrays (None for none) and which have one."""
        # The usual case in one go: every parameter has a gradient.
        try:
            return list(map(_grad_of, self._tensors)), self._all_params
        except AttributeError:  # a parameter without gradient
            grads = [None if p.grad is None else p.grad._data for p in self._tensors]
            return grads, _present(grads)

    def _measure_weights(self, kernels, weights: tuple[np.ndarray, ...], row, pending) -> None:
        """One pass over the weights: the change since the snapshot (the pending
        record's update), and on a recorded step their sums and a new snapshot.
        One call per dtype: a single one unless the model mixes dtypes."""
        if len(self._snapshots) == 1:
            kernels.changes(row, pending, self._snapshots[0][1], weights, row is not None)
            return
        rows = self._rows
        sums = None if row is None else rows.weight[row]
        change = None if pending is None else rows.change[pending]
        for index, snapshot in self._snapshots:
            part_sums = None if sums is None else np.zeros((len(index), 2))
            part_change = None if change is None else np.zeros((len(index), 2))
            group = [weights[i] for i in index]
            backend.active.change_stats(part_sums, part_change, snapshot, group, row is not None)
            if sums is not None:
                sums[index] = part_sums
            if change is not None:
                change[index] = part_change

    def _snapshots_match(self, weights: tuple[np.ndarray, ...]) -> bool:
        """True when the snapshots fit these weight arrays (of the same sizes and
        dtypes as the last ones); otherwise make new ones, with nothing to compare
        against yet, and return False. A snapshot holds the weights of one dtype
        one after another."""
        dtypes = [w.dtype for w in weights]
        sizes = [w.size for w in weights]
        fit = bool(self._snapshot_of) and sizes == self._sizes and dtypes == self._dtypes
        if not fit:
            self._snapshots = []
            for dtype in dict.fromkeys(dtypes):
                index = [i for i, d in enumerate(dtypes) if d == dtype]
                snapshot = np.empty(sum(sizes[i] for i in index), dtype)
                self._snapshots.append((index, snapshot))
        self._snapshot_of = weights
        self._shapes = [list(w.shape) for w in weights]
        self._sizes, self._dtypes = sizes, dtypes
        return fit

    def record_clip(self, total_norm: Any, max_norm: float) -> None:
        """Note that ``clip_grad_norm_`` ran on this step: pass what it returned and
        its ``max_norm``. The coefficient is PyTorch's ``min(1, max_norm / (total + 1e-6))``."""
        row = self._pending
        if row is None:
            return  # a step that ``every`` skipped
        total = float(total_norm.item() if hasattr(total_norm, "item") else total_norm)
        with np.errstate(divide="ignore", invalid="ignore"):
            coef = min(1.0, float(max_norm) / (total + 1e-6)) if math.isfinite(total) else math.nan
        self._rows.clip[row] = (total, float(max_norm), coef)
        if row < len(self._built):
            self._built[row]["clip"] = self._clip(row)

    def remove(self) -> None:
        """Detach the forward hooks and let go of the outputs they kept for a
        ``step()``; the history stays."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._outputs[:] = self._no_outputs

    # -- history: dicts made from the rows when read ------------------------------
    @property
    def history(self) -> list[dict[str, Any]]:
        """One dict per recorded step (see the class docstring); plain data."""
        while len(self._built) < self._rows.count:
            self._built.append(self._record(len(self._built)))
        return self._built

    def _record(self, row: int) -> dict[str, Any]:
        rows = self._rows
        params: dict[str, dict[str, Any]] = {}
        layers: dict[str, dict[str, Any]] = {}
        grads, weights = rows.grad[row].tolist(), rows.weight[row].tolist()
        hists = rows.hist[row].tolist()
        shapes, sizes, has_grad, _ = rows.layout[row]
        total_sumsq = 0.0
        for i, (name, layer, _) in enumerate(self._params):
            w_count, (w_sum, w_sumsq) = sizes[i], weights[i]
            entry: dict[str, Any] = {
                "layer": layer,
                "shape": list(shapes[i]),
                "weight_norm": math.sqrt(w_sumsq),
                "weight_std": _std(w_count, w_sum, w_sumsq),
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
            agg["w_count"] += w_count
            agg["w_sum"] += w_sum
            agg["w_sumsq"] += w_sumsq
            if not has_grad[i]:
                entry.update(grad_norm=None, max_abs=None, nan=0, inf=0, hist=None)
            else:
                _, _, sumsq, max_abs, _, _, nan, inf = grads[i]
                clean = nan == 0 and inf == 0
                bound = max_abs if max_abs > 0 else 1.0
                width = 2.0 * bound / _BINS
                entry.update(
                    grad_norm=math.sqrt(sumsq) if clean else math.nan,
                    max_abs=max_abs if clean else math.inf,
                    nan=nan,
                    inf=inf,
                    hist={
                        "counts": hists[i],
                        "edges": [-bound + k * width for k in range(_BINS + 1)],
                    },
                )
                total_sumsq += sumsq if clean else math.nan
                agg["grad_sumsq"] += sumsq if clean else math.nan
                agg["max_abs"] = max(agg["max_abs"], entry["max_abs"])
                agg["nan"] += nan
                agg["inf"] += inf
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
            "step": rows.step[row],
            "global_norm": math.sqrt(total_sumsq),
            "clip": self._clip(row),
            "params": params,
            "layers": layers,
            "activations": self._activations(row),
        }
        self._fill_update(record, row)
        return record

    def _activations(self, row: int) -> dict[str, dict[str, Any]]:
        rows = self._rows
        _, _, _, units = rows.layout[row]
        stats, dead = rows.act[row].tolist(), rows.act_dead[row].tolist()
        found: dict[str, dict[str, Any]] = {}
        for j, (name, kind, is_relu, saturates) in enumerate(self._acts):
            if units[j] is None:
                continue
            count, total, sumsq, max_abs, _, n_above, nan, inf = stats[j]
            finite = count - nan - inf
            act: dict[str, Any] = {
                "kind": kind,
                "mean": total / finite if finite else math.nan,
                "std": _std(finite, total, sumsq),
                "max_abs": max_abs,
                "nan": nan,
                "inf": inf,
            }
            if saturates:
                act["saturated"] = n_above / count if count else 0.0
            if is_relu:
                act["dead"] = dead[j] / units[j] if units[j] else 0.0
            found[name] = act
        return found

    def _clip(self, row: int) -> dict[str, float] | None:
        total, max_norm, coef = self._rows.clip[row].tolist()
        if math.isnan(max_norm):
            return None
        return {"total_norm": total, "max_norm": max_norm, "coef": coef}

    def _fill_update(self, record: dict[str, Any], row: int) -> None:
        """log10 std(delta w) / std(w) per parameter and per layer, once the next
        step has measured the change (None until then)."""
        rows = self._rows
        _, sizes, _, _ = rows.layout[row]
        change = rows.change[row].tolist()
        layer_change: dict[str, list[float]] = {}
        for i, (name, layer, _) in enumerate(self._params):
            count = sizes[i]
            total, sumsq = change[i]
            entry = record["params"][name]
            entry["update_log10"] = _log_ratio(_std(count, total, sumsq), entry["weight_std"])
            acc = layer_change.setdefault(layer, [0, 0.0, 0.0])
            acc[0] += count
            acc[1] += total
            acc[2] += sumsq
        for layer, (count, total, sumsq) in layer_change.items():
            agg = record["layers"][layer]
            agg["update_log10"] = _log_ratio(_std(count, total, sumsq), agg["weight_std"])

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
