"""SAIP's Table III k-means row: k-means on the (centred) pixels, n_init 10 (the paper is silent).

    python -m experiments.saip_baselines <dataset> [<dataset> ...]   # results/saip/<dataset>/baselines/seed<k>.json

Labels only score.
"""
import sys
import time
from pathlib import Path

from common import clustering, metrics, results
from papers import saip


def shallow_baselines(data, seed=0, n_init=10):
    """{"k-means": labels} on the prepared inputs."""
    x = saip.prepare(data.x)
    return {"k-means": clustering.kmeans(x, data.n_clusters, n_init, seed, threads=1)[1]}


def write_baselines(dataset, seeds=(0, 1, 2), out="results"):
    """results/saip/<dataset>/baselines/seed<k>.json with the metrics of shallow_baselines (labels: evaluation only)."""
    from common import datasets

    data = datasets.load(dataset)
    for seed in seeds:
        t0 = time.perf_counter()
        labels = shallow_baselines(data, seed)
        rec = {"paper": "saip", "dataset": dataset, "seed": seed, "n_samples": len(data),
               "wall_seconds": time.perf_counter() - t0, "metrics": {},
               "extra_metrics": {k: metrics.evaluate(data.y, v) for k, v in labels.items()}}
        results.write_json(Path(out) / "saip" / dataset / "baselines" / f"seed{seed}.json", rec)
        print(dataset, seed, {k: round(v["acc"], 4) for k, v in rec["extra_metrics"].items()}, flush=True)


def main(argv=None):
    names = saip.DATASETS + saip.EXTRA_DATASETS
    argv = sys.argv[1:] if argv is None else list(argv)
    bad = [d for d in argv if d not in names]
    if not argv or bad:
        print(f"error: {'unknown data set ' + repr(bad[0]) if bad else 'no data set given'}; "
              f"usage: python -m experiments.saip_baselines <{'|'.join(names)}> ...", file=sys.stderr)
        return 2
    for name in argv:
        write_baselines(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
