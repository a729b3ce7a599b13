"""common.datasets.load_file: a user's .npz/.npy data, converted as its docstring says, and one DataError per bad input."""
import numpy as np
import pytest

from common import datasets
from common.datasets import DataError, load_file


def save(tmp_path, name, **arrays):
    path = tmp_path / name
    if name.endswith(".npy"):
        np.save(path, arrays["x"])
    else:
        np.savez(path, **arrays)
    return path


def uint8_images(n=12, h=5, w=4, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w), dtype=np.uint8)


# --- good inputs -----------------------------------------------------------------------------------------------
def test_uint8_images_rescaled_get_a_channel_and_labels_remapped(tmp_path):
    x = uint8_images()
    x[0, 0, 0], x[1, 0, 0] = 0, 255  # both ends of the range present
    y = np.array([7, 3, 7, 9] * 3)
    ds = load_file(save(tmp_path, "digits.npz", x=x, y=y))
    assert ds.x.dtype == np.float32 and ds.x.shape == (12, 5, 4, 1)
    np.testing.assert_allclose(ds.x[..., 0], x.astype(np.float64) / 255.0, rtol=1e-7, atol=0)
    assert ds.x[0, 0, 0, 0] == 0.0 and ds.x[1, 0, 0, 0] == 1.0
    np.testing.assert_array_equal(ds.y, [1, 0, 1, 2] * 3)  # 3 -> 0, 7 -> 1, 9 -> 2 (sorted order)
    assert ds.y.dtype == np.int64
    assert (ds.n_clusters, ds.name, len(ds)) == (3, "digits", 12)


def test_int_images_in_0_255_of_any_int_dtype_rescaled_4d_kept(tmp_path):
    x = uint8_images(n=6, h=3, w=3).astype(np.int64)[..., None].repeat(3, axis=-1)  # (6, 3, 3, 3) int64
    ds = load_file(save(tmp_path, "rgb.npz", x=x, y=np.arange(6) % 2))
    assert ds.x.shape == (6, 3, 3, 3)
    np.testing.assert_allclose(ds.x, x / 255.0, rtol=0, atol=1e-7)


