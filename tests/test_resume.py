"""Interrupted runs resume from their last checkpoint and give the result of an uninterrupted run."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, has_data


class Interrupt(Exception):
    pass


def _np(v):
    import keras

    return keras.ops.convert_to_numpy(v)


def _tiny_model(seed):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.RandomTranslation(0.2, 0.2, seed=3),
                              keras.layers.Flatten(), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    return model


def _stream(x, y, start):
    from common import training

    for (xb,) in training.shuffled_batches(np.arange(len(x)), 8, seed=5, start_epoch=start):
        yield x[xb], y[xb]


def test_resumable_fit_after_interruption_equals_uninterrupted(tmp_path, monkeypatch):
    from common import checkpoint

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 6, 6, 1)).astype("float32"), rng.normal(size=(32, 1)).astype("float32")
    kw = dict(phase="p", epochs=5, steps_per_epoch=4, every_seconds=0, verbose=0)

    ref = _tiny_model(1)
    full = checkpoint.resumable_fit(ref, lambda e: _stream(x, y, e), checkpoint=checkpoint.Checkpoint(tmp_path / "a"),
                                    **kw)

    class StopAfter(checkpoint._Saver):
        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)
            if epoch + 1 == 2:
                raise Interrupt

    ck = checkpoint.Checkpoint(tmp_path / "b")
    with monkeypatch.context() as m:
        m.setattr(checkpoint, "_Saver", StopAfter)
        with pytest.raises(Interrupt):
            checkpoint.resumable_fit(_tiny_model(1), lambda e: _stream(x, y, e), checkpoint=ck, **kw)
    assert json.loads((tmp_path / "b" / "p.json").read_text())["epoch"] == 2
    resumed_model = _tiny_model(99)  # a new process: other initial weights, fresh optimizer and seed states
    resumed = checkpoint.resumable_fit(resumed_model, lambda e: _stream(x, y, e), checkpoint=ck, **kw)

    assert resumed["resumes"] == [2] and full["resumes"] == []
    assert len(resumed["logs"]) == 5 and len(resumed["epoch_seconds"]) == 5
    np.testing.assert_array_equal(checkpoint.curve(resumed["logs"], "loss"), checkpoint.curve(full["logs"], "loss"))
    for a, b in zip(resumed_model.variables, ref.variables):  # weights, seed generator state
        np.testing.assert_array_equal(_np(a), _np(b))
    for a, b in zip(resumed_model.optimizer.variables, ref.optimizer.variables):  # step counter, moments
        np.testing.assert_array_equal(_np(a), _np(b))


def test_finished_phase_is_not_trained_again(tmp_path):
    from common import checkpoint

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(16, 6, 6, 1)).astype("float32"), rng.normal(size=(16, 1)).astype("float32")
    ck = checkpoint.Checkpoint(tmp_path)
    kw = dict(phase="p", epochs=2, steps_per_epoch=2, every_seconds=1e9, verbose=0)
    model = _tiny_model(0)
    checkpoint.resumable_fit(model, lambda e: _stream(x, y, e), checkpoint=ck, **kw)  # saved at the last epoch
    again = _tiny_model(7)
    out = checkpoint.resumable_fit(again, lambda e: (_ for _ in ()).throw(AssertionError("trained again")),
                                   checkpoint=ck, **kw)
    assert out["resumes"] == [] and len(out["logs"]) == 2
    for a, b in zip(again.variables, model.variables):
        np.testing.assert_array_equal(_np(a), _np(b))


def test_torn_checkpoint_is_ignored(tmp_path):
    """Arrays newer than the JSON that describes them (a crash between the two writes): start over."""
    from common import checkpoint

    model = _tiny_model(0)
    ck = checkpoint.Checkpoint(tmp_path)
    ck.save("p", model, 3)
    meta = json.loads((tmp_path / "p.json").read_text())
    (tmp_path / "p.json").write_text(json.dumps({**meta, "epoch": 2}))
    assert ck.load("p", _tiny_model(1)) == (0, None)


def _decs_config():
    from papers import decs

    return decs.Config(ae_epochs=3, batch_size=16, cluster_iters=6, log_every=2, kmeans_n_init=2)


def _images(n=48, seed=0):
    rng = np.random.default_rng(seed)
    x = np.clip(rng.normal(0.5, 0.2, size=(n, 16, 16, 1)), 0, 1).astype("float32")
    x[: n // 2, 4:12, 4:12] = 1.0  # two visible groups
    return x, (np.arange(n) < n // 2).astype(int)


def test_decs_interrupted_in_each_stage_gives_the_uninterrupted_result(tmp_path, monkeypatch):
    """Killed once during pre-training and once during clustering, resumed twice: identical labels and weights."""
    from common import checkpoint
    from papers import decs

    x, y = _images()
    monkeypatch.setattr(checkpoint, "SAVE_EVERY_SECONDS", 0.0)

    def fit(folder):
        return decs.DECS(2, _decs_config(), seed=3, cache_dir=folder, checkpoint_dir=folder / "run", verbose=0).fit(x, y)

    ref = fit(tmp_path / "ref")

    _crash_after(monkeypatch, {2, 4})  # pre-training epochs are calls 1-3, clustering chunks 4-6
    with pytest.raises(Interrupt):
        fit(tmp_path / "run")
    ae_ckpt = list((tmp_path / "run").glob("ae_seed3_*.weights.h5.ckpt"))
    assert len(ae_ckpt) == 1 and json.loads((ae_ckpt[0] / "pretrain.json").read_text())["epoch"] == 2
    with pytest.raises(Interrupt):  # resumes pre-training at epoch 2, finishes it, crashes after chunk 1
        fit(tmp_path / "run")
    assert not ae_ckpt[0].exists() and list((tmp_path / "run").glob("ae_seed3_*.weights.h5"))
    assert json.loads((tmp_path / "run" / "run" / "cluster.json").read_text())["epoch"] == 1
    out = fit(tmp_path / "run")

    assert out.history["pretrain"]["cached"]
    assert out.history["cluster"]["resumed_at"] == [1] and ref.history["cluster"]["resumed_at"] == []
    np.testing.assert_array_equal(out.predict(x), ref.predict(x))
    for a, b in zip(out.net.variables, ref.net.variables):
        np.testing.assert_array_equal(_np(a), _np(b))
    assert out.history["cluster"]["loss"] == ref.history["cluster"]["loss"]
    assert [e["step"] for e in out.history["cluster"]["eval"]] == [2, 4, 6]


@pytest.mark.skipif(not has_data("usps/usps_train.jf.gz", "usps/usps_test.jf.gz"), reason="USPS not available")
def test_reproduce_killed_mid_run_resumes_to_the_same_result(tmp_path):
    """The real thing: ./reproduce.sh killed with SIGKILL during clustering, run again: same labels as a run
    that was never interrupted (and the checkpoint is gone once the result is written)."""
    env = {**os.environ, "REPRO_CACHE_DIR": str(tmp_path / "cache"), "REPRO_CHECKPOINT_SECONDS": "0",
           "REPRO_HEARTBEAT_SECONDS": "0.1"}
    cmd = [str(ROOT / "reproduce.sh"), "decs", "usps", "--profile", "smoke", "--seeds", "0", "--quiet",
           "--set", "cluster_iters=40"]
    subprocess.run(cmd + ["--out", str(tmp_path / "ref")], env=env, check=True, capture_output=True)
    proc = subprocess.Popen(cmd + ["--out", str(tmp_path / "run")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    runs = tmp_path / "cache" / "decs" / "usps" / "runs"
    deadline = time.time() + 300
    while not list(runs.glob("*/cluster.json")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "run" / "decs").exists() or not list((tmp_path / "run").rglob("seed0.json"))
    subprocess.run(cmd + ["--out", str(tmp_path / "run")], env=env, check=True, capture_output=True)
    folder = Path("decs/usps/smoke/cluster_iters=40")
    ref = json.loads((tmp_path / "ref" / folder / "seed0.json").read_text())
    got = json.loads((tmp_path / "run" / folder / "seed0.json").read_text())
    assert got["history"]["cluster"]["resumed_at"], "the second run did not resume"
    np.testing.assert_array_equal(np.load(tmp_path / "run" / folder / "seed0.npz")["labels"],
                                  np.load(tmp_path / "ref" / folder / "seed0.npz")["labels"])
    assert got["metrics"] == ref["metrics"]
    assert not list(runs.glob("*/cluster.json"))
    # both sittings timed: the killed one up to its last heartbeat, the last one whole
    assert len(ref["sittings"]) == 1 and len(got["sittings"]) == 2
    assert got["sittings"][0]["seconds"] > 0 and got["sittings"][1]["seconds"] == got["wall_seconds"]
    assert got["wall_seconds_all_sittings"] == pytest.approx(sum(s["seconds"] for s in got["sittings"]))
    assert got["cpu_seconds_all_sittings"] == pytest.approx(sum(s["cpu_seconds"] for s in got["sittings"]))
    assert got["sittings"][1]["cpu_seconds"] == got["cpu_seconds"] > 0 and got["sittings"][0]["cpu_seconds"] > 0


def test_an_interrupted_sitting_lasts_to_its_last_heartbeat(tmp_path):
    """A sitting records a heartbeat every `every` seconds; the next sitting reads the earlier one's duration."""
    from common import cli

    folder = tmp_path / "run"
    with cli.Sittings(folder, every=0.05) as first:
        assert first.earlier == []
        time.sleep(0.5)
    entries = json.loads((folder / "sittings.json").read_text())
    # the heartbeat stops with the sitting: a live one would recreate the folder the run deletes after its result
    time.sleep(0.3)
    assert json.loads((folder / "sittings.json").read_text()) == entries
    assert len(entries) == 1 and 0.4 <= entries[0]["last_seen"] - entries[0]["start_unix"] <= 0.6
    with cli.Sittings(folder, every=60) as second:  # no heartbeat before it ends: it lasts 0 s for the third
        pass
    with cli.Sittings(folder) as third:
        assert [e["started"] for e in third.earlier] == [e["started"] for e in entries] + [second.entries[-1]["started"]]
        assert 0.4 <= third.earlier[0]["seconds"] <= 0.6 and third.earlier[1]["seconds"] == 0.0


