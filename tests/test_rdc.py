"""R-DC equations against hand computations and float64 references (hand values: ../shared/specs/rdc.md §B9);
gradient routing of phase 1; labels never read; an interrupted run resumes to the uninterrupted result."""
import json

import keras
import numpy as np
import pytest
from keras import ops

from conftest import grad
from papers import rdc

RNG = np.random.default_rng(0)


def _np(v):
    return ops.convert_to_numpy(v)


# --- PAPER_RESULTS ------------------------------------------------------------------------------------------------
def test_paper_results_parsed_from_the_tables():
    P = rdc.PAPER_RESULTS
    assert P["R-DC"]["fmnist"] == {"acc": 0.666, "f1_macro": 0.657, "f1_micro": 0.666, "nmi": None}
    assert P["DDC-UCO"]["fmnist"] == {"acc": 0.499, "f1_macro": 0.442, "f1_micro": 0.314, "nmi": None}
    assert P["AE + K-means"]["cifar10"]["f1_macro"] == 0.514
    assert P["VADE"]["pneumoniamnist"]["acc"] == 0.718 and P["DynAE"]["bloodmnist"]["f1_micro"] == 0.463
    # Table 8, transposed to rows per phase combination
    assert P["P1"]["fmnist"]["acc"] == 0.556 and P["P1&P3"]["bloodmnist"]["f1_macro"] == 0.495
    assert P["P1&P2&P3"]["breastmnist"] == {"acc": 0.582, "f1_macro": 0.578, "f1_micro": 0.582, "nmi": None}
    assert P["P1&P2"]["fmnist"] == P["R-DC"]["fmnist"]
    assert len([m for m in P if "cifar10" in P[m]]) == 10
    assert rdc.PAPER_TIMES["R-DC"] == {"fmnist": 425.0, "vesselmnist3d": 237.0, "pneumoniamnist": 199.0}


@pytest.mark.parametrize("autoencoder,phases,row", [
    ("acai", "P1", "P1"), ("acai", "P1P2", "R-DC"), ("acai", "P1P3", "P1&P3"), ("acai", "P1P2P3", "P1&P2&P3"),
    ("plain", "P1", "AE + K-means"), ("plain", "P1P3", "DEC")])
def test_method_of_names_a_paper_row_with_fmnist(autoencoder, phases, row):
    assert rdc.method_of({"autoencoder": autoencoder, "phases": phases}) == row
    assert rdc.PAPER_RESULTS[row]["fmnist"]["acc"] is not None


def test_config_validation_and_table2():
    cfg = rdc.Config().resolve("fmnist")
    assert (cfg.alpha, cfg.beta) == (0.6, 0.6)
    assert rdc.Config().resolve("pneumoniamnist").beta == 1.0
    assert rdc.Config(alpha=0.3).resolve("mnist").alpha == 0.3 and rdc.Config().resolve("usps").beta == 0.6
    for bad in ({"phases": "P2"}, {"autoencoder": "vae"}, {"alpha": 0.0}, {"beta": -1.0}, {"n_neighbors": 1},
                {"stop_rule": "never"}, {"loss_form": "mean"}, {"noise_sigma": -0.1}, {"acai_schedule": "x"}):
        with pytest.raises(ValueError):
            rdc.Config(**bad)
    assert set(rdc.PROFILES["smoke"]) - {"subset_per_class"} <= {"pretrain_iters", "max_iters", "dec_max_iters",
                                                                 "log_every"}


# --- Phase 1: Eqs. (1)-(2) ------------------------------------------------------------------------------------------
def test_eq1_interpolation_pairs_each_code_with_the_reversed_batch():
    z = np.array([[0.0, 0.0], [2.0, 4.0], [4.0, 0.0]], "float32")
    got = _np(rdc.interpolate(z, np.array([1.0, 0.25, 0.5], "float32")))
    # row i pairs with row B-1-i: (z0, z2), (z1, z1), (z2, z0)
    np.testing.assert_allclose(got, [[0.0, 0.0], [2.0, 4.0], [2.0, 0.0]])
    z = z[:2]  # the spec's hand value: row 1 = 0.25 z1 + 0.75 z0
    np.testing.assert_allclose(_np(rdc.interpolate(z, np.array([1.0, 0.25], "float32"))), [[0.0, 0.0], [0.5, 1.0]])


def test_eq1_eq2_by_hand_with_a_mean_critic():
    # c(x) = mean of the entries: x = (1, 1), x_hat = (.5, .5), x_hat_phi = (.2, .4) -> c = .3, phi = .25, eta = .5
    x, x_hat, x_phi = np.array([[1.0, 1.0]]), np.array([[0.5, 0.5]]), np.array([[0.2, 0.4]])
    c_phi = x_phi.mean(1)
    c_mix = rdc.mix_real(x, x_hat, 0.5).mean(1)
    assert float(_np(rdc.ae_loss(x, x_hat, c_phi, 0.5))) == pytest.approx(0.295)       # .25 + .5 * .3^2
    assert float(_np(rdc.critic_loss(c_phi, np.array([0.25]), c_mix))) == pytest.approx(0.565)  # .05^2 + .75^2


def test_eq1_eq2_against_float64():
    x, x_hat = RNG.uniform(size=(16, 4, 5, 1)), RNG.uniform(size=(16, 4, 5, 1))
    c_phi, c_mix, phi = RNG.normal(size=16), RNG.normal(size=16), RNG.uniform(size=16)
    total, rec, adv = rdc.ae_loss(x.astype("float32"), x_hat.astype("float32"), c_phi.astype("float32"), 0.5,
                                  parts=True)
    assert float(_np(rec)) == pytest.approx(np.mean((x - x_hat) ** 2), rel=1e-5)
    assert float(_np(total)) == pytest.approx(np.mean((x - x_hat) ** 2) + 0.5 * np.mean(c_phi ** 2), rel=1e-5)
    got = float(_np(rdc.critic_loss(c_phi.astype("float32"), phi.astype("float32"), c_mix.astype("float32"))))
    assert got == pytest.approx(np.mean((c_phi - phi) ** 2) + np.mean(c_mix ** 2), rel=1e-5)


def _tiny_ae(shape=(4, 5, 1), seed=0):
    keras.utils.set_random_seed(seed)
    enc, dec = rdc.build_autoencoder(shape, 3, hidden=(8,))
    return enc, dec, rdc.build_critic(shape, hidden=(8,), out_dim=3)


def test_frozen_critic_is_the_critic_with_the_same_input_gradient():
    _, _, critic = _tiny_ae()
    x = RNG.uniform(size=(5, 4, 5, 1))
    np.testing.assert_allclose(_np(rdc.apply_frozen(critic, x.astype("float32"))), _np(critic(x.astype("float32"))),
                               rtol=1e-6)
    g_frozen = grad(lambda v: ops.sum(rdc.apply_frozen(critic, ops.cast(v, "float32"))), x)
    g_live = grad(lambda v: ops.sum(critic(ops.cast(v, "float32"))), x)
    assert np.abs(g_live).max() > 0
    np.testing.assert_allclose(g_frozen, g_live, rtol=1e-5, atol=1e-8)


