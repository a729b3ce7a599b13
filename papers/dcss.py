"""DCSS: Deep Clustering with Self-Supervision using Pairwise Data Similarities.

Sadeghi, Armanfard (../shared/papers/002_11b98ed96ce535f0.txt; readable equations in ../shared/papers/README.md).
Read top to bottom beside the paper: §3.1 phase 1 (Eqs. 1a-1d, 2, 3), §3.2 phase 2 (Eqs. 4, 5), §3.3 final
assignment, §5 networks (Fig. 12, MNet), §6 implementation details, Algorithm 1 (class DCSS).

Where the authors' code (github.com/Armanfard-Lab/DCSS) differs from the paper we follow the paper, and the code's
choice is an option where it changes the method; where the paper is silent we take the code. Labels are used only
for the evaluation log: every result is the final iterate (the code keeps the epoch of best label accuracy).
Each point is a row of DEPARTURES (common.tables.departures_markdown renders them).
"""
from dataclasses import dataclass

import keras
import numpy as np
from keras import layers, ops

from common import checkpoint, clustering, training
from common.estimator import DeepClusterer
from common.tables import parse_table

# (topic, the paper, the authors' code, ours and the --set option that gives the other)
DEPARTURES = [
    ("phase-1 optimiser", "Adam, lr 1e-5 (§6)", "SGD lr 1e-6, momentum 0.9 (no Nesterov, no decay)",
     "paper; `--set phase1_optimizer=authors_sgd` swaps in the code's optimiser (Keras's and PyTorch's momentum "
     "updates are the same at a constant rate) and changes nothing else; lr_ae then sets phase 2's encoder rate only"),
    ("phase-1 loss", "Eq. (1a) for each cluster k", "clustering_cost: Eq. (1a) for one cluster per step, "
     "sum_i p_ik^m (||x_i - x_hat_i||^2 + 0.1 ||u_i - mu_k||^2), summed (not averaged) over the batch's samples, "
     "pixels and code coordinates, K steps per batch", "the code's form already (no departure)"),
    ("memberships p_ik in phase 1", "recomputed before each of the K steps (Algorithm 1, line 4)",
     "computed once per batch", "paper, also under `phase1_optimizer=authors_sgd`; no option"),
    ("phase-1 centre updates", "every T1 epochs (Eq. 3)", "at the start of epoch T when T mod T1 = 1, i.e. after "
     "epochs 1, 3, 5, ...", "after epochs T1, 2 T1, ... (at the end of every T1-th epoch), also under "
     "`phase1_optimizer=authors_sgd`; no option"),
    ("clipping of q in phase 2", "none", "q set to 1 above 0.99 and to 0 below 0.01 inside the pair products "
     "q_i^T q_j of Eqs. (4)-(5) (s of Eq. (5) still from the unclipped q), which zeroes the gradient of every "
     "clipped entry", "paper; `--set q_clip=true` (clip_q)"),
    ("phase-2 loss scale", "none", "the loss times 0.001",
     "not taken (Adam's step does not depend on the loss scale, up to its epsilon); no option"),
    ("MNet", "three hidden layers of 128 (§5)", "Mutual_net: two", "paper; `--set mnet_layers=2` (d-128-128-K)"),
    ("checkpoint choice", "not stated", "keeps the pre-training / phase-1 epoch with the best label accuracy",
     "the final iterate (labels feed the evaluation log only); no option"),
    ("batch size", "not given", "500", "code; `--set batch_size=...`"),
    ("pre-training", "\"the same parameters mentioned in the original paper\" (§6)",
     "200 epochs, Adam with its defaults, shuffled batches", "code; `--set ae_epochs=...`, `ae_learning_rate=...`"),
    ("k-means start", "not given", "scikit-learn's defaults (n_init 10, its former default)",
     "code; `--set kmeans_n_init=...`"),
    ("pairs of Eqs. (4)-(5)", "the sum over i, j in the batch", "all ordered pairs, i = j included",
     "as written and as the code does; no option"),
]

