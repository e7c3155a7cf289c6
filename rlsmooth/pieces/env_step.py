"""What every vectorised env returns from a step, and the small behaviours several envs share
(the envs themselves: :mod:`rlsmooth.pieces.envs`, :mod:`rlsmooth.pieces.gym_env`)."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Step(NamedTuple):
    obs: np.ndarray          # (N, C, H, W) uint8 (float32 for gym envs): the observation to act on next
    reward: np.ndarray       # (N,) float32, training reward
    raw_reward: np.ndarray   # (N,) float32, game score
    terminal: np.ndarray     # (N,) bool, no bootstrap after this transition
    episode_end: np.ndarray  # (N,) bool, episode over (terminated or truncated)
    final_obs: np.ndarray    # (N, C, H, W), last obs of the episode where episode_end; other rows are
                             # unspecified (ale-py leaves them unwritten): read only the ended ones


def training_reward(raw: np.ndarray, clip: bool) -> np.ndarray:
    """The learner's reward: the game score, clipped to [-1, 1] when ``clip``."""
    return np.clip(raw, -1.0, 1.0) if clip else raw


class InProcessStepping:
    """``send``/``recv`` for envs stepped in this process: ``send`` keeps the actions, ``recv`` steps."""

    def send(self, actions: np.ndarray) -> None:
        self._pending = actions

    def recv(self) -> Step:
        return self.step(self._pending)


class FreshEpisodesOnResume:
    """Envs whose state is not checkpointed (emulators): a resumed run starts new episodes."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> bool:
        return False
