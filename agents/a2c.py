"""A2C (Mnih et al. 2016, synchronous) for discrete actions; defaults follow Stable-Baselines3's A2C
(5-step rollouts, RMSprop lr 7e-4 / alpha 0.99 / eps 1e-5 set in the preset, gamma 0.99, GAE lambda 1
(plain n-step returns), entropy 0.01, value coef 0.5 on the mean squared error, max grad norm 0.5).

Algorithm box
  build   actor-critic (shared torso by default; ``separate_critic`` gives the critic its own)
  act     sample a ~ pi(.|s) for all N envs in one forward pass, T steps per rollout
  update  one gradient step on  L = -mean(log pi(a|s) A) + vf_coef * mean((R - V)^2) - ent_coef * entropy
  loop    rlsmooth.training.actor_critic (shared with PPO)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from rlsmooth.config import ActorCriticConfig, TrainConfig
from rlsmooth.pieces.optim import RhoScaler, optimizer_step
from rlsmooth.training.actor_critic import ActorCritic, Rollout, train_actor_critic
from rlsmooth.training.actor_critic import build_actor_critic as build, load_policy  # noqa: F401  (the agent interface)


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


def a2c_loss(logprob: torch.Tensor, advantage: torch.Tensor, value: torch.Tensor, ret: torch.Tensor,
             entropy: torch.Tensor, vf_coef: float, ent_coef: float) -> tuple[torch.Tensor, ...]:
    """L = -mean(log pi(a|s) A) + vf_coef * mean((R - V(s))^2) - ent_coef * mean(H[pi(.|s)]).

    The value term is the plain mean squared error, as in Stable-Baselines3's A2C
    (``vf_coef * F.mse_loss(returns, values)``), not half of it.
    Returns (loss, policy loss, value loss, entropy).
    """
    pg = -(logprob * advantage).mean()
    v = (ret - value).square().mean()
    ent = entropy.mean()
    return pg + vf_coef * v - ent_coef * ent, pg, v, ent


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
    optimizer_step(net, optimizer, scaler, loss, cfg.optim.grad_clip)
    return {"train/policy_loss": pg.detach(), "train/value_loss": v.detach(), "train/entropy": ent.detach()}


def train(cfg: TrainConfig, run_dir: Path, resume: bool = False) -> dict:
    return train_actor_critic(cfg, run_dir, update, resume)


FAMILY = "actor_critic"
CONFIG = A2CConfig
__all__ = ["A2CConfig", "build", "update", "train", "load_policy"]