# Paper-reported numbers (Table 1: ACC, NMI in %, NMI = I / max(H(l), H(c)); Table 3: DCSS as a framework).
# Data copied from the paper, not ours. None where the paper prints a dash. Datasets we cannot run
# (CIFAR-10, STL-10, CIFAR-100 use ImageNet ResNet-152 features) are kept for completeness.
_COLS = ("mnist", "fmnist", "2mnist", "usps", "cifar10", "stl10", "cifar100")
_T1 = """
k-means     53.20 50.00 47.40 51.20 32.31 44.00 65.67 62.00 22.90 8.70 19.20 12.50 13.00 8.40
LSSC        71.40 70.60 49.60 49.70 39.77 51.22 63.14 58.94 21.14 10.89 18.75 11.63 14.60 7.92
LPMF        47.10 45.20 43.40 42.50 34.68 38.69 60.82 54.47 19.10 8.10 18.00 9.60 11.80 7.90
DEC         84.30 83.72 51.80 54.63 41.20 53.12 75.81 76.91 30.10 25.70 35.90 27.60 18.50 13.60
IDEC        88.13 83.81 52.90 55.70 40.42 53.56 75.86 77.68 36.99 32.53 32.53 18.85 19.61 14.58
DCN         83.00 81.00 51.22 55.47 41.35 46.89 73.00 71.90 30.47 24.58 33.84 24.12 20.17 12.50
DKM         84.00 81.54 51.31 55.57 41.75 36.58 75.70 77.60 35.26 26.12 32.61 29.12 18.14 12.30
VaDE        94.50 87.60 50.39 59.63 40.35 58.37 56.60 51.20 29.10 24.50 28.10 20.00 15.20 10.80
GANMM       64.00 61.00 34.00 27.00 - - 50.12 49.35 - - - - - -
DSC         97.80 94.10 66.20 64.50 42.36 46.53 86.90 85.70 22.50 3.65 25.60 15.69 21.12 13.00
AE+k-means  86.03 80.25 57.94 57.15 44.01 62.80 75.11 74.45 80.11 70.35 95.89 91.75 49.86 48.57
CC          88.56 84.21 64.52 61.45 42.15 58.89 81.21 79.45 79.00 70.50 85.00 76.40 42.90 43.10
DCSS_u      95.99 89.95 62.90 63.58 45.31 63.00 82.03 81.84 83.40 71.32 96.02 91.90 50.30 49.80
DCSS        98.00 94.71 66.40 66.99 48.57 67.80 87.21 86.10 85.32 73.35 97.58 93.74 51.10 50.59
"""
_T3 = """
DEC+MNet    89.13 86.97 61.25 56.30 44.25 57.35 77.58 78.15 83.40 69.25 96.10 92.00 48.86 50.11
IDEC+MNet   90.51 85.42 60.12 57.16 44.83 58.00 76.58 78.14 83.95 69.93 96.18 92.89 47.86 50.00
DCN+MNet    87.49 83.25 54.23 58.69 45.62 48.24 76.90 77.59 71.23 62.38 92.59 86.23 47.92 45.81
DKM+MNet    88.31 84.52 57.23 56.26 44.34 49.50 77.13 78.02 82.26 69.50 96.00 91.88 40.22 49.81
"""
# OCR notes: the Table 1 OCR prints DCSS_u on USPS as "5203 (51.84)"; the text (DCSS_u second to DSC, above
# AE+k-means on all data sets) and the printed figure's digits give 82.03 (81.84). Table 3's "TDEC+MNet" row is
# IDEC+MNet (§4.7 lists DEC, IDEC, DCN, DKM); DKM+MNet USPS NMI "(/8.02)" is 78.02.


METHOD = "DCSS"
NMI_KEY = "nmi_max"  # §4.2, Eq. (6b): NMI = I(l; c) / max{H(l), H(c)}
# PAPER_RESULTS[method][dataset] -> {"acc", "nmi", "ari"}
PAPER_RESULTS = {**parse_table(_T1, _COLS, percent=True, absent=("ari",)),
                 **parse_table(_T3, _COLS, percent=True, absent=("ari",))}
DATASETS = ("usps", "mnist", "fmnist", "2mnist")
# Fig. 6 (§4.8): MNIST with class c kept with probability r + (1 - r) c / 9 (common.datasets.imbalanced).
# "mnist-test-imb<r>" applies the same construction to MNIST's 10,000-image test split: a CPU-sized stand-in,
# not the paper's data.
RETENTION = (0.1, 0.2, 0.3, 0.4, 0.5)
EXTRA_DATASETS = tuple(f"{base}-imb{r}" for base in ("mnist", "mnist-test") for r in RETENTION)


# §5, §6, Fig. 12: asymmetric grayscale autoencoder. Encoder: 5x5 conv (padding p1, stride s1), ResNet
# bottleneck blocks (Fig. 12c) after each convolution, 5x5/2 and 3x3/2 convolutions, a linear d-dim code u.
# Decoder: no bottleneck blocks, dense -> 3x3x128 -> 3x3/2, f1x f1 (padding p2, stride s2) and f2 x f2
# (padding p3, stride s3) transposed convolutions. (n, p1, s1, p2, s2, p3, s3, f1, f2) from §6.
AE_SHAPES = {
    28: dict(p1=2, s1=2, p2=1, s2=2, p3=2, s3=2, f1=5, f2=4),  # MNIST, Fashion MNIST, 2MNIST
    16: dict(p1=1, s1=1, p2=2, s2=2, p3=0, s3=1, f1=4, f2=5),  # USPS
}


