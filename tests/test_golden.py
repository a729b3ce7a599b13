"""Golden runs (common.golden): today's code reproduces the committed outputs, and results stay current only while
the code that made them gave today's golden outputs."""
import copy
import json

import pytest

from common import golden, registry, report

PAPERS = list(golden.CASES)


@pytest.mark.parametrize("paper", PAPERS)
def test_todays_code_is_listed_in_the_golden_file(paper):
    """A code change without `python -m common.golden update <paper>` in the same commit fails here."""
    saved = golden.load(paper)
    assert saved is not None, f"no tests/golden/{paper}.json"
    fp = registry.code_version(registry.load_paper(paper))
    assert fp in saved["fingerprints"], (
        f"{paper}: today's code ({fp}) is not listed in tests/golden/{paper}.json: run `python -m common.golden update "
        f"{paper}`; it keeps the listed results current only if the golden outputs are unchanged")


@pytest.mark.parametrize("paper", PAPERS)
def test_golden_outputs_are_reproduced(paper):
    saved = golden.load(paper)
    if golden.signature() not in saved["outputs"]:
        pytest.skip(f"no golden outputs recorded for this machine ({golden.signature()}); recorded: "
                    f"{', '.join(saved['outputs'])}. `python -m common.golden update {paper}` on a clean tree adds them")
    verdicts, _ = golden.check(paper)
    changed = [f"{name}: {v}" for name, v in verdicts if v.startswith("changed")]
    assert not changed, f"{paper}: golden outputs changed ({'; '.join(changed)}): if intended, run " \
                        f"`python -m common.golden update {paper}` and say which results it marks as older"


def _case():
    return {"labels": [0, 1, 1], "extra_labels": {}, "losses": {"pretrain.loss": [1.0, 0.5]},
            "embedding_sha": "a", "centers_sha": "b", "embedding_head": [0.25, -1.5], "backend": "tensorflow"}


def test_compare_identical_tolerance_and_changed():
    old = _case()
    assert golden.compare(old, copy.deepcopy(old)) == "identical"
    near = copy.deepcopy(old)
    near["losses"]["pretrain.loss"][1] *= 1 + 2e-6      # reordered float sums: below rtol 1e-5
    near["embedding_head"][0] *= 1 + 2e-6
    near["embedding_sha"] = "c"
    assert golden.compare(old, near) == "within tolerance"
    far = copy.deepcopy(old)
    far["losses"]["pretrain.loss"][1] *= 1 + 1e-4        # a real change of the numerics
    assert golden.compare(old, far).startswith("changed: loss")
    flipped = copy.deepcopy(old)
    flipped["labels"][0] = 1
    assert golden.compare(old, flipped) == "changed: labels differ"
    other_extra = copy.deepcopy(old)                   # a method's second label set (e.g. SAIP's P2) counts too
    other_extra["extra_labels"] = {"P2": [1, 1, 0]}
    assert golden.compare({**old, "extra_labels": {"P2": [1, 1, 1]}}, other_extra) == "changed: labels differ"
    fewer = copy.deepcopy(old)
    fewer["losses"]["pretrain.loss"] = [1.0]
    assert golden.compare(old, fewer).startswith("changed")


def test_loss_curves_collects_nested_losses_only():
    history = {"pretrain": {"loss": [1.0, 0.5], "seconds": 3.0, "epoch_seconds": [1.0, 2.0]},
               "cluster": {"loss": [0.2], "eval": [{"acc": 0.5, "loss": 0.3}, {"acc": 0.6, "loss": 0.25}]},
               "phase1": {"logs": [{"loss_ae": 2.0, "rec": 1.0}, {"loss_ae": 1.5, "rec": 0.9}]},
               "critic_loss": [0.1, 0.05], "tau": [0.9]}
    assert golden.loss_curves(history) == {"pretrain.loss": [1.0, 0.5], "cluster.loss": [0.2],
                                           "cluster.eval[].loss": [0.3, 0.25], "phase1.logs[].loss_ae": [2.0, 1.5],
                                           "critic_loss": [0.1, 0.05]}


