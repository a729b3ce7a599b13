"""R-DC: Rethinking Deep Clustering Paradigms: Self-Supervision Is All You Need.

Shaheen, Mrabah, Ksantini, Alqaddoumi, Neural Networks (../shared/papers/004_f53c9959bea054f3.clean.txt;
design notes in ../shared/specs/rdc.md). Read top to bottom beside the paper:
  §3.1 phase 1, ACAI: Eq. (1) the autoencoder, Eq. (2) the critic (AcaiStep; Algorithm 1 lines 2-10)
  §3.3 the dual filter: Eq. (3) neighbours, Eqs. (4)-(6) core points, Eqs. (7)-(9) reliable neighbours,
       Eqs. (10)-(11) centroids
  §3.3-3.5 phase 2: Eqs. (12)-(14) the losses (ProximityNet), Eq. (15) the core ratio tau, the stopping rule
  §4.2.3 the ablation's phase 3, DEC (DecNet); §1.2.1 / §4.1.2 the geometric diagnostics (ID by TwoNN, LID by
       PCA); §4.2.5 the robustness protocol, Eqs. (16)-(17)
  §4.1.3 settings (Config, Table 2), Algorithm 1 (RDC.fit), the paper's Tables 3-6 and 8 (PAPER_RESULTS)
Where the paper is ambiguous, silent or garbled, and where we depart from it: DEPARTURES (topic, the paper, the
authors' code or ACAI, ours and the ``--set`` option that gives the other; common.tables.departures_markdown
renders it), and NOTES (the label-free evidence for the pixel range, the health figures, the paper's
inconsistencies, randomness / caching / resumption, cost). Labels feed the evaluation logs only.
"""
import time
from dataclasses import dataclass

import keras
import numpy as np
from keras import layers, ops
from sklearn.neighbors import NearestNeighbors

from common import checkpoint, clustering, health, nets, results, training
from common.estimator import DeepClusterer
from common.tables import parse_table

# (topic, the paper, the authors' code (or ACAI / DynAE, which it builds on), ours and the --set option that gives
# the other). The spec's reading unless said otherwise.
DEPARTURES = [
    ("Eq. (1): the interpolated pairs", "x_phi = g(phi f(x_1) + (1 - phi) f(x_2)); x_2 not specified",
     "ACAI: x_2 = the batch reversed", "ACAI's: x_2 = the batch reversed (the batch is shuffled, so the pairs are "
     "random); no option"),
    ("Eq. (1): phi", "phi ~ U[0, 1] per sample (the paper's \"[0, 1]\")", "ACAI folds phi to [0, 0.5]: phi -> "
     "0.5 - |phi - 0.5|, i.e. phi > 0.5 becomes 1 - phi (the reversed pair with 1 - phi is the same interpolant)",
     "paper: U[0, phi_max], phi_max = 1; `--set phi_max=0.5` draws U[0, 0.5]; `--set phi_fold=true` folds as ACAI "
     "(both give that distribution, with other draws)"),
    ("Eq. (1): lambda_t", "not given", "ACAI's default 0.5 (and the DynAE driver)", "0.5; `--set lambda_t=...`"),
    ("Eq. (1): reduction", "a squared norm plus lambda_t times the critic's square, reduction not given",
     "ACAI: the mean over pixels and batch of the squared error plus lambda_t times the batch mean of c(x_phi)^2",
     "ACAI's (lambda_t's value belongs to that convention); no option"),
    ("Eq. (1): the critic", "its weights are constants in Eq. (1)", "-",
     "applied through apply_frozen: every kernel and bias under stop_gradient, the gradient flows to its input; "
     "no option"),
    ("Eq. (2): eta", "eta ~ U[0, 1] (the paper's \"[0, 1]\"); x_phi, x and x_hat constants in Eq. (2)",
     "one draw per batch from U[0, 0.5] (the authors' file draws eta ~ U[0, 1] and folds it); ACAI: a constant 0.2",
     "paper: eta ~ U[0, eta_max], one draw per batch, eta_max = 1, x_phi, x, x_hat constants; `--set eta_max=0.5`; "
     "`--set eta_fold=true` folds as the authors' file (both give U[0, 0.5], with other draws)"),
    ("Eq. (2): the critic's network", "silent", "the encoder's MLP shape d-500-500-2000-10 with its 10 outputs "
     "averaged (the code and ACAI)", "the code's; no option"),
    ("Algorithm 1 lines 2-10: schedule", "iteration i = 1..T1: even i one autoencoder step on Eq. (1), odd i one "
     "critic step on Eq. (2), each with its own Adam, so the autoencoder gets T1/2 steps",
     "the code and ACAI update both networks every iteration",
     "paper (`acai_schedule=alternate`), a new shuffled batch every iteration; `--set acai_schedule=simultaneous`: "
     "both networks step on every batch from the same phi and the same pre-step weights, with one Adam over both "
     "parameter sets (two Adams with one step counter). The plain autoencoder (Table 3's baselines) takes as many "
     "autoencoder steps as ACAI's phase 1 under the schedule (T1/2 when alternating; `--set plain_steps=iterations`: "
     "T1)"),
    ("phase 1: the critic", "trained (Algorithm 1)", "the authors' file most likely freezes it",
     "paper: trained; the frozen critic is not reproduced (no option)"),
    ("pixel range", "silent", "the authors' loader: [0, 1] pixels",
     "[-1, 1] (2 x - 1) in every phase (`pixel_range=pm1`), the range ACAI's lambda_t = 0.5 was chosen for: on "
     "[0, 1] pixels the reconstruction term of Eq. (1) is 4x smaller, so 0.5 weighs the critic 4x more than ACAI "
     "did. Chosen by label-free evidence (NOTES, issue 25); `--set pixel_range=01`. With a noise level (Eqs. "
     "16-17) the z-score undoes the range"),
    ("Eq. (3): the M = 5 neighbours", "M = 5", "5 including the point itself",
     "5 excluding the point itself *by index* (with it included every r_i = 0 and nobody is ever core); duplicates "
     "are genuine neighbours at distance 0; codes of the unaugmented inputs (Algorithm 1 line 14); the code's: "
     "`--set n_neighbors=4`"),
    ("Eqs. (4)-(5): core points", "r_i = min_m d_im / max_m d_im; core when r_i >= alpha", "r_i > alpha",
     "paper (>=), with r_i = 1 when all M distances are 0; no option"),
    ("Eqs. (8)-(9): reliable neighbours", "h_im = d_im - min_m' d_im' (the point's own nearest); reliable when "
     "h_im <= beta", "subtracts a running global minimum (a bug); h_im < beta",
     "paper, so the nearest neighbour is always reliable; the code's bug is not reproduced (no option)"),
    ("Eq. (11): the centroid", "as printed averages f(x_i), the point itself, over m (a typo)", "-",
     "sigma(x_i) = the mean of the codes of the reliable neighbours (S_nn^i), the point excluded; sigma and "
     "g(sigma) are constants in the gradient (targets; g is the current decoder); no option"),
    ("Eq. (12): the cases", "as printed swaps them (\"||x_i - x_hat_i|| if i not in Omega ... otherwise "
     "g(sigma)\")", "-", "as the text says: border points reconstruct their input, core points the decoded "
     "centroid. The network input is the augmented x~_i (\"regularisation via data augmentation\", §3.5), "
     "x_hat_i = g(f(x~_i)), the border target is x~_i (what was fed, as in phase 1); Eq. (13) only over core "
     "points, f of the augmented input; no option"),
    ("Eq. (14): weights and reduction", "L = L1 + L2 without weights; reduction not given",
     "mean-squared latent error + 100 x mean-squared pixel error",
     "ours: per-sample squared *sums* over dimensions, averaged over the batch (L2's sum over the batch's core "
     "points divided by the batch size, the stochastic estimate of (1/N) sum_{i in Omega}); `--set "
     "loss_form=code`: the code's weighting, with our targets"),
    ("§3.5: neighbour refresh", "\"every training iteration\"", "-",
     "a code bank B = f(X) (clean inputs) inside the model: every step writes the batch's clean codes into B and "
     "recomputes the batch's M neighbours, core mask, reliable mask and centroids from B (Eqs. 3-11 in the graph), "
     "so everything in the loss is refreshed every iteration from codes at most one refresh old. B is recomputed "
     "in full every `refresh_every` steps (0: one pass over the data; `--set refresh_every=1`: the paper-literal "
     "full refresh every step, a GPU setting); each full refresh computes tau (Eq. 15) over all N with exact "
     "neighbours (scikit-learn), the stopping rule and the logs"),
    ("§3.5 / §4.1.3: stopping rule", "\"no further increase in the number of core points\", \"until there is no "
     "more increase\"; Algorithm 1 line 13: while tau != tau_prev; no cap", "maxiter 100,000",
     "stop at the first full refresh t >= 1 with tau_t <= tau_{t-1} (`stop_rule=no_increase`); `--set "
     "stop_rule=unchanged` (Algorithm 1 literally), `none` (to the cap); safety cap `max_iters` = the code's "
     "100,000, rounded up to whole refresh intervals; `--set tau_patience=k` (a label-free departure): stop only "
     "after k + 1 refreshes in a row whose tau does not exceed the best tau so far (k = 0, the default, is the "
     "paper's rule)"),
    ("Algorithm 1 line 27: final labels", "k-means on f(X)", "k-means, n_init 20",
     "k-means (K, n_init 20) on f(X) of the clean data, after the last phase; no option"),
    ("§4.2.3: phase 3 (ablation)", "DEC (Xie et al.), no settings given", "-",
     "DEC on the encoder: q with alpha = 1, target p = q^2 / f normalised over the whole data, recomputed every "
     "140 iterations, KL(p || q), centres by k-means (n_init 20), SGD(0.01, momentum 0.9), batch 256, augmentation "
     "on (§4.1.3 applies it to DEC), stop when fewer than 0.1 % of the labels change between target updates or "
     "after 20,000 iterations (DEC-keras defaults); labels = argmax q; `--set dec_learning_rate=...`, "
     "`dec_momentum`, `dec_update_interval`, `dec_tol`, `dec_max_iters`"),
    ("Table 3: AE+K-means and DEC baselines", "the same network trained on reconstruction", "-",
     "`--set autoencoder=plain`: reconstruction only (mean squared error of the augmented input), as many Adam steps "
     "as ACAI's autoencoder takes in phase 1 (T1/2 when alternating; `--set plain_steps=iterations`: T1); "
     "AE + K-means with `phases=P1`, DEC with `phases=P1P3`"),
    ("§4.1.1: \"row normalization\"", "not defined", "the authors' loader: pixel / 255 only",
     "`input_norm=unit` = pixel / 255 (the data as loaded; augmentation needs image intensities); `--set "
     "input_norm=l2`: each sample scaled to unit norm (with `pixel_range=01`)"),
    ("§4.2.5: robustness (Eqs. 16-17)", "z-score, then Gaussian noise of std sigma_p", "-",
     "`--set noise_sigma=s` z-scores every feature (sigma_j = 0 -> 0) and adds N(0, s^2) once (a fixed noisy data "
     "set drawn from the seed); off by default"),
    ("§1.2.1, §4.1.2, Figs. 1, 15: geometry", "ID by TwoNN; LID = the number of principal components reaching 90 % "
     "of the variance (Fig. 1's caption)", "LID: 99.99 % of the variance of standardised codes, minus one",
     "ID: Ansuini et al.'s TwoNN estimator (drop r1 = 0 and r1 = r2, fit through the origin on 90 % of the "
     "points); LID at 90 %; the code's threshold and standardisation: `--set lid_threshold=0.9999 --set "
     "lid_standardize=true`; both averaged over the predicted clusters (k-means on the current codes); logged, "
     "never used in training"),
    ("values where the paper is silent", "silent", "batch 256, VarianceScaling(1/3, fan_in, uniform) initialisers "
     "for the autoencoder and the critic, k-means n_init 20, the critic's shape", "the code's; `--set batch_size`, "
     "`kmeans_n_init`"),
    ("alpha, beta", "Table 2 (FMNIST 0.6, 0.6)", "-", "Table 2; FMNIST's values for data sets the paper does not "
     "use (no tuning with labels); `--set alpha=... --set beta=...`"),
    ("model selection", "-", "picks checkpoints by ground-truth accuracy",
     "every result is the final iterate; labels are read by the evaluation logs only (not reproduced, no option)"),
    ("BreastMNIST classes", "Table 1: 3 classes (normal, benign, malignant)", "no MedMNIST loader",
     "the MedMNIST file's 2 (normal + benign vs malignant), K = 2; all splits (train + val + test: Table 1's sizes); "
     "no option"),
]

