"""Figures: embedding scatter (t-SNE or PCA) with centres, and training curves.

    python -m common.plots results/ [--curves-only] [--exclude FOLDER]   # redraw every run folder's figures

Training curves show k-means on the pre-trained embedding (the run's
``baseline_metrics.kmeans_on_pretrained_embedding``) at the step where it was computed (the history's
``kmeans_start_step``, default 0; R-DC's is the end of its phase 1) and follow every logged phase in order, so the
effect of the clustering stage is the distance from that point. One colour per seed, the same in every panel and
every figure (``seed_color``); y-axes are scaled to the data, not to [0, 1].
"""
from pathlib import Path

import matplotlib.pyplot as plt  # headless scripts fall back to Agg; notebooks keep their inline backend
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

from common import results


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
    """Scatter of the embedding coloured by ``labels`` (one per row of ``z``: for a result file,
    ``results.sampled(arrays, "labels")``) with centres as black crosses, saved to ``path``."""
    if len(labels) != len(z):
        raise ValueError(f"{len(labels)} labels for {len(z)} embedded points: use results.sampled(arrays, 'labels')")
    idx, z2, c2 = project(z, centers, method)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    scatter(ax, z2, np.asarray(labels)[idx], c2, title)
    save(fig, path)


def seed_color(seed):
    """The colour of a seed in every figure (matplotlib's C0..C9 cycle)."""
    return f"C{int(seed) % 10}"


STEP0 = "k-means on the pre-trained embedding"


def training_curve(run):
    """A run's evaluation logs as one curve over training steps (optimiser updates): every phase with an
    evaluation log in the order the history lists them, each phase's steps offset by the phases before it, and
    k-means on the pre-trained embedding (``baseline_metrics``) at the history's ``kmeans_start_step`` (default
    0; at step 0 the log's own step-0 entry, as DEKM's, stands for it), before the first logged point after it.

    Returns {"step", "acc", "nmi", "nonempty_clusters": lists (NaN where not logged), "start": the index of the
    k-means start in them (None without one), "loss_step", "loss": the last phase's loss (the clustering
    objective; phases' losses are different functions), "marks": [(step, label)] phase boundaries and DCSS's
    switch from u- to q-space similarities, "phase_ends": each phase's last step}."""
    keys = ("acc", "nmi", "nonempty_clusters")
    out = {"step": [], **{k: [] for k in keys}, "start": None, "loss_step": [], "loss": [], "marks": [],
           "phase_ends": []}

    def add(step, entry):
        out["step"].append(step)
        for k in keys:
            out[k].append(float(entry.get(k, np.nan)))

    history = run.get("history", {})
    phases = [(name, h) for name, h in history.items() if isinstance(h, dict) and h.get("eval")]
    first = phases[0][1]["eval"][0] if phases else {}
    base = run.get("baseline_metrics", {}).get("kmeans_on_pretrained_embedding")
    start = history.get("kmeans_start_step", 0) if isinstance(history, dict) else 0
    pending = bool(base) and (start != 0 or first.get("step") != 0)
    if not pending and start == 0 and first.get("step") == 0:
        out["start"] = 0  # the log's own step-0 entry

    def add_base():
        out["start"] = len(out["step"])
        add(start, base)

    offset = 0
    for i, (name, h) in enumerate(phases):
        if i:
            out["marks"].append((offset, f"{phases[i - 1][0]} → {name}"))
        for e in h["eval"]:
            if pending and (offset >= start or offset + e["step"] > start):  # a phase from it on, or a later step
                add_base()
                pending = False
            add(offset + e["step"], e)
            if i == len(phases) - 1 and "loss" in e:
                out["loss_step"].append(offset + e["step"])
                out["loss"].append(float(e["loss"]))
        space, per_epoch = h.get("similarity_space"), h.get("steps_per_epoch")
        if space and per_epoch and "q" in space and space[0] != "q":
            out["marks"].append((offset + space.index("q") * per_epoch, "similarities from q (Eq. 5)"))
        offset += h["eval"][-1]["step"]
        out["phase_ends"].append(offset)
    if pending:
        add_base()
    return out


