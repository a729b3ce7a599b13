"""scikit-learn estimators for the five papers: ``DECS``, ``DEKM``, ``DCSS``, ``SAIP``, ``RDC``.

    from common.estimators import DECS
    labels = DECS(n_clusters=10, profile="quick", settings={"ae_epochs": 5}).fit_predict(x)

Each wraps its paper module (papers/<name>.py) without changing it: the run is the module's ``run()`` on the
array given, and ``labels_`` are the labels ``run()`` reports (the final iterate).

Parameters (all estimators; scikit-learn's ``get_params`` needs explicit constructor arguments, so the method's
settings come as one dict, not as ``**kwargs``):
  n_clusters   the number of clusters K.
  profile      a key of the module's PROFILES ("smoke", "quick", "paper"): its budget; ``subset_per_class`` is
               ignored (the estimator clusters all of X).
  random_state an int seed (the CLI's ``--seeds``); None or a RandomState: a seed drawn from it (``seed_``).
  verbose      Keras's verbosity (0: silent).
  settings     None or a dict of the module's Config fields, applied over the profile, e.g. {"ae_epochs": 5}
               (the CLI's ``--set``); an unknown key raises ValueError naming the valid ones.
  cache_dir    None (default): nothing is cached; else the folder of the module's pre-trained-weight cache.

Input X: images (n, H, W) (given a channel axis) or (n, H, W, C), float pixels in [0, 1] as the loaders of
common.datasets give them (nothing is rescaled here), or, for the MLP methods, feature vectors (n, d). DECS and
DCSS need images (DCSS: 16x16 or 28x28 grey, §6 of its paper); DEKM's default conv backbone needs images, and
``settings={"backbone": "mlp"}`` takes vectors; SAIP (MLP backbone: inputs flattened and centred, as its run()
does) and R-DC (MLP on the flattened input) take either. X is copied, never changed. ``y`` (any labels) only feeds
the evaluation log in ``history_``, as in the CLI.

Fitted attributes: ``labels_``, ``n_features_in_`` (values per sample), ``input_shape_`` (per sample, channel axis
included), ``seed_``, ``config_`` (the Config the method ran with), ``model_`` (the module's object), ``history_``.
``predict(X)``: the cluster of new samples by each method's own rule (DECS, DCSS: argmax q; DEKM: the nearest last
k-means centroid; SAIP: Eq. (12) on inputs centred by the training mean; R-DC: the nearest final centre, which is
what its final k-means, or DEC's argmax q, assigns); ``predict(X_train)`` gives ``labels_`` (R-DC with
``noise_sigma``: not, its training inputs were noised). ``transform(X)``: the embedding (n, e).
"""
import dataclasses
import importlib
import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted


