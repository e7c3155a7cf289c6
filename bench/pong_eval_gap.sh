#!/usr/bin/env bash
# Pong's evaluation gap, taken apart on checkpoints of one run short enough for a session.
#
# The CPU preset's Pong run (results/atari_cpu/) evaluated below its own training episodes: by -1.6
# and -1.4 at its 600k and 700k evaluations, by 3-4.6 from 900k on.  Two causes are left: the
# exploration rate (evaluation plays at eps 0.001, training at 0.01), and the frozen checkpoint
# against the policy that goes on learning while it plays.  This script trains the same preset and,
# at each of SNAPSHOTS (agent steps):
#   1. scores the checkpoint on evaluation envs at eps 0.01 and at eps 0.001 (EPISODES whole games
#      each), beside the training episodes of the WINDOW agent steps before it;
#   2. trains on (a resumed run continues exactly), so that the same policy's training episodes in
#      the WINDOW after the checkpoint bracket it too: a curve still rising cannot explain the gap.
# eval(0.001) - eval(0.01) is the exploration rate's share; eval(0.01) - training is the frozen
# policy's.  One seed, one thread.  At the defaults about 2h20m of one core of a 2-core EPYC VM
# (2h05m of training to 600k at 81 agent steps/s, about 5 minutes of scoring per checkpoint).  Run
# again, it goes on from the run's last checkpoint and skips the checkpoints already scored.
#
#   bash bench/pong_eval_gap.sh                           # results/atari_cpu/eval_gap/pong/
#   SNAPSHOTS="600000 700000" bash bench/pong_eval_gap.sh  # later checkpoints of the same run
#
# The run directory (checkpoints with the replay, about 0.7 GB) stays under RUN; OUT gets its small
# files, each checkpoint's scores and every episode's return.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
SNAPSHOTS=${SNAPSHOTS:-300000 400000 500000}
WINDOW=${WINDOW:-100000}
EPISODES=${EPISODES:-30}
OUT=${OUT:-results/atari_cpu/eval_gap/pong}
RUN=${RUN:-runs/pong_eval_gap}
EXTRA=${EXTRA:-}
export OMP_NUM_THREADS=1
mkdir -p "$OUT"
log() { echo "$(date -u +%FT%TZ) $* ($(git rev-parse --short HEAD))" | tee -a "$OUT/log.txt"; }
step_of() { [ -f "$RUN/summary.json" ] && $PY -c "import json,sys; print(json.load(open(sys.argv[1]))['step'])" "$RUN/summary.json" || echo 0; }
train_to() {
  if [ -f "$RUN/config.yaml" ]; then
    $PY run.py train --resume "$RUN" --total-steps "$1"
  else
    # shellcheck disable=SC2086  # EXTRA is a list of key=value overrides
    $PY run.py train configs/atari_dqn_cpu.yaml loop.total_steps="$1" loop.stop_return=null $EXTRA --out "$RUN"
  fi
}

raws=()
for snapshot in $SNAPSHOTS; do
  raw=$OUT/raw_$snapshot.json
  raws+=("$raw")
  [ -f "$raw" ] && continue
  if [ "$(step_of)" -lt "$snapshot" ]; then
    log "training to $snapshot agent steps"
    train_to "$snapshot"
  fi
  [ "$(step_of)" -eq "$snapshot" ] || { echo "the run is at step $(step_of), past $snapshot: it cannot be scored there" >&2; exit 2; }
  log "scoring the checkpoint at $snapshot"
  $PY bench/eval_gap.py scores "$RUN" --episodes "$EPISODES" --window "$WINDOW" --raw "$raw.tmp" > "$OUT/scores_$snapshot.md"
  mv "$raw.tmp" "$raw"
done
last=${snapshot:?SNAPSHOTS is empty}
if [ "$(step_of)" -lt $((last + WINDOW)) ]; then
  log "training on to $((last + WINDOW)) for the window after the last checkpoint"
  train_to $((last + WINDOW))
fi
$PY bench/eval_gap.py after "$RUN" "${raws[@]}" --window "$WINDOW" > "$OUT/after.md"
cat "$OUT"/scores_*.md "$OUT/after.md"
for f in config.yaml metrics.jsonl summary.json; do cp "$RUN/$f" "$OUT/$f"; done
log "done"