MIN_PHASE_WIDTH = 0.25  # of the longest phase's: a short phase after a long one stays readable


def phase_axis(curves):
    """Knots (steps, positions) of a piecewise-linear step axis on which every phase is drawn at least
    MIN_PHASE_WIDTH of the longest phase's width (phase ends: the latest over the runs), or None when every
    phase is that long already (then the axis is linear)."""
    n = max((len(c["phase_ends"]) for c in curves), default=0)
    ends = [max(c["phase_ends"][i] for c in curves if len(c["phase_ends"]) > i) for i in range(n)]
    steps = np.array([0.0] + ends)
    lengths = np.diff(steps)
    if n < 2 or lengths.min() >= MIN_PHASE_WIDTH * lengths.max():
        return None
    widths = np.maximum(lengths, MIN_PHASE_WIDTH * lengths.max())
    return steps, np.concatenate([[0.0], np.cumsum(widths)])


def _piecewise(xs, ys):
    """Piecewise-linear map through the knots (xs, ys), extended linearly beyond both ends (an axis margin)."""
    def f(v):
        v = np.asarray(v, float)
        lo = ys[0] + (v - xs[0]) * (ys[1] - ys[0]) / (xs[1] - xs[0])
        hi = ys[-1] + (v - xs[-1]) * (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
        return np.where(v < xs[0], lo, np.where(v > xs[-1], hi, np.interp(v, xs, ys)))
    return f


def curves_figure(runs, path=None, title=None):
    """Training curves of a set of runs (one colour per seed): ACC and NMI of the evaluation logs from step 0
    (k-means on the pre-trained embedding), the clustering loss, and the number of non-empty clusters when the
    logs record it. Panels in which no run has two points are left out. Saved to ``path`` if given (and closed),
    else returned."""
    curves = [(r, training_curve(r)) for r in runs]
    panels = [("acc", "step", "ACC (evaluation log)"), ("nmi", "step", "NMI 2I/(H+H) (evaluation log)"),
              ("loss", "loss_step", "clustering loss (chunk mean)"),
              ("nonempty_clusters", "step", "non-empty clusters")]
    panels = [p for p in panels if any(np.sum(np.isfinite(np.asarray(c[p[0]], float))) >= 2 for _, c in curves)]
    width = 3.4 * max(len(panels), 1) + 2.2
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(width, 3.0), squeeze=False, sharex=True,
                             layout="constrained")
    axes = axes[0]
    if not panels:
        axes[0].text(0.5, 0.5, "no evaluation log with two points", ha="center", va="center", transform=axes[0].transAxes)
        axes[0].set_axis_off()
    marks, knots = {}, phase_axis([c for _, c in curves])
    for ax, (key, xkey, label) in zip(axes, panels):
        if knots is not None:
            ax.set_xscale("function", functions=(_piecewise(*knots), _piecewise(knots[1], knots[0])))
            ax.set_xticks(knots[0])
            ax.tick_params(axis="x", labelrotation=30)
        for r, c in curves:
            x, y = np.asarray(c[xkey], float), np.asarray(c[key], float)
            ok = np.isfinite(y)
            if not ok.any():
                continue
            ax.plot(x[ok], y[ok], "-o", color=seed_color(r["seed"]), ms=3, lw=1.2)
            i = c["start"]
            if key != "loss" and i is not None and ok[i]:
                ax.plot([x[i]], [y[i]], "s", mfc="white", mec=seed_color(r["seed"]), ms=7, mew=1.5)
            for step, what in c["marks"]:
                marks.setdefault(what, set()).add(step)
        for i, (what, steps) in enumerate(sorted(marks.items())):
            for s in steps:
                ax.axvline(s, color="0.5", ls=(0, (4, 2)) if i == 0 else ":", lw=0.8)
        ax.set(xlabel="training step", ylabel=label)
        ax.margins(x=0.03, y=0.12)
        if key == "nonempty_clusters":  # whole numbers, and room to see a drop by one
            ys = [v for _, c in curves for v in c[key] if np.isfinite(v)]
            ax.set_ylim(min(ys) - 1.5, max(ys) + 0.5)
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=seed_color(s), marker="o", ms=3, label=f"seed {s}")
               for s in sorted({r["seed"] for r in runs})]
    at_zero = all(c["start"] is None or c["step"][c["start"]] == 0 for _, c in curves)
    handles.append(Line2D([], [], ls="", marker="s", mfc="white", mec="k", ms=7,
                          label=f"step 0: {STEP0}" if at_zero else f"{STEP0}\n(where it was computed)"))
    for i, what in enumerate(sorted(marks)):
        handles.append(Line2D([], [], color="0.5", ls=(0, (4, 2)) if i == 0 else ":", label=what))
    if knots is not None:
        handles.append(Line2D([], [], ls="", label=f"step axis not to scale: each phase\n"
                                                   f"≥ {MIN_PHASE_WIDTH:.0%} of the longest one's width"))
    fig.legend(handles=handles, loc="outside right upper", fontsize=7, frameon=False)
    if title is None and runs:
        r = runs[0]
        over = ", ".join(f"{k}={v}" for k, v in sorted((r.get("overrides") or {}).items()))
        title = f"{r.get('paper', '')} {r.get('dataset', '')} ({r.get('profile', '')}{', ' + over if over else ''})"
    if title:
        fig.suptitle(title, fontsize=9)
    if path is None:
        return fig
    save(fig, path)


