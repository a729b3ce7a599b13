"""The shared skeleton of the paper modules: common.tables, common.nets, common.clustering, common.estimator
(common.training's EvalLogger and indexed_batches: tests/test_training.py)."""
import inspect
import json

import keras
import numpy as np
import pytest
from keras import layers
from sklearn.cluster import KMeans

from common import clustering, estimator, nets, tables


# --- common.tables ------------------------------------------------------------------------------------------------
def test_parse_table_values_missing_cells_and_options():
    text = """
    # a comment line
    A      .5 .25 - -
    B C    90.00 80.5 12.345 -
    """
    plain = tables.parse_table("A .5 .25 - -\nB .9 .8 .7 -", ("x", "y"))
    assert plain == {"A": {"x": {"acc": 0.5, "nmi": 0.25}, "y": None},
                     "B": {"x": {"acc": 0.9, "nmi": 0.8}, "y": {"acc": 0.7, "nmi": None}}}
    pct = tables.parse_table(text, ("x", "y"), percent=True, digits=3, absent=("ari",))
    assert list(pct) == ["A", "B C"]                                   # names may contain spaces
    assert pct["B C"]["x"] == {"acc": 0.9, "nmi": 0.805, "ari": None}
    assert pct["B C"]["y"] == {"acc": 0.123, "nmi": None, "ari": None}  # 0.12345 rounded to 3 decimals
    assert pct["A"]["x"]["acc"] == 0.005 and pct["A"]["y"] is None
    assert tables.parse_table("A 12.5 50", ("x",), percent=True)["A"]["x"] == {"acc": 0.125, "nmi": 0.5}


def test_parse_table_bars_and_malformed_rows():
    t = tables.parse_table("k means 1 2 3 | 4 5 6", ("a", "b"), metrics=("p", "q", "r"))
    assert t == {"k means": {"a": {"p": 1.0, "q": 2.0, "r": 3.0}, "b": {"p": 4.0, "q": 5.0, "r": 6.0}}}
    for bad in ("HOMO 1 2 3 | 4 5 6 7",         # one value too many after the bar (and no room for a name)
                "M 1 2 | 3 4 5 6",                # bar in the wrong place
                "M 1 2 3",                        # too few values
                "M 1 2 x 4"):                     # not a number
        with pytest.raises(ValueError, match="malformed table row"):
            tables.parse_table(bad, ("a", "b"), metrics=("p", "q") if "HOMO" not in bad else ("p", "q", "r", "s"))


def test_departures_markdown():
    rows = [("stop", "0.1 %", "0.5 %", "paper; `--set stop_tol=0.005`"), ("a|b", "x\n  y", "z", "w")]
    md = tables.departures_markdown(rows).splitlines()
    assert len(md) == 2 + len(rows)
    assert md[0] == "| topic | paper | authors' code | ours (the option that gives the other) |"
    assert md[2] == "| stop | 0.1 % | 0.5 % | paper; `--set stop_tol=0.005` |"
    assert md[3] == "| a\\|b | x y | z | w |"
    for bad in ([("a", "b", "c")], [("a", "b", "c", "")], [["a", "b", "c", "d"]]):
        with pytest.raises(ValueError, match="four|non-empty"):
            tables.departures_markdown(bad)


@pytest.mark.parametrize("paper", ["decs", "dekm", "dcss", "saip", "rdc"])
def test_module_departures_render(paper):
    """Every departure of the module is a 4-column row of the rendered table, and each names an option or says
    which reading is followed."""
    import importlib

    module = importlib.import_module(f"papers.{paper}")
    md = tables.departures_markdown(module.DEPARTURES).splitlines()
    assert len(module.DEPARTURES) >= 3 and len(md) == 2 + len(module.DEPARTURES)
    for line, row in zip(md[2:], module.DEPARTURES):
        assert line.count(" | ") == 3 and line.startswith(f"| {' '.join(row[0].split())} |")
    assert "DEPARTURES" in module.__doc__ and len(module.__doc__.splitlines()) <= 26


# --- common.nets --------------------------------------------------------------------------------------------------
def _dekm_reference(input_shape, e, hidden):
    """DEKM's former builder (glorot default, Flatten/Reshape), kept here as the reference."""
    d = int(np.prod(input_shape))
    x_in = keras.Input(input_shape)
    x = layers.Flatten()(x_in)
    for units in hidden:
        x = layers.Dense(units, activation="relu")(x)
    enc = keras.Model(x_in, layers.Dense(e, name="embedding")(x))
    z_in = keras.Input((e,))
    y = z_in
    for units in reversed(hidden):
        y = layers.Dense(units, activation="relu")(y)
    return enc, keras.Model(z_in, layers.Reshape(input_shape)(layers.Dense(d, name="reconstruction")(y)))


