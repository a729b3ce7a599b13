"""reproduce.sh: bad input gets one error line and a non-zero exit; a smoke run writes its files; the default
command (paper profile, seed 0), seeds, the plan, the verdict table (common.verdict), --data, quiet start-up,
--help, progress lines."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common import cli, verdict

ROOT = Path(__file__).resolve().parents[1]


def run(*args, cache=None):
    env = {**os.environ, "REPRO_CACHE_DIR": str(cache)} if cache else None
    return subprocess.run([str(ROOT / "reproduce.sh"), *args], capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.parametrize("args, message", [
    (("nopaper", "usps"), "unknown paper"),
    (("decs", "cifar10"), "unknown dataset"),
    (("decs", "usps", "--profile", "huge"), "unknown profile"),
    (("decs", "usps", "--seeds", "a,b"), "bad --seeds"),
    (("decs", "usps", "--set", "nokey=1"), "bad --set"),
    (("decs", "usps", "--set", "variant=other"), "variant must be"),
    (("decs", "usps", "--set", "log_every=300", "--profile", "paper"), "must be a multiple of log_every"),
])
def test_bad_input_one_line_nonzero(args, message, tmp_path, capsys):
    """In-process (the subprocess start-up, TensorFlow's import, costs ~7 s a case); the entry point: below."""
    from common import cli

    assert cli.main([*args, "--out", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], err[-2000:]
    assert not any(tmp_path.iterdir())  # nothing written


def test_bad_input_through_reproduce_sh(tmp_path):
    """The same through ./reproduce.sh, for a check made after the paper's module (and TensorFlow) is loaded."""
    p = run("decs", "usps", "--set", "variant=other", "--out", str(tmp_path))
    assert p.returncode != 0
    lines = [line for line in p.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "variant must be" in lines[0], p.stderr[-2000:]
    assert not any(tmp_path.iterdir())


TF_NOISE = ("I0000", "absl", "oneDNN", "cudart_stub")


def test_list_quiet_with_verdicts_from_out(tmp_path):
    """'list': each data set's verdict from the committed paper-profile results under --out (here one made-up run
    far below DECS's USPS row), 'not run' elsewhere, the CPU time per seed; no TensorFlow start-up lines."""
    folder = tmp_path / "decs" / "usps" / "paper"
    folder.mkdir(parents=True)
    (folder / "seed0.json").write_text(json.dumps({"seed": 0, "paper": "decs", "metrics": {"acc": 0.5, "nmi": 0.4},
                                                   "wall_seconds": 5400, "environment": {"device": "cpu:2 cores"}}))
    p = run("list", "--out", str(tmp_path))
    assert p.returncode == 0 and p.stdout.startswith("decs: datasets usps"), p.stderr[-2000:]
    assert not any(word in p.stderr for word in TF_NOISE), p.stderr[-2000:]
    usps = next(line for line in p.stdout.splitlines() if line.strip().startswith("usps"))
    assert "✗ does not reproduce (ACC 0.500 vs 0.992, 1 seed)" in usps and "CPU time per seed 1.5 h" in usps
    mnist = next(line for line in p.stdout.splitlines() if line.strip().startswith("mnist "))
    assert "not run" in mnist
    assert "need a download: cifar10-test" in p.stdout


def test_missing_data_keeps_existing_results(tmp_path, monkeypatch):
    folder = tmp_path / "decs" / "usps" / "smoke"
    folder.mkdir(parents=True)
    (folder / "seed0.json").write_text('{"seed": 0, "metrics": {"acc": 0.5}}')
    monkeypatch.setenv("CLUSTER_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    from common import datasets

    monkeypatch.setattr(datasets, "search_dirs", lambda: [tmp_path / "empty"])
    monkeypatch.setattr(datasets, "_download", lambda rel: None)
    assert cli.main(["decs", "usps", "--profile", "smoke", "--seeds", "0", "--out", str(tmp_path), "--quiet"]) == 1
    assert json.loads((folder / "seed0.json").read_text())["metrics"]["acc"] == 0.5


def test_smoke_run_writes_results(tmp_path):
    cache = tmp_path / "cache"
    out = tmp_path / "results"
    p = run("decs", "usps", "--profile", "smoke", "--seeds", "0", "--out", str(out), "--quiet", cache=cache)
    assert p.returncode == 0, p.stderr[-3000:]
    folder = out / "decs" / "usps" / "smoke"
    rec = json.loads((folder / "seed0.json").read_text())
    assert rec["profile"] == "smoke" and rec["config"]["ae_epochs"] == 2 and rec["n_samples"] == 300
    assert set(rec["metrics"]) >= {"acc", "nmi", "ari", "nonempty_clusters", "smallest_cluster"}
    assert sum(rec["cluster_sizes"]) == 300 and len(rec["cluster_sizes"]) == 10
    assert rec["metrics"]["nonempty_clusters"] == sum(s > 0 for s in rec["cluster_sizes"])
    assert rec["environment"]["backend"] and len(rec["git"]["commit"]) == 40 and "dirty" in rec["git"]
    arrays = np.load(folder / "seed0.npz")
    assert len(arrays["labels"]) == 300 and len(arrays["embedding"]) == len(arrays["sample_index"]) == 300
    assert (folder / "curves.png").is_file()
    assert "| ACC" in p.stdout and "0.992" in p.stdout and verdict.RULE in p.stdout
    assert "profile smoke: a plumbing check" in p.stdout and "what will run: decs on usps" in p.stdout
    assert not any(word in p.stderr for word in TF_NOISE), p.stderr[-2000:]
    # nothing in the work tree: the pretrained autoencoder is cached in the per-user cache and reused for an
    # identical config; the run's checkpoint is removed once its result is written
    assert len(list((cache / "decs" / "usps").glob("ae_seed0_*.weights.h5"))) == 1
    assert not list((cache / "decs" / "usps").glob("runs/*/*.json")) and not (folder / "cache").exists()
    p2 = run("decs", "usps", "--profile", "smoke", "--seeds", "0", "--out", str(out), "--quiet",
             "--set", "variant=code", cache=cache)
    assert p2.returncode == 0, p2.stderr[-3000:]
    rec2 = json.loads((folder / "variant=code" / "seed0.json").read_text())
    assert rec2["history"]["pretrain"]["cached"] and rec2["config"]["lam"] == 0.4


# ------------------------------------------------------------------------------------------ defaults and seeds
def test_parse_seeds_both_syntaxes():
    assert cli.parse_seeds(["0", "1", "2"]) == cli.parse_seeds("0,1,2") == cli.parse_seeds(["0,1", "2"]) == [0, 1, 2]
    assert cli.parse_seeds("0 1 2") == [0, 1, 2] and cli.parse_seeds("0") == [0]
    assert cli.parse_seeds(["2", "0", "2"]) == [2, 0]
    for bad in (["a,b"], ["0", "usps"], ["-1"], [","]):
        with pytest.raises(cli.UsageError, match="bad --seeds"):
            cli.parse_seeds(bad)


def blobs_file(folder, n=60, k=3, labels=True, name="blobs"):
    """A small .npz of k noisy 4x4 prototypes (labels i % k unless ``labels`` is False)."""
    rng = np.random.default_rng(0)
    y = np.arange(n) % k
    x = np.clip(rng.uniform(size=(k, 4, 4))[y] + 0.05 * rng.normal(size=(n, 4, 4)), 0, 1).astype("float32")
    path = Path(folder) / f"{name}.npz"
    np.savez(path, **({"x": x, "y": y} if labels else {"x": x}))
    return path


@pytest.fixture
def stub_run(monkeypatch):
    """papers.decs.run replaced by a stub (the true labels, or i % k without them) and the figures skipped: the
    CLI's plumbing without training. Returns the list of (profile budget, seed) the stub was called with."""
    from common import plots
    from papers import decs

    calls = []

    def fake_run(data, config, seed, cache_dir=None, verbose=1):
        calls.append((config.ae_epochs, seed))
        labels = data.y if data.y is not None else np.arange(len(data.x)) % data.n_clusters
        return {"labels": labels, "embedding": data.x.reshape(len(data.x), -1)[:, :2],
                "centers": np.zeros((data.n_clusters, 2), "float32"), "history": {}}

    monkeypatch.setattr(decs, "run", fake_run)
    monkeypatch.setattr(plots, "run_figures", lambda *a, **k: None)
    return calls


def seed_files(folder):
    return sorted(p.name for p in Path(folder).glob("seed*.json"))


def test_run_one_counts_every_thread_cpu_and_no_sleep(tmp_path, monkeypatch):
    """cpu_seconds is the process's CPU time over all threads (TensorFlow trains in its own threads): a method whose
    work runs in a worker thread while the caller waits, then sleeps, records the worker's busy time and not the
    sleep. Counting only the calling thread (time.thread_time) records about 0; counting wall time 0.9 s or more."""
    import threading
    import time as _time
    from common import plots
    from papers import decs

    def spin(seconds):  # its own CPU time, not wall time: a busy machine slows it but does not shorten it
        end = _time.thread_time() + seconds
        while _time.thread_time() < end:
            pass

    def busy_run(data, config, seed, cache_dir=None, verbose=1):
        worker = threading.Thread(target=spin, args=(0.6,))
        worker.start()
        worker.join()
        _time.sleep(0.3)
        return {"labels": data.y, "embedding": data.x.reshape(len(data.x), -1)[:, :2],
                "centers": np.zeros((data.n_clusters, 2), "float32"), "history": {}}

    monkeypatch.setattr(decs, "run", busy_run)
    monkeypatch.setattr(plots, "run_figures", lambda *a, **k: None)
    assert cli.main(["decs", "--data", str(blobs_file(tmp_path)), "--out", str(tmp_path / "out"),
                     "--profile", "smoke"]) == 0
    got = json.loads((tmp_path / "out" / "decs" / "blobs" / "smoke" / "seed0.json").read_text())
    assert got["wall_seconds"] >= 0.9
    assert 0.55 <= got["cpu_seconds"] <= 0.85 and got["cpu_seconds"] <= got["wall_seconds"] - 0.2
    assert got["cpu_seconds_all_sittings"] == got["cpu_seconds"] and len(got["sittings"]) == 1


def test_default_is_the_paper_profile_seed_0(tmp_path, monkeypatch, capsys, stub_run):
    from papers import decs

    monkeypatch.delenv("REPRO_PROFILE", raising=False)
    data = blobs_file(tmp_path)
    assert cli.main(["decs", "--data", str(data), "--out", str(tmp_path / "out")]) == 0
    assert [p.name for p in (tmp_path / "out" / "decs" / "blobs").iterdir()] == ["paper"]
    assert seed_files(tmp_path / "out" / "decs" / "blobs" / "paper") == ["seed0.json"]
    assert stub_run == [(decs.PROFILES["paper"].get("ae_epochs", decs.Config().ae_epochs), 0)]
    out = capsys.readouterr().out
    assert "what will run: decs on blobs, profile paper, seed 0" in out and "samples: 60" in out
    assert "preview" not in out and "plumbing" not in out  # the paper profile has no warning


@pytest.mark.parametrize("profile, note", [("smoke", "a plumbing check"), ("quick", "a preview budget; it does not "
                                                                               "reproduce the paper's numbers")])
def test_repro_profile_overrides_the_default(profile, note, tmp_path, monkeypatch, capsys, stub_run):
    from papers import decs

    monkeypatch.setenv("REPRO_PROFILE", profile)
    data = blobs_file(tmp_path)
    assert cli.main(["decs", "--data", str(data), "--out", str(tmp_path / "out")]) == 0
    assert seed_files(tmp_path / "out" / "decs" / "blobs" / profile) == ["seed0.json"]
    assert stub_run == [(decs.PROFILES[profile]["ae_epochs"], 0)]
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"profile {profile}:")]
    assert len(notes) == 1 and note in notes[0]
    # --profile beats REPRO_PROFILE
    assert cli.main(["decs", "--data", str(data), "--out", str(tmp_path / "out"), "--profile", "paper"]) == 0
    assert seed_files(tmp_path / "out" / "decs" / "blobs" / "paper") == ["seed0.json"]


@pytest.mark.parametrize("seeds", [["0", "2"], ["0,2"]])
def test_seeds_space_or_comma_separated(seeds, tmp_path, monkeypatch, stub_run):
    monkeypatch.delenv("REPRO_PROFILE", raising=False)
    data = blobs_file(tmp_path)
    assert cli.main(["decs", "--data", str(data), "--out", str(tmp_path), "--seeds", *seeds]) == 0
    assert seed_files(tmp_path / "decs" / "blobs" / "paper") == ["seed0.json", "seed2.json"]
    assert [s for _, s in stub_run] == [0, 2]


# ------------------------------------------------------------------------------------------------ the verdict
def test_verdict_thresholds():
    v = verdict.verdict
    assert v(0.97, 0.99) == "✓" and v(0.9699, 0.99) == "~"  # exactly 2 points below: within
    assert v(0.94, 0.99) == "~" and v(0.9399, 0.99) == "✗"  # exactly 5 points below: within 5
    assert v(0.999, 0.99) == "✓" and v(0.5, 0.99) == "✗" and v(0.985, 0.99) == "✓"
    assert v(None, 0.99) == v(0.9, None) == "—"
    assert verdict.points(0.97, 0.99) == -2.0


def test_verdict_table_compares_with_the_files_before_the_run(tmp_path, monkeypatch, capsys, stub_run):
    """The committed column is the folder as it was before the command (seed0 with ACC 0.5, 2 min), not the file
    the run just wrote over it (ACC 1.0); ours - paper in points against a made-up paper row for the data."""
    from papers import decs

    monkeypatch.delenv("REPRO_PROFILE", raising=False)
    monkeypatch.setitem(decs.PAPER_RESULTS[decs.METHOD], "blobs", {"acc": 0.98, "nmi": 0.9})
    folder = tmp_path / "decs" / "blobs" / "paper"
    folder.mkdir(parents=True)
    for seed, acc in ((0, 0.5), (1, 0.7)):
        (folder / f"seed{seed}.json").write_text(json.dumps({
            "seed": seed, "metrics": {"acc": acc, "nmi": 0.4}, "wall_seconds": 60.0 + 120 * seed,
            "environment": {"device": "cpu:2 cores", "cpu": {"model": "Made-up CPU 9000"}}}))
    data = blobs_file(tmp_path)
    assert cli.main(["decs", "--data", str(data), "--out", str(tmp_path)]) == 0
    assert json.loads((folder / "seed0.json").read_text())["metrics"]["acc"] == 1.0  # written over
    out = capsys.readouterr().out
    acc = next(line for line in out.splitlines() if line.startswith("| ACC"))
    cells = [c.strip() for c in acc.strip("|").split("|")]
    assert cells == ["ACC", "1.000", "0.980", "+2.0 points", "0.600 ± 0.100 (2 seeds)", "✓"]
    nmi = [c.strip() for c in next(line for line in out.splitlines() if line.startswith("| NMI")).strip("|").split("|")]
    assert nmi[1] == "1.000" and nmi[4] == "0.400 ± 0.000 (2 seeds)"
    assert "blobs: ✓ reproduces" in out and verdict.RULE in out
    plan = next(line for line in out.splitlines() if "estimated time per seed" in line)
    assert "~2 min (median of 2 committed runs; measured on cpu:2 cores, Made-up CPU 9000; this machine:" in plan


def test_estimate_line_says_where_it_was_measured():
    cpu = {"model": "Some CPU"}
    assert cli.estimate_line([], "cpu:2 cores", cpu) == "estimated time per seed: unknown (no measurement yet)"
    runs = [{"wall_seconds": w, "environment": {"device": "cpu:2 cores"}} for w in (600, 1200, 6000)]
    runs[0]["wall_seconds_all_sittings"] = 1800  # a resumed run: every sitting counts
    line = cli.estimate_line(runs, "cpu:2 cores", cpu)
    assert "~30 min (median of 3 committed runs; measured on cpu:2 cores, CPU model not recorded; this machine: " \
           "cpu:2 cores, Some CPU)" in line
    same = [{**r, "environment": {"device": "cpu:2 cores", "cpu": cpu}} for r in runs]
    assert "on this machine's CPU, cpu:2 cores, Some CPU" in cli.estimate_line(same, "cpu:2 cores", cpu)
    assert "this machine:" in cli.estimate_line(same, "cpu:2 cores", {"model": "unknown"})
    gpu = [{"wall_seconds": 120, "environment": {"device": "gpu:H100"}}]  # this machine's device preferred
    assert "~30 min" in cli.estimate_line(runs + gpu, "cpu:2 cores", cpu)
    assert "~2 min (median of 1 committed run;" in cli.estimate_line(runs + gpu, "gpu:H100", cpu)


def test_time_per_seed_prefers_runs_made_in_one_sitting():
    """A run resumed across sittings carries its cuts (redone work, pauses): the median takes the runs made in one
    sitting when there are any, and every run otherwise."""
    cpu = {"device": "cpu:2 cores"}
    one = {"wall_seconds": 8572.0, "sittings": [{"seconds": 8572.0}], "environment": cpu}
    cut = {"wall_seconds": 6503.0, "wall_seconds_all_sittings": 17287.0, "environment": cpu,
           "sittings": [{"seconds": 680.0}, {"seconds": 60.0}, {"seconds": 10044.0}, {"seconds": 6503.0}]}
    old = {"wall_seconds": 9000.0, "environment": cpu}  # written before sittings were recorded: one sitting
    assert verdict.median_wall([one, cut]) == 8572.0
    assert verdict.median_wall([one, cut, old]) == 8786.0
    assert verdict.median_wall([cut]) == 17287.0  # no run of one sitting: the resumed ones, every sitting counted
    assert verdict.median_wall([cut, {**one, "environment": {"device": "gpu:H100"}}], "cpu") == 17287.0


def test_status_reads_committed_results(tmp_path):
    folder = tmp_path / "dekm" / "usps" / "paper"
    folder.mkdir(parents=True)
    for seed, acc in enumerate((0.78, 0.75, 0.76)):  # mean 0.763, 3.4 points below DEKM's 0.7975
        (folder / f"seed{seed}.json").write_text(json.dumps({
            "seed": seed, "config": {}, "metrics": {"acc": acc, "nmi": 0.8}, "wall_seconds": 100.0 * (seed + 1),
            "environment": {"device": "cpu:2 cores"}}))
    s = verdict.status("dekm", "usps", out=tmp_path)
    assert s["verdict"] == "~" and s["seeds"] == [0, 1, 2] and s["cpu_seconds_per_seed"] == 200.0
    acc = s["metrics"][0]
    assert acc["key"] == "acc" and acc["paper"] == 0.7975 and acc["points"] == pytest.approx(-3.4167, abs=1e-4)
    assert verdict.status("dekm", "mnist", out=tmp_path)["verdict"] == "not run"


# ---------------------------------------------------------------------------------------------- --data FILE
def test_data_without_labels_writes_no_metrics(tmp_path, monkeypatch, capsys, stub_run):
    monkeypatch.delenv("REPRO_PROFILE", raising=False)
    data = blobs_file(tmp_path, labels=False, name="mine")
    assert cli.main(["decs", "--data", str(data), "--clusters", "3", "--out", str(tmp_path)]) == 0
    folder = tmp_path / "decs" / "mine" / "paper"
    rec = json.loads((folder / "seed0.json").read_text())
    assert rec["metrics"] == {} and rec["cluster_sizes"] == [20, 20, 20] and rec["dataset"] == "mine"
    assert rec["baseline_metrics"] == {} and rec["data_file"] == str(data.resolve())
    assert len(np.load(folder / "seed0.npz")["labels"]) == 60
    assert "no labels: no metrics" in capsys.readouterr().out


@pytest.mark.parametrize("make_args, message", [
    (lambda d: ["--data", str(d / "absent.npz")], "file not found"),
    (lambda d: ["--data", str(d / "nolabels.npz")], "--clusters"),
    (lambda d: ["usps", "--data", str(d / "blobs.npz")], "not both"),
    (lambda d: ["usps", "--clusters", "3"], "--clusters goes with --data"),
    (lambda d: ["--data", str(d / "blobs.npz"), "--clusters", "x"], "invalid int value"),
    (lambda d: ["--data", str(d / "usps.npz")], "rename the file"),
    (lambda d: ["--data", str(d / "blobs.npz"), "--clusters", "1"], "at least 2 clusters"),
])
def test_data_errors_exit_nonzero_and_write_nothing(make_args, message, tmp_path, capsys, stub_run):
    src = tmp_path / "src"
    src.mkdir()
    blobs_file(src)
    blobs_file(src, name="usps")
    blobs_file(src, labels=False, name="nolabels")
    out = tmp_path / "out"
    out.mkdir()
    assert cli.main(["decs", *make_args(src), "--out", str(out)]) != 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert not any(out.iterdir()) and stub_run == []


# ------------------------------------------------------------------------------------- quiet, help, imports
def test_help_gives_every_option_its_default(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "REPRO_PROFILE"}
    p = subprocess.run([str(ROOT / "reproduce.sh"), "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0 and p.stderr == ""
    entries = {}  # option -> its help text (argparse: an entry starts at a line '  --option', wrapped lines below)
    for line in p.stdout.split("typical commands:")[0].splitlines():
        if line.startswith("  -"):
            name = line.split()[0].rstrip(",")
            entries[name] = line
        elif line.startswith("    ") and entries:
            entries[name] += " " + line.strip()
    for opt in ("--profile", "--seeds", "--out", "--set", "--data", "--clusters", "--fresh", "--quiet", "--verbose"):
        assert "default:" in entries[opt], opt
    assert "default: paper" in entries["--profile"] and "default: 0" in entries["--seeds"]
    assert "default: results" in entries["--out"]
    text = " ".join(p.stdout.split())
    for cmd in ("./reproduce.sh decs usps the paper", "./reproduce.sh decs usps --seeds 0 1 2",
                "./reproduce.sh decs usps --profile quick"):
        assert cmd in text
    p2 = subprocess.run([str(ROOT / "reproduce.sh"), "--help"], capture_output=True, text=True,
                        env={**env, "REPRO_PROFILE": "smoke"}, timeout=120)
    assert "default: smoke (REPRO_PROFILE" in " ".join(p2.stdout.split())


@pytest.mark.parametrize("first, other", [("common.report", "common.cli"), ("common.cli", "common.report")])
def test_cli_and_report_do_not_import_each_other(first, other):
    code = f"import sys, {first}; print({other!r} in sys.modules)"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 0 and p.stdout.strip() == "False", p.stdout + p.stderr


def test_registry_is_shared():
    from common import registry

    assert cli.UsageError is registry.UsageError and cli.code_version is registry.code_version
    assert cli.load_paper("decs").__name__ == "papers.decs"
    with pytest.raises(registry.UsageError, match="unknown paper"):
        registry.load_paper("nopaper")


# ------------------------------------------------------------------------------------------- progress lines
@pytest.mark.parametrize("kwargs, line", [
    ({}, "[pretrain] epoch 2/2 "),
    ({"unit": "iteration"}, "[pretrain] iteration 10/10 "),
    ({"unit": "iteration", "units_per_epoch": 3}, "[pretrain] iteration 6/6 "),
])
def test_progress_lines_say_what_they_count(kwargs, line, capsys):
    import keras

    from common import checkpoint

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.zeros((20, 3), "float32")
    batches = lambda e: ((x[i % 20:i % 20 + 4], x[i % 20:i % 20 + 4, :1]) for i in range(10**9))  # noqa: E731
    fit = checkpoint.resumable_fit(model, batches, phase="pretrain", epochs=2, steps_per_epoch=5, **kwargs)
    assert len(fit["logs"]) == 2  # what is computed does not depend on the unit
    printed = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[pretrain]")]
    assert printed and printed[-1].startswith(line), printed
