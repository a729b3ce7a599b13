"""benchmarks/decs_speed.py's arithmetic (the shares of the conv rate that issue 21 is judged by), by hand."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import decs_speed  # noqa: E402

# DECS on 16x16 USPS, multiply-adds per sample of the 3x3 convolutions ('same' padding at 16x16):
ENCODER = (16 * 16 * 9 * 1 * 32         # conv 1 -> 32 on 16x16
           + 8 * 8 * 9 * 32 * 64        # conv 32 -> 64 on 8x8 (after pooling)
           + 4 * 4 * 9 * 64 * 128       # conv 64 -> 128 on 4x4
           + 2 * 2 * 9 * 128 * 256)     # conv 128 -> 256 on 2x2
DECODER = (2 * 2 * 9 * 256 * 128        # ConvT stride 2, 256 -> 128: K*K*Cin*Cout per *input* pixel (2x2)
           + 4 * 4 * 9 * 128 * 64       # ConvT stride 2, 128 -> 64, input 4x4
           + 8 * 8 * 9 * 64 * 32        # ConvT stride 2, 64 -> 32, input 8x8
           + 16 * 16 * 9 * 32 * 1)      # ConvT stride 1, 32 -> 1 on 16x16


def test_conv_flops_per_sample_of_decs_on_usps_by_hand():
    """2 FLOPs per multiply-add, forward + both backward passes = 3 x forward; the encoder alone for clustering.
    A count on the ConvT output grid (4x on the strided ones) or one missing the backward passes would fail."""
    from papers import decs

    model = decs.DECS(10, decs.Config(), seed=0, verbose=0)
    model.encoder, model.decoder = decs.build_autoencoder((16, 16, 1))
    flops = decs_speed.conv_flops_per_sample(model, np.zeros((2, 16, 16, 1), "float32"))
    assert flops["encoder"] == 3 * 2 * ENCODER == 21_676_032
    assert flops["autoencoder"] == 3 * 2 * (ENCODER + DECODER) == 43_352_064   # 11.1 GFLOP per step of 256


def test_achieved_rates_and_shares_by_hand():
    """Pre-training: all n samples per epoch through the autoencoder; clustering: one batch through the encoder."""
    flops = {"encoder": 21_676_032, "autoencoder": 43_352_064}
    got = decs_speed.achieved(flops, n=9298, batch_size=256, per_epoch=2.16, per_iter=0.0287, conv_rate=314.0)
    assert got["pretrain_gflops"] == pytest.approx(43_352_064 * 9298 / 2.16 / 1e9)     # 186.6
    assert got["cluster_gflops"] == pytest.approx(21_676_032 * 256 / 0.0287 / 1e9)     # 193.3
    assert got["pretrain_share"] == pytest.approx(0.5943, abs=1e-4)
    assert got["cluster_share"] == pytest.approx(0.6157, abs=1e-4)