# (topic, note): facts behind the readings above, and how the module runs.
NOTES = [
    ("pixel range: the label-free evidence (issue 25)",
     "Fashion-MNIST, quick, seed 0, phase 1 alone: with [0, 1] pixels (the authors' loader, `pixel_range=01`) the "
     "codes collapse (participation ratio of their covariance 1.87, top-2 components 96 % of the variance) where "
     "the plain autoencoder at equal steps (3,000) has 4.21 / 64 %; with [-1, 1] they reach 4.22 / 62 %. The plain "
     "autoencoder gains from [-1, 1] too (4.95 / 58 % at 3,000 steps), so the adversarial term lowers the effective "
     "rank in every reading tried; [-1, 1] lowers it least (0.85 of the plain autoencoder's participation ratio on "
     "the same pixels; lambda_t 0.125: 0.74, phi folded 0.78, eta folded 0.63, both networks stepping together "
     "0.28, ACAI's settings together 0.81, [0, 1] 0.44). Chosen by these figures, not by accuracy "
     "(notebooks/rdc.ipynb, 'Phase-1 health by reading')."),
    ("health figures (label-free, ours)",
     "history['phase1']['health'], and ['phase2']['health'] when phase 2 runs: the codes' participation ratio, "
     "top-2 principal-component share and median per-dimension std, the reconstruction MSE of the clean data "
     "(common.health), and after phase 1 the critic's phi-regression error (mean over the last logged chunk) "
     "against the best constant predictor's, the variance of phi under its sampling distribution "
     "(common.health.uniform_variance: 1/12 for U[0, 1], 1/48 folded)."),
    ("inconsistencies in the paper",
     "§4.1.3's alpha grid {0.05..0.25} contains none of Table 2's alphas; §4.1.1 says FMNIST has 60,000 32x32 "
     "images (Table 1: 70,000; it has 70,000 28x28); Table 3's DDC-UCO F1-micro differs from its ACC although "
     "micro-F1 = ACC for single-label data; Table 8's PneumoniaMNIST P1&P2 (86.5) vs Table 4 (86.7)."),
    ("randomness, caching, resumption",
     "Batch order comes from NumPy generators keyed on (seed, phase, pass); phi, eta and augmentation from "
     "SeedGenerators inside the models, each phase with its own augmentation stream (`training.augmenter(seed, "
     "stream)`), so a cached phase 1 and a freshly trained one lead to the same phase 2. Finished phases 1 and 2 "
     "are cached under `cache_dir` (common.estimator: keyed by the settings that change their numbers, the data and "
     "common.golden.numerics_version, so a refactor that keeps the golden outputs keeps the caches; not by the "
     "logging intervals) and reused by the ablation runs. Every phase runs through common.checkpoint.resumable_fit "
     "(phase 1 as one model, AcaiStep, whose two Adams are one optimizer, RoleAdams); with `checkpoint_dir` an "
     "interrupted run resumes to the uninterrupted result. Phase 1 under fit is within the golden tolerance of the "
     "former train_on_batch loop, not bit-identical: fit traces the step with an unknown batch dimension and the "
     "weight gradient of the critic (applied twice in Eq. 2) is then summed in another order (on toy runs weights "
     "and chunk losses agree to ~1e-7 relative; labels identical)."),
    ("cost", "Measured on the 2-core CPU under load, 70,000 10-D codes: the in-graph search of one step (256 x "
     "70,000 scores + top_k) is ~140 ms, of the order of the autoencoder step itself; the exact k-NN of a full "
     "refresh (scikit-learn, brute force) is ~30 s. `refresh_every` trades refresh cost against freshness of tau."),
]

# ---------------------------------------------------------------------------------------------------------------
# Paper-reported numbers: ACC, F1 macro, F1 micro in % (Tables 3, 4, 5), as fractions; R-DC reports no NMI.
# Data copied from the paper, not ours. One row per line: the name, then the columns separated by "|"
# (common.tables.parse_table; method names contain spaces).
# OCR note: Table 3's DDC-UCO FMNIST F1-macro is printed "44,2" (= 44.2).
_T3 = """
# method       cifar10 ACC F1-macro F1-micro | fmnist ACC F1-macro F1-micro
FINCH          48.2 45.2 48.2 | 52.5 49.1 52.5
VADE           20.3 18.8 20.3 | 59.6 59.4 59.6
AE + K-means   52.7 51.4 52.7 | 53.2 50.7 53.2
DEC            51.4 49.9 51.4 | 51.9 50.0 51.9
IDEC           50.3 48.4 50.3 | 53.9 50.2 53.9
PSSC           23.3 22.0 23.3 | 56.6 54.9 56.6
CC             37.8 37.2 37.8 | 42.5 42.6 42.5
DDC-UCO        33.8 19.8 33.8 | 49.9 44.2 31.4
DynAE          56.9 55.6 56.9 | 59.5 58.8 59.4
R-DC           60.1 59.3 60.1 | 66.6 65.7 66.6
"""
_T4 = """
# method       vesselmnist3d ACC F1-macro F1-micro | pneumoniamnist ACC F1-macro F1-micro
FINCH          83.5 45.5 83.5 | 51.8 37.0 51.8
VADE           84.6 46.6 84.6 | 71.8 68.9 71.8
AE + K-means   85.3 46.0 85.3 | 61.4 58.6 61.4
DEC            81.1 47.9 81.1 | 59.4 57.1 59.4
IDEC           81.8 46.8 81.8 | 66.7 66.1 66.7
PSSC           72.4 44.5 72.4 | 81.1 77.7 81.1
CC             88.7 47.0 88.7 | 53.4 52.8 53.4
DDC-UCO        57.4 40.2 57.4 | 74.4 69.6 74.4
DynAE          86.2 46.2 86.2 | 62.1 58.8 62.1
R-DC           88.2 46.9 88.2 | 86.7 83.4 86.7
"""
_T5 = """
# method       breastmnist ACC F1-macro F1-micro | bloodmnist ACC F1-macro F1-micro
FINCH          60.6 46.2 60.6 | 40.2 38.5 40.2
VADE           53.9 52.9 53.9 | 40.6 35.5 40.6
AE + K-means   59.5 56.4 59.5 | 44.6 42.1 44.6
DEC            55.5 53.6 55.5 | 42.2 40.3 42.2
IDEC           59.8 56.8 59.8 | 44.9 42.3 44.9
PSSC           68.0 63.6 68.0 | 43.2 41.7 43.2
CC             57.1 41.6 57.1 | 43.4 42.5 43.4
DDC-UCO        60.2 58.6 60.2 | 45.6 35.9 26.4
DynAE          63.8 60.3 63.8 | 46.3 43.4 46.3
R-DC           66.7 62.8 66.7 | 59.1 55.6 59.1
"""
# Table 8 (ablation), one data set per row; each cell ACC F1-macro F1-micro.
_T8 = """
# dataset        P1             | P1&P2          | P1&P3          | P1&P2&P3
fmnist           55.6 53.2 55.6 | 66.6 65.7 66.6 | 58.8 58.1 58.8 | 63.8 62.3 63.8
pneumoniamnist   82.9 79.9 82.9 | 86.5 83.7 86.5 | 63.3 62.3 63.3 | 83.2 79.1 83.2
bloodmnist       47.2 47.7 47.2 | 59.1 55.6 59.1 | 48.2 49.5 48.2 | 48.3 49.5 48.3
breastmnist      64.2 60.9 64.2 | 66.7 62.8 66.7 | 53.1 44.0 53.1 | 58.2 57.8 58.2
"""
# Table 6: seconds for 1,000 iterations on a Tesla T4 (not comparable with other hardware).
_T6 = """
# method       fmnist | vesselmnist3d | pneumoniamnist
FINCH          26   | 2   | 2
VaDE           365  | 152 | 181
AE+K-means     108  | 28  | 118
DEC            107  | 57  | 50
IDEC           120  | 30  | 55
PSSC           1530 | 489 | 1587
CC             611  | 47  | 231
DDC-UCO        3990 | 45  | 385
DynAE          459  | 167 | 144
R-DC           425  | 237 | 199
"""

_F1 = dict(metrics=("acc", "f1_macro", "f1_micro"), percent=True, digits=4, absent=("nmi",))


def _table8(text):
    """Table 8 transposed: {phase combination: {dataset: {...}}}."""
    out = {}
    for dataset, row in parse_table(text, ("P1", "P1&P2", "P1&P3", "P1&P2&P3"), **_F1).items():
        for phase, cell in row.items():
            out.setdefault(phase, {})[dataset] = cell
    return out


