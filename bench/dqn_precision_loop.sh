#!/usr/bin/env bash
# Our Atari DQN whole loop at fp32 and bf16, side by side in one process, one torch thread, arms
# interleaved over REPEATS repeats of STEPS timed agent steps each (after the bench's 1,000-step
# warm-up); the update alone is timed in interleaved rounds as well.  Needs idle cores: pause a
# background study first (kill -STOP -PGID ... kill -CONT -PGID) and say so beside the figures.
#
#   OUT_DIR=results/bench_cpu_side_by_side/dqn_loop_<date> bash bench/dqn_precision_loop.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=$(realpath -m "${OUT_DIR:?set OUT_DIR}")
PY=${PYTHON:-.venv/bin/python}
STEPS=${STEPS:-4000}
REPEATS=${REPEATS:-4}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
source bench/machine_header.sh
machine_header "rlsmooth $(git rev-parse --short HEAD); $STEPS timed steps x $REPEATS interleaved repeats" | tee "$OUT_DIR/raw.txt"
$PY run.py bench --suite atari --agent dqn --num-envs 1 --steps "$STEPS" --repeats "$REPEATS" --threads 1 \
    --spectral none --precision fp32,bf16 --json "$OUT_DIR/dqn.json" 2>"$OUT_DIR/stderr.log" | tee -a "$OUT_DIR/raw.txt"
echo "# finished $(date -u +%FT%TZ)" | tee -a "$OUT_DIR/raw.txt"