def _run(paper, fp):
    return {"paper": paper, "git": {"commit": "0123456789", "dirty": False, "code_fingerprint": fp}}


def test_a_result_is_current_while_its_codes_golden_outputs_are_todays(monkeypatch):
    paper = "decs"
    today = report.code_version(paper)
    monkeypatch.setattr(golden, "current_fingerprints", lambda p: [today, "refactored0"] if p == paper else [])
    assert report.provenance_issue(_run(paper, today)) is None
    assert report.provenance_issue(_run(paper, "refactored0")) is None          # same golden outputs: current
    assert "older code" in report.provenance_issue(_run(paper, "changedmath0"))  # not listed: older
    assert "uncommitted" in report.provenance_issue({**_run(paper, today), "git": {**_run(paper, today)["git"],
                                                                                   "dirty": True}})


class _GoldenFile:
    """A golden file of ``paper`` under tmp_path: ``golden.run_paper`` returns (a copy of) ``outs`` and the code's
    fingerprint is ``fp``; ``update(fp)`` sets the fingerprint and runs golden.update."""
    paper = "decs"

    def __init__(self, tmp_path, monkeypatch):
        monkeypatch.setattr(golden, "GOLDEN_DIR", tmp_path)
        self.path = tmp_path / f"{self.paper}.json"
        self.outs = {"default": _case()}
        self.fp = "fp_one"
        monkeypatch.setattr(golden, "run_paper", lambda p, verbose=True: copy.deepcopy(self.outs))
        monkeypatch.setattr(registry, "code_version", lambda module: self.fp)

    def update(self, fp, **kwargs):
        self.fp = fp
        return golden.update(self.paper, **kwargs)

    def saved(self):
        return golden.load(self.paper)


@pytest.fixture
def golden_file(tmp_path, monkeypatch):
    return _GoldenFile(tmp_path, monkeypatch)


def test_update_keeps_outputs_and_adds_the_fingerprint_only_when_outputs_match(golden_file):
    sig = golden.signature()
    assert "recorded" in golden_file.update("fp_one")
    assert "kept" in golden_file.update("fp_two")                               # a pure refactor
    saved = golden_file.saved()
    assert saved["fingerprints"] == ["fp_one", "fp_two"] and saved["outputs"][sig] == golden_file.outs
    golden_file.outs["default"]["losses"]["pretrain.loss"][0] = 2.0              # the maths changed
    assert "CHANGED" in golden_file.update("fp_three")
    assert golden_file.saved()["fingerprints"] == ["fp_three"]


def test_update_refuses_to_list_unverified_code_on_a_machine_without_a_recording(tmp_path, monkeypatch):
    paper = "decs"
    monkeypatch.setattr(golden, "GOLDEN_DIR", tmp_path)
    (tmp_path / f"{paper}.json").write_text(json.dumps(
        {"paper": paper, "fingerprints": ["fp_one"], "outputs": {"other-cpu/2cores/tensorflow-0": {"default": _case()}}}))
    monkeypatch.setattr(golden, "run_paper", lambda p, verbose=True: {"default": _case()})
    monkeypatch.setattr(registry, "code_version", lambda module: "fp_new")
    assert "cannot be verified" in golden.update(paper)
    assert json.loads((tmp_path / f"{paper}.json").read_text())["fingerprints"] == ["fp_one"]


def test_update_records_a_new_case_beside_the_kept_ones(golden_file):
    golden_file.update("fp_one")
    golden_file.outs["new_option"] = {**_case(), "labels": [2, 2, 0]}
    assert "kept" in golden_file.update("fp_two")                               # the option added: default unchanged
    saved = golden_file.saved()
    assert saved["fingerprints"] == ["fp_one", "fp_two"]
    assert set(saved["outputs"][golden.signature()]) == {"default", "new_option"}


