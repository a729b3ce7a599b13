"""SAIP (Peng et al.) equations against hand computations (../shared/specs/saip.md §A9) and float64 NumPy/SciPy
references; gradients against finite differences; schedule and stopping rule at their thresholds; training on toy
blobs, label blindness and resumption."""
import numpy as np
import pytest
from keras import ops
from scipy.spatial.distance import cdist
from scipy.special import rel_entr
from scipy.stats import entropy as scipy_entropy

from common import checkpoint, clustering, metrics
from conftest import grad
from papers import saip

RNG = np.random.default_rng(0)
np_ = ops.convert_to_numpy


# ---------------------------------------------------------------- float64 NumPy reference of Eqs. (5)-(11)
def ref_z(h, w, variant):
    metric = {"HOMO": "euclidean", "HOE": "cosine", "HOT": "correlation", "HIT": "cityblock"}[variant]
    return cdist(h, w, metric)


def ref_q1(h, w):
    z = cdist(h, w)
    return np.maximum(z.mean(1, keepdims=True) - z, 0.0)


def ref_q2(h, w, variant):
    k = 1.0 / (1.0 + ref_z(h, w, variant))
    return k / k.sum(1, keepdims=True)


def ref_p(q, r=2):
    num = q ** r / q.sum(0)
    return num / num.sum(1, keepdims=True)


def ref_kl(p2, p1):
    p2, p1 = np.clip(p2, 1e-7, 1), np.clip(p1, 1e-7, 1)
    return (p2 * np.log(p2 / p1)).sum(1)


def ref_loss(h, w, variant, p2=None):
    """Eq. (5) in float64; p2 given: a constant target (target_gradient=False at that point)."""
    p1 = ref_p(ref_q1(h, w))
    return ref_kl(ref_p(ref_q2(h, w, variant)) if p2 is None else p2, p1).mean()


def fd_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        d = np.zeros_like(x)
        d[idx] = eps
        g[idx] = (f(x + d) - f(x - d)) / (2 * eps)
    return g


# ---------------------------------------------------------------- Eqs. (7)-(11), hand values
def test_eq7_eq8_homo_by_hand():
    h, w = np.zeros((1, 2)), np.array([[1.0, 0], [0, 2], [3, 4]])
    np.testing.assert_allclose(np_(saip.euclidean(h, w)), [[1, 2, 5]], rtol=1e-12)
    np.testing.assert_allclose(np_(saip.q1(h, w)), [[5 / 3, 2 / 3, 0]], rtol=1e-12)  # u = 8/3
    np.testing.assert_allclose(np_(saip.q2(h, w, "HOMO")), [[1 / 2, 1 / 3, 1 / 6]], rtol=1e-12)


def test_eq9_cosine_by_hand_is_scale_free():
    h, w = np.array([[1.0, 0]]), np.array([[2.0, 0], [0, 3], [-1, 0]])
    np.testing.assert_allclose(np_(saip.cosine_distance(h, w)), [[0, 1, 2]], atol=1e-12)
    np.testing.assert_allclose(np_(saip.q2(h, w, "HOE")), [[6 / 11, 3 / 11, 2 / 11]], rtol=1e-12)
    np.testing.assert_allclose(np_(saip.q2(7 * h, 0.1 * w, "HOE")), [[6 / 11, 3 / 11, 2 / 11]], rtol=1e-12)


def test_eq10_correlation_by_hand():
    h, w = np.array([[1.0, 2, 3]]), np.array([[2.0, 4, 6], [3, 2, 1], [1, 3, 2]])
    np.testing.assert_allclose(np_(saip.correlation_distance(h, w)), [[0, 2, 0.5]], atol=1e-12)


def test_eq11_cityblock_by_hand():
    assert float(np_(saip.cityblock_distance(np.zeros((1, 2)), np.array([[1.0, -2]])))[0, 0]) == 3.0


@pytest.mark.parametrize("variant", saip.VARIANTS)
def test_eq8_to_11_against_scipy_float64(variant):
    h, w = RNG.normal(size=(40, 6)), RNG.normal(size=(7, 6))
    np.testing.assert_allclose(np_(saip.DISTANCES[variant](h, w)), ref_z(h, w, variant), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np_(saip.q2(h, w, variant)), ref_q2(h, w, variant), rtol=1e-10)
    np.testing.assert_allclose(np_(saip.q1(h, w)), ref_q1(h, w), rtol=1e-10, atol=1e-12)
    # float32, as in training
    got = np_(saip.q2(h.astype("float32"), w.astype("float32"), variant))
    np.testing.assert_allclose(got, ref_q2(h, w, variant), rtol=2e-5)


def test_eq7_distance_has_a_finite_gradient_at_a_centre():
    w = np.array([[0.0, 0], [3, 4]])
    g = grad(lambda h: ops.sum(saip.q1(h, w)), np.zeros((1, 2)))  # h exactly on the first centre
    assert np.all(np.isfinite(g))


# ---------------------------------------------------------------- Eq. (6)
def test_eq6_by_hand():
    p = np_(saip.assignment(np.array([[0.5, 0.5], [0.9, 0.1]])))  # f = (1.4, 0.6)
    np.testing.assert_allclose(p, [[0.3, 0.7], [0.972, 0.028]], rtol=1e-12)


