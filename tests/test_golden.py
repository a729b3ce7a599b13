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