def test_numerics_version_is_the_generation_of_listed_code_else_the_code(monkeypatch):
    """Cache keys: code listed in the golden file (its outputs are today's) maps to the first listed fingerprint, so
    a refactor keeps caches; unlisted code keys caches by its own fingerprint, so it never reuses them."""
    from common import golden, registry

    monkeypatch.setattr(golden, "current_fingerprints", lambda paper: ["gen0", "refactor1", "today"])
    monkeypatch.setattr(registry, "load_paper", lambda name: name)
    monkeypatch.setattr(registry, "code_version", lambda module: "today")
    assert golden.numerics_version("rdc") == "gen0"
    monkeypatch.setattr(registry, "code_version", lambda module: "edited")
    assert golden.numerics_version("rdc") == "edited"


# --- verified settings (verify-results) ------------------------------------------------------------------------
def _config(paper, profile="quick", **over):
    import dataclasses

    from common import cli

    return dataclasses.asdict(cli.make_config(registry.load_paper(paper), profile, over)[0])


def test_result_settings_leave_out_every_profiles_budget_and_the_logging_keys():
    """Real R-DC config: the budget keys of any profile (log_every is set by smoke only, and a quick run's 1,000 must
    not override the smoke budget of the verification) and LOGGING_KEYS are not settings; options and the data set
    are."""
    import types

    rdc = registry.load_paper("rdc")
    quick = golden.result_settings(rdc, _config("rdc", "quick", pixel_range="01"))
    for key in ("pretrain_iters", "max_iters", "dec_max_iters", "log_every", "subset_per_class", "eval_every",
                "geometry_every"):                                    # budget keys and rdc.LOGGING_KEYS
        assert key not in quick
    assert quick["pixel_range"] == "01" and quick["alpha"] is None and "lid_threshold" in quick
    assert golden.result_settings(rdc, _config("rdc", "paper", pixel_range="01", max_iters=7)) == quick
    h = golden.settings_hash(quick, "fmnist")
    assert h != golden.settings_hash({**quick, "pixel_range": "pm1"}, "fmnist")
    assert h != golden.settings_hash(quick, "mnist")                      # per-data-set values differ by name
    fake = types.SimpleNamespace(PROFILES={"smoke": {"subset_per_class": 3, "epochs": 1}, "paper": {"iters": 9}},
                                 LOGGING_KEYS=("eval_every",))
    cfg = {"epochs": 5, "iters": 3, "eval_every": 2, "lr": 0.1}
    assert golden.result_settings(fake, cfg) == {"lr": 0.1}
    del fake.LOGGING_KEYS                                                   # not declared: kept
    assert golden.result_settings(fake, cfg) == {"eval_every": 2, "lr": 0.1}


def _write(path, run):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run))
    return path


