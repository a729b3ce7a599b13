"""common.training: independent augmentation streams, code fingerprints in cache keys, resumable batch streams."""
import numpy as np

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


def test_autoencoder_cache_key_changes_with_the_architecture_code(monkeypatch, tmp_path):
    """A change to build_autoencoder that keeps every weight shape must not reuse the old weights."""
    from papers import decs

    x = np.zeros((20, 16, 16, 1), "float32")
    model = decs.DECS(2, decs.Config(ae_epochs=1), cache_dir=tmp_path)
    before = model._ae_cache(x)
    original = decs.build_autoencoder

    def build_autoencoder(input_shape, embedding_dim=10):  # same shapes, other activation somewhere
        return original(input_shape, embedding_dim + 0)

    monkeypatch.setattr(decs, "build_autoencoder", build_autoencoder)
    assert model._ae_cache(x) != before
    monkeypatch.setattr(decs, "build_autoencoder", original)
    assert model._ae_cache(x) == before
    assert model._ae_cache(x + 0.5) != before  # other data
    assert decs.DECS(2, decs.Config(ae_epochs=2), cache_dir=tmp_path)._ae_cache(x) != before
    assert decs.DECS(2, decs.Config(ae_epochs=1, cluster_iters=20, log_every=10), cache_dir=tmp_path)._ae_cache(x) \
        == before  # clustering settings do not touch the autoencoder


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
