"""Image data sets as float32 NHWC arrays in [0, 1] with integer labels (REUTERS-10K: TF-IDF vectors (n, 2000)).

Search order for each file: the directory in ``$CLUSTER_DATA_DIR``, then the standard
places (Keras cache ``~/.keras/datasets``, Debian's ``/usr/share/datasets``), then the
real download (when online). Content checksums (MD5 of the decompressed bytes) are verified.
The data sets of Peng et al.'s Tables IV-V (DOWNLOAD_ONLY) come through tensorflow-datasets (CIFAR) and
scikit-learn's RCV1 fetcher (REUTERS-10K) and need a download once; so do R-DC's MedMNIST sets (the official 28x28
``.npz`` files, see _medmnist).
"""
import bz2
import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np


class DataError(RuntimeError):
    """A data file is missing, corrupt or of the wrong shape (one line of message)."""


@dataclass
class Dataset:
    x: np.ndarray  # (n, H, W, C) float32 in [0, 1]; feature data sets (reuters10k): (n, m) float32, finite
    y: Optional[np.ndarray]  # (n,) int64; None: no labels (a user's file without y, see load_file)
    n_clusters: int
    name: str

    def __len__(self):
        return len(self.x)


# MD5 of the decompressed content (../shared/data/README.md; Fashion-MNIST: Debian's files).
CHECKSUMS = {
    "mnist/train-images-idx3-ubyte.gz": "6bbc9ace898e44ae57da46a324031adb",
    "mnist/train-labels-idx1-ubyte.gz": "a25bea736e30d166cdddb491f175f624",
    "mnist/t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea",
    "mnist/t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637",
    "fashion-mnist/train-images-idx3-ubyte.gz": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "fashion-mnist/train-labels-idx1-ubyte.gz": "9018921c3c673c538a1fc5bad174d6f9",
    "fashion-mnist/t10k-images-idx3-ubyte.gz": "8181f5470baa50b63fa0f6fddb340f0a",
    "fashion-mnist/t10k-labels-idx1-ubyte.gz": "15d484375f8d13e6eb1aabb0c3f46965",
    "usps/usps_train.jf.gz": "f6645f06958fe913c8b2a2917b891013",
    "usps/usps_test.jf.gz": "ba3dac60980c0fb21581da09ecda3e7f",
    "coil20/COIL20.mat": "563dbc3bbef2774639ec856b2cf9c6c5",
    # MedMNIST 28x28 .npz files (MD5 of the file; medmnist/info.py of github.com/MedMNIST/MedMNIST, v3.0.2, the same
    # since v1 in 2020)
    "medmnist/pneumoniamnist.npz": "28209eda62fecd6e6a2d98b1501bb15f",
    "medmnist/breastmnist.npz": "750601b1f35ba3300ea97c75c52ff8f6",
    "medmnist/bloodmnist.npz": "7053d0359d879ad8a5505303e11de1dc",
}

URLS = {
    "usps/usps_train.jf.gz": "https://www-i6.informatik.rwth-aachen.de/~keysers/Pubs/SPR2002/usps_train.jf.gz",
    "usps/usps_test.jf.gz": "https://www-i6.informatik.rwth-aachen.de/~keysers/Pubs/SPR2002/usps_test.jf.gz",
    "coil20/COIL20.mat": "http://www.cad.zju.edu.cn/home/dengcai/Data/COIL20/COIL20.mat",
}


def search_dirs():
    """Directories searched for ``<folder>/<file>``, in order."""
    dirs = []
    if os.environ.get("CLUSTER_DATA_DIR"):
        dirs.append(Path(os.environ["CLUSTER_DATA_DIR"]).expanduser())
    dirs += [Path(os.environ.get("KERAS_HOME", "~/.keras")).expanduser() / "datasets", Path("/usr/share/datasets")]
    return dirs


def _read(path):
    raw = Path(path).read_bytes()
    if str(path).endswith(".gz"):
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataError(f"{path}: not a valid gzip file ({e})") from None
    if str(path).endswith(".bz2"):
        try:
            return bz2.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataError(f"{path}: not a valid bz2 file ({e})") from None
    return raw


def find(*relpaths):
    """First existing path among the search directories for any of ``relpaths``, else None."""
    for d in search_dirs():
        for rel in relpaths:
            if (d / rel).is_file():
                return d / rel
    return None


