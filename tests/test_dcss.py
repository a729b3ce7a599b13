"""DCSS equations against hand computations and float64 references; the K-step schedule; a smoke run."""
import keras
import numpy as np
import pytest
from keras import ops

from conftest import blobs, fit_with_and_without_labels, grad
from papers import dcss

RNG = np.random.default_rng(0)


def np_(t):
    return np.asarray(ops.convert_to_numpy(t), dtype=np.float64)


def np_memberships(u, c, m):
    """Eq. (2) literally: p_ik = 1 / sum_j (||u_i - mu_k|| / ||u_i - mu_j||)^(2/(m-1))."""
    d = np.sqrt(((u[:, None, :] - c[None]) ** 2).sum(-1))
    return 1.0 / ((d[:, :, None] / d[:, None, :]) ** (2.0 / (m - 1.0))).sum(-1)


# --- Eq. (2) ---------------------------------------------------------------------------------------------------
def test_eq2_memberships_by_hand():
    # u at the origin, centres at distances 1 and 2; m = 1.5: p proportional to d^(-4) -> 1 and 1/16
    p = np_(dcss.memberships(np.zeros((1, 2), "float32"), np.array([[1.0, 0.0], [0.0, 2.0]], "float32"), 1.5))
    np.testing.assert_allclose(p, [[16 / 17, 1 / 17]], rtol=1e-6)
    # m = 2: p proportional to d^(-2) -> 1 and 1/4
    p = np_(dcss.memberships(np.zeros((1, 2), "float32"), np.array([[1.0, 0.0], [0.0, 2.0]], "float32"), 2.0))
    np.testing.assert_allclose(p, [[4 / 5, 1 / 5]], rtol=1e-6)


@pytest.mark.parametrize("m", [1.1, 1.5, 2.0])
def test_eq2_sums_to_one_and_matches_float64(m):
    u, c = RNG.normal(size=(40, 10)), RNG.normal(size=(7, 10))
    p = np_(dcss.memberships(u.astype("float32"), c.astype("float32"), m))
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(p, np_memberships(u, c, m), rtol=2e-4, atol=1e-6)


def test_eq2_point_on_a_centre_is_finite():
    p = np_(dcss.memberships(np.array([[1.0, 0.0]], "float32"), np.array([[1.0, 0.0], [0.0, 2.0]], "float32"), 1.5))
    assert np.all(np.isfinite(p)) and p[0, 0] == pytest.approx(1.0)


# --- Eqs. (1a)-(1c) --------------------------------------------------------------------------------------------
def test_eq1_phase1_loss_by_hand():
    x = np.array([[1.0, 2.0], [0.0, 0.0]])
    x_hat = np.array([[1.0, 0.0], [1.0, 1.0]])      # ||x - x_hat||^2 = 4, 2
    u = np.array([[0.0, 0.0], [3.0, 4.0]])
    center = np.array([0.0, 0.0])                   # ||u - mu||^2 = 0, 25
    p_k = np.array([1.0, 0.25])                     # p^1.5 = 1, 0.125
    total, l_r, l_c = (float(np_(v)) for v in dcss.phase1_loss(x, x_hat, u, p_k, center, 1.5, 0.1, parts=True))
    assert l_r == pytest.approx(1 * 4 + 0.125 * 2)
    assert l_c == pytest.approx(0.125 * 25)
    assert total == pytest.approx(4.25 + 0.1 * 3.125)


def test_eq1_against_float64_and_gradients():
    n, d, m, alpha = 6, 3, 1.5, 0.1
    x, x_hat = RNG.uniform(size=(n, 4, 4, 1)), RNG.uniform(size=(n, 4, 4, 1))
    u, c, p = RNG.normal(size=(n, d)), RNG.normal(size=(d,)), RNG.uniform(size=(n,))
    w = p ** m
    want = (w * ((x - x_hat) ** 2).reshape(n, -1).sum(1)).sum() + alpha * (w * ((u - c) ** 2).sum(1)).sum()
    assert float(np_(dcss.phase1_loss(x, x_hat, u, p, c, m, alpha))) == pytest.approx(want, rel=1e-10)
    # dL/du_i = 2 alpha p_ik^m (u_i - mu_k); the memberships are constants (no gradient through p)
    g_u = grad(lambda v: dcss.phase1_loss(x, x_hat, v, p, c, m, alpha), u)
    np.testing.assert_allclose(g_u, 2 * alpha * w[:, None] * (u - c), rtol=1e-10)
    g_p = grad(lambda v: dcss.phase1_loss(x, x_hat, u, v, c, m, alpha), p)
    np.testing.assert_allclose(g_p, 0.0)


