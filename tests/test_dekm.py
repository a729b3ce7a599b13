"""DEKM equations against hand computations and float64 references; Algorithm 1 on toy problems."""
import dataclasses

import keras
import numpy as np
import pytest
from keras import ops

from conftest import has_data
from papers import dekm

RNG = np.random.default_rng(0)


def random_clustering(n=60, e=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % k
    h = rng.normal(size=(k, e))[labels] * 3 + rng.normal(size=(n, e)) * rng.uniform(0.2, 2, size=e)
    centers = np.stack([h[labels == j].mean(0) for j in range(k)])
    return h, labels, centers


def test_eq4_scatter_against_double_sum():
    h, labels, centers = random_clustering()
    direct = np.zeros((h.shape[1], h.shape[1]))
    for j in range(len(centers)):                 # sum_k sum_{h in C_k} (h - mu_k)(h - mu_k)^T
        for row in h[labels == j]:
            d = (row - centers[j])[:, None]
            direct += d @ d.T
    np.testing.assert_allclose(dekm.within_class_scatter(h, labels, centers), direct, rtol=1e-12)


def test_eq4_scatter_by_hand():
    # two 1-D clusters {0, 2} (mean 1) and {5} (mean 5): S_w = 1 + 1 + 0 = 2
    s = dekm.within_class_scatter(np.array([[0.0], [2.0], [5.0]]), np.array([0, 0, 1]), np.array([[1.0], [5.0]]))
    np.testing.assert_allclose(s, [[2.0]])


def test_eigenvectors_ascending_and_orthonormal():
    h, labels, centers = random_clustering(e=6)
    s = dekm.within_class_scatter(h, labels, centers)
    vals, v = dekm.sorted_eigenvectors(s)
    assert np.all(np.diff(vals) >= 0)
    np.testing.assert_allclose(v.T @ v, np.eye(6), atol=1e-12)
    np.testing.assert_allclose(s @ v, v * vals, atol=1e-9)             # S_w v_i = lambda_i v_i
    np.testing.assert_allclose(vals, np.sort(np.linalg.eigvals(s).real), rtol=1e-9)


def test_eigenvectors_by_hand():
    # diag(3, 1): ascending eigenvalues 1, 3 with eigenvectors e2, e1
    vals, v = dekm.sorted_eigenvectors(np.diag([3.0, 1.0]))
    np.testing.assert_allclose(vals, [1.0, 3.0])
    np.testing.assert_allclose(np.abs(v), [[0, 1], [1, 0]], atol=1e-12)


def test_eq3_invariant_to_orthonormal_v():
    h, labels, centers = random_clustering(e=5)
    l2 = dekm.kmeans_objective(h, labels, centers)
    np.testing.assert_allclose(l2, ((h - centers[labels]) ** 2).sum(), rtol=1e-12)
    for seed in range(3):
        q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(5, 5)))
        np.testing.assert_allclose(dekm.transformed_objective(h, labels, centers, q), l2, rtol=1e-10)
        # Eq. (4): L_3 = Tr(V^T S_w V) in the row convention
        np.testing.assert_allclose(np.trace(q.T @ dekm.within_class_scatter(h, labels, centers) @ q), l2, rtol=1e-10)
    # a non-orthonormal V changes the objective: the check above can fail
    assert not np.isclose(dekm.transformed_objective(h, labels, centers, 2 * np.eye(5)), l2)


def test_eq4_rayleigh_ritz_last_eigenvector_carries_most_scatter():
    h, labels, centers = random_clustering(e=4)
    vals, v = dekm.sorted_eigenvectors(dekm.within_class_scatter(h, labels, centers))
    d = (h - centers[labels]) @ v
    np.testing.assert_allclose((d ** 2).sum(0), vals, rtol=1e-9)     # scatter per new axis = eigenvalue


