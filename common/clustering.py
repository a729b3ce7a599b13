"""k-means for the papers (scikit-learn on float64 embeddings), one implementation with the OpenMP thread limit as
a parameter: with ``threads=1`` OpenMP runs one thread (its spin-waits cost 30x on a busy 2-core CPU); ``None``
leaves scikit-learn's default. The two give the same clustering up to float summation order, so a module keeps
the setting its golden outputs were recorded with."""
import contextlib

import numpy as np
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits


def fit_kmeans(z, k, n_init, seed, threads=None):
    """The fitted scikit-learn KMeans (``labels_``, ``cluster_centers_`` float64, ``inertia_``, ``n_iter_``) of
    ``z`` (n, d) as float64, ``random_state=int(seed)``, OpenMP limited to ``threads`` threads (None: no limit)."""
    km = KMeans(n_clusters=k, n_init=n_init, random_state=int(seed))
    limit = contextlib.nullcontext() if threads is None else threadpool_limits(int(threads), user_api="openmp")
    with limit:
        km.fit(np.asarray(z, np.float64))
    return km


def kmeans(z, k, n_init=20, seed=0, threads=None):
    """k-means of ``z`` (n, d): (centres float32 (k, d), labels (n,)); see fit_kmeans."""
    km = fit_kmeans(z, k, n_init, seed, threads)
    return km.cluster_centers_.astype(np.float32), km.labels_