def test_verify_results_runs_one_case_per_group_and_records_only_settings_that_match(tmp_path, monkeypatch, capsys):
    """Grouping by (commit, data set, settings) on real DECS configs; the runners are replaced: the commit's code
    gives today's outputs for the default settings and other labels for variant=code."""
    paper = "decs"
    today = registry.code_version(registry.load_paper(paper))
    monkeypatch.setattr(golden, "GOLDEN_DIR", tmp_path / "golden")
    monkeypatch.setattr(golden, "RESULTS_DIR", tmp_path / "results")
    (tmp_path / "golden").mkdir()
    golden.golden_path(paper).write_text(json.dumps({"paper": paper, "fingerprints": [today], "outputs": {}}))
    base = tmp_path / "results" / paper / "usps" / "quick"

    def result(seed, commit, fp="oldfp", dirty=False, **config):
        return {"paper": paper, "dataset": "usps", "profile": "quick", "seed": seed, "overrides": {},
                "config": config, "git": {"commit": commit * 40, "dirty": dirty, "code_fingerprint": fp}}

    default = _config(paper)
    del default["augment"]                              # a key the old Config lacked: today's default is used
    s0 = _write(base / "seed0.json", result(0, "a", **default))
    s1 = _write(base / "seed1.json", result(1, "a", **{**default, "ae_epochs": 7, "log_every": 50}))  # budget only
    code = _write(base / "variant=code" / "seed0.json", result(0, "a", **{**default, "variant": "code"}))
    c0 = _write(base / "c" / "seed0.json", result(0, "c", **default))           # same settings, another commit
    dirty = _write(base / "d" / "seed0.json", result(0, "b", dirty=True, **default))
    current = _write(base / "t" / "seed0.json", result(0, "e", fp=today, **default))
    _write(base / "figures" / "seed0.json", {"not": "a result"})                 # skipped by the default listing
    at_commit, todays = [], []

    def fake_at_commit(p, commit, cases):
        at_commit.append((commit, cases))
        outs = [{**_case(), "labels": [2, 2, 2]} if c["settings"]["variant"] == "code" else _case() for c in cases]
        return "oldfp", outs

    def fake_today(p, cases):
        todays.append(cases)
        return [_case() for _ in cases]

    monkeypatch.setattr(golden, "run_cases_at_commit", fake_at_commit)
    monkeypatch.setattr(golden, "run_cases", fake_today)
    groups = golden.verify_results(paper)
    assert sorted((commit, len(cases)) for commit, cases in at_commit) == [("a" * 40, 2), ("c" * 40, 1)]
    for _, cases in at_commit:
        for case in cases:
            assert case["dataset"] == "usps" and "augment" not in case["settings"]
            assert not {"ae_epochs", "cluster_iters", "log_every"} & set(case["settings"])
    assert len(todays) == 2                             # default settings run once for commits a and c
    by_files = {tuple(sorted(g["files"])): g for g in groups}
    assert set(by_files) == {(str(s0), str(s1)), (str(code),), (str(c0),)}
    assert by_files[(str(s0), str(s1))]["verdict"] == "identical"
    assert by_files[(str(code),)]["verdict"].startswith("changed: labels")
    assert by_files[(str(code),)]["diff"] == "variant=code, augment not recorded (today True)"
    assert by_files[(str(s0), str(s1))]["diff"] == "augment not recorded (today True)"
    saved = golden.load(paper)
    h = golden.settings_hash(golden.result_settings(registry.load_paper(paper), default), "usps")
    assert list(saved["verified_settings"]) == ["oldfp"] and list(saved["verified_settings"]["oldfp"]) == [h]
    assert saved["verified_settings"]["oldfp"][h]["verdicts"] == {"a" * 40: "identical", "c" * 40: "identical"}
    issue = {p: report.provenance_issue(json.loads(p.read_text())) for p in (s0, s1, c0, code, dirty, current)}
    assert issue[s0] is None and issue[s1] is None and issue[c0] is None and issue[current] is None
    assert "older code" in issue[code] and "uncommitted" in issue[dirty]
    # again, with a commit whose code gives other outputs for the same fingerprint and settings: no longer verified
    f0 = _write(base / "f" / "seed0.json", result(0, "f", **default))
    at_commit.clear()
    def other_outputs(p, commit, cases):
        at_commit.append((commit, [c["settings"]["variant"] for c in cases]))
        return "oldfp", [{**_case(), "labels": [0, 0, 0]}] * len(cases)

    monkeypatch.setattr(golden, "run_cases_at_commit", other_outputs)
    groups = golden.verify_results(paper)
    # verified (commit, settings) pairs are not run again; the unverified variant=code is
    assert sorted(at_commit) == [("a" * 40, ["code"]), ("f" * 40, ["paper"])]
    assert sum(g["verdict"].startswith("already verified") for g in groups) == 2
    assert "verified_settings" not in golden.load(paper)
    assert "older code" in report.provenance_issue(json.loads(s0.read_text()))
    assert "older code" in report.provenance_issue(json.loads(f0.read_text()))
    # the command line: bad input is one error line
    capsys.readouterr()
    assert golden.main(["verify-results", paper, str(base / "figures" / "seed0.json")]) == 2
    assert golden.main(["verify-results", "nopaper"]) == 2
    assert capsys.readouterr().err.count("error:") == 2
    golden.golden_path(paper).write_text(json.dumps({"paper": paper, "fingerprints": ["other"], "outputs": {}}))
    with pytest.raises(registry.UsageError, match="not listed"):    # compares with listed code only
        golden.verify_results(paper)


