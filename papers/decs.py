"""DECS: Deep Embedding Clustering Driven by Sample Stability.

Cheng, Li, Wang, Qian, IJCAI 2024 (../shared/papers/000_68a3b2d6fc995df3.txt).
Read top to bottom beside the paper: §3.2 autoencoder (Eqs. 2-4), §3.3 soft assignment (Eq. 5), Otsu's threshold
and determinacy (Eq. 6), sample stability (Eq. 7), the loss (Eq. 8), Algorithm 1 (class DECS), §4.4 settings.

Two variants differ where the authors' code differs from the paper (VARIANTS): "paper" (squared determinacy,
lambda 0.8, L_c = 1 - mean sq, alpha 1) and "code" (``--set variant=code``). Every departure from the paper, and
every choice where the paper is silent, is a row of DEPARTURES (common.tables.departures_markdown renders them).

Randomness: the augmentation of the clustering stage has its own seed stream, so a run that loads a cached
autoencoder and one that trains it are the same experiment; both stages resume from checkpoints.
"""
from dataclasses import dataclass

import keras
import numpy as np
from keras import layers, ops

from common import batchnorm, checkpoint, clustering, training
from common.estimator import DeepClusterer
from common.tables import parse_table

VARIANTS = {
    "paper": {"alpha": 1.0, "lam": 0.8},
    "code": {"alpha": 0.5, "lam": 0.4},
}

# (topic, the paper, the authors' code, ours and the --set option that gives the other)
DEPARTURES = [
    ("determinacy (Eq. 6)", "squared: fq = Q^2 / t^2 (Q < 0), Q^2 / (1 - t)^2 (Q >= 0)", "|Q| / t, |Q| / (1 - t)",
     "paper; `--set variant=code`"),
    ("lambda of Eq. (7)", "0.8 (§4.4)", "0.4", "paper; `--set variant=code` or `--set lam=0.4`"),
    ("L_c (Eq. 8)", "1 - mean_i sq_i", "1 - (mean_i sq_i + var_i sq_i)", "paper; `--set variant=code`"),
    ("alpha of Eq. (5)", "never stated for the experiments; alpha = 1 appears only as the simplification of §3.4's "
     "gradient derivation", "0.5", "alpha = 1, a reading, not a reported setting; `--set variant=code` or "
     "`--set alpha=0.5`"),
    ("clustering-stage optimiser", "§3.4: stochastic gradient descent with momentum, no rate given (§4.4: Adam "
     "with Keras's defaults for the autoencoder)", "Adam(1e-3) for the clustering stage too",
     "code (the only fully specified choice); `--set cluster_optimizer=sgd`: DEC's SGD, lr 0.01, momentum 0.9 "
     "(Xie et al. 2016; `sgd_learning_rate`, `sgd_momentum`)"),
    ("autoencoder (§3.2, §4.4)", "stride 2 and max pooling after each of four convolutions (cannot fit a 16x16 "
     "input)", "3x3 stride-1 convolutions (32, 64, 128, 256), ReLU and BatchNorm, max pooling after the first "
     "three, a linear Dense embedding, a mirrored transposed-convolution decoder", "code; no option"),
    ("Otsu's threshold t (Eq. 6)", "Otsu's method on the values of q (no more)",
     "the current batch, a 1000-bin histogram on [0, 1]", "code (paper silent); `--set otsu_bins=...`"),
    ("augmentation", "random rotation, translation and cropping (§4.4), magnitudes not given",
     "shift 0.1, rotation 10 degrees, in both stages", "code; `--set augment=false` turns it off"),
]