def last_eval_log(run):
    """The evaluation log of a run's last training phase that has one (e.g. history['cluster']['eval'])."""
    phases = [h for h in run.get("history", {}).values() if isinstance(h, dict) and h.get("eval")]
    return phases[-1]["eval"] if phases else []


def save(fig, path):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_figures(folder, runs, embedding=True):
    """Figures written by reproduce.sh after a set of runs: curves.png and embedding_seed<k>.png (t-SNE of the
    first seed's sampled embedding, coloured by its predicted clusters ``labels[sample_index]``)."""
    if not runs:
        return
    folder = Path(folder)
    curves_figure(runs, folder / "curves.png")
    first = runs[0]
    npz = folder / f"seed{first['seed']}.npz"
    if not embedding or not npz.is_file():
        return
    arrays = results.load_run_arrays(npz)
    embedding_figure(arrays["embedding"], results.sampled(arrays, "labels"), arrays["centers"],
                     folder / f"embedding_seed{first['seed']}.png",
                     title=f"{first['paper']} {first['dataset']} seed {first['seed']}: predicted clusters "
                           f"({len(arrays['embedding']):,} points)")


def redraw(root, curves_only=False, exclude=()):
    """``run_figures`` for every folder under ``root`` that holds seed*.json result files of training runs (not
    ``baselines/`` or ``authors_code/``), except below the folders in ``exclude``."""
    exclude = [Path(e).resolve() for e in exclude]
    folders = sorted({p.parent for p in Path(root).rglob("seed*.json")})
    for folder in folders:
        if folder.name in ("baselines", "authors_code") or any(e == folder.resolve() or e in folder.resolve().parents
                                                                for e in exclude):
            continue
        runs = [r for r in results.load_runs(folder) if "history" in r]
        if runs:
            run_figures(folder, runs, embedding=not curves_only)
            print(f"{folder}: {len(runs)} run(s)", flush=True)


if __name__ == "__main__":
    import argparse
    import matplotlib

    matplotlib.use("Agg")
    ap = argparse.ArgumentParser(prog="python -m common.plots", description="redraw the figures of result folders")
    ap.add_argument("root", nargs="?", default="results")
    ap.add_argument("--curves-only", action="store_true", help="curves.png only (no t-SNE)")
    ap.add_argument("--exclude", action="append", default=[], help="a folder to leave alone (repeatable)")
    args = ap.parse_args()
    redraw(args.root, args.curves_only, args.exclude)
