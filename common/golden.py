"""Golden runs: a tiny deterministic run per method and main option, whose outputs pin the numerics of the code.

    python -m common.golden check [paper ...]     # recompute and compare with tests/golden/<paper>.json
    python -m common.golden update [paper ...]    # after a code change: record today's outputs / code fingerprint
    python -m common.golden update PAPER --kernels "REASON"   # faster kernels, same maths: within the floor
    python -m common.golden floor [paper ...]     # measure the kernel floor (tests/golden/floors.json)
    python -m common.golden verify PAPER COMMIT    # list the fingerprint of an older commit whose outputs are today's
    python -m common.golden verify-results PAPER [RESULT.json ...]   # verify older results' own settings

A case is the paper's ``smoke`` budget on 60 synthetic images (3 blobs, seed 0), seed 0, the CPU, TensorFlow, run
through the module's own ``run()`` as the CLI runs it. Its outputs: the labels, every loss curve of the history, and
digests of the final embedding and centres (which stand for the final weights).

Comparing outputs (``compare``): "identical" when every digest matches bit for bit; "within tolerance" when the labels
are identical and every loss value and every kept embedding value agrees to a relative 1e-5 (float operations in
another order, e.g. XLA); otherwise "changed". Outputs are kept per machine signature (CPU vector extensions, cores,
backend and its version): another CPU runs other oneDNN kernels, and two training epochs amplify that far beyond any
useful tolerance (measured: oneDNN off moves DECS's pre-training loss by 2.7e-4 relative), so a machine compares
only with outputs recorded on its own kind. A machine with no recording of its own skips the comparison
(``tests/test_golden.py`` says so) until ``update`` records it; ``update`` adds a fingerprint only after comparing on a
machine that has a recording.

``tests/golden/<paper>.json`` holds, besides the outputs, the code fingerprints (``common.registry.code_version``)
whose golden outputs equal them: ``update`` adds today's fingerprint when today's outputs are identical or within
tolerance, and otherwise replaces the outputs and starts a new list. A result file made by code whose fingerprint is
in the list is current (``common.report.provenance_issue``): a refactor that keeps the golden outputs keeps every
result current; one that changes them marks that paper's results as made by older code.

Verified settings (``verify-results``): a result of older code is also current when its own settings give today's
numbers. Its settings are its recorded config less the budget keys (any profile's) and the module's LOGGING_KEYS;
one golden case with them (smoke budget, synthetic data named after its data set) is run with the code of its commit
and with today's (settings the result lacks take today's defaults), once per (commit, data set, settings); when the
outputs are not "changed", ``verified_settings[fingerprint][settings_hash]`` records it. ``update`` keeps these
while the outputs are kept and drops them when they change (they compared with the code before the change).

Kernel changes (``update PAPER --kernels REASON``): other kernels for the same maths (e.g. a fused BatchNorm) move
the last bits, and two epochs of Adam amplify them past 1e-5. The floor (``floor``, tests/golden/floors.json) is,
per case, the ``deviation`` of today's code run with oneDNN off (TF_ENABLE_ONEDNN_OPTS=0) from this machine's
recording: the largest |a-b|/|a| over the steps of any loss curve, max |a-b| / max |a| over embedding_head (per
coordinate, one near 0 would dominate), and whether the labels are identical. oneDNN off is what a non-x86 CPU or a
user who disables it runs, and such a machine's results already count as current. So a declared change (never
inferred) is accepted when every case keeps its labels and no loss curve nor the embedding deviates by more than
KERNEL_MARGIN (2: one pair of kernels measured, another may land a little further) x its case's floor (at least
RTOL), against this machine's recording and against its ``anchor`` (the recording kept at the list's first kernel
change), so that several changes cannot drift further than one: it cannot be told apart from the same code on
another machine. Accepted: today's outputs become the recording, the fingerprint is listed, other machines'
recordings are dropped (old kernels: they re-record), ``kernel_changes`` records it; refused: nothing changes. A
plain update that changes the outputs starts a new list and drops the anchor and the kernel changes with it.
"""
import hashlib
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from common import registry

ROOT = Path(__file__).resolve().parents[1]
GOLDEN_DIR = ROOT / "tests" / "golden"
RTOL = 1e-5
KERNEL_MARGIN = 2.0  # a kernel change may deviate by up to this many times the floor (one kernel pair measured)
KERNELS_REFUSED = "kernel change REFUSED"

