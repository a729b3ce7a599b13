"""Reporting, result arrays and figures: provenance flags, notes, cluster counts derived from old files, the slim
.npz layout, training curves that start at k-means on the pre-trained embedding, the generated blocks of README.md and
docs/ (the ± rule, the verdict, the status and results tables), and the committed pages themselves (size, links, the
CI command, no paths of the development machine, blocks current)."""
import json

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from common import plots, report, results  # noqa: E402
from conftest import ROOT  # noqa: E402


def _run(seed=0, paper="decs", **extra):
    return {"paper": paper, "dataset": "usps", "profile": "quick", "seed": seed, "metrics": {"acc": 0.5}, **extra}


# --- provenance and notes ------------------------------------------------------------------------------------------
def test_provenance_flags():
    assert "no commit" in report.provenance_issue(_run())
    assert "uncommitted" in report.provenance_issue(_run(git={"commit": "a" * 40, "dirty": True}))
    old = _run(git={"commit": "b" * 40, "dirty": False, "code_fingerprint": "not-today"})
    assert "older code (bbbbbbb)" in report.provenance_issue(old)
    today = _run(git={"commit": "c" * 40, "dirty": False, "code_fingerprint": report.code_version("decs")})
    assert report.provenance_issue(today) is None


def test_notes_count_empty_clusters_and_provenance():
    ok = {"commit": "c" * 40, "dirty": False, "code_fingerprint": report.code_version("decs")}
    full = _run(0, git=ok, cluster_sizes=[5, 5, 5], metrics={"acc": 1, "nonempty_clusters": 3})
    lost = _run(1, git=ok, cluster_sizes=[10, 5, 0], metrics={"acc": 1, "nonempty_clusters": 2})
    assert report.notes([full]) == ""
    assert report.notes([full, lost]) == "1/2 seeds left clusters empty: 1 of 3"
    n = report.notes([full, lost, _run(2)])  # a third seed without counts or commit
    assert n.startswith("1/3 seeds left clusters empty") and "1/3 seeds: no commit recorded" in n


def test_budget_issue_flags_runs_of_an_older_profile():
    from papers import decs

    quick = decs.PROFILES["quick"]
    same = _run(config={**quick, "alpha": 1.0})
    older = _run(config={**quick, "ae_epochs": quick["ae_epochs"] + 1})
    overridden = _run(config={**quick, "ae_epochs": 7}, overrides={"ae_epochs": 7})
    assert report.budget_issue(same) is None and report.budget_issue(overridden) is None
    assert report.budget_issue(older) == (f"budget of an older quick profile: ae_epochs {quick['ae_epochs'] + 1} "
                                          f"(today {quick['ae_epochs']})")
    assert "1/2 seeds: budget of an older quick profile" in report.notes([same, older])


def _old_layout(path, n, k=3, seed=0):
    """A seed<k>.npz as written before the slim layout: every row of every array."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k - 1, n)  # cluster k-1 left empty
    arrays = {"labels": labels, "embedding": rng.normal(size=(n, 4)).astype("float32"),
              "centers": rng.normal(size=(k, 4)).astype("float32"), "q": rng.dirichlet(np.ones(k), n).astype("float32"),
              "kmeans_labels": rng.integers(0, k, n).astype("int32")}
    np.savez_compressed(path, **arrays)
    return arrays


def test_cluster_counts_derived_from_labels_for_old_results(tmp_path):
    arrays = _old_layout(tmp_path / "seed0.npz", 50)
    (tmp_path / "seed0.json").write_text(json.dumps(_run(0)))
    before = (tmp_path / "seed0.json").read_text()
    [run] = report.load_runs(tmp_path)
    sizes = np.bincount(arrays["labels"], minlength=3)
    assert run["cluster_sizes"] == sizes.tolist() and sizes[-1] == 0
    assert run["metrics"]["nonempty_clusters"] == 2 and run["metrics"]["smallest_cluster"] == sizes[:2].min()
    assert run["derived"]["by"] == report.DERIVED_BY and "cluster_sizes" in run["derived"]["fields"]
    assert (tmp_path / "seed0.json").read_text() == before  # the record itself is not rewritten
    assert "counted from the .npz labels" in report.notes([run])
    recorded = _run(1, cluster_sizes=[1, 2, 3], metrics={"acc": 1, "nonempty_clusters": 3, "smallest_cluster": 1})
    assert report.with_cluster_counts(recorded, tmp_path) is recorded  # counts in the file win


# --- the slim .npz layout --------------------------------------------------------------------------------------------
def test_slim_rewrites_old_files_in_the_save_run_arrays_layout(tmp_path):
    n = results.SAMPLE_SIZE + 500
    old = _old_layout(tmp_path / "seed0.npz", n)
    before, after = results.slim_file(tmp_path / "seed0.npz")
    assert after < before
    new = results.load_run_arrays(tmp_path / "seed0.npz")
    idx = results.sample_index(n)
    np.testing.assert_array_equal(new["sample_index"], idx)
    for name in ("labels", "kmeans_labels", "centers"):  # integer arrays and centres whole, dtype kept
        np.testing.assert_array_equal(new[name], old[name])
        assert new[name].dtype == old[name].dtype
    for name in ("embedding", "q"):  # per-sample floats at the sample
        np.testing.assert_array_equal(new[name], old[name][idx])
    np.testing.assert_array_equal(results.sampled(new, "labels"), old["labels"][idx])
    assert results.slim_file(tmp_path / "seed0.npz") is None  # already slim: untouched
    # the same as a run written today by save_run_arrays
    results.save_run_arrays(tmp_path / "seed1.npz", n, **old)
    today = results.load_run_arrays(tmp_path / "seed1.npz")
    assert set(today) == set(new) and all(np.array_equal(today[k], new[k]) for k in new)


def test_slim_skips_excluded_folders_and_small_data(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "skip").mkdir()
    small = _old_layout(tmp_path / "a" / "seed0.npz", 40)
    _old_layout(tmp_path / "skip" / "seed0.npz", results.SAMPLE_SIZE + 10)
    done = results.slim(tmp_path, exclude=[tmp_path / "skip"])
    assert [p.parent.name for p, _, _ in done] == ["a"]
    assert "sample_index" not in np.load(tmp_path / "skip" / "seed0.npz").files
    a = results.load_run_arrays(tmp_path / "a" / "seed0.npz")
    np.testing.assert_array_equal(a["embedding"], small["embedding"])  # n <= SAMPLE_SIZE: every row, in order
    np.testing.assert_array_equal(results.sampled(a, "labels"), small["labels"])


def test_load_run_arrays_of_an_old_file_has_every_row(tmp_path):
    old = _old_layout(tmp_path / "seed0.npz", 30)
    a = results.load_run_arrays(tmp_path / "seed0.npz")
    np.testing.assert_array_equal(a["sample_index"], np.arange(30))
    np.testing.assert_array_equal(results.sampled(a, old["labels"]), old["labels"])


# --- figures ---------------------------------------------------------------------------------------------------------
def _dcss_like(seed):
    """DCSS's history: two logged phases (no 'cluster' key), a float entry, the similarity switch."""
    return {"paper": "dcss", "dataset": "usps", "profile": "quick", "seed": seed, "overrides": {},
            "baseline_metrics": {"kmeans_on_pretrained_embedding": {"acc": 0.60, "nmi": 0.50}},
            "history": {"pretrain": {"loss": [1.0]}, "phase1": {"eval": [{"step": 10, "acc": 0.61, "nmi": 0.52,
                                                                          "loss": 900.0}]},
                        "phase2": {"steps_per_epoch": 2, "similarity_space": ["u", "u", "q", "q"],
                                   "eval": [{"step": 2 * (i + 1), "acc": 0.62 + 0.01 * i, "nmi": 0.55, "loss": 5.0 - i}
                                            for i in range(4)]},
                        "seconds": 12.0}}


