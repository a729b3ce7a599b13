"""Transposed convolutions: TensorFlow's kernel against a sub-pixel formulation, forward + backward (issue 21).

    python benchmarks/convt_variants.py [--repeats 30] [--json FILE]
    python benchmarks/convt_variants.py --gemm [--repeats 30] [--json FILE]   # DECS's 3x3 layers: GEMM + col2im

A stride-2 transposed convolution (Keras Conv2DTranspose; TensorFlow runs it as conv2d_backprop_input) can be
computed exactly as a stride-1 convolution on the input grid with 4 x Cout output channels (one per output phase,
kernel taps of the other phases zero), then depth_to_space. Only the speed of that formulation is timed here (a
random kernel of its shape; the tap mapping does not change the cost): if it is not faster on the decoders' own
shapes (DEKM's and DECS's USPS decoders, batch 256), it is not worth building. Median of ``--repeats`` per layer, the
gradient of a sum of squares with respect to input and kernel. Run it with the machine to itself.

``--gemm``: a second exact formulation for DECS's 3x3 stride-2 layers, one matmul x (n h w, Cin) @ (Cin, 9 Cout) at
the matmul rate, then col2im by output phase (each phase sums its 1, 2 or 4 taps, shifted by one cell where the tap
reaches back, then the phases interleave); checked against tf.nn.conv2d_transpose (output and both gradients).
"""
import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from profile_step import _median_ms  # noqa: E402

# (batch, input side, Cin, Cout, kernel): the stride-2 transposed convolutions of the USPS decoders
DECODERS = {"dekm": [(256, 2, 128, 64, 3), (256, 4, 64, 32, 5), (256, 8, 32, 1, 5)],
            "decs": [(256, 2, 256, 128, 3), (256, 4, 128, 64, 3), (256, 8, 64, 32, 3)]}


def time_layer(n, h, cin, cout, k, repeats):
    """(ms of tf.nn.conv2d_transpose, ms of the sub-pixel formulation), forward + backward."""
    import tensorflow as tf

    taps = (k + 1) // 2 if k % 2 else k // 2 + 1     # taps per phase and axis: 3 for k=5, 2 for k=3
    x = tf.random.normal((n, h, h, cin))
    w = tf.random.normal((k, k, cout, cin)) * 0.05
    w_sub = tf.random.normal((taps, taps, cin, 4 * cout)) * 0.05

    @tf.function
    def convt(x, w):
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            y = tf.nn.conv2d_transpose(x, w, (n, 2 * h, 2 * h, cout), 2, "SAME")
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, [x, w])

    @tf.function
    def subpixel(x, w_sub):
        with tf.GradientTape() as tape:
            tape.watch([x, w_sub])
            y = tf.nn.conv2d(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), w_sub, 1, "VALID")
            y = tf.nn.depth_to_space(y[:, :h, :h], 2)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, [x, w_sub])

    return (_median_ms(lambda: [g.numpy() for g in convt(x, w)], repeats),
            _median_ms(lambda: [g.numpy() for g in subpixel(x, w_sub)], repeats))


def _shift(t, axis):
    """t[m - 1] along ``axis`` (zero at m = 0)."""
    import tensorflow as tf

    pad = [[0, 0]] * len(t.shape)
    pad[axis] = [1, 0]
    return tf.slice(tf.pad(t, pad), [0] * len(t.shape), [t.shape[i] if i == axis else -1 for i in range(len(t.shape))])


def gemm_convt(x, w):
    """tf.nn.conv2d_transpose(x, w, stride 2, "SAME") for a 3x3 kernel w (3, 3, Cout, Cin): output row 2m gets taps
    0 (from input row m) and 2 (from m - 1), row 2m + 1 tap 1 (from m); the same along columns."""
    import tensorflow as tf

    _, h, wd, cin = x.shape
    cout = w.shape[2]
    c = tf.reshape(tf.reshape(x, (-1, cin)) @ tf.reshape(tf.transpose(w, (3, 0, 1, 2)), (cin, 9 * cout)),
                   (-1, h, wd, 3, 3, cout))
    phases = []
    for rows in (c[:, :, :, 0] + _shift(c[:, :, :, 2], 1), c[:, :, :, 1]):      # even, odd output rows
        phases.append(tf.stack([rows[:, :, :, 0] + _shift(rows[:, :, :, 2], 2), rows[:, :, :, 1]], axis=3))
    return tf.reshape(tf.stack(phases, axis=2), (-1, 2 * h, 2 * wd, cout))


def time_gemm(n, h, cin, cout, repeats):
    """(ms of tf.nn.conv2d_transpose, ms of gemm_convt, largest relative difference of output and gradients)."""
    import tensorflow as tf

    x = tf.random.normal((n, h, h, cin))
    w = tf.random.normal((3, 3, cout, cin)) * 0.05

    def grads(f):
        @tf.function
        def g(x, w):
            with tf.GradientTape() as tape:
                tape.watch([x, w])
                y = f(x, w)
                loss = tf.reduce_sum(y * y)
            return [y] + tape.gradient(loss, [x, w])
        return g

    ref = grads(lambda x, w: tf.nn.conv2d_transpose(x, w, (n, 2 * h, 2 * h, cout), 2, "SAME"))
    alt = grads(gemm_convt)
    diff = max(float(tf.reduce_max(tf.abs(a - b)) / tf.reduce_max(tf.abs(a))) for a, b in zip(ref(x, w), alt(x, w)))
    return (_median_ms(lambda: [g.numpy() for g in ref(x, w)], repeats),
            _median_ms(lambda: [g.numpy() for g in alt(x, w)], repeats), diff)


def main_gemm(args):
    from common import setup

    out = {"command": "python benchmarks/convt_variants.py " + " ".join(sys.argv[1:]),
           "environment": setup.environment(), "layers": []}
    for n, h, cin, cout, k in DECODERS["decs"]:
        a, b, diff = time_gemm(n, h, cin, cout, args.repeats)
        out["layers"].append({"net": "decs", "shape": [n, h, cin, cout, k], "convt_ms": a, "gemm_ms": b,
                              "max_rel_diff": diff})
        print(f"decs {h}x{h}x{cin} -> {2 * h}x{2 * h}x{cout}: conv2d_transpose {a:.2f} ms, GEMM + col2im {b:.2f} ms "
              f"({a / b:.2f}x; outputs and gradients agree to {diff:.1e})", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--json")
    ap.add_argument("--gemm", action="store_true", help="time the GEMM + col2im formulation of DECS's layers")
    args = ap.parse_args()
    if args.gemm:
        return main_gemm(args)
    from common import setup

    out = {"command": "python benchmarks/convt_variants.py " + " ".join(sys.argv[1:]),
           "environment": setup.environment(), "layers": []}
    for net, shapes in DECODERS.items():
        total = [0.0, 0.0]
        for n, h, cin, cout, k in shapes:
            a, b = time_layer(n, h, cin, cout, k, args.repeats)
            total[0], total[1] = total[0] + a, total[1] + b
            out["layers"].append({"net": net, "shape": [n, h, cin, cout, k], "convt_ms": a, "subpixel_ms": b})
            print(f"{net} {h}x{h}x{cin} -> {2 * h}x{2 * h}x{cout}, {k}x{k}: conv2d_transpose {a:.2f} ms, "
                  f"sub-pixel {b:.2f} ms ({a / b:.2f}x)", flush=True)
        print(f"{net} decoder: conv2d_transpose {total[0]:.1f} ms, sub-pixel {total[1]:.1f} ms "
              f"({total[0] / total[1]:.2f}x)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