@pytest.mark.parametrize("r", [1, 2, 3])
def test_eq6_against_float64_and_dec_target(r):
    q = RNG.uniform(0.01, 1, size=(30, 5))
    q /= q.sum(1, keepdims=True)
    np.testing.assert_allclose(np_(saip.assignment(q, r)), ref_p(q, r), rtol=1e-12)
    if r == 2:  # DEC's target distribution p = (q^2 / sum_i q) / row sums
        weight = q ** 2 / q.sum(0)
        np.testing.assert_allclose(np_(saip.assignment(q, 2)), weight / weight.sum(1, keepdims=True), rtol=1e-12)


def test_eq6_given_f_is_used():
    q = np.array([[0.5, 0.5]])
    np.testing.assert_allclose(np_(saip.assignment(q, 2, f=np.array([1.0, 3.0]))), [[0.75, 0.25]], rtol=1e-12)


def test_eq6_guards_empty_cluster_and_all_zero_row():
    q = np.array([[0.0, 2.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 1.0]])  # column 0 all zero (f = 0); row 1 all zero
    p = np_(saip.assignment(q))
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p[1], 0.0)
    np.testing.assert_allclose(p[:, 0], 0.0)
    np.testing.assert_allclose(p[[0, 2]].sum(1), 1.0)
    assert np.all(np.isfinite(grad(lambda v: ops.sum(saip.assignment(v) * np.arange(3.0)), q + 0.0)))


# ---------------------------------------------------------------- Eqs. (5)-(8), the full chain by hand (§A9)
H3 = np.array([[0.0, 0], [1, 0], [0, 3]])
W3 = np.array([[0.0, 0], [2, 0], [0, 4]])


def test_full_chain_by_hand():
    np.testing.assert_allclose(np_(saip.euclidean(H3, W3)),
                               [[0, 2, 4], [1, 1, 4.123106], [3, 3.605551, 1]], atol=2e-6)
    np.testing.assert_allclose(np_(saip.q1(H3, W3)), [[2, 0, 0], [1.041035, 1.041035, 0], [0, 0, 1.535184]],
                               atol=2e-6)
    p1, p2 = (np_(p) for p in saip.distributions(H3, W3, "HOMO"))
    # equal Q1 in row 2, but cluster 2 wins through its smaller frequency f = (3.041035, 1.041035, 1.535184)
    np.testing.assert_allclose(p1, [[1, 0, 0], [0.255026, 0.744974, 0], [0, 0, 1]], atol=2e-6)
    np.testing.assert_allclose(np_(saip.q2(H3, W3, "HOMO")), [[0.652174, 0.217391, 0.130435],
                                                              [0.418342, 0.418342, 0.163316],
                                                              [0.258497, 0.224509, 0.516994]], atol=2e-6)
    np.testing.assert_allclose(p2, [[0.808258, 0.138745, 0.052997], [0.357813, 0.552796, 0.089391],
                                    [0.114648, 0.133607, 0.751745]], atol=2e-6)
    np.testing.assert_allclose(np_(saip.kl_target_pred(p2, p1, reduce=False)), [2.488741, 1.181199, 3.269636],
                               atol=2e-5)
    assert float(np_(saip.saip_loss(H3, W3, "HOMO"))) == pytest.approx(2.313192, abs=2e-5)


def test_eq5_small_by_hand_and_direction():
    p2, p1 = np.array([[0.5, 0.5], [0.8, 0.2]]), np.array([[0.25, 0.75], [0.8, 0.2]])
    np.testing.assert_allclose(np_(saip.kl_target_pred(p2, p1, reduce=False)), [0.143841, 0], atol=1e-6)
    assert float(np_(saip.kl_target_pred(p2, p1))) == pytest.approx(0.071921, abs=1e-6)
    # the other direction: rows (0.130812, 0)
    assert float(np_(saip.kl_target_pred(p1, p2))) == pytest.approx(0.065406, abs=1e-6)


def test_theorem1_kl_is_cross_entropy_minus_entropy():
    p1, p2 = RNG.dirichlet(np.ones(6), 50), RNG.dirichlet(np.ones(6), 50)
    kl = np_(saip.kl_target_pred(p2, p1, reduce=False))
    np.testing.assert_allclose(kl, saip.cross_entropy(p1, p2) - saip.entropy(p2), rtol=1e-10)  # Eq. (13)
    assert np.all(kl > 0)
    np.testing.assert_allclose(np_(saip.kl_target_pred(p2, p2, reduce=False)), 0.0, atol=1e-12)  # P1 = P2: 0


def test_eq12_labels_use_full_set_frequencies():
    got = saip.predict_labels(H3, W3, "HOMO")
    np.testing.assert_array_equal(got["P1"], [0, 1, 2])  # row 2: P1 picks cluster 1 ...
    np.testing.assert_array_equal(got["nearest"], [0, 0, 2])  # ... which is not the (tied) nearest centre
    np.testing.assert_array_equal(got["P2"], [0, 1, 2])
    h, w = RNG.normal(size=(200, 4)), RNG.normal(size=(5, 4))
    for variant in saip.VARIANTS:
        got = saip.predict_labels(h, w, variant)
        np.testing.assert_array_equal(got["P1"], ref_p(ref_q1(h, w)).argmax(1))
        np.testing.assert_array_equal(got["P2"], ref_p(ref_q2(h, w, variant)).argmax(1))