def fetch(rel, download=True):
    """Decompressed, checksum-verified bytes of ``rel`` (e.g. 'usps/usps_train.jf.gz')."""
    path = find(rel)
    if path is None and download and rel in URLS:
        path = _download(rel)
    if path is None:
        raise DataError(_missing_message([rel]))
    data = _read(path)
    want = CHECKSUMS.get(rel)
    if want and hashlib.md5(data).hexdigest() != want:
        raise DataError(f"{path}: checksum mismatch (corrupt or different file); expected MD5 {want} of its content")
    return data


def _missing_message(rels):
    where = os.environ.get("CLUSTER_DATA_DIR") or "$CLUSTER_DATA_DIR"
    return (f"data file(s) {', '.join(rels)} not found and could not be downloaded; "
            f"put them under {where}/ (e.g. {where}/{rels[0]})")


def _download(rel):
    import keras

    folder, fname = rel.split("/")
    target = Path(os.environ.get("KERAS_HOME", "~/.keras")).expanduser() / "datasets" / folder
    try:
        return Path(keras.utils.get_file(fname, URLS[rel], cache_dir=str(target.parent.parent), cache_subdir=f"datasets/{folder}"))
    except Exception:  # offline or server gone: the caller reports the missing file
        return None


def parse_idx(data, rel="idx"):
    """Decodes an IDX (LeCun) byte string into a uint8 array."""
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise DataError(f"{rel}: not an IDX file of unsigned bytes")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{rel}: IDX header says {shape} but the file holds {body.size} values")
    return body.reshape(shape)


def idx_files(folder, splits):
    """The IDX files (images, labels per split) an MNIST-format data set reads from ``folder``."""
    return tuple(f"{folder}/{'train' if s == 'train' else 't10k'}-{kind}-idx{dim}-ubyte.gz"
                 for s in splits for kind, dim in (("images", 3), ("labels", 1)))


def _idx_pair(folder, split):
    rels = idx_files(folder, (split,))
    if any(find(r) is None for r in rels):
        return None
    return tuple(parse_idx(fetch(r), r) for r in rels)


def _mnist_like(folder, keras_name, splits):
    """MNIST-format data: IDX files if present, else keras.datasets (which reads or downloads its npz)."""
    pairs = [_idx_pair(folder, s) for s in splits]
    if any(p is None for p in pairs):
        import keras

        try:
            (xtr, ytr), (xte, yte) = getattr(keras.datasets, keras_name).load_data()
        except Exception:
            raise DataError(_missing_message(list(idx_files(folder, splits)))) from None
        pairs = [(xtr, ytr) if s == "train" else (xte, yte) for s in splits]
    x = np.concatenate([p[0] for p in pairs])
    y = np.concatenate([p[1] for p in pairs])
    return x[..., None].astype(np.float32) / 255.0, y.astype(np.int64)


USPS_JF, USPS_H5, USPS_LIBSVM = (("usps/usps_train.jf.gz", "usps/usps_test.jf.gz"), ("usps/usps.h5",),
                                 ("usps/usps.bz2", "usps/usps.t.bz2"))


def _usps():
    """USPS 9,298 = train + test. Accepts the .jf.gz text files, usps.h5 or LIBSVM usps(.t).bz2."""
    if find(*USPS_H5) is not None and find(USPS_JF[0]) is None:
        import h5py

        with h5py.File(find(*USPS_H5), "r") as f:
            x = np.concatenate([f["train/data"][:], f["test/data"][:]])
            y = np.concatenate([f["train/target"][:], f["test/target"][:]])
        return x.reshape(-1, 16, 16, 1).astype(np.float32), y.astype(np.int64)
    if find(USPS_LIBSVM[0]) is not None and find(USPS_JF[0]) is None:
        from sklearn.datasets import load_svmlight_file

        parts = [load_svmlight_file(str(find(rel)), n_features=256) for rel in USPS_LIBSVM]
        x = np.concatenate([p[0].toarray() for p in parts])
        y = np.concatenate([p[1] for p in parts]) - 1
        return ((x + 1) / 2).reshape(-1, 16, 16, 1).astype(np.float32), y.astype(np.int64)
    xs, ys = [], []
    for rel in USPS_JF:
        lines = fetch(rel).decode().strip().splitlines()[1:-1]  # header and footer lines
        try:
            rows = np.array([line.split() for line in lines], dtype=np.float64)
        except ValueError:
            raise DataError(f"{rel}: malformed rows (expected 'label v1 ... v256')") from None
        if rows.ndim != 2 or rows.shape[1] != 257:
            raise DataError(f"{rel}: expected 257 columns per row, got {rows.shape}")
        ys.append(rows[:, 0])
        xs.append(rows[:, 1:] / 2.0)
    x = np.concatenate(xs).reshape(-1, 16, 16, 1).astype(np.float32)
    return x, np.concatenate(ys).astype(np.int64)


