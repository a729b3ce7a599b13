"""Run the DECS authors' own code (ChengZhanwen/DECS, an unmodified tree made by setup_decs.sh) on USPS or MNIST's
test split through their entry point run_exp.py, and write a provenance JSON with the final-iterate metrics.

Nothing here changes what their code computes. The harness only
  * replaces their seed.set_seed (which imports torch, absent from their stated requirements, hard-codes 2333 and
    never seeds TensorFlow) by one that seeds python `random`, NumPy and TensorFlow with --seed
    (tf.keras.utils.set_random_seed); this is the one runtime substitution, declared in the JSON;
  * wraps methods of their FcDEC class and Keras' Model.fit_generator with timers (an epoch-timer callback is put
    first in their callback list; timestamps after each clustering iteration; durations of the evaluation
    `predict` calls, at which the cluster sizes of argmax q are also counted);
  * after their fit() returns, predicts q with the final weights and takes argmax q: the labels of the LAST
    iterate. Their fit() returns the labels of the last evaluation (iteration floor((maxiter-1)/30)*30), which
    their main.py prints as "Final" and run_exp.py writes to results.csv; the JSON keeps both, plus their
    label-picked "Best" (max ACC over evaluations), which is labelled as such and is not the result;
  * for --dataset mnist-test, replaces Keras' mnist.load_data (a download, unreachable here) by a reader of the
    same four MNIST IDX files under $CLUSTER_DATA_DIR/mnist (their load_mnist_test keeps the test split);
  * with --stage-dir, keeps the pre-trained autoencoder (their ae_weights.h5) and its records there, so that a
    run cut after pre-training resumes at the clustering stage: a later sitting hands the weights to their
    train() as args.pretrained_weights (their own option). With --stage-dir the RNGs are re-seeded with --seed
    when the clustering stage starts, in every sitting, so a resumed run draws what an uncut one draws.
"""
import argparse
import csv
import hashlib
import json
import os
import platform
import runpy
import subprocess
import sys
import time
import types

import numpy as np

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, required=True)
p.add_argument("--dataset", default="usps", choices=("usps", "mnist-test"))
p.add_argument("--stage-dir", default=None, help="keep/resume the pre-trained autoencoder here (see docstring)")
p.add_argument("--ae-epochs", type=int, default=100)
p.add_argument("--maxiter", type=int, default=4000)
p.add_argument("--out-json", required=True)
p.add_argument("--workdir", required=True)
p.add_argument("--code-dir", required=True)
p.add_argument("--commit", required=True)
p.add_argument("--patch-file", required=True)
p.add_argument("--command", required=True, help="the shell command line, recorded verbatim")
a = p.parse_args()

T_START = time.time()
DATE_START = subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()
LOAD_START = open("/proc/loadavg").read().strip()

import tensorflow as tf  # noqa: E402

# --- their seeding, substituted (see docstring) ---------------------------------------------------------------
seed_stub = types.ModuleType("seed")


def _set_seed(seed=2333):  # run_exp.py calls set_seed() with its default 2333; we use --seed instead
    os.environ["PYTHONHASHSEED"] = str(a.seed)
    tf.keras.utils.set_random_seed(a.seed)  # random.seed, np.random.seed, tf.random.set_seed


seed_stub.set_seed = _set_seed
sys.modules["seed"] = seed_stub

# --- MNIST: their loader calls Keras' mnist.load_data (a download); the same arrays from the local IDX files --------
DATA_FILES = {}
if a.dataset == "mnist-test":
    import gzip

    MNIST_DIR = os.path.join(os.environ.get("CLUSTER_DATA_DIR", os.path.join(os.path.dirname(__file__), "..", "..",
                                                                           "..", "shared", "data")), "mnist")

    def _idx(name):
        path = os.path.join(MNIST_DIR, name)
        raw = open(path, "rb").read()
        DATA_FILES[name] = hashlib.sha256(raw).hexdigest()
        raw = gzip.decompress(raw)
        ndim = raw[3]
        shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
        return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)

    def _load_data(path="mnist.npz"):
        out = ((_idx("train-images-idx3-ubyte.gz"), _idx("train-labels-idx1-ubyte.gz")),
               (_idx("t10k-images-idx3-ubyte.gz"), _idx("t10k-labels-idx1-ubyte.gz")))
        # what their mnist-test loader keeps, hashed as arrays: the notebook compares them with our loader's
        DATA_FILES["test_split_arrays_sha256"] = {"x_uint8": hashlib.sha256(out[1][0].tobytes()).hexdigest(),
                                                  "y_int64": hashlib.sha256(out[1][1].astype(np.int64).tobytes())
                                                  .hexdigest()}
        return out

    import tensorflow.keras.datasets.mnist as _keras_mnist  # noqa: E402  (the module their loader imports from)
    _keras_mnist.load_data = _load_data

