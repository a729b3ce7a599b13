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