COIL20_MAT = "coil20/COIL20.mat"


def _coil20():
    """COIL-20, 1,440 images 32x32 (rows of X are column-major, hence the transpose)."""
    import io

    from scipy.io import loadmat

    rel = COIL20_MAT
    try:
        mat = loadmat(io.BytesIO(fetch(rel)))
        x, y = np.asarray(mat["X"]), np.asarray(mat["Y"]).ravel()
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{rel}: not a MATLAB file with X and Y ({e})") from None
    if x.shape != (1440, 1024):
        raise DataError(f"{rel}: expected X of shape (1440, 1024), got {x.shape}")
    x = x.reshape(-1, 32, 32).transpose(0, 2, 1)[..., None].astype(np.float32)
    if x.max() > 1.0:
        x = x / 255.0
    return x, (y - y.min()).astype(np.int64)


def _two_mnist():
    """2MNIST (DCSS, §4.1): MNIST (70,000) followed by Fashion-MNIST (70,000), 20 classes; Fashion labels + 10."""
    xm, ym = _mnist_like("mnist", "mnist", ("train", "test"))
    xf, yf = _mnist_like("fashion-mnist", "fashion_mnist", ("train", "test"))
    return np.concatenate([xm, xf]), np.concatenate([ym, yf + 10])


# --- Data sets of Peng et al. (SAIP), Tables IV-V: real loaders that need a download (tested offline on generated
# data). CIFAR through tensorflow-datasets, REUTERS-10K through scikit-learn's RCV1 fetcher with DEC's preprocessing.
CIFAR100_AQUATIC = ("beaver", "dolphin", "otter", "seal", "whale")  # CIFAR-100's first superclass, "aquatic mammals"
CIFAR100_AQUATIC_IDS = (4, 30, 55, 72, 95)  # their fine label ids (fine_label_names.txt, alphabetical)


