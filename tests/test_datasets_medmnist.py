"""MedMNIST loaders (R-DC's Tables 1, 3-5, 8) on small generated .npz files in the official layout; no network."""
import numpy as np
import pytest

from common import cli, datasets

SIZES = {"train": 7, "val": 3, "test": 5}
KINDS = {"pneumoniamnist": (2, 1), "breastmnist": (2, 1), "bloodmnist": (8, 3)}  # (classes, channels), MedMNIST info


def write_npz(path, flag, seed=0, drop=None, **override):
    """A file with the official keys: uint8 images (n, 28, 28) or (n, 28, 28, 3), labels (n, 1); returns the arrays."""
    n_classes, channels = KINDS[flag]
    rng = np.random.default_rng(seed)
    arrays, offset = {}, 0
    for split, n in SIZES.items():
        shape = (n, 28, 28) if channels == 1 else (n, 28, 28, 3)
        images = rng.integers(1, 255, shape, dtype=np.uint8)
        images[0, 0, 0] = 255 if split == "train" else 0
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = ((np.arange(n) + offset) % n_classes).astype(np.uint8)[:, None]  # all classes
        offset += n
    arrays.update(override)
    if drop:
        del arrays[drop]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return arrays


@pytest.fixture
def medmnist(tmp_path, monkeypatch):
    """CLUSTER_DATA_DIR = tmp_path/data, an empty medmnist root, no known MD5 for the generated files, and a
    download that fails (recording its calls) -- the network is never touched."""
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("CLUSTER_DATA_DIR", str(data))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(datasets, "search_dirs", lambda: [data])
    monkeypatch.setattr(datasets, "_medmnist_root", lambda: tmp_path / "home" / ".medmnist")
    monkeypatch.setattr(datasets, "CHECKSUMS", {k: v for k, v in datasets.CHECKSUMS.items()
                                                if not k.startswith("medmnist/")})
    calls = []

    def offline(flag):
        calls.append(flag)
        raise OSError("network unreachable")

    monkeypatch.setattr(datasets, "_medmnist_download", offline)
    return data, calls


def expected(arrays, channels):
    x = np.concatenate([arrays[f"{s}_images"] for s in SIZES])
    x = x[..., None] if channels == 1 else x
    return x.astype(np.float64) / 255.0, np.concatenate([arrays[f"{s}_labels"][:, 0] for s in SIZES])


@pytest.mark.parametrize("flag", list(KINDS))
def test_all_splits_concatenated_scaled_and_labels_flat(medmnist, flag):
    """train + val + test in that order (R-DC's Table 1 sizes are the totals), pixels / 255, labels (n,), channels
    kept (BloodMNIST RGB), n_clusters = the MedMNIST classes."""
    data, calls = medmnist
    n_classes, channels = KINDS[flag]
    arrays = write_npz(data / "medmnist" / f"{flag}.npz", flag)
    ds = datasets.load(flag)
    x, y = expected(arrays, channels)
    assert ds.x.shape == (15, 28, 28, channels) and ds.x.dtype == np.float32
    np.testing.assert_allclose(ds.x, x, rtol=0, atol=1e-7)
    assert ds.x[0, 0, 0, 0] == 1.0 and ds.x[7, 0, 0, 0] == 0.0 and ds.x[10, 0, 0, 0] == 0.0  # 255 -> 1, 0 -> 0
    np.testing.assert_allclose(ds.x[7:10], arrays["val_images"].reshape(3, 28, 28, channels) / 255.0, atol=1e-7)
    assert ds.y.shape == (15,) and ds.y.dtype == np.int64
    np.testing.assert_array_equal(ds.y, y)
    assert ds.n_clusters == n_classes and calls == []


@pytest.mark.parametrize("where", ["data", "home"])
def test_file_at_the_data_dir_top_or_in_medmnist_root(medmnist, tmp_path, where):
    """<CLUSTER_DATA_DIR>/<flag>.npz and the medmnist package's root (~/.medmnist/<flag>.npz) are found too."""
    data, calls = medmnist
    folder = data if where == "data" else tmp_path / "home" / ".medmnist"
    arrays = write_npz(folder / "breastmnist.npz", "breastmnist", seed=3)
    ds = datasets.load("breastmnist")
    np.testing.assert_array_equal(ds.y, expected(arrays, 1)[1])
    assert calls == []


