"""DECS equations against hand computations and float64 references; gradients against Eqs. (10)-(11), (22)."""
import numpy as np
import pytest
from keras import ops

from conftest import blobs, fit_with_and_without_labels, grad
from papers import decs

RNG = np.random.default_rng(0)


def np_q(z, m, alpha):
    d2 = ((z[:, None, :] - m[None]) ** 2).sum(-1)
    k = (1 + d2 / alpha) ** (-(alpha + 1) / 2)
    return k / k.sum(1, keepdims=True)


def test_eq5_soft_assignment_by_hand():
    # one sample at the origin, centres at distance^2 1 and 4; alpha = 1: kernels 1/2 and 1/5
    q = ops.convert_to_numpy(decs.soft_assignment(np.zeros((1, 2)), np.array([[1.0, 0], [0, 2.0]]), 1.0))
    np.testing.assert_allclose(q, [[(1 / 2) / (1 / 2 + 1 / 5), (1 / 5) / (1 / 2 + 1 / 5)]], rtol=1e-6)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_eq5_against_float64(alpha):
    z, m = RNG.normal(size=(50, 10)), RNG.normal(size=(7, 10))
    q = ops.convert_to_numpy(decs.soft_assignment(z.astype("float32"), m.astype("float32"), alpha))
    np.testing.assert_allclose(q, np_q(z, m, alpha), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(q.sum(1), 1, rtol=1e-5)


def brute_force_otsu(values, bins=1000):
    """Tries every split between bins on the binned values; returns the lower class's last bin centre."""
    centres = (np.arange(bins) + 0.5) / bins
    b = np.clip(np.floor(values * bins).astype(int), 0, bins - 1)
    v = centres[b]
    best, best_t = -1.0, None
    for t in np.unique(v)[:-1]:
        lo, hi = v[v <= t], v[v > t]
        w0, w1 = lo.size / v.size, hi.size / v.size
        score = w0 * w1 * (lo.mean() - hi.mean()) ** 2
        if score > best + 1e-12:
            best, best_t = score, t
    return best_t


@pytest.mark.parametrize("seed", range(4))
def test_otsu_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    # a soft-assignment-like matrix: one large entry per row, small others
    q = np_q(rng.normal(size=(256, 10)) * 3, rng.normal(size=(10, 10)) * 3, 1.0)
    t = float(ops.convert_to_numpy(decs.otsu_threshold(q.astype("float32"))))
    assert t == pytest.approx(brute_force_otsu(q.ravel()), abs=1e-6)


def test_otsu_two_spikes_by_hand():
    # values at 0.1 and 0.8: every split between them separates perfectly; the first (bin of 0.1) is chosen
    q = np.array([[0.1, 0.8], [0.1, 0.8]], dtype="float32")
    assert float(ops.convert_to_numpy(decs.otsu_threshold(q))) == pytest.approx(0.1005)


def test_eq6_determinacy_by_hand():
    q = np.array([[0.0, 0.1, 0.2, 0.55, 1.0]], dtype="float32")
    t = np.float32(0.2)
    # paper: (q-t)^2/t^2 below t, (q-t)^2/(1-t)^2 at or above
    want_paper = [1.0, 0.25, 0.0, (0.35 / 0.8) ** 2, 1.0]
    want_code = [1.0, 0.5, 0.0, 0.35 / 0.8, 1.0]
    np.testing.assert_allclose(ops.convert_to_numpy(decs.determinacy(q, t, "paper"))[0], want_paper, rtol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(decs.determinacy(q, t, "code"))[0], want_code, rtol=1e-5)
    with pytest.raises(ValueError):
        decs.determinacy(q, t, "other")


def test_eq7_stability_by_hand_and_trace_form():
    fq = np.array([[1.0, 0.0, 0.5, 0.5]])
    # mean 0.5, population variance (0.25+0.25+0+0)/4 = 0.125; lambda 0.8 -> 0.5 - 0.1
    assert float(ops.convert_to_numpy(decs.sample_stability(fq, 0.8))[0]) == pytest.approx(0.4)
    # Eq. (7) literally: (1/k) f I^T - (lam/k) tr[(f - (1/k) f I^T I)^T (f - (1/k) f I^T I)]
    f = RNG.uniform(size=(1, 6))
    k, lam, one = 6, 0.8, np.ones((1, 6))
    centred = f - (f @ one.T @ one) / k
    literal = (f @ one.T / k - lam / k * np.trace(centred.T @ centred)).item()
    assert float(ops.convert_to_numpy(decs.sample_stability(f, lam))[0]) == pytest.approx(literal)


def test_eq8_loss_forms():
    q = np_q(RNG.normal(size=(32, 5)) * 2, RNG.normal(size=(5, 5)) * 2, 1.0)
    t = 0.3
    for variant, lam in (("paper", 0.8), ("code", 0.4)):
        fq = np.where(q < t, np.abs(q - t) / t, np.abs(q - t) / (1 - t))
        fq = fq ** 2 if variant == "paper" else fq
        sq = fq.mean(1) - lam * fq.var(1)
        want = 1 - sq.mean() if variant == "paper" else 1 - (sq.mean() + sq.var())
        got = float(ops.convert_to_numpy(decs.stability_loss(q, t, lam, variant)))
        assert got == pytest.approx(want, rel=1e-6)


def test_eq10_gradient_of_stability():
    k, lam = 5, 0.8
    f = RNG.uniform(size=(1, k))
    g = grad(lambda v: ops.sum(decs.sample_stability(v, lam)), f)
    analytic = 1 / k - 2 * lam / k * (f - f.mean())  # Eq. (10)
    np.testing.assert_allclose(g, analytic, rtol=1e-6)


def test_eq11_gradient_of_determinacy():
    t = 0.3
    q = RNG.uniform(size=(4, 6))
    g = grad(lambda v: ops.sum(decs.determinacy(v, t, "paper")), q)
    analytic = np.where(q < t, 2 * (q - t) / t ** 2, 2 * (q - t) / (1 - t) ** 2)  # Eq. (11)
    np.testing.assert_allclose(g, analytic, rtol=1e-6)


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_eq22_gradient_of_q_wrt_own_centre(alpha):
    # dq_ij/dm_j = (alpha+1)/alpha * (z_i - m_j) / (1 + ||z_i - m_j||^2/alpha) * q_ij (1 - q_ij)
    z, m = RNG.normal(size=(1, 3)), RNG.normal(size=(4, 3))
    j = 2
    g = grad(lambda c: decs.soft_assignment(z, c, alpha)[0, j], m)
    q = np_q(z, m, alpha)[0, j]
    diff = z[0] - m[j]
    analytic = (alpha + 1) / alpha * diff / (1 + diff @ diff / alpha) * q * (1 - q)
    np.testing.assert_allclose(g[j], analytic, rtol=1e-6)


def test_threshold_is_a_constant_in_the_gradient():
    # the loss gradient w.r.t. q must be the chain (9)-(11) with t held fixed, although t depends on q
    q = np_q(RNG.normal(size=(16, 4)) * 2, RNG.normal(size=(4, 4)) * 2, 1.0)
    t = float(ops.convert_to_numpy(decs.otsu_threshold(q)))
    g = grad(lambda v: decs.stability_loss(v, decs.otsu_threshold(v), 0.8, "paper"), q)
    n, k, lam = q.shape[0], q.shape[1], 0.8
    f = np.where(q < t, (q - t) ** 2 / t ** 2, (q - t) ** 2 / (1 - t) ** 2)
    dsq_df = 1 / k - 2 * lam / k * (f - f.mean(1, keepdims=True))
    df_dq = np.where(q < t, 2 * (q - t) / t ** 2, 2 * (q - t) / (1 - t) ** 2)
    np.testing.assert_allclose(g, -1 / n * dsq_df * df_dq, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("shape", [(16, 16, 1), (28, 28, 1), (32, 32, 1)])
def test_autoencoder_architecture(shape):
    import keras

    enc, dec = decs.build_autoencoder(shape, 10)
    convs = [l for l in enc.layers if isinstance(l, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [32, 64, 128, 256]
    assert all(c.kernel_size == (3, 3) and c.strides == (1, 1) and c.activation.__name__ == "relu" for c in convs)
    assert sum(isinstance(l, keras.layers.BatchNormalization) for l in enc.layers) == 4
    assert sum(isinstance(l, keras.layers.MaxPooling2D) for l in enc.layers) == 3
    assert enc.get_layer("embedding").activation.__name__ == "linear"          # a linear embedding (§3.2)
    deconvs = [l for l in dec.layers if isinstance(l, keras.layers.Conv2DTranspose)]
    assert [d.filters for d in deconvs] == [128, 64, 32, shape[2]] and [d.strides for d in deconvs][-1] == (1, 1)
    assert dec.get_layer("reconstruction").activation.__name__ == "linear"
    x = RNG.uniform(size=(2,) + shape).astype("float32")
    z = enc(x)
    assert tuple(z.shape) == (2, 10) and tuple(dec(z).shape) == (2,) + shape


def test_config_variants_and_errors():
    assert (decs.Config().alpha, decs.Config().lam) == (1.0, 0.8)
    assert (decs.Config(variant="code").alpha, decs.Config(variant="code").lam) == (0.5, 0.4)
    assert decs.Config(variant="code", lam=0.9).lam == 0.9
    with pytest.raises(ValueError):
        decs.Config(variant="nope")


def test_paper_results_are_table_1():
    assert decs.PAPER_RESULTS["DECS"]["usps"] == {"acc": 0.992, "nmi": 0.976}
    assert decs.PAPER_RESULTS["DCEC"]["fmnist"] is None
    assert decs.PAPER_RESULTS["k-means"]["mnist-test"] == {"acc": 0.542, "nmi": 0.500}


# --- the clustering step (Algorithm 1, lines 4-7): one step by hand ---------------------------------------------
def _flip_augment():
    """A deterministic stand-in for the augmentation: 1 - x in training, the identity otherwise."""
    import keras

    class Flip(keras.layers.Layer):
        def call(self, x, training=False):
            return 1.0 - x if training else x

    return Flip()


@pytest.mark.parametrize("variant", ["paper", "code"])
def test_clustering_step_moves_centres_and_encoder_by_the_gradient_on_augmented_input(variant):
    """One SGD step of StabilityNet equals -lr times the float64 gradient of Eq. (8) w.r.t. the centres and the
    encoder, taken at the *augmented* batch, with t held constant: the centres are trained (Algorithm 1, line 7:
    'update m'), and the step sees the augmentation."""
    import keras

    cfg = decs.Config(variant=variant)
    n, d, e, k, lr = 32, 6, 2, 3, 0.5
    rng = np.random.default_rng(7)
    x = rng.uniform(size=(n, d)).astype("float32")
    keras.utils.set_random_seed(0)
    enc = keras.Sequential([keras.Input((d,)), keras.layers.Dense(e)])
    m0 = (rng.normal(size=(k, e)) * 1.5).astype("float32")
    net = decs.StabilityNet(enc, m0, cfg, _flip_augment())
    net.compile(optimizer=keras.optimizers.SGD(lr))
    q = net(x, training=True)
    t = float(ops.convert_to_numpy(decs.otsu_threshold(q, cfg.otsu_bins)))     # Otsu on the float32 batch q
    w0, b0 = (np.asarray(a, np.float64) for a in enc.get_weights())
    xa = 1.0 - x.astype(np.float64)                                            # the augmented batch
    loss = lambda z, m: decs.stability_loss(decs.soft_assignment(z, m, cfg.alpha), t, cfg.lam, variant)  # noqa: E731
    g_m = grad(lambda m: loss(ops.matmul(xa, ops.convert_to_tensor(w0)) + b0, m), m0.astype(np.float64))
    g_w = grad(lambda w: loss(ops.matmul(ops.convert_to_tensor(xa), w) + b0, m0.astype(np.float64)), w0)
    assert np.abs(g_m).max() > 1e-3 and np.abs(g_w).max() > 1e-3                # a step that can be seen
    # the un-augmented batch would give another gradient: the check below can tell them apart
    g_plain = grad(lambda m: loss(x.astype(np.float64) @ w0 + b0, m), m0.astype(np.float64))
    assert not np.allclose(g_plain, g_m, rtol=1e-2, atol=1e-4)
    net.fit(x, epochs=1, batch_size=n, shuffle=False, verbose=0)
    scale_m, scale_w = np.abs(g_m).max(), np.abs(g_w).max()
    np.testing.assert_allclose((m0 - ops.convert_to_numpy(net.centers)) / lr, g_m, rtol=1e-3, atol=1e-3 * scale_m)
    np.testing.assert_allclose((w0 - enc.get_weights()[0]) / lr, g_w, rtol=1e-3, atol=1e-3 * scale_w)


# --- a tiny end-to-end run, with labels and without -------------------------------------------------------------
FIT_CFG = dict(ae_epochs=1, cluster_iters=6, log_every=2, batch_size=16, kmeans_n_init=2)


@pytest.fixture(scope="module")
def fitted():
    """The same run with labels and without; the k-means initialisation (embedding, centres) of each recorded."""
    x, y = blobs(48, 3, 16)
    return fit_with_and_without_labels(
        lambda x, labels: decs.DECS(3, decs.Config(**FIT_CFG), seed=0, cache_dir=None, verbose=0).fit(x, labels), x, y)


def test_fit_trains_the_centres_and_the_encoder(fitted):
    model, init, x = fitted["without_y"], fitted["without_y_kmeans"], fitted["x"]
    np.testing.assert_array_equal(model.kmeans_labels_, init["labels"])
    assert int(ops.convert_to_numpy(model.net.optimizer.iterations)) == FIT_CFG["cluster_iters"]
    assert model.history["cluster"]["iterations"] == FIT_CFG["cluster_iters"]
    centres = ops.convert_to_numpy(model.net.centers)
    # Adam(1e-3) moves every trained coordinate by about 1e-3 per step: 6 steps move the centres visibly
    assert np.abs(centres - init["centers"]).max() > 1e-3
    assert np.abs(model.embed(x) - init["z"]).max() > 1e-3


def test_fit_clustering_step_is_augmented_and_prediction_is_not(fitted):
    model, x = fitted["without_y"], fitted["x"]
    weights = model.net.get_weights()
    try:
        a, b = (ops.convert_to_numpy(model.net(x, training=True)) for _ in range(2))
        assert np.abs(a - b).max() > 1e-4                  # the trained network draws a new augmentation each call
        c, d = (ops.convert_to_numpy(model.net(x, training=False)) for _ in range(2))
        np.testing.assert_array_equal(c, d)
    finally:
        model.net.set_weights(weights)                      # the training-mode calls moved BatchNorm statistics


def test_predict_is_argmax_of_eq5_at_the_final_centres(fitted):
    model, x = fitted["without_y"], fitted["x"]
    z = np.asarray(model.embed(x), np.float64)
    want = np_q(z, np.asarray(ops.convert_to_numpy(model.net.centers), np.float64), model.cfg.alpha)
    np.testing.assert_allclose(model.predict_proba(x), want, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(model.predict(x), want.argmax(1))


def test_labels_feed_only_the_evaluation_log(fitted):
    a, b = fitted["with_y"], fitted["without_y"]
    for key in ("z", "centers", "labels"):
        np.testing.assert_array_equal(fitted["with_y_kmeans"][key], fitted["without_y_kmeans"][key])
    for wa, wb in zip(a.net.get_weights() + a.decoder.get_weights(), b.net.get_weights() + b.decoder.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    x = fitted["x"]
    np.testing.assert_array_equal(a.predict(x), b.predict(x))
    assert a.history["cluster"]["loss"] == b.history["cluster"]["loss"]
    assert a.history["pretrain"]["loss"] == b.history["pretrain"]["loss"]
    assert len(a.history["cluster"]["eval"]) == 3 and "eval" not in b.history["cluster"]   # the log did run


def test_fit_rejects_non_finite_images():
    with pytest.raises(ValueError):
        decs.DECS(3, decs.Config(ae_epochs=1, cluster_iters=2, log_every=2), verbose=0).fit(
            np.full((4, 16, 16, 1), np.nan, "float32"))


def test_autoencoder_cache_key_is_settings_data_seed_and_numerics(tmp_path, monkeypatch):
    """The AE cache is keyed by its settings, the data, the seed and golden.numerics_version('decs'); not by the
    clustering stage's settings or the logging interval."""
    from common import golden

    version = {"decs": "n1"}
    monkeypatch.setattr(golden, "numerics_version", lambda paper: version[paper])
    x = np.zeros((20, 16, 16, 1), "float32")
    key = lambda cfg=None, seed=0, data=x: decs.DECS(2, cfg or decs.Config(ae_epochs=1), seed=seed,  # noqa: E731
                                                     cache_dir=tmp_path)._ae_cache(data)
    before = key()
    assert before.parent == tmp_path and before.name.startswith("ae_seed0_")
    assert key(data=x + 0.5) != before and key(seed=1) != before
    assert key(decs.Config(ae_epochs=2)) != before and key(decs.Config(ae_epochs=1, augment=False)) != before
    assert key(decs.Config(ae_epochs=1, cluster_iters=20, log_every=10, variant="code")) == before
    version["decs"] = "n2"
    assert key() != before
    assert decs.DECS(2, decs.Config())._ae_cache(x) is None
