#!/usr/bin/env bash
# Our Atari DQN, C51 and PPO loops at fp32 and bf16 against CleanRL's dqn_atari.py, c51_atari.py and
# ppo_atari.py at the same network (Nature CNN), batch, replay ratio, envs and one torch thread,
# interleaved round by round; then the population update's FLOP rate against the GEMM peak.
#
#   CLEANRL_DIR=/path/to/cleanrl CLEANRL_PY=/path/to/its/python bash bench/cpu_side_by_side.sh
#
# CLEANRL_DIR is a checkout of CleanRL (cleanrl/ and cleanrl_utils/) made to run under gymnasium 1.x
# and ale-py 0.12, its python an environment with torch, gymnasium, ale-py, tyro, tensorboard and
# opencv; results/bench_cpu_side_by_side/README.md names the snapshot and every change to it.
# Needs idle cores: pause a background study first (kill -STOP -PGID ... kill -CONT -PGID).
#
# CleanRL prints a cumulative rate that includes its warm-up, so each CleanRL arm is timed as two
# whole runs of different lengths past the same warm-up: rate = (extra steps) / (extra seconds),
# which cancels start-up and warm-up.  Ours is `rlsmooth bench`'s loop rate after its warm-up.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=$(realpath -m "${OUT_DIR:-results/bench_cpu_side_by_side}")
ROUNDS=${ROUNDS:-3}
PY=${PYTHON:-.venv/bin/python}
CLEANRL_DIR=${CLEANRL_DIR:?set CLEANRL_DIR to a CleanRL checkout}
CLEANRL_PY=${CLEANRL_PY:-python3}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
RAW="$OUT_DIR/raw.txt"
WORK=$(mktemp -d)   # CleanRL writes its runs/ where it starts: not into results
source bench/machine_header.sh
machine_header "rlsmooth $(git rev-parse --short HEAD); CleanRL $(git -C "$CLEANRL_DIR" rev-parse --short HEAD 2>/dev/null || cat "$CLEANRL_DIR/SNAPSHOT" 2>/dev/null)" | tee "$RAW"

cleanrl_seconds() {  # script, total steps, extra args: wall seconds of one whole CleanRL run
  local script=$1 total=$2; shift 2
  local start end
  start=$(date +%s.%N)
  (cd "$WORK" && PYTHONPATH="$CLEANRL_DIR" "$CLEANRL_PY" "$CLEANRL_DIR/cleanrl/$script" --no-cuda --seed 1 \
      --env-id BreakoutNoFrameskip-v4 --total-timesteps "$total" "$@" >/dev/null 2>>"$OUT_DIR/cleanrl_stderr.log") \
    || { echo "CleanRL $script failed (see $OUT_DIR/cleanrl_stderr.log)" >&2; exit 1; }
  end=$(date +%s.%N)
  echo "$end - $start" | bc
}

cleanrl_rate() {  # name, script, warm-up steps, short extra, long extra, args
  local name=$1 script=$2 warm=$3 short=$4 long=$5; shift 5
  local a b
  a=$(cleanrl_seconds "$script" $((warm + short)) "$@")
  b=$(cleanrl_seconds "$script" $((warm + long)) "$@")
  [ -n "$a" ] && [ -n "$b" ] || { echo "CleanRL $script did not run: see $OUT_DIR/cleanrl_stderr.log" | tee -a "$RAW" >&2; exit 1; }
  echo "cleanrl $name $(echo "($long - $short) / ($b - $a)" | bc -l) agent_steps/s (runs of $((warm + short)) and $((warm + long)) steps: $a s, $b s)" | tee -a "$RAW"
}

for round in $(seq 1 "$ROUNDS"); do
  echo "## round $round" | tee -a "$RAW"
  for agent in dqn c51; do
    $PY run.py bench --suite atari --agent $agent --num-envs 1 --steps 2000 --repeats 1 --threads 1 --spectral none \
      --precision fp32,bf16 --json "$OUT_DIR/ours_${agent}_r$round.json" 2>>"$OUT_DIR/stderr.log" | sed "s/^/ours $agent: /" | tee -a "$RAW"
    # CleanRL: learning from step 1000 (the same warm-up as ours), a 100k replay, one update per 4 agent steps
    cleanrl_rate $agent ${agent}_atari.py 1000 500 2500 --learning-starts 1000 --buffer-size 100000 --train-frequency 4 --batch-size 32
  done
  $PY run.py bench --suite atari --agent ppo --num-envs 8 --steps 3072 --repeats 1 --threads 1 --spectral none \
    --precision fp32,bf16 --json "$OUT_DIR/ours_ppo_r$round.json" 2>>"$OUT_DIR/stderr.log" | sed "s/^/ours ppo: /" | tee -a "$RAW"
  # CleanRL PPO: 8 envs x 128 steps per iteration, 4 minibatches, 4 epochs (its defaults, as ours)
  cleanrl_rate ppo ppo_atari.py 1024 1024 4096 --num-envs 8 --num-steps 128
done

echo "## the population update against the GEMM peak" | tee -a "$RAW"
$PY run.py bench --peak 4,9,16 --nets default,c32_h256 --precision fp32,bf16 --repeats 3 --threads 1 \
  --json "$OUT_DIR/peak.json" 2>>"$OUT_DIR/stderr.log" | tee -a "$RAW"
echo "results in $OUT_DIR"
