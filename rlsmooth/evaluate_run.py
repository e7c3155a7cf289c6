"""``run.py eval RUN_DIR``: load a run's config and checkpoint, play evaluation episodes."""
from __future__ import annotations

import importlib
import math
from pathlib import Path

import numpy as np
import torch

from rlsmooth import checkpoint as ckpt
from rlsmooth.config import ConfigError, parse_train_config
from rlsmooth.envs import make_vec_env
from rlsmooth.evaluation import evaluate
from rlsmooth.rundir import CHECKPOINT, read_config, resolve_device
from rlsmooth.scores import human_normalized
from rlsmooth.value_loop import build_learner, epsilon_greedy


def evaluate_run(run_dir: Path, episodes: int, device_name: str = "auto") -> str:
    if episodes < 1:
        raise ConfigError("--episodes must be >= 1")
    data = read_config(run_dir)
    agent_name = data.get("agent")
    try:
        module = importlib.import_module(f"agents.{agent_name}")
    except (ImportError, TypeError):
        raise ConfigError(f"{run_dir}/config.yaml names unknown agent '{agent_name}'") from None
    cfg = parse_train_config(data, {agent_name: module.CONFIG})
    state = ckpt.load(run_dir / CHECKPOINT)
    device = resolve_device(device_name)
    env = make_vec_env(cfg.env, min(cfg.env.eval_num_envs, episodes), cfg.seed + 7_777_777, training=False)
    agent = module.value_agent(cfg)
    learner = build_learner(cfg, agent, env.obs_shape, env.num_actions, device)
    try:
        learner.net.load_state_dict(state["net"])
    except RuntimeError as exc:
        raise ConfigError(f"checkpoint does not match {run_dir}/config.yaml: {str(exc).splitlines()[0]}") from None
    rng = np.random.default_rng(cfg.seed + 7_777_777)

    def policy(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return epsilon_greedy(agent.q_values(learner.net, torch.from_numpy(obs).to(device)), cfg.loop.eval_epsilon, rng)

    result = evaluate(env, policy, steps=cfg.loop.eval_steps, episodes=episodes, keep_states=0)
    env.close()
    if not result.returns:
        return f"no episode finished within {cfg.loop.eval_steps * 100} agent steps"
    mean, std = float(np.mean(result.returns)), float(np.std(result.returns))
    line = (f"{cfg.agent} {cfg.env.suite}/{cfg.env.game} step {int(state['step'])}: "
            f"return {mean:.2f} ± {std:.2f} over {len(result.returns)} episodes (epsilon {cfg.loop.eval_epsilon})")
    hns = human_normalized(cfg.env.game, mean) if cfg.env.suite == "atari" else math.nan
    if not math.isnan(hns):
        line += f"; human-normalised {hns:.3f}"
    return line