# --- Eq. (3) ---------------------------------------------------------------------------------------------------
def test_eq3_against_direct_weighted_mean():
    u, m = RNG.normal(size=(50, 4)), 1.5
    p = RNG.dirichlet(np.ones(5), size=50)
    got = np_(dcss.update_centers(u, p, m))
    want = np.stack([np.average(u, axis=0, weights=p[:, k] ** m) for k in range(5)])
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_eq3_by_hand():
    u = np.array([[0.0], [4.0]])
    p = np.array([[1.0, 0.0], [0.25, 0.75]])   # weights p^2 (m = 2): column 0: 1, 1/16
    got = np_(dcss.update_centers(u, p, 2.0))
    assert got[0, 0] == pytest.approx((0 * 1 + 4 / 16) / (1 + 1 / 16))
    assert got[1, 0] == pytest.approx(4.0)


# --- Eqs. (4)-(5) ----------------------------------------------------------------------------------------------
def test_eq4_pairwise_loss_on_a_hand_made_batch():
    q = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    # q q^T = [[1,1,0,.5],[1,1,0,.5],[0,0,1,.5],[.5,.5,.5,.5]]
    s = np.array([[0.9, 0.9, 0.1, 0.5],
                  [0.9, 0.9, 0.1, 0.85],
                  [0.1, 0.1, 0.9, 0.5],
                  [0.5, 0.85, 0.5, 0.3]])
    # similar (s > 0.8): (0,0),(0,1),(1,0),(1,1),(2,2) -> 1 - qq = 0 each; (1,3),(3,1) -> 1 - 0.5 each
    # dissimilar (s < 0.2): (0,2),(1,2),(2,0),(2,1) -> qq = 0 each; (3,3) s = 0.3 is ambiguous
    assert float(np_(dcss.pairwise_loss(s, q, 0.8, 0.2))) == pytest.approx(1.0)
    # now make (0,3),(3,0) dissimilar (s = 0.1): + 2 * 0.5
    s2 = s.copy()
    s2[0, 3] = s2[3, 0] = 0.1
    assert float(np_(dcss.pairwise_loss(s2, q, 0.8, 0.2))) == pytest.approx(2.0)
    n_sim, n_dis = (float(np_(v)) for v in dcss.pair_counts(s2, 0.8, 0.2))
    assert (n_sim, n_dis) == (2.0, 3.0)   # i < j: {(0,1),(1,3)} and {(0,2),(1,2),(0,3)}


def test_eq4_against_float64_and_gradient():
    q = RNG.dirichlet(np.ones(4), size=12)
    s = RNG.uniform(size=(12, 12))
    s = (s + s.T) / 2
    qq = q @ q.T
    want = np.sum((s > 0.8) * (1 - qq) + (s < 0.2) * qq)
    assert float(np_(dcss.pairwise_loss(s, q, 0.8, 0.2))) == pytest.approx(want, rel=1e-10)
    # d/dq_i = sum_j (B_ij + B_ji) q_j with B = 1{s < gamma} - 1{s > zeta}
    b = (s < 0.2).astype(float) - (s > 0.8).astype(float)
    g = grad(lambda v: dcss.pairwise_loss(s, v, 0.8, 0.2), q)
    np.testing.assert_allclose(g, (b + b.T) @ q, rtol=1e-10)


def test_u_and_q_space_similarity():
    # by hand: a sure member of cluster 0, a sure member of 1, and an undecided sample
    p = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    np.testing.assert_allclose(np_(dcss.similarity(p)), [[1, 0, .5], [0, 1, .5], [.5, .5, .5]], rtol=1e-12)
    p = RNG.dirichlet(np.ones(3), size=5)
    want = np.array([[sum(p[i, k] * p[j, k] for k in range(3)) for j in range(5)] for i in range(5)])
    np.testing.assert_allclose(np_(dcss.similarity(p)), want, rtol=1e-12)


@pytest.mark.parametrize("use_q", [0.0, 1.0])
def test_phase2_loss_is_eq4_before_the_switch_and_eq5_after(use_q):
    """Phase2Net's loss with use_q = 0 is Eq. (4) (s = p_i^T p_j, p from Eq. (2) on u and the centres) and with
    use_q = 1 Eq. (5) (s = q_i^T q_j), against float64 references; the two differ on this batch."""
    keras.utils.set_random_seed(0)
    cfg = dcss.Config(zeta=0.6, gamma=0.4)
    enc = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    mnet = dcss.build_mnet(3, 2)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(30, 4)).astype("float32")
    centers = np.array([[1.0, 0.0, 0.0], [-1.0, 0.5, 0.0]], "float32")
    net = dcss.Phase2Net(enc, mnet, centers, cfg)
    u, q = net(x)
    u64, q64 = np_(u), np_(q)
    p64 = np_memberships(u64, centers.astype(np.float64), cfg.m)

    def eq45(s):
        qq = q64 @ q64.T
        return np.sum((s > cfg.zeta) * (1 - qq) + (s < cfg.gamma) * qq)

    want = {0.0: eq45(p64 @ p64.T), 1.0: eq45(q64 @ q64.T)}
    assert abs(want[0.0] - want[1.0]) > 1.0
    net.use_q.assign(use_q)
    assert float(np_(net.compute_loss(x=x, y_pred=(u, q)))) == pytest.approx(want[use_q], rel=1e-4)


