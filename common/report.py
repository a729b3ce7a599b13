"""Tables of ours-vs-paper numbers built from result files (never typed by hand).

    python -m common.report            # rewrite the generated blocks of README.md and docs/*.md
    python -m common.report --check    # exit 1 (and name the pages) when a generated block is out of date
    python -m common.report --check-data  # exit 1 when a result file's data fingerprint differs from today's loaders

Generated blocks sit between ``<!-- name:start -->`` and ``<!-- name:end -->``; PAGES says which page holds which
(BLOCKS makes them). README.md: the status of each paper x data set at the paper profile (``status_rows``: ours vs
the paper, the verdict, the command, the time per seed) and one compact row per run folder (``results_rows``).
docs/: the full per-metric table with every note (``full_results_table``), the notebooks' profiles, the profiles'
budgets against the paper's (from each module's PROFILES and Config), the CPU estimates (results/cpu_estimates.json),
the wall times of the committed runs and every other settings folder (ablations and readings: ``ablation_rows``).
Result files made before cluster counts were recorded get them from their .npz labels (``with_cluster_counts``,
marked as derived). A mean is printed with ± std only over 2+ seeds.
"""
import functools
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from common import results
from common import verdict as verdict_module
from common.verdict import verdict


ROOT = Path(__file__).resolve().parents[1]
DEFAULT_METRICS = ("acc", "nmi", "ari")


def metric_keys(module):
    """The metrics a paper reports (its METRICS, e.g. pairwise precision for SAIP), default ACC, NMI, ARI."""
    return tuple(getattr(module, "METRICS", DEFAULT_METRICS))


@functools.lru_cache(maxsize=None)
def code_version(paper):
    """Today's fingerprint of the code behind ``paper``'s results (common.cli.code_version)."""
    from common import registry

    return registry.code_version(importlib.import_module(f"papers.{paper}"))


def provenance_issue(run):
    """Why a result may not come from today's numerics, or None: no commit recorded, uncommitted changes, or code
    whose golden outputs differ from today's. A result is current when the code that made it is today's code or
    code whose golden runs gave today's outputs (its fingerprint is listed in tests/golden/<paper>.json:
    common.golden), so a refactor that keeps the golden outputs keeps the result current; or when its own settings
    were verified to give today's outputs with its code (its fingerprint and settings in that file's
    verified_settings: ``python -m common.golden verify-results``). Reads files only, runs nothing."""
    from common import golden

    git = run.get("git") or {}
    if not git.get("commit"):
        return "no commit recorded (made before result files carried one)"
    if git.get("dirty"):
        return f"made with uncommitted changes on {git['commit'][:7]}"
    fp = git.get("code_fingerprint")
    if (fp != code_version(run["paper"]) and fp not in golden.current_fingerprints(run["paper"])
            and not golden.settings_verified(run)):
        return f"made by older code ({git['commit'][:7]}): its golden outputs differ from today's code"
    return None


def budget_issue(run):
    """How a run's budget differs from today's profile of the same name (a profile changed after the run), or None.
    Settings the run overrode with --set are not budget differences."""
    try:
        module = importlib.import_module(f"papers.{run['paper']}")
    except (KeyError, ImportError):
        return None
    budget, cfg = getattr(module, "PROFILES", {}).get(run.get("profile")), run.get("config")
    if not budget or not cfg:
        return None
    over = run.get("overrides") or {}
    diff = [f"{k} {cfg[k]} (today {v})" for k, v in budget.items() if k in cfg and k not in over and cfg[k] != v]
    return f"budget of an older {run['profile']} profile: {', '.join(diff)}" if diff else None


def run_flags(run):
    """provenance_issue and budget_issue of one run, joined ('' when neither applies)."""
    return "; ".join(i for i in (provenance_issue(run), budget_issue(run)) if i)


def notes(runs, n_clusters=None):
    """The table's notes for a set of seeds: empty clusters (per seed, "counted from the .npz labels" when the
    result file predates the count), provenance flags, and budgets that differ from today's profile."""
    out = []
    lost = [r for r in runs if "nonempty_clusters" in r.get("metrics", {})
            and r["metrics"]["nonempty_clusters"] < len(r.get("cluster_sizes") or [])]
    if lost:
        empty = ", ".join(str(len(r["cluster_sizes"]) - r["metrics"]["nonempty_clusters"]) for r in lost)
        derived = " (counted from the .npz labels)" if any(r.get("derived") for r in lost) else ""
        out.append(f"{len(lost)}/{len(runs)} seeds left clusters empty: {empty} of {len(lost[0]['cluster_sizes'])}"
                   + derived)
    for flag in (provenance_issue, budget_issue):
        issues = sorted({i for i in map(flag, runs) if i})
        out += [f"{sum(flag(r) == i for r in runs)}/{len(runs)} seeds: {i}" for i in issues]
    return "; ".join(out)


DERIVED_BY = "common.report.with_cluster_counts (from the labels in seed<k>.npz; not in the result file)"


