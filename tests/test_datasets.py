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


# --- Peng et al. (SAIP) Tables IV-V data: CIFAR through tensorflow-datasets, REUTERS-10K through scikit-learn's RCV1.
# Offline: generated data (tfds.testing.mock_data, a small synthetic RCV1) and the one-line errors.
@pytest.fixture
def no_tfds_home(isolated, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(isolated / "tfds_home"))
    return isolated


def test_cifar10_test_through_mocked_tfds(no_tfds_home):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=20):
        ds = datasets.load("cifar10-test")
    assert ds.x.shape == (20, 32, 32, 3) and ds.x.dtype == np.float32 and 0 <= ds.x.min() and ds.x.max() <= 1
    assert ds.y.dtype == np.int64 and ds.y.max() < 10 and ds.n_clusters == np.unique(ds.y).size


def test_cifar100_aquatic_keeps_the_superclass_in_order(no_tfds_home):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=400):
        ds = datasets.load("cifar100-aquatic")
        raw, info = datasets._tfds_load("cifar100", "train", no_tfds_home / "tfds_home", True)  # the same examples
    ids = list(datasets.CIFAR100_AQUATIC_IDS)  # the mock has no label names (metadata): ids 0-99
    want = [ids.index(label) for label in raw["label"] if label in ids]
    assert len(want) > 5 and info.features["label"].num_classes == 100
    np.testing.assert_array_equal(ds.y, want + want)  # train then test (the mock repeats its examples)
    assert ds.x.shape == (2 * len(want), 32, 32, 3) and set(ds.y) <= set(range(5))


def test_cifar100_label_names_are_checked_when_present(no_tfds_home, monkeypatch):
    class Info:  # the metadata of a prepared copy: CIFAR-100's fine label names, alphabetical
        class features(dict):
            pass

    names = [f"class{i:02d}" for i in range(100)]
    for i, n in zip(datasets.CIFAR100_AQUATIC_IDS, datasets.CIFAR100_AQUATIC):
        names[i] = n
    label = type("L", (), {"names": names})()
    info = Info()
    info.features = {"label": label}
    ex = {"image": np.zeros((4, 32, 32, 3), np.uint8), "label": np.array([95, 4, 3, 30])}
    monkeypatch.setattr(datasets, "_tfds_load", lambda *a: (ex, info))
    np.testing.assert_array_equal(datasets.load("cifar100-aquatic").y, [4, 0, 1, 4, 0, 1])  # whale, beaver, dolphin
    names[4] = "bear"
    with pytest.raises(datasets.DataError, match="not"):
        datasets.load("cifar100-aquatic")


def test_tfds_prepared_copy_is_read_without_download(no_tfds_home, monkeypatch):
    (no_tfds_home / "tensorflow_datasets" / "cifar10").mkdir(parents=True)
    calls = []

    def fake(name, split, data_dir, download):
        calls.append((name, split, str(data_dir), download))
        return {"image": np.zeros((3, 32, 32, 3), np.uint8), "label": np.array([0, 1, 1])}, None

    monkeypatch.setattr(datasets, "_tfds_load", fake)
    assert datasets.load("cifar10-test").x.shape == (3, 32, 32, 3)
    assert calls == [("cifar10", "test", str(no_tfds_home / "tensorflow_datasets"), False)]


def test_tfds_offline_error_is_one_line(no_tfds_home, monkeypatch):
    def offline(name, split, data_dir, download):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "_tfds_load", offline)
    for name, tfds_name in (("cifar10-test", "cifar10"), ("cifar100-aquatic", "cifar100")):
        with pytest.raises(datasets.DataError) as e:
            datasets.load(name)
        msg = str(e.value)
        assert "\n" not in msg and f"tensorflow_datasets/{tfds_name}/" in msg and str(no_tfds_home) in msg