def test_phase2_switches_to_q_space_after_T2_epochs():
    """Phase 2 of a fit: epoch 1 (<= T2 = 1) trains on Eq. (4), epoch 2 on Eq. (5). With learning rates too small to
    move a float32 weight, the loss and the pair counts of each epoch's single step (batch = all samples) can be
    recomputed from the final network: u-space with the phase-1 centres, then q-space."""
    x, _ = blobs(40, 2, 16)
    cfg = dcss.Config(batch_size=40, ae_epochs=0, phase1_epochs=0, phase2_epochs=2, T2=1, lr_ae=1e-9, lr_mnet=1e-9,
                      kmeans_n_init=2, zeta=0.6, gamma=0.4, m=1.02)   # m near 1: confident memberships
    model = dcss.DCSS(2, cfg, seed=0, cache_dir=None, verbose=0).fit(x)
    hist = model.history["phase2"]
    u = model.encoder(x, training=True)                                # the step's view: batch statistics
    q = model.mnet(u, training=True)

    def loss_and_counts(s):
        return (float(np_(dcss.pairwise_loss(s, q, cfg.zeta, cfg.gamma))),
                [float(np_(c)) for c in dcss.pair_counts(s, cfg.zeta, cfg.gamma)])

    u_space = loss_and_counts(dcss.similarity(dcss.memberships(u, model.centers_phase1, cfg.m)))
    q_space = loss_and_counts(dcss.similarity(q))
    u_space_late = loss_and_counts(dcss.similarity(dcss.memberships(u, model.centers, cfg.m)))  # centres after T2
    assert len(hist["loss"]) == 2 and hist["similarity_space"] == ["u", "q"]
    assert hist["loss"][0] == pytest.approx(u_space[0], rel=1e-4)
    assert [hist["similar_pairs"][0], hist["dissimilar_pairs"][0]] == u_space[1]
    assert hist["loss"][1] == pytest.approx(q_space[0], rel=1e-4)
    assert [hist["similar_pairs"][1], hist["dissimilar_pairs"][1]] == q_space[1]
    # the spaces are told apart on this data: the check above would fail for a phase 2 that stays in u-space
    assert not np.isclose(q_space[0], u_space[0], rtol=1e-2) and not np.isclose(q_space[0], u_space_late[0], rtol=1e-2)


# --- the K-step schedule of phase 1 ----------------------------------------------------------------------------
def test_k_step_stream_repeats_each_batch_k_times():
    x = np.arange(10, dtype="float32").reshape(10, 1, 1, 1)
    stream = dcss.k_step_batches(x, 4, 3, seed=0)
    items = [next(stream)[0] for _ in range(9)]     # 3 batches (4, 4, 2) x K = 3
    for b in range(3):
        group = items[3 * b:3 * b + 3]
        assert [int(k[0]) for _, k in group] == [0, 1, 2]
        assert all(np.array_equal(group[0][0], xb) for xb, _ in group)
        assert all(np.all(k == k[0]) and len(k) == len(xb) for xb, k in group)
    seen = np.concatenate([items[3 * b][0].ravel() for b in range(3)])
    assert sorted(seen.tolist()) == list(range(10))   # one pass covers every sample once


def test_k_step_schedule_makes_k_updates_per_batch_with_cluster_k():
    keras.utils.set_random_seed(0)
    x = RNG.uniform(size=(24, 16, 16, 1)).astype("float32")
    enc, dec = dcss.build_autoencoder((16, 16, 1), 4)
    centers = RNG.normal(size=(3, 4)).astype("float32")
    net = dcss.Phase1Net(enc, dec, centers, 1.5, 0.1)
    net.compile(optimizer=keras.optimizers.Adam(1e-5))
    net((x[:2], np.zeros(2, "int32")))
    # the loss of a step with index k is Eq. (1a) for cluster k, p from Eq. (2) on the current u
    xb = x[:8]
    for k in (0, 2):
        kk = np.full(8, k, "int32")
        x_hat, u = net((xb, kk), training=False)
        got = float(np_(net.compute_loss(x=(xb, kk), y_pred=(x_hat, u))))
        p = np_memberships(np_(u), centers.astype(np.float64), 1.5)
        want = float(np_(dcss.phase1_loss(xb, x_hat, u, p[:, k].astype("float32"), centers[k], 1.5, 0.1)))
        assert got == pytest.approx(want, rel=1e-5)
    w0 = np_(enc.get_layer("u").kernel).copy()
    n_batches = 3                                   # 24 samples, batch 8
    net.fit(dcss.k_step_batches(x, 8, 3), steps_per_epoch=n_batches * 3, epochs=1, verbose=0)
    assert int(np_(net.optimizer.iterations)) == n_batches * 3     # K optimiser updates per batch
    assert not np.allclose(np_(enc.get_layer("u").kernel), w0)


