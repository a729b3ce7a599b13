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


def test_update_keeps_outputs_and_adds_the_fingerprint_only_when_outputs_match(tmp_path, monkeypatch):
    paper = "decs"
    monkeypatch.setattr(golden, "GOLDEN_DIR", tmp_path)
    sig = golden.signature()
    outs = {"default": _case()}
    monkeypatch.setattr(golden, "run_paper", lambda p, verbose=True: copy.deepcopy(outs))
    monkeypatch.setattr(registry, "code_version", lambda module: "fp_one")
    assert "recorded" in golden.update(paper)
    monkeypatch.setattr(registry, "code_version", lambda module: "fp_two")     # a pure refactor
    assert "kept" in golden.update(paper)
    saved = json.loads((tmp_path / f"{paper}.json").read_text())
    assert saved["fingerprints"] == ["fp_one", "fp_two"] and saved["outputs"][sig] == outs
    outs["default"]["losses"]["pretrain.loss"][0] = 2.0                          # the maths changed
    monkeypatch.setattr(registry, "code_version", lambda module: "fp_three")
    assert "CHANGED" in golden.update(paper)
    saved = json.loads((tmp_path / f"{paper}.json").read_text())
    assert saved["fingerprints"] == ["fp_three"]


def test_update_refuses_to_list_unverified_code_on_a_machine_without_a_recording(tmp_path, monkeypatch):
    paper = "decs"
    monkeypatch.setattr(golden, "GOLDEN_DIR", tmp_path)
    (tmp_path / f"{paper}.json").write_text(json.dumps(
        {"paper": paper, "fingerprints": ["fp_one"], "outputs": {"other-cpu/2cores/tensorflow-0": {"default": _case()}}}))
    monkeypatch.setattr(golden, "run_paper", lambda p, verbose=True: {"default": _case()})
    monkeypatch.setattr(registry, "code_version", lambda module: "fp_new")
    assert "cannot be verified" in golden.update(paper)
    assert json.loads((tmp_path / f"{paper}.json").read_text())["fingerprints"] == ["fp_one"]


def test_update_records_a_new_case_beside_the_kept_ones(tmp_path, monkeypatch):
    paper = "decs"
    monkeypatch.setattr(golden, "GOLDEN_DIR", tmp_path)
    outs = {"default": _case()}
    monkeypatch.setattr(golden, "run_paper", lambda p, verbose=True: copy.deepcopy(outs))
    monkeypatch.setattr(registry, "code_version", lambda module: "fp_one")
    golden.update(paper)
    outs["new_option"] = {**_case(), "labels": [2, 2, 0]}
    monkeypatch.setattr(registry, "code_version", lambda module: "fp_two")   # the option added: default unchanged
    assert "kept" in golden.update(paper)
    saved = json.loads((tmp_path / f"{paper}.json").read_text())
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


def test_update_keeps_verified_settings_while_outputs_are_kept_and_drops_them_when_changed(tmp_path, monkeypatch):
    paper = "decs"
    monkeypatch.setattr(golden, "GOLDEN_DIR", tmp_path)
    outs = {"default": _case()}
    monkeypatch.setattr(golden, "run_paper", lambda p, verbose=True: copy.deepcopy(outs))
    monkeypatch.setattr(registry, "code_version", lambda module: "fp_one")
    golden.update(paper)
    saved = golden.load(paper)
    verified = {"oldfp": {"h": {"dataset": "usps", "settings": {}, "verdicts": {"a" * 40: "identical"}}}}
    golden.golden_path(paper).write_text(json.dumps({**saved, "verified_settings": verified}))
    monkeypatch.setattr(registry, "code_version", lambda module: "fp_two")     # a refactor: still today's numbers
    assert "kept" in golden.update(paper)
    assert golden.load(paper)["verified_settings"] == verified
    outs["default"]["labels"] = [1, 1, 1]                                        # the numerics changed
    monkeypatch.setattr(registry, "code_version", lambda module: "fp_three")
    assert "CHANGED" in golden.update(paper)
    assert "verified_settings" not in golden.load(paper)
