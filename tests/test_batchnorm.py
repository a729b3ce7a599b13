"""common.batchnorm.BatchNormalization (TensorFlow's fused kernel in training) against keras.layers.BatchNormalization
and a float64 NumPy reference: training outputs, gradients and moving statistics (float32 tolerance: another
summation order, not bit-identical), inference bit-identical, weights loading both ways, fit, the JAX fallback."""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

keras = pytest.importorskip("keras")
if keras.backend.backend() != "tensorflow":
    pytest.skip("the fused path is TensorFlow's (test_jax_falls_back_to_keras runs JAX from here)", allow_module_level=True)
import tensorflow as tf  # noqa: E402

from common import checkpoint  # noqa: E402
from common.batchnorm import BatchNormalization as FusedBN  # noqa: E402

RTOL, ATOL = 1e-5, 1e-6  # atol relative to the largest reference value (gradients are sums of O(100) terms)


def _close(actual, desired, what):
    desired = np.asarray(desired)
    np.testing.assert_allclose(actual, desired, rtol=RTOL, atol=ATOL * max(1.0, np.abs(desired).max()), err_msg=what)


def _data(shape, seed=0, axis=-1):
    """Inputs with a non-zero mean and unequal scales along ``axis``, random weights (gamma, beta, moving
    statistics), and the upstream gradient w of the loss sum(y * w)."""
    rng = np.random.default_rng(seed)
    c = shape[axis]
    along = [1] * len(shape)
    along[axis] = c
    x = (rng.normal(1.5, 1.0, along) + rng.uniform(0.5, 2.5, along) * rng.standard_normal(shape)).astype("float32")
    weights = {"gamma": rng.uniform(0.5, 1.5, c), "beta": rng.normal(0, 0.5, c),
               "moving_mean": rng.normal(0, 1, c), "moving_variance": rng.uniform(0.5, 2, c)}
    w = rng.standard_normal(shape).astype("float32")
    return x, {k: v.astype("float32") for k, v in weights.items()}, w


def _layer(cls, shape, weights, **kwargs):
    layer = cls(**kwargs)
    layer.build(shape)
    for v in layer.weights:
        v.assign(weights[v.name])
    return layer


def _train_step(layer, x, w, graph):
    """One training-mode call: output, gradients of sum(y * w) w.r.t. (x, gamma, beta) (None where the layer
    lacks the variable), and the moving mean and variance after the update."""

    def step():
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = layer(xt, training=True)
            loss = tf.reduce_sum(y * w)
        params = [layer.gamma if layer.scale else None, layer.beta if layer.center else None]
        sources = [xt] + [p for p in params if p is not None]
        grads = iter(tape.gradient(loss, sources))
        gx = next(grads)
        return y, gx, [None if p is None else next(grads) for p in params]

    y, gx, (gg, gb) = tf.function(step)() if graph else step()
    out = {"y": y, "dx": gx, "dgamma": gg, "dbeta": gb,
           "moving_mean": layer.moving_mean, "moving_variance": layer.moving_variance}
    return {k: None if v is None else keras.ops.convert_to_numpy(v) for k, v in out.items()}


CASES = [  # rank, momentum, epsilon, center, scale
    (4, 0.99, 1e-3, True, True),
    (4, 0.9, 0.5, True, True),
    (4, 0.0, 1e-2, True, True),
    (4, 0.9, 1e-3, False, True),
    (4, 0.9, 1e-3, True, False),
    (2, 0.9, 1e-3, True, True),
    (2, 0.99, 0.1, True, True),
    (2, 0.7, 1e-3, False, False),
]


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "tf.function"])
@pytest.mark.parametrize("rank,momentum,epsilon,center,scale", CASES)
def test_training_matches_keras(rank, momentum, epsilon, center, scale, graph):
    shape = (8, 4, 4, 5) if rank == 4 else (12, 6)
    x, weights, w = _data(shape, seed=rank)
    kw = dict(momentum=momentum, epsilon=epsilon, center=center, scale=scale)
    ref = _train_step(_layer(keras.layers.BatchNormalization, shape, weights, **kw), x, w, graph)
    got = _train_step(_layer(FusedBN, shape, weights, **kw), x, w, graph)
    for key, value in ref.items():
        if value is None:
            assert got[key] is None, key
        else:
            _close(got[key], value, key)


