"""Training helpers shared by the papers: augmentation, autoencoder pre-training with a weight
cache (resumable), batch streams, code fingerprints and evaluation logging (k-means: common.clustering)."""
import ast
import hashlib
import inspect
import json
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
from keras import ops

from common import checkpoint, metrics


def check_images(x):
    """Raises ValueError unless x is a finite image batch (n, H, W, C)."""
    if np.ndim(x) != 4 or not np.all(np.isfinite(x)):
        raise ValueError(f"x must be finite images (n, H, W, C), got shape {np.shape(x)}")


def derived_seed(*key):
    """An int seed from integers, e.g. (seed, stream, layer): distinct keys give independent streams."""
    return int(np.random.SeedSequence([int(k) for k in key]).generate_state(1)[0])


def augmenter(shift=0.1, rotation_deg=10.0, seed=None, stream=0):
    """Random shift (fraction of size) and rotation (degrees) as Keras layers; active only in training.

    Each layer draws from its own seed derived from (seed, stream): the two never replay each other's numbers,
    and a training stage with its own ``stream`` does not depend on whether an earlier stage ran or was cached.
    """
    seeds = (None, None) if seed is None else (derived_seed(seed, stream, 0), derived_seed(seed, stream, 1))
    return keras.Sequential([
        keras.layers.RandomTranslation(shift, shift, fill_mode="nearest", seed=seeds[0]),
        keras.layers.RandomRotation(rotation_deg / 360.0, fill_mode="nearest", seed=seeds[1]),
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


def code_fingerprint(*objects):
    """Hash of the code of functions, classes or modules, blind to comments, docstrings and layout (their AST).
    Part of every cache key: changed code (an architecture, a loss, a batch order) never reuses weights trained by
    the old code. (Not ``Model.to_json``: it holds layer names numbered by creation order within the process.)"""
    parts = []
    for obj in objects:
        tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                    and isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
        parts.append(ast.dump(tree))
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:12]


def data_fingerprint(x):
    """Shape and a float64 checksum of the data (cheap; distinguishes subsets, resizing, normalisation)."""
    x = np.asarray(x)
    return {"shape": list(x.shape), "x_sum": float(np.sum(x, dtype=np.float64)),
            "x_sq": float(np.sum(np.square(x, dtype=np.float64)))}


def shuffled_batches(x, batch_size, seed, start_epoch=0):
    """Endless ``(x_batch,)`` tuples, epoch e in the order of ``default_rng([seed, e]).permutation``: the stream from
    any epoch on is the same whether or not the earlier epochs ran in this process (resumable)."""
    n, epoch = len(x), start_epoch
    while True:
        order = np.random.default_rng([seed, epoch]).permutation(n)
        for start in range(0, n, batch_size):
            yield (x[np.sort(order[start:start + batch_size])],)
        epoch += 1


def pretrain_autoencoder(encoder, decoder, x, *, epochs, batch_size, learning_rate=1e-3, augment=None,
                         cache=None, seed=0, verbose=1):
    """Trains encoder+decoder on reconstruction with Adam; reuses ``cache`` (.weights.h5) if it exists.

    Batches are shuffled per epoch from ``seed``; while training, a checkpoint beside ``cache``
    (``<cache>.ckpt/``) lets an interrupted run resume where it stopped. Returns a dict with the loss curve
    and timings (empty when loaded from the cache).
    """
    trainer = AutoencoderTrainer(encoder, decoder, augment)
    trainer(x[:1])
    if cache is not None and Path(cache).is_file():
        trainer.load_weights(cache)
        return {"cached": str(cache), "loss": [], "seconds": 0.0, "epochs": epochs}
    trainer.compile(optimizer=keras.optimizers.Adam(learning_rate))
    ckpt = None if cache is None else checkpoint.Checkpoint(str(cache) + ".ckpt")
    t0 = time.perf_counter()
    fit = checkpoint.resumable_fit(
        trainer, lambda e: shuffled_batches(x, batch_size, seed, e), phase="pretrain", epochs=epochs,
        steps_per_epoch=-(-len(x) // batch_size), checkpoint=ckpt, verbose=verbose)
    seconds = time.perf_counter() - t0
    if cache is not None:
        save_weights_atomically(trainer, cache)
        ckpt.clear()
    return {"cached": None, "loss": checkpoint.curve(fit["logs"], "loss"), "seconds": seconds,
            "epochs": epochs, "epoch_seconds": fit["epoch_seconds"], "resumed_at": fit["resumes"]}


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


def fixed_order_batches(x, batch_size, start_step=0):
    """Endless batches in the data's own order, wrapping around (the last batch of a pass is partial),
    beginning at step ``start_step`` of that cycle (for a resumed run)."""
    n = len(x)
    starts = list(range(0, n, batch_size))
    i = start_step % len(starts)
    while True:
        yield (x[starts[i]:starts[i] + batch_size],)
        i = (i + 1) % len(starts)


def indexed_batches(x, order, batch_size, start_step=0):
    """Endless ``((x[idx], idx),)`` batches (idx int32) in the fixed sample ``order``, wrapping around (the last
    batch of a pass is partial), from step ``start_step`` of that cycle on (a resumed run)."""
    starts = list(range(0, len(order), batch_size))
    i = start_step % len(starts)
    while True:
        idx = order[starts[i]:starts[i] + batch_size]
        yield ((x[idx], idx.astype("int32")),)
        i = (i + 1) % len(starts)


class EvalLogger(keras.callbacks.Callback):
    """At the end of every ``every``-th fit epoch (a chunk of ``steps`` training steps): predicts labels on all
    data and logs metrics against ``y``. With ``epochs`` (the fit's epoch count) the last epoch is always logged
    and every entry names its ``epoch`` (1-based). Labels are used for this log only; nothing in training reads it.
    """

    KEYS = ("acc", "nmi", "ari", "nonempty_clusters", "smallest_cluster")

    def __init__(self, predict_labels, x, y, steps, every=1, epochs=None):
        super().__init__()
        if int(every) < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.predict_labels, self.x, self.y, self.steps = predict_labels, x, y, steps
        self.every, self.epochs = int(every), epochs
        self.log, self._t0, self._offset = [], None, 0.0

    def on_train_begin(self, logs=None):
        self._t0 = time.perf_counter()
        self._offset = self.log[-1]["seconds"] if self.log else 0.0  # a resumed run continues the clock

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every and (self.epochs is None or epoch + 1 != self.epochs):
            return
        pred = self.predict_labels(self.x)
        entry = {"step": (epoch + 1) * self.steps, "seconds": self._offset + time.perf_counter() - self._t0}
        if logs and "loss" in logs:
            entry["loss"] = float(logs["loss"])
        entry.update(evaluate_log(self.y, pred, self.KEYS))
        if self.epochs is not None:
            entry["epoch"] = epoch + 1
        self.log.append(entry)


def evaluate_log(y, pred, keys=EvalLogger.KEYS, n_clusters=None):
    """The metrics of an evaluation-log entry (labels read here only)."""
    return {k: v for k, v in metrics.evaluate(y, pred, n_clusters).items() if k in keys}


def progress(total, verbose=1):
    """A Keras progress bar for custom loops: ``bar.update(i, values=[('loss', v)])``."""
    return keras.utils.Progbar(total, verbose=verbose)
