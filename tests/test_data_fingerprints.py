"""``python -m common.report --check-data``: the data fingerprint each result file records (common.cli.run_one,
common.baselines) against today's loaders. Synthetic records on a fake loader (the right recipe passes; a changed sum,
square sum, shape, subset or sample count is flagged, each for its own reason), and the committed results/."""
import json
from pathlib import Path

import numpy as np
import pytest

from common import datasets, report, training
from conftest import ROOT, has_data
from papers import decs

N_PER_CLASS, K = 40, 3
SMOKE = decs.PROFILES["smoke"]["subset_per_class"]  # 30 < N_PER_CLASS: the smoke profile takes a subset


def fake_data(name="usps"):
    rng = np.random.default_rng(7)
    x = rng.uniform(size=(N_PER_CLASS * K, 4, 4, 1)).astype(np.float32)
    return datasets.Dataset(x=x, y=np.arange(N_PER_CLASS * K) % K, n_clusters=K, name=name)


class FakeLoader:
    def __init__(self):
        self.calls = []

    def __call__(self, name):
        self.calls.append(name)
        return fake_data(name)


def run_record(x, profile="smoke", **extra):
    """A record as common.cli.run_one writes it for decs on ``x``."""
    return {"paper": "decs", "dataset": "usps", "profile": profile, "seed": 0, "n_samples": len(x), "overrides": {},
            "data": training.data_fingerprint(x), **extra}


def baseline_record(x2d):
    """A record as common.baselines.write writes it (flattened float64 pixels)."""
    return {"paper": "decs", "dataset": "usps", "seed": 0, "n_samples": len(x2d), "input": "pixels",
            "data": training.data_fingerprint(x2d)}


def smoke_x(seed=0):
    return datasets.subset(fake_data(), SMOKE, seed=seed).x


def test_records_made_by_the_writers_recipes_pass_and_each_data_set_loads_once():
    full = fake_data().x
    runs = [("smoke.json", run_record(smoke_x())), ("quick.json", run_record(full, "quick")),
            ("over.json", run_record(full, "quick", overrides={"learning_rate": 0.5})),
            ("gone.json", run_record(full, "quick", overrides={"no_such_field": 1})),  # the subset is the profile's
            ("base.json", baseline_record(np.asarray(full, np.float64).reshape(len(full), -1)))]
    loader = FakeLoader()
    res = report.check_data(runs, load=loader)
    assert res["mismatch"] == [] and res["skipped"] == [] and res["not_checked"] == []
    assert sorted(res["checked"]) == sorted(p for p, _ in runs)
    assert loader.calls == ["usps"]
    assert report.data_issues(runs, load=loader) == []


def _flagged(rec):
    issues = report.data_issues([("r.json", rec)], load=FakeLoader())
    return issues[0][1] if issues else ""


def test_a_changed_sum_or_square_sum_is_flagged_beyond_a_relative_1e_9():
    rec = run_record(smoke_x())
    for key in ("x_sum", "x_sq"):
        other = "x_sq" if key == "x_sum" else "x_sum"
        off = {**rec, "data": {**rec["data"], key: rec["data"][key] * (1 + 1e-7)}}  # np.isclose would pass it
        reason = _flagged(off)
        assert f"{key} " in reason and f"{other} " not in reason and "shape" not in reason, reason
        near = {**rec, "data": {**rec["data"], key: rec["data"][key] * (1 + 1e-11)}}  # == would flag it
        assert _flagged(near) == ""
    missing = {**rec, "data": {k: v for k, v in rec["data"].items() if k != "x_sq"}}
    assert "x_sq None recorded" in _flagged(missing)
    assert "x_sum nan recorded" in _flagged({**rec, "data": {**rec["data"], "x_sum": float("nan")}})


def test_a_changed_shape_is_flagged():
    rec = run_record(smoke_x())
    reason = _flagged({**rec, "data": {**rec["data"], "shape": [SMOKE * K, 16]}})
    assert reason.startswith(f"shape [{SMOKE * K}, 16] recorded, [{SMOKE * K}, 4, 4, 1] today")
    assert "x_sum" not in reason and "n_samples" not in reason
    # a baseline is flattened: the unflattened image array of the same pixels is another shape
    full = fake_data().x
    reason = _flagged(baseline_record(np.asarray(full, np.float64)))
    assert reason.startswith(f"shape [{len(full)}, 4, 4, 1] recorded, [{len(full)}, 16] today")
    assert "x_sum" not in reason and "baseline pixels" in reason


def test_another_subset_is_flagged():
    # the same size drawn with another seed: only the sums tell
    reason = _flagged(run_record(smoke_x(seed=1)))
    assert "x_sum" in reason and "shape" not in reason and "n_samples" not in reason
    assert f"subset_per_class {SMOKE}, seed 0" in reason
    # smoke run on all the data, quick run on the smoke subset: the shape and the sample count
    full = fake_data().x
    reason = _flagged(run_record(full, "smoke"))
    assert f"shape [{len(full)}, 4, 4, 1] recorded, [{SMOKE * K}, 4, 4, 1] today" in reason
    assert f"n_samples {len(full)} recorded, {SMOKE * K} today" in reason
    assert "all the data" in _flagged(run_record(smoke_x(), "quick"))
    # the fingerprint of the right subset, but a sample count that disagrees with it
    reason = _flagged({**run_record(smoke_x()), "n_samples": SMOKE * K - 1})
    assert reason.startswith(f"n_samples {SMOKE * K - 1} recorded, {SMOKE * K} today")