# Table 1 of the paper, (ACC, NMI); None where the paper prints a dash. Paper-reported data, not ours.
_T1_COLS = ("mnist", "mnist-test", "usps", "fmnist", "ytf")
_T1 = """
k-means  .532 .499 .542 .500 .668 .626 .474 .512 .601 .776
GMM      .433 .366 .540 .593 .551 .530 .556 .557 .348 .411
SC-Ncut  .656 .731 .660 .704 .649 .794 .508 .575 .510 .701
SC-LS    .714 .706 .740 .756 .746 .755 .496 .497 .544 .759
AC-GDL   .113 .017 .933 .864 .725 .825 .112 .010 .430 .662
DEC      .863 .834 .856 .830 .762 .767 .518 .546 .371 .446
IDEC     .881 .867 .846 .802 .761 .785 .529 .557 .400 .483
DCEC     .890 .885 .852 .809 .790 .862 -    -    -    -
VaDE     .944 .891 .944 .885 .566 .512 .629 .611 .601 .753
JULE     .964 .913 .961 .915 .950 .913 .563 .608 .684 .848
DEPICT   .965 .917 .963 .915 .899 .906 .392 .392 .621 .802
IDCEC    .948 .906 .923 .853 .812 .858 -    -    .632 .793
TELL     .952 .888 .776 .751 .865 .786 .584 .658 -    -
AdaGAE   .929 .853 -    -    .920 .848 -    -    -    -
MI-ADM   .969 .922 .871 .885 .979 .948 -    -    .606 .801
DSCDA    .978 .941 .980 .946 .869 .857 .662 .645 .691 .857
DynAE    .987 .964 .987 .963 .981 .948 .591 .642 -    -
ASPC-DA  .988 .966 .973 .936 .982 .951 .591 .654 -    -
DeepDPM  .980 .950 -    -    .940 .900 .610 .500 .821 .930
TDEC     .985 .957 .975 .935 .976 .935 .645 .693 .950 .980
DECS     .990 .973 .990 .971 .992 .976 .642 .716 .827 .911
"""


METHOD = "DECS"
PAPER_RESULTS = parse_table(_T1, _T1_COLS)  # PAPER_RESULTS[method][dataset] -> {"acc", "nmi"} or None


