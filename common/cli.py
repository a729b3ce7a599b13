"""The reproduction command behind ./reproduce.sh.

    ./reproduce.sh <paper> <dataset|all> [--profile smoke|quick|paper] [--seeds 0,1,2] [--out results]
                   [--set key=value ...] [--fresh]
    ./reproduce.sh list

Each run writes results/<paper>/<dataset>/<profile>[/<overrides>]/seed<k>.json (metrics, cluster sizes, config,
git commit, environment, timings, curves) and seed<k>.npz (labels of all samples; embedding and other per-sample
arrays on a fixed sample of 2,000), then figures and a "ours mean ± std vs paper" summary. Labels are used for
evaluation only. Runs checkpoint to a per-user cache (common.checkpoint.cache_root()); the same command run
again resumes an interrupted run, ``--fresh`` discards its checkpoint first.
"""
import argparse
import contextlib
import dataclasses
import importlib
import inspect
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

PAPERS = ("decs", "dekm", "dcss", "saip", "rdc")
PROFILE_NAMES = ("smoke", "quick", "paper")


class UsageError(Exception):
    pass


def available_papers():
    root = Path(__file__).resolve().parents[1] / "papers"
    return [p for p in PAPERS if (root / f"{p}.py").is_file()]


def load_paper(name):
    if name not in available_papers():
        raise UsageError(f"unknown paper {name!r}; available: {', '.join(available_papers())}")
    return importlib.import_module(f"papers.{name}")


def parse_overrides(items, config_cls):
    """'key=value' strings -> dict, values typed like the Config field's default."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise UsageError(f"bad --set {item!r}; keys: {', '.join(fields)}")
        default = fields[key].default
        kind = type(default) if default is not None else float
        try:
            out[key] = (value.lower() in ("1", "true", "yes")) if kind is bool else kind(value)
        except ValueError:
            raise UsageError(f"bad --set {item!r}: expected {kind.__name__}") from None
    return out


def run_folder(out, paper, dataset, profile, overrides):
    folder = Path(out) / paper / dataset / profile
    if overrides:
        folder = folder / ",".join(f"{k}={v}" for k, v in sorted(overrides.items()))
    return folder


def make_config(module, profile, overrides):
    """The paper's Config with the profile's budget and any overrides; also returns the data subset size."""
    budget = dict(module.PROFILES[profile])
    subset = budget.pop("subset_per_class", None)
    return module.Config(**{**budget, **overrides}), subset


def code_version(module):
    """Fingerprint of the code a result depends on: the paper's module and the shared training, checkpoint and
    metrics code (AST: blind to comments and docstrings). common.report compares it with today's code."""
    from common import checkpoint, metrics, training

    return training.code_fingerprint(module, training, checkpoint, metrics)


def checkpoint_dir(code, paper, dataset, profile, config, seed, data):
    """The run's checkpoint folder in the per-user cache: one per (config, seed, data, code fingerprint)."""
    from common import checkpoint, training

    key = training.config_hash({"config": dataclasses.asdict(config), "seed": seed, **training.data_fingerprint(data.x),
                                "code": code})
    return checkpoint.cache_root() / paper / dataset / "runs" / f"{profile}_seed{seed}_{key}"


# Seconds between two heartbeats of a sitting (Sittings); REPRO_HEARTBEAT_SECONDS overrides (tests).
HEARTBEAT_SECONDS = float(os.environ.get("REPRO_HEARTBEAT_SECONDS", 60))


