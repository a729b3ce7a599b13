"""The papers this repository implements, and loading them (shared by common.cli and common.report, which do not
import each other at module level).

``load_paper`` imports the Keras backend with file descriptor 2 sent to /dev/null (``quiet_backend_import``):
TensorFlow's C++ start-up lines (oneDNN, cudart stub, absl) ignore TF_CPP_MIN_LOG_LEVEL=3 in TF 2.21.
"""
import contextlib
import importlib
import os
import sys
from pathlib import Path

PAPERS = ("decs", "dekm", "dcss", "saip", "rdc")
PROFILE_NAMES = ("smoke", "quick", "paper")
ROOT = Path(__file__).resolve().parents[1]


class UsageError(Exception):
    """Bad command-line input: reported as one 'error: ...' line, exit status 2."""


def available_papers():
    return [p for p in PAPERS if (ROOT / "papers" / f"{p}.py").is_file()]


@contextlib.contextmanager
def stderr_to_devnull():
    """File descriptor 2 (what C++ libraries write to) goes to /dev/null inside the block, and is restored after,
    also when the block raises (so a Python traceback still shows)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def quiet_backend_import(verbose=False):
    """Imports keras (and TensorFlow when it is the backend) with its C++ start-up lines silenced, unless
    ``verbose``. Importing them later is then a no-op. Numerics are untouched (TF_ENABLE_ONEDNN_OPTS is not set)."""
    if verbose or "keras" in sys.modules:
        return
    with stderr_to_devnull():
        if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
            import tensorflow  # noqa: F401
        import keras  # noqa: F401


def load_paper(name, verbose=False):
    """The module papers/<name>.py (its C++ start-up lines silenced unless ``verbose``); UsageError if unknown."""
    if name not in available_papers():
        raise UsageError(f"unknown paper {name!r}; available: {', '.join(available_papers())}")
    quiet_backend_import(verbose)
    return importlib.import_module(f"papers.{name}")


# The shared modules whose code can change a result (its numbers, or the paper values it is compared with).
RESULT_CODE = ("training", "checkpoint", "metrics", "estimator", "nets", "clustering", "tables", "health", "batchnorm")


def _imported_common(module):
    """The RESULT_CODE modules that ``module``'s code imports (``from common import x``, ``from common.x import
    y``, ``import common.x``; at any depth of the file)."""
    import ast
    import inspect

    names = set()
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.ImportFrom) and node.module == "common":
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("common."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[1] for a in node.names if a.name.startswith("common."))
    return names & set(RESULT_CODE)


def result_dependencies(module):
    """The RESULT_CODE modules (in RESULT_CODE's order) that ``module`` imports directly or through another of
    them; training, checkpoint and metrics always. (By its imports, not a fixed list: the code of an older commit,
    which lacks some of these files, has a fingerprint too: common.golden.verify.)"""
    seen, todo = set(), {"training", "checkpoint", "metrics"} | _imported_common(module)
    while todo:
        name = todo.pop()
        seen.add(name)
        todo |= _imported_common(importlib.import_module(f"common.{name}")) - seen
    return [importlib.import_module(f"common.{name}") for name in RESULT_CODE if name in seen]


def code_version(module):
    """Fingerprint of the code a result depends on: the paper's module and the shared code it imports of
    RESULT_CODE (result_dependencies; AST: blind to comments and docstrings). common.report compares it with
    today's code."""
    from common import training

    return training.code_fingerprint(module, *result_dependencies(module))
