"""Where a DECS pre-training step and a clustering step spend their time, part by part (issue 21).

    python benchmarks/profile_step.py [--dataset usps] [--batch 256] [--repeats 30] [--json FILE]

Times, on one batch of the real data (median of ``--repeats`` after a warm-up), each part of the step on its own as a
compiled tf.function: the augmentation layers; encoder and decoder forward+backward split into convolutions,
transposed convolutions, BatchNorm, pooling and dense layers (each layer type timed as the layers of the real
model, run on their real input shapes); the Adam update of all weights; the whole train step as Keras runs it
(``train_on_batch``) and as ``fit`` runs it from the Python batch generator (per step, so the input pipeline and
callbacks count); and, for the clustering stage, the StabilityNet step and the evaluation log's full predict.
Prints each part's milliseconds, its share of the fit step, and the conv rate achieved beside this machine's
(benchmarks/machine_rate.py). Run it with the machine to itself.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def _median_ms(fn, repeats):
    fn()
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def layer_groups(model):
    """{kind: [layer, ...]} for the layer types that carry the work."""
    from keras import layers

    kinds = {"conv": layers.Conv2D, "conv_transpose": layers.Conv2DTranspose, "batchnorm": layers.BatchNormalization,
             "pooling": layers.MaxPooling2D, "dense": layers.Dense}
    out = {k: [] for k in kinds}
    for layer in model.layers:
        for kind, cls in kinds.items():
            if type(layer) is cls:  # Conv2DTranspose is not a Conv2D subclass in Keras 3, but be exact
                out[kind].append(layer)
    return out


def conv_flops(layer, input_shape):
    """Forward FLOPs (2 per multiply-add) of a Conv2D / Conv2DTranspose layer on one batch of ``input_shape``."""
    n, h, w, cin = input_shape
    kh, kw = layer.kernel_size
    cout = layer.filters
    if type(layer).__name__ == "Conv2DTranspose":
        return 2 * n * h * w * cin * cout * kh * kw          # each input pixel scatters a kh x kw x cout patch
    oh, ow = layer.compute_output_shape(input_shape)[1:3]
    return 2 * n * oh * ow * cin * cout * kh * kw


def time_layers(layers_, inputs, repeats):
    """Milliseconds of forward + backward (input and weight gradients) of these layers, each on its input."""
    import tensorflow as tf

    @tf.function
    def step():
        total = 0.0
        for layer, x in zip(layers_, inputs):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=True)
                loss = tf.reduce_sum(y * y)
            grads = tape.gradient(loss, [x] + layer.trainable_weights)
            total += sum(tf.reduce_sum(g) for g in grads if g is not None)
        return total

    return _median_ms(lambda: step().numpy(), repeats)


def layer_inputs(model, x):
    """Each layer's real input on batch x (a Keras functional model)."""
    import keras

    probe = keras.Model(model.inputs, [layer.input for layer in model.layers[1:]])
    return dict(zip(model.layers[1:], [keras.ops.convert_to_tensor(a) for a in probe(x, training=False)]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="usps")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--json")
    args = ap.parse_args()
    import keras
    import tensorflow as tf

    from benchmarks.machine_rate import measure
    from common import datasets, setup, training
    from papers import decs

    rate = measure()
    data = datasets.load(args.dataset)
    x = data.x[:args.batch]
    setup.seed_everything(0)
    encoder, decoder = decs.build_autoencoder(x.shape[1:])
    augment = training.augmenter(seed=0)
    trainer = training.AutoencoderTrainer(encoder, decoder, augment)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    trainer(x[:2])
    rows = {}
    xt = tf.convert_to_tensor(x)
    aug_fn = tf.function(lambda: augment(xt, training=True))
    rows["augmentation"] = _median_ms(lambda: aug_fn().numpy(), args.repeats)
    z = encoder(xt)
    flops = {"conv": 0.0, "conv_transpose": 0.0}
    for name, model, inp in (("encoder", encoder, xt), ("decoder", decoder, z)):
        ins = layer_inputs(model, inp)
        for kind, group in layer_groups(model).items():
            if not group:
                continue
            rows[f"{name} {kind}"] = time_layers(group, [ins[g] for g in group], args.repeats)
            if kind in flops:
                flops[kind] += 3 * sum(conv_flops(g, tuple(ins[g].shape)) for g in group)  # fwd + 2 backward
    opt = keras.optimizers.Adam(1e-3)
    weights = trainer.trainable_variables
    opt.build(weights)
    grads = [tf.ones_like(w) * 1e-3 for w in weights]
    apply = tf.function(lambda: opt.apply(grads, weights))
    rows["adam update"] = _median_ms(lambda: apply(), args.repeats)
    rows["train_on_batch (whole step)"] = _median_ms(lambda: trainer.train_on_batch(x), args.repeats)
    steps = 40
    gen = training.shuffled_batches(data.x, args.batch, 0)
    trainer.fit(gen, steps_per_epoch=steps, epochs=1, verbose=0)  # trace
    t0 = time.perf_counter()
    trainer.fit(gen, steps_per_epoch=steps, epochs=1, verbose=0)
    rows["fit step (generator input)"] = 1000 * (time.perf_counter() - t0) / steps
    fit_ms = rows["fit step (generator input)"]
    conv_ms = sum(v for k, v in rows.items() if "conv" in k)
    conv_flop = flops["conv"] + flops["conv_transpose"]
    total_flop = conv_flop  # the convolutions carry > 95 % of the FLOPs (dense layers: < 1 %)
    # clustering stage: one StabilityNet step
    centers = np.random.default_rng(0).normal(size=(data.n_clusters, 10)).astype("float32")
    net = decs.StabilityNet(encoder, centers, decs.Config(), training.augmenter(seed=0, stream=1))
    net.compile(optimizer=keras.optimizers.Adam(1e-3))
    net(x[:2])
    rows["clustering train_on_batch"] = _median_ms(lambda: net.train_on_batch(x), args.repeats)
    t0 = time.perf_counter()
    encoder.predict(data.x, batch_size=1024, verbose=0)
    rows["evaluation predict, all samples (once per 500 iterations)"] = 1000 * (time.perf_counter() - t0)
    out = {"command": "python benchmarks/profile_step.py " + " ".join(sys.argv[1:]), "machine_rate": rate,
           "dataset": args.dataset, "batch": args.batch, "ms": rows,
           "conv_gflop_per_step": conv_flop / 1e9,
           "achieved_gflops_fit_step": total_flop / fit_ms / 1e6,
           "achieved_share_of_conv_rate": total_flop / fit_ms / 1e6 / rate["conv_decs_usps_gflops"],
           "conv_layers_gflops": conv_flop / conv_ms / 1e6, "env": setup.environment()}
    cpu = rate["cpu"]
    print(f"cpu: {cpu['model']} ({cpu['cores']} cores; {' '.join(cpu['vector_extensions'])}); conv rate "
          f"{rate['conv_decs_usps_gflops']:.0f} GFLOP/s, matmul {rate['matmul_2048_gflops']:.0f} GFLOP/s")
    for k, v in rows.items():
        print(f"  {k:<58} {v:8.1f} ms  {100 * v / fit_ms:5.1f} % of the fit step")
    print(f"conv FLOPs per pre-training step: {conv_flop / 1e9:.2f} GFLOP; fit step achieves "
          f"{out['achieved_gflops_fit_step']:.0f} GFLOP/s = {100 * out['achieved_share_of_conv_rate']:.0f} % of the "
          f"conv rate; the conv layers alone run at {out['conv_layers_gflops']:.0f} GFLOP/s")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