class Sittings:
    """The sittings of a resumable run (each process that ran it), kept in its checkpoint folder's sittings.json.
    Around the run (``with``), a sitting records its start and, every HEARTBEAT_SECONDS, the time it was last seen
    alive; an interrupted sitting so lasts from its start to within a heartbeat of the interruption (work after the
    last checkpoint included: it was spent, and is redone in a later sitting). ``earlier``: the run's earlier sittings
    as ``[{"started", "seconds"}]``. (Here, not in common.checkpoint: it does not change what a run computes, so it
    stays out of code_version.)"""

    def __init__(self, folder, every=None):
        self.path = Path(folder) / "sittings.json"
        self.every = HEARTBEAT_SECONDS if every is None else every
        self._stop = threading.Event()

    def _write(self):
        from common import results

        results.write_json(self.path, self.entries)

    def __enter__(self):
        old = json.loads(self.path.read_text()) if self.path.is_file() else []
        self.earlier = [{"started": e["started"], "seconds": e.get("last_seen", e["start_unix"]) - e["start_unix"]}
                        for e in old]
        now = time.time()
        self.entries = old + [{"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)), "start_unix": now,
                               "last_seen": now}]
        self._write()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()
        return self

    def _beat(self):
        while not self._stop.wait(self.every):
            self.entries[-1]["last_seen"] = time.time()
            self._write()

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run_one(module, paper, dataset, profile, seed, folder, overrides, verbose=1, fresh=False):
    from common import checkpoint, datasets, metrics, results, setup, training

    data = datasets.load(dataset)
    config, subset = make_config(module, profile, overrides)
    if subset:
        data = datasets.subset(data, subset, seed=0)
    setup.seed_everything(seed)
    env = setup.environment()
    git = {**setup.git_state(), "code_fingerprint": code_version(module)}
    print(f"[{paper} {dataset} {profile} seed={seed}] n={len(data)} {setup.summary_line(env)} "
          f"commit={str(git['commit'])[:10]}{'+dirty' if git['dirty'] else ''}", flush=True)
    kwargs = {"cache_dir": checkpoint.cache_root() / paper / dataset, "verbose": verbose}
    ckpt = None
    if "checkpoint_dir" in inspect.signature(module.run).parameters:
        ckpt = checkpoint_dir(git["code_fingerprint"], paper, dataset, profile, config, seed, data)
        if fresh:
            shutil.rmtree(ckpt, ignore_errors=True)
        kwargs["checkpoint_dir"] = ckpt
        print(f"[{paper} {dataset} {profile} seed={seed}] checkpoints: {ckpt}", flush=True)
    load_start, t0 = os.getloadavg(), time.perf_counter()
    with Sittings(ckpt) if ckpt is not None else contextlib.nullcontext() as sitting:
        out = module.run(data, config, seed, **kwargs)
    wall = time.perf_counter() - t0
    sittings = (sitting.earlier if sitting else []) + [
        {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - wall)), "seconds": wall}]
    k = data.n_clusters
    scores = metrics.evaluate(data.y, out["labels"], k)
    record = {
        "paper": paper, "dataset": dataset, "profile": profile, "seed": seed, "n_samples": len(data),
        "overrides": overrides, "config": dataclasses.asdict(config), "data": training.data_fingerprint(data.x),
        "metrics": scores,
        "cluster_sizes": metrics.cluster_sizes(out["labels"], k).tolist(),
        "baseline_metrics": {"kmeans_on_pretrained_embedding": metrics.evaluate(data.y, out["kmeans_labels"], k)}
        if "kmeans_labels" in out else {},
        "extra_metrics": {name: metrics.evaluate(data.y, v, k) for name, v in out.get("extra_labels", {}).items()},
        "git": git, "environment": env, "wall_seconds": wall,
        # every sitting of a resumed run: earlier ones from their start to their last heartbeat (cli.Sittings)
        "sittings": sittings, "wall_seconds_all_sittings": sum(s["seconds"] for s in sittings),
        "load_average": {"start": list(load_start), "end": list(os.getloadavg())},  # > 2: the 2 cores were shared
        "history": out["history"], "command": "./reproduce.sh " + " ".join(sys.argv[1:]),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    results.save_run_arrays(Path(folder) / f"seed{seed}.npz", len(data), labels=out["labels"],
                            embedding=out["embedding"], centers=out["centers"], **out.get("arrays", {}))
    results.write_json(Path(folder) / f"seed{seed}.json", record)
    if ckpt is not None:
        shutil.rmtree(ckpt, ignore_errors=True)  # the result file is the record now
    lost = "" if scores["nonempty_clusters"] == k else f" EMPTY CLUSTERS: {k - scores['nonempty_clusters']} of {k}"
    print(f"[{paper} {dataset} {profile} seed={seed}] acc={scores['acc']:.4f} nmi={scores['nmi']:.4f} "
          f"ari={scores['ari']:.4f} smallest cluster={scores['smallest_cluster']}{lost} wall={wall:.0f}s", flush=True)
    return record


def summarise(module, dataset, folder):
    from common import report, results

    runs = results.load_runs(folder)
    method, paper, nmi_key = report.paper_reference(module, dataset, runs)
    print(f"\n{folder}: {len(runs)} run(s), paper row {method}")
    for key in report.metric_keys(module):
        ours = results.mean_std(runs, nmi_key if key == "nmi" else key)
        ref = paper.get(key)
        print(f"  {key.upper():<18} ours {results.fmt(ours)}   paper {'—' if ref is None else f'{ref:.3f}'}")
    clusters = [r["metrics"].get("nonempty_clusters") for r in runs]
    print(f"  non-empty clusters per seed: {clusters}")
    return runs


def main(argv=None):
    ap = argparse.ArgumentParser(prog="reproduce.sh", description=__doc__.split("\n")[0])
    ap.add_argument("paper", help="paper module name, or 'list'")
    ap.add_argument("dataset", nargs="?", help="dataset name, or 'all'")
    ap.add_argument("--profile", default=os.environ.get("REPRO_PROFILE", "quick"))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="results")
    ap.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    ap.add_argument("--fresh", action="store_true", help="discard the run's checkpoint and start over")
    args = ap.parse_args(argv)
    try:
        if args.paper == "list":
            for p in available_papers():
                m = load_paper(p)
                download = getattr(m, "DOWNLOAD_DATASETS", ())  # not shipped: fetched when online
                extra = [d for d in getattr(m, "EXTRA_DATASETS", ()) if d not in download]
                print(f"{p}: datasets {', '.join(m.DATASETS)}" + (f" (also {', '.join(extra)})" if extra else "")
                      + (f" (need a download: {', '.join(download)})" if download else "")
                      + f"; profiles {', '.join(m.PROFILES)}")
            return 0
        module = load_paper(args.paper)
        if args.profile not in PROFILE_NAMES:
            raise UsageError(f"unknown profile {args.profile!r}; choose from {', '.join(PROFILE_NAMES)}")
        if not args.dataset:
            raise UsageError("name a dataset (or 'all')")
        names = module.DATASETS if args.dataset == "all" else [args.dataset]
        known = module.DATASETS + getattr(module, "EXTRA_DATASETS", ())  # extras: figure-only data, not in 'all'
        for name in names:
            if name not in known:
                raise UsageError(f"unknown dataset {name!r} for {args.paper}; choose from {', '.join(known)}, all")
        try:
            seeds = [int(s) for s in args.seeds.split(",")]
        except ValueError:
            raise UsageError(f"bad --seeds {args.seeds!r}: expected e.g. 0,1,2") from None
        overrides = parse_overrides(args.overrides, module.Config)
        make_config(module, args.profile, overrides)  # validate before any work
        from common import plots

        for name in names:
            folder = run_folder(args.out, args.paper, name, args.profile, overrides)
            for seed in seeds:
                run_one(module, args.paper, name, args.profile, seed, folder, overrides, verbose=0 if args.quiet else 1,
                        fresh=args.fresh)
            runs = summarise(module, name, folder)
            plots.run_figures(folder, runs)
        return 0
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (RuntimeError, ValueError, OSError) as e:  # DataError is a RuntimeError
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
