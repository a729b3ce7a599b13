"""Backend/device set-up: seeding, an environment summary stored with every result."""
import os
import platform
import subprocess
from pathlib import Path

import numpy as np


def seed_everything(seed):
    """Seeds Python, NumPy and the Keras backend (``keras.utils.set_random_seed``)."""
    import keras

    keras.utils.set_random_seed(int(seed))


def device_name():
    """'gpu:<name>' if the backend sees an accelerator, else 'cpu:<n> cores'."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            dev = jax.devices()[0]
            if dev.platform != "cpu":
                return f"{dev.platform}:{getattr(dev, 'device_kind', dev)}"
        elif backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                return f"gpu:{tf.config.experimental.get_device_details(gpus[0]).get('device_name', gpus[0].name)}"
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                return f"gpu:{torch.cuda.get_device_name(0)}"
    except Exception:  # a summary must never stop a run
        pass
    return f"cpu:{os.cpu_count()} cores"


def cpu_model():
    """The CPU's model name, vector extensions and core count (from /proc/cpuinfo): ties a timing to its machine."""
    name, flags = "unknown", []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and name == "unknown":
                name = value.strip()
            if key.strip() == "flags" and not flags:
                flags = value.split()
    except OSError:
        pass
    vector = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
              if f in flags]
    return {"model": name, "vector_extensions": vector, "cores": os.cpu_count()}


def environment():
    """Backend, device, CPU and library versions, as a dict for result files."""
    import keras
    import scipy
    import sklearn

    backend = keras.backend.backend()
    versions = {"python": platform.python_version(), "keras": keras.__version__, "numpy": np.__version__,
                "scipy": scipy.__version__, "sklearn": sklearn.__version__}
    try:
        mod = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]
        versions[mod] = __import__(mod).__version__
    except Exception:
        pass
    return {"backend": backend, "device": device_name(), "cpu": cpu_model(), "host": platform.node(), "versions": versions,
            "mixed_precision": keras.mixed_precision.global_policy().name}


CODE_PATHS = ("papers", "common", "reproduce.sh", "requirements.txt")  # what makes a result; not results/


def git_state(root=None):
    """{'commit', 'dirty', 'dirty_files'} of the code that runs: HEAD, and whether the code paths (papers/, common/,
    reproduce.sh, requirements.txt; tracked files only) differ from it. None where git is unavailable."""
    root = Path(root or Path(__file__).resolve().parents[1])

    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS).splitlines()
                   if not line[3:].endswith((".pyc", "/"))]
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None, "dirty_files": []}
    return {"commit": commit, "dirty": bool(changed), "dirty_files": changed}


def summary_line(env=None):
    env = env or environment()
    vers = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    return f"backend={env['backend']} device={env['device']} policy={env['mixed_precision']} ({vers})"


def use_mixed_precision(enabled):
    """Turns on float16 mixed precision when asked and an accelerator is present (never on CPU)."""
    import keras

    if enabled and not device_name().startswith("cpu"):
        keras.mixed_precision.set_global_policy("mixed_float16")
        return True
    return False
