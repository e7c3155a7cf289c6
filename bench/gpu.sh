#!/usr/bin/env bash
# The whole GPU throughput measurement as one command; sized to finish in under
# 10 minutes on one H100.  Prints the figures and writes one JSON file per measurement to $OUT_DIR.
#
#   bash bench/gpu.sh                 # needs torch with CUDA and this package's dependencies
#
# Each line reports the whole loop's agent steps/s (median of alternating repetitions, with and
# without SN on the penultimate layer, so the SN cost is a side-by-side ratio) and its parts:
# env stepping, batched acting, replay sampling from host memory (pinned staging) and from GPU
# memory, and updates, eager against torch.compile with CUDA graphs (--compile).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=$(realpath -m "${OUT_DIR:-${OUT:-bench_results}}")
mkdir -p "$OUT_DIR"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())" || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee "$OUT_DIR/gpu.txt"
run() {  # seconds, name, then `rlsmooth bench` arguments
  local limit=$1 name=$2; shift 2
  timeout "$limit" $PY run.py bench --device cuda --json "$OUT_DIR/$name.json" "$@" 2>>"$OUT_DIR/stderr.log" \
    || echo "bench $name did not finish (exit $?)"
}
run 170 dqn_n16  --suite atari --agent dqn --num-envs 16 --steps 20000 --repeats 2 --compile
run 170 c51_n16  --suite atari --agent c51 --num-envs 16 --steps 20000 --repeats 2 --compile
run 100 c51_n64  --suite atari --agent c51 --num-envs 64 --steps 40000 --repeats 1
run 50  c51_n1   --suite atari --agent c51 --num-envs 1  --steps 3000  --repeats 1 --spectral none
run 100 ppo_n64  --suite atari --agent ppo --num-envs 64 --steps 40000 --repeats 2
# bf16 against fp32 side by side (loops and the update alone, interleaved)
run 120 dqn_n16_bf16 --suite atari --agent dqn --num-envs 16 --steps 10000 --repeats 2 --spectral none --precision fp32,bf16
run 60  ppo_n64_bf16 --suite atari --agent ppo --num-envs 64 --steps 20000 --repeats 1 --spectral none --precision fp32,bf16
# CleanRL's DQN at our N = 1 settings on the GPU, when a CleanRL checkout made to run under gymnasium 1.x
# travels with the command (CLEANRL_DIR; see results/bench_cpu_side_by_side/README.md for the changes)
if [ -n "${CLEANRL_DIR:-}" ]; then
  run 80 dqn_n1_bf16 --suite atari --agent dqn --num-envs 1 --steps 4000 --repeats 1 --spectral none --precision fp32,bf16
  for total in 2000 6000; do   # two lengths past one warm-up: their difference cancels start-up
    start=$(date +%s.%N)
    (cd "$(mktemp -d)" && PYTHONPATH="$CLEANRL_DIR" timeout 120 $PY "$CLEANRL_DIR/cleanrl/dqn_atari.py" --seed 1 \
      --env-id BreakoutNoFrameskip-v4 --total-timesteps $total --learning-starts 1000 --buffer-size 100000 \
      >/dev/null 2>>"$OUT_DIR/cleanrl_stderr.log") || echo "CleanRL dqn_atari.py ($total steps) failed"
    echo "cleanrl dqn_atari.py cuda $total steps: $(echo "$(date +%s.%N) - $start" | bc) s" | tee -a "$OUT_DIR/cleanrl.txt"
  done
fi
echo "results in $OUT_DIR"