def _weights(*models):
    return [_np(w).copy() for m in models for w in m.trainable_weights]


def _same(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a, b))


def test_phase1_steps_route_gradients_to_their_own_network_only():
    """An autoencoder step (Eq. 1) leaves the critic bit-identical, a critic step (Eq. 2) leaves the autoencoder
    bit-identical, and over a few alternating steps both change."""
    enc, dec, critic = _tiny_ae()
    cfg = rdc.Config()
    nets = {r: rdc.AcaiStep(enc, dec, critic, None, r, cfg, seed=i + 1) for i, r in enumerate(("ae", "critic"))}
    x = RNG.uniform(size=(16, 4, 5, 1)).astype("float32")
    for net in nets.values():
        net.compile(optimizer=keras.optimizers.Adam(1e-2))
    ae0, c0 = _weights(enc, dec), _weights(critic)
    with rdc._quiet_missing_gradients():
        nets["ae"].train_on_batch(x)
    ae1, c1 = _weights(enc, dec), _weights(critic)
    assert _same(c1, c0) and not _same(ae1, ae0)
    with rdc._quiet_missing_gradients():
        nets["critic"].train_on_batch(x)
    assert _same(_weights(enc, dec), ae1) and not _same(_weights(critic), c1)
    with rdc._quiet_missing_gradients():
        for _ in range(3):  # the autoencoder's Adam has zero moments for the critic: still no update
            nets["ae"].train_on_batch(x)
    c2 = _weights(critic)
    with rdc._quiet_missing_gradients():
        nets["ae"].train_on_batch(x)
    assert _same(_weights(critic), c2)
    nets["critic"].reset_metrics()
    with rdc._quiet_missing_gradients():
        for _ in range(4):
            nets["critic"].train_on_batch(x)
    phi_var = float(nets["critic"].get_metrics_result()["phi_var"])  # per-sample phi ~ U[0, 1]: variance 1/12
    assert 0.05 < phi_var < 0.12


def test_one_model_takes_the_roles_in_turn_with_an_adam_each():
    """A ("critic", "ae") AcaiStep: iteration 0 steps the critic only, iteration 1 the autoencoder only, each with its
    own Adam (step counters 1 and 1, not one shared counter), and a new train_on_batch/fit resumes the turn from
    those counters; phi of role r comes from r's own SeedGenerator."""
    enc, dec, critic = _tiny_ae()
    net = rdc.AcaiStep(enc, dec, critic, None, ("critic", "ae"), rdc.Config(), seed=(5, 6))
    net.compile(optimizer=rdc.RoleAdams(net.roles, 1e-2))
    x = RNG.uniform(size=(16, 4, 5, 1)).astype("float32")
    ae0, c0 = _weights(enc, dec), _weights(critic)
    with rdc._quiet_missing_gradients():
        net.train_on_batch(x)
    ae1, c1 = _weights(enc, dec), _weights(critic)
    assert _same(ae1, ae0) and not _same(c1, c0)
    with rdc._quiet_missing_gradients():
        net.train_on_batch(x)
    assert not _same(_weights(enc, dec), ae1) and _same(_weights(critic), c1)
    assert {r: int(_np(a.iterations)) for r, a in net.optimizer.adams.items()} == {"critic": 1, "ae": 1}
    for role, draws in (("critic", 2), ("ae", 1)):  # each role's generator moved by its own step only: phi, eta
        gen = keras.random.SeedGenerator({"critic": 5, "ae": 6}[role])
        for _ in range(draws):
            keras.random.uniform((16,), seed=gen)
        np.testing.assert_array_equal(_np(net.noises[role].state), _np(gen.state))
    with pytest.raises(ValueError):
        rdc.AcaiStep(enc, dec, critic, None, ("ae", "ae"), rdc.Config(), seed=(1, 2))


# --- Phase 2: Eqs. (3)-(15) -----------------------------------------------------------------------------------------
Z1 = np.array([[0.0], [1.0], [1.5], [4.0], [10.0]])


def _filters(z, m, alpha, beta):
    d, nn = rdc.knn_exact(z, m)
    core = _np(rdc.core_mask(d, alpha))
    rel = _np(rdc.reliable_mask(d, beta))
    sigma = _np(rdc.neighbour_centroids(z[nn], rel))
    return d, nn, core, rel, sigma


def test_filters_1d_by_hand():
    d, nn, core, rel, sigma = _filters(Z1, 2, 0.6, 0.4)
    np.testing.assert_allclose(d, [[1, 1.5], [0.5, 1], [0.5, 1.5], [2.5, 3], [6, 8.5]])       # Eq. (3)
    np.testing.assert_allclose(_np(rdc.core_ratio(d)), [2 / 3, 1 / 2, 1 / 3, 5 / 6, 12 / 17], rtol=1e-12)  # (4)
    assert core.tolist() == [True, False, False, True, True] and rdc.tau(core) == pytest.approx(0.6)  # (5), (15)
    assert rel[core].tolist() == [[True, False]] * 3                                               # (9), beta .4
    np.testing.assert_allclose(sigma[core, 0], [1.0, 1.5, 4.0])                                    # (11)
    _, _, _, rel, sigma = _filters(Z1, 2, 0.6, 0.6)
    assert rel[core].tolist() == [[True, True], [True, True], [True, False]]
    np.testing.assert_allclose(sigma[core, 0], [1.25, 1.25, 4.0])


def test_filters_2d_by_hand_core_means_homogeneous_not_dense():
    z = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [5, 5], [5, 6], [9, 0]], dtype=float)
    d, nn, core, rel, sigma = _filters(z, 3, 0.6, 0.5)
    r = _np(rdc.core_ratio(d))
    np.testing.assert_allclose(r, [2 ** -0.5] * 4 + [1 / 41 ** 0.5, 1 / 50 ** 0.5, 41 ** 0.5 / 8], rtol=1e-12)
    assert np.flatnonzero(core).tolist() == [0, 1, 2, 3, 6] and rdc.tau(core) == pytest.approx(5 / 7)
    np.testing.assert_allclose(sigma[0], [2 / 3, 2 / 3])
    np.testing.assert_allclose(sigma[3], [1 / 3, 1 / 3])
    np.testing.assert_allclose(sigma[6], [5, 5])  # the isolated (9, 0): neighbours at 6.40, 7.21, 8.00 -> core


def test_thresholds_are_inclusive():
    d = np.array([[1.0, 2.0]])                      # r = 0.5 exactly
    assert bool(_np(rdc.core_mask(d, 0.5))[0]) and not bool(_np(rdc.core_mask(d, 0.5 + 1e-7))[0])   # Eq. (5): >=
    assert float(_np(rdc.core_ratio(np.zeros((1, 3))))[0]) == 1.0    # M duplicates: r = 1
    assert float(_np(rdc.core_ratio(np.array([[0.0, 1.0]])))[0]) == 0.0
    d = np.array([[1.0, 1.25, 1.5]])                # h = (0, .25, .5) exactly
    assert _np(rdc.reliable_mask(d, 0.25)).tolist() == [[True, True, False]]                      # Eq. (9): <=
    assert _np(rdc.reliable_mask(d, 0.2499)).tolist() == [[True, False, False]]


