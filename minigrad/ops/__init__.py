"""Every differentiable op as a Function: forward and backward side by side.

Functions see NumPy arrays, never Tensors (see ``minigrad.autograd``). The
kernels with a C implementation are reached through ``backend.active``.
"""

from .activation import GELU, LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from .elementwise import Abs, Add, Cast, Clamp, Clone, Div, Exp, Log, Mul, Neg, Pow, Sqrt, Sub
from .linalg import MatMul
from .nn import (
    BatchNorm,
    BCEWithLogits,
    CrossEntropy,
    Dropout,
    L1Loss,
    LayerNorm,
    Linear,
    MSELoss,
)
from .reduction import Max, MaxAlongDim, Mean, Sum, Var
from .shape import Cat, GetItem, Permute, Reshape, Stack

__all__ = [
    "GELU",
    "Abs",
    "Add",
    "BCEWithLogits",
    "BatchNorm",
    "Cast",
    "Cat",
    "Clamp",
    "Clone",
    "CrossEntropy",
    "Div",
    "Dropout",
    "Exp",
    "GetItem",
    "L1Loss",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "Log",
    "LogSoftmax",
    "MSELoss",
    "MatMul",
    "Max",
    "MaxAlongDim",
    "Mean",
    "Mul",
    "Neg",
    "Permute",
    "Pow",
    "ReLU",
    "Reshape",
    "Sigmoid",
    "Softmax",
    "Sqrt",
    "Stack",
    "Sub",
    "Sum",
    "Tanh",
    "Var",
]
