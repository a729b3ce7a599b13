"""Tables of ours-vs-paper numbers built from result files (never typed by hand).

    python -m common.report            # rewrite the results table in README.md between its markers
"""
import functools
import importlib
import sys
from pathlib import Path

from common import results

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_METRICS = ("acc", "nmi", "ari")


def metric_keys(module):
    """The metrics a paper reports (its METRICS, e.g. pairwise precision for SAIP), default ACC, NMI, ARI."""
    return tuple(getattr(module, "METRICS", DEFAULT_METRICS))


@functools.lru_cache(maxsize=None)
def code_version(paper):
    """Today's fingerprint of the code behind ``paper``'s results (common.cli.code_version)."""
    from common import cli

    return cli.code_version(importlib.import_module(f"papers.{paper}"))


def provenance_issue(run):
    """Why a result may not come from today's code, or None: no commit recorded, uncommitted changes, or the code
    it depends on (the paper's module, common training/checkpoint/metrics; comments and docstrings aside) differs
    from today's."""
    git = run.get("git") or {}
    if not git.get("commit"):
        return "no commit recorded (made before result files carried one)"
    if git.get("dirty"):
        return f"made with uncommitted changes on {git['commit'][:7]}"
    if git.get("code_fingerprint") != code_version(run["paper"]):
        return f"made by older code ({git['commit'][:7]}): the module or common training code changed since"
    return None


def notes(runs, n_clusters=None):
    """The table's notes for a set of seeds: empty clusters and provenance flags."""
    out = []
    lost = [r for r in runs if "nonempty_clusters" in r.get("metrics", {})
            and r["metrics"]["nonempty_clusters"] < len(r.get("cluster_sizes") or [])]
    if lost:
        out.append(f"{len(lost)}/{len(runs)} seeds left clusters empty")
    issues = sorted({i for i in map(provenance_issue, runs) if i})
    out += [f"{sum(provenance_issue(r) == i for r in runs)}/{len(runs)} seeds: {i}" for i in issues]
    return "; ".join(out)


def cell(ms, digits=3):
    return "—" if ms is None else f"{ms[0]:.{digits}f} ± {ms[1]:.{digits}f}"


def ours(folder, key, source="metrics"):
    """(mean, std, n) of a metric over the seed files in ``folder``; source 'metrics' or e.g.
    'extra_metrics/DCSS_u' or 'baseline_metrics/kmeans_on_pretrained_embedding'."""
    runs = results.load_runs(folder)
    if source != "metrics":
        top, name = source.split("/", 1)
        runs = [{"metrics": r.get(top, {}).get(name, {})} for r in runs]
    return results.mean_std(runs, key)


def paper_reference(module, dataset, runs=(), method=None):
    """(method, reported numbers or {}, our NMI key) for runs of ``module`` on ``dataset``: the row is ``method``,
    else the paper's ``method_of(config)`` (e.g. DEKM_F), else its METHOD; NMI in the paper's normalisation."""
    if method is None:
        method = module.method_of(runs[0]["config"]) if runs and hasattr(module, "method_of") else module.METHOD
    return method, module.PAPER_RESULTS.get(method, {}).get(dataset) or {}, getattr(module, "NMI_KEY", "nmi")


def paper_vs_ours(paper, datasets, profile, out=ROOT / "results", keys=None, method=None, source="metrics",
                  label=None, with_notes=False):
    """Markdown rows '| paper | method | dataset | metric | ours | seeds | paper [| notes] |' for one method;
    ``keys`` default to the paper's METRICS."""
    module = importlib.import_module(f"papers.{paper}")
    rows = []
    for ds in datasets:
        folder = Path(out) / paper / ds / profile
        runs = results.load_runs(folder)
        n = len(runs)
        row, ref, nmi_key = paper_reference(module, ds, runs, method)
        for i, key in enumerate(keys or metric_keys(module)):
            ms = ours(folder, nmi_key if key == "nmi" else key, source)
            p = ref.get(key)
            rows.append(f"| {paper} | {label or row} | {ds} | {key.upper()} | {cell(ms)} | {n} | "
                        f"{'—' if p is None else f'{p:.3f}'} |" + (f" {notes(runs) if i == 0 else ''} |"
                                                                    if with_notes else ""))
    return rows


HEADER = ["| paper | method | dataset | metric | ours (mean ± std) | seeds | paper (reported) | notes |",
          "|---|---|---|---|---|---|---|---|"]


def readme_table(out=ROOT / "results"):
    """Rows for every paper/dataset/profile that has result files."""
    rows = []
    for paper_dir in sorted(Path(out).glob("*")):
        if not (ROOT / "papers" / f"{paper_dir.name}.py").is_file():
            continue
        module = importlib.import_module(f"papers.{paper_dir.name}")
        for ds in module.DATASETS:
            for prof in ("quick", "paper"):
                if results.load_runs(paper_dir / ds / prof):
                    rows += [r.replace(f"| {ds} |", f"| {ds} ({prof}) |")
                             for r in paper_vs_ours(paper_dir.name, [ds], prof, out, with_notes=True)]
    return HEADER + rows if rows else ["(no result files yet)"]


def update_readme(path=ROOT / "README.md"):
    text = path.read_text()
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    if start not in text or end not in text:
        raise SystemExit(f"{path}: markers {start} / {end} not found")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(head + start + "\n" + "\n".join(readme_table()) + "\n" + end + tail)


if __name__ == "__main__":
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(ROOT))
    update_readme()
