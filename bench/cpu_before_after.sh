#!/usr/bin/env bash
# CPU loop throughput of two commits side by side, in one run: alternating repetitions of the same
# `rlsmooth bench` loop measurement on each checkout, one torch thread each (the machine may be busy;
# only ratios taken in one run mean anything).
#
#   bash bench/cpu_before_after.sh BEFORE_COMMIT [AFTER_COMMIT=HEAD]
#
# Environment: REPEATS (3), PYTHON, OUT_DIR (bench_results), BENCH_ARGS (the bench arguments).
set -uo pipefail
cd "$(dirname "$0")/.."
BEFORE=${1:?usage: bench/cpu_before_after.sh BEFORE_COMMIT [AFTER_COMMIT]}
AFTER=${2:-HEAD}
PY=${PYTHON:-python3}
REPEATS=${REPEATS:-3}
OUT_DIR=${OUT_DIR:-${OUT:-bench_results}}/before_after
BENCH_ARGS=${BENCH_ARGS:---suite minatar --agent dqn --num-envs 1 --steps 8000 --repeats 1 --spectral none}
mkdir -p "$OUT_DIR"
work=$(mktemp -d)
trap 'git worktree remove --force "$work/before" >/dev/null 2>&1; git worktree remove --force "$work/after" >/dev/null 2>&1; rm -rf "$work"' EXIT
git worktree add -q --detach "$work/before" "$BEFORE" && git worktree add -q --detach "$work/after" "$AFTER" || exit 1
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1
for i in $(seq "$REPEATS"); do
  for side in before after; do
    (cd "$work/$side" && PYTHONPATH="$work/$side" $PY run.py bench $BENCH_ARGS --json "$OUT_DIR/$side.$i.json" \
      >"$OUT_DIR/$side.$i.txt" 2>&1) || echo "$side run $i failed: see $OUT_DIR/$side.$i.txt"
  done
done
$PY - "$OUT_DIR" "$REPEATS" "$(git rev-parse --short "$BEFORE")" "$(git rev-parse --short "$AFTER")" <<'PYEOF' | tee "$OUT_DIR/summary.txt"
import json, statistics, sys
from pathlib import Path
out, repeats, before, after = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
def load(side):
    rows = [json.loads((out / f"{side}.{i}.json").read_text()) for i in range(1, repeats + 1)
            if (out / f"{side}.{i}.json").is_file()]
    return rows
for agent in sorted({a for side in ("before", "after") for r in load(side) for a in r["agents"]}):
    med = {}
    for side in ("before", "after"):
        loops = [r["agents"][agent]["loop_steps_per_s"]["plain"] for r in load(side) if agent in r["agents"]]
        upd = [r["agents"][agent].get("updates_per_s") for r in load(side) if agent in r["agents"]]
        med[side] = (statistics.median(loops), statistics.median([u for u in upd if u] or [0]))
    (lb, ub), (la, ua) = med["before"], med["after"]
    print(f"{agent}: loop {lb:.0f} -> {la:.0f} agent steps/s ({la / lb:.2f}x); "
          f"update alone {ub:.0f} -> {ua:.0f}/s ({ua / ub if ub else float('nan'):.2f}x); "
          f"{before} -> {after}, medians of {repeats} alternating runs, 1 thread")
PYEOF