def test_training_curve_starts_at_kmeans_and_chains_phases():
    c = plots.training_curve(_dcss_like(0))
    assert c["step"] == [0, 10, 12, 14, 16, 18] and c["acc"][0] == 0.60
    assert c["loss_step"] == [12, 14, 16, 18]  # only the last phase's objective
    assert (10, "phase1 → phase2") in c["marks"] and (14, "similarities from q (Eq. 5)") in c["marks"]
    dekm_like = {"seed": 0, "baseline_metrics": {"kmeans_on_pretrained_embedding": {"acc": 0.7, "nmi": 0.6}},
                 "history": {"cluster": {"eval": [{"step": 0, "acc": 0.7, "nmi": 0.6},
                                                  {"step": 40, "acc": 0.8, "nmi": 0.7, "loss": 0.3}]}}}
    assert plots.training_curve(dekm_like)["step"] == [0, 40]  # the log's own step 0, not twice


def test_curves_figure_draws_every_phase_with_one_colour_per_seed():
    fig = plots.curves_figure([_dcss_like(0), _dcss_like(1)])
    axes = [ax for ax in fig.axes if ax.get_ylabel()]
    assert [ax.get_ylabel().split()[0] for ax in axes] == ["ACC", "NMI", "clustering"]  # no cluster-count panel
    for ax in axes:
        lines = [line for line in ax.get_lines() if len(line.get_xdata()) > 1 and line.get_color() != "0.5"]
        assert {line.get_color() for line in lines} == {"C0", "C1"}  # the regression: DCSS axes were empty
        assert any(line.get_color() == "0.5" for line in ax.get_lines())  # phase boundary marked
    acc_ax = axes[0]
    assert any(list(line.get_xdata()) == [0] and line.get_ydata()[0] == 0.60 for line in acc_ax.get_lines())
    lo, hi = acc_ax.get_ylim()
    assert lo > 0.5 and hi < 0.7  # scaled to the data, not [0, 1]
    assert fig.legends and "seed 1" in [t.get_text() for t in fig.legends[0].get_texts()]


def test_a_short_phase_after_a_long_one_is_widened_on_the_step_axis():
    """DCSS's paper profile: 38,000 phase-1 steps, then 380 of phase 2, which a linear axis squeezes into 1%."""
    long = _dcss_like(0)
    long["history"]["phase1"]["eval"] = [{"step": 1000, "acc": 0.61, "nmi": 0.52, "loss": 900.0}]
    c = plots.training_curve(long)
    assert c["phase_ends"] == [1000, 1008]
    steps, positions = plots.phase_axis([c])
    np.testing.assert_allclose(steps, [0, 1000, 1008])
    np.testing.assert_allclose(positions, [0, 1000, 1250])  # phase 2 drawn a quarter as wide as phase 1
    forward = plots._piecewise(steps, positions)
    np.testing.assert_allclose(forward([500, 1004, 1016]), [500, 1125, 1500])  # beyond the end: same slope
    np.testing.assert_allclose(plots._piecewise(positions, steps)(forward([3.0, 1007.0])), [3.0, 1007.0])
    fig = plots.curves_figure([long])
    ax = fig.axes[0]
    assert ax.get_xscale() == "function" and list(ax.get_xticks()) == [0, 1000, 1008]
    assert any("not to scale" in t.get_text() for t in fig.legends[0].get_texts())
    assert plots.phase_axis([plots.training_curve(_dcss_like(0))]) is None  # 10 and 8 steps: linear, as before
    assert plots.curves_figure([_dcss_like(0)]).axes[0].get_xscale() == "linear"