def test_self_excluded_by_index_duplicates_kept():
    z = np.array([[0.0], [0.0], [0.0], [0.0], [1.0], [3.0]])  # four copies: self may fall outside the M+1 found
    for m in (2, 3):
        d, nn = rdc.knn_exact(z, m)
        assert not np.any(nn == np.arange(len(z))[:, None])
        assert np.all(d[:4, 0] == 0)
    bank = z.astype("float32")
    idx = np.array([0, 3, 4], "int32")
    d, nn = rdc.neighbour_search(bank[idx], bank, idx, 3)
    d, nn = _np(d), _np(nn)
    assert not np.any(nn == idx[:, None])
    np.testing.assert_allclose(d, [[0, 0, 0], [0, 0, 0], [1, 1, 1]])
    assert float(_np(rdc.core_ratio(np.array([[0.0, 0.0, 1.0]])))[0]) == 0.0  # a duplicate at 0: r = 0


def test_in_graph_search_equals_exact_neighbours():
    z = RNG.normal(size=(300, 4)).astype("float32")
    idx = np.sort(RNG.choice(300, 40, replace=False)).astype("int32")
    d, nn = rdc.neighbour_search(z[idx], z, idx, 5)
    d_ex, nn_ex = rdc.knn_exact(z, 5)
    np.testing.assert_array_equal(_np(nn), nn_ex[idx])
    np.testing.assert_allclose(_np(d), d_ex[idx], rtol=1e-5, atol=1e-6)
    sigma = _np(rdc.neighbour_centroids(z[_np(nn)], rdc.reliable_mask(d, 0.3)))
    np.testing.assert_allclose(sigma, _np(rdc.neighbour_centroids(z[nn_ex[idx]], rdc.reliable_mask(d_ex[idx], 0.3))),
                               rtol=1e-5, atol=1e-6)


def test_eq12_eq14_by_hand_and_targets_are_constants():
    x = np.array([[1.0, 0.0], [0.0, 1.0]])
    x_hat = np.array([[0.5, 0.0], [0.0, 0.0]])
    g_sigma = np.array([[9.0, 9.0], [1.0, 1.0]])
    z, sigma = np.array([[0.0, 0.0], [2.0, 0.0]]), np.array([[5.0, 5.0], [1.0, 1.0]])
    core = np.array([False, True])
    l1, l2 = rdc.proximity_losses(x, x_hat, g_sigma, z, sigma, core)
    assert (float(_np(l1)), float(_np(l2))) == pytest.approx((1.125, 1.0))  # mean(.25, 2), mean(0, 2)
    l1, l2 = rdc.proximity_losses(x, x_hat, g_sigma, z, sigma, core, form="code")
    assert (float(_np(l1)), float(_np(l2))) == pytest.approx((56.25, 0.5))  # 100 * 2.25 / 4, 2 / 4

    def total(**kw):
        args = dict(x=x, x_hat=x_hat, g_sigma=g_sigma, z=z, sigma=sigma)
        def f(v):
            l1, l2 = rdc.proximity_losses(**{**args, **{next(iter(kw)): v}}, core=core)
            return l1 + l2
        return f
    assert np.all(grad(total(sigma=None), sigma) == 0) and np.all(grad(total(g_sigma=None), g_sigma) == 0)
    assert np.all(grad(total(x=None), x) == 0)
    np.testing.assert_allclose(grad(total(x_hat=None), x_hat), [[-0.5, 0.0], [-1.0, -1.0]])  # 2(x_hat - t) / B
    np.testing.assert_allclose(grad(total(z=None), z), [[0.0, 0.0], [1.0, -1.0]])           # core only


@pytest.mark.parametrize("taus,no_increase,unchanged", [
    ([0.5], False, False), ([0.5, 0.55], False, False), ([0.5, 0.55, 0.55], True, True),
    ([0.5, 0.49], True, False), ([0.5, 0.55, 0.56], False, False)])
def test_stopping_rule_at_its_threshold(taus, no_increase, unchanged):
    assert rdc.should_stop(taus, "no_increase") is no_increase
    assert rdc.should_stop(taus, "unchanged") is unchanged
    assert rdc.should_stop(taus, "none") is False


def test_proximity_step_writes_clean_codes_into_the_bank():
    enc, dec, _ = _tiny_ae()
    cfg = rdc.Config().resolve("fmnist")
    net = rdc.ProximityNet(enc, dec, None, 20, cfg)
    net.compile(optimizer=keras.optimizers.Adam(1e-2))
    x = RNG.uniform(size=(20, 4, 5, 1)).astype("float32")
    net.bank.assign(np.full((20, 3), 7.0, "float32"))
    idx = np.array([2, 5, 11, 17], "int32")
    before = _np(enc(x[idx]))
    net.train_on_batch((x[idx], idx))
    bank = _np(net.bank)
    np.testing.assert_allclose(bank[idx], before, rtol=1e-6)
    assert np.all(np.delete(bank, idx, axis=0) == 7.0)
    assert not np.allclose(_np(enc(x[idx])), before)  # the step trained the encoder


# --- Geometry, purity, noise, DEC ------------------------------------------------------------------------------------
def test_twonn_by_hand():
    assert rdc.twonn(np.array([[0.0], [1.0], [3.0], [7.0], [15.0]])) == pytest.approx(1.3566806, rel=1e-6)


def _embedded(points, dim=10, seed=0):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, dim)))
    return np.pad(points, ((0, 0), (0, dim - points.shape[1]))) @ q


def _twonn_reference(x, fraction=0.9):
    """Ansuini et al.'s estimate() on a full float64 distance matrix (an independent implementation)."""
    from scipy.spatial.distance import pdist, squareform

    y = np.sort(squareform(pdist(x)), axis=1)
    k1, k2 = y[:, 1], y[:, 2]
    good = np.setdiff1d(np.arange(len(y)), np.concatenate([np.where(k1 == 0)[0], np.where(k1 == k2)[0]]))
    n = len(good)
    mu = np.sort(k2[good] / k1[good])
    xs, ys = np.log(mu[:-2]), -np.log(1 - (np.arange(1, n + 1) / n)[:-2])
    m = int(np.floor(n * fraction))
    return np.sum(xs[:m] * ys[:m]) / np.sum(xs[:m] ** 2)


def test_twonn_equals_the_reference_estimator():
    z = RNG.normal(size=(400, 4)) @ RNG.normal(size=(4, 7))
    z = np.concatenate([z, z[:5]])  # duplicates: r1 = 0 dropped in both
    assert rdc.twonn(z) == pytest.approx(_twonn_reference(z), rel=1e-10)


@pytest.mark.parametrize("d", [2, 5])
def test_twonn_recovers_the_dimension_of_gaussians(d):
    z = _embedded(np.random.default_rng(0).normal(size=(2000, d)))
    assert rdc.twonn(z) == pytest.approx(d, rel=0.05)


