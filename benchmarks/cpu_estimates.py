"""CPU time of one paper-profile seed, estimated from rates measured in committed result files.

    python -m benchmarks.cpu_estimates   # writes results/cpu_estimates.json and the README block between
                                         # <!-- estimates:start --> and <!-- estimates:end -->

Not a measurement of the paper profile: each row multiplies the paper's budget (papers/<name>.py PROFILES["paper"])
by per-epoch / per-iteration times of a smaller run on this 2-core CPU (median over epochs, the first excluded,
which includes graph compilation), and names that run and its load average (> 2: the cores were shared, so the
estimate is pessimistic). Rows marked "scaled" carry a rate measured on another data set over by samples x pixels
(convolution cost grows with both); they are order-of-magnitude figures. A DEKM row is an upper bound: its
clustering stops at the first update where < 0.1 % of labels change, usually long before the iteration cap; so
are SAIP rows (the 0.03 % rule may stop it before re * ep epochs) and R-DC rows (the tau rule ends phase 2, usually
long before the 100,000-iteration cap: the quick run's own phase 2 is printed beside it).
"""
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import results  # noqa: E402

# (paper, dataset to estimate, measured run, the data set it was measured on)
SOURCES = [
    ("decs", "usps", "results/decs/usps/benchmark_tensorflow_cpu.json", "usps"),
    # MNIST and Fashion-MNIST: 28x28 like MNIST's test split, whose paper-profile run (the same network, valid padding)
    # gives the rates; only the sample count scales
    ("decs", "mnist", "results/decs/mnist-test/paper/seed1.json", "mnist-test"),
    ("decs", "fmnist", "results/decs/mnist-test/paper/seed1.json", "mnist-test"),
    ("dekm", "usps", "results/dekm/usps/timing_quiet_paper_seed0.json", "usps"),
    ("dekm", "mnist", "results/dekm/mnist/quick/seed0.json", "mnist"),
    ("dcss", "usps", "results/dcss/usps/benchmark_tensorflow_cpu.json", "usps"),
    ("dcss", "mnist", "results/dcss/usps/benchmark_tensorflow_cpu.json", "usps"),
    ("dcss", "fmnist", "results/dcss/usps/benchmark_tensorflow_cpu.json", "usps"),
    ("dcss", "2mnist", "results/dcss/usps/benchmark_tensorflow_cpu.json", "usps"),
    ("saip", "mnist-test", "results/saip/mnist-test/quick/seed0.json", "mnist-test"),
    ("saip", "mnist", "results/saip/mnist/quick/seed0.json", "mnist"),
    ("rdc", "fmnist", "results/rdc/fmnist/quick/seed0.json", "fmnist"),
]
SIZES = {"usps": (9298, 16 * 16), "mnist": (70000, 28 * 28), "mnist-test": (10000, 28 * 28),
         "fmnist": (70000, 28 * 28), "2mnist": (140000, 28 * 28), "coil20": (1440, 28 * 28)}
CLUSTERS = {"2mnist": 20, "coil20": 20}  # k where it is not 10: DCSS's phase 1 takes k optimiser steps per batch


def _median(values):
    values = list(values)[1:] or list(values)  # the first epoch includes graph compilation
    return float(np.median(values)) if values else float("nan")


def paper_budget(paper, dataset):
    import dataclasses
    import importlib

    module = importlib.import_module(f"papers.{paper}")
    budget = dict(module.PROFILES["paper"])
    budget.pop("subset_per_class", None)
    cfg = module.Config(**budget)
    if paper == "saip":  # Table II's row of the data set: the epoch cap re * ep
        cfg = cfg.resolved(dataset)
        return {**dataclasses.asdict(cfg), "cluster_epochs": cfg.max_epochs()}
    return dataclasses.asdict(cfg)


def rates(paper, run):
    """Seconds per unit of each stage, from one result file (or a benchmarks/dcss_speed.py / decs_speed.py file)."""
    if "pretrain_s_per_epoch" in run:  # decs_speed.py: medians already taken, the first epoch / chunk excluded
        return {"ae_epoch": run["pretrain_s_per_epoch"], "iteration": run["cluster_s_per_iter"]}
    if "seconds_per_epoch" in run:  # dcss_speed.py: per-epoch medians already taken, the first epoch excluded
        s = run["seconds_per_epoch"]
        return {"ae_epoch": s["pretrain"], "phase1_epoch": s["phase1"], "phase2_epoch": s["phase2"]}
    h = run["history"]
    out = {"ae_epoch": _median(h["pretrain"].get("epoch_seconds", []))} if "pretrain" in h else {}
    if paper == "decs":
        c = h["cluster"]
        out["iteration"] = _median(c["chunk_seconds"]) / c["steps_per_chunk"]
    elif paper == "dekm":
        c = h["cluster"]
        out["iteration"] = 1.0 / c["step_iterations_per_second"]
        out["update"] = c["update_seconds_total"] / max(c["updates"], 1)
    elif paper == "dcss":
        out["phase1_epoch"] = _median(h["phase1"]["epoch_seconds"])
        out["phase2_epoch"] = _median(h["phase2"]["epoch_seconds"])
    elif paper == "saip":
        out["cluster_epoch"] = _median(h["cluster"]["epoch_seconds"])
    elif paper == "rdc":
        p2 = h["phase2"]
        out["phase1_iteration"] = 1.0 / h["phase1"]["iterations_per_second"]
        out["phase2_iteration"] = 1.0 / p2["iterations_per_second"]
        out["refresh"] = p2["refresh_seconds"] / max(len(p2["refreshes"]), 1)
        out["steps_per_refresh"] = p2["steps_per_refresh"]
    return out