def with_cluster_counts(run, folder):
    """``run`` with ``cluster_sizes`` and ``metrics.nonempty_clusters`` / ``metrics.smallest_cluster`` computed
    from the labels in ``folder/seed<k>.npz`` when the result file predates them (a copy, marked
    ``derived: {fields, by}``; the file is not changed). Runs that have them, or have no .npz, come back as they are."""
    if "nonempty_clusters" in run.get("metrics", {}) and run.get("cluster_sizes"):
        return run
    path = Path(folder) / f"seed{run['seed']}.npz"
    if not path.is_file():
        return run
    arrays = results.load_run_arrays(path)
    labels = np.asarray(arrays["labels"], dtype=np.int64)
    k = max(len(arrays["centers"]) if "centers" in arrays else 0, int(labels.max()) + 1)
    sizes = np.bincount(labels, minlength=k)
    metrics = {**run.get("metrics", {}), "nonempty_clusters": int(np.count_nonzero(sizes)),
               "smallest_cluster": int(sizes[sizes > 0].min())}
    return {**run, "metrics": metrics, "cluster_sizes": sizes.tolist(),
            "derived": {"fields": ["cluster_sizes", "metrics.nonempty_clusters", "metrics.smallest_cluster"],
                        "by": DERIVED_BY}}


def load_runs(folder):
    """``results.load_runs(folder)``, each run completed by ``with_cluster_counts``."""
    return [with_cluster_counts(r, folder) for r in results.load_runs(folder)]


def cell(ms, digits=3):
    """A (mean, std, n) summary (results.mean_std) as 'mean ± std'; one seed has no spread: its value alone."""
    if ms is None:
        return "—"
    if len(ms) > 2 and ms[2] < 2:
        return f"{ms[0]:.{digits}f}"
    return f"{ms[0]:.{digits}f} ± {ms[1]:.{digits}f}"


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
                  label=None, with_notes=False, setting=""):
    """Markdown rows '| paper | method | dataset | metric | ours | seeds | paper [| notes] |' for one method;
    ``keys`` default to the paper's METRICS; ``setting`` a settings subfolder (e.g. 'variant=homo')."""
    module = importlib.import_module(f"papers.{paper}")
    rows = []
    for ds in datasets:
        folder = Path(out) / paper / ds / profile / setting
        runs = load_runs(folder)
        n = len(runs)
        row, ref, nmi_key = paper_reference(module, ds, runs, method)
        for i, key in enumerate(keys or metric_keys(module)):
            ms = ours(folder, nmi_key if key == "nmi" else key, source)
            p = ref.get(key)
            rows.append(f"| {paper} | {label or row} | {ds} | {metric_label(key, nmi_key)} | {cell(ms)} | {n} | "
                        f"{'—' if p is None else f'{p:.3f}'} |" + (f" {notes(runs) if i == 0 else ''} |"
                                                                    if with_notes else ""))
    return rows


def clusters_cell(runs):
    """'k, k, ... of K' non-empty clusters per seed, '—' without runs or counts."""
    counts = [(r["metrics"].get("nonempty_clusters"), len(r.get("cluster_sizes") or [])) for r in runs]
    if not counts or any(c is None for c, _ in counts):
        return "—"
    return ", ".join(str(c) for c, _ in counts) + f" of {counts[0][1]}"


def runs_table(specs, nmi_key="nmi", source="metrics"):
    """Markdown table of run folders: ``specs`` = [(label, folder)]; ACC, NMI (``nmi_key``), ARI as mean ± std
    over the seeds present, the non-empty clusters per seed and the smallest cluster (counted from the .npz labels
    for older files) and the notes (empty clusters, provenance). A folder without runs shows as missing."""
    rows = [f"| run | seeds | ACC | {metric_label('nmi', nmi_key)} | ARI | non-empty clusters per seed | "
            f"smallest cluster | notes |", "|---|---|---|---|---|---|---|---|"]
    for label, folder in specs:
        runs = load_runs(folder)
        if not runs:
            rows.append(f"| {label} | 0 | — | — | — | — | — | missing: {folder} |")
            continue
        cells = [cell(ours(folder, k, source)) for k in ("acc", nmi_key, "ari")]
        smallest = ", ".join(str(r["metrics"].get("smallest_cluster", "—")) for r in runs)
        seeds = ", ".join(str(r["seed"]) for r in runs)
        rows.append(f"| {label} | {seeds} | " + " | ".join(cells) + f" | {clusters_cell(runs)} | {smallest} | "
                    f"{notes(runs).replace('|', '/')} |")
    return rows


NMI_LABELS = {"nmi": "NMI (2I/(H+H))", "nmi_max": "NMI (I/max H)"}


def metric_label(key, nmi_key="nmi"):
    """A table's metric name; NMI names its normalisation (the paper's NMI_KEY): 2I/(H(y)+H(c)) or I/max(H)."""
    return NMI_LABELS[nmi_key] if key == "nmi" else key.upper()


HEADER = ["| paper | method | dataset | metric | ours (mean ± std) | seeds | paper (reported) | notes |",
          "|---|---|---|---|---|---|---|---|"]


def row_settings(module, folder):
    """The settings subfolders of ``folder`` (one data set and profile) whose runs are other rows of the paper's
    tables, e.g. SAIP's variants, DEKM_F, R-DC's baselines: ``method_of`` their config names a method that differs
    from the main runs', has reported numbers on the data set, and needs every override of the folder (setting one
    back to the main runs' value changes the method). Ablations of the main row (a learning rate, a noise level)
    and sweeps stay out. Sorted (name, method) pairs, e.g. [('variant=hit', 'HIT'), ('variant=homo', 'HOMO')]."""
    folder = Path(folder)
    if not hasattr(module, "method_of") or not folder.is_dir():
        return []
    main = results.load_runs(folder)
    main_method = module.method_of(main[0]["config"]) if main else module.METHOD
    out = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        runs = results.load_runs(sub)
        if not runs:
            continue
        config, method = runs[0]["config"], module.method_of(runs[0]["config"])
        if method == main_method or not module.PAPER_RESULTS.get(method, {}).get(folder.parent.name):
            continue
        # the folder's name says its settings; a result moved there after a default changed may record fewer
        over = {**dict(kv.split("=", 1) for kv in sub.name.split(",") if "=" in kv), **(runs[0].get("overrides") or {})}
        if main and any(module.method_of({**config, k: main[0]["config"].get(k)}) == method for k in over):
            continue
        out.append((sub.name, method))
    return out