def test_float_features_kept_unscaled(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(scale=300.0, size=(10, 7))  # float64, values far outside [0, 1] and [0, 255]
    x[0, 0] = 200.0  # integral floats are not "uint8-like": only integer dtypes are rescaled
    ds = load_file(save(tmp_path, "features.npz", x=x, y=np.array(["a", "b"] * 5)))
    assert ds.x.dtype == np.float32 and ds.x.shape == (10, 7)
    np.testing.assert_array_equal(ds.x, x.astype(np.float32))
    np.testing.assert_array_equal(ds.y, [0, 1] * 5)
    assert ds.n_clusters == 2


def test_float_pixels_in_0_255_not_rescaled(tmp_path):
    x = np.random.default_rng(2).integers(0, 256, size=(8, 4, 4)).astype(np.float32)  # integral floats in [0, 255]
    ds = load_file(save(tmp_path, "floats.npy", x=x), n_clusters=2)
    np.testing.assert_array_equal(ds.x[..., 0], x)  # only integer dtypes count as uint8-like


def test_integers_outside_0_255_not_rescaled(tmp_path):
    x = np.arange(20).reshape(10, 2) - 3  # negative integers: counts/ids, not pixels
    ds = load_file(save(tmp_path, "counts.npy", x=x), n_clusters=2)
    np.testing.assert_array_equal(ds.x, x.astype(np.float32))
    x = np.arange(20).reshape(10, 2) * 30  # up to 570
    np.testing.assert_array_equal(load_file(save(tmp_path, "big.npy", x=x), n_clusters=2).x, x.astype(np.float32))


def test_npy_without_labels_needs_and_takes_n_clusters(tmp_path):
    ds = load_file(save(tmp_path, "mine.npy", x=uint8_images()), n_clusters=4)
    assert ds.y is None and ds.n_clusters == 4 and ds.name == "mine" and len(ds) == 12
    assert ds.x.shape == (12, 5, 4, 1)


def test_given_n_clusters_overrides_the_label_count(tmp_path):
    ds = load_file(save(tmp_path, "d.npz", x=uint8_images(), y=np.arange(12) % 3), n_clusters=5)
    assert ds.n_clusters == 5 and ds.y.max() == 2


def test_column_labels_and_subset_without_labels(tmp_path):
    ds = load_file(save(tmp_path, "d.npz", x=uint8_images(), y=(np.arange(12) % 3)[:, None] + 10))
    np.testing.assert_array_equal(ds.y, np.arange(12) % 3)
    unlabelled = load_file(save(tmp_path, "u.npy", x=uint8_images()), n_clusters=3)
    sub = datasets.subset(unlabelled, 2, seed=0)
    assert sub.y is None and len(sub) == 6 and sub.n_clusters == 3
    idx = np.sort(np.random.default_rng(0).permutation(12)[:6])
    np.testing.assert_array_equal(sub.x, unlabelled.x[idx])
    np.testing.assert_array_equal(datasets.subset(unlabelled, 2, seed=0).x, sub.x)  # deterministic


# --- bad inputs: one DataError each, naming the problem --------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.npz: file not found"):
        load_file(tmp_path / "nope.npz", n_clusters=2)


def test_unknown_suffix(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("1,2\n3,4\n")
    with pytest.raises(DataError, match=r"unknown file type '\.csv'"):
        load_file(path, n_clusters=2)


def test_unreadable_file(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="not a readable .npz file"):
        load_file(path, n_clusters=2)


def test_pickled_object_array_refused(tmp_path):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([[1, "a"], [2, "b"]], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="not a readable .npy file"):
        load_file(path, n_clusters=2)


def test_missing_x(tmp_path):
    with pytest.raises(DataError, match=r"no array 'x' in the \.npz \(it holds: data, y\)"):
        load_file(save(tmp_path, "d.npz", data=uint8_images(), y=np.arange(12) % 2))


def test_non_numeric_x(tmp_path):
    with pytest.raises(DataError, match="x must hold numbers"):
        load_file(save(tmp_path, "d.npz", x=np.array([["a", "b"]] * 4)), n_clusters=2)


@pytest.mark.parametrize("shape", [(12,), (2, 2, 2, 2, 2)])
def test_wrong_rank(tmp_path, shape):
    with pytest.raises(DataError, match=r"x must be images .* got shape \(" + str(shape[0])):
        load_file(save(tmp_path, "d.npy", x=np.zeros(shape, np.float32)), n_clusters=2)


def test_empty_x(tmp_path):
    with pytest.raises(DataError, match="x is empty"):
        load_file(save(tmp_path, "d.npy", x=np.zeros((5, 0), np.float32)), n_clusters=2)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_x(tmp_path, bad):
    x = np.random.default_rng(0).uniform(size=(6, 3))
    x[2, 1] = bad
    with pytest.raises(DataError, match=r"x holds NaN or infinite values \(1 of 18\)"):
        load_file(save(tmp_path, "d.npz", x=x, y=np.arange(6) % 2))


def test_x_beyond_float32(tmp_path):
    with pytest.raises(DataError, match="too large for float32"):
        load_file(save(tmp_path, "d.npy", x=np.full((4, 2), 1e300)), n_clusters=2)


def test_fewer_samples_than_clusters(tmp_path):
    with pytest.raises(DataError, match=r"fewer samples \(3\) than clusters \(4\)"):
        load_file(save(tmp_path, "d.npy", x=np.zeros((3, 2), np.float32)), n_clusters=4)


def test_y_of_another_length(tmp_path):
    with pytest.raises(DataError, match=r"one label per sample of x \(12\), got shape \(11,\)"):
        load_file(save(tmp_path, "d.npz", x=uint8_images(), y=np.arange(11) % 2))


def test_y_of_wrong_rank(tmp_path):
    with pytest.raises(DataError, match=r"got shape \(12, 2\)"):
        load_file(save(tmp_path, "d.npz", x=uint8_images(), y=np.zeros((12, 2))))


def test_non_finite_y(tmp_path):
    y = (np.arange(12) % 2).astype(float)
    y[3] = np.nan
    with pytest.raises(DataError, match="y holds NaN"):
        load_file(save(tmp_path, "d.npz", x=uint8_images(), y=y))


def test_no_y_and_no_n_clusters(tmp_path):
    with pytest.raises(DataError, match="no labels y in the file, so the number of clusters must be given"):
        load_file(save(tmp_path, "d.npy", x=uint8_images()))
    with pytest.raises(DataError, match="no labels y"):  # an .npz without y as well
        load_file(save(tmp_path, "d.npz", x=uint8_images()))


@pytest.mark.parametrize("k", [1, 0, -3])
def test_fewer_than_two_clusters(tmp_path, k):
    with pytest.raises(DataError, match=f"need at least 2 clusters, got {k}"):
        load_file(save(tmp_path, "d.npy", x=uint8_images()), n_clusters=k)


def test_single_label_means_one_cluster(tmp_path):
    with pytest.raises(DataError, match="need at least 2 clusters, got 1 .y holds a single label"):
        load_file(save(tmp_path, "d.npz", x=uint8_images(), y=np.zeros(12, int)))


def test_non_integer_n_clusters(tmp_path):
    with pytest.raises(DataError, match="must be an integer, got 2.5"):
        load_file(save(tmp_path, "d.npy", x=uint8_images()), n_clusters=2.5)


def test_messages_are_one_line(tmp_path):
    bad = [(tmp_path / "nope.npz", 2), (save(tmp_path, "d.npy", x=np.zeros(3)), 2),
           (save(tmp_path, "e.npz", data=np.zeros((3, 2))), 2), (save(tmp_path, "f.npy", x=uint8_images()), None)]
    for path, k in bad:
        with pytest.raises(DataError) as e:
            load_file(path, n_clusters=k)
        assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_existing_loader_len_unchanged():
    ds = datasets.Dataset(x=np.zeros((4, 2), np.float32), y=np.arange(4), n_clusters=2, name="t")
    assert len(ds) == 4
    assert len(datasets.Dataset(x=np.zeros((5, 2), np.float32), y=None, n_clusters=2, name="t")) == 5