def test_verify_results_does_not_record_a_group_whose_commit_has_another_fingerprint(tmp_path, monkeypatch):
    paper = "decs"
    today = registry.code_version(registry.load_paper(paper))
    monkeypatch.setattr(golden, "GOLDEN_DIR", tmp_path)
    golden.golden_path(paper).write_text(json.dumps({"paper": paper, "fingerprints": [today], "outputs": {}}))
    path = _write(tmp_path / "r" / "seed0.json", {"paper": paper, "dataset": "usps", "profile": "quick", "seed": 0,
                                                   "config": _config(paper), "git": {"commit": "a" * 40, "dirty": False,
                                                                                     "code_fingerprint": "oldfp"}})
    monkeypatch.setattr(golden, "run_cases_at_commit", lambda p, commit, cases: ("otherfp", [_case()]))
    monkeypatch.setattr(golden, "run_cases", lambda p, cases: [_case()])
    (group,) = golden.verify_results(paper, [path])
    assert "fingerprint otherfp" in group["verdict"] and "verified_settings" not in golden.load(paper)


def test_update_keeps_verified_settings_while_outputs_are_kept_and_drops_them_when_changed(golden_file):
    golden_file.update("fp_one")
    verified = {"oldfp": {"h": {"dataset": "usps", "settings": {}, "verdicts": {"a" * 40: "identical"}}}}
    golden_file.path.write_text(json.dumps({**golden_file.saved(), "verified_settings": verified}))
    assert "kept" in golden_file.update("fp_two")                               # a refactor: still today's numbers
    assert golden_file.saved()["verified_settings"] == verified
    golden_file.outs["default"]["labels"] = [1, 1, 1]                             # the numerics changed
    assert "CHANGED" in golden_file.update("fp_three")
    assert "verified_settings" not in golden_file.saved()


# --- kernel changes (update --kernels) and the floor ---------------------------------------------------------------
FLOOR = 1e-3      # the kernel tests' floor for the case "default" (loss and embedding); the margin is 2


def _scaled(case, factor, labels=None):
    """``case`` with every loss value and embedding value times ``factor`` (a relative deviation of factor - 1)."""
    out = copy.deepcopy(case)
    out["losses"] = {k: [v * factor for v in curve] for k, curve in out["losses"].items()}
    out["embedding_head"] = [v * factor for v in out["embedding_head"]]
    out["embedding_sha"] = f"{factor!r}"
    if labels is not None:
        out["labels"] = labels
    return out


@pytest.fixture
def kernels_file(golden_file, monkeypatch):
    """A recording on machine 'cpuA' made by fp_one (with one of machine 'cpuB' beside it) and a floor of 1e-3
    measured there with fp_one."""
    monkeypatch.setattr(golden, "signature", lambda: "cpuA")
    golden_file.update("fp_one")
    saved = golden_file.saved()
    saved["outputs"]["cpuB"] = {"default": _scaled(_case(), 1.01)}
    golden_file.path.write_text(json.dumps(saved))
    golden.floors_path().write_text(json.dumps({golden_file.paper: {
        "cpuA": {"default": {"loss_rel": FLOOR, "embedding_rel": FLOOR, "labels_identical": True}},
        "fingerprint": "fp_one", "measured": "2025-01-01", "command": "python -m common.golden floor decs"}}))
    return golden_file