def test_curves_figure_leaves_out_single_point_panels():
    run = {"seed": 0, "history": {"cluster": {"eval": [{"step": 500, "acc": 0.9, "nmi": 0.8, "loss": 0.1}]}},
           "baseline_metrics": {"kmeans_on_pretrained_embedding": {"acc": 0.85, "nmi": 0.8}}}
    fig = plots.curves_figure([run])
    assert [ax.get_ylabel().split()[0] for ax in fig.axes if ax.get_ylabel()] == ["ACC", "NMI"]  # loss: one point


def test_embedding_figure_refuses_misaligned_labels(tmp_path):
    with pytest.raises(ValueError, match="sampled"):
        plots.embedding_figure(np.zeros((5, 2)), np.zeros(9, int), None, tmp_path / "x.png")


# --- generated README blocks -----------------------------------------------------------------------------------------
def test_budget_rows_read_the_profiles():
    from papers import decs

    rows = report.budget_rows("decs")
    for key, value in decs.PROFILES["quick"].items():
        row = next(r for r in rows if r.startswith(f"| `{key}` |"))
        assert f"{value:,}" in row
    assert "(20 %)" in next(r for r in rows if r.startswith("| `ae_epochs` |"))  # 100 of the paper's 500


def test_metric_label_names_the_nmi():
    assert report.metric_label("nmi", "nmi_max") == "NMI (I/max H)" and report.metric_label("acc") == "ACC"


def test_update_readme_rewrites_only_the_generated_blocks(tmp_path, monkeypatch):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:start -->\nold\n<!-- results:end -->\nmiddle\n"
                      "<!-- budgets:start -->\nold\n<!-- budgets:end -->\nend\n")
    monkeypatch.setattr(report, "BLOCKS", {"results": lambda: ["R"], "budgets": lambda: ["B1", "B2"],
                                           "timings": lambda: ["T"]})
    assert report.update_readme(readme)  # names from the markers the page has (no timings markers: skipped)
    assert readme.read_text() == ("intro\n<!-- results:start -->\nR\n<!-- results:end -->\nmiddle\n"
                                  "<!-- budgets:start -->\nB1\nB2\n<!-- budgets:end -->\nend\n")
    assert not report.update_readme(readme)  # current: unchanged
    with pytest.raises(SystemExit, match="timings:start"):  # a block the page must hold but lost its markers
        report.update_readme(readme, names=("results", "timings"))


def test_notebook_profile_is_read_from_its_outputs(tmp_path):
    nb = {"cells": [{"cell_type": "markdown", "source": "x"},
                    {"cell_type": "code", "outputs": [{"output_type": "stream", "name": "stderr", "text": "noise\n"},
                                                      {"output_type": "stream", "name": "stdout",
                                                       "text": ["profile: quick | backend=tensorflow\n",
                                                                "code: commit 0123456789abcdef + uncommitted changes\n"]}]}]}
    (tmp_path / "n.ipynb").write_text(json.dumps(nb))
    assert report.notebook_profile(tmp_path / "n.ipynb") == ("quick", "0123456789abcdef", True)
    (tmp_path / "e.ipynb").write_text(json.dumps({"cells": []}))
    assert report.notebook_profile(tmp_path / "e.ipynb") == (None, None, None)


# --- shallow baselines (common.baselines) ------------------------------------------------------------------------
@pytest.mark.parametrize("paper, rows", [("decs", {"k-means", "GMM"}), ("dekm", {"K-means", "PCA+K-means"})])
def test_baselines_file(tmp_path, monkeypatch, paper, rows):
    from common import baselines, datasets

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    x = np.clip(rng.normal(size=(60, 4, 4, 1)) * 0.05 + y[:, None, None, None] / 3, 0, 1).astype("float32")
    monkeypatch.setattr(datasets, "load", lambda name: datasets.Dataset(x=x, y=y, n_clusters=3, name=name))
    baselines.write(paper, "usps", seeds=(0, 1), out=tmp_path)
    runs = results.load_runs(tmp_path / paper / "usps" / "baselines")
    assert [r["seed"] for r in runs] == [0, 1]
    for r in runs:
        assert set(r["extra_metrics"]) == rows and set(r["settings"]) == rows
        assert all(m["acc"] == 1.0 for m in r["extra_metrics"].values())  # three well-separated groups
        assert "commit" in r["git"] and r["data"]["shape"] == [60, 16]
        assert r["command"] == f"python -m common.baselines {paper} usps"
    assert report.ours(tmp_path / paper / "usps" / "baselines", "acc", f"extra_metrics/{sorted(rows)[0]}")[2] == 2


def test_run_figures_pairs_the_sampled_embedding_with_its_labels(tmp_path, monkeypatch):
    n = results.SAMPLE_SIZE + 300
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, n)
    embedding = np.eye(3, dtype="float32")[labels] + rng.normal(size=(n, 3)).astype("float32") * 0.01
    results.save_run_arrays(tmp_path / "seed0.npz", n, labels=labels, embedding=embedding,
                            centers=np.eye(3, dtype="float32"))
    seen = {}
    monkeypatch.setattr(plots, "embedding_figure", lambda z, lab, c, path, **kw: seen.update(z=z, labels=lab))
    run = {**_dcss_like(0), "paper": "decs"}
    plots.run_figures(tmp_path, [run])
    assert (tmp_path / "curves.png").is_file()
    assert len(seen["z"]) == len(seen["labels"]) == results.SAMPLE_SIZE
    np.testing.assert_array_equal(np.argmax(seen["z"], 1), seen["labels"])  # each point with its own label


