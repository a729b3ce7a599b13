"""The papers' shallow baselines on the raw pixels (k-means, GMM, PCA + k-means), as result files.

    python -m common.baselines <paper> <dataset> [<dataset> ...]   # results/<paper>/<dataset>/baselines/seed<k>.json

Which rows a paper's table has, and our settings for them (the papers give none), are data here. The pixels are the
paper's input (its module's ``prepare``, e.g. DEKM's COIL-20 at 28x28, when it has one). Labels only score.
"""
import importlib
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from common import datasets, metrics, results, setup, training

# paper -> {row name in its table: method}; settings of each method below.
ROWS = {"decs": {"k-means": "kmeans", "GMM": "gmm"}, "dekm": {"K-means": "kmeans", "PCA+K-means": "pca_kmeans"}}
SETTINGS = {"kmeans": {"n_init": 10}, "gmm": {"covariance_type": "diag", "n_init": 1},
            "pca_kmeans": {"variance_kept": 0.90, "n_init": 10}}


def cluster(method, x, k, seed):
    """Labels of one baseline on the flattened inputs x (n, d)."""
    s = SETTINGS[method]
    with threadpool_limits(1, user_api="openmp"):  # OpenMP spin-waits are slow on a shared CPU
        if method == "kmeans":
            return KMeans(k, n_init=s["n_init"], random_state=seed).fit_predict(x)
        if method == "gmm":
            return GaussianMixture(k, covariance_type=s["covariance_type"], n_init=s["n_init"],
                                   random_state=seed).fit(x).predict(x)
        z = PCA(n_components=s["variance_kept"], svd_solver="full", random_state=seed).fit_transform(x)
        return KMeans(k, n_init=s["n_init"], random_state=seed).fit_predict(z)


def write(paper, dataset, seeds=(0, 1, 2), out="results"):
    """results/<paper>/<dataset>/baselines/seed<k>.json: each row's metrics, settings, data fingerprint, git state."""
    if paper not in ROWS:
        raise ValueError(f"no pixel baselines for {paper!r}; papers: {', '.join(ROWS)}")
    module = importlib.import_module(f"papers.{paper}")
    data = datasets.load(dataset)
    x = module.prepare(data) if hasattr(module, "prepare") else data.x
    x = np.asarray(x, np.float64).reshape(len(data), -1)
    for seed in seeds:
        t0 = time.perf_counter()
        labels = {row: cluster(method, x, data.n_clusters, seed) for row, method in ROWS[paper].items()}
        rec = {"paper": paper, "dataset": dataset, "seed": seed, "n_samples": len(data), "input": "pixels",
               "settings": {row: {"method": m, **SETTINGS[m]} for row, m in ROWS[paper].items()},
               "data": training.data_fingerprint(x), "metrics": {},
               "extra_metrics": {row: metrics.evaluate(data.y, v, data.n_clusters) for row, v in labels.items()},
               "git": setup.git_state(), "environment": setup.environment(), "wall_seconds": time.perf_counter() - t0,
               "command": f"python -m common.baselines {paper} {dataset}",
               "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        results.write_json(Path(out) / paper / dataset / "baselines" / f"seed{seed}.json", rec)
        print(paper, dataset, seed, {k: round(v["acc"], 4) for k, v in rec["extra_metrics"].items()}, flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        print(f"usage: python -m common.baselines <{'|'.join(ROWS)}> <dataset> ...", file=sys.stderr)
        sys.exit(2)
    try:
        for name in sys.argv[2:]:
            write(sys.argv[1], name)
    except (ValueError, datasets.DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
