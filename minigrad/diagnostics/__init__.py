"""Instruments for gradient health: see what vanishes, explodes, dies or saturates.

``GradientMonitor`` records per-layer statistics during training; the demos in
``minigrad.diagnostics.demos`` (``minigrad demo NAME``) reproduce the classic
experiments with it.
"""

from .monitor import GradientMonitor

__all__ = ["GradientMonitor"]
