"""common.estimators: the scikit-learn API of the five methods on 60 tiny images (smoke profile, tiny budgets).

Each method is fitted twice (the fixture, then fit_predict on a clone): seconds each."""
import copy
import dataclasses

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from common import estimators
from conftest import blobs

# Tiny budgets through ``settings``; batches of all 60 samples (one batch shape: one graph trace per phase).
SETTINGS = {
    "DECS": dict(ae_epochs=0, cluster_iters=2, log_every=2, batch_size=64, kmeans_n_init=2, augment=False),
    "DEKM": dict(ae_epochs=1, batch_size=64, update_interval=2, max_iters=2, stop_tol=0.0, kmeans_n_init=2),
    "DCSS": dict(ae_epochs=0, batch_size=60, phase1_epochs=0, phase2_epochs=1, T2=1, kmeans_n_init=2),
    "SAIP": dict(ae_epochs=1, cluster_epochs=2, batch_size=64, kmeans_n_init=2, invariance_every=0, stop_tol=0.0),
    "RDC": dict(pretrain_iters=2, log_every=2, batch_size=64, max_iters=2, kmeans_n_init=2, stop_rule="none",
                augment=False),
}
NAMES = tuple(SETTINGS)
SEED = 7  # not the default 0: a wrapper that ignores random_state fails test_seed_and_settings_reach_the_module


def data():
    x, y = blobs(60, 3, 16, seed=0)
    return x[..., 0].astype(np.float64), np.array(["a", "b", "c"])[y]  # (n, H, W) float64; string labels


def make(name, **kw):
    return getattr(estimators, name)(**{"n_clusters": 3, "profile": "smoke", "random_state": SEED,
                                        "settings": dict(SETTINGS[name]), **kw})


@pytest.fixture(scope="module")
def fitted():
    """{name: (estimator, X as passed, a copy of X taken before fit, returned object)}, fitted on first use."""
    cache = {}

    def get(name):
        if name not in cache:
            x, y = data()
            est = make(name)
            before = x.copy()
            cache[name] = (est, x, before, est.fit(x, y))
        return cache[name]
    return get


def labels_by_module(name, est, x4):
    """The labels the paper module's own run() reports for x4 (n, H, W, 1) float32."""
    m = est.model_
    if name in ("DECS", "DCSS"):
        return np.argmax(m.predict_proba(x4), axis=1)
    if name == "SAIP":
        from papers import saip

        return m.predict_all(saip.prepare(x4, m.cfg.backbone, m.cfg.centre_inputs))["P1"]
    return m.labels  # DEKM: the last k-means; R-DC: k-means after phase 2


@pytest.mark.parametrize("name", NAMES)
def test_fit_returns_self_labels_in_range_x_unchanged(fitted, name):
    est, x, before, out = fitted(name)
    assert out is est
    assert est.labels_.shape == (60,) and est.labels_.dtype == np.int64
    assert est.labels_.min() >= 0 and est.labels_.max() < 3
    assert est.n_features_in_ == 256 and est.input_shape_ == (16, 16, 1)
    assert x.dtype == np.float64 and x.shape == (60, 16, 16)
    np.testing.assert_array_equal(x, before)  # X never changed in place
    x4 = x[..., None].astype(np.float32)
    np.testing.assert_array_equal(est.labels_, labels_by_module(name, est, x4))


@pytest.mark.parametrize("name", NAMES)
def test_seed_and_settings_reach_the_module(fitted, name):
    est = fitted(name)[0]
    module = est._module()
    assert est.model_.seed == SEED == est.seed_
    for key, value in SETTINGS[name].items():
        assert getattr(est.config_, key) == value, key
    for key, value in module.PROFILES["smoke"].items():  # the profile's budget where settings do not override
        if key not in SETTINGS[name] and key != "subset_per_class":
            assert getattr(est.config_, key) == value, key
    paper = make(name, profile="paper", settings=None).make_config()
    assert dataclasses.asdict(paper) == dataclasses.asdict(module.Config(**module.PROFILES["paper"]))
    assert est.get_params()["settings"] == SETTINGS[name]  # fit did not change the caller's dict


@pytest.mark.parametrize("name", NAMES)
def test_same_random_state_same_labels_and_y_only_logs(fitted, name):
    est, x, _, _ = fitted(name)
    again = clone(est)
    assert not hasattr(again, "labels_")
    # second fit: 4-D float32 input and no labels; the same seed gives the same final iterate and embedding
    labels = again.fit_predict(x[..., None].astype(np.float32))
    np.testing.assert_array_equal(labels, est.labels_)
    np.testing.assert_array_equal(again.transform(x), est.transform(x))


