"""Resumable training: a phase's state (model and optimizer variables, epoch, Python-side state) saved
periodically to a per-user cache outside the work tree, and restored when the same run starts again.

A phase is a Keras ``fit`` over epochs (or epoch-sized chunks of steps). ``resumable_fit`` restores the last
checkpoint of the phase, runs the remaining epochs with ``initial_epoch``, saves every ``every_seconds`` and at
the end, and prints progress with the elapsed time and an estimate of the time left. The batch stream must be
a function of the starting epoch, and every random draw must come from the seed (NumPy generators keyed on
(seed, epoch), Keras SeedGenerators inside the model, whose states are model variables): then the result does
not depend on where a run was interrupted (tests/test_resume.py).
"""
import json
import os
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from common import results

# Seconds between two checkpoints of a phase (and at its end); REPRO_CHECKPOINT_SECONDS overrides (tests: 0).
SAVE_EVERY_SECONDS = float(os.environ.get("REPRO_CHECKPOINT_SECONDS", 300))

def cache_root():
    """$REPRO_CACHE_DIR, else $XDG_CACHE_HOME/deep-clustering-keras, else ~/.cache/deep-clustering-keras."""
    if os.environ.get("REPRO_CACHE_DIR"):
        return Path(os.environ["REPRO_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "deep-clustering-keras"


def _variables(model):
    """Model variables (weights, BatchNorm statistics, SeedGenerator states, metric trackers) and, when built,
    the optimizer's (iteration counter, moments): everything a step reads."""
    seen, out = set(), []
    optimizer = getattr(model, "optimizer", None)
    for v in list(model.variables) + (list(optimizer.variables) if optimizer is not None else []):
        if id(v) not in seen:
            seen.add(id(v))
            out.append(v)
    return out


class Checkpoint:
    """Checkpoints of one run in ``folder``: ``<phase>.npz`` (variables) + ``<phase>.json`` (epoch, state)."""

    def __init__(self, folder):
        self.folder = Path(folder)

    def _paths(self, phase):
        return self.folder / f"{phase}.npz", self.folder / f"{phase}.json"

    def save(self, phase, model, epoch, state=None):
        arrays, meta = self._paths(phase)
        values = [keras.ops.convert_to_numpy(v) for v in _variables(model)]
        results.save_arrays(arrays, epoch=np.int64(epoch), **{f"v{i:04d}": a for i, a in enumerate(values)})
        # the JSON last: it names the epoch of the arrays beside it, so a crash between the two is detected
        results.write_json(meta, {"epoch": int(epoch), "n_variables": len(values), "state": state or {},
                                  "saved": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})

    def load(self, phase, model):
        """Restores the phase's variables into ``model`` (its optimizer built first); returns (epoch, state),
        or (0, None) when there is no complete checkpoint."""
        arrays, meta = self._paths(phase)
        if not (arrays.is_file() and meta.is_file()):
            return 0, None
        info = json.loads(meta.read_text())
        saved = np.load(arrays)
        if int(saved["epoch"]) != info["epoch"]:
            return 0, None  # interrupted between the two writes: the older JSON does not describe these arrays
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None and not optimizer.built:
            optimizer.build(model.trainable_variables)
        variables = _variables(model)
        if len(variables) != info["n_variables"]:
            raise RuntimeError(f"checkpoint {arrays} holds {info['n_variables']} variables, the model "
                               f"{len(variables)}: delete it or run with --fresh")
        for i, v in enumerate(variables):
            v.assign(saved[f"v{i:04d}"])
        return info["epoch"], info["state"]

    def clear(self):
        shutil.rmtree(self.folder, ignore_errors=True)


class _Saver(keras.callbacks.Callback):
    """Records each epoch's logs and wall time, saves a checkpoint every ``every_seconds`` (and at the last epoch
    or when another callback stops training), and prints '[phase] epoch i/N elapsed, left ~' (every 30 s at most;
    '[phase] iteration i/N' when an epoch is a chunk of ``per_epoch`` iterations: ``unit``)."""

    def __init__(self, checkpoint, phase, epochs, get_state, state, every_seconds, verbose, unit="epoch", per_epoch=1):
        super().__init__()
        self.checkpoint, self.phase, self.epochs, self.get_state = checkpoint, phase, epochs, get_state
        self.unit, self.per_epoch = unit, per_epoch
        self.logs = state.get("logs", [])
        self.durations = state.get("epoch_seconds", [])
        self.resumes = state.get("resumes", [])
        self.every_seconds, self.verbose = every_seconds, verbose
        self._last_save = self._last_print = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.durations.append(time.perf_counter() - self._t)
        self.logs.append({k: float(v) for k, v in (logs or {}).items()})
        done = epoch + 1
        last = done == self.epochs or self.model.stop_training
        if self.checkpoint is not None and (last or time.perf_counter() - self._last_save >= self.every_seconds):
            self.checkpoint.save(self.phase, self.model, done, self.state(finished=bool(self.model.stop_training)))
            self._last_save = time.perf_counter()
        if self.verbose and (last or time.perf_counter() - self._last_print >= 30):
            self._last_print = time.perf_counter()
            elapsed = sum(self.durations)
            left = (self.epochs - done) * float(np.median(self.durations[-20:]))
            print(f"[{self.phase}] {self.unit} {done * self.per_epoch}/{self.epochs * self.per_epoch}  "
                  f"elapsed {_hms(elapsed)}  left ~{_hms(left)}", flush=True)

    def state(self, finished=False):
        return {"logs": self.logs, "epoch_seconds": self.durations, "resumes": self.resumes,
                "stopped_early": finished, "user": self.get_state() if self.get_state else {}}


def _hms(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def fit_input(stream):
    """A Python batch stream as ``fit``'s input. Under TensorFlow: the tf.data pipeline Keras builds from a generator
    (``from_generator``, batch axis unknown, other axes merged over the first two batches: the same traced step, so the
    same numbers), without its AUTOTUNE prefetch and on one private thread without autotuning. Keras's own pipeline ran
    a 2-core CPU's step at half its rate in about half the epochs (DECS 139 vs 70-85 ms, DCSS 540 vs 270-380 ms;
    ``train_on_batch`` and this pipeline never: benchmarks/SPEED.md). Other backends take the stream as it is."""
    if keras.backend.backend() != "tensorflow":
        return stream
    import itertools

    import tensorflow as tf

    first = list(itertools.islice(stream, 2))
    if not first:
        raise ValueError("the batch stream is empty")

    def spec(*leaves):
        dims = [d[0] if len(set(d)) == 1 else None for d in zip(*(np.shape(a) for a in leaves))]
        return tf.TensorSpec([None] + dims[1:], tf.as_dtype(np.asarray(leaves[0]).dtype))

    signature = keras.tree.map_structure(spec, *first)
    options = tf.data.Options()
    options.autotune.enabled = False
    options.threading.private_threadpool_size = 1
    options.threading.max_intra_op_parallelism = 1
    return tf.data.Dataset.from_generator(lambda: itertools.chain(first, stream),
                                          output_signature=signature).with_options(options)


def resumable_fit(model, batches, *, phase, epochs, steps_per_epoch, checkpoint=None, callbacks=(),
                  get_state=None, set_state=None, every_seconds=None, verbose=1, unit="epoch", units_per_epoch=None):
    """``model.fit`` (compiled) over ``epochs`` epochs of ``steps_per_epoch`` steps, resumed from ``checkpoint``.

    ``batches(start_epoch)`` returns the batch stream from that epoch on. ``get_state()`` returns the JSON-able
    Python-side state the callbacks keep (evaluation logs, centres, random generators); ``set_state(state)``
    restores it before training resumes. Checkpoints are written every ``every_seconds`` (default
    SAVE_EVERY_SECONDS) and after the last epoch. Returns a dict: ``logs`` (one dict of metrics per epoch, all epochs),
    ``epoch_seconds``, ``resumes`` (the epochs this phase was resumed at) and ``stopped_early``.
    ``unit`` names what the progress lines count (they only): 'epoch' (default: 'epoch i/N'), or e.g. 'iteration'
    when an epoch here is a chunk of iterations: 'iteration i*u/N*u', u = ``units_per_epoch`` (default
    ``steps_per_epoch``).
    """
    per_epoch = 1 if unit == "epoch" else (units_per_epoch or steps_per_epoch)
    start, saved = (0, None) if checkpoint is None else checkpoint.load(phase, model)
    state = dict(saved or {})
    if saved is not None:
        if set_state is not None:
            set_state(saved.get("user", {}))
        if start < epochs and not saved.get("stopped_early"):
            state["resumes"] = state.get("resumes", []) + [start]
            if verbose:
                print(f"[{phase}] resumed from {checkpoint.folder} at {unit} {start * per_epoch}/{epochs * per_epoch}",
                      flush=True)
    every = SAVE_EVERY_SECONDS if every_seconds is None else every_seconds
    saver = _Saver(checkpoint, phase, epochs, get_state, state, every, verbose, unit, per_epoch)
    if start < epochs and not state.get("stopped_early"):
        model.fit(fit_input(batches(start)), steps_per_epoch=steps_per_epoch, initial_epoch=start, epochs=epochs,
                  shuffle=False, verbose=0, callbacks=list(callbacks) + [saver])
    return {"logs": saver.logs, "epoch_seconds": saver.durations, "resumes": saver.resumes,
            "stopped_early": bool(state.get("stopped_early") or model.stop_training)}


def curve(logs, key):
    """One metric over epochs from ``resumable_fit``'s logs."""
    return [e[key] for e in logs if key in e]