def _vs():
    return keras.initializers.VarianceScaling(1.0 / 3.0, mode="fan_in", distribution="uniform")


def _saip_reference(d, e, hidden):
    """SAIP's builder (VarianceScaling per layer, named layers, vectors in)."""
    x_in = keras.Input((d,))
    x = x_in
    for i, units in enumerate(hidden):
        x = layers.Dense(units, activation="relu", kernel_initializer=_vs(), name=f"encoder_{i}")(x)
    enc = keras.Model(x_in, layers.Dense(e, kernel_initializer=_vs(), name="embedding")(x))
    z_in = keras.Input((e,))
    y = z_in
    for i, units in enumerate(reversed(hidden)):
        y = layers.Dense(units, activation="relu", kernel_initializer=_vs(), name=f"decoder_{i}")(y)
    return enc, keras.Model(z_in, layers.Dense(d, kernel_initializer=_vs(), name="reconstruction")(y))


def _weights(models):
    return [w for m in models for w in m.get_weights()]


def test_mlp_autoencoder_reproduces_each_modules_weights_bit_for_bit():
    hidden = (7, 5, 11)
    keras.utils.set_random_seed(3)
    ref = _weights(_dekm_reference((4, 4, 1), 3, hidden))
    keras.utils.set_random_seed(3)
    enc, dec = nets.mlp_autoencoder((4, 4, 1), 3, hidden)
    got = _weights((enc, dec))
    assert [a.shape for a in got] == [a.shape for a in ref] and all(np.array_equal(a, b) for a, b in zip(got, ref))
    assert dec.output.shape[1:] == (4, 4, 1) and enc.get_layer("embedding") is not None

    keras.utils.set_random_seed(3)
    ref = _weights(_saip_reference(6, 2, hidden))
    keras.utils.set_random_seed(3)
    enc, dec = nets.mlp_autoencoder((6,), 2, hidden, initializer=_vs, flatten=False,
                                    names={"encoder": "encoder_{i}", "decoder": "decoder_{i}"})
    got = _weights((enc, dec))
    assert all(np.array_equal(a, b) for a, b in zip(got, ref)) and len(got) == len(ref)
    assert [layer.name for layer in enc.layers[1:]] == ["encoder_0", "encoder_1", "encoder_2", "embedding"]
    # a shared initializer instance draws other weights than a fresh one per layer: the test can tell
    keras.utils.set_random_seed(3)
    shared = _vs()
    enc2, dec2 = nets.mlp_autoencoder((6,), 2, hidden, initializer=lambda: shared, flatten=False)
    assert not all(np.array_equal(a, b) for a, b in zip(_weights((enc2, dec2)), ref))
    with pytest.raises(ValueError, match="flatten=False"):
        nets.mlp_autoencoder((4, 4), 2, hidden, flatten=False)
    with pytest.raises(ValueError, match="unknown layer name"):
        nets.mlp_autoencoder((6,), 2, hidden, names={"hiden": "x"})


