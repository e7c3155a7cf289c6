#!/usr/bin/env bash
# The MinAtar ablation on one GPU machine within a time budget: one training process per CPU core,
# all sharing the GPU, through `rlsmooth sweep` (so cells resume where the last budget stopped).
# When the budget runs out every cell gets Ctrl-C, writes a checkpoint and stops; then `rlsmooth
# compare` reports whatever has evaluations, and the aggregate agent steps/s of this invocation
# is printed and saved.
#
#   bash bench/minatar_ablation_gpu.sh          # BUDGET_S=540 WORKERS=$(nproc) by default
#
# Environment: SWEEP (default configs/sweeps/minatar_ablation_gpu.yaml), OUT_DIR (default
# $OUT or bench_results), BUDGET_S, WORKERS, PYTHON, POPULATION (pack cells into populations of up
# to this many members per process, e.g. 18 for configs/sweeps/minatar_adam_sn.yaml), and EXTRA
# (overrides for every cell, e.g. "device=cpu" to try it without a GPU).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SWEEP=${SWEEP:-configs/sweeps/minatar_ablation_gpu.yaml}
OUT_DIR=${OUT_DIR:-${OUT:-bench_results}}/$(basename "$SWEEP" .yaml)
BUDGET_S=${BUDGET_S:-540}
WORKERS=${WORKERS:-$(nproc)}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT_DIR"
$PY -c "import torch; print('device:', torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu only')" \
  | tee "$OUT_DIR/device.txt"
steps() {  # agent steps logged so far, over every run of the sweep
  $PY - "$OUT_DIR/runs" <<'PYEOF'
import json, sys
from pathlib import Path
total = 0
for m in Path(sys.argv[1]).glob("*/metrics.jsonl"):
    last = 0
    for line in m.read_text().splitlines():
        try:
            last = max(last, int(json.loads(line)["step"]))
        except (ValueError, KeyError, TypeError):
            pass
    total += last
print(total)
PYEOF
}
before=$(steps)
start=$(date +%s)
# timeout signals the whole process group: every cell checkpoints on SIGINT
timeout --signal=INT --kill-after=60 "$BUDGET_S" $PY -m rlsmooth sweep "$SWEEP" --workers "$WORKERS" \
  --out "$OUT_DIR/runs" ${POPULATION:+--population $POPULATION} ${EXTRA:+--set $EXTRA} | tee "$OUT_DIR/sweep.txt"
elapsed=$(( $(date +%s) - start ))
after=$(steps)
echo "agent steps this invocation: $((after - before)) in ${elapsed}s, $(( (after - before) / (elapsed > 0 ? elapsed : 1) )) steps/s over $WORKERS processes${POPULATION:+ (populations of up to $POPULATION)}" \
  | tee "$OUT_DIR/throughput.txt"
$PY -m rlsmooth compare "$OUT_DIR/runs" --out "$OUT_DIR/report" --reps 1000 || echo "no run has an evaluation yet"
