#!/usr/bin/env bash
# The long CPU runs, one at a time (never two jobs timing each other), each at the newest commit of main, run from
# a clean worktree so that results record a clean commit; results go to this checkout's results/. Re-reads the job
# list before every job (edit it freely; "#" comments a job out). A job whose result file exists with a code
# fingerprint is done. Runs are resumable: start this again after an interruption and it continues. While the file
# .queue-pause exists in the checkout, no new job starts (for timing-sensitive work outside the queue, e.g. CI).
# A job whose arguments start with "!" is a shell command instead (run in the worktree, $MAIN set; e.g. the
# authors'-code anchors), done when its result file exists.
#     nohup benchmarks/cpu_queue.sh >> queue.log 2>&1 &
set -u
MAIN="$(cd "$(dirname "$0")/.." && pwd)"
WT=${QUEUE_WORKTREE:-${REPRO_CACHE_DIR:-$HOME/.cache/deep-clustering-keras}/worktree}
JOBS=${QUEUE_JOBS:-$MAIN/benchmarks/cpu_jobs.txt}
FAILED=${WT}.failed
[ -d $WT ] || git -C $MAIN worktree add -q --detach $WT HEAD
[ -e $WT/.venv ] || ln -s $MAIN/.venv $WT/.venv
export CLUSTER_DATA_DIR="${CLUSTER_DATA_DIR:-$MAIN/../shared/data}"
while pgrep -f "python -m common.cli" > /dev/null; do sleep 20; done  # a job started by an earlier queue
next_job() {
  while read -r marker args; do
    { [ -z "$marker" ] || [ "${marker:0:1}" = "#" ]; } && continue
    if [ -f "$MAIN/results/$marker" ] && { [ "${args:0:1}" = "!" ] || grep -q code_fingerprint "$MAIN/results/$marker"; }
    then continue; fi
    [ -f "$FAILED/$(echo "$marker" | tr / _)" ] && continue
    echo "$marker $args"; return
  done < $JOBS
}
mkdir -p $FAILED
while true; do
  while [ -e "$MAIN/.queue-pause" ]; do sleep 15; done
  line=$(next_job); [ -z "$line" ] && { echo "=== queue empty $(date -u +%FT%TZ)"; break; }
  marker=${line%% *}; args=${line#* }
  git -C $WT checkout -q --detach "$(git -C $MAIN rev-parse HEAD)"
  echo "=== $(date -u +%FT%TZ) start $args (commit $(git -C $WT rev-parse --short HEAD))"
  if [ "${args:0:1}" = "!" ]; then (cd $WT && MAIN=$MAIN bash -c "${args:1}"); else (cd $WT && ./reproduce.sh $args --out $MAIN/results); fi
  rc=$?
  echo "=== $(date -u +%FT%TZ) end rc=$rc $args"
  if [ $rc -ne 0 ] && ! { [ -f "$MAIN/results/$marker" ] && { [ "${args:0:1}" = "!" ] || grep -q code_fingerprint "$MAIN/results/$marker"; }; }; then
    touch "$FAILED/$(echo "$marker" | tr / _)"; fi
done