# (case name, --set overrides, synthetic image size): the default and each option that changes the maths.
CASES = {
    "decs": [("default", {}, 16), ("variant=code", {"variant": "code"}, 16),
             ("cluster_optimizer=sgd", {"cluster_optimizer": "sgd"}, 16)],
    "dekm": [("default", {}, 16), ("full_batch=True", {"full_batch": True}, 16)],
    "dcss": [("default", {}, 16), ("q_clip=True", {"q_clip": True}, 16),
             ("phase1_optimizer=authors_sgd", {"phase1_optimizer": "authors_sgd"}, 16), ("mnet_layers=2", {"mnet_layers": 2}, 16)],
    "saip": [("default", {}, 28), ("variant=homo", {"variant": "homo"}, 28),
             ("target_gradient=True", {"target_gradient": True}, 28), ("kl_target=p1", {"kl_target": "p1"}, 28)],
    "rdc": [("default", {}, 28), ("phases=P1", {"phases": "P1"}, 28), ("pixel_range=01", {"pixel_range": "01"}, 28),
            ("autoencoder=plain", {"autoencoder": "plain"}, 28)],
}
DATASET_NAME = {"decs": "usps", "dekm": "usps", "dcss": "usps", "saip": "mnist-test", "rdc": "fmnist"}


def synthetic(size, n=60, k=3, seed=0, noise=0.15):
    """n images (size x size x 1) in [0, 1] around k random prototypes; labels i % k (also tests/conftest.blobs)."""
    rng = np.random.default_rng(seed)
    protos = rng.uniform(size=(k, size, size, 1))
    y = np.arange(n) % k
    x = np.clip(protos[y] + noise * rng.normal(size=(n, size, size, 1)), 0, 1).astype("float32")
    return x, y.astype(np.int64), k


def _sha(a):
    a = np.ascontiguousarray(a)
    return hashlib.sha1(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes()).hexdigest()[:16]


def _is_loss(key):
    return "loss" in str(key).lower()


def loss_curves(history, prefix=""):
    """{dotted path: [floats]} of every loss curve in a (nested) history: a list of numbers under a key containing
    'loss', and, in a list of per-epoch dicts (``logs: [{"loss": ...}, ...]``), each such key over the list
    (path ``<list>[].<key>``)."""
    out = {}
    if not isinstance(history, dict):
        return out
    for key, value in history.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(loss_curves(value, path))
        elif isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
            if _is_loss(key):
                out[path] = [float(v) for v in value]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            keys = sorted({k for v in value for k, x in v.items() if _is_loss(k) and isinstance(x, (int, float))})
            for k in keys:
                out[f"{path}[].{k}"] = [float(v[k]) for v in value if isinstance(v.get(k), (int, float))]
    return out


def run_case(paper, overrides, size, dataset=None):
    """Runs one golden case in this process; returns its outputs (JSON-able). ``dataset``: the name the synthetic
    data carry (default DATASET_NAME[paper]); a module reads per-data-set settings by it."""
    import keras

    from common import cli, setup

    module = registry.load_paper(paper)
    x, y, k = synthetic(size)
    from common.datasets import Dataset

    data = Dataset(x=x, y=y, n_clusters=k, name=dataset or DATASET_NAME[paper])
    config, _ = cli.make_config(module, "smoke", dict(overrides))
    setup.seed_everything(0)
    out = module.run(data, config, 0, cache_dir=None, verbose=0)
    labels = np.asarray(out["labels"]).astype(np.int64)
    emb = np.asarray(out["embedding"], np.float32)
    centers = np.asarray(out["centers"], np.float32)
    extra = {name: np.asarray(v).astype(np.int64).tolist() for name, v in sorted(out.get("extra_labels", {}).items())}
    return {"labels": labels.tolist(), "extra_labels": extra, "losses": loss_curves(out["history"]),
            "embedding_sha": _sha(emb), "centers_sha": _sha(centers),
            "embedding_head": emb[:4].ravel()[:24].astype(float).tolist(),
            "backend": keras.backend.backend()}


def compare(old, new, rtol=RTOL):
    """'identical', 'within tolerance' or 'changed: <why>' between two outputs of one case."""
    if old == new:
        return "identical"
    if old["labels"] != new["labels"] or old["extra_labels"] != new["extra_labels"]:
        return "changed: labels differ"
    if sorted(old["losses"]) != sorted(new["losses"]):
        return "changed: other loss curves"
    for key, a in old["losses"].items():
        b = new["losses"][key]
        if len(a) != len(b) or not np.allclose(a, b, rtol=rtol, atol=0.0):
            return f"changed: loss {key} beyond rtol {rtol}"
    if not np.allclose(old["embedding_head"], new["embedding_head"], rtol=rtol, atol=rtol):
        return f"changed: embedding beyond rtol {rtol}"
    return "within tolerance"


def _rel(a, b):
    """max over elements of |a-b|/|a| (0 where a == b, inf where a == 0 != b or the lengths differ)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    diff = np.abs(a - b)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(diff == 0, 0.0, diff / np.abs(a))
    return float(rel.max())


def _rel_norm(a, b):
    """max |a-b| / max |a| over the elements (inf where the lengths differ or a == 0 != b): a vector's deviation
    relative to its scale, not to each coordinate's (one near 0 would dominate)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    diff = float(np.abs(a - b).max(initial=0.0))
    return 0.0 if diff == 0 else diff / float(np.abs(a).max()) if np.abs(a).max() > 0 else float("inf")


