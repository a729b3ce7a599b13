"""Speed of DCSS on USPS for the current backend: seconds per pre-training, phase-1 and phase-2 epoch.

    export CLUSTER_DATA_DIR=../shared/data   # as reproduce.sh sets it
    KERAS_BACKEND=tensorflow python benchmarks/dcss_speed.py --epochs 2 --json results/dcss/usps/benchmark_tensorflow_cpu.json
    KERAS_BACKEND=jax        python benchmarks/dcss_speed.py --epochs 2 --json results/dcss/usps/benchmark_jax_cpu.json

Not a test: it prints one line per phase. Each phase's first epoch (graph compilation) is excluded, so each phase
runs two epochs or more. Phase 1 (K optimiser steps per batch, Algorithm 1) is what makes the paper profile long:
multiply its per-epoch time by the paper's 200 epochs for the estimate (`python -m benchmarks.cpu_estimates` reads
the TensorFlow file). Run it with the machine to itself, both backends on one machine, and compare them as a ratio.
It measures this machine's conv rate (benchmarks/machine_rate.py) before and after training and records both, so
that an estimate read from the file can be scaled to another machine's rate (skip with --no-rate).
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import machine_rate  # noqa: E402
from common import datasets, setup  # noqa: E402
from papers import dcss  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="usps")
    ap.add_argument("--epochs", type=int, default=3, help="epochs of each phase (the first is not timed)")
    ap.add_argument("--json", help="also write the numbers here")
    ap.add_argument("--no-rate", action="store_true", help="skip measuring this machine's conv rate")
    args = ap.parse_args()
    if args.epochs < 2:
        sys.exit("error: --epochs must be >= 2 (the first epoch of each phase is not timed)")
    rate_before = None if args.no_rate else machine_rate.measure()
    data = datasets.load(args.dataset)
    setup.seed_everything(0)
    cfg = dcss.Config(ae_epochs=args.epochs, phase1_epochs=args.epochs, phase2_epochs=args.epochs, eval_every=args.epochs)
    load_start, t0 = os.getloadavg(), time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:  # never reuse a cached autoencoder or phase 1: time them
        model = dcss.DCSS(data.n_clusters, cfg, seed=0, cache_dir=cache, verbose=0).fit(data.x)  # no labels
    total = time.perf_counter() - t0
    rate_after = None if args.no_rate else machine_rate.measure()
    per = {phase: float(np.median(model.history[phase]["epoch_seconds"][1:])) for phase in ("pretrain", "phase1", "phase2")}
    paper = dcss.PROFILES["paper"]
    hours = (per["pretrain"] * paper["ae_epochs"] + per["phase1"] * paper["phase1_epochs"]
             + per["phase2"] * paper["phase2_epochs"]) / 3600
    # machine_rate: the rate before training (the key cpu_estimates reads, as in decs_speed's file); and after
    out = {"env": setup.environment(), "machine_rate": rate_before, "machine_rate_after": rate_after,
           "dataset": args.dataset, "n": len(data), "batch_size": cfg.batch_size,
           "epochs_per_phase": args.epochs, "seconds_per_epoch": per, "paper_profile_hours_estimate": hours,
           "total_s": total, "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
           "git": setup.git_state(), "command": " ".join(["python"] + sys.argv)}
    print(setup.summary_line(out["env"]))
    for phase, s in per.items():
        print(f"{phase:<10}{s:>10.2f} s per epoch")
    print(f"paper profile ({paper['ae_epochs']} + {paper['phase1_epochs']} + {paper['phase2_epochs']} epochs): "
          f"{hours:.2f} h per seed at these rates")
    if rate_before and rate_after:
        print(f"conv rate of this machine before / after: {rate_before['conv_decs_usps_gflops']:.0f} / "
              f"{rate_after['conv_decs_usps_gflops']:.0f} GFLOP/s")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