def test_records_without_a_recipe_are_not_checked_and_missing_data_is_skipped(monkeypatch):
    good = run_record(smoke_x())
    runs = [("file.json", {**good, "data_file": "/tmp/mine.npz"}), ("unknown.json", {**good, "dataset": "nosuch"}),
            ("paper.json", {**good, "paper": "nosuch"}), ("prof.json", {**good, "profile": "nosuch"}),
            ("other.json", {k: v for k, v in good.items() if k != "profile"}),
            ("nodata.json", {k: v for k, v in good.items() if k != "data"})]
    res = report.check_data(runs, load=FakeLoader())
    reasons = dict(res["not_checked"])
    assert sorted(reasons) == ["file.json", "other.json", "paper.json", "prof.json", "unknown.json"]
    assert "--data /tmp/mine.npz" in reasons["file.json"] and "unknown data set 'nosuch'" in reasons["unknown.json"]
    assert "unknown recipe" in reasons["other.json"] and "profile 'nosuch'" in reasons["prof.json"]
    assert res["checked"] == [] and res["mismatch"] == [] and res["skipped"] == []

    def no_files(name):
        raise datasets.DataError(f"{name}: gone")

    res = report.check_data([("a.json", good)], load=no_files)
    assert res["skipped"] == [("a.json", "data not available: usps: gone")] and res["mismatch"] == []
    # the default loader: data whose files are not here is skipped without a load (nor a download)
    monkeypatch.setattr(datasets, "find", lambda *rels: None)
    monkeypatch.setattr(datasets, "load", lambda name: pytest.fail("loaded data whose files are missing"))
    res = report.check_data([("a.json", good)])
    assert res["checked"] == [] and "files not here" in res["skipped"][0][1]


def test_command_line_prints_one_error_per_mismatch_and_exits_non_zero(tmp_path, capsys):
    good, bad = run_record(smoke_x()), run_record(smoke_x(seed=1))
    for rel, rec in (("decs/usps/smoke/seed0.json", good), ("decs/usps/smoke/seed1.json", bad),
                     ("decs/usps/smoke/seed2.json", {**good, "data_file": "x.npz"})):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(json.dumps(rec))
    assert report.data_check_main(tmp_path, load=FakeLoader()) == 1
    out, err = capsys.readouterr()
    assert err.splitlines() == [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(err.splitlines()) == 1 and "seed1.json: x_sum" in err
    assert "data fingerprints: 2 checked (1 mismatched), 0 skipped (data not here), 1 not checked" in out
    (tmp_path / "decs/usps/smoke/seed1.json").unlink()
    assert report.data_check_main(tmp_path, load=FakeLoader()) == 0


# --- the committed results: each data set's records against today's loader (the ones that load in seconds) -------
REAL = {name: datasets.LOCAL_FILES[name][0] for name in ("usps", "coil20", "mnist-test", "mnist", "fmnist")}


@pytest.mark.parametrize("name", sorted(REAL))
def test_committed_results_match_todays_loaders(name):
    if not has_data(*REAL[name]):
        pytest.skip(f"{name} files not present")
    runs = [(p, r) for p, r in report.result_records(ROOT / "results")
            if r.get("dataset") == name and isinstance(r.get("data"), dict)]
    if not runs:
        pytest.skip(f"no committed result records a {name} fingerprint")
    res = report.check_data(runs)
    assert res["mismatch"] == [] and res["skipped"] == [] and res["not_checked"] == []
    assert len(res["checked"]) == len(runs)


def test_command_line_counts_the_checked_files_git_ignores(tmp_path, capsys):
    """In a repository whose .gitignore names the smoke folders (as ours does), the summary says how many of the
    checked files a clean checkout lacks; outside a repository it says nothing of it (the test above)."""
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("*/*/smoke/\n*/*/scratch/\n")
    good = run_record(smoke_x())
    # git's rules, not the word "smoke": a scratch folder is ignored too, and smoke/ at another depth is not
    for rel in ("decs/usps/smoke/seed0.json", "decs/usps/smoke/seed1.json", "decs/usps/quick/seed0.json",
                "decs/usps/scratch/seed0.json", "decs/usps/scratch/seed1.json", "decs/smoke/seed0.json"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(json.dumps(good))
    assert report.data_check_main(tmp_path, load=FakeLoader()) == 0
    out = capsys.readouterr().out
    assert "6 checked (0 mismatched; 4 of them in git-ignored folders, e.g. smoke outputs)" in out
    assert sorted(Path(p).parent.name for p in report.git_ignored(tmp_path, [tmp_path / "decs/usps/quick/seed0.json",
                                                                            tmp_path / "decs/usps/smoke/seed0.json"])) \
        == ["smoke"]