def deviation(old, new):
    """How far ``new`` is from ``old`` (two outputs of one case; ``old`` the reference): {"loss_rel": max over loss
    curves, "loss_rel_by_curve": {curve: max over steps of |a-b|/|a|}, "embedding_rel": max |a-b| / max |a| over
    embedding_head, "labels_identical"}; a curve missing on either side counts as inf. ``compare`` stays the
    check/verify verdict; this is the kernel-change measure (``floor``, ``update --kernels``)."""
    curves = {key: _rel(a, new["losses"][key]) if key in new["losses"] else float("inf")
              for key, a in old["losses"].items()}
    curves.update({key: float("inf") for key in new["losses"] if key not in old["losses"]})
    return {"loss_rel": max(curves.values(), default=0.0), "loss_rel_by_curve": dict(sorted(curves.items())),
            "embedding_rel": _rel_norm(old["embedding_head"], new["embedding_head"]),
            "labels_identical": old["labels"] == new["labels"] and old["extra_labels"] == new["extra_labels"]}


def beyond_floor(dev, floor, margin=KERNEL_MARGIN):
    """[why] a case's ``deviation`` is not a kernel change under its ``floor`` ({"loss_rel", "embedding_rel"}):
    labels not identical, or a loss curve / the embedding beyond max(margin x floor, RTOL); [] when it is. A floor
    of None (oneDNN off moved the case without bound: a curve of another length, a 0 that is not) gives no room:
    RTOL."""
    def limit(key):
        f = floor[key]
        return (RTOL, "no finite floor: RTOL") if f is None else (max(margin * f, RTOL), f"{margin:g} x floor {f:.3g}")

    why = [] if dev["labels_identical"] else ["labels differ"]
    lim, what = limit("loss_rel")
    why += [f"loss {curve}: {v:.3g} > {lim:.3g} ({what})" for curve, v in dev["loss_rel_by_curve"].items()
            if not v <= lim]
    lim, what = limit("embedding_rel")
    if not dev["embedding_rel"] <= lim:
        why.append(f"embedding: {dev['embedding_rel']:.3g} > {lim:.3g} ({what})")
    return why


def signature():
    """This machine's kind for golden outputs: CPU vector extensions, cores, backend and its version."""
    from common import setup

    cpu, env = setup.cpu_model(), setup.environment()
    backend = env["backend"]
    return f"{'+'.join(cpu['vector_extensions']) or 'generic'}/{cpu['cores']}cores/{backend}-{env['versions'].get(backend, '?')}"


def golden_path(paper):
    return GOLDEN_DIR / f"{paper}.json"


def load(paper):
    path = golden_path(paper)
    return json.loads(path.read_text()) if path.is_file() else None


def run_paper(paper, verbose=True):
    """{case: outputs} for today's code."""
    outs = {}
    for name, overrides, size in CASES[paper]:
        t0 = time.perf_counter()
        outs[name] = run_case(paper, overrides, size)
        if verbose:
            print(f"  {paper} {name}: {time.perf_counter() - t0:.1f} s", flush=True)
    return outs


def check(paper, outs=None):
    """[(case, verdict)] of today's code against the committed file, plus whether today's fingerprint is listed."""
    saved = load(paper)
    if saved is None:
        return [("(file)", f"changed: no {golden_path(paper).relative_to(ROOT)}")], False
    listed = registry.code_version(registry.load_paper(paper)) in saved["fingerprints"]
    cases = saved["outputs"].get(signature())
    if cases is None:
        return [("(machine)", f"no recording for {signature()}: skipped")], listed
    outs = outs if outs is not None else run_paper(paper, verbose=False)
    verdicts = [(name, compare(cases[name], outs[name]) if name in cases else "changed: new case") for name in outs]
    return verdicts, listed


def update(paper, kernels=None):
    """Records today's outputs for this machine's signature, and today's fingerprint when the outputs are kept
    (identical or within tolerance of this machine's recording). With ``kernels`` (the declared reason of a kernel
    change): ``update_kernels``. Returns a message."""
    if kernels is not None:
        return update_kernels(paper, kernels)
    fp = registry.code_version(registry.load_paper(paper))
    saved = load(paper) or {"paper": paper, "fingerprints": [], "outputs": {}}
    sig = signature()
    outs = run_paper(paper)
    mine = saved["outputs"].get(sig)
    if mine is None and saved["fingerprints"] and fp not in saved["fingerprints"]:
        return (f"{paper}: no recording for {sig} and today's code ({fp}) is not listed: the change cannot be verified "
                f"here; run update on a machine with a recording (signatures: {', '.join(saved['outputs'])})")
    # kept: every case recorded before gives today's outputs (a new case is recorded beside them)
    kept = mine is not None and all(not compare(mine[n], outs[n]).startswith("changed") for n in outs if n in mine)
    if mine is None:
        record = {**saved, "fingerprints": saved["fingerprints"] or [fp], "outputs": {**saved["outputs"], sig: outs}}
        msg = f"{paper}: outputs recorded for {sig}"
    elif kept:
        fps = saved["fingerprints"] + ([fp] if fp not in saved["fingerprints"] else [])
        record = {**saved, "fingerprints": fps, "outputs": {**saved["outputs"], sig: {**outs, **mine}}}
        msg = f"{paper}: outputs kept on {sig}; fingerprint {fp} listed ({len(fps)} in all)"
    else:
        # today's numerics changed: what was verified against the code before ("older code == today's code") no
        # longer holds, so the older fingerprints' verifications go with the list
        record = {k: v for k, v in saved.items()
                  if k not in ("verified_settings", "verified_older_code", "anchor", "kernel_changes")}
        record = {**record, "fingerprints": [fp], "outputs": {sig: outs}}
        msg = (f"{paper}: outputs CHANGED on {sig}; results of older code are now marked older; other machines' "
               "recordings and the verified settings dropped")
    record["command"] = "python -m common.golden update " + paper
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    golden_path(paper).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return msg


