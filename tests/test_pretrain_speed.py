"""benchmarks/pretrain_speed.py's FLOP count, against hand-computed values (the shares it prints rest on it)."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import pretrain_speed  # noqa: E402


def test_dekm_conv_autoencoder_flops_per_sample_by_hand():
    """DEKM on 16x16 USPS: 2 FLOPs per multiply-add, forward + both backward passes = 3 x forward. A transposed
    convolution does K*K*Cin*Cout multiply-adds per input pixel (a count on its output grid would give 4x)."""
    from papers import dekm

    encoder, decoder = dekm.build_conv_autoencoder((16, 16, 1))
    convs = (8 * 8 * 25 * 1 * 32          # conv 5x5, 1 -> 32, output 8x8
             + 4 * 4 * 25 * 32 * 64       # conv 5x5, 32 -> 64, output 4x4
             + 2 * 2 * 9 * 64 * 128       # conv 3x3, 64 -> 128, output 2x2
             + 2 * 2 * 9 * 128 * 64       # ConvT 3x3, 128 -> 64, input 2x2
             + 4 * 4 * 25 * 64 * 32       # ConvT 5x5, 64 -> 32, input 4x4
             + 8 * 8 * 25 * 32 * 1)       # ConvT 5x5, 32 -> 1, input 8x8
    dense = 512 * 10 + 10 * 512
    x = np.zeros((4, 16, 16, 1), "float32")
    assert pretrain_speed.flops_per_sample(encoder, decoder, x) == 3 * 2 * (convs + dense) == 14_045_184


def test_mlp_autoencoder_flops_per_sample_by_hand():
    """The d-500-500-2000-10 autoencoder on 784 pixels and its mirror: 3 x 2 x (multiply-adds of every Dense)."""
    from common import nets

    encoder, decoder = nets.mlp_autoencoder((784,))
    mults = 2 * (784 * 500 + 500 * 500 + 500 * 2000 + 2000 * 10)
    x = np.zeros((4, 784), "float32")
    assert pretrain_speed.flops_per_sample(encoder, decoder, x) == 3 * 2 * mults == 19_944_000


def test_dekm_conv_autoencoder_flops_on_28px_valid_padding():
    """28x28 (MNIST): the third conv and first ConvT use 'valid' padding (7 -> 3 -> 7), so a count on the wrong grid
    (e.g. 'same' outputs of 4x4) gives another number."""
    from papers import dekm

    encoder, decoder = dekm.build_conv_autoencoder((28, 28, 1))
    convs = (14 * 14 * 25 * 1 * 32 + 7 * 7 * 25 * 32 * 64 + 3 * 3 * 9 * 64 * 128      # encoder, outputs 14, 7, 3
             + 3 * 3 * 9 * 128 * 64 + 7 * 7 * 25 * 64 * 32 + 14 * 14 * 25 * 32 * 1)  # decoder, inputs 3, 7, 14
    dense = 1152 * 10 + 10 * 1152
    x = np.zeros((4, 28, 28, 1), "float32")
    assert pretrain_speed.flops_per_sample(encoder, decoder, x) == 3 * 2 * (convs + dense) == 40_088_064