# --- optimisers, networks, tables ------------------------------------------------------------------------------
def test_multi_rate_adam_gives_the_encoder_its_own_rate():
    keras.utils.set_random_seed(0)
    enc = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="enc_d")], name="enc")
    head = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="head_d")], name="head")
    opt = dcss.MultiRateAdam(1e-3, enc.trainable_variables, 1e-2)
    variables = enc.trainable_variables + head.trainable_variables
    before = [np_(v).copy() for v in variables]
    grads = [ops.ones(v.shape) for v in variables]
    opt.apply_gradients(zip(grads, variables))
    # Adam's first step moves every coordinate by lr (gradient sign): 1e-5 for the encoder, 1e-3 for the head
    steps = [np.abs(np_(v) - b) for v, b in zip(variables, before)]
    for s in steps[:2]:
        np.testing.assert_allclose(s, 1e-5, rtol=1e-2)  # float32 round-off
    for s in steps[2:]:
        np.testing.assert_allclose(s, 1e-3, rtol=1e-2)


@pytest.mark.parametrize("n", [16, 28])
def test_autoencoder_shapes(n):
    enc, dec = dcss.build_autoencoder((n, n, 1), 10)
    z = enc(np.zeros((2, n, n, 1), "float32"))
    assert tuple(z.shape) == (2, 10) and tuple(dec(z).shape) == (2, n, n, 1)
    assert sum(1 for layer in enc.layers if layer.name.endswith("_c")) == 3   # three bottleneck blocks
    with pytest.raises(ValueError):
        dcss.build_autoencoder((32, 32, 1))


def test_mnet_architecture():
    mnet = dcss.build_mnet(10, 7)
    dense = [layer for layer in mnet.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == [128, 128, 128, 7]
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in mnet.layers) == 3
    q = np_(mnet(RNG.normal(size=(5, 10)).astype("float32")))
    np.testing.assert_allclose(q.sum(1), 1.0, rtol=1e-5)


def test_paper_results_and_config():
    assert dcss.PAPER_RESULTS["DCSS"]["usps"]["acc"] == pytest.approx(0.8721)
    assert dcss.PAPER_RESULTS["DCSS_u"]["2mnist"]["nmi"] == pytest.approx(0.63)
    assert dcss.PAPER_RESULTS["GANMM"]["2mnist"] is None
    assert dcss.PAPER_RESULTS["DKM+MNet"]["usps"]["nmi"] == pytest.approx(0.7802)
    cfg = dcss.Config()
    assert (cfg.alpha, cfg.m, cfg.T1, cfg.phase1_epochs, cfg.T2, cfg.phase2_epochs) == (0.1, 1.5, 2, 200, 5, 20)
    assert (cfg.zeta, cfg.gamma, cfg.lr_ae, cfg.lr_mnet) == (0.8, 0.2, 1e-5, 1e-3)
    with pytest.raises(ValueError):
        dcss.Config(zeta=0.1, gamma=0.2)
    with pytest.raises(ValueError):
        dcss.Config(m=1.0)
    for prof in dcss.PROFILES.values():
        assert set(prof) <= {"subset_per_class", "ae_epochs", "phase1_epochs", "phase2_epochs", "eval_every"}


# Phase 1: 2 epochs of 2 batches, K = 3 runs per batch, centres updated (Eq. 3) after epoch T1 = 2 only.
FIT_CFG = dict(batch_size=20, ae_epochs=1, phase1_epochs=2, T1=2, phase2_epochs=2, T2=1, kmeans_n_init=2,
               eval_every=1)


@pytest.fixture(scope="module")
def fitted():
    """The same run with labels and without; the k-means initialisation of each recorded."""
    x, y = blobs(40, 3, 16)
    return fit_with_and_without_labels(
        lambda x, labels: dcss.DCSS(3, dcss.Config(**FIT_CFG), seed=0, cache_dir=None, verbose=0).fit(x, labels), x, y)


def test_fit_phase1_schedule_and_centre_update(fitted):
    model, init, x = fitted["without_y"], fitted["without_y_kmeans"], fitted["x"]
    h = model.history["phase1"]
    assert h["optimizer_steps"] == 2 * 2 * 3                       # epochs x batches x K
    np.testing.assert_array_equal(model.kmeans_labels, init["labels"])
    # the only centre update (end of epoch T1 = 2 = the last) is Eq. (3) with p from Eq. (2) at the k-means
    # centres, both on the final phase-1 embedding
    u, c0 = np.asarray(model.u_phase1, np.float64), init["centers"].astype(np.float64)
    w = np_memberships(u, c0, model.cfg.m) ** model.cfg.m
    want = (w.T @ u) / w.sum(0)[:, None]
    np.testing.assert_allclose(model.centers_phase1, want, rtol=1e-4, atol=1e-5)
    assert np.abs(want - c0).max() > 1e-3                          # the update did move them
    d2 = ((u[:, None] - model.centers_phase1[None].astype(np.float64)) ** 2).sum(-1)
    np.testing.assert_array_equal(model.labels_u, d2.argmin(1))     # DCSS_u: nearest phase-1 centre


