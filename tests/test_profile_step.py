"""benchmarks/profile_step.py: the layer groups of each net, the FLOP counts, the layer inputs, each net's
pre-training settings and the CLI's bad input (the timings themselves are not tested)."""
import keras
import numpy as np
import pytest

from benchmarks import profile_step as ps
from papers import dcss, dekm

KINDS = {"conv": "Conv2D", "conv_transpose": "Conv2DTranspose", "batchnorm": "BatchNormalization",
         "pooling": "MaxPooling2D", "dense": "Dense"}

# Read off the builders: DECS 4 convs + BN each, 3 pools | 4 ConvT, BN after the first 3; DEKM 3 convs | 3 ConvT;
# DCSS conv1-3 + 3 bottleneck blocks of 3 convs, BN after conv1 and each block conv | 3 ConvT. One Dense each side.
EXPECTED = {
    "decs": ({"conv": 4, "conv_transpose": 0, "batchnorm": 4, "pooling": 3, "dense": 1},
             {"conv": 0, "conv_transpose": 4, "batchnorm": 3, "pooling": 0, "dense": 1}),
    "dekm": ({"conv": 3, "conv_transpose": 0, "batchnorm": 0, "pooling": 0, "dense": 1},
             {"conv": 0, "conv_transpose": 3, "batchnorm": 0, "pooling": 0, "dense": 1}),
    "dcss": ({"conv": 12, "conv_transpose": 0, "batchnorm": 10, "pooling": 0, "dense": 1},
             {"conv": 0, "conv_transpose": 3, "batchnorm": 0, "pooling": 0, "dense": 1}),
}


def _all_layers(model):
    """Every layer, descending into nested models (an independent walk, by class name along the MRO)."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer


def _count(model, class_name):
    return sum(any(c.__name__ == class_name and c.__module__.startswith(("keras", "common"))
                   for c in type(layer).__mro__) for layer in _all_layers(model))


@pytest.mark.parametrize("net", ps.NETS)
def test_layer_groups_finds_every_layer_of_the_real_model(net):
    encoder, decoder, *_ = ps.pretraining_setup(net, (16, 16, 1), 10)
    for model, expected in zip((encoder, decoder), EXPECTED[net]):
        groups = ps.layer_groups(model)
        found = {k: len(v) for k, v in groups.items()}
        assert found == expected
        assert found == {k: _count(model, cls) for k, cls in KINDS.items()}
        assert len({id(layer) for g in groups.values() for layer in g}) == sum(found.values())  # no layer twice


def test_conv_transpose_flops_count_on_the_input_grid():
    n, h, w, cin, cout, kh, kw = 2, 4, 5, 2, 3, 3, 4  # kernels >= strides: output (in - 1) * s + k
    layer = keras.layers.Conv2DTranspose(cout, (kh, kw), strides=(2, 3), padding="valid", use_bias=False,
                                         kernel_initializer="ones")
    x = np.ones((n, h, w, cin), "float32")
    y = keras.ops.convert_to_numpy(layer(x))
    assert y.shape == (n, (h - 1) * 2 + kh, (w - 1) * 3 + kw, cout)
    flops = ps.conv_flops(layer, x.shape)
    assert flops == 2 * n * h * w * kh * kw * cin * cout  # K*K*Cin*Cout multiply-adds per INPUT pixel
    # all-ones kernel and input, 'valid' (nothing cropped): the output sums every product once
    assert flops == 2 * y.sum()
    assert flops != 2 * n * y.shape[1] * y.shape[2] * kh * kw * cin * cout  # not on the output grid


def test_conv_flops_count_on_the_output_grid():
    n, h, w, cin, cout, kh, kw = 2, 9, 7, 3, 4, 3, 2
    layer = keras.layers.Conv2D(cout, (kh, kw), strides=(2, 1), padding="valid", use_bias=False,
                                kernel_initializer="ones")
    x = np.ones((n, h, w, cin), "float32")
    y = keras.ops.convert_to_numpy(layer(x))
    oh, ow = (h - kh) // 2 + 1, w - kw + 1
    assert y.shape == (n, oh, ow, cout)
    assert ps.conv_flops(layer, x.shape) == 2 * n * oh * ow * kh * kw * cin * cout == 2 * y.sum()


def test_dense_flops():
    layer = keras.layers.Dense(7, use_bias=False, kernel_initializer="ones")
    x = np.ones((3, 5), "float32")
    assert ps.dense_flops(layer, x.shape) == 2 * 3 * 5 * 7 == 2 * keras.ops.convert_to_numpy(layer(x)).sum()


def test_layer_inputs_are_each_layers_real_input_for_dcss():
    keras.utils.set_random_seed(0)
    encoder, decoder, *_ = ps.pretraining_setup("dcss", (16, 16, 1), 10)
    x = np.random.default_rng(0).uniform(size=(3, 16, 16, 1)).astype("float32")
    ins = ps.layer_inputs(encoder, x)
    groups = ps.layer_groups(encoder)
    assert set(ins) == {layer for g in groups.values() for layer in g}
    np.testing.assert_allclose(ins[encoder.get_layer("conv1")], np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))))
    u = keras.ops.convert_to_numpy(encoder(x, training=False))
    np.testing.assert_allclose(encoder.get_layer("u")(ins[encoder.get_layer("u")]), u, rtol=1e-5, atol=1e-6)
    # a block's last conv feeds its own BatchNorm: conv(its input) is that BatchNorm's input
    block_c, block_bn = encoder.get_layer("block2_c"), encoder.get_layer("block2_c_bn")
    np.testing.assert_allclose(block_c(ins[block_c]), ins[block_bn], rtol=1e-5, atol=1e-5)
    dins = ps.layer_inputs(decoder, u)
    last = decoder.get_layer("deconv3")  # USPS: no cropping after it
    np.testing.assert_allclose(last(dins[last]), decoder(u, training=False), rtol=1e-5, atol=1e-6)


def test_pretraining_setup_follows_each_paper_module():
    _, _, aug, lr, batch = ps.pretraining_setup("decs", (16, 16, 1), 7)
    assert aug is not None and (lr, batch) == (1e-3, 256)
    enc, _, aug, lr, batch = ps.pretraining_setup("dekm", (16, 16, 1), 7)
    assert aug is None and (lr, batch) == (dekm.Config().learning_rate, dekm.Config().batch_size) == (1e-3, 256)
    assert enc.output.shape[-1] == 7  # embedding_dim 0: the number of clusters
    enc, _, aug, lr, batch = ps.pretraining_setup("dcss", (16, 16, 1), 7)
    assert aug is None and (lr, batch) == (dcss.Config().ae_learning_rate, dcss.Config().batch_size) == (1e-3, 500)
    assert enc.output.shape[-1] == dcss.Config().embedding_dim == 10
    with pytest.raises(ValueError, match="unknown net"):
        ps.pretraining_setup("saip", (16, 16, 1), 7)


@pytest.mark.parametrize("argv", [["--batch", "0"], ["--repeats", "0"], ["--net", "saip"],
                                  ["--net", "dcss", "--dataset", "no-such-data"]])
def test_bad_input_gives_an_error_line(argv, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["profile_step.py", *argv])
    with pytest.raises(SystemExit) as exit_:
        ps.main()
    assert exit_.value.code != 0
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