class DeepClusterer(ClusterMixin, BaseEstimator):
    """Base of the five estimators (module docstring). ClusterMixin comes first, as scikit-learn requires for its
    tags (``estimator_type == "clusterer"``)."""

    paper = None          # the module under papers/
    needs_images = True   # False: vectors (n, d) accepted as well

    def __init__(self, n_clusters=10, profile="paper", random_state=0, verbose=0, settings=None, cache_dir=None):
        self.n_clusters = n_clusters
        self.profile = profile
        self.random_state = random_state
        self.verbose = verbose
        self.settings = settings
        self.cache_dir = cache_dir

    # --- settings ------------------------------------------------------------------------------------------
    def _module(self):
        return importlib.import_module(f"papers.{self.paper}")

    def make_config(self):
        """The module's Config: PROFILES[profile] (less subset_per_class), then ``settings``; nothing trains."""
        module, name = self._module(), type(self).__name__
        if self.profile not in module.PROFILES:
            raise ValueError(f"{name}: unknown profile {self.profile!r}; choose from {', '.join(module.PROFILES)}")
        if self.settings is not None and not isinstance(self.settings, dict):
            raise ValueError(f"{name}: settings must be a dict of Config fields or None, got {type(self.settings)}")
        valid = [f.name for f in dataclasses.fields(module.Config)]
        unknown = sorted(set(self.settings or {}) - set(valid))
        if unknown:
            raise ValueError(f"{name}: unknown setting(s) {', '.join(map(repr, unknown))}; valid keys: "
                             f"{', '.join(valid)}")
        budget = {k: v for k, v in module.PROFILES[self.profile].items() if k != "subset_per_class"}
        return module.Config(**{**budget, **(self.settings or {})})  # a fresh object: modules may change it

    def _seed(self):
        if isinstance(self.random_state, numbers.Integral) and not isinstance(self.random_state, bool):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(2**31 - 1))

    # --- input -----------------------------------------------------------------------------------------------
    def _check_x(self, X, fitted=False):
        """A float32 copy of X, (n, H, W, C) or (n, d); ValueError (one line) on anything else."""
        name = type(self).__name__
        a = np.asarray(X)
        if a.dtype.kind not in "biuf":
            raise ValueError(f"{name}: X must hold numbers, got dtype {a.dtype}")
        if a.ndim not in (2, 3, 4):
            raise ValueError(f"{name}: X must be images (n, H, W) or (n, H, W, C) or vectors (n, d), got shape "
                             f"{a.shape}")
        x = np.array(a, dtype=np.float32, copy=True)  # the modules never see (or change) the caller's array
        if x.ndim == 3:
            x = x[..., None]
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{name}: X holds NaN or infinite values")
        if fitted:
            if x.shape[1:] != self.input_shape_:
                raise ValueError(f"{name}: X has samples of shape {x.shape[1:]}, the estimator was fitted on "
                                 f"{self.input_shape_}")
        elif x.ndim == 2 and self._needs_images():
            raise ValueError(f"{name}: needs images (n, H, W) or (n, H, W, C), got vectors of shape {x.shape}"
                             + self._vector_hint())
        return x

    def _needs_images(self):
        return self.needs_images

    def _vector_hint(self):
        return ""

    # --- scikit-learn API ----------------------------------------------------------------------------------
    def fit(self, X, y=None):
        """Runs the method on X; ``y`` (optional labels of any values) only feeds the evaluation log."""
        cfg = self.make_config()
        x = self._check_x(X)
        k = self.n_clusters
        if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 2:
            raise ValueError(f"{type(self).__name__}: n_clusters must be an integer >= 2, got {k!r}")
        if len(x) < k:
            raise ValueError(f"{type(self).__name__}: fewer samples ({len(x)}) than clusters ({k})")
        if y is not None:
            y = np.asarray(y)
            if y.ndim != 1 or len(y) != len(x):
                raise ValueError(f"{type(self).__name__}: y must hold one label per sample ({len(x)}), got shape "
                                 f"{y.shape}")
            y = np.unique(y, return_inverse=True)[1].reshape(-1).astype(np.int64)
        self.seed_ = self._seed()
        self.input_shape_ = tuple(int(s) for s in x.shape[1:])
        self.n_features_in_ = int(np.prod(self.input_shape_))
        labels = self._fit(x, None if y is None else y, cfg)
        self.config_ = self.model_.cfg
        self.history_ = self.model_.history
        self.labels_ = np.asarray(labels, dtype=np.int64)
        return self

    def fit_predict(self, X, y=None):
        """``fit(X, y).labels_`` (y reaches the evaluation log; ClusterMixin's version drops it)."""
        return self.fit(X, y).labels_

    def predict(self, X):
        """The clusters of X by the method's own rule (module docstring)."""
        check_is_fitted(self, "labels_")
        return np.asarray(self._predict(self._check_x(X, fitted=True)), dtype=np.int64)

    def transform(self, X):
        """The embedding of X, (n, e)."""
        check_is_fitted(self, "labels_")
        return np.asarray(self._embed(self._check_x(X, fitted=True)), dtype=np.float32)

    def _fit(self, x, y, cfg):
        raise NotImplementedError

    def _embed(self, x):
        return self.model_.embed(x)


class _ImageMethod(DeepClusterer):
    """DECS and DCSS: run() is ``Class(K, cfg, seed, cache_dir, verbose).fit(x, y)``; labels = argmax q."""

    def _fit(self, x, y, cfg):
        cls = getattr(self._module(), type(self).__name__)
        self.model_ = cls(self.n_clusters, cfg, seed=self.seed_, cache_dir=self.cache_dir, verbose=self.verbose)
        self.model_.fit(x, y)
        return self.model_.predict(x)

    def _predict(self, x):
        return self.model_.predict(x)

    def predict_proba(self, X):
        """The soft assignments q (n, K) of X."""
        check_is_fitted(self, "labels_")
        return self.model_.predict_proba(self._check_x(X, fitted=True))


