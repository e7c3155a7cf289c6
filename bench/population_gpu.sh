#!/usr/bin/env bash
# Population mode on a GPU machine, one command sized for about 8 minutes: the aggregate agent
# steps/s of K MinAtar DQN runs (the paper's largest torso) trained as populations against the same
# runs as a sweep runs them (one process per core), side by side.  Results (text and JSON) go to
# $OUT_DIR (default $OUT or bench_results).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT_DIR:-${OUT:-bench_results}}
mkdir -p "$OUT_DIR"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())" \
  | tee "$OUT_DIR/population_gpu.txt" || exit 1
timeout 480 $PY run.py bench --population "${K:-16}" --nets c32_h256 --steps "${STEPS:-20000}" --repeats 1 \
  --device cuda --json "$OUT_DIR/population_gpu.json" | tee -a "$OUT_DIR/population_gpu.txt" \
  || echo "population bench did not finish (exit $?)"
