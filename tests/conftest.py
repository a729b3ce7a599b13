import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Tests never touch the user's cache of pre-trained weights and checkpoints.
os.environ["REPRO_CACHE_DIR"] = tempfile.mkdtemp(prefix="repro-test-cache-")
if not os.environ.get("CLUSTER_DATA_DIR") and (ROOT.parent / "shared" / "data").is_dir():
    os.environ["CLUSTER_DATA_DIR"] = str(ROOT.parent / "shared" / "data")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def grad(f, x):
    """Gradient of scalar f at x (NumPy in, NumPy out) with the active Keras backend's autodiff."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        xv = tf.Variable(np.asarray(x, dtype=np.float64))
        with tf.GradientTape() as tape:
            y = f(xv)
        g = tape.gradient(y, xv)
        return np.zeros(np.shape(x)) if g is None else g.numpy()  # None: no path from x to f (stop_gradient)
    if backend == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
        return np.asarray(jax.grad(f)(np.asarray(x, dtype=np.float64)))
    if backend == "torch":
        import torch

        xv = torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
        f(xv).backward()
        return xv.grad.numpy()
    pytest.skip(f"no autodiff helper for backend {backend}")


def has_data(*rels):
    from common import datasets

    return all(datasets.find(r) is not None for r in rels)


def blobs(n, k, size, seed=0, noise=0.15):
    """n images (size x size x 1) around k random prototypes, labels i % k: the golden runs' data
    (common.golden.synthetic)."""
    from common import golden

    x, y, _ = golden.synthetic(size, n=n, k=k, seed=seed, noise=noise)
    return x, y


def fit_with_and_without_labels(fit, x, y):
    """{"x", "y", "with_y", "without_y", "with_y_kmeans", "without_y_kmeans"}: the model ``fit(x, labels)`` returns,
    trained once with the labels and once without, and the one k-means call of each run (its input embedding,
    centres and assignments) recorded from ``common.clustering.kmeans`` (patched there: the modules look it up at
    call time). Tests use it to show that labels reach the evaluation log only."""
    from common import clustering

    out = {"x": x, "y": y}
    kmeans = clustering.kmeans
    with pytest.MonkeyPatch.context() as mp:
        for key, labels in (("with_y", y), ("without_y", None)):
            calls = []

            def recording_kmeans(z, *args, calls=calls, **kwargs):
                centers, assign = kmeans(z, *args, **kwargs)
                calls.append({"z": np.array(z), "centers": np.array(centers), "labels": np.array(assign)})
                return centers, assign

            mp.setattr(clustering, "kmeans", recording_kmeans)
            out[key] = fit(x, labels)
            assert len(calls) == 1
            out[key + "_kmeans"] = calls[0]
    return out