def _tfds_default_dir():
    return Path(os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets").expanduser()


def _tfds_dirs():
    """Where a prepared TFDS copy is looked for: <search dir>/tensorflow_datasets/, then TFDS's own data dir."""
    return [d / "tensorflow_datasets" for d in search_dirs()] + [_tfds_default_dir()]


def _tfds_load(name, split, data_dir, download):
    """All examples of one split as NumPy arrays, and the builder's info (a seam for tests)."""
    import tensorflow_datasets as tfds

    ds, info = tfds.load(name, split=split, data_dir=str(data_dir), download=download, with_info=True)
    batches = list(tfds.as_numpy(ds.batch(4096)))  # not batch_size=-1: it needs the split size in the metadata
    if not batches:
        raise DataError(f"{data_dir}/{name}: split {split!r} is empty")
    return {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}, info


def _tfds(dataset, name, splits):
    """The splits of TFDS data set ``name``: a prepared copy under <search dir>/tensorflow_datasets/ or TFDS's own
    data dir, else downloaded and prepared into TFDS's data dir (once)."""
    for d in _tfds_dirs():
        if (d / name).is_dir():
            try:
                return [_tfds_load(name, s, d, False) for s in splits]
            except Exception as e:  # noqa: BLE001  (TFDS raises many kinds)
                raise DataError(f"{d / name}: unreadable TFDS data ({type(e).__name__}: "
                                f"{str(e).splitlines()[0] if str(e) else ''})") from None
    try:
        return [_tfds_load(name, s, _tfds_default_dir(), True) for s in splits]
    except Exception:  # noqa: BLE001  offline, or the server refused
        where = os.environ.get("CLUSTER_DATA_DIR") or "$CLUSTER_DATA_DIR"
        raise DataError(f"{dataset}: TFDS data set {name!r} not found and could not be downloaded; put the prepared "
                        f"TFDS folder (made online by `tfds build {name}`) under {where}/tensorflow_datasets/ "
                        f"(e.g. {where}/tensorflow_datasets/{name}/)") from None


def _images(arr):
    x = np.asarray(arr)
    if x.ndim != 4 or x.dtype != np.uint8:
        raise DataError(f"expected uint8 images (n, H, W, C), got {x.dtype} {x.shape}")
    return x.astype(np.float32) / 255.0


def _cifar10_test():
    """Peng et al. §V-A2: the 10,000 CIFAR-10 test images (32x32x3, raw pixels), 10 classes."""
    (ex, _), = _tfds("cifar10-test", "cifar10", ("test",))
    return _images(ex["image"]), np.asarray(ex["label"], np.int64)


def _cifar100_aquatic():
    """Peng et al. §V-A2: CIFAR-100's first superclass, aquatic mammals (beaver, dolphin, otter, seal, whale),
    train + test = 5 x 600 images; labels 0-4 in that order."""
    parts = _tfds("cifar100-aquatic", "cifar100", ("train", "test"))
    fine = list(CIFAR100_AQUATIC_IDS)
    names = list(parts[0][1].features["label"].names) if parts[0][1] is not None else []
    if names and not names[0].isdigit() and [names[i] for i in fine] != list(CIFAR100_AQUATIC):  # digits: no metadata
        raise DataError(f"cifar100: fine labels {fine} are not {CIFAR100_AQUATIC} in this copy's metadata")
    xs, ys = [], []
    for ex, _ in parts:
        label = np.asarray(ex["label"])
        keep = np.isin(label, fine)
        xs.append(_images(ex["image"])[keep])
        ys.append(np.argmax(label[keep][:, None] == np.asarray(fine)[None, :], axis=1))  # CIFAR100_AQUATIC order
    return np.concatenate(xs), np.concatenate(ys).astype(np.int64)


# REUTERS-10K (DEC, Xie et al. 2016; Peng et al. §V-A2): documents of RCV1-v2 with exactly one of the root topics
# CCAT, GCAT, MCAT, ECAT (labels 0-3 in that order), in DEC's file order (the four lyrl2004 test parts, then the
# training part, each by document id); the 2,000 most frequent words; sublinear TF-IDF (scikit-learn's
# TfidfTransformer, l2 norm, fitted on all those documents); the first 10,000 documents, scaled by sqrt(2000) and
# permuted with NumPy's RandomState(1234) -- DEC's make_reuters_data. scikit-learn ships RCV1-v2 as ltc vectors,
# w = (1 + ln tf) ln(23,149 / df_train) / norm (Lewis et al. 2004), not as tokens: dividing by the training idf
# gives (1 + ln tf) up to a row scale, which the l2 norm removes; the term counts for "most frequent" are taken as
# exp(v / min_row(v) - 1), i.e. assuming each document's rarest term occurs once. Columns keep RCV1's term order
# (DEC's: alphabetical); DEC's CountVectorizer also drops one-character tokens, which RCV1's vectors cannot name.
REUTERS_ROOTS = ("CCAT", "GCAT", "MCAT", "ECAT")
RCV1_LAST_TRAIN_ID = 26150  # lyrl2004 training documents have ids 2286-26150; the test parts follow


def reuters10k_from_rcv1(data, target, target_names, sample_id, n_docs=10000, n_words=2000, seed=1234):
    """DEC's REUTERS-10K (x float32 (n_docs, n_words), y int64) from scikit-learn's fetch_rcv1 arrays."""
    from scipy import sparse
    from sklearn.feature_extraction.text import TfidfTransformer

    data = sparse.csr_matrix(data, dtype=np.float64)
    names = [str(t) for t in target_names]
    cols = [names.index(c) for c in REUTERS_ROOTS]
    roots = np.asarray(sparse.csr_matrix(target)[:, cols].todense()) > 0
    sample_id = np.asarray(sample_id).astype(np.int64)
    train = sample_id <= RCV1_LAST_TRAIN_ID
    order = np.lexsort((sample_id, train))  # test documents first, then training documents, each by id
    docs = order[roots[order].sum(1) == 1]
    y = roots[docs].argmax(1)
    df_train = np.bincount(data[np.flatnonzero(train)].indices, minlength=data.shape[1])
    idf_train = np.log(max(int(train.sum()), 1) / np.maximum(df_train, 1))
    idf_train[(df_train == 0) | (idf_train <= 0)] = 1.0  # not used by RCV1-v2's vectors (features from training)
    v = data[docs]
    v.data = v.data / idf_train[v.indices]  # (1 + ln tf) times a row constant
    row = np.repeat(np.arange(v.shape[0]), np.diff(v.indptr))
    row_min = np.full(v.shape[0], np.inf)
    np.minimum.at(row_min, row, v.data)
    counts = v.copy()
    counts.data = np.maximum(np.rint(np.exp(v.data / row_min[row] - 1.0)), 1.0)
    totals = np.bincount(counts.indices, weights=counts.data, minlength=counts.shape[1])
    words = np.sort(np.argsort(-totals, kind="stable")[:n_words])
    tfidf = TfidfTransformer(norm="l2", sublinear_tf=True).fit_transform(counts[:, words])
    x = np.asarray(tfidf[:n_docs].astype(np.float32).todense()) * np.sqrt(len(words))
    perm = np.random.RandomState(seed).permutation(len(x))
    return x[perm].astype(np.float32), y[:n_docs][perm].astype(np.int64)


def _fetch_rcv1():
    """scikit-learn's RCV1 bunch: a copy under <search dir>/scikit_learn_data/RCV1, else scikit-learn's data home
    (downloaded there once, about 650 MB)."""
    from sklearn.datasets import fetch_rcv1

    for d in search_dirs():
        if (d / "scikit_learn_data" / "RCV1").is_dir():
            return fetch_rcv1(data_home=str(d / "scikit_learn_data"), download_if_missing=False)
    return fetch_rcv1(download_if_missing=True)


def _reuters10k():
    """REUTERS-10K: DEC's own reuters10k/reutersidf10k.npy if present (a pickled dict {'data', 'label'}: load only a
    file you trust), else our processed reuters10k/reuters10k.npz, else built from RCV1 and saved as the latter."""
    dec = find("reuters10k/reutersidf10k.npy")
    if dec is not None:
        try:
            d = np.load(dec, allow_pickle=True).item()
            return np.asarray(d["data"], np.float32), np.asarray(d["label"], np.int64)
        except (ValueError, KeyError, OSError, AttributeError) as e:
            raise DataError(f"{dec}: not DEC's reutersidf10k.npy ({type(e).__name__})") from None
    ours = find("reuters10k/reuters10k.npz")
    if ours is not None:
        with np.load(ours) as f:
            return f["x"].astype(np.float32), f["y"].astype(np.int64)
    try:
        bunch = _fetch_rcv1()
    except Exception:  # noqa: BLE001  offline, or no copy
        where = os.environ.get("CLUSTER_DATA_DIR") or "$CLUSTER_DATA_DIR"
        raise DataError("reuters10k: neither DEC's reutersidf10k.npy nor scikit-learn's RCV1 found, and the download "
                        f"failed; put reutersidf10k.npy under {where}/reuters10k/ or scikit-learn's RCV1 folder (made "
                        f"online by sklearn.datasets.fetch_rcv1) under {where}/scikit_learn_data/") from None
    x, y = reuters10k_from_rcv1(bunch.data, bunch.target, bunch.target_names, bunch.sample_id)
    target = Path(os.environ.get("KERAS_HOME", "~/.keras")).expanduser() / "datasets" / "reuters10k" / "reuters10k.npz"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, x=x, y=y)
        os.replace(tmp, target)
    except OSError:  # a read-only home: no cache, the data are still returned
        pass
    return x, y


