"""DEKM: Deep Embedded K-Means Clustering.

Guo, Lin, Ye, ICDMW 2021 (../shared/papers/003_7ef2d2f3977ca2dc.txt).
Read top to bottom beside the paper: §III-A autoencoder (Eq. 1), §III-B k-means in the embedding
and the orthonormal transform V (Eqs. 2-4), §III-C the greedy target (Eqs. 5-6), Algorithm 1 (class DEKM),
§IV-C settings. Row vectors: H is (n, e) with one embedding per row, so the paper's Y = V H
(V with eigenvectors as rows) is written here as Y = H V with the eigenvectors as *columns* of V.

Where the authors' code (github.com/spdj2271/DEKM) differs from the paper, the paper is followed and the code's
choice is an option; where the paper is silent, the code is taken. Each such point is a row of DEPARTURES
(common.tables.departures_markdown renders them).
"""
import time
from dataclasses import dataclass

import keras
import numpy as np
from keras import layers, ops
from scipy.optimize import linear_sum_assignment

from common import checkpoint, clustering, nets, training
from common.estimator import DeepClusterer
from common.tables import parse_table

# (topic, the paper, the authors' code, ours and the --set option that gives the other)
DEPARTURES = [
    ("stopping", "fewer than 0.1 % of the samples change cluster", "0.5 %",
     "paper (`stop_tol=0.001`); `--set stop_tol=0.005`. Cluster ids of two k-means runs are arbitrary, so "
     "consecutive labelings are always matched with the Hungarian method before counting changes (as the code does)"),
    ("embedding size", "the number of clusters", "10 for every data set",
     "paper (`embedding_dim=0`); `--set embedding_dim=10` (identical for MNIST and USPS, 10 vs 20 on COIL-20)"),
    ("initialisers", "Xavier (Keras's default glorot_uniform)", "'uniform' for the convolutions", "paper; no option"),
    ("update interval", "not given", "40 iterations between two k-means updates",
     "code; `--set update_interval=...`"),
    ("batches", "not given", "256 in a fixed (once shuffled) order", "code; `--set batch_size=...`, "
     "`--set shuffle_order=false` (the data's own order)"),
    ("iteration cap", "not given", "14,000 iterations (140 x 100)", "code; `--set max_iters=...`"),
    ("k-means restarts", "not given", "n_init 100 the first time, then twice the previous run's number of "
     "Lloyd iterations", "code; `--set kmeans_n_init=...` (the first)"),
    ("Eq. (6) scale", "L_4 = sum ||y - y'||^2", "the MSE form (mean over the embedding dimensions)",
     "code; no option"),
    ("COIL-20 input", "resized to 28x28", "bilinear resizing to 28x28", "code (prepare()); no option"),
]

# Table III of the paper (ACC %, NMI %), as fractions; None where the paper prints a dash.
# Paper-reported data, not ours. Starred entries of the paper (from the original papers) are not marked.
_T3_COLS = ("mnist", "usps", "coil20", "frgc", "reuters10k", "20news", "rcv1-10k")
_T3 = """
K-means      53.40 50.00 66.81 62.62 25.28 67.17 12.63 18.27 54.05 41.91 21.59 19.70 51.96 31.35
PCA+K-means  53.13 49.91 54.20 60.96 26.53 65.34 12.55 15.19 53.97 41.35 21.75 20.46 51.91 31.39
AE+K-means   85.47 80.53 74.84 74.16 68.82 79.56 33.31 42.81 70.52 49.02 40.24 37.60 64.11 41.12
DEC          84.30 83.72 73.68 75.29 65.42 80.49 37.10 44.60 72.17 54.87 35.65 43.79 66.81 45.24
DCEC         87.16 85.92 78.35 81.34 71.88 82.24 33.40 41.50 72.17 54.87 35.65 43.79 66.81 45.24
IDEC         88.06 86.72 76.05 78.46 -     -     -     -     75.64 49.81 40.50 38.20 59.50 34.70
DCN          84.00 80.00 67.00 67.00 74.00 81.00 -     -     -     -     44.00 48.00 56.70 31.60
DKM          84.00 79.60 75.70 77.60 -     -     -     -     -     -     51.20 46.70 58.30 33.10
DEKM         95.75 91.06 79.75 82.23 69.03 80.06 38.59 50.78 76.28 59.06 41.08 40.27 67.15 46.18
DEKM_F       94.23 90.54 78.87 80.51 72.62 81.97 37.29 49.32 76.42 59.99 41.20 43.76 62.12 35.98
"""