METHOD = "R-DC"
NMI_KEY = "nmi"
METRICS = ("acc", "f1_macro", "f1_micro", "nmi")  # the paper reports ACC and F1 (after the Hungarian mapping)
PAPER_RESULTS = results.merge_tables(parse_table(_T3, ("cifar10", "fmnist"), **_F1),
                                     parse_table(_T4, ("vesselmnist3d", "pneumoniamnist"), **_F1),
                                     parse_table(_T5, ("breastmnist", "bloodmnist"), **_F1), _table8(_T8))
PAPER_TIMES = {m: {ds: v["s"] for ds, v in row.items()}
               for m, row in parse_table(_T6, ("fmnist", "vesselmnist3d", "pneumoniamnist"), ("s",)).items()}
DATASETS = ("fmnist",)                # the only R-DC data set available offline
DOWNLOAD_DATASETS = ("pneumoniamnist", "breastmnist", "bloodmnist")  # Tables 3-5, 8: MedMNIST files, need a download
EXTRA_DATASETS = ("mnist", "usps") + DOWNLOAD_DATASETS  # runnable, not in 'all' (mnist, usps: not in the paper)
TABLE2 = {"pneumoniamnist": (0.8, 1.0), "breastmnist": (0.6, 0.7), "bloodmnist": (0.5, 0.6),
          "vesselmnist3d": (0.3, 0.5), "cifar10": (0.6, 0.6), "fmnist": (0.6, 0.6)}  # (alpha, beta), Table 2
PHASES = ("P1", "P1P2", "P1P3", "P1P2P3")
_PHASE_NAMES = {"P1": "P1", "P1P2": "R-DC", "P1P3": "P1&P3", "P1P2P3": "P1&P2&P3"}


def method_of(config):
    """The paper's row a run reproduces: Table 3 (R-DC, AE + K-means, DEC) or Table 8 (P1, P1&P3, P1&P2&P3)."""
    phases = config["phases"]
    if config.get("autoencoder", "acai") == "plain":
        return {"P1": "AE + K-means", "P1P3": "DEC"}.get(phases, f"plain AE {phases}")
    return _PHASE_NAMES[phases]


# ---------------------------------------------------------------------------------------------------------------
# §4.1.3: MLP autoencoder d-500-500-2000-10-2000-500-500-d, ReLU except the code and the output (linear);
# VarianceScaling(1/3, fan_in, uniform) initialisers (code). Images are flattened by the encoder and reshaped
# back by the decoder, so augmentation works on (H, W, C) images. Layers are named (as the cached weights were).
def _init():
    return keras.initializers.VarianceScaling(1.0 / 3.0, mode="fan_in", distribution="uniform")


_AE_NAMES = {"input": "enc_input", "flatten": "enc_flatten", "encoder": "enc_dense{n}", "code": "enc_code",
             "decoder_input": "dec_input", "decoder": "dec_dense{n}", "output": "dec_output", "reshape": "dec_reshape"}


def build_autoencoder(input_shape, embedding_dim=10, hidden=(500, 500, 2000)):
    """(encoder, decoder) Keras models: d-500-500-2000-e with ReLU, linear code and output (common.nets)."""
    return nets.mlp_autoencoder(input_shape, embedding_dim, hidden, initializer=_init, names=_AE_NAMES)


class MeanOutput(layers.Layer):
    """The mean over the last axis (ACAI's critic: the mean of its 10 outputs), (B, 10) -> (B,)."""

    def call(self, h):
        return ops.mean(h, axis=-1)


# Critic c_{omega_c} of Eqs. (1)-(2) (paper silent; code / ACAI): the encoder's MLP shape, outputs averaged.
def build_critic(input_shape, hidden=(500, 500, 2000), out_dim=10):
    """Critic model: image -> scalar per sample."""
    x_in = keras.Input(tuple(int(s) for s in input_shape), name="critic_input")
    h = layers.Flatten(name="critic_flatten")(x_in)
    for i, units in enumerate(hidden):
        h = layers.Dense(units, activation="relu", kernel_initializer=_init(), name=f"critic_dense{i + 1}")(h)
    h = layers.Dense(out_dim, kernel_initializer=_init(), name="critic_out")(h)
    return keras.Model(x_in, MeanOutput(name="critic_mean")(h), name="critic")


def apply_frozen(model, x):
    """``model(x)`` for a Flatten/Dense/weightless-layer MLP with every weight under stop_gradient: the gradient
    reaches the input but no weight of ``model`` (the critic as a constant in Eq. 1)."""
    h = x
    for layer in model.layers:
        if isinstance(layer, layers.InputLayer):
            continue
        if isinstance(layer, layers.Dense):
            h = ops.matmul(h, ops.stop_gradient(layer.kernel))
            if layer.use_bias:
                h = h + ops.stop_gradient(layer.bias)
            h = layer.activation(h)
        elif isinstance(layer, layers.Flatten):
            h = ops.reshape(h, (ops.shape(h)[0], -1))
        elif not layer.weights:
            h = layer(h)
        else:
            raise TypeError(f"apply_frozen: unsupported layer with weights {layer.name!r}")
    return h


# ---------------------------------------------------------------------------------------------------------------
# Phase 1 (§3.1). Eq. (1): z_phi = phi f(x_1) + (1 - phi) f(x_2), x_1 = the batch, x_2 = the batch reversed.
def interpolate(z, phi):
    """z_phi (B, p) from codes z (B, p) and per-sample coefficients phi (B,)."""
    phi = ops.expand_dims(ops.cast(phi, z.dtype), -1)
    return phi * z + (1.0 - phi) * ops.flip(z, axis=0)


def _flat(x):
    return ops.reshape(x, (ops.shape(x)[0], -1))


# Eq. (1): L_ae = ||x - x_hat||^2 + lambda_t ||c(x_hat_phi)||^2 (ACAI's reduction: means over pixels and batch).
def ae_loss(x, x_hat, c_phi, lambda_t, parts=False):
    """Autoencoder loss given the critic's outputs c_phi (B,) on the decoded interpolants."""
    rec = ops.mean(ops.square(_flat(x) - _flat(x_hat)))
    adv = ops.mean(ops.square(c_phi))
    total = rec + lambda_t * adv
    return (total, rec, adv) if parts else total


# Eq. (2): the mixture of real data and reconstructions that the critic must score 0.
def mix_real(x, x_hat, eta):
    return eta * x + (1.0 - eta) * x_hat


# Eq. (2): L_critic = ||c(x_hat_phi) - phi||^2 + ||c(eta x + (1 - eta) x_hat)||^2 (batch means).
def critic_loss(c_phi, phi, c_mix, parts=False):
    """Critic loss from its outputs on interpolants (c_phi, regressing phi) and on real mixtures (c_mix)."""
    reg = ops.mean(ops.square(c_phi - ops.cast(phi, c_phi.dtype)))
    real = ops.mean(ops.square(c_mix))
    return (reg + real, reg, real) if parts else reg + real


# ACAI's fold of a coefficient drawn on [0, 1] to [0, 0.5]: v -> 0.5 - |v - 0.5| (v > 0.5 becomes 1 - v).
def fold(v):
    return 0.5 - ops.abs(v - 0.5)


_ROLE_LOGS = {"ae": ("rec", "adv"), "critic": ("critic_phi", "critic_mix", "phi_var"),
              "both": ("rec", "adv", "critic_phi", "critic_mix", "phi_var"), "plain": ("rec",)}


class RoleAdams(keras.optimizers.Optimizer):
    """Phase 1's optimisers as one Keras optimizer: an Adam per role (Algorithm 1 lines 5 and 8: each network its
    own Adam, its own step counter), each built over all the model's weights; ``apply`` steps the Adam of ``role``
    (set by AcaiStep before each step). ``variables`` holds every Adam's, so a checkpoint saves them all."""

    def __init__(self, roles, learning_rate, **kwargs):
        super().__init__(learning_rate=learning_rate, name="role_adams", **kwargs)
        self.adams = {r: keras.optimizers.Adam(learning_rate, name=f"adam_{r}") for r in dict.fromkeys(roles)}
        self.role = next(iter(self.adams))

    def build(self, variables):
        super().build(variables)
        for adam in self.adams.values():
            adam.build(variables)

    @property
    def variables(self):
        return super().variables + [v for adam in self.adams.values() for v in adam.variables]

    def apply(self, grads, trainable_variables=None):
        self.adams[self.role].apply(grads, trainable_variables)


