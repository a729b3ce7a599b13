"""common.training: independent augmentation streams, code fingerprints (and registry.code_version's coverage),
resumable batch streams, the evaluation log."""
import numpy as np
import pytest

from common import training


def _draws(aug, n=256):
    import keras

    x = np.zeros((n, 16, 16, 1), "float32")
    shift, rotation = aug.layers
    t = keras.ops.convert_to_numpy(shift.get_random_transformation(x, training=True)["translations"])
    a = keras.ops.convert_to_numpy(rotation.get_random_transformation(x, training=True)["angle"])
    return t, a


def test_augmenter_layers_draw_independent_numbers():
    """The bug this guards: both layers seeded alike, so the angle was a linear function of the shift."""
    t, a = _draws(training.augmenter(seed=0))
    for col in range(t.shape[1]):
        assert abs(np.corrcoef(t[:, col], a)[0, 1]) < 0.3
    assert np.std(a) > 0 and np.std(t) > 0


def test_augmenter_streams_are_reproducible_and_distinct():
    t0, a0 = _draws(training.augmenter(seed=4, stream=0))
    t0b, a0b = _draws(training.augmenter(seed=4, stream=0))
    t1, a1 = _draws(training.augmenter(seed=4, stream=1))
    np.testing.assert_array_equal(t0, t0b)
    np.testing.assert_array_equal(a0, a0b)
    assert not np.allclose(t0, t1) and not np.allclose(a0, a1)


def _module(tmp_path, name, source):
    import importlib.util

    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_code_fingerprint_sees_code_not_comments(tmp_path):
    plain = _module(tmp_path, "m1", "def f(x):\n    return x + 1\n")
    commented = _module(tmp_path, "m2", '"""Module."""\n\n\ndef f(x):\n    """Doc."""\n    return x + 1  # note\n')
    changed = _module(tmp_path, "m3", "def f(x):\n    return x + 2\n")
    assert training.code_fingerprint(plain) == training.code_fingerprint(commented)
    assert training.code_fingerprint(plain.f) == training.code_fingerprint(commented.f)
    assert training.code_fingerprint(plain) != training.code_fingerprint(changed)
    assert training.code_fingerprint(plain.f, changed.f) != training.code_fingerprint(changed.f, plain.f)


def test_code_version_covers_the_shared_code_a_module_imports(tmp_path):
    """registry.code_version: the module + the RESULT_CODE modules it imports (directly or through another of them),
    in RESULT_CODE's order; training, checkpoint and metrics always."""
    from common import checkpoint, clustering, estimator, health, metrics, nets, registry, tables

    mod = _module(tmp_path, "m_deps", "import common.health\nfrom common import nets, results\n"
                  "from common.estimator import DeepClusterer\n\n\ndef f():\n    from common import tables\n")
    assert registry.result_dependencies(mod) == [training, checkpoint, metrics, estimator, nets, tables, health]
    assert registry.code_version(mod) == training.code_fingerprint(
        mod, training, checkpoint, metrics, estimator, nets, tables, health)
    bare = _module(tmp_path, "m_bare", "X = 1\n")
    assert registry.result_dependencies(bare) == [training, checkpoint, metrics]
    from papers import decs, rdc

    assert health in registry.result_dependencies(rdc) and health not in registry.result_dependencies(decs)
    assert {clustering, estimator, tables} <= set(registry.result_dependencies(decs))


def test_shuffled_batches_resume_mid_stream():
    x = np.arange(10)
    full = [b[0] for _, b in zip(range(12), training.shuffled_batches(x, 4, seed=1))]
    later = [b[0] for _, b in zip(range(6), training.shuffled_batches(x, 4, seed=1, start_epoch=2))]
    for a, b in zip(full[6:], later):  # 3 batches per epoch: epoch 2 starts at batch 6
        np.testing.assert_array_equal(a, b)
    assert sorted(np.concatenate(full[:3])) == list(range(10))  # each epoch a permutation
    assert not np.array_equal(np.concatenate(full[:3]), np.concatenate(full[3:6]))  # a new one each epoch


def test_fixed_order_batches_start_step():
    x = np.arange(7)
    full = [b[0] for _, b in zip(range(8), training.fixed_order_batches(x, 3))]
    assert [list(b) for b in full[:4]] == [[0, 1, 2], [3, 4, 5], [6], [0, 1, 2]]
    later = [b[0] for _, b in zip(range(4), training.fixed_order_batches(x, 3, start_step=4))]
    for a, b in zip(full[4:], later):
        np.testing.assert_array_equal(a, b)


def test_indexed_batches_order_wrap_and_resume():
    x = np.arange(5) * 10
    order = np.array([4, 2, 0, 1, 3])
    got = [(b[0][0].tolist(), b[0][1].tolist()) for _, b in zip(range(4), training.indexed_batches(x, order, 2))]
    assert got == [([40, 20], [4, 2]), ([0, 10], [0, 1]), ([30], [3]), ([40, 20], [4, 2])]
    later = next(training.indexed_batches(x, order, 2, start_step=4))
    assert later[0][1].dtype == np.int32 and later[0][1].tolist() == [0, 1]


def test_eval_logger_every_and_last_epoch():
    y = np.array([0, 0, 1, 1])
    logger = training.EvalLogger(lambda x: np.array([1, 1, 0, 0]), None, y, steps=3, every=2, epochs=5)
    logger.on_train_begin()
    for e in range(5):
        logger.on_epoch_end(e, {"loss": float(e)})
    assert [(r["epoch"], r["step"], r["loss"]) for r in logger.log] == [(2, 6, 1.0), (4, 12, 3.0), (5, 15, 4.0)]
    assert logger.log[0]["acc"] == 1.0  # labels matched by the Hungarian method
    plain = training.EvalLogger(lambda x: np.array([0, 1, 0, 1]), None, y, steps=1)  # defaults: every epoch
    plain.on_train_begin()
    for e in range(2):
        plain.on_epoch_end(e)
    assert [r["step"] for r in plain.log] == [1, 2] and "epoch" not in plain.log[0] and plain.log[0]["acc"] == 0.5
    with pytest.raises(ValueError, match="every"):
        training.EvalLogger(lambda x: x, None, y, steps=1, every=0)