def floors_path():
    return GOLDEN_DIR / "floors.json"


def load_floors():
    path = floors_path()
    return json.loads(path.read_text()) if path.is_file() else {}


def update_kernels(paper, reason):
    """A declared kernel change (module docstring): accepted when every case of today's outputs has identical
    labels and deviates (``deviation``) from this machine's recording and from its anchor by no more than
    ``beyond_floor`` allows under the case's floor (tests/golden/floors.json, measured on this machine with listed
    code). Accepted: today's outputs become the recording, the fingerprint is listed, other machines' recordings
    dropped, ``kernel_changes`` records it. Refused: the file is left as it is. Returns a message."""
    if not str(reason).strip():
        raise registry.UsageError("--kernels needs a reason (which kernels changed, and why)")
    fp = registry.code_version(registry.load_paper(paper))
    saved = load(paper)
    sig = signature()
    refused = f"{paper}: {KERNELS_REFUSED} on {sig}, nothing changed: "
    mine = (saved or {}).get("outputs", {}).get(sig)
    if mine is None:
        return refused + f"no recording for {sig} to compare with (run a plain update on a clean tree first)"
    floors = load_floors().get(paper, {})
    floor = floors.get(sig)
    if floor is None:
        return refused + f"no floor measured for {sig}: run `python -m common.golden floor {paper}`"
    if floors.get("fingerprint") not in saved["fingerprints"]:
        return refused + (f"the floor was measured with code ({floors.get('fingerprint')}) whose outputs are not the "
                          f"listed ones: run `python -m common.golden floor {paper}` on the listed code")
    outs = run_paper(paper)
    if set(outs) != set(mine) or not set(outs) <= set(floor):
        return refused + (f"cases differ (today {sorted(outs)}, recorded {sorted(mine)}, floors {sorted(floor)}): "
                          "a new case is recorded by a plain update, its floor by `floor`")
    anchor = {**mine, **saved.get("anchor", {}).get(sig, {})}   # a case added since the anchor: its only recording
    devs, why = {}, []
    for name in sorted(outs):
        devs[name] = {"recording": deviation(mine[name], outs[name]), "anchor": deviation(anchor[name], outs[name])}
        for against, dev in devs[name].items():
            why += [f"{name} against the {against}: {w}" for w in beyond_floor(dev, floor[name])]
    if why:
        return refused + "; ".join(why)
    fps = saved["fingerprints"] + ([fp] if fp not in saved["fingerprints"] else [])
    change = {"fingerprint": fp, "reason": reason, "signature": sig, "date": time.strftime("%Y-%m-%d"),
              "margin": KERNEL_MARGIN, "deviation": devs,
              "floor": {name: {k: floor[name][k] for k in ("loss_rel", "embedding_rel")} for name in sorted(outs)}}
    record = {**saved, "fingerprints": fps, "outputs": {sig: outs}, "anchor": {sig: anchor},
              "kernel_changes": saved.get("kernel_changes", []) + [change],
              "command": f"python -m common.golden update {paper} --kernels {shlex.quote(reason)}"}
    golden_path(paper).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    worst = max(max(d["loss_rel"], d["embedding_rel"]) for pair in devs.values() for d in pair.values())
    dropped = [s for s in saved["outputs"] if s != sig]
    return (f"{paper}: kernel change accepted on {sig} (largest deviation {worst:.3g}, within {KERNEL_MARGIN:g} x "
            f"each case's floor); today's outputs recorded, fingerprint {fp} listed ({len(fps)} in all)"
            + (f"; recordings of {', '.join(dropped)} dropped (old kernels: update there)" if dropped else ""))