def test_deviation_is_the_largest_relative_difference_per_curve_and_embedding():
    old = {**_case(), "losses": {"a.loss": [2.0, 4.0, 0.0], "b.loss": [1.0]}, "embedding_head": [0.5, -0.25]}
    new = {**old, "losses": {"a.loss": [2.0, 4.4, 0.0], "b.loss": [1.03]}, "embedding_head": [0.5, -0.26]}
    dev = golden.deviation(old, new)
    assert dev["loss_rel_by_curve"] == pytest.approx({"a.loss": 0.1, "b.loss": 0.03})    # 0.4/4 (not 0.4/4.4)
    assert dev["loss_rel"] == pytest.approx(0.1)
    assert dev["embedding_rel"] == pytest.approx(0.02)              # 0.01 / max |a| (0.5), not 0.01 / 0.25
    assert dev["labels_identical"]
    assert not golden.deviation(old, {**new, "extra_labels": {"P2": [0, 0, 0]}})["labels_identical"]
    gone = golden.deviation(old, {**new, "losses": {"a.loss": [2.0, 4.4, 1e-9]}})       # 0 -> nonzero, curve lost
    assert gone["loss_rel_by_curve"] == {"a.loss": float("inf"), "b.loss": float("inf")}


def test_a_kernel_change_within_the_floor_is_listed_with_its_reason(kernels_file):
    original = copy.deepcopy(kernels_file.outs)
    kernels_file.outs["default"] = _scaled(_case(), 1 + 1.5 * FLOOR)             # 1.5 x floor: beyond RTOL
    msg = kernels_file.update("fp_two", kernels="fused BatchNorm")
    assert "accepted" in msg and "cpuB" in msg, msg
    saved = kernels_file.saved()
    assert saved["fingerprints"] == ["fp_one", "fp_two"]                           # results stay current
    assert saved["outputs"] == {"cpuA": kernels_file.outs}                         # cpuB recorded old kernels
    assert saved["anchor"] == {"cpuA": original}
    (change,) = saved["kernel_changes"]
    assert change["fingerprint"] == "fp_two" and change["reason"] == "fused BatchNorm"
    assert change["signature"] == "cpuA" and change["margin"] == 2
    assert change["deviation"]["default"]["recording"]["loss_rel"] == pytest.approx(1.5 * FLOOR)
    assert change["floor"] == {"default": {"loss_rel": FLOOR, "embedding_rel": FLOOR}}
    assert golden.check(kernels_file.paper) == ([("default", "identical")], True)   # plain check afterwards
    with pytest.raises(registry.UsageError, match="needs a reason"):                 # declared, never blank
        golden.update("decs", kernels="  ")
    assert golden.main(["update", "decs", "--kernels", "  "]) == 2
    assert golden.main(["check", "decs", "--kernels", "fused"]) == 2


@pytest.mark.parametrize("what, change", [
    ("loss beyond 2 x floor", lambda c: {**c, "losses": _scaled(c, 1 + 2.5 * FLOOR)["losses"]}),
    ("embedding beyond 2 x floor", lambda c: {**c, "embedding_head": _scaled(c, 1 + 2.5 * FLOOR)["embedding_head"]}),
    ("labels", lambda c: {**c, "labels": [1, 1, 1]}),
    ("extra labels", lambda c: {**c, "extra_labels": {"P2": [0, 0, 0]}}),
])
def test_a_kernel_change_beyond_the_floor_or_with_other_labels_is_refused(kernels_file, what, change):
    before = kernels_file.path.read_bytes()
    kernels_file.outs["default"] = change(_case())
    msg = kernels_file.update("fp_two", kernels="fused BatchNorm")
    assert golden.KERNELS_REFUSED in msg and "default against the recording" in msg, msg
    assert ("labels differ" in msg) == ("labels" in what), msg
    assert ("loss pretrain.loss" in msg) == what.startswith("loss") and ("embedding:" in msg) == what.startswith("emb")
    assert kernels_file.path.read_bytes() == before