def test_fit_prediction_is_argmax_q(fitted):
    model, x = fitted["without_y"], fitted["x"]
    q = model.predict_proba(x)
    np.testing.assert_allclose(q, np_(model.mnet(model.encoder(x, training=False), training=False)), rtol=1e-4,
                               atol=1e-6)
    np.testing.assert_allclose(q.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(model.predict(x), q.argmax(1))


def test_labels_feed_only_the_evaluation_log(fitted):
    a, b = fitted["with_y"], fitted["without_y"]
    for key in ("z", "centers", "labels"):
        np.testing.assert_array_equal(fitted["with_y_kmeans"][key], fitted["without_y_kmeans"][key])
    for net in ("encoder", "decoder", "mnet"):
        for wa, wb in zip(getattr(a, net).get_weights(), getattr(b, net).get_weights()):
            np.testing.assert_array_equal(wa, wb)
    np.testing.assert_array_equal(a.centers_phase1, b.centers_phase1)
    np.testing.assert_array_equal(a.centers, b.centers)
    x = fitted["x"]
    np.testing.assert_array_equal(a.predict(x), b.predict(x))
    np.testing.assert_array_equal(a.labels_u, b.labels_u)
    for phase in ("phase1", "phase2"):
        assert a.history[phase]["loss"] == b.history[phase]["loss"]
        assert len(a.history[phase]["eval"]) == 2 and "eval" not in b.history[phase]   # the log did run


def test_fit_rejects_non_finite_images():
    with pytest.raises(ValueError):
        dcss.DCSS(3, dcss.Config(), verbose=0).fit(np.full((4, 16, 16, 1), np.nan, "float32"))


def test_phase1_cache_reproduces_phase1_and_is_keyed_on_its_settings(tmp_path):
    x = RNG.uniform(size=(40, 16, 16, 1)).astype("float32")
    cfg = dcss.Config(batch_size=20, ae_epochs=1, phase1_epochs=1, phase2_epochs=1, T1=1, kmeans_n_init=2)
    fresh = dcss.DCSS(3, cfg, seed=0, cache_dir=tmp_path, verbose=0).fit(x)
    assert len(list(tmp_path.glob("phase1_seed0_*.weights.h5"))) == 1
    cached = dcss.DCSS(3, dcss.Config(**{**cfg.__dict__, "zeta": 0.7}), seed=0, cache_dir=tmp_path, verbose=0).fit(x)
    assert cached.history["phase1"]["cached"] and "cached" not in fresh.history["phase1"]
    np.testing.assert_allclose(cached.centers_phase1, fresh.centers_phase1, rtol=1e-6)
    np.testing.assert_allclose(cached.u_phase1, fresh.u_phase1, rtol=1e-5, atol=1e-6)
    assert cached.history["phase1"]["optimizer_steps"] == fresh.history["phase1"]["optimizer_steps"] == 2 * 3
    dcss.DCSS(3, dcss.Config(**{**cfg.__dict__, "alpha": 0.2}), seed=0, cache_dir=tmp_path, verbose=0).fit(x)
    assert len(list(tmp_path.glob("phase1_seed0_*.weights.h5"))) == 2  # a phase-1 setting changed: no reuse


def test_smoke_run_via_cli(tmp_path):
    from common import cli, datasets

    if datasets.find("usps/usps_train.jf.gz", "usps/usps.h5", "usps/usps.bz2") is None:
        pytest.skip("USPS not available")
    rec = cli.run_one(dcss, "dcss", "usps", "smoke", 0, tmp_path / "r", {}, verbose=0)
    assert 0.0 <= rec["metrics"]["acc"] <= 1.0 and "DCSS_u" in rec["extra_metrics"]
    arrays = np.load(tmp_path / "r" / "seed0.npz")
    assert arrays["q"].shape == (200, 10) and arrays["u_phase1"].shape == (200, 10)


# --- the authors' code as opt-in options: phase1_optimizer, q_clip, mnet_layers ----------------------------------
def test_q_clip_by_hand_zeroes_the_gradient_of_confident_entries():
    q = np.array([[0.995, 0.005], [0.6, 0.4]])
    s = np.full((2, 2), 0.9)                        # every ordered pair similar: L = sum_ij 1 - q_i^T q_j
    # clipped q_0 = (1, 0): q~ q~^T = [[1, .6], [.6, .52]] -> L = 0 + .4 + .4 + .48
    assert float(np_(dcss.pairwise_loss(s, q, 0.8, 0.2, clip=True))) == pytest.approx(1.28, rel=1e-12)
    # unclipped: q q^T = [[.99005, .599], [.599, .52]]
    assert float(np_(dcss.pairwise_loss(s, q, 0.8, 0.2))) == pytest.approx(0.00995 + 2 * 0.401 + 0.48, rel=1e-12)
    # dL/dq_i = -2 sum_j q~_j for an unclipped row, 0 for the clipped entries (both of row 0)
    g = grad(lambda v: dcss.pairwise_loss(s, v, 0.8, 0.2, clip=True), q)
    np.testing.assert_allclose(g, [[0.0, 0.0], [-3.2, -0.8]], rtol=1e-12)
    g = grad(lambda v: dcss.pairwise_loss(s, v, 0.8, 0.2), q)
    np.testing.assert_allclose(g, [[-3.19, -0.81], [-3.19, -0.81]], rtol=1e-12)
    # the thresholds are strict, as in the code: 0.99 and 0.01 themselves are kept
    np.testing.assert_allclose(np_(dcss.clip_q(np.array([[0.99, 0.01, 0.991, 0.009]]))), [[0.99, 0.01, 1.0, 0.0]],
                               rtol=1e-6, atol=0)


@pytest.mark.parametrize("q_clip", [False, True])
def test_phase2_q_clip_clips_the_products_not_the_similarity(q_clip):
    """Phase2Net in q space: s = q_i^T q_j from the unclipped q (the code's `multiply`), the products in the loss
    from the clipped q when cfg.q_clip. The pair (0, 1) has s = 0.799 unclipped but 0.802 clipped (> zeta)."""
    cfg = dcss.Config(q_clip=q_clip)
    q = np.array([[0.995, 0.005], [0.802, 0.198], [0.05, 0.95]])
    net = dcss.Phase2Net(keras.Sequential([keras.Input((3,)), keras.layers.Dense(3)]), dcss.build_mnet(3, 2),
                         np.zeros((2, 3), "float32"), cfg)
    net.use_q.assign(1.0)

    def reference(s_from, products_from):
        s, qq = s_from @ s_from.T, products_from @ products_from.T
        return np.sum((s > cfg.zeta) * (1 - qq) + (s < cfg.gamma) * qq)

    clipped = np.where(q > 0.99, 1.0, np.where(q < 0.01, 0.0, q))
    want = {False: reference(q, q), True: reference(q, clipped)}
    # by hand: clipped, pairs (0,0): 0, (0,2) and (2,0): 0.05 each, (2,2): 1 - 0.905; unclipped 0.00995, 0.0545, 0.095
    assert want[True] == pytest.approx(0.195) and want[False] == pytest.approx(0.21395)
    assert reference(clipped, clipped) == pytest.approx(0.195 + 2 * (1 - 0.802))   # s clipped too: a wrong reading
    u = RNG.normal(size=(3, 3)).astype("float32")
    got = float(np_(net.compute_loss(x=u, y_pred=(u, q.astype("float32")))))
    assert got == pytest.approx(want[q_clip], rel=1e-5)


def test_phase1_optimizer_authors_sgd_is_the_codes_sgd():
    opt = dcss.build_phase1_optimizer(dcss.Config(phase1_optimizer="authors_sgd"))
    assert isinstance(opt, keras.optimizers.SGD) and not opt.nesterov
    assert float(np_(opt.learning_rate)) == pytest.approx(1e-6) and opt.momentum == pytest.approx(0.9)
    # PyTorch's SGD: buf = 0.9 buf + g (buf = g at the first step), w -= 1e-6 buf
    w = keras.Variable(np.zeros(1, "float32"))
    opt.apply_gradients([(ops.convert_to_tensor(np.array([1000.0], "float32")), w)])
    assert float(np_(w)[0]) == pytest.approx(-1e-3, rel=1e-5)
    opt.apply_gradients([(ops.convert_to_tensor(np.array([-500.0], "float32")), w)])
    assert float(np_(w)[0]) == pytest.approx(-1e-3 - 1e-6 * (0.9 * 1000 - 500), rel=1e-5)
    default = dcss.build_phase1_optimizer(dcss.Config())            # §6: Adam, lr_ae
    assert isinstance(default, keras.optimizers.Adam) and float(np_(default.learning_rate)) == pytest.approx(1e-5)
    # the code's clustering_cost sums over the batch (not a mean): a batch twice over doubles the loss
    x, x_hat, u = RNG.uniform(size=(3, 2, 2, 1)), RNG.uniform(size=(3, 2, 2, 1)), RNG.normal(size=(3, 2))
    p, c = RNG.uniform(size=3), RNG.normal(size=2)
    once = float(np_(dcss.phase1_loss(x, x_hat, u, p, c, 1.5, 0.1)))
    twice = float(np_(dcss.phase1_loss(*(np.concatenate([a, a]) for a in (x, x_hat, u, p)), c, 1.5, 0.1)))
    assert twice == pytest.approx(2 * once, rel=1e-12)
    # a cached Adam phase 1 is not reused for the SGD one
    assert dcss.Config(phase1_optimizer="authors_sgd").phase1_part() != dcss.Config().phase1_part()


def test_options_defaults_and_bad_values():
    from common import cli

    cfg = dcss.Config()
    assert (cfg.phase1_optimizer, cfg.q_clip, cfg.mnet_layers, cfg.mnet_hidden) == ("adam", False, 3, 128)
    got = cli.parse_overrides(["phase1_optimizer=authors_sgd", "q_clip=true", "mnet_layers=2"], dcss.Config)
    assert got == {"phase1_optimizer": "authors_sgd", "q_clip": True, "mnet_layers": 2}
    dcss.Config(**got)
    for bad in ({"phase1_optimizer": "sgd"}, {"phase1_optimizer": "Adam"}, {"q_clip": "yes"}, {"q_clip": 1},
                {"mnet_layers": 0}):
        with pytest.raises(ValueError):
            dcss.Config(**bad)


def _dense_widths(model):
    return [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)]