# ---------------------------------------------------------------- gradients of Eq. (5)
@pytest.mark.parametrize("variant", saip.VARIANTS)
@pytest.mark.parametrize("target_gradient", [True, False])
def test_loss_gradients_against_finite_differences(variant, target_gradient):
    rng = np.random.default_rng(3)
    h, w = rng.normal(size=(12, 4)), rng.normal(size=(5, 4))
    p2_0 = None if target_gradient else ref_p(ref_q2(h, w, variant))  # P2 frozen at the base point
    gh = grad(lambda v: saip.saip_loss(v, w, variant, 2, target_gradient), h)
    np.testing.assert_allclose(gh, fd_grad(lambda v: ref_loss(v, w, variant, p2_0), h), rtol=1e-5, atol=1e-8)
    p2_w = None if target_gradient else ref_p(ref_q2(h, w, variant))
    gw = grad(lambda v: saip.saip_loss(h, v, variant, 2, target_gradient), w)
    np.testing.assert_allclose(gw, fd_grad(lambda v: ref_loss(h, v, variant, p2_w), w), rtol=1e-5, atol=1e-8)


def test_default_target_is_a_constant():
    """The default reading (docstring): P2 a stop-gradient target, in the loss function and in the Config."""
    h, w = RNG.normal(size=(12, 4)), RNG.normal(size=(5, 4))
    assert saip.Config().target_gradient is False
    np.testing.assert_allclose(grad(lambda v: saip.saip_loss(v, w), h),
                               grad(lambda v: saip.saip_loss(v, w, "HOE", 2, False), h))


def test_target_gradient_changes_the_gradient():
    h, w = RNG.normal(size=(12, 4)), RNG.normal(size=(5, 4))
    a = grad(lambda v: saip.saip_loss(v, w, "HOE", 2, True), h)
    b = grad(lambda v: saip.saip_loss(v, w, "HOE", 2, False), h)
    assert np.abs(a - b).max() > 1e-3


# ---------------------------------------------------------------- ablation kl_target="p1": KL(P1 || P2), P1 constant
def ref_kl_p1_p2(p1, p2):
    """float64 KL(P1 || P2) per row, 0 log 0 = 0, no clip."""
    return rel_entr(p1, p2).sum(1)


def test_kl_p1_target_by_hand_and_against_float64():
    p1, p2 = (np_(p) for p in saip.distributions(H3, W3, "HOMO"))  # §A9's chain: P1 has exact zeros
    # rows -ln 0.808258, 0.255026 ln(0.255026/0.357813) + 0.744974 ln(0.744974/0.552796), -ln 0.751745
    np.testing.assert_allclose(np_(saip.kl_p1_p2(p1, p2, reduce=False)), [0.212874, 0.135907, 0.285358], atol=2e-6)
    assert float(np_(saip.saip_loss(H3, W3, "HOMO", kl_target="p1"))) == pytest.approx(0.211380, abs=2e-6)
    # Eq. (5)'s small case the other way round: rows (0.130812, 0) (KL(P2 || P1) gives 0.143841 for row 0)
    small1, small2 = np.array([[0.25, 0.75], [0.8, 0.2]]), np.array([[0.5, 0.5], [0.8, 0.2]])
    np.testing.assert_allclose(np_(saip.kl_loss(small1, small2, kl_target="p1")), 0.065406, atol=1e-6)
    for variant in saip.VARIANTS:  # float64, tight: an implementation clipping P1's zeros to 1e-7 fails
        h, w = RNG.normal(size=(60, 5)), RNG.normal(size=(6, 5))
        want = ref_kl_p1_p2(ref_p(ref_q1(h, w)), ref_p(ref_q2(h, w, variant))).mean()
        assert (ref_p(ref_q1(h, w)) == 0).any()
        assert float(np_(saip.saip_loss(h, w, variant, 2, False, "p1"))) == pytest.approx(want, rel=1e-10)


def test_kl_p1_target_gradient_flows_through_p2_only():
    """d/dP1 = 0 (P1 a constant target); d/dP2_ij = -P1_ij / (n P2_ij); the default is the mirror image."""
    p1, p2 = RNG.dirichlet(np.ones(4), 6), RNG.dirichlet(np.ones(4), 6)
    p1[0] = [0.0, 0.5, 0.5, 0.0]  # exact zeros in the target: finite, zero gradient there
    n = len(p1)
    np.testing.assert_array_equal(grad(lambda v: saip.kl_loss(v, p2, kl_target="p1"), p1), 0.0)
    np.testing.assert_allclose(grad(lambda v: saip.kl_loss(p1, v, kl_target="p1"), p2), -p1 / (n * p2), rtol=1e-12)
    p1[0] = [0.1, 0.4, 0.4, 0.1]  # today's loss (clip [1e-7, 1]) on strictly positive rows
    np.testing.assert_array_equal(grad(lambda v: saip.kl_loss(p1, v), p2), 0.0)
    np.testing.assert_allclose(grad(lambda v: saip.kl_loss(v, p2), p1), -p2 / (n * p1), rtol=1e-12)