def test_twonn_plane_in_10d_with_duplicates():
    plane = _embedded(np.random.default_rng(3).uniform(size=(2000, 2)))
    plane = np.concatenate([plane, plane[:50]])  # r1 = 0 for 100 points: dropped, not log(inf)
    assert rdc.twonn(plane) == pytest.approx(2.0, rel=0.1)


def _spectrum(variances, n=4000, dim=10, rotate=True, seed=0):
    """Points whose sample covariance has exactly the given eigenvalues (the rest 0)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, len(variances)))
    a -= a.mean(0)
    q, _ = np.linalg.qr(a)
    pts = q * np.sqrt(np.asarray(variances) * (n - 1))
    return _embedded(pts, dim, seed) if rotate else np.pad(pts, ((0, 0), (0, dim - len(variances))))


def test_pca_dim_on_known_spectra():
    z = _spectrum([7.0, 2.5, 0.5])
    np.testing.assert_allclose(np.linalg.eigvalsh(np.cov(z, rowvar=False))[-3:], [0.5, 2.5, 7.0], rtol=1e-9)
    assert rdc.pca_dim(z, 0.9) == 2 and rdc.pca_dim(z, 0.95) == 2 and rdc.pca_dim(z, 0.951) == 3
    assert rdc.pca_dim(z, 0.7) == 1 and rdc.pca_dim(z, 0.7001) == 2
    assert rdc.pca_dim(_spectrum([1.0, 1.0, 1.0]), 0.9) == 3
    axes = _spectrum([7.0, 2.5, 0.5], rotate=False)
    assert rdc.pca_dim(axes, 0.9) == 2 and rdc.pca_dim(axes, 0.9, standardize=True) == 3


def test_curvature_circle_versus_segment():
    t = np.random.default_rng(0).uniform(0, 2 * np.pi, 2000)
    circle = np.stack([np.cos(t), np.sin(t)], 1)
    assert rdc.twonn(circle) == pytest.approx(1.0, abs=0.05) and rdc.pca_dim(circle) == 2
    segment = np.stack([t, 0.5 * t], 1)
    assert rdc.twonn(segment) == pytest.approx(1.0, abs=0.05) and rdc.pca_dim(segment) == 1
    mean_id, mean_lid = rdc.cluster_geometry(np.concatenate([circle, segment + 10]), np.repeat([0, 1], 2000))
    assert mean_id == pytest.approx(1.0, abs=0.05) and mean_lid == 1.5


def test_neighbour_purity_by_hand():
    d, nn, core, rel, _ = _filters(Z1, 2, 0.6, 0.6)
    assert rdc.neighbour_purity(nn, rel, core, np.array([0, 0, 0, 1, 1])) == pytest.approx((0.5, 0.6))


def test_eq16_eq17_robustness_noise():
    x = RNG.uniform(size=(500, 3, 3, 1)).astype("float32")
    x[:, 0, 0, 0] = 0.3  # a constant feature stays 0
    clean = rdc.robust_noise(x, 0.0, seed=1).reshape(500, -1)
    assert clean.shape == (500, 9) and np.all(clean[:, 0] == 0)
    np.testing.assert_allclose(clean[:, 1:].mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(clean[:, 1:].std(0), 1, rtol=1e-5)
    noisy = rdc.robust_noise(x, 0.2, seed=1).reshape(500, -1)
    assert np.std(noisy - clean) == pytest.approx(0.2, rel=0.05)


def test_dec_q_and_target_against_float64():
    z, mu = RNG.normal(size=(40, 3)), RNG.normal(size=(4, 3))
    k = 1 / (1 + ((z[:, None] - mu[None]) ** 2).sum(-1))
    q = k / k.sum(1, keepdims=True)
    np.testing.assert_allclose(_np(rdc.dec_q(z.astype("float32"), mu.astype("float32"))), q, rtol=1e-5)
    w = q ** 2 / q.sum(0)
    np.testing.assert_allclose(rdc.dec_target(q), w / w.sum(1, keepdims=True), rtol=1e-12)
    p = rdc.dec_target(q)
    assert float(_np(rdc.dec_loss(p, q))) == pytest.approx(np.mean((p * np.log(p / q)).sum(1)), rel=1e-5)


def test_batch_stream_restarts_anywhere():
    full = [next(s) for s in [rdc.batch_indices(10, 4, 3, 2)] for _ in range(9)]
    assert [b.tolist() for b in full[5:]] == [next(s).tolist() for s in [rdc.batch_indices(10, 4, 3, 2, 5)]
                                              for _ in range(4)]
    assert sorted(np.concatenate(full[3:6]).tolist()) == list(range(10))  # pass 1 is a permutation
    assert [b.tolist() for b in full[:3]] != [b.tolist() for b in full[3:6]]  # reshuffled every pass
    assert [len(b) for b in full[:3]] == [4, 4, 2]


# --- End to end on a toy: labels never read, resumable -------------------------------------------------------------
def _blobs(n_per=32, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(3, 20)) * 3
    y = np.repeat(np.arange(3), n_per)
    x = (c[y] + rng.normal(size=(3 * n_per, 20)) * 0.5).reshape(-1, 4, 5, 1)
    return ((x - x.min()) / (x.max() - x.min())).astype("float32"), y


def _toy_config(**kw):
    return rdc.Config(**{**dict(pretrain_iters=6, log_every=3, batch_size=32, max_iters=9, phases="P1P2P3",
                                dec_max_iters=6, dec_update_interval=3, dec_tol=0.0, kmeans_n_init=3,
                                stop_rule="none"), **kw})


def _toy_fit(folder=None, labels=True):
    x, y = _blobs()
    kw = {} if folder is None else {"cache_dir": folder, "checkpoint_dir": folder / "run"}
    return rdc.RDC(3, _toy_config(), seed=1, verbose=0, hidden=(16,), **kw).fit(x, y if labels else None)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted toy run (3 blobs in R^20 as 4x5 images, augmentation on), with labels for its logs."""
    return _toy_fit(tmp_path_factory.mktemp("reference"))


def _same_result(a, b):
    for u, v in zip(a.encoder.weights + a.decoder.weights, b.encoder.weights + b.decoder.weights):
        np.testing.assert_array_equal(_np(u), _np(v))
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.extra_labels["P1&P2"], b.extra_labels["P1&P2"])
    assert a.history["phase2"]["tau"] == b.history["phase2"]["tau"]
    for phase, key in (("phase1", "rec"), ("phase2", "l1"), ("phase3", "loss")):
        assert [e[key] for e in a.history[phase]["chunks"]] == [e[key] for e in b.history[phase]["chunks"]]