def test_curves_figure_shows_cluster_counts_when_logged():
    run = {"seed": 2, "baseline_metrics": {"kmeans_on_pretrained_embedding": {"acc": 0.7, "nmi": 0.6,
                                                                              "nonempty_clusters": 10}},
           "history": {"cluster": {"eval": [{"step": s, "acc": 0.8, "nmi": 0.7, "loss": 1.0 / s, "nonempty_clusters": k}
                                            for s, k in ((500, 10), (1000, 9), (1500, 9))]}}}
    fig = plots.curves_figure([run])
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert labels[-1] == "non-empty clusters"
    counts = [line for line in fig.axes[3].get_lines() if line.get_color() == "C2" and len(line.get_xdata()) > 1][0]
    assert list(counts.get_xdata()) == [0, 500, 1000, 1500] and list(counts.get_ydata()) == [10, 10, 9, 9]


def test_git_state_dirty_only_for_code(tmp_path):
    """A result's dirty flag: modified tracked code under papers/ or common/ counts; result files do not."""
    import subprocess

    from common import setup

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "papers").mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "papers" / "x.py").write_text("a = 1\n")
    (tmp_path / "results" / "r.json").write_text("{}\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    clean = setup.git_state(tmp_path)
    assert len(clean["commit"]) == 40 and clean["dirty"] is False
    (tmp_path / "results" / "r.json").write_text('{"acc": 1}\n')
    assert setup.git_state(tmp_path)["dirty"] is False
    (tmp_path / "papers" / "x.py").write_text("a = 2\n")
    state = setup.git_state(tmp_path)
    assert state["dirty"] is True and state["dirty_files"] == ["papers/x.py"]


def test_row_settings_keep_other_paper_rows_and_drop_ablations(tmp_path):
    """A subfolder is a README row when its settings select another reported method (SAIP's HOMO), not when they
    only change a budget or a rate of the main method, nor when a setting beyond the method's own is added."""
    from papers import saip

    base = tmp_path / "saip" / "mnist-test" / "quick"
    main_cfg = {"variant": "HOE", "backbone": "mlp", "learning_rate": None}
    folders = {"": ({}, main_cfg), "variant=homo": ({"variant": "homo"}, {**main_cfg, "variant": "homo"}),
               "learning_rate=0.0001": ({"learning_rate": 1e-4}, {**main_cfg, "learning_rate": 1e-4}),
               "learning_rate=0.0001,variant=hot": ({"learning_rate": 1e-4, "variant": "hot"},
                                                    {**main_cfg, "learning_rate": 1e-4, "variant": "hot"}),
               "variant=unknown": ({"variant": "unknown"}, {**main_cfg, "variant": "unknown"}),
               "variant=hit": None}                                   # a folder without result files
    for name, spec in folders.items():
        (base / name).mkdir(parents=True, exist_ok=True)
        if spec:
            over, cfg = spec
            (base / name / "seed0.json").write_text(json.dumps({**_run(paper="saip"), "overrides": over, "config": cfg}))
    assert report.row_settings(saip, base) == [("variant=homo", "HOMO")]
    assert report.row_settings(saip, tmp_path / "missing") == []


def test_row_settings_read_the_folder_name_of_results_moved_after_a_default_changed(tmp_path):
    """R-DC's [0, 1] runs were made when [0, 1] was the default (their files record only phases=P1) and moved to
    phases=P1,pixel_range=01 when the default became [-1, 1]: an ablation of P1, not another P1 row of the table
    (reading only the recorded overrides would list it)."""
    from papers import rdc

    base = tmp_path / "rdc" / "fmnist" / "quick"
    main_cfg = {"phases": "P1P2", "autoencoder": "acai", "pixel_range": "pm1"}
    folders = {"": ({}, main_cfg), "phases=P1": ({"phases": "P1"}, {**main_cfg, "phases": "P1"}),
               "phases=P1,pixel_range=01": ({"phases": "P1"}, {"phases": "P1", "autoencoder": "acai"})}
    for name, (over, cfg) in folders.items():
        (base / name).mkdir(parents=True, exist_ok=True)
        (base / name / "seed0.json").write_text(json.dumps({**_run(paper="rdc"), "overrides": over, "config": cfg}))
    assert report.row_settings(rdc, base) == [("phases=P1", "P1")]


def test_timing_rows_give_each_seed_its_own_load(tmp_path):
    """The load column lists one note per seed in the order of the wall times (a sorted set of notes paired the
    walls with other seeds' loads)."""
    folder = tmp_path / "decs" / "usps" / "paper"
    folder.mkdir(parents=True)
    for seed, wall, load in ((0, 5205.0, 3.5), (1, 1507.0, 1.0), (2, 1468.0, 2.4)):
        (folder / f"seed{seed}.json").write_text(json.dumps(_run(
            seed, profile="paper", wall_seconds=wall, load_average={"start": [load], "end": [load]})))
    row = next(r for r in report.timing_rows(tmp_path) if r.startswith("| decs | usps (paper) |"))
    assert "| 5205, 1507, 1468 | 3 |" in row
    assert row.endswith("| load 3.5 → 3.5; load 1.0 → 1.0; load 2.4 → 2.4 |")
    assert "resumed" not in row
    for seed in (0, 1, 2):  # the same note for every seed: said once
        (folder / f"seed{seed}.json").write_text(json.dumps(_run(seed, profile="paper", wall_seconds=100.0)))
    row = next(r for r in report.timing_rows(tmp_path) if r.startswith("| decs | usps (paper) |"))
    assert row.endswith("| load not recorded (every seed) |")


def test_timing_rows_mark_a_resumed_run(tmp_path):
    """A run resumed from a checkpoint records the last sitting's wall time only: the table says so."""
    folder = tmp_path / "dcss" / "usps" / "paper"
    folder.mkdir(parents=True)
    history = {"pretrain": {"resumed_at": []}, "phase1": {"resumed_at": [57]}, "seconds": 10.0}
    (folder / "seed0.json").write_text(json.dumps(_run(0, paper="dcss", profile="paper", wall_seconds=3600.0,
                                                       history=history)))
    assert report.resumed(json.loads((folder / "seed0.json").read_text()))
    assert not report.resumed(_run(history={"pretrain": {"resumed_at": []}}))
    row = next(r for r in report.timing_rows(tmp_path) if r.startswith("| dcss | usps (paper) |"))
    assert "| 3600 (resumed: last sitting only) | 1 |" in row
    sittings = [{"started": "a", "seconds": 5000.0}, {"started": "b", "seconds": 3600.0}]
    (folder / "seed0.json").write_text(json.dumps(_run(0, paper="dcss", profile="paper", wall_seconds=3600.0,
                                                       history=history, sittings=sittings,
                                                       wall_seconds_all_sittings=8600.0)))
    row = next(r for r in report.timing_rows(tmp_path) if r.startswith("| dcss | usps (paper) |"))
    assert "| 8600 (2 sittings) | 1 |" in row


def test_load_note_gives_the_cores_a_run_kept_busy():
    """CPU / wall over all sittings (common.cli.Sittings): a run paused half its time on 2 cores shows 1.0 of 2."""
    env = {"cpu": {"cores": 2}}
    one = _run(0, wall_seconds=1000.0, cpu_seconds=1000.0, environment=env, load_average={"start": [2.0], "end": [2.2]})
    assert report.load_note(one) == "load 2.0 → 2.2, 1.0 of 2 cores busy"
    two = _run(0, wall_seconds=100.0, cpu_seconds=100.0, environment=env,
               sittings=[{"seconds": 900.0, "cpu_seconds": 1710.0}, {"seconds": 100.0, "cpu_seconds": 100.0}],
               wall_seconds_all_sittings=1000.0, cpu_seconds_all_sittings=1810.0)
    assert report.cores_busy(two) == pytest.approx(1.81)  # all sittings, not the last one's 1.0
    two["cpu_seconds_all_sittings"] = 1500.0
    assert report.load_note(two).endswith(", 1.5 of 2 cores busy")
    old = _run(0, wall_seconds=100.0)  # made before CPU time was recorded
    assert report.cores_busy(old) is None and "cores busy" not in report.load_note(old)
    # resumed from a sitting of older code: its CPU time is unknown, so no ratio (not the last sitting's CPU over all)
    mixed = _run(0, wall_seconds=100.0, cpu_seconds=190.0, environment=env,
                 sittings=[{"seconds": 900.0}, {"seconds": 100.0, "cpu_seconds": 190.0}], wall_seconds_all_sittings=1000.0)
    assert report.cores_busy(mixed) is None


def test_merge_tables_adds_each_tables_data_sets_to_the_method():
    t3 = {"A": {"mnist": {"acc": 0.9}}, "B": {"mnist": {"acc": 0.8}}}
    t4 = {"A": {"cifar10": {"acc": 0.5}}, "C": {"cifar10": {"acc": 0.4}}}
    fix = {"A": {"mnist": {"acc": 0.91}}}
    assert results.merge_tables(t3, t4, fix) == {"A": {"mnist": {"acc": 0.91}, "cifar10": {"acc": 0.5}},
                                                "B": {"mnist": {"acc": 0.8}}, "C": {"cifar10": {"acc": 0.4}}}
    assert t3["A"] == {"mnist": {"acc": 0.9}}  # the inputs are left as they were


# --- the README's status and compact results, the ± rule, the verdict ----------------------------------------------
def test_cell_prints_a_spread_only_over_two_or_more_seeds():
    assert report.cell((0.5, 0.0, 1)) == "0.500"  # one seed: no "± 0.000"
    assert report.cell((0.5, 0.0, 2)) == "0.500 ± 0.000"  # two seeds that agree: a spread of 0, said
    assert report.cell((0.81234, 0.0456, 3)) == "0.812 ± 0.046" and report.cell(None) == "—"
    assert report.cell(results.mean_std([{"metrics": {"acc": 0.7}}], "acc")) == "0.700"


@pytest.mark.parametrize("ours, paper, want", [(0.990, 0.980, "✓"), (0.972, 0.992, "✓"), (0.971, 0.992, "~"),
                                               (0.942, 0.992, "~"), (0.941, 0.992, "✗"), (0.170, 0.822, "✗")])
def test_verdict_is_within_2_points_then_within_5(ours, paper, want):
    assert report.verdict(ours, paper) == want  # 0.972 vs 0.992 is exactly 2 points (float: 2.0000000000000018)


def _cpu_run(seed, acc, wall, device="cpu:2 cores", **extra):
    return _run(seed, profile="paper", metrics={"acc": acc, "nmi": acc - 0.1, "ari": acc - 0.2,
                                                "nonempty_clusters": 10},
                cluster_sizes=[5] * 10, wall_seconds=wall, environment={"device": device}, **extra)


def test_status_rows_verdict_time_and_runs_not_made(tmp_path):
    folder = tmp_path / "decs" / "usps" / "paper"
    folder.mkdir(parents=True)
    runs = [_cpu_run(0, 0.970, 100.0), _cpu_run(1, 0.974, 3000.0), _cpu_run(2, 0.972, 500.0, sittings=[{}, {}],
                                                                            wall_seconds_all_sittings=1500.0),
            _cpu_run(3, 0.972, 10.0, device="gpu:0 NVIDIA H100")]  # not a CPU time
    for r in runs:
        (folder / f"seed{r['seed']}.json").write_text(json.dumps(r))
    (tmp_path / "cpu_estimates.json").write_text(json.dumps({"estimates": [
        {"paper": "decs", "dataset": "mnist", "hours": 28.1, "stages_hours": {"pretrain": 27.4, "clustering": 0.7}},
        {"paper": "saip", "dataset": "mnist", "hours": 9.1, "stages_hours": {"clustering (at most)": 8.3}}]}))
    rows = report.status_rows(tmp_path)
    assert rows[:2] == report.STATUS_HEADER
    usps = next(r for r in rows if r.startswith("| decs | usps |"))
    # mean ACC 0.972: 2 points below the paper's 0.992; the median of the CPU walls of the runs made in one sitting,
    # 100 and 3000 (the resumed run's 1500 over two sittings left out: verdict.median_wall)
    assert usps == ("| decs | usps | 0.972 / 0.992 | 0.872 / 0.976 | 4 | ✓ | `./reproduce.sh decs usps` | 26 min |")
    assert next(r for r in rows if r.startswith("| decs | mnist |")).endswith(
        "| — | not run | `./reproduce.sh decs mnist` | ≈ 28 h (estimate) |")
    assert next(r for r in rows if r.startswith("| saip | mnist |")).endswith("| ≤ 9.1 h (estimate) |")
    assert next(r for r in rows if r.startswith("| decs | fmnist |")).endswith("| not run | `./reproduce.sh decs fmnist` | — |")
    dcss = next(r for r in rows if r.startswith("| dcss | usps |"))
    assert dcss.startswith("| dcss | usps | — / 0.872 | — / 0.861 |")  # DCSS: the paper's own NMI column
    assert len(rows) == 2 + sum(len(__import__(f"papers.{p}", fromlist=["x"]).DATASETS)
                                for p in report.documented_papers())


def test_results_rows_one_row_per_folder_with_marks_and_empty_clusters(tmp_path):
    today = {"commit": "c" * 40, "dirty": False, "code_fingerprint": report.code_version("decs")}
    paper = tmp_path / "decs" / "usps" / "paper"
    quick = tmp_path / "decs" / "usps" / "quick"
    paper.mkdir(parents=True)
    quick.mkdir(parents=True)
    for seed, acc, nonempty in ((0, 0.9, 10), (1, 0.8, 8)):
        run = {**_cpu_run(seed, acc, 10.0, git=today), "config": {}}
        run["metrics"]["nonempty_clusters"] = nonempty
        (paper / f"seed{seed}.json").write_text(json.dumps(run))
    from papers import decs

    one = {**_run(0, git=today, config={**decs.PROFILES["quick"], "ae_epochs": 1}), "cluster_sizes": [3, 3],
           "metrics": {"acc": 0.5, "nmi": 0.4, "ari": 0.3, "nonempty_clusters": 2}}
    (quick / "seed0.json").write_text(json.dumps(one))
    rows = report.results_rows(tmp_path)
    assert rows[:2] == report.RESULTS_HEADER and len(rows) == 4
    assert rows[2] == ("| decs | DECS | usps | quick | 1‡ | 0.500 | 0.400 | 0.300 | 0.992 / 0.976 | none |")
    assert rows[3] == ("| decs | DECS | usps | paper | 2 | 0.850 ± 0.050 | 0.750 ± 0.050 | 0.650 ± 0.050 | "
                       "0.992 / 0.976 | 0, 2 of 10 |")
    (paper / "seed2.json").write_text(json.dumps({**_cpu_run(2, 0.85, 10.0), "config": {}}))  # no commit
    assert "| 3† |" in report.results_rows(tmp_path)[3]


def test_estimates_block_reads_the_estimates_file(tmp_path):
    assert "no estimates" in report.estimates_block(tmp_path)[0]
    e = {"paper": "decs", "dataset": "usps", "hours": 1.4, "stages_hours": {"pretrain": 1.2, "clustering": 0.2},
         "observed_hours": {}, "measured_in": "results/x.json", "measured_on": "usps", "scaled": False,
         "source_load_average": None}
    (tmp_path / "cpu_estimates.json").write_text(json.dumps({"estimates": [e]}))
    assert report.estimates_block(tmp_path)[2] == ("| decs | usps | 1.4 | pretrain 1.2, clustering 0.2 | "
                                                   "`results/x.json` (load unknown) |")
    e["source_conv_rate"] = 314.4   # a benchmark records the conv rate it was measured at: shown, not the load
    (tmp_path / "cpu_estimates.json").write_text(json.dumps({"estimates": [e]}))
    assert report.estimates_block(tmp_path)[2].endswith("(benchmark at a conv rate of 314 GFLOP/s) |")


# --- the committed README and docs/ --------------------------------------------------------------------------------
PAGES = [report.ROOT / "README.md", *sorted((report.ROOT / "docs").glob("*.md"))]


def test_readme_fits_on_two_screens():
    assert (report.ROOT / "README.md").stat().st_size <= 12288


def test_ci_command_block_is_the_last_line_of_ci_run(tmp_path):
    (tmp_path / ".ci").mkdir()
    (tmp_path / ".ci" / "run").write_text("#!/bin/sh\nexport A=1\n# the README's test command:\nmake test --x\n\n")
    assert report.ci_command(tmp_path) == ["```bash", "make test --x", "```"]


def test_readme_test_command_is_the_one_ci_runs():
    ci = [line for line in (report.ROOT / ".ci" / "run").read_text().splitlines() if line.strip()]
    assert ci[-1] in (report.ROOT / "README.md").read_text().splitlines()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_pages_name_no_path_of_the_development_machine(page):
    text = page.read_text()
    assert not [bad for bad in ("../shared", "/work/", "/root") if bad in text]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_pages_link_to_files_that_exist(page):
    import re

    links = [t for t in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()) if "://" not in t]
    assert links and not [t for t in links if not (page.parent / t).exists()]