@pytest.mark.parametrize("variant", ["HOMO", "HOE"])
def test_kl_p1_target_gradients_against_finite_differences(variant):
    """Through Eqs. (6)-(11): the gradient of KL(P1_0 || P2(h, w)) with P1 frozen at the base point."""
    rng = np.random.default_rng(3)
    h, w = rng.normal(size=(12, 4)), rng.normal(size=(5, 4))
    p1_0 = ref_p(ref_q1(h, w))
    assert (p1_0 == 0).any() and np.all(p1_0.sum(0) > 0)  # zeros in the target, no empty cluster
    f_h = lambda v: ref_kl_p1_p2(p1_0, ref_p(ref_q2(v, w, variant))).mean()
    f_w = lambda v: ref_kl_p1_p2(p1_0, ref_p(ref_q2(h, v, variant))).mean()
    gh = grad(lambda v: saip.saip_loss(v, w, variant, 2, False, "p1"), h)
    np.testing.assert_allclose(gh, fd_grad(f_h, h), rtol=1e-5, atol=1e-8)
    gw = grad(lambda v: saip.saip_loss(h, v, variant, 2, False, "p1"), w)
    np.testing.assert_allclose(gw, fd_grad(f_w, w), rtol=1e-5, atol=1e-8)
    both = lambda v: ref_kl_p1_p2(ref_p(ref_q1(v, w)), ref_p(ref_q2(v, w, variant))).mean()  # P1 not frozen
    assert np.abs(gh - fd_grad(both, h)).max() > 1e-3


@pytest.mark.parametrize("target_gradient", [False, True])
def test_default_kl_target_keeps_todays_loss_exactly(target_gradient):
    h, w = RNG.normal(size=(30, 4)).astype("float32"), RNG.normal(size=(5, 4)).astype("float32")
    p1, p2 = saip.distributions(h, w, "HOE", 2)
    today = np_(saip.kl_target_pred(p2, p1))  # Eq. (5), Keras clip, as before the option existed
    assert saip.Config().kl_target == "p2"
    np.testing.assert_array_equal(np_(saip.saip_loss(h, w, "HOE", 2, target_gradient)), today)
    np.testing.assert_array_equal(np_(saip.saip_loss(h, w, "HOE", 2, target_gradient, "p2")), today)
    assert float(np_(saip.saip_loss(h, w, "HOE", 2, False, "p1"))) != pytest.approx(float(today), rel=1e-3)


def test_kl_target_validation_and_cli_override(capsys):
    from common import cli

    assert saip.Config(kl_target="P1").kl_target == "p1"
    for bad in ({"kl_target": "p3"}, {"kl_target": "p1", "target_gradient": True}):
        with pytest.raises(ValueError):
            saip.Config(**bad)
    with pytest.raises(ValueError):
        saip.saip_loss(H3, W3, kl_target="kl")
    with pytest.raises(ValueError):
        saip.kl_loss(H3, W3, target_gradient=True, kl_target="p1")
    overrides = cli.parse_overrides(["kl_target=p1"], saip.Config)
    assert overrides == {"kl_target": "p1"}
    cfg, _ = cli.make_config(saip, "paper", overrides)
    assert cfg.kl_target == "p1" and cfg.resolved("mnist-test").kl_target == "p1"
    assert cli.main(["saip", "mnist-test", "--profile", "paper", "--seeds", "0", "--set", "kl_target=p3"]) != 0
    assert "error:" in capsys.readouterr().err


# ---------------------------------------------------------------- entropy of the soft assignments (the drift log)
def test_entropy_by_hand_and_against_scipy():
    for k in (2, 4, 10):
        np.testing.assert_allclose(saip.entropy(np.full((3, k), 1.0 / k)), np.log(k), rtol=1e-15)  # natural log
    np.testing.assert_array_equal(saip.entropy(np.eye(5)), 0.0)  # one-hot rows (0 log 0 = 0, no NaN)
    assert saip.entropy([[0.5, 0.25, 0.25, 0.0]])[0] == pytest.approx(1.5 * np.log(2), rel=1e-15)
    p = RNG.dirichlet(np.ones(6) * 0.5, 40)
    p[:5, :2] = 0.0
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(saip.entropy(p), scipy_entropy(p, axis=1), rtol=1e-12)
    np.testing.assert_allclose(saip.entropy(p.astype("float32")), scipy_entropy(p, axis=1), rtol=1e-6)


# ---------------------------------------------------------------- pairwise precision (Tables III-V)
def test_pairwise_precision_hand_cases_and_single_cluster_rows():
    assert metrics.pairwise_precision([0, 0, 1, 1], [0, 0, 0, 1]) == pytest.approx(1 / 3)
    assert metrics.pairwise_precision([0, 0, 1, 1], [0, 0, 1, 1]) == 1.0
    one = lambda counts: metrics.pairwise_precision(np.repeat(np.arange(len(counts)), counts),
                                                    np.zeros(sum(counts), int))
    assert one([1000] * 10) == pytest.approx(0.0999100, abs=1e-7)  # 10 x 999 / 9,999
    assert one([600] * 5) == pytest.approx(0.1997332, abs=1e-7)
    t10k = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]  # MNIST test class counts
    # the degenerate single-cluster rows of the tables: ZAC (cifar10), ZAC (cifar100), ACAL (mnist-test)
    assert round(one([1000] * 10), 4) == saip.PAPER_RESULTS["ZAC"]["cifar10-test"]["pairwise_precision"]
    assert round(one([600] * 5), 4) == saip.PAPER_RESULTS["ZAC"]["cifar100-aquatic"]["pairwise_precision"]
    assert round(one(t10k), 4) == saip.PAPER_RESULTS["ACAL"]["mnist-test"]["pairwise_precision"]


