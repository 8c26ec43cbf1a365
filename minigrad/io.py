"""Save and load state dicts as safetensors files.

``save(model.state_dict(), "model.safetensors")`` writes a flat dict of
name -> tensor; ``load(path)`` returns it as a dict of name -> Tensor, ready
for ``model.load_state_dict``. The format is the one Hugging Face uses:
an 8-byte little-endian header length, a JSON header giving each tensor's
dtype, shape and byte range, then the raw bytes. Loading a file therefore
never runs code from it, unlike pickle, and PyTorch reads the same file with
``safetensors.torch.load_file``.

Only flat dicts of tensors are stored: float32, float64, int64 and bool.
Nested dicts and optimizer state dicts (which hold Python numbers and lists)
are not supported.
"""

from __future__ import annotations

import json
import os
import struct
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save as serialize

from .dtypes import to_array
from .tensor import Tensor

__all__ = ["load", "save"]

# safetensors' names for the dtypes minigrad holds.
_LOADABLE = ("F32", "F64", "I64", "BOOL")
# The limit safetensors itself enforces; checked first so that a hostile file
# never makes us read and parse a giant header.
_MAX_HEADER = 100_000_000

PathLike = str | os.PathLike


def _as_saveable(key: Any, value: Any) -> np.ndarray:
    if not isinstance(key, str):
        raise TypeError(f"save: keys must be str, got {type(key).__name__} key {key!r}")
    if key == "__metadata__":
        # The format reserves this name; safetensors would write a file it cannot read.
        raise ValueError("save: '__metadata__' is reserved by the safetensors format; rename it")
    if isinstance(value, Tensor):
        array = value._data
    elif isinstance(value, np.ndarray):
        if not value.dtype.isnative:
            value = value.astype(value.dtype.newbyteorder("="))
        # As mg.tensor does: other ints become int64; float16, complex, object are refused.
        array = to_array(value, op=f"save: key {key!r}", copy=False)
    else:
        raise TypeError(
            f"save: value for key {key!r} is a {type(value).__name__}; only Tensors and "
            "NumPy arrays can be saved (nested dicts and optimizer state are not supported)"
        )
    # safetensors copies `nbytes` from the array's data pointer, so a transposed
    # or sliced array would be written in memory order: the wrong values.
    # (Not np.ascontiguousarray: it turns a 0-d array into shape (1,).)
    return np.asarray(array, order="C")


def save(obj: Mapping[str, Any], path: PathLike) -> None:
    """Write a flat dict of name -> Tensor (or NumPy array) to ``path``.

    The file is written next to ``path`` and then renamed over it, so an
    interrupted save never leaves a half-written checkpoint behind. Tensors
    that require grad are saved by value (their graph is not).
    """
    if not isinstance(obj, Mapping):
        raise TypeError(
            f"save: expected a dict of name -> tensor (e.g. model.state_dict()), "
            f"got {type(obj).__name__}"
        )
    arrays = {key: _as_saveable(key, value) for key, value in obj.items()}
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(2, f"save: directory {directory!r} does not exist", directory)
    # "format": "pt" is what transformers checks for in a PyTorch checkpoint.
    data = serialize(arrays, metadata={"format": "pt"})
    # Named per process and thread so concurrent saves never share a temporary
    # file. Written with open() rather than safetensors' save_file, which
    # creates files readable by their owner only.
    tmp = os.path.join(directory, f".{name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _not_safetensors(path: str, reason: str) -> ValueError:
    return ValueError(f"load: {path!r} is not a valid safetensors file ({reason})")


def _read_header(path: str) -> dict:
    """The file's JSON header, after checking that its sizes fit in the file.

    Reads at most the file's own size, however large the header claims to be.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise _not_safetensors(path, f"only {size} bytes, too short for a header")
        (length,) = struct.unpack("<Q", prefix)
        if length > size - 8:
            raise _not_safetensors(
                path, f"header claims {length} bytes but the file has {size - 8} after it"
            )
        if length > _MAX_HEADER:
            raise _not_safetensors(path, f"header of {length} bytes is over the 100 MB limit")
        text = f.read(length)
    try:
        header = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise _not_safetensors(path, "the header is not JSON") from None
    if not isinstance(header, dict):
        raise _not_safetensors(path, "the header is not a JSON object")
    data_size = size - 8 - length
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("dtype"), str)
            and isinstance(entry.get("shape"), list)
            and isinstance(entry.get("data_offsets"), list)
            and len(entry["data_offsets"]) == 2
        ):
            raise _not_safetensors(path, f"entry {key!r} lacks dtype, shape or data_offsets")
        begin, end = entry["data_offsets"]
        if not (
            all(type(n) is int and n >= 0 for n in entry["shape"])
            and type(begin) is int
            and type(end) is int
            and 0 <= begin <= end <= data_size
        ):
            raise _not_safetensors(
                path,
                f"entry {key!r} has a bad shape or lies outside the file's {data_size} data bytes",
            )
    return header


def load(path: PathLike) -> dict[str, Tensor]:
    """Read a safetensors file into a dict of name -> Tensor.

    float32, float64, int64 and bool tensors are loaded with their dtype; any
    other dtype (float16, bfloat16, int32...) is a TypeError naming the key, so
    convert those before saving (``t.float()`` in PyTorch). The tensors own
    fresh memory: changing them changes neither the file nor anything else.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(21, f"load: {path!r} is a directory, not a file", path)
    if not os.path.isfile(path):
        raise FileNotFoundError(2, f"load: no such file: {path!r}", path)
    header = _read_header(path)
    for key, entry in header.items():
        if key != "__metadata__" and entry["dtype"] not in _LOADABLE:
            raise TypeError(
                f"load: tensor {key!r} in {path!r} has dtype {entry['dtype']}; minigrad "
                "loads only F32, F64, I64 and BOOL (convert it before saving)"
            )
    try:
        with safe_open(path, framework="np") as f:
            # safe_open is not a mapping; the header we read names the same tensors.
            arrays = {key: f.get_tensor(key) for key in header if key != "__metadata__"}
    except SafetensorError as exc:
        raise _not_safetensors(path, str(exc)) from None
    return {key: Tensor._wrap(a) for key, a in arrays.items()}
