"""common.checkpoint.fit_input: the batch stream as fit's input, same batches and same numbers as Keras's own
generator pipeline, on one private tf.data thread without autotuning (benchmarks/SPEED.md, issue 21)."""
import keras
import numpy as np
import pytest

from common import checkpoint


def _stream(sizes, seed=0):
    rng = np.random.default_rng(seed)
    for n in sizes:
        yield rng.normal(size=(n, 3, 2)).astype("float32"), rng.integers(0, 5, size=(n,))


def _np(v):
    return keras.ops.convert_to_numpy(v)


def test_yields_every_batch_in_order_with_ragged_last_batch():
    """The two batches peeked for the signature come first, then the rest; a smaller last batch fits the signature
    (batch axis unknown), and dtypes and structure are kept."""
    fed = checkpoint.fit_input(_stream([4, 4, 4, 1]))
    got = [tuple(_np(t) for t in b) for b in fed]
    want = list(_stream([4, 4, 4, 1]))
    assert len(got) == 4
    for (gx, gy), (wx, wy) in zip(got, want):
        np.testing.assert_array_equal(gx, wx)
        np.testing.assert_array_equal(gy, wy)
        assert gx.dtype == np.float32 and gy.dtype == wy.dtype


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="other backends take the stream as it is")
def test_signature_and_options():
    fed = checkpoint.fit_input(_stream([4, 4, 1]))
    assert [s.shape.as_list() for s in fed.element_spec] == [[None, 3, 2], [None]]
    opts = fed.options()
    assert opts.autotune.enabled is False and opts.threading.private_threadpool_size == 1
    assert opts.threading.max_intra_op_parallelism == 1
    with pytest.raises(ValueError, match="empty"):
        checkpoint.fit_input(iter([]))


def _fit(feed):
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((3, 2)), keras.layers.Flatten(), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(5)])
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    hist = model.fit(feed(_stream([16] * 5 + [7], seed=1)), steps_per_epoch=3, epochs=2, verbose=0, shuffle=False)
    return [_np(w) for w in model.weights], hist.history["loss"]


def test_fit_gives_the_numbers_of_kerass_generator_pipeline_bit_for_bit():
    """The same traced step on the same batches: weights and epoch losses equal bit for bit to fit on the plain
    generator (a different batch order, a dropped peeked batch or a fixed batch axis would not be)."""
    w_plain, loss_plain = _fit(lambda s: s)
    w_fed, loss_fed = _fit(checkpoint.fit_input)
    assert loss_fed == loss_plain
    for a, b in zip(w_fed, w_plain):
        np.testing.assert_array_equal(a, b)
    w_other, _ = _fit(lambda s: checkpoint.fit_input(iter(list(s)[::-1])))
    assert not all(np.array_equal(a, b) for a, b in zip(w_other, w_plain))


def test_resumable_fit_feeds_fit_through_fit_input(monkeypatch):
    """resumable_fit hands fit the stream through fit_input (a revert to the raw generator would bring back Keras's
    pipeline and its half-rate epochs), and trains on every batch of it."""
    seen = []
    real = checkpoint.fit_input

    def spy(stream):
        fed = real(stream)
        seen.append(fed)
        return fed

    monkeypatch.setattr(checkpoint, "fit_input", spy)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3, 2)), keras.layers.Flatten(), keras.layers.Dense(5)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    out = checkpoint.resumable_fit(model, lambda start: _stream([8] * 10, seed=start), phase="p", epochs=2,
                                   steps_per_epoch=3, verbose=0)
    assert len(seen) == 1 and len(out["logs"]) == 2
    assert int(_np(model.optimizer.iterations)) == 6
    if keras.backend.backend() == "tensorflow":
        assert seen[0].options().threading.private_threadpool_size == 1
