"""The reproduction command behind ./reproduce.sh.

    ./reproduce.sh <paper> <dataset|all> [--profile smoke|quick|paper] [--seeds 0 1 2] [--out results]
                   [--set key=value ...] [--fresh] [--quiet] [--verbose]
    ./reproduce.sh <paper> --data FILE [--clusters K] [same options]
    ./reproduce.sh list

Without options: the paper profile (the paper's settings), seed 0; REPRO_PROFILE overrides the default profile.
Before training it prints what will run and the time per seed that the committed result files measured; after,
one verdict table per data set (common.verdict): ours against the paper's numbers and against the folder's result
files as they were before this command wrote any (the committed ones, in a clean clone).

Each run writes results/<paper>/<dataset>/<profile>[/<overrides>]/seed<k>.json (metrics, cluster sizes, config,
git commit, environment, timings, curves) and seed<k>.npz (labels of all samples; embedding and other per-sample
arrays on a fixed sample of 2,000), then figures. ``--data FILE`` runs on a user's .npz/.npy
(common.datasets.load_file); results go to results/<paper>/<file stem>/<profile>/, and without labels no metrics
are computed. Labels are used for evaluation only. Runs checkpoint to a per-user cache
(common.checkpoint.cache_root()); the same command run again resumes an interrupted run, ``--fresh`` discards its
checkpoint first.
"""
import argparse
import contextlib
import dataclasses
import inspect
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

from common import registry
from common.registry import PAPERS, PROFILE_NAMES, UsageError, available_papers, load_paper  # noqa: F401

code_version = registry.code_version  # its home before common.registry (back-compat)

DEFAULT_PROFILE = "paper"
DEFAULT_SEEDS = "0"
PROFILE_NOTES = {
    "quick": "profile quick: a preview budget; it does not reproduce the paper's numbers (--profile paper does)",
    "smoke": "profile smoke: a plumbing check on a small subset; its numbers mean nothing",
}