def full_results_table(out=ROOT / "results"):
    """Rows for every paper/dataset/profile that has result files: the main runs, then each other row of the
    paper's tables run there (``row_settings``), the method column naming its ``--set`` settings; one row per
    metric, with every note (docs/results.md)."""
    rows = []
    for paper, module, ds, prof, setting, method in run_folders(out):
        label = f"{method} (`{setting}`)" if setting else None
        rows += [r.replace(f"| {ds} |", f"| {ds} ({prof}) |")
                 for r in paper_vs_ours(paper, [ds], prof, out, with_notes=True, setting=setting, label=label)]
    return HEADER + rows if rows else ["(no result files yet)"]


readme_table = full_results_table  # its name before the README was split into docs/


def run_folders(out=ROOT / "results", profiles=("quick", "paper")):
    """(paper, module, dataset, profile, setting, method) of every folder of results a table shows: the main runs
    ('' setting, method None) where they exist, then each other row of the paper's tables (``row_settings``)."""
    from common import cli

    for paper in cli.available_papers():  # the papers' order (cli.PAPERS)
        if not (Path(out) / paper).is_dir():
            continue
        module = importlib.import_module(f"papers.{paper}")
        for ds in module.DATASETS:
            for prof in profiles:
                base = Path(out) / paper / ds / prof
                for setting, method in ([("", None)] if results.load_runs(base) else []) + row_settings(module, base):
                    yield paper, module, ds, prof, setting, method


# --- docs/ablations.md: every other settings folder --------------------------------------------------------------
KMEANS_START = "baseline_metrics/kmeans_on_pretrained_embedding"


def ablation_folders(module, base):
    """The settings subfolders of ``base`` (one data set and profile) with result files that no other table shows:
    neither the main runs nor another row of the paper's tables (``row_settings``). Sorted names."""
    base = Path(base)
    if not base.is_dir():
        return []
    rows = {name for name, _ in row_settings(module, base)}
    return [p.name for p in sorted(base.iterdir()) if p.is_dir() and p.name not in rows and results.load_runs(p)]


def recorded_settings(name, runs):
    """'' when every result file in the settings folder ``name`` records the ``--set`` options its name says (the
    name is ``k=v,...`` sorted, as common.cli.run_folder makes it), else a note of what the files record (results
    moved into the folder after a default changed record the options of their day)."""
    sets = sorted({",".join(f"{k}={v}" for k, v in sorted((r.get("overrides") or {}).items())) for r in runs})
    if sets == [name]:
        return ""
    return "the result files record " + " / ".join(f"`--set {s}`" if s else "no `--set`" for s in sets)


def ablation_rows(out=ROOT / "results", profiles=("quick", "paper")):
    """docs/ablations.md: per paper, one table of its ablation folders (``ablation_folders``) on each data set and
    profile: the ``--set`` options (the folder's name; a note where its result files record others), the seeds, the
    paper's metrics (its METRICS, NMI in its NMI_KEY) as mean ± std over the seeds, the k-means start's ACC (k-means
    on the pre-trained embedding) where recorded (over the seeds that record it, said when not all do), the
    non-empty clusters per seed and the notes (empty clusters, provenance, budget)."""
    from common import cli

    out_rows = []
    for paper in cli.available_papers():
        if not (Path(out) / paper).is_dir():
            continue
        module = importlib.import_module(f"papers.{paper}")
        nmi_key, keys = getattr(module, "NMI_KEY", "nmi"), metric_keys(module)
        table = []
        for ds in module.DATASETS:
            for prof in profiles:
                base = Path(out) / paper / ds / prof
                for name in ablation_folders(module, base):
                    runs = load_runs(base / name)
                    cells = [cell(results.mean_std(runs, nmi_key if k == "nmi" else k)) for k in keys]
                    ms = ours(base / name, "acc", KMEANS_START)
                    start = cell(ms) + (f" ({ms[2]} of {len(runs)} seeds)" if ms and ms[2] < len(runs) else "")
                    note = "; ".join(n for n in (notes(runs), recorded_settings(name, runs)) if n)
                    table.append(f"| {ds} ({prof}) | `{name}` | {', '.join(str(r['seed']) for r in runs)} | "
                                 + " | ".join(cells) + f" | {start} | {clusters_cell(runs)} | "
                                 f"{note.replace('|', '/')} |")
        if table:
            out_rows += [f"## {paper}", "",
                         "| data set (profile) | `--set` | seeds | "
                         + " | ".join(metric_label(k, nmi_key) for k in keys)
                         + " | k-means start ACC | non-empty clusters per seed | notes |",
                         "|---|---|---|" + "---|" * len(keys) + "---|---|---|", *table, ""]
    return out_rows[:-1] if out_rows else ["(no ablation folders yet)"]


# --- the README's two tables ------------------------------------------------------------------------------------
duration = verdict_module.duration   # '45 s', '25 min', '2.4 h', '28 h' (one rule for README, docs and the CLI)
run_wall = verdict_module.wall       # a run's wall time over all its sittings (common.cli.Sittings)


def cpu_seconds_per_seed(runs):
    """Median wall time of the runs made on the CPU (their device 'cpu:...'), or None."""
    return verdict_module.median_wall(runs, "cpu")