def test_readme_links_every_docs_page():
    readme = (report.ROOT / "README.md").read_text()
    docs = sorted(p.name for p in (report.ROOT / "docs").glob("*.md"))
    assert docs and not [d for d in docs if f"docs/{d}" not in readme and d not in
                         "".join(p.read_text() for p in (report.ROOT / "docs").glob("*.md") if p.name != d)]
    assert set(report.PAGES) <= {"README.md"} | {f"docs/{d}" for d in docs}


def test_generated_blocks_are_current():
    """python -m common.report on the committed files changes nothing (run it after a new result or code change)."""
    assert report.stale_pages() == []


def test_provenance_current_when_the_runs_fingerprint_and_settings_were_verified(tmp_path, monkeypatch):
    """verified_settings[fingerprint][hash of settings and data set] makes a result of older code current; another
    option, another fingerprint or another data set stays older; the budget is not part of the settings."""
    import dataclasses

    from common import cli, golden
    from papers import decs

    monkeypatch.setattr(golden, "GOLDEN_DIR", tmp_path)
    cfg = lambda profile, **over: dataclasses.asdict(cli.make_config(decs, profile, over)[0])  # noqa: E731
    h = golden.settings_hash(golden.result_settings(decs, cfg("quick")), "usps")
    (tmp_path / "decs.json").write_text(json.dumps({"paper": "decs", "fingerprints": [report.code_version("decs")],
                                                    "outputs": {}, "verified_settings": {"oldfp": {h: {
                                                        "verdicts": {"a" * 40: "identical"}}}}}))

    def run(fp="oldfp", dataset="usps", profile="quick", **over):
        return {**_run(), "dataset": dataset, "profile": profile, "config": cfg(profile, **over),
                "git": {"commit": "a" * 40, "dirty": False, "code_fingerprint": fp}}

    assert report.provenance_issue(run()) is None
    assert report.provenance_issue(run(profile="paper")) is None                    # another budget, same settings
    assert report.provenance_issue(run(log_every=250)) is None                      # a budget key, overridden
    assert "older code (aaaaaaa)" in report.provenance_issue(run(variant="code"))   # its settings not verified
    assert "older code" in report.provenance_issue(run(fp="otherfp"))              # another code's verification
    assert "older code" in report.provenance_issue(run(dataset="mnist"))           # per-data-set values differ
    assert "older code" in report.provenance_issue({**run(), "config": None})