# ---------------------------------------------------------------- PAPER_RESULTS
def test_paper_results_are_tables_3_to_6():
    pr = saip.PAPER_RESULTS
    assert pr["HOE"]["mnist-test"] == {"acc": 0.8218, "nmi": 0.6795, "ari": 0.6493, "pairwise_precision": 0.6782}
    assert pr["HOE (CNN)"]["mnist"]["acc"] == 0.9325 and pr["HOT"]["reuters10k"]["acc"] == 0.7098
    assert pr["HOE"]["cifar100-aquatic"]["pairwise_precision"] == 0.2871
    assert pr["SC"]["cifar100-aquatic"]["acc"] == 0.3317
    assert pr["HIT (P2)"]["mnist"] == {"acc": 0.7691, "nmi": 0.6193, "ari": 0.5743, "pairwise_precision": 0.6048}
    for v in saip.VARIANTS:  # Table VI's P1 columns repeat Table III's mnist-full rows
        assert saip._TABLE6[v]["P1"] == pr[v]["mnist"]
    # §V-B, 3): HOE - DAE+k-means on mnist-full = +7.50, +4.29, +7.36, +6.56
    gap = [pr["HOE"]["mnist"][m] - pr["DAE+k-means"]["mnist"][m] for m in saip.METRICS]
    np.testing.assert_allclose(gap, [0.0750, 0.0429, 0.0736, 0.0656], atol=1e-9)
    assert all(0 <= v <= 1 for cols in pr.values() for c in cols.values() for v in c.values())
    assert set(pr["DEC"]) == {"mnist", "mnist-test", "cifar10-test", "reuters10k", "cifar100-aquatic"}
    with pytest.raises(ValueError):
        saip._table("HOMO 1 2 3 | 4 5 6 7", ("a", "b"))
    expected = dict(zip(saip.METRICS, (0.123457, 0.01, 0.02, 0.03)))  # percent, rounded to 6 decimals
    assert saip._table("A B 12.3456789 1 2 3", ("c",)) == {"A B": {"c": expected}}


# ---------------------------------------------------------------- Table II schedule, §III-B stopping rule
def test_lr_schedule_at_its_thresholds():
    assert saip.lr_at(299, 1e-4) == 1e-4 and saip.lr_at(300, 1e-4) == pytest.approx(9e-5, rel=1e-12)
    assert saip.lr_at(4499, 1e-4) == pytest.approx(1e-4 * 0.9 ** 14, rel=1e-12)  # 2.2877e-5
    assert saip.lr_at(4499, 1e-4) == pytest.approx(2.2877e-5, rel=1e-4)
    cfg = saip.Config().resolved("mnist")
    assert (cfg.learning_rate, cfg.lr_decay, cfg.decay_every, cfg.decay_stages) == (1e-4, 0.9, 300, 15)
    assert cfg.cluster_epochs == cfg.max_epochs() == 4500  # re * ep: no epoch 4,500
    # the optimizer of the clustering stage, on its step counter (40 steps per epoch)
    opt = saip.SAIP(10, saip.Config(), dataset="mnist-test")._optimizer(steps=40)
    for step, want in ((0, 1e-3), (300 * 40 - 1, 1e-3), (300 * 40, 9e-4), (2999 * 40, 1e-3 * 0.9 ** 9)):
        opt.iterations.assign(step)
        assert float(np_(opt.learning_rate)) == pytest.approx(want, rel=1e-6), step


def test_stopping_rule_at_its_threshold():
    assert not saip.converged(21, 70000) and saip.converged(20, 70000)  # 0.03 % of 70,000 = 21: strictly fewer
    assert not saip.converged(3, 10000) and saip.converged(2, 10000)
    assert not saip.converged(0, 10, tol=0.0)
    assert saip.changed_count([0, 1, 2, 2], [0, 2, 1, 2]) == 2  # no matching of cluster ids


# ---------------------------------------------------------------- settings
def test_config_resolution_validation_and_method_rows():
    assert saip.Config(variant="hot").variant == "HOT"
    for bad in ({"variant": "x"}, {"noise": "salt"}, {"backbone": "rnn"}, {"lr_decay": 1.5}, {"cluster_epochs": 2.5},
                {"variant": "HOT", "embedding_dim": 1}, {"optimizer": "adam"}):
        with pytest.raises(ValueError):
            saip.Config(**bad)
    assert saip.Config(cluster_epochs=5.0, embedding_dim=12.0).cluster_epochs == 5  # --set gives floats
    small = saip.Config().resolved("mnist-test[30/class]")
    assert (small.learning_rate, small.decay_stages, small.cluster_epochs, small.optimizer) == (1e-3, 10, 3000, "sgd")
    assert saip.Config().resolved("fmnist").learning_rate == 1e-4
    assert saip.Config().resolved("cifar10-test").embedding_dim == 100
    assert saip.Config().resolved("cifar100-aquatic").optimizer == "adadelta"
    assert saip.Config(learning_rate=0.5).resolved("mnist").learning_rate == 0.5  # an override wins
    assert saip.method_of({"variant": "HIT", "backbone": "mlp"}) == "HIT"
    assert saip.method_of(saip.Config(backbone="cnn")) == "HOE (CNN)"
    budget = {"subset_per_class", "ae_epochs", "cluster_epochs", "eval_every", "invariance_every"}
    assert all(set(p) <= budget for p in saip.PROFILES.values())


