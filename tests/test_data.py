"""minigrad.data: DataLoader batching and shuffling, and the built-in data sets."""

import sys

import numpy as np
import pytest

import minigrad as mg
from minigrad.data import DataLoader, digits, moons, spirals


def epoch_rows(loader):
    """The sample indices of one epoch, batch by batch (X holds each row's index)."""
    return [xb.numpy()[:, 0].astype(int).tolist() for xb, *_ in loader]


def indexed(n):
    X = np.arange(n, dtype=np.float32)[:, None].repeat(3, axis=1)
    y = np.arange(n, dtype=np.int64)
    return X, y


# ---------------------------------------------------------------------------
# DataLoader
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 7, 10, 64])
@pytest.mark.parametrize("batch_size", [1, 3, 10, 100])
@pytest.mark.parametrize("shuffle", [False, True])
def test_every_sample_exactly_once_per_epoch(n, batch_size, shuffle):
    loader = DataLoader(indexed(n), batch_size=batch_size, shuffle=shuffle)
    for _ in range(2):
        batches = epoch_rows(loader)
        assert len(batches) == len(loader) == -(-n // batch_size)
        assert all(len(b) == batch_size for b in batches[:-1])
        assert 1 <= len(batches[-1]) <= batch_size
        rows = [i for b in batches for i in b]
        assert sorted(rows) == list(range(n))
        if not shuffle:
            assert rows == list(range(n))


@pytest.mark.parametrize(("n", "batch_size", "batches"), [(10, 3, 3), (9, 3, 3), (2, 3, 0)])
def test_drop_last(n, batch_size, batches):
    loader = DataLoader(indexed(n), batch_size=batch_size, shuffle=True, drop_last=True)
    assert len(loader) == batches
    got = epoch_rows(loader)
    assert len(got) == batches
    assert all(len(b) == batch_size for b in got)
    rows = [i for b in got for i in b]
    assert len(set(rows)) == len(rows) == batches * batch_size


def test_rows_stay_paired_when_shuffled():
    X, y = indexed(50)
    for xb, yb in DataLoader((X, y), batch_size=8, shuffle=True):
        np.testing.assert_array_equal(xb.numpy()[:, 0], yb.numpy())
        np.testing.assert_array_equal(xb.numpy()[:, 2], yb.numpy())


def test_manual_seed_makes_shuffles_reproducible():
    loader = DataLoader(indexed(40), batch_size=7, shuffle=True)
    mg.manual_seed(123)
    first = [epoch_rows(loader) for _ in range(3)]
    mg.manual_seed(123)
    second = [epoch_rows(loader) for _ in range(3)]
    assert first == second


def test_each_epoch_has_a_new_order():
    loader = DataLoader(indexed(50), batch_size=10, shuffle=True)
    mg.manual_seed(0)
    orders = [np.concatenate(epoch_rows(loader)).tolist() for _ in range(3)]
    assert orders[0] != orders[1] != orders[2]
    assert orders[0] != list(range(50))


@pytest.mark.parametrize(
    ("array", "dtype"),
    [
        (np.zeros((4, 2), np.float32), mg.float32),
        (np.zeros((4, 2), np.float64), mg.float64),
        (np.zeros(4, np.int64), mg.int64),
        (np.zeros(4, np.int32), mg.int64),
        (np.zeros((4, 8, 8), np.uint8), mg.int64),
        (np.zeros(4, bool), mg.bool_),
        (mg.zeros(4, 2, dtype=mg.float64), mg.float64),
        (mg.tensor([1, 2, 3, 4]), mg.int64),
    ],
    ids=["f32", "f64", "i64", "i32", "u8", "bool", "tensor-f64", "tensor-i64"],
)
def test_batches_keep_float_dtypes_and_make_ints_int64(array, dtype):
    (batch,) = next(iter(DataLoader((array,), batch_size=3)))
    assert isinstance(batch, mg.Tensor)
    assert batch.dtype == dtype
    assert batch.shape == (3, *array.shape[1:])


def test_batches_are_copies_and_carry_no_graph():
    X = np.arange(12, dtype=np.float32).reshape(6, 2)
    w = mg.from_numpy(X.copy()).requires_grad_()
    original = X.copy()
    for shuffle in (False, True):
        for xb, wb in DataLoader([X, w], batch_size=4, shuffle=shuffle):
            assert not wb.requires_grad and wb.grad_fn is None
            xb.add_(100.0)
            wb.add_(100.0)
    np.testing.assert_array_equal(X, original)
    np.testing.assert_array_equal(w.detach().numpy(), original)


def test_lists_of_arrays_and_empty_data():
    loader = DataLoader([np.zeros((0, 3)), np.zeros(0)], batch_size=4)
    assert len(loader) == 0
    assert list(loader) == []


def test_repr_and_attributes():
    loader = DataLoader(indexed(10), batch_size=4, shuffle=True, drop_last=True)
    assert (loader.batch_size, loader.shuffle, loader.drop_last) == (4, True, True)
    assert loader.num_samples == 10
    assert "10 samples" in repr(loader)


def test_different_lengths_are_named():
    with pytest.raises(ValueError, match=r"same first dimension.*\[5, 4\]"):
        DataLoader((np.zeros((5, 2)), np.zeros(4)))


@pytest.mark.parametrize(
    "arrays", [np.zeros((5, 2)), mg.zeros(5, 2), {"X": np.zeros(5)}, None], ids=repr
)
def test_arrays_must_be_a_tuple_or_list(arrays):
    with pytest.raises(TypeError, match="tuple or list"):
        DataLoader(arrays)


def test_bad_elements_and_empty_tuple():
    with pytest.raises(TypeError, match=r"arrays\[1\] is a list"):
        DataLoader((np.zeros(3), [1, 2, 3]))
    with pytest.raises(ValueError, match="0-dimensional"):
        DataLoader((np.array(1.0),))
    with pytest.raises(TypeError, match=r"arrays\[0\].*float16"):
        DataLoader((np.zeros(3, np.float16),))
    with pytest.raises(ValueError, match="empty"):
        DataLoader(())


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True, "8", None])
def test_batch_size_must_be_a_positive_int(batch_size):
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        DataLoader(indexed(4), batch_size=batch_size)