def test_fit_with_the_authors_options():
    """phase1_optimizer, mnet_layers reach the fit: phase 1's optimiser (read off the trained network) is the code's
    SGD, the MNet is the code's d-128-128-K (§5's default: test_fit_default_options)."""
    x, _ = blobs(40, 2, 16)
    cfg = dcss.Config(batch_size=40, ae_epochs=0, phase1_epochs=1, phase2_epochs=1, kmeans_n_init=1,
                      phase1_optimizer="authors_sgd", mnet_layers=2, q_clip=True)
    model = dcss.DCSS(2, cfg, seed=0, cache_dir=None, verbose=0).fit(x)
    assert model.history["phase1"]["optimizer"] == {"name": "SGD", "learning_rate": pytest.approx(1e-6),
                                                    "momentum": pytest.approx(0.9)}
    assert _dense_widths(model.mnet) == [128, 128, 2]


def test_fit_default_options(fitted):
    model = fitted["without_y"]
    assert model.history["phase1"]["optimizer"] == {"name": "Adam", "learning_rate": pytest.approx(1e-5),
                                                    "momentum": None}
    assert _dense_widths(model.mnet) == [128, 128, 128, 3]


# --- cluster sizes, label-free ---------------------------------------------------------------------------------
def test_cluster_sizes_are_logged_without_labels(fitted):
    a, b, x = fitted["with_y"], fitted["without_y"], fitted["x"]
    for model in (a, b):
        h = model.history
        assert h["pretrain"]["kmeans_cluster_sizes"] == np.bincount(model.kmeans_labels, minlength=3).tolist()
        assert h["phase1"]["cluster_sizes"] == np.bincount(model.labels_u, minlength=3).tolist()
        assert len(h["phase2"]["cluster_sizes"]) == FIT_CFG["phase2_epochs"]
        assert h["phase2"]["cluster_sizes"][-1] == np.bincount(model.predict(x), minlength=3).tolist()
        assert all(sum(sizes) == len(x) for sizes in h["phase2"]["cluster_sizes"])
    for key in ("kmeans_cluster_sizes",):
        assert a.history["pretrain"][key] == b.history["pretrain"][key]
    for phase in ("phase1", "phase2"):
        assert a.history[phase]["cluster_sizes"] == b.history[phase]["cluster_sizes"]
    # the evaluation log reads the same prediction as the size log
    assert [e["nonempty_clusters"] for e in a.history["phase2"]["eval"]] == \
        [int(np.count_nonzero(s)) for s in a.history["phase2"]["cluster_sizes"]]


