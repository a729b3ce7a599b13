"""R-DC's Figs. 2 and 16 (§1.2.1, §4.2.2): the "feature twist" of DEC against R-DC's phase 2 on 2-D data.

    python -m experiments.rdc_feature_twist [--smoke]    # prints k-means ACC, trustworthiness, 10-NN agreement

notebooks/rdc.ipynb draws it. Labels only score the snapshots; the method itself is papers/rdc.py.
"""
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import metrics
from common.clustering import kmeans
from papers.rdc import RDC, Config, knn_exact


# Figs. 2 and 16 (§1.2.1, §4.2.2): the "feature twist" on 2-D data with four curved clusters. The paper gives no
# generator: ours are two interleaving-moons pairs (make_moons' half circles, Gaussian noise), the second pair
# shifted by (+4, 0), standardised. "A linear two-layer auto-encoder" is read as two fully connected layers per
# side, 2-64-2 (ReLU hidden, linear code) and its mirror; 200 epochs of reconstruction (Adam 1e-3, batch 64), then
# 100 epochs of DEC (targets every epoch, no early stop) or of R-DC's phase 2 (a full refresh every epoch,
# alpha 0.6, beta = the median of d_M - d_1 over the pre-trained codes: a scale-free choice of ours, as beta is an
# absolute distance), snapshots every 25 epochs (the paper's panels 200, 225, ..., 300).
def four_arcs(n_per=500, noise=0.05, seed=0):
    """(x (4 n_per, 2) float32 standardised, y) with four curved clusters."""
    rng = np.random.default_rng([int(seed), 216])
    t = rng.uniform(0.0, np.pi, size=(4, n_per))
    upper = np.stack([np.cos(t[0]), np.sin(t[0])], 1)
    lower = np.stack([1.0 - np.cos(t[1]), 0.5 - np.sin(t[1])], 1)
    upper2 = np.stack([np.cos(t[2]), np.sin(t[2])], 1) + [4.0, 0.0]
    lower2 = np.stack([1.0 - np.cos(t[3]), 0.5 - np.sin(t[3])], 1) + [4.0, 0.0]
    x = np.concatenate([upper, lower, upper2, lower2]) + rng.normal(0.0, noise, size=(4 * n_per, 2))
    x = (x - x.mean(0)) / x.std(0)
    return x.astype(np.float32), np.repeat(np.arange(4), n_per)


def latent_scores(x, z, y, k=10, seed=0):
    """Quantities of a snapshot (labels: evaluation only): k-means ACC on the codes, trustworthiness(x, z, k)
    and the share of each point's k nearest codes with its label."""
    from sklearn.manifold import trustworthiness

    _, pred = kmeans(z, len(np.unique(y)), 10, seed, threads=1)
    _, nn = knn_exact(z, k)
    return {"kmeans_acc": metrics.acc(y, pred), "trustworthiness": float(trustworthiness(x, z, n_neighbors=k)),
            "knn_agreement": float(np.mean(np.asarray(y)[nn] == np.asarray(y)[:, None]))}


def feature_twist_experiment(pre_epochs=200, fine_epochs=100, snapshot_every=25, n_per=500, seed=0,
                             cache_dir=None, verbose=0):
    """Pre-train once, then DEC and R-DC from the same weights. Returns x, y, beta and per method
    {"epochs": [...], "z": [codes per snapshot], "scores": [latent_scores per snapshot]}."""
    x, y = four_arcs(n_per, seed=seed)
    per_pass = -(-len(x) // 64)
    base = dict(autoencoder="plain", plain_steps="iterations", embedding_dim=2, batch_size=64,  # pre_epochs passes
                pretrain_iters=pre_epochs * per_pass, log_every=pre_epochs * per_pass, augment=False,
                stop_rule="none", alpha=0.6)
    def fit(folder, **kw):
        model = RDC(4, Config(**{**base, **kw}), seed=seed, cache_dir=folder, verbose=verbose, hidden=(64,))
        model.snapshots = []
        return model.fit(x)  # no labels: they enter the scores below only

    with tempfile.TemporaryDirectory(prefix="rdc_twist_") as tmp:  # phase 1 trained once, reused by both
        folder = Path(cache_dir or tmp)
        pre = fit(folder, phases="P1", beta=0.6)
        d, _ = knn_exact(pre.z_p1, 5)
        beta = float(np.median(d[:, -1] - d[:, 0]))
        runs = {"DEC": fit(folder, phases="P1P3", beta=beta, dec_max_iters=fine_epochs * per_pass,
                           dec_update_interval=per_pass, dec_tol=0.0),
                "R-DC": fit(folder, phases="P1P2", beta=beta, max_iters=fine_epochs * per_pass, refresh_every=per_pass)}
    out = {"x": x, "y": y, "beta": beta, "per_pass": per_pass, "pre_steps": pre.history["phase1"]["ae_steps"]}
    for name, model in runs.items():
        phase = "phase3" if name == "DEC" else "phase2"
        snaps = [(0, model.z_p1)] + [(s["step"] // per_pass, s["z"]) for s in model.snapshots
                                     if s["phase"] == phase and s["step"] > 0]
        snaps = [(pre_epochs + e, z) for e, z in snaps if e % snapshot_every == 0]
        out[name] = {"epochs": [e for e, _ in snaps], "z": [z for _, z in snaps],
                     "scores": [latent_scores(x, z, y, seed=seed) for _, z in snaps],
                     "final_labels_acc": metrics.acc(y, model.labels)}
    return out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if set(argv) - {"--smoke"}:
        print(f"error: unknown argument(s) {' '.join(sorted(set(argv) - {'--smoke'}))}; usage: "
              "python -m experiments.rdc_feature_twist [--smoke]", file=sys.stderr)
        return 2
    budget = dict(pre_epochs=20, fine_epochs=10, snapshot_every=5, n_per=150) if "--smoke" in argv else {}
    out = feature_twist_experiment(**budget)
    print(f"beta {out['beta']:.4f}")
    for name in ("DEC", "R-DC"):
        for epoch, s in zip(out[name]["epochs"], out[name]["scores"]):
            print(f"{name} epoch {epoch}: " + "  ".join(f"{k} {v:.3f}" for k, v in s.items()))
        print(f"{name} final labels ACC {out[name]['final_labels_acc']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
