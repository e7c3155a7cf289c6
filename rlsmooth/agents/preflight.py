"""Checks a run before it starts: its config's keys, types and values, then one build of its env and
network (on the CPU, then dropped) to resolve the game and every layer selector, and whether the
run fits in this machine's memory.  Everything here fails before anything is written."""
from __future__ import annotations

import functools
import importlib.util
import os
import sys

import numpy as np

from rlsmooth.agents import AGENTS, algo_classes
from rlsmooth.config.coerce import to_dict
from rlsmooth.config.sections import EnvConfig, TrainConfig, parse_train_config
from rlsmooth.errors import ConfigError
from rlsmooth.pieces.envs import check_game, make_vec_env
from rlsmooth.pieces.networks import select_layers
from rlsmooth.pieces.optim import rho_layer_names
from rlsmooth.pieces.seeding import EVAL_CLI, SeedStreams

# Host memory per environment: RSS growth per env when building and stepping 256 of them after a
# warm-up of 8 (ale-py 0.11: 1.5 MiB; MinAtar 1.0: 2 KiB; x86-64), rounded up.  The replay figure is exact.
ENV_BYTES = {"atari": 2 * 2**20, "minatar": 16 * 2**10, "gym": 64 * 2**10, "test": 1 * 2**10}
WARN_FRACTION = 0.8
MANY_ENVS = 4096
# Periods and lengths (agent steps) that a short run can leave unreached: a preset's 125k evaluation
# period or 250k epsilon decay makes a 20k-step run evaluate never and explore to the end.
SCHEDULE_KEYS = ("algo.learning_starts", "algo.epsilon_decay_steps", "algo.target_update_every",
                 "loop.eval_every", "loop.eval_steps", "loop.checkpoint_every", "loop.log_every")
"""Schedules (agent steps) a short run outlives: a checkpoint period past the run means no checkpoint
until the end, a log period past it one log line."""


def load_train_config(data: dict) -> TrainConfig:
    """A TrainConfig from a nested dict, or ConfigError with one line naming the problem."""
    cfg = parse_train_config(data, algo_classes())
    check_game(cfg.env)
    obs_shape, frame_channels, value_bytes, num_actions = env_spaces(cfg.env)
    net = AGENTS[cfg.agent].build(cfg, obs_shape, num_actions)   # on the CPU, then dropped
    normalised = select_layers(net, cfg.spectral.layers, "spectral.layers")
    select_layers(net, cfg.spectral.track, "spectral.track")
    both = [n for n in rho_layer_names(net, cfg.optim) if n in normalised]
    if both:
        raise ConfigError(f"optim.rho_scaling={cfg.optim.rho_scaling} on {', '.join(both)}, which spectral.layers "
                          f"also normalises: SN already rescales that layer's step, so rho-scaling it would do it twice; "
                          f"use one or the other (docs/method.md)")
    check_memory(cfg, obs_shape, frame_channels, value_bytes)
    check_schedules(cfg)
    check_precision(cfg)
    if cfg.wandb.enabled and importlib.util.find_spec("wandb") is None:
        raise ConfigError("wandb.enabled needs the wandb extra: pip install -e '.[wandb]'")
    return cfg


def env_spaces(env: EnvConfig) -> tuple[tuple, int, int, int]:
    """Observation shape, frame channels, bytes per observation value and action count of ``env``'s
    environment, from one env built and closed per distinct env section."""
    return _env_spaces(tuple(sorted(to_dict(env).items())))


@functools.cache   # one env built per env section: a sweep's cells differ in seeds and variants, not games
def _env_spaces(env_section: tuple) -> tuple[tuple, int, int, int]:
    env = make_vec_env(EnvConfig(**dict(env_section)), SeedStreams(0).env_seeds(EVAL_CLI, 1), training=False)
    try:
        return env.obs_shape, env.frame_channels, np.dtype(env.obs_dtype).itemsize, env.num_actions
    finally:
        env.close()


@functools.cache   # one read per process: every config a sweep or population loads is checked
def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX on this CPU (Linux ``/proc/cpuinfo``; elsewhere assumed absent)."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