def test_cluster_size_log_survives_a_resume():
    sizes = dcss.ClusterSizes(lambda a: a, np.array([0, 2, 2]), 3)
    center_cb = dcss.CenterUpdate(None, None)
    get, set_ = dcss._phase_state(None, center_cb, sizes)
    set_({"eval": [], "center_updates": 4, "cluster_sizes": [[1, 1, 1]]})
    sizes.on_epoch_end(0)
    assert get() == {"eval": [], "center_updates": 4, "cluster_sizes": [[1, 1, 1], [1, 0, 2]]}
    np.testing.assert_array_equal(sizes.labels, [0, 2, 2])


# --- benchmarks/dcss_step_sizes.py: the arithmetic ---------------------------------------------------------------
def test_step_sizes_steady_state_arithmetic():
    from benchmarks import dcss_step_sizes as st

    r = st.steady_state_steps(0.5)                  # 0.5 * 1e-6 / (1 - 0.9) = 5e-6 against Adam's 1e-5
    assert r == {"sgd": pytest.approx(5e-6), "adam": 1e-5, "sgd_over_adam": pytest.approx(0.5)}
    assert st.steady_state_steps(2.0, sgd_lr=1e-3, momentum=0.0, adam_lr=1e-3)["sgd_over_adam"] == pytest.approx(2.0)
    with pytest.raises(ValueError):
        st.steady_state_steps(1.0, momentum=1.0)
    # the formulas against Keras's optimisers on a constant gradient g = 100: SGD's step tends to
    # 1e-6 * 100 / 0.1 = 1e-3, Adam's to its learning rate
    for opt, want in ((keras.optimizers.SGD(1e-6, momentum=0.9), st.steady_state_steps(100.0)["sgd"]),
                      (keras.optimizers.Adam(1e-5), st.steady_state_steps(100.0)["adam"])):
        w = keras.Variable(np.zeros(1, "float32"))
        g = ops.convert_to_tensor(np.array([100.0], "float32"))
        for _ in range(150):
            before = float(np_(w)[0])
            opt.apply_gradients([(g, w)])
        assert before - float(np_(w)[0]) == pytest.approx(want, rel=2e-3)