def _run_paper_in_subprocess(paper, onednn):
    """(fingerprint, whether oneDNN was on, {case: outputs}) of today's code in a fresh process, oneDNN on (TF's
    default: TF_ENABLE_ONEDNN_OPTS unset) or off (=0), set before TensorFlow is imported."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if not onednn:
        env["TF_ENABLE_ONEDNN_OPTS"] = "0"
    code = ("import json, sys; from common import golden, registry; p = sys.argv[1]; "
            "outs = golden.run_paper(p, verbose=False); "
            "from tensorflow.python.util import _pywrap_util_port as u; "
            "print(golden.RESULT_MARK + json.dumps({'fp': registry.code_version(registry.load_paper(p)), "
            "'onednn': bool(u.IsMklEnabled()), 'outs': outs}))")
    proc = subprocess.run([sys.executable, "-c", code, paper], cwd=ROOT, env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if proc.returncode or not lines:
        why = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise registry.UsageError(f"{paper}: the golden cases failed with oneDNN {'on' if onednn else 'off'}: {why}")
    got = json.loads(lines[-1][len(RESULT_MARK):])
    return got["fp"], got["onednn"], got["outs"]


def _finite(v):
    return v if np.isfinite(v) else None


def floor(paper, verbose=True):
    """Measures ``paper``'s kernel floor on this machine: the golden cases run by today's (listed) code with
    oneDNN on (must give this machine's recording: not "changed") and off, each in a fresh process; records per case
    ``deviation`` of the second from the recording in tests/golden/floors.json under this machine's signature.
    Returns a message; UsageError when it cannot be measured here."""
    saved = load(paper)
    sig = signature()
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        raise registry.UsageError(f"the floor is measured with TensorFlow's kernels (oneDNN on/off); signature {sig}")
    mine = (saved or {}).get("outputs", {}).get(sig)
    if mine is None:
        raise registry.UsageError(f"{paper}: no recording for {sig} to measure the floor against")
    cases = {}
    for onednn in (True, False):
        t0 = time.perf_counter()
        fp, on, outs = _run_paper_in_subprocess(paper, onednn)
        if verbose:
            print(f"  {paper} oneDNN {'on' if onednn else 'off'}: {time.perf_counter() - t0:.0f} s", flush=True)
        if fp not in saved["fingerprints"]:
            raise registry.UsageError(f"{paper}: today's code ({fp}) is not listed: its outputs are not the recording")
        if on != onednn:
            raise registry.UsageError(f"{paper}: oneDNN is {'on' if on else 'off'} in TensorFlow whatever "
                                      "TF_ENABLE_ONEDNN_OPTS says: no second set of kernels to measure with here")
        if set(outs) != set(mine):
            raise registry.UsageError(f"{paper}: cases {sorted(outs)} but recorded {sorted(mine)}: update first")
        for name in outs:
            if onednn and compare(mine[name], outs[name]).startswith("changed"):
                raise registry.UsageError(f"{paper} {name}: today's code with oneDNN on does not give this machine's "
                                          f"recording ({compare(mine[name], outs[name])}): run check/update first")
            if not onednn:   # JSON has no inf: an unbounded deviation is recorded as None (beyond_floor: RTOL)
                dev = deviation(mine[name], outs[name])
                by_curve = {k: _finite(v) for k, v in dev["loss_rel_by_curve"].items()}
                cases[name] = {**dev, "loss_rel": _finite(dev["loss_rel"]), "loss_rel_by_curve": by_curve,
                               "embedding_rel": _finite(dev["embedding_rel"])}
    floors = load_floors()           # read again just before writing: other papers may have been measured meanwhile
    floors[paper] = {**floors.get(paper, {}), sig: cases, "fingerprint": fp, "measured": time.strftime("%Y-%m-%d"),
                     "command": f"python -m common.golden floor {paper}"}
    floors_path().write_text(json.dumps(floors, indent=1, sort_keys=True) + "\n")
    return f"{paper} floor on {sig}: " + "; ".join(
        f"{name}: loss {d['loss_rel'] if d['loss_rel'] is None else format(d['loss_rel'], '.3g')}, embedding "
        f"{d['embedding_rel'] if d['embedding_rel'] is None else format(d['embedding_rel'], '.3g')}, labels "
        f"{'identical' if d['labels_identical'] else 'DIFFER'}" for name, d in sorted(cases.items()))


def verify_commit(paper, commit):
    """Runs the golden cases with the code of ``commit`` (a temporary git worktree, today's golden/setup/registry
    modules copied in) and, when every case gives this machine's recorded outputs, lists that code's fingerprint:
    results made at a commit between two updates stay current. Returns a message."""
    import shutil
    import subprocess
    import tempfile

    saved = load(paper)
    sig = signature()
    if saved is None or sig not in saved["outputs"]:
        return f"{paper}: no recording for {sig}: nothing to compare with"
    wt = Path(tempfile.mkdtemp(prefix="golden-")) / "wt"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(wt), commit], check=True)
    try:
        for name in ("golden.py", "setup.py", "registry.py"):
            shutil.copy(ROOT / "common" / name, wt / "common" / name)
        (wt / "tests" / "golden").mkdir(parents=True, exist_ok=True)
        shutil.copy(golden_path(paper), wt / "tests" / "golden" / f"{paper}.json")
        code = ("import json, sys; from common import golden, registry; p = sys.argv[1]; "
                "outs = golden.run_paper(p, verbose=False); "
                "print(json.dumps({'fp': registry.code_version(registry.load_paper(p)), 'outs': outs}))")
        proc = subprocess.run([sys.executable, "-c", code, paper], cwd=wt, capture_output=True, text=True, check=True)
        got = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(wt)], check=False)
    mine = saved["outputs"][sig]
    verdicts = {n: compare(mine[n], o) if n in mine else "new case" for n, o in got["outs"].items()}
    if any(v.startswith("changed") for v in verdicts.values()):
        return f"{paper} at {commit} ({got['fp']}): not listed, outputs differ: {verdicts}"
    if got["fp"] not in saved["fingerprints"]:
        saved["fingerprints"].append(got["fp"])
        saved.setdefault("verified_older_code", {})[got["fp"]] = f"golden cases run at commit {commit}: {verdicts}"
        golden_path(paper).write_text(json.dumps(saved, indent=1, sort_keys=True) + "\n")
    return f"{paper} at {commit} ({got['fp']}): listed, {verdicts}"


RESULTS_DIR = ROOT / "results"
RESULT_MARK = "GOLDEN-CASES "  # the line of a worktree's output that carries its outputs


def budget_keys(module):
    """The keys any of the module's profiles sets (epochs, iterations, their log intervals, subset_per_class): a
    run's budget, and what the smoke budget of a settings verification sets."""
    return sorted({k for budget in getattr(module, "PROFILES", {}).values() for k in budget})


def result_settings(module, config):
    """A result's settings: its recorded config less the budget keys (``budget_keys``) and the keys the module
    declares as changing the logs only (a module-level tuple LOGGING_KEYS, if any)."""
    drop = set(budget_keys(module)) | set(getattr(module, "LOGGING_KEYS", ()))
    return {k: v for k, v in sorted(config.items()) if k not in drop}


def settings_hash(settings, dataset):
    """Key of verified settings: training.config_hash of the settings and the data set's name (modules read
    per-data-set values by it: SAIP's Table II row, R-DC's Table 2, DEKM's COIL-20 size)."""
    from common import training

    return training.config_hash({"dataset": dataset, "settings": settings})


def settings_verified(run):
    """The tests/golden/<paper>.json ``verified_settings`` entry under ``run``'s code fingerprint and the hash of
    its settings on its data set (``verify_results``), or None. Reads the golden file; imports the paper module
    only when that fingerprint has entries."""
    fp = (run.get("git") or {}).get("code_fingerprint")
    saved = load(run.get("paper")) if run.get("paper") in CASES else None
    entries = ((saved or {}).get("verified_settings") or {}).get(fp)
    if not entries or not isinstance(run.get("config"), dict):
        return None
    module = registry.load_paper(run["paper"])
    return entries.get(settings_hash(result_settings(module, run["config"]), run.get("dataset")))


def run_cases(paper, cases):
    """[outputs, or {"error": why}] of golden cases ``[{"dataset", "settings"}]`` run in this process with this
    checkout's code: the smoke budget with the settings as --set overrides, on the paper's synthetic data named
    after the data set."""
    size = CASES[paper][0][2]
    out = []
    for case in cases:
        try:
            out.append(run_case(paper, case["settings"], size, case["dataset"]))
        except Exception as e:  # an option the code cannot run: not verified, the other cases go on
            out.append({"error": f"{type(e).__name__}: {e}"})
    return out


def run_cases_at_commit(paper, commit, cases):
    """(code fingerprint, ``run_cases`` outputs) with the code of ``commit`` (a temporary git worktree, today's
    golden/setup/registry modules copied in, as ``verify_commit``); (None, [{"error"}] * n) when it cannot run."""
    import shutil
    import subprocess
    import tempfile

    wt = Path(tempfile.mkdtemp(prefix="golden-")) / "wt"
    add = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(wt), commit],
                         capture_output=True, text=True)
    if add.returncode:
        return None, [{"error": f"no worktree for {commit}: {add.stderr.strip()}"}] * len(cases)
    try:
        # the fingerprint as that commit's own code computed it (what its results recorded): today's registry may
        # count other modules (e.g. the skeleton's), so it is taken before today's modules are copied in
        own = ("import importlib, sys\ntry:\n    from common import registry as r\nexcept ImportError:\n"
               "    from common import report as r\n"
               f"print({RESULT_MARK!r} + r.code_version(importlib.import_module('papers.' + sys.argv[1])))")
        fp_proc = subprocess.run([sys.executable, "-c", own, paper], cwd=wt, capture_output=True, text=True)
        own_fp = [line[len(RESULT_MARK):] for line in fp_proc.stdout.splitlines() if line.startswith(RESULT_MARK)]
        for name in ("golden.py", "setup.py", "registry.py"):
            shutil.copy(ROOT / "common" / name, wt / "common" / name)
        code = ("import json, sys; from common import golden, registry; p = sys.argv[1]; "
                "outs = golden.run_cases(p, json.loads(sys.stdin.read())); "
                "print(golden.RESULT_MARK + json.dumps({'fp': registry.code_version(registry.load_paper(p)), "
                "'outs': outs}))")
        proc = subprocess.run([sys.executable, "-c", code, paper], cwd=wt, input=json.dumps(cases),
                              capture_output=True, text=True)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(wt)], check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if proc.returncode or not lines:
        why = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return None, [{"error": f"the code of {commit[:7]} failed (exit {proc.returncode}): {why}"}] * len(cases)
    got = json.loads(lines[-1][len(RESULT_MARK):])
    return (own_fp[-1] if own_fp else got["fp"]), got["outs"]