def test_training_never_reads_labels(reference):
    without = _toy_fit(labels=False)
    _same_result(without, reference)
    h = reference.history
    assert all("eval" in h[p] for p in ("phase1", "phase2", "phase3"))
    assert not any("eval" in without.history[p] for p in ("phase1", "phase2", "phase3"))
    assert len(h["phase2"]["tau"]) == 4 and h["phase2"]["stop"]["reason"] == "max_iters"  # 3 steps per pass
    assert {"acc", "f1_macro", "purity_all", "purity_reliable", "id_true"} <= set(h["phase2"]["eval"][0])
    assert {"tau", "n_core", "id", "lid", "median_d1"} <= set(h["phase2"]["refreshes"][0])
    assert h["phase1"]["roles"] == ["critic", "ae"] and h["phase1"]["chunks"][-1]["critic_phi"] > 0
    for phase in ("phase1", "phase2"):  # health figures: logged, label-free
        assert without.history[phase]["health"] == h[phase]["health"]
    assert {"participation_ratio", "top2_share", "median_std", "rec_mse"} <= set(h["phase2"]["health"])
    assert h["kmeans_start_step"] == 6  # the P1 k-means ran after the 6 phase-1 iterations
    from common import metrics
    y = _blobs()[1]
    assert metrics.acc(y, reference.kmeans_labels) >= 0.95 and metrics.acc(y, reference.extra_labels["P1&P2"]) >= 0.95


class Interrupt(Exception):
    pass


def test_interrupted_in_every_phase_gives_the_uninterrupted_result(reference, tmp_path, monkeypatch):
    """Crashed after phase-1 chunk 1, after phase-2 chunk 2 and after phase-3 chunk 1, resumed each time:
    the weights, labels and curves of the uninterrupted run."""
    from common import checkpoint

    monkeypatch.setattr(checkpoint, "SAVE_EVERY_SECONDS", 0.0)
    calls = {"n": 0}
    original = checkpoint.Checkpoint.save

    def save(self, phase, model, epoch, state=None):
        original(self, phase, model, epoch, state)
        calls["n"] += 1  # saves: phase 1 chunks -> 1, 2; phase 2 -> 3, 4, 5; phase 3 -> 6, 7
        if calls["n"] in (1, 4, 6):
            raise Interrupt

    monkeypatch.setattr(checkpoint.Checkpoint, "save", save)
    run = tmp_path / "run"
    for phase, epoch in (("phase1", 1), ("phase2", 2), ("phase3", 1)):
        with pytest.raises(Interrupt):
            _toy_fit(tmp_path)
        assert json.loads((run / f"{phase}.json").read_text())["epoch"] == epoch
    out = _toy_fit(tmp_path)
    assert out.history["phase1"]["cached"] and out.history["phase2"]["cached"]
    assert out.history["phase3"]["resumed_at"] == [1]
    phase2 = json.loads(next(tmp_path.glob("rdc_phase2_*.json")).read_text())
    phase1 = json.loads(next(tmp_path.glob("rdc_phase1_*.json")).read_text())
    assert phase2["resumed_at"] == [2] and phase1["resumed_at"] == [1]
    _same_result(out, reference)


# --- Readings offered as options (issue 25): each changes exactly what it says; defaults unchanged --------------------
def test_fold_by_hand():  # phi's variance, folded or not: tests/test_health.py (uniform_variance)
    np.testing.assert_allclose(_np(rdc.fold(np.array([0.0, 0.2, 0.5, 0.7, 1.0], "float32"))), [0, 0.2, 0.5, 0.3, 0],
                               atol=1e-7)


def _draws(n=6, **kw):
    """phi (n x 32) and eta (n) drawn alternately, as a "both" step draws them, from one seed."""
    enc, dec, critic = _tiny_ae()
    net = rdc.AcaiStep(enc, dec, critic, None, "both", rdc.Config(**kw), seed=7)
    pairs = [(_np(net.draw_phi(32)), float(_np(net.draw_eta()))) for _ in range(n)]
    return np.concatenate([p for p, _ in pairs]), np.array([e for _, e in pairs])


def test_phi_fold_and_eta_fold_fold_exactly_their_own_coefficient():
    phi, eta = _draws()
    assert (phi > 0.5).any() and (phi < 0.5).any() and (eta > 0.5).any() and (eta < 0.5).any()
    phi_f, eta_f = _draws(phi_fold=True)
    np.testing.assert_allclose(phi_f, np.where(phi > 0.5, 1 - phi, phi), atol=1e-7)   # phi > .5 -> 1 - phi
    np.testing.assert_array_equal(eta_f, eta)
    phi_e, eta_e = _draws(eta_fold=True)
    np.testing.assert_array_equal(phi_e, phi)
    np.testing.assert_allclose(eta_e, np.where(eta > 0.5, 1 - eta, eta), atol=1e-7)


def test_phi_fold_reaches_the_critic_step():
    """The critic's step regresses the folded phi: the batch variance of its phi is ~1/48, not ~1/12."""
    enc, dec, critic = _tiny_ae()
    x = RNG.uniform(size=(256, 4, 5, 1)).astype("float32")
    for fold, target in ((False, 1 / 12), (True, 1 / 48)):
        net = rdc.AcaiStep(enc, dec, critic, None, "critic", rdc.Config(phi_fold=fold), seed=2)
        net.compile(optimizer=keras.optimizers.Adam(1e-3))
        with rdc._quiet_missing_gradients():
            logs = net.train_on_batch(x, return_dict=True)
        assert float(logs["phi_var"]) == pytest.approx(target, rel=0.2)


def test_lambda_t_weights_the_adversarial_term_of_the_autoencoder_step():
    enc, dec, critic = _tiny_ae()
    x = RNG.uniform(size=(32, 4, 5, 1)).astype("float32")
    for lam in (0.5, 0.125):
        net = rdc.AcaiStep(enc, dec, critic, None, "ae", rdc.Config(lambda_t=lam), seed=3)
        net.compile(optimizer=keras.optimizers.Adam(1e-3))
        with rdc._quiet_missing_gradients():
            logs = {k: float(v) for k, v in net.train_on_batch(x, return_dict=True).items()}
        assert logs["adv"] > 0 and logs["loss"] == pytest.approx(logs["rec"] + lam * logs["adv"], rel=1e-5)


def test_simultaneous_step_moves_both_networks_on_one_batch():
    enc, dec, critic = _tiny_ae()
    net = rdc.AcaiStep(enc, dec, critic, None, "both", rdc.Config(acai_schedule="simultaneous"), seed=4)
    net.compile(optimizer=keras.optimizers.Adam(1e-2))
    ae0, c0 = _weights(enc, dec), _weights(critic)
    net.train_on_batch(RNG.uniform(size=(16, 4, 5, 1)).astype("float32"))
    assert not _same(_weights(enc, dec), ae0) and not _same(_weights(critic), c0)
    assert int(_np(net.optimizer.iterations)) == 1