def test_eq6_targets_by_hand():
    # V swaps the two axes: Y = H V = (h2, h1); the last coordinate (h1) is replaced by the centroid's mu1
    h = np.array([[1.0, 2.0], [3.0, 4.0], [10.0, 20.0]])
    centers = np.array([[2.0, 3.0], [10.0, 20.0]])
    labels = np.array([0, 0, 1])
    v = np.array([[0.0, 1.0], [1.0, 0.0]])
    t = dekm.greedy_targets(h, labels, centers, v)
    np.testing.assert_allclose(t, [[2.0, 2.0], [4.0, 2.0], [20.0, 10.0]])
    # all dimensions: the target is the centroid itself in Y space
    np.testing.assert_allclose(dekm.greedy_targets(h, labels, centers, v, dims=[0, 1]), [[3, 2], [3, 2], [20, 10]])


def test_eq6_targets_against_loop():
    h, labels, centers = random_clustering(e=5)
    _, v = dekm.sorted_eigenvectors(dekm.within_class_scatter(h, labels, centers))
    t = dekm.greedy_targets(h, labels, centers, v)
    for i in range(len(h)):
        y = v.T @ h[i]
        y[-1] = (v.T @ centers[labels[i]])[-1]
        np.testing.assert_allclose(t[i], y, rtol=1e-5, atol=1e-5)


def test_changed_assignments_matches_permutations():
    old = np.array([0, 0, 1, 1, 2, 2])
    assert dekm.changed_assignments(old, np.array([2, 2, 0, 0, 1, 1]), 3) == 0   # a relabelling
    assert dekm.changed_assignments(old, np.array([2, 2, 0, 1, 1, 1]), 3) == 1
    assert dekm.changed_assignments(None, old, 3) == 6


@pytest.mark.parametrize("size", [16, 28, 32])
def test_conv_autoencoder_architecture(size):
    enc, dec = dekm.build_conv_autoencoder((size, size, 1), 10)
    convs = [l for l in enc.layers if isinstance(l, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [32, 64, 128]
    assert [c.kernel_size for c in convs] == [(5, 5), (5, 5), (3, 3)]
    assert all(c.strides == (2, 2) for c in convs)
    assert convs[2].padding == ("same" if size % 8 == 0 else "valid")
    assert enc.output.shape[-1] == 10 and dec.output.shape[1:] == (size, size, 1)
    x = RNG.uniform(size=(2, size, size, 1)).astype("float32")
    assert dec(enc(x)).shape == x.shape


def test_mlp_autoencoder_architecture():
    enc, dec = dekm.build_mlp_autoencoder((784,), 10)
    assert [l.units for l in enc.layers if isinstance(l, keras.layers.Dense)] == [500, 500, 2000, 10]
    assert [l.units for l in dec.layers if isinstance(l, keras.layers.Dense)] == [2000, 500, 500, 784]


def _toy_net(n=64, e=3, chunks=0, seed=0):
    keras.utils.set_random_seed(seed)
    enc = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(e)])
    net = dekm.GreedyNet(enc, n, e, full_batch_chunks=chunks)
    x = np.random.default_rng(seed).normal(size=(n, 5)).astype("float32")
    net((x[:2], np.arange(2, dtype="int32")))
    return net, enc, x


def test_greedy_loss_is_eq6_and_decreases_on_toy_problem():
    net, enc, x = _toy_net()
    n = len(x)
    h = enc.predict(x, verbose=0)
    labels = (h[:, 0] > np.median(h[:, 0])).astype(int)
    centers = np.stack([h[labels == j].mean(0) for j in range(2)])
    _, v = dekm.sorted_eigenvectors(dekm.within_class_scatter(h, labels, centers))
    targets = dekm.greedy_targets(h, labels, centers, v)
    net.v.assign(v.astype("float32"))
    net.targets.assign(targets)
    idx = np.arange(n, dtype="int32")
    y_pred = net((x, idx))
    loss = float(ops.convert_to_numpy(net.compute_loss(y_pred=y_pred)))
    np.testing.assert_allclose(loss, np.mean((h @ v - targets) ** 2), rtol=1e-4)   # Eq. (6), MSE form
    # only the last coordinate differs at the start: loss = mean over samples of (y_e - m_e)^2 / e
    y = h @ v
    np.testing.assert_allclose(loss, np.mean((y[:, -1] - targets[:, -1]) ** 2) / 3, rtol=1e-4)
    net.compile(optimizer=keras.optimizers.Adam(1e-2))
    hist = net.fit((x, idx), None, batch_size=16, epochs=15, shuffle=False, verbose=0).history["loss"]
    assert hist[-1] < 0.5 * hist[0]
    # the within-cluster spread along the last eigenvector shrank (the aim of Eq. 6)
    h2 = enc.predict(x, verbose=0)
    assert np.sum(((h2 - centers[labels]) @ v[:, -1]) ** 2) < np.sum(((h - centers[labels]) @ v[:, -1]) ** 2)


