"""minigrad: a small reverse-mode autograd engine with C kernels.

import minigrad as mg
x = mg.randn(4, 3, requires_grad=True)
(x.relu() ** 2).sum().backward()
x.grad
"""

from . import autograd, backend, data, io, nn, ops, optim, viz
from .autograd import Function, detect_anomaly, enable_grad, gradcheck, is_grad_enabled, no_grad
from .backend import backend_info, get_backend, get_num_threads, set_backend, set_num_threads
from .creation import (
    arange,
    from_numpy,
    full,
    ones,
    ones_like,
    rand,
    randn,
    tensor,
    zeros,
    zeros_like,
)
from .dtypes import bool_, float32, float64, int64
from .io import load, save
from .random import manual_seed
from .tensor import Tensor, cat, stack

__version__ = "0.1.0"

__all__ = [
    "Function",
    "Tensor",
    "arange",
    "autograd",
    "backend",
    "backend_info",
    "bool_",
    "cat",
    "data",
    "detect_anomaly",
    "enable_grad",
    "float32",
    "float64",
    "from_numpy",
    "full",
    "get_backend",
    "get_num_threads",
    "gradcheck",
    "int64",
    "io",
    "is_grad_enabled",
    "load",
    "manual_seed",
    "nn",
    "no_grad",
    "ones",
    "ones_like",
    "ops",
    "optim",
    "rand",
    "randn",
    "save",
    "set_backend",
    "set_num_threads",
    "stack",
    "tensor",
    "viz",
    "zeros",
    "zeros_like",
]
