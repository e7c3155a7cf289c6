"""DQN (Mnih et al. 2015), with the Adam variant of the paper's setup as default.

Algorithm box
  build   Q-network (Nature CNN / MinAtar net, scalar head) and a target copy
  act     epsilon-greedy on Q(s, .) for all N envs in one forward pass
  update  every 1 / replay_ratio agent steps: sample a batch, minimise the TD loss
          l(Q(s, a), R + gamma^k max_a' Q_target(s', a')), copy the target every
          ``target_update_every`` agent steps
  loop    rlsmooth.value_loop (shared with C51): logging, evaluation, checkpoints
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from rlsmooth.config import ConfigError, TrainConfig, require_all
from rlsmooth.losses import double_td_target, q_loss, td_target
from rlsmooth.networks import build_q_network
from rlsmooth.replay import Batch
from rlsmooth.value_loop import ValueAgent, load_value_policy, train_value_agent


@dataclass
class DQNConfig:
    gamma: float = 0.99
    """Discount factor."""
    n_step: int = 1
    """Length of the bootstrapped return (1 = one-step TD)."""
    batch_size: int = 32
    """Transitions per gradient update."""
    replay_capacity: int = 1_000_000
    """Replay size in transitions (split evenly over the N envs)."""
    learning_starts: int = 20_000
    """Agent steps of pure exploration before the first update."""
    replay_ratio: float = 0.25
    """Gradient updates per agent step (the paper: one update every 4 agent steps), kept for any N."""
    target_update_every: int = 8_000
    """Agent steps between copies of the online network into the target network."""
    epsilon_start: float = 1.0
    """Exploration rate during and right after warm-up."""
    epsilon_end: float = 0.01
    """Final exploration rate."""
    epsilon_decay_steps: int = 250_000
    """Agent steps (after ``learning_starts``) over which epsilon decays linearly."""
    loss: Literal["huber", "mse"] = "huber"
    """TD loss: Huber (smooth L1, DQN on Atari) or squared error (MinAtar)."""
    double: bool = False
    """Double-DQN targets (online network picks a', target network evaluates it)."""

    def validate(self) -> None:
        checks = [(0.0 <= self.gamma <= 1.0, "algo.gamma must be in [0, 1]"),
                  (self.n_step >= 1, "algo.n_step must be >= 1"),
                  (self.batch_size >= 1, "algo.batch_size must be >= 1"),
                  (self.replay_capacity >= 1, "algo.replay_capacity must be >= 1"),
                  (self.batch_size <= self.replay_capacity,
                   f"algo.batch_size ({self.batch_size}) is larger than algo.replay_capacity ({self.replay_capacity})"),
                  (self.learning_starts >= 0, "algo.learning_starts must be >= 0"),
                  (self.replay_ratio > 0, "algo.replay_ratio must be > 0"),
                  (self.target_update_every >= 1, "algo.target_update_every must be >= 1"),
                  (0.0 <= self.epsilon_end <= 1.0 and 0.0 <= self.epsilon_start <= 1.0, "algo.epsilon_* must be in [0, 1]"),
                  (self.epsilon_decay_steps >= 0, "algo.epsilon_decay_steps must be >= 0")]
        require_all(checks)

    def check_against(self, cfg: TrainConfig) -> None:
        per_env = self.replay_capacity // cfg.env.num_envs
        if per_env < 4 * cfg.env.frame_stack + self.n_step + 2:
            raise ConfigError(f"algo.replay_capacity {self.replay_capacity} is too small for {cfg.env.num_envs} envs")
        needed = max(self.batch_size, cfg.env.num_envs * (self.n_step + cfg.env.frame_stack + 2))
        if self.learning_starts < needed:
            raise ConfigError(f"algo.learning_starts must be >= {needed} (a batch, and n-step + frame-stack "
                              f"history in every env)")


def build(cfg: TrainConfig, obs_shape: tuple, num_actions: int) -> nn.Module:
    return build_q_network(cfg.network, cfg.env.suite, obs_shape, num_actions)


def q_values(net: nn.Module, obs: torch.Tensor) -> torch.Tensor:
    return net(obs)


def make_loss(algo: DQNConfig):
    def loss(net: nn.Module, target: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        q = net(batch.obs)
        with torch.no_grad():
            next_q = target(batch.next_obs)
            if algo.double:
                y = double_td_target(batch.reward, batch.discount, next_q, net(batch.next_obs))
            else:
                y = td_target(batch.reward, batch.discount, next_q)
        return q_loss(q, batch.action, y, algo.loss), q.mean()
    return loss


def value_agent(cfg: TrainConfig) -> ValueAgent:
    return ValueAgent(build, q_values, make_loss(cfg.algo))


def load_policy(cfg: TrainConfig, state: dict, env, device: torch.device, greedy: bool = False):
    return load_value_policy(cfg, value_agent(cfg), state, env, device, greedy)


def train(cfg: TrainConfig, run_dir: Path, resume: bool = False) -> dict:
    return train_value_agent(cfg, run_dir, value_agent(cfg), resume)


CONFIG = DQNConfig