def cpu_estimates(out=ROOT / "results"):
    """{(paper, dataset): estimate} from ``out``/cpu_estimates.json (python -m benchmarks.cpu_estimates), or {}."""
    path = Path(out) / "cpu_estimates.json"
    if not path.is_file():
        return {}
    return {(e["paper"], e["dataset"]): e for e in json.loads(path.read_text()).get("estimates", [])}


def _estimate_cell(e):
    """'≈ 28 h (estimate)'; '≤' where a stage is only bounded by its cap (the stopping rule usually ends it)."""
    bound = any("at most" in k for k in e.get("stages_hours", {}))
    return f"{'≤' if bound else '≈'} {duration(3600 * e['hours'])} (estimate)"


def command(paper, dataset):
    """The command that runs ``paper`` on ``dataset`` at the default (paper) profile."""
    return f"`./reproduce.sh {paper} {dataset}`"


STATUS_HEADER = ["| paper | data set | ACC ours / paper | NMI ours / paper | seeds | verdict | command | "
                 "time per seed (2 CPU cores) |", "|---|---|---|---|---|---|---|---|"]


def status_rows(out=ROOT / "results", profile="paper"):
    """One row per paper x data set (its DATASETS) at ``profile``: our mean ACC and NMI (the paper's NMI) against
    the paper's, the seeds, the verdict on ACC (``verdict``; 'not run' without result files), the command, and the
    median wall time per seed of the runs on the CPU (else the CPU estimate, marked)."""
    rows = list(STATUS_HEADER)
    estimates = cpu_estimates(out)
    for paper in documented_papers():
        module = importlib.import_module(f"papers.{paper}")
        for ds in module.DATASETS:
            runs = load_runs(Path(out) / paper / ds / profile)
            method, ref, nmi_key = paper_reference(module, ds, runs)
            pair = []
            for key in ("acc", nmi_key):
                ms = results.mean_std(runs, key)
                p = ref.get("nmi" if key == nmi_key else key)
                pair.append(f"{'—' if ms is None else f'{ms[0]:.3f}'} / {'—' if p is None else f'{p:.3f}'}")
            acc = results.mean_std(runs, "acc")
            if not runs:
                word = "not run"
            elif acc is None or ref.get("acc") is None:
                word = "—"
            else:
                word = verdict(acc[0], ref["acc"])
            seconds = cpu_seconds_per_seed(runs)
            time_cell = (duration(seconds) if seconds is not None else
                         _estimate_cell(estimates[paper, ds]) if (paper, ds) in estimates else "—")
            rows.append(f"| {paper} | {ds} | {pair[0]} | {pair[1]} | {len(runs) or '—'} | {word} | "
                        f"{command(paper, ds)} | {time_cell} |")
    return rows


OLDER_CODE, OLDER_BUDGET = "†", "‡"  # the compact table's marks (the full table in docs/results.md says why)


def empty_cell(runs):
    """Empty clusters per seed, 'none' when every seed kept every cluster, '—' without counts."""
    counts = [(r["metrics"].get("nonempty_clusters"), len(r.get("cluster_sizes") or [])) for r in runs]
    if not counts or any(c is None or not k for c, k in counts):
        return "—"
    empty = [k - c for c, k in counts]
    return "none" if not any(empty) else ", ".join(map(str, empty)) + f" of {counts[0][1]}"


RESULTS_HEADER = ["| paper | method | data set | profile | seeds | ACC | NMI | ARI | paper ACC / NMI | "
                  "empty clusters per seed |", "|---|---|---|---|---|---|---|---|---|---|"]


def results_rows(out=ROOT / "results"):
    """The README's compact results: one row per run folder (method x data set x profile, and settings folder),
    ACC / NMI (the paper's NMI) / ARI as mean ± std (a single seed: its value), the paper's ACC / NMI, the empty
    clusters per seed; the seeds cell is marked OLDER_CODE when a seed's code differs from today's (or is not
    recorded) and OLDER_BUDGET when a seed ran an older budget of its profile."""
    rows = []
    for paper, module, ds, prof, setting, method in run_folders(out):
        folder = Path(out) / paper / ds / prof / setting
        runs = load_runs(folder)
        name, ref, nmi_key = paper_reference(module, ds, runs, method)
        marks = ((OLDER_CODE if any(map(provenance_issue, runs)) else "")
                 + (OLDER_BUDGET if any(map(budget_issue, runs)) else ""))
        cells = [cell(results.mean_std(runs, k)) for k in ("acc", nmi_key, "ari")]
        p = " / ".join("—" if ref.get(k) is None else f"{ref[k]:.3f}" for k in ("acc", "nmi"))
        label = f"{name} `{setting}`" if setting else name
        rows.append(f"| {paper} | {label} | {ds} | {prof} | {len(runs)}{marks} | " + " | ".join(cells)
                    + f" | {p} | {empty_cell(runs)} |")
    return RESULTS_HEADER + rows if rows else ["(no result files yet)"]


def documented_papers():
    """Papers whose module is committed (git ls-files papers/): a module still being written is not described."""
    from common import cli

    try:
        tracked = subprocess.run(["git", "ls-files", "papers"], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        tracked = [f"papers/{p}.py" for p in cli.available_papers()]
    return [p for p in cli.available_papers() if f"papers/{p}.py" in tracked]


def _value(v, key=None):
    if v is None:
        return "all" if key == "subset_per_class" else "`None`"
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)


