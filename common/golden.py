"""Golden runs: a tiny deterministic run per method and main option, whose outputs pin the numerics of the code.

    python -m common.golden check [paper ...]     # recompute and compare with tests/golden/<paper>.json
    python -m common.golden update [paper ...]    # after a code change: record today's outputs / code fingerprint
    python -m common.golden verify PAPER COMMIT    # list the fingerprint of an older commit whose outputs are today's

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
"""
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from common import registry

ROOT = Path(__file__).resolve().parents[1]
GOLDEN_DIR = ROOT / "tests" / "golden"
RTOL = 1e-5

# (case name, --set overrides, synthetic image size): the default and each option that changes the maths.
CASES = {
    "decs": [("default", {}, 16), ("variant=code", {"variant": "code"}, 16),
             ("cluster_optimizer=sgd", {"cluster_optimizer": "sgd"}, 16)],
    "dekm": [("default", {}, 16), ("full_batch=True", {"full_batch": True}, 16)],
    "dcss": [("default", {}, 16), ("q_clip=True", {"q_clip": True}, 16),
             ("phase1_optimizer=authors_sgd", {"phase1_optimizer": "authors_sgd"}, 16), ("mnet_layers=2", {"mnet_layers": 2}, 16)],
    "saip": [("default", {}, 28), ("variant=homo", {"variant": "homo"}, 28),
             ("target_gradient=True", {"target_gradient": True}, 28), ("kl_target=p1", {"kl_target": "p1"}, 28)],
    "rdc": [("default", {}, 28), ("phases=P1", {"phases": "P1"}, 28), ("pixel_range=01", {"pixel_range": "01"}, 28)],
}
DATASET_NAME = {"decs": "usps", "dekm": "usps", "dcss": "usps", "saip": "mnist-test", "rdc": "fmnist"}


def synthetic(size, n=60, k=3, seed=0):
    """n images (size x size x 1) in [0, 1] around k random prototypes; labels i % k."""
    rng = np.random.default_rng(seed)
    protos = rng.uniform(size=(k, size, size, 1))
    y = np.arange(n) % k
    x = np.clip(protos[y] + 0.15 * rng.normal(size=(n, size, size, 1)), 0, 1).astype("float32")
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


def run_case(paper, overrides, size):
    """Runs one golden case in this process; returns its outputs (JSON-able)."""
    import keras

    from common import cli, setup

    module = registry.load_paper(paper)
    x, y, k = synthetic(size)
    from common.datasets import Dataset

    data = Dataset(x=x, y=y, n_clusters=k, name=DATASET_NAME[paper])
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


def update(paper):
    """Records today's outputs for this machine's signature, and today's fingerprint when the outputs are kept
    (identical or within tolerance of this machine's recording). Returns a message."""
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
        record = {**saved, "fingerprints": [fp], "outputs": {sig: outs}}
        msg = f"{paper}: outputs CHANGED on {sig}; results of older code are now marked older; other machines' recordings dropped"
    record["command"] = "python -m common.golden update " + paper
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    golden_path(paper).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return msg


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
    ap.add_argument("command", choices=["check", "update", "verify"])
    ap.add_argument("papers", nargs="*", help="default: every paper (verify: PAPER COMMIT)")
    args = ap.parse_args(argv)
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
        if args.command == "update":
            print(update(paper), flush=True)
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
