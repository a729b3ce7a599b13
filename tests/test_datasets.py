"""Loaders: real files where present, small files in the same formats written here, and clear errors."""
import gzip
import os

import numpy as np
import pytest

from common import datasets
from conftest import has_data


def idx_bytes(arr):
    arr = np.asarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    return header + arr.tobytes()


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Only tmp_path is searched, and nothing is downloaded."""
    monkeypatch.setenv("CLUSTER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(datasets, "search_dirs", lambda: [tmp_path])
    monkeypatch.setattr(datasets, "_download", lambda rel: None)
    return tmp_path


def test_parse_idx_roundtrip_and_errors():
    a = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    np.testing.assert_array_equal(datasets.parse_idx(idx_bytes(a)), a)
    with pytest.raises(datasets.DataError):
        datasets.parse_idx(idx_bytes(a)[:-1])  # truncated
    with pytest.raises(datasets.DataError):
        datasets.parse_idx(b"PK\x03\x04garbage")


def test_missing_file_names_the_file_and_place(isolated):
    with pytest.raises(datasets.DataError, match=r"usps/usps_train\.jf\.gz.*" + str(isolated)):
        datasets.load("usps")


def test_checksum_mismatch_is_reported(isolated):
    (isolated / "usps").mkdir()
    rows = "\n".join("3 " + " ".join(["1.0"] * 256) for _ in range(3))
    for name in ("usps_train.jf.gz", "usps_test.jf.gz"):
        (isolated / "usps" / name).write_bytes(gzip.compress(f"header\n{rows}\n-1\n".encode()))
    with pytest.raises(datasets.DataError, match="checksum"):
        datasets.load("usps")


def test_corrupt_gzip_is_reported(isolated):
    (isolated / "usps").mkdir()
    (isolated / "usps" / "usps_train.jf.gz").write_bytes(b"not gzip at all")
    with pytest.raises(datasets.DataError, match="gzip"):
        datasets.load("usps")


def test_idx_files_in_mnist_format_load(isolated, monkeypatch):
    # Fashion-MNIST layout with tiny IDX files (no checksum known for these names)
    monkeypatch.setattr(datasets, "CHECKSUMS", {})
    d = isolated / "fashion-mnist"
    d.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("t10k", 4)):
        (d / f"{split}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(rng.integers(0, 256, (n, 28, 28)))))
        (d / f"{split}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.arange(n) % 3)))
    ds = datasets.load("fmnist")
    assert ds.x.shape == (10, 28, 28, 1) and ds.x.dtype == np.float32 and ds.n_clusters == 3
    assert 0 <= ds.x.min() and ds.x.max() <= 1


def test_unknown_name():
    with pytest.raises(datasets.DataError, match="unknown dataset"):
        datasets.load("cifar10")


@pytest.mark.skipif(not has_data("usps/usps_train.jf.gz", "usps/usps_test.jf.gz"), reason="USPS files not present")
def test_real_usps():
    ds = datasets.load("usps")
    assert ds.x.shape == (9298, 16, 16, 1) and ds.n_clusters == 10
    assert np.bincount(ds.y).tolist()[:2] == [1553, 1269]  # the standard USPS class counts of 0 and 1
    assert ds.x.min() == 0.0 and ds.x.max() == 1.0


@pytest.mark.skipif(not has_data("mnist/t10k-images-idx3-ubyte.gz"), reason="MNIST files not present")
def test_real_mnist_test_and_subset():
    ds = datasets.load("mnist-test")
    assert ds.x.shape == (10000, 28, 28, 1) and ds.y[:3].tolist() == [7, 2, 1]
    s1, s2 = datasets.subset(ds, 5, seed=3), datasets.subset(ds, 5, seed=3)
    np.testing.assert_array_equal(s1.y, s2.y)
    assert np.bincount(s1.y).tolist() == [5] * 10 and len(s1) == 50


@pytest.mark.skipif(not has_data("coil20/COIL20.mat"), reason="COIL-20 file not present")
def test_real_coil20_is_upright():
    ds = datasets.load("coil20")
    assert ds.x.shape == (1440, 32, 32, 1) and ds.n_clusters == 20 and np.bincount(ds.y).tolist() == [72] * 20


def test_data_dir_comes_first(tmp_path, monkeypatch):
    monkeypatch.setenv("CLUSTER_DATA_DIR", str(tmp_path))
    assert datasets.search_dirs()[0] == tmp_path
    assert os.fspath(datasets.search_dirs()[-1]) == "/usr/share/datasets"


def test_imbalanced_retention_is_linear_in_the_class_index(monkeypatch):
    y = np.repeat(np.arange(5), 20000)
    x = np.zeros((len(y), 2, 2, 1), np.float32)
    monkeypatch.setitem(datasets.LOADERS, "toy", lambda: (x, y))
    ds = datasets.load("toy-imb0.2")
    kept = np.bincount(ds.y, minlength=5) / 20000
    np.testing.assert_allclose(kept, [0.2, 0.4, 0.6, 0.8, 1.0], atol=0.01)  # r, linear, then 1 (DCSS §4.8)
    assert ds.name == "toy-imb0.2" and ds.n_clusters == 5 and ds.x.shape[1:] == (2, 2, 1)
    np.testing.assert_array_equal(datasets.load("toy-imb0.2").y, ds.y)  # deterministic
    assert len(datasets.load("toy-imb1").y) == len(y)
    for bad in ("toy-imb0", "toy-imb1.5", "toy-imbx", "nope-imb0.5"):
        with pytest.raises(datasets.DataError):
            datasets.load(bad)