def test_a_sitting_records_its_cpu_time_not_its_pauses(tmp_path):
    """cpu_seconds counts the process's CPU time: a busy sitting about its wall time, a sleeping (or SIGSTOPped)
    one about none, and the next sitting reads both."""
    from common import cli

    folder = tmp_path / "run"
    with cli.Sittings(folder, every=0.05):
        end = time.perf_counter() + 0.5
        while time.perf_counter() < end:
            pass
        time.sleep(0.1)  # a heartbeat after the busy part
    with cli.Sittings(folder, every=0.05):
        time.sleep(0.5)
    with cli.Sittings(folder) as third:
        (busy, idle) = third.earlier
    assert 0.35 <= busy["cpu_seconds"] <= 0.75 and 0.5 <= busy["seconds"] <= 0.8
    assert idle["cpu_seconds"] < 0.1 and 0.4 <= idle["seconds"] <= 0.6


def _crash_after(monkeypatch, stops):
    """Makes the checkpoint callback raise Interrupt after its n-th epoch end (counted over all phases)."""
    from common import checkpoint

    calls = {"n": 0}
    original = checkpoint._Saver.on_epoch_end

    def on_epoch_end(self, epoch, logs=None):
        original(self, epoch, logs)
        calls["n"] += 1
        if calls["n"] in stops:
            raise Interrupt

    monkeypatch.setattr(checkpoint._Saver, "on_epoch_end", on_epoch_end)


