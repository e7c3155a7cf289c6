"""``rlsmooth bench``: agent steps/s of the value-based loops and of their parts.

Every figure in one report comes from the same process on the same machine, so ratios
(e.g. SN on ``fc`` against no SN) are taken side by side.  Loop measurements alternate the
variants and repeat them, and report the median.
"""
from __future__ import annotations

import json
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from rlsmooth.agents import AGENTS
from rlsmooth.agents.dqn import build_q_learner, epsilon_greedy, update_step
from rlsmooth.agents.ppo import build_actor_critic_learner, sampling_policy
from rlsmooth.agents.preflight import load_train_config
from rlsmooth.config.yaml_files import CONFIGS, load_yaml
from rlsmooth.pieces.envs import make_vec_env
from rlsmooth.pieces.replay import Batch, FrameReplay
from rlsmooth.pieces.seeding import TRAIN_ENV, SeedStreams
from rlsmooth.training.logger import MemorySink
from rlsmooth.training.runtime import resolve_device
from rlsmooth.training.skeleton import maybe_compile

DEFAULT_GAMES = {"atari": "breakout", "minatar": "breakout", "test": "chain"}


def is_value(agent: str) -> bool:
    return AGENTS[agent].FAMILY == "value"


def value_head(cfg):
    """The value agent's head (network, Q-values, loss) for the parts measured alone."""
    return AGENTS[cfg.agent].value_head(cfg)