# --- their modules, imported from their unmodified tree -------------------------------------------------------
sys.path.insert(0, a.code_dir)
os.makedirs(a.workdir, exist_ok=True)
if not os.path.exists(os.path.join(a.workdir, "data")):
    os.symlink(os.path.join(a.code_dir, "data"), os.path.join(a.workdir, "data"))
os.chdir(a.workdir)  # run_exp.py writes results/temp/... and load_usps reads ./data/usps relative to the cwd
import FcDEC as fcmod  # noqa: E402
import main as mainmod  # noqa: E402  (run_exp.py's "from main import train" then finds the wrapper below)

STAGE = os.path.abspath(a.stage_dir) if a.stage_dir else None
RESUMED = bool(STAGE) and os.path.exists(os.path.join(STAGE, "pretrain.json"))

R = {"epochs": [], "iter_end": [], "evals": []}
S = {"in_fit": False, "n_iter": 0}


class _EpochTimer(tf.keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.t = time.time()

    def on_epoch_end(self, epoch, logs=None):  # runs before their PrintACC (k-means) callback
        R["epochs"].append({"begin": self.t - T_START, "train_s": time.time() - self.t,
                            "loss": float((logs or {}).get("loss", float("nan")))})


_orig_fg = tf.keras.Model.fit_generator


def _fit_generator(self, *args, **kw):
    kw["callbacks"] = [_EpochTimer()] + list(kw.get("callbacks") or [])
    return _orig_fg(self, *args, **kw)


tf.keras.Model.fit_generator = _fit_generator

_orig_pretrain = fcmod.FcDEC.pretrain


def _pretrain(self, *args, **kw):
    t0 = time.time()
    out = _orig_pretrain(self, *args, **kw)
    R["pretrain_s"] = time.time() - t0
    return out


fcmod.FcDEC.pretrain = _pretrain

_orig_train = mainmod.train


def _train(args):
    if RESUMED:  # their own option: load the autoencoder instead of pre-training it
        args.pretrained_weights = os.path.join(STAGE, "ae_weights.h5")
    return _orig_train(args)


mainmod.train = _train

_orig_tob = fcmod.FcDEC.train_on_batch


def _train_on_batch(self, *args, **kw):
    out = _orig_tob(self, *args, **kw)
    S["n_iter"] += 1
    R["iter_end"].append(time.time())
    return out


fcmod.FcDEC.train_on_batch = _train_on_batch

_orig_predict = fcmod.FcDEC.predict


def _predict(self, x):
    t0 = time.time()
    q = _orig_predict(self, x)
    if S["in_fit"]:
        R["evals"].append({"iter": S["n_iter"], "start": t0, "dur_s": time.time() - t0,
                           "sizes": np.bincount(q.argmax(1), minlength=q.shape[1]).tolist()})
    return q


fcmod.FcDEC.predict = _predict

_orig_fit = fcmod.FcDEC.fit


def _fit(self, x, y=None, *args, **kw):
    if STAGE:
        if not RESUMED:  # keep the pre-training for a later sitting
            import shutil

            os.makedirs(STAGE, exist_ok=True)
            shutil.copy(os.path.join(TRIAL, "ae_weights.h5"), os.path.join(STAGE, "ae_weights.h5"))
            shutil.copy(os.path.join(TRIAL, "pretrain_log.csv"), os.path.join(STAGE, "pretrain_log.csv"))
            with open(os.path.join(STAGE, "pretrain.json"), "w") as f:
                json.dump({"epochs": R["epochs"], "pretrain_s": R["pretrain_s"], "date_utc_start": DATE_START,
                           "date_utc_end": subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip(),
                           "seed": a.seed, "ae_epochs": a.ae_epochs, "dataset": a.dataset}, f)
        tf.keras.utils.set_random_seed(a.seed)  # the same draws in an uncut and a resumed run
    S["in_fit"] = True
    t0 = time.time()
    y_last_eval = _orig_fit(self, x, y, *args, **kw)
    R["cluster_s"] = time.time() - t0
    R["fit_start"] = t0
    S["in_fit"] = False
    q = _orig_predict(self, x)  # final weights (also saved by them as model_final.h5)
    R["y_final"] = q.argmax(1)
    R["y_last_eval"] = np.asarray(y_last_eval)
    R["y_true"] = np.asarray(y).astype(int)
    R["n_clusters"] = q.shape[1]
    return y_last_eval


fcmod.FcDEC.fit = _fit

# --- their entry point, with the budget flags -----------------------------------------------------------------
TRIAL = os.path.join(a.workdir, "results", "temp", "DECS", a.dataset, "trial0")
argv = ["run_exp.py", "--dataset", a.dataset, "--trials", "1",
        "--pretrain-epochs", str(a.ae_epochs), "--maxiter", str(a.maxiter)]
sys.argv = argv
t_run = time.time()
runpy.run_path(os.path.join(a.code_dir, "run_exp.py"), run_name="__main__")
total_s = time.time() - t_run

# --- metrics --------------------------------------------------------------------------------------------------
from scipy.optimize import linear_sum_assignment  # noqa: E402
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score  # noqa: E402


def score(y, yp, k):
    d = max(yp.max(), y.max()) + 1
    w = np.zeros((d, d), dtype=np.int64)
    np.add.at(w, (yp, y), 1)
    r, c = linear_sum_assignment(-w)
    sizes = np.bincount(yp, minlength=k).tolist()
    return {"acc": float(w[r, c].sum() / y.size), "nmi": float(normalized_mutual_info_score(y, yp)),
            "ari": float(adjusted_rand_score(y, yp)), "n_nonempty": int(sum(s > 0 for s in sizes)),
            "min_size": int(min(sizes)), "sizes": sizes}


y, k = R["y_true"], R["n_clusters"]
out_dir = os.path.dirname(os.path.abspath(a.out_json))
stem = os.path.splitext(os.path.basename(a.out_json))[0]
np.save(os.path.join(out_dir, stem + "_labels_final.npy"), R["y_final"].astype(np.int16))

if RESUMED:  # this sitting loaded the autoencoder: its pre-training records are the earlier sitting's
    stage = json.load(open(os.path.join(STAGE, "pretrain.json")))
    assert (stage["seed"], stage["ae_epochs"], stage["dataset"]) == (a.seed, a.ae_epochs, a.dataset), stage
    R["epochs"], R["pretrain_s"] = stage["epochs"], stage["pretrain_s"]
with open(os.path.join(TRIAL, "log.csv")) as f:
    log = [{kk: float(v) for kk, v in row.items()} for row in csv.DictReader(f)]
with open(os.path.join(STAGE if RESUMED else TRIAL, "pretrain_log.csv")) as f:
    ae_loss = [float(row["loss"]) for row in csv.DictReader(f)]
best = None
for row in log:  # their rule: strictly greater ACC updates the best (first maximum wins)
    if best is None or row["acc"] > best["acc"]:
        best = row
for row, ev in zip(log, R["evals"]):
    row["sizes"] = ev["sizes"]
    row["n_nonempty"] = int(sum(s > 0 for s in ev["sizes"]))

# --- timings --------------------------------------------------------------------------------------------------
ends = np.asarray(R["iter_end"])
eval_in_window = sum(e["dur_s"] for e in R["evals"] if ends.size and ends[0] <= e["start"] <= ends[-1])
n_gaps = max(len(ends) - 1, 1)
ep = R["epochs"]
timing = {
    "total_s": total_s,
    "pretrain_s": R["pretrain_s"],
    "cluster_s": R["cluster_s"],
    "other_s (data loading, model build, run_exp logging)": total_s - (0 if RESUMED else R["pretrain_s"])
    - R["cluster_s"],
    "pretrain_in_earlier_sitting": RESUMED,
    "ae_epoch_train_s": [e["train_s"] for e in ep],
    "ae_epoch_train_s_mean_excl_first": float(np.mean([e["train_s"] for e in ep[1:]])) if len(ep) > 1 else None,
    "ae_epoch_first_s (includes tracing)": ep[0]["train_s"] if ep else None,
    "ae_kmeans_callback_and_rest_s (their PrintACC: k-means n_init=20 every epochs/10 epochs, saving)":
        R["pretrain_s"] - sum(e["train_s"] for e in ep),
    "cluster_kmeans_init_s": (R["evals"][0]["start"] - R["fit_start"]) if R["evals"] else None,
    "cluster_eval_predict_s_total": sum(e["dur_s"] for e in R["evals"]),
    "cluster_per_100_iters_s (incl. their evaluation every 30 iterations)":
        float((ends[-1] - ends[0]) / n_gaps * 100) if ends.size > 1 else None,
    "cluster_per_100_iters_s (excl. evaluation predict)":
        float((ends[-1] - ends[0] - eval_in_window) / n_gaps * 100) if ends.size > 1 else None,
    "n_cluster_iterations_run": int(len(ends)),
}


def sh(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()


cpu_model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "")
with open(a.patch_file, "rb") as f:
    patch_sha1 = hashlib.sha1(f.read()).hexdigest()
result = {
    "method": "DECS (authors' code)",
    "dataset": a.dataset,
    "n_samples": int(y.size),
    "seed": a.seed,
    "budget": {"ae_epochs": a.ae_epochs, "cluster_iterations": a.maxiter, "batch_size": 256,
               "note": "everything else as run_exp.py sets it: augmentation in both stages, Adam (Keras default "
                       "lr 1e-3) for both stages, update_interval 30 (evaluation only), k-means n_init=20, "
                       "alpha 0.5, lambda 0.4 (code defaults)"},
    "final": score(y, R["y_final"], k),
    "final_note": "argmax q of the model after the last clustering iteration (the last iterate).",
    "authors_reported_final_last_eval": dict(score(y, R["y_last_eval"], k), iteration=int(log[-1]["iter"])),
    "authors_reported_final_note": "labels returned by their fit(): argmax q at the last evaluation "
                                   "(every 30 iterations), printed by main.py as 'Final' and written by "
                                   "run_exp.py to results.csv.",
    "label_picked_best_NOT_A_RESULT": {kk: best[kk] for kk in ("iter", "acc", "nmi", "ari")},
    "label_picked_best_note": "their 'Best' line: the evaluation with the highest ACC against the labels; "
                              "selected with the labels, so not a clustering result.",
    "trajectory": log,
    "trajectory_note": "their log.csv (every 30 iterations; loss = mean of the previous 30 batch losses) plus "
                       "the sizes of argmax q at each evaluation (counted by the harness).",
    "ae_loss_per_epoch": ae_loss,
    "timing": timing,
    "provenance": {
        "authors_repo": "https://github.com/ChengZhanwen/DECS",
        "authors_commit": a.commit,
        "patch_file": a.patch_file,
        "patch_sha1": patch_sha1,
        "patch_note": "empty patch: their tree runs unmodified. Data: DECS/data/usps/usps_train.jf (absent from "
                      "the mirror) decompressed from their own usps_train.jf.gz; git blob hash checked equal "
                      "to the commit's b0dc6f3f67690937f6dff9640331b67d2070a7e2.",
        "runtime_substitution": "seed.set_seed replaced: seeds random/NumPy/TensorFlow with --seed "
                                "(theirs imports torch, fixes 2333, never seeds TF)."
                                + (" Keras' mnist.load_data replaced by a reader of the MNIST IDX files named in "
                                   "data_files (their mnist-test loader keeps its test split)."
                                   if a.dataset == "mnist-test" else "")
                                + (" --stage-dir: the RNGs are re-seeded with --seed when the clustering stage "
                                   "starts." if STAGE else "")
                                + (" This sitting loaded the autoencoder the earlier sitting pre-trained "
                                   "(their args.pretrained_weights); the pre-training records are that sitting's."
                                   if RESUMED else ""),
        "data_files": {"directory": MNIST_DIR, "sha256": DATA_FILES} if a.dataset == "mnist-test" else None,
        "stage_dir": STAGE,
        "command": a.command,
        "authors_equivalent_command": "cd DECS && python " + " ".join(argv),
        "harness": os.path.abspath(__file__),
        "harness_sha1": hashlib.sha1(open(os.path.abspath(__file__), "rb").read()).hexdigest(),
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "pip_freeze": sh(sys.executable, "-m", "pip", "freeze").splitlines(),
        "nproc": int(sh("nproc")),
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "loadavg_start": LOAD_START,
        "loadavg_end": open("/proc/loadavg").read().strip(),
        "date_utc_start": DATE_START,
        "date_utc_end": sh("date", "-u"),
        "cpu_sharing_note": "the CPU may be shared with other jobs; compare loadavg with nproc before reading "
                            "the timings as the machine's speed.",
    },
}
with open(a.out_json, "w") as f:
    json.dump(result, f, indent=1)
print("wrote", a.out_json)
print(json.dumps({kk: result["final"][kk] for kk in ("acc", "nmi", "ari", "n_nonempty", "min_size")}))