def parse_seeds(tokens):
    """``--seeds 0 1 2``, ``--seeds 0,1,2`` (or a mix) -> [0, 1, 2]; repeated seeds once, in order."""
    tokens = [tokens] if isinstance(tokens, str) else list(tokens)
    parts = [p for t in tokens for p in t.replace(",", " ").split()]
    try:
        seeds = [int(p) for p in parts]
    except ValueError:
        seeds = None
    if not seeds or any(s < 0 for s in seeds):
        raise UsageError(f"bad --seeds {' '.join(tokens)!r}: expected seeds >= 0, e.g. --seeds 0 1 2 or --seeds 0,1,2 "
                         "(the data set goes before --seeds)")
    return list(dict.fromkeys(seeds))


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
            if kind is bool:
                if value.lower() not in ("1", "true", "yes", "0", "false", "no"):
                    raise ValueError(value)
                out[key] = value.lower() in ("1", "true", "yes")
            else:
                out[key] = kind(value)
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
    stays out of code_version.) Each sitting also records the CPU time of its process (``cpu_seconds``, all threads,
    time.process_time): a process stopped (SIGSTOP) or starved by another job gains wall time but no CPU time, so
    CPU / wall (2 on a busy 2-core run) shows a sitting that was paused or shared."""

    def __init__(self, folder, every=None):
        self.path = Path(folder) / "sittings.json"
        self.every = HEARTBEAT_SECONDS if every is None else every
        self._stop = threading.Event()

    def _write(self):
        from common import results

        results.write_json(self.path, self.entries)

    def __enter__(self):
        old = json.loads(self.path.read_text()) if self.path.is_file() else []
        self.earlier = [{"started": e["started"], "seconds": e.get("last_seen", e["start_unix"]) - e["start_unix"],
                         **({"cpu_seconds": e["cpu_seconds"]} if "cpu_seconds" in e else {})} for e in old]
        now = time.time()
        self._cpu0 = time.process_time()
        self.entries = old + [{"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)), "start_unix": now,
                               "last_seen": now, "cpu_seconds": 0.0}]
        self._write()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()
        return self

    def _beat(self):
        while not self._stop.wait(self.every):
            self.entries[-1].update(last_seen=time.time(), cpu_seconds=time.process_time() - self._cpu0)
            self._write()

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run_one(module, paper, dataset, profile, seed, folder, overrides, verbose=1, fresh=False, data=None,
            data_file=None):
    """One seed: trains ``module.run`` on ``data`` (default: datasets.load(dataset)), writes seed<k>.json/.npz in
    ``folder`` and returns the record. Data without labels (``data.y`` None) get no metrics ("metrics": {})."""
    from common import checkpoint, datasets, metrics, results, setup, training

    if data is None:
        data = datasets.load(dataset)
    config, subset = make_config(module, profile, overrides)
    if subset:
        data = datasets.subset(data, subset, seed=0)
    n, k, labelled = len(data.x), data.n_clusters, data.y is not None
    setup.seed_everything(seed)
    env = setup.environment()
    git = {**setup.git_state(), "code_fingerprint": code_version(module)}
    print(f"[{paper} {dataset} {profile} seed={seed}] n={n} {setup.summary_line(env)} "
          f"commit={str(git['commit'])[:10]}{'+dirty' if git['dirty'] else ''}", flush=True)
    kwargs = {"cache_dir": checkpoint.cache_root() / paper / dataset, "verbose": verbose}
    ckpt = None
    if "checkpoint_dir" in inspect.signature(module.run).parameters:
        ckpt = checkpoint_dir(git["code_fingerprint"], paper, dataset, profile, config, seed, data)
        if fresh:
            shutil.rmtree(ckpt, ignore_errors=True)
        kwargs["checkpoint_dir"] = ckpt
        print(f"[{paper} {dataset} {profile} seed={seed}] checkpoints: {ckpt}", flush=True)
    load_start, t0, c0 = os.getloadavg(), time.perf_counter(), time.process_time()
    with Sittings(ckpt) if ckpt is not None else contextlib.nullcontext() as sitting:
        out = module.run(data, config, seed, **kwargs)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    sittings = (sitting.earlier if sitting else []) + [
        {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - wall)), "seconds": wall,
         "cpu_seconds": cpu}]
    scores = metrics.evaluate(data.y, out["labels"], k) if labelled else {}  # labels: evaluation only
    sizes = metrics.cluster_sizes(out["labels"], k).tolist()
    record = {
        "paper": paper, "dataset": dataset, "profile": profile, "seed": seed, "n_samples": n,
        **({"data_file": str(Path(data_file).resolve())} if data_file else {}),
        "overrides": overrides, "config": dataclasses.asdict(config), "data": training.data_fingerprint(data.x),
        "metrics": scores,
        "cluster_sizes": sizes,
        "baseline_metrics": {"kmeans_on_pretrained_embedding": metrics.evaluate(data.y, out["kmeans_labels"], k)}
        if labelled and "kmeans_labels" in out else {},
        "extra_metrics": {name: metrics.evaluate(data.y, v, k) for name, v in out.get("extra_labels", {}).items()}
        if labelled else {},
        "git": git, "environment": env, "wall_seconds": wall,
        # every sitting of a resumed run: earlier ones from their start to their last heartbeat (cli.Sittings)
        "sittings": sittings, "wall_seconds_all_sittings": sum(s["seconds"] for s in sittings),
        # the process's CPU time, all threads (Sittings): CPU / wall well under the thread count = paused or shared
        "cpu_seconds": cpu, **({"cpu_seconds_all_sittings": sum(s["cpu_seconds"] for s in sittings)}
                               if all("cpu_seconds" in s for s in sittings) else {}),
        "load_average": {"start": list(load_start), "end": list(os.getloadavg())},  # > 2: the 2 cores were shared
        "history": out["history"], "command": "./reproduce.sh " + " ".join(sys.argv[1:]),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    results.save_run_arrays(Path(folder) / f"seed{seed}.npz", n, labels=out["labels"],
                            embedding=out["embedding"], centers=out["centers"], **out.get("arrays", {}))
    results.write_json(Path(folder) / f"seed{seed}.json", record)
    if ckpt is not None:
        shutil.rmtree(ckpt, ignore_errors=True)  # the result file is the record now
    nonempty = sum(s > 0 for s in sizes)
    lost = "" if nonempty == k else f" EMPTY CLUSTERS: {k - nonempty} of {k}"
    scores_text = (f"acc={scores['acc']:.4f} nmi={scores['nmi']:.4f} ari={scores['ari']:.4f} "
                   f"smallest cluster={scores['smallest_cluster']}" if labelled
                   else f"no labels: no metrics; cluster sizes {sizes}")
    print(f"[{paper} {dataset} {profile} seed={seed}] {scores_text}{lost} wall={wall:.0f}s", flush=True)
    return record


def this_cpu():
    """This machine's CPU ({"model", "vector_extensions", "cores"}): common.setup.cpu_model, else
    benchmarks.machine_rate's (its earlier home), else an unknown model."""
    try:
        from common.setup import cpu_model
    except ImportError:
        try:
            from benchmarks.machine_rate import cpu_model
        except ImportError:
            return {"model": "unknown", "vector_extensions": [], "cores": os.cpu_count()}
    return cpu_model()


