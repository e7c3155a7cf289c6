#!/usr/bin/env bash
# bf16 against fp32 on this CPU, side by side in one run: every agent's whole loop and (value agents)
# the update alone, on Atari and MinAtar, one torch thread, the two precisions interleaved over
# 3 repeats.  Needs idle cores: pause a background study first and resume it after, e.g.
#   kill -STOP -$STUDY_PGID; bash bench/bf16_cpu.sh; kill -CONT -$STUDY_PGID
# Writes results/bench_bf16_cpu/<name>.json and the printed figures to results/bench_bf16_cpu/bench.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT_DIR:-results/bench_bf16_cpu}
mkdir -p "$OUT_DIR"
PY=${PYTHON:-.venv/bin/python}
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
grep -o -m1 'avx512_bf16\|amx_bf16' /proc/cpuinfo | sed 's/^/native bf16: /' | tee "$OUT_DIR/bench.txt"
run() {  # name, then `rlsmooth bench` arguments
  local name=$1; shift
  $PY run.py bench --threads 1 --spectral none --repeats 3 --precision fp32,bf16 --json "$OUT_DIR/$name.json" "$@" \
    2>>"$OUT_DIR/stderr.log" | tee -a "$OUT_DIR/bench.txt"
}
for agent in dqn c51 ppo a2c; do
  run "atari_${agent}" --suite atari --agent "$agent" --num-envs 4 --steps 3000
  run "minatar_${agent}" --suite minatar --agent "$agent" --num-envs 1 --steps 3000
done
echo "results in $OUT_DIR"
