"""``rlsmooth bench --peak K[,K...]``: one stacked population update against what the machine can do.

For each torso (``--nets``), population size K and precision (``--precision``):

* the floating-point operations of one stacked update of K MinAtar DQN members (the online forward
  and backward passes and the target's forward pass), counted by ``torch.utils.flop_counter``
  (matrix products and convolutions, grouped ones included; element-wise work is not counted);
* the update's measured time on a fixed batch, and so the rate it reaches in GFLOP/s;
* that rate as a fraction of the machine's measured GEMM peak at the same precision and thread
  count (a square matrix product, ``--gemm-size``, the best of several timings).

Every arm is measured in one process, interleaved over ``--repeats`` rounds (medians reported), so
the fractions compare within one run on a noisy machine.
"""
from __future__ import annotations

import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch

from rlsmooth.agents import AGENTS
from rlsmooth.agents.dqn import start_value_run
from rlsmooth.config.yaml_files import CONFIGS, load_yaml
from rlsmooth.errors import ConfigError
from rlsmooth.experiments.bench_population import NETS
from rlsmooth.pieces.replay import Batch
from rlsmooth.population.members import stack

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def gemm_rate(precision: str, size: int, seconds: float = 1.0) -> float:
    """GFLOP/s of a ``size`` x ``size`` matrix product at ``precision`` (the best timing of a few)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(DTYPES[precision])
    b = torch.randn(size, size, generator=gen).to(DTYPES[precision])
    torch.mm(a, b)
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


def member_config(net_name: str, precision: str):
    """The torso's MinAtar DQN config on the CPU at ``precision``, with a small replay (only updates run)."""
    from rlsmooth.agents.preflight import load_train_config
    data = load_yaml(CONFIGS / NETS[net_name])
    data.setdefault("loop", {}).update({"precision": precision, "total_steps": 10_000_000, "progress": False})
    data.setdefault("algo", {}).update({"replay_capacity": 1000, "learning_starts": 100})
    data["device"], data["threads"] = "cpu", 0
    return load_train_config(data)


def count_flops(fn) -> int:
    """Matrix-product and convolution FLOPs of one call of ``fn`` (after one uncounted call)."""
    from torch.utils.flop_counter import FlopCounterMode
    fn()
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def population_update(net_name: str, k: int, precision: str, seed: int = 0):
    """(update function, FLOPs of one update) of K members of a torso at ``precision``, on a fixed batch."""
    base = member_config(net_name, precision)
    cfgs = [dataclasses.replace(base, seed=seed + i) for i in range(k)]
    head = AGENTS[base.agent].value_head(base)
    runs = [start_value_run(c, None, head) for c in cfgs]
    obs_shape, actions = runs[0].run.env.obs_shape, runs[0].run.env.num_actions
    net, target, adam = stack(runs, cfgs, torch.device("cpu"))
    for r in runs:
        r.run.env.close()
    b = base.algo.batch_size
    gen = torch.Generator().manual_seed(seed)
    obs = torch.randint(0, 2, (k, b, *obs_shape), dtype=torch.uint8, generator=gen)
    batch = Batch(obs, torch.randint(0, actions, (k, b), generator=gen), torch.rand(k, b, generator=gen),
                  torch.full((k, b), 0.99), torch.randint(0, 2, (k, b, *obs_shape), dtype=torch.uint8, generator=gen))
    mask = torch.ones(k, dtype=torch.bool)

    def update() -> None:
        net.record = mask
        adam.zero_grad()
        loss, _ = head.loss(net, target, batch)
        loss.sum().backward()
        adam.step(mask)

    return update, count_flops(update)


def update_seconds(update, seconds: float) -> float:
    calls, start = 0, time.perf_counter()
    while calls < 5 or time.perf_counter() - start < seconds:
        update()
        calls += 1
    return (time.perf_counter() - start) / calls


def run_peak_bench(sizes: list[int], nets: list[str], precisions: list[str], repeats: int, gemm_size: int,
                   seconds: float, json_path: str | None) -> dict:
    if not set(nets) <= set(NETS) or not set(precisions) <= set(DTYPES) or min(sizes) < 1 or repeats < 1:
        raise ConfigError(f"--peak sizes >= 1, --nets from {', '.join(NETS)}, --precision from fp32, bf16, "
                          f"--repeats >= 1")
    threads = torch.get_num_threads()
    arms = {(n, k, p): population_update(n, k, p) for n in nets for k in sizes for p in precisions}
    times: dict = {arm: [] for arm in arms}
    peaks: dict = {p: [] for p in precisions}
    for _ in range(repeats):
        for p in precisions:
            peaks[p].append(gemm_rate(p, gemm_size))
        for arm, (update, _) in arms.items():
            times[arm].append(update_seconds(update, seconds))
    peak = {p: statistics.median(v) for p, v in peaks.items()}
    rows = []
    print(f"torch threads {threads}; GEMM peak ({gemm_size}^2): "
          + ", ".join(f"{p} {peak[p]:.1f} GFLOP/s" for p in precisions))
    print("| torso | K | precision | GFLOP per update | ms per update | GFLOP/s | fraction of the GEMM peak |")
    print("|---|---|---|---|---|---|---|")
    for (n, k, p), (_, flops) in arms.items():
        seconds_per = statistics.median(times[(n, k, p)])
        rate = flops / seconds_per / 1e9
        rows.append({"net": n, "members": k, "precision": p, "flops": flops, "seconds": seconds_per,
                     "gflops_per_s": rate, "peak_fraction": rate / peak[p], "all_seconds": times[(n, k, p)]})
        print(f"| {n} | {k} | {p} | {flops / 1e9:.3f} | {seconds_per * 1e3:.2f} | {rate:.1f} | {rate / peak[p]:.2f} |")
    result = {"threads": threads, "gemm_size": gemm_size, "peak_gflops": peak, "peak_all": peaks, "rows": rows,
              "networks": {n: load_yaml(CONFIGS / NETS[n]).get("network") for n in nets}}
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=1))
    return result