def test_kernel_changes_cannot_drift_past_the_floor_of_the_anchor(kernels_file):
    """Two steps of 1.5 x floor each pass against the recording before them; together (3 x floor) they do not."""
    kernels_file.outs["default"] = _scaled(_case(), 1 + 1.5 * FLOOR)
    assert "accepted" in kernels_file.update("fp_two", kernels="fused BatchNorm")
    before = kernels_file.path.read_bytes()
    kernels_file.outs["default"] = _scaled(kernels_file.outs["default"], 1 + 1.5 * FLOOR)
    msg = kernels_file.update("fp_three", kernels="fused softmax")
    assert golden.KERNELS_REFUSED in msg and "default against the anchor: loss" in msg, msg
    assert "against the recording" not in msg, msg                                # that step alone is within
    assert kernels_file.path.read_bytes() == before


def test_a_kernel_change_needs_a_floor_measured_with_listed_code(kernels_file):
    kernels_file.outs["default"] = _scaled(_case(), 1 + 1.5 * FLOOR)
    floors = golden.load_floors()
    golden.floors_path().write_text(json.dumps({"decs": {**floors["decs"], "fingerprint": "fp_other"}}))
    assert "measured with code (fp_other)" in kernels_file.update("fp_two", kernels="fused BatchNorm")
    golden.floors_path().write_text(json.dumps({"decs": {"cpuB": floors["decs"]["cpuA"], "fingerprint": "fp_one"}}))
    assert "no floor measured for cpuA" in kernels_file.update("fp_two", kernels="fused BatchNorm")
    assert kernels_file.saved()["fingerprints"] == ["fp_one"]


def test_a_plain_update_of_the_same_outputs_still_says_changed(kernels_file):
    """The floor is applied only to a declared kernel change, never inferred."""
    kernels_file.outs["default"] = _scaled(_case(), 1 + 1.5 * FLOOR)
    assert "CHANGED" in kernels_file.update("fp_two")
    saved = kernels_file.saved()
    assert saved["fingerprints"] == ["fp_two"] and "kernel_changes" not in saved


def test_a_change_of_the_maths_after_a_kernel_change_starts_a_new_anchor(kernels_file):
    """The anchor belongs to its fingerprint list: kept, it would refuse every kernel change of the new maths."""
    kernels_file.outs["default"] = _scaled(_case(), 1 + 1.5 * FLOOR)
    assert "accepted" in kernels_file.update("fp_two", kernels="fused BatchNorm")
    kernels_file.outs["default"] = _scaled(_case(), 1.5)                          # the maths changed
    assert "CHANGED" in kernels_file.update("fp_three")
    saved = kernels_file.saved()
    assert "anchor" not in saved and "kernel_changes" not in saved
    new_maths = kernels_file.outs["default"]
    golden.floors_path().write_text(json.dumps({"decs": {**golden.load_floors()["decs"], "fingerprint": "fp_three"}}))
    kernels_file.outs["default"] = _scaled(new_maths, 1 + 1.5 * FLOOR)
    assert "accepted" in kernels_file.update("fp_four", kernels="fused softmax")
    assert kernels_file.saved()["anchor"] == {"cpuA": {"default": new_maths}}


