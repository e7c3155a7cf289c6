"""Replay storage: every frame once, in one circular track per environment.

Slot ``j`` of a track holds the newest frame (``frame_channels`` channels) of observation o_j and,
once the agent has acted on it, the transition taken from it: action, reward, ``terminal`` (no
bootstrap) and ``episode_end``.  After an episode ends, the ended episode's final observation gets
a slot of its own (it has no action, so it is never sampled as a start) and the next episode's
first frame follows it, marked ``first``.

Memory for 1M Atari transitions: 1M x 84 x 84 B = 7.06 GB of frames plus ~10 B per slot of
metadata, against 28 GB for a buffer that stores every stacked state.  Frames live on the host
(default) or on the training device (``storage=...``: MinAtar always fits, Atari's 7 GB on a large
GPU); the metadata stays on the host.
"""
from __future__ import annotations

import numpy as np
import torch


def torch_dtype(dtype) -> torch.dtype:
    """The torch dtype of a numpy dtype (uint8 frames, float32 gym observations)."""
    return torch.from_numpy(np.empty(0, dtype)).dtype


class FrameStorage:
    ARRAYS = ("frames", "action", "reward", "terminal", "episode_end", "first", "acted", "written")
    """What a checkpoint holds (with the sampler's random state)."""

    def __init__(self, capacity: int, num_envs: int, frame_shape: tuple[int, ...],
                 storage: torch.device | str | None = None, dtype=np.uint8):
        self.num_envs = num_envs
        self.track = capacity // num_envs            # slots per env
        self.frame_shape = tuple(frame_shape)        # (C, H, W) of one frame
        n, t = num_envs, self.track
        self.storage = torch.device(storage) if storage is not None else None   # None: host numpy frames
        if self.storage is None:
            self.frames = np.zeros((n, t, *self.frame_shape), dtype)   # uint8 images; float32 gym vectors
        else:
            self.frames = torch.zeros((n, t, *self.frame_shape), dtype=torch_dtype(dtype), device=self.storage)
        self.action = np.zeros((n, t), np.int32)
        self.reward = np.zeros((n, t), np.float32)
        self.terminal = np.zeros((n, t), bool)
        self.episode_end = np.zeros((n, t), bool)
        self.first = np.zeros((n, t), bool)
        self.acted = np.zeros((n, t), bool)          # slot holds a transition
        self.written = np.zeros(n, np.int64)         # absolute slots written per env (monotone)
        self._env_index = np.arange(n)

    def _write_frame(self, envs: np.ndarray, frames: np.ndarray, first: bool) -> None:
        slot = self.written[envs] % self.track
        if self.storage is None:
            self.frames[envs, slot] = frames
        else:
            self.frames[torch.from_numpy(envs).to(self.storage), torch.from_numpy(slot).to(self.storage)] = \
                torch.from_numpy(np.ascontiguousarray(frames)).to(self.storage)
        self.first[envs, slot] = first
        self.acted[envs, slot] = False
        self.terminal[envs, slot] = False
        self.episode_end[envs, slot] = False
        self.written[envs] += 1

    def start(self, frames: np.ndarray) -> None:
        """Record the first frames (N, C, H, W) after a reset."""
        self._write_frame(self._env_index, frames, first=True)

    def add(self, action: np.ndarray, reward: np.ndarray, terminal: np.ndarray, episode_end: np.ndarray,
            next_frames: np.ndarray, final_frames: np.ndarray) -> None:
        """Record one vector step: the transition from the pending frame and the frames that follow."""
        envs = self._env_index
        slot = (self.written - 1) % self.track
        self.action[envs, slot] = action
        self.reward[envs, slot] = reward
        self.terminal[envs, slot] = terminal
        self.episode_end[envs, slot] = episode_end
        self.acted[envs, slot] = True
        ended = np.flatnonzero(episode_end)
        if ended.size:
            self._write_frame(ended, final_frames[ended], first=False)
            self._write_frame(ended, next_frames[ended], first=True)
            going = np.flatnonzero(~episode_end)
            if going.size:
                self._write_frame(going, next_frames[going], first=False)
        else:
            self._write_frame(envs, next_frames, first=False)

    def state_dict(self) -> dict:
        return {name: torch.as_tensor(getattr(self, name)).cpu() for name in self.ARRAYS}

    def load_state_dict(self, state: dict) -> None:
        for name in self.ARRAYS:
            value = state[name]
            if tuple(value.shape) != tuple(getattr(self, name).shape):
                raise ValueError(f"replay '{name}' has shape {tuple(value.shape)}, "
                                 f"expected {tuple(getattr(self, name).shape)}")
            if name == "frames" and self.storage is not None:
                self.frames.copy_(value)
            else:
                setattr(self, name, value.numpy().copy())

    def memory_bytes(self) -> int:
        """Bytes of frames (host or device) and metadata (host)."""
        frames = self.frames.nbytes if self.storage is None else self.frames.numel()
        return frames + sum(a.nbytes for a in (self.action, self.reward, self.terminal, self.episode_end,
                                               self.first, self.acted))
