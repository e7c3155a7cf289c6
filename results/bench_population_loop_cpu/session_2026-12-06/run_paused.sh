#!/usr/bin/env bash
# pause the study's process group, run the two population A/Bs, continue the study
set -u
PG=$1; OUT=/work/main/results/bench_population_loop_cpu/session_2026-12-06
cont() { kill -CONT -"$PG"; echo "study continued $(date -u +%H:%M:%S)" >> $OUT/pauses.log; }
trap cont EXIT
kill -STOP -"$PG"; echo "study paused $(date -u +%H:%M:%S)" >> $OUT/pauses.log
sleep 2
cd /work/main
PY=/work/main/.venv/bin/python
OMP_NUM_THREADS=1 $PY bench/population_loop_ab.py --old /work/ab_old --new /work/ab_new --members 9 --net c32_h256 --steps 4000 --repeats 3 --json $OUT/ab_k9_c32_h256_4476bc2_vs_86d4fa7.json > $OUT/ab_k9_c32_h256_4476bc2_vs_86d4fa7.txt 2>&1
OMP_NUM_THREADS=1 $PY bench/population_loop_ab.py --old /work/ab_head --new /work/ab_new --members 9 --net c32_h256 --steps 4000 --repeats 3 --set 'spectral.track=[fc]' --json $OUT/ab_k9_c32_h256_track_fc_e6e9d5f_vs_86d4fa7.json > $OUT/ab_k9_c32_h256_track_fc_e6e9d5f_vs_86d4fa7.txt 2>&1
