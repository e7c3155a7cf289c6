"""DQN (Mnih et al. 2015), with the Adam variant of the paper's setup as default.

Algorithm box
  build   Q-network (Nature CNN / MinAtar net, scalar head) and a target copy
  act     epsilon-greedy on Q(s, .) for all N envs in one forward pass
  update  every 1 / replay_ratio agent steps: sample a batch, minimise the TD loss
          l(Q(s, a), R + gamma^k max_a' Q_target(s', a')), copy the target every
          ``target_update_every`` agent steps
  loop    rlsmooth.training.value_loop (shared with C51) on rlsmooth.training.skeleton (logging,
          evaluation, checkpoints)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from rlsmooth.config import TrainConfig, ValueConfig
from rlsmooth.pieces.losses import double_td_target, q_loss, td_target
from rlsmooth.pieces.networks import build_q_network
from rlsmooth.pieces.replay import Batch
from rlsmooth.training.value_loop import ValueAgent, load_value_policy, train_value_agent


@dataclass
class DQNConfig(ValueConfig):
    loss: Literal["huber", "mse"] = "huber"
    """TD loss: Huber (smooth L1, DQN on Atari) or squared error (MinAtar)."""
    double: bool = False
    """Double-DQN targets (online network picks a', target network evaluates it)."""


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


FAMILY = "value"
CONFIG = DQNConfig
