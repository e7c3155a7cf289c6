"""PPO (Schulman et al. 2017) for discrete actions; defaults are CleanRL's Atari settings
(``ppo_atari.py``: 8 envs x 128 steps, 4 minibatches x 4 epochs, Adam 2.5e-4 annealed, eps 1e-5,
clip 0.1 with value clipping, entropy 0.01, value coef 0.5, max grad norm 0.5, gamma 0.99, lambda 0.95).

Algorithm box
  build   actor-critic (shared torso by default; ``separate_critic`` gives the critic its own)
  act     sample a ~ pi(.|s) for all N envs in one forward pass, T steps per rollout
  update  GAE advantages; for each epoch and minibatch minimise
          L = clipped surrogate + vf_coef * (clipped) value loss - ent_coef * entropy
  loop    rlsmooth.training.actor_critic (shared with A2C)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from rlsmooth.config import ActorCriticConfig, ConfigError, TrainConfig, require_all
from rlsmooth.pieces.losses import ppo_policy_loss, value_loss
from rlsmooth.pieces.optim import RhoScaler, optimizer_step
from rlsmooth.training.actor_critic import ActorCritic, Rollout, train_actor_critic
from rlsmooth.training.actor_critic import build_actor_critic as build, load_policy  # noqa: F401  (the agent interface)


@dataclass
class PPOConfig(ActorCriticConfig):
    num_minibatches: int = 4
    """Minibatches per epoch (minibatch size = N * T / num_minibatches)."""
    update_epochs: int = 4
    """Passes over each rollout."""
    clip_coef: float = 0.1
    """Policy ratio clip."""
    clip_value: bool = True
    """Clip the value update to +-clip_coef around the rollout's values."""

    def validate(self) -> None:
        super().validate()
        require_all([(self.num_minibatches >= 1, "algo.num_minibatches must be >= 1"),
                     (self.update_epochs >= 1, "algo.update_epochs must be >= 1"),
                     (self.clip_coef > 0, "algo.clip_coef must be > 0")])

    def check_against(self, cfg: TrainConfig) -> None:
        super().check_against(cfg)
        if cfg.env.num_envs * self.num_steps < self.num_minibatches:
            raise ConfigError(f"env.num_envs * algo.num_steps ({cfg.env.num_envs * self.num_steps}) is smaller "
                              f"than algo.num_minibatches ({self.num_minibatches})")


def update(net: ActorCritic, optimizer: torch.optim.Optimizer, scaler: RhoScaler | None, rollout: Rollout,
           cfg: TrainConfig) -> dict:
    algo = cfg.algo
    size = rollout.action.shape[0]
    minibatch = size // algo.num_minibatches
    stats = {"pg": 0.0, "v": 0.0, "ent": 0.0, "kl": 0.0, "clipfrac": 0.0}
    sums = {k: torch.zeros((), device=rollout.value.device) for k in stats}
    count = 0
    for _ in range(algo.update_epochs):
        order = torch.randperm(size, device=rollout.value.device)
        for start in range(0, minibatch * algo.num_minibatches, minibatch):
            idx = order[start:start + minibatch]
            logits, value = net(rollout.obs[idx])
            dist = torch.distributions.Categorical(logits=logits)
            logprob = dist.log_prob(rollout.action[idx])
            adv = rollout.advantage[idx]
            if algo.norm_adv and len(idx) > 1:
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            pg = ppo_policy_loss(logprob, rollout.logprob[idx], adv, algo.clip_coef)
            v = value_loss(value, rollout.ret[idx], rollout.value[idx], algo.clip_coef if algo.clip_value else 0.0)
            ent = dist.entropy().mean()
            loss = pg + algo.vf_coef * v - algo.ent_coef * ent
            optimizer_step(net, optimizer, scaler, loss, cfg.optim.grad_clip)
            with torch.no_grad():
                log_ratio = logprob - rollout.logprob[idx]
                sums["kl"] += ((log_ratio.exp() - 1) - log_ratio).mean()
                sums["clipfrac"] += ((log_ratio.exp() - 1).abs() > algo.clip_coef).float().mean()
                sums["pg"] += pg.detach()
                sums["v"] += v.detach()
                sums["ent"] += ent.detach()
            count += 1
    names = {"pg": "train/policy_loss", "v": "train/value_loss", "ent": "train/entropy", "kl": "train/approx_kl",
             "clipfrac": "train/clipfrac"}
    return {names[k]: x / count for k, x in sums.items()}   # device tensors: read on the host at log steps only


def train(cfg: TrainConfig, run_dir: Path, resume: bool = False) -> dict:
    return train_actor_critic(cfg, run_dir, update, resume)


FAMILY = "actor_critic"
CONFIG = PPOConfig
__all__ = ["PPOConfig", "build", "update", "train", "load_policy"]
