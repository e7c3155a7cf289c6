"""A2C (Mnih et al. 2016, synchronous) for discrete actions; defaults follow Stable-Baselines3's A2C
(5-step rollouts, RMSprop lr 7e-4 / alpha 0.99 / eps 1e-5 set in the preset, gamma 0.99, GAE lambda 1
(plain n-step returns), entropy 0.01, value coef 0.5 (set as 0.25 * 2 in SB3's form), max grad norm 0.5).

Algorithm box
  build   actor-critic (shared torso by default; ``separate_critic`` gives the critic its own)
  act     sample a ~ pi(.|s) for all N envs in one forward pass, T steps per rollout
  update  one gradient step on  L = -mean(log pi(a|s) A) + vf_coef * value loss - ent_coef * entropy
  loop    rlsmooth.actor_critic (shared with PPO)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from rlsmooth.actor_critic import ActorCritic, Rollout, build_actor_critic, load_policy, train_actor_critic
from rlsmooth.config import TrainConfig, require_all
from rlsmooth.losses import value_loss
from rlsmooth.optim import RhoScaler, optimizer_step


@dataclass
class A2CConfig:
    num_steps: int = 5
    """Rollout length T per env (agent steps per env between updates)."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 1.0
    """GAE lambda (1 = n-step returns, the original A2C)."""
    ent_coef: float = 0.01
    """Entropy bonus weight."""
    vf_coef: float = 0.5
    """Value loss weight (applied to 0.5 * squared error)."""
    norm_adv: bool = False
    """Normalise advantages per update."""
    anneal_lr: bool = False
    """Anneal the learning rate linearly to 0 over the run."""
    separate_critic: bool = False
    """Give the critic its own torso (critic.conv1 ... critic.fc) instead of sharing the actor's."""
    eval_policy: Literal["sampled", "greedy", "both"] = "sampled"
    """Evaluation policy: sample from pi, take its argmax, or report both (eval/greedy/...)."""

    def validate(self) -> None:
        checks = [(self.num_steps >= 1, "algo.num_steps must be >= 1"),
                  (0.0 <= self.gamma <= 1.0, "algo.gamma must be in [0, 1]"),
                  (0.0 <= self.gae_lambda <= 1.0, "algo.gae_lambda must be in [0, 1]"),
                  (self.ent_coef >= 0 and self.vf_coef >= 0, "algo.ent_coef and algo.vf_coef must be >= 0")]
        require_all(checks)

    def check_against(self, cfg: TrainConfig) -> None:
        """Nothing in A2C depends on other sections."""


def update(net: ActorCritic, optimizer: torch.optim.Optimizer, scaler: RhoScaler | None, rollout: Rollout,
           cfg: TrainConfig) -> dict:
    algo = cfg.algo
    logits, value = net(rollout.obs)
    dist = torch.distributions.Categorical(logits=logits)
    adv = rollout.advantage
    if algo.norm_adv:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    pg = -(dist.log_prob(rollout.action) * adv).mean()
    v = value_loss(value, rollout.ret)
    ent = dist.entropy().mean()
    loss = pg + algo.vf_coef * v - algo.ent_coef * ent
    optimizer_step(net, optimizer, scaler, loss, cfg.optim.grad_clip)
    values = torch.stack([pg.detach(), v.detach(), ent.detach()]).cpu().tolist()
    return dict(zip(("train/policy_loss", "train/value_loss", "train/entropy"), values))


def build(cfg: TrainConfig, obs_shape: tuple, num_actions: int) -> ActorCritic:
    return build_actor_critic(cfg, obs_shape, num_actions)


def train(cfg: TrainConfig, run_dir: Path, resume: bool = False) -> dict:
    return train_actor_critic(cfg, run_dir, update, resume)


CONFIG = A2CConfig
__all__ = ["A2CConfig", "build", "update", "train", "load_policy"]
