"""Replay sampling, in the three parts a new sampler would touch one at a time:

* :class:`UniformSampler` draws which transitions to replay (a prioritised sampler replaces it);
* :func:`n_step_targets` turns a start into its n-step return, discount and action;
* :class:`BatchAssembler` rebuilds the frame stacks of obs and next_obs, zero-filled before an
  episode's first frame (ale-py zero-fills at reset too, so the agent acts on exactly the states
  that are replayed), gathering each sampled window (the ``stack + n`` frames obs and next_obs
  share) once: on the host straight into pinned staging buffers that are allocated once and
  alternate, so the copy to a GPU is asynchronous; on the device with one ``index_select``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from rlsmooth.pieces.replay.storage import FrameStorage, torch_dtype


class Batch(NamedTuple):
    obs: torch.Tensor        # (B, stack*C, H, W) uint8 (float32 for gym envs)
    action: torch.Tensor     # (B,) int64
    reward: torch.Tensor     # (B,) float32, discounted n-step return sum_{i<k} gamma^i r_i
    discount: torch.Tensor   # (B,) float32, gamma^k, or 0 where the k-th transition was terminal
    next_obs: torch.Tensor   # (B, stack*C, H, W), as obs


class Targets(NamedTuple):
    k: np.ndarray            # (B,) transitions used: up to and including the first stop, at most n
    action: np.ndarray       # (B,) int64
    reward: np.ndarray       # (B,) float32
    discount: np.ndarray     # (B,) float32


class UniformSampler:
    """Starts drawn uniformly over the stored transitions that have their history and successors."""

    def __init__(self, stack: int, n_step: int, seed=0):
        self.stack, self.n_step = stack, n_step
        self.rng = np.random.default_rng(seed)

    def sample_starts(self, store: FrameStorage, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """(envs, absolute positions) of ``batch_size`` transitions."""
        lo = np.maximum(store.written - store.track + self.stack, 0)   # history frames still stored
        hi = store.written - 1 - self.n_step                          # n-step successors written
        counts = np.maximum(hi - lo + 1, 0)
        if counts.sum() <= 0:
            raise RuntimeError("replay holds no complete transition yet")
        envs_out, pos_out, have = [], [], 0
        while have < batch_size:
            want = 2 * (batch_size - have) + 8
            envs = self.rng.choice(store.num_envs, size=want, p=counts / counts.sum())
            pos = lo[envs] + (self.rng.random(want) * counts[envs]).astype(np.int64)
            ok = store.acted[envs, pos % store.track]
            envs, pos = envs[ok], pos[ok]
            envs_out.append(envs)
            pos_out.append(pos)
            have += len(envs)
        return np.concatenate(envs_out)[:batch_size], np.concatenate(pos_out)[:batch_size]

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


def n_step_targets(store: FrameStorage, envs: np.ndarray, pos: np.ndarray, n_step: int, gamma: float) -> Targets:
    """The n-step return of each start, stopping at the first terminal or episode end."""
    steps = pos[:, None] + np.arange(n_step)[None, :]        # (B, n)
    slots = steps % store.track
    e = envs[:, None]
    rewards = store.reward[e, slots]
    stop = store.terminal[e, slots] | store.episode_end[e, slots]
    stopped_before = np.cumsum(stop, 1) - stop > 0
    used = ~stopped_before
    k = used.sum(1)
    discounts_i = gamma ** np.arange(n_step, dtype=np.float64)
    reward = (rewards * used * discounts_i[None, :]).sum(1).astype(np.float32)
    last_slot = (pos + k - 1) % store.track
    terminal = store.terminal[envs, last_slot]
    discount = np.where(terminal, 0.0, gamma ** k).astype(np.float32)
    action = store.action[envs, pos % store.track].astype(np.int64)
    return Targets(k, action, reward, discount)


def stack_mask(first_window: np.ndarray, start: np.ndarray, stack: int) -> np.ndarray | None:
    """(B, stack) mask of the frames a stack starting at window index ``start`` keeps; None if all.
    A frame is kept if no newer frame in its stack starts an episode."""
    if stack == 1:
        return None
    starts = np.take_along_axis(first_window, start[:, None] + np.arange(stack)[None, :], 1)
    keep = (np.flip(np.cumsum(np.flip(starts, 1), 1), 1) - starts) == 0
    return None if keep.all() else keep


class BatchAssembler:
    """Stacks of obs and next_obs for sampled starts, on the training device."""

    def __init__(self, stack: int, n_step: int):
        self.stack, self.n_step = stack, n_step
        self._staging: list[tuple] = []   # pinned (frames, action, reward+discount) buffers and their events
        self._turn = 0

    def _gather(self, store: FrameStorage, flat_index: np.ndarray, b: int, device: torch.device):
        """Frames at ``flat_index`` (env * track + slot) on ``device``, with the staging buffers in use."""
        shape = (len(flat_index), *store.frame_shape)
        if store.storage is not None:
            index = torch.from_numpy(flat_index).to(store.storage)
            return store.frames.view(-1, *store.frame_shape).index_select(0, index).to(device), None
        flat = store.frames.reshape(-1, *store.frame_shape)
        if device.type != "cuda":
            return torch.from_numpy(np.take(flat, flat_index, axis=0, mode="clip")), None
        if not self._staging or self._staging[0][0].shape != shape:
            self._staging = [(torch.empty(shape, dtype=torch_dtype(flat.dtype), pin_memory=True),
                              torch.empty(b, dtype=torch.int64, pin_memory=True),
                              torch.empty((2, b), dtype=torch.float32, pin_memory=True),
                              torch.cuda.Event()) for _ in range(2)]
        frames, action, floats, event = self._staging[self._turn]
        self._turn = 1 - self._turn
        event.synchronize()          # the copy that last used this buffer has finished
        np.take(flat, flat_index, axis=0, out=frames.numpy(), mode="clip")   # "clip": written in place, unbuffered
        return frames, (action, floats, event)

    def assemble(self, store: FrameStorage, envs: np.ndarray, pos: np.ndarray, targets: Targets,
                 device: torch.device) -> Batch:
        b, s, n = len(envs), self.stack, self.n_step
        window = (pos[:, None] + np.arange(-(s - 1), n + 1)[None, :]) % store.track    # obs frames ... pos + n
        first_window = store.first[envs[:, None], window]
        frames, staged = self._gather(store, (envs[:, None] * store.track + window).ravel(), b, device)
        if staged is not None:      # pinned host buffers: every copy to the GPU is asynchronous
            action_buf, floats, event = staged
            action_buf.numpy()[:] = targets.action
            floats.numpy()[0], floats.numpy()[1] = targets.reward, targets.discount
            frames, action_t, floats_t = (x.to(device, non_blocking=True) for x in (frames, action_buf, floats))
            event.record()
            reward_t, discount_t = floats_t[0], floats_t[1]
        else:
            action_t, reward_t, discount_t = (torch.from_numpy(x).to(device)
                                              for x in (targets.action, targets.reward, targets.discount))
        frames = frames.view(b, s + n, *store.frame_shape)
        k = targets.k
        full = bool((k == n).all())
        next_start = np.full(b, n) if full else k
        obs = frames[:, :s]
        if full:
            nxt = frames[:, n:n + s]
        else:
            rows = torch.arange(b, device=device)[:, None]
            nxt = frames[rows, torch.from_numpy(k[:, None] + np.arange(s)[None, :]).to(device)]
        stacks = []
        for start, stack in ((np.zeros(b, np.int64), obs), (next_start, nxt)):
            keep = stack_mask(first_window, start, s)
            if keep is not None:
                stack = stack * torch.from_numpy(keep).to(device)[..., None, None, None].to(stack.dtype)
            stacks.append(stack.reshape(b, s * store.frame_shape[0], *store.frame_shape[1:]))
        return Batch(stacks[0], action_t, reward_t, discount_t, stacks[1])