def test_training_matches_float64_formulas():
    """y = (x - m)/sqrt(v + eps) gamma + beta with the biased batch variance v; dL/dx, dL/dgamma, dL/dbeta of
    L = sum(y w) by hand; moving = moving * momentum + batch * (1 - momentum)."""
    shape, momentum, eps = (6, 3, 3, 4), 0.8, 0.05
    x, weights, w = _data(shape, seed=7)
    got = _train_step(_layer(FusedBN, shape, weights, momentum=momentum, epsilon=eps), x, w, graph=True)
    x64, w64 = x.astype("float64").reshape(-1, 4), w.astype("float64").reshape(-1, 4)
    g, b = (weights[k].astype("float64") for k in ("gamma", "beta"))
    m, v = x64.mean(0), x64.var(0)  # NumPy's var: biased
    inv = 1 / np.sqrt(v + eps)
    xc = x64 - m
    expected = {
        "y": xc * inv * g + b,
        "dx": g * inv * (w64 - w64.mean(0) - xc * inv**2 * (w64 * xc).mean(0)),
        "dgamma": (w64 * xc * inv).sum(0),
        "dbeta": w64.sum(0),
        "moving_mean": weights["moving_mean"] * momentum + m * (1 - momentum),
        "moving_variance": weights["moving_variance"] * momentum + v * (1 - momentum),
    }
    for key, value in expected.items():
        _close(got[key].reshape(value.shape), value, key)


def _op_types(layer, x, training):
    fn = tf.function(lambda t: layer(t, training=training))
    return {op.type for op in fn.get_concrete_function(tf.TensorSpec(x.shape, x.dtype)).graph.get_operations()}


@pytest.mark.parametrize("shape", [(8, 4, 4, 5), (12, 6)])
def test_fused_kernel_only_in_training(shape):
    """The fused path is taken (else every comparison above would pass trivially), and only in training."""
    x, weights, _ = _data(shape)
    assert "FusedBatchNormV3" in _op_types(_layer(FusedBN, shape, weights), x, training=True)
    assert "FusedBatchNormV3" not in _op_types(_layer(FusedBN, shape, weights), x, training=False)
    frozen = _layer(FusedBN, shape, weights)
    frozen.trainable = False  # Keras: a frozen BatchNormalization runs in inference mode
    assert "FusedBatchNormV3" not in _op_types(frozen, x, training=True)
    assert "FusedBatchNormV3" not in _op_types(_layer(keras.layers.BatchNormalization, shape, weights), x, True)


@pytest.mark.parametrize("shape", [(8, 4, 4, 5), (12, 6), (4, 3, 5)])
def test_inference_bit_identical(shape):
    x, weights, _ = _data(shape, seed=3)
    for frozen in (False, True):
        outs = []
        for cls in (keras.layers.BatchNormalization, FusedBN):
            layer = _layer(cls, shape, weights, epsilon=0.01)
            layer.trainable = not frozen
            outs.append(keras.ops.convert_to_numpy(layer(x, training=frozen)))  # frozen: training=True ignored
        np.testing.assert_array_equal(outs[1], outs[0])


def test_other_ranks_and_masks_fall_back_to_keras():
    """Rank 3, channels-first and masked calls are Keras's own, bit for bit (a mask changes the statistics)."""
    cases = [((4, 3, 5), {}, None), ((6, 5, 3, 3), {"axis": 1}, None),
             ((12, 6), {}, np.arange(12) % 3 != 0), ((4, 3, 5), {}, np.arange(12).reshape(4, 3) % 2 == 0)]
    for shape, kw, mask in cases:
        x, weights, _ = _data(shape, seed=5, axis=kw.get("axis", -1))
        outs = []
        for cls in (keras.layers.BatchNormalization, FusedBN):
            layer = _layer(cls, shape, weights, momentum=0.5, **kw)
            y = layer(x, training=True, mask=None if mask is None else tf.constant(mask))
            outs.append([keras.ops.convert_to_numpy(t) for t in (y, layer.moving_mean, layer.moving_variance)])
        for a, b in zip(outs[1], outs[0]):
            np.testing.assert_array_equal(a, b)
    # the masked statistics differ from the unmasked ones: the mask cases above test something
    x, weights, _ = _data((12, 6), seed=5)
    layer = _layer(FusedBN, (12, 6), weights)
    masked = keras.ops.convert_to_numpy(layer(x, training=True, mask=tf.constant(np.arange(12) % 3 != 0)))
    assert np.abs(masked - keras.ops.convert_to_numpy(layer(x, training=True))).max() > 1e-2


def test_same_variables_and_config():
    shape = (8, 4, 4, 5)
    kw = dict(momentum=0.9, epsilon=0.01, center=False, name="bn")
    plain, fused = keras.layers.BatchNormalization(**kw), FusedBN(**kw)
    plain.build(shape)
    fused.build(shape)
    described = [[(v.path, v.shape, v.trainable) for v in layer.weights] for layer in (fused, plain)]
    assert described[0] == described[1]
    assert fused.get_config() == plain.get_config()
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(fused))
    assert type(again) is FusedBN and again.get_config() == fused.get_config()


def _model(cls, seed=0):
    """Conv -> BN (rank 4) -> Dense -> BN (rank 2) -> Dense, deterministic initial weights."""
    keras.utils.set_random_seed(seed)
    x_in = keras.Input((6, 6, 1))
    h = keras.layers.Conv2D(4, 3, activation="relu")(x_in)
    h = cls(momentum=0.9, name="bn1")(h)
    h = keras.layers.Dense(8)(keras.layers.Flatten()(h))
    h = keras.layers.ReLU()(cls(momentum=0.9, name="bn2")(h))
    return keras.Model(x_in, keras.layers.Dense(1)(h))


