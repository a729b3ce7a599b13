"""Label-free health figures of a set of codes (rows = samples, columns = code dimensions).

They say how many directions the codes actually use, e.g. whether an autoencoder's 10-D codes have collapsed
towards a line or a plane (a k-means on such codes can only separate what those few directions separate):

  participation_ratio  (sum lambda)^2 / sum lambda^2 of the covariance eigenvalues lambda: d for isotropic codes
                       in d dimensions, 1 for codes on a line (rank 1); invariant to rotation and scale.
  top_k_share          sum of the k largest lambda / sum lambda: the share of variance in the top-k principal
                       components (rotation and scale invariant).
  median_std           the median over dimensions of each dimension's standard deviation (not rotation
                       invariant: it reads the code's own axes, in the code's units).

An autoencoder's codes add the reconstruction error of the data from them (``autoencoder_health``). A regressor
(e.g. R-DC's critic regressing phi ~ U[0, a]) is judged against the best constant predictor, whose squared error is
the target's variance (``uniform_variance``; ``error_ratio`` < 1: it learned something). ``format_line`` prints a
health dict on one line.

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


def reconstruction_mse(decode, z, x, block=8192):
    """Mean squared error of ``decode(z)`` against the data ``x`` (codes z of x, row for row) over every value and
    sample, in the units of x; float64 sums over blocks of ``block`` rows."""
    total = 0.0
    for i in range(0, len(x), block):
        x_hat = decode(z[i:i + block])
        total += float(np.sum(np.square(np.asarray(x_hat, np.float64) - x[i:i + block])))
    return total / float(np.prod(x.shape))


def autoencoder_health(z, x, decode, pixel_range="01", k=2):
    """code_health(z) with the reconstruction MSE of x from z (``rec_mse``); for pixels in [-1, 1]
    (``pixel_range="pm1"``) also ``rec_mse_01`` = rec_mse / 4, the MSE in [0, 1] pixel units."""
    out = code_health(z, k)
    out["rec_mse"] = reconstruction_mse(decode, z, x)
    if pixel_range == "pm1":
        out["rec_mse_01"] = out["rec_mse"] / 4.0  # in [0, 1] pixel units, comparable with pixel_range=01
    return out


def uniform_variance(high=1.0, folded=False):
    """Variance of v ~ U[0, high], or of its fold 0.5 - |v - 0.5| to [0, 0.5]: the squared error of the best
    constant predictor of v (1/12 for U[0, 1], 1/48 folded)."""
    a = float(high)
    b = min(a, 0.5) if folded else a
    m1, m2 = b ** 2 / 2.0, b ** 3 / 3.0                   # integrals of v, v^2 over [0, b] (before 1/a)
    if folded and a > 0.5:                                # (0.5, a] maps to [1 - a, 0.5)
        m1 += (0.25 - (1.0 - a) ** 2) / 2.0
        m2 += (0.125 - (1.0 - a) ** 3) / 3.0
    m1, m2 = m1 / a, m2 / a
    return m2 - m1 * m1


def error_ratio(error, constant_error):
    """A regressor's squared error over the best constant predictor's (None without an error)."""
    return None if error is None else error / constant_error


def format_line(h, keys):
    """'key value  key value ...' of the numeric entries of ``h`` among ``keys``, in that order (4 digits)."""
    return "  ".join(f"{k} {h[k]:.4g}" for k in keys if isinstance(h.get(k), (int, float)))
