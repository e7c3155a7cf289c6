"""C51: categorical DQN (Bellemare et al. 2017), the agent of the paper's Atari experiments.

Algorithm box
  build   network with a categorical head: logits (B, A, atoms) over a fixed support
  act     epsilon-greedy on Q(s, a) = sum_z z p(z | s, a)
  update  project R + gamma^k z onto the support under p_target(. | s', a*) with
          a* = argmax_a Q_target(s', a); minimise the cross-entropy to p(. | s, a)
  loop    DQN's acting / learning schedule (``dqn.py``: epsilon-greedy, replay ratio, learning
          starts, target copies) with this head and loss
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from rlsmooth.agents import dqn
from rlsmooth.agents.dqn import ValueHead, train_value_agent
from rlsmooth.config.families import ValueConfig
from rlsmooth.config.sections import TrainConfig
from rlsmooth.errors import ConfigError
from rlsmooth.pieces.networks import build_q_network
from rlsmooth.pieces.replay import Batch
from rlsmooth.pieces.value_losses import categorical_loss, categorical_projection, pick_action


@dataclass
class C51Config(ValueConfig):
    num_atoms: int = 51
    """Atoms of the return distribution's fixed support."""
    v_min: float = -10.0
    """Lowest atom (in clipped-reward return units)."""
    v_max: float = 10.0
    """Highest atom."""
    learning_starts: int = 50_000
    """Agent steps of pure exploration before the first update (paper: 50k)."""
    target_update_every: int = 10_000
    """Agent steps between target copies (paper: 10k)."""
    epsilon_decay_steps: int = 1_000_000
    """Agent steps over which epsilon decays (paper: 1M)."""

    def validate(self) -> None:
        super().validate()
        if self.num_atoms < 2:
            raise ConfigError("algo.num_atoms must be >= 2")
        if not self.v_min < self.v_max:
            raise ConfigError(f"algo.v_min ({self.v_min}) must be below algo.v_max ({self.v_max})")


def support(algo: C51Config, device: torch.device) -> torch.Tensor:
    return torch.linspace(algo.v_min, algo.v_max, algo.num_atoms, device=device)


def build(cfg: TrainConfig, obs_shape: tuple, num_actions: int) -> nn.Module:
    net = build_q_network(cfg.network, cfg.env.suite, obs_shape, num_actions, num_atoms=cfg.algo.num_atoms)
    net.register_buffer("support", support(cfg.algo, torch.device("cpu")))
    return net


def q_values(net: nn.Module, obs: torch.Tensor) -> torch.Tensor:
    return (torch.softmax(net(obs), dim=-1) * net.support).sum(-1)


def loss(net: nn.Module, target: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Cross-entropy to the projected target; with a leading member dimension (a population) one loss per member."""
    logits = net(batch.obs)
    with torch.no_grad():
        next_probs = torch.softmax(target(batch.next_obs), dim=-1)              # (..., B, A, atoms)
        next_action = (next_probs * target.support).sum(-1).argmax(dim=-1)
        projected = categorical_projection(pick_action(next_probs, next_action), batch.reward, batch.discount,
                                           target.support)
    q_mean = (torch.softmax(logits.detach(), -1) * net.support).sum(-1).mean((-2, -1))
    return categorical_loss(logits, batch.action, projected), {"train/q_mean": q_mean}


def value_head(cfg: TrainConfig) -> ValueHead:
    return ValueHead(build, q_values, loss)


def load_policy(cfg: TrainConfig, state: dict, env, device: torch.device, greedy: bool = False):
    return dqn.load_policy(cfg, state, env, device, greedy, head=value_head(cfg))


def train(cfg: TrainConfig, run_dir: Path | None, resume: bool = False, sinks: list | None = None) -> dict:
    return train_value_agent(cfg, run_dir, value_head(cfg), resume, sinks)


FAMILY = "value"
CONFIG = C51Config
PRESETS = {"atari": "atari_c51.yaml", "minatar": "minatar_c51.yaml", "test": "minatar_c51.yaml"}
"""The suite's preset for this agent (configs/), which the bench starts from."""