# --- MedMNIST (Yang et al. 2023), R-DC's Tables 1, 3-5 and 8: the official 28x28 files. R-DC clusters all of each
# set: its Table 1 sizes (5,856; 780; 17,092) are train + val + test, concatenated here in that order. BreastMNIST:
# R-DC's Table 1 says 3 classes (the source data's normal, benign, malignant); the MedMNIST file has 2 (normal +
# benign vs malignant), which we use. VesselMNIST3D (28x28x28 volumes) is not loaded: load() and the models take
# 2-D images (n, H, W, C).
MEDMNIST_URL = "https://zenodo.org/records/10519652/files/{flag}.npz?download=1"  # MedMNIST v3 (info.py), as v2's files
MEDMNIST = {"pneumoniamnist": (2, 1), "breastmnist": (2, 1), "bloodmnist": (8, 3)}  # flag: (classes, channels)
MEDMNIST_SPLITS = ("train", "val", "test")


def _medmnist_root():
    """The medmnist package's default root (its DEFAULT_ROOT), searched and used for downloads."""
    return Path("~/.medmnist").expanduser()


def _medmnist_find(flag):
    """``medmnist/<flag>.npz`` or ``<flag>.npz`` in a search directory, else ``<flag>.npz`` in medmnist's root."""
    path = find(f"medmnist/{flag}.npz", f"{flag}.npz")
    if path is None and (_medmnist_root() / f"{flag}.npz").is_file():
        path = _medmnist_root() / f"{flag}.npz"
    return path


def _medmnist_info(flag):
    """(url, md5) of the 28x28 file: the installed medmnist package's INFO if there is one, else ours (the same)."""
    import contextlib
    import io

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # its __init__ prints when torch is missing
            from medmnist.info import INFO
        return INFO[flag]["url"], INFO[flag]["MD5"]
    except Exception:  # noqa: BLE001  not installed, or a version without this flag
        return MEDMNIST_URL.format(flag=flag), CHECKSUMS.get(f"medmnist/{flag}.npz")