class AcaiStep(keras.Model):
    """Phase 1 (Algorithm 1, lines 2-10) as one model: iteration i takes one optimiser step for role
    ``roles[i % len(roles)]`` (one role, or a schedule such as ("critic", "ae")):
    "ae" (Eq. 1, w.r.t. encoder and decoder; critic frozen), "critic" (Eq. 2, w.r.t. the critic; every autoencoder
    output a constant), "both" (Eq. 1 + Eq. 2 in one step: ACAI's simultaneous update), "plain" (reconstruction
    only: the AE+K-means baseline). Each role draws phi and eta from its own SeedGenerator (``seed``: one per role,
    or an int for one role); augmentation from its layer; compiled with RoleAdams, each role steps its own Adam.

    Keras's own train_step runs the step (compute_loss below), traced once per role: the role is fixed when a step
    is traced, and the train function picks the role's traced step from the iteration count (the Adams' step
    counters, so a restored checkpoint resumes the schedule). Variables that a role's loss does not reach get no
    gradient (TensorFlow: None, filtered by the optimizer; JAX: zeros, whose Adam update is exactly 0), so they never
    move in that role's step."""

    def __init__(self, encoder, decoder, critic, augment, roles, cfg, seed, **kwargs):
        super().__init__(**kwargs)
        roles = (roles,) if isinstance(roles, str) else tuple(roles)
        seeds = (seed,) * len(roles) if np.ndim(seed) == 0 else tuple(seed)
        if not roles or len(set(roles)) != len(roles) or len(seeds) != len(roles) \
                or any(r not in _ROLE_LOGS for r in roles):
            raise ValueError(f"roles must be distinct of ae, critic, both, plain (one seed each), got {roles!r}")
        self.encoder, self.decoder, self.critic, self.augment = encoder, decoder, critic, augment
        self.roles, self.role, self.lambda_t = roles, roles[0], cfg.lambda_t
        self.phi_max, self.eta_max, self.phi_fold, self.eta_fold = cfg.phi_max, cfg.eta_max, cfg.phi_fold, cfg.eta_fold
        self.noises = {r: keras.random.SeedGenerator(s) for r, s in zip(roles, seeds)}
        self.trackers = {k: keras.metrics.Mean(name=k) for k in
                         [f"loss_{r}" for r in roles] + ["rec", "adv", "critic_phi", "critic_mix", "phi_var"]}
        self._turn = None

    def _take(self, role):
        self.role = role
        if isinstance(self.optimizer, RoleAdams):
            self.optimizer.role = role

    def make_train_function(self, force=False):
        """With several roles: one traced step per role, and a train function that runs iteration i's."""
        self._turn = None  # read from the Adams' step counters at the first step of each fit / train_on_batch
        if len(self.roles) == 1 or (self.train_function is not None and not force):
            return super().make_train_function(force)
        if self.steps_per_execution != 1:
            raise ValueError("AcaiStep with several roles needs steps_per_execution=1")
        steps = {}
        for role in self.roles:
            super().make_train_function(force=True)
            steps[role] = self.train_function

        def train_function(*args):
            if self._turn is None:
                self._turn = sum(int(ops.convert_to_numpy(a.iterations)) for a in self.optimizer.adams.values())
            self._take(self.roles[self._turn % len(self.roles)])
            self._turn += 1
            return steps[self.role](*args)

        self.train_function = train_function
        return train_function

    def draw_phi(self, b):
        """phi (b,) ~ U[0, phi_max] per sample, folded to [0, 0.5] with ``phi_fold``."""
        phi = keras.random.uniform((b,), 0.0, self.phi_max, seed=self.noises[self.role])
        return fold(phi) if self.phi_fold else phi

    def draw_eta(self):
        """eta ~ U[0, eta_max], one per batch, folded to [0, 0.5] with ``eta_fold``."""
        eta = keras.random.uniform((), 0.0, self.eta_max, seed=self.noises[self.role])
        return fold(eta) if self.eta_fold else eta

    def call(self, x, training=False):
        x_in = self.augment(x, training=training) if self.augment is not None else x
        z = self.encoder(x_in, training=training)
        x_hat = self.decoder(z, training=training)
        return x_in, z, x_hat

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        x_in, z, x_hat = y_pred
        b = ops.shape(z)[0]
        w = ops.cast(b, "float32")  # trackers average over samples, as Keras's loss log
        if self.role == "plain":
            total = ops.mean(ops.square(_flat(x_in) - _flat(x_hat)))
            self.trackers["rec"].update_state(total, sample_weight=w)
            self.trackers["loss_plain"].update_state(total, sample_weight=w)
            return total
        phi = self.draw_phi(b)
        x_hat_phi = self.decoder(interpolate(z, phi), training=training)  # x_hat_phi = g(z_phi)
        total = 0.0
        if self.role in ("ae", "both"):                              # Eq. (1): critic weights constant
            c_phi = apply_frozen(self.critic, x_hat_phi)
            loss, rec, adv = ae_loss(x_in, x_hat, c_phi, self.lambda_t, parts=True)
            self.trackers["rec"].update_state(rec, sample_weight=w)
            self.trackers["adv"].update_state(adv, sample_weight=w)
            total = total + loss
        if self.role in ("critic", "both"):                          # Eq. (2): autoencoder outputs constant
            eta = self.draw_eta()
            c_phi = self.critic(ops.stop_gradient(x_hat_phi), training=training)
            c_mix = self.critic(ops.stop_gradient(mix_real(x_in, x_hat, eta)), training=training)
            loss, reg, real = critic_loss(c_phi, phi, c_mix, parts=True)
            self.trackers["critic_phi"].update_state(reg, sample_weight=w)      # liveness: compare with phi_var,
            self.trackers["critic_mix"].update_state(real, sample_weight=w)
            self.trackers["phi_var"].update_state(ops.var(phi), sample_weight=w)  # the best constant's error
            total = total + loss
        self.trackers[f"loss_{self.role}"].update_state(total, sample_weight=w)
        return total


# ---------------------------------------------------------------------------------------------------------------
# Phase 2 (§3.2-3.5). Eq. (3): d_im = ||z_i - NN(z_i, m)||, the M nearest *other* codes (self excluded by index).
def _drop_self(ind, own):
    """Column positions (B, M) selecting, from M+1 candidates ``ind`` (sorted by distance), all but the point's
    own index ``own`` (or, when it is not among them, all but the last)."""
    m1 = ind.shape[-1]
    is_self = ops.cast(ops.equal(ind, ops.expand_dims(ops.cast(own, ind.dtype), -1)), "int32")
    present = ops.max(is_self, axis=-1)
    s = ops.where(present > 0, ops.argmax(is_self, axis=-1), m1 - 1)           # position to remove
    j = ops.expand_dims(ops.arange(m1 - 1, dtype="int32"), 0)
    return j + ops.cast(j >= ops.expand_dims(ops.cast(s, "int32"), -1), "int32")


def neighbour_search(z, bank, idx, n_neighbors):
    """Eq. (3) in the graph: (d (B, M) ascending, nn (B, M) bank rows) of the M nearest bank codes of each z
    (B, p), the query's own row ``idx`` excluded by index. Distances are recomputed exactly from the rows found."""
    # ranking score -(||z - b||^2 - ||z||^2) = 2 z.b - ||b||^2 (the per-row ||z||^2 does not change the order)
    score = 2.0 * ops.matmul(z, ops.transpose(bank)) - ops.expand_dims(ops.sum(ops.square(bank), axis=-1), 0)
    _, cand = ops.top_k(score, n_neighbors + 1, sorted=True)
    nn = ops.take_along_axis(cand, _drop_self(cand, idx), axis=-1)
    diff = ops.expand_dims(z, 1) - ops.take(bank, nn, axis=0)
    d = ops.sqrt(ops.sum(ops.square(diff), axis=-1))
    order = ops.argsort(d, axis=-1)                                # exact order after the float32 search
    return ops.take_along_axis(d, order, axis=-1), ops.take_along_axis(nn, order, axis=-1)


def knn_exact(z, n_neighbors):
    """Eq. (3) over all N (outside the graph): (d (N, M), nn (N, M)) by scikit-learn, self removed by index.
    Brute force: on 10-D codes it is 2.5x faster than scikit-learn's KD-tree (70,000 codes: ~30 s on 2 busy cores)."""
    z = np.asarray(z, np.float64)
    k = min(n_neighbors + 1, len(z))
    _, ind = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(z).kneighbors(z)
    d = np.sqrt(np.sum(np.square(z[:, None, :] - z[ind]), axis=-1))  # exact (duplicates at 0, not ~1e-8)
    order = np.argsort(d, axis=1, kind="stable")
    d, ind = np.take_along_axis(d, order, 1), np.take_along_axis(ind, order, 1)
    keep = ops.convert_to_numpy(_drop_self(ops.convert_to_tensor(ind.astype(np.int32)),
                                           ops.convert_to_tensor(np.arange(len(z), dtype=np.int32))))
    return np.take_along_axis(d, keep, 1), np.take_along_axis(ind, keep, 1)


# Eq. (4): r_i = min_m d_im / max_m d_im (1 when all are 0). Eq. (5): Omega = {i : r_i >= alpha}.
def core_ratio(d):
    d = ops.convert_to_tensor(d)
    lo, hi = ops.min(d, axis=-1), ops.max(d, axis=-1)
    return ops.where(hi > 0, lo / ops.where(hi > 0, hi, 1.0), 1.0)


def core_mask(d, alpha):
    """Boolean (N,): core points (Eqs. 4-5). Eq. (6), S = their codes, is ``z[core]``."""
    return core_ratio(d) >= alpha


# Eq. (7): d_bar_i = min_m d_im. Eq. (8): h_im = d_im - d_bar_i. Eq. (9): Omega_nn^i = {m : h_im <= beta}.
def reliable_mask(d, beta):
    """Boolean (N, M): the reliable neighbours of each point (the nearest always qualifies)."""
    d = ops.convert_to_tensor(d)
    h = d - ops.min(d, axis=-1, keepdims=True)
    return h <= beta


# Eq. (10): S_nn^i = {NN(z_i, m) : m in Omega_nn^i}. Eq. (11): sigma(x_i) = mean of S_nn^i (the point excluded).
def neighbour_centroids(nn_codes, reliable):
    """sigma (N, p) from the neighbours' codes (N, M, p) and the reliable mask (N, M)."""
    w = ops.expand_dims(ops.cast(reliable, nn_codes.dtype), -1)
    return ops.sum(w * nn_codes, axis=1) / ops.maximum(ops.sum(w, axis=1), 1.0)


# Eq. (12): L1 = sum_i ||x_i - x_hat_i||^2 (border) or ||g(sigma(x_i)) - x_hat_i||^2 (core).
# Eq. (13): L2 = sum_{i in Omega} ||f(x_i) - sigma(x_i)||^2.   Eq. (14): L = L1 + L2.
def proximity_losses(x, x_hat, g_sigma, z, sigma, core, form="sum"):
    """(L1, L2) for a batch: inputs x (B, ...), reconstructions x_hat, decoded centroids g_sigma, codes z (B, p),
    centroids sigma (B, p), core mask (B,). Targets (g_sigma, sigma, x) are constants. ``form``: "sum"
    (per-sample sums, batch mean) or "code" (means over dimensions, L1 x 100)."""
    c = ops.cast(core, z.dtype)
    target = ops.where(ops.expand_dims(core, -1), ops.stop_gradient(_flat(g_sigma)), ops.stop_gradient(_flat(x)))
    pix = ops.square(target - _flat(x_hat))
    lat = ops.expand_dims(c, -1) * ops.square(z - ops.stop_gradient(sigma))
    if form == "sum":
        return ops.mean(ops.sum(pix, axis=-1)), ops.mean(ops.sum(lat, axis=-1))
    if form == "code":
        return 100.0 * ops.mean(pix), ops.mean(lat)
    raise ValueError(f"loss_form must be 'sum' or 'code', got {form!r}")


# Eq. (15): tau = |S| / |X|.
def tau(core):
    return float(np.mean(np.asarray(core, dtype=np.float64)))


def should_stop(taus, rule="no_increase", patience=0):
    """The stopping rule after the latest full refresh, given tau at every refresh so far (tau_0 first):
    "no_increase" stops at the first t >= 1 with tau_t <= tau_{t-1} (§3.5); "unchanged" when tau_t == tau_{t-1}
    (Algorithm 1 line 13); "none" never. ``patience`` k > 0 (a departure, "no_increase" only): stop once the
    last k + 1 refreshes all failed to exceed the best tau before them (k = 0 is the rule above)."""
    if rule not in ("no_increase", "unchanged", "none"):
        raise ValueError(f"stop_rule must be no_increase, unchanged or none, got {rule!r}")
    if patience and rule != "no_increase":
        raise ValueError(f"tau_patience applies to stop_rule='no_increase' only, got {rule!r}")
    if rule == "none" or len(taus) < 2:
        return False
    if patience:
        best = int(np.argmax(taus))  # the first refresh that reached the best tau: the last increase
        return len(taus) - 1 - best > patience
    return taus[-1] <= taus[-2] if rule == "no_increase" else taus[-1] == taus[-2]