def test_step_sizes_layer_medians_by_hand():
    from benchmarks import dcss_step_sizes as st

    steps = [{"enc/a/kernel": np.array([1.0, -2.0]), "enc/a/bias": np.array([3.0]), "dec/b/kernel": np.array([10.0])},
             {"enc/a/kernel": np.array([-1.0, -4.0]), "enc/a/bias": np.array([7.0]), "dec/b/kernel": np.array([-10.0])}]
    got = st.layer_medians(steps)
    assert list(got) == ["enc/a", "dec/b"]
    # enc/a: |g| over both steps 1, 2, 3, 1, 4, 7 -> 2.5; mean over steps (0, -3, 5) -> 3
    assert got["enc/a"] == {"coordinates": 3, "median_abs_grad": 2.5, "median_abs_mean_grad": 3.0}
    assert got["dec/b"] == {"coordinates": 1, "median_abs_grad": 10.0, "median_abs_mean_grad": 0.0}


def test_step_sizes_gradient_of_eq1_by_hand():
    """phase1_gradients on a linear AE: dL^k/dc (decoder bias) = sum_i p_ik^m 2 (x_hat_i - x_i)."""
    from benchmarks import dcss_step_sizes as st

    keras.utils.set_random_seed(0)
    enc = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="e")], name="enc")
    dec = keras.Sequential([keras.Input((2,)), keras.layers.Dense(4, name="d")], name="dec")
    x = RNG.uniform(size=(5, 4)).astype("float32")
    centers = np.array([[0.5, 0.0], [-0.5, 0.3]], "float32")
    g = st.phase1_gradients(enc, dec, x, centers, 1, 1.5, 0.1)
    u = np_(enc(x))
    w = np_memberships(u, centers.astype(np.float64), 1.5)[:, 1] ** 1.5
    want = (w[:, None] * 2 * (np_(dec(u)) - x)).sum(0)
    np.testing.assert_allclose(g[dec.get_layer("d").bias.path], want, rtol=1e-4)


# --- the 2MNIST composite (common/datasets.py) -----------------------------------------------------------------
def _idx_bytes(arr):
    arr = np.asarray(arr, dtype=np.uint8)
    return bytes([0, 0, 8, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape) + arr.tobytes()


def test_two_mnist_concatenates_with_offset_labels(tmp_path, monkeypatch):
    import gzip

    from common import datasets

    monkeypatch.setattr(datasets, "search_dirs", lambda: [tmp_path])
    monkeypatch.setattr(datasets, "_download", lambda rel: None)
    monkeypatch.setattr(datasets, "CHECKSUMS", {})
    rng = np.random.default_rng(0)
    for folder, labels in (("mnist", np.arange(5) % 10), ("fashion-mnist", np.array([0, 9, 3, 3, 1]))):
        (tmp_path / folder).mkdir()
        for split, sl in (("train", slice(0, 3)), ("t10k", slice(3, 5))):
            imgs = rng.integers(0, 256, (len(labels[sl]), 28, 28))
            (tmp_path / folder / f"{split}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(imgs)))
            (tmp_path / folder / f"{split}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(labels[sl])))
    ds = datasets.load("2mnist")
    assert ds.x.shape == (10, 28, 28, 1)
    np.testing.assert_array_equal(ds.y, [0, 1, 2, 3, 4, 10, 19, 13, 13, 11])


def test_real_two_mnist():
    from common import datasets

    if datasets.find("mnist/train-images-idx3-ubyte.gz") is None or \
            datasets.find("fashion-mnist/train-images-idx3-ubyte.gz") is None:
        pytest.skip("MNIST or Fashion-MNIST files not available")
    ds = datasets.load("2mnist")
    assert ds.x.shape == (140000, 28, 28, 1) and ds.n_clusters == 20
    assert np.bincount(ds.y[:70000]).size == 10 and ds.y[70000:].min() == 10


def test_stage_cache_keys(tmp_path, monkeypatch):
    """Phase 1's cache is keyed by its settings (not the logging interval nor phase 2's), the data, the seed and
    golden.numerics_version('dcss'); the AE's and phase 1's entries are distinct."""
    from common import golden

    version = {"dcss": "n1"}
    monkeypatch.setattr(golden, "numerics_version", lambda paper: version[paper])
    x = np.zeros((10, 16, 16, 1), "float32")

    def key(stage="phase1", seed=0, data=x, **cfg):
        c = dcss.Config(**cfg)
        part = c.phase1_part() if stage == "phase1" else c.autoencoder_part()
        return dcss.DCSS(3, c, seed=seed, cache_dir=tmp_path).cache_path(stage, part, data)

    before = key()
    assert before.name.startswith("phase1_seed0_") and key("ae").name.startswith("ae_seed0_")
    assert key(eval_every=3, zeta=0.7, gamma=0.1, phase2_epochs=2, lr_mnet=0.1, q_clip=True, mnet_layers=2) == before
    for change in ({"T1": 3}, {"alpha": 0.2}, {"m": 2.0}, {"lr_ae": 1e-4}, {"ae_epochs": 3},
                   {"phase1_optimizer": "authors_sgd"}, {"seed": 1}, {"data": x + 1}):
        assert key(**change) != before, change
    version["dcss"] = "n2"
    assert key() != before