def _medmnist_download(flag):
    """Downloads ``<flag>.npz`` into medmnist's root (MD5-checked by Keras); returns its path, raises if offline."""
    import keras

    url, md5 = _medmnist_info(flag)
    return Path(keras.utils.get_file(f"{flag}.npz", url, file_hash=md5, hash_algorithm="md5",
                                     cache_subdir=str(_medmnist_root())))


def _medmnist(flag):
    """MedMNIST ``flag`` (28x28): train + val + test images in [0, 1] (gray (n, 28, 28, 1), RGB (n, 28, 28, 3)) and
    labels 0..classes-1, from the official .npz (keys <split>_images, <split>_labels of shape (n, 1))."""
    n_classes, channels = MEDMNIST[flag]
    rel = f"medmnist/{flag}.npz"
    path = _medmnist_find(flag)
    if path is None:
        try:
            path = _medmnist_download(flag)
        except Exception:  # noqa: BLE001  offline, or the server refused
            path = None
        if path is None or not Path(path).is_file():
            where = os.environ.get("CLUSTER_DATA_DIR") or "$CLUSTER_DATA_DIR"
            raise DataError(f"{flag}: {flag}.npz not found (looked in {where}/medmnist/, {where}/ and "
                            f"{_medmnist_root()}/) and the download from {_medmnist_info(flag)[0]} failed; "
                            f"download it and put it under {where}/medmnist/")
    raw = Path(path).read_bytes()
    want, got = CHECKSUMS.get(rel), hashlib.md5(raw).hexdigest()
    if want and got != want and got != _medmnist_info(flag)[1]:  # an installed medmnist's MD5, should it change
        raise DataError(f"{path}: checksum mismatch (corrupt or different file); expected MD5 {want} "
                        "(MedMNIST's 28x28 file)")
    try:
        import io

        with np.load(io.BytesIO(raw), allow_pickle=False) as f:
            keys = [f"{s}_{k}" for s in MEDMNIST_SPLITS for k in ("images", "labels")]
            missing = [k for k in keys if k not in f.files]
            if missing:
                raise DataError(f"{path}: not a MedMNIST .npz, missing {', '.join(missing)} (it holds: "
                                f"{', '.join(f.files) or 'nothing'})")
            parts = [(f[f"{s}_images"], f[f"{s}_labels"]) for s in MEDMNIST_SPLITS]
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001  not a zip, pickled arrays
        raise DataError(f"{path}: not a readable .npz file ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''})") from None
    xs, ys = [], []
    for split, (x, y) in zip(MEDMNIST_SPLITS, parts):
        x = x[..., None] if channels == 1 and x.ndim == 3 else x
        if x.dtype != np.uint8 or x.shape[1:] != (28, 28, channels):
            raise DataError(f"{path}: {split}_images must be uint8 (n, 28, 28{', 3' if channels == 3 else ''}), "
                            f"got {x.dtype} {x.shape}")
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.shape != (len(x),) or y.dtype.kind not in "iu" or (y.size and (y.min() < 0 or y.max() >= n_classes)):
            raise DataError(f"{path}: {split}_labels must hold {len(x)} labels in 0..{n_classes - 1}, got "
                            f"{y.dtype} {y.shape}")
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs).astype(np.float32) / np.float32(255.0), np.concatenate(ys).astype(np.int64)


def needs_download(name):
    """True for a DOWNLOAD_ONLY data set with no local copy where its loader looks (``./reproduce.sh list``)."""
    if name not in DOWNLOAD_ONLY:
        return False
    if name in MEDMNIST:
        return _medmnist_find(name) is None
    if name in ("cifar10-test", "cifar100-aquatic"):
        tfds_name = name.split("-")[0]
        return not any((d / tfds_name).is_dir() for d in _tfds_dirs())
    if name == "reuters10k":
        sklearn_home = Path(os.environ.get("SCIKIT_LEARN_DATA") or "~/scikit_learn_data").expanduser()
        return (find("reuters10k/reutersidf10k.npy", "reuters10k/reuters10k.npz") is None
                and not any((d / "scikit_learn_data" / "RCV1").is_dir() for d in search_dirs())
                and not (sklearn_home / "RCV1").is_dir())
    return True


DOWNLOAD_ONLY = ("cifar10-test", "cifar100-aquatic", "reuters10k") + tuple(MEDMNIST)  # not on the shared data folder

