"""Does a run reproduce its paper? The verdict rule, and tables of ours against the paper's numbers.

    verdict(ours_acc, paper_acc)           # "✓", "~" or "✗" (RULE); "—" without a number
    status(paper, dataset, profile="paper", out=ROOT / "results")   # the committed result files' verdict (a dict)
    table(module, dataset, runs, before)   # the verdict table ./reproduce.sh prints after its runs (lines)

Values are fractions (0.992); differences are in percentage points (100 x the difference). Our side is the mean
over seeds (± population std over 2+ seeds); the paper's side is its reported number (common.report.paper_reference:
the row of the runs' method, NMI in the paper's normalisation).
"""
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WITHIN, CLOSE = 2.0, 5.0  # points below the paper's value: ✓ up to WITHIN, ~ up to CLOSE, ✗ beyond
RULE = (f"verdict: ✓ ours at most {WITHIN:g} points below the paper's value (or above it), ~ at most {CLOSE:g} "
        f"points below, ✗ more than {CLOSE:g} points below (points: 100 × difference); the data set's verdict is "
        "its ACC's")
WORDS = {"✓": "reproduces", "~": "close (within 5 points)", "✗": "does not reproduce", "—": "no paper number",
         "not run": "not run", "no labels": "no labels: no metrics"}
NO_LABELS = "no labels: no metrics"


def points(ours, paper):
    """ours - paper in percentage points (rounded to 1e-9 so that 0.97 vs 0.99 is exactly -2)."""
    return round(100.0 * (float(ours) - float(paper)), 9)


def verdict(ours_acc, paper_acc):
    """'✓' when ``ours_acc`` is at most WITHIN points below ``paper_acc`` (or above it), '~' at most CLOSE points
    below, '✗' further below; '—' when either is None."""
    if ours_acc is None or paper_acc is None:
        return "—"
    d = points(ours_acc, paper_acc)
    return "✓" if d >= -WITHIN else "~" if d >= -CLOSE else "✗"


def mean_std(runs, key):
    """(mean, std, n) of ``run['metrics'][key]`` (population std), None when no run has it."""
    vals = [r["metrics"][key] for r in runs if key in (r.get("metrics") or {})]
    return (float(np.mean(vals)), float(np.std(vals)), len(vals)) if vals else None


def value_cell(ms, digits=3, seeds=False):
    """'0.981 ± 0.010' (one seed: '0.981'; ``seeds``: ' (3 seeds)' added); '—' for None."""
    if ms is None:
        return "—"
    text = f"{ms[0]:.{digits}f}" if ms[2] < 2 else f"{ms[0]:.{digits}f} ± {ms[1]:.{digits}f}"
    return text + (f" ({ms[2]} seed{'s' if ms[2] > 1 else ''})" if seeds else "")


def wall(run):
    """A run's wall time over all its sittings (common.cli.Sittings), else its one sitting's; None if unrecorded."""
    return run.get("wall_seconds_all_sittings") or run.get("wall_seconds")


def median_wall(runs, device_prefix=None):
    """Median wall seconds per seed of ``runs`` (only those whose environment.device starts with
    ``device_prefix``, e.g. 'cpu', when given), None without a measurement. The runs made in one sitting, when there
    are any: a run resumed across sittings also carries what each cut cost (work redone since the last checkpoint,
    pauses in the sittings before it), so it times the queue rather than the method (docs/timings.md lists all)."""
    device = lambda r: str((r.get("environment") or {}).get("device", ""))  # noqa: E731
    timed = [r for r in runs if wall(r) and (device_prefix is None or device(r).startswith(device_prefix))]
    whole = [r for r in timed if len(r.get("sittings") or ()) <= 1]
    walls = [wall(r) for r in (whole or timed)]
    return float(np.median(walls)) if walls else None


