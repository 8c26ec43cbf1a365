"""mg.save / mg.load: safetensors round trips, PyTorch interop, and every bad file."""

import json
import os
import struct
import tracemalloc

import numpy as np
import pytest

import minigrad as mg
from minigrad.io import load, save
from minigrad.nn import Parameter


def _state(rng):
    return {
        "w32": mg.from_numpy(rng.standard_normal((3, 4)).astype(np.float32)),
        "w64": mg.from_numpy(rng.standard_normal((2, 5))),
        "steps": mg.tensor(np.array([7, -3, 2**40], dtype=np.int64)),
        "mask": mg.tensor(np.array([True, False, True])),
        "scalar": mg.tensor(np.float32(2.5)),
        "empty": mg.zeros(0, 3),
    }


def _write(path, header, data=b""):
    """A file in safetensors layout with any header, however wrong."""
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


# ---------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------


def test_round_trip_keeps_values_dtypes_and_shapes(tmp_path, rng):
    state = _state(rng)
    save(state, tmp_path / "m.safetensors")
    loaded = load(tmp_path / "m.safetensors")
    assert set(loaded) == set(state)
    for key, t in state.items():
        got = loaded[key]
        assert isinstance(got, mg.Tensor), key
        assert got.dtype == t.dtype, key
        assert got.shape == t.shape, key
        np.testing.assert_array_equal(got.numpy(), t.numpy(), err_msg=key)
        assert got.is_leaf and not got.requires_grad


def test_numpy_arrays_parameters_and_str_paths(tmp_path, rng):
    w = Parameter(mg.randn(4, 2))
    state = {"p": w, "a": rng.standard_normal(3), "i": np.arange(4, dtype=np.int32)}
    path = str(tmp_path / "m.safetensors")
    save(state, path)
    loaded = load(path)
    np.testing.assert_array_equal(loaded["p"].numpy(), w.detach().numpy())
    np.testing.assert_array_equal(loaded["a"].numpy(), state["a"])
    # int32 is stored as minigrad's integer dtype.
    assert loaded["i"].dtype == mg.int64
    assert w.requires_grad  # saving reads the value, it does not touch the parameter


def test_non_contiguous_and_big_endian_arrays_are_saved_by_value(tmp_path):
    base = np.arange(12, dtype=np.float32).reshape(3, 4)
    state = {
        "transposed": mg.from_numpy(base).T,
        "strided": base[:, ::2],
        "big_endian": np.arange(5, dtype=">f8"),
    }
    save(state, tmp_path / "m.safetensors")
    loaded = load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(loaded["transposed"].numpy(), base.T)
    np.testing.assert_array_equal(loaded["strided"].numpy(), base[:, ::2])
    np.testing.assert_array_equal(loaded["big_endian"].numpy(), np.arange(5.0))
    assert loaded["big_endian"].dtype == mg.float64


def test_empty_state_dict(tmp_path):
    save({}, tmp_path / "empty.safetensors")
    assert load(tmp_path / "empty.safetensors") == {}


def test_loaded_tensors_share_memory_with_nothing(tmp_path, rng):
    original = mg.from_numpy(rng.standard_normal((3, 3)).astype(np.float32))
    kept = original.numpy().copy()
    path = tmp_path / "m.safetensors"
    save({"w": original}, path)
    first = load(path)["w"]
    second = load(path)["w"]
    assert not np.shares_memory(first.numpy(), original.numpy())
    assert not np.shares_memory(first.numpy(), second.numpy())

    original.numpy()[:] = 0.0  # changing the source after saving
    np.testing.assert_array_equal(first.numpy(), kept)
    first.numpy()[:] = 1.0  # changing a loaded tensor (it is writable)
    np.testing.assert_array_equal(second.numpy(), kept)
    first.add_(1.0)

    # Overwriting the file in place after loading (os.replace would leave a
    # memory map of the old file intact, so it would prove nothing).
    raw = path.read_bytes()
    with open(path, "r+b") as f:
        f.seek(len(raw) - 36)
        f.write(b"\x00" * 36)
    np.testing.assert_array_equal(second.numpy(), kept)
    np.testing.assert_array_equal(load(path)["w"].numpy(), np.zeros((3, 3)))


