#!/usr/bin/env bash
# ./reproduce.sh <paper> <dataset|all> [--profile paper|quick|smoke] [--seeds 0 1 2] [--out results] [--set k=v]
# ./reproduce.sh <paper> --data FILE [--clusters K]
# ./reproduce.sh list
# Default: the paper profile (REPRO_PROFILE overrides it), seed 0. ./reproduce.sh --help: every option and its default.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py=python3
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x "$here/.venv/bin/python" ]; then py="$here/.venv/bin/python"; fi
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
export KERAS_BACKEND="${KERAS_BACKEND:-tensorflow}" TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"
if [ -z "${CLUSTER_DATA_DIR:-}" ] && [ -d "$here/../shared/data" ]; then export CLUSTER_DATA_DIR="$here/../shared/data"; fi
cd "$here"
exec "$py" -m common.cli "$@"
