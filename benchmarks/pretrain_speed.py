"""Seconds per pre-training epoch of the other autoencoders, and the share of this machine's rate they reach (issue 21).

    python benchmarks/pretrain_speed.py dekm-conv [--dataset usps] [--epochs 3] [--json FILE]
    python benchmarks/pretrain_speed.py mlp       [--dataset mnist-test] [--epochs 3] [--json FILE]

dekm-conv: DEKM's convolutional autoencoder (§IV-C; 5-5-3 kernels, stride 2, ConvT decoder, no BatchNorm);
mlp: the d-500-500-2000-10 autoencoder of DEKM/SAIP/R-DC (common.nets.mlp_autoencoder). Both trained as the repository
trains them (common.training.pretrain_autoencoder: Adam 1e-3, batch 256, shuffled per epoch, no augmentation). The
first epoch (graph compilation) is excluded. FLOPs: forward + both backward passes (3x forward) of the convolutions
and dense layers; the share is taken of the conv rate (benchmarks/machine_rate.py, DECS's USPS shapes) for dekm-conv
and of the 2048^3 matmul rate for mlp, both measured in the same run. Run it with the machine to itself.
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import machine_rate  # noqa: E402
from common import datasets, nets, setup, training  # noqa: E402


def flops_per_sample(encoder, decoder, x):
    """Forward + both backward FLOPs per sample of the conv, conv-transpose and dense layers (3x forward)."""
    from profile_step import conv_flops, layer_groups, layer_inputs

    total, z = 0.0, encoder(x[:2])
    for net, inp in ((encoder, x[:2]), (decoder, z)):
        ins, groups = layer_inputs(net, inp), layer_groups(net)
        total += sum(3 * conv_flops(g, tuple(ins[g].shape)) / 2 for g in groups["conv"] + groups["conv_transpose"])
        total += sum(3 * 2 * g.kernel.shape[0] * g.kernel.shape[1] for g in groups["dense"])
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("net", choices=["dekm-conv", "mlp"])
    ap.add_argument("--dataset")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args()
    dataset = args.dataset or {"dekm-conv": "usps", "mlp": "mnist-test"}[args.net]
    rate = machine_rate.measure()
    data = datasets.load(dataset)
    x = data.x.astype("float32")
    setup.seed_everything(0)
    if args.net == "dekm-conv":
        from papers import dekm

        encoder, decoder = dekm.build_conv_autoencoder(x.shape[1:])
        yardstick, name = rate["conv_decs_usps_gflops"], "conv rate"
    else:
        x = x.reshape(len(x), -1)
        encoder, decoder = nets.mlp_autoencoder(x.shape[1:])
        yardstick, name = rate["matmul_2048_gflops"], "matmul rate"
    fit = training.pretrain_autoencoder(encoder, decoder, x, epochs=args.epochs, batch_size=256, verbose=0)
    per_epoch = float(np.median(fit["epoch_seconds"][1:]))
    flops = flops_per_sample(encoder, decoder, x)
    gflops = flops * len(x) / per_epoch / 1e9
    out = {"env": setup.environment(), "machine_rate": rate, "net": args.net, "dataset": dataset, "n": len(x),
           "batch_size": 256, "flop_per_sample": flops, "pretrain_s_per_epoch": per_epoch,
           "pretrain_gflops": gflops, "share": gflops / yardstick, "yardstick": name,
           "command": "python benchmarks/pretrain_speed.py " + " ".join(sys.argv[1:])}
    print(setup.summary_line(out["env"]))
    print(f"{args.net} on {dataset} (n={len(x)}, batch 256): {per_epoch:.2f} s per pre-training epoch, "
          f"{gflops:.0f} GFLOP/s = {100 * gflops / yardstick:.0f} % of this machine's {name} ({yardstick:.0f} GFLOP/s)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