def duration(seconds):
    """'40 s', '25 min', '2.4 h', '28 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 10 * 3600 else f"{seconds / 3600:.0f} h"


def compare(module, dataset, runs, before=()):
    """Ours (``runs``) against the paper, metric by metric: a dict with ``method`` (the paper's row), ``nmi_key``,
    ``labelled`` (False when no run has metrics: data without labels), ``verdict`` (ACC's; '—' without the paper's
    ACC or ours) and ``metrics``: [{key, label, ours, paper, points, verdict, before}] (``ours``/``before``:
    (mean, std, n) of ``runs`` / ``before``, or None)."""
    from common import report

    method, ref, nmi_key = report.paper_reference(module, dataset, list(runs) or list(before))
    rows = []
    for key in report.metric_keys(module):
        ours_key = nmi_key if key == "nmi" else key
        ours, paper = mean_std(runs, ours_key), ref.get(key)
        rows.append({"key": key, "label": report.metric_label(key, nmi_key), "ours": ours, "paper": paper,
                     "points": None if ours is None or paper is None else points(ours[0], paper),
                     "verdict": verdict(ours and ours[0], paper), "before": mean_std(before, ours_key)})
    acc = next((r for r in rows if r["key"] == "acc"), None)
    labelled = any(r.get("metrics") for r in runs)
    return {"method": method, "nmi_key": nmi_key, "labelled": labelled, "metrics": rows,
            "verdict": (acc["verdict"] if acc else "—") if labelled else "no labels"}


def status(paper, dataset, profile="paper", out=ROOT / "results", setting=""):
    """The committed result files of ``paper`` on ``dataset`` at ``profile`` (folder out/paper/dataset/profile
    [/setting]) against the paper: ``compare``'s dict plus ``paper``, ``dataset``, ``profile``, ``folder``,
    ``seeds``, ``cpu_seconds_per_seed`` (median wall time of the runs on a CPU, None without one) and
    ``devices``. ``verdict`` is 'not run' when the folder holds no result file."""
    from common import registry, results

    module = registry.load_paper(paper)
    folder = Path(out) / paper / dataset / profile / setting
    runs = results.load_runs(folder)
    out = compare(module, dataset, runs)
    if not runs:
        out["verdict"] = "not run"
    devices = sorted({str((r.get("environment") or {}).get("device", "?")) for r in runs})
    return {**out, "paper": paper, "dataset": dataset, "profile": profile, "folder": folder,
            "seeds": [r["seed"] for r in runs], "cpu_seconds_per_seed": median_wall(runs, "cpu"), "devices": devices}


def aligned(rows):
    """Rows of cells as a Markdown table with padded columns (the first row is the header)."""
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return [line(rows[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows[1:]]


def table(module, dataset, runs, before=(), title=None):
    """The verdict table after a command's runs: per metric the paper reports, ours (mean ± std over ``runs``),
    the paper's value, ours - paper in points, the mean ± std of ``before`` (the folder's result files before the
    command wrote any: the committed ones) and the verdict; then the data set's verdict and RULE. Lines of text."""
    c = compare(module, dataset, runs, before)
    lines = [title] if title else []
    lines.append(f"paper's row: {c['method']} on {dataset}")
    if not c["labelled"]:
        return lines + [f"{NO_LABELS} (the data have no labels y); cluster sizes per seed: "
                        + "; ".join(str(r.get("cluster_sizes")) for r in runs)]
    rows = [["metric", "ours", "paper", "ours - paper", "committed before this run", "verdict"]]
    for m in c["metrics"]:
        rows.append([m["label"], value_cell(m["ours"]), "—" if m["paper"] is None else f"{m['paper']:.3f}",
                     "—" if m["points"] is None else f"{m['points']:+.1f} points",
                     "none" if m["before"] is None else value_cell(m["before"], seeds=True), m["verdict"]])
    lines += aligned(rows)
    lines.append(f"{dataset}: {c['verdict']} {WORDS.get(c['verdict'], '')}".rstrip())
    lines.append(RULE)
    return lines