def test_file_is_a_plain_safetensors_file(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    save({"w": mg.ones(2, 2), "n": mg.tensor([1, 2])}, tmp_path / "m.safetensors")
    raw = safetensors_numpy.load_file(str(tmp_path / "m.safetensors"))
    np.testing.assert_array_equal(raw["w"], np.ones((2, 2), np.float32))
    assert raw["n"].dtype == np.int64


def test_save_replaces_an_existing_file_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "m.safetensors"
    save({"a": mg.ones(2)}, path)
    save({"b": mg.zeros(3)}, path)
    assert set(load(path)) == {"b"}
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]


def test_file_permissions_follow_the_umask(tmp_path):
    path = tmp_path / "m.safetensors"
    save({"a": mg.ones(2)}, path)
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


# ---------------------------------------------------------------------------
# PyTorch reads minigrad's files, and minigrad reads PyTorch's
# ---------------------------------------------------------------------------


def test_torch_loads_a_minigrad_state_dict_into_the_equivalent_model(tmp_path):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    mg.manual_seed(0)
    # The state dict of Sequential(Linear(3, 4), BatchNorm1d(4), ReLU(), Linear(4, 2)).
    state = {
        "0.weight": mg.randn(4, 3),
        "0.bias": mg.randn(4),
        "1.weight": mg.rand(4) + 0.5,
        "1.bias": mg.randn(4),
        "1.running_mean": mg.randn(4),
        "1.running_var": mg.rand(4) + 0.5,
        "1.num_batches_tracked": mg.tensor(np.int64(12)),
        "3.weight": mg.randn(2, 4),
        "3.bias": mg.randn(2),
    }
    path = tmp_path / "model.safetensors"
    save(state, path)

    model = torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU(), torch.nn.Linear(4, 2)
    )
    model.load_state_dict(safetensors_torch.load_file(str(path)), strict=True)
    model.eval()

    x = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
    s = {k: v.numpy() for k, v in state.items()}
    h = x @ s["0.weight"].T + s["0.bias"]
    h = (h - s["1.running_mean"]) / np.sqrt(s["1.running_var"] + 1e-5) * s["1.weight"] + s["1.bias"]
    expected = np.maximum(h, 0) @ s["3.weight"].T + s["3.bias"]
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert int(model[1].num_batches_tracked) == 12


def test_minigrad_loads_a_file_torch_wrote(tmp_path):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    path = tmp_path / "torch.safetensors"
    safetensors_torch.save_file(model.state_dict(), str(path))
    loaded = load(path)
    assert set(loaded) == set(model.state_dict())
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded[key].numpy(), value.numpy())
    assert loaded["1.num_batches_tracked"].dtype == mg.int64


def test_torch_half_precision_file_is_refused_naming_the_key(tmp_path):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    path = tmp_path / "half.safetensors"
    safetensors_torch.save_file(
        {"ok": torch.ones(2), "w": torch.ones(2, dtype=torch.float16)}, path
    )
    with pytest.raises(TypeError, match=r"'w'.*F16"):
        load(path)


# ---------------------------------------------------------------------------
# Bad input to save
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("obj", [[mg.ones(2)], mg.ones(2), None, "weights"])
def test_save_refuses_what_is_not_a_dict(tmp_path, obj):
    with pytest.raises(TypeError, match="expected a dict"):
        save(obj, tmp_path / "m.safetensors")


def test_save_refuses_non_str_keys(tmp_path):
    with pytest.raises(TypeError, match=r"keys must be str.*int key 3"):
        save({3: mg.ones(2)}, tmp_path / "m.safetensors")


@pytest.mark.parametrize(
    "value", [1.5, [1.0, 2.0], {"inner": mg.ones(2)}, None, np.float32(1.0)], ids=repr
)
def test_save_refuses_non_tensor_values_naming_the_key(tmp_path, value):
    with pytest.raises(TypeError, match=r"key 'layer\.weight'"):
        save({"ok": mg.ones(1), "layer.weight": value}, tmp_path / "m.safetensors")


@pytest.mark.parametrize("dtype", [np.float16, np.complex64, object, np.str_])
def test_save_refuses_unsupported_dtypes_naming_the_key(tmp_path, dtype):
    with pytest.raises(TypeError, match=r"key 'w'.*dtype .* not supported"):
        save({"w": np.zeros(2, dtype=dtype)}, tmp_path / "m.safetensors")


def test_save_refuses_the_reserved_metadata_key(tmp_path):
    with pytest.raises(ValueError, match="__metadata__"):
        save({"__metadata__": mg.ones(2)}, tmp_path / "m.safetensors")