@functools.cache   # measured once per process, not once per member or cell config checked
def bf16_matmul_speedup(size: int = 384, repeats: int = 5) -> float:
    """How much faster this CPU multiplies bf16 matrices than fp32 ones, one thread, measured when
    first asked (best of a few interleaved timings of one ``size``-square product each; a few tens of
    ms).  The
    instruction set does not settle it: a CPU can have AVX-512 BF16 and still run torch's bf16
    products at half its fp32 rate."""
    import time

    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a = torch.randn(size, size)
        pairs = {torch.float32: (a, a.t().contiguous()), torch.bfloat16: (a.bfloat16(), a.t().contiguous().bfloat16())}
        best = {dtype: float("inf") for dtype in pairs}
        for _ in range(repeats):
            for dtype, (x, y) in pairs.items():
                start = time.perf_counter()
                torch.mm(x, y)
                best[dtype] = min(best[dtype], time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return best[torch.float32] / best[torch.bfloat16]


def check_precision(cfg: TrainConfig) -> None:
    """``loop.precision: bf16``: refused on CUDA below compute capability 8.0 (no bf16 there); on a
    CPU, a warning line where it has no native bf16 (it emulates it, slowly), or where its bf16
    matrix products, measured now, are no faster than its fp32 ones."""
    if cfg.loop.precision != "bf16":
        return
    import torch
    wants_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if wants_cuda and torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        if major < 8:
            raise ConfigError(f"loop.precision=bf16 needs a GPU of compute capability 8.0 or more; this one is "
                              f"{major}.{minor}: use loop.precision=fp32")
    elif not wants_cuda and not cpu_has_native_bf16():
        warn("loop.precision=bf16 on a CPU without native bf16 (no avx512_bf16 or amx_bf16): it runs, slowly")
    elif not wants_cuda and (speedup := bf16_matmul_speedup()) < 1.0:
        warn(f"loop.precision=bf16: this CPU's bf16 matrix products run at {speedup:.2f}x its fp32 ones (measured "
             f"now, one thread), so bf16 will likely train slower than fp32 here")


def long_schedules(cfg: TrainConfig) -> list[str]:
    """``key=value`` of every schedule longer than the run (epsilon's decay counted from learning_starts)."""
    values = {f"{section}.{key}": value for section in ("algo", "loop")
              for key, value in to_dict(getattr(cfg, section)).items()}
    total = cfg.loop.total_steps
    ends = {key: values[key] for key in SCHEDULE_KEYS if key in values}
    if "algo.epsilon_decay_steps" in ends:
        ends["algo.epsilon_decay_steps"] += values["algo.learning_starts"]
    return [f"{key}={values[key]:_}" for key, end in ends.items() if end > total]


def check_schedules(cfg: TrainConfig) -> None:
    if long := long_schedules(cfg):
        warn(f"longer than loop.total_steps={cfg.loop.total_steps:_}: {', '.join(long)} "
             f"(override them for a short run, e.g. loop.eval_every=... algo.epsilon_decay_steps=...)")


def estimate_memory(cfg: TrainConfig, obs_shape: tuple, frame_channels: int, value_bytes: int = 1) -> int:
    """Host bytes of the replay (frames stored once, unless they live on the device, + per-slot
    metadata) and of the environments; ``value_bytes`` per observation value (1 for uint8 images,
    4 for gym's float32 vectors)."""
    envs = (cfg.env.num_envs + cfg.env.eval_num_envs) * ENV_BYTES[cfg.env.suite]
    capacity = getattr(cfg.algo, "replay_capacity", 0)
    on_host = getattr(cfg.algo, "replay_storage", "host") == "host"
    frame_bytes = frame_channels * obs_shape[1] * obs_shape[2] * value_bytes if on_host else 0
    return capacity * (frame_bytes + 13) + envs   # 13 B: action, reward and 5 flags per slot


def available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def check_memory(cfg: TrainConfig, obs_shape: tuple, frame_channels: int, value_bytes: int = 1) -> None:
    need, have = estimate_memory(cfg, obs_shape, frame_channels, value_bytes), available_memory()
    if have is None:
        return
    gib = 2**30
    if need > have:
        raise ConfigError(f"the run needs about {need / gib:.1f} GiB of host memory (replay and "
                          f"{cfg.env.num_envs + cfg.env.eval_num_envs} envs) but {have / gib:.1f} GiB is available; "
                          f"lower algo.replay_capacity or env.num_envs")
    if need > WARN_FRACTION * have:
        warn(f"the run needs about {need / gib:.1f} GiB of the {have / gib:.1f} GiB of host memory available")
    if cfg.env.num_envs + cfg.env.eval_num_envs > MANY_ENVS:
        warn(f"building {cfg.env.num_envs + cfg.env.eval_num_envs} environments takes a while "
             f"(about {need / gib:.1f} GiB of host memory in all)")


_warned: set[str] = set()


def warn(text: str) -> None:
    """One line on stderr, once per process: a sweep or a population checks many cells that share a
    schedule, and one line says it for all of them."""
    if text not in _warned:
        _warned.add(text)
        print(f"warning: {text}", file=sys.stderr)
