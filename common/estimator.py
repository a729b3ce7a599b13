"""The plumbing every paper's estimator shares: ``DeepClusterer`` (constructor, caches of finished stages,
embedding) and ``DeepClusterer.make_run()``, the module-level ``run()`` the CLI and the golden runs call.

    class DECS(DeepClusterer):
        paper, config_class = "decs", Config
        def fit(self, x, y=None): ...                  # the paper's Algorithm; sets self.history[...]
        def run_outputs(self, x): return {"labels": ..., "embedding": ..., "centers": ..., "history": ...}
    run = DECS.make_run()

Caches (``cache_path``, ``load_cached``, ``save_cached``): a finished stage is stored as
``<cache_dir>/<stage>_seed<k>_<key>.weights.h5`` with its history beside it (``.json``). The key hashes what
changes the stage's numbers: the settings part given, the data (training.data_fingerprint), the seed and the code
(common.golden.numerics_version(paper): code whose golden outputs are today's maps to one id, so a refactor keeps
the caches); never a logging interval (leave those out of ``part``). Writing order: history JSON, then the weights
(atomically: the weights file marks the cache complete), then the stage's checkpoint folder is cleared.
"""
import json
import time
from pathlib import Path

from common import checkpoint, results, training


class DeepClusterer:
    """Base of the papers' estimators. Subclasses set ``paper`` (the module name under papers/) and
    ``config_class`` (its Config), and define ``fit(x, y=None)`` and ``run_outputs(x)``.

    Attributes: n_clusters, cfg (``config`` or a default Config), seed, verbose, cache_dir (a Path or None),
    checkpoint (common.checkpoint.Checkpoint of ``checkpoint_dir``, or None), history (a dict the stages fill).
    """

    paper = None
    config_class = None

    def __init__(self, n_clusters, config=None, seed=0, cache_dir=None, verbose=1, checkpoint_dir=None):
        self.n_clusters, self.seed, self.verbose = n_clusters, seed, verbose
        self.cfg = config or self.config_class()
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.checkpoint = checkpoint.Checkpoint(checkpoint_dir) if checkpoint_dir is not None else None
        self.history = {}

    def log(self, message):
        """Prints ``message`` (flushed) when verbose."""
        if self.verbose:
            print(message, flush=True)

    def embed(self, x):
        """The encoder's codes of x, inference mode (``self.encoder`` is set by fit)."""
        return self.encoder.predict(x, batch_size=1024, verbose=0)

    # --- caches of finished stages ----------------------------------------------------------------------------
    def cache_path(self, stage, part, x):
        """``cache_dir/<stage>_seed<k>_<key>.weights.h5`` (module docstring), or None without a cache_dir.
        ``part``: a JSON-able dict of the settings (and anything else) the stage's numbers depend on."""
        if self.cache_dir is None:
            return None
        from common import golden  # imports the paper module by name: not at this module's import time

        key = training.config_hash({**part, **training.data_fingerprint(x), "seed": self.seed,
                                    "code": golden.numerics_version(self.paper)})
        return self.cache_dir / f"{stage}_seed{self.seed}_{key}.weights.h5"

    @staticmethod
    def cache_checkpoint(path):
        """The checkpoint of a stage being trained into cache ``path`` (``<path>.ckpt/``), or None."""
        return None if path is None else checkpoint.Checkpoint(str(path) + ".ckpt")

    @staticmethod
    def _history_path(path):
        return path.with_name(path.name.replace(".weights.h5", ".json"))

    def load_cached(self, model, path):
        """Loads cached weights into the built ``model``; returns the stage's history with ``"cached": path``,
        or None when ``path`` is None or not there yet."""
        if path is None or not path.is_file():
            return None
        model.load_weights(path)
        return {**json.loads(self._history_path(path).read_text()), "cached": str(path)}

    def save_cached(self, model, path, history):
        """Stores a finished stage at ``path`` (None: nothing): history JSON, weights, then the checkpoint cleared."""
        if path is None:
            return
        results.write_json(self._history_path(path), history)
        training.save_weights_atomically(model, path)
        self.cache_checkpoint(path).clear()

    # --- the CLI's run() ------------------------------------------------------------------------------------------
    @classmethod
    def prepare_run(cls, data, config):
        """(x, config, extra constructor kwargs) of one run on a Dataset; default (data.x, config, {})."""
        return data.x, config, {}

    def run_outputs(self, x):
        """The dict run() returns after fit(x): labels, embedding, centers, history, and optionally kmeans_labels,
        extra_labels {name: labels}, arrays {name: array} (saved in the .npz); see common.cli.run_one."""
        raise NotImplementedError

    @classmethod
    def make_run(cls):
        """The module-level ``run(data, config, seed, cache_dir=None, verbose=1, checkpoint_dir=None)``: prepare_run,
        fit on (x, data.y) (labels feed the evaluation logs only), then run_outputs(x). ``history["seconds"]``:
        the wall time of construction and fit, unless fit set it."""
        def run(data, config, seed, cache_dir=None, verbose=1, checkpoint_dir=None):
            t0 = time.perf_counter()
            x, config, kwargs = cls.prepare_run(data, config)
            model = cls(data.n_clusters, config, seed=seed, cache_dir=cache_dir, verbose=verbose,
                        checkpoint_dir=checkpoint_dir, **kwargs).fit(x, data.y)
            model.history.setdefault("seconds", time.perf_counter() - t0)
            return model.run_outputs(x)

        run.__doc__ = f"One {cls.__name__} training run for the reproduction CLI (DeepClusterer.make_run)."
        return run