def test_floor_records_the_deviation_of_onednn_off_from_the_recording(kernels_file, monkeypatch):
    recorded = kernels_file.saved()["outputs"]["cpuA"]
    runs = {True: ("fp_one", True, {"default": _scaled(recorded["default"], 1 + 1e-6)}),   # within tolerance: fine
            False: ("fp_one", False, {"default": _scaled(recorded["default"], 1 + 3e-4)})}
    monkeypatch.setattr(golden, "_run_paper_in_subprocess", lambda paper, onednn: runs[onednn])
    golden.floor("decs", verbose=False)
    floors = golden.load_floors()["decs"]
    assert floors["fingerprint"] == "fp_one" and floors["command"] == "python -m common.golden floor decs"
    assert floors["cpuA"]["default"]["loss_rel"] == pytest.approx(3e-4)
    assert floors["cpuA"]["default"]["embedding_rel"] == pytest.approx(3e-4)
    assert floors["cpuA"]["default"]["labels_identical"] is True
    # measured against a recording that today's code does not reproduce, or with oneDNN not switched: refused
    runs[True] = ("fp_one", True, {"default": _scaled(recorded["default"], 1 + 1e-4)})
    with pytest.raises(registry.UsageError, match="does not give this machine's recording"):
        golden.floor("decs", verbose=False)
    runs[True] = ("fp_one", True, copy.deepcopy(recorded))
    runs[False] = ("fp_one", True, runs[False][2])
    with pytest.raises(registry.UsageError, match="no second set of kernels"):
        golden.floor("decs", verbose=False)
    # oneDNN off moves a case without bound (a curve of another length, other labels): no room, RTOL
    runs[False] = ("fp_one", False, {"default": {**_scaled(recorded["default"], 1.01), "labels": [1, 1, 1],
                                                 "losses": {"pretrain.loss": [1.0, 0.5, 0.4]}}})
    golden.floor("decs", verbose=False)
    unbounded = golden.load_floors()["decs"]["cpuA"]["default"]
    assert unbounded["loss_rel"] is None and unbounded["labels_identical"] is False
    assert unbounded["embedding_rel"] == pytest.approx(0.01)
    near = golden.deviation(recorded["default"], _scaled(recorded["default"], 1 + 2 * golden.RTOL))
    assert golden.beyond_floor(near, unbounded) == [f"loss pretrain.loss: {2e-5:.3g} > 1e-05 (no finite floor: RTOL)"]


def test_the_floors_second_run_turns_onednn_off_before_tensorflow_starts(monkeypatch):
    import subprocess

    envs = []

    def fake_run(cmd, env=None, **kwargs):
        envs.append(env)
        out = golden.RESULT_MARK + json.dumps({"fp": "f", "onednn": True, "outs": {}})
        return subprocess.CompletedProcess(cmd, 0, out + "\n", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    golden._run_paper_in_subprocess("decs", True)
    golden._run_paper_in_subprocess("decs", False)
    assert "TF_ENABLE_ONEDNN_OPTS" not in envs[0]                # TensorFlow's default, whatever the caller set
    assert envs[1]["TF_ENABLE_ONEDNN_OPTS"] == "0"


def test_run_cases_at_commit_takes_the_fingerprint_from_that_commits_own_code(tmp_path, monkeypatch):
    """A two-commit repository: the older commit's registry fingerprints its code one way, today's registry (copied
    into the worktree to run the cases) another; the fingerprint returned is the older commit's own. Stubs of keras
    and tensorflow keep the subprocesses fast."""
    import shutil
    import subprocess

    repo = tmp_path / "repo"
    files = {"common/__init__.py": "", "papers/__init__.py": "", "papers/decs.py": "X = 1\n",
             "common/registry.py": "def code_version(module):\n    return 'fp_of_the_commits_own_code'\n",
             "common/training.py": "def code_fingerprint(*modules):\n    return 'fp_of_todays_registry'\n",
             "common/checkpoint.py": "X = 1\n", "common/metrics.py": "X = 1\n",
             "keras/__init__.py": "", "tensorflow/__init__.py": ""}
    for rel, text in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-qm", "old"], check=True)
    old = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    for name in ("golden.py", "setup.py", "registry.py"):                         # today's modules at HEAD
        shutil.copy(golden.ROOT / "common" / name, repo / "common" / name)
    subprocess.run(git + ["commit", "-qam", "today"], check=True)
    monkeypatch.setattr(golden, "ROOT", repo)
    fp, outs = golden.run_cases_at_commit("decs", old, [])
    assert (fp, outs) == ("fp_of_the_commits_own_code", [])
    assert "fp_of_todays_registry" in (repo / "common" / "training.py").read_text()  # what a wrong one would give
