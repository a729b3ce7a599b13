"""Clustering metrics used by the papers (labels are for evaluation only).

ACC and F1 use the best one-to-one cluster-to-class mapping (Hungarian method);
NMI comes in the two normalisations the papers use; precision is pair-counting.
"""
import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn import metrics as skm


def _check(y_true, y_pred):
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.ndim != 1 or y_pred.ndim != 1 or y_true.shape != y_pred.shape:
        raise ValueError(f"labels must be two 1-D arrays of equal length, got {y_true.shape} and {y_pred.shape}")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
            raise ValueError(f"{name} contains NaN or infinite values")
    return y_true.astype(np.int64), y_pred.astype(np.int64)


def contingency(y_true, y_pred):
    """Counts n[c, k] of samples with cluster k (rows: predicted clusters) and class c."""
    y_true, y_pred = _check(y_true, y_pred)
    return skm.cluster.contingency_matrix(y_pred, y_true)


def hungarian_map(y_true, y_pred):
    """Maps each predicted cluster to one class, maximising matched samples; unmatched clusters map to -1."""
    y_true, y_pred = _check(y_true, y_pred)
    clusters, classes = np.unique(y_pred), np.unique(y_true)
    counts = skm.cluster.contingency_matrix(y_pred, y_true)  # clusters x classes
    rows, cols = linear_sum_assignment(counts, maximize=True)
    mapping = np.full(clusters.size, -1, dtype=np.int64)
    mapping[rows] = classes[cols]
    return mapping[np.searchsorted(clusters, y_pred)]


def acc(y_true, y_pred):
    """Unsupervised accuracy: fraction correct under the best one-to-one mapping."""
    return float(np.mean(hungarian_map(y_true, y_pred) == _check(y_true, y_pred)[0]))


def nmi(y_true, y_pred, average_method="arithmetic"):
    """NMI; 'arithmetic' = 2I/(H(G)+H(C)) (DEKM, default), 'max' = I/max(H) (DCSS)."""
    y_true, y_pred = _check(y_true, y_pred)
    return float(skm.normalized_mutual_info_score(y_true, y_pred, average_method=average_method))


def ari(y_true, y_pred):
    y_true, y_pred = _check(y_true, y_pred)
    return float(skm.adjusted_rand_score(y_true, y_pred))


def f1(y_true, y_pred, average="macro"):
    """F1 after the Hungarian mapping (micro-F1 equals ACC for single-label data)."""
    y_true, _ = _check(y_true, y_pred)
    return float(skm.f1_score(y_true, hungarian_map(y_true, y_pred), average=average, labels=np.unique(y_true)))


def pairwise_precision(y_true, y_pred):
    """Pair-counting precision: same-cluster pairs that share a class / all same-cluster pairs."""
    n = contingency(y_true, y_pred).astype(np.float64)
    same_cluster = np.sum(n.sum(axis=1) * (n.sum(axis=1) - 1)) / 2
    both = np.sum(n * (n - 1)) / 2
    return float(both / same_cluster) if same_cluster else 0.0


def cluster_sizes(y_pred, n_clusters):
    """Samples per cluster id 0..n_clusters-1 (ids outside that range extend the array)."""
    return np.bincount(np.asarray(y_pred, dtype=np.int64), minlength=n_clusters)


def evaluate(y_true, y_pred, n_clusters=None):
    """All metrics as a dict of numbers, with the number of non-empty clusters of the ``n_clusters`` asked for
    (default: the number of classes) and the size of the smallest non-empty one."""
    sizes = cluster_sizes(_check(y_true, y_pred)[1], n_clusters or np.unique(y_true).size)
    return {
        "acc": acc(y_true, y_pred),
        "nmi": nmi(y_true, y_pred),
        "nmi_max": nmi(y_true, y_pred, "max"),
        "ari": ari(y_true, y_pred),
        "f1_macro": f1(y_true, y_pred, "macro"),
        "f1_micro": f1(y_true, y_pred, "micro"),
        "pairwise_precision": pairwise_precision(y_true, y_pred),
        "nonempty_clusters": int(np.count_nonzero(sizes)),
        "smallest_cluster": int(sizes[sizes > 0].min()),
    }
