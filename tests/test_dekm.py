"""DEKM equations against hand computations and float64 references; Algorithm 1 on toy problems."""
import dataclasses

import keras
import numpy as np
import pytest
from keras import ops

from common import clustering
from conftest import has_data, blobs
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
    perm = np.random.default_rng(5).permutation(n).astype("int32")   # batches in a shuffled order, as fit's
    hist = net.fit((x[perm], perm), None, batch_size=16, epochs=15, shuffle=False, verbose=0).history["loss"]
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
    perm = np.random.default_rng(2).permutation(n).astype("int32")   # the chunks see the samples shuffled
    net_a.fit((x[perm], perm), None, batch_size=16, epochs=1, shuffle=False, verbose=0)    # 16+16+16+2
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
    # the labels are the k-means of the final embedding (nearest final centroid), which training moved
    d2 = ((out["embedding"][:, None].astype(np.float64) - out["centers"][None].astype(np.float64)) ** 2).sum(-1)
    np.testing.assert_array_equal(out["labels"], d2.argmin(1))
    assert hist["iterations"] > 0 and not np.allclose(out["embedding"], out["arrays"]["initial_embedding"], atol=1e-4)


# --- Eq. (6) targets are looked up by sample index, not by position in the batch -------------------------------
def test_eq6_loss_and_step_use_each_samples_own_target():
    """A batch of samples (7, 2, 11, 4) is trained towards targets 7, 2, 11, 4: loss and one SGD step by hand."""
    n, d, e, lr = 12, 5, 3, 0.05
    keras.utils.set_random_seed(0)
    enc = keras.Sequential([keras.Input((d,)), keras.layers.Dense(e, use_bias=False)])   # h = x W
    net = dekm.GreedyNet(enc, n, e)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(n, d)).astype("float32")
    net((x[:2], np.arange(2, dtype="int32")))
    v, _ = np.linalg.qr(rng.normal(size=(e, e)))
    targets = rng.normal(size=(n, e)) * 3                                 # a different target for every sample
    net.v.assign(v.astype("float32"))
    net.targets.assign(targets.astype("float32"))
    w = np.asarray(enc.get_weights()[0], np.float64)
    x64 = x.astype(np.float64)

    def eq6(batch, w):
        return np.mean((x64[batch] @ w @ v - targets[batch]) ** 2)       # mean over samples and dimensions

    idx = np.array([7, 2, 11, 4], "int32")
    got = float(ops.convert_to_numpy(net.compute_loss(y_pred=net((x[idx], idx)))))
    assert got == pytest.approx(eq6(idx, w), rel=1e-5)
    assert not np.isclose(eq6(idx, w), np.mean((x64[idx] @ w @ v - targets[:4]) ** 2))  # positions 0-3: other value
    # one SGD step on that batch: dL/dW = 2 x^T (x W V - T) V^T / (b e)
    net.compile(optimizer=keras.optimizers.SGD(lr))
    net.fit((x[idx], idx), None, batch_size=len(idx), epochs=1, shuffle=False, verbose=0)
    r = x64[idx] @ w @ v - targets[idx]
    want = w - lr * 2 * x64[idx].T @ r @ v.T / (len(idx) * e)
    np.testing.assert_allclose(enc.get_weights()[0], want, rtol=1e-4, atol=1e-6)


# One batch holds all samples (shuffled once by fit), one iteration per update: the loss of the step after update u
# is Eq. (6) at that update's embedding, k-means and V, so it can be recomputed from the snapshots.
FIT_CFG = dict(ae_epochs=2, batch_size=64, update_interval=1, max_iters=4, stop_tol=0.0, kmeans_n_init=2)


@pytest.fixture(scope="module")
def fitted():
    """The same run with labels and without (labels feed the evaluation log only)."""
    x, y = blobs(40, 3, 16)
    out = {"x": x, "y": y}
    for key, labels in (("with_y", y), ("without_y", None)):
        model = dekm.DEKM(3, dekm.Config(**FIT_CFG), seed=0, cache_dir=None, verbose=0)
        model.snapshots = []
        out[key] = model.fit(x, labels)
    return out


def test_fit_loss_of_every_step_is_eq6_with_each_samples_target(fitted):
    model = fitted["without_y"]
    loss = model.history["cluster"]["loss"]
    assert len(loss) == FIT_CFG["max_iters"] and len(model.snapshots) == FIT_CFG["max_iters"] + 1
    for u, snap in enumerate(model.snapshots[:-1]):
        h = np.asarray(snap["h"], np.float64)
        targets = dekm.greedy_targets(h, snap["labels"], snap["centers"], snap["v"])
        y = h @ snap["v"]
        want = np.mean((y - targets) ** 2)
        assert loss[u] == pytest.approx(want, rel=1e-4)
        # a wrong pairing (the targets of another order) gives a clearly different loss: the check can fail
        assert not np.isclose(np.mean((y[::-1] - targets) ** 2), want, rtol=1e-2)


