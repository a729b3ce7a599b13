#!/usr/bin/env bash
# Builds the DECS authors'-code anchor outside the work tree: their commit unpacked twice (a working copy and a
# pristine one, compared before every run), and a Python venv with the Keras-2 TensorFlow their code needs.
# usage: benchmarks/authors_code/setup_decs.sh <git dir of a clone or mirror of github.com/ChengZhanwen/DECS>
set -euo pipefail
SRC=${1:?usage: $0 <git dir of ChengZhanwen/DECS>}
HERE="$(cd "$(dirname "$0")" && pwd)"
A=${DECS_ANCHOR_DIR:-${REPRO_CACHE_DIR:-$HOME/.cache/deep-clustering-keras}/anchors/decs}
COMMIT=85f2586deb5a376383a915a772f4fa927e56d0c4  # the commit every recorded anchor was run at
mkdir -p "$A/decs_authors" "$A/pristine"
# usps_train.jf's blob is absent from some mirrors (git archive then fails): leave it out; run_decs.sh rebuilds it
# from their own .gz and checks the commit's blob hash
SKIP=':(exclude)DECS/data/usps/usps_train.jf'
git -C "$SRC" archive "$COMMIT" -- . "$SKIP" | tar -x -C "$A/decs_authors"
git -C "$SRC" archive "$COMMIT" -- . "$SKIP" | tar -x -C "$A/pristine"
echo "$COMMIT" > "$A/decs_authors.commit"
: > "$A/decs_authors.patch"  # no source edits are needed (the harness swaps only their seed helper at run time)
python3 -m venv "$A/venv"
"$A/venv/bin/pip" install -q -r "$HERE/decs_requirements.txt"
echo "ready: $HERE/run_decs.sh SEED [AE_EPOCHS] [CLUSTER_ITERS]"