# §3.2, §4.4: convolutional autoencoder. The paper's "stride 2 and max pooling after each of four
# convolutions" cannot fit a 16x16 input; we follow the authors' code: 3x3 stride-1 convolutions
# (32, 64, 128, 256) with ReLU and BatchNorm, max pooling after the first three, a linear Dense
# embedding, and a mirrored transposed-convolution decoder (Eqs. 3-4).
def build_autoencoder(input_shape, embedding_dim=10):
    """Returns (encoder, decoder) Keras models for images of ``input_shape`` (H, W, C)."""
    h, w, c = input_shape
    pad = "same" if h % 8 == 0 else "valid"
    x_in = keras.Input(input_shape)
    x = x_in
    for i, filters in enumerate((32, 64, 128, 256)):
        x = layers.Conv2D(filters, 3, padding=pad if i == 3 else "same", activation="relu")(x)
        x = batchnorm.BatchNormalization()(x)
        if i < 3:
            x = layers.MaxPooling2D(2)(x)
    z = layers.Dense(embedding_dim, name="embedding")(layers.Flatten()(x))
    encoder = keras.Model(x_in, z, name="encoder")

    z_in = keras.Input((embedding_dim,))
    y = layers.Dense((h // 8) * (w // 8) * 256, activation="relu")(z_in)
    y = layers.Reshape((h // 8, w // 8, 256))(y)
    for i, filters in enumerate((128, 64, 32)):
        y = layers.Conv2DTranspose(filters, 3, strides=2, padding=pad if i == 0 else "same", activation="relu")(y)
        y = batchnorm.BatchNormalization()(y)
    x_hat = layers.Conv2DTranspose(c, 3, padding="same", name="reconstruction")(y)
    return encoder, keras.Model(z_in, x_hat, name="decoder")


# Eq. (5): Student's t soft assignment of embedding z_i to centroids m_j,
#   q_ij = (1 + ||z_i - m_j||^2 / alpha)^(-(alpha+1)/2) / sum_j' (same).
def soft_assignment(z, centers, alpha=1.0):
    """q (n, k) from embeddings z (n, d) and centres (k, d)."""
    d2 = ops.sum(ops.square(ops.expand_dims(z, 1) - ops.expand_dims(centers, 0)), axis=-1)
    kernel = ops.power(1.0 + d2 / alpha, -(alpha + 1.0) / 2.0)
    return kernel / ops.sum(kernel, axis=1, keepdims=True)


# t of Eq. (6): the co-association probability of lowest determinacy, chosen by Otsu's method on
# the values of q (the authors' code: the current batch, a 1000-bin histogram on [0, 1]).
def otsu_threshold(q, bins=1000):
    """Otsu's threshold of all entries of q in [0, 1]: the centre of the last bin of the lower class."""
    v = ops.reshape(ops.cast(q, "float32"), (-1,))
    idx = ops.clip(ops.cast(ops.floor(v * bins), "int32"), 0, bins - 1)
    hist = ops.segment_sum(ops.ones_like(v), idx, num_segments=bins)
    p = hist / ops.sum(hist)
    centres = (ops.arange(bins, dtype="float32") + 0.5) / bins
    w0 = ops.cumsum(p)                      # probability of the lower class, split after each bin
    mu0 = ops.cumsum(p * centres)           # its first moment
    mu = mu0[-1]
    denom = w0 * (1.0 - w0)
    between = ops.where(denom > 1e-12, ops.square(mu * w0 - mu0) / ops.maximum(denom, 1e-12), 0.0)
    return ops.take(centres, ops.argmax(between))


# Eq. (6): determinacy of each sample-centroid pair, Q = q - t,
#   paper: fq = Q^2 / t^2 if Q < 0, Q^2 / (1 - t)^2 if Q >= 0;   code: |Q| / t, |Q| / (1 - t).
def determinacy(q, t, variant="paper"):
    """fq in [0, 1], elementwise in q; t is a scalar threshold."""
    q = ops.convert_to_tensor(q)
    t = ops.cast(t, q.dtype)
    dev = q - t
    scale = ops.where(dev < 0, t, 1.0 - t)
    if variant == "paper":
        return ops.square(dev) / ops.square(scale)
    if variant == "code":
        return ops.abs(dev) / scale
    raise ValueError(f"variant must be 'paper' or 'code', got {variant!r}")


# Eq. (7): stability of sample i, the mean of its determinacies over the k centroids minus
# lambda times their (population) variance.
def sample_stability(fq, lam):
    """sq (n,) from fq (n, k)."""
    mean = ops.mean(fq, axis=1)
    var = ops.mean(ops.square(fq - ops.expand_dims(mean, 1)), axis=1)
    return mean - lam * var


# Eq. (8): L_c = 1 - (1/n) sum_i sq_i (paper); the code adds the variance of sq over the batch.
def stability_loss(q, t, lam, variant="paper"):
    """Clustering loss from q (n, k) and threshold t (treated as a constant)."""
    sq = sample_stability(determinacy(q, ops.stop_gradient(t), variant), lam)
    mean = ops.mean(sq)
    if variant == "paper":
        return 1.0 - mean
    return 1.0 - (mean + ops.mean(ops.square(sq - mean)))


@dataclass
class Config:
    """Hyper-parameters (§4.4; the authors' code where the paper is silent). Profiles change only the budget."""
    variant: str = "paper"
    alpha: float = None           # None: the variant's value
    lam: float = None             # None: the variant's value
    embedding_dim: int = 10
    ae_epochs: int = 500
    batch_size: int = 256
    cluster_iters: int = 10000
    learning_rate: float = 1e-3   # Adam, Keras defaults (§4.4)
    cluster_optimizer: str = "adam"  # clustering stage: "adam" (code, learning_rate) or "sgd" (§3.4, see docstring)
    sgd_learning_rate: float = 0.01  # only for cluster_optimizer=sgd (DEC's value; the paper gives none)
    sgd_momentum: float = 0.9        # only for cluster_optimizer=sgd (DEC's value; the paper gives none)
    augment: bool = True          # shift 0.1, rotation 10 degrees, in both phases (code)
    kmeans_n_init: int = 20
    otsu_bins: int = 1000
    log_every: int = 500          # evaluation log interval (labels are read by the log only)

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {self.variant!r}")
        self.alpha = float(VARIANTS[self.variant]["alpha"] if self.alpha is None else self.alpha)
        self.lam = float(VARIANTS[self.variant]["lam"] if self.lam is None else self.lam)
        if self.cluster_optimizer not in ("adam", "sgd"):
            raise ValueError(f"cluster_optimizer must be 'adam' or 'sgd', got {self.cluster_optimizer!r}")
        if self.log_every < 1 or (self.cluster_iters > self.log_every and self.cluster_iters % self.log_every):
            raise ValueError(f"cluster_iters ({self.cluster_iters}) must be a multiple of log_every ({self.log_every})")

    def autoencoder_part(self):
        return {k: getattr(self, k) for k in ("embedding_dim", "ae_epochs", "batch_size", "learning_rate", "augment")}


PROFILES = {
    "smoke": {"subset_per_class": 30, "ae_epochs": 2, "cluster_iters": 20, "log_every": 10},
    "quick": {"ae_epochs": 100, "cluster_iters": 4000, "log_every": 500},
    "paper": {"ae_epochs": 500, "cluster_iters": 10000, "log_every": 500},
}
# Changes only the evaluation log and the chunks the loss curve is averaged over (common.golden.result_settings).
LOGGING_KEYS = ("log_every",)
DATASETS = ("usps", "mnist", "mnist-test", "fmnist")


class StabilityNet(keras.Model):
    """Algorithm 1, lines 4-7: encoder -> q (Eq. 5) -> Otsu t -> fq (Eq. 6) -> sq (Eq. 7) -> L_c (Eq. 8)."""

    def __init__(self, encoder, centers, cfg, augment=None, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.augment, self.cfg = encoder, augment, cfg
        self.centers = self.add_weight(shape=centers.shape, initializer=keras.initializers.Constant(centers),
                                       name="centers")

    def call(self, x, training=False):
        if self.augment is not None:
            x = self.augment(x, training=training)
        z = ops.cast(self.encoder(x, training=training), "float32")  # q in float32 under mixed precision
        return soft_assignment(z, self.centers, self.cfg.alpha)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        t = otsu_threshold(y_pred, self.cfg.otsu_bins)
        return stability_loss(y_pred, t, self.cfg.lam, self.cfg.variant)


class DECS(DeepClusterer):
    """Algorithm 1: pre-train the autoencoder (Eq. 2), k-means centroids, then minimise L_c (Eq. 8)."""

    paper, config_class = "decs", Config

    def _ae_cache(self, x):
        """The autoencoder's cache (keyed by its settings, data, seed, numerics), or None."""
        return self.cache_path("ae", self.cfg.autoencoder_part(), x)

    def _optimizer(self):
        cfg = self.cfg
        if cfg.cluster_optimizer == "sgd":
            return keras.optimizers.SGD(cfg.sgd_learning_rate, momentum=cfg.sgd_momentum)
        return keras.optimizers.Adam(cfg.learning_rate)

    def fit(self, x, y=None):
        """Trains on images x (n, H, W, C); ``y`` only feeds the evaluation log."""
        cfg = self.cfg
        training.check_images(x)
        keras.utils.set_random_seed(self.seed)
        self.encoder, self.decoder = build_autoencoder(x.shape[1:], cfg.embedding_dim)
        # Algorithm 1, line 1: autoencoder weights by Eq. (2).
        self.history["pretrain"] = training.pretrain_autoencoder(
            self.encoder, self.decoder, x, epochs=cfg.ae_epochs, batch_size=cfg.batch_size,
            learning_rate=cfg.learning_rate, augment=training.augmenter(seed=self.seed) if cfg.augment else None,
            cache=self._ae_cache(x), seed=self.seed, verbose=self.verbose)
        # Line 2: centroids m by k-means on the embedding.
        z0 = self.embed(x)
        centers, self.kmeans_labels_ = clustering.kmeans(z0, self.n_clusters, cfg.kmeans_n_init, self.seed)
        # Lines 3-8: minimise L_c over encoder weights and m, batch 256 in fixed order.
        augment = training.augmenter(seed=self.seed, stream=1) if cfg.augment else None
        self.net = StabilityNet(self.encoder, centers, cfg, augment)
        self.net.compile(optimizer=self._optimizer())
        self.net(x[:2])
        chunk = min(cfg.log_every, cfg.cluster_iters)
        epochs = cfg.cluster_iters // chunk if chunk else 0
        logger = training.EvalLogger(self.predict, x, y, chunk) if y is not None else None
        fit = checkpoint.resumable_fit(
            self.net, lambda e: training.fixed_order_batches(x, cfg.batch_size, e * chunk), phase="cluster", unit="iteration",
            epochs=epochs, steps_per_epoch=chunk, checkpoint=self.checkpoint, callbacks=[logger] if logger else [],
            get_state=lambda: {"eval": logger.log} if logger else {},
            set_state=lambda s: logger.log.extend(s.get("eval", [])) if logger else None, verbose=self.verbose)
        self.history["cluster"] = {"loss": checkpoint.curve(fit["logs"], "loss"), "chunk_seconds": fit["epoch_seconds"],
                                   "steps_per_chunk": chunk, "iterations": epochs * chunk,
                                   "optimizer": cfg.cluster_optimizer, "resumed_at": fit["resumes"]}
        if logger is not None:
            self.history["cluster"]["eval"] = logger.log
        return self

    def predict_proba(self, x):
        return ops.convert_to_numpy(soft_assignment(self.embed(x), self.net.centers, self.cfg.alpha))

    def predict(self, x):
        """Line 9: cluster assignment = argmax_j q_ij (the final iterate)."""
        return np.argmax(self.predict_proba(x), axis=1)

    def run_outputs(self, x):
        return {"labels": self.predict(x), "embedding": self.embed(x),
                "centers": ops.convert_to_numpy(self.net.centers), "kmeans_labels": self.kmeans_labels_,
                "history": self.history}


run = DECS.make_run()  # one training run for the reproduction CLI: labels, embedding, centres, history
