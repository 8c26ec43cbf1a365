"""Every differentiable op as a Function: forward and backward side by side.

Functions see NumPy arrays, never Tensors (see ``minigrad.autograd``). The
kernels with a C implementation are reached through ``backend.active``.
"""

from .activation import GELU, LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from .elementwise import Abs, Add, Cast, Clamp, Clone, Div, Exp, Log, Mul, Neg, Pow, Sqrt, Sub
from .linalg import MatMul
from .reduction import Max, MaxAlongDim, Mean, Sum, Var
from .shape import Cat, GetItem, Permute, Reshape, Stack

__all__ = [
    "GELU",
    "Abs",
    "Add",
    "Cast",
    "Cat",
    "Clamp",
    "Clone",
    "Div",
    "Exp",
    "GetItem",
    "LeakyReLU",
    "Log",
    "LogSoftmax",
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
