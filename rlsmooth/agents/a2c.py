"""A2C (Mnih et al. 2016, synchronous) for discrete actions; defaults follow Stable-Baselines3's A2C
(5-step rollouts, RMSprop lr 7e-4 / alpha 0.99 / eps 1e-5 set in the preset, gamma 0.99, GAE lambda 1
(plain n-step returns), entropy 0.01, value coef 0.5 on the mean squared error, max grad norm 0.5).

Algorithm box
  build   actor-critic (shared torso by default; ``separate_critic`` gives the critic its own)
  act     sample a ~ pi(.|s) for all N envs in one forward pass, T steps per rollout
  update  one gradient step on  L = -mean(log pi(a|s) A) + vf_coef * mean((R - V)^2) - ent_coef * entropy
  loop    PPO's on-policy loop (``ppo.py``: rollouts, GAE, truncation bootstrap) with this update
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from rlsmooth.config.families import ActorCriticConfig
from rlsmooth.config.sections import TrainConfig
from rlsmooth.agents.ppo import Rollout, build, load_policy, train_on_policy  # noqa: F401  (build, load_policy: the agent interface)
from rlsmooth.pieces.networks import ActorCritic
from rlsmooth.pieces.optim import RhoScaler, optimizer_step
from rlsmooth.pieces.policy_losses import a2c_loss


@dataclass
class A2CConfig(ActorCriticConfig):
    num_steps: int = 5
    """Rollout length T per env (A2C: 5)."""
    gae_lambda: float = 1.0
    """GAE lambda (A2C: 1, plain n-step returns)."""
    norm_adv: bool = False
    """Normalise advantages per update (A2C: off)."""
    anneal_lr: bool = False
    """Anneal the learning rate linearly to 0 (A2C: off)."""


def update(net: ActorCritic, optimizer: torch.optim.Optimizer, scaler: RhoScaler | None, rollout: Rollout,
           cfg: TrainConfig) -> dict:
    algo = cfg.algo
    logits, value = net(rollout.obs)
    dist = torch.distributions.Categorical(logits=logits)
    adv = rollout.advantage
    if algo.norm_adv:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    loss, pg, v, ent = a2c_loss(dist.log_prob(rollout.action), adv, value, rollout.ret, dist.entropy(),
                                algo.vf_coef, algo.ent_coef)
    rho_metrics = optimizer_step(net, optimizer, scaler, loss, cfg.optim.grad_clip)
    return {"train/policy_loss": pg.detach(), "train/value_loss": v.detach(), "train/entropy": ent.detach(),
            **rho_metrics}


def train(cfg: TrainConfig, run_dir: Path | None, resume: bool = False, sinks: list | None = None) -> dict:
    return train_on_policy(cfg, run_dir, update, resume, sinks)


FAMILY = "actor_critic"
CONFIG = A2CConfig
PRESETS = {"atari": "atari_a2c.yaml", "minatar": "atari_a2c.yaml", "test": "atari_a2c.yaml"}
"""The suite's preset for this agent (configs/), which the bench starts from."""
__all__ = ["A2CConfig", "build", "update", "train", "load_policy"]