def _config_comments(config_cls):
    """{field: its inline comment} from the Config class's source (the comment is the field's documentation)."""
    import inspect

    out = {}
    for line in inspect.getsource(config_cls).splitlines():
        m = re.match(r"\s*(\w+)\s*:\s*[\w\[\], ]+=\s*[^#]*#\s*(.*)", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


# What a budget setting is, for the budget tables (the Config's own comment, where it has one, follows).
SETTING_NAMES = {"subset_per_class": "smoke only: a stratified subset (images per class) instead of all the data",
                 "ae_epochs": "autoencoder pre-training epochs", "cluster_iters": "clustering-stage iterations (batches)",
                 "max_iters": "clustering-stage iterations at most", "phase1_epochs": "phase-1 epochs",
                 "phase2_epochs": "phase-2 epochs"}


def _share(v, ref):
    pct = 100 * v / ref
    return f" ({pct:.0f} %)" if pct >= 1 else f" ({pct:.1g} %)"


def budget_rows(paper):
    """Markdown table of a paper's profiles (its PROFILES against its Config defaults): one row per setting a
    profile changes, with the share of the paper profile's value in brackets and the Config field's comment.
    Read from the module, so it cannot drift from the code."""
    import dataclasses

    module = importlib.import_module(f"papers.{paper}")
    profiles = module.PROFILES
    keys = list(dict.fromkeys(k for prof in profiles.values() for k in prof))
    defaults = {f.name: f.default for f in dataclasses.fields(module.Config)}
    comments = _config_comments(module.Config)
    rows = [f"| {paper}: setting | " + " | ".join(f"`{p}`" for p in profiles) + " | Config default | what it is |",
            "|---|" + "---|" * (len(profiles) + 2)]
    for key in keys:
        ref = profiles.get("paper", {}).get(key, defaults.get(key))
        cells = []
        for prof in profiles.values():
            v = prof.get(key, None if key == "subset_per_class" else defaults.get(key))
            numeric = isinstance(v, (int, float)) and isinstance(ref, (int, float)) and ref
            cells.append(_value(v, key) + (_share(v, ref) if numeric and v != ref and key != "subset_per_class" else ""))
        default = _value(None if key == "subset_per_class" else defaults.get(key), key)
        note = comments.get(key, "")
        note = "the authors' code's value" if note == "code" else note
        note = "; ".join(n for n in (SETTING_NAMES.get(key, ""), note) if n)
        rows.append(f"| `{key}` | " + " | ".join(cells) + f" | {default} | {note} |")
    return rows


def budgets_block():
    """The budget tables of docs/budgets.md, one per committed paper."""
    out = []
    for paper in documented_papers():
        out += budget_rows(paper) + [""]
    return out[:-1] if out else ["(no paper modules)"]


def load_note(run):
    """'load a → b' (1-minute load average at start and end) or 'load not recorded' (``shared_cpu`` reads it), and
    ', c of n cores busy' where the run recorded its CPU time (cores_busy)."""
    la, busy = run.get("load_average"), cores_busy(run)
    text = f"load {la['start'][0]:.1f} → {la['end'][0]:.1f}" if la else "load not recorded"
    return text + (f", {busy:.1f} of {own_threads(run) or '?'} cores busy" if busy is not None else "")


def own_threads(run):
    """The threads a run keeps busy: the CPU cores its machine had (TensorFlow's op pools use every core), from its
    environment's ``cpu.cores`` or, in older files, its device 'cpu:<n> cores'; None when neither is recorded."""
    env = run.get("environment") or {}
    cores = (env.get("cpu") or {}).get("cores")
    if not cores:
        m = re.fullmatch(r"cpu:(\d+) cores", str(env.get("device", "")))
        cores = int(m.group(1)) if m else None
    return cores


def shared_cpu(run):
    """Whether other jobs shared the CPU with ``run``: its 1-minute load average (start or end) above its own
    threads + 0.5 (a job on every core keeps the load near the core count by itself). None when the load or the
    cores were not recorded."""
    la, threads = run.get("load_average"), own_threads(run)
    if not la or not threads:
        return None
    return max(la["start"][0], la["end"][0]) > threads + 0.5


def resumed(run):
    """Whether a phase of ``run`` was resumed from a checkpoint (its ``resumed_at`` epochs): its ``wall_seconds`` then
    count the last sitting only, while the phases' ``epoch_seconds`` cover every sitting."""
    return any(isinstance(h, dict) and h.get("resumed_at") for h in run.get("history", {}).values())


def wall_note(run):
    """A run's wall time for the timing table: all its sittings when it was resumed and recorded them (common.cli
    .Sittings), else its one sitting, flagged when a phase was resumed (then the last sitting only)."""
    sittings = run.get("sittings") or []
    if len(sittings) > 1:
        return f"{run['wall_seconds_all_sittings']:.0f} ({len(sittings)} sittings)"
    return f"{run['wall_seconds']:.0f}" + (" (resumed: last sitting only)" if resumed(run) else "")


def cores_busy(run):
    """The process's CPU time over its wall time, all sittings (common.cli.Sittings): about the core count for a run
    alone on its machine, less when it was paused (SIGSTOP) or shared. None in files made before it was recorded."""
    # the pair of one scope (as verdict.wall reads it): a run resumed from a sitting that recorded no CPU time has a
    # wall over all sittings but no CPU total, so None rather than its last sitting's CPU over every sitting's wall
    scope = "_all_sittings" if "wall_seconds_all_sittings" in run else ""
    cpu, wall = run.get("cpu_seconds" + scope), run.get("wall_seconds" + scope)
    return cpu / wall if cpu is not None and wall else None


def _interval(run):
    import datetime

    try:
        end = datetime.datetime.strptime(run["finished"], "%Y-%m-%dT%H:%M:%SZ").timestamp()
    except (KeyError, ValueError):
        return None
    return end - run.get("wall_seconds", 0.0), end


def overlapping(run, out=ROOT / "results"):
    """How many other result files under ``out`` (training runs, any paper) were running while ``run`` ran, from
    their finish times and wall times: evidence of a shared CPU where the load was not recorded."""
    mine = _interval(run)
    if mine is None:
        return 0
    n = 0
    for p in Path(out).rglob("*.json"):
        try:
            other = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(other, dict) or "history" not in other or (
                other.get("paper"), other.get("dataset"), other.get("profile"), other.get("seed"), other.get("finished")) == (
                run.get("paper"), run.get("dataset"), run.get("profile"), run.get("seed"), run.get("finished")):
            continue
        iv = _interval(other)
        if iv and iv[0] < mine[1] and mine[0] < iv[1]:
            n += 1
    return n


MAIN_COMMAND = ("decs", "usps", "paper", (0,))  # ./reproduce.sh decs usps: the README's main job (paper, seed 0)


def main_command_line(out=ROOT / "results"):
    """One sentence on how long the README's main command took: the committed runs' wall times and their load."""
    paper, ds, prof, seeds = MAIN_COMMAND
    runs = [r for r in results.load_runs(Path(out) / paper / ds / prof) if r["seed"] in seeds]
    seeds_text = f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
    if not runs:
        return f"`./reproduce.sh {paper} {ds}` ({prof}, {seeds_text}): no committed runs to time."
    walls = [run_wall(r) for r in runs]
    loads = sorted({load_note(r) for r in runs})
    shared = any(shared_cpu(r) for r in runs)
    overlap = [overlapping(r, out) for r in runs]
    when = ("measured while other jobs shared the CPU" if shared else
            f"the load was not recorded, but other committed runs ran at the same time ({', '.join(map(str, overlap))} "
            f"per seed, from the result files' finish and wall times), so the CPU was shared"
            if any(n.startswith("load not recorded") for n in loads) and any(overlap) else
            "the load was not recorded" if any(n.startswith("load not recorded") for n in loads) else
            "the machine's cores were not recorded" if any(shared_cpu(r) is None for r in runs) else
            "measured on a quiet machine")
    spread = (f"{duration(walls[0])}" if len(walls) == 1 else
              f"{duration(sum(walls))} in all, {duration(min(walls))}–{duration(max(walls))} per seed")
    return (f"`./reproduce.sh {paper} {ds}` ({prof}, {seeds_text}): {spread} "
            f"({', '.join(sorted({r.get('environment', {}).get('device', '?') for r in runs}))}; {when}).")


def timing_rows(out=ROOT / "results"):
    """Wall time per seed of every committed main run and other paper row (``row_settings``), with its load."""
    rows = [main_command_line(out), "", "| paper | dataset (profile) | wall per seed (s) | seeds | device | load (1-min average, start → end) |",
            "|---|---|---|---|---|---|"]
    for paper in documented_papers():
        module = importlib.import_module(f"papers.{paper}")
        for ds in module.DATASETS:
            for prof in ("quick", "paper"):
                base = Path(out) / paper / ds / prof
                for setting, _ in [("", None)] + row_settings(module, base):
                    runs = results.load_runs(base / setting)
                    if not runs:
                        continue
                    walls = ", ".join(wall_note(r) for r in runs)
                    loads = [load_note(r) for r in runs]  # in the order of the wall times
                    if len(runs) > 1 and len(set(loads)) == 1:
                        loads = [f"{loads[0]} (every seed)"]
                    device = sorted({r.get("environment", {}).get("device", "?") for r in runs})
                    where = f"{ds} ({prof}{', ' + setting if setting else ''})"
                    rows.append(f"| {paper} | {where} | {walls} | {len(runs)} | {', '.join(device)} | "
                                f"{'; '.join(loads)} |")
    return rows


PROFILE_LINE = re.compile(r"^profile *[:=] *(\w+)", re.I | re.M)
COMMIT_LINE = re.compile(r"code: commit (\w+)( \+ uncommitted changes)?")


def notebook_profile(path):
    """(profile, commit or None, dirty) a committed notebook was executed at, read from its first outputs
    ('profile: quick | ...' and 'code: commit <sha>'), or (None, None, None) if it holds no outputs."""
    nb = json.loads(Path(path).read_text())
    text = ""
    for c in nb["cells"]:
        for o in c.get("outputs", []):
            t = o.get("text", "")
            text += "".join(t) if isinstance(t, list) else t
        if PROFILE_LINE.search(text):
            break
    prof, commit = PROFILE_LINE.search(text), COMMIT_LINE.search(text)
    return (prof.group(1) if prof else None, commit.group(1) if commit else None,
            bool(commit and commit.group(2)) if commit else None)


def notebooks_block(link_prefix=""):
    """The profile and commit each committed notebook was executed at; links relative to the page (``link_prefix``:
    the way from the page's folder to the repository root)."""
    rows = ["| notebook | executed at profile | code it ran |", "|---|---|---|"]
    for paper in documented_papers():
        path = ROOT / "notebooks" / f"{paper}.ipynb"
        if not path.is_file():
            continue
        prof, commit, dirty = notebook_profile(path)
        code = "not recorded" if commit is None else f"`{commit[:7]}`" + (" + uncommitted changes" if dirty else "")
        rows.append(f"| [`notebooks/{paper}.ipynb`]({link_prefix}notebooks/{paper}.ipynb) | {prof or 'not executed'} | {code} |")
    return rows


def estimates_block(out=ROOT / "results"):
    """The CPU estimates table of ``out``/cpu_estimates.json (written by python -m benchmarks.cpu_estimates)."""
    path = Path(out) / "cpu_estimates.json"
    if not path.is_file():
        return ["(no estimates yet: python -m benchmarks.cpu_estimates)"]
    from benchmarks import cpu_estimates as ce

    return ce.table(json.loads(path.read_text())["estimates"])


def ci_command(root=ROOT):
    """The README's test command: the last line of .ci/run, which runs it on a clean checkout (a bash block)."""
    lines = [line for line in (Path(root) / ".ci" / "run").read_text().splitlines() if line.strip()]
    return ["```bash", lines[-1], "```"]


BLOCKS = {"status": status_rows, "test-command": ci_command, "results": results_rows, "results-full": full_results_table,
          "budgets": budgets_block, "estimates": estimates_block, "timings": timing_rows,
          "notebooks": functools.partial(notebooks_block, link_prefix="../"), "ablations": ablation_rows}

# Which generated blocks each page holds (paths from the repository root); every one must have its markers.
PAGES = {"README.md": ("status", "test-command", "results"), "docs/results.md": ("results-full", "notebooks"),
         "docs/budgets.md": ("budgets",), "docs/cpu-estimates.md": ("estimates",), "docs/timings.md": ("timings",),
         "docs/ablations.md": ("ablations",)}


def render(text, names, where="page"):
    """``text`` with the blocks ``names`` (<!-- name:start --> ... <!-- name:end -->) regenerated by BLOCKS."""
    for name in names:
        start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
        if start not in text or end not in text:
            raise SystemExit(f"{where}: markers {start} / {end} not found")
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + start + "\n" + "\n".join(BLOCKS[name]()) + "\n" + end + tail
    return text


def update_readme(path=ROOT / "README.md", names=None):
    """Rewrites the generated blocks of one page: ``names``, else the page's PAGES entry, else every block of
    BLOCKS whose markers it has. Returns whether the page changed."""
    path = Path(path)
    text = path.read_text()
    if names is None:
        rel = path.resolve().relative_to(ROOT).as_posix() if path.resolve().is_relative_to(ROOT) else None
        names = PAGES.get(rel) or [n for n in BLOCKS if f"<!-- {n}:start -->" in text]
    new = render(text, names, where=str(path))
    if new != text:
        path.write_text(new)
    return new != text


def stale_pages(root=ROOT):
    """The pages of PAGES whose generated blocks differ from what the generator makes now."""
    return [rel for rel, names in PAGES.items()
            if render((Path(root) / rel).read_text(), names, where=rel) != (Path(root) / rel).read_text()]


def update_all(root=ROOT):
    """Rewrites every page of PAGES; returns the pages that changed."""
    return [rel for rel, names in PAGES.items() if update_readme(Path(root) / rel, names)]


# --- python -m common.report --check-data: the recorded data fingerprints against today's loaders -----------------
DATA_RTOL = 1e-9  # relative tolerance on the float64 sums x_sum, x_sq


def data_recipe(rec):
    """How the array behind a record's ``data`` fingerprint was made, as (kind, paper, dataset, subset_per_class):
    kind 'run' (common.cli.run_one: datasets.load, then datasets.subset(.., seed=0) when the profile sets
    subset_per_class, read through cli.make_config) or 'baselines' (common.baselines.write: the paper's ``prepare``,
    flattened to float64). A str instead says why the array cannot be rebuilt (a --data file, an unknown recipe)."""
    from common import cli, datasets

    if rec.get("data_file"):
        return f"made from a user's file (--data {rec['data_file']})"
    paper, name = rec.get("paper"), rec.get("dataset")
    if datasets.base_name(name) not in datasets.LOADERS:
        return f"unknown data set {name!r}"
    try:
        module = importlib.import_module(f"papers.{paper}")
    except ImportError:
        return f"unknown paper {paper!r}"
    if "profile" not in rec:
        if rec.get("input") == "pixels":  # common.baselines
            return ("baselines", paper, name, None)
        return "unknown recipe: neither a run of common.cli (no profile) nor a pixel baseline"
    profile = rec["profile"]
    if profile not in getattr(module, "PROFILES", {}):
        return f"profile {profile!r} is not one of {paper}'s profiles today"
    try:
        _, subset = cli.make_config(module, profile, rec.get("overrides") or {})
    except (TypeError, ValueError):  # an override no Config field takes today; the subset is the profile's alone
        subset = module.PROFILES[profile].get("subset_per_class")
    return ("run", paper, name, subset)


def recipe_fingerprint(recipe, data):
    """training.data_fingerprint of the array ``recipe`` (data_recipe) makes from the loaded Dataset ``data``."""
    from common import datasets, training

    kind, paper, _, subset = recipe
    if kind == "baselines":
        module = importlib.import_module(f"papers.{paper}")
        x = module.prepare(data) if hasattr(module, "prepare") else data.x
        x = np.asarray(x, np.float64).reshape(len(data), -1)
    else:
        x = datasets.subset(data, subset, seed=0).x if subset else data.x
    return training.data_fingerprint(x)


def fingerprint_mismatch(recorded, today, rtol=DATA_RTOL):
    """What differs between a recorded and today's data fingerprint: the shape, x_sum or x_sq beyond a relative
    ``rtol`` (a missing or non-finite value differs); '' when nothing does."""
    out = []
    if list(recorded.get("shape") or []) != list(today["shape"]):
        out.append(f"shape {recorded.get('shape')} recorded, {today['shape']} today")
    for key in ("x_sum", "x_sq"):
        a, b = recorded.get(key), today[key]
        if not (isinstance(a, (int, float)) and abs(a - b) <= rtol * max(abs(a), abs(b))):
            out.append(f"{key} {a!r} recorded, {b!r} today")
    return "; ".join(out)


def check_data(runs, load=None):
    """Today's data fingerprint of every (path, record) in ``runs`` that records one (``data``), by the recipe that
    wrote it (data_recipe), against the recorded one and the recorded ``n_samples``. ``load`` (name -> Dataset):
    default datasets.load, for data sets whose files are here (datasets.available); each data set is loaded once, and a
    DataError skips its records. Returns {"checked": [path], "mismatch": [(path, reason)], "skipped": [(path,
    reason)], "not_checked": [(path, reason)]}; mismatched records are also in "checked"."""
    from common import datasets

    out = {"checked": [], "mismatch": [], "skipped": [], "not_checked": []}
    todo = []
    for path, rec in runs:
        if not isinstance(rec.get("data"), dict):
            continue
        recipe = data_recipe(rec)
        if isinstance(recipe, str):
            out["not_checked"].append((path, recipe))
        else:
            todo.append((recipe[2], str(path), path, rec, recipe))
    loaded, prints = (None, None), {}  # one data set in memory at a time (records sorted by data set)
    for name, _, path, rec, recipe in sorted(todo, key=lambda t: t[:2]):
        if loaded[0] != name:
            try:
                if load is None and not datasets.available(name):
                    raise datasets.DataError(f"{name}: files not here (common.datasets.available)")
                loaded = (name, (load or datasets.load)(name))
            except datasets.DataError as e:
                loaded = (name, e)
        if isinstance(loaded[1], Exception):
            out["skipped"].append((path, f"data not available: {loaded[1]}"))
            continue
        if recipe not in prints:
            prints[recipe] = recipe_fingerprint(recipe, loaded[1])
        today = prints[recipe]
        reasons = [fingerprint_mismatch(rec["data"], today)]
        if rec.get("n_samples") is not None and rec["n_samples"] != today["shape"][0]:
            reasons.append(f"n_samples {rec['n_samples']} recorded, {today['shape'][0]} today")
        if any(reasons):
            how = (f"{recipe[1]}'s baseline pixels" if recipe[0] == "baselines" else
                   f"{rec['profile']} profile: subset_per_class {recipe[3]}, seed 0" if recipe[3] else
                   f"{rec['profile']} profile: all the data")
            out["mismatch"].append((path, "; ".join(r for r in reasons if r) + f" ({name}, {how})"))
        out["checked"].append(path)
    return out


def data_issues(runs, load=None):
    """(path, reason) of every record in ``runs`` whose data fingerprint differs from today's (check_data)."""
    return check_data(runs, load)["mismatch"]


def result_records(out=ROOT / "results"):
    """(path, record) of every JSON file under ``out`` that holds a dict, sorted by path."""
    for p in sorted(Path(out).rglob("*.json")):
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict):
            yield p, rec


