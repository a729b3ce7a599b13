"""Figures: embedding scatter (t-SNE or PCA) with centres, and training curves."""
from pathlib import Path

import matplotlib.pyplot as plt  # headless scripts fall back to Agg; notebooks keep their inline backend
import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE


def project(z, centers=None, method="tsne", max_points=3000, seed=0):
    """2-D projection of z (and of the centres, embedded with the points). Returns (idx, z2, c2)."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(z), size=min(max_points, len(z)), replace=False))
    pts = z[idx] if centers is None else np.concatenate([z[idx], centers])
    if method == "tsne":
        perplexity = min(30.0, (len(pts) - 1) / 3)
        p2 = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(pts)
    elif method == "pca":
        p2 = PCA(2, random_state=seed).fit_transform(pts)
    else:
        raise ValueError(f"method must be 'tsne' or 'pca', got {method!r}")
    return idx, p2[:len(idx)], (None if centers is None else p2[len(idx):])


def scatter(ax, z2, colors, c2=None, title=""):
    ax.scatter(z2[:, 0], z2[:, 1], c=colors, s=3, cmap="tab10" if np.max(colors) < 10 else "tab20", alpha=0.7)
    if c2 is not None:
        ax.scatter(c2[:, 0], c2[:, 1], c="k", marker="x", s=60, linewidths=2)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def embedding_figure(z, labels, centers, path, method="tsne", title=""):
    """Scatter of the embedding coloured by ``labels`` with centres as black crosses, saved to ``path``."""
    idx, z2, c2 = project(z, centers, method)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    scatter(ax, z2, labels[idx], c2, title)
    save(fig, path)


def curves_figure(runs, path):
    """Clustering-phase loss and the logged ACC/NMI against iterations, one line per seed."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for r in runs:
        log = last_eval_log(r)
        if not log:
            continue
        steps = [e["step"] for e in log]
        axes[0].plot(steps, [e.get("loss", np.nan) for e in log], label=f"seed {r['seed']}")
        axes[1].plot(steps, [e["acc"] for e in log], label=f"ACC seed {r['seed']}")
        axes[1].plot(steps, [e["nmi"] for e in log], "--", label=f"NMI seed {r['seed']}")
    axes[0].set(xlabel="iteration", ylabel="clustering loss")
    axes[1].set(xlabel="iteration", ylabel="metric (log only)")
    axes[1].legend(fontsize=6)
    save(fig, path)


def last_eval_log(run):
    """The evaluation log of a run's last training phase that has one (e.g. history['cluster']['eval'])."""
    phases = [h for h in run.get("history", {}).values() if isinstance(h, dict) and h.get("eval")]
    return phases[-1]["eval"] if phases else []


def save(fig, path):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_figures(folder, runs):
    """Figures written by reproduce.sh after a set of runs: curves.png and embedding_seed<k>.png."""
    if not runs:
        return
    folder = Path(folder)
    curves_figure(runs, folder / "curves.png")
    first = runs[0]
    arrays = np.load(folder / f"seed{first['seed']}.npz")
    embedding_figure(arrays["embedding"], arrays["labels"], arrays["centers"], folder / f"embedding_seed{first['seed']}.png",
                     title=f"{first['paper']} {first['dataset']} seed {first['seed']}: predicted clusters")
