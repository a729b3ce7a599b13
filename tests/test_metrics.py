"""Metrics against hand-computed contingency tables."""
import numpy as np
import pytest

from common import metrics

# 6 samples: classes 0,0,0,1,1,1; clusters 1,1,0,0,0,0.
# Contingency (clusters x classes): cluster0 = [1, 3], cluster1 = [2, 0].
Y = np.array([0, 0, 0, 1, 1, 1])
P = np.array([1, 1, 0, 0, 0, 0])


def test_acc_hungarian_by_hand():
    # best map: cluster1 -> class0 (2 right), cluster0 -> class1 (3 right): 5/6
    assert metrics.acc(Y, P) == pytest.approx(5 / 6)
    assert metrics.acc(Y, 1 - Y) == 1.0  # relabelling does not matter
    assert metrics.acc(Y, np.zeros(6, int)) == pytest.approx(0.5)


def test_acc_more_clusters_than_classes():
    # 3 clusters, 2 classes: the extra cluster maps to nothing and counts as wrong.
    y = np.array([0, 0, 1, 1, 1, 1])
    p = np.array([0, 0, 1, 1, 2, 2])
    assert metrics.acc(y, p) == pytest.approx(4 / 6)


def test_nmi_by_hand():
    n = np.array([[1, 3], [2, 0]], float) / 6  # joint p(cluster, class)
    pc, pg = n.sum(1), n.sum(0)
    nz = n > 0
    mi = np.sum(n[nz] * np.log(n[nz] / np.outer(pc, pg)[nz]))
    hc, hg = -np.sum(pc * np.log(pc)), -np.sum(pg * np.log(pg))
    assert metrics.nmi(Y, P) == pytest.approx(2 * mi / (hc + hg))
    assert metrics.nmi(Y, P, "max") == pytest.approx(mi / max(hc, hg))


def test_ari_by_hand():
    # sum C(n_ij,2) = 0+3+1+0 = 4; rows: C(4,2)+C(2,2) = 7; cols: C(3,2)*2 = 6; C(6,2) = 15
    expected = (4 - 7 * 6 / 15) / (0.5 * (7 + 6) - 7 * 6 / 15)
    assert metrics.ari(Y, P) == pytest.approx(expected)


def test_f1_after_mapping_by_hand():
    # mapped prediction [0,0,1,1,1,1]: class0 P=1 R=2/3 F1=0.8; class1 P=3/4 R=1 F1=6/7
    assert metrics.f1(Y, P, "macro") == pytest.approx((0.8 + 6 / 7) / 2)
    assert metrics.f1(Y, P, "micro") == pytest.approx(metrics.acc(Y, P))


def test_pairwise_precision_by_hand():
    # same-cluster pairs: C(4,2) + C(2,2) = 7; of those sharing a class: C(3,2) + C(2,2) = 4
    assert metrics.pairwise_precision(Y, P) == pytest.approx(4 / 7)
    # one cluster for everything: precision = fraction of pairs in the same class
    y = np.repeat(np.arange(10), 100)
    assert metrics.pairwise_precision(y, np.zeros_like(y)) == pytest.approx(10 * 4950 / (1000 * 999 / 2))


def test_evaluate_keys_and_perfect():
    out = metrics.evaluate(Y, Y + 5)
    scores = {"acc", "nmi", "nmi_max", "ari", "f1_macro", "f1_micro", "pairwise_precision"}
    assert set(out) == scores | {"nonempty_clusters", "smallest_cluster"}
    assert all(out[k] == pytest.approx(1.0) for k in scores)
    assert out["nonempty_clusters"] == len(np.unique(Y))  # relabelled ids are still one cluster each


def test_cluster_counts_see_an_empty_cluster():
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    pred = np.array([0, 0, 0, 0, 0, 2, 2, 2, 1])  # cluster 1 keeps one sample
    out = metrics.evaluate(y, pred)
    assert out["nonempty_clusters"] == 3 and out["smallest_cluster"] == 1
    out = metrics.evaluate(y, np.where(pred == 1, 2, pred))  # cluster 1 emptied
    assert out["nonempty_clusters"] == 2 and out["smallest_cluster"] == 4
    np.testing.assert_array_equal(metrics.cluster_sizes(np.array([0, 0, 3]), 5), [2, 0, 0, 1, 0])
    assert metrics.evaluate(y, np.zeros(9, int), n_clusters=10)["nonempty_clusters"] == 1


@pytest.mark.parametrize("bad", [np.array([0, 1]), np.array([[0, 1, 0, 1, 0, 1]]), np.array([0, 1, np.nan, 0, 1, 0])])
def test_bad_input_is_rejected(bad):
    with pytest.raises(ValueError):
        metrics.evaluate(Y, bad)
