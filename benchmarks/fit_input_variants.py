"""One pre-training epoch fed to Keras several ways, alternated per repeat on USPS (the nets as
benchmarks/profile_step.py builds them), in ms per step (issue 21; benchmarks/SPEED.md):

    python benchmarks/fit_input_variants.py {decs,dekm,dcss} REPEATS [--variants a,b,...] [--json OUT]

- ``keras_generator``: ``fit`` on the Python batch generator (Keras's own tf.data pipeline: ``from_generator`` +
  AUTOTUNE prefetch; what common.checkpoint.resumable_fit fed until fit_input),
- ``fit_input``: ``fit`` on ``common.checkpoint.fit_input`` of the same generator (what resumable_fit feeds now),
- ``tfdata_array``: ``fit`` on an array-backed tf.data pipeline of the same batches,
- ``numpy_array``: ``fit`` on the epoch's batches as one NumPy array (Keras's array adapter, shuffle off),
- ``train_on_batch``: ``train_on_batch`` over the same batches.

Besides the median, each line counts the epochs in the slow mode (over 1.5 x the fastest epoch of any variant): on a
2-core CPU Keras's pipeline ran whole epochs at half the step rate. Run it with the machine to itself.
"""
import argparse, json, sys, time, numpy as np
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1])); sys.path.insert(0, str(Path(__file__).resolve().parent))
import keras, tensorflow as tf
from common import checkpoint, datasets, setup, training
import profile_step as ps

p = argparse.ArgumentParser()
p.add_argument("net", choices=["decs", "dekm", "dcss"]); p.add_argument("repeats", type=int)
p.add_argument("--variants", default="keras_generator,fit_input,train_on_batch"); p.add_argument("--json")
a = p.parse_args()
data = datasets.load("usps"); x = data.x.astype("float32")
enc, dec, aug, lr, batch = ps.pretraining_setup(a.net, x.shape[1:], data.n_clusters)
tr = training.AutoencoderTrainer(enc, dec, aug); tr(x[:1]); tr.compile(optimizer=keras.optimizers.Adam(lr))
spe = -(-len(x) // batch)
gen = lambda e: training.shuffled_batches(x, batch, 0, e)  # noqa: E731
def epoch_array(e):   # epoch e's batches of training.shuffled_batches, back to back
    g = gen(e)
    return np.concatenate([next(g)[0] for _ in range(spe)])
def train_on_batch(e):
    g = gen(e)
    for _ in range(spe): tr.train_on_batch(next(g)[0])
VARIANTS = {
    "keras_generator": lambda e: tr.fit(gen(e), steps_per_epoch=spe, epochs=1, verbose=0, shuffle=False),
    "fit_input": lambda e: tr.fit(checkpoint.fit_input(gen(e)), steps_per_epoch=spe, epochs=1, verbose=0),
    "tfdata_array": lambda e: tr.fit(tf.data.Dataset.from_tensor_slices(epoch_array(e)).batch(batch), epochs=1, verbose=0),
    "numpy_array": lambda e: tr.fit(epoch_array(e), batch_size=batch, epochs=1, verbose=0, shuffle=False),
    "train_on_batch": train_on_batch}
names = a.variants.split(",")
for n in names: VARIANTS[n](0); VARIANTS[n](1)
res = {n: [] for n in names}
for rep in range(a.repeats):
    for n in names:
        t = time.perf_counter(); VARIANTS[n](rep + 2); res[n].append(1000 * (time.perf_counter() - t) / spe)
fastest = min(min(v) for v in res.values())
out = {"net": a.net, "batch": batch, "steps_per_epoch": spe, "repeats": a.repeats, "ms_per_step": res,
       "median_ms": {n: float(np.median(v)) for n, v in res.items()},
       "slow_epochs": {n: int(sum(t > 1.5 * fastest for t in v)) for n, v in res.items()},
       "command": "python " + " ".join(sys.argv), "environment": setup.environment()}
for n, v in res.items():
    print(a.net, n, " ".join(f"{t:.1f}" for t in v), f"median {out['median_ms'][n]:.1f} ms/step,",
          f"slow epochs {out['slow_epochs'][n]}/{len(v)}")
if a.json:
    Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