def test_a_job_on_every_core_is_not_a_shared_cpu(tmp_path):
    """A 2-thread job keeps the load near 2 by itself: up to its threads + 0.5 the CPU counts as its own."""
    def run(load, cores=None, device="cpu:2 cores"):
        env = {"device": device, **({"cpu": {"cores": cores}} if cores else {})}
        return _run(profile="paper", wall_seconds=1500.0, environment=env,
                    load_average={"start": [1.0, 1.0, 1.0], "end": [load, 1.0, 1.0]})

    assert report.shared_cpu(run(2.3)) is False and report.shared_cpu(run(2.6)) is True   # cores from the device
    assert report.shared_cpu(run(4.2, cores=4, device="cpu:4 cores")) is False
    assert report.shared_cpu(run(2.6, cores=2, device="gpu:x")) is True
    assert report.shared_cpu(_run()) is None and report.shared_cpu(run(2.0, device="gpu:x")) is None
    folder = tmp_path / "decs" / "usps" / "paper"
    folder.mkdir(parents=True)
    (folder / "seed0.json").write_text(json.dumps(run(2.3)))
    assert "measured on a quiet machine" in report.main_command_line(tmp_path)
    (folder / "seed0.json").write_text(json.dumps(run(2.6)))
    assert "measured while other jobs shared the CPU" in report.main_command_line(tmp_path)


