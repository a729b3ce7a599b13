"""Why fused BatchNorm is refused for DCSS: two label-free checks behind benchmarks/SPEED.md (issue 21).

    python benchmarks/kernel_noise.py threads PAPER [--threads 1] [--json FILE]
    python benchmarks/kernel_noise.py bn-accuracy [--json FILE]

threads: the golden cases of PAPER (common/golden.py) run with N intra-op threads instead of the machine's default,
and their deviation (common.golden.deviation: loss curves, embedding, labels) from this machine's recording: a second
"same code, other machine" perturbation beside the oneDNN-off floor (tests/golden/floors.json).
bn-accuracy: the error of one BatchNorm training step (output and input gradient) against float64 formulas, Keras's
own BatchNormalization and common.batchnorm's fused one, on batches of several scales and offsets: whether the fused
kernel is less accurate per op than the plain one.
"""
import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

# (shape, scale, offset) of the BatchNorm inputs: MNet-like rank 2, a conv map, small spread around a large mean
BN_CASES = [((256, 128), 1.0, 0.0), ((256, 128), 0.05, 3.0), ((256, 7, 7, 64), 1.0, 0.5), ((64, 128), 0.01, 10.0)]


def threads(paper, n):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(n)
    from common import golden

    outs = golden.run_paper(paper, verbose=False)
    mine = golden.load(paper)["outputs"][golden.signature()]
    return {name: golden.deviation(mine[name], outs[name]) for name in sorted(outs)}


def bn_accuracy(eps=1e-3):
    import keras
    import tensorflow as tf

    from common.batchnorm import BatchNormalization

    rng, rows = np.random.default_rng(0), []
    for shape, scale, offset in BN_CASES:
        x = (rng.normal(size=shape) * scale + offset).astype("float32")
        g = rng.normal(size=shape).astype("float32")
        axes = tuple(range(len(shape) - 1))
        x64, g64 = x.astype(np.float64), g.astype(np.float64)
        s = np.sqrt(x64.var(axes) + eps)
        y64 = (x64 - x64.mean(axes)) / s
        dx64 = (g64 - g64.mean(axes) - y64 * (g64 * y64).mean(axes)) / s   # d/dx of sum(g * y), gamma = 1

        def step(layer):
            layer.build(shape)
            xt = tf.constant(x)
            with tf.GradientTape() as tape:
                tape.watch(xt)
                y = layer(xt, training=True)
                loss = tf.reduce_sum(y * g)
            return y.numpy().astype(np.float64), tape.gradient(loss, xt).numpy().astype(np.float64)

        def err(a, b):
            return float(np.abs(a - b).max() / np.abs(b).max())

        (yp, dp), (yf, df) = step(keras.layers.BatchNormalization(epsilon=eps)), step(BatchNormalization(epsilon=eps))
        rows.append({"shape": list(shape), "scale": scale, "offset": offset,
                     "y_err_plain": err(yp, y64), "y_err_fused": err(yf, y64),
                     "dx_err_plain": err(dp, dx64), "dx_err_fused": err(df, dx64)})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["threads", "bn-accuracy"])
    ap.add_argument("paper", nargs="?")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json")
    args = ap.parse_args()
    from common import setup

    out = {"command": "python benchmarks/kernel_noise.py " + " ".join(sys.argv[1:]), "environment": setup.environment()}
    if args.what == "threads":
        if not args.paper:
            sys.exit("error: threads needs a paper (decs, dekm, dcss, saip, rdc)")
        out["threads"] = args.threads
        out["deviation"] = threads(args.paper, args.threads)
        for name, d in out["deviation"].items():
            print(f"{args.paper} {name}, {args.threads} intra-op thread(s): loss {d['loss_rel']:.3g}, "
                  f"embedding {d['embedding_rel']:.3g}, labels {'identical' if d['labels_identical'] else 'DIFFER'}")
    else:
        out["cases"] = bn_accuracy()
        for r in out["cases"]:
            print(f"{r['shape']} x{r['scale']:g}+{r['offset']:g}: output error plain {r['y_err_plain']:.2e}, fused "
                  f"{r['y_err_fused']:.2e}; input gradient plain {r['dx_err_plain']:.2e}, fused {r['dx_err_fused']:.2e}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