class ProximityNet(keras.Model):
    """Algorithm 1, lines 13-26, one step per batch (x, idx): the batch's clean codes are written into the code
    bank B (N, p); Eqs. (3)-(11) from B; Eqs. (12)-(14) on the augmented batch; Adam w.r.t. encoder and decoder."""

    def __init__(self, encoder, decoder, augment, n, cfg, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.decoder, self.augment, self.cfg = encoder, decoder, augment, cfg
        dim = int(encoder.output.shape[-1])
        self.bank = self.add_weight(shape=(n, dim), initializer="zeros", trainable=False, name="bank")
        self.trackers = {k: keras.metrics.Mean(name=k) for k in ("l1", "l2", "core", "reliable")}

    def call(self, inputs, training=False):
        x, idx = inputs
        idx = ops.cast(idx, "int32")
        z_c = ops.stop_gradient(self.encoder(x, training=False))         # line 14: Z <- f(X), clean
        if training:
            self.bank.assign(ops.scatter_update(self.bank, ops.expand_dims(idx, -1), z_c))
        x_in = self.augment(x, training=training) if self.augment is not None else x
        z = self.encoder(x_in, training=training)
        return x_in, z, self.decoder(z, training=training), z_c, idx

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        cfg = self.cfg
        x_in, z, x_hat, z_c, idx = y_pred
        d, nn = neighbour_search(z_c, ops.convert_to_tensor(self.bank), idx, cfg.n_neighbors)  # Eq. (3)
        core = core_mask(d, cfg.alpha)                                                     # Eqs. (4)-(6)
        reliable = reliable_mask(d, cfg.beta)                                              # Eqs. (7)-(9)
        sigma = neighbour_centroids(ops.take(self.bank, nn, axis=0), reliable)             # Eqs. (10)-(11)
        g_sigma = ops.stop_gradient(self.decoder(sigma, training=False))                   # decoded centroid
        l1, l2 = proximity_losses(x_in, x_hat, g_sigma, z, sigma, core, cfg.loss_form)     # Eqs. (12)-(13)
        w = ops.cast(ops.shape(z)[0], "float32")  # trackers average over samples, as Keras's loss log
        self.trackers["l1"].update_state(l1, sample_weight=w)
        self.trackers["l2"].update_state(l2, sample_weight=w)
        self.trackers["core"].update_state(ops.mean(ops.cast(core, "float32")), sample_weight=w)
        self.trackers["reliable"].update_state(ops.mean(ops.sum(ops.cast(reliable, "float32"), axis=-1)),
                                               sample_weight=w)
        return l1 + l2                                                                      # Eq. (14)


# ---------------------------------------------------------------------------------------------------------------
# Phase 3 (ablation, §4.2.3): DEC. q_ij = (1 + ||z_i - mu_j||^2)^-1 / sum_j' (...); p_ij = (q_ij^2 / f_j) /
# sum_j' (q_ij'^2 / f_j'), f_j = sum_i q_ij; loss KL(p || q).
def dec_q(z, centers):
    d2 = ops.sum(ops.square(ops.expand_dims(z, 1) - ops.expand_dims(centers, 0)), axis=-1)
    k = 1.0 / (1.0 + d2)
    return k / ops.sum(k, axis=1, keepdims=True)


def dec_target(q):
    q = np.asarray(q, np.float64)
    w = q ** 2 / q.sum(0)
    return w / w.sum(1, keepdims=True)


def dec_loss(p, q):
    """KL(p || q) = sum_j p log(p / q), batch mean (Keras's KLDivergence)."""
    p = ops.clip(ops.convert_to_tensor(p), 1e-7, 1.0)
    q = ops.clip(q, 1e-7, 1.0)
    return ops.mean(ops.sum(p * ops.log(p / q), axis=-1))


class DecNet(keras.Model):
    """DEC on the encoder: inputs (x, idx), targets p of all N samples in a non-trainable variable."""

    def __init__(self, encoder, centers, n, augment, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.augment = encoder, augment
        self.centers = self.add_weight(shape=centers.shape, initializer=keras.initializers.Constant(centers),
                                       name="centers")
        self.targets = self.add_weight(shape=(n, centers.shape[0]), initializer="zeros", trainable=False,
                                       name="targets")

    def call(self, inputs, training=False):
        x, idx = inputs
        x = self.augment(x, training=training) if self.augment is not None else x
        return dec_q(self.encoder(x, training=training), self.centers), ops.cast(idx, "int32")

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        q, idx = y_pred
        return dec_loss(ops.take(self.targets, idx, axis=0), q)


# ---------------------------------------------------------------------------------------------------------------
# Geometry (§1.2.1, §4.1.2): ID by TwoNN (Facco et al.; Ansuini et al.'s estimator), LID by PCA, per cluster.
def twonn(z, fraction=0.9):
    """Intrinsic dimension: mu = r2 / r1 (first two neighbours, self excluded by index), points with r1 = 0 or
    r1 = r2 dropped; slope through the origin of -log(1 - F_emp) against log mu, without the last two points,
    on the first floor(fraction * N) points. NaN with fewer than 3 usable points."""
    z = np.asarray(z, np.float64)
    if len(z) < 4:
        return float("nan")
    d, _ = knn_exact(z, 2)
    r1, r2 = d[:, 0], d[:, 1]
    good = (r1 > 0) & (r1 != r2)
    n = int(good.sum())
    if n < 3:
        return float("nan")
    mu = np.sort(r2[good] / r1[good])
    f_emp = np.arange(1, n + 1, dtype=np.float64) / n
    x, y = np.log(mu[:-2]), -np.log(1.0 - f_emp[:-2])
    m = int(np.floor(n * fraction))
    x, y = x[:m], y[:m]
    return float(np.sum(x * y) / np.sum(x * x))


def pca_dim(z, threshold=0.9, standardize=False):
    """Linear dimension: the smallest number of principal components whose cumulative explained variance
    reaches ``threshold`` (to 1e-12)."""
    z = np.asarray(z, np.float64)
    z = z - z.mean(0)
    if standardize:
        s = z.std(0)
        z = z / np.where(s > 0, s, 1.0)
    ev = np.clip(np.linalg.eigvalsh(np.cov(z, rowvar=False).reshape(z.shape[1], z.shape[1]))[::-1], 0, None)
    if ev.sum() <= 0:
        return 0
    ratio = np.cumsum(ev) / ev.sum()
    return int(np.searchsorted(ratio, threshold - 1e-12) + 1)


def cluster_geometry(z, labels, threshold=0.9, standardize=False, min_size=10):
    """(mean ID, mean LID) over the groups of ``labels`` with at least ``min_size`` points."""
    ids, lids = [], []
    for c in np.unique(labels):
        zc = z[labels == c]
        if len(zc) >= min_size:
            ids.append(twonn(zc))
            lids.append(pca_dim(zc, threshold, standardize))
    ids = [v for v in ids if np.isfinite(v)]
    return (float(np.mean(ids)) if ids else float("nan")), (float(np.mean(lids)) if lids else float("nan"))


def neighbour_purity(nn, reliable, core, y):
    """Fig. 14 (evaluation only): the share of neighbours of core points with the core point's label, over all M
    neighbours and over the reliable ones only (pooled over core points). (nan, nan) without core points."""
    nn, reliable, core, y = np.asarray(nn), np.asarray(reliable, bool), np.asarray(core, bool), np.asarray(y)
    same = y[nn[core]] == y[core][:, None]
    rel = reliable[core]
    if not core.any():
        return float("nan"), float("nan")
    return float(same.mean()), float(same[rel].sum() / max(rel.sum(), 1))


# §4.2.5: Eq. (16) x_norm_ij = (x_ij - mu_j) / sigma_j; Eq. (17) X_noisy = X_norm + N(0, sigma_p^2).
def robust_noise(x, sigma_p, seed=0):
    """z-score every feature (sigma_j = 0 -> 0) and add Gaussian noise of std sigma_p; shape kept, float32."""
    flat = np.asarray(x, np.float64).reshape(len(x), -1)
    mu, sd = flat.mean(0), flat.std(0)
    norm = np.where(sd > 0, (flat - mu) / np.where(sd > 0, sd, 1.0), 0.0)
    noisy = norm + np.random.default_rng([int(seed), 17]).normal(0.0, sigma_p, size=norm.shape)
    return noisy.reshape(np.shape(x)).astype(np.float32)


def normalise_input(x, mode="unit"):
    """§4.1.1: "unit" = the [0, 1] pixels as loaded (pixel / 255); "l2" = each sample scaled to unit L2 norm."""
    if mode == "unit":
        return np.asarray(x, np.float32)
    if mode == "l2":
        n = np.sqrt(np.sum(np.square(np.asarray(x, np.float64).reshape(len(x), -1)), axis=1))
        return (x / np.where(n > 0, n, 1.0).reshape((-1,) + (1,) * (np.ndim(x) - 1))).astype(np.float32)
    raise ValueError(f"input_norm must be 'unit' or 'l2', got {mode!r}")


def to_pixel_range(x, mode="01"):
    """Pixel range: "01" leaves x as loaded ([0, 1] pixels); "pm1" gives 2 x - 1, ACAI's [-1, 1] range."""
    if mode == "01":
        return x
    if mode == "pm1":
        return (2.0 * np.asarray(x, np.float32) - 1.0).astype(np.float32)
    raise ValueError(f"pixel_range must be '01' or 'pm1', got {mode!r}")


def prepare_input(x, cfg):
    """New data as ``fit`` feeds it to the networks (row normalisation, pixel range; not the Eq. 16-17 noise)."""
    return to_pixel_range(normalise_input(x, cfg.input_norm), cfg.pixel_range)


# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Config:
    """Settings (§4.1.3 and Table 2; the authors' code where the paper is silent). Profiles change only budgets."""
    phases: str = "P1P2"            # Table 8 columns: P1 | P1P2 (R-DC) | P1P3 | P1P2P3
    autoencoder: str = "acai"       # acai (§3.1, Eqs. 1-2) | plain (AE+K-means / DEC baselines, §4.1.1)
    embedding_dim: int = 10         # §4.1.3: d-500-500-2000-10
    batch_size: int = 256           # code (paper silent)
    learning_rate: float = 1e-3     # §4.1.3: Adam 0.001 for every network in both phases
    augment: bool = True            # §4.1.3: shift 0.1, rotation 10 degrees (also for AE+K-means and DEC)
    input_norm: str = "unit"        # §4.1.1 "row normalization": unit (pixel/255, authors' loader) | l2
    noise_sigma: float = None       # §4.2.5, Eqs. 16-17 (Fig. 20): None = off; else z-score + N(0, sigma^2)
    pixel_range: str = "pm1"        # pm1 (ACAI's [-1, 1], 2 x - 1, every phase; label-free) | 01 (authors' loader)
    pretrain_iters: int = 10000     # T1 (§4.1.3); alternate: T1/2 autoencoder + T1/2 critic steps
    acai_schedule: str = "alternate"  # Algorithm 1 (alternate) | simultaneous (ACAI, the code)
    plain_steps: str = "acai"       # autoencoder=plain: as many AE steps as ACAI's phase 1 (acai) | T1 (iterations)
    lambda_t: float = 0.5           # not given: ACAI's default, DynAE's driver
    phi_max: float = 1.0            # §3.1: phi in [0, 1] (ACAI: 0.5)
    eta_max: float = 1.0            # §3.1: eta in [0, 1] (code: 0.5)
    phi_fold: bool = False          # ACAI: phi -> 0.5 - |phi - 0.5| (phi in [0, 0.5])
    eta_fold: bool = False          # the authors' file: eta -> 0.5 - |eta - 0.5|
    n_neighbors: int = 5            # M (§4.1.3), the point itself excluded (code: 5 including itself = 4)
    alpha: float = None             # Table 2; None: the data set's value (FMNIST's for other data)
    beta: float = None              # Table 2; as alpha
    refresh_every: int = 0          # full refresh of the code bank (steps): 0 = one pass, 1 = paper-literal
    stop_rule: str = "no_increase"  # §3.5 | unchanged (Algorithm 1 literal) | none
    tau_patience: int = 0           # no_increase: refreshes without a new best tau tolerated (0 = §3.5's rule)
    max_iters: int = 100000         # phase-2 cap (code's maxiter; the paper gives none)
    loss_form: str = "sum"          # sum (Eqs. 12-14 as written) | code (100 x pixel MSE + latent MSE)
    dec_learning_rate: float = 0.01  # phase 3 (ablation; DEC-keras defaults, the paper gives none)
    dec_momentum: float = 0.9
    dec_update_interval: int = 140
    dec_tol: float = 0.001
    dec_max_iters: int = 20000
    kmeans_n_init: int = 20         # code
    log_every: int = 1000           # phase-1 iterations per logged chunk (losses, geometry, evaluation log)
    eval_every: int = 1             # full refreshes between phase-2 evaluation-log entries (labels: log only)
    geometry_every: int = 1         # full refreshes (phase 1: chunks) between ID/LID entries
    lid_threshold: float = 0.9      # Fig. 1 caption (code: 0.9999)
    lid_standardize: bool = False   # code: True

    def __post_init__(self):
        choices = {"phases": PHASES, "autoencoder": ("acai", "plain"), "input_norm": ("unit", "l2"),
                   "pixel_range": ("01", "pm1"), "plain_steps": ("acai", "iterations"),
                   "acai_schedule": ("alternate", "simultaneous"), "stop_rule": ("no_increase", "unchanged", "none"),
                   "loss_form": ("sum", "code")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        if self.alpha is not None and not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {self.alpha}")
        if self.beta is not None and self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if self.n_neighbors < 2:
            raise ValueError(f"n_neighbors must be >= 2, got {self.n_neighbors}")
        if not 0.0 < self.phi_max <= 1.0 or not 0.0 <= self.eta_max <= 1.0:
            raise ValueError("need 0 < phi_max <= 1 and 0 <= eta_max <= 1")
        if self.noise_sigma is not None and self.noise_sigma < 0:
            raise ValueError(f"noise_sigma must be >= 0 (or None), got {self.noise_sigma}")
        if self.pixel_range == "pm1" and self.input_norm != "unit":
            raise ValueError("pixel_range='pm1' rescales [0, 1] pixels: input_norm='l2' needs pixel_range='01'")
        if self.tau_patience < 0:
            raise ValueError(f"tau_patience must be >= 0, got {self.tau_patience}")
        if self.tau_patience and self.stop_rule != "no_increase":
            raise ValueError(f"tau_patience applies to stop_rule='no_increase' only, got {self.stop_rule!r}")
        for key in ("batch_size", "log_every", "eval_every", "geometry_every", "dec_update_interval",
                    "embedding_dim"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("pretrain_iters", "max_iters", "dec_max_iters", "refresh_every"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)}")

    def resolve(self, dataset):
        """Fills alpha/beta from Table 2 for ``dataset`` (FMNIST's values for data sets not in it)."""
        a, b = TABLE2.get(dataset, TABLE2["fmnist"])
        self.alpha = float(a if self.alpha is None else self.alpha)
        self.beta = float(b if self.beta is None else self.beta)
        return self

    @property
    def phase1_iters(self):
        """Phase-1 iterations: T1 for ACAI; for the plain autoencoder (Table 3's AE + K-means and DEC) as many
        autoencoder steps as ACAI's phase 1 takes under ``acai_schedule`` (T1/2 when alternating; issue 25), or T1
        with ``plain_steps='iterations'``."""
        if self.autoencoder == "plain" and self.plain_steps == "acai" and self.acai_schedule == "alternate":
            return self.pretrain_iters // 2
        return self.pretrain_iters

    def data_part(self):
        return {k: getattr(self, k) for k in ("input_norm", "noise_sigma", "pixel_range")}

    # Cache keys: every setting that changes a phase's numbers; not the logging intervals (log_every,
    # geometry_every, eval_every), which only change how often the logs are written.
    def phase1_part(self):
        keys = ("autoencoder", "embedding_dim", "batch_size", "learning_rate", "augment", "pretrain_iters")
        if self.autoencoder == "acai":
            keys += ("acai_schedule", "lambda_t", "phi_max", "eta_max", "phi_fold", "eta_fold")
        part = {**self.data_part(), **{k: getattr(self, k) for k in keys}}
        return part if self.autoencoder == "acai" else {**part, "phase1_iters": self.phase1_iters}

    def phase2_part(self):
        return {**self.phase1_part(), **{k: getattr(self, k) for k in (
            "n_neighbors", "alpha", "beta", "refresh_every", "stop_rule", "tau_patience", "max_iters", "loss_form",
            "lid_threshold", "lid_standardize")}}


PROFILES = {
    # smoke: CI check of every code path (a 300-image subset, a few steps), not a result.
    "smoke": {"subset_per_class": 30, "pretrain_iters": 20, "max_iters": 20, "dec_max_iters": 20, "log_every": 10},
    # quick: 6,000 phase-1 iterations and at most 3,000 phase-2 / DEC iterations (~15 min per seed on 2 cores).
    "quick": {"pretrain_iters": 6000, "max_iters": 3000, "dec_max_iters": 3000},
    "paper": {"pretrain_iters": 10000, "max_iters": 100000, "dec_max_iters": 20000},
}
# Config keys that change only how often the logs are written (chunk means, geometry, evaluation log), never a
# weight or a label: not a result's settings (common.golden.result_settings) nor in a cache key.
LOGGING_KEYS = ("log_every", "eval_every", "geometry_every")


# ---------------------------------------------------------------------------------------------------------------
# Training. Every phase runs in chunks whose randomness comes only from the seed: batch order from
# batch_indices (NumPy generators keyed on (seed, phase, pass)); phi, eta and augmentation from SeedGenerators
# inside the models (each phase its own augmentation stream, so a cached phase 1 and a trained one lead to the
# same phase 2). common.checkpoint saves every model/optimizer variable and the Python-side logs, so an
# interrupted phase resumes at its last chunk and reproduces the uninterrupted run.
def batch_indices(n, batch_size, seed, tag, start_step=0):
    """Endless index batches: pass k is np.random.default_rng([seed, tag, k]).permutation(n) cut into
    ceil(n / batch_size) batches (the last one partial); a pure function of (seed, tag, step)."""
    per_pass = -(-n // batch_size)
    step = int(start_step)
    while True:
        k, j = divmod(step, per_pass)
        order = np.random.default_rng([int(seed), int(tag), k]).permutation(n)
        yield np.sort(order[j * batch_size:(j + 1) * batch_size]).astype(np.int32)
        step += 1


def _batches(x, batch_size, seed, tag, start_step=0):
    for idx in batch_indices(len(x), batch_size, seed, tag, start_step):
        yield (x[idx],)


def _batches_with_index(x, batch_size, seed, tag, start_step=0):
    for idx in batch_indices(len(x), batch_size, seed, tag, start_step):
        yield ((x[idx], idx),)


def _kmeans(z, k, n_init, seed):
    """k-means (common.clustering) with OpenMP limited to one thread (spin-waits cost 30x on a busy 2-core CPU)."""
    return clustering.kmeans(z, k, n_init, seed, threads=1)


_LOG_KEYS = ("acc", "nmi", "ari", "f1_macro", "f1_micro", "nonempty_clusters")  # evaluation logs (labels: only here)


class _Phase1Chunks(keras.callbacks.Callback):
    """After every chunk of phase 1: RDC._phase1_chunk (logs of the chunk). Ends the last chunk at T1."""

    def __init__(self, owner, chunk):
        super().__init__()
        self.owner, self.chunk = owner, chunk

    def on_epoch_begin(self, epoch, logs=None):
        self._first, self._t = epoch * self.chunk, time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self._first + batch + 1 >= self.owner.cfg.phase1_iters:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        self.owner._phase1_chunk(epoch, logs or {}, time.perf_counter() - self._t)


class _Chunks(keras.callbacks.Callback):
    """After every chunk of phase 2 (3): training time and losses, then a full refresh (a DEC target update),
    which may stop training. The first refresh (update) runs when training begins, unless resumed."""

    def __init__(self, owner, phase, chunk):
        super().__init__()
        self.owner, self.phase, self.chunk = owner, phase, chunk

    def _state(self):
        return self.owner.p2 if self.phase == "phase2" else self.owner.p3

    def _event(self, step):
        return self.owner._refresh(step) if self.phase == "phase2" else self.owner._dec_update(step)

    def on_train_begin(self, logs=None):
        self.model  # noqa: B018 (syncs JAX state)
        if not self._state()["refreshes"]:
            self._event(0)

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        net = self.model
        step = (epoch + 1) * self.chunk
        entry = {"step": step, "seconds": time.perf_counter() - self._t}
        entry.update({k: float(v) for k, v in (logs or {}).items()})
        self._state()["chunks"].append(entry)
        if self._event(step):
            net.stop_training = True


class RDC(DeepClusterer):
    """Algorithm 1 (+ the ablation's phase 3). ``fit(x, y=None)``: y feeds the evaluation logs only.
    ``cache_dir``: finished phases 1 and 2 are cached there (common.estimator: keyed by their settings, the data
    and the code) and reused, e.g. by the Table 8 ablation. ``checkpoint_dir``: the run's checkpoints."""

    paper, config_class = "rdc", Config

    def __init__(self, n_clusters, config=None, seed=0, cache_dir=None, verbose=1, hidden=(500, 500, 2000),
                 checkpoint_dir=None):
        super().__init__(n_clusters, config, int(seed), cache_dir, verbose, checkpoint_dir)
        if self.cfg.alpha is None or self.cfg.beta is None:
            self.cfg.resolve("fmnist")
        self.hidden = tuple(hidden)
        self.snapshots = None  # set to [] to keep {"phase", "step", "z"} at every logged point (figures)
        self.phase1_net = None  # phase 1's AcaiStep, when phase 1 was trained (not cached)

    # --- Algorithm 1 ----------------------------------------------------------------------------------------
    def fit(self, x, y=None):
        """Algorithm 1 on x (images or vectors), then the ablation's phase 3; y feeds the evaluation logs only."""
        cfg = self.cfg
        if np.ndim(x) == 4:
            training.check_images(x)
        x = normalise_input(x, cfg.input_norm)
        if cfg.noise_sigma is None:
            x = to_pixel_range(x, cfg.pixel_range)
        else:  # Eqs. (16)-(17): the z-score takes the place of the pixel range (z(2 x - 1) = z(x))
            x = robust_noise(x, cfg.noise_sigma, self.seed)
        if not np.all(np.isfinite(x)) or len(x) <= max(cfg.n_neighbors, self.n_clusters):
            raise ValueError(f"x must hold more than max(n_neighbors, K) finite samples, got shape {np.shape(x)}")
        self.x, self.y, self.n = x, y, len(x)
        keras.utils.set_random_seed(self.seed)
        self.encoder, self.decoder = build_autoencoder(x.shape[1:], cfg.embedding_dim, self.hidden)
        self.critic = build_critic(x.shape[1:], self.hidden, cfg.embedding_dim) if cfg.autoencoder == "acai" \
            else None
        self._phase1()                                                                          # lines 2-10
        self.z_p1 = self.embed(x)
        self.history["phase1"]["health"] = self._phase1_health(self.z_p1)
        self.centers, self.kmeans_labels = _kmeans(self.z_p1, self.n_clusters, cfg.kmeans_n_init, self.seed)  # P1
        self.history["kmeans_start_step"] = int(cfg.phase1_iters)  # figures: where the P1 k-means happened
        self.labels, self.extra_labels, self.core_mask_final = self.kmeans_labels, {}, None
        if "P2" in cfg.phases:
            self._phase2()                                                                      # lines 11-26
            z = self.embed(x)
            self.history["phase2"]["health"] = self._phase2_health(z)
            self.centers, self.labels = _kmeans(z, self.n_clusters, cfg.kmeans_n_init, self.seed)        # line 27
            if "P3" in cfg.phases:
                self.extra_labels["P1&P2"] = self.labels
        if "P3" in cfg.phases:
            self._phase3()
        self.embedding = self.embed(x)
        return self

    def _phase1(self):
        """Algorithm 1, lines 2-10 (or the plain autoencoder): T1 iterations of AcaiStep through
        common.checkpoint.resumable_fit, in chunks of ``log_every`` (the last one shorter when T1 is not a multiple).

        Within the golden tolerance of the former loop of train_on_batch over one model per role, not bit-identical
        (issue 23): fit traces the step with an unknown batch dimension, train_on_batch traced it with the batch's
        own, and the critic's weight gradient (the critic applied twice in Eq. 2) is then summed in another order;
        same maths, other float rounding."""
        cfg, x = self.cfg, self.x
        cache = self._cache("phase1", cfg.phase1_part())
        self.p1_key = None if cache is None else cache.name
        cached = self._load_cached(cache)
        self._phase = "phase1"
        if cached is not None:
            self.history["phase1"] = cached
            return
        if cfg.autoencoder == "plain":
            roles = ["plain"]
        else:  # Algorithm 1: iteration i = 1, 2, ...: odd -> critic (Eq. 2), even -> autoencoder (Eq. 1)
            roles = ["critic", "ae"] if cfg.acai_schedule == "alternate" else ["both"]
        seeds = [training.derived_seed(self.seed, 1, 10 + i) for i in range(len(roles))]
        net = AcaiStep(self.encoder, self.decoder, self.critic, self._augmenter(1), roles, cfg, seeds, name="acai")
        net.compile(optimizer=RoleAdams(roles, cfg.learning_rate))  # one Adam per role (Algorithm 1 lines 5, 8)
        net(x[:2])
        net.optimizer.build(net.trainable_variables)
        self.phase1_net = net  # (inspection: net.optimizer.adams count each role's updates)
        chunk = cfg.log_every
        self.p1 = hist = {"chunks": [], "geometry": [], "eval": [], "roles": roles, "iterations": cfg.phase1_iters}
        with _quiet_missing_gradients():
            fit = checkpoint.resumable_fit(
                net, lambda e: _batches(x, cfg.batch_size, self.seed, 1, e * chunk), phase="phase1",
                unit="iteration", epochs=-(-cfg.phase1_iters // chunk), steps_per_epoch=chunk,
                checkpoint=self.checkpoint, callbacks=[_Phase1Chunks(self, chunk)], get_state=lambda: hist,
                set_state=hist.update, verbose=self.verbose)
        hist["resumed_at"] = fit["resumes"]
        hist["seconds"] = float(sum(e["seconds"] for e in hist["chunks"]))
        hist["iterations_per_second"] = cfg.phase1_iters / hist["seconds"] if hist["seconds"] > 0 else None
        per = {r: sum(1 for it in range(cfg.phase1_iters) if roles[it % len(roles)] == r) for r in roles}
        hist["ae_steps"] = sum(n for r, n in per.items() if r != "critic")   # autoencoder updates
        hist["critic_steps"] = sum(n for r, n in per.items() if r in ("critic", "both"))
        if self.y is None:
            hist.pop("eval")
        self.history["phase1"] = hist
        self._save_cached(cache, hist)

    def _phase1_chunk(self, c, logs, seconds):
        """After phase-1 chunk c: each role's chunk means (Keras's metric means over the chunk, weighted by batch
        size; None for a role without a step in it), the codes' geometry and the evaluation log, a printed line."""
        cfg, hist, roles = self.cfg, self.p1, self.p1["roles"]
        chunk, n_chunks = cfg.log_every, -(-cfg.phase1_iters // cfg.log_every)
        first, stop = c * chunk, min((c + 1) * chunk, cfg.phase1_iters)
        stepped = {roles[it % len(roles)] for it in range(first, min(stop, first + len(roles)))}
        entry = {"step": stop, "seconds": seconds, "iterations": stop - first}
        for role in roles:
            entry[f"loss_{role}"] = float(logs[f"loss_{role}"]) if role in stepped else None
            entry.update({k: float(logs[k]) for k in _ROLE_LOGS[role] if role in stepped})
        hist["chunks"].append(entry)
        hist["geometry"].append(self._snapshot(self.embed(self.x), stop, (c + 1) % cfg.geometry_every == 0
                                               or c + 1 == n_chunks, hist["eval"]))
        shown = {k: v for k, v in entry.items() if k not in ("step", "seconds", "iterations") and v is not None}
        self.log(f"[phase 1] {stop}/{cfg.phase1_iters} iterations  {entry['seconds']:.0f} s  "
                 + "  ".join(f"{k} {v:.4g}" for k, v in shown.items()))

    def _phase2(self):
        """Algorithm 1, lines 11-26: fit in chunks of ``refresh_every`` steps, a full refresh after each."""
        cfg, x = self.cfg, self.x
        cache = self._cache("phase2", {**cfg.phase2_part(), "phase1": self.p1_key})
        cached = self._load_cached(cache)
        self._phase = "phase2"
        if cached is not None:
            self.history["phase2"] = cached
            return
        chunk = max(1, min(cfg.refresh_every or -(-self.n // cfg.batch_size), cfg.max_iters))
        n_chunks = -(-cfg.max_iters // chunk)  # the cap, rounded up to whole refresh intervals
        self.net = ProximityNet(self.encoder, self.decoder, self._augmenter(2), self.n, cfg)
        self.net.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate))
        self.net((x[:2], np.arange(2, dtype=np.int32)))
        self.p2 = {"tau": [], "refreshes": [], "eval": [], "chunks": [], "steps_per_refresh": chunk,
                   "alpha": cfg.alpha, "beta": cfg.beta}
        fit = checkpoint.resumable_fit(
            self.net, lambda e: _batches_with_index(x, cfg.batch_size, self.seed, 2, e * chunk), phase="phase2",
            unit="iteration", epochs=n_chunks, steps_per_epoch=chunk, checkpoint=self.checkpoint,
            callbacks=[_Chunks(self, "phase2", chunk)], get_state=lambda: self.p2,
            set_state=lambda s: self.p2.update(s), verbose=self.verbose)
        h = self.p2
        if not h["refreshes"]:  # no training step (max_iters = 0): tau_0 only
            self._refresh(0)
        if "stop" not in h:
            h["stop"] = {"refresh": len(h["tau"]) - 1, "step": h["refreshes"][-1]["step"], "rule": cfg.stop_rule,
                         "tau": h["tau"][-1], "reason": "max_iters"}
        h["iterations"] = h["stop"]["step"]
        h["resumed_at"] = fit["resumes"]
        h["seconds"] = float(sum(e["seconds"] for e in h["chunks"]))
        h["refresh_seconds"] = float(sum(e["refresh_seconds"] for e in h["refreshes"]))
        h["iterations_per_second"] = h["iterations"] / h["seconds"] if h["seconds"] > 0 else None
        if self.y is None:
            h.pop("eval")
        self.history["phase2"] = h
        self._save_cached(cache, h)

    def _refresh(self, step):
        """Full refresh: B <- f(X) (clean), exact neighbours (Eq. 3), core points and tau (Eqs. 4-6, 15),
        reliable neighbours (Eqs. 7-9), statistics and logs. True when the stopping rule fires."""
        cfg, h = self.cfg, self.p2
        t0 = time.perf_counter()
        z = self.embed(self.x)
        self.net.bank.assign(z)
        d, nn = knn_exact(z, cfg.n_neighbors)
        core = ops.convert_to_numpy(core_mask(d, cfg.alpha))
        reliable = ops.convert_to_numpy(reliable_mask(d, cfg.beta))
        h["tau"].append(tau(core))                                                            # Eq. (15)
        t = len(h["tau"]) - 1
        entry = {"refresh": t, "step": int(step), "tau": h["tau"][-1], "n_core": int(core.sum()),
                 "mean_reliable": float(reliable[core].sum(1).mean()) if core.any() else None,
                 "frac_all_reliable": float(reliable[core].all(1).mean()) if core.any() else None,
                 "median_d1": float(np.median(d[:, 0])), "median_dM": float(np.median(d[:, -1]))}
        if t % cfg.eval_every == 0 or t % cfg.geometry_every == 0:
            extra = {"refresh": t}
            if self.y is not None:  # Fig. 14: neighbour purity (labels: this log only)
                extra["purity_all"], extra["purity_reliable"] = neighbour_purity(nn, reliable, core, self.y)
            log = h["eval"] if t % cfg.eval_every == 0 else []
            geom = self._snapshot(z, step, t % cfg.geometry_every == 0, log, extra)
            entry.update({k: v for k, v in geom.items() if k in ("id", "lid")})
        entry["refresh_seconds"] = time.perf_counter() - t0
        h["refreshes"].append(entry)
        self.core_mask_final = core
        rel = "-" if entry["mean_reliable"] is None else f"{entry['mean_reliable']:.3f}"
        self.log(f"[phase 2] refresh {t} (step {int(step)}): tau {entry['tau']:.4f}  core {entry['n_core']}  "
                 f"mean reliable {rel}  median d1 {entry['median_d1']:.4g}  dM {entry['median_dM']:.4g}")
        if should_stop(h["tau"], cfg.stop_rule, cfg.tau_patience):
            h["stop"] = {"refresh": t, "step": int(step), "rule": cfg.stop_rule, "tau": h["tau"][-1],
                         "reason": "stop rule"}
            if cfg.tau_patience:
                h["stop"]["patience"] = cfg.tau_patience
            return True
        return False

    def _phase3(self):
        """DEC on the encoder (ablation only): centres by k-means on the current codes, targets every
        ``dec_update_interval`` iterations, stop on < dec_tol label changes or after dec_max_iters."""
        cfg, x = self.cfg, self.x
        self._phase = "phase3"
        centers, _ = _kmeans(self.embed(x), self.n_clusters, cfg.kmeans_n_init, self.seed)
        self.dec = DecNet(self.encoder, centers, self.n, self._augmenter(3))
        self.dec.compile(optimizer=keras.optimizers.SGD(cfg.dec_learning_rate, momentum=cfg.dec_momentum))
        self.dec((x[:2], np.arange(2, dtype=np.int32)))
        chunk = max(1, min(cfg.dec_update_interval, cfg.dec_max_iters))  # a cap below one interval: one chunk
        n_chunks = -(-cfg.dec_max_iters // chunk)
        self.p3 = {"refreshes": [], "eval": [], "chunks": [], "update_interval": chunk}
        fit = checkpoint.resumable_fit(
            self.dec, lambda e: _batches_with_index(x, cfg.batch_size, self.seed, 3, e * chunk), phase="phase3",
            unit="iteration", epochs=n_chunks, steps_per_epoch=chunk, checkpoint=self.checkpoint,
            callbacks=[_Chunks(self, "phase3", chunk)], get_state=lambda: self.p3,
            set_state=lambda s: self.p3.update(s), verbose=self.verbose)
        h = self.p3
        if not h["refreshes"]:
            self._dec_update(0)
        q = ops.convert_to_numpy(dec_q(self.embed(x), ops.convert_to_numpy(self.dec.centers)))
        self.labels, self.centers = np.argmax(q, axis=1), ops.convert_to_numpy(self.dec.centers)
        h.setdefault("stop", {"step": h["refreshes"][-1]["step"], "reason": "dec_max_iters"})
        h.pop("last_labels", None)
        h["iterations"] = h["stop"]["step"]
        h["resumed_at"] = fit["resumes"]
        h["seconds"] = float(sum(e["seconds"] for e in h["chunks"]))
        if self.y is None:
            h.pop("eval")
        self.history["phase3"] = h

    def _dec_update(self, step):
        """DEC target update: p from q over all data; True when fewer than dec_tol of the labels changed."""
        cfg, h = self.cfg, self.p3
        z = self.embed(self.x)
        q = ops.convert_to_numpy(dec_q(z, ops.convert_to_numpy(self.dec.centers)))
        self.dec.targets.assign(dec_target(q).astype(np.float32))
        pred = np.argmax(q, axis=1)
        last = h.get("last_labels")
        changed = None if last is None else float(np.mean(pred != np.asarray(last)))
        h["last_labels"] = pred.tolist()
        t = len(h["refreshes"])
        entry = self._snapshot(z, step, t % cfg.geometry_every == 0, [])
        entry["changed"] = changed
        if self.y is not None:  # labels: this log only
            h["eval"].append({"step": int(step), **training.evaluate_log(self.y, pred, _LOG_KEYS)})
        h["refreshes"].append(entry)
        if changed is not None and changed < cfg.dec_tol:
            h["stop"] = {"step": int(step), "reason": "dec_tol", "changed": changed}
            return True
        return False

    # --- label-free health figures (common.health) ---------------------------------------------------------
    def _health(self, z):
        return health.autoencoder_health(z, self.x, lambda v: self.decoder.predict(v, batch_size=1024, verbose=0),
                                         self.cfg.pixel_range)

    def _phase1_health(self, z):
        """Codes after phase 1; for ACAI also the critic's phi-regression error (mean over the last logged chunk)
        against the best constant predictor's (the variance of phi), and their ratio (< 1: the critic learned)."""
        cfg, h = self.cfg, self.history["phase1"]
        out = self._health(z)
        out["ae_steps"], out["critic_steps"] = h.get("ae_steps"), h.get("critic_steps")
        if cfg.autoencoder == "acai":
            last = h["chunks"][-1] if h.get("chunks") else {}
            out["phi_var"] = health.uniform_variance(cfg.phi_max, cfg.phi_fold)
            for key in ("critic_phi", "critic_mix", "adv"):
                out[key] = last.get(key)
            out["phi_var_batch"] = last.get("phi_var")  # the batches' own phi variance, chunk mean
            out["critic_phi_ratio"] = health.error_ratio(out["critic_phi"], out["phi_var"])
        self.log("[phase 1 health] " + health.format_line(out, _HEALTH_KEYS))
        return out

    def _phase2_health(self, z):
        """Codes after phase 2 (before the final k-means), with tau and the beta filter at the last refresh."""
        h = self.history["phase2"]
        out = self._health(z)
        last = h["refreshes"][-1]
        out.update({"tau_first": h["tau"][0], "tau_last": h["tau"][-1], "refreshes": len(h["tau"]),
                    "mean_reliable": last.get("mean_reliable"), "frac_all_reliable": last.get("frac_all_reliable")})
        self.log("[phase 2 health] " + health.format_line(out, _HEALTH_KEYS))
        return out

    # --- plumbing: augmentation streams, caches of finished phases (common.estimator), logs, the CLI's run() ---
    def _augmenter(self, stream):
        return training.augmenter(0.1, 10.0, seed=self.seed, stream=stream) \
            if self.cfg.augment and self.x.ndim == 4 else None

    def _cache(self, stage, part):
        """cache_dir/rdc_<stage>_seed<k>_<hash of settings, data and code>.weights.h5, or None."""
        return self.cache_path(f"rdc_{stage}", {**part, "hidden": list(self.hidden)}, self.x)

    def _autoencoder(self):
        holder = training.AutoencoderTrainer(self.encoder, self.decoder)
        holder(self.x[:1])
        return holder

    def _load_cached(self, path):
        return None if path is None or not path.is_file() else self.load_cached(self._autoencoder(), path)

    def _save_cached(self, path, history):
        if path is not None:
            self.save_cached(self._autoencoder(), path, history)

    def _snapshot(self, z, step, geometry, eval_log, extra=None):
        """Logs of the current codes: k-means (n_init 3, log only) -> mean ID/LID over the predicted clusters;
        with labels, an evaluation entry (metrics, ID/LID over the true classes, ``extra``)."""
        cfg = self.cfg
        if self.snapshots is not None:
            self.snapshots.append({"phase": self._phase, "step": int(step), "z": np.array(z)})
        _, pred = _kmeans(z, self.n_clusters, 3, self.seed + int(step))
        entry = {"step": int(step)}
        if geometry:
            entry["id"], entry["lid"] = cluster_geometry(z, pred, cfg.lid_threshold, cfg.lid_standardize)
        if self.y is not None:
            ev = {"step": int(step), **training.evaluate_log(self.y, pred, _LOG_KEYS), **(extra or {})}
            if geometry:
                ev["id_true"], ev["lid_true"] = cluster_geometry(z, self.y, cfg.lid_threshold, cfg.lid_standardize)
            eval_log.append(ev)
        return entry

    @classmethod
    def prepare_run(cls, data, config):
        return data.x, config.resolve(data.name.split("[")[0]), {}

    def run_outputs(self, x):
        """Labels (k-means after the last phase, argmax q after DEC), embedding, centres, the P1 k-means labels
        (AE+K-means / Table 8's P1), the tau curve and the history."""
        arrays = {"initial_embedding": self.z_p1.astype(np.float32)}
        if "phase2" in self.history:
            arrays["tau"] = np.asarray(self.history["phase2"]["tau"], np.float32)
            if self.core_mask_final is not None:
                arrays["core_mask_final"] = np.asarray(self.core_mask_final, bool)
        return {"labels": self.labels, "embedding": self.embedding, "centers": self.centers,
                "kmeans_labels": self.kmeans_labels, "extra_labels": self.extra_labels, "arrays": arrays,
                "history": self.history}


_HEALTH_KEYS = ("participation_ratio", "top2_share", "median_std", "rec_mse", "rec_mse_01", "critic_phi", "phi_var",
                "critic_phi_ratio", "ae_steps", "tau_first", "tau_last", "mean_reliable")


class _quiet_missing_gradients:
    """Silences Keras's "Gradients do not exist for variables" warning, expected by design (see AcaiStep)."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.filterwarnings("ignore", message=".*[Gg]radients do not exist.*")

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


run = RDC.make_run()