def synthetic_rcv1(seed=0, n_train=60, n_test=90, n_terms=40):
    """A small RCV1 in scikit-learn's layout: ltc vectors w = (1 + ln tf) ln(N_train / df_train) / norm, a topic
    matrix with the four roots among other topics (some documents with two roots, some with none), and ids."""
    from scipy import sparse

    rng = np.random.default_rng(seed)
    n = n_train + n_test
    counts = rng.poisson(0.8, size=(n, n_terms)) * (rng.uniform(size=(n, n_terms)) < 0.4)
    counts[np.arange(n), rng.integers(0, n_terms, n)] = 1  # every document has a term that occurs once
    df = (counts[:n_train] > 0).sum(0)
    assert np.all((df > 0) & (df < n_train))  # RCV1-v2's terms come from the training set; none is in all of it
    df = (counts[:n_train] > 0).sum(0)
    idf = np.log(n_train / np.maximum(df, 1))
    w = np.where(counts > 0, (1 + np.log(np.maximum(counts, 1))) * idf, 0.0)
    w /= np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
    names = np.array(["C11", "CCAT", "E21", "ECAT", "GCAT", "M11", "MCAT"])
    topics = np.zeros((n, len(names)), np.uint8)
    roots = [1, 4, 6, 3]  # CCAT, GCAT, MCAT, ECAT
    topics[np.arange(n), np.array(roots)[rng.integers(0, 4, n)]] = 1
    topics[rng.uniform(size=n) < 0.15, 4] = 1  # some documents get a second root (GCAT)
    topics[rng.uniform(size=n) < 0.05, :] = 0  # some none
    topics[:, 0] = rng.uniform(size=n) < 0.3  # a non-root topic does not matter
    ids = np.r_[np.arange(2286, 2286 + n_train), np.arange(26151, 26151 + n_test)]
    perm = rng.permutation(n)  # scikit-learn's order is not DEC's
    return sparse.csr_matrix(w[perm]), sparse.csr_matrix(topics[perm]), names, ids[perm], counts[perm]