def test_data_dir_copy_comes_before_the_medmnist_root(medmnist, tmp_path):
    data, _ = medmnist
    write_npz(tmp_path / "home" / ".medmnist" / "pneumoniamnist.npz", "pneumoniamnist", seed=1)
    arrays = write_npz(data / "medmnist" / "pneumoniamnist.npz", "pneumoniamnist", seed=2)
    np.testing.assert_allclose(datasets.load("pneumoniamnist").x, expected(arrays, 1)[0], atol=1e-7)


def test_missing_key_is_one_error_line(medmnist):
    data, _ = medmnist
    write_npz(data / "medmnist" / "bloodmnist.npz", "bloodmnist", drop="val_labels")
    with pytest.raises(datasets.DataError, match="missing val_labels") as e:
        datasets.load("bloodmnist")
    assert "\n" not in str(e.value) and "bloodmnist.npz" in str(e.value)


def test_not_an_npz_is_one_error_line(medmnist):
    data, _ = medmnist
    (data / "medmnist").mkdir()
    (data / "medmnist" / "pneumoniamnist.npz").write_bytes(b"<html>rate limited</html>")
    with pytest.raises(datasets.DataError, match="not a readable .npz") as e:
        datasets.load("pneumoniamnist")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("override", [
    {"test_labels": np.array([[0], [1], [2], [0], [1]], np.uint8)},  # label 2 in a 2-class set
    {"train_images": np.zeros((7, 64, 64), np.uint8)},  # a 64x64 file under the 28x28 name
    {"val_images": np.zeros((3, 28, 28), np.float32)},  # not uint8 pixels
])
def test_wrong_content_is_refused(medmnist, override):
    data, _ = medmnist
    write_npz(data / "medmnist" / "breastmnist.npz", "breastmnist", **override)
    with pytest.raises(datasets.DataError, match="breastmnist.npz") as e:
        datasets.load("breastmnist")
    assert "\n" not in str(e.value)


def test_checksum_of_the_official_file_is_verified(medmnist, monkeypatch):
    data, _ = medmnist
    monkeypatch.setattr(datasets, "CHECKSUMS", {"medmnist/pneumoniamnist.npz": "28209eda62fecd6e6a2d98b1501bb15f"})
    write_npz(data / "medmnist" / "pneumoniamnist.npz", "pneumoniamnist")
    with pytest.raises(datasets.DataError, match="checksum mismatch.*28209eda62fecd6e6a2d98b1501bb15f") as e:
        datasets.load("pneumoniamnist")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("flag", list(KINDS))
def test_offline_without_file_names_file_and_url(medmnist, flag):
    data, calls = medmnist
    with pytest.raises(datasets.DataError) as e:
        datasets.load(flag)
    msg = str(e.value)
    assert calls == [flag] and "\n" not in msg
    assert f"{flag}.npz not found" in msg and str(data) in msg
    assert f"https://zenodo.org/records/10519652/files/{flag}.npz?download=1" in msg


def test_download_is_used_when_no_copy_exists(medmnist, tmp_path, monkeypatch):
    """The download's file (into medmnist's root) is then read like a local one."""
    _, _ = medmnist
    arrays = {}

    def online(flag):
        arrays.update(write_npz(tmp_path / "home" / ".medmnist" / f"{flag}.npz", flag, seed=5))
        return tmp_path / "home" / ".medmnist" / f"{flag}.npz"

    monkeypatch.setattr(datasets, "_medmnist_download", online)
    ds = datasets.load("bloodmnist")
    np.testing.assert_array_equal(ds.y, expected(arrays, 3)[1])


def test_list_marks_missing_medmnist_sets_as_needing_a_download(medmnist, tmp_path):
    data, _ = medmnist

    def need_download():
        lines = [line for line in cli.list_lines(str(tmp_path / "results")) if "need a download:" in line]
        return {d.strip() for line in lines for d in line.split("need a download:")[1].split(",")}

    assert set(KINDS) <= need_download()
    write_npz(data / "medmnist" / "bloodmnist.npz", "bloodmnist")
    shown = need_download()
    assert "bloodmnist" not in shown and {"pneumoniamnist", "breastmnist"} <= shown
    assert datasets.needs_download("pneumoniamnist") and not datasets.needs_download("bloodmnist")
    assert not datasets.needs_download("usps")  # shipped data sets are never "download only"