# --- docs/ablations.md: every settings folder no other table shows -------------------------------------------------
def _saip_folders(base, today):
    """SAIP on mnist-test (quick): main runs, a paper row (variant=homo), two ablations, a folder without result
    files; returns {folder name: [runs]}."""
    main_cfg = {"variant": "HOE", "backbone": "mlp", "learning_rate": None}

    def run(seed, over, acc, nmi, ari, pp, nonempty=10, start=None):
        r = {**_run(seed, paper="saip", git=today), "dataset": "mnist-test", "overrides": over,
             "config": {**main_cfg, **over}, "cluster_sizes": [7] * 10,
             "metrics": {"acc": acc, "nmi": nmi, "nmi_max": 0.99, "ari": ari, "pairwise_precision": pp,
                         "nonempty_clusters": nonempty, "smallest_cluster": 7}}
        if start is not None:
            r["baseline_metrics"] = {"kmeans_on_pretrained_embedding": {"acc": start}}
        return r

    folders = {"": [run(0, {}, 0.9, 0.9, 0.9, 0.9)],
               "variant=homo": [run(0, {"variant": "homo"}, 0.8, 0.8, 0.8, 0.8)],
               # seed 1 has no k-means start; seed 0 has; metrics differ per key so a swapped column shows
               "learning_rate=0.0001": [run(0, {"learning_rate": 0.0001}, 0.2, 0.5, 0.1, 0.60, start=0.7),
                                        run(1, {"learning_rate": 0.0001}, 0.4, 0.5, 0.3, 0.64, nonempty=9)],
               "variant=unknown": [run(2, {"variant": "unknown"}, 0.25, 0.35, 0.15, 0.45, start=0.55)],
               "variant=hit": []}
    for name, runs in folders.items():
        (base / name).mkdir(parents=True, exist_ok=True)
        for r in runs:
            (base / name / f"seed{r['seed']}.json").write_text(json.dumps(r))
    return folders


