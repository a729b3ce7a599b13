#!/usr/bin/env bash
# Paper-profile runs on the lent GPU machine (JAX backend; it has no TensorFlow and no registry access).
# Here, once:   ../shared/tools/gpu-wheels.sh          (Keras, namex, optree wheels into .whl/)
#               mkdir -p .data && cp -r ../shared/data/{usps,mnist} .data/   (.data/ is git-ignored)
# Then through the device tool, carrying [".whl", ".data"]:
#   bash benchmarks/gpu_paper.sh decs "usps mnist" 0,1,2
# Results come back as $OUT/results.tgz (the device returns files at most two folders deep):
# untar it into results/ here, check, commit (the cache/ folders are git-ignored).
set -euo pipefail
paper=${1:?paper}; sets=${2:?datasets}; seeds=${3:-0,1,2}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax CLUSTER_DATA_DIR=$PWD/.data PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
out=${OUT:-/tmp}
mkdir -p /tmp/res/decs/usps
python3 benchmarks/decs_speed.py --json /tmp/res/decs/usps/benchmark_jax_gpu.json || true
for ds in $sets; do
  python3 -m common.cli "$paper" "$ds" --profile paper --seeds "$seeds" --out /tmp/res --quiet 2>&1 | tee -a "$out/log.txt"
  tar czf "$out/results.tgz" --exclude=cache -C /tmp/res .
done