def test_pixel_range_and_validation():
    x = np.array([0.0, 0.25, 1.0], "float32")
    assert rdc.to_pixel_range(x, "01") is x
    np.testing.assert_array_equal(rdc.to_pixel_range(x, "pm1"), [-1.0, -0.5, 1.0])
    assert rdc.Config().pixel_range == "pm1"  # the label-free choice (docstring), not the authors' loader's [0, 1]
    rdc.Config(noise_sigma=0.1)  # the z-score of Eqs. (16)-(17) undoes any pixel range
    for bad in ({"pixel_range": "255"}, {"input_norm": "l2"}, {"tau_patience": -1},
                {"tau_patience": 2, "stop_rule": "unchanged"}):
        with pytest.raises(ValueError):
            rdc.Config(**bad)
    with pytest.raises(ValueError):
        rdc.should_stop([0.5, 0.4], "none", patience=1)


TAUS = [0.40, 0.50, 0.48, 0.49, 0.51, 0.50, 0.50, 0.45]


def _first_stop(taus, **kw):
    return next((t - 1 for t in range(1, len(taus) + 1) if rdc.should_stop(taus[:t], **kw)), None)


@pytest.mark.parametrize("patience,refresh", [(0, 2), (1, 3), (2, 7), (3, None)])
def test_tau_patience_counts_refreshes_without_a_new_best(patience, refresh):
    """Best so far: 0.50 at refresh 1, 0.51 at refresh 4. k = 1 stops at 3 (0.48, 0.49 both below 0.50; a
    'below the previous tau' count would have restarted at 0.49 > 0.48); k = 2 at 7 (0.50, 0.50, 0.45)."""
    assert _first_stop(TAUS, rule="no_increase", patience=patience) == refresh
    assert _first_stop(TAUS, rule="no_increase") == 2


def test_cache_keys_leave_out_logging_intervals_only():
    base = rdc.Config().resolve("fmnist")
    logs = rdc.Config(log_every=7, geometry_every=3, eval_every=2).resolve("fmnist")
    assert logs.phase1_part() == base.phase1_part() and logs.phase2_part() == base.phase2_part()
    for kw in ({"lambda_t": 0.125}, {"phi_fold": True}, {"eta_fold": True}, {"pixel_range": "01"},
               {"acai_schedule": "simultaneous"}, {"pretrain_iters": 5}):
        assert rdc.Config(**kw).resolve("fmnist").phase1_part() != base.phase1_part(), kw
    patient = rdc.Config(tau_patience=2).resolve("fmnist")
    assert patient.phase1_part() == base.phase1_part() and patient.phase2_part() != base.phase2_part()


def _p1_fit(**kw):
    x, _ = _blobs()
    cfg = rdc.Config(**{**dict(phases="P1", pretrain_iters=4, log_every=2, batch_size=32, kmeans_n_init=1), **kw})
    return rdc.RDC(3, cfg, seed=1, verbose=0, hidden=(16,)).fit(x)


@pytest.fixture(scope="module")
def p1_alternate():
    return _p1_fit()


def test_schedules_count_autoencoder_and_critic_updates(p1_alternate):
    """alternate: T1/2 updates each; simultaneous: T1 of both; the plain baseline (Table 3) has as many
    autoencoder updates as ACAI's phase 1 under the same schedule (T1 with plain_steps=iterations)."""
    count = lambda m: {r: int(_np(a.iterations)) for r, a in m.phase1_net.optimizer.adams.items()}  # noqa: E731
    assert count(p1_alternate) == {"critic": 2, "ae": 2}
    h = p1_alternate.history["phase1"]
    assert (h["ae_steps"], h["critic_steps"]) == (2, 2) and h["health"]["ae_steps"] == 2
    sim = _p1_fit(acai_schedule="simultaneous")
    assert count(sim) == {"both": 4}
    assert (sim.history["phase1"]["ae_steps"], sim.history["phase1"]["critic_steps"]) == (4, 4)
    plain = _p1_fit(autoencoder="plain")   # T1 = 4, alternating: ACAI's autoencoder steps 2 times
    assert count(plain) == {"plain": 2} == {"plain": count(p1_alternate)["ae"]}
    assert plain.history["phase1"]["ae_steps"] == 2 and "critic_phi" not in plain.history["phase1"]["health"]
    assert plain.history["kmeans_start_step"] == 2
    assert count(_p1_fit(autoencoder="plain", plain_steps="iterations")) == {"plain": 4}
    assert count(_p1_fit(autoencoder="plain", acai_schedule="simultaneous")) == {"plain": 4}


def test_plain_steps_is_in_the_plain_phase1_cache_key_only():
    """The plain baseline's phase-1 cache tells its step counts apart; ACAI's key does not change with it."""
    part = lambda **kw: rdc.Config(**kw).phase1_part()  # noqa: E731
    assert part(autoencoder="plain") != part(autoencoder="plain", plain_steps="iterations")
    assert part(autoencoder="plain", pretrain_iters=6000)["phase1_iters"] == 3000
    assert part() == part(plain_steps="iterations") and "phase1_iters" not in part()
    with pytest.raises(ValueError, match="plain_steps"):
        rdc.Config(plain_steps="half")


def test_log_interval_does_not_change_phase1(p1_alternate):
    """Why log_every may stay out of the cache key: the same weights with another chunking of the logs."""
    other = _p1_fit(log_every=4)
    for u, v in zip(p1_alternate.encoder.weights + p1_alternate.decoder.weights, other.encoder.weights
                    + other.decoder.weights):
        np.testing.assert_array_equal(_np(u), _np(v))
    assert len(p1_alternate.history["phase1"]["chunks"]) == 2 and len(other.history["phase1"]["chunks"]) == 1


def test_phase1_health_by_recomputation(p1_alternate):
    from common import health

    m = p1_alternate
    h = m.history["phase1"]["health"]
    for key, fn in (("participation_ratio", health.participation_ratio), ("top2_share", health.top_k_share),
                    ("median_std", health.median_std)):
        assert h[key] == pytest.approx(fn(m.z_p1), rel=1e-9)
    x_hat = _np(m.decoder(m.z_p1)).astype(np.float64)
    assert h["rec_mse"] == pytest.approx(np.mean((x_hat - m.x) ** 2), rel=1e-5)
    last = m.history["phase1"]["chunks"][-1]
    assert h["critic_phi"] == last["critic_phi"] and h["phi_var"] == pytest.approx(1 / 12)
    assert h["critic_phi_ratio"] == pytest.approx(last["critic_phi"] * 12)
    assert m.history["kmeans_start_step"] == 4 and "phase2" not in m.history


def test_pixel_range_pm1_trains_on_2x_minus_1():
    x, _ = _blobs()
    m = _p1_fit(pixel_range="pm1", pretrain_iters=2)
    np.testing.assert_array_equal(m.x, 2.0 * x - 1.0)
    h = m.history["phase1"]["health"]
    assert h["rec_mse_01"] == pytest.approx(h["rec_mse"] / 4)
    x_hat = _np(m.decoder(m.z_p1)).astype(np.float64)
    assert h["rec_mse"] == pytest.approx(np.mean((x_hat - (2.0 * x - 1.0)) ** 2), rel=1e-5)


