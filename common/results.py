"""Result files: atomic JSON writing, loading and mean ± std summaries."""
import json
import os
import tempfile
from pathlib import Path

import numpy as np


def write_json(path, obj):
    """Writes ``obj`` to ``path`` atomically (a crash never leaves a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, default=_jsonable)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _jsonable(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"not JSON serialisable: {type(v)}")


def save_arrays(path, **arrays):
    """Atomic ``np.savez_compressed``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


SAMPLE_SIZE = 2000  # per-sample float arrays (embeddings) are kept for this many points: what the figures need


def sample_index(n, size=SAMPLE_SIZE):
    """The fixed, sorted sample of rows kept in result arrays (the same for every run on n samples)."""
    return np.sort(np.random.default_rng(0).choice(n, size=min(size, n), replace=False))


def save_run_arrays(path, n, **arrays):
    """A run's arrays: integer arrays (labels) whole; float arrays with one row per sample (embeddings, q) only at
    ``sample_index(n)``, saved as ``sample_index``; anything else (centres) whole."""
    idx = sample_index(n)
    out = {"sample_index": idx}
    for name, a in arrays.items():
        a = np.asarray(a)
        out[name] = a[idx] if a.ndim >= 2 and len(a) == n and a.dtype.kind == "f" else a
    save_arrays(path, **out)


def load_runs(folder):
    """All ``seed*.json`` result dicts in ``folder`` (sorted by seed); [] if none."""
    runs = [json.loads(p.read_text()) for p in Path(folder).glob("seed*.json")]
    return sorted(runs, key=lambda r: r["seed"])


def merge_tables(*tables):
    """One {method: {dataset: numbers}} from a paper's tables, each table adding its data sets to a method's row
    (a later table's entry for the same method and data set replaces the earlier one)."""
    out = {}
    for table in tables:
        for method, cols in table.items():
            out.setdefault(method, {}).update(cols)
    return out


def mean_std(runs, key):
    """(mean, std, n) of ``run['metrics'][key]`` over runs (population std), or None without runs."""
    vals = [r["metrics"][key] for r in runs if key in r.get("metrics", {})]
    if not vals:
        return None
    return float(np.mean(vals)), float(np.std(vals)), len(vals)


def fmt(ms, digits=3):
    """'0.981 ± 0.010 (n=3)'; one seed: '0.981 (n=1)' (no ± for a single value); '—' for None."""
    if ms is None:
        return "—"
    return f"{ms[0]:.{digits}f} (n=1)" if ms[2] < 2 else f"{ms[0]:.{digits}f} ± {ms[1]:.{digits}f} (n={ms[2]})"


def load_run_arrays(path):
    """A run's ``seed<k>.npz`` as a dict, always with ``sample_index``: the rows that the per-sample float arrays
    (embedding, q, ...) hold. Files written before the slim layout kept every row: their index is all rows."""
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    if "sample_index" not in arrays:
        arrays["sample_index"] = np.arange(len(arrays["labels"]))
    return arrays


def sampled(arrays, name_or_values):
    """An array (a key of ``arrays`` or per-sample values such as the true labels) at the rows of the per-sample
    float arrays, i.e. ``labels[sample_index]`` beside ``embedding``. Arrays already of that length are returned
    as they are (when n <= SAMPLE_SIZE the sample is every row, in order)."""
    a = arrays[name_or_values] if isinstance(name_or_values, str) else np.asarray(name_or_values)
    idx = arrays["sample_index"]
    return a if len(a) == len(idx) else a[idx]


def slim_file(path):
    """Rewrites one ``seed<k>.npz`` written before the slim layout in that layout (``save_run_arrays``: integer
    arrays whole, per-sample float arrays at ``sample_index(n)``, anything else whole), with n = len(labels).
    Returns (bytes before, bytes after), or None when the file already has ``sample_index`` (left untouched)."""
    path = Path(path)
    with np.load(path) as f:
        if "sample_index" in f.files:
            return None
        arrays = {k: f[k] for k in f.files}
    before = path.stat().st_size
    save_run_arrays(path, len(arrays["labels"]), **arrays)
    return before, path.stat().st_size


def slim(root, exclude=()):
    """``slim_file`` on every ``seed*.npz`` under ``root`` except below the folders in ``exclude``; prints and
    returns [(path, before, after)] for the files it rewrote."""
    exclude = [Path(e).resolve() for e in exclude]
    done = []
    for p in sorted(Path(root).rglob("seed*.npz")):
        if any(e == p.resolve() or e in p.resolve().parents for e in exclude):
            continue
        sizes = slim_file(p)
        if sizes:
            done.append((p, *sizes))
            print(f"{p}: {sizes[0] / 1024:.0f} KB -> {sizes[1] / 1024:.0f} KB", flush=True)
    return done


if __name__ == "__main__":  # python -m common.results slim results/ [--exclude results/decs/usps/paper]
    import argparse

    ap = argparse.ArgumentParser(prog="python -m common.results",
                                 description="slim: rewrite old seed*.npz files in the layout of save_run_arrays")
    ap.add_argument("command", choices=["slim"])
    ap.add_argument("root", nargs="?", default="results")
    ap.add_argument("--exclude", action="append", default=[], help="a folder to leave alone (repeatable)")
    args = ap.parse_args()
    rewritten = slim(args.root, args.exclude)
    print(f"{len(rewritten)} file(s) rewritten, {sum(b for _, b, _ in rewritten) / 2**20:.1f} MB -> "
          f"{sum(a for _, _, a in rewritten) / 2**20:.1f} MB")
