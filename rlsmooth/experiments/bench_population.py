"""``rlsmooth bench --population K``: the aggregate agent steps/s of K runs trained as one population
against the same K runs as a sweep runs them (one process per core), side by side in one call.

Three arms, each the whole training of K members (seeds 0 .. K-1) of one preset for ``--steps``
agent steps, timed from launch to the last exit (start-up included, as a sweep pays it):

* ``sweep``        K ``rlsmooth train`` processes, ``cores`` at a time, one torch thread each;
* ``population``   one ``rlsmooth train --population K`` process with ``cores`` threads;
* ``split``        ``cores`` population processes of K / cores members, one thread each.

The arms alternate over ``--repeats`` rounds; the medians are reported.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rlsmooth.config.yaml_files import CONFIGS
from rlsmooth.errors import ConfigError
from rlsmooth.training.runtime import available_cores

NETS = {"default": "minatar_dqn.yaml", "c32_h256": "ablations/minatar_dqn_net_c32_h256.yaml"}


def _overrides(steps: int, device: str, game: str) -> list[str]:
    warmup = min(5_000, steps // 4)
    return [f"env.game={game}", f"loop.total_steps={steps}", f"algo.learning_starts={warmup}",
            f"algo.epsilon_decay_steps={steps // 2}", "loop.eval_every=0", "loop.eval_steps=100",
            f"loop.log_every={max(steps // 10, 1)}", "loop.checkpoint_every=0", "loop.save_replay=false",
            "loop.progress=false", f"device={device}"]


def _run(commands: list[list[str]], parallel: int, threads: int) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    start = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        codes = list(pool.map(lambda c: subprocess.call(c, env=env, stdout=subprocess.DEVNULL,
                                                        stderr=subprocess.DEVNULL), commands))
    if any(codes):
        raise ConfigError(f"a bench run failed (exit codes {codes}); run one of them by hand to see why")
    return time.perf_counter() - start


def arms(preset: Path, k: int, steps: int, cores: int, device: str, game: str, root: Path) -> dict[str, list]:
    """{arm: (commands, processes at a time, threads per process)} for one round, in fresh directories."""
    train = [sys.executable, "-m", "rlsmooth", "train", str(preset), *_overrides(steps, device, game)]
    split = max(1, cores)
    chunks = [list(range(k))[i::split] for i in range(split)]
    return {"sweep": ([train + [f"seed={s}", "threads=1", "--out", str(root / "sweep" / f"s{s}")] for s in range(k)],
                      cores, 1),
            "population": ([train + [f"threads={cores}", "--population", str(k), "--out", str(root / "pop")]],
                           1, cores),
            "split": ([train + [f"seed={c[0]}", "threads=1", "--population", str(len(c)), "--out",
                                str(root / f"split{i}")] for i, c in enumerate(chunks) if c], split, 1)}


def run_population_bench(sizes: list[int], steps: int, repeats: int, device: str, game: str, nets: list[str],
                         json_path: str | None) -> dict:
    cores = available_cores()
    report = {"cores": cores, "device": device, "game": game, "agent_steps_per_member": steps, "results": []}
    print(f"population bench: MinAtar {game} DQN, {steps:,} agent steps per member, {cores} core(s), device {device}")
    for net in nets:
        for k in sizes:
            times: dict[str, list[float]] = {}
            for _ in range(repeats):
                for arm in ("sweep", "population", "split"):
                    with tempfile.TemporaryDirectory() as tmp:
                        commands, parallel, threads = arms(CONFIGS / NETS[net], k, steps, cores, device, game,
                                                           Path(tmp))[arm]
                        times.setdefault(arm, []).append(_run(commands, parallel, threads))
            rates = {arm: k * steps / statistics.median(t) for arm, t in times.items()}
            entry = {"net": net, "members": k, "steps_per_s": {a: round(r, 1) for a, r in rates.items()},
                     "population_vs_sweep": round(rates["population"] / rates["sweep"], 3),
                     "split_vs_sweep": round(rates["split"] / rates["sweep"], 3)}
            report["results"].append(entry)
            print(f"  {net:9s} K={k:<3d} aggregate agent steps/s: sweep {rates['sweep']:,.0f} | population "
                  f"{rates['population']:,.0f} ({entry['population_vs_sweep']:.2f}x) | {cores} populations of "
                  f"{-(-k // cores)} {rates['split']:,.0f} ({entry['split_vs_sweep']:.2f}x)")
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2))
    return report