def machine(env):
    """'cpu:2 cores, AMD EPYC 7B13' from a result file's environment (device, cpu); the CPU model 'not recorded'
    when the file predates it."""
    model = (env.get("cpu") or {}).get("model")
    return f"{env.get('device', 'unknown device')}, " + (
        "CPU model not recorded" if not model else "CPU model unknown" if model == "unknown" else model)


def estimate_line(runs, device, cpu):
    """The time per seed to expect: the median wall time (all sittings) of ``runs`` (the committed result files of
    the same folder; those on this machine's device when there are any), and the machine they were measured on
    beside this one's when the CPU models differ or are unknown."""
    from common import verdict

    timed = [r for r in runs if verdict.wall(r)]
    if not timed:
        return "estimated time per seed: unknown (no measurement yet)"
    used = [r for r in timed if (r.get("environment") or {}).get("device") == device] or timed
    here = machine({"device": device, "cpu": cpu})
    measured = sorted({machine(r.get("environment") or {}) for r in used})
    models = {((r.get("environment") or {}).get("cpu") or {}).get("model") for r in used}
    same = measured == [here] and models == {cpu.get("model")} and cpu.get("model") not in (None, "unknown")
    where = f"on this machine's CPU, {here}" if same else f"measured on {' / '.join(measured)}; this machine: {here}"
    return (f"estimated time per seed: ~{verdict.duration(verdict.median_wall(used))} (median of {len(used)} "
            f"committed run{'s' if len(used) > 1 else ''}; {where})")


def plan_lines(paper, dataset, profile, seeds, n, folder, before, device, cpu):
    """What will run, printed before training."""
    return [f"what will run: {paper} on {dataset}, profile {profile}, seed{'s' if len(seeds) > 1 else ''} "
            f"{', '.join(map(str, seeds))}",
            f"  samples: {n:,}",
            f"  results: {folder}",
            "  " + estimate_line(before, device, cpu)]


