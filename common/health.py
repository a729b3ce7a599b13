"""Label-free health figures of a set of codes (rows = samples, columns = code dimensions).

They say how many directions the codes actually use, e.g. whether an autoencoder's 10-D codes have collapsed
towards a line or a plane (a k-means on such codes can only separate what those few directions separate):

  participation_ratio  (sum lambda)^2 / sum lambda^2 of the covariance eigenvalues lambda: d for isotropic codes
                       in d dimensions, 1 for codes on a line (rank 1); invariant to rotation and scale.
  top_k_share          sum of the k largest lambda / sum lambda: the share of variance in the top-k principal
                       components (rotation and scale invariant).
  median_std           the median over dimensions of each dimension's standard deviation (not rotation
                       invariant: it reads the code's own axes, in the code's units).

Covariance and standard deviations with ddof = 1. Codes without variance give NaN for the ratios.
"""
import numpy as np


def _codes(z):
    z = np.asarray(z, np.float64)
    if z.ndim != 2 or len(z) < 2:
        raise ValueError(f"codes must be a 2-D array with at least 2 rows, got shape {z.shape}")
    return z


def covariance_eigenvalues(z):
    """Eigenvalues of the codes' covariance (ddof 1), largest first, clipped at 0."""
    z = _codes(z)
    d = z.shape[1]
    ev = np.linalg.eigvalsh(np.cov(z, rowvar=False).reshape(d, d))[::-1]
    return np.clip(ev, 0.0, None)


def participation_ratio(z):
    """(sum lambda)^2 / sum lambda^2 over the covariance eigenvalues (NaN without variance)."""
    ev = covariance_eigenvalues(z)
    s = ev.sum()
    return float(s * s / np.sum(ev * ev)) if s > 0 else float("nan")


def top_k_share(z, k=2):
    """Share of the variance in the k leading principal components (NaN without variance)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    ev = covariance_eigenvalues(z)
    s = ev.sum()
    return float(ev[:k].sum() / s) if s > 0 else float("nan")


def median_std(z):
    """Median over dimensions of the per-dimension standard deviation (ddof 1)."""
    return float(np.median(np.std(_codes(z), axis=0, ddof=1)))


def code_health(z, k=2):
    """{"participation_ratio", "top<k>_share", "median_std", "dims"} of codes z (N, d)."""
    z = _codes(z)
    return {"participation_ratio": participation_ratio(z), f"top{k}_share": top_k_share(z, k),
            "median_std": median_std(z), "dims": int(z.shape[1])}