def settings_diff(module, settings):
    """How ``settings`` differ from today's defaults (today's Config as the smoke profile makes it, values it fills
    in __post_init__ included): 'key=value' for each other value, 'key=value (not in today's Config)', 'key not
    recorded (today value)' for a setting the result's code did not have."""
    import dataclasses

    from common import cli

    defaults = json.loads(json.dumps(dataclasses.asdict(cli.make_config(module, "smoke", {})[0])))
    drop = set(budget_keys(module)) | set(getattr(module, "LOGGING_KEYS", ()))
    out = [f"{k}={v}" + ("" if k in defaults else " (not in today's Config)")
           for k, v in settings.items() if k not in defaults or defaults[k] != v]
    out += [f"{k} not recorded (today {v})" for k, v in defaults.items() if k not in settings and k not in drop]
    return ", ".join(out) or "today's defaults"


def _result_records(paper, paths):
    """[(path, record)] of ``paper``'s result files: ``paths`` (each must be one; UsageError otherwise), default
    every seed*.json under results/<paper>/ that is a result file (paper, git, config)."""
    explicit = paths is not None
    paths = [Path(p) for p in paths] if explicit else sorted((RESULTS_DIR / paper).rglob("seed*.json"))
    out = []
    for path in paths:
        try:
            run = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            if explicit:
                raise registry.UsageError(f"cannot read result file {path}: {e}") from None
            continue
        if not (isinstance(run, dict) and "git" in run and "config" in run and run.get("paper") == paper):
            if explicit:
                raise registry.UsageError(f"{path} is not a result file of {paper} (paper, git, config)")
            continue
        out.append((path, run))
    return out