# --- common.clustering -------------------------------------------------------------------------------------------
def test_kmeans_matches_scikit_learn_and_limits_threads(monkeypatch):
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(c, 0.1, size=(20, 2)) for c in (0.0, 3.0, 6.0)]).astype(np.float32)
    km = KMeans(n_clusters=3, n_init=4, random_state=5).fit(z.astype(np.float64))
    centers, labels = clustering.kmeans(z, 3, 4, 5)
    assert centers.dtype == np.float32 and np.array_equal(centers, km.cluster_centers_.astype(np.float32))
    assert np.array_equal(labels, km.labels_)
    seen = []
    original = KMeans.fit

    def spy(self, *args, **kwargs):
        from threadpoolctl import threadpool_info
        seen.append([p["num_threads"] for p in threadpool_info() if p["user_api"] == "openmp"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(KMeans, "fit", spy)
    fitted = clustering.fit_kmeans(z, 3, 4, 5, threads=1)
    assert np.array_equal(fitted.labels_, km.labels_) and fitted.n_iter_ >= 1
    if seen[0]:  # an OpenMP runtime is loaded (scikit-learn's): limited to one thread inside the call
        assert set(seen[0]) == {1}


# --- common.estimator --------------------------------------------------------------------------------------------
class _Toy(estimator.DeepClusterer):
    """A linear 'encoder' and labels by the sign of the first code: enough to exercise the plumbing."""
    paper = "decs"

    class config_class:  # noqa: N801 (a Config stand-in)
        def __init__(self, scale=1.0):
            self.scale = scale

    def fit(self, x, y=None):
        keras.utils.set_random_seed(self.seed)
        x_in = keras.Input(x.shape[1:])
        self.encoder = keras.Model(x_in, layers.Dense(2, name="code")(x_in))
        self.history["fit"] = {"y_given": y is not None}
        return self

    def run_outputs(self, x):
        z = self.embed(x)
        return {"labels": (z[:, 0] > 0).astype(int), "embedding": z, "centers": np.zeros((2, 2)),
                "history": self.history}


def test_cache_key_depends_on_part_data_seed_and_numerics_version(tmp_path, monkeypatch):
    from common import golden

    versions = {"decs": "v1"}
    monkeypatch.setattr(golden, "numerics_version", lambda paper: versions[paper])
    x = np.zeros((4, 3), np.float32)
    model = _Toy(2, seed=1, cache_dir=tmp_path)
    path = model.cache_path("ae", {"epochs": 2}, x)
    assert path.parent == tmp_path and path.name.startswith("ae_seed1_") and path.name.endswith(".weights.h5")
    assert model.cache_path("ae", {"epochs": 2}, x) == path
    assert model.cache_path("ae", {"epochs": 3}, x) != path                      # settings
    assert model.cache_path("ae", {"epochs": 2}, x + 1) != path                  # data
    assert _Toy(2, seed=2, cache_dir=tmp_path).cache_path("ae", {"epochs": 2}, x) != path  # seed
    assert model.cache_path("phase1", {"epochs": 2}, x).name.startswith("phase1_seed1_")
    versions["decs"] = "v2"
    assert model.cache_path("ae", {"epochs": 2}, x) != path                      # numerics of the code
    assert _Toy(2).cache_path("ae", {}, x) is None


def test_save_then_load_cached_stage(tmp_path, monkeypatch):
    from common import golden

    monkeypatch.setattr(golden, "numerics_version", lambda paper: "v")
    x = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    a = _Toy(2, seed=0, cache_dir=tmp_path).fit(x)
    path = a.cache_path("stage", {}, x)
    assert a.load_cached(a.encoder, path) is None and a.load_cached(a.encoder, None) is None
    a.cache_checkpoint(path).save("stage", a.encoder, 1)
    assert (tmp_path / (path.name + ".ckpt")).is_dir()
    a.save_cached(a.encoder, path, {"loss": [1.0, 0.5]})
    assert json.loads(path.with_name(path.name.replace(".weights.h5", ".json")).read_text()) == {"loss": [1.0, 0.5]}
    assert path.is_file() and not (tmp_path / (path.name + ".ckpt")).exists()
    b = _Toy(2, seed=7, cache_dir=tmp_path).fit(x)          # other initial weights
    assert not np.array_equal(b.embed(x), a.embed(x))
    assert b.load_cached(b.encoder, path) == {"loss": [1.0, 0.5], "cached": str(path)}
    assert np.array_equal(b.embed(x), a.embed(x))
    a.save_cached(a.encoder, None, {})  # no cache: nothing written, no error


def test_make_run_signature_and_flow(tmp_path, capsys):
    from common.datasets import Dataset

    run = _Toy.make_run()
    assert list(inspect.signature(run).parameters) == ["data", "config", "seed", "cache_dir", "verbose",
                                                       "checkpoint_dir"]
    x = np.random.default_rng(1).normal(size=(8, 3)).astype(np.float32)
    out = run(Dataset(x=x, y=np.arange(8) % 2, n_clusters=2, name="toy"), _Toy.config_class(), 4,
              checkpoint_dir=tmp_path / "ck")
    assert out["history"]["fit"] == {"y_given": True} and out["history"]["seconds"] >= 0
    assert out["embedding"].shape == (8, 2) and out["labels"].tolist() == (out["embedding"][:, 0] > 0).tolist()
    model = _Toy(3, verbose=0, checkpoint_dir=tmp_path / "ck", cache_dir=str(tmp_path))
    assert model.checkpoint.folder == tmp_path / "ck" and model.cache_dir == tmp_path
    assert model.cfg.scale == 1.0 and model.n_clusters == 3 and model.history == {}
    model.log("quiet")
    _Toy(3, verbose=1).log("said")
    assert capsys.readouterr().out == "said\n"