def bench_config(agent: str, suite: str, game: str, num_envs: int, device: str, steps: int, spectral: str):
    """The agent's preset for ``suite``, shortened to ``steps`` timed agent steps after a warm-up."""
    data = load_yaml(CONFIGS / AGENTS[agent].PRESETS[suite])
    data["agent"] = agent
    data["env"].update({"suite": suite, "game": game, "num_envs": num_envs, "eval_num_envs": 1})
    data["device"] = device
    data["threads"] = torch.get_num_threads()   # the bench process's own (pinned) thread count
    if spectral == "auto":   # the penultimate layer: fc, or the shared torso's fc for actor-critic
        spectral = "fc" if is_value(agent) else "torso.fc"
    data["spectral"] = {"layers": [] if spectral == "none" else [s for s in spectral.split(",") if s],
                        "log_every": 10 ** 9}
    if suite != "atari":
        data["network"] = {"kind": "minatar"}
    if is_value(agent):
        warmup = max(1000, 2 * 32 * num_envs)
        data["algo"].update({"replay_capacity": max(20_000, 4 * warmup), "learning_starts": warmup})
        log_every = max(steps // 4, num_envs)
    else:
        iteration = num_envs * data["algo"].get("num_steps", 128)
        warmup = iteration
        steps = max(steps, 3 * iteration)
        log_every = iteration
    data["loop"] = {"total_steps": warmup + steps, "eval_every": 0, "eval_steps": 1, "log_every": log_every,
                    "checkpoint_every": 0, "save_replay": False, "progress": False}
    return load_train_config(data), warmup


def _rate(fn, seconds: float = 2.0, min_calls: int = 5) -> float:
    """Calls per second of ``fn`` over about ``seconds``."""
    fn()
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < seconds:
        fn()
        calls += 1
    return calls / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_parts(cfg, seconds: float = 2.0) -> dict[str, float]:
    device = resolve_device(cfg.device)
    n = cfg.env.num_envs
    env = make_vec_env(cfg.env, SeedStreams(cfg.seed).env_seeds(TRAIN_ENV, n), training=True)
    obs = env.reset()
    rng = np.random.default_rng(0)
    results = {}

    def env_step():
        nonlocal obs
        obs = env.step(rng.integers(0, env.num_actions, n)).obs
    results["env_steps_per_s"] = n * _rate(env_step, seconds)

    if not is_value(cfg.agent):
        learner = build_actor_critic_learner(cfg, env.obs_shape, env.num_actions, device, message=lambda m: None)
        policy = sampling_policy(learner.net, device, greedy=False, generator=torch.Generator().manual_seed(0))
        results["act_steps_per_s"] = n * _rate(lambda: policy(obs), seconds)
        env.close()
        return results

    head = value_head(cfg)
    learner = build_q_learner(cfg, head, env.obs_shape, env.num_actions, device)

    def act():   # epsilon 0: every call runs the forward pass
        epsilon_greedy(lambda: head.q_values(learner.net, torch.from_numpy(obs).to(device)), n, env.num_actions,
                       0.0, rng)
    results["act_steps_per_s"] = n * _rate(act, seconds)

    c = env.frame_channels
    # the same transitions in a host replay and a device replay: sampling rates side by side
    replays = {storage: FrameReplay(cfg.algo.replay_capacity, n, (c, *env.obs_shape[1:]), env.obs_shape[0] // c,
                                    cfg.algo.n_step, cfg.algo.gamma, seed=0,
                                    storage=device if storage == "device" else None)
               for storage in ("host", "device")}
    for replay in replays.values():
        replay.start(obs[:, -c:])
    for _ in range(max(200, 4 * cfg.algo.batch_size // n)):
        out = env.step(rng.integers(0, env.num_actions, n))
        actions = rng.integers(0, env.num_actions, n)
        for replay in replays.values():
            replay.add(actions, out.reward, out.terminal, out.episode_end, out.obs[:, -c:], out.final_obs[:, -c:])
    for storage, replay in replays.items():
        def sample(replay=replay):
            replay.sample(cfg.algo.batch_size, device)
            _sync(device)
        results[f"replay_samples_per_s_{storage}"] = _rate(sample, seconds)
    batch = replays["host"].sample(cfg.algo.batch_size, device)

    def update():
        update_step(learner, head, batch, cfg.optim.grad_clip)
        _sync(device)
    results["updates_per_s"] = _rate(update, seconds)
    # at the replay ratio, updates alone cap the loop at updates_per_s / replay_ratio agent steps/s
    results["update_bound_steps_per_s"] = results["updates_per_s"] / cfg.algo.replay_ratio
    env.close()
    return results


def update_timer(cfg, seed: int = 0, compiled: bool = False):
    """A zero-argument function running one update of ``cfg``'s learner on a fixed batch
    (``compiled``: through ``torch.compile``, warmed up first so the compile time is not timed)."""
    device = resolve_device(cfg.device)
    torch.manual_seed(seed)
    head = value_head(cfg)
    head = head._replace(loss=maybe_compile(head.loss, compiled, device))
    env = make_vec_env(cfg.env, SeedStreams(cfg.seed).env_seeds(TRAIN_ENV, 1), training=True)
    learner = build_q_learner(cfg, head, env.obs_shape, env.num_actions, device)
    env.close()
    b = cfg.algo.batch_size
    gen = torch.Generator().manual_seed(seed)
    high = 256 if cfg.env.suite == "atari" else 2
    obs = torch.randint(0, high, (b, *env.obs_shape), dtype=torch.uint8, generator=gen).to(device)
    nxt = torch.randint(0, high, (b, *env.obs_shape), dtype=torch.uint8, generator=gen).to(device)
    batch = Batch(obs, torch.randint(0, env.num_actions, (b,), generator=gen).to(device),
                  torch.rand(b, generator=gen).to(device), torch.full((b,), 0.99).to(device), nxt)

    def update():
        update_step(learner, head, batch, cfg.optim.grad_clip)
        _sync(device)
    if compiled:
        for _ in range(5):
            update()
    return update


def compile_speedup(cfg, rounds: int = 5, seconds: float = 0.5) -> tuple[float, float]:
    """Updates/s eager and compiled, alternating short rounds; medians."""
    timers = {"eager": update_timer(cfg), "compiled": update_timer(cfg, compiled=True)}
    rates: dict[str, list[float]] = {k: [] for k in timers}
    for _ in range(rounds):
        for name, fn in timers.items():
            rates[name].append(_rate(fn, seconds))
    return statistics.median(rates["eager"]), statistics.median(rates["compiled"])


def update_cost(plain_cfg, sn_cfg, rounds: int = 7, seconds: float = 0.5) -> tuple[float, float, float]:
    """Updates/s without and with SN, alternating short rounds; medians, and the relative slowdown."""
    timers = {"plain": update_timer(plain_cfg), "sn": update_timer(sn_cfg)}
    rates: dict[str, list[float]] = {k: [] for k in timers}
    for _ in range(rounds):
        for name, fn in timers.items():
            rates[name].append(_rate(fn, seconds))
    plain, sn = statistics.median(rates["plain"]), statistics.median(rates["sn"])
    return plain, sn, 1.0 - sn / plain


def with_precision(cfg, precision: str):
    """``cfg`` with ``loop.precision`` set (a copy)."""
    import dataclasses
    return dataclasses.replace(cfg, loop=dataclasses.replace(cfg.loop, precision=precision))


def interleaved_update_rates(cfgs: dict, rounds: int = 7, seconds: float = 0.5) -> dict[str, float]:
    """Updates/s of each config's update alone, rounds interleaved across the configs; medians."""
    timers = {name: update_timer(c) for name, c in cfgs.items()}
    rates: dict[str, list[float]] = {k: [] for k in timers}
    for _ in range(rounds):
        for name, fn in timers.items():
            rates[name].append(_rate(fn, seconds))
    return {k: statistics.median(v) for k, v in rates.items()}


def bench_loop(cfg, warmup: int) -> float:
    """Agent steps/s of the whole training loop after warm-up (updates running), logged to memory only."""
    sink = MemorySink()
    AGENTS[cfg.agent].train(cfg, None, sinks=[sink])
    rows = [r for r in sink.records if "time/sps" in r and r["step"] > warmup]
    # skip the first interval, which holds the warm-up boundary
    rates = [r["time/sps"] for r in rows[1:]] or [r["time/sps"] for r in rows]
    return statistics.median(rates)


def run_bench(args) -> dict:
    device = resolve_device(args.device)
    suite = args.suite
    game = args.game or DEFAULT_GAMES[suite]
    agents = list(AGENTS) if args.agent == "all" else [args.agent]
    report = {"device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "num_envs": args.num_envs, "suite": suite, "game": game, "torch_threads": torch.get_num_threads(),
              "agents": {}}
    print(f"bench: {suite}/{game}, N={args.num_envs}, device={device}"
          + (f" ({report['gpu']})" if report["gpu"] else "") + f", torch threads {report['torch_threads']}")
    for agent in agents:
        cfg, warmup = bench_config(agent, suite, game, args.num_envs, args.device, args.steps, "none")
        parts = bench_parts(cfg)
        variants = {"plain": cfg}
        if args.spectral != "none":
            variants[f"sn[{args.spectral}]"] = bench_config(agent, suite, game, args.num_envs, args.device,
                                                            args.steps, args.spectral)[0]
        precisions = [p for p in (args.precision or "fp32").split(",") if p]
        if precisions != ["fp32"]:   # every variant at every precision, interleaved like the variants
            variants = {(f"{name} {p}" if len(precisions) > 1 else name): with_precision(c, p)
                        for name, c in variants.items() for p in precisions}
        loop: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.repeats):           # alternate variants: drift hits both alike
            for name, c in variants.items():
                loop[name].append(bench_loop(c, warmup))
        entry = {**{k: round(v, 1) for k, v in parts.items()},
                 "loop_steps_per_s": {k: round(statistics.median(v), 1) for k, v in loop.items()},
                 # every repeat's rate, in the interleaved order it ran: the median's spread is visible
                 "loop_steps_per_s_repeats": {k: [round(r, 1) for r in v] for k, v in loop.items()}}
        if len(precisions) > 1 and is_value(agent):   # the update alone, interleaved across precisions
            rates = interleaved_update_rates({p: variants[f"plain {p}"] for p in precisions})
            entry["update_per_s_by_precision"] = {p: round(r, 1) for p, r in rates.items()}
            ratio = f" (bf16 / fp32: {rates['bf16'] / rates['fp32']:.2f}x)" if {"bf16", "fp32"} <= set(rates) else ""
            print("        update alone (interleaved rounds): " + ", ".join(f"{p} {r:.0f}/s" for p, r in rates.items())
                  + ratio)
        if len(variants) == 2 and len(precisions) == 1:
            plain, sn = (statistics.median(v) for v in loop.values())
            entry["sn_slowdown"] = round(1.0 - sn / plain, 4)
            if is_value(agent):   # the update is where SN costs: time it alone, interleaved
                u_plain, u_sn, u_cost = update_cost(cfg, list(variants.values())[1])
                entry["update_per_s_plain_vs_sn"] = [round(u_plain, 1), round(u_sn, 1)]
                entry["sn_update_slowdown"] = round(u_cost, 4)
        if args.compile and is_value(agent):
            eager, compiled = compile_speedup(variants[list(variants)[-1]])   # with SN when it is measured
            entry["update_per_s_eager_vs_compiled"] = [round(eager, 1), round(compiled, 1)]
        report["agents"][agent] = entry
        print(f"  {agent}: loop {entry['loop_steps_per_s']} agent steps/s"
              + (f" (SN slowdown {100 * entry['sn_slowdown']:.1f}%)" if "sn_slowdown" in entry else ""))
        if args.repeats > 1:
            print(f"        loop by repeat: {entry['loop_steps_per_s_repeats']}")
        line = f"        env {entry['env_steps_per_s']:.0f} steps/s | act {entry['act_steps_per_s']:.0f} steps/s"
        if is_value(agent):
            line += (f" | sample {entry['replay_samples_per_s_host']:.0f} batches/s | update {entry['updates_per_s']:.0f}/s "
                     f"(bounds the loop at {entry['update_bound_steps_per_s']:.0f} steps/s)")
        print(line)
        if is_value(agent):
            print(f"        replay sampling: {entry['replay_samples_per_s_host']:.0f} batches/s from host memory, "
                  f"{entry['replay_samples_per_s_device']:.0f} from {device} memory")
        if "update_per_s_eager_vs_compiled" in entry:
            eager, compiled = entry["update_per_s_eager_vs_compiled"]
            print(f"        update eager {eager:.0f}/s, compiled {compiled:.0f}/s ({compiled / eager:.2f}x)")
        if "sn_update_slowdown" in entry:
            u_plain, u_sn = entry["update_per_s_plain_vs_sn"]
            print(f"        update alone (interleaved rounds): {u_plain:.0f}/s plain, {u_sn:.0f}/s with SN "
                  f"(SN slowdown {100 * entry['sn_update_slowdown']:.1f}%)")
    report["host_max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if device.type == "cuda":
        report["gpu_max_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    print(f"  host max RSS {report['host_max_rss_mb']} MB"
          + (f", GPU max memory {report['gpu_max_memory_mb']} MB" if device.type == "cuda" else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report
