#!/usr/bin/env bash
# Copy the small files of a sweep's finished cells (config.yaml, metrics.jsonl, summary.json,
# sweep_cell.json; no checkpoints or event files) into a results folder and report them there.
#
#   bash bench/collect_finished.sh SWEEP_DIR RESULTS_DIR [compare flags ...]
#
# INCLUDE_RUNNING=1 also copies cells still training (a snapshot of their metrics so far; compare
# reports them at the last step all runs of a game reached).
set -euo pipefail
cd "$(dirname "$0")/.."
SWEEP_DIR=${1:?usage: bench/collect_finished.sh SWEEP_DIR RESULTS_DIR}
DEST=${2:?usage: bench/collect_finished.sh SWEEP_DIR RESULTS_DIR}
shift 2
PY=${PYTHON:-python3}
count=0
for cell in "$SWEEP_DIR"/*/; do
  [ -f "$cell/summary.json" ] || { [ "${INCLUDE_RUNNING:-0}" = 1 ] && [ -f "$cell/metrics.jsonl" ]; } || continue
  name=$(basename "$cell")
  mkdir -p "$DEST/runs/$name"
  for f in config.yaml metrics.jsonl summary.json sweep_cell.json; do
    [ -f "$cell/$f" ] && cp "$cell/$f" "$DEST/runs/$name/$f"
  done
  count=$((count + 1))
done
echo "$count cells in $DEST/runs"
$PY -m rlsmooth compare "$DEST/runs" --out "$DEST/report" "$@"