METHOD = "DEKM"


def method_of(config):
    """The Table III row a run reproduces: DEKM, or DEKM_F for the full-batch update."""
    return "DEKM_F" if config.get("full_batch") else METHOD


# PAPER_RESULTS[method][dataset] -> {"acc", "nmi", "ari"} or None
PAPER_RESULTS = parse_table(_T3, _T3_COLS, percent=True, digits=4, absent=("ari",))
DATASETS = ("usps", "mnist", "coil20")
RESIZE = {"coil20": 28}  # §IV-A: COIL-20 images resized to 28x28 (our loader gives 32x32)
STRATEGIES = ("last_y", "random_y", "all_y", "random_h", "all_h")  # §IV-F, Fig. 4 strategies 1-5


# §IV-C: convolutional autoencoder. Conv(32, 5, s2) -> Conv(64, 5, s2) -> Conv(128, 3, s2) -> Dense(e),
# ReLU everywhere but the embedding and the output; the third conv is 'valid' when H is not a multiple
# of 8 (28 -> 14 -> 7 -> 3) so that the mirrored decoder returns to the input size.
def build_conv_autoencoder(input_shape, embedding_dim=10):
    """(encoder, decoder) for images (H, W, C): 32-64-128 convs, kernels 5-5-3, stride 2, mirrored ConvT decoder."""
    h, w, c = input_shape
    pad3 = "same" if h % 8 == 0 else "valid"
    x_in = keras.Input(input_shape)
    x = layers.Conv2D(32, 5, strides=2, padding="same", activation="relu")(x_in)
    x = layers.Conv2D(64, 5, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2D(128, 3, strides=2, padding=pad3, activation="relu")(x)
    z = layers.Dense(embedding_dim, name="embedding")(layers.Flatten()(x))
    encoder = keras.Model(x_in, z, name="encoder")

    z_in = keras.Input((embedding_dim,))
    y = layers.Dense((h // 8) * (w // 8) * 128, activation="relu")(z_in)
    y = layers.Reshape((h // 8, w // 8, 128))(y)
    y = layers.Conv2DTranspose(64, 3, strides=2, padding=pad3, activation="relu")(y)
    y = layers.Conv2DTranspose(32, 5, strides=2, padding="same", activation="relu")(y)
    x_hat = layers.Conv2DTranspose(c, 5, strides=2, padding="same", name="reconstruction")(y)
    return encoder, keras.Model(z_in, x_hat, name="decoder")


# §IV-C: MLP autoencoder d-500-500-2000-e (as DEC) for vector data, mirrored decoder, linear output.
# Inputs of any shape are flattened, and the decoder reshapes back, so it also runs on images.
def build_mlp_autoencoder(input_shape, embedding_dim=10, hidden=(500, 500, 2000)):
    """(encoder, decoder): d-500-500-2000-e with ReLU, linear embedding and output (Keras's default initialisers)."""
    return nets.mlp_autoencoder(input_shape, embedding_dim, hidden)


# Eq. (2): k-means objective L_2 = sum_k sum_{h in C_k} ||h - mu_k||^2.
def kmeans_objective(h, labels, centers):
    """L_2 of Eq. (2) in float64."""
    h, centers = np.asarray(h, np.float64), np.asarray(centers, np.float64)
    return float(np.sum((h - centers[labels]) ** 2))


# Eq. (3): the same objective after the orthonormal transform, sum ||V h - V mu||^2 (rows: (h - mu) V).
def transformed_objective(h, labels, centers, v):
    """L_3 of Eq. (3); equals L_2 for any orthonormal V."""
    d = (np.asarray(h, np.float64) - np.asarray(centers, np.float64)[labels]) @ np.asarray(v, np.float64)
    return float(np.sum(d ** 2))


# Eq. (4): within-class scatter S_w = sum_k sum_{h in C_k} (h - mu_k)(h - mu_k)^T, so L_3 = Tr(V^T S_w V).
def within_class_scatter(h, labels, centers):
    """S_w (e, e), float64, from embeddings h (n, e), cluster labels (n,) and centroids (k, e)."""
    d = np.asarray(h, np.float64) - np.asarray(centers, np.float64)[np.asarray(labels)]
    return d.T @ d


# Algorithm 1, line 6 (Rayleigh-Ritz): V = eigenvectors of the symmetric S_w, ascending eigenvalues;
# the last column spans the direction with the least cluster-structure information.
def sorted_eigenvectors(s_w):
    """(eigenvalues ascending (e,), V (e, e) with orthonormal eigenvector columns), symmetric solver."""
    s_w = np.asarray(s_w, np.float64)
    vals, vecs = np.linalg.eigh((s_w + s_w.T) / 2)  # eigh: ascending order already
    order = np.argsort(vals, kind="stable")
    return vals[order], vecs[:, order]


# Eq. (5): y = V h, m_k = V mu_k. Eq. (6): y' = y with the chosen coordinates (the last one for DEKM)
# replaced by those of the sample's centroid m_k; L_4 = sum ||y - y'||^2 is minimised over the encoder.
def greedy_targets(h, labels, centers, v, dims=(-1,)):
    """y' (n, e), float32: Y = H V with the columns ``dims`` (default the last) set to the centroid's."""
    y = np.asarray(h, np.float64) @ np.asarray(v, np.float64)
    m = np.asarray(centers, np.float64) @ np.asarray(v, np.float64)
    dims = list(dims)
    y[:, dims] = m[np.asarray(labels)][:, dims]
    return y.astype(np.float32)


def changed_assignments(old, new, k):
    """Samples whose cluster changed between two labelings, after matching the new ids to the old
    ones with the Hungarian method (k-means ids are arbitrary). All count as changed if ``old`` is None."""
    if old is None:
        return len(new)
    w = np.zeros((k, k), dtype=np.int64)
    np.add.at(w, (new, old), 1)
    rows, cols = linear_sum_assignment(-w)
    return int(len(new) - w[rows, cols].sum())


@dataclass
class Config:
    """Hyper-parameters (§IV-C; the authors' code where the paper is silent). Profiles change only the budget."""
    backbone: str = "conv"          # conv (images, §IV-C) or mlp (d-500-500-2000-e)
    embedding_dim: int = 0          # 0: the number of clusters (paper); the code uses 10
    ae_epochs: int = 200            # code
    batch_size: int = 256           # code
    learning_rate: float = 1e-3     # Adam(0.001, 0.9, 0.999), §IV-C
    update_interval: int = 40       # iterations between two k-means updates (code)
    max_iters: int = 14000          # iteration cap (code: 140 * 100)
    stop_tol: float = 0.001         # stop when < 0.1 % of samples change cluster (paper); code 0.005
    full_batch: bool = False        # DEKM_F: each iteration is one full-batch gradient step on Eq. (6)
    strategy: str = "last_y"        # §IV-F: last_y (DEKM), random_y, all_y, random_h, all_h
    kmeans_n_init: int = 100        # first k-means (code); later runs: 2 x previous n_iter (code)
    shuffle_order: bool = True      # the code shuffles the data once; batches then go in that fixed order

    def __post_init__(self):
        if self.backbone not in ("conv", "mlp"):
            raise ValueError(f"backbone must be 'conv' or 'mlp', got {self.backbone!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.update_interval < 1 or self.max_iters < 0 or self.batch_size < 1:
            raise ValueError("update_interval and batch_size must be >= 1 and max_iters >= 0")

    def autoencoder_part(self):
        return {k: getattr(self, k) for k in ("backbone", "embedding_dim", "ae_epochs", "batch_size", "learning_rate")}


PROFILES = {
    "smoke": {"subset_per_class": 30, "ae_epochs": 3, "max_iters": 40, "update_interval": 10},
    # quick: 20 AE epochs (MNIST: 5,480 steps, about 7 min on 2 CPU cores), at most 4,000 iterations.
    "quick": {"ae_epochs": 20, "max_iters": 4000},
    "paper": {"ae_epochs": 200, "max_iters": 14000},
}


class GreedyNet(keras.Model):
    """Algorithm 1, line 7: minimise Eq. (6), mean_i ||f(x_i) V - y'_i||^2 / e, for fixed V and targets y'.

    V and the targets of all n samples live in non-trainable variables refreshed at every update; a batch
    is (x, sample indices). In full-batch mode (DEKM_F) the per-chunk loss is scaled so that the optimizer's
    gradient accumulation over the ``chunks`` batches of one pass gives the exact full-batch mean.
    """

    def __init__(self, encoder, n, dim, full_batch_chunks=0, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.v = self.add_weight(shape=(dim, dim), initializer="identity", trainable=False, name="V")
        self.targets = self.add_weight(shape=(n, dim), initializer="zeros", trainable=False, name="targets")
        self.n, self.chunks = n, full_batch_chunks

    def call(self, inputs, training=False):
        x, idx = inputs
        return ops.matmul(self.encoder(x, training=training), self.v), idx

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        y_new, idx = y_pred
        per_sample = ops.mean(ops.square(y_new - ops.take(self.targets, idx, axis=0)), axis=-1)  # Eq. (6)
        if self.chunks:
            return ops.sum(per_sample) * (self.chunks / self.n)
        return ops.mean(per_sample)


class _Alternation(keras.callbacks.Callback):
    """Algorithm 1, lines 3-6 after every ``update_interval`` iterations; stops on the change criterion."""

    def __init__(self, dekm):
        super().__init__()
        self.dekm = dekm

    def on_epoch_end(self, epoch, logs=None):
        loss = float(logs["loss"]) if logs and "loss" in logs else None
        if self.dekm._update(iteration=(epoch + 1) * self.dekm.cfg.update_interval, loss=loss):
            self.model.stop_training = True


class DEKM(DeepClusterer):
    """Algorithm 1: autoencoder (Eq. 1), then alternate k-means (Eq. 2) + V (Eq. 4) and Eq. (6) steps."""

    paper, config_class = "dekm", Config

    def __init__(self, n_clusters, config=None, seed=0, cache_dir=None, verbose=1, checkpoint_dir=None):
        super().__init__(n_clusters, config, seed, cache_dir, verbose, checkpoint_dir)
        self.rng = np.random.default_rng(seed)
        self.snapshots = None  # set to [] to keep (h, labels, centers, V) of every update (Fig. 1)

    def _ae_cache(self, x):
        """The autoencoder's cache (keyed by its settings with the resolved size, data, seed, numerics), or None."""
        dim = self.cfg.embedding_dim or self.n_clusters
        return self.cache_path("ae", {**self.cfg.autoencoder_part(), "dim": dim}, x)

    # Line 1: train the autoencoder on Eq. (1) (Adam, MSE, batch 256, shuffled).
    def pretrain(self, x):
        cfg = self.cfg
        dim = cfg.embedding_dim or self.n_clusters
        build = build_conv_autoencoder if cfg.backbone == "conv" else build_mlp_autoencoder
        keras.utils.set_random_seed(self.seed)
        self.encoder, self.decoder = build(x.shape[1:], dim)
        self.history["pretrain"] = training.pretrain_autoencoder(
            self.encoder, self.decoder, x, epochs=cfg.ae_epochs, batch_size=cfg.batch_size,
            learning_rate=cfg.learning_rate, cache=self._ae_cache(x), seed=self.seed, verbose=self.verbose)
        return self

    # Lines 3-6 (+ the targets of line 7): H = f(X), k-means, S_w, V, y'. Returns True when converged.
    def _update(self, iteration, loss=None):
        cfg, k = self.cfg, self.n_clusters
        t0 = time.perf_counter()
        h = self.embed(self.x)                                                       # line 3
        km = clustering.fit_kmeans(h, k, self._n_init, self.rng.integers(2**31), threads=1)  # line 4, Eq. (2)
        labels = km.labels_
        self._n_init = max(1, 2 * int(km.n_iter_))                                   # code's schedule
        centers = km.cluster_centers_
        changed = changed_assignments(self.labels, labels, k)
        s_w = within_class_scatter(h, labels, centers)                                # line 5, Eq. (4)
        vals, v = sorted_eigenvectors(s_w)                                            # line 6
        if cfg.strategy.endswith("_h"):
            v = np.eye(len(vals))                                                     # strategies 4-5: H space
        if cfg.strategy.startswith("last"):
            dims = [len(vals) - 1]
        elif cfg.strategy.startswith("random"):
            dims = [int(self.rng.integers(len(vals)))]
        else:
            dims = list(range(len(vals)))
        self.net.v.assign(v.astype("float32"))
        self.net.targets.assign(greedy_targets(h, labels, centers, v, dims))          # Eq. (6) targets
        self.labels, self.centers, self.h, self.v, self.eigenvalues = labels, centers, h, v, vals
        if self.snapshots is not None:
            self.snapshots.append({"step": int(iteration), "h": h, "labels": labels, "centers": centers, "v": v})
        entry = {"step": int(iteration), "seconds": time.perf_counter() - self._t0,
                 "update_seconds": time.perf_counter() - t0, "changed": int(changed),
                 "kmeans_objective": float(km.inertia_), "last_eigenvalue": float(vals[-1])}
        if loss is not None:
            entry["loss"] = loss
        if self.y is not None:  # evaluation log only; nothing reads it back
            entry.update(training.evaluate_log(self.y, labels, n_clusters=k))
        self.log.append(entry)
        self._last_update_end = time.perf_counter()
        return changed < cfg.stop_tol * len(self.x)

    def fit(self, x, y=None):
        """Algorithm 1 on x (n, ...); ``y`` only feeds the evaluation log."""
        cfg = self.cfg
        x = np.asarray(x, np.float32)
        if x.ndim < 2 or len(x) < self.n_clusters or not np.all(np.isfinite(x)):
            raise ValueError(f"x must be finite samples (n >= {self.n_clusters}, ...), got shape {x.shape}")
        if cfg.backbone == "conv" and x.ndim != 4:
            raise ValueError(f"the conv backbone needs images (n, H, W, C), got shape {x.shape}")
        self.pretrain(x)
        self.x, self.y, self.labels, self.log = x, y, None, []
        n = len(x)
        chunks = -(-n // cfg.batch_size) if cfg.full_batch else 0
        if chunks == 1:  # the whole data set fits one batch: no accumulation needed
            chunks = 0
        self.net = GreedyNet(self.encoder, n, self.encoder.output.shape[-1], full_batch_chunks=chunks)
        opt = keras.optimizers.Adam(cfg.learning_rate, gradient_accumulation_steps=chunks or None)
        self.net.compile(optimizer=opt)
        self.net((x[:2], np.arange(2, dtype="int32")))
        self._n_init, self._t0 = cfg.kmeans_n_init, time.perf_counter()
        # k-means on the pre-trained embedding: the AE+k-means baseline and the first update (a resumed run
        # repeats it, identically, then takes the later state from its checkpoint).
        converged = self._update(iteration=0)
        self.history["kmeans_labels"] = self.labels.copy()
        self.initial_embedding = self.h
        order = self.rng.permutation(n) if cfg.shuffle_order else np.arange(n)
        batch = n if (cfg.full_batch and not chunks) else cfg.batch_size
        steps = cfg.update_interval * (chunks or 1)  # full batch: one pass of ``chunks`` batches per iteration
        epochs = 0 if converged else cfg.max_iters // cfg.update_interval
        fit = checkpoint.resumable_fit(
            self.net, lambda e: training.indexed_batches(x, order, batch, e * steps), phase="cluster", epochs=epochs,
            unit="iteration", units_per_epoch=cfg.update_interval, steps_per_epoch=steps, checkpoint=self.checkpoint, callbacks=[_Alternation(self)],
            get_state=self._state, set_state=self._set_state, verbose=self.verbose)
        tail = time.perf_counter() - self._last_update_end if self.log[1:] else 0.0
        iters = len(fit["epoch_seconds"]) * cfg.update_interval
        seconds = float(sum(fit["epoch_seconds"]))  # all sessions of a resumed run; the initial update excluded
        update_s = float(sum(e["update_seconds"] for e in self.log[1:]))
        train_s = seconds - update_s  # an epoch's time includes the update at its end
        self.history["cluster"] = {
            "loss": checkpoint.curve(fit["logs"], "loss"), "iterations": iters, "updates": len(self.log) - 1,
            "converged": bool(self.log[-1]["changed"] < cfg.stop_tol * n), "seconds": seconds,
            "chunk_seconds": fit["epoch_seconds"], "update_seconds_total": update_s,
            "seconds_after_last_update": tail, "resumed_at": fit["resumes"],
            "iterations_per_second": iters / seconds if seconds > 0 else None,
            "step_iterations_per_second": iters / train_s if train_s > 0 else None, "eval": self.log}
        return self

    def _state(self):
        """What the updates keep outside the network (V and the targets are network variables), for checkpoints."""
        return {"labels": self.labels.tolist(), "centers": self.centers.tolist(), "v": self.v.tolist(),
                "eigenvalues": self.eigenvalues.tolist(), "n_init": self._n_init,
                "rng": self.rng.bit_generator.state, "log": self.log}

    def _set_state(self, state):
        self.labels, self.centers = np.asarray(state["labels"]), np.asarray(state["centers"])
        self.v, self.eigenvalues = np.asarray(state["v"]), np.asarray(state["eigenvalues"])
        self._n_init, self.log = state["n_init"], state["log"]
        self.rng.bit_generator.state = state["rng"]
        self.h = self.embed(self.x)  # the encoder as restored = as at the checkpointed update
        self._t0 = time.perf_counter() - self.log[-1]["seconds"]  # the log's clock continues

    @classmethod
    def prepare_run(cls, data, config):
        return prepare(data), config, {}

    def run_outputs(self, x):
        """Labels, embedding, centres, history; the initial AE embedding and its k-means labels (the .npz, Fig. 5)."""
        km_labels = self.history.pop("kmeans_labels")
        return {"labels": self.labels, "embedding": self.h, "centers": self.centers.astype(np.float32),
                "kmeans_labels": km_labels, "history": self.history,
                "arrays": {"initial_embedding": self.initial_embedding.astype(np.float32), "kmeans_labels": km_labels}}

    def predict(self, x=None):
        """Line 9: the clusters of the last k-means (on the final embedding); for new x, nearest centroid."""
        if x is None:
            return self.labels
        h = self.embed(np.asarray(x, np.float32))
        return np.argmin(((h[:, None, :] - self.centers[None]) ** 2).sum(-1), axis=1)


def prepare(data):
    """The paper's input size: COIL-20 resized to 28x28 (bilinear), other data sets unchanged."""
    size = RESIZE.get(data.name.split("[")[0])
    if size is None or data.x.shape[1] == size:
        return data.x
    x = ops.image.resize(data.x, (size, size), interpolation="bilinear")
    return np.clip(ops.convert_to_numpy(x), 0.0, 1.0).astype(np.float32)


run = DEKM.make_run()  # one training run for the reproduction CLI (COIL-20 resized by prepare())


# §IV-B baselines without a network (K-means, PCA + K-means on the pixels of prepare()): common.baselines.