def test_fit_ends_with_kmeans_of_final_embedding_and_aligned_targets(fitted):
    model, x = fitted["without_y"], fitted["x"]
    cfg = model.cfg
    assert int(ops.convert_to_numpy(model.net.optimizer.iterations)) == cfg.max_iters        # steps actually taken
    assert model.history["cluster"]["iterations"] == cfg.max_iters
    h = model.embed(x)
    np.testing.assert_allclose(model.h, h, rtol=1e-5, atol=1e-5)              # the last update saw the final encoder
    assert not np.allclose(model.initial_embedding, h, atol=1e-4)             # and the encoder was trained
    d2 = ((np.asarray(h, np.float64)[:, None] - model.centers[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(model.labels, d2.argmin(1))                 # labels = nearest final centroid
    np.testing.assert_array_equal(model.predict(x), model.labels)
    # the stored targets are row i for sample i: Eq. (6) of the last update, in sample order
    want = dekm.greedy_targets(model.h, model.labels, model.centers, model.v)
    np.testing.assert_allclose(ops.convert_to_numpy(model.net.targets), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(model.net.v), model.v, atol=1e-6)
    vals, _ = dekm.sorted_eigenvectors(dekm.within_class_scatter(model.h, model.labels, model.centers))
    np.testing.assert_allclose(model.eigenvalues, vals, rtol=1e-6)


def test_labels_feed_only_the_evaluation_log(fitted):
    a, b = fitted["with_y"], fitted["without_y"]
    for wa, wb in zip(a.encoder.get_weights() + a.decoder.get_weights(), b.encoder.get_weights() + b.decoder.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.history["kmeans_labels"], b.history["kmeans_labels"])
    np.testing.assert_array_equal(ops.convert_to_numpy(a.net.targets), ops.convert_to_numpy(b.net.targets))
    assert a.history["cluster"]["loss"] == b.history["cluster"]["loss"]
    same = ("step", "changed", "kmeans_objective", "last_eigenvalue", "loss")
    assert [{k: e.get(k) for k in same} for e in a.log] == [{k: e.get(k) for k in same} for e in b.log]
    assert "acc" in a.log[-1] and "acc" not in b.log[-1]           # the labels did reach the log


# --- the stopping rule: < stop_tol * n samples change cluster (Algorithm 1; paper 0.1 %) ----------------------
class ScriptedKMeans:
    """Stands in for sklearn's KMeans in DEKM's updates: returns the next labelling of a script (centres are the
    means of the embedding over it), so the number of changed assignments of each update is known."""

    def __init__(self, script):
        self.script = script

    def __call__(self, n_clusters, n_init=10, random_state=None, **kwargs):
        outer = self

        class _KM:
            def fit_predict(self, h):
                labels = outer.script.pop(0)
                h = np.asarray(h, np.float64)
                self.labels_ = labels
                self.cluster_centers_ = np.stack([h[labels == j].mean(0) for j in range(n_clusters)])
                self.inertia_ = float(((h - self.cluster_centers_[labels]) ** 2).sum())
                self.n_iter_ = 1
                return labels

            def fit(self, h):
                self.fit_predict(h)
                return self

        return _KM()


def test_stopping_rule_fires_below_its_threshold_and_not_at_it(monkeypatch):
    n, k, tol = 80, 4, 0.0625                      # threshold stop_tol * n = 5 samples (exact in binary)
    base = np.arange(n) % k
    script, current, moved = [base.copy()], base.copy(), 0
    for c in (12, 5, 4) + (30,) * 10:              # changes per update; 5 = the threshold: not yet converged
        current = current.copy()
        sel = (np.arange(moved, moved + c) % n)
        current[sel] = (current[sel] + 1) % k      # c samples move to the next cluster
        moved += c
        script.append(current)
    for old, new, c in zip(script, script[1:4], (12, 5, 4)):
        assert dekm.changed_assignments(old, new, k) == c
    monkeypatch.setattr(clustering, "KMeans", ScriptedKMeans(list(script)))  # DEKM's k-means: common.clustering
    x, _ = blobs(n, k, 8)
    cfg = dekm.Config(ae_epochs=1, batch_size=32, update_interval=1, max_iters=10, stop_tol=tol)
    model = dekm.DEKM(k, cfg, seed=0, cache_dir=None, verbose=0).fit(x)
    assert [e["changed"] for e in model.log] == [n, 12, 5, 4]       # stops after the first update with 4 < 5
    assert int(ops.convert_to_numpy(model.net.optimizer.iterations)) == 3
    assert model.history["cluster"]["converged"] and model.history["cluster"]["updates"] == 3


def test_autoencoder_cache_key(tmp_path, monkeypatch):
    """Keyed by the AE settings (the resolved embedding size: K when embedding_dim=0), data, seed and
    golden.numerics_version('dekm'); not by the clustering-stage settings."""
    from common import golden

    version = {"dekm": "n1"}
    monkeypatch.setattr(golden, "numerics_version", lambda paper: version[paper])
    x = np.zeros((12, 16, 16, 1), "float32")

    def key(k=3, seed=0, data=x, **cfg):
        return dekm.DEKM(k, dekm.Config(**cfg), seed=seed, cache_dir=tmp_path)._ae_cache(data)

    before = key()
    assert before.parent == tmp_path and before.name.startswith("ae_seed0_")
    assert key(k=4) != before and key(seed=1) != before and key(data=x + 1) != before
    assert key(backbone="mlp") != before and key(ae_epochs=3) != before
    assert key(embedding_dim=3) != before  # same width, other settings: a separate entry (as before the refactor)
    assert key(max_iters=10, stop_tol=0.005, update_interval=7, strategy="all_y") == before
    version["dekm"] = "n2"
    assert key() != before
    assert dekm.DEKM(3)._ae_cache(x) is None
