"""``rlsmooth eval RUN_DIR``: load a run's config and checkpoint, play evaluation episodes."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from rlsmooth.agents import AGENTS, algo_classes
from rlsmooth.config.coerce import to_dict
from rlsmooth.config.sections import default_config_like, parse_train_config
from rlsmooth.errors import ConfigError
from rlsmooth.experiments.video import record
from rlsmooth.pieces.envs import make_vec_env
from rlsmooth.pieces.scores import human_normalized
from rlsmooth.pieces.seeding import EVAL_CLI, SeedStreams
from rlsmooth.training import checkpoint as ckpt
from rlsmooth.training.evaluation import evaluate
from rlsmooth.training.rundir import CHECKPOINT, read_config
from rlsmooth.training.runtime import resolve_device

def load_saved_run(run_dir: Path):
    """(config, checkpoint state, agent module) of a run whose config and checkpoint agree."""
    cfg = parse_train_config(read_config(run_dir), algo_classes())
    path = Path(run_dir) / CHECKPOINT
    state = ckpt.load(path)
    if "net" not in state:
        raise ConfigError(f"checkpoint {path} lacks 'net': it is damaged or was written by something else")
    ckpt.check(state, path)
    shaping, _ = ckpt.config_changes(state["config"], to_dict(cfg), default_config_like(cfg))
    if shaping:
        raise ConfigError(f"{Path(run_dir) / 'config.yaml'} disagrees with its checkpoint: {ckpt.describe(shaping)}; "
                          f"the checkpoint's network belongs to the run it was written by")
    return cfg, state, AGENTS[cfg.agent]


def evaluate_run(run_dir: Path, episodes: int, device_name: str = "auto", greedy: bool = False,
                 video: Path | None = None, epsilon: float | None = None, env_kind: str = "evaluation") -> str:
    """One line: the mean return of ``episodes`` whole episodes of the run's saved policy.

    ``epsilon`` replaces ``loop.eval_epsilon`` (value agents), so a checkpoint can be scored at its
    training epsilon; ``env_kind="training"`` plays on an env built as the training loop builds
    its own (reward clipping and life-loss terminals on, returns still raw game scores), so the two
    kinds of env can be compared on one policy.
    """
    if episodes < 1:
        raise ConfigError("--episodes must be >= 1")
    if env_kind not in ("evaluation", "training"):
        raise ConfigError(f"--env must be evaluation or training, got {env_kind!r}")
    cfg, state, module = load_saved_run(run_dir)
    if epsilon is not None:
        if not 0.0 <= epsilon <= 1.0:
            raise ConfigError(f"--epsilon must be in [0, 1], got {epsilon}")
        if greedy:
            raise ConfigError("--epsilon and --greedy contradict each other: give one")
        if module.FAMILY != "value":
            raise ConfigError(f"--epsilon applies to value agents (dqn, c51); {cfg.agent} samples its policy")
        cfg = dataclasses.replace(cfg, loop=dataclasses.replace(cfg.loop, eval_epsilon=epsilon))
    device = resolve_device(device_name)
    head = f"{cfg.agent} {cfg.env.suite}/{cfg.env.game} step {int(state['step'])}"
    seeds = SeedStreams(cfg.seed).env_seeds(EVAL_CLI, episodes if video is not None else
                                            min(cfg.env.eval_num_envs, episodes))
    if video is not None:
        played = record(cfg, lambda env: module.load_policy(cfg, state, env, device, greedy), seeds, Path(video))
        returns = [e.episode_return for e in played]
        where = f"; videos in {video} ({played[0].frame_shape[1]}x{played[0].frame_shape[0]})"
    else:
        env = make_vec_env(cfg.env, seeds, training=env_kind == "training")
        policy = module.load_policy(cfg, state, env, device, greedy)
        result = evaluate(env, policy, steps=cfg.loop.eval_steps, episodes=episodes, keep_states=0,
                          progress=True)
        env.close()
        if not result.returns:
            return f"no episode finished within {cfg.loop.eval_steps * 100} agent steps"
        returns, where = result.returns, ""
    mean, std = float(np.mean(returns)), float(np.std(returns))
    policy_text = " (greedy)" if greedy else f" at epsilon {cfg.loop.eval_epsilon:g}" if module.FAMILY == "value" else ""
    where_played = " on a training env" if env_kind == "training" else ""
    line = f"{head}: return {mean:.2f} ± {std:.2f} over {len(returns)} episodes{policy_text}{where_played}"
    hns = human_normalized(cfg.env.game, mean) if cfg.env.suite == "atari" else math.nan
    if not math.isnan(hns):
        line += f"; human-normalised {hns:.3f}"
    return line + where