def estimate(paper, dataset, source, measured_on):
    run = json.loads((ROOT / source).read_text())
    r = rates(paper, run)
    n0, p0 = SIZES[measured_on]
    n1, p1 = SIZES[dataset]
    scale = (n1 * p1) / (n0 * p0)  # per-epoch work; per-iteration work scales by pixels only
    cfg = paper_budget(paper, dataset)
    stages = {} if paper == "rdc" else {"pretrain": cfg["ae_epochs"] * r["ae_epoch"] * scale}
    observed = {}  # what the source run actually spent, shown beside the bound, not added to it
    if paper == "decs":
        stages["clustering"] = cfg["cluster_iters"] * r["iteration"] * p1 / p0
    elif paper == "dekm":
        updates = cfg["max_iters"] // cfg["update_interval"]
        stages["clustering (at most)"] = cfg["max_iters"] * r["iteration"] * p1 / p0 + updates * r["update"] * n1 / n0
    elif paper == "dcss":
        k_ratio = CLUSTERS.get(dataset, 10) / CLUSTERS.get(measured_on, 10)
        stages["phase 1"] = cfg["phase1_epochs"] * r["phase1_epoch"] * scale * k_ratio
        stages["phase 2"] = cfg["phase2_epochs"] * r["phase2_epoch"] * scale
    elif paper == "saip":
        stages["clustering (at most)"] = cfg["cluster_epochs"] * r["cluster_epoch"] * n1 / n0
    elif paper == "rdc":
        stages["phase 1"] = cfg["pretrain_iters"] * r["phase1_iteration"]
        refreshes = cfg["max_iters"] / r["steps_per_refresh"]
        stages["phase 2 (at most)"] = cfg["max_iters"] * r["phase2_iteration"] + refreshes * r["refresh"]
        observed["phase 2 as in the quick run"] = run["history"]["phase2"]["seconds"]
    load = run.get("load_average")
    return {"paper": paper, "dataset": dataset, "hours": sum(stages.values()) / 3600,
            "stages_hours": {k: v / 3600 for k, v in stages.items()},
            "observed_hours": {k: v / 3600 for k, v in observed.items()}, "rates_seconds": r,
            "measured_in": source, "measured_on": measured_on, "scaled": measured_on != dataset,
            "source_load_average": load, "source_conv_rate": (run.get("machine_rate") or {}).get("conv_decs_usps_gflops"),
            "budget": {k: cfg[k] for k in cfg if k.endswith(("epochs", "iters"))}}


def table(rows):
    out = ["| paper | data set | paper-profile CPU hours per seed | stages (h) | rates from |",
           "|---|---|---|---|---|"]
    for e in rows:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in e["stages_hours"].items())
        if e["observed_hours"]:
            stages += " (" + ", ".join(f"{k} {v:.1f}" for k, v in e["observed_hours"].items()) + ")"
        load = e["source_load_average"]
        note = "load unknown" if load is None else f"load {load['start'][0]:.1f}"
        if e.get("source_conv_rate"):   # a benchmark: run alone, with this machine's conv rate measured beside it
            note = f"benchmark at a conv rate of {e['source_conv_rate']:.0f} GFLOP/s"
        src = f"`{e['measured_in']}` ({note}{', scaled from ' + e['measured_on'] if e['scaled'] else ''})"
        bound = "≤ " if e["paper"] in ("dekm", "saip", "rdc") else ""
        out.append(f"| {e['paper']} | {e['dataset']} | {bound}{e['hours']:.1f} | {stages} | {src} |")
    return out


def update_readme(lines, path=ROOT / "README.md"):
    text = path.read_text()
    start, end = "<!-- estimates:start -->", "<!-- estimates:end -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        path.write_text(head + start + "\n" + "\n".join(lines) + "\n" + end + rest.split(end, 1)[1])


def main():
    rows = [estimate(*s) for s in SOURCES]
    results.write_json(ROOT / "results" / "cpu_estimates.json",
                       {"command": "python -m benchmarks.cpu_estimates", "note": __doc__.split("\n\n")[2],
                        "estimates": rows})
    lines = table(rows)
    update_readme(lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