@pytest.mark.parametrize("name", NAMES)
def test_predict_and_transform_on_new_samples(fitted, name):
    est, x, _, _ = fitted(name)
    part = x[5:15]  # a subset: SAIP must centre with the training mean, not the subset's
    np.testing.assert_array_equal(est.predict(part), est.labels_[5:15])
    z = est.transform(part)
    assert z.shape == (10, est.model_.cfg.embedding_dim or 3)
    np.testing.assert_allclose(z, est.transform(x)[5:15], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"fitted on \(16, 16, 1\)"):
        est.predict(x[:, :8, :8])


def test_saip_centres_new_samples_by_the_training_mean(fitted):
    from papers import saip

    est, x, _, _ = fitted("SAIP")
    xp = saip.prepare(x[..., None].astype(np.float32))  # run()'s inputs: flattened, centred over all of X
    np.testing.assert_allclose(est.transform(x[:4]), est.model_.embed(xp[:4]), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(est.mean_, x.reshape(60, -1).mean(axis=0), rtol=1e-12)


def test_rdc_predicts_the_nearest_final_centre(fitted):
    est, x, _, _ = fitted("RDC")
    z = est.model_.embedding.astype(np.float64)
    d = ((z[:, None] - est.model_.centers[None].astype(np.float64)) ** 2).sum(-1)
    np.testing.assert_array_equal(est.predict(x), d.argmin(1))


def test_saip_takes_vectors_as_its_run_flattens_images(fitted):
    est, x, _, _ = fitted("SAIP")
    vec = make("SAIP").fit(x.reshape(60, -1))  # what saip.prepare makes of the images: the same run
    assert vec.input_shape_ == (256,)
    np.testing.assert_array_equal(vec.labels_, est.labels_)


@pytest.mark.parametrize("name", NAMES)
def test_clone_and_params_round_trip(name):
    est = make(name, verbose=0, cache_dir="somewhere")
    params = est.get_params()
    assert params == {"n_clusters": 3, "profile": "smoke", "random_state": SEED, "verbose": 0,
                      "settings": SETTINGS[name], "cache_dir": "somewhere"}
    twin = clone(est)
    assert twin is not est and twin.get_params() == params
    assert type(est)(**params).get_params() == params
    twin.set_params(n_clusters=5, settings={"batch_size": 8})
    assert twin.get_params()["n_clusters"] == 5 and twin.make_config().batch_size == 8
    assert est.get_params() == params  # the original untouched
    assert "n_clusters=3" in repr(est)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_setting_or_profile_is_a_value_error(name):
    x = data()[0]
    with pytest.raises(ValueError, match=r"unknown setting\(s\) 'no_such_key'; valid keys: .*batch_size"):
        make(name, settings={"no_such_key": 1}).fit(x)
    with pytest.raises(ValueError, match="unknown profile 'fast'; choose from smoke, quick, paper"):
        make(name, profile="fast").fit(x)
    with pytest.raises(ValueError, match="settings must be a dict"):
        make(name, settings=[("batch_size", 8)]).fit(x)


def test_bad_input_is_a_value_error():
    x, y = data()
    with pytest.raises(ValueError, match="DECS: needs images"):
        make("DECS").fit(x.reshape(60, -1))
    with pytest.raises(ValueError, match='settings=\\{"backbone": "mlp"\\} takes vectors'):
        make("DEKM").fit(x.reshape(60, -1))
    bad = x.copy()
    bad[3, 2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        make("SAIP").fit(bad)
    with pytest.raises(ValueError, match="vectors \\(n, d\\), got shape \\(60,\\)"):
        make("SAIP").fit(x[:, 0, 0])
    with pytest.raises(ValueError, match=r"fewer samples \(2\) than clusters \(3\)"):
        make("SAIP").fit(x[:2])
    with pytest.raises(ValueError, match="n_clusters must be an integer >= 2"):
        make("SAIP", n_clusters=1).fit(x)
    with pytest.raises(ValueError, match=r"one label per sample \(60\)"):
        make("SAIP").fit(x, y[:10])
    with pytest.raises(NotFittedError):
        make("DECS").predict(x)


def test_random_state_none_or_generator():
    assert make("DECS", random_state=np.random.RandomState(3))._seed() == np.random.RandomState(3).randint(2**31 - 1)
    assert 0 <= make("DECS", random_state=None)._seed() < 2**31 - 1
    assert make("DECS", random_state=np.int64(4))._seed() == 4


def test_estimator_type_is_clusterer():
    from sklearn.base import is_clusterer

    assert all(is_clusterer(make(name)) for name in NAMES)
    assert estimators.ESTIMATORS["rdc"] is estimators.RDC


def test_settings_dict_is_copied_into_a_fresh_config():
    settings = {"ae_epochs": 3}
    est = estimators.DECS(settings=settings)
    a, b = est.make_config(), est.make_config()
    a.ae_epochs = 99
    assert b.ae_epochs == 3 and settings == {"ae_epochs": 3} and est.settings is settings
    assert copy.deepcopy(est).get_params()["settings"] == settings