# The files each file-based loader reads (search_dirs), as alternatives: any one tuple, all found, suffices.
# MNIST also loads from Keras's own cache (mnist.npz, which keras.datasets reads before it downloads).
_MNIST_NPZ = ("mnist.npz",)
LOCAL_FILES = {"usps": (USPS_JF, USPS_H5, USPS_LIBSVM),
               "mnist": (idx_files("mnist", ("train", "test")), _MNIST_NPZ),
               "mnist-test": (idx_files("mnist", ("test",)), _MNIST_NPZ),
               "fmnist": (idx_files("fashion-mnist", ("train", "test")),),
               "coil20": ((COIL20_MAT,),)}
LOCAL_FILES["2mnist"] = tuple(m + f for m in LOCAL_FILES["mnist"] for f in LOCAL_FILES["fmnist"])


def base_name(name):
    """``name`` less an ``-imb<r>`` suffix (load's imbalanced subsets)."""
    base, sep, _ = str(name).rpartition("-imb")
    return base if sep and base in LOADERS else name


def available(name):
    """Whether data set ``name`` (or ``<name>-imb<r>``) loads on this machine without a download: its files are in
    search_dirs (LOCAL_FILES) or, for DOWNLOAD_ONLY sets, where their loader looks (needs_download). Names this module
    does not know count as available (load says what is wrong with them)."""
    name = base_name(name)
    if name in DOWNLOAD_ONLY:
        return not needs_download(name)
    alternatives = LOCAL_FILES.get(name)
    return alternatives is None or any(all(find(f) is not None for f in alt) for alt in alternatives)

LOADERS = {
    "usps": _usps,
    "mnist": lambda: _mnist_like("mnist", "mnist", ("train", "test")),
    "mnist-test": lambda: _mnist_like("mnist", "mnist", ("test",)),
    "fmnist": lambda: _mnist_like("fashion-mnist", "fashion_mnist", ("train", "test")),
    "coil20": _coil20,
    "2mnist": _two_mnist,
    "cifar10-test": _cifar10_test,
    "cifar100-aquatic": _cifar100_aquatic,
    "reuters10k": _reuters10k,
    **{flag: (lambda flag=flag: _medmnist(flag)) for flag in MEDMNIST},
}
NAMES = tuple(LOADERS)


def load(name):
    """Loads data set ``name`` (one of NAMES, or ``<name>-imb<r>``: the imbalanced subset below) as a Dataset."""
    base, sep, r = name.rpartition("-imb")
    if sep and base in LOADERS:
        try:
            return imbalanced(load(base), float(r))
        except ValueError:
            raise DataError(f"bad retention rate in {name!r}: expected <name>-imb<r> with 0 < r <= 1") from None
    if name not in LOADERS:
        raise DataError(f"unknown dataset {name!r}; choose from {', '.join(NAMES)} (or <name>-imb<r>)")
    x, y = LOADERS[name]()
    images = x.ndim == 4 and x.min() >= 0 and x.max() <= 1  # images in [0, 1]; feature vectors (n, m): any finite
    if not (images or x.ndim == 2) or len(x) != len(y) or not np.all(np.isfinite(x)):
        raise DataError(f"{name}: loaded data has shape {x.shape}, labels {y.shape}, non-finite values or images "
                        "outside [0, 1]")
    return Dataset(x=x, y=y, n_clusters=int(np.unique(y).size), name=name)


def subset(ds, n_per_class, seed=0):
    """Deterministic stratified subset: ``n_per_class`` samples of each class (fewer if a class is smaller).
    Without labels (``ds.y`` None): ``n_per_class * n_clusters`` samples drawn uniformly (all if fewer)."""
    rng = np.random.default_rng(seed)
    if ds.y is None:
        idx = np.sort(rng.permutation(len(ds.x))[:n_per_class * ds.n_clusters])
        return Dataset(x=ds.x[idx], y=None, n_clusters=ds.n_clusters, name=f"{ds.name}[{n_per_class}/class]")
    idx = np.concatenate([rng.permutation(np.flatnonzero(ds.y == c))[:n_per_class] for c in np.unique(ds.y)])
    idx.sort()
    return Dataset(x=ds.x[idx], y=ds.y[idx], n_clusters=ds.n_clusters, name=f"{ds.name}[{n_per_class}/class]")