def test_full_batch_accumulation_equals_one_full_batch_step():
    """DEKM_F: 4 accumulated chunks (the last partial) give the same update as one step on all data."""
    n, e = 50, 3
    net_a, enc_a, x = _toy_net(n, e, chunks=4)
    net_b, enc_b, _ = _toy_net(n, e, chunks=0)
    tgt = np.random.default_rng(1).normal(size=(n, e)).astype("float32")
    for net in (net_a, net_b):
        net.targets.assign(tgt)
    net_a.compile(optimizer=keras.optimizers.SGD(0.1, gradient_accumulation_steps=4))
    net_b.compile(optimizer=keras.optimizers.SGD(0.1))
    idx = np.arange(n, dtype="int32")
    net_a.fit((x, idx), None, batch_size=16, epochs=1, shuffle=False, verbose=0)    # 16+16+16+2
    net_b.fit((x, idx), None, batch_size=n, epochs=1, shuffle=False, verbose=0)
    for wa, wb in zip(enc_a.get_weights(), enc_b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-6)
    assert not np.allclose(enc_a.get_weights()[0], _toy_net(n, e)[1].get_weights()[0])  # it did move


def test_config_rejects_bad_values():
    with pytest.raises(ValueError):
        dekm.Config(strategy="nope")
    with pytest.raises(ValueError):
        dekm.Config(backbone="resnet")


def test_profiles_change_only_budget():
    budget = {"ae_epochs", "max_iters", "update_interval", "subset_per_class"}
    fields = {f.name for f in dataclasses.fields(dekm.Config)}
    for prof in dekm.PROFILES.values():
        assert set(prof) <= budget and set(prof) - {"subset_per_class"} <= fields
    paper = dekm.Config(**dekm.PROFILES["paper"])
    assert (paper.ae_epochs, paper.batch_size, paper.update_interval, paper.max_iters) == (200, 256, 40, 14000)


def test_paper_results_table3():
    assert dekm.PAPER_RESULTS["DEKM"]["usps"]["acc"] == pytest.approx(0.7975)
    assert dekm.PAPER_RESULTS["DEKM_F"]["coil20"]["nmi"] == pytest.approx(0.8197)
    assert dekm.PAPER_RESULTS["IDEC"]["coil20"] is None


def test_prepare_resizes_coil20_only():
    from common.datasets import Dataset

    x = RNG.uniform(size=(3, 32, 32, 1)).astype("float32")
    assert dekm.prepare(Dataset(x, np.zeros(3, int), 1, "coil20[2/class]")).shape == (3, 28, 28, 1)
    assert dekm.prepare(Dataset(x, np.zeros(3, int), 1, "usps")).shape == (3, 32, 32, 1)


def test_fit_rejects_bad_input():
    with pytest.raises(ValueError):
        dekm.DEKM(3).fit(np.full((10, 8, 8, 1), np.nan, "float32"))


@pytest.mark.skipif(not has_data("usps/usps_train.jf.gz", "usps/usps_test.jf.gz"), reason="USPS files not found")
def test_smoke_run_on_usps_subset():
    from common import datasets, metrics

    data = datasets.subset(datasets.load("usps"), 15, seed=0)
    cfg = dekm.Config(ae_epochs=2, max_iters=20, update_interval=10)
    out = dekm.run(data, cfg, seed=0, verbose=0)
    assert out["labels"].shape == (150,) and out["embedding"].shape == (150, 10)
    assert out["centers"].shape == (10, 10) and out["arrays"]["initial_embedding"].shape == (150, 10)
    hist = out["history"]["cluster"]
    assert hist["updates"] == len(hist["eval"]) - 1 and hist["iterations"] <= 20
    assert 0 <= metrics.evaluate(data.y, out["labels"])["acc"] <= 1