def test_departures_are_rows_naming_real_options():
    """DEPARTURES: four non-empty strings per row (common.tables renders them); every `--set key=...` it names is a
    Config field; the docstring points to it and stays short."""
    import dataclasses
    import re

    from common import tables

    assert len(tables.departures_markdown(saip.DEPARTURES).splitlines()) == 2 + len(saip.DEPARTURES)
    fields = {f.name for f in dataclasses.fields(saip.Config)}
    named = {k for row in saip.DEPARTURES for k in re.findall(r"`(?:--set )?(\w+)=", row[3])}
    assert named >= {"kl_target", "target_gradient", "noise", "learning_rate", "backbone"} and named <= fields
    assert "DEPARTURES" in saip.__doc__ and len(saip.__doc__.splitlines()) <= 25


def test_prepare_centres_and_flattens():
    x = RNG.uniform(size=(20, 4, 4, 1)).astype("float32")
    v = saip.prepare(x)
    assert v.shape == (20, 16) and v.dtype == np.float32
    np.testing.assert_allclose(v.mean(0), 0, atol=1e-6)
    np.testing.assert_array_equal(saip.prepare(x, "cnn"), x)


# ---------------------------------------------------------------- §III-C autoencoder and noise
def test_mlp_autoencoder_architecture():
    enc, dec = saip.build_mlp_autoencoder(784, 10)
    dense = [l for l in enc.layers + dec.layers if hasattr(l, "units")]
    assert [l.units for l in dense] == [500, 500, 2000, 10, 2000, 500, 500, 784]
    assert [l.activation.__name__ for l in dense] == ["relu"] * 3 + ["linear"] + ["relu"] * 3 + ["linear"]


def test_cnn_autoencoder_shapes():
    enc, dec = saip.build_cnn_autoencoder((28, 28, 1), 10)
    h = np_(enc(np.zeros((2, 28, 28, 1), "float32")))
    assert h.shape == (2, 10) and np.all((h > 0) & (h < 1))  # sigmoid code
    assert tuple(dec(h).shape) == (2, 28, 28, 1)


def test_dropout_noise_ratio_scaling_and_reseeding():
    x = np.ones((200, 50), "float32")
    layer = saip.Corruption("dropout", 0.3, seed=1)
    layer.reseed((0, 5))
    a = np_(layer(x, training=True))
    assert abs(np.mean(a == 0) - 0.3) < 0.02 and np.allclose(a[a != 0], 1 / 0.7)  # inverted scaling: E[x~] = x
    layer.reseed((0, 5))
    np.testing.assert_array_equal(np_(layer(x, training=True)), a)  # the epoch's key alone decides the noise
    layer.reseed((0, 6))
    assert not np.array_equal(np_(layer(x, training=True)), a)
    np.testing.assert_array_equal(np_(layer(x, training=False)), x)
    np.testing.assert_array_equal(np_(saip.Corruption("dropout", 1.0)(x, training=True)), x)  # Keras <= 2: identity
    g = np_(saip.Corruption("gaussian", 0.3, seed=2)(np.zeros((400, 50), "float32"), training=True))
    assert abs(g.std() - 0.3) < 0.01


# ---------------------------------------------------------------- training
def blobs(k=5, d=8, n=60, seed=0):
    """k separated Gaussian blobs whose means point in k distinct directions (cosine and Euclidean agree)."""
    rng = np.random.default_rng(seed)
    means = 6 * np.eye(k, d) + rng.normal(size=(k, d)) * 0.5
    x = np.concatenate([m + rng.normal(size=(n, d)) for m in means]).astype("float32")
    return saip.prepare(x), np.repeat(np.arange(k), n)


def toy_config(**kw):
    base = dict(learning_rate=1e-3, decay_every=100, decay_stages=1, cluster_epochs=15, eval_every=5, batch_size=64,
                stop_tol=0.0, kmeans_n_init=5, ae_epochs=2, ae_learning_rate=0.01, invariance_every=1)
    return saip.Config(**{**base, **kw})


def linear_encoder(d):
    import keras

    inp = keras.Input((d,))
    return keras.Model(inp, keras.layers.Dense(d, kernel_initializer="identity")(inp))


