"""Training helpers shared by the papers: augmentation, autoencoder pre-training with a weight
cache, k-means initialisation, fixed-order batches, progress and periodic evaluation logging."""
import hashlib
import json
import time
from pathlib import Path

import keras
import numpy as np
from keras import ops
from sklearn.cluster import KMeans

from common import metrics


def check_images(x):
    """Raises ValueError unless x is a finite image batch (n, H, W, C)."""
    if np.ndim(x) != 4 or not np.all(np.isfinite(x)):
        raise ValueError(f"x must be finite images (n, H, W, C), got shape {np.shape(x)}")


def augmenter(shift=0.1, rotation_deg=10.0, seed=None):
    """Random shift (fraction of size) and rotation (degrees) as Keras layers; active only in training."""
    return keras.Sequential([
        keras.layers.RandomTranslation(shift, shift, fill_mode="nearest", seed=seed),
        keras.layers.RandomRotation(rotation_deg / 360.0, fill_mode="nearest", seed=seed),
    ], name="augment")


class AutoencoderTrainer(keras.Model):
    """Reconstruction of the (augmented) input, L_r = mean ||g(f(x')) - x'||^2 (mean over pixels, as Keras MSE)."""

    def __init__(self, encoder, decoder, augment=None, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.decoder, self.augment = encoder, decoder, augment

    def call(self, x, training=False):
        if self.augment is not None:
            x = self.augment(x, training=training)
        return x, self.decoder(self.encoder(x, training=training), training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        x_in, x_hat = y_pred
        return ops.mean(ops.square(x_hat - x_in))


def config_hash(config):
    """Short stable hash of a JSON-serialisable config (keys sorted)."""
    return hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def pretrain_autoencoder(encoder, decoder, x, *, epochs, batch_size, learning_rate=1e-3, augment=None,
                         cache=None, verbose=1):
    """Trains encoder+decoder on reconstruction with Adam; reuses ``cache`` (.weights.h5) if it exists.

    Returns a dict with the loss curve and timings ({} timings when loaded from the cache).
    """
    trainer = AutoencoderTrainer(encoder, decoder, augment)
    trainer(x[:1])
    if cache is not None and Path(cache).is_file():
        trainer.load_weights(cache)
        return {"cached": str(cache), "loss": [], "seconds": 0.0, "epochs": epochs}
    trainer.compile(optimizer=keras.optimizers.Adam(learning_rate))
    t0 = time.perf_counter()
    timer = EpochTimer()
    hist = trainer.fit(x, None, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=verbose,
                       callbacks=[timer])
    seconds = time.perf_counter() - t0
    if cache is not None:
        save_weights_atomically(trainer, cache)
    return {"cached": None, "loss": [float(v) for v in hist.history.get("loss", [])], "seconds": seconds,
            "epochs": epochs, "epoch_seconds": timer.durations}


def save_weights_atomically(model, path):
    """model.save_weights(path) through a temporary file, so an interrupted run never leaves a partial cache."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name.replace(".weights.h5", ".tmp.weights.h5"))
    model.save_weights(tmp)
    tmp.replace(path)


class EpochTimer(keras.callbacks.Callback):
    """Wall time of every epoch (the first includes graph compilation)."""

    def __init__(self):
        super().__init__()
        self.durations = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.durations.append(time.perf_counter() - self._t)


def kmeans(z, n_clusters, n_init=20, seed=0):
    """k-means (scikit-learn) on embeddings: (centres float32 (k, d), labels)."""
    km = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed).fit(np.asarray(z, dtype=np.float64))
    return km.cluster_centers_.astype(np.float32), km.labels_


def fixed_order_batches(x, batch_size):
    """Endless batches in the data's own order, wrapping around (the last batch of a pass is partial)."""
    n = len(x)
    while True:
        for start in range(0, n, batch_size):
            yield (x[start:start + batch_size],)


class EvalLogger(keras.callbacks.Callback):
    """At the end of every fit epoch (a chunk of ``steps`` training steps): predicts labels on all
    data and logs metrics against ``y``. Labels are used for this log only; nothing in training reads it.
    """

    def __init__(self, predict_labels, x, y, steps):
        super().__init__()
        self.predict_labels, self.x, self.y, self.steps = predict_labels, x, y, steps
        self.log, self._t0 = [], None

    def on_train_begin(self, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        pred = self.predict_labels(self.x)
        entry = {"step": (epoch + 1) * self.steps, "seconds": time.perf_counter() - self._t0}
        if logs and "loss" in logs:
            entry["loss"] = float(logs["loss"])
        entry.update({k: v for k, v in metrics.evaluate(self.y, pred).items() if k in ("acc", "nmi", "ari")})
        self.log.append(entry)


def progress(total, verbose=1):
    """A Keras progress bar for custom loops: ``bar.update(i, values=[('loss', v)])``."""
    return keras.utils.Progbar(total, verbose=verbose)