@pytest.mark.parametrize("full_batch", [False, True])
def test_dekm_interrupted_between_updates_gives_the_uninterrupted_result(tmp_path, monkeypatch, full_batch):
    """Labels, centres, V, the k-means schedule (n_init, random states) and the update log survive a restart."""
    from common import checkpoint
    from papers import dekm

    x, y = _images(60, seed=2)
    monkeypatch.setattr(checkpoint, "SAVE_EVERY_SECONDS", 0.0)
    cfg = dekm.Config(ae_epochs=2, batch_size=16, update_interval=3, max_iters=15, stop_tol=0.0,
                      kmeans_n_init=3, embedding_dim=4, full_batch=full_batch, strategy="random_y")

    def fit(folder):
        return dekm.DEKM(3, cfg, seed=1, cache_dir=folder, checkpoint_dir=folder / "run", verbose=0).fit(x, y)

    ref = fit(tmp_path / "ref")
    _crash_after(monkeypatch, {2 + 2})  # AE epochs are calls 1-2; crash after the second update
    with pytest.raises(Interrupt):
        fit(tmp_path / "run")
    out = fit(tmp_path / "run")
    assert out.history["cluster"]["resumed_at"] == [2] and out.history["cluster"]["updates"] == 5
    np.testing.assert_array_equal(out.labels, ref.labels)
    np.testing.assert_array_equal(out.centers, ref.centers)
    np.testing.assert_array_equal(out.v, ref.v)
    for a, b in zip(out.net.variables, ref.net.variables):
        np.testing.assert_array_equal(_np(a), _np(b))
    drop = ("seconds", "update_seconds")
    assert [{k: v for k, v in e.items() if k not in drop} for e in out.log] == \
        [{k: v for k, v in e.items() if k not in drop} for e in ref.log]


def test_dcss_interrupted_in_phase1_and_phase2_gives_the_uninterrupted_result(tmp_path, monkeypatch):
    """Phase 1 (checkpoint beside its cache) and phase 2 (the run's checkpoint, across the u -> q switch)."""
    from common import checkpoint
    from papers import dcss

    x, y = _images(40, seed=3)
    monkeypatch.setattr(checkpoint, "SAVE_EVERY_SECONDS", 0.0)
    cfg = dcss.Config(batch_size=20, ae_epochs=1, phase1_epochs=3, T1=1, phase2_epochs=3, T2=1, kmeans_n_init=2)

    def fit(folder):
        return dcss.DCSS(3, cfg, seed=0, cache_dir=folder, checkpoint_dir=folder / "run", verbose=0).fit(x, y)

    ref = fit(tmp_path / "ref")
    _crash_after(monkeypatch, {1 + 2, 1 + 3 + 2})  # AE epoch is call 1: crash after phase-1 epoch 2, phase-2 epoch 2
    with pytest.raises(Interrupt):
        fit(tmp_path / "run")
    with pytest.raises(Interrupt):
        fit(tmp_path / "run")
    out = fit(tmp_path / "run")
    assert out.history["phase1"].get("cached") and out.history["phase2"]["resumed_at"] == [2]
    assert out.history["phase2"]["similarity_space"] == ["u", "q", "q"]
    np.testing.assert_array_equal(out.predict(x), ref.predict(x))
    np.testing.assert_array_equal(out.centers, ref.centers)
    for a, b in zip(out.mnet.variables + out.encoder.variables, ref.mnet.variables + ref.encoder.variables):
        np.testing.assert_array_equal(_np(a), _np(b))
    assert out.history["phase2"]["loss"] == ref.history["phase2"]["loss"]