@pytest.mark.parametrize("variant", saip.VARIANTS)
def test_toy_blobs_clustered_by_each_variant(variant):
    """The clustering stage alone (a linear encoder starting at the identity, k-means centres): every variant keeps
    the correct partition while its full-set loss falls and the centres move (sign, gradient and argmax checks)."""
    x, y = blobs()
    model = saip.SAIP(5, toy_config(variant=variant), seed=0, verbose=0)
    model.encoder = linear_encoder(x.shape[1])
    model.initialise(x)
    model.cluster(x, y)
    mon = model.history["cluster"]["monitor"]
    assert metrics.acc(y, model.predict(x)) >= 0.95
    assert mon[-1]["kl"] < mon[0]["kl"]  # falls (by 0.2 % for HIT to 3 % in 15 epochs)
    assert np.abs(saip._numpy(model.net.centers) - model.initial_centers).max() > 0.02
    assert [e["epoch"] for e in model.history["cluster"]["eval"]] == [0, 5, 10, 15]
    h = model.embed(x)  # the label-free drift diagnostics describe the final model
    assert mon[-1]["code_norm"] == pytest.approx(np.linalg.norm(h, axis=1).mean(), rel=1e-5)
    assert mon[-1]["centre_norm"] == pytest.approx(np.linalg.norm(saip._numpy(model.net.centers), axis=1).mean())
    assert mon[-1]["nonempty"] == len(np.unique(model.predict(x))) == 5
    # per-epoch drift log (index e: after e epochs, 0 = the k-means start): all samples, full-set f, natural log
    c = model.history["cluster"]
    assert len(c["p1_entropy"]) == len(c["p2_entropy"]) == len(c["code_norm"]) == c["epochs_run"] + 1 == 16
    for i, (hh, ww) in ((0, (model.initial_embedding, model.initial_centers)),
                        (-1, (h, saip._numpy(model.net.centers)))):
        hh, ww = hh.astype(np.float64), ww.astype(np.float64)
        assert c["p1_entropy"][i] == pytest.approx(scipy_entropy(ref_p(ref_q1(hh, ww)), axis=1).mean(), rel=1e-4)
        assert c["p2_entropy"][i] == pytest.approx(scipy_entropy(ref_p(ref_q2(hh, ww, variant)), axis=1).mean(),
                                                   rel=1e-4)
        assert c["code_norm"][i] == pytest.approx(np.linalg.norm(hh, axis=1).mean(), rel=1e-5)
    assert [e["p1_entropy"] for e in mon] == [c["p1_entropy"][e["epoch"]] for e in mon]
    assert [e["p2_entropy"] for e in mon] == [c["p2_entropy"][e["epoch"]] for e in mon]


def test_kl_target_p1_trains_the_swapped_loss():
    """Config(kl_target="p1") reaches the training step: the step's loss is KL(P1 || P2) on the batch, and the run
    differs from the default one; the full-set KL(P1 || P2) it minimises falls."""
    x, y = blobs(k=3, n=30)
    runs = {}
    for target in ("p2", "p1"):
        model = saip.SAIP(3, toy_config(kl_target=target, cluster_epochs=4, eval_every=1), seed=0, verbose=0)
        model.encoder = linear_encoder(x.shape[1])
        model.initialise(x)
        model.cluster(x)
        runs[target] = model
    net = runs["p1"].net
    hb = net(x[:64])
    want = {t: float(np_(saip.saip_loss(hb, net.centers, "HOE", 2, False, t))) for t in ("p1", "p2")}
    assert float(np_(net.compute_loss(x=x[:64], y_pred=hb))) == want["p1"] != pytest.approx(want["p2"], rel=1e-3)
    assert not np.allclose(saip._numpy(net.centers), saip._numpy(runs["p2"].net.centers), rtol=0, atol=1e-6)
    mon = runs["p1"].history["cluster"]["monitor"]
    assert all(np.isfinite(e["kl_p1_p2"]) and np.isfinite(e["loss"]) for e in mon[1:])
    assert mon[-1]["kl_p1_p2"] < mon[0]["kl_p1_p2"]


def test_pretraining_log_has_entropies_and_code_norm():
    """Fig. 1(a)'s log: mean row entropies of P1 and of each variant's P2 on the k-means centres of the clean codes."""
    x, _ = blobs(k=3, n=30)
    model = saip.SAIP(3, toy_config(ae_epochs=1), seed=0, verbose=0)
    model.pretrain(x)
    log = model.history["pretrain"]["invariance"]
    assert [e["epoch"] for e in log] == [0, 1]
    h = model.embed(x).astype(np.float64)
    w = clustering.kmeans(h, 3, 3, 0)[0].astype(np.float64)  # the log's own k-means (n_init 3, the seed)
    assert log[-1]["p1_entropy"] == pytest.approx(scipy_entropy(ref_p(ref_q1(h, w)), axis=1).mean(), rel=1e-4)
    for v in saip.VARIANTS:
        assert log[-1]["p2_entropy"][v] == pytest.approx(scipy_entropy(ref_p(ref_q2(h, w, v)), axis=1).mean(),
                                                         rel=1e-4)
    assert log[-1]["code_norm"] == pytest.approx(np.linalg.norm(h, axis=1).mean(), rel=1e-5)


def test_stopping_rule_ends_the_clustering_stage():
    x, y = blobs(k=3, n=30)
    model = saip.SAIP(3, toy_config(learning_rate=1e-9, stop_tol=0.0003, cluster_epochs=50), seed=0, verbose=0)
    model.encoder = linear_encoder(x.shape[1])
    model.initialise(x)
    model.cluster(x)
    c = model.history["cluster"]
    assert c["converged"] and c["stop_epoch"] == 1 and c["epochs_run"] == 1 and c["changed"] == [0]
    assert "eval" not in c