def test_reuters10k_preprocessing_matches_decs_pipeline_on_synthetic_rcv1():
    from sklearn.feature_extraction.text import TfidfTransformer

    w, topics, names, ids, counts = synthetic_rcv1()
    n_docs, n_words = 50, 10
    x, y = datasets.reuters10k_from_rcv1(w, topics, names, ids, n_docs=n_docs, n_words=n_words)
    # DEC's make_reuters_data on the true counts: single-root documents in file order (test parts, then train)
    roots = topics.toarray()[:, [1, 4, 6, 3]]
    order = sorted(np.flatnonzero(roots.sum(1) == 1), key=lambda i: (ids[i] <= 26150, ids[i]))
    c = counts[order]
    words = np.sort(np.argsort(-c.sum(0), kind="stable")[:n_words])
    want = TfidfTransformer(norm="l2", sublinear_tf=True).fit_transform(c[:, words]).toarray()[:n_docs]
    want = (want * np.sqrt(n_words)).astype(np.float32)
    perm = np.random.RandomState(1234).permutation(n_docs)
    np.testing.assert_allclose(x, want[perm], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(y, roots[order].argmax(1)[:n_docs][perm])
    assert x.shape == (n_docs, n_words) and x.dtype == np.float32 and set(y) <= {0, 1, 2, 3}


def test_reuters10k_reads_decs_file_and_features_pass_the_checks(isolated):
    (isolated / "reuters10k").mkdir()
    rng = np.random.default_rng(0)
    np.save(isolated / "reuters10k" / "reutersidf10k.npy",
            {"data": rng.normal(size=(12, 2000)).astype(np.float32), "label": np.arange(12) % 4})
    ds = datasets.load("reuters10k")
    assert ds.x.shape == (12, 2000) and ds.x.min() < 0 and ds.n_clusters == 4  # features: not limited to [0, 1]


def test_reuters10k_offline_error_is_one_line(isolated, monkeypatch):
    def offline():
        raise OSError("no network")

    monkeypatch.setattr(datasets, "_fetch_rcv1", offline)
    with pytest.raises(datasets.DataError) as e:
        datasets.load("reuters10k")
    msg = str(e.value)
    assert "\n" not in msg and f"{isolated}/reuters10k/" in msg and "reutersidf10k.npy" in msg


def test_load_checks_images_and_feature_vectors(monkeypatch):
    monkeypatch.setitem(datasets.LOADERS, "feat", lambda: (np.full((4, 3), -2.0, np.float32), np.arange(4)))
    monkeypatch.setitem(datasets.LOADERS, "img", lambda: (np.full((4, 2, 2, 1), 2.0, np.float32), np.arange(4)))
    monkeypatch.setitem(datasets.LOADERS, "nan", lambda: (np.full((4, 3), np.nan, np.float32), np.arange(4)))
    monkeypatch.setitem(datasets.LOADERS, "vec", lambda: (np.zeros((4, 3, 2), np.float32), np.arange(4)))
    assert datasets.load("feat").x.shape == (4, 3)
    for bad in ("img", "nan", "vec"):
        with pytest.raises(datasets.DataError):
            datasets.load(bad)


# --- datasets.available: the files each loader reads (LOCAL_FILES), found without a download ----------------------
FILE_SETS = ("usps", "mnist", "mnist-test", "fmnist", "coil20", "2mnist")


def _touch(root, *rels):
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")


def test_available_needs_every_file_of_one_alternative(isolated):
    assert not any(datasets.available(n) for n in FILE_SETS + ("usps-imb0.5",))
    _touch(isolated, "usps/usps_train.jf.gz")
    assert not datasets.available("usps")  # half of the .jf.gz pair
    _touch(isolated, "usps/usps_test.jf.gz")
    assert datasets.available("usps") and datasets.available("usps-imb0.5")
    _touch(isolated, *datasets.idx_files("mnist", ("test",)))
    assert datasets.available("mnist-test") and not datasets.available("mnist")  # mnist needs the train split too
    _touch(isolated, "mnist.npz")  # Keras's own cache holds both splits
    assert datasets.available("mnist") and not datasets.available("2mnist")
    _touch(isolated, *datasets.idx_files("fashion-mnist", ("train", "test")))
    assert datasets.available("fmnist") and datasets.available("2mnist")
    assert not datasets.available("coil20")
    assert datasets.available("no-such-set")  # load names the problem
    for name in FILE_SETS:  # the main alternative names files whose content fetch verifies (no typo skips a check)
        assert set(datasets.LOCAL_FILES[name][0]) <= set(datasets.CHECKSUMS), name


@pytest.mark.parametrize("name", ["usps", "coil20", "mnist-test", "fmnist"])
def test_local_files_are_what_the_loader_reads(name, isolated, monkeypatch):
    """With only LOCAL_FILES[name]'s first alternative (the real files, linked), the loader loads; for the loaders
    without a fallback, any one of them missing is a DataError. A loader moved to other files fails here."""
    monkeypatch.undo()  # the real search directories, to find the real files
    rels = datasets.LOCAL_FILES[name][0]
    real = [datasets.find(r) for r in rels]
    if any(p is None for p in real):
        pytest.skip(f"{name} files not present")
    monkeypatch.setattr(datasets, "search_dirs", lambda: [isolated])
    monkeypatch.setattr(datasets, "_download", lambda rel: None)
    for rel, path in zip(rels, real):
        (isolated / rel).parent.mkdir(parents=True, exist_ok=True)
        (isolated / rel).symlink_to(path)
    assert datasets.available(name)
    assert len(datasets.load(name)) > 0
    if name in ("usps", "coil20"):  # the MNIST-format loaders fall back to keras.datasets (a download)
        for rel in rels:
            (isolated / rel).rename(isolated / (rel + ".away"))
            with pytest.raises(datasets.DataError):
                datasets.load(name)
            (isolated / (rel + ".away")).rename(isolated / rel)