def _bn(name):
    """BatchNorm with PyTorch's running-average momentum 0.1 (Keras momentum 0.9), as in the authors' code. Keras's
    default 0.99 leaves the inference statistics far from the batch statistics after the short budgets here, and
    the centres (inference mode) and the memberships inside a training step (batch statistics) must agree."""
    return layers.BatchNormalization(momentum=0.9, name=name)


def bottleneck(x, width=64, name=None):
    """Fig. 12(c): 1x1 (width) -> 3x3 (width) -> 1x1 (channels), BatchNorm after each, identity shortcut, ReLU."""
    channels = x.shape[-1]
    y = layers.Conv2D(width, 1, use_bias=False, name=f"{name}_a")(x)
    y = layers.ReLU()(_bn(name=f"{name}_a_bn")(y))
    y = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"{name}_b")(y)
    y = layers.ReLU()(_bn(name=f"{name}_b_bn")(y))
    y = layers.Conv2D(channels, 1, use_bias=False, name=f"{name}_c")(y)
    y = _bn(name=f"{name}_c_bn")(y)
    return layers.ReLU()(layers.Add()([x, y]))


def _transposed(y, filters, kernel, stride, crop, activation, name):
    """A transposed convolution with output (in - 1) * stride - 2 * crop + kernel (PyTorch's 'padding')."""
    y = layers.Conv2DTranspose(filters, kernel, strides=stride, padding="valid", activation=activation, name=name)(y)
    return layers.Cropping2D(crop)(y) if crop else y


def build_autoencoder(input_shape, embedding_dim=10):
    """(encoder, decoder) Keras models of Fig. 12 for (n, n, 1) images, n in {28, 16} (§6)."""
    n = input_shape[0]
    if input_shape[2] != 1 or input_shape[1] != n or n not in AE_SHAPES:
        raise ValueError(f"the grayscale autoencoder of §6 needs (28, 28, 1) or (16, 16, 1) images, got {input_shape}")
    h = AE_SHAPES[n]
    x_in = keras.Input(input_shape)
    x = layers.ZeroPadding2D(h["p1"])(x_in)
    x = layers.Conv2D(32, 5, strides=h["s1"], use_bias=False, name="conv1")(x)  # -> 14 x 14
    x = layers.ReLU()(_bn(name="conv1_bn")(x))
    x = bottleneck(x, name="block1")
    x = layers.Conv2D(64, 5, strides=2, padding="same", activation="relu", name="conv2")(x)  # -> 7 x 7
    x = bottleneck(x, name="block2")
    x = layers.Conv2D(128, 3, strides=2, activation="relu", name="conv3")(x)  # -> 3 x 3
    x = bottleneck(x, name="block3")
    u = layers.Dense(embedding_dim, name="u")(layers.Flatten()(x))
    encoder = keras.Model(x_in, u, name="encoder")

    u_in = keras.Input((embedding_dim,))
    y = layers.Dense(3 * 3 * 128, activation="relu", name="dec_dense")(u_in)
    y = layers.Reshape((3, 3, 128))(y)
    y = _transposed(y, 64, 3, 2, 0, "relu", "deconv1")  # -> 7 x 7
    y = _transposed(y, 32, h["f1"], h["s2"], h["p2"], "relu", "deconv2")
    x_hat = _transposed(y, 1, h["f2"], h["s3"], h["p3"], None, "deconv3")  # -> n x n, linear
    decoder = keras.Model(u_in, x_hat, name="decoder")
    return encoder, decoder


# §5: MNet d-128-128-128-K, BatchNorm + ReLU in the hidden layers, softmax output (the q space).
def build_mnet(embedding_dim, n_clusters, hidden=(128, 128, 128)):
    u_in = keras.Input((embedding_dim,))
    h = u_in
    for i, width in enumerate(hidden):
        h = layers.Dense(width, name=f"mnet_dense{i + 1}")(h)
        h = layers.ReLU()(_bn(name=f"mnet_bn{i + 1}")(h))
    q = layers.Dense(n_clusters, activation="softmax", name="q")(h)
    return keras.Model(u_in, q, name="mnet")


def squared_distances(u, centers):
    """||u_i - mu_k||^2, (n, K)."""
    return ops.sum(ops.square(ops.expand_dims(u, 1) - ops.expand_dims(centers, 0)), axis=-1)