def test_a_refused_save_leaves_the_old_file_intact(tmp_path):
    path = tmp_path / "m.safetensors"
    save({"a": mg.ones(2)}, path)
    with pytest.raises(TypeError):
        save({"a": mg.zeros(2), "b": "oops"}, path)
    np.testing.assert_array_equal(load(path)["a"].numpy(), np.ones(2))
    assert os.listdir(tmp_path) == ["m.safetensors"]


def test_save_into_a_missing_directory(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope"):
        save({"a": mg.ones(2)}, missing / "m.safetensors")


# ---------------------------------------------------------------------------
# Bad files given to load
# ---------------------------------------------------------------------------


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "absent.safetensors"
    with pytest.raises(FileNotFoundError, match=r"absent\.safetensors") as info:
        load(path)
    assert info.value.filename == str(path)


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(IsADirectoryError, match="directory"):
        load(tmp_path)


def test_every_truncation_of_a_valid_file_is_a_clear_error(tmp_path):
    good = tmp_path / "good.safetensors"
    save({"w": mg.ones(3, 2), "n": mg.tensor([1, 2, 3])}, good)
    raw = good.read_bytes()
    cut = tmp_path / "cut.safetensors"
    for length in range(len(raw)):
        cut.write_bytes(raw[:length])
        with pytest.raises(ValueError, match=r"cut\.safetensors.*not a valid safetensors file"):
            load(cut)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x00" * 8,
        b"hello, this is not a tensor file at all",
        b"\x05\x00\x00\x00\x00\x00\x00\x00\xff\xfe\xfd\xfc\xfb",
        os.urandom(256),
    ],
    ids=["empty", "zeros", "text", "bad-utf8", "random"],
)
def test_garbage_is_a_clear_error(tmp_path, content):
    path = tmp_path / "junk.bin"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"junk\.bin.*not a valid safetensors file"):
        load(path)


def test_trailing_bytes_are_an_error(tmp_path):
    path = tmp_path / "m.safetensors"
    save({"w": mg.ones(2)}, path)
    path.write_bytes(path.read_bytes() + b"extra")
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        load(path)


@pytest.mark.parametrize(
    "header",
    [
        # offsets far beyond the 16 data bytes that follow
        {"w": {"dtype": "F32", "shape": [1 << 40], "data_offsets": [0, 4 << 40]}},
        # offsets inside the file, but a shape that needs 4 TiB
        {"w": {"dtype": "F32", "shape": [1 << 40], "data_offsets": [0, 16]}},
        # a shape that disagrees with its byte range
        {"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 16]}},
        {"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}},
        {"w": {"dtype": "F32", "shape": [4], "data_offsets": [8, 4]}},
        {"w": {"dtype": "F32", "shape": [4], "data_offsets": [-16, 0]}},
        {"w": {"dtype": "F32", "shape": [4.0], "data_offsets": [0, 16]}},
        {"w": {"dtype": "F32", "shape": [4]}},
        {"w": [1, 2, 3]},
        {
            "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "v": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
        },
        {
            "__metadata__": {"format": 3},
            "w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
        },
        [1, 2],
    ],
    ids=[
        "offsets-beyond-file",
        "huge-shape",
        "shape-vs-range",
        "negative-dim",
        "reversed-range",
        "negative-offset",
        "float-dim",
        "no-offsets",
        "entry-not-object",
        "overlapping",
        "bad-metadata",
        "not-object",
    ],
)
def test_hostile_headers_are_refused_without_allocating(tmp_path, header):
    path = _write(tmp_path / "evil.safetensors", header, b"\x00" * 16)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"evil\.safetensors.*not a valid safetensors file"):
            load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


@pytest.mark.parametrize("claimed", [1 << 62, (1 << 64) - 1, 10_000])
def test_header_length_beyond_the_file_is_refused(tmp_path, claimed):
    path = tmp_path / "evil.safetensors"
    path.write_bytes(struct.pack("<Q", claimed) + b'{"w": {}}')
    with pytest.raises(ValueError, match=f"header claims {claimed} bytes"):
        load(path)


def test_deeply_nested_json_header_is_refused(tmp_path):
    nested = b"[" * 100_000 + b"]" * 100_000
    path = tmp_path / "deep.safetensors"
    path.write_bytes(struct.pack("<Q", len(nested)) + nested)
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        load(path)


def test_unsupported_dtype_in_a_file_names_the_key(tmp_path):
    path = _write(
        tmp_path / "m.safetensors",
        {"half": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}},
        b"\x00" * 4,
    )
    with pytest.raises(TypeError, match=r"'half'.*F16"):
        load(path)
