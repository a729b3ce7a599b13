"""reproduce.sh: bad input gets one error line and a non-zero exit; a smoke run writes its files."""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from common import cli

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
def test_bad_input_one_line_nonzero(args, message, tmp_path):
    p = run(*args, "--out", str(tmp_path))
    assert p.returncode != 0
    lines = [line for line in p.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], p.stderr[-2000:]
    assert not any(tmp_path.iterdir())  # nothing written


def test_list():
    p = run("list")
    assert p.returncode == 0 and p.stdout.startswith("decs: datasets usps")


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
    assert "ACC" in p.stdout and "paper 0.992" in p.stdout
    # nothing in the work tree: the pretrained autoencoder is cached in the per-user cache and reused for an
    # identical config; the run's checkpoint is removed once its result is written
    assert len(list((cache / "decs" / "usps").glob("ae_seed0_*.weights.h5"))) == 1
    assert not list((cache / "decs" / "usps").glob("runs/*/*.json")) and not (folder / "cache").exists()
    p2 = run("decs", "usps", "--profile", "smoke", "--seeds", "0", "--out", str(out), "--quiet",
             "--set", "variant=code", cache=cache)
    assert p2.returncode == 0, p2.stderr[-3000:]
    rec2 = json.loads((folder / "variant=code" / "seed0.json").read_text())
    assert rec2["history"]["pretrain"]["cached"] and rec2["config"]["lam"] == 0.4