def list_lines(out="results"):
    """``./reproduce.sh list``: per paper its profiles, and per data set whether the committed paper-profile
    results reproduce the paper (common.verdict.status) and their CPU time per seed; the data sets that need a
    download."""
    from common import datasets, verdict

    lines, named = [], set()
    for p in available_papers():
        m = load_paper(p)
        declared = tuple(getattr(m, "DOWNLOAD_DATASETS", ()))
        listed = tuple(m.DATASETS) + tuple(getattr(m, "EXTRA_DATASETS", ())) + declared
        named |= set(listed)
        download = [d for d in dict.fromkeys(declared + tuple(d for d in listed if d in datasets.DOWNLOAD_ONLY))
                    if d not in datasets.DOWNLOAD_ONLY or datasets.needs_download(d)]  # not shipped, no local copy
        extra = [d for d in getattr(m, "EXTRA_DATASETS", ()) if d not in download]
        lines.append(f"{p}: datasets {', '.join(m.DATASETS)}; profiles {', '.join(m.PROFILES)} "
                     f"(default {DEFAULT_PROFILE})")
        rows = []
        for ds in m.DATASETS:
            s = verdict.status(p, ds, "paper", out)
            acc = next((r for r in s["metrics"] if r["key"] == "acc"), None)
            what = verdict.WORDS.get(s["verdict"], s["verdict"])
            if s["verdict"] in ("✓", "~", "✗", "—") and acc and acc["ours"]:
                ref = "—" if acc["paper"] is None else f"{acc['paper']:.3f}"
                n = len(s["seeds"])
                what += f" (ACC {acc['ours'][0]:.3f} vs {ref}, {n} seed{'s' if n > 1 else ''})"
            mark = s["verdict"] if s["verdict"] in ("✓", "~", "✗") else "·"
            secs = s["cpu_seconds_per_seed"]
            rows.append((ds, f"{mark} {what}", "" if secs is None else f"CPU time per seed {verdict.duration(secs)}"))
        width = [max(len(r[i]) for r in rows) for i in range(2)]
        lines += [f"  {a.ljust(width[0])}  {b.ljust(width[1])}  {c}".rstrip() for a, b, c in rows]
        if extra:
            lines.append(f"  also runnable: {', '.join(extra)}")
        if download:
            lines.append(f"  need a download: {', '.join(download)}")
    other = [d for d in datasets.DOWNLOAD_ONLY if d not in named]  # loaders no paper module lists yet
    if other:
        lines.append(f"other data sets (no paper lists them yet): {', '.join(other)}")
        if any(datasets.needs_download(d) for d in other):
            lines.append(f"  need a download: {', '.join(d for d in other if datasets.needs_download(d))}")
    lines.append("(✓ ~ ✗: the committed paper-profile results; " + verdict.RULE + ")")
    return lines


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one 'error:' line, like every other bad input
        raise UsageError(f"{message} (see ./reproduce.sh --help)")


EPILOG = """typical commands:
  ./reproduce.sh decs usps                      the paper's settings, seed 0
  ./reproduce.sh decs usps --seeds 0 1 2        the same for three seeds (mean ± std)
  ./reproduce.sh decs usps --profile quick      a preview budget: minutes, not the paper's numbers
  ./reproduce.sh dekm --data mine.npz --clusters 5    your own data (x, optional labels y)
  ./reproduce.sh list                           papers, data sets, whether each reproduces
"""


def build_parser():
    ap = _Parser(prog="reproduce.sh", description=__doc__.split("\n")[0], epilog=EPILOG,
                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paper", help=f"paper module ({', '.join(PAPERS)}), or 'list' for papers, data sets and "
                                  "whether each reproduces")
    ap.add_argument("dataset", nargs="?",
                    help="data set name (see 'list'), or 'all' for the paper's data sets; omit it with --data")
    ap.add_argument("--profile", default=os.environ.get("REPRO_PROFILE") or DEFAULT_PROFILE,
                    help="budget: 'paper' (the paper's settings), 'quick' (a preview; does not reproduce the paper's "
                         "numbers), 'smoke' (a plumbing check on a subset); default: %(default)s "
                         f"(REPRO_PROFILE overrides the built-in '{DEFAULT_PROFILE}')")
    ap.add_argument("--seeds", nargs="+", default=DEFAULT_SEEDS, metavar="SEED",
                    help="seeds to run, space or comma separated (0 1 2 or 0,1,2); default: %(default)s")
    ap.add_argument("--out", default="results",
                    help="results folder: <out>/<paper>/<dataset>/<profile>/; default: %(default)s")
    ap.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                    help="change a field of the paper's Config (repeatable; results go to a subfolder named by the "
                         "settings); default: none (the paper's reading)")
    ap.add_argument("--data", metavar="FILE",
                    help="run on your own data: .npz with array x (images (n,H,W[,C]) or vectors (n,d)) and optional "
                         "labels y, or .npy with x; results go to <out>/<paper>/<file stem>/<profile>/; "
                         "default: none")
    ap.add_argument("--clusters", type=int, metavar="K",
                    help="number of clusters for --data (needed when the file has no labels y); "
                         "default: the number of distinct labels")
    ap.add_argument("--fresh", action="store_true",
                    help="discard the run's checkpoint and start over; default: resume an interrupted run")
    ap.add_argument("--quiet", action="store_true", help="no progress lines while training; default: off")
    ap.add_argument("--verbose", action="store_true",
                    help="also show TensorFlow's C++ start-up log lines; default: off (they are hidden)")
    return ap


