"""Speed of DECS on USPS for the current backend: pre-training samples/s and clustering iterations/s.

    KERAS_BACKEND=tensorflow python benchmarks/decs_speed.py [--epochs 4] [--iters 600]

Not a test: it prints one table. The first epoch / chunk (graph compilation) is excluded. It also measures this
machine's conv rate (benchmarks/machine_rate.py) in the same run and prints the share of it each phase achieves
(convolution FLOPs, forward + both backward passes, over the measured time).
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import machine_rate  # noqa: E402
from common import datasets, setup, training  # noqa: E402
from papers import decs  # noqa: E402


def conv_flops_per_sample(model, x):
    """Convolution FLOPs per sample, forward + both backward passes (3x forward): {"encoder", "autoencoder"}."""
    from profile_step import conv_flops, layer_groups, layer_inputs

    out = {}
    z = model.encoder(x)
    total = 0.0
    for name, net, inp in (("encoder", model.encoder, x), ("decoder", model.decoder, z)):
        ins = layer_inputs(net, inp)
        groups = layer_groups(net)
        total += sum(3 * conv_flops(g, tuple(ins[g].shape)) / len(x) for g in groups["conv"] + groups["conv_transpose"])
        out.setdefault("encoder", total)
    out["autoencoder"] = total
    return out


def achieved(flops, n, batch_size, per_epoch, per_iter, conv_rate):
    """GFLOP/s and share of ``conv_rate`` (GFLOP/s): pre-training moves all ``n`` samples through the autoencoder
    once per epoch; a clustering iteration moves one batch through the encoder."""
    pre = flops["autoencoder"] * n / per_epoch / 1e9
    clu = flops["encoder"] * batch_size / per_iter / 1e9
    return {"pretrain_gflops": pre, "cluster_gflops": clu, "pretrain_share": pre / conv_rate,
            "cluster_share": clu / conv_rate}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="usps")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--iters", type=int, default=600)
    ap.add_argument("--json", help="also write the numbers here")
    ap.add_argument("--no-rate", action="store_true", help="skip measuring this machine's conv rate")
    args = ap.parse_args()
    load_start = os.getloadavg()
    rate = None if args.no_rate else machine_rate.measure()
    data = datasets.load(args.dataset)
    setup.seed_everything(0)
    cfg = decs.Config(ae_epochs=args.epochs, cluster_iters=args.iters, log_every=args.iters // 3)
    t0 = time.perf_counter()
    model = decs.DECS(data.n_clusters, cfg, seed=0, verbose=0).fit(data.x)  # no labels: no evaluation log
    total = time.perf_counter() - t0
    ep = model.history["pretrain"]["epoch_seconds"][1:]
    ch = model.history["cluster"]["chunk_seconds"][1:]
    per_epoch = float(np.median(ep))
    per_iter = float(np.median(ch)) / model.history["cluster"]["steps_per_chunk"]
    flops = conv_flops_per_sample(model, data.x[:2])
    out = {"env": setup.environment(), "machine_rate": rate, "conv_flop_per_sample": flops, "dataset": args.dataset, "n": len(data), "batch_size": cfg.batch_size,
           "pretrain_s_per_epoch": per_epoch, "pretrain_samples_per_s": len(data) / per_epoch,
           "cluster_s_per_iter": per_iter, "cluster_iters_per_s": 1 / per_iter, "total_s": total,
           "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
           "command": "python benchmarks/decs_speed.py " + " ".join(sys.argv[1:])}
    print(setup.summary_line(out["env"]))
    print(f"{'phase':<12}{'per unit':>14}{'rate':>22}")
    print(f"{'pretrain':<12}{per_epoch:>12.2f} s{len(data) / per_epoch:>14.0f} samples/s   (per epoch, batch 256, augmented)")
    print(f"{'clustering':<12}{per_iter * 1000:>11.1f} ms{1 / per_iter:>14.1f} iters/s     (batch 256, augmented, Otsu per batch)")
    if rate is not None:
        conv = rate["conv_decs_usps_gflops"]
        out.update(achieved(flops, len(data), cfg.batch_size, per_epoch, per_iter, conv))
        pre, clu = out["pretrain_gflops"], out["cluster_gflops"]
        print(f"conv rate of this machine {conv:.0f} GFLOP/s: pre-training achieves {pre:.0f} GFLOP/s "
              f"({100 * pre / conv:.0f} %), clustering {clu:.0f} GFLOP/s ({100 * clu / conv:.0f} %)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
