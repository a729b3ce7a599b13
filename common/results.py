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


def mean_std(runs, key):
    """(mean, std, n) of ``run['metrics'][key]`` over runs (population std), or None without runs."""
    vals = [r["metrics"][key] for r in runs if key in r.get("metrics", {})]
    if not vals:
        return None
    return float(np.mean(vals)), float(np.std(vals)), len(vals)


def fmt(ms, digits=3):
    return "—" if ms is None else f"{ms[0]:.{digits}f} ± {ms[1]:.{digits}f} (n={ms[2]})"
