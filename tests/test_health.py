"""common.health against hand values: participation ratio, top-k share and median std of codes."""
import numpy as np
import pytest

from common import health


def _rotation(dim, seed=0):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, dim)))
    return q


def _with_variances(variances, n=500, dim=None, rotate=False, seed=0):
    """n points whose sample covariance (ddof 1) has exactly ``variances`` on its diagonal, zero elsewhere, padded
    with zero-variance dimensions to ``dim`` and optionally rotated."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, len(variances)))
    a -= a.mean(0)
    q, _ = np.linalg.qr(a)                                   # orthonormal, zero-mean columns
    pts = q * np.sqrt(np.asarray(variances, float) * (n - 1))
    pts = np.pad(pts, ((0, 0), (0, (dim or len(variances)) - len(variances))))
    return pts @ _rotation(pts.shape[1], seed + 1) if rotate else pts + 3.0  # a shift changes nothing


def test_diagonal_covariance_by_hand():
    z = _with_variances([4.0, 3.0, 2.0, 1.0])
    np.testing.assert_allclose(np.cov(z, rowvar=False), np.diag([4.0, 3.0, 2.0, 1.0]), atol=1e-10)
    assert health.participation_ratio(z) == pytest.approx(100.0 / 30.0, rel=1e-10)   # 10^2 / (16+9+4+1)
    assert health.top_k_share(z, 2) == pytest.approx(0.7, rel=1e-10)                 # (4+3) / 10
    assert health.top_k_share(z, 1) == pytest.approx(0.4, rel=1e-10)
    assert health.median_std(z) == pytest.approx((3 ** 0.5 + 2 ** 0.5) / 2, rel=1e-10)  # stds 2, 1.73, 1.41, 1


def test_ratios_read_eigenvalues_not_the_axes():
    """The same spectrum rotated into 10 dimensions: the per-dimension variances are now mixed (a per-axis
    implementation would give other numbers), the participation ratio and top-2 share are not."""
    z = _with_variances([4.0, 3.0, 2.0, 1.0], dim=10, rotate=True)
    assert not np.allclose(np.sort(z.var(0, ddof=1))[::-1][:4], [4, 3, 2, 1], atol=0.1)
    assert health.participation_ratio(z) == pytest.approx(100.0 / 30.0, rel=1e-9)
    assert health.top_k_share(z, 2) == pytest.approx(0.7, rel=1e-9)
    np.testing.assert_allclose(health.covariance_eigenvalues(z), [4, 3, 2, 1] + [0] * 6, atol=1e-9)


def test_rank_one_codes_have_ratio_one():
    t = np.random.default_rng(1).normal(size=300)
    z = t[:, None] * np.array([1.0, -2.0, 0.5, 3.0, 0.0, 1.0]) + 7.0
    assert health.participation_ratio(z) == pytest.approx(1.0, abs=1e-9)
    assert health.top_k_share(z, 2) == pytest.approx(1.0, abs=1e-12)
    assert health.top_k_share(z, 1) == pytest.approx(1.0, abs=1e-9)


def test_isotropic_gaussian_codes_have_ratio_d():
    d = 6
    z = np.pad(np.random.default_rng(2).normal(size=(20000, d)), ((0, 0), (0, 4))) @ _rotation(10, 3)
    assert health.participation_ratio(z) == pytest.approx(d, rel=0.02)
    assert health.top_k_share(z, 2) == pytest.approx(2 / d, rel=0.05)
    # same ratio from the Frobenius form (sum lambda)^2 / sum lambda^2 = trace(C)^2 / ||C||_F^2
    c = np.cov(z, rowvar=False)
    assert health.participation_ratio(z) == pytest.approx(np.trace(c) ** 2 / np.sum(c * c), rel=1e-9)


def test_scale_invariance_and_degenerate_codes():
    z = _with_variances([5.0, 1.0, 0.5])
    assert health.participation_ratio(10 * z) == pytest.approx(health.participation_ratio(z), rel=1e-10)
    assert health.median_std(10 * z) == pytest.approx(10 * health.median_std(z), rel=1e-10)
    const = np.ones((5, 3))
    assert np.isnan(health.participation_ratio(const)) and np.isnan(health.top_k_share(const))
    assert health.median_std(const) == 0.0
    h = health.code_health(z)
    assert set(h) == {"participation_ratio", "top2_share", "median_std", "dims"} and h["dims"] == 3
    for bad in (np.ones(5), np.ones((1, 3))):
        with pytest.raises(ValueError):
            health.participation_ratio(bad)
    with pytest.raises(ValueError):
        health.top_k_share(z, 0)


def test_uniform_variance_by_hand():
    """The best constant predictor's squared error for v ~ U[0, a], folded (0.5 - |v - 0.5|) or not."""
    assert health.uniform_variance(1.0) == pytest.approx(1 / 12) and health.uniform_variance(1.0, True) == pytest.approx(1 / 48)
    assert health.uniform_variance(0.5) == pytest.approx(1 / 48) and health.uniform_variance(0.5, True) == pytest.approx(1 / 48)
    v = (np.arange(400000) + 0.5) / 400000 * 0.75          # midpoint grid of U[0, 0.75], then folded
    assert health.uniform_variance(0.75, True) == pytest.approx((0.5 - np.abs(v - 0.5)).var(), rel=1e-6)
    assert health.uniform_variance(0.75) == pytest.approx(0.75 ** 2 / 12)
    assert health.error_ratio(None, 0.1) is None and health.error_ratio(0.05, 0.1) == pytest.approx(0.5)


def test_reconstruction_mse_over_blocks_and_pixel_range():
    """MSE over every value and sample, blocks of rows summed (not a mean of block means: blocks of 2 and 1 rows
    would give (1/2 + 4) / 2 here); in [0, 1] units a quarter of the [-1, 1] figure."""
    x = np.zeros((3, 2, 1, 1))
    z = np.array([[0.0], [1.0], [2.0]])
    decode = lambda v: np.repeat(v, 2, axis=1).reshape(-1, 2, 1, 1)  # noqa: E731  row i -> all values i
    assert health.reconstruction_mse(decode, z, x, block=2) == pytest.approx((0 + 2 + 8) / 6)
    assert health.reconstruction_mse(decode, z, x) == pytest.approx(10 / 6)
    codes = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 3.0]])  # 2-D codes whose first column decodes as above
    h = health.autoencoder_health(codes, x, lambda v: decode(v[:, :1]), pixel_range="pm1")
    assert h["rec_mse"] == pytest.approx(10 / 6) and h["rec_mse_01"] == pytest.approx(10 / 24) and h["dims"] == 2
    assert h["participation_ratio"] == health.participation_ratio(codes)
    assert "rec_mse_01" not in health.autoencoder_health(codes, x, lambda v: decode(v[:, :1]))


def test_format_line_keeps_the_given_order_and_numbers_only():
    h = {"b": 0.123456, "a": 2, "c": None, "d": "text", "e": 1.0}
    assert health.format_line(h, ("a", "b", "c", "d", "z")) == "a 2  b 0.1235"
