"""Uniform experience replay that stores every frame once and rebuilds stacks at sample time:
storage (``storage.py``) + sampler, n-step targets and batch assembly (``sampler.py``), with one
state dict for checkpoints."""
from __future__ import annotations

import numpy as np
import torch

from rlsmooth.pieces.replay.sampler import Batch, BatchAssembler, UniformSampler, n_step_targets
from rlsmooth.pieces.replay.storage import FrameStorage

__all__ = ["Batch", "FrameReplay"]


class FrameReplay:
    def __init__(self, capacity: int, num_envs: int, frame_shape: tuple[int, ...], stack: int = 1,
                 n_step: int = 1, gamma: float = 0.99, seed=0, storage: torch.device | str | None = None,
                 dtype=np.uint8):
        if capacity < num_envs * (stack + n_step + 2):
            raise ValueError(f"replay capacity {capacity} too small for {num_envs} envs")
        self.store = FrameStorage(capacity, num_envs, frame_shape, storage, dtype)
        self.sampler = UniformSampler(stack, n_step, seed)
        self.assembler = BatchAssembler(stack, n_step)
        self.n_step, self.gamma = n_step, gamma

    @property
    def frames(self):
        """The stored frames, (N, track, C, H, W): numpy on the host, a tensor on the device."""
        return self.store.frames

    def start(self, frames: np.ndarray) -> None:
        """Record the first frames (N, C, H, W) after a reset."""
        self.store.start(frames)

    def add(self, action: np.ndarray, reward: np.ndarray, terminal: np.ndarray, episode_end: np.ndarray,
            next_frames: np.ndarray, final_frames: np.ndarray) -> None:
        """Record one vector step: the transition from the pending frame and the frames that follow."""
        self.store.add(action, reward, terminal, episode_end, next_frames, final_frames)

    def sample(self, batch_size: int, device: torch.device | str = "cpu") -> Batch:
        envs, pos = self.sampler.sample_starts(self.store, batch_size)
        targets = n_step_targets(self.store, envs, pos, self.n_step, self.gamma)
        return self.assembler.assemble(self.store, envs, pos, targets, torch.device(device))

    def sample_arrays(self, batch_size: int) -> tuple[np.ndarray, ...]:
        """A host batch as numpy arrays: (obs, action, reward, discount, next_obs)."""
        batch = self.sample(batch_size, "cpu")
        return batch.obs.numpy(), batch.action.numpy(), batch.reward.numpy(), batch.discount.numpy(), \
            batch.next_obs.numpy()

    def state_keys(self) -> set[str]:
        """The keys of :meth:`state_dict`, without copying the frames."""
        return set(FrameStorage.ARRAYS) | set(self.sampler.state_dict())

    def state_dict(self) -> dict:
        return {**self.store.state_dict(), **self.sampler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.store.load_state_dict(state)
        self.sampler.load_state_dict(state)

    def memory_bytes(self) -> int:
        return self.store.memory_bytes()