# ---------------------------------------------------------------------------
# spirals and moons
# ---------------------------------------------------------------------------


def test_spirals_shape_classes_and_geometry():
    X, y = spirals(n_points=50, n_classes=4, seed=0)
    assert X.shape == (200, 2) and X.dtype == np.float32
    assert y.shape == (200,) and y.dtype == np.int64
    assert np.bincount(y).tolist() == [50] * 4
    # noise turns the angle only: every arm runs from radius 0 to 1
    radius = np.linalg.norm(X, axis=1)
    np.testing.assert_allclose(radius, np.tile(np.linspace(0, 1, 50), 4), atol=1e-6)


def test_spirals_and_moons_are_deterministic_given_a_seed():
    for make in (spirals, moons):
        a, b, c = make(seed=7), make(seed=7), make(seed=8)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        assert not np.array_equal(a[0], c[0])


def test_without_seed_they_follow_manual_seed():
    for make in (spirals, moons):
        mg.manual_seed(5)
        first = make()[0]
        mg.manual_seed(5)
        np.testing.assert_array_equal(first, make()[0])


def test_a_seed_leaves_the_global_generator_alone():
    mg.manual_seed(3)
    expected = mg.rand(4).numpy()
    mg.manual_seed(3)
    spirals(seed=1)
    moons(seed=1)
    np.testing.assert_array_equal(mg.rand(4).numpy(), expected)


def test_moons_shape_and_classes():
    X, y = moons(n_samples=101, seed=0)
    assert X.shape == (101, 2) and X.dtype == np.float32
    assert y.dtype == np.int64 and np.bincount(y).tolist() == [50, 51]


def test_moons_without_noise_match_scikit_learn():
    datasets = pytest.importorskip("sklearn.datasets")
    for n in (10, 11, 200):
        X, y = moons(n_samples=n, noise=0.0)
        X_ref, y_ref = datasets.make_moons(n_samples=n, noise=0.0, shuffle=False)
        np.testing.assert_allclose(X, X_ref, atol=1e-6)
        np.testing.assert_array_equal(y, y_ref)


