#!/usr/bin/env bash
# Run the DECS authors' code (ChengZhanwen/DECS, see decs_authors.commit) on $DECS_DATASET (usps, the default, or
# mnist-test) for one seed and write $OUT_DIR/decs_<dataset>_seed<SEED>.json (+ _labels_final.npy, .log,
# work_<dataset>_seed<SEED>/ with their logs and weights).
# usage: [DECS_DATASET=mnist-test] [DECS_STAGE=1] benchmarks/authors_code/run_decs.sh SEED [AE_EPOCHS=100]
#        [CLUSTER_ITERS=4000] [OUT_DIR=$A/out]
# ($A: $DECS_ANCHOR_DIR, default ~/.cache/deep-clustering-keras/anchors/decs, made by setup_decs.sh)
# Defaults = our quick budget; batch size 256 and everything else are their run_exp.py settings.
# DECS_STAGE=1: the pre-trained autoencoder is kept in $OUT_DIR/stage_<dataset>_seed<SEED>_<AE_EPOCHS>/ and a rerun
# after a cut resumes at the clustering stage (decs_harness.py --stage-dir); delete that folder to pre-train anew.
set -euo pipefail
A=${DECS_ANCHOR_DIR:-${REPRO_CACHE_DIR:-$HOME/.cache/deep-clustering-keras}/anchors/decs}
HERE="$(cd "$(dirname "$0")" && pwd)"
SEED=${1:?usage: $0 SEED [AE_EPOCHS] [CLUSTER_ITERS] [OUT_DIR]}
EPOCHS=${2:-100}
ITERS=${3:-4000}
OUT=${4:-$A/out}
DATASET=${DECS_DATASET:-usps}
NAME=decs_${DATASET}_seed$SEED
STAGE_ARGS=()
[ -n "${DECS_STAGE:-}" ] && STAGE_ARGS=(--stage-dir "$OUT/stage_${DATASET}_seed${SEED}_$EPOCHS")
CODE=$A/decs_authors/DECS
mkdir -p "$OUT"
# their tree must be the pristine commit plus exactly decs_authors.patch (currently empty: no source edits)
diff -ru -x __pycache__ -x usps_train.jf "$A/pristine" "$A/decs_authors" > "$OUT/.tree_diff_seed$SEED" || true
cmp -s "$OUT/.tree_diff_seed$SEED" "$A/decs_authors.patch" || { echo "tree differs from pristine+patch" >&2; exit 1; }
rm -f "$OUT/.tree_diff_seed$SEED"
# USPS train file: absent from the mirror; decompress their own .gz and check the commit's blob hash
if [ ! -f "$CODE/data/usps/usps_train.jf" ]; then zcat "$CODE/data/usps/usps_train.jf.gz" > "$CODE/data/usps/usps_train.jf"; fi
[ "$(git hash-object "$CODE/data/usps/usps_train.jf")" = b0dc6f3f67690937f6dff9640331b67d2070a7e2 ] \
  || { echo "usps_train.jf does not match the commit's blob" >&2; exit 1; }
WORK=$OUT/work_$([ "$DATASET" = usps ] || echo "${DATASET}_")seed$SEED
rm -rf "$WORK"   # run_exp.py appends to results/temp/results.csv: start clean
export PYTHONHASHSEED=$SEED PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 CUDA_VISIBLE_DEVICES=
"$A/venv/bin/python" "$HERE/decs_harness.py" --seed "$SEED" --ae-epochs "$EPOCHS" --maxiter "$ITERS" \
  --dataset "$DATASET" "${STAGE_ARGS[@]}" --out-json "$OUT/$NAME.json" --workdir "$WORK" --code-dir "$CODE" \
  --commit "$(cat "$A/decs_authors.commit")" --patch-file "$A/decs_authors.patch" \
  --command "DECS_DATASET=$DATASET${DECS_STAGE:+ DECS_STAGE=$DECS_STAGE} $(readlink -f "$0") $*" 2>&1 \
  | tee "$OUT/$NAME.log"
exit "${PIPESTATUS[0]}"