def test_training_never_reads_labels(tmp_path):
    x, y = blobs(k=3, n=40)
    runs = [saip.SAIP(3, toy_config(variant="HIT", cluster_epochs=3, eval_every=1), seed=0, verbose=0).fit(x, labels)
            for labels in (y, None)]
    for a, b in zip(runs[0].net.get_weights(), runs[1].net.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(runs[0].predict(x), runs[1].predict(x))
    assert "kmeans_acc" in runs[0].history["pretrain"]["invariance"][0]
    assert "kmeans_acc" not in runs[1].history["pretrain"]["invariance"][0]
    assert "eval" in runs[0].history["cluster"] and "eval" not in runs[1].history["cluster"]


def test_run_output_cache_and_resume(tmp_path, monkeypatch):
    """run() returns the CLI's keys; the DAE is cached per seed and shared by the variants; an interrupted clustering
    stage resumes from its checkpoint to the same result as an uninterrupted one."""
    from common.datasets import Dataset

    x, y = blobs(k=3, n=40)
    data = Dataset(x=x.reshape(len(x), 2, 4, 1) - x.min(), y=y, n_clusters=3, name="toy")
    cfg = toy_config(variant="HOMO", cluster_epochs=4, eval_every=2)
    out = saip.run(data, cfg, seed=0, cache_dir=tmp_path / "cache", verbose=0, checkpoint_dir=tmp_path / "a")
    assert set(out) >= {"labels", "embedding", "centers", "kmeans_labels", "extra_labels", "arrays", "history"}
    assert set(out["extra_labels"]) == {"P2", "nearest"} and out["embedding"].shape == (120, 10)
    assert out["history"]["pretrain"]["cached"] is None
    assert list(tmp_path.joinpath("cache").glob("dae_seed0_*.weights.h5"))
    key = lambda **kw: saip.SAIP(3, toy_config(**kw), cache_dir="c")._ae_cache(saip.prepare(data.x))
    assert key(variant="HOMO") == key(variant="HIT", learning_rate=0.1)  # the variants share the DAE ...
    assert key(variant="HOMO") != key(variant="HOMO", noise_ratio=0.5)  # ... not across DAE settings

    monkeypatch.setattr(checkpoint, "SAVE_EVERY_SECONDS", 0.0)
    original = saip.ClusterMonitor.on_epoch_end

    def interrupt(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 2:
            raise KeyboardInterrupt  # after epoch 2's checkpoint (written by the previous epoch's end)

    monkeypatch.setattr(saip.ClusterMonitor, "on_epoch_end", interrupt)
    with pytest.raises(KeyboardInterrupt):
        saip.run(data, cfg, seed=0, cache_dir=tmp_path / "cache", verbose=0, checkpoint_dir=tmp_path / "b")
    monkeypatch.setattr(saip.ClusterMonitor, "on_epoch_end", original)
    resumed = saip.run(data, cfg, seed=0, cache_dir=tmp_path / "cache", verbose=0, checkpoint_dir=tmp_path / "b")
    assert resumed["history"]["pretrain"]["cached"] and resumed["history"]["pretrain"]["loss"]  # the DAE and its curve
    np.testing.assert_array_equal(resumed["kmeans_labels"], out["kmeans_labels"])
    assert resumed["history"]["cluster"]["resumed_at"] == [2]
    np.testing.assert_allclose(resumed["centers"], out["centers"], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(resumed["labels"], out["labels"])
    assert resumed["history"]["cluster"]["changed"] == out["history"]["cluster"]["changed"]
    assert [e["epoch"] for e in resumed["history"]["cluster"]["eval"]] == [0, 2, 4]
    for key in ("p1_entropy", "p2_entropy", "code_norm"):  # the per-epoch log survives the interruption
        assert len(resumed["history"]["cluster"][key]) == 5
        np.testing.assert_allclose(resumed["history"]["cluster"][key], out["history"]["cluster"][key], rtol=1e-5)


# ---------------------------------------------------------------- experiments/saip_baselines.py (Table III's k-means)
def test_pixel_kmeans_baseline_file_and_cli(tmp_path, monkeypatch, capsys):
    """k-means (n_init 10, the run's seed) on the centred pixels, one file per seed with its metrics; bad input: one
    error line."""
    import json

    from sklearn.cluster import KMeans

    from common import datasets
    from common.datasets import Dataset
    from experiments import saip_baselines

    x, y = np.random.default_rng(3).uniform(size=(60, 2, 4, 1)).astype("float32"), np.arange(60) % 3
    data = Dataset(x=x, y=y, n_clusters=3, name="toy")  # no structure: the seed and n_init change the labels
    monkeypatch.setattr(datasets, "load", lambda name: data)
    saip_baselines.write_baselines("mnist-test", seeds=(1,), out=tmp_path)
    rec = json.loads((tmp_path / "saip" / "mnist-test" / "baselines" / "seed1.json").read_text())
    ref = KMeans(3, n_init=10, random_state=1).fit(saip.prepare(data.x).astype(np.float64)).labels_
    assert rec["extra_metrics"]["k-means"] == metrics.evaluate(y, ref) and rec["metrics"] == {}
    assert (rec["paper"], rec["dataset"], rec["seed"], rec["n_samples"]) == ("saip", "mnist-test", 1, 60)
    assert saip_baselines.main(["nope"]) == 2 and saip_baselines.main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err)