@pytest.mark.parametrize(
    ("make", "kwargs", "message"),
    [
        (spirals, {"n_points": 0}, "n_points"),
        (spirals, {"n_classes": 1.5}, "n_classes"),
        (spirals, {"noise": -0.1}, "noise"),
        (spirals, {"noise": float("nan")}, "noise"),
        (moons, {"n_samples": -3}, "n_samples"),
        (moons, {"noise": -1.0}, "noise"),
    ],
)
def test_data_set_arguments_are_checked(make, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


def test_a_small_mlp_can_fit_the_spirals():
    """The data set is learnable: a 2-layer net trained a little beats chance by far."""
    X, y = spirals(n_points=60, n_classes=3, seed=0)
    rng = np.random.default_rng(0)
    w1 = mg.tensor(rng.standard_normal((2, 64)) * 1.0, requires_grad=True)
    b1 = mg.zeros(64, requires_grad=True)
    w2 = mg.tensor(rng.standard_normal((64, 3)) * 0.1, requires_grad=True)
    onehot = mg.tensor(np.eye(3, dtype=np.float32)[y])
    Xt = mg.tensor(X)
    for _ in range(300):
        logits = (Xt @ w1 + b1).relu() @ w2
        loss = -(logits.log_softmax(1) * onehot).sum(1).mean()
        for p in (w1, b1, w2):
            p.grad = None
        loss.backward()
        with mg.no_grad():
            for p in (w1, b1, w2):
                p -= 0.5 * p.grad
    accuracy = (logits.detach().numpy().argmax(1) == y).mean()
    assert accuracy > 0.8


# ---------------------------------------------------------------------------
# digits
# ---------------------------------------------------------------------------


def test_digits_shapes_ranges_and_split_sizes():
    pytest.importorskip("sklearn")
    (X_train, y_train), (X_test, y_test) = digits()
    assert X_train.shape == (1438, 64) and X_test.shape == (359, 64)
    assert y_train.shape == (1438,) and y_test.shape == (359,)
    assert X_train.dtype == X_test.dtype == np.float32
    assert y_train.dtype == y_test.dtype == np.int64
    for X in (X_train, X_test):
        assert X.min() == 0.0 and X.max() == 1.0
    assert set(y_train.tolist()) == set(y_test.tolist()) == set(range(10))


def test_digits_split_is_a_stratified_partition():
    datasets = pytest.importorskip("sklearn.datasets")
    full = datasets.load_digits()
    (X_train, y_train), (X_test, y_test) = digits(test_fraction=0.3, seed=4)
    assert len(y_test) == round(1797 * 0.3)
    counts = np.bincount(full.target)
    assert np.all(np.abs(np.bincount(y_test) - counts * 0.3) < 1)
    # together the two splits are exactly the data set, image with its label
    rows = np.concatenate([np.c_[X_train * 16, y_train], np.c_[X_test * 16, y_test]])
    expected = np.c_[full.data, full.target]
    np.testing.assert_array_equal(
        rows[np.lexsort(rows.T[::-1])], expected[np.lexsort(expected.T[::-1])]
    )
    # and neither split is sorted by class
    assert not np.all(np.diff(y_train) >= 0)


def test_digits_is_deterministic_given_the_seed():
    pytest.importorskip("sklearn")
    first, second, other = digits(seed=1), digits(seed=1), digits(seed=2)
    for split in (0, 1):
        for part in (0, 1):
            np.testing.assert_array_equal(first[split][part], second[split][part])
    assert not np.array_equal(first[0][0], other[0][0])


def test_digits_test_fraction_bounds():
    pytest.importorskip("sklearn")
    (X_train, _), (X_test, _) = digits(test_fraction=0.0)
    assert X_train.shape == (1797, 64) and X_test.shape == (0, 64)
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="test_fraction"):
            digits(test_fraction=bad)


def test_digits_without_scikit_learn_says_how_to_install(monkeypatch):
    # A None entry in sys.modules makes `import sklearn...` raise ImportError.
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r'pip install "minigrad\[data\]"'):
        digits()
