"""Neural-network building blocks with PyTorch's names: ``from minigrad import nn``."""

from .containers import Identity, ModuleList, Residual, Sequential
from .module import Module
from .parameter import Parameter

__all__ = ["Identity", "Module", "ModuleList", "Parameter", "Residual", "Sequential"]
