"""Phase-1 step sizes of DCSS: the authors' SGD (lr 1e-6, momentum 0.9) against the paper's Adam (lr 1e-5).

    export CLUSTER_DATA_DIR=../shared/data   # as reproduce.sh sets it
    python benchmarks/dcss_step_sizes.py usps --profile quick --seed 0 [--stage pretrained|phase1] [--json FILE]

For one phase-1 batch (the first of phase 1's stream) and each of its K steps, the gradient of Eq. (1a) for
cluster k (BatchNorm on batch statistics, p from Eq. (2) held constant: what a step of Phase1Net sees). Per layer:
the median |g| over coordinates and the K steps, and the update each optimiser makes at steady state: SGD with
momentum mu on a gradient that keeps its value moves lr |g| / (1 - mu) per step; Adam moves about lr per coordinate
(m / sqrt(v) -> sign(g)), whatever |g|. Also the median |mean_k g_k|: a momentum buffer sums the gradients of
successive steps, which here are the K clusters' terms on one batch, so signs that disagree across k shrink it.
The autoencoder is the run's cached one (pre-trained, or after phase 1 with --stage phase1) from the user cache
that ./reproduce.sh fills; a stage not cached is trained first (that is a training run). Labels are not read.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from papers import dcss  # noqa: E402

ADAM_LR = 1e-5  # §6


def steady_state_steps(abs_grad, sgd_lr=dcss.AUTHORS_SGD["learning_rate"], momentum=dcss.AUTHORS_SGD["momentum"],
                       adam_lr=ADAM_LR):
    """Per-coordinate update sizes at steady state for a gradient of size ``abs_grad`` that keeps its value:
    SGD with momentum sgd_lr * |g| / (1 - momentum) (the geometric sum of the momentum buffer), Adam adam_lr."""
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    sgd = float(abs_grad) * sgd_lr / (1.0 - momentum)
    return {"sgd": sgd, "adam": float(adam_lr), "sgd_over_adam": sgd / adam_lr}


def layer_of(path):
    """The layer a variable belongs to: its path without the variable's own name ('encoder/conv1/kernel' ->
    'encoder/conv1')."""
    return path.rsplit("/", 1)[0] if "/" in path else path


def layer_medians(grads_per_step):
    """``grads_per_step``: one {variable path: gradient} per step. Per layer (in first-seen order): the median
    |g| over the layer's coordinates and the steps, and the median |mean over steps of g|."""
    layers = {}
    for path in grads_per_step[0]:
        layers.setdefault(layer_of(path), []).append(path)
    out = {}
    for layer, paths in layers.items():
        stacked = np.stack([np.concatenate([np.ravel(g[p]) for p in paths]) for g in grads_per_step])  # (steps, n)
        out[layer] = {"coordinates": int(stacked.shape[1]),
                      "median_abs_grad": float(np.median(np.abs(stacked))),
                      "median_abs_mean_grad": float(np.median(np.abs(stacked.mean(axis=0))))}
    return out


def phase1_gradients(encoder, decoder, x, centers, k, m, alpha):
    """{variable path: dL^k/dw} (NumPy) of Eq. (1a) for cluster k on batch x, as a phase-1 step computes it."""
    import keras

    def loss_of(u, x_hat):
        p_k = dcss.memberships(u, centers, m)[:, k]
        return dcss.phase1_loss(x, x_hat, u, p_k, centers[k], m, alpha)

    variables = encoder.trainable_variables + decoder.trainable_variables
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            u = encoder(x, training=True)
            loss = loss_of(u, decoder(u, training=True))
        grads = tape.gradient(loss, variables)
    elif backend == "jax":
        import jax

        enc_nt = [v.value for v in encoder.non_trainable_variables]
        dec_nt = [v.value for v in decoder.non_trainable_variables]

        def f(enc_t, dec_t):
            u, _ = encoder.stateless_call(enc_t, enc_nt, x, training=True)
            x_hat, _ = decoder.stateless_call(dec_t, dec_nt, u, training=True)
            return loss_of(u, x_hat)

        g_enc, g_dec = jax.grad(f, argnums=(0, 1))([v.value for v in encoder.trainable_variables],
                                                   [v.value for v in decoder.trainable_variables])
        grads = list(g_enc) + list(g_dec)
    else:
        raise SystemExit(f"error: dcss_step_sizes needs KERAS_BACKEND=tensorflow or jax, not {backend}")
    return {v.path: np.asarray(keras.ops.convert_to_numpy(g)) for v, g in zip(variables, grads)}


def step_sizes(encoder, decoder, x, centers, m=1.5, alpha=0.1):
    """Per layer: layer_medians over the K steps of one batch, with steady_state_steps of the median |g|."""
    grads = [phase1_gradients(encoder, decoder, x, centers, k, m, alpha) for k in range(len(centers))]
    return {layer: {**row, **steady_state_steps(row["median_abs_grad"])} for layer, row in layer_medians(grads).items()}


def main():
    from common import checkpoint, cli, datasets, setup

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--profile", default="quick", choices=cli.PROFILE_NAMES)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stage", default="pretrained", choices=("pretrained", "phase1"))
    ap.add_argument("--json", help="also write the table here")
    args = ap.parse_args()
    data = datasets.load(args.dataset)
    cfg, subset = cli.make_config(dcss, args.profile, {})
    if subset:
        data = datasets.subset(data, subset, seed=0)
    setup.seed_everything(args.seed)
    model = dcss.DCSS(data.n_clusters, cfg, seed=args.seed, cache_dir=checkpoint.cache_root() / "dcss" / args.dataset,
                      verbose=1)
    import keras

    keras.utils.set_random_seed(args.seed)  # as DCSS.fit
    model.encoder, model.decoder = dcss.build_autoencoder(data.x.shape[1:], cfg.embedding_dim)
    model._pretrain(data.x)
    if args.stage == "phase1":
        model._phase1(data.x, None)
    (xb, _), = next(dcss.k_step_batches(data.x, cfg.batch_size, data.n_clusters, args.seed))
    table = step_sizes(model.encoder, model.decoder, xb, np.asarray(model.centers, "float32"), cfg.m, cfg.alpha)
    print(f"{'layer':<28}{'coords':>8}{'med|g|':>11}{'med|mean g|':>13}{'SGD step':>11}{'Adam step':>11}{'SGD/Adam':>10}")
    for layer, r in table.items():
        print(f"{layer:<28}{r['coordinates']:>8}{r['median_abs_grad']:>11.3g}{r['median_abs_mean_grad']:>13.3g}"
              f"{r['sgd']:>11.3g}{r['adam']:>11.3g}{r['sgd_over_adam']:>10.3g}")
    if args.json:
        out = {"dataset": args.dataset, "profile": args.profile, "seed": args.seed, "stage": args.stage,
               "batch_size": len(xb), "sgd": dcss.AUTHORS_SGD, "adam_lr": ADAM_LR, "layers": table,
               "env": setup.environment(), "git": setup.git_state(), "command": " ".join(["python"] + sys.argv)}
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