def imbalanced(ds, r, seed=0):
    """DCSS §4.8: each sample of class c (of K, in label order) kept with probability r + (1 - r) c / (K - 1),
    so the first class keeps a share r and the last all of its samples. Deterministic for a given seed."""
    if not 0.0 < r <= 1.0:
        raise ValueError(f"retention rate must be in (0, 1], got {r}")
    classes = np.unique(ds.y)
    keep_prob = r + (1.0 - r) * np.searchsorted(classes, ds.y) / max(len(classes) - 1, 1)
    idx = np.flatnonzero(np.random.default_rng(seed).uniform(size=len(ds.y)) < keep_prob)
    return Dataset(x=ds.x[idx], y=ds.y[idx], n_clusters=ds.n_clusters, name=f"{ds.name}-imb{r:g}")


# --- A user's own data (``./reproduce.sh <paper> --data FILE --clusters K``).
def load_file(path, n_clusters=None):
    """A Dataset from ``path``: ``.npz`` with array ``x`` and optional ``y``, or ``.npy`` holding just x.

    x: images (n, H, W) or (n, H, W, C) (channels last; (n, H, W) gets C = 1) or feature vectors (n, d), converted
    to float32. Values are kept as they are, with one exception: an integer x whose values all lie in [0, 255]
    (uint8-like pixels) is divided by 255. (The image methods expect [0, 1] pixels; other scales are not changed.)
    y: labels of any values (integers, strings), mapped to 0..k-1 in sorted order; used for evaluation only.
    n_clusters: ``n_clusters`` if given, else the number of distinct y values. name: the file's stem.
    Bad data raise DataError (one line) before anything is written. Pickled (object) arrays are refused.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.suffix.lower() not in (".npz", ".npy"):
        raise DataError(f"{path}: unknown file type {path.suffix or '(none)'!r}; expected .npz (arrays x, optional y) "
                        "or .npy (x)")
    try:
        if path.suffix.lower() == ".npy":
            x, y = np.load(path, allow_pickle=False), None
        else:
            with np.load(path, allow_pickle=False) as f:
                if "x" not in f.files:
                    raise DataError(f"{path}: no array 'x' in the .npz (it holds: {', '.join(f.files) or 'nothing'})")
                x, y = f["x"], (f["y"] if "y" in f.files else None)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001  corrupt file, pickled arrays, not NumPy's format
        raise DataError(f"{path}: not a readable {path.suffix} file of plain arrays "
                        f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise DataError(f"{path}: x must hold numbers, got dtype {x.dtype}")
    if x.ndim not in (2, 3, 4):
        raise DataError(f"{path}: x must be images (n, H, W) or (n, H, W, C) or vectors (n, d), got shape {x.shape}")
    if x.size == 0:
        raise DataError(f"{path}: x is empty, shape {x.shape}")
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        raise DataError(f"{path}: x holds NaN or infinite values ({int(np.sum(~np.isfinite(x)))} of {x.size})")
    if x.dtype.kind == "f" and np.abs(x).max() > np.finfo(np.float32).max:
        raise DataError(f"{path}: x holds values too large for float32 (largest magnitude {np.abs(x).max():.3g})")
    if x.dtype.kind in "iu" and x.min() >= 0 and x.max() <= 255:
        x = x.astype(np.float32) / np.float32(255.0)  # uint8-like pixels (docstring)
    else:
        x = x.astype(np.float32)
    if x.ndim == 3:
        x = x[..., None]
    n = len(x)
    if y is not None:
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1 or len(y) != n:
            raise DataError(f"{path}: y must hold one label per sample of x ({n}), got shape {y.shape}")
        if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
            raise DataError(f"{path}: y holds NaN or infinite values")
        if y.dtype.kind not in "biufUS":
            raise DataError(f"{path}: y must hold numbers or strings, got dtype {y.dtype}")
        y = np.unique(y, return_inverse=True)[1].reshape(-1).astype(np.int64)
    if n_clusters is None:
        if y is None:
            raise DataError(f"{path}: no labels y in the file, so the number of clusters must be given "
                            "(--clusters K)")
        k = int(y.max()) + 1
    else:
        try:
            k = int(n_clusters)
        except (TypeError, ValueError):
            k = None
        if k is None or k != n_clusters:
            raise DataError(f"{path}: the number of clusters must be an integer, got {n_clusters!r}")
    if k < 2:
        raise DataError(f"{path}: need at least 2 clusters, got {k}"
                        + (" (y holds a single label; give the number of clusters)" if n_clusters is None else ""))
    if n < k:
        raise DataError(f"{path}: fewer samples ({n}) than clusters ({k})")
    return Dataset(x=x, y=y, n_clusters=k, name=path.stem)
