"""The agent table: every agent the CLI, evaluation, bench and sweeps know, behind one typed interface.

Each agent module reads top to bottom like its paper's algorithm box and provides what
:class:`Agent` names; the table below is the only list of agents in the code base.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Literal, Protocol

import numpy as np
import torch
from torch import nn


class Agent(Protocol):
    FAMILY: Literal["value", "actor_critic"]
    """Which loop trains it: the replay-based value loop (DQN's) or the on-policy loop (PPO's)."""
    CONFIG: type
    """The dataclass of its ``algo`` section."""
    PRESETS: dict[str, str]
    """Its preset under configs/ for each suite (the bench starts from it)."""

    def build(self, cfg, obs_shape: tuple, num_actions: int) -> nn.Module: ...

    def train(self, cfg, run_dir: Path | None, resume: bool = False, sinks: list | None = None) -> dict: ...

    def load_policy(self, cfg, state: dict, env, device: torch.device,
                    greedy: bool = False) -> Callable[[np.ndarray], np.ndarray]: ...


from rlsmooth.agents import a2c, c51, dqn, ppo  # noqa: E402  (the table needs the Protocol above first)

AGENTS: dict[str, Agent] = {"dqn": dqn, "c51": c51, "ppo": ppo, "a2c": a2c}


def algo_classes() -> dict[str, type]:
    return {name: agent.CONFIG for name, agent in AGENTS.items()}
