"""This machine's own arithmetic rate, the yardstick for every speed figure (issue 21).

    python benchmarks/machine_rate.py [--json FILE]

Measures, with TensorFlow on the CPU (float32): a 2048^3 matmul, and conv2d forward + backward (input and
filter gradients) on the DECS encoder's own layer shapes for USPS (batch 256, 3x3 kernels). Prints GFLOP/s
for each and the aggregate conv rate (total FLOPs over total time), which the speed benchmarks divide by.
Run it with the machine to itself.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# (batch, height, width, in channels, out channels): the DECS encoder on 16x16 USPS, batch 256
DECS_USPS_CONVS = ((256, 16, 16, 1, 32), (256, 8, 8, 32, 64), (256, 4, 4, 64, 128), (256, 2, 2, 128, 256))


def _best_seconds(fn, repeats):
    fn()  # trace / warm up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_rate(n=2048, repeats=5):
    """GFLOP/s of an n x n x n float32 matmul (2 n^3 FLOPs)."""
    import tensorflow as tf

    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    f = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    return 2 * n ** 3 / _best_seconds(lambda: f().numpy(), repeats) / 1e9


def conv_rates(shapes=DECS_USPS_CONVS, repeats=10):
    """[(shape, GFLOP/s)] of conv2d 3x3 'same' forward + input gradient + filter gradient (3x the forward FLOPs,
    2 N H W Cin Cout 9 each), and the aggregate rate over all shapes."""
    import tensorflow as tf

    rows, flops_all, secs_all = [], 0.0, 0.0
    for (n, h, w, cin, cout) in shapes:
        x = tf.Variable(tf.random.normal((n, h, w, cin)))
        k = tf.Variable(tf.random.normal((3, 3, cin, cout)) * 0.1)

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                y = tf.nn.conv2d(x, k, 1, "SAME")
                loss = tf.reduce_sum(y * y)
            gx, gk = tape.gradient(loss, [x, k])
            return tf.reduce_sum(gx) + tf.reduce_sum(gk)

        flops = 3 * 2 * n * h * w * cin * cout * 9
        secs = _best_seconds(lambda: step().numpy(), repeats)
        rows.append(((n, h, w, cin, cout), flops / secs / 1e9))
        flops_all += flops
        secs_all += secs
    return rows, flops_all / secs_all / 1e9


def measure():
    from common.setup import cpu_model

    rows, conv = conv_rates()
    return {"cpu": cpu_model(), "matmul_2048_gflops": matmul_rate(), "conv_decs_usps_gflops": conv,
            "conv_per_shape_gflops": [{"shape_nhwc_cout": list(s), "gflops": r} for s, r in rows]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args()
    out = measure()
    cpu = out["cpu"]
    print(f"cpu: {cpu['model']} ({cpu['cores']} cores; {' '.join(cpu['vector_extensions'])})")
    print(f"matmul 2048^3: {out['matmul_2048_gflops']:.0f} GFLOP/s")
    for row in out["conv_per_shape_gflops"]:
        print(f"conv3x3 fwd+bwd {row['shape_nhwc_cout']}: {row['gflops']:.0f} GFLOP/s")
    print(f"conv3x3 fwd+bwd, DECS USPS shapes together: {out['conv_decs_usps_gflops']:.0f} GFLOP/s")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