def _phase1_by_steps(m):
    """The former phase 1 for the fitted RDC ``m`` (its data, seed and settings): one single-role AcaiStep per role
    on the same fresh layers, each with its own Adam, stepped by train_on_batch on the phase-1 batch stream.
    Returns (encoder, decoder, critic, [(role, batch size, logs) per iteration])."""
    from common import training

    cfg, x = m.cfg, m.x
    keras.utils.set_random_seed(m.seed)
    enc, dec = rdc.build_autoencoder(x.shape[1:], cfg.embedding_dim, m.hidden)
    critic = rdc.build_critic(x.shape[1:], m.hidden, cfg.embedding_dim) if cfg.autoencoder == "acai" else None
    roles = ["plain"] if cfg.autoencoder == "plain" else ["critic", "ae"] if cfg.acai_schedule == "alternate" \
        else ["both"]  # Algorithm 1: the critic steps first
    aug = training.augmenter(0.1, 10.0, seed=m.seed, stream=1)
    nets = {r: rdc.AcaiStep(enc, dec, critic, aug, r, cfg, seed=training.derived_seed(m.seed, 1, 10 + i))
            for i, r in enumerate(roles)}
    for net in nets.values():
        net.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate))
    stream, steps = rdc.batch_indices(len(x), cfg.batch_size, m.seed, 1), []
    with rdc._quiet_missing_gradients():
        for it in range(cfg.phase1_iters):
            idx, role = next(stream), roles[it % len(roles)]
            logs = nets[role].train_on_batch(x[idx], return_dict=True)
            steps.append((role, len(idx), {k: float(v) for k, v in logs.items()}))
    return enc, dec, critic, steps


@pytest.mark.parametrize("kw", [{}, {"acai_schedule": "simultaneous"}, {"autoencoder": "plain", "plain_steps": "iterations"},
                                {"phi_fold": True, "eta_fold": True, "lambda_t": 0.125, "pixel_range": "01"}])
def test_phase1_fit_is_the_train_on_batch_loop_within_tolerance(kw):
    """Phase 1 through resumable_fit (one model, two Adams) against the former loop of train_on_batch over one
    model per role: the same weights and, per chunk and role, the batch-size-weighted mean of the step logs, to
    float rounding (fit traces the step with an unknown batch size). 7 iterations in chunks of 3 (the last one a
    single step, the second starting with the autoencoder), batches of 40, 40, 16.

    Tolerance in units of Adam's learning rate: Adam divides each gradient entry by its own scale, so where an entry
    is near eps (1e-7, e.g. a hidden unit active on one sample) a rounding-level change of the gradient moves that
    weight by a fraction of lr. Another CPU's CI run saw 0.033 lr on 10 % of one tensor (here: 1.5e-5 lr). Wrong
    loops move most weights by about lr: a swapped role order, one Adam shared by both roles, lr × 1.1 or one step
    dropped gave a largest difference of 1.0–6.5 lr and a per-tensor median up to 0.4–1.0 lr."""
    m = _p1_fit(pretrain_iters=7, log_every=3, batch_size=40, **kw)
    enc, dec, critic, steps = _phase1_by_steps(m)
    lr = m.cfg.learning_rate
    for u, v in zip(_weights(m.encoder, m.decoder, *[m.critic] * (critic is not None)),
                    _weights(enc, dec, *[critic] * (critic is not None))):
        assert np.abs(u - v).max() <= 0.25 * lr and np.median(np.abs(u - v)) <= 0.01 * lr
    chunks, roles = m.history["phase1"]["chunks"], m.history["phase1"]["roles"]
    assert [(e["step"], e["iterations"]) for e in chunks] == [(3, 3), (6, 3), (7, 1)]
    assert {r: int(_np(a.iterations)) for r, a in m.phase1_net.optimizer.adams.items()} == \
        {r: sum(s[0] == r for s in steps) for r in roles}
    told = False
    for c, entry in enumerate(chunks):
        for role in roles:
            mine = [(n, logs) for r, n, logs in steps[3 * c:3 * c + 3] if r == role]
            if not mine:
                assert entry[f"loss_{role}"] is None and not set(rdc._ROLE_LOGS[role]) & set(entry)
                continue
            # a log that is a tiny part of its loss (adv, about 1e-4 of it) compares to 1e-5 of the loss as well: a CI
            # run saw adv 3.423e-5 against 3.407e-5 (4e-7 of the loss) with the weights within the bound above
            loss = abs(sum(n * logs["loss"] for n, logs in mine) / sum(n for n, _ in mine))
            for key in ("loss",) + rdc._ROLE_LOGS[role]:
                mean = sum(n * logs[key] for n, logs in mine) / sum(n for n, _ in mine)
                assert entry[key if key != "loss" else f"loss_{role}"] == pytest.approx(mean, rel=1e-3, abs=1e-5 * loss), \
                    (c, key)
                told |= abs(mean - mine[-1][1][key]) > 1e-2 * abs(mean)  # a mean, not the last step (gaps 0.18-2.6)
    assert told


def test_phase1_interrupted_twice_resumes_to_the_uninterrupted_run(tmp_path, monkeypatch):
    """Phase 1 alone, 7 iterations in chunks of 3, crashed after chunk 1 (the next iteration is the autoencoder's)
    and after chunk 2: the weights of all three networks, both Adams' states and every chunk log of the
    uninterrupted run, bit for bit."""
    from common import checkpoint

    monkeypatch.setattr(checkpoint, "SAVE_EVERY_SECONDS", 0.0)
    x, y = _blobs()
    cfg = dict(phases="P1", pretrain_iters=7, log_every=3, batch_size=40, kmeans_n_init=1)
    fit = lambda folder=None: rdc.RDC(3, rdc.Config(**cfg), seed=1, verbose=0, hidden=(16,),  # noqa: E731
                                      checkpoint_dir=folder).fit(x, y)
    reference = fit()
    calls, original = {"n": 0}, checkpoint.Checkpoint.save

    def save(self, phase, model, epoch, state=None):
        original(self, phase, model, epoch, state)
        calls["n"] += 1
        if calls["n"] in (1, 2):
            raise Interrupt

    monkeypatch.setattr(checkpoint.Checkpoint, "save", save)
    for _ in range(2):
        with pytest.raises(Interrupt):
            fit(tmp_path)
    out = fit(tmp_path)
    assert out.history["phase1"]["resumed_at"] == [1, 2] and reference.history["phase1"]["resumed_at"] == []
    for a, b in ((out.encoder, reference.encoder), (out.decoder, reference.decoder), (out.critic, reference.critic)):
        assert _same(_weights(a), _weights(b))
    assert _same([_np(v) for v in out.phase1_net.optimizer.variables],
                 [_np(v) for v in reference.phase1_net.optimizer.variables])
    drop = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h["phase1"]["chunks"]]  # noqa: E731
    assert drop(out.history) == drop(reference.history) and len(drop(out.history)) == 3
    assert out.history["phase1"]["eval"] == reference.history["phase1"]["eval"]