def _datasets_to_run(args, module):
    """[(name, Dataset or None, file or None)] with every check done before anything is written."""
    from common import datasets

    if args.data:
        if args.dataset:
            raise UsageError(f"give a data set name or --data FILE, not both (got {args.dataset!r} and --data)")
        if not hasattr(datasets, "load_file"):
            raise UsageError("--data needs common.datasets.load_file, which this version lacks")
        data = datasets.load_file(args.data, n_clusters=args.clusters)
        base, sep, _ = data.name.rpartition("-imb")
        known = set(datasets.NAMES) | set(module.DATASETS) | set(getattr(module, "EXTRA_DATASETS", ()))
        if data.name in known or (sep and base in datasets.NAMES) or data.name in ("all", "list"):
            raise UsageError(f"the file's name {data.name!r} is a built-in data set's; rename the file (results go to "
                             f"{args.out}/{args.paper}/<file stem>/)")
        if data.name.startswith(".") or not data.name:
            raise UsageError(f"the file's stem {data.name!r} cannot name a results folder; rename the file")
        return [(data.name, data, args.data)]
    if args.clusters is not None:
        raise UsageError("--clusters goes with --data FILE (a named data set has its own number of classes)")
    if not args.dataset:
        raise UsageError("name a dataset (or 'all'), or give --data FILE")
    names = module.DATASETS if args.dataset == "all" else [args.dataset]
    known = module.DATASETS + getattr(module, "EXTRA_DATASETS", ())  # extras: figure-only data, not in 'all'
    for name in names:
        if name not in known:
            raise UsageError(f"unknown dataset {name!r} for {args.paper}; choose from {', '.join(known)}, all")
    return [(name, None, None) for name in names]


def main(argv=None):
    try:
        args = build_parser().parse_args(argv)
        if args.paper == "list":
            if args.dataset or args.data:
                raise UsageError("'list' takes no data set")
            registry.quiet_backend_import(args.verbose)
            print("\n".join(list_lines(args.out)), flush=True)
            return 0
        module = load_paper(args.paper, verbose=args.verbose)
        if args.profile not in PROFILE_NAMES:
            raise UsageError(f"unknown profile {args.profile!r}; choose from {', '.join(PROFILE_NAMES)}")
        seeds = parse_seeds(args.seeds)
        overrides = parse_overrides(args.overrides, module.Config)
        _, subset = make_config(module, args.profile, overrides)  # validate before any work
        jobs = _datasets_to_run(args, module)
        from common import datasets, plots, results, setup, verdict

        # the folders' result files before this command writes any: the committed ones in a clean clone
        before = {name: results.load_runs(run_folder(args.out, args.paper, name, args.profile, overrides))
                  for name, _, _ in jobs}
        if args.profile in PROFILE_NOTES:
            print(PROFILE_NOTES[args.profile], flush=True)
        device, cpu = setup.device_name(), this_cpu()
        for name, data, data_file in jobs:
            folder = run_folder(args.out, args.paper, name, args.profile, overrides)
            data = data if data is not None else datasets.load(name)
            n = len(datasets.subset(data, subset, seed=0).x) if subset else len(data.x)
            print("\n".join(plan_lines(args.paper, name, args.profile, seeds, n, folder, before[name], device, cpu)),
                  flush=True)
            records = [run_one(module, args.paper, name, args.profile, seed, folder, overrides,
                               verbose=0 if args.quiet else 1, fresh=args.fresh, data=data, data_file=data_file)
                       for seed in seeds]
            title = (f"\n{args.paper} on {name}, profile {args.profile}, seed{'s' if len(seeds) > 1 else ''} "
                     f"{', '.join(map(str, seeds))} ({folder})")
            print("\n".join(verdict.table(module, name, records, before[name], title=title)), flush=True)
            clusters = [r["metrics"].get("nonempty_clusters", sum(s > 0 for s in r["cluster_sizes"])) for r in records]
            print(f"non-empty clusters per seed: {clusters}", flush=True)
            plots.run_figures(folder, results.load_runs(folder))
        return 0
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (RuntimeError, ValueError, OSError) as e:  # DataError is a RuntimeError
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