# Eq. (2): p_ik = 1 / sum_j (||u_i - mu_k|| / ||u_i - mu_j||)^(2/(m-1)), i.e. p_ik proportional to
# ||u_i - mu_k||^(-2/(m-1)) normalised over k; computed as a softmax of -log(d^2)/(m-1) (stable at d -> 0).
def memberships(u, centers, m):
    """Fuzzy memberships p (n, K) of embeddings u (n, d) to centres (K, d); rows sum to one."""
    d2 = squared_distances(u, centers)
    return ops.softmax(-ops.log(ops.maximum(d2, 1e-12)) / (m - 1.0), axis=-1)


# Eqs. (1a)-(1c) for cluster k: L^k = L_r^k + alpha L_c^k with
#   L_r^k = sum_i p_ik^m ||x_i - x_hat_i||^2   (1b),   L_c^k = sum_i p_ik^m ||u_i - mu_k||^2   (1c),
# sums over the batch; p_ik is a constant (computed from the current u, no gradient through it).
def phase1_loss(x, x_hat, u, p_k, center_k, m, alpha, parts=False):
    """Loss of the k-th run for a batch: x, x_hat (n, ...), u (n, d), p_k (n,), center_k (d,)."""
    w = ops.power(ops.stop_gradient(p_k), m)
    n = ops.shape(x)[0]
    rec = ops.sum(ops.square(ops.reshape(x - x_hat, (n, -1))), axis=-1)
    cen = ops.sum(ops.square(u - ops.expand_dims(center_k, 0)), axis=-1)
    l_r, l_c = ops.sum(w * rec), ops.sum(w * cen)
    total = l_r + alpha * l_c
    return (total, l_r, l_c) if parts else total


# Eq. (3): mu_k = sum_i p_ik^m u_i / sum_i p_ik^m over the whole data set.
def update_centers(u, p, m):
    """Weighted means (K, d) of u (n, d) with weights p^m (n, K)."""
    w = ops.power(p, m)
    return ops.matmul(ops.transpose(w), u) / ops.expand_dims(ops.sum(w, axis=0), 1)


# Eqs. (4)-(5): L = sum_{i,j in B} 1{s_ij > zeta} (1 - q_i^T q_j) + 1{s_ij < gamma} q_i^T q_j, with the
# similarity s_ij = p_i^T p_j in the first T2 epochs (Eq. 4) and q_i^T q_j afterwards (Eq. 5).
def similarity(a):
    """Inner products a_i^T a_j of the rows of a (n, K): (n, n)."""
    return ops.matmul(a, ops.transpose(a))


def clip_q(q, high=0.99, low=0.01):
    """The authors' code: q set to 1 above ``high`` and to 0 below ``low`` (no gradient through those entries)."""
    q = ops.where(q > high, ops.ones_like(q), q)
    return ops.where(q < low, ops.zeros_like(q), q)


def pairwise_loss(s, q, zeta, gamma, clip=False):
    """Pair loss over all ordered pairs of the batch; s (n, n) is a constant similarity matrix, q (n, K).
    ``clip``: q through clip_q inside the products (Config.q_clip; s is not touched)."""
    s = ops.stop_gradient(s)
    qq = similarity(clip_q(q) if clip else q)
    similar = ops.cast(s > zeta, qq.dtype)
    dissimilar = ops.cast(s < gamma, qq.dtype)
    return ops.sum(similar * (1.0 - qq) + dissimilar * qq)


def pair_counts(s, zeta, gamma):
    """Numbers of similar (s > zeta) and dissimilar (s < gamma) unordered pairs i < j of a symmetric s."""
    def count(mask):
        mask = ops.cast(mask, "float32")
        return (ops.sum(mask) - ops.sum(ops.diagonal(mask))) / 2.0
    return count(s > zeta), count(s < gamma)


PHASE1_OPTIMIZERS = ("adam", "authors_sgd")
AUTHORS_SGD = {"learning_rate": 1e-6, "momentum": 0.9}  # the code's phase-1 optim.SGD


def build_phase1_optimizer(cfg):
    """Phase 1's optimiser: Adam(lr_ae) (§6) or, with phase1_optimizer="authors_sgd", the code's SGD."""
    if cfg.phase1_optimizer == "authors_sgd":
        return keras.optimizers.SGD(**AUTHORS_SGD)
    return keras.optimizers.Adam(cfg.lr_ae)


