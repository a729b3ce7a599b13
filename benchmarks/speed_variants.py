"""Seconds per DECS pre-training epoch on USPS under variants of the execution, not of the method (issue 21).

    python benchmarks/speed_variants.py base|inter1|noaug|xla|fusedbn

base: as the code runs today; inter1: one inter-op thread; noaug: without the augmentation layers (not the method:
for scale only); xla: the train step compiled by XLA (jit_compile=True; augmentation off, since Keras refuses XLA
with its random image layers); fusedbn: Keras BatchNormalization in training replaced by TensorFlow's fused kernel
(FusedBatchNormV3; the same maths, other summation order, so not bit-identical). One process per variant, with the
machine to itself; prints the best of three 37-step epochs after a 10-step warm-up.
"""
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

mode = sys.argv[1] if len(sys.argv) > 1 else "base"
if mode == "inter1":
    tf.config.threading.set_inter_op_parallelism_threads(1)
if mode == "fusedbn":
    from keras.src.layers.normalization import batch_normalization as bnmod
    orig_call = bnmod.BatchNormalization.call
    def call(self, inputs, training=None, mask=None):
        if training and self.axis == [len(inputs.shape) - 1] or (training and self.axis == -1):
            y, mean, var = tf.compat.v1.nn.fused_batch_norm(inputs, self.gamma, self.beta, epsilon=self.epsilon, is_training=True)[:3]
            n = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), tf.float32)
            var = var * (n - 1) / n  # fused returns the unbiased variance; keras uses the biased one
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum + var * (1 - self.momentum))
            return y
        return orig_call(self, inputs, training=training, mask=mask)
    bnmod.BatchNormalization.call = call
from common import datasets, training  # noqa: E402
from papers import decs  # noqa: E402

data = datasets.load("usps")
keras.utils.set_random_seed(0)
enc, dec = decs.build_autoencoder(data.x.shape[1:])
aug = None if mode in ("xla", "noaug") else training.augmenter(seed=0)
tr = training.AutoencoderTrainer(enc, dec, aug)
tr.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=(mode == "xla"))
gen = training.shuffled_batches(data.x, 256, 0)
tr.fit(gen, steps_per_epoch=10, epochs=1, verbose=0)
ts = []
for _ in range(3):
    t0 = time.perf_counter(); tr.fit(gen, steps_per_epoch=37, epochs=1, verbose=0); ts.append(time.perf_counter() - t0)
print(mode, "epoch s", round(min(ts), 3), "ms/step", round(1000 * min(ts) / 37, 1))
