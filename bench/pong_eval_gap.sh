#!/usr/bin/env bash
# Pong's evaluation gap, taken apart on a run short enough for one session.
#
# The CPU preset's Pong run (results/atari_cpu/) evaluated below its own training episodes from about
# 300k agent steps on: -1.78 [-2.67, -0.88] over 300k-500k, growing to -4.90 at 1.0-1.2M.  Two causes
# are left: the exploration rate (evaluation plays at eps 0.001, training at 0.01), and the frozen
# checkpoint against the policy that learns while it plays.  This script trains the same preset to
# SNAPSHOT agent steps and then, from that one checkpoint:
#   1. scores it on evaluation envs at eps 0.01 and at eps 0.001 (EPISODES whole games each),
#      beside the training episodes of the WINDOW agent steps before it;
#   2. trains a copy of the run WINDOW agent steps further, so the same policy's training episodes
#      after the checkpoint bracket it too (a curve still rising cannot then explain the gap).
# eval(0.001) - eval(0.01) is the exploration rate's share; eval(0.01) - training is the frozen
# policy's.  One seed, one thread; about 2h20m of one core of a 2-core EPYC VM at the defaults
# (1h40m of training to 500k, about 20 min for the copy's 100k, the rest scoring).
#
#   bash bench/pong_eval_gap.sh                           # writes results/atari_cpu/eval_gap/pong_500k/
#   OUT=/tmp/x SNAPSHOT=3000 WINDOW=1000 EPISODES=2 EXTRA="..." bash bench/pong_eval_gap.sh   # a smoke test
#
# The run directories (checkpoints with the replay, about 0.7 GB each) stay under RUNS; the results
# folder gets the small files, the scores table and every episode's return.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
SNAPSHOT=${SNAPSHOT:-500000}
WINDOW=${WINDOW:-100000}
EPISODES=${EPISODES:-40}
OUT=${OUT:-results/atari_cpu/eval_gap/pong_500k}
RUNS=${RUNS:-runs/pong_eval_gap}
EXTRA=${EXTRA:-}
export OMP_NUM_THREADS=1
mkdir -p "$OUT" "$RUNS"
RUN=$RUNS/snapshot
COPY=$RUNS/continued

echo "$(date -u +%FT%TZ) training to $SNAPSHOT agent steps at $(git rev-parse --short HEAD)" | tee -a "$OUT/log.txt"
# shellcheck disable=SC2086  # EXTRA is a list of key=value overrides
$PY run.py train configs/atari_dqn_cpu.yaml loop.total_steps="$SNAPSHOT" loop.stop_return=null \
    loop.checkpoint_every="$SNAPSHOT" $EXTRA --out "$RUN"

rm -rf "$COPY"
cp -r "$RUN" "$COPY"
echo "$(date -u +%FT%TZ) training the copy on to $((SNAPSHOT + WINDOW))" | tee -a "$OUT/log.txt"
$PY run.py train --resume "$COPY" --total-steps $((SNAPSHOT + WINDOW))

echo "$(date -u +%FT%TZ) scoring the checkpoint at $SNAPSHOT" | tee -a "$OUT/log.txt"
$PY bench/eval_gap.py scores "$RUN" --episodes "$EPISODES" --window "$WINDOW" --continued "$COPY" \
    --raw "$OUT/eval_gap_raw.json" | tee "$OUT/eval_gap_scores.md"
for f in config.yaml metrics.jsonl summary.json; do
  mkdir -p "$OUT/snapshot" "$OUT/continued"
  cp "$RUN/$f" "$OUT/snapshot/$f"
  cp "$COPY/$f" "$OUT/continued/$f"
done
echo "$(date -u +%FT%TZ) done" | tee -a "$OUT/log.txt"
