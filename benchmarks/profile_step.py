"""Where one autoencoder pre-training step (and, for DECS, a clustering step) spends its time, part by part (issue 21).

    python benchmarks/profile_step.py [--net decs|dekm|dcss] [--dataset usps] [--batch N] [--repeats 30] [--json FILE]

``--net``: DECS's autoencoder (default; augmentation, Adam, batch 256), DEKM's convolutional autoencoder
(``dekm.build_conv_autoencoder``, Adam 1e-3, batch 256, no augmentation) or DCSS's (``dcss.build_autoencoder`` with
its BatchNorms and bottleneck blocks, Adam 1e-3, batch 500, no augmentation), each built and trained as its paper
module pre-trains it (``common.training.pretrain_autoencoder``, MSE); ``--batch`` defaults to the net's batch size.
Times, on one batch of the real data (median of ``--repeats`` after a warm-up), each part of the step on its own as a
compiled tf.function: the augmentation layers (DECS); encoder and decoder forward+backward split into convolutions,
transposed convolutions, BatchNorm, pooling and dense layers (each layer type timed as the layers of the real
model, run on their real input shapes); the Adam update of all weights; the whole train step as Keras runs it
(``train_on_batch``) and as ``fit`` runs it from the Python batch generator (per step, so the input pipeline and
callbacks count); and, for DECS's clustering stage, the StabilityNet step and the evaluation log's full predict.
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
            # subclasses count (DECS's common.batchnorm.BatchNormalization); Conv2DTranspose is no Conv2D in Keras 3
            if isinstance(layer, cls):
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


def dense_flops(layer, input_shape):
    """Forward FLOPs (2 per multiply-add) of a Dense layer on one batch of ``input_shape`` (n, d_in)."""
    n, d_in = input_shape
    return 2 * n * d_in * layer.units


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

    layers_ = [layer for group in layer_groups(model).values() for layer in group]  # single-input layers only
    probe = keras.Model(model.input, [layer.input for layer in layers_])
    return dict(zip(layers_, [keras.ops.convert_to_tensor(a) for a in probe(x, training=False)]))


NETS = ("decs", "dekm", "dcss")


def pretraining_setup(net, input_shape, n_clusters, seed=0):
    """(encoder, decoder, augment or None, Adam learning rate, batch size) as ``net``'s paper module pre-trains it."""
    from common import training
    from papers import dcss, decs, dekm

    if net == "decs":
        encoder, decoder = decs.build_autoencoder(input_shape)
        return encoder, decoder, training.augmenter(seed=seed), 1e-3, 256
    if net == "dekm":  # DEKM.pretrain: the conv backbone, embedding_dim 0 = the number of clusters
        cfg = dekm.Config()
        encoder, decoder = dekm.build_conv_autoencoder(input_shape, cfg.embedding_dim or n_clusters)
        return encoder, decoder, None, cfg.learning_rate, cfg.batch_size
    if net == "dcss":  # DCSS._pretrain: augment=None, ae_learning_rate, batch_size
        cfg = dcss.Config()
        encoder, decoder = dcss.build_autoencoder(input_shape, cfg.embedding_dim)
        return encoder, decoder, None, cfg.ae_learning_rate, cfg.batch_size
    raise ValueError(f"unknown net {net!r}; choose from {', '.join(NETS)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--net", choices=NETS, default="decs", help="whose autoencoder to profile (default decs)")
    ap.add_argument("--dataset", default="usps")
    ap.add_argument("--batch", type=int, help="batch size (default: the net's, decs/dekm 256, dcss 500)")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--json")
    args = ap.parse_args()
    if (args.batch is not None and args.batch < 1) or args.repeats < 1:
        ap.exit(2, "error: --batch and --repeats must be >= 1\n")
    import keras
    import tensorflow as tf

    from benchmarks.machine_rate import measure
    from common import datasets, setup, training
    from papers import decs

    try:
        data = datasets.load(args.dataset)
        if data.x.ndim != 4:
            raise ValueError(f"{args.dataset}: the convolutional autoencoders need images, got shape {data.x.shape}")
        setup.seed_everything(0)
        encoder, decoder, augment, lr, batch = pretraining_setup(args.net, data.x.shape[1:], data.n_clusters)
    except (ValueError, datasets.DataError) as e:
        ap.exit(2, f"error: {e}\n")
    batch = args.batch or batch
    rate = measure()
    x = data.x[:batch]
    trainer = training.AutoencoderTrainer(encoder, decoder, augment)
    trainer.compile(optimizer=keras.optimizers.Adam(lr))
    trainer(x[:2])
    rows = {}
    xt = tf.convert_to_tensor(x)
    if augment is not None:
        aug_fn = tf.function(lambda: augment(xt, training=True))
        rows["augmentation"] = _median_ms(lambda: aug_fn().numpy(), args.repeats)
    z = encoder(xt)
    flops = {"conv": 0.0, "conv_transpose": 0.0, "dense": 0.0}
    for name, model, inp in (("encoder", encoder, xt), ("decoder", decoder, z)):
        ins = layer_inputs(model, inp)
        for kind, group in layer_groups(model).items():
            if not group:
                continue
            rows[f"{name} {kind}"] = time_layers(group, [ins[g] for g in group], args.repeats)
            count = dense_flops if kind == "dense" else conv_flops
            if kind in flops:
                flops[kind] += 3 * sum(count(g, tuple(ins[g].shape)) for g in group)  # fwd + 2 backward
    opt = keras.optimizers.Adam(lr)
    weights = trainer.trainable_variables
    opt.build(weights)
    grads = [tf.ones_like(w) * 1e-3 for w in weights]
    apply = tf.function(lambda: opt.apply(grads, weights))
    rows["adam update"] = _median_ms(lambda: apply(), args.repeats)
    rows["train_on_batch (whole step)"] = _median_ms(lambda: trainer.train_on_batch(x), args.repeats)
    steps = 40
    gen = training.shuffled_batches(data.x, batch, 0)
    trainer.fit(gen, steps_per_epoch=steps, epochs=1, verbose=0)  # trace
    t0 = time.perf_counter()
    trainer.fit(gen, steps_per_epoch=steps, epochs=1, verbose=0)
    rows["fit step (generator input)"] = 1000 * (time.perf_counter() - t0) / steps
    fit_ms = rows["fit step (generator input)"]
    conv_ms = sum(v for k, v in rows.items() if "conv" in k)
    conv_flop = flops["conv"] + flops["conv_transpose"]
    total_flop = conv_flop  # the convolutions carry > 95 % of the FLOPs (dense layers: < 1 %, printed for dekm/dcss)
    if args.net == "decs":
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
           "dataset": args.dataset, "batch": batch, "ms": rows,
           "conv_gflop_per_step": conv_flop / 1e9,
           "achieved_gflops_fit_step": total_flop / fit_ms / 1e6,
           "achieved_share_of_conv_rate": total_flop / fit_ms / 1e6 / rate["conv_decs_usps_gflops"],
           "conv_layers_gflops": conv_flop / conv_ms / 1e6, "env": setup.environment()}
    if args.net != "decs":  # decs keeps its former output
        out = {"net": args.net, **out, "learning_rate": lr, "dense_gflop_per_step": flops["dense"] / 1e9}
    cpu = rate["cpu"]
    print(f"cpu: {cpu['model']} ({cpu['cores']} cores; {' '.join(cpu['vector_extensions'])}); conv rate "
          f"{rate['conv_decs_usps_gflops']:.0f} GFLOP/s, matmul {rate['matmul_2048_gflops']:.0f} GFLOP/s")
    if args.net != "decs":
        print(f"{args.net} autoencoder on {args.dataset}: batch {batch}, Adam {lr:g}, "
              f"{'augmentation' if augment is not None else 'no augmentation'}")
    for k, v in rows.items():
        print(f"  {k:<58} {v:8.1f} ms  {100 * v / fit_ms:5.1f} % of the fit step")
    print(f"conv FLOPs per pre-training step: {conv_flop / 1e9:.2f} GFLOP; fit step achieves "
          f"{out['achieved_gflops_fit_step']:.0f} GFLOP/s = {100 * out['achieved_share_of_conv_rate']:.0f} % of the "
          f"conv rate; the conv layers alone run at {out['conv_layers_gflops']:.0f} GFLOP/s")
    if args.net != "decs":
        print(f"dense FLOPs per pre-training step: {flops['dense'] / 1e9:.4f} GFLOP (not in the rates above)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