def verify_results(paper, paths=None, verbose=True):
    """Verifies the settings of ``paper``'s result files made by older code (fingerprint not listed, a commit, no
    uncommitted changes): grouped by (commit, data set, settings: ``result_settings``), each group runs one golden
    case (smoke budget, its settings as overrides, synthetic data named after its data set) with the code of its
    commit and with today's code (keys the result's config lacks take today's defaults). When no group of a
    (fingerprint, settings) pair gives "changed" (or fails), tests/golden/<paper>.json's ``verified_settings``
    [fingerprint][settings_hash] records it (``verdicts`` per commit), and common.report counts those results as
    current; a failing commit removes an earlier entry. Needs today's code listed in the golden file. Returns one
    dict per group (commit, fingerprint, dataset, settings, diff, files, verdict)."""
    module = registry.load_paper(paper)
    today = registry.code_version(module)
    saved = load(paper)
    if saved is None:
        raise registry.UsageError(f"no {golden_path(paper)}")
    if today not in saved["fingerprints"]:
        raise registry.UsageError(f"today's code ({today}) is not listed in {golden_path(paper)}: "
                                  f"run `python -m common.golden check {paper}` / `update {paper}` first (a "
                                  "verification compares with today's listed code)")
    listed = set(saved["fingerprints"]) | {today}
    groups = {}
    for path, run in _result_records(paper, paths):
        git = run.get("git") or {}
        fp = git.get("code_fingerprint")
        if fp in listed or not git.get("commit") or git.get("dirty") or not isinstance(run.get("config"), dict):
            continue  # current already, or not verifiable (report.provenance_issue says why)
        settings = result_settings(module, run["config"])
        h = settings_hash(settings, run.get("dataset"))
        group = groups.setdefault((git["commit"], fp, run.get("dataset"), h), {
            "commit": git["commit"], "fingerprint": fp, "dataset": run.get("dataset"), "settings": settings,
            "hash": h, "diff": settings_diff(module, settings), "files": []})
        group["files"].append(str(path))
    verified = saved.get("verified_settings") or {}
    todo = [g for g in groups.values()
            if g["commit"] not in verified.get(g["fingerprint"], {}).get(g["hash"], {}).get("verdicts", {})]
    for g in groups.values():
        if g not in todo:
            g["verdict"] = "already verified: " + verified[g["fingerprint"]][g["hash"]]["verdicts"][g["commit"]]
    todays = {}
    for commit in dict.fromkeys(g["commit"] for g in todo):
        mine = [g for g in todo if g["commit"] == commit]
        fp, olds = run_cases_at_commit(paper, commit, [{"dataset": g["dataset"], "settings": g["settings"]}
                                                       for g in mine])
        for g, old in zip(mine, olds):
            key = (g["dataset"], g["hash"])
            if key not in todays:
                todays[key] = run_cases(paper, [{"dataset": g["dataset"], "settings": g["settings"]}])[0]
            new = todays[key]
            if "error" in old:
                g["verdict"] = f"changed: not run with the code of {commit[:7]}: {old['error']}"
            elif fp != g["fingerprint"]:
                g["verdict"] = f"changed: the code of {commit[:7]} has fingerprint {fp}, the result {g['fingerprint']}"
            elif "error" in new:
                g["verdict"] = f"changed: not run with today's code: {new['error']}"
            else:
                g["verdict"] = compare(old, new)
            if verbose:
                print(format_group(g), flush=True)
    # record: a (fingerprint, settings) pair is verified while every commit run with it gave today's outputs
    saved = load(paper)
    before = saved.get("verified_settings") or {}
    record = json.loads(json.dumps(before))
    for g in todo:
        if not g["verdict"].startswith("changed"):
            entry = record.setdefault(g["fingerprint"], {}).setdefault(
                g["hash"], {"dataset": g["dataset"], "settings": g["settings"], "verdicts": {}})
            entry["verdicts"][g["commit"]] = g["verdict"]
            entry["against"] = today
    for g in todo:  # a pair with a failing commit is not verified, whichever commit came first
        if g["verdict"].startswith("changed"):
            record.get(g["fingerprint"], {}).pop(g["hash"], None)
    record = {fp: entries for fp, entries in record.items() if entries}
    if record != before:
        saved = {k: v for k, v in saved.items() if k != "verified_settings"}
        if record:
            saved["verified_settings"] = record
        golden_path(paper).write_text(json.dumps(saved, indent=1, sort_keys=True) + "\n")
    return sorted(groups.values(), key=lambda g: (g["commit"], g["dataset"] or "", g["diff"]))