def data_check_main(out=ROOT / "results", load=None):
    """``python -m common.report --check-data``: one 'error: <path>: ...' line per mismatch (stderr), the skipped and
    unchecked files counted by reason, a summary line; returns 1 on any mismatch, else 0."""
    import collections

    records = list(result_records(out))
    res = check_data(records, load)

    def rel(p):
        p = Path(p).resolve()
        return p.relative_to(ROOT).as_posix() if p.is_relative_to(ROOT) else str(p)

    for path, reason in sorted(res["mismatch"], key=lambda t: str(t[0])):
        print(f"error: {rel(path)}: {reason}", file=sys.stderr)
    for kind in ("skipped", "not_checked"):
        for reason, n in sorted(collections.Counter(r for _, r in res[kind]).items()):
            print(f"{kind.replace('_', ' ')}: {n} file{'s' if n > 1 else ''}: {reason}")
    without = sum(1 for _, r in records if "seed" in r and not isinstance(r.get("data"), dict))
    ignored = git_ignored(out, res["checked"])
    print(f"data fingerprints: {len(res['checked'])} checked ({len(res['mismatch'])} mismatched"
          + (f"; {len(ignored)} of them in git-ignored folders, e.g. smoke outputs" if ignored else "") + "), "
          f"{len(res['skipped'])} skipped (data not here), {len(res['not_checked'])} not checked; "
          f"{without} files with a seed record no fingerprint")
    return 1 if res["mismatch"] else 0


def git_ignored(folder, paths):
    """The ``paths`` that git ignores in the repository holding ``folder`` (none outside a repository): result files
    of the work tree that a clean checkout does not have, so that counts can say what is committed."""
    import subprocess

    paths = [str(p) for p in paths]
    if not paths:
        return []
    try:
        out = subprocess.run(["git", "-C", str(folder), "check-ignore", "--stdin"], input="\n".join(paths),
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return []
    return out.stdout.splitlines() if out.returncode == 0 else []


if __name__ == "__main__":
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(ROOT))
    if "--check-data" in sys.argv[1:]:
        sys.exit(data_check_main())
    if "--check" in sys.argv[1:]:
        stale = stale_pages()
        if stale:
            print(f"error: generated blocks out of date in {', '.join(stale)}; run python -m common.report",
                  file=sys.stderr)
        sys.exit(1 if stale else 0)
    for rel in update_all():
        print(f"rewrote {rel}")