def test_ablation_rows_list_the_other_settings_with_mean_and_population_std(tmp_path):
    """One row per settings folder that is neither the main runs nor a paper row; the paper's METRICS in its order
    (SAIP: pairwise precision too), mean ± population std over the seeds present, the k-means start over the seeds
    that record it (said), the non-empty clusters per seed and the notes."""
    today = {"commit": "c" * 40, "dirty": False, "code_fingerprint": report.code_version("saip")}
    _saip_folders(tmp_path / "saip" / "mnist-test" / "quick", today)
    rows = report.ablation_rows(tmp_path)
    assert rows[:3] == ["## saip", "", "| data set (profile) | `--set` | seeds | ACC | NMI (2I/(H+H)) | ARI | "
                        "PAIRWISE_PRECISION | k-means start ACC | non-empty clusters per seed | notes |"]
    body = [r for r in rows[4:] if r]
    # ACC 0.2, 0.4: mean 0.3, population std 0.1 (the sample std would be 0.141); NMI 0.5 twice: ± 0.000
    assert body == [
        "| mnist-test (quick) | `learning_rate=0.0001` | 0, 1 | 0.300 ± 0.100 | 0.500 ± 0.000 | 0.200 ± 0.100 | "
        "0.620 ± 0.020 | 0.700 (1 of 2 seeds) | 10, 9 of 10 | 1/2 seeds left clusters empty: 1 of 10 |",
        "| mnist-test (quick) | `variant=unknown` | 2 | 0.250 | 0.350 | 0.150 | 0.450 | 0.550 | 10 of 10 |  |"]


def test_ablation_rows_and_the_results_table_split_the_folders_between_them(tmp_path):
    """Every folder with result files is in exactly one of README's results table (main runs, paper rows) and the
    ablations page; a folder without result files, a smoke run and a paper without folders are in neither."""
    import re

    today = {"commit": "c" * 40, "dirty": False, "code_fingerprint": report.code_version("saip")}
    base = tmp_path / "saip" / "mnist-test" / "quick"
    folders = _saip_folders(base, today)
    smoke = tmp_path / "saip" / "mnist-test" / "smoke" / "learning_rate=0.001"
    smoke.mkdir(parents=True)
    (smoke / "seed0.json").write_text((base / "learning_rate=0.0001" / "seed0.json").read_text())
    ablations = [re.search(r"\| `([^`]*)` \|", r).group(1) for r in report.ablation_rows(tmp_path)
                 if r.startswith("| mnist-test")]
    table = [(re.search(r"`([^`]*)`", r) or [None, ""])[1] for r in report.results_rows(tmp_path)[2:]]
    assert sorted(ablations + table) == sorted(name for name, runs in folders.items() if runs)
    assert not set(ablations) & set(table) and "learning_rate=0.001" not in ablations
    assert report.ablation_rows(tmp_path / "none") == ["(no ablation folders yet)"]


def test_ablation_rows_use_the_papers_nmi_and_flag_settings_the_files_do_not_record(tmp_path):
    """DCSS's NMI column is its I/max(H) (nmi_max), not 2I/(H+H); a folder whose result files record other --set
    options than its name (results moved there after a default changed) says so."""
    folder = tmp_path / "dcss" / "usps" / "paper" / "zeta=0.5"
    folder.mkdir(parents=True)
    today = {"commit": "c" * 40, "dirty": False, "code_fingerprint": report.code_version("dcss")}
    run = {**_run(0, paper="dcss", git=today), "profile": "paper", "overrides": {},
           "metrics": {"acc": 0.6, "nmi": 0.9, "nmi_max": 0.7, "ari": 0.5}}
    (folder / "seed0.json").write_text(json.dumps(run))
    rows = report.ablation_rows(tmp_path)
    assert rows[0] == "## dcss" and "| NMI (I/max H) |" in rows[2]
    assert rows[4] == ("| usps (paper) | `zeta=0.5` | 0 | 0.600 | 0.700 | 0.500 | — | — | "
                       "the result files record no `--set` |")
    assert report.recorded_settings("zeta=0.5", [{**run, "overrides": {"zeta": 0.5}}]) == ""
    assert report.recorded_settings("a=1,b=x", [{"overrides": {"b": "x", "a": 1}}]) == ""  # sorted, as cli names it


def test_the_ablations_page_is_generated():
    assert report.PAGES["docs/ablations.md"] == ("ablations",)
    text = (report.ROOT / "docs" / "ablations.md").read_text()
    assert "<!-- ablations:start -->" in text and "`--set`" in text


def test_cpu_estimate_scales_by_samples_pixels_and_dcss_phase1_by_k():
    """A DCSS estimate for 2MNIST from a USPS benchmark: per-epoch work x (samples x pixels), and phase 1 (k optimiser
    steps per batch) x k too; a DECS estimate from MNIST's test split: samples only (same 28x28 images)."""
    from benchmarks import cpu_estimates as ce

    usps = ce.estimate("dcss", "usps", "results/dcss/usps/benchmark_tensorflow_cpu.json", "usps")
    two = ce.estimate("dcss", "2mnist", "results/dcss/usps/benchmark_tensorflow_cpu.json", "usps")
    scale = (140000 * 784) / (9298 * 256)
    assert two["stages_hours"]["pretrain"] == pytest.approx(usps["stages_hours"]["pretrain"] * scale)
    assert two["stages_hours"]["phase 1"] == pytest.approx(usps["stages_hours"]["phase 1"] * scale * 2)
    src = "results/decs/mnist-test/paper/seed1.json"
    if not (ROOT / src).is_file():
        pytest.skip(f"{src} not committed")
    mt, fm = ce.estimate("decs", "mnist-test", src, "mnist-test"), ce.estimate("decs", "fmnist", src, "mnist-test")
    assert fm["stages_hours"]["pretrain"] == pytest.approx(7 * mt["stages_hours"]["pretrain"])
    assert fm["stages_hours"]["clustering"] == pytest.approx(mt["stages_hours"]["clustering"])  # same batches