class DECS(_ImageMethod):
    """Cheng et al., IJCAI 2024 (papers/decs.py): conv autoencoder, then L_c (Eq. 8); labels argmax q."""

    paper = "decs"


class DCSS(_ImageMethod):
    """Sadeghi & Armanfard (papers/dcss.py): AE of Fig. 12 (16x16 or 28x28 grey images), phases 1-2; argmax q."""

    paper = "dcss"


class DEKM(DeepClusterer):
    """Guo et al., ICDMW 2021 (papers/dekm.py): labels = the last k-means (on the final embedding). run()'s
    prepare() resizes only COIL-20 (by data set name), so X is used as given."""

    paper = "dekm"

    def _needs_images(self):
        return self.make_config().backbone == "conv"

    def _vector_hint(self):
        return ' (the default conv backbone; settings={"backbone": "mlp"} takes vectors)'

    def _fit(self, x, y, cfg):
        from papers import dekm

        self.model_ = dekm.DEKM(self.n_clusters, cfg, seed=self.seed_, cache_dir=self.cache_dir,
                                verbose=self.verbose).fit(x, y)
        return self.model_.labels

    def _predict(self, x):
        return self.model_.predict(x)  # DEKM.predict(None) would be the training labels: x is always given here


class SAIP(DeepClusterer):
    """Peng et al. (papers/saip.py): Config fields left None are filled from Table II's row for data sets outside
    the table (mnist-test's; set them in ``settings`` to change). Inputs as run() prepares them: MLP, flattened and
    centred by the training mean (kept for ``predict``); CNN, the images. Labels: Eq. (12), argmax P1."""

    paper = "saip"
    needs_images = False

    def _needs_images(self):
        return self.make_config().backbone == "cnn"

    def _vector_hint(self):
        return ' (the cnn backbone; the default "mlp" takes vectors)'

    def _fit(self, x, y, cfg):
        from papers import saip

        cfg = cfg.resolved(None)
        xp = saip.prepare(x, cfg.backbone, cfg.centre_inputs)
        self.mean_ = None
        if cfg.backbone == "mlp" and cfg.centre_inputs:
            self.mean_ = x.reshape(len(x), -1).astype(np.float64).mean(axis=0)  # = saip.prepare's mean
        self.model_ = saip.SAIP(self.n_clusters, cfg, seed=self.seed_, cache_dir=self.cache_dir,
                                verbose=self.verbose).fit(xp, y)
        return self.model_.predict_all(xp)["P1"]

    def _prepare(self, x):
        """saip.prepare with the training mean (prepare centres by the mean of the array it is given)."""
        if self.model_.cfg.backbone == "cnn":
            return x
        f = x.reshape(len(x), -1).astype(np.float64)
        return (f if self.mean_ is None else f - self.mean_).astype(np.float32)

    def _predict(self, x):
        return self.model_.predict(self._prepare(x))

    def _embed(self, x):
        return self.model_.embed(self._prepare(x))


class RDC(DeepClusterer):
    """Shaheen et al. (papers/rdc.py): alpha/beta left None take Table 2's FMNIST values (as run() does for data
    sets outside the table). R-DC's resolve() changes its Config in place: it gets a fresh one per fit. Labels:
    k-means after the last phase (DEC's argmax q with phases P1P3/P1P2P3)."""

    paper = "rdc"
    needs_images = False

    def _fit(self, x, y, cfg):
        from papers import rdc

        cfg = dataclasses.replace(cfg).resolve("user data")  # not in Table 2: FMNIST's alpha and beta
        self.model_ = rdc.RDC(self.n_clusters, cfg, seed=self.seed_, cache_dir=self.cache_dir,
                              verbose=self.verbose).fit(x, y)
        return self.model_.labels

    def _embed(self, x):
        from papers import rdc

        return self.model_.embed(rdc.prepare_input(x, self.model_.cfg))  # the input the method trained on

    def _predict(self, x):
        z = np.asarray(self._embed(x), np.float64)
        c = np.asarray(self.model_.centers, np.float64)
        return np.argmin(((z[:, None, :] - c[None]) ** 2).sum(-1), axis=1)


ESTIMATORS = {"decs": DECS, "dekm": DEKM, "dcss": DCSS, "saip": SAIP, "rdc": RDC}