def test_tau_patience_in_a_run(monkeypatch):
    """Phase 2 stops at the refresh should_stop names for the scripted tau sequence (k = 1: refresh 3, one pass of
    3 steps per refresh; the default rule would stop at refresh 2)."""
    taus = iter(TAUS)
    monkeypatch.setattr(rdc, "tau", lambda core: next(taus))
    m = _p1_fit(phases="P1P2", pretrain_iters=2, max_iters=30, tau_patience=1, eval_every=100, geometry_every=100)
    h = m.history["phase2"]
    assert h["tau"] == TAUS[:4] and h["stop"]["refresh"] == 3 and h["stop"]["step"] == 9
    assert h["stop"]["patience"] == 1 and h["health"]["tau_last"] == TAUS[3] and h["health"]["refreshes"] == 4


def test_curve_draws_the_kmeans_start_where_it_happened():
    from common import plots

    run = {"seed": 0, "baseline_metrics": {"kmeans_on_pretrained_embedding": {"acc": 0.44, "nmi": 0.4}},
           "history": {"kmeans_start_step": 6000,
                       "phase1": {"eval": [{"step": 3000, "acc": 0.30}, {"step": 6000, "acc": 0.35}]},
                       "phase2": {"eval": [{"step": 0, "acc": 0.36}, {"step": 274, "acc": 0.40}]}}}
    c = plots.training_curve(run)
    assert c["step"] == [3000, 6000, 6000, 6000, 6274] and c["acc"] == [0.30, 0.35, 0.44, 0.36, 0.40]
    assert c["start"] == 2
    fig = plots.curves_figure([run])
    squares = [ln for ln in fig.axes[0].lines if ln.get_marker() == "s"]
    assert [list(ln.get_xdata()) for ln in squares] == [[6000]]
    del run["history"]["kmeans_start_step"]  # older result files: at step 0, as before
    c = plots.training_curve(run)
    assert c["step"][:2] == [0, 3000] and c["acc"][0] == 0.44 and c["start"] == 0


def test_prepare_input_is_what_fit_feeds():
    x, _ = _blobs()
    for kw in ({}, {"pixel_range": "01"}, {"input_norm": "l2", "pixel_range": "01"}):
        cfg = rdc.Config(**kw)
        x_fed = rdc.to_pixel_range(rdc.normalise_input(x, cfg.input_norm), cfg.pixel_range)
        np.testing.assert_array_equal(rdc.prepare_input(x, cfg), x_fed)
    np.testing.assert_array_equal(rdc.prepare_input(x, rdc.Config(pixel_range="pm1")), 2 * x - 1)


def test_noise_protocol_is_blind_to_the_pixel_range():
    """Eqs. (16)-(17) z-score every feature first, so [0, 1] and [-1, 1] pixels give the same noisy data (a noise
    applied after the 2 x - 1 map, or a range applied after the noise, would not)."""
    x, _ = _blobs()
    a = rdc.robust_noise(rdc.to_pixel_range(x, "pm1"), 0.1, seed=3)
    b = rdc.robust_noise(rdc.to_pixel_range(x, "01"), 0.1, seed=3)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    assert np.abs(rdc.to_pixel_range(b, "pm1") - a).max() > 0.5


# --- Figs. 2 and 16: the feature-twist experiment (experiments/rdc_feature_twist.py) ------------------------------------
def test_feature_twist_scores_by_hand():
    from experiments import rdc_feature_twist as twist

    z = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [12.0]])
    y = np.array([0, 0, 1, 1, 1, 1])
    s = twist.latent_scores(np.hstack([z, z]), z, y, k=2)
    # 2-NN labels: (0, 1), (0, 1), (0, 0) against own 1, then all 1: 8 of 12 agree; k-means {0,1,2} {10,11,12}: 5 of 6
    assert s == {"kmeans_acc": pytest.approx(5 / 6), "trustworthiness": pytest.approx(1.0),
                 "knn_agreement": pytest.approx(2 / 3)}
    x, y4 = twist.four_arcs(n_per=50, seed=3)
    assert x.shape == (200, 2) and np.bincount(y4).tolist() == [50] * 4
    np.testing.assert_allclose(x.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(x.std(0), 1, rtol=1e-5)
    np.testing.assert_array_equal(twist.four_arcs(n_per=50, seed=3)[0], x)
    assert not np.array_equal(twist.four_arcs(n_per=50, seed=4)[0], x)


def test_feature_twist_pretrains_for_its_epochs():
    """Figs. 2/16 pre-train the plain autoencoder for pre_epochs passes over the data (not ACAI's half)."""
    from experiments import rdc_feature_twist as twist

    out = twist.feature_twist_experiment(pre_epochs=2, fine_epochs=1, snapshot_every=1, n_per=16)
    assert out["per_pass"] == 1 and out["pre_steps"] == 2


def test_cache_names_keep_the_key_of_the_queue_caches(tmp_path):
    """The phase caches (common.estimator.cache_path) are named as R-DC named them before the shared skeleton:
    rdc_<phase>_seed<k>_<hash of the settings, data fingerprint, seed, hidden sizes, numerics version>, so caches
    written by earlier code with the same golden outputs are found (a 'code' or 'hidden' left out would not)."""
    from common import golden, training

    m = rdc.RDC(3, rdc.Config(), seed=4, cache_dir=tmp_path, hidden=(16,))
    m.x = _blobs()[0]
    part = m.cfg.phase1_part()
    key = training.config_hash({**part, "code": golden.numerics_version("rdc"), **training.data_fingerprint(m.x),
                                "seed": 4, "hidden": [16]})
    assert m._cache("phase1", part) == tmp_path / f"rdc_phase1_seed4_{key}.weights.h5"


def test_departures_are_a_table_whose_options_exist():
    """Every row renders (four non-empty strings) and every `--set key=...` it names is a Config field (a renamed or
    misspelt option would not be)."""
    import dataclasses
    import re

    from common.tables import departures_markdown

    table = departures_markdown(rdc.DEPARTURES)
    assert table.count("\n") == len(rdc.DEPARTURES) + 1
    named = {k for row in rdc.DEPARTURES for k in re.findall(r"--set (\w+)", row[3])}
    fields = {f.name for f in dataclasses.fields(rdc.Config)}
    assert {"phi_fold", "eta_fold", "pixel_range", "acai_schedule", "loss_form", "tau_patience", "n_neighbors",
            "lid_threshold"} <= named and named <= fields, named - fields
    assert all(isinstance(t, str) and isinstance(n, str) and n for t, n in rdc.NOTES)


def test_fit_feeds_the_same_noisy_data_whatever_the_pixel_range():
    """With noise_sigma the z-score of Eq. (16) replaces the pixel range: fit's inputs are bit-identical for [0, 1]
    and [-1, 1] (a range applied before the noise would differ in float rounding; one applied after would shift)."""
    x, _ = _blobs()
    fed = {}
    for pr in ("01", "pm1"):
        m = _p1_fit(pixel_range=pr, noise_sigma=0.1, pretrain_iters=2)
        fed[pr] = m.x
    np.testing.assert_array_equal(fed["01"], fed["pm1"])
    np.testing.assert_array_equal(fed["01"], rdc.robust_noise(x, 0.1, 1))