@dataclass
class Config:
    """Hyper-parameters of §6 (the authors' code where the paper is silent). Profiles change only the budget."""
    embedding_dim: int = 10        # d (§6)
    batch_size: int = 500          # code (paper silent)
    ae_epochs: int = 200           # pre-training epochs: code's default (paper silent)
    ae_learning_rate: float = 1e-3  # pre-training Adam with the Adam paper's parameters (§6)
    phase1_epochs: int = 200       # MaxIter1
    T1: int = 2                    # centre update interval (epochs)
    alpha: float = 0.1
    m: float = 1.5
    lr_ae: float = 1e-5            # Adam, AE (both phases)
    phase2_epochs: int = 20        # MaxIter2
    T2: int = 5                    # epochs with u-space similarities
    zeta: float = 0.8
    gamma: float = 0.2
    lr_mnet: float = 1e-3          # Adam, MNet
    mnet_hidden: int = 128
    mnet_layers: int = 3           # hidden layers (§5: 3); 2 = the authors' code
    phase1_optimizer: str = "adam"  # "adam" (§6, lr_ae) or "authors_sgd" (the code's SGD, AUTHORS_SGD)
    q_clip: bool = False           # True: the code's clipping of q in the pair loss (clip_q)
    kmeans_n_init: int = 10        # scikit-learn's former default, as in the code
    eval_every: int = 10           # evaluation-log interval in phase-1 epochs (labels read by the log only)

    def __post_init__(self):
        if not 0.0 < self.gamma < self.zeta < 1.0:
            raise ValueError(f"need 0 < gamma < zeta < 1, got gamma={self.gamma}, zeta={self.zeta}")
        if self.m <= 1.0:
            raise ValueError(f"the fuzziness m must be > 1, got {self.m}")
        for key in ("batch_size", "T1", "embedding_dim", "mnet_hidden", "mnet_layers", "eval_every"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.phase1_optimizer not in PHASE1_OPTIMIZERS:
            raise ValueError(f"phase1_optimizer must be one of {', '.join(PHASE1_OPTIMIZERS)}, "
                             f"got {self.phase1_optimizer!r}")
        if not isinstance(self.q_clip, bool):
            raise ValueError(f"q_clip must be True or False, got {self.q_clip!r}")

    def autoencoder_part(self):
        return {k: getattr(self, k) for k in ("embedding_dim", "batch_size", "ae_epochs", "ae_learning_rate")}

    def phase1_part(self):
        """The settings phase 1 depends on (not the logging interval: a cached phase 1 keeps the curve it logged)."""
        return {**self.autoencoder_part(), **{k: getattr(self, k) for k in (
            "phase1_epochs", "T1", "alpha", "m", "lr_ae", "kmeans_n_init", "phase1_optimizer")}}


PROFILES = {
    # smoke: CI check of every code path (phase 2 reaches the q-space epochs), not a result.
    "smoke": {"subset_per_class": 20, "ae_epochs": 2, "phase1_epochs": 1, "phase2_epochs": 6, "eval_every": 1},
    # quick: every phase acts. Phase 1 costs K optimiser steps per batch (USPS: 190 steps, ~100 s per epoch on
    # 2 CPU cores), so it gets 4 epochs = 2 centre updates (T1 = 2); pre-training 20 epochs (~10 s each);
    # phase 2 10 epochs (5 in u space, 5 in q space). About 11 min per USPS seed on a quiet CPU.
    "quick": {"ae_epochs": 20, "phase1_epochs": 4, "phase2_epochs": 10, "eval_every": 1},
    "paper": {"ae_epochs": 200, "phase1_epochs": 200, "phase2_epochs": 20, "eval_every": 10},
}
LOGGING_KEYS = ("eval_every",)  # changes only the phase-1 evaluation log (common.golden.result_settings)


class MultiRateAdam(keras.optimizers.Adam):
    """Adam whose step for the variables in ``slow`` uses learning_rate * ``factor``: two Adams (§6: AE 1e-5,
    MNet 1e-3) in one optimizer, as Keras's fit takes one. Moments are per variable, so this equals two Adams."""

    def __init__(self, learning_rate, slow_variables, factor, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self._slow_paths = {v.path for v in slow_variables}
        self._factor = factor

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        fast, slow = [], []
        for g, v in zip(grads, trainable_variables):
            (slow if getattr(v, "path", None) in self._slow_paths else fast).append((g, v))
        if self._slow_paths and not slow:
            raise RuntimeError("MultiRateAdam: none of the slow variables was found among the trained ones")
        for group, lr in ((fast, learning_rate), (slow, learning_rate * self._factor)):
            if group:
                super()._backend_update_step([g for g, _ in group], [v for _, v in group], lr)


class Phase1Net(keras.Model):
    """Algorithm 1, lines 2-8. Input (x, k): a batch and the cluster index of this run (one value per sample, all
    equal). One fit step = one of the K successive runs on the batch: p from Eq. (2), loss Eq. (1a) for cluster k."""

    def __init__(self, encoder, decoder, centers, m, alpha, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.decoder, self.m, self.alpha = encoder, decoder, m, alpha
        self.n_clusters = int(centers.shape[0])
        self.centers = self.add_weight(shape=centers.shape, initializer=keras.initializers.Constant(centers),
                                       trainable=False, name="centers")
        self.rec_tracker = keras.metrics.Mean(name="reconstruction")
        self.cen_tracker = keras.metrics.Mean(name="centering")

    def call(self, inputs, training=False):
        x, k = inputs
        u = self.encoder(x, training=training)
        return self.decoder(u, training=training), u

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        images, k = x
        x_hat, u = y_pred
        onehot = ops.one_hot(ops.cast(k[0], "int32"), self.n_clusters)              # this run's cluster k
        p_k = ops.sum(memberships(u, self.centers, self.m) * onehot, axis=-1)       # Eq. (2), line 4
        center_k = ops.sum(self.centers * ops.expand_dims(onehot, 1), axis=0)
        total, l_r, l_c = phase1_loss(images, x_hat, u, p_k, center_k, self.m, self.alpha, parts=True)  # Eq. (1a)
        self.rec_tracker.update_state(l_r)
        self.cen_tracker.update_state(l_c)
        return total


def k_step_batches(x, batch_size, n_clusters, seed=0, start_epoch=0):
    """Endless stream for Phase1Net.fit: each shuffled batch repeated K times with k = 0, ..., K-1; epoch e shuffled
    by ``default_rng([seed, e])``, so a resumed run continues the same stream."""
    for (xb,) in training.shuffled_batches(x, batch_size, seed, start_epoch):
        for k in range(n_clusters):
            yield ((xb, np.full(len(xb), k, dtype="int32")),)


class Phase2Net(keras.Model):
    """Algorithm 1, lines 9-19: encoder -> u -> MNet -> q; loss Eq. (4) (u-space similarities, use_q = 0)
    or Eq. (5) (q-space, use_q = 1). Encoder and MNet trained end to end."""

    def __init__(self, encoder, mnet, centers, cfg, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.mnet, self.cfg = encoder, mnet, cfg
        self.centers = self.add_weight(shape=centers.shape, initializer=keras.initializers.Constant(centers),
                                       trainable=False, name="centers")
        self.use_q = self.add_weight(shape=(), initializer="zeros", trainable=False, name="use_q")
        self.similar_tracker = keras.metrics.Mean(name="similar_pairs")
        self.dissimilar_tracker = keras.metrics.Mean(name="dissimilar_pairs")
        self.space_tracker = keras.metrics.Mean(name="q_space")  # 1 when the step used Eq. (5): logged, not assumed

    def call(self, x, training=False):
        u = self.encoder(x, training=training)
        return u, self.mnet(u, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        u, q = y_pred
        p = memberships(u, self.centers, self.cfg.m)                                 # Eq. (2), lines 11-12
        s = ops.where(self.use_q > 0.5, similarity(q), similarity(p))                # p_i^T p_j or q_i^T q_j
        s = ops.stop_gradient(s)
        n_sim, n_dis = pair_counts(s, self.cfg.zeta, self.cfg.gamma)
        self.similar_tracker.update_state(n_sim)
        self.dissimilar_tracker.update_state(n_dis)
        self.space_tracker.update_state(ops.cast(self.use_q > 0.5, "float32"))
        return pairwise_loss(s, q, self.cfg.zeta, self.cfg.gamma, clip=self.cfg.q_clip)  # Eq. (4) / Eq. (5)


class CenterUpdate(keras.callbacks.Callback):
    """Eq. (3) over all data at the end of every ``every``-th epoch (phase 1: T1) or of the first ``until`` epochs
    (phase 2: T2), with the current encoder in inference mode."""

    def __init__(self, owner, x, every=1, until=None):
        super().__init__()
        self.owner, self.x, self.every, self.until = owner, x, every, until
        self.count = 0

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every or (self.until is not None and epoch >= self.until):  # until: epochs
            return
        self.model.centers.assign(self.owner.recompute_centers(self.x, self.model.centers))
        self.count += 1


class SimilaritySpace(keras.callbacks.Callback):
    """Algorithm 1, phase 2: u-space similarities p_i^T p_j (Eq. 4) in the first T2 epochs, q_i^T q_j (Eq. 5) after."""

    def __init__(self, T2):
        super().__init__()
        self.T2 = T2

    def on_epoch_begin(self, epoch, logs=None):
        self.model.use_q.assign(1.0 if epoch >= self.T2 else 0.0)


class ClusterSizes(keras.callbacks.Callback):
    """Label-free: the cluster sizes of ``predict_labels(x)`` at the end of every epoch (``log``); ``labels`` keeps
    the last prediction, for the evaluation log to reuse."""

    def __init__(self, predict_labels, x, n_clusters):
        super().__init__()
        self.predict_labels, self.x, self.n_clusters = predict_labels, x, n_clusters
        self.log, self.labels = [], None

    def on_epoch_end(self, epoch, logs=None):
        self.labels = self.predict_labels(self.x)
        self.log.append(np.bincount(self.labels, minlength=self.n_clusters).tolist())


def _phase_state(logger, center_cb, sizes=None):
    """get_state / set_state for common.checkpoint: the evaluation log, the centre-update count, the size log."""
    def get():
        state = {"eval": logger.log if logger else [], "center_updates": center_cb.count}
        return {**state, "cluster_sizes": sizes.log} if sizes is not None else state

    def set_(state):
        if logger:
            logger.log.extend(state.get("eval", []))
        if sizes is not None:
            sizes.log.extend(state.get("cluster_sizes", []))
        center_cb.count = state.get("center_updates", 0)
    return get, set_


class DCSS(DeepClusterer):
    """Algorithm 1: pre-trained AE + k-means centres, phase 1 (K runs per batch), phase 2 (MNet), argmax q."""

    paper, config_class = "dcss", Config

    # --- helpers outside the graph --------------------------------------------------------------------------
    def recompute_centers(self, x, centers):
        """Eq. (3) with p from Eq. (2) on all of x."""
        u = self.embed(x)
        return ops.convert_to_numpy(update_centers(u, memberships(u, ops.convert_to_numpy(centers), self.cfg.m),
                                                   self.cfg.m))

    def predict_u(self, x, centers=None):
        """DCSS_u: the nearest centre in the u space (= argmax_k p_ik)."""
        centers = ops.convert_to_numpy(self.centers if centers is None else centers)
        return np.argmin(ops.convert_to_numpy(squared_distances(self.embed(x), centers)), axis=1)

    def _sizes(self, labels):
        return np.bincount(labels, minlength=self.n_clusters).tolist()

    def predict_proba(self, x):
        return self.mnet.predict(self.embed(x), batch_size=1024, verbose=0)

    def predict(self, x):
        """§3.3: the index of the largest element of q_i."""
        return np.argmax(self.predict_proba(x), axis=1)

    def run_outputs(self, x):
        """Labels = argmax q (final iterate), DCSS_u as an extra label set; the .npz keeps the k-means start, phase 1's
        codes, centres and labels, and q."""
        q = self.predict_proba(x)
        return {"labels": np.argmax(q, axis=1), "embedding": self.embed(x), "centers": self.centers,
                "kmeans_labels": self.kmeans_labels, "extra_labels": {"DCSS_u": self.labels_u},
                "arrays": {"kmeans_labels": self.kmeans_labels, "u_phase1": self.u_phase1,
                           "centers_phase1": self.centers_phase1, "q": q, "labels_u": self.labels_u},
                "history": self.history}

    # --- training -----------------------------------------------------------------------------------------
    def fit(self, x, y=None):
        """Trains on images x (n, H, W, 1); ``y`` only feeds the evaluation log."""
        cfg = self.cfg
        training.check_images(x)
        keras.utils.set_random_seed(self.seed)
        self.encoder, self.decoder = build_autoencoder(x.shape[1:], cfg.embedding_dim)
        self._pretrain(x)
        self._phase1(x, y)
        self._phase2(x, y)
        return self

    def _pretrain(self, x):
        """§6: AE trained on reconstruction only (Adam), then k-means on u for the initial centres."""
        cfg = self.cfg
        cache = self.cache_path("ae", cfg.autoencoder_part(), x)
        self.history["pretrain"] = training.pretrain_autoencoder(
            self.encoder, self.decoder, x, epochs=cfg.ae_epochs, batch_size=cfg.batch_size,
            learning_rate=cfg.ae_learning_rate, augment=None, cache=cache, seed=self.seed, verbose=self.verbose)
        self.u_pretrained = self.embed(x)
        self.centers, self.kmeans_labels = clustering.kmeans(self.u_pretrained, self.n_clusters, cfg.kmeans_n_init,
                                                             self.seed)
        self.history["pretrain"]["kmeans_cluster_sizes"] = self._sizes(self.kmeans_labels)  # label-free

    def _phase1(self, x, y):
        cfg, K = self.cfg, self.n_clusters
        net = Phase1Net(self.encoder, self.decoder, self.centers, cfg.m, cfg.alpha)
        net((x[:2], np.zeros(2, "int32")))
        # Phase 1 depends only on the pre-training and phase-1 settings: a cached result (AE weights, centres,
        # curves) lets runs that change only phase 2 (e.g. the zeta/gamma sweep of Fig. 10) skip it.
        cache = self.cache_path("phase1", cfg.phase1_part(), x)
        cached = self.load_cached(net, cache)
        if cached is not None:
            self._phase1_done(net, x, cached)
            return
        net.compile(optimizer=build_phase1_optimizer(cfg))
        n_batches = -(-len(x) // cfg.batch_size)
        steps = n_batches * K  # K successive optimiser steps per batch
        center_cb = CenterUpdate(self, x, every=cfg.T1)
        logger = None if y is None else training.EvalLogger(lambda a: self.predict_u(a, net.centers), x, y, steps,
                                                          cfg.eval_every, cfg.phase1_epochs)
        get_state, set_state = _phase_state(logger, center_cb)
        fit = checkpoint.resumable_fit(
            net, lambda e: k_step_batches(x, cfg.batch_size, K, self.seed, e), phase="phase1",
            epochs=cfg.phase1_epochs, steps_per_epoch=steps, callbacks=[center_cb] + ([logger] if logger else []),
            checkpoint=self.cache_checkpoint(cache), get_state=get_state,
            set_state=set_state, verbose=self.verbose)
        history = {
            "loss": checkpoint.curve(fit["logs"], "loss"),
            "reconstruction": checkpoint.curve(fit["logs"], "reconstruction"),
            "centering": checkpoint.curve(fit["logs"], "centering"),
            "epoch_seconds": fit["epoch_seconds"], "steps_per_epoch": steps, "batches_per_epoch": n_batches,
            "optimizer_steps": int(ops.convert_to_numpy(net.optimizer.iterations)),
            "center_updates": center_cb.count, "resumed_at": fit["resumes"],
            "optimizer": {"name": type(net.optimizer).__name__,
                          "learning_rate": float(ops.convert_to_numpy(net.optimizer.learning_rate)),
                          "momentum": getattr(net.optimizer, "momentum", None)}}
        if logger is not None:
            history["eval"] = logger.log
        self.save_cached(net, cache, history)
        self._phase1_done(net, x, history)

    def _phase1_done(self, net, x, history):
        self.centers = ops.convert_to_numpy(net.centers)
        self.centers_phase1 = self.centers.copy()
        self.u_phase1 = self.embed(x)
        self.labels_u = self.predict_u(x)
        self.history["phase1"] = {**history, "cluster_sizes": self._sizes(self.labels_u)}  # DCSS_u's, label-free

    def _phase2(self, x, y):
        cfg = self.cfg
        self.mnet = build_mnet(cfg.embedding_dim, self.n_clusters, (cfg.mnet_hidden,) * cfg.mnet_layers)
        net = Phase2Net(self.encoder, self.mnet, self.centers, cfg)
        # §6: Adam, MNet lr 1e-3, AE (encoder) lr 1e-5.
        net.compile(optimizer=MultiRateAdam(cfg.lr_mnet, self.encoder.trainable_variables, cfg.lr_ae / cfg.lr_mnet))
        net(x[:2])
        steps = -(-len(x) // cfg.batch_size)
        center_cb = CenterUpdate(self, x, every=1, until=cfg.T2)  # line 14: centres updated in the first T2 epochs
        sizes = ClusterSizes(self.predict, x, self.n_clusters)     # argmax q after every epoch, label-free
        logger = None if y is None else training.EvalLogger(lambda _: sizes.labels, x, y, steps, 1, cfg.phase2_epochs)
        get_state, set_state = _phase_state(logger, center_cb, sizes)
        fit = checkpoint.resumable_fit(
            net, lambda e: training.shuffled_batches(x, cfg.batch_size, self.seed + 1, e), phase="phase2",
            epochs=cfg.phase2_epochs, steps_per_epoch=steps, checkpoint=self.checkpoint,
            callbacks=[SimilaritySpace(cfg.T2), center_cb, sizes] + ([logger] if logger else []),
            get_state=get_state, set_state=set_state, verbose=self.verbose)
        self.centers = ops.convert_to_numpy(net.centers)
        curve = {key: checkpoint.curve(fit["logs"], key) for key in ("loss", "similar_pairs", "dissimilar_pairs")}
        self.history["phase2"] = {**curve, "pairs_per_batch": cfg.batch_size * (cfg.batch_size - 1) // 2,
                                  "epoch_seconds": fit["epoch_seconds"], "steps_per_epoch": steps,
                                  "center_updates": center_cb.count, "resumed_at": fit["resumes"],
                                  "cluster_sizes": sizes.log,  # per epoch, of argmax q
                                  # the similarity each epoch's steps used, as logged by the loss (Eq. 4: u, Eq. 5: q)
                                  "similarity_space": ["q" if v > 0.5 else "u"
                                                       for v in checkpoint.curve(fit["logs"], "q_space")]}
        if logger is not None:
            self.history["phase2"]["eval"] = logger.log


run = DCSS.make_run()  # one training run for the reproduction CLI (labels = argmax q; DCSS_u as extra labels)