def _randomise_statistics(model, seed=1):
    rng = np.random.default_rng(seed)
    for v in model.weights:
        if "moving" in v.name or v.name in ("gamma", "beta"):
            v.assign(rng.uniform(0.5, 1.5, v.shape).astype("float32"))


@pytest.mark.parametrize("source,target", [("plain", "fused"), ("fused", "plain")])
def test_weights_load_both_ways(tmp_path, source, target):
    """.weights.h5 and common.checkpoint's format saved by one layer load into the other; inference agrees bit
    for bit."""
    classes = {"plain": keras.layers.BatchNormalization, "fused": FusedBN}
    x = np.random.default_rng(2).standard_normal((5, 6, 6, 1)).astype("float32")
    src = _model(classes[source], seed=0)
    _randomise_statistics(src)
    expected = src.predict(x, verbose=0)
    src.save_weights(tmp_path / "w.weights.h5")
    src.compile(optimizer="adam", loss="mse")
    src.optimizer.build(src.trainable_variables)  # as after training: the checkpoint holds its variables too
    checkpoint.Checkpoint(tmp_path / "ck").save("phase", src, epoch=3)
    for fmt in ("h5", "checkpoint"):
        dst = _model(classes[target], seed=1)  # other initial weights
        assert not np.array_equal(dst.predict(x, verbose=0), expected)
        if fmt == "h5":
            dst.load_weights(tmp_path / "w.weights.h5")
        else:
            dst.compile(optimizer="adam", loss="mse")
            assert checkpoint.Checkpoint(tmp_path / "ck").load("phase", dst)[0] == 3
        np.testing.assert_array_equal(dst.predict(x, verbose=0), expected)


@pytest.mark.parametrize("jit_compile", [False, "auto"])
def test_fit_losses_agree(monkeypatch, jit_compile):
    """Three Adam steps with fit, each layer from the same weights: the losses agree to 1e-4 relative (not bit for
    bit: the fused kernel sums in another order, and Adam amplifies last-bit gradient differences)."""
    calls = []
    original = tf.compat.v1.nn.fused_batch_norm
    monkeypatch.setattr(tf.compat.v1.nn, "fused_batch_norm", lambda *a, **k: calls.append(1) or original(*a, **k))
    rng = np.random.default_rng(4)
    x = rng.standard_normal((16, 6, 6, 1)).astype("float32")
    y = rng.standard_normal((16, 1)).astype("float32")
    losses, moving = {}, {}
    initial = [keras.ops.convert_to_numpy(v) for v in _model(FusedBN).weights if "moving" in v.name]
    for name, cls in (("plain", keras.layers.BatchNormalization), ("fused", FusedBN)):
        model = _model(cls, seed=0)
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse", jit_compile=jit_compile)
        n_before = len(calls)
        history = model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
        assert (len(calls) > n_before) == (name == "fused")  # traced through the fused kernel, or not
        losses[name] = np.array(history.history["loss"])
        moving[name] = [keras.ops.convert_to_numpy(v) for v in model.weights if "moving" in v.name]
    assert losses["plain"][-1] < losses["plain"][0]  # it trains
    print("max relative loss deviation", np.abs(losses["fused"] / losses["plain"] - 1).max())
    np.testing.assert_allclose(losses["fused"], losses["plain"], rtol=1e-4)
    for a, b, before in zip(moving["fused"], moving["plain"], initial):  # updated inside fit's tf.function
        assert np.abs(b - before).min() > 1e-3
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)  # (the weights they average differ by Adam's steps)


_JAX_SCRIPT = """
import numpy as np, keras
from common.batchnorm import BatchNormalization as FusedBN
assert keras.backend.backend() == "jax"
rng = np.random.default_rng(0)
for shape in [(8, 4, 4, 5), (12, 6)]:
    x = rng.standard_normal(shape).astype("float32") * 2 + 1
    out = []
    for cls in (keras.layers.BatchNormalization, FusedBN):
        layer = cls(momentum=0.9)
        layer.build(shape)
        y = layer(x, training=True)
        out.append([np.asarray(t) for t in (y, layer.moving_mean.value, layer.moving_variance.value, layer(x))])
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(out[1][1], np.zeros(shape[-1]))  # the moving mean was updated
print("ok")
"""


def test_jax_falls_back_to_keras():
    """Under KERAS_BACKEND=jax the module imports and the layer is Keras's, bit for bit, in training and inference."""
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-c", _JAX_SCRIPT], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-2000:]


def test_code_importing_it_is_fingerprinted(tmp_path):
    """common.batchnorm is in registry.RESULT_CODE: a paper that uses it gets a new fingerprint when it changes."""
    from common import batchnorm, registry

    path = tmp_path / "m_bn.py"
    path.write_text("from common.batchnorm import BatchNormalization\n")
    spec = importlib.util.spec_from_file_location("m_bn", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert batchnorm in registry.result_dependencies(mod)