def format_group(g):
    """One line per group of ``verify_results``: commit, data set, settings against today's defaults, verdict."""
    n = len(g["files"])
    return (f"{g['commit'][:7]} ({g['fingerprint']}) {g['dataset']} [{g['diff']}] ({n} result file{'s' * (n > 1)}): "
            f"{g['verdict']}")


def numerics_version(paper):
    """What a cache key holds for the code: the first fingerprint listed in tests/golden/<paper>.json when today's
    code is listed there (code whose golden outputs are today's), else today's code fingerprint. A refactor that
    keeps the golden outputs keeps every cached phase; a change of the numerics, or unverified code, does not."""
    fp = registry.code_version(registry.load_paper(paper))
    listed = current_fingerprints(paper)
    return listed[0] if fp in listed else fp


def current_fingerprints(paper):
    """The code fingerprints whose golden outputs equal today's committed ones ([] without a golden file)."""
    saved = load(paper)
    return list(saved["fingerprints"]) if saved else []


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(prog="python -m common.golden", description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=["check", "update", "verify", "verify-results", "floor"])
    ap.add_argument("papers", nargs="*",
                    help="default: every paper (verify: PAPER COMMIT; verify-results: PAPER [RESULT.json ...])")
    ap.add_argument("--kernels", metavar="REASON",
                    help="update only: a declared kernel change (same maths, other kernels), accepted within the floor")
    args = ap.parse_args(argv)
    if args.kernels is not None and (args.command != "update" or not args.kernels.strip() or not args.papers):
        print("error: --kernels \"REASON\" goes with update PAPER [...] and needs a reason", file=sys.stderr)
        return 2
    if args.command == "verify-results":
        if not args.papers or args.papers[0] not in CASES:
            print(f"error: verify-results takes PAPER [RESULT.json ...]; papers: {', '.join(CASES)}", file=sys.stderr)
            return 2
        try:
            groups = verify_results(args.papers[0], args.papers[1:] or None)
        except registry.UsageError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        for g in groups:
            if g["verdict"].startswith("already"):
                print(format_group(g), flush=True)
        ok = sum(not g["verdict"].startswith("changed") for g in groups)
        print(f"{args.papers[0]}: {len(groups)} group(s) of older-code results, {ok} verified "
              f"(tests/golden/{args.papers[0]}.json verified_settings)")
        return 0
    if args.command == "verify":
        if len(args.papers) != 2 or args.papers[0] not in CASES:
            print("error: verify takes PAPER COMMIT", file=sys.stderr)
            return 2
        print(verify_commit(*args.papers), flush=True)
        return 0
    papers = args.papers or list(CASES)
    bad = [p for p in papers if p not in CASES or p not in registry.available_papers()]
    if bad:
        print(f"error: unknown paper(s) {', '.join(bad)}; choose from {', '.join(CASES)}", file=sys.stderr)
        return 2
    rc = 0
    for paper in papers:
        if args.command == "floor":
            try:
                print(floor(paper), flush=True)
            except registry.UsageError as e:
                print(f"error: {e}", file=sys.stderr, flush=True)
                rc = 1
            continue
        if args.command == "update":
            msg = update(paper, args.kernels)
            print(msg, flush=True)
            rc |= KERNELS_REFUSED in msg
            continue
        verdicts, listed = check(paper)
        for name, verdict in verdicts:
            print(f"{paper} {name} [{signature()}]: {verdict}", flush=True)
            rc |= verdict.startswith("changed")
        if not listed:
            print(f"{paper}: today's code fingerprint is not listed: run `python -m common.golden update {paper}`")
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
