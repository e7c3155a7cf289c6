#!/usr/bin/env bash
# The paper's MinAtar size x SN-layer study (configs/sweeps/minatar_size_sn.yaml: 4 games x 4
# torsos x 7 SN choices x 3 seeds) on one GPU machine, packed into populations: each (game, torso)
# group's 21 runs train in one process, the processes share the GPU.  Time-budgeted and resumable
# (run it again to continue); prints the aggregate agent steps/s and writes a compare report,
# through bench/minatar_ablation_gpu.sh.  Sized for about 9 minutes (BUDGET_S=540).
#
#   bash bench/population_gpu.sh                     # then: bash bench/population_gpu.sh again to go on
#
# Environment as for bench/minatar_ablation_gpu.sh; POPULATION (default 21), SWEEP (default the
# size x SN study), and BENCH=1 to also run `rlsmooth bench --population 16` on the GPU afterwards.
set -uo pipefail
cd "$(dirname "$0")/.."
export SWEEP=${SWEEP:-configs/sweeps/minatar_size_sn.yaml}
export POPULATION=${POPULATION:-21}
bash bench/minatar_ablation_gpu.sh
if [ "${BENCH:-0}" = 1 ]; then
  OUT_DIR=${OUT_DIR:-${OUT:-bench_results}}
  timeout 480 ${PYTHON:-python3} run.py bench --population 16 --nets c32_h256 --steps 20000 --repeats 1 \
    --device cuda --json "$OUT_DIR/population_bench_gpu.json" | tee "$OUT_DIR/population_bench_gpu.txt"
fi
