"""One pre-training epoch three ways: Keras fit from the Python batch generator (what common.checkpoint.resumable_fit
does), fit from an array-backed tf.data pipeline of the same batches, and train_on_batch over them (issue 21).

    python benchmarks/fit_input_variants.py {decs,dekm,dcss} REPEATS

Alternates the three per repeat on USPS (the nets as benchmarks/profile_step.py builds them) and prints ms per step.
Run it with the machine to itself.
"""
import sys, time, numpy as np
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1])); sys.path.insert(0, str(Path(__file__).resolve().parent))
import keras, tensorflow as tf
from common import datasets, training
import profile_step as ps
net = sys.argv[1]
data = datasets.load("usps"); x = data.x.astype("float32")
enc, dec, aug, lr, batch = ps.pretraining_setup(net, x.shape[1:], data.n_clusters)
tr = training.AutoencoderTrainer(enc, dec, aug); tr(x[:1]); tr.compile(optimizer=keras.optimizers.Adam(lr))
spe = -(-len(x) // batch)
def epoch_array(e):   # epoch e's batches of training.shuffled_batches, back to back
    g = training.shuffled_batches(x, batch, 0, e)
    return np.concatenate([next(g)[0] for _ in range(spe)])
def gen_fit(e):
    tr.fit(training.shuffled_batches(x, batch, 0, e), steps_per_epoch=spe, epochs=1, verbose=0, shuffle=False)
def tfdata_fit(e):
    tr.fit(tf.data.Dataset.from_tensor_slices(epoch_array(e)).batch(batch), epochs=1, verbose=0)
def tob(e):
    g = training.shuffled_batches(x, batch, 0, e)
    for _ in range(spe): tr.train_on_batch(next(g)[0])
for f in (gen_fit, tfdata_fit, tob): f(0); f(1)
res = {f.__name__: [] for f in (gen_fit, tfdata_fit, tob)}
for rep in range(int(sys.argv[2])):
    for f in (gen_fit, tfdata_fit, tob):
        t = time.perf_counter(); f(rep + 2); res[f.__name__].append(1000 * (time.perf_counter() - t) / spe)
for k, v in res.items(): print(net, k, " ".join(f"{a:.1f}" for a in v), "median", f"{np.median(v):.1f} ms/step")
